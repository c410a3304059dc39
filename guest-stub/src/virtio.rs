//! The forwarded-virtio checks: a client VM's `virtio,mmio` windows, whose
//! accesses the hypervisor hands to a service VM, and that service VM's
//! backend function ([`platform::forward`]), both driven by the guest-stub
//! in two VMs at once. The hypervisor emulates no device here: the stub in
//! the service VM *is* the device (a tiny fake one per device index, below),
//! so every value the client reads proves the whole path: trap, queue,
//! backend registers, completion, resumption.
//!
//! # Roles
//!
//! Both VMs run the same checks in the same order; each learns its role
//! from what it finds. A VM with a backend function on its PCI host bridge
//! (vendor [`platform::forward::VENDOR_ID`], device
//! [`platform::forward::DEVICE_ID`], on bus 0 from device 16) is the
//! **service**; a VM whose device tree has `virtio,mmio` nodes is the
//! **client**. The client drives each check; the service serves its
//! requests until the client writes the check's number to [`dev::END`]
//! (it does so whatever the check found, so that the service never waits
//! in vain), then runs its own checks of what it saw.
//!
//! # Words
//!
//! `stub=virtio-client=NAME`: the client the service must find
//! (`CLIENT_NAME`); `stub=virtio-client-mib=N`: its RAM (`CLIENT_RAM_SIZE`);
//! `stub=virtio-devices=N`: how many devices the client has (both roles);
//! `stub=virtio-types=LIST`: their types, `block` or `console`, comma
//! separated, in order. Run with `stub=only=virtio`; not in the default
//! run. `stub=virtio-bench=N` (both VMs) times N forwarded reads instead
//! ([`bench`]).
//!
//! # The fake device (what the service answers, per device index)
//!
//! | offset | access | what |
//! |-------:|--------|------|
//! | 0x000 | read | `MagicValue` "virt" |
//! | 0x004 | read | `Version` 2 |
//! | 0x008 | read | `DeviceID`: the type `DEVICE_TYPE[n]` says |
//! | 0x00c | read | `VendorID` [`STUB_VENDOR`] (the fallback's is another) |
//! | 0x060 | read | `InterruptStatus`: bit 0 after a trigger until acknowledged |
//! | 0x064 | write | `InterruptACK`: clears bits; with none left, the line drops |
//! | 0x100..0x110 | any | scratch: 16 bytes, each byte lane keeps what is written |
//! | 0x120 | write, 8 | the guest-physical address of a pattern in the client's RAM |
//! | 0x128 | write, 4 | its length in bytes (a multiple of 8, at most 4 KiB) |
//! | 0x130 | read, 8 | the pattern's checksum, read through BAR2; the service also writes its complement in the word after the pattern |
//! | 0x140 | write | trigger: sets `InterruptStatus` bit 0 and raises the device's line |
//! | 0x150 | read | requests the service served in this check before this one |
//! | 0x154 | read | requests it served since it started, before this one |
//! | 0x158 | read | barrier: in `virtio-smp`, held until two requests wait |
//! | 0x160 | write | end of check N (N = the check's number) |
//!
//! Any other offset reads 0 and ignores writes; every request is checked
//! (device on the link, 1/2/4/8 bytes, aligned, in the window).
//!
//! # The checks
//!
//! - `virtio-find`: the service finds exactly one backend function, with
//!   its header and BARs like a portal's, `DEVICES`, `DEVICE_TYPE[n]`,
//!   `CLIENT_NAME`, `CLIENT_RAM_SIZE` as the words say, `CLIENT_RAM_BASE`
//!   printed (the scenario compares it with the client's own), and waits
//!   for `CLIENT_STATE` running. The client finds exactly N `virtio,mmio`
//!   nodes, each a 0x200 window, an edge-triggered SPI, `dma-coherent`,
//!   and waits until the service answers (`VendorID` reads
//!   [`STUB_VENDOR`], not the fallback's). Each prints one line
//!   (`virtio: service ...`, `virtio: client ...`).
//! - `virtio-identity`: every device's `MagicValue`, `Version`, `DeviceID`,
//!   `VendorID`; unknown offsets (1, 2, 4 and 8 bytes) read 0.
//! - `virtio-scratch`: write-then-read of 1, 2, 4 and 8 bytes at every
//!   aligned place in the scratch, per device (a value of its own each),
//!   sign-extending loads (`LDRSB`, `LDRSH`, `LDRSW`).
//! - `virtio-hostile`: an unaligned 4-byte load, an unaligned 8-byte
//!   store, `LDP` and `STP` on a window: each aborts at its address and
//!   the service sees none of them (the client reads the count of this
//!   check's requests: 0; the service counts exactly the two the client
//!   made on purpose).
//! - `virtio-interrupt`: per device, a trigger makes its SPI (from its
//!   node) arrive once, `InterruptStatus` reads 1, an acknowledgement
//!   clears it and drops the line, and a second trigger arrives again (an
//!   edge each); no other device's interrupt comes.
//! - `virtio-ram`: the client writes a pattern in its RAM and tells the
//!   service where; the service reads it through BAR2 and answers its
//!   checksum, and writes the checksum's complement after it, which the
//!   client then finds in its RAM.
//! - `virtio-smp`: two vCPUs of the client access the window at once: the
//!   service holds the first barrier read until both wait (the queue has
//!   two), then both complete, and each then makes 50 reads of a scratch
//!   word of its own. Skipped with one vCPU.
//! - `virtio-done`: the client reads the service's total count of requests:
//!   exactly the forwarded accesses it made; the service checks
//!   `COMPLETED` against its own count.
//! - `virtio-service-death`: the service reports it skipped and powers off
//!   after its summary; the client reads `Status` (that load waits until
//!   the service is gone, then the fallback answers `NEEDS_RESET`), takes
//!   each device's configuration-change interrupt exactly once, finds
//!   `DeviceID` and `MagicValue` unchanged, `VendorID` the fallback's,
//!   `InterruptStatus` 2 until `InterruptACK` clears it, and scratch
//!   writes dropped.
//!
//! # Waiting
//!
//! Each wait is bounded and sleeps in `WFI` with `PSTATE.I` masked: the
//! service's backend function raises its SPI when a request is queued, a
//! client device's SPI counts its arrivals, and the virtual timer ends each
//! sleep after at most [`POLL_MS`].

use crate::checks::Failure;
use crate::exceptions::{expect_sync, mask_irqs, unmask_irqs};
use crate::pci::{about, bdf_of, expect_eq, Config, Width};
use crate::virq::{IrqFailure, HOST_STALL_MS, PRIORITY};
use crate::{gic, smp, timer, virq, Env};
use aarch64_cpu::registers::{Writeable, CNTV_CTL_EL0, CNTV_CVAL_EL0};
use arm_gic::IntId;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use platform::forward::virtio::INT_CONFIG;
use platform::forward::{reg, virtio, DeviceType, ACCESS_WRITE, FALLBACK_VENDOR, MAX_DEVICES, NAME_LEN};
use platform::pci::config::{bar, command, offset};
use platform::pci::{Bdf, Intx, DEVICES_PER_BUS, ROOT_BUS};
use platform::println;

/// The fake device's registers (the table in the module documentation).
pub mod dev {
    pub use platform::forward::virtio::{DEVICE_ID, INTERRUPT_ACK, INTERRUPT_STATUS, STATUS, VENDOR_ID, VERSION};
    pub const MAGIC: u64 = platform::forward::virtio::MAGIC_VALUE;
    pub const SCRATCH: u64 = 0x100;
    pub const SCRATCH_LEN: u64 = 16;
    pub const PATTERN_ADDR: u64 = 0x120;
    pub const PATTERN_LEN: u64 = 0x128;
    pub const CHECKSUM: u64 = 0x130;
    pub const TRIGGER: u64 = 0x140;
    pub const COUNT: u64 = 0x150;
    pub const TOTAL: u64 = 0x154;
    pub const BARRIER: u64 = 0x158;
    pub const END: u64 = 0x160;
}

