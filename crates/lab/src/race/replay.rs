//! `race=HANDLE[,HANDLE...]`: replay explored runs by name.  A handle
//! names one run of one explorer, `SCENARIO:VERSION:MODE:NCPU:K`, e.g.
//! `thread:legacy:2level:1cpu:21` (race.md's `replay` column gives one
//! per row): the scenario, the `vmalloc_fault=` version, the paging mode
//! and the CPU count the kernel must have booted with, and the boundary
//! k where the other party comes in.  Nothing else is needed to fix the
//! interleaving: every explorer is deterministic in k (with two CPUs, B
//! runs its whole part while A waits at k, `handoff.rs`).
//!
//! Each replay explores the scenario twice with `Boundaries::Only(k)`:
//! once quiet, exactly as the explorer runs it (its dry run, then run k:
//! the run race.md counts), then once narrated (`narrate.rs`: the
//! boundary's instruction, who comes in, the entries of both address
//! spaces before and after each party, the oops; `make gdb RACE=` stops
//! at `narrate::race_boundary_reached`).  It ends with the outcome, what
//! it means in the handler's own terms, and whether the narrated run
//! ended as the explorer's did; the boot exits with success only if
//! every replayed run did.  A handle the booted kernel cannot run (a
//! boundary past the end, one where no interrupt can land, another
//! version or CPU count than booted) is refused with the values it could
//! have had.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::engine::Boundaries;
use super::explorer::{explore, Outcome, Report, Variant};
use super::fork_race::{explore_fork, explore_fork_sleeps, ForkRun};
use super::narrate;
use super::outcome::Mark;
use super::point3::{explore_point3, CONFIGS};
use super::regression2020::{explore_2020, Cpus};
use super::torn::{explore_torn, Write};
use super::window::explore_window;
use vmfault::arch::x86::smp;
use vmfault::mm::fault::{self, BadArea};
use vmfault::mm::pgtable::mode;
use vmfault::mm::{PagingMode, VmallocFaultVersion};
use vmfault::println;

/// What an explorer can be asked to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// The seed's race 2: a nested interrupt in a thread's vmalloc fault.
    Thread,
    /// The same, the fault taken inside the PIT handler.
    Irq,
    /// Seed question 1: a second interrupt inside the nested fault.
    Nested2,
    /// The context-switch window, prev a thread with an mm.
    Switch,
    /// The same, prev a kernel thread (2.4's NULL `active_mm`).
    SwitchKthread,
    /// Linux's 2020 regression: B maps and touches inside A's map.
    R2020,
    /// Cox and Hemment: CPU B, a thread of A's mm, in A's fault.
    Threads,
    /// Andrea's "can't happen": CPU B in another process.
    Processes,
    /// The seed's point 3, one of `point3::CONFIGS`.
    Point3(usize),
    /// A torn PAE entry: CPU B reads it inside this writer.
    Torn(Write),
    /// 2.4.0-test10-pre1: B's vmalloc and `set_pgdir` at boundary k of
    /// A's fork (two CPUs).
    Fork,
    /// The same on one CPU: B runs where A's fork sleeps, sleep point k.
    ForkSleep,
}

/// A scenario's handle name, the CPU counts and paging modes it runs in
/// (as `make experiments` boots it; the host reads both lists).
pub struct Entry {
    pub name: &'static str,
    pub scenario: Scenario,
    pub cpus: &'static str,
    pub modes: &'static str,
}

const fn entry(name: &'static str, scenario: Scenario, cpus: &'static str) -> Entry {
    Entry {
        name,
        scenario,
        cpus,
        modes: match scenario {
            // A two-level entry is one 32-bit store: nothing to tear.
            Scenario::Torn(_) => "pae",
            _ => "2level pae",
        },
    }
}

