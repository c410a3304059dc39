//! Property tests of the stage-1 table builder (`platform::paging`) on a
//! `StaticPool` over a `Vec<Table>`, and of the stage-2 geometry choice
//! (`platform::stage2::geometry`).
//!
//! Bounded: each property runs 256 cases (`common::config`; override with
//! `PROPTEST_CASES`; `PROPTEST_RNG_SEED` reproduces a run).
//!
//! Random sequences of `map` / `unmap` with random (VA, PA, length,
//! attributes) in random VA widths and regimes are run against a model of
//! what is mapped (intervals of input address). After every step:
//! - `map` succeeds exactly when the arguments are valid and nothing in the
//!   range is mapped (or fails with `PoolExhausted`), names the first mapped
//!   VA when it fails for that, and changes nothing when it fails;
//! - `unmap` of a whole earlier mapping succeeds; any `unmap` that succeeds
//!   covered only mapped pages; its errors name the first unmapped page or
//!   a leaf that the range would split, and change nothing;
//! - `translate` of every VA inside a mapping (sampled at the ends and
//!   boundaries) returns the mapped PA, through a leaf that lies entirely
//!   inside one mapping, with the attribute bits `encode` gives; every
//!   unmapped VA (and every VA outside the space) faults.

use platform::addr::{PhysAddr, VirtAddr};
use platform::paging::{
    bits, encode, map, root_level, translate, unmap, Attributes, FaultKind, MapError, MemoryType, PagePool, Regime,
    StaticPool, Table, UserAccess,
};
use platform::stage2::{geometry, GeometryError};
use proptest::prelude::*;

mod common;
use common::config;

const PAGE: u64 = 4096;
const MIB2: u64 = 2 << 20;
const GIB: u64 = 1 << 30;
/// Largest output address a descriptor holds (48-bit PA).
const OA_LIMIT: u64 = (1 << 48) - 1;
/// Tables in each case's pool: enough for most sequences, few enough that
/// a large unaligned mapping runs out (and must be rolled back).
const POOL_PAGES: usize = 40;

fn attributes_strategy() -> impl Strategy<Value = Attributes> {
    (
        prop_oneof![3 => Just(MemoryType::Normal), 1 => Just(MemoryType::Device)],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(UserAccess::None), Just(UserAccess::ReadOnly), Just(UserAccess::ReadWrite)],
        any::<bool>(),
        prop_oneof![3 => Just(true), 1 => Just(false)],
    )
        .prop_map(|(memory, writable, executable, user, user_executable, global)| Attributes {
            memory,
            writable,
            executable,
            user,
            user_executable,
            global,
        })
}

/// An input address built from interesting 1 GiB / 2 MiB / 4 KiB indices.
fn ia_strategy() -> impl Strategy<Value = u64> {
    (
        0u64..3,
        prop_oneof![2 => Just(0u64), 1 => prop::sample::select(&[1u64, 2, 511][..])],
        prop_oneof![2 => Just(0u64), 1 => prop::sample::select(&[1u64, 2, 3, 510, 511][..])],
        prop_oneof![15 => Just(0u64), 1 => Just(0x800u64)],
    )
        .prop_map(|(g, m, p, misalign)| g * GIB + m * MIB2 + p * PAGE + misalign)
}

fn pa_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => ia_strategy().prop_map(|ia| ia + 0x4000_0000),
        1 => (0u64..4).prop_map(|k| OA_LIMIT + 1 - (k + 1) * MIB2),
        1 => any::<u64>().prop_map(|pa| pa & !(PAGE - 1)),
    ]
}

fn len_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (1u64..6).prop_map(|n| n * PAGE),
        3 => prop::sample::select(&[MIB2, MIB2 + PAGE, 2 * MIB2, MIB2 - PAGE, GIB][..]),
        1 => Just(0u64),
        1 => Just(0x1800u64),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    /// `repair` makes the attributes expressible in the regime first.
    Map {
        ia: u64,
        upper: bool,
        pa: u64,
        len: u64,
        attrs: Attributes,
        repair: bool,
    },
    Unmap {
        ia: u64,
        upper: bool,
        len: u64,
    },
    /// Map (`map`) or unmap part of (`!map`) the `n`th mapping made so
    /// far, shifted by `shift` pages: collisions and split blocks.
    Near {
        n: usize,
        shift: i64,
        len: u64,
        map: bool,
    },
    /// Unmap the whole of the `n`th mapping made so far (if any is left).
    UnmapMapping {
        n: usize,
    },
}

