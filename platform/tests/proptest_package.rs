//! Property tests of the firmware package parser (`platform::package`), the
//! monitor's parser of the flash contents.
//!
//! Bounded: each property runs 256 cases (`common::config`; override with
//! `PROPTEST_CASES`; `PROPTEST_RNG_SEED` reproduces a run).
//!
//! The properties:
//! - a package built with `encode` parses, with exactly the entries given,
//!   and keeps parsing the same with any bytes appended;
//! - every byte of a package is checked: changing any byte before
//!   `total_size`, or cutting the package short, makes the parse fail,
//!   whatever else is changed past `total_size`;
//! - on packages whose header digest is made right after random edits
//!   (so the parse gets past it), `Package::parse` accepts exactly what an
//!   independent reading of the format documentation accepts, and every
//!   accepted package round-trips its entries (digests, payloads, hints);
//! - arbitrary bytes never panic.

use platform::linux::ImageHeader;
use platform::package::{
    encode, encoded_len, sha256, EntryDesc, EntryKind, LoadHints, Package, PackageError, ENTRY_SIZE, FORMAT_VERSION,
    HEADER_SIZE, HV_CMDLINE_MAX, LINUX_CMDLINE_MAX, MAGIC, MAX_ENTRIES, MIN_LOAD_ALIGN,
};
use proptest::prelude::*;

mod common;
use common::{config, Choices};

/// A payload and valid load hints for it.
fn entry_strategy() -> impl Strategy<Value = (Vec<u8>, LoadHints)> {
    (prop::collection::vec(any::<u8>(), 0..300), 0u32..10, 0u64..0x4000, any::<u64>()).prop_map(
        |(payload, align_shift, extra, entry)| {
            let mem_size = (payload.len() as u64 + extra).max(4);
            let load = LoadHints {
                align: MIN_LOAD_ALIGN << align_shift,
                mem_size,
                entry_offset: (entry % (mem_size / 4)) * 4,
            };
            (payload, load)
        },
    )
}

/// Zero, one or two entries of distinct kinds, in either order.
fn descs_strategy() -> impl Strategy<Value = Vec<(EntryKind, Vec<u8>, LoadHints)>> {
    (0usize..=2, any::<bool>(), entry_strategy(), entry_strategy()).prop_map(|(n, swap, a, b)| {
        let kinds = if swap {
            [EntryKind::GuestStub, EntryKind::Hypervisor]
        } else {
            [EntryKind::Hypervisor, EntryKind::GuestStub]
        };
        [a, b].into_iter().zip(kinds).take(n).map(|((payload, load), kind)| (kind, payload, load)).collect()
    })
}

fn build(entries: &[(EntryKind, Vec<u8>, LoadHints)]) -> Vec<u8> {
    let descs: Vec<EntryDesc<'_>> =
        entries.iter().map(|(kind, payload, load)| EntryDesc { kind: *kind, payload, load: *load }).collect();
    let mut out = vec![0u8; encoded_len(&descs)];
    let written = encode(&descs, &mut out).expect("valid descriptions encode");
    assert_eq!(written, out.len());
    out
}

/// What must hold of every package `parse` accepts, whatever the input.
fn check_accepted(bytes: &[u8], package: &Package<'_>) {
    let total = package.total_size();
    assert!(total <= bytes.len());
    assert_eq!(package.as_bytes(), &bytes[..total]);
    let table_end = HEADER_SIZE + ENTRY_SIZE * package.entries().count();
    let mut ranges = Vec::new();
    for entry in package.entries() {
        // The digest round-trips: the payload hashes to what the entry says.
        assert_eq!(sha256(entry.payload), entry.digest);
        let end = entry.offset + entry.payload.len();
        assert!(entry.offset >= table_end && end <= total);
        assert_eq!(&bytes[entry.offset..end], entry.payload);
        entry.load.check(entry.payload.len() as u64).unwrap();
        assert_eq!(package.entry(entry.kind), Some(entry));
        ranges.push((entry.offset, end));
    }
    // No two payloads share a byte.
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            assert!(a.1 <= b.0 || b.1 <= a.0 || a.0 == a.1 || b.0 == b.1);
        }
    }
    // The parse is a function of the package's own bytes.
    let again = Package::parse(&bytes[..total]).expect("the accepted bytes parse again");
    assert_eq!(again.entries().collect::<Vec<_>>(), package.entries().collect::<Vec<_>>());
    // Re-encoding the entries gives a package that parses to the same ones.
    let entries: Vec<_> = package.entries().map(|e| (e.kind, e.payload.to_vec(), e.load)).collect();
    let rebuilt = build(&entries);
    let reparsed = Package::parse(&rebuilt).expect("a re-encoded package parses");
    let key = |p: &Package<'_>| p.entries().map(|e| (e.kind, e.payload.to_vec(), e.load, e.digest)).collect::<Vec<_>>();
    assert_eq!(key(&reparsed), key(package));
}

