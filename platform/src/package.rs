//! The firmware package: how the hypervisor, the guest-stub and optionally
//! a Linux guest and the hypervisor's command line travel in flash.
//!
//! QEMU's `-bios` file (`build/flash.bin`) is the EL3 monitor's flat binary at
//! offset 0 followed, at the next multiple of [`PACKAGE_ALIGN`], by one
//! firmware package (a board without flash has its loader put the package
//! alone in RAM). The monitor executes in place from secure flash, but
//! non-secure EL2 cannot execute from there, so the monitor copies each
//! payload from the package into non-secure RAM using the entry's
//! [`LoadHints`] and enters it, and copies the data entries next to it for
//! the hypervisor.
//!
//! This module owns the package format, once, for both of its users: the host
//! packer (`mkflash` in the `hvtests` crate, through [`encode`] / [`build`])
//! and the monitor's parser (through [`Package::parse`]), which runs at EL3
//! with no heap. Everything here is therefore `no_std`, allocation-free and
//! free of `unsafe`; every field is decoded by hand from little-endian bytes,
//! and parsing never panics on any input: all reads go through bounds-checked
//! cursors and all offset arithmetic is checked.
//!
//! # Layout (all integers little-endian)
//!
//! ```text
//! header (HEADER_SIZE = 64 bytes)
//!    0  magic          [u8; 8]  "HVFWPKG\0"
//!    8  version        u32      FORMAT_VERSION (1)
//!   12  header_size    u32      64
//!   16  entry_count    u32      <= MAX_ENTRIES
//!   20  entry_size     u32      80
//!   24  total_size     u64      header + table + payloads (+ padding)
//!   32  header_digest  [u8; 32] SHA-256 of header and entry table,
//!                               computed with this field zeroed
//! entry table (entry_count * ENTRY_SIZE bytes, right after the header)
//!    0  kind           u32      EntryKind: 1 hypervisor, 2 guest-stub,
//!                               3 linux-kernel, 4 linux-initrd,
//!                               5 linux-cmdline, 6 hv-cmdline
//!    4  flags          u32      reserved, must be zero
//!    8  offset         u64      payload offset from the package start
//!   16  size           u64      payload size in bytes
//!   24  align          u64      LoadHints::align
//!   32  mem_size       u64      LoadHints::mem_size
//!   40  entry_offset   u64      LoadHints::entry_offset
//!   48  digest         [u8; 32] SHA-256 of the payload
//! payloads
//! ```
//!
//! Payloads lie after the entry table and inside `total_size`, do not
//! overlap, and every byte between them (padding) must be zero, so that no
//! byte of a package escapes checking: the header and table are covered by
//! the header digest, payloads by their own digests, padding by the zero rule.
//! The digests detect corruption (a bad flash write, a truncated copy); they
//! are not a signature and do not authenticate the image. Each kind appears
//! at most once; the monitor requires a hypervisor and a guest-stub.
//!
//! # Data entries
//!
//! Kinds 3 to 6 are data the monitor hands to the hypervisor as they are,
//! not images it enters. Each is optional, and its payload and hints are
//! checked after the digests ([`data_hints`]):
//!
//! - the payload is not empty (without the data, the entry is left out);
//! - a command line (`linux-cmdline`, `hv-cmdline`) is UTF-8 without
//!   control characters (no NUL, no newline), at most
//!   [`LINUX_CMDLINE_MAX`] or [`HV_CMDLINE_MAX`] bytes;
//! - a `linux-kernel` is an arm64 `Image` whose header passes
//!   [`crate::linux::ImageHeader::parse`], and its hints are what the boot
//!   protocol says: `align` 2 MiB, `mem_size` the header's `image_size`,
//!   `entry_offset` 0 (the `text_offset` is the loader's business);
//! - every other data entry's hints are `align` [`MIN_LOAD_ALIGN`],
//!   `mem_size` the payload's size, `entry_offset` 0;
//! - a `linux-initrd` or a `linux-cmdline` needs a `linux-kernel` entry.
//!
//! So every data entry has exactly one valid set of hints, and the writer
//! ([`encode`]) enforces the same rules as the parser. The data kinds were
//! added without a new [`FORMAT_VERSION`]: the layout is unchanged, a package
//! without them is read as before, and a parser that predates them refuses
//! them as unknown kinds rather than misreading them.

// Parsing must never panic on any input: let clippy enforce it for the
// non-test code (the tests below opt out).
// Beyond the crate-wide no-panic lints (lib.rs):
#![deny(clippy::as_conversions)]

use core::fmt;

use sha2::{Digest, Sha256};

use crate::linux::{ImageHeader, LinuxError, KERNEL_ALIGN};

/// Magic bytes at the start of every package.
pub const MAGIC: [u8; 8] = *b"HVFWPKG\0";
/// The only format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed package header in bytes.
pub const HEADER_SIZE: usize = 64;
/// Size of one entry-table record in bytes.
pub const ENTRY_SIZE: usize = 80;
/// Most entries a package may declare (a cheap bound checked before hashing).
pub const MAX_ENTRIES: usize = 16;
/// The package starts at a multiple of this offset in flash.
pub const PACKAGE_ALIGN: usize = 4096;
/// The writer places each payload at a multiple of this offset in the
/// package. The parser accepts any offset.
pub const PAYLOAD_ALIGN: usize = 64;
/// Smallest load alignment an entry may ask for (one 4 KiB page).
pub const MIN_LOAD_ALIGN: u64 = 4096;
/// Length of a SHA-256 digest.
pub const DIGEST_SIZE: usize = 32;

/// A SHA-256 digest.
pub type Sha256Digest = [u8; DIGEST_SIZE];

/// End of the entry table for `count` entries (`None` on overflow).
const fn table_end(count: usize) -> Option<usize> {
    match count.checked_mul(ENTRY_SIZE) {
        Some(table) => HEADER_SIZE.checked_add(table),
        None => None,
    }
}

/// Byte offset of the header digest inside the header.
const HEADER_DIGEST_OFFSET: usize = HEADER_SIZE - DIGEST_SIZE;

/// What a package entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum EntryKind {
    /// The EL2 hypervisor, a position-independent image linked at VA 0.
    Hypervisor = 1,
    /// The EL1 self-test guest, a position-independent image linked at VA 0.
    GuestStub = 2,
    /// A Linux kernel: an arm64 `Image` ([`crate::linux`]), for the guest
    /// of a run without VM descriptions.
    LinuxKernel = 3,
    /// The Linux kernel's initrd (any bytes, e.g. a gzipped cpio).
    LinuxInitrd = 4,
    /// The Linux kernel's command line (text: see "Data entries" above).
    LinuxCmdline = 5,
    /// The hypervisor's command line (`crate::cmdline`; text, as above).
    HvCmdline = 6,
}

impl EntryKind {
    /// Every kind, in numeric order.
    pub const ALL: [EntryKind; 6] = [
        EntryKind::Hypervisor,
        EntryKind::GuestStub,
        EntryKind::LinuxKernel,
        EntryKind::LinuxInitrd,
        EntryKind::LinuxCmdline,
        EntryKind::HvCmdline,
    ];

    /// Decodes the on-disk value; `None` for a kind this build does not know.
    pub const fn from_u32(value: u32) -> Option<EntryKind> {
        match value {
            1 => Some(EntryKind::Hypervisor),
            2 => Some(EntryKind::GuestStub),
            3 => Some(EntryKind::LinuxKernel),
            4 => Some(EntryKind::LinuxInitrd),
            5 => Some(EntryKind::LinuxCmdline),
            6 => Some(EntryKind::HvCmdline),
            _ => None,
        }
    }

    /// The on-disk value.
    pub const fn as_u32(self) -> u32 {
        match self {
            EntryKind::Hypervisor => 1,
            EntryKind::GuestStub => 2,
            EntryKind::LinuxKernel => 3,
            EntryKind::LinuxInitrd => 4,
            EntryKind::LinuxCmdline => 5,
            EntryKind::HvCmdline => 6,
        }
    }

    /// A short lower-case name, as used in messages and by `mkflash`.
    pub const fn name(self) -> &'static str {
        match self {
            EntryKind::Hypervisor => "hypervisor",
            EntryKind::GuestStub => "guest-stub",
            EntryKind::LinuxKernel => "linux-kernel",
            EntryKind::LinuxInitrd => "linux-initrd",
            EntryKind::LinuxCmdline => "linux-cmdline",
            EntryKind::HvCmdline => "hv-cmdline",
        }
    }

    /// Whether the payload is an image the monitor loads and enters
    /// (hypervisor, guest-stub), as opposed to data it hands over as it is
    /// (everything else: [`data_hints`] says what its hints must be).
    pub const fn is_image(self) -> bool {
        matches!(self, EntryKind::Hypervisor | EntryKind::GuestStub)
    }

    /// The longest payload of a text kind (`None`: not text). A Linux
    /// command line is at most arm64's `COMMAND_LINE_SIZE` less its NUL;
    /// the hypervisor's, what its command-line buffer holds.
    pub const fn text_max(self) -> Option<usize> {
        match self {
            EntryKind::LinuxCmdline => Some(LINUX_CMDLINE_MAX),
            EntryKind::HvCmdline => Some(HV_CMDLINE_MAX),
            _ => None,
        }
    }

    /// The kind an entry of this kind cannot go without: an initrd and a
    /// command line are for a Linux kernel.
    pub const fn needs(self) -> Option<EntryKind> {
        match self {
            EntryKind::LinuxInitrd | EntryKind::LinuxCmdline => Some(EntryKind::LinuxKernel),
            _ => None,
        }
    }
}

