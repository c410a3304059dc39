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
use aarch64_paging::paging::{PageTable, Stage2 as Stage2Regime, Translation};
use aarch64_paging::Mapping;
use alloc::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use core::ptr::NonNull;
use platform::arch::regs::{pa_range_bits, ID_AA64MMFR0_PARANGE};
use platform::board::MemRegion;
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

/// One VM's stage 2: its tables and the IPA space they cover. The VMID
/// that tags its TLB entries is the VM's ([`crate::mm::vmid`]).
pub struct Stage2 {
    tables: Mapping<DirectMap, Stage2Regime>,
    geometry: Geometry,
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
    pub fn new(ram: MemRegion, devices: &[MemRegion], ipa_end: u64) -> Result<Self, Stage2Error> {
        let end = devices.iter().chain([&ram]).map(MemRegion::end).max().unwrap_or(0).max(ipa_end);
        let pa_bits = pa_range_bits(ID_AA64MMFR0_PARANGE.get(ID_AA64MMFR0_EL1.get()));
        let geometry = policy::geometry(pa_bits, end).map_err(Stage2Error::Geometry)?;
        let mut tables = Mapping::new(DirectMap, geometry.root_level, Stage2Regime);
        policy::map_identity(&mut tables, ram.base, ram.size, policy::ram_attributes()).map_err(Stage2Error::Map)?;
        for device in devices {
            policy::map_identity(&mut tables, device.base, device.size, policy::device_attributes())
                .map_err(Stage2Error::Map)?;
        }
        // Live from the first vCPU's entry on: changes must break before
        // make, which `aarch64-paging` then does.
        tables.mark_active();
        Ok(Self { tables, geometry })
    }

    /// Bits of IPA, and the level the walk starts at (for the log).
    pub fn shape(&self) -> (u32, usize) {
        (self.geometry.ipa_bits, self.geometry.root_level)
    }

    /// Sets this CPU's `VTCR_EL2` for these tables and returns the root's
    /// PA for `VTTBR_EL2`, which [`crate::mm::vmid::enter`] loads with the
    /// VM's VMID.
    pub fn prepare_this_cpu(&self) -> u64 {
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
        self.tables.root_address().0 as u64
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
        policy::map_at(&mut self.tables, ipa, pa, size, policy::device_attributes()).map_err(Stage2Error::Map)
    }

    /// Maps `size` bytes of RAM at PA `pa` at IPA `ipa` (a portal's shared
    /// memory, where the VM's BAR2 puts it; the caller checked the place).
    pub fn map_ram(&mut self, ipa: u64, pa: u64, size: u64) -> Result<(), Stage2Error> {
        policy::map_at(&mut self.tables, ipa, pa, size, policy::ram_attributes()).map_err(Stage2Error::Map)
    }

    /// Unmaps `[start, end)` (this CPU's current VMID must be this VM's):
    /// `aarch64-paging` clears each entry and issues `TLBI IPAS2E1IS` per
    /// entry with a `DSB`; then the combined stage-1+2 entries go with
    /// `TLBI VMALLE1IS`, completed by `DSB ISH; ISB`.
    pub fn unmap(&mut self, start: u64, end: u64) -> Result<(), Stage2Error> {
        policy::unmap(&mut self.tables, start, end).map_err(Stage2Error::Map)?;
        // SAFETY: TLB invalidation for the current VMID only drops cached
        // translations.
        unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", "isb", options(nostack)) };
        Ok(())
    }
}
