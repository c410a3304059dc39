//! Scanning a guest's virtual address space: the algorithm, pure
//! and host-tested.
//!
//! This module owns everything about a guest VA scan that does not touch
//! hardware: the walk itself ([`scan`]), what one probe of an address can
//! report ([`Probe`], [`ProbeResult`], [`Attrs`], and [`Par`], the decoding
//! of `PAR_EL1` after an `AT`), the VA ranges a guest's `TCR_EL1` gives its
//! two translation tables ([`ttbr_ranges`]), and the 32-byte entry the SCAN
//! hypercall writes into the guest's buffer ([`encode`], [`decode`]). The
//! hypervisor supplies the [`Probe`]: `AT S1E1R` (or `AT S1E0R` for an EL0
//! caller) in the guest's EL1&0 regime, then `PAR_EL1`. Keeping the
//! algorithm here lets the host tests run it against simulated tables built
//! with [`crate::paging`].
//!
//! # The walk
//!
//! The scan starts at the first page of the range and probes one address at
//! a time. On a fault whose faulting table is at level *L*, nothing in the
//! level-*L* entry covering the address is mapped, so the scan jumps to the
//! next boundary of a level-*L* entry (512 GiB, 1 GiB, 2 MiB or 4 KiB for
//! levels 0 to 3 of the 4 KiB granule) instead of probing page by page. On
//! success it records the page and steps to the next one (or past the
//! whole leaf, when the probe can say how large the leaf is: see
//! [`ProbeResult::Mapped`]). Pages that are VA-contiguous, IPA-contiguous
//! and have equal [`Attrs`] merge into one [`Region`]; regions go to the
//! caller in increasing VA order as soon as they are complete.
//!
//! The cost is exactly one probe per translation-table entry met: per
//! invalid entry at any level, and per leaf (per 4 KiB page of a leaf whose
//! size the probe cannot tell). An invalid entry says nothing about its
//! neighbours, so a mostly empty table costs up to 512 probes: the cost is
//! one probe per table entry met (each unmapped entry, each leaf), never
//! one per page of a mapping whose size the probe reports.
//!
//! Nothing here panics or wraps: the range's end may be `u64::MAX` (the last
//! page of the `TTBR1` range), regions carry their *last* byte, not their
//! end, for that reason, and a probe reporting something impossible (a
//! level the granule lacks, an unaligned IPA) is a [`ScanError`].
//! [`scan_bounded`] limits the probes one call may make, so that a guest
//! cannot keep the hypervisor in a single hypercall for long; both limits
//! (probes and buffer space) end the call with the VA to resume from.
//! [`scan_chunk`] is one piece of a resumable scan as the `SCAN` hypercall
//! makes it: a cursor in, a cursor out, and regions a caller appends with
//! [`Region::join`] to get what one unbounded scan reports.
//!
//! # What one probe can tell
//!
//! A successful `AT S1E1R` says that EL1 may read the page and gives its IPA
//! (and memory attributes); a failed one gives the fault and the level of
//! the table that faulted. Every other permission needs another probe, or
//! cannot be had from `AT` at all:
//!
//! | [`Attrs`] field | how to learn it |
//! |-----------------|-----------------|
//! | `readable` | the scan's own read probe succeeded (always `true` in a mapped result) |
//! | `writable_el1` | `AT S1E1W`: success, or a stage-1 permission fault ([`Par::permission`]) |
//! | `user_readable` | `AT S1E0R` |
//! | `writable_el0` | `AT S1E0W` |
//! | `executable_el1`, `executable_el0` | **no `AT` reports execute permission**: only reading the leaf descriptor (PXN, UXN, the tables' PXNTable/UXNTable, `SCTLR_EL1.WXN`, and "EL0-writable implies PXN") tells |
//!
//! so each of them is an `Option<bool>`, `None` meaning "not probed", and
//! the guest buffer entry has an "unknown" bit for each. Neither does an
//! `AT` report the level of the leaf that mapped the address; a probe that
//! cannot tell leaves `leaf_level` `None` and the scan steps 4 KiB at a time
//! through that mapping.
//!
//! # Out of scope
//!
//! Only the 4 KiB granule ([`Granule4K`]) and VA spaces of 25 to 48 bits
//! (`TxSZ` 16 to 39): no FEAT_LPA2 (52-bit VAs, level -1), no FEAT_TTST
//! (smaller spaces). Top-byte-ignore (`TCR_EL1.TBIn`) is not modelled: the
//! ranges of [`ttbr_ranges`] are the canonical addresses (bits
//! \[63:64-TxSZ\] all zero or all one), and a tagged alias of a scanned
//! page is the same page. `TCR_EL1.EPDn` (walks disabled) needs nothing
//! special: every probe then faults at level 0.
// Beyond the crate-wide no-panic lints (lib.rs):
#![deny(clippy::as_conversions)]

