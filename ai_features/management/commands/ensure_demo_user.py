"""Create (or reset) the local demo/demo user — only ever with DEBUG on."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Ensure the local demo user demo/demo exists (refuses to run with DEBUG off)."

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("ensure_demo_user only runs with DEBUG on.")
        user, created = get_user_model().objects.get_or_create(username="demo")
        if created or not user.check_password("demo"):
            user.set_password("demo")
            user.save()
        self.stdout.write("demo user ready (demo / demo)")
