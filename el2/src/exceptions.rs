//! The hypervisor's exception vectors and the trap dispatcher: exception
//! class → handler. Guest calls go to [`crate::hvc`]; stage-2 aborts are
//! reflected to the guest as external aborts; anything else is reported
//! with its decoded context and stops the system.

use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2, HPFAR_EL2};
use platform::arch::trap::{ExceptionKind, ExceptionReport, ExceptionSource, ExceptionType, TrapFrame};
use platform::esr::{Esr, ExceptionClass};

platform::exception_vectors!("hv_vectors", 2, handle_exception);

/// `HPFAR_EL2.FIPA` holds IPA bits [51:12] at bits [43:4].
fn faulting_ipa(far: u64) -> u64 {
    ((HPFAR_EL2.get() >> 4) << 12) | (far & 0xfff)
}

extern "C" fn handle_exception(frame: &mut TrapFrame, kind: ExceptionKind) {
    crate::prda::count_trap();
    let esr = Esr(ESR_EL2.get());
    if kind.from_lower_el() {
        // The EL0 service's exit, if it is running: does not return then.
        crate::el0::exit_to_el2(esr, frame.x[0]);
    }
    match (kind.source(), kind.kind(), esr.class()) {
        (ExceptionSource::LowerA64, ExceptionType::Sync, ExceptionClass::Hvc64) => {
            crate::hvc::handle(frame);
        }
        (ExceptionSource::LowerA64, ExceptionType::Sync, ExceptionClass::Smc64) => {
            // A trapped SMC returns to itself; the call is done, so step over it.
            frame.elr += 4;
            crate::hvc::handle(frame);
        }
        (
            ExceptionSource::LowerA64,
            ExceptionType::Sync,
            ExceptionClass::DataAbortLower | ExceptionClass::InstructionAbortLower,
        ) => {
            let far = FAR_EL2.get();
            log::debug!(
                "stage-2 abort at IPA {:#x} (VA {far:#x}, ELR {:#x}): external abort to the guest",
                faulting_ipa(far),
                frame.elr
            );
            crate::guest::inject_external_abort(frame, esr, far);
        }
        _ => {
            let report = ExceptionReport { kind, esr, far: FAR_EL2.get(), elr: frame.elr, spsr: frame.spsr };
            crate::power::fatal(format_args!("unexpected exception: {report}"));
        }
    }
}
