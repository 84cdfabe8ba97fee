#!/usr/bin/env python3
"""The batch gdb checks of `make test`, alone: gdb_check.py [KERNEL [MODE]]
(see vmfault_host/gdb.py)."""
import sys

from vmfault_host import gdb

if __name__ == "__main__":
    sys.exit(gdb.main(sys.argv))
