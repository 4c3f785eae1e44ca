"""scripts/build_assets.sh when npm is broken or missing: one warning line locally, a failed
build with a clear message under C3_REQUIRE_ASSETS=1 (build.sh on Render, .ci/run).

Each test runs the real script from a copy of the repository's layout in a temporary
directory, with a PATH whose `npm` fails the way a registry outage does (or with no npm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What the scripts need besides npm (and python for build.sh), linked into a private PATH.
TOOLS = ["bash", "cat", "cp", "dirname", "ls", "mkdir", "rm", "sed", "tail", "tr", "env"]
BROKEN_NPM = """#!/bin/sh
echo "npm ERR! code E503" >&2
echo "npm ERR! 503 Service Unavailable - GET https://registry.npmjs.org/dompurify" >&2
exit 1
"""
# Stands in for the interpreter in build.sh: records each call and succeeds, so the test
# sees which steps ran without installing anything.
RECORDING_PYTHON = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/../python-calls.log"
"""


def executable(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what the scripts touch: scripts/, build.sh, frontend's package files."""
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "build_assets.sh", copy / "scripts")
    shutil.copy2(ROOT / "build.sh", copy)
    (copy / "frontend").mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(ROOT / "frontend" / name, copy / "frontend")
    return copy


def private_path(project: Path, *, npm: str | None) -> str:
    bin_dir = project / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed by the scripts"
        (bin_dir / tool).symlink_to(found)
    if npm is not None:
        executable(bin_dir / "npm", npm)
    executable(bin_dir / "python", RECORDING_PYTHON)
    return str(bin_dir)


def run(project: Path, script: str, *, npm: str | None, require: bool | None):
    env = {"PATH": private_path(project, npm=npm), "HOME": str(project), "LANG": "C.UTF-8"}
    if require is not None:
        env["C3_REQUIRE_ASSETS"] = "1" if require else "0"
    return subprocess.run(
        ["bash", str(project / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("npm", [BROKEN_NPM, None], ids=["npm-ci-fails", "no-npm"])
def test_required_assets_fail_loudly(project, npm):
    result = run(project, "scripts/build_assets.sh", npm=npm, require=True)
    assert result.returncode != 0
    error = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(error) == 1, result.stderr
    assert "Markdown assets" in error[0] and "C3_REQUIRE_ASSETS=1" in error[0]
    assert ("npm ci failed" if npm else "npm not found") in error[0]
    assert not (project / "ai_features").exists(), "no vendor directory may be left half-made"


@pytest.mark.parametrize("require", [None, False], ids=["unset", "zero"])
@pytest.mark.parametrize("npm", [BROKEN_NPM, None], ids=["npm-ci-fails", "no-npm"])
def test_local_build_falls_back_with_one_warning(project, npm, require):
    result = run(project, "scripts/build_assets.sh", npm=npm, require=require)
    assert result.returncode == 0, result.stderr
    ours = [line for line in result.stderr.splitlines() if not line.startswith("npm ERR!")]
    assert len(ours) == 1 and ours[0].startswith("WARNING:"), result.stderr
    assert "plain text" in ours[0]


def test_deploy_build_stops_before_collectstatic_when_npm_fails(project):
    # build.sh sets C3_REQUIRE_ASSETS=1 itself: the environment need not.
    result = run(project, "build.sh", npm=BROKEN_NPM, require=None)
    assert result.returncode != 0
    assert "ERROR: npm ci failed" in result.stderr
    calls = (project / "python-calls.log").read_text(encoding="utf-8").splitlines()
    assert len(calls) == 1 and "pip install --require-hashes" in calls[0], calls
    assert not any("collectstatic" in call for call in calls)


def test_deploy_build_collects_static_when_assets_build(project):
    # The same run with a working npm (one that installs from the lock file's tarballs is
    # beyond a unit test; the real `npm ci` runs in every `make assets`): an npm that
    # succeeds and packages laid out as npm would leave them.
    modules = project / "frontend" / "node_modules"
    for relative in (
        "marked/lib/marked.umd.js",
        "dompurify/dist/purify.min.js",
        "@highlightjs/cdn-assets/highlight.min.js",
    ):
        (modules / relative).parent.mkdir(parents=True, exist_ok=True)
        (modules / relative).write_text("/* stand-in */\n", encoding="utf-8")
    result = run(project, "build.sh", npm="#!/bin/sh\nexit 0\n", require=None)
    assert result.returncode == 0, result.stderr
    calls = (project / "python-calls.log").read_text(encoding="utf-8").splitlines()
    assert [call.split()[-2:] for call in calls][-1] == ["collectstatic", "--noinput"]
    vendor = project / "ai_features" / "static" / "ai_features" / "vendor"
    assert sorted(p.name for p in vendor.iterdir()) == [
        "highlight.min.js",
        "marked.umd.js",
        "purify.min.js",
    ]
    assert os.access(ROOT / "build.sh", os.X_OK)
