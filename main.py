"""Run editjudge from a checkout: ``python main.py --config config.yaml`` (``python main.py --help``).

The package's source lives in ``src/`` and installs as ``editjudge``; this file makes that folder
the ``editjudge`` package without installing it, so the checkout's own code always runs. Spawned
workers import this file again and get the same package.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def use_checkout() -> None:
    """Import this checkout's ``src/`` as ``editjudge`` (once per process)."""
    if "editjudge" in sys.modules:
        return
    source = Path(__file__).resolve().parent / "src"
    spec = importlib.util.spec_from_file_location("editjudge", source / "__init__.py",
                                                  submodule_search_locations=[str(source)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["editjudge"] = module
    spec.loader.exec_module(module)


use_checkout()

if __name__ == "__main__":
    from editjudge.cli import main

    raise SystemExit(main())
