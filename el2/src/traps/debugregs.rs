//! Guest accesses to debug registers, which `MDCR_EL2.TDE` (set so that
//! guest `BRK`s reach the backdoor) makes trap to EL2.
//!
//! - `MDCCSR_EL0` reads are the DCC conduit, a hypercall through the DCC
//!   status register: a hypercall when x0 carries
//!   `DCC_CALL_MAGIC`, otherwise the register reads as on a CPU with no
//!   external debugger attached (0: nothing to receive, room to send).
//! - `DBGDTRTX_EL0` writes are a guest console channel, printed by line as
//!   `guest-dcc: ...`; `DBGDTRRX_EL0` and `DBGDTR_EL0` read 0.
//! - The EL1 debug registers a guest OS uses (OS lock, `MDSCR_EL1`, the
//!   breakpoint and watchpoint registers, claim tags) are passed through to
//!   the hardware, which EL2 does not use itself, so that a guest's
//!   debugger and Linux's breakpoint probing behave as on bare metal.
//!   Breakpoints and watchpoints beyond what the CPU implements, accesses
//!   in a direction the register does not have, and any other trapped
//!   register are answered with an undefined-instruction exception, as the
//!   hardware would.

use crate::traps::backdoor;
use aarch64_cpu::registers::{Readable, ID_AA64DFR0_EL1};
use platform::arch::trap::TrapFrame;
use platform::esr::{BreakpointReg, Direction, Esr, SysReg, SysRegIss};
use platform::hypercall::dcc_call_function;

/// What the handler did with a trapped access.
pub enum Outcome {
    /// Emulated: step over the instruction.
    Done,
    /// Answer with an undefined-instruction exception.
    Undefined,
}

/// Emulates the trapped `MRS`/`MSR` decoded in `iss`.
pub fn handle(frame: &mut TrapFrame, iss: SysRegIss) -> Outcome {
    let reg = iss.reg();
    let rt = usize::from(iss.rt);
    let value = frame.x.get(rt).copied().unwrap_or(0);
    let caller = backdoor::caller(frame.spsr);
    let set_rt = |frame: &mut TrapFrame, v: u64| {
        if let Some(x) = frame.x.get_mut(rt) {
            *x = v;
        }
    };
    match (reg, iss.direction) {
        (SysReg::MDCCSR_EL0, Direction::Read) => {
            if let Some(function) = dcc_call_function(frame.x[0]) {
                frame.x[0] = function;
                // The destination reads 0 unless it carries a result: x0..x3,
                // and x4 when the reply set it (SCAN's cursor).
                let reply = backdoor::handle(frame, caller);
                if rt >= 5 || (rt == 4 && reply.x4.is_none()) {
                    set_rt(frame, 0);
                }
            } else {
                set_rt(frame, 0);
            }
            Outcome::Done
        }
        (SysReg::DBGDTRTX_EL0, Direction::Write) => {
            dcc_console_byte(value as u8);
            Outcome::Done
        }
        (SysReg::DBGDTRRX_EL0 | SysReg::DBGDTR_EL0, Direction::Read) => {
            set_rt(frame, 0);
            Outcome::Done
        }
        (SysReg::DBGDTR_EL0, Direction::Write) => Outcome::Done,
        // While EL2 steps over a breakpoint for the guest, the hardware's
        // MDSCR_EL1 is EL2's; the guest's is kept aside (crate::traps::debug).
        (SysReg::MDSCR_EL1, direction)
            if let Some(read) =
                crate::traps::debug::guest_mdscr_access((direction == Direction::Write).then_some(value)) =>
        {
            if direction == Direction::Read {
                set_rt(frame, read);
            }
            Outcome::Done
        }
        (reg, direction) => match passthrough(reg, direction, value) {
            Ok(read) => {
                if direction == Direction::Read {
                    set_rt(frame, read);
                }
                Outcome::Done
            }
            Err(Unsupported) => {
                log::debug!("guest {}: not emulated, undefined-instruction exception", iss);
                Outcome::Undefined
            }
        },
    }
}

/// The access is not one this CPU or this emulation has.
struct Unsupported;

