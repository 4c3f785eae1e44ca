"""The dependency set: ranges in requirements*.txt, the hashed locks generated from them
(scripts/lock_requirements.sh, `make lock`), the environment the tests run in, and the
packages the code imports.

When one of these fails after you added or removed a dependency: declare it (with an upper
bound) in requirements.txt (runtime) or requirements-dev.txt (tests, tools), run `make lock`,
then `make install`.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RUNTIME, DEV = "requirements.txt", "requirements-dev.txt"
LOCKS = {RUNTIME: "requirements.lock.txt", DEV: "requirements-dev.lock.txt"}
# Code that is deployed (may import runtime requirements only), and code that only tests
# and local tooling run.
RUNTIME_CODE = ["ai_features", "c3_app", "asgi_stream.py", "manage.py"]
DEV_CODE = ["tests", "scripts"]
# Installed by `python -m venv` itself, outside any lock.
VENV_BOOTSTRAP = {"pip", "setuptools", "wheel"}


@dataclass(frozen=True)
class Locked:
    name: str
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]
    via: tuple[str, ...]

    def applies(self) -> bool:
        return self.marker is None or self.marker.evaluate()


def requirements(filename: str) -> list[Requirement]:
    """The requirements a file declares itself (its `-r` includes are listed separately)."""
    found = []
    for line in (ROOT / filename).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            found.append(Requirement(line))
    return found


def declared(filename: str) -> list[Requirement]:
    """Its own requirements and those of the files it includes with `-r`."""
    found = requirements(filename)
    for line in (ROOT / filename).read_text(encoding="utf-8").splitlines():
        if line.startswith("-r "):
            found += declared(line.removeprefix("-r ").strip())
    return found


def lock_entries(filename: str) -> list[Locked]:
    text = (ROOT / filename).read_text(encoding="utf-8")
    # One entry: `name==version [; marker] \` then `--hash=...` lines, then `# via ...`.
    pattern = re.compile(
        r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?: ; (?P<marker>[^\\\n]+?))?"
        r" *\\\n(?P<hashes>(?: +--hash=\S+(?: \\)?\n)+)(?: +# via (?P<via>.*))?",
        re.M,
    )
    entries = []
    for match in pattern.finditer(text):
        marker = match.group("marker")
        entries.append(
            Locked(
                name=canonicalize_name(match.group("name")),
                version=Version(match.group("version")),
                marker=Marker(marker) if marker else None,
                hashes=tuple(re.findall(r"--hash=(\S+)", match.group("hashes"))),
                via=tuple(v.strip() for v in (match.group("via") or "").split(",") if v.strip()),
            )
        )
    # Every package line was parsed: nothing unhashed or malformed slips past the pattern.
    package_lines = re.findall(r"^[A-Za-z0-9].*$", text, re.M)
    assert len(entries) == len(package_lines), f"{filename}: unparsed lines in {package_lines}"
    return entries


def installed_distributions() -> dict[str, Version]:
    return {
        canonicalize_name(dist.metadata["Name"]): Version(dist.version)
        for dist in importlib.metadata.distributions()
    }


def imported_top_level_modules(paths: list[str]) -> set[str]:
    modules: set[str] = set()
    for entry in paths:
        path = ROOT / entry
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    return modules


def third_party_distributions(modules: set[str]) -> dict[str, set[str]]:
    """{distribution: modules of it imported} for modules that are neither the standard
    library nor this repository's own packages."""
    # Packages (a folder of modules, with or without __init__.py: scripts/ is a namespace
    # package) and top-level modules of this repository.
    own = {p.name for p in ROOT.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    own |= {p.stem for p in ROOT.glob("*.py")}
    providers = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for module in sorted(modules - set(sys.stdlib_module_names) - own - {"__future__"}):
        assert module in providers, f"`import {module}`: no installed distribution provides it"
        for distribution in providers[module]:
            found.setdefault(canonicalize_name(distribution), set()).add(module)
    return found


# --- the ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", [RUNTIME, DEV])
def test_every_range_has_an_upper_bound(filename):
    for requirement in requirements(filename):
        upper = [s for s in requirement.specifier if s.operator in ("<", "<=", "==", "~=")]
        assert upper, f"{filename}: {requirement} has no upper bound"


# --- the locks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", [RUNTIME, DEV])
def test_lock_pins_every_requirement_within_its_range(filename):
    lock = LOCKS[filename]
    entries = lock_entries(lock)
    for requirement in declared(filename):
        name = canonicalize_name(requirement.name)
        pinned = [e for e in entries if e.name == name]
        assert pinned, f"{requirement} is not in {lock}: run `make lock`"
        for entry in pinned:
            assert requirement.specifier.contains(entry.version, prereleases=True), (
                f"{lock} pins {name}=={entry.version} outside {requirement}: run `make lock`"
            )


@pytest.mark.parametrize("filename", [RUNTIME, DEV])
def test_lock_holds_nothing_the_requirements_dropped(filename):
    # uv notes `-r <file>` under every package a requirements file asked for directly.
    lock = LOCKS[filename]
    names = {canonicalize_name(r.name) for r in declared(filename)}
    for entry in lock_entries(lock):
        if any(via.startswith("-r ") for via in entry.via):
            assert entry.name in names, f"{lock}: {entry.name} is no longer required"


@pytest.mark.parametrize("lock", LOCKS.values())
def test_lock_pins_exact_versions_with_sha256_hashes(lock):
    entries = lock_entries(lock)
    assert entries
    for entry in entries:
        assert entry.hashes, f"{lock}: {entry.name} has no hash"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in entry.hashes), entry


