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
# STREAM_WORKERS (default 1) processes serve the port; set REDIS_URL before raising it, so
# that they share event logs, stops and limits. With several workers each one writes its
# metrics under PROMETHEUS_MULTIPROC_DIR (a fresh directory unless set), so /metrics sums them.
workers="${STREAM_WORKERS:-1}"
if [ "$workers" -gt 1 ] && [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  PROMETHEUS_MULTIPROC_DIR="$(mktemp -d -t c3-metrics-XXXXXX)"
  export PROMETHEUS_MULTIPROC_DIR
fi
exec uvicorn asgi_stream:app --host 0.0.0.0 --port "${PORT:-8001}" --timeout-keep-alive 300 \
  --loop uvloop --http httptools \
  --timeout-graceful-shutdown "${STREAM_GRACEFUL_TIMEOUT:-40}" --no-access-log \
  --workers "$workers"
