//! The driver's side, for the host tests: a split virtqueue laid out in a
//! test RAM the way a driver lays it out, a driver's register accesses,
//! and an output the tests can read back. Written from the specification
//! (virtio 1.x, 2.7 "Split Virtqueues"), independently of the device code
//! it checks.

use crate::transport::{reg, Device, Transport, F_VERSION_1};
use std::cell::RefCell;
use std::rc::Rc;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const RAM_BASE: u64 = 0x4000_0000;
pub const RAM_SIZE: usize = 1 << 20;
/// Status bits a driver sets.
pub const ACKNOWLEDGE: u32 = 1;
pub const DRIVER: u32 = 2;
pub const DRIVER_OK: u32 = 4;
pub const FEATURES_OK: u32 = 8;
/// Descriptor flags.
pub const F_NEXT: u16 = 1;
pub const F_WRITE: u16 = 2;

pub fn ram() -> GuestMemoryMmap {
    crate::memory::anonymous(RAM_BASE, RAM_SIZE).unwrap()
}

pub fn r<D: Device>(t: &Transport<D>, offset: u64) -> u32 {
    t.read(offset, 4) as u32
}

pub fn w<D: Device>(t: &mut Transport<D>, mem: &GuestMemoryMmap, offset: u64, value: u32) {
    t.write(offset, 4, u64::from(value), mem)
}

