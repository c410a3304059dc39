//! The guest's EL1 system registers, as EL2 reaches them in either scheme.
//!
//! Under VHE (`HCR_EL2.E2H = 1`) an EL2 access to an `*_EL1` register is
//! redirected to the `*_EL2` one; the guest's copy is reached through the
//! `*_EL12` aliases. Under the split scheme the `*_EL1` names reach the
//! guest's registers directly. Every access to guest EL1 state goes through
//! here so that the choice is made once.

use crate::layout::{scheme, Scheme};

macro_rules! guest_el1_register {
    ($read:ident, $write:ident, $el1:literal, $el12:literal) => {
        pub fn $read() -> u64 {
            let value: u64;
            match scheme() {
                // SAFETY: reading a guest EL1 system register has no side
                // effects.
                Scheme::Vhe => unsafe {
                    core::arch::asm!(concat!("mrs {}, ", $el12), out(reg) value, options(nomem, nostack))
                },
                // SAFETY: as above.
                Scheme::Nvhe => unsafe {
                    core::arch::asm!(concat!("mrs {}, ", $el1), out(reg) value, options(nomem, nostack))
                },
            }
            value
        }

        pub fn $write(value: u64) {
            match scheme() {
                // SAFETY: this register holds guest state only; EL2 writes it
                // to emulate what the hardware would have done to the guest.
                Scheme::Vhe => unsafe {
                    core::arch::asm!(concat!("msr ", $el12, ", {}"), in(reg) value, options(nostack))
                },
                // SAFETY: as above.
                Scheme::Nvhe => unsafe {
                    core::arch::asm!(concat!("msr ", $el1, ", {}"), in(reg) value, options(nostack))
                },
            }
        }
    };
}

// EL12 aliases are the EL1 encodings with op1 = 5.
guest_el1_register!(vbar, set_vbar, "vbar_el1", "S3_5_C12_C0_0");
guest_el1_register!(esr, set_esr, "esr_el1", "S3_5_C5_C2_0");
guest_el1_register!(far, set_far, "far_el1", "S3_5_C6_C0_0");
guest_el1_register!(elr, set_elr, "elr_el1", "S3_5_C4_C0_1");
guest_el1_register!(spsr, set_spsr, "spsr_el1", "S3_5_C4_C0_0");
guest_el1_register!(sctlr, set_sctlr, "sctlr_el1", "S3_5_C1_C0_0");
