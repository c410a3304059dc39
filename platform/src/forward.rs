//! Forwarded MMIO: a client VM's accesses to a `virtio,mmio` register
//! window, which the hypervisor does not emulate itself but hands, one at
//! a time, to the service VM that serves the device (`hv,virtio-mmio`
//! subnodes of the client's VM node, [`crate::board::vms`]).
//!
//! This module is the pure part, host-tested, that the hypervisor, the
//! service VM's backend and the tests share:
//!
//! - [`Access`]: one trapped access (device, offset, size, direction,
//!   value), and the rules for what may be forwarded ([`Access::new`]).
//! - [`Queue`]: the requests waiting for the service VM, oldest first,
//!   each with an ID; completing one by its ID.
//! - [`BackendModel`]: the registers of the backend function the service
//!   VM drives (`reg`): the oldest request, its response, completion.
//! - [`fallback_read`]: what a client reads while no service VM serves its
//!   device (it is off, or stopped): a `virtio,mmio` device that needs a
//!   reset, so the client's driver fails its I/O instead of waiting.
//!
//! # Backend registers (BAR0, 4 KiB; 32-bit unless said, read-only unless said)
//!
//! | offset | name | meaning |
//! |-------:|------|---------|
//! | 0x00 | `ID` | [`ID_VALUE`] |
//! | 0x04 | `PENDING` | requests waiting (0: the registers below describe none) |
//! | 0x08 | `REQ_ID` | the oldest request's ID (never 0) |
//! | 0x0c | `REQ_DEVICE` | its device: the index of the client's `hv,virtio-mmio` node |
//! | 0x10 | `REQ_OFFSET` | its offset in the device's register window |
//! | 0x14 | `REQ_ACCESS` | its size in bytes in [7:0], bit 8 set for a write |
//! | 0x18 | `REQ_VALUE` (64-bit) | the value a write stores |
//! | 0x20 | `RESPONSE` (RW, 64-bit) | the value the next completed read returns |
//! | 0x28 | `COMPLETE` (WO) | writing the oldest request's ID completes it (a read returns `RESPONSE`) |
//! | 0x2c | `COMPLETED` | requests completed so far |
//!
//! A write to `COMPLETE` with any other value is ignored: a backend that
//! lost track cannot complete what it did not see.

/// What `ID` reads: "FW" and version 1.
pub const ID_VALUE: u32 = 0x4657_0001;
/// Requests one queue holds: one per vCPU of the client can be waiting.
pub const QUEUE_DEPTH: usize = 16;

/// Register offsets of the backend function's BAR0.
pub mod reg {
    pub const ID: u64 = 0x00;
    pub const PENDING: u64 = 0x04;
    pub const REQ_ID: u64 = 0x08;
    pub const REQ_DEVICE: u64 = 0x0c;
    pub const REQ_OFFSET: u64 = 0x10;
    pub const REQ_ACCESS: u64 = 0x14;
    pub const REQ_VALUE: u64 = 0x18;
    pub const RESPONSE: u64 = 0x20;
    pub const COMPLETE: u64 = 0x28;
    pub const COMPLETED: u64 = 0x2c;
}

/// `REQ_ACCESS` bit 8: the request is a write.
pub const ACCESS_WRITE: u32 = 1 << 8;

/// The `virtio,mmio` register window of one device (version 2 layout:
/// registers up to 0x100, the device's configuration space after).
pub const WINDOW_SIZE: u64 = 0x200;

/// Why an access is answered by the hypervisor instead of forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotForwarded {
    /// Not 1, 2, 4 or 8 bytes, or not naturally aligned: what no
    /// `virtio,mmio` register is (the client gets a data abort).
    BadAccess,
    /// Past the window.
    OutsideWindow,
}

/// One trapped access of a client to a forwarded window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub device: u8,
    pub offset: u16,
    pub size: u8,
    pub write: bool,
    /// What a write stores (only the low `size` bytes).
    pub value: u64,
}

impl Access {
    /// An access of `size` bytes at `offset` in device `device`'s window;
    /// checked: natural alignment, a size a register can have, inside the
    /// window. A write's value is cut to its size.
    pub fn new(device: u8, offset: u64, size: u8, write: bool, value: u64) -> Result<Self, NotForwarded> {
        if !matches!(size, 1 | 2 | 4 | 8) || !offset.is_multiple_of(u64::from(size)) {
            return Err(NotForwarded::BadAccess);
        }
        if offset.saturating_add(u64::from(size)) > WINDOW_SIZE {
            return Err(NotForwarded::OutsideWindow);
        }
        let mask = if size == 8 { u64::MAX } else { (1u64 << (8 * u32::from(size))).saturating_sub(1) };
        let value = if write { value & mask } else { 0 };
        Ok(Self { device, offset: offset as u16, size, write, value })
    }

    /// `REQ_ACCESS`.
    pub const fn access_word(&self) -> u32 {
        self.size as u32 | if self.write { ACCESS_WRITE } else { 0 }
    }

    /// What a read returns from a response: its low `size` bytes.
    pub const fn cut(&self, response: u64) -> u64 {
        match self.size {
            1 => response & 0xff,
            2 => response & 0xffff,
            4 => response & 0xffff_ffff,
            _ => response,
        }
    }
}

/// A request: an access, and the ID its completion names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: u32,
    pub access: Access,
    /// Who waits for it (the client's vCPU index), for the hypervisor.
    pub vcpu: u16,
}

/// Why a request was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull;

/// The requests of one client waiting for the service VM, oldest first.
#[derive(Clone, Debug)]
pub struct Queue {
    slots: [Option<Request>; QUEUE_DEPTH],
    head: usize,
    len: usize,
    next_id: u32,
}