/// The `VendorID` the stub's fake device answers ("HV" and 2: not the
/// fallback's [`FALLBACK_VENDOR`]).
pub const STUB_VENDOR: u32 = 0x4856_0002;
/// What a barrier read returns.
const BARRIER_VALUE: u64 = 0xba77;
/// A `virtio,mmio` window.
const WINDOW: u64 = platform::forward::WINDOW_SIZE;
/// The first device number of the hypervisor's functions on bus 0.
const FIRST_DEVICE: u8 = crate::portal::FIRST_DEVICE;
/// How long one side waits for the other's next request or answer.
const PEER_MS: u64 = HOST_STALL_MS;
/// How long the client waits for the service to start serving, or to go.
const START_MS: u64 = 2 * HOST_STALL_MS;
/// The longest `WFI` of a wait.
const POLL_MS: u64 = 10;
/// The wake-up timer's priority: above the devices'.
const WAKE_PRIORITY: u8 = 0x80;
const SPI_BASE: u32 = 32;
/// The `interrupts` flags of an edge-triggered (rising) SPI.
const EDGE_RISING: u32 = 1;
/// `virtio-smp`: reads each vCPU makes of its own scratch word.
const SMP_READS: u64 = 50;
/// `virtio-ram`: the pattern's words (4 KiB).
const PATTERN_WORDS: usize = 512;

/// The checks, numbered from 1 in their order: the number the client
/// writes to [`dev::END`] at each check's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    Find = 1,
    Identity,
    Scratch,
    Hostile,
    Interrupt,
    Ram,
    Smp,
    Done,
    /// `stub=virtio-bench=N`'s rounds.
    Bench = 0x100,
}

// --- words ---------------------------------------------------------------------

static DEVICES_WANTED: AtomicU32 = AtomicU32::new(0);
static CLIENT_MIB: AtomicU64 = AtomicU64::new(0);
static CLIENT_NAME: spin::Mutex<[u8; NAME_LEN]> = spin::Mutex::new([0; NAME_LEN]);
static TYPES: spin::Mutex<[Option<DeviceType>; MAX_DEVICES]> = spin::Mutex::new([None; MAX_DEVICES]);

/// Takes a `stub=virtio-*` word; false if it is none of them.
pub fn word(word: &str) -> bool {
    let number = |text: &str| crate::parse_number(text);
    if let Some(name) = word.strip_prefix("stub=virtio-client=") {
        *CLIENT_NAME.lock() = platform::control::VmInfo::name_bytes(name);
    } else if let Some(n) = word.strip_prefix("stub=virtio-client-mib=").and_then(number) {
        CLIENT_MIB.store(n, Ordering::Relaxed);
    } else if let Some(n) = word.strip_prefix("stub=virtio-devices=").and_then(number) {
        DEVICES_WANTED.store(n.min(MAX_DEVICES as u64) as u32, Ordering::Relaxed);
    } else if let Some(list) = word.strip_prefix("stub=virtio-types=") {
        let mut types = TYPES.lock();
        *types = [None; MAX_DEVICES];
        for (slot, t) in types.iter_mut().zip(list.split(',')) {
            *slot = DeviceType::from_word(t);
        }
    } else {
        return false;
    }
    true
}

fn wanted_type(index: usize) -> Result<DeviceType, Failure> {
    TYPES
        .lock()
        .get(index)
        .copied()
        .flatten()
        .ok_or(Failure::Missing("stub=virtio-types does not name this device's type (block or console)"))
}

// --- the client's nodes --------------------------------------------------------------

/// A `virtio,mmio` node of the device tree.
#[derive(Clone, Copy, Debug, Default)]
pub struct Node {
    pub base: u64,
    pub size: u64,
    /// The `interrupts` cells: type (0: SPI), number, flags.
    pub interrupts: [u32; 3],
    pub dma_coherent: bool,
}

/// The device tree's `virtio,mmio` nodes, in its order, and how many.
#[derive(Clone, Copy, Debug, Default)]
pub struct Nodes {
    pub nodes: [Node; MAX_DEVICES],
    pub count: usize,
    /// More than [`MAX_DEVICES`] of them.
    pub overflow: bool,
}

/// The `virtio,mmio` nodes of `fdt`.
pub fn nodes(fdt: &fdt::Fdt) -> Nodes {
    let mut found = Nodes::default();
    for node in fdt.all_nodes().filter(|n| n.compatible().is_some_and(|c| c.all().any(|c| c == "virtio,mmio"))) {
        let Some(slot) = found.nodes.get_mut(found.count) else {
            found.overflow = true;
            break;
        };
        let reg = node.reg().and_then(|mut r| r.next());
        let mut interrupts = [u32::MAX; 3];
        if let Some(p) = node.property("interrupts") {
            for (cell, chunk) in interrupts.iter_mut().zip(p.value.chunks_exact(4)) {
                *cell = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
        }
        *slot = Node {
            base: reg.map_or(0, |r| r.starting_address as u64),
            size: reg.and_then(|r| r.size).unwrap_or(0) as u64,
            interrupts,
            dma_coherent: node.property("dma-coherent").is_some(),
        };
        found.count += 1;
    }
    found
}

// --- roles ------------------------------------------------------------------------

/// The service's backend function, as `virtio-find` found it.
#[derive(Clone, Copy, Debug)]
struct Backend {
    bdf: Bdf,
    regs: u64,
    /// BAR2: the client's RAM.
    ram: u64,
    client_base: u64,
    client_size: u64,
    devices: u32,
    /// Each device's virtio device ID.
    ids: [u32; MAX_DEVICES],
    intid: u32,
}

/// One of the client's devices.
#[derive(Clone, Copy, Debug)]
struct Device {
    index: usize,
    base: u64,
    intid: u32,
    id: u32,
}

#[derive(Clone, Copy, Debug)]
struct Client {
    devices: [Option<Device>; MAX_DEVICES],
    count: usize,
}

impl Client {
    fn devices(&self) -> impl Iterator<Item = Device> + '_ {
        self.devices.iter().take(self.count).flatten().copied()
    }

    fn first(&self) -> Result<Device, Failure> {
        self.devices().next().ok_or(Failure::Missing("the client has no device"))
    }
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Nothing,
    Service(Backend),
    Client(Client),
}

static ROLE: spin::Mutex<Role> = spin::Mutex::new(Role::Nothing);

fn role() -> Result<Role, Failure> {
    match *ROLE.lock() {
        Role::Nothing => Err(Failure::Missing("virtio-find found no role for this VM (it must pass first)")),
        role => Ok(role),
    }
}

// --- the client's accesses ----------------------------------------------------------

/// Forwarded accesses the client made that the service answers (counted so
/// that `virtio-done` can hold the service's count to it).
static FORWARDED: AtomicU64 = AtomicU64::new(0);

pub(crate) const WINDOW_ABORTED: &str = "an access to a virtio,mmio window aborted";

const fn width(size: u64) -> Width {
    match size {
        1 => Width::Byte,
        2 => Width::Half,
        4 => Width::Word,
        _ => Width::Double,
    }
}

impl Device {
    fn read(&self, offset: u64, size: u64) -> Result<u64, Failure> {
        FORWARDED.fetch_add(1, Ordering::SeqCst);
        crate::pci::load(self.base + offset, width(size))
            .map_err(|caught| Failure::Exception { what: WINDOW_ABORTED, caught })
    }

    fn write(&self, offset: u64, size: u64, value: u64) -> Result<(), Failure> {
        FORWARDED.fetch_add(1, Ordering::SeqCst);
        crate::pci::store(self.base + offset, width(size), value)
            .map_err(|caught| Failure::Exception { what: WINDOW_ABORTED, caught })
    }

    fn expect(&self, what: &'static str, offset: u64, size: u64, expected: u64) -> Result<(), Failure> {
        expect_eq(what, expected, self.read(offset, size)?)
    }
}

