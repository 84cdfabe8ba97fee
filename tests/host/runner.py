#!/usr/bin/env python3
"""Host side of vmfault (`make test/run/iso/gdb`, and cargo's target
runner): see vmfault_host/cli.py."""
import sys

from vmfault_host import cli

if __name__ == "__main__":
    sys.exit(cli.main())
