//! VM descriptions: the nodes under `/chosen` whose `compatible` includes
//! `"hv,vm"`, one per VM the hypervisor runs, in the spirit of Xen's
//! dom0less binding. `docs/vms.md` gives the binding with an
//! example; in short:
//!
//! | property | type | default |
//! | --- | --- | --- |
//! | `hv,name` | string, 1 to 15 of `a-z 0-9 _ -` | required |
//! | `cpus` | u32, 1 to 16 ([`MAX_VCPUS`]) vCPUs | required |
//! | `memory` | KiB as one or two cells, a non-zero multiple of 2048 | required |
//! | `hv,cpu-affinity` | u32 array: the set of physical CPUs the vCPUs may run on | every CPU |
//! | `bootargs` | string | `""` |
//! | `hv,console` | flag | absent |
//! | `hv,kernel`, `hv,initrd` | fw_cfg file name, 1 to 55 bytes | none |
//! | `hv,devices` | string list of host device-tree paths | none |
//! | `hv,spis` | u32 array of SPI INTIDs (32 to 1019) | none |
//! | `hv,autostart` | u32, 0 or 1 | 1 |
//! | `hv,manager` | flag | absent |
//! | `hv,weight` | u32, 1 to 65535: share of CPU time | 256 |
//! | `hv,latency-sensitive` | flag: wake-ups preempt | absent |
//! | `hv,time-slice-us` | u32, 1000 to 100000 microseconds | 10000 |
//! | `hv,kernel-integrity` | flag, or the string `"emulate"`: kernel code integrity | absent |
//!
//! The physical CPUs are shared: the scheduler runs any vCPU of a VM on
//! any CPU of its `hv,cpu-affinity` (every CPU without one), several VMs may
//! name the same CPUs, and a VM may have more vCPUs than CPUs.
//! `hv,weight`, `hv,latency-sensitive` and `hv,time-slice-us` are its
//! parameters for the VM's vCPUs (`docs/scheduling.md` has the rules).
//!
//! plus Xen-style module subnodes (`compatible = "multiboot,kernel"` or
//! `"multiboot,ramdisk"`, one `reg` pair) for images a loader placed in
//! memory, and forwarded virtio devices: subnodes with `compatible =
//! "hv,virtio-mmio"`, `hv,device` (`"block"` or `"console"`) and
//! `hv,backend` (the name of the VM that serves it, not the VM itself),
//! optionally `hv,timeout-ms` (how long an access may wait for it):
//! the VM sees a `virtio,mmio` device whose register accesses the service
//! VM answers (`crate::forward`, `docs/service-vm.md`).
//!
//! Like the rest of [`crate::board`], this parses hostile input: nothing
//! panics, and every rejection is a [`VmError`] whose message is one line
//! naming the VM (its `hv,name`, or its node name before the name is known)
//! and the property at fault. The parser is strict: a property this binding
//! does not know (a typo such as `hv,consle`), a subnode that is not a
//! module, or a property given twice is an error rather than ignored.
//!
//! Two steps: [`parse`] checks everything the description says about itself
//! (types, ranges, and across VMs: unique names, no device or SPI given to
//! two VMs); [`VmDescs::validate`] checks it against the machine (CPUs,
//! RAM, the host device tree) and returns the set of physical CPUs each VM
//! may run on.
//!
//! There is no heap: lists are fixed-capacity [`List`]s and the strings
//! borrow the DTB bytes.

use core::fmt;
use core::ops::Deref;

use super::dt::{be32, Dtb, Node};
use super::{cell_bytes, compatible_with, read_cells, BoardError, List, MemRegion, MAX_CPUS};
use crate::vgic::MAX_VCPUS;

/// The `compatible` string that marks a VM node under `/chosen`.
pub const COMPATIBLE: &str = "hv,vm";
/// `compatible` of a module subnode holding the VM's kernel.
pub const MULTIBOOT_KERNEL: &str = "multiboot,kernel";
/// `compatible` of a module subnode holding the VM's initrd.
pub const MULTIBOOT_RAMDISK: &str = "multiboot,ramdisk";
/// `compatible` of a forwarded virtio device subnode.
pub const VIRTIO_MMIO: &str = "hv,virtio-mmio";
/// Most forwarded virtio devices of one VM.
pub const MAX_VIRTIO: usize = crate::forward::MAX_DEVICES;
/// `hv,timeout-ms` when absent: 30 s.
pub const DEFAULT_VIRTIO_TIMEOUT_MS: u32 = 30_000;
/// The range `hv,timeout-ms` may take: 1 ms to an hour.
pub const VIRTIO_TIMEOUT_MS: core::ops::RangeInclusive<u32> = 1..=3_600_000;
/// Most VMs a description holds.
pub const MAX_VMS: usize = 8;
/// Most `hv,devices` entries of one VM.
pub const MAX_VM_DEVICES: usize = 8;
/// Most `hv,spis` entries of one VM.
pub const MAX_VM_SPIS: usize = 32;
/// Longest `hv,name`. The name prefixes the VM's console lines and is what
/// tools call the VM, so it is short and plain: `a-z`, `0-9`, `_` and `-`.
pub const VM_NAME_MAX: usize = 15;
/// Longest fw_cfg file name (`hv,kernel`, `hv,initrd`): a fw_cfg directory
/// entry holds 56 bytes of name including its terminating NUL.
pub const FW_CFG_NAME_MAX: usize = 55;
/// Guest RAM is a multiple of 2 MiB so guest RAM can be mapped with block
/// entries: a stage-2 level-2 block entry maps 2 MiB with a 4 KiB granule,
/// which keeps the stage-2 tables small and the TLB reach large. `memory`
/// is in KiB, so this is 2048.
pub const MEMORY_ALIGN_KIB: u64 = 2048;
/// `hv,weight` when absent.
pub const DEFAULT_WEIGHT: u32 = 256;
/// Largest `hv,weight`.
pub const MAX_WEIGHT: u32 = 65535;
/// `hv,time-slice-us` when absent: 10 ms.
pub const DEFAULT_TIME_SLICE_US: u32 = 10_000;
/// Shortest `hv,time-slice-us`: 1 ms.
pub const MIN_TIME_SLICE_US: u32 = 1_000;
/// Longest `hv,time-slice-us`: 100 ms.
pub const MAX_TIME_SLICE_US: u32 = 100_000;
/// The SPI INTIDs a GIC can have: 32 to 1019.
pub const SPI_RANGE: core::ops::RangeInclusive<u32> = 32..=1019;

