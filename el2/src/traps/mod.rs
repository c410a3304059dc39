//! The hypervisor's exception vectors and the trap dispatcher: exception
//! class → handler, on syndromes decoded by `platform::esr`.
//!
//! From the guest: `HVC`/`SMC` → [`crate::traps::hvc`]; `BRK #HV_BRK_IMM` →
//! [`crate::traps::backdoor`], any other `BRK` and every debug exception
//! `MDCR_EL2.TDE` routes here (breakpoint, watchpoint, software step) →
//! reflected to the guest's own EL1 vector exactly as the hardware would
//! have delivered it; trapped debug-register accesses →
//! [`crate::traps::debugregs`]; stage-2 aborts → MMIO emulation
//! ([`crate::vm::mmio`]) or an external abort. Anything else from the guest is
//! answered as the architecture would (an undefined-instruction exception)
//! and logged. An exception taken at EL2 itself is a hypervisor bug: it is
//! reported with its decoded context and stops the system.

pub mod backdoor;
pub mod debug;
pub mod debugregs;
pub mod el0;
pub mod hvc;
pub mod scan;

use crate::vm::guest;
use aarch64_cpu::registers::{Readable, ESR_EL2, FAR_EL2, HPFAR_EL2};
use platform::arch::trap::{ExceptionKind, ExceptionReport, ExceptionSource, ExceptionType, TrapFrame};
use platform::esr::{Esr, ExceptionClass};
use platform::hypercall::HV_BRK_IMM;

platform::exception_vectors!("hv_vectors", 2, handle_exception);

/// `ESR_ELx.EC`, six bits.
const EC_MASK: u64 = 0x3f;

/// Logs the guest's exits by cause, most frequent first.
pub fn report_exits() {
    let count = crate::mm::prda::exits;
    let total: u64 = (0..crate::mm::prda::EXIT_KINDS).map(count).sum();
    let mut kinds: alloc::vec::Vec<usize> = (0..crate::mm::prda::EXIT_KINDS).filter(|&k| count(k) != 0).collect();
    kinds.sort_by_key(|&k| core::cmp::Reverse(count(k)));
    let mut line = alloc::string::String::new();
    for kind in kinds {
        let name = match kind {
            crate::mm::prda::EXIT_IRQ => alloc::string::String::from("irq"),
            ec => alloc::format!("{:?}", ExceptionClass::from_ec(ec as u8)),
        };
        line.push_str(&alloc::format!(", {name} {}", count(kind)));
    }
    log::info!("guest exits: {total}{line}");
}

/// Every exception EL2 takes. The guest's exits come first and stay short:
/// the VM and vCPU are looked up once (two loads from the PRDA), and the
/// rest of the hot path is the handler and the return's two checks
/// (a stop request, the list registers).
extern "C" fn handle_exception(frame: &mut TrapFrame, kind: ExceptionKind) {
    if kind.from_lower_el() && !crate::mm::prda::el0_active() {
        if let Some((vm, vcpu)) = crate::vm::current() {
            guest_exit(frame, kind, vm, vcpu);
            crate::vm::vcpu::stop_if_asked(vcpu);
            if crate::vm::sched::resched_pending() {
                crate::vm::sched::reschedule(frame);
                if let Some((vm, vcpu)) = crate::vm::current() {
                    crate::vm::vgic::sync(vm, vcpu);
                }
                return;
            }
            crate::vm::vgic::sync(vm, vcpu);
            return;
        }
    }
    other_exception(frame, kind);
}

/// An exit of the guest running on this CPU.
#[inline(always)]
fn guest_exit(frame: &mut TrapFrame, kind: ExceptionKind, vm: &crate::vm::Vm, vcpu: &crate::vm::Vcpu) {
    let _ = (vm, vcpu);
    crate::traps::debug::on_exit();
    match (kind.source(), kind.kind()) {
        (_, ExceptionType::Irq) => {
            crate::mm::prda::count_exit(crate::mm::prda::EXIT_IRQ);
            crate::irq::handle(frame);
        }
        (ExceptionSource::LowerA64, ExceptionType::Sync) => {
            let esr = Esr(ESR_EL2.get());
            crate::mm::prda::count_exit(((esr.0 >> Esr::EC_SHIFT) & EC_MASK) as usize);
            // Rule 1 of the priority scheme (`crate::irq::gic`): PNMIs reach
            // a CPU while it handles a trap.
            let window = crate::irq::PnmiWindow::open_from_guest();
            let elr = frame.elr;
            guest_sync(frame, esr);
            if frame.elr == elr.wrapping_add(4) {
                // EL2 completed the instruction: a step over it is done.
                frame.spsr = platform::debug::completed(frame.spsr);
            }
            drop(window);
        }
        _ => log::warn!("guest {kind} ignored (ESR {})", Esr(ESR_EL2.get())),
    }
}

