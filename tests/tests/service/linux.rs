//! Forwarded virtio devices between two unmodified Linux VMs
//! (`docs/service-vm.md`): the service VM `svc` (a manager) serves, with
//! `hvvirtio` in its userspace, a virtio-blk device backed by an ext2
//! image it builds and a virtio console to the client VM `cl`, whose own
//! kernel drives them with its stock `virtio_mmio`, `virtio_blk` and
//! `virtio_console` modules (`tests/linux/init`: `linux-guest=service`,
//! `linux-guest=client`).
//!
//! What must hold: the client mounts `/dev/vda` and its checksum of the
//! known file is the one the service computed; the bytes the client wrote
//! and synced are in the service's backing file; the consoles carry a line
//! each way; the service's `hvctl vm list` shows both VMs; when the service
//! powers off, the client's reads fail with I/O errors, the hypervisor says
//! the devices failed (and nothing worse), and QEMU exits 0.

use hvctl::vm::VmLine;
use hvtests::scenario::*;
use hvtests::virtio::*;
use hvtests::vms::*;
use platform::control::VmState;
use std::time::Duration;

fn linux_vms_share_a_disk_and_a_console(name: &str, cpu: &str) {
    let Some(linux) = linux_guest() else {
        eprintln!("SKIPPED {name}: the Linux guest is not in build/linux (make linux-guest)");
        return;
    };
    let devices = "disk { compatible = \"hv,virtio-mmio\"; hv,device = \"block\"; hv,backend = \"svc\"; }; \
                   con { compatible = \"hv,virtio-mmio\"; hv,device = \"console\"; hv,backend = \"svc\"; };";
    let vms = [
        linux_vm_with("svc", 1, "linux-guest=service linux-guest-client=cl", "hv,manager;"),
        linux_vm_with("cl", 1, "linux-guest=client", devices),
    ];
    let files = linux_fw_cfg(&linux);
    let extra: Vec<&str> = files.iter().map(String::as_str).collect();
    let base = Boot { timeout: Duration::from_secs(300), ..Boot::new(name, cpu, 2, "2G") };
    let o = boot_vms_with(name, cpu, 2, &vms, &extra, base);
    let dump = o.dump();
    let shown = |l: &&str| l.contains("| linux-guest: ") || l.contains("virtio") || l.contains("SYSTEM_OFF");
    for line in o.console.lines().filter(shown) {
        eprintln!("{name}: {line}");
    }
    assert_eq!(o.status, Some(0), "QEMU must exit 0 once both VMs are off\n{dump}");
    let (svc_text, cl_text) = (o.vm("svc"), o.vm("cl"));
    let (svc, cl) = (ServiceReport::parse(&svc_text), ClientReport::parse(&cl_text));
    assert!(svc.timeouts.is_empty(), "svc timed out: {:?}\n{dump}", svc.timeouts);
    assert!(cl.timeouts.is_empty(), "cl timed out: {:?}\n{dump}", cl.timeouts);

    // hvvirtio served both devices to cl.
    let serving = svc.hvvirtio.iter().find(|l| l.starts_with("hvvirtio: serving client cl "));
    let serving = serving.unwrap_or_else(|| panic!("svc: no `hvvirtio: serving client cl` line\n{dump}"));
    assert!(
        serving.ends_with("device 0 block /tmp/disk.img (32768 sectors), device 1 console"),
        "svc: `{serving}`\n{dump}"
    );

    // The disk: the same 16 MiB, the same known file, the client's bytes
    // in the service's backing file.
    assert_eq!(cl.vda_sectors, Some(32768), "cl: /dev/vda's size\n{dump}");
    let known = svc.known_sha256.as_deref().unwrap_or_else(|| panic!("svc: no checksum of /known\n{dump}"));
    assert_eq!(known.len(), 64, "svc: a SHA-256 in hex\n{dump}");
    assert_eq!(cl.known_sha256.as_deref(), Some(known), "the client reads what the service wrote\n{dump}");
    let marker = cl.marker.as_deref().unwrap_or_else(|| panic!("cl: wrote no marker\n{dump}"));
    assert!(marker.starts_with("marker-") && marker.len() == 23, "cl: marker `{marker}`\n{dump}");
    assert_eq!(svc.client_bytes, Some((marker.to_string(), true)), "svc must find cl's synced bytes\n{dump}");

    // The console, both ways.
    assert_eq!(cl.console_device.as_deref(), Some("/dev/hvc0"), "cl: the virtio console's tty\n{dump}");
    assert_eq!(cl.console_got.as_deref(), Some(HELLO), "cl: the service's line\n{dump}");
    assert_eq!(
        svc.console,
        [CLIENT_READY.to_string(), format!("{CLIENT_SYNCED}{marker}")],
        "svc: the client's console lines, exactly\n{dump}"
    );

    // svc's list: both VMs running.
    let list: Vec<VmLine> = svc_text
        .lines()
        .filter_map(|l| l.strip_prefix("linux-guest: vm list "))
        .map(|l| VmLine::parse(l).unwrap_or_else(|| panic!("svc: `{l}` does not parse\n{dump}")))
        .collect();
    let seen: Vec<(&str, Option<VmState>)> = list.iter().map(|l| (l.name.as_str(), l.state.state())).collect();
    assert_eq!(seen, [("svc", Some(VmState::Running)), ("cl", Some(VmState::Running))], "svc's list\n{dump}");
    assert!(svc_text.lines().any(|l| l == "linux-guest: hvctl vm list exit 0"), "svc: hvctl vm list\n{dump}");

    // The service goes: the client's devices fail, its reads get I/O errors.
    let failed = "el2: WARN: VM cl: its virtio devices served by VM svc fail: the service VM is gone";
    assert_eq!(o.console.lines().filter(|l| *l == failed).count(), 1, "`{failed}` once\n{dump}");
    let error = cl.io_error.as_deref().unwrap_or_else(|| panic!("cl: no I/O error after the service went\n{dump}"));
    assert!(error.contains("Input/output error") || error.contains(" of 512 bytes"), "cl: `{error}`\n{dump}");
    assert!(cl_text.contains("[vda] new size: 0 512-byte logical blocks"), "cl: capacity 0\n{dump}");
    let lines: Vec<&str> = o.console.lines().collect();
    let at = |wanted: &str| lines.iter().position(|l| *l == wanted);
    let (svc_off, cl_off) = (at("el2: VM svc: SYSTEM_OFF (status 0)"), at("el2: VM cl: SYSTEM_OFF (status 0)"));
    assert!(svc_off.is_some_and(|s| cl_off.is_some_and(|c| s < c)), "svc powers off, then cl\n{dump}");

    // Nothing else went wrong: no hypervisor error or unhandled trap, no
    // refused access, healthy kernels.
    for bad in ["el2: ERROR", "el2: WARN: guest trap", "data abort injected", "not failed"] {
        assert!(!o.console.contains(bad), "`{bad}` in the run\n{dump}");
    }
    for (vm, text) in [("svc", &svc_text), ("cl", &cl_text)] {
        for bad in LINUX_BAD_LINES {
            assert!(!text.contains(bad), "{vm}'s kernel log has `{bad}`\n{dump}");
        }
    }
}

