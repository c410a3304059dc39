//! The hypercall backdoor (after "Hypervisor backdoor interface"): a guest
//! `BRK #HV_BRK_IMM` at EL1 or EL0 traps here (`MDCR_EL2.TDE` routes guest
//! debug exceptions to EL2), and so does a DCC hypercall
//! ([`crate::traps::debugregs`]). Both decode the same registers through
//! `platform::hypercall` and answer in x0..x3 (and x4: `SCAN`'s cursor, a
//! `TRACE` record's first VA).
//!
//! `CONSOLE_WRITE` takes an address in the caller's own translation regime:
//! it is translated with `AT S1E1R` or `AT S1E0R` (the caller's privileges,
//! so an EL0 task cannot have kernel memory printed), each page's IPA is
//! checked against guest RAM, and the bytes are copied once (another CPU
//! could change them meanwhile). The text is then escaped by the
//! deprivileged EL0 service ([`crate::traps::el0`]) and printed as `guest: ...`
//! (`guest@<name>: ...` among several VMs), so a guest can neither forge
//! hypervisor lines nor send the terminal control sequences.
//!
//! `INTEGRITY` and `TRACE` are the caller's VM's kernel integrity
//! ([`crate::vm::integrity`]).
//!
//! `SCHED` reads the scheduler figures of one vCPU of the caller's own VM
//! (`crate::vm::sched::figures`), one item per call, packed by
//! `platform::hypercall::sched_item`: a guest names a vCPU by its index in
//! its own VM, so no VM can see another's.

use crate::arch::layout;
use crate::arch::sysregs::{self, GuestReg};
use platform::arch::at::{self, At};
use platform::arch::trap::TrapFrame;
use platform::arch::ExceptionLevel;
use platform::gvascan::Par;
use platform::hypercall::{
    buffer_chunks, sched_item, Call, CallerEl, HvError, HvMode, Info, Reply, Request, SchedItem, Translate,
    CONSOLE_WRITE_MAX,
};

/// `SCTLR_EL1.M`: the guest's stage-1 MMU is on.
const SCTLR_M: u64 = 1 << 0;

/// The EL that made a call, from the SPSR it trapped with.
pub fn caller(spsr: u64) -> CallerEl {
    match ExceptionLevel::from_spsr(spsr) {
        ExceptionLevel::El0 => CallerEl::El0,
        _ => CallerEl::El1,
    }
}

/// Translates guest addresses as a read by the caller would: identity while
/// the guest's MMU is off, otherwise with the address-translation
/// instruction for the caller's EL in the guest's (live) EL1&0 regime.
struct GuestTranslate {
    caller: CallerEl,
    mmu_on: bool,
}

impl Translate for GuestTranslate {
    fn translate(&mut self, addr: u64) -> Result<u64, HvError> {
        if !self.mmu_on {
            return Ok(addr);
        }
        let op = match self.caller {
            CallerEl::El0 => At::S1E0R,
            CallerEl::El1 => At::S1E1R,
        };
        // SAFETY: EL2 may translate the guest's EL1&0 regime; PAR_EL1 is
        // not guest state anyone relies on across a trap.
        match Par::decode(unsafe { at::translate(op, addr) }) {
            Par::Translated { pa, .. } => Ok(pa | (addr & 0xfff)),
            Par::Fault { .. } => Err(HvError::BadAddress),
        }
    }
}

/// Answers the call in `frame` (x0 = function, x1..x7 = arguments) from a
/// caller at `caller`; writes x0..x3, and x4 for a `TRACE` record and a
/// successful `SCAN` (its
/// cursor). Returns the reply written. Inlined into the trap dispatcher:
/// the calls that do real work are out of line, the rest is a few
/// instructions the dispatcher's frame already pays for.
#[inline(always)]
pub fn handle(frame: &mut TrapFrame, caller: CallerEl) -> Reply {
    let call = Call::from_regs(&frame.x);
    let reply = match call.decode(caller) {
        Ok(Request::Version) => Reply::version(),
        Ok(Request::Features { function }) => Reply::features(function, caller),
        Ok(Request::Info) => info().reply(),
        Ok(Request::ConsoleWrite { addr, len }) => {
            Reply::from_result(console_write(addr, len, caller).map(|n| [n, 0, 0]))
        }
        Ok(Request::Scan { range, buffer, capacity, cursor }) => {
            Reply::from_scan(crate::traps::scan::scan(caller, range, buffer, capacity, cursor))
        }
        Ok(Request::Sched { vcpu, item }) => Reply::from_result(sched(vcpu, item)),
        Ok(Request::Integrity(op)) => Reply::from_result(crate::vm::integrity::call(op)),
        Ok(Request::Trace { index }) => crate::vm::integrity::trace(index).unwrap_or_else(Reply::error),
        Err(error) => Reply::error(error),
    };
    reply.write_to(&mut frame.x);
    reply
}

