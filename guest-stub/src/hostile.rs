//! `stub=hostile` (with `stub-seed=N`): the guest-stub turns on the
//! hypervisor. Before its ordinary checks it makes tens of thousands of
//! operations a buggy or malicious guest could make, each with an outcome
//! the architecture or the hypervisor's ABI fixes, and checks that outcome:
//!
//! - random `HVC`/`SMC` function IDs and arguments (unknown IDs answer
//!   `NOT_SUPPORTED`; the few that would end the run or stall it are not
//!   made);
//! - random `BRK` immediates (reflected to the stub's own vector with the
//!   comment), and the backdoor's immediate with random function IDs,
//!   pointers and lengths (the ABI's error codes);
//! - trapped debug-register reads and writes with random values, beyond
//!   the implemented ones too (undefined-instruction exceptions), DCC
//!   status reads with random `x0`, and a DCC console flood;
//! - a load or store, of random size and offset, to every page of every
//!   hole of the IPA space below 4 GiB, where the hypervisor's memory, the
//!   monitor's, and secure RAM sit in the physical map, plus random ones
//!   beyond (an injected synchronous external abort each);
//! - random ECAM config writes, including BARs pointed at the hypervisor's
//!   and the secure world's memory (the device shows there, nothing else);
//! - PSCI misuse: `CPU_ON` of a running vCPU, of MPIDRs that do not exist,
//!   with entry points outside guest RAM; `AFFINITY_INFO` nonsense.
//!
//! The `BRK` and `MRS`/`MSR` instructions need their immediates and
//! register encodings at run time, so they are written into a small code
//! buffer (the stub runs with its MMU off: RAM is executable) and called.
//! The run is reproducible for a seed. It ends with one line:
//! `hostile: <ops> operations, <faults> injected faults, <errors> error
//! returns, <failures> hypervisor failures`.

use crate::checks::Failure;
use crate::exceptions::{expect_sync, Caught};
use crate::pci::{primecell, Width};
use crate::Env;
use platform::esr::{AbortIss, BreakpointReg, Esr, ExceptionClass, FaultStatus, SysReg};
use platform::hypercall::{self, CallerEl, Function, HvError, Reply, DCC_CALL_MAGIC, HV_BRK_IMM};
use platform::println;
use smccc::psci::error as psci_error;

core::arch::global_asm!(
    include_str!("hostile.S"),
    ESR_EC_SHIFT = const Esr::EC_SHIFT,
    EC_DATA_ABORT_SAME = const ExceptionClass::DataAbortSame.ec(),
    ESR_DFSC_MASK = const DFSC_MASK,
    DFSC_SYNC_EXTERNAL = const FaultStatus::SYNC_EXTERNAL_CODE,
    ESR_WNR_SHIFT = const AbortIss::WNR.trailing_zeros(),
);

/// `ESR_ELx` DFSC, bits [5:0].
const DFSC_MASK: u64 = 0x3f;

extern "C" {
    static hostile_vectors: [u8; 2048];
    static stub_vectors: [u8; 2048];
    fn hostile_sweep(start: u64, end: u64, state: *mut u64, stats: *mut [u64; 4]) -> u64;
}

/// The seed when the command line gives none.
pub const DEFAULT_SEED: u64 = 0x4856_686f_7374_696c; // "HVhostil"
/// The hole sweep covers the IPA space below this (the whole IPA space of
/// a guest with up to 3 GiB of RAM on QEMU virt).
const SWEEP_END: u64 = 1 << 32;
/// Random probes above the sweep, up to here (beyond every IPA space).
const HIGH_PROBE_END: u64 = 1 << 40;
const PAGE: u64 = 4096;
/// QEMU virt's Secure RAM (`VIRT_SECURE_MEM`), where the monitor lives: a
/// hole to the guest. (The guest DTB does not say where it is; the sweep
/// covers it anyway, these probes name it.)
const SECURE_RAM: (u64, u64) = (0x0e00_0000, 0x0100_0000);
/// `SMCCC` fast-call bit; owners; PSCI and SMCCC IDs the hypervisor implements.
const FAST_CALL: u32 = 1 << 31;
const NOT_SUPPORTED: u64 = u64::MAX;

/// xorshift64: reproducible per seed, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        items.get(self.below(items.len() as u64) as usize).copied()
    }
}

/// What the run saw.
#[derive(Default)]
struct Tally {
    ops: u64,
    faults: u64,
    errors: u64,
    failures: u64,
}

