"""``python -m editjudge --config config.yaml``: the same command as ``editjudge`` and ``main.py``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
