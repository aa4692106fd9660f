"""The house rules, checked on every `make test`: the layers import downward only
(pyproject.toml [tool.importlinter], drawn in docs/architecture.md) — statically, and at
run time for the API, which must start without loading a single activity or workflow
module — the code is lint-clean, formatted ([tool.ruff]) and type-checks ([tool.mypy]), and
uv.lock still records a resolution of pyproject.toml's dependencies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_every_import_contract_is_kept():
    run = _run(str(BIN / "lint-imports"), "--no-cache")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_the_api_process_loads_no_activity_or_workflow_code():
    probe = (
        "import sys, api.main\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('activities', 'workflows', 'worker', 'cli')))"
    )
    run = _run(sys.executable, "-c", probe)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv",
    [("ruff", "check", "."), ("ruff", "format", "--check", "."), pytest.param(("mypy",), marks=pytest.mark.slow)],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_the_code_is_lint_clean_formatted_and_typed(argv):
    run = _run(str(BIN / argv[0]), *argv[1:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_the_lock_matches_the_declared_dependencies(tmp_path):
    """`make` installs uv.lock's versions, pyproject.toml declares the ranges: a range
    changed without `uv lock` fails here, not on someone else's machine. Offline, from an
    empty cache: the lock alone must satisfy the ranges."""
    run = subprocess.run(
        [str(BIN / "uv"), "lock", "--check", "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "UV_CACHE_DIR": str(tmp_path / "uv-cache")},
    )
    assert run.returncode == 0, (
        "uv.lock does not resolve pyproject.toml's dependencies any more: run `uv lock` "
        "(offline, uv reports the missing resolution as packages not in its cache)\n"
        + run.stdout[-3000:]
        + run.stderr[-3000:]
    )


def test_make_installs_with_the_uv_that_wrote_the_lock():
    """The Makefile's uv is pinned to the one uv.lock records: a newer uv reading the lock
    differently must not fail `make`'s install."""
    pinned = re.search(r"'uv==([0-9.]+)'", (ROOT / "Makefile").read_text())
    locked = re.search(r'\[\[package\]\]\nname = "uv"\nversion = "([0-9.]+)"', (ROOT / "uv.lock").read_text())
    assert pinned and locked
    assert pinned.group(1) == locked.group(1)