/// Ends check `step` at the service (whatever the check found), then
/// returns what it found.
fn end_step(device: Device, step: Step, result: Result<(), Failure>) -> Result<(), Failure> {
    let ended = device.write(dev::END, 4, step as u64);
    result.and(ended)
}

/// Runs the client's side of `step`: `f`, then the end marker.
fn client_step(client: &Client, step: Step, f: impl FnOnce(&Client) -> Result<(), Failure>) -> Result<(), Failure> {
    let first = client.first()?;
    end_step(first, step, f(client))
}

// --- interrupts and waits -------------------------------------------------------------

/// Interrupts taken per SPI slot: the service's backend function (slot 0),
/// or the client's devices (slot n).
static TAKEN: [AtomicU64; MAX_DEVICES] = [const { AtomicU64::new(0) }; MAX_DEVICES];
/// The INTID each slot's handler counts.
static SLOT_INTID: [AtomicU32; MAX_DEVICES] = [const { AtomicU32::new(0) }; MAX_DEVICES];

/// Counts the interrupt in its slot; nothing to acknowledge: each is an
/// edge (a request queued, a device's line rising).
fn spi_handler(intid: IntId) {
    let id = u32::from(intid);
    if let Some(slot) = SLOT_INTID.iter().position(|s| s.load(Ordering::SeqCst) == id) {
        TAKEN[slot].fetch_add(1, Ordering::SeqCst);
    }
}

pub(crate) fn taken(slot: usize) -> u64 {
    TAKEN.get(slot).map_or(0, |t| t.load(Ordering::SeqCst))
}

/// Runs `f` with the SPIs `intids` (each counted in its slot) routed to
/// vCPU 0 and the virtual timer's PPI ending sleeps, then puts everything
/// back.
pub(crate) fn with_interrupts<T>(
    env: &Env,
    intids: &[u32],
    f: impl FnOnce() -> Result<T, Failure>,
) -> Result<T, Failure> {
    virq::boot_gic()?;
    let wake = env.virtual_timer.map_err(IrqFailure::NoTimer)?;
    let gic_error = |why| Failure::from(IrqFailure::Gic { cpu: 0, why });
    let spis = || intids.iter().filter(|&&i| i >= SPI_BASE).map(|&i| IntId::spi(i - SPI_BASE));
    mask_irqs();
    for (k, (slot, count)) in SLOT_INTID.iter().zip(TAKEN.iter()).enumerate() {
        slot.store(intids.get(k).copied().unwrap_or(0), Ordering::SeqCst);
        count.store(0, Ordering::SeqCst);
    }
    for spi in spis() {
        gic::set_handler(spi, Some(spi_handler));
    }
    gic::set_handler(wake, Some(wake_handler));
    let mut configured = gic::configure(0, wake, WAKE_PRIORITY, true).map_err(gic_error);
    for spi in spis() {
        configured = configured.and_then(|()| gic::configure_spi(spi, PRIORITY, 0, true).map_err(gic_error));
    }
    let result = configured.and_then(|()| f());
    mask_irqs();
    timer::tick_stop();
    for spi in spis() {
        let _ = gic::configure_spi(spi, PRIORITY, 0, false);
        gic::set_handler(spi, None);
    }
    let _ = gic::configure(0, wake, WAKE_PRIORITY, false);
    gic::set_handler(wake, None);
    let value = result?;
    virq::finish(Ok(()))?;
    Ok(value)
}

fn wake_handler(_: IntId) {
    timer::tick_stop();
}

/// Lets interrupts in for `ms`: one that should not come would be counted.
pub(crate) fn settle(ms: u64) {
    unmask_irqs();
    timer::delay_ms(ms);
    mask_irqs();
}

/// Waits until `done()`, sleeping in `WFI` with `PSTATE.I` masked (an
/// interrupt that came since `done()` looked ends the sleep and is taken
/// right after), at most `ms` of virtual counter; `what` names the wait in
/// the failure.
pub(crate) fn wait(
    what: &'static str,
    ms: u64,
    mut done: impl FnMut() -> Result<bool, Failure>,
) -> Result<(), Failure> {
    let deadline = timer::virtual_now().saturating_add(timer::ms_to_ticks(ms));
    let poll = timer::ms_to_ticks(POLL_MS).max(1);
    let result = loop {
        mask_irqs();
        match done() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(failure) => break Err(failure),
        }
        let now = timer::virtual_now();
        if now >= deadline {
            println!("virtio: waited {ms} ms in vain for {what}");
            break Err(Failure::Missing(what));
        }
        CNTV_CVAL_EL0.set(deadline.min(now.saturating_add(poll)));
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        aarch64_cpu::asm::wfi();
        unmask_irqs();
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    };
    mask_irqs();
    timer::tick_stop();
    result
}

// --- the service ------------------------------------------------------------------------

const REGS_ABORTED: &str = "an access to the backend function's registers (BAR0) aborted";
const RAM_ABORTED: &str = "a load or store through BAR2 (the client's RAM) aborted";

impl Backend {
    fn load(&self, register: u64, w: Width) -> Result<u64, Failure> {
        crate::pci::load(self.regs + register, w).map_err(|caught| Failure::Exception { what: REGS_ABORTED, caught })
    }

    fn load32(&self, register: u64) -> Result<u32, Failure> {
        self.load(register, Width::Word).map(|v| v as u32)
    }

    fn store(&self, register: u64, w: Width, value: u64) -> Result<(), Failure> {
        crate::pci::store(self.regs + register, w, value)
            .map_err(|caught| Failure::Exception { what: REGS_ABORTED, caught })
    }
}

/// The vendor and device IDs as config dword 0 reads them.
const fn backend_ids() -> u64 {
    (platform::forward::VENDOR_ID as u64) | (platform::forward::DEVICE_ID as u64) << 16
}

/// Whether the function at `bdf` is a backend function (for
/// `pci-enumerate`, which leaves them to `virtio-find`).
pub(crate) fn is_backend(config: &Config, bdf: Bdf) -> Result<bool, Failure> {
    Ok(bdf.device() >= FIRST_DEVICE && config.read(bdf, offset::VENDOR_ID, Width::Word)? == backend_ids())
}

/// The backend functions on bus 0: the first, and how many.
/// `checked`: the link's registers must be what the words say (not in
/// `stub=virtio-bench`, which has no such words).
fn find_backend(env: &Env, checked: bool) -> Result<(Option<Backend>, u32), Failure> {
    let Ok(ecam) = env.ecam.as_ref() else { return Ok((None, 0)) };
    let config = Config::open(env)?;
    let mut first = None;
    let mut count = 0;
    for device in FIRST_DEVICE..DEVICES_PER_BUS {
        let bdf = bdf_of(ROOT_BUS, device, 0)?;
        if !is_backend(&config, bdf)? {
            continue;
        }
        count += 1;
        if first.is_none() {
            first = Some(about(bdf, "backend function", check_function(&config, ecam, bdf, checked))?);
        }
    }
    Ok((first, count))
}

