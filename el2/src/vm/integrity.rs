//! Kernel code integrity for a VM (`integrity` on the command line,
//! `hv,kernel-integrity` in a VM's description): the hypervisor keeps a
//! guest kernel from running code it did not have at its lock point, while
//! its user programs run as usual. Two mechanisms, used together:
//!
//! - **Traced writes to the kernel's translation tables.** Every table
//!   reachable from the guest's `TTBR1_EL1` is write-protected in stage 2
//!   (`HCR_EL2.TVM` makes the guest's writes of `TTBR1_EL1` and `TCR_EL1`
//!   trap, so the hypervisor knows the root). A write to such a page
//!   faults into [`on_write_fault`], which decodes the instruction
//!   (`platform::guest_store`), performs it on the guest's behalf, and
//!   records each descriptor it changed (`platform::s1trace`): tables it
//!   links are traced from then on, tables it unlinks are let go. The log
//!   is the VM's, of fixed size, and counts what it drops (`TRACE`).
//! - **Mode-based execute control** at stage 2 (`platform::mbec`): with
//!   FEAT_XNX in one tree, otherwise emulated with one tree per executable
//!   class, switched on the instruction aborts a change of mode causes
//!   ([`on_instruction_abort`]).
//!
//! At the lock (`INTEGRITY LOCK`, from the guest's kernel or from `hvctl
//! integrity lock`), the pages `TTBR1`'s tables map executable at EL1
//! become the locked kernel code: kernel-only and read-only at stage 2;
//! every other page of the VM's RAM becomes user-only. From then on a
//! table write that would make other memory EL1-executable, or map locked
//! code writable, is refused by dropping it: the instruction completes,
//! the descriptor keeps its old value ([`emulate`] says why this and not
//! a fault). A write to locked code gets the permission fault a read-only
//! page gives, and an EL1 fetch outside it the instruction abort FEAT_XNX
//! gives. Each refusal is reported on the console and counted.
//!
//! Only the kernel's half of the address space is traced: a user address
//! space's root is freed without a write the hypervisor could see, so
//! protecting user tables would end up tracing whatever reuses their pages;
//! and user mappings cannot give the kernel code to run, since stage 2 lets
//! EL1 execute nothing but the locked pages.

use crate::arch::layout::phys_to_virt;
use crate::arch::sysregs::{self, GuestReg};
use crate::mm::stage2::{PageClass, Pages, Stage2};
use crate::vm::{Vcpu, Vm};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use platform::arch::at::{self, At};
use platform::arch::trap::TrapFrame;
use platform::arch::ExceptionLevel;
use platform::board::MemRegion;
use platform::esr::{Esr, FaultStatus, Origin};
use platform::gvascan::{Granule4K, Par};
use platform::hypercall::{HvError, IntegrityOp, IntegrityStatus, TraceReply, TRACE_CLEAR, TRACE_COUNTS};
use platform::mbec::{Exec, Mode, Tree, Verdict};
use platform::s1trace::{self, Descriptor, LockedCode, Record, Refusal, Table, TraceLog, Update};
use spin::Mutex;

/// Records a VM's trace log keeps.
pub const TRACE_CAPACITY: usize = 4096;
/// Tables traced at most (Linux's kernel half has some 500 on 1 GiB): what
/// a guest can make the hypervisor walk and hold is bounded.
const MAX_TRACED_TABLES: usize = 16384;
/// The lock's walk: at most this many page mappings visited, and this many
/// pages of code (256 MiB) locked; a guest whose tables give more is
/// refused the lock.
const MAX_CODE_MAPPINGS: u64 = 1 << 22;
const MAX_LOCKED_PAGES: usize = 1 << 16;

const PAGE: u64 = 4096;
/// `TTBRn_EL1.BADDR` (with a 4 KiB-aligned root, bits \[47:12\]).
const TTBR_BADDR: u64 = 0x0000_ffff_ffff_f000;
/// `TCR_EL1.T1SZ`, `EPD1` and `TG1`.
const TCR_T1SZ_SHIFT: u32 = 16;
const TCR_TG1_SHIFT: u32 = 30;
const TCR_TG1_4K: u64 = 0b10;
/// `SCTLR_EL1.M`.
const SCTLR_M: u64 = 1 << 0;
/// `SCTLR_EL1.EE`: EL1's data accesses are big-endian.
const SCTLR_EE: u64 = 1 << 25;
/// A table descriptor's `PXNTable` (bit 59): nothing below executes at EL1.
const PXN_TABLE: u64 = 1 << 59;

/// A VM's kernel-integrity state.
pub struct Integrity {
    /// How stage 2 carries per-mode execute permission.
    pub pages: Pages,
    locked: AtomicBool,
    locked_pages: AtomicU64,
    refusals: AtomicU64,
    /// Stage-2 tree switches (the emulation's exits on a change of mode).
    switches: AtomicU64,
    tracer: Mutex<Tracer>,
}

