//! A driver for the Arm PL011 UART, enough for a console: transmit, and
//! receive with interrupts for the hypervisor's console input.
//!
//! The firmware that ran before us (QEMU, or the board's boot ROM) leaves the
//! UART configured; we only enable the transmitter (and receiver) and move
//! bytes. The register window comes from the board description, never from
//! a constant.

/// Data register.
const UARTDR: usize = 0x00;
/// Flag register.
const UARTFR: usize = 0x18;
/// Control register.
const UARTCR: usize = 0x30;
/// Interrupt mask set/clear and interrupt clear registers.
const UARTIMSC: usize = 0x38;
const UARTICR: usize = 0x44;
/// UARTFR.TXFF: the transmit FIFO is full; UARTFR.RXFE: the receive FIFO
/// is empty.
const FR_TXFF: u32 = 1 << 5;
const FR_RXFE: u32 = 1 << 4;
/// UARTCR.UARTEN, UARTCR.TXE, UARTCR.RXE.
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;
const CR_RXE: u32 = 1 << 9;
/// The receive and receive-timeout interrupts (IMSC, ICR).
const INT_RX: u32 = 1 << 4;
const INT_RT: u32 = 1 << 6;

/// A PL011 at a fixed MMIO base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// # Safety
    ///
    /// `base` must be the address, valid in the current translation regime,
    /// of a PL011's register window, and nothing else may drive that UART
    /// in a way that conflicts with transmit-only use.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    pub const fn base(&self) -> usize {
        self.base
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract makes base + offset a PL011 register.
        unsafe { core::ptr::read_volatile(self.base.wrapping_add(offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: `new`'s contract makes base + offset a PL011 register.
        unsafe { core::ptr::write_volatile(self.base.wrapping_add(offset) as *mut u32, value) }
    }

    /// Makes sure the UART and its transmitter are enabled.
    pub fn enable_tx(&self) {
        let cr = self.read(UARTCR);
        if cr & (CR_UARTEN | CR_TXE) != CR_UARTEN | CR_TXE {
            self.write(UARTCR, cr | CR_UARTEN | CR_TXE);
        }
    }

    /// Enables the receiver and its interrupts (received data, receive
    /// timeout).
    pub fn enable_rx_interrupts(&self) {
        let cr = self.read(UARTCR);
        self.write(UARTCR, cr | CR_UARTEN | CR_RXE);
        self.write(UARTIMSC, self.read(UARTIMSC) | INT_RX | INT_RT);
    }

    /// The next received byte, if one is waiting.
    pub fn read_byte(&self) -> Option<u8> {
        (self.read(UARTFR) & FR_RXFE == 0).then(|| self.read(UARTDR) as u8)
    }

    /// Clears the receive interrupts (after the FIFO was emptied).
    pub fn clear_rx_interrupts(&self) {
        self.write(UARTICR, INT_RX | INT_RT);
    }

    pub fn write_byte(&self, byte: u8) {
        while self.read(UARTFR) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        self.write(UARTDR, byte.into());
    }
}