/// The function's header, BARs and interrupt, and its registers about the
/// link.
fn check_function(config: &Config, ecam: &crate::pci::Ecam, bdf: Bdf, checked: bool) -> Result<Backend, Failure> {
    let class = config.read(bdf, offset::REVISION_ID, Width::Word)? & !0xff;
    expect_eq("class code (08 80 00: system peripheral, other)", platform::forward::CLASS.register().into(), class)?;
    config.expect("interrupt pin (INTA)", bdf, offset::INTERRUPT_PIN, Width::Byte, Intx::INTA.into())?;
    let map = ecam.interrupt_map.as_ref().map_err(|why| Failure::Missing(why))?;
    let intid = map.spi(bdf.device(), Intx::INTA).map_err(Failure::Missing)?;
    let cmd = config.read(bdf, offset::COMMAND, Width::Half)?;
    let decoding = u64::from(command::MEMORY_SPACE | command::INTX_DISABLE);
    expect_eq("command memory space and INTx disable (on, off)", command::MEMORY_SPACE.into(), cmd & decoding)?;
    let type_of = |reg| config.read(bdf, reg, Width::Word).map(|low| low & u64::from(bar::TYPE_MASK));
    expect_eq("BAR0 type bits (64-bit memory)", bar::MEMORY_64.into(), type_of(offset::BAR0)?)?;
    expect_eq(
        "BAR2 type bits (64-bit prefetchable)",
        (bar::MEMORY_64 | bar::PREFETCHABLE).into(),
        type_of(offset::BAR2)?,
    )?;
    let regs = crate::pci::bar_address(config, bdf, offset::BAR0)?;
    let ram = crate::pci::bar_address(config, bdf, offset::BAR2)?;
    let (regs_size, ram_window) = crate::pci::size_bars(config, bdf)?;
    expect_eq("BAR0 size (4 KiB of registers)", platform::forward::REGS_SIZE, regs_size)?;

    let mut backend =
        Backend { bdf, regs, ram, client_base: 0, client_size: 0, devices: 0, ids: [0; MAX_DEVICES], intid };
    expect_eq("ID", platform::forward::ID_VALUE.into(), backend.load32(reg::ID)?.into())?;
    backend.client_base = backend.load(reg::CLIENT_RAM_BASE, Width::Double)?;
    backend.client_size = backend.load(reg::CLIENT_RAM_SIZE, Width::Double)?;
    backend.devices = backend.load32(reg::DEVICES)?;
    if !checked {
        return Ok(backend);
    }
    expect_eq(
        "CLIENT_RAM_SIZE (stub=virtio-client-mib)",
        CLIENT_MIB.load(Ordering::Relaxed) << 20,
        backend.client_size,
    )?;
    expect_eq("BAR2 size (the client's RAM, to a power of two)", backend.client_size.next_power_of_two(), ram_window)?;
    expect_eq("DEVICES (stub=virtio-devices)", DEVICES_WANTED.load(Ordering::Relaxed).into(), backend.devices.into())?;
    for n in 0..MAX_DEVICES {
        let id = backend.load32(reg::DEVICE_TYPE + 4 * n as u64)?;
        let expected = if n < backend.devices as usize { wanted_type(n)?.virtio_id() } else { 0 };
        expect_eq("DEVICE_TYPE[n] (stub=virtio-types; 0 past DEVICES)", expected.into(), id.into())?;
        if let Some(slot) = backend.ids.get_mut(n) {
            *slot = id;
        }
    }
    let mut name = [0u8; NAME_LEN];
    for (k, chunk) in name.chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&backend.load32(reg::CLIENT_NAME + 4 * k as u64)?.to_le_bytes());
    }
    if name != *CLIENT_NAME.lock() {
        let shown = core::str::from_utf8(&name).unwrap_or("?").trim_end_matches('\0');
        println!("virtio: CLIENT_NAME reads `{shown}`");
        return Err(Failure::Missing("CLIENT_NAME is not the client stub=virtio-client names"));
    }
    Ok(backend)
}

/// One request as the backend registers show it.
#[derive(Clone, Copy, Debug)]
struct Request {
    id: u32,
    device: u32,
    offset: u64,
    size: u64,
    write: bool,
    value: u64,
}

/// The fake devices' state.
#[derive(Clone, Copy, Debug)]
struct Fake {
    scratch: [u8; dev::SCRATCH_LEN as usize],
    pattern_addr: u64,
    pattern_len: u64,
    interrupt: u32,
}

static FAKES: spin::Mutex<[Fake; MAX_DEVICES]> =
    spin::Mutex::new([Fake { scratch: [0; 16], pattern_addr: 0, pattern_len: 0, interrupt: 0 }; MAX_DEVICES]);
/// Requests the service served since it started.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// What serving one check saw.
#[derive(Clone, Copy, Debug, Default)]
struct Served {
    /// Requests, the end marker included.
    requests: u64,
    /// The most requests waiting at once.
    most_pending: u32,
}

/// The word-wise checksum of a pattern (both roles compute it).
fn checksum(words: impl Iterator<Item = u64>) -> u64 {
    words.fold(0x9e37_79b9_7f4a_7c15, |sum, w| sum.rotate_left(7) ^ w.wrapping_mul(0xff51_afd7_ed55_8ccd))
}

/// The answer to `request`; what it does to the fake device.
fn answer(b: &Backend, request: &Request, step_count: u64) -> Result<u64, Failure> {
    let d = request.device as usize;
    let mut fakes = FAKES.lock();
    let fake = fakes.get_mut(d).ok_or(Failure::Missing("a request for a device the link does not have"))?;
    let (offset, size) = (request.offset, request.size);
    let mut value = 0;
    if (dev::SCRATCH..dev::SCRATCH + dev::SCRATCH_LEN).contains(&offset) {
        let at = (offset - dev::SCRATCH) as usize;
        let lanes = fake.scratch.get_mut(at..at + size as usize).ok_or(Failure::Missing("a scratch access past it"))?;
        if request.write {
            lanes.copy_from_slice(&request.value.to_le_bytes()[..size as usize]);
        } else {
            value = lanes.iter().rev().fold(0u64, |v, &byte| v << 8 | u64::from(byte));
        }
        return Ok(value);
    }
    if request.write {
        match offset {
            dev::INTERRUPT_ACK => {
                fake.interrupt &= !(request.value as u32);
                if fake.interrupt == 0 {
                    set_line(b, d, false)?;
                }
            }
            dev::PATTERN_ADDR => fake.pattern_addr = request.value,
            dev::PATTERN_LEN => fake.pattern_len = request.value,
            dev::TRIGGER => {
                fake.interrupt |= 1;
                set_line(b, d, true)?;
            }
            _ => {}
        }
        return Ok(0);
    }
    if offset == dev::CHECKSUM && size == 8 {
        return pattern_checksum(b, fake);
    }
    // The 32-bit registers, read in any width inside one (as virtio's).
    let register = match offset & !3 {
        dev::MAGIC => virtio::MAGIC.into(),
        dev::VERSION => 2,
        dev::DEVICE_ID => b.ids.get(d).copied().unwrap_or(0).into(),
        dev::VENDOR_ID => STUB_VENDOR.into(),
        dev::INTERRUPT_STATUS => fake.interrupt.into(),
        dev::COUNT => step_count,
        dev::TOTAL => SERVED.load(Ordering::SeqCst),
        dev::BARRIER => BARRIER_VALUE,
        _ => 0,
    };
    if size > 4 {
        return Ok(0);
    }
    value = (register >> (8 * (offset & 3))) & ((1u64 << (8 * size)) - 1);
    Ok(value)
}

/// Raises or lowers device `d`'s line (`IRQ_LEVEL` bit d), and checks the
/// register took it.
fn set_line(b: &Backend, d: usize, up: bool) -> Result<(), Failure> {
    let bit = 1u32 << d;
    let level = b.load32(reg::IRQ_LEVEL)?;
    let level = if up { level | bit } else { level & !bit };
    b.store(reg::IRQ_LEVEL, Width::Word, level.into())?;
    expect_eq("IRQ_LEVEL read back", level.into(), b.load32(reg::IRQ_LEVEL)?.into())
}