/// The longest Linux command line a package carries, in bytes.
pub const LINUX_CMDLINE_MAX: usize = 2047;
/// The longest hypervisor command line a package carries, in bytes.
pub const HV_CMDLINE_MAX: usize = 1024;

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the monitor should place a payload in RAM.
///
/// The payload is copied to a base address that is a multiple of `align`;
/// the range `base + payload.len() .. base + mem_size` is zeroed (bss); the
/// image is entered at `base + entry_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoadHints {
    /// Required alignment of the load address: a power of two, at least
    /// [`MIN_LOAD_ALIGN`].
    pub align: u64,
    /// Bytes of RAM the image occupies, including bss; at least the payload
    /// size.
    pub mem_size: u64,
    /// Entry point, relative to the load address; below `mem_size` and a
    /// multiple of 4 (an AArch64 instruction).
    pub entry_offset: u64,
}

/// Which rule a set of [`LoadHints`] breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoadHintError {
    /// `align` is not a power of two.
    AlignNotPowerOfTwo {
        /// The offending alignment.
        align: u64,
    },
    /// `align` is below [`MIN_LOAD_ALIGN`].
    AlignTooSmall {
        /// The offending alignment.
        align: u64,
    },
    /// `mem_size` cannot hold the payload.
    MemSizeBelowPayload {
        /// Declared memory size.
        mem_size: u64,
        /// Payload size.
        payload_size: u64,
    },
    /// `entry_offset` is not inside the image.
    EntryOutsideImage {
        /// Declared entry offset.
        entry_offset: u64,
        /// Declared memory size.
        mem_size: u64,
    },
    /// `entry_offset` is not 4-byte aligned.
    EntryMisaligned {
        /// Declared entry offset.
        entry_offset: u64,
    },
}

impl fmt::Display for LoadHintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LoadHintError::AlignNotPowerOfTwo { align } => {
                write!(f, "load alignment {align:#x} is not a power of two")
            }
            LoadHintError::AlignTooSmall { align } => {
                write!(f, "load alignment {align:#x} is below the minimum of {MIN_LOAD_ALIGN:#x} (one page)")
            }
            LoadHintError::MemSizeBelowPayload { mem_size, payload_size } => {
                write!(f, "memory size {mem_size:#x} is smaller than the payload ({payload_size:#x} bytes)")
            }
            LoadHintError::EntryOutsideImage { entry_offset, mem_size } => {
                write!(f, "entry offset {entry_offset:#x} is outside the image (memory size {mem_size:#x})")
            }
            LoadHintError::EntryMisaligned { entry_offset } => write!(
                f,
                "entry offset {entry_offset:#x} is not a multiple of 4 (AArch64 instructions are 4-byte aligned)"
            ),
        }
    }
}

impl LoadHints {
    /// Checks the hints against the rules documented on each field, for a
    /// payload of `payload_size` bytes.
    pub const fn check(&self, payload_size: u64) -> Result<(), LoadHintError> {
        if !self.align.is_power_of_two() {
            return Err(LoadHintError::AlignNotPowerOfTwo { align: self.align });
        }
        if self.align < MIN_LOAD_ALIGN {
            return Err(LoadHintError::AlignTooSmall { align: self.align });
        }
        if self.mem_size < payload_size {
            return Err(LoadHintError::MemSizeBelowPayload { mem_size: self.mem_size, payload_size });
        }
        if self.entry_offset >= self.mem_size {
            return Err(LoadHintError::EntryOutsideImage { entry_offset: self.entry_offset, mem_size: self.mem_size });
        }
        if !self.entry_offset.is_multiple_of(4) {
            return Err(LoadHintError::EntryMisaligned { entry_offset: self.entry_offset });
        }
        Ok(())
    }
}

/// Why a package could not be parsed or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PackageError {
    /// The input ends before the part of the package named by `what`.
    Truncated {
        /// The part that does not fit: "header", "entry table" or "payloads".
        what: &'static str,
        /// Bytes needed from the package start.
        need: u64,
        /// Bytes available.
        have: u64,
    },
    /// The first 8 bytes are not [`MAGIC`].
    BadMagic {
        /// The bytes found instead.
        found: [u8; 8],
    },
    /// The package uses a format version this build does not read.
    UnsupportedVersion {
        /// The version in the header.
        found: u32,
    },
    /// The header declares a header size other than [`HEADER_SIZE`].
    HeaderSizeMismatch {
        /// The declared header size.
        found: u32,
    },
    /// The header declares an entry size other than [`ENTRY_SIZE`].
    EntrySizeMismatch {
        /// The declared entry size.
        found: u32,
    },
    /// More entries than [`MAX_ENTRIES`] (when writing: more than there are
    /// kinds is also caught, as a duplicate).
    TooManyEntries {
        /// The declared or requested count.
        count: u64,
    },
    /// The SHA-256 of header and entry table does not match the header.
    HeaderDigestMismatch,
    /// The declared total size cannot even hold the header and the table.
    BadTotalSize {
        /// The declared total size.
        total: u64,
        /// Size of header plus entry table.
        min: u64,
    },
    /// An entry's reserved `flags` field is not zero.
    NonZeroReserved {
        /// Index of the entry in the table.
        index: usize,
        /// The value found.
        value: u32,
    },
    /// An entry has a kind this build does not know.
    UnknownKind {
        /// Index of the entry in the table.
        index: usize,
        /// The raw kind value.
        kind: u32,
    },
    /// Two entries have the same kind.
    DuplicateKind {
        /// The repeated kind.
        kind: EntryKind,
    },
    /// An entry's payload is not within the payload area
    /// `start..end` (after the table, inside the total size).
    EntryOutOfBounds {
        /// The entry's kind.
        kind: EntryKind,
        /// Declared payload offset.
        offset: u64,
        /// Declared payload size.
        size: u64,
        /// First byte of the payload area.
        start: u64,
        /// End of the payload area (the package's total size).
        end: u64,
    },
    /// Two payloads overlap: they share bytes, or an empty payload's offset
    /// lies inside another payload (payloads are disjoint, ordered ranges).
    OverlappingPayloads {
        /// The payload that starts first.
        first: EntryKind,
        /// The payload that starts inside `first`.
        second: EntryKind,
    },
    /// A byte between payloads (or after the last one) is not zero.
    NonZeroPadding {
        /// Offset of the first non-zero padding byte from the package start.
        offset: u64,
    },
    /// An entry's load hints break a rule.
    BadLoadHints {
        /// The entry's kind.
        kind: EntryKind,
        /// The rule broken.
        error: LoadHintError,
    },
    /// A payload's SHA-256 does not match its entry.
    PayloadDigestMismatch {
        /// The entry's kind.
        kind: EntryKind,
    },
    /// A data entry's payload is not what its kind says, or its load hints
    /// are not the ones its payload implies ([`data_hints`]).
    BadPayload {
        /// The entry's kind.
        kind: EntryKind,
        /// What is wrong.
        error: PayloadError,
    },
    /// An entry whose kind only makes sense with another kind that the
    /// package lacks ([`EntryKind::needs`]): an initrd without a kernel.
    MissingDependency {
        /// The entry's kind.
        kind: EntryKind,
        /// The kind it needs.
        needs: EntryKind,
    },
    /// The package has no entry of a kind the caller requires.
    MissingEntry {
        /// The missing kind.
        kind: EntryKind,
    },
    /// The output buffer given to [`encode`] is too small.
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The payloads add up to more than the address space can describe.
    TooLarge,
}

