//! The plan for turning the MMU on, and the switch itself (`switch.S`).
//!
//! Stage 1 ([`crate::boot::early`]) runs at the load PA and computes every
//! register value the switch needs; it stores them in [`SWITCH_PLAN`], a
//! static of plain integers (nothing in it is a pointer that relocation
//! would have to fix), and calls `hv_switch_boot`. Secondary CPUs read the
//! same plan when they come up at their PA.

use crate::arch::power::EXIT_HYPERVISOR_FATAL;
use core::sync::atomic::{AtomicU64, Ordering};
use platform::abi::SIP_SET_EXIT_STATUS;
use platform::board::MAX_CPUS;
use smccc::psci::PSCI_SYSTEM_OFF;

/// The switch's inputs, one word each; the layout is shared with switch.S.
#[repr(C)]
pub struct SwitchPlan {
    /// Run VA minus link VA (first, so that a debugger finds it at
    /// `&SWITCH_PLAN`: tests/scripts/gdbinit).
    pub va_displacement: AtomicU64,
    /// 1 under VHE: install the kernel tables in `TTBR1_EL2`.
    pub vhe: AtomicU64,
    /// 1 for `remap=fault`.
    pub remap_fault: AtomicU64,
    pub ttbr_intermediate: AtomicU64,
    /// Per CPU slot: the kernel root with that CPU's private data area.
    pub ttbr_kernel: [AtomicU64; MAX_CPUS],
    /// VHE only: `TTBR0_EL2`, EL0's range.
    pub ttbr_user: AtomicU64,
    pub tcr_switch: AtomicU64,
    pub tcr_final: AtomicU64,
    pub mair: AtomicU64,
    pub sctlr: AtomicU64,
    pub hcr: AtomicU64,
    /// `CPTR_EL2` for EL2 itself: FP/SIMD untrapped (compiled code uses it).
    pub cptr: AtomicU64,
    /// Load PA minus link VA.
    pub pa_displacement: AtomicU64,
    /// What the MMU-on fault said (remap=fault, boot CPU).
    pub fault_esr: AtomicU64,
    pub fault_elr: AtomicU64,
}

#[no_mangle]
pub static SWITCH_PLAN: SwitchPlan = SwitchPlan {
    va_displacement: AtomicU64::new(0),
    vhe: AtomicU64::new(0),
    remap_fault: AtomicU64::new(0),
    ttbr_intermediate: AtomicU64::new(0),
    ttbr_kernel: [const { AtomicU64::new(0) }; MAX_CPUS],
    ttbr_user: AtomicU64::new(0),
    tcr_switch: AtomicU64::new(0),
    tcr_final: AtomicU64::new(0),
    mair: AtomicU64::new(0),
    sctlr: AtomicU64::new(0),
    hcr: AtomicU64::new(0),
    cptr: AtomicU64::new(0),
    pa_displacement: AtomicU64::new(0),
    fault_esr: AtomicU64::new(0),
    fault_elr: AtomicU64::new(0),
};

const _: () = assert!(core::mem::offset_of!(SwitchPlan, va_displacement) == 0);

macro_rules! offset {
    ($field:ident) => {
        core::mem::offset_of!(SwitchPlan, $field)
    };
}

core::arch::global_asm!(
    include_str!("switch.S"),
    VHE = const offset!(vhe),
    REMAP_FAULT = const offset!(remap_fault),
    TTBR_INTERMEDIATE = const offset!(ttbr_intermediate),
    TTBR_KERNEL = const offset!(ttbr_kernel),
    TTBR_USER = const offset!(ttbr_user),
    TCR_SWITCH = const offset!(tcr_switch),
    TCR_FINAL = const offset!(tcr_final),
    MAIR = const offset!(mair),
    SCTLR = const offset!(sctlr),
    HCR = const offset!(hcr),
    CPTR = const offset!(cptr),
    PA_DISPLACEMENT = const offset!(pa_displacement),
    VA_DISPLACEMENT = const offset!(va_displacement),
    FAULT_ESR = const offset!(fault_esr),
    FAULT_ELR = const offset!(fault_elr),
    MAX_CPUS = const MAX_CPUS,
    SIP_SET_EXIT_STATUS = const SIP_SET_EXIT_STATUS,
    EXIT_HYPERVISOR_FATAL = const EXIT_HYPERVISOR_FATAL,
    PSCI_SYSTEM_OFF = const PSCI_SYSTEM_OFF,
);

extern "C" {
    fn hv_switch_boot() -> !;
    fn hv_secondary_entry();
    static hv_trampoline_start: u8;
    static hv_trampoline_end: u8;
}

/// Turns the MMU on as the plan says and continues in `hv_main` at the VA.
///
/// # Safety
///
/// Stage 1 must have filled [`SWITCH_PLAN`] with tables that map the image
/// at its VA (and, for `remap=intermediate`, the trampoline at both
/// addresses). Nothing the caller holds survives: the switch rewrites every
/// relocated pointer for the VA and abandons the current stack.
pub unsafe fn switch_boot_cpu() -> ! {
    core::sync::atomic::fence(Ordering::SeqCst);
    // SAFETY: forwarded from this function's contract.
    unsafe { hv_switch_boot() }
}

/// The current address of the trampoline section `[start, end)`: its PA in
/// stage 1, its VA afterwards.
pub fn trampoline() -> (u64, u64) {
    (core::ptr::addr_of!(hv_trampoline_start) as u64, core::ptr::addr_of!(hv_trampoline_end) as u64)
}

/// The current address of the secondary entry point (a PA in stage 1).
pub fn secondary_entry_here() -> u64 {
    hv_secondary_entry as *const () as u64
}

/// The physical address of the secondary CPUs' entry point (for `CPU_ON`),
/// from the running image.
pub fn secondary_entry_pa() -> u64 {
    let va_to_pa = SWITCH_PLAN
        .pa_displacement
        .load(Ordering::Relaxed)
        .wrapping_sub(SWITCH_PLAN.va_displacement.load(Ordering::Relaxed));
    secondary_entry_here().wrapping_add(va_to_pa)
}

/// The load PA of the image.
pub fn image_pa() -> u64 {
    crate::arch::layout::LINK_VA.wrapping_add(SWITCH_PLAN.pa_displacement.load(Ordering::Relaxed))
}

/// What the MMU-on fault said (`remap=fault`): `(ESR, ELR)`.
pub fn remap_fault() -> (u64, u64) {
    (SWITCH_PLAN.fault_esr.load(Ordering::Relaxed), SWITCH_PLAN.fault_elr.load(Ordering::Relaxed))
}
