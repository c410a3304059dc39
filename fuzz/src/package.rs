//! The firmware package parser (`platform::package`): the monitor parses
//! whatever sits in flash after its own image.
//!
//! Random bytes never get past a SHA-256 digest, so the target also reseals
//! its input (recomputes the digests the layout names) and builds packages
//! from structured input, then edits and reseals them: that is what reaches
//! the layout, bounds, load-hint and data-entry checks behind the digests.

use arbitrary::Unstructured;
use platform::package::{
    build, candidate_offsets, data_hints, sha256, EntryDesc, EntryKind, LoadHints, Package, ENTRY_SIZE, HEADER_SIZE,
    MAX_ENTRIES, MIN_LOAD_ALIGN,
};

use crate::{below, take};

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => parse(rest),
        1 => {
            let mut bytes = rest.to_vec();
            reseal(&mut bytes);
            parse(&bytes);
        }
        _ => built(rest),
    }
}

/// Parses `bytes` (and every candidate in them, as the monitor scans flash)
/// and checks what is accepted.
fn parse(bytes: &[u8]) {
    match Package::parse(bytes) {
        Ok(package) => check_accepted(bytes, &package),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    for offset in candidate_offsets(bytes) {
        assert_eq!(bytes.get(offset..offset + 8), Some(&b"HVFWPKG\0"[..]));
        if let Ok(package) = Package::parse(&bytes[offset..]) {
            check_accepted(&bytes[offset..], &package);
        }
    }
}

/// Entries from the input, encoded; then a few byte edits, resealed.
fn built(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut payloads = Vec::new();
    for _ in 0..below(&mut u, 4) {
        let kind = EntryKind::ALL[below(&mut u, EntryKind::ALL.len())];
        let len = below(&mut u, 300);
        let mut payload = u.bytes(len.min(u.len())).unwrap_or_default().to_vec();
        if kind == EntryKind::LinuxKernel && take(&mut u) {
            // An arm64 Image header (magic, little-endian, image_size), so
            // that kernels get past the header check.
            payload.resize(payload.len().max(64), 0);
            payload[0x38..0x3c].copy_from_slice(b"ARM\x64");
            payload[24..32].fill(0);
            let image_size = payload.len() as u64 + u64::from(take::<u16>(&mut u));
            payload[16..24].copy_from_slice(&image_size.to_le_bytes());
            payload[8..16].fill(0);
        }
        let align = MIN_LOAD_ALIGN << below(&mut u, 4);
        let mem_size = payload.len() as u64 + u64::from(take::<u16>(&mut u));
        // Below mem_size and a multiple of 4, as LoadHints::check wants,
        // so that most built packages get past it.
        let entry_offset = ((u64::from(take::<u16>(&mut u)) * 4) % mem_size.max(1)) & !3;
        let mut load = LoadHints { align, mem_size, entry_offset };
        if take::<u8>(&mut u) > 240 {
            load = LoadHints { align: take(&mut u), mem_size: take(&mut u), entry_offset: take(&mut u) };
        } else if let Ok(Some(hints)) = data_hints(kind, &payload) {
            // What a data entry's hints must be, mostly.
            if take::<u8>(&mut u) > 16 {
                load = hints;
            }
        }
        payloads.push((kind, payload, load));
    }
    let descs: Vec<_> =
        payloads.iter().map(|(kind, payload, load)| EntryDesc { kind: *kind, payload, load: *load }).collect();
    let Ok(mut bytes) = build(&descs) else {
        return;
    };
    {
        let package = Package::parse(&bytes).expect("an encoded package parses");
        let got: Vec<_> = package.entries().map(|e| (e.kind, e.payload.to_vec(), e.load)).collect();
        assert_eq!(got, payloads, "encode/parse round trip");
        check_accepted(&bytes, &package);
    }
    // Edits: XOR a byte, overwrite a 64-bit field, append, or cut.
    for _ in 0..below(&mut u, 4) {
        if bytes.is_empty() {
            break;
        }
        let at = below(&mut u, bytes.len());
        match take::<u8>(&mut u) % 4 {
            0 => bytes[at] ^= take::<u8>(&mut u) | 1,
            1 => {
                let field = at & !7;
                let value: u64 = if take(&mut u) { take::<u16>(&mut u).into() } else { take(&mut u) };
                let end = (field + 8).min(bytes.len());
                bytes[field..end].copy_from_slice(&value.to_le_bytes()[..end - field]);
            }
            2 => {
                let n = below(&mut u, 64).min(u.len());
                bytes.extend_from_slice(u.bytes(n).unwrap_or_default());
            }
            _ => bytes.truncate(at),
        }
    }
    if take(&mut u) {
        reseal(&mut bytes);
    }
    parse(&bytes);
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)).ok()
}

