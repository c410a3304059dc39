//! Host tests for the board description: real QEMU `virt` DTBs (see
//! `platform/testdata/README.md` for the commands that made them), a
//! hand-written board that covers what QEMU does not, rejections of broken
//! trees, and a no-panic sweep over corrupted blobs.

use super::*;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

macro_rules! testdata {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/", $name))
    };
}

const GICV3_SMP4_1G: &[u8] = testdata!("virt-gicv3-smp4-1g.dtb");
const GICV3_SMP4_512M: &[u8] = testdata!("virt-gicv3-smp4-512m.dtb");
const GICV3_SMP4_3G: &[u8] = testdata!("virt-gicv3-smp4-3g.dtb");
const GICV3_SMP1_1G: &[u8] = testdata!("virt-gicv3-smp1-1g.dtb");
const GICV3_SMP8_1G: &[u8] = testdata!("virt-gicv3-smp8-1g.dtb");
const GICV3_SMP17_1G: &[u8] = testdata!("virt-gicv3-smp17-1g.dtb");
const GICV2_SMP4_1G: &[u8] = testdata!("virt-gicv2-smp4-1g.dtb");
const GICV2_SMP8_1G: &[u8] = testdata!("virt-gicv2-smp8-1g.dtb");
const GICV3_A72_SMP4_1G: &[u8] = testdata!("virt-gicv3-a72-smp4-1g.dtb");
const NONSECURE_GICV3_SMP4_1G: &[u8] = testdata!("virt-nonsecure-gicv3-smp4-1g.dtb");
const MINIMAL: &[u8] = testdata!("minimal.dtb");
const SYNTHETIC: &[u8] = testdata!("synthetic-board.dtb");
const BAD_STDOUT_PATH: &[u8] = testdata!("bad-stdout-path.dtb");
const BAD_REG_LENGTH: &[u8] = testdata!("bad-reg-length.dtb");
const UNSUPPORTED_CONSOLE: &[u8] = testdata!("unsupported-console.dtb");
const BAD_GPIO_PHANDLE: &[u8] = testdata!("bad-gpio-phandle.dtb");
const ZYNQMP_BOARD: &[u8] = testdata!("zynqmp-board.dtb");

const ALL_GOOD: &[(&str, &[u8])] = &[
    ("virt-gicv3-smp4-1g", GICV3_SMP4_1G),
    ("virt-gicv3-smp4-512m", GICV3_SMP4_512M),
    ("virt-gicv3-smp4-3g", GICV3_SMP4_3G),
    ("virt-gicv3-smp1-1g", GICV3_SMP1_1G),
    ("virt-gicv3-smp8-1g", GICV3_SMP8_1G),
    ("virt-gicv2-smp4-1g", GICV2_SMP4_1G),
    ("virt-gicv2-smp8-1g", GICV2_SMP8_1G),
    ("virt-gicv3-a72-smp4-1g", GICV3_A72_SMP4_1G),
    ("virt-nonsecure-gicv3-smp4-1g", NONSECURE_GICV3_SMP4_1G),
    ("minimal", MINIMAL),
    ("synthetic-board", SYNTHETIC),
    ("zynqmp-board", ZYNQMP_BOARD),
];

