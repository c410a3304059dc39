//! Kernel integrity from the guest's side: the checks of the hypervisor's
//! `INTEGRITY` and `TRACE` calls (`platform::hypercall`, ABI 1.3), and what
//! they share. This module owns the calls as the checks make them, the rule
//! that skips a check when the hypervisor runs without kernel integrity,
//! the pages of code the fetch probes call ([`code`]), and the two-range
//! stage-1 setup the trace and lock checks run on (`TTBR0_EL1` an identity
//! map of what the stub touches, `TTBR1_EL1` a kernel map: [`mmu_on`]).
//! The checks:
//!
//! - `mbec-matrix` ([`mbec`]): the stage-2 execute class of a page
//!   (`SET_EXEC`) decides, per mode, whether a fetch runs, exactly as
//!   FEAT_XNX's `XN[1:0]` would; it prints one line, the same on every CPU
//!   ([`mbec::MatrixLine`]);
//! - `trace-sequence` ([`trace`]): each write to a table reachable from
//!   `TTBR1_EL1` gives exactly the record computed for it, whatever
//!   instruction makes it, and takes effect;
//! - `integrity-lock` ([`lock`]): after `INTEGRITY LOCK`, updates that
//!   would make new kernel code or writable kernel code are dropped (the
//!   store completes, the descriptor keeps its value), and a write to the
//!   code itself is refused with a data abort.
//!
//! None is in the default run. Without `integrity` (or `integrity=emulate`)
//! on the hypervisor's command line, `INTEGRITY` and `TRACE` answer
//! `NOT_SUPPORTED`, and each check, having seen both do so, reports itself
//! skipped with [`NOT_SUPPORTED`] as its reason.
//!
//! The stub runs on one vCPU here (the checks are the boot vCPU's); the
//! other vCPUs, if any, sleep in the stub's `.text` meanwhile.

pub mod lock;
pub mod mbec;
pub mod trace;

use crate::backdoor;
use crate::checks::{expect_eq, reply_ok, reply_status, Failure};
use crate::exceptions::Caught;
use crate::Env;
use core::fmt;
use platform::addr::{PhysAddr, VirtAddr};
use platform::esr::{Esr, ExceptionClass};
use platform::hypercall::{Function, HvError, IntegrityOp, IntegrityStatus, TraceReply, TRACE_CLEAR, TRACE_COUNTS};
use platform::mbec::{Exec, Mode};
use platform::paging::{self, Attributes, Regime, StaticPool, Table};
use platform::s1trace::Record;

/// The reason a check gives when the hypervisor has no kernel integrity
/// (the scenarios match it word for word).
pub const NOT_SUPPORTED: &str =
    "INTEGRITY STATUS answers NOT_SUPPORTED: the hypervisor runs without `integrity` on its command line";

pub const PAGE: u64 = 4096;

const BRK_NOT_TAKEN: &str = "the BRK hypercall reached the guest's own EL1 vector";

/// What a kernel-integrity check found that a plain mismatch cannot say.
pub enum IntegrityFailure {
    /// A fetch of a page of class `exec` in `mode` (a cell of the matrix).
    Cell { mode: Mode, exec: Exec, what: &'static str, expected: u64, got: u64 },
    /// The same cell ran once and faulted another time.
    Unstable { mode: Mode, exec: Exec },
    /// Trace record `index` is not the one the write must give.
    Record { index: u64, expected: Record, got: Record },
    /// At `step`, a field (of a syndrome, mostly) other than expected.
    Field { step: &'static str, field: &'static str, expected: u64, got: u64 },
    /// A write the lock must refuse was made: no data abort.
    NotRefused { step: &'static str },
}

impl From<IntegrityFailure> for Failure {
    fn from(failure: IntegrityFailure) -> Self {
        Failure::Integrity(failure)
    }
}

/// A mode as the matrix line writes it.
pub const fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Kernel => "el1",
        Mode::User => "el0",
    }
}