use core::fmt;
use core::ops::{Bound, RangeBounds, RangeInclusive};

use crate::abi::par;
use crate::esr::FaultStatus;
use crate::paging::{bits, level_size};

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]
mod tests;

// ---------------------------------------------------------------------------
// Granule

/// The 4 KiB translation granule, the only one the scanner handles: a
/// 512-entry table at each of levels 0 to 3, blocks at levels 1 and 2,
/// pages at level 3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Granule4K;

impl Granule4K {
    /// Bytes in a page.
    pub const PAGE_SIZE: u64 = 4096;
    /// The deepest level (pages).
    pub const LAST_LEVEL: u8 = 3;

    /// Bytes in a page.
    pub const fn page_size(self) -> u64 {
        Self::PAGE_SIZE
    }

    /// Bytes one entry of a level-`level` table covers (512 GiB, 1 GiB,
    /// 2 MiB, 4 KiB for levels 0 to 3), or `None` for a level the granule
    /// lacks.
    pub const fn entry_size(self, level: u8) -> Option<u64> {
        level_size(level)
    }

    /// Bytes a leaf at `level` maps: a 1 GiB or 2 MiB block (levels 1, 2)
    /// or a page (level 3); `None` for any other level (level 0 holds no
    /// blocks without FEAT_LPA2).
    pub const fn leaf_size(self, level: u8) -> Option<u64> {
        match level {
            1..=3 => level_size(level),
            _ => None,
        }
    }
}

/// The offset bits of a page.
const PAGE_MASK: u64 = Granule4K::PAGE_SIZE - 1;

// ---------------------------------------------------------------------------
// What a probe reports

/// What a mapping allows, as far as the probes found out (see the module
/// documentation for which instruction tells what). `None` is "not known",
/// never "no".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// The scan's own probe, a read at the EL the scan is for (`AT S1E1R`
    /// for EL1, `AT S1E0R` for EL0), succeeded. Always `true` in a
    /// [`ProbeResult::Mapped`] from such a probe; kept so that an encoded
    /// entry states what was tested.
    pub readable: bool,
    /// EL1 may write (`AT S1E1W`).
    pub writable_el1: Option<bool>,
    /// EL0 may read (`AT S1E0R`).
    pub user_readable: Option<bool>,
    /// EL0 may write (`AT S1E0W`).
    pub writable_el0: Option<bool>,
    /// EL1 may execute (only from the descriptors; no `AT` tells).
    pub executable_el1: Option<bool>,
    /// EL0 may execute (only from the descriptors; no `AT` tells).
    pub executable_el0: Option<bool>,
}

impl Attrs {
    /// What one successful read probe (`AT S1E1R` or `AT S1E0R`) says on
    /// its own: readable, nothing else known.
    pub const READ_ONLY_KNOWN: Self = Self {
        readable: true,
        writable_el1: None,
        user_readable: None,
        writable_el0: None,
        executable_el1: None,
        executable_el0: None,
    };

    /// What an EL1&0 stage-1 leaf descriptor grants, on top of a successful
    /// read probe (direct permissions). AP\[2\] makes the page read-only
    /// at both ELs, AP\[1\] opens data access to EL0. Execution is UXN and
    /// PXN alone, with one architectural rule: memory EL0 may write is never
    /// executable at EL1. EL0 execution does not need AP\[1\] (that is
    /// execute-only memory).
    pub const fn from_stage1_leaf(descriptor: u64) -> Self {
        let read_only = descriptor & bits::AP_2 != 0;
        let el0_access = descriptor & bits::AP_1 != 0;
        let el0_writable = el0_access && !read_only;
        Self {
            readable: true,
            writable_el1: Some(!read_only),
            user_readable: Some(el0_access),
            writable_el0: Some(el0_writable),
            executable_el1: Some(descriptor & bits::PXN == 0 && !el0_writable),
            executable_el0: Some(descriptor & bits::UXN == 0),
        }
    }

    /// The `flags` word of an encoded entry (see [`flags`]).
    pub const fn flags(self) -> u64 {
        let mut word = if self.readable { flags::READABLE } else { 0 };
        word |= tri(self.writable_el1, flags::WRITABLE_EL1);
        word |= tri(self.user_readable, flags::USER_READABLE);
        word |= tri(self.writable_el0, flags::WRITABLE_EL0);
        word |= tri(self.executable_el1, flags::EXECUTABLE_EL1);
        word |= tri(self.executable_el0, flags::EXECUTABLE_EL0);
        word
    }

