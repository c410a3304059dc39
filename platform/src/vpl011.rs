//! An emulated Arm PL011 UART (PrimeCell r1p5, ARM DDI 0183) for a guest's
//! console: the register model only, pure logic, host-tested.
//!
//! Enough for Linux's `amba-pl011` driver (`console=ttyAMA0`, interrupts on
//! receive and transmit) and for its `pl011` earlycon. The hypervisor
//! leaves the UART's 4 KiB window unmapped in stage 2, registers a
//! [`VirtPl011`] for it on its [`MmioBus`](crate::mmio::MmioBus), and
//! around each trapped access:
//!
//! - after every access, takes what the guest transmitted with
//!   [`VirtPl011::drain_tx`] and hands it on (to the
//!   [`ConsoleMux`](crate::console_mux::ConsoleMux));
//! - feeds received bytes with [`VirtPl011::push_rx`], checking
//!   [`VirtPl011::rx_room`] first if it would rather hold bytes back than
//!   lose them;
//! - after each access and each received byte, drives the VM's virtual SPI
//!   from [`VirtPl011::irq_level`], a level (`UARTMIS != 0`).
//!
//! The device never prints and touches no hardware.
//!
//! # What the guest sees
//!
//! - Identification: `UARTPeriphID0-3` = 0x11, 0x10, 0x14, 0x00 (part 0x011,
//!   designer Arm, revision 1, as QEMU's PL011 reads) and `UARTPCellID0-3` =
//!   0x0d, 0xf0, 0x05, 0xb1. Linux's AMBA bus matches the driver on these
//!   and, from the revision (< 3), takes the FIFO to be 16 deep.
//! - Receive: a 16-byte FIFO while `UARTLCR_H.FEN` is set, a one-byte
//!   holding register otherwise. Changing `FEN` empties it (as QEMU does).
//!   Received bytes carry no error bits: `UARTDR` reads as the byte in bits
//!   7:0 and zeros above; a read of an empty FIFO returns 0.
//! - Transmit: a byte written to `UARTDR` goes to a [`TX_BUFFER_SIZE`]-byte
//!   software buffer that stands for the wire; it counts as sent at once.
//!   `UARTFR.TXFE` means the buffer is empty, `UARTFR.TXFF` that it is
//!   full (the guest then waits: nothing is lost to a guest that polls
//!   `TXFF`), `UARTFR.BUSY` always reads 0. A byte written while the
//!   buffer is full (a driver that writes without polling) is dropped and
//!   counted ([`VirtPl011::tx_dropped`]); the hypervisor avoids that by
//!   draining after every access.
//! - Modem lines: a terminal is attached: CTS, DSR and DCD read as asserted
//!   and RI not (`UARTFR` = 0x97 when idle). So a guest that turns on
//!   hardware flow control or waits for carrier is never stuck. In loopback
//!   (`UARTCR.LBE`) they follow `UARTCR` instead, as in the TRM and QEMU:
//!   CTS = RTS, DSR = DTR, DCD = Out1, RI = Out2; a change of a line sets
//!   its modem-status interrupt.
//! - Loopback: bytes written to `UARTDR` go to the receive FIFO instead of
//!   the wire (QEMU sends them to both; a self-test's bytes have no place on
//!   the console), and [`VirtPl011::push_rx`] refuses input (the receive
//!   line is disconnected).
//! - The enable bits (`UARTCR.UARTEN`, `TXE`, `RXE`) do not gate anything,
//!   as in QEMU: earlycon prints through a UART nobody enabled (reset leaves
//!   `UARTEN` clear). Baud rate, line format, break, IrDA and DMA registers
//!   are stored and read back, and do nothing.
//!
//! # Interrupts
//!
//! `UARTRIS` bits are latches, cleared by writing 1s to `UARTICR`, and:
//!
//! - RX (`RXRIS`, bit 4) and receive timeout (`RTRIS`, bit 6) are both set
//!   whenever a byte enters the receive FIFO, and both clear when a read
//!   empties it. That is QEMU's behaviour for RX (its receive trigger level
//!   is fixed at one byte: Linux reads the FIFO only from the interrupt),
//!   and what a real PL011 does with RT once the line has been quiet for 32
//!   bit periods, which for typed input is every time. The `UARTIFLS`
//!   receive level is therefore ignored. A guest that unmasks either bit,
//!   as Linux does both, gets an interrupt per received burst.
//! - TX (`TXRIS`, bit 5): the transmit side counts as at or below its
//!   trigger level while the buffer has room for [`TX_TRIGGER_ROOM`] bytes
//!   (a whole 32-deep hardware FIFO; Linux writes up to half its FIFO size
//!   per TX interrupt without polling `TXFF`). TX is set by every write to
//!   `UARTDR` that leaves that room (QEMU sets it on every write), by a
//!   write that enables the transmitter (`UARTEN` and `TXE` both set where
//!   they were not), and by a [`VirtPl011::drain_tx`] that brings the buffer
//!   back to that room; it is cleared by a write that leaves less room
//!   (the TRM: "cleared by writing data to the transmit FIFO until it
//!   becomes greater than the trigger level"). So TX set always means
//!   room for [`TX_TRIGGER_ROOM`] bytes.
//! - OE (`OERIS`, bit 10) and `UARTRSR.OE` are set by a byte that arrives
//!   at a full receive FIFO (and is lost). Framing, parity and break errors
//!   never happen.
//!
//! # Accesses
//!
//! Reads and writes of 1, 2 or 4 bytes at a register's offset (a multiple
//! of 4) reach the register: Linux's driver uses 16-bit accesses, earlycon
//! 8-bit writes of `UARTDR` and 32-bit reads. A narrow write sets the
//! register to the written value, zero-extended; a narrow read returns the
//! low bits. Any other offset, and the registers a PL011 does not have,
//! read as 0 and ignore writes, as reserved space does. An 8-byte access
//! is refused ([`MmioFault::Unsupported`]): the APB has no such access.

use crate::mmio::{MmioDevice, MmioFault};

