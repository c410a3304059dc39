use super::*;
use crate::chain::ChainError;
use crate::console::Console;
use crate::testutil::*;
use vm_memory::{Bytes, GuestAddress};

fn console() -> (Transport<Console>, SharedOutput) {
    let out = SharedOutput::default();
    (Transport::new(Console::new(Box::new(out.clone()))), out)
}

#[test]
fn identification_and_features() {
    let mem = ram();
    let (mut t, _) = console();
    assert_eq!(r(&t, reg::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(r(&t, reg::VERSION), 2);
    assert_eq!(r(&t, reg::DEVICE_ID), 3);
    assert_eq!(r(&t, reg::VENDOR_ID), 0x4856_0001);
    assert_eq!(device_features(&mut t, &mem), F_VERSION_1);
    w(&mut t, &mem, reg::DEVICE_FEATURES_SEL, 2);
    assert_eq!(r(&t, reg::DEVICE_FEATURES), 0, "no feature word 2");
    // Only 32-bit accesses to registers; unknown registers read 0.
    assert_eq!(t.read(reg::MAGIC_VALUE, 2), 0);
    assert_eq!(t.read(reg::MAGIC_VALUE, 8), 0);
    assert_eq!(r(&t, 0x0e0), 0);
    assert_eq!(r(&t, reg::QUEUE_NOTIFY), 0, "write-only");
    assert_eq!(r(&t, reg::SHM_LEN_LOW), 0xffff_ffff, "no shared memory region");
    assert_eq!(r(&t, reg::CONFIG_GENERATION), 0);
}

#[test]
fn features_ok_needs_version_1_and_only_offered_features() {
    let mem = ram();
    let (mut t, _) = console();
    // Without VERSION_1: refused (the bit does not stick).
    assert_eq!(negotiate(&mut t, &mem, 0), ACKNOWLEDGE | DRIVER);
    // A feature the device does not offer: refused.
    assert_eq!(negotiate(&mut t, &mem, F_VERSION_1 | 1), ACKNOWLEDGE | DRIVER);
    assert_eq!(negotiate(&mut t, &mem, F_VERSION_1), ACKNOWLEDGE | DRIVER | FEATURES_OK);
    // Fixed once accepted.
    w(&mut t, &mem, reg::DRIVER_FEATURES_SEL, 1);
    w(&mut t, &mem, reg::DRIVER_FEATURES, 0);
    assert_eq!(t.driver_features, F_VERSION_1);
}

#[test]
fn queues_are_set_up_by_selection_and_reset_by_status_0() {
    let mem = ram();
    let (mut t, _) = console();
    w(&mut t, &mem, reg::QUEUE_SEL, 1);
    assert_eq!(r(&t, reg::QUEUE_NUM_MAX), 64);
    w(&mut t, &mem, reg::QUEUE_SEL, 2);
    assert_eq!(r(&t, reg::QUEUE_NUM_MAX), 0, "no queue 2");
    w(&mut t, &mem, reg::QUEUE_READY, 1);
    assert_eq!(r(&t, reg::QUEUE_READY), 0);
    let ring = Ring::new(RAM_BASE, 16);
    ring.setup(&mut t, &mem, 1);
    assert_eq!(r(&t, reg::QUEUE_READY), 1);
    assert_eq!(t.queues[1].size(), 16);
    assert_eq!(t.queues[1].avail_ring(), RAM_BASE + 0x800);
    // A ready queue's setup does not move.
    w(&mut t, &mem, reg::QUEUE_NUM, 8);
    w(&mut t, &mem, reg::QUEUE_DESC_LOW, 0x1234);
    assert_eq!((t.queues[1].size(), t.queues[1].desc_table()), (16, RAM_BASE));
    // The driver takes it down.
    w(&mut t, &mem, reg::QUEUE_READY, 0);
    assert_eq!(r(&t, reg::QUEUE_READY), 0);
    ring.setup(&mut t, &mem, 1);
    w(&mut t, &mem, reg::STATUS, 0);
    assert_eq!(r(&t, reg::STATUS), 0);
    w(&mut t, &mem, reg::QUEUE_SEL, 1);
    assert_eq!(r(&t, reg::QUEUE_READY), 0);
    assert_eq!(t.queues[1].size(), 64, "back to QueueNumMax");
}

#[test]
fn used_buffers_interrupt_and_the_ack_clears() {
    let mem = ram();
    let (mut t, out) = console();
    let (rx, mut tx) = (Ring::new(RAM_BASE, 16), Ring::new(RAM_BASE + 0x2000, 16));
    assert_eq!(start(&mut t, &mem, &[&rx, &tx]) & S_NEEDS_RESET, 0);
    mem.write_slice(b"hi", GuestAddress(RAM_BASE + 0x8000)).unwrap();
    tx.submit(&mem, &[(RAM_BASE + 0x8000, 2, false)]);
    assert_eq!(r(&t, reg::INTERRUPT_STATUS), 0, "nothing until the notification");
    w(&mut t, &mem, reg::QUEUE_NOTIFY, 1);
    assert_eq!(out.0.borrow().as_slice(), b"hi");
    assert_eq!(r(&t, reg::INTERRUPT_STATUS), INT_VRING);
    w(&mut t, &mem, reg::INTERRUPT_ACK, INT_VRING);
    assert_eq!(t.interrupt(), 0);
}

#[test]
fn no_work_before_driver_ok() {
    let mem = ram();
    let (mut t, out) = console();
    let mut tx = Ring::new(RAM_BASE + 0x2000, 16);
    negotiate(&mut t, &mem, F_VERSION_1);
    tx.setup(&mut t, &mem, 1);
    mem.write_slice(b"early", GuestAddress(RAM_BASE + 0x8000)).unwrap();
    tx.submit(&mem, &[(RAM_BASE + 0x8000, 5, false)]);
    w(&mut t, &mem, reg::QUEUE_NOTIFY, 1);
    assert!(out.0.borrow().is_empty());
    // DRIVER_OK looks at what is already there.
    w(&mut t, &mem, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(out.0.borrow().as_slice(), b"early");
}

/// Starts a console whose transmit queue is `tx`, then lets `hostile`
/// break it and notifies: the device must need a reset, have raised the
/// configuration interrupt and report `expected`.
fn assert_needs_reset(tx: Ring, hostile: impl FnOnce(&GuestMemoryMmap, &mut Ring), expected: Fault) {
    let mem = ram();
    let (mut t, out) = console();
    let rx = Ring::new(RAM_BASE, 16);
    let mut tx = tx;
    let status = start(&mut t, &mem, &[&rx, &tx]);
    if status & S_NEEDS_RESET == 0 {
        hostile(&mem, &mut tx);
        w(&mut t, &mem, reg::QUEUE_NOTIFY, 1);
    }
    assert_eq!(r(&t, reg::STATUS) & S_NEEDS_RESET, S_NEEDS_RESET);
    assert_eq!(r(&t, reg::INTERRUPT_STATUS) & INT_CONFIG, INT_CONFIG);
    assert_eq!(t.take_fault(), Some(expected));
    assert!(out.0.borrow().is_empty());
    // It stays failed, whatever the driver writes, until a reset.
    let status = r(&t, reg::STATUS);
    w(&mut t, &mem, reg::STATUS, status & !S_NEEDS_RESET);
    assert_ne!(r(&t, reg::STATUS) & S_NEEDS_RESET, 0);
    w(&mut t, &mem, reg::STATUS, 0);
    assert_eq!((r(&t, reg::STATUS), t.interrupt()), (0, 0));
}

#[test]
fn a_queue_outside_ram_needs_a_reset() {
    assert_needs_reset(
        Ring::new(RAM_BASE + RAM_SIZE as u64 - 0x100, 16),
        |_, _| {},
        Fault::QueueOutsideRam { queue: 1 },
    );
    assert_needs_reset(Ring::new(0x1000, 16), |_, _| {}, Fault::QueueOutsideRam { queue: 1 });
}

#[test]
fn a_queue_size_that_is_no_power_of_two_needs_a_reset() {
    let mem = ram();
    let (mut t, _) = console();
    negotiate(&mut t, &mem, F_VERSION_1);
    let tx = Ring::new(RAM_BASE + 0x2000, 16);
    tx.setup(&mut t, &mem, 1);
    w(&mut t, &mem, reg::QUEUE_READY, 0);
    w(&mut t, &mem, reg::QUEUE_NUM, 3);
    w(&mut t, &mem, reg::QUEUE_READY, 1);
    w(&mut t, &mem, reg::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_ne!(r(&t, reg::STATUS) & S_NEEDS_RESET, 0);
    assert_eq!(t.take_fault(), Some(Fault::BadQueueSize { queue: 1 }));
}

#[test]
fn a_buffer_outside_ram_needs_a_reset() {
    let end = RAM_BASE + RAM_SIZE as u64;
    assert_needs_reset(
        Ring::new(RAM_BASE + 0x2000, 16),
        |mem, tx| {
            tx.submit(mem, &[(end - 4, 8, false)]);
        },
        Fault::Chain { queue: 1, head: 0, error: ChainError::BufferOutside { addr: end - 4, len: 8 } },
    );
    // An absurd length.
    assert_needs_reset(
        Ring::new(RAM_BASE + 0x2000, 16),
        |mem, tx| {
            tx.submit(mem, &[(RAM_BASE, u32::MAX, false)]);
        },
        Fault::Chain { queue: 1, head: 0, error: ChainError::BufferOutside { addr: RAM_BASE, len: u32::MAX } },
    );
}

#[test]
fn a_looping_or_dangling_chain_needs_a_reset() {
    let buf = RAM_BASE + 0x8000;
    assert_needs_reset(
        Ring::new(RAM_BASE + 0x2000, 16),
        |mem, tx| {
            tx.put_desc(mem, 0, buf, 1, F_NEXT, 1);
            tx.put_desc(mem, 1, buf, 1, F_NEXT, 0);
            tx.publish(mem, 0);
        },
        Fault::Chain { queue: 1, head: 0, error: ChainError::Unterminated },
    );
    // `next` past the table.
    assert_needs_reset(
        Ring::new(RAM_BASE + 0x2000, 16),
        |mem, tx| {
            tx.put_desc(mem, 0, buf, 1, F_NEXT, 400);
            tx.publish(mem, 0);
        },
        Fault::Chain { queue: 1, head: 0, error: ChainError::Unterminated },
    );
    // A head past the table.
    assert_needs_reset(
        Ring::new(RAM_BASE + 0x2000, 16),
        |mem, tx| tx.publish(mem, 999),
        Fault::Chain { queue: 1, head: 999, error: ChainError::Empty },
    );
}

#[test]
fn an_available_index_jump_needs_a_reset() {
    assert_needs_reset(
        Ring::new(RAM_BASE + 0x2000, 16),
        |mem, tx| tx.set_avail_idx(mem, 1000),
        Fault::AvailIndex { queue: 1 },
    );
}