    /// The attributes a `flags` word encodes, or `None` if it sets a
    /// reserved bit or both a value bit and its "unknown" bit.
    pub const fn from_flags(word: u64) -> Option<Self> {
        if word & !flags::DEFINED != 0 {
            return None;
        }
        let (Some(writable_el1), Some(user_readable), Some(writable_el0)) =
            (untri(word, flags::WRITABLE_EL1), untri(word, flags::USER_READABLE), untri(word, flags::WRITABLE_EL0))
        else {
            return None;
        };
        let (Some(executable_el1), Some(executable_el0)) =
            (untri(word, flags::EXECUTABLE_EL1), untri(word, flags::EXECUTABLE_EL0))
        else {
            return None;
        };
        Some(Self {
            readable: word & flags::READABLE != 0,
            writable_el1,
            user_readable,
            writable_el0,
            executable_el1,
            executable_el0,
        })
    }
}

/// The value bit `bit`, or its "unknown" bit, for a tri-state attribute.
const fn tri(value: Option<bool>, bit: u64) -> u64 {
    match value {
        Some(true) => bit,
        Some(false) => 0,
        None => bit << flags::UNKNOWN_SHIFT,
    }
}

/// The tri-state attribute of value bit `bit` in `word`: `None` (outer)
/// if both the value and the "unknown" bit are set.
const fn untri(word: u64, bit: u64) -> Option<Option<bool>> {
    match (word & bit != 0, word & (bit << flags::UNKNOWN_SHIFT) != 0) {
        (false, false) => Some(Some(false)),
        (true, false) => Some(Some(true)),
        (false, true) => Some(None),
        (true, true) => None,
    }
}

/// What probing one address found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// The probe's read succeeded.
    Mapped {
        /// The IPA of the 4 KiB page containing the address (what
        /// `PAR_EL1.PA` holds); must be page-aligned.
        ipa: u64,
        /// What the mapping allows.
        attrs: Attrs,
        /// The level of the leaf that maps the address (1 or 2 for a
        /// block, 3 for a page), if the probe knows it. An `AT` does not
        /// report it; a probe that reads the descriptor does. When given,
        /// the probe vouches that the whole aligned leaf maps contiguously,
        /// with these attributes, and the scan steps past it at once;
        /// `None` makes it step 4 KiB.
        leaf_level: Option<u8>,
    },
    /// The probe faulted.
    Fault {
        /// The level (0 to 3) of the translation table whose entry for the
        /// address gave no usable translation: nothing in that entry's
        /// span is reachable for this probe, and the scan skips to the
        /// span's end. See [`Par::skip_level`] for faults that are not
        /// plain translation faults.
        level: u8,
    },
}

/// Probes one guest virtual address: the hypervisor implements it with an
/// address-translation instruction in the guest's regime, the tests with a
/// software walk.
pub trait Probe {
    /// What a read of the page-aligned guest VA `va` at the scanned EL
    /// finds.
    fn probe(&mut self, va: u64) -> ProbeResult;
}

impl<P: Probe + ?Sized> Probe for &mut P {
    fn probe(&mut self, va: u64) -> ProbeResult {
        (**self).probe(va)
    }
}

// ---------------------------------------------------------------------------
// PAR_EL1

/// `PAR_EL1` after an `AT` instruction (the 64-bit format; FEAT_D128's
/// 128-bit one is not used), decoded. Layout (Arm ARM, "PAR_EL1"; Linux
/// `arch/arm64/include/asm/sysreg.h`):
///
/// ```text
///  F = 0 (success):  ATTR[63:56]  PA[51:12]  NS[9]  SH[8:7]  F[0]
///  F = 1 (fault):    S[9] (stage 2)  PTW[8]  FST[6:1] (as a DFSC)  F[0]
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// The translation succeeded.
    Translated {
        /// The output address of the page (IPA for a stage-1 `AT`),
        /// bits \[51:12\].
        pa: u64,
        /// The memory attributes, in `MAIR_ELx` encoding.
        mem_attr: u8,
    },
    /// The translation faulted.
    Fault {
        /// `FST`, the fault status.
        status: FaultStatus,
        /// `S`: the fault happened at stage 2 (translating the address of
        /// a stage-1 table), so its level is a stage-2 level.
        stage2: bool,
    },
}

impl Par {
    /// `S` (when `F`, [`crate::abi::par::F`], is set): stage-2 fault.
    pub const S: u64 = 1 << 9;
    /// The `PA` field (when `F` is clear).
    pub const PA_MASK: u64 = 0x000f_ffff_ffff_f000;

    /// Decodes a `PAR_EL1` value.
    pub const fn decode(par: u64) -> Self {
        if par & par::F == 0 {
            let [mem_attr, ..] = par.to_be_bytes();
            return Self::Translated { pa: par & Self::PA_MASK, mem_attr };
        }
        Self::Fault { status: FaultStatus::from_code(par::fault_status(par)), stage2: par & Self::S != 0 }
    }