/// Generates `access(reg, direction, value)`: each listed register with the
/// directions it has, reached with its own encoding.
macro_rules! registers {
    ($($reg:expr => $enc:expr, read: $r:literal, write: $w:literal;)*) => {
        fn access(reg: SysReg, direction: Direction, value: u64) -> Result<u64, Unsupported> {
            $(
                if reg == $reg {
                    return match direction {
                        Direction::Read if $r => {
                            let v: u64;
                            // SAFETY: a debug register EL2 does not use
                            // itself; reading it has no side effects.
                            unsafe { core::arch::asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nomem, nostack)) };
                            Ok(v)
                        }
                        Direction::Write if $w => {
                            // SAFETY: the guest owns the debug hardware
                            // (EL2 does not use it); writing it changes
                            // only debug state the guest controls anyway.
                            unsafe { core::arch::asm!(concat!("msr ", $enc, ", {}"), in(reg) value, options(nostack)) };
                            Ok(0)
                        }
                        _ => Err(Unsupported),
                    };
                }
            )*
            Err(Unsupported)
        }
    };
}

macro_rules! breakpoint_registers {
    ($($n:literal)*) => {
        registers! {
            SysReg::MDSCR_EL1 => "S2_0_C0_C2_2", read: true, write: true;
            SysReg::MDCCINT_EL1 => "S2_0_C0_C2_0", read: true, write: true;
            SysReg::OSLAR_EL1 => "S2_0_C1_C0_4", read: false, write: true;
            SysReg::OSLSR_EL1 => "S2_0_C1_C1_4", read: true, write: false;
            SysReg::OSDLR_EL1 => "S2_0_C1_C3_4", read: true, write: true;
            SysReg::DBGPRCR_EL1 => "S2_0_C1_C4_4", read: true, write: true;
            SysReg::DBGCLAIMSET_EL1 => "S2_0_C7_C8_6", read: true, write: true;
            SysReg::DBGCLAIMCLR_EL1 => "S2_0_C7_C9_6", read: true, write: true;
            SysReg::DBGAUTHSTATUS_EL1 => "S2_0_C7_C14_6", read: true, write: false;
            SysReg::MDRAR_EL1 => "S2_0_C1_C0_0", read: true, write: false;
            $(
                SysReg::dbgbvr($n) => concat!("S2_0_C0_C", stringify!($n), "_4"), read: true, write: true;
                SysReg::dbgbcr($n) => concat!("S2_0_C0_C", stringify!($n), "_5"), read: true, write: true;
                SysReg::dbgwvr($n) => concat!("S2_0_C0_C", stringify!($n), "_6"), read: true, write: true;
                SysReg::dbgwcr($n) => concat!("S2_0_C0_C", stringify!($n), "_7"), read: true, write: true;
            )*
        }
    };
}

breakpoint_registers!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);

/// `ID_AA64DFR0_EL1.BRPs` [15:12] and `WRPs` [23:20]: implemented
/// breakpoints and watchpoints, minus one.
fn implemented(kind: BreakpointReg) -> u8 {
    let dfr0 = ID_AA64DFR0_EL1.get();
    let field = match kind {
        BreakpointReg::Bvr | BreakpointReg::Bcr => (dfr0 >> 12) & 0xf,
        BreakpointReg::Wvr | BreakpointReg::Wcr => (dfr0 >> 20) & 0xf,
    };
    field as u8 + 1
}

fn passthrough(reg: SysReg, direction: Direction, value: u64) -> Result<u64, Unsupported> {
    if let Some((kind, n)) = reg.breakpoint_reg() {
        if n >= implemented(kind) {
            return Err(Unsupported);
        }
    }
    crate::vm::vcpu::claim_debug();
    access(reg, direction, value)
}

/// The guest's `MDSCR_EL1` as the hardware holds it.
pub fn read_mdscr() -> u64 {
    access(SysReg::MDSCR_EL1, Direction::Read, 0).unwrap_or(0)
}

/// Sets the hardware's `MDSCR_EL1`.
pub fn write_mdscr(value: u64) {
    let _ = access(SysReg::MDSCR_EL1, Direction::Write, value);
}

/// The guest's `OSLSR_EL1` (OS lock status).
pub fn read_oslsr() -> u64 {
    access(SysReg::OSLSR_EL1, Direction::Read, 0).unwrap_or(0)
}

/// The guest's `OSDLR_EL1` (OS double lock).
pub fn read_osdlr() -> u64 {
    access(SysReg::OSDLR_EL1, Direction::Read, 0).unwrap_or(0)
}

/// The DCC console: bytes written to `DBGDTRTX_EL0`, printed by line.
fn dcc_console_byte(byte: u8) {
    let Some((vm, _)) = crate::vm::current() else { return };
    let mut line = vm.dcc_line.lock();
    if byte != b'\n' {
        line.push(byte);
    }
    if byte == b'\n' || line.is_full() {
        let _ = backdoor::print_guest_text("guest-dcc", line.text());
        line.clear();
    }
}

/// The syndrome to give the guest for an access it may not make.
pub fn undefined() -> Esr {
    Esr::undefined()
}
