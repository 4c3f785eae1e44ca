#!/usr/bin/env bash
# c3-app-stream: the FastAPI streaming service under uvicorn.
# --timeout-keep-alive 300 is the original document's setting.
# The graceful timeout bounds how long a deploy waits for open streams. The service ends
# them itself within STREAM_SHUTDOWN_GRACE_SECONDS (default 25) plus a few seconds to store
# them, so keep it above grace + 10, and Render's maxShutdownDelaySeconds (45 in
# render.yaml) above it.
# uvloop and httptools are named so the fast event loop and HTTP parser are a promise, not
# whatever uvicorn happens to find installed (both come with uvicorn[standard]).
# uvicorn's own access log is off because it prints query strings, where a resume URL may
# carry a stream token; the app writes its own access line (path, status, duration, id).
exec uvicorn asgi_stream:app --host 0.0.0.0 --port "${PORT:-8001}" --timeout-keep-alive 300 \
  --loop uvloop --http httptools \
  --timeout-graceful-shutdown "${STREAM_GRACEFUL_TIMEOUT:-40}" --no-access-log