/// The kernel's translation tables as traced.
struct Tracer {
    /// `TTBR1`'s root and VA width, once the guest set them.
    /// Each vCPU's `TTBR1` space (its root and VA width), once it set one:
    /// vCPUs may use different roots for a while (a CPU coming up), and
    /// every root in use is traced.
    spaces: BTreeMap<usize, (u64, u32)>,
    /// The roots in use, and by how many vCPUs.
    roots: BTreeMap<(u64, u32), u32>,
    /// Every traced table page: where it sits and how many entries link it.
    tables: BTreeMap<u64, (Table, u32)>,
    log: Box<TraceLog<TRACE_CAPACITY>>,
    /// Once locked: the locked code's pages, and how many EL1-executable
    /// leaves of the traced tables map each (`platform::s1trace::LockedCode`).
    code: BTreeMap<u64, u32>,
    /// Whether the last space was refused (a granule other than 4 KiB),
    /// so that it is said once.
    refused_granule: bool,
    /// Whether [`MAX_TRACED_TABLES`] was reached (said once).
    full: bool,
}

impl Integrity {
    pub fn new(pages: Pages) -> Self {
        Self {
            pages,
            locked: AtomicBool::new(false),
            locked_pages: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            tracer: Mutex::new(Tracer {
                spaces: BTreeMap::new(),
                roots: BTreeMap::new(),
                tables: BTreeMap::new(),
                log: empty_log(),
                code: BTreeMap::new(),
                refused_granule: false,
                full: false,
            }),
        }
    }

    pub fn locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }

    fn refused(&self) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }
}

/// An empty log, made in place on the heap (it is 192 KiB: built on a
/// stack and moved, it would overflow the boot CPU's).
fn empty_log() -> Box<TraceLog<TRACE_CAPACITY>> {
    let zeroed = Box::<TraceLog<TRACE_CAPACITY>>::new_zeroed();
    // SAFETY: a `TraceLog` of zero bytes is a valid empty one: its records
    // are plain integers, its length and its dropped count are 0.
    unsafe { zeroed.assume_init() }
}

/// The console label of a VM among several (nothing for the only one).
fn label(vm: &Vm) -> String {
    if vm.owns_machine {
        String::new()
    } else {
        alloc::format!("VM {}: ", vm.name)
    }
}

fn mode_of(spsr: u64) -> Mode {
    match ExceptionLevel::from_spsr(spsr) {
        ExceptionLevel::El0 => Mode::User,
        _ => Mode::Kernel,
    }
}

fn origin_of(spsr: u64) -> Origin {
    match mode_of(spsr) {
        Mode::User => Origin::LowerEl,
        Mode::Kernel => Origin::SameEl,
    }
}

/// Reads the 8-byte word at `ipa` of the VM's RAM.
fn read_u64(ram: MemRegion, ipa: u64) -> Option<u64> {
    if !ipa.is_multiple_of(8) || !ram.contains(ipa) || !ram.contains(ipa.checked_add(7)?) {
        return None;
    }
    // SAFETY: an aligned word inside guest RAM, which the direct map covers
    // (IPA = PA); guest memory is plain data to EL2.
    Some(unsafe { core::ptr::read_volatile(phys_to_virt(ipa) as *const u64) })
}

fn page_of(ipa: u64) -> u64 {
    ipa & !(PAGE - 1)
}

// ---------------------------------------------------------------------------
// Stage-2 classes

/// Makes `page` read-only (a traced table, or locked code) or writable,
/// keeping its execute class. The caller flushes the TLBs
/// (`Stage2::flush`) before the guest runs again: a walk protects hundreds
/// of tables at once.
fn protect(stage2: &mut Stage2, page: u64, read_only: bool) {
    let Some(class) = stage2.page_class(page) else { return };
    if class.writable != read_only {
        return;
    }
    let new = PageClass { exec: class.exec, writable: !read_only };
    if let Err(e) = stage2.set_class_unflushed(page, new) {
        log::warn!("kernel-integrity: page {page:#x}: {e}");
    }
}

fn is_locked_code(integrity: &Integrity, stage2: &Stage2, page: u64) -> bool {
    integrity.locked() && stage2.page_class(page).is_some_and(|c| c.exec == Exec::KernelOnly)
}

// ---------------------------------------------------------------------------
// Tracing

impl Tracer {
    /// Starts tracing `table` (one more entry links it) and, if it was not
    /// traced yet, what it links.
    fn follow(&mut self, stage2: &mut Stage2, ram: MemRegion, table: Table, entries: usize) {
        if let Some((_, links)) = self.tables.get_mut(&table.ipa) {
            *links = links.saturating_add(1);
            return;
        }
        if !ram.contains(table.ipa) {
            return;
        }
        if self.tables.len() >= MAX_TRACED_TABLES {
            if !core::mem::replace(&mut self.full, true) {
                log::warn!(
                    "kernel-integrity: more than {MAX_TRACED_TABLES} translation tables: the table at IPA {:#x} and those it links are not traced",
                    table.ipa
                );
            }
            return;
        }
        self.tables.insert(table.ipa, (table, 1));
        protect(stage2, table.ipa, true);
        if table.level >= Granule4K::LAST_LEVEL {
            return;
        }
        for index in 0..entries {
            let Some(raw) = read_u64(ram, table.ipa + index as u64 * 8) else { continue };
            if let Descriptor::Table { ipa } = Descriptor::decode(table.level, raw) {
                if let Some(child) = table.child(index, ipa) {
                    self.follow(stage2, ram, child, s1trace::ENTRIES);
                }
            }
        }
    }

