//! The zcu102 board: QEMU's `xlnx-zcu102` (four Cortex-A53, a GIC-400,
//! Cadence UARTs, DDR at 0), described only by the device tree Debian ships
//! with its arm64 kernel, booting the image `make image BOARD=zcu102` wrote
//! (`HV_ZCU102_DIR` names its directory; `make qemu-test` sets it). The
//! device tree comes with the Linux guest (`make linux-guest`); without it
//! the scenarios say they were skipped, as the Linux scenarios do.

use hvtests::flash::{repack, Extras};
use hvtests::scenario::*;
use hvtests::selftest;
use std::time::Duration;

/// The Linux guest on four emulated Cortex-A53 takes about 10 s alone;
/// this leaves room for a loaded machine.
const LINUX_TIMEOUT: Duration = Duration::from_secs(300);

/// The checks a default run skips on the zcu102, and why: the PCI shim
/// presents the PL031 and PL061 it finds in the DTB, and this SoC has
/// neither (its host bridge has no function at 00:00.0); and the stub runs
/// its EL0 code at its IPA with the MMU off, which on this board is above
/// 4 GiB (the second DDR region), beyond an AArch32 PC.
const SKIPPED_ON_ZCU102: &[&str] = &[
    "pci-enumerate",
    "pci-bar-sizing",
    "pci-readonly-fields",
    "pci-bad-access",
    "pci-bar-reads-device",
    "pci-bar-move",
    "debug-bkpt-aarch32",
];

/// The monitor finds everything in Debian's tree: its console (the Cadence
/// UART0 through `stdout-path = "serial0:..."`), the four CPUs, which it
/// takes out of reset through the SoC's APU registers and counts into its
/// holding pen, and the GIC-400. The hypervisor drives the GIC-400 (its
/// CPU interface's pages repeat every 64 KiB on this SoC), brings up the
/// four CPUs, and the guest-stub, on a virtual GICv2 and the Cadence UART
/// passed through, passes every check but those this SoC cannot have
/// ([`SKIPPED_ON_ZCU102`]), interrupts included.
#[test]
fn zcu102_boots_the_guest_stub() {
    let name = "zcu102_boots_the_guest_stub";
    let dtb = match zcu102_dtb() {
        Ok(dtb) => dtb,
        Err(why) => {
            eprintln!("SKIPPED {name}: Debian's ZCU102 device tree is not in build/linux ({why})");
            return;
        }
    };
    let o = boot_zcu102(name, &dtb, TIMEOUT);
    let dump = o.dump();

    // The banner, on the Cadence console, with the DTB where the memory
    // file has QEMU load it.
    let memory_file = std::fs::read_to_string(workspace().join(ZCU102_MEMORY_FILE)).expect("read the memory file");
    let dtb_at = link_symbol(&memory_file, "__board_dtb_fallback").expect("the DTB's address");
    let banner = format!("el3-monitor: v{} at EL3, 4 CPU(s), DTB at {dtb_at:#x}", env!("CARGO_PKG_VERSION"));
    assert_eq!(o.console.lines().next(), Some(banner.as_str()), "the banner comes first\n{dump}");

    // CPUs 1-3 leave reset at the monitor's entry and reach its pen.
    let released = o
        .lines("el3-monitor: 3 secondary CPU(s) released from reset (xlnx,zynqmp: RVBAR ")
        .next()
        .unwrap_or_else(|| panic!("no release line for CPUs 1-3\n{dump}"));
    assert!(released.ends_with("; 3 of 3 in the monitor"), "every released CPU must arrive: {released}\n{dump}");

    // The GIC-400, with its CPU interface's contiguous 8 KiB at 60 KiB in.
    for line in [
        "el2: GIC: the CPU interface's 4 KiB pages repeat every 64 KiB: using its 8 KiB at 0xf902f000",
        "el2: 4/4 CPUs online at EL2",
    ] {
        assert!(o.console.lines().any(|l| l == line), "missing `{line}`\n{dump}");
    }
    let gic = "el2: GIC v2 (arm,gic-400) at 0xf9010000;";
    assert!(o.console.lines().any(|l| l.starts_with(gic)), "missing `{gic}`\n{dump}");

    // The guest-stub: every check accounted for, none failed.
    let mut expected = selftest::Expected::default_run();
    expected.skipped = SKIPPED_ON_ZCU102.iter().map(|c| c.to_string()).collect();
    if let Err(problems) = selftest::account(&o.console, &expected) {
        panic!("the guest-stub's checks are not all accounted for:\n  {}\n{dump}", problems.join("\n  "));
    }
    assert_eq!(o.status, Some(0), "the stub's power-off ends QEMU with status 0\n{dump}");
    // The lockup watchdog reports only the stall `pnmi-watchdog` asks for.
    assert_eq!(o.lines("el2: WARN: watchdog: ").count(), 1, "lockup reports\n{dump}");
    assert!(!o.console.contains("ERROR"), "no error on the way\n{dump}");
}

