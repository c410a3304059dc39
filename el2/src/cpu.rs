//! Per-CPU EL2 configuration for running a guest at EL1: what traps to us,
//! what the guest may touch directly.

use aarch64_cpu::registers::{
    Readable, Writeable, CNTHCTL_EL2, CNTVOFF_EL2, HCR_EL2, ID_AA64ISAR1_EL1, MIDR_EL1, MPIDR_EL1,
    VMPIDR_EL2,
};
use platform::arch::regs::{CPTR_EL2_RES1, ID_AA64ISAR1_APA, ID_AA64ISAR1_API, PMCR_N_MASK, PMCR_N_SHIFT};

/// Configures the traps and controls of this CPU for guest `vcpu_mpidr`.
pub fn init(vcpu_mpidr: u64) {
    let isar1 = ID_AA64ISAR1_EL1.get();
    let pauth = ID_AA64ISAR1_APA.present(isar1) || ID_AA64ISAR1_API.present(isar1);
    // Stage 2 on, EL1 is AArch64, guest SMCs come here, physical interrupts
    // and SErrors route to EL2, set/way cache operations become clean-and-
    // invalidate (meaningless under virtualisation otherwise).
    HCR_EL2.write(
        HCR_EL2::VM::Enable
            + HCR_EL2::RW::EL1IsAarch64
            + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
            + HCR_EL2::IMO::EnableVirtualIRQ
            + HCR_EL2::FMO::EnableVirtualFIQ
            + HCR_EL2::AMO::SET
            + HCR_EL2::SWIO::SET
            + if pauth { HCR_EL2::API::SET + HCR_EL2::APK::SET } else { HCR_EL2::API::CLEAR },
    );
    // FP, SIMD and SVE untrapped.
    // SAFETY: CPTR_EL2 only controls trapping of lower-EL accesses.
    unsafe { core::arch::asm!("msr cptr_el2, {}", in(reg) CPTR_EL2_RES1, options(nostack)) };
    // The guest reads the counter and uses its physical timer directly.
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::SET);
    CNTVOFF_EL2.set(0);
    // All PMU counters to the guest.
    let pmcr: u64;
    // SAFETY: reading PMCR_EL0 at EL2 has no side effects.
    unsafe { core::arch::asm!("mrs {}, pmcr_el0", out(reg) pmcr, options(nomem, nostack)) };
    let hpmn = (pmcr >> PMCR_N_SHIFT) & PMCR_N_MASK;
    // SAFETY: MDCR_EL2.HPMN only partitions the PMU counters.
    unsafe { core::arch::asm!("msr mdcr_el2, {}", in(reg) hpmn, options(nostack)) };
    let midr = MIDR_EL1.get();
    // SAFETY: VPIDR_EL2 only sets what the guest reads as MIDR_EL1.
    unsafe { core::arch::asm!("msr vpidr_el2, {}", in(reg) midr, options(nostack)) };
    VMPIDR_EL2.set((MPIDR_EL1.get() & !platform::arch::regs::MPIDR_AFFINITY_MASK) | vcpu_mpidr);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}