    /// One entry fewer links the table at `ipa`: at none, it and what only
    /// it linked are let go.
    fn let_go(&mut self, integrity: &Integrity, stage2: &mut Stage2, ram: MemRegion, ipa: u64) {
        let Some((table, links)) = self.tables.get_mut(&ipa) else { return };
        *links = links.saturating_sub(1);
        if *links != 0 {
            return;
        }
        let table = *table;
        self.tables.remove(&ipa);
        self.forget_leaves(ram, table);
        protect(stage2, ipa, is_locked_code(integrity, stage2, ipa));
        if table.level >= Granule4K::LAST_LEVEL {
            return;
        }
        for index in 0..s1trace::ENTRIES {
            let Some(raw) = read_u64(ram, ipa + index as u64 * 8) else { continue };
            if let Descriptor::Table { ipa: child } = Descriptor::decode(table.level, raw) {
                self.let_go(integrity, stage2, ram, child);
            }
        }
    }

    /// vCPU `vcpu` now uses `space` (`None`: no 4 KiB-granule `TTBR1`
    /// space): a root no vCPU used before is followed, one no vCPU uses
    /// any more is let go (the new one first, so that the tables both
    /// share stay traced).
    fn set_space(
        &mut self,
        integrity: &Integrity,
        stage2: &mut Stage2,
        ram: MemRegion,
        vcpu: usize,
        space: Option<(u64, u32)>,
    ) {
        let old = self.spaces.get(&vcpu).copied();
        if old == space {
            return;
        }
        if let Some(new) = space {
            let users = self.roots.entry(new).or_insert(0);
            *users = users.saturating_add(1);
            if *users == 1 {
                if let Some((root, entries)) = root_table(new.0, new.1) {
                    self.follow(stage2, ram, root, entries);
                }
            }
            self.spaces.insert(vcpu, new);
        } else {
            self.spaces.remove(&vcpu);
        }
        if let Some(old) = old {
            let users = self.roots.get(&old).copied().unwrap_or(0).saturating_sub(1);
            if users == 0 {
                self.roots.remove(&old);
                self.let_go(integrity, stage2, ram, old.0);
            } else {
                self.roots.insert(old, users);
            }
        }
    }

    /// The space of `vcpu`, or else of any vCPU.
    fn space_of(&self, vcpu: usize) -> Option<(u64, u32)> {
        self.spaces.get(&vcpu).or_else(|| self.spaces.values().next()).copied()
    }
}

impl LockedCode for Tracer {
    fn uses(&self, page: u64) -> Option<u32> {
        self.code.get(&page).copied()
    }
}

/// Every page of `first..=last`.
fn pages(first: u64, last: u64) -> impl Iterator<Item = u64> {
    (page_of(first)..=last).step_by(PAGE as usize)
}

impl Tracer {
    /// What an allowed update does to the locked code: uses lost and
    /// gained, and freed code released (user-only and writable from then
    /// on, unless a traced table).
    fn apply(&mut self, stage2: &mut Stage2, update: Update) {
        if let Some((first, last)) = update.unuse {
            for page in pages(first, last) {
                if let Some(uses) = self.code.get_mut(&page) {
                    *uses = uses.saturating_sub(1);
                }
            }
        }
        if let Some((first, last)) = update.release {
            for page in pages(first, last) {
                self.release(stage2, page);
            }
        }
        if let Some((first, last)) = update.use_ {
            for page in pages(first, last) {
                if let Some(uses) = self.code.get_mut(&page) {
                    *uses = uses.saturating_add(1);
                }
            }
        }
    }

    /// Locked code nothing executes any more leaves the locked set: the
    /// kernel freed it and may use it as anything else.
    fn release(&mut self, stage2: &mut Stage2, page: u64) -> bool {
        if self.code.get(&page) != Some(&0) {
            return false;
        }
        self.code.remove(&page);
        let writable = !self.tables.contains_key(&page);
        if let Err(e) = stage2.set_classes(page, 1, |_| PageClass { exec: Exec::UserOnly, writable }) {
            log::warn!("kernel-integrity: page {page:#x}: {e}");
        }
        true
    }

    /// A table no longer traced: the executable leaves it held no longer
    /// count as uses of the locked code.
    fn forget_leaves(&mut self, ram: MemRegion, table: Table) {
        if self.code.is_empty() {
            return;
        }
        for index in 0..s1trace::ENTRIES {
            let Some(raw) = read_u64(ram, table.ipa + index as u64 * 8) else { continue };
            if let Descriptor::Leaf { ipa, size, perms } = Descriptor::decode(table.level, raw) {
                if perms.el1_exec {
                    for page in pages(ipa, ipa.saturating_add(size.saturating_sub(1))) {
                        if let Some(uses) = self.code.get_mut(&page) {
                            *uses = uses.saturating_sub(1);
                        }
                    }
                }
            }
        }
    }
}

/// The root table of a `va_bits`-wide `TTBR1` space, and its entries.
fn root_table(root: u64, va_bits: u32) -> Option<(Table, usize)> {
    let level: u8 = match va_bits {
        40..=48 => 0,
        31..=39 => 1,
        22..=30 => 2,
        _ => return None,
    };
    let span = s1trace::entry_span(level);
    let entries = usize::try_from((1u64 << va_bits) / span).ok()?.clamp(1, s1trace::ENTRIES);
    Some((Table { ipa: root, level, va_base: u64::MAX << va_bits }, entries))
}

