"""Race several interpreters against one store: what the multi-process tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import authsome

__all__ = ["child_env", "race_processes"]


def child_env() -> dict[str, str]:
    """The environment of a child interpreter that imports this checkout's authsome."""
    source_root = str(Path(authsome.__file__).resolve().parents[1])
    inherited = os.environ.get("PYTHONPATH")
    path = source_root if not inherited else os.pathsep.join([source_root, inherited])
    return {**os.environ, "PYTHONPATH": path}


def race_processes(script: str, argvs: Sequence[Sequence[str]], *, timeout: float) -> list[str]:
    """Run ``script`` in one interpreter per argument list. Each prints ``ready`` and
    waits for ``go``, which all get at once, so they race; what each printed then.
    Every child must exit with 0 (its stderr is the failure's message)."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for argv in argvs
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results = [child.communicate(timeout=timeout) for child in children]
    errors = [err for _out, err in results if err.strip()]
    assert [child.returncode for child in children] == [0] * len(children), errors
    return [out.strip() for out, _err in results]
