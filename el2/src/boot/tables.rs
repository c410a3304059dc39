//! The hypervisor's stage-1 translation tables, built in stage 1 (MMU off)
//! from a page pool in .bss with `platform::paging` (whose module doc says
//! why the hypervisor has its own builder).
//!
//! The roots:
//! - **kernel**: the image at its VA (code executable, read-only data
//!   read-only, the rest writable and never executable), the direct map of
//!   RAM and of the console's window, and EL0's 39-bit range as a subtree.
//!   No identity map: once this root is live, physical addresses are not
//!   addresses any more.
//! - **one per CPU**: a copy of the kernel root sharing every table except
//!   the path to the PRDA's fixed VA, where each maps its own page
//!   ([`crate::mm::prda`]). These are what the CPUs actually run on.
//! - **user**: that subtree, the level-1 table EL0's range starts at, which
//!   is also part of the kernel's hierarchy (one hierarchy, two widths).
//! - **intermediate**: the third address space of `remap=intermediate`:
//!   only the trampoline section, mapped at both its PA and its VA.
//!
//! Mappings use 48-bit table offsets ([`layout::table_va`]); the scheme
//! decides which `TTBR` each root goes in.

use crate::arch::layout::{self, Scheme};
use platform::addr::{PhysAddr, VirtAddr};
use platform::board::{Board, MemRegion, MAX_CPUS};
use platform::handoff::Handoff;
use platform::paging::{self, Attributes, MapError, MemoryType, PagePool, Regime, StaticPool, Table, UserAccess};
use spin::Mutex;

/// Tables shared by every CPU: the kernel root and the image's, the direct
/// map's, the console's and the EL0 service's paths, the intermediate space
/// (generous: the count depends on how the RAM regions align).
const SHARED_TABLES: usize = 32;
/// Each CPU's own path to its PRDA: a root and one table per level below.
const PER_CPU_TABLES: usize = 4;
/// Pages for all of the hypervisor's stage-1 tables.
const POOL_PAGES: usize = SHARED_TABLES + PER_CPU_TABLES * MAX_CPUS;
static POOL: Mutex<[Table; POOL_PAGES]> = Mutex::new([const { Table([0; 512]) }; POOL_PAGES]);

/// The roots the switch installs (physical addresses).
#[derive(Clone, Copy, Debug)]
pub struct Roots {
    /// Per CPU slot: the kernel root with that CPU's PRDA.
    pub per_cpu: [u64; MAX_CPUS],
    pub user: u64,
    pub intermediate: u64,
}

extern "C" {
    static __image_base: u8;
    static __exec_end: u8;
    static __data_start: u8;
}

const fn kernel(memory: MemoryType, writable: bool, executable: bool) -> Attributes {
    Attributes { memory, writable, executable, user: UserAccess::None, user_executable: false, global: true }
}

