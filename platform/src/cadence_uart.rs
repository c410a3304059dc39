//! A driver for the Cadence UART (the Xilinx Zynq and Zynq UltraScale+
//! "UART PS", `cdns,uart-r1p12`, `xlnx,xuartps`, ...), enough for a
//! console: polled transmit, and receive with interrupts for the
//! hypervisor's console input. It mirrors [`crate::pl011::Pl011`]'s API so
//! that [`crate::serial::Serial`] can drive either.
//!
//! Written here rather than taken from a crate: no maintained `no_std`
//! driver for this UART exists, and the console needs six registers. The
//! register map is the Zynq UltraScale+ register reference (UG1087, module
//! `UART`), which QEMU's `hw/char/cadence_uart.c` follows.
//!
//! As with the PL011, whatever ran before us (QEMU's reset state, or the
//! board's boot firmware) chose the line settings; this driver leaves the
//! mode and baud-rate registers alone and only enables the transmitter (and
//! receiver). Unlike the PL011's, the Cadence UART's reset state has both
//! disabled (`CR` = 0x128: `TX_DIS`, `RX_DIS`, `STPBRK`), so
//! [`CadenceUart::enable_tx`] is what makes the first byte appear. The
//! register window comes from the board description, never from a
//! constant.

/// Control register.
const CR: usize = 0x00;
/// Interrupt enable (write 1 to set a bit of the mask).
const IER: usize = 0x08;
/// Channel interrupt status (write 1 to clear).
const ISR: usize = 0x14;
/// Receiver timeout, in units of 4 bit periods (0: off).
const RTOR: usize = 0x1c;
/// Receiver FIFO trigger level.
const RTRIG: usize = 0x20;
/// Channel status register.
const SR: usize = 0x2c;
/// Transmit and receive FIFO.
const FIFO: usize = 0x30;

/// CR.RX_EN, CR.RX_DIS, CR.TX_EN, CR.TX_DIS. `RXRST`/`TXRST` (bits 0, 1)
/// are never set: a control write that carries them empties the FIFOs.
const CR_RX_EN: u32 = 1 << 2;
const CR_RX_DIS: u32 = 1 << 3;
const CR_TX_EN: u32 = 1 << 4;
const CR_TX_DIS: u32 = 1 << 5;
/// The bits of CR that are commands (self-clearing resets), kept out of a
/// read-modify-write.
const CR_RESETS: u32 = 0b11;
/// SR.REMPTY: the receive FIFO is empty; SR.TFUL: the transmit FIFO is full.
const SR_REMPTY: u32 = 1 << 1;
const SR_TFUL: u32 = 1 << 4;
/// The receive interrupts (IER, ISR): the FIFO reached its trigger level,
/// and the receiver timed out with bytes below it.
const INT_RTRIG: u32 = 1 << 0;
const INT_TIMEOUT: u32 = 1 << 8;
/// Interrupt as soon as one byte is in the receive FIFO.
const RTRIG_ONE_BYTE: u32 = 1;
/// A receiver timeout of 10 × 4 bit periods, for bytes below the trigger
/// level (none with a level of one; set so that the timeout interrupt means
/// something on a UART whose trigger level someone else raised).
const RTOR_TICKS: u32 = 10;

/// Smallest register window the driver touches: it ends with the FIFO at
/// 0x30.
pub const WINDOW: u64 = 0x34;

/// A Cadence UART at a fixed MMIO base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CadenceUart {
    base: usize,
}

