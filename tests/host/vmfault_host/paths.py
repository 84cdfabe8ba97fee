"""Where the repository and the build's output are."""
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TARGET = os.path.join(ROOT, "target")
LOGDIR = os.path.join(TARGET, "ktest")
GDB_HELPERS = os.path.join(ROOT, "tests", "host", "gdb", "vmfault-gdb.py")
