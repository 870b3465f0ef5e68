"""The sample plans file that ``authsome plans example`` prints.

It ships inside the package as ``plans_example.toml`` (a clone's
``examples/plans.toml`` is not in the wheel), and the demo's plans are read from it,
so the sample always describes plans that load.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["example_plans"]

_FILE = "plans_example.toml"


def example_plans() -> str:
    """The commented sample plans file (TOML text)."""
    return resources.files("authsome").joinpath(_FILE).read_text(encoding="utf-8")
