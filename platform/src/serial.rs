//! One console UART of any model the firmware drives, chosen at run time
//! by the board description's [`UartKind`] (from the DTB's `compatible`).
//!
//! The images print through [`crate::console`] and the hypervisor reads its
//! console input here; neither should care which UART the board has. An
//! enum rather than a trait object: the monitor has no heap, a console is
//! copied into a lock-protected slot, and two models do not need more.

use crate::board::UartKind;
use crate::cadence_uart::CadenceUart;
use crate::pl011::Pl011;

/// A UART the console can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serial {
    Pl011(Pl011),
    Cadence(CadenceUart),
}

impl Serial {
    /// The driver for a UART of model `kind` at `base`.
    ///
    /// # Safety
    ///
    /// As for the model's own constructor ([`Pl011::new`],
    /// [`CadenceUart::new`]): `base` must be the address, valid in the
    /// current translation regime, of such a UART's register window, and
    /// nothing else may drive that UART in a way that conflicts with
    /// transmit-only use.
    pub const unsafe fn new(kind: UartKind, base: usize) -> Self {
        match kind {
            // SAFETY: forwarded from this function's contract.
            UartKind::Pl011 => Self::Pl011(unsafe { Pl011::new(base) }),
            // SAFETY: forwarded from this function's contract.
            UartKind::Cadence => Self::Cadence(unsafe { CadenceUart::new(base) }),
        }
    }

    pub const fn kind(&self) -> UartKind {
        match self {
            Self::Pl011(_) => UartKind::Pl011,
            Self::Cadence(_) => UartKind::Cadence,
        }
    }

    pub const fn base(&self) -> usize {
        match self {
            Self::Pl011(u) => u.base(),
            Self::Cadence(u) => u.base(),
        }
    }

    /// Makes sure the UART can transmit.
    pub fn enable_tx(&self) {
        match self {
            Self::Pl011(u) => u.enable_tx(),
            Self::Cadence(u) => u.enable_tx(),
        }
    }

    /// Enables the receiver and its receive interrupts.
    pub fn enable_rx_interrupts(&self) {
        match self {
            Self::Pl011(u) => u.enable_rx_interrupts(),
            Self::Cadence(u) => u.enable_rx_interrupts(),
        }
    }

    /// The next received byte, if one is waiting.
    pub fn read_byte(&self) -> Option<u8> {
        match self {
            Self::Pl011(u) => u.read_byte(),
            Self::Cadence(u) => u.read_byte(),
        }
    }

    /// Clears the receive interrupts (after the FIFO was emptied).
    pub fn clear_rx_interrupts(&self) {
        match self {
            Self::Pl011(u) => u.clear_rx_interrupts(),
            Self::Cadence(u) => u.clear_rx_interrupts(),
        }
    }

    pub fn write_byte(&self, byte: u8) {
        match self {
            Self::Pl011(u) => u.write_byte(byte),
            Self::Cadence(u) => u.write_byte(byte),
        }
    }

    /// Writes `s`, turning `\n` into `\r\n` (for every model: a terminal
    /// wants both).
    pub fn write_str(&self, s: &str) {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
    }
}

impl From<Pl011> for Serial {
    fn from(uart: Pl011) -> Self {
        Self::Pl011(uart)
    }
}

impl From<CadenceUart> for Serial {
    fn from(uart: CadenceUart) -> Self {
        Self::Cadence(uart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_picks_the_driver() {
        // SAFETY: nothing is read or written; only the variant is checked.
        let (pl011, cadence) =
            unsafe { (Serial::new(UartKind::Pl011, 0x900_0000), Serial::new(UartKind::Cadence, 0xff00_0000)) };
        assert!(matches!(pl011, Serial::Pl011(u) if u.base() == 0x900_0000));
        assert!(matches!(cadence, Serial::Cadence(u) if u.base() == 0xff00_0000));
        assert_eq!((pl011.kind(), cadence.kind()), (UartKind::Pl011, UartKind::Cadence));
        assert_eq!(cadence.base(), 0xff00_0000);
    }
}
