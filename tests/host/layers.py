#!/usr/bin/env python3
"""`make layers`-style entry point: see vmfault_host/layers.py."""
import sys

from vmfault_host import layers

if __name__ == "__main__":
    sys.exit(layers.main())
