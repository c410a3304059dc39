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
//! | 0x30 | `DEVICES` | how many devices the client has on this link |
//! | 0x34 | `CLIENT_STATE` | the client VM's state: 0 off, 1 running, 2 stopping |
//! | 0x38 | `IRQ_LEVEL` (RW) | bit n: device n's interrupt line to the client is asserted |
//! | 0x3c | `EVENTS` (RW, write 1 to clear) | bit 0 [`EVENT_CLIENT_RESET`]: the client started or stopped since the bit was cleared |
//! | 0x40 | `CLIENT_RAM_BASE` (64-bit) | the client's guest-physical address that BAR2 offset 0 shows |
//! | 0x48 | `CLIENT_RAM_SIZE` (64-bit) | how many bytes of BAR2 are the client's RAM |
//! | 0x50..0x60 | `CLIENT_NAME` | the client VM's name, NUL-padded |
//! | 0x80 + 4n | `DEVICE_TYPE[n]` | device n's virtio device ID (2 block, 3 console), n < [`MAX_DEVICES`] |
//!
//! A write to `COMPLETE` with any other value is ignored: a backend that
//! lost track cannot complete what it did not see.
//!
//! The function's INTA is asserted while `PENDING` or `EVENTS` is not 0.
//! `EVENT_CLIENT_RESET` means every device of the client is back in its
//! reset state and the requests of its previous life are gone: a backend
//! drops what it knew of the devices (features, queues) and starts again.
//!
//! BAR2 is the client's RAM, read-write: the window a backend reads the
//! virtqueues and buffers through (guest address `a` is BAR2 offset
//! `a - CLIENT_RAM_BASE`), and nothing else.

pub mod fail;

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
    pub const DEVICES: u64 = 0x30;
    pub const CLIENT_STATE: u64 = 0x34;
    pub const IRQ_LEVEL: u64 = 0x38;
    pub const EVENTS: u64 = 0x3c;
    pub const CLIENT_RAM_BASE: u64 = 0x40;
    pub const CLIENT_RAM_SIZE: u64 = 0x48;
    pub const CLIENT_NAME: u64 = 0x50;
    pub const DEVICE_TYPE: u64 = 0x80;
}

/// Devices one client can have (`hv,virtio-mmio` subnodes).
pub const MAX_DEVICES: usize = 8;
/// `EVENTS` bit 0: the client started or stopped.
pub const EVENT_CLIENT_RESET: u32 = 1;
/// Bytes of `CLIENT_NAME`.
pub const NAME_LEN: usize = crate::control::NAME_LEN;

/// The backend function's PCI identity: vendor, device, class (system
/// peripheral, other).
pub const VENDOR_ID: u16 = crate::portal::VENDOR_ID;
pub const DEVICE_ID: u16 = 0x7a13;
pub const CLASS: crate::pci::config::ClassCode = crate::pci::config::ClassCode::OTHER_SYSTEM_PERIPHERAL;
/// Its registers: one page.
pub const REGS_SIZE: u64 = 4096;

/// The virtio device types a client can be given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceType {
    #[default]
    Block,
    Console,
}

impl DeviceType {
    /// Every type, with the word `hv,device` gives it.
    pub const ALL: [(Self, &'static str); 2] = [(Self::Block, "block"), (Self::Console, "console")];

    /// The type `hv,device = word` names.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, w)| *w == word).map(|(t, _)| *t)
    }

    pub fn word(self) -> &'static str {
        Self::ALL.iter().find(|(t, _)| *t == self).map_or("?", |(_, w)| w)
    }

    /// The virtio device ID (virtio 1.x, "Device Types").
    pub const fn virtio_id(self) -> u32 {
        match self {
            Self::Block => 2,
            Self::Console => 3,
        }
    }

    /// The type of virtio device ID `id`.
    pub const fn from_virtio_id(id: u32) -> Option<Self> {
        match id {
            2 => Some(Self::Block),
            3 => Some(Self::Console),
            _ => None,
        }
    }
}

/// What a backend function says about its client, fixed at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub ram_base: u64,
    pub ram_size: u64,
    pub name: [u8; NAME_LEN],
    /// The client's devices on this link, in `REQ_DEVICE` order.
    pub devices: [Option<DeviceType>; MAX_DEVICES],
}

impl LinkInfo {
    pub fn count(&self) -> u32 {
        self.devices.iter().filter(|d| d.is_some()).count() as u32
    }
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

/// What a write to the backend registers changed, for the hypervisor to
/// carry out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// A request completed: resume its vCPU with this.
    pub completion: Option<Completion>,
    /// `IRQ_LEVEL` was written: the client's lines are now these.
    pub lines: Option<u32>,
}

