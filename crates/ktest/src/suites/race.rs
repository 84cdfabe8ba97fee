//! The seed's race, measured and pinned.  Each case runs an experiment
//! from src/race under the version this kernel booted with, prints what
//! it measured, and asserts the result that was measured when the bench
//! was built (see README, "Experiment results").  A change that hides the
//! race in `legacy`, or breaks the fix in `sync`, turns these red.

extern crate alloc;

use crate::case;
use crate::Suite;
use vmfault::mm::fault::{version, BadArea};
use vmfault::mm::pgtable::{is_pae, mode};
use vmfault::mm::{PagingMode, VmallocFaultVersion as V};
use vmfault_lab::race::engine::Reach;
use vmfault_lab::race::explorer::{explore, explore_pairs, explore_with, Outcome, Report, Variant};
use vmfault_lab::race::outcome::Mark;
use vmfault_lab::race::regression2020::{explore_2020, explore_2020_with, Cpus, Report2020};
use vmfault_lab::race::replay::{self, Scenario as Replayed};
use vmfault_lab::race::scenario::Scenario;
use vmfault_lab::race::stress::stress;
use vmfault_lab::race::torn::{explore_torn, Write};
use vmfault_lab::race::window::explore_window;

pub static SUITE: Suite = Suite {
    name: "race",
    cases: &[
        case!(explorer_thread_context),
        case!(explorer_inside_an_irq_handler),
        case!(explorer_two_nested_levels_never_reset),
        case!(question1_every_pair_of_two_levels),
        case!(question1_three_levels_sampled),
        case!(explorer_context_switch_window),
        case!(explorer_kernel_thread_switch_window),
        case!(stress_apic_timer),
        case!(regression_2020_window),
        case!(fault_loop_is_the_same_fault_again_and_again),
        case!(two_cpus_threads_of_one_mm),
        case!(two_cpus_two_processes),
        case!(two_cpus_2020_regression),
        case!(two_cpus_torn_pae_entries),
        case!(two_cpus_point3_lost_page_table),
        case!(two_cpus_set_pgdir_misses_a_forking_child),
        case!(set_pgdir_misses_a_child_that_sleeps_in_fork),
        case!(strip_labels_name_the_crate_a_symbol_starts_in),
        case!(engine_anchors_stop_where_stepping_does),
    ],
};

/// race.md's replay handles, checked (issue 25): the first failing and
/// the first clean boundary an exploration ran (`marks`), replayed by
/// name, must each end as the explorer's run did; a scenario with no
/// boundary here (nothing faults) must refuse boundary 0, saying why.  A
/// boot that runs the scenario otherwise than race.md measures it (a
/// one-CPU scenario with two CPUs online) replays nothing.
fn replays_match(s: Replayed, cpus: u8, marks: &[Mark]) {
    if !replay::measured_here(s, cpus) {
        return;
    }
    if marks.is_empty() {
        let h = replay::handle_of(s, cpus, 0);
        let r = replay::replay_one(&h);
        vmfault::println!("    # replay {}: {:?}", h, r);
        assert!(
            matches!(&r, Err(why) if why.contains("no ")),
            "replay {} of a path with no boundary: {:?}",
            h,
            r
        );
        return;
    }
    let failed = |m: &Mark| matches!(m, Mark::Failed | Mark::OtherFailed | Mark::Both);
    let first = [
        marks.iter().position(failed),
        marks.iter().position(|m| *m == Mark::Clean),
    ];
    for k in first.into_iter().flatten() {
        replay_matches(s, cpus, k);
    }
}

fn replay_matches(s: Replayed, cpus: u8, k: usize) {
    let h = replay::handle_of(s, cpus, k);
    let r = replay::replay_one(&h);
    vmfault::println!("    # replay {}: {:?}", h, r);
    assert_eq!(
        r,
        Ok(true),
        "replay {} did not end as the explorer's run did",
        h
    );
}

fn two_level_lazy() -> bool {
    mode() == PagingMode::TwoLevel && version().lazy_only()
}

/// The line `make test` shows under the case's `ok`: what it pins.
fn measured(args: core::fmt::Arguments) {
    vmfault::println!("    # measured: {}", args);
}

fn show(what: &str, r: &Report) {
    if r.stepped > 0 {
        measured(format_args!(
            "{}: {} of {} runs fail ({} boundaries, CR2 read at {:?})",
            what, r.failures, r.runs, r.stepped, r.cr2_read_at
        ));
    } else {
        measured(format_args!("{}: no vmalloc fault, nothing to step", what));
    }
    vmfault::println!(
        "    # {}: stepped {} with IF=1 {} CR2 read at {:?} runs {} failures {} (before CR2 read {}) late {} baseline {:?}",
        what,
        r.stepped,
        r.with_if,
        r.cr2_read_at,
        r.runs,
        r.failures,
        r.failures_before_cr2,
        r.late,
        r.baseline
    );
    for line in vmfault_lab::race::report::failure_groups(&r.failing)
        .iter()
        .take(8)
    {
        vmfault::println!("    #   {}", line);
    }
}

/// Each experiment vmallocs a 16 MiB victim area (`Scenario`).  Where the
/// free frames cannot hold one (a machine smaller than about 21 MiB) the
/// case is skipped, saying so; with room, a failed vmalloc still fails it.
fn need_scenario() {
    if Scenario::room_for() == 0 {
        let mut why = vmfault::fixed_buf::FixedBuf::<120>::new();
        let _ = core::fmt::Write::write_fmt(
            &mut why,
            format_args!(
                "needs {} KiB free for a 16 MiB victim area, {} KiB free",
                Scenario::FRAMES * 4,
                vmfault::mm::frame::nr_free_frames() * 4
            ),
        );
        crate::skip(why.as_str());
    }
}

