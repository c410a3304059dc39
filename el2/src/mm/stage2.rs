//! A VM's stage-2 translation: its RAM and passthrough device pages
//! identity-mapped (IPA = PA); every other IPA is a hole that faults into
//! EL2, where MMIO emulation or an injected abort answers it. Another VM's
//! RAM, the hypervisor's and the monitor's memory, and devices the VM was
//! not given are such holes.
//!
//! Policy (IPA size, attributes, unmapping, VMIDs) is `platform::stage2`;
//! the tables are `aarch64-paging`'s `Stage2` regime, whose table pages come
//! from the heap and which EL2 reaches through the direct map
//! ([`DirectMap`]), since EL2 has no identity map. The IPA space is the
//! smallest the guest's memory map needs that the CPU's physical address
//! range allows.

use crate::arch::layout::{phys_to_virt, virt_to_phys};
use aarch64_cpu::registers::{Readable, Writeable, ID_AA64MMFR0_EL1, VTCR_EL2};
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion};
use aarch64_paging::paging::{PageTable, Stage2 as Stage2Regime, Translation};
use aarch64_paging::Mapping;
use alloc::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use alloc::vec::Vec;
use core::ptr::NonNull;
use platform::arch::regs::{pa_range_bits, ID_AA64MMFR0_PARANGE};
use platform::board::MemRegion;
use platform::mbec::{Exec, Tree};
use platform::stage2::{self as policy, Geometry};

/// Stage-2 table pages: heap pages, reached through the direct map.
pub struct DirectMap;

const TABLE_LAYOUT: Layout = match Layout::from_size_align(4096, 4096) {
    Ok(layout) => layout,
    Err(_) => panic!("a page is a valid layout"),
};

impl Translation<Stage2Attributes> for DirectMap {
    fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
        // SAFETY: TABLE_LAYOUT has a non-zero size.
        let page = unsafe { alloc_zeroed(TABLE_LAYOUT) };
        let Some(table) = NonNull::new(page.cast::<PageTable<Stage2Attributes>>()) else {
            handle_alloc_error(TABLE_LAYOUT)
        };
        (table, PhysicalAddress(virt_to_phys(page as u64) as usize))
    }

    unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        // SAFETY: the caller promises `table` came from `allocate_table`,
        // which used the global allocator with TABLE_LAYOUT.
        unsafe { dealloc(table.as_ptr().cast(), TABLE_LAYOUT) }
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
        let va = phys_to_virt(pa.0 as u64) as *mut PageTable<Stage2Attributes>;
        NonNull::new(va).unwrap_or(NonNull::dangling())
    }
}

/// How a VM with kernel integrity expresses execute permission per mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pages {
    /// FEAT_XNX's `XN[1:0]`, in one tree.
    Xnx,
    /// One tree per executable class (`platform::mbec`).
    Emulated,
}

/// A RAM page's class: who may execute it, and whether the guest may
/// write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageClass {
    pub exec: Exec,
    pub writable: bool,
}

impl PageClass {
    const fn pack(self) -> u8 {
        self.exec as u8 | if self.writable { 0 } else { 4 }
    }

    fn unpack(byte: u8) -> Self {
        Self { exec: Exec::from_code(u64::from(byte & 3)).unwrap_or(Exec::Both), writable: byte & 4 == 0 }
    }
}

/// One VM's stage 2: its tables and the IPA space they cover. The VMID
/// that tags its TLB entries is the VM's ([`crate::mm::vmid`]).
pub struct Stage2 {
    /// The tree every vCPU uses, or with [`Pages::Emulated`] one per
    /// `Tree`, at `Tree::index`.
    trees: Vec<Mapping<DirectMap, Stage2Regime>>,
    geometry: Geometry,
    /// With kernel integrity: the RAM, and its pages' classes (packed).
    pages: Option<(Pages, MemRegion, Vec<u8>)>,
}

const PAGE: u64 = 4096;
/// What one level-3 table maps.
const L2_SPAN: u64 = 2 << 20;
/// The descriptor bits a page's class sets: `S2AP` and `XN[1:0]`.
const PERMISSION_BITS: u64 = (3 << 6) | (3 << 53);

