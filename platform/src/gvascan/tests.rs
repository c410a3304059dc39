//! Host tests for the scanner: simulated guest stage-1 tables built with
//! `paging::map` (4 KiB pages, 2 MiB and 1 GiB blocks, holes at every
//! level), a `Probe` on top of `paging::translate`, and checks of the
//! reported regions, the probe count and skips, the sink and budget limits,
//! the `SCAN` call's pieces (`scan_chunk`: joined, they are the whole scan;
//! its cursor), joining regions,
//! the top of the address space, the TTBR ranges, the buffer encoding and
//! `PAR_EL1` decoding. A page-by-page brute force over random tables is the
//! oracle for merging and range clipping.

use super::*;
use crate::addr::{PhysAddr, VirtAddr};
use crate::paging::{
    bits, map, translate, Attributes, Fault, FaultKind, MemoryType, PagePool, Regime, StaticPool, Table, UserAccess,
};

const K4: u64 = 4096;
const M2: u64 = 2 << 20;
const G1: u64 = 1 << 30;
const G512: u64 = 512 * G1;
const POOL_BASE: u64 = 0x7f00_0000;
const G: Granule4K = Granule4K;

// ---------------------------------------------------------------------------
// Attribute sets for the simulated guest, and what a descriptor read says.

const DATA: Attributes = Attributes::DATA;
const RODATA: Attributes = Attributes::RODATA;
const CODE: Attributes = Attributes::CODE;
const USER_RW: Attributes = Attributes {
    memory: MemoryType::Normal,
    writable: true,
    executable: false,
    user: UserAccess::ReadWrite,
    user_executable: false,
    global: false,
};
const USER_TEXT: Attributes = Attributes {
    memory: MemoryType::Normal,
    writable: false,
    executable: false,
    user: UserAccess::ReadOnly,
    user_executable: true,
    global: false,
};
const ALL: [Attributes; 5] = [DATA, RODATA, CODE, USER_RW, USER_TEXT];

/// The attributes a mapping made with `a` should be reported with, worked
/// out from the request (not from the descriptor).
fn expected(a: Attributes, know_exec: bool) -> Attrs {
    let user_rw = matches!(a.user, UserAccess::ReadWrite);
    Attrs {
        readable: true,
        writable_el1: Some(a.writable),
        user_readable: Some(!matches!(a.user, UserAccess::None)),
        writable_el0: Some(user_rw),
        executable_el1: know_exec.then_some(a.executable && !user_rw),
        executable_el0: know_exec.then_some(a.user_executable),
    }
}

/// What reading a leaf descriptor tells, with or without the execute
/// permissions (a probe that does not read descriptors cannot know them).
fn attrs_of(desc: u64, know_exec: bool) -> Attrs {
    let attrs = Attrs::from_stage1_leaf(desc);
    Attrs {
        executable_el1: attrs.executable_el1.filter(|_| know_exec),
        executable_el0: attrs.executable_el0.filter(|_| know_exec),
        ..attrs
    }
}

// ---------------------------------------------------------------------------
// A simulated guest and its probe

/// A guest's tables: one root in a pool, and the leaves mapped through it.
struct Guest {
    pages: Vec<Table>,
    used: usize,
    root: PhysAddr,
    va_bits: u32,
    /// (va, size, ipa, attributes) of every `map` call.
    leaves: Vec<(u64, u64, u64, Attributes)>,
}

impl Guest {
    fn new(va_bits: u32, tables: usize) -> Self {
        let mut pages = vec![Table::ZERO; tables];
        let mut pool = StaticPool::new(&mut pages, PhysAddr(POOL_BASE)).unwrap();
        let root = pool.alloc_table().unwrap();
        let used = pool.used();
        Self { pages, used, root, va_bits, leaves: Vec::new() }
    }

    fn pool(&mut self) -> StaticPool<'_> {
        StaticPool::with_used(&mut self.pages, PhysAddr(POOL_BASE), self.used).unwrap()
    }

    fn map(&mut self, va: u64, size: u64, ipa: u64, attrs: Attributes) {
        let (root, va_bits) = (self.root, self.va_bits);
        let mut pool = self.pool();
        map(&mut pool, root, va_bits, Regime::El1And0, VirtAddr(va), PhysAddr(ipa), size, attrs)
            .unwrap_or_else(|e| panic!("map {va:#x}+{size:#x}: {e}"));
        self.used = pool.used();
        self.leaves.push((va, size, ipa, attrs));
    }

    /// Maps 4 KiB pages one at a time (so that contiguous IPAs still get
    /// pages, not a block).
    fn map_pages(&mut self, va: u64, count: u64, ipa: u64, attrs: Attributes) {
        for i in 0..count {
            self.map(va + i * K4, K4, ipa + i * K4, attrs);
        }
    }

    fn probe(&mut self, hint: bool) -> TableProbe<'_> {
        let (root, va_bits, used) = (self.root, self.va_bits, self.used);
        TableProbe {
            pool: StaticPool::with_used(&mut self.pages, PhysAddr(POOL_BASE), used).unwrap(),
            root,
            va_bits,
            hint,
            log: Vec::new(),
        }
    }

    /// The regions the mapped leaves should merge into, within
    /// `first..=last`, worked out from the `map` calls alone.
    fn expected_regions(&self, first: u64, last: u64, know_exec: bool) -> Vec<Region> {
        let mut leaves = self.leaves.clone();
        leaves.sort_by_key(|l| l.0);
        let mut regions: Vec<Region> = Vec::new();
        for (va, size, ipa, a) in leaves {
            let leaf_last = va + (size - 1);
            if leaf_last < first || va > last {
                continue;
            }
            let start = va.max(first);
            let end = leaf_last.min(last);
            let ipa = ipa + (start - va);
            let attrs = expected(a, know_exec);
            if let Some(prev) = regions.last_mut() {
                if prev.va_last.checked_add(1) == Some(start)
                    && prev.ipa + (start - prev.va_start) == ipa
                    && prev.attrs == attrs
                {
                    prev.va_last = end;
                    continue;
                }
            }
            regions.push(Region { va_start: start, va_last: end, ipa, attrs });
        }
        regions
    }
}

/// `Probe` by software walk: the fault level of `paging::translate` stands
/// in for `PAR_EL1.FST`; with `hint` it also reads the leaf (level, XN
/// bits), as a descriptor-reading hypervisor probe would, without it it
/// reports what `AT` alone can.
struct TableProbe<'a> {
    pool: StaticPool<'a>,
    root: PhysAddr,
    va_bits: u32,
    hint: bool,
    log: Vec<(u64, ProbeResult)>,
}

impl Probe for TableProbe<'_> {
    fn probe(&mut self, va: u64) -> ProbeResult {
        assert_eq!(va % K4, 0, "unaligned probe {va:#x}");
        let result = match translate(&mut self.pool, self.root, self.va_bits, VirtAddr(va)) {
            Ok(walk) => ProbeResult::Mapped {
                ipa: walk.pa.0 & !(K4 - 1),
                attrs: attrs_of(walk.descriptor, self.hint),
                leaf_level: self.hint.then_some(walk.level),
            },
            Err(Fault { level, kind: FaultKind::Translation }) => ProbeResult::Fault { level },
            Err(other) => panic!("walk of {va:#x}: {other}"),
        };
        self.log.push((va, result));
        result
    }
}

