//! The `hvvirtio-*` checks: a guest-stub client VM drives the real
//! `hvvirtio` block backend of a Linux service VM (`tests/linux/init`,
//! `linux-guest=service`) through its forwarded `virtio,mmio` window, as a
//! hostile virtio-blk driver would: its queues and buffers point at memory
//! that is not its own (the service VM's RAM, the hypervisor's image, or
//! across the end of its own RAM). `hvvirtio` must refuse each with
//! `DEVICE_NEEDS_RESET` (its transport's documented answer) and never read
//! or write there; between the attacks, a well-formed read proves the
//! device (and the service VM behind it) still serves.
//!
//! Unlike the `virtio-*` checks (`virtio.rs`), where a guest-stub plays the
//! service, nothing here runs in the service VM: the scenario
//! (`tests/tests/service/hostile.rs`) checks the service's side from its
//! output (`hvvirtio`'s fault lines, its own DTB's checksum before and
//! after, which lies where the hostile addresses point) and the
//! hypervisor's (its integrity report). Run with `stub=only=hvvirtio`, in a
//! VM with exactly one forwarded device, a block device, whose disk is the
//! service's ext2 image. Not in the default run.
//!
//! # The targets
//!
//! From `/chosen/hv,probe-holes` (the other VMs' RAM, then the hypervisor's
//! load address): its first entry is the service VM's RAM base (the
//! client's only other VM), its last the hypervisor's image.
//! `hvvirtio-find` prints both, for the scenario to compare with the
//! hypervisor's boot log.
//!
//! # The checks
//!
//! - `hvvirtio-find`: the one `virtio,mmio` node; the first access waits
//!   until `hvvirtio` serves. `MagicValue`, `Version` 2, `DeviceID` 2,
//!   `VendorID`, `DeviceFeatures` exactly [`DEVICE_FEATURES`] (only
//!   `hvvirtio` offers `VERSION_1`: the hypervisor's fallback offers
//!   nothing), and the capacity, printed.
//! - `hvvirtio-read`: a well-formed read of sector 2 (the ext2 superblock's
//!   first half): status `OK`, one used element of 513 bytes, the magic
//!   0xEF53 at byte 56, one vring interrupt.
//! - `hvvirtio-queue-outside`: queue 0's rings set up (size 8, ready) at
//!   the service's RAM, at the hypervisor's image, only the used ring (the
//!   one the device writes) at the service's RAM, and only the descriptor
//!   table across the end of this VM's RAM; then `DRIVER_OK` and
//!   `QueueNotify`. Each time: `Status` reads exactly 0x4f (`NEEDS_RESET`
//!   with what the driver set), `InterruptStatus` exactly 2 (configuration
//!   change), the device's SPI arrives exactly once, and after a reset the
//!   well-formed read works again.
//! - `hvvirtio-buffer-outside`: a valid queue in this VM's RAM and an `IN`
//!   request whose 512-byte data buffer (device-writable) is at the
//!   service's RAM, at the hypervisor's image, or across the end of this
//!   VM's RAM. `hvvirtio` refuses the chain before it reads the disk: the
//!   same `Status` 0x4f, `InterruptStatus` 2 and one SPI, nothing used, the
//!   status byte untouched, and the part of the straddling buffer inside
//!   this VM's RAM not written; after a reset the read works again.
//!
//! Every wait is bounded ([`PEER_MS`]); every access the stub makes to the
//! window is a single aligned 32-bit (or 64-bit configuration) access,
//! forwarded.

use crate::checks::Failure;
use crate::exceptions::Caught;
use crate::pci::{expect_eq, Width};
use crate::virtio::{settle, taken, wait, with_interrupts, WINDOW_ABORTED};
use crate::Env;
use aarch64_cpu::asm::barrier;
use core::sync::atomic::{AtomicU64, Ordering};
use platform::println;

/// Register offsets (virtio 1.x, "MMIO Device Register Layout"), and the
/// block device's `capacity` (8 bytes, in sectors), its configuration's
/// first field.
mod reg {
    pub use platform::forward::virtio::*;
    pub const CAPACITY: u64 = CONFIG;
}

