//! Forwarded virtio devices end to end (`platform::forward`,
//! `el2/src/vm/forward.rs`): a guest-stub client VM's `virtio,mmio`
//! windows are served by a guest-stub service VM's backend function, both
//! running the `virtio-*` checks at once (`guest-stub/src/virtio.rs`);
//! then the service powers off and the client finds its devices failed.

#[path = "service/hostile.rs"]
mod hostile;
#[path = "service/linux.rs"]
mod linux;

use hvtests::scenario::*;
use hvtests::selftest::Expected;
use hvtests::vms::*;
use std::time::Duration;

/// The client's RAM, in MiB (`stub=virtio-client-mib`).
const CLIENT_MIB: u64 = 64;

fn hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// The one line of VM `vm`'s output that starts with `prefix`, the prefix
/// cut.
fn only_line(o: &Outcome, vm: &str, prefix: &str) -> String {
    let text = o.vm(vm);
    let found: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix(prefix)).collect();
    let [line] = found.as_slice() else {
        panic!("{vm}: exactly one `{prefix}` line expected, found {}\n{}", found.len(), o.dump())
    };
    line.to_string()
}

/// A client window as the client's stub and the hypervisor each report
/// it: its address and INTID.
#[derive(Debug, PartialEq, Eq)]
struct Window {
    base: u64,
    intid: u32,
}

/// Where the client's stub found device `index` (`virtio: client: device
/// N at 0x..., INTID n, type t`), and its type.
fn client_window(o: &Outcome, index: usize) -> (Window, u32) {
    let line = only_line(o, "cl", &format!("guest-stub: virtio: client: device {index} at "));
    let parse = || {
        let (base, rest) = line.split_once(", INTID ")?;
        let (intid, kind) = rest.split_once(", type ")?;
        Some((Window { base: hex(base)?, intid: intid.parse().ok()? }, kind.parse().ok()?))
    };
    parse().unwrap_or_else(|| panic!("`{line}` does not parse\n{}", o.dump()))
}

/// Where the hypervisor put it: `el2: VM cl: virtio block device 0: window
/// [0x..., 0x...), INTID n`.
fn placed_window(o: &Outcome, kind: &str, index: usize) -> Window {
    let who = format!("el2: VM cl: virtio {kind} device {index}: window [");
    let lines: Vec<&str> = o.console.lines().filter_map(|l| l.strip_prefix(who.as_str())).collect();
    let [line] = lines.as_slice() else { panic!("exactly one `{who}` line expected\n{}", o.dump()) };
    let parse = || {
        let (start, rest) = line.split_once(", ")?;
        let (end, intid) = rest.split_once("), INTID ")?;
        let (base, end) = (hex(start)?, hex(end)?);
        (end - base == 0x200).then_some(())?;
        Some(Window { base, intid: intid.parse().ok()? })
    };
    parse().unwrap_or_else(|| panic!("`{line}` does not parse (or is no 0x200 window)\n{}", o.dump()))
}