/// Every scenario, by its handle name.
pub const SCENARIOS: [Entry; NR_SCENARIOS] = [
    entry("thread", Scenario::Thread, "1"),
    entry("irq", Scenario::Irq, "1"),
    entry("nested2", Scenario::Nested2, "1"),
    entry("switch", Scenario::Switch, "1"),
    entry("switch_kthread", Scenario::SwitchKthread, "1"),
    entry("r2020", Scenario::R2020, "1 2"),
    entry("threads", Scenario::Threads, "2"),
    entry("processes", Scenario::Processes, "2"),
    entry("point3_242", Scenario::Point3(0), "2"),
    entry("point3_242_low", Scenario::Point3(1), "2"),
    entry("point3_seed", Scenario::Point3(2), "2"),
    entry("point3_seed_low", Scenario::Point3(3), "2"),
    entry("torn_set_pmd", Scenario::Torn(Write::SetPmd), "2"),
    entry("torn_pmd_clear", Scenario::Torn(Write::PmdClear), "2"),
    entry("torn_set_pte", Scenario::Torn(Write::SetPte), "2"),
    entry("torn_pte_clear", Scenario::Torn(Write::PteClear), "2"),
    entry(
        "torn_set_pte_over_present",
        Scenario::Torn(Write::SetPteOverPresent),
        "2",
    ),
    entry(
        "torn_ptep_get_and_clear",
        Scenario::Torn(Write::PtepGetAndClear),
        "2",
    ),
    entry(
        "torn_low_then_high",
        Scenario::Torn(Write::LowThenHigh),
        "2",
    ),
    entry("fork", Scenario::Fork, "2"),
    entry("fork_sleep", Scenario::ForkSleep, "1 2"),
];

const NR_SCENARIOS: usize = 21;

/// One field of every `SCENARIOS` entry, in order: a list the host reads.
macro_rules! column {
    ($field:ident) => {{
        let mut out = [""; NR_SCENARIOS];
        let mut i = 0;
        while i < NR_SCENARIOS {
            out[i] = SCENARIOS[i].$field;
            i += 1;
        }
        out
    }};
}

const SCENARIO_NAMES: [&str; NR_SCENARIOS] = column!(name);
const SCENARIO_CPUS: [&str; NR_SCENARIOS] = column!(cpus);
const SCENARIO_MODES: [&str; NR_SCENARIOS] = column!(modes);

use vmfault::host_abi::{export, list, list_len};

export! {
    /// Replay scenario names (`race=`), in `SCENARIOS` order.
    VMFAULT_RACE_SCENARIOS: [u8; list_len(&SCENARIO_NAMES)] = list(&SCENARIO_NAMES);
    /// Each one's CPU counts ("1", "2", "1 2").
    VMFAULT_RACE_SCENARIO_CPUS: [u8; list_len(&SCENARIO_CPUS)] = list(&SCENARIO_CPUS);
    /// Each one's paging modes ("2level pae", "pae").
    VMFAULT_RACE_SCENARIO_MODES: [u8; list_len(&SCENARIO_MODES)] = list(&SCENARIO_MODES);
}

impl Scenario {
    fn index(self) -> usize {
        SCENARIOS
            .iter()
            .position(|e| e.scenario == self)
            .unwrap_or(0)
    }

    /// Whether it runs on `cpus` CPUs, and in `mode`.
    pub fn runs_on(self, cpus: u8, mode: PagingMode) -> bool {
        let i = self.index();
        SCENARIO_CPUS[i]
            .split(' ')
            .any(|c| c.parse::<u8>() == Ok(cpus))
            && SCENARIO_MODES[i].split(' ').any(|m| m == mode.name())
    }

    pub fn name(self) -> &'static str {
        SCENARIOS[self.index()].name
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Thread => {
                "the seed's race 2: a nested interrupt inside a thread's vmalloc fault"
            }
            Scenario::Irq => {
                "the seed's race 2 with the fault taken inside the PIT interrupt handler"
            }
            Scenario::Nested2 => {
                "the seed's question 1: page_fault -> irq -> vmalloc fault -> irq -> vmalloc fault"
            }
            Scenario::Switch => {
                "the context-switch window (CR3 already next's, current still prev), prev a thread"
            }
            Scenario::SwitchKthread => {
                "the context-switch window, prev a kernel thread (2.4 sets prev->active_mm = NULL)"
            }
            Scenario::R2020 => {
                "Linux's 2020 regression: B maps into A's fresh slot and touches it inside A's map"
            }
            Scenario::Threads => {
                "Cox and Hemment: CPU B, a thread of A's mm, touches the same stale slot"
            }
            Scenario::Processes => {
                "Andrea's \"I think that can't happen\": CPU B, in another process, touches it"
            }
            Scenario::Point3(_) => {
                "the seed's point 3: two CPUs run 2.4.2's vmalloc_area_pages into one fresh slot"
            }
            Scenario::Torn(_) => "a torn PAE entry: CPU B reads the entry CPU A is writing",
            Scenario::Fork => {
                "the race that ended set_pgdir: CPU B vmallocs a fresh slot (2.4.0-test10-pre1, set_pgdir) while A forks"
            }
            Scenario::ForkSleep => {
                "the race that ended set_pgdir on one CPU: B vmallocs while A's fork sleeps"
            }
        }
    }
}