impl fmt::Display for PackageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PackageError::Truncated { what, need, have } => write!(
                f,
                "firmware package truncated: the {what} needs {need} bytes but only {have} are present \
                 (was flash.bin cut short?)"
            ),
            PackageError::BadMagic { found } => write!(
                f,
                "no firmware package here: expected magic {MAGIC:02x?} (\"HVFWPKG\\0\"), found {found:02x?} \
                 (build flash.bin with mkflash)"
            ),
            PackageError::UnsupportedVersion { found } => write!(
                f,
                "firmware package format version {found} is not supported (this build reads version \
                 {FORMAT_VERSION}); rebuild flash.bin with the matching mkflash"
            ),
            PackageError::HeaderSizeMismatch { found } => {
                write!(f, "firmware package header declares size {found}, expected {HEADER_SIZE}")
            }
            PackageError::EntrySizeMismatch { found } => {
                write!(f, "firmware package declares entry size {found}, expected {ENTRY_SIZE}")
            }
            PackageError::TooManyEntries { count } => {
                write!(f, "firmware package has {count} entries, at most {MAX_ENTRIES} are allowed")
            }
            PackageError::HeaderDigestMismatch => {
                f.write_str("firmware package header or entry table is corrupt (SHA-256 mismatch); rebuild flash.bin")
            }
            PackageError::BadTotalSize { total, min } => write!(
                f,
                "firmware package declares total size {total}, smaller than its header and entry table ({min} bytes)"
            ),
            PackageError::NonZeroReserved { index, value } => {
                write!(f, "firmware package entry {index} has reserved flags {value:#x}, which must be zero")
            }
            PackageError::UnknownKind { index, kind } => {
                write!(f, "firmware package entry {index} has unknown kind {kind} (known:")?;
                for (i, known) in EntryKind::ALL.iter().enumerate() {
                    let separator = if i == 0 { " " } else { ", " };
                    write!(f, "{separator}{} = {known}", known.as_u32())?;
                }
                f.write_str(")")
            }
            PackageError::DuplicateKind { kind } => {
                write!(f, "firmware package has more than one {kind} entry")
            }
            PackageError::EntryOutOfBounds { kind, offset, size, start, end } => write!(
                f,
                "firmware package {kind} payload (offset {offset:#x}, size {size:#x}) lies outside the \
                 payload area {start:#x}..{end:#x}"
            ),
            PackageError::OverlappingPayloads { first, second } => {
                write!(f, "firmware package payloads overlap: {second} starts inside {first}")
            }
            PackageError::NonZeroPadding { offset } => {
                write!(f, "firmware package padding byte at offset {offset:#x} is not zero (corrupt image)")
            }
            PackageError::BadLoadHints { kind, error } => {
                write!(f, "firmware package {kind} entry has bad load hints: {error}")
            }
            PackageError::PayloadDigestMismatch { kind } => {
                write!(f, "firmware package {kind} payload is corrupt (SHA-256 mismatch); rebuild flash.bin")
            }
            PackageError::BadPayload { kind, error } => write!(f, "firmware package {kind} entry: {error}"),
            PackageError::MissingDependency { kind, needs } => {
                write!(f, "firmware package has a {kind} entry but no {needs} entry, which it is for")
            }
            PackageError::MissingEntry { kind } => {
                write!(f, "firmware package has no {kind} entry")
            }
            PackageError::BufferTooSmall { need, have } => {
                write!(f, "output buffer too small for firmware package: need {need} bytes, have {have}")
            }
            PackageError::TooLarge => f.write_str("firmware package payloads are too large to describe"),
        }
    }
}

/// What is wrong with a data entry (see "Data entries" above).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadError {
    /// The payload is empty (a package without the data leaves the entry
    /// out).
    Empty,
    /// A command line longer than its kind allows.
    TextTooLong {
        /// Its length in bytes.
        len: u64,
        /// The most its kind allows ([`EntryKind::text_max`]).
        max: u64,
    },
    /// A command line that is not UTF-8.
    TextNotUtf8 {
        /// Offset of the first byte that is not.
        offset: u64,
    },
    /// A command line with a control character (a NUL, a newline, ...).
    TextControl {
        /// Offset of the character.
        offset: u64,
        /// Its first byte.
        byte: u8,
    },
    /// The Linux kernel is not an arm64 `Image` the boot protocol can
    /// load.
    Kernel(LinuxError),
    /// The load hints are not the ones the payload implies.
    Hints {
        /// The hints in the entry.
        found: LoadHints,
        /// The hints [`data_hints`] gives for the payload.
        expected: LoadHints,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PayloadError::Empty => f.write_str("the payload is empty (a package without it leaves the entry out)"),
            PayloadError::TextTooLong { len, max } => {
                write!(f, "the command line is {len} bytes long, at most {max} are allowed")
            }
            PayloadError::TextNotUtf8 { offset } => write!(f, "the command line is not UTF-8 (from byte {offset})"),
            PayloadError::TextControl { offset, byte } => {
                write!(f, "the command line has a control character ({byte:#04x}) at byte {offset}")
            }
            PayloadError::Kernel(error) => write!(f, "not a Linux kernel that can be booted: {error}"),
            PayloadError::Hints { found, expected } => write!(
                f,
                "load hints (align {:#x}, memory size {:#x}, entry offset {:#x}) are not those of its payload \
                 (align {:#x}, memory size {:#x}, entry offset {:#x})",
                found.align,
                found.mem_size,
                found.entry_offset,
                expected.align,
                expected.mem_size,
                expected.entry_offset
            ),
        }
    }
}

/// Checks that `payload` is what a data entry of `kind` holds and returns
/// the load hints such an entry must have (see "Data entries" above);
/// `Ok(None)` for the image kinds, whose hints come from their ELF files.
pub fn data_hints(kind: EntryKind, payload: &[u8]) -> Result<Option<LoadHints>, PayloadError> {
    if kind.is_image() {
        return Ok(None);
    }
    if payload.is_empty() {
        return Err(PayloadError::Empty);
    }
    let size = to_u64(payload.len());
    if let Some(max) = kind.text_max() {
        if payload.len() > max {
            return Err(PayloadError::TextTooLong { len: size, max: to_u64(max) });
        }
        let text =
            core::str::from_utf8(payload).map_err(|e| PayloadError::TextNotUtf8 { offset: to_u64(e.valid_up_to()) })?;
        if let Some((offset, c)) = text.char_indices().find(|(_, c)| c.is_control()) {
            let byte = c.encode_utf8(&mut [0; 4]).bytes().next().unwrap_or_default();
            return Err(PayloadError::TextControl { offset: to_u64(offset), byte });
        }
    }
    let hints = match kind {
        EntryKind::LinuxKernel => {
            let header = ImageHeader::parse(payload, size).map_err(PayloadError::Kernel)?;
            LoadHints { align: KERNEL_ALIGN, mem_size: header.image_size, entry_offset: 0 }
        }
        _ => LoadHints { align: MIN_LOAD_ALIGN, mem_size: size, entry_offset: 0 },
    };
    Ok(Some(hints))
}

/// The payload and hint rules of a data entry ([`data_hints`]), as a
/// package error.
fn check_data(kind: EntryKind, payload: &[u8], load: LoadHints) -> Result<(), PackageError> {
    match data_hints(kind, payload) {
        Ok(Some(expected)) if expected != load => {
            Err(PackageError::BadPayload { kind, error: PayloadError::Hints { found: load, expected } })
        }
        Ok(_) => Ok(()),
        Err(error) => Err(PackageError::BadPayload { kind, error }),
    }
}

/// Every kind among `kinds` has the kind it needs among them.
fn check_needs(kinds: impl Iterator<Item = EntryKind> + Clone) -> Result<(), PackageError> {
    for kind in kinds.clone() {
        if let Some(needs) = kind.needs() {
            if !kinds.clone().any(|k| k == needs) {
                return Err(PackageError::MissingDependency { kind, needs });
            }
        }
    }
    Ok(())
}

/// One verified entry of a parsed [`Package`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// What the payload is.
    pub kind: EntryKind,
    /// Offset of the payload from the package start.
    pub offset: usize,
    /// The payload bytes (its digest has been checked).
    pub payload: &'a [u8],
    /// How to place the payload in RAM (checked against the rules).
    pub load: LoadHints,
    /// SHA-256 of the payload.
    pub digest: Sha256Digest,
}

/// Shows the payload's length rather than its (large) contents.
impl fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind)
            .field("offset", &self.offset)
            .field("payload_len", &self.payload.len())
            .field("load", &self.load)
            .field("digest", &HexPrefix(&self.digest))
            .finish()
    }
}

/// Formats the first bytes of a digest as hex.
struct HexPrefix<'a>(&'a [u8]);

impl fmt::Debug for HexPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("..")
    }
}

/// A parsed and fully verified firmware package borrowing its bytes.
#[derive(Clone, Copy)]
pub struct Package<'a> {
    bytes: &'a [u8],
    header_digest: Sha256Digest,
    /// Entries in table order; duplicates are rejected, so there are never
    /// more entries than kinds.
    entries: [Option<Entry<'a>>; EntryKind::ALL.len()],
}

/// Shows the size and entries rather than the (large) contents.
impl fmt::Debug for Package<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Package")
            .field("total_size", &self.bytes.len())
            .field("header_digest", &HexPrefix(&self.header_digest))
            .field("entries", &EntryList(&self.entries))
            .finish()
    }
}

/// Debug-formats the present entries.
struct EntryList<'e, 'a>(&'e [Option<Entry<'a>>]);

impl fmt::Debug for EntryList<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().flatten()).finish()
    }
}

/// Reads fixed-size fields off the front of a byte slice.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        Some(*head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }
}

/// Writes fixed-size fields to the front of a mutable byte slice.
struct OutCursor<'a> {
    rest: &'a mut [u8],
}

impl<'a> OutCursor<'a> {
    fn new(bytes: &'a mut [u8]) -> Self {
        Self { rest: bytes }
    }

    fn bytes<const N: usize>(&mut self, value: [u8; N]) -> Option<()> {
        let (head, tail) = core::mem::take(&mut self.rest).split_first_chunk_mut::<N>()?;
        *head = value;
        self.rest = tail;
        Some(())
    }

