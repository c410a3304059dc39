//! `trace-sequence`: the hypervisor's trace of the guest's writes to its
//! own stage-1 tables, against records computed here. This module owns a
//! `TTBR1_EL1` map built by hand (so that every table's IPA, level and
//! place are known) and the sequence of writes made to it, each with the
//! instruction named and the TLB maintenance the architecture asks after
//! it.
//!
//! The map (39-bit range at [`KERNEL_BASE`], a level-1 root):
//!
//! ```text
//! root[0] -> L2          (KERNEL_BASE .. +1 GiB)
//!   L2[0] -> L3A         (+0 .. +2 MiB)    L3A[0] -> data page 0, L3A[1] -> data page 1
//!   L2[1]    (empty)     (+2 .. +4 MiB)    later: -> L3B, built aside with L3B[0] -> data page 3
//!   L2[2] -> L3C         (+4 .. +6 MiB)    L3C[0] -> data page 3
//! ```
//!
//! The writes, after `TRACE_CLEAR` (`+` gives a record, `.` none): `+` STR
//! of a new page descriptor; `+` STR that invalidates it; `.` the same
//! value stored again (twice: an invalid entry and a valid one); `+` a
//! 32-bit STR of a descriptor's upper half (the record has the whole old
//! and new descriptors); `+ +` STP of two descriptors; `+` an LDXR/STXR
//! update; with LSE, `+` CAS that succeeds, `.` CAS that fails, `+` SWP,
//! `+` LDSET; `+` a level-1 block in the root; `.` a store to L3B, not yet
//! linked; `+` L3B linked into L2; `+` an entry of L3B (it is traced now);
//! `+` an entry of L3C; `+` L3C unlinked; `.` an entry of L3C (no longer
//! traced). Every mapping made is then loaded through (the data is the
//! page's), every mapping removed faults at its level: the emulated writes
//! took effect. Then `TRACE_COUNTS` must say exactly as many records as
//! the `+`, none dropped, and each record must be the one computed (table
//! IPA, level, index, old, new, first and last VA).
//!
//! The run prints `trace-sequence: N records, lse=0|1` (the scenarios
//! check that `-cpu max` took the LSE writes).

use super::{
    expect_load, expect_unmapped, gib_of, has_lse, identity, mmu_off, mmu_on, page_descriptor, status_or_skip,
    table_descriptor, tlbi_all, tlbi_va, trace_clear, trace_counts, trace_record, with_tables, IntegrityFailure,
    KERNEL_BASE, PAGE,
};
use crate::checks::{expect_eq, Failure};
use crate::exceptions::expect_sync;
use crate::Env;
use platform::paging::{Attributes, Table};
use platform::println;
use platform::s1trace::{entry_span, Record};

/// The tables of the map, by their place in [`Memory::tables`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum T {
    Root = 0,
    L2 = 1,
    L3a = 2,
    L3b = 3,
    L3c = 4,
}

const TABLES: usize = 5;
const DATA_PAGES: usize = 4;
const MIB2: u64 = 2 << 20;

/// Software-use bits of a stage-1 leaf (bits 58:55): changing one changes
/// the descriptor, not the translation.
const SW55: u64 = 1 << 55;
const SW56: u64 = 1 << 56;

/// The tables and the pages they map: page-aligned, in `.bss`.
struct Memory {
    tables: [Table; TABLES],
    data: [Table; DATA_PAGES],
}

static MEMORY: spin::Mutex<Memory> =
    spin::Mutex::new(Memory { tables: [const { Table::ZERO }; TABLES], data: [const { Table::ZERO }; DATA_PAGES] });

/// What data page `k`'s word `i` holds.
const fn pattern(k: usize, i: usize) -> u64 {
    0xda7a_0000_0000_0000 | ((k as u64) << 32) | i as u64
}

/// Where everything is (IPAs: flat, with the MMU off and through the
/// identity map).
#[derive(Clone, Copy)]
struct Layout {
    tables: u64,
    data: u64,
}

impl Layout {
    fn table(&self, t: T) -> u64 {
        self.tables + t as u64 * PAGE
    }

    /// The address of entry `index` of `t`.
    fn entry(&self, t: T, index: u64) -> u64 {
        self.table(t) + index * 8
    }

    fn data(&self, k: usize) -> u64 {
        self.data + k as u64 * PAGE
    }

    /// A page descriptor for data page `k`: EL1 read-write, never
    /// executable.
    fn page(&self, k: usize) -> u64 {
        page_descriptor(self.data(k), Attributes::DATA)
    }

