"""``python -m authsome``: the README's main command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import authsome
from authsome.cli import main

SRC = str(Path(authsome.__file__).parent.parent)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", "authsome", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_demo_runs_and_prints_the_recorded_usage() -> None:
    result = _run("demo")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for key in ("authsome.users.created", "authsome.sessions.created", "authsome.users.active"):
        assert key in result.stdout
    assert "Traceback" not in result.stdout


def test_unknown_command_exits_non_zero_without_a_traceback() -> None:
    result = _run("frobnicate")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "invalid choice" in result.stderr


def test_main_returns_zero_for_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    assert "usage recorded" in capsys.readouterr().out
