use super::*;
use crate::console::Console;
use crate::testutil::{Ring, SharedOutput, TempFile, ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK, RAM_BASE, RAM_SIZE};
use crate::transport::{self, F_VERSION_1, INT_VRING};
use platform::control::VmState;
use platform::forward::{Access, BackendModel, Completion, LinkInfo};
use std::cell::RefCell;
use vm_memory::{Bytes, GuestAddress};

/// The hypervisor's model of the backend function, behind the register
/// trait the real BAR0 implements; completions and line changes are kept
/// for the test to look at.
struct ModelRegs {
    model: RefCell<BackendModel>,
    completions: RefCell<Vec<Completion>>,
    irq_writes: RefCell<u32>,
}

impl Registers for ModelRegs {
    fn read32(&self, offset: u64) -> u32 {
        self.model.borrow().read(offset, 4) as u32
    }

    fn write32(&self, offset: u64, value: u32) {
        let effect = self.model.borrow_mut().write(offset, 4, u64::from(value));
        self.completions.borrow_mut().extend(effect.completion);
        if effect.lines.is_some() {
            *self.irq_writes.borrow_mut() += 1;
        }
    }

    fn read64(&self, offset: u64) -> u64 {
        self.model.borrow().read(offset, 8)
    }

    fn write64(&self, offset: u64, value: u64) {
        self.model.borrow_mut().write(offset, 8, value);
    }
}

fn info() -> LinkInfo {
    let mut name = [0u8; NAME_LEN];
    name[..7].copy_from_slice(b"linux-b");
    let mut devices = [None; MAX_DEVICES];
    devices[0] = Some(DeviceType::Block);
    devices[1] = Some(DeviceType::Console);
    LinkInfo { ram_base: RAM_BASE, ram_size: RAM_SIZE as u64, name, devices }
}

struct World {
    regs: ModelRegs,
    backend: Backend,
    out: SharedOutput,
    _file: TempFile,
}

fn world() -> World {
    let mut model = BackendModel::new(info());
    model.client_changed(VmState::Running);
    // The client's start is an event too; this backend starts after it.
    model.write(reg::EVENTS, 4, u64::from(EVENT_CLIENT_RESET));
    let regs = ModelRegs { model: RefCell::new(model), completions: RefCell::default(), irq_writes: RefCell::new(0) };
    let file = TempFile::new("backend", 4096);
    let out = SharedOutput::default();
    let block = Block::new(file.open(), false, "b").unwrap();
    let slots = vec![
        Some(Slot::Block(Transport::new(block))),
        Some(Slot::Console(Transport::new(Console::new(Box::new(out.clone()))))),
    ];
    let backend = Backend::new(crate::testutil::ram(), slots);
    World { regs, backend, out, _file: file }
}

impl World {
    /// The client's access, forwarded: queued in the model, served by one
    /// round, completed; returns what the client's vCPU gets.
    fn access(&mut self, device: u8, offset: u64, size: u8, write: bool, value: u64) -> u64 {
        let access = Access::new(device, offset, size, write, value).unwrap();
        let id = self.regs.model.borrow_mut().queue.push(access, 0).unwrap();
        assert_eq!(self.backend.service(&self.regs), 1);
        let done = self.regs.completions.borrow_mut().pop().expect("the request completed");
        assert_eq!(done.request.id, id);
        assert_eq!(self.regs.model.borrow().read(reg::PENDING, 4), 0);
        done.value
    }

    fn read(&mut self, device: u8, offset: u64) -> u32 {
        self.access(device, offset, 4, false, 0) as u32
    }

    fn write(&mut self, device: u8, offset: u64, value: u32) {
        assert_eq!(self.access(device, offset, 4, true, u64::from(value)), 0);
    }

    fn lines(&self) -> u32 {
        self.regs.model.borrow().lines()
    }
}

#[test]
fn the_client_is_described_by_the_function() {
    let w = world();
    let client = ClientInfo::read(&w.regs);
    assert_eq!(client.name, "linux-b");
    assert_eq!((client.ram_base, client.ram_size), (RAM_BASE, RAM_SIZE as u64));
    let devices: Vec<_> = client.devices().collect();
    assert_eq!(devices, vec![(0, Ok(DeviceType::Block)), (1, Ok(DeviceType::Console))]);
}

#[test]
fn forwarded_reads_and_writes_reach_the_transport() {
    let mut w = world();
    assert_eq!(w.read(0, transport::reg::MAGIC_VALUE), transport::MAGIC);
    assert_eq!(w.read(0, transport::reg::DEVICE_ID), 2);
    assert_eq!(w.read(1, transport::reg::DEVICE_ID), 3);
    // A config read cut to its size by the model, as the client sees it.
    assert_eq!(w.access(0, 0x100, 1, false, 0), 8, "capacity: 4096 bytes, 8 sectors");
    w.write(1, transport::reg::STATUS, ACKNOWLEDGE);
    assert_eq!(w.read(1, transport::reg::STATUS), ACKNOWLEDGE);
    // A device nothing serves reads 0, and the request still completes.
    assert_eq!(w.read(5, transport::reg::MAGIC_VALUE), 0);
    assert_eq!(w.backend.stats.unserved, 1);
    assert_eq!(w.backend.stats.requests, 7);
    assert_eq!(w.regs.model.borrow().read(reg::COMPLETED, 4), 7);
}