/// The checksum of the pattern the client announced, read through BAR2;
/// its complement goes into the word after it.
fn pattern_checksum(b: &Backend, fake: &Fake) -> Result<u64, Failure> {
    let (addr, len) = (fake.pattern_addr, fake.pattern_len);
    let inside = addr >= b.client_base
        && len.is_multiple_of(8)
        && len <= 8 * PATTERN_WORDS as u64
        && addr.is_multiple_of(8)
        && addr + len + 8 <= b.client_base + b.client_size;
    if !inside {
        println!("virtio: pattern at {addr:#x}, {len} bytes: not in the client's RAM");
        return Err(Failure::Missing("the client announced a pattern outside its RAM"));
    }
    let at = b.ram + (addr - b.client_base);
    let mut failed = None;
    let sum = checksum((0..len / 8).map(|i| {
        crate::pci::load(at + 8 * i, Width::Double).unwrap_or_else(|caught| {
            failed = Some(caught);
            0
        })
    }));
    if let Some(caught) = failed {
        return Err(Failure::Exception { what: RAM_ABORTED, caught });
    }
    crate::pci::store(at + len, Width::Double, !sum)
        .map_err(|caught| Failure::Exception { what: RAM_ABORTED, caught })?;
    Ok(sum)
}

/// The first request the backend registers show; none if `PENDING` is 0.
fn front(b: &Backend) -> Result<Option<(Request, u32)>, Failure> {
    let pending = b.load32(reg::PENDING)?;
    if pending == 0 {
        return Ok(None);
    }
    let access = b.load32(reg::REQ_ACCESS)?;
    let request = Request {
        id: b.load32(reg::REQ_ID)?,
        device: b.load32(reg::REQ_DEVICE)?,
        offset: b.load32(reg::REQ_OFFSET)?.into(),
        size: (access & 0xff).into(),
        write: access & ACCESS_WRITE != 0,
        value: b.load(reg::REQ_VALUE, Width::Double)?,
    };
    Ok(Some((request, pending)))
}

/// What no client can have asked for: the hypervisor forwards only
/// aligned 1/2/4/8-byte accesses inside a window of a device on the link.
fn well_formed(b: &Backend, r: &Request) -> bool {
    r.id != 0
        && r.device < b.devices
        && matches!(r.size, 1 | 2 | 4 | 8)
        && r.offset.is_multiple_of(r.size)
        && r.offset + r.size <= WINDOW
}

/// Serves the client until it ends check `step`; `hold_barrier`: the
/// first barrier read is held until two requests wait.
fn serve(b: &Backend, step: Step, mut hold_barrier: bool) -> Result<Served, Failure> {
    let mut served = Served::default();
    let mut bad = None;
    let mut wrong_end = None;
    loop {
        let mut next = None;
        wait("the client's next request (PENDING)", PEER_MS, || {
            next = front(b)?;
            Ok(next.is_some())
        })?;
        let Some((mut request, mut pending)) = next else { continue };
        if hold_barrier && request.offset == dev::BARRIER && !request.write {
            hold_barrier = false;
            wait("a second request while the first barrier read waits (two vCPUs at once)", PEER_MS, || {
                pending = b.load32(reg::PENDING)?;
                Ok(pending >= 2)
            })?;
            request = front(b)?.map_or(request, |(r, _)| r);
        }
        served.most_pending = served.most_pending.max(pending);
        let response = if well_formed(b, &request) {
            answer(b, &request, served.requests)
        } else {
            bad = bad.or(Some(request));
            Ok(0)
        };
        let is_end = request.write && request.offset == dev::END;
        if is_end && request.value != step as u64 {
            wrong_end = Some(request.value);
        }
        if is_end {
            // Every request before this one is complete; this one next.
            let completed = b.load32(reg::COMPLETED)?;
            let served_before = SERVED.load(Ordering::SeqCst);
            if u64::from(completed) != served_before {
                println!("virtio: COMPLETED {completed}, served {served_before}");
                bad = bad.or(Some(request));
            }
        }
        // Completed whatever the answer, so that the client never waits in vain.
        b.store(reg::RESPONSE, Width::Double, *response.as_ref().unwrap_or(&0))?;
        b.store(reg::COMPLETE, Width::Word, request.id.into())?;
        SERVED.fetch_add(1, Ordering::SeqCst);
        served.requests += 1;
        response?;
        if is_end {
            break;
        }
    }
    if let Some(r) = bad {
        println!(
            "virtio: bad request: id {} device {} offset {:#x} size {} write {} (or COMPLETED off)",
            r.id, r.device, r.offset, r.size, r.write
        );
        return Err(Failure::Missing("the service saw a request no client access should make"));
    }
    if let Some(value) = wrong_end {
        return Err(Failure::Mismatch {
            what: "the end of check number (out of step)",
            expected: step as u64,
            got: value,
        });
    }
    Ok(served)
}

/// The service's side of a check: serve until it ends, then `after`.
fn service_step(
    env: &Env,
    b: &Backend,
    step: Step,
    hold_barrier: bool,
    after: impl FnOnce(Served) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let served = with_interrupts(env, &[b.intid], || serve(b, step, hold_barrier))?;
    after(served)
}

// --- virtio-find -------------------------------------------------------------------------

pub fn find(env: &Env) -> Result<(), Failure> {
    *ROLE.lock() = Role::Nothing;
    let (backend, functions) = find_backend(env, true)?;
    let nodes = &env.virtio;
    match (backend, nodes.count) {
        (Some(b), 0) => {
            expect_eq("backend functions on bus 0 (one client)", 1, functions.into())?;
            println!(
                "virtio: service: {}: client RAM at {:#x}, {} MiB, {} devices, BAR2 at {:#x}, INTID {}",
                b.bdf,
                b.client_base,
                b.client_size >> 20,
                b.devices,
                b.ram,
                b.intid
            );
            // The client's start is an event; taken, so only requests raise
            // the line from here on.
            b.store(reg::EVENTS, Width::Word, platform::forward::EVENT_CLIENT_RESET.into())?;
            with_interrupts(env, &[b.intid], || {
                wait("the client running (CLIENT_STATE 1)", START_MS, || Ok(b.load32(reg::CLIENT_STATE)? == 1))
            })?;
            *ROLE.lock() = Role::Service(b);
            service_step(env, &b, Step::Find, false, |_| Ok(()))
        }
        (None, n) if n > 0 => {
            let client = find_client(env, true)?;
            *ROLE.lock() = Role::Client(client);
            let first = client.first()?;
            // Until the service runs, the hypervisor's fallback answers
            // (with its own vendor ID); those reads never reach the service.
            let mut vendor = 0;
            wait("the service answering (VendorID of the stub's fake device)", START_MS, || {
                vendor = crate::pci::load(first.base + dev::VENDOR_ID, Width::Word)
                    .map_err(|caught| Failure::Exception { what: WINDOW_ABORTED, caught })?;
                Ok(vendor != u64::from(FALLBACK_VENDOR))
            })?;
            FORWARDED.fetch_add(1, Ordering::SeqCst);
            end_step(first, Step::Find, expect_eq("VendorID once served", STUB_VENDOR.into(), vendor))
        }
        (Some(_), _) => Err(Failure::Missing("this VM has both a backend function and virtio,mmio nodes")),
        (None, _) => Err(Failure::Missing("this VM has neither a backend function nor virtio,mmio nodes")),
    }
}

/// `checked`: as many nodes as `stub=virtio-devices` says, of the types
/// `stub=virtio-types` says (not in `stub=virtio-bench`).
fn find_client(env: &Env, checked: bool) -> Result<Client, Failure> {
    let nodes = &env.virtio;
    if nodes.overflow {
        return Err(Failure::Missing("more virtio,mmio nodes than a client can have"));
    }
    if checked {
        let wanted = DEVICES_WANTED.load(Ordering::Relaxed);
        expect_eq("virtio,mmio nodes (stub=virtio-devices)", wanted.into(), nodes.count as u64)?;
    }
    let mut client = Client { devices: [None; MAX_DEVICES], count: nodes.count };
    for (index, (node, slot)) in nodes.nodes.iter().zip(client.devices.iter_mut()).take(nodes.count).enumerate() {
        expect_eq("a virtio,mmio node's reg size", WINDOW, node.size)?;
        if index > 0 {
            expect_eq("the next window (0x200 after the one before)", nodes.nodes[index - 1].base + WINDOW, node.base)?;
        }
        let [kind, number, flags] = node.interrupts;
        expect_eq("interrupts cell 0 (0: SPI)", 0, kind.into())?;
        expect_eq("interrupts cell 2 (1: edge rising)", EDGE_RISING.into(), flags.into())?;
        if !node.dma_coherent {
            return Err(Failure::Missing("a virtio,mmio node without dma-coherent"));
        }
        let intid = number.saturating_add(SPI_BASE);
        let id = if checked { wanted_type(index)?.virtio_id() } else { 0 };
        println!("virtio: client: device {index} at {:#x}, INTID {intid}, type {id}", node.base);
        *slot = Some(Device { index, base: node.base, intid, id });
    }
    println!("virtio: client: RAM at {:#x}, {} MiB", env.ram_base, (env.ram_end - env.ram_base) >> 20);
    Ok(client)
}

