//! Host tests for the VM descriptions: DTBs built here by a small FDT
//! writer (so each test shows the tree it parses), every error with its
//! exact message, the CPU sets, and hostile input that must not panic.

use super::*;
use proptest::prelude::*;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// QEMU's `virt` tree (4 CPUs, 1 GiB): the host tree for `hv,devices`.
const HOST: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/virt-gicv3-smp4-1g.dtb"));

// ---------------------------------------------------------------------------
// A minimal FDT writer

/// A node to write: properties in order (duplicates allowed, unlike dtc),
/// then children.
#[derive(Clone, Debug)]
struct N {
    name: String,
    props: Vec<(String, Vec<u8>)>,
    children: Vec<N>,
}

fn n(name: &str) -> N {
    N { name: name.into(), props: Vec::new(), children: Vec::new() }
}

impl N {
    fn p(mut self, name: &str, value: impl Into<Vec<u8>>) -> N {
        self.props.push((name.into(), value.into()));
        self
    }

    fn c(mut self, child: N) -> N {
        self.children.push(child);
        self
    }

    /// Removes every property `name`.
    fn without(mut self, name: &str) -> N {
        self.props.retain(|(p, _)| p != name);
        self
    }

    /// Replaces (or adds) property `name`.
    fn set(self, name: &str, value: impl Into<Vec<u8>>) -> N {
        self.without(name).p(name, value)
    }
}

/// A string property value.
fn s(text: &str) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.push(0);
    v
}

/// A string-list property value.
fn sl(texts: &[&str]) -> Vec<u8> {
    texts.iter().flat_map(|t| s(t)).collect()
}

/// A cell-array property value.
fn c(cells: &[u32]) -> Vec<u8> {
    cells.iter().flat_map(|c| c.to_be_bytes()).collect()
}

/// An empty (flag) property value.
fn flag() -> Vec<u8> {
    Vec::new()
}

/// Writes `root` as a version-17 DTB: header, an empty memory reservation
/// block, the structure block, the strings block.
fn fdt(root: &N) -> Vec<u8> {
    fn walk(node: &N, structs: &mut Vec<u8>, strings: &mut Vec<u8>) {
        let pad = |v: &mut Vec<u8>| v.resize(v.len().next_multiple_of(4), 0);
        structs.extend(1u32.to_be_bytes());
        structs.extend(node.name.as_bytes());
        structs.push(0);
        pad(structs);
        for (name, value) in &node.props {
            let mut key = name.as_bytes().to_vec();
            key.push(0);
            let off = match strings.windows(key.len()).position(|w| w == key.as_slice()) {
                Some(off) => off,
                None => {
                    strings.extend(&key);
                    strings.len() - key.len()
                }
            };
            structs.extend(3u32.to_be_bytes());
            structs.extend((value.len() as u32).to_be_bytes());
            structs.extend((off as u32).to_be_bytes());
            structs.extend(value);
            pad(structs);
        }
        for child in &node.children {
            walk(child, structs, strings);
        }
        structs.extend(2u32.to_be_bytes());
    }
    let (mut structs, mut strings) = (Vec::new(), Vec::new());
    walk(root, &mut structs, &mut strings);
    structs.extend(9u32.to_be_bytes());
    let off_rsvmap = 40u32;
    let off_struct = off_rsvmap + 16;
    let off_strings = off_struct + structs.len() as u32;
    let total = off_strings + strings.len() as u32;
    let header = [
        0xd00d_feed,
        total,
        off_struct,
        off_strings,
        off_rsvmap,
        17,
        16,
        0,
        strings.len() as u32,
        structs.len() as u32,
    ];
    let mut out: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
    out.extend([0u8; 16]);
    out.extend(structs);
    out.extend(strings);
    out
}

/// A VM node with the required properties.
fn vm(node: &str, name: &str, cpus: u32, memory_kib: u32) -> N {
    n(node).p("compatible", s("hv,vm")).p("hv,name", s(name)).p("cpus", c(&[cpus])).p("memory", c(&[memory_kib]))
}

/// A tree whose `/chosen` holds `vms`.
fn tree(vms: Vec<N>) -> Vec<u8> {
    let mut chosen = n("chosen").p("bootargs", s("console=ttyAMA0"));
    for v in vms {
        chosen = chosen.c(v);
    }
    fdt(&n("").p("#address-cells", c(&[2])).p("#size-cells", c(&[2])).c(chosen))
}

fn ok(bytes: &[u8]) -> VmDescs<'_> {
    match parse(bytes) {
        Ok(v) => v,
        Err(e) => panic!("parse failed: {e}"),
    }
}

/// The parse error for one VM node `v`, with its message.
fn err_of(v: N) -> String {
    let bytes = tree(vec![v]);
    match parse(&bytes) {
        Ok(v) => panic!("parsed: {v:?}"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "{text}");
            text
        }
    }
}

fn set(cpus: &[u32]) -> CpuSet {
    let mut l = CpuSet::new();
    for &c in cpus {
        l.push(c).unwrap();
    }
    l
}

fn placement(sets: &[&[u32]]) -> Placement {
    let mut p = Placement::new();
    for s in sets {
        p.push(set(s)).unwrap();
    }
    p
}

// ---------------------------------------------------------------------------
// Good descriptions

/// Two VMs using every property: a Linux guest from fw_cfg and a
/// guest-stub VM, and a third with its images in memory.
fn full() -> Vec<u8> {
    let a = vm("vm@0", "linux-a", 2, 512 * 1024)
        .p("#address-cells", c(&[1]))
        .p("#size-cells", c(&[1]))
        .p("hv,cpu-affinity", c(&[3, 2]))
        .p("bootargs", s("console=ttyAMA0 earlycon"))
        .p("hv,console", flag())
        .p("hv,kernel", s("opt/hv/a/kernel"))
        .p("hv,initrd", s("opt/hv/a/initrd"))
        .p("hv,devices", sl(&["/pl031@9010000", "/pl061@9030000"]))
        .p("hv,spis", c(&[34, 39]))
        .p("hv,autostart", c(&[1]))
        .p("hv,manager", flag())
        .p("hv,weight", c(&[512]))
        .p("hv,latency-sensitive", flag())
        .p("hv,time-slice-us", c(&[2500]))
        .p("phandle", c(&[7]));
    let b = vm("stub", "stub_1", 1, 0)
        .set("memory", c(&[0, 64 * 1024]))
        .p("bootargs", s("stub=only=virq"))
        .p("hv,autostart", c(&[0]))
        .p("hv,weight", c(&[1]));
    tree(vec![a, b])
}

#[test]
fn full_description() {
    let bytes = full();
    let vms = ok(&bytes);
    assert_eq!(vms.len(), 2);
    let mut devices = List::new();
    devices.push("/pl031@9010000").unwrap();
    devices.push("/pl061@9030000").unwrap();
    let mut spis = List::new();
    spis.push(34).unwrap();
    spis.push(39).unwrap();
    assert_eq!(
        vms[0],
        VmDesc {
            name: "linux-a",
            node: "vm@0",
            cpus: 2,
            affinity: Some(set(&[3, 2])),
            memory_bytes: 512 * MIB,
            bootargs: "console=ttyAMA0 earlycon",
            console: true,
            kernel: Image::FwCfg("opt/hv/a/kernel"),
            initrd: Some(Image::FwCfg("opt/hv/a/initrd")),
            devices,
            spis,
            autostart: true,
            manager: true,
            weight: 512,
            latency_sensitive: true,
            time_slice_us: 2500,
            virtio: List::new(),
            integrity: None,
        }
    );
    assert_eq!(vms[0].memory_kib(), 512 * 1024);
    assert_eq!(
        vms[1],
        VmDesc {
            name: "stub_1",
            node: "stub",
            cpus: 1,
            affinity: None,
            memory_bytes: 64 * MIB,
            bootargs: "stub=only=virq",
            console: false,
            kernel: Image::GuestStub,
            initrd: None,
            devices: List::new(),
            spis: List::new(),
            autostart: false,
            manager: false,
            weight: 1,
            latency_sensitive: false,
            time_slice_us: DEFAULT_TIME_SLICE_US,
            virtio: List::new(),
            integrity: None,
        }
    );
    assert_eq!(vms.by_name("stub_1"), Some(&vms[1]));
    assert_eq!(vms.by_name("stub"), None);
    // The affinity VM may run on CPUs 2 and 3 (in ascending order); the
    // other, without one, on every CPU.
    assert_eq!(vms.validate(4, GIB, Some(HOST)), Ok(placement(&[&[2, 3], &[0, 1, 2, 3]])));
    assert_eq!(vms.placement(4), Ok(placement(&[&[2, 3], &[0, 1, 2, 3]])));
}

#[test]
fn defaults() {
    let bytes = tree(vec![vm("linux-a", "a", 1, 2048)]);
    let vms = ok(&bytes);
    assert_eq!(
        vms[0],
        VmDesc {
            name: "a",
            node: "linux-a",
            cpus: 1,
            affinity: None,
            memory_bytes: 2 * MIB,
            bootargs: "",
            console: false,
            kernel: Image::GuestStub,
            initrd: None,
            devices: List::new(),
            spis: List::new(),
            autostart: true,
            manager: false,
            weight: DEFAULT_WEIGHT,
            latency_sensitive: false,
            time_slice_us: DEFAULT_TIME_SLICE_US,
            virtio: List::new(),
            integrity: None,
        }
    );
    assert_eq!(DEFAULT_WEIGHT, 256);
    assert_eq!(DEFAULT_TIME_SLICE_US, 10_000);
    assert_eq!(vms.validate(1, 2 * MIB, None), Ok(placement(&[&[0]])));
    assert_eq!(vms.validate(4, 2 * MIB, None), Ok(placement(&[&[0, 1, 2, 3]])));
}