/// Everything but a guest's exit: interrupts taken at EL2 (idle, a PNMI
/// window, a regular handler), the EL0 service's exits, and exceptions at
/// EL2 itself, which are bugs.
#[inline(never)]
fn other_exception(frame: &mut TrapFrame, kind: ExceptionKind) {
    if kind.kind() == ExceptionType::Irq {
        crate::irq::handle(frame);
        return;
    }
    let esr = Esr(ESR_EL2.get());
    if kind.from_lower_el() {
        // The EL0 service's exit, if it is running: does not return then.
        crate::traps::el0::exit_to_el2(esr, frame.x[0]);
        log::warn!("lower-EL {kind} with no vCPU running here ignored (ESR {esr})");
        return;
    }
    let report = ExceptionReport { kind, esr, far: FAR_EL2.get(), elr: frame.elr, spsr: frame.spsr };
    crate::arch::power::fatal(format_args!("unexpected exception: {report}"));
}

/// A synchronous exception from the guest.
fn guest_sync(frame: &mut TrapFrame, esr: Esr) {
    match esr.class() {
        ExceptionClass::Hvc64 => crate::traps::hvc::handle(frame),
        ExceptionClass::Smc64 => {
            // A trapped SMC returns to itself; the call is done, so step over it.
            frame.elr += 4;
            crate::traps::hvc::handle(frame);
        }
        ExceptionClass::Brk64 if esr.imm16() == HV_BRK_IMM => {
            crate::traps::backdoor::handle(frame, crate::traps::backdoor::caller(frame.spsr));
            // BRK's preferred return address is the BRK itself.
            frame.elr += 4;
        }
        ExceptionClass::WfxTrap => {
            crate::vm::sched::wfi();
            frame.elr += 4;
        }
        ExceptionClass::SysReg => match esr.sys_reg() {
            Some(iss) if is_sgi_register(&iss) => {
                if iss.direction == platform::esr::Direction::Write {
                    let value = frame.x.get(usize::from(iss.rt)).copied().unwrap_or(0);
                    crate::vm::vgic::send_sgi(value);
                }
                frame.elr += 4;
            }
            Some(iss)
                if iss.direction == platform::esr::Direction::Write
                    && crate::arch::sysregs::tvm_register(iss.reg()).is_some() =>
            {
                // HCR_EL2.TVM: a VM with kernel integrity writing its
                // translation controls.
                if let Some(reg) = crate::arch::sysregs::tvm_register(iss.reg()) {
                    let value = frame.x.get(usize::from(iss.rt)).copied().unwrap_or(0);
                    crate::vm::integrity::register_written(reg, value);
                }
                frame.elr += 4;
            }
            Some(iss) => match crate::traps::debugregs::handle(frame, iss) {
                crate::traps::debugregs::Outcome::Done => frame.elr += 4,
                crate::traps::debugregs::Outcome::Undefined => {
                    guest::inject_sync(frame, crate::traps::debugregs::undefined(), 0)
                }
            },
            None => guest::inject_sync(frame, Esr::undefined(), 0),
        },
        ExceptionClass::DataAbortLower => {
            let far = FAR_EL2.get();
            let ipa = platform::mmio::fault_ipa(HPFAR_EL2.get(), far);
            if is_permission_fault(esr) {
                if let Some((vm, _)) = crate::vm::current() {
                    if let crate::vm::integrity::WriteOutcome::Done =
                        crate::vm::integrity::on_write_fault(frame, vm, ipa, far)
                    {
                        return;
                    }
                }
            }
            match crate::vm::mmio::handle(frame, esr, ipa) {
                crate::vm::mmio::Handled::Emulated => frame.elr += 4,
                crate::vm::mmio::Handled::Deferred => {}
                crate::vm::mmio::Handled::Abort(fault) => {
                    let syndrome = crate::vm::mmio::guest_abort(frame, esr, fault);
                    guest::inject_sync(frame, syndrome, far);
                }
                crate::vm::mmio::Handled::NotOurs => {
                    log::debug!(
                        "stage-2 abort at IPA {ipa:#x} (VA {far:#x}, ELR {:#x}, ESR {esr}): external abort to the guest",
                        frame.elr
                    );
                    external_abort(frame, esr, far);
                }
            }
        }
        ExceptionClass::InstructionAbortLower => {
            let far = FAR_EL2.get();
            if is_permission_fault(esr) {
                let ipa = platform::mmio::fault_ipa(HPFAR_EL2.get(), far);
                if let Some((vm, vcpu)) = crate::vm::current() {
                    if crate::vm::integrity::on_instruction_abort(frame, vm, vcpu, ipa, far) {
                        return;
                    }
                }
            }
            log::debug!("stage-2 instruction abort at VA {far:#x}: external abort to the guest");
            external_abort(frame, esr, far);
        }
        // Breakpoints, watchpoints, software step, other BRKs, AArch32 BKPT.
        _ if crate::traps::debug::handle(frame, esr) => {}
        class => {
            log::warn!("guest trap {class:?} ({esr}) at ELR {:#x}: undefined-instruction exception", frame.elr);
            guest::inject_sync(frame, Esr::undefined(), 0);
        }
    }
}