/// `Status` bits.
const ACKNOWLEDGE: u64 = 1;
const DRIVER: u64 = 2;
const DRIVER_OK: u64 = 4;
const FEATURES_OK: u64 = 8;
const NEEDS_RESET: u64 = 0x40;
/// What a driver that reached `DRIVER_OK` has written to `Status`.
const ALL_SET: u64 = ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK;

/// `InterruptStatus` bits.
const INT_VRING: u64 = 1;
const INT_CONFIG: u64 = 2;

/// What `hvvirtio`'s block device offers (`hvvirtio/src/blk.rs`): low
/// word `SEG_MAX` (2), `BLK_SIZE` (6), `FLUSH` (9); high word
/// `VERSION_1` (bit 32).
const DEVICE_FEATURES: [u64; 2] = [1 << 2 | 1 << 6 | 1 << 9, 1];
/// What this driver takes: `VERSION_1` alone.
const DRIVER_FEATURES: [u64; 2] = [0, 1];
/// `hvvirtio`'s block queue's `QueueNumMax`.
const QUEUE_NUM_MAX: u64 = 128;
/// The queue size this driver sets.
const QUEUE: u64 = 8;
/// The virtio block device's ID.
const BLOCK_ID: u64 = 2;

/// Descriptor flags.
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
/// `VIRTIO_BLK_T_IN`, and the `OK` status.
const T_IN: u32 = 0;
const S_OK: u8 = 0;

/// The sector the reads ask for: the ext2 superblock starts at byte 1024.
const SECTOR: u64 = 2;
const SECTOR_SIZE: usize = 512;
/// `s_magic` (0xEF53, little-endian) at byte 56 of the superblock.
const MAGIC_AT: usize = 56;
const EXT2_MAGIC: u64 = 0xef53;

/// How long the stub waits for an interrupt.
const PEER_MS: u64 = crate::virq::HOST_STALL_MS;
/// How long an interrupt that must not come gets to come anyway.
const SETTLE_MS: u64 = 20;

/// What the data buffer holds before the device writes it, and the value
/// the status byte starts with (no status the device would write).
const FILL: u8 = 0xa5;
const NO_STATUS: u8 = 0xff;
/// What the stub writes at the end of its RAM, where a straddling buffer
/// begins: a write of the device there would change it.
const CANARY: u8 = 0x5c;
/// How much of a straddling buffer or table lies inside this VM's RAM.
const STRADDLE_INSIDE: u64 = 256;

// --- the driver's memory -----------------------------------------------------------

/// Where each structure lies in [`Area`] (byte offsets): the descriptor
/// table (16-byte aligned, 8 × 16 bytes), the available ring (flags, idx,
/// 8 entries, used_event), the used ring (flags, idx, 8 × {id, len},
/// avail_event), the request header, the status byte, the data.
mod at {
    pub const DESC: usize = 0x000;
    pub const AVAIL: usize = 0x100;
    pub const USED: usize = 0x200;
    pub const HEADER: usize = 0x300;
    pub const STATUS: usize = 0x310;
    pub const DATA: usize = 0x400;
}

/// The driver's rings and buffers: one page, in this VM's RAM.
#[repr(C, align(4096))]
struct Area([u64; 512]);

/// Locked while a check uses it; its address is what the device sees (the
/// stub runs with its MMU off: addresses are guest-physical).
static AREA: spin::Mutex<Area> = spin::Mutex::new(Area([0; 512]));

/// The area's memory, read and written volatile: the device reads and
/// writes it behind the compiler's back, and with the MMU off it is Device
/// memory, where only aligned accesses of the access's own size are safe
/// (no `memset` or `memcpy`, which could use wider or unaligned ones).
struct Mem {
    base: *mut u8,
}

impl Mem {
    fn new(area: &mut Area) -> Self {
        Self { base: area.0.as_mut_ptr().cast() }
    }

    fn addr(&self, offset: usize) -> u64 {
        self.base as u64 + offset as u64
    }

    fn w8(&self, offset: usize, v: u8) {
        // SAFETY: every offset used is inside the 4 KiB area this `Mem` was
        // made from, whose lock the caller holds.
        unsafe { core::ptr::write_volatile(self.base.add(offset), v) }
    }

    fn r8(&self, offset: usize) -> u8 {
        // SAFETY: as `w8`.
        unsafe { core::ptr::read_volatile(self.base.add(offset)) }
    }

