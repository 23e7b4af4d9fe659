"""``python -m pairsim``: the command line."""

from pairsim.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