proptest! {
    #![proptest_config(config())]

    /// `encode` output parses to exactly the entries given, with or without
    /// bytes after it.
    #[test]
    fn built_packages_parse_to_their_entries(
        entries in descs_strategy(),
        trailing in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = build(&entries);
        let total = bytes.len();
        bytes.extend_from_slice(&trailing);
        let package = Package::parse(&bytes).expect("a built package parses");
        prop_assert_eq!(package.total_size(), total);
        let got: Vec<_> = package.entries().collect();
        prop_assert_eq!(got.len(), entries.len());
        for (entry, (kind, payload, load)) in got.iter().zip(&entries) {
            prop_assert_eq!(entry.kind, *kind);
            prop_assert_eq!(entry.payload, &payload[..]);
            prop_assert_eq!(entry.load, *load);
            prop_assert_eq!(entry.digest, sha256(payload));
        }
        for kind in EntryKind::ALL {
            let present = entries.iter().any(|(k, _, _)| *k == kind);
            match package.require(kind) {
                Ok(e) => prop_assert!(present && e.kind == kind),
                Err(e) => prop_assert!(!present && e == (PackageError::MissingEntry { kind }), "{:?}", e),
            }
        }
        check_accepted(&bytes, &package);
    }

    /// Every byte before `total_size` is covered by a digest or the zero
    /// rule: changing any of them, with any changes past `total_size`,
    /// fails; changing only bytes past it parses the same package.
    #[test]
    fn mutations_inside_the_package_are_caught(
        entries in descs_strategy(),
        trailing in 0usize..64,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let pristine = build(&entries);
        let total = pristine.len();
        let mut bytes = pristine.clone();
        bytes.resize(total + trailing, 0);
        for (at, xor) in &edits {
            let at = at.index(bytes.len());
            bytes[at] ^= xor;
        }
        let changed_inside = bytes[..total] != pristine[..];
        match Package::parse(&bytes) {
            Ok(package) => {
                prop_assert!(!changed_inside, "a package with changed bytes parsed: {package:?}");
                prop_assert_eq!(package.as_bytes(), &pristine[..]);
                check_accepted(&bytes, &package);
            }
            Err(error) => prop_assert!(changed_inside, "an intact package failed: {error}"),
        }
    }

    /// A package cut short anywhere fails as truncated (or, cut inside the
    /// header, however the remaining bytes fail first).
    #[test]
    fn truncated_packages_fail(entries in descs_strategy(), cut in any::<prop::sample::Index>()) {
        let bytes = build(&entries);
        let len = cut.index(bytes.len());
        let error = Package::parse(&bytes[..len]).expect_err("a truncated package parsed");
        prop_assert!(matches!(error, PackageError::Truncated { .. }), "{error:?}");
    }

    /// Arbitrary bytes, with or without a valid-looking header, never panic;
    /// whatever parses satisfies the invariants.
    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in any::<bool>(),
        mut bytes in prop::collection::vec(any::<u8>(), 0..700),
    ) {
        if prefix && bytes.len() >= 24 {
            bytes[..8].copy_from_slice(&MAGIC);
            bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
            bytes[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
            bytes[20..24].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        }
        let result = Package::parse(&bytes);
        if let Ok(package) = result {
            check_accepted(&bytes, &package);
        } else if let Err(error) = result {
            let _ = error.to_string();
        }
    }

    /// Structured packages with random fields, payload placements, digests
    /// and padding, whose header digest is recomputed so that the checks
    /// behind it run: `parse` accepts exactly what the format documentation
    /// accepts (an independent reading of it, `reference_accepts`).
    #[test]
    fn resealed_packages_match_the_documented_format(
        choices in prop::collection::vec(any::<u8>(), 0..160),
    ) {
        let bytes = random_package(&mut Choices::new(&choices));
        let expected = reference_accepts(&bytes);
        match Package::parse(&bytes) {
            Ok(package) => {
                prop_assert!(expected.is_ok(), "parse accepted a package the format rejects: {:?}", expected);
                check_accepted(&bytes, &package);
            }
            Err(error) => {
                let _ = error.to_string();
                prop_assert!(expected.is_err(), "parse rejected a valid package: {error}");
            }
        }
    }
}