/// What every depth-1 exploration must show, per version.
fn check_depth1(r: &Report) {
    assert_eq!(
        (r.checks.misplaced, r.checks.not_entered),
        (0, 0),
        "runs DR0 brought to another boundary than k, or that ended before it"
    );
    assert!(
        r.failing.iter().all(|(_, _, o)| *o != Outcome::FaultLoop),
        "a fault loop: no version's fix was seen to leave the access faulting"
    );
    if !two_level_lazy() {
        // PAE shares the kernel PMD; eager synced at vmalloc time: no
        // vmalloc fault, nothing to step.
        assert_eq!(r.stepped, 0, "a vmalloc fault happened where none can");
        return;
    }
    assert!(r.stepped > 0);
    match version() {
        // 2.4.5-pre1 changed only where the pgd comes from: the same trap
        // gate and the same "pmd already present" check as 2.4.1.
        V::Legacy | V::Cr3 => {
            assert_eq!(r.baseline, Some(Outcome::Clean));
            assert_eq!(r.with_if, r.stepped, "trap gate: IF=1 on the whole path");
            assert!(r.failures > 0, "the seed's race 2 was not reproduced");
            let cr2 = r.cr2_read_at.expect("CR2 read not seen");
            assert!(r.tried_before_cr2 > 0 && cr2 > 0);
            assert_eq!(
                r.failures_before_cr2, r.tried_before_cr2,
                "every boundary before the CR2 read must fail"
            );
            for (k, _, o) in &r.failing {
                let expected = if *k <= cr2 {
                    Outcome::OopsClobberedCr2(BadArea::PmdAlreadyPresent)
                } else {
                    Outcome::Oops(BadArea::PmdAlreadyPresent)
                };
                assert_eq!(*o, expected, "boundary {}", k);
            }
        }
        V::Cli => {
            // Fails with no nesting at all on a two-level kernel.
            assert_eq!(r.baseline, Some(Outcome::Oops(BadArea::CliPgdCheck)));
            assert_eq!(r.failures, r.runs);
        }
        V::Sync => {
            assert_eq!(r.baseline, Some(Outcome::Clean));
            assert_eq!(
                r.failures,
                0,
                "2.4.5-pre2's handler failed at {:?}",
                r.failing.first()
            );
            let cr2 = r.cr2_read_at.expect("CR2 read not seen");
            assert!(r.with_if < r.stepped && r.runs > 0);
            assert!(
                r.failing.is_empty() && cr2 < r.stepped,
                "interrupt gate: no boundary before the CR2 read may have IF=1"
            );
        }
        V::SetPgdir | V::Eager | V::EagerLazy => unreachable!(),
    }
}

/// Every boundary, thread context: the full exhaustive run.
fn explorer_thread_context() {
    need_scenario();
    let r = explore(Variant::Thread, false, 1).expect("explorer");
    show("thread", &r);
    check_depth1(&r);
    replays_match(Replayed::Thread, 1, &r.marks);
    if two_level_lazy() && version() == V::Sync {
        // IF is off from the #PF entry to the sti after the CR2 read.
        let cr2 = r.cr2_read_at.unwrap();
        assert!(
            r.stepped - r.with_if > cr2,
            "IF=1 before the CR2 read under the interrupt gate"
        );
    }
}

/// Every boundary, the fault taken inside the PIT handler.
fn explorer_inside_an_irq_handler() {
    need_scenario();
    let r = explore(Variant::InIrq, false, 1).expect("explorer");
    show("in PIT handler", &r);
    check_depth1(&r);
    replays_match(Replayed::Irq, 1, &r.marks);
}

/// Seed question 1: page_fault -> irq -> vmalloc fault -> irq -> vmalloc
/// fault.  Whatever the version does with it, the CPU must not reset:
/// this case finishing at all (the runner fails a reset) is the answer;
/// the assertions pin how each version copes.
fn explorer_two_nested_levels_never_reset() {
    need_scenario();
    let r = explore(Variant::Thread, true, 1).expect("explorer");
    show("two nested levels", &r);
    replays_match(Replayed::Nested2, 1, &r.marks);
    assert!(
        r.failing.iter().all(|(_, _, o)| *o != Outcome::Hang),
        "a run hung"
    );
    if two_level_lazy() {
        match version() {
            V::Sync => assert_eq!(r.failures, 0),
            // The second interrupt lands before the nested fault reads CR2
            // (trap gate): that nested handler reads the innermost
            // fault's address, finds it synced, and oopses, every time.
            V::Legacy | V::Cli | V::Cr3 => assert_eq!(r.failures, r.runs),
            V::SetPgdir | V::Eager | V::EagerLazy => unreachable!(),
        }
    } else {
        assert_eq!(r.stepped, 0);
    }
}

