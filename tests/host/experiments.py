#!/usr/bin/env python3
"""`make experiments`-style entry point: see vmfault_host/experiments.py."""
import sys

from vmfault_host import experiments

if __name__ == "__main__":
    sys.exit(experiments.main())
