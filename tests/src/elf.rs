//! Turning the firmware ELF files into flat binaries.
//!
//! The images are built as ELF executables; QEMU's `-bios` wants raw bytes.
//! This module owns the flattening rules, which differ by image:
//!
//! - The **EL3 monitor** executes in place from flash at address 0. Its
//!   `.data` has a load address (LMA, `p_paddr`) in flash and a run address
//!   (VMA, `p_vaddr`) in RAM, so it is flattened by `p_paddr` only, relative
//!   to address 0, and only the file bytes go in (`.bss` and other
//!   `p_filesz == 0` segments take no flash). See [`flatten_monitor`].
//! - The **hypervisor** and the **guest-stub** are position-independent
//!   executables linked at VA 0 that relocate themselves at boot. They are
//!   flattened by `p_vaddr` from 0, and their [`LoadHints`] (memory size
//!   including `.bss`, entry offset, alignment) are computed from the program
//!   headers for the firmware package. See [`flatten_pie`].
//!
//! Anything that is not an AArch64 little-endian 64-bit executable, has no
//! loadable segment, does not start at 0, or has overlapping segments is
//! rejected with an [`ElfError`] that says what is wrong.

use std::fmt;

use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;
use platform::package::{LoadHintError, LoadHints, MIN_LOAD_ALIGN};

/// Largest flat image this module will allocate: the size of QEMU's secure
/// flash (64 MiB); nothing bigger could be booted anyway.
pub const MAX_FLAT_SIZE: u64 = 64 << 20;

/// Which address of a segment a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressKind {
    /// `p_paddr`, the load address (used for the monitor).
    Physical,
    /// `p_vaddr`, the link address (used for position-independent images).
    Virtual,
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressKind::Physical => "physical (p_paddr)",
            AddressKind::Virtual => "virtual (p_vaddr)",
        })
    }
}

/// Why an ELF file cannot be flattened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The file does not start with the ELF magic.
    NotElf,
    /// The file is a 32-bit (or unknown-class) ELF.
    NotElf64 {
        /// `e_ident[EI_CLASS]`.
        class: u8,
    },
    /// The file is a big-endian (or unknown-encoding) ELF.
    NotLittleEndian {
        /// `e_ident[EI_DATA]`.
        data: u8,
    },
    /// The `object` crate could not read the headers.
    Malformed(String),
    /// The file is not for AArch64.
    WrongMachine {
        /// `e_machine`.
        machine: u16,
    },
    /// The file is not an executable (`ET_EXEC`) or PIE (`ET_DYN`).
    WrongType {
        /// `e_type`.
        e_type: u16,
    },
    /// No `PT_LOAD` segment (with file bytes, for the monitor).
    NoLoadableSegments,
    /// A `PT_LOAD` segment's bytes lie outside the file.
    SegmentOutOfFile {
        /// Index in the program header table.
        index: usize,
    },
    /// A `PT_LOAD` segment has `p_filesz > p_memsz`.
    FileSizeExceedsMemSize {
        /// Index in the program header table.
        index: usize,
        /// `p_filesz`.
        filesz: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// A segment's address range wraps around the 64-bit address space.
    AddressOverflow {
        /// Index in the program header table.
        index: usize,
    },
    /// A position-independent image's link base is not page-aligned.
    MisalignedBase {
        /// The lowest `p_vaddr`.
        base: u64,
    },
    /// The entry point lies below the image's link base.
    EntryBelowBase {
        /// `e_entry`.
        entry: u64,
        /// The lowest `p_vaddr`.
        base: u64,
    },
    /// The lowest loadable address is not 0.
    BaseNotZero {
        /// Which address was checked.
        by: AddressKind,
        /// The lowest address found.
        lowest: u64,
    },
    /// Two segments overlap.
    Overlap {
        /// Which addresses overlap.
        by: AddressKind,
        /// Index of the first segment in the program header table.
        first: usize,
        /// Index of the second segment in the program header table.
        second: usize,
    },
    /// The monitor's entry point is not its reset address 0.
    MonitorEntryNotZero {
        /// `e_entry`.
        entry: u64,
    },
    /// The computed load hints of a position-independent image break a rule.
    BadLoadHints(LoadHintError),
    /// The flat image would be larger than [`MAX_FLAT_SIZE`].
    TooLarge {
        /// The size it would have.
        size: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf => f.write_str("not an ELF file (bad magic)"),
            ElfError::NotElf64 { class } => {
                write!(f, "not a 64-bit ELF file (EI_CLASS = {class}); build for aarch64-unknown-none")
            }
            ElfError::NotLittleEndian { data } => {
                write!(f, "not a little-endian ELF file (EI_DATA = {data}); build for aarch64-unknown-none")
            }
            ElfError::Malformed(why) => write!(f, "malformed ELF file: {why}"),
            ElfError::WrongMachine { machine } => write!(
                f,
                "ELF file is for machine {machine}, not AArch64 ({}); build for aarch64-unknown-none",
                elf::EM_AARCH64.0
            ),
            ElfError::WrongType { e_type } => write!(
                f,
                "ELF file type {e_type} is not an executable (ET_EXEC = 2 or ET_DYN = 3); \
                 link it, do not pass an object file"
            ),
            ElfError::NoLoadableSegments => f.write_str("ELF file has no loadable (PT_LOAD) segment with contents"),
            ElfError::SegmentOutOfFile { index } => {
                write!(f, "program header {index}: segment bytes lie outside the file (truncated ELF?)")
            }
            ElfError::FileSizeExceedsMemSize { index, filesz, memsz } => {
                write!(f, "program header {index}: p_filesz {filesz:#x} exceeds p_memsz {memsz:#x}")
            }
            ElfError::AddressOverflow { index } => {
                write!(f, "program header {index}: segment address range wraps around the address space")
            }
            ElfError::MisalignedBase { base } => {
                write!(f, "link base {base:#x} is not 4 KiB aligned (check the linker script)")
            }
            ElfError::EntryBelowBase { entry, base } => {
                write!(f, "entry point {entry:#x} lies below the link base {base:#x}")
            }
            ElfError::BaseNotZero { by, lowest } => {
                write!(f, "lowest loadable {by} address is {lowest:#x}, expected 0 (check the linker script)")
            }
            ElfError::Overlap { by, first, second } => {
                write!(f, "program headers {first} and {second} overlap in {by} address (check the linker script)")
            }
            ElfError::MonitorEntryNotZero { entry } => write!(
                f,
                "monitor entry point is {entry:#x}, but the CPU resets at flash address 0; \
                 put the entry symbol first in the linker script"
            ),
            ElfError::BadLoadHints(error) => write!(f, "cannot compute load hints: {error}"),
            ElfError::TooLarge { size } => {
                write!(f, "flat image would be {size:#x} bytes, more than the {MAX_FLAT_SIZE:#x}-byte flash")
            }
        }
    }
}