/// An execute class as the matrix line writes it.
pub const fn exec_name(exec: Exec) -> &'static str {
    match exec {
        Exec::Both => "both",
        Exec::KernelOnly => "kernel",
        Exec::UserOnly => "user",
        Exec::Neither => "neither",
    }
}

/// A record, every field.
struct ShowRecord<'a>(&'a Record);

impl fmt::Display for ShowRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(
            f,
            "table {:#x} level {} index {} old {:#x} new {:#x} VAs {:#x}..={:#x}",
            r.table, r.level, r.index, r.old, r.new, r.first_va, r.last_va
        )
    }
}

impl fmt::Display for IntegrityFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cell { mode, exec, what, expected, got } => {
                write!(
                    f,
                    "{} fetch of a `{}` page: {what}: expected {expected:#x}, got {got:#x}",
                    mode_name(*mode),
                    exec_name(*exec)
                )
            }
            Self::Unstable { mode, exec } => write!(
                f,
                "{} fetch of a `{}` page: ran one time and faulted another",
                mode_name(*mode),
                exec_name(*exec)
            ),
            Self::Record { index, expected, got } => {
                write!(f, "trace record {index}: expected {}, got {}", ShowRecord(expected), ShowRecord(got))
            }
            Self::Field { step, field, expected, got } => {
                write!(f, "{step}: {field}: expected {expected:#x}, got {got:#x}")
            }
            Self::NotRefused { step } => write!(f, "{step}: not refused (no data abort reached the guest)"),
        }
    }
}

// --- the calls ----------------------------------------------------------

/// `INTEGRITY op` from EL1: x0..x3.
pub fn integrity(op: IntegrityOp) -> Result<[u64; 4], Failure> {
    let [x1, x2, x3, x4] = op.args();
    backdoor::brk_call(Function::Integrity.id(), [x1, x2, x3, x4, 0, 0, 0])
        .map_err(|caught| Failure::Exception { what: BRK_NOT_TAKEN, caught })
}

/// What `x4` holds going into `TRACE`, so that a record whose `x4` the
/// hypervisor did not write shows.
const X4_BEFORE: u64 = 0x7472_6163_6534_7834;

/// `TRACE index` from EL1: x0..x4.
fn trace_call(index: u64) -> Result<[u64; 5], Failure> {
    backdoor::brk_call_x4(Function::Trace.id(), [index, 0, 0, X4_BEFORE, 0, 0, 0])
        .map_err(|caught| Failure::Exception { what: BRK_NOT_TAKEN, caught })
}

/// `INTEGRITY STATUS`, decoded.
#[derive(Clone, Copy, Debug)]
pub struct Status {
    pub flags: IntegrityStatus,
    /// `x2`: pages of locked kernel code.
    pub locked_pages: u64,
    /// `x3`: refusals since the lock.
    pub refusals: u64,
}

impl fmt::Display for Status {
    /// `locked=0 xnx=1 tracing=1 locked-pages=0 refusals=0`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |set: bool| u8::from(set);
        write!(
            f,
            "locked={} xnx={} tracing={} locked-pages={} refusals={}",
            flag(self.flags.locked),
            flag(self.flags.xnx),
            flag(self.flags.tracing),
            self.locked_pages,
            self.refusals
        )
    }
}

fn decode_status(reply: [u64; 4]) -> Result<Status, Failure> {
    let [bits, locked_pages, refusals] = reply_ok("INTEGRITY STATUS", reply)?;
    let flags = IntegrityStatus::from_bits(bits);
    expect_eq("INTEGRITY STATUS x1 (only the locked, xnx and tracing bits)", flags.bits(), bits)?;
    Ok(Status { flags, locked_pages, refusals })
}

/// `INTEGRITY STATUS`, which must succeed.
pub fn status() -> Result<Status, Failure> {
    decode_status(integrity(IntegrityOp::Status)?)
}