    /// The level of `t` and the first VA its entry 0 translates.
    const fn place(t: T) -> (u8, u64) {
        match t {
            T::Root => (1, KERNEL_BASE),
            T::L2 => (2, KERNEL_BASE),
            T::L3a => (3, KERNEL_BASE),
            T::L3b => (3, KERNEL_BASE + MIB2),
            T::L3c => (3, KERNEL_BASE + 2 * MIB2),
        }
    }

    /// The VA entry `index` of `t` translates first.
    fn va(t: T, index: u64) -> u64 {
        let (level, base) = Self::place(t);
        base + index * entry_span(level)
    }

    /// The record a write of `new` over `old` in entry `index` of `t` must
    /// give.
    fn record(&self, t: T, index: u64, old: u64, new: u64) -> Record {
        let (level, _) = Self::place(t);
        let first_va = Self::va(t, index);
        Record {
            table: self.table(t),
            level,
            index: index as u16,
            old,
            new,
            first_va,
            last_va: first_va + (entry_span(level) - 1),
        }
    }
}

/// Room for the records the sequence gives.
const MAX_RECORDS: usize = 16;

/// The records the sequence must give, in order.
struct Expected {
    records: [Record; MAX_RECORDS],
    len: usize,
    /// Bit `i`: records `i` and `i + 1` are an `STP`'s, which may come in
    /// either order (two single-copy atomic stores, in no architected
    /// order).
    pairs: u32,
}

impl Expected {
    fn push(&mut self, record: Record) -> Result<(), Failure> {
        let slot = self.records.get_mut(self.len).ok_or(Failure::Missing("more expected records than room"))?;
        *slot = record;
        self.len += 1;
        Ok(())
    }

    fn push_pair(&mut self, first: Record, second: Record) -> Result<(), Failure> {
        self.pairs |= 1 << self.len;
        self.push(first)?;
        self.push(second)
    }

    fn may_swap(&self, index: usize) -> bool {
        self.pairs & (1 << index) != 0
    }
}

/// Reads entry `at` (a plain load: reads are never trapped).
fn read(at: u64) -> u64 {
    // SAFETY: an entry of this module's tables.
    unsafe { core::ptr::read_volatile(at as *const u64) }
}

/// Runs the one write instruction `f` makes; a fault is the step's failure.
fn write(step: &'static str, f: impl FnOnce()) -> Result<(), Failure> {
    match expect_sync(f) {
        None => Ok(()),
        Some(caught) => Err(Failure::Exception { what: step, caught }),
    }
}

/// `STR Xt` of `value` to `at`.
fn str64(step: &'static str, at: u64, value: u64) -> Result<(), Failure> {
    // SAFETY: `at` is an entry of this module's tables (a traced page: the
    // hypervisor emulates the store).
    write(step, || unsafe { core::arch::asm!("str {v}, [{a}]", a = in(reg) at, v = in(reg) value, options(nostack)) })
}

/// `STR Wt` of `value` to `at`.
fn str32(step: &'static str, at: u64, value: u32) -> Result<(), Failure> {
    // SAFETY: as for `str64`, half an entry.
    write(step, || unsafe { core::arch::asm!("str {v:w}, [{a}]", a = in(reg) at, v = in(reg) value, options(nostack)) })
}

/// `STP Xt1, Xt2` of `first`, `second` to `at`.
fn stp(step: &'static str, at: u64, first: u64, second: u64) -> Result<(), Failure> {
    // SAFETY: as for `str64`, two entries.
    write(step, || unsafe {
        core::arch::asm!("stp {a}, {b}, [{p}]", p = in(reg) at, a = in(reg) first, b = in(reg) second, options(nostack))
    })
}

/// How many times the LDXR/STXR update may fail before the check gives up.
const EXCLUSIVE_TRIES: u32 = 16;

/// `LDXR`, then `STXR` of `new`, retried while the store-exclusive fails:
/// the value the last `LDXR` read.
fn exclusive(step: &'static str, at: u64, new: u64) -> Result<u64, Failure> {
    for _ in 0..EXCLUSIVE_TRIES {
        let (mut old, mut failed) = (0u64, 1u64);
        // SAFETY: as for `str64`; one load-exclusive and one
        // store-exclusive to the entry, nothing between them.
        write(step, || unsafe {
            core::arch::asm!(
                "ldxr {old}, [{a}]",
                "stxr {failed:w}, {new}, [{a}]",
                a = in(reg) at,
                new = in(reg) new,
                old = out(reg) old,
                failed = out(reg) failed,
                options(nostack),
            )
        })?;
        if failed == 0 {
            return Ok(old);
        }
    }
    Err(Failure::Missing("LDXR/STXR of a traced entry: the store-exclusive failed 16 times in a row"))
}