/// A set of physical CPU indices: slots in the host's `/cpus` order, the
/// boot CPU being 0 (as [`super::Board::cpus`]), no index twice. An
/// `hv,cpu-affinity` keeps the description's order; a [`Placement`]'s sets
/// are in ascending order.
pub type CpuSet = List<u32, MAX_CPUS>;
/// One [`CpuSet`] per VM, in the order of [`VmDescs`]: the physical CPUs
/// the VM's vCPUs may run on, in ascending order and never empty. Any vCPU
/// of the VM may run on any CPU of its set, and the scheduler migrates
/// vCPUs between them; the sets of several VMs may overlap, and a set may
/// have fewer CPUs than the VM has vCPUs.
pub type Placement = List<CpuSet, MAX_VMS>;

/// Where a kernel or initrd comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Image<'a> {
    /// No kernel: the VM runs the built-in guest-stub (never an initrd).
    #[default]
    GuestStub,
    /// A QEMU fw_cfg file of this name (`hv,kernel`, `hv,initrd`).
    FwCfg(&'a str),
    /// Memory a loader filled (a `multiboot,kernel`/`multiboot,ramdisk`
    /// subnode's `reg`), as given: not checked against RAM here.
    Memory(MemRegion),
}

/// One VM, as its `/chosen` node describes it. (`Default` is the empty
/// value fixed-capacity lists need, not the binding's defaults.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmDesc<'a> {
    /// `hv,name`.
    pub name: &'a str,
    /// The node's name under `/chosen` (e.g. `vm@0`).
    pub node: &'a str,
    /// `cpus`: the number of vCPUs, 1 to [`MAX_VCPUS`]. It may exceed the
    /// machine's CPUs: the vCPUs share them.
    pub cpus: u32,
    /// `hv,cpu-affinity`: the set of physical CPUs the VM's vCPUs may run
    /// on, in the description's order: at least one, no index twice, any
    /// number of them (fewer than `cpus` too). Any vCPU may run on any of
    /// them, and other VMs may name the same CPUs. `None`: every CPU of the
    /// machine (see [`VmDescs::placement`]).
    pub affinity: Option<CpuSet>,
    /// `memory`, converted from KiB: a non-zero multiple of 2 MiB.
    pub memory_bytes: u64,
    /// `bootargs`: the guest kernel command line (for the guest-stub, its
    /// words); `""` if absent.
    pub bootargs: &'a str,
    /// `hv,console`: the VM gets an emulated PL011.
    pub console: bool,
    /// `hv,kernel` or a `multiboot,kernel` subnode; else the guest-stub.
    pub kernel: Image<'a>,
    /// `hv,initrd` or a `multiboot,ramdisk` subnode (never
    /// [`Image::GuestStub`]; only with a kernel).
    pub initrd: Option<Image<'a>>,
    /// `hv,devices`: host device-tree paths the VM owns, each starting with
    /// `/`.
    pub devices: List<&'a str, MAX_VM_DEVICES>,
    /// `hv,spis`: SPI INTIDs the VM owns, in [`SPI_RANGE`].
    pub spis: List<u32, MAX_VM_SPIS>,
    /// `hv,autostart` (default 1): started at boot, or only described.
    pub autostart: bool,
    /// `hv,manager`: the VM may manage others.
    pub manager: bool,
    /// `hv,weight`: 1 to [`MAX_WEIGHT`] (default [`DEFAULT_WEIGHT`]). Each
    /// of the VM's vCPUs gets a share of CPU time proportional to its weight
    /// among the vCPUs competing for the same physical CPU.
    pub weight: u32,
    /// `hv,latency-sensitive`: when one of the VM's vCPUs wakes up (an
    /// interrupt for an idle vCPU), it preempts the vCPU running on the same
    /// physical CPU if that vCPU's VM is not latency-sensitive, as long as
    /// the woken vCPU is within its fair share of CPU time (its weight).
    pub latency_sensitive: bool,
    /// `hv,time-slice-us`: how long, in microseconds, one of the VM's vCPUs
    /// runs before the scheduler may switch to another vCPU on its CPU,
    /// [`MIN_TIME_SLICE_US`] to [`MAX_TIME_SLICE_US`] (default
    /// [`DEFAULT_TIME_SLICE_US`]).
    pub time_slice_us: u32,
    /// Its `hv,virtio-mmio` subnodes, in node order (a device's index is
    /// its place here).
    pub virtio: List<VirtioDesc<'a>, MAX_VIRTIO>,
    /// `hv,kernel-integrity`: empty (FEAT_XNX where the CPU has it) or
    /// `"emulate"` (the emulation everywhere): the VM's kernel code
    /// integrity, as the `integrity` command-line word gives the only VM.
    pub integrity: Option<crate::mbec::Mechanism>,
}

/// A forwarded virtio device of a VM: an `hv,virtio-mmio` subnode.
/// (`Default` is the empty value fixed-capacity lists need.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioDesc<'a> {
    /// The subnode's name.
    pub node: &'a str,
    /// `hv,device`.
    pub device: crate::forward::DeviceType,
    /// `hv,backend`: the VM that serves it (another VM of the description).
    pub backend: &'a str,
    /// `hv,timeout-ms`: how long one access may wait for the service VM
    /// before the device fails ([`DEFAULT_VIRTIO_TIMEOUT_MS`]).
    pub timeout_ms: u32,
}

impl VmDesc<'_> {
    /// `memory` as the node gave it, in KiB.
    pub const fn memory_kib(&self) -> u64 {
        self.memory_bytes / 1024
    }
}

/// The VMs of a device tree, in node order. Built by [`parse`], so every
/// entry is well-formed, names are unique and no device or SPI is given
/// twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmDescs<'a> {
    vms: List<VmDesc<'a>, MAX_VMS>,
}

impl<'a> Deref for VmDescs<'a> {
    type Target = [VmDesc<'a>];
    fn deref(&self) -> &[VmDesc<'a>] {
        self.vms.as_slice()
    }
}

impl<'a> VmDescs<'a> {
    /// The VM called `name`.
    pub fn by_name(&self, name: &str) -> Option<&VmDesc<'a>> {
        self.iter().find(|vm| vm.name == name)
    }