/// The attributes with whatever the regime cannot express taken out.
fn repaired(regime: Regime, mut a: Attributes) -> Attributes {
    if regime == Regime::El2 {
        a.user = UserAccess::None;
        a.user_executable = false;
        a.global = true;
    }
    if a.memory == MemoryType::Device {
        a.executable = false;
        a.user_executable = false;
    }
    match a.user {
        UserAccess::ReadOnly => a.writable = false,
        UserAccess::ReadWrite => {
            a.writable = true;
            a.executable = false;
        }
        UserAccess::None => {}
    }
    a
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (ia_strategy(), prop::bool::weighted(0.2), pa_strategy(), len_strategy(), attributes_strategy(), prop::bool::weighted(0.85))
            .prop_map(|(ia, upper, pa, len, attrs, repair)| Op::Map { ia, upper, pa, len, attrs, repair }),
        3 => (any::<usize>(), -3i64..600, len_strategy(), any::<bool>()).prop_map(|(n, shift, len, map)| Op::Near { n, shift, len, map }),
        2 => (ia_strategy(), prop::bool::weighted(0.2), len_strategy()).prop_map(|(ia, upper, len)| Op::Unmap { ia, upper, len }),
        2 => any::<usize>().prop_map(|n| Op::UnmapMapping { n }),
    ]
}

/// What is mapped, by input address (the VA with its range bits removed:
/// both ranges index the same root here): `(ia, len, pa, attribute bits)`.
#[derive(Clone, Debug, Default)]
struct Model {
    spans: Vec<(u64, u64, u64, u64)>,
    /// Every successful map, for `UnmapMapping` (may be gone since).
    made: Vec<(u64, u64)>,
}

impl Model {
    fn lookup(&self, ia: u64) -> Option<(u64, u64, u64, u64)> {
        self.spans.iter().copied().find(|&(s, l, _, _)| s <= ia && ia - s < l)
    }

    fn first_mapped(&self, ia: u64, len: u64) -> Option<u64> {
        self.spans.iter().filter(|&&(s, l, _, _)| s < ia + len && ia < s + l).map(|&(s, _, _, _)| s.max(ia)).min()
    }

    fn first_unmapped(&self, ia: u64, len: u64) -> Option<u64> {
        let mut at = ia;
        while at < ia + len {
            match self.lookup(at) {
                Some((s, l, _, _)) => at = s + l,
                None => return Some(at),
            }
        }
        None
    }

    fn remove(&mut self, ia: u64, len: u64) {
        if len == 0 {
            return;
        }
        let mut out = Vec::new();
        for &(s, l, pa, attr) in &self.spans {
            let e = s + l;
            if e <= ia || ia + len <= s {
                out.push((s, l, pa, attr));
                continue;
            }
            if s < ia {
                out.push((s, ia - s, pa, attr));
            }
            if ia + len < e {
                let cut = ia + len;
                out.push((cut, e - cut, pa + (cut - s), attr));
            }
        }
        self.spans = out;
    }
}

struct Space {
    va_bits: u32,
    regime: Regime,
}

impl Space {
    fn mask(&self) -> u64 {
        (1u64 << self.va_bits) - 1
    }

    fn va(&self, ia: u64, upper: bool) -> u64 {
        if upper {
            !self.mask() | ia
        } else {
            ia
        }
    }

    /// The input address of `va` if the whole `len`-byte range is in one
    /// VA range of the space.
    fn ia_of_range(&self, va: u64, len: u64) -> Option<u64> {
        let last = va.checked_add(len.saturating_sub(1))?;
        let top = va & !self.mask();
        (top == last & !self.mask() && (top == 0 || top == !self.mask())).then_some(va & self.mask())
    }
}

/// The result `map` must give for arguments that pass its checks, given
/// the model; `None` when they pass them.
fn map_precheck(space: &Space, va: u64, pa: u64, len: u64, attrs: Attributes) -> Option<MapError> {
    if let Err(e) = encode(space.regime, attrs) {
        return Some(MapError::Unexpressible(e));
    }
    if !va.is_multiple_of(PAGE) || !pa.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
        return Some(MapError::Misaligned);
    }
    let range = space.ia_of_range(va, len);
    let upper = va & !space.mask() != 0;
    let pa_ok = pa.checked_add(len.saturating_sub(1)).is_some_and(|last| last <= OA_LIMIT);
    if range.is_none() || (upper && space.regime == Regime::El2) || !pa_ok {
        return Some(MapError::OutOfRange);
    }
    None
}

