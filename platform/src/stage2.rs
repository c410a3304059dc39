//! Stage-2 policy shared by the hypervisor and its host tests: the size of
//! a guest's IPA space, the attributes of what it maps, unmapping, and VMIDs.
//!
//! The tables themselves are `aarch64-paging`'s `Stage2` regime (the
//! hypervisor supplies the translation that reaches table pages). What is
//! decided here is pure and host-tested: which IPA width and start level a
//! guest needs given the CPU's physical-address range, which memory and
//! access attributes guest RAM and passthrough devices get, how a range is
//! unmapped (clearing `VALID` so break-before-make holds), and which VM
//! holds which VMID ([`VmidSpace`]: unique tags per guest, reassigned with a
//! TLB purge when they run out, like shadow ASIDs).

use crate::board::MemRegion;
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{MemoryRegion, Stage2, Translation};
use aarch64_paging::{MapError, Mapping};
use core::fmt;

/// The shape of a guest's IPA space with the 4 KiB granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// IPA width in bits.
    pub ipa_bits: u32,
    /// The level the stage-2 walk starts at.
    pub root_level: usize,
}

impl Geometry {
    /// `VTCR_EL2.T0SZ`.
    pub const fn t0sz(&self) -> u64 {
        64u64.saturating_sub(self.ipa_bits as u64)
    }

    /// `VTCR_EL2.SL0` for the 4 KiB granule: 0b10 = level 0, 0b01 = level 1.
    pub const fn sl0(&self) -> u64 {
        match self.root_level {
            0 => 0b10,
            _ => 0b01,
        }
    }
}

/// Why no geometry fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// The guest needs more IPA bits than the CPU's physical address range.
    TooLarge { needed_bits: u32, pa_bits: u32 },
}

impl core::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLarge { needed_bits, pa_bits } => write!(
                f,
                "the guest needs a {needed_bits}-bit IPA space, the CPU's physical addresses have {pa_bits} bits"
            ),
        }
    }
}

/// The smallest IPA space (at least 32 bits, the architectural minimum
/// worth having) that holds every IPA below `end`, given a CPU with
/// `pa_bits` of physical address. Up to 39 bits the walk starts at level 1
/// with one table; above, at level 0 (and only if the PA range is at least
/// 44 bits, which starting at level 0 requires).
pub fn geometry(pa_bits: u32, end: u64) -> Result<Geometry, GeometryError> {
    let needed = u64::BITS.saturating_sub(end.saturating_sub(1).leading_zeros()).max(32);
    if needed > pa_bits || needed > 48 {
        return Err(GeometryError::TooLarge { needed_bits: needed, pa_bits });
    }
    if needed <= 39 {
        Ok(Geometry { ipa_bits: needed, root_level: 1 })
    } else if pa_bits >= 44 {
        Ok(Geometry { ipa_bits: needed, root_level: 0 })
    } else {
        Err(GeometryError::TooLarge { needed_bits: needed, pa_bits })
    }
}

/// Guest RAM: normal write-back memory, inner shareable, read/write/execute.
pub const fn ram_attributes() -> Stage2Attributes {
    Stage2Attributes::VALID
        .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
        .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
        .union(Stage2Attributes::S2AP_ACCESS_RW)
        .union(Stage2Attributes::SH_INNER)
        .union(Stage2Attributes::ACCESS_FLAG)
}

/// A passthrough device window: Device-nGnRE, read/write, never executable.
pub const fn device_attributes() -> Stage2Attributes {
    Stage2Attributes::VALID
        .union(Stage2Attributes::MEMATTR_DEVICE_nGnRE)
        .union(Stage2Attributes::S2AP_ACCESS_RW)
        .union(Stage2Attributes::ACCESS_FLAG)
        .union(Stage2Attributes::XN)
}

/// Unmaps `[start, end)`: clears `VALID` in every leaf descriptor covering
/// it, keeping the rest of each descriptor (allowed without break-before-
/// make). On live tables `aarch64-paging` issues `TLBI IPAS2E1IS` for each
/// entry and a `DSB`; the caller still owes the stage-1+2 invalidation
/// (`TLBI VMALLE1IS`), which depends on the VMID being current.
pub fn unmap<T: Translation<Stage2Attributes>>(
    mapping: &mut Mapping<T, Stage2>,
    start: u64,
    end: u64,
) -> Result<(), MapError> {
    let range = MemoryRegion::new(start as usize, end as usize);
    mapping.modify_range(&range, &|_, descriptor| {
        if descriptor.is_table() || !descriptor.flags().contains(Stage2Attributes::VALID) {
            return Ok(());
        }
        let pa = descriptor.output_address();
        descriptor.set(pa, descriptor.flags().difference(Stage2Attributes::VALID))
    })
}

/// Maps `[ipa, ipa + len)` onto `[pa, pa + len)` (a device window a guest
/// moved: its registers stay where they are, the guest sees them at `ipa`).
pub fn map_at<T: Translation<Stage2Attributes>>(
    mapping: &mut Mapping<T, Stage2>,
    ipa: u64,
    pa: u64,
    len: u64,
    attributes: Stage2Attributes,
) -> Result<(), MapError> {
    let range = MemoryRegion::new(ipa as usize, ipa.saturating_add(len) as usize);
    mapping.map_range(&range, PhysicalAddress(pa as usize), attributes, aarch64_paging::paging::Constraints::empty())
}

/// Why a device window (a PCI BAR) cannot be mapped where a guest put it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowRefused {
    /// Empty or not page-aligned.
    Unaligned,
    /// Not inside the guest's IPA space `[0, ipa_end)` (or wrapping).
    OutsideIpaSpace { ipa_end: u64 },
    /// On top of something the guest already has there (its RAM, an
    /// emulated device, another window).
    Overlaps(MemRegion),
}

impl fmt::Display for WindowRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned => f.write_str("not a page-aligned, non-empty range"),
            Self::OutsideIpaSpace { ipa_end } => write!(f, "outside the guest's IPA space (ends at {ipa_end:#x})"),
            Self::Overlaps(region) => write!(f, "overlaps {region}, which the guest already has"),
        }
    }
}