fn parse(bytes: &[u8]) -> Board {
    match Board::from_bytes(bytes) {
        Ok(b) => b,
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn regions(list: &[(u64, u64)]) -> RegionList {
    let mut out = RegionList::new();
    for &(b, s) in list {
        out.push(MemRegion::new(b, s)).unwrap();
    }
    out
}

fn cpu_list(ids: &[u64]) -> CpuList {
    let mut out = CpuList::new();
    for &id in ids {
        out.push(id).unwrap();
    }
    out
}

fn ppi(n: u32, flags: u32) -> Irq {
    Irq { intid: 16 + n, flags }
}

// ---------------------------------------------------------------------------
// QEMU virt, secure=on

/// What every `-M virt,secure=on,virtualization=on` board has, whatever
/// `-m`, `-smp`, `gic-version` and `-cpu` say.
fn check_secure_virt(b: &Board, bytes: &[u8], ram_size: u64, mpidrs: &[u64]) {
    assert_eq!(b.ram, regions(&[(0x4000_0000, ram_size)]));
    assert_eq!(b.ram_top(), 0x4000_0000 + ram_size);
    assert_eq!(b.secure_ram, regions(&[(0x0e00_0000, 16 * MIB)]));
    assert!(b.reserved.is_empty(), "{:?}", b.reserved);
    assert_eq!(b.cpus, cpu_list(mpidrs));
    assert_eq!(b.console, Some(Uart { kind: UartKind::Pl011, base: 0x0900_0000, size: 0x1000 }));
    assert_eq!(b.secure_console, Some(Uart { kind: UartKind::Pl011, base: 0x0904_0000, size: 0x1000 }));
    assert_eq!(b.fw_cfg, Some(MemRegion::new(0x0902_0000, 0x18)));
    assert_eq!(b.secure_flash, regions(&[(0, 0x0400_0000)]));
    assert_eq!(b.flash, regions(&[(0x0400_0000, 0x0400_0000)]));
    let gpio = MemRegion::new(0x090b_0000, 0x1000);
    assert_eq!(b.poweroff, Some(GpioLine { controller: gpio, line: 0, active_low: false }));
    assert_eq!(b.restart, Some(GpioLine { controller: gpio, line: 1, active_low: false }));
    assert!(!b.has_psci_node, "QEMU omits /psci when firmware runs at EL3");
    let t = &b.timer;
    assert_eq!([t.secure_phys.intid, t.nonsecure_phys.intid, t.virt.intid, t.hyp_phys.intid], [29, 30, 27, 26]);
    assert_eq!(t.hyp_virt, None);
    assert_eq!(t.clock_frequency, None);
    assert_eq!(b.dtb_size(), bytes.len());
    for (i, &mpidr) in mpidrs.iter().enumerate() {
        assert_eq!(b.cpu_index(mpidr), Some(i));
    }
    assert_eq!(b.cpu_index(0xff), None);
}

fn check_gicv3(b: &Board) {
    assert_eq!(
        b.gic,
        Gic {
            version: GicVersion::V3,
            compatible: GicCompatible::GicV3,
            distributor: MemRegion::new(0x0800_0000, 0x1_0000),
            redistributors: regions(&[(0x080a_0000, 0xf6_0000)]),
            cpu_interface: None,
            hyp_interface: None,
            vcpu_interface: None,
            maintenance_irq: Some(ppi(9, 4)),
        }
    );
    assert_eq!(b.timer.nonsecure_phys, ppi(14, 4));
}

fn check_gicv2(b: &Board, ncpus: u32) {
    assert_eq!(
        b.gic,
        Gic {
            version: GicVersion::V2,
            compatible: GicCompatible::CortexA15,
            distributor: MemRegion::new(0x0800_0000, 0x1_0000),
            redistributors: RegionList::new(),
            cpu_interface: Some(MemRegion::new(0x0801_0000, 0x1_0000)),
            hyp_interface: Some(MemRegion::new(0x0803_0000, 0x1_0000)),
            vcpu_interface: Some(MemRegion::new(0x0804_0000, 0x1_0000)),
            maintenance_irq: Some(ppi(9, 4)),
        }
    );
    // GICv2 PPI specifiers carry a CPU mask in bits 15:8.
    let mask = (1u32 << ncpus) - 1;
    assert_eq!(b.timer.nonsecure_phys, ppi(14, (mask << 8) | 4));
}

#[test]
fn virt_gicv3_smp4_1g() {
    let b = parse(GICV3_SMP4_1G);
    check_secure_virt(&b, GICV3_SMP4_1G, GIB, &[0, 1, 2, 3]);
    check_gicv3(&b);
}

#[test]
fn virt_gicv3_smp4_512m() {
    let b = parse(GICV3_SMP4_512M);
    check_secure_virt(&b, GICV3_SMP4_512M, 512 * MIB, &[0, 1, 2, 3]);
    check_gicv3(&b);
}

#[test]
fn virt_gicv3_smp4_3g() {
    let b = parse(GICV3_SMP4_3G);
    check_secure_virt(&b, GICV3_SMP4_3G, 3 * GIB, &[0, 1, 2, 3]);
    assert_eq!(b.ram_top(), 0x1_0000_0000);
    check_gicv3(&b);
}

#[test]
fn virt_gicv3_smp1_1g() {
    let b = parse(GICV3_SMP1_1G);
    check_secure_virt(&b, GICV3_SMP1_1G, GIB, &[0]);
    check_gicv3(&b);
}

#[test]
fn virt_gicv3_smp8_1g() {
    let b = parse(GICV3_SMP8_1G);
    check_secure_virt(&b, GICV3_SMP8_1G, GIB, &[0, 1, 2, 3, 4, 5, 6, 7]);
    check_gicv3(&b);
}

#[test]
fn virt_gicv2_smp4_1g() {
    let b = parse(GICV2_SMP4_1G);
    check_secure_virt(&b, GICV2_SMP4_1G, GIB, &[0, 1, 2, 3]);
    check_gicv2(&b, 4);
}

#[test]
fn virt_gicv2_smp8_1g() {
    let b = parse(GICV2_SMP8_1G);
    // GICv2 virt puts 8 CPUs per cluster: all 8 fit Aff1 = 0.
    check_secure_virt(&b, GICV2_SMP8_1G, GIB, &[0, 1, 2, 3, 4, 5, 6, 7]);
    check_gicv2(&b, 8);
}

#[test]
fn virt_gicv3_cortex_a72() {
    let b = parse(GICV3_A72_SMP4_1G);
    check_secure_virt(&b, GICV3_A72_SMP4_1G, GIB, &[0, 1, 2, 3]);
    check_gicv3(&b);
}

#[test]
fn virt_gicv3_smp17_exceeds_max_cpus() {
    assert_eq!(Board::from_bytes(GICV3_SMP17_1G), Err(BoardError::TooMany { what: "CPUs", capacity: MAX_CPUS }));
    // The tree itself is fine: with GICv3, QEMU virt puts 16 CPUs in a
    // cluster, so the 17th has Aff1 = 1.
    let dtb = dt::Dtb::new(GICV3_SMP17_1G).unwrap();
    let reg = |path| dt::be32(dtb.prop(&dtb.find_path(path).unwrap(), "reg").unwrap(), 0);
    assert_eq!(reg("/cpus/cpu@15"), Some(0x0f));
    assert_eq!(reg("/cpus/cpu@16"), Some(0x100));
}

#[test]
fn virt_without_secure_has_no_secure_fields() {
    let bytes = NONSECURE_GICV3_SMP4_1G;
    let b = parse(bytes);
    assert_eq!(b.ram, regions(&[(0x4000_0000, GIB)]));
    assert!(b.secure_ram.is_empty());
    assert_eq!(b.console.map(|u| u.base), Some(0x0900_0000));
    assert_eq!(b.secure_console, None);
    assert!(b.secure_flash.is_empty());
    // One flash node with both banks, visible to the Non-secure world.
    assert_eq!(b.flash, regions(&[(0, 0x0400_0000), (0x0400_0000, 0x0400_0000)]));
    assert_eq!(b.poweroff, None);
    assert_eq!(b.restart, None);
    assert!(b.has_psci_node);
    assert_eq!(b.cpus, cpu_list(&[0, 1, 2, 3]));
    assert_eq!(b.fw_cfg, Some(MemRegion::new(0x0902_0000, 0x18)));
    check_gicv3(&b);
    assert_eq!(b.dtb_size(), bytes.len());
}

#[test]
fn from_ptr_matches_from_bytes() {
    for &(name, bytes) in ALL_GOOD {
        // Trailing bytes past totalsize (QEMU pads its copy to 1 MiB) are
        // not read.
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len() + 4096, 0xa5);
        // SAFETY: `padded` is a live, unchanging buffer holding the whole DTB.
        let from_ptr = unsafe { Board::from_ptr(padded.as_ptr()) };
        assert_eq!(from_ptr, Board::from_bytes(bytes), "{name}");
        assert_eq!(Board::from_bytes(&padded), Board::from_bytes(bytes), "{name}");
    }
    // SAFETY: a null pointer is allowed and rejected without a read.
    let from_null = unsafe { Board::from_ptr(core::ptr::null()) };
    assert_eq!(from_null, Err(BoardError::NullPointer));
    let junk = [0u8; 64];
    // SAFETY: `junk` is readable for 64 bytes; the bad magic stops the read
    // after the first 8.
    let from_junk = unsafe { Board::from_ptr(junk.as_ptr()) };
    assert_eq!(from_junk, Err(BoardError::BadMagic { found: 0 }));
}

#[test]
fn dtb_total_size_reads_the_header() {
    assert_eq!(dtb_total_size(&GICV3_SMP4_1G[..8]), Ok(GICV3_SMP4_1G.len()));
    assert_eq!(dtb_total_size(&GICV3_SMP4_1G[..7]), Err(BoardError::Truncated { needed: 40, available: 7 }));
}

#[test]
fn display_summarises_the_board() {
    let text = format!("{}", parse(GICV3_SMP4_1G));
    for needle in [
        "ram: [0x40000000, 0x80000000)",
        "secure ram: [0xe000000, 0xf000000)",
        "cpus (4): 0x0 0x1 0x2 0x3",
        "console: Pl011 [0x9000000, 0x9001000)",
        "secure console: Pl011 [0x9040000, 0x9041000)",
        "gic: V3 dist [0x8000000, 0x8010000) redist [0x80a0000, 0x9000000)",
        "poweroff: pl061 [0x90b0000, 0x90b1000) line 0",
        "restart: pl061 [0x90b0000, 0x90b1000) line 1",
        "psci node: no",
        "cpu release: at reset",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

// ---------------------------------------------------------------------------
// Hand-written trees

#[test]
fn synthetic_board() {
    let b = parse(SYNTHETIC);
    assert_eq!(b.ram, regions(&[(0x8000_0000, GIB), (0x8_8000_0000, 4 * GIB), (0x4000_0000, 512 * MIB),]));
    assert_eq!(b.ram_top(), 0x9_8000_0000);
    assert_eq!(b.secure_ram, regions(&[(0x1000_0000, 2 * MIB)]));
    assert_eq!(b.reserved, regions(&[(0x4800_0000, MIB), (0x4900_0000, 0x2000), (0x5000_0000, 0x1_0000)]));
    assert_eq!(b.cpus, cpu_list(&[0, 1, 0x100, 0x1_0000, 0x1_0000_0000]));
    // A raw MPIDR_EL1 value (bit 31 is RES1, U and MT may be set).
    assert_eq!(b.cpu_index(0x8000_0100), Some(2));
    assert_eq!(b.cpu_index(0x1_4000_0000), Some(4));
    // Through /aliases, behind the /soc bus's ranges (0 -> 0x1c000000).
    assert_eq!(b.console, Some(Uart { kind: UartKind::Pl011, base: 0x1c00_1000, size: 0x1000 }));
    assert_eq!(b.secure_console, Some(Uart { kind: UartKind::Pl011, base: 0x1c00_2000, size: 0x1000 }));
    assert_eq!(
        b.gic,
        Gic {
            version: GicVersion::V3,
            compatible: GicCompatible::GicV3,
            distributor: MemRegion::new(0x2f00_0000, 0x1_0000),
            redistributors: regions(&[(0x2f10_0000, MIB), (0x2f30_0000, MIB)]),
            cpu_interface: Some(MemRegion::new(0x2c00_0000, 0x2000)),
            hyp_interface: Some(MemRegion::new(0x2c01_0000, 0x2000)),
            vcpu_interface: Some(MemRegion::new(0x2c02_f000, 0x2000)),
            maintenance_irq: Some(ppi(9, 4)),
        }
    );
    assert_eq!(
        b.timer,
        Timer {
            secure_phys: ppi(13, 8),
            nonsecure_phys: ppi(14, 8),
            virt: ppi(11, 8),
            hyp_phys: ppi(10, 8),
            hyp_virt: Some(ppi(12, 8)),
            clock_frequency: Some(100_000_000),
        }
    );
    // Two levels of ranges: 0x100 -> 0xf0100 -> 0x1c0f0100.
    assert_eq!(b.fw_cfg, Some(MemRegion::new(0x1c0f_0100, 0x18)));
    assert_eq!(b.flash, regions(&[(0x1c00_8000, 0x1000), (0x1c01_0000, 0x1000)]));
    assert!(b.secure_flash.is_empty());
    let gpio = MemRegion::new(0x1c00_3000, 0x1000);
    assert_eq!(b.poweroff, Some(GpioLine { controller: gpio, line: 5, active_low: true }));
    assert_eq!(b.restart, Some(GpioLine { controller: gpio, line: 6, active_low: false }));
    assert!(b.has_psci_node);
}

#[test]
fn minimal_board() {
    let b = parse(MINIMAL);
    assert_eq!(b.ram, regions(&[(0x4000_0000, 256 * MIB)]));
    assert_eq!(b.cpus, cpu_list(&[0]));
    assert_eq!(b.console.map(|u| u.base), Some(0x0900_0000));
    assert_eq!(b.secure_console, None);
    assert_eq!(b.gic.maintenance_irq, None);
    assert_eq!(b.fw_cfg, None);
    assert!(b.flash.is_empty() && b.secure_flash.is_empty() && b.secure_ram.is_empty());
    assert_eq!((b.poweroff, b.restart, b.has_psci_node), (None, None, false));
}

// ---------------------------------------------------------------------------
// Rejections

fn err(bytes: &[u8]) -> BoardError {
    match Board::from_bytes(bytes) {
        Ok(b) => panic!("accepted a bad tree:\n{b}"),
        Err(e) => e,
    }
}

/// `bytes` with the big-endian u32 at `off` replaced.
fn with_u32(bytes: &[u8], off: usize, value: u32) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[off..off + 4].copy_from_slice(&value.to_be_bytes());
    v
}

#[test]
fn rejects_bad_magic() {
    let e = err(&with_u32(GICV3_SMP4_1G, 0, 0xdead_beef));
    assert_eq!(e, BoardError::BadMagic { found: 0xdead_beef });
    assert!(e.to_string().contains("0xdeadbeef"), "{e}");
    assert_eq!(err(b""), BoardError::Truncated { needed: 40, available: 0 });
}

#[test]
fn rejects_truncated_blob() {
    let len = GICV3_SMP4_1G.len();
    let e = err(&GICV3_SMP4_1G[..len - 1]);
    assert_eq!(e, BoardError::Truncated { needed: len, available: len - 1 });
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(matches!(err(&GICV3_SMP4_1G[..20]), BoardError::Truncated { .. }));
}

#[test]
fn rejects_bad_header_fields() {
    let total = GICV3_SMP4_1G.len() as u32;
    assert_eq!(
        err(&with_u32(GICV3_SMP4_1G, 4, 3 * 1024 * 1024)),
        BoardError::TooLarge { size: 3 * 1024 * 1024, max: MAX_DTB_SIZE }
    );
    assert!(matches!(err(&with_u32(GICV3_SMP4_1G, 4, 16)), BoardError::BadHeader { .. }));
    // Structure block offset past the end.
    assert!(matches!(err(&with_u32(GICV3_SMP4_1G, 8, total)), BoardError::BadHeader { .. }));
    // Version 15 and last_comp_version 18.
    assert!(matches!(err(&with_u32(GICV3_SMP4_1G, 20, 15)), BoardError::BadHeader { .. }));
    assert!(matches!(err(&with_u32(GICV3_SMP4_1G, 24, 18)), BoardError::BadHeader { .. }));
    // Strings block larger than the blob.
    assert!(matches!(err(&with_u32(GICV3_SMP4_1G, 32, u32::MAX)), BoardError::BadHeader { .. }));
}

#[test]
fn rejects_stdout_path_to_nowhere() {
    let e = err(BAD_STDOUT_PATH);
    assert_eq!(e, BoardError::PathNotFound { property: "/chosen/stdout-path", path: DtName::new("/nowhere@1234") });
    assert_eq!(e.to_string(), "device tree /chosen/stdout-path = \"/nowhere@1234\" names no node");
}

#[test]
fn rejects_reg_of_wrong_length() {
    let e = err(BAD_REG_LENGTH);
    assert!(
        matches!(e, BoardError::BadProperty { node, property: "reg", .. }
            if node.as_str() == "memory@80000000"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "device tree node memory@80000000: `reg` length is not a multiple of \
         (#address-cells + #size-cells) * 4"
    );
}

#[test]
fn rejects_unsupported_console() {
    let e = err(UNSUPPORTED_CONSOLE);
    assert!(matches!(e, BoardError::UnsupportedDevice { node, .. } if node.as_str() == "serial@9100000"), "{e:?}");
    assert_eq!(
        e.to_string(),
        "console UART serial@9100000 is ns16550a, which is not supported; supported: arm,pl011, cdns,uart-r1p12, \
         cdns,uart-r1p8, xlnx,xuartps, xlnx,zynqmp-uart"
    );
}

#[test]
fn rejects_gpio_phandle_to_nowhere() {
    let e = err(BAD_GPIO_PHANDLE);
    assert!(
        matches!(e, BoardError::BadProperty { node, property: "gpios", .. }
            if node.as_str() == "gpio-poweroff"),
        "{e:?}"
    );
}

/// Finds the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn rejects_broken_structure() {
    // The first FDT_PROP token after the root's name, turned into garbage.
    let off_struct = u32::from_be_bytes(MINIMAL[8..12].try_into().unwrap()) as usize;
    let first_token = off_struct + 8; // BEGIN_NODE + "" padded to 4
    assert_eq!(&MINIMAL[first_token..first_token + 4], &3u32.to_be_bytes());
    let e = err(&with_u32(MINIMAL, first_token, 0x77));
    assert_eq!(e, BoardError::Malformed { offset: first_token, reason: "unknown token" });
    // Property length running off the end of the block.
    let e = err(&with_u32(MINIMAL, first_token + 4, 0x7fff_ffff));
    assert!(matches!(e, BoardError::Malformed { .. }), "{e:?}");
    // Property name offset outside the strings block.
    let e = err(&with_u32(MINIMAL, first_token + 8, 0xffff));
    assert!(matches!(e, BoardError::Malformed { .. }), "{e:?}");
    // A node name that is not UTF-8.
    let mut bad = MINIMAL.to_vec();
    let at = find(&bad, b"timer\0");
    bad[at] = 0xff;
    assert_eq!(err(&bad), BoardError::Malformed { offset: at - 4, reason: "node name is not UTF-8" });
}

#[test]
fn rejects_missing_essentials() {
    // Rename nodes so the parser cannot find them (same length keeps the
    // blob valid).
    let rename = |from: &[u8], to: &[u8]| {
        let mut v = MINIMAL.to_vec();
        let at = find(&v, from);
        v[at..at + to.len()].copy_from_slice(to);
        v
    };
    assert_eq!(err(&rename(b"cpus\0", b"cpuz\0")), BoardError::MissingNode { what: "/cpus node" });
    assert_eq!(err(&rename(b"cpu@0\0", b"cpx@0\0")), BoardError::MissingNode { what: "/cpus/cpu@* node" });
    // An interrupt controller the firmware does not know is named: the
    // root's interrupt-parent.
    let e = err(&rename(b"arm,gic-v3\0", b"arm,gic-v9\0"));
    assert!(matches!(e, BoardError::UnsupportedDevice { kind: DeviceKind::InterruptController, .. }), "{e:?}");
    assert!(
        e.to_string().ends_with(
            " is arm,gic-v9, which is not supported; supported: arm,gic-v3, arm,cortex-a15-gic, arm,gic-400"
        ),
        "{e}"
    );
    assert!(matches!(err(&rename(b"arm,armv8-timer\0", b"arm,armv9-timer\0")), BoardError::MissingNode { .. }));
    // "memory" is both the device_type value and in the strings block
    // ("device_type"); change the value.
    let mut v = MINIMAL.to_vec();
    let at = find(&v, b"memory\0");
    v[at] = b'M';
    assert_eq!(err(&v), BoardError::MissingNode { what: "memory node visible to the Non-secure world" });
}

// ---------------------------------------------------------------------------
// Never panic

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn parse_no_panic(bytes: &[u8], what: &dyn Fn() -> String) {
    if std::panic::catch_unwind(|| Board::from_bytes(bytes)).is_err() {
        panic!("Board::from_bytes panicked on {}", what());
    }
}

/// Cuts `bytes` to every length that is a multiple of `stride`, both as
/// is (the header's totalsize then no longer fits) and with totalsize and
/// size_dt_struct patched to match, so the cut lands inside the blocks.
fn truncation_sweep(name: &str, bytes: &[u8], stride: usize) {
    for len in (0..bytes.len()).step_by(stride) {
        parse_no_panic(&bytes[..len], &|| format!("{name} cut to {len} bytes"));
        if len >= 40 {
            let mut v = with_u32(&bytes[..len], 4, len as u32);
            let off_struct = u32::from_be_bytes(v[8..12].try_into().unwrap()) as usize;
            let size = len.saturating_sub(off_struct) as u32;
            v[36..40].copy_from_slice(&size.to_be_bytes());
            parse_no_panic(&v, &|| format!("{name} cut to {len} bytes, header patched"));
        }
    }
}

/// XORs the byte at every `stride`-th position with, alternately, 0xff and
/// one random bit, and overwrites every `4 * stride`-th
/// aligned word with a value the parser treats specially (tokens, small
/// cell counts, offsets near the limits).
fn corruption_sweep(name: &str, bytes: &[u8], stride: usize, seed: u64) {
    let mut rng = XorShift(seed);
    let mut v = bytes.to_vec();
    for pos in (0..bytes.len()).step_by(stride) {
        let mask = if (pos / stride).is_multiple_of(2) { 0xff } else { 1u8 << (rng.next() % 8) };
        v[pos] ^= mask;
        parse_no_panic(&v, &|| format!("{name} with byte {pos:#x} ^ {mask:#x}"));
        v[pos] ^= mask;
    }
    for pos in (0..bytes.len().saturating_sub(4)).step_by(4 * stride) {
        let value = match rng.next() % 6 {
            0 => (rng.next() % 10) as u32,
            1 => u32::MAX - (rng.next() % 4) as u32,
            2 => bytes.len() as u32,
            3 => 0x8000_0000,
            _ => rng.next() as u32,
        };
        let w = with_u32(bytes, pos, value);
        parse_no_panic(&w, &|| format!("{name} with word {pos:#x} = {value:#x}"));
    }
}

// Every position (or every other) of the two richest trees, a sample of
// the rest, so that the unoptimised test build stays quick (a parse takes
// about 1 ms there, 50 us optimised). Split in several tests so they run
// in parallel.

#[test]
fn no_panic_on_truncation() {
    truncation_sweep("virt-gicv3-smp4-1g", GICV3_SMP4_1G, 1);
    truncation_sweep("synthetic-board", SYNTHETIC, 1);
    for &(name, bytes) in ALL_GOOD {
        truncation_sweep(name, bytes, 17);
    }
}

#[test]
fn no_panic_on_corrupted_qemu_dtb() {
    corruption_sweep("virt-gicv3-smp4-1g", GICV3_SMP4_1G, 2, 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn no_panic_on_corrupted_synthetic_dtb() {
    corruption_sweep("synthetic-board", SYNTHETIC, 1, 0x2545_f491_4f6c_dd1d);
}

#[test]
fn no_panic_on_corrupted_dtbs_sampled() {
    for (i, &(name, bytes)) in ALL_GOOD.iter().enumerate() {
        corruption_sweep(name, bytes, 23, i as u64 + 1);
    }
}

// ---------------------------------------------------------------------------
// free_regions

fn free(ram: &[(u64, u64)], reserved: &[(u64, u64)]) -> Result<RegionList, BoardError> {
    let ram: Vec<_> = ram.iter().map(|&(b, s)| MemRegion::new(b, s)).collect();
    free_regions(&ram, reserved.iter().map(|&(b, s)| MemRegion::new(b, s)))
}

#[test]
fn free_regions_without_overlap_keeps_ram() {
    let ram = [(0x4000_0000, 0x1000_0000)];
    // Adjacent on both sides, and far away: nothing to cut.
    let got = free(&ram, &[(0x3000_0000, 0x1000_0000), (0x5000_0000, 0x1000), (0, 0x10)]);
    assert_eq!(got, Ok(regions(&ram)));
    assert_eq!(free(&ram, &[]), Ok(regions(&ram)));
    // Empty reserved ranges are ignored even inside RAM.
    assert_eq!(free(&ram, &[(0x4000_1000, 0)]), Ok(regions(&ram)));
}

#[test]
fn free_regions_cuts_edges() {
    let ram = [(0x4000_0000, 0x1000_0000)];
    // Overlapping the start, from below.
    assert_eq!(free(&ram, &[(0x3fff_f000, 0x2000)]), Ok(regions(&[(0x4000_1000, 0x0fff_f000)])));
    // Exactly the first page.
    assert_eq!(free(&ram, &[(0x4000_0000, 0x1000)]), Ok(regions(&[(0x4000_1000, 0x0fff_f000)])));
    // Overlapping the end, past it.
    assert_eq!(free(&ram, &[(0x4fff_f000, 0x10_0000)]), Ok(regions(&[(0x4000_0000, 0x0fff_f000)])));
}

#[test]
fn free_regions_removes_contained_regions() {
    let ram = [(0x4000_0000, 0x1000), (0x5000_0000, 0x1000)];
    assert_eq!(free(&ram, &[(0x4000_0000, 0x1000)]), Ok(regions(&[(0x5000_0000, 0x1000)])));
    assert_eq!(free(&ram, &[(0x3000_0000, 0x3000_0000)]), Ok(RegionList::new()));
}

#[test]
fn free_regions_splits_in_the_middle() {
    let ram = [(0x4000_0000, 0x1000_0000)];
    assert_eq!(
        free(&ram, &[(0x4800_0000, 0x10_0000)]),
        Ok(regions(&[(0x4000_0000, 0x0800_0000), (0x4810_0000, 0x07f0_0000)]))
    );
    // Several holes, given out of order and overlapping each other.
    assert_eq!(
        free(&ram, &[(0x4c00_0000, 0x1000), (0x4400_0000, 0x2000), (0x4400_1000, 0x2000), (0x4000_0000, 0x10)]),
        Ok(regions(&[(0x4000_0010, 0x03ff_fff0), (0x4400_3000, 0x07ff_d000), (0x4c00_1000, 0x03ff_f000),]))
    );
}

#[test]
fn free_regions_sorts_and_spans_regions() {
    // RAM given high bank first; one hole spans the gap between the banks.
    let ram = [(0x8000_0000, 0x1000_0000), (0x4000_0000, 0x1000_0000)];
    assert_eq!(
        free(&ram, &[(0x4f00_0000, 0x3200_0000)]),
        Ok(regions(&[(0x4000_0000, 0x0f00_0000), (0x8100_0000, 0x0f00_0000)]))
    );
}

#[test]
fn free_regions_reports_capacity_overflow() {
    let ram = [(0, 0x1_0000_0000)];
    // n holes in one region make n + 1 pieces.
    let holes: Vec<_> = (1..MAX_REGIONS as u64).map(|i| (i * 0x100_0000, 0x1000)).collect();
    assert_eq!(free(&ram, &holes).map(|l| l.len()), Ok(MAX_REGIONS));
    let holes: Vec<_> = (1..=MAX_REGIONS as u64).map(|i| (i * 0x100_0000, 0x1000)).collect();
    assert_eq!(free(&ram, &holes), Err(BoardError::TooMany { what: "free RAM regions", capacity: MAX_REGIONS }));
    // Too many RAM regions to start with.
    let many: Vec<_> = (0..=MAX_REGIONS as u64).map(|i| (i * 0x10_0000, 0x1000)).collect();
    assert!(matches!(free(&many, &[]), Err(BoardError::TooMany { .. })));
}

#[test]
fn free_regions_at_the_top_of_the_address_space() {
    let ram = [(u64::MAX - 0xfff, 0x1000)]; // ends exactly at 2^64 - 1 (saturated)
    assert_eq!(
        free(&ram, &[(u64::MAX - 0x7ff, 0x100)]),
        Ok(regions(&[(u64::MAX - 0xfff, 0x800), (u64::MAX - 0x6ff, 0x6ff)]))
    );
}

#[test]
fn free_regions_of_a_real_board() {
    let b = parse(SYNTHETIC);
    let image = MemRegion::new(0x4008_0000, 0x20_0000);
    let got = free_regions(&b.ram, b.reserved.iter().copied().chain([image])).unwrap();
    assert_eq!(
        got,
        regions(&[
            (0x4000_0000, 0x8_0000),
            (0x4028_0000, 0x07d8_0000),
            (0x4810_0000, 0x00f0_0000),
            (0x4900_2000, 0x06ff_e000),
            (0x5001_0000, 0x0fff_0000),
            (0x8000_0000, GIB),
            (0x8_8000_0000, 4 * GIB),
        ])
    );
}

// ---------------------------------------------------------------------------
// Small types

#[test]
fn mem_region_helpers() {
    let r = MemRegion::new(0x1000, 0x1000);
    assert_eq!(r.end(), 0x2000);
    assert!(r.contains(0x1000) && r.contains(0x1fff) && !r.contains(0x2000) && !r.contains(0xfff));
    assert!(r.overlaps(&MemRegion::new(0x1fff, 1)));
    assert!(!r.overlaps(&MemRegion::new(0x2000, 1)));
    assert!(!r.overlaps(&MemRegion::new(0x1800, 0)));
    assert_eq!(MemRegion::new(u64::MAX, 2).end(), u64::MAX);
    assert_eq!(r.to_string(), "[0x1000, 0x2000)");
}

#[test]
fn list_is_bounded() {
    let mut l: List<u8, 3> = List::new();
    assert_eq!(List::<u8, 3>::CAPACITY, 3);
    assert_eq!((l.push(1), l.push(2), l.push(3), l.push(4)), (Ok(()), Ok(()), Ok(()), Err(4)));
    assert_eq!(l.as_slice(), &[1, 2, 3]);
    assert_eq!(l.remove(0), Some(1));
    assert_eq!(l.remove(5), None);
    assert_eq!(l.as_slice(), &[2, 3]);
    l[0] = 9;
    assert_eq!(format!("{l:?}"), "[9, 3]");
    assert_eq!(l.iter().sum::<u8>(), 12);
}

#[test]
fn dt_name_truncates_long_names() {
    assert_eq!(DtName::new("uart@1").as_str(), "uart@1");
    let long = "x".repeat(100);
    let n = DtName::new(&long);
    assert_eq!(n.as_str().len(), DT_NAME_MAX);
    assert!(n.as_str().ends_with("..."));
    // Never cuts a multi-byte character in half.
    let wide = "é".repeat(60);
    assert!(DtName::new(&wide).as_str().ends_with("é..."));
}

#[test]
fn dt_reader_basics() {
    let dtb = dt::Dtb::new(SYNTHETIC).unwrap();
    // Unit-less path components match `name@unit`.
    let soc = dtb.find_path("/soc").unwrap();
    assert_eq!(soc.name, "soc@1c000000");
    assert!(dtb.find_path("/soc@1c000000/bridge/fw-cfg").is_some());
    assert!(dtb.find_path("/soc@1/serial@1000").is_none());
    assert!(dtb.find_path("relative").is_none());
    assert_eq!(dtb.children(&soc).count(), 5);
    assert_eq!(dtb.all_nodes().count(), 31);
    assert_eq!(dtb.mem_reservations().count(), 2);
}

#[test]
fn chosen_property_reads_hv_bootargs() {
    let with = testdata!("hv-bootargs.dtb");
    assert_eq!(chosen_property(with, "hv,bootargs").unwrap(), Some(&b"mode=nvhe remap=fault log=debug\0"[..]));
    assert_eq!(chosen_property(MINIMAL, "hv,bootargs").unwrap(), None);
    assert!(chosen_property(&with[..16], "hv,bootargs").is_err());
    // The board it describes is still the minimal one.
    assert_eq!(Board::from_bytes(with).unwrap().cpus.len(), 1);
}

#[test]
fn find_device_gives_window_and_interrupt() {
    let dtb = testdata!("virt-gicv3-smp4-1g.dtb");
    let rtc = find_device(dtb, "arm,pl031").unwrap().unwrap();
    assert_eq!(rtc.window, MemRegion::new(0x0901_0000, 0x1000));
    assert_eq!(rtc.irq.map(|i| i.intid), Some(32 + 2));
    // The Non-secure PL061, not the Secure one at 0x090b_0000.
    let gpio = find_device(dtb, "arm,pl061").unwrap().unwrap();
    assert_eq!(gpio.window, MemRegion::new(0x0903_0000, 0x1000));
    assert_eq!(find_device(dtb, "no,such-device").unwrap(), None);
    assert!(find_device(&dtb[..40], "arm,pl031").is_err());
}

// ---------------------------------------------------------------------------
// Register windows that cannot be the device (nonsense in the GIC and UART
// nodes)

/// The big-endian cells of MINIMAL's GIC and UART `reg` properties.
fn cells(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// MINIMAL with the `reg` cells `from` replaced by `to` (same length).
fn with_reg(from: &[u32], to: &[u32]) -> Vec<u8> {
    let (from, to) = (cells(from), cells(to));
    let mut v = MINIMAL.to_vec();
    let at = find(&v, &from);
    v[at..at + to.len()].copy_from_slice(&to);
    v
}

const MINIMAL_GIC_REG: [u32; 8] = [0, 0x800_0000, 0, 0x1_0000, 0, 0x80a_0000, 0, 0xf6_0000];
const MINIMAL_UART_REG: [u32; 4] = [0, 0x900_0000, 0, 0x1000];

fn reg_reason(bytes: &[u8]) -> (String, &'static str) {
    match err(bytes) {
        BoardError::BadProperty { node, property: "reg", reason } => (node.as_str().to_string(), reason),
        other => panic!("expected a bad `reg`, got {other:?}"),
    }
}

#[test]
fn rejects_gic_windows_that_cannot_be_a_gic() {
    let gic = |edit: &dyn Fn(&mut [u32; 8])| {
        let mut reg = MINIMAL_GIC_REG;
        edit(&mut reg);
        reg_reason(&with_reg(&MINIMAL_GIC_REG, &reg))
    };
    let node = "intc@8000000".to_string();
    assert_eq!(gic(&|r| r[3] = 0), (node.clone(), "gives the GICv3 distributor less than 64 KiB"));
    assert_eq!(gic(&|r| r[3] = 0x8000), (node.clone(), "gives the GICv3 distributor less than 64 KiB"));
    assert_eq!(gic(&|r| r[1] = 0x4000_0000), (node.clone(), "puts a register window over RAM"));
    assert_eq!(gic(&|r| r[5] = 0x4fff_0000), (node.clone(), "puts a register window over RAM"));
    assert_eq!(gic(&|r| r[7] = 0), (node.clone(), "has an empty redistributor region"));
    assert_eq!(gic(&|r| r[7] = 0x1_0000), (node, "gives the redistributors less than 128 KiB for each CPU in /cpus"));
    // One CPU's worth is enough.
    let b = parse(&with_reg(&MINIMAL_GIC_REG, &[0, 0x800_0000, 0, 0x1_0000, 0, 0x80a_0000, 0, 0x2_0000]));
    assert_eq!(b.gic.redistributors, regions(&[(0x80a_0000, 0x2_0000)]));
}

#[test]
fn real_dtbs_have_room_for_every_redistributor() {
    for (name, bytes) in [("smp8", GICV3_SMP8_1G), ("a72", GICV3_A72_SMP4_1G)] {
        let b = parse(bytes);
        let space: u64 = b.gic.redistributors.iter().map(|r| r.size).sum();
        assert!(space >= GICR_WINDOW_PER_CPU * b.cpus.len() as u64, "{name}");
    }
}

#[test]
fn rejects_uart_windows_that_cannot_be_a_pl011() {
    let node = "pl011@9000000".to_string();
    assert_eq!(
        reg_reason(&with_reg(&MINIMAL_UART_REG, &[0, 0x900_0000, 0, 0])),
        (node.clone(), "gives the PL011 a window smaller than its registers (0x48 bytes)")
    );
    assert_eq!(
        reg_reason(&with_reg(&MINIMAL_UART_REG, &[0, 0x4010_0000, 0, 0x1000])),
        (node, "puts a register window over RAM")
    );
    // A PL011 with less than its 4 KiB page but all its registers is fine.
    let b = parse(&with_reg(&MINIMAL_UART_REG, &[0, 0x900_0000, 0, 0x200]));
    assert_eq!(b.console.map(|u| u.size), Some(0x200));
    let e = err(&with_reg(&MINIMAL_UART_REG, &[0, 0x4010_0000, 0, 0x1000]));
    assert_eq!(e.to_string(), "device tree node pl011@9000000: `reg` puts a register window over RAM");
}

#[test]
fn pidr2_tells_a_gicv3_from_anything_else() {
    // QEMU's GICv3 and GICv4, and GIC-600's ArchRev 3.
    for v3 in [0x3b, 0x4b, 0x3b | 0xffff_ff00] {
        assert!(Gic::pidr2_is_v3_or_v4(v3), "{v3:#x}");
    }
    // Unbacked bus (all ones), RAM that reads zero, a GICv2 (ArchRev 2).
    for other in [0xffff_ffff, 0, 0x2b] {
        assert!(!Gic::pidr2_is_v3_or_v4(other), "{other:#x}");
    }
}

// ---------------------------------------------------------------------------
// Zynq UltraScale+ MPSoC: Cadence UARTs, GIC-400, the APU CPU release

/// `bytes` with the first occurrence of `from` overwritten by `to`, which
/// must not be longer; the rest of `from`'s bytes become NULs (for string
/// lists, an empty string, which `compatible` matching skips).
fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert!(to.len() <= from.len());
    let mut v = bytes.to_vec();
    let at = find(&v, from);
    v[at..at + from.len()].fill(0);
    v[at..at + to.len()].copy_from_slice(to);
    v
}

/// What every tree with the SoC's layout has (the synthetic one here, and
/// Debian's ZCU102 tree below).
fn check_zynqmp(b: &Board) {
    assert_eq!(b.ram, regions(&[(0, 2 * GIB), (0x8_0000_0000, 2 * GIB)]));
    assert!(b.secure_ram.is_empty() && b.secure_flash.is_empty() && b.flash.is_empty());
    assert_eq!(b.cpus, cpu_list(&[0, 1, 2, 3]));
    assert_eq!(b.console, Some(Uart { kind: UartKind::Cadence, base: 0xff00_0000, size: 0x1000 }));
    assert_eq!(b.secure_console, None);
    let gic = &b.gic;
    assert_eq!((gic.version, gic.compatible), (GicVersion::V2, GicCompatible::Gic400));
    assert_eq!(gic.distributor, MemRegion::new(0xf901_0000, 0x1_0000));
    assert!(gic.redistributors.is_empty());
    assert_eq!(gic.cpu_interface, Some(MemRegion::new(0xf902_0000, 0x2_0000)));
    assert_eq!(gic.hyp_interface, Some(MemRegion::new(0xf904_0000, 0x2_0000)));
    assert_eq!(gic.vcpu_interface, Some(MemRegion::new(0xf906_0000, 0x2_0000)));
    assert_eq!(gic.maintenance_irq, Some(ppi(9, 0xf04)));
    let t = &b.timer;
    assert_eq!(
        (t.secure_phys, t.nonsecure_phys, t.virt, t.hyp_phys, t.hyp_virt),
        (ppi(13, 0xf08), ppi(14, 0xf08), ppi(11, 0xf08), ppi(10, 0xf08), None)
    );
    assert_eq!((b.fw_cfg, b.poweroff, b.restart), (None, None, None));
    assert!(b.has_psci_node, "the SoC's tree has /psci (method smc): the monitor is its PSCI");
    assert_eq!(b.cpu_release, CpuRelease::ZynqMpApu(ZynqMpApu::REGISTERS));
}

#[test]
fn zynqmp_board() {
    let b = parse(ZYNQMP_BOARD);
    check_zynqmp(&b);
    let text = b.to_string();
    for needle in [
        "console: Cadence [0xff000000, 0xff001000)",
        "gic: V2 dist [0xf9010000, 0xf9020000) cpu [0xf9020000, 0xf9040000)",
        "cpu release: xlnx,zynqmp apu 0xfd5c0000 crf_apb 0xfd1a0000",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

/// `stdout-path` through `/aliases` picks the UART it names, not the first.
#[test]
fn zynqmp_console_follows_stdout_path() {
    let b = parse(&patched(ZYNQMP_BOARD, b"serial0:115200n8", b"serial1:115200n8"));
    assert_eq!(b.console, Some(Uart { kind: UartKind::Cadence, base: 0xff01_0000, size: 0x1000 }));
}

/// Each of the Cadence UART's `compatible` strings (those of Linux's
/// `xilinx_uartps` driver) alone makes a Cadence console; a PL011 string on
/// the same node a PL011 one; anything else is named in the error.
#[test]
fn cadence_uart_compatibles() {
    const COMPATIBLE: &[u8] = b"xlnx,zynqmp-uart\0cdns,uart-r1p12\0";
    for (compatible, kind) in [
        ("cdns,uart-r1p12", UartKind::Cadence),
        ("cdns,uart-r1p8", UartKind::Cadence),
        ("xlnx,xuartps", UartKind::Cadence),
        ("xlnx,zynqmp-uart", UartKind::Cadence),
        ("arm,pl011", UartKind::Pl011),
    ] {
        let b = parse(&patched(ZYNQMP_BOARD, COMPATIBLE, compatible.as_bytes()));
        assert_eq!(b.console.map(|u| (u.kind, u.base)), Some((kind, 0xff00_0000)), "{compatible}");
        assert!(kind.compatibles().contains(&compatible), "{compatible}");
    }
    let e = err(&patched(ZYNQMP_BOARD, COMPATIBLE, b"snps,dw-apb-uart"));
    assert!(
        e.to_string()
            .starts_with("console UART serial@ff000000 is snps,dw-apb-uart, which is not supported; supported:"),
        "{e}"
    );
}

#[test]
fn rejects_uart_windows_that_cannot_be_a_cadence_uart() {
    let reg = |size: u32| cells(&[0, 0xff00_0000, 0, size]);
    let small = patched(ZYNQMP_BOARD, &reg(0x1000), &reg(0x30));
    assert_eq!(
        err(&small).to_string(),
        "device tree node serial@ff000000: `reg` gives the Cadence UART a window smaller than its registers (0x34 bytes)"
    );
    let enough = parse(&patched(ZYNQMP_BOARD, &reg(0x1000), &reg(0x34)));
    assert_eq!(enough.console.map(|u| u.size), Some(0x34));
}

/// Another root `compatible` (a board that is not a Zynq UltraScale+):
/// the CPUs are taken to start at reset.
#[test]
fn cpu_release_follows_the_root_compatible() {
    let b = parse(&patched(ZYNQMP_BOARD, b"xlnx,zynqmp\0", b"test,other\0"));
    assert_eq!(b.cpu_release, CpuRelease::AtReset);
    for (name, bytes) in ALL_GOOD.iter().filter(|(name, _)| *name != "zynqmp-board") {
        assert_eq!(parse(bytes).cpu_release, CpuRelease::AtReset, "{name}");
    }
}

/// Debian's ZCU102 tree (`make linux-guest` extracts it from the kernel
/// package into build/linux; it is GPL-2.0+, so it is not test data here):
/// the same facts as the synthetic board, if it has been fetched.
#[test]
fn debian_zcu102_tree_if_fetched() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/linux/zynqmp-zcu102-rev1.0.dtb");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("SKIPPED debian_zcu102_tree_if_fetched: no {} (make linux-guest)", path.display());
        return;
    };
    let b = parse(&bytes);
    check_zynqmp(&b);
}

/// The console's own node, for its interrupt: the second of two Cadence
/// UARTs when `stdout-path` names it.
#[test]
fn find_device_at_picks_the_node_at_the_address() {
    let console = |bytes: &[u8]| {
        let b = parse(bytes);
        let u = b.console.unwrap();
        find_device_at(bytes, u.kind.compatibles(), u.base).unwrap().unwrap()
    };
    let first = console(ZYNQMP_BOARD);
    assert_eq!(
        (first.window, first.irq),
        (MemRegion::new(0xff00_0000, 0x1000), Some(Irq { intid: 32 + 21, flags: 4 }))
    );
    let second = console(&patched(ZYNQMP_BOARD, b"serial0:115200n8", b"serial1:115200n8"));
    assert_eq!((second.window.base, second.irq.map(|i| i.intid)), (0xff01_0000, Some(32 + 22)));
    assert_eq!(find_device_at(ZYNQMP_BOARD, &["arm,pl011"], 0xff00_0000), Ok(None));
}