    fn w16(&self, offset: usize, v: u16) {
        // SAFETY: as `w8`; the offsets of 16-bit fields are even.
        unsafe { core::ptr::write_volatile(self.base.add(offset).cast::<u16>(), v) }
    }

    fn r16(&self, offset: usize) -> u16 {
        // SAFETY: as `w16`.
        unsafe { core::ptr::read_volatile(self.base.add(offset).cast::<u16>()) }
    }

    fn w32(&self, offset: usize, v: u32) {
        // SAFETY: as `w8`; the offsets of 32-bit fields are multiples of 4.
        unsafe { core::ptr::write_volatile(self.base.add(offset).cast::<u32>(), v) }
    }

    fn r32(&self, offset: usize) -> u32 {
        // SAFETY: as `w32`.
        unsafe { core::ptr::read_volatile(self.base.add(offset).cast::<u32>()) }
    }

    fn w64(&self, offset: usize, v: u64) {
        // SAFETY: as `w8`; the offsets of 64-bit fields are multiples of 8.
        unsafe { core::ptr::write_volatile(self.base.add(offset).cast::<u64>(), v) }
    }

    /// Zeroes the rings and the header, fills the data with [`FILL`] and
    /// the status with [`NO_STATUS`].
    fn clear(&self) {
        for offset in (0..at::DATA).step_by(8) {
            self.w64(offset, 0);
        }
        for offset in 0..SECTOR_SIZE {
            self.w8(at::DATA + offset, FILL);
        }
        self.w8(at::STATUS, NO_STATUS);
    }

    fn desc(&self, index: usize, addr: u64, len: u32, flags: u16, next: u16) {
        let d = at::DESC + 16 * index;
        self.w64(d, addr);
        self.w32(d + 8, len);
        self.w16(d + 12, flags);
        self.w16(d + 14, next);
    }

    /// An `IN` request of [`SECTOR`] as descriptors 0 (header), 1 (data at
    /// `data`, 512 bytes, device-writable) and 2 (status), made available
    /// as the ring's first entry.
    fn read_request(&self, data: u64) {
        self.w32(at::HEADER, T_IN);
        self.w32(at::HEADER + 4, 0);
        self.w64(at::HEADER + 8, SECTOR);
        self.desc(0, self.addr(at::HEADER), 16, F_NEXT, 1);
        self.desc(1, data, SECTOR_SIZE as u32, F_NEXT | F_WRITE, 2);
        self.desc(2, self.addr(at::STATUS), 1, F_WRITE, 0);
        self.w16(at::AVAIL + 4, 0);
        // The entry before the index: the device reads them in that order.
        barrier::dsb(barrier::SY);
        self.w16(at::AVAIL + 2, 1);
        barrier::dsb(barrier::SY);
    }

    fn used_idx(&self) -> u64 {
        self.r16(at::USED + 2).into()
    }
}

// --- the device ------------------------------------------------------------------------

/// The forwarded block device: its window and its SPI.
#[derive(Clone, Copy)]
struct Blk {
    base: u64,
    intid: u32,
}

/// Addresses the hostile requests use.
#[derive(Clone, Copy)]
struct Targets {
    /// The service VM's RAM base.
    service: u64,
    /// The hypervisor's image.
    hypervisor: u64,
    /// One past the end of this VM's RAM.
    ram_end: u64,
}

/// Forwarded accesses the stub made (printed, for the scenario to compare
/// with hvvirtio's count).
static ACCESSES: AtomicU64 = AtomicU64::new(0);

fn aborted(caught: Caught) -> Failure {
    Failure::Exception { what: WINDOW_ABORTED, caught }
}

impl Blk {
    fn read(&self, offset: u64) -> Result<u64, Failure> {
        ACCESSES.fetch_add(1, Ordering::Relaxed);
        crate::pci::load(self.base + offset, Width::Word).map_err(aborted)
    }

    fn write(&self, offset: u64, value: u64) -> Result<(), Failure> {
        ACCESSES.fetch_add(1, Ordering::Relaxed);
        crate::pci::store(self.base + offset, Width::Word, value).map_err(aborted)
    }

    fn expect(&self, what: &'static str, offset: u64, expected: u64) -> Result<(), Failure> {
        expect_eq(what, expected, self.read(offset)?)
    }