    /// For a fault, the level a scan may skip by: the level of a stage-1
    /// fault that names one (translation, address size, access flag,
    /// permission, external abort or parity error on the walk: in each,
    /// nothing in that level's entry is reachable for this probe), and 3,
    /// the safe choice of one page, for a stage-2 fault (its level is not
    /// a stage-1 level) or a fault without a level. `None` for a success.
    pub const fn skip_level(self) -> Option<u8> {
        match self {
            Self::Translated { .. } => None,
            Self::Fault { stage2: true, .. } => Some(3),
            Self::Fault { status, .. } => match status.level() {
                Some(level) => Some(level),
                None => Some(3),
            },
        }
    }

    /// For an `AT` used as a permission test (`AT S1E1W`, `AT S1E0R`,
    /// `AT S1E0W`): `Some(true)` if it succeeded, `Some(false)` on a
    /// stage-1 permission fault, and `None` for any other fault, which
    /// says nothing about the permission.
    pub const fn permission(self) -> Option<bool> {
        match self {
            Self::Translated { .. } => Some(true),
            Self::Fault { status: FaultStatus::Permission { .. }, stage2: false } => Some(false),
            Self::Fault { .. } => None,
        }
    }

    /// The probe result of the scan's read probe that left this `PAR`:
    /// [`ProbeResult::Mapped`] with `attrs` and no leaf level (an `AT`
    /// cannot tell it), or [`ProbeResult::Fault`] at
    /// [`skip_level`](Self::skip_level).
    pub const fn probe_result(self, attrs: Attrs) -> ProbeResult {
        match self {
            Self::Translated { pa, .. } => ProbeResult::Mapped { ipa: pa, attrs, leaf_level: None },
            Self::Fault { .. } => ProbeResult::Fault {
                level: match self.skip_level() {
                    Some(level) => level,
                    None => Granule4K::LAST_LEVEL,
                },
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Regions and their encoding

/// A run of pages that are VA-contiguous, IPA-contiguous and alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    /// The first byte (page-aligned).
    pub va_start: u64,
    /// The last byte (inclusive, so that a region ending at the top of the
    /// address space, `u64::MAX`, is expressible).
    pub va_last: u64,
    /// The IPA of `va_start`.
    pub ipa: u64,
    /// What the pages allow.
    pub attrs: Attrs,
}

impl Region {
    /// Bytes in the region; `None` if it is the whole 64-bit space (or
    /// malformed, `va_last < va_start`).
    pub const fn size(&self) -> Option<u64> {
        match self.va_last.checked_sub(self.va_start) {
            Some(span) => span.checked_add(1),
            None => None,
        }
    }

    /// The first byte after the region; `None` if it ends at `u64::MAX`.
    pub const fn va_end(&self) -> Option<u64> {
        self.va_last.checked_add(1)
    }

    /// The VAs of the region.
    pub const fn va_range(&self) -> RangeInclusive<u64> {
        RangeInclusive::new(self.va_start, self.va_last)
    }

    /// The IPA that `va` maps to, if `va` is in the region.
    pub fn ipa_of(&self, va: u64) -> Option<u64> {
        if !self.va_range().contains(&va) {
            return None;
        }
        self.ipa.checked_add(va.wrapping_sub(self.va_start))
    }

    /// Whether `next` continues this region: it starts on the byte after
    /// this one's last, at the IPA that follows, with the same attributes.
    /// The scan merges exactly such neighbours, so two regions one scan
    /// reports never join; two that join were cut apart by a probe budget
    /// (see [`scan_chunk`]).
    pub fn joins(&self, next: &Self) -> bool {
        self.va_last.checked_add(1) == Some(next.va_start)
            && self.ipa.checked_add(next.va_start.wrapping_sub(self.va_start)) == Some(next.ipa)
            && self.attrs == next.attrs
    }

    /// Extends this region by `next` if `next` continues it ([`joins`](Self::joins));
    /// returns whether it did. A caller that resumes a scan appends each
    /// region it gets with this and so sees what one unbounded scan reports.
    pub fn join(&mut self, next: &Self) -> bool {
        if !self.joins(next) {
            return false;
        }
        self.va_last = next.va_last;
        true
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |value: Option<bool>, yes: char| match value {
            Some(true) => yes,
            Some(false) => '-',
            None => '?',
        };
        let a = self.attrs;
        write!(
            f,
            "{:#018x}..={:#018x} -> IPA {:#x} EL1 {}{}{} EL0 {}{}{}",
            self.va_start,
            self.va_last,
            self.ipa,
            if a.readable { 'r' } else { '-' },
            bit(a.writable_el1, 'w'),
            bit(a.executable_el1, 'x'),
            bit(a.user_readable, 'r'),
            bit(a.writable_el0, 'w'),
            bit(a.executable_el0, 'x'),
        )
    }
}

/// Bytes of one encoded [`Region`] in a guest buffer.
///
/// ```text
///  offset  field      (each a little-endian u64)
///   0      va_start   first byte, page-aligned
///   8      va_last    last byte (inclusive), 0xfff in the low 12 bits
///  16      ipa        IPA of va_start, page-aligned
///  24      flags      see `flags`
/// ```
pub const ENTRY_SIZE: usize = 32;

/// Bits of the `flags` word of an encoded [`Region`]. Each tri-state
/// attribute has a value bit (0 to 5) and, 8 bits higher, an "unknown" bit;
/// when the unknown bit is set the value bit is 0. All other bits are 0.
pub mod flags {
    /// The scan's read probe succeeded ([`super::Attrs::readable`]).
    pub const READABLE: u64 = 1 << 0;
    /// EL1 may write.
    pub const WRITABLE_EL1: u64 = 1 << 1;
    /// EL0 may read.
    pub const USER_READABLE: u64 = 1 << 2;
    /// EL0 may write.
    pub const WRITABLE_EL0: u64 = 1 << 3;
    /// EL1 may execute.
    pub const EXECUTABLE_EL1: u64 = 1 << 4;
    /// EL0 may execute.
    pub const EXECUTABLE_EL0: u64 = 1 << 5;
    /// How far above its value bit an attribute's "unknown" bit is.
    pub const UNKNOWN_SHIFT: u32 = 8;
    /// The value bits of the tri-state attributes.
    pub const TRI_STATE: u64 = WRITABLE_EL1 | USER_READABLE | WRITABLE_EL0 | EXECUTABLE_EL1 | EXECUTABLE_EL0;
    /// Every bit with a meaning.
    pub const DEFINED: u64 = READABLE | TRI_STATE | (TRI_STATE << UNKNOWN_SHIFT);
}

/// The guest-buffer encoding of `region` (layout at [`ENTRY_SIZE`]).
pub fn encode(region: &Region) -> [u8; ENTRY_SIZE] {
    let words = [region.va_start, region.va_last, region.ipa, region.attrs.flags()];
    let mut bytes = [0u8; ENTRY_SIZE];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// The region an entry encodes, or `None` if it is not one [`encode`] can
/// produce from a well-formed region: unaligned `va_start` or `ipa`,
/// `va_last` not the last byte of a page, `va_last < va_start`, an IPA
/// range past 2^64, or invalid flags ([`Attrs::from_flags`]).
pub fn decode(bytes: &[u8; ENTRY_SIZE]) -> Option<Region> {
    let mut words = [0u64; 4];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().ok()?);
    }
    let [va_start, va_last, ipa, flag_word] = words;
    if va_start & PAGE_MASK != 0 || va_last & PAGE_MASK != PAGE_MASK || ipa & PAGE_MASK != 0 {
        return None;
    }
    ipa.checked_add(va_last.checked_sub(va_start)?)?;
    Some(Region { va_start, va_last, ipa, attrs: Attrs::from_flags(flag_word)? })
}

// ---------------------------------------------------------------------------
// TTBR ranges

/// One of the two translation tables of the EL1&0 regime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ttbr {
    /// `TTBR0_EL1`: the lower range, from address 0.
    Ttbr0,
    /// `TTBR1_EL1`: the upper range, up to `u64::MAX`.
    Ttbr1,
}

impl fmt::Display for Ttbr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ttbr0 => "TTBR0",
            Self::Ttbr1 => "TTBR1",
        })
    }
}