/// The guest wrote `TTBR1_EL1` or `TCR_EL1`: trace the tables of the
/// `TTBR1` space they now give, if it changed.
pub fn translation_changed(vm: &Vm, vcpu: usize) {
    let Some(integrity) = vm.integrity.as_ref() else { return };
    let ttbr1 = sysregs::read(GuestReg::Ttbr1);
    let tcr = sysregs::read(GuestReg::Tcr);
    let mut tracer = integrity.tracer.lock();
    let tg1 = (tcr >> TCR_TG1_SHIFT) & 3;
    let va_bits = 64u32.saturating_sub(((tcr >> TCR_T1SZ_SHIFT) & 0x3f) as u32);
    let space = (tg1 == TCR_TG1_4K && root_table(ttbr1 & TTBR_BADDR, va_bits).is_some())
        .then_some((ttbr1 & TTBR_BADDR, va_bits));
    if tracer.spaces.get(&vcpu).copied() == space {
        return;
    }
    // 0b00 is reserved (what TCR holds out of reset, before the guest sets
    // it up); 16 and 64 KiB are not traced, and said once.
    if tg1 != 0 && tg1 != TCR_TG1_4K && !core::mem::replace(&mut tracer.refused_granule, true) {
        log::warn!("kernel-integrity: {}TTBR1 uses a granule other than 4 KiB: its tables are not traced", label(vm));
    }
    let mut stage2 = vm.stage2.lock();
    tracer.set_space(integrity, &mut stage2, vm.ram, vcpu, space);
    stage2.flush();
    log::debug!(
        "kernel-integrity: {}vCPU {vcpu}: TTBR1 space {space:x?}: {} tables traced",
        label(vm),
        tracer.tables.len()
    );
}

/// A trapped `MSR` of a register `HCR_EL2.TVM` traps: writes it for the
/// guest, and follows a new `TTBR1` space.
pub fn register_written(reg: GuestReg, value: u64) {
    sysregs::write(reg, value);
    if matches!(reg, GuestReg::Ttbr1 | GuestReg::Tcr) {
        if let Some((vm, vcpu)) = crate::vm::current() {
            translation_changed(vm, vcpu.index);
        }
    }
}

// ---------------------------------------------------------------------------
// Writes to protected pages

/// Translates a guest VA for a read by `mode` (identity while its MMU is
/// off).
fn guest_ipa(va: u64, mode: Mode) -> Option<u64> {
    if sysregs::read(GuestReg::Sctlr) & SCTLR_M == 0 {
        return Some(va);
    }
    let op = match mode {
        Mode::User => At::S1E0R,
        Mode::Kernel => At::S1E1R,
    };
    // SAFETY: EL2 may translate the guest's EL1&0 regime; PAR_EL1 is read
    // right after and is no state the guest relies on across a trap.
    match Par::decode(unsafe { at::translate(op, va) }) {
        Par::Translated { pa, .. } => Some(pa | (va & (PAGE - 1))),
        Par::Fault { .. } => None,
    }
}

/// What became of a stage-2 permission fault on a write.
pub enum WriteOutcome {
    /// Not this module's (no integrity, or not a page it protects).
    NotOurs,
    /// Performed (or retried): the guest goes on.
    Done,
}

/// Refuses the write at the guest's instruction: a permission fault at
/// level 3, as a read-only page would give.
fn refuse_write(frame: &mut TrapFrame, far: u64) {
    let esr = Esr::data_abort(origin_of(frame.spsr), FaultStatus::Permission { level: 3 }, true);
    crate::vm::guest::inject_sync(frame, esr, far);
}

/// A write the guest made to a page stage 2 keeps read-only for
/// integrity: a traced table's (emulated and recorded, or refused) or
/// locked code's (refused).
pub fn on_write_fault(frame: &mut TrapFrame, vm: &Vm, ipa: u64, far: u64) -> WriteOutcome {
    let Some(integrity) = vm.integrity.as_ref() else { return WriteOutcome::NotOurs };
    let page = page_of(ipa);
    let mut tracer = integrity.tracer.lock();
    let mut stage2 = vm.stage2.lock();
    if stage2.page_class(page).is_none() {
        return WriteOutcome::NotOurs;
    }
    if !tracer.tables.contains_key(&page) {
        if integrity.locked() && tracer.release(&mut stage2, page) {
            // Freed code, written as the memory it has become: retry.
            return WriteOutcome::Done;
        }
        if is_locked_code(integrity, &stage2, page) {
            integrity.refused();
            log::warn!(
                "kernel-integrity: {}refused: a write to locked kernel code at IPA {ipa:#x} (VA {far:#x}, ELR {:#x})",
                label(vm),
                frame.elr
            );
            refuse_write(frame, far);
            return WriteOutcome::Done;
        }
        // Neither traced nor locked: a class that just changed (a table let
        // go, a VM reset), which this CPU's TLB may not know yet. Retry.
        crate::mm::vmid::flush_this_cpu();
        return WriteOutcome::Done;
    }
    let mode = mode_of(frame.spsr);
    let Some(insn_ipa) = guest_ipa(frame.elr, mode) else {
        log::warn!(
            "kernel-integrity: {}the instruction at {:#x} that wrote a traced table cannot be read",
            label(vm),
            frame.elr
        );
        refuse_write(frame, far);
        return WriteOutcome::Done;
    };
    let insn = read_u64(vm.ram, insn_ipa & !7).map(|word| (word >> ((insn_ipa & 4) * 8)) as u32);
    let Some(insn) = insn else {
        refuse_write(frame, far);
        return WriteOutcome::Done;
    };
    match emulate(integrity, &mut tracer, &mut stage2, vm, frame, page, insn, far) {
        Ok(None) => frame.elr = frame.elr.wrapping_add(4),
        Ok(Some(why)) => {
            integrity.refused();
            log::warn!("kernel-integrity: {}refused: {why}: the update is dropped", label(vm));
            frame.elr = frame.elr.wrapping_add(4);
        }
        Err(why) => {
            integrity.refused();
            log::warn!("kernel-integrity: {}refused: {why}", label(vm));
            refuse_write(frame, far);
        }
    }
    WriteOutcome::Done
}