/// Checks where a guest moved a device window: stage 2 may map it there
/// only inside the IPA space and on top of nothing else the guest sees
/// (`taken`). What the window reaches is always the device itself, so a
/// window over a hole (even where the hypervisor's or the secure world's
/// memory sits in the physical map) gives the guest nothing new.
pub fn check_window(window: MemRegion, ipa_end: u64, taken: &[MemRegion]) -> Result<(), WindowRefused> {
    const PAGE: u64 = 4096;
    if window.is_empty() || !window.base.is_multiple_of(PAGE) || !window.size.is_multiple_of(PAGE) {
        return Err(WindowRefused::Unaligned);
    }
    if window.base.checked_add(window.size).is_none_or(|end| end > ipa_end) {
        return Err(WindowRefused::OutsideIpaSpace { ipa_end });
    }
    match taken.iter().find(|region| region.overlaps(&window)) {
        Some(region) => Err(WindowRefused::Overlaps(*region)),
        None => Ok(()),
    }
}

/// Maps `[ipa, ipa + len)` to the same physical addresses.
pub fn map_identity<T: Translation<Stage2Attributes>>(
    mapping: &mut Mapping<T, Stage2>,
    ipa: u64,
    len: u64,
    attributes: Stage2Attributes,
) -> Result<(), MapError> {
    let range = MemoryRegion::new(ipa as usize, ipa.saturating_add(len) as usize);
    mapping.map_range(&range, PhysicalAddress(ipa as usize), attributes, aarch64_paging::paging::Constraints::empty())
}

/// A virtual machine identifier, tagging its TLB entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vmid(pub u16);

impl Vmid {
    pub const VTTBR_SHIFT: u32 = 48;

    /// Its field in `VTTBR_EL2`.
    pub const fn vttbr_bits(self) -> u64 {
        (self.0 as u64) << Self::VTTBR_SHIFT
    }
}

/// Hands out VMIDs: 8-bit, or 16-bit where `ID_AA64MMFR1_EL1.VMIDBits` says
/// so. VMID 0 is never handed out (it is what an unconfigured `VTTBR_EL2`
/// holds); `reserved` ones neither.
///
/// Superseded by [`VmidSpace`], which also recycles VMIDs; kept only until
/// the hypervisor's stage 2 moves to it, then to be deleted.
pub struct VmidAllocator {
    used: [u64; 1024],
    limit: u32,
}

impl VmidAllocator {
    pub const fn new(sixteen_bit: bool) -> Self {
        let mut used = [0u64; 1024];
        used[0] = 1;
        Self { used, limit: if sixteen_bit { 1 << 16 } else { 1 << 8 } }
    }

    /// Marks `vmid` as taken by the hypervisor itself.
    pub fn reserve(&mut self, vmid: Vmid) {
        if let Some(word) = self.used.get_mut(usize::from(vmid.0 / 64)) {
            *word |= 1 << (vmid.0 % 64);
        }
    }

    /// The lowest free VMID.
    pub fn allocate(&mut self) -> Option<Vmid> {
        for id in 1..self.limit {
            let (word, bit) = ((id / 64) as usize, id % 64);
            let slot = self.used.get_mut(word)?;
            if *slot & (1 << bit) == 0 {
                *slot |= 1 << bit;
                return Some(Vmid(id as u16));
            }
        }
        None
    }

    /// Gives `vmid` back (its TLB entries must have been invalidated).
    pub fn free(&mut self, vmid: Vmid) {
        if vmid.0 == 0 {
            return;
        }
        if let Some(word) = self.used.get_mut(usize::from(vmid.0 / 64)) {
            *word &= !(1 << (vmid.0 % 64));
        }
    }
}

/// Most VMs a [`VmidSpace`] tracks at once: each VM that holds a VMID
/// (running or not) takes one entry. When the table is full, the next VM
/// takes the entry (and VMID) of the least recently run VM that is not
/// running, exactly as when the VMIDs themselves run out.
pub const MAX_OWNERS: usize = 16;

/// Most VMIDs the hypervisor can keep for itself ([`VmidSpace::reserve`]).
pub const MAX_RESERVED: usize = 4;

/// Who holds a VMID: one virtual machine, named by the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerId(pub u32);

/// What [`VmidSpace::acquire`] gives a vCPU about to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Grant {
    /// The VMID to load into `VTTBR_EL2` with the VM's tables.
    pub vmid: Vmid,
    /// The TLB may hold another VM's translations tagged `vmid` (or this
    /// VM's purge of them is not yet confirmed): with `VTTBR_EL2` holding
    /// `vmid`, issue `TLBI VMALLS12E1IS; DSB ISH` before entering the guest,
    /// then report it with [`VmidSpace::purged`].
    pub flush: bool,
    /// The VM that just lost its VMID (it was not running). It holds none
    /// now; its next `acquire` gets a VMID again like a new VM's.
    pub evicted: Option<OwnerId>,
}

/// Why a VMID operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmidError {
    /// Every VM holding a VMID is running: none can be taken. The new VM
    /// cannot run until one of them stops.
    Exhausted { running: usize, usable: u32 },
    /// The VM still has running vCPUs ([`VmidSpace::forget`]).
    Running(OwnerId),
    /// `release` for a VM none of whose vCPUs is running.
    NotRunning(OwnerId),
    /// `reserve` of a VMID a VM was already given.
    AlreadyGranted(Vmid),
    /// More than [`MAX_RESERVED`] reserved VMIDs.
    TooManyReserved,
}

impl fmt::Display for VmidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exhausted { running, usable } => write!(
                f,
                "no VMID free: all {running} VMs holding one are running ({usable} usable VMIDs, at most {MAX_OWNERS} VMs tracked)"
            ),
            Self::Running(owner) => write!(f, "VM {} still has running vCPUs", owner.0),
            Self::NotRunning(owner) => write!(f, "VM {} has no running vCPU to release", owner.0),
            Self::AlreadyGranted(vmid) => write!(f, "VMID {} was already given to a VM, it cannot be reserved", vmid.0),
            Self::TooManyReserved => write!(f, "more than {MAX_RESERVED} reserved VMIDs"),
        }
    }
}