/// Recomputes every digest whose field and data are inside `bytes`: each
/// payload's, then the header's over header and table (`package.rs`'s
/// layout comment is the reference).
fn reseal(bytes: &mut [u8]) {
    let Some(count) = le32(bytes, 16) else {
        return;
    };
    let count = (count as usize).min(MAX_ENTRIES + 1);
    for i in 0..count {
        let entry = HEADER_SIZE + i * ENTRY_SIZE;
        let (Some(offset), Some(size)) = (le64(bytes, entry + 8), le64(bytes, entry + 16)) else {
            break;
        };
        let Some(payload) = offset.checked_add(size).and_then(|end| bytes.get(offset..end)) else {
            continue;
        };
        let digest = sha256(payload);
        if let Some(field) = bytes.get_mut(entry + 48..entry + 80) {
            field.copy_from_slice(&digest);
        }
    }
    let table_end = HEADER_SIZE + count * ENTRY_SIZE;
    if table_end <= bytes.len() {
        let mut covered = bytes[..table_end].to_vec();
        covered[32..64].fill(0);
        bytes[32..64].copy_from_slice(&sha256(&covered));
    }
}

/// What must hold of every package `parse` accepts.
fn check_accepted(bytes: &[u8], package: &Package<'_>) {
    let total = package.total_size();
    assert!(total <= bytes.len());
    assert_eq!(package.as_bytes(), &bytes[..total]);
    let table_end = HEADER_SIZE + ENTRY_SIZE * package.entries().count();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for entry in package.entries() {
        assert_eq!(sha256(entry.payload), entry.digest);
        let end = entry.offset + entry.payload.len();
        assert!(entry.offset >= table_end && end <= total, "{entry:?} outside the payload area");
        assert_eq!(&bytes[entry.offset..end], entry.payload);
        entry.load.check(entry.payload.len() as u64).expect("accepted load hints");
        // A data entry's payload is what its kind says, with exactly the
        // hints it implies.
        match data_hints(entry.kind, entry.payload).expect("an accepted data payload") {
            Some(hints) => assert_eq!(hints, entry.load, "{entry:?}"),
            None => assert!(entry.kind.is_image()),
        }
        if let Some(needs) = entry.kind.needs() {
            assert!(package.entry(needs).is_some(), "{entry:?} without {needs}");
        }
        assert_eq!(package.entry(entry.kind), Some(entry));
        for &(s, e) in &ranges {
            assert!(e <= entry.offset || end <= s || s == e || entry.offset == end, "payloads overlap");
        }
        ranges.push((entry.offset, end));
    }
    // The parse depends on the package's own bytes only.
    let again = Package::parse(&bytes[..total]).expect("the accepted bytes parse again");
    assert!(again.entries().eq(package.entries()));
    // Re-encoding the entries gives a package that parses to the same ones.
    let descs: Vec<_> =
        package.entries().map(|e| EntryDesc { kind: e.kind, payload: e.payload, load: e.load }).collect();
    let rebuilt = build(&descs).expect("accepted entries encode");
    let reparsed = Package::parse(&rebuilt).expect("a re-encoded package parses");
    let key = |p: &Package<'_>| p.entries().map(|e| (e.kind, e.payload.to_vec(), e.load, e.digest)).collect::<Vec<_>>();
    assert_eq!(key(&reparsed), key(package));
}