impl Tally {
    /// Counts one operation whose outcome was as expected (`fault`: an
    /// exception was injected; `error`: an error status came back).
    fn ok(&mut self, fault: bool, error: bool) {
        self.ops += 1;
        self.faults += u64::from(fault);
        self.errors += u64::from(error);
    }

    /// Counts one operation whose outcome was not what it must be; the
    /// first few are printed.
    fn fail(&mut self, args: core::fmt::Arguments) {
        self.ops += 1;
        self.failures += 1;
        if self.failures <= 10 {
            println!("hostile: FAILURE {args}");
        }
    }
}

/// The guest's memory map, from its DTB: RAM and every window a node
/// names, sorted; the holes are what lies between.
struct Map {
    taken: [(u64, u64); 32],
    len: usize,
}

impl Map {
    fn from_fdt(env: &Env, fdt: &fdt::Fdt) -> Self {
        let mut map = Self { taken: [(0, 0); 32], len: 0 };
        map.add(env.ram_base, env.ram_end - env.ram_base);
        for node in fdt.all_nodes() {
            // A cpu node's reg is its MPIDR, not an address.
            if node.name.starts_with("cpu") {
                continue;
            }
            for reg in node.reg().into_iter().flatten() {
                map.add(reg.starting_address as u64, reg.size.unwrap_or(0) as u64);
            }
        }
        if let Ok(ecam) = &env.ecam {
            for (base, size) in ecam.range_windows() {
                map.add(base, size);
            }
        }
        map.taken[..map.len].sort_unstable();
        map
    }

    fn add(&mut self, base: u64, size: u64) {
        if size == 0 {
            return;
        }
        // Page granularity: a window's partial pages are the window's.
        let start = base & !(PAGE - 1);
        let end = base.saturating_add(size).next_multiple_of(PAGE);
        if let Some(slot) = self.taken.get_mut(self.len) {
            *slot = (start, end);
            self.len += 1;
        }
    }

    fn is_hole(&self, addr: u64) -> bool {
        self.taken[..self.len].iter().all(|&(start, end)| addr < start || addr >= end)
    }

    /// The holes below `end`, as `[start, end)` page ranges.
    fn holes(&self, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut cursor = 0u64;
        let mut taken = self.taken[..self.len].iter();
        core::iter::from_fn(move || loop {
            if cursor >= end {
                return None;
            }
            match taken.next() {
                Some(&(start, stop)) => {
                    let hole = (cursor, start.min(end));
                    cursor = cursor.max(stop);
                    if hole.0 < hole.1 {
                        return Some(hole);
                    }
                }
                None => {
                    let hole = (cursor, end);
                    cursor = end;
                    return Some(hole);
                }
            }
        })
    }
}

/// A few instructions written at run time and called (MMU off: RAM is
/// executable at EL1, and stage 2 maps guest RAM executable).
#[repr(C, align(64))]
struct CodeBuffer([u32; 4]);

static CODE: spin::Mutex<CodeBuffer> = spin::Mutex::new(CodeBuffer([0; 4]));

const RET: u32 = 0xd65f_03c0;

/// Writes `insn; ret`, makes it visible to instruction fetch, and calls it
/// with x0 = `x0`, x1..x3 = `args`; returns x0..x3 afterwards.
fn call_generated(insn: u32, x0: u64, args: [u64; 3]) -> [u64; 4] {
    let mut code = CODE.lock();
    code.0[0] = insn;
    code.0[1] = RET;
    let entry = code.0.as_ptr() as u64;
    let (r0, r1, r2, r3);
    // SAFETY: the buffer holds one instruction the caller chose from those
    // this module generates (BRK, MRS/MSR of a debug or DCC register) and
    // a RET; its cache lines are cleaned to the point of unification and
    // the instruction cache invalidated before the call. The instruction
    // touches no memory of the stub's, writes at most x0 (MRS), and an
    // exception it raises is stepped over by the armed handler (to the RET).
    unsafe {
        core::arch::asm!(
            "dc cvau, {entry}",
            "dsb ish",
            "ic ivau, {entry}",
            "dsb ish",
            "isb",
            "blr {entry}",
            entry = in(reg) entry,
            inout("x0") x0 => r0,
            inout("x1") args[0] => r1,
            inout("x2") args[1] => r2,
            inout("x3") args[2] => r3,
            out("x30") _,
            options(nostack),
        );
    }
    [r0, r1, r2, r3]
}

/// `BRK #imm`.
const fn brk(imm: u16) -> u32 {
    0xd420_0000 | (imm as u32) << 5
}

