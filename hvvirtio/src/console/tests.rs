use super::*;
use crate::testutil::*;
use crate::transport::{reg, Transport, INT_VRING, S_NEEDS_RESET};
use vm_memory::{Bytes, GuestAddress};

const BUF: u64 = RAM_BASE + 0x10_000;

fn setup() -> (GuestMemoryMmap, Transport<Console>, SharedOutput, Ring, Ring) {
    let mem = ram();
    let out = SharedOutput::default();
    let mut t = Transport::new(Console::new(Box::new(out.clone())));
    let (rx, tx) = (Ring::new(RAM_BASE, 16), Ring::new(RAM_BASE + 0x2000, 16));
    assert_eq!(start(&mut t, &mem, &[&rx, &tx]) & S_NEEDS_RESET, 0);
    (mem, t, out, rx, tx)
}

#[test]
fn client_output_goes_out_in_order() {
    let (mem, mut t, out, _, mut tx) = setup();
    mem.write_slice(b"hello, ", GuestAddress(BUF)).unwrap();
    mem.write_slice(b"world", GuestAddress(BUF + 0x100)).unwrap();
    let a = tx.submit(&mem, &[(BUF, 7, false), (BUF + 0x100, 5, false)]);
    mem.write_slice(b"!\n", GuestAddress(BUF + 0x200)).unwrap();
    let b = tx.submit(&mem, &[(BUF + 0x200, 2, false)]);
    w(&mut t, &mem, reg::QUEUE_NOTIFY, TRANSMITQ.into());
    assert_eq!(out.0.borrow().as_slice(), b"hello, world!\n");
    assert_eq!(tx.take_used(&mem), vec![(u32::from(a), 0), (u32::from(b), 0)]);
    assert_eq!(t.device().stats.bytes_out, 14);
    assert_eq!(r(&t, reg::INTERRUPT_STATUS), INT_VRING);
}

#[test]
fn input_waits_for_receive_buffers() {
    let (mem, mut t, _, mut rx, _) = setup();
    t.device_mut().push_input(b"hello");
    t.process(&mem);
    assert_eq!(t.device().pending_input(), 5, "no buffer yet");
    assert_eq!(t.interrupt(), 0);
    let a = rx.submit(&mem, &[(BUF, 4, true)]);
    w(&mut t, &mem, reg::QUEUE_NOTIFY, RECEIVEQ.into());
    assert_eq!(rx.take_used(&mem), vec![(u32::from(a), 4)]);
    assert_eq!(r(&t, reg::INTERRUPT_STATUS), INT_VRING);
    let b = rx.submit(&mem, &[(BUF + 0x100, 64, true)]);
    w(&mut t, &mem, reg::QUEUE_NOTIFY, RECEIVEQ.into());
    assert_eq!(rx.take_used(&mem), vec![(u32::from(b), 1)]);
    let mut got = [0u8; 5];
    mem.read_slice(&mut got[..4], GuestAddress(BUF)).unwrap();
    mem.read_slice(&mut got[4..], GuestAddress(BUF + 0x100)).unwrap();
    assert_eq!(&got, b"hello");
    // A posted buffer stays posted until input comes.
    let c = rx.submit(&mem, &[(BUF + 0x200, 64, true)]);
    w(&mut t, &mem, reg::QUEUE_NOTIFY, RECEIVEQ.into());
    assert!(rx.take_used(&mem).is_empty());
    t.device_mut().push_input(b"x");
    t.process(&mem);
    assert_eq!(rx.take_used(&mem), vec![(u32::from(c), 1)]);
    assert_eq!(t.device().stats.bytes_in, 6);
}

#[test]
fn input_is_bounded() {
    let mut console = Console::new(Box::new(std::io::sink()));
    console.push_input(&vec![b'a'; INPUT_LIMIT + 10]);
    assert_eq!((console.pending_input(), console.input_room()), (INPUT_LIMIT, 0));
}