/// One VM holding a VMID.
#[derive(Clone, Copy, Debug)]
struct Holder {
    owner: OwnerId,
    vmid: Vmid,
    /// How many of its vCPUs are between `acquire` and `release`.
    running: u32,
    /// When it last started or stopped a vCPU (the LRU order of eviction).
    stamp: u64,
    /// It was granted `vmid` with `flush` and has not yet confirmed the
    /// purge: its other vCPUs must purge too before they enter the guest.
    unpurged: bool,
}

/// The VMIDs of the VMs: unique tags per guest, reassigned with a TLB purge
/// when they run out, like shadow ASIDs.
///
/// The space holds VMIDs `1 .. 1 << bits` (`bits` is 8 or 16 as the CPU
/// implements, or fewer when the `vmid-bits=N` command-line word narrows it
/// to make recycling happen). VMID 0 is never granted (it is what an idle
/// `VTTBR_EL2` holds), nor are [reserved](Self::reserve) ones.
///
/// Protocol: a vCPU calls [`acquire`](Self::acquire) right before it runs
/// its VM and [`release`](Self::release) once it has stopped; between the
/// two its VM is *running* and keeps its VMID. The [`Grant`] names the VMID
/// and whether the TLB must be purged for it first; a VM must load only a
/// VMID from a grant of the run it is in (never one cached from an earlier
/// run: it may have lost it since). [`forget`](Self::forget) drops a
/// destroyed VM.
///
/// A VMID is granted in this order of preference: one never granted since
/// boot (no purge needed), one granted before that nobody holds now, such
/// as a destroyed VM's (purge), and finally the VMID of the VM that has not
/// run for the longest among those not running (purge; that VM is told,
/// through [`Grant::evicted`], that it lost it). The same VM is evicted when
/// VMIDs remain but the table of [`MAX_OWNERS`] holders is full; the new VM
/// then gets a free VMID. If every VM holding a VMID is running:
/// [`VmidError::Exhausted`].
///
/// Invariants (checked by the host tests over random sequences):
/// - no two VMs hold the same VMID at once, so TLB entries of one VM are
///   never used by another while both hold their tags;
/// - a running VM never loses its VMID: its vCPUs on other CPUs are using
///   it in `VTTBR_EL2` and may be filling the TLB with it;
/// - a VMID granted before, to any VM, is granted again only with `flush`:
///   entries left under it by the previous holder (translations of another
///   guest's memory) must be gone before the new holder's guest runs;
/// - until the holder confirms the purge with [`purged`](Self::purged),
///   every grant of that VMID to it says `flush`, so a second vCPU starting
///   while the first is still purging does not enter the guest early.
///
/// What the caller must guarantee for these to mean what they say:
/// - the TLB holds nothing under VMIDs never granted: at boot, purge all
///   EL1&0 entries (`TLBI ALLE1IS`);
/// - a CPU stops translating with a VMID before its vCPU `release`s it:
///   load `VTTBR_EL2` with VMID 0 (or clear `HCR_EL2.VM`) and `ISB` first,
///   or the TLB may be refilled with the old holder's translations after
///   the next holder's purge;
/// - `acquire`/`release` pair up per vCPU, and it all runs under one lock.
#[derive(Clone, Debug)]
pub struct VmidSpace {
    bits: u8,
    /// VMIDs from this one up (below `1 << bits`) were never granted.
    fresh: u32,
    holders: [Option<Holder>; MAX_OWNERS],
    /// Reserved VMIDs; 0 marks an empty entry (VMID 0 is never granted).
    reserved: [u16; MAX_RESERVED],
    /// Ticks at every `acquire` and `release`: the LRU stamps.
    clock: u64,
    generation: u64,
}

impl VmidSpace {
    /// A space of `bits`-bit VMIDs (clamped to 1..=16), none granted yet.
    pub const fn new(bits: u8) -> Self {
        let bits = if bits == 0 {
            1
        } else if bits > 16 {
            16
        } else {
            bits
        };
        Self { bits, fresh: 1, holders: [None; MAX_OWNERS], reserved: [0; MAX_RESERVED], clock: 0, generation: 0 }
    }

    /// The width to use: what the CPU implements (`hardware_bits`, 8 or 16
    /// from `ID_AA64MMFR1_EL1.VMIDBits`), narrowed by `requested` (the
    /// `vmid-bits=N` command-line word) if that is smaller.
    pub const fn width(hardware_bits: u8, requested: Option<u8>) -> u8 {
        match requested {
            Some(bits) if bits >= 1 && bits < hardware_bits => bits,
            _ => hardware_bits,
        }
    }

    /// The VMID width.
    pub const fn bits(&self) -> u8 {
        self.bits
    }

    /// One past the largest VMID in the space.
    const fn end(&self) -> u32 {
        1 << self.bits
    }

    /// How many VMIDs VMs can get: all but 0 and the reserved ones.
    pub fn usable(&self) -> u32 {
        let reserved = self.reserved.iter().filter(|&&v| v != 0).count() as u32;
        self.end().saturating_sub(1).saturating_sub(reserved)
    }

    /// How many times a VM lost its VMID to another (for logs and tests).
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// Keeps `vmid` out of every grant (for the hypervisor's own use, e.g.
    /// the EL0 service). Reserving it again, or reserving one outside the
    /// space or VMID 0, does nothing. Refused for a VMID already granted:
    /// reserve before starting VMs.
    pub fn reserve(&mut self, vmid: Vmid) -> Result<(), VmidError> {
        if vmid.0 == 0 || u32::from(vmid.0) >= self.end() || self.is_reserved(vmid) {
            return Ok(());
        }
        if u32::from(vmid.0) < self.fresh {
            return Err(VmidError::AlreadyGranted(vmid));
        }
        let slot = self.reserved.iter_mut().find(|v| **v == 0).ok_or(VmidError::TooManyReserved)?;
        *slot = vmid.0;
        Ok(())
    }

