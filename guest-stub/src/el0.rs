//! Running guest-stub code at EL0, to see the hypervisor's interfaces as an
//! EL0 task would.
//!
//! The stub's EL1&0 regime has its MMU off, so EL0 addresses are the same
//! flat IPAs EL1 uses: EL0 code runs from the image, reads and writes
//! `.bss` and uses a stack there. [`call`] saves EL1's callee-saved state
//! (`el0.S`), `eret`s to EL0t with DAIF masked, and regains control when
//! EL0 takes an exception to EL1: the vector (`exceptions.rs`) hands it to
//! [`exit`], which records how EL0 left ([`Exit`]) and resumes the EL1 code
//! after [`call`] with its saved state. EL0 code ends with `SVC #0`; any
//! other exception from EL0 ends the call too, and the caller decides
//! whether that was expected.

use aarch64_cpu::registers::{Readable, Writeable, ID_AA64PFR0_EL1, MDSCR_EL1};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use platform::arch::regs::SPSR_DAIF;
use platform::arch::trap::{ExceptionKind, ExceptionType, TrapFrame};
use platform::debug::{MDSCR_KDE, MDSCR_SS, SPSR_SS};
use platform::esr::{Esr, ExceptionClass};
use platform::hypercall::HV_BRK_IMM;

/// The `BRK` comment EL0's probe uses: not a hypercall, so the hypervisor
/// must reflect it to the stub's own EL1 vector.
pub const PROBE_BRK_IMM: u16 = 0x1234;

core::arch::global_asm!(
    include_str!("el0.S"),
    HV_BRK_IMM = const HV_BRK_IMM,
    PROBE_BRK_IMM = const PROBE_BRK_IMM,
    BRK_CALL_SIZE = const core::mem::size_of::<BrkCall>(),
);

/// EL1's state across an EL0 call: x19..x30, sp, DAIF, d8..d15 (the layout
/// `el0.S` uses). FP/SIMD is enabled at EL1 (`boot.S`), so compiled code
/// may keep values in d8..d15 across the call.
#[repr(C, align(16))]
struct SaveArea([u64; 22]);

#[repr(C, align(16))]
struct Stack([u8; 4096]);

/// A static that only the one CPU running the stub touches, through raw
/// pointers handed to `el0.S`.
struct Private<T>(UnsafeCell<T>);

// SAFETY: the guest-stub runs on one CPU and makes one EL0 call at a time
// (`ACTIVE`); the contents are only reached through raw pointers by the
// assembly.
unsafe impl<T> Sync for Private<T> {}

static SAVE: Private<SaveArea> = Private(UnsafeCell::new(SaveArea([0; 22])));
static STACK: Private<Stack> = Private(UnsafeCell::new(Stack([0; 4096])));
static ACTIVE: AtomicBool = AtomicBool::new(false);
static EXIT: spin::Mutex<Option<Exit>> = spin::Mutex::new(None);

extern "C" {
    fn stub_el0_enter(entry: u64, a0: u64, a1: u64, stack_top: u64, save: *mut SaveArea, spsr: u64, mdscr_set: u64);
    fn stub_el0_return(save: *mut SaveArea) -> !;
    fn stub_el0_brk_calls();
    fn stub_el0_brk_probe();
    static stub_el0_brk_probe_insn: u8;
    fn stub_el0_step_probe();
    fn stub_el0_bkpt32();
    fn stub_el0_call();
}

/// How EL0 left.
#[derive(Clone, Copy, Debug)]
pub enum Exit {
    /// `SVC #imm` (EC 0x15): EL0's x0..x3 and the SPSR it trapped with.
    Svc { imm: u16, regs: [u64; 4], spsr: u64 },
    /// Any other exception from EL0.
    Exception { kind: ExceptionKind, esr: Esr, far: u64, elr: u64, spsr: u64 },
}

impl core::fmt::Display for Exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Svc { imm, regs, spsr } => {
                write!(f, "SVC #{imm:#x} with x0..x3 = {regs:#x?}, SPSR {spsr:#x}")
            }
            Self::Exception { kind, esr, far, elr, spsr } => {
                write!(f, "{kind}: ESR {esr}, FAR {far:#x}, ELR {elr:#x}, SPSR {spsr:#x}")
            }
        }
    }
}

/// Whether an EL0 call is under way (the vector asks).
pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Ends the EL0 call from the exception vector: records how EL0 left and
/// resumes the EL1 code that called [`call`], abandoning the handler's
/// frames.
pub fn exit(frame: &TrapFrame, kind: ExceptionKind, esr: Esr, far: u64) -> ! {
    let exit = match (kind.kind(), esr.svc_imm()) {
        (ExceptionType::Sync, Some(imm)) if esr.class() == ExceptionClass::Svc64 => {
            Exit::Svc { imm, regs: [frame.x[0], frame.x[1], frame.x[2], frame.x[3]], spsr: frame.spsr }
        }
        _ => Exit::Exception { kind, esr, far, elr: frame.elr, spsr: frame.spsr },
    };
    *EXIT.lock() = Some(exit);
    ACTIVE.store(false, Ordering::SeqCst);
    // SAFETY: `call` filled the save area before it entered EL0, and its
    // frame (and every caller's) is still on the stack above the handler's.
    unsafe { stub_el0_return(SAVE.0.get()) }
}

/// Runs the EL0 code at `entry` with x0 = `a0`, x1 = `a1` until it takes
/// an exception to EL1.
///
/// # Safety
///
/// `entry` must be code that is safe to run at EL0 with those arguments
/// and that ends with an exception (normally `SVC #0`).
unsafe fn call(entry: unsafe extern "C" fn(), a0: u64, a1: u64) -> Exit {
    // SAFETY: as for `call_with`; the caller vouches for `entry`.
    unsafe { call_with(entry, a0, a1, SPSR_EL0_MASKED, 0) }
}

