"""``python -m fakegpt``: the same command line as ``fakegpt``."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
