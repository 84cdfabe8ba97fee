//! The lab: experiments built on the kernel core, never part of it.  The
//! core (arch, boot, mm, sched, console, oops, fixup) knows nothing of
//! what is here; the test harness (`crate::ktest`) uses both.
//!
//! - `race`: the interleaving explorer, the switch window and the stress
//!   (`experiment=race`, `make experiments`, `race.*`);
//! - `soak`: the seeded random mix checked against a model (`make soak`);
//! - `bench`: the in-kernel half of `make bench`;
//! - `demo`: the lazy-sync transcript `make run` prints;
//! - `vmlist24`: Linux 2.4's linear `vmlist`, the bench's baseline;
//! - `dump`: the `translation of` dump of one address;
//! - `step_count`: instructions counted by single-stepping, per CPU.
#![no_std]

extern crate alloc;
pub mod bench;
pub mod demo;
pub mod dump;
pub mod fork2400;
pub mod race;
pub mod soak;
pub mod step_count;
pub mod vmalloc242;
pub mod vmlist24;
