//! Per-CPU EL2 configuration for running a guest at EL1: what traps to us,
//! what the guest may touch directly. Several of these registers change
//! layout with `HCR_EL2.E2H`, so each value is chosen for the scheme.

use crate::arch::layout::{scheme, Scheme};
use aarch64_cpu::registers::{ReadWriteable, Readable, Writeable, HCR_EL2, ID_AA64ISAR1_EL1, MIDR_EL1, MPIDR_EL1};
use platform::arch::regs::{
    CPTR_EL2_RES1, ID_AA64ISAR1_APA, ID_AA64ISAR1_API, MPIDR_AFFINITY_MASK, PMCR_N_MASK, PMCR_N_SHIFT,
};

/// `CPTR_EL2` with E2H = 1 has the `CPACR_EL1` layout: FPEN [21:20] and
/// ZEN [17:16] = 0b11 leave FP/SIMD and SVE untrapped.
const CPTR_VHE_FPEN_NO_TRAP: u64 = 0b11 << 20;
const CPTR_VHE_ZEN_NO_TRAP: u64 = 0b11 << 16;

/// `CPTR_EL2` with FP/SIMD and SVE untrapped, in the scheme's layout. Every
/// CPU gets it in the switch, before any compiled code (which may use SIMD
/// registers) runs at EL2.
pub const fn cptr_no_traps(scheme: Scheme) -> u64 {
    match scheme {
        Scheme::Vhe => CPTR_VHE_FPEN_NO_TRAP | CPTR_VHE_ZEN_NO_TRAP,
        Scheme::Nvhe => CPTR_EL2_RES1,
    }
}
/// `CNTHCTL_EL2`: EL1 access to the physical counter and timer. With
/// E2H = 0 these are bits 0 and 1; with E2H = 1, bits 10 and 11.
const CNTHCTL_NVHE_EL1PCTEN: u64 = 1 << 0;
const CNTHCTL_NVHE_EL1PCEN: u64 = 1 << 1;
const CNTHCTL_VHE_EL1PCTEN: u64 = 1 << 10;
const CNTHCTL_VHE_EL1PCEN: u64 = 1 << 11;

/// `MDCR_EL2.TDE` (bit 8) and `MDCR_EL2.TDA` (bit 9).
const MDCR_EL2_TDE: u64 = 1 << 8;
const MDCR_EL2_TDA: u64 = 1 << 9;

macro_rules! control {
    ($reg:literal, $value:expr) => {
        // SAFETY: the EL2 control registers written here only decide what
        // the guest traps and may access; no memory is affected.
        unsafe { platform::msr!($reg, $value) }
    };
}

/// Whether the guest's writes of its translation controls (`SCTLR_EL1`,
/// `TTBRn_EL1`, `TCR_EL1`, `MAIR_EL1`, the fault registers, ...) trap here
/// (`HCR_EL2.TVM`): for a VM with kernel integrity, whose `TTBR1` tables
/// the hypervisor follows.
pub fn trap_translation_writes(on: bool) {
    let wanted = if on { HCR_EL2::TVM::EnableTrapTVM } else { HCR_EL2::TVM::DisableTrapTVM };
    if HCR_EL2.matches_all(wanted) {
        return;
    }
    HCR_EL2.modify(wanted);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Configures the traps and controls of this CPU for running guests (the
/// same for every vCPU; what differs per vCPU is in
/// [`crate::arch::context`]).
pub fn init() {
    let isar1 = ID_AA64ISAR1_EL1.get();
    let pauth = ID_AA64ISAR1_APA.present(isar1) || ID_AA64ISAR1_API.present(isar1);
    let vhe = scheme() == Scheme::Vhe;
    // Stage 2 on, EL1 is AArch64, guest SMCs and WFIs come here (a vCPU
    // with nothing to do idles its CPU at EL2, `crate::vm::sched::wfi`), physical interrupts
    // and SErrors route to EL2, set/way cache operations become clean-and-
    // invalidate (meaningless under virtualisation otherwise); E2H keeps
    // the scheme EL2 runs with.
    HCR_EL2.write(
        HCR_EL2::VM::Enable
            + HCR_EL2::RW::EL1IsAarch64
            + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
            + HCR_EL2::TWI::SET
            + HCR_EL2::IMO::EnableVirtualIRQ
            + HCR_EL2::FMO::EnableVirtualFIQ
            + HCR_EL2::AMO::SET
            + HCR_EL2::SWIO::SET
            + if pauth { HCR_EL2::API::SET + HCR_EL2::APK::SET } else { HCR_EL2::API::CLEAR }
            + if vhe { HCR_EL2::E2H::EnableOsAtEl2 } else { HCR_EL2::E2H::DisableOsAtEl2 },
    );
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    control!("cptr_el2", cptr_no_traps(scheme()));
    if vhe {
        control!("cnthctl_el2", CNTHCTL_VHE_EL1PCTEN | CNTHCTL_VHE_EL1PCEN);
    } else {
        control!("cnthctl_el2", CNTHCTL_NVHE_EL1PCTEN | CNTHCTL_NVHE_EL1PCEN);
    }
    // All PMU counters to the guest.
    // SAFETY: reading PMCR_EL0 at EL2 has no side effects.
    let pmcr = unsafe { platform::mrs!("pmcr_el0") };
    // TDE routes the guest's debug exceptions (its BRKs among them) to EL2
    // and, with TDA, makes its debug-register accesses (DCC too) trap.
    control!("mdcr_el2", ((pmcr >> PMCR_N_SHIFT) & PMCR_N_MASK) | MDCR_EL2_TDE | MDCR_EL2_TDA);
    if crate::arch::context::sve_implemented() {
        // Guests get 128-bit vectors: their `Z` registers are then the `V`
        // registers a vCPU switch saves anyway (`crate::arch::context`).
        // SAFETY: `ZCR_EL2` only caps the vector length of EL2 and below;
        // EL2 uses no SVE.
        unsafe { platform::msr!("S3_4_C1_C2_0", 0u64) };
    }
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// `VMPIDR_EL2` for a vCPU whose guest-visible affinity is `affinity`:
/// this CPU's MPIDR's other fields (U, MT) with the affinity replaced.
pub fn vmpidr(affinity: u64) -> u64 {
    (MPIDR_EL1.get() & !MPIDR_AFFINITY_MASK) | affinity
}

/// `VPIDR_EL2`: the guest sees the CPU's own `MIDR_EL1`.
pub fn vpidr() -> u64 {
    MIDR_EL1.get()
}
