//! The deprivileged hypervisor service at EL0: formatting guest text.
//!
//! Guest text is guest-controlled data, and formatting it (escaping what is
//! not printable, finding its end) is the kind of parsing a hypervisor does
//! best outside its own privilege. The service runs at EL0 in the narrow
//! 39-bit VA space, a subtree of the kernel's 48-bit hierarchy
//! ([`crate::boot::tables`]), where it sees only: the image's code and read-only
//! data (at one offset, so position-independent code runs unchanged), one
//! input page, the output pages and its stack. A bug in it, or a request
//! that makes it run off its input, faults at EL0: the fault is caught,
//! reported and answered as an error, and the hypervisor goes on.
//!
//! - VHE: the service runs in the EL2&0 regime (`TTBR0_EL2`) with
//!   `HCR_EL2.TGE = 1`; its `SVC` and its faults come straight to EL2.
//! - Split scheme: EL0 belongs to the EL1&0 regime, whose state is the
//!   guest's. The runner saves the guest's EL1 registers, installs the
//!   service's (`TTBR0_EL1` = the same subtree), turns stage 2 off and uses
//!   a VMID of its own, so no translation it caches can be mistaken for the
//!   guest's; EL1 vectors that only `HVC` bring its exits to EL2. Afterwards
//!   it drops the service's TLB entries and restores everything.

use crate::arch::layout::{scheme, Scheme};
use crate::mm::el0_memory::{va, INPUT_PAGES, MEMORY, OUTPUT_PAGES, PAGE, STACK_PAGES};
use crate::mm::prda;
use platform::arch::regs::SPSR_DAIF;
use platform::esr::{Esr, ExceptionClass};

/// The `HVC` immediate of the split scheme's bounce vectors.
pub const EL0_BOUNCE_IMM: u16 = 0xe10;

core::arch::global_asm!(
    include_str!("el0.S"),
    SPSR_EL0_MASKED = const SPSR_DAIF,
    EL0_BOUNCE_IMM = const EL0_BOUNCE_IMM,
);

extern "C" {
    fn el0_call(a0: u64, a1: u64, a2: u64, a3: u64, function: u64, entry: u64, stack: u64, save: u64) -> Exit;
    fn el0_return(kind: u64, value: u64, save: *const u64) -> !;
    fn el0_service_start();
    static el0_bounce_vectors: u8;
    static __image_base: u8;
}

/// How the service ended, as `el0_return` passes it back.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Exit {
    kind: u64,
    value: u64,
}

const EXIT_DONE: u64 = 1;
const EXIT_FAULT: u64 = 2;

/// Why a service call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum El0Error {
    /// The service faulted; its syndrome.
    Faulted(Esr),
    /// Its output did not fit.
    OutputFull,
    /// The input is larger than the input window.
    TooLong,
}

impl core::fmt::Display for El0Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Faulted(esr) => write!(f, "the EL0 service faulted: {esr}"),
            Self::OutputFull => write!(f, "the EL0 service's output does not fit"),
            Self::TooLong => write!(f, "input longer than the EL0 service's window"),
        }
    }
}

/// The EL0 address of something in the image (code or read-only data).
fn el0_text(address: u64) -> u64 {
    va::TEXT + (address - core::ptr::addr_of!(__image_base) as u64)
}