#[test]
fn no_vms() {
    // No /chosen at all.
    let bytes = fdt(&n("").p("#address-cells", c(&[2])).c(n("memory@0")));
    assert!(ok(&bytes).is_empty());
    // A /chosen with other nodes: a Xen dom0 module, a node with another
    // compatible, one without any.
    let module =
        n("module@0").p("compatible", sl(&["multiboot,kernel", "multiboot,module"])).p("reg", c(&[0, 1, 0, 2]));
    let other = n("thing").p("compatible", s("hv,vm-not")).p("hv,whatever", flag());
    let bytes = tree(vec![module, other, n("empty")]);
    let vms = ok(&bytes);
    assert!(vms.is_empty());
    assert_eq!(vms.validate(1, 0, Some(HOST)), Ok(Placement::new()));
    // `hv,vm` as the second string of a compatible list counts.
    let bytes = tree(vec![vm("x", "x", 1, 2048).set("compatible", sl(&["vendor,thing", "hv,vm"]))]);
    assert_eq!(ok(&bytes).len(), 1);
}

#[test]
fn memory_in_one_or_two_cells() {
    for (value, bytes) in [
        (c(&[2048]), 2 * MIB),
        (c(&[0, 2048]), 2 * MIB),
        (c(&[1, 0]), 4 * 1024 * GIB),
        (c(&[0x003f_ffff, 0xffff_f800]), u64::MAX - 2 * MIB + 1),
    ] {
        let d = tree(vec![vm("v", "v", 1, 0).set("memory", value.clone())]);
        assert_eq!(ok(&d)[0].memory_bytes, bytes, "{value:x?}");
    }
}

#[test]
fn largest_lists_and_names() {
    let spis: Vec<u32> = (32..32 + MAX_VM_SPIS as u32).collect();
    let devices: Vec<String> = (0..MAX_VM_DEVICES).map(|i| format!("/dev@{i}")).collect();
    let devices: Vec<&str> = devices.iter().map(String::as_str).collect();
    let affinity: Vec<u32> = (0..MAX_CPUS as u32).rev().collect();
    let file = "f".repeat(FW_CFG_NAME_MAX);
    let v = vm("v", "abcdefghijklm-_", 16, 2048)
        .p("hv,spis", c(&spis))
        .p("hv,devices", sl(&devices))
        .p("hv,cpu-affinity", c(&affinity))
        .p("hv,kernel", s(&file));
    let d = tree(vec![v]);
    let vms = ok(&d);
    assert_eq!(vms[0].spis.len(), MAX_VM_SPIS);
    assert_eq!(vms[0].devices.len(), MAX_VM_DEVICES);
    assert_eq!(vms[0].kernel, Image::FwCfg(&file));
    assert_eq!(vms[0].name.len(), VM_NAME_MAX);
    let all: Vec<u32> = (0..MAX_CPUS as u32).collect();
    assert_eq!(vms.placement(16), Ok(placement(&[&all])));
    // Empty string lists and cell lists are empty lists.
    let d = tree(vec![vm("v", "v", 1, 2048).p("hv,devices", flag()).p("hv,spis", flag())]);
    let vms = ok(&d);
    assert!(vms[0].devices.is_empty() && vms[0].spis.is_empty());
    // SPI range ends.
    let d = tree(vec![vm("v", "v", 1, 2048).p("hv,spis", c(&[32, 1019]))]);
    assert_eq!(ok(&d)[0].spis.as_slice(), &[32, 1019]);
}

#[test]
fn multiboot_modules() {
    // Cells from the VM node: 1 and 1.
    let kernel = n("module@40400000")
        .p("compatible", sl(&["multiboot,kernel", "multiboot,module"]))
        .p("reg", c(&[0x4040_0000, 0x80_0000]));
    let ramdisk = n("initrd").p("compatible", s("multiboot,ramdisk")).p("reg", c(&[0x4800_0000, 0x10_0000]));
    let a = vm("a", "a", 1, 2048)
        .p("#address-cells", c(&[1]))
        .p("#size-cells", c(&[1]))
        .p("bootargs", s("console=hvc0"))
        .c(kernel)
        .c(ramdisk);
    // Default cells (the devicetree's 2 and 1) and a phandle.
    let b_kernel =
        n("k").p("compatible", s("multiboot,kernel")).p("reg", c(&[0x1, 0x0, 0x20_0000])).p("phandle", c(&[3]));
    let b = vm("b", "b", 1, 2048).c(b_kernel);
    // Two cells of size.
    let c_kernel = n("k").p("compatible", s("multiboot,kernel")).p("reg", c(&[0x2, 0x0, 0x1, 0x0]));
    let c_vm = vm("c", "c", 1, 2048).p("#size-cells", c(&[2])).c(c_kernel);
    let d = tree(vec![a, b, c_vm]);
    let vms = ok(&d);
    assert_eq!(vms[0].kernel, Image::Memory(MemRegion::new(0x4040_0000, 0x80_0000)));
    assert_eq!(vms[0].initrd, Some(Image::Memory(MemRegion::new(0x4800_0000, 0x10_0000))));
    assert_eq!(vms[0].bootargs, "console=hvc0");
    assert_eq!(vms[1].kernel, Image::Memory(MemRegion::new(0x1_0000_0000, 0x20_0000)));
    assert_eq!(vms[1].initrd, None);
    assert_eq!(vms[2].kernel, Image::Memory(MemRegion::new(0x2_0000_0000, 0x1_0000_0000)));
    // A fw_cfg kernel with an in-memory initrd is fine too.
    let mixed = vm("m", "m", 1, 2048)
        .p("hv,kernel", s("opt/k"))
        .c(n("r").p("compatible", s("multiboot,ramdisk")).p("reg", c(&[0, 0x1000, 0x1000])));
    let d = tree(vec![mixed]);
    let vms = ok(&d);
    assert_eq!(vms[0].kernel, Image::FwCfg("opt/k"));
    assert_eq!(vms[0].initrd, Some(Image::Memory(MemRegion::new(0x1000, 0x1000))));
}

// ---------------------------------------------------------------------------
// Placement

fn vms_for_placement(specs: &[(&str, u32, Option<&[u32]>)]) -> Vec<u8> {
    let nodes = specs
        .iter()
        .map(|&(name, cpus, affinity)| {
            let v = vm(name, name, cpus, 2048);
            match affinity {
                Some(a) => v.p("hv,cpu-affinity", c(a)),
                None => v,
            }
        })
        .collect();
    tree(nodes)
}

#[test]
fn placement_default_is_every_cpu() {
    let d = vms_for_placement(&[("a", 2, None), ("b", 1, None), ("c", 3, None)]);
    let all8: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7];
    assert_eq!(ok(&d).placement(8), Ok(placement(&[all8, all8, all8])));
    assert_eq!(ok(&d).placement(2), Ok(placement(&[&[0, 1], &[0, 1], &[0, 1]])));
    // A VM that is not started at boot has its set too.
    let d = tree(vec![vm("a", "a", 1, 2048).p("hv,autostart", c(&[0])), vm("b", "b", 1, 2048)]);
    assert_eq!(ok(&d).placement(2), Ok(placement(&[&[0, 1], &[0, 1]])));
}

#[test]
fn placement_shares_cpus() {
    // Affinities may overlap each other and the default; each set comes in
    // ascending order, whatever the description's order.
    let d =
        vms_for_placement(&[("a", 2, Some(&[2, 0])), ("b", 4, None), ("c", 3, Some(&[3, 2, 1])), ("d", 1, Some(&[2]))]);
    let vms = ok(&d);
    assert_eq!(vms[0].affinity, Some(set(&[2, 0])));
    assert_eq!(vms.placement(4), Ok(placement(&[&[0, 2], &[0, 1, 2, 3], &[1, 2, 3], &[2]])));
    assert_eq!(vms.validate(4, GIB, Some(HOST)), Ok(placement(&[&[0, 2], &[0, 1, 2, 3], &[1, 2, 3], &[2]])));
    // Two VMs with the very same affinity.
    let d = vms_for_placement(&[("a", 2, Some(&[1])), ("b", 2, Some(&[1]))]);
    assert_eq!(ok(&d).validate(2, GIB, None), Ok(placement(&[&[1], &[1]])));
}

#[test]
fn more_vcpus_than_cpus() {
    // More vCPUs than the machine has CPUs, and than the affinity names.
    let d = vms_for_placement(&[("a", 16, None), ("b", 5, Some(&[1, 3])), ("c", 3, Some(&[0]))]);
    let vms = ok(&d);
    assert_eq!(vms[0].cpus, 16);
    assert_eq!(vms.validate(4, GIB, None), Ok(placement(&[&[0, 1, 2, 3], &[1, 3], &[0]])));
    assert_eq!(
        vms.validate(1, GIB, None).unwrap_err().to_string(),
        "VM \"b\": hv,cpu-affinity names CPU 1, but the machine has 1 CPU (0 to 0)"
    );
    // Eight VMs of 4 vCPUs each on one CPU: as many as one run queue holds.
    let nodes: Vec<N> = (0..MAX_VMS).map(|i| vm(&format!("vm@{i}"), &format!("v{i}"), 4, 2048)).collect();
    let d = tree(nodes);
    let p = ok(&d).validate(1, GIB, Some(HOST)).unwrap();
    assert_eq!(p.len(), MAX_VMS);
    assert!(p.iter().all(|s| s.as_slice() == [0]));
}

