//! Failing a device's outstanding requests when its service VM is gone.
//!
//! A virtio driver waits for every buffer it made available until the
//! device uses it; virtio has no way for a device that disappeared to say
//! so, and Linux's `virtio_blk` does not reset a device that reports
//! `NEEDS_RESET`. A flush (which no capacity check stops) or a request the
//! service VM never finished would then hang the client for good. So once
//! a client's device has failed, the hypervisor uses its buffers itself:
//! each request made available and not used is returned at once, a block
//! request with status `VIRTIO_BLK_S_IOERR`, console output dropped. This
//! is the whole of the virtqueue logic in the hypervisor, and it is a
//! failing device's only.
//!
//! The hypervisor knows the queues' places because it forwarded the
//! driver's writes that set them ([`Shadow::observe`]). It assumes the
//! split ring of virtio 1.x without `VIRTIO_F_EVENT_IDX` or indirect
//! descriptors (what `hvvirtio` offers), and that the device used the
//! buffers in the order they were made available (`hvvirtio` completes
//! each before it takes the next): the buffers not used are the available
//! ring's entries from the used ring's index on. Everything it reads is
//! the client's memory, so it is checked: a ring that makes no sense ends
//! the work with an error, and no address outside the client's RAM is
//! touched (the [`GuestMemory`] the caller gives checks each access).
//!
//! Written here rather than with rust-vmm's `virtio-queue`, which needs
//! `std` and is a device's full queue handling: the hypervisor needs
//! fifty lines of failing, no_std, and nothing else of a device.

use super::virtio as reg;
use super::{Access, DeviceType};

/// Queues a device has whose buffers are failed: the block device's
/// request queue, the console's receive and transmit queues.
pub const MAX_QUEUES: usize = 2;

/// A split virtqueue as its driver set it up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueShadow {
    pub size: u16,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    pub ready: bool,
}

/// What a driver wrote to a device's transport, as far as failing its
/// requests needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shadow {
    sel: u32,
    pub queues: [QueueShadow; MAX_QUEUES],
}

impl Shadow {
    /// Follows a write the driver made (reads change nothing).
    pub fn observe(&mut self, access: &Access) {
        if !access.write || access.size != 4 {
            return;
        }
        let value = access.value as u32;
        let offset = u64::from(access.offset);
        if offset == reg::STATUS && value == 0 {
            *self = Self::default();
            return;
        }
        if offset == reg::QUEUE_SEL {
            self.sel = value;
            return;
        }
        let Some(q) = self.queues.get_mut(self.sel as usize) else { return };
        let low = |old: u64| (old & !u64::from(u32::MAX)) | u64::from(value);
        let high = |old: u64| (old & u64::from(u32::MAX)) | (u64::from(value) << 32);
        match offset {
            reg::QUEUE_NUM => q.size = value as u16,
            reg::QUEUE_READY => q.ready = value & 1 != 0,
            reg::QUEUE_DESC_LOW => q.desc = low(q.desc),
            reg::QUEUE_DESC_HIGH => q.desc = high(q.desc),
            reg::QUEUE_DRIVER_LOW => q.driver = low(q.driver),
            reg::QUEUE_DRIVER_HIGH => q.driver = high(q.driver),
            reg::QUEUE_DEVICE_LOW => q.device = low(q.device),
            reg::QUEUE_DEVICE_HIGH => q.device = high(q.device),
            _ => {}
        }
    }
}

/// A client's memory, each access checked by the implementation (`false`:
/// not the client's, nothing done).
pub trait GuestMemory {
    fn read(&self, address: u64, bytes: &mut [u8]) -> bool;
    fn write(&mut self, address: u64, bytes: &[u8]) -> bool;
    /// Orders the writes before it (the used entries) before those after
    /// (the used index), as the client's driver will read them.
    fn barrier(&self) {}
}

/// Why failing a queue's requests stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The queue's size is 0 or not a power of two.
    BadSize,
    /// More buffers outstanding than the queue holds.
    BadIndex,
    /// A descriptor index past the table, or a chain longer than it.
    BadChain,
    /// A ring or buffer outside the client's RAM.
    Outside,
}

/// `VIRTIO_BLK_S_IOERR`.
const BLK_S_IOERR: u8 = 1;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;

fn read_u16(mem: &impl GuestMemory, address: u64) -> Result<u16, RingError> {
    let mut bytes = [0; 2];
    if mem.read(address, &mut bytes) {
        Ok(u16::from_le_bytes(bytes))
    } else {
        Err(RingError::Outside)
    }
}

/// Uses every buffer of queue `q` of a `kind` device that was made
/// available and not used: a block request with status IOERR, console
/// output dropped (the console's receive queue is left alone: its buffers
/// wait for input, which will not come). Returns how many it used.
pub fn fail_requests(
    kind: DeviceType,
    queue: usize,
    q: &QueueShadow,
    mem: &mut impl GuestMemory,
) -> Result<u16, RingError> {
    let fails = match kind {
        DeviceType::Block => queue == 0,
        DeviceType::Console => queue == 1,
    };
    if !q.ready || !fails {
        return Ok(0);
    }
    let size = q.size;
    if size == 0 || !size.is_power_of_two() {
        return Err(RingError::BadSize);
    }
    let avail = read_u16(mem, q.driver.wrapping_add(2))?;
    let used = read_u16(mem, q.device.wrapping_add(2))?;
    let outstanding = avail.wrapping_sub(used);
    if outstanding > size {
        return Err(RingError::BadIndex);
    }
    for i in 0..outstanding {
        let slot = u64::from(used.wrapping_add(i) & size.wrapping_sub(1));
        let head = read_u16(mem, q.driver.wrapping_add(4).wrapping_add(slot.wrapping_mul(2)))?;
        // The chain's last device-writable buffer: a block request's
        // status byte is its last byte.
        let mut index = head;
        let mut last_writable = None;
        let mut steps = 0u16;
        loop {
            if index >= size || steps >= size {
                return Err(RingError::BadChain);
            }
            steps = steps.saturating_add(1);
            let mut d = [0u8; 16];
            if !mem.read(q.desc.wrapping_add(u64::from(index).wrapping_mul(16)), &mut d) {
                return Err(RingError::Outside);
            }
            let field = |at: usize, n: usize| d.get(at..at.saturating_add(n)).unwrap_or_default();
            let le = |b: &[u8]| b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x));
            let (addr, len) = (le(field(0, 8)), le(field(8, 4)));
            let (flags, next) = (le(field(12, 2)) as u16, le(field(14, 2)) as u16);
            if flags & DESC_F_WRITE != 0 && len != 0 {
                last_writable = Some(addr.wrapping_add(len).wrapping_sub(1));
            }
            if flags & DESC_F_NEXT == 0 {
                break;
            }
            index = next;
        }
        let written = match (kind, last_writable) {
            (DeviceType::Block, Some(status)) => {
                if !mem.write(status, &[BLK_S_IOERR]) {
                    return Err(RingError::Outside);
                }
                1u32
            }
            _ => 0,
        };
        let mut element = [0u8; 8];
        let fields = u32::from(head).to_le_bytes().into_iter().chain(written.to_le_bytes());
        for (byte, value) in element.iter_mut().zip(fields) {
            *byte = value;
        }
        if !mem.write(q.device.wrapping_add(4).wrapping_add(slot.wrapping_mul(8)), &element) {
            return Err(RingError::Outside);
        }
    }
    if outstanding != 0 {
        mem.barrier();
        if !mem.write(q.device.wrapping_add(2), &avail.to_le_bytes()) {
            return Err(RingError::Outside);
        }
    }
    Ok(outstanding)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests;
