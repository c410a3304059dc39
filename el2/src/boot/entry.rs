//! Entry, self-relocation, per-CPU stacks, and the first entry into a guest.
//!
//! The hypervisor is a static PIE linked high and run wherever the monitor
//! put it: `boot.S` has `platform_init_image` relocate it for the load
//! address before stage 1 runs; the switch (`switch.S`) relocates it again
//! for its virtual address.

use platform::abi::SIP_SET_EXIT_STATUS;
use platform::arch::trap::TrapFrame;
use smccc::psci::PSCI_SYSTEM_OFF;

core::arch::global_asm!(
    include_str!("entry.S"),
    SIP_SET_EXIT_STATUS = const SIP_SET_EXIT_STATUS,
    PSCI_SYSTEM_OFF = const PSCI_SYSTEM_OFF,
    EXIT_HYPERVISOR_FATAL = const crate::arch::power::EXIT_HYPERVISOR_FATAL,
    ELR_OFFSET = const core::mem::offset_of!(TrapFrame, elr),
    SPSR_OFFSET = const core::mem::offset_of!(TrapFrame, spsr),
);

extern "C" {
    fn enter_guest(frame: &TrapFrame) -> !;
}

/// Enters the lower EL described by `frame`.
///
/// # Safety
///
/// The frame's `elr` and `spsr` must describe a lower-EL context whose
/// memory the stage-2 tables map, and EL2's traps must be configured.
pub unsafe fn run(frame: &TrapFrame) -> ! {
    // SAFETY: forwarded from this function's contract.
    unsafe { enter_guest(frame) }
}
