"""authsome.ledger imports nothing from the rest of authsome (only the adapter knows both)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import authsome.ledger

PACKAGE = Path(authsome.ledger.__file__).resolve().parent


def imported_modules(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(PACKAGE.parent.parent).with_suffix("")
    here = list(rel.parts if path.name != "__init__.py" else rel.parts[:-1])
    if path.name != "__init__.py":
        here = here[:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                names.append(".".join([*base, node.module or ""]).rstrip("."))
            else:
                names.append(node.module or "")
    return names


def test_ledger_sources_import_only_the_ledger_and_the_stdlib() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) >= 8
    offenders = {
        f"{src.relative_to(PACKAGE)}: {name}"
        for src in sources
        for name in imported_modules(src)
        if (name == "authsome" or name.startswith("authsome."))
        and not (name == "authsome.ledger" or name.startswith("authsome.ledger."))
    }
    assert not offenders
    third_party = {
        f"{src.relative_to(PACKAGE)}: {name}"
        for src in sources
        for name in imported_modules(src)
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "authsome"
    }
    # stdlib only: nothing to install for the embedded ledger. The PostgreSQL store
    # imports its optional driver lazily (see test_postgres_driver_is_optional).
    assert third_party <= {"stores/postgres.py: psycopg", "stores/postgres.py: psycopg_pool"}


def test_postgres_driver_is_optional() -> None:
    # Without psycopg installed the ledger imports, and only PostgresStore() complains,
    # naming the extra to install.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('psycopg', 'psycopg_pool'):\n"
        "            raise ImportError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import authsome.ledger as L\n"
        "assert 'psycopg' not in sys.modules\n"
        "try:\n"
        "    L.PostgresStore('host=127.0.0.1')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "authsome-engine[postgres]" in out.stdout


def test_importing_the_ledger_loads_no_other_authsome_module(tmp_path: Path) -> None:
    # Give the ledger an empty parent package so authsome/__init__.py cannot pull anything in.
    shim = tmp_path / "authsome"
    shim.mkdir()
    (shim / "__init__.py").write_text("")
    os.symlink(PACKAGE, shim / "ledger")
    code = (
        "import sys, authsome.ledger\n"
        "bad = [m for m in sys.modules if m.startswith('authsome.')"
        " and not m.startswith('authsome.ledger')]\n"
        "print(','.join(bad))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