/// `INTEGRITY STATUS`; or, if it answers `NOT_SUPPORTED` and so does
/// `TRACE`, the check's skip with [`NOT_SUPPORTED`] as its reason.
pub fn status_or_skip() -> Result<Status, Failure> {
    let reply = integrity(IntegrityOp::Status)?;
    if reply[0] != HvError::NotSupported.status() {
        return decode_status(reply);
    }
    reply_status("INTEGRITY STATUS", Err(HvError::NotSupported), reply)?;
    let [x0, x1, x2, x3, _] = trace_call(TRACE_COUNTS)?;
    reply_status("TRACE TRACE_COUNTS where INTEGRITY is not supported", Err(HvError::NotSupported), [x0, x1, x2, x3])?;
    Err(Failure::Skip(NOT_SUPPORTED))
}

/// `INTEGRITY SET_EXEC` of `pages` pages at `ipa`: its x0..x3.
pub fn set_exec(ipa: u64, pages: u64, exec: Exec) -> Result<[u64; 4], Failure> {
    integrity(IntegrityOp::SetExec { ipa, pages, exec })
}

/// `TRACE TRACE_COUNTS`.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    pub kept: u64,
    pub dropped: u64,
    pub capacity: u64,
}

pub fn trace_counts() -> Result<Counts, Failure> {
    let [x0, x1, x2, x3, _] = trace_call(TRACE_COUNTS)?;
    let [kept, dropped, capacity] = reply_ok("TRACE TRACE_COUNTS", [x0, x1, x2, x3])?;
    Ok(Counts { kept, dropped, capacity })
}

/// `TRACE TRACE_CLEAR`: the records the log held.
pub fn trace_clear() -> Result<u64, Failure> {
    let [x0, x1, x2, x3, _] = trace_call(TRACE_CLEAR)?;
    let [held, ..] = reply_ok("TRACE TRACE_CLEAR", [x0, x1, x2, x3])?;
    Ok(held)
}

/// `TRACE index`: the record.
pub fn trace_record(index: u64) -> Result<Record, Failure> {
    let [x0, x1, x2, x3, x4] = trace_call(index)?;
    reply_ok("TRACE (a record the counts say is kept)", [x0, x1, x2, x3])?;
    Ok(TraceReply::from_regs([x1, x2, x3, x4]).0)
}

// --- faults -------------------------------------------------------------

/// `ESR_ELx.IL`.
const ESR_IL: u64 = 1 << 25;
/// The permission fault at level 3 that the contract names for every fault
/// the hypervisor gives for kernel integrity (IFSC and DFSC).
pub const PERMISSION_L3: u8 = 0x0f;

