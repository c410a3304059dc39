//! The guest side of the address-space scan checks: stage-1 maps of the
//! guest-stub's own, with known contents, for the hypervisor to scan.
//!
//! Each map is a `TTBR0_EL1` space built with `platform::paging` (EL1&0
//! descriptors). It identity-maps what the stub needs while its MMU is on
//! (guest RAM, the console, the MMIO test device) and, at [`TEST_BASE`],
//! the test region of its [`Layout`]:
//!
//! - [`Layout::Known`] (39-bit space): a 1 GiB block, 2 MiB blocks and
//!   4 KiB pages, and holes at every level: level 1 (the next gigabyte),
//!   level 2 (a 2 MiB gap), level 3 (a 4 KiB gap);
//! - [`Layout::LongRun`] (39-bit space): one run of [`LONG_RUN_PAGES`]
//!   4 KiB pages, VA- and IPA-contiguous and alike: one region that takes
//!   more probes than one `SCAN` call may make, so a scan must resume in
//!   the middle of it;
//! - [`Layout::Dense`] (48-bit space, four levels of tables): the worst
//!   case of one `SCAN` call, [`DENSE_PAGES`] pages whose attributes
//!   alternate, so that every probe walks four levels and ends a region.
//!
//! [`expected`] lists what a correct scan must report. The stub's MMU is on
//! only inside [`with_mmu`].

use platform::addr::{PhysAddr, VirtAddr};
use platform::hypercall::SCAN_PROBE_BUDGET;
use platform::paging::{self, Attributes, MapError, MemoryType, Regime, StaticPool, Table, UserAccess};
use spin::Mutex;

/// The VA width of the 39-bit maps (a level-1 root table).
pub const VA_BITS: u32 = 39;
/// Where the test region starts (256 GiB: level-1 index 256 of a 39-bit
/// space).
pub const TEST_BASE: u64 = 0x40_0000_0000;
const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
const PAGE: u64 = 4096;
/// Pages of [`Layout::LongRun`]'s one region: two and a half calls' worth
/// of probes.
pub const LONG_RUN_PAGES: u64 = SCAN_PROBE_BUDGET * 5 / 2;
/// Pages of [`Layout::Dense`]: one call's probes.
pub const DENSE_PAGES: u64 = SCAN_PROBE_BUDGET;

static POOL: Mutex<[Table; 24]> = Mutex::new([const { Table::ZERO }; 24]);

/// Which test region a map holds (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Known,
    LongRun,
    Dense,
}

impl Layout {
    /// The VA width of the map's `TTBR0` range.
    pub const fn va_bits(self) -> u32 {
        match self {
            Self::Known | Self::LongRun => VA_BITS,
            Self::Dense => 48,
        }
    }
}

/// A built map: its root (an IPA) and VA width.
#[derive(Clone, Copy, Debug)]
pub struct Map {
    pub root: u64,
    pub va_bits: u32,
}

/// One mapping a correct scan reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub va: u64,
    pub len: u64,
    pub ipa: u64,
    pub writable: bool,
    /// Executable at EL1 (nothing here is executable at EL0).
    pub executable: bool,
}

const fn data(writable: bool, memory: MemoryType) -> Attributes {
    Attributes { memory, writable, executable: false, user: UserAccess::None, user_executable: false, global: true }
}