/// A parsed handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    pub scenario: Scenario,
    pub version: VmallocFaultVersion,
    pub mode: PagingMode,
    pub cpus: u8,
    pub k: usize,
}

/// Why a handle is refused.
pub type Refusal = String;

/// Parse `SCENARIO:VERSION:MODE:NCPU:K`, or say what each field may be.
pub fn parse(h: &str) -> Result<Handle, Refusal> {
    let parts: Vec<&str> = h.split(':').collect();
    if parts.len() != 5 {
        return Err(format!(
            "'{}' is not SCENARIO:VERSION:MODE:NCPU:K (e.g. thread:legacy:2level:1cpu:21)",
            h
        ));
    }
    let scenario = SCENARIOS
        .iter()
        .find(|e| e.name == parts[0])
        .map(|e| e.scenario)
        .ok_or_else(|| {
            format!(
                "unknown scenario '{}' (scenarios: {})",
                parts[0],
                SCENARIO_NAMES.join(", ")
            )
        })?;
    let version = VmallocFaultVersion::ALL
        .into_iter()
        .find(|v| v.name() == parts[1])
        .ok_or_else(|| {
            format!(
                "unknown version '{}' (versions: {})",
                parts[1],
                VmallocFaultVersion::ALLOWED
            )
        })?;
    let mode = PagingMode::ALL
        .into_iter()
        .find(|m| m.name() == parts[2])
        .ok_or_else(|| {
            format!(
                "unknown paging mode '{}' (modes: {})",
                parts[2],
                PagingMode::ALLOWED
            )
        })?;
    let cpus = match parts[3] {
        "1cpu" => 1,
        "2cpu" => 2,
        c => return Err(format!("unknown CPU count '{}' (1cpu or 2cpu)", c)),
    };
    if !scenario.runs_on(cpus, mode) {
        let i = scenario.index();
        return Err(format!(
            "{} runs with {} CPU(s) in paging {}, not {} in {}",
            scenario.name(),
            SCENARIO_CPUS[i].replace(' ', " or "),
            SCENARIO_MODES[i].replace(' ', " or "),
            parts[3],
            parts[2]
        ));
    }
    let k = parts[4]
        .parse::<usize>()
        .map_err(|_| format!("'{}' is not a boundary number (0, 1, 2, ...)", parts[4]))?;
    Ok(Handle {
        scenario,
        version,
        mode,
        cpus,
        k,
    })
}

/// The handle of boundary k of a scenario in the booted kernel.
pub fn handle_of(s: Scenario, cpus: u8, k: usize) -> String {
    format!(
        "{}:{}:{}:{}cpu:{}",
        s.name(),
        fault::version().name(),
        mode().name(),
        cpus,
        k
    )
}

/// How the run at k ended, as the replay compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub failed: bool,
    /// The outcome in the explorer's words (its `Outcome`s, or what a
    /// point-3 or torn run measures).
    pub text: String,
    /// The stepped side's outcome, where the explorer has one.
    pub outcome: Option<Outcome>,
}

/// One `Boundaries::Only(k)` exploration: the path's length, and the run
/// at k, or why there is none.
struct Explored {
    n: usize,
    ended: Result<Ended, Refusal>,
}