/// What a call's `x0` must be.
enum Expect {
    /// `NOT_SUPPORTED` (-1).
    NotSupported,
    /// One of these values.
    OneOf(&'static [u64]),
    /// Anything but `NOT_SUPPORTED` (a result, whatever it is).
    Supported,
}

fn status(code: i32) -> u64 {
    i64::from(code) as u64
}

/// What the hypervisor answers for function ID `id` (its low 32 bits, as
/// SMCCC says) with random arguments, or `None` for the IDs this mode does
/// not call (they end the run, stop a vCPU, stall, or have their own
/// targeted operations below).
fn expectation(id: u32) -> Option<Expect> {
    use platform::abi::*;
    use smccc::psci as ids;
    const PSCI_STATES: &[u64] = &[0, 1, 2, u64::MAX - 1]; // ON, OFF, ON_PENDING, INVALID_PARAMETERS
    match id {
        ids::PSCI_CPU_OFF
        | ids::PSCI_SYSTEM_OFF
        | ids::PSCI_SYSTEM_RESET
        | ids::PSCI_CPU_ON_32
        | ids::PSCI_CPU_ON_64
        | HV_SET_EXIT_STATUS
        | HV_LOCKUP_TEST
        | HV_PNMI_TEST
        | HV_EL0_FORMAT => None,
        smccc::arch::SMCCC_VERSION => Some(Expect::OneOf(&[SMCCC_VERSION_1_1])),
        smccc::arch::SMCCC_ARCH_FEATURES => Some(Expect::OneOf(&[0, NOT_SUPPORTED])),
        ids::PSCI_VERSION => Some(Expect::OneOf(&[PSCI_VERSION_1_1])),
        ids::PSCI_FEATURES => Some(Expect::OneOf(&[0, NOT_SUPPORTED])),
        ids::PSCI_AFFINITY_INFO_32 | ids::PSCI_AFFINITY_INFO_64 => Some(Expect::OneOf(PSCI_STATES)),
        ids::PSCI_MIGRATE_INFO_TYPE => Some(Expect::OneOf(&[2])),
        HV_CALL_COUNT | HV_CALL_UID | HV_PROBE_IDENTITY | HV_CHECK_PRDA => Some(Expect::Supported),
        _ => Some(Expect::NotSupported),
    }
}

/// Random `HVC` and `SMC` calls.
fn random_calls(rng: &mut Rng, tally: &mut Tally, count: u64) {
    // Near the IDs that exist (same owner, nearby numbers) and anywhere.
    const BASES: [u32; 6] = [0x8000_0000, 0x8400_0000, 0xc400_0000, 0x8600_0000, 0x8600_ff00, 0x8200_0000];
    for _ in 0..count {
        let id = match rng.below(3) {
            0 => rng.next() as u32,
            1 => (rng.next() as u32) & !FAST_CALL,
            _ => rng.pick(&BASES).unwrap_or(0) | (rng.below(0x40) as u32),
        };
        let Some(expect) = expectation(id) else { continue };
        let mut args = [0u64; 17];
        for arg in &mut args {
            *arg = rng.next();
        }
        let smc = rng.below(2) == 1;
        let reply = if smc { smccc::smc64(id, args) } else { smccc::hvc64(id, args) };
        // SMCCC returns a 32-bit call's status in w0; the hypervisor
        // sign-extends it.
        let got = reply[0];
        let got32 = got as u32;
        let conduit = if smc { "SMC" } else { "HVC" };
        match expect {
            Expect::NotSupported if got == NOT_SUPPORTED || got32 == NOT_SUPPORTED as u32 => tally.ok(false, true),
            Expect::NotSupported => tally.fail(format_args!("{conduit} {id:#x}: {got:#x}, expected NOT_SUPPORTED")),
            Expect::OneOf(values) if values.iter().any(|&v| v == got || v as u32 == got32) => {
                tally.ok(false, (got as i64) < 0)
            }
            Expect::OneOf(_) => tally.fail(format_args!("{conduit} {id:#x}: unexpected {got:#x}")),
            Expect::Supported if got32 != NOT_SUPPORTED as u32 => tally.ok(false, false),
            Expect::Supported => tally.fail(format_args!("{conduit} {id:#x}: NOT_SUPPORTED from an implemented call")),
        }
    }
}

/// Random `BRK` immediates: each but the backdoor's reaches the stub's own
/// vector as a `BRK` exception with that comment.
fn random_brks(rng: &mut Rng, tally: &mut Tally, count: u64) {
    for _ in 0..count {
        let imm = rng.next() as u16;
        if imm == HV_BRK_IMM {
            continue;
        }
        let caught = expect_sync(|| {
            call_generated(brk(imm), 0, [0; 3]);
        });
        match caught {
            Some(c) if c.esr.class() == ExceptionClass::Brk64 && c.esr.brk_comment() == Some(imm) => {
                tally.ok(true, false)
            }
            Some(c) => tally.fail(format_args!("BRK #{imm:#x}: reflected as {c}")),
            None => tally.fail(format_args!("BRK #{imm:#x}: swallowed, no exception reached the guest")),
        }
    }
}

/// The backdoor with random function IDs, pointers and lengths. Pointers
/// are never in guest RAM (a random write there would be the stub's own
/// doing, not the hypervisor's), but are anywhere else.
///
/// `INTEGRITY` and `TRACE` are only asked what they have (`STATUS`,
/// `TRACE_COUNTS`): their other operations change the VM for good (`LOCK`)
/// or for the checks after this one (`SET_EXEC`, `TRACE_CLEAR`). Whether
/// they answer at all depends on the hypervisor's command line, so the
/// first `STATUS` says what to expect of them.
fn random_backdoor(rng: &mut Rng, tally: &mut Tally, map: &Map, count: u64) {
    let integrity = match crate::backdoor::brk_call(Function::Integrity.id(), [0; 7]) {
        Ok([0, ..]) => Ok(()),
        _ => Err(HvError::NotSupported),
    };
    for _ in 0..count {
        let function = match rng.below(4) {
            0 => rng.next(),
            _ => rng.below(8),
        };
        let pointer = loop {
            let p = match rng.below(3) {
                0 => rng.next(),
                1 => rng.below(SWEEP_END),
                _ => rng.below(16),
            };
            if map.is_hole(p & !(PAGE - 1)) || p >= SWEEP_END {
                break p;
            }
        };
        let len = match rng.below(3) {
            0 => rng.next(),
            1 => rng.below(2048),
            _ => 0,
        };
        let args = [rng.below(3), pointer, len, rng.next(), rng.next(), rng.next(), rng.next()];
        let args = match Function::from_id(function) {
            Some(Function::ConsoleWrite) => [pointer, len, args[3], args[4], args[5], args[6], 0],
            // A vCPU index and an item, in range or just beyond it.
            Some(Function::Sched) => {
                [rng.below(crate::smp::count() as u64 + 2), rng.below(hypercall::SCHED_ITEMS + 2), 0, 0, 0, 0, 0]
            }
            // `STATUS` with random leftovers in the registers it ignores.
            Some(Function::Integrity) => [hypercall::IntegrityOp::Status.args()[0], args[1], args[2], args[3], 0, 0, 0],
            Some(Function::Trace) => [hypercall::TRACE_COUNTS, args[1], args[2], args[3], 0, 0, 0],
            _ => args,
        };
        let expected: Result<(), HvError> = match Function::from_id(function) {
            None => Err(HvError::NotSupported),
            Some(Function::Version | Function::Info) => Ok(()),
            Some(Function::Features) => hypercall::features(args[0], CallerEl::El1),
            Some(Function::ConsoleWrite) if len == 0 => Ok(()),
            Some(Function::ConsoleWrite) if len > hypercall::CONSOLE_WRITE_MAX => Err(HvError::TooLong),
            Some(Function::ConsoleWrite) => Err(HvError::BadAddress),
            // With the MMU off there is no address space to scan; a bad
            // range or capacity may be refused first (x4, a random resume
            // cursor, is only looked at with the MMU on). Either way, one of
            // the ABI's argument errors (accepted below).
            Some(Function::Scan) => Err(HvError::InvalidArgument),
            Some(Function::Sched) if args[0] < crate::smp::count() as u64 && args[1] < hypercall::SCHED_ITEMS => Ok(()),
            Some(Function::Sched) => Err(HvError::InvalidArgument),
            Some(Function::Integrity | Function::Trace) => integrity,
        };
        let reply = crate::backdoor::brk_call(function, args);
        let got = match reply {
            Ok(regs) => Reply::from_regs(&regs).result().map(|_| ()),
            Err(c) => {
                tally.fail(format_args!("backdoor function {function:#x}: exception {c}"));
                continue;
            }
        };
        let scan = Function::from_id(function) == Some(Function::Scan);
        match (expected, got) {
            (Ok(()), Ok(())) => tally.ok(false, false),
            (Err(e), Err(hypercall::CallError::Hv(g)))
                if e == g
                    || (scan && matches!(g, HvError::InvalidArgument | HvError::BadAddress | HvError::TooLong)) =>
            {
                tally.ok(false, true)
            }
            (e, g) => tally
                .fail(format_args!("backdoor function {function:#x} ({pointer:#x}, {len:#x}): {g:?}, expected {e:?}")),
        }
    }
}

/// Random values in the debug registers (with `MDSCR_EL1.MDE` and `KDE`
/// left clear, none of them can fire), beyond the implemented ones too.
fn random_debug_registers(rng: &mut Rng, tally: &mut Tally, count: u64) {
    use aarch64_cpu::registers::{Readable, ID_AA64DFR0_EL1};
    let breakpoints = ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::BRPs) as u32 + 1;
    let watchpoints = ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::WRPs) as u32 + 1;
    const KINDS: [BreakpointReg; 4] = [BreakpointReg::Bvr, BreakpointReg::Bcr, BreakpointReg::Wvr, BreakpointReg::Wcr];
    let implemented_count = |kind: BreakpointReg| match kind {
        BreakpointReg::Bvr | BreakpointReg::Bcr => breakpoints,
        BreakpointReg::Wvr | BreakpointReg::Wcr => watchpoints,
    };
    for _ in 0..count {
        let n = rng.below(16) as u8;
        let kind = rng.pick(&KINDS).unwrap_or(BreakpointReg::Bvr);
        let implemented = u32::from(n) < implemented_count(kind);
        let reg = SysReg::breakpoint(kind, n);
        let value = rng.next();
        let write = expect_sync(|| {
            call_generated(reg.msr(0), value, [0; 3]);
        });
        let mut first = 0;
        let read = expect_sync(|| first = call_generated(reg.mrs(0), 0, [0; 3])[0]);
        match (implemented, write, read) {
            (true, None, None) => {
                // What reads back is what the register keeps of the value;
                // written again, it reads back the same.
                let mut second = 0;
                let again = expect_sync(|| {
                    call_generated(reg.msr(0), first, [0; 3]);
                    second = call_generated(reg.mrs(0), 0, [0; 3])[0];
                });
                if again.is_none() && second == first {
                    tally.ok(false, false);
                } else {
                    tally.fail(format_args!("{reg}: {first:#x} read back as {second:#x}"));
                }
            }
            (false, Some(w), Some(r)) if is_undefined(&w) && is_undefined(&r) => tally.ok(true, false),
            (_, w, r) => tally.fail(format_args!(
                "{reg} (implemented: {implemented}): write {}, read {}",
                describe(w),
                describe(r)
            )),
        }
    }
    // Leave every implemented one cleared.
    for kind in KINDS {
        for n in 0..implemented_count(kind).min(16) as u8 {
            let _ = expect_sync(|| {
                call_generated(SysReg::breakpoint(kind, n).msr(0), 0, [0; 3]);
            });
        }
    }
}