    fn u32(&mut self, value: u32) -> Option<()> {
        self.bytes(value.to_le_bytes())
    }

    fn u64(&mut self, value: u64) -> Option<()> {
        self.bytes(value.to_le_bytes())
    }
}

/// The header as stored.
struct RawHeader {
    magic: [u8; 8],
    version: u32,
    header_size: u32,
    entry_count: u32,
    entry_size: u32,
    total_size: u64,
    digest: Sha256Digest,
}

impl RawHeader {
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut c = Cursor::new(bytes);
        Some(Self {
            magic: c.bytes()?,
            version: c.u32()?,
            header_size: c.u32()?,
            entry_count: c.u32()?,
            entry_size: c.u32()?,
            total_size: c.u64()?,
            digest: c.bytes()?,
        })
    }

    fn encode(&self, out: &mut [u8]) -> Option<()> {
        let mut c = OutCursor::new(out);
        c.bytes(self.magic)?;
        c.u32(self.version)?;
        c.u32(self.header_size)?;
        c.u32(self.entry_count)?;
        c.u32(self.entry_size)?;
        c.u64(self.total_size)?;
        c.bytes(self.digest)
    }
}

/// One entry-table record as stored.
struct RawEntry {
    kind: u32,
    flags: u32,
    offset: u64,
    size: u64,
    load: LoadHints,
    digest: Sha256Digest,
}

impl RawEntry {
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut c = Cursor::new(bytes);
        Some(Self {
            kind: c.u32()?,
            flags: c.u32()?,
            offset: c.u64()?,
            size: c.u64()?,
            load: LoadHints { align: c.u64()?, mem_size: c.u64()?, entry_offset: c.u64()? },
            digest: c.bytes()?,
        })
    }

    fn encode(&self, out: &mut [u8]) -> Option<()> {
        let mut c = OutCursor::new(out);
        c.u32(self.kind)?;
        c.u32(self.flags)?;
        c.u64(self.offset)?;
        c.u64(self.size)?;
        c.u64(self.load.align)?;
        c.u64(self.load.mem_size)?;
        c.u64(self.load.entry_offset)?;
        c.bytes(self.digest)
    }
}

/// SHA-256 of `bytes`, as used for payload digests.
pub fn sha256(bytes: &[u8]) -> Sha256Digest {
    Sha256::digest(bytes).into()
}

/// SHA-256 of `header` (with its digest field taken as zero) followed by
/// `table`.
fn header_digest(header: &[u8; HEADER_SIZE], table: &[u8]) -> Sha256Digest {
    let (covered, _digest) = header.split_at(HEADER_DIGEST_OFFSET);
    let mut hasher = Sha256::new();
    hasher.update(covered);
    hasher.update([0u8; DIGEST_SIZE]);
    hasher.update(table);
    hasher.finalize().into()
}

fn to_u64(value: usize) -> u64 {
    // usize is at most 64 bits on every target this code supports.
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn truncated(what: &'static str, need: u64, have: usize) -> PackageError {
    PackageError::Truncated { what, need, have: to_u64(have) }
}

/// Offsets in flash (multiples of [`PACKAGE_ALIGN`]) at which [`MAGIC`]
/// appears: candidate package starts, in ascending order. A candidate is not
/// necessarily a package (the monitor's own `.rodata` holds the magic), so
/// try [`Package::parse`] on each.
pub fn candidate_offsets(flash: &[u8]) -> impl Iterator<Item = usize> + '_ {
    flash
        .chunks(PACKAGE_ALIGN)
        .enumerate()
        .filter(|(_, chunk)| chunk.starts_with(&MAGIC))
        .map(|(i, _)| i.saturating_mul(PACKAGE_ALIGN))
}

/// Where the package goes after a monitor image of `monitor_len` bytes: the
/// next multiple of [`PACKAGE_ALIGN`] (`None` on overflow).
pub const fn package_offset(monitor_len: usize) -> Option<usize> {
    monitor_len.checked_next_multiple_of(PACKAGE_ALIGN)
}

impl<'a> Package<'a> {
    /// Parses and verifies the package at the start of `bytes`, which may
    /// extend past the package (the rest of flash).
    ///
    /// Checks, in order: header fields, that header and table are present,
    /// the header digest, each entry (reserved flags, kind, uniqueness,
    /// bounds, load hints), that payloads do not overlap and padding is zero,
    /// every payload digest, and finally the data entries' payloads and
    /// hints and that each has the kind it needs. Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PackageError> {
        let header_bytes =
            bytes.first_chunk::<HEADER_SIZE>().ok_or_else(|| truncated("header", to_u64(HEADER_SIZE), bytes.len()))?;
        let header =
            RawHeader::decode(header_bytes).ok_or_else(|| truncated("header", to_u64(HEADER_SIZE), bytes.len()))?;
        if header.magic != MAGIC {
            return Err(PackageError::BadMagic { found: header.magic });
        }
        if header.version != FORMAT_VERSION {
            return Err(PackageError::UnsupportedVersion { found: header.version });
        }
        if usize::try_from(header.header_size).ok() != Some(HEADER_SIZE) {
            return Err(PackageError::HeaderSizeMismatch { found: header.header_size });
        }
        if usize::try_from(header.entry_size).ok() != Some(ENTRY_SIZE) {
            return Err(PackageError::EntrySizeMismatch { found: header.entry_size });
        }
        let count = usize::try_from(header.entry_count)
            .ok()
            .filter(|&n| n <= MAX_ENTRIES)
            .ok_or(PackageError::TooManyEntries { count: u64::from(header.entry_count) })?;
        let table_end =
            table_end(count).ok_or(PackageError::TooManyEntries { count: u64::from(header.entry_count) })?;
        let table = bytes
            .get(HEADER_SIZE..table_end)
            .ok_or_else(|| truncated("entry table", to_u64(table_end), bytes.len()))?;
        if header_digest(header_bytes, table) != header.digest {
            return Err(PackageError::HeaderDigestMismatch);
        }
        if header.total_size < to_u64(table_end) {
            return Err(PackageError::BadTotalSize { total: header.total_size, min: to_u64(table_end) });
        }
        let bytes = usize::try_from(header.total_size)
            .ok()
            .and_then(|total| bytes.get(..total))
            .ok_or_else(|| truncated("payloads", header.total_size, bytes.len()))?;

        let mut entries: [Option<Entry<'a>>; EntryKind::ALL.len()] = [None; EntryKind::ALL.len()];
        for (index, record) in table.chunks_exact(ENTRY_SIZE).enumerate() {
            let raw =
                RawEntry::decode(record).ok_or_else(|| truncated("entry table", to_u64(table_end), bytes.len()))?;
            if raw.flags != 0 {
                return Err(PackageError::NonZeroReserved { index, value: raw.flags });
            }
            let kind = EntryKind::from_u32(raw.kind).ok_or(PackageError::UnknownKind { index, kind: raw.kind })?;
            if entries.iter().flatten().any(|e| e.kind == kind) {
                return Err(PackageError::DuplicateKind { kind });
            }
            let out_of_bounds = PackageError::EntryOutOfBounds {
                kind,
                offset: raw.offset,
                size: raw.size,
                start: to_u64(table_end),
                end: header.total_size,
            };
            if raw.offset < to_u64(table_end) {
                return Err(out_of_bounds);
            }
            let payload = raw
                .offset
                .checked_add(raw.size)
                .and_then(|end| Some(usize::try_from(raw.offset).ok()?..usize::try_from(end).ok()?))
                .and_then(|range| bytes.get(range))
                .ok_or(out_of_bounds)?;
            raw.load.check(raw.size).map_err(|error| PackageError::BadLoadHints { kind, error })?;
            let entry = Entry {
                kind,
                offset: usize::try_from(raw.offset).map_err(|_| out_of_bounds)?,
                payload,
                load: raw.load,
                digest: raw.digest,
            };
            // There is a free slot: entries are unique kinds and the array
            // has one slot per kind.
            let slot = entries.iter_mut().find(|slot| slot.is_none()).ok_or(PackageError::DuplicateKind { kind })?;
            *slot = Some(entry);
        }

        check_layout(bytes, table_end, &entries)?;

        for entry in entries.iter().flatten() {
            if sha256(entry.payload) != entry.digest {
                return Err(PackageError::PayloadDigestMismatch { kind: entry.kind });
            }
        }
        for entry in entries.iter().flatten() {
            check_data(entry.kind, entry.payload, entry.load)?;
        }
        check_needs(entries.iter().flatten().map(|e| e.kind))?;

        Ok(Self { bytes, header_digest: header.digest, entries })
    }

    /// Size of the whole package in bytes (header, table, payloads, padding).
    pub fn total_size(&self) -> usize {
        self.bytes.len()
    }

    /// The package's bytes, exactly [`Self::total_size`] long.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The header digest (SHA-256 of header and entry table).
    pub fn header_digest(&self) -> Sha256Digest {
        self.header_digest
    }

    /// The entries, in table order.
    pub fn entries(&self) -> impl Iterator<Item = Entry<'a>> + '_ {
        self.entries.iter().flatten().copied()
    }

