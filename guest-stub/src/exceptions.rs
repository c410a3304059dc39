//! The guest-stub's EL1 vectors. A check that expects an exception arms
//! [`expect_sync`]; the handler records the syndrome, steps over the
//! faulting instruction and disarms. A check that calls code which may not
//! be executable arms [`probe_call`] with the code's pages instead: an
//! exception taken at an instruction there is recorded and the call
//! returns to its caller (the link register). An exception from EL0 while
//! [`crate::el0::call`] runs ends that call. An IRQ taken at EL1 goes to the
//! GIC's dispatch ([`crate::gic::handle_irq`]). Any other exception fails
//! the run.
//!
//! Also here: masking and unmasking IRQs (`PSTATE.I`) for the code that
//! takes them. The vectors run with `PSTATE.I` masked; a handler that
//! unmasks it (to be preempted by a higher priority) must mask it again
//! before it returns, because the vector's epilogue restores `ELR_EL1` and
//! `SPSR_EL1` before its `ERET`.

use aarch64_cpu::registers::{Readable, DAIF, ESR_EL1, FAR_EL1};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use platform::arch::trap::{ExceptionKind, ExceptionReport, ExceptionType, TrapFrame};
use platform::esr::Esr;

platform::exception_vectors!("stub_vectors", 1, handle_exception_keeping_fp);

/// The vectors' handler: saves the FP/SIMD state (q0..q31, FPSR, FPCR)
/// around [`handle_exception`]. The shared vector saves only the
/// general-purpose registers, and the stub's Rust code may use the vector
/// registers anywhere (it runs with FP/SIMD enabled, `boot.S`): without
/// this, a handler that does would corrupt the code it returns to.
#[unsafe(naked)]
extern "C" fn handle_exception_keeping_fp(frame: &mut TrapFrame, kind: ExceptionKind) {
    core::arch::naked_asm!(
        "stp    x29, x30, [sp, #-16]!",
        "mov    x29, sp",
        "sub    sp, sp, #{fp_frame}",
        "stp    q0, q1, [sp, #16 + 32 * 0]",
        "stp    q2, q3, [sp, #16 + 32 * 1]",
        "stp    q4, q5, [sp, #16 + 32 * 2]",
        "stp    q6, q7, [sp, #16 + 32 * 3]",
        "stp    q8, q9, [sp, #16 + 32 * 4]",
        "stp    q10, q11, [sp, #16 + 32 * 5]",
        "stp    q12, q13, [sp, #16 + 32 * 6]",
        "stp    q14, q15, [sp, #16 + 32 * 7]",
        "stp    q16, q17, [sp, #16 + 32 * 8]",
        "stp    q18, q19, [sp, #16 + 32 * 9]",
        "stp    q20, q21, [sp, #16 + 32 * 10]",
        "stp    q22, q23, [sp, #16 + 32 * 11]",
        "stp    q24, q25, [sp, #16 + 32 * 12]",
        "stp    q26, q27, [sp, #16 + 32 * 13]",
        "stp    q28, q29, [sp, #16 + 32 * 14]",
        "stp    q30, q31, [sp, #16 + 32 * 15]",
        "mrs    x9, fpsr",
        "mrs    x10, fpcr",
        "stp    x9, x10, [sp]",
        "bl     {handler}",
        "ldp    x9, x10, [sp]",
        "msr    fpsr, x9",
        "msr    fpcr, x10",
        "ldp    q0, q1, [sp, #16 + 32 * 0]",
        "ldp    q2, q3, [sp, #16 + 32 * 1]",
        "ldp    q4, q5, [sp, #16 + 32 * 2]",
        "ldp    q6, q7, [sp, #16 + 32 * 3]",
        "ldp    q8, q9, [sp, #16 + 32 * 4]",
        "ldp    q10, q11, [sp, #16 + 32 * 5]",
        "ldp    q12, q13, [sp, #16 + 32 * 6]",
        "ldp    q14, q15, [sp, #16 + 32 * 7]",
        "ldp    q16, q17, [sp, #16 + 32 * 8]",
        "ldp    q18, q19, [sp, #16 + 32 * 9]",
        "ldp    q20, q21, [sp, #16 + 32 * 10]",
        "ldp    q22, q23, [sp, #16 + 32 * 11]",
        "ldp    q24, q25, [sp, #16 + 32 * 12]",
        "ldp    q26, q27, [sp, #16 + 32 * 13]",
        "ldp    q28, q29, [sp, #16 + 32 * 14]",
        "ldp    q30, q31, [sp, #16 + 32 * 15]",
        "mov    sp, x29",
        "ldp    x29, x30, [sp], #16",
        "ret",
        fp_frame = const 32 * 16 + 16,
        handler = sym handle_exception,
    );
}

