//! The way out of the run, at the bottom of the layers: powering the
//! machine off with a status, and the fatal-error path.
//!
//! The exit status goes to the monitor with `SIP_SET_EXIT_STATUS`; then
//! PSCI `SYSTEM_OFF` ends the run. This module calls nothing above it:
//! what the layers above want done on the way out (stop the other CPUs,
//! print the run's summary) they register here ([`on_fatal`],
//! [`on_power_off`]), so any layer may stop the machine.

use platform::abi::SIP_SET_EXIT_STATUS;
use smccc::Smc;
use spin::Once;

/// Exit status when the hypervisor itself fails, or refuses its input.
pub const EXIT_HYPERVISOR_FATAL: u32 = 2;

/// Stops the other CPUs; `report` = each prints what it was doing.
static STOP_OTHERS: Once<fn(bool)> = Once::new();
/// Prints the run's summary before an orderly power-off.
static SUMMARY: Once<fn()> = Once::new();

/// How the fatal path stops the other CPUs (the PNMI crash stop).
pub fn on_fatal(stop_others: fn(bool)) {
    STOP_OTHERS.call_once(|| stop_others);
}

/// What an orderly power-off prints first.
pub fn on_power_off(summary: fn()) {
    SUMMARY.call_once(|| summary);
}

/// Reports a fatal hypervisor error and ends the run with a failure status.
pub fn fatal(args: core::fmt::Arguments) -> ! {
    log::error!("{args} (fatal: stopping with exit status {EXIT_HYPERVISOR_FATAL})");
    if let Some(stop) = STOP_OTHERS.get() {
        stop(true);
    }
    power_off(EXIT_HYPERVISOR_FATAL)
}

/// Refuses a bad boot input (a VM description, a kernel or initrd that
/// cannot be booted, a machine that does not match its device tree) with
/// one line and the same status as [`fatal`]. Nothing crashed, so the other
/// CPUs are stopped without the per-CPU report, which would only bury the
/// reason.
pub fn refuse(args: core::fmt::Arguments) -> ! {
    log::error!("{args} (fatal: stopping with exit status {EXIT_HYPERVISOR_FATAL})");
    if let Some(stop) = STOP_OTHERS.get() {
        stop(false);
    }
    power_off(EXIT_HYPERVISOR_FATAL)
}

/// The orderly end: the summary, then power-off with `status`.
pub fn shut_down(status: u32) -> ! {
    if let Some(summary) = SUMMARY.get() {
        summary();
    }
    power_off(status)
}

/// Asks the monitor to reset the board; powers off if it does not.
pub fn reset_board() -> ! {
    let _ = smccc::psci::system_reset::<Smc>();
    power_off(EXIT_HYPERVISOR_FATAL)
}

/// Reports `status` to the monitor and powers off.
pub fn power_off(status: u32) -> ! {
    smccc::smc32(SIP_SET_EXIT_STATUS, [status, 0, 0, 0, 0, 0, 0]);
    let _ = smccc::psci::system_off::<Smc>();
    log::error!("the monitor did not power off: halting");
    platform::arch::halt()
}