fn runnable_list(marks: &[Mark]) -> String {
    // Runs of boundaries that are not `Masked` (one CPU, IF=0).
    let mut out = Vec::new();
    let mut k = 0;
    while k < marks.len() {
        if marks[k] == Mark::Masked {
            k += 1;
            continue;
        }
        let a = k;
        while k + 1 < marks.len() && marks[k + 1] != Mark::Masked {
            k += 1;
        }
        out.push(if a == k {
            format!("{}", a)
        } else {
            format!("{}..{}", a, k)
        });
        k += 1;
    }
    out.join(", ")
}

fn of_report(r: Report, k: usize, two_cpus: bool) -> Explored {
    let n = r.stepped;
    let ended = match r.last_run {
        Some((_, a, b)) => Ok(Ended {
            failed: a.failed() || b.failed(),
            text: match two_cpus {
                true => format!("A: {:?}, B: {:?}", a, b),
                false => format!("{:?}", a),
            },
            outcome: Some(a),
        }),
        None if n == 0 => Err(String::from(
            "no vmalloc fault happens here, so there is no path to replay (PAE shares the kernel \
             PMD; 5.8 and 5.9 synced the entry at vmalloc time)",
        )),
        None if k >= n => Err(past_end(k, n)),
        None => Err(format!(
            "interrupts are off at boundary {} (IF=0): no interrupt can land there, so the \
             explorer counts it and runs nothing; the boundaries it runs: {}",
            k,
            runnable_list(&r.marks)
        )),
    };
    Explored { n, ended }
}

fn past_end(k: usize, n: usize) -> Refusal {
    format!(
        "boundary {} is past the end: the path has boundaries 0..{}",
        k,
        n.saturating_sub(1)
    )
}

/// Explore `s` at boundary k alone, under whatever narration is requested.
fn explore_one(s: Scenario, cpus: u8, k: usize) -> Option<Explored> {
    let only = Boundaries::Only(k);
    Some(match s {
        Scenario::Thread => of_report(explore(Variant::Thread, false, only)?, k, false),
        Scenario::Irq => of_report(explore(Variant::InIrq, false, only)?, k, false),
        Scenario::Nested2 => of_report(explore(Variant::Thread, true, only)?, k, false),
        Scenario::Threads => of_report(
            explore(Variant::OtherCpu { same_mm: true }, false, only)?,
            k,
            true,
        ),
        Scenario::Processes => of_report(
            explore(Variant::OtherCpu { same_mm: false }, false, only)?,
            k,
            true,
        ),
        Scenario::Switch | Scenario::SwitchKthread => {
            let w = explore_window(s == Scenario::SwitchKthread, only)?;
            let ended = match w.last_run {
                Some((_, o)) => Ok(Ended {
                    failed: o.failed(),
                    text: format!("{:?}", o),
                    outcome: Some(o),
                }),
                None if !w.explored => Err(String::from(
                    "no slot is stale here, so the window has nothing to race (PAE shares the \
                     kernel PMD; 5.8 and 5.9 synced the entry at vmalloc time)",
                )),
                None if k >= w.stepped => Err(past_end(k, w.stepped)),
                None => Err(format!(
                    "boundary {} is outside the window (CR3 next's, current prev, IF=1): {} of \
                     the {} boundaries are inside it",
                    k, w.in_window, w.stepped
                )),
            };
            Explored {
                n: w.stepped,
                ended,
            }
        }
        Scenario::R2020 => {
            let c = if cpus == 2 { Cpus::Two } else { Cpus::One };
            let r = explore_2020(c, only)?;
            let ended = match &r.last_run {
                Some(run) => Ok(Ended {
                    failed: run.outcome.failed(),
                    text: format!("B: {:?}, {} lazy fault(s)", run.outcome, run.faults),
                    outcome: Some(run.outcome),
                }),
                None if k >= r.stepped => Err(past_end(k, r.stepped)),
                None => Err(format!(
                    "A has interrupts off at boundary {} (IF=0): no preemption can land there; \
                     the boundaries it runs: {}",
                    k,
                    runnable_list(&r.marks)
                )),
            };
            Explored {
                n: r.stepped,
                ended,
            }
        }
        Scenario::Point3(i) => {
            let (slow, pressure, _) = CONFIGS[i];
            let r = explore_point3(slow, pressure, only)?;
            let ended = match r.last_run {
                Some((_, failed, (a, b, t))) => Ok(Ended {
                    failed,
                    text: format!(
                        "{}: A's page lost {}, B's page lost {}, page tables leaked {}",
                        if failed { "failed" } else { "clean" },
                        a,
                        b,
                        t
                    ),
                    outcome: None,
                }),
                None => Err(past_end(k, r.stepped)),
            };
            Explored {
                n: r.stepped,
                ended,
            }
        }
        Scenario::Fork | Scenario::ForkSleep => {
            let r = match s {
                Scenario::Fork => explore_fork(only)?,
                _ => explore_fork_sleeps(Some(k))?,
            };
            let ended = match r.last_run {
                Some((_, run)) => Ok(fork_ended(&run)),
                None => Err(past_end(k, r.stepped)),
            };
            Explored {
                n: r.stepped,
                ended,
            }
        }
        Scenario::Torn(w) => {
            let t = explore_torn(w, only)?;
            let ended = match t.last_read {
                Some((_, v)) => Ok(torn_ended(v, t.old, t.new)),
                None => Err(past_end(k, t.stepped)),
            };
            Explored {
                n: t.stepped,
                ended,
            }
        }
    })
}

