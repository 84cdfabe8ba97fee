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

# Suites whose outcome depends on vmalloc_fault=: they take vmalloc faults,
# check the #PF gate and the oops path, or switch address spaces under the
# handler (sched).  They run under every version.  The others (boot,
# command line, harness, frames, page-table layout, interrupts, fuzzing)
# run the same code whatever the handler: once per paging mode, under the
# default version.  Cutting repetition, not coverage (issue 14: make test
# within 240 s).
VERSION_SUITES = ("traps", "vmalloc", "race", "sched", "soak", "leaks")
# Version-independent cases inside those suites, slow enough to matter:
# run under the default version, and the random vmalloc/vfree mix also
# under every version that maps like 5.8 (`eager*`: another mapping path).
# The area allocator's own cases (issue 28) drive a private allocator,
# never the kernel's, so the version and the memory size change nothing.
AREA_ALLOCATOR_ONLY = ("vmalloc.area_allocator_switches_representation_with_hysteresis",
                       "vmalloc.area_allocator_matches_the_trees_on_random_sequences")
DEFAULT_ONLY = ("sched.two_mms_10000_switches_each_sees_own_page",) + AREA_ALLOCATOR_ONLY
# The short soak mixes vmalloc, vfree, touches, threads and timers: its
# outcome depends on how vmalloc maps (2.4's way or 5.8's) and on whether a
# lazy fault can happen, and eager-lazy's fallback never runs in it (its
# sync leaves nothing stale without preemption), so it runs under the
# default and under `eager`, like the random vmalloc/vfree mix.
PER_MAPPING_PATH = ("vmalloc.random_10000_ops_keep_tree_consistent", "soak.short_soak_gives_everything_back")
# The memory sizes change what RAM and the vmalloc area hold, not parsing,
# the harness or interrupt delivery; the random vmalloc/vfree mix and the
# soak stay within a few MiB, far from either size's limits.
MEMORY_INDEPENDENT = ("cmdline.*", "harness.*", "irq.*", "fuzz.*", "soak.*",
                      "vmalloc.random_10000_ops_keep_tree_consistent") + AREA_ALLOCATOR_ONLY


def version_filter(version, default, first_eager):
    """The test= filter of the full-suite boot of `version`."""
    if version == default:
        return None
    cut = list(DEFAULT_ONLY)
    if version != first_eager:
        cut += PER_MAPPING_PATH
    return ",".join([s + ".*" for s in VERSION_SUITES] + ["-" + c for c in cut])


@dataclass(frozen=True)
class Job:
    name: str      # the test kernel
    mode: str      # the label inside [...]: paging mode, maybe ",version"
    path: str
    cmdline: str
    memory: int = None
    smp: int = None  # CPUs QEMU gives (None: one, QEMU's default)
    emu: str = None  # None: the run's emulator (EMU=); "bochs": the Bochs part

    @property
    def tag(self):
        """Its log's name under target/ktest/, and its key in durations.json."""
        return (f"{self.name}-{self.mode.replace(',', '-')}" + (f"-{self.memory}m" if self.memory else "")
                + (f"-smp{self.smp}" if self.smp else "") + (f"-{self.emu}" if self.emu else ""))

    @property
    def label(self):
        return (f"{self.name}[{self.mode}" + (f",{self.memory}M" if self.memory else "")
                + (f",smp={self.smp}" if self.smp else "") + (f",{self.emu}" if self.emu else "") + "]")


# The Bochs part of every QEMU `make test` (issue 26): the boot, the race
# suite of one paging mode under 2.4.1's handler and 2.4.5-pre2's, and
# one two-CPU case, on the second x86 implementation, so that a Bochs
# regression is caught on every run.  Not the question-1 pairs (20 s each
# on Bochs; `make experiments EMU=both` compares them) nor the engine's
# timing-heavy stress.
BOCHS_PART = (("legacy", "boot.*,race.*,-race.question1_every_pair_of_two_levels,-race.stress_*", None),
              ("sync", "race.*,-race.question1_every_pair_of_two_levels,-race.stress_*", None),
              ("legacy", "race.two_cpus_threads_*", 2))


def jobs(k, tests, filter_glob=None, cmdline="", bochs_part=False):
    """The boots for the test kernels `tests` [(name, path, is_test)];
    `k` is the kernel's constants (elf.Kernel); `bochs_part`: add the
    Bochs part (`BOCHS_PART`)."""
    out = []
    extra = f" {cmdline}" if cmdline else ""  # for every kernel
    for name, path, _ in tests:
        for mode in k.modes:
            test = (f" test={filter_glob}" if filter_glob else "") + extra
            if name == "ktest":
                # The whole suite under the default vmalloc_fault, the
                # version-dependent suites under every other one.
                first_eager = next((v for v in k.versions if v.startswith("eager")), None)
                # VMFAULT_VERSIONS=a,b narrows the run (as for `cargo test`).
                wanted = [x for x in os.environ.get("VMFAULT_VERSIONS", "").split(",") if x]
                for v in [x for x in k.versions if not wanted or x in wanted]:
                    only = version_filter(v, k.default_version, first_eager)
                    vtest = test if filter_glob or not only else f" test={only}{extra}"
                    out.append(Job(name, f"{mode},{v}", path, f"paging={mode} vmalloc_fault={v}{vtest}"))
                    if filter_glob:
                        # A filtered run boots two CPUs too, so that
                        # `make test TEST='race.two_cpus_*'` runs them.
                        out.append(Job(name, f"{mode},{v}", path, f"paging={mode} vmalloc_fault={v}{vtest}", smp=2))
            else:
                out.append(Job(name, mode, path, f"paging={mode}{test}"))
            if name == "ktest" and not filter_glob:
                out.append(Job(name, mode, path, f"paging={mode} test=frames.*,paging.*{extra}", LARGE_MEMORY))
                # Two CPUs (issue 15): the whole suite under the default
                # version, its threads on both CPUs, and the smp cases that
                # need the second.
                out.append(Job(name, f"{mode},{k.default_version}", path,
                               f"paging={mode} vmalloc_fault={k.default_version}{extra}", smp=2))
                # Every other version's suites with two CPUs too, the
                # two-CPU explorer among them (race.two_cpus_*).
                first_eager = next((x for x in k.versions if x.startswith("eager")), None)
                for v in [x for x in k.versions if x != k.default_version]:
                    only = version_filter(v, k.default_version, first_eager)
                    out.append(Job(name, f"{mode},{v}", path,
                                   f"paging={mode} vmalloc_fault={v} test={only}{extra}", smp=2))
                # nosmp with two CPUs there: the second is left alone.
                out.append(Job(name, f"{mode},nosmp", path, f"paging={mode} nosmp test=smp.*{extra}", smp=2))
                # The suite at 32 MiB, where the race cases size themselves
                # from free frames, and at MAXMEM (896 MiB), the direct
                # map's limit with a 104 MiB vmalloc area.  One correct
                # handler version: what memory size changes does not depend
                # on it.
                v = k.correct_versions[0]
                for mem in (SMALL_MEMORY, k.maxmem >> 20):
                    only = " test=" + ",".join("-" + s for s in MEMORY_INDEPENDENT)
                    out.append(Job(name, f"{mode},{v}", path, f"paging={mode} vmalloc_fault={v}{only}{extra}", mem))
            if name == "ktest" and not filter_glob and bochs_part and mode == "2level":
                for v, only, smp in BOCHS_PART:
                    out.append(Job(name, f"{mode},{v}", path, f"paging={mode} vmalloc_fault={v} test={only}{extra}",
                                   smp=smp, emu="bochs"))
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
