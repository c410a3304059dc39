//! VM management (`docs/vms.md`, "Managing VMs"): a Linux manager VM
//! (`hv,manager`) lists, stops, starts and restarts the other VMs with
//! `hvctl vm` through its VM control function (`tests/linux/init`:
//! `linux-guest=manage`), and a Linux VM that is not a manager is refused
//! (`linux-guest=unmanaged`).
//!
//! The VMs, on `-smp 2`:
//!
//! - `svc`, the manager: Linux, 1 vCPU;
//! - `user`: Linux, 1 vCPU, not a manager: its `hvctl vm list` fails with
//!   the permission error, then it works 20 s, during which svc restarts
//!   it; its second life does the same and powers itself off;
//! - `worker`: a guest-stub spinning CPU-bound with its interrupts masked
//!   for 60 s (`stub=spin=60000`), which svc stops;
//! - `later`: a guest-stub not started at boot (`hv,autostart = <0>`),
//!   which svc starts; it runs one check and powers itself off.
//!
//! svc's requests and their results, its `hvctl vm list` lines (parsed with
//! `hvctl::vm::VmLine`), the VMs' own consoles and the hypervisor's
//! `stopped by` / `started by` / `restarted by` lines must all agree, and
//! QEMU must exit 0 once every VM is off.

use hvctl::vm::{VmLine, EXIT_PERMISSION, EXIT_SELF, NOT_MANAGER};
use hvtests::scenario::*;
use hvtests::vms::*;
use platform::control::{CommandResult, VmState, FLAG_AUTOSTART, FLAG_MANAGER, FLAG_SELF};
use std::time::Duration;

/// The VMs in description order (their indices).
const NAMES: [&str; 4] = ["svc", "user", "worker", "later"];

/// What the permission error looks like on a VM's console.
fn permission_line() -> String {
    format!("linux-guest: vm list stderr hvctl: vm: {NOT_MANAGER}")
}

/// svc's `hvctl vm list` lines, one list per element, in order.
fn lists(svc: &str, dump: &str) -> Vec<Vec<VmLine>> {
    let mut lists = Vec::new();
    let mut current = Vec::new();
    for line in svc.lines() {
        if let Some(rest) = line.strip_prefix("linux-guest: vm list vm ") {
            let text = format!("vm {rest}");
            current.push(VmLine::parse(&text).unwrap_or_else(|| panic!("svc: `{text}` does not parse\n{dump}")));
        } else if line.starts_with("linux-guest: hvctl vm list exit ") {
            assert_eq!(line, "linux-guest: hvctl vm list exit 0", "svc: hvctl vm list failed\n{dump}");
            lists.push(std::mem::take(&mut current));
        }
    }
    lists
}

/// Checks one list: the four VMs in index order, with these states.
fn assert_list(list: &[VmLine], states: [VmState; 4], what: &str, dump: &str) {
    let names: Vec<&str> = list.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, NAMES, "{what}: the VMs in description order\n{dump}");
    for (index, (line, state)) in list.iter().zip(states).enumerate() {
        assert_eq!(line.index as usize, index, "{what}: {line:?}\n{dump}");
        assert_eq!(line.state.state(), Some(state), "{what}: {} must be {}: {line:?}\n{dump}", line.name, state.name());
    }
    let flags: Vec<u32> = list.iter().map(|l| l.flags).collect();
    assert_eq!(
        flags,
        [FLAG_MANAGER | FLAG_AUTOSTART | FLAG_SELF, FLAG_AUTOSTART, FLAG_AUTOSTART, 0],
        "{what}: the flags (svc manager,autostart,self; user and worker autostart; later none)\n{dump}"
    );
    let shape: Vec<(u32, u32)> = list.iter().map(|l| (l.vcpus, l.memory_kib / 1024)).collect();
    assert_eq!(shape, [(1, 512), (1, 512), (1, 64), (1, 64)], "{what}: vCPUs and MiB\n{dump}");
}

/// The console line index of the first line equal to `wanted`.
fn position(o: &Outcome, wanted: &str) -> Option<usize> {
    o.console.lines().position(|l| l == wanted)
}