impl std::error::Error for ElfError {}

/// One `PT_LOAD` segment, checked for internal consistency.
#[derive(Clone, Copy, Debug)]
struct Segment<'a> {
    index: usize,
    vaddr: u64,
    paddr: u64,
    memsz: u64,
    align: u64,
    data: &'a [u8],
}

impl Segment<'_> {
    fn filesz(&self) -> u64 {
        self.data.len() as u64
    }
}

/// A parsed and checked AArch64 ELF executable.
struct Elf<'a> {
    entry: u64,
    segments: Vec<Segment<'a>>,
}

fn parse(data: &[u8]) -> Result<Elf<'_>, ElfError> {
    let ident = data.get(..16).ok_or(ElfError::NotElf)?;
    if ident.get(..4) != Some(&elf::ELFMAG[..]) {
        return Err(ElfError::NotElf);
    }
    let (class, encoding) = (ident[4], ident[5]);
    if class != elf::ELFCLASS64.0 {
        return Err(ElfError::NotElf64 { class });
    }
    if encoding != elf::ELFDATA2LSB.0 {
        return Err(ElfError::NotLittleEndian { data: encoding });
    }
    let header = FileHeader64::<LittleEndian>::parse(data).map_err(|e| ElfError::Malformed(e.to_string()))?;
    let endian = LittleEndian;
    let machine = header.e_machine(endian);
    if machine != elf::EM_AARCH64 {
        return Err(ElfError::WrongMachine { machine: machine.0 });
    }
    let e_type = header.e_type(endian);
    if e_type != elf::ET_EXEC && e_type != elf::ET_DYN {
        return Err(ElfError::WrongType { e_type: e_type.0 });
    }
    let headers = header.program_headers(endian, data).map_err(|e| ElfError::Malformed(e.to_string()))?;
    let mut segments = Vec::new();
    for (index, ph) in headers.iter().enumerate() {
        if ph.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        let (filesz, memsz) = (ph.p_filesz(endian), ph.p_memsz(endian));
        if filesz > memsz {
            return Err(ElfError::FileSizeExceedsMemSize { index, filesz, memsz });
        }
        let seg = Segment {
            index,
            vaddr: ph.p_vaddr(endian),
            paddr: ph.p_paddr(endian),
            memsz,
            align: ph.p_align(endian),
            data: ph.data(endian, data).map_err(|()| ElfError::SegmentOutOfFile { index })?,
        };
        if seg.vaddr.checked_add(memsz).is_none() || seg.paddr.checked_add(filesz).is_none() {
            return Err(ElfError::AddressOverflow { index });
        }
        segments.push(seg);
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadableSegments);
    }
    Ok(Elf { entry: header.e_entry(endian), segments })
}