static ARMED: AtomicBool = AtomicBool::new(false);
static TAKEN: AtomicBool = AtomicBool::new(false);
static SEEN_ESR: AtomicU64 = AtomicU64::new(0);
static SEEN_FAR: AtomicU64 = AtomicU64::new(0);
static SEEN_ELR: AtomicU64 = AtomicU64::new(0);
static SEEN_SPSR: AtomicU64 = AtomicU64::new(0);

/// The pages [`probe_call`] is armed for: `[start, end)`, empty when
/// disarmed.
static PROBE_START: AtomicU64 = AtomicU64::new(0);
static PROBE_END: AtomicU64 = AtomicU64::new(0);

/// A synchronous exception the stub caught on purpose.
#[derive(Clone, Copy, Debug)]
pub struct Caught {
    pub esr: Esr,
    pub far: u64,
    /// `ELR_EL1` as the exception left it (before the handler stepped over
    /// the instruction): the preferred return address.
    pub elr: u64,
    /// `SPSR_EL1`: the PSTATE the exception interrupted.
    pub spsr: u64,
}

impl core::fmt::Display for Caught {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ESR {}, FAR {:#x}, ELR {:#x}, SPSR {:#x}", self.esr, self.far, self.elr, self.spsr)
    }
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
        elr: SEEN_ELR.load(Ordering::SeqCst),
        spsr: SEEN_SPSR.load(Ordering::SeqCst),
    })
}

/// Calls the code at `target` (`BLR`), which lies in `pages` and returns
/// with `RET`, expecting that it may not be executable: a synchronous
/// exception at EL1 whose `ELR_EL1` is inside `pages` (an instruction abort
/// on its first fetch, or anything the code itself raised) is recorded and
/// the call returns to its caller as if the code had. Returns what was
/// caught, if anything.
///
/// # Safety
///
/// `target` must be code that is safe to call at EL1 (it returns with
/// `RET`, clobbering at most what a C function may), or that cannot run.
pub unsafe fn probe_call(target: u64, pages: core::ops::Range<u64>) -> Option<Caught> {
    TAKEN.store(false, Ordering::SeqCst);
    PROBE_START.store(pages.start, Ordering::SeqCst);
    PROBE_END.store(pages.end, Ordering::SeqCst);
    // SAFETY: the caller vouches for the code at `target`; should it not
    // run, the handler resumes at the return address with every register
    // as the `BLR` left it, which the C ABI's clobbers cover.
    unsafe {
        core::arch::asm!("blr {target}", target = in(reg) target, clobber_abi("C"), options(nostack));
    }
    PROBE_END.store(0, Ordering::SeqCst);
    PROBE_START.store(0, Ordering::SeqCst);
    TAKEN.load(Ordering::SeqCst).then(|| Caught {
        esr: Esr(SEEN_ESR.load(Ordering::SeqCst)),
        far: SEEN_FAR.load(Ordering::SeqCst),
        elr: SEEN_ELR.load(Ordering::SeqCst),
        spsr: SEEN_SPSR.load(Ordering::SeqCst),
    })
}