/// The smallest `TxSZ` handled: a 48-bit space (smaller values need
/// FEAT_LVA or FEAT_LPA2).
pub const MIN_TXSZ: u8 = 16;
/// The largest `TxSZ` handled: a 25-bit space (larger values need
/// FEAT_TTST).
pub const MAX_TXSZ: u8 = 39;

/// A `TCR_EL1.TxSZ` outside [`MIN_TXSZ`]..=[`MAX_TXSZ`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxszError {
    /// The table whose size field it is.
    pub ttbr: Ttbr,
    /// The value.
    pub txsz: u8,
}

impl fmt::Display for TxszError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} size field T{}SZ = {} is outside {MIN_TXSZ}..={MAX_TXSZ} (4 KiB granule, VA spaces of 25 to 48 bits)",
            self.ttbr,
            match self.ttbr {
                Ttbr::Ttbr0 => 0,
                Ttbr::Ttbr1 => 1,
            },
            self.txsz
        )
    }
}

/// `TCR_EL1.T0SZ` (bits \[5:0\]) and `T1SZ` (bits \[21:16\]).
pub const fn tcr_txsz(tcr: u64) -> (u8, u8) {
    let [.., t0sz] = (tcr & 0x3f).to_be_bytes();
    let [.., t1sz] = ((tcr >> 16) & 0x3f).to_be_bytes();
    (t0sz, t1sz)
}