    /// A 64-bit register as its two halves (the queue addresses).
    fn write64(&self, low: u64, value: u64) -> Result<(), Failure> {
        self.write(low, value & 0xffff_ffff)?;
        self.write(low + 4, value >> 32)
    }

    /// Reset, then the feature negotiation up to `FEATURES_OK`, checked.
    fn negotiate(&self) -> Result<(), Failure> {
        self.write(reg::STATUS, 0)?;
        self.expect("Status after a reset", reg::STATUS, 0)?;
        self.expect("InterruptStatus after a reset", reg::INTERRUPT_STATUS, 0)?;
        self.write(reg::STATUS, ACKNOWLEDGE | DRIVER)?;
        for (sel, expected) in DEVICE_FEATURES.iter().enumerate() {
            self.write(reg::DEVICE_FEATURES_SEL, sel as u64)?;
            self.expect("DeviceFeatures (hvvirtio's block device)", reg::DEVICE_FEATURES, *expected)?;
        }
        for (sel, features) in DRIVER_FEATURES.iter().enumerate() {
            self.write(reg::DRIVER_FEATURES_SEL, sel as u64)?;
            self.write(reg::DRIVER_FEATURES, *features)?;
        }
        self.write(reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK)?;
        self.expect("Status after FEATURES_OK (VERSION_1 accepted)", reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK)
    }

    /// Queue 0: size [`QUEUE`], its three rings where given, ready.
    fn set_queue(&self, desc: u64, avail: u64, used: u64) -> Result<(), Failure> {
        self.write(reg::QUEUE_SEL, 0)?;
        self.expect("QueueNumMax of queue 0", reg::QUEUE_NUM_MAX, QUEUE_NUM_MAX)?;
        self.expect("QueueReady before setup", reg::QUEUE_READY, 0)?;
        self.write(reg::QUEUE_NUM, QUEUE)?;
        self.write64(reg::QUEUE_DESC_LOW, desc)?;
        self.write64(reg::QUEUE_DRIVER_LOW, avail)?;
        self.write64(reg::QUEUE_DEVICE_LOW, used)?;
        self.write(reg::QUEUE_READY, 1)?;
        self.expect("QueueReady after setup", reg::QUEUE_READY, 1)
    }

    /// The device's interrupts so far (its slot of `virtio::taken`).
    fn interrupts(&self) -> u64 {
        taken(0)
    }

    /// Waits for interrupt number `n`, then lets another come for a while:
    /// exactly `n` must have.
    fn expect_interrupts(&self, what: &'static str, n: u64) -> Result<(), Failure> {
        wait(what, PEER_MS, || Ok(self.interrupts() >= n))?;
        settle(SETTLE_MS);
        expect_eq(what, n, self.interrupts())
    }

    /// A well-formed read of [`SECTOR`], from a reset: status OK, one used
    /// element of 513 bytes, the ext2 magic, one vring interrupt.
    fn good_read(&self, mem: &Mem) -> Result<(), Failure> {
        let before = self.interrupts();
        self.negotiate()?;
        mem.clear();
        self.set_queue(mem.addr(at::DESC), mem.addr(at::AVAIL), mem.addr(at::USED))?;
        self.write(reg::STATUS, ALL_SET)?;
        self.expect("Status after DRIVER_OK (a valid queue)", reg::STATUS, ALL_SET)?;
        mem.read_request(mem.addr(at::DATA));
        // hvvirtio carries the request out before it completes the write.
        self.write(reg::QUEUE_NOTIFY, 0)?;
        barrier::dsb(barrier::SY);
        expect_eq("used ring index after the read", 1, mem.used_idx())?;
        expect_eq("used element's id (the chain's head)", 0, mem.r32(at::USED + 4).into())?;
        expect_eq("used element's length (512 data bytes and the status)", 513, mem.r32(at::USED + 8).into())?;
        expect_eq("the request's status (OK)", S_OK.into(), mem.r8(at::STATUS).into())?;
        let magic = u64::from(mem.r8(at::DATA + MAGIC_AT)) | u64::from(mem.r8(at::DATA + MAGIC_AT + 1)) << 8;
        expect_eq("sector 2, bytes 56 and 57: the ext2 superblock's magic", EXT2_MAGIC, magic)?;
        self.expect("InterruptStatus after the read (used buffer)", reg::INTERRUPT_STATUS, INT_VRING)?;
        self.expect_interrupts("the device's interrupts after the read (one more)", before + 1)?;
        self.write(reg::INTERRUPT_ACK, INT_VRING)?;
        self.expect("InterruptStatus after InterruptACK", reg::INTERRUPT_STATUS, 0)?;
        self.expect("Status after the read (still running)", reg::STATUS, ALL_SET)
    }