    /// A vCPU of `owner` is about to run: its VMID, kept from before if it
    /// still holds one, else a new one (see the type's documentation for
    /// the order). Counts the vCPU as running until [`release`](Self::release).
    pub fn acquire(&mut self, owner: OwnerId) -> Result<Grant, VmidError> {
        let now = self.tick();
        if let Some(holder) = self.holder_mut(owner) {
            holder.running = holder.running.saturating_add(1);
            holder.stamp = now;
            return Ok(Grant { vmid: holder.vmid, flush: holder.unpurged, evicted: None });
        }
        let free_slot = self.holders.iter().position(Option::is_none);
        let free_vmid = match self.next_fresh() {
            Some(vmid) => Some((vmid, false)),
            None => self.free_used().map(|vmid| (vmid, true)),
        };
        let (slot, vmid, flush, evicted) = match (free_slot, free_vmid) {
            (Some(slot), Some((vmid, flush))) => (slot, vmid, flush, None),
            (_, found) => {
                let Some(victim) = self.victim() else {
                    let running = self.holders.iter().flatten().count();
                    return Err(VmidError::Exhausted { running, usable: self.usable() });
                };
                let Some(Some(lost)) = self.holders.get_mut(victim).map(Option::take) else {
                    return Err(VmidError::Exhausted { running: 0, usable: self.usable() });
                };
                self.generation = self.generation.wrapping_add(1);
                // A free VMID if there is one (only the table was full);
                // else the victim's, whose entries must go.
                let (vmid, flush) = found.unwrap_or((lost.vmid, true));
                (victim, vmid, flush, Some(lost.owner))
            }
        };
        if !flush {
            self.fresh = u32::from(vmid.0).saturating_add(1);
        }
        if let Some(entry) = self.holders.get_mut(slot) {
            *entry = Some(Holder { owner, vmid, running: 1, stamp: now, unpurged: flush });
        }
        Ok(Grant { vmid, flush, evicted })
    }

    /// `owner` has purged the TLB for `vmid` (after its `DSB`): later
    /// grants of it to `owner` need no flush. Ignored unless `owner` holds
    /// `vmid`.
    pub fn purged(&mut self, owner: OwnerId, vmid: Vmid) {
        if let Some(holder) = self.holder_mut(owner).filter(|h| h.vmid == vmid) {
            holder.unpurged = false;
        }
    }

    /// A vCPU of `owner` has stopped running (and no longer has its VMID in
    /// `VTTBR_EL2`). When none is left running, the VM's VMID may be taken.
    pub fn release(&mut self, owner: OwnerId) -> Result<(), VmidError> {
        let now = self.tick();
        let holder = self.holder_mut(owner).filter(|h| h.running > 0).ok_or(VmidError::NotRunning(owner))?;
        holder.running = holder.running.saturating_sub(1);
        holder.stamp = now;
        Ok(())
    }

    /// `owner` is destroyed: it gives up its VMID, if it holds one (that
    /// VMID's next grant says `flush`). Refused while it has running vCPUs.
    pub fn forget(&mut self, owner: OwnerId) -> Result<Option<Vmid>, VmidError> {
        let Some(entry) = self.holders.iter_mut().find(|e| e.is_some_and(|h| h.owner == owner)) else {
            return Ok(None);
        };
        match entry {
            Some(holder) if holder.running > 0 => Err(VmidError::Running(owner)),
            _ => Ok(entry.take().map(|h| h.vmid)),
        }
    }

    /// The VMID `owner` holds, if any.
    pub fn vmid_of(&self, owner: OwnerId) -> Option<Vmid> {
        self.holder(owner).map(|h| h.vmid)
    }

    /// How many of `owner`'s vCPUs are running.
    pub fn running(&self, owner: OwnerId) -> u32 {
        self.holder(owner).map_or(0, |h| h.running)
    }

    fn tick(&mut self) -> u64 {
        self.clock = self.clock.wrapping_add(1);
        self.clock
    }

    fn holder(&self, owner: OwnerId) -> Option<&Holder> {
        self.holders.iter().flatten().find(|h| h.owner == owner)
    }

    fn holder_mut(&mut self, owner: OwnerId) -> Option<&mut Holder> {
        self.holders.iter_mut().flatten().find(|h| h.owner == owner)
    }

    fn is_reserved(&self, vmid: Vmid) -> bool {
        vmid.0 == 0 || self.reserved.contains(&vmid.0)
    }

    fn is_held(&self, vmid: Vmid) -> bool {
        self.holders.iter().flatten().any(|h| h.vmid == vmid)
    }

    /// The lowest never-granted VMID that is not reserved.
    fn next_fresh(&self) -> Option<Vmid> {
        (self.fresh..self.end()).filter_map(|v| u16::try_from(v).ok()).map(Vmid).find(|&v| !self.is_reserved(v))
    }

    /// The lowest VMID granted before that nobody holds now. Only the
    /// holders and reserved VMIDs are skipped, so this finds one within
    /// `MAX_OWNERS + MAX_RESERVED + 1` steps or the range is that short.
    fn free_used(&self) -> Option<Vmid> {
        (1..self.fresh)
            .filter_map(|v| u16::try_from(v).ok())
            .map(Vmid)
            .find(|&v| !self.is_reserved(v) && !self.is_held(v))
    }