/// The VAs one table translates with a 4 KiB granule and `TxSZ` = `txsz`:
/// `0 ..= 2^(64-txsz) - 1` for `TTBR0`, `2^64 - 2^(64-txsz) ..= u64::MAX`
/// for `TTBR1`. Top-byte-ignore is not modelled (module documentation).
pub fn ttbr_range(ttbr: Ttbr, txsz: u8) -> Result<RangeInclusive<u64>, TxszError> {
    if !(MIN_TXSZ..=MAX_TXSZ).contains(&txsz) {
        return Err(TxszError { ttbr, txsz });
    }
    // 25..=48 bits: the shift is in range.
    let va_bits = 64u32.wrapping_sub(u32::from(txsz));
    let top = 1u64.wrapping_shl(va_bits).wrapping_sub(1);
    Ok(match ttbr {
        Ttbr::Ttbr0 => 0..=top,
        Ttbr::Ttbr1 => !top..=u64::MAX,
    })
}

/// The `TTBR0` and `TTBR1` ranges of [`ttbr_range`] for `TCR_EL1.T0SZ` and
/// `T1SZ` (see [`tcr_txsz`]); the first invalid field is the error.
pub fn ttbr_ranges(tcr_t0sz: u8, tcr_t1sz: u8) -> Result<(RangeInclusive<u64>, RangeInclusive<u64>), TxszError> {
    Ok((ttbr_range(Ttbr::Ttbr0, tcr_t0sz)?, ttbr_range(Ttbr::Ttbr1, tcr_t1sz)?))
}

// ---------------------------------------------------------------------------
// The scan

/// The region sink is full: the caller's buffer has no room for another
/// entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Full;

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("region buffer full")
    }
}

/// What a scan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScanStats {
    /// Calls to [`Probe::probe`] (translations performed, if each probe is
    /// one `AT`).
    pub probes: u64,
    /// Regions written to the sink.
    pub regions: u64,
    /// Holes met: runs of consecutive faulting probes.
    pub holes: u64,
}

/// Where a scan that stopped early got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Partial {
    /// The work done; `stats.regions` regions were written, all of them
    /// below `resume_at`.
    pub stats: ScanStats,
    /// The VA to start the rest of the scan from.
    pub resume_at: u64,
}

impl Partial {
    /// Regions written before the scan stopped.
    pub const fn written(&self) -> u64 {
        self.stats.regions
    }
}

/// Why a scan failed or stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScanError {
    /// The range does not start on a page boundary or does not end on the
    /// last byte of a page.
    Misaligned {
        /// The first byte asked for.
        start: u64,
        /// The last byte asked for.
        last: u64,
    },
    /// The probe reported a fault at a level the granule lacks.
    BadFaultLevel {
        /// The VA probed.
        va: u64,
        /// The level reported.
        level: u8,
    },
    /// The probe reported a leaf at a level that holds no leaves.
    BadLeafLevel {
        /// The VA probed.
        va: u64,
        /// The level reported.
        level: u8,
    },
    /// The probe reported an IPA that is not page-aligned, or whose leaf
    /// would run past 2^64.
    BadIpa {
        /// The VA probed.
        va: u64,
        /// The IPA reported.
        ipa: u64,
    },
    /// A resume cursor ([`scan_chunk`]) that is neither 0 nor a
    /// page-aligned address inside the range.
    BadCursor {
        /// The cursor given.
        cursor: u64,
        /// The first byte of the range.
        start: u64,
        /// The last byte of the range.
        last: u64,
    },
    /// The sink refused a region: the regions below
    /// [`Partial::resume_at`] were written, and the one starting there is
    /// the first that was not.
    BufferFull(Partial),
    /// [`scan_bounded`] used up its probes: every region below
    /// [`Partial::resume_at`] was written (the last one may continue at
    /// `resume_at`; a scan resumed there reports the rest of it as a
    /// region of its own).
    ProbeBudget(Partial),
}

impl ScanError {
    /// Where the scan got to, if it stopped early rather than failed.
    pub const fn partial(&self) -> Option<&Partial> {
        match self {
            Self::BufferFull(partial) | Self::ProbeBudget(partial) => Some(partial),
            _ => None,
        }
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned { start, last } => {
                write!(f, "scan range {start:#x}..={last:#x} does not cover whole 4 KiB pages")
            }
            Self::BadFaultLevel { va, level } => {
                write!(f, "probe of {va:#x} reported a fault at level {level}, which the 4 KiB granule lacks")
            }
            Self::BadLeafLevel { va, level } => {
                write!(f, "probe of {va:#x} reported a leaf at level {level}, which holds no leaves")
            }
            Self::BadIpa { va, ipa } => {
                write!(f, "probe of {va:#x} reported IPA {ipa:#x}, which is unaligned or runs past 2^64")
            }
            Self::BadCursor { cursor, start, last } => {
                write!(f, "resume cursor {cursor:#x} is not 0 or a page of the range {start:#x}..={last:#x}")
            }
            Self::BufferFull(p) => {
                write!(f, "region buffer full after {} regions; resume at {:#x}", p.written(), p.resume_at)
            }
            Self::ProbeBudget(p) => write!(
                f,
                "probe budget used up after {} probes and {} regions; resume at {:#x}",
                p.stats.probes,
                p.written(),
                p.resume_at
            ),
        }
    }
}