    /// The entry of `kind`, if the package has one.
    pub fn entry(&self, kind: EntryKind) -> Option<Entry<'a>> {
        self.entries().find(|e| e.kind == kind)
    }

    /// The entry of `kind`, or [`PackageError::MissingEntry`].
    pub fn require(&self, kind: EntryKind) -> Result<Entry<'a>, PackageError> {
        self.entry(kind).ok_or(PackageError::MissingEntry { kind })
    }
}

/// Checks that payloads (already known to lie in `table_end..bytes.len()`)
/// do not overlap and that every byte of the payload area outside them is
/// zero.
fn check_layout(bytes: &[u8], table_end: usize, entries: &[Option<Entry<'_>>]) -> Result<(), PackageError> {
    // Sort (offset, end, kind) by offset; there are at most a few entries.
    let mut ranges = [(0usize, 0usize, EntryKind::Hypervisor); EntryKind::ALL.len()];
    let n = entries.iter().flatten().count();
    for (slot, entry) in ranges.iter_mut().zip(entries.iter().flatten()) {
        *slot = (entry.offset, entry.offset.saturating_add(entry.payload.len()), entry.kind);
    }
    let ranges = ranges.get_mut(..n).ok_or(PackageError::TooLarge)?;
    ranges.sort_unstable_by_key(|r| (r.0, r.1));

    let check_zero = |from: usize, to: usize| -> Result<(), PackageError> {
        let gap = bytes.get(from..to).unwrap_or_default();
        match gap.iter().position(|&b| b != 0) {
            Some(i) => Err(PackageError::NonZeroPadding { offset: to_u64(from.saturating_add(i)) }),
            None => Ok(()),
        }
    };

    let mut cursor = table_end;
    let mut previous: Option<EntryKind> = None;
    for &(start, end, kind) in ranges.iter() {
        if start < cursor {
            if let Some(first) = previous {
                return Err(PackageError::OverlappingPayloads { first, second: kind });
            }
        }
        check_zero(cursor, start)?;
        if end >= cursor {
            cursor = end;
            previous = Some(kind);
        }
    }
    check_zero(cursor, bytes.len())
}

/// One payload for the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryDesc<'a> {
    /// What the payload is.
    pub kind: EntryKind,
    /// The payload bytes.
    pub payload: &'a [u8],
    /// How to place the payload in RAM.
    pub load: LoadHints,
}

/// Where [`encode`] puts things; also validates the descriptions.
struct Layout {
    table_end: usize,
    offsets: [usize; MAX_ENTRIES],
    total: usize,
}

