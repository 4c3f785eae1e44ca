#!/usr/bin/env bash
# c3-app-stream: the FastAPI streaming service under uvicorn.
# --timeout-keep-alive 300 is the original document's setting; the graceful timeout bounds
# how long a deploy waits for open streams (the service itself ends them within
# STREAM_SHUTDOWN_GRACE_SECONDS, default 25, below Render's 30 s).
exec uvicorn asgi_stream:app --host 0.0.0.0 --port "${PORT:-8001}" --timeout-keep-alive 300 \
  --timeout-graceful-shutdown "${STREAM_GRACEFUL_TIMEOUT:-30}"