/// Scans `range` of the guest VA space through `probe`, writing each
/// region of mapped pages to `out` in increasing VA order, and returns what
/// it did. See the module documentation for the walk and its cost.
///
/// `range` is any range of `u64` (`a..b`, `a..=u64::MAX`, `..`) covering
/// whole pages; an empty one costs no probe. A region is reported once it
/// is complete; when `out` returns [`Full`] the scan stops with
/// [`ScanError::BufferFull`], which says how many regions were written and
/// where to resume.
pub fn scan(
    probe: &mut impl Probe,
    range: impl RangeBounds<u64>,
    granule: Granule4K,
    out: &mut impl FnMut(Region) -> Result<(), Full>,
) -> Result<ScanStats, ScanError> {
    scan_bounded(probe, range, granule, u64::MAX, out)
}

/// [`scan`], making at most `max_probes` probes: when they are used up
/// with part of the range left, the region in progress is written and the
/// scan stops with [`ScanError::ProbeBudget`], saying where to resume.
pub fn scan_bounded(
    probe: &mut impl Probe,
    range: impl RangeBounds<u64>,
    granule: Granule4K,
    max_probes: u64,
    out: &mut impl FnMut(Region) -> Result<(), Full>,
) -> Result<ScanStats, ScanError> {
    let Some((first, last)) = page_bounds(&range)? else {
        return Ok(ScanStats::default());
    };
    let mut state = Scanner { out, stats: ScanStats::default(), open: None, in_hole: false };
    let mut va = first;
    loop {
        if state.stats.probes >= max_probes {
            state.flush()?;
            return Err(ScanError::ProbeBudget(Partial { stats: state.stats, resume_at: va }));
        }
        state.stats.probes = state.stats.probes.saturating_add(1);
        // The last byte this probe's answer covers: the end of the leaf or
        // of the faulting entry (sizes are powers of two from 4 KiB and
        // `va` is page-aligned, so `va | (size - 1)` is the last byte of
        // the aligned span containing `va`), clipped to the range.
        let covered_last = match probe.probe(va) {
            ProbeResult::Mapped { ipa, attrs, leaf_level } => {
                let size = match leaf_level {
                    None => granule.page_size(),
                    Some(level) => granule.leaf_size(level).ok_or(ScanError::BadLeafLevel { va, level })?,
                };
                let chunk_last = (va | size.wrapping_sub(1)).min(last);
                // `chunk_last >= va`: the IPA of its last byte must exist.
                if ipa & PAGE_MASK != 0 || ipa.checked_add(chunk_last.wrapping_sub(va)).is_none() {
                    return Err(ScanError::BadIpa { va, ipa });
                }
                state.mapped(va, chunk_last, ipa, attrs)?;
                chunk_last
            }
            ProbeResult::Fault { level } => {
                let size = granule.entry_size(level).ok_or(ScanError::BadFaultLevel { va, level })?;
                state.fault()?;
                (va | size.wrapping_sub(1)).min(last)
            }
        };
        if covered_last >= last {
            break;
        }
        // `covered_last < last <= u64::MAX`: no wrap.
        va = covered_last.wrapping_add(1);
    }
    state.flush()?;
    Ok(state.stats)
}

/// The resume cursor that asks for the start of the range, and the one that
/// says a range is done (see [`scan_chunk`]).
pub const CURSOR_START: u64 = 0;
/// The cursor [`Chunk::cursor`] returns when nothing of the range is left.
pub const CURSOR_DONE: u64 = 0;

/// What one bounded piece of a scan ([`scan_chunk`]) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    /// The work done in this piece: its probes, the regions it wrote, the
    /// holes it met.
    pub stats: ScanStats,
    /// Where the next piece starts; `None` when the range is done.
    pub next: Option<u64>,
}

impl Chunk {
    /// The cursor for the next piece: the VA to resume from, or
    /// [`CURSOR_DONE`] (0). A resume VA is never 0: a piece makes at least
    /// one probe and so moves past the start of the range, and a piece cut
    /// short by a full buffer wrote a region below its resume VA.
    pub const fn cursor(&self) -> u64 {
        match self.next {
            Some(va) => va,
            None => CURSOR_DONE,
        }
    }
}