/// The backend function's registers, over one client's [`Queue`].
#[derive(Clone, Debug)]
pub struct BackendModel {
    pub queue: Queue,
    pub info: LinkInfo,
    response: u64,
    completed: u32,
    irq_level: u32,
    events: u32,
    client: crate::control::VmState,
}

impl BackendModel {
    pub const fn new(info: LinkInfo) -> Self {
        Self {
            queue: Queue::new(),
            info,
            response: 0,
            completed: 0,
            irq_level: 0,
            events: 0,
            client: crate::control::VmState::Off,
        }
    }

    /// Whether the function's interrupt source is active.
    pub fn level(&self) -> bool {
        !self.queue.is_empty() || self.events != 0
    }

    /// The client's lines (`IRQ_LEVEL`).
    pub const fn lines(&self) -> u32 {
        self.irq_level
    }

    /// The client changed state: a start or a stop puts its devices back
    /// in their reset state, which the backend learns from `EVENTS`; its
    /// lines drop and its requests go (nobody waits for them).
    pub fn client_changed(&mut self, state: crate::control::VmState) {
        use crate::control::VmState;
        let was = self.client;
        self.client = state;
        if was != state && matches!(state, VmState::Running | VmState::Off) {
            self.events |= EVENT_CLIENT_RESET;
            self.irq_level = 0;
            let _ = self.queue.drain().count();
        }
    }