/// Question 1 for real: every (outer boundary k, nested boundary j).  No
/// pair may hang, loop or corrupt (the boot going on says none reset;
/// `experiment=triple_fault` shows a reset is caught).  The trap-gate
/// handlers fail exactly where CR2 is clobbered: at a nested boundary up
/// to the nested fault's own CR2 read, that handler; else at an outer
/// boundary up to the outer CR2 read, the outer one.  Nothing else.
fn question1_every_pair_of_two_levels() {
    need_scenario();
    let mut grid: alloc::vec::Vec<(usize, alloc::string::String)> = alloc::vec::Vec::new();
    let r = explore_pairs(2, 1, 1, |k, codes| grid.push((k, codes.into()))).expect("pairs");
    measured(format_args!(
        "question 1, two levels: {} pairs, {} clean, {} oops, {} hang",
        r.pairs, r.clean, r.oopses, r.hangs
    ));
    assert_eq!(
        r.pairs,
        r.clean + r.oopses,
        "a pair hung, looped or corrupted: {:?}",
        r
    );
    assert_eq!((r.not_sent, r.checks.misplaced), (0, 0));
    if !two_level_lazy() {
        assert_eq!(r.pairs, 0);
        return;
    }
    assert_eq!(r.outer_runs, grid.len());
    let d1 = explore(Variant::Thread, false, 1).expect("explorer");
    let cr2 = d1.cr2_read_at.expect("CR2 read");
    match version() {
        V::Sync => assert_eq!(r.oopses, 0),
        V::Cli => assert_eq!(r.clean, 0),
        V::Legacy | V::Cr3 => {
            for (k, codes) in &grid {
                for (j, c) in codes.chars().enumerate() {
                    let want = if j <= cr2 {
                        'n'
                    } else if *k <= cr2 {
                        'f'
                    } else {
                        'c'
                    };
                    assert_eq!(c, want, "pair {}.{}", k, j);
                }
            }
        }
        V::SetPgdir | V::Eager | V::EagerLazy => unreachable!(),
    }
}

/// Three nested levels (four faults), every 8th outer and nested
/// boundary: none hangs; only 2.4.5-pre2's handler survives them all.
fn question1_three_levels_sampled() {
    need_scenario();
    // The fourth slot is a second area of 8 MiB (2048 frames).
    if vmfault::mm::frame::nr_free_frames() < Scenario::FRAMES + Scenario::FOURTH_SLOT_FRAMES {
        crate::skip("no room for the fourth slot's 8 MiB area beside the victim area");
    }
    let r = explore_pairs(3, 8, 8, |_, _| {}).expect("pairs");
    measured(format_args!(
        "question 1, three levels (every 8th pair): {} pairs, {} clean, {} oops",
        r.pairs, r.clean, r.oopses
    ));
    assert_eq!(
        r.pairs,
        r.clean + r.oopses,
        "a run hung, looped or corrupted: {:?}",
        r
    );
    match (two_level_lazy(), version()) {
        (false, _) => assert_eq!(r.pairs, 0),
        (true, V::Sync) => assert_eq!(r.oopses, 0),
        (true, _) => assert!(r.pairs > 0 && r.clean == 0),
    }
}

/// 2.4.5-pre1's "Do _not_ use tsk here. We might be inside an interrupt in
/// the middle of a task switch".
fn explorer_context_switch_window() {
    let r = explore_window(false, 1).expect("window explorer");
    replays_match(Replayed::Switch, 1, &r.marks);
    measured(format_args!(
        "switch window: {} of {} in-window boundaries fail",
        r.failures, r.in_window
    ));
    vmfault::println!(
        "    # switch window: stepped {} in window (CR3=next, current=prev, IF=1) {} delivered {} failures {}",
        r.stepped,
        r.in_window,
        r.delivered,
        r.failures
    );
    assert!(r.stepped > 0 && r.in_window > 0, "the window was not found");
    assert!(r.failing.iter().all(|(_, _, o)| *o != Outcome::FaultLoop));
    if !two_level_lazy() {
        assert_eq!(r.failures, 0);
        return;
    }
    assert_eq!(r.delivered, r.in_window, "an interrupt was not delivered");
    match version() {
        // tsk->active_mm is prev's mm: the copy goes to the wrong
        // directory, the access faults again, and the pmd is now present.
        V::Legacy => {
            assert_eq!(r.failures, r.in_window);
            assert!(r
                .failing
                .iter()
                .all(|(_, _, o)| *o == Outcome::Oops(BadArea::PmdAlreadyPresent)));
        }
        V::Cli => assert_eq!(r.failures, r.in_window),
        // What 2.4.5-pre1 fixed, and all it fixed.
        V::Cr3 | V::Sync => assert_eq!(r.failures, 0, "CR3-based sync failed in the window"),
        V::SetPgdir | V::Eager | V::EagerLazy => unreachable!(),
    }
}

/// 2,000 rounds spread over three victim mms, or as many as memory holds
/// (one on a 32 MiB machine: the rounds and what they must show are the
/// same, they only rotate over fewer address spaces).
fn stress_apic_timer() {
    need_scenario();
    let mms = Scenario::room_for().min(3);
    let r = stress(2000, mms).expect("stress");
    vmfault::println!("    # stress: {} victim mm(s): {:?}", mms, r);
    assert_eq!(r.rounds, 2000);
    assert_eq!(r.hangs, 0);
    // Measured: no version's fix leaves the access faulting for ever.
    assert_eq!(r.fault_loops, 0);
    assert_eq!(r.clean + r.oopses, r.rounds);
    if !two_level_lazy() || version() == V::Sync {
        assert_eq!(r.oopses, 0, "oops under a version meant to be correct");
    }
    if two_level_lazy() && version() == V::Cli {
        assert_eq!(r.clean, 0, "cli synced a two-level entry");
    }
    if two_level_lazy() && matches!(version(), V::Legacy | V::Cr3) {
        assert_eq!(
            r.oopses, r.bad_areas,
            "2.4.1's checks died of something else than their bad_area"
        );
    }
}

