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

/// One end's portal function as a VM sees it: its end, BAR0, BAR2 and its
/// size in KiB, and its INTID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    end: u32,
    regs: u64,
    shared: u64,
    kib: u64,
    intid: u32,
}

fn hex(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// What VM `vm`'s `portal-enumerate` printed about its one portal
/// function, from `portal: 00:10.0: portal 0 end E, registers at 0x...,
/// N KiB shared at 0x..., INTID n`.
fn found(o: &Outcome, vm: &str) -> Seen {
    let text = o.vm(vm);
    let lines: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("guest-stub: portal: 00:10.0: ")).collect();
    let [line] = lines.as_slice() else { panic!("{vm}: one line about its portal function expected\n{}", o.dump()) };
    let parse = || -> Option<Seen> {
        let (end, rest) = line.strip_prefix("portal 0 end ")?.split_once(", registers at ")?;
        let (regs, rest) = rest.split_once(", ")?;
        let (kib, rest) = rest.split_once(" KiB shared at ")?;
        let (shared, intid) = rest.split_once(", INTID ")?;
        Some(Seen {
            end: end.parse().ok()?,
            regs: hex(regs)?,
            shared: hex(shared)?,
            kib: kib.parse().ok()?,
            intid: intid.parse().ok()?,
        })
    };
    parse().unwrap_or_else(|| panic!("{vm}: `{line}` does not parse\n{}", o.dump()))
}

/// Where the hypervisor says it put VM `vm`'s end of portal `portal`:
/// `el2: VM pa: portal ab (end 0): PCI 00:10.0, registers at IPA 0x...,
/// shared memory at IPA [0x..., 0x...), INTID n` (`docs/portals.md`).
fn placed(o: &Outcome, vm: &str, portal: &str) -> Seen {
    let who = format!("el2: VM {vm}: portal {portal} (end ");
    let line = o.console.lines().find_map(|l| l.strip_prefix(who.as_str()));
    let line = line.unwrap_or_else(|| panic!("no `{who}` line\n{}", o.dump()));
    let parse = || -> Option<Seen> {
        let (end, rest) = line.split_once("): PCI 00:10.0, registers at IPA ")?;
        let (regs, rest) = rest.split_once(", shared memory at IPA [")?;
        let (start, rest) = rest.split_once(", ")?;
        let (stop, intid) = rest.split_once("), INTID ")?;
        let (shared, stop) = (hex(start)?, hex(stop)?);
        let kib = stop.checked_sub(shared)? / 1024;
        Some(Seen { end: end.parse().ok()?, regs: hex(regs)?, shared, kib, intid: intid.parse().ok()? })
    };
    parse().unwrap_or_else(|| panic!("`{line}` does not parse\n{}", o.dump()))
}

/// The physical range of portal `portal`'s memory, from `el2: portal ab:
/// VMs pa and pb, 64 KiB shared at [0x..., 0x...), operations ...`.
fn memory(o: &Outcome, portal: &str) -> (u64, u64) {
    let who = format!("el2: portal {portal}: VMs ");
    let line = o.console.lines().find_map(|l| l.strip_prefix(who.as_str()));
    let line = line.unwrap_or_else(|| panic!("no `{who}` line\n{}", o.dump()));
    let parse = || {
        Some((
            hex(line.split_once(" shared at [")?.1.split_once(", ")?.0)?,
            hex(line.split_once(", ")?.1.split_once(')')?.0.rsplit_once(", ")?.1)?,
        ))
    };
    parse().unwrap_or_else(|| panic!("`{line}` does not parse\n{}", o.dump()))
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

    // Each end found its end of the portal where the hypervisor says it put
    // it, with the memory hv,size says; the VM that is no end has the first
    // and last word of that memory among its holes (as every other VM's
    // RAM).
    for (vm, end) in [("pa", 0), ("pb", 1)] {
        let seen = found(&o, vm);
        assert_eq!(
            seen,
            placed(&o, vm, "ab"),
            "{vm}: the stub's view of its portal function vs. the hypervisor's\n{dump}"
        );
        assert_eq!((seen.end, seen.kib), (end, SIZE_KIB), "{vm} must be end {end} with {SIZE_KIB} KiB\n{dump}");
    }
    let (start, stop) = memory(&o, "ab");
    assert_eq!(stop - start, SIZE_KIB * 1024, "the portal's memory\n{dump}");
    let holes = probe_holes(&o, "pc");
    for word in [start, stop - 8] {
        assert!(
            holes.contains(&word),
            "pc's probe holes {holes:#x?} lack the portal memory's word at {word:#x}\n{dump}"
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

/// The PCI checks beside portal functions (`stub=only=pci`): VM `shim`
/// owns the PL031 and is end 0 of a portal, so its host bridge has the
/// shim at 00:00.0 and the portal function at 00:10.0, and every `pci-*`
/// check must pass (`pci-enumerate` leaves the portal function to
/// `portal-enumerate`); VM `bare` is end 1 and has a bridge with only its
/// portal function, so every `pci-*` check must report itself skipped,
/// saying why, instead of failing.
#[test]
fn pci_checks_beside_portal_functions() {
    let vms = [
        vm(
            "shim",
            1,
            64,
            "hv,console; hv,cpu-affinity = <0>; hv,devices = \"/pl031@9010000\"; bootargs = \"stub=only=pci\";",
        ),
        vm("bare", 1, 64, "hv,console; hv,cpu-affinity = <1>; bootargs = \"stub=only=pci\";"),
        "        portal-sb { compatible = \"hv,portal\"; hv,name = \"sb\"; hv,ends = \"shim\", \"bare\"; hv,size = <4>; hv,ops-0 = <0>; };"
            .to_string(),
    ];
    let o = boot_vms("portals-pci", 2, &vms, None, Duration::from_secs(120));
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    assert_vm_checks(&o, "shim", &Expected::only("pci"));
    assert_vm_checks(&o, "bare", &Expected::only("pci").without_pci());
    let why = "guest-stub: SKIP pci-enumerate: this VM's PCI host bridge has no shim function at 00:00.0 (only portal functions)";
    assert!(o.vm("bare").lines().any(|l| l == why), "bare: missing `{why}`\n{dump}");
    // Nothing was requested: both ends' counters are 0.
    for (end, name) in [(0, "shim"), (1, "bare")] {
        assert_eq!(counters(&o, "sb", end, name).0, Counters::default(), "end {end} ({name})\n{dump}");
    }
}