fn is_undefined(caught: &Caught) -> bool {
    caught.esr.class() == ExceptionClass::Unknown
}

fn describe(caught: Option<Caught>) -> &'static str {
    match caught {
        None => "done",
        Some(c) if is_undefined(&c) => "undefined",
        Some(_) => "another exception",
    }
}

/// `MDCCSR_EL0` reads with random `x0`: as on a CPU without an external
/// debugger (0), or, with the DCC magic, a hypercall with a random
/// function (its status); then a flood on the DCC console channel.
fn dcc(rng: &mut Rng, tally: &mut Tally, count: u64) {
    for _ in 0..count {
        let magic = rng.below(2) == 1;
        let x0 = if magic { DCC_CALL_MAGIC | rng.below(16) } else { rng.next() & !hypercall::DCC_CALL_MAGIC_MASK };
        let mut out = [0u64; 4];
        let caught = expect_sync(|| out = call_generated(SysReg::MDCCSR_EL0.mrs(0), x0, [rng.next(), 0, 0]));
        match (caught, magic) {
            (Some(c), _) => tally.fail(format_args!("MDCCSR_EL0 read with x0 {x0:#x}: {c}")),
            (None, false) if out[0] == 0 => tally.ok(false, false),
            (None, false) => tally.fail(format_args!("MDCCSR_EL0 read {:#x} with x0 {x0:#x}, expected 0", out[0])),
            // A DCC call's status: OK or an ABI error.
            (None, true) => match Reply::from_regs(&out).result() {
                Ok(_) => tally.ok(false, false),
                Err(hypercall::CallError::Hv(_)) => tally.ok(false, true),
                Err(e) => tally.fail(format_args!("DCC call {x0:#x}: {e}")),
            },
        }
    }
    // The flood: printable bytes, a line at a time.
    const LINE: &[u8] = b"hostile DCC flood: the hypervisor prints what it can and drops nothing else\n";
    for _ in 0..8 {
        let mut failed = false;
        for &byte in LINE {
            failed |= expect_sync(|| {
                call_generated(SysReg::DBGDTRTX_EL0.msr(0), u64::from(byte), [0; 3]);
            })
            .is_some();
        }
        if failed {
            tally.fail(format_args!("a DBGDTRTX_EL0 write raised an exception"));
        } else {
            tally.ok(false, false);
        }
    }
}

