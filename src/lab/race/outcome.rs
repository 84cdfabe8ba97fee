//! How one run of an explorer ended (`Outcome`), and the mark each
//! boundary gets in a strip picture (`Mark`).

use crate::mm::fault::BadArea;

/// How one run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Clean,
    /// The outer fault ended in bad_area on its own address.
    Oops(BadArea),
    /// The outer handler used an address it did not fault on: a nested
    /// fault overwrote CR2 before the outer handler read it.
    OopsClobberedCr2(BadArea),
    /// Another exception, or an oops in a nested handler.
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
