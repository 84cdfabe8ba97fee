#!/usr/bin/env python3
"""The core crate's module floors: see vmfault_host/core_floors.py."""
import sys

from vmfault_host import core_floors

if __name__ == "__main__":
    sys.exit(core_floors.main())