/// A client VM `cl` (2 vCPUs, 64 MiB) with two forwarded devices, a block
/// device and a console, both served by VM `svc` (1 vCPU), on `-smp 2`.
/// Both run `stub=only=virtio`: every check passes in both, but the
/// service skips `virtio-service-death` (it powers off for the client to
/// find its devices failed). Exact figures beside the checks' own:
///
/// - the service sees its client's RAM where the client's device tree puts
///   it, and each client window is where the hypervisor says, with its
///   INTID and type (2 block, 3 console);
/// - `virtio-scratch` checked 66 accesses per device (132);
/// - in `virtio-smp` exactly two requests waited at once (one per vCPU);
/// - the hypervisor injected exactly four aborts for accesses it does not
///   forward (a synchronous external abort each, DFSC 0x10): two for the
///   unaligned load and store ("is no register"), two for the `LDP` and
///   the `STP` (no syndrome: "cannot be emulated"); and it warned once that
///   the client's devices fail when the service went;
/// - both VMs power off with status 0, and QEMU exits 0.
#[test]
fn guest_stub_service_serves_a_guest_stub_client() {
    let devices = "block,console";
    let virtio = |name: &str, device: &str| {
        format!("virtio-{name} {{ compatible = \"hv,virtio-mmio\"; hv,device = \"{device}\"; hv,backend = \"svc\"; }};")
    };
    let client = vm(
        "cl",
        2,
        CLIENT_MIB,
        &format!(
            "hv,console; bootargs = \"stub=only=virtio stub=virtio-devices=2 stub=virtio-types={devices}\";\n            {}\n            {}",
            virtio("disk", "block"),
            virtio("con", "console")
        ),
    );
    let service = vm(
        "svc",
        1,
        64,
        &format!(
            "hv,console; bootargs = \"stub=only=virtio stub=virtio-client=cl stub=virtio-client-mib={CLIENT_MIB} \
             stub=virtio-devices=2 stub=virtio-types={devices}\";"
        ),
    );
    let o = boot_vms("service-stubs", 2, &[service, client], None, Duration::from_secs(180));
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    assert_vm_checks(&o, "cl", &Expected::virtio_client());
    assert_vm_checks(&o, "svc", &Expected::virtio_service());

    // The service's view of its client's RAM is the client's own.
    let client_ram = only_line(&o, "cl", "guest-stub: virtio: client: RAM at ");
    let service_line = only_line(&o, "svc", "guest-stub: virtio: service: 00:10.0: client RAM at ");
    let (base, rest) = service_line.split_once(", ").unwrap_or_else(|| panic!("`{service_line}`\n{dump}"));
    assert_eq!(client_ram, format!("{base}, {CLIENT_MIB} MiB"), "the client's RAM as both see it\n{dump}");
    assert!(rest.starts_with(&format!("{CLIENT_MIB} MiB, 2 devices, BAR2 at 0x")), "`{service_line}`\n{dump}");

    for (index, kind, id) in [(0, "block", 2), (1, "console", 3)] {
        let (seen, seen_id) = client_window(&o, index);
        assert_eq!(
            seen,
            placed_window(&o, kind, index),
            "device {index}: the client's view vs the hypervisor's\n{dump}"
        );
        assert_eq!(seen_id, id, "device {index}'s type\n{dump}");
    }
    assert_eq!(only_line(&o, "cl", "guest-stub: virtio: scratch: "), "132 accesses checked", "{dump}");
    assert_eq!(only_line(&o, "svc", "guest-stub: virtio: smp: "), "at most 2 requests waited at once", "{dump}");
    for unaligned in ["load", "store"] {
        assert_eq!(
            only_line(&o, "cl", &format!("guest-stub: virtio: unaligned {unaligned}: ")),
            "DFSC 0x10",
            "an unaligned {unaligned}: the hypervisor's injected abort\n{dump}"
        );
    }
    let refused = |what: &str| o.lines("el2: WARN: VM cl: virtio device 0").filter(|l| l.contains(what)).count();
    assert_eq!(refused("is no register: data abort injected"), 2, "the unaligned load and store\n{dump}");
    assert_eq!(refused("access cannot be emulated"), 2, "the LDP and the STP\n{dump}");
    assert_eq!(o.lines("el2: WARN: VM cl: virtio device ").count(), 4, "no other access refused\n{dump}");
    let failed = "el2: WARN: VM cl: its virtio devices served by VM svc fail: the service VM is gone";
    assert_eq!(o.console.lines().filter(|l| *l == failed).count(), 1, "`{failed}` once\n{dump}");
    let lines: Vec<&str> = o.console.lines().collect();
    let position = |wanted: &str| lines.iter().position(|l| *l == wanted);
    let svc_off = position("el2: VM svc: SYSTEM_OFF (status 0)");
    let cl_off = position("el2: VM cl: SYSTEM_OFF (status 0)");
    assert!(svc_off.is_some_and(|s| cl_off.is_some_and(|c| s < c)), "the service powers off first\n{dump}");
}