/// Loads and stores that must abort: random addresses in `[base, base +
/// size)` (one named region: the hypervisor's memory, secure RAM) or
/// beyond the IPA space.
fn must_abort(rng: &mut Rng, tally: &mut Tally, map: &Map, what: &str, base: u64, size: u64, count: u64) {
    for _ in 0..count {
        let addr = (base + rng.below(size)) & !7;
        // Emulated windows (the test device, the ECAM window) may sit in
        // the range too: they answer, as they should.
        if !map.is_hole(addr & !(PAGE - 1)) {
            continue;
        }
        let store = rng.below(2) == 1;
        let caught = if store {
            crate::pci::store(addr, Width::Double, rng.next()).err()
        } else {
            crate::pci::load(addr, Width::Double).err()
        };
        match caught {
            Some(c) if is_external_abort(&c, addr) => tally.ok(true, false),
            Some(c) => tally.fail(format_args!("{what} at {addr:#x}: {c}")),
            None => tally.fail(format_args!("{what} at {addr:#x}: the access went through")),
        }
    }
}

fn is_external_abort(caught: &Caught, addr: u64) -> bool {
    caught.esr.class() == ExceptionClass::DataAbortSame
        && caught.esr.abort().is_some_and(|iss| iss.fault() == FaultStatus::SyncExternal)
        && caught.far == addr
}