impl Default for Queue {
    fn default() -> Self {
        Self::new()
    }
}

impl Queue {
    pub const fn new() -> Self {
        Self { slots: [None; QUEUE_DEPTH], head: 0, len: 0, next_id: 1 }
    }

    pub const fn len(&self) -> usize {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `access` of vCPU `vcpu`; returns the request's ID (never 0).
    pub fn push(&mut self, access: Access, vcpu: u16) -> Result<u32, QueueFull> {
        if self.len >= QUEUE_DEPTH {
            return Err(QueueFull);
        }
        let id = self.next_id;
        self.next_id = match self.next_id.wrapping_add(1) {
            0 => 1,
            next => next,
        };
        let at = self.head.wrapping_add(self.len) % QUEUE_DEPTH;
        if let Some(slot) = self.slots.get_mut(at) {
            *slot = Some(Request { id, access, vcpu });
        }
        self.len = self.len.saturating_add(1);
        Ok(id)
    }

    /// The oldest request.
    pub fn front(&self) -> Option<&Request> {
        if self.len == 0 {
            return None;
        }
        self.slots.get(self.head)?.as_ref()
    }

    /// Takes the oldest request if its ID is `id`.
    pub fn complete(&mut self, id: u32) -> Option<Request> {
        if self.front()?.id != id {
            return None;
        }
        let request = self.slots.get_mut(self.head)?.take();
        self.head = self.head.wrapping_add(1) % QUEUE_DEPTH;
        self.len = self.len.saturating_sub(1);
        request
    }

    /// Takes every request (the service VM went away: the hypervisor
    /// answers them itself).
    pub fn drain(&mut self) -> impl Iterator<Item = Request> + '_ {
        core::iter::from_fn(move || {
            let id = self.front()?.id;
            self.complete(id)
        })
    }
}

/// A completed request and the value its access returns (0 for a write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub request: Request,
    pub value: u64,
}

/// The backend function's registers, over one client's [`Queue`].
#[derive(Clone, Debug, Default)]
pub struct BackendModel {
    pub queue: Queue,
    response: u64,
    completed: u32,
}

impl BackendModel {
    pub const fn new() -> Self {
        Self { queue: Queue::new(), response: 0, completed: 0 }
    }

    /// A read of `size` bytes at `offset`.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        let front = self.queue.front();
        let (register, width, value) = match offset & !3 {
            reg::REQ_VALUE | 0x1c => (reg::REQ_VALUE, 8, front.map_or(0, |r| r.access.value)),
            reg::RESPONSE | 0x24 => (reg::RESPONSE, 8, self.response),
            o => {
                let value = match o {
                    reg::ID => ID_VALUE,
                    reg::PENDING => self.queue.len() as u32,
                    reg::REQ_ID => front.map_or(0, |r| r.id),
                    reg::REQ_DEVICE => front.map_or(0, |r| u32::from(r.access.device)),
                    reg::REQ_OFFSET => front.map_or(0, |r| u32::from(r.access.offset)),
                    reg::REQ_ACCESS => front.map_or(0, |r| r.access.access_word()),
                    reg::COMPLETED => self.completed,
                    _ => 0,
                };
                (o, 4, u64::from(value))
            }
        };
        let within = offset.saturating_sub(register);
        if within.saturating_add(u64::from(size)) > width {
            return 0;
        }
        let mask = if size >= 8 { u64::MAX } else { (1u64 << (8 * u32::from(size))).saturating_sub(1) };
        value.checked_shr(8u32.saturating_mul(within as u32)).unwrap_or(0) & mask
    }

    /// A write; returns the request it completed, with its value.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> Option<Completion> {
        match (offset, size) {
            (reg::RESPONSE, 8) => self.response = value,
            (reg::RESPONSE, 4) => {
                self.response = (self.response & !u64::from(u32::MAX)) | (value & u64::from(u32::MAX))
            }
            (0x24, 4) => self.response = (self.response & u64::from(u32::MAX)) | (value << 32),
            (reg::COMPLETE, 4) => {
                let request = self.queue.complete(value as u32)?;
                self.completed = self.completed.wrapping_add(1);
                let value = if request.access.write { 0 } else { request.access.cut(self.response) };
                return Some(Completion { request, value });
            }
            _ => {}
        }
        None
    }
}

/// `virtio,mmio` registers (version 2) the fallback answers.
pub mod virtio {
    pub const MAGIC_VALUE: u16 = 0x000;
    pub const VERSION: u16 = 0x004;
    pub const DEVICE_ID: u16 = 0x008;
    pub const VENDOR_ID: u16 = 0x00c;
    pub const STATUS: u16 = 0x070;
    /// "virt", little-endian.
    pub const MAGIC: u32 = 0x7472_6976;
    /// The status bit of a device that needs a reset.
    pub const STATUS_NEEDS_RESET: u32 = 0x40;
}

/// What a client reads at `offset` of a device of type `device_id` while
/// no service VM serves it: the identification registers (so the device
/// is still what its device tree says), a status that says the device
/// needs a reset, and 0 elsewhere (a configuration space of zeros: a
/// block device of no sectors). Writes are dropped.
pub fn fallback_read(device_id: u32, vendor_id: u32, access: &Access) -> u64 {
    let value = match access.offset & !3 {
        virtio::MAGIC_VALUE => virtio::MAGIC,
        virtio::VERSION => 2,
        virtio::DEVICE_ID => device_id,
        virtio::VENDOR_ID => vendor_id,
        virtio::STATUS => virtio::STATUS_NEEDS_RESET,
        _ => 0,
    };
    let shift = 8u32.saturating_mul(u32::from(access.offset & 3));
    access.cut(u64::from(value).checked_shr(shift).unwrap_or(0))
}

#[cfg(test)]
mod tests;
