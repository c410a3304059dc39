use super::*;

fn read(device: u8, offset: u64, size: u8) -> Access {
    Access::new(device, offset, size, false, 0).unwrap()
}

fn write(device: u8, offset: u64, size: u8, value: u64) -> Access {
    Access::new(device, offset, size, true, value).unwrap()
}

#[test]
fn only_register_shaped_accesses_are_forwarded() {
    assert_eq!(Access::new(0, 0x70, 4, false, 0).map(|a| a.offset), Ok(0x70));
    assert_eq!(Access::new(0, 0x71, 4, false, 0), Err(NotForwarded::BadAccess));
    assert_eq!(Access::new(0, 0x70, 3, false, 0), Err(NotForwarded::BadAccess));
    assert_eq!(Access::new(0, 0x1fc, 8, false, 0), Err(NotForwarded::BadAccess));
    assert_eq!(Access::new(0, 0x200, 4, false, 0), Err(NotForwarded::OutsideWindow));
    assert_eq!(Access::new(0, 0x1f8, 8, false, 0).map(|a| a.size), Ok(8));
    // A write's value is cut to its size; a read carries none.
    assert_eq!(write(0, 0x100, 1, 0x1234).value, 0x34);
    assert_eq!(Access::new(0, 0x100, 4, false, 0xffff).map(|a| a.value), Ok(0));
}

#[test]
fn requests_complete_oldest_first_and_only_by_their_id() {
    let mut q = Queue::new();
    let a = q.push(write(0, 0x50, 4, 7), 0).unwrap();
    let b = q.push(read(1, 0x70, 4), 1).unwrap();
    assert_ne!(a, 0);
    assert_eq!(q.len(), 2);
    assert_eq!(q.complete(b), None, "not the oldest");
    assert_eq!(q.complete(a).map(|r| (r.id, r.vcpu, r.access.value)), Some((a, 0, 7)));
    assert_eq!(q.front().map(|r| r.id), Some(b));
    for i in 0..QUEUE_DEPTH - 1 {
        q.push(read(0, 0, 4), i as u16).unwrap();
    }
    assert_eq!(q.push(read(0, 0, 4), 9), Err(QueueFull));
    assert_eq!(q.drain().count(), QUEUE_DEPTH);
    assert!(q.is_empty());
    assert_eq!(q.front(), None);
}

#[test]
fn ids_wrap_and_are_never_zero() {
    let mut q = Queue { next_id: u32::MAX, ..Queue::new() };
    assert_eq!(q.push(read(0, 0, 4), 0), Ok(u32::MAX));
    assert_eq!(q.push(read(0, 0, 4), 0), Ok(1));
}

#[test]
fn the_backend_sees_the_oldest_request_and_completes_it() {
    let mut m = BackendModel::new(info());
    assert_eq!(m.read(reg::ID, 4), u64::from(ID_VALUE));
    assert_eq!(m.read(reg::PENDING, 4), 0);
    assert_eq!(m.read(reg::REQ_ID, 4), 0);
    let w = m.queue.push(write(1, 0x50, 4, 0xabcd), 0).unwrap();
    let r = m.queue.push(read(0, 0x100, 2), 1).unwrap();
    assert_eq!(m.read(reg::PENDING, 4), 2);
    assert_eq!(m.read(reg::REQ_ID, 4), u64::from(w));
    assert_eq!(m.read(reg::REQ_DEVICE, 4), 1);
    assert_eq!(m.read(reg::REQ_OFFSET, 4), 0x50);
    assert_eq!(m.read(reg::REQ_ACCESS, 4), u64::from(4 | ACCESS_WRITE));
    assert_eq!(m.read(reg::REQ_VALUE, 8), 0xabcd);
    // Completing anything but the oldest does nothing.
    assert_eq!(m.write(reg::COMPLETE, 4, u64::from(r)), Effect::default());
    let done = m.write(reg::COMPLETE, 4, u64::from(w)).completion.unwrap();
    assert_eq!((done.request.id, done.value), (w, 0));
    // The read: its response, cut to its size.
    assert_eq!(m.read(reg::REQ_ACCESS, 4), 2);
    m.write(reg::RESPONSE, 8, 0x1122_3344_5566_7788);
    assert_eq!(m.read(reg::RESPONSE + 4, 4), 0x1122_3344);
    let done = m.write(reg::COMPLETE, 4, u64::from(r)).completion.unwrap();
    assert_eq!((done.request.vcpu, done.value), (1, 0x7788));
    assert_eq!(m.read(reg::COMPLETED, 4), 2);
    assert_eq!(m.read(reg::PENDING, 4), 0);
    // Only whole 32-bit writes complete.
    let x = m.queue.push(read(0, 0, 4), 0).unwrap();
    assert_eq!(m.write(reg::COMPLETE, 2, u64::from(x)), Effect::default());
    assert_eq!(m.read(reg::PENDING, 4), 1);
}

fn info() -> LinkInfo {
    let mut devices = [None; MAX_DEVICES];
    devices[0] = Some(DeviceType::Block);
    devices[1] = Some(DeviceType::Console);
    LinkInfo {
        ram_base: 0x4800_0000,
        ram_size: 0x1000_0000,
        name: crate::control::VmInfo::name_bytes("client"),
        devices,
    }
}