fn fork_ended(run: &ForkRun) -> Ended {
    Ended {
        failed: run.failed(),
        text: match (run.missed, run.touch) {
            (false, _) => String::from("the child has the entry: clean"),
            (true, Some(t)) => format!("the child missed the entry; its touch: {:?}", t),
            (true, None) => String::from("the child missed the entry"),
        },
        outcome: run.touch,
    }
}

/// A fork run's outcome in test10-pre1's terms.
fn fork_why(ended: &Ended) -> String {
    let v = fault::version();
    match (ended.failed, ended.outcome) {
        (false, _) if ended.text.contains("has the entry") => String::from(
            "B's set_pmd reached init_mm before get_pgd_slow's memcpy copied that slot, or \
             B's set_pgdir found the child on the task list after SET_LINKS: the child has the \
             entry",
        ),
        (_, Some(Outcome::Clean)) => format!(
            "B's set_pgdir walked the task list after get_pgd_slow's copy and before SET_LINKS, \
             so it wrote the entry into the parent and not into the child; the child's touch \
             faulted and vmalloc_fault={}'s lazy sync copied the entry from init_mm, as \
             2.4.0-test10-pre2's vmalloc_fault does",
            v.name()
        ),
        (_, Some(o)) => format!(
            "B's set_pgdir walked the task list after get_pgd_slow's copy and before SET_LINKS, \
             so it wrote the entry into the parent and not into the child, which lacks it for \
             good; its touch faulted and vmalloc_fault={} ended it: {:?} (test10-pre1's \
             do_page_fault finds no vma above TASK_SIZE: bad_area, then no_context)",
            v.name(),
            o
        ),
        _ => ended.text.clone(),
    }
}

fn torn_ended(v: u64, old: u64, new: u64) -> Ended {
    let what = if v == old {
        "the old value"
    } else if v == new {
        "the new value"
    } else if v & 1 != 0 {
        "torn and present: half of each value, and the hardware walker would follow it"
    } else {
        "torn, not present: half of each value, which the hardware ignores"
    };
    Ended {
        failed: v != old && v != new && v & 1 != 0,
        text: format!("B read {:#018x}: {}", v, what),
        outcome: None,
    }
}

