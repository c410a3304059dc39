//! The monitor's exception vectors: SMCs from below go to [`crate::smc`];
//! external aborts from below (routed here by `SCR_EL3.EA`) to
//! [`crate::ea`]; the semihosting probe's undefined-instruction trap and a
//! device probe's external abort (`platform::arch::probe`) are answered.
//! An SError (also routed here by `SCR_EL3.EA`) stops the machine with its
//! syndrome, as TF-A does with one it has no handler for: it is an error
//! the hardware could not contain, and its context is gone. Anything else
//! is a monitor bug and is reported with its decoded context.

use aarch64_cpu::registers::{Readable, ESR_EL3, FAR_EL3};
use platform::arch::trap::{ExceptionKind, ExceptionReport, ExceptionSource, ExceptionType, TrapFrame};
use platform::esr::{Esr, ExceptionClass};

platform::exception_vectors!("monitor_vectors", 3, handle_exception);

extern "C" fn handle_exception(frame: &mut TrapFrame, kind: ExceptionKind) {
    let esr = Esr(ESR_EL3.get());
    match (kind.source(), kind.kind(), esr.class()) {
        (ExceptionSource::LowerA64, ExceptionType::Sync, ExceptionClass::Smc64) => {
            let slot = crate::state::slot_of(platform::arch::this_cpu_mpidr()).unwrap_or(0);
            crate::smc::handle(frame, slot);
            crate::stack::check(slot);
        }
        (
            ExceptionSource::LowerA64 | ExceptionSource::LowerA32,
            ExceptionType::Sync,
            ExceptionClass::DataAbortLower | ExceptionClass::InstructionAbortLower,
        ) => crate::ea::handle(frame, esr),
        (ExceptionSource::CurrentSpx, ExceptionType::Sync, ExceptionClass::Unknown)
            if platform::semihosting::recover(frame) => {}
        (ExceptionSource::CurrentSpx, ExceptionType::Sync, ExceptionClass::DataAbortSame)
            if platform::arch::probe::recover(frame) => {}
        _ => {
            let report = ExceptionReport { kind, esr, far: FAR_EL3.get(), elr: frame.elr, spsr: frame.spsr };
            let what = match kind.kind() {
                ExceptionType::SError => "SError (routed to EL3 by SCR_EL3.EA; not recoverable)",
                _ => "unexpected exception",
            };
            crate::power::fatal(format_args!("{what}: {report}"));
        }
    }
}
