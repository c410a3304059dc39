use super::*;
use std::vec::Vec;

const BASE: u64 = 0x4000_0000;
const SIZE: u16 = 8;
const DESC: u64 = BASE + 0x1000;
const DRIVER: u64 = BASE + 0x2000;
const DEVICE: u64 = BASE + 0x3000;

/// 64 KiB of client RAM at BASE; every access outside it refused.
struct Ram(Vec<u8>);

impl Ram {
    fn new() -> Self {
        Self(vec![0; 0x10000])
    }
    fn range(&self, address: u64, len: usize) -> Option<core::ops::Range<usize>> {
        let start = usize::try_from(address.checked_sub(BASE)?).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.0.len()).then_some(start..end)
    }
    fn u16_at(&self, address: u64) -> u16 {
        let r = self.range(address, 2).unwrap();
        u16::from_le_bytes(self.0[r].try_into().unwrap())
    }
    fn u32_at(&self, address: u64) -> u32 {
        let r = self.range(address, 4).unwrap();
        u32::from_le_bytes(self.0[r].try_into().unwrap())
    }
    fn put(&mut self, address: u64, bytes: &[u8]) {
        let r = self.range(address, bytes.len()).unwrap();
        self.0[r].copy_from_slice(bytes);
    }
    fn desc(&mut self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = Vec::new();
        d.extend_from_slice(&addr.to_le_bytes());
        d.extend_from_slice(&len.to_le_bytes());
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&next.to_le_bytes());
        self.put(DESC + 16 * u64::from(index), &d);
    }
    /// Makes `heads` available after what `avail` says so far.
    fn offer(&mut self, heads: &[u16]) {
        let mut idx = self.u16_at(DRIVER + 2);
        for &h in heads {
            self.put(DRIVER + 4 + 2 * u64::from(idx % SIZE), &h.to_le_bytes());
            idx = idx.wrapping_add(1);
        }
        self.put(DRIVER + 2, &idx.to_le_bytes());
    }
}