/// A stage-2 permission fault (not a translation fault, nor one on the
/// guest's own table walk): what kernel integrity's read-only and
/// execute-never pages raise.
fn is_permission_fault(esr: Esr) -> bool {
    esr.abort().is_some_and(|a| matches!(a.fault(), platform::esr::FaultStatus::Permission { .. }) && !a.s1ptw())
}

/// Gives the guest the external abort a bus would have given it, unless
/// its exception vector itself keeps faulting (the abort before this one
/// went to the very instruction that faulted now, too many times in a
/// row): then the VM is stopped, as a bare-metal CPU would be stuck there
/// for good.
fn external_abort(frame: &mut TrapFrame, esr: Esr, far: u64) {
    if let Some((vm, vcpu)) = crate::vm::current() {
        if vcpu.abort_loop(frame.elr) {
            crate::vm::power::stop_broken(
                vm,
                format_args!(
                    "vCPU {} took {} aborts in a row at its exception vector {:#x} (VBAR_EL1 {:#x}): it cannot handle exceptions",
                    vcpu.index,
                    crate::vm::vcpu::VECTOR_ABORT_LIMIT,
                    frame.elr,
                    crate::arch::sysregs::read(crate::arch::sysregs::GuestReg::Vbar)
                ),
            )
        }
        guest::inject_external_abort(frame, esr, far);
        vcpu.abort_delivered(frame.elr);
    } else {
        guest::inject_external_abort(frame, esr, far);
    }
}

/// `ICC_SGI1R_EL1`, `ICC_ASGI1R_EL1` and `ICC_SGI0R_EL1` (op0 3, op1 0,
/// CRn 12, CRm 11, op2 5, 6, 7): with `HCR_EL2.IMO` set the guest's writes
/// of these trap here. The guest sees one security state, so all three
/// raise an SGI in the group the model has for it.
fn is_sgi_register(iss: &platform::esr::SysRegIss) -> bool {
    const OP0: u8 = 3;
    const OP1: u8 = 0;
    const CRN: u8 = 12;
    const CRM: u8 = 11;
    /// op2 of `ICC_SGI1R_EL1`, `ICC_ASGI1R_EL1`, `ICC_SGI0R_EL1`.
    const SGI1R_TO_SGI0R: core::ops::RangeInclusive<u8> = 5..=7;
    iss.op0 == OP0 && iss.op1 == OP1 && iss.crn == CRN && iss.crm == CRM && SGI1R_TO_SGI0R.contains(&iss.op2)
}