// --- the client's checks -----------------------------------------------------------------

/// Runs the role's side of a check: the client's `client`, or the
/// service's serving and then `service`.
fn both(
    env: &Env,
    step: Step,
    client: impl FnOnce(&Client) -> Result<(), Failure>,
    service: impl FnOnce(Served) -> Result<(), Failure>,
) -> Result<(), Failure> {
    match role()? {
        Role::Client(c) => client_step(&c, step, client),
        Role::Service(b) => service_step(env, &b, step, step == Step::Smp, service),
        Role::Nothing => Err(Failure::Missing("no role")),
    }
}

pub fn identity(env: &Env) -> Result<(), Failure> {
    both(
        env,
        Step::Identity,
        |c| {
            for d in c.devices() {
                d.expect("MagicValue", dev::MAGIC, 4, virtio::MAGIC.into())?;
                d.expect("Version", dev::VERSION, 4, 2)?;
                d.expect("DeviceID (the type of stub=virtio-types)", dev::DEVICE_ID, 4, d.id.into())?;
                d.expect("VendorID (the stub's fake device)", dev::VENDOR_ID, 4, STUB_VENDOR.into())?;
                d.expect("MagicValue's low half (a 2-byte read)", dev::MAGIC, 2, u64::from(virtio::MAGIC & 0xffff))?;
                d.expect("MagicValue's byte 3 (a 1-byte read)", dev::MAGIC + 3, 1, u64::from(virtio::MAGIC >> 24))?;
                for (offset, size) in [(0x010, 4), (0x0fc, 4), (0x1f8, 8), (0x1ff, 1), (0x0be, 2)] {
                    d.expect("an unknown register (reads 0)", offset, size, 0)?;
                }
            }
            Ok(())
        },
        |served| {
            // Per device: 4 words, 2 narrow reads, 5 unknown offsets; and the end.
            let devices = u64::from(DEVICES_WANTED.load(Ordering::Relaxed));
            expect_eq("requests in virtio-identity (11 per device and the end)", 11 * devices + 1, served.requests)
        },
    )
}

/// Device `index`'s scratch values: a 64-bit word per 8 bytes, its own.
fn scratch_value(index: usize, size: u64, at: u64) -> u64 {
    let v = 0x8070_6050_4030_2010u64.wrapping_add((index as u64) << 56 | at << 8 | size);
    if size == 8 {
        v
    } else {
        v & ((1u64 << (8 * size)) - 1)
    }
}

pub fn scratch(env: &Env) -> Result<(), Failure> {
    both(
        env,
        Step::Scratch,
        |c| {
            let mut accesses = 0;
            for d in c.devices() {
                for size in [1u64, 2, 4, 8] {
                    for at in (0..dev::SCRATCH_LEN).step_by(size as usize) {
                        let value = scratch_value(d.index, size, at);
                        d.write(dev::SCRATCH + at, size, value)?;
                        d.expect("a scratch register read back (its size)", dev::SCRATCH + at, size, value)?;
                        accesses += 2;
                    }
                }
                // Whole words, then narrower views of them, sign-extended.
                d.write(dev::SCRATCH, 8, 0x8081_8283_f4f5_86f7)?;
                d.expect("scratch word 0 (8 bytes)", dev::SCRATCH, 8, 0x8081_8283_f4f5_86f7)?;
                let (sb, sh, sw) = signed_loads(d.base + dev::SCRATCH)?;
                FORWARDED.fetch_add(3, Ordering::SeqCst);
                expect_eq("LDRSB of 0xf7", 0xffff_ffff_ffff_fff7, sb)?;
                expect_eq("LDRSH of 0x86f7", 0xffff_ffff_ffff_86f7, sh)?;
                expect_eq("LDRSW of 0xf4f586f7", 0xffff_ffff_f4f5_86f7, sw)?;
                // The other device's scratch is its own.
                d.expect("scratch word 1 (the last 8-byte value)", dev::SCRATCH + 8, 8, scratch_value(d.index, 8, 8))?;
                accesses += 6;
            }
            println!("virtio: scratch: {accesses} accesses checked");
            Ok(())
        },
        |served| {
            // Per device: (16 + 8 + 4 + 2) write-read pairs, 6 more; the end.
            let devices = u64::from(DEVICES_WANTED.load(Ordering::Relaxed));
            expect_eq("requests in virtio-scratch (66 per device and the end)", 66 * devices + 1, served.requests)
        },
    )
}

/// `LDRSB`, `LDRSH` and `LDRSW` of the same address into X registers.
fn signed_loads(addr: u64) -> Result<(u64, u64, u64), Failure> {
    let (mut b, mut h, mut w) = (0u64, 0u64, 0u64);
    let caught = expect_sync(|| {
        // SAFETY: `addr` is a virtio,mmio window, which stage 2 leaves
        // unmapped for the hypervisor to forward; nothing of the stub's
        // lives there. Should a load abort, the handler steps over it.
        unsafe {
            core::arch::asm!(
                "ldrsb {b}, [{a}]",
                "ldrsh {h}, [{a}]",
                "ldrsw {w}, [{a}]",
                a = in(reg) addr,
                b = out(reg) b,
                h = out(reg) h,
                w = out(reg) w,
                options(nostack)
            );
        }
    });
    match caught {
        Some(caught) => Err(Failure::Exception { what: "a sign-extending load of a window aborted", caught }),
        None => Ok((b, h, w)),
    }
}

pub fn hostile(env: &Env) -> Result<(), Failure> {
    both(
        env,
        Step::Hostile,
        |c| {
            let d = c.first()?;
            let unaligned = d.base + dev::SCRATCH + 1;
            let caught = expect_sync(|| {
                // SAFETY: a load expected to abort (unaligned); the handler
                // steps over it.
                unsafe {
                    core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) unaligned, v = out(reg) _, options(nostack))
                };
            })
            .ok_or(Failure::Missing("an unaligned 4-byte load of a window did not abort"))?;
            abort_at(caught, unaligned, false)?;
            let unaligned = d.base + dev::SCRATCH + 4;
            let caught = expect_sync(|| {
                // SAFETY: a store expected to abort (unaligned); the handler
                // steps over it.
                unsafe {
                    core::arch::asm!("str {v}, [{a}]", a = in(reg) unaligned, v = in(reg) 0u64, options(nostack))
                };
            })
            .ok_or(Failure::Missing("an unaligned 8-byte store to a window did not abort"))?;
            abort_at(caught, unaligned, true)?;
            let pair = d.base + dev::MAGIC;
            let caught = expect_sync(|| {
                // SAFETY: a pair load has no syndrome: the hypervisor
                // injects an abort, which the handler steps over.
                unsafe {
                    core::arch::asm!("ldp {x}, {y}, [{a}]", a = in(reg) pair, x = out(reg) _, y = out(reg) _, options(nostack))
                };
            })
            .ok_or(Failure::Missing("LDP from a window did not abort"))?;
            crate::checks::check_injected_abort(caught, pair, false)?;
            let pair = d.base + dev::SCRATCH;
            let caught = expect_sync(|| {
                // SAFETY: as the pair load.
                unsafe {
                    core::arch::asm!("stp {x}, {x}, [{a}]", a = in(reg) pair, x = in(reg) 0u64, options(nostack))
                };
            })
            .ok_or(Failure::Missing("STP to a window did not abort"))?;
            crate::checks::check_injected_abort(caught, pair, true)?;
            // None of them reached the service.
            d.expect("COUNT: requests of this check the service saw before (none of the four)", dev::COUNT, 4, 0)?;
            // The scratch is as virtio-scratch left it: the STP stored nothing.
            d.expect("scratch word 0 after the aborted STP", dev::SCRATCH, 8, 0x8081_8283_f4f5_86f7)
        },
        |served| expect_eq("requests in virtio-hostile (COUNT, the scratch, the end)", 3, served.requests),
    )
}