/// The direct-map address of the level-3 table that maps `ipa` in the
/// tables rooted at PA `root` (page-granular RAM: every RAM page has one),
/// following table descriptors from `root_level`.
fn leaf_table(root: u64, root_level: usize, ipa: u64) -> Option<u64> {
    let mut table = root;
    for level in root_level..3 {
        let shift = 12 + 9 * (3 - level as u64);
        // The root may be several concatenated tables: its index is not
        // masked to 512 entries.
        let index = if level == root_level { ipa >> shift } else { (ipa >> shift) & 511 };
        // SAFETY: a table of this VM's stage 2 (heap pages, through the
        // direct map); `index` is inside it for an IPA inside the VM's space.
        let descriptor = unsafe { core::ptr::read_volatile((phys_to_virt(table) as *const u64).add(index as usize)) };
        if descriptor & 0b11 != 0b11 {
            return None;
        }
        table = descriptor & 0x0000_ffff_ffff_f000;
    }
    Some(phys_to_virt(table))
}

/// The stage-2 attributes of a RAM page of class `class` in tree `tree`
/// (`None`: the one tree, FEAT_XNX's bits).
fn page_attributes(class: PageClass, tree: Option<Tree>) -> Stage2Attributes {
    let xn = match tree {
        None => class.exec.xnx_bits(),
        Some(tree) => platform::mbec::emulated_xn(class.exec, tree),
    };
    let access = if class.writable { Stage2Attributes::S2AP_ACCESS_RW } else { Stage2Attributes::S2AP_ACCESS_RO };
    let base = policy::ram_attributes().difference(Stage2Attributes::S2AP_ACCESS_RW).union(access);
    base.union(Stage2Attributes::from_bits_retain(xn as usize))
}

/// Why pages' classes were not changed.
#[derive(Debug)]
pub enum ClassError {
    /// The VM has no kernel integrity: its RAM has no classes.
    NoIntegrity,
    /// A page is not the VM's RAM (or the range is not page-aligned).
    OutsideRam,
}

impl core::fmt::Display for ClassError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoIntegrity => f.write_str("the VM has no kernel integrity"),
            Self::OutsideRam => f.write_str("not pages of the VM's RAM"),
        }
    }
}

#[derive(Debug)]
pub enum Stage2Error {
    Map(aarch64_paging::MapError),
    Geometry(policy::GeometryError),
}

impl core::fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(e) => write!(f, "stage-2 mapping failed: {e}"),
            Self::Geometry(e) => write!(f, "stage-2 IPA space: {e}"),
        }
    }
}

impl Stage2 {
    /// Builds tables mapping `ram` and the passthrough `devices`
    /// identity-mapped; the IPA space reaches at least `ipa_end` (emulated
    /// windows beyond them stay unmapped). Everything else is a hole.
    ///
    /// With `pages` (kernel integrity), RAM is mapped page by page, every
    /// page executable by both modes and writable, in one tree or (emulated)
    /// in one per executable class.
    pub fn new(ram: MemRegion, devices: &[MemRegion], ipa_end: u64, pages: Option<Pages>) -> Result<Self, Stage2Error> {
        let end = devices.iter().chain([&ram]).map(MemRegion::end).max().unwrap_or(0).max(ipa_end);
        let pa_bits = pa_range_bits(ID_AA64MMFR0_PARANGE.get(ID_AA64MMFR0_EL1.get()));
        let geometry = policy::geometry(pa_bits, end).map_err(Stage2Error::Geometry)?;
        let trees: Vec<Option<Tree>> = match pages {
            Some(Pages::Emulated) => Tree::ALL.iter().copied().map(Some).collect(),
            _ => alloc::vec![None],
        };
        let initial = PageClass { exec: Exec::Both, writable: true };
        let mut mappings = Vec::new();
        for tree in trees {
            let mut tables = Mapping::new(DirectMap, geometry.root_level, Stage2Regime);
            if pages.is_some() {
                let range = MemoryRegion::new(ram.base as usize, ram.end() as usize);
                tables
                    .map_range(
                        &range,
                        PhysicalAddress(ram.base as usize),
                        page_attributes(initial, tree),
                        Constraints::NO_BLOCK_MAPPINGS,
                    )
                    .map_err(Stage2Error::Map)?;
            } else {
                policy::map_identity(&mut tables, ram.base, ram.size, policy::ram_attributes())
                    .map_err(Stage2Error::Map)?;
            }
            for device in devices {
                policy::map_identity(&mut tables, device.base, device.size, policy::device_attributes())
                    .map_err(Stage2Error::Map)?;
            }
            // Live from the first vCPU's entry on: changes must break before
            // make, which `aarch64-paging` then does.
            tables.mark_active();
            mappings.push(tables);
        }
        let classes = pages.map(|p| (p, ram, alloc::vec![initial.pack(); (ram.size / PAGE) as usize]));
        Ok(Self { trees: mappings, geometry, pages: classes })
    }

