"""Every environment variable the project reads is documented, with the default it really has.

"Read" means: c3_app/settings.py (`env.<type>("NAME", default=...)`), any other deployed or
local Python (`os.environ.get`, `os.getenv`, `os.environ[...]`), the shell scripts
(`${NAME:-default}`, or `$NAME` never assigned in the script) and render.yaml's envVars.
"Documented" means: a `NAME=` line in .env.example AND a row in the README's Configuration
tables. Where the code has a literal default, .env.example shows exactly it (the header
promises "the value used when the variable is unset", with DEBUG off) and so does the
README's Default column.

A failure names the variable and where it is read: add it to both places.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXCLUDED_DIRS = {".venv", "node_modules", "tests", "migrations", ".git", "staticfiles"}
# Read by Render itself, not by this project (README, "Deployment on Render").
PLATFORM_VARIABLES = {"PYTHON_VERSION"}
# Set by the process for itself (os.environ.setdefault), never an operator's choice.
INTERNAL_VARIABLES = {"DJANGO_SETTINGS_MODULE"}
# Shell variables every script may use without them being configuration.
SHELL_BUILTINS = {"BASH_SOURCE", "PATH", "HOME", "PWD", "IFS", "RANDOM", "LINENO", "OSTYPE"}
# Defaults are evaluated as the settings see them in production (DEBUG off); any other name
# (BASE_DIR, another setting) makes a default "computed", described in words only.
EVAL_NAMES = {"DEBUG": False}
NO_DEFAULT = object()
COMPUTED = object()  # a default computed from other settings at run time


@dataclass
class Variable:
    name: str
    read_in: set[str] = field(default_factory=set)
    defaults: dict[str, object] = field(default_factory=dict)  # where -> default


def shown(value: object) -> str | None:
    """A default as .env.example and the README write it; None when it is computed at run
    time (depends on other settings)."""
    if value is COMPUTED:
        return None
    if value is NO_DEFAULT or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def python_files() -> list[Path]:
    return [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if not EXCLUDED_DIRS & set(path.relative_to(ROOT).parts)
    ]


def shell_scripts() -> list[Path]:
    scripts = [ROOT / "build.sh", ROOT / "start_stream.sh", *sorted(ROOT.glob("scripts/*.sh"))]
    return [path for path in scripts if path.is_file()]


def evaluate_default(node: ast.expr | None) -> object:
    if node is None:
        return NO_DEFAULT
    try:
        # Our own settings' default expressions (`not DEBUG`, `1024 * 1024`, ...), with DEBUG
        # off as .env.example documents them.
        return eval(compile(ast.Expression(node), "<default>", "eval"), {}, dict(EVAL_NAMES))  # noqa: S307
    except Exception:
        return COMPUTED


def python_reads(path: Path) -> list[tuple[str, object]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    reads: list[tuple[str, object]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            target = ast.unparse(node.value)
            if target == "os.environ" and isinstance(node.ctx, ast.Load):
                key = node.slice
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    reads.append((key.value, NO_DEFAULT))
            continue
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        function = ast.unparse(node.func)
        default_node = next((k.value for k in node.keywords if k.arg == "default"), None)
        if function in ("os.environ.get", "os.getenv"):
            default_node = node.args[1] if len(node.args) > 1 else default_node
        elif not (function == "env" or re.fullmatch(r"env\.\w+", function)):
            continue
        if function == "env.read_env" or not re.fullmatch(r"[A-Z][A-Z0-9_]*", first.value):
            continue
        reads.append((first.value, evaluate_default(default_node)))
    return reads


def shell_reads(path: Path) -> list[tuple[str, object]]:
    text = "\n".join(
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    )
    assigned = set(re.findall(r"(?:^|[\s;(])(?:local |export )?([A-Za-z_]\w*)=", text, re.M))
    assigned |= set(re.findall(r"\bfor (\w+) in\b", text))
    reads: list[tuple[str, object]] = []
    for name, default in re.findall(r"\$\{([A-Z][A-Z0-9_]*):?-([^}]*)\}", text):
        reads.append((name, default))
    for name in set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text)) - assigned - SHELL_BUILTINS:
        reads.append((name, NO_DEFAULT))
    return reads


def render_reads() -> list[tuple[str, object]]:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text(encoding="utf-8"))
    entries = [e for g in blueprint.get("envVarGroups", []) for e in g.get("envVars", [])]
    entries += [e for s in blueprint["services"] for e in s.get("envVars", [])]
    return [(e["key"], NO_DEFAULT) for e in entries if "key" in e]


def variables_read() -> dict[str, Variable]:
    found: dict[str, Variable] = {}

    def add(where: str, reads: list[tuple[str, object]]) -> None:
        for name, default in reads:
            if name in PLATFORM_VARIABLES | INTERNAL_VARIABLES:
                continue
            variable = found.setdefault(name, Variable(name))
            variable.read_in.add(where)
            if default is not NO_DEFAULT:
                variable.defaults[where] = default

    for path in python_files():
        add(str(path.relative_to(ROOT)), python_reads(path))
    for path in shell_scripts():
        add(str(path.relative_to(ROOT)), shell_reads(path))
    add("render.yaml", render_reads())
    return found


def env_example() -> dict[str, str]:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    values: dict[str, str] = {}
    for name, value in re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", text, re.M):
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        assert name not in values, f".env.example lists {name} twice"
        values[name] = value
    return values


def readme_configuration() -> dict[str, str]:
    """{NAME: its Default cell} from the tables of the README's Configuration section; a row
    naming several variables splits its Default cell on ', ' when the counts agree."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        parts = cells[1].split(", ")
        for index, name in enumerate(names):
            rows[name] = (
                parts[index] if len(parts) == len(names) else ("*" if len(names) > 1 else cells[1])
            )
    return rows