/// Checks every sampled VA against the model.
fn check_translations(
    pool: &mut StaticPool<'_>,
    root: PhysAddr,
    space: &Space,
    model: &Model,
    extra: &[u64],
) -> Result<(), TestCaseError> {
    let mut samples: Vec<u64> = extra.to_vec();
    for &(s, l, _, _) in &model.spans {
        samples.extend([s, s + l - PAGE, s + l / 2, s.wrapping_sub(PAGE), s + l]);
        // Leaf boundaries inside the span.
        for size in [MIB2, GIB] {
            let b = (s + size - 1) & !(size - 1);
            samples.extend([b, b.wrapping_sub(PAGE)]);
        }
    }
    for &ia in &samples {
        let ia = ia & space.mask() & !(PAGE - 1);
        for upper in [false, true] {
            let va = space.va(ia, upper) | 0x123;
            let result = translate(pool, root, space.va_bits, VirtAddr(va));
            match (model.lookup(ia), result) {
                (Some((s, l, pa, attr)), Ok(walk)) => {
                    prop_assert_eq!(walk.pa.0, pa + (ia - s) + 0x123, "VA {:#x}", va);
                    prop_assert!((1..=3).contains(&walk.level));
                    let kind = if walk.level == 3 { 0b11 } else { 0b01 };
                    prop_assert_eq!(walk.descriptor & 0b11, kind);
                    prop_assert_eq!(walk.descriptor & !bits::OA_MASK & !0b11, attr, "attributes of {:#x}", va);
                    // The leaf lies entirely inside the mapping.
                    let leaf = ia & !(walk.size() - 1);
                    prop_assert!(
                        s <= leaf && leaf + walk.size() <= s + l,
                        "leaf {:#x}+{:#x} (level {}) leaves the mapping {:#x}+{:#x}",
                        leaf,
                        walk.size(),
                        walk.level,
                        s,
                        l
                    );
                    prop_assert_eq!(walk.pa.0 & (walk.size() - 1), va & (walk.size() - 1));
                }
                (None, Err(fault)) => {
                    prop_assert_eq!(fault.kind, FaultKind::Translation, "VA {:#x}", va);
                    prop_assert!(fault.level <= 3);
                }
                (expected, got) => prop_assert!(false, "VA {:#x}: model {:x?}, translate {:x?}", va, expected, got),
            }
        }
    }
    // Outside the space: a level-0 fault.
    if space.va_bits < 48 {
        let outside = 1u64 << space.va_bits;
        prop_assert_eq!(
            translate(pool, root, space.va_bits, VirtAddr(outside)).map_err(|f| (f.level, f.kind)),
            Err((0, FaultKind::Translation))
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Random `map`/`unmap` sequences agree with the interval model.
    #[test]
    fn map_unmap_translate_agree_with_the_model(
        va_bits in prop::sample::select(&[25u32, 30, 31, 39, 40, 48][..]),
        regime in prop_oneof![Just(Regime::El2), Just(Regime::El2And0), Just(Regime::El1And0)],
        base_page in prop_oneof![Just(0x7f000u64), 0u64..(1 << 30)],
        ops in prop::collection::vec(op_strategy(), 1..16),
    ) {
        let mut pages = vec![Table::ZERO; POOL_PAGES];
        let mut pool = StaticPool::new(&mut pages, PhysAddr(base_page * PAGE)).unwrap();
        let root = pool.alloc_table().unwrap();
        let space = Space { va_bits, regime };
        prop_assert!(root_level(va_bits).is_some());
        let mut model = Model::default();
        for op in ops {
            // A map near an earlier mapping, to collide with it.
            let op = match op {
                Op::Near { n, shift, len, map: true } if !model.made.is_empty() => {
                    let (start, _) = model.made[n % model.made.len()];
                    let ia = start.wrapping_add_signed(shift * PAGE as i64);
                    Op::Map { ia, upper: false, pa: ia.wrapping_add(0x4000_0000), len, attrs: Attributes::DATA, repair: true }
                }
                other => other,
            };
            match op {
                Op::Near { n, shift, len, map: false } => {
                    if model.made.is_empty() {
                        continue;
                    }
                    let (start, _) = model.made[n % model.made.len()];
                    let ia = start.wrapping_add_signed(shift * PAGE as i64) & space.mask();
                    let result = unmap(&mut pool, root, va_bits, VirtAddr(ia), len);
                    check_unmap(&mut pool, root, &space, &mut model, ia, len, result)?;
                    check_translations(&mut pool, root, &space, &model, &[ia, ia + len])?;
                }
                Op::Near { map: true, .. } => {}
                Op::Map { ia, upper, pa, len, attrs, repair } => {
                    let attrs = if repair { repaired(regime, attrs) } else { attrs };
                    let ia = ia & space.mask();
                    let va = space.va(ia, upper);
                    let result = map(&mut pool, root, va_bits, regime, VirtAddr(va), PhysAddr(pa), len, attrs);
                    match map_precheck(&space, va, pa, len, attrs) {
                        Some(error) => prop_assert_eq!(result, Err(error)),
                        None => {
                            let first = if len == 0 { None } else { model.first_mapped(ia, len) };
                            match result {
                                Ok(()) => {
                                    prop_assert!(first.is_none(), "map over the mapped {:#x}", first.unwrap());
                                    if len > 0 {
                                        model.spans.push((ia, len, pa, encode(regime, attrs).unwrap()));
                                        model.made.push((ia, len));
                                    }
                                }
                                Err(MapError::AlreadyMapped { va: at }) => {
                                    prop_assert_eq!(Some(at.0), first.map(|f| space.va(f, upper)));
                                }
                                Err(MapError::PoolExhausted) => {}
                                Err(other) => prop_assert!(false, "unexpected {:?}", other),
                            }
                        }
                    }
                    check_translations(&mut pool, root, &space, &model, &[ia, ia + len, ia + len.saturating_sub(PAGE)])?;
                }
                Op::Unmap { ia, upper, len } => {
                    let ia = ia & space.mask();
                    let va = space.va(ia, upper);
                    let result = unmap(&mut pool, root, va_bits, VirtAddr(va), len);
                    check_unmap(&mut pool, root, &space, &mut model, va, len, result)?;
                    check_translations(&mut pool, root, &space, &model, &[ia, ia + len])?;
                }
                Op::UnmapMapping { n } => {
                    if model.made.is_empty() {
                        continue;
                    }
                    let (ia, len) = model.made[n % model.made.len()];
                    if model.first_unmapped(ia, len).is_some() {
                        continue;
                    }
                    // A whole mapping: its leaves are exactly its range.
                    let result = unmap(&mut pool, root, va_bits, VirtAddr(ia), len);
                    prop_assert_eq!(result, Ok(()), "unmap of the whole mapping {:#x}+{:#x}", ia, len);
                    model.remove(ia, len);
                    check_translations(&mut pool, root, &space, &model, &[ia, ia + len])?;
                }
            }
        }
    }

    /// Stage-2 geometry: the smallest IPA space of at least 32 bits that
    /// holds every address below `end`, within the PA range and 48 bits,
    /// starting at level 1 up to 39 bits and level 0 above.
    #[test]
    fn stage2_geometry_is_the_smallest_that_fits(pa_bits in 0u32..70, end in prop_oneof![any::<u64>(), (0u32..64).prop_map(|b| 1u64 << b)]) {
        let needed = (64 - end.saturating_sub(1).leading_zeros()).max(32);
        match geometry(pa_bits, end) {
            Ok(g) => {
                prop_assert_eq!(g.ipa_bits, needed);
                prop_assert!(g.ipa_bits <= pa_bits && g.ipa_bits <= 48);
                prop_assert!(u128::from(end) <= 1u128 << g.ipa_bits);
                prop_assert_eq!(g.root_level, if g.ipa_bits <= 39 { 1 } else { 0 });
                prop_assert_eq!(g.t0sz(), 64 - u64::from(g.ipa_bits));
                if g.root_level == 0 {
                    prop_assert!(pa_bits >= 44);
                }
            }
            Err(GeometryError::TooLarge { needed_bits, pa_bits: p }) => {
                prop_assert_eq!((needed_bits, p), (needed, pa_bits));
                prop_assert!(needed > pa_bits || needed > 48 || (needed > 39 && pa_bits < 44));
                let _ = GeometryError::TooLarge { needed_bits, pa_bits: p }.to_string();
            }
        }
    }
}

/// The checks of one `unmap` of `len` bytes at `va`, and the model update.
fn check_unmap(
    pool: &mut StaticPool<'_>,
    root: PhysAddr,
    space: &Space,
    model: &mut Model,
    va: u64,
    len: u64,
    result: Result<(), MapError>,
) -> Result<(), TestCaseError> {
    if !va.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
        prop_assert_eq!(result, Err(MapError::Misaligned));
        return Ok(());
    }
    let Some(ia) = space.ia_of_range(va, len) else {
        prop_assert_eq!(result, Err(MapError::OutOfRange));
        return Ok(());
    };
    let top = va & !space.mask();
    match result {
        Ok(()) => {
            prop_assert_eq!(model.first_unmapped(ia, len), None, "unmap of unmapped pages succeeded");
            model.remove(ia, len);
        }
        Err(MapError::NotMapped { va: at }) => {
            prop_assert_eq!(model.first_unmapped(ia, len).map(|f| top | f), Some(at.0));
        }
        Err(MapError::SplitsBlock { va: at, level }) => {
            let at_ia = at.0 & space.mask();
            prop_assert!(ia <= at_ia && at_ia < ia + len);
            prop_assert_eq!(model.first_unmapped(ia, at_ia - ia), None);
            let walk = translate(pool, root, space.va_bits, at).expect("the split leaf is mapped");
            prop_assert_eq!(walk.level, level);
            let size = walk.size();
            prop_assert!(
                !at_ia.is_multiple_of(size) || at_ia + size > ia + len,
                "leaf {:#x} level {} is not split by {:#x}+{:#x}",
                at_ia,
                level,
                ia,
                len
            );
        }
        Err(other) => prop_assert!(false, "unexpected {:?}", other),
    }
    Ok(())
}
