#!/usr/bin/env python3
"""`make bench`-style entry point: see vmfault_host/bench.py."""
import sys

from vmfault_host import bench

if __name__ == "__main__":
    sys.exit(bench.main())