/// Every page of every hole below [`SWEEP_END`], in `hostile.S`.
fn sweep_holes(rng: &mut Rng, tally: &mut Tally, map: &Map) {
    let mut stats = [0u64; 4];
    let mut state = rng.next() | 1;
    // SAFETY: both are 2 KiB-aligned vector tables of the image; the
    // hostile one differs only in the current-EL synchronous vector, whose
    // registers hostile_sweep leaves to it, and only hostile_sweep runs
    // while it is installed (IRQs masked).
    let (hostile, stub) = unsafe { (hostile_vectors.as_ptr() as u64, stub_vectors.as_ptr() as u64) };
    crate::exceptions::without_irqs(|| {
        set_vbar(hostile);
        for (start, end) in map.holes(SWEEP_END) {
            // SAFETY: accesses only hole pages, which hold nothing of the
            // stub's; each aborts into the hostile vector, which steps
            // over it. `state` and `stats` are locals the routine updates.
            unsafe { hostile_sweep(start, end, &mut state, &mut stats) };
        }
        set_vbar(stub);
    });
    let [pages, aborted, wrong, first_wrong] = stats;
    tally.ops += pages;
    tally.faults += aborted;
    tally.failures += wrong;
    println!("hostile: sweep: {pages} hole pages below {SWEEP_END:#x}, {aborted} aborted as they must");
    if wrong != 0 {
        println!("hostile: FAILURE {wrong} hole accesses did not abort as they must, the first at {first_wrong:#x}");
    }
}

fn set_vbar(table: u64) {
    // SAFETY: `table` is one of the image's vector tables, each able to
    // take every exception the stub meets.
    unsafe {
        platform::msr!("vbar_el1", table);
        core::arch::asm!("isb", options(nostack));
    }
}