/// The size of the register window the guest's device tree gives.
pub const WINDOW_SIZE: u64 = 0x1000;
/// Receive FIFO depth with `UARTLCR_H.FEN` set (1 without).
pub const RX_FIFO_DEPTH: usize = 16;
/// The transmit buffer between the guest and [`VirtPl011::drain_tx`].
pub const TX_BUFFER_SIZE: usize = 256;
/// The room in the transmit buffer below which TX interrupts stop.
pub const TX_TRIGGER_ROOM: usize = 32;

/// `UARTPeriphID0-3`, then `UARTPCellID0-3`: the bytes at 0xfe0..=0xffc.
pub const ID_BYTES: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Register offsets.
pub mod reg {
    pub const DR: u64 = 0x000;
    /// `UARTRSR` on read, `UARTECR` on write.
    pub const RSR: u64 = 0x004;
    pub const FR: u64 = 0x018;
    pub const ILPR: u64 = 0x020;
    pub const IBRD: u64 = 0x024;
    pub const FBRD: u64 = 0x028;
    pub const LCR_H: u64 = 0x02c;
    pub const CR: u64 = 0x030;
    pub const IFLS: u64 = 0x034;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03c;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    pub const DMACR: u64 = 0x048;
    /// `UARTPeriphID0`; the ID registers run to `UARTPCellID3` at 0xffc.
    pub const PERIPH_ID0: u64 = 0xfe0;
    pub const PCELL_ID3: u64 = 0xffc;
}

/// `UARTFR` bits.
pub mod fr {
    pub const CTS: u32 = 1 << 0;
    pub const DSR: u32 = 1 << 1;
    pub const DCD: u32 = 1 << 2;
    pub const BUSY: u32 = 1 << 3;
    pub const RXFE: u32 = 1 << 4;
    pub const TXFF: u32 = 1 << 5;
    pub const RXFF: u32 = 1 << 6;
    pub const TXFE: u32 = 1 << 7;
    pub const RI: u32 = 1 << 8;
}

/// Interrupt bits, the same in `UARTIMSC`, `UARTRIS`, `UARTMIS` and
/// `UARTICR`.
pub mod int {
    pub const RI: u32 = 1 << 0;
    pub const CTS: u32 = 1 << 1;
    pub const DCD: u32 = 1 << 2;
    pub const DSR: u32 = 1 << 3;
    pub const RX: u32 = 1 << 4;
    pub const TX: u32 = 1 << 5;
    pub const RT: u32 = 1 << 6;
    pub const FE: u32 = 1 << 7;
    pub const PE: u32 = 1 << 8;
    pub const BE: u32 = 1 << 9;
    pub const OE: u32 = 1 << 10;
    pub const ALL: u32 = 0x7ff;
}

/// `UARTCR` bits.
pub mod cr {
    pub const UARTEN: u32 = 1 << 0;
    pub const LBE: u32 = 1 << 7;
    pub const TXE: u32 = 1 << 8;
    pub const RXE: u32 = 1 << 9;
    pub const DTR: u32 = 1 << 10;
    pub const RTS: u32 = 1 << 11;
    pub const OUT1: u32 = 1 << 12;
    pub const OUT2: u32 = 1 << 13;
    pub const RTSEN: u32 = 1 << 14;
    pub const CTSEN: u32 = 1 << 15;
    /// The implemented bits: 15:7 and 2:0 (6:3 are reserved).
    pub const MASK: u32 = 0xff87;
}

/// `UARTLCR_H.FEN`: FIFOs enabled.
pub const LCR_H_FEN: u32 = 1 << 4;
/// `UARTRSR.OE`: overrun.
pub const RSR_OE: u32 = 1 << 3;

/// Reset values.
const CR_RESET: u32 = cr::RXE | cr::TXE;
const IFLS_RESET: u32 = 0x12;
/// The ring index mask of the receive FIFO (`RX_FIFO_DEPTH` - 1).
const RX_INDEX_MASK: usize = RX_FIFO_DEPTH - 1;
const _: () = assert!(RX_FIFO_DEPTH.is_power_of_two() && TX_TRIGGER_ROOM <= TX_BUFFER_SIZE);

/// An emulated PL011: all its state, no hardware, no allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtPl011 {
    /// Receive FIFO ring: `rx_len` bytes from `rx_head`.
    rx: [u8; RX_FIFO_DEPTH],
    rx_head: usize,
    rx_len: usize,
    /// Transmitted bytes not yet drained, oldest first.
    tx: [u8; TX_BUFFER_SIZE],
    tx_len: usize,
    tx_dropped: u64,
    rsr: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    ris: u32,
    dmacr: u32,
}

impl Default for VirtPl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtPl011 {
    /// A UART in its power-on state.
    pub const fn new() -> Self {
        Self {
            rx: [0; RX_FIFO_DEPTH],
            rx_head: 0,
            rx_len: 0,
            tx: [0; TX_BUFFER_SIZE],
            tx_len: 0,
            tx_dropped: 0,
            rsr: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: 0,
            ris: 0,
            dmacr: 0,
        }
    }

    /// Back to the power-on state (`UARTCR` = 0x300, `UARTIFLS` = 0x12,
    /// FIFOs off and the receive FIFO empty, interrupts masked and clear),
    /// for a VM reset. Transmitted bytes not yet drained stay to be
    /// drained: they were on the wire already.
    pub fn reset(&mut self) {
        *self = Self { tx: self.tx, tx_len: self.tx_len, tx_dropped: self.tx_dropped, ..Self::new() };
    }

    /// Feeds one byte from the outside world into the receive FIFO. False
    /// when it is not taken: in loopback (the receive line is disconnected)
    /// or when the FIFO is full, which is an overrun (`UARTRSR.OE` and the
    /// OE interrupt) and loses the byte. A caller that would rather hold
    /// input back checks [`rx_room`](Self::rx_room) first.
    pub fn push_rx(&mut self, byte: u8) -> bool {
        if self.loopback() {
            return false;
        }
        self.receive(byte)
    }

