//! What the ECAM and DEN0115 targets share: a config space built from the
//! input, and the check that guest writes change only writable bits.

use arbitrary::Unstructured;
use platform::pci::config::HEADER_DWORDS;
use platform::pci::{AccessSize, Bdf, ClassCode, ConfigSpace, Intx, ShimDevice};

use crate::{below, take};

pub const FUNCTIONS: usize = 4;
pub type Space = ConfigSpace<FUNCTIONS>;

/// A config space of 0..=4 functions with windows and interrupts from the
/// input (a description `ShimDevice::new` refuses is replaced by the RTC's).
pub fn space(u: &mut Unstructured<'_>) -> Space {
    let mut space = Space::new();
    for _ in 0..below(u, FUNCTIONS + 1) {
        let part: u16 = take(u);
        let class = if take(u) { ClassCode::RTC } else { ClassCode::for_primecell(part) };
        let size = 1u64 << below(u, 64);
        let base = if take(u) { take::<u64>(u) & !(size - 1) } else { take(u) };
        let irq = take::<bool>(u).then(|| Intx { pin: take::<u8>(u) % 6, line: take(u) });
        let device = ShimDevice::new(part, class, base, size, irq)
            .unwrap_or_else(|_| ShimDevice::new(0x31, ClassCode::RTC, 0x901_0000, 0x1000, None).unwrap());
        space.add(device).expect("at most FUNCTIONS devices");
    }
    space
}

/// A function address: mostly one that exists, or a neighbour of one.
pub fn bdf(u: &mut Unstructured<'_>) -> Bdf {
    match take::<u8>(u) % 4 {
        0 => Bdf::from_routing_id(take(u)),
        _ => Bdf::new(0, below(u, FUNCTIONS + 1) as u8, 0).unwrap(),
    }
}

pub fn size(u: &mut Unstructured<'_>) -> AccessSize {
    [AccessSize::Byte, AccessSize::Half, AccessSize::Word][below(u, 3)]
}

/// Every header dword of every function, as the guest reads them.
pub fn snapshot(space: &Space) -> Vec<[u32; HEADER_DWORDS]> {
    (0..space.len())
        .map(|i| {
            let bdf = space.bdf(i).unwrap();
            std::array::from_fn(|d| space.read(bdf, (d * 4) as u16, AccessSize::Word))
        })
        .collect()
}

/// The promises of the config model about each function, whatever was
/// written: IDs, class, header type, interrupt pin and BAR type are fixed,
/// BAR0 keeps the window's alignment, and only BAR0/BAR1 decode.
pub fn check_fixed_fields(space: &Space) {
    for (i, header) in snapshot(space).iter().enumerate() {
        let device = space.device(i).unwrap();
        let (base, size) = device.window();
        assert_eq!(header[0], 0x13b5 | u32::from(device.device_id()) << 16, "IDs of {i}");
        assert_eq!(header[1] >> 16 & !(1 << 3), 0, "status beyond the interrupt bit");
        if device.irq().is_none() {
            assert_eq!(header[1] >> 16, 0, "interrupt status without a pin");
        }
        assert_eq!(header[2], device.class().register(), "class and revision");
        assert_eq!(header[3] >> 16, 0, "header type and BIST");
        assert_eq!(header[4] & 0xf, 0b100, "BAR0 type: 64-bit memory");
        for (d, &value) in header.iter().enumerate().take(15).skip(6) {
            assert_eq!(value, 0, "dword {d} of function {i}");
        }
        assert_eq!(header[15] >> 8 & 0xff, u32::from(device.interrupt_pin()));
        assert_eq!(header[15] >> 16, 0);
        let bar = space.bar0(i).unwrap();
        assert_eq!((bar.device_base, bar.size), (base, size));
        assert_eq!(bar.address & (size - 1), 0, "BAR0 below its size");
        assert_eq!(bar.address as u32 | 0b100, header[4]);
        assert_eq!((bar.address >> 32) as u32, header[5]);
        if let Some((address, len)) = bar.decoded() {
            assert_eq!((address, len), (bar.address, size));
        }
        let command = space.command(i).unwrap();
        assert_eq!(u32::from(command), header[1] & 0xffff);
        assert_eq!(command & !(1 << 1 | 1 << 10), 0, "command beyond MSE and INTx disable");
        let asserted = space.intx_asserted(i).unwrap();
        assert_eq!(asserted, header[1] >> 16 != 0 && command & (1 << 10) == 0);
    }
}

/// After a write of `size` at `offset` of `bdf`: nothing changed but the
/// writable bits of the byte lanes written, and only in that function.
pub fn check_write(space: &Space, before: &[[u32; HEADER_DWORDS]], bdf: Bdf, offset: u16, size: AccessSize) {
    let after = snapshot(space);
    for (i, (old, new)) in before.iter().zip(after.iter()).enumerate() {
        for (d, (&o, &n)) in old.iter().zip(new.iter()).enumerate() {
            let mut allowed = 0;
            if space.bdf(i) == Some(bdf) && usize::from(offset / 4) == d && size.is_aligned(offset) && offset < 4096 {
                let lanes = size.value_mask() << ((offset & 3) * 8);
                allowed = space.device(i).unwrap().write_mask(offset) & lanes;
            }
            assert_eq!(
                (o ^ n) & !allowed,
                0,
                "write of {size} at {offset:#x} to {bdf} changed function {i} dword {d}: {o:#010x} -> {n:#010x}"
            );
        }
    }
}