/// The service: copies the NUL-terminated text at `input` to `output`,
/// escaping bytes that are not printable ASCII as `\xNN`; returns the output
/// length, or `u64::MAX` if it does not fit. Runs at EL0.
///
/// Like any C-string parser it trusts that a terminator comes: the text is
/// guest data, and a window without one makes it read past the input page,
/// which is exactly the kind of fault deprivileging contains.
extern "C" fn format_service(input: *const u8, _: u64, output: *mut u8, capacity: u64) -> u64 {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut written: u64 = 0;
    let mut at = input;
    loop {
        // SAFETY: runs at EL0 over its own windows; an address outside them
        // faults at EL0, which the hypervisor catches.
        let byte = unsafe { at.read_volatile() };
        if byte == 0 {
            return written;
        }
        let printable = (0x20..0x7f).contains(&byte) && byte != b'\\';
        let need = if printable { 1 } else { 4 };
        if written + need > capacity {
            return u64::MAX;
        }
        let mut put = |b: u8| {
            // SAFETY: `written < capacity`, inside the output window.
            unsafe { output.add(written as usize).write_volatile(b) };
            written += 1;
        };
        if printable {
            put(byte);
        } else {
            put(b'\\');
            put(b'x');
            put(HEX[usize::from(byte >> 4)]);
            put(HEX[usize::from(byte & 0xf)]);
        }
        // SAFETY: the next byte's address; reading it is checked above.
        at = unsafe { at.add(1) };
    }
}

/// Formats `input` (the guest's text, NUL-terminated or not) into `output`.
pub fn format(input: &[u8], output: &mut [u8]) -> Result<usize, El0Error> {
    let mut memory = MEMORY.lock();
    if input.len() > INPUT_PAGES * PAGE {
        return Err(El0Error::TooLong);
    }
    let window = memory.input.as_flattened_mut();
    window.fill(0);
    window[..input.len()].copy_from_slice(input);
    memory.output.as_flattened_mut().fill(0);

    let capacity = (OUTPUT_PAGES * PAGE).min(output.len()) as u64;
    let exit = run([va::INPUT, input.len() as u64, va::OUTPUT, capacity], el0_text(format_service as *const () as u64));
    match exit {
        Ok(u64::MAX) => Err(El0Error::OutputFull),
        Ok(len) if len <= capacity => {
            let len = len as usize;
            output[..len].copy_from_slice(&memory.output.as_flattened()[..len]);
            Ok(len)
        }
        Ok(_) => Err(El0Error::OutputFull),
        Err(esr) => {
            log::warn!("EL0 service fault contained: {esr}");
            Err(El0Error::Faulted(esr))
        }
    }
}

use crate::mm::vmid::SERVICE_VMID;
const VTTBR_VMID_SHIFT: u32 = 48;
/// `HCR_EL2.TGE` (VHE: EL0 is the host's), `HCR_EL2.VM`.
const HCR_TGE: u64 = 1 << 27;
const HCR_VM: u64 = 1 << 0;
/// `TCR_EL1` for the service: 39-bit TTBR0 range with write-back walks, no
/// TTBR1 walks (EPD1), 4 KiB granule, 48-bit IPS.
const TCR_EL1_SERVICE: u64 = 25 | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (1 << 23) | (0b101 << 32);
/// `SCTLR_EL1`: MMU, caches, SP alignment check at EL0, RES1 bits.
const SCTLR_EL1_SERVICE: u64 = platform::arch::regs::SCTLR_EL1_RES1 | (1 << 0) | (1 << 2) | (1 << 4) | (1 << 12);

macro_rules! mrs {
    ($reg:literal) => {{
        // SAFETY: reading a system register has no side effects.
        unsafe { platform::mrs!($reg) }
    }};
}
macro_rules! msr {
    ($reg:literal, $value:expr) => {
        // SAFETY: the registers written here are the EL1&0 context the
        // service borrows (restored before the guest runs again) and EL2's
        // own trap controls; no memory is affected.
        unsafe { platform::msr!($reg, $value) }
    };
}

