"""render.yaml, build.sh, start_stream.sh and .env.example against the original document.

The original document (`../shared/seed/STREAMING_SETUP.md`, Japanese) lists the variables
each Render service gets; they are promises. The lists are also written out here so the
tests run where the document is not checked out beside the repository.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SETUP_DOC = ROOT.parent / "shared" / "seed" / "STREAMING_SETUP.md"
APP, STREAM = "c3-app", "c3-app-stream"

# STREAMING_SETUP.md, "Renderでのデプロイ > 2. 環境変数の設定": `None` marks a placeholder
# (<your-key>, <db-host>, ...) that the operator fills in.
DOCUMENT_VARIABLES: dict[str, dict[str, str | None]] = {
    APP: {
        "STREAM_API_URL": "https://c3-app-stream.onrender.com",
        "ALLOWED_HOSTS": "c3-app.onrender.com,c3-app-stream.onrender.com",
        "OPENAI_API_KEY": None,
        "OPENAI_MODEL": "gpt-4o-mini",
        "MAX_CHAT_HISTORY": "14",
        "SUPABASE_DB_NAME": None,
        "SUPABASE_DB_USER": None,
        "SUPABASE_DB_PASSWORD": None,
        "SUPABASE_DB_HOST": None,
        "CSRF_TRUSTED_ORIGINS": "https://c3-app.onrender.com",
    },
    STREAM: {
        "ALLOWED_HOSTS": "c3-app.onrender.com,c3-app-stream.onrender.com",
        "OPENAI_API_KEY": None,
        "OPENAI_MODEL": "gpt-4o-mini",
        "MAX_CHAT_HISTORY": "14",
        "SUPABASE_DB_NAME": None,
        "SUPABASE_DB_USER": None,
        "SUPABASE_DB_PASSWORD": None,
        "SUPABASE_DB_HOST": None,
    },
}
# Beyond the document: the stream service's CORS allow-list and CSRF origins (its session
# auth runs Django's CSRF check), the port Supabase listens on, and the interpreter.
ADDED_VARIABLES = {
    APP: {"SECRET_KEY", "DEBUG", "SUPABASE_DB_PORT", "PYTHON_VERSION"},
    STREAM: {
        "SECRET_KEY",
        "DEBUG",
        "STREAM_CORS_ORIGINS",
        "CSRF_TRUSTED_ORIGINS",
        "SUPABASE_DB_PORT",
        "PYTHON_VERSION",
    },
}
SECRETS = {"OPENAI_API_KEY", "SUPABASE_DB_PASSWORD", "SECRET_KEY"}
# Read by Render itself rather than by c3_app/settings.py.
PLATFORM_VARIABLES = {"PYTHON_VERSION"}
# One of these per envVars entry (Render rejects e.g. `value` together with `sync`).
SOURCES = ("value", "generateValue", "sync", "fromGroup", "fromService", "fromDatabase")


# --- helpers ----------------------------------------------------------------------------------


def load_blueprint() -> dict:
    return yaml.safe_load((ROOT / "render.yaml").read_text(encoding="utf-8"))


def parse_document_variables(text: str) -> dict[str, dict[str, str | None]]:
    """{service: {KEY: value or None}} from the document's two ``` blocks after the
    '#### ...（c3-app）' and '#### ...（c3-app-stream）' headings."""
    found: dict[str, dict[str, str | None]] = {}
    pattern = re.compile(r"^####[^\n]*[（(]([\w-]+)[）)][^\n]*\n+```[^\n]*\n(.*?)```", re.M | re.S)
    for service, block in pattern.findall(text):
        variables: dict[str, str | None] = {}
        for line in block.splitlines():
            match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
            if match:
                value = match.group(2).strip()
                variables[match.group(1)] = None if value.startswith("<") else value
        found[service] = variables
    return found


def required_variables() -> dict[str, dict[str, str | None]]:
    required = {service: dict(variables) for service, variables in DOCUMENT_VARIABLES.items()}
    if SETUP_DOC.exists():
        for service, variables in parse_document_variables(SETUP_DOC.read_text("utf-8")).items():
            required.setdefault(service, {}).update(variables)
    return required


def service(blueprint: dict, name: str) -> dict:
    matches = [s for s in blueprint["services"] if s.get("name") == name]
    assert len(matches) == 1, f"expected one service named {name}, found {len(matches)}"
    return matches[0]


def group(blueprint: dict, name: str) -> dict:
    matches = [g for g in blueprint.get("envVarGroups", []) if g.get("name") == name]
    assert len(matches) == 1, f"envVarGroups has {len(matches)} groups named {name}"
    return matches[0]


def resolved_env(blueprint: dict, name: str) -> dict[str, tuple[str, dict]]:
    """{KEY: (where it is defined, its envVars entry)} as the service will see it; a key
    defined twice (service and group, or two groups) fails, since which wins is unclear."""
    env: dict[str, tuple[str, dict]] = {}

    def add(key: str, origin: str, entry: dict) -> None:
        assert key not in env, f"{name}: {key} is defined in {env[key][0]} and in {origin}"
        env[key] = (origin, entry)

    for entry in service(blueprint, name).get("envVars", []):
        if "fromGroup" in entry:
            for grouped in group(blueprint, entry["fromGroup"]).get("envVars", []):
                add(grouped["key"], f"group {entry['fromGroup']}", grouped)
        else:
            add(entry["key"], f"service {name}", entry)
    return env


def all_entries(blueprint: dict) -> list[tuple[str, dict]]:
    entries = [
        (f"group {g['name']}", entry)
        for g in blueprint.get("envVarGroups", [])
        for entry in g.get("envVars", [])
    ]
    entries += [
        (f"service {s['name']}", entry)
        for s in blueprint["services"]
        for entry in s.get("envVars", [])
    ]
    return entries


def settings_variables() -> set[str]:
    """Every environment variable name c3_app/settings.py reads."""
    source = (ROOT / "c3_app" / "settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r"\benv(?:\.\w+)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", source))
    names |= set(re.findall(r"os\.environ(?:\.get)?[(\[]\s*[\"']([A-Z][A-Z0-9_]*)[\"']", source))
    return names


def hosts_of(value: str) -> set[str]:
    return {h.strip() for h in value.split(",") if h.strip()}


def origin_hosts(value: str) -> set[str]:
    return {urlsplit(origin).hostname or "" for origin in hosts_of(value)}


# --- services -----------------------------------------------------------------------------------


def test_exactly_the_two_services_of_the_original_document():
    blueprint = load_blueprint()
    assert [(s.get("type"), s.get("name")) for s in blueprint["services"]] == [
        ("web", APP),
        ("web", STREAM),
    ]
    for name in (APP, STREAM):
        assert service(blueprint, name)["runtime"] == "python"


def test_web_app_runs_gunicorn_on_render_port_with_threads():
    command = service(load_blueprint(), APP)["startCommand"]
    args = shlex.split(command)
    assert args[:2] == ["gunicorn", "c3_app.wsgi:application"]
    assert "--bind 0.0.0.0:$PORT" in " ".join(args)
    assert args[args.index("--worker-class") + 1] == "gthread"
    assert int(args[args.index("--threads") + 1]) > 1


def test_gunicorn_accepts_the_start_command(tmp_path):
    """gunicorn --check-config parses every flag and imports the WSGI app."""
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed beside this Python")
    command = service(load_blueprint(), APP)["startCommand"]
    args = [str(gunicorn), *shlex.split(command.replace("$PORT", "10000"))[1:], "--check-config"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "C3_ENV_FILE": "/nonexistent/.env",
        "DEBUG": "false",
        "SECRET_KEY": "k" * 25 + "0123456789abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "c3-app.onrender.com",
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stream_service_runs_the_original_start_script():
    assert service(load_blueprint(), STREAM)["startCommand"] == "./start_stream.sh"


def test_both_services_have_the_health_check():
    blueprint = load_blueprint()
    for name in (APP, STREAM):
        assert service(blueprint, name)["healthCheckPath"] == "/health/"


def test_migrations_run_at_deploy_on_the_web_app():
    app = service(load_blueprint(), APP)
    build_command = app["buildCommand"]
    build_script = ROOT / build_command.removeprefix("./").split()[0]
    in_build = build_script.is_file() and "manage.py migrate" in build_script.read_text("utf-8")
    in_pre_deploy = "manage.py migrate" in app.get("preDeployCommand", "")
    assert in_pre_deploy or in_build
    assert not (in_pre_deploy and in_build), "migrations would run twice per deploy"
    if in_pre_deploy:
        # Render offers the pre-deploy command on paid instance types only.
        assert app.get("plan", "free") != "free"


def test_stream_service_gets_time_to_drain_streams():
    stream = service(load_blueprint(), STREAM)
    script = (ROOT / "start_stream.sh").read_text(encoding="utf-8")
    graceful = re.search(r"STREAM_GRACEFUL_TIMEOUT:-(\d+)", script)
    uvicorn_grace = int(graceful.group(1)) if graceful else 30
    delay = stream.get("maxShutdownDelaySeconds", 30)  # Render's default
    assert 30 <= delay <= 300
    assert delay > uvicorn_grace, "Render would SIGKILL uvicorn before its graceful timeout"


LOCKED_INSTALL = "pip install --require-hashes --only-binary :all: -r requirements.lock.txt"


def test_stream_service_builds_the_locked_set_without_collectstatic():
    assert service(load_blueprint(), STREAM)["buildCommand"] == LOCKED_INSTALL


# --- environment variables ------------------------------------------------------------------


def test_every_variable_of_the_original_document_is_set_per_service():
    blueprint = load_blueprint()
    for name, variables in required_variables().items():
        env = resolved_env(blueprint, name)
        missing = sorted(set(variables) - set(env))
        assert not missing, f"{name} lacks {missing}"
        for key, document_value in variables.items():
            _, entry = env[key]
            if document_value is None:
                # A placeholder in the document: the operator's value, never committed.
                assert entry.get("sync") is False, f"{name}: {key} should be sync: false"
            elif "value" in entry:
                assert str(entry["value"]) == document_value, f"{name}: {key}"


def test_added_variables_are_set_per_service():
    blueprint = load_blueprint()
    for name, keys in ADDED_VARIABLES.items():
        missing = sorted(keys - set(resolved_env(blueprint, name)))
        assert not missing, f"{name} lacks {missing}"


def test_explicit_lists_match_the_original_document():
    if not SETUP_DOC.exists():
        pytest.skip(f"{SETUP_DOC} is not checked out beside the repository")
    parsed = parse_document_variables(SETUP_DOC.read_text(encoding="utf-8"))
    assert parsed == DOCUMENT_VARIABLES


def test_shared_values_agree_between_services():
    blueprint = load_blueprint()
    app, stream = resolved_env(blueprint, APP), resolved_env(blueprint, STREAM)
    for key in ("SECRET_KEY", "DEBUG", "OPENAI_MODEL", "MAX_CHAT_HISTORY", "SUPABASE_DB_PORT"):
        # Same definition (one group), or equal literal values.
        assert app[key] == stream[key] or (
            "value" in app[key][1] and app[key][1].get("value") == stream[key][1].get("value")
        ), key
    assert str(app["DEBUG"][1]["value"]).lower() == "false"
    assert str(app["SUPABASE_DB_PORT"][1]["value"]) == "5432"
    for name in (APP, STREAM):
        assert str(resolved_env(blueprint, name)["PYTHON_VERSION"][1]["value"]).startswith("3.11.")


def test_hostnames_are_consistent():
    blueprint = load_blueprint()
    app, stream = resolved_env(blueprint, APP), resolved_env(blueprint, STREAM)
    app_origin = app["CSRF_TRUSTED_ORIGINS"][1]["value"]
    assert origin_hosts(app_origin) <= hosts_of(app["ALLOWED_HOSTS"][1]["value"])
    stream_url = app["STREAM_API_URL"][1]["value"]
    assert urlsplit(stream_url).scheme == "https"
    assert urlsplit(stream_url).hostname in hosts_of(stream["ALLOWED_HOSTS"][1]["value"])
    # The browser on c3-app's origin calls the stream service: CORS must allow it.
    assert hosts_of(stream["STREAM_CORS_ORIGINS"][1]["value"]) == hosts_of(app_origin)
    assert hosts_of(stream["CSRF_TRUSTED_ORIGINS"][1]["value"]) == hosts_of(app_origin)


def test_secret_key_is_generated_once_and_shared():
    blueprint = load_blueprint()
    definitions = [
        (where, e) for where, e in all_entries(blueprint) if e.get("key") == "SECRET_KEY"
    ]
    generated = [(where, e) for where, e in definitions if e.get("generateValue") is True]
    assert len(generated) == 1, f"SECRET_KEY generated {len(generated)} times: {definitions}"
    assert all("value" not in e for _, e in definitions), "SECRET_KEY value committed"
    origins = set()
    for name in (APP, STREAM):
        where, entry = resolved_env(blueprint, name)["SECRET_KEY"]
        if "fromService" in entry:  # copied from the other service's generated key
            source = entry["fromService"]
            assert source.get("envVarKey") == "SECRET_KEY"
            where, entry = resolved_env(blueprint, source["name"])["SECRET_KEY"]
        assert entry.get("generateValue") is True
        origins.add(where)
    assert len(origins) == 1, f"the services get different SECRET_KEYs: {origins}"


def test_no_secret_values_are_committed():
    blueprint = load_blueprint()
    for where, entry in all_entries(blueprint):
        key = entry.get("key", "")
        if key in SECRETS or re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", key):
            assert "value" not in entry, f"{where}: {key} has a committed value"
    for name in (APP, STREAM):
        env = resolved_env(blueprint, name)
        for key in ("OPENAI_API_KEY", "SUPABASE_DB_PASSWORD"):
            assert env[key][1].get("sync") is False, f"{name}: {key}"


def test_each_entry_has_exactly_one_source():
    for where, entry in all_entries(load_blueprint()):
        sources = [field for field in SOURCES if field in entry]
        assert len(sources) == 1, f"{where}: {entry}"
        if "sync" in entry:
            assert entry["sync"] is False, f"{where}: {entry}"


def test_env_groups_hold_no_sync_false_entries():
    # Render ignores `sync: false` inside an environment group: the operator would never be
    # asked for the value.
    for env_group in load_blueprint().get("envVarGroups", []):
        for entry in env_group.get("envVars", []):
            assert "sync" not in entry, f"group {env_group['name']}: {entry['key']}"


def test_every_variable_set_is_one_settings_reads():
    read = settings_variables() | PLATFORM_VARIABLES
    for where, entry in all_entries(load_blueprint()):
        if "key" in entry:
            assert entry["key"] in read, f"{where}: {entry['key']} is read by nothing"


# --- scripts ----------------------------------------------------------------------------------


def test_start_stream_script_keeps_the_original_command():
    script = (ROOT / "start_stream.sh").read_text(encoding="utf-8")
    assert "uvicorn asgi_stream:app" in script
    assert "--timeout-keep-alive 300" in script
    assert "${PORT:-8001}" in script
    assert os.access(ROOT / "start_stream.sh", os.X_OK)


def test_build_script_installs_builds_assets_and_collects_static():
    build = ROOT / "build.sh"
    assert service(load_blueprint(), APP)["buildCommand"] == "./build.sh"
    assert os.access(build, os.X_OK), "build.sh must be executable (git keeps the mode)"
    text = build.read_text(encoding="utf-8")
    commands = "\n".join(
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    )
    assert re.search(r"^set -o errexit$|^set -e", commands, re.M)
    assert f"python -m {LOCKED_INSTALL}" in commands
    assert "C3_REQUIRE_ASSETS=1 bash scripts/build_assets.sh" in commands
    assert "manage.py collectstatic --noinput" in commands
    assert "migrate" not in commands, "migrations belong to preDeployCommand"
    # The vendor files must exist before collectstatic's manifest is written.
    assert commands.index("scripts/build_assets.sh") < commands.index("collectstatic")
    subprocess.run(["bash", "-n", str(build)], check=True)


# --- .env.example -------------------------------------------------------------------------------


def test_env_example_lists_every_variable_settings_reads():
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M))
    missing = sorted(settings_variables() - listed)
    assert not missing, f".env.example lacks {missing}"
    # The original document's variables come first.
    document_keys = set().union(*DOCUMENT_VARIABLES.values())
    order = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M)
    last_document = max(order.index(key) for key in document_keys)
    assert order.index("DATABASE_URL") > last_document
