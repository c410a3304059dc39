//! Property tests of the device-tree parsers (`platform::board`): the DTB
//! that QEMU (or whatever ran before the monitor) hands over is hostile
//! input.
//!
//! Bounded: each property runs 256 cases (`common::config`; override with
//! `PROPTEST_CASES`; `PROPTEST_RNG_SEED` reproduces a run).
//!
//! Inputs: the real QEMU DTBs and hand-written ones in `platform/testdata/`,
//! - with random byte edits, 32-bit field overwrites and truncations;
//! - decoded into a tree by the small FDT reader below, edited *as a tree*
//!   (properties set to odd cells and strings, removed, added; nodes
//!   renamed, copied, moved, removed; memory reservations added) and
//!   written back, so that the edits reach the semantic checks behind the
//!   structure-block validation;
//! - arbitrary bytes.
//!
//! Properties: `Board::from_bytes`, `find_device` and `chosen_property`
//! never panic; every `Board` they accept keeps the promises `board.rs`
//! documents (see `check_board`); bytes after `totalsize` change nothing;
//! `free_regions` returns exactly RAM minus the reserved ranges, sorted and
//! without empty regions.

use platform::board::{
    chosen_property, dtb_total_size, find_device, free_regions, Board, DtName, GicVersion, Irq, MemRegion, DT_NAME_MAX,
    MAX_CPUS, MAX_DTB_SIZE, MAX_REGIONS, MPIDR_AFFINITY_MASK,
};
use proptest::prelude::*;

mod common;
use common::{config, Choices};