/// What every 2020 exploration must show, on one CPU or two: the path
/// recorded and every run at its own boundary.
fn check_2020_runs(r: &Report2020) {
    assert!(!r.overflow, "the dry run hit its step limit");
    assert!(r.stepped > 0 && r.runs > 0, "the window was not found");
    assert_eq!(
        (r.checks.not_entered, r.checks.misplaced),
        (0, 0),
        "runs where B did not get in inside A's path, or not at its k"
    );
}

/// 5.9's fallback in the 2020 window: no oops, and exactly one lazy fault
/// in each run that B's touch needed one.
fn check_5_9_catches_the_window(r: &Report2020) {
    assert_eq!(
        r.failures, 0,
        "5.9's vmalloc_fault did not catch the window"
    );
    assert!(r.runs_with_faults > 0, "no lazy fault in the window");
    assert_eq!(
        r.faults, r.runs_with_faults as u32,
        "more than one lazy fault in a run"
    );
}

/// Linux's 2020 x86-32 regression on one CPU, under preempt=full: A maps
/// into a fresh slot and is preempted at every boundary from its init_mm
/// set_pmd to its return; B maps into the same slot and touches it from
/// an older mm.  5.8 (`eager`) oopses inside the window and only there;
/// 5.9 (`eager-lazy`) takes one lazy fault there and never oopses; the
/// lazy versions sync on B's fault as always.
fn regression_2020_window() {
    let r = explore_2020(Cpus::One, 1).expect("2020 explorer");
    replays_match(Replayed::R2020, 1, &r.marks);
    measured(format_args!(
        "2020 window, one CPU: {} of {} preemptible boundaries fail, {} lazy faults",
        r.failures, r.preemptible, r.faults
    ));
    vmfault::println!(
        "    # 2020 window: stepped {} preemptible {} runs {} failures {} window {:?} faults {} in {} runs baseline {:?} ({} faults) slots to VMALLOC_END {}",
        r.stepped,
        r.preemptible,
        r.runs,
        r.failures,
        r.window,
        r.faults,
        r.runs_with_faults,
        r.baseline,
        r.baseline_faults,
        r.slots_to_end
    );
    for run in r.failing.iter().take(4) {
        vmfault::println!(
            "    #   boundary {} at {:#010x}: {:?}",
            run.k,
            run.eip,
            run.outcome
        );
        if let (Outcome::OtherOops(_), Some(m)) = (run.outcome, &run.caught) {
            vmfault::println!("    #     {}", m.as_str().lines().next().unwrap_or(""));
        }
    }
    check_2020_runs(&r);
    assert!(r.preemptible > 0, "no preemptible boundary in the window");
    if mode() == PagingMode::Pae {
        // SHARED_KERNEL_PMD: no vmalloc fault, no sync, nothing to fail.
        assert_eq!(r.failures, 0);
        assert_eq!(r.faults, 0);
        return;
    }
    assert_eq!(
        r.failing_not_preempted, 0,
        "a failing run was never preempted"
    );
    match version() {
        // 5.8 syncs after the whole range, test10-pre1's set_pgdir after
        // the slot's part of it: both leave the window from init_mm's
        // set_pmd to the copy into B's directory.
        V::SetPgdir | V::Eager => {
            assert!(r.failures > 0, "the eager sync's window was not reproduced");
            assert_eq!(r.failure_kinds, [Outcome::Oops(BadArea::NoContext)]);
            assert_eq!(
                r.baseline,
                Some(Outcome::Clean),
                "5.8 failed outside the window"
            );
        }
        V::EagerLazy => {
            check_5_9_catches_the_window(&r);
            assert_eq!(r.baseline_faults, 0);
        }
        // The seed's patch oopses on every two-level lazy fault anyway.
        V::Cli => assert_eq!(r.failures, r.runs),
        V::Legacy | V::Cr3 | V::Sync => {
            assert_eq!(r.failures, 0, "a lazy version oopsed in the 2020 window");
            assert_eq!(r.baseline, Some(Outcome::Clean));
        }
    }
}

/// The detector the explorers and the stress use: a run ends as a fault
/// loop after `LIMIT` faults in a row at one EIP on one address, and any
/// other fault in between starts the count again.
fn fault_loop_is_the_same_fault_again_and_again() {
    use vmfault_lab::race::fault_loop::{note, reset, LIMIT};
    reset();
    for i in 1..LIMIT {
        assert!(!note(0xc010_0000, 0xd000_0000), "a loop after {} faults", i);
    }
    assert!(
        note(0xc010_0000, 0xd000_0000),
        "no loop after {} faults",
        LIMIT
    );
    reset();
    for i in 0..4 * LIMIT {
        // Alternating addresses: progress, not a loop.
        assert!(!note(0xc010_0000, 0xd000_0000 + (i % 2) * 0x1000));
    }
    for _ in 1..LIMIT {
        assert!(!note(0xc010_0004, 0xd000_0000));
    }
    assert!(
        !note(0xc010_0000, 0xd000_0000),
        "another EIP must restart the count"
    );
    reset();
}