    /// How the VM's pages carry their classes, if it has kernel integrity.
    pub fn pages(&self) -> Option<Pages> {
        self.pages.as_ref().map(|(p, _, _)| *p)
    }

    /// The class of the RAM page at `ipa` (kernel integrity only).
    pub fn page_class(&self, ipa: u64) -> Option<PageClass> {
        let (_, ram, classes) = self.pages.as_ref()?;
        let index = usize::try_from(ipa.checked_sub(ram.base)? / PAGE).ok()?;
        classes.get(index).copied().map(PageClass::unpack)
    }

    /// Gives `count` RAM pages from `ipa` the class `class(ipa)` each, in
    /// every tree, then invalidates the VM's stage-1+2 TLB entries on every
    /// CPU (this CPU's current VMID must be the VM's, or the VM must not
    /// be running anywhere). Pages outside RAM are refused.
    pub fn set_classes(&mut self, ipa: u64, count: u64, class: impl Fn(u64) -> PageClass) -> Result<(), ClassError> {
        self.update_classes(ipa, count, class)?;
        self.flush();
        Ok(())
    }

    fn update_classes(&mut self, ipa: u64, count: u64, class: impl Fn(u64) -> PageClass) -> Result<(), ClassError> {
        let Some((pages, ram, classes)) = self.pages.as_mut() else { return Err(ClassError::NoIntegrity) };
        let end = count.checked_mul(PAGE).and_then(|len| ipa.checked_add(len)).ok_or(ClassError::OutsideRam)?;
        if !ipa.is_multiple_of(PAGE) || ipa < ram.base || end > ram.end() {
            return Err(ClassError::OutsideRam);
        }
        let first = ((ipa - ram.base) / PAGE) as usize;
        for (k, slot) in classes.iter_mut().skip(first).take(count as usize).enumerate() {
            *slot = class(ipa + k as u64 * PAGE).pack();
        }
        let emulated = *pages == Pages::Emulated;
        let root_level = self.geometry.root_level;
        for (i, tables) in self.trees.iter().enumerate() {
            let tree = if emulated { Tree::ALL.get(i).copied() } else { None };
            let root = tables.root_address().0 as u64;
            let mut page = ipa;
            while page < end {
                // One level-3 table at a time: up to the end of its 2 MiB.
                let table = leaf_table(root, root_level, page).ok_or(ClassError::OutsideRam)?;
                let stop = end.min((page | (L2_SPAN - 1)).saturating_add(1));
                while page < stop {
                    let index = ((page >> 12) & 511) as usize;
                    let bits = page_attributes(class(page), tree).bits() as u64;
                    // SAFETY: `table` is a level-3 table of this VM's stage 2
                    // (heap pages, reached through the direct map) and
                    // `index` < 512; one 64-bit store per descriptor, which
                    // changes only its permissions (allowed on a live entry
                    // without break-before-make).
                    unsafe {
                        let entry = (table as *mut u64).add(index);
                        let old = core::ptr::read_volatile(entry);
                        core::ptr::write_volatile(entry, (old & !PERMISSION_BITS) | (bits & PERMISSION_BITS));
                    }
                    page += PAGE;
                }
            }
        }
        Ok(())
    }

    /// Bits of IPA, and the level the walk starts at (for the log).
    pub fn shape(&self) -> (u32, usize) {
        (self.geometry.ipa_bits, self.geometry.root_level)
    }

    /// Sets this CPU's `VTCR_EL2` for these tables and returns the root's
    /// PA for `VTTBR_EL2` (of `tree`'s tables when the VM has several),
    /// which [`crate::mm::vmid::enter`] loads with the VM's VMID.
    pub fn prepare_this_cpu(&self, tree: Tree) -> u64 {
        let parange = ID_AA64MMFR0_PARANGE.get(ID_AA64MMFR0_EL1.get()).min(5);
        VTCR_EL2.write(
            VTCR_EL2::RES1::SET
                + VTCR_EL2::PS.val(parange)
                + VTCR_EL2::TG0::Granule4KB
                + VTCR_EL2::SH0::Inner
                + VTCR_EL2::ORGN0::NormalWBRAWA
                + VTCR_EL2::IRGN0::NormalWBRAWA
                + VTCR_EL2::SL0.val(self.geometry.sl0())
                + VTCR_EL2::T0SZ.val(self.geometry.t0sz()),
        );
        self.root(tree)
    }

