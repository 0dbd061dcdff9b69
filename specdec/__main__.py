"""`python -m specdec`: the command line."""

import sys

from specdec.cli import main

if __name__ == "__main__":
    sys.exit(main())
