//! What the scenarios with several VMs share (`tests/vms.rs`,
//! `tests/sched.rs`): VM descriptions compiled into the DTB the firmware
//! reads from fw_cfg, booting with them, and the checks of a guest-stub VM's
//! and a Linux VM's reports, read from their shares of the console.

use crate::scenario::*;
use crate::selftest::{self, Expected};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Compiles the VM nodes `vms` (the body of `/chosen`) into a DTB in a
/// scratch directory.
pub fn vms_dtb(name: &str, vms: &str) -> PathBuf {
    let dir = scratch_dir(&format!("{name}-dtb"));
    let (dts, dtb) = (dir.join("vms.dts"), dir.join("vms.dtb"));
    std::fs::write(&dts, format!("/dts-v1/;\n/ {{\n    chosen {{\n{vms}\n    }};\n}};\n")).expect("write vms.dts");
    let out = Command::new("dtc").args(["-q", "-I", "dts", "-O", "dtb", "-o"]).arg(&dtb).arg(&dts).output();
    let out = out.expect("run dtc (make deps installs device-tree-compiler)");
    assert!(out.status.success(), "dtc refused the scenario's VMs: {}", String::from_utf8_lossy(&out.stderr));
    dtb
}

/// A VM node: `name`, `cpus` vCPUs, `mib` MiB of RAM, and `more` properties.
pub fn vm(name: &str, cpus: u32, mib: u64, more: &str) -> String {
    format!(
        "        vm-{name} {{\n            compatible = \"hv,vm\";\n            hv,name = \"{name}\";\n            cpus = <{cpus}>;\n            memory = <0 {}>;\n            {more}\n        }};",
        mib * 1024
    )
}

/// Boots `-cpu max -smp smp -m 2G` with the VMs `vms` and the hypervisor
/// command line `cmdline`.
pub fn boot_vms(name: &str, smp: u32, vms: &[String], cmdline: Option<&str>, timeout: Duration) -> Outcome {
    boot_vms_with(name, CPU_MAX, smp, vms, &[], Boot { cmdline, timeout, ..Boot::new(name, CPU_MAX, smp, "2G") })
}

/// Boots `base` (its CPU and CPU count `cpu`, `smp`) with the VMs `vms`
/// and the QEMU options `extra` besides the description's fw_cfg file.
pub fn boot_vms_with(name: &str, cpu: &str, smp: u32, vms: &[String], extra: &[&str], base: Boot) -> Outcome {
    let dtb = vms_dtb(name, &vms.join("\n"));
    let fw_cfg = format!("name=opt/hv/vms.dtb,file={}", dtb.display());
    let mut all = vec!["-fw_cfg", fw_cfg.as_str()];
    all.extend_from_slice(extra);
    boot(&Boot { extra: &all, cpu, smp, ..base })
}

/// VM `name` ran its guest-stub checks as `expected` and powered off with
/// status 0.
pub fn assert_vm_checks(o: &Outcome, name: &str, expected: &Expected) {
    let dump = o.dump();
    if let Err(problems) = selftest::account(&o.vm(name), expected) {
        panic!("VM {name}: the guest-stub's checks are not all accounted for:\n  {}\n{dump}", problems.join("\n  "));
    }
    let off = format!("el2: VM {name}: SYSTEM_OFF (status 0)");
    assert!(o.console.lines().any(|l| l == off), "missing `{off}`\n{dump}");
}

/// VM `name` ran its guest-stub checks as `expected` (a run with the
/// console checks), its console channels work, and it powered off with
/// status 0.
pub fn assert_vm_passed(o: &Outcome, name: &str, expected: &Expected) {
    assert_vm_checks(o, name, expected);
    let dump = o.dump();
    let text = o.vm(name);
    for line in [
        "guest: guest-stub: brk console ok",
        "guest: guest-stub: brk console from EL0 ok",
        "guest-dcc: guest-stub: dcc console ok",
    ] {
        assert!(text.lines().any(|l| l == line), "VM {name}: missing `{line}`\n{dump}");
    }
}

/// Where `make linux-guest` put the Linux guest, if it could fetch it.
pub fn linux_guest() -> Option<(PathBuf, PathBuf)> {
    crate::linux::guest().ok()
}

/// The fw_cfg options that give the firmware the Linux guest's kernel and
/// initramfs under the names the VM nodes of [`linux_vm`] use.
pub fn linux_fw_cfg((image, initrd): &(PathBuf, PathBuf)) -> [String; 4] {
    [
        "-fw_cfg".to_string(),
        format!("name=opt/hv/linux/kernel,file={}", image.display()),
        "-fw_cfg".to_string(),
        format!("name=opt/hv/linux/initrd,file={}", initrd.display()),
    ]
}

/// A Linux VM node of `cpus` vCPUs and 512 MiB in the test initramfs's VM
/// mode (`tests/linux/init`: `linux-guest=vm`), which works `work` rounds
/// after its checks, then powers off; `more` adds properties.
pub fn linux_vm(name: &str, cpus: u32, work: u32, more: &str) -> String {
    linux_vm_with(name, cpus, &format!("linux-guest=vm linux-guest-work={work}"), more)
}

/// A Linux VM node of `cpus` vCPUs and 512 MiB booting the test kernel and
/// initramfs with `console=ttyAMA0 ` and `bootargs` (the initramfs's mode,
/// `tests/linux/init`); `more` adds properties.
pub fn linux_vm_with(name: &str, cpus: u32, bootargs: &str, more: &str) -> String {
    vm(
        name,
        cpus,
        512,
        &format!(
            "hv,console; hv,kernel = \"opt/hv/linux/kernel\"; hv,initrd = \"opt/hv/linux/initrd\"; bootargs = \"console=ttyAMA0 {bootargs}\"; {more}"
        ),
    )
}

/// What a Linux kernel must never print in a healthy run
/// ([`crate::linux::BAD_LINES`]).
pub use crate::linux::BAD_LINES as LINUX_BAD_LINES;

/// Linux VM `name` (of [`linux_vm`]) reached userspace with `nproc` =
/// `cpus`, its timer interrupts rose on every vCPU between its two samples,
/// and its kernel printed none of [`LINUX_BAD_LINES`].
pub fn assert_linux_vm_healthy(o: &Outcome, name: &str, cpus: usize) {
    let dump = o.dump();
    let text = o.vm(name);
    assert!(text.lines().any(|l| l == "linux-guest: userspace up"), "{name} must reach userspace\n{dump}");
    let nproc = format!("linux-guest: nproc {cpus}");
    assert!(text.lines().any(|l| l == nproc), "{name}: `{nproc}` expected\n{dump}");
    if let Err(why) = crate::linux::check_timers_rose(&text, cpus) {
        panic!("{name}: {why}\n{dump}");
    }
    for bad in LINUX_BAD_LINES {
        assert!(!text.contains(bad), "{name}'s kernel log has `{bad}`\n{dump}");
    }
}
