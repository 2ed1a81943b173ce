"""``python -m data_builders build --config recipes/tiny/data.yaml --out data/tiny`` (see ``cli.py``)."""

import sys

from data_builders.cli import main

if __name__ == "__main__":
    sys.exit(main())