/// The same window with a kernel thread as prev: after `switch_mm`, 2.4
/// sets `prev->active_mm = NULL` (sched.c: `if (!prev->mm) {
/// prev->active_mm = NULL; mmdrop(oldmm); }`), and a handler reading
/// `tsk->active_mm->pgd` there dereferences NULL.
fn explorer_kernel_thread_switch_window() {
    let r = explore_window(true, 1).expect("window explorer");
    replays_match(Replayed::SwitchKthread, 1, &r.marks);
    measured(format_args!(
        "kernel-thread switch window: {} of {} fail, {} of the {} with active_mm NULL",
        r.failures, r.in_window, r.null_failures, r.null_active_mm
    ));
    vmfault::println!(
        "    # kernel-thread switch window: stepped {} in window {} (active_mm NULL at {}) delivered {} failures {} (in the NULL part {})",
        r.stepped,
        r.in_window,
        r.null_active_mm,
        r.delivered,
        r.failures,
        r.null_failures
    );
    for (k, eip, o) in r.failing.first().into_iter().chain(r.failing.last()) {
        vmfault::println!("    #   boundary {} at {:#010x}: {:?}", k, eip, o);
    }
    assert!(r.stepped > 0 && r.in_window > 0, "the window was not found");
    assert!(r.null_active_mm > 0, "prev's active_mm was never NULL");
    assert!(r.failing.iter().all(|(_, _, o)| *o != Outcome::FaultLoop));
    if !two_level_lazy() {
        assert_eq!(r.failures, 0);
        return;
    }
    assert_eq!(r.delivered, r.in_window, "an interrupt was not delivered");
    match version() {
        // Measured: prev borrowed next's own mm (next ran just before it),
        // so CR3 and tsk->active_mm agree until 2.4 sets active_mm to
        // NULL; from there to switch_to, 2.4.1 dereferences NULL at every
        // boundary, and nowhere else.
        V::Legacy => {
            assert_eq!(
                r.null_failures, r.null_active_mm,
                "the NULL active_mm was not dereferenced"
            );
            assert_eq!(
                r.failures, r.null_failures,
                "2.4.1 failed outside the NULL part"
            );
            assert!(r
                .failing
                .iter()
                .all(|(_, _, o)| *o == Outcome::Oops(BadArea::NoContext)));
        }
        // The seed's patch oopses on every two-level lazy fault anyway.
        V::Cli => {
            assert_eq!(r.failures, r.in_window);
            assert_eq!(r.null_failures, r.null_active_mm);
        }
        V::Cr3 | V::Sync => assert_eq!(r.failures, 0, "CR3-based sync failed in the window"),
        V::SetPgdir | V::Eager | V::EagerLazy => unreachable!(),
    }
}

fn show_two_cpus(what: &str, r: &Report) {
    show(what, r);
    vmfault::println!(
        "    # {}: CPU B's own access failed in {} runs",
        what,
        r.b_failures
    );
    for (k, o) in r
        .b_failing
        .iter()
        .take(1)
        .chain(r.b_failing.iter().skip(1).last())
    {
        vmfault::println!("    #   CPU B at boundary {}: {:?}", k, o);
    }
}

/// Cox and Hemment's race (quoted in the seed): two threads of one mm on
/// two CPUs touch the same stale slot; CPU B's whole access runs at every
/// boundary of CPU A's fault path (interrupts off on A or not: another CPU
/// does not wait for A's IF).  Measured and pinned: under 2.4.1's checks
/// (`legacy`, and `cr3`, which keeps them) A oopses with "pmd already
/// present" at every boundary from its `#PF` entry up to its own read of
/// `*pmd`, and nowhere after; B never fails.  `sync` is clean everywhere;
/// `cli` oopses on both CPUs at every boundary (it never syncs on two
/// levels).  PAE and the eager versions take no fault to explore.
fn two_cpus_threads_of_one_mm() {
    need_scenario();
    let r = explore(Variant::OtherCpu { same_mm: true }, false, 1)
        .unwrap_or_else(|| crate::skip("one CPU (make test runs this with -smp 2 too)"));
    show_two_cpus("two CPUs, one mm", &r);
    replays_match(Replayed::Threads, 2, &r.marks);
    check_two_cpus(&r, true);
}

/// Andrea's "I think that can't happen": the same with two processes.
/// Measured and pinned: it holds for processes: B syncs its own directory,
/// A's is untouched, and no version but `cli` fails anywhere.
fn two_cpus_two_processes() {
    need_scenario();
    let r = explore(Variant::OtherCpu { same_mm: false }, false, 1)
        .unwrap_or_else(|| crate::skip("one CPU (make test runs this with -smp 2 too)"));
    show_two_cpus("two CPUs, two mms", &r);
    replays_match(Replayed::Processes, 2, &r.marks);
    check_two_cpus(&r, false);
}

fn check_two_cpus(r: &Report, same_mm: bool) {
    assert_eq!(
        (r.checks.misplaced, r.checks.not_entered),
        (0, 0),
        "runs DR0 brought to another boundary than k, or that ended before it"
    );
    if !two_level_lazy() {
        assert_eq!(
            (r.runs, r.failures, r.b_failures),
            (0, 0, 0),
            "nothing faults here"
        );
        return;
    }
    assert_eq!(r.runs, r.stepped, "every boundary is tried on two CPUs");
    match version() {
        V::Legacy | V::Cr3 if same_mm => {
            let last = r.failing.last().expect("no failing boundary").0;
            assert_eq!(
                r.failures,
                last + 1,
                "the failing boundaries are not 0..=last"
            );
            assert!(
                r.failing
                    .iter()
                    .all(|(_, _, o)| *o == Outcome::Oops(BadArea::PmdAlreadyPresent)),
                "a failure other than 2.4.1's pmd check"
            );
            assert!(last + 1 < r.stepped, "no clean boundary after A's pmd read");
            assert_eq!(r.b_failures, 0, "CPU B failed");
        }
        V::Cli => {
            assert_eq!(r.failures, r.runs, "cli synced on two levels");
            assert_eq!(r.b_failures, r.runs, "cli synced on CPU B");
        }
        _ => assert_eq!((r.failures, r.b_failures), (0, 0)),
    }
}