def test_tests_run_against_the_deployed_versions():
    dev = {(e.name, e.marker and str(e.marker)): e for e in lock_entries(LOCKS[DEV])}
    for entry in lock_entries(LOCKS[RUNTIME]):
        twin = dev.get((entry.name, entry.marker and str(entry.marker)))
        assert twin is not None, f"{entry.name} is deployed but not in {LOCKS[DEV]}"
        assert (twin.version, twin.hashes) == (entry.version, entry.hashes), entry.name


def test_installed_environment_is_exactly_the_dev_lock():
    """What `make install` gives: the locked versions, and nothing else."""
    installed = installed_distributions()
    wanted = {e.name: e.version for e in lock_entries(LOCKS[DEV]) if e.applies()}
    wrong = {
        name: f"installed {installed.get(name)}, locked {version}"
        for name, version in wanted.items()
        if installed.get(name) != version
    }
    assert not wrong, f"the environment does not match the lock (make install): {wrong}"
    extra = sorted(set(installed) - set(wanted) - VENV_BOOTSTRAP)
    assert not extra, f"installed but not locked (declare them, then make lock): {extra}"


# --- the imports ----------------------------------------------------------------------------------


def test_deployed_code_imports_only_runtime_requirements():
    runtime = {e.name for e in lock_entries(LOCKS[RUNTIME])}
    direct = {canonicalize_name(r.name) for r in declared(RUNTIME)}
    for distribution, modules in third_party_distributions(
        imported_top_level_modules(RUNTIME_CODE)
    ).items():
        assert distribution in runtime, f"{modules} ({distribution}) is not deployed"
        assert distribution in direct, f"{modules}: declare {distribution} in {RUNTIME}"


def test_tests_and_scripts_import_only_declared_requirements():
    direct = {canonicalize_name(r.name) for r in declared(DEV)}
    for distribution, modules in third_party_distributions(
        imported_top_level_modules(DEV_CODE)
    ).items():
        assert distribution in direct, f"{modules}: declare {distribution} in {DEV}"


def test_settings_name_only_declared_runtime_packages(settings):
    """Dotted paths in settings (apps, middleware, storages, log formatters) are imports too."""
    paths = [*settings.INSTALLED_APPS, *settings.MIDDLEWARE]
    paths += [storage["BACKEND"] for storage in settings.STORAGES.values()]
    for section in ("formatters", "filters", "handlers"):
        for config in settings.LOGGING.get(section, {}).values():
            paths += [config[key] for key in ("()", "class") if key in config]
    direct = {canonicalize_name(r.name) for r in declared(RUNTIME)}
    modules = {path.split(".")[0] for path in paths}
    for distribution, names in third_party_distributions(modules).items():
        assert distribution in direct, f"settings name {names}: declare {distribution}"


# --- the update bot ---------------------------------------------------------------------------


def test_update_bot_watches_the_python_and_npm_manifests():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text(encoding="utf-8"))
    assert config["version"] == 2
    watched = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert {("pip", "/"), ("npm", "/frontend")} <= watched
    for ecosystem, directory in watched:
        manifest = {"pip": RUNTIME, "npm": "package.json"}[ecosystem]
        assert (ROOT / directory.strip("/") / manifest).is_file(), (ecosystem, directory)


# --- the front-end libraries --------------------------------------------------------------------


def test_readme_lists_each_frontend_library_at_its_locked_version_with_a_licence():
    package = json.loads((ROOT / "frontend" / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((ROOT / "frontend" / "package-lock.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name}: pin an exact version"
        locked = lock["packages"][f"node_modules/{name}"]
        assert locked["version"] == version and locked["integrity"].startswith("sha512-")
        row = re.search(
            rf"^\| {re.escape(name)} {re.escape(version)}\b[^|]*\|[^|]+\|([^|]+)\|", readme, re.M
        )
        assert row, f"README 'Dependencies and why' lacks a row for {name} {version}"
        assert locked["license"].strip("()").split(" OR ")[0] in row.group(1)
