//! Property tests of the arm64 Linux boot protocol checks
//! (`platform::linux`): the kernel `Image` and the initrd come from fw_cfg,
//! i.e. from whoever started QEMU.
//!
//! Bounded: each property runs 256 cases (`common::config`; override with
//! `PROPTEST_CASES`; `PROPTEST_RNG_SEED` reproduces a run).
//!
//! Properties:
//! - `ImageHeader::parse` accepts exactly the headers a reading of
//!   Documentation/arch/arm64/booting.rst (below, `reference_parse`)
//!   accepts, with the same reason for the first rule broken, and never
//!   panics on arbitrary bytes;
//! - `place` puts the DTB at the start of RAM, the kernel at a 2 MiB
//!   boundary plus `text_offset`, the initrd page-aligned after the
//!   kernel's `image_size`, all inside RAM and without overlap; and refuses
//!   exactly when that layout does not fit (`reference_end`).

use platform::board::MemRegion;
use platform::linux::{
    place, ImageHeader, LinuxError, DTB_MAX, FLAG_BIG_ENDIAN, FLAG_PLACE_ANYWHERE, HEADER_SIZE, IMAGE_MAGIC,
    KERNEL_ALIGN,
};
use proptest::prelude::*;

mod common;
use common::config;

const PAGE: u64 = 4096;

fn header_bytes(text_offset: u64, image_size: u64, flags: u64, magic: u32) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_SIZE];
    h[8..16].copy_from_slice(&text_offset.to_le_bytes());
    h[16..24].copy_from_slice(&image_size.to_le_bytes());
    h[24..32].copy_from_slice(&flags.to_le_bytes());
    h[56..60].copy_from_slice(&magic.to_le_bytes());
    h
}

/// The header rules as booting.rst states them, in the order the
/// hypervisor reports them.
fn reference_parse(h: &[u8], file_size: u64) -> Result<ImageHeader, LinuxError> {
    if h.len() < HEADER_SIZE || file_size < HEADER_SIZE as u64 {
        return Err(LinuxError::Truncated { size: file_size.min(h.len() as u64) });
    }
    let le = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
    let magic = le(56) as u32;
    if magic != IMAGE_MAGIC {
        return Err(LinuxError::BadMagic { found: magic });
    }
    let flags = le(24);
    // image_size 0: a kernel before 3.17, with text_offset 0x80000 whatever
    // the field says, and an unknown .bss (twice the file is assumed).
    let (text_offset, image_size) = match le(16) {
        0 => (0x8_0000, file_size.saturating_mul(2)),
        size => (le(8), size),
    };
    if flags & FLAG_BIG_ENDIAN != 0 {
        return Err(LinuxError::BigEndian);
    }
    if text_offset >= KERNEL_ALIGN || text_offset % PAGE != 0 {
        return Err(LinuxError::TextOffset { offset: text_offset });
    }
    if file_size > image_size {
        return Err(LinuxError::ImageSize { file: file_size, image_size });
    }
    Ok(ImageHeader { text_offset, image_size, flags })
}

/// One past the last byte the layout needs (initrd or kernel), or `None`
/// if computing it overflows.
fn reference_end(ram: MemRegion, h: &ImageHeader, initrd: Option<u64>) -> Option<u128> {
    let base = (u128::from(ram.base) + u128::from(DTB_MAX)).next_multiple_of(u128::from(KERNEL_ALIGN));
    let kernel_end = base + u128::from(h.text_offset) + u128::from(h.image_size);
    let end = match initrd {
        Some(size) => kernel_end.next_multiple_of(u128::from(PAGE)) + u128::from(size),
        None => kernel_end,
    };
    (end <= u128::from(u64::MAX)).then_some(end)
}

fn text_offset_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..512).prop_map(|p| p * PAGE),
        1 => Just(0x8_0000),
        1 => 0u64..KERNEL_ALIGN,
        1 => any::<u64>(),
    ]
}

fn image_size_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0x10_0000u64..0x400_0000,
        1 => Just(0),
        1 => any::<u64>(),
    ]
}

