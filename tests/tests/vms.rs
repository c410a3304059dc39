//! Several VMs described in the device tree (`docs/vms.md`): each scenario
//! gives QEMU a VM-description DTB (`-fw_cfg name=opt/hv/vms.dtb`) and
//! checks every VM's own report, read from its share of the console.

use hvtests::scenario::*;
use hvtests::selftest::{self, Expected};
use hvtests::vms::*;
use std::time::Duration;

/// Two guest-stub VMs of two vCPUs each on four CPUs run their checks at
/// once, the isolation check among them: every word of the other VM's RAM
/// they probe, and the hypervisor's image, is a hole (an abort, the
/// hypervisor carries on), and their own RAM is intact. VM `a` owns the
/// PL031 and so gets the PCI host bridge; `b` has none. The machine powers
/// off with status 0 once both are off.
#[test]
fn two_guest_stub_vms_run_isolated() {
    let vms = [vm("a", 2, 256, "hv,console; hv,devices = \"/pl031@9010000\";"), vm("b", 2, 256, "hv,console;")];
    let o = boot_vms("vms-two-stubs", 4, &vms, None, TIMEOUT);
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    assert!(o.console.contains("el2: 2 VM(s) described in fw_cfg opt/hv/vms.dtb"), "{dump}");
    assert_vm_passed(&o, "a", &Expected::default_run());
    assert_vm_passed(&o, "b", &Expected::default_run().without_pci());
    // Each VM's `pnmi-watchdog` check asks for one lockup report.
    assert_eq!(o.lines("el2: WARN: watchdog: ").count(), 2, "{dump}");
    assert!(o.console.contains("el2: every VM is off: powering off with status 0"), "{dump}");
    assert!(o.secure.contains("PSCI SYSTEM_OFF, exit status 0"), "{dump}");
}

/// The hostile guest-stub (random hypercalls, system-register and MMIO
/// accesses, at EL1 and EL0) in one VM does not disturb the other, whose
/// checks all pass and whose RAM its isolation check finds intact.
#[test]
fn hostile_vm_beside_a_checked_vm() {
    let vms = [
        vm("hostile", 2, 256, "hv,console; bootargs = \"stub=hostile stub-seed=0x5eed0017\";"),
        vm("checked", 2, 256, "hv,console;"),
    ];
    let o = boot_vms("vms-hostile", 4, &vms, None, TIMEOUT);
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    assert_vm_passed(&o, "hostile", &Expected::hostile_run().without_pci());
    assert_vm_passed(&o, "checked", &Expected::default_run().without_pci());
}

/// With the VMID space narrowed to one VMID (`vmid-bits=1`), three
/// one-vCPU VMs, each alone on its own CPU, run one after the other: each
/// waits for the VMID until the VM holding it is off, then takes it with a
/// TLB purge. A stale translation would show: each VM's isolation check
/// probes the RAM of the others, which the VMID's previous holder had
/// mapped. (Each VM has a CPU of its own so that the holder is never
/// descheduled: a VM with no vCPU on a CPU gives its VMID up, and with
/// shared CPUs how often that happens depends on the timing.)
#[test]
fn vmids_recycled_without_stale_translations() {
    let vms = [
        vm("v1", 1, 128, "hv,console; hv,cpu-affinity = <0>;"),
        vm("v2", 1, 128, "hv,console; hv,cpu-affinity = <1>;"),
        vm("v3", 1, 128, "hv,console; hv,cpu-affinity = <2>;"),
    ];
    let o = boot_vms("vms-vmid-recycling", 3, &vms, Some("vmid-bits=1"), Duration::from_secs(150));
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    assert!(o.console.contains("el2: VMIDs: 1 bits (narrowed by vmid-bits) (1 usable)"), "{dump}");
    for name in ["v1", "v2", "v3"] {
        assert_vm_passed(&o, name, &Expected::default_run().without_pci());
    }
    let recycled = o.lines("el2: VM ").filter(|l| l.contains(": VMID 1 recycled from VM ")).count();
    assert_eq!(recycled, 2, "two VMs must take the VMID from one that is off\n{dump}");
    assert_eq!(o.lines("el2: VM ").filter(|l| l.contains("waits for a VMID")).count(), 2, "{dump}");
}