#[test]
fn placement_limits() {
    // More CPUs than a Board holds count as MAX_CPUS.
    let d = vms_for_placement(&[("a", 16, None)]);
    let all: Vec<u32> = (0..16).collect();
    assert_eq!(ok(&d).placement(1000), Ok(placement(&[&all])));
    assert_eq!(ok(&d).placement(usize::MAX), Ok(placement(&[&all])));
    let d = vms_for_placement(&[("a", 1, Some(&[u32::MAX]))]);
    assert!(matches!(ok(&d).placement(16), Err(VmError::AffinityOutOfRange { cpu: u32::MAX, cpu_count: 16, .. })));
    let d = vms_for_placement(&[("a", 1, Some(&[15, 16]))]);
    assert!(matches!(ok(&d).placement(1000), Err(VmError::AffinityOutOfRange { cpu: 16, cpu_count: 16, .. })));
    // A machine has at least the CPU running this: 0 counts as 1, and no
    // set is empty.
    let d = vms_for_placement(&[("a", 1, None), ("b", 2, Some(&[0]))]);
    assert_eq!(ok(&d).placement(0), Ok(placement(&[&[0], &[0]])));
    let d = vms_for_placement(&[("a", 1, Some(&[1]))]);
    assert_eq!(
        ok(&d).placement(0).unwrap_err().to_string(),
        "VM \"a\": hv,cpu-affinity names CPU 1, but the machine has 1 CPU (0 to 0)"
    );
}

// ---------------------------------------------------------------------------
// Errors, each with its message

#[test]
fn error_dtb() {
    let e = parse(b"not a device tree at all, just bytes").unwrap_err();
    assert_eq!(e, VmError::Dtb(BoardError::BadMagic { found: 0x6e6f_7420 }));
    assert_eq!(e.vm(), None);
    assert_eq!(e.to_string(), "VM descriptions: not a flattened device tree: magic is 0x6e6f7420, expected 0xd00dfeed");
    assert!(matches!(parse(&[]), Err(VmError::Dtb(BoardError::Truncated { .. }))));
}

#[test]
fn error_host_dtb() {
    let d = tree(vec![vm("a", "a", 1, 2048)]);
    let e = ok(&d).validate(1, GIB, Some(&[0; 8])).unwrap_err();
    assert_eq!(e, VmError::HostDtb(BoardError::BadMagic { found: 0 }));
    assert_eq!(
        e.to_string(),
        "host device tree (for hv,devices): not a flattened device tree: magic is 0x00000000, expected 0xd00dfeed"
    );
}

#[test]
fn error_too_many_vms() {
    let nodes: Vec<N> = (0..=MAX_VMS).map(|i| vm(&format!("vm@{i}"), &format!("v{i}"), 1, 2048)).collect();
    let d = tree(nodes.clone());
    let e = parse(&d).unwrap_err();
    assert_eq!(e, VmError::TooManyVms { vm: "vm@8" });
    assert_eq!(e.to_string(), "VM \"vm@8\": more than 8 VM nodes in /chosen, the most this firmware holds");
    let d = tree(nodes[..MAX_VMS].to_vec());
    assert_eq!(ok(&d).len(), MAX_VMS);
}

#[test]
fn error_missing_property() {
    assert_eq!(err_of(vm("vm@0", "a", 1, 2048).without("hv,name")), "VM \"vm@0\": hv,name is missing, but required");
    assert_eq!(err_of(vm("vm@0", "a", 1, 2048).without("cpus")), "VM \"a\": cpus is missing, but required");
    assert_eq!(err_of(vm("vm@0", "a", 1, 2048).without("memory")), "VM \"a\": memory is missing, but required");
    let d = tree(vec![vm("vm@0", "a", 1, 2048).without("cpus")]);
    assert_eq!(parse(&d), Err(VmError::MissingProperty { vm: "a", property: "cpus" }));
}

#[test]
fn error_bad_length() {
    let base = || vm("vm@0", "a", 1, 2048);
    assert_eq!(
        err_of(base().set("cpus", c(&[0, 1]))),
        "VM \"a\": cpus is 8 bytes long, but must be one 32-bit cell (4 bytes)"
    );
    assert_eq!(
        err_of(base().set("cpus", vec![0, 1])),
        "VM \"a\": cpus is 2 bytes long, but must be one 32-bit cell (4 bytes)"
    );
    assert_eq!(
        err_of(base().set("memory", c(&[0, 0, 2048]))),
        "VM \"a\": memory is 12 bytes long, but must be one or two 32-bit cells"
    );
    assert_eq!(
        err_of(base().set("memory", flag())),
        "VM \"a\": memory is 0 bytes long, but must be one or two 32-bit cells"
    );
    assert_eq!(
        err_of(base().p("hv,cpu-affinity", vec![0; 6])),
        "VM \"a\": hv,cpu-affinity is 6 bytes long, but must be a non-empty list of 32-bit cells"
    );
    assert_eq!(
        err_of(base().p("hv,cpu-affinity", flag())),
        "VM \"a\": hv,cpu-affinity is 0 bytes long, but must be a non-empty list of 32-bit cells"
    );
    assert_eq!(
        err_of(base().p("hv,spis", vec![0; 3])),
        "VM \"a\": hv,spis is 3 bytes long, but must be a list of 32-bit cells"
    );
    assert_eq!(
        err_of(base().p("hv,console", c(&[1]))),
        "VM \"a\": hv,console is 4 bytes long, but must be empty (a flag)"
    );
    assert_eq!(
        err_of(base().p("hv,manager", s(""))),
        "VM \"a\": hv,manager is 1 bytes long, but must be empty (a flag)"
    );
    assert_eq!(
        err_of(base().p("hv,latency-sensitive", s("yes"))),
        "VM \"a\": hv,latency-sensitive is 4 bytes long, but must be empty (a flag)"
    );
    assert_eq!(
        err_of(base().p("hv,weight", flag())),
        "VM \"a\": hv,weight is 0 bytes long, but must be one 32-bit cell (4 bytes)"
    );
    assert_eq!(
        err_of(base().p("hv,time-slice-us", c(&[0, 10_000]))),
        "VM \"a\": hv,time-slice-us is 8 bytes long, but must be one 32-bit cell (4 bytes)"
    );
    assert_eq!(
        err_of(base().p("hv,time-slice-us", flag())),
        "VM \"a\": hv,time-slice-us is 0 bytes long, but must be one 32-bit cell (4 bytes)"
    );
    assert_eq!(
        err_of(base().p("hv,time-slice-us", s("10ms"))),
        "VM \"a\": hv,time-slice-us is 5 bytes long, but must be one 32-bit cell (4 bytes)"
    );
    assert_eq!(
        err_of(base().p("hv,autostart", c(&[0, 1]))),
        "VM \"a\": hv,autostart is 8 bytes long, but must be one 32-bit cell (4 bytes)"
    );
    let d = tree(vec![base().set("cpus", flag())]);
    assert_eq!(
        parse(&d),
        Err(VmError::BadLength { vm: "a", property: "cpus", len: 0, expected: "one 32-bit cell (4 bytes)" })
    );
}

#[test]
fn error_not_a_string() {
    let base = || vm("vm@0", "a", 1, 2048);
    // No NUL, two strings, empty, not UTF-8.
    assert_eq!(
        err_of(base().set("hv,name", b"abc".to_vec())),
        "VM \"vm@0\": hv,name is not one NUL-terminated UTF-8 string"
    );
    assert_eq!(
        err_of(base().set("hv,name", sl(&["a", "b"]))),
        "VM \"vm@0\": hv,name is not one NUL-terminated UTF-8 string"
    );
    assert_eq!(err_of(base().set("hv,name", flag())), "VM \"vm@0\": hv,name is not one NUL-terminated UTF-8 string");
    assert_eq!(
        err_of(base().p("bootargs", vec![0xff, 0xfe, 0])),
        "VM \"a\": bootargs is not one NUL-terminated UTF-8 string"
    );
    assert_eq!(
        err_of(base().p("bootargs", sl(&["a", "b"]))),
        "VM \"a\": bootargs is not one NUL-terminated UTF-8 string"
    );
    assert_eq!(err_of(base().p("hv,kernel", c(&[1]))), "VM \"a\": hv,kernel is not one NUL-terminated UTF-8 string");
    assert_eq!(
        err_of(base().p("hv,initrd", b"x".to_vec())),
        "VM \"a\": hv,initrd is not one NUL-terminated UTF-8 string"
    );
    assert_eq!(
        err_of(base().p("hv,devices", b"/a".to_vec())),
        "VM \"a\": hv,devices is not one NUL-terminated UTF-8 string"
    );
    assert_eq!(
        err_of(base().p("hv,devices", vec![b'/', 0xc3, 0])),
        "VM \"a\": hv,devices is not one NUL-terminated UTF-8 string"
    );
    let d = tree(vec![base().p("bootargs", b"x".to_vec())]);
    assert_eq!(parse(&d), Err(VmError::NotAString { vm: "a", property: "bootargs" }));
}