fn a_manager_vm_manages_the_others(name: &str, cpu: &str) {
    let Some(linux) = linux_guest() else {
        eprintln!("SKIPPED {name}: the Linux guest is not in build/linux (make linux-guest)");
        return;
    };
    let vms = [
        linux_vm_with("svc", 1, "linux-guest=manage", "hv,manager;"),
        linux_vm_with("user", 1, "linux-guest=unmanaged linux-guest-work=20", ""),
        vm("worker", 1, 64, "hv,console; bootargs = \"stub=spin=60000\";"),
        vm("later", 1, 64, "hv,console; hv,autostart = <0>; bootargs = \"stub=only=el1\";"),
    ];
    let files = linux_fw_cfg(&linux);
    let extra: Vec<&str> = files.iter().map(String::as_str).collect();
    let base = Boot { timeout: Duration::from_secs(300), ..Boot::new(name, cpu, 2, "2G") };
    let o = boot_vms_with(name, cpu, 2, &vms, &extra, base);
    let dump = o.dump();
    // What happened, for the log of a passing run too.
    let shown = |l: &&str| {
        l.contains("| linux-guest: vm ")
            || l.contains("| linux-guest: hvctl vm ")
            || l.contains("| linux-guest: later ")
            || l.contains("| linux-guest: userspace up")
            || l.contains(" by VM ")
            || l.contains("SYSTEM_OFF")
            || l.starts_with("later| guest-stub: ")
    };
    for line in o.console.lines().filter(shown) {
        eprintln!("{name}: {line}");
    }
    assert_eq!(o.status, Some(0), "QEMU must exit 0 once every VM is off\n{dump}");
    assert!(!o.console.contains("el2: WARN: guest trap"), "a trap the hypervisor did not handle\n{dump}");

    // Both Linux VMs reached userspace (user twice), with a clean kernel log.
    let (svc, user) = (o.vm("svc"), o.vm("user"));
    for (vm, text, lives) in [("svc", &svc, 1), ("user", &user, 2)] {
        let up = text.lines().filter(|l| *l == "linux-guest: userspace up").count();
        assert_eq!(up, lives, "{vm} must reach userspace {lives} time(s)\n{dump}");
        for bad in LINUX_BAD_LINES {
            assert!(!text.contains(bad), "{vm}'s kernel log has `{bad}`\n{dump}");
        }
    }
    let has = |text: &str, line: &str| text.lines().any(|l| l == line);

    // svc's lists: at first every VM but later runs; after the stop, worker
    // is off; at the end, worker and later are off and user runs again.
    use VmState::{Off, Running};
    let lists = lists(&svc, &dump);
    assert_eq!(lists.len(), 3, "svc: three lists\n{dump}");
    assert_list(&lists[0], [Running, Running, Running, Off], "svc's first list", &dump);
    assert_eq!(lists[0][3].starts, 0, "later has not run yet\n{dump}");
    assert_list(&lists[1], [Running, Running, Off, Off], "svc's list after the stop", &dump);
    assert_list(&lists[2], [Running, Running, Off, Off], "svc's last list", &dump);
    let starts = |list: &[VmLine]| -> Vec<u32> { list.iter().map(|l| l.starts).take(3).collect() };
    let (first, last) = (starts(&lists[0]), starts(&lists[2]));
    assert_eq!(
        last,
        [first[0], first[1] + 1, first[2]],
        "svc's last list: user's STARTS one more than at first, svc's and worker's as they were\n{dump}"
    );
    assert_eq!(lists[2][3].exit_status, 0, "later reported status 0\n{dump}");

    // svc as nobody: the kernel refuses the registers.
    let nobody = format!("linux-guest: hvctl vm list as nobody exit {EXIT_PERMISSION}");
    assert!(has(&svc, &nobody), "svc: `{nobody}` expected\n{dump}");
    let denied = svc.lines().find(|l| l.starts_with("linux-guest: vm list as nobody stderr "));
    assert!(
        denied.is_some_and(|l| l.contains("hvctl: vm: permission denied: open ") && l.contains("resource0")),
        "svc: nobody's permission error expected, got {denied:?}\n{dump}"
    );

    // The commands and their results.
    let done = CommandResult::Done;
    for command in ["stop worker", "start later", "restart user"] {
        let line = format!("linux-guest: hvctl vm {command} exit 0 {done}");
        assert!(has(&svc, &line), "svc: `{line}` expected\n{dump}");
    }
    let refused = format!("linux-guest: hvctl vm stop svc exit {EXIT_SELF} {}", CommandResult::IsSelf);
    assert!(has(&svc, &refused), "svc: `{refused}` expected\n{dump}");
    let later_off = svc.lines().any(|l| l.starts_with("linux-guest: later off after "));
    assert!(later_off, "svc: later must be off again within 60 s\n{dump}");

    // The hypervisor's side, in order.
    let mut last = 0;
    for line in [
        "el2: VM worker: stopped by VM svc",
        "el2: VM later: started by VM svc",
        "el2: VM later: SYSTEM_OFF (status 0)",
        "el2: VM user: restarted by VM svc",
    ] {
        let at = position(&o, line).unwrap_or_else(|| panic!("missing `{line}`\n{dump}"));
        assert!(at > last, "`{line}` out of order\n{dump}");
        last = at;
    }
    assert!(!o.console.contains("by VM user"), "user must not manage anything\n{dump}");

    // later ran its check after svc started it.
    let later = o.vm("later");
    assert!(has(&later, "guest-stub: PASS el1-entry"), "later must run its check\n{dump}");
    // worker was stopped, not finished: it never powered itself off.
    assert!(!o.console.contains("el2: VM worker: SYSTEM_OFF"), "worker must have been stopped\n{dump}");

    // user, in both lives: the permission error and its status, the first
    // before the restart.
    let status = format!("linux-guest: hvctl vm list exit {EXIT_PERMISSION}");
    for line in [permission_line(), status] {
        let count = user.lines().filter(|l| *l == line).count();
        assert_eq!(count, 2, "user: `{line}` expected in both lives\n{dump}");
    }
    let denied = permission_line();
    let first = o.console.lines().position(|l| l.starts_with("user") && l.ends_with(denied.as_str()));
    let restart = position(&o, "el2: VM user: restarted by VM svc");
    assert!(first < restart, "user's first life must print its error before the restart\n{dump}");
    assert!(has(&user, "linux-guest: working 20 of 20"), "user's second life works to its end\n{dump}");
    for vm in ["svc", "user"] {
        let off = format!("el2: VM {vm}: SYSTEM_OFF (status 0)");
        assert!(o.console.lines().any(|l| l == off), "missing `{off}`\n{dump}");
    }
}

#[test]
fn a_manager_vm_manages_the_others_vhe() {
    a_manager_vm_manages_the_others("manage-vhe", CPU_MAX);
}

#[test]
fn a_manager_vm_manages_the_others_nvhe() {
    a_manager_vm_manages_the_others("manage-nvhe", CPU_A72);
}