/// Scans into a vector.
fn collect(probe: &mut impl Probe, range: impl RangeBounds<u64>) -> (Vec<Region>, Result<ScanStats, ScanError>) {
    let mut regions = Vec::new();
    let result = scan(probe, range, G, &mut |r| {
        regions.push(r);
        Ok(())
    });
    (regions, result)
}

/// Checks the probe log: each probe is at the end of the span the previous
/// one covered (the leaf with a hint, the page without, the faulting
/// entry), and returns the levels of the faults met.
fn check_skips(log: &[(u64, ProbeResult)], first: u64) -> Vec<u8> {
    assert_eq!(log.first().map(|l| l.0), Some(first));
    let mut fault_levels = Vec::new();
    for pair in log.windows(2) {
        let (va, result) = pair[0];
        let size = match result {
            ProbeResult::Mapped { leaf_level, .. } => leaf_level.map_or(K4, |l| G.leaf_size(l).unwrap()),
            ProbeResult::Fault { level } => {
                fault_levels.push(level);
                G.entry_size(level).unwrap()
            }
        };
        assert_eq!(
            pair[1].0,
            (va & !(size - 1)) + size,
            "after {va:#x} ({result:?}) the next probe should skip {size:#x}"
        );
    }
    fault_levels
}

/// Joins regions that a budget split (VA-, IPA-contiguous, same attrs).
fn rejoin(regions: Vec<Region>) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    for r in regions {
        if let Some(prev) = out.last_mut() {
            if prev.va_last + 1 == r.va_start
                && prev.ipa + (r.va_start - prev.va_start) == r.ipa
                && prev.attrs == r.attrs
            {
                prev.va_last = r.va_last;
                continue;
            }
        }
        out.push(r);
    }
    out
}

fn region(va_start: u64, size: u64, ipa: u64, a: Attributes) -> Region {
    Region { va_start, va_last: va_start + (size - 1), ipa, attrs: expected(a, true) }
}

// ---------------------------------------------------------------------------
// The known map: a 48-bit TTBR0 space with pages, blocks and holes at every
// level.

/// The L3 table of the known map: at 3 GiB + 8 MiB.
const L3_VA: u64 = 3 * G1 + 4 * M2;

fn known_map() -> Guest {
    let mut g = Guest::new(48, 32);
    // L0 entry 0. L1 entry 0 is a hole; entries 1 and 2 are 1 GiB blocks
    // with contiguous IPAs and equal attributes (one region).
    g.map(G1, 2 * G1, 0x1_0000_0000, DATA);
    // L1 entry 3: a table of 2 MiB blocks: two that merge, a third with
    // other attributes, then a hole (entry 3).
    g.map(3 * G1, 2 * M2, 0x2_0000_0000, RODATA);
    g.map(3 * G1 + 2 * M2, M2, 0x2_0040_0000, CODE);
    // L2 entry 4: a table of pages: three that merge, a hole, one after
    // the hole, one at a discontiguous IPA, one with other attributes,
    // then holes to the end of the table, the L1 table and the L0 entry.
    g.map_pages(L3_VA, 3, 0x3000_0000, USER_RW);
    g.map_pages(L3_VA + 4 * K4, 1, 0x3000_4000, USER_RW);
    g.map_pages(L3_VA + 5 * K4, 1, 0x3100_0000, USER_RW);
    g.map_pages(L3_VA + 6 * K4, 1, 0x3100_1000, USER_TEXT);
    // L0 entries 1, 2: holes. L0 entry 3: a page at the very end of its
    // first L1 entry (the walk meets 511 L2 and 511 L3 holes first), and a
    // 1 GiB block in its last L1 entry.
    g.map_pages(3 * G512 + G1 - K4, 1, 0x4000_0000, DATA);
    g.map(3 * G512 + 511 * G1, G1, 0x80_0000_0000, RODATA);
    // L0 entries 4..=510: holes. L0 entry 511: the last page of the space.
    g.map_pages(512 * G512 - K4, 1, 0x5000_0000, USER_TEXT);
    g
}

fn known_regions() -> Vec<Region> {
    vec![
        region(G1, 2 * G1, 0x1_0000_0000, DATA),
        region(3 * G1, 2 * M2, 0x2_0000_0000, RODATA),
        region(3 * G1 + 2 * M2, M2, 0x2_0040_0000, CODE),
        region(L3_VA, 3 * K4, 0x3000_0000, USER_RW),
        region(L3_VA + 4 * K4, K4, 0x3000_4000, USER_RW),
        region(L3_VA + 5 * K4, K4, 0x3100_0000, USER_RW),
        region(L3_VA + 6 * K4, K4, 0x3100_1000, USER_TEXT),
        region(3 * G512 + G1 - K4, K4, 0x4000_0000, DATA),
        region(3 * G512 + 511 * G1, G1, 0x80_0000_0000, RODATA),
        region(512 * G512 - K4, K4, 0x5000_0000, USER_TEXT),
    ]
}

/// One probe per entry met (see the layout in `known_map`).
const KNOWN_PROBES: u64 = {
    // L0 entry 0: L1 hole, two blocks; L2: three blocks, a hole, the L3
    // table (7 pages + 505 holes), 507 L2 holes; 508 L1 holes.
    let l0_0 = 3 + 4 + 512 + 507 + 508;
    // L0 entry 3: 511 L2 holes, 511 L3 holes, the page, 510 L1 holes, the
    // block.
    let l0_3 = 511 + 511 + 1 + 510 + 1;
    // L0 entry 511: 511 holes at each of L1, L2 and L3, then the page.
    let l0_511 = 3 * 511 + 1;
    // L0 entries 1, 2 and 4..=510.
    let l0_holes = 2 + 507;
    l0_0 + l0_3 + l0_511 + l0_holes
};

#[test]
fn known_map_reports_exactly_the_mapped_ranges() {
    let mut g = known_map();
    assert_eq!(g.expected_regions(0, (1 << 48) - 1, true), known_regions());
    let (t0, _) = ttbr_ranges(16, 16).unwrap();
    let mut probe = g.probe(true);
    let (regions, result) = collect(&mut probe, t0);
    assert_eq!(regions, known_regions());
    let stats = result.unwrap();
    assert_eq!(
        stats,
        ScanStats {
            probes: KNOWN_PROBES,
            regions: 10,
            // [0, 1G); the L2 hole; the L3 hole; L3 entry 7 to the page in
            // L0 entry 3; L1 entries 1..=510 there; L0 entry 3's end to the
            // last page.
            holes: 6,
        }
    );
    assert_eq!(probe.log.len() as u64, stats.probes);
}

#[test]
fn faults_skip_by_the_faulting_level_and_leaves_by_their_size() {
    let mut g = known_map();
    let mut probe = g.probe(true);
    let (_, result) = collect(&mut probe, 0..1 << 48);
    result.unwrap();
    let levels = check_skips(&probe.log, 0);
    for level in 0..=3 {
        assert!(levels.contains(&level), "no fault at level {level}");
    }
    // Spot checks: the first probe faults at L1 and the next is at 1 GiB;
    // the 1 GiB blocks take one probe each.
    assert_eq!(probe.log[0], (0, ProbeResult::Fault { level: 1 }));
    assert_eq!(probe.log[1].0, G1);
    assert_eq!(probe.log[2].0, 2 * G1);
    assert_eq!(probe.log[3].0, 3 * G1);
    // L0 holes are crossed 512 GiB at a time.
    assert!(probe.log.iter().any(|&(va, r)| va == G512 && r == ProbeResult::Fault { level: 0 }));
    assert!(probe.log.iter().any(|&(va, _)| va == 2 * G512));

    // Starting inside an entry: the first skip goes to that entry's end.
    let mut probe = g.probe(true);
    let (regions, result) = collect(&mut probe, 0x5000..2 * G1);
    assert_eq!(result.unwrap().probes, 2);
    assert_eq!(probe.log[0], (0x5000, ProbeResult::Fault { level: 1 }));
    assert_eq!(probe.log[1].0, G1);
    assert_eq!(regions, vec![region(G1, G1, 0x1_0000_0000, DATA)]);
}