#[test]
fn error_bad_name() {
    let msg = |node: &str, name: &str| {
        format!("VM \"{node}\": hv,name \"{name}\" must be 1 to 15 characters of a-z, 0-9, '_' and '-'")
    };
    assert_eq!(err_of(vm("vm@0", "Linux", 1, 2048)), msg("vm@0", "Linux"));
    assert_eq!(err_of(vm("vm@0", "", 1, 2048)), msg("vm@0", ""));
    assert_eq!(err_of(vm("vm@0", "abcdefghijklmnop", 1, 2048)), msg("vm@0", "abcdefghijklmnop"));
    assert_eq!(err_of(vm("vm@0", "a b", 1, 2048)), msg("vm@0", "a b"));
    assert_eq!(err_of(vm("vm@0", "a.b", 1, 2048)), msg("vm@0", "a.b"));
    assert_eq!(err_of(vm("vm@0", "é", 1, 2048)), msg("vm@0", "é"));
    let d = tree(vec![vm("vm@0", "A", 1, 2048)]);
    assert_eq!(parse(&d), Err(VmError::BadName { vm: "vm@0", name: "A" }));
}

#[test]
fn messages_stay_on_one_line() {
    // Control characters are escaped, long strings cut.
    let text = err_of(vm("vm@0", "bad\nname\"", 1, 2048));
    assert_eq!(text, "VM \"vm@0\": hv,name \"bad\\nname\\\"\" must be 1 to 15 characters of a-z, 0-9, '_' and '-'");
    let long = "x".repeat(1000);
    let text = err_of(vm(&long, "a", 1, 2048).without("hv,name"));
    assert_eq!(text, format!("VM \"{}...\": hv,name is missing, but required", "x".repeat(64)));
}

#[test]
fn error_too_many_items() {
    let base = || vm("vm@0", "a", 1, 2048);
    let affinity: Vec<u32> = (0..=MAX_CPUS as u32).collect();
    assert_eq!(
        err_of(base().p("hv,cpu-affinity", c(&affinity))),
        "VM \"a\": hv,cpu-affinity has more than 16 entries, the most this firmware holds"
    );
    let spis: Vec<u32> = (32..=32 + MAX_VM_SPIS as u32).collect();
    assert_eq!(
        err_of(base().p("hv,spis", c(&spis))),
        "VM \"a\": hv,spis has more than 32 entries, the most this firmware holds"
    );
    let devices: Vec<String> = (0..=MAX_VM_DEVICES).map(|i| format!("/d{i}")).collect();
    let devices: Vec<&str> = devices.iter().map(String::as_str).collect();
    assert_eq!(
        err_of(base().p("hv,devices", sl(&devices))),
        "VM \"a\": hv,devices has more than 8 entries, the most this firmware holds"
    );
    let d = tree(vec![base().p("hv,spis", c(&spis))]);
    assert_eq!(parse(&d), Err(VmError::TooManyItems { vm: "a", property: "hv,spis", capacity: MAX_VM_SPIS }));
}

#[test]
fn error_unknown_property() {
    let base = || vm("vm@0", "a", 1, 2048);
    assert_eq!(
        err_of(base().p("hv,consle", flag())),
        "VM \"a\": node \"vm@0\" has property \"hv,consle\", which the VM binding does not know"
    );
    assert_eq!(
        err_of(base().p("bootarg", s("x"))),
        "VM \"a\": node \"vm@0\" has property \"bootarg\", which the VM binding does not know"
    );
    assert_eq!(
        err_of(base().p("status", s("okay"))),
        "VM \"a\": node \"vm@0\" has property \"status\", which the VM binding does not know"
    );
    // In a module: Xen allows bootargs there, this binding does not.
    let module = n("k").p("compatible", s("multiboot,kernel")).p("reg", c(&[0, 0, 1])).p("bootargs", s("x"));
    assert_eq!(
        err_of(base().c(module)),
        "VM \"a\": node \"k\" has property \"bootargs\", which the VM binding does not know"
    );
    // Standard properties are fine.
    let d = tree(vec![base()
        .p("#address-cells", c(&[1]))
        .p("#size-cells", c(&[1]))
        .p("phandle", c(&[1]))
        .p("linux,phandle", c(&[1]))
        .p("name", s("vm"))]);
    ok(&d);
    let d = tree(vec![base().p("hv,x", flag())]);
    assert_eq!(parse(&d), Err(VmError::UnknownProperty { vm: "a", node: "vm@0", property: "hv,x" }));
}

#[test]
fn error_property_given_twice() {
    let base = || vm("vm@0", "a", 1, 2048);
    assert_eq!(err_of(base().p("cpus", c(&[2]))), "VM \"a\": node \"vm@0\" has property \"cpus\" twice");
    assert_eq!(err_of(base().p("hv,name", s("b"))), "VM \"a\": node \"vm@0\" has property \"hv,name\" twice");
    let module = n("k").p("compatible", s("multiboot,kernel")).p("reg", c(&[0, 0, 1])).p("reg", c(&[0, 0, 1]));
    assert_eq!(err_of(base().c(module)), "VM \"a\": node \"k\" has property \"reg\" twice");
    let d = tree(vec![base().p("hv,console", flag()).p("hv,console", flag())]);
    assert_eq!(parse(&d), Err(VmError::PropertyGivenTwice { vm: "a", node: "vm@0", property: "hv,console" }));
}

#[test]
fn error_unknown_subnode() {
    let base = || vm("vm@0", "a", 1, 2048);
    let expected = "VM \"a\": subnode \"passthrough\" is not a module (compatible multiboot,kernel or \
                    multiboot,ramdisk) or a virtio device (compatible hv,virtio-mmio)";
    assert_eq!(err_of(base().c(n("passthrough"))), expected);
    let dt = n("dt").p("compatible", s("multiboot,device-tree")).p("reg", c(&[0, 0, 1]));
    assert!(err_of(base().c(dt)).starts_with("VM \"a\": subnode \"dt\" is not a module"));
    let d = tree(vec![base().c(n("x"))]);
    assert_eq!(parse(&d), Err(VmError::UnknownSubnode { vm: "a", node: "x" }));
}

fn virtio_node(name: &str, device: &str, backend: &str) -> N {
    n(name).p("compatible", s("hv,virtio-mmio")).p("hv,device", s(device)).p("hv,backend", s(backend))
}

#[test]
fn virtio_devices() {
    use crate::forward::DeviceType;
    let client = vm("vm@1", "client", 1, 2048)
        .c(virtio_node("disk", "block", "svc"))
        .c(virtio_node("con", "console", "svc"))
        .c(virtio_node("disk2", "block", "other"));
    let d = tree(vec![vm("vm@0", "svc", 1, 2048), client, vm("vm@2", "other", 1, 2048)]);
    let vms = ok(&d);
    let v = vms[1].virtio.as_slice();
    assert_eq!(v.len(), 3);
    assert_eq!((v[0].node, v[0].device, v[0].backend), ("disk", DeviceType::Block, "svc"));
    assert_eq!((v[1].device, v[2].backend), (DeviceType::Console, "other"));
    assert_eq!(v[0].timeout_ms, DEFAULT_VIRTIO_TIMEOUT_MS);
    let timed = vm("vm@1", "client", 1, 2048).c(virtio_node("d", "block", "svc").p("hv,timeout-ms", c(&[250])));
    let d = tree(vec![vm("vm@0", "svc", 1, 2048), timed]);
    assert_eq!(ok(&d)[1].virtio[0].timeout_ms, 250);
    assert!(vms[0].virtio.is_empty());
    // The most a VM can have.
    let mut many = vm("vm@1", "client", 1, 2048);
    for i in 0..MAX_VIRTIO {
        many = many.c(virtio_node(&format!("v{i}"), "console", "svc"));
    }
    let d = tree(vec![vm("vm@0", "svc", 1, 2048), many.clone()]);
    assert_eq!(ok(&d)[1].virtio.len(), MAX_VIRTIO);
    let d = tree(vec![vm("vm@0", "svc", 1, 2048), many.c(virtio_node("last", "block", "svc"))]);
    assert_eq!(
        parse(&d).map_err(|e| e.to_string()),
        Err("VM \"client\": hv,virtio-mmio subnodes has more than 8 entries, the most this firmware holds".into())
    );
}