fn layout(entries: &[EntryDesc<'_>]) -> Result<Layout, PackageError> {
    if entries.len() > MAX_ENTRIES {
        return Err(PackageError::TooManyEntries { count: to_u64(entries.len()) });
    }
    let mut offsets = [0usize; MAX_ENTRIES];
    let table_end = table_end(entries.len()).ok_or(PackageError::TooLarge)?;
    let mut cursor = table_end;
    for (i, desc) in entries.iter().enumerate() {
        if entries.get(..i).unwrap_or_default().iter().any(|d| d.kind == desc.kind) {
            return Err(PackageError::DuplicateKind { kind: desc.kind });
        }
        desc.load
            .check(to_u64(desc.payload.len()))
            .map_err(|error| PackageError::BadLoadHints { kind: desc.kind, error })?;
        check_data(desc.kind, desc.payload, desc.load)?;
        let offset = cursor.checked_next_multiple_of(PAYLOAD_ALIGN).ok_or(PackageError::TooLarge)?;
        cursor = offset.checked_add(desc.payload.len()).ok_or(PackageError::TooLarge)?;
        if let Some(slot) = offsets.get_mut(i) {
            *slot = offset;
        }
    }
    check_needs(entries.iter().map(|d| d.kind))?;
    Ok(Layout { table_end, offsets, total: cursor })
}

/// Bytes [`encode`] needs for `entries` (`usize::MAX` if they cannot be
/// encoded, so that [`encode`] then reports why).
pub fn encoded_len(entries: &[EntryDesc<'_>]) -> usize {
    layout(entries).map_or(usize::MAX, |l| l.total)
}

/// Writes a package holding `entries` (in that order) to the start of `out`
/// and returns its length. Bytes of `out` past that length are untouched.
pub fn encode(entries: &[EntryDesc<'_>], out: &mut [u8]) -> Result<usize, PackageError> {
    let layout = layout(entries)?;
    let have = out.len();
    let out = out.get_mut(..layout.total).ok_or(PackageError::BufferTooSmall { need: layout.total, have })?;
    out.fill(0);
    let internal = PackageError::BufferTooSmall { need: layout.total, have };

    let (header_bytes, rest) = out.split_first_chunk_mut::<HEADER_SIZE>().ok_or(internal)?;
    let (table, _) = rest.split_at_mut_checked(layout.table_end.saturating_sub(HEADER_SIZE)).ok_or(internal)?;
    for ((desc, &offset), record) in entries.iter().zip(layout.offsets.iter()).zip(table.chunks_exact_mut(ENTRY_SIZE)) {
        RawEntry {
            kind: desc.kind.as_u32(),
            flags: 0,
            offset: to_u64(offset),
            size: to_u64(desc.payload.len()),
            load: desc.load,
            digest: sha256(desc.payload),
        }
        .encode(record)
        .ok_or(internal)?;
    }
    let mut header = RawHeader {
        magic: MAGIC,
        version: FORMAT_VERSION,
        header_size: u32::try_from(HEADER_SIZE).map_err(|_| internal)?,
        entry_count: u32::try_from(entries.len()).map_err(|_| internal)?,
        entry_size: u32::try_from(ENTRY_SIZE).map_err(|_| internal)?,
        total_size: to_u64(layout.total),
        digest: [0; DIGEST_SIZE],
    };
    header.encode(header_bytes).ok_or(internal)?;
    header.digest = header_digest(header_bytes, table);
    header.encode(header_bytes).ok_or(internal)?;

    for (desc, &offset) in entries.iter().zip(layout.offsets.iter()) {
        out.get_mut(offset..)
            .and_then(|dst| dst.get_mut(..desc.payload.len()))
            .ok_or(internal)?
            .copy_from_slice(desc.payload);
    }
    Ok(layout.total)
}

/// Builds a package holding `entries` (in that order) in a new vector.
#[cfg(any(test, feature = "std"))]
pub fn build(entries: &[EntryDesc<'_>]) -> Result<std::vec::Vec<u8>, PackageError> {
    let len = layout(entries)?.total;
    let mut out = std::vec![0u8; len];
    let written = encode(entries, &mut out)?;
    out.truncate(written);
    Ok(out)
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    const HYP: &[u8] = &[0xa5; 100];
    const STUB: &[u8] = &[0x3c; 37];

    fn hints(mem_size: u64, entry_offset: u64) -> LoadHints {
        LoadHints { align: 4096, mem_size, entry_offset }
    }

    fn descs() -> [EntryDesc<'static>; 2] {
        [
            EntryDesc {
                kind: EntryKind::Hypervisor,
                payload: HYP,
                load: LoadHints { align: 0x20_0000, mem_size: 0x3000, entry_offset: 0x40 },
            },
            EntryDesc { kind: EntryKind::GuestStub, payload: STUB, load: hints(0x1000, 0) },
        ]
    }

    fn sample() -> Vec<u8> {
        build(&descs()).unwrap()
    }

    const TABLE_END: usize = HEADER_SIZE + 2 * ENTRY_SIZE;
    /// Offset of entry `i`'s field at `field` in the table.
    fn field(i: usize, field: usize) -> usize {
        HEADER_SIZE + i * ENTRY_SIZE + field
    }
    const KIND: usize = 0;
    const FLAGS: usize = 4;
    const OFFSET: usize = 8;
    const SIZE: usize = 16;
    const ALIGN: usize = 24;
    const MEM_SIZE: usize = 32;
    const ENTRY_OFFSET: usize = 40;

    fn set_u32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn set_u64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn get_u64(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Recomputes the header digest after a deliberate edit, so that the
    /// check under test (not the digest) is what fires.
    fn reseal(b: &mut [u8]) {
        let count = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
        let end = HEADER_SIZE + count.min(MAX_ENTRIES) * ENTRY_SIZE;
        if end > b.len() {
            return;
        }
        let header: [u8; HEADER_SIZE] = b[..HEADER_SIZE].try_into().unwrap();
        let digest = header_digest(&header, &b[HEADER_SIZE..end]);
        b[HEADER_DIGEST_OFFSET..HEADER_SIZE].copy_from_slice(&digest);
    }

    fn parse_err(b: &[u8]) -> PackageError {
        Package::parse(b).expect_err("parse should fail")
    }

    fn edited(edit: impl FnOnce(&mut Vec<u8>)) -> PackageError {
        let mut b = sample();
        edit(&mut b);
        reseal(&mut b);
        parse_err(&b)
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        assert_eq!(bytes.len(), encoded_len(&descs()));
        let pkg = Package::parse(&bytes).unwrap();
        assert_eq!(pkg.total_size(), bytes.len());
        assert_eq!(pkg.as_bytes(), &bytes[..]);
        let kinds: Vec<_> = pkg.entries().map(|e| e.kind).collect();
        assert_eq!(kinds, [EntryKind::Hypervisor, EntryKind::GuestStub]);
        for desc in descs() {
            let e = pkg.require(desc.kind).unwrap();
            assert_eq!(e.payload, desc.payload);
            assert_eq!(e.load, desc.load);
            assert_eq!(e.digest, sha256(desc.payload));
            assert_eq!(&bytes[e.offset..e.offset + e.payload.len()], desc.payload);
            assert_eq!(e.offset % PAYLOAD_ALIGN, 0);
            assert!(e.offset >= TABLE_END);
        }
        assert_eq!(&bytes[..8], b"HVFWPKG\0");
        let debug = std::format!("{pkg:?}");
        assert!(debug.contains("payload_len: 100") && debug.len() < 1000, "{debug}");
    }

    #[test]
    fn parse_ignores_trailing_flash() {
        let mut bytes = sample();
        let len = bytes.len();
        bytes.extend_from_slice(&[0xff; 5000]);
        let pkg = Package::parse(&bytes).unwrap();
        assert_eq!(pkg.total_size(), len);
        assert_eq!(pkg.entry(EntryKind::GuestStub).unwrap().payload, STUB);
    }

    #[test]
    fn empty_and_partial_packages() {
        let bytes = build(&[]).unwrap();
        assert_eq!(bytes.len(), HEADER_SIZE);
        let pkg = Package::parse(&bytes).unwrap();
        assert_eq!(pkg.entries().count(), 0);
        assert_eq!(pkg.require(EntryKind::Hypervisor), Err(PackageError::MissingEntry { kind: EntryKind::Hypervisor }));

        let bytes = build(&descs()[..1]).unwrap();
        let pkg = Package::parse(&bytes).unwrap();
        assert!(pkg.require(EntryKind::Hypervisor).is_ok());
        assert_eq!(pkg.entry(EntryKind::GuestStub), None);
        let err = pkg.require(EntryKind::GuestStub).unwrap_err();
        assert_eq!(err, PackageError::MissingEntry { kind: EntryKind::GuestStub });
        assert!(err.to_string().contains("guest-stub"));
    }

    #[test]
    fn encode_into_larger_buffer() {
        let need = encoded_len(&descs());
        let mut out = std::vec![0xeeu8; need + 10];
        assert_eq!(encode(&descs(), &mut out), Ok(need));
        assert!(out[need..].iter().all(|&b| b == 0xee));
        assert_eq!(&out[..need], &sample()[..]);
        assert!(Package::parse(&out).is_ok());
    }

    #[test]
    fn encode_rejections() {
        let need = encoded_len(&descs());
        let mut small = std::vec![0u8; need - 1];
        assert_eq!(encode(&descs(), &mut small), Err(PackageError::BufferTooSmall { need, have: need - 1 }));

        let [hyp, _] = descs();
        assert_eq!(build(&[hyp, hyp]), Err(PackageError::DuplicateKind { kind: EntryKind::Hypervisor }));
        assert_eq!(build(&[hyp; MAX_ENTRIES + 1]), Err(PackageError::TooManyEntries { count: MAX_ENTRIES as u64 + 1 }));
        assert_eq!(encoded_len(&[hyp, hyp]), usize::MAX);

        let bad = EntryDesc { load: hints(10, 0), ..hyp };
        assert_eq!(
            build(&[bad]),
            Err(PackageError::BadLoadHints {
                kind: EntryKind::Hypervisor,
                error: LoadHintError::MemSizeBelowPayload { mem_size: 10, payload_size: 100 }
            })
        );
    }

    #[test]
    fn load_hint_rules() {
        assert_eq!(hints(0x1000, 0).check(0x1000), Ok(()));
        let cases = [
            (LoadHints { align: 3 * 4096, ..hints(0x1000, 0) }, LoadHintError::AlignNotPowerOfTwo { align: 3 * 4096 }),
            (LoadHints { align: 0, ..hints(0x1000, 0) }, LoadHintError::AlignNotPowerOfTwo { align: 0 }),
            (LoadHints { align: 2048, ..hints(0x1000, 0) }, LoadHintError::AlignTooSmall { align: 2048 }),
            (hints(0x10, 0), LoadHintError::MemSizeBelowPayload { mem_size: 0x10, payload_size: 0x20 }),
            (hints(0x1000, 0x1000), LoadHintError::EntryOutsideImage { entry_offset: 0x1000, mem_size: 0x1000 }),
            (hints(0x1000, 0x102), LoadHintError::EntryMisaligned { entry_offset: 0x102 }),
        ];
        for (h, want) in cases {
            assert_eq!(h.check(0x20), Err(want), "{h:?}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn truncation_points() {
        let b = sample();
        for (cut, what, need) in [
            (0, "header", HEADER_SIZE),
            (10, "header", HEADER_SIZE),
            (HEADER_SIZE - 1, "header", HEADER_SIZE),
            (HEADER_SIZE, "entry table", TABLE_END),
            (HEADER_SIZE + 10, "entry table", TABLE_END),
            (TABLE_END, "payloads", b.len()),
            (b.len() - 1, "payloads", b.len()),
        ] {
            let err = parse_err(&b[..cut]);
            assert_eq!(err, PackageError::Truncated { what, need: need as u64, have: cut as u64 }, "cut at {cut}");
            let msg = err.to_string();
            assert!(msg.contains(&need.to_string()) && msg.contains(what), "{msg}");
        }
    }

    #[test]
    fn header_field_rejections() {
        let mut b = sample();
        b[0] ^= 0x20;
        assert!(matches!(parse_err(&b), PackageError::BadMagic { found } if found[0] == b'h'));

        assert_eq!(edited(|b| set_u32(b, 8, 2)), PackageError::UnsupportedVersion { found: 2 });
        assert_eq!(edited(|b| set_u32(b, 12, 72)), PackageError::HeaderSizeMismatch { found: 72 });
        assert_eq!(edited(|b| set_u32(b, 20, 88)), PackageError::EntrySizeMismatch { found: 88 });
        assert_eq!(edited(|b| set_u32(b, 16, 17)), PackageError::TooManyEntries { count: 17 });
        assert_eq!(edited(|b| set_u32(b, 16, u32::MAX)), PackageError::TooManyEntries { count: u32::MAX.into() });
        assert_eq!(edited(|b| set_u64(b, 24, 100)), PackageError::BadTotalSize { total: 100, min: TABLE_END as u64 });
        let len = sample().len() as u64;
        assert_eq!(
            edited(|b| set_u64(b, 24, u64::MAX)),
            PackageError::Truncated { what: "payloads", need: u64::MAX, have: len }
        );
    }

    #[test]
    fn header_digest_covers_header_and_table() {
        let good = sample();
        for at in [24, 30, HEADER_DIGEST_OFFSET, HEADER_SIZE - 1] {
            let mut b = good.clone();
            b[at] ^= 1;
            assert_eq!(parse_err(&b), PackageError::HeaderDigestMismatch, "byte {at}");
        }
        for at in [field(0, OFFSET), field(1, SIZE), field(1, 79)] {
            let mut b = good.clone();
            b[at] ^= 0x80;
            assert_eq!(parse_err(&b), PackageError::HeaderDigestMismatch, "byte {at}");
        }
    }

    #[test]
    fn entry_rejections() {
        assert_eq!(edited(|b| set_u32(b, field(1, FLAGS), 4)), PackageError::NonZeroReserved { index: 1, value: 4 });
        assert_eq!(edited(|b| set_u32(b, field(0, KIND), 7)), PackageError::UnknownKind { index: 0, kind: 7 });
        assert_eq!(
            edited(|b| set_u32(b, field(1, KIND), 1)),
            PackageError::DuplicateKind { kind: EntryKind::Hypervisor }
        );
        let total = sample().len() as u64;
        // Payload inside the table.
        assert_eq!(
            edited(|b| set_u64(b, field(0, OFFSET), 8)),
            PackageError::EntryOutOfBounds {
                kind: EntryKind::Hypervisor,
                offset: 8,
                size: HYP.len() as u64,
                start: TABLE_END as u64,
                end: total
            }
        );
        // Payload past the end.
        assert!(matches!(
            edited(|b| set_u64(b, field(1, SIZE), 1000)),
            PackageError::EntryOutOfBounds { kind: EntryKind::GuestStub, size: 1000, .. }
        ));
        // Offset + size overflows u64.
        assert!(matches!(
            edited(|b| set_u64(b, field(1, SIZE), u64::MAX)),
            PackageError::EntryOutOfBounds { kind: EntryKind::GuestStub, .. }
        ));
        assert!(matches!(
            edited(|b| set_u64(b, field(1, OFFSET), u64::MAX - 3)),
            PackageError::EntryOutOfBounds { kind: EntryKind::GuestStub, .. }
        ));
    }

    #[test]
    fn bad_load_hints_in_table() {
        let cases: [(usize, usize, u64, LoadHintError); 5] = [
            (0, ALIGN, 0x3000, LoadHintError::AlignNotPowerOfTwo { align: 0x3000 }),
            (1, ALIGN, 0x800, LoadHintError::AlignTooSmall { align: 0x800 }),
            (0, MEM_SIZE, 99, LoadHintError::MemSizeBelowPayload { mem_size: 99, payload_size: 100 }),
            (1, ENTRY_OFFSET, 0x1000, LoadHintError::EntryOutsideImage { entry_offset: 0x1000, mem_size: 0x1000 }),
            (0, ENTRY_OFFSET, 0x42, LoadHintError::EntryMisaligned { entry_offset: 0x42 }),
        ];
        for (i, at, value, error) in cases {
            let kind = EntryKind::ALL[i];
            let err = edited(|b| set_u64(b, field(i, at), value));
            assert_eq!(err, PackageError::BadLoadHints { kind, error });
            let msg = err.to_string();
            assert!(msg.contains(kind.name()) && msg.contains("load"), "{msg}");
        }
    }

    #[test]
    fn overlapping_payloads() {
        // Guest-stub starts 8 bytes into the hypervisor.
        let err = edited(|b| {
            let hyp_off = get_u64(b, field(0, OFFSET));
            set_u64(b, field(1, OFFSET), hyp_off + 8);
        });
        assert_eq!(
            err,
            PackageError::OverlappingPayloads { first: EntryKind::Hypervisor, second: EntryKind::GuestStub }
        );
        assert!(err.to_string().contains("overlap"));
        // Both at the same offset.
        let err = edited(|b| {
            let hyp_off = get_u64(b, field(0, OFFSET));
            set_u64(b, field(1, OFFSET), hyp_off);
        });
        assert!(matches!(err, PackageError::OverlappingPayloads { .. }));
    }

    #[test]
    fn padding_must_be_zero() {
        let mut b = sample();
        let hyp_off = get_u64(&b, field(0, OFFSET)) as usize;
        assert!(hyp_off > TABLE_END, "the sample has padding after the table");
        b[TABLE_END] = 1;
        assert_eq!(parse_err(&b), PackageError::NonZeroPadding { offset: TABLE_END as u64 });
        // Padding between the two payloads.
        let mut b = sample();
        let gap = hyp_off + HYP.len();
        b[gap + 1] = 0x80;
        assert_eq!(parse_err(&b), PackageError::NonZeroPadding { offset: gap as u64 + 1 });
        // Trailing padding inside total_size: grow total_size by 8 zero bytes
        // (accepted), then make one of them non-zero (rejected).
        let mut b = sample();
        let len = b.len();
        b.extend_from_slice(&[0; 8]);
        set_u64(&mut b, 24, len as u64 + 8);
        reseal(&mut b);
        assert_eq!(Package::parse(&b).unwrap().total_size(), len + 8);
        b[len + 7] = 9;
        assert_eq!(parse_err(&b), PackageError::NonZeroPadding { offset: len as u64 + 7 });
    }

    #[test]
    fn payload_digest_names_the_entry() {
        let good = sample();
        let pkg = Package::parse(&good).unwrap();
        for e in pkg.entries() {
            for at in [e.offset, e.offset + e.payload.len() / 2, e.offset + e.payload.len() - 1] {
                let mut b = good.clone();
                b[at] ^= 0x01;
                let err = parse_err(&b);
                assert_eq!(err, PackageError::PayloadDigestMismatch { kind: e.kind });
                assert!(err.to_string().contains(e.kind.name()));
            }
        }
    }

    #[test]
    fn never_panics_on_truncation_or_byte_flips() {
        let good = sample();
        for cut in 0..good.len() {
            assert!(Package::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Every byte of a package is covered by a digest or the zero-padding
        // rule, so every flip is detected.
        for at in 0..good.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut b = good.clone();
                b[at] ^= mask;
                assert!(Package::parse(&b).is_err(), "flip {mask:#x} at {at}");
            }
        }
    }

    #[test]
    fn never_panics_on_resealed_garbage() {
        // Random table contents with a valid header digest reach the deeper
        // checks; none may panic.
        let good = sample();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = HEADER_SIZE + (next() as usize) % (b.len() - HEADER_SIZE);
                let r = next();
                if r & 1 == 0 {
                    b[at] = r as u8;
                } else {
                    // Small, plausible values for u64 fields.
                    let at = at.min(TABLE_END - 8) & !7;
                    set_u64(&mut b, at, (r >> 8) % (good.len() as u64 + 64));
                }
            }
            if next() % 8 == 0 {
                set_u32(&mut b, 16, (next() % 3) as u32);
            }
            reseal(&mut b);
            let _ = Package::parse(&b);
        }
    }

    #[test]
    fn finding_packages_in_flash() {
        assert_eq!(package_offset(0), Some(0));
        assert_eq!(package_offset(1), Some(PACKAGE_ALIGN));
        assert_eq!(package_offset(PACKAGE_ALIGN), Some(PACKAGE_ALIGN));
        assert_eq!(package_offset(usize::MAX), None);

        let mut flash = std::vec![0u8; 3 * PACKAGE_ALIGN];
        flash[100..108].copy_from_slice(&MAGIC); // unaligned: ignored
        flash[PACKAGE_ALIGN..PACKAGE_ALIGN + 8].copy_from_slice(&MAGIC); // decoy
        let pkg = sample();
        flash.extend_from_slice(&pkg);
        let found: Vec<_> = candidate_offsets(&flash).collect();
        assert_eq!(found, [PACKAGE_ALIGN, 3 * PACKAGE_ALIGN]);
        assert!(Package::parse(&flash[PACKAGE_ALIGN..]).is_err());
        assert!(Package::parse(&flash[3 * PACKAGE_ALIGN..]).is_ok());
    }

    /// An arm64 Image header (and a little code) whose `image_size` is
    /// `image_size`.
    fn kernel(image_size: u64) -> Vec<u8> {
        let mut k = std::vec![0u8; 4096];
        k[16..24].copy_from_slice(&image_size.to_le_bytes());
        k[24..32].copy_from_slice(&0xa_u64.to_le_bytes());
        k[0x38..0x3c].copy_from_slice(b"ARM\x64");
        k[64..68].copy_from_slice(&[1, 2, 3, 4]);
        k
    }

    const KERNEL_SIZE: u64 = 0x30_0000;
    const INITRD: &[u8] = &[0x1f, 0x8b, 0x08, 0x00, 7, 7, 7];
    const LINUX_CMDLINE: &[u8] = b"console=ttyPS0 linux-guest=poweroff";
    const HV_CMDLINE: &[u8] = b"log=debug stub=fail";

    /// Every kind: the images, then the data entries with their hints.
    fn all_kinds(kernel: &[u8]) -> Vec<EntryDesc<'_>> {
        let mut all = descs().to_vec();
        for (kind, payload) in [
            (EntryKind::LinuxKernel, kernel),
            (EntryKind::LinuxInitrd, INITRD),
            (EntryKind::LinuxCmdline, LINUX_CMDLINE),
            (EntryKind::HvCmdline, HV_CMDLINE),
        ] {
            let load = data_hints(kind, payload).unwrap().unwrap();
            all.push(EntryDesc { kind, payload, load });
        }
        all
    }

    /// Recomputes every payload digest, then the header digest: for edits
    /// of payloads that the digests would otherwise catch first.
    fn reseal_all(b: &mut [u8]) {
        let count = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
        for i in 0..count {
            let (offset, size) = (get_u64(b, field(i, OFFSET)) as usize, get_u64(b, field(i, SIZE)) as usize);
            let digest = sha256(&b[offset..offset + size]);
            b[field(i, 48)..field(i, 80)].copy_from_slice(&digest);
        }
        reseal(b);
    }

    #[test]
    fn data_entries_round_trip() {
        let k = kernel(KERNEL_SIZE);
        let descs = all_kinds(&k);
        let bytes = build(&descs).unwrap();
        let pkg = Package::parse(&bytes).unwrap();
        let kinds: Vec<_> = pkg.entries().map(|e| e.kind).collect();
        assert_eq!(kinds, EntryKind::ALL);
        for desc in &descs {
            let e = pkg.require(desc.kind).unwrap();
            assert_eq!((e.payload, e.load), (desc.payload, desc.load));
        }
        let kernel = pkg.require(EntryKind::LinuxKernel).unwrap();
        assert_eq!(kernel.load, LoadHints { align: 0x20_0000, mem_size: KERNEL_SIZE, entry_offset: 0 });
        let initrd = pkg.require(EntryKind::LinuxInitrd).unwrap();
        assert_eq!(initrd.load, LoadHints { align: MIN_LOAD_ALIGN, mem_size: INITRD.len() as u64, entry_offset: 0 });
        // Only the images have hints of their own.
        assert_eq!(data_hints(EntryKind::Hypervisor, &[]), Ok(None));
        assert_eq!(data_hints(EntryKind::GuestStub, HYP), Ok(None));
        // A kernel alone, and a kernel with its command line only.
        for n in [3, 4] {
            let some: Vec<_> = descs.iter().copied().filter(|d| d.kind != EntryKind::LinuxInitrd).take(n).collect();
            assert!(Package::parse(&build(&some).unwrap()).is_ok(), "{n}");
        }
    }

    #[test]
    fn data_payload_rules() {
        let long_linux = std::vec![b'a'; LINUX_CMDLINE_MAX + 1];
        let long_hv = std::vec![b'b'; HV_CMDLINE_MAX + 1];
        let cases: [(EntryKind, &[u8], PayloadError); 8] = [
            (EntryKind::LinuxInitrd, b"", PayloadError::Empty),
            (EntryKind::HvCmdline, b"", PayloadError::Empty),
            (EntryKind::LinuxCmdline, &long_linux, PayloadError::TextTooLong { len: 2048, max: 2047 }),
            (EntryKind::HvCmdline, &long_hv, PayloadError::TextTooLong { len: 1025, max: 1024 }),
            (EntryKind::HvCmdline, b"log=debug\xff", PayloadError::TextNotUtf8 { offset: 9 }),
            (EntryKind::LinuxCmdline, b"console=ttyAMA0\0", PayloadError::TextControl { offset: 15, byte: 0 }),
            (EntryKind::HvCmdline, "a\u{85}b".as_bytes(), PayloadError::TextControl { offset: 1, byte: 0xc2 }),
            (
                EntryKind::LinuxKernel,
                &[0x1f, 0x8b, 0x08, 0x00],
                PayloadError::Kernel(LinuxError::Truncated { size: 4 }),
            ),
        ];
        for (kind, payload, error) in cases {
            assert_eq!(data_hints(kind, payload), Err(error), "{kind}");
            // The writer refuses it too, whatever the hints.
            let load = LoadHints { align: MIN_LOAD_ALIGN, mem_size: payload.len().max(1) as u64, entry_offset: 0 };
            let k = kernel(KERNEL_SIZE);
            let mut with = all_kinds(&k);
            with.retain(|d| d.kind != kind);
            with.push(EntryDesc { kind, payload, load });
            assert_eq!(build(&with), Err(PackageError::BadPayload { kind, error }), "{kind}");
            assert!(!error.to_string().is_empty());
        }
        // UTF-8 beyond ASCII, and the longest command lines, are fine.
        assert!(data_hints(EntryKind::LinuxCmdline, "name=café".as_bytes()).is_ok());
        assert!(data_hints(EntryKind::LinuxCmdline, &long_linux[1..]).is_ok());
        assert!(data_hints(EntryKind::HvCmdline, &long_hv[1..]).is_ok());
        let gz = [0x1f, 0x8b, 0x08, 0x00].repeat(100);
        let err = data_hints(EntryKind::LinuxKernel, &gz).unwrap_err();
        assert!(matches!(err, PayloadError::Kernel(LinuxError::BadMagic { .. })), "{err:?}");
        assert!(err.to_string().contains("compressed"), "{err}");
    }

    #[test]
    fn data_hints_are_exact() {
        let k = kernel(KERNEL_SIZE);
        for (i, desc) in all_kinds(&k).iter().enumerate().skip(2) {
            for (at, value) in [(ALIGN, 0x40_0000), (MEM_SIZE, desc.load.mem_size + 8), (ENTRY_OFFSET, 4)] {
                let mut b = build(&all_kinds(&k)).unwrap();
                set_u64(&mut b, field(i, at), value);
                reseal(&mut b);
                let err = parse_err(&b);
                let mut found = desc.load;
                match at {
                    ALIGN => found.align = value,
                    MEM_SIZE => found.mem_size = value,
                    _ => found.entry_offset = value,
                }
                let error = PayloadError::Hints { found, expected: desc.load };
                assert_eq!(err, PackageError::BadPayload { kind: desc.kind, error }, "{} field {at}", desc.kind);
                let msg = err.to_string();
                assert!(msg.contains(desc.kind.name()) && msg.contains("load hints"), "{msg}");
                // The writer refuses the same hints.
                let mut descs = all_kinds(&k);
                descs[i].load = found;
                assert_eq!(build(&descs), Err(err));
            }
        }
    }

    #[test]
    fn data_payloads_are_checked_behind_their_digests() {
        // A kernel whose magic is damaged, digests recomputed: the data
        // rules catch it.
        let k = kernel(KERNEL_SIZE);
        let mut b = build(&all_kinds(&k)).unwrap();
        let at = get_u64(&b, field(2, OFFSET)) as usize + 0x38;
        b[at] = b'X';
        assert_eq!(parse_err(&b), PackageError::PayloadDigestMismatch { kind: EntryKind::LinuxKernel });
        reseal_all(&mut b);
        let err = parse_err(&b);
        assert!(
            matches!(
                err,
                PackageError::BadPayload {
                    kind: EntryKind::LinuxKernel,
                    error: PayloadError::Kernel(LinuxError::BadMagic { .. })
                }
            ),
            "{err:?}"
        );
        // A newline in the hypervisor's command line.
        let mut b = build(&all_kinds(&k)).unwrap();
        let at = get_u64(&b, field(5, OFFSET)) as usize + 3;
        b[at] = b'\n';
        reseal_all(&mut b);
        assert_eq!(
            parse_err(&b),
            PackageError::BadPayload {
                kind: EntryKind::HvCmdline,
                error: PayloadError::TextControl { offset: 3, byte: b'\n' }
            }
        );
    }

    #[test]
    fn every_byte_of_a_package_with_every_kind_is_checked() {
        let k = kernel(KERNEL_SIZE);
        let good = build(&all_kinds(&k)).unwrap();
        for at in 0..good.len() {
            let mut b = good.clone();
            b[at] ^= 0x10;
            assert!(Package::parse(&b).is_err(), "flip at {at}");
        }
        let err = PackageError::UnknownKind { index: 0, kind: 7 }.to_string();
        assert!(err.ends_with("(known: 1 = hypervisor, 2 = guest-stub, 3 = linux-kernel, 4 = linux-initrd, 5 = linux-cmdline, 6 = hv-cmdline)"), "{err}");
    }

    #[test]
    fn initrd_and_cmdline_need_a_kernel() {
        let k = kernel(KERNEL_SIZE);
        for kind in [EntryKind::LinuxInitrd, EntryKind::LinuxCmdline] {
            let descs: Vec<_> = all_kinds(&k).into_iter().filter(|d| d.kind.is_image() || d.kind == kind).collect();
            let err = build(&descs).unwrap_err();
            assert_eq!(err, PackageError::MissingDependency { kind, needs: EntryKind::LinuxKernel });
            assert!(err.to_string().contains("no linux-kernel entry"), "{err}");
            // And the parser: a hypervisor command line whose kind is
            // changed to this one (the same rules hold for its payload and
            // hints), resealed.
            let text = EntryDesc {
                kind: EntryKind::HvCmdline,
                payload: b"console=ttyAMA0",
                load: data_hints(EntryKind::HvCmdline, b"console=ttyAMA0").unwrap().unwrap(),
            };
            let [hyp, stub] = super::tests::descs();
            let mut b = build(&[hyp, stub, text]).unwrap();
            set_u32(&mut b, field(2, KIND), kind.as_u32());
            reseal(&mut b);
            assert_eq!(parse_err(&b), PackageError::MissingDependency { kind, needs: EntryKind::LinuxKernel });
        }
    }

    #[test]
    fn every_error_has_a_message() {
        let kind = EntryKind::GuestStub;
        let errors = [
            PackageError::Truncated { what: "header", need: 64, have: 3 },
            PackageError::BadMagic { found: [0; 8] },
            PackageError::UnsupportedVersion { found: 9 },
            PackageError::HeaderSizeMismatch { found: 1 },
            PackageError::EntrySizeMismatch { found: 1 },
            PackageError::TooManyEntries { count: 99 },
            PackageError::HeaderDigestMismatch,
            PackageError::BadTotalSize { total: 1, min: 64 },
            PackageError::NonZeroReserved { index: 1, value: 2 },
            PackageError::UnknownKind { index: 1, kind: 9 },
            PackageError::DuplicateKind { kind },
            PackageError::EntryOutOfBounds { kind, offset: 1, size: 2, start: 3, end: 4 },
            PackageError::OverlappingPayloads { first: EntryKind::Hypervisor, second: kind },
            PackageError::NonZeroPadding { offset: 5 },
            PackageError::BadLoadHints { kind, error: LoadHintError::AlignTooSmall { align: 1 } },
            PackageError::PayloadDigestMismatch { kind },
            PackageError::MissingEntry { kind },
            PackageError::BufferTooSmall { need: 2, have: 1 },
            PackageError::TooLarge,
            PackageError::BadPayload { kind, error: PayloadError::Empty },
            PackageError::MissingDependency { kind: EntryKind::LinuxInitrd, needs: EntryKind::LinuxKernel },
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(msg.len() > 20, "{e:?}: {msg}");
        }
        assert!(PackageError::Truncated { what: "header", need: 64, have: 3 }
            .to_string()
            .contains("needs 64 bytes but only 3"));
    }
}