    /// The set of physical CPUs each VM's vCPUs may run on, for a machine
    /// of `cpu_count` CPUs: its `hv,cpu-affinity` in ascending order, or
    /// every CPU (0 to `cpu_count - 1`) without one. At most [`MAX_CPUS`]
    /// count (a [`super::Board`] never has more), and at least one (the
    /// CPU running this), so no set is empty.
    ///
    /// CPUs are shared: the sets of several VMs may overlap, and a VM may
    /// have more vCPUs than its set has CPUs; the scheduler shares each CPU
    /// among the vCPUs that may run on it. Every VM has a set, those with
    /// `hv,autostart = <0>` too. The one error: an `hv,cpu-affinity` entry
    /// the machine lacks ([`VmError::AffinityOutOfRange`]).
    pub fn placement(&self, cpu_count: usize) -> Result<Placement, VmError<'a>> {
        let cpu_count = cpu_count.clamp(1, MAX_CPUS);
        let mut placement = Placement::new();
        for vm in self.iter() {
            let mut set = CpuSet::new();
            match vm.affinity {
                Some(affinity) => {
                    for &cpu in affinity.iter() {
                        if usize::try_from(cpu).map_or(true, |c| c >= cpu_count) {
                            return Err(VmError::AffinityOutOfRange { vm: vm.name, cpu, cpu_count });
                        }
                        // Cannot fail: the affinity is a CpuSet too.
                        let _ = set.push(cpu);
                    }
                    set.sort_unstable();
                }
                None => {
                    for cpu in (0u32..).take(cpu_count) {
                        // Cannot fail: cpu_count is at most MAX_CPUS.
                        let _ = set.push(cpu);
                    }
                }
            }
            // Cannot fail: there are at most MAX_VMS VMs.
            let _ = placement.push(set);
        }
        Ok(placement)
    }

    /// Checks the description against the machine: `cpu_count` physical
    /// CPUs, `ram_available` bytes of RAM left for VMs, and, if given, the
    /// host's device tree `host_dtb`, which must have a node for every
    /// `hv,devices` path (two paths naming the same node, such as `/pl031`
    /// and `/pl031@9010000` in two VMs, count as the device given twice).
    /// Returns the set of physical CPUs each VM may run on
    /// ([`VmDescs::placement`]).
    ///
    /// The checks, in order: each VM's `hv,cpu-affinity` against
    /// `cpu_count` (CPUs are shared, so neither the VMs' `cpus` nor the
    /// overlap of their affinities is limited by `cpu_count`), the memory of
    /// the VMs in order against `ram_available`, the devices.
    pub fn validate(
        &self,
        cpu_count: usize,
        ram_available: u64,
        host_dtb: Option<&[u8]>,
    ) -> Result<Placement, VmError<'a>> {
        let placement = self.placement(cpu_count)?;
        // Every vCPU that may run on a CPU must fit in its run queue.
        for cpu in 0..u32::try_from(cpu_count.min(MAX_CPUS)).unwrap_or(0) {
            let mut vcpus = 0usize;
            for (vm, set) in self.iter().zip(placement.iter()) {
                if set.contains(&cpu) {
                    vcpus = vcpus.saturating_add(usize::try_from(vm.cpus).unwrap_or(usize::MAX));
                    if vcpus > crate::sched::MAX_QUEUED {
                        return Err(VmError::CpuOvercommitted { vm: vm.name, cpu, vcpus });
                    }
                }
            }
        }
        let mut left = ram_available;
        for vm in self.iter() {
            left = left.checked_sub(vm.memory_bytes).ok_or(VmError::MemoryDoesNotFit {
                vm: vm.name,
                kib: vm.memory_kib(),
                left_bytes: left,
            })?;
        }
        if let Some(host) = host_dtb {
            let host = Dtb::new(host).map_err(VmError::HostDtb)?;
            // (node offset, VM, path) of every device resolved so far.
            let mut seen: List<(usize, &str, &str), { MAX_VMS * MAX_VM_DEVICES }> = List::new();
            for vm in self.iter() {
                for &path in &vm.devices {
                    let node = host.find_path(path).ok_or(VmError::DeviceNotFound { vm: vm.name, path })?;
                    if let Some(&(_, other, other_path)) = seen.iter().find(|(begin, _, _)| *begin == node.begin) {
                        return Err(VmError::DeviceGivenTwice { vm: vm.name, path, other, other_path });
                    }
                    seen.push((node.begin, vm.name, path)).map_err(|_| VmError::TooManyItems {
                        vm: vm.name,
                        property: "hv,devices",
                        capacity: MAX_VM_DEVICES,
                    })?;
                }
            }
        }
        Ok(placement)
    }
}

