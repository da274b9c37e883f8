"""`python -m proxy`: the same entry point as the `slotless` console script."""

from proxy.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