impl GuestMemory for Ram {
    fn read(&self, address: u64, bytes: &mut [u8]) -> bool {
        match self.range(address, bytes.len()) {
            Some(r) => {
                bytes.copy_from_slice(&self.0[r]);
                true
            }
            None => false,
        }
    }
    fn write(&mut self, address: u64, bytes: &[u8]) -> bool {
        match self.range(address, bytes.len()) {
            Some(r) => {
                self.0[r].copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

fn queue() -> QueueShadow {
    QueueShadow { size: SIZE, desc: DESC, driver: DRIVER, device: DEVICE, ready: true }
}

/// A block request at head `h`: header (read), data (written), status byte.
fn block_request(ram: &mut Ram, h: u16, status: u64) {
    ram.desc(h, BASE + 0x8000, 16, DESC_F_NEXT, h + 1);
    ram.desc(h + 1, BASE + 0x9000, 512, DESC_F_NEXT | DESC_F_WRITE, h + 2);
    ram.desc(h + 2, status, 1, DESC_F_WRITE, 0);
}

#[test]
fn outstanding_block_requests_fail_with_ioerr() {
    let mut ram = Ram::new();
    block_request(&mut ram, 0, BASE + 0xa000);
    block_request(&mut ram, 3, BASE + 0xa001);
    // A flush: header and status only.
    ram.desc(6, BASE + 0x8100, 16, DESC_F_NEXT, 7);
    ram.desc(7, BASE + 0xa002, 1, DESC_F_WRITE, 0);
    ram.put(BASE + 0xa000, &[0xff, 0xff, 0xff]);
    // The device used the first already (used idx 1); 3 and 6 wait.
    ram.offer(&[0, 3, 6]);
    ram.put(DEVICE + 2, &1u16.to_le_bytes());
    assert_eq!(fail_requests(DeviceType::Block, 0, &queue(), &mut ram), Ok(2));
    assert_eq!(ram.u16_at(DEVICE + 2), 3);
    assert_eq!((ram.u32_at(DEVICE + 4 + 8), ram.u32_at(DEVICE + 4 + 12)), (3, 1));
    assert_eq!((ram.u32_at(DEVICE + 4 + 16), ram.u32_at(DEVICE + 4 + 20)), (6, 1));
    // The used one keeps its status; the failed ones say IOERR.
    assert_eq!(&ram.0[0xa000..0xa003], &[0xff, BLK_S_IOERR, BLK_S_IOERR]);
    // Nothing left: a second call uses nothing.
    assert_eq!(fail_requests(DeviceType::Block, 0, &queue(), &mut ram), Ok(0));
}

#[test]
fn indexes_wrap_around_the_ring() {
    let mut ram = Ram::new();
    block_request(&mut ram, 0, BASE + 0xa000);
    ram.put(DRIVER + 2, &u16::MAX.to_le_bytes());
    ram.put(DEVICE + 2, &u16::MAX.to_le_bytes());
    ram.offer(&[0]);
    assert_eq!(ram.u16_at(DRIVER + 2), 0);
    assert_eq!(fail_requests(DeviceType::Block, 0, &queue(), &mut ram), Ok(1));
    assert_eq!(ram.u16_at(DEVICE + 2), 0);
    // Slot 0xffff % 8 = 7.
    assert_eq!(ram.u32_at(DEVICE + 4 + 8 * 7), 0);
    assert_eq!(ram.0[0xa000], BLK_S_IOERR);
}

#[test]
fn console_output_is_dropped_and_input_buffers_stay() {
    let mut ram = Ram::new();
    ram.desc(0, BASE + 0x8000, 64, 0, 0);
    ram.offer(&[0]);
    assert_eq!(fail_requests(DeviceType::Console, 0, &queue(), &mut ram), Ok(0), "receive queue");
    assert_eq!(ram.u16_at(DEVICE + 2), 0);
    assert_eq!(fail_requests(DeviceType::Console, 1, &queue(), &mut ram), Ok(1));
    assert_eq!((ram.u32_at(DEVICE + 4), ram.u32_at(DEVICE + 8)), (0, 0));
    // A block device's other queues are not its request queue.
    assert_eq!(fail_requests(DeviceType::Block, 1, &queue(), &mut Ram::new()), Ok(0));
}

#[test]
fn hostile_rings_stop_the_work_and_touch_nothing_outside() {
    let q = queue();
    // Not ready, or a bad size.
    assert_eq!(fail_requests(DeviceType::Block, 0, &QueueShadow { ready: false, ..q }, &mut Ram::new()), Ok(0));
    assert_eq!(
        fail_requests(DeviceType::Block, 0, &QueueShadow { size: 6, ..q }, &mut Ram::new()),
        Err(RingError::BadSize)
    );
    // More outstanding than the ring holds.
    let mut ram = Ram::new();
    ram.put(DRIVER + 2, &9u16.to_le_bytes());
    assert_eq!(fail_requests(DeviceType::Block, 0, &q, &mut ram), Err(RingError::BadIndex));
    // A head past the table; a chain that loops.
    let mut ram = Ram::new();
    ram.offer(&[8]);
    assert_eq!(fail_requests(DeviceType::Block, 0, &q, &mut ram), Err(RingError::BadChain));
    let mut ram = Ram::new();
    ram.desc(0, BASE, 1, DESC_F_NEXT, 1);
    ram.desc(1, BASE, 1, DESC_F_NEXT, 0);
    ram.offer(&[0]);
    assert_eq!(fail_requests(DeviceType::Block, 0, &q, &mut ram), Err(RingError::BadChain));
    assert_eq!(ram.u16_at(DEVICE + 2), 0, "the used index is left alone");
    // A status byte outside the client's RAM: refused by the memory.
    let mut ram = Ram::new();
    block_request(&mut ram, 0, BASE - 1);
    ram.offer(&[0]);
    assert_eq!(fail_requests(DeviceType::Block, 0, &q, &mut ram), Err(RingError::Outside));
    // Rings outside it.
    let far = QueueShadow { driver: 0x1000, ..q };
    assert_eq!(fail_requests(DeviceType::Block, 0, &far, &mut Ram::new()), Err(RingError::Outside));
}

#[test]
fn the_shadow_follows_the_drivers_setup_and_reset() {
    let w = |offset: u64, value: u64| Access::new(0, offset, 4, true, value).unwrap();
    let mut s = Shadow::default();
    for (offset, value) in [
        (0x030, 1),
        (0x038, 64),
        (0x080, 0x1000),
        (0x084, 0x1),
        (0x090, 0x2000),
        (0x094, 0),
        (0x0a0, 0x3000),
        (0x0a4, 0x2),
        (0x044, 1),
    ] {
        s.observe(&w(offset, value));
    }
    assert_eq!(
        s.queues[1],
        QueueShadow { size: 64, desc: 0x1_0000_1000, driver: 0x2000, device: 0x2_0000_3000, ready: true }
    );
    assert_eq!(s.queues[0], QueueShadow::default());
    // Reads and other sizes change nothing; a queue the shadow does not
    // keep is ignored.
    s.observe(&Access::new(0, 0x038, 4, false, 0).unwrap());
    s.observe(&Access::new(0, 0x038, 2, true, 8).unwrap());
    s.observe(&w(0x030, 7));
    s.observe(&w(0x038, 8));
    assert_eq!(s.queues[1].size, 64);
    // Status 0 resets the device.
    s.observe(&w(0x070, 0));
    assert_eq!(s, Shadow::default());
}
