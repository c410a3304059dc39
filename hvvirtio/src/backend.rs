//! The request loop's body, over the backend function's registers
//! (`platform::forward::reg`, behind `hvctl::pci::Registers`): what the
//! function says about its client ([`ClientInfo`]), and one round of
//! service ([`Backend::service`]): the client's resets, then every waiting
//! forwarded access, carried out on its device's transport and completed,
//! then the client's interrupt lines. The Linux main loop calls it each
//! time the function's interrupt fires; the host tests call it over
//! `platform::forward::BackendModel`, the hypervisor's own model of the
//! registers.
//!
//! A client reset that comes while a request is being carried out is seen
//! before the next one (`EVENTS` is read before each request), so at most
//! one access of the client's new life meets the old state; the first
//! thing a driver does is read identification registers and write
//! `Status` 0, which the old state answers the same.

use crate::blk::Block;
use crate::console::Console;
use crate::transport::{Fault, Transport};
use hvctl::pci::Registers;
use platform::forward::{reg, DeviceType, ACCESS_WRITE, EVENT_CLIENT_RESET, MAX_DEVICES, NAME_LEN};
use vm_memory::GuestMemoryMmap;

/// Makes this CPU's writes to the client's RAM (used rings, buffers)
/// visible before the register write that follows (`IRQ_LEVEL`,
/// `COMPLETE`) can let the client look. BAR2 is write-combining (Normal
/// non-cacheable), whose writes may sit in a buffer, and the register
/// write traps to the hypervisor, which is no barrier for them: `dsb st`,
/// as Linux's `wmb()` before a doorbell.
fn publish() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a barrier; it touches no memory or register Rust knows of.
    unsafe {
        core::arch::asm!("dsb st", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// What the backend function says about its client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub name: String,
    pub ram_base: u64,
    pub ram_size: u64,
    /// `DEVICE_TYPE[n]` for every n: the virtio device ID, 0 for none.
    pub device_types: [u32; MAX_DEVICES],
}

impl ClientInfo {
    pub fn read(regs: &impl Registers) -> Self {
        let mut name = [0u8; NAME_LEN];
        for (i, word) in name.chunks_mut(4).enumerate() {
            let value = regs.read32(reg::CLIENT_NAME + 4 * i as u64).to_le_bytes();
            word.copy_from_slice(value.get(..word.len()).unwrap_or_default());
        }
        let end = name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        let mut device_types = [0; MAX_DEVICES];
        for (n, t) in device_types.iter_mut().enumerate() {
            *t = regs.read32(reg::DEVICE_TYPE + 4 * n as u64);
        }
        Self {
            name: String::from_utf8_lossy(name.get(..end).unwrap_or_default()).into_owned(),
            ram_base: regs.read64(reg::CLIENT_RAM_BASE),
            ram_size: regs.read64(reg::CLIENT_RAM_SIZE),
            device_types,
        }
    }

    /// The devices, by index, with their type (`Err(id)`: a virtio device
    /// ID this backend does not serve).
    pub fn devices(&self) -> impl Iterator<Item = (usize, Result<DeviceType, u32>)> + '_ {
        self.device_types
            .iter()
            .enumerate()
            .filter(|(_, &id)| id != 0)
            .map(|(n, &id)| (n, DeviceType::from_virtio_id(id).ok_or(id)))
    }
}

/// A served device.
pub enum Slot {
    Block(Transport<Block>),
    Console(Transport<Console>),
}

impl Slot {
    fn read(&self, offset: u64, size: u8) -> u64 {
        match self {
            Self::Block(t) => t.read(offset, size),
            Self::Console(t) => t.read(offset, size),
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64, mem: &GuestMemoryMmap) {
        match self {
            Self::Block(t) => t.write(offset, size, value, mem),
            Self::Console(t) => t.write(offset, size, value, mem),
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Block(t) => t.reset(),
            Self::Console(t) => t.reset(),
        }
    }

    fn interrupt(&self) -> u32 {
        match self {
            Self::Block(t) => t.interrupt(),
            Self::Console(t) => t.interrupt(),
        }
    }

    fn take_fault(&mut self) -> Option<Fault> {
        match self {
            Self::Block(t) => t.take_fault(),
            Self::Console(t) => t.take_fault(),
        }
    }
}

/// The loop's own counts, for the stats line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopStats {
    pub requests: u64,
    pub client_resets: u64,
    pub faults: u64,
    /// Requests for a device index nothing serves (answered 0).
    pub unserved: u64,
}

