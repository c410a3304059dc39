//! A hostile client against a Linux service VM (`docs/service-vm.md`, "What
//! the service VM can reach"): the guest-stub client `cl` drives the real
//! `hvvirtio` block backend of the service VM `svc` (a manager,
//! `tests/linux/init`: `linux-guest=service linux-guest-until-off`) like a
//! hostile driver (`guest-stub/src/vqueue.rs`, `stub=only=hvvirtio`): its
//! virtqueues and a request's data buffer point at the service's RAM, at
//! the hypervisor's image and across the end of its own RAM.
//!
//! What must hold: every hostile queue and buffer is refused with
//! `NEEDS_RESET` and a configuration-change interrupt (the client's checks,
//! exact), `hvvirtio` says so once per attack with the address it refused,
//! and a well-formed read works after each (the service keeps serving);
//! nothing was written where the addresses point: the service VM's own
//! device tree, at the start of its RAM, has the same checksum before
//! `hvvirtio` started and after it stopped, and the hypervisor's code has
//! the checksum it had at boot; `hvvirtio`'s own counts agree exactly with
//! what the client did; the client powers off, the service sees it off
//! (`hvctl vm list`) and powers off, and QEMU exits 0.

use hvctl::vm::VmLine;
use hvtests::scenario::*;
use hvtests::selftest::Expected;
use hvtests::virtio::*;
use hvtests::vms::*;
use platform::control::VmState;
use std::time::Duration;

/// The client's RAM, in MiB.
const CLIENT_MIB: u64 = 64;
/// The service's disk: 16 MiB of 512-byte sectors (`linux-guest-disk-mib`'s
/// default).
const DISK_SECTORS: u64 = 32768;
/// The attacks the client makes (`guest-stub/src/vqueue.rs`): four queues,
/// three buffers; and its well-formed reads: one, then one after each
/// attack.
const QUEUE_ATTACKS: usize = 4;
const BUFFER_ATTACKS: usize = 3;
const READS: usize = 1 + QUEUE_ATTACKS + BUFFER_ATTACKS;

fn hex(text: &str) -> u64 {
    u64::from_str_radix(text.trim().strip_prefix("0x").unwrap_or(text), 16)
        .unwrap_or_else(|_| panic!("`{text}` is no 0x number"))
}

/// The one line of `text` that starts with `prefix`, the prefix cut.
fn only_line<'t>(text: &'t str, prefix: &str, dump: &str) -> &'t str {
    let found: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix(prefix)).collect();
    let [line] = found.as_slice() else { panic!("exactly one `{prefix}` line expected, found {found:?}\n{dump}") };
    line
}

/// `[0x..., 0x...)` at the start of `text`: base and end.
fn range(text: &str) -> (u64, u64) {
    let inner = text.strip_prefix('[').and_then(|t| t.split_once(')')).map(|(r, _)| r);
    let (base, end) = inner.and_then(|r| r.split_once(", ")).unwrap_or_else(|| panic!("`{text}` is no range"));
    (hex(base), hex(end))
}