/// `SYSTEM_RESET` from one VM restarts that VM alone: its vCPUs stop, its
/// RAM is cleared (its second life finds no trace of the first) and its
/// guest loaded again; the other VM runs on meanwhile. The restarted VM
/// then powers off (`stub=reset` resets only a first life) and the machine
/// with it, status 0.
#[test]
fn system_reset_restarts_one_vm() {
    let vms = [vm("again", 2, 256, "hv,console; bootargs = \"stub=reset\";"), vm("steady", 2, 256, "hv,console;")];
    let o = boot_vms("vms-restart", 4, &vms, None, Duration::from_secs(120));
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    assert!(o.console.lines().any(|l| l == "el2: VM again: SYSTEM_RESET: restarting it"), "{dump}");
    assert!(!o.secure.contains("PSCI SYSTEM_RESET"), "the board must not reset\n{dump}");
    let text = o.vm("again");
    let second = text.match_indices("guest-stub: started").nth(1).map(|(at, _)| at);
    let Some(second) = second else { panic!("VM again must start twice\n{dump}") };
    let (first_life, second_life) = text.split_at(second);
    let without_pci = |expected: Expected| expected.without_pci();
    if let Err(problems) = selftest::account(first_life, &without_pci(Expected::default_run())) {
        panic!("VM again, first life:\n  {}\n{dump}", problems.join("\n  "));
    }
    if let Err(problems) = selftest::account(second_life, &without_pci(Expected::restarted_run())) {
        panic!("VM again, after the restart:\n  {}\n{dump}", problems.join("\n  "));
    }
    assert_vm_passed(&o, "steady", &Expected::default_run().without_pci());
    assert!(o.console.lines().any(|l| l == "el2: VM again: SYSTEM_OFF (status 0)"), "{dump}");
}

/// A VM that breaks the hypervisor's rules is stopped, with one line
/// saying why, and the other VM runs on: the guest-stub's `stub=crash` puts
/// its exception vector in a hole and faults, so every abort it is given
/// faults again at the vector. The machine powers off with status 4 (the
/// highest a VM reported) once the other VM is done.
#[test]
fn a_vm_that_cannot_take_exceptions_is_stopped() {
    let vms = [vm("crasher", 1, 128, "hv,console; bootargs = \"stub=crash\";"), vm("steady", 2, 256, "hv,console;")];
    let o = boot_vms("vms-crash", 3, &vms, None, TIMEOUT);
    let dump = o.dump();
    assert_eq!(o.status, Some(4), "the stopped VM's status decides the exit\n{dump}");
    let stopped: Vec<&str> = o.lines("el2: ERROR: VM crasher: stopped with status 4: ").collect();
    assert_eq!(stopped.len(), 1, "one line says why\n{dump}");
    assert!(stopped[0].contains("aborts in a row at its exception vector"), "{dump}");
    assert!(o.vm("crasher").contains("guest-stub: crashing on purpose"), "{dump}");
    assert_vm_passed(&o, "steady", &Expected::default_run().without_pci());
    assert!(o.console.contains("el2: every VM is off: powering off with status 4"), "{dump}");
}