/// Why a VM description was rejected. Each message is one line; names and
/// paths from the DTB are printed quoted and escaped, so a hostile string
/// cannot break the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmError<'a> {
    /// The DTB holding the descriptions is not a valid device tree.
    Dtb(BoardError),
    /// The host DTB given to [`VmDescs::validate`] is not a valid device
    /// tree.
    HostDtb(BoardError),
    /// More than [`MAX_VMS`] VM nodes; `vm` is the node name of the first
    /// one too many.
    TooManyVms { vm: &'a str },
    /// A required property is absent.
    MissingProperty { vm: &'a str, property: &'static str },
    /// A property has a length its type does not allow.
    BadLength { vm: &'a str, property: &'static str, len: usize, expected: &'static str },
    /// A string property is not one NUL-terminated UTF-8 string.
    NotAString { vm: &'a str, property: &'static str },
    /// `hv,name` is empty, longer than [`VM_NAME_MAX`] or has a character
    /// outside `a-z 0-9 _ -`. `vm` is the node name.
    BadName { vm: &'a str, name: &'a str },
    /// A list property has more entries than its capacity.
    TooManyItems { vm: &'a str, property: &'static str, capacity: usize },
    /// A property this binding does not know, in the VM node or in one of
    /// its module subnodes (`node`).
    UnknownProperty { vm: &'a str, node: &'a str, property: &'a str },
    /// A property appears twice in one node.
    PropertyGivenTwice { vm: &'a str, node: &'a str, property: &'a str },
    /// A subnode that is not a `multiboot,kernel`/`multiboot,ramdisk`
    /// module or an `hv,virtio-mmio` device.
    UnknownSubnode { vm: &'a str, node: &'a str },
    /// An `hv,virtio-mmio` subnode's property is missing or wrong.
    BadVirtio { vm: &'a str, node: &'a str, reason: &'static str },
    /// An `hv,virtio-mmio` subnode's `hv,backend` names no VM of the
    /// description, or the VM itself.
    BadBackend { vm: &'a str, node: &'a str, backend: &'a str },
    /// `cpus = <0>`.
    NoCpus { vm: &'a str },
    /// `memory` is zero or not a multiple of [`MEMORY_ALIGN_KIB`].
    BadMemory { vm: &'a str, kib: u64 },
    /// `memory` in bytes does not fit 64 bits.
    MemoryTooLarge { vm: &'a str, kib: u64 },
    /// `hv,weight` outside 1 to [`MAX_WEIGHT`].
    BadWeight { vm: &'a str, weight: u32 },
    /// `hv,time-slice-us` outside [`MIN_TIME_SLICE_US`] to
    /// [`MAX_TIME_SLICE_US`].
    BadTimeSlice { vm: &'a str, us: u32 },
    /// `hv,autostart` other than 0 or 1.
    BadAutostart { vm: &'a str, value: u32 },
    /// `hv,kernel-integrity` is neither empty nor `"emulate"`.
    BadIntegrity { vm: &'a str },
    /// `hv,kernel` or `hv,initrd` is empty or longer than
    /// [`FW_CFG_NAME_MAX`].
    BadFwCfgName { vm: &'a str, property: &'static str, len: usize },
    /// The kernel or initrd (`what`) has two sources (`how`).
    ImageGivenTwice { vm: &'a str, what: &'static str, how: &'static str },
    /// A module subnode's `reg` is missing or wrong.
    BadModule { vm: &'a str, node: &'a str, reason: &'static str },
    /// An initrd (from `property`) for a VM with no kernel.
    InitrdWithoutKernel { vm: &'a str, property: &'static str },
    /// An `hv,devices` entry that does not start with `/`, or is `/`.
    BadDevicePath { vm: &'a str, path: &'a str },
    /// An `hv,spis` entry outside [`SPI_RANGE`].
    BadSpi { vm: &'a str, intid: u32 },
    /// `hv,cpu-affinity` names a CPU twice.
    DuplicateAffinity { vm: &'a str, cpu: u32 },
    /// Two VM nodes (`first_node`, `second_node`) have the `hv,name` `vm`.
    DuplicateName { vm: &'a str, first_node: &'a str, second_node: &'a str },
    /// `hv,devices` of `vm` and of `other` (the same VM if listed twice in
    /// one) name the same device, as `path` and `other_path`.
    DeviceGivenTwice { vm: &'a str, path: &'a str, other: &'a str, other_path: &'a str },
    /// `hv,spis` of `vm` and of `other` (maybe the same VM) name `intid`.
    SpiGivenTwice { vm: &'a str, intid: u32, other: &'a str },
    /// `cpus` exceeds [`MAX_VCPUS`], the most vCPUs a VM has.
    TooManyCpus { vm: &'a str, cpus: u32 },
    /// `hv,cpu-affinity` names a CPU the machine (of `cpu_count` CPUs) does
    /// not have.
    AffinityOutOfRange { vm: &'a str, cpu: u32, cpu_count: usize },
    /// With `vm`, `vcpus` vCPUs may run on `cpu`: more than one CPU's run
    /// queue holds (`crate::sched::MAX_QUEUED`).
    CpuOvercommitted { vm: &'a str, cpu: u32, vcpus: usize },
    /// The VM's memory exceeds what the VMs before it left of the RAM.
    MemoryDoesNotFit { vm: &'a str, kib: u64, left_bytes: u64 },
    /// An `hv,devices` path names no node of the host device tree.
    DeviceNotFound { vm: &'a str, path: &'a str },
}

/// Prints a byte count as MiB if it is whole MiB, else as KiB (rounded
/// down).
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1024 * 1024;
        if self.0.checked_rem(MIB) == Some(0) {
            write!(f, "{} MiB", self.0 / MIB)
        } else {
            write!(f, "{} KiB", self.0 / 1024)
        }
    }
}

/// `"s"` unless `n` is 1.
fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A string from the DTB in a message: quoted and escaped as `{:?}` does,
/// so a hostile name cannot break the line, and cut after
/// [`super::DT_NAME_MAX`] characters.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for (i, c) in self.0.chars().enumerate() {
            if i >= super::DT_NAME_MAX {
                f.write_str("...")?;
                break;
            }
            write!(f, "{}", c.escape_debug())?;
        }
        f.write_str("\"")
    }
}

impl<'a> VmError<'a> {
    /// The VM the error is about: its `hv,name`, or its node name if the
    /// name is missing or bad. `None` for a DTB that is no device tree.
    pub fn vm(&self) -> Option<&'a str> {
        match *self {
            Self::Dtb(_) | Self::HostDtb(_) => None,
            Self::TooManyVms { vm }
            | Self::MissingProperty { vm, .. }
            | Self::BadLength { vm, .. }
            | Self::NotAString { vm, .. }
            | Self::BadName { vm, .. }
            | Self::TooManyItems { vm, .. }
            | Self::UnknownProperty { vm, .. }
            | Self::PropertyGivenTwice { vm, .. }
            | Self::UnknownSubnode { vm, .. }
            | Self::BadVirtio { vm, .. }
            | Self::BadBackend { vm, .. }
            | Self::NoCpus { vm }
            | Self::BadMemory { vm, .. }
            | Self::MemoryTooLarge { vm, .. }
            | Self::BadWeight { vm, .. }
            | Self::BadTimeSlice { vm, .. }
            | Self::BadAutostart { vm, .. }
            | Self::BadIntegrity { vm }
            | Self::BadFwCfgName { vm, .. }
            | Self::ImageGivenTwice { vm, .. }
            | Self::BadModule { vm, .. }
            | Self::InitrdWithoutKernel { vm, .. }
            | Self::BadDevicePath { vm, .. }
            | Self::BadSpi { vm, .. }
            | Self::DuplicateAffinity { vm, .. }
            | Self::DuplicateName { vm, .. }
            | Self::DeviceGivenTwice { vm, .. }
            | Self::SpiGivenTwice { vm, .. }
            | Self::TooManyCpus { vm, .. }
            | Self::AffinityOutOfRange { vm, .. }
            | Self::CpuOvercommitted { vm, .. }
            | Self::MemoryDoesNotFit { vm, .. }
            | Self::DeviceNotFound { vm, .. } => Some(vm),
        }
    }
}

impl fmt::Display for VmError<'_> {
    /// `VM "<name>": <property> <what is wrong>`, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(vm) = self.vm() {
            write!(f, "VM {}: ", Quoted(vm))?;
        }
        match *self {
            Self::Dtb(e) => write!(f, "VM descriptions: {e}"),
            Self::HostDtb(e) => write!(f, "host device tree (for hv,devices): {e}"),
            Self::TooManyVms { .. } => {
                write!(f, "more than {MAX_VMS} VM nodes in /chosen, the most this firmware holds")
            }
            Self::MissingProperty { property, .. } => write!(f, "{property} is missing, but required"),
            Self::BadLength { property, len, expected, .. } => {
                write!(f, "{property} is {len} bytes long, but must be {expected}")
            }
            Self::NotAString { property, .. } => write!(f, "{property} is not one NUL-terminated UTF-8 string"),
            Self::BadName { name, .. } => {
                write!(f, "hv,name {} must be 1 to {VM_NAME_MAX} characters of a-z, 0-9, '_' and '-'", Quoted(name))
            }
            Self::TooManyItems { property, capacity, .. } => {
                write!(f, "{property} has more than {capacity} entries, the most this firmware holds")
            }
            Self::UnknownProperty { node, property, .. } => {
                write!(f, "node {} has property {}, which the VM binding does not know", Quoted(node), Quoted(property))
            }
            Self::PropertyGivenTwice { node, property, .. } => {
                write!(f, "node {} has property {} twice", Quoted(node), Quoted(property))
            }
            Self::UnknownSubnode { node, .. } => write!(
                f,
                "subnode {} is not a module (compatible {MULTIBOOT_KERNEL} or {MULTIBOOT_RAMDISK}) \
                 or a virtio device (compatible {VIRTIO_MMIO})",
                Quoted(node)
            ),
            Self::BadVirtio { node, reason, .. } => write!(f, "virtio device {}: {reason}", Quoted(node)),
            Self::BadBackend { vm, node, backend } => {
                if vm == backend {
                    write!(f, "virtio device {}: hv,backend names the VM itself", Quoted(node))
                } else {
                    write!(f, "virtio device {}: hv,backend {} names no VM", Quoted(node), Quoted(backend))
                }
            }
            Self::NoCpus { .. } => write!(f, "cpus = 0, but a VM needs at least 1 vCPU"),
            Self::BadMemory { kib, .. } => {
                write!(f, "memory = {kib} KiB, but must be a non-zero multiple of {MEMORY_ALIGN_KIB} KiB (2 MiB)")
            }
            Self::MemoryTooLarge { kib, .. } => write!(f, "memory = {kib} KiB is more bytes than 64 bits count"),
            Self::BadWeight { weight, .. } => write!(f, "hv,weight = {weight}, but must be 1 to {MAX_WEIGHT}"),
            Self::BadTimeSlice { us, .. } => write!(
                f,
                "hv,time-slice-us = {us}, but must be {MIN_TIME_SLICE_US} to {MAX_TIME_SLICE_US} (microseconds)"
            ),
            Self::BadAutostart { value, .. } => write!(f, "hv,autostart = {value}, but must be 0 or 1"),
            Self::BadIntegrity { .. } => f.write_str("hv,kernel-integrity must be empty (a flag) or \"emulate\""),
            Self::BadFwCfgName { property, len, .. } => {
                write!(f, "{property} is a {len}-byte name, but fw_cfg file names are 1 to {FW_CFG_NAME_MAX} bytes")
            }
            Self::ImageGivenTwice { what, how, .. } => write!(f, "the {what} is given twice: {how}"),
            Self::BadModule { node, reason, .. } => write!(f, "module {}: reg {reason}", Quoted(node)),
            Self::InitrdWithoutKernel { property, .. } => write!(
                f,
                "{property} gives an initrd, but the VM has no kernel (hv,kernel or a {MULTIBOOT_KERNEL} subnode)"
            ),
            Self::BadDevicePath { path, .. } => {
                write!(f, "hv,devices entry {} is not the absolute path of a device node", Quoted(path))
            }
            Self::BadSpi { intid, .. } => write!(
                f,
                "hv,spis names INTID {intid}, which is not an SPI ({} to {})",
                SPI_RANGE.start(),
                SPI_RANGE.end()
            ),
            Self::DuplicateAffinity { cpu, .. } => write!(f, "hv,cpu-affinity names CPU {cpu} twice"),
            Self::DuplicateName { first_node, second_node, .. } => {
                write!(f, "hv,name is given to two nodes, {} and {}", Quoted(first_node), Quoted(second_node))
            }
            Self::DeviceGivenTwice { vm, path, other, other_path } => {
                write!(f, "hv,devices entry {} ", Quoted(path))?;
                if path != other_path {
                    write!(f, "names the same node as {}, ", Quoted(other_path))?;
                }
                if vm == other {
                    write!(f, "is listed twice")
                } else {
                    write!(f, "is also given to VM {}", Quoted(other))
                }
            }
            Self::SpiGivenTwice { vm, intid, other } => {
                if vm == other {
                    write!(f, "hv,spis names INTID {intid} twice")
                } else {
                    write!(f, "hv,spis names INTID {intid}, which is also given to VM {}", Quoted(other))
                }
            }
            Self::TooManyCpus { cpus, .. } => write!(f, "cpus = {cpus}, but a VM has at most {MAX_VCPUS} vCPUs"),
            Self::AffinityOutOfRange { cpu, cpu_count, .. } => write!(
                f,
                "hv,cpu-affinity names CPU {cpu}, but the machine has {cpu_count} CPU{} (0 to {})",
                plural(cpu_count),
                cpu_count.saturating_sub(1)
            ),
            Self::CpuOvercommitted { cpu, vcpus, .. } => write!(
                f,
                "with its vCPUs, {vcpus} vCPUs may run on CPU {cpu}, but a CPU runs at most {}",
                crate::sched::MAX_QUEUED
            ),
            Self::MemoryDoesNotFit { kib, left_bytes, .. } => {
                write!(f, "memory {kib} KiB does not fit: {} of RAM is left for VMs", Size(left_bytes))
            }
            Self::DeviceNotFound { path, .. } => {
                write!(f, "hv,devices entry {} names no node of the host device tree", Quoted(path))
            }
        }
    }
}

impl core::error::Error for VmError<'_> {}

// ---------------------------------------------------------------------------
// Parsing

/// Parses the VM nodes under `/chosen` of `dtb` (the bytes of a whole DTB;
/// bytes past its `totalsize` are ignored). `Ok` with no VMs if there is no
/// `/chosen` or it has no `hv,vm` node; nodes not compatible with `hv,vm`
/// are left alone.
pub fn parse(dtb: &[u8]) -> Result<VmDescs<'_>, VmError<'_>> {
    let dtb = Dtb::new(dtb).map_err(VmError::Dtb)?;
    let mut vms = List::<VmDesc<'_>, MAX_VMS>::new();
    let Some(chosen) = dtb.find_path("/chosen") else {
        return Ok(VmDescs { vms });
    };
    for node in dtb.children(&chosen) {
        if !dtb.prop(&node, "compatible").is_some_and(|c| compatible_with(c, &[COMPATIBLE])) {
            continue;
        }
        if vms.len() >= MAX_VMS {
            return Err(VmError::TooManyVms { vm: node.name });
        }
        let vm = parse_vm(&dtb, &node)?;
        check_against_earlier(&vm, &vms)?;
        vms.push(vm).map_err(|_| VmError::TooManyVms { vm: node.name })?;
    }
    // Every device is served by another VM of the description.
    for vm in vms.iter() {
        for v in vm.virtio.iter() {
            if v.backend == vm.name || !vms.iter().any(|other| other.name == v.backend) {
                return Err(VmError::BadBackend { vm: vm.name, node: v.node, backend: v.backend });
            }
        }
    }
    Ok(VmDescs { vms })
}

/// The checks across VMs that need only the description: a unique name,
/// no device path or SPI twice (in `vm` itself or against `earlier`).
fn check_against_earlier<'a>(vm: &VmDesc<'a>, earlier: &[VmDesc<'a>]) -> Result<(), VmError<'a>> {
    let who = vm.name;
    if let Some(first) = earlier.iter().find(|e| e.name == vm.name) {
        return Err(VmError::DuplicateName { vm: who, first_node: first.node, second_node: vm.node });
    }
    for (i, &path) in vm.devices.iter().enumerate() {
        let twice = |other: &'a str| VmError::DeviceGivenTwice { vm: who, path, other, other_path: path };
        if vm.devices.iter().take(i).any(|&p| p == path) {
            return Err(twice(vm.name));
        }
        if let Some(other) = earlier.iter().find(|e| e.devices.contains(&path)) {
            return Err(twice(other.name));
        }
    }
    for (i, &intid) in vm.spis.iter().enumerate() {
        let twice = |other: &'a str| VmError::SpiGivenTwice { vm: who, intid, other };
        if vm.spis.iter().take(i).any(|&s| s == intid) {
            return Err(twice(vm.name));
        }
        if let Some(other) = earlier.iter().find(|e| e.spis.contains(&intid)) {
            return Err(twice(other.name));
        }
    }
    Ok(())
}

/// Properties any node may have that the binding does not interpret.
const STANDARD: &[&str] = &["compatible", "#address-cells", "#size-cells", "phandle", "linux,phandle", "name"];

/// Whether `hv,name` is 1 to [`VM_NAME_MAX`] characters of `a-z 0-9 _ -`.
fn valid_name(name: &str) -> bool {
    (1..=VM_NAME_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A property holding exactly one NUL-terminated UTF-8 string.
fn string<'a>(vm: &'a str, property: &'static str, value: &'a [u8]) -> Result<&'a str, VmError<'a>> {
    let bad = VmError::NotAString { vm, property };
    let (&last, text) = value.split_last().ok_or(bad)?;
    if last != 0 || text.contains(&0) {
        return Err(bad);
    }
    core::str::from_utf8(text).map_err(|_| bad)
}

/// A property holding one 32-bit cell.
fn u32_cell<'a>(vm: &'a str, property: &'static str, value: &[u8]) -> Result<u32, VmError<'a>> {
    match value.len() {
        4 => be32(value, 0),
        _ => None,
    }
    .ok_or(VmError::BadLength { vm, property, len: value.len(), expected: "one 32-bit cell (4 bytes)" })
}

/// A property holding a list of 32-bit cells (`nonempty`: at least one).
fn u32_cells<'a, const N: usize>(
    vm: &'a str,
    property: &'static str,
    value: &[u8],
    nonempty: bool,
) -> Result<List<u32, N>, VmError<'a>> {
    if value.len().checked_rem(4) != Some(0) || (nonempty && value.is_empty()) {
        let expected = if nonempty { "a non-empty list of 32-bit cells" } else { "a list of 32-bit cells" };
        return Err(VmError::BadLength { vm, property, len: value.len(), expected });
    }
    let mut list = List::new();
    for cell in value.chunks_exact(4) {
        let v = be32(cell, 0).ok_or(VmError::BadLength { vm, property, len: value.len(), expected: "32-bit cells" })?;
        list.push(v).map_err(|_| VmError::TooManyItems { vm, property, capacity: N })?;
    }
    Ok(list)
}

/// An empty property used as a flag: present means true.
fn flag<'a>(vm: &'a str, property: &'static str, value: &[u8]) -> Result<bool, VmError<'a>> {
    if value.is_empty() {
        Ok(true)
    } else {
        Err(VmError::BadLength { vm, property, len: value.len(), expected: "empty (a flag)" })
    }
}

/// `memory`: KiB as one or two cells, to bytes.
fn memory<'a>(vm: &'a str, value: &[u8]) -> Result<u64, VmError<'a>> {
    let kib = match value.len() {
        4 => be32(value, 0).map(u64::from),
        8 => super::dt::be64(value, 0),
        _ => None,
    }
    .ok_or(VmError::BadLength { vm, property: "memory", len: value.len(), expected: "one or two 32-bit cells" })?;
    if kib == 0 || kib.checked_rem(MEMORY_ALIGN_KIB) != Some(0) {
        return Err(VmError::BadMemory { vm, kib });
    }
    kib.checked_mul(1024).ok_or(VmError::MemoryTooLarge { vm, kib })
}

/// `hv,kernel`/`hv,initrd`: a fw_cfg file name.
fn fw_cfg_name<'a>(vm: &'a str, property: &'static str, value: &'a [u8]) -> Result<&'a str, VmError<'a>> {
    let name = string(vm, property, value)?;
    if name.is_empty() || name.len() > FW_CFG_NAME_MAX {
        return Err(VmError::BadFwCfgName { vm, property, len: name.len() });
    }
    Ok(name)
}

/// `hv,devices`: NUL-terminated strings, each an absolute path other than
/// `/` (an empty value is an empty list).
fn devices<'a>(vm: &'a str, value: &'a [u8]) -> Result<List<&'a str, MAX_VM_DEVICES>, VmError<'a>> {
    let mut list = List::new();
    if value.is_empty() {
        return Ok(list);
    }
    let not_strings = VmError::NotAString { vm, property: "hv,devices" };
    let (&last, body) = value.split_last().ok_or(not_strings)?;
    if last != 0 {
        return Err(not_strings);
    }
    for entry in body.split(|&b| b == 0) {
        let path = core::str::from_utf8(entry).map_err(|_| not_strings)?;
        if !path.starts_with('/') || path.len() < 2 {
            return Err(VmError::BadDevicePath { vm, path });
        }
        list.push(path).map_err(|_| VmError::TooManyItems { vm, property: "hv,devices", capacity: MAX_VM_DEVICES })?;
    }
    Ok(list)
}

/// Whether `node` has a property named like the one at position `index`
/// of its property list, earlier in that list.
fn repeated(dtb: &Dtb<'_>, node: &Node<'_>, index: usize, name: &str) -> bool {
    dtb.props(node).take(index).any(|(n, _)| n == name)
}

/// Where a VM's kernel or initrd came from so far.
#[derive(Clone, Copy)]
struct Found<'a> {
    image: Option<Image<'a>>,
    /// The property or subnode kind that gave `image`.
    from: &'static str,
}

impl<'a> Found<'a> {
    const NONE: Found<'static> = Found { image: None, from: "" };

    /// Records `image` from `from`, or reports it as the second one.
    fn set(
        &mut self,
        vm: &'a str,
        what: &'static str,
        image: Image<'a>,
        from: &'static str,
    ) -> Result<(), VmError<'a>> {
        if self.image.is_some() {
            let how = match (self.from, from) {
                ("hv,kernel", _) | (_, "hv,kernel") => "hv,kernel and a multiboot,kernel subnode",
                ("hv,initrd", _) | (_, "hv,initrd") => "hv,initrd and a multiboot,ramdisk subnode",
                (_, "multiboot,kernel") => "two multiboot,kernel subnodes",
                _ => "two multiboot,ramdisk subnodes",
            };
            return Err(VmError::ImageGivenTwice { vm, what, how });
        }
        *self = Found { image: Some(image), from };
        Ok(())
    }
}

fn parse_vm<'a>(dtb: &Dtb<'a>, node: &Node<'a>) -> Result<VmDesc<'a>, VmError<'a>> {
    let node_name = node.name;
    let name = dtb
        .prop(node, "hv,name")
        .ok_or(VmError::MissingProperty { vm: node_name, property: "hv,name" })
        .and_then(|v| string(node_name, "hv,name", v))?;
    if !valid_name(name) {
        return Err(VmError::BadName { vm: node_name, name });
    }
    let who = name;
    let mut vm = VmDesc {
        name,
        node: node.name,
        autostart: true,
        weight: DEFAULT_WEIGHT,
        time_slice_us: DEFAULT_TIME_SLICE_US,
        ..VmDesc::default()
    };
    let (mut cpus, mut memory_bytes) = (None, None);
    let (mut kernel, mut initrd) = (Found::NONE, Found::NONE);
    for (index, (prop, value)) in dtb.props(node).enumerate() {
        if repeated(dtb, node, index, prop) {
            return Err(VmError::PropertyGivenTwice { vm: who, node: node_name, property: prop });
        }
        match prop {
            "hv,name" => {}
            "cpus" => cpus = Some(u32_cell(who, "cpus", value)?),
            "memory" => memory_bytes = Some(memory(who, value)?),
            "hv,cpu-affinity" => {
                let list: CpuSet = u32_cells(who, "hv,cpu-affinity", value, true)?;
                for (i, &cpu) in list.iter().enumerate() {
                    if list.iter().take(i).any(|&x| x == cpu) {
                        return Err(VmError::DuplicateAffinity { vm: who, cpu });
                    }
                }
                vm.affinity = Some(list);
            }
            "bootargs" => vm.bootargs = string(who, "bootargs", value)?,
            "hv,console" => vm.console = flag(who, "hv,console", value)?,
            "hv,kernel" => {
                let file = fw_cfg_name(who, "hv,kernel", value)?;
                kernel.set(who, "kernel", Image::FwCfg(file), "hv,kernel")?;
            }
            "hv,initrd" => {
                let file = fw_cfg_name(who, "hv,initrd", value)?;
                initrd.set(who, "initrd", Image::FwCfg(file), "hv,initrd")?;
            }
            "hv,devices" => vm.devices = devices(who, value)?,
            "hv,spis" => {
                vm.spis = u32_cells(who, "hv,spis", value, false)?;
                if let Some(&intid) = vm.spis.iter().find(|s| !SPI_RANGE.contains(s)) {
                    return Err(VmError::BadSpi { vm: who, intid });
                }
            }
            "hv,autostart" => {
                vm.autostart = match u32_cell(who, "hv,autostart", value)? {
                    0 => false,
                    1 => true,
                    value => return Err(VmError::BadAutostart { vm: who, value }),
                }
            }
            "hv,manager" => vm.manager = flag(who, "hv,manager", value)?,
            "hv,kernel-integrity" => {
                vm.integrity = Some(match value {
                    [] => crate::mbec::Mechanism::Auto,
                    b"emulate\0" => crate::mbec::Mechanism::Emulated,
                    _ => return Err(VmError::BadIntegrity { vm: who }),
                })
            }
            "hv,weight" => {
                vm.weight = u32_cell(who, "hv,weight", value)?;
                if !(1..=MAX_WEIGHT).contains(&vm.weight) {
                    return Err(VmError::BadWeight { vm: who, weight: vm.weight });
                }
            }
            "hv,latency-sensitive" => vm.latency_sensitive = flag(who, "hv,latency-sensitive", value)?,
            "hv,time-slice-us" => {
                vm.time_slice_us = u32_cell(who, "hv,time-slice-us", value)?;
                if !(MIN_TIME_SLICE_US..=MAX_TIME_SLICE_US).contains(&vm.time_slice_us) {
                    return Err(VmError::BadTimeSlice { vm: who, us: vm.time_slice_us });
                }
            }
            p if STANDARD.contains(&p) => {}
            _ => return Err(VmError::UnknownProperty { vm: who, node: node_name, property: prop }),
        }
    }
    for child in dtb.children(node) {
        let (what, found, from) = match dtb.prop(&child, "compatible") {
            Some(c) if compatible_with(c, &[MULTIBOOT_KERNEL]) => ("kernel", &mut kernel, "multiboot,kernel"),
            Some(c) if compatible_with(c, &[MULTIBOOT_RAMDISK]) => ("initrd", &mut initrd, "multiboot,ramdisk"),
            Some(c) if compatible_with(c, &[VIRTIO_MMIO]) => {
                let device = virtio(dtb, &child, who)?;
                vm.virtio.push(device).map_err(|_| VmError::TooManyItems {
                    vm: who,
                    property: "hv,virtio-mmio subnodes",
                    capacity: MAX_VIRTIO,
                })?;
                continue;
            }
            _ => return Err(VmError::UnknownSubnode { vm: who, node: child.name }),
        };
        let region = module(dtb, &child, who)?;
        found.set(who, what, Image::Memory(region), from)?;
    }
    vm.cpus = cpus.ok_or(VmError::MissingProperty { vm: who, property: "cpus" })?;
    if vm.cpus == 0 {
        return Err(VmError::NoCpus { vm: who });
    }
    if usize::try_from(vm.cpus).map_or(true, |n| n > MAX_VCPUS) {
        return Err(VmError::TooManyCpus { vm: who, cpus: vm.cpus });
    }
    vm.memory_bytes = memory_bytes.ok_or(VmError::MissingProperty { vm: who, property: "memory" })?;
    vm.kernel = kernel.image.unwrap_or(Image::GuestStub);
    if initrd.image.is_some() && kernel.image.is_none() {
        return Err(VmError::InitrdWithoutKernel { vm: who, property: initrd.from });
    }
    vm.initrd = initrd.image;
    Ok(vm)
}

/// An `hv,virtio-mmio` subnode.
fn virtio<'a>(dtb: &Dtb<'a>, node: &Node<'a>, vm: &'a str) -> Result<VirtioDesc<'a>, VmError<'a>> {
    let bad = |reason| VmError::BadVirtio { vm, node: node.name, reason };
    let (mut device, mut backend, mut timeout_ms) = (None, None, DEFAULT_VIRTIO_TIMEOUT_MS);
    for (index, (prop, value)) in dtb.props(node).enumerate() {
        if repeated(dtb, node, index, prop) {
            return Err(VmError::PropertyGivenTwice { vm, node: node.name, property: prop });
        }
        match prop {
            "hv,device" => {
                let word = string(vm, "hv,device", value)?;
                device = Some(
                    crate::forward::DeviceType::from_word(word)
                        .ok_or(bad("hv,device must be \"block\" or \"console\""))?,
                );
            }
            "hv,backend" => backend = Some(string(vm, "hv,backend", value)?),
            "hv,timeout-ms" => {
                timeout_ms = u32_cell(vm, "hv,timeout-ms", value)?;
                if !VIRTIO_TIMEOUT_MS.contains(&timeout_ms) {
                    return Err(bad("hv,timeout-ms must be 1 to 3600000 (milliseconds)"));
                }
            }
            p if STANDARD.contains(&p) => {}
            _ => return Err(VmError::UnknownProperty { vm, node: node.name, property: prop }),
        }
    }
    Ok(VirtioDesc {
        node: node.name,
        device: device.ok_or(bad("hv,device is missing (\"block\" or \"console\")"))?,
        backend: backend.ok_or(bad("hv,backend is missing (the name of the VM that serves the device)"))?,
        timeout_ms,
    })
}

/// The region of a module subnode: one `reg` pair in the VM node's
/// `#address-cells`/`#size-cells` (the devicetree defaults 2 and 1 when
/// absent; each must be 1 or 2). Not translated: the VM node is no bus.
fn module<'a>(dtb: &Dtb<'a>, node: &Node<'a>, vm: &'a str) -> Result<MemRegion, VmError<'a>> {
    let bad = |reason| VmError::BadModule { vm, node: node.name, reason };
    let mut reg = None;
    for (index, (prop, value)) in dtb.props(node).enumerate() {
        if repeated(dtb, node, index, prop) {
            return Err(VmError::PropertyGivenTwice { vm, node: node.name, property: prop });
        }
        match prop {
            "reg" => reg = Some(value),
            p if STANDARD.contains(&p) => {}
            _ => return Err(VmError::UnknownProperty { vm, node: node.name, property: prop }),
        }
    }
    let reg = reg.ok_or_else(|| bad("is missing"))?;
    let cells = node.parent_cells;
    if !(1..=2).contains(&cells.address) || !(1..=2).contains(&cells.size) {
        return Err(bad("cannot be decoded: the VM node's #address-cells and #size-cells must be 1 or 2"));
    }
    let addr_len = cell_bytes(cells.address);
    if reg.len() != addr_len.saturating_add(cell_bytes(cells.size)) {
        return Err(bad("must be one (address, size) pair in the VM node's #address-cells and #size-cells"));
    }
    let (Some(base), Some(size)) = (read_cells(reg, 0, cells.address), read_cells(reg, addr_len, cells.size)) else {
        return Err(bad("is truncated"));
    };
    if size == 0 {
        return Err(bad("gives an empty region"));
    }
    if base.checked_add(size).is_none() {
        return Err(bad("runs past the end of the address space"));
    }
    Ok(MemRegion::new(base, size))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic, clippy::arithmetic_side_effects)]
mod tests;