/// `CAS Xs, Xt`: `new` if the entry holds `compare`; returns what it held.
fn cas(step: &'static str, at: u64, compare: u64, new: u64) -> Result<u64, Failure> {
    let mut old = compare;
    // SAFETY: as for `str64`; the caller checked the CPU has LSE.
    write(step, || unsafe {
        core::arch::asm!(
            ".arch_extension lse",
            "cas {s}, {t}, [{a}]",
            a = in(reg) at,
            s = inout(reg) old,
            t = in(reg) new,
            options(nostack),
        )
    })?;
    Ok(old)
}

/// `SWP Xs, Xt`: stores `new`, returns what the entry held.
fn swp(step: &'static str, at: u64, new: u64) -> Result<u64, Failure> {
    let mut old = 0;
    // SAFETY: as for `cas`.
    write(step, || unsafe {
        core::arch::asm!(
            ".arch_extension lse",
            "swp {s}, {t}, [{a}]",
            a = in(reg) at,
            s = in(reg) new,
            t = out(reg) old,
            options(nostack),
        )
    })?;
    Ok(old)
}

/// `LDSET Xs, Xt`: sets `bits` in the entry, returns what it held.
fn ldset(step: &'static str, at: u64, bits: u64) -> Result<u64, Failure> {
    let mut old = 0;
    // SAFETY: as for `cas`.
    write(step, || unsafe {
        core::arch::asm!(
            ".arch_extension lse",
            "ldset {s}, {t}, [{a}]",
            a = in(reg) at,
            s = in(reg) bits,
            t = out(reg) old,
            options(nostack),
        )
    })?;
    Ok(old)
}

/// Builds the map (module doc) with the MMU off, into `memory`.
fn build(memory: &mut Memory, at: &Layout) {
    for table in memory.tables.iter_mut() {
        *table = Table::ZERO;
    }
    for (k, page) in memory.data.iter_mut().enumerate() {
        for (i, word) in page.0.iter_mut().enumerate() {
            *word = pattern(k, i);
        }
    }
    let tables = &mut memory.tables;
    tables[T::Root as usize].0[0] = table_descriptor(at.table(T::L2));
    tables[T::L2 as usize].0[0] = table_descriptor(at.table(T::L3a));
    tables[T::L2 as usize].0[2] = table_descriptor(at.table(T::L3c));
    tables[T::L3a as usize].0[0] = at.page(0);
    tables[T::L3a as usize].0[1] = at.page(1);
    tables[T::L3c as usize].0[0] = at.page(3);
    super::clean_invalidate(at.tables, TABLES as u64 * PAGE);
    super::clean_invalidate(at.data, DATA_PAGES as u64 * PAGE);
}

/// The load of data page `k`'s first word through `va`.
fn expect_data(step: &'static str, va: u64, k: usize) -> Result<(), Failure> {
    expect_load(step, va, pattern(k, 0))
}

