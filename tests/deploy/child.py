"""Run Python as the platform would start the app: a clean environment (no .env file, no
variables of the test process), so only the variables a test passes configure settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "C3_ENV_FILE": "/nonexistent/.env",
        "DJANGO_SETTINGS_MODULE": "c3_app.settings",
        # Keep collectstatic-free checks away from the repository's staticfiles/.
        "STATIC_ROOT": str(tmp_path / "static"),
        **env,
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
