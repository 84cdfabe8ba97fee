#!/usr/bin/env python3
"""The strip pictures' checks alone: see vmfault_host/strips_checks.py."""
import sys

from vmfault_host import strips_checks

if __name__ == "__main__":
    sys.exit(strips_checks.main())