impl CadenceUart {
    /// # Safety
    ///
    /// `base` must be the address, valid in the current translation regime,
    /// of a Cadence UART's register window, and nothing else may drive that
    /// UART in a way that conflicts with transmit-only use.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    pub const fn base(&self) -> usize {
        self.base
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract makes base + offset a UART register.
        unsafe { core::ptr::read_volatile(self.base.wrapping_add(offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: `new`'s contract makes base + offset a UART register.
        unsafe { core::ptr::write_volatile(self.base.wrapping_add(offset) as *mut u32, value) }
    }

    /// Sets `enable` and clears `disable` in CR, if that changes anything.
    fn control(&self, enable: u32, disable: u32) {
        let cr = self.read(CR) & !CR_RESETS;
        let wanted = (cr & !disable) | enable;
        if wanted != cr {
            self.write(CR, wanted);
        }
    }

    /// Makes sure the transmitter is enabled.
    pub fn enable_tx(&self) {
        self.control(CR_TX_EN, CR_TX_DIS);
    }

    /// Enables the receiver and its interrupts (a byte received, receiver
    /// timeout).
    pub fn enable_rx_interrupts(&self) {
        self.write(RTRIG, RTRIG_ONE_BYTE);
        self.write(RTOR, RTOR_TICKS);
        self.control(CR_RX_EN, CR_RX_DIS);
        self.write(IER, INT_RTRIG | INT_TIMEOUT);
    }

    /// The next received byte, if one is waiting.
    pub fn read_byte(&self) -> Option<u8> {
        (self.read(SR) & SR_REMPTY == 0).then(|| self.read(FIFO) as u8)
    }

    /// Clears the receive interrupts (after the FIFO was emptied).
    pub fn clear_rx_interrupts(&self) {
        self.write(ISR, INT_RTRIG | INT_TIMEOUT);
    }

    pub fn write_byte(&self, byte: u8) {
        while self.read(SR) & SR_TFUL != 0 {
            core::hint::spin_loop();
        }
        self.write(FIFO, byte.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register file in memory standing in for the UART: enough to check
    /// which registers the driver writes, and with what.
    #[repr(C, align(4))]
    struct Regs([u32; 16]);

    impl Regs {
        fn reset() -> Self {
            let mut regs = Self([0; 16]);
            regs.0[CR / 4] = 0x128; // TX_DIS | RX_DIS | STPBRK
            regs.0[SR / 4] = SR_REMPTY | (1 << 3); // both FIFOs empty
            regs
        }

        fn uart(&mut self) -> CadenceUart {
            // SAFETY: the array stands in for the register window for the
            // life of the test; nothing else touches it.
            unsafe { CadenceUart::new(self.0.as_mut_ptr() as usize) }
        }
    }

    #[test]
    fn enabling_tx_clears_the_reset_disable() {
        let mut regs = Regs::reset();
        regs.uart().enable_tx();
        assert_eq!(regs.0[CR / 4], 0x100 | CR_TX_EN | CR_RX_DIS, "TX_EN on, TX_DIS off, the rest kept");
        // Enabled already: no second write (a command bit read back would
        // otherwise be written again).
        regs.0[CR / 4] |= CR_RESETS;
        regs.uart().enable_tx();
        assert_eq!(regs.0[CR / 4] & CR_RESETS, CR_RESETS, "no write when nothing changes");
    }

    #[test]
    fn enabling_rx_sets_level_timeout_and_interrupts() {
        let mut regs = Regs::reset();
        regs.uart().enable_rx_interrupts();
        assert_eq!(regs.0[RTRIG / 4], 1);
        assert_eq!(regs.0[RTOR / 4], RTOR_TICKS);
        assert_eq!(regs.0[CR / 4], 0x100 | CR_TX_DIS | CR_RX_EN);
        assert_eq!(regs.0[IER / 4], INT_RTRIG | INT_TIMEOUT);
    }

    #[test]
    fn bytes_go_to_the_fifo_and_come_from_it() {
        let mut regs = Regs::reset();
        regs.uart().write_byte(b'x');
        assert_eq!(regs.0[FIFO / 4], u32::from(b'x'));
        assert_eq!(regs.uart().read_byte(), None, "REMPTY: nothing to read");
        regs.0[SR / 4] &= !SR_REMPTY;
        regs.0[FIFO / 4] = u32::from(b'y');
        assert_eq!(regs.uart().read_byte(), Some(b'y'));
        regs.uart().clear_rx_interrupts();
        assert_eq!(regs.0[ISR / 4], INT_RTRIG | INT_TIMEOUT);
    }
}