/// The driver's start (virtio 1.x, 3.1.1) up to `FEATURES_OK`, accepting
/// `features` of the device's; returns the status read back.
pub fn negotiate<D: Device>(t: &mut Transport<D>, mem: &GuestMemoryMmap, features: u64) -> u32 {
    w(t, mem, reg::STATUS, 0);
    w(t, mem, reg::STATUS, ACKNOWLEDGE);
    w(t, mem, reg::STATUS, ACKNOWLEDGE | DRIVER);
    w(t, mem, reg::DRIVER_FEATURES_SEL, 1);
    w(t, mem, reg::DRIVER_FEATURES, (features >> 32) as u32);
    w(t, mem, reg::DRIVER_FEATURES_SEL, 0);
    w(t, mem, reg::DRIVER_FEATURES, features as u32);
    w(t, mem, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    r(t, reg::STATUS)
}

/// What the device offers.
pub fn device_features<D: Device>(t: &mut Transport<D>, mem: &GuestMemoryMmap) -> u64 {
    w(t, mem, reg::DEVICE_FEATURES_SEL, 1);
    let high = u64::from(r(t, reg::DEVICE_FEATURES));
    w(t, mem, reg::DEVICE_FEATURES_SEL, 0);
    (high << 32) | u64::from(r(t, reg::DEVICE_FEATURES))
}

/// A split virtqueue in the test RAM: descriptor table at `base`,
/// available ring at `base + 0x800`, used ring at `base + 0xc00` (sizes up
/// to 128 fit).
pub struct Ring {
    pub base: u64,
    pub size: u16,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl Ring {
    pub fn new(base: u64, size: u16) -> Self {
        assert!(size <= 128);
        Self { base, size, next_desc: 0, avail_idx: 0, used_seen: 0 }
    }

    pub fn desc(&self) -> u64 {
        self.base
    }

    pub fn avail(&self) -> u64 {
        self.base + 0x800
    }

    pub fn used(&self) -> u64 {
        self.base + 0xc00
    }

    /// Sets queue `index` up with this ring and makes it ready.
    pub fn setup<D: Device>(&self, t: &mut Transport<D>, mem: &GuestMemoryMmap, index: u32) {
        w(t, mem, reg::QUEUE_SEL, index);
        assert_eq!(r(t, reg::QUEUE_READY), 0);
        assert!(r(t, reg::QUEUE_NUM_MAX) >= u32::from(self.size));
        w(t, mem, reg::QUEUE_NUM, u32::from(self.size));
        let split = |a: u64| (a as u32, (a >> 32) as u32);
        for (low, addr) in [
            (reg::QUEUE_DESC_LOW, self.desc()),
            (reg::QUEUE_DRIVER_LOW, self.avail()),
            (reg::QUEUE_DEVICE_LOW, self.used()),
        ] {
            let (lo, hi) = split(addr);
            w(t, mem, low, lo);
            w(t, mem, low + 4, hi);
        }
        w(t, mem, reg::QUEUE_READY, 1);
    }

    /// Writes descriptor `index` as it is.
    pub fn put_desc(&self, mem: &GuestMemoryMmap, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(self.desc() + 16 * u64::from(index));
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        mem.write_slice(&raw, at).unwrap();
    }

    /// Makes the chain at `head` available.
    pub fn publish(&mut self, mem: &GuestMemoryMmap, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        mem.write_obj(head.to_le(), GuestAddress(self.avail() + 4 + 2 * slot)).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx.to_le(), GuestAddress(self.avail() + 2)).unwrap();
    }

    /// Sets the available index as it is (a hostile driver).
    pub fn set_avail_idx(&mut self, mem: &GuestMemoryMmap, idx: u16) {
        self.avail_idx = idx;
        mem.write_obj(idx.to_le(), GuestAddress(self.avail() + 2)).unwrap();
    }

    /// Adds a chain of `(address, length, device-writable)` buffers and
    /// makes it available; returns its head.
    pub fn submit(&mut self, mem: &GuestMemoryMmap, buffers: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, writable)) in buffers.iter().enumerate() {
            let index = (head + i as u16) % self.size;
            let last = i + 1 == buffers.len();
            let flags = if writable { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            self.put_desc(mem, index, addr, len, flags, (index + 1) % self.size);
        }
        self.next_desc = (head + buffers.len() as u16) % self.size;
        self.publish(mem, head);
        head
    }

    /// The used elements (id, len) the device added since the last call.
    pub fn take_used(&mut self, mem: &GuestMemoryMmap) -> Vec<(u32, u32)> {
        let idx: u16 = u16::from_le(mem.read_obj(GuestAddress(self.used() + 2)).unwrap());
        let mut out = Vec::new();
        while self.used_seen != idx {
            let at = self.used() + 4 + 8 * u64::from(self.used_seen % self.size);
            let id: u32 = u32::from_le(mem.read_obj(GuestAddress(at)).unwrap());
            let len: u32 = u32::from_le(mem.read_obj(GuestAddress(at + 4)).unwrap());
            out.push((id, len));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }
}

/// A driver's whole start with `rings` as queues 0, 1...: returns the
/// status read back after `DRIVER_OK`.
pub fn start<D: Device>(t: &mut Transport<D>, mem: &GuestMemoryMmap, rings: &[&Ring]) -> u32 {
    let offered = device_features(t, mem);
    assert_ne!(offered & F_VERSION_1, 0);
    assert_ne!(negotiate(t, mem, offered) & FEATURES_OK, 0);
    for (i, ring) in rings.iter().enumerate() {
        ring.setup(t, mem, i as u32);
    }
    w(t, mem, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    r(t, reg::STATUS)
}

/// An output the test keeps a handle on.
#[derive(Clone, Default)]
pub struct SharedOutput(pub Rc<RefCell<Vec<u8>>>);

impl std::io::Write for SharedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A fresh file of `len` bytes, each byte its offset mod 251, in the temp
/// directory; removed when dropped.
pub struct TempFile {
    pub path: std::path::PathBuf,
}

impl TempFile {
    pub fn new(tag: &str, len: usize) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hvvirtio-{tag}-{}-{n}", std::process::id()));
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, bytes).unwrap();
        Self { path }
    }

    pub fn open(&self) -> std::fs::File {
        std::fs::OpenOptions::new().read(true).write(true).open(&self.path).unwrap()
    }

    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
