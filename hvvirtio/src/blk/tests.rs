use super::*;
use crate::testutil::*;
use crate::transport::{reg, Transport, INT_VRING, S_NEEDS_RESET};
use vm_memory::{Bytes, GuestAddress};

const HDR: u64 = RAM_BASE + 0x10_000;
const DATA: u64 = RAM_BASE + 0x20_000;
const STATUS: u64 = RAM_BASE + 0x30_000;

struct Setup {
    mem: GuestMemoryMmap,
    t: Transport<Block>,
    ring: Ring,
    file: TempFile,
}

/// A started block device over a file of 8 sectors.
fn setup(read_only: bool) -> Setup {
    let mem = ram();
    let file = TempFile::new("blk", 8 * 512);
    let mut t = Transport::new(Block::new(file.open(), read_only, "serial-0123456789abcdef").unwrap());
    let ring = Ring::new(RAM_BASE, 128);
    assert_eq!(start(&mut t, &mem, &[&ring]) & S_NEEDS_RESET, 0);
    Setup { mem, t, ring, file }
}

impl Setup {
    /// Submits a request as Linux does (header, data segments, status),
    /// notifies, and returns (status byte, used length).
    fn request(&mut self, kind: u32, sector: u64, data: &[(u64, u32)], data_writable: bool) -> (u8, u32) {
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&kind.to_le_bytes());
        header[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&header, GuestAddress(HDR)).unwrap();
        self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let mut chain = vec![(HDR, 16, false)];
        chain.extend(data.iter().map(|&(a, l)| (a, l, data_writable)));
        chain.push((STATUS, 1, true));
        let head = self.ring.submit(&self.mem, &chain);
        w(&mut self.t, &self.mem, reg::QUEUE_NOTIFY, 0);
        let used = self.ring.take_used(&self.mem);
        assert_eq!(used.len(), 1, "one request, one used element");
        assert_eq!(used[0].0, u32::from(head));
        assert_eq!(r(&self.t, reg::INTERRUPT_STATUS) & INT_VRING, INT_VRING);
        w(&mut self.t, &self.mem, reg::INTERRUPT_ACK, INT_VRING);
        (self.mem.read_obj(GuestAddress(STATUS)).unwrap(), used[0].1)
    }
}

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn configuration_and_features() {
    let Setup { t, .. } = setup(false);
    assert_eq!(t.read(0x100, 8), 8, "capacity in sectors");
    assert_eq!(t.read(0x100, 4), 8);
    assert_eq!(t.read(0x104, 4), 0);
    assert_eq!(t.read(0x10c, 4), u64::from(SEG_MAX));
    assert_eq!(t.read(0x114, 4), 512, "blk_size");
    assert_eq!(t.read(0x115, 1), 2);
    assert_eq!(t.read(0x1f0, 4), 0, "past the configuration");
    assert_eq!(t.read(0x100, 3), 0, "no 3-byte access");
    let features = t.device().features();
    for bit in [VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH] {
        assert_ne!(features & (1 << bit), 0, "feature {bit}");
    }
    assert_eq!(features & (1 << VIRTIO_BLK_F_RO), 0);
    assert_ne!(setup(true).t.device().features() & (1 << VIRTIO_BLK_F_RO), 0);
}

#[test]
fn reads_come_from_the_file_across_segments() {
    let mut s = setup(false);
    // Sectors 2 and 3, into a 100-byte and a 924-byte segment.
    let (status, used) = s.request(VIRTIO_BLK_T_IN, 2, &[(DATA, 100), (DATA + 0x1000, 924)], true);
    assert_eq!((status, used), (VIRTIO_BLK_S_OK as u8, 1025));
    let mut got = vec![0u8; 1024];
    s.mem.read_slice(&mut got[..100], GuestAddress(DATA)).unwrap();
    s.mem.read_slice(&mut got[100..], GuestAddress(DATA + 0x1000)).unwrap();
    assert_eq!(got, pattern(1024, 1024));
    assert_eq!(s.t.device().stats.read_bytes, 1024);
}