#[test]
fn error_virtio_devices() {
    let with = |device: N| {
        let d = tree(vec![vm("vm@0", "svc", 1, 2048), vm("vm@1", "c", 1, 2048).c(device)]);
        parse(&d).map(|_| ()).map_err(|e| e.to_string())
    };
    let err = |device: N| with(device).unwrap_err();
    assert_eq!(
        err(virtio_node("d", "net", "svc")),
        "VM \"c\": virtio device \"d\": hv,device must be \"block\" or \"console\""
    );
    assert_eq!(
        err(n("d").p("compatible", s("hv,virtio-mmio")).p("hv,backend", s("svc"))),
        "VM \"c\": virtio device \"d\": hv,device is missing (\"block\" or \"console\")"
    );
    assert_eq!(
        err(n("d").p("compatible", s("hv,virtio-mmio")).p("hv,device", s("block"))),
        "VM \"c\": virtio device \"d\": hv,backend is missing (the name of the VM that serves the device)"
    );
    for bad in [0, 3_600_001] {
        assert_eq!(
            err(virtio_node("d", "block", "svc").p("hv,timeout-ms", c(&[bad]))),
            "VM \"c\": virtio device \"d\": hv,timeout-ms must be 1 to 3600000 (milliseconds)"
        );
    }
    assert_eq!(
        err(virtio_node("d", "block", "nobody")),
        "VM \"c\": virtio device \"d\": hv,backend \"nobody\" names no VM"
    );
    assert_eq!(err(virtio_node("d", "block", "c")), "VM \"c\": virtio device \"d\": hv,backend names the VM itself");
    assert_eq!(
        err(virtio_node("d", "block", "svc").p("reg", c(&[0, 0, 1]))),
        "VM \"c\": node \"d\" has property \"reg\", which the VM binding does not know"
    );
    assert_eq!(
        err(virtio_node("d", "block", "svc").p("hv,device", s("block"))),
        "VM \"c\": node \"d\" has property \"hv,device\" twice"
    );
    assert!(err(virtio_node("d", "block", "svc").p("hv,x", flag())).contains("hv,x"));
    assert_eq!(
        err(n("d").p("compatible", s("hv,virtio-mmio")).p("hv,device", c(&[2])).p("hv,backend", s("svc"))),
        "VM \"c\": hv,device is not one NUL-terminated UTF-8 string"
    );
    // A backend described after its client is found.
    let d = tree(vec![vm("vm@1", "c", 1, 2048).c(virtio_node("d", "block", "svc")), vm("vm@0", "svc", 1, 2048)]);
    assert!(parse(&d).is_ok());
}

#[test]
fn error_no_cpus() {
    assert_eq!(err_of(vm("vm@0", "a", 0, 2048)), "VM \"a\": cpus = 0, but a VM needs at least 1 vCPU");
    let d = tree(vec![vm("vm@0", "a", 0, 2048)]);
    assert_eq!(parse(&d), Err(VmError::NoCpus { vm: "a" }));
}

#[test]
fn error_bad_memory() {
    let msg = |kib: u64| format!("VM \"a\": memory = {kib} KiB, but must be a non-zero multiple of 2048 KiB (2 MiB)");
    for kib in [0, 1, 1000, 2047, 2049, 4095, u32::MAX] {
        assert_eq!(err_of(vm("vm@0", "a", 1, kib)), msg(u64::from(kib)));
    }
    assert_eq!(err_of(vm("vm@0", "a", 1, 0).set("memory", c(&[1, 1]))), msg((1 << 32) + 1));
    let d = tree(vec![vm("vm@0", "a", 1, 1024)]);
    assert_eq!(parse(&d), Err(VmError::BadMemory { vm: "a", kib: 1024 }));
}

#[test]
fn error_memory_too_large() {
    // 2^54 KiB is 2^64 bytes; the largest 2 MiB multiple of KiB overflows too.
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 0).set("memory", c(&[0x0040_0000, 0]))),
        "VM \"a\": memory = 18014398509481984 KiB is more bytes than 64 bits count"
    );
    let d = tree(vec![vm("vm@0", "a", 1, 0).set("memory", c(&[u32::MAX, 0xffff_f800]))]);
    assert_eq!(parse(&d), Err(VmError::MemoryTooLarge { vm: "a", kib: u64::MAX - 2047 }));
}

#[test]
fn error_bad_weight() {
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 2048).p("hv,weight", c(&[0]))),
        "VM \"a\": hv,weight = 0, but must be 1 to 65535"
    );
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 2048).p("hv,weight", c(&[65536]))),
        "VM \"a\": hv,weight = 65536, but must be 1 to 65535"
    );
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,weight", c(&[65535]))]);
    assert_eq!(ok(&d)[0].weight, 65535);
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,weight", c(&[u32::MAX]))]);
    assert_eq!(parse(&d), Err(VmError::BadWeight { vm: "a", weight: u32::MAX }));
}

#[test]
fn time_slice() {
    let d = tree(vec![vm("vm@0", "a", 1, 2048)]);
    assert_eq!(ok(&d)[0].time_slice_us, DEFAULT_TIME_SLICE_US);
    for us in [MIN_TIME_SLICE_US, 1_001, DEFAULT_TIME_SLICE_US, 99_999, MAX_TIME_SLICE_US] {
        let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,time-slice-us", c(&[us]))]);
        assert_eq!(ok(&d)[0].time_slice_us, us);
    }
    assert_eq!((MIN_TIME_SLICE_US, MAX_TIME_SLICE_US), (1_000, 100_000));
}

#[test]
fn error_bad_time_slice() {
    let msg = |us: u32| format!("VM \"a\": hv,time-slice-us = {us}, but must be 1000 to 100000 (microseconds)");
    for us in [0, 10, 999, 100_001, 1_000_000, u32::MAX] {
        assert_eq!(err_of(vm("vm@0", "a", 1, 2048).p("hv,time-slice-us", c(&[us]))), msg(us));
    }
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,time-slice-us", c(&[999]))]);
    assert_eq!(parse(&d), Err(VmError::BadTimeSlice { vm: "a", us: 999 }));
}

#[test]
fn error_bad_autostart() {
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 2048).p("hv,autostart", c(&[2]))),
        "VM \"a\": hv,autostart = 2, but must be 0 or 1"
    );
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,autostart", c(&[u32::MAX]))]);
    assert_eq!(parse(&d), Err(VmError::BadAutostart { vm: "a", value: u32::MAX }));
}

#[test]
fn error_bad_fw_cfg_name() {
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 2048).p("hv,kernel", s(""))),
        "VM \"a\": hv,kernel is a 0-byte name, but fw_cfg file names are 1 to 55 bytes"
    );
    let long = "opt/".to_string() + &"x".repeat(52);
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 2048).p("hv,kernel", s("k")).p("hv,initrd", s(&long))),
        "VM \"a\": hv,initrd is a 56-byte name, but fw_cfg file names are 1 to 55 bytes"
    );
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,kernel", s(""))]);
    assert_eq!(parse(&d), Err(VmError::BadFwCfgName { vm: "a", property: "hv,kernel", len: 0 }));
}

#[test]
fn error_image_given_twice() {
    let kernel = || n("k").p("compatible", s("multiboot,kernel")).p("reg", c(&[0, 0x1000, 0x1000]));
    let ramdisk = || n("r").p("compatible", s("multiboot,ramdisk")).p("reg", c(&[0, 0x1000, 0x1000]));
    let base = || vm("vm@0", "a", 1, 2048);
    assert_eq!(
        err_of(base().p("hv,kernel", s("opt/k")).c(kernel())),
        "VM \"a\": the kernel is given twice: hv,kernel and a multiboot,kernel subnode"
    );
    assert_eq!(
        err_of(base().c(kernel()).c(kernel())),
        "VM \"a\": the kernel is given twice: two multiboot,kernel subnodes"
    );
    assert_eq!(
        err_of(base().p("hv,kernel", s("opt/k")).p("hv,initrd", s("opt/i")).c(ramdisk())),
        "VM \"a\": the initrd is given twice: hv,initrd and a multiboot,ramdisk subnode"
    );
    assert_eq!(
        err_of(base().c(kernel()).c(ramdisk()).c(ramdisk())),
        "VM \"a\": the initrd is given twice: two multiboot,ramdisk subnodes"
    );
    let d = tree(vec![base().p("hv,kernel", s("opt/k")).c(kernel())]);
    assert_eq!(
        parse(&d),
        Err(VmError::ImageGivenTwice { vm: "a", what: "kernel", how: "hv,kernel and a multiboot,kernel subnode" })
    );
}

#[test]
fn error_bad_module() {
    let module = |reg: Option<Vec<u8>>| {
        let m = n("k@0").p("compatible", s("multiboot,kernel"));
        match reg {
            Some(r) => m.p("reg", r),
            None => m,
        }
    };
    let base = || vm("vm@0", "a", 1, 2048);
    assert_eq!(err_of(base().c(module(None))), "VM \"a\": module \"k@0\": reg is missing");
    let pair = "VM \"a\": module \"k@0\": reg must be one (address, size) pair in the VM node's #address-cells and #size-cells";
    assert_eq!(err_of(base().c(module(Some(c(&[0, 1]))))), pair);
    assert_eq!(err_of(base().c(module(Some(c(&[0, 1, 0, 1, 0, 1]))))), pair);
    assert_eq!(err_of(base().c(module(Some(vec![0; 13])))), pair);
    assert_eq!(err_of(base().c(module(Some(flag())))), pair);
    assert_eq!(err_of(base().c(module(Some(c(&[0, 1, 0]))))), "VM \"a\": module \"k@0\": reg gives an empty region");
    assert_eq!(
        err_of(base().c(module(Some(c(&[u32::MAX, 0xffff_f000, 0x1001]))))),
        "VM \"a\": module \"k@0\": reg runs past the end of the address space"
    );
    let cells =
        "VM \"a\": module \"k@0\": reg cannot be decoded: the VM node's #address-cells and #size-cells must be 1 or 2";
    for (a, s_) in [(vec![3u32], vec![1u32]), (vec![1], vec![0]), (vec![0], vec![1]), (vec![1], vec![3])] {
        let v = base().p("#address-cells", c(&a)).p("#size-cells", c(&s_)).c(module(Some(c(&[0, 0, 1]))));
        assert_eq!(err_of(v), cells, "{a:?} {s_:?}");
    }
    // A malformed #address-cells (not one cell).
    let v = base().p("#address-cells", c(&[1, 1])).c(module(Some(c(&[0, 0, 1]))));
    assert_eq!(err_of(v), cells);
    let d = tree(vec![base().c(module(None))]);
    assert_eq!(parse(&d), Err(VmError::BadModule { vm: "a", node: "k@0", reason: "is missing" }));
}