/// Performs the store `insn` made to traced table page `page`, recording
/// what it changed. Once the kernel's code is locked, an update that would
/// add kernel code or map it writable is dropped instead (the reason is
/// returned): the instruction completes, its register results as if it
/// had written, and the table keeps its old descriptor. An instruction
/// the hypervisor does not perform is refused (`Err`).
///
/// Why dropped rather than faulted: the kernel edits its tables inside
/// critical sections (text patching holds a raw spinlock with interrupts
/// off, module loading the module mutex, both the CPU-hotplug lock), and a
/// fault there ends the task with them held, which wedges the kernel. A
/// dropped update leaves the failure to the kernel's own paths: text
/// patching writes through the alias it could not map with
/// `copy_to_kernel_nofault` and gets `-EFAULT`; code it could not make
/// executable faults at its first execution, in the task that wanted it.
#[allow(clippy::too_many_arguments)]
fn emulate(
    integrity: &Integrity,
    tracer: &mut Tracer,
    stage2: &mut Stage2,
    vm: &Vm,
    frame: &mut TrapFrame,
    page: u64,
    insn: u32,
    far: u64,
) -> Result<Option<String>, String> {
    use platform::guest_store::{decode_with, Regs};
    // `guest_store` reads and writes little-endian data.
    if sysregs::read(GuestReg::Sctlr) & SCTLR_EE != 0 {
        return Err(String::from("a big-endian kernel's table writes are not performed"));
    }
    let store = decode_with(insn, zva_block()).map_err(|e| {
        alloc::format!("the instruction {insn:#010x} at {:#x} that wrote a traced table: {e:?}", frame.elr)
    })?;
    let sp = guest_sp(frame.spsr);
    let regs = Regs { x: &frame.x, sp };
    let va = store.address(&regs);
    let len = store.len() as u64;
    // The access's IPA: the faulting page, at the VA's offset; it must not
    // leave the page.
    let offset = va & (PAGE - 1);
    let _ = far;
    if offset + len > PAGE {
        return Err(alloc::format!("a {len}-byte write at VA {va:#x} crosses a traced table page"));
    }
    let at = page + offset;
    let mut old = [0u8; 64];
    let old = old.get_mut(..len as usize).ok_or_else(|| String::from("write too long"))?;
    // SAFETY: `page` is a traced table page inside the VM's RAM (only such
    // pages are traced) and `offset + len` stays inside it; the direct map
    // covers guest RAM.
    unsafe { core::ptr::copy_nonoverlapping(phys_to_virt(at) as *const u8, old.as_mut_ptr(), old.len()) };
    let outcome = store.apply(&regs, old).map_err(|e| alloc::format!("{e:?}"))?;
    let new = outcome.new.get(..len as usize).unwrap_or_default();
    let (table, _) = tracer.tables.get(&page).copied().ok_or_else(|| String::from("untraced"))?;
    // Every descriptor the write touches, before and after.
    let first = (at & !7) - page;
    let last = ((at + len - 1) & !7) - page;
    let mut changes: Vec<(usize, u64, u64)> = Vec::new();
    let mut word = first;
    while word <= last {
        let old_desc = read_u64(vm.ram, page + word).unwrap_or(0);
        let mut bytes = old_desc.to_le_bytes();
        for (k, byte) in bytes.iter_mut().enumerate() {
            let addr = page + word + k as u64;
            if addr >= at && addr < at + len {
                if let Some(b) = new.get((addr - at) as usize) {
                    *byte = *b;
                }
            }
        }
        let new_desc = u64::from_le_bytes(bytes);
        if new_desc != old_desc {
            changes.push(((word / 8) as usize, old_desc, new_desc));
        }
        word += 8;
    }
    let mut dropped = None;
    let mut updates: Vec<Update> = Vec::new();
    if integrity.locked() {
        for &(index, old_desc, new_desc) in &changes {
            match s1trace::check_update(table.level, old_desc, new_desc, &*tracer) {
                Ok(update) => updates.push(update),
                Err(refusal) => {
                    let what = match refusal {
                        Refusal::NewKernelCode { ipa, size } => {
                            alloc::format!(
                                "make {size:#x} bytes at IPA {ipa:#x} EL1-executable outside the locked code"
                            )
                        }
                        Refusal::WritableKernelCode { ipa, size } => {
                            alloc::format!("map locked kernel code ({size:#x} bytes at IPA {ipa:#x}) writable")
                        }
                    };
                    dropped = Some(alloc::format!(
                        "the table write at VA {va:#x} (ELR {:#x}; entry {index} of the level-{} table at IPA {:#x}) would {what}",
                        frame.elr,
                        table.level,
                        table.ipa
                    ));
                    break;
                }
            }
        }
    }
    if dropped.is_some() {
        changes.clear();
        updates.clear();
    }
    // One 64-bit store per descriptor, never byte by byte: other CPUs' table
    // walks read descriptors at any time. The barriers give the guest's
    // acquire and release orderings.
    // SAFETY: barriers only.
    unsafe { core::arch::asm!("dmb ish", options(nostack, preserves_flags)) };
    for &(index, _, new_desc) in &changes {
        // SAFETY: an aligned descriptor of a traced table page, inside the
        // VM's RAM (only such pages are traced), which the direct map
        // covers; the tracer's lock serializes every write the hypervisor
        // makes to a traced page, and the guest's own writes to it all
        // come here.
        unsafe { core::ptr::write_volatile(phys_to_virt(page + index as u64 * 8) as *mut u64, new_desc) };
    }
    // SAFETY: as above.
    unsafe { core::arch::asm!("dmb ish", options(nostack, preserves_flags)) };
    for update in updates {
        tracer.apply(stage2, update);
    }
    let mut relinked = false;
    for (index, old_desc, new_desc) in changes {
        let effect = s1trace::write(&table, index, old_desc, new_desc);
        if let Some(record) = effect.record {
            tracer.log.push(record);
        }
        if let Some(child) = effect.linked {
            tracer.follow(stage2, vm.ram, child, s1trace::ENTRIES);
            relinked = true;
        }
        if let Some(child) = effect.unlinked {
            tracer.let_go(integrity, stage2, vm.ram, child);
            relinked = true;
        }
    }
    if relinked {
        stage2.flush();
    }
    for (reg, value) in outcome.writes.iter().flatten() {
        if let Some(x) = frame.x.get_mut(usize::from(*reg)) {
            *x = *value;
        }
    }
    if let Some((reg, value)) = outcome.writeback {
        match frame.x.get_mut(usize::from(reg)) {
            Some(x) => *x = value,
            None => set_guest_sp(frame.spsr, value),
        }
    }
    Ok(dropped)
}