/// The test region's mappings, given the first 1 GiB-aligned IPA at or below
/// guest RAM (the IPAs need not be guest RAM: a scan only translates).
fn test_region(ram_base: u64) -> [Expected; 5] {
    let gib = ram_base & !(GIB - 1);
    [
        // A level-1 block; the next gigabyte is a level-1 hole.
        Expected { va: TEST_BASE, len: GIB, ipa: gib, writable: true, executable: false },
        // Level-2 blocks with a level-2 hole between them and discontiguous
        // IPAs (so they cannot merge).
        Expected { va: TEST_BASE + 2 * GIB, len: MIB2, ipa: gib + 2 * MIB2, writable: true, executable: false },
        Expected {
            va: TEST_BASE + 2 * GIB + 2 * MIB2,
            len: MIB2,
            ipa: gib + 8 * MIB2,
            writable: true,
            executable: false,
        },
        // Level-3 pages: two contiguous ones (one run), a level-3 hole, and
        // a read-only executable page (different attributes: a run of its
        // own).
        Expected {
            va: TEST_BASE + 2 * GIB + 3 * MIB2,
            len: 2 * PAGE,
            ipa: gib + 3 * MIB2,
            writable: true,
            executable: false,
        },
        Expected {
            va: TEST_BASE + 2 * GIB + 3 * MIB2 + 3 * PAGE,
            len: PAGE,
            ipa: gib + 5 * MIB2,
            writable: false,
            executable: true,
        },
    ]
}

/// [`Layout::LongRun`]'s region: IPAs one page off a 2 MiB boundary where
/// the VAs are on one, so that the run is made of pages, not blocks.
fn long_run(ram_base: u64) -> Expected {
    let gib = ram_base & !(GIB - 1);
    Expected { va: TEST_BASE, len: LONG_RUN_PAGES * PAGE, ipa: gib + PAGE, writable: true, executable: false }
}

/// [`Layout::Dense`]'s pages: contiguous IPAs, writable and read-only in
/// turn (each page a region of its own).
fn dense_page(ram_base: u64, index: u64) -> Expected {
    let gib = ram_base & !(GIB - 1);
    let va = TEST_BASE + index * PAGE;
    Expected { va, len: PAGE, ipa: gib + index * PAGE, writable: index.is_multiple_of(2), executable: false }
}

/// Everything a scan of the TTBR0 range of a `layout` map must report, in
/// VA order: identity maps below `TEST_BASE`, then the test region
/// ([`Layout::Dense`]'s pages are not listed: too many).
pub fn expected(env: &crate::Env, layout: Layout) -> heapless_list::List {
    let mut list = heapless_list::List::default();
    // (base, length, executable): only RAM holds code.
    let mut identity = [
        env.console.map(|c| (c, PAGE, false)),
        Some((env.ram_base, env.ram_end - env.ram_base, true)),
        env.test_mmio.map(|(base, len)| (base, len, false)),
    ];
    identity.sort_unstable_by_key(|r| r.map_or(u64::MAX, |(base, _, _)| base));
    for (base, len, executable) in identity.into_iter().flatten() {
        list.push(Expected { va: base, len, ipa: base, writable: true, executable });
    }
    match layout {
        Layout::Known => test_region(env.ram_base).into_iter().for_each(|e| list.push(e)),
        Layout::LongRun => list.push(long_run(env.ram_base)),
        Layout::Dense => {}
    }
    list
}

/// A small fixed-capacity list (no allocator in the stub).
pub mod heapless_list {
    use super::Expected;

    #[derive(Default)]
    pub struct List {
        items: [Option<Expected>; 8],
        len: usize,
    }

    impl List {
        pub fn push(&mut self, e: Expected) {
            if let Some(slot) = self.items.get_mut(self.len) {
                *slot = Some(e);
                self.len += 1;
            }
        }

        pub fn iter(&self) -> impl Iterator<Item = &Expected> {
            self.items.iter().take(self.len).flatten()
        }

        pub fn len(&self) -> usize {
            self.len
        }
    }
}

