//! The arm64 Linux boot protocol, as far as a loader must know it: the
//! `Image` header, and where the kernel, its initrd and its DTB go in
//! guest RAM (Documentation/arch/arm64/booting.rst).
//!
//! Pure logic: the hypervisor gives it the first bytes of the image and the
//! sizes, and gets back a placement or a reason to refuse the kernel.

use crate::board::MemRegion;

/// The header's size, and where its fields are.
pub const HEADER_SIZE: usize = 64;
const TEXT_OFFSET: usize = 8;
const IMAGE_SIZE: usize = 16;
const FLAGS: usize = 24;
const MAGIC: usize = 56;
/// "ARM\x64", little-endian.
pub const IMAGE_MAGIC: u32 = 0x644d_5241;
/// `flags` bit 0: the kernel is big-endian.
pub const FLAG_BIG_ENDIAN: u64 = 1 << 0;
/// `flags` bits 2:1: the kernel's page size (0 = unspecified).
const FLAG_PAGE_SIZE_SHIFT: u32 = 1;
const FLAG_PAGE_SIZE_MASK: u64 = 0b11;
/// `flags` bit 3: the image may sit anywhere in RAM (else as close to its
/// start as the 2 MiB alignment allows).
pub const FLAG_PLACE_ANYWHERE: u64 = 1 << 3;
/// Where the kernel's base must be aligned.
pub const KERNEL_ALIGN: u64 = 2 * 1024 * 1024;
/// The largest DTB the protocol allows.
pub const DTB_MAX: u64 = 2 * 1024 * 1024;
/// `text_offset` of kernels older than 3.17, whose `image_size` is 0.
const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
const PAGE: u64 = 4096;

/// Why a kernel cannot be booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinuxError {
    /// Shorter than the header.
    Truncated { size: u64 },
    /// No "ARM\x64" at offset 0x38.
    BadMagic { found: u32 },
    /// A big-endian kernel (our guests are little-endian).
    BigEndian,
    /// A page size our stage 2 and the virtual CPU cannot promise.
    PageSize { code: u64 },
    /// `text_offset` not below the 2 MiB alignment, or not 4 KiB aligned.
    TextOffset { offset: u64 },
    /// The image's file is larger than the memory it says it needs.
    ImageSize { file: u64, image_size: u64 },
    /// The kernel (its `image_size`, after the DTB and the 2 MiB alignment)
    /// does not fit in guest RAM.
    KernelTooLarge { image_size: u64, need: u64, have: u64 },
    /// The initrd does not fit in the guest RAM left after the kernel.
    InitrdTooLarge { size: u64, room: u64, have: u64 },
}

impl core::fmt::Display for LinuxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated { size } => write!(f, "kernel is {size} bytes, shorter than the {HEADER_SIZE}-byte arm64 Image header"),
            Self::BadMagic { found } => write!(f, "kernel has no arm64 Image magic \"ARM\\x64\" at 0x38 (found {found:#010x}); is it compressed?"),
            Self::BigEndian => write!(f, "kernel is big-endian; only little-endian guests are supported"),
            Self::PageSize { code } => write!(f, "kernel header asks for page-size code {code}, which is not 4K, 16K, 64K or unspecified"),
            Self::TextOffset { offset } => write!(f, "kernel text_offset {offset:#x} is not a 4 KiB multiple below 2 MiB"),
            Self::ImageSize { file, image_size } => {
                write!(f, "kernel file is {file:#x} bytes but its header says image_size {image_size:#x}")
            }
            Self::KernelTooLarge { image_size, need, have } => write!(
                f,
                "kernel is too large for guest RAM: its image_size {image_size:#x} needs {need:#x} bytes with the DTB, guest RAM has {have:#x}"
            ),
            Self::InitrdTooLarge { size, room, have } => write!(
                f,
                "initrd is too large for guest RAM: it is {size:#x} bytes, {room:#x} are left after the kernel (guest RAM has {have:#x})"
            ),
        }
    }
}

/// The fields of an arm64 `Image` header a loader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    pub text_offset: u64,
    /// Memory the kernel needs from its base, `.bss` included.
    pub image_size: u64,
    pub flags: u64,
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at.saturating_add(8)) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

