//! Property tests of the guest address-space scan (`platform::gvascan`):
//! the SCAN hypercall's entry codec, the `TCR_EL1`/`PAR_EL1` decoders, and
//! the walk itself, whose probes report what the guest's own page tables
//! say.
//!
//! Bounded: each property runs 256 cases (`common::config`; override with
//! `PROPTEST_CASES`; `PROPTEST_RNG_SEED` reproduces a run).
//!
//! Properties:
//! - `decode` of any 32 bytes never panics and accepts only canonical
//!   entries (`encode(decode(b)) == b`); `decode(encode(r)) == r` for every
//!   well-formed region; `Attrs` flags round-trip;
//! - `tcr_txsz` reads T0SZ/T1SZ; `ttbr_range` gives the documented ranges
//!   for 16..=39 and refuses every other value;
//! - `Par::decode` of any `PAR_EL1` gives a fault level the granule has;
//! - against a simulated guest map whose probes are consistent (a fault at
//!   level L means nothing is mapped in that level-L entry), `scan` reports
//!   exactly the maximal runs of VA- and IPA-contiguous, alike pages, and
//!   the holes between them; a scan cut into pieces by probe budgets and a
//!   small buffer, resumed where each piece says, reports the same;
//! - `scan_chunk`, the `SCAN` hypercall's resumable piece: from any cursor
//!   in the range (0 = the start), with any budget and buffer, the pieces
//!   joined with `Region::join` equal one unbounded scan from that cursor,
//!   no piece makes more probes than its budget, the probes add up to the
//!   unbounded scan's, and a cursor outside the range or not page-aligned
//!   is refused (`ScanError::BadCursor`) without a probe;
//! - against probes that report anything at all, `scan` never panics and
//!   whatever it writes is page-aligned, in the range, in increasing order.

use std::ops::RangeInclusive;

use platform::gvascan::{
    decode, encode, flags, scan, scan_bounded, scan_chunk, tcr_txsz, ttbr_range, ttbr_ranges, Attrs, Full, Granule4K,
    Par, Probe, ProbeResult, Region, ScanError, Ttbr, TxszError, CURSOR_DONE, CURSOR_START, ENTRY_SIZE, MAX_TXSZ,
    MIN_TXSZ,
};
use proptest::prelude::*;

mod common;
use common::config;

const PAGE: u64 = 4096;
const MIB2: u64 = 2 << 20;
const GIB: u64 = 1 << 30;

fn tri() -> impl Strategy<Value = Option<bool>> {
    prop_oneof![Just(None), Just(Some(false)), Just(Some(true))]
}

fn attrs_strategy() -> impl Strategy<Value = Attrs> {
    (any::<bool>(), tri(), tri(), tri(), tri(), tri()).prop_map(|(r, w1, ur, w0, x1, x0)| Attrs {
        readable: r,
        writable_el1: w1,
        user_readable: ur,
        writable_el0: w0,
        executable_el1: x1,
        executable_el0: x0,
    })
}

/// A well-formed region: page-aligned start and IPA, whole pages, IPA
/// range within 2^64.
fn region_strategy() -> impl Strategy<Value = Region> {
    (any::<u64>(), any::<u64>(), any::<u64>(), attrs_strategy()).prop_map(|(va, pages, ipa, attrs)| {
        let va_start = va & !(PAGE - 1);
        let max_pages = (u64::MAX - va_start) / PAGE + 1;
        let pages = 1 + pages % max_pages.min(1 << 40);
        let span = (pages - 1) * PAGE + (PAGE - 1);
        let ipa = (ipa % (u64::MAX - span + 1).max(1)) & !(PAGE - 1);
        Region { va_start, va_last: va_start + span, ipa, attrs }
    })
}