/// `DC ZVA`'s block size (`DCZID_EL0.BS`: log2 of words).
fn zva_block() -> usize {
    let dczid: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    4usize << (dczid & 0xf)
}

/// The stack pointer of the guest's EL that trapped (`SP_EL0` or `SP_EL1`).
fn guest_sp(spsr: u64) -> u64 {
    let sp: u64;
    if spsr & 1 != 0 {
        // SAFETY: reading the guest's banked stack pointer has no side
        // effects.
        unsafe { core::arch::asm!("mrs {}, sp_el1", out(reg) sp, options(nomem, nostack)) };
    } else {
        // SAFETY: as above.
        unsafe { core::arch::asm!("mrs {}, sp_el0", out(reg) sp, options(nomem, nostack)) };
    }
    sp
}

fn set_guest_sp(spsr: u64, value: u64) {
    if spsr & 1 != 0 {
        // SAFETY: the guest's own stack pointer, as its instruction would
        // have written it.
        unsafe { core::arch::asm!("msr sp_el1, {}", in(reg) value, options(nomem, nostack)) };
    } else {
        // SAFETY: as above.
        unsafe { core::arch::asm!("msr sp_el0, {}", in(reg) value, options(nomem, nostack)) };
    }
}

// ---------------------------------------------------------------------------
// Execute control

/// A stage-2 permission fault on a fetch of VM RAM with kernel integrity:
/// a change of tree (the emulation), a retry, or the guest's permission
/// fault. False if it is not this module's.
pub fn on_instruction_abort(frame: &mut TrapFrame, vm: &'static Vm, vcpu: &Vcpu, ipa: u64, far: u64) -> bool {
    let Some(integrity) = vm.integrity.as_ref() else { return false };
    let stage2 = vm.stage2.lock();
    let Some(class) = stage2.page_class(page_of(ipa)) else { return false };
    let mode = mode_of(frame.spsr);
    let verdict = match integrity.pages {
        Pages::Emulated => platform::mbec::on_exec_fault(class.exec, mode, vcpu.tree()),
        Pages::Xnx if class.exec.allows(mode) => Verdict::Retry,
        Pages::Xnx => Verdict::Fault,
    };
    match verdict {
        Verdict::Switch(tree) => {
            integrity.switches.fetch_add(1, Ordering::Relaxed);
            if tree == Tree::User && integrity.locked() {
                if let Some(vbar) = vector_in_user_memory(&stage2) {
                    drop(stage2);
                    crate::vm::power::stop_broken(
                        vm,
                        format_args!(
                            "kernel-integrity: VBAR_EL1 {vbar:#x} is in user-only memory after the lock: the next exception from user code would run it at EL1"
                        ),
                    );
                }
            }
            vcpu.set_tree(tree);
            let root = stage2.root(tree);
            // Every vCPU's entry into its kernel and return to user code
            // comes here: the VM's stage-2 lock is not held across the TLB
            // maintenance.
            drop(stage2);
            crate::mm::vmid::switch_root(root);
        }
        Verdict::Retry => {
            drop(stage2);
            crate::mm::vmid::flush_this_cpu();
        }
        Verdict::Fault => {
            drop(stage2);
            integrity.refused();
            let who = match mode {
                Mode::Kernel => "EL1",
                Mode::User => "EL0",
            };
            let what = match class.exec {
                Exec::KernelOnly => "kernel-only",
                Exec::UserOnly => "user-only",
                Exec::Neither => "not executable",
                Exec::Both => "executable",
            };
            log::warn!(
                "kernel-integrity: {}refused: {who} fetch at VA {far:#x} (IPA {ipa:#x}): the page is {what}",
                label(vm)
            );
            let esr = Esr::instruction_abort(origin_of(frame.spsr), FaultStatus::Permission { level: 3 });
            crate::vm::guest::inject_sync(frame, esr, far);
        }
    }
    true
}