#[test]
fn linux_vms_share_a_disk_and_a_console_vhe() {
    linux_vms_share_a_disk_and_a_console("service-linux-vhe", CPU_MAX);
}

#[test]
fn linux_vms_share_a_disk_and_a_console_nvhe() {
    linux_vms_share_a_disk_and_a_console("service-linux-nvhe", CPU_A72);
}

/// A service VM that never answers (a guest-stub spinning with its
/// interrupts masked: it has the backend function but never looks at it):
/// the Linux client's first access to its device waits `hv,timeout-ms`
/// (2 s here), then the device fails and the hypervisor answers, so the
/// client's `virtio_blk` gives up its probe cleanly instead of hanging.
fn a_service_that_never_answers_fails_the_device(name: &str, cpu: &str) {
    let Some(linux) = linux_guest() else {
        eprintln!("SKIPPED {name}: the Linux guest is not in build/linux (make linux-guest)");
        return;
    };
    let device = "disk { compatible = \"hv,virtio-mmio\"; hv,device = \"block\"; hv,backend = \"svc\"; hv,timeout-ms = <2000>; };";
    let vms = [
        vm("svc", 1, 64, "hv,console; bootargs = \"stub=spin=20000\";"),
        linux_vm_with("cl", 1, "linux-guest=client linux-guest-wait=5", device),
    ];
    let files = linux_fw_cfg(&linux);
    let extra: Vec<&str> = files.iter().map(String::as_str).collect();
    let base = Boot { timeout: Duration::from_secs(300), ..Boot::new(name, cpu, 2, "2G") };
    let o = boot_vms_with(name, cpu, 2, &vms, &extra, base);
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0 once both VMs are off\n{dump}");
    let failed =
        "el2: WARN: VM cl: its virtio devices served by VM svc fail: VM svc left an access unanswered for 2000 ms";
    assert_eq!(o.console.lines().filter(|l| *l == failed).count(), 1, "`{failed}` once\n{dump}");
    let cl_text = o.vm("cl");
    for wanted in [
        "New virtio-mmio devices (version 2) must provide VIRTIO_F_VERSION_1 feature!",
        "virtio_blk: probe of virtio0 failed with error -22",
    ] {
        assert!(cl_text.contains(wanted), "cl: `{wanted}` expected\n{dump}");
    }
    let cl = ClientReport::parse(&cl_text);
    assert_eq!(cl.timeouts, ["no /dev/vda after 5 s"], "cl: no disk, and a clean timeout\n{dump}");
    for bad in LINUX_BAD_LINES {
        assert!(!cl_text.contains(bad), "cl's kernel log has `{bad}`\n{dump}");
    }
    assert!(!o.console.contains("el2: ERROR"), "a hypervisor error\n{dump}");
}

#[test]
fn a_service_that_never_answers_fails_the_device_vhe() {
    a_service_that_never_answers_fails_the_device("service-timeout-vhe", CPU_MAX);
}

#[test]
fn a_service_that_never_answers_fails_the_device_nvhe() {
    a_service_that_never_answers_fails_the_device("service-timeout-nvhe", CPU_A72);
}