#[test]
fn error_initrd_without_kernel() {
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 2048).p("hv,initrd", s("opt/i"))),
        "VM \"a\": hv,initrd gives an initrd, but the VM has no kernel (hv,kernel or a multiboot,kernel subnode)"
    );
    let ramdisk = n("r").p("compatible", s("multiboot,ramdisk")).p("reg", c(&[0, 0x1000, 0x1000]));
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 2048).c(ramdisk)),
        "VM \"a\": multiboot,ramdisk gives an initrd, but the VM has no kernel (hv,kernel or a multiboot,kernel subnode)"
    );
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,initrd", s("opt/i"))]);
    assert_eq!(parse(&d), Err(VmError::InitrdWithoutKernel { vm: "a", property: "hv,initrd" }));
}

#[test]
fn error_bad_device_path() {
    let base = || vm("vm@0", "a", 1, 2048);
    let msg = |p: &str| format!("VM \"a\": hv,devices entry \"{p}\" is not the absolute path of a device node");
    assert_eq!(err_of(base().p("hv,devices", sl(&["pl031@9010000"]))), msg("pl031@9010000"));
    assert_eq!(err_of(base().p("hv,devices", sl(&["/"]))), msg("/"));
    assert_eq!(err_of(base().p("hv,devices", sl(&["/a", "", "/b"]))), msg(""));
    assert_eq!(err_of(base().p("hv,devices", s(""))), msg(""));
    let d = tree(vec![base().p("hv,devices", sl(&["x"]))]);
    assert_eq!(parse(&d), Err(VmError::BadDevicePath { vm: "a", path: "x" }));
}

#[test]
fn error_bad_spi() {
    let base = || vm("vm@0", "a", 1, 2048);
    assert_eq!(
        err_of(base().p("hv,spis", c(&[40, 31]))),
        "VM \"a\": hv,spis names INTID 31, which is not an SPI (32 to 1019)"
    );
    assert_eq!(
        err_of(base().p("hv,spis", c(&[1020]))),
        "VM \"a\": hv,spis names INTID 1020, which is not an SPI (32 to 1019)"
    );
    let d = tree(vec![base().p("hv,spis", c(&[u32::MAX]))]);
    assert_eq!(parse(&d), Err(VmError::BadSpi { vm: "a", intid: u32::MAX }));
}

#[test]
fn error_duplicate_affinity() {
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 2048).p("hv,cpu-affinity", c(&[1, 2, 1]))),
        "VM \"a\": hv,cpu-affinity names CPU 1 twice"
    );
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,cpu-affinity", c(&[3, 3]))]);
    assert_eq!(parse(&d), Err(VmError::DuplicateAffinity { vm: "a", cpu: 3 }));
}

#[test]
fn affinity_shorter_than_cpus() {
    // Fewer CPUs than vCPUs: the vCPUs share them.
    let d = tree(vec![vm("vm@1", "b", 3, 2048).p("hv,cpu-affinity", c(&[2, 1]))]);
    let vms = ok(&d);
    assert_eq!(vms[0].affinity, Some(set(&[2, 1])));
    assert_eq!(vms.validate(4, GIB, None), Ok(placement(&[&[1, 2]])));
}

#[test]
fn error_duplicate_name() {
    let d = tree(vec![vm("vm@0", "a", 1, 2048), vm("vm@1", "b", 1, 2048), vm("vm@2", "a", 1, 2048)]);
    let e = parse(&d).unwrap_err();
    assert_eq!(e, VmError::DuplicateName { vm: "a", first_node: "vm@0", second_node: "vm@2" });
    assert_eq!(e.to_string(), "VM \"a\": hv,name is given to two nodes, \"vm@0\" and \"vm@2\"");
}

#[test]
fn error_device_given_twice() {
    let a = || vm("vm@0", "a", 1, 2048).p("hv,devices", sl(&["/pl031@9010000"]));
    // In two VMs.
    let d = tree(vec![a(), vm("vm@1", "b", 1, 2048).p("hv,devices", sl(&["/x", "/pl031@9010000"]))]);
    let e = parse(&d).unwrap_err();
    assert_eq!(
        e,
        VmError::DeviceGivenTwice { vm: "b", path: "/pl031@9010000", other: "a", other_path: "/pl031@9010000" }
    );
    assert_eq!(e.to_string(), "VM \"b\": hv,devices entry \"/pl031@9010000\" is also given to VM \"a\"");
    // In one VM.
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 2048).p("hv,devices", sl(&["/x", "/y", "/x"]))),
        "VM \"a\": hv,devices entry \"/x\" is listed twice"
    );
    // Two spellings of one node, found with the host tree.
    let d = tree(vec![a(), vm("vm@1", "b", 1, 2048).p("hv,devices", sl(&["/pl031"]))]);
    let vms = ok(&d);
    assert!(vms.validate(4, GIB, None).is_ok());
    let e = vms.validate(4, GIB, Some(HOST)).unwrap_err();
    assert_eq!(e, VmError::DeviceGivenTwice { vm: "b", path: "/pl031", other: "a", other_path: "/pl031@9010000" });
    assert_eq!(
        e.to_string(),
        "VM \"b\": hv,devices entry \"/pl031\" names the same node as \"/pl031@9010000\", is also given to VM \"a\""
    );
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,devices", sl(&["/pl031", "/pl031@9010000/"]))]);
    assert_eq!(
        ok(&d).validate(4, GIB, Some(HOST)).unwrap_err().to_string(),
        "VM \"a\": hv,devices entry \"/pl031@9010000/\" names the same node as \"/pl031\", is listed twice"
    );
}

#[test]
fn error_spi_given_twice() {
    let d = tree(vec![
        vm("vm@0", "a", 1, 2048).p("hv,spis", c(&[33, 40])),
        vm("vm@1", "b", 1, 2048).p("hv,spis", c(&[41, 40])),
    ]);
    let e = parse(&d).unwrap_err();
    assert_eq!(e, VmError::SpiGivenTwice { vm: "b", intid: 40, other: "a" });
    assert_eq!(e.to_string(), "VM \"b\": hv,spis names INTID 40, which is also given to VM \"a\"");
    assert_eq!(
        err_of(vm("vm@0", "a", 1, 2048).p("hv,spis", c(&[33, 34, 33]))),
        "VM \"a\": hv,spis names INTID 33 twice"
    );
}

#[test]
fn error_too_many_cpus() {
    // A VM has at most MAX_VCPUS vCPUs, whatever the machine.
    let d = tree(vec![vm("vm@0", "a", 1, 2048), vm("vm@1", "big", 17, 2048)]);
    let e = parse(&d).unwrap_err();
    assert_eq!(e, VmError::TooManyCpus { vm: "big", cpus: 17 });
    assert_eq!(e.to_string(), "VM \"big\": cpus = 17, but a VM has at most 16 vCPUs");
    assert_eq!(err_of(vm("vm@0", "a", u32::MAX, 2048)), "VM \"a\": cpus = 4294967295, but a VM has at most 16 vCPUs");
    let d = tree(vec![vm("vm@0", "a", MAX_VCPUS as u32, 2048)]);
    assert_eq!(ok(&d)[0].cpus, 16);
}

#[test]
fn error_affinity_out_of_range() {
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,cpu-affinity", c(&[0, 7]))]);
    let e = ok(&d).validate(4, GIB, None).unwrap_err();
    assert_eq!(e, VmError::AffinityOutOfRange { vm: "a", cpu: 7, cpu_count: 4 });
    assert_eq!(e.to_string(), "VM \"a\": hv,cpu-affinity names CPU 7, but the machine has 4 CPUs (0 to 3)");
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,cpu-affinity", c(&[1]))]);
    assert_eq!(
        ok(&d).validate(1, GIB, None).unwrap_err().to_string(),
        "VM \"a\": hv,cpu-affinity names CPU 1, but the machine has 1 CPU (0 to 0)"
    );
    // Still refused when another VM shares the CPUs in range.
    let d = vms_for_placement(&[("a", 2, Some(&[0, 1])), ("b", 2, Some(&[1, 4]))]);
    assert_eq!(ok(&d).validate(4, GIB, None), Err(VmError::AffinityOutOfRange { vm: "b", cpu: 4, cpu_count: 4 }));
    assert!(ok(&d).validate(5, GIB, None).is_ok());
}

#[test]
fn error_memory_does_not_fit() {
    let d = tree(vec![vm("vm@0", "b", 1, 512 * 1024), vm("vm@1", "a", 1, 4 * 1024 * 1024)]);
    let vms = ok(&d);
    let e = vms.validate(4, 2 * GIB, None).unwrap_err();
    assert_eq!(e, VmError::MemoryDoesNotFit { vm: "a", kib: 4 * 1024 * 1024, left_bytes: 1536 * MIB });
    assert_eq!(e.to_string(), "VM \"a\": memory 4194304 KiB does not fit: 1536 MiB of RAM is left for VMs");
    // Exactly full is fine; not whole MiB left prints KiB.
    assert!(vms.validate(4, 4 * GIB + 512 * MIB, None).is_ok());
    assert_eq!(
        vms.validate(4, 4 * GIB + 512 * MIB - 1, None).unwrap_err().to_string(),
        "VM \"a\": memory 4194304 KiB does not fit: 4194303 KiB of RAM is left for VMs"
    );
    assert_eq!(
        vms.validate(4, 0, None).unwrap_err().to_string(),
        "VM \"b\": memory 524288 KiB does not fit: 0 MiB of RAM is left for VMs"
    );
    // The largest sizes add up without overflow.
    let huge = |node: &str| vm(node, node, 1, 0).set("memory", c(&[0x003f_ffff, 0xffff_f800]));
    let d = tree(vec![huge("x"), huge("y")]);
    assert!(matches!(ok(&d).validate(4, u64::MAX, None), Err(VmError::MemoryDoesNotFit { vm: "y", .. })));
}

