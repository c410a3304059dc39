//! `mbec-matrix`: mode-based execute control at stage 2, seen from the
//! guest. Four pages of the stub's RAM ([`super::code`]), each holding one
//! `RET`, get the four execute classes with `INTEGRITY SET_EXEC` (both,
//! kernel only, user only, neither); EL1 and EL0 each call every page. The
//! stub's MMU is off, so stage 1 lets everything execute and only stage 2
//! decides. Each of the eight fetches must run or fault exactly as
//! FEAT_XNX's `XN[1:0]` says ([`Exec::allows`]), and a fault must be the
//! instruction abort the contract names, field by field: EC 0x21 (from
//! EL1) or 0x20 (from EL0), IL = 1, IFSC 0x0F, FAR and ELR the page.
//!
//! This module owns the matrix line ([`MatrixLine`]), printed once per run
//! and compared by the scenarios between CPUs (FEAT_XNX on `-cpu max`, the
//! hypervisor's emulation on the Cortex-A72 and with `integrity=emulate`):
//!
//! ```text
//! mbec-matrix: el1 both=run kernel=run user=fault neither=fault; el0 both=run kernel=fault user=run neither=fault
//! ```
//!
//! and, before it, the `STATUS` it started from (`integrity status: ...`,
//! [`super::Status`]'s format) and after it the number of instruction
//! aborts taken (`mbec-matrix: N fetch faults`).
//!
//! Every cell runs several times, in an order that leaves each kind of
//! cell after each other kind: two passes, the first over the pages in
//! order with EL1's two calls before EL0's, the second in reverse with
//! EL0's first. An emulation that keeps a stage-2 tree per class, switched
//! on a fault, is then entered with every tree a previous cell can leave
//! loaded. Before the matrix, the ABI's refusals: `SET_EXEC` of pages
//! outside RAM (INVALID_ARGUMENT) and from EL0 (PERMISSION_DENIED). After
//! it, the pages go back to both, and all eight fetches must run.

use super::{check_abort, code, exec_name, mode_name, set_exec, status_or_skip, IntegrityFailure, PAGE, PERMISSION_L3};
use crate::checks::{el0_finished, reply_ok, reply_status, Failure};
use crate::el0::{self, BrkCall, Exit};
use crate::exceptions::probe_call;
use crate::Env;
use core::fmt;
use platform::arch::trap::{ExceptionSource, ExceptionType};
use platform::esr::ExceptionClass;
use platform::hypercall::{Function, HvError, IntegrityOp};
use platform::mbec::{Exec, Mode};
use platform::println;

/// The modes, in the line's order.
const MODES: [Mode; 2] = [Mode::Kernel, Mode::User];

/// Which fetches ran (`true`) and which faulted, per mode ([`MODES`]) and
/// class ([`Exec::ALL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixLine(pub [[bool; 4]; 2]);

impl MatrixLine {
    /// FEAT_XNX's table.
    pub fn xnx() -> Self {
        let mut ran = [[false; 4]; 2];
        for (row, mode) in ran.iter_mut().zip(MODES) {
            for (cell, exec) in row.iter_mut().zip(Exec::ALL) {
                *cell = exec.allows(mode);
            }
        }
        Self(ran)
    }
}

impl fmt::Display for MatrixLine {
    /// `mbec-matrix: el1 both=run kernel=run user=fault neither=fault; el0 ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mbec-matrix:")?;
        for (m, (row, mode)) in self.0.iter().zip(MODES).enumerate() {
            write!(f, "{} {}", if m == 0 { "" } else { ";" }, mode_name(mode))?;
            for (ran, exec) in row.iter().zip(Exec::ALL) {
                write!(f, " {}={}", exec_name(exec), if *ran { "run" } else { "fault" })?;
            }
        }
        Ok(())
    }
}

/// The page that gets class `exec`.
fn page_of(exec: Exec) -> u64 {
    code::page(exec as usize)
}

/// One fetch: whether it ran; a fault must be the contract's instruction
/// abort at the page.
fn fetch(mode: Mode, exec: Exec) -> Result<bool, Failure> {
    let page = page_of(exec);
    let cell = |what, expected, got| Failure::Integrity(IntegrityFailure::Cell { mode, exec, what, expected, got });
    let (esr, far, elr) = match mode {
        Mode::Kernel => {
            // SAFETY: the page holds a `RET` (code::prepare), or cannot
            // run; probe_call resumes at the return address if it faults.
            match unsafe { probe_call(page, code::range()) } {
                None => return Ok(true),
                Some(caught) => (caught.esr, caught.far, caught.elr),
            }
        }
        Mode::User => {
            // SAFETY: as above; the page's `RET` returns to el0.S, which
            // leaves EL0 with SVC #0.
            match unsafe { el0::call_code(page) } {
                Exit::Svc { imm: 0, regs: [0, ..], .. } => return Ok(true),
                Exit::Exception { kind, esr, far, elr, .. }
                    if kind.kind() == ExceptionType::Sync && kind.source() == ExceptionSource::LowerA64 =>
                {
                    (esr, far, elr)
                }
                exit => return Err(Failure::El0 { what: "an EL0 call of a test page", exit }),
            }
        }
    };
    let class = match mode {
        Mode::Kernel => ExceptionClass::InstructionAbortSame,
        Mode::User => ExceptionClass::InstructionAbortLower,
    };
    check_abort(esr, class, PERMISSION_L3, None).map_err(|(what, expected, got)| cell(what, expected, got))?;
    if far != page {
        return Err(cell("FAR_EL1 (the page)", page, far));
    }
    if elr != page {
        return Err(cell("ELR_EL1 (the page: the faulting PC)", page, elr));
    }
    Ok(false)
}

