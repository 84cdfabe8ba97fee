//! How one run of an explorer ended (`Outcome`), and the mark each
//! boundary gets in a strip picture (`Mark`).

use vmfault::fixup::Caught;
use vmfault::mm::fault::{self, BadArea};

/// How one run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    /// The outer fault ended in bad_area on its own address.
    Oops(BadArea),
    /// The outer handler used an address it did not fault on: a nested
    /// fault overwrote CR2 before the outer handler read it.
    OopsClobberedCr2(BadArea),
    /// A nested interrupt handler's own vmalloc fault died in bad_area
    /// (interrupt level `.0` above the outer fault's: 1 the first nested
    /// interrupt, 2 the second), on its own address: the run ends there,
    /// before the outer fault goes on.
    NestedOops(u8, BadArea),
    /// The same, on another level's address: a deeper fault overwrote CR2
    /// before that nested handler read it.
    NestedOopsClobberedCr2(u8, BadArea),
    /// Another exception.
    OtherOops(u32),
    /// The step limit was reached.
    Hang,
    /// The same access faulted again and again (`fault_loop`).
    FaultLoop,
    /// The run completed but the data written is wrong.
    Corrupt,
}

impl Outcome {
    pub fn failed(self) -> bool {
        self != Outcome::Clean
    }

    /// How another CPU's whole access under its own recovery point
    /// ended (`bad0`: `fault::bad_areas()` before it), as the one word it
    /// publishes: 0 clean, 1 + the `BadArea` of an oops through bad_area,
    /// 255 any other exception.
    pub fn access_word(r: &Result<(), Caught>, bad0: u32) -> u32 {
        match r {
            Ok(()) => 0,
            Err(c) if c.vector == 14 && fault::bad_areas() != bad0 => {
                1 + fault::last_bad_area() as u32
            }
            Err(_) => 255,
        }
    }

    /// The access an `access_word` describes.
    pub fn of_access_word(w: u32) -> Outcome {
        match w {
            0 => Outcome::Clean,
            255 => Outcome::OtherOops(14),
            n => Outcome::Oops(BadArea::from_u8((n - 1) as u8)),
        }
    }
}

/// One boundary's outcome as a strip code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Clean,
    /// The stepped side (or the scenario) failed.
    Failed,
    /// Only the other CPU's access failed.
    OtherFailed,
    Both,
    Hang,
    /// Not run: interrupts off there, so no interrupt or preemption can
    /// land (one CPU).
    Masked,
    /// Not run: the stride skipped it.
    Skipped,
    /// Not run: outside the window the scenario explores (the switch
    /// window: CR3 not yet next's, or `current` already next, or IF=0).
    Outside,
}

impl Mark {
    pub fn code(self) -> char {
        match self {
            Mark::Clean => 'c',
            Mark::Failed => 'f',
            Mark::OtherFailed => 'b',
            Mark::Both => 'x',
            Mark::Hang => 'h',
            Mark::Masked => 's',
            Mark::Skipped => '-',
            Mark::Outside => 'o',
        }
    }

    pub fn of(run: Outcome, other: Outcome) -> Mark {
        match (run, other) {
            (Outcome::Hang, _) | (_, Outcome::Hang) => Mark::Hang,
            (a, b) if a.failed() && b.failed() => Mark::Both,
            (a, _) if a.failed() => Mark::Failed,
            (_, b) if b.failed() => Mark::OtherFailed,
            _ => Mark::Clean,
        }
    }
}