#[test]
fn error_device_not_found() {
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,devices", sl(&["/pl031@9010000", "/pl032@9010000"]))]);
    let vms = ok(&d);
    let e = vms.validate(4, GIB, Some(HOST)).unwrap_err();
    assert_eq!(e, VmError::DeviceNotFound { vm: "a", path: "/pl032@9010000" });
    assert_eq!(e.to_string(), "VM \"a\": hv,devices entry \"/pl032@9010000\" names no node of the host device tree");
    // Without a host tree nothing is looked up.
    assert!(vms.validate(4, GIB, None).is_ok());
    // Nested paths and unit-address-less paths resolve.
    let d = tree(vec![vm("vm@0", "a", 1, 2048).p("hv,devices", sl(&["/cpus/cpu@1", "/pl061", "/platform-bus"]))]);
    assert!(ok(&d).validate(4, GIB, Some(HOST)).is_ok());
}

#[test]
fn validate_checks_in_order() {
    // CPUs before memory before devices.
    let d = tree(vec![vm("vm@0", "a", 8, 4096).p("hv,cpu-affinity", c(&[7])).p("hv,devices", sl(&["/nowhere"]))]);
    let vms = ok(&d);
    assert!(matches!(vms.validate(4, 0, Some(HOST)), Err(VmError::AffinityOutOfRange { .. })));
    assert!(matches!(vms.validate(8, 0, Some(HOST)), Err(VmError::MemoryDoesNotFit { .. })));
    assert!(matches!(vms.validate(8, GIB, Some(HOST)), Err(VmError::DeviceNotFound { .. })));
}

#[test]
fn the_board_tree_itself_parses() {
    // A real QEMU tree: /chosen without VM nodes.
    assert!(ok(HOST).is_empty());
}

// ---------------------------------------------------------------------------
// Hostile input

/// Parses and, if that works, validates, so both run on the input.
fn run(bytes: &[u8]) {
    if let Ok(vms) = parse(bytes) {
        for cpu_count in [0, 1, 4, 16, usize::MAX] {
            let _ = vms.validate(cpu_count, GIB, Some(HOST));
            let _ = vms.validate(cpu_count, u64::MAX, Some(bytes));
        }
    } else if let Err(e) = parse(bytes) {
        assert!(!e.to_string().contains('\n'));
    }
}

fn no_panic(bytes: &[u8], what: &dyn Fn() -> String) {
    if std::panic::catch_unwind(|| run(bytes)).is_err() {
        panic!("vms::parse or validate panicked on {}", what());
    }
}

#[test]
fn truncated_property_is_a_dtb_error() {
    let d = tree(vec![vm("vm@0", "a", 1, 2048)]);
    // The `memory` value's length says 4; make it claim 400.
    let needle: Vec<u8> = c(&[2048]);
    let value = d.windows(4).rposition(|w| w == needle.as_slice()).unwrap();
    let mut bad = d.clone();
    bad[value - 8..value - 4].copy_from_slice(&400u32.to_be_bytes());
    assert!(matches!(parse(&bad), Err(VmError::Dtb(BoardError::Malformed { .. }))));
    // Cut anywhere: never a panic, never a VM list from half a tree.
    for len in 0..d.len() {
        no_panic(&d[..len], &|| format!("cut to {len}"));
        assert!(parse(&d[..len]).is_err());
    }
}

#[test]
fn no_panic_on_corrupted_descriptions() {
    let d = full();
    for pos in 0..d.len() {
        for mask in [0xff, 0x01, 0x80, 0x20] {
            let mut v = d.clone();
            v[pos] ^= mask;
            no_panic(&v, &|| format!("byte {pos:#x} ^ {mask:#x}"));
        }
    }
    for pos in (0..d.len() - 4).step_by(4) {
        for value in [0, 1, 2, 3, 4, 9, 0x7fff_ffff, 0x8000_0000, u32::MAX, d.len() as u32] {
            let mut v = d.clone();
            v[pos..pos + 4].copy_from_slice(&value.to_be_bytes());
            no_panic(&v, &|| format!("word {pos:#x} = {value:#x}"));
        }
    }
}

/// Odd values for every property the binding reads.
#[test]
fn no_panic_on_odd_values() {
    let props = [
        "hv,name",
        "cpus",
        "memory",
        "hv,cpu-affinity",
        "bootargs",
        "hv,console",
        "hv,kernel",
        "hv,initrd",
        "hv,devices",
        "hv,spis",
        "hv,autostart",
        "hv,manager",
        "hv,weight",
        "hv,latency-sensitive",
        "hv,time-slice-us",
        "#address-cells",
        "#size-cells",
    ];
    let values: Vec<Vec<u8>> = vec![
        flag(),
        vec![0],
        vec![0xff],
        vec![0; 3],
        c(&[0]),
        c(&[u32::MAX]),
        c(&[0, 0]),
        c(&[u32::MAX, u32::MAX]),
        c(&[1, 2, 3]),
        c(&[0x0040_0000, 0]),
        s("/"),
        sl(&["/a", "/a"]),
        vec![0xff; 64],
        vec![b'/'; 300],
    ];
    for p in props {
        for v in &values {
            let module = n("m").p("compatible", s("multiboot,kernel")).p("reg", v.clone());
            let d = tree(vec![vm("vm@0", "a", 1, 2048).set(p, v.clone()).c(module)]);
            no_panic(&d, &|| format!("{p} = {v:x?}"));
        }
    }
}

fn mutate(base: &[u8], edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(pos, byte) in edits {
        let len = v.len();
        v[pos % len] = byte;
    }
    if let Some(cut) = cut {
        v.truncate(cut % (base.len() + 1));
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        run(&bytes);
        // With a valid header in front, the bytes reach the structure walk.
        let mut v = full();
        let keep = 56.min(v.len());
        v.truncate(keep);
        v.extend(&bytes);
        run(&v);
    }

    #[test]
    fn mutated_descriptions_never_panic(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<usize>()),
    ) {
        let d = full();
        run(&mutate(&d, &edits, cut));
    }

    #[test]
    fn random_trees_never_panic(
        cpus in any::<u32>(),
        memory in prop::collection::vec(any::<u32>(), 0..3),
        affinity in prop::collection::vec(0u32..20, 0..20),
        spis in prop::collection::vec(0u32..1100, 0..40),
        time_slice in prop::option::of(prop_oneof![any::<u32>(), 0u32..200_000]),
        name in "[a-z0-9_A-Z.-]{0,20}",
        two in any::<bool>(),
    ) {
        let v = vm("vm@0", &name, cpus, 0)
            .set("memory", c(&memory))
            .p("hv,cpu-affinity", c(&affinity))
            .p("hv,spis", c(&spis));
        let v = match time_slice {
            Some(us) => v.p("hv,time-slice-us", c(&[us])),
            None => v,
        };
        let mut nodes = vec![v.clone()];
        if two {
            nodes.push(v.set("hv,name", s("other")));
        }
        let d = tree(nodes);
        run(&d);
        if let Ok(vms) = parse(&d) {
            // Whatever is accepted keeps the promises.
            for vm in vms.iter() {
                prop_assert!((1..=MAX_VCPUS as u32).contains(&vm.cpus));
                prop_assert!(vm.memory_bytes > 0 && vm.memory_bytes % (2 * MIB) == 0);
                prop_assert!(vm.spis.iter().all(|s| SPI_RANGE.contains(s)));
                prop_assert!((MIN_TIME_SLICE_US..=MAX_TIME_SLICE_US).contains(&vm.time_slice_us));
                if let Some(a) = vm.affinity {
                    prop_assert!(!a.is_empty());
                }
            }
            match vms.placement(8) {
                Ok(p) => {
                    prop_assert_eq!(p.len(), vms.len());
                    for (set, vm) in p.iter().zip(vms.iter()) {
                        // Non-empty, ascending (so no CPU twice), on the machine.
                        prop_assert!(!set.is_empty());
                        prop_assert!(set.windows(2).all(|w| w[0] < w[1]), "{:?}", set);
                        prop_assert!(set.iter().all(|&c| c < 8));
                        match vm.affinity {
                            Some(a) => {
                                let mut a = a.to_vec();
                                a.sort_unstable();
                                prop_assert_eq!(set.as_slice(), a.as_slice());
                            }
                            None => prop_assert_eq!(set.as_slice(), &[0, 1, 2, 3, 4, 5, 6, 7]),
                        }
                    }
                }
                Err(e) => {
                    // The one way to fail: an affinity naming a CPU past 7.
                    let bad = vms.iter().filter_map(|vm| vm.affinity).any(|a| a.iter().any(|&c| c >= 8));
                    prop_assert!(bad, "{}", e);
                    let is_out_of_range = matches!(e, VmError::AffinityOutOfRange { cpu, cpu_count: 8, .. } if cpu >= 8);
                    prop_assert!(is_out_of_range, "{}", e);
                }
            }
        }
    }
}