/// Builds the roots for `cpus` CPU slots. Runs in stage 1: the pool's
/// address is its PA.
pub fn build(board: &Board, handoff: &Handoff, scheme: Scheme, cpus: usize) -> Result<Roots, MapError> {
    let regime = match scheme {
        Scheme::Vhe => Regime::El2And0,
        Scheme::Nvhe => Regime::El2,
    };
    let bits = layout::EL2_VA_BITS;
    let mut pages = POOL.lock();
    let base_pa = pages.as_ptr() as u64;
    let mut pool = StaticPool::new(&mut pages[..], PhysAddr(base_pa)).map_err(|_| MapError::PoolExhausted)?;

    // Section boundaries, as addresses now (PAs) relative to the image start.
    let here = |symbol: &u8| symbol as *const u8 as u64;
    // SAFETY: linker-defined symbols; only their addresses are taken.
    let (start, exec_end, data_start) = unsafe { (here(&__image_base), here(&__exec_end), here(&__data_start)) };
    let image_end = start + handoff.hypervisor.mem_size;
    let image_va = layout::image_offset();
    let sections = [
        (start, exec_end, kernel(MemoryType::Normal, false, true)),
        (exec_end, data_start, kernel(MemoryType::Normal, false, false)),
        (data_start, image_end, kernel(MemoryType::Normal, true, false)),
    ];

    let kernel_root = pool.alloc_table().ok_or(MapError::PoolExhausted)?;
    let map = |pool: &mut StaticPool, root: PhysAddr, va: u64, pa: u64, len: u64, attrs| {
        paging::map(pool, root, bits, regime, VirtAddr(va), PhysAddr(pa), len, attrs)
    };
    for (from, to, attrs) in sections {
        map(&mut pool, kernel_root, image_va + (from - start), from, to - from, attrs)?;
    }
    for ram in board.ram.iter() {
        let ram_attrs = kernel(MemoryType::Normal, true, false);
        map(&mut pool, kernel_root, layout::direct_map_offset(ram.base), ram.base, ram.size, ram_attrs)?;
    }
    if let Some(uart) = board.console {
        let len = uart.size.next_multiple_of(platform::addr::PAGE_SIZE);
        let device = kernel(MemoryType::Device, true, false);
        map(&mut pool, kernel_root, layout::direct_map_offset(uart.base), uart.base, len, device)?;
    }
    // The GIC's distributor and this board's redistributors (one 128 KiB
    // frame pair per CPU), or a GICv2's CPU interface and virtual interface
    // control, for the hypervisor's own interrupt handling; the guest never
    // reaches them (its distributor is emulated, `crate::vm::vgic`, and a
    // GICv2 guest's CPU interface is the separate GICV frame).
    let gic = &board.gic;
    let gic_frames = gic.redistributors.first().map(|r| {
        let per_cpu = platform::vgic::GICR_STRIDE * board.cpus.len() as u64;
        MemRegion::new(r.base, r.size.min(per_cpu))
    });
    // (Their whole regions: an integration may repeat each 4 KiB page
    // over 64 KiB, `platform::gicv2::contiguous_offset`.)
    let v2_frames = [gic.cpu_interface, gic.hyp_interface];
    let v2_frames = v2_frames.into_iter().flatten().filter(|_| gic.version == platform::board::GicVersion::V2);
    // And fw_cfg, where the kernel and initrd of a Linux guest come from.
    for region in core::iter::once(gic.distributor).chain(gic_frames).chain(v2_frames).chain(board.fw_cfg) {
        let len = region.size.next_multiple_of(platform::addr::PAGE_SIZE);
        let device = kernel(MemoryType::Device, true, false);
        map(&mut pool, kernel_root, layout::direct_map_offset(region.base), region.base, len, device)?;
    }
    let user_root = paging::ensure_table(&mut pool, kernel_root, bits, VirtAddr(layout::USER_ALIAS_OFFSET), 1)?;
    map_el0_service(&mut pool, kernel_root, scheme, start, exec_end, data_start)?;

    let mut per_cpu = [0; MAX_CPUS];
    let prda_va = VirtAddr(layout::prda_offset());
    for (slot, root) in per_cpu.iter_mut().enumerate().take(cpus) {
        let page = crate::mm::prda::page_pa(slot).ok_or(MapError::PoolExhausted)?;
        let cpu_root = paging::clone_root(&mut pool, kernel_root)?;
        paging::unshare_path(&mut pool, cpu_root, bits, prda_va, paging::LAST_LEVEL)?;
        let data = kernel(MemoryType::Normal, true, false);
        map(&mut pool, cpu_root, prda_va.0, page, platform::addr::PAGE_SIZE, data)?;
        *root = cpu_root.0;
    }

    let intermediate = pool.alloc_table().ok_or(MapError::PoolExhausted)?;
    let (tramp_start, tramp_end) = crate::boot::switch::trampoline();
    let code = kernel(MemoryType::Normal, false, true);
    let len = tramp_end - tramp_start;
    map(&mut pool, intermediate, tramp_start, tramp_start, len, code)?;
    map(&mut pool, intermediate, image_va + (tramp_start - start), tramp_start, len, code)?;

    Ok(Roots { per_cpu, user: user_root.0, intermediate: intermediate.0 })
}

/// Maps the EL0 service's space ([`crate::mm::el0_memory`]) into the user subtree: EL0
/// address `va` is at kernel table offset `USER_ALIAS_OFFSET + va`. Entries
/// use the descriptor format of the regime EL0 runs in: EL2&0 under VHE,
/// EL1&0 under the split scheme (where the service's EL1 bounce vectors run
/// from the same code mapping, so it is executable at EL1 too). The kernel
/// never accesses these addresses itself.
fn map_el0_service(
    pool: &mut StaticPool,
    kernel_root: PhysAddr,
    scheme: Scheme,
    image_start: u64,
    exec_end: u64,
    data_start: u64,
) -> Result<(), MapError> {
    use crate::mm::el0_memory::{va, OUTPUT_PAGES, PAGE, STACK_PAGES};
    let (regime, el1_executes) = match scheme {
        Scheme::Vhe => (Regime::El2And0, false),
        Scheme::Nvhe => (Regime::El1And0, true),
    };
    let user = |writable: bool, user_executable: bool, executable: bool| Attributes {
        memory: MemoryType::Normal,
        writable,
        executable,
        user: if writable { UserAccess::ReadWrite } else { UserAccess::ReadOnly },
        user_executable,
        global: true,
    };
    let (input, output, stack) = crate::mm::el0_memory::pages_pa();
    let page = PAGE as u64;
    let regions = [
        (va::TEXT, image_start, exec_end - image_start, user(false, true, el1_executes)),
        (va::TEXT + (exec_end - image_start), exec_end, data_start - exec_end, user(false, false, false)),
        (va::INPUT, input, page, user(true, false, false)),
        (va::OUTPUT, output, OUTPUT_PAGES as u64 * page, user(true, false, false)),
        (va::STACK, stack, STACK_PAGES as u64 * page, user(true, false, false)),
    ];
    for (el0_va, pa, len, attrs) in regions {
        let va = VirtAddr(layout::USER_ALIAS_OFFSET + el0_va);
        paging::map(pool, kernel_root, layout::EL2_VA_BITS, regime, va, PhysAddr(pa), len, attrs)?;
    }
    Ok(())
}