#[inline(never)]
fn info() -> Info {
    let boot = crate::boot::early::boot_info();
    Info {
        mode: match boot.scheme {
            layout::Scheme::Vhe => HvMode::Vhe,
            layout::Scheme::Nvhe => HvMode::Nvhe,
        },
        el2_va_bits: layout::EL2_VA_BITS as u8,
        el0_va_bits: layout::EL0_VA_BITS as u8,
        cpus: crate::boot::smp::online() as u32,
    }
}

/// `SCHED`: `item` of the figures of vCPU `index` of the caller's own VM
/// (the only VM a guest can name). An index past its last vCPU is
/// `INVALID_ARGUMENT`. Out of line, like `info`: a cold call.
#[inline(never)]
fn sched(index: u64, item: SchedItem) -> Result<[u64; 3], HvError> {
    let (vm, _) = crate::vm::current().ok_or(HvError::InvalidArgument)?;
    let vcpu = usize::try_from(index).ok().and_then(|i| vm.vcpus.get(i)).ok_or(HvError::InvalidArgument)?;
    Ok(sched_item(&crate::vm::sched::figures(vcpu), vm.vcpus.len() as u64, item))
}

/// Copies the guest's text and prints it as one console line. Out of
/// line: its buffer would otherwise make every backdoor call pay for the
/// frame.
#[inline(never)]
fn console_write(addr: u64, len: u64, caller: CallerEl) -> Result<u64, HvError> {
    let ram = crate::vm::current().map_or(platform::board::MemRegion::new(0, 0), |(vm, _)| vm.ram);
    let regions = [(ram.base, ram.size)];
    let translate = GuestTranslate { caller, mmu_on: sysregs::read(GuestReg::Sctlr) & SCTLR_M != 0 };
    let mut text = [0u8; CONSOLE_WRITE_MAX as usize];
    let mut copied = 0usize;
    for chunk in buffer_chunks(addr, len, CONSOLE_WRITE_MAX, &regions, translate)? {
        let chunk = chunk?;
        let dst = text.get_mut(copied..copied + chunk.len as usize).ok_or(HvError::TooLong)?;
        // SAFETY: `buffer_chunks` checked the chunk lies in guest RAM, which
        // the direct map covers (IPA = PA).
        unsafe {
            core::ptr::copy_nonoverlapping(layout::phys_to_virt(chunk.ipa) as *const u8, dst.as_mut_ptr(), dst.len());
        }
        copied += dst.len();
    }
    if copied != 0 {
        print_guest_text("guest", text.get(..copied).unwrap_or_default()).map_err(|()| HvError::InvalidArgument)?;
    }
    Ok(copied as u64)
}

/// Prints guest text as one `<prefix>: ...` line, escaped by the EL0
/// service (a trailing newline is dropped).
pub fn print_guest_text(prefix: &str, text: &[u8]) -> Result<(), ()> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let mut escaped = [0u8; 4 * CONSOLE_WRITE_MAX as usize];
    let written =
        crate::traps::el0::format(text, &mut escaped).map_err(|e| log::warn!("guest text not printed: {e}"))?;
    let line = core::str::from_utf8(escaped.get(..written).unwrap_or_default()).unwrap_or("");
    // Among several VMs, the line names its VM: `guest@a: ...`.
    match crate::vm::current().filter(|(vm, _)| !vm.owns_machine) {
        Some((vm, _)) => {
            let at = platform::console_mux::CHANNEL_SEPARATOR;
            platform::console::write_fmt(format_args!("{prefix}{at}{}: {line}\n", vm.name))
        }
        None => platform::console::write_fmt(format_args!("{prefix}: {line}\n")),
    }
    Ok(())
}
