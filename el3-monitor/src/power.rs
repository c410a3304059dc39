//! Ending the system: PSCI `SYSTEM_OFF` and `SYSTEM_RESET`, and the
//! monitor's own fatal errors.
//!
//! Under `-semihosting`, power-off ends QEMU with the exit status the
//! hypervisor reported through `SIP_SET_EXIT_STATUS` (0 unless it said
//! otherwise). Without a semihosting host the board's Secure GPIO lines from
//! the DTB (`gpio-poweroff`, `gpio-restart`) do the work, as on hardware.

use crate::state;
use core::sync::atomic::{AtomicU32, Ordering};
use platform::board::GpioLine;
use platform::semihosting;

/// Exit status when the monitor itself fails.
pub const EXIT_MONITOR_FATAL: u32 = 3;

static EXIT_STATUS: AtomicU32 = AtomicU32::new(0);

/// Records the status the next `SYSTEM_OFF` reports.
pub fn set_exit_status(status: u32) {
    EXIT_STATUS.store(status, Ordering::Relaxed);
}

/// PSCI `SYSTEM_OFF`.
pub fn system_off() -> ! {
    let status = EXIT_STATUS.load(Ordering::Relaxed);
    log::info!("PSCI SYSTEM_OFF, exit status {status}");
    power_off(status)
}

/// PSCI `SYSTEM_RESET`.
pub fn system_reset() -> ! {
    log::info!("PSCI SYSTEM_RESET");
    if let Some(line) = state::try_board().and_then(|b| b.restart) {
        assert_gpio(line);
    }
    log::error!("the DTB describes no gpio-restart line: halting instead");
    platform::arch::halt()
}

/// Reports a fatal monitor error and ends the run with a non-zero status.
///
/// The line goes to the monitor's console. When the device tree names no
/// Non-secure console (it could not be read, or lacks one), that console is
/// at best a guess (the early UART) or the Secure UART nobody watches, so
/// the line also goes to the semihosting host, which QEMU prints on its
/// standard error.
pub fn fatal(args: core::fmt::Arguments) -> ! {
    log::error!("{args} (fatal: stopping with exit status {EXIT_MONITOR_FATAL})");
    if state::try_board().and_then(|b| b.console).is_none() {
        let _ = semihosting::write_fmt(format_args!(
            "el3-monitor: ERROR: {args} (fatal: stopping with exit status {EXIT_MONITOR_FATAL})\n"
        ));
    }
    power_off(EXIT_MONITOR_FATAL)
}

fn power_off(status: u32) -> ! {
    let _ = semihosting::exit(status);
    if let Some(line) = state::try_board().and_then(|b| b.poweroff) {
        assert_gpio(line);
    }
    log::error!("no semihosting host and no gpio-poweroff line: halting");
    platform::arch::halt()
}

/// PL061 direction register.
const GPIODIR: usize = 0x400;
/// PL061 data register: address bits [9:2] select which lines a write
/// touches.
const fn gpiodata(line: u32) -> usize {
    1 << (line + 2)
}

/// Drives a PL061 line to its active level and waits for the board to act.
fn assert_gpio(line: GpioLine) -> ! {
    let base = line.controller.base as usize;
    if line.line < 8 {
        let mask = 1u32 << line.line;
        let level = if line.active_low { 0 } else { mask };
        // SAFETY: the controller is the Secure PL061 the DTB names, reached
        // with the EL3 MMU off; the writes touch only the one line.
        unsafe {
            let dir = (base + GPIODIR) as *mut u32;
            dir.write_volatile(dir.read_volatile() | mask);
            ((base + gpiodata(line.line)) as *mut u32).write_volatile(level);
        }
    }
    loop {
        platform::arch::wait_for_event();
    }
}
