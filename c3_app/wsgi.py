"""WSGI entry point for c3-app (gunicorn c3_app.wsgi:application)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "c3_app.settings")
application = get_wsgi_application()