/// Under the emulation, the user tree executes user-only pages at any EL
/// (`platform::mbec`'s second inexact case): a vector table there would
/// run at EL1. Checked whenever a locked VM's vCPU enters the user tree:
/// `VBAR_EL1`, if it lies in user-only memory.
fn vector_in_user_memory(stage2: &Stage2) -> Option<u64> {
    let vbar = sysregs::read(GuestReg::Vbar);
    let ipa = guest_ipa(vbar, Mode::Kernel)?;
    let class = stage2.page_class(page_of(ipa))?;
    (class.exec == Exec::UserOnly).then_some(vbar)
}

// ---------------------------------------------------------------------------
// The lock and the calls

/// The pages `TTBR1`'s traced tables map executable at EL1, inside the
/// VM's RAM, with how many leaves map each; `None` past the walk's bounds.
fn kernel_code(vm: &Vm, tracer: &Tracer, vcpu: usize) -> Option<BTreeMap<u64, u32>> {
    let mut walk = CodeWalk {
        ram: vm.ram,
        tracer,
        visited: alloc::collections::BTreeSet::new(),
        uses: BTreeMap::new(),
        budget: MAX_CODE_MAPPINGS,
    };
    let (root, va_bits) = tracer.space_of(vcpu)?;
    let (table, entries) = root_table(root, va_bits)?;
    walk.table(table, entries)?;
    Some(walk.uses)
}

/// The lock's walk of the traced tables, each once, honouring `PXNTable`.
struct CodeWalk<'a> {
    ram: MemRegion,
    tracer: &'a Tracer,
    visited: alloc::collections::BTreeSet<u64>,
    uses: BTreeMap<u64, u32>,
    /// Page mappings it may still visit.
    budget: u64,
}

impl CodeWalk<'_> {
    fn table(&mut self, table: Table, entries: usize) -> Option<()> {
        if !self.tracer.tables.contains_key(&table.ipa) || !self.visited.insert(table.ipa) {
            return Some(());
        }
        for index in 0..entries {
            let Some(raw) = read_u64(self.ram, table.ipa + index as u64 * 8) else { continue };
            match Descriptor::decode(table.level, raw) {
                Descriptor::Table { ipa } if raw & PXN_TABLE == 0 => {
                    if let Some(child) = table.child(index, ipa) {
                        self.table(child, s1trace::ENTRIES)?;
                    }
                }
                Descriptor::Leaf { ipa, size, perms } if perms.el1_exec => {
                    // Only the part in the VM's RAM is code it can lock.
                    let first = ipa.max(self.ram.base);
                    let end = ipa.saturating_add(size).min(self.ram.end());
                    for page in (first..end).step_by(PAGE as usize) {
                        self.budget = self.budget.checked_sub(1)?;
                        *self.uses.entry(page).or_insert(0) += 1;
                        if self.uses.len() > MAX_LOCKED_PAGES {
                            return None;
                        }
                    }
                }
                _ => {}
            }
        }
        Some(())
    }
}

/// `INTEGRITY LOCK`: the kernel's code is what it maps executable at EL1
/// now. Returns its pages.
fn lock(vm: &Vm, integrity: &Integrity, vcpu: usize) -> Result<u64, HvError> {
    let mut tracer = integrity.tracer.lock();
    if integrity.locked() {
        return Ok(integrity.locked_pages.load(Ordering::Relaxed));
    }
    if tracer.space_of(vcpu).is_none() {
        drop(tracer);
        translation_changed(vm, vcpu);
        tracer = integrity.tracer.lock();
    }
    let Some(uses) = kernel_code(vm, &tracer, vcpu) else {
        log::warn!(
            "kernel-integrity: {}lock refused: TTBR1's tables map more than {MAX_LOCKED_PAGES} pages (or {MAX_CODE_MAPPINGS} page mappings) EL1-executable",
            label(vm)
        );
        return Err(HvError::InvalidArgument);
    };
    if uses.is_empty() {
        log::warn!(
            "kernel-integrity: {}lock refused: TTBR1's tables map no EL1-executable page of the VM's RAM",
            label(vm)
        );
        return Err(HvError::InvalidArgument);
    }
    let code: Vec<u64> = uses.keys().copied().collect();
    let mut stage2 = vm.stage2.lock();
    let ram = vm.ram;
    // Two passes, each a tight loop: every page user-only (keeping whether
    // it is writable: the traced tables stay read-only), then the code
    // kernel-only and read-only. One TLB flush.
    let mut result = stage2.set_exec_unflushed(ram.base, ram.size / PAGE, Exec::UserOnly);
    let kernel = PageClass { exec: Exec::KernelOnly, writable: false };
    for &page in &code {
        result = result.and_then(|()| stage2.set_class_unflushed(page, kernel));
    }
    stage2.flush();
    if let Err(e) = result {
        log::error!("kernel-integrity: {}lock failed: {e}", label(vm));
        return Err(HvError::InvalidArgument);
    }
    tracer.code = uses;
    integrity.locked_pages.store(code.len() as u64, Ordering::Relaxed);
    integrity.locked.store(true, Ordering::Release);
    let first = code.first().copied().unwrap_or(0);
    let last = code.last().copied().unwrap_or(0);
    log::info!(
        "kernel-integrity: {}locked: {} pages of kernel code (IPA {first:#x}..{:#x}); everything else is user-only",
        label(vm),
        code.len(),
        last + PAGE
    );
    Ok(code.len() as u64)
}

