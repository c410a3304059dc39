//! Scanning a guest's virtual address space with the address-translation
//! instruction and the level of the faulting table, served as the
//! backdoor's `SCAN`.
//!
//! The walk itself is `platform::gvascan::scan`. Each probe here is one
//! `AT S1E1R` (or `AT S1E0R` for an EL0 caller) in the guest's live EL1&0
//! regime: a fault's level, from `PAR_EL1`, lets the scan skip that level's
//! whole span. A successful `AT` does not say how large the mapping is or
//! whether it is executable, so the probe also reads the leaf descriptor
//! the guest's tables hold for the address (tables in guest RAM only; a
//! table anywhere else is not followed and the page is reported on its
//! own). That lets the scan step over a block in one probe.
//!
//! Regions are written to the caller's buffer as `gvascan::ENTRY_SIZE`-byte
//! entries; the buffer is an address in the caller's regime, translated
//! with the caller's write permission (`AT S1E1W`/`AT S1E0W`).
//!
//! No call holds the CPU for long: each makes at most
//! `hypercall::SCAN_PROBE_BUDGET` probes (`gvascan::scan_chunk`) and returns
//! to the guest with a resume cursor, so the interrupts the trap's priority
//! mask holds off are taken between the pieces of a long scan.

use crate::arch::layout::phys_to_virt;
use crate::arch::sysregs::{self, GuestReg};
use alloc::vec::Vec;
use platform::arch::at::{self, At};
use platform::board::MemRegion;
use platform::gvascan::{self, Attrs, Full, Par, Probe, ProbeResult, ScanError, Ttbr};
use platform::hypercall::{
    buffer_chunks, CallerEl, HvError, ScanRange, ScanReply, Translate, SCAN_CAPACITY_MAX, SCAN_PROBE_BUDGET,
};
use platform::paging::{bits, level_size, LAST_LEVEL};

/// `SCTLR_EL1.M`.
const SCTLR_M: u64 = 1 << 0;
/// `TTBRn_EL1.BADDR`.
const TTBR_BADDR: u64 = 0x0000_ffff_ffff_fffe;

/// The guest's stage-1 tables as the probe reads them.
struct GuestTables {
    root: u64,
    va_bits: u32,
    ram: MemRegion,
}

impl GuestTables {
    fn read(&self, ipa: u64) -> Option<u64> {
        if !self.ram.contains(ipa) || !self.ram.contains(ipa.checked_add(7)?) {
            return None;
        }
        // SAFETY: an aligned word inside guest RAM, which the direct map
        // covers; guest memory is read as plain data.
        Some(unsafe { core::ptr::read_volatile(phys_to_virt(ipa) as *const u64) })
    }

    /// The leaf descriptor for `va` and its level, if the walk reaches one.
    fn leaf(&self, va: u64) -> Option<(u8, u64)> {
        let mut table = self.root;
        let start = platform::paging::root_level(self.va_bits)?;
        for level in start..=LAST_LEVEL {
            let index = platform::paging::index(platform::addr::VirtAddr(va), level)? as u64;
            let index = if level == start {
                // The root table only spans va_bits.
                let entries = (1u64 << self.va_bits) / level_size(level)?;
                index & (entries - 1)
            } else {
                index
            };
            let descriptor = self.read(table.checked_add(index * 8)?)?;
            if descriptor & bits::VALID == 0 {
                return None;
            }
            let table_or_page = descriptor & bits::TABLE_OR_PAGE != 0;
            if level < LAST_LEVEL && table_or_page {
                table = descriptor & bits::OA_MASK;
                continue;
            }
            // A level-3 entry must be a page; bit 1 clear there is reserved.
            return (level < LAST_LEVEL || table_or_page).then_some((level, descriptor));
        }
        None
    }
}

struct GuestProbe {
    caller: CallerEl,
    tables: GuestTables,
    /// Probes that faulted: the unmapped table entries met, each skipped
    /// whole ("holes met" in `SCAN`'s reply).
    faults: u64,
}

impl Probe for GuestProbe {
    fn probe(&mut self, va: u64) -> ProbeResult {
        let op = match self.caller {
            CallerEl::El0 => At::S1E0R,
            CallerEl::El1 => At::S1E1R,
        };
        // SAFETY: EL2 may translate the guest's EL1&0 regime; PAR_EL1 is
        // read right after.
        let par = unsafe { at::translate(op, va) };
        let par = Par::decode(par);
        match par {
            Par::Translated { pa, .. } => {
                let leaf = self.tables.leaf(va);
                let attrs = leaf.map_or(Attrs::READ_ONLY_KNOWN, |(_, d)| Attrs::from_stage1_leaf(d));
                // The walk must agree with the hardware's translation for its
                // level to be trusted.
                let leaf_level = leaf.and_then(|(level, d)| {
                    let size = level_size(level)?;
                    ((d & bits::OA_MASK & !(size - 1)) + (va & (size - 1) & !0xfff) == pa).then_some(level)
                });
                ProbeResult::Mapped { ipa: pa, attrs, leaf_level }
            }
            Par::Fault { .. } => {
                self.faults += 1;
                ProbeResult::Fault { level: par.skip_level().unwrap_or(3) }
            }
        }
    }
}

