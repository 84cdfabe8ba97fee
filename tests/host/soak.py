#!/usr/bin/env python3
"""`make soak`-style entry point: see vmfault_host/soak.py."""
import sys

from vmfault_host import soak

if __name__ == "__main__":
    sys.exit(soak.main())
