#!/usr/bin/env python3
"""`make quantum`: see vmfault_host/quantum.py."""
import sys

from vmfault_host import quantum

if __name__ == "__main__":
    sys.exit(quantum.main())
