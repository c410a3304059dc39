//! Entry, self-relocation, per-CPU stacks, and the first entry into a guest.
//!
//! The hypervisor is a static PIE linked at 0 and run wherever the monitor
//! put it: `boot.S` has `platform_init_image` apply its relocations against
//! the load address before any Rust runs, so pointers in data are right. Until
//! the EL2 MMU is on, virtual and physical addresses coincide.

use platform::abi::SIP_SET_EXIT_STATUS;
use platform::arch::trap::TrapFrame;
use smccc::psci::PSCI_SYSTEM_OFF;

core::arch::global_asm!(
    include_str!("boot.S"),
    SIP_SET_EXIT_STATUS = const SIP_SET_EXIT_STATUS,
    PSCI_SYSTEM_OFF = const PSCI_SYSTEM_OFF,
    EXIT_HYPERVISOR_FATAL = const crate::power::EXIT_HYPERVISOR_FATAL,
    ELR_OFFSET = const core::mem::offset_of!(TrapFrame, elr),
    SPSR_OFFSET = const core::mem::offset_of!(TrapFrame, spsr),
);

extern "C" {
    fn enter_guest(frame: &TrapFrame) -> !;
    fn hv_secondary_entry();
    static __image_base: u8;
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

/// Physical address secondaries enter at (MMU off: the runtime address).
pub fn secondary_entry() -> u64 {
    hv_secondary_entry as *const () as u64
}

/// Where this image runs.
pub fn load_address() -> u64 {
    core::ptr::addr_of!(__image_base) as u64
}