/// Every cell, twice in a row, in two passes (module doc); each outcome
/// the same every time. Returns the matrix and the faults taken.
fn matrix() -> Result<(MatrixLine, u64), Failure> {
    let mut seen: [[Option<bool>; 4]; 2] = [[None; 4]; 2];
    let mut faults = 0;
    let forward = Exec::ALL.map(|exec| (exec, [Mode::Kernel, Mode::Kernel, Mode::User, Mode::User]));
    let mut backward = Exec::ALL.map(|exec| (exec, [Mode::User, Mode::User, Mode::Kernel, Mode::Kernel]));
    backward.reverse();
    for (exec, modes) in forward.into_iter().chain(backward) {
        for mode in modes {
            let ran = fetch(mode, exec)?;
            faults += u64::from(!ran);
            let slot = &mut seen[mode as usize][exec as usize];
            match *slot {
                Some(before) if before != ran => {
                    return Err(Failure::Integrity(IntegrityFailure::Unstable { mode, exec }));
                }
                _ => *slot = Some(ran),
            }
        }
    }
    Ok((MatrixLine(seen.map(|row| row.map(|ran| ran.unwrap_or(false)))), faults))
}

/// Gives each page its class.
fn classify() -> Result<(), Failure> {
    for exec in Exec::ALL {
        reply_ok("INTEGRITY SET_EXEC of a test page", set_exec(page_of(exec), 1, exec)?)?;
    }
    Ok(())
}

/// `SET_EXEC` is refused outside RAM and from EL0; `STATUS` from EL0 is
/// allowed.
fn refusals(env: &Env) -> Result<(), Failure> {
    let invalid = Err(HvError::InvalidArgument);
    let past_ram = set_exec(env.ram_end, 1, Exec::Both)?;
    reply_status("INTEGRITY SET_EXEC of the page past guest RAM", invalid, past_ram)?;
    let straddling = set_exec(env.ram_end - PAGE, 2, Exec::Both)?;
    reply_status("INTEGRITY SET_EXEC of two pages straddling the end of RAM", invalid, straddling)?;
    let args = |op: IntegrityOp| {
        let [x1, x2, x3, x4] = op.args();
        BrkCall { regs: [Function::Integrity.id(), x1, x2, x3, x4, 0, 0, 0], reply: [0; 4] }
    };
    let mut calls = [
        args(IntegrityOp::SetExec { ipa: page_of(Exec::Both), pages: 1, exec: Exec::Both }),
        args(IntegrityOp::Status),
    ];
    el0_finished(el0::brk_calls(&mut calls))?;
    reply_status("INTEGRITY SET_EXEC from EL0", Err(HvError::PermissionDenied), calls[0].reply)?;
    reply_ok("INTEGRITY STATUS from EL0", calls[1].reply).map(|_| ())
}

pub fn mbec_matrix(env: &Env) -> Result<(), Failure> {
    let status = status_or_skip()?;
    println!("integrity status: {status}");
    if status.flags.locked {
        return Err(Failure::Missing("the VM's kernel is locked already (SET_EXEC is refused after the lock)"));
    }
    code::prepare();
    refusals(env)?;
    let measured = classify().and_then(|()| matrix());
    // Back to both, whatever happened.
    let mut restored = Ok(());
    for exec in Exec::ALL {
        let reply = set_exec(page_of(exec), 1, Exec::Both);
        restored = restored.and(reply.and_then(|reply| reply_ok("INTEGRITY SET_EXEC back to both", reply)).map(|_| ()));
    }
    let (line, faults) = measured?;
    restored?;
    println!("{line}");
    println!("mbec-matrix: {faults} fetch faults");
    let xnx = MatrixLine::xnx();
    for (m, mode) in MODES.into_iter().enumerate() {
        for (e, exec) in Exec::ALL.into_iter().enumerate() {
            if line.0[m][e] != xnx.0[m][e] {
                let (expected, got) = (u64::from(xnx.0[m][e]), u64::from(line.0[m][e]));
                return Err(Failure::Integrity(IntegrityFailure::Cell {
                    mode,
                    exec,
                    what: "ran (1) or faulted (0), as FEAT_XNX's XN[1:0] says",
                    expected,
                    got,
                }));
            }
        }
    }
    // Every page is both again: every fetch runs.
    for exec in Exec::ALL {
        for mode in MODES {
            if !fetch(mode, exec)? {
                return Err(Failure::Integrity(IntegrityFailure::Cell {
                    mode,
                    exec,
                    what: "ran (1) after SET_EXEC back to both",
                    expected: 1,
                    got: 0,
                }));
            }
        }
    }
    Ok(())
}
