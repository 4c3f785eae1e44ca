"""Create (or reset) the local demo/demo user — only for local development."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import connection


class Command(BaseCommand):
    help = (
        "Ensure the local demo user demo/demo exists. Does nothing unless DEBUG is on and the "
        "database is the local SQLite file: a known password never lands on a shared database."
    )

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            self.stdout.write("DEBUG is off: no demo user (create one with createsuperuser)")
            return
        if connection.vendor != "sqlite":
            self.stdout.write(
                f"database is {connection.vendor}, not the local SQLite file: no demo user "
                "(create one with createsuperuser)"
            )
            return
        user, created = get_user_model().objects.get_or_create(username="demo")
        if created or not user.check_password("demo"):
            user.set_password("demo")
            user.save()
        self.stdout.write("demo user ready (demo / demo)")