macro_rules! testdata {
    ($name:literal) => {
        ($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/", $name)) as &[u8])
    };
}

/// Every DTB in `platform/testdata/`, good and bad.
const SEEDS: &[(&str, &[u8])] = &[
    testdata!("virt-gicv3-smp4-1g.dtb"),
    testdata!("virt-gicv3-smp4-512m.dtb"),
    testdata!("virt-gicv3-smp4-3g.dtb"),
    testdata!("virt-gicv3-smp1-1g.dtb"),
    testdata!("virt-gicv3-smp8-1g.dtb"),
    testdata!("virt-gicv3-smp17-1g.dtb"),
    testdata!("virt-gicv2-smp4-1g.dtb"),
    testdata!("virt-gicv2-smp8-1g.dtb"),
    testdata!("virt-gicv3-a72-smp4-1g.dtb"),
    testdata!("virt-nonsecure-gicv3-smp4-1g.dtb"),
    testdata!("minimal.dtb"),
    testdata!("synthetic-board.dtb"),
    testdata!("hv-bootargs.dtb"),
    testdata!("bad-stdout-path.dtb"),
    testdata!("bad-reg-length.dtb"),
    testdata!("unsupported-console.dtb"),
    testdata!("bad-gpio-phandle.dtb"),
];

fn seed_strategy() -> impl Strategy<Value = (&'static str, &'static [u8])> {
    prop::sample::select(SEEDS)
}

/// Compatibles `find_device` is asked for (what the monitor and the
/// hypervisor look up, and a few that are absent).
const DEVICES: &[&str] =
    &["arm,pl011", "arm,pl031", "arm,pl061", "qemu,fw-cfg-mmio", "hv,test-mmio", "arm,gic-v3", "no,such-device"];

/// `/chosen` properties `chosen_property` is asked for.
const CHOSEN: &[&str] = &["stdout-path", "hv,bootargs", "bootargs", "rng-seed", "absent"];

// ---------------------------------------------------------------------------
// The invariants

fn check_region(what: &str, r: &MemRegion) {
    assert!(r.base.checked_add(r.size).is_some(), "{what} {r:?} runs past the end of the address space");
}

fn check_irq(what: &str, irq: &Irq, ppi_only: bool) {
    let range = if ppi_only { 16..32 } else { 16..1020 };
    assert!(range.contains(&irq.intid), "{what} {irq:?} is not a GIC PPI/SPI");
}

/// The promises of `board.rs` about every `Board` it returns, for a parse
/// of `bytes`.
fn check_board(bytes: &[u8], b: &Board) {
    // RAM: never empty, every `reg` entry (empty ones dropped), in bounds.
    assert!(!b.ram.is_empty(), "a board without RAM");
    for (what, list) in [
        ("ram", &b.ram),
        ("secure ram", &b.secure_ram),
        ("reserved", &b.reserved),
        ("flash", &b.flash),
        ("secure flash", &b.secure_flash),
    ] {
        assert!(list.len() <= MAX_REGIONS);
        for r in list {
            check_region(what, r);
            assert!(!r.is_empty(), "{what} lists the empty region {r:?}");
        }
    }
    assert_eq!(b.ram_top(), b.ram.iter().map(|r| r.base + r.size).max().unwrap());
    // CPUs: never empty, at most MAX_CPUS, no duplicates, affinity bits only.
    assert!(!b.cpus.is_empty() && b.cpus.len() <= MAX_CPUS, "{} cpus", b.cpus.len());
    for (i, &mpidr) in b.cpus.iter().enumerate() {
        assert_eq!(mpidr & !MPIDR_AFFINITY_MASK, 0, "cpu {mpidr:#x}");
        assert_eq!(b.cpu_index(mpidr), Some(i), "duplicate cpu {mpidr:#x}");
        // Bits outside the affinity fields do not matter to the lookup.
        assert_eq!(b.cpu_index(mpidr | 0x8000_0000), Some(i));
    }
    // GIC.
    check_region("GICD", &b.gic.distributor);
    match b.gic.version {
        GicVersion::V2 => {
            assert!(b.gic.redistributors.is_empty());
            assert!(b.gic.cpu_interface.is_some(), "GICv2 without GICC");
        }
        GicVersion::V3 => assert!(!b.gic.redistributors.is_empty(), "GICv3 without GICR"),
    }
    for r in b.gic.redistributors.iter() {
        check_region("GICR", r);
    }
    for r in [b.gic.cpu_interface, b.gic.hyp_interface, b.gic.vcpu_interface].iter().flatten() {
        check_region("GIC interface", r);
    }
    if let Some(irq) = &b.gic.maintenance_irq {
        check_irq("maintenance interrupt", irq, false);
    }
    // Timer: four (or five) PPIs.
    let t = &b.timer;
    for irq in [&t.secure_phys, &t.nonsecure_phys, &t.virt, &t.hyp_phys].into_iter().chain(t.hyp_virt.as_ref()) {
        check_irq("timer interrupt", irq, true);
    }
    for uart in [b.console, b.secure_console].iter().flatten() {
        check_region("console", &uart.region());
    }
    if let Some(r) = &b.fw_cfg {
        check_region("fw_cfg", r);
    }
    for gpio in [b.poweroff, b.restart].iter().flatten() {
        assert!(gpio.line < 8, "PL061 line {}", gpio.line);
        check_region("PL061", &gpio.controller);
    }
    assert!(b.dtb_size() >= 40 && b.dtb_size() <= bytes.len() && b.dtb_size() <= MAX_DTB_SIZE);
    assert_eq!(dtb_total_size(bytes), Ok(b.dtb_size()));
    let _ = b.to_string();
}

/// Runs every parser on `bytes` and checks what they return.
fn check_all(bytes: &[u8]) -> Option<Board> {
    let board = Board::from_bytes(bytes);
    match &board {
        Ok(b) => check_board(bytes, b),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    for compatible in DEVICES {
        match find_device(bytes, compatible) {
            Ok(Some(device)) => {
                check_region("device window", &device.window);
                if let Some(irq) = &device.irq {
                    check_irq("device interrupt", irq, false);
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    for name in CHOSEN {
        if let Ok(Some(value)) = chosen_property(bytes, name) {
            // A borrow of the blob itself, inside its totalsize.
            let start = value.as_ptr() as usize - bytes.as_ptr() as usize;
            assert!(start + value.len() <= dtb_total_size(bytes).unwrap());
            assert!(value.as_ptr() >= bytes.as_ptr());
        }
    }
    board.ok()
}

// ---------------------------------------------------------------------------
// The properties

proptest! {
    #![proptest_config(config())]

    /// Random byte edits (XOR) anywhere in a real DTB.
    #[test]
    fn byte_flips_never_break_the_invariants(
        (_name, seed) in seed_strategy(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
    ) {
        let mut bytes = seed.to_vec();
        for (at, xor) in &edits {
            let at = at.index(bytes.len());
            bytes[at] ^= xor;
        }
        check_all(&bytes);
    }

    /// Aligned 32-bit fields (header fields, tokens, lengths, name offsets,
    /// cells) overwritten with boundary values.
    #[test]
    fn field_overwrites_never_break_the_invariants(
        (_name, seed) in seed_strategy(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), interesting_u32()), 1..4),
    ) {
        let mut bytes = seed.to_vec();
        for (at, value) in &edits {
            let at = at.index(bytes.len() / 4) * 4;
            bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        check_all(&bytes);
    }

    /// A DTB cut short anywhere is refused, never read past its end.
    #[test]
    fn truncated_dtbs_are_refused(
        (_name, seed) in seed_strategy(),
        cut in any::<prop::sample::Index>(),
    ) {
        let len = cut.index(seed.len());
        prop_assert!(Board::from_bytes(&seed[..len]).is_err());
        check_all(&seed[..len]);
    }

    /// Bytes after `totalsize` are ignored (and a blob that still fits
    /// parses the same).
    #[test]
    fn bytes_after_totalsize_change_nothing(
        (name, seed) in seed_strategy(),
        trailing in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = seed.to_vec();
        bytes.extend_from_slice(&trailing);
        prop_assert_eq!(Board::from_bytes(&bytes), Board::from_bytes(seed), "{}", name);
        for compatible in DEVICES {
            prop_assert_eq!(find_device(&bytes, compatible), find_device(seed, compatible));
        }
    }

    /// Arbitrary bytes, bare or behind a plausible header.
    #[test]
    fn arbitrary_bytes_never_panic(
        header in any::<bool>(),
        mut bytes in prop::collection::vec(any::<u8>(), 0..512),
        fields in prop::collection::vec(0u32..512, 10),
    ) {
        if header && bytes.len() >= 40 {
            let len = bytes.len() as u32;
            let mut put = |at: usize, v: u32| bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
            put(0, 0xd00d_feed);
            put(4, len);
            for (i, f) in fields.iter().enumerate().skip(2) {
                put(i * 4, if i == 5 { 17 } else if i == 6 { 16 } else { f % len });
            }
        }
        check_all(&bytes);
    }

    /// Trees edited as trees: the semantic checks behind the structure
    /// validation see broken cells, paths, phandles and node layouts.
    #[test]
    fn tree_edits_never_break_the_invariants(
        (name, seed) in seed_strategy(),
        choices in prop::collection::vec(any::<u8>(), 1..96),
    ) {
        let mut fdt = Fdt::read(seed).unwrap_or_else(|| panic!("{name} is readable"));
        let mut c = Choices::new(&choices);
        let edits = 1 + c.below(6);
        for _ in 0..edits {
            fdt.mutate(&mut c);
        }
        check_all(&fdt.write());
    }

    /// `free_regions` is RAM minus the reserved ranges: sorted, without
    /// empty regions, each piece inside a RAM region and outside every
    /// reserved one, and every such byte in some piece (checked at every
    /// boundary the inputs define).
    #[test]
    fn free_regions_is_ram_minus_reserved(
        ram in prop::collection::vec(region_strategy(), 0..6),
        reserved in prop::collection::vec(region_strategy(), 0..8),
    ) {
        let Ok(free) = free_regions(&ram, reserved.iter().copied()) else {
            return Ok(());
        };
        prop_assert!(free.windows(2).all(|w| w[0].base <= w[1].base), "{:?}", free);
        for piece in free.iter() {
            prop_assert!(!piece.is_empty());
            prop_assert!(ram.iter().any(|r| r.base <= piece.base && piece.end() <= r.end()),
                "{:?} is not inside RAM {:?}", piece, ram);
            prop_assert!(!reserved.iter().any(|r| r.overlaps(piece)),
                "{:?} overlaps reserved {:?}", piece, reserved);
        }
        let mut points: Vec<u64> = Vec::new();
        for r in ram.iter().chain(&reserved) {
            for p in [r.base, r.end()] {
                points.extend([p.saturating_sub(1), p, p.saturating_add(1)]);
            }
        }
        for p in points {
            let expected = ram.iter().any(|r| r.contains(p)) && !reserved.iter().any(|r| r.contains(p));
            let got = free.iter().any(|r| r.contains(p));
            prop_assert_eq!(got, expected, "byte {:#x}: ram {:?} reserved {:?} free {:?}", p, ram, reserved, free);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Names copied out of a hostile DTB for error messages: kept whole up
    /// to `DT_NAME_MAX` bytes, otherwise cut at a character boundary and
    /// marked with "...", never longer, always valid text.
    #[test]
    fn dt_names_are_kept_or_cut_cleanly(name in prop_oneof![".{0,80}", "[a-z@,0-9]{0,80}"]) {
        let kept = DtName::new(&name);
        let text = kept.as_str();
        if name.len() <= DT_NAME_MAX {
            prop_assert_eq!(text, name.as_str());
        } else {
            prop_assert!(text.len() <= DT_NAME_MAX && text.len() >= DT_NAME_MAX - 6, "{:?}", text);
            let prefix = text.strip_suffix("...").expect("a cut name ends in ...");
            prop_assert!(name.starts_with(prefix));
        }
        prop_assert_eq!(kept.to_string(), text);
    }
}

/// The FDT reader and writer below reproduce every seed (a check of the
/// test's own tooling: the tree edits start from the real trees).
#[test]
fn the_fdt_tooling_round_trips_the_seeds() {
    for (name, seed) in SEEDS {
        let fdt = Fdt::read(seed).unwrap_or_else(|| panic!("{name} is readable"));
        let written = fdt.write();
        assert_eq!(
            Board::from_bytes(&written).map(|b| b.to_string()),
            Board::from_bytes(seed).map(|b| b.to_string()),
            "{name}"
        );
        assert_eq!(Fdt::read(&written).unwrap(), fdt, "{name}");
    }
}

fn region_strategy() -> impl Strategy<Value = MemRegion> {
    prop_oneof![
        4 => (0u64..48, 0u64..24).prop_map(|(b, s)| MemRegion::new(b * 0x1000, s * 0x1000)),
        1 => (0u64..4, 0u64..8).prop_map(|(b, s)| MemRegion::new(u64::MAX - b * 0x1000, s * 0x1000)),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(b, s)| MemRegion::new(b, s)),
    ]
}

fn interesting_u32() -> impl Strategy<Value = u32> {
    prop_oneof![prop::sample::select(INTERESTING_U32), any::<u32>(),]
}

const INTERESTING_U32: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    9,
    16,
    17,
    31,
    32,
    0x40,
    0xff,
    0x100,
    0x3ff,
    0x1000,
    0xffff,
    0x8000,
    0x8001,
    0x8002,
    0x10000,
    0x7fff_ffff,
    0x8000_0000,
    0xd00d_feed,
    0xffff_fff0,
    0xffff_fffe,
    0xffff_ffff,
];

// ---------------------------------------------------------------------------
// A small FDT reader and writer, for edits at the tree level.

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    name: Vec<u8>,
    props: Vec<(Vec<u8>, Vec<u8>)>,
    children: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Fdt {
    reservations: Vec<(u64, u64)>,
    boot_cpuid: u32,
    root: Node,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn cstr(b: &[u8], at: usize) -> Option<&[u8]> {
    let rest = b.get(at..)?;
    Some(&rest[..rest.iter().position(|&x| x == 0)?])
}

impl Fdt {
    /// Reads a well-formed blob (`None` for anything else).
    fn read(b: &[u8]) -> Option<Self> {
        if be32(b, 0)? != 0xd00d_feed {
            return None;
        }
        let (structs, strings, rsv) = (be32(b, 8)? as usize, be32(b, 12)? as usize, be32(b, 16)? as usize);
        let mut reservations = Vec::new();
        for i in 0.. {
            let entry = (be64(b, rsv + 16 * i)?, be64(b, rsv + 16 * i + 8)?);
            if entry == (0, 0) {
                break;
            }
            reservations.push(entry);
        }
        let mut off = structs;
        let mut stack: Vec<Node> = Vec::new();
        loop {
            let token = be32(b, off)?;
            off += 4;
            match token {
                1 => {
                    let name = cstr(b, off)?.to_vec();
                    off = (off + name.len() + 1 + 3) & !3;
                    stack.push(Node { name, props: Vec::new(), children: Vec::new() });
                }
                2 => {
                    let node = stack.pop()?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(node),
                        None => {
                            return (be32(b, off)? == 9).then(|| Fdt {
                                reservations,
                                boot_cpuid: be32(b, 28).unwrap_or(0),
                                root: node,
                            })
                        }
                    }
                }
                3 => {
                    let len = be32(b, off)? as usize;
                    let name = cstr(b, strings + be32(b, off + 4)? as usize)?.to_vec();
                    let value = b.get(off + 8..off + 8 + len)?.to_vec();
                    off = (off + 8 + len + 3) & !3;
                    stack.last_mut()?.props.push((name, value));
                }
                4 => {}
                _ => return None,
            }
        }
    }

    /// Writes a version-17 blob: header, reservations, structure, strings.
    fn write(&self) -> Vec<u8> {
        fn emit(node: &Node, out: &mut Vec<u8>, strings: &mut Vec<u8>) {
            out.extend(1u32.to_be_bytes());
            out.extend(&node.name);
            out.push(0);
            while !out.len().is_multiple_of(4) {
                out.push(0);
            }
            for (name, value) in &node.props {
                let mut key = name.clone();
                key.push(0);
                let name_off = match strings.windows(key.len()).position(|w| w == &key[..]) {
                    Some(at) if at == 0 || strings[at - 1] == 0 => at,
                    _ => {
                        strings.extend(&key);
                        strings.len() - key.len()
                    }
                };
                out.extend(3u32.to_be_bytes());
                out.extend((value.len() as u32).to_be_bytes());
                out.extend((name_off as u32).to_be_bytes());
                out.extend(value);
                while !out.len().is_multiple_of(4) {
                    out.push(0);
                }
            }
            for child in &node.children {
                emit(child, out, strings);
            }
            out.extend(2u32.to_be_bytes());
        }
        let mut structs = Vec::new();
        let mut strings = Vec::new();
        emit(&self.root, &mut structs, &mut strings);
        structs.extend(9u32.to_be_bytes());
        let rsv_off = 40usize;
        let struct_off = rsv_off + 16 * (self.reservations.len() + 1);
        let strings_off = struct_off + structs.len();
        let total = strings_off + strings.len();
        let mut out = Vec::with_capacity(total);
        for v in [
            0xd00d_feed,
            total as u32,
            struct_off as u32,
            strings_off as u32,
            rsv_off as u32,
            17,
            16,
            self.boot_cpuid,
            strings.len() as u32,
            structs.len() as u32,
        ] {
            out.extend(u32::to_be_bytes(v));
        }
        for &(base, size) in self.reservations.iter().chain(&[(0, 0)]) {
            out.extend(base.to_be_bytes());
            out.extend(size.to_be_bytes());
        }
        out.extend(structs);
        out.extend(strings);
        out
    }

    /// The phandles the tree defines (for edits that point at real nodes).
    fn phandles(&self) -> Vec<u32> {
        fn walk(n: &Node, out: &mut Vec<u32>) {
            for (name, value) in &n.props {
                if name == b"phandle" && value.len() == 4 {
                    out.push(be32(value, 0).unwrap());
                }
            }
            n.children.iter().for_each(|c| walk(c, out));
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// One random edit.
    fn mutate(&mut self, c: &mut Choices<'_>) {
        let count = count_nodes(&self.root);
        let target = c.below(count as u64) as usize;
        let phandles = self.phandles();
        let op = c.below(16);
        if op == 15 {
            self.reservations.push((c.cell_or_u64(), c.cell_or_u64()));
            return;
        }
        if op == 14 && target != 0 {
            // Move a subtree under another node.
            let node = take_nth(&mut self.root, target);
            let count = count_nodes(&self.root);
            let to = c.below(count as u64) as usize;
            nth_mut(&mut self.root, to).children.push(node);
            return;
        }
        let node = nth_mut(&mut self.root, target);
        match op {
            // Change a value: whole, one cell, or its length.
            0..=2 if !node.props.is_empty() => {
                let i = c.below(node.props.len() as u64) as usize;
                node.props[i].1 = c.value(&phandles);
            }
            3..=5 if !node.props.is_empty() => {
                let i = c.below(node.props.len() as u64) as usize;
                let value = &mut node.props[i].1;
                if value.len() >= 4 {
                    let at = c.below(value.len() as u64 / 4) as usize * 4;
                    let cell = c.cell(&phandles);
                    value[at..at + 4].copy_from_slice(&cell.to_be_bytes());
                } else {
                    value.extend(c.cell(&phandles).to_be_bytes());
                }
            }
            6 if !node.props.is_empty() => {
                let i = c.below(node.props.len() as u64) as usize;
                let value = &mut node.props[i].1;
                let cut = c.below(value.len() as u64 + 1) as usize;
                value.truncate(cut);
            }
            7 if !node.props.is_empty() => {
                let i = c.below(node.props.len() as u64) as usize;
                node.props.remove(i);
            }
            // Add (or shadow) a property the parser reads.
            8..=10 => {
                let name = PROPERTY_NAMES[c.below(PROPERTY_NAMES.len() as u64) as usize];
                let value = c.value(&phandles);
                let at = c.below(node.props.len() as u64 + 1) as usize;
                node.props.insert(at, (name.as_bytes().to_vec(), value));
            }
            11 => node.name = NODE_NAMES[c.below(NODE_NAMES.len() as u64) as usize].as_bytes().to_vec(),
            12 if !node.children.is_empty() => {
                let i = c.below(node.children.len() as u64) as usize;
                let copy = node.children[i].clone();
                node.children.push(copy);
            }
            13 if !node.children.is_empty() => {
                let i = c.below(node.children.len() as u64) as usize;
                node.children.remove(i);
            }
            _ => {
                // A new child, sometimes copied from elsewhere in the tree.
                let name = NODE_NAMES[c.below(NODE_NAMES.len() as u64) as usize];
                let props = (0..c.below(4))
                    .map(|_| {
                        let n = PROPERTY_NAMES[c.below(PROPERTY_NAMES.len() as u64) as usize];
                        (n.as_bytes().to_vec(), c.value(&phandles))
                    })
                    .collect();
                node.children.push(Node { name: name.as_bytes().to_vec(), props, children: Vec::new() });
            }
        }
    }
}

fn count_nodes(n: &Node) -> usize {
    1 + n.children.iter().map(count_nodes).sum::<usize>()
}

/// The `n`th node in pre-order (`n` < `count_nodes(root)`).
fn nth_mut(root: &mut Node, n: usize) -> &mut Node {
    fn go<'n>(node: &'n mut Node, n: &mut usize) -> Option<&'n mut Node> {
        if *n == 0 {
            return Some(node);
        }
        *n -= 1;
        for child in &mut node.children {
            if let Some(found) = go(child, n) {
                return Some(found);
            }
        }
        None
    }
    let mut n = n;
    go(root, &mut n).expect("node index in range")
}

/// Removes and returns the `n`th node in pre-order (`0 < n < count`).
fn take_nth(root: &mut Node, n: usize) -> Node {
    fn go(node: &mut Node, n: &mut usize) -> Option<Node> {
        for i in 0..node.children.len() {
            if *n == 0 {
                return Some(node.children.remove(i));
            }
            *n -= 1;
            if let Some(found) = go(&mut node.children[i], n) {
                return Some(found);
            }
        }
        None
    }
    let mut n = n - 1;
    go(root, &mut n).expect("node index in range")
}

const PROPERTY_NAMES: &[&str] = &[
    "reg",
    "ranges",
    "#address-cells",
    "#size-cells",
    "compatible",
    "status",
    "secure-status",
    "device_type",
    "interrupts",
    "interrupt-parent",
    "#interrupt-cells",
    "#redistributor-regions",
    "phandle",
    "linux,phandle",
    "stdout-path",
    "gpios",
    "#gpio-cells",
    "clock-frequency",
    "serial0",
    "hv,bootargs",
];

const NODE_NAMES: &[&str] = &[
    "cpus",
    "cpu@0",
    "cpu@1",
    "cpu",
    "memory@40000000",
    "memory",
    "chosen",
    "secure-chosen",
    "reserved-memory",
    "aliases",
    "pl011@9000000",
    "intc@8000000",
    "timer",
    "gpio-poweroff",
    "soc",
    "",
    "a@b@c",
];

const STRINGS: &[&str] = &[
    "okay",
    "ok",
    "disabled",
    "fail",
    "memory",
    "cpu",
    "arm,pl011",
    "arm,primecell",
    "arm,gic-v3",
    "arm,cortex-a15-gic",
    "arm,gic-400",
    "arm,armv8-timer",
    "qemu,fw-cfg-mmio",
    "cfi-flash",
    "gpio-poweroff",
    "gpio-restart",
    "arm,pl061",
    "arm,psci-1.0",
    "/pl011@9000000",
    "/pl011@9000000:115200n8",
    "/pl011@9040000",
    "serial0",
    "serial0:115200",
    "serial0/child",
    "/",
    "/chosen",
    "//",
    "/nonexistent",
    "",
];

/// Board-specific decisions on top of the shared reader.
impl Choices<'_> {
    fn cell(&mut self, phandles: &[u32]) -> u32 {
        match self.below(8) {
            0 if !phandles.is_empty() => phandles[self.below(phandles.len() as u64) as usize],
            1 => u32::from_le_bytes(core::array::from_fn(|_| self.byte())),
            _ => INTERESTING_U32[self.below(INTERESTING_U32.len() as u64) as usize],
        }
    }

    fn cell_or_u64(&mut self) -> u64 {
        match self.below(4) {
            0 => u64::from_le_bytes(core::array::from_fn(|_| self.byte())),
            1 => u64::MAX - self.below(0x2000),
            _ => u64::from(self.cell(&[])) << (12 * self.below(3)),
        }
    }

    /// A property value: cells, a string (list), or raw bytes.
    fn value(&mut self, phandles: &[u32]) -> Vec<u8> {
        match self.below(8) {
            0..=3 => (0..self.below(6)).flat_map(|_| self.cell(phandles).to_be_bytes()).collect(),
            4..=5 => {
                let mut v = Vec::new();
                for _ in 0..=self.below(2) {
                    v.extend(STRINGS[self.below(STRINGS.len() as u64) as usize].as_bytes());
                    v.push(0);
                }
                if self.below(8) == 0 {
                    v.pop(); // not NUL-terminated
                }
                v
            }
            6 => vec![0xff, 0xfe, 0], // not UTF-8
            _ => (0..self.below(13)).map(|_| self.byte()).collect(),
        }
    }
}
