#!/usr/bin/env python3
"""`make mutants`-style entry point: see vmfault_host/mutants.py."""
import sys

from vmfault_host import mutants

if __name__ == "__main__":
    sys.exit(mutants.main())
