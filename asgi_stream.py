"""c3-app-stream entry point: `app` is the FastAPI application.

uvicorn asgi_stream:app --port 8001      (what start_stream.sh runs)
python asgi_stream.py                    (serves on $PORT, default 8001, STREAM_WORKERS workers)
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "c3_app.settings")

# With STREAM_WORKERS > 1 each worker process first re-runs this file as `__mp_main__` and
# then imports `asgi_stream` for the app: building the app once per worker is enough (twice
# made a worker miss uvicorn's start-up health check on a busy machine).
if __name__ != "__mp_main__":
    django.setup()

    from ai_features.stream_app.app import create_app  # needs django.setup()

    app = create_app()

if __name__ == "__main__":
    import tempfile

    import uvicorn
    from django.conf import settings

    workers = settings.STREAM_WORKERS
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Set before the workers start, so that each one writes its metrics there and a
        # scrape of any worker shows the sum (see ai_features/metrics.py).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="c3-metrics-")
    uvicorn.run(
        "asgi_stream:app",
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "8001")),
        workers=workers,
        timeout_keep_alive=300,
        loop="uvloop",  # as start_stream.sh
        http="httptools",
        access_log=False,  # it would print query strings (resume URLs may carry a token)
        # As start_stream.sh: STREAM_GRACEFUL_TIMEOUT, default grace + 15 (40 with grace 25).
        timeout_graceful_shutdown=int(
            os.environ.get(
                "STREAM_GRACEFUL_TIMEOUT", int(settings.STREAM_SHUTDOWN_GRACE_SECONDS) + 15
            )
        ),
    )