/// Translates the caller's buffer for writing.
struct WriteTranslate(CallerEl);

impl Translate for WriteTranslate {
    fn translate(&mut self, addr: u64) -> Result<u64, HvError> {
        let op = match self.0 {
            CallerEl::El0 => At::S1E0W,
            CallerEl::El1 => At::S1E1W,
        };
        // SAFETY: as in `GuestProbe::probe`.
        let par = unsafe { at::translate(op, addr) };
        match Par::decode(par) {
            Par::Translated { pa, .. } => Ok(pa | (addr & 0xfff)),
            Par::Fault { .. } => Err(HvError::BadAddress),
        }
    }
}

/// `SCAN`: scans one piece of `range` of the caller's space, from
/// `cursor`, into the buffer; returns the regions written, translations
/// probed, holes met and the cursor to resume from. A hole met is an
/// unmapped table entry a probe faulted on, whose whole span the scan then
/// skipped; so probes = holes met + leaves met.
#[inline(never)]
pub fn scan(caller: CallerEl, range: ScanRange, buffer: u64, capacity: u64, cursor: u64) -> Result<ScanReply, HvError> {
    if capacity > SCAN_CAPACITY_MAX {
        return Err(HvError::TooLong);
    }
    if sysregs::read(GuestReg::Sctlr) & SCTLR_M == 0 {
        // No stage-1 translation: nothing to scan.
        return Err(HvError::InvalidArgument);
    }
    let ram = crate::vm::current().map_or(platform::board::MemRegion::new(0, 0), |(vm, _)| vm.ram);
    let regions = [(ram.base, ram.size)];
    let len = capacity * gvascan::ENTRY_SIZE as u64;
    // Check the whole buffer before scanning: a bad one is an error at once.
    let max_len = SCAN_CAPACITY_MAX * gvascan::ENTRY_SIZE as u64;
    for chunk in buffer_chunks(buffer, len, max_len, &regions, WriteTranslate(caller))? {
        chunk?;
    }

    let (t0sz, t1sz) = gvascan::tcr_txsz(sysregs::read(GuestReg::Tcr));
    let (ttbr, txsz, root) = match range {
        ScanRange::Ttbr0 => (Ttbr::Ttbr0, t0sz, sysregs::read(GuestReg::Ttbr0)),
        ScanRange::Ttbr1 => (Ttbr::Ttbr1, t1sz, sysregs::read(GuestReg::Ttbr1)),
    };
    let va_range = gvascan::ttbr_range(ttbr, txsz).map_err(|_| HvError::InvalidArgument)?;
    let mut probe = GuestProbe {
        caller,
        tables: GuestTables { root: root & TTBR_BADDR, va_bits: 64 - u32::from(txsz), ram },
        faults: 0,
    };
    // Regions written <= probes made: room for a whole piece's at once.
    let mut found: Vec<[u8; gvascan::ENTRY_SIZE]> = Vec::with_capacity(capacity.min(SCAN_PROBE_BUDGET) as usize);
    let mut sink = |region: gvascan::Region| {
        if found.len() as u64 >= capacity {
            return Err(Full);
        }
        found.push(gvascan::encode(&region));
        Ok(())
    };
    let chunk = match gvascan::scan_chunk(&mut probe, va_range, cursor, SCAN_PROBE_BUDGET, &mut sink) {
        Ok(chunk) => chunk,
        Err(ScanError::BadCursor { .. }) => return Err(HvError::InvalidArgument),
        Err(ScanError::BufferFull(_)) => return Err(HvError::BufferTooSmall),
        Err(e) => {
            log::warn!("SCAN stopped: {e}");
            return Err(HvError::InvalidArgument);
        }
    };

    let bytes = found.as_flattened();
    let mut written = 0usize;
    for chunk in buffer_chunks(buffer, bytes.len() as u64, max_len, &regions, WriteTranslate(caller))? {
        let chunk = chunk?;
        let src = bytes.get(written..written + chunk.len as usize).ok_or(HvError::InvalidArgument)?;
        // Not into the pages stage 2 keeps read-only for kernel integrity.
        if let Some((vm, _)) = crate::vm::current() {
            if !crate::vm::integrity::hypervisor_may_write(vm, chunk.ipa, chunk.len) {
                return Err(HvError::BadAddress);
            }
        }
        // SAFETY: the chunk lies in guest RAM (checked by buffer_chunks) and
        // the caller may write it (AT S1ExW); guest RAM is in the direct map.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), phys_to_virt(chunk.ipa) as *mut u8, src.len()) };
        written += src.len();
    }
    Ok(ScanReply {
        regions: chunk.stats.regions,
        probes: chunk.stats.probes,
        holes: probe.faults,
        next: chunk.cursor(),
    })
}
