//! `integrity-lock`: the lock point of kernel integrity, from the guest.
//! This module owns the check's kernel map: a `TTBR1_EL1` map of the stub's
//! own image at [`KERNEL_BASE`], its `.text` (`__image_base` ..
//! `__exec_end`, the linker script's bounds) read-only and EL1-executable,
//! its read-only data and its writable data never executable. With the MMU
//! on over it, `INTEGRITY LOCK` must lock exactly the `.text` pages; then
//! two traced writes the policy forbids are dropped (the `STR` completes
//! without an exception and the descriptor keeps its old value):
//!
//! - a traced write making a data page EL1-executable;
//! - a traced write making a `.text` page writable;
//!
//! and a plain write to `.text` (of the value already there, so that a
//! hypervisor that lets it through changes nothing) is refused with the
//! data abort a read-only page gives (EC 0x25, IL = 1, DFSC 0x0F, WnR = 1,
//! FAR the VA written, ELR the `STR`), the memory left as it was.
//!
//! A traced write that stays within the policy (unmapping a data page,
//! mapping it again as data) is made. `STATUS` must then say locked, the
//! `.text` pages and 3 refusals; `SET_EXEC` must be refused; a second
//! `LOCK` must answer the same count. The check prints
//! `integrity-lock: locked N pages, 3 refusals` (the scenarios count the
//! hypervisor's `refused` lines before it), and last, an EL1 call of a
//! `RET` in a data page, which the lock made user-only, must fault.
//!
//! The lock cannot be undone, so the check runs only alone
//! ([`NOT_ALONE`]), and afterwards the stub runs on as a locked kernel
//! does: with its MMU on as the check left it (no more `TTBR1_EL1`,
//! `TCR_EL1` or `SCTLR_EL1` writes), executing only `.text` at EL1, and
//! nothing at EL0 (the EL0 code is in `.text`, kernel-only now).

use super::{
    check_abort, check_refusal, code, expect_load, identity, integrity, leaf_entry, map, mmu_off, mmu_on, new_root,
    page_descriptor, set_exec, status, status_or_skip, tlbi_va, with_tables, IntegrityFailure, AP_RO, CODE, DATA,
    KERNEL_BASE, PAGE, PERMISSION_L3, RODATA,
};
use crate::checks::{expect_eq, reply_ok, reply_status, Failure};
use crate::exceptions::{expect_sync, probe_call, Caught};
use crate::Env;
use platform::esr::ExceptionClass;
use platform::hypercall::{HvError, IntegrityOp};
use platform::paging::StaticPool;
use platform::println;

/// The check's name (`main.rs` runs it only alone).
pub const CHECK_NAME: &str = "integrity-lock";
/// Why it is skipped in a larger plan.
pub const NOT_ALONE: &str =
    "runs only as the one check of its run (stub=only=integrity-lock): the lock cannot be undone";

extern "C" {
    static __image_base: u8;
    static __exec_end: u8;
    static __data_start: u8;
    static __image_end: u8;
}

/// The stub's image where it runs (flat addresses: IPAs).
#[derive(Clone, Copy)]
struct Image {
    base: u64,
    exec_end: u64,
    data_start: u64,
    end: u64,
}

impl Image {
    fn here() -> Self {
        let here = |symbol: *const u8| symbol as u64;
        // Linker-defined symbols: only their addresses are taken
        // (PC-relative: where the image runs).
        Self {
            base: here(&raw const __image_base),
            exec_end: here(&raw const __exec_end),
            data_start: here(&raw const __data_start),
            end: here(&raw const __image_end),
        }
    }

    fn text_pages(&self) -> u64 {
        (self.exec_end - self.base) / PAGE
    }

    /// The `TTBR1` VA of IPA `ipa` of the image.
    fn va(&self, ipa: u64) -> u64 {
        KERNEL_BASE + (ipa - self.base)
    }
}

/// The kernel map (module doc): its root.
fn kernel_map(pool: &mut StaticPool, image: &Image) -> Result<u64, Failure> {
    let root = new_root(pool)?;
    let sections = [
        (image.base, image.exec_end, CODE),
        (image.exec_end, image.data_start, RODATA),
        (image.data_start, image.end, DATA),
    ];
    for (start, end, attrs) in sections {
        map(pool, root, image.va(start), start, end - start, attrs)?;
    }
    Ok(root)
}

/// Reads a word (an entry of the stub's tables, or its own image).
fn read(at: u64) -> u64 {
    // SAFETY: a word of the stub's own RAM.
    unsafe { core::ptr::read_volatile(at as *const u64) }
}

/// One `STR Xt` of `value` to `at`: what it raised, and the `STR`'s
/// address.
fn store(at: u64, value: u64) -> (Option<Caught>, u64) {
    let mut insn = 0u64;
    let caught = expect_sync(|| {
        // SAFETY: `at` is an entry of the check's tables or a word of the
        // stub's `.text`, and `value` is what the caller means to write
        // there (the word's own value, for `.text`); the handler steps
        // over the store if it is refused.
        unsafe {
            core::arch::asm!(
                "adr {insn}, 2f",
                "2: str {v}, [{a}]",
                insn = out(reg) insn,
                a = in(reg) at,
                v = in(reg) value,
                options(nostack),
            );
        }
    });
    (caught, insn)
}