/// The writes, checks and loads of the module doc; the records expected.
fn sequence(at: &Layout, lse: bool) -> Result<Expected, Failure> {
    let mut expected = Expected { records: [Record::default(); MAX_RECORDS], len: 0, pairs: 0 };
    let e = |t, index| at.entry(t, index);
    let va = Layout::va;

    // The map as built.
    expect_data("a load through the TTBR1 map as built (L3A[0])", va(T::L3a, 0), 0)?;
    expect_data("a load through the TTBR1 map as built (L3A[1])", va(T::L3a, 1), 1)?;
    expect_data("a load through the TTBR1 map as built (L3C[0])", va(T::L3c, 0), 3)?;

    // STR of a new page descriptor, then STR that invalidates it.
    str64("STR of a new page descriptor to L3A[2]", e(T::L3a, 2), at.page(2))?;
    expected.push(at.record(T::L3a, 2, 0, at.page(2)))?;
    tlbi_va(va(T::L3a, 2));
    expect_data("a load through L3A[2] after the STR", va(T::L3a, 2), 2)?;
    str64("STR of 0 to L3A[2]", e(T::L3a, 2), 0)?;
    expected.push(at.record(T::L3a, 2, at.page(2), 0))?;
    tlbi_va(va(T::L3a, 2));
    expect_unmapped("a load through L3A[2] after it was invalidated", va(T::L3a, 2), 3)?;

    // The same values again: no record.
    str64("STR of 0 to L3A[2] again", e(T::L3a, 2), 0)?;
    str64("STR of L3A[1]'s own value to it", e(T::L3a, 1), at.page(1))?;
    tlbi_va(va(T::L3a, 1));
    expect_data("a load through L3A[1] after it was rewritten", va(T::L3a, 1), 1)?;

    // A 32-bit STR of the upper half: a software bit.
    let new = at.page(1) | SW55;
    str32("STR Wt of L3A[1]'s upper half", e(T::L3a, 1) + 4, (new >> 32) as u32)?;
    expected.push(at.record(T::L3a, 1, at.page(1), new))?;
    tlbi_va(va(T::L3a, 1));
    expect_eq("L3A[1] after the 32-bit STR of its upper half", new, read(e(T::L3a, 1)))?;
    expect_data("a load through L3A[1] after the 32-bit STR", va(T::L3a, 1), 1)?;

    // STP of two descriptors.
    stp("STP of two page descriptors to L3A[4], L3A[5]", e(T::L3a, 4), at.page(2), at.page(3))?;
    expected.push_pair(at.record(T::L3a, 4, 0, at.page(2)), at.record(T::L3a, 5, 0, at.page(3)))?;
    tlbi_va(va(T::L3a, 4));
    tlbi_va(va(T::L3a, 5));
    expect_data("a load through L3A[4] after the STP", va(T::L3a, 4), 2)?;
    expect_data("a load through L3A[5] after the STP", va(T::L3a, 5), 3)?;

    // LDXR/STXR.
    let old = exclusive("LDXR/STXR of a page descriptor to L3A[6]", e(T::L3a, 6), at.page(0))?;
    expect_eq("what LDXR read of L3A[6]", 0, old)?;
    expected.push(at.record(T::L3a, 6, 0, at.page(0)))?;
    tlbi_va(va(T::L3a, 6));
    expect_data("a load through L3A[6] after the LDXR/STXR", va(T::L3a, 6), 0)?;

    if lse {
        let old = cas("CAS (succeeding) to L3A[7]", e(T::L3a, 7), 0, at.page(1))?;
        expect_eq("what CAS returned (L3A[7] before it: 0)", 0, old)?;
        expected.push(at.record(T::L3a, 7, 0, at.page(1)))?;
        tlbi_va(va(T::L3a, 7));
        expect_data("a load through L3A[7] after the CAS", va(T::L3a, 7), 1)?;
        let old = cas("CAS (failing) to L3A[7]", e(T::L3a, 7), 0, at.page(2))?;
        expect_eq("what the failing CAS returned (L3A[7] as it is)", at.page(1), old)?;
        expect_eq("L3A[7] after the failing CAS (unchanged)", at.page(1), read(e(T::L3a, 7)))?;
        let old = swp("SWP to L3A[8]", e(T::L3a, 8), at.page(2))?;
        expect_eq("what SWP returned (L3A[8] before it: 0)", 0, old)?;
        expected.push(at.record(T::L3a, 8, 0, at.page(2)))?;
        tlbi_va(va(T::L3a, 8));
        expect_data("a load through L3A[8] after the SWP", va(T::L3a, 8), 2)?;
        let old = ldset("LDSET of a software bit in L3A[8]", e(T::L3a, 8), SW56)?;
        expect_eq("what LDSET returned (L3A[8] before it)", at.page(2), old)?;
        expected.push(at.record(T::L3a, 8, at.page(2), at.page(2) | SW56))?;
        tlbi_va(va(T::L3a, 8));
        expect_eq("L3A[8] after the LDSET", at.page(2) | SW56, read(e(T::L3a, 8)))?;
        expect_data("a load through L3A[8] after the LDSET", va(T::L3a, 8), 2)?;
    }

    // A level-1 block in the root: read-only data, the gigabyte of RAM.
    let gib = gib_of(at.data(0));
    let block = gib | platform::s1trace::bits::VALID | super::leaf_bits(Attributes::RODATA);
    str64("STR of a 1 GiB block descriptor to root[1]", e(T::Root, 1), block)?;
    expected.push(at.record(T::Root, 1, 0, block))?;
    tlbi_va(va(T::Root, 1) + (at.data(0) - gib));
    expect_data("a load through the block of root[1]", va(T::Root, 1) + (at.data(0) - gib), 0)?;

    // A table written before it is linked is not traced yet (a plain
    // store); linked, it is: its next write gives a record.
    str64("STR to L3B[0], before L3B is linked", e(T::L3b, 0), at.page(3))?;
    str64("STR of a table descriptor (L3B) to L2[1]", e(T::L2, 1), table_descriptor(at.table(T::L3b)))?;
    expected.push(at.record(T::L2, 1, 0, table_descriptor(at.table(T::L3b))))?;
    tlbi_all();
    expect_data("a load through L3B[0] once L3B is linked", va(T::L3b, 0), 3)?;
    str64("STR to L3B[1], L3B linked", e(T::L3b, 1), at.page(1))?;
    expected.push(at.record(T::L3b, 1, 0, at.page(1)))?;
    tlbi_va(va(T::L3b, 1));
    expect_data("a load through L3B[1]", va(T::L3b, 1), 1)?;

    // L3C is traced from the start; unlinked, it is not.
    str64("STR to L3C[1], L3C linked", e(T::L3c, 1), at.page(0))?;
    expected.push(at.record(T::L3c, 1, 0, at.page(0)))?;
    tlbi_va(va(T::L3c, 1));
    expect_data("a load through L3C[1]", va(T::L3c, 1), 0)?;
    str64("STR of 0 to L2[2] (unlinking L3C)", e(T::L2, 2), 0)?;
    expected.push(at.record(T::L2, 2, table_descriptor(at.table(T::L3c)), 0))?;
    tlbi_all();
    expect_unmapped("a load through L3C[0] once L3C is unlinked", va(T::L3c, 0), 2)?;
    str64("STR to L3C[3], L3C unlinked", e(T::L3c, 3), at.page(2))?;
    expect_eq("L3C[3] after a store to the unlinked table", at.page(2), read(e(T::L3c, 3)))?;
    Ok(expected)
}

