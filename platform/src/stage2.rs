//! Stage-2 policy shared by the hypervisor and its host tests: the size of
//! a guest's IPA space, the attributes of what it maps, unmapping, and VMIDs.
//!
//! The tables themselves are `aarch64-paging`'s `Stage2` regime (the
//! hypervisor supplies the translation that reaches table pages). What is
//! decided here is pure and host-tested: which IPA width and start level a
//! guest needs given the CPU's physical-address range, which memory and
//! access attributes guest RAM and passthrough devices get, how a range is
//! unmapped (clearing `VALID` so break-before-make holds), and which VMIDs
//! are free.

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

#[cfg(test)]
mod tests {
    use super::*;
    use aarch64_paging::paging::PageTable;
    use core::ptr::NonNull;
    use std::alloc::{alloc_zeroed, dealloc, Layout};

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
}