/// Random config writes to the PL031's function (and to absent ones),
/// with BAR0 pointed at the hypervisor's memory, secure RAM, guest RAM and
/// nonsense in between; afterwards the function is restored and must read
/// as it did.
fn random_config(rng: &mut Rng, tally: &mut Tally, env: &Env, count: u64) {
    use platform::pci::config::{command, offset};
    let Ok(ecam) = &env.ecam else { return };
    let config = |device: u64, reg: u64| ecam.base + (device << 15) + reg;
    let read32 = |device: u64, reg: u64| crate::pci::load(config(device, reg), Width::Word).unwrap_or(u64::MAX);
    let ids = read32(0, u64::from(offset::VENDOR_ID));
    let home = read32(0, u64::from(offset::BAR0)) & !0xf | read32(0, u64::from(offset::BAR1)) << 32;
    let hypervisor = env.ram_end;
    // A page of the stub's own RAM, its PeriphID0 word holding a pattern:
    // a BAR put there must not cover it.
    let mut ram = crate::pci::RAM_PAGE.lock();
    let ram_page = ram.0.as_ptr() as u64;
    if let Some(word) = ram.0.get_mut((primecell::PERIPH_ID0 / 8) as usize) {
        // SAFETY: a word of the stub's own page, locked and borrowed
        // mutably; volatile so the store stays for the reads through the
        // BAR's address, which the compiler cannot see alias it.
        unsafe { core::ptr::write_volatile(word, crate::pci::RAM_PATTERN) };
    }
    let targets = [hypervisor, SECURE_RAM.0, SECURE_RAM.0 + SECURE_RAM.1 - PAGE, ram_page, home];
    for i in 0..count {
        let device = if rng.below(8) == 0 { 1 + rng.below(31) } else { 0 };
        let reg = rng.below(0x100);
        let width = match rng.below(3) {
            0 => Width::Byte,
            1 => Width::Half,
            _ => Width::Word,
        };
        // Misaligned ones are dropped, as PCI drops an unsupported request.
        if crate::pci::store(config(device, reg), width, rng.next()).is_err() {
            tally.fail(format_args!("config write {device}:{reg:#x} aborted"));
            continue;
        }
        tally.ok(false, false);
        if i % 16 != 0 {
            continue;
        }
        // Point BAR0 somewhere and look: the device's ID where the place is
        // a hole, never anything else.
        let target = rng.pick(&targets).unwrap_or(home);
        let _ = crate::pci::store(config(0, u64::from(offset::COMMAND)), Width::Half, command::MEMORY_SPACE.into());
        let _ = crate::pci::store(config(0, u64::from(offset::BAR0)), Width::Word, target & 0xffff_ffff);
        let _ = crate::pci::store(config(0, u64::from(offset::BAR1)), Width::Word, target >> 32);
        let id = crate::pci::load(target + primecell::PERIPH_ID0, Width::Word);
        // Over a hole (or home) the device answers; over guest RAM the RAM
        // does, pattern and all.
        let expected = if target == ram_page {
            crate::pci::RAM_PATTERN & 0xffff_ffff
        } else {
            u64::from(primecell::PART_PL031 & 0xff)
        };
        let mask = if target == ram_page { 0xffff_ffff } else { 0xff };
        match id {
            Ok(v) if v & mask == expected => tally.ok(false, false),
            got => tally.fail(format_args!("BAR0 at {target:#x}: PeriphID0 read {got:?}, expected {expected:#x}")),
        }
    }
    // Restore and check: the identity and the window as at the start.
    let _ = crate::pci::store(config(0, u64::from(offset::BAR0)), Width::Word, home & 0xffff_ffff);
    let _ = crate::pci::store(config(0, u64::from(offset::BAR1)), Width::Word, home >> 32);
    let _ = crate::pci::store(config(0, u64::from(offset::COMMAND)), Width::Half, command::MEMORY_SPACE.into());
    let _ = crate::pci::store(
        config(0, u64::from(offset::INTERRUPT_LINE)),
        Width::Byte,
        read32(0, u64::from(offset::INTERRUPT_LINE)),
    );
    if read32(0, u64::from(offset::VENDOR_ID)) != ids {
        tally.fail(format_args!("the PL031's vendor/device IDs changed under config writes"));
    }
    match crate::pci::load(home + primecell::PERIPH_ID0, Width::Word) {
        Ok(v) if v & 0xff == u64::from(primecell::PART_PL031 & 0xff) => tally.ok(false, false),
        got => tally.fail(format_args!("the PL031 back home at {home:#x}: PeriphID0 read {got:?}")),
    }
}