/// A store that the policy allows: made, no fault.
fn allowed(step: &'static str, at: u64, value: u64) -> Result<(), Failure> {
    if let (Some(caught), _) = store(at, value) {
        return Err(Failure::Exception { what: step, caught });
    }
    expect_eq(step, value, read(at))
}

/// A table write the policy drops: the store completes without an
/// exception, and `at` keeps its value.
fn dropped(step: &'static str, at: u64, value: u64) -> Result<(), Failure> {
    let before = read(at);
    if let (Some(caught), _) = store(at, value) {
        return Err(Failure::Exception { what: step, caught });
    }
    expect_eq("the descriptor after the dropped write (unchanged)", before, read(at))
}

/// A store that must be refused: the data abort, and `at` unchanged.
fn refused(step: &'static str, at: u64, value: u64) -> Result<(), Failure> {
    let before = read(at);
    let (caught, insn) = store(at, value);
    let caught = caught.ok_or(IntegrityFailure::NotRefused { step })?;
    check_refusal(step, caught, at, insn)?;
    expect_eq("the word after the refused write (unchanged)", before, read(at))
}

pub fn integrity_lock(env: &Env) -> Result<(), Failure> {
    let status_before = status_or_skip()?;
    if status_before.flags.locked {
        return Err(Failure::Missing("the VM's kernel was locked before this check ran"));
    }
    let image = Image::here();
    code::prepare();
    let built = |pool: &mut StaticPool| Ok((identity(env, pool)?, kernel_map(pool, &image)?));
    with_tables(built, |(ttbr0, ttbr1)| {
        // Masked for good: nothing after the lock takes an interrupt.
        crate::exceptions::mask_irqs();
        let saved = mmu_on(ttbr0, ttbr1);
        let locked = before_lock(&image).and_then(|()| integrity(IntegrityOp::Lock));
        match locked {
            Ok([0, pages, ..]) => after_lock(&image, ttbr1, pages),
            Ok(reply) => {
                mmu_off(&saved);
                reply_ok("INTEGRITY LOCK", reply).map(|_| ())
            }
            Err(failure) => {
                mmu_off(&saved);
                Err(failure)
            }
        }
    })?
}

/// The kernel map works: loads through it find the image.
fn before_lock(image: &Image) -> Result<(), Failure> {
    expect_load("a load of .text through TTBR1", image.va(image.base), read(image.base))?;
    expect_load("a load of .data through TTBR1", image.va(image.data_start), read(image.data_start))
}

/// Everything after a successful `LOCK` that answered `pages`.
fn after_lock(image: &Image, root: u64, pages: u64) -> Result<(), Failure> {
    let text_pages = image.text_pages();
    expect_eq("INTEGRITY LOCK x1 (pages mapped EL1-executable in TTBR1: the .text)", text_pages, pages)?;
    let entry = |ipa| leaf_entry(root, image.va(ipa)).ok_or(Failure::Missing("no level-3 entry for the image"));
    let (data0, data1, text0) = (entry(image.data_start)?, entry(image.data_start + PAGE)?, entry(image.base)?);

    // Within the policy: unmapping a data page, mapping it as data again.
    let mapped = read(data1);
    allowed("a traced write unmapping a data page after the lock", data1, 0)?;
    tlbi_va(image.va(image.data_start + PAGE));
    allowed("a traced write mapping a data page as data after the lock", data1, mapped)?;
    tlbi_va(image.va(image.data_start + PAGE));
    let word = read(image.data_start + PAGE);
    expect_load("a load through the data page mapped again", image.va(image.data_start + PAGE), word)?;

    // The three refusals.
    let new_code = page_descriptor(image.data_start, CODE);
    dropped("a traced write making a data page EL1-executable after the lock", data0, new_code)?;
    dropped("a traced write making a .text page writable after the lock", text0, read(text0) & !AP_RO)?;
    let last = image.exec_end - 8;
    refused("a write to .text after the lock", last, read(last))?;

    let after = status()?;
    expect_eq("INTEGRITY STATUS locked after the lock", 1, u64::from(after.flags.locked))?;
    expect_eq("INTEGRITY STATUS x2 (locked pages)", text_pages, after.locked_pages)?;
    expect_eq("INTEGRITY STATUS x3 (refusals since the lock)", 3, after.refusals)?;
    let denied = Err(HvError::PermissionDenied);
    reply_status("INTEGRITY SET_EXEC after the lock", denied, set_exec(code::page(0), 1, platform::mbec::Exec::Both)?)?;
    let [again, ..] = reply_ok("a second INTEGRITY LOCK", integrity(IntegrityOp::Lock)?)?;
    expect_eq("a second INTEGRITY LOCK x1 (the same pages)", text_pages, again)?;
    println!("integrity-lock: locked {text_pages} pages, {} refusals", after.refusals);

    // Code outside .text no longer runs at EL1.
    let page = code::page(0);
    // SAFETY: the page holds a `RET` (code::prepare), which the lock made
    // user-only; should it run all the same, it returns.
    let caught = unsafe { probe_call(page, code::range()) }
        .ok_or(Failure::Missing("an EL1 call of a RET in a data page ran after the lock"))?;
    let step = "an EL1 call of a RET in a data page after the lock";
    let field = |(field, expected, got)| Failure::from(IntegrityFailure::Field { step, field, expected, got });
    check_abort(caught.esr, ExceptionClass::InstructionAbortSame, PERMISSION_L3, None).map_err(field)?;
    if caught.far != page {
        return Err(field(("FAR_EL1 (the page)", page, caught.far)));
    }
    Ok(())
}