/// Every bad description is refused at boot with one line naming the VM
/// and the property, exit status 2, and no guest started.
#[test]
fn bad_vm_descriptions_refused() {
    let portal = |body: &str| {
        format!("        portal {{\n            compatible = \"hv,portal\";\n            {body}\n        }};")
    };
    let virtio = |device: &str, backend: &str| {
        format!(
            "virtio-d {{ compatible = \"hv,virtio-mmio\"; hv,device = \"{device}\"; hv,backend = \"{backend}\"; }};"
        )
    };
    let cases: [(&str, Vec<String>, &str); 16] = [
        (
            "virtio-backend-names-no-vm",
            vec![vm("svc", 1, 256, ""), vm("cl", 1, 256, &virtio("block", "nope"))],
            "VM \"cl\": virtio device \"virtio-d\": hv,backend \"nope\" names no VM",
        ),
        (
            "virtio-backend-names-itself",
            vec![vm("cl", 1, 256, &virtio("console", "cl"))],
            "VM \"cl\": virtio device \"virtio-d\": hv,backend names the VM itself",
        ),
        (
            "virtio-unknown-device",
            vec![vm("svc", 1, 256, ""), vm("cl", 1, 256, &virtio("net", "svc"))],
            "VM \"cl\": virtio device \"virtio-d\": hv,device must be \"block\" or \"console\"",
        ),
        (
            "portal-unknown-vm",
            vec![vm("a", 1, 256, ""), portal("hv,name = \"ab\"; hv,ends = \"a\", \"b\"; hv,size = <64>;")],
            "portal \"ab\": hv,ends names VM \"b\", which the description does not have",
        ),
        (
            "portal-bad-size",
            vec![vm("a", 1, 256, ""), vm("b", 1, 256, ""), portal("hv,name = \"ab\"; hv,ends = \"a\", \"b\"; hv,size = <6>;")],
            "portal \"ab\": hv,size = 6 KiB, but must be a power of two from 4 KiB to 16384 KiB",
        ),
        (
            "portal-declared-twice",
            vec![
                vm("a", 1, 256, ""),
                vm("b", 1, 256, ""),
                portal("hv,name = \"ab\"; hv,ends = \"a\", \"b\"; hv,size = <64>;"),
                portal("hv,name = \"ab\"; hv,ends = \"b\", \"a\"; hv,size = <4>;").replace("portal {", "portal-again {"),
            ],
            "portal \"ab\": declared twice (hv,name is taken)",
        ),
        (
            // 2 GiB of machine leave a little over 2024 MiB of guest RAM
            // (2026 MiB today; it moves with the hypervisor's image): the
            // VMs take all but a few MiB of it, less than the portal's 16.
            "portal-memory-does-not-fit",
            vec![
                vm("a", 1, 1012, ""),
                vm("b", 1, 1012, ""),
                portal("hv,name = \"big\"; hv,ends = \"a\", \"b\"; hv,size = <16384>;"),
            ],
            "portal \"big\": hv,size = 16384 KiB does not fit in the",
        ),
        ("too-many-vcpus", vec![vm("big", 17, 256, "")], "VM \"big\": cpus = 17, but a VM has at most 16 vCPUs"),
        (
            "affinity-out-of-range",
            vec![vm("a", 2, 256, "hv,cpu-affinity = <0 1>;"), vm("far", 1, 256, "hv,cpu-affinity = <1 7>;")],
            "VM \"far\": hv,cpu-affinity names CPU 7, but the machine has 4 CPUs (0 to 3)",
        ),
        (
            "time-slice-too-short",
            vec![vm("quick", 1, 256, "hv,time-slice-us = <10>;")],
            "VM \"quick\": hv,time-slice-us = 10, but must be 1000 to 100000",
        ),
        (
            "memory-does-not-fit",
            vec![vm("huge", 1, 4096, "")],
            "VM \"huge\": memory 4194304 KiB does not fit",
        ),
        (
            "missing-fw-cfg-file",
            vec![vm("lost", 1, 256, "hv,kernel = \"opt/hv/lost/kernel\";")],
            "VM \"lost\": fw_cfg file `opt/hv/lost/kernel` not found",
        ),
        (
            "device-given-twice",
            vec![vm("a", 1, 256, "hv,devices = \"/pl031@9010000\";"), vm("b", 1, 256, "hv,devices = \"/pl031@9010000\";")],
            "VM \"b\": hv,devices entry \"/pl031@9010000\" is also given to VM \"a\"",
        ),
        (
            "duplicate-names",
            vec![vm("twin", 1, 256, ""), vm("twin", 1, 256, "").replace("vm-twin", "vm-twin2")],
            "hv,name is given to two nodes",
        ),
        (
            "malformed-node",
            vec!["        vm-x {\n            compatible = \"hv,vm\";\n            hv,name = \"x\";\n            memory = <0 262144>;\n        };".to_string()],
            "VM \"x\": cpus is missing, but required",
        ),
        ("unknown-property", vec![vm("typo", 1, 256, "hv,consle;")], "which the VM binding does not know"),
    ];
    for (name, vms, message) in cases {
        let o = boot_vms(&format!("vms-bad-{name}"), 4, &vms, None, REFUSAL_DEADLINE);
        let dump = o.dump();
        assert_eq!(o.status, Some(EXIT_HYPERVISOR_FATAL), "{name}: exit status\n{dump}");
        let errors: Vec<&str> = o.lines("el2: ERROR: ").collect();
        assert_eq!(errors.len(), 1, "{name}: one line says why\n{dump}");
        assert!(errors[0].contains(message), "{name}: the line must say `{message}`\n{dump}");
        assert!(!o.console.contains("guest-stub: started"), "{name}: no guest may run\n{dump}");
    }
}