/// An unaligned access's abort: the hypervisor's, injected (QEMU does
/// not fault unaligned accesses to Device memory, which the window is to
/// the stub with its MMU off, so they trap to EL2 and are refused there).
fn abort_at(caught: crate::exceptions::Caught, addr: u64, write: bool) -> Result<(), Failure> {
    let dfsc = caught.esr.abort().map_or(u64::MAX, |abort| abort.fault().code().into());
    println!("virtio: unaligned {}: DFSC {dfsc:#x}", if write { "store" } else { "load" });
    crate::checks::check_injected_abort(caught, addr, write)
}

/// Which slot counts device `index`'s interrupts: its own.
fn device_intids(c: &Client) -> [u32; MAX_DEVICES] {
    let mut intids = [0; MAX_DEVICES];
    for d in c.devices() {
        if let Some(slot) = intids.get_mut(d.index) {
            *slot = d.intid;
        }
    }
    intids
}

/// Every device's interrupt count must be `expected(index)`.
fn expect_taken(c: &Client, what: &'static str, expected: impl Fn(usize) -> u64) -> Result<(), Failure> {
    for d in c.devices() {
        expect_eq(what, expected(d.index), taken(d.index))?;
    }
    Ok(())
}

pub fn interrupt(env: &Env) -> Result<(), Failure> {
    both(
        env,
        Step::Interrupt,
        |c| {
            let intids = device_intids(c);
            with_interrupts(env, &intids[..c.count], || {
                for d in c.devices() {
                    for round in 1..=2u64 {
                        d.write(dev::TRIGGER, 4, 1)?;
                        wait("the device's interrupt after a trigger", PEER_MS, || Ok(taken(d.index) >= round))?;
                        d.expect("InterruptStatus after a trigger", dev::INTERRUPT_STATUS, 4, 1)?;
                        d.write(dev::INTERRUPT_ACK, 4, 1)?;
                        d.expect("InterruptStatus after InterruptACK", dev::INTERRUPT_STATUS, 4, 0)?;
                        // One interrupt a trigger, only the triggered device's.
                        settle(POLL_MS);
                        expect_taken(c, "interrupts of each device so far (one per trigger)", |i| match i {
                            i if i < d.index => 2,
                            i if i == d.index => round,
                            _ => 0,
                        })?;
                    }
                }
                Ok(())
            })
        },
        |served| {
            // Per device, twice: trigger, status, ack, status; the end.
            let devices = u64::from(DEVICES_WANTED.load(Ordering::Relaxed));
            expect_eq("requests in virtio-interrupt (8 per device and the end)", 8 * devices + 1, served.requests)
        },
    )
}

/// `virtio-ram`'s pattern in the client's RAM, and a word after it for the
/// service's answer.
struct Pattern([u64; PATTERN_WORDS + 1]);
static PATTERN: spin::Mutex<Pattern> = spin::Mutex::new(Pattern([0; PATTERN_WORDS + 1]));

pub fn ram(env: &Env) -> Result<(), Failure> {
    both(
        env,
        Step::Ram,
        |c| {
            let d = c.first()?;
            let mut pattern = PATTERN.lock();
            for (i, word) in pattern.0.iter_mut().enumerate() {
                *word = 0x5041_5454_0000_0000 | (i as u64).wrapping_mul(0x0001_0003);
            }
            let expected = checksum(pattern.0.iter().take(PATTERN_WORDS).copied());
            // The stub runs with its MMU off: the address is guest-physical.
            let addr = pattern.0.as_ptr() as u64;
            aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
            d.write(dev::PATTERN_ADDR, 8, addr)?;
            d.write(dev::PATTERN_LEN, 4, 8 * PATTERN_WORDS as u64)?;
            d.expect("CHECKSUM of the pattern, as the service read it through BAR2", dev::CHECKSUM, 8, expected)?;
            aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
            // SAFETY: the word after the pattern, in this static, which the
            // service wrote through BAR2; read volatile since the compiler
            // cannot know.
            let answer = unsafe { core::ptr::read_volatile(pattern.0.as_ptr().add(PATTERN_WORDS)) };
            expect_eq("the word after the pattern (the service wrote the checksum's complement)", !expected, answer)?;
            println!("virtio: ram: {PATTERN_WORDS} words at {addr:#x}, checksum {expected:#x}");
            Ok(())
        },
        |served| expect_eq("requests in virtio-ram (address, length, checksum, end)", 4, served.requests),
    )
}

/// `virtio-smp`'s job on vCPU 1: the barrier read, then [`SMP_READS`]
/// reads of its scratch word (device 0's word 1); returns how many read
/// right, or `u64::MAX` if an access aborted.
fn smp_job(base: u64) -> u64 {
    let Ok(barrier) = crate::pci::load(base + dev::BARRIER, Width::Word) else { return u64::MAX };
    let mut right = u64::from(barrier == BARRIER_VALUE);
    for _ in 0..SMP_READS {
        match crate::pci::load(base + dev::SCRATCH + 8, Width::Double) {
            Ok(v) => right += u64::from(v == SMP_WORDS[1]),
            Err(_) => return u64::MAX,
        }
    }
    right
}

/// The scratch words vCPU 0 and vCPU 1 read in `virtio-smp`.
const SMP_WORDS: [u64; 2] = [0x5350_0000_0000_0a0a, 0x5350_0000_0000_0b1b];

pub fn smp(env: &Env) -> Result<(), Failure> {
    both(
        env,
        Step::Smp,
        |c| {
            if smp::count() < 2 {
                return Err(Failure::Skip("needs at least 2 vCPUs"));
            }
            virq::secondaries()?;
            let d = c.first()?;
            d.write(dev::SCRATCH, 8, SMP_WORDS[0])?;
            d.write(dev::SCRATCH + 8, 8, SMP_WORDS[1])?;
            smp::post(1, smp_job, d.base).map_err(|why| IrqFailure::Job { cpu: 1, why })?;
            // The service holds the first barrier read until both wait.
            d.expect("the barrier read on vCPU 0", dev::BARRIER, 4, BARRIER_VALUE)?;
            let mut right = 0;
            for _ in 0..SMP_READS {
                right += u64::from(d.read(dev::SCRATCH, 8)? == SMP_WORDS[0]);
            }
            let theirs =
                smp::wait(1, timer::Deadline::after_ms(PEER_MS)).map_err(|why| IrqFailure::Job { cpu: 1, why })?;
            FORWARDED.fetch_add(1 + SMP_READS, Ordering::SeqCst);
            expect_eq("vCPU 0's reads of its scratch word that read right", SMP_READS, right)?;
            expect_eq("vCPU 1's barrier and reads that read right", SMP_READS + 1, theirs)
        },
        |served| {
            println!("virtio: smp: at most {} requests waited at once", served.most_pending);
            if served.requests == 1 {
                return Err(Failure::Skip("the client has one vCPU"));
            }
            // Two scratch writes, two barriers, each vCPU's reads; the end.
            expect_eq("requests in virtio-smp", 2 + 2 + 2 * SMP_READS + 1, served.requests)?;
            if served.most_pending < 2 {
                return Err(Failure::Missing("the two vCPUs' requests never waited at once"));
            }
            Ok(())
        },
    )
}

