//! The guest-stub's EL1 vectors. A check that expects an exception arms
//! [`expect_sync`]; the handler records the syndrome, steps over the
//! faulting instruction and disarms. Any other exception fails the run.

use aarch64_cpu::registers::{Readable, ESR_EL1, FAR_EL1};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use platform::arch::trap::{ExceptionKind, ExceptionReport, TrapFrame};
use platform::esr::Esr;

platform::exception_vectors!("stub_vectors", 1, handle_exception);

static ARMED: AtomicBool = AtomicBool::new(false);
static TAKEN: AtomicBool = AtomicBool::new(false);
static SEEN_ESR: AtomicU64 = AtomicU64::new(0);
static SEEN_FAR: AtomicU64 = AtomicU64::new(0);

/// A synchronous exception the stub caught on purpose.
#[derive(Clone, Copy, Debug)]
pub struct Caught {
    pub esr: Esr,
    pub far: u64,
}

/// Runs `f`, expecting it to raise one synchronous exception at EL1 from a
/// 4-byte instruction; returns what was caught, if anything.
pub fn expect_sync(f: impl FnOnce()) -> Option<Caught> {
    TAKEN.store(false, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    TAKEN.load(Ordering::SeqCst).then(|| Caught {
        esr: Esr(SEEN_ESR.load(Ordering::SeqCst)),
        far: SEEN_FAR.load(Ordering::SeqCst),
    })
}

extern "C" fn handle_exception(frame: &mut TrapFrame, kind: ExceptionKind) {
    let esr = Esr(ESR_EL1.get());
    let far = FAR_EL1.get();
    if kind.kind() == platform::arch::trap::ExceptionType::Sync && ARMED.swap(false, Ordering::SeqCst) {
        SEEN_ESR.store(esr.0, Ordering::SeqCst);
        SEEN_FAR.store(far, Ordering::SeqCst);
        TAKEN.store(true, Ordering::SeqCst);
        frame.elr += 4;
        return;
    }
    let report = ExceptionReport { kind, esr, far, elr: frame.elr, spsr: frame.spsr };
    crate::abort_run(format_args!("unexpected exception: {report}"));
}