/// Places `(start, bytes)` pieces into one zero-filled buffer, checking that
/// the lowest `start` is 0 and that no two `(start, len, index)` ranges
/// overlap. `ranges` covers what must not overlap (it may be longer than the
/// bytes, e.g. to include `.bss`).
fn place(by: AddressKind, mut ranges: Vec<(u64, u64, usize)>, pieces: &[(u64, &[u8])]) -> Result<Vec<u8>, ElfError> {
    ranges.sort_unstable();
    let lowest = ranges.first().map_or(0, |r| r.0);
    if lowest != 0 {
        return Err(ElfError::BaseNotZero { by, lowest });
    }
    for pair in ranges.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // Ranges are sorted by start; they overlap if b starts before a ends.
        if b.0 < a.0 + a.1 {
            return Err(ElfError::Overlap { by, first: a.2, second: b.2 });
        }
    }
    let size = pieces.iter().map(|&(start, bytes)| start + bytes.len() as u64).max().unwrap_or(0);
    if size > MAX_FLAT_SIZE {
        return Err(ElfError::TooLarge { size });
    }
    let mut flat = vec![0u8; size as usize];
    for &(start, bytes) in pieces {
        let start = start as usize;
        flat[start..start + bytes.len()].copy_from_slice(bytes);
    }
    Ok(flat)
}

/// Flattens the EL3 monitor by physical (load) address.
///
/// Only `PT_LOAD` segments with file bytes count; they are placed at
/// `p_paddr` (the lowest must be 0), gaps are zero-filled, and `.bss`-like
/// tails (`p_memsz > p_filesz`) are not included. The entry point must be 0.
pub fn flatten_monitor(data: &[u8]) -> Result<Vec<u8>, ElfError> {
    let elf = parse(data)?;
    let with_bytes: Vec<_> = elf.segments.iter().filter(|s| s.filesz() > 0).collect();
    if with_bytes.is_empty() {
        return Err(ElfError::NoLoadableSegments);
    }
    if elf.entry != 0 {
        return Err(ElfError::MonitorEntryNotZero { entry: elf.entry });
    }
    let ranges = with_bytes.iter().map(|s| (s.paddr, s.filesz(), s.index)).collect();
    let pieces: Vec<_> = with_bytes.iter().map(|s| (s.paddr, s.data)).collect();
    place(AddressKind::Physical, ranges, &pieces)
}

/// A flattened position-independent image and how to load it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieImage {
    /// The lowest `p_vaddr`: where the image is linked (it relocates itself
    /// to wherever it runs).
    pub link_base: u64,
    /// File bytes placed at `p_vaddr - link_base` (gaps zero-filled,
    /// trailing `.bss` omitted).
    pub bytes: Vec<u8>,
    /// Load hints for the firmware package.
    pub load: LoadHints,
}

