//! The guest's EL1 system registers, as EL2 reaches them in either scheme.
//!
//! Under VHE (`HCR_EL2.E2H = 1`) an EL2 access to an `*_EL1` register is
//! redirected to the `*_EL2` one; the guest's copy is reached through the
//! `*_EL12` aliases. Under the split scheme the `*_EL1` names reach the
//! guest's registers directly. Every access to guest EL1 state goes through
//! [`read`] and [`write`] so that the choice is made once.

use crate::arch::layout::{scheme, Scheme};

/// A guest EL1 register EL2 reads or writes on the guest's behalf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestReg {
    Vbar,
    Esr,
    Far,
    Elr,
    Spsr,
    Sctlr,
    Tcr,
    Ttbr0,
    Ttbr1,
    /// The guest's EL1 virtual and physical timers' controls.
    CntvCtl,
    CntpCtl,
    /// The rest of what `HCR_EL2.TVM` traps writes of.
    Afsr0,
    Afsr1,
    Mair,
    Amair,
    ContextIdr,
}

/// Generates [`read`] and [`write`] from each register's EL1 name and its
/// EL12 alias (the EL1 encoding with op1 = 5).
macro_rules! guest_registers {
    ($($reg:ident => $el1:literal, $el12:literal;)*) => {
        /// Reads the guest's copy of `reg`.
        pub fn read(reg: GuestReg) -> u64 {
            let value: u64;
            match (reg, scheme()) {
                $(
                    // SAFETY: reading a guest EL1 register has no side effects.
                    (GuestReg::$reg, Scheme::Nvhe) => unsafe {
                        core::arch::asm!(concat!("mrs {}, ", $el1), out(reg) value, options(nomem, nostack))
                    },
                    // SAFETY: as above, through the EL12 alias.
                    (GuestReg::$reg, Scheme::Vhe) => unsafe {
                        core::arch::asm!(concat!("mrs {}, ", $el12), out(reg) value, options(nomem, nostack))
                    },
                )*
            }
            value
        }

        /// Writes the guest's copy of `reg`, as the hardware would have on
        /// the guest's behalf.
        pub fn write(reg: GuestReg, value: u64) {
            match (reg, scheme()) {
                $(
                    // SAFETY: the register holds guest state only; EL2's own
                    // state and memory are unaffected.
                    (GuestReg::$reg, Scheme::Nvhe) => unsafe {
                        core::arch::asm!(concat!("msr ", $el1, ", {}"), in(reg) value, options(nostack))
                    },
                    // SAFETY: as above, through the EL12 alias.
                    (GuestReg::$reg, Scheme::Vhe) => unsafe {
                        core::arch::asm!(concat!("msr ", $el12, ", {}"), in(reg) value, options(nostack))
                    },
                )*
            }
        }
    };
}

guest_registers! {
    Vbar => "vbar_el1", "S3_5_C12_C0_0";
    Esr => "esr_el1", "S3_5_C5_C2_0";
    Far => "far_el1", "S3_5_C6_C0_0";
    Elr => "elr_el1", "S3_5_C4_C0_1";
    Spsr => "spsr_el1", "S3_5_C4_C0_0";
    Sctlr => "sctlr_el1", "S3_5_C1_C0_0";
    Tcr => "tcr_el1", "S3_5_C2_C0_2";
    Ttbr0 => "ttbr0_el1", "S3_5_C2_C0_0";
    Ttbr1 => "ttbr1_el1", "S3_5_C2_C0_1";
    CntvCtl => "cntv_ctl_el0", "S3_5_C14_C3_1";
    CntpCtl => "cntp_ctl_el0", "S3_5_C14_C2_1";
    Afsr0 => "afsr0_el1", "S3_5_C5_C1_0";
    Afsr1 => "afsr1_el1", "S3_5_C5_C1_1";
    Mair => "mair_el1", "S3_5_C10_C2_0";
    Amair => "amair_el1", "S3_5_C10_C3_0";
    ContextIdr => "contextidr_el1", "S3_5_C13_C0_1";
}

/// The guest register a write trapped by `HCR_EL2.TVM` was for.
pub fn tvm_register(reg: platform::esr::SysReg) -> Option<GuestReg> {
    use platform::esr::SysReg;
    Some(match reg {
        SysReg::SCTLR_EL1 => GuestReg::Sctlr,
        SysReg::TTBR0_EL1 => GuestReg::Ttbr0,
        SysReg::TTBR1_EL1 => GuestReg::Ttbr1,
        SysReg::TCR_EL1 => GuestReg::Tcr,
        SysReg::AFSR0_EL1 => GuestReg::Afsr0,
        SysReg::AFSR1_EL1 => GuestReg::Afsr1,
        SysReg::ESR_EL1 => GuestReg::Esr,
        SysReg::FAR_EL1 => GuestReg::Far,
        SysReg::MAIR_EL1 => GuestReg::Mair,
        SysReg::AMAIR_EL1 => GuestReg::Amair,
        SysReg::CONTEXTIDR_EL1 => GuestReg::ContextIdr,
        _ => return None,
    })
}