    /// What a refused queue or chain leaves: `NEEDS_RESET`, a
    /// configuration-change interrupt (exactly one), and a notification
    /// changes nothing; then the acknowledgement. `before`: the interrupts
    /// before the attack.
    fn expect_needs_reset(&self, before: u64) -> Result<(), Failure> {
        self.expect("Status once refused (NEEDS_RESET and what the driver set)", reg::STATUS, NEEDS_RESET | ALL_SET)?;
        self.expect("InterruptStatus once refused (configuration change)", reg::INTERRUPT_STATUS, INT_CONFIG)?;
        self.expect_interrupts("the device's interrupts once refused (one more)", before + 1)?;
        self.write(reg::QUEUE_NOTIFY, 0)?;
        self.expect("Status after a notification (still NEEDS_RESET)", reg::STATUS, NEEDS_RESET | ALL_SET)?;
        self.expect("InterruptStatus after a notification", reg::INTERRUPT_STATUS, INT_CONFIG)?;
        self.write(reg::INTERRUPT_ACK, INT_CONFIG)?;
        self.expect("InterruptStatus after InterruptACK", reg::INTERRUPT_STATUS, 0)?;
        self.expect("Status after InterruptACK (NEEDS_RESET until a reset)", reg::STATUS, NEEDS_RESET | ALL_SET)?;
        settle(SETTLE_MS);
        expect_eq("the device's interrupts after the notification (none)", before + 1, self.interrupts())
    }
}

/// The device and the targets, or why there are none.
fn setup(env: &Env) -> Result<(Blk, Targets), Failure> {
    let nodes = &env.virtio;
    expect_eq("virtio,mmio nodes (one block device)", 1, nodes.count as u64)?;
    let node = nodes.nodes.first().ok_or(Failure::Missing("no virtio,mmio node"))?;
    expect_eq("the node's window", platform::forward::WINDOW_SIZE, node.size)?;
    expect_eq("the node's interrupt type (SPI)", 0, node.interrupts[0].into())?;
    let blk = Blk { base: node.base, intid: node.interrupts[1].saturating_add(32) };
    let (holes, count) = env.probe_holes;
    // The service's first and last word, then the hypervisor's image.
    expect_eq("hv,probe-holes entries (one other VM, the hypervisor)", 3, count as u64)?;
    let targets = Targets { service: holes[0], hypervisor: holes[2], ram_end: env.ram_end };
    Ok((blk, targets))
}

/// Runs `f` with the device's SPI counted and the driver's memory.
fn run(env: &Env, f: impl FnOnce(Blk, Targets, &Mem) -> Result<(), Failure>) -> Result<(), Failure> {
    let (blk, targets) = setup(env)?;
    let mut area = AREA.lock();
    let mem = Mem::new(&mut area);
    with_interrupts(env, &[blk.intid], || f(blk, targets, &mem))
}

pub fn find(env: &Env) -> Result<(), Failure> {
    let (blk, targets) = setup(env)?;
    // The first access waits until hvvirtio serves (the service VM boots
    // Linux meanwhile).
    blk.expect("MagicValue", reg::MAGIC_VALUE, platform::forward::virtio::MAGIC.into())?;
    blk.expect("Version", reg::VERSION, 2)?;
    blk.expect("DeviceID (block)", reg::DEVICE_ID, BLOCK_ID)?;
    blk.expect("VendorID (hvvirtio's)", reg::VENDOR_ID, platform::forward::FALLBACK_VENDOR.into())?;
    for (sel, expected) in DEVICE_FEATURES.iter().enumerate() {
        blk.write(reg::DEVICE_FEATURES_SEL, sel as u64)?;
        blk.expect("DeviceFeatures (hvvirtio's, not the fallback's none)", reg::DEVICE_FEATURES, *expected)?;
    }
    ACCESSES.fetch_add(1, Ordering::Relaxed);
    let capacity = crate::pci::load(blk.base + reg::CAPACITY, Width::Double).map_err(aborted)?;
    println!(
        "hvvirtio: block device at {:#x}, INTID {}, capacity {capacity} sectors; RAM [{:#x}, {:#x})",
        blk.base, blk.intid, env.ram_base, env.ram_end
    );
    println!("hvvirtio: targets: service RAM {:#x}, hypervisor {:#x}", targets.service, targets.hypervisor);
    Ok(())
}

