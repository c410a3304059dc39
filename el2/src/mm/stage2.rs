//! The guest's stage-2 translation: guest RAM and passthrough device pages
//! identity-mapped (IPA = PA); every other IPA is a hole that faults into
//! EL2, where MMIO emulation or an injected abort answers it.
//!
//! Policy (IPA size, attributes, unmapping, VMIDs) is `platform::stage2`;
//! the tables are `aarch64-paging`'s `Stage2` regime, whose table pages come
//! from the heap and which EL2 reaches through the direct map
//! ([`DirectMap`]), since EL2 has no identity map. The IPA space is the
//! smallest the guest's memory map needs that the CPU's physical address
//! range allows.

use crate::mm::layout::{phys_to_virt, virt_to_phys};
use aarch64_cpu::registers::{Readable, Writeable, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1, VTCR_EL2, VTTBR_EL2};
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{PageTable, Stage2, Translation};
use aarch64_paging::Mapping;
use alloc::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use core::ptr::NonNull;
use platform::arch::regs::{pa_range_bits, ID_AA64MMFR0_PARANGE};
use platform::board::MemRegion;
use platform::stage2::{self as policy, Geometry, Vmid, VmidAllocator};
use spin::{Mutex, Once};

/// `ID_AA64MMFR1_EL1.VMIDBits` = 0b0010: 16-bit VMIDs.
const VMID_BITS_16: u64 = 0b0010;

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

/// One guest's stage 2.
pub struct Vm {
    tables: Mapping<DirectMap, Stage2>,
    geometry: Geometry,
    vmid: Vmid,
}

static VM: Once<Mutex<Vm>> = Once::new();
static VMIDS: Mutex<VmidAllocator> = Mutex::new(VmidAllocator::new(false));

#[derive(Debug)]
pub enum Stage2Error {
    Map(aarch64_paging::MapError),
    Geometry(policy::GeometryError),
    NoVmid,
}

impl core::fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(e) => write!(f, "stage-2 mapping failed: {e}"),
            Self::Geometry(e) => write!(f, "stage-2 IPA space: {e}"),
            Self::NoVmid => write!(f, "no VMID left"),
        }
    }
}

/// Builds the guest's stage-2 tables: `guest_ram` and the passthrough
/// `devices`, identity-mapped; the IPA space reaches at least `ipa_end`
/// (emulated windows beyond them stay unmapped).
pub fn build(guest_ram: MemRegion, devices: &[MemRegion], ipa_end: u64) -> Result<(), Stage2Error> {
    let end = devices.iter().chain([&guest_ram]).map(MemRegion::end).max().unwrap_or(0).max(ipa_end);
    let pa_bits = pa_range_bits(ID_AA64MMFR0_PARANGE.get(ID_AA64MMFR0_EL1.get()));
    let geometry = policy::geometry(pa_bits, end).map_err(Stage2Error::Geometry)?;
    let vmid = {
        let mut vmids = VMIDS.lock();
        if ID_AA64MMFR1_EL1.read(ID_AA64MMFR1_EL1::VMIDBits) == VMID_BITS_16 {
            *vmids = VmidAllocator::new(true);
        }
        vmids.reserve(Vmid(crate::traps::el0::SERVICE_VMID));
        vmids.allocate().ok_or(Stage2Error::NoVmid)?
    };
    let mut tables = Mapping::new(DirectMap, geometry.root_level, Stage2);
    policy::map_identity(&mut tables, guest_ram.base, guest_ram.size, policy::ram_attributes())
        .map_err(Stage2Error::Map)?;
    for device in devices {
        policy::map_identity(&mut tables, device.base, device.size, policy::device_attributes())
            .map_err(Stage2Error::Map)?;
    }
    log::info!("stage 2: {}-bit IPA space from level {}, VMID {}", geometry.ipa_bits, geometry.root_level, vmid.0);
    VM.call_once(|| Mutex::new(Vm { tables, geometry, vmid }));
    Ok(())
}

/// Points this CPU's stage-2 translation at the guest's tables. Every CPU
/// that will run the guest calls it.
pub fn activate_on_this_cpu() {
    let Some(vm) = VM.get() else { return };
    let vm = vm.lock();
    let parange = ID_AA64MMFR0_PARANGE.get(ID_AA64MMFR0_EL1.get()).min(5);
    VTCR_EL2.write(
        VTCR_EL2::RES1::SET
            + VTCR_EL2::PS.val(parange)
            + VTCR_EL2::TG0::Granule4KB
            + VTCR_EL2::SH0::Inner
            + VTCR_EL2::ORGN0::NormalWBRAWA
            + VTCR_EL2::IRGN0::NormalWBRAWA
            + VTCR_EL2::SL0.val(vm.geometry.sl0())
            + VTCR_EL2::T0SZ.val(vm.geometry.t0sz()),
    );
    VTTBR_EL2.set(vm.tables.root_address().0 as u64 | vm.vmid.vttbr_bits());
    vm.tables.mark_active();
    // SAFETY: invalidating this VMID's stage-1+2 TLB entries only drops
    // cached translations; the new tables are complete.
    unsafe { core::arch::asm!("isb", "tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
}

/// One past the last IPA of the guest's address space (0 before `build`).
pub fn ipa_end() -> u64 {
    VM.get().map_or(0, |vm| 1u64.checked_shl(vm.lock().geometry.ipa_bits).unwrap_or(u64::MAX))
}

/// Maps the device window at PA `pa` (`size` bytes) at IPA `ipa`, where a
/// guest moved it (the caller checked the place with
/// `platform::stage2::check_window`). New entries replace invalid ones, so
/// no TLB entry can be stale.
pub fn map_device(ipa: u64, pa: u64, size: u64) -> Result<(), Stage2Error> {
    let Some(vm) = VM.get() else { return Ok(()) };
    let mut vm = vm.lock();
    policy::map_at(&mut vm.tables, ipa, pa, size, policy::device_attributes()).map_err(Stage2Error::Map)
}

/// Unmaps `[start, end)` from the guest (the current VMID must be the
/// guest's): `aarch64-paging` clears each entry and issues
/// `TLBI IPAS2E1IS` per entry with a `DSB`; then the combined stage-1+2
/// entries go with `TLBI VMALLE1IS`, completed by `DSB ISH; ISB`.
pub fn unmap(start: u64, end: u64) -> Result<(), Stage2Error> {
    let Some(vm) = VM.get() else { return Ok(()) };
    let mut vm = vm.lock();
    policy::unmap(&mut vm.tables, start, end).map_err(Stage2Error::Map)?;
    // SAFETY: TLB invalidation for the current VMID only drops cached
    // translations.
    unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", "isb", options(nostack)) };
    Ok(())
}
