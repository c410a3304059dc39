//! A portal between two unmodified Linux VMs (`docs/portals.md`,
//! `docs/linux-guest.md`): each VM binds `uio_pci_generic` to its end's PCI
//! function and, with `hvctl portal` (`tests/linux/init`:
//! `linux-guest=portal`), end 0 writes a message into the shared memory
//! and requests operation 1, end 1 waits for it on the uio interrupt,
//! reads the message, writes a reply and requests operation 0, which end 0
//! waits for and reads. Each then requests an operation it may not
//! (refused), and the counters both ends read and the hypervisor's
//! power-off summary has are exact.

use hvctl::portal::{PortalLine, EXIT_REFUSED};
use hvtests::scenario::*;
use hvtests::vms::*;
use platform::portal::{Counters, Outcome, PeerState, REPORT_PREFIX};
use std::time::Duration;

/// The portal: 64 KiB shared; end 0 (linux-a) may request operations 0
/// and 1, end 1 (linux-b) only 0.
const PORTAL_AB: &str = "        portal-ab { compatible = \"hv,portal\"; hv,name = \"ab\"; hv,ends = \"linux-a\", \"linux-b\"; hv,size = <64>; hv,ops-0 = <0 1>; hv,ops-1 = <0>; };";

/// Each end: its VM, its allowed and peer-allowed operations, the operation
/// it tries and may not request, and the line with what it received.
struct End {
    vm: &'static str,
    allowed: u32,
    peer_allowed: u32,
    forbidden: u32,
    received: &'static str,
}

const ENDS: [End; 2] = [
    End {
        vm: "linux-a",
        allowed: 0b11,
        peer_allowed: 0b01,
        forbidden: 5,
        received: "linux-guest: portal reply hello from end 1",
    },
    End {
        vm: "linux-b",
        allowed: 0b01,
        peer_allowed: 0b11,
        forbidden: 1,
        received: "linux-guest: portal message hello from end 0",
    },
];

fn linux_vms_talk_through_a_portal(name: &str, cpu: &str) {
    let Some(linux) = linux_guest() else {
        eprintln!("SKIPPED {name}: the Linux guest is not in build/linux (make linux-guest)");
        return;
    };
    // One vCPU each, on a CPU of its own.
    let vms = [
        linux_vm_with("linux-a", 1, "linux-guest=portal", "hv,cpu-affinity = <0>;"),
        linux_vm_with("linux-b", 1, "linux-guest=portal", "hv,cpu-affinity = <1>;"),
        PORTAL_AB.to_string(),
    ];
    let files = linux_fw_cfg(&linux);
    let extra: Vec<&str> = files.iter().map(String::as_str).collect();
    let base = Boot { timeout: Duration::from_secs(300), ..Boot::new(name, cpu, 2, "2G") };
    let o = boot_vms_with(name, cpu, 2, &vms, &extra, base);
    let dump = o.dump();
    // What happened, for the log of a passing run too.
    let shown = |l: &&str| {
        l.contains("| linux-guest: pci ") || l.contains("| linux-guest: portal ") || l.starts_with("el2: portal ")
    };
    for line in o.console.lines().filter(shown) {
        eprintln!("{name}: {line}");
    }
    assert_eq!(o.status, Some(0), "QEMU must exit 0 once both VMs are off\n{dump}");
    // Each end sent one request (delivered), had one refused, and received
    // the other's.
    let counters = Counters { sent: 1, refused: 1, peer_down: 0, received: 1 };
    for (end, e) in ENDS.iter().enumerate() {
        let vm = e.vm;
        let text = o.vm(vm);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has("linux-guest: userspace up"), "{vm} must reach userspace\n{dump}");
        for bad in LINUX_BAD_LINES {
            assert!(!text.contains(bad), "{vm}'s kernel log has `{bad}`\n{dump}");
        }
        // The function, with uio_pci_generic and a uio device.
        let pci = text.lines().find(|l| l.starts_with("linux-guest: pci ") && l.contains(" 0x1234:0x7a11 "));
        let pci = pci.unwrap_or_else(|| panic!("{vm}: no portal function (0x1234:0x7a11) listed\n{dump}"));
        let uio = pci.split_once(" driver uio_pci_generic ").map(|(_, uio)| uio);
        assert!(
            uio.is_some_and(|u| u.starts_with("uio") && u.len() > 3),
            "{vm}: the portal function must be bound to uio_pci_generic with a uio device: `{pci}`\n{dump}"
        );
        // hvctl portal list, before and after.
        let lines: Vec<PortalLine> = text
            .lines()
            .filter_map(|l| l.strip_prefix("linux-guest: portal list "))
            .map(|l| PortalLine::parse(l).unwrap_or_else(|| panic!("{vm}: `{l}` does not parse\n{dump}")))
            .collect();
        assert_eq!(lines.len(), 2, "{vm}: hvctl portal list must show one portal, twice\n{dump}");
        for line in &lines {
            let seen = (line.index, usize::from(line.end), line.allowed, line.peer_allowed, line.memory);
            assert_eq!(seen, (0, end, e.allowed, e.peer_allowed, 64 << 10), "{vm}: {line:?}\n{dump}");
            assert!(line.uio.is_some(), "{vm}: hvctl must see the uio device: {line:?}\n{dump}");
        }
        assert_eq!(lines[0].peer.state(), Some(PeerState::Running), "{vm}: the peer runs at first\n{dump}");
        assert_eq!(lines[1].counters, counters, "{vm}: the counters it reads at the end\n{dump}");
        for status in ["list", "write", "send", "wait", "read"].map(|c| format!("linux-guest: hvctl portal {c} exit 0"))
        {
            assert!(has(&status), "{vm}: `{status}` expected\n{dump}");
        }
        // The message one way (operation 1, to end 1), the reply the other
        // (operation 0, to end 0), each with its length.
        let got = format!("linux-guest: portal got op {end} arg 0x10");
        for line in [got.as_str(), e.received] {
            assert!(has(line), "{vm}: `{line}` expected\n{dump}");
        }
        let forbidden =
            format!("linux-guest: portal forbidden op {} exit {EXIT_REFUSED} {}", e.forbidden, Outcome::Refused);
        assert!(has(&forbidden), "{vm}: `{forbidden}` expected\n{dump}");
        let summary = format!("el2: {REPORT_PREFIX}ab end {end} ({vm}): ");
        let line = o.console.lines().find_map(|l| l.strip_prefix(summary.as_str()));
        let line = line.unwrap_or_else(|| panic!("no `{summary}` line in the power-off summary\n{dump}"));
        assert_eq!(Counters::parse(line), Some(counters), "{vm}: the hypervisor's counters: `{line}`\n{dump}");
        let off = format!("el2: VM {vm}: SYSTEM_OFF (status 0)");
        assert!(o.console.lines().any(|l| l == off), "missing `{off}`\n{dump}");
    }
    assert!(!o.console.contains("el2: WARN: guest trap"), "a trap the hypervisor did not handle\n{dump}");
}

#[test]
fn linux_vms_talk_through_a_portal_vhe() {
    linux_vms_talk_through_a_portal("portal-linux-vhe", CPU_MAX);
}

#[test]
fn linux_vms_talk_through_a_portal_nvhe() {
    linux_vms_talk_through_a_portal("portal-linux-nvhe", CPU_A72);
}