pub fn done(env: &Env) -> Result<(), Failure> {
    both(
        env,
        Step::Done,
        |c| {
            let d = c.first()?;
            let made = FORWARDED.load(Ordering::SeqCst);
            d.expect("TOTAL: requests the service served (exactly the forwarded accesses made)", dev::TOTAL, 4, made)
        },
        // `serve` checked COMPLETED against its count at each end marker.
        |_| Ok(()),
    )
}

pub fn service_death(env: &Env) -> Result<(), Failure> {
    let c = match role()? {
        Role::Service(_) => {
            return Err(Failure::Skip("the service powers off after its checks; the client checks its devices fail"))
        }
        Role::Client(c) => c,
        Role::Nothing => return Err(Failure::Missing("no role")),
    };
    let intids = device_intids(&c);
    with_interrupts(env, &intids[..c.count], || {
        let d = c.first()?;
        // This load waits until the service is gone; the hypervisor then
        // answers it from the fallback.
        let status = crate::pci::load(d.base + dev::STATUS, Width::Word)
            .map_err(|caught| Failure::Exception { what: WINDOW_ABORTED, caught })?;
        expect_eq("Status once the service is gone (NEEDS_RESET)", virtio::STATUS_NEEDS_RESET.into(), status)?;
        wait("each device's configuration-change interrupt", PEER_MS, || Ok(c.devices().all(|d| taken(d.index) >= 1)))?;
        for d in c.devices() {
            let load = |offset| {
                crate::pci::load(d.base + offset, Width::Word)
                    .map_err(|caught| Failure::Exception { what: WINDOW_ABORTED, caught })
            };
            let store = |offset, value| {
                crate::pci::store(d.base + offset, Width::Word, value)
                    .map_err(|caught| Failure::Exception { what: WINDOW_ABORTED, caught })
            };
            expect_eq("MagicValue (fallback)", virtio::MAGIC.into(), load(dev::MAGIC)?)?;
            expect_eq("DeviceID (fallback: still the device's)", d.id.into(), load(dev::DEVICE_ID)?)?;
            expect_eq("VendorID (the fallback's)", FALLBACK_VENDOR.into(), load(dev::VENDOR_ID)?)?;
            expect_eq("Status (fallback)", virtio::STATUS_NEEDS_RESET.into(), load(dev::STATUS)?)?;
            expect_eq("InterruptStatus (configuration change)", INT_CONFIG.into(), load(dev::INTERRUPT_STATUS)?)?;
            store(dev::SCRATCH, 0x1234_5678)?;
            expect_eq("scratch (fallback: writes dropped, reads 0)", 0, load(dev::SCRATCH)?)?;
            store(dev::INTERRUPT_ACK, INT_CONFIG.into())?;
            expect_eq("InterruptStatus after InterruptACK", 0, load(dev::INTERRUPT_STATUS)?)?;
        }
        settle(POLL_MS);
        expect_taken(&c, "configuration-change interrupts of each device (exactly one)", |_| 1)
    })
}

// --- stub=virtio-bench=N --------------------------------------------------------------------

/// Most rounds `stub=virtio-bench=N` times (its samples live on the stack).
pub const MAX_BENCH_ROUNDS: usize = 201;

/// `stub=virtio-bench=N`, in the client and its service VM, instead of the
/// checks: after an untimed read (which also waits for the service), the
/// client times N reads of `MagicValue` on the virtual counter (instructions
/// under `-icount shift=0`), each a whole forwarded round trip; both count
/// their own instructions at EL1 and EL0 over the rounds (the PMU's cycle
/// counter filtered to them). One line each,
/// [`platform::forward::BenchReport`]; the exit status is 0 if it ran.
pub fn bench(env: &Env, rounds: u32) -> u32 {
    use platform::forward::{BenchReport, BenchRole};
    let rounds = (rounds as usize).clamp(1, MAX_BENCH_ROUNDS);
    let result = (|| -> Result<(), Failure> {
        let (backend, _) = find_backend(env, false)?;
        if let Some(b) = backend {
            b.store(reg::EVENTS, Width::Word, platform::forward::EVENT_CLIENT_RESET.into())?;
            return with_interrupts(env, &[b.intid], || {
                // The untimed read, then the rounds and the end.
                let mut warm = None;
                wait("the client's first read", START_MS, || {
                    warm = front(&b)?;
                    Ok(warm.is_some())
                })?;
                let warm_id = warm.map_or(0, |(r, _)| r.id);
                complete(&b, warm_id, STUB_VENDOR.into())?;
                crate::bench::cycle_counter_start(0);
                let start = crate::bench::counter();
                let mut served = 0u64;
                loop {
                    let mut next = None;
                    wait("the client's next read", PEER_MS, || {
                        next = front(&b)?;
                        Ok(next.is_some())
                    })?;
                    let Some((request, _)) = next else { continue };
                    if request.write && request.offset == dev::END {
                        let guest = crate::bench::counter().wrapping_sub(start);
                        complete(&b, request.id, 0)?;
                        let report = BenchReport {
                            role: BenchRole::Service,
                            rounds: served as u32,
                            guest,
                            ..Default::default()
                        };
                        println!("{report}");
                        return Ok(());
                    }
                    complete(&b, request.id, virtio::MAGIC.into())?;
                    served += 1;
                }
            });
        }
        let client = find_client(env, false)?;
        let d = client.first()?;
        // Until the service runs the fallback answers, with its own vendor
        // ID: the first read the service answers is the untimed one.
        with_interrupts(env, &[], || {
            wait("the service answering", START_MS, || {
                let vendor = crate::pci::load(d.base + dev::VENDOR_ID, Width::Word)
                    .map_err(|caught| Failure::Exception { what: WINDOW_ABORTED, caught })?;
                Ok(vendor != u64::from(FALLBACK_VENDOR))
            })
        })?;
        let mut samples = [0u64; MAX_BENCH_ROUNDS];
        let samples = samples.get_mut(..rounds).unwrap_or_default();
        crate::bench::cycle_counter_start(0);
        let (guest_start, start) = (crate::bench::counter(), timer::virtual_now());
        for sample in samples.iter_mut() {
            let t0 = timer::virtual_now();
            let value = crate::pci::load(d.base + dev::MAGIC, Width::Word)
                .map_err(|caught| Failure::Exception { what: WINDOW_ABORTED, caught })?;
            *sample = timer::virtual_now().wrapping_sub(t0);
            expect_eq("MagicValue", virtio::MAGIC.into(), value)?;
        }
        let (guest, total) =
            (crate::bench::counter().wrapping_sub(guest_start), timer::virtual_now().wrapping_sub(start));
        crate::pci::store(d.base + dev::END, Width::Word, Step::Bench as u64)
            .map_err(|caught| Failure::Exception { what: WINDOW_ABORTED, caught })?;
        let frequency = u128::from(timer::frequency().max(1));
        let ns = |ticks: u64| u64::try_from(u128::from(ticks) * 1_000_000_000 / frequency).unwrap_or(u64::MAX);
        for sample in samples.iter_mut() {
            *sample = ns(*sample);
        }
        samples.sort_unstable();
        let report = BenchReport {
            role: BenchRole::Client,
            rounds: rounds as u32,
            total: ns(total),
            guest,
            median: samples.get(rounds / 2).copied().unwrap_or(0),
            min: samples.first().copied().unwrap_or(0),
            max: samples.last().copied().unwrap_or(0),
        };
        println!("{report}");
        Ok(())
    })();
    match result {
        Ok(()) => 0,
        Err(failure) => {
            println!("virtio bench: failed: {failure}");
            1
        }
    }
}

/// Completes request `id` (the front one) with `response`.
fn complete(b: &Backend, id: u32, response: u64) -> Result<(), Failure> {
    b.store(reg::RESPONSE, Width::Double, response)?;
    b.store(reg::COMPLETE, Width::Word, id.into())
}
