//! ECAM address arithmetic: which function and register an access to the
//! published config window means.
//!
//! PCIe's Enhanced Configuration Access Mechanism gives every function 4
//! KiB of the window: address = base + (bus - first bus) << 20 | device << 15
//! | function << 12 | register offset. So 1 MiB per bus, 32 KiB per device.
//! EL2 uses [`EcamWindow::decode`] on a stage-2 fault in the window before
//! it forwards the access with `PCI_READ`/`PCI_WRITE`; EL3 uses the
//! same decoder for an external abort routed to it (`SCR_EL3.EA`,
//! [`super::ea`]). Nothing
//! here trusts the address: anything outside the window is `None`.

use super::{Bdf, CONFIG_SPACE_SIZE};

/// Bytes of ECAM space per bus.
pub const BUS_SIZE: u64 = 1 << BUS_SHIFT;
/// Bytes of ECAM space per device.
pub const DEVICE_SIZE: u64 = 1 << DEVICE_SHIFT;
/// Bytes of ECAM space per function.
pub const FUNCTION_SIZE: u64 = 1 << FUNCTION_SHIFT;
pub const BUS_SHIFT: u32 = 20;
pub const DEVICE_SHIFT: u32 = 15;
pub const FUNCTION_SHIFT: u32 = 12;

/// A config window at `base` covering buses `bus_start..=bus_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamWindow {
    base: u64,
    bus_start: u8,
    bus_end: u8,
}

impl EcamWindow {
    /// `None` if `bus_start > bus_end` or the window would run past the end
    /// of the address space.
    pub const fn new(base: u64, bus_start: u8, bus_end: u8) -> Option<Self> {
        if bus_start > bus_end {
            return None;
        }
        let window = Self { base, bus_start, bus_end };
        match base.checked_add(window.size()) {
            Some(_) => Some(window),
            None => None,
        }
    }

    pub const fn base(&self) -> u64 {
        self.base
    }

    pub const fn bus_start(&self) -> u8 {
        self.bus_start
    }

    pub const fn bus_end(&self) -> u8 {
        self.bus_end
    }

    /// The window's length: 1 MiB per bus (at most 256 MiB, cannot overflow).
    pub const fn size(&self) -> u64 {
        let buses = (self.bus_end as u64).wrapping_sub(self.bus_start as u64).wrapping_add(1);
        buses << BUS_SHIFT
    }

    /// The function and register offset `addr` reaches, or `None` outside
    /// the window.
    pub const fn decode(&self, addr: u64) -> Option<(Bdf, u16)> {
        let Some(relative) = addr.checked_sub(self.base) else {
            return None;
        };
        if relative >= self.size() {
            return None;
        }
        // relative < 256 MiB, so the bus index fits in 8 bits and adding it
        // to bus_start stays <= bus_end.
        let bus = self.bus_start.wrapping_add((relative >> BUS_SHIFT) as u8);
        let device = ((relative >> DEVICE_SHIFT) & 0x1f) as u8;
        let function = ((relative >> FUNCTION_SHIFT) & 0x7) as u8;
        let offset = (relative & (FUNCTION_SIZE - 1)) as u16;
        match Bdf::new(bus, device, function) {
            Some(bdf) => Some((bdf, offset)),
            None => None,
        }
    }

    /// The address of register `offset` of `bdf`, or `None` if the bus is
    /// outside the window or `offset` >= 4096. The inverse of [`EcamWindow::decode`].
    pub const fn address(&self, bdf: Bdf, offset: u16) -> Option<u64> {
        if bdf.bus() < self.bus_start || bdf.bus() > self.bus_end || offset >= CONFIG_SPACE_SIZE {
            return None;
        }
        let bus = bdf.bus().wrapping_sub(self.bus_start) as u64;
        let relative = bus << BUS_SHIFT
            | (bdf.device() as u64) << DEVICE_SHIFT
            | (bdf.function() as u64) << FUNCTION_SHIFT
            | offset as u64;
        // Cannot wrap: new() checked base + size.
        Some(self.base.wrapping_add(relative))
    }
}

/// Decodes `addr` in a window at `window_base` whose first bus is
/// `bus_start` and which extends to bus 255 (use [`EcamWindow`] when the
/// window ends earlier). `None` below the window or past bus 255.
pub const fn ecam_decode(window_base: u64, bus_start: u8, addr: u64) -> Option<(Bdf, u16)> {
    match EcamWindow::new(window_base, bus_start, u8::MAX) {
        Some(window) => window.decode(addr),
        None => None,
    }
}