/// A finding of this suite: a zero-size payload whose offset lies strictly
/// inside another payload shares no byte with it, and the documentation
/// used to say only that payloads may not share bytes. The parser rejects
/// it (payloads are disjoint, ordered ranges; the writer never places one
/// that way), and the documentation of `OverlappingPayloads` now says so.
#[test]
fn zero_size_payload_inside_another_is_rejected() {
    let hv = [0x11u8; 64];
    let hints = LoadHints { align: MIN_LOAD_ALIGN, mem_size: 0x1000, entry_offset: 0 };
    let mut bytes = build(&[(EntryKind::Hypervisor, hv.to_vec(), hints), (EntryKind::GuestStub, Vec::new(), hints)]);
    // Move the empty guest-stub payload into the middle of the hypervisor's.
    let table_end = HEADER_SIZE + 2 * ENTRY_SIZE;
    let hv_offset = u64::from_le_bytes(bytes[HEADER_SIZE + 8..HEADER_SIZE + 16].try_into().unwrap());
    let stub_offset_at = HEADER_SIZE + ENTRY_SIZE + 8;
    bytes[stub_offset_at..stub_offset_at + 8].copy_from_slice(&(hv_offset + 32).to_le_bytes());
    assert!(hv_offset as usize >= table_end);
    reseal(&mut bytes);
    assert!(matches!(Package::parse(&bytes), Err(PackageError::OverlappingPayloads { .. })));
}

// ---------------------------------------------------------------------------
// A reference reading of the format, from the module documentation only.

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The header digest the documentation describes: SHA-256 of the header
/// with its digest field zeroed, followed by the entry table.
fn header_digest(bytes: &[u8], table_end: usize) -> [u8; 32] {
    let mut covered = bytes[..table_end].to_vec();
    covered[32..64].fill(0);
    sha256(&covered)
}

/// Rewrites the header digest of `bytes` (if header and table are there).
fn reseal(bytes: &mut [u8]) {
    if bytes.len() < HEADER_SIZE {
        return;
    }
    let count = le32(bytes, 16) as usize;
    let table_end = HEADER_SIZE + count.min(MAX_ENTRIES + 1) * ENTRY_SIZE;
    if table_end <= bytes.len() {
        let digest = header_digest(bytes, table_end);
        bytes[32..64].copy_from_slice(&digest);
    }
}