/// The log against `expected`: as many records, none dropped, each equal
/// (an `STP`'s two in either order).
fn compare(expected: &Expected) -> Result<(), Failure> {
    let counts = trace_counts()?;
    if counts.capacity < expected.len as u64 {
        let what = "TRACE_COUNTS x3 (capacity: at least this sequence's records)";
        return Err(Failure::Mismatch { what, expected: expected.len as u64, got: counts.capacity });
    }
    expect_eq("TRACE_COUNTS x2 (records dropped)", 0, counts.dropped)?;
    expect_eq("TRACE_COUNTS x1 (records kept: one per changed descriptor)", expected.len as u64, counts.kept)?;
    let mut got = [Record::default(); MAX_RECORDS];
    for (index, slot) in got.iter_mut().enumerate().take(expected.len) {
        *slot = trace_record(index as u64)?;
    }
    let mut index = 0;
    while index < expected.len {
        let swapped = expected.may_swap(index)
            && got[index] == expected.records[index + 1]
            && got[index + 1] == expected.records[index];
        if swapped {
            index += 2;
            continue;
        }
        if got[index] != expected.records[index] {
            let (want, have) = (expected.records[index], got[index]);
            return Err(IntegrityFailure::Record { index: index as u64, expected: want, got: have }.into());
        }
        index += 1;
    }
    Ok(())
}

pub fn trace_sequence(env: &Env) -> Result<(), Failure> {
    let status = status_or_skip()?;
    if status.flags.locked {
        return Err(Failure::Missing("the VM's kernel is locked already: its tables cannot be changed at will"));
    }
    let lse = has_lse();
    let mut memory = MEMORY.lock();
    let at = Layout { tables: memory.tables.as_ptr() as u64, data: memory.data.as_ptr() as u64 };
    build(&mut memory, &at);
    let result = with_tables(
        |pool| identity(env, pool),
        |ttbr0| {
            crate::exceptions::without_irqs(|| {
                let saved = mmu_on(ttbr0, at.table(T::Root));
                let result = run(&at, lse);
                mmu_off(&saved);
                result
            })
        },
    );
    let records = result??;
    println!("trace-sequence: {records} records, lse={}", u8::from(lse));
    Ok(())
}

/// With the MMU on over the map: clear the log, make the writes, compare.
fn run(at: &Layout, lse: bool) -> Result<usize, Failure> {
    trace_clear()?;
    let counts = trace_counts()?;
    expect_eq("TRACE_COUNTS x1 after TRACE_CLEAR (kept)", 0, counts.kept)?;
    expect_eq("TRACE_COUNTS x2 after TRACE_CLEAR (dropped)", 0, counts.dropped)?;
    let expected = sequence(at, lse)?;
    compare(&expected)?;
    let held = trace_clear()?;
    expect_eq("TRACE_CLEAR x1 (the records it held)", expected.len as u64, held)?;
    expect_eq("TRACE_COUNTS x1 after the last TRACE_CLEAR", 0, trace_counts()?.kept)?;
    Ok(expected.len)
}
