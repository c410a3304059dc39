//! The arm64 Linux `Image` header and the placement of kernel, initrd and
//! DTB in guest RAM (`platform::linux`): the kernel and initrd come from
//! fw_cfg, i.e. from whoever started QEMU.

use arbitrary::Unstructured;
use platform::board::MemRegion;
use platform::linux::{
    place, ImageHeader, LinuxError, DTB_MAX, FLAG_BIG_ENDIAN, HEADER_SIZE, IMAGE_MAGIC, KERNEL_ALIGN,
};

use crate::take;

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags: u8 = take(&mut u);
    let mut header: Vec<u8> = u.bytes(HEADER_SIZE.min(u.len())).unwrap_or_default().to_vec();
    if flags & 1 == 0 && header.len() >= HEADER_SIZE {
        // Past the magic most of the time: the checks behind it matter.
        header[56..60].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
    }
    // Sizes near the header's own image_size, or anything.
    let file_size: u64 = match flags >> 1 & 3 {
        0 => take::<u32>(&mut u).into(),
        1 => le_u64(&header, 16).wrapping_sub(take::<u16>(&mut u).into()),
        _ => take(&mut u),
    };
    let parsed = ImageHeader::parse(&header, file_size);
    let Ok(h) = parsed else {
        if let Err(LinuxError::Truncated { size }) = parsed {
            assert!(header.len() < HEADER_SIZE || file_size < HEADER_SIZE as u64);
            assert!(size < HEADER_SIZE as u64);
        }
        let _ = parsed.map_err(|e| e.to_string());
        return;
    };
    assert!(header.len() >= HEADER_SIZE && file_size >= HEADER_SIZE as u64);
    assert_eq!(le_u64(&header, 56) as u32, IMAGE_MAGIC);
    assert_eq!(h.flags & FLAG_BIG_ENDIAN, 0);
    assert!(h.text_offset < KERNEL_ALIGN && h.text_offset % 4096 == 0, "{h:?}");
    assert!(h.image_size >= file_size, "{h:?} for a {file_size:#x}-byte file");

    // Guest RAM as the board gives it: never past the top of the address space.
    let base: u64 = if flags & 8 == 0 { u64::from(take::<u32>(&mut u)) << 12 } else { take(&mut u) };
    let size: u64 = if flags & 16 == 0 { u64::from(take::<u32>(&mut u)) << 8 } else { take(&mut u) };
    let ram = MemRegion::new(base, size.min(u64::MAX - base));
    let initrd: Option<u64> = match flags >> 5 {
        0 => None,
        1..=5 => Some(take::<u32>(&mut u).into()),
        _ => Some(take(&mut u)),
    };
    let Ok(p) = place(ram, &h, initrd) else {
        return;
    };
    let within = |r: &MemRegion| r.base >= ram.base && r.base.checked_add(r.size).is_some_and(|end| end <= ram.end());
    assert_eq!(p.dtb, MemRegion::new(ram.base, DTB_MAX));
    assert!(within(&p.dtb), "DTB {:?} outside RAM {ram:?}", p.dtb);
    assert!(within(&p.kernel), "kernel {:?} outside RAM {ram:?}", p.kernel);
    assert_eq!((p.kernel.base - h.text_offset) % KERNEL_ALIGN, 0, "kernel base");
    assert_eq!(p.kernel.size, h.image_size);
    assert!(p.kernel.base >= p.dtb.end(), "kernel over the DTB");
    match (initrd, p.initrd) {
        (None, None) => {}
        (Some(size), Some(r)) => {
            assert_eq!(r.size, size);
            assert!(within(&r), "initrd {r:?} outside RAM {ram:?}");
            assert_eq!(r.base % 4096, 0);
            assert!(r.base >= p.kernel.end(), "initrd over the kernel");
        }
        other => panic!("initrd asked/placed: {other:?}"),
    }
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
}
