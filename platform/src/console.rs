//! The console every image prints to, and its `log` backend.
//!
//! A console is one UART plus, optionally, a mirror: the monitor writes its
//! boot messages both to the Secure UART it owns and to the Non-secure
//! console a user is watching, then drops the mirror before the hypervisor
//! takes that UART over. Lines are written whole under a lock so that CPUs
//! do not interleave; a panic path can bypass the lock. Each UART is a
//! [`Serial`], so the board's model (PL011, Cadence) is chosen where the
//! console is set up, from the board description.

use crate::serial::Serial;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use spin::{Mutex, Once};

struct Sinks {
    primary: Option<Serial>,
    mirror: Option<Serial>,
}

impl Write for Sinks {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for uart in [self.primary, self.mirror].into_iter().flatten() {
            uart.write_str(s);
        }
        Ok(())
    }
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks { primary: None, mirror: None });
static PREFIX: Once<&'static str> = Once::new();
static LOGGER: Logger = Logger;
/// Set once something has panicked: from then on writers skip the lock.
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Sets the UART this image prints to and the name each line starts with.
pub fn init(prefix: &'static str, uart: impl Into<Serial>) {
    let uart = uart.into();
    PREFIX.call_once(|| prefix);
    uart.enable_tx();
    SINKS.lock().primary = Some(uart);
}

/// Also writes every line to `uart` (or stops mirroring with `None`).
pub fn set_mirror(uart: Option<Serial>) {
    if let Some(uart) = uart {
        uart.enable_tx();
    }
    SINKS.lock().mirror = uart;
}

/// Whether a console has been set up.
pub fn is_ready() -> bool {
    SINKS.lock().primary.is_some()
}

/// The image name lines start with.
pub fn prefix() -> &'static str {
    PREFIX.get().copied().unwrap_or("?")
}

/// Runs around each line this image writes with [`write_fmt`] (not
/// around [`write_bytes`]), and calls its argument to write the line: where
/// other text shares the console (the hypervisor's VMs' consoles), it ends
/// a line left open there and keeps the others out while the line is
/// written.
static AROUND_LINE: Once<fn(&mut dyn FnMut())> = Once::new();

/// Sets what runs around each of this image's own lines, once.
pub fn around_each_line(hook: fn(&mut dyn FnMut())) {
    AROUND_LINE.call_once(|| hook);
}

/// Writes formatted text as it is (no prefix).
pub fn write_fmt(args: fmt::Arguments) {
    if PANICKING.load(Ordering::Relaxed) {
        // The lock may be held by the CPU that panicked, or by this one.
        // SAFETY: `force_unlock` only breaks mutual exclusion between
        // writers; the worst outcome is interleaved text on a dying system.
        unsafe { SINKS.force_unlock() };
    } else if let Some(hook) = AROUND_LINE.get() {
        hook(&mut || {
            let _ = SINKS.lock().write_fmt(args);
        });
        return;
    }
    let _ = SINKS.lock().write_fmt(args);
}

/// Writes bytes as they are (another machine's console output), turning
/// `\n` into `\r\n`.
pub fn write_bytes(bytes: &[u8]) {
    let sinks = SINKS.lock();
    for uart in [sinks.primary, sinks.mirror].into_iter().flatten() {
        for &byte in bytes {
            if byte == b'\n' {
                uart.write_byte(b'\r');
            }
            uart.write_byte(byte);
        }
    }
}

/// Writes formatted text if the console is free at once; returns whether
/// it wrote. For code that must never wait for a lock (a PNMI handler).
pub fn try_write_fmt(args: fmt::Arguments) -> bool {
    match SINKS.try_lock() {
        Some(mut sinks) => {
            let _ = sinks.write_fmt(args);
            true
        }
        None => false,
    }
}

/// Marks the system as panicking: writers stop waiting for the lock.
pub fn enter_panic() {
    PANICKING.store(true, Ordering::Relaxed);
}

/// Prints a line that starts with the image name: `el2: ...`.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!(
            "{}: {}\n", $crate::console::prefix(), format_args!($($arg)*)))
    };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match record.level() {
            log::Level::Info => crate::println!("{}", record.args()),
            level => crate::println!("{}: {}", level, record.args()),
        }
    }

    fn flush(&self) {}
}

/// Installs the console as the `log` backend at `level`.
pub fn init_logger(level: log::LevelFilter) {
    // A second call keeps the first logger: nothing to report.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
