#!/usr/bin/env bash
# c3-app-stream: the FastAPI streaming service under uvicorn.
# --timeout-keep-alive 300 is the original document's setting. The graceful timeout bounds
# how long a deploy waits for open streams (the service itself ends them within
# STREAM_SHUTDOWN_GRACE_SECONDS, default 25, inside Render's 30 s). uvicorn's own access
# log is off because it prints query strings, where a resume URL may carry a stream token;
# the app writes its own access line (path, status, duration, request id) instead.
exec uvicorn asgi_stream:app --host 0.0.0.0 --port "${PORT:-8001}" --timeout-keep-alive 300 \
  --timeout-graceful-shutdown "${STREAM_GRACEFUL_TIMEOUT:-30}" --no-access-log