#[test]
fn a_cpu_runs_at_most_a_queue_of_vcpus() {
    // 16 + 16 vCPUs fit on CPU 0; one more does not, and the line names it.
    let fits = vms_for_placement(&[("a", 16, Some(&[0])), ("b", 16, None)]);
    assert!(ok(&fits).validate(2, GIB, None).is_ok());
    let over = vms_for_placement(&[("a", 16, Some(&[0])), ("b", 16, None), ("c", 1, Some(&[1, 0]))]);
    let err = ok(&over).validate(2, GIB, None).unwrap_err();
    assert_eq!(err, VmError::CpuOvercommitted { vm: "c", cpu: 0, vcpus: 33 });
    assert_eq!(err.to_string(), "VM \"c\": with its vCPUs, 33 vCPUs may run on CPU 0, but a CPU runs at most 32");
    // Spread over two CPUs, the same VMs fit.
    let spread = vms_for_placement(&[("a", 16, Some(&[0])), ("b", 16, Some(&[1])), ("c", 1, Some(&[1, 0]))]);
    assert!(ok(&spread).validate(2, GIB, None).is_ok());
}

// ---------------------------------------------------------------------------
// Portals (`super::super::portals`): nodes beside the VMs in the same tree

mod portal_tests {
    use super::super::super::portals::{self, PortalDesc, PortalError, MAX_PORTALS};
    use super::*;

    fn portal(node: &str, name: &str, ends: &[&str], kib: u32) -> N {
        n(node).p("compatible", s("hv,portal")).p("hv,name", s(name)).p("hv,ends", sl(ends)).p("hv,size", c(&[kib]))
    }

    fn two_vms() -> Vec<N> {
        vec![vm("vm-a", "a", 1, 2048), vm("vm-b", "b", 1, 2048)]
    }

    fn with(portals: Vec<N>) -> Vec<u8> {
        let mut nodes = two_vms();
        nodes.extend(portals);
        tree(nodes)
    }

    fn perr(bytes: &[u8]) -> String {
        match portals::parse(bytes) {
            Ok(p) => panic!("parsed: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_portal_and_its_operations() {
        let d =
            with(vec![portal("portal-ab", "ab", &["a", "b"], 64).p("hv,ops-0", c(&[0, 3, 31])).p("hv,ops-1", c(&[1]))]);
        let p = portals::parse(&d).unwrap();
        assert_eq!(
            p.as_slice(),
            [PortalDesc {
                name: "ab",
                node: "portal-ab",
                ends: ["a", "b"],
                size_bytes: 64 * 1024,
                ops: [1 | 8 | 1 << 31, 2]
            }]
        );
        assert!(p[0].allows(0, 3) && p[0].allows(0, 31) && !p[0].allows(0, 1) && !p[0].allows(0, 32));
        assert!(p[0].allows(1, 1) && !p[0].allows(1, 0) && !p[0].allows(2, 1));
        // VM parsing does not see the portal node, and level one passes.
        let vms = ok(&d);
        assert_eq!(vms.len(), 2);
        assert_eq!(portals::validate(&p, &vms, GIB), Ok(()));
        // No operation listed: none allowed.
        let d = with(vec![portal("p", "quiet", &["b", "a"], 4)]);
        assert_eq!(portals::parse(&d).unwrap()[0].ops, [0, 0]);
    }

    #[test]
    fn level_one_refusals() {
        let d = with(vec![portal("p", "ab", &["a", "c"], 64)]);
        let (p, vms) = (portals::parse(&d).unwrap(), ok(&d));
        let e = portals::validate(&p, &vms, GIB).unwrap_err();
        assert_eq!(e.to_string(), "portal \"ab\": hv,ends names VM \"c\", which the description does not have");
        let d = with(vec![portal("p", "aa", &["a", "a"], 64)]);
        let (p, vms) = (portals::parse(&d).unwrap(), ok(&d));
        assert_eq!(portals::validate(&p, &vms, GIB), Err(PortalError::SameVm { portal: "aa", vm: "a" }));
        let d = with(vec![portal("p1", "one", &["a", "b"], 8), portal("p2", "two", &["a", "b"], 8)]);
        let (p, vms) = (portals::parse(&d).unwrap(), ok(&d));
        assert_eq!(portals::validate(&p, &vms, 16 * 1024), Ok(()));
        assert_eq!(
            portals::validate(&p, &vms, 12 * 1024).unwrap_err().to_string(),
            "portal \"two\": hv,size = 8 KiB does not fit in the 4 KiB of guest RAM the VMs leave"
        );
    }

    #[test]
    fn malformed_portals() {
        let cases: Vec<(N, &str)> = vec![
            (portal("p", "ab", &["a", "b"], 64).without("hv,ends"), "portal \"ab\": hv,ends is missing, but required"),
            (portal("p", "ab", &["a", "b"], 64).without("hv,size"), "portal \"ab\": hv,size is missing, but required"),
            (portal("p", "ab", &["a", "b"], 64).without("hv,name"), "portal \"p\": hv,name is missing, but required"),
            (portal("p", "Bad!", &["a", "b"], 64), "portal \"p\": hv,name must be 1 to 15 characters"),
            (portal("p", "ab", &["a"], 64), "portal \"ab\": hv,ends must be two strings (VM names)"),
            (portal("p", "ab", &["a", "b", "c"], 64), "portal \"ab\": hv,ends must be two strings (VM names)"),
            (portal("p", "ab", &["a", ""], 64), "portal \"ab\": hv,ends must be two strings (VM names)"),
            (
                portal("p", "ab", &["a", "b"], 6),
                "portal \"ab\": hv,size = 6 KiB, but must be a power of two from 4 KiB",
            ),
            (portal("p", "ab", &["a", "b"], 0), "portal \"ab\": hv,size = 0 KiB"),
            (portal("p", "ab", &["a", "b"], 12), "portal \"ab\": hv,size = 12 KiB, but must be a power of two"),
            (portal("p", "ab", &["a", "b"], 32 * 1024), "hv,size = 32768 KiB, but must be"),
            (
                portal("p", "ab", &["a", "b"], 4).p("hv,ops-0", c(&[32])),
                "hv,ops-0 names operation 32, but operations are 0 to 31",
            ),
            (portal("p", "ab", &["a", "b"], 4).p("hv,ops-1", c(&[2, 2])), "hv,ops-1 names operation 2 twice"),
            (portal("p", "ab", &["a", "b"], 4).p("hv,ops-1", vec![0, 0, 1]), "hv,ops-1 must be a list of 32-bit cells"),
            (
                portal("p", "ab", &["a", "b"], 4).p("hv,opz-1", c(&[1])),
                "\"hv,opz-1\" is a property the portal binding does not know",
            ),
            (portal("p", "ab", &["a", "b"], 4).p("hv,size", c(&[8])), "\"hv,size\" is given twice"),
        ];
        for (node, message) in cases {
            let got = perr(&with(vec![node.clone()]));
            assert!(got.contains(message), "{node:?}: `{got}` must contain `{message}`");
        }
        let twice = with(vec![portal("p1", "ab", &["a", "b"], 4), portal("p2", "ab", &["b", "a"], 4)]);
        assert_eq!(perr(&twice), "portal \"ab\": declared twice (hv,name is taken)");
        let many: Vec<N> =
            (0..=MAX_PORTALS).map(|i| portal(&format!("p{i}"), &format!("p{i}"), &["a", "b"], 4)).collect();
        assert_eq!(perr(&with(many)), format!("portal \"p{MAX_PORTALS}\": more than {MAX_PORTALS} portals"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any property values: a clean result or a one-line error, never
        /// a panic.
        #[test]
        fn hostile_portal_values(
            ends in proptest::collection::vec(any::<u8>(), 0..24),
            size in proptest::collection::vec(any::<u8>(), 0..12),
            ops in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let node = n("p").p("compatible", s("hv,portal")).p("hv,name", s("x")).p("hv,ends", ends).p("hv,size", size).p("hv,ops-0", ops);
            let d = with(vec![node]);
            match portals::parse(&d) {
                Ok(p) => {
                    prop_assert_eq!(p.len(), 1);
                    prop_assert!(p[0].size_bytes > 0 && p[0].size_bytes % 4096 == 0);
                    let _ = portals::validate(&p, &ok(&d), GIB);
                }
                Err(e) => prop_assert!(!e.to_string().contains('\n')),
            }
        }
    }
}

#[test]
fn kernel_integrity_is_a_flag_or_emulate() {
    use crate::mbec::Mechanism;
    let one = |v: N| {
        let bytes = tree(vec![v]);
        let descs = ok(&bytes);
        descs.iter().next().map(|d| d.integrity)
    };
    assert_eq!(one(vm("vm@0", "a", 1, 65536)), Some(None));
    assert_eq!(one(vm("vm@0", "a", 1, 65536).p("hv,kernel-integrity", flag())), Some(Some(Mechanism::Auto)));
    assert_eq!(one(vm("vm@0", "a", 1, 65536).p("hv,kernel-integrity", s("emulate"))), Some(Some(Mechanism::Emulated)));
    for bad in [s("yes"), s("emulated"), c(&[1])] {
        assert_eq!(
            err_of(vm("vm@0", "a", 1, 65536).p("hv,kernel-integrity", bad)),
            "VM \"a\": hv,kernel-integrity must be empty (a flag) or \"emulate\""
        );
    }
}