/// Something the main loop should tell the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    ClientReset { state: u32 },
    Fault { device: usize, fault: Fault },
}

/// Every device of one client, and its RAM.
pub struct Backend {
    slots: Vec<Option<Slot>>,
    mem: GuestMemoryMmap,
    /// What `IRQ_LEVEL` was last set to.
    lines: u32,
    pub stats: LoopStats,
    notes: Vec<Note>,
}

impl Backend {
    /// `slots[n]` serves the client's device n.
    pub fn new(mem: GuestMemoryMmap, slots: Vec<Option<Slot>>) -> Self {
        Self { slots, mem, lines: 0, stats: LoopStats::default(), notes: Vec::new() }
    }

    pub fn slot(&self, n: usize) -> Option<&Slot> {
        self.slots.get(n)?.as_ref()
    }

    pub fn slot_mut(&mut self, n: usize) -> Option<&mut Slot> {
        self.slots.get_mut(n)?.as_mut()
    }

    /// What happened since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        core::mem::take(&mut self.notes)
    }

    /// One round: the client's resets, every waiting request, the lines.
    /// Returns the requests completed.
    pub fn service(&mut self, regs: &impl Registers) -> u64 {
        let mut done = 0;
        loop {
            self.events(regs);
            if regs.read32(reg::PENDING) == 0 {
                break;
            }
            let id = regs.read32(reg::REQ_ID);
            if id == 0 {
                // Drained by a client reset between the two reads.
                continue;
            }
            let device = regs.read32(reg::REQ_DEVICE) as usize;
            let offset = u64::from(regs.read32(reg::REQ_OFFSET));
            let access = regs.read32(reg::REQ_ACCESS);
            let size = (access & 0xff) as u8;
            if access & ACCESS_WRITE != 0 {
                let value = regs.read64(reg::REQ_VALUE);
                match self.slots.get_mut(device).and_then(Option::as_mut) {
                    Some(slot) => slot.write(offset, size, value, &self.mem),
                    None => self.stats.unserved += 1,
                }
            } else {
                let value = match self.slots.get(device).and_then(Option::as_ref) {
                    Some(slot) => slot.read(offset, size),
                    None => {
                        self.stats.unserved += 1;
                        0
                    }
                };
                regs.write64(reg::RESPONSE, value);
            }
            // The lines before the completion: the client's vCPU resumes
            // with the interrupt a notification raised already pending.
            self.collect_faults();
            publish();
            self.sync_lines(regs);
            regs.write32(reg::COMPLETE, id);
            self.stats.requests += 1;
            done += 1;
        }
        self.sync_lines(regs);
        done
    }

    /// Works device `n`'s queues outside a request (console input came).
    pub fn kick(&mut self, regs: &impl Registers, n: usize) {
        match self.slots.get_mut(n).and_then(Option::as_mut) {
            Some(Slot::Block(t)) => t.process(&self.mem),
            Some(Slot::Console(t)) => t.process(&self.mem),
            None => {}
        }
        self.collect_faults();
        publish();
        self.sync_lines(regs);
    }

    fn events(&mut self, regs: &impl Registers) {
        let events = regs.read32(reg::EVENTS);
        if events & EVENT_CLIENT_RESET != 0 {
            // Cleared first: a reset after this read sets it again.
            regs.write32(reg::EVENTS, EVENT_CLIENT_RESET);
            for slot in self.slots.iter_mut().flatten() {
                slot.reset();
            }
            // The function dropped the lines itself.
            self.lines = 0;
            self.stats.client_resets += 1;
            self.notes.push(Note::ClientReset { state: regs.read32(reg::CLIENT_STATE) });
        }
    }

    fn collect_faults(&mut self) {
        for (device, slot) in self.slots.iter_mut().enumerate() {
            if let Some(fault) = slot.as_mut().and_then(Slot::take_fault) {
                self.stats.faults += 1;
                self.notes.push(Note::Fault { device, fault });
            }
        }
    }

    /// Sets `IRQ_LEVEL` to the devices' `InterruptStatus`, when it differs.
    fn sync_lines(&mut self, regs: &impl Registers) {
        let lines = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.interrupt() != 0))
            .fold(0u32, |lines, (n, _)| lines | 1u32.checked_shl(n as u32).unwrap_or(0));
        if lines != self.lines {
            regs.write32(reg::IRQ_LEVEL, lines);
            self.lines = lines;
        }
    }
}

#[cfg(test)]
mod tests;