/// Whether the hypervisor may write `len` bytes of `vm`'s RAM at `ipa` on
/// the guest's behalf (a hypercall's output, a used ring): not into a page
/// stage 2 keeps read-only for integrity (a traced table, locked code),
/// which the guest itself could not write either.
pub fn hypervisor_may_write(vm: &Vm, ipa: u64, len: u64) -> bool {
    if vm.integrity.is_none() || len == 0 {
        return true;
    }
    let stage2 = vm.stage2.lock();
    let last = ipa.saturating_add(len - 1);
    pages(ipa, last).all(|page| stage2.page_class(page).is_none_or(|class| class.writable))
}

/// `vm` starts afresh (a restart, or a start by a manager; none of its
/// vCPUs runs): its new kernel gets no lock, no traced table and no log of
/// the last one's, and every page back as it was at the VM's creation.
pub fn reset(vm: &Vm) {
    let Some(integrity) = vm.integrity.as_ref() else { return };
    let mut tracer = integrity.tracer.lock();
    tracer.tables.clear();
    tracer.spaces.clear();
    tracer.roots.clear();
    tracer.code.clear();
    tracer.log.clear();
    tracer.full = false;
    tracer.refused_granule = false;
    integrity.locked.store(false, Ordering::Release);
    integrity.locked_pages.store(0, Ordering::Relaxed);
    integrity.refusals.store(0, Ordering::Relaxed);
    integrity.switches.store(0, Ordering::Relaxed);
    let shared = PageClass { exec: Exec::Both, writable: true };
    if let Err(e) = vm.stage2.lock().set_classes(vm.ram.base, vm.ram.size / PAGE, |_| shared) {
        log::error!("kernel-integrity: {}reset: {e}", label(vm));
    }
}

/// `INTEGRITY`, for the calling VM.
pub fn call(op: IntegrityOp) -> Result<[u64; 3], HvError> {
    let (vm, vcpu) = crate::vm::current().ok_or(HvError::NotSupported)?;
    let integrity = vm.integrity.as_ref().ok_or(HvError::NotSupported)?;
    match op {
        IntegrityOp::Status => {
            let status = IntegrityStatus {
                locked: integrity.locked(),
                xnx: integrity.pages == Pages::Xnx,
                tracing: !integrity.tracer.lock().spaces.is_empty(),
            };
            Ok([
                status.bits(),
                integrity.locked_pages.load(Ordering::Relaxed),
                integrity.refusals.load(Ordering::Relaxed),
            ])
        }
        IntegrityOp::Lock => lock(vm, integrity, vcpu.index).map(|pages| [pages, 0, 0]),
        IntegrityOp::SetExec { ipa, pages, exec } => {
            if integrity.locked() {
                return Err(HvError::PermissionDenied);
            }
            let tracer = integrity.tracer.lock();
            let mut stage2 = vm.stage2.lock();
            let traced = &tracer.tables;
            stage2
                .set_classes(ipa, pages, |page| PageClass { exec, writable: !traced.contains_key(&page) })
                .map_err(|_| HvError::InvalidArgument)?;
            Ok([0, 0, 0])
        }
    }
}

/// `TRACE`, for the calling VM: a record, the counts, or a clear.
pub fn trace(index: u64) -> Result<platform::hypercall::Reply, HvError> {
    use platform::hypercall::Reply;
    let (vm, _) = crate::vm::current().ok_or(HvError::NotSupported)?;
    let integrity = vm.integrity.as_ref().ok_or(HvError::NotSupported)?;
    let mut tracer = integrity.tracer.lock();
    match index {
        TRACE_COUNTS => {
            Ok(Reply::ok(tracer.log.records().len() as u64, tracer.log.dropped(), tracer.log.capacity() as u64))
        }
        TRACE_CLEAR => {
            let held = tracer.log.records().len() as u64;
            tracer.log.clear();
            Ok(Reply::ok(held, 0, 0))
        }
        _ => {
            let record: Record = usize::try_from(index)
                .ok()
                .and_then(|i| tracer.log.records().get(i).copied())
                .ok_or(HvError::InvalidArgument)?;
            Ok(Reply::trace(TraceReply(record)))
        }
    }
}

/// The power-off summary: a line per VM with kernel integrity.
pub fn report_all() {
    for vm in crate::vm::all() {
        report(vm);
    }
}

/// The power-off summary line of a VM with kernel integrity.
fn report(vm: &Vm) {
    let Some(integrity) = vm.integrity.as_ref() else { return };
    let tracer = integrity.tracer.lock();
    log::info!(
        "kernel-integrity: {}{}, {} ({} code pages), {} tables traced, {} table writes recorded ({} dropped), {} refused, {} tree switches",
        label(vm),
        if integrity.locked() { "locked" } else { "not locked" },
        match integrity.pages {
            Pages::Xnx => "FEAT_XNX",
            Pages::Emulated => "emulated execute control",
        },
        integrity.locked_pages.load(Ordering::Relaxed),
        tracer.tables.len(),
        tracer.log.records().len(),
        tracer.log.dropped(),
        integrity.refusals.load(Ordering::Relaxed),
        integrity.switches.load(Ordering::Relaxed),
    );
}

/// The trees a vCPU may be in, for its state.
pub const START_TREE: Tree = Tree::Shared;