/// One piece of a resumable scan of `range`, as the `SCAN` hypercall makes
/// it: starts at `cursor` ([`CURSOR_START`], 0, for the start of the range;
/// otherwise a page-aligned VA inside the range, as a previous piece
/// returned it), makes at most `budget` probes (at least one), writes
/// regions to `out`, and returns where the next piece starts.
///
/// A piece ends at the first of:
///
/// - the end of the range: [`Chunk::next`] is `None`;
/// - `budget` probes made with part of the range left: the region in
///   progress is written as it stands, and the next piece starts at the
///   page after the last one probed. If that page continues the region,
///   the next piece's first region [`joins`](Region::joins) this piece's
///   last one;
/// - `out` refusing a region after at least one was written: the next
///   piece starts at that region's first page and reports it again whole
///   (no two regions then join).
///
/// So appending every piece's regions with [`Region::join`] gives exactly
/// what one unbounded [`scan`] of the range reports, and the pieces' probes
/// add up to the unbounded scan's as long as `out` never refuses. Errors:
/// [`ScanError::BadCursor`] for a cursor outside the range or not
/// page-aligned, [`ScanError::BufferFull`] if `out` refused the first
/// region of the piece (no progress is possible with that sink), and the
/// probe errors of [`scan`].
pub fn scan_chunk(
    probe: &mut impl Probe,
    range: RangeInclusive<u64>,
    cursor: u64,
    budget: u64,
    out: &mut impl FnMut(Region) -> Result<(), Full>,
) -> Result<Chunk, ScanError> {
    let (start, last) = (*range.start(), *range.end());
    let from = match cursor {
        CURSOR_START => start,
        va if va & PAGE_MASK == 0 && range.contains(&va) => va,
        _ => return Err(ScanError::BadCursor { cursor, start, last }),
    };
    match scan_bounded(probe, from..=last, Granule4K, budget.max(1), out) {
        Ok(stats) => Ok(Chunk { stats, next: None }),
        Err(ScanError::ProbeBudget(partial)) => Ok(Chunk { stats: partial.stats, next: Some(partial.resume_at) }),
        Err(ScanError::BufferFull(partial)) if partial.written() > 0 => {
            Ok(Chunk { stats: partial.stats, next: Some(partial.resume_at) })
        }
        Err(e) => Err(e),
    }
}

/// The first and last byte of a range, checked to cover whole pages;
/// `None` if it is empty.
fn page_bounds(range: &impl RangeBounds<u64>) -> Result<Option<(u64, u64)>, ScanError> {
    let first = match range.start_bound() {
        Bound::Included(&start) => Some(start),
        Bound::Excluded(&start) => start.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let last = match range.end_bound() {
        Bound::Included(&end) => Some(end),
        Bound::Excluded(&end) => end.checked_sub(1),
        Bound::Unbounded => Some(u64::MAX),
    };
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(None);
    };
    if first > last {
        return Ok(None);
    }
    if first & PAGE_MASK != 0 || last & PAGE_MASK != PAGE_MASK {
        return Err(ScanError::Misaligned { start: first, last });
    }
    Ok(Some((first, last)))
}

/// The scan's state between probes.
struct Scanner<'o, F> {
    out: &'o mut F,
    stats: ScanStats,
    /// The region being grown, not yet written.
    open: Option<Region>,
    /// The last probe faulted.
    in_hole: bool,
}

impl<F: FnMut(Region) -> Result<(), Full>> Scanner<'_, F> {
    /// Pages `va..=last` map to `ipa..` with `attrs`: grow the open region
    /// or start a new one.
    fn mapped(&mut self, va: u64, last: u64, ipa: u64, attrs: Attrs) -> Result<(), ScanError> {
        self.in_hole = false;
        let chunk = Region { va_start: va, va_last: last, ipa, attrs };
        if self.open.as_mut().is_some_and(|open| open.join(&chunk)) {
            return Ok(());
        }
        self.flush()?;
        self.open = Some(chunk);
        Ok(())
    }

    /// A probe faulted: close the open region, count a new hole.
    fn fault(&mut self) -> Result<(), ScanError> {
        self.flush()?;
        if !self.in_hole {
            self.in_hole = true;
            self.stats.holes = self.stats.holes.saturating_add(1);
        }
        Ok(())
    }

    /// Writes the open region, if any.
    fn flush(&mut self) -> Result<(), ScanError> {
        if let Some(region) = self.open.take() {
            if (self.out)(region).is_err() {
                return Err(ScanError::BufferFull(Partial { stats: self.stats, resume_at: region.va_start }));
            }
            self.stats.regions = self.stats.regions.saturating_add(1);
        }
        Ok(())
    }
}
