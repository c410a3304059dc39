//! Physical memory: what the hypervisor keeps, what becomes its heap, and
//! what the guest gets.
//!
//! Free RAM is the DTB's RAM minus everything already spoken for: the block
//! the monitor reserved for us (image, guest-stub copy, handoff), the DTB,
//! and the DTB's own reservations. The heap is carved from the top of the
//! largest free region; the rest of that region, 2 MiB aligned so stage 2
//! can use block mappings, becomes guest RAM.

use buddy_system_allocator::LockedHeap;
use platform::board::{free_regions, Board, BoardError, MemRegion};
use platform::handoff::Handoff;

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

const HEAP_SIZE: u64 = 16 * 1024 * 1024;
const BLOCK: u64 = 2 * 1024 * 1024;
const PAGE: u64 = 4096;
/// Guests smaller than this are not worth starting.
const MIN_GUEST_RAM: u64 = 16 * 1024 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct MemoryPlan {
    pub heap: MemRegion,
    pub guest_ram: MemRegion,
}

#[derive(Debug)]
pub enum PlanError {
    Regions(BoardError),
    TooLittleRam { largest_free: u64 },
}

impl core::fmt::Display for PlanError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Regions(e) => write!(f, "cannot compute free RAM: {e}"),
            Self::TooLittleRam { largest_free } => write!(
                f,
                "RAM too small: the largest free RAM region is {largest_free:#x} bytes, the hypervisor's heap and the smallest guest need {:#x}",
                HEAP_SIZE + MIN_GUEST_RAM
            ),
        }
    }
}

const fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}
const fn align_down(v: u64, a: u64) -> u64 {
    v & !(a - 1)
}

/// Splits free RAM into heap and guest RAM.
pub fn plan(board: &Board, handoff: &Handoff) -> Result<MemoryPlan, PlanError> {
    let dtb = MemRegion::new(
        align_down(handoff.dtb.base, PAGE),
        align_up(handoff.dtb.end(), PAGE) - align_down(handoff.dtb.base, PAGE),
    );
    let ours = MemRegion::new(handoff.reserved.base, handoff.reserved.size);
    let reserved = board.reserved.iter().copied().chain([dtb, ours]);
    let free = free_regions(&board.ram, reserved).map_err(PlanError::Regions)?;
    let largest = free.iter().max_by_key(|r| r.size).copied().unwrap_or_default();

    let heap_top = align_down(largest.end(), PAGE);
    let heap_base = heap_top.saturating_sub(HEAP_SIZE);
    let guest_base = align_up(largest.base, BLOCK);
    let guest_end = align_down(heap_base, BLOCK);
    if heap_base < largest.base || guest_end < guest_base + MIN_GUEST_RAM {
        return Err(PlanError::TooLittleRam { largest_free: largest.size });
    }
    Ok(MemoryPlan {
        heap: MemRegion::new(heap_base, heap_top - heap_base),
        guest_ram: MemRegion::new(guest_base, guest_end - guest_base),
    })
}

/// Gives the heap its memory, through the direct map.
///
/// # Safety
///
/// `region` must be RAM that nothing else uses, mapped by the direct map,
/// and this must be called once.
pub unsafe fn init_heap(region: MemRegion) {
    let start = crate::arch::layout::phys_to_virt(region.base) as usize;
    // SAFETY: forwarded from this function's contract.
    unsafe { HEAP.lock().init(start, region.size as usize) };
}
