//! PCI configuration space emulation for MMIO devices, served by the
//! secure monitor (PCI ECAM emulation by the secure monitor).
//!
//! This module owns the *pure logic* of the shim: the config-space model of
//! the PCI functions that stand in for memory-mapped devices
//! ([`config`]), the Arm DEN0115 SMCCC calls that read and write it
//! ([`den0115`]), and the ECAM address arithmetic ([`ecam`]). It touches no
//! hardware, allocates nothing and cannot panic, so the EL3 monitor can run
//! it without a heap and the host tests can exercise every register.
//!
//! # Why it exists
//!
//! The monitor publishes an unbacked physical window to the guest as a
//! `pci-host-ecam-generic` host bridge. Each shimmed device (on QEMU `virt`
//! the PL031 RTC and the PL061 GPIO) appears as one type-0 PCI function on
//! bus 0 whose BAR0 is the device's own register window, so stock PCI code
//! (Linux's generic host driver, `uio_pci_generic`) discovers the device,
//! its interrupt and its registers. Config accesses never reach hardware:
//!
//! ```text
//!  guest load/store in the ECAM window
//!    -> stage-2 fault at EL2 -> ecam::EcamWindow::decode -> (BDF, offset)
//!    -> SMC PCI_READ / PCI_WRITE (DEN0115) -> EL3: den0115::dispatch
//!    -> config::ConfigSpace::read / write
//! ```
//!
//! On hardware that routes a lower-EL external abort to EL3 (`SCR_EL3.EA`),
//! EL3 decodes the abort ([`ea`]) with the same [`ecam`] code into the same
//! DEN0115 call and serves it from the same [`config::ConfigSpace`]; QEMU
//! cannot deliver that abort, which is why the decoder is host-tested here.
//!
//! # Split
//!
//! | module | owns |
//! |--------|------|
//! | this one | [`Bdf`], [`AccessSize`]: the addressing both paths share |
//! | [`config`] | [`config::ShimDevice`], [`config::ConfigSpace`]: header layout, writable masks, BAR sizing, INTx |
//! | [`den0115`] | the five DEN0115 calls: decoding, validation, results in x0..x3 |
//! | [`ecam`] | [`ecam::EcamWindow`]: 1 MiB per bus, 32 KiB per device, 4 KiB per function |
//! | [`ea`] | EL3's external-abort path: syndrome and PA to a config access, its completion, and the reflection of aborts that are not config accesses |

pub mod config;
pub mod den0115;
pub mod ea;
pub mod ecam;

#[cfg(test)]
mod tests;

use core::fmt;

pub use config::{Bar0, ClassCode, ConfigError, ConfigSpace, Intx, ShimDevice};
pub use den0115::{dispatch, handle, CallError, PciCall, Sbdf, SegmentInfo, Status};
pub use ecam::{ecam_decode, EcamWindow};

/// Devices on one bus (5-bit device number).
pub const DEVICES_PER_BUS: u8 = 32;
/// Functions in one device (3-bit function number).
pub const FUNCTIONS_PER_DEVICE: u8 = 8;
/// Bytes of configuration space per function (PCIe extended space; the
/// conventional header is the first 256).
pub const CONFIG_SPACE_SIZE: u16 = 4096;
/// The bus the shim functions sit on: the root bus of the one segment.
pub const ROOT_BUS: u8 = 0;

/// A function's address on its segment: bus, device (0..32), function (0..8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bdf {
    bus: u8,
    device: u8,
    function: u8,
}

impl Bdf {
    /// `None` if `device` >= 32 or `function` >= 8.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        if device >= DEVICES_PER_BUS || function >= FUNCTIONS_PER_DEVICE {
            return None;
        }
        Some(Self { bus, device, function })
    }

    /// The 16-bit routing ID: bus in [15:8], device in [7:3], function in [2:0].
    /// Every 16-bit value is a valid one.
    pub const fn from_routing_id(id: u16) -> Self {
        Self { bus: (id >> 8) as u8, device: ((id >> 3) & 0x1f) as u8, function: (id & 0x7) as u8 }
    }

    /// The inverse of [`Bdf::from_routing_id`].
    pub const fn routing_id(self) -> u16 {
        ((self.bus as u16) << 8) | ((self.device as u16) << 3) | self.function as u16
    }

    pub const fn bus(self) -> u8 {
        self.bus
    }

    pub const fn device(self) -> u8 {
        self.device
    }

    pub const fn function(self) -> u8 {
        self.function
    }
}

impl fmt::Display for Bdf {
    /// Linux's notation: `bb:dd.f` in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// The width of one config access. PCI allows 1, 2 and 4 bytes, naturally
/// aligned; anything else is unrepresentable here, so each path decides
/// once, at its own boundary, what a bad size means (DEN0115:
/// `INVALID_PARAMETER`; the raw ECAM path: see [`config::ConfigSpace::read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessSize {
    Byte = 1,
    Half = 2,
    Word = 4,
}

impl AccessSize {
    /// The size for a byte count, `None` unless it is 1, 2 or 4.
    pub const fn from_bytes(bytes: u64) -> Option<Self> {
        match bytes {
            1 => Some(Self::Byte),
            2 => Some(Self::Half),
            4 => Some(Self::Word),
            _ => None,
        }
    }

    pub const fn bytes(self) -> u16 {
        self as u16
    }

    /// The value bits an access of this size carries.
    pub const fn value_mask(self) -> u32 {
        match self {
            Self::Byte => 0xff,
            Self::Half => 0xffff,
            Self::Word => 0xffff_ffff,
        }
    }

    /// Whether `offset` is a multiple of the size (a naturally aligned
    /// access never crosses a dword).
    pub const fn is_aligned(self, offset: u16) -> bool {
        offset & self.bytes().wrapping_sub(1) == 0
    }
}

impl fmt::Display for AccessSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-byte", self.bytes())
    }
}