/// Two unmodified Linux VMs of two vCPUs each (`-smp 4 -m 2G`) from the
/// same fw_cfg kernel and initramfs: both reach userspace with `nproc` 2
/// and ticking timers on both vCPUs, each on its own prefixed console;
/// `linux-a` powers off while `linux-b` keeps working, then `linux-b`
/// powers off and QEMU exits 0.
#[test]
fn two_linux_vms() {
    let Some((image, initrd)) = linux_guest() else {
        eprintln!("SKIPPED two_linux_vms: the Linux guest is not in build/linux (make linux-guest)");
        return;
    };
    let dtb = vms_dtb("vms-linux", &[linux_vm("linux-a", 2, 0, ""), linux_vm("linux-b", 2, 8, "")].join("\n"));
    let fw_cfg = format!("name=opt/hv/vms.dtb,file={}", dtb.display());
    let files = linux_fw_cfg(&(image, initrd));
    let mut extra = vec!["-fw_cfg", fw_cfg.as_str()];
    extra.extend(files.iter().map(String::as_str));
    let o =
        boot(&Boot { extra: &extra, timeout: Duration::from_secs(240), ..Boot::new("vms-linux", CPU_MAX, 4, "2G") });
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0 once both VMs are off\n{dump}");
    for name in ["linux-a", "linux-b"] {
        assert_linux_vm_healthy(&o, name, 2);
    }
    // linux-b works on after linux-a is off.
    let lines: Vec<&str> = o.console.lines().collect();
    let a_off = lines.iter().position(|l| *l == "el2: VM linux-a: SYSTEM_OFF (status 0)");
    let b_off = lines.iter().position(|l| *l == "el2: VM linux-b: SYSTEM_OFF (status 0)");
    let (Some(a_off), Some(b_off)) = (a_off, b_off) else { panic!("both VMs must power off\n{dump}") };
    assert!(a_off < b_off, "linux-a powers off first\n{dump}");
    let working_after = lines[a_off..b_off].iter().filter(|l| l.starts_with("linux-b| linux-guest: working ")).count();
    assert!(working_after > 0, "linux-b must keep working after linux-a is off\n{dump}");
    assert!(o.console.contains("el2: every VM is off: powering off with status 0"), "{dump}");
    assert!(!o.console.contains("el2: WARN: guest trap"), "a trap the hypervisor did not handle\n{dump}");
}

/// The shared console's input: what is typed goes to the VM in focus, and
/// `Ctrl-\\` then a VM's number moves the focus. Typed once both shells
/// show their prompt: `linux-a` gets an `echo` and, after the focus went to
/// `linux-b` and back, a `poweroff -f`; `linux-b` an `echo` and a
/// `poweroff -f`.
#[test]
fn typed_input_goes_to_the_vm_in_focus() {
    let Some((image, initrd)) = linux_guest() else {
        eprintln!(
            "SKIPPED typed_input_goes_to_the_vm_in_focus: the Linux guest is not in build/linux (make linux-guest)"
        );
        return;
    };
    let shell = |name: &str| {
        vm(
            name,
            2,
            512,
            "hv,console; hv,kernel = \"opt/hv/linux/kernel\"; hv,initrd = \"opt/hv/linux/initrd\"; bootargs = \"console=ttyAMA0\";",
        )
    };
    let dtb = vms_dtb("vms-typed", &[shell("linux-a"), shell("linux-b")].join("\n"));
    let files = [
        format!("name=opt/hv/vms.dtb,file={}", dtb.display()),
        format!("name=opt/hv/linux/kernel,file={}", image.display()),
        format!("name=opt/hv/linux/initrd,file={}", initrd.display()),
    ];
    let extra: Vec<&str> = files.iter().flat_map(|f| ["-fw_cfg", f.as_str()]).collect();
    let typed = b"echo typed-to-a\r\x1c2echo typed-to-b\rpoweroff -f\r\x1c1poweroff -f\r";
    let o = boot(&Boot {
        extra: &extra,
        typed: Some((&["linux-a| / # ", "linux-b| / # "], typed)),
        timeout: Duration::from_secs(240),
        ..Boot::new("vms-typed", CPU_MAX, 4, "2G")
    });
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "both shells must power off\n{dump}");
    let (a, b) = (o.vm("linux-a"), o.vm("linux-b"));
    assert!(a.lines().any(|l| l == "typed-to-a"), "linux-a ran its echo\n{dump}");
    assert!(b.lines().any(|l| l == "typed-to-b"), "linux-b ran its echo\n{dump}");
    assert!(!a.contains("typed-to-b") && !b.contains("typed-to-a"), "each VM got only its own input\n{dump}");
    assert!(o.console.lines().any(|l| l == "el2: console input goes to VM linux-b"), "{dump}");
    assert!(o.console.contains("el2: every VM is off: powering off with status 0"), "{dump}");
}