#[test]
fn writes_reach_the_file_and_flush_succeeds() {
    let mut s = setup(false);
    s.mem.write_slice(&[0xaa; 512], GuestAddress(DATA)).unwrap();
    s.mem.write_slice(&[0xbb; 512], GuestAddress(DATA + 0x1000)).unwrap();
    let (status, _) = s.request(VIRTIO_BLK_T_OUT, 7, &[(DATA, 512)], false);
    assert_eq!(status, VIRTIO_BLK_S_OK as u8);
    let (status, _) = s.request(VIRTIO_BLK_T_OUT, 0, &[(DATA + 0x1000, 512)], false);
    assert_eq!(status, VIRTIO_BLK_S_OK as u8);
    assert_eq!(s.request(VIRTIO_BLK_T_FLUSH, 0, &[], false).0, VIRTIO_BLK_S_OK as u8);
    let bytes = s.file.bytes();
    assert_eq!(&bytes[7 * 512..], &[0xaa; 512][..]);
    assert_eq!(&bytes[..512], &[0xbb; 512][..]);
    assert_eq!(&bytes[512..7 * 512], &pattern(512, 6 * 512)[..], "the rest untouched");
    assert_eq!((s.t.device().stats.writes, s.t.device().stats.flushes), (2, 1));
}

#[test]
fn get_id_answers_the_serial() {
    let mut s = setup(false);
    let (status, used) = s.request(VIRTIO_BLK_T_GET_ID, 0, &[(DATA, 20)], true);
    assert_eq!((status, used), (VIRTIO_BLK_S_OK as u8, 21));
    let mut id = [0u8; 20];
    s.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id, b"serial-0123456789abc");
}

#[test]
fn bad_requests_get_error_statuses_and_leave_the_file() {
    let mut s = setup(true);
    let before = s.file.bytes();
    // Past the capacity, by a sector and by overflow.
    assert_eq!(s.request(VIRTIO_BLK_T_IN, 8, &[(DATA, 512)], true).0, VIRTIO_BLK_S_IOERR as u8);
    assert_eq!(s.request(VIRTIO_BLK_T_IN, u64::MAX / 256, &[(DATA, 512)], true).0, VIRTIO_BLK_S_IOERR as u8);
    // Read-only.
    assert_eq!(s.request(VIRTIO_BLK_T_OUT, 0, &[(DATA, 512)], false).0, VIRTIO_BLK_S_IOERR as u8);
    // Unknown types.
    assert_eq!(
        s.request(virtio_bindings::virtio_blk::VIRTIO_BLK_T_DISCARD, 0, &[(DATA, 16)], false).0,
        VIRTIO_BLK_S_UNSUPP as u8
    );
    assert_eq!(s.file.bytes(), before);
    assert_eq!(r(&s.t, reg::STATUS) & S_NEEDS_RESET, 0, "errors, not faults");
    // The device still works.
    assert_eq!(s.request(VIRTIO_BLK_T_IN, 7, &[(DATA, 512)], true).0, VIRTIO_BLK_S_OK as u8);
}

#[test]
fn a_request_without_a_status_byte_needs_a_reset() {
    let mut s = setup(false);
    let mut header = [0u8; 16];
    header[0] = VIRTIO_BLK_T_IN as u8;
    s.mem.write_slice(&header, GuestAddress(HDR)).unwrap();
    s.ring.submit(&s.mem, &[(HDR, 16, false)]);
    w(&mut s.t, &s.mem, reg::QUEUE_NOTIFY, 0);
    assert_ne!(r(&s.t, reg::STATUS) & S_NEEDS_RESET, 0);
    assert!(matches!(s.t.take_fault(), Some(Fault::Chain { error: ChainError::NoStatus, .. })));
}