    /// How many bytes [`push_rx`](Self::push_rx) takes now: the free
    /// receive FIFO entries, 0 in loopback.
    pub fn rx_room(&self) -> usize {
        if self.loopback() {
            0
        } else {
            self.rx_depth().saturating_sub(self.rx_len)
        }
    }

    /// Bytes in the receive FIFO.
    pub fn rx_len(&self) -> usize {
        self.rx_len
    }

    /// The receive FIFO's depth now: [`RX_FIFO_DEPTH`] with `FEN`, else 1.
    pub fn rx_depth(&self) -> usize {
        if self.lcr_h & LCR_H_FEN != 0 {
            RX_FIFO_DEPTH
        } else {
            1
        }
    }

    /// Hands every transmitted byte not yet taken to `sink`, oldest first,
    /// and empties the buffer; returns how many. Call it after every guest
    /// access (it is cheap when there is nothing).
    pub fn drain_tx(&mut self, mut sink: impl FnMut(u8)) -> usize {
        let count = self.tx_len;
        if count == 0 {
            return 0;
        }
        let was_above_trigger = !self.tx_at_trigger();
        self.tx.iter().take(count).for_each(|&byte| sink(byte));
        self.tx_len = 0;
        if was_above_trigger {
            self.ris |= int::TX;
        }
        count
    }

    /// Transmitted bytes waiting for [`drain_tx`](Self::drain_tx).
    pub fn tx_pending(&self) -> usize {
        self.tx_len
    }

    /// Bytes the guest wrote to a full transmit buffer, which were lost.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped
    }

    /// The interrupt output: `UARTMIS != 0`. A level; the hypervisor
    /// mirrors it onto the VM's virtual SPI after every access and every
    /// [`push_rx`](Self::push_rx).
    pub fn irq_level(&self) -> bool {
        self.mis() != 0
    }

    /// `UARTFR` as the guest reads it.
    pub fn flags(&self) -> u32 {
        let mut flags = self.modem_lines();
        if self.rx_len == 0 {
            flags |= fr::RXFE;
        }
        if self.rx_len >= self.rx_depth() {
            flags |= fr::RXFF;
        }
        if self.tx_len == 0 {
            flags |= fr::TXFE;
        }
        if self.tx_len >= TX_BUFFER_SIZE {
            flags |= fr::TXFF;
        }
        flags
    }

    /// `UARTRIS`: the raw interrupt status.
    pub fn ris(&self) -> u32 {
        self.ris
    }

    /// `UARTIMSC`: the interrupt mask (1 = enabled).
    pub fn imsc(&self) -> u32 {
        self.imsc
    }

    /// `UARTMIS`: the masked interrupt status.
    pub fn mis(&self) -> u32 {
        self.ris & self.imsc
    }

    /// `UARTCR`.
    pub fn control(&self) -> u32 {
        self.cr
    }

    fn loopback(&self) -> bool {
        self.cr & cr::LBE != 0
    }

    /// Whether the transmit side is at or below its trigger level: room
    /// for [`TX_TRIGGER_ROOM`] bytes.
    fn tx_at_trigger(&self) -> bool {
        TX_BUFFER_SIZE.saturating_sub(self.tx_len) >= TX_TRIGGER_ROOM
    }

    /// The modem status inputs, as `UARTFR` bits.
    fn modem_lines(&self) -> u32 {
        if !self.loopback() {
            return fr::CTS | fr::DSR | fr::DCD;
        }
        [(cr::RTS, fr::CTS), (cr::DTR, fr::DSR), (cr::OUT1, fr::DCD), (cr::OUT2, fr::RI)]
            .iter()
            .filter(|&&(out, _)| self.cr & out != 0)
            .fold(0, |lines, &(_, line)| lines | line)
    }

    /// A byte reaches the receive FIFO (from outside or by loopback).
    fn receive(&mut self, byte: u8) -> bool {
        if self.rx_len >= self.rx_depth() {
            self.rsr |= RSR_OE;
            self.ris |= int::OE;
            return false;
        }
        let slot = self.rx_head.wrapping_add(self.rx_len) & RX_INDEX_MASK;
        if let Some(entry) = self.rx.get_mut(slot) {
            *entry = byte;
        }
        self.rx_len = self.rx_len.saturating_add(1);
        self.ris |= int::RX | int::RT;
        true
    }

    fn read_data(&mut self) -> u32 {
        if self.rx_len == 0 {
            return 0;
        }
        let byte = self.rx.get(self.rx_head).copied().unwrap_or(0);
        self.rx_head = self.rx_head.wrapping_add(1) & RX_INDEX_MASK;
        self.rx_len = self.rx_len.saturating_sub(1);
        if self.rx_len == 0 {
            self.ris &= !(int::RX | int::RT);
        }
        u32::from(byte)
    }

    fn write_data(&mut self, byte: u8) {
        if self.loopback() {
            self.receive(byte);
        } else if let Some(entry) = self.tx.get_mut(self.tx_len) {
            *entry = byte;
            self.tx_len = self.tx_len.saturating_add(1);
        } else {
            self.tx_dropped = self.tx_dropped.saturating_add(1);
        }
        if self.tx_at_trigger() {
            self.ris |= int::TX;
        } else {
            self.ris &= !int::TX;
        }
    }

    fn write_control(&mut self, value: u32) {
        let transmitting = |control: u32| control & (cr::UARTEN | cr::TXE) == cr::UARTEN | cr::TXE;
        let (old_control, old_lines) = (self.cr, self.modem_lines());
        self.cr = value & cr::MASK;
        let changed = old_lines ^ self.modem_lines();
        for (line, interrupt) in [(fr::CTS, int::CTS), (fr::DSR, int::DSR), (fr::DCD, int::DCD), (fr::RI, int::RI)] {
            if changed & line != 0 {
                self.ris |= interrupt;
            }
        }
        if !transmitting(old_control) && transmitting(self.cr) && self.tx_at_trigger() {
            self.ris |= int::TX;
        }
    }

    fn write_line_control(&mut self, value: u32) {
        if (self.lcr_h ^ value) & LCR_H_FEN != 0 {
            // The FIFO changes depth: start it empty.
            self.rx_head = 0;
            self.rx_len = 0;
            self.ris &= !(int::RX | int::RT);
        }
        self.lcr_h = value & 0xff;
    }

    fn read_register(&mut self, offset: u64) -> u32 {
        match offset {
            reg::DR => self.read_data(),
            reg::RSR => self.rsr,
            reg::FR => self.flags(),
            reg::ILPR => self.ilpr,
            reg::IBRD => self.ibrd,
            reg::FBRD => self.fbrd,
            reg::LCR_H => self.lcr_h,
            reg::CR => self.cr,
            reg::IFLS => self.ifls,
            reg::IMSC => self.imsc,
            reg::RIS => self.ris,
            reg::MIS => self.mis(),
            reg::DMACR => self.dmacr,
            reg::PERIPH_ID0..=reg::PCELL_ID3 => usize::try_from(offset.wrapping_sub(reg::PERIPH_ID0) >> 2)
                .ok()
                .and_then(|index| ID_BYTES.get(index))
                .map_or(0, |&id| u32::from(id)),
            // UARTICR is write-only; the rest is reserved.
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            reg::DR => self.write_data(value.to_le_bytes()[0]),
            reg::RSR => self.rsr = 0,
            reg::ILPR => self.ilpr = value & 0xff,
            reg::IBRD => self.ibrd = value & 0xffff,
            reg::FBRD => self.fbrd = value & 0x3f,
            reg::LCR_H => self.write_line_control(value),
            reg::CR => self.write_control(value),
            reg::IFLS => self.ifls = value & 0x3f,
            reg::IMSC => self.imsc = value & int::ALL,
            reg::ICR => self.ris &= !(value & int::ALL),
            reg::DMACR => self.dmacr = value & 0x7,
            // UARTFR, UARTRIS, UARTMIS and the IDs are read-only; the rest
            // is reserved.
            _ => {}
        }
    }

    /// The register an access of `size` bytes at `offset` reaches, if any;
    /// an error for sizes the device does not answer.
    fn register_offset(offset: u64, size: u8) -> Result<Option<u64>, MmioFault> {
        match size {
            1 | 2 | 4 => Ok((offset & 3 == 0 && offset < WINDOW_SIZE).then_some(offset)),
            _ => Err(MmioFault::Unsupported { offset, size }),
        }
    }
}