impl ImageHeader {
    /// Checks and decodes the header at the start of a kernel `file_size`
    /// bytes long.
    pub fn parse(header: &[u8], file_size: u64) -> Result<Self, LinuxError> {
        if header.len() < HEADER_SIZE || file_size < HEADER_SIZE as u64 {
            return Err(LinuxError::Truncated { size: file_size.min(header.len() as u64) });
        }
        let magic = le_u64(header, MAGIC) as u32;
        if magic != IMAGE_MAGIC {
            return Err(LinuxError::BadMagic { found: magic });
        }
        let flags = le_u64(header, FLAGS);
        let mut text_offset = le_u64(header, TEXT_OFFSET);
        let mut image_size = le_u64(header, IMAGE_SIZE);
        if image_size == 0 {
            // Before 3.17: no image_size; the documented defaults, and room
            // for a .bss we cannot see.
            text_offset = LEGACY_TEXT_OFFSET;
            image_size = file_size.saturating_mul(2);
        }
        if flags & FLAG_BIG_ENDIAN != 0 {
            return Err(LinuxError::BigEndian);
        }
        let page_code = (flags >> FLAG_PAGE_SIZE_SHIFT) & FLAG_PAGE_SIZE_MASK;
        // 0 unspecified, 1 4K, 2 16K, 3 64K: all fine at stage 2, which
        // uses 4K pages whatever the guest does.
        if page_code > 3 {
            return Err(LinuxError::PageSize { code: page_code });
        }
        if text_offset >= KERNEL_ALIGN || !text_offset.is_multiple_of(PAGE) {
            return Err(LinuxError::TextOffset { offset: text_offset });
        }
        if file_size > image_size {
            return Err(LinuxError::ImageSize { file: file_size, image_size });
        }
        Ok(Self { text_offset, image_size, flags })
    }
}

/// Where everything goes, as guest-physical ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub dtb: MemRegion,
    /// The kernel: its first byte is the entry point.
    pub kernel: MemRegion,
    pub initrd: Option<MemRegion>,
}

