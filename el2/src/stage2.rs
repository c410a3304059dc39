//! The guest's stage-2 translation: guest RAM and the passthrough console,
//! identity-mapped (IPA = PA); every other IPA faults into EL2.
//!
//! Tables come from `aarch64-paging`'s `Stage2` regime. Its table pages
//! come from the heap and EL2 reaches them through the direct map
//! ([`DirectMap`]), since EL2 has no identity map. The IPA space is 39 bits
//! (start at level 1 with a 4 KiB granule), which covers QEMU virt's RAM
//! and its high MMIO.

use aarch64_cpu::registers::{Readable, Writeable, ID_AA64MMFR0_EL1, VTCR_EL2, VTTBR_EL2};
use crate::layout::{phys_to_virt, virt_to_phys};
use aarch64_paging::descriptor::Stage2Attributes;
use aarch64_paging::descriptor::PhysicalAddress;
use aarch64_paging::paging::{Constraints, MemoryRegion, PageTable, Stage2, Translation};
use aarch64_paging::Mapping;
use alloc::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use core::ptr::NonNull;
use platform::arch::regs::ID_AA64MMFR0_PARANGE;
use platform::board::MemRegion;
use spin::Once;

/// Size of the guest's intermediate physical address space.
const IPA_BITS: u64 = 39;
/// The root table level for a 39-bit IPA space with 4 KiB pages.
const ROOT_LEVEL: usize = 1;
/// The VMID of the one guest.
const VMID: u64 = 1;
const VTTBR_VMID_SHIFT: u32 = 48;

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

static STAGE2: Once<spin::Mutex<Mapping<DirectMap, Stage2>>> = Once::new();

const fn normal_memory() -> Stage2Attributes {
    Stage2Attributes::VALID
        .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
        .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
        .union(Stage2Attributes::S2AP_ACCESS_RW)
        .union(Stage2Attributes::SH_INNER)
        .union(Stage2Attributes::ACCESS_FLAG)
}

const fn device_memory() -> Stage2Attributes {
    Stage2Attributes::VALID
        .union(Stage2Attributes::MEMATTR_DEVICE_nGnRE)
        .union(Stage2Attributes::S2AP_ACCESS_RW)
        .union(Stage2Attributes::ACCESS_FLAG)
        .union(Stage2Attributes::XN)
}

#[derive(Debug)]
pub struct Stage2Error(aarch64_paging::MapError);

impl core::fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "stage-2 mapping failed: {}", self.0)
    }
}

/// Builds the guest's stage-2 tables.
pub fn build(guest_ram: MemRegion, devices: &[MemRegion]) -> Result<(), Stage2Error> {
    // Guest IPA = PA for RAM and passthrough devices.
    let mut map = Mapping::new(DirectMap, ROOT_LEVEL, Stage2);
    let mut identity = |r: &MemRegion, attrs| {
        let range = MemoryRegion::new(r.base as usize, r.end() as usize);
        map.map_range(&range, PhysicalAddress(r.base as usize), attrs, Constraints::empty())
    };
    identity(&guest_ram, normal_memory()).map_err(Stage2Error)?;
    for device in devices {
        identity(device, device_memory()).map_err(Stage2Error)?;
    }
    STAGE2.call_once(|| spin::Mutex::new(map));
    Ok(())
}

/// Points this CPU's stage-2 translation at the tables. Every CPU that will
/// run the guest calls it.
pub fn activate_on_this_cpu() {
    let Some(map) = STAGE2.get() else { return };
    let map = map.lock();
    let parange = ID_AA64MMFR0_PARANGE.get(ID_AA64MMFR0_EL1.get()).min(5);
    VTCR_EL2.write(
        VTCR_EL2::RES1::SET
            + VTCR_EL2::PS.val(parange)
            + VTCR_EL2::TG0::Granule4KB
            + VTCR_EL2::SH0::Inner
            + VTCR_EL2::ORGN0::NormalWBRAWA
            + VTCR_EL2::IRGN0::NormalWBRAWA
            + VTCR_EL2::SL0::Granule4KBLevel1
            + VTCR_EL2::T0SZ.val(64 - IPA_BITS),
    );
    VTTBR_EL2.set(map.root_address().0 as u64 | (VMID << VTTBR_VMID_SHIFT));
    map.mark_active();
    // SAFETY: invalidating this VMID's stage-1+2 TLB entries only drops
    // cached translations; the new tables are complete.
    unsafe { core::arch::asm!("isb", "tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
}