/// Whether the documented format accepts the package at the start of
/// `bytes`; `Err` says which rule it breaks.
fn reference_accepts(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.len() < HEADER_SIZE {
        return Err("no header");
    }
    if bytes[..8] != MAGIC {
        return Err("magic");
    }
    if le32(bytes, 8) != FORMAT_VERSION || le32(bytes, 12) != 64 || le32(bytes, 20) != 80 {
        return Err("header fields");
    }
    let count = le32(bytes, 16) as usize;
    if count > MAX_ENTRIES {
        return Err("entry count");
    }
    let table_end = HEADER_SIZE + count * ENTRY_SIZE;
    if table_end > bytes.len() {
        return Err("table truncated");
    }
    if header_digest(bytes, table_end)[..] != bytes[32..64] {
        return Err("header digest");
    }
    let total = le64(bytes, 24) as u128;
    if total < table_end as u128 || total > bytes.len() as u128 {
        return Err("total size");
    }
    let total = total as usize;
    let mut kinds = Vec::new();
    let mut payloads: Vec<(u128, u128)> = Vec::new();
    let mut data: Vec<(u32, &[u8], LoadHints)> = Vec::new();
    for i in 0..count {
        let at = HEADER_SIZE + i * ENTRY_SIZE;
        let kind = le32(bytes, at);
        if le32(bytes, at + 4) != 0 {
            return Err("reserved flags");
        }
        if !(1..=6).contains(&kind) {
            return Err("kind");
        }
        if kinds.contains(&kind) {
            return Err("duplicate kind");
        }
        kinds.push(kind);
        let offset = u128::from(le64(bytes, at + 8));
        let size = u128::from(le64(bytes, at + 16));
        if offset < table_end as u128 || offset + size > total as u128 {
            return Err("payload outside the payload area");
        }
        let (align, mem_size, entry_offset) = (le64(bytes, at + 24), le64(bytes, at + 32), le64(bytes, at + 40));
        if !align.is_power_of_two()
            || align < MIN_LOAD_ALIGN
            || u128::from(mem_size) < size
            || entry_offset >= mem_size
            || entry_offset % 4 != 0
        {
            return Err("load hints");
        }
        let payload = &bytes[offset as usize..(offset + size) as usize];
        if sha256(payload)[..] != bytes[at + 48..at + 80] {
            return Err("payload digest");
        }
        payloads.push((offset, offset + size));
        data.push((kind, payload, LoadHints { align, mem_size, entry_offset }));
    }
    // The data entries (kinds 3 to 6, "Data entries"): not empty; command
    // lines UTF-8 without control characters and not too long; a kernel an
    // arm64 Image; each with exactly the hints its payload implies; an
    // initrd or a Linux command line only with a kernel.
    for &(kind, payload, hints) in &data {
        if kind < 3 {
            continue;
        }
        if payload.is_empty() {
            return Err("empty data payload");
        }
        let max = match kind {
            5 => Some(LINUX_CMDLINE_MAX),
            6 => Some(HV_CMDLINE_MAX),
            _ => None,
        };
        if let Some(max) = max {
            let text = std::str::from_utf8(payload).map_err(|_| "command line not UTF-8")?;
            if payload.len() > max || text.chars().any(char::is_control) {
                return Err("command line");
            }
        }
        let expected = if kind == 3 {
            let header = ImageHeader::parse(payload, payload.len() as u64).map_err(|_| "not an arm64 Image")?;
            LoadHints { align: 2 << 20, mem_size: header.image_size, entry_offset: 0 }
        } else {
            LoadHints { align: MIN_LOAD_ALIGN, mem_size: payload.len() as u64, entry_offset: 0 }
        };
        if hints != expected {
            return Err("data entry hints");
        }
        if (kind == 4 || kind == 5) && !kinds.contains(&3) {
            return Err("initrd or Linux command line without a kernel");
        }
    }
    for (i, a) in payloads.iter().enumerate() {
        for (j, b) in payloads.iter().enumerate() {
            if i == j {
                continue;
            }
            let share_bytes = a.0 < a.1 && b.0 < b.1 && a.0 < b.1 && b.0 < a.1;
            // The parser also refuses an empty payload strictly inside
            // another one (see `zero_size_payload_inside_another_is_accepted`).
            let empty_inside = b.0 == b.1 && a.0 < b.0 && b.0 < a.1;
            if share_bytes || empty_inside {
                return Err("payloads overlap");
            }
        }
    }
    for (at, &byte) in bytes.iter().enumerate().take(total).skip(table_end) {
        let in_payload = payloads.iter().any(|&(start, end)| start <= at as u128 && (at as u128) < end);
        if !in_payload && byte != 0 {
            return Err("non-zero padding");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Random structured packages.

/// A package whose fields are mostly valid, each sometimes broken, with the
/// header digest recomputed (mostly) so that later checks are reached.
fn random_package(c: &mut Choices<'_>) -> Vec<u8> {
    // Branch 0 of every choice is the ordinary case, so that running out of
    // choices (and shrinking) leads towards a valid package.
    let count: usize = match c.below(16) {
        0..=7 => 2,
        8..=11 => 1,
        12 => 0,
        13 => 3,
        _ => [MAX_ENTRIES, MAX_ENTRIES + 1, 4][c.below(3) as usize],
    };
    let table_end = HEADER_SIZE + count * ENTRY_SIZE;
    // Payload placement: sequential with optional gaps, or anywhere.
    struct Plan {
        kind: u32,
        flags: u32,
        offset: u64,
        size: u64,
        align: u64,
        mem_size: u64,
        entry_offset: u64,
        good_digest: bool,
    }
    let mut plans = Vec::new();
    let mut cursor = table_end as u64;
    let swap = c.chance(128);
    for i in 0..count {
        let kind = match c.below(44) {
            36 => 0,
            37 => 7,
            38 => c.u64() as u32,
            39 => [1, 2][usize::from(c.chance(128))],
            // A data kind, whose payload and hints have rules of their own.
            40..=43 => 3 + c.below(4) as u32,
            _ => [1, 2][(i + usize::from(swap)) % 2],
        };
        let flags = if c.chance(8) { 1 << c.below(32) } else { 0 };
        let size = match c.below(8) {
            6 => 0,
            7 => c.below(600),
            _ => c.below(80),
        };
        let offset = match c.below(10) {
            7 => c.u64(),
            8 => table_end as u64 + c.below(200),
            9 => cursor.saturating_sub(c.below(40)),
            _ => cursor + c.below(3) * c.below(70),
        };
        cursor = offset.saturating_add(size);
        let mut align = MIN_LOAD_ALIGN << c.below(12);
        let mut mem_size = size + 4 + c.below(0x3000);
        let mut entry_offset = if mem_size == 0 { 0 } else { c.below(mem_size) & !3 };
        match c.below(48) {
            19 => align = c.u64(),
            20 => align >>= 1 + c.below(12),
            21 => mem_size = size.saturating_sub(1 + c.below(4)),
            22 => entry_offset = mem_size + c.below(8),
            23 => entry_offset |= 1 + c.below(3),
            _ => {}
        }
        if (4..=6).contains(&kind) && !c.chance(8) {
            // The hints a data entry must have, mostly.
            (align, mem_size, entry_offset) = (MIN_LOAD_ALIGN, size, 0);
        }
        plans.push(Plan { kind, flags, offset, size, align, mem_size, entry_offset, good_digest: !c.chance(10) });
    }
    let payload_end = plans
        .iter()
        .map(|p| p.offset.saturating_add(p.size))
        .filter(|&end| end < 0x10_0000)
        .max()
        .unwrap_or(0)
        .max(table_end as u64);
    let total = match c.below(16) {
        13 => c.u64(),
        14 => payload_end.saturating_sub(1 + c.below(16)),
        15 => table_end as u64 - c.below(table_end as u64 + 1).min(table_end as u64),
        _ => payload_end + c.below(4) * c.below(64),
    };
    let len = match c.below(16) {
        15 => (total as usize).min(0x10_0000).saturating_sub(1 + c.below(8) as usize),
        _ => (total as usize).min(0x10_0000) + c.below(32) as usize,
    }
    .max(HEADER_SIZE);
    let mut bytes = vec![0u8; len];
    // Payload bytes (random, or zero), then padding mistakes.
    for p in &plans {
        if p.offset < len as u64 {
            let end = (p.offset.saturating_add(p.size)).min(len as u64);
            // Command lines are mostly printable ASCII.
            let text = (p.kind == 5 || p.kind == 6) && !c.chance(8);
            for b in &mut bytes[p.offset as usize..end as usize] {
                *b = if text { b' ' + c.byte() % 95 } else { c.byte() | 1 };
            }
        }
    }
    if c.chance(24) {
        let at = table_end + c.below((len - table_end.min(len)) as u64 + 1) as usize;
        if at < len {
            bytes[at] ^= 1 + c.byte() % 255;
        }
    }
    // Header.
    bytes[..8].copy_from_slice(&MAGIC);
    let mut version = FORMAT_VERSION;
    let mut header_size = HEADER_SIZE as u32;
    let mut entry_size = ENTRY_SIZE as u32;
    match c.below(40) {
        36 => version = c.u64() as u32,
        37 => header_size = c.u64() as u32,
        38 => entry_size = c.u64() as u32,
        39 => bytes[c.below(8) as usize] ^= 1 + c.byte() % 255,
        _ => {}
    }
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    bytes[12..16].copy_from_slice(&header_size.to_le_bytes());
    bytes[16..20].copy_from_slice(&(count as u32).to_le_bytes());
    bytes[20..24].copy_from_slice(&entry_size.to_le_bytes());
    bytes[24..32].copy_from_slice(&total.to_le_bytes());
    // Table (as much of it as fits).
    for (i, p) in plans.iter().enumerate() {
        let at = HEADER_SIZE + i * ENTRY_SIZE;
        if at + ENTRY_SIZE > len {
            break;
        }
        let mut record = [0u8; ENTRY_SIZE];
        record[0..4].copy_from_slice(&p.kind.to_le_bytes());
        record[4..8].copy_from_slice(&p.flags.to_le_bytes());
        record[8..16].copy_from_slice(&p.offset.to_le_bytes());
        record[16..24].copy_from_slice(&p.size.to_le_bytes());
        record[24..32].copy_from_slice(&p.align.to_le_bytes());
        record[32..40].copy_from_slice(&p.mem_size.to_le_bytes());
        record[40..48].copy_from_slice(&p.entry_offset.to_le_bytes());
        let in_range = p.offset.checked_add(p.size).is_some_and(|end| end <= len as u64);
        let digest = if p.good_digest && in_range {
            sha256(&bytes[p.offset as usize..(p.offset + p.size) as usize])
        } else {
            core::array::from_fn(|_| c.byte())
        };
        record[48..80].copy_from_slice(&digest);
        bytes[at..at + ENTRY_SIZE].copy_from_slice(&record);
    }
    if !c.chance(8) {
        reseal(&mut bytes);
    }
    bytes
}