    /// Gives the RAM page at `ipa` class `class` in every tree, without
    /// TLB maintenance: the caller does [`Stage2::flush`] before the guest
    /// runs again (many pages, one flush).
    pub fn set_class_unflushed(&mut self, ipa: u64, class: PageClass) -> Result<(), ClassError> {
        self.update_classes(ipa, 1, |_| class)
    }

    /// Gives `count` RAM pages from `ipa` execute class `exec`, each keeping
    /// whether the guest may write it, without TLB maintenance (the lock:
    /// every page of the VM at once).
    pub fn set_exec_unflushed(&mut self, ipa: u64, count: u64, exec: Exec) -> Result<(), ClassError> {
        let Some((_, ram, classes)) = self.pages.as_ref() else { return Err(ClassError::NoIntegrity) };
        let (base, classes) = (ram.base, classes.clone());
        self.update_classes(ipa, count, |page| {
            let index = ((page - base) / PAGE) as usize;
            let writable = classes.get(index).is_none_or(|&c| PageClass::unpack(c).writable);
            PageClass { exec, writable }
        })
    }

    /// Invalidates the VM's stage-1+2 TLB entries on every CPU (this CPU's
    /// current VMID must be the VM's, or the VM must not be running).
    pub fn flush(&self) {
        // SAFETY: TLB invalidation only drops cached translations: the
        // VM's stage-2 entries for every IPA, and the combined ones.
        unsafe { core::arch::asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb", options(nostack)) };
    }

    /// The root of `tree`'s tables (of the one tree if the VM has one).
    pub fn root(&self, tree: Tree) -> u64 {
        let tables = self.trees.get(tree.index()).or(self.trees.first());
        tables.map_or(0, |t| t.root_address().0 as u64)
    }

    /// One past the last IPA of the VM's address space.
    pub fn ipa_end(&self) -> u64 {
        1u64.checked_shl(self.geometry.ipa_bits).unwrap_or(u64::MAX)
    }

    /// Maps the device window at PA `pa` (`size` bytes) at IPA `ipa`, where a
    /// guest moved it (the caller checked the place with
    /// `platform::stage2::check_window`), or where a GICv2 guest's DT puts
    /// its CPU interface (the host's `GICV` frame). New entries replace
    /// invalid ones, so no TLB entry can be stale.
    pub fn map_device(&mut self, ipa: u64, pa: u64, size: u64) -> Result<(), Stage2Error> {
        for tables in &mut self.trees {
            policy::map_at(tables, ipa, pa, size, policy::device_attributes()).map_err(Stage2Error::Map)?;
        }
        Ok(())
    }

    /// Maps `size` bytes of RAM at PA `pa` at IPA `ipa` (a portal's shared
    /// memory, where the VM's BAR2 puts it; the caller checked the place).
    ///
    /// In a VM with kernel integrity this memory is data and user code
    /// only: the kernel never gets to execute memory another VM can write.
    pub fn map_ram(&mut self, ipa: u64, pa: u64, size: u64) -> Result<(), Stage2Error> {
        let pages = self.pages();
        let shared = PageClass { exec: Exec::UserOnly, writable: true };
        for (i, tables) in self.trees.iter_mut().enumerate() {
            let attributes = match (pages, Tree::ALL.get(i)) {
                (Some(Pages::Emulated), Some(&tree)) => page_attributes(shared, Some(tree)),
                (Some(Pages::Xnx), _) => page_attributes(shared, None),
                _ => policy::ram_attributes(),
            };
            policy::map_at(tables, ipa, pa, size, attributes).map_err(Stage2Error::Map)?;
        }
        Ok(())
    }

    /// Unmaps `[start, end)` (this CPU's current VMID must be this VM's):
    /// `aarch64-paging` clears each entry and issues `TLBI IPAS2E1IS` per
    /// entry with a `DSB`; then the combined stage-1+2 entries go with
    /// `TLBI VMALLE1IS`, completed by `DSB ISH; ISB`.
    pub fn unmap(&mut self, start: u64, end: u64) -> Result<(), Stage2Error> {
        for tables in &mut self.trees {
            policy::unmap(tables, start, end).map_err(Stage2Error::Map)?;
        }
        // SAFETY: TLB invalidation for the current VMID only drops cached
        // translations.
        unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", "isb", options(nostack)) };
        Ok(())
    }
}