/// Builds the map of `layout` (its root is an IPA: the stub's MMU is off).
pub fn build(env: &crate::Env, layout: Layout) -> Result<Map, MapError> {
    let va_bits = layout.va_bits();
    let mut pages = POOL.lock();
    for page in pages.iter_mut() {
        *page = Table::ZERO;
    }
    let base = pages.as_ptr() as u64;
    let mut pool = StaticPool::new(&mut pages[..], PhysAddr(base)).map_err(|_| MapError::PoolExhausted)?;
    let root = paging::PagePool::alloc_table(&mut pool).ok_or(MapError::PoolExhausted)?;
    let mut map = |va: u64, ipa: u64, len: u64, attrs: Attributes| {
        paging::map(&mut pool, root, va_bits, Regime::El1And0, VirtAddr(va), PhysAddr(ipa), len, attrs)
    };
    // Identity: the stub runs from guest RAM (code too, so executable).
    let ram = Attributes { executable: true, ..data(true, MemoryType::Normal) };
    map(env.ram_base, env.ram_base, env.ram_end - env.ram_base, ram)?;
    if let Some(console) = env.console {
        map(console, console, PAGE, data(true, MemoryType::Device))?;
    }
    if let Some((base, size)) = env.test_mmio {
        map(base, base, size, data(true, MemoryType::Device))?;
    }
    let mut map_expected = |e: Expected| {
        map(e.va, e.ipa, e.len, Attributes { executable: e.executable, ..data(e.writable, MemoryType::Normal) })
    };
    match layout {
        Layout::Known => test_region(env.ram_base).into_iter().try_for_each(&mut map_expected)?,
        Layout::LongRun => map_expected(long_run(env.ram_base))?,
        Layout::Dense => (0..DENSE_PAGES).try_for_each(|i| map_expected(dense_page(env.ram_base, i)))?,
    }
    Ok(Map { root: root.0, va_bits })
}

/// `TCR_EL1` for a `va_bits` TTBR0 range: write-back inner-shareable walks,
/// 4 KiB granule, no TTBR1 walks (EPD1), 40-bit IPA (every CPU we run on
/// has it).
const fn tcr_for(va_bits: u32) -> u64 {
    (64 - va_bits as u64) | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (1 << 23) | (0b010 << 32)
}
/// `SCTLR_EL1.M`, `.C`, `.I`.
const SCTLR_MMU_CACHES: u64 = (1 << 0) | (1 << 2) | (1 << 12);

/// Runs `f` with the stub's MMU on over `map`, then turns it off again and
/// restores the translation registers.
pub fn with_mmu<R>(map: &Map, f: impl FnOnce() -> R) -> R {
    let (sctlr, tcr, ttbr0, mair): (u64, u64, u64, u64);
    // SAFETY: reading the stub's own translation controls.
    unsafe {
        core::arch::asm!(
            "mrs {s}, sctlr_el1", "mrs {t}, tcr_el1", "mrs {b}, ttbr0_el1", "mrs {m}, mair_el1",
            s = out(reg) sctlr, t = out(reg) tcr, b = out(reg) ttbr0, m = out(reg) mair, options(nomem, nostack),
        );
    }
    // SAFETY: the map identity-maps all the stub uses (its RAM, console and
    // test device), so execution and data continue unchanged once the MMU
    // is on; the TLB is clean for the new tables.
    unsafe {
        core::arch::asm!(
            "msr mair_el1, {m}", "msr tcr_el1, {t}", "msr ttbr0_el1, {b}", "isb",
            "tlbi vmalle1", "dsb nsh", "isb",
            "msr sctlr_el1, {s}", "isb",
            m = in(reg) platform::paging::MAIR_EL2_VALUE, t = in(reg) tcr_for(map.va_bits), b = in(reg) map.root,
            s = in(reg) sctlr | SCTLR_MMU_CACHES, options(nostack),
        );
    }
    let result = f();
    // SAFETY: back to the MMU-off state the rest of the stub expects.
    unsafe {
        core::arch::asm!(
            "msr sctlr_el1, {s}", "isb",
            "msr tcr_el1, {t}", "msr ttbr0_el1, {b}", "msr mair_el1, {m}", "isb",
            "tlbi vmalle1", "dsb nsh", "isb",
            s = in(reg) sctlr, t = in(reg) tcr, b = in(reg) ttbr0, m = in(reg) mair, options(nostack),
        );
    }
    result
}
