"""The boots of `make test`: every test kernel x paging mode, the whole
suite under every vmalloc_fault= version, the memory layer again with more
RAM and the suite at the memory sizes the kernel promises to handle; and
the order they start in, longest first by the last full run's times."""
import json
import os
from dataclasses import dataclass

from vmfault_host.paths import LOGDIR

# Extra sizes (MiB) the suite boots with besides qemu.MEMORY: the smallest
# machine the README promises to run on, and the direct map's limit.
SMALL_MEMORY = 32
# The memory layer again with this much: a bigger direct map, more page
# tables, the frame bitmap further filled.
LARGE_MEMORY = 512
DURATIONS = os.path.join(LOGDIR, "durations.json")


@dataclass(frozen=True)
class Job:
    name: str      # the test kernel
    mode: str      # the label inside [...]: paging mode, maybe ",version"
    path: str
    cmdline: str
    memory: int = None

    @property
    def tag(self):
        """Its log's name under target/ktest/, and its key in durations.json."""
        return f"{self.name}-{self.mode.replace(',', '-')}" + (f"-{self.memory}m" if self.memory else "")

    @property
    def label(self):
        return f"{self.name}[{self.mode}" + (f",{self.memory}M" if self.memory else "") + "]"


def jobs(k, tests, filter_glob=None, cmdline=""):
    """The boots for the test kernels `tests` [(name, path, is_test)];
    `k` is the kernel's constants (elf.Kernel)."""
    out = []
    extra = f" {cmdline}" if cmdline else ""  # for every kernel
    for name, path, _ in tests:
        for mode in k.modes:
            test = (f" test={filter_glob}" if filter_glob else "") + extra
            if name == "ktest":
                # The whole suite under every historical vmalloc_fault.
                for v in k.versions:
                    out.append(Job(name, f"{mode},{v}", path, f"paging={mode} vmalloc_fault={v}{test}"))
            else:
                out.append(Job(name, mode, path, f"paging={mode}{test}"))
            if name == "ktest" and not filter_glob:
                out.append(Job(name, mode, path, f"paging={mode} test=frames.*,paging.*{extra}", LARGE_MEMORY))
                # The suite at 32 MiB, where the race cases size themselves
                # from free frames, and at MAXMEM (896 MiB), the direct
                # map's limit with a 104 MiB vmalloc area.  One correct
                # handler version: what memory size changes does not depend
                # on it.  In two-level mode the exhaustive explorer (a
                # minute of single-stepping, the same 4704 instructions at
                # any size) runs at MEMORY only; its every-8th-boundary
                # siblings, on the same 16 MiB victim area, run here.
                v = k.correct_versions[0]
                for mem in (SMALL_MEMORY, k.maxmem >> 20):
                    only = " test=-race.explorer_thread_context" if mode == "2level" else ""
                    out.append(Job(name, f"{mode},{v}", path, f"paging={mode} vmalloc_fault={v}{only}{extra}", mem))
    return out


def start_order(jobs_):
    """Indices of `jobs_`, longest boot first by the times the last full run
    took (unknown ones first of all): two-level sync with the exhaustive
    explorer takes a minute or more, and started last it would run alone
    while the other worker idles."""
    try:
        with open(DURATIONS) as f:
            past = json.load(f)
    except (OSError, ValueError):
        past = {}
    return sorted(range(len(jobs_)), key=lambda i: -past.get(jobs_[i].tag, float("inf")))


def save_durations(durations):
    """{tag: seconds} of a full run, for the next run's start_order."""
    with open(DURATIONS, "w") as f:
        json.dump(durations, f, indent=1, sort_keys=True)
