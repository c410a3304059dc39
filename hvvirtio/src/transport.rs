//! The device side of the virtio-mmio transport (virtio 1.x, "MMIO Device
//! Register Layout", version 2): the registers a client's driver reads and
//! writes, one forwarded access at a time, for one device. It owns what
//! the transport keeps (feature selection, status, the virtqueues'
//! configuration, `InterruptStatus`) and leaves the device's own work to a
//! [`Device`] (block, console).
//!
//! # Register semantics
//!
//! - Registers (offsets below 0x100) answer 32-bit accesses only, as the
//!   specification requires of drivers; any other size reads 0 and a write
//!   of it is ignored. Unknown registers read 0; writes to them and to
//!   read-only registers are ignored.
//! - The configuration space (0x100..0x200) answers 1-, 2-, 4- and 8-byte
//!   reads, little-endian, with 0 past the device's configuration; writes
//!   are ignored (no device here has writable configuration).
//! - `Status`: writing 0 resets the device (queues, features, interrupt).
//!   Setting `FEATURES_OK` is refused (the bit does not stick) unless the
//!   driver's features are a subset of the device's and include
//!   `VIRTIO_F_VERSION_1`. Setting `DRIVER_OK` checks the ready queues.
//! - Queue registers select with `QueueSel`; a queue that does not exist
//!   has `QueueNumMax` 0 and ignores writes. A ready queue's size and
//!   addresses cannot be changed (writes ignored until `QueueReady` 0).
//! - Shared memory regions: none (`SHMLen` reads all ones, as the
//!   specification says of an unused ID).
//!
//! # A broken driver or a hostile client
//!
//! A queue outside the client's RAM or of a size that is not a power of two
//! up to `QueueNumMax`, an available index that jumps more than the queue
//! size, a descriptor chain that does not end or points outside RAM, a
//! request without a status byte: the device sets `DEVICE_NEEDS_RESET`
//! (status 0x40), raises the configuration-change interrupt
//! (`InterruptStatus` bit 1) and stops using its queues until the driver
//! resets it. Well-formed requests it cannot do are completed with an
//! error status instead (the device's own rules, e.g. `blk`). The backend
//! never panics on what the client wrote.

use crate::chain::{Chain, ChainError};
use core::fmt;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;

/// `VendorID`: "HV" and the project's mark, as the hypervisor's own
/// fallback device (`platform::forward::FALLBACK_VENDOR`) says, so that a
/// client sees one vendor whether the service VM answers or not.
pub const VENDOR_ID: u32 = platform::forward::FALLBACK_VENDOR;
/// `MagicValue`: "virt".
pub const MAGIC: u32 = reg::MAGIC;
/// The transport version (virtio 1.x, no legacy).
pub const VERSION: u32 = reg::VERSION_2;
/// `VIRTIO_F_VERSION_1` as a feature mask.
pub const F_VERSION_1: u64 = 1 << VIRTIO_F_VERSION_1;
/// Where the configuration space starts, and where the window ends.
pub const CONFIG: u64 = reg::CONFIG;
pub const WINDOW: u64 = platform::forward::WINDOW_SIZE;

/// Register offsets (virtio 1.x, 4.2.2): the list the hypervisor and the
/// guest-stub use too.
pub use platform::forward::virtio as reg;

/// `InterruptStatus` bits.
pub const INT_VRING: u32 = VIRTIO_MMIO_INT_VRING;
pub const INT_CONFIG: u32 = VIRTIO_MMIO_INT_CONFIG;
/// `Status` bits the transport looks at.
pub const S_FEATURES_OK: u32 = VIRTIO_CONFIG_S_FEATURES_OK;
pub const S_DRIVER_OK: u32 = VIRTIO_CONFIG_S_DRIVER_OK;
pub const S_NEEDS_RESET: u32 = VIRTIO_CONFIG_S_NEEDS_RESET;

/// Why a device needs a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A ready queue's rings are not in the client's RAM.
    QueueOutsideRam { queue: u16 },
    /// The driver set a queue size that is 0, not a power of two, or more
    /// than `QueueNumMax`.
    BadQueueSize { queue: u16 },
    /// The available index moved more than the queue size.
    AvailIndex { queue: u16 },
    /// A descriptor chain was refused.
    Chain { queue: u16, head: u16, error: ChainError },
    /// The used ring could not be written.
    UsedRing { queue: u16 },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueOutsideRam { queue } => write!(f, "queue {queue}: its rings are outside the client's RAM"),
            Self::BadQueueSize { queue } => write!(f, "queue {queue}: invalid size"),
            Self::AvailIndex { queue } => write!(f, "queue {queue}: the available index jumped past the queue size"),
            Self::Chain { queue, head, error } => write!(f, "queue {queue}: descriptor chain at {head}: {error}"),
            Self::UsedRing { queue } => write!(f, "queue {queue}: the used ring could not be written"),
        }
    }
}