#[test]
fn without_a_leaf_hint_blocks_are_stepped_page_by_page() {
    // What `AT` alone gives: no leaf level, no execute permissions.
    let mut g = known_map();
    let range = 0..4 * G1;
    let want = g.expected_regions(0, 4 * G1 - 1, false);
    let mut probe = g.probe(false);
    let (regions, result) = collect(&mut probe, range.clone());
    assert_eq!(regions, want);
    assert!(regions.iter().all(|r| r.attrs.executable_el1.is_none() && r.attrs.executable_el0.is_none()));
    check_skips(&probe.log, 0);
    // One probe per page of the blocks, one per entry otherwise: the L1
    // hole, 2 GiB + 6 MiB of blocks, the L2 hole, the 512-entry L3 table,
    // 507 L2 holes.
    let block_pages = (2 * G1 + 3 * M2) / K4;
    assert_eq!(result.unwrap().probes, 1 + block_pages + 1 + 512 + 507);

    let mut probe = g.probe(true);
    let (hinted, _) = collect(&mut probe, range);
    assert_eq!(hinted, g.expected_regions(0, 4 * G1 - 1, true));
}

/// Tables whose entries alternate between mappings and holes at every
/// level, as a guest that wants a cheap scan would lay them out.
fn alternating_map() -> Guest {
    let mut g = Guest::new(48, 16);
    let mut ipa = 0x100_0000_0000u64;
    let mut next_ipa = |align: u64| {
        // Never IPA-contiguous with the previous leaf.
        ipa = (ipa + align).next_multiple_of(align) + align;
        ipa
    };
    for l0 in [0u64, 2] {
        for l1 in 0..512u64 {
            let va = l0 * G512 + l1 * G1;
            match l1 % 2 {
                0 => g.map(va, G1, next_ipa(G1), ALL[(l1 / 2 % 5) as usize]),
                _ if l1 == 1 || l1 == 255 => {
                    for l2 in 0..512u64 {
                        let va = va + l2 * M2;
                        match l2 % 2 {
                            0 => g.map(va, M2, next_ipa(M2), ALL[(l2 / 2 % 5) as usize]),
                            _ if l2 == 3 => {
                                // Runs of three pages, then a hole.
                                for run in 0..128u64 {
                                    let ipa = next_ipa(K4);
                                    g.map_pages(va + run * 4 * K4, 3, ipa, ALL[(run % 5) as usize]);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    g
}

#[test]
fn probes_stay_within_four_per_region_or_hole_on_dense_tables() {
    let mut g = alternating_map();
    let range = 0..4 * G512;
    let expected = g.expected_regions(0, 4 * G512 - 1, true);
    let mut probe = g.probe(true);
    let (regions, result) = collect(&mut probe, range);
    let stats = result.unwrap();
    assert_eq!(regions, expected);
    assert_eq!(stats.regions, expected.len() as u64);
    assert!(stats.probes <= 4 * (stats.regions + stats.holes), "{stats:?}");
    check_skips(&probe.log, 0);
}

// ---------------------------------------------------------------------------
// Merging and splitting

#[test]
fn attribute_changes_split_regions() {
    let mut g = Guest::new(39, 8);
    // Contiguous VAs and IPAs; only the attributes change.
    g.map_pages(0x1000_0000, 2, 0x8000_0000, DATA);
    g.map_pages(0x1000_2000, 2, 0x8000_2000, RODATA);
    g.map_pages(0x1000_4000, 1, 0x8000_4000, DATA);
    // A 2 MiB block followed by IPA-contiguous pages of other attributes.
    g.map(0x2000_0000, M2, 0x9000_0000, USER_RW);
    g.map_pages(0x2020_0000, 1, 0x9020_0000, USER_TEXT);
    let mut probe = g.probe(true);
    let (regions, result) = collect(&mut probe, 0..1 << 39);
    assert_eq!(
        regions,
        vec![
            region(0x1000_0000, 2 * K4, 0x8000_0000, DATA),
            region(0x1000_2000, 2 * K4, 0x8000_2000, RODATA),
            region(0x1000_4000, K4, 0x8000_4000, DATA),
            region(0x2000_0000, M2, 0x9000_0000, USER_RW),
            region(0x2020_0000, K4, 0x9020_0000, USER_TEXT),
        ]
    );
    assert_eq!(result.unwrap().regions, 5);

    // Only the unknown execute permissions differ from what a full read
    // of the descriptors gives: regions that differ only there merge.
    let mut g = Guest::new(39, 8);
    g.map_pages(0x1000_0000, 1, 0x8000_0000, RODATA);
    g.map_pages(0x1000_1000, 1, 0x8000_1000, CODE);
    let mut probe = g.probe(false);
    let (regions, _) = collect(&mut probe, 0..1 << 39);
    assert_eq!(regions.len(), 1);
    let mut probe = g.probe(true);
    let (regions, _) = collect(&mut probe, 0..1 << 39);
    assert_eq!(regions.len(), 2);
}

#[test]
fn ipa_discontinuity_splits_regions() {
    let mut g = Guest::new(39, 8);
    g.map_pages(0x4000_0000, 2, 0x8000_0000, DATA);
    // VA-contiguous, but the IPA jumps forward, then backward.
    g.map_pages(0x4000_2000, 1, 0x8000_3000, DATA);
    g.map_pages(0x4000_3000, 1, 0x8000_1000, DATA);
    // Two 2 MiB blocks, VA-contiguous, IPA-discontiguous; then two that
    // are contiguous in both and merge.
    g.map(0x4020_0000, M2, 0xa000_0000, DATA);
    g.map(0x4040_0000, M2, 0xb000_0000, DATA);
    g.map(0x4060_0000, M2, 0xb020_0000, DATA);
    let mut probe = g.probe(true);
    let (regions, result) = collect(&mut probe, 0..1 << 39);
    assert_eq!(
        regions,
        vec![
            region(0x4000_0000, 2 * K4, 0x8000_0000, DATA),
            region(0x4000_2000, K4, 0x8000_3000, DATA),
            region(0x4000_3000, K4, 0x8000_1000, DATA),
            region(0x4020_0000, M2, 0xa000_0000, DATA),
            region(0x4040_0000, 2 * M2, 0xb000_0000, DATA),
        ]
    );
    let stats = result.unwrap();
    assert_eq!(stats.regions, 5);
    // Before 0x4000_0000, between the pages and the blocks, after.
    assert_eq!(stats.holes, 3);
}

// ---------------------------------------------------------------------------
// Range edges

#[test]
fn empty_ranges_cost_no_probe() {
    let mut g = known_map();
    let mut probe = g.probe(true);
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 2 * G1..G1;
    for stats in [
        collect(&mut probe, 0..0).1,
        collect(&mut probe, G1..G1).1,
        collect(&mut probe, reversed).1,
        collect(&mut probe, 0x5..0x5).1,
        collect(&mut probe, (Bound::Excluded(u64::MAX), Bound::Unbounded)).1,
        collect(&mut probe, ..0).1,
    ] {
        assert_eq!(stats, Ok(ScanStats::default()));
    }
    assert!(probe.log.is_empty());
}

#[test]
fn misaligned_ranges_are_refused() {
    let mut g = known_map();
    let mut probe = g.probe(true);
    assert_eq!(collect(&mut probe, 0x800..0x2000).1, Err(ScanError::Misaligned { start: 0x800, last: 0x1fff }));
    assert_eq!(collect(&mut probe, 0..0x1800).1, Err(ScanError::Misaligned { start: 0, last: 0x17ff }));
    assert_eq!(collect(&mut probe, 0..=0x1000).1, Err(ScanError::Misaligned { start: 0, last: 0x1000 }));
    assert!(probe.log.is_empty());
}

#[test]
fn ttbr1_range_up_to_the_last_byte() {
    // A 39-bit TTBR1 space: its last page, a 2 MiB block below it, and a
    // 1 GiB block at its start.
    let mut g = Guest::new(39, 8);
    let (_, t1) = ttbr_ranges(25, 25).unwrap();
    assert_eq!(t1, 0xffff_ff80_0000_0000..=u64::MAX);
    g.map(0xffff_ff80_0000_0000, G1, 0x4000_0000, DATA);
    g.map(u64::MAX - 3 * M2 + 1, M2, 0x8000_0000, RODATA);
    g.map_pages(u64::MAX - K4 + 1, 1, 0x9000_0000, DATA);
    let mut probe = g.probe(true);
    let (regions, result) = collect(&mut probe, t1.clone());
    assert_eq!(
        regions,
        vec![
            region(0xffff_ff80_0000_0000, G1, 0x4000_0000, DATA),
            region(u64::MAX - 3 * M2 + 1, M2, 0x8000_0000, RODATA),
            region(u64::MAX - K4 + 1, K4, 0x9000_0000, DATA),
        ]
    );
    let last = regions.last().unwrap();
    assert_eq!(last.va_last, u64::MAX);
    assert_eq!(last.va_end(), None);
    assert_eq!(last.size(), Some(K4));
    // Block, 510 L1 holes, 509 L2 holes, the block, one L2 hole, 511 L3
    // holes, the page.
    assert_eq!(result.unwrap().probes, 1 + 510 + 509 + 1 + 1 + 511 + 1);
    check_skips(&probe.log, *t1.start());

    // Ending in a hole at the top: the last fault covers u64::MAX.
    let mut g = Guest::new(39, 8);
    g.map(0xffff_ff80_0000_0000, G1, 0x4000_0000, DATA);
    let mut probe = g.probe(true);
    let (regions, result) = collect(&mut probe, t1);
    assert_eq!(regions.len(), 1);
    assert_eq!(result.unwrap(), ScanStats { probes: 512, regions: 1, holes: 1 });
    assert_eq!(probe.log.last().copied(), Some((u64::MAX - G1 + 1, ProbeResult::Fault { level: 1 })));
}

/// A probe of a made-up 64-bit space: level-0 holes below the last 512 GiB,
/// level-1 holes in it below the top 4 GiB, and 1 GiB blocks with
/// contiguous IPAs up to `u64::MAX`.
struct TopProbe;

impl Probe for TopProbe {
    fn probe(&mut self, va: u64) -> ProbeResult {
        let base = u64::MAX - 4 * G1 + 1;
        if va >= base {
            ProbeResult::Mapped { ipa: 0x1_0000_0000 + (va - base), attrs: Attrs::READ_ONLY_KNOWN, leaf_level: Some(1) }
        } else if va > u64::MAX - G512 {
            ProbeResult::Fault { level: 1 }
        } else {
            ProbeResult::Fault { level: 0 }
        }
    }
}

#[test]
fn unbounded_scan_ends_at_u64_max() {
    // From the second-to-last 512 GiB, unbounded above.
    let (regions, result) = collect(&mut TopProbe, u64::MAX - 2 * G512 + 1..);
    assert_eq!(
        regions,
        vec![Region {
            va_start: u64::MAX - 4 * G1 + 1,
            va_last: u64::MAX,
            ipa: 0x1_0000_0000,
            attrs: Attrs::READ_ONLY_KNOWN,
        }]
    );
    // One L0 hole, 508 L1 holes, four blocks.
    assert_eq!(result.unwrap(), ScanStats { probes: 1 + 508 + 4, regions: 1, holes: 1 });
    // The same through `..=u64::MAX` and starting in the last block.
    let (regions, result) = collect(&mut TopProbe, u64::MAX - K4 + 1..=u64::MAX);
    assert_eq!(result.unwrap().probes, 1);
    assert_eq!(regions[0].va_range(), u64::MAX - K4 + 1..=u64::MAX);
    assert_eq!(regions[0].ipa, 0x1_0000_0000 + 4 * G1 - K4);
}

// ---------------------------------------------------------------------------
// Limits: buffer full and probe budget

#[test]
fn buffer_full_says_how_many_were_written_and_where_to_resume() {
    let mut g = known_map();
    let all = known_regions();
    for capacity in 0..all.len() {
        let mut probe = g.probe(true);
        let mut written = Vec::new();
        let result = scan(&mut probe, 0..1 << 48, G, &mut |r| {
            if written.len() == capacity {
                return Err(Full);
            }
            written.push(r);
            Ok(())
        });
        let Err(ScanError::BufferFull(partial)) = result else {
            panic!("capacity {capacity}: {result:?}");
        };
        assert_eq!(partial.written(), capacity as u64);
        assert_eq!(written[..], all[..capacity]);
        assert_eq!(partial.resume_at, all[capacity].va_start);
        assert!(partial.stats.probes <= probe.log.len() as u64);

        // Resuming there reports exactly the rest.
        let mut probe = g.probe(true);
        let (rest, result) = collect(&mut probe, partial.resume_at..1 << 48);
        result.unwrap();
        assert_eq!(rest[..], all[capacity..]);
    }

    // Room for exactly all of them: no error.
    let mut probe = g.probe(true);
    let mut count = 0;
    let result = scan(&mut probe, 0..1 << 48, G, &mut |_| {
        if count == all.len() {
            return Err(Full);
        }
        count += 1;
        Ok(())
    });
    assert_eq!(result.unwrap().regions, all.len() as u64);

    // No room, nothing to write: no error either.
    let mut probe = g.probe(true);
    let result = scan(&mut probe, 0..G1, G, &mut |_| Err(Full));
    assert_eq!(result.unwrap().holes, 1);
}

#[test]
fn probe_budget_stops_and_resumes() {
    let mut g = known_map();
    let mut probe = g.probe(true);
    let (whole, result) = collect(&mut probe, 0..1 << 48);
    let whole_stats = result.unwrap();
    for budget in [1u64, 2, 3, 5, 100, 1000] {
        let mut regions = Vec::new();
        let mut start = 0u64;
        let mut probes = 0;
        let mut calls = 0;
        loop {
            let mut probe = g.probe(true);
            let result = scan_bounded(&mut probe, start..1 << 48, G, budget, &mut |r| {
                regions.push(r);
                Ok(())
            });
            calls += 1;
            match result {
                Ok(stats) => {
                    probes += stats.probes;
                    break;
                }
                Err(ScanError::ProbeBudget(partial)) => {
                    assert_eq!(partial.stats.probes, budget);
                    assert!(partial.resume_at > start);
                    probes += budget;
                    start = partial.resume_at;
                }
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(rejoin(regions), whole, "budget {budget}");
        assert_eq!(probes, whole_stats.probes, "budget {budget}");
        assert_eq!(calls, whole_stats.probes.div_ceil(budget), "budget {budget}");
    }

    // A zero budget makes no probe.
    let mut probe = g.probe(true);
    let result = scan_bounded(&mut probe, G1..2 * G1, G, 0, &mut |_| Ok(()));
    assert_eq!(result, Err(ScanError::ProbeBudget(Partial { stats: ScanStats::default(), resume_at: G1 })));
    assert!(probe.log.is_empty());

    // Budget and buffer both exhausted: the buffer is reported.
    let mut probe = g.probe(true);
    let result = scan_bounded(&mut probe, G1..4 * G1, G, 1, &mut |_| Err(Full));
    assert!(matches!(
        result,
        Err(ScanError::BufferFull(Partial { resume_at, .. })) if resume_at == G1
    ));
}

// ---------------------------------------------------------------------------
// The hypercall's pieces: scan_chunk and its cursor

/// Scans `range` in pieces of `budget` probes into a `capacity`-entry sink
/// from `cursor`, joining what each piece reports; the joined regions, the
/// probes of each piece and the number of joins made.
fn chunked(
    g: &mut Guest,
    range: RangeInclusive<u64>,
    cursor: u64,
    budget: u64,
    capacity: usize,
) -> (Vec<Region>, Vec<u64>, usize) {
    let (mut joined, mut probes, mut joins) = (Vec::<Region>::new(), Vec::new(), 0);
    let mut cursor = cursor;
    loop {
        let mut probe = g.probe(true);
        let mut written = 0;
        let chunk = scan_chunk(&mut probe, range.clone(), cursor, budget, &mut |r| {
            if written == capacity {
                return Err(Full);
            }
            written += 1;
            match joined.last_mut() {
                Some(last) if last.joins(&r) => {
                    last.join(&r);
                    joins += 1;
                }
                _ => joined.push(r),
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(chunk.stats.probes, probe.log.len() as u64);
        probes.push(chunk.stats.probes);
        match chunk.next {
            None => return (joined, probes, joins),
            Some(next) => {
                assert_eq!(chunk.cursor(), next);
                assert_ne!(next, CURSOR_DONE);
                cursor = next;
            }
        }
    }
}

#[test]
fn scan_chunks_join_to_the_whole_scan() {
    let mut g = known_map();
    let all = known_regions();
    for budget in [1u64, 2, 7, 512, 1024, KNOWN_PROBES - 1, KNOWN_PROBES, u64::MAX] {
        let (joined, probes, joins) = chunked(&mut g, 0..=(1 << 48) - 1, CURSOR_START, budget, usize::MAX);
        assert_eq!(joined, all, "budget {budget}");
        assert!(probes.iter().all(|&p| p <= budget && p >= 1), "budget {budget}: {probes:?}");
        assert_eq!(probes.iter().sum::<u64>(), KNOWN_PROBES, "budget {budget}");
        assert_eq!(probes.len() as u64, KNOWN_PROBES.div_ceil(budget), "budget {budget}");
        if budget == 1 {
            // One probe a piece cuts every merged run at each leaf: the two
            // 1 GiB blocks (one cut), the two 2 MiB blocks (one), the three
            // pages at L3_VA (two).
            assert_eq!(joins, 4);
        }
    }
    // With a small buffer as well: a refused region is reported again
    // whole by the next piece, and nothing joins across that cut.
    for capacity in 1..4 {
        for budget in [1u64, 5, 600, u64::MAX] {
            let (joined, probes, _) = chunked(&mut g, 0..=(1 << 48) - 1, CURSOR_START, budget, capacity);
            assert_eq!(joined, all, "budget {budget}, capacity {capacity}");
            assert!(probes.iter().all(|&p| p <= budget), "budget {budget}: {probes:?}");
        }
    }
}

#[test]
fn scan_chunk_from_a_cursor_is_the_scan_from_there() {
    let mut g = known_map();
    let range = 0..=(1u64 << 48) - 1;
    // Inside the merged pages, at a block, in a hole, at the last page.
    for cursor in [L3_VA + K4, 3 * G1 + 2 * M2, 5 * G1, 512 * G512 - K4, K4, 3 * G512 + 511 * G1 + 7 * K4] {
        let mut probe = g.probe(true);
        let (whole, result) = collect(&mut probe, cursor..=*range.end());
        let whole_probes = result.unwrap().probes;
        for budget in [1u64, 3, 1000, u64::MAX] {
            let (joined, probes, _) = chunked(&mut g, range.clone(), cursor, budget, usize::MAX);
            assert_eq!(joined, whole, "cursor {cursor:#x}, budget {budget}");
            assert_eq!(probes.iter().sum::<u64>(), whole_probes);
        }
    }
}

#[test]
fn scan_chunk_refuses_a_cursor_outside_the_range() {
    let mut g = known_map();
    let ttbr1 = 0xffff_0000_0000_0000..=u64::MAX;
    let ttbr0 = 0..=(1u64 << 48) - 1;
    let cases = [
        (ttbr0.clone(), 1 << 48),
        (ttbr0.clone(), u64::MAX - K4 + 1),
        (ttbr0.clone(), G1 + 8),
        (ttbr0.clone(), 1),
        (ttbr1.clone(), K4),
        (ttbr1.clone(), 0xfffe_ffff_ffff_f000),
        (ttbr1.clone(), 0xffff_0000_0000_0800),
    ];
    for (range, cursor) in cases {
        let mut probe = g.probe(true);
        let result = scan_chunk(&mut probe, range.clone(), cursor, 10, &mut |_| Ok(()));
        assert_eq!(result, Err(ScanError::BadCursor { cursor, start: *range.start(), last: *range.end() }));
        assert!(probe.log.is_empty(), "{cursor:#x}");
        assert!(result.unwrap_err().to_string().contains("resume cursor"));
    }
    // 0 is the start of either range; the first and last page are fine.
    for (range, cursor) in [(ttbr1.clone(), 0), (ttbr1.clone(), *ttbr1.start()), (ttbr1.clone(), u64::MAX - K4 + 1)] {
        let mut probe = g.probe(true);
        assert!(scan_chunk(&mut probe, range, cursor, 10, &mut |_| Ok(())).is_ok(), "{cursor:#x}");
    }
    let mut probe = g.probe(true);
    assert!(scan_chunk(&mut probe, ttbr0, (1 << 48) - K4, 10, &mut |_| Ok(())).is_ok());
}

#[test]
fn scan_chunk_budget_and_buffer_edges() {
    let mut g = known_map();
    let range = 0..=(1u64 << 48) - 1;
    // A zero budget still makes one probe: the cursor always moves on.
    let mut probe = g.probe(true);
    let chunk = scan_chunk(&mut probe, range.clone(), CURSOR_START, 0, &mut |_| Ok(())).unwrap();
    assert_eq!(chunk.stats.probes, 1);
    assert_eq!(chunk.next, Some(G1));
    // No room for even one region: the piece cannot make progress.
    let mut probe = g.probe(true);
    let result = scan_chunk(&mut probe, range.clone(), CURSOR_START, 100, &mut |_| Err(Full));
    assert!(matches!(result, Err(ScanError::BufferFull(p)) if p.written() == 0 && p.resume_at == G1));
    // ... unless the piece ends before a region: nothing to write, no error.
    let mut probe = g.probe(true);
    let chunk = scan_chunk(&mut probe, range.clone(), CURSOR_START, 1, &mut |_| Err(Full)).unwrap();
    assert_eq!((chunk.stats.regions, chunk.next), (0, Some(G1)));
    // The last piece says done.
    let mut probe = g.probe(true);
    let chunk = scan_chunk(&mut probe, range, 512 * G512 - K4, 1, &mut |_| Ok(())).unwrap();
    assert_eq!((chunk.next, chunk.cursor()), (None, CURSOR_DONE));
}

#[test]
fn regions_join_only_their_continuation() {
    let a = region(G1, 2 * K4, 0x1000_0000, DATA);
    let next = region(G1 + 2 * K4, K4, 0x1000_2000, DATA);
    assert!(a.joins(&next));
    let mut joined = a;
    assert!(joined.join(&next));
    assert_eq!(joined, region(G1, 3 * K4, 0x1000_0000, DATA));
    // A gap in VA, a jump in IPA, other attributes, or before: no join.
    for other in [
        region(G1 + 3 * K4, K4, 0x1000_3000, DATA),
        region(G1 + 2 * K4, K4, 0x1000_3000, DATA),
        region(G1 + 2 * K4, K4, 0x1000_2000, RODATA),
        region(G1 - K4, K4, 0x1000_0000 - K4, DATA),
    ] {
        let mut copy = a;
        assert!(!copy.join(&other), "{other}");
        assert_eq!(copy, a);
    }
    // The top of the address space joins nothing after it.
    let top = region(u64::MAX - K4 + 1, K4, 0x1000_0000, DATA);
    assert!(!top.joins(&region(0, K4, 0x1000_1000, DATA)));
}

// ---------------------------------------------------------------------------
// Probes that report the impossible

struct Fixed(ProbeResult);

impl Probe for Fixed {
    fn probe(&mut self, _va: u64) -> ProbeResult {
        self.0
    }
}

#[test]
fn impossible_probe_results_are_errors() {
    let mapped = |ipa, leaf_level| Fixed(ProbeResult::Mapped { ipa, attrs: Attrs::READ_ONLY_KNOWN, leaf_level });
    let cases = [
        (Fixed(ProbeResult::Fault { level: 4 }), ScanError::BadFaultLevel { va: G1, level: 4 }),
        (Fixed(ProbeResult::Fault { level: 255 }), ScanError::BadFaultLevel { va: G1, level: 255 }),
        (mapped(0, Some(0)), ScanError::BadLeafLevel { va: G1, level: 0 }),
        (mapped(0, Some(4)), ScanError::BadLeafLevel { va: G1, level: 4 }),
        (mapped(0x1234, None), ScanError::BadIpa { va: G1, ipa: 0x1234 }),
        // The leaf's last page would be past 2^64.
        (mapped(u64::MAX - K4 + 1, Some(2)), ScanError::BadIpa { va: G1, ipa: u64::MAX - K4 + 1 }),
    ];
    for (mut probe, error) in cases {
        assert_eq!(collect(&mut probe, G1..2 * G1).1, Err(error));
    }
    // The last page of the IPA space on its own is fine.
    let mut probe = mapped(u64::MAX - K4 + 1, None);
    let (regions, result) = collect(&mut probe, G1..G1 + K4);
    result.unwrap();
    assert_eq!(regions[0].ipa_of(G1 + 0xfff), Some(u64::MAX));
}

// ---------------------------------------------------------------------------
// Random tables against a page-by-page brute force

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random 31-bit space (root at level 1, two entries): blocks, tables,
/// pages and holes, with IPAs that are sometimes contiguous.
fn random_guest(seed: u64) -> Guest {
    let mut rng = Rng(seed);
    let mut g = Guest::new(31, 40);
    let mut ipa = 0x4000_0000u64;
    let mut l3_tables = 0;
    for l1 in 0..2u64 {
        let va = l1 * G1;
        match rng.below(4) {
            0 => continue,
            1 => {
                ipa = ipa.next_multiple_of(G1);
                g.map(va, G1, ipa, ALL[rng.below(2) as usize]);
                ipa += G1;
                continue;
            }
            _ => {}
        }
        for l2 in 0..512u64 {
            let va = va + l2 * M2;
            match rng.below(8) {
                0..=2 => {}
                3 | 4 => {
                    if rng.below(2) == 0 {
                        ipa += M2;
                    }
                    ipa = ipa.next_multiple_of(M2);
                    g.map(va, M2, ipa, ALL[rng.below(2) as usize]);
                    ipa += M2;
                }
                _ if l3_tables < 30 => {
                    l3_tables += 1;
                    let mut l3 = 0u64;
                    while l3 < 512 {
                        let run = 1 + rng.below(6).min(511 - l3);
                        if rng.below(3) != 0 {
                            if rng.below(3) == 0 {
                                ipa += K4;
                            }
                            g.map_pages(va + l3 * K4, run, ipa, ALL[rng.below(5) as usize]);
                            ipa += run * K4;
                        }
                        l3 += run;
                    }
                }
                _ => {}
            }
        }
    }
    g
}

/// Translates every page of `first..=last` and merges: the scan's answer,
/// the slow way. Returns the regions and the number of unmapped runs.
fn brute_force(probe: &mut TableProbe<'_>, first: u64, last: u64) -> (Vec<Region>, u64) {
    let mut regions: Vec<Region> = Vec::new();
    let mut holes = 0;
    let mut in_hole = false;
    let mut va = first;
    while va <= last {
        match probe.probe(va) {
            ProbeResult::Mapped { ipa, attrs, .. } => {
                in_hole = false;
                match regions.last_mut() {
                    Some(prev)
                        if prev.va_last + 1 == va && prev.ipa + (va - prev.va_start) == ipa && prev.attrs == attrs =>
                    {
                        prev.va_last = va + K4 - 1;
                    }
                    _ => regions.push(Region { va_start: va, va_last: va + K4 - 1, ipa, attrs }),
                }
            }
            ProbeResult::Fault { .. } => {
                if !in_hole {
                    holes += 1;
                    in_hole = true;
                }
            }
        }
        va += K4;
    }
    (regions, holes)
}

#[test]
fn random_tables_match_a_page_by_page_brute_force() {
    for seed in [1u64, 0x9e37_79b9_7f4a_7c15, 0xdead_beef, 42] {
        let mut g = random_guest(seed);
        let space_last = (1u64 << 31) - 1;
        let mut rng = Rng(seed ^ 0x5555);
        // The whole space, and sub-ranges that start and end inside
        // blocks, tables and holes.
        let mut ranges = vec![(0, space_last)];
        for _ in 0..3 {
            let a = rng.below(1 << 19) * K4;
            let b = rng.below(1 << 19) * K4;
            ranges.push((a.min(b), a.max(b) + K4 - 1));
        }
        for (first, last) in ranges {
            let mut oracle = g.probe(true);
            let (want, want_holes) = brute_force(&mut oracle, first, last);
            assert_eq!(want, g.expected_regions(first, last, true), "seed {seed:#x}");
            for hint in [true, false] {
                let want: Vec<Region> = if hint { want.clone() } else { g.expected_regions(first, last, false) };
                let mut probe = g.probe(hint);
                let (got, result) = collect(&mut probe, first..=last);
                let stats = result.unwrap();
                assert_eq!(got, want, "seed {seed:#x} range {first:#x}..={last:#x} hint {hint}");
                assert_eq!(stats.regions, want.len() as u64);
                assert_eq!(stats.holes, want_holes, "seed {seed:#x}");
                check_skips(&probe.log, first);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// TTBR ranges

#[test]
fn ttbr_ranges_follow_txsz() {
    let (t0, t1) = ttbr_ranges(16, 16).unwrap();
    assert_eq!(t0, 0..=0x0000_ffff_ffff_ffff);
    assert_eq!(t1, 0xffff_0000_0000_0000..=u64::MAX);
    let (t0, t1) = ttbr_ranges(25, 16).unwrap();
    assert_eq!(t0, 0..=0x0000_007f_ffff_ffff);
    assert_eq!(t1, 0xffff_0000_0000_0000..=u64::MAX);
    let (t0, t1) = ttbr_ranges(39, 39).unwrap();
    assert_eq!(t0, 0..=0x1ff_ffff);
    assert_eq!(t1, 0xffff_ffff_fe00_0000..=u64::MAX);
    for txsz in MIN_TXSZ..=MAX_TXSZ {
        let size = 1u64 << (64 - txsz);
        assert_eq!(ttbr_range(Ttbr::Ttbr0, txsz).unwrap(), 0..=size - 1);
        assert_eq!(ttbr_range(Ttbr::Ttbr1, txsz).unwrap(), 0u64.wrapping_sub(size)..=u64::MAX);
    }
}

#[test]
fn invalid_txsz_is_an_error() {
    for bad in [0u8, 1, 12, 15, 40, 48, 63, 64, 255] {
        assert_eq!(ttbr_ranges(bad, 16), Err(TxszError { ttbr: Ttbr::Ttbr0, txsz: bad }));
        assert_eq!(ttbr_ranges(16, bad), Err(TxszError { ttbr: Ttbr::Ttbr1, txsz: bad }));
    }
    // The first invalid field is the one reported.
    assert_eq!(ttbr_ranges(40, 15).unwrap_err().ttbr, Ttbr::Ttbr0);
    let text = TxszError { ttbr: Ttbr::Ttbr1, txsz: 12 }.to_string();
    assert!(text.contains("T1SZ = 12") && text.contains("16..=39"), "{text}");
}

#[test]
fn tcr_fields() {
    // T0SZ = T1SZ = 16 with IPS, TG1, TBI0, caching and shareability set
    // around the two fields.
    let tcr = 0x0000_0035_b510_3510u64;
    assert_eq!(tcr_txsz(tcr), (16, 16));
    let tcr39 = (tcr & !0x3f_003f) | (25 << 16) | 25;
    assert_eq!(tcr_txsz(tcr39), (25, 25));
    assert_eq!(tcr_txsz((25 << 16) | 39), (39, 25));
    assert_eq!(tcr_txsz(u64::MAX), (63, 63));
    assert_eq!(tcr_txsz(0), (0, 0));
}

// ---------------------------------------------------------------------------
// The guest-buffer encoding

fn tri_values() -> [Option<bool>; 3] {
    [None, Some(false), Some(true)]
}

fn every_attrs() -> Vec<Attrs> {
    let mut all = Vec::new();
    for readable in [false, true] {
        for writable_el1 in tri_values() {
            for user_readable in tri_values() {
                for writable_el0 in tri_values() {
                    for executable_el1 in tri_values() {
                        for executable_el0 in tri_values() {
                            all.push(Attrs {
                                readable,
                                writable_el1,
                                user_readable,
                                writable_el0,
                                executable_el1,
                                executable_el0,
                            });
                        }
                    }
                }
            }
        }
    }
    all
}

#[test]
fn encoding_layout_is_little_endian_words() {
    let r = Region {
        va_start: 0x0000_7fff_1234_5000,
        va_last: 0x0000_7fff_1234_8fff,
        ipa: 0x0000_0040_8000_0000,
        attrs: Attrs {
            readable: true,
            writable_el1: Some(true),
            user_readable: Some(true),
            writable_el0: Some(false),
            executable_el1: None,
            executable_el0: Some(true),
        },
    };
    let bytes = encode(&r);
    assert_eq!(
        bytes,
        [
            0x00, 0x50, 0x34, 0x12, 0xff, 0x7f, 0x00, 0x00, // va_start
            0xff, 0x8f, 0x34, 0x12, 0xff, 0x7f, 0x00, 0x00, // va_last
            0x00, 0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0x00, // ipa
            0x27, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // flags: R W UR XU, ?XP
        ]
    );
    assert_eq!(
        r.attrs.flags(),
        flags::READABLE
            | flags::WRITABLE_EL1
            | flags::USER_READABLE
            | flags::EXECUTABLE_EL0
            | (flags::EXECUTABLE_EL1 << flags::UNKNOWN_SHIFT)
    );
    assert_eq!(decode(&bytes), Some(r));
    assert_eq!(flags::DEFINED, 0x3e3f);
}

#[test]
fn encoding_round_trips_every_attribute_combination() {
    let all = every_attrs();
    assert_eq!(all.len(), 2 * 243);
    let mut seen = std::collections::HashSet::new();
    for attrs in all {
        assert!(seen.insert(attrs.flags()), "{attrs:?} collides");
        assert_eq!(Attrs::from_flags(attrs.flags()), Some(attrs));
        let r = Region { va_start: 0xffff_ffff_ffff_f000, va_last: u64::MAX, ipa: 0x1000, attrs };
        assert_eq!(decode(&encode(&r)), Some(r));
    }
    for r in known_regions() {
        assert_eq!(decode(&encode(&r)), Some(r));
    }
}

#[test]
fn decoding_rejects_malformed_entries() {
    let good = Region { va_start: 0x1000, va_last: 0x2fff, ipa: 0x4000_0000, attrs: Attrs::READ_ONLY_KNOWN };
    let with = |f: &dyn Fn(&mut [u64; 4])| {
        let mut words = [good.va_start, good.va_last, good.ipa, good.attrs.flags()];
        f(&mut words);
        let mut bytes = [0u8; ENTRY_SIZE];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        decode(&bytes)
    };
    assert_eq!(with(&|_| {}), Some(good));
    assert_eq!(with(&|w| w[0] = 0x1800), None, "unaligned start");
    assert_eq!(with(&|w| w[1] = 0x2000), None, "last not a page's last byte");
    assert_eq!(with(&|w| w[1] = 0xfff), None, "last before start");
    assert_eq!(with(&|w| w[2] = 0x4000_0800), None, "unaligned IPA");
    assert_eq!(with(&|w| w[2] = u64::MAX - 0xfff), None, "IPA run past 2^64");
    assert_eq!(with(&|w| w[3] |= 1 << 6), None, "reserved flag bit");
    assert_eq!(with(&|w| w[3] |= 1 << 63), None, "reserved flag bit");
    assert_eq!(with(&|w| w[3] |= flags::WRITABLE_EL1), None, "value and unknown both set");
    assert_eq!(with(&|w| w[3] = flags::READABLE | flags::WRITABLE_EL0 | flags::TRI_STATE << 8), None);
    assert_eq!(
        with(&|w| w[3] = 0),
        Some(Region {
            attrs: Attrs {
                readable: false,
                writable_el1: Some(false),
                user_readable: Some(false),
                writable_el0: Some(false),
                executable_el1: Some(false),
                executable_el0: Some(false),
            },
            ..good
        })
    );
}

#[test]
fn region_helpers() {
    let r = region(G1, 2 * G1, 0x1_0000_0000, DATA);
    assert_eq!(r.size(), Some(2 * G1));
    assert_eq!(r.va_end(), Some(3 * G1));
    assert_eq!(r.va_range(), G1..=3 * G1 - 1);
    assert_eq!(r.ipa_of(G1 + 0x1234), Some(0x1_0000_1234));
    assert_eq!(r.ipa_of(G1 - 1), None);
    assert_eq!(r.ipa_of(3 * G1), None);
    let whole = Region { va_start: 0, va_last: u64::MAX, ipa: 0, attrs: Attrs::READ_ONLY_KNOWN };
    assert_eq!(whole.size(), None);
    assert_eq!(whole.va_end(), None);
    let text = region(L3_VA + 6 * K4, K4, 0x3100_1000, USER_TEXT).to_string();
    assert_eq!(text, "0x00000000c0806000..=0x00000000c0806fff -> IPA 0x31001000 EL1 r-- EL0 r-x");
    let text = Region { attrs: Attrs::READ_ONLY_KNOWN, ..r }.to_string();
    assert!(text.ends_with("EL1 r?? EL0 ???"), "{text}");
}

// ---------------------------------------------------------------------------
// PAR_EL1

const PAR_RES1: u64 = 1 << 11;

fn par_fault(fst: u64, s: bool, ptw: bool) -> u64 {
    PAR_RES1 | crate::abi::par::F | (fst << 1) | (u64::from(ptw) << 8) | (u64::from(s) << 9)
}

#[test]
fn par_success_gives_page_and_attributes() {
    // Normal WB memory, Inner Shareable, at PA 0x4020_3000.
    let par = (0xffu64 << 56) | 0x4020_3000 | (0b11 << 7) | PAR_RES1;
    let decoded = Par::decode(par);
    assert_eq!(decoded, Par::Translated { pa: 0x4020_3000, mem_attr: 0xff });
    assert_eq!(decoded.skip_level(), None);
    assert_eq!(decoded.permission(), Some(true));
    assert_eq!(
        decoded.probe_result(Attrs::READ_ONLY_KNOWN),
        ProbeResult::Mapped { ipa: 0x4020_3000, attrs: Attrs::READ_ONLY_KNOWN, leaf_level: None }
    );
    // PA[51:48] is part of the address; bits 55:52 are not.
    assert_eq!(
        Par::decode((0xf << 48) | (0xf << 52) | 0x1000),
        Par::Translated { pa: 0xf_0000_0000_1000, mem_attr: 0 }
    );
}

#[test]
fn par_faults_give_the_level_to_skip_by() {
    for level in 0..=3u64 {
        let par = par_fault(0x04 | level, false, false);
        let decoded = Par::decode(par);
        assert_eq!(decoded, Par::Fault { status: FaultStatus::Translation { level: level as u8 }, stage2: false });
        assert_eq!(decoded.skip_level(), Some(level as u8));
        assert_eq!(decoded.permission(), None);
        assert_eq!(decoded.probe_result(Attrs::READ_ONLY_KNOWN), ProbeResult::Fault { level: level as u8 });
        // Address size, access flag, permission, external abort on walk:
        // also the named level.
        for base in [0x00, 0x08, 0x0c, 0x14] {
            assert_eq!(Par::decode(par_fault(base | level, false, false)).skip_level(), Some(level as u8));
        }
        // A stage-2 fault on the walk: its level is not a stage-1 level.
        let s2 = Par::decode(par_fault(0x04 | level, true, true));
        assert_eq!(s2.skip_level(), Some(3));
        assert_eq!(Par::decode(par_fault(0x0c | level, true, true)).permission(), None);
    }
    // A stage-1 permission fault answers a permission probe.
    assert_eq!(Par::decode(par_fault(0x0f, false, false)).permission(), Some(false));
    assert_eq!(Par::decode(par_fault(0x0b, false, false)).permission(), None);
    // Faults without a level (TLB conflict, the LPA2 level -1 codes): one
    // page.
    for fst in [0x30, 0x2b, 0x29, 0x10, 0x3f] {
        assert_eq!(Par::decode(par_fault(fst, false, false)).skip_level(), Some(3), "{fst:#x}");
    }
}

// ---------------------------------------------------------------------------
// Messages

#[test]
fn errors_say_what_happened() {
    let partial = Partial { stats: ScanStats { probes: 7, regions: 3, holes: 2 }, resume_at: 0x4000_0000 };
    let cases = [
        (ScanError::Misaligned { start: 0x800, last: 0x1fff }, "0x800..=0x1fff"),
        (ScanError::BadFaultLevel { va: 0x1000, level: 4 }, "level 4"),
        (ScanError::BadLeafLevel { va: 0x1000, level: 0 }, "level 0"),
        (ScanError::BadIpa { va: 0x1000, ipa: 0x1234 }, "0x1234"),
        (ScanError::BufferFull(partial), "after 3 regions; resume at 0x40000000"),
        (ScanError::ProbeBudget(partial), "after 7 probes and 3 regions"),
    ];
    for (error, needle) in cases {
        let text = error.to_string();
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        assert_eq!(error.partial().is_some(), matches!(error, ScanError::BufferFull(_) | ScanError::ProbeBudget(_)));
    }
    assert_eq!(Full.to_string(), "region buffer full");
    assert_eq!(Ttbr::Ttbr0.to_string(), "TTBR0");
}

#[test]
fn stage1_leaf_permissions() {
    // EL1&0 page descriptors: valid | page | AF, plus the access bits.
    const PAGE: u64 = bits::VALID | bits::TABLE_OR_PAGE | bits::AF;
    let kernel_text = Attrs::from_stage1_leaf(PAGE | bits::AP_2 | bits::UXN);
    assert_eq!(kernel_text.writable_el1, Some(false));
    assert_eq!(kernel_text.user_readable, Some(false));
    assert_eq!(kernel_text.executable_el1, Some(true));
    assert_eq!(kernel_text.executable_el0, Some(false));
    let kernel_data = Attrs::from_stage1_leaf(PAGE | bits::PXN | bits::UXN);
    assert_eq!(kernel_data.writable_el1, Some(true));
    assert_eq!(kernel_data.writable_el0, Some(false));
    assert_eq!(kernel_data.executable_el1, Some(false));
    let user_text = Attrs::from_stage1_leaf(PAGE | bits::AP_1 | bits::AP_2 | bits::PXN);
    assert_eq!(user_text.user_readable, Some(true));
    assert_eq!(user_text.writable_el0, Some(false));
    assert_eq!(user_text.writable_el1, Some(false));
    assert_eq!(user_text.executable_el0, Some(true));
    assert_eq!(user_text.executable_el1, Some(false));
    // EL0-writable memory is never executable at EL1, PXN or not.
    let user_data = Attrs::from_stage1_leaf(PAGE | bits::AP_1);
    assert_eq!(user_data.writable_el0, Some(true));
    assert_eq!(user_data.executable_el1, Some(false));
    assert_eq!(user_data.executable_el0, Some(true));
    // Execute-only for EL0: no EL0 data access, UXN clear.
    let execute_only = Attrs::from_stage1_leaf(PAGE | bits::PXN);
    assert_eq!(execute_only.user_readable, Some(false));
    assert_eq!(execute_only.executable_el0, Some(true));
    assert!(execute_only.readable);
}
