"""``python -m analyses.sweep ...``: the same as ``neurosim sweep ...``."""

from analyses.sweep.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