/// Linux's 2020 regression across CPUs (issue 16, scenario 4): A maps a
/// page into a fresh slot on CPU 0; at every boundary from its init_mm
/// `set_pmd` to its return, B maps into the same slot and touches it on
/// CPU 1 from an older mm (every 5th boundary here; `make experiments`
/// runs all).  Measured and pinned: 5.8 (`eager`) oopses from boundary 0
/// to its sync of B's directory, and, unlike on one CPU, also at the
/// boundaries where A holds a lock with interrupts off; 5.9
/// (`eager-lazy`) takes one lazy fault in each of those runs instead; the
/// 2.4 versions make B wait for the lock their vmalloc maps under (the
/// big kernel lock, init_mm's page_table_lock), then B syncs on its fault;
/// test10-pre1's takes none, and B never waits.
fn two_cpus_2020_regression() {
    let r = explore_2020(Cpus::Two, 5)
        .unwrap_or_else(|| crate::skip("one CPU (make test runs this with -smp 2 too)"));
    replays_match(Replayed::R2020, 2, &r.marks);
    measured(format_args!(
        "2020 window, two CPUs, every 5th boundary: {} of {} runs fail ({} with IF=0 on A), {} lazy faults",
        r.failures, r.runs, r.failing_masked, r.faults
    ));
    vmfault::println!(
        "    # 2020 on two CPUs: stepped {} runs {} failures {} (IF=0 on A: {}) window {:?} faults {} in {} runs, B waited {} baseline {:?} hand-off {} ns",
        r.stepped,
        r.runs,
        r.failures,
        r.failing_masked,
        r.window,
        r.faults,
        r.runs_with_faults,
        r.waited,
        r.baseline,
        r.handoff_ns()
    );
    check_2020_runs(&r);
    assert!(
        r.failure_kinds.iter().all(|o| *o != Outcome::Hang),
        "B did not finish at a boundary"
    );
    if mode() == PagingMode::Pae {
        assert_eq!(
            (r.failures, r.faults),
            (0, 0),
            "SHARED_KERNEL_PMD: nothing to sync"
        );
        return;
    }
    let ran: alloc::vec::Vec<usize> = (0..r.stepped)
        .filter(|&k| r.marks[k] != Mark::Skipped)
        .collect();
    assert_eq!(ran.len(), r.runs, "every strided boundary runs on two CPUs");
    match version() {
        V::SetPgdir | V::Eager => {
            assert_eq!(r.failure_kinds, [Outcome::Oops(BadArea::NoContext)]);
            let (first, last) = r
                .window
                .expect("the eager sync's window was not reproduced");
            assert_eq!(first, 0, "5.8 survived right after its init_mm set_pmd");
            assert!(
                ran.iter()
                    .all(|&k| (r.marks[k] == Mark::Failed) == (k <= last)),
                "5.8's window is not one span from the set_pmd"
            );
            assert!(
                r.failing_masked > 0,
                "no failure inside a lock: one CPU's window only"
            );
            assert_eq!(
                r.baseline,
                Some(Outcome::Clean),
                "5.8 failed after A's sync"
            );
            if version() == V::SetPgdir {
                // test10-pre1's vmalloc_area_pages takes no lock, and
                // B's map of a present slot runs no set_pgdir.
                assert_eq!(r.waited, 0, "B waited for a lock test10-pre1 did not take");
            }
        }
        V::EagerLazy => check_5_9_catches_the_window(&r),
        V::Cli => assert_eq!(r.failures, r.runs),
        V::Legacy | V::Cr3 | V::Sync => {
            assert_eq!(r.failures, 0, "a lazy version oopsed in the 2020 window");
            assert!(r.waited > 0, "B never waited for the map lock");
            assert_eq!(r.faults as usize, r.runs, "B did not sync on its own fault");
        }
    }
}

/// Torn PAE entries (issue 16, scenario 6): CPU B reads a PAE entry at
/// every boundary of CPU A's write.  Measured and pinned: 2.4's
/// `set_64bit` (set_pmd, pmd_clear) is never seen torn; 2.4's `set_pte`
/// (high half first) is seen torn but never present when it makes a pte
/// present, and torn *and present* when it clears or overwrites a present
/// pte (2.4.2's `pte_clear` macro; Ben LaHaise's rule above `set_pte`
/// forbids it); `ptep_get_and_clear` (low half first, by `xchg`) is never
/// torn-present; two stores low half first make a torn present entry.
fn two_cpus_torn_pae_entries() {
    if !vmfault::arch::x86::smp::cpu_online(1) {
        crate::skip("one CPU (make test runs this with -smp 2 too)");
    }
    if !vmfault::mm::pgtable::is_pae() {
        crate::skip("two-level entries are one 32-bit store");
    }
    for w in vmfault_lab::race::torn::ALL {
        let t = explore_torn(w, 1).expect("torn explorer");
        measured(format_args!(
            "{}: torn at {} of {} boundaries, {} of them present",
            w.name(),
            t.torn,
            t.stepped,
            t.torn_present
        ));
        vmfault::println!(
            "    # {}: stepped {} torn {} (present {}) first {:x?}",
            w.name(),
            t.stepped,
            t.torn,
            t.torn_present,
            t.first_torn
        );
        assert!(!t.hang, "{}: B did not answer", w.name());
        let s = Replayed::Torn(w);
        for k in [Some(0), t.first_torn.map(|(k, _)| k)]
            .into_iter()
            .flatten()
        {
            if replay::measured_here(s, 2) {
                replay_matches(s, 2, k);
            }
        }
        assert!(
            t.stepped > 0 && t.ends_new,
            "{}: the write did not land",
            w.name()
        );
        match w {
            Write::SetPmd | Write::PmdClear => assert_eq!(t.torn, 0, "set_64bit was seen torn"),
            Write::SetPte | Write::PtepGetAndClear => {
                assert!(t.torn > 0, "{}: never half written", w.name());
                assert_eq!(t.torn_present, 0, "{}: a torn present entry", w.name());
            }
            Write::PteClear | Write::SetPteOverPresent | Write::LowThenHigh => {
                assert!(t.torn_present > 0, "{}: never torn and present", w.name())
            }
        }
    }
}