    /// A read of `size` bytes at `offset`.
    pub fn read(&self, offset: u64, size: u8) -> u64 {
        let front = self.queue.front();
        let info = &self.info;
        let (register, width, value) = match offset & !3 {
            reg::REQ_VALUE | 0x1c => (reg::REQ_VALUE, 8, front.map_or(0, |r| r.access.value)),
            reg::RESPONSE | 0x24 => (reg::RESPONSE, 8, self.response),
            reg::CLIENT_RAM_BASE | 0x44 => (reg::CLIENT_RAM_BASE, 8, info.ram_base),
            reg::CLIENT_RAM_SIZE | 0x4c => (reg::CLIENT_RAM_SIZE, 8, info.ram_size),
            o @ reg::CLIENT_NAME..0x60 => {
                let at = o.saturating_sub(reg::CLIENT_NAME) as usize;
                let bytes = info.name.get(at..at.saturating_add(4)).unwrap_or_default();
                let word = bytes.iter().rev().fold(0u64, |w, &b| (w << 8) | u64::from(b));
                (o, 4, word)
            }
            o => {
                let value = match o {
                    reg::ID => ID_VALUE,
                    reg::PENDING => self.queue.len() as u32,
                    reg::REQ_ID => front.map_or(0, |r| r.id),
                    reg::REQ_DEVICE => front.map_or(0, |r| u32::from(r.access.device)),
                    reg::REQ_OFFSET => front.map_or(0, |r| u32::from(r.access.offset)),
                    reg::REQ_ACCESS => front.map_or(0, |r| r.access.access_word()),
                    reg::COMPLETED => self.completed,
                    reg::DEVICES => info.count(),
                    reg::CLIENT_STATE => self.client as u32,
                    reg::IRQ_LEVEL => self.irq_level,
                    reg::EVENTS => self.events,
                    o if o >= reg::DEVICE_TYPE => {
                        let n = (o.saturating_sub(reg::DEVICE_TYPE) / 4) as usize;
                        info.devices.get(n).copied().flatten().map_or(0, DeviceType::virtio_id)
                    }
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

    /// A write (32-bit, or 64-bit to `RESPONSE`).
    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> Effect {
        let mut effect = Effect::default();
        match (offset, size) {
            (reg::RESPONSE, 8) => self.response = value,
            (reg::RESPONSE, 4) => {
                self.response = (self.response & !u64::from(u32::MAX)) | (value & u64::from(u32::MAX))
            }
            (0x24, 4) => self.response = (self.response & u64::from(u32::MAX)) | (value << 32),
            (reg::COMPLETE, 4) => {
                if let Some(request) = self.queue.complete(value as u32) {
                    self.completed = self.completed.wrapping_add(1);
                    let value = if request.access.write { 0 } else { request.access.cut(self.response) };
                    effect.completion = Some(Completion { request, value });
                }
            }
            (reg::IRQ_LEVEL, 4) => {
                // Only the lines of devices the client has.
                let valid = (1u32 << self.info.count().min(31)).saturating_sub(1);
                self.irq_level = value as u32 & valid;
                effect.lines = Some(self.irq_level);
            }
            (reg::EVENTS, 4) => self.events &= !(value as u32),
            _ => {}
        }
        effect
    }
}

/// The `virtio,mmio` transport's registers (virtio 1.x, "MMIO Device
/// Register Layout", version 2) and the values of them that the
/// hypervisor's fallback and failing, the backend (`hvvirtio`) and the
/// guest-stub's checks share: one list for all of them.
pub mod virtio {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// Where the device's configuration space starts.
    pub const CONFIG: u64 = 0x100;
    /// `MagicValue`: "virt", little-endian.
    pub const MAGIC: u32 = 0x7472_6976;
    /// `Version` of this layout.
    pub const VERSION_2: u32 = 2;
    /// The status bit of a device that needs a reset.
    pub const STATUS_NEEDS_RESET: u32 = 0x40;
    /// `InterruptStatus` bits: used buffers, the configuration changed.
    pub const INT_USED: u32 = 1;
    pub const INT_CONFIG: u32 = 2;
}

/// A client's device while no service VM serves it: it is still what its
/// device tree says (the identification registers), its status says it
/// needs a reset, and its configuration space is zeros (a block device of
/// no sectors). Losing its service raises the configuration-change
/// interrupt once, so that the client's driver reads the configuration
/// again (a block device's capacity, now 0) instead of waiting: its I/O
/// then fails. Every other write is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fallback {
    pub device: DeviceType,
    /// `InterruptStatus`.
    pub interrupt: u32,
}

/// The vendor ID a fallback device reports ("HV" and the project's mark).
pub const FALLBACK_VENDOR: u32 = 0x4856_0001;

impl Fallback {
    /// The device just lost its service.
    pub const fn lost(device: DeviceType) -> Self {
        Self { device, interrupt: virtio::INT_CONFIG }
    }

    /// Whether its interrupt line is asserted.
    pub const fn level(&self) -> bool {
        self.interrupt != 0
    }

    /// What `access` (a read) returns.
    pub fn read(&self, access: &Access) -> u64 {
        let value = match u64::from(access.offset & !3) {
            virtio::MAGIC_VALUE => virtio::MAGIC,
            virtio::VERSION => virtio::VERSION_2,
            virtio::DEVICE_ID => self.device.virtio_id(),
            virtio::VENDOR_ID => FALLBACK_VENDOR,
            virtio::STATUS => virtio::STATUS_NEEDS_RESET,
            virtio::INTERRUPT_STATUS => self.interrupt,
            _ => 0,
        };
        let shift = 8u32.saturating_mul(u32::from(access.offset & 3));
        access.cut(u64::from(value).checked_shr(shift).unwrap_or(0))
    }

    /// `access` (a write): only `InterruptACK` does anything. Returns
    /// whether the line changed.
    pub fn write(&mut self, access: &Access) -> bool {
        if u64::from(access.offset) != virtio::INTERRUPT_ACK || access.size != 4 {
            return false;
        }
        let was = self.level();
        self.interrupt &= !(access.value as u32);
        was != self.level()
    }
}

/// The guest-stub's word that makes a client and its service VM time
/// forwarded reads instead of checking (`stub=virtio-bench=N`, in both).
pub const BENCH_WORD: &str = "stub=virtio-bench=";

/// Which side of a forwarded device a [`BenchReport`] is from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BenchRole {
    /// The client VM, which reads the device's window and times it.
    #[default]
    Client,
    /// The service VM, whose backend function completes the reads.
    Service,
}

impl BenchRole {
    const fn word(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Service => "service",
        }
    }
}

/// What one side measured in `stub=virtio-bench=N`, in nanoseconds of the
/// virtual counter (instructions under `-icount shift=0`): printed by the
/// guest-stub, read by `make bench`. One round is one forwarded read: the
/// client's load traps, the service VM's backend takes the request and
/// completes it, the client resumes after the load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchReport {
    pub role: BenchRole,
    pub rounds: u32,
    /// Client only: from the first round's start to the last's end.
    pub total: u64,
    /// This side's own instructions (EL1 and EL0) over the rounds.
    pub guest: u64,
    /// Client only: the median, fastest and slowest round.
    pub median: u64,
    pub min: u64,
    pub max: u64,
}

/// The line's words before the figures.
const BENCH_PREFIX: &str = "virtio bench: ";

impl core::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{BENCH_PREFIX}{} rounds {} total {} guest {} median {} min {} max {}",
            self.role.word(),
            self.rounds,
            self.total,
            self.guest,
            self.median,
            self.min,
            self.max
        )
    }
}

impl BenchReport {
    /// The report in a line of console text (the inverse of `Display`).
    pub fn find(line: &str) -> Option<Self> {
        let (_, rest) = line.split_once(BENCH_PREFIX)?;
        let mut words = rest.split(' ');
        let role = match words.next()? {
            "client" => BenchRole::Client,
            "service" => BenchRole::Service,
            _ => return None,
        };
        let [rounds, total, guest, median, min, max] =
            crate::report::named_values(&mut words, ["rounds", "total", "guest", "median", "min", "max"])?;
        let report = Self { role, rounds: u32::try_from(rounds).ok()?, total, guest, median, min, max };
        words.next().is_none().then_some(report)
    }
}

#[cfg(test)]
mod tests;
