//! DTB parsing (`platform::board`): the device tree the monitor and the
//! hypervisor take from whatever ran before them, and the command line in
//! its `/chosen`. Seeds: `platform/testdata/*.dtb`.

use platform::board::{
    chosen_property, dtb_total_size, find_device, find_device_at, free_regions, Board, GicVersion, Irq, MemRegion,
    MAX_CPUS, MAX_DTB_SIZE, MAX_REGIONS, MPIDR_AFFINITY_MASK,
};
use platform::cmdline::Cmdline;

/// What the monitor and the hypervisor look up, and one that is absent.
const DEVICES: &[&str] =
    &["arm,pl011", "cdns,uart-r1p12", "arm,pl031", "arm,pl061", "qemu,fw-cfg-mmio", "arm,gic-v3", "no,such-device"];
const CHOSEN: &[&str] = &["stdout-path", "hv,bootargs", "bootargs", "linux,initrd-start"];

pub fn run(data: &[u8]) {
    let total = dtb_total_size(data);
    match Board::from_bytes(data) {
        Ok(board) => check_board(data, &board),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    for compatible in DEVICES {
        if let Ok(Some(device)) = find_device(data, compatible) {
            region("device window", &device.window);
            if let Some(irq) = &device.irq {
                intid("device interrupt", irq, 16..1020);
            }
        }
    }
    for name in CHOSEN {
        if let Ok(Some(value)) = chosen_property(data, name) {
            // A borrow of the blob, inside its totalsize.
            let start = value.as_ptr() as usize - data.as_ptr() as usize;
            assert!(start + value.len() <= total.expect("a property of a blob without a size"));
            if *name == "hv,bootargs" {
                let text = String::from_utf8_lossy(value);
                let text = text.trim_end_matches('\0');
                let mut bad = 0;
                let cmdline = Cmdline::parse(text, |word| {
                    bad += 1;
                    let _ = word.to_string();
                });
                assert!(bad <= text.split_ascii_whitespace().count());
                assert!(cmdline.guest_stub_words().all(|w| text.contains(w)));
            }
        }
    }
}

/// Every region a parser reports lies inside the address space.
fn region(what: &str, r: &MemRegion) {
    assert!(r.base.checked_add(r.size).is_some(), "{what} {r:?} overflows");
}

fn intid(what: &str, irq: &Irq, range: std::ops::Range<u32>) {
    assert!(range.contains(&irq.intid), "{what} {irq:?}");
}

/// The promises `board.rs` documents about every `Board` it returns.
fn check_board(bytes: &[u8], b: &Board) {
    assert!(!b.ram.is_empty(), "a board without RAM");
    for list in [&b.ram, &b.secure_ram, &b.reserved, &b.flash, &b.secure_flash] {
        assert!(list.len() <= MAX_REGIONS);
        for r in list.iter() {
            region("memory", r);
            assert!(!r.is_empty(), "empty region {r:?}");
        }
    }
    assert!(!b.cpus.is_empty() && b.cpus.len() <= MAX_CPUS);
    for (i, &mpidr) in b.cpus.iter().enumerate() {
        assert_eq!(mpidr & !MPIDR_AFFINITY_MASK, 0);
        assert_eq!(b.cpu_index(mpidr), Some(i), "duplicate CPU {mpidr:#x}");
    }
    region("GICD", &b.gic.distributor);
    match b.gic.version {
        GicVersion::V2 => assert!(b.gic.cpu_interface.is_some() && b.gic.redistributors.is_empty()),
        GicVersion::V3 => assert!(!b.gic.redistributors.is_empty()),
    }
    for r in b.gic.redistributors.iter() {
        region("GICR", r);
    }
    for r in [b.gic.cpu_interface, b.gic.hyp_interface, b.gic.vcpu_interface].iter().flatten() {
        region("GIC interface", r);
    }
    if let Some(irq) = &b.gic.maintenance_irq {
        intid("maintenance interrupt", irq, 16..1020);
    }
    let t = &b.timer;
    for irq in [&t.secure_phys, &t.nonsecure_phys, &t.virt, &t.hyp_phys].into_iter().chain(t.hyp_virt.as_ref()) {
        intid("timer interrupt", irq, 16..32);
    }
    for uart in [b.console, b.secure_console].iter().flatten() {
        region("console", &uart.region());
        assert!(uart.size >= uart.kind.min_window(), "{uart:?} smaller than its registers");
    }
    // The console's node, for its interrupt (the hypervisor looks it up).
    if let Some(console) = b.console {
        if let Ok(Some(device)) = find_device_at(bytes, console.kind.compatibles(), console.base) {
            assert_eq!(device.window.base, console.base);
        }
    }
    if let Some(r) = &b.fw_cfg {
        region("fw_cfg", r);
    }
    for gpio in [b.poweroff, b.restart].iter().flatten() {
        assert!(gpio.line < 8);
        region("PL061", &gpio.controller);
    }
    assert!(b.dtb_size() >= 40 && b.dtb_size() <= bytes.len() && b.dtb_size() <= MAX_DTB_SIZE);
    assert_eq!(dtb_total_size(bytes), Ok(b.dtb_size()));
    // Bytes after totalsize are not part of the blob.
    assert_eq!(Board::from_bytes(&bytes[..b.dtb_size()]).as_ref(), Ok(b));
    let _ = b.to_string();

    // What the hypervisor hands out: RAM minus the reserved ranges.
    if let Ok(free) = free_regions(&b.ram, b.reserved.iter().copied()) {
        for (i, r) in free.iter().enumerate() {
            assert!(!r.is_empty());
            assert!(b.ram.iter().any(|ram| ram.base <= r.base && r.end() <= ram.end()), "{r:?} outside RAM");
            assert!(!b.reserved.iter().any(|hole| hole.overlaps(r)), "{r:?} overlaps a reservation");
            if let Some(next) = free.get(i + 1) {
                assert!(r.base <= next.base, "free regions unsorted");
            }
        }
    }
}