/// A virtio device behind the transport.
pub trait Device {
    /// The virtio device ID (2 block, 3 console).
    fn id(&self) -> u32;
    /// Its features; [`F_VERSION_1`] must be among them.
    fn features(&self) -> u64;
    /// `QueueNumMax` of each of its queues (powers of two).
    fn queue_sizes(&self) -> &'static [u16];
    /// Its configuration space (little-endian).
    fn config(&self) -> Vec<u8>;
    /// Does what the ready queues hold (the driver notified, or the device
    /// has something new, such as console input). Returns a bit per queue
    /// whose used ring it added to.
    fn process(&mut self, mem: &GuestMemoryMmap, queues: &mut [Queue]) -> Result<u32, Fault>;
}

/// The next available chain of `queue` (number `index`), checked; `None`
/// when the driver has made none available.
pub fn next_chain(queue: &mut Queue, index: u16, mem: &GuestMemoryMmap) -> Result<Option<Chain>, Fault> {
    let mut iter = queue.iter(mem).map_err(|_| Fault::AvailIndex { queue: index })?;
    match iter.next() {
        None => Ok(None),
        Some(chain) => {
            let head = chain.head_index();
            Chain::collect(chain, mem).map(Some).map_err(|error| Fault::Chain { queue: index, head, error })
        }
    }
}

/// Puts a finished chain on `queue`'s used ring.
pub fn complete(queue: &mut Queue, index: u16, mem: &GuestMemoryMmap, head: u16, len: u32) -> Result<(), Fault> {
    queue.add_used(mem, head, len).map_err(|_| Fault::UsedRing { queue: index })
}

/// One device's transport state.
pub struct Transport<D> {
    device: D,
    queues: Vec<Queue>,
    /// A queue whose size the driver set to something invalid.
    bad_size: Vec<bool>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    interrupt: u32,
    shm_sel: u32,
    /// Why the device last needed a reset, for the backend to report.
    fault: Option<Fault>,
}

impl<D: Device> Transport<D> {
    pub fn new(device: D) -> Self {
        // The sizes are the device's own constants: powers of two up to
        // 32768, which `Queue::new` accepts; a size it refused would make a
        // queue that does not exist (QueueNumMax 0) rather than a panic.
        let queues: Vec<Queue> = device.queue_sizes().iter().filter_map(|&n| Queue::new(n).ok()).collect();
        let bad_size = vec![false; queues.len()];
        Self {
            device,
            queues,
            bad_size,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            interrupt: 0,
            shm_sel: 0,
            fault: None,
        }
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    /// `InterruptStatus`: the device's line to the client is asserted while
    /// it is not 0.
    pub fn interrupt(&self) -> u32 {
        self.interrupt
    }

    /// The fault that set `DEVICE_NEEDS_RESET`, taken once.
    pub fn take_fault(&mut self) -> Option<Fault> {
        self.fault.take()
    }

    /// Back to the reset state (the driver wrote 0 to `Status`, or the
    /// client restarted).
    pub fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.bad_size.iter_mut().for_each(|b| *b = false);
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.interrupt = 0;
        self.shm_sel = 0;
    }

    fn queue(&self) -> Option<&Queue> {
        self.queues.get(self.queue_sel as usize)
    }