fn hostile_client_against_hvvirtio(name: &str, cpu: &str) {
    let Some(linux) = linux_guest() else {
        eprintln!("SKIPPED {name}: the Linux guest is not in build/linux (make linux-guest)");
        return;
    };
    let vms = [
        linux_vm_with("svc", 1, "linux-guest=service linux-guest-client=cl linux-guest-until-off", "hv,manager;"),
        vm(
            "cl",
            1,
            CLIENT_MIB,
            "hv,console; bootargs = \"stub=only=hvvirtio\";\n            \
             disk { compatible = \"hv,virtio-mmio\"; hv,device = \"block\"; hv,backend = \"svc\"; };",
        ),
    ];
    let files = linux_fw_cfg(&linux);
    let extra: Vec<&str> = files.iter().map(String::as_str).collect();
    let base = Boot { timeout: Duration::from_secs(300), ..Boot::new(name, cpu, 2, "2G") };
    let o = boot_vms_with(name, cpu, 2, &vms, &extra, base);
    let dump = o.dump();
    let shown = |l: &&str| l.contains("hvvirtio") || l.contains("linux-guest: service") || l.contains("SYSTEM_OFF");
    for line in o.console.lines().filter(shown) {
        eprintln!("{name}: {line}");
    }
    assert_eq!(o.status, Some(0), "QEMU must exit 0 once both VMs are off\n{dump}");
    assert_vm_checks(&o, "cl", &Expected::hvvirtio_client());
    let (svc_text, cl_text) = (o.vm("svc"), o.vm("cl"));
    let svc = ServiceReport::parse(&svc_text);
    assert!(svc.timeouts.is_empty(), "svc timed out: {:?}\n{dump}", svc.timeouts);

    // Where everything is, as the hypervisor placed it and the client saw it.
    let svc_ram = range(only_line(&o.console, "el2: VM svc: RAM ", &dump));
    let cl_ram = range(only_line(&o.console, "el2: VM cl: RAM ", &dump));
    assert_eq!(cl_ram.1 - cl_ram.0, CLIENT_MIB << 20, "cl's RAM\n{dump}");
    let load_pa = o.lines("el2: v").find_map(|l| l.split(' ').find_map(|w| w.strip_prefix("load-pa=")));
    let load_pa = hex(load_pa.unwrap_or_else(|| panic!("no `load-pa=` in the hypervisor's first line\n{dump}")));
    let svc_entry = only_line(&o.console, "el2: VM svc: entering Linux at IPA ", &dump);
    let svc_dtb = svc_entry.split(", ").find_map(|w| w.strip_prefix("DTB at IPA ")).map(hex);
    assert_eq!(svc_dtb, Some(svc_ram.0), "svc's DTB is at the start of its RAM: `{svc_entry}`\n{dump}");
    let window = only_line(&o.console, "el2: VM cl: virtio block device 0: window ", &dump);
    let (window_base, _) = range(window);
    let intid = window.split_once("INTID ").map(|(_, n)| n.to_string()).unwrap_or_default();
    assert_eq!(
        only_line(&cl_text, "guest-stub: hvvirtio: block device at ", &dump),
        format!(
            "{window_base:#x}, INTID {intid}, capacity {DISK_SECTORS} sectors; RAM [{:#x}, {:#x})",
            cl_ram.0, cl_ram.1
        ),
        "cl: its device and RAM as the hypervisor placed them\n{dump}"
    );
    assert_eq!(
        only_line(&cl_text, "guest-stub: hvvirtio: targets: ", &dump),
        format!("service RAM {:#x}, hypervisor {load_pa:#x}", svc_ram.0),
        "cl: the hostile addresses are svc's RAM (its DTB) and the hypervisor's image\n{dump}"
    );

    // hvvirtio refused each attack, once, naming what it refused.
    let serving = svc.hvvirtio.iter().find(|l| l.starts_with("hvvirtio: serving client cl "));
    let serving = serving.unwrap_or_else(|| panic!("svc: no `hvvirtio: serving client cl` line\n{dump}"));
    assert!(
        serving.ends_with(&format!("device 0 block /tmp/disk.img ({DISK_SECTORS} sectors)")),
        "`{serving}`\n{dump}"
    );
    let faults: Vec<&str> = svc.hvvirtio.iter().filter(|l| l.contains("needs a reset")).map(String::as_str).collect();
    let queue = "hvvirtio: device 0 needs a reset: queue 0: its rings are outside the client's RAM".to_string();
    let buffer = |at: u64| {
        format!("hvvirtio: device 0 needs a reset: queue 0: descriptor chain at 0: buffer of 512 bytes at {at:#x} is outside RAM")
    };
    let mut expected = vec![queue; QUEUE_ATTACKS];
    expected.extend([buffer(svc_ram.0), buffer(load_pa), buffer(cl_ram.1 - 256)]);
    assert_eq!(faults, expected, "svc: hvvirtio's faults, exactly, in order\n{dump}");

    // Its counts: every forwarded access of the client's, the reads, no
    // error; stopped by the service with SIGTERM, it exits 0.
    let stats = svc.hvvirtio.iter().find_map(|l| l.strip_prefix("hvvirtio: stats: "));
    let stats = stats.unwrap_or_else(|| panic!("svc: no hvvirtio stats line\n{dump}"));
    let accesses: Vec<&str> = cl_text
        .lines()
        .filter_map(|l| l.strip_prefix("guest-stub: hvvirtio: ")?.strip_suffix(" forwarded accesses"))
        .collect();
    let [accesses] = accesses.as_slice() else { panic!("cl: one count of its accesses expected\n{dump}") };
    let (requests, rest) = stats.split_once(" requests, ").unwrap_or_else(|| panic!("`{stats}`\n{dump}"));
    assert_eq!(requests, *accesses, "hvvirtio served exactly the client's accesses\n{dump}");
    // The client's start (before hvvirtio ran) and its stop are resets;
    // whether hvvirtio took the stop's event before the service's SIGTERM
    // is a race (the service looks at the client's state, not at
    // hvvirtio), so the count is 1 or 2.
    let (resets, rest) = rest.split_once(" client resets, ").unwrap_or_else(|| panic!("`{stats}`\n{dump}"));
    assert!(resets == "1" || resets == "2", "hvvirtio's client resets: `{stats}`\n{dump}");
    assert_eq!(
        rest,
        format!(
            "{} device faults; device 0 block: {READS} reads ({} bytes), 0 writes (0 bytes), 0 flushes, 0 errors",
            QUEUE_ATTACKS + BUFFER_ATTACKS,
            READS * 512
        ),
        "hvvirtio's counts: a fault per attack, the well-formed reads alone reached the disk\n{dump}"
    );
    assert_eq!(svc.hvvirtio.last().map(String::as_str), Some("exit 0"), "svc: hvvirtio's exit\n{dump}");

    // Nothing written where the hostile addresses point: svc's DTB and the
    // hypervisor's code.
    let dtb = |when: &str| only_line(&svc_text, &format!("linux-guest: service own dtb {when} sha256 "), &dump);
    let before = dtb("before");
    assert_eq!(before.len(), 64, "svc: a SHA-256 of its DTB\n{dump}");
    assert_eq!(dtb("after"), before, "svc: its DTB (the start of its RAM) unchanged\n{dump}");
    let at_boot = o.lines("el2: integrity: text+rodata ").find_map(|l| l.split_once(" KiB, sha256 ")).map(|(_, h)| h);
    let at_boot = at_boot.unwrap_or_else(|| panic!("no boot-time integrity line\n{dump}"));
    let unchanged = format!("el2: integrity: text+rodata sha256 {at_boot} unchanged since boot");
    assert!(o.console.lines().any(|l| l == unchanged), "the hypervisor's code: `{unchanged}`\n{dump}");

    // The client powered off first; the service saw it off, then went.
    let off = only_line(&svc_text, "linux-guest: service client cl off after ", &dump);
    assert!(off.ends_with(" s"), "svc: `{off}`\n{dump}");
    let list: Vec<VmLine> = svc_text
        .lines()
        .filter_map(|l| l.strip_prefix("linux-guest: vm list "))
        .map(|l| VmLine::parse(l).unwrap_or_else(|| panic!("svc: `{l}` does not parse\n{dump}")))
        .collect();
    let last: Vec<(&str, Option<VmState>, u32)> =
        list.iter().rev().take(2).rev().map(|l| (l.name.as_str(), l.state.state(), l.exit_status)).collect();
    assert_eq!(last, [("svc", Some(VmState::Running), 0), ("cl", Some(VmState::Off), 0)], "svc's last list\n{dump}");
    let lines: Vec<&str> = o.console.lines().collect();
    let at = |wanted: &str| lines.iter().position(|l| *l == wanted);
    let (cl_off, svc_off) = (at("el2: VM cl: SYSTEM_OFF (status 0)"), at("el2: VM svc: SYSTEM_OFF (status 0)"));
    assert!(cl_off.is_some_and(|c| svc_off.is_some_and(|s| c < s)), "cl powers off, then svc\n{dump}");

    // Nothing else went wrong.
    for bad in ["el2: ERROR", "el2: WARN: guest trap", "data abort injected", "fail: the service VM is gone"] {
        assert!(!o.console.contains(bad), "`{bad}` in the run\n{dump}");
    }
    for bad in LINUX_BAD_LINES {
        assert!(!svc_text.contains(bad), "svc's kernel log has `{bad}`\n{dump}");
    }
}

#[test]
fn hostile_client_against_hvvirtio_vhe() {
    hostile_client_against_hvvirtio("service-hostile-vhe", CPU_MAX);
}

#[test]
fn hostile_client_against_hvvirtio_nvhe() {
    hostile_client_against_hvvirtio("service-hostile-nvhe", CPU_A72);
}