/// Flattens a position-independent image (hypervisor, guest-stub) by
/// virtual address and computes its load hints.
///
/// Every `PT_LOAD` segment counts. The lowest `p_vaddr` is the link base
/// (page-aligned; the hypervisor is linked high, the guest-stub at 0) and
/// offsets are taken from it; the `p_vaddr .. p_vaddr + p_memsz` ranges
/// must not overlap. The flat image holds the file bytes; `mem_size` is the
/// highest end rounded up to 4 KiB, `entry_offset` is `e_entry - base`, and
/// `align` is the largest `p_align`, at least 4 KiB.
pub fn flatten_pie(data: &[u8]) -> Result<PieImage, ElfError> {
    let elf = parse(data)?;
    let base = elf.segments.iter().map(|s| s.vaddr).min().unwrap_or(0);
    if !base.is_multiple_of(MIN_LOAD_ALIGN) {
        return Err(ElfError::MisalignedBase { base });
    }
    let entry_offset = elf.entry.checked_sub(base).ok_or(ElfError::EntryBelowBase { entry: elf.entry, base })?;
    let ranges = elf.segments.iter().map(|s| (s.vaddr - base, s.memsz, s.index)).collect();
    let pieces: Vec<_> = elf.segments.iter().filter(|s| s.filesz() > 0).map(|s| (s.vaddr - base, s.data)).collect();
    let bytes = place(AddressKind::Virtual, ranges, &pieces)?;
    let end = elf.segments.iter().map(|s| (s.vaddr - base).saturating_add(s.memsz)).max().unwrap_or(0);
    if end > MAX_FLAT_SIZE {
        return Err(ElfError::TooLarge { size: end });
    }
    let load = LoadHints {
        align: elf.segments.iter().map(|s| s.align).fold(MIN_LOAD_ALIGN, u64::max),
        mem_size: end.next_multiple_of(MIN_LOAD_ALIGN),
        entry_offset,
    };
    load.check(bytes.len() as u64).map_err(ElfError::BadLoadHints)?;
    Ok(PieImage { link_base: base, bytes, load })
}