proptest! {
    #![proptest_config(config())]

    /// Any 32 bytes: `decode` never panics and accepts only what `encode`
    /// produces (and what it accepts is well formed).
    #[test]
    fn decode_accepts_only_canonical_entries(
        va_start in prop_oneof![1 => any::<u64>(), 3 => any::<u64>().prop_map(|w| w & !(PAGE - 1))],
        span in prop_oneof![1 => any::<u64>(), 3 => (0u64..64).prop_map(|p| p * PAGE + PAGE - 1)],
        ipa in prop_oneof![1 => any::<u64>(), 3 => any::<u64>().prop_map(|w| (w >> (w % 64)) & !(PAGE - 1))],
        flag_word in prop_oneof![1 => any::<u64>(), 1 => 0u64..0x4000, 3 => attrs_strategy().prop_map(|a| a.flags())],
    ) {
        let mut bytes = [0u8; ENTRY_SIZE];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip([va_start, va_start.wrapping_add(span), ipa, flag_word]) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        if let Some(region) = decode(&bytes) {
            prop_assert_eq!(encode(&region), bytes);
            prop_assert_eq!(region.va_start % PAGE, 0);
            prop_assert_eq!(region.ipa % PAGE, 0);
            prop_assert_eq!(region.va_last % PAGE, PAGE - 1);
            prop_assert!(region.va_last >= region.va_start);
            prop_assert!(region.ipa_of(region.va_last).is_some());
            let _ = region.to_string();
        }
    }

    /// Every well-formed region survives the guest buffer.
    #[test]
    fn encode_decode_round_trips(region in region_strategy()) {
        prop_assert_eq!(decode(&encode(&region)), Some(region));
        prop_assert_eq!(region.ipa_of(region.va_start), Some(region.ipa));
        prop_assert_eq!(region.ipa_of(region.va_last), Some(region.ipa + (region.va_last - region.va_start)));
        if region.va_start > 0 {
            prop_assert_eq!(region.ipa_of(region.va_start - 1), None);
        }
        prop_assert_eq!(region.size(), (region.va_last - region.va_start).checked_add(1));
    }

    /// `Attrs` flags: exactly the defined bits, value and "unknown" never
    /// both set, and back.
    #[test]
    fn attrs_flags_round_trip(attrs in attrs_strategy(), word in any::<u64>()) {
        let f = attrs.flags();
        prop_assert_eq!(f & !flags::DEFINED, 0);
        prop_assert_eq!(f & flags::TRI_STATE & (f >> flags::UNKNOWN_SHIFT), 0);
        prop_assert_eq!(Attrs::from_flags(f), Some(attrs));
        for w in [word, word & flags::DEFINED] {
            if let Some(a) = Attrs::from_flags(w) {
                prop_assert_eq!(a.flags(), w);
            }
        }
    }

    /// `TCR_EL1` size fields and the two VA ranges.
    #[test]
    fn ttbr_ranges_follow_txsz(tcr in any::<u64>(), t0 in any::<u8>(), t1 in any::<u8>()) {
        let (t0sz, t1sz) = tcr_txsz(tcr);
        prop_assert_eq!(u64::from(t0sz), tcr & 0x3f);
        prop_assert_eq!(u64::from(t1sz), (tcr >> 16) & 0x3f);
        for (ttbr, txsz) in [(Ttbr::Ttbr0, t0), (Ttbr::Ttbr1, t1), (Ttbr::Ttbr0, t0sz), (Ttbr::Ttbr1, t1sz)] {
            let valid = (MIN_TXSZ..=MAX_TXSZ).contains(&txsz);
            match ttbr_range(ttbr, txsz) {
                Ok(range) => {
                    prop_assert!(valid);
                    let size = 1u128 << (64 - u32::from(txsz));
                    let (start, end) = (u128::from(*range.start()), u128::from(*range.end()));
                    prop_assert_eq!(end - start + 1, size);
                    match ttbr {
                        Ttbr::Ttbr0 => prop_assert_eq!(start, 0),
                        Ttbr::Ttbr1 => prop_assert_eq!(end, u128::from(u64::MAX)),
                    }
                }
                Err(e) => {
                    prop_assert!(!valid);
                    prop_assert_eq!(e, TxszError { ttbr, txsz });
                    let _ = e.to_string();
                }
            }
        }
        let both = ttbr_ranges(t0, t1);
        prop_assert_eq!(both.is_ok(), ttbr_range(Ttbr::Ttbr0, t0).is_ok() && ttbr_range(Ttbr::Ttbr1, t1).is_ok());
    }

    /// `PAR_EL1`: any value decodes; a success keeps PA[51:12] and the
    /// attributes; a fault names a level 0..=3 to skip by.
    #[test]
    fn par_decodes_to_usable_probe_results(par in any::<u64>(), attrs in attrs_strategy()) {
        match Par::decode(par) {
            Par::Translated { pa, mem_attr } => {
                prop_assert_eq!(par & 1, 0);
                prop_assert_eq!(pa, par & 0x000f_ffff_ffff_f000);
                prop_assert_eq!(mem_attr, (par >> 56) as u8);
                prop_assert_eq!(Par::decode(par).skip_level(), None);
                prop_assert_eq!(Par::decode(par).permission(), Some(true));
            }
            fault @ Par::Fault { .. } => {
                prop_assert_eq!(par & 1, 1);
                let level = fault.skip_level().expect("a fault has a skip level");
                prop_assert!(level <= 3);
                prop_assert_eq!(fault.probe_result(attrs), ProbeResult::Fault { level });
            }
        }
    }

    /// Against a consistent simulated map, `scan` reports exactly the
    /// merged runs of mapped pages, and the holes between them.
    #[test]
    fn scan_reports_exactly_the_mapped_runs(
        map in guest_map_strategy(),
        range_choice in 0usize..4,
        range_bounds in (0usize..64, 0usize..64),
    ) {
        let range = scan_range(&map, range_choice, range_bounds);
        let expected = expected_regions(&map, &range);
        let mut probe = MapProbe { map: &map, calls: 0 };
        let mut regions = Vec::new();
        let stats = scan(&mut probe, range.clone(), Granule4K, &mut |r| {
            regions.push(r);
            Ok(())
        })
        .expect("a consistent map scans");
        prop_assert_eq!(&regions, &expected, "range {:x?}", range);
        prop_assert_eq!(stats.regions, regions.len() as u64);
        prop_assert_eq!(stats.probes, probe.calls);
        prop_assert_eq!(stats.holes, expected_holes(&expected, &range));
    }

    /// The same scan cut into pieces by a probe budget and a small buffer,
    /// each piece resumed where the previous one said, reports the same
    /// pages (a region cut by the budget continues as a new region).
    #[test]
    fn resumed_scans_add_up_to_the_whole(
        map in guest_map_strategy(),
        range_choice in 0usize..4,
        range_bounds in (0usize..64, 0usize..64),
        budget in 1u64..40,
        capacity in 1usize..4,
    ) {
        let range = scan_range(&map, range_choice, range_bounds);
        let expected = expected_regions(&map, &range);
        let mut got: Vec<Region> = Vec::new();
        let mut start = *range.start();
        let mut calls = 0;
        loop {
            calls += 1;
            prop_assert!(calls < 100_000, "the resumed scan makes no progress");
            let mut probe = MapProbe { map: &map, calls: 0 };
            let mut written = 0;
            let result = scan_bounded(&mut probe, start..=*range.end(), Granule4K, budget, &mut |r| {
                if written == capacity {
                    return Err(Full);
                }
                written += 1;
                got.push(r);
                Ok(())
            });
            prop_assert!(probe.calls <= budget);
            match result {
                Ok(_) => break,
                Err(ScanError::BufferFull(p)) | Err(ScanError::ProbeBudget(p)) => {
                    prop_assert_eq!(p.written(), written as u64);
                    prop_assert!(p.resume_at >= start && p.resume_at <= *range.end());
                    prop_assert!(got.last().is_none_or(|r| r.va_last < p.resume_at));
                    start = p.resume_at;
                }
                Err(e) => prop_assert!(false, "{}", e),
            }
        }
        prop_assert_eq!(merge(got), expected);
    }

    /// The hypercall's pieces: from any cursor, any budget, any buffer
    /// size, joined, they equal one unbounded scan from that cursor.
    #[test]
    fn scan_chunks_from_any_cursor_join_to_one_unbounded_scan(
        map in guest_map_strategy(),
        range_choice in 0usize..4,
        range_bounds in (0usize..64, 0usize..64),
        cursor_choice in prop_oneof![Just(None), any::<u64>().prop_map(Some)],
        budget in prop_oneof![1u64..8, 8u64..200, Just(0u64)],
        capacity in prop_oneof![1usize..4, Just(usize::MAX)],
    ) {
        let range = scan_range(&map, range_choice, range_bounds);
        // The cursor: 0, or any page of the range (near the map's leaves
        // half the time, so that it often lands inside a region).
        let first_page = match cursor_choice {
            None => CURSOR_START,
            Some(pick) => {
                let pages = (*range.end() - *range.start()) / PAGE + 1;
                let near = map.leaves[(pick as usize) % map.leaves.len()].va;
                if pick & 1 == 0 && range.contains(&near) {
                    near
                } else {
                    *range.start() + (pick >> 1) % pages * PAGE
                }
            }
        };
        let from = if first_page == CURSOR_START { *range.start() } else { first_page };
        let mut whole_probe = MapProbe { map: &map, calls: 0 };
        let mut whole: Vec<Region> = Vec::new();
        let whole_stats = scan(&mut whole_probe, from..=*range.end(), Granule4K, &mut |r| {
            whole.push(r);
            Ok(())
        })
        .expect("a consistent map scans");

        let mut joined: Vec<Region> = Vec::new();
        let (mut cursor, mut probes, mut calls, mut refused) = (first_page, 0u64, 0u64, false);
        loop {
            calls += 1;
            prop_assert!(calls < 100_000, "the resumed scan makes no progress");
            let mut probe = MapProbe { map: &map, calls: 0 };
            let mut written = 0usize;
            let chunk = scan_chunk(&mut probe, range.clone(), cursor, budget, &mut |r| {
                if written == capacity {
                    refused = true;
                    return Err(Full);
                }
                written += 1;
                if !joined.last_mut().is_some_and(|last| last.join(&r)) {
                    joined.push(r);
                }
                Ok(())
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(probe.calls <= budget.max(1), "{} probes over the budget {}", probe.calls, budget);
            prop_assert_eq!(chunk.stats.probes, probe.calls);
            prop_assert_eq!(chunk.stats.regions, written as u64);
            probes += probe.calls;
            match chunk.next {
                None => {
                    prop_assert_eq!(chunk.cursor(), CURSOR_DONE);
                    break;
                }
                Some(next) => {
                    prop_assert_ne!(next, CURSOR_DONE);
                    prop_assert_eq!(chunk.cursor(), next);
                    prop_assert!(next % PAGE == 0 && range.contains(&next));
                    prop_assert!(next > cursor.max(*range.start()) || written > 0);
                    cursor = next;
                }
            }
        }
        prop_assert_eq!(&joined, &whole, "range {:x?} from {:#x}", range, from);
        if !refused {
            prop_assert_eq!(probes, whole_stats.probes);
        }
    }

    /// A cursor outside the range, or not on a page boundary, is refused
    /// before any probe; 0 and every page of the range are accepted.
    #[test]
    fn scan_chunk_refuses_cursors_outside_the_range(
        map in guest_map_strategy(),
        range_choice in 0usize..4,
        range_bounds in (0usize..64, 0usize..64),
        cursor in prop_oneof![any::<u64>(), any::<u64>().prop_map(|c| c & !(PAGE - 1))],
    ) {
        let range = scan_range(&map, range_choice, range_bounds);
        let mut probe = MapProbe { map: &map, calls: 0 };
        let result = scan_chunk(&mut probe, range.clone(), cursor, 4, &mut |_| Ok(()));
        let valid = cursor == CURSOR_START || (cursor % PAGE == 0 && range.contains(&cursor));
        match result {
            Err(ScanError::BadCursor { cursor: c, start, last }) => {
                prop_assert!(!valid);
                prop_assert_eq!((c, start, last), (cursor, *range.start(), *range.end()));
                prop_assert_eq!(probe.calls, 0);
            }
            Ok(chunk) => {
                prop_assert!(valid);
                prop_assert!(chunk.stats.probes >= 1 && chunk.stats.probes <= 4);
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }

    /// Probes that report anything (levels the granule lacks, unaligned or
    /// overflowing IPAs, inconsistent answers): no panic, and what is
    /// written is well formed, in range, in increasing order.
    #[test]
    fn scan_survives_any_probe(
        answers in prop::collection::vec(any_probe_result(), 1..64),
        start in 0u64..64,
        pages in 0u64..4096,
        top in any::<bool>(),
    ) {
        let first = if top { u64::MAX - (pages + 1) * PAGE + 1 } else { start * GIB };
        let last = if top { u64::MAX } else { first + pages * PAGE + (PAGE - 1) };
        let mut probe = ScriptedProbe { answers: &answers, next: 0 };
        let mut regions: Vec<Region> = Vec::new();
        let result = scan_bounded(&mut probe, first..=last, Granule4K, 10_000, &mut |r| {
            regions.push(r);
            Ok(())
        });
        if let Err(e) = &result {
            let _ = e.to_string();
        }
        let mut previous_last: Option<u64> = None;
        for r in &regions {
            prop_assert_eq!(r.va_start % PAGE, 0);
            prop_assert_eq!(r.va_last % PAGE, PAGE - 1);
            prop_assert_eq!(r.ipa % PAGE, 0);
            prop_assert!(first <= r.va_start && r.va_start <= r.va_last && r.va_last <= last);
            prop_assert!(r.ipa.checked_add(r.va_last - r.va_start).is_some());
            prop_assert!(previous_last.is_none_or(|p| p < r.va_start), "regions out of order: {:x?}", regions);
            previous_last = Some(r.va_last);
        }
    }
}

// ---------------------------------------------------------------------------
// A simulated guest map and its probe.

/// A leaf of the guest's tables: a 4 KiB page (level 3) or a 2 MiB block
/// (level 2) at `va`, mapping `ipa`.
#[derive(Clone, Copy, Debug)]
struct Leaf {
    va: u64,
    level: u8,
    ipa: u64,
    attrs: Attrs,
}

impl Leaf {
    fn size(&self) -> u64 {
        if self.level == 2 {
            MIB2
        } else {
            PAGE
        }
    }

    fn last(&self) -> u64 {
        self.va + (self.size() - 1)
    }
}

#[derive(Debug)]
struct GuestMap {
    leaves: Vec<Leaf>,
    /// Whether the probe reports leaf levels (a descriptor-reading probe)
    /// or not (an `AT` probe).
    knows_levels: bool,
}

/// Few attribute sets, so that neighbouring pages often merge.
const ATTRS: [Attrs; 3] = [
    Attrs::READ_ONLY_KNOWN,
    Attrs { writable_el1: Some(true), ..Attrs::READ_ONLY_KNOWN },
    Attrs { user_readable: Some(false), ..Attrs::READ_ONLY_KNOWN },
];

/// Clusters of leaves near interesting places of a 48-bit space (0, entry
/// boundaries at every level, the top), with IPAs that are often
/// contiguous so that runs merge.
fn guest_map_strategy() -> impl Strategy<Value = GuestMap> {
    let cluster = (
        prop::sample::select(&[0u64, 0x20_0000, GIB - MIB2, GIB, 511 * GIB, 512 * GIB, (1 << 48) - GIB][..]),
        prop::collection::vec((0u64..40, any::<bool>(), 0usize..3, 0u8..4), 1..10),
        0u64..0x100,
    );
    (prop::collection::vec(cluster, 1..4), any::<bool>()).prop_map(|(clusters, knows_levels)| {
        let mut leaves: Vec<Leaf> = Vec::new();
        for (base, pieces, ipa_base) in clusters {
            let mut ipa = ipa_base * MIB2;
            for (offset, block, attrs, ipa_jump) in pieces {
                let (va, level) =
                    if block { ((base + offset * MIB2) & !(MIB2 - 1), 2) } else { (base + offset * PAGE, 3) };
                if ipa_jump == 0 {
                    ipa += 17 * MIB2;
                }
                let size = if level == 2 { MIB2 } else { PAGE };
                ipa = (ipa + size - 1) & !(size - 1);
                let leaf = Leaf { va, level, ipa, attrs: ATTRS[attrs] };
                // Tables cannot hold overlapping leaves: keep the first.
                if !leaves.iter().any(|l| l.va <= leaf.last() && leaf.va <= l.last()) {
                    leaves.push(leaf);
                }
                ipa += size;
            }
        }
        leaves.sort_by_key(|l| l.va);
        GuestMap { leaves, knows_levels }
    })
}

/// A range to scan: the whole TTBR0 space of a 48-bit (or 39-bit) VA, or a
/// window around the map chosen by two leaf indices.
fn scan_range(map: &GuestMap, choice: usize, (a, b): (usize, usize)) -> RangeInclusive<u64> {
    let pick = |i: usize| map.leaves[i % map.leaves.len()];
    match choice {
        0 => 0..=(1 << 48) - 1,
        1 => 0..=(1 << 39) - 1,
        _ => {
            let (x, y) = (pick(a), pick(b));
            let start = x.va.min(y.va).saturating_sub(if choice == 2 { 3 * PAGE } else { 0 });
            let start = start & !(PAGE - 1);
            // Sometimes end inside a block, to check clipping.
            let end = x.last().max(y.last()).saturating_sub(if choice == 3 { 5 * PAGE } else { 0 });
            start..=end.max(start + PAGE - 1)
        }
    }
}

struct MapProbe<'m> {
    map: &'m GuestMap,
    calls: u64,
}

impl Probe for MapProbe<'_> {
    fn probe(&mut self, va: u64) -> ProbeResult {
        self.calls += 1;
        if let Some(leaf) = self.map.leaves.iter().find(|l| l.va <= va && va <= l.last()) {
            return ProbeResult::Mapped {
                ipa: leaf.ipa + (va - leaf.va),
                attrs: leaf.attrs,
                leaf_level: self.map.knows_levels.then_some(leaf.level),
            };
        }
        // The coarsest table entry around `va` with nothing mapped in it:
        // where a hardware walk would stop.
        for (level, shift) in [(0u8, 39u32), (1, 30), (2, 21), (3, 12)] {
            let first = va & !((1u64 << shift) - 1);
            let last = first + ((1u64 << shift) - 1);
            if !self.map.leaves.iter().any(|l| l.va <= last && first <= l.last()) {
                return ProbeResult::Fault { level };
            }
        }
        unreachable!("{va:#x} is mapped");
    }
}

/// Merges VA- and IPA-contiguous, alike regions, as the scan does (written
/// out here rather than with `Region::join`, to be an independent oracle).
fn merge(pieces: Vec<Region>) -> Vec<Region> {
    let mut out: Vec<Region> = Vec::new();
    for r in pieces {
        if let Some(last) = out.last_mut() {
            if last.va_last.checked_add(1) == Some(r.va_start)
                && last.ipa.checked_add(r.va_start - last.va_start) == Some(r.ipa)
                && last.attrs == r.attrs
            {
                last.va_last = r.va_last;
                continue;
            }
        }
        out.push(r);
    }
    out
}

/// The regions a correct scan of `range` reports: the map's leaves clipped
/// to the range, merged.
fn expected_regions(map: &GuestMap, range: &RangeInclusive<u64>) -> Vec<Region> {
    let pieces = map
        .leaves
        .iter()
        .filter(|l| l.va <= *range.end() && *range.start() <= l.last())
        .map(|l| {
            let va_start = l.va.max(*range.start());
            Region { va_start, va_last: l.last().min(*range.end()), ipa: l.ipa + (va_start - l.va), attrs: l.attrs }
        })
        .collect();
    merge(pieces)
}

/// Maximal unmapped stretches of `range` between the regions.
fn expected_holes(regions: &[Region], range: &RangeInclusive<u64>) -> u64 {
    let mut holes = 0;
    let mut cursor = Some(*range.start());
    for r in regions {
        if cursor.is_some_and(|c| c < r.va_start) {
            holes += 1;
        }
        cursor = r.va_last.checked_add(1);
    }
    if cursor.is_some_and(|c| c <= *range.end()) {
        holes += 1;
    }
    holes
}

fn any_probe_result() -> impl Strategy<Value = ProbeResult> {
    prop_oneof![
        (0u8..6).prop_map(|level| ProbeResult::Fault { level }),
        (
            prop_oneof![
                any::<u64>(),
                any::<u64>().prop_map(|a| a & !(PAGE - 1)),
                (0u64..4).prop_map(|k| u64::MAX - k * PAGE - (PAGE - 1)),
            ],
            attrs_strategy(),
            prop::option::of(0u8..5),
        )
            .prop_map(|(ipa, attrs, leaf_level)| ProbeResult::Mapped { ipa, attrs, leaf_level }),
    ]
}

/// Answers from a script, round and round.
struct ScriptedProbe<'a> {
    answers: &'a [ProbeResult],
    next: usize,
}

impl Probe for ScriptedProbe<'_> {
    fn probe(&mut self, _va: u64) -> ProbeResult {
        let answer = self.answers[self.next % self.answers.len()];
        self.next += 1;
        answer
    }
}