#[test]
fn the_backend_learns_its_client() {
    let mut m = BackendModel::new(info());
    assert_eq!(m.read(reg::DEVICES, 4), 2);
    assert_eq!(m.read(reg::DEVICE_TYPE, 4), 2);
    assert_eq!(m.read(reg::DEVICE_TYPE + 4, 4), 3);
    assert_eq!(m.read(reg::DEVICE_TYPE + 8, 4), 0);
    assert_eq!(m.read(reg::DEVICE_TYPE + 4 * 40, 4), 0);
    assert_eq!(m.read(reg::CLIENT_RAM_BASE, 8), 0x4800_0000);
    assert_eq!(m.read(reg::CLIENT_RAM_BASE + 4, 4), 0);
    assert_eq!(m.read(reg::CLIENT_RAM_SIZE, 4), 0x1000_0000);
    assert_eq!(m.read(reg::CLIENT_NAME, 4), u64::from(u32::from_le_bytes(*b"clie")));
    assert_eq!(m.read(reg::CLIENT_NAME + 4, 4), u64::from(u32::from_le_bytes(*b"nt\0\0")));
    assert_eq!(m.read(reg::CLIENT_STATE, 4), 0);
    assert!(!m.level());
    // The client starts: the backend is told, and its interrupt says so
    // until it clears the event.
    m.client_changed(crate::control::VmState::Running);
    assert_eq!(m.read(reg::CLIENT_STATE, 4), 1);
    assert_eq!(m.read(reg::EVENTS, 4), u64::from(EVENT_CLIENT_RESET));
    assert!(m.level());
    assert_eq!(m.write(reg::EVENTS, 4, 1), Effect::default());
    assert!(!m.level());
}

#[test]
fn the_backend_drives_only_its_devices_lines_and_a_restart_drops_them() {
    let mut m = BackendModel::new(info());
    m.client_changed(crate::control::VmState::Running);
    assert_eq!(m.write(reg::IRQ_LEVEL, 4, 0xff).lines, Some(0b11));
    assert_eq!(m.read(reg::IRQ_LEVEL, 4), 0b11);
    assert_eq!(m.write(reg::IRQ_LEVEL, 4, 0b10).lines, Some(0b10));
    m.queue.push(read(0, 0x70, 4), 0).unwrap();
    m.write(reg::EVENTS, 4, u64::from(EVENT_CLIENT_RESET));
    // Stopping does not reset yet; off does, and drops what was asked.
    m.client_changed(crate::control::VmState::Stopping);
    assert_eq!((m.lines(), m.read(reg::EVENTS, 4)), (0b10, 0));
    m.client_changed(crate::control::VmState::Off);
    assert_eq!((m.lines(), m.read(reg::EVENTS, 4), m.read(reg::PENDING, 4)), (0, 1, 0));
}

#[test]
fn a_device_without_its_service_vm_needs_a_reset() {
    let mut f = Fallback::lost(DeviceType::Block);
    let at = |f: &Fallback, offset: u64, size| f.read(&read(0, offset, size));
    assert_eq!(at(&f, virtio::MAGIC_VALUE, 4), u64::from(virtio::MAGIC));
    assert_eq!(at(&f, virtio::VERSION, 4), 2);
    assert_eq!(at(&f, virtio::DEVICE_ID, 4), 2);
    assert_eq!(at(&f, virtio::VENDOR_ID, 4), u64::from(FALLBACK_VENDOR));
    assert_eq!(at(&f, virtio::STATUS, 4), u64::from(virtio::STATUS_NEEDS_RESET));
    assert_eq!(at(&f, virtio::MAGIC_VALUE + 1, 1), u64::from(b'i'));
    // The configuration space (a block device's capacity) reads 0.
    assert_eq!(at(&f, 0x100, 8), 0);
    assert_eq!(at(&f, 0x34, 4), 0);
    // The configuration-change interrupt, until acknowledged.
    assert!(f.level());
    assert_eq!(at(&f, 0x60, 4), u64::from(virtio::INT_CONFIG));
    assert!(!f.write(&write(0, 0x64, 4, 1)), "another bit");
    assert!(!f.write(&write(0, 0x70, 4, 0)), "a reset changes nothing");
    assert!(f.write(&write(0, 0x64, 4, u64::from(virtio::INT_CONFIG))));
    assert!(!f.level());
    assert_eq!(Fallback::lost(DeviceType::Console).read(&read(0, virtio::DEVICE_ID, 4)), 3);
}

#[test]
fn device_types_have_their_words_and_virtio_ids() {
    for (t, w) in DeviceType::ALL {
        assert_eq!(DeviceType::from_word(w), Some(t));
        assert_eq!(t.word(), w);
        assert_eq!(DeviceType::from_virtio_id(t.virtio_id()), Some(t));
    }
    assert_eq!(DeviceType::from_word("net"), None);
    assert_eq!(DeviceType::from_virtio_id(1), None);
}

#[test]
fn bench_reports_print_and_parse() {
    let client = BenchReport {
        role: BenchRole::Client,
        rounds: 101,
        total: 404_000,
        guest: 900,
        median: 3_900,
        min: 3_800,
        max: 9_000,
    };
    let service = BenchReport { role: BenchRole::Service, rounds: 101, guest: 30_000, ..BenchReport::default() };
    assert_eq!(
        client.to_string(),
        "virtio bench: client rounds 101 total 404000 guest 900 median 3900 min 3800 max 9000"
    );
    assert_eq!(BenchReport::find(&format!("cl| guest-stub: {client}")), Some(client));
    assert_eq!(BenchReport::find(&format!("svc| guest-stub: {service}")), Some(service));
    assert_eq!(BenchReport::find("virtio bench: client rounds 1 total 2"), None);
    assert_eq!(BenchReport::find(&format!("{client} extra")), None);
    assert_eq!(BenchReport::find("virtio bench: server rounds 1 total 2 guest 3 median 4 min 5 max 6"), None);
}