/// Builds small ELF files by hand for the unit tests.
#[cfg(test)]
pub(crate) mod testelf {
    /// One program header for [`build`].
    #[derive(Clone, Copy)]
    pub struct Seg<'a> {
        pub p_type: u32,
        pub vaddr: u64,
        pub paddr: u64,
        pub data: &'a [u8],
        pub memsz: u64,
        pub align: u64,
    }

    impl<'a> Seg<'a> {
        /// A PT_LOAD segment with vaddr == paddr and no bss.
        pub fn load(addr: u64, data: &'a [u8]) -> Self {
            Seg { p_type: 1, vaddr: addr, paddr: addr, data, memsz: data.len() as u64, align: 0x1000 }
        }
    }

    pub const EM_AARCH64: u16 = 183;
    pub const EM_X86_64: u16 = 62;
    pub const ET_EXEC: u16 = 2;
    pub const ET_DYN: u16 = 3;

    /// An ELF64 little-endian file: header, program headers, then each
    /// segment's bytes in order.
    pub fn build(machine: u16, e_type: u16, entry: u64, segs: &[Seg<'_>]) -> Vec<u8> {
        const EHSIZE: usize = 64;
        const PHENTSIZE: usize = 56;
        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF");
        out.extend_from_slice(&[2, 1, 1, 0]); // ELFCLASS64, LSB, EV_CURRENT, SYSV
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&e_type.to_le_bytes());
        out.extend_from_slice(&machine.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes()); // e_version
        out.extend_from_slice(&entry.to_le_bytes());
        out.extend_from_slice(&(EHSIZE as u64).to_le_bytes()); // e_phoff
        out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        out.extend_from_slice(&(EHSIZE as u16).to_le_bytes());
        out.extend_from_slice(&(PHENTSIZE as u16).to_le_bytes());
        out.extend_from_slice(&(segs.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shentsize
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        assert_eq!(out.len(), EHSIZE);
        let mut offset = (EHSIZE + PHENTSIZE * segs.len()) as u64;
        for s in segs {
            out.extend_from_slice(&s.p_type.to_le_bytes());
            out.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&s.vaddr.to_le_bytes());
            out.extend_from_slice(&s.paddr.to_le_bytes());
            out.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
            out.extend_from_slice(&s.memsz.to_le_bytes());
            out.extend_from_slice(&s.align.to_le_bytes());
            offset += s.data.len() as u64;
        }
        for s in segs {
            out.extend_from_slice(s.data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testelf::{build, Seg, EM_AARCH64, EM_X86_64, ET_DYN, ET_EXEC};
    use super::*;

    #[test]
    fn monitor_flattens_by_physical_address() {
        let text = [0x11u8; 0x30];
        let rodata = [0x22u8; 0x10];
        let data = [0x33u8; 0x8];
        let segs = [
            Seg::load(0, &text),
            // A gap of 0x10 bytes, then rodata.
            Seg::load(0x40, &rodata),
            // .data runs in RAM but is loaded from flash right after rodata.
            Seg {
                vaddr: 0x0e00_0000,
                paddr: 0x50,
                memsz: 0x100, // with .bss
                ..Seg::load(0, &data)
            },
            // .bss / stacks only: no flash bytes, and its paddr (which
            // overlaps the rest) is ignored.
            Seg { vaddr: 0x0e00_1000, paddr: 0x10, memsz: 0x4000, ..Seg::load(0, &[]) },
        ];
        let flat = flatten_monitor(&build(EM_AARCH64, ET_EXEC, 0, &segs)).unwrap();
        assert_eq!(flat.len(), 0x58);
        assert_eq!(&flat[..0x30], &text);
        assert!(flat[0x30..0x40].iter().all(|&b| b == 0));
        assert_eq!(&flat[0x40..0x50], &rodata);
        assert_eq!(&flat[0x50..], &data);
    }

    #[test]
    fn monitor_rejections() {
        let code = [1u8; 16];
        let at = |addr| build(EM_AARCH64, ET_EXEC, 0, &[Seg::load(addr, &code)]);
        assert_eq!(
            flatten_monitor(&at(0x1000)),
            Err(ElfError::BaseNotZero { by: AddressKind::Physical, lowest: 0x1000 })
        );
        let overlapping = build(EM_AARCH64, ET_EXEC, 0, &[Seg::load(0, &code), Seg::load(8, &code)]);
        assert_eq!(
            flatten_monitor(&overlapping),
            Err(ElfError::Overlap { by: AddressKind::Physical, first: 0, second: 1 })
        );
        assert_eq!(
            flatten_monitor(&build(EM_AARCH64, ET_EXEC, 0x40, &[Seg::load(0, &code)])),
            Err(ElfError::MonitorEntryNotZero { entry: 0x40 })
        );
        let bss_only = Seg { memsz: 0x100, ..Seg::load(0, &[]) };
        assert_eq!(flatten_monitor(&build(EM_AARCH64, ET_EXEC, 0, &[bss_only])), Err(ElfError::NoLoadableSegments));
    }

    #[test]
    fn pie_flattens_by_virtual_address_with_hints() {
        let text = [0xaau8; 0x1800];
        let data = [0xbbu8; 0x20];
        let segs = [
            Seg { align: 0x10000, ..Seg::load(0, &text) },
            // .data + .bss at 0x2000: memsz covers bss past the file bytes.
            Seg { memsz: 0x2100, ..Seg::load(0x2000, &data) },
            // A non-load header is ignored.
            Seg {
                p_type: 2, // PT_DYNAMIC
                ..Seg::load(0x2000, &data[..8])
            },
        ];
        let img = flatten_pie(&build(EM_AARCH64, ET_DYN, 0x100, &segs)).unwrap();
        assert_eq!(img.bytes.len(), 0x2020, "bss is not in the flat file");
        assert_eq!(&img.bytes[..0x1800], &text);
        assert!(img.bytes[0x1800..0x2000].iter().all(|&b| b == 0));
        assert_eq!(&img.bytes[0x2000..], &data);
        assert_eq!(
            img.load,
            LoadHints {
                align: 0x10000,
                mem_size: 0x5000, // 0x4100 rounded up
                entry_offset: 0x100,
            }
        );
    }

    #[test]
    fn pie_trailing_bss_only_segment_counts_in_mem_size() {
        let text = [0xaau8; 0x10];
        let segs = [Seg { align: 0, ..Seg::load(0, &text) }, Seg { memsz: 0x3000, ..Seg::load(0x1000, &[]) }];
        let img = flatten_pie(&build(EM_AARCH64, ET_EXEC, 0, &segs)).unwrap();
        assert_eq!(img.bytes, text);
        assert_eq!(img.load.mem_size, 0x4000);
        assert_eq!(img.load.align, 0x1000);
    }

    #[test]
    fn pie_linked_high_is_rebased() {
        let code = [7u8; 16];
        let base = 0xffff_ff80_0000_0000;
        let img = flatten_pie(&build(EM_AARCH64, ET_DYN, base + 8, &[Seg::load(base, &code)])).unwrap();
        assert_eq!(img.link_base, base);
        assert_eq!(img.bytes, code);
        assert_eq!(img.load.entry_offset, 8);
        assert_eq!(img.load.mem_size, 0x1000);
    }

    #[test]
    fn pie_rejections() {
        let code = [1u8; 16];
        assert_eq!(
            flatten_pie(&build(EM_AARCH64, ET_DYN, 0x4100, &[Seg::load(0x4100, &code)])),
            Err(ElfError::MisalignedBase { base: 0x4100 })
        );
        assert_eq!(
            flatten_pie(&build(EM_AARCH64, ET_DYN, 0x3000, &[Seg::load(0x4000, &code)])),
            Err(ElfError::EntryBelowBase { entry: 0x3000, base: 0x4000 })
        );
        // The second segment starts inside the first one's bss.
        let segs = [Seg { memsz: 0x100, ..Seg::load(0, &code) }, Seg::load(0x80, &code)];
        assert_eq!(
            flatten_pie(&build(EM_AARCH64, ET_DYN, 0, &segs)),
            Err(ElfError::Overlap { by: AddressKind::Virtual, first: 0, second: 1 })
        );
        assert!(matches!(
            flatten_pie(&build(EM_AARCH64, ET_DYN, 0x2000, &[Seg::load(0, &code)])),
            Err(ElfError::BadLoadHints(LoadHintError::EntryOutsideImage { .. }))
        ));
        let odd_align = Seg { align: 0x3000, ..Seg::load(0, &code) };
        assert!(matches!(
            flatten_pie(&build(EM_AARCH64, ET_DYN, 0, &[odd_align])),
            Err(ElfError::BadLoadHints(LoadHintError::AlignNotPowerOfTwo { align: 0x3000 }))
        ));
        let huge = Seg { memsz: MAX_FLAT_SIZE + 1, ..Seg::load(0, &code) };
        assert!(matches!(flatten_pie(&build(EM_AARCH64, ET_DYN, 0, &[huge])), Err(ElfError::TooLarge { .. })));
        let wraps = Seg { memsz: u64::MAX, ..Seg::load(0x10, &code) };
        assert_eq!(flatten_pie(&build(EM_AARCH64, ET_DYN, 0, &[wraps])), Err(ElfError::AddressOverflow { index: 0 }));
        let too_much_file = Seg { memsz: 4, ..Seg::load(0, &code) };
        assert_eq!(
            flatten_pie(&build(EM_AARCH64, ET_DYN, 0, &[too_much_file])),
            Err(ElfError::FileSizeExceedsMemSize { index: 0, filesz: 16, memsz: 4 })
        );
        assert_eq!(flatten_pie(&build(EM_AARCH64, ET_DYN, 0, &[])), Err(ElfError::NoLoadableSegments));
    }

    #[test]
    fn rejects_files_that_are_not_aarch64_le64_executables() {
        let code = [1u8; 16];
        let good = build(EM_AARCH64, ET_EXEC, 0, &[Seg::load(0, &code)]);
        assert!(flatten_monitor(&good).is_ok());

        let x86 = build(EM_X86_64, ET_EXEC, 0, &[Seg::load(0, &code)]);
        let err = flatten_pie(&x86).unwrap_err();
        assert_eq!(err, ElfError::WrongMachine { machine: 62 });
        assert!(err.to_string().contains("AArch64"));
        assert_eq!(flatten_monitor(&x86), Err(ElfError::WrongMachine { machine: 62 }));

        let reloc = build(EM_AARCH64, 1, 0, &[Seg::load(0, &code)]);
        assert_eq!(flatten_pie(&reloc), Err(ElfError::WrongType { e_type: 1 }));

        let mut elf32 = good.clone();
        elf32[4] = 1;
        assert_eq!(flatten_pie(&elf32), Err(ElfError::NotElf64 { class: 1 }));
        let mut big = good.clone();
        big[5] = 2;
        assert_eq!(flatten_monitor(&big), Err(ElfError::NotLittleEndian { data: 2 }));
        assert_eq!(flatten_pie(b"MZ\x90\0 not an elf"), Err(ElfError::NotElf));
        assert_eq!(flatten_pie(b""), Err(ElfError::NotElf));

        // Truncated inside the header, the program headers, and the data.
        for cut in [20, 64 + 10, good.len() - 1] {
            let err = flatten_monitor(&good[..cut]).unwrap_err();
            assert!(matches!(err, ElfError::Malformed(_) | ElfError::SegmentOutOfFile { .. }), "cut at {cut}: {err:?}");
        }
    }

    #[test]
    fn never_panics_on_truncated_or_flipped_elf() {
        let code = [7u8; 24];
        let segs = [Seg::load(0, &code), Seg { memsz: 0x200, ..Seg::load(0x100, &code) }];
        let good = build(EM_AARCH64, ET_DYN, 0, &segs);
        for cut in 0..good.len() {
            let _ = flatten_pie(&good[..cut]);
            let _ = flatten_monitor(&good[..cut]);
        }
        for at in 0..good.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = good.clone();
                b[at] ^= mask;
                let _ = flatten_pie(&b);
                let _ = flatten_monitor(&b);
            }
        }
    }
}
