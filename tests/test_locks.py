"""The two locks match pyproject.toml, name no package index, and the service's lock alone migrates and serves."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from src.core.config import PROJECT_ROOT
from tests.conftest import first_answer, free_port, sqlite_urls, url_variables

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(line) for line in PYPROJECT["dependencies"]]
DEVELOPMENT = [Requirement(line) for line in PYPROJECT["optional-dependencies"]["dev"]]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)", re.MULTILINE)
# pip-compile marks what pyproject.toml asks for directly, on the line or in a "via" list.
DIRECT = re.compile(
    r"^([A-Za-z0-9._-]+)==\S+ \\\n(?:\s+--hash=\S+(?: \\)?\n)*(\s+# via.*(?:\n\s+#   .*)*)", re.MULTILINE
)


def pins(lock: str) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall((PROJECT_ROOT / lock).read_text())}


def asked_for(lock: str) -> set[str]:
    text = (PROJECT_ROOT / lock).read_text()
    return {canonicalize_name(name) for name, via in DIRECT.findall(text) if "(pyproject.toml)" in via}


@pytest.mark.parametrize(
    ("lock", "requirements"), [("requirements.lock", RUNTIME), ("requirements-dev.lock", RUNTIME + DEVELOPMENT)]
)
def test_each_lock_pins_what_pyproject_asks_and_nothing_else_directly(
    lock: str, requirements: list[Requirement]
) -> None:
    pinned = pins(lock)

    unsatisfied = [
        str(requirement)
        for requirement in requirements
        if not requirement.specifier.contains(pinned.get(canonicalize_name(requirement.name), "0"), prereleases=True)
    ]
    assert not unsatisfied, f"{lock} does not satisfy {unsatisfied}: run make lock"
    assert asked_for(lock) == {canonicalize_name(requirement.name) for requirement in requirements}, "run make lock"


def test_the_development_lock_keeps_the_service_lock_pins() -> None:
    runtime, development = pins("requirements.lock"), pins("requirements-dev.lock")

    assert {name: development.get(name) for name in runtime} == runtime
    assert not {"pytest", "mypy", "ruff", "schemathesis", "hypothesis"} & runtime.keys()


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_locks_carry_hashes_and_no_package_index(lock: str) -> None:
    text = (PROJECT_ROOT / lock).read_text()
    hashed = {
        canonicalize_name(name) for name in re.findall(r"^([A-Za-z0-9._-]+)==\S+ \\\n\s+--hash=sha256:", text, re.M)
    }

    assert set(pins(lock)) - hashed == set()
    assert not re.search(r"--(extra-)?index-url|--find-links|--trusted-host|://", text)


def test_the_service_lock_alone_migrates_and_serves(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # No pip of its own and no bytecode written ahead: this pip installs into it, in a quarter of the time.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-compile", "-r", "requirements.lock"], cwd=PROJECT_ROOT, check=True, timeout=300)
    env = os.environ | {"SETTINGS_FILE": os.devnull, "ENVIRONMENT": "local"}
    env |= url_variables(sqlite_urls(tmp_path))
    migrated = subprocess.run(
        [python, "-m", "src.migrate", "upgrade"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    server = subprocess.Popen([python, "-m", "src.serve", "--port", str(port)], cwd=PROJECT_ROOT, env=env)
    try:
        ready = first_answer(server, f"http://127.0.0.1:{port}/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
    finally:
        server.terminate()
        server.wait(timeout=30)
