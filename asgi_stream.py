"""c3-app-stream entry point: `app` is the FastAPI application.

uvicorn asgi_stream:app --port 8001      (what start_stream.sh runs)
python asgi_stream.py                    (serves on $PORT, default 8001)
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "c3_app.settings")
django.setup()

from ai_features.stream_app.app import create_app  # noqa: E402  (needs django.setup())

app = create_app()

if __name__ == "__main__":
    import uvicorn
    from django.conf import settings

    uvicorn.run(
        "asgi_stream:app",
        host=os.environ.get("HOST", "0.0.0.0"),
        port=int(os.environ.get("PORT", "8001")),
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