/// What the outcome means, in the terms of the code that produced it.
fn explain(s: Scenario, o: Option<Outcome>, k: usize, ended: &Ended) -> String {
    let v = fault::version();
    if matches!(s, Scenario::Fork | Scenario::ForkSleep) {
        return fork_why(ended);
    }
    let Some(o) = o else {
        return match s {
            Scenario::Point3(_) if ended.failed => String::from(
                "without the pmd_none re-check (the seed's get_pte_kernel_slow), a CPU that slept \
                 in the GFP_KERNEL allocation with the big lock dropped came back and installed \
                 its page table over the one the other CPU had installed meanwhile: that CPU's \
                 page is no longer mapped, and a page table is lost",
            ),
            Scenario::Point3(_) => String::from(
                "the big lock serialized the two walks, or the re-check found the other CPU's \
                 page table and used it: both pages are mapped, no table is lost",
            ),
            Scenario::Torn(_) if ended.failed => String::from(
                "the writer stores the entry one 32-bit half at a time (2.4's set_pte: high, \
                 smp_wmb, low), and B read between the two stores: a present bit from one value \
                 with the other half of the other, an entry naming a frame neither value names, \
                 which the hardware walker would follow (Ben LaHaise's rule above set_pte: a \
                 present pte is cleared with ptep_get_and_clear)",
            ),
            Scenario::Torn(_) => String::from(
                "what B read is the old value, the new one, or a half-written entry without the \
                 present bit, which the hardware walker ignores",
            ),
            _ => ended.text.clone(),
        };
    };
    let check = |why: BadArea| format!("\"{}\"", why.describe());
    match o {
        Outcome::Clean => match s {
            Scenario::R2020 => String::from(
                "B's touch found its mapping (A's sync reached B's directory first, or B's own \
                 lazy fault copied the entry): no oops",
            ),
            _ => format!(
                "the fault path synced the entry and returned; every write landed \
                 (vmalloc_fault={})",
                v.name()
            ),
        },
        Outcome::Oops(BadArea::PmdAlreadyPresent) => match s {
            Scenario::Switch => String::from(
                "2.4.1's handler synced `tsk->active_mm` (prev's mm) while CR3 was already \
                 next's: the write faulted again in next's mm, and this time prev's pmd was \
                 present: `if (pmd_present(*pmd) || !pmd_present(*pmd_k)) goto \
                 bad_area_nosemaphore`",
            ),
            _ => format!(
                "the outer fault read CR2 (its own address), found `pgd_present(*pgd)` (the \
                 constant 1 on two levels) and then {} filled by the other party's fault at \
                 boundary {}: 2.4.1's `if (pmd_present(*pmd) || !pmd_present(*pmd_k)) goto \
                 bad_area_nosemaphore`",
                "`pmd_present(*pmd)`", k
            ),
        },
        Outcome::OopsClobberedCr2(why) => format!(
            "the nested interrupt came before the outer handler's `movl %cr2` (the trap gate \
             leaves IF on), and its own fault overwrote CR2: the outer handler worked on the \
             nested fault's address, whose entry that fault had just filled, and died in {}",
            check(why)
        ),
        Outcome::Oops(BadArea::CliPgdCheck) | Outcome::NestedOops(_, BadArea::CliPgdCheck) => {
            format!(
                "the seed's patch never syncs on a two-level kernel: `pgd_present()` is the \
                 constant 1 in 2.4's pgtable-2level.h, so {} is false for every fault, and the \
                 first fault to get there oopses{}",
                "`if (!pgd_present(*pgd) && pgd_present(*pgd_k))`",
                match o {
                    Outcome::NestedOops(..) => {
                        ": here the nested interrupt's fault, which came first"
                    }
                    _ => "",
                }
            )
        }
        Outcome::NestedOopsClobberedCr2(level, why) => format!(
            "the oops is in the interrupt handler at nesting level {}, not in the outer fault: \
             the second interrupt is sent at the nested fault's first boundary with IF=1, which \
             under a trap gate comes before that fault's `movl %cr2`; the innermost fault synced \
             its own slot and overwrote CR2, and the level-{} handler, working on that address, \
             found it synced and died in {}.  The outer boundary does not matter, which is why \
             every outer boundary fails alike",
            level,
            level,
            check(why)
        ),
        Outcome::NestedOops(level, why) => format!(
            "the interrupt handler at nesting level {} died in {} on its own address",
            level,
            check(why)
        ),
        Outcome::Oops(BadArea::NoContext) => match s {
            Scenario::R2020 => String::from(
                "B found the slot's PMD already present in init_mm (A had just set it), so its \
                 own map created none and synced nothing (no PGTBL_PMD_MODIFIED); its touch \
                 faulted in its older mm before A's arch_sync_kernel_mappings reached it, and \
                 5.8 has no vmalloc_fault: no_context",
            ),
            Scenario::SwitchKthread => String::from(
                "prev is a kernel thread: 2.4's schedule sets prev->active_mm = NULL after \
                 switch_mm, and 2.4.1's `tsk->active_mm->pgd` dereferences NULL (a kernel fault \
                 at a small address, outside the lazy-sync path: no_context)",
            ),
            _ => format!(
                "a kernel fault outside the lazy-sync path: {}",
                check(BadArea::NoContext)
            ),
        },
        Outcome::Oops(why) => format!("the fault ended in bad_area: {}", check(why)),
        Outcome::OtherOops(v) => format!("another exception ended the run: vector {}", v),
        Outcome::Hang => String::from("the run hung: the step limit or the other CPU's timeout"),
        Outcome::FaultLoop => String::from(
            "the same access faulted again and again: the handler synced the wrong directory",
        ),
        Outcome::Corrupt => String::from("the run completed, but a write did not land"),
    }
}