fn flags_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..4).prop_map(|page| page << 1 | FLAG_PLACE_ANYWHERE),
        1 => 0u64..16,
        1 => any::<u64>(),
    ]
}

fn magic_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![6 => Just(IMAGE_MAGIC), 1 => any::<u32>()]
}

/// A kernel file about as large as its header says, or any size.
fn file_size_strategy() -> impl Strategy<Value = (u64, u64)> {
    image_size_strategy().prop_flat_map(|image_size| {
        let near = image_size.saturating_sub(0x20_0000)..=image_size.saturating_add(0x1000);
        (Just(image_size), prop_oneof![4 => near, 1 => 0u64..0x100, 1 => any::<u64>()])
    })
}

/// Guest RAM as `Board` gives it: never past the top of the address space.
fn ram_strategy() -> impl Strategy<Value = MemRegion> {
    prop_oneof![
        4 => (0x4000_0000u64..0x4100_0000, 0u64..0x1_0000_0000),
        1 => (any::<u64>(), any::<u64>()),
    ]
    .prop_map(|(base, size)| MemRegion::new(base, size.min(u64::MAX - base)))
}

fn initrd_strategy() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        1 => Just(None),
        3 => (0u64..0x400_0000).prop_map(Some),
        1 => any::<u64>().prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_follows_booting_rst(
        text_offset in text_offset_strategy(),
        (image_size, file_size) in file_size_strategy(),
        flags in flags_strategy(),
        magic in magic_strategy(),
        cut in prop_oneof![4 => Just(HEADER_SIZE), 1 => 0..HEADER_SIZE],
    ) {
        let h = header_bytes(text_offset, image_size, flags, magic);
        let h = &h[..cut];
        let got = ImageHeader::parse(h, file_size);
        prop_assert_eq!(got, reference_parse(h, file_size));
        if let Err(e) = got {
            let _ = e.to_string();
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..96),
        file_size in any::<u64>(),
    ) {
        prop_assert_eq!(ImageHeader::parse(&bytes, file_size), reference_parse(&bytes, file_size));
    }

    #[test]
    fn placements_fit_ram_without_overlap(
        text_offset in (0u64..512).prop_map(|p| p * PAGE),
        (image_size, file_size) in file_size_strategy(),
        ram in ram_strategy(),
        initrd in initrd_strategy(),
    ) {
        let bytes = header_bytes(text_offset, image_size, FLAG_PLACE_ANYWHERE, IMAGE_MAGIC);
        let Ok(h) = ImageHeader::parse(&bytes, file_size) else {
            return Ok(());
        };
        let fits = reference_end(ram, &h, initrd).is_some_and(|end| end <= u128::from(ram.end()));
        let placed = place(ram, &h, initrd);
        prop_assert_eq!(placed.is_ok(), fits, "{:?} {:?} {:?}: {:?}", ram, h, initrd, placed);
        let Ok(p) = placed else {
            let refused_for_size = matches!(
                placed,
                Err(LinuxError::KernelTooLarge { have, .. } | LinuxError::InitrdTooLarge { have, .. }) if have == ram.size
            );
            prop_assert!(refused_for_size, "{:?}", placed);
            return Ok(());
        };
        let inside = |r: &MemRegion| r.base >= ram.base && r.end() <= ram.end() && r.base.checked_add(r.size).is_some();
        prop_assert_eq!(p.dtb, MemRegion::new(ram.base, DTB_MAX));
        prop_assert!(inside(&p.dtb) && inside(&p.kernel));
        prop_assert_eq!((p.kernel.base - h.text_offset) % KERNEL_ALIGN, 0);
        prop_assert_eq!(p.kernel.size, h.image_size);
        prop_assert!(!p.kernel.overlaps(&p.dtb));
        prop_assert_eq!(p.initrd.map(|r| r.size), initrd);
        if let Some(r) = p.initrd {
            prop_assert!(inside(&r));
            prop_assert_eq!(r.base % PAGE, 0);
            prop_assert!(r.base >= p.kernel.end());
        }
    }
}
