"""The stream service's CORS allow-list: explicit origins, never `*` (credentials are on)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings


def allowed_origins() -> list[str]:
    """STREAM_CORS_ORIGINS if set; else CSRF_TRUSTED_ORIGINS plus https:// for each
    concrete host in ALLOWED_HOSTS (and http:// as well while DEBUG is on)."""
    if settings.STREAM_CORS_ORIGINS:
        origins = list(settings.STREAM_CORS_ORIGINS)
    else:
        origins = list(settings.CSRF_TRUSTED_ORIGINS)
        schemes = ["https", "http"] if settings.DEBUG else ["https"]
        for host in settings.ALLOWED_HOSTS:
            if host.startswith(".") or "*" in host:
                continue  # wildcards cannot become an exact origin
            origins.extend(f"{scheme}://{host}" for scheme in schemes)
    cleaned = []
    for origin in origins:
        parts = urlsplit(origin.strip())
        if origin.strip() == "*" or not parts.scheme or not parts.netloc:
            continue
        value = f"{parts.scheme}://{parts.netloc}"
        if value not in cleaned:
            cleaned.append(value)
    return cleaned
