//! External aborts from lower ELs, which `SCR_EL3.EA` routes here on
//! hardware that honours it (QEMU does not: it takes them at the faulting
//! EL whatever `SCR_EL3.EA` says).
//!
//! A data abort in the monitor's ECAM window ([`crate::pci::ea_window`]) is
//! a config access: it is served from the same model as `PCI_READ`/
//! `PCI_WRITE` and the instruction completes. Every other abort is
//! reflected to the EL that would have taken it without `SCR_EL3.EA`, so
//! that EL2 and its guests see what they would see on a machine without
//! this monitor. The decisions are `platform::pci::ea`'s (host-tested);
//! this module only reads and writes the registers they name.

use aarch64_cpu::registers::{
    Readable, Writeable, ELR_EL1, ELR_EL2, ESR_EL1, ESR_EL2, FAR_EL1, FAR_EL2, FAR_EL3, HCR_EL2, PAR_EL1, SCTLR_EL1,
    SCTLR_EL2, SPSR_EL1, SPSR_EL2, VBAR_EL1, VBAR_EL2,
};
use platform::arch::at::{self, At};
use platform::arch::trap::TrapFrame;
use platform::arch::ExceptionLevel;
use platform::esr::Esr;
use platform::pci::ea::{self, EaError, LowerState, Translation};

/// Answers the synchronous instruction or data abort `esr` (`ESR_EL3`) from
/// a lower EL whose registers `frame` holds.
pub fn handle(frame: &mut TrapFrame, esr: Esr) {
    let far = FAR_EL3.get();
    let why = if esr.is_data_abort() {
        let Err(error) = serve(frame, esr, far) else { return };
        if let Some(access) = error.unsupported_request() {
            log::warn!("ECAM: {error}: read all-ones / write dropped, as PCI answers an unsupported request");
            ea::complete_unsupported(&access, frame);
            return;
        }
        Some(error)
    } else {
        None
    };
    reflect(frame, esr, far, why);
}

/// Serves a data abort in the ECAM window: decode, the config model,
/// completion. An error leaves `frame` untouched.
fn serve(frame: &mut TrapFrame, esr: Esr, far: u64) -> Result<(), EaError> {
    let translation = Translation::for_fault(esr, frame.spsr)?;
    let pa = ea::fault_pa(translate(translation, far), far)?;
    let window = crate::pci::ea_window().ok_or(EaError::OutsideWindow { pa })?;
    let access = ea::decode(esr, pa, &window, &frame.x)?;
    access.complete(crate::pci::serve(access.call), frame);
    Ok(())
}

/// Runs `translation`'s `AT` on `va` and returns the `PAR_EL1` it leaves,
/// keeping the interrupted code's own `PAR_EL1`.
fn translate(translation: Translation, va: u64) -> u64 {
    let saved = PAR_EL1.get();
    let op = match translation {
        Translation::S12E0R => At::S12E0R,
        Translation::S12E0W => At::S12E0W,
        Translation::S12E1R => At::S12E1R,
        Translation::S12E1W => At::S12E1W,
        Translation::S1E2R => At::S1E2R,
        Translation::S1E2W => At::S1E2W,
    };
    // SAFETY: EL3 may run every AT operation; it walks the lower EL's
    // tables with its registers as the exception left them (nothing here
    // has changed them), and PAR_EL1 is restored below.
    let par = unsafe { at::translate(op, va) };
    PAR_EL1.set(saved);
    par
}

/// Delivers the abort to the EL that would have taken it, logging why the
/// monitor did not serve it. An abort that cannot be delivered stops the
/// machine: there is nowhere to return to.
fn reflect(frame: &mut TrapFrame, esr: Esr, far: u64, why: Option<EaError>) {
    let state = LowerState {
        spsr: frame.spsr,
        elr: frame.elr,
        far,
        hcr_el2: HCR_EL2.get(),
        sctlr_el1: SCTLR_EL1.get(),
        sctlr_el2: SCTLR_EL2.get(),
        vbar_el1: VBAR_EL1.get(),
        vbar_el2: VBAR_EL2.get(),
    };
    let from = ExceptionLevel::from_spsr(frame.spsr);
    let reflection = match ea::reflect(esr, &state) {
        Ok(reflection) => reflection,
        Err(error) => crate::power::fatal(format_args!(
            "external abort from {from} (ESR {esr}, FAR {far:#x}, ELR {:#x}) cannot be reflected: {error}",
            frame.elr
        )),
    };
    match why {
        Some(why) => log::warn!(
            "external abort from {from} at ELR {:#x}, FAR {far:#x} is not a config access ({why}): reflected to {}",
            frame.elr,
            reflection.target
        ),
        None => log::warn!(
            "external abort from {from} at ELR {:#x}, FAR {far:#x} (ESR {esr}): reflected to {}",
            frame.elr,
            reflection.target
        ),
    }
    if reflection.target == ExceptionLevel::El2 {
        ESR_EL2.set(reflection.esr.0);
        FAR_EL2.set(reflection.far);
        ELR_EL2.set(reflection.elr);
        SPSR_EL2.set(reflection.spsr);
    } else {
        ESR_EL1.set(reflection.esr.0);
        FAR_EL1.set(reflection.far);
        ELR_EL1.set(reflection.elr);
        SPSR_EL1.set(reflection.spsr);
    }
    frame.elr = reflection.vector;
    frame.spsr = reflection.pstate;
}