/// The console's driver start, through forwarded accesses.
fn start_console(w: &mut World, tx: &Ring) {
    w.write(1, transport::reg::STATUS, ACKNOWLEDGE | DRIVER);
    w.write(1, transport::reg::DRIVER_FEATURES_SEL, 1);
    w.write(1, transport::reg::DRIVER_FEATURES, (F_VERSION_1 >> 32) as u32);
    w.write(1, transport::reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_ne!(w.read(1, transport::reg::STATUS) & FEATURES_OK, 0);
    w.write(1, transport::reg::QUEUE_SEL, 1);
    w.write(1, transport::reg::QUEUE_NUM, u32::from(tx.size));
    w.write(1, transport::reg::QUEUE_DESC_LOW, tx.desc() as u32);
    w.write(1, transport::reg::QUEUE_DRIVER_LOW, tx.avail() as u32);
    w.write(1, transport::reg::QUEUE_DEVICE_LOW, tx.used() as u32);
    w.write(1, transport::reg::QUEUE_READY, 1);
    w.write(1, transport::reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
}

#[test]
fn a_notification_raises_the_line_and_the_ack_drops_it() {
    let mut w = world();
    let mut tx = Ring::new(RAM_BASE + 0x2000, 16);
    start_console(&mut w, &tx);
    assert_eq!(w.lines(), 0);
    w.backend_mem_write(b"ping", RAM_BASE + 0x8000);
    tx.submit(w.backend_mem(), &[(RAM_BASE + 0x8000, 4, false)]);
    w.write(1, transport::reg::QUEUE_NOTIFY, 1);
    assert_eq!(w.out.0.borrow().as_slice(), b"ping");
    assert_eq!(w.lines(), 0b10, "device 1's line");
    assert_eq!(w.read(1, transport::reg::INTERRUPT_STATUS), INT_VRING);
    w.write(1, transport::reg::INTERRUPT_ACK, INT_VRING);
    assert_eq!(w.lines(), 0);
    assert_eq!(*w.regs.irq_writes.borrow(), 2, "IRQ_LEVEL written only when it changes");
}

#[test]
fn console_input_outside_a_request_reaches_the_client() {
    let mut w = world();
    let mut rx = Ring::new(RAM_BASE + 0x4000, 16);
    // The receive queue as queue 0: set it up like the transmit one.
    w.write(1, transport::reg::STATUS, ACKNOWLEDGE | DRIVER);
    w.write(1, transport::reg::DRIVER_FEATURES_SEL, 1);
    w.write(1, transport::reg::DRIVER_FEATURES, 1);
    w.write(1, transport::reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    w.write(1, transport::reg::QUEUE_SEL, 0);
    w.write(1, transport::reg::QUEUE_NUM, 16);
    w.write(1, transport::reg::QUEUE_DESC_LOW, rx.desc() as u32);
    w.write(1, transport::reg::QUEUE_DRIVER_LOW, rx.avail() as u32);
    w.write(1, transport::reg::QUEUE_DEVICE_LOW, rx.used() as u32);
    w.write(1, transport::reg::QUEUE_READY, 1);
    w.write(1, transport::reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    let head = rx.submit(w.backend_mem(), &[(RAM_BASE + 0x9000, 8, true)]);
    w.write(1, transport::reg::QUEUE_NOTIFY, 0);
    assert_eq!(w.lines(), 0, "no input yet");
    if let Some(Slot::Console(t)) = w.backend.slot_mut(1) {
        t.device_mut().push_input(b"ls\n");
    }
    w.backend.kick(&w.regs, 1);
    assert_eq!(rx.take_used(w.backend_mem()), vec![(u32::from(head), 3)]);
    assert_eq!(w.lines(), 0b10);
}

#[test]
fn a_client_reset_resets_every_device() {
    let mut w = world();
    let tx = Ring::new(RAM_BASE + 0x2000, 16);
    start_console(&mut w, &tx);
    w.write(0, transport::reg::STATUS, ACKNOWLEDGE);
    w.regs.model.borrow_mut().client_changed(VmState::Stopping);
    w.regs.model.borrow_mut().client_changed(VmState::Running);
    assert_ne!(w.regs.model.borrow().read(reg::EVENTS, 4), 0);
    assert_eq!(w.backend.service(&w.regs), 0);
    assert_eq!(w.regs.model.borrow().read(reg::EVENTS, 4), 0, "the event is cleared");
    assert!(!w.regs.model.borrow().level(), "and the function's interrupt drops");
    assert_eq!(w.read(0, transport::reg::STATUS), 0);
    assert_eq!(w.read(1, transport::reg::STATUS), 0);
    w.write(1, transport::reg::QUEUE_SEL, 1);
    assert_eq!(w.read(1, transport::reg::QUEUE_READY), 0);
    assert_eq!(w.backend.take_notes(), vec![Note::ClientReset { state: VmState::Running as u32 }]);
    assert_eq!(w.backend.stats.client_resets, 1);
}

#[test]
fn a_hostile_queue_is_reported_once_and_the_line_raised() {
    let mut w = world();
    // The transmit queue at the top of the client's RAM: its rings do not fit.
    let tx = Ring::new(RAM_BASE + RAM_SIZE as u64 - 0x100, 16);
    start_console(&mut w, &tx);
    assert_ne!(w.read(1, transport::reg::STATUS) & transport::S_NEEDS_RESET, 0);
    assert_eq!(w.lines(), 0b10, "the configuration-change interrupt");
    assert_eq!(w.backend.take_notes(), vec![Note::Fault { device: 1, fault: Fault::QueueOutsideRam { queue: 1 } }]);
    assert!(w.backend.take_notes().is_empty());
    assert_eq!(w.backend.stats.faults, 1);
}

impl World {
    fn backend_mem(&self) -> &GuestMemoryMmap {
        &self.backend.mem
    }

    fn backend_mem_write(&self, bytes: &[u8], at: u64) {
        self.backend.mem.write_slice(bytes, GuestAddress(at)).unwrap();
    }
}