/// The value bits of a `size`-byte access (1, 2 or 4).
fn size_mask(size: u8) -> u64 {
    u64::MAX.checked_shr(64_u32.saturating_sub(u32::from(size).saturating_mul(8))).unwrap_or(0)
}

impl MmioDevice for VirtPl011 {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
        let value = Self::register_offset(offset, size)?.map_or(0, |offset| u64::from(self.read_register(offset)));
        Ok(value & size_mask(size))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        if let Some(offset) = Self::register_offset(offset, size)? {
            self.write_register(offset, u32::try_from(value & size_mask(size)).unwrap_or(0));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::mmio::{AccessSize, MmioBus};
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    fn read(uart: &mut VirtPl011, offset: u64) -> u32 {
        u32::try_from(uart.read(offset, 4).unwrap()).unwrap()
    }

    fn write(uart: &mut VirtPl011, offset: u64, value: u32) {
        uart.write(offset, 4, u64::from(value)).unwrap();
    }

    /// Linux's `amba-pl011` accesses registers 16 bits wide.
    fn readw(uart: &mut VirtPl011, offset: u64) -> u32 {
        u32::try_from(uart.read(offset, 2).unwrap()).unwrap()
    }

    fn writew(uart: &mut VirtPl011, offset: u64, value: u32) {
        uart.write(offset, 2, u64::from(value & 0xffff)).unwrap();
    }

    fn drain(uart: &mut VirtPl011) -> Vec<u8> {
        let mut out = Vec::new();
        uart.drain_tx(|byte| out.push(byte));
        out
    }

    #[test]
    fn identification_registers() {
        let mut uart = VirtPl011::new();
        let ids: Vec<u32> = (0..8).map(|i| read(&mut uart, 0xfe0 + 4 * i)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        // The AMBA bus's view: part 0x011, designer 0x41 ('A'), revision 1;
        // the cell ID 0xb105f00d.
        let periph = ids[..4].iter().enumerate().fold(0, |id, (i, &b)| id | b << (8 * i));
        let cell = ids[4..].iter().enumerate().fold(0, |id, (i, &b)| id | b << (8 * i));
        assert_eq!((periph & 0xfff, (periph >> 12) & 0xff, (periph >> 20) & 0xf), (0x011, 0x41, 1));
        assert_eq!(cell, 0xb105_f00d);
        // Any width; read-only; nothing around them.
        assert_eq!(uart.read(0xfe0, 1), Ok(0x11));
        assert_eq!(uart.read(0xffc, 2), Ok(0xb1));
        write(&mut uart, 0xfe0, 0xff);
        assert_eq!(read(&mut uart, 0xfe0), 0x11);
        assert_eq!(read(&mut uart, 0xfdc), 0);
        assert_eq!(uart.read(0xfe1, 1), Ok(0));
    }

    #[test]
    fn power_on_values_and_reset() {
        let mut uart = VirtPl011::new();
        let regs = |uart: &mut VirtPl011| {
            [reg::FR, reg::CR, reg::IFLS, reg::LCR_H, reg::IMSC, reg::RIS, reg::MIS, reg::RSR, reg::IBRD, reg::DMACR]
                .map(|offset| read(uart, offset))
        };
        let power_on = [0x97, 0x300, 0x12, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(regs(&mut uart), power_on);
        assert_eq!(uart, VirtPl011::default());

        write(&mut uart, reg::LCR_H, 0x70);
        write(&mut uart, reg::CR, 0x301);
        write(&mut uart, reg::IMSC, int::ALL);
        write(&mut uart, reg::IBRD, 13);
        write(&mut uart, reg::DMACR, 7);
        assert!(uart.push_rx(b'x'));
        write(&mut uart, reg::DR, u32::from(b'y'));
        assert!(uart.irq_level());
        uart.reset();
        // The transmitted byte survives the reset; everything else is new.
        assert_eq!(uart.tx_pending(), 1);
        assert_eq!(read(&mut uart, reg::FR), 0x17);
        assert_eq!(drain(&mut uart), b"y");
        assert_eq!(regs(&mut uart), power_on);
        assert!(!uart.irq_level());
    }

    #[test]
    fn linux_probe_startup_and_console() {
        let mut uart = VirtPl011::new();
        // earlycon: 8-bit writes of UARTDR, 32-bit polls of UARTFR, before
        // anyone enabled the UART.
        for &byte in b"Booting\n" {
            while read(&mut uart, reg::FR) & fr::TXFF != 0 {}
            uart.write(reg::DR, 1, u64::from(byte)).unwrap();
            while read(&mut uart, reg::FR) & fr::BUSY != 0 {}
        }
        assert_eq!(drain(&mut uart), b"Booting\n");

        // Probe: mask and clear everything.
        writew(&mut uart, reg::IMSC, 0);
        writew(&mut uart, reg::ICR, 0xffff);
        // Startup (pl011_hwinit, pl011_startup, pl011_enable_interrupts).
        writew(&mut uart, reg::ICR, int::OE | int::BE | int::PE | int::FE | int::RT | int::RX);
        let _saved_mask = readw(&mut uart, reg::IMSC);
        writew(&mut uart, reg::IMSC, int::RT | int::RX);
        writew(&mut uart, reg::IFLS, 0x12);
        let control = readw(&mut uart, reg::CR) & (cr::RTS | cr::DTR);
        writew(&mut uart, reg::CR, control | cr::UARTEN | cr::RXE | cr::TXE);
        writew(&mut uart, reg::ICR, int::RT | int::RX);
        while readw(&mut uart, reg::FR) & fr::RXFE == 0 {
            readw(&mut uart, reg::DR);
        }
        writew(&mut uart, reg::IMSC, int::RT | int::RX);
        // set_termios: 115200 8N1 from a 24 MHz clock, FIFOs on.
        writew(&mut uart, reg::CR, 0);
        writew(&mut uart, reg::IBRD, 13);
        writew(&mut uart, reg::FBRD, 1);
        writew(&mut uart, reg::LCR_H, 0x60 | LCR_H_FEN);
        writew(&mut uart, reg::CR, cr::UARTEN | cr::RXE | cr::TXE | cr::RTS | cr::DTR);
        assert_eq!([reg::IBRD, reg::FBRD, reg::LCR_H].map(|r| readw(&mut uart, r)), [13, 1, 0x70]);
        // Modem lines (pl011_get_mctrl): carrier and clear-to-send.
        assert_eq!(readw(&mut uart, reg::FR) & (fr::DCD | fr::DSR | fr::CTS | fr::RI), fr::DCD | fr::DSR | fr::CTS);
        assert!(!uart.irq_level());

        // start_tx_pio: write while TXFF is clear; all fits, so TXIM stays
        // masked.
        for &byte in b"login: " {
            assert_eq!(readw(&mut uart, reg::FR) & fr::TXFF, 0);
            writew(&mut uart, reg::DR, u32::from(byte));
        }
        assert_eq!(drain(&mut uart), b"login: ");
        // TX is latched but masked: no interrupt.
        assert_ne!(readw(&mut uart, reg::RIS) & int::TX, 0);
        assert!(!uart.irq_level());
        // A typed line: the interrupt fires; the handler reads MIS, then
        // the FIFO until RXFE, and the line drops.
        for &byte in b"root\r" {
            assert!(uart.push_rx(byte));
        }
        assert!(uart.irq_level());
        assert_eq!(readw(&mut uart, reg::MIS), int::RX | int::RT);
        let mut got = Vec::new();
        while readw(&mut uart, reg::FR) & fr::RXFE == 0 {
            got.push(u8::try_from(readw(&mut uart, reg::DR)).unwrap());
        }
        assert_eq!(got, b"root\r");
        assert!(!uart.irq_level());
        // The TX interrupt path: unmask TXIM with TX latched: the interrupt
        // fires at once, the handler writes and masks TXIM when done.
        writew(&mut uart, reg::IMSC, int::RT | int::RX | int::TX);
        assert!(uart.irq_level());
        for &byte in b"# " {
            writew(&mut uart, reg::DR, u32::from(byte));
        }
        writew(&mut uart, reg::IMSC, int::RT | int::RX);
        assert!(!uart.irq_level());
        assert_eq!(drain(&mut uart), b"# ");
    }

    #[test]
    fn transmit_buffer_fills_and_drains() {
        let mut uart = VirtPl011::new();
        assert_eq!(drain(&mut uart), b"");
        // Writes of any width send the low byte.
        uart.write(reg::DR, 1, 0x41).unwrap();
        uart.write(reg::DR, 2, 0x0142).unwrap();
        uart.write(reg::DR, 4, 0xffff_ff43).unwrap();
        assert_eq!(uart.tx_pending(), 3);
        assert_eq!(read(&mut uart, reg::FR) & (fr::TXFE | fr::TXFF | fr::BUSY), 0);
        assert_eq!(drain(&mut uart), b"ABC");
        assert_ne!(read(&mut uart, reg::FR) & fr::TXFE, 0);

        // Fill the buffer: TX stays up while there is room for 32 bytes.
        for i in 0..TX_BUFFER_SIZE {
            assert_eq!(read(&mut uart, reg::FR) & fr::TXFF, 0);
            write(&mut uart, reg::DR, (i % 256) as u32);
            assert_eq!(uart.ris() & int::TX != 0, TX_BUFFER_SIZE - i > TX_TRIGGER_ROOM, "after byte {i}");
        }
        assert_eq!(read(&mut uart, reg::FR) & (fr::TXFF | fr::TXFE), fr::TXFF);
        // A driver that does not poll loses bytes, counted.
        write(&mut uart, reg::DR, 0xee);
        assert_eq!((uart.tx_pending(), uart.tx_dropped()), (TX_BUFFER_SIZE, 1));
        // Draining makes room: TX comes back.
        let out = drain(&mut uart);
        assert_eq!(out, (0..TX_BUFFER_SIZE).map(|i| (i % 256) as u8).collect::<Vec<_>>());
        assert_ne!(uart.ris() & int::TX, 0);
        assert_eq!(read(&mut uart, reg::FR) & (fr::TXFF | fr::TXFE), fr::TXFE);
    }

    #[test]
    fn transmit_interrupt_sources() {
        let mut uart = VirtPl011::new();
        write(&mut uart, reg::IMSC, int::TX);
        assert!(!uart.irq_level());
        // Enabling the transmitter raises TX (its empty FIFO is below the
        // trigger level); enabling it again does not.
        write(&mut uart, reg::CR, cr::UARTEN | cr::TXE | cr::RXE);
        assert!(uart.irq_level());
        write(&mut uart, reg::ICR, int::TX);
        assert!(!uart.irq_level());
        write(&mut uart, reg::CR, cr::UARTEN | cr::TXE);
        assert!(!uart.irq_level());
        // A write raises it (as in QEMU); the guest's clear drops it.
        write(&mut uart, reg::DR, u32::from(b'x'));
        assert_eq!(read(&mut uart, reg::MIS), int::TX);
        write(&mut uart, reg::ICR, int::ALL);
        assert!(!uart.irq_level());
        // A drain that only empties a buffer that was below the trigger
        // level anyway does not raise it again.
        assert_eq!(drain(&mut uart), b"x");
        assert!(!uart.irq_level());
    }

    #[test]
    fn receive_fifo_flags_and_overrun() {
        let mut uart = VirtPl011::new();
        write(&mut uart, reg::LCR_H, 0x70);
        assert_eq!((uart.rx_depth(), uart.rx_room()), (RX_FIFO_DEPTH, RX_FIFO_DEPTH));
        assert_ne!(read(&mut uart, reg::FR) & fr::RXFE, 0);
        for i in 0..RX_FIFO_DEPTH {
            assert!(uart.push_rx(b'a' + i as u8));
            assert_eq!(read(&mut uart, reg::FR) & (fr::RXFE | fr::RXFF) == fr::RXFF, i == RX_FIFO_DEPTH - 1);
        }
        assert_eq!(uart.rx_room(), 0);
        // One more is an overrun: lost, flagged in RSR and RIS.
        assert!(!uart.push_rx(b'!'));
        assert_eq!(read(&mut uart, reg::RSR), RSR_OE);
        assert_ne!(uart.ris() & int::OE, 0);
        write(&mut uart, reg::RSR, 0); // UARTECR
        write(&mut uart, reg::ICR, int::OE);
        assert_eq!((read(&mut uart, reg::RSR), uart.ris() & int::OE), (0, 0));
        // Read back in order, through the ring's wrap-around.
        let first: Vec<u32> = (0..4).map(|_| read(&mut uart, reg::DR)).collect();
        assert_eq!(first, [0x61, 0x62, 0x63, 0x64]);
        assert_eq!(read(&mut uart, reg::FR) & (fr::RXFE | fr::RXFF), 0);
        for &byte in b"WXYZ" {
            assert!(uart.push_rx(byte));
        }
        let rest: Vec<u8> = (0..16).map(|_| u8::try_from(read(&mut uart, reg::DR)).unwrap()).collect();
        assert_eq!(rest, b"efghijklmnopWXYZ");
        assert_ne!(read(&mut uart, reg::FR) & fr::RXFE, 0);
        // Empty: reads return 0 and change nothing.
        assert_eq!(read(&mut uart, reg::DR), 0);
        assert_eq!(uart.rx_len(), 0);
    }

    #[test]
    fn without_fen_the_fifo_is_one_deep() {
        let mut uart = VirtPl011::new();
        assert_eq!(uart.rx_depth(), 1);
        assert!(uart.push_rx(b'1'));
        assert_eq!(read(&mut uart, reg::FR) & (fr::RXFE | fr::RXFF), fr::RXFF);
        assert_eq!(uart.rx_room(), 0);
        assert!(!uart.push_rx(b'2'));
        assert_eq!(read(&mut uart, reg::DR), u32::from(b'1'));
        assert_eq!(read(&mut uart, reg::FR) & (fr::RXFE | fr::RXFF), fr::RXFE);
        // Turning the FIFOs on or off empties the receive side.
        assert!(uart.push_rx(b'3'));
        write(&mut uart, reg::LCR_H, LCR_H_FEN);
        assert_eq!((uart.rx_len(), uart.ris() & (int::RX | int::RT)), (0, 0));
        assert!(uart.push_rx(b'4') && uart.push_rx(b'5'));
        write(&mut uart, reg::LCR_H, LCR_H_FEN | 0x60); // same FEN: kept
        assert_eq!(uart.rx_len(), 2);
        write(&mut uart, reg::LCR_H, 0x60);
        assert_eq!(uart.rx_len(), 0);
    }

    #[test]
    fn receive_interrupts_raise_mask_and_clear() {
        let mut uart = VirtPl011::new();
        write(&mut uart, reg::LCR_H, LCR_H_FEN);
        assert!(uart.push_rx(b'a'));
        // Raised, but masked.
        assert_eq!(read(&mut uart, reg::RIS), int::RX | int::RT);
        assert_eq!(read(&mut uart, reg::MIS), 0);
        assert!(!uart.irq_level());
        write(&mut uart, reg::IMSC, int::RT);
        assert_eq!(read(&mut uart, reg::MIS), int::RT);
        assert!(uart.irq_level());
        write(&mut uart, reg::IMSC, int::RX | int::RT);
        // ICR clears them with data still present; the next byte raises
        // them again.
        write(&mut uart, reg::ICR, int::RX | int::RT);
        assert!(!uart.irq_level());
        assert!(uart.push_rx(b'b'));
        assert!(uart.irq_level());
        // Reading part of the FIFO keeps them; reading it empty clears them.
        assert_eq!(read(&mut uart, reg::DR), u32::from(b'a'));
        assert!(uart.irq_level());
        assert_eq!(read(&mut uart, reg::DR), u32::from(b'b'));
        assert_eq!((read(&mut uart, reg::RIS), uart.irq_level()), (0, false));
        // Only 1s clear, and only implemented bits stay in IMSC.
        assert!(uart.push_rx(b'c'));
        write(&mut uart, reg::ICR, 0);
        assert_eq!(read(&mut uart, reg::RIS), int::RX | int::RT);
        write(&mut uart, reg::IMSC, u32::MAX);
        assert_eq!(read(&mut uart, reg::IMSC), int::ALL);
        // RIS and MIS are read-only.
        write(&mut uart, reg::RIS, 0);
        write(&mut uart, reg::MIS, 0);
        assert_eq!(read(&mut uart, reg::MIS), int::RX | int::RT);
    }

    #[test]
    fn loopback() {
        let mut uart = VirtPl011::new();
        write(&mut uart, reg::LCR_H, LCR_H_FEN);
        write(&mut uart, reg::IMSC, int::ALL);
        write(&mut uart, reg::CR, cr::UARTEN | cr::TXE | cr::RXE | cr::LBE);
        // Loopback with RTS, DTR, Out1, Out2 low: the lines drop, each
        // change raises its interrupt.
        assert_eq!(read(&mut uart, reg::FR) & (fr::CTS | fr::DSR | fr::DCD | fr::RI), 0);
        assert_eq!(
            read(&mut uart, reg::RIS) & (int::CTS | int::DSR | int::DCD | int::RI),
            int::CTS | int::DSR | int::DCD
        );
        write(&mut uart, reg::ICR, int::ALL);
        write(&mut uart, reg::CR, cr::UARTEN | cr::TXE | cr::RXE | cr::LBE | cr::OUT2 | cr::RTS);
        assert_eq!(read(&mut uart, reg::FR) & (fr::CTS | fr::DSR | fr::DCD | fr::RI), fr::CTS | fr::RI);
        assert_eq!(read(&mut uart, reg::RIS), int::CTS | int::RI);
        write(&mut uart, reg::ICR, int::ALL);
        // Written bytes come back in; none reach the wire; input is refused.
        write(&mut uart, reg::DR, u32::from(b'L'));
        assert_eq!(uart.tx_pending(), 0);
        assert_eq!(uart.rx_room(), 0);
        assert!(!uart.push_rx(b'x'));
        assert_eq!(read(&mut uart, reg::RSR), 0);
        assert_eq!(read(&mut uart, reg::RIS), int::RX | int::RT | int::TX);
        assert_eq!(read(&mut uart, reg::DR), u32::from(b'L'));
        // Out of loopback: the terminal's lines again.
        write(&mut uart, reg::CR, cr::UARTEN | cr::TXE | cr::RXE);
        assert_eq!(read(&mut uart, reg::FR) & (fr::CTS | fr::DSR | fr::DCD | fr::RI), fr::CTS | fr::DSR | fr::DCD);
        assert!(uart.push_rx(b'x'));
    }

    #[test]
    fn register_widths_and_reserved_space() {
        let mut uart = VirtPl011::new();
        // Registers keep their implemented bits only.
        for (offset, mask) in [
            (reg::ILPR, 0xff),
            (reg::IBRD, 0xffff),
            (reg::FBRD, 0x3f),
            (reg::LCR_H, 0xff),
            (reg::CR, cr::MASK),
            (reg::IFLS, 0x3f),
            (reg::IMSC, int::ALL),
            (reg::DMACR, 0x7),
        ] {
            write(&mut uart, offset, u32::MAX);
            assert_eq!(read(&mut uart, offset), mask, "offset {offset:#x}");
            write(&mut uart, offset, 0);
        }
        // A narrow write sets the register, zero-extended; a narrow read
        // returns the low bits.
        write(&mut uart, reg::IBRD, 0x1234);
        uart.write(reg::IBRD, 1, 0x56).unwrap();
        assert_eq!(read(&mut uart, reg::IBRD), 0x56);
        write(&mut uart, reg::IBRD, 0xabcd);
        assert_eq!(uart.read(reg::IBRD, 1), Ok(0xcd));
        // Offsets that are not a register's: 0, writes ignored.
        let before = uart.clone();
        for offset in [0x1, 0x2, 0x8, 0x14, 0x1c, 0x4c, 0x80, 0xfd0, 0xffe] {
            assert_eq!(uart.read(offset, 1), Ok(0), "offset {offset:#x}");
            uart.write(offset, 1, 0xff).unwrap();
        }
        write(&mut uart, reg::FR, 0);
        assert_eq!(read(&mut uart, reg::ICR), 0);
        assert_eq!(uart, before);
        // No 8-byte accesses.
        assert_eq!(uart.read(reg::DR, 8), Err(MmioFault::Unsupported { offset: 0, size: 8 }));
        assert_eq!(uart.write(reg::CR, 8, 0), Err(MmioFault::Unsupported { offset: 0x30, size: 8 }));
        assert_eq!(uart, before);
    }

    #[test]
    fn through_the_mmio_bus() {
        const BASE: u64 = 0x0900_0000;
        let mut uart = VirtPl011::new();
        let mut bus: MmioBus<'_, 1> = MmioBus::new();
        bus.register(BASE, WINDOW_SIZE, &mut uart).unwrap();
        assert_eq!(bus.read(BASE + 0xfe8, AccessSize::Word), Ok(0x14));
        bus.write(BASE, AccessSize::Byte, u64::from(b'!')).unwrap();
        assert_eq!(bus.read(BASE + reg::FR, AccessSize::Half), Ok(0x17));
        assert_eq!(drain(&mut uart), b"!");
    }

    /// One step of a random guest and world.
    #[derive(Clone, Debug)]
    enum Op {
        Read {
            offset: u64,
            size: u8,
        },
        Write {
            offset: u64,
            size: u8,
            value: u32,
        },
        Push(u8),
        /// Writes `count` bytes to `UARTDR` without polling `UARTFR`.
        Burst(u8, u16),
        Drain,
        Reset,
    }

    fn op() -> impl Strategy<Value = Op> {
        let registers = prop::sample::select(vec![
            reg::DR,
            reg::DR,
            reg::RSR,
            reg::FR,
            reg::LCR_H,
            reg::CR,
            reg::IFLS,
            reg::IMSC,
            reg::RIS,
            reg::MIS,
            reg::ICR,
            reg::DMACR,
            0xfe0,
        ]);
        let offset = prop_oneof![4 => registers, 1 => 0..WINDOW_SIZE];
        let size = prop::sample::select(vec![1_u8, 2, 4, 4, 8]);
        // Values: mostly few bits set, so LBE and FEN come and go.
        let value = prop_oneof![any::<u8>().prop_map(u32::from), any::<u32>(), (0..16_u32).prop_map(|b| 1 << b)];
        prop_oneof![
            3 => (offset.clone(), size.clone()).prop_map(|(offset, size)| Op::Read { offset, size }),
            3 => (offset, size, value).prop_map(|(offset, size, value)| Op::Write { offset, size, value }),
            3 => any::<u8>().prop_map(Op::Push),
            1 => (any::<u8>(), 0..100_u16).prop_map(|(first, count)| Op::Burst(first, count)),
            1 => Just(Op::Drain),
            1 => Just(Op::Reset),
        ]
    }

    /// Everything the guest can see agrees with the FIFO levels.
    fn check_consistent(uart: &VirtPl011, rx: &VecDeque<u8>) {
        let depth = uart.rx_depth();
        let flags = uart.flags();
        assert!(uart.rx_len() <= depth && uart.tx_pending() <= TX_BUFFER_SIZE);
        assert_eq!(uart.rx_len(), rx.len());
        assert_eq!(flags & fr::RXFE != 0, uart.rx_len() == 0);
        assert_eq!(flags & fr::RXFF != 0, uart.rx_len() == depth);
        assert_eq!(flags & fr::TXFE != 0, uart.tx_pending() == 0);
        assert_eq!(flags & fr::TXFF != 0, uart.tx_pending() == TX_BUFFER_SIZE);
        assert_eq!(flags & fr::BUSY, 0);
        let loopback = uart.control() & cr::LBE != 0;
        assert_eq!(uart.rx_room(), if loopback { 0 } else { depth - uart.rx_len() });
        if uart.rx_len() == 0 {
            assert_eq!(uart.ris() & (int::RX | int::RT), 0);
        }
        if uart.ris() & int::TX != 0 {
            assert!(TX_BUFFER_SIZE - uart.tx_pending() >= TX_TRIGGER_ROOM);
        }
        assert_eq!(uart.ris() & !int::ALL, 0);
        assert_eq!(uart.irq_level(), uart.ris() & uart.imsc() != 0);
    }

    /// As the property tests under tests/ run: 256 cases unless
    /// `PROPTEST_CASES` says otherwise, no regression files.
    fn config() -> ProptestConfig {
        let mut config = ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = 256;
        }
        config.failure_persistence = None;
        config
    }

    proptest! {
        #![proptest_config(config())]

        /// Random guest accesses, input and draining never panic or fault
        /// on a supported size; flags and interrupts always match the FIFO
        /// levels; bytes come out of each FIFO as they went in.
        #[test]
        fn random_sequences_stay_consistent(ops in prop::collection::vec(op(), 1..400)) {
            let mut uart = VirtPl011::new();
            let mut rx = VecDeque::new();
            let mut tx = Vec::new();
            let mut dropped = 0_u64;
            for op in ops {
                let loopback = uart.control() & cr::LBE != 0;
                let register = |offset: u64, size: u8| size != 8 && offset.is_multiple_of(4);
                match op {
                    Op::Read { offset, size } => {
                        let value = uart.read(offset, size);
                        if size == 8 {
                            prop_assert_eq!(value, Err(MmioFault::Unsupported { offset, size }));
                        } else if offset == reg::DR {
                            prop_assert_eq!(value, Ok(rx.pop_front().map_or(0, u64::from)));
                        } else {
                            prop_assert!(value.unwrap() <= u64::from(u16::MAX));
                        }
                    }
                    Op::Write { offset, size, value } => {
                        let low = u64::from(value) & (u64::MAX >> (64 - 8 * u32::from(size.min(8))));
                        if register(offset, size) && offset == reg::DR {
                            let byte = (low & 0xff) as u8;
                            if loopback {
                                if rx.len() < uart.rx_depth() {
                                    rx.push_back(byte);
                                }
                            } else if uart.tx_pending() < TX_BUFFER_SIZE {
                                tx.push(byte);
                            } else {
                                dropped += 1;
                            }
                        }
                        let fen_before = uart.rx_depth();
                        let result = uart.write(offset, size, low);
                        prop_assert_eq!(result.is_ok(), size != 8);
                        if uart.rx_depth() != fen_before {
                            rx.clear();
                        }
                    }
                    Op::Push(byte) => {
                        let taken = !loopback && rx.len() < uart.rx_depth();
                        prop_assert_eq!(uart.push_rx(byte), taken);
                        if taken {
                            rx.push_back(byte);
                        }
                    }
                    Op::Burst(first, count) => {
                        for byte in (0..count).map(|i| first.wrapping_add(i as u8)) {
                            if loopback {
                                if rx.len() < uart.rx_depth() {
                                    rx.push_back(byte);
                                }
                            } else if uart.tx_pending() < TX_BUFFER_SIZE {
                                tx.push(byte);
                            } else {
                                dropped += 1;
                            }
                            uart.write(reg::DR, 1, u64::from(byte)).unwrap();
                        }
                    }
                    Op::Drain => {
                        let mut out = Vec::new();
                        let count = uart.drain_tx(|byte| out.push(byte));
                        prop_assert_eq!(count, out.len());
                        prop_assert_eq!(&out, &tx);
                        tx.clear();
                    }
                    Op::Reset => {
                        uart.reset();
                        rx.clear();
                    }
                }
                check_consistent(&uart, &rx);
                prop_assert_eq!(uart.tx_dropped(), dropped);
            }
        }
    }
}