/// The seed's point 3 (issue 16, scenario 5): two CPUs run 2.4.2's
/// `vmalloc_area_pages` (big kernel lock, `get_pte_kernel_slow`) into one
/// fresh slot, B at every 7th boundary of A's locked walk.  Measured and
/// pinned: with memory plentiful nothing sleeps, the big lock serializes
/// the two, and neither `get_pte_kernel_slow` loses anything; with memory
/// low, the `GFP_KERNEL` allocation yields, `schedule` drops the big lock,
/// and without 2.4.2's re-check (the seed's init.c hunk) a CPU installs
/// its page table over the other's: a page unmapped, a table leaked.
/// 2.4.2's re-check never loses one.
fn two_cpus_point3_lost_page_table() {
    use vmfault_lab::race::point3::{explore_point3, CONFIGS};
    use vmfault_lab::vmalloc242::{Pressure, PteKernelSlow};
    if !vmfault::arch::x86::smp::cpu_online(1) {
        crate::skip("one CPU (make test runs this with -smp 2 too)");
    }
    for (slow, pressure, name) in CONFIGS {
        let r = explore_point3(slow, pressure, 7).expect("point 3 explorer");
        let i = vmfault_lab::race::point3::CONFIGS
            .iter()
            .position(|c| c.2 == name)
            .expect("a point-3 configuration");
        replays_match(Replayed::Point3(i), 2, &r.marks);
        measured(format_args!(
            "{}, every 7th boundary: {} of {} runs lose a page or a table",
            name, r.failures, r.runs
        ));
        vmfault::println!(
            "    # {}: stepped {} runs {} failures {} (A's page lost {}, B's {}, tables leaked {}) B waited {} window {:?}",
            name,
            r.stepped,
            r.runs,
            r.failures,
            r.lost_a,
            r.lost_b,
            r.leaked_tables,
            r.waited,
            r.window
        );
        assert_eq!(r.hangs, 0, "{}: B did not finish", name);
        assert_eq!(
            (r.checks.not_entered, r.checks.misplaced),
            (0, 0),
            "{}: runs where B did not get in inside A's walk, or not at its k",
            name
        );
        assert!(!r.baseline_failed, "{}: failed with B after A", name);
        assert!(
            r.runs > 0 && r.waited > 0,
            "{}: B never met the big lock",
            name
        );
        match (slow, pressure) {
            (PteKernelSlow::Seed, Pressure::Low) => {
                assert!(
                    r.failures > 0,
                    "the seed's hunk lost nothing under low memory"
                );
                assert_eq!(
                    r.leaked_tables, r.failures,
                    "a failure without a lost table"
                );
                assert!(
                    r.lost_a + r.lost_b >= r.failures,
                    "a lost table without a lost page"
                );
            }
            _ => assert_eq!(r.failures, 0, "{}: lost a page or a table", name),
        }
    }
}

/// The strips label a window with kernel code, not a library helper it
/// sits in: a symbol is the kernel's when its path starts in the kernel
/// crate, whoever instantiated it.
fn strip_labels_name_the_crate_a_symbol_starts_in() {
    use vmfault_lab::race::report::first_crate;
    let cases = [
        (
            "_RNvNtNtCsfkxeSKq5c2V_7vmfault2mm5fault13vmalloc_fault",
            Some("vmfault"),
        ),
        (
            "_RINvNtCs28yXbOG1GBU_4core3ptr14write_volatilemECsfkxeSKq5c2V_7vmfault",
            Some("core"),
        ),
        (
            "_ZN7vmfault2mm5fault13vmalloc_fault17h0123456789abcdefE",
            Some("vmfault"),
        ),
        (
            "_ZN4core3ptr13drop_in_place17h0123456789abcdefE",
            Some("core"),
        ),
        ("page_fault_legacy_2level", None),
    ];
    for (name, want) in cases {
        assert_eq!(first_crate(name), want, "{}", name);
    }
}