    /// The selected queue, if it exists and is not ready (its setup may
    /// change).
    fn queue_to_set(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize).filter(|q| !q.ready())
    }

    /// A read of `size` bytes at `offset`.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        if offset >= CONFIG {
            return self.read_config(offset - CONFIG, size);
        }
        if size != 4 {
            return 0;
        }
        let half = |v: u64, high: bool| if high { v >> 32 } else { v & 0xffff_ffff };
        let value = match offset {
            reg::MAGIC_VALUE => u64::from(MAGIC),
            reg::VERSION => u64::from(VERSION),
            reg::DEVICE_ID => u64::from(self.device.id()),
            reg::VENDOR_ID => u64::from(VENDOR_ID),
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => half(self.device.features(), false),
                1 => half(self.device.features(), true),
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.queue().map_or(0, |q| u64::from(q.max_size())),
            reg::QUEUE_READY => self.queue().map_or(0, |q| u64::from(q.ready())),
            reg::INTERRUPT_STATUS => u64::from(self.interrupt),
            reg::STATUS => u64::from(self.status),
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => 0xffff_ffff,
            // The configuration never changes while the device runs.
            reg::CONFIG_GENERATION => 0,
            // Write-only, or unknown.
            _ => 0,
        };
        value
    }

    fn read_config(&self, at: u64, size: u8) -> u64 {
        if !matches!(size, 1 | 2 | 4 | 8) {
            return 0;
        }
        let config = self.device.config();
        (0..u64::from(size)).rev().fold(0u64, |value, i| {
            let byte = usize::try_from(at + i).ok().and_then(|i| config.get(i)).copied().unwrap_or(0);
            (value << 8) | u64::from(byte)
        })
    }

    /// A write of `size` bytes at `offset`. `mem` is the client's RAM, for
    /// a notification's work.
    pub fn write(&mut self, offset: u64, size: u8, value: u64, mem: &GuestMemoryMmap) {
        if offset >= CONFIG || size != 4 {
            return;
        }
        let value = value as u32;
        let set_low = |old: u64| (old & !0xffff_ffff) | u64::from(value);
        let set_high = |old: u64| (old & 0xffff_ffff) | (u64::from(value) << 32);
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            // Only before FEATURES_OK: the negotiated set is then fixed.
            reg::DRIVER_FEATURES if self.status & S_FEATURES_OK == 0 => match self.driver_features_sel {
                0 => self.driver_features = set_low(self.driver_features),
                1 => self.driver_features = set_high(self.driver_features),
                _ => {}
            },
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM => {
                let sel = self.queue_sel as usize;
                if let Some(q) = self.queue_to_set() {
                    let ok = u16::try_from(value).ok().is_some_and(|n| q.try_set_size(n).is_ok());
                    if let Some(bad) = self.bad_size.get_mut(sel) {
                        *bad = !ok;
                    }
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.queues.get_mut(self.queue_sel as usize) {
                    q.set_ready(value & 1 != 0);
                }
            }
            reg::QUEUE_DESC_LOW => self.set_address(|q| q.set_desc_table_address(Some(value), None)),
            reg::QUEUE_DESC_HIGH => self.set_address(|q| q.set_desc_table_address(None, Some(value))),
            reg::QUEUE_DRIVER_LOW => self.set_address(|q| q.set_avail_ring_address(Some(value), None)),
            reg::QUEUE_DRIVER_HIGH => self.set_address(|q| q.set_avail_ring_address(None, Some(value))),
            reg::QUEUE_DEVICE_LOW => self.set_address(|q| q.set_used_ring_address(Some(value), None)),
            reg::QUEUE_DEVICE_HIGH => self.set_address(|q| q.set_used_ring_address(None, Some(value))),
            // Every ready queue is looked at, whichever was named: the
            // devices here have one queue of each direction, and the work
            // is cheap when there is none.
            reg::QUEUE_NOTIFY => self.process(mem),
            reg::INTERRUPT_ACK => self.interrupt &= !value,
            reg::STATUS => self.write_status(value, mem),
            reg::SHM_SEL => self.shm_sel = value,
            _ => {}
        }
    }

    fn set_address(&mut self, set: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.queue_to_set() {
            set(q);
        }
    }

    fn write_status(&mut self, value: u32, mem: &GuestMemoryMmap) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut value = value;
        if value & S_FEATURES_OK != 0 && self.status & S_FEATURES_OK == 0 {
            let acceptable =
                self.driver_features & !self.device.features() == 0 && self.driver_features & F_VERSION_1 != 0;
            if !acceptable {
                value &= !S_FEATURES_OK;
            }
        }
        // NEEDS_RESET is the device's: the driver neither sets nor clears it.
        let starting = value & S_DRIVER_OK != 0 && self.status & S_DRIVER_OK == 0;
        self.status = (value & !S_NEEDS_RESET) | (self.status & S_NEEDS_RESET);
        if starting {
            self.process(mem);
        }
    }

    /// Whether the device works its queues: the driver is ready and the
    /// device has not failed.
    pub fn live(&self) -> bool {
        self.status & (S_DRIVER_OK | S_NEEDS_RESET) == S_DRIVER_OK
    }

    /// Works the ready queues (a notification, `DRIVER_OK`, or the device
    /// has new work such as console input).
    pub fn process(&mut self, mem: &GuestMemoryMmap) {
        if !self.live() {
            return;
        }
        if let Err(fault) = self.check_queues(mem) {
            return self.fail(fault);
        }
        match self.device.process(mem, &mut self.queues) {
            Ok(used) => {
                let mut notify = false;
                for (i, q) in self.queues.iter_mut().enumerate() {
                    if used & (1 << i) != 0 {
                        // A failed read of the driver's flags notifies: a
                        // spurious interrupt is harmless, a lost one hangs.
                        notify |= q.needs_notification(mem).unwrap_or(true);
                    }
                }
                if notify {
                    self.interrupt |= INT_VRING;
                }
            }
            Err(fault) => self.fail(fault),
        }
    }

    fn check_queues(&self, mem: &GuestMemoryMmap) -> Result<(), Fault> {
        for (i, q) in self.queues.iter().enumerate() {
            let queue = i as u16;
            if !q.ready() {
                continue;
            }
            if self.bad_size.get(i).copied().unwrap_or(false) {
                return Err(Fault::BadQueueSize { queue });
            }
            if !q.is_valid(mem) {
                return Err(Fault::QueueOutsideRam { queue });
            }
        }
        Ok(())
    }

    fn fail(&mut self, fault: Fault) {
        self.status |= S_NEEDS_RESET;
        self.interrupt |= INT_CONFIG;
        self.fault = Some(fault);
    }
}

#[cfg(test)]
mod tests;
