//! The ECAM model: the address decoder for the published config window and
//! the config space behind it, driven by raw guest loads and stores.

use arbitrary::Unstructured;
use platform::pci::ecam::{BUS_SHIFT, FUNCTION_SIZE};
use platform::pci::{ecam_decode, EcamWindow, CONFIG_SPACE_SIZE};

use crate::pci::{self, check_fixed_fields, check_write, snapshot};
use crate::{below, take};

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    window(&mut u);

    let mut space = pci::space(&mut u);
    check_fixed_fields(&space);
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        let bdf = pci::bdf(&mut u);
        let size = pci::size(&mut u);
        // Header offsets mostly; any 16-bit offset sometimes.
        let offset: u16 = if take(&mut u) { below(&mut u, 0x44) as u16 } else { take(&mut u) };
        match take::<u8>(&mut u) % 4 {
            0 => {
                let value = space.read(bdf, offset, size);
                assert_eq!(value & !size.value_mask(), 0, "read wider than {size}");
                let absent = space.device(usize::from(bdf.device())).is_none() || bdf.bus() != 0 || bdf.function() != 0;
                if absent || offset >= CONFIG_SPACE_SIZE || !size.is_aligned(offset) {
                    assert_eq!(value, size.value_mask(), "all-ones for nothing there");
                } else if offset >= 0x40 {
                    assert_eq!(value, 0, "past the header");
                }
            }
            3 => {
                let index = below(&mut u, pci::FUNCTIONS + 1);
                let _ = space.set_irq_pending(index, take(&mut u));
            }
            _ => {
                let before = snapshot(&space);
                space.write(bdf, offset, size, take(&mut u));
                check_write(&space, &before, bdf, offset, size);
            }
        }
        check_fixed_fields(&space);
    }
}

/// Decode and address are inverse, and nothing outside the window decodes.
fn window(u: &mut Unstructured<'_>) {
    let base: u64 = take(u);
    let (start, end): (u8, u8) = (take(u), take(u));
    let addr = if take(u) { base.wrapping_add(take::<u32>(u).into()) } else { take(u) };
    let Some(window) = EcamWindow::new(base, start, end) else {
        assert!(start > end || base.checked_add((u64::from(end) - u64::from(start) + 1) << BUS_SHIFT).is_none());
        return;
    };
    let size = window.size();
    assert_eq!(size, (u64::from(end) - u64::from(start) + 1) << BUS_SHIFT);
    let inside = addr >= base && addr - base < size;
    match window.decode(addr) {
        Some((bdf, offset)) => {
            assert!(inside, "{addr:#x} decoded outside {window:?}");
            assert!(u64::from(offset) < FUNCTION_SIZE);
            assert!((start..=end).contains(&bdf.bus()));
            assert_eq!(window.address(bdf, offset), Some(addr));
        }
        None => assert!(!inside, "{addr:#x} inside {window:?} did not decode"),
    }
    if end == u8::MAX {
        assert_eq!(ecam_decode(base, start, addr), window.decode(addr));
    }
    let bdf = pci::bdf(u);
    let offset: u16 = take(u);
    if let Some(addr) = window.address(bdf, offset) {
        assert_eq!(window.decode(addr), Some((bdf, offset)));
    } else {
        assert!(offset >= CONFIG_SPACE_SIZE || !(start..=end).contains(&bdf.bus()));
    }
}