pub fn read(env: &Env) -> Result<(), Failure> {
    run(env, |blk, _, mem| {
        blk.good_read(mem)?;
        println!("hvvirtio: read: sector {SECTOR}, status OK, ext2 magic {EXT2_MAGIC:#x}");
        Ok(())
    })
}

pub fn queue_outside(env: &Env) -> Result<(), Failure> {
    run(env, |blk, t, mem| {
        let (desc, avail, used) = (mem.addr(at::DESC), mem.addr(at::AVAIL), mem.addr(at::USED));
        // Each: (what, desc, avail, used). Rings of size 8 take 128, 22
        // and 70 bytes: all three fit in the target's first KiB.
        let cases = [
            ("all rings at the service's RAM", t.service, t.service + 0x200, t.service + 0x300),
            ("all rings at the hypervisor's image", t.hypervisor, t.hypervisor + 0x200, t.hypervisor + 0x300),
            ("the used ring at the service's RAM", desc, avail, t.service),
            ("the descriptor table across the end of this VM's RAM", t.ram_end - 64, avail, used),
        ];
        for (what, d, a, u) in cases {
            println!("hvvirtio: queue outside: {what}: desc {d:#x}, avail {a:#x}, used {u:#x}");
            let before = blk.interrupts();
            blk.negotiate()?;
            mem.clear();
            blk.set_queue(d, a, u)?;
            // hvvirtio checks the ready queues as the driver starts them.
            blk.write(reg::STATUS, ALL_SET)?;
            blk.expect_needs_reset(before)?;
            // Nothing was written in this VM's rings either.
            expect_eq("used ring index (nothing used)", 0, mem.used_idx())?;
            blk.good_read(mem)?;
        }
        Ok(())
    })
}

pub fn buffer_outside(env: &Env) -> Result<(), Failure> {
    run(env, |blk, t, mem| {
        let straddle = t.ram_end - STRADDLE_INSIDE;
        let cases = [
            ("at the service's RAM", t.service),
            ("at the hypervisor's image", t.hypervisor),
            ("across the end of this VM's RAM", straddle),
        ];
        for (what, data) in cases {
            println!("hvvirtio: buffer outside: {what}: {data:#x}, {SECTOR_SIZE} bytes");
            // The part of this VM's RAM the straddling buffer covers.
            for i in 0..STRADDLE_INSIDE {
                // SAFETY: the last bytes of this VM's RAM, which nothing of
                // the stub uses (its image and stacks are 2 MiB in).
                unsafe { core::ptr::write_volatile((straddle + i) as *mut u8, CANARY) };
            }
            let before = blk.interrupts();
            blk.negotiate()?;
            mem.clear();
            blk.set_queue(mem.addr(at::DESC), mem.addr(at::AVAIL), mem.addr(at::USED))?;
            blk.write(reg::STATUS, ALL_SET)?;
            blk.expect("Status after DRIVER_OK (a valid queue)", reg::STATUS, ALL_SET)?;
            mem.read_request(data);
            blk.write(reg::QUEUE_NOTIFY, 0)?;
            barrier::dsb(barrier::SY);
            blk.expect_needs_reset(before)?;
            expect_eq("used ring index (the chain was refused)", 0, mem.used_idx())?;
            expect_eq("the status byte (never written)", NO_STATUS.into(), mem.r8(at::STATUS).into())?;
            let untouched = (0..STRADDLE_INSIDE).all(|i| {
                // SAFETY: as the canary's writes.
                unsafe { core::ptr::read_volatile((straddle + i) as *const u8) == CANARY }
            });
            if !untouched {
                return Err(Failure::Missing("the end of this VM's RAM changed: the device wrote a refused buffer"));
            }
            blk.good_read(mem)?;
        }
        println!("hvvirtio: {} forwarded accesses", ACCESSES.load(Ordering::Relaxed));
        Ok(())
    })
}