/// Runs the service function `function` (EL0 VA) with `args`; returns its
/// x0, or the syndrome it faulted with.
fn run(args: [u64; 4], function: u64) -> Result<u64, Esr> {
    let save = prda::el0_save_area();
    let entry = el0_text(el0_service_start as *const () as u64);
    let stack = va::STACK + (STACK_PAGES * PAGE) as u64;
    let hcr = mrs!("hcr_el2");
    let sp_el0 = mrs!("sp_el0");
    let exit = match scheme() {
        Scheme::Vhe => {
            msr!("hcr_el2", hcr | HCR_TGE);
            aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
            prda::set_el0_active(true);
            // SAFETY: the service's space maps `entry`, `function` and
            // `stack`; its exits come back through `exit_to_el2`.
            let exit = unsafe { el0_call(args[0], args[1], args[2], args[3], function, entry, stack, save as u64) };
            msr!("hcr_el2", hcr);
            exit
        }
        Scheme::Nvhe => {
            let saved = [
                mrs!("sctlr_el1"),
                mrs!("tcr_el1"),
                mrs!("ttbr0_el1"),
                mrs!("mair_el1"),
                mrs!("vbar_el1"),
                mrs!("cpacr_el1"),
                mrs!("elr_el1"),
                mrs!("spsr_el1"),
                mrs!("esr_el1"),
                mrs!("far_el1"),
                mrs!("sp_el1"),
                mrs!("vttbr_el2"),
            ];
            let user_root = crate::boot::early::boot_info().user_root;
            msr!("hcr_el2", hcr & !HCR_VM);
            msr!("vttbr_el2", u64::from(SERVICE_VMID) << VTTBR_VMID_SHIFT);
            msr!("mair_el1", platform::paging::MAIR_EL2_VALUE);
            msr!("tcr_el1", TCR_EL1_SERVICE);
            msr!("ttbr0_el1", user_root);
            msr!("vbar_el1", el0_text(core::ptr::addr_of!(el0_bounce_vectors) as u64));
            msr!("cpacr_el1", 0u64);
            // SAFETY: invalidating the service VMID's EL1&0 entries only
            // drops cached translations.
            unsafe { core::arch::asm!("isb", "tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
            msr!("sctlr_el1", SCTLR_EL1_SERVICE);
            aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
            prda::set_el0_active(true);
            // SAFETY: as for VHE; the bounce vectors bring exits to EL2.
            let exit = unsafe { el0_call(args[0], args[1], args[2], args[3], function, entry, stack, save as u64) };
            msr!("sctlr_el1", saved[0]);
            aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
            // SAFETY: as above: the service's translations go.
            unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
            msr!("tcr_el1", saved[1]);
            msr!("ttbr0_el1", saved[2]);
            msr!("mair_el1", saved[3]);
            msr!("vbar_el1", saved[4]);
            msr!("cpacr_el1", saved[5]);
            msr!("elr_el1", saved[6]);
            msr!("spsr_el1", saved[7]);
            msr!("esr_el1", saved[8]);
            msr!("far_el1", saved[9]);
            msr!("sp_el1", saved[10]);
            msr!("vttbr_el2", saved[11]);
            msr!("hcr_el2", hcr);
            exit
        }
    };
    msr!("sp_el0", sp_el0);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    match exit.kind {
        EXIT_DONE => Ok(exit.value),
        _ => Err(Esr(exit.value)),
    }
}

/// Called by the exception handler for an exception from below while this
/// CPU runs the service: if it is the service's exit (its `SVC`, or its
/// fault), leaves the handler and returns from [`run`]. Returns otherwise.
pub fn exit_to_el2(esr: Esr, x0: u64) {
    if !prda::el0_active() {
        return;
    }
    // Under the split scheme the real syndrome is the one EL1 received.
    let cause = match (scheme(), esr.class()) {
        (Scheme::Nvhe, ExceptionClass::Hvc64) if esr.imm16() == EL0_BOUNCE_IMM => Esr(mrs!("esr_el1")),
        (Scheme::Nvhe, _) => esr,
        (Scheme::Vhe, _) => esr,
    };
    let (kind, value) = match cause.class() {
        ExceptionClass::Svc64 => (EXIT_DONE, x0),
        _ => (EXIT_FAULT, cause.0),
    };
    prda::set_el0_active(false);
    // SAFETY: `run` is waiting in `el0_call` with its state in this CPU's
    // save area; nothing on the handler's frames is used again.
    unsafe { el0_return(kind, value, prda::el0_save_area()) }
}
