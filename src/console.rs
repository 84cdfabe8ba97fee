//! The serial console on COM1, through `uart_16550`, with printk-style log
//! levels.  Everything the kernel says (boot log, KTAP, oops reports) goes
//! here; the host side reads it from QEMU's serial log.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use spin::Mutex;
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550Tty};

extern crate alloc;

use alloc::string::String;

use crate::arch::x86::cpu;
use crate::arch::x86::spinlock::SpinLock;
use crate::fixed_buf::FixedBuf;

const COM1: u16 = 0x3f8;

static CONSOLE: SpinLock<Option<Uart16550Tty<PioBackend>>> = SpinLock::new(None);

/// printk levels, Linux's numbering: a message shows when its level is
/// below `console_loglevel` (default 7: everything but debug).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Emerg = 0,
    Alert = 1,
    Crit = 2,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

static CONSOLE_LOGLEVEL: AtomicU8 = AtomicU8::new(7);

pub fn set_loglevel(level: u8) {
    CONSOLE_LOGLEVEL.store(level.min(8), Ordering::Relaxed);
}

/// Whether COM1 came up (and passed its loopback self-test).
pub fn present() -> bool {
    CONSOLE.lock().is_some()
}

pub fn loglevel() -> u8 {
    CONSOLE_LOGLEVEL.load(Ordering::Relaxed)
}

/// Bring up COM1.  Returns false if the UART failed its self-test (then
/// output is dropped, and the host sees an empty log).
pub fn init() -> bool {
    // SAFETY: COM1's eight I/O ports belong to this driver alone.
    match unsafe { Uart16550Tty::new_port(COM1, Config::default()) } {
        Ok(tty) => {
            *CONSOLE.lock() = Some(tty);
            true
        }
        Err(_) => false,
    }
}

/// Where `capture` copies the console's output while it runs (a static:
/// 8 KiB is too much to move around the boot stack).
static TEE: Mutex<FixedBuf<8192>> = Mutex::new(FixedBuf::new());
static TEE_ON: AtomicBool = AtomicBool::new(false);

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    // Interrupts off while the lock is held: an interrupt handler that
    // prints must not spin on a lock its own CPU holds.
    // The lock is a local: released before `_irq` unmasks interrupts.
    let _irq = cpu::irq_save();
    let mut console = CONSOLE.lock();
    if let Some(tty) = console.as_mut() {
        let _ = tty.write_fmt(args);
    }
    if TEE_ON.load(Ordering::SeqCst) {
        let _ = TEE.lock().write_fmt(args);
    }
}

/// Run `f` and return, besides its result, the first 8 KiB it printed
/// (still printed as usual), copied to the heap: for cases that check what
/// the kernel says, such as the line `bad_area` explains an oops with.
/// Not nested.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, String) {
    // Interrupts off around the lock, as in _print: a handler that prints
    // must not find it held by the code it interrupted.
    let irq = cpu::irq_save();
    TEE.lock().clear();
    TEE_ON.store(true, Ordering::SeqCst);
    drop(irq);
    let r = f();
    let irq = cpu::irq_save();
    TEE_ON.store(false, Ordering::SeqCst);
    let out = String::from(TEE.lock().as_str());
    drop(irq);
    (r, out)
}

/// The console as a `fmt::Write`, for code that formats into any sink
/// (a report printed at boot, captured into a buffer by a test).
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        _print(format_args!("{}", s));
        Ok(())
    }

    /// One `writeln!` is one locked print, so an interrupt handler's
    /// message never lands in the middle of the line.
    fn write_fmt(&mut self, args: fmt::Arguments) -> fmt::Result {
        _print(args);
        Ok(())
    }
}

#[doc(hidden)]
pub fn _printk(level: Level, args: fmt::Arguments) {
    if (level as u8) < loglevel() {
        _print(args);
    }
}

/// `printk_ratelimit()` (Linux 2.6 kernel/printk.c): allow a burst of 10
/// messages, then one per 5 seconds, so that code printing for every bad
/// input (a randomised test feeding vfree thousands of wrong pointers)
/// keeps the log readable.  The first message let through after a
/// suppression says how many were dropped: "printk: N messages
/// suppressed.".  The clock is the TSC as calibrated at boot; before that
/// every message passes.
pub fn printk_ratelimit() -> bool {
    const INTERVAL_MS: u64 = 5000;
    const BURST: u64 = 10;
    let Some(now) = crate::arch::x86::tsc::now_ms() else {
        return true;
    };
    let lost = {
        let _irq = cpu::irq_save();
        let mut rl = RATELIMIT.lock();
        // Linux's token bucket: time since the last message earns tokens,
        // at most a burst's worth; each message spends an interval.
        let earned = now.saturating_sub(rl.last_ms);
        rl.toks = (rl.toks + earned).min(BURST * INTERVAL_MS);
        rl.last_ms = now;
        if rl.toks < INTERVAL_MS {
            rl.missed += 1;
            return false;
        }
        rl.toks -= INTERVAL_MS;
        core::mem::take(&mut rl.missed)
    };
    if lost > 0 {
        _printk(
            Level::Warning,
            format_args!("printk: {} messages suppressed.\n", lost),
        );
    }
    true
}

struct RateLimit {
    toks: u64,
    last_ms: u64,
    missed: u64,
}

static RATELIMIT: Mutex<RateLimit> = Mutex::new(RateLimit {
    // Start with a full burst, as Linux does.
    toks: 10 * 5000,
    last_ms: 0,
    missed: 0,
});

/// How many messages `printk_ratelimit` has suppressed since the last one
/// it let through.
pub fn ratelimit_missed() -> u64 {
    let _irq = cpu::irq_save();
    let rl = RATELIMIT.lock();
    rl.missed
}

/// For oops and panic paths only: the fault may have hit while this CPU
/// held the console lock (inside a print), and waiting would hang forever.
/// Another CPU's print is left to finish.
pub fn force_unlock() {
    // SAFETY: if this CPU holds it, its holder was interrupted by the
    // fault that is being reported and never runs on to drop its guard.
    unsafe { CONSOLE.force_unlock_if_held_here() };
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::_print(format_args!($($arg)*)));
}

#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::print!("{}\n", format_args!($($arg)*)));
}

#[macro_export]
macro_rules! printk {
    ($level:expr, $($arg:tt)*) => ($crate::console::_printk($level, format_args!($($arg)*)));
}

#[macro_export]
macro_rules! pr_err {
    ($($arg:tt)*) => ($crate::printk!($crate::console::Level::Err, "{}\n", format_args!($($arg)*)));
}

#[macro_export]
macro_rules! pr_warn {
    ($($arg:tt)*) => ($crate::printk!($crate::console::Level::Warning, "{}\n", format_args!($($arg)*)));
}

#[macro_export]
macro_rules! pr_notice {
    ($($arg:tt)*) => ($crate::printk!($crate::console::Level::Notice, "{}\n", format_args!($($arg)*)));
}

#[macro_export]
macro_rules! pr_info {
    ($($arg:tt)*) => ($crate::printk!($crate::console::Level::Info, "{}\n", format_args!($($arg)*)));
}

#[macro_export]
macro_rules! pr_debug {
    ($($arg:tt)*) => ($crate::printk!($crate::console::Level::Debug, "{}\n", format_args!($($arg)*)));
}
