"""ASGI entry point for the Django app itself (the stream service is asgi_stream.py)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "c3_app.settings")
application = get_asgi_application()