    /// The entry of the VM, among those not running, that ran least recently.
    fn victim(&self) -> Option<usize> {
        self.holders
            .iter()
            .enumerate()
            .filter_map(|(slot, entry)| entry.filter(|h| h.running == 0).map(|h| (h.stamp, slot)))
            .min()
            .map(|(_, slot)| slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aarch64_paging::paging::PageTable;
    use core::ptr::NonNull;
    use proptest::prelude::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use std::string::ToString;

    /// Host translation: table pages from the heap, "physical" = pointer.
    struct HostTables;

    const LAYOUT: Layout = match Layout::from_size_align(4096, 4096) {
        Ok(l) => l,
        Err(_) => panic!(),
    };

    impl Translation<Stage2Attributes> for HostTables {
        fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
            // SAFETY: LAYOUT is non-zero-sized.
            let page = unsafe { alloc_zeroed(LAYOUT) }.cast::<PageTable<Stage2Attributes>>();
            let table = NonNull::new(page).unwrap();
            (table, PhysicalAddress(page as usize))
        }
        unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
            // SAFETY: allocated above with LAYOUT.
            unsafe { dealloc(table.as_ptr().cast(), LAYOUT) }
        }
        fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
            NonNull::new(pa.0 as *mut _).unwrap()
        }
    }

    /// What the table says about `ipa`: (valid, output address, attributes).
    fn lookup(mapping: &Mapping<HostTables, Stage2>, ipa: u64) -> Option<(bool, u64, Stage2Attributes)> {
        let mut found = None;
        let range = MemoryRegion::new(ipa as usize, ipa as usize + 1);
        let _ = mapping.walk_range(&range, &mut |_, descriptor, level| {
            let leaf = level == 3 || !descriptor.flags().contains(Stage2Attributes::TABLE_OR_PAGE);
            if leaf {
                // The callback gets the clipped range; the offset comes from
                // the size a descriptor at this level covers.
                let size = 1u64 << (12 + 9 * (3 - level));
                let pa = descriptor.output_address().0 as u64 + (ipa & (size - 1));
                found = Some((descriptor.is_valid(), pa, descriptor.flags()));
            }
            Ok(())
        });
        found
    }

    #[test]
    fn geometry_follows_guest_needs_and_pa_range() {
        assert_eq!(geometry(48, 0x8000_0000), Ok(Geometry { ipa_bits: 32, root_level: 1 }));
        assert_eq!(geometry(48, 0x1_0000_0001), Ok(Geometry { ipa_bits: 33, root_level: 1 }));
        let virt_3g = geometry(44, 0x4000_0000 + 3 * (1 << 30)).unwrap();
        assert_eq!(virt_3g, Geometry { ipa_bits: 32, root_level: 1 });
        assert_eq!((virt_3g.t0sz(), virt_3g.sl0()), (32, 0b01));
        let big = geometry(48, 1 << 40).unwrap();
        assert_eq!(big, Geometry { ipa_bits: 40, root_level: 0 });
        assert_eq!((big.t0sz(), big.sl0()), (24, 0b10));
        assert_eq!(geometry(36, 1 << 37), Err(GeometryError::TooLarge { needed_bits: 37, pa_bits: 36 }));
        assert_eq!(geometry(40, 1 << 40), Err(GeometryError::TooLarge { needed_bits: 40, pa_bits: 40 }));
        assert_eq!(geometry(48, u64::MAX), Err(GeometryError::TooLarge { needed_bits: 64, pa_bits: 48 }));
        assert!(geometry(48, 0).is_ok());
    }

    #[test]
    fn attributes_have_the_architectural_bits() {
        let ram = ram_attributes().bits();
        assert_eq!(ram & 0b11, 0b01, "a valid block (tables add TABLE_OR_PAGE at level 3)");
        assert_eq!((ram >> 2) & 0xf, 0xf, "MemAttr = Normal, outer and inner write-back");
        assert_eq!((ram >> 6) & 0b11, 0b11, "S2AP = read/write");
        assert_eq!((ram >> 8) & 0b11, 0b11, "SH = inner shareable");
        assert_ne!(ram & (1 << 10), 0, "AF set");
        assert_eq!(ram & (1 << 54), 0, "executable");
        let device = device_attributes().bits();
        assert_eq!((device >> 2) & 0xf, 0b0001, "MemAttr = Device-nGnRE");
        assert_ne!(device & (1 << 54), 0, "never executable");
    }

    #[test]
    fn map_then_unmap_leaves_a_hole() {
        let mut mapping = Mapping::new(HostTables, 1, Stage2);
        map_identity(&mut mapping, 0x4000_0000, 0x40_0000, ram_attributes()).unwrap();
        map_identity(&mut mapping, 0x0900_0000, 0x1000, device_attributes()).unwrap();
        let (valid, pa, flags) = lookup(&mapping, 0x4012_3456).unwrap();
        assert!(valid);
        assert_eq!(pa, 0x4012_3456);
        assert!(flags.contains(Stage2Attributes::S2AP_ACCESS_RW));

        // Punch a 4 KiB hole into the 2 MiB block: the block is split, only
        // the page goes.
        unmap(&mut mapping, 0x4010_0000, 0x4010_1000).unwrap();
        assert_eq!(lookup(&mapping, 0x4010_0800).map(|l| l.0), Some(false));
        assert_eq!(lookup(&mapping, 0x4010_1000).map(|l| (l.0, l.1)), Some((true, 0x4010_1000)));
        assert_eq!(lookup(&mapping, 0x400f_f000).map(|l| l.0), Some(true));
        // The device page is untouched, and a whole-range unmap clears it.
        assert_eq!(lookup(&mapping, 0x0900_0010).map(|l| l.0), Some(true));
        unmap(&mut mapping, 0x0900_0000, 0x0900_1000).unwrap();
        assert_eq!(lookup(&mapping, 0x0900_0010).map(|l| l.0), Some(false));
        // Unmapping what is not mapped is harmless.
        unmap(&mut mapping, 0x1_0000_0000, 0x1_0000_1000).unwrap();
    }

    #[test]
    fn vmids_are_unique_and_recycled() {
        let mut vmids = VmidAllocator::new(false);
        vmids.reserve(Vmid(0xff));
        let a = vmids.allocate().unwrap();
        let b = vmids.allocate().unwrap();
        assert_eq!((a, b), (Vmid(1), Vmid(2)));
        vmids.free(a);
        assert_eq!(vmids.allocate(), Some(Vmid(1)));
        let mut handed = 2;
        while vmids.allocate().is_some() {
            handed += 1;
        }
        assert_eq!(handed, 254, "255 non-zero 8-bit VMIDs minus the reserved one");
        assert_eq!(Vmid(3).vttbr_bits(), 3 << 48);
        assert_eq!(VmidAllocator::new(true).limit, 1 << 16);
    }

    #[test]
    fn a_moved_window_maps_only_over_a_hole_inside_the_ipa_space() {
        let ram = MemRegion::new(0x4000_0000, 0x4000_0000);
        let gic = MemRegion::new(0x0800_0000, 0x0100_0000);
        let taken = [ram, gic];
        let ipa_end = 1 << 32;
        let at = |base| MemRegion::new(base, 0x1000);
        assert_eq!(check_window(at(0x0901_0000), ipa_end, &taken), Ok(()));
        // Where the hypervisor's or the secure world's memory sits in the
        // physical map is a hole to the guest: the window shows the device.
        assert_eq!(check_window(at(0x0e00_0000), ipa_end, &taken), Ok(()));
        assert_eq!(check_window(at(0x8000_0000), ipa_end, &taken), Ok(()));
        assert_eq!(check_window(at(0x4000_1000), ipa_end, &taken), Err(WindowRefused::Overlaps(ram)));
        assert_eq!(check_window(at(0x08ff_f000), ipa_end, &taken), Err(WindowRefused::Overlaps(gic)));
        assert_eq!(check_window(at(0x3fff_f000), ipa_end, &taken), Ok(()), "ends right where RAM starts");
        assert_eq!(check_window(at(0xffff_f000), ipa_end, &taken), Ok(()), "the last page");
        assert_eq!(check_window(at(0x1_0000_0000), ipa_end, &taken), Err(WindowRefused::OutsideIpaSpace { ipa_end }));
        assert_eq!(
            check_window(MemRegion::new(0xffff_f000, 0x2000), ipa_end, &taken),
            Err(WindowRefused::OutsideIpaSpace { ipa_end })
        );
        // A BAR mid-sizing (all ones) or half-written: never mapped.
        assert_eq!(
            check_window(at(0xffff_ffff_ffff_f000), ipa_end, &taken),
            Err(WindowRefused::OutsideIpaSpace { ipa_end })
        );
        assert_eq!(
            check_window(MemRegion::new(!0xfff, 0x2000), ipa_end, &taken),
            Err(WindowRefused::OutsideIpaSpace { ipa_end })
        );
        assert_eq!(check_window(at(0x0901_0800), ipa_end, &taken), Err(WindowRefused::Unaligned));
        assert_eq!(check_window(MemRegion::new(0x0901_0000, 0), ipa_end, &taken), Err(WindowRefused::Unaligned));
        assert_eq!(check_window(MemRegion::new(0x0901_0000, 0x800), ipa_end, &taken), Err(WindowRefused::Unaligned));
    }

    // VMID space.

    const A: OwnerId = OwnerId(10);
    const B: OwnerId = OwnerId(11);
    const C: OwnerId = OwnerId(12);
    const D: OwnerId = OwnerId(13);
    const E: OwnerId = OwnerId(14);

    fn grant(vmid: u16, flush: bool, evicted: Option<OwnerId>) -> Grant {
        Grant { vmid: Vmid(vmid), flush, evicted }
    }

    #[test]
    fn two_bit_space_recycles_the_least_recently_run_stopped_vm() {
        let mut space = VmidSpace::new(2);
        assert_eq!(space.usable(), 3);
        assert_eq!(space.acquire(A), Ok(grant(1, false, None)));
        assert_eq!(space.acquire(B), Ok(grant(2, false, None)));
        assert_eq!(space.acquire(C), Ok(grant(3, false, None)));
        // Everyone is running: no VMID for D.
        assert_eq!(space.acquire(D), Err(VmidError::Exhausted { running: 3, usable: 3 }));
        assert_eq!(
            VmidError::Exhausted { running: 3, usable: 3 }.to_string(),
            "no VMID free: all 3 VMs holding one are running (3 usable VMIDs, at most 16 VMs tracked)"
        );
        // B stops: D takes its VMID, purging first; B learns it lost it.
        space.release(B).unwrap();
        assert_eq!(space.acquire(D), Ok(grant(2, true, Some(B))));
        assert_eq!((space.vmid_of(B), space.vmid_of(D), space.generation()), (None, Some(Vmid(2)), 1));
        // A second vCPU of D still purges until D confirms the first purge.
        assert_eq!(space.acquire(D), Ok(grant(2, true, None)));
        space.purged(D, Vmid(3)); // not D's: ignored
        space.purged(C, Vmid(2)); // not C's: ignored
        assert_eq!(space.acquire(D), Ok(grant(2, true, None)));
        space.purged(D, Vmid(2));
        assert_eq!(space.acquire(D), Ok(grant(2, false, None)));
        assert_eq!(space.running(D), 4);
        // C stops after A: A ran least recently, so B takes A's VMID.
        space.release(A).unwrap();
        space.release(C).unwrap();
        assert_eq!(space.acquire(B), Ok(grant(1, true, Some(A))));
        // C runs again: it kept its VMID, no purge.
        assert_eq!(space.acquire(C), Ok(grant(3, false, None)));
        assert_eq!(space.generation(), 2);
        // E: everyone running again.
        assert_eq!(space.acquire(E), Err(VmidError::Exhausted { running: 3, usable: 3 }));
        // D is destroyed once its vCPUs stopped; E gets its VMID, purging
        // (D's entries are still in the TLB), and nobody is evicted.
        assert_eq!(space.forget(D), Err(VmidError::Running(D)));
        for _ in 0..4 {
            space.release(D).unwrap();
        }
        assert_eq!(space.release(D), Err(VmidError::NotRunning(D)));
        assert_eq!(space.forget(D), Ok(Some(Vmid(2))));
        assert_eq!(space.forget(D), Ok(None));
        assert_eq!(space.acquire(E), Ok(grant(2, true, None)));
        assert_eq!(space.generation(), 2);
        // A was evicted: it comes back only when someone stops.
        assert_eq!(space.acquire(A), Err(VmidError::Exhausted { running: 3, usable: 3 }));
        space.release(E).unwrap();
        assert_eq!(space.acquire(A), Ok(grant(2, true, Some(E))));
    }

    #[test]
    fn reserved_and_zero_vmids_are_never_granted() {
        let mut space = VmidSpace::new(2);
        space.reserve(Vmid(2)).unwrap();
        space.reserve(Vmid(2)).unwrap();
        space.reserve(Vmid(0)).unwrap();
        space.reserve(Vmid(0xff)).unwrap(); // outside the space: nothing to keep out
        assert_eq!(space.usable(), 2);
        assert_eq!(space.acquire(A), Ok(grant(1, false, None)));
        assert_eq!(space.acquire(B), Ok(grant(3, false, None)));
        assert_eq!(space.acquire(C), Err(VmidError::Exhausted { running: 2, usable: 2 }));
        space.release(A).unwrap();
        assert_eq!(space.acquire(C), Ok(grant(1, true, Some(A))));
        // Too late to reserve a VMID already handed out.
        assert_eq!(space.reserve(Vmid(1)), Err(VmidError::AlreadyGranted(Vmid(1))));
        let mut space = VmidSpace::new(8);
        for v in 1..=4 {
            space.reserve(Vmid(v)).unwrap();
        }
        assert_eq!(space.reserve(Vmid(5)), Err(VmidError::TooManyReserved));
        assert_eq!(space.acquire(A), Ok(grant(5, false, None)));
        // All of a one-bit space reserved: nothing to grant, ever.
        let mut space = VmidSpace::new(1);
        space.reserve(Vmid(1)).unwrap();
        assert_eq!(space.usable(), 0);
        assert_eq!(space.acquire(A), Err(VmidError::Exhausted { running: 0, usable: 0 }));
    }

    #[test]
    fn destroyed_vms_vmids_are_reused_after_fresh_ones_and_before_evicting() {
        let mut space = VmidSpace::new(2);
        assert_eq!(space.acquire(A), Ok(grant(1, false, None)));
        space.release(A).unwrap();
        assert_eq!(space.forget(A), Ok(Some(Vmid(1))));
        // Never-granted VMIDs first (no purge), then the destroyed VM's.
        assert_eq!(space.acquire(B), Ok(grant(2, false, None)));
        assert_eq!(space.acquire(C), Ok(grant(3, false, None)));
        space.release(B).unwrap();
        assert_eq!(space.acquire(D), Ok(grant(1, true, None)), "B is not evicted while a VMID is free");
        assert_eq!(space.vmid_of(B), Some(Vmid(2)));
        // Even the same VM again, once forgotten, purges: it is a new VM.
        space.release(D).unwrap();
        assert_eq!(space.forget(D), Ok(Some(Vmid(1))));
        assert_eq!(space.acquire(D), Ok(grant(1, true, None)));
        assert_eq!(space.generation(), 0);
    }

    #[test]
    fn a_full_table_evicts_even_with_vmids_left() {
        let mut space = VmidSpace::new(8);
        for owner in 0..MAX_OWNERS as u32 {
            let vmid = owner as u16 + 1;
            assert_eq!(space.acquire(OwnerId(owner)), Ok(grant(vmid, false, None)));
        }
        let extra = OwnerId(100);
        assert_eq!(space.acquire(extra), Err(VmidError::Exhausted { running: MAX_OWNERS, usable: 255 }));
        space.release(OwnerId(3)).unwrap();
        space.release(OwnerId(5)).unwrap();
        // Owner 3 stopped first: it loses its entry, the new VM gets a VMID
        // never granted (no purge), and 3's VMID is free but dirty.
        assert_eq!(space.acquire(extra), Ok(grant(17, false, Some(OwnerId(3)))));
        space.release(extra).unwrap();
        assert_eq!(space.acquire(OwnerId(3)), Ok(grant(18, false, Some(OwnerId(5)))));
        assert_eq!(space.generation(), 2);
    }

    #[test]
    fn width_is_the_hardware_one_unless_narrowed() {
        assert_eq!(VmidSpace::width(8, None), 8);
        assert_eq!(VmidSpace::width(16, None), 16);
        assert_eq!(VmidSpace::width(16, Some(2)), 2);
        assert_eq!(VmidSpace::width(8, Some(12)), 8, "never wider than the CPU");
        assert_eq!(VmidSpace::width(8, Some(0)), 8);
        assert_eq!((VmidSpace::new(0).bits(), VmidSpace::new(17).bits()), (1, 16));
        assert_eq!(VmidSpace::new(16).usable(), 65535);
    }

    /// One vCPU run: between `acquire` and `release`.
    #[derive(Clone, Debug)]
    struct Run {
        owner: OwnerId,
        vmid: Vmid,
        /// Granted with `flush`, not purged yet: not in its guest yet.
        purge_owed: bool,
    }

    #[derive(Clone, Copy, Debug)]
    enum Op {
        /// A vCPU of this owner (index into the owners) starts.
        Acquire(usize),
        /// The run (index, modulo the runs owing one) purges and enters its
        /// guest, confirming the purge or not.
        Purge(usize, bool),
        /// The run (index, modulo the runs) stops.
        Release(usize),
        /// This owner is destroyed.
        Forget(usize),
    }

    /// A hypervisor using a `VmidSpace`, with a model of the TLB: for each
    /// VMID, which VMs' translations it may hold since its last purge.
    #[derive(Clone, Debug)]
    struct Sim {
        space: VmidSpace,
        owners: std::vec::Vec<OwnerId>,
        reserved: std::vec::Vec<u16>,
        runs: std::vec::Vec<Run>,
        tlb: std::collections::BTreeMap<u16, std::collections::BTreeSet<OwnerId>>,
        granted: std::collections::BTreeSet<u16>,
    }

    impl Sim {
        fn new(bits: u8, owners: usize, reserved: &[u16]) -> Self {
            let mut space = VmidSpace::new(bits);
            let mut kept = std::vec::Vec::new();
            for &v in reserved {
                if space.reserve(Vmid(v)).is_ok() {
                    kept.push(v);
                }
            }
            let owners = (0..owners as u32).map(|o| OwnerId(o * 7 + 1)).collect();
            Self {
                space,
                owners,
                reserved: kept,
                runs: std::vec::Vec::new(),
                tlb: Default::default(),
                granted: Default::default(),
            }
        }

        fn running(&self, owner: OwnerId) -> usize {
            self.runs.iter().filter(|r| r.owner == owner).count()
        }

        /// The run's guest starts translating under its VMID: the TLB must
        /// hold nobody else's translations there.
        fn enter(&mut self, owner: OwnerId, vmid: Vmid) {
            let cached = self.tlb.entry(vmid.0).or_default();
            assert!(cached.iter().all(|&o| o == owner), "{owner:?} runs under {vmid:?} over {cached:?}'s entries");
            cached.insert(owner);
        }

        fn step(&mut self, op: Op) {
            let holders: std::vec::Vec<_> = self.owners.iter().map(|&o| self.space.vmid_of(o)).collect();
            let generation = self.space.generation();
            match op {
                Op::Acquire(i) => {
                    let owner = self.owners[i % self.owners.len()];
                    let before = self.space.vmid_of(owner);
                    match self.space.acquire(owner) {
                        Ok(g) => {
                            assert!(g.vmid.0 != 0 && u32::from(g.vmid.0) < 1 << self.space.bits(), "{g:?}");
                            assert!(!self.reserved.contains(&g.vmid.0), "reserved {g:?}");
                            if let Some(kept) = before {
                                assert_eq!((g.vmid, g.evicted), (kept, None), "a holder keeps its VMID");
                            } else if !g.flush {
                                assert!(!self.granted.contains(&g.vmid.0), "{g:?}: granted before, no flush");
                            }
                            self.granted.insert(g.vmid.0);
                            match g.evicted {
                                Some(lost) => {
                                    assert_ne!(lost, owner);
                                    assert_eq!(self.running(lost), 0, "{lost:?} was running");
                                    assert!(before.is_none() && self.space.vmid_of(lost).is_none());
                                    assert_eq!(self.space.generation(), generation + 1);
                                }
                                None => assert_eq!(self.space.generation(), generation),
                            }
                            if !g.flush {
                                self.enter(owner, g.vmid);
                            }
                            self.runs.push(Run { owner, vmid: g.vmid, purge_owed: g.flush });
                        }
                        Err(VmidError::Exhausted { running, usable }) => {
                            assert!(before.is_none());
                            assert_eq!(usable, self.space.usable());
                            let held: std::vec::Vec<_> =
                                self.owners.iter().filter(|&&o| self.space.vmid_of(o).is_some()).collect();
                            assert!(held.iter().all(|&&o| self.running(o) > 0), "a stopped VM could give its VMID");
                            assert_eq!(held.len(), running);
                            assert_eq!(running, MAX_OWNERS.min(usable as usize), "a VMID was free");
                        }
                        Err(e) => panic!("acquire: {e:?}"),
                    }
                }
                Op::Purge(i, confirm) => {
                    let owing: std::vec::Vec<_> = (0..self.runs.len()).filter(|&r| self.runs[r].purge_owed).collect();
                    if owing.is_empty() {
                        return;
                    }
                    let run = &mut self.runs[owing[i % owing.len()]];
                    run.purge_owed = false;
                    let (owner, vmid) = (run.owner, run.vmid);
                    self.tlb.entry(vmid.0).or_default().clear();
                    if confirm {
                        self.space.purged(owner, vmid);
                    }
                    self.enter(owner, vmid);
                }
                Op::Release(i) => {
                    if self.runs.is_empty() {
                        let owner = self.owners[i % self.owners.len()];
                        assert_eq!(self.space.release(owner), Err(VmidError::NotRunning(owner)));
                        return;
                    }
                    let run = self.runs.remove(i % self.runs.len());
                    self.space.release(run.owner).unwrap();
                }
                Op::Forget(i) => {
                    let owner = self.owners[i % self.owners.len()];
                    let before = self.space.vmid_of(owner);
                    if self.running(owner) > 0 {
                        assert_eq!(self.space.forget(owner), Err(VmidError::Running(owner)));
                        assert_eq!(self.space.vmid_of(owner), before);
                    } else {
                        assert_eq!(self.space.forget(owner), Ok(before));
                        assert_eq!(self.space.vmid_of(owner), None);
                    }
                }
            }
            self.check(&holders);
        }

        /// After every step: VMIDs are unique, running VMs kept theirs, and
        /// only an acquiring VM's victim lost one.
        fn check(&self, before: &[Option<Vmid>]) {
            let mut seen = std::collections::BTreeSet::new();
            for (&owner, &was) in self.owners.iter().zip(before) {
                let now = self.space.vmid_of(owner);
                if let Some(vmid) = now {
                    assert!(seen.insert(vmid), "{vmid:?} held twice");
                }
                assert_eq!(self.space.running(owner) as usize, self.running(owner), "{owner:?}");
                for run in self.runs.iter().filter(|r| r.owner == owner) {
                    assert_eq!(now, Some(run.vmid), "{owner:?} lost its VMID while running");
                }
                if was.is_some() && now != was {
                    assert_eq!(self.running(owner), 0);
                }
            }
        }
    }

    /// Every order of starting, stopping and destroying five one-vCPU VMs
    /// in a 2-bit space (VMIDs 1..=3), to a depth, purging at once.
    #[test]
    fn two_bit_space_every_order_of_five_vms() {
        fn explore(sim: &Sim, depth: usize, leaves: &mut usize) {
            if depth == 0 {
                *leaves += 1;
                return;
            }
            for (i, &owner) in sim.owners.iter().enumerate() {
                let ops: &[Op] = if sim.running(owner) > 0 {
                    &[Op::Release(usize::MAX)]
                } else if sim.space.vmid_of(owner).is_some() {
                    &[Op::Acquire(i), Op::Forget(i)]
                } else {
                    &[Op::Acquire(i)]
                };
                for &op in ops {
                    let mut next = sim.clone();
                    let op = match op {
                        Op::Release(_) => Op::Release(next.runs.iter().position(|r| r.owner == owner).unwrap()),
                        op => op,
                    };
                    next.step(op);
                    next.step(Op::Purge(0, true));
                    explore(&next, depth - 1, leaves);
                }
            }
        }
        for reserved in [&[][..], &[2]] {
            let mut leaves = 0;
            explore(&Sim::new(2, 5, reserved), 7, &mut leaves);
            assert!(leaves > 100_000, "{leaves}");
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..20usize).prop_map(Op::Acquire),
            2 => (any::<usize>(), any::<bool>()).prop_map(|(i, c)| Op::Purge(i, c)),
            3 => any::<usize>().prop_map(Op::Release),
            1 => (0..20usize).prop_map(Op::Forget),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Random VMs with several vCPUs each, deferred purges, narrow and
        /// full-width spaces (the latter limited by the owner table).
        #[test]
        fn vmid_space_invariants_hold(
            bits in prop_oneof![1..=4u8, Just(8u8)],
            owners in 1..=20usize,
            reserved in proptest::collection::vec(0..20u16, 0..3),
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let mut sim = Sim::new(bits, owners, &reserved);
            for op in ops {
                sim.step(op);
            }
        }
    }
}