/// The Linux guest's kernel command line on this board: its console is the
/// host's Cadence UART0 passed through (`serial@ff000000`, `xlnx,zynqmp-uart`,
/// `cdns,uart-r1p12`), which the Debian kernel's `xilinx_uartps` driver
/// calls ttyPS0.
const LINUX_CMDLINE: &str = "console=ttyPS0 linux-guest=poweroff";

/// The board has no fw_cfg: the Debian Linux guest comes in the firmware
/// package (the image's package with the kernel, the initramfs and both
/// command lines added, as `make run-linux BOARD=zcu102` builds it), which
/// the monitor verifies and copies next to the hypervisor. The hypervisor
/// takes its command line from the package, boots the kernel on the
/// virtual GICv2 with the Cadence console, and Linux reaches userspace on
/// all four vCPUs, its timer ticking on each, with a clean log, and powers
/// off: QEMU exits 0.
#[test]
fn zcu102_boots_linux_from_the_package() {
    let name = "zcu102_boots_linux_from_the_package";
    let (dtb, (image, initrd)) = match (zcu102_dtb(), hvtests::linux::guest()) {
        (Ok(dtb), Ok(linux)) => (dtb, linux),
        (Err(why), _) | (_, Err(why)) => {
            eprintln!("SKIPPED {name}: the Linux guest or Debian's ZCU102 device tree is not in build/linux ({why})");
            return;
        }
    };
    let read = |path: &std::path::Path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let kernel = read(&image);
    let initramfs = read(&initrd);
    let extras = Extras {
        linux_kernel: Some(kernel.clone()),
        linux_initrd: Some(initramfs.clone()),
        linux_cmdline: Some(LINUX_CMDLINE.into()),
        hv_cmdline: Some("mode=nvhe".into()),
    };
    let package = repack(&read(&zcu102_image().1), &extras).expect("the package with the Linux guest");
    let dir = scratch_dir(&format!("{name}-package"));
    let path = dir.join("package-linux.bin");
    std::fs::write(&path, &package.bytes).expect("write the package");
    let o = boot_zcu102_with(name, &dtb, &path, LINUX_TIMEOUT);
    let _ = std::fs::remove_dir_all(&dir);
    let dump = o.dump();

    // The monitor copied the data entries; the hypervisor took its command
    // line from the package and boots the package's kernel.
    for prefix in [
        format!("el3-monitor: package's Linux kernel ({:#x} bytes) copied to PA ", kernel.len()),
        format!("el3-monitor: package's Linux initrd ({:#x} bytes) copied to PA ", initramfs.len()),
        format!("el3-monitor: package's Linux command line ({:#x} bytes) copied to PA ", LINUX_CMDLINE.len()),
        "el3-monitor: package's hypervisor command line (0x9 bytes) copied to PA ".to_string(),
    ] {
        assert!(o.lines(&prefix).next().is_some(), "missing `{prefix}...`\n{dump}");
    }
    let lines = [
        "el2: command line (firmware package hv-cmdline): `mode=nvhe`".to_string(),
        format!(
            "el2: Linux guest from the firmware package: kernel {:#x} bytes, initrd {:#x} bytes",
            kernel.len(),
            initramfs.len()
        ),
        "el2: 4/4 CPUs online at EL2".to_string(),
    ];
    for line in &lines {
        assert!(o.console.lines().any(|l| l == line), "missing `{line}`\n{dump}");
    }
    let entering = o.lines("el2: entering Linux at IPA ").next().unwrap_or_else(|| panic!("Linux not entered\n{dump}"));
    assert!(entering.ends_with(&format!("command line `{LINUX_CMDLINE}`")), "{entering}\n{dump}");

    // Linux on the Cadence console, the virtual GICv2, all four vCPUs.
    assert!(o.console.contains("ff000000.serial: ttyPS0 at MMIO 0xff000000"), "xilinx_uartps: ttyPS0\n{dump}");
    assert!(o.console.contains("printk: console [ttyPS0] enabled"), "the console on ttyPS0\n{dump}");
    for line in
        ["linux-guest: userspace up", "linux-guest: nproc 4", "linux-guest: interrupt controller arm,cortex-a15-gic"]
    {
        assert!(o.console.lines().any(|l| l == line), "missing `{line}`\n{dump}");
    }
    if let Err(why) = hvtests::linux::check_timers_rose(&o.console, 4) {
        panic!("{why}\n{dump}");
    }
    if let Some(bad) = hvtests::linux::bad_line(&o.console) {
        panic!("the kernel log has `{bad}`\n{dump}");
    }
    assert!(o.lines("linux-guest: powering off").next().is_some(), "{dump}");
    assert_eq!(o.status, Some(0), "Linux's power-off ends QEMU with status 0\n{dump}");
    assert!(!o.console.contains("ERROR"), "no error on the way\n{dump}");
}
