"""A new machine gets what CI tested: CI runs the README's commands in a venv built from nothing, every
dependency has a tested upper bound, and the lock that setup.sh installs through sits inside those bounds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    block = re.search(r"## Two commands\s+```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md lost its 'Two commands' block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def _requirements() -> list[Requirement]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [spec for specs in project["optional-dependencies"].values() for spec in specs]
    return [Requirement(spec) for spec in project["dependencies"] + extras]


def _lock() -> dict[str, str]:
    lines = (ROOT / "scripts" / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pins}


def test_ci_runs_the_readme_commands_in_a_venv_built_from_nothing() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    venv_made = next((i for i, line in enumerate(ci) if "-m venv" in line), None)
    activated = next((i for i, line in enumerate(ci) if line.startswith(". ") and "/bin/activate" in line), None)
    assert venv_made is not None and activated is not None, ".ci/run must build and activate a fresh venv"
    commands = _readme_commands()
    assert len(commands) == 2
    for command in commands:
        assert command in ci, f".ci/run does not run the README's command {command!r}"
        assert ci.index(command) > activated > venv_made, f"{command!r} runs outside the fresh venv"


def test_every_dependency_has_a_tested_upper_bound() -> None:
    unbounded = [str(r) for r in _requirements() if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert not unbounded, f"no tested upper bound: {unbounded}"


def test_the_lock_sits_inside_pyprojects_bounds() -> None:
    lock = _lock()
    assert "torch" not in lock, "torch must stay out of the lock: setup.sh picks its CPU or CUDA build"
    cpu_torch = re.search(r"torch==([0-9.]+)", (ROOT / "scripts" / "setup.sh").read_text()).group(1)
    for requirement in _requirements():
        name = canonicalize_name(requirement.name)
        if name == "torch":
            assert requirement.specifier.contains(cpu_torch), f"setup.sh's torch=={cpu_torch} is outside {requirement}"
            continue
        assert name in lock, f"{requirement.name} is not in scripts/constraints.txt"
        assert requirement.specifier.contains(lock[name], prereleases=True), (
            f"the lock's {requirement.name}=={lock[name]} is outside pyproject.toml's {requirement}")


def test_every_file_the_package_reads_ships_in_the_wheel() -> None:
    """A non-editable install holds only .py files and the package-data globs: a template or a dashboard file
    left out works in a checkout and is missing on every user's machine."""
    import tomllib

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    unshipped = []
    for path in sorted((ROOT / "tunesmith").rglob("*")):
        if not path.is_file() or path.suffix in (".py", ".pyc"):
            continue
        relative = path.relative_to(ROOT)
        shipped = any(relative.relative_to(Path(*package.split("."))).match(glob)
                      for package, globs in package_data.items() for glob in globs
                      if relative.is_relative_to(Path(*package.split("."))))
        if not shipped:
            unshipped.append(str(relative))
    assert not unshipped, f"add these to [tool.setuptools.package-data] in pyproject.toml: {unshipped}"