/// PSCI misuse, with the answers PSCI 1.1 gives.
fn psci_misuse(rng: &mut Rng, tally: &mut Tally, env: &Env, count: u64) {
    use smccc::psci as ids;
    let cpus = crate::smp::count();
    let entry_in_ram = env.ram_base + PAGE;
    let mpidrs: [u64; 16] = core::array::from_fn(crate::smp::mpidr);
    let is_cpu = |mpidr: u64| mpidrs.iter().take(cpus).any(|&m| m == mpidr & platform::board::MPIDR_AFFINITY_MASK);
    for _ in 0..count {
        let (what, result, allowed): (&str, u64, &[i32]) = match rng.below(4) {
            0 => {
                // A vCPU that runs (every one does): ALREADY_ON.
                let target = mpidrs[rng.below(cpus as u64) as usize];
                let r = smccc::hvc64(
                    ids::PSCI_CPU_ON_64,
                    [target, entry_in_ram, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                );
                ("CPU_ON of a running vCPU", r[0], &[psci_error::ALREADY_ON])
            }
            1 => {
                let target = rng.next() & platform::board::MPIDR_AFFINITY_MASK;
                if is_cpu(target) {
                    continue;
                }
                let r = smccc::hvc64(
                    ids::PSCI_CPU_ON_64,
                    [target, entry_in_ram, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                );
                ("CPU_ON of an MPIDR that does not exist", r[0], &[psci_error::INVALID_PARAMETERS])
            }
            2 => {
                let target = mpidrs[rng.below(cpus as u64) as usize];
                let entry = loop {
                    let e = rng.next() & 0xffff_ffff_ffff;
                    if e < env.ram_base || e >= env.ram_end {
                        break e;
                    }
                };
                let r = smccc::hvc64(ids::PSCI_CPU_ON_64, [target, entry, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                // Either check may come first.
                (
                    "CPU_ON with an entry point outside guest RAM",
                    r[0],
                    &[psci_error::INVALID_ADDRESS, psci_error::ALREADY_ON],
                )
            }
            _ => {
                let target = rng.next() & platform::board::MPIDR_AFFINITY_MASK;
                let level = 1 + rng.below(3);
                let r = smccc::hvc64(
                    ids::PSCI_AFFINITY_INFO_64,
                    [target, level, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                );
                ("AFFINITY_INFO above level 0", r[0], &[psci_error::INVALID_PARAMETERS])
            }
        };
        if allowed.iter().any(|&code| status(code) == result || code as u32 == result as u32) {
            tally.ok(false, true);
        } else {
            tally.fail(format_args!("{what}: {:#x}", result));
        }
    }
}

/// The name [`run`] reports under, before the ordinary checks.
pub const CHECK_NAME: &str = "hostile";

/// The whole run; `Err` if any outcome was not what it must be.
pub fn run(env: &Env, fdt: &fdt::Fdt, seed: u64) -> Result<(), Failure> {
    let mut rng = Rng(seed | 1);
    let mut tally = Tally::default();
    let map = Map::from_fdt(env, fdt);
    println!("hostile: seed {seed:#x}");
    random_calls(&mut rng, &mut tally, 4000);
    random_brks(&mut rng, &mut tally, 2000);
    random_backdoor(&mut rng, &mut tally, &map, 2000);
    random_debug_registers(&mut rng, &mut tally, 1000);
    dcc(&mut rng, &mut tally, 500);
    random_config(&mut rng, &mut tally, env, 1000);
    psci_misuse(&mut rng, &mut tally, env, 200);
    must_abort(&mut rng, &mut tally, &map, "a load or store of the hypervisor's memory", env.ram_end, 0x100_0000, 256);
    must_abort(&mut rng, &mut tally, &map, "a load or store of secure RAM", SECURE_RAM.0, SECURE_RAM.1, 256);
    must_abort(
        &mut rng,
        &mut tally,
        &map,
        "a load or store beyond the IPA space",
        SWEEP_END,
        HIGH_PROBE_END - SWEEP_END,
        256,
    );
    sweep_holes(&mut rng, &mut tally, &map);
    // Interrupts the random SGIs and config writes may have left.
    let _ = crate::gic::take_unexpected();
    println!(
        "hostile: {} operations, {} injected faults, {} error returns, {} hypervisor failures",
        tally.ops, tally.faults, tally.errors, tally.failures
    );
    if tally.failures != 0 {
        return Err(Failure::Mismatch {
            what: "operations whose outcome was not what it must be",
            expected: 0,
            got: tally.failures,
        });
    }
    Ok(())
}

/// Every vCPU still answers: each runs a job and hands back its slot.
pub fn vcpus_alive(_: &Env) -> Result<(), Failure> {
    fn echo(arg: u64) -> u64 {
        arg
    }
    for slot in 1..crate::smp::count() {
        if crate::smp::status(slot).is_err() {
            return Err(Failure::Missing("a vCPU did not start"));
        }
        crate::smp::post(slot, echo, slot as u64).map_err(|_| Failure::Missing("a vCPU took no job"))?;
        let deadline = crate::timer::Deadline::after_ms(1000);
        let got = crate::smp::wait(slot, deadline).map_err(|_| Failure::Missing("a vCPU did not finish its job"))?;
        if got != slot as u64 {
            return Err(Failure::Mismatch { what: "a vCPU's echo of its slot", expected: slot as u64, got });
        }
    }
    Ok(())
}
