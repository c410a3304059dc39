//! Portals between VMs (`docs/portals.md`): two guest-stub VMs at the two
//! ends of a portal drive its PCI function against each other
//! (`guest-stub/src/portal.rs`), a third VM must not see it, and the
//! hypervisor's power-off summary must count exactly what the ends did
//! (`platform::portal::Counters`).

#[path = "portals/linux.rs"]
mod linux;

use hvtests::scenario::*;
use hvtests::selftest::Expected;
use hvtests::vms::*;
use platform::portal::{Counters, REPORT_PREFIX};
use std::time::Duration;

/// The ping-pong's rounds (`stub=portal-rounds=`; the stub's default).
const ROUNDS: u32 = 100;

/// Shared memory of the portal, in KiB (`hv,size`).
const SIZE_KIB: u64 = 64;

/// The hypervisor's counters of end `end` (VM `vm`) of portal `portal`,
/// from the one line of the power-off summary that has them, and where
/// that line is in the console.
fn counters(o: &Outcome, portal: &str, end: u32, vm: &str) -> (Counters, usize) {
    let who = format!("el2: {REPORT_PREFIX}{portal} end {end} ({vm}): ");
    let found: Vec<(usize, &str)> =
        o.console.lines().enumerate().filter_map(|(i, l)| Some((i, l.strip_prefix(who.as_str())?))).collect();
    let [(index, line)] = found.as_slice() else {
        panic!("exactly one `{who}` line expected, found {}\n{}", found.len(), o.dump())
    };
    let parsed = Counters::parse(line).unwrap_or_else(|| panic!("`{line}` does not parse\n{}", o.dump()));
    (parsed, *index)
}

/// What VM `vm`'s `portal-enumerate` printed about its one portal
/// function: `(end, KiB shared, shared memory address)`, from
/// `portal: 00:10.0: portal 0 end E, registers at 0x..., N KiB shared at
/// 0x..., INTID n`.
fn found(o: &Outcome, vm: &str) -> (u32, u64, u64) {
    let text = o.vm(vm);
    let lines: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("guest-stub: portal: 00:10.0: ")).collect();
    let [line] = lines.as_slice() else { panic!("{vm}: one line about its portal function expected\n{}", o.dump()) };
    let parse = || -> Option<(u32, u64, u64)> {
        let end = line.split_once(" end ")?.1.split_once(',')?.0.parse().ok()?;
        let (kib, rest) = line.split_once(", registers at ")?.1.split_once(", ")?.1.split_once(" KiB shared at ")?;
        let address = rest.split_once(',')?.0.strip_prefix("0x")?;
        Some((end, kib.parse().ok()?, u64::from_str_radix(address, 16).ok()?))
    };
    parse().unwrap_or_else(|| panic!("{vm}: `{line}` does not parse\n{}", o.dump()))
}

/// The addresses VM `vm`'s `portal-isolation` probed (`portal: probe
/// holes: 0x..., ...`).
fn probe_holes(o: &Outcome, vm: &str) -> Vec<u64> {
    let text = o.vm(vm);
    let line = text.lines().find_map(|l| l.strip_prefix("guest-stub: portal: probe holes: "));
    let line = line.unwrap_or_else(|| panic!("{vm}: no probe holes line\n{}", o.dump()));
    line.split(", ")
        .map(|a| a.strip_prefix("0x").and_then(|h| u64::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u64>>>()
        .unwrap_or_else(|| panic!("{vm}: `{line}` does not parse\n{}", o.dump()))
}

/// Three one-vCPU guest-stub VMs, each pinned to a CPU of its own: `pa`
/// and `pb` are the ends of portal `ab` (64 KiB; end 0 may request
/// operations 0 and 1, end 1 only 0), `pc` is no end. `pa` and `pb` run
/// the portal checks against each other (`stub=only=portal
/// stub=portals=1`): all pass, but end 0 skips `portal-peer-down` (it
/// powers off for end 1 to find it off). `pc` (`stub=portals=0`) must find
/// no portal function, and its `portal-isolation` probes every address of
/// its `hv,probe-holes`, among which must be the shared memory both ends
/// see; its other portal checks are skipped. QEMU exits 0.
///
/// The counters are exact. With R = 100 rounds: end 0 sent R (pings) + 1
/// (the shared memory's operation 1) + 1 (done) = 102, refused 30 (the 32
/// operations but its 2 allowed) + 2 (operation 32 and 0xffffffff) = 32,
/// peer down 0, received R (answers) + 1 (the shared memory's answer) + 1
/// (done) = 102; end 1 sent R (answers) + 1 (the shared memory's answer) +
/// 1 (done) = 102 (its request to the peer off is not sent), refused 31 +
/// 2 = 33, peer down 1, received R (pings) + 1 (operation 1) + 1 (done) =
/// 102.
#[test]
fn two_guest_stubs_talk_through_a_portal() {
    let end = |cpu: u32, portals: u32| {
        format!("hv,console; hv,cpu-affinity = <{cpu}>; bootargs = \"stub=only=portal stub=portals={portals}\";")
    };
    let portal = format!(
        "        portal-ab {{ compatible = \"hv,portal\"; hv,name = \"ab\"; hv,ends = \"pa\", \"pb\"; \
         hv,size = <{SIZE_KIB}>; hv,ops-0 = <0 1>; hv,ops-1 = <0>; }};"
    );
    let vms = [vm("pa", 1, 64, &end(0, 1)), vm("pb", 1, 64, &end(1, 1)), vm("pc", 1, 64, &end(2, 0)), portal];
    let o = boot_vms("portals-stubs", 3, &vms, None, Duration::from_secs(180));
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    assert_vm_checks(&o, "pa", &Expected::portal_end(0));
    assert_vm_checks(&o, "pb", &Expected::portal_end(1));
    assert_vm_checks(&o, "pc", &Expected::portal_none());

    // Each end found its end of the portal, with the memory hv,size says;
    // the VM that is no end has that memory among its holes.
    let (a, b) = (found(&o, "pa"), found(&o, "pb"));
    assert_eq!((a.0, a.1), (0, SIZE_KIB), "pa must be end 0 with {SIZE_KIB} KiB\n{dump}");
    assert_eq!((b.0, b.1), (1, SIZE_KIB), "pb must be end 1 with {SIZE_KIB} KiB\n{dump}");
    let holes = probe_holes(&o, "pc");
    for (vm, shared) in [("pa", a.2), ("pb", b.2)] {
        assert!(
            holes.contains(&shared),
            "pc's probe holes {holes:#x?} lack the shared memory {vm} sees at {shared:#x}\n{dump}"
        );
    }
    assert!(!o.vm("pc").contains("portal: 00:"), "pc must see no portal function\n{dump}");

    let r = ROUNDS;
    let (end0, at0) = counters(&o, "ab", 0, "pa");
    let (end1, at1) = counters(&o, "ab", 1, "pb");
    assert_eq!(end0, Counters { sent: r + 2, refused: 32, peer_down: 0, received: r + 2 }, "end 0 (pa)\n{dump}");
    assert_eq!(end1, Counters { sent: r + 2, refused: 33, peer_down: 1, received: r + 2 }, "end 1 (pb)\n{dump}");
    // The summary comes once every VM is off.
    let lines: Vec<&str> = o.console.lines().collect();
    let position = |wanted: &str| lines.iter().position(|l| *l == wanted);
    for vm in ["pa", "pb", "pc"] {
        let off = position(&format!("el2: VM {vm}: SYSTEM_OFF (status 0)"));
        assert!(off.is_some_and(|off| off < at0.min(at1)), "VM {vm} must be off before the portal summary\n{dump}");
    }
}
