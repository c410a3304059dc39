//! The guest's PCI host bridge: an ECAM window in its IPA space, emulated
//! by forwarding each config access to the secure monitor with the Arm
//! DEN0115 calls (seed: exposing memory-mapped devices as PCI functions).
//! On QEMU a lower EL's access to an unbacked address is not routed to EL3
//! (DESIGN.md), so EL2 takes the stage-2 fault and makes the call; the
//! monitor keeps the one config-space model.
//!
//! EL2's own enumeration uses the same calls: it finds the functions'
//! BAR0 windows, which stage 2 passes through so the guest's driver reaches
//! the real device registers.

use alloc::vec::Vec;
use platform::mmio::{MmioDevice, MmioFault};
use platform::pci::config::{bar, offset};
use platform::pci::den0115::{Sbdf, PCI_READ, PCI_WRITE};
use platform::pci::{Bdf, DEVICES_PER_BUS};
use smccc::smc32;

/// Buses the window covers: 0 (the functions) and 1 (empty).
pub const BUSES: u64 = 2;
pub const BUS_SIZE: u64 = 1 << 20;
/// DEN0115's success status.
const SUCCESS: u32 = 0;

fn sbdf(bdf: Bdf) -> u32 {
    Sbdf { segment: 0, bdf }.to_u32()
}

/// A config read through the monitor; all-ones (as an absent function
/// reads) if the call refuses it.
fn read(bdf: Bdf, reg: u16, size: u8) -> u32 {
    let reply = smc32(PCI_READ, [sbdf(bdf), reg.into(), size.into(), 0, 0, 0, 0]);
    if reply[0] == SUCCESS {
        reply[1]
    } else {
        u32::MAX >> (32 - 8 * u32::from(size))
    }
}

fn write(bdf: Bdf, reg: u16, size: u8, value: u32) {
    // A refused write is ignored, as PCI drops an unsupported write.
    let _ = smc32(PCI_WRITE, [sbdf(bdf), reg.into(), size.into(), value, 0, 0, 0]);
}

/// Splits a window offset into function and register.
fn decode(offset: u64) -> Option<(Bdf, u16)> {
    let bus = u8::try_from(offset >> 20).ok()?;
    Bdf::new(bus, ((offset >> 15) & 0x1f) as u8, ((offset >> 12) & 0x7) as u8).map(|bdf| (bdf, (offset & 0xfff) as u16))
}

/// The ECAM window as an emulated device.
pub struct Ecam;

impl MmioDevice for Ecam {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
        let mask = if size >= 8 { u64::MAX } else { (1u64 << (8 * size)) - 1 };
        match decode(offset) {
            // Config space has no 8-byte accesses: they read all-ones.
            Some((bdf, reg)) if size <= 4 => Ok(u64::from(read(bdf, reg, size)) & mask),
            _ => Ok(mask),
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        if let (Some((bdf, reg)), true) = (decode(offset), size <= 4) {
            write(bdf, reg, size, value as u32);
        }
        Ok(())
    }

    /// A misaligned config access is forwarded too: the monitor refuses it
    /// (`INVALID_PARAMETER`), so it reads all-ones and a write is dropped,
    /// as PCI answers an unsupported request.
    fn accepts_misaligned(&self) -> bool {
        true
    }
}

/// The functions on bus 0 and their BAR0 windows (base, size), found with
/// the same calls the guest's accesses become.
/// A function's legacy interrupt as the host bridge routes it: its device
/// number, its pin (1 = INTA) and the GIC INTID the monitor wrote into its
/// interrupt line register (the device's SPI, from the DTB).
#[derive(Clone, Copy, Debug)]
pub struct Intx {
    pub device: u8,
    pub pin: u8,
    pub intid: u32,
}

/// The shim functions' legacy interrupts (those with a pin and an SPI).
pub fn interrupts() -> Vec<Intx> {
    let mut found = Vec::new();
    for device in 0..DEVICES_PER_BUS {
        let Some(bdf) = Bdf::new(0, device, 0) else { continue };
        if read(bdf, offset::VENDOR_ID, 2) == 0xffff {
            continue;
        }
        let pin = read(bdf, offset::INTERRUPT_PIN, 1) as u8;
        let intid = read(bdf, offset::INTERRUPT_LINE, 1);
        if pin != 0 && intid >= platform::vgic::SPI_BASE {
            found.push(Intx { device, pin, intid });
        }
    }
    found
}

pub fn enumerate() -> Vec<(u64, u64)> {
    let mut windows = Vec::new();
    for device in 0..DEVICES_PER_BUS {
        let Some(bdf) = Bdf::new(0, device, 0) else { continue };
        if read(bdf, offset::VENDOR_ID, 2) == 0xffff {
            continue;
        }
        let low = read(bdf, offset::BAR0, 4);
        let high = read(bdf, offset::BAR1, 4);
        // Size the BAR the way any PCI enumerator does, then restore it.
        write(bdf, offset::BAR0, 4, u32::MAX);
        let mask = read(bdf, offset::BAR0, 4);
        write(bdf, offset::BAR0, 4, low);
        let base = (u64::from(high) << 32) | u64::from(low & !bar::TYPE_MASK);
        let size = u64::from(!(mask & !bar::TYPE_MASK)).wrapping_add(1) & 0xffff_ffff;
        if size != 0 {
            windows.push((base, size));
        }
    }
    windows
}
