//! Ending the run from EL2: the guest's power-off, and our own fatal errors.
//!
//! The exit status (0, or what the guest reported with
//! `HV_SET_EXIT_STATUS`, or [`EXIT_HYPERVISOR_FATAL`]) goes to the monitor
//! with `SIP_SET_EXIT_STATUS`; then PSCI `SYSTEM_OFF` ends the run.

use core::sync::atomic::{AtomicU32, Ordering};
use platform::abi::SIP_SET_EXIT_STATUS;
use smccc::Smc;

/// Exit status when the hypervisor itself fails.
pub const EXIT_HYPERVISOR_FATAL: u32 = 2;

static GUEST_STATUS: AtomicU32 = AtomicU32::new(0);

/// The guest's verdict, reported at power-off.
pub fn set_guest_status(status: u32) {
    GUEST_STATUS.store(status, Ordering::Relaxed);
}

/// Powers off with the guest's status.
pub fn guest_system_off() -> ! {
    let status = GUEST_STATUS.load(Ordering::Relaxed);
    log::info!("guest requested SYSTEM_OFF (status {status})");
    crate::traps::report_exits();
    crate::mm::integrity::report();
    power_off(status)
}

/// Asks the monitor to reset the board.
pub fn system_reset() -> ! {
    log::info!("guest requested SYSTEM_RESET");
    let _ = smccc::psci::system_reset::<Smc>();
    power_off(EXIT_HYPERVISOR_FATAL)
}

/// Reports a fatal hypervisor error and ends the run with a failure status.
pub fn fatal(args: core::fmt::Arguments) -> ! {
    log::error!("{args} (fatal: stopping with exit status {EXIT_HYPERVISOR_FATAL})");
    crate::irq::pnmi::stop_other_cpus(true);
    power_off(EXIT_HYPERVISOR_FATAL)
}

/// Refuses a bad boot input (a kernel or initrd that cannot be booted, a
/// machine that does not match its device tree) with one line and the same
/// status as [`fatal`]. Nothing crashed, so the other CPUs are stopped
/// without the per-CPU report, which would only bury the reason.
pub fn refuse(args: core::fmt::Arguments) -> ! {
    log::error!("{args} (fatal: stopping with exit status {EXIT_HYPERVISOR_FATAL})");
    crate::irq::pnmi::stop_other_cpus(false);
    power_off(EXIT_HYPERVISOR_FATAL)
}

/// Reports `status` to the monitor and powers off.
pub fn power_off(status: u32) -> ! {
    smccc::smc32(SIP_SET_EXIT_STATUS, [status, 0, 0, 0, 0, 0, 0]);
    let _ = smccc::psci::system_off::<Smc>();
    log::error!("the monitor did not power off: halting");
    platform::arch::halt()
}
