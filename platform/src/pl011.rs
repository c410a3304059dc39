//! A transmit-only driver for the Arm PL011 UART, enough for a console.
//!
//! The firmware that ran before us (QEMU, or the board's boot ROM) leaves the
//! UART configured; we only enable the transmitter and write bytes. The
//! register window comes from the board description, never from a constant.

/// Data register.
const UARTDR: usize = 0x00;
/// Flag register.
const UARTFR: usize = 0x18;
/// Control register.
const UARTCR: usize = 0x30;
/// UARTFR.TXFF: the transmit FIFO is full.
const FR_TXFF: u32 = 1 << 5;
/// UARTCR.UARTEN, UARTCR.TXE.
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;

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

    pub fn write_byte(&self, byte: u8) {
        while self.read(UARTFR) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        self.write(UARTDR, byte.into());
    }

    /// Writes `s`, turning `\n` into `\r\n`.
    pub fn write_str(&self, s: &str) {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
    }
}