/// A field of a syndrome that is not as expected: its name, the value
/// expected, the value found.
pub type BadField = (&'static str, u64, u64);

/// Checks an abort's syndrome field by field: the class, `IL` = 1, the
/// fault status code, `FnV` = 0 (FAR is valid) and, for a data abort,
/// `WnR`.
pub fn check_abort(esr: Esr, class: ExceptionClass, fault: u8, write: Option<bool>) -> Result<(), BadField> {
    let expect = |what, expected: u64, got: u64| if expected == got { Ok(()) } else { Err((what, expected, got)) };
    expect("ESR_EL1.EC", class.ec().into(), esr.class().ec().into())?;
    expect("ESR_EL1.IL", ESR_IL, esr.0 & ESR_IL)?;
    let Some(abort) = esr.abort() else { return Err(("ESR_EL1 (not an abort)", class.ec().into(), esr.0)) };
    expect("ESR_EL1 fault status code (IFSC/DFSC)", fault.into(), abort.fault().code().into())?;
    expect("ESR_EL1.FnV (FAR valid)", 0, u64::from(abort.fnv()))?;
    if let Some(write) = write {
        expect("ESR_EL1.WnR", u64::from(write), u64::from(abort.wnr()))?;
    }
    Ok(())
}

/// The fault status code of a translation fault at `level`.
pub const fn translation_fault(level: u8) -> u8 {
    0x04 | (level & 3)
}

// --- memory the checks map and call --------------------------------------

/// Pages of code, each with one `RET` at its start (the rest is zero: a
/// permanently undefined instruction), for the fetch probes.
pub mod code {
    use core::cell::UnsafeCell;

    /// How many.
    pub const PAGES: usize = 4;
    /// `RET` (x30).
    const RET: u32 = 0xd65f_03c0;

    #[repr(C, align(4096))]
    struct Pages(UnsafeCell<[[u32; 1024]; PAGES]>);

    // SAFETY: only the boot vCPU's integrity checks touch the pages, one
    // check at a time, through raw pointers: a `RET` written in each, and
    // calls to it.
    unsafe impl Sync for Pages {}

    /// Page-aligned pages of their own in `.bss`: nothing else shares them,
    /// so a page's execute class concerns this code alone.
    static CODE: Pages = Pages(UnsafeCell::new([[0; 1024]; PAGES]));

    /// The IPA of page `index` (the MMU is off, or maps RAM flat).
    pub fn page(index: usize) -> u64 {
        CODE.0.get() as u64 + index as u64 * super::PAGE
    }

    /// The pages' IPAs.
    pub fn range() -> core::ops::Range<u64> {
        page(0)..page(PAGES)
    }

    /// Writes the `RET` into every page and makes it what instruction
    /// fetches see: clean the data cache and invalidate the instruction
    /// cache to the point of unification, each completed.
    pub fn prepare() {
        for index in 0..PAGES {
            let at = page(index);
            // SAFETY: the first word of one of this module's pages, which
            // only these checks use; a `RET` there is what they call.
            unsafe {
                core::ptr::write_volatile(at as *mut u32, RET);
                core::arch::asm!(
                    "dc cvau, {a}",
                    "dsb ish",
                    "ic ivau, {a}",
                    "dsb ish",
                    "isb",
                    a = in(reg) at,
                    options(nostack),
                );
            }
        }
    }
}

/// `DC CIVAC` over `[start, start + len)` and a `DSB`: what the stub wrote
/// with its MMU off (not cached) is what a cacheable access or table walk
/// reads afterwards, whatever lines earlier cacheable accesses left.
pub fn clean_invalidate(start: u64, len: u64) {
    // SAFETY: reading CTR_EL0 has no side effect.
    let ctr = unsafe { platform::mrs!("ctr_el0") };
    // DminLine, bits [19:16]: log2 of the smallest line, in words.
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut at = start & !(line - 1);
    while at < start + len {
        // SAFETY: cleaning and invalidating lines of the stub's own RAM
        // writes back nothing but what the stub wrote there.
        unsafe { core::arch::asm!("dc civac, {a}", a = in(reg) at, options(nostack)) };
        at += line;
    }
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb sy", options(nostack)) };
}

// --- stage 1 with both ranges -------------------------------------------

/// The VA width of both ranges: 39 bits, a level-1 root.
pub const VA_BITS: u32 = 39;
/// The first VA of the `TTBR1_EL1` range.
pub const KERNEL_BASE: u64 = u64::MAX << VA_BITS;
const GIB: u64 = 1 << 30;

/// `TCR_EL1` for two 39-bit ranges, 4 KiB granules, write-back
/// inner-shareable walks, 40-bit IPA: T0SZ, IRGN0, ORGN0, SH0, TG0 = 4 KiB;
/// T1SZ, EPD1 = 0, IRGN1, ORGN1, SH1, TG1 = 4 KiB (0b10); IPS.
const TCR_TWO_RANGES: u64 = (64 - VA_BITS as u64)
    | (0b01 << 8)
    | (0b01 << 10)
    | (0b11 << 12)
    | ((64 - VA_BITS as u64) << 16)
    | (0b01 << 24)
    | (0b01 << 26)
    | (0b11 << 28)
    | (0b10 << 30)
    | (0b010 << 32);
/// `SCTLR_EL1.M`, `.C`, `.I`.
const SCTLR_MMU_CACHES: u64 = (1 << 0) | (1 << 2) | (1 << 12);

/// The translation registers as they were before [`mmu_on`].
pub struct Saved {
    sctlr: u64,
    tcr: u64,
    ttbr0: u64,
    ttbr1: u64,
    mair: u64,
}

/// Turns the stub's MMU on with `ttbr0` (an identity map of all it
/// touches, [`identity`]) and `ttbr1` (a kernel map): `TCR_EL1` first, so
/// that the `TTBR1_EL1` write, where the hypervisor finds the root to
/// trace, comes with the range's size and granule already set.
pub fn mmu_on(ttbr0: u64, ttbr1: u64) -> Saved {
    let (sctlr, tcr, ttbr0_was, ttbr1_was, mair): (u64, u64, u64, u64, u64);
    // SAFETY: reading the stub's own translation controls.
    unsafe {
        core::arch::asm!(
            "mrs {s}, sctlr_el1", "mrs {t}, tcr_el1", "mrs {b0}, ttbr0_el1", "mrs {b1}, ttbr1_el1", "mrs {m}, mair_el1",
            s = out(reg) sctlr, t = out(reg) tcr, b0 = out(reg) ttbr0_was, b1 = out(reg) ttbr1_was, m = out(reg) mair,
            options(nomem, nostack),
        );
    }
    // SAFETY: `ttbr0` maps all the stub uses flat (RAM, console, test
    // device), so execution and data go on unchanged once the MMU is on;
    // the TLB holds nothing of the new tables.
    unsafe {
        core::arch::asm!(
            "msr mair_el1, {m}", "msr tcr_el1, {t}", "msr ttbr0_el1, {b0}", "msr ttbr1_el1, {b1}", "isb",
            "tlbi vmalle1", "dsb nsh", "isb",
            "msr sctlr_el1, {s}", "isb",
            m = in(reg) paging::MAIR_EL2_VALUE, t = in(reg) TCR_TWO_RANGES, b0 = in(reg) ttbr0, b1 = in(reg) ttbr1,
            s = in(reg) sctlr | SCTLR_MMU_CACHES, options(nostack),
        );
    }
    Saved { sctlr, tcr, ttbr0: ttbr0_was, ttbr1: ttbr1_was, mair }
}

/// Back to the state before [`mmu_on`]: the MMU off, then `TCR_EL1` (the
/// `TTBR1` range's granule and size as they were), then the rest.
pub fn mmu_off(saved: &Saved) {
    // SAFETY: back to the MMU-off state the rest of the stub expects.
    unsafe {
        core::arch::asm!(
            "msr sctlr_el1, {s}", "isb",
            "msr tcr_el1, {t}", "msr ttbr0_el1, {b0}", "msr ttbr1_el1, {b1}", "msr mair_el1, {m}", "isb",
            "tlbi vmalle1", "dsb nsh", "isb",
            s = in(reg) saved.sctlr, t = in(reg) saved.tcr, b0 = in(reg) saved.ttbr0, b1 = in(reg) saved.ttbr1,
            m = in(reg) saved.mair, options(nostack),
        );
    }
}

/// After a change to one leaf: the TLB entry (and cached walks) of `va`
/// gone on every vCPU, the change visible to what follows.
pub fn tlbi_va(va: u64) {
    // TLBI VAE1IS takes VA[55:12] in bits [43:0] (ASID 0: the maps are
    // global).
    let operand = (va >> 12) & ((1 << 44) - 1);
    // SAFETY: TLB maintenance and barriers.
    unsafe {
        core::arch::asm!("dsb ishst", "tlbi vae1is, {x}", "dsb ish", "isb", x = in(reg) operand, options(nostack));
    }
}

/// After a change to a table descriptor (which many VAs' walks use): every
/// EL1&0 TLB entry gone.
pub fn tlbi_all() {
    // SAFETY: TLB maintenance and barriers.
    unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", "isb", options(nostack)) };
}

/// The attribute bits (no address, no type) of an EL1&0 leaf for `attrs`.
pub fn leaf_bits(attrs: Attributes) -> u64 {
    paging::encode(Regime::El1And0, attrs).unwrap_or(0)
}

/// A page descriptor (level 3) for `ipa`.
pub fn page_descriptor(ipa: u64, attrs: Attributes) -> u64 {
    ipa | platform::s1trace::bits::VALID | platform::s1trace::bits::TABLE_OR_PAGE | leaf_bits(attrs)
}

/// A table descriptor (levels 0 to 2) for the table at `ipa`.
pub const fn table_descriptor(ipa: u64) -> u64 {
    ipa | platform::s1trace::bits::VALID | platform::s1trace::bits::TABLE_OR_PAGE
}

/// Kernel code: read-only, EL1-executable, nothing for EL0.
pub const CODE: Attributes = Attributes::CODE;
/// Kernel read-only data.
pub const RODATA: Attributes = Attributes::RODATA;
/// Kernel data: EL1 reads and writes, nobody executes.
pub const DATA: Attributes = Attributes::DATA;
/// A leaf's `AP[2]`: read-only.
pub const AP_RO: u64 = platform::s1trace::bits::AP_RO;

/// Normal memory EL1 may read, write and execute: the identity map's RAM.
const RAM: Attributes = Attributes { executable: true, ..Attributes::DATA };

/// Tables for the identity map and the lock check's kernel map.
pub const POOL_PAGES: usize = 12;
static POOL: spin::Mutex<[Table; POOL_PAGES]> = spin::Mutex::new([const { Table::ZERO }; POOL_PAGES]);

/// Builds tables with `build` from the pool (emptied first: every page
/// zero, none handed out), makes them what the table walker reads
/// ([`clean_invalidate`]), then runs `run` with what `build` returned (the
/// roots), the pool still held.
pub fn with_tables<B, R>(
    build: impl FnOnce(&mut StaticPool) -> Result<B, Failure>,
    run: impl FnOnce(B) -> R,
) -> Result<R, Failure> {
    let mut pages = POOL.lock();
    for page in pages.iter_mut() {
        *page = Table::ZERO;
    }
    let base = pages.as_ptr() as u64;
    let len = core::mem::size_of_val(&*pages) as u64;
    let built = {
        let mut pool = StaticPool::new(&mut pages[..], PhysAddr(base)).map_err(|_| Failure::Missing(POOL_FAILED))?;
        build(&mut pool)?
    };
    clean_invalidate(base, len);
    Ok(run(built))
}

const POOL_FAILED: &str = "building the stub's stage-1 tables failed (pool too small, or a bad mapping)";

/// Maps `len` bytes at `va` to `ipa` in the space of `root`.
pub fn map(pool: &mut StaticPool, root: u64, va: u64, ipa: u64, len: u64, attrs: Attributes) -> Result<(), Failure> {
    paging::map(pool, PhysAddr(root), VA_BITS, Regime::El1And0, VirtAddr(va), PhysAddr(ipa), len, attrs)
        .map_err(|_| Failure::Missing(POOL_FAILED))
}

/// A new, empty root.
pub fn new_root(pool: &mut StaticPool) -> Result<u64, Failure> {
    paging::PagePool::alloc_table(pool).map(|root| root.0).ok_or(Failure::Missing(POOL_FAILED))
}

/// The `TTBR0_EL1` map the stub runs on with its MMU on: guest RAM flat
/// (readable, writable and executable at EL1: the stub's code, data,
/// stacks and tables), the console and the test device flat (Device).
pub fn identity(env: &Env, pool: &mut StaticPool) -> Result<u64, Failure> {
    let root = new_root(pool)?;
    map(pool, root, env.ram_base, env.ram_base, env.ram_end - env.ram_base, RAM)?;
    if let Some(console) = env.console {
        map(pool, root, console, console, PAGE, Attributes::DEVICE)?;
    }
    if let Some((base, size)) = env.test_mmio {
        map(pool, root, base, base, size, Attributes::DEVICE)?;
    }
    Ok(root)
}

/// The address (flat: IPA and identity VA) of the level-3 entry that maps
/// `va` in the 39-bit space of `root`, if tables lead there.
pub fn leaf_entry(root: u64, va: u64) -> Option<u64> {
    let mut table = root;
    for level in 1..=3u8 {
        let index = paging::index(VirtAddr(va), level)? as u64;
        let entry = table + index * 8;
        if level == 3 {
            return Some(entry);
        }
        // SAFETY: an entry of one of the stub's own tables (flat).
        let descriptor = unsafe { core::ptr::read_volatile(entry as *const u64) };
        if descriptor & 0b11 != 0b11 {
            return None;
        }
        table = descriptor & paging::bits::OA_MASK;
    }
    None
}

/// A 64-bit load from `va` (one `LDR`), or the exception it raised.
pub fn load(va: u64) -> Result<u64, Caught> {
    let mut value = 0u64;
    let caught = crate::exceptions::expect_sync(|| {
        // SAFETY: a load from a VA one of the checks' maps translates to
        // the stub's own RAM, or that faults (the handler steps over it).
        unsafe { core::arch::asm!("ldr {v}, [{a}]", a = in(reg) va, v = out(reg) value, options(nostack)) };
    });
    match caught {
        Some(caught) => Err(caught),
        None => Ok(value),
    }
}

/// A load from `va` must give `expected`.
pub fn expect_load(what: &'static str, va: u64, expected: u64) -> Result<(), Failure> {
    let got = load(va).map_err(|caught| Failure::Exception { what, caught })?;
    expect_eq(what, expected, got)
}

/// A load from `va` must fault with a translation fault at `level` (the
/// entry that mapped it is gone).
pub fn expect_unmapped(step: &'static str, va: u64, level: u8) -> Result<(), Failure> {
    let caught = match load(va) {
        Ok(got) => return Err(Failure::Mismatch { what: step, expected: 0, got }),
        Err(caught) => caught,
    };
    check_abort(caught.esr, ExceptionClass::DataAbortSame, translation_fault(level), Some(false))
        .map_err(|(field, expected, got)| Failure::from(IntegrityFailure::Field { step, field, expected, got }))?;
    let far = IntegrityFailure::Field { step, field: "FAR_EL1 (the VA loaded)", expected: va, got: caught.far };
    if caught.far != va {
        return Err(far.into());
    }
    Ok(())
}

/// The data abort the hypervisor gives for a refused write: EC 0x25,
/// IL = 1, DFSC 0x0F, WnR = 1, FAR the VA written, ELR the instruction.
pub fn check_refusal(step: &'static str, caught: Caught, va: u64, insn: u64) -> Result<(), Failure> {
    let field =
        |(field, expected, got): BadField| Failure::from(IntegrityFailure::Field { step, field, expected, got });
    check_abort(caught.esr, ExceptionClass::DataAbortSame, PERMISSION_L3, Some(true)).map_err(field)?;
    if caught.far != va {
        return Err(field(("FAR_EL1 (the VA written)", va, caught.far)));
    }
    if caught.elr != insn {
        return Err(field(("ELR_EL1 (the writing instruction)", insn, caught.elr)));
    }
    Ok(())
}

/// Whether this CPU has the LSE atomics (`ID_AA64ISAR0_EL1.Atomic` >= 2).
pub fn has_lse() -> bool {
    // SAFETY: reading an ID register has no side effect.
    let isar0 = unsafe { platform::mrs!("id_aa64isar0_el1") };
    (isar0 >> 20) & 0xf >= 0b0010
}

/// The guest RAM gigabyte's first IPA (what a level-1 block maps).
pub const fn gib_of(ipa: u64) -> u64 {
    ipa & !(GIB - 1)
}