/// The engine's counted anchors stop at the very boundary that stepping
/// from the trigger reaches: every boundary's outcome the same, for the
/// fault path (anchors in the handler functions only) and for the 2020
/// window (an anchor on each boundary's own instruction, loops and all).
/// Every other case trusts the anchors; this one checks them the slow way.
fn engine_anchors_stop_where_stepping_does() {
    if two_level_lazy() {
        need_scenario();
        let a = explore_with(Variant::Thread, false, 1, Reach::Anchors).expect("explorer");
        let s = explore_with(Variant::Thread, false, 1, Reach::Stepping).expect("explorer");
        assert!(
            a.runs > 0 && a.runs == s.runs,
            "{} and {} runs",
            a.runs,
            s.runs
        );
        assert_eq!(
            a.marks, s.marks,
            "the fault path: anchors and stepping disagree"
        );
        assert_eq!((a.late, s.late), (0, 0), "a nested interrupt landed late");
    }
    let a = explore_2020_with(Cpus::One, 3, Reach::Anchors).expect("2020 explorer");
    let s = explore_2020_with(Cpus::One, 3, Reach::Stepping).expect("2020 explorer");
    vmfault::println!(
        "    # 2020 window, every 3rd preemptible boundary: {} runs, {} failing, {} lazy faults, both ways",
        a.runs,
        a.failures,
        a.faults
    );
    assert!(
        a.runs > 0 && a.runs == s.runs,
        "{} and {} runs",
        a.runs,
        s.runs
    );
    assert_eq!(
        a.marks, s.marks,
        "the 2020 window: anchors and stepping disagree"
    );
    assert_eq!(
        a.faults, s.faults,
        "the 2020 window: B's lazy faults differ"
    );
}

/// Both fork explorations: the parent, linked all along, never misses
/// the entry; in PAE `set_pgdir` never runs (true: nothing more to check).
fn parent_kept_and_pae(r: &vmfault_lab::race::fork_race::ForkReport) -> bool {
    assert_eq!(r.parent_missed, 0, "set_pgdir missed a linked task");
    if is_pae() {
        assert_eq!(
            (r.set_pgdir_runs, r.missed),
            (0, 0),
            "PAE: the kernel PMD is shared"
        );
    }
    is_pae()
}

/// What the child's touch must do where it missed the entry: the
/// versions with no fault path oops in `no_context`; the lazy ones copy
/// the entry (the seed's `cli` patch oopses on every two-level lazy
/// fault, missed or not).
fn check_fork_touches(r: &vmfault_lab::race::fork_race::ForkReport) {
    match version() {
        V::SetPgdir | V::Eager => {
            assert_eq!(
                r.touch_oopses, r.missed,
                "a missed child's touch did not oops"
            );
            if r.missed > 0 {
                assert_eq!(r.touch_kinds, [Outcome::Oops(BadArea::NoContext)]);
            }
        }
        V::Cli => assert_eq!(r.touch_oopses, r.missed),
        V::Legacy | V::Cr3 | V::Sync | V::EagerLazy => {
            assert_eq!(
                (r.touch_oopses, r.touch_clean),
                (0, r.missed),
                "a lazy fault did not repair the child"
            )
        }
    }
}

/// The race that ended `set_pgdir` (issue 28), two CPUs: B's
/// test10-pre1 vmalloc at every boundary of A's test10-pre1 fork.  The
/// child misses the entry wherever B runs after A's `get_pgd_slow` copy
/// and before A's `SET_LINKS`; the parent never does.
fn two_cpus_set_pgdir_misses_a_forking_child() {
    use vmfault_lab::race::fork_race::explore_fork;
    if !vmfault::arch::x86::smp::cpu_online(1) {
        crate::skip("one CPU (make test runs this with -smp 2 too)");
    }
    let r = explore_fork(1).expect("fork explorer");
    replays_match(Replayed::Fork, 2, &r.marks);
    measured(format_args!(
        "set_pgdir and fork, two CPUs: the child misses the entry at {} of {} boundaries ({:?}); its touch: {} oops, {} repaired",
        r.missed, r.runs, r.window, r.touch_oopses, r.touch_clean
    ));
    vmfault::println!(
        "    # fork: stepped {} runs {} missed {} parent missed {} set_pgdir ran {} waited {} touches {:?} window {:?}",
        r.stepped, r.runs, r.missed, r.parent_missed, r.set_pgdir_runs, r.waited, r.touch_kinds, r.window
    );
    assert_eq!(r.hangs, 0, "B did not finish");
    assert_eq!((r.checks.not_entered, r.checks.misplaced), (0, 0));
    assert_eq!(r.runs, r.stepped, "every boundary runs on two CPUs");
    if parent_kept_and_pae(&r) {
        return;
    }
    assert_eq!(r.set_pgdir_runs, r.runs, "B's walk created no pgd entry");
    let (first, last) = r.window.expect("the child never missed the entry");
    assert!(
        first > 0 && last < r.stepped - 1,
        "the window is not inside the fork"
    );
    assert!(r.waited > 0, "B never met tasklist_lock");
    check_fork_touches(&r);
}

/// The same on one CPU: test10-pre1 has no kernel preemption and no
/// vmalloc in interrupts, so B runs where A sleeps.  Before the copy the
/// child gets the entry in its copy; after it, it misses it.
fn set_pgdir_misses_a_child_that_sleeps_in_fork() {
    use vmfault_lab::fork2400::SleepPoint;
    use vmfault_lab::race::fork_race::explore_fork_sleeps;
    let r = explore_fork_sleeps(None).expect("fork explorer");
    let cpus = vmfault::arch::x86::smp::online().count() as u8;
    replays_match(Replayed::ForkSleep, cpus, &r.marks);
    measured(format_args!(
        "set_pgdir and fork, one CPU: the child misses the entry at {} of {} sleep points; its touch: {} oops, {} repaired",
        r.missed, r.runs, r.touch_oopses, r.touch_clean
    ));
    assert_eq!(r.runs, SleepPoint::ALL.len());
    if parent_kept_and_pae(&r) {
        return;
    }
    let missed: alloc::vec::Vec<bool> = r.marks.iter().map(|m| *m == Mark::Failed).collect();
    assert_eq!(
        missed,
        [false, true, true],
        "the child missed it before its copy, or not after"
    );
    check_fork_touches(&r);
}