fn cpus_online() -> u8 {
    smp::online().count() as u8
}

/// Whether this boot runs `s` as race.md measured it: its CPU count
/// and paging mode (a one-CPU scenario in a two-CPU boot is not the
/// measured run: the second CPU's TLB shootdowns lengthen its path).
pub fn measured_here(s: Scenario, cpus: u8) -> bool {
    cpus_online() == cpus && s.runs_on(cpus, mode())
}

/// Replay one handle in this boot; `Ok(matched)`, or why it is refused.
pub fn replay_one(text: &str) -> Result<bool, Refusal> {
    let h = parse(text)?;
    let booted = (fault::version(), mode(), cpus_online());
    if (h.version, h.mode, h.cpus) != booted {
        return Err(format!(
            "{} needs vmalloc_fault={} paging={} and {} CPU(s); this kernel booted \
             vmalloc_fault={} paging={} with {} (`make run RACE=` boots what the handle names)",
            text,
            h.version.name(),
            h.mode.name(),
            h.cpus,
            booted.0.name(),
            booted.1.name(),
            booted.2
        ));
    }
    println!("race: replaying {}: {}", text, h.scenario.describe());
    println!(
        "race: vmalloc_fault={}, paging={}, {} CPU(s)",
        h.version.name(),
        h.mode.name(),
        h.cpus
    );
    // The explorer's own run at k, quiet: what race.md counts.
    narrate::request(None);
    let first = explore_one(h.scenario, h.cpus, h.k).ok_or_else(|| {
        String::from("the scenario could not be set up (no memory, no second CPU)")
    })?;
    let want = first.ended?;
    // The same run, narrated.
    narrate::request(Some(text));
    narrate::request_length(first.n);
    let second = explore_one(h.scenario, h.cpus, h.k);
    narrate::request(None);
    let second = second.ok_or_else(|| String::from("the narrated run could not be set up"))?;
    let got = second.ended?;
    let same = got == want && second.n == first.n;
    println!("race: outcome: {}", got.text);
    println!("race: why: {}", explain(h.scenario, got.outcome, h.k, &got));
    println!(
        "race: the explorer's run at boundary {} of {}: {}; this run {}",
        h.k,
        first.n,
        want.text,
        if same { "ended the same" } else { "DIFFERS" }
    );
    println!(
        "RACE|{}|n={}|outcome={}|explorer={}|failed={}|same={}",
        text,
        second.n,
        got.text,
        want.text,
        u8::from(got.failed),
        u8::from(same)
    );
    narrate::race_run_over();
    Ok(same)
}

/// `race=`: replay every handle, then exit QEMU: success if each run
/// ended as the explorer's did.
pub fn run(handles: &str) -> ! {
    let mut all = true;
    for text in handles.split(',').filter(|t| !t.is_empty()) {
        match replay_one(text) {
            Ok(same) => all &= same,
            Err(why) => {
                println!("race: refused {}: {}", text, why);
                println!("RACE|{}|refused={}", text, why);
                all = false;
            }
        }
    }
    println!("RACE|end");
    vmfault::qemu::exit(match all {
        true => vmfault::qemu::ExitCode::Success,
        false => vmfault::qemu::ExitCode::Failed,
    })
}