/// Whether `elr` is in the pages [`probe_call`] is armed for.
fn probed(elr: u64) -> bool {
    (PROBE_START.load(Ordering::SeqCst)..PROBE_END.load(Ordering::SeqCst)).contains(&elr)
}

extern "C" fn handle_exception(frame: &mut TrapFrame, kind: ExceptionKind) {
    let esr = Esr(ESR_EL1.get());
    let far = FAR_EL1.get();
    // An SVC at EL1 is the benchmark's floor: return at once (ELR already
    // points past it).
    if !kind.from_lower_el() && esr.class() == platform::esr::ExceptionClass::Svc64 {
        return;
    }
    if kind.kind() == ExceptionType::Irq && !kind.from_lower_el() {
        crate::gic::handle_irq();
        return;
    }
    if kind.from_lower_el() && crate::el0::active() {
        // Does not return: resumes the EL1 code that entered EL0.
        crate::el0::exit(frame, kind, esr, far);
    }
    if kind.kind() == ExceptionType::Sync && !kind.from_lower_el() && probed(frame.elr) {
        PROBE_END.store(0, Ordering::SeqCst);
        SEEN_ESR.store(esr.0, Ordering::SeqCst);
        SEEN_FAR.store(far, Ordering::SeqCst);
        SEEN_ELR.store(frame.elr, Ordering::SeqCst);
        SEEN_SPSR.store(frame.spsr, Ordering::SeqCst);
        TAKEN.store(true, Ordering::SeqCst);
        // Back to the caller of the probed code: its `BLR` set x30.
        frame.elr = frame.x[30];
        return;
    }
    if kind.kind() == ExceptionType::Sync && !kind.from_lower_el() && ARMED.swap(false, Ordering::SeqCst) {
        SEEN_ESR.store(esr.0, Ordering::SeqCst);
        SEEN_FAR.store(far, Ordering::SeqCst);
        SEEN_ELR.store(frame.elr, Ordering::SeqCst);
        SEEN_SPSR.store(frame.spsr, Ordering::SeqCst);
        TAKEN.store(true, Ordering::SeqCst);
        frame.elr += 4;
        return;
    }
    let report = ExceptionReport { kind, esr, far, elr: frame.elr, spsr: frame.spsr };
    crate::abort_run(format_args!("unexpected exception: {report}"));
}

/// The `DAIFSet`/`DAIFClr` immediate's bit for `PSTATE.I` (the immediate
/// holds D, A, I, F in bits 3..0).
const DAIF_IMM_I: u32 = 0b0010;

/// Masks IRQs on this vCPU. Not `nomem`: memory accesses stay on their
/// side of it.
pub fn mask_irqs() {
    // SAFETY: masking IRQs on the current PE affects no memory and no
    // invariant of the code around it.
    unsafe { core::arch::asm!("msr daifset, #{i}", i = const DAIF_IMM_I, options(nostack)) };
}

/// Unmasks IRQs on this vCPU: pending ones are taken from here on.
pub fn unmask_irqs() {
    // SAFETY: the vectors and the IRQ dispatch are installed (boot.S sets
    // VBAR_EL1 before any Rust runs), so a taken IRQ is handled; the
    // compiler keeps memory accesses on their side (no `nomem`).
    unsafe { core::arch::asm!("msr daifclr, #{i}", i = const DAIF_IMM_I, options(nostack)) };
}

/// Whether IRQs are masked on this vCPU.
pub fn irqs_masked() -> bool {
    DAIF.is_set(DAIF::I)
}

/// Runs `f` with IRQs masked, then restores the mask as it was.
pub fn without_irqs<T>(f: impl FnOnce() -> T) -> T {
    let was_masked = irqs_masked();
    mask_irqs();
    let result = f();
    if !was_masked {
        unmask_irqs();
    }
    result
}
