//! The guest's debug exceptions, which `MDCR_EL2.TDE` routes here, given to
//! it as bare metal would have given them: `platform::debug` decides, this
//! module carries the verdict out on the vCPU's registers.
//!
//! - Reflect: the exception goes to the guest's EL1 vector with EL1's
//!   class (breakpoints and watchpoints with their address in `FAR_EL1`).
//! - Step through: return with `SPSR_EL2.SS` set, so the guest executes one
//!   instruction and the next step exception comes back here. When that
//!   instruction was the guest's `ERET` to EL0, the step's completion is
//!   EL2's business, not the guest's (`debug::eret_step_completion`).
//! - Step over: the guest's breakpoints and watchpoints off
//!   (`MDSCR_EL1.MDE` clear) and EL2's own step on for one instruction; the
//!   guest's `MDSCR_EL1` is kept in the PRDA, where the guest's own reads
//!   and writes of it go meanwhile ([`guest_mdscr_access`]), and goes back
//!   when that step ends.
//! - Suspend: after a stepped load-exclusive, the guest's step and
//!   breakpoints off, the same way, until the vCPU's next exit
//!   ([`on_exit`]).
//!
//! Every exit here is short (no loop, no lock), and each verdict lets the
//! guest make progress, so a guest cannot hold its CPU here.

use crate::arch::sysregs::{self, GuestReg};
use crate::vm::guest;
use aarch64_cpu::registers::{Readable, FAR_EL2};
use platform::arch::trap::TrapFrame;
use platform::arch::ExceptionLevel;
use platform::debug::{self, GuestDebug, TakenFrom, Verdict};
use platform::esr::{Esr, ExceptionClass};

/// Handles `esr` if it is a debug exception; `false` if it is not one.
pub fn handle(frame: &mut TrapFrame, esr: Esr) -> bool {
    // What follows reads the guest's debug state from the hardware.
    crate::vm::vcpu::claim_debug();
    let from = match ExceptionLevel::from_spsr(frame.spsr) {
        ExceptionLevel::El0 => TakenFrom::El0,
        _ => TakenFrom::El1,
    };
    let el2_step = crate::mm::prda::swap_el2_step(false);
    if el2_step && matches!(esr.class(), ExceptionClass::SoftwareStepLower) {
        let (elr_el1, spsr_el1) = (sysregs::read(GuestReg::Elr), sysregs::read(GuestReg::Spsr));
        if let Some(spsr) = debug::eret_step_completion(from, frame.elr, frame.spsr, elr_el1, spsr_el1) {
            frame.spsr = spsr;
            return true;
        }
    }
    let hold = crate::mm::prda::debug_hold();
    let guest = GuestDebug {
        mdscr: hold.map_or_else(read_mdscr, |(saved, _)| saved),
        oslsr: crate::traps::debugregs::read_oslsr(),
        osdlr: crate::traps::debugregs::read_osdlr(),
    };
    let stepping_over = hold.is_some_and(|(_, suspended)| !suspended);
    let Some(verdict) = debug::decide(esr, from, frame.spsr, guest, stepping_over) else { return false };
    match verdict {
        Verdict::Reflect(syndrome) => {
            let far = match syndrome.class() {
                ExceptionClass::Brk64 | ExceptionClass::Bkpt32 => 0,
                _ => FAR_EL2.get(),
            };
            guest::inject_sync(frame, syndrome, far);
        }
        Verdict::StepThrough => {
            crate::mm::prda::swap_el2_step(true);
            frame.spsr = debug::step_one(frame.spsr);
        }
        Verdict::StepOver => {
            crate::mm::prda::set_debug_hold(Some((guest.mdscr, false)));
            write_mdscr(debug::step_over_mdscr(guest.mdscr));
            frame.spsr = debug::step_one(frame.spsr);
        }
        Verdict::EndStepOver { suspend: false } => {
            write_mdscr(guest.mdscr);
            crate::mm::prda::set_debug_hold(None);
        }
        Verdict::EndStepOver { suspend: true } | Verdict::Suspend => {
            crate::mm::prda::set_debug_hold(Some((guest.mdscr, true)));
            write_mdscr(debug::suspended_mdscr(guest.mdscr));
        }
    }
    true
}

/// On every exit from the guest, before it is handled: a suspension of the
/// guest's step and breakpoints ends here.
pub fn on_exit() {
    if let Some((saved, true)) = crate::mm::prda::debug_hold() {
        write_mdscr(saved);
        crate::mm::prda::set_debug_hold(None);
    }
}

/// A guest access to `MDSCR_EL1` while a step-over holds the hardware's:
/// served from the saved value. `None` when no step-over is in progress
/// (the access goes to the hardware).
pub fn guest_mdscr_access(write: Option<u64>) -> Option<u64> {
    let (saved, suspended) = crate::mm::prda::debug_hold()?;
    match write {
        Some(value) => {
            crate::mm::prda::set_debug_hold(Some((value, suspended)));
            Some(0)
        }
        None => Some(saved),
    }
}

/// A vCPU starts afresh on this CPU: no hold of a previous life.
pub fn reset_vcpu() {
    if let Some((saved, _)) = crate::mm::prda::debug_hold() {
        write_mdscr(saved);
        crate::mm::prda::set_debug_hold(None);
    }
}

fn read_mdscr() -> u64 {
    crate::traps::debugregs::read_mdscr()
}

fn write_mdscr(value: u64) {
    crate::traps::debugregs::write_mdscr(value);
}