def literal_default(variable: Variable) -> str | None:
    """The one default the code uses, as written in the docs; None when computed."""
    values = {where: shown(default) for where, default in variable.defaults.items()}
    distinct = set(values.values())
    assert len(distinct) <= 1 or None in distinct, (
        f"{variable.name} has different defaults: {values}"
    )
    known = distinct - {None}
    return known.pop() if len(known) == 1 and None not in distinct else None


# --- the tests ----------------------------------------------------------------------------------


def test_the_scan_finds_what_the_scripts_and_settings_read():
    # If this fails, the scan above is broken and the other tests prove nothing.
    found = variables_read()
    expected = {
        "SECRET_KEY": "c3_app/settings.py",
        "SECRET_KEY_FALLBACKS": "c3_app/settings.py",
        "HOST": "asgi_stream.py",
        "APP_PORT": "scripts/run_local.py",
        "STREAM_PORT": "scripts/run_local.py",
        "STREAM_GRACEFUL_TIMEOUT": "start_stream.sh",
        "C3_REQUIRE_ASSETS": "scripts/build_assets.sh",
        "C3_ENV_FILE": "c3_app/settings.py",
        "PORT": "start_stream.sh",
        "ALLOWED_HOSTS": "render.yaml",
    }
    for name, where in expected.items():
        assert name in found and where in found[name].read_in, (name, found.get(name))
    assert shown(found["STREAM_GRACEFUL_TIMEOUT"].defaults["start_stream.sh"]) == "40"
    assert shown(found["SECURE_HSTS_SECONDS"].defaults["c3_app/settings.py"]) == "31536000"
    assert not {"ROOT", "FRONTEND", "VENDOR", "UV"} & set(found), "script-local names"


def test_every_variable_read_is_in_env_example():
    listed = env_example()
    missing = {
        name: sorted(v.read_in)
        for name, v in sorted(variables_read().items())
        if name not in listed
    }
    assert not missing, f".env.example lacks (variable: read in) {missing}"


def test_every_variable_read_is_in_the_readme_configuration():
    rows = readme_configuration()
    missing = {
        name: sorted(v.read_in) for name, v in sorted(variables_read().items()) if name not in rows
    }
    assert not missing, f"README 'Configuration' lacks (variable: read in) {missing}"


def test_env_example_lists_nothing_that_is_not_read():
    stale = sorted(set(env_example()) - set(variables_read()))
    assert not stale, f".env.example lists variables nothing reads: {stale}"


def test_env_example_shows_the_code_defaults():
    listed = env_example()
    wrong = {}
    for name, variable in variables_read().items():
        default = literal_default(variable)
        if default is None or name not in listed:
            continue
        if listed[name] != default:
            wrong[name] = f".env.example {listed[name]!r}, code {default!r}"
    assert not wrong, wrong


def test_readme_shows_the_code_defaults():
    rows = readme_configuration()
    wrong = {}
    for name, variable in variables_read().items():
        default = literal_default(variable)
        cell = rows.get(name, "*")
        if default in (None, "") or cell == "*":
            continue  # computed or empty defaults are described in words
        values = re.findall(r"`([^`]*)`", cell) or [cell]
        if default not in values:
            wrong[name] = f"README {cell!r}, code {default!r}"
    assert not wrong, wrong


def test_stream_graceful_timeout_keeps_the_grace_plus_ten_rule():
    found = variables_read()
    grace = float(shown(found["STREAM_SHUTDOWN_GRACE_SECONDS"].defaults["c3_app/settings.py"]))
    graceful = float(shown(found["STREAM_GRACEFUL_TIMEOUT"].defaults["start_stream.sh"]))
    assert graceful >= grace + 10, "start_stream.sh: keep the graceful timeout above grace + 10"
    assert float(env_example()["STREAM_GRACEFUL_TIMEOUT"]) >= grace + 10
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text(encoding="utf-8"))
    stream = next(s for s in blueprint["services"] if s["name"] == "c3-app-stream")
    assert stream["maxShutdownDelaySeconds"] > graceful