/// EL0t in AArch64 state with DAIF masked: how EL0 code normally runs.
const SPSR_EL0_MASKED: u64 = SPSR_DAIF;

/// [`call`] with the SPSR EL0 starts with, and bits to set in `MDSCR_EL1`
/// right before the `ERET` to it.
///
/// # Safety
///
/// As for [`call`], for code of the state `spsr` names.
unsafe fn call_with(entry: unsafe extern "C" fn(), a0: u64, a1: u64, spsr: u64, mdscr_set: u64) -> Exit {
    if ACTIVE.swap(true, Ordering::SeqCst) {
        crate::abort_run(format_args!("nested EL0 call"));
    }
    *EXIT.lock() = None;
    let stack = STACK.0.get();
    let stack_top = stack as u64 + core::mem::size_of::<Stack>() as u64;
    // SAFETY: the caller vouches for `entry`; the stack and save area are
    // this module's, used by one call at a time; `stub_el0_enter` returns
    // (through `exit`) with every callee-saved register restored.
    unsafe { stub_el0_enter(entry as usize as u64, a0, a1, stack_top, SAVE.0.get(), spsr, mdscr_set) };
    EXIT.lock().take().unwrap_or_else(|| crate::abort_run(format_args!("EL0 call returned without an exit")))
}

/// One `BRK #HV_BRK_IMM` hypercall made from EL0: x0..x7 in, x0..x3 out
/// (the layout `el0.S` walks).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BrkCall {
    pub regs: [u64; 8],
    pub reply: [u64; 4],
}

impl BrkCall {
    pub const fn new(function: u64, x1: u64, x2: u64) -> Self {
        Self { regs: [function, x1, x2, 0, 0, 0, 0, 0], reply: [0; 4] }
    }
}

/// Makes the hypercalls in `calls` from EL0, in order, writing each reply.
/// EL0 ends with `SVC #0` and x0 = 0; anything else is returned as it is.
pub fn brk_calls(calls: &mut [BrkCall]) -> Exit {
    // SAFETY: `stub_el0_brk_calls` only reads and writes `calls` (flat
    // addresses, the MMU is off) and ends with SVC #0.
    unsafe { call(stub_el0_brk_calls, calls.as_mut_ptr() as u64, calls.len() as u64) }
}

/// Executes `BRK #PROBE_BRK_IMM` at EL0; returns how EL0 left and the
/// address of that `BRK`.
pub fn brk_probe() -> (Exit, u64) {
    // SAFETY: `stub_el0_brk_probe` touches no memory and ends with an
    // exception (the BRK, or SVC #0 if the BRK did not stop it).
    let exit = unsafe { call(stub_el0_brk_probe, 0, 0) };
    (exit, core::ptr::addr_of!(stub_el0_brk_probe_insn) as u64)
}

/// The way an OS single-steps a task: `MDSCR_EL1.SS` set at EL1 (with
/// `KDE` clear, so no step exception may arise at EL1), then an `ERET` to
/// EL0 with `SPSR.SS` set. Returns how EL0 left and the address of its
/// first instruction; on hardware EL0 runs that one instruction and takes a
/// software step exception with ELR at the second.
pub fn step_probe() -> (Exit, u64) {
    let saved = MDSCR_EL1.get();
    MDSCR_EL1.set(saved & !(MDSCR_KDE | MDSCR_SS));
    // SAFETY: `stub_el0_step_probe` touches no memory and ends with an
    // exception (the step, or SVC #0 if the step did not stop it).
    let exit = unsafe { call_with(stub_el0_step_probe, 0, 0, SPSR_EL0_MASKED | SPSR_SS, MDSCR_SS) };
    MDSCR_EL1.set(saved);
    (exit, stub_el0_step_probe as *const () as u64)
}

/// Calls the code at `target` from EL0 (`BLR`). Code that returns ends
/// the call with `SVC #0` and x0 = 0; code EL0 may not execute ends it with
/// the instruction abort, whose `ELR_EL1` is `target`.
///
/// # Safety
///
/// `target` must be code that is safe to run at EL0 and returns with
/// `RET`, or that cannot run.
pub unsafe fn call_code(target: u64) -> Exit {
    // SAFETY: `stub_el0_call` only calls `target`, which the caller
    // vouches for, and ends with an exception (SVC #0, or the abort).
    unsafe { call(stub_el0_call, target, 0) }
}

/// `SPSR` for AArch32 User mode (M = 0b10000, M[4] set: AArch32), A32
/// instruction set, A, I and F masked.
const SPSR_AARCH32_USR: u64 = 0b1_0000 | (0b111 << 6);

/// Whether EL0 can run AArch32 code (`ID_AA64PFR0_EL1.EL0` = 0b0010).
pub fn aarch32_el0() -> bool {
    ID_AA64PFR0_EL1.get() & 0xf == 0b0010
}

/// Whether the A32 probe's code has a 32-bit address (the MMU is off:
/// EL0 runs it at its IPA).
pub fn aarch32_reachable() -> bool {
    u32::try_from(stub_el0_bkpt32 as *const () as usize).is_ok()
}

/// Runs an A32 `BKPT` at EL0 in AArch32 state; returns how EL0 left and
/// the `BKPT`'s address. The caller checks [`aarch32_el0`] first.
pub fn bkpt32_probe() -> (Exit, u64) {
    // SAFETY: `stub_el0_bkpt32` is A32 code that touches no memory and ends
    // with an exception (the BKPT, or SVC #0).
    let exit = unsafe { call_with(stub_el0_bkpt32, 0, 0, SPSR_AARCH32_USR, 0) };
    (exit, stub_el0_bkpt32 as *const () as u64)
}
