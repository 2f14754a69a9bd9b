#!/usr/bin/env python3
"""comprobust's one command line: `python launch.py --help` lists the commands."""

import sys

from comprobust.cli import main

if __name__ == "__main__":
    sys.exit(main())