/// Plans guest RAM `ram`: the DTB at its start (the protocol wants it
/// 8-byte aligned and at most 2 MiB), the kernel at the next 2 MiB boundary
/// plus `text_offset`, the initrd page-aligned after the kernel's
/// `image_size`.
pub fn place(ram: MemRegion, header: &ImageHeader, initrd_size: Option<u64>) -> Result<Placement, LinuxError> {
    let kernel_too_large =
        |need: u64| LinuxError::KernelTooLarge { image_size: header.image_size, need, have: ram.size };
    let dtb = MemRegion::new(ram.base, DTB_MAX);
    let base = ram
        .base
        .checked_add(DTB_MAX)
        .and_then(|b| b.checked_next_multiple_of(KERNEL_ALIGN))
        .ok_or(kernel_too_large(u64::MAX))?;
    let kernel_start = base.checked_add(header.text_offset).ok_or(kernel_too_large(u64::MAX))?;
    let kernel = MemRegion::new(kernel_start, header.image_size);
    let kernel_end = kernel_start.checked_add(header.image_size).ok_or(kernel_too_large(u64::MAX))?;
    if kernel_end > ram.end() {
        return Err(kernel_too_large(kernel_end.saturating_sub(ram.base)));
    }
    let initrd = match initrd_size {
        Some(size) => {
            let start = kernel_end.checked_next_multiple_of(PAGE).unwrap_or(u64::MAX);
            let room = ram.end().saturating_sub(start);
            if size > room {
                return Err(LinuxError::InitrdTooLarge { size, room, have: ram.size });
            }
            Some(MemRegion::new(start, size))
        }
        None => None,
    };
    Ok(Placement { dtb, kernel, initrd })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[TEXT_OFFSET..TEXT_OFFSET + 8].copy_from_slice(&text_offset.to_le_bytes());
        h[IMAGE_SIZE..IMAGE_SIZE + 8].copy_from_slice(&image_size.to_le_bytes());
        h[FLAGS..FLAGS + 8].copy_from_slice(&flags.to_le_bytes());
        h[MAGIC..MAGIC + 4].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        h
    }

    const RAM: MemRegion = MemRegion::new(0x4020_0000, 0x3ec0_0000);

    #[test]
    fn debian_like_header_is_placed_at_a_2mib_boundary() {
        let h = ImageHeader::parse(&header(0, 0x246_0000, 0xa), 0x200_0000).unwrap();
        assert_eq!(h, ImageHeader { text_offset: 0, image_size: 0x246_0000, flags: 0xa });
        let p = place(RAM, &h, Some(0x80_0000)).unwrap();
        assert_eq!(p.dtb, MemRegion::new(0x4020_0000, DTB_MAX));
        assert_eq!(p.kernel.base, 0x4040_0000);
        assert_eq!(p.kernel.base % KERNEL_ALIGN, 0);
        let initrd = p.initrd.unwrap();
        assert_eq!(initrd.base, 0x4040_0000 + 0x246_0000);
        assert_eq!(initrd.size, 0x80_0000);
    }

    #[test]
    fn text_offset_is_added_to_the_aligned_base() {
        let h = ImageHeader::parse(&header(0x8_0000, 0x100_0000, 0), 0x80_0000).unwrap();
        assert_eq!(place(RAM, &h, None).unwrap().kernel.base, 0x4048_0000);
    }

    #[test]
    fn legacy_header_gets_the_documented_defaults() {
        let h = ImageHeader::parse(&header(0x1234, 0, 0), 0x10_0000).unwrap();
        assert_eq!(h.text_offset, LEGACY_TEXT_OFFSET);
        assert_eq!(h.image_size, 0x20_0000);
    }

    #[test]
    fn bad_kernels_are_refused_with_the_reason() {
        let mut bad = header(0, 0x100_0000, 0);
        bad[MAGIC] = 0;
        assert!(matches!(ImageHeader::parse(&bad, 0x100_0000), Err(LinuxError::BadMagic { .. })));
        assert_eq!(ImageHeader::parse(&header(0, 0x100_0000, 0)[..10], 10), Err(LinuxError::Truncated { size: 10 }));
        assert_eq!(ImageHeader::parse(&header(0, 0x100_0000, FLAG_BIG_ENDIAN), 0x1000), Err(LinuxError::BigEndian));
        assert_eq!(
            ImageHeader::parse(&header(0x20_0000, 0x100_0000, 0), 0x1000),
            Err(LinuxError::TextOffset { offset: 0x20_0000 })
        );
        assert_eq!(
            ImageHeader::parse(&header(0x123, 0x100_0000, 0), 0x1000),
            Err(LinuxError::TextOffset { offset: 0x123 })
        );
        assert_eq!(
            ImageHeader::parse(&header(0, 0x1000, 0), 0x2000),
            Err(LinuxError::ImageSize { file: 0x2000, image_size: 0x1000 })
        );
        let gz = [0x1f, 0x8b, 0x08, 0x00];
        let mut compressed = [0u8; HEADER_SIZE];
        compressed[..4].copy_from_slice(&gz);
        let e = ImageHeader::parse(&compressed, 0x100_0000).unwrap_err();
        assert!(std::format!("{e}").contains("compressed"), "{e}");
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        let small = MemRegion::new(0x4020_0000, 0x40_0000);
        let h = ImageHeader::parse(&header(0, 0x100_0000, 0), 0x1000).unwrap();
        // DTB_MAX, then the kernel at the next 2 MiB boundary.
        assert_eq!(
            place(small, &h, None),
            Err(LinuxError::KernelTooLarge { image_size: 0x100_0000, need: 0x120_0000, have: 0x40_0000 })
        );
        let h = ImageHeader::parse(&header(0, 0x10_0000, 0), 0x1000).unwrap();
        let room = RAM.end() - (0x4040_0000 + 0x10_0000);
        assert_eq!(
            place(RAM, &h, Some(RAM.size)),
            Err(LinuxError::InitrdTooLarge { size: RAM.size, room, have: RAM.size }),
            "an initrd as large as RAM cannot fit"
        );
        assert!(matches!(place(RAM, &h, Some(u64::MAX)), Err(LinuxError::InitrdTooLarge { .. })), "no overflow");
        assert!(place(RAM, &h, Some(room)).is_ok(), "an initrd that exactly fills the rest");
        assert!(place(RAM, &h, Some(room + 1)).is_err());
        let messages = [
            place(small, &ImageHeader { text_offset: 0, image_size: u64::MAX, flags: 0 }, None).unwrap_err(),
            place(RAM, &h, Some(RAM.size)).unwrap_err(),
        ];
        assert!(std::format!("{}", messages[0]).starts_with("kernel is too large for guest RAM"), "{}", messages[0]);
        assert!(std::format!("{}", messages[1]).starts_with("initrd is too large for guest RAM"), "{}", messages[1]);
    }
}
