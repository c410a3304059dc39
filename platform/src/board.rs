//! The board description: every physical address and interrupt number the
//! firmware uses, read from the flattened device tree (DTB) that the
//! previous boot stage (QEMU, or a board's ROM) hands us.
//!
//! This module owns one rule of the project: **no code in the firmware
//! hard-codes the addresses of RAM, UARTs, the GIC, timers, fw_cfg or
//! flash**. The EL3 monitor parses the DTB once with [`Board::from_ptr`] (or
//! [`Board::from_bytes`]) and passes the resulting [`Board`] (or the DTB) on;
//! the hypervisor does the same with the DTB it receives in `x0`.
//!
//! The monitor has no heap, so a [`Board`] is a plain value: fixed-capacity
//! lists ([`RegionList`], [`CpuList`]) instead of vectors, and it does not
//! borrow the DTB bytes once built. A DTB is hostile input: parsing never
//! panics (all reads are bounds-checked and all arithmetic checked, which the
//! `deny` list below makes clippy enforce), and every failure is a
//! [`BoardError`] whose message names the node and property at fault. The
//! DTB reader itself lives in the private `dt` submodule; see there for why
//! it does not use the `fdt` crate.
//!
//! # Security states
//!
//! The devicetree specification's `secure-status` property says which world
//! may use a node. A node is visible to the **Non-secure** world if its
//! `status` is absent, `"okay"` or `"ok"`; it is visible to the **Secure**
//! world if its `secure-status` is `"okay"`/`"ok"`, or, when `secure-status`
//! is absent, by the same `status` rule. With `-M virt,secure=on` QEMU marks
//! the secure UART, secure RAM, secure flash, secure GPIO and the
//! `gpio-poweroff`/`gpio-restart` nodes `status = "disabled"; secure-status =
//! "okay"`; those land in the `secure_*` fields (and `poweroff`/`restart`).
//!
//! # Addresses
//!
//! Every `reg` is decoded with its parent's `#address-cells`/`#size-cells`
//! (1 or 2 address cells, 0 to 2 size cells) and translated through the
//! `ranges` of each non-root ancestor, so the values here are CPU physical
//! addresses.
// Beyond the crate-wide no-panic lints (lib.rs):
#![deny(clippy::string_slice)]

mod dt;
pub mod portals;
pub mod soc;
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic, clippy::arithmetic_side_effects)]
mod tests;
pub mod vms;

use core::fmt;
use core::ops::{Deref, DerefMut};

use dt::{be32, Dtb, Node};
pub use soc::{CpuRelease, ZynqMpApu};

/// Largest DTB accepted, in bytes. QEMU's virt DTB is about 9 KiB (it pads
/// its in-memory copy to 1 MiB); the bound keeps [`Board::from_ptr`] from
/// trusting an absurd `totalsize`.
pub const MAX_DTB_SIZE: usize = 2 * 1024 * 1024;
/// Most CPUs a [`Board`] describes. A DTB with more is rejected with
/// [`BoardError::TooMany`] rather than silently truncated: a CPU the firmware
/// does not know about could still be started by someone else.
pub const MAX_CPUS: usize = 16;
/// Capacity of a [`RegionList`].
pub const MAX_REGIONS: usize = 16;
/// Smallest GICv3 distributor window (GICD is 64 KiB).
pub const GICD_V3_WINDOW: u64 = 0x1_0000;
/// Smallest GICv2 distributor window (GICD is 4 KiB).
pub const GICD_V2_WINDOW: u64 = 0x1000;
/// Redistributor space each CPU needs under GICv3: its RD and SGI frames,
/// 64 KiB each (GICv4 adds two more, which only makes the region larger).
pub const GICR_WINDOW_PER_CPU: u64 = 0x2_0000;
/// Smallest PL011 window: the UART registers the firmware drives end with
/// UARTICR at 0x44 (some boards give the PL011 less than its 4 KiB page).
pub const PL011_WINDOW: u64 = 0x48;
/// Smallest Cadence UART window: the registers the firmware drives end with
/// the FIFO at 0x30.
pub const CADENCE_UART_WINDOW: u64 = crate::cadence_uart::WINDOW;
/// The affinity fields of MPIDR_EL1 (Aff3, Aff2, Aff1, Aff0), which are what
/// a cpu node's `reg` holds.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// A physical address range `[base, base + size)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemRegion {
    pub base: u64,
    pub size: u64,
}

impl MemRegion {
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last byte. Regions built by [`Board`] never overflow;
    /// for hand-made ones the result saturates at `u64::MAX`.
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    pub const fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    /// Whether the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &MemRegion) -> bool {
        !self.is_empty() && !other.is_empty() && self.base < other.end() && other.base < self.end()
    }
}

impl fmt::Display for MemRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.base, self.end())
    }
}

/// A fixed-capacity list (the monitor has no heap). Dereferences to the
/// slice of its live elements.
#[derive(Clone, Copy)]
pub struct List<T, const N: usize> {
    items: [T; N],
    len: usize,
}

/// Memory regions, in DT order unless a function says otherwise.
pub type RegionList = List<MemRegion, MAX_REGIONS>;
/// CPU MPIDR affinity values, in DT order.
pub type CpuList = List<u64, MAX_CPUS>;

impl<T: Copy + Default, const N: usize> List<T, N> {
    pub const CAPACITY: usize = N;

    pub fn new() -> Self {
        Self { items: [T::default(); N], len: 0 }
    }

    /// Appends `item`, or hands it back if the list is full.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len = self.len.saturating_add(1);
                Ok(())
            }
            None => Err(item),
        }
    }

    /// Removes and returns the element at `index`, shifting the rest down.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        let tail = self.items.get_mut(index..self.len)?;
        let item = *tail.first()?;
        tail.rotate_left(1);
        self.len = self.len.saturating_sub(1);
        Some(item)
    }
}

impl<T, const N: usize> List<T, N> {
    pub fn as_slice(&self) -> &[T] {
        self.items.get(..self.len).unwrap_or_default()
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.items.get_mut(..self.len).unwrap_or_default()
    }
}

impl<T: Copy + Default, const N: usize> Default for List<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Deref for List<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T, const N: usize> DerefMut for List<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<'l, T, const N: usize> IntoIterator for &'l List<T, N> {
    type Item = &'l T;
    type IntoIter = core::slice::Iter<'l, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<T: PartialEq, const N: usize> PartialEq for List<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Eq, const N: usize> Eq for List<T, N> {}

impl<T: fmt::Debug, const N: usize> fmt::Debug for List<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// UART models the firmware can drive (`crate::serial::Serial` drives
/// either).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// Arm PrimeCell PL011 (`compatible = "arm,pl011"`).
    Pl011,
    /// Cadence UART, the Xilinx Zynq and Zynq UltraScale+ "UART PS"
    /// (`cdns,uart-r1p12`, `cdns,uart-r1p8`, `xlnx,xuartps`,
    /// `xlnx,zynqmp-uart`).
    Cadence,
}

impl UartKind {
    pub const ALL: [Self; 2] = [Self::Pl011, Self::Cadence];

    /// The model a `compatible` string names, if the firmware drives it.
    pub fn from_compatible(compatible: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.compatibles().contains(&compatible))
    }

    /// The `compatible` strings each model is recognised by.
    pub const fn compatibles(self) -> &'static [&'static str] {
        match self {
            Self::Pl011 => PL011_UARTS,
            Self::Cadence => CADENCE_UARTS,
        }
    }

    /// The smallest register window the firmware's driver touches.
    pub const fn min_window(self) -> u64 {
        match self {
            Self::Pl011 => PL011_WINDOW,
            Self::Cadence => CADENCE_UART_WINDOW,
        }
    }
}

/// A console UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    pub kind: UartKind,
    pub base: u64,
    pub size: u64,
}

impl Uart {
    pub const fn region(&self) -> MemRegion {
        MemRegion::new(self.base, self.size)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// `arm,cortex-a15-gic` or `arm,gic-400`.
    V2,
    /// `arm,gic-v3`.
    V3,
}

/// The GICs the firmware recognises, by `compatible`. An enum, not the
/// string: a [`Board`] is parsed before the hypervisor moves to its final
/// addresses, and a `&'static str` taken then would point to where the
/// string was, not where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicCompatible {
    GicV3,
    CortexA15,
    Gic400,
}

impl GicCompatible {
    pub const ALL: [Self; 3] = [Self::GicV3, Self::CortexA15, Self::Gic400];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GicV3 => "arm,gic-v3",
            Self::CortexA15 => "arm,cortex-a15-gic",
            Self::Gic400 => "arm,gic-400",
        }
    }
}

/// An interrupt decoded from a GIC interrupt specifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq {
    /// GIC INTID: 16..32 for a PPI, 32..1020 for an SPI.
    pub intid: u32,
    /// The specifier's flags cell as written (trigger type in bits 3:0;
    /// for GICv2 PPIs, a CPU mask in bits 15:8).
    pub flags: u32,
}

/// The interrupt controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gic {
    pub version: GicVersion,
    /// The `compatible` it was recognised by.
    pub compatible: GicCompatible,
    /// GICD.
    pub distributor: MemRegion,
    /// GICv3 redistributor regions (`#redistributor-regions` of them, default
    /// 1). Empty for GICv2.
    pub redistributors: RegionList,
    /// GICC: always present for GICv2; for GICv3 only if the DT lists the
    /// optional legacy CPU interface.
    pub cpu_interface: Option<MemRegion>,
    /// GICH, the virtual interface control registers (optional).
    pub hyp_interface: Option<MemRegion>,
    /// GICV, the virtual CPU interface (optional).
    pub vcpu_interface: Option<MemRegion>,
    /// The virtual-interface maintenance interrupt (the GIC node's
    /// `interrupts`), if given.
    pub maintenance_irq: Option<Irq>,
}

impl Gic {
    /// Offset of `GICD_PIDR2` in the distributor and of `GICR_PIDR2` in a
    /// redistributor's RD frame.
    pub const PIDR2_OFFSET: u64 = 0xffe8;

    /// Whether a `PIDR2` value read from a GICv3 frame identifies a GICv3 or
    /// GICv4 (its `ArchRev` field, bits 7:4, is 3 or 4): how firmware tells
    /// a GIC from whatever else a wrong `reg` points at.
    pub const fn pidr2_is_v3_or_v4(pidr2: u32) -> bool {
        matches!((pidr2 >> 4) & 0xf, 3 | 4)
    }
}

/// The Arm generic timer (`arm,armv8-timer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    pub secure_phys: Irq,
    pub nonsecure_phys: Irq,
    pub virt: Irq,
    pub hyp_phys: Irq,
    /// The EL2 virtual timer (FEAT_VHE), the optional fifth interrupt.
    pub hyp_virt: Option<Irq>,
    /// `clock-frequency`, present only where firmware fails to program
    /// CNTFRQ_EL0. Otherwise read CNTFRQ_EL0.
    pub clock_frequency: Option<u32>,
}

/// A GPIO line that does something to the whole board (power off, reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpioLine {
    /// Register window of the `arm,pl061` controller.
    pub controller: MemRegion,
    /// Line number on that controller (0..8).
    pub line: u32,
    /// `GPIO_ACTIVE_LOW` in the specifier's flags: drive the line low to act.
    pub active_low: bool,
}

/// Everything the firmware needs to know about the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// RAM the Non-secure world may use (`device_type = "memory"` nodes
    /// visible to it), every `reg` entry, in DT order. Never empty.
    pub ram: RegionList,
    /// Memory nodes visible only to the Secure world.
    pub secure_ram: RegionList,
    /// `/memreserve/` entries, then the `reg` of each Non-secure-visible
    /// child of `/reserved-memory` (children with only `size`, i.e. dynamic
    /// allocations, are not included).
    pub reserved: RegionList,
    /// MPIDR affinity values of `/cpus/cpu@*`, in DT order, whatever their
    /// `status` (a disabled CPU may still be brought up through PSCI).
    /// Never empty, no duplicates.
    pub cpus: CpuList,
    /// The Non-secure console, from `/chosen/stdout-path`.
    pub console: Option<Uart>,
    /// The Secure console, from `/secure-chosen/stdout-path`.
    pub secure_console: Option<Uart>,
    pub gic: Gic,
    pub timer: Timer,
    /// The `qemu,fw-cfg-mmio` register window.
    pub fw_cfg: Option<MemRegion>,
    /// `cfi-flash` regions visible to the Non-secure world.
    pub flash: RegionList,
    /// `cfi-flash` regions visible only to the Secure world.
    pub secure_flash: RegionList,
    /// From the first Secure-visible `gpio-poweroff` node.
    pub poweroff: Option<GpioLine>,
    /// From the first Secure-visible `gpio-restart` node.
    pub restart: Option<GpioLine>,
    /// Whether a Non-secure-visible `arm,psci*` node exists. With
    /// `secure=on` QEMU leaves it out: the monitor provides PSCI and must add
    /// the node for guests.
    pub has_psci_node: bool,
    /// How the secondary CPUs reach the firmware, by the root `compatible`
    /// (see [`soc`]).
    pub cpu_release: CpuRelease,
    dtb_size: usize,
}

/// Longest node name or path kept in a [`BoardError`]; longer ones are cut
/// and end in "...".
pub const DT_NAME_MAX: usize = 64;

/// Text copied out of the DTB for an error message, at most `N` bytes (the
/// error must outlive the DTB borrow and there is no heap).
#[derive(Clone, Copy)]
pub struct DtText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

/// A node name or path.
pub type DtName = DtText<DT_NAME_MAX>;
/// A `compatible` string: short, so an error holding one stays small.
pub type DtCompatible = DtText<32>;

impl<const N: usize> DtText<N> {
    pub fn new(s: &str) -> Self {
        let mut name = Self { buf: [0; N], len: 0 };
        let (keep, ellipsis) = if s.len() <= N { (s.len(), "") } else { (N.saturating_sub(3), "...") };
        let mut keep = keep;
        while !s.is_char_boundary(keep) {
            keep = keep.saturating_sub(1);
        }
        let bytes = s.as_bytes().get(..keep).unwrap_or_default().iter().chain(ellipsis.as_bytes());
        for (dst, src) in name.buf.iter_mut().zip(bytes) {
            *dst = *src;
            name.len = name.len.saturating_add(1);
        }
        name
    }

    pub fn as_str(&self) -> &str {
        self.buf.get(..self.len).and_then(|b| core::str::from_utf8(b).ok()).unwrap_or("?")
    }
}

impl<const N: usize> PartialEq for DtText<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for DtText<N> {}

impl<const N: usize> fmt::Debug for DtText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for DtText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of device a board must have one the firmware drives of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    InterruptController,
    ConsoleUart,
}

impl DeviceKind {
    pub const fn name(self) -> &'static str {
        match self {
            Self::InterruptController => "interrupt controller",
            Self::ConsoleUart => "console UART",
        }
    }

    /// The `compatible` strings the firmware recognises for it.
    pub const fn supported(self) -> &'static [&'static str] {
        match self {
            Self::InterruptController => GIC_ANY,
            Self::ConsoleUart => UARTS,
        }
    }
}

/// Why a DTB could not be turned into a [`Board`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardError {
    /// [`Board::from_ptr`] was given a null pointer.
    NullPointer,
    /// The blob does not start with the FDT magic 0xd00dfeed.
    BadMagic { found: u32 },
    /// The blob is shorter than its header says.
    Truncated { needed: usize, available: usize },
    /// `totalsize` is beyond [`MAX_DTB_SIZE`].
    TooLarge { size: usize, max: usize },
    /// A header field is inconsistent.
    BadHeader { reason: &'static str },
    /// The structure block breaks the FDT grammar at `offset` (from the
    /// start of the blob).
    Malformed { offset: usize, reason: &'static str },
    /// A node the firmware cannot do without is absent.
    MissingNode { what: &'static str },
    /// A node lacks a property it needs.
    MissingProperty { node: DtName, property: &'static str },
    /// A property's value is wrong.
    BadProperty { node: DtName, property: &'static str, reason: &'static str },
    /// A path-valued property names no node.
    PathNotFound { property: &'static str, path: DtName },
    /// The node describes hardware this firmware does not drive.
    Unsupported { node: DtName, reason: &'static str },
    /// A device of `kind` whose `compatible` is `found` (its first
    /// string), none of those the firmware supports.
    UnsupportedDevice { kind: DeviceKind, node: DtName, found: DtCompatible },
    /// More of something than the fixed capacity holds.
    TooMany { what: &'static str, capacity: usize },
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NullPointer => write!(f, "device tree pointer is null"),
            Self::BadMagic { found } => {
                write!(f, "not a flattened device tree: magic is {found:#010x}, expected {:#010x}", dt::FDT_MAGIC)
            }
            Self::Truncated { needed, available } => {
                write!(f, "device tree is truncated: needs {needed} bytes, only {available} available")
            }
            Self::TooLarge { size, max } => {
                write!(f, "device tree totalsize {size} exceeds the limit of {max} bytes")
            }
            Self::BadHeader { reason } => write!(f, "bad device tree header: {reason}"),
            Self::Malformed { offset, reason } => {
                write!(f, "malformed device tree structure at byte {offset:#x}: {reason}")
            }
            Self::MissingNode { what } => write!(f, "device tree has no {what}"),
            Self::MissingProperty { node, property } => {
                write!(f, "device tree node {node} has no `{property}` property")
            }
            Self::BadProperty { node, property, reason } => {
                write!(f, "device tree node {node}: `{property}` {reason}")
            }
            Self::PathNotFound { property, path } => {
                write!(f, "device tree {property} = \"{path}\" names no node")
            }
            Self::Unsupported { node, reason } => write!(f, "device tree node {node}: {reason}"),
            Self::UnsupportedDevice { kind, node, found } => {
                write!(f, "{} {node} is {found}, which is not supported; supported:", kind.name())?;
                for (i, s) in kind.supported().iter().enumerate() {
                    write!(f, "{}{s}", if i == 0 { " " } else { ", " })?;
                }
                Ok(())
            }
            Self::TooMany { what, capacity } => {
                write!(f, "device tree has more {what} than this firmware holds ({capacity})")
            }
        }
    }
}

/// Validates a DTB header's magic and size and returns its `totalsize`.
/// `header` need only hold the first 8 bytes of the blob. Use it to learn
/// how many bytes to copy or reserve before parsing.
pub fn dtb_total_size(header: &[u8]) -> Result<usize, BoardError> {
    dt::total_size(header)
}

/// A device node the firmware passes on (to a guest, or as a PCI
/// function): its first register window and its first interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub window: MemRegion,
    pub irq: Option<Irq>,
}

/// The first Non-secure-visible node compatible with `compatible` in `dtb`.
pub fn find_device(dtb: &[u8], compatible: &str) -> Result<Option<Device>, BoardError> {
    let dtb = Dtb::new(dtb)?;
    for node in dtb.all_nodes() {
        if !ns_visible(&dtb, &node) || !is_compatible(&dtb, &node, &[compatible]) {
            continue;
        }
        return device(&dtb, &node).map(Some);
    }
    Ok(None)
}

/// A device node's first register window and first interrupt.
fn device(dtb: &Dtb<'_>, node: &Node<'_>) -> Result<Device, BoardError> {
    let window = first_reg(dtb, node)?;
    let irq = match dtb.prop(node, "interrupts") {
        Some(spec) => Some(gic_irq(spec, node, "interrupts")?),
        None => None,
    };
    Ok(Device { window, irq })
}

/// The first Non-secure-visible node compatible with one of `compatibles`
/// whose first register window starts at `base`: the node of a device the
/// [`Board`] names by address (its console UART), for its interrupt.
pub fn find_device_at(dtb: &[u8], compatibles: &[&str], base: u64) -> Result<Option<Device>, BoardError> {
    let dtb = Dtb::new(dtb)?;
    for node in dtb.all_nodes() {
        if !ns_visible(&dtb, &node) || !is_compatible(&dtb, &node, compatibles) {
            continue;
        }
        let device = device(&dtb, &node)?;
        if device.window.base == base {
            return Ok(Some(device));
        }
    }
    Ok(None)
}

/// The value of property `name` of `/chosen` in the DTB `dtb`, if there is
/// one; string properties keep their terminating NUL. For the few settings
/// firmware reads from `/chosen` beyond the board description, such as the
/// hypervisor's `hv,bootargs`.
pub fn chosen_property<'a>(dtb: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, BoardError> {
    let dtb = Dtb::new(dtb)?;
    Ok(dtb.find_path("/chosen").and_then(|chosen| dtb.prop(&chosen, name)))
}

impl Board {
    /// Parses the DTB at the start of `dtb` (bytes past its `totalsize` are
    /// ignored).
    pub fn from_bytes(dtb: &[u8]) -> Result<Board, BoardError> {
        let dtb = Dtb::new(dtb)?;
        parse(&dtb)
    }

    /// Parses the DTB at `ptr`, reading its header first to learn its size.
    ///
    /// # Safety
    ///
    /// `ptr` must be null (which is reported as [`BoardError::NullPointer`])
    /// or valid for reads of 8 bytes; and if those bytes hold the FDT magic
    /// and a `totalsize` of at most [`MAX_DTB_SIZE`], valid for reads of
    /// `totalsize` bytes. The memory must not be written during the call.
    /// `ptr` needs no particular alignment. The returned [`Board`] does not
    /// borrow the memory.
    pub unsafe fn from_ptr(ptr: *const u8) -> Result<Board, BoardError> {
        if ptr.is_null() {
            return Err(BoardError::NullPointer);
        }
        // SAFETY: the caller guarantees `ptr` is readable for 8 bytes and
        // unchanging during the call; u8 has no alignment requirement.
        let head = unsafe { core::slice::from_raw_parts(ptr, 8) };
        let size = dtb_total_size(head)?;
        // SAFETY: the magic is valid and `size` <= MAX_DTB_SIZE (checked by
        // `dtb_total_size`), so the caller guarantees `size` readable,
        // unchanging bytes at `ptr`; `size` is far below isize::MAX.
        let bytes = unsafe { core::slice::from_raw_parts(ptr, size) };
        Self::from_bytes(bytes)
    }

    /// The DTB's `totalsize`: how many bytes at the DTB's address to keep.
    pub fn dtb_size(&self) -> usize {
        self.dtb_size
    }

    /// End of the highest Non-secure RAM region.
    pub fn ram_top(&self) -> u64 {
        self.ram.iter().map(MemRegion::end).max().unwrap_or(0)
    }

    /// Position of the CPU with this MPIDR in [`Board::cpus`]. Only the
    /// affinity fields are compared, so a raw MPIDR_EL1 value may be passed.
    pub fn cpu_index(&self, mpidr: u64) -> Option<usize> {
        let aff = mpidr & MPIDR_AFFINITY_MASK;
        self.cpus.iter().position(|&c| c & MPIDR_AFFINITY_MASK == aff)
    }
}

impl fmt::Display for Board {
    /// A multi-line summary for the boot log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, name: &str, l: &RegionList| -> fmt::Result {
            write!(f, "{name}:")?;
            if l.is_empty() {
                write!(f, " none")?;
            }
            for r in l {
                write!(f, " {r}")?;
            }
            writeln!(f)
        };
        list(f, "ram", &self.ram)?;
        list(f, "secure ram", &self.secure_ram)?;
        list(f, "reserved", &self.reserved)?;
        write!(f, "cpus ({}):", self.cpus.len())?;
        for c in &self.cpus {
            write!(f, " {c:#x}")?;
        }
        writeln!(f)?;
        let uart = |f: &mut fmt::Formatter<'_>, name: &str, u: &Option<Uart>| match u {
            Some(u) => writeln!(f, "{name}: {:?} {}", u.kind, u.region()),
            None => writeln!(f, "{name}: none"),
        };
        uart(f, "console", &self.console)?;
        uart(f, "secure console", &self.secure_console)?;
        write!(f, "gic: {:?} dist {}", self.gic.version, self.gic.distributor)?;
        for r in &self.gic.redistributors {
            write!(f, " redist {r}")?;
        }
        if let Some(c) = self.gic.cpu_interface {
            write!(f, " cpu {c}")?;
        }
        writeln!(f)?;
        let t = &self.timer;
        writeln!(
            f,
            "timer: ppis s-phys {} ns-phys {} virt {} hyp {}",
            t.secure_phys.intid, t.nonsecure_phys.intid, t.virt.intid, t.hyp_phys.intid
        )?;
        match self.fw_cfg {
            Some(r) => writeln!(f, "fw_cfg: {r}")?,
            None => writeln!(f, "fw_cfg: none")?,
        }
        list(f, "flash", &self.flash)?;
        list(f, "secure flash", &self.secure_flash)?;
        let gpio = |f: &mut fmt::Formatter<'_>, name: &str, g: &Option<GpioLine>| match g {
            Some(g) => writeln!(
                f,
                "{name}: pl061 {} line {}{}",
                g.controller,
                g.line,
                if g.active_low { " active-low" } else { "" }
            ),
            None => writeln!(f, "{name}: none"),
        };
        gpio(f, "poweroff", &self.poweroff)?;
        gpio(f, "restart", &self.restart)?;
        writeln!(f, "psci node: {}", if self.has_psci_node { "yes" } else { "no" })?;
        match self.cpu_release {
            CpuRelease::AtReset => write!(f, "cpu release: at reset"),
            CpuRelease::ZynqMpApu(apu) => {
                write!(f, "cpu release: {} apu {:#x} crf_apb {:#x}", ZynqMpApu::COMPATIBLE, apu.apu, apu.crf_apb)
            }
        }
    }
}

/// Subtracts every `reserved` range from the `ram` ranges and returns what
/// is left, sorted by base, without empty regions. Overlapping or unsorted
/// inputs are fine; `ram` regions are not merged with each other. Fails
/// with [`BoardError::TooMany`] if the pieces do not fit a [`RegionList`].
///
/// For example `free_regions(&board.ram, board.reserved.iter().copied()
/// .chain([image, dtb]))`.
pub fn free_regions<I>(ram: &[MemRegion], reserved: I) -> Result<RegionList, BoardError>
where
    I: IntoIterator<Item = MemRegion>,
{
    let full = BoardError::TooMany { what: "free RAM regions", capacity: MAX_REGIONS };
    let mut out = RegionList::new();
    for r in ram.iter().filter(|r| !r.is_empty()) {
        out.push(*r).map_err(|_| full)?;
    }
    for hole in reserved.into_iter().filter(|r| !r.is_empty()) {
        let mut i = 0;
        while let Some(&r) = out.get(i) {
            if !r.overlaps(&hole) {
                i = i.saturating_add(1);
                continue;
            }
            let below = (r.base < hole.base).then(|| MemRegion::new(r.base, hole.base.saturating_sub(r.base)));
            let above = (hole.end() < r.end()).then(|| MemRegion::new(hole.end(), r.end().saturating_sub(hole.end())));
            match (below, above) {
                (None, None) => {
                    out.remove(i);
                    continue; // the next region slid into slot i
                }
                (Some(piece), None) | (None, Some(piece)) => {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = piece;
                    }
                }
                (Some(b), Some(a)) => {
                    if let Some(slot) = out.get_mut(i) {
                        *slot = b;
                    }
                    out.push(a).map_err(|_| full)?;
                }
            }
            i = i.saturating_add(1);
        }
    }
    out.sort_unstable_by_key(|r| r.base);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Parsing

const GIC_V3: &[&str] = &["arm,gic-v3"];
const GIC_ANY: &[&str] = &["arm,gic-v3", "arm,cortex-a15-gic", "arm,gic-400"];
/// The UARTs the firmware drives, every model's `compatible` strings.
const UARTS: &[&str] = &["arm,pl011", "cdns,uart-r1p12", "cdns,uart-r1p8", "xlnx,xuartps", "xlnx,zynqmp-uart"];
const PL011_UARTS: &[&str] = &["arm,pl011"];
/// Linux's `xilinx_uartps` driver matches the same four.
const CADENCE_UARTS: &[&str] = &["cdns,uart-r1p12", "cdns,uart-r1p8", "xlnx,xuartps", "xlnx,zynqmp-uart"];

/// The first string of `node`'s `compatible` ("none" without one).
fn first_compatible(dtb: &Dtb<'_>, node: &Node<'_>) -> DtCompatible {
    let first = dtb.prop(node, "compatible").and_then(|c| c.split(|&b| b == 0).next());
    DtCompatible::new(first.and_then(|b| core::str::from_utf8(b).ok()).filter(|s| !s.is_empty()).unwrap_or("none"))
}

/// No GIC the firmware knows: the root's `interrupt-parent` names the
/// interrupt controller there is, by its `compatible`.
fn no_gic(dtb: &Dtb<'_>) -> BoardError {
    let missing =
        BoardError::MissingNode { what: "interrupt controller (arm,gic-v3, arm,cortex-a15-gic or arm,gic-400)" };
    let Some(root) = dtb.find_path("/") else { return missing };
    let parent = dtb.prop(&root, "interrupt-parent").and_then(|v| dt::be32(v, 0)).and_then(|p| dtb.find_phandle(p));
    match parent {
        Some(node) => BoardError::UnsupportedDevice {
            kind: DeviceKind::InterruptController,
            node: node.dt_name(),
            found: first_compatible(dtb, &node),
        },
        None => missing,
    }
}
const TIMER: &[&str] = &["arm,armv8-timer"];
const PSCI: &[&str] = &["arm,psci", "arm,psci-0.2", "arm,psci-1.0"];
/// Lines on a PL061.
const PL061_LINES: u32 = 8;
/// `GPIO_ACTIVE_LOW` in a GPIO specifier's flags cell.
const GPIO_ACTIVE_LOW: u32 = 1;

// Not inlined, like `scan`: the monitor parses on a 32 KiB (24 on some
// boards) stack with no guard page, and inlined together their locals
// made one frame of over 11 KiB.
#[inline(never)]
fn parse(dtb: &Dtb<'_>) -> Result<Board, BoardError> {
    let found = scan(dtb)?;
    if found.ram.is_empty() {
        return Err(BoardError::MissingNode { what: "memory node visible to the Non-secure world" });
    }
    let gic_node = match found.gic {
        Some(node) => node,
        None => return Err(no_gic(dtb)),
    };
    let timer_node = found.timer.ok_or(BoardError::MissingNode { what: "timer node (arm,armv8-timer)" })?;
    let cpus = cpus(dtb, found.cpus)?;
    let memory = [found.ram.as_slice(), found.secure_ram.as_slice()];
    Ok(Board {
        ram: found.ram,
        secure_ram: found.secure_ram,
        reserved: reserved(dtb, found.reserved_memory)?,
        cpus,
        console: console(dtb, found.chosen, "/chosen/stdout-path", World::NonSecure, &memory)?,
        secure_console: console(dtb, found.secure_chosen, "/secure-chosen/stdout-path", World::Secure, &memory)?,
        gic: gic(dtb, &gic_node, cpus.len(), &memory)?,
        timer: timer(dtb, &timer_node, &gic_node)?,
        fw_cfg: match found.fw_cfg {
            Some(n) => Some(first_reg(dtb, &n)?),
            None => None,
        },
        flash: found.flash,
        secure_flash: found.secure_flash,
        poweroff: gpio_line(dtb, found.poweroff)?,
        restart: gpio_line(dtb, found.restart)?,
        has_psci_node: found.psci,
        cpu_release: CpuRelease::for_root(
            dtb.root().and_then(|root| dtb.prop(&root, "compatible")).unwrap_or_default(),
        ),
        dtb_size: dtb.total_size(),
    })
}

/// What one walk over every node finds (the first match for single nodes).
#[derive(Default)]
struct Found<'a> {
    ram: RegionList,
    secure_ram: RegionList,
    flash: RegionList,
    secure_flash: RegionList,
    /// Visible to either world.
    gic: Option<Node<'a>>,
    /// Visible to either world.
    timer: Option<Node<'a>>,
    /// Visible to the Non-secure world.
    fw_cfg: Option<Node<'a>>,
    /// Visible to the Secure world.
    poweroff: Option<Node<'a>>,
    /// Visible to the Secure world.
    restart: Option<Node<'a>>,
    /// A Non-secure-visible PSCI node exists.
    psci: bool,
    /// Children of the root, by name.
    cpus: Option<Node<'a>>,
    chosen: Option<Node<'a>>,
    secure_chosen: Option<Node<'a>>,
    reserved_memory: Option<Node<'a>>,
}

/// The properties each node is classified by, read in one scan of its
/// properties.
struct Info<'a> {
    compatible: &'a [u8],
    device_type: &'a [u8],
    ns: bool,
    s: bool,
}

fn info<'a>(dtb: &Dtb<'a>, node: &Node<'a>) -> Info<'a> {
    let (mut compatible, mut device_type): (&[u8], &[u8]) = (&[], &[]);
    let (mut status, mut secure_status) = (None, None);
    for (name, value) in dtb.props(node) {
        match name {
            "compatible" => compatible = value,
            "device_type" => device_type = value,
            "status" => status = Some(value),
            "secure-status" => secure_status = Some(value),
            _ => {}
        }
    }
    let ns = status.is_none_or(status_ok);
    let s = secure_status.map_or(ns, status_ok);
    Info { compatible, device_type, ns, s }
}

#[inline(never)]
fn scan<'a>(dtb: &Dtb<'a>) -> Result<Found<'a>, BoardError> {
    fn first<'a>(slot: &mut Option<Node<'a>>, node: &Node<'a>, matches: bool) {
        if matches && slot.is_none() {
            *slot = Some(*node);
        }
    }
    let mut found = Found::default();
    let mut root = None;
    for node in dtb.all_nodes() {
        if node.is_root() {
            root = Some(node.begin);
        } else if node.parent == root {
            let slot = match node.name {
                "cpus" => Some(&mut found.cpus),
                "chosen" => Some(&mut found.chosen),
                "secure-chosen" => Some(&mut found.secure_chosen),
                "reserved-memory" => Some(&mut found.reserved_memory),
                _ => None,
            };
            if let Some(slot) = slot {
                first(slot, &node, true);
            }
        }
        let info = info(dtb, &node);
        if !info.ns && !info.s {
            continue;
        }
        let is_memory = info.device_type.split(|&b| b == 0).next() == Some(b"memory");
        if is_memory || compatible_with(info.compatible, &["cfi-flash"]) {
            let (list, what) = match (is_memory, info.ns) {
                (true, true) => (&mut found.ram, "RAM regions"),
                (true, false) => (&mut found.secure_ram, "RAM regions"),
                (false, true) => (&mut found.flash, "flash regions"),
                (false, false) => (&mut found.secure_flash, "flash regions"),
            };
            for r in regs(dtb, &node)?.iter().filter(|r| !r.is_empty()) {
                list.push(*r).map_err(|_| BoardError::TooMany { what, capacity: MAX_REGIONS })?;
            }
        }
        if info.compatible.is_empty() {
            continue;
        }
        let c = info.compatible;
        first(&mut found.gic, &node, compatible_with(c, GIC_ANY));
        first(&mut found.timer, &node, compatible_with(c, TIMER));
        first(&mut found.fw_cfg, &node, info.ns && compatible_with(c, &["qemu,fw-cfg-mmio"]));
        first(&mut found.poweroff, &node, info.s && compatible_with(c, &["gpio-poweroff"]));
        first(&mut found.restart, &node, info.s && compatible_with(c, &["gpio-restart"]));
        found.psci |= info.ns && compatible_with(c, PSCI);
    }
    Ok(found)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum World {
    Secure,
    NonSecure,
}

fn status_ok(value: &[u8]) -> bool {
    matches!(value, b"okay\0" | b"ok\0" | b"okay" | b"ok")
}

fn ns_visible(dtb: &Dtb<'_>, node: &Node<'_>) -> bool {
    dtb.prop(node, "status").is_none_or(status_ok)
}

fn s_visible(dtb: &Dtb<'_>, node: &Node<'_>) -> bool {
    match dtb.prop(node, "secure-status") {
        Some(v) => status_ok(v),
        None => ns_visible(dtb, node),
    }
}

fn visible_to(dtb: &Dtb<'_>, node: &Node<'_>, world: World) -> bool {
    match world {
        World::Secure => s_visible(dtb, node),
        World::NonSecure => ns_visible(dtb, node),
    }
}

/// Whether one of the strings of a `compatible` value is in `any`.
fn compatible_with(compatible: &[u8], any: &[&str]) -> bool {
    compatible.split(|&b| b == 0).any(|s| !s.is_empty() && any.iter().any(|c| c.as_bytes() == s))
}

/// Whether one of the node's `compatible` strings is in `any`.
fn is_compatible(dtb: &Dtb<'_>, node: &Node<'_>, any: &[&str]) -> bool {
    dtb.prop(node, "compatible").is_some_and(|v| compatible_with(v, any))
}

/// A property holding one string: everything up to the first NUL.
fn prop_str<'a>(dtb: &Dtb<'a>, node: &Node<'a>, name: &'static str) -> Result<Option<&'a str>, BoardError> {
    let Some(v) = dtb.prop(node, name) else {
        return Ok(None);
    };
    let s = v.split(|&b| b == 0).next().unwrap_or_default();
    core::str::from_utf8(s).map(Some).map_err(|_| BoardError::BadProperty {
        node: node.dt_name(),
        property: name,
        reason: "is not a UTF-8 string",
    })
}

/// A property holding one 32-bit cell.
fn prop_u32(dtb: &Dtb<'_>, node: &Node<'_>, name: &'static str) -> Result<Option<u32>, BoardError> {
    match dtb.prop(node, name) {
        None => Ok(None),
        Some(v) if v.len() == 4 => Ok(be32(v, 0)),
        Some(_) => {
            Err(BoardError::BadProperty { node: node.dt_name(), property: name, reason: "is not a single 32-bit cell" })
        }
    }
}

/// Reads `cells` (0, 1 or 2) big-endian cells at `off`.
fn read_cells(bytes: &[u8], off: usize, cells: u32) -> Option<u64> {
    match cells {
        0 => Some(0),
        1 => be32(bytes, off).map(u64::from),
        2 => dt::be64(bytes, off),
        _ => None,
    }
}

/// Bytes in `cells` cells, for cell counts already checked to be small.
fn cell_bytes(cells: u32) -> usize {
    usize::try_from(cells).unwrap_or(usize::MAX).saturating_mul(4)
}

/// All `reg` entries of `node`, decoded and translated to CPU physical
/// addresses.
fn regs(dtb: &Dtb<'_>, node: &Node<'_>) -> Result<RegionList, BoardError> {
    let bad = |reason| BoardError::BadProperty { node: node.dt_name(), property: "reg", reason };
    let value =
        dtb.prop(node, "reg").ok_or_else(|| BoardError::MissingProperty { node: node.dt_name(), property: "reg" })?;
    let cells = node.parent_cells;
    if !(1..=2).contains(&cells.address) || cells.size > 2 {
        return Err(bad("cannot be decoded: the parent's #address-cells must be 1 or 2 and #size-cells 0 to 2"));
    }
    let addr_len = cell_bytes(cells.address);
    let stride = addr_len.saturating_add(cell_bytes(cells.size));
    if value.is_empty() || value.len().checked_rem(stride) != Some(0) {
        return Err(bad("length is not a multiple of (#address-cells + #size-cells) * 4"));
    }
    let mut list = RegionList::new();
    for entry in value.chunks_exact(stride) {
        let addr = read_cells(entry, 0, cells.address).ok_or_else(|| bad("entry is truncated"))?;
        let size = read_cells(entry, addr_len, cells.size).ok_or_else(|| bad("entry is truncated"))?;
        let base = translate(dtb, node, addr, size)?;
        if base.checked_add(size).is_none() {
            return Err(bad("describes a range past the end of the address space"));
        }
        list.push(MemRegion::new(base, size))
            .map_err(|_| bad("has more entries than this firmware holds (MAX_REGIONS)"))?;
    }
    Ok(list)
}

/// Checks a device register window `window` from `node`'s `reg`: at least
/// `min` bytes (`too_small` says which window and how large it must be),
/// and clear of every RAM region in `memory`, since a device "in RAM" is a
/// typo that would have the firmware poll memory as if it were registers.
fn check_window(
    node: &Node<'_>,
    window: MemRegion,
    min: u64,
    too_small: &'static str,
    memory: &[&[MemRegion]],
) -> Result<(), BoardError> {
    let bad = |reason| BoardError::BadProperty { node: node.dt_name(), property: "reg", reason };
    if window.size < min {
        return Err(bad(too_small));
    }
    if memory.iter().flat_map(|list| list.iter()).any(|ram| ram.overlaps(&window)) {
        return Err(bad("puts a register window over RAM"));
    }
    Ok(())
}

/// The first `reg` entry of `node`.
fn first_reg(dtb: &Dtb<'_>, node: &Node<'_>) -> Result<MemRegion, BoardError> {
    regs(dtb, node)?
        .first()
        .copied()
        .ok_or_else(|| BoardError::MissingProperty { node: node.dt_name(), property: "reg" })
}

/// Translates the bus address `[addr, addr + size)` of `node`'s `reg` up
/// through the `ranges` of every non-root ancestor.
fn translate(dtb: &Dtb<'_>, node: &Node<'_>, mut addr: u64, size: u64) -> Result<u64, BoardError> {
    let mut child = *node;
    for _ in 0..dt::MAX_DEPTH {
        let Some(parent) = dtb.parent(&child) else {
            return Ok(addr);
        };
        if parent.is_root() {
            return Ok(addr);
        }
        let bad = |reason| BoardError::BadProperty { node: parent.dt_name(), property: "ranges", reason };
        let ranges = dtb
            .prop(&parent, "ranges")
            .ok_or_else(|| bad("is missing, so the addresses of this node's children cannot be translated"))?;
        if !ranges.is_empty() {
            let child_cells = child.parent_cells; // the parent's own cells
            let parent_addr_cells = parent.parent_cells.address;
            if !(1..=2).contains(&child_cells.address) || !(1..=2).contains(&parent_addr_cells) || child_cells.size > 2
            {
                return Err(bad("cannot be decoded: address cells must be 1 or 2, size cells 0 to 2"));
            }
            let child_len = cell_bytes(child_cells.address);
            let parent_len = cell_bytes(parent_addr_cells);
            let stride = child_len.saturating_add(parent_len).saturating_add(cell_bytes(child_cells.size));
            if ranges.len().checked_rem(stride) != Some(0) {
                return Err(bad("length is not a multiple of the entry size"));
            }
            let mut mapped = None;
            for entry in ranges.chunks_exact(stride) {
                let (Some(c), Some(p), Some(s)) = (
                    read_cells(entry, 0, child_cells.address),
                    read_cells(entry, child_len, parent_addr_cells),
                    read_cells(entry, child_len.saturating_add(parent_len), child_cells.size),
                ) else {
                    return Err(bad("entry is truncated"));
                };
                let offset = addr.wrapping_sub(c);
                if addr >= c && offset < s && size <= s.saturating_sub(offset) {
                    mapped = Some(p.checked_add(offset).ok_or_else(|| bad("maps past the end of the address space"))?);
                    break;
                }
            }
            addr = mapped.ok_or_else(|| BoardError::BadProperty {
                node: node.dt_name(),
                property: "reg",
                reason: "lies outside every `ranges` window of its parent bus",
            })?;
        }
        child = parent;
    }
    Err(BoardError::Malformed { offset: node.begin, reason: "ancestor chain too long" })
}

/// `reserved_memory` is the `/reserved-memory` node, if any.
fn reserved(dtb: &Dtb<'_>, reserved_memory: Option<Node<'_>>) -> Result<RegionList, BoardError> {
    let full = BoardError::TooMany { what: "reserved memory regions", capacity: MAX_REGIONS };
    let mut list = RegionList::new();
    for entry in dtb.mem_reservations() {
        let (base, size) = entry?;
        if base.checked_add(size).is_none() {
            return Err(BoardError::BadHeader {
                reason: "a /memreserve/ entry runs past the end of the address space",
            });
        }
        if size != 0 {
            list.push(MemRegion::new(base, size)).map_err(|_| full)?;
        }
    }
    if let Some(parent) = reserved_memory {
        for child in dtb.children(&parent) {
            if !ns_visible(dtb, &child) || dtb.prop(&child, "reg").is_none() {
                continue;
            }
            for r in regs(dtb, &child)?.iter().filter(|r| !r.is_empty()) {
                list.push(*r).map_err(|_| full)?;
            }
        }
    }
    Ok(list)
}

/// `cpus` is the `/cpus` node.
fn cpus(dtb: &Dtb<'_>, cpus: Option<Node<'_>>) -> Result<CpuList, BoardError> {
    let parent = cpus.ok_or(BoardError::MissingNode { what: "/cpus node" })?;
    let cells = dtb.cells_of(&parent);
    let bad_parent = |property, reason| BoardError::BadProperty { node: parent.dt_name(), property, reason };
    if !(1..=2).contains(&cells.address) {
        return Err(bad_parent("#address-cells", "must be 1 or 2"));
    }
    if cells.size != 0 {
        return Err(bad_parent("#size-cells", "must be 0"));
    }
    let stride = cell_bytes(cells.address);
    let mut list = CpuList::new();
    for node in dtb.children(&parent).filter(|n| n.base_name() == "cpu") {
        let bad = |reason| BoardError::BadProperty { node: node.dt_name(), property: "reg", reason };
        let reg = dtb
            .prop(&node, "reg")
            .ok_or_else(|| BoardError::MissingProperty { node: node.dt_name(), property: "reg" })?;
        if reg.is_empty() || reg.len().checked_rem(stride) != Some(0) {
            return Err(bad("length is not a multiple of /cpus #address-cells * 4"));
        }
        for id in reg.chunks_exact(stride) {
            let mpidr = read_cells(id, 0, cells.address).ok_or_else(|| bad("is truncated"))?;
            if mpidr & !MPIDR_AFFINITY_MASK != 0 {
                return Err(bad("has bits outside the MPIDR affinity fields"));
            }
            if list.contains(&mpidr) {
                return Err(bad("repeats the MPIDR of an earlier CPU"));
            }
            list.push(mpidr).map_err(|_| BoardError::TooMany { what: "CPUs", capacity: MAX_CPUS })?;
        }
    }
    if list.is_empty() {
        return Err(BoardError::MissingNode { what: "/cpus/cpu@* node" });
    }
    Ok(list)
}

/// Resolves a `stdout-path` value (options already stripped): an absolute
/// path, or an alias from `/aliases` optionally followed by `/more/path`.
fn resolve_path<'a>(dtb: &Dtb<'a>, path: &str) -> Option<Node<'a>> {
    if path.starts_with('/') {
        return dtb.find_path(path);
    }
    let (alias, rest) = path.split_once('/').unwrap_or((path, ""));
    let aliases = dtb.find_path("/aliases")?;
    let value = dtb.prop(&aliases, alias)?;
    let target = core::str::from_utf8(value.split(|&b| b == 0).next()?).ok()?;
    if !target.starts_with('/') {
        return None;
    }
    let node = dtb.find_path(target)?;
    dtb.find_from(node, rest)
}

/// The console named by `stdout-path` of `chosen` (`/chosen` or
/// `/secure-chosen`), which `property` names for error messages.
fn console(
    dtb: &Dtb<'_>,
    chosen: Option<Node<'_>>,
    property: &'static str,
    world: World,
    memory: &[&[MemRegion]],
) -> Result<Option<Uart>, BoardError> {
    let Some(chosen) = chosen else {
        return Ok(None);
    };
    let Some(value) = prop_str(dtb, &chosen, "stdout-path")? else {
        return Ok(None);
    };
    let path = value.split(':').next().unwrap_or(value);
    let node = resolve_path(dtb, path).ok_or_else(|| BoardError::PathNotFound { property, path: DtName::new(path) })?;
    if !visible_to(dtb, &node, world) {
        return Err(BoardError::Unsupported {
            node: node.dt_name(),
            reason: match world {
                World::NonSecure => "is the Non-secure console but is not visible to the Non-secure world",
                World::Secure => "is the Secure console but is not visible to the Secure world",
            },
        });
    }
    let Some(kind) = UartKind::ALL.into_iter().find(|k| is_compatible(dtb, &node, k.compatibles())) else {
        return Err(BoardError::UnsupportedDevice {
            kind: DeviceKind::ConsoleUart,
            node: node.dt_name(),
            found: first_compatible(dtb, &node),
        });
    };
    let r = first_reg(dtb, &node)?;
    let too_small = match kind {
        UartKind::Pl011 => "gives the PL011 a window smaller than its registers (0x48 bytes)",
        UartKind::Cadence => "gives the Cadence UART a window smaller than its registers (0x34 bytes)",
    };
    check_window(&node, r, kind.min_window(), too_small, memory)?;
    Ok(Some(Uart { kind, base: r.base, size: r.size }))
}

/// `#interrupt-cells` of the GIC: 3 (type, number, flags), or 4 for GICv3
/// with PPI partitions.
fn gic_interrupt_cells(dtb: &Dtb<'_>, gic: &Node<'_>) -> Result<usize, BoardError> {
    match prop_u32(dtb, gic, "#interrupt-cells")? {
        Some(n @ 3..=4) => Ok(cell_bytes(n)),
        Some(_) => Err(BoardError::BadProperty {
            node: gic.dt_name(),
            property: "#interrupt-cells",
            reason: "must be 3 or 4 for a GIC",
        }),
        None => Err(BoardError::MissingProperty { node: gic.dt_name(), property: "#interrupt-cells" }),
    }
}

/// Decodes one GIC interrupt specifier (type, number, flags, ...).
fn gic_irq(spec: &[u8], node: &Node<'_>, property: &'static str) -> Result<Irq, BoardError> {
    let bad = |reason| BoardError::BadProperty { node: node.dt_name(), property, reason };
    let (Some(kind), Some(number), Some(flags)) = (be32(spec, 0), be32(spec, 4), be32(spec, 8)) else {
        return Err(bad("holds a truncated interrupt specifier"));
    };
    let intid = match kind {
        0 if number < 988 => number.checked_add(32),
        1 if number < 16 => number.checked_add(16),
        _ => None,
    };
    let intid = intid.ok_or_else(|| bad("holds an interrupt that is neither a GIC SPI nor a PPI"))?;
    Ok(Irq { intid, flags })
}

/// `cpus` is how many CPUs `/cpus` lists (each needs a redistributor);
/// `memory` the RAM no register window may overlap.
fn gic(dtb: &Dtb<'_>, node: &Node<'_>, cpus: usize, memory: &[&[MemRegion]]) -> Result<Gic, BoardError> {
    let version = if is_compatible(dtb, node, GIC_V3) { GicVersion::V3 } else { GicVersion::V2 };
    let compatible = GicCompatible::ALL
        .iter()
        .copied()
        .find(|c| is_compatible(dtb, node, &[c.as_str()]))
        .unwrap_or(GicCompatible::GicV3);
    let regs = regs(dtb, node)?;
    let at = |i: usize| regs.get(i).copied();
    let missing = |reason| BoardError::BadProperty { node: node.dt_name(), property: "reg", reason };
    let distributor = at(0).ok_or_else(|| missing("lacks the distributor"))?;
    let mut redistributors = RegionList::new();
    let (cpu_interface, rest) = match version {
        GicVersion::V3 => {
            let n = prop_u32(dtb, node, "#redistributor-regions")?.unwrap_or(1);
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n == 0 {
                return Err(BoardError::BadProperty {
                    node: node.dt_name(),
                    property: "#redistributor-regions",
                    reason: "is zero",
                });
            }
            for i in 0..n {
                let r = at(i.saturating_add(1))
                    .ok_or_else(|| missing("has fewer redistributor regions than #redistributor-regions"))?;
                redistributors
                    .push(r)
                    .map_err(|_| BoardError::TooMany { what: "GIC redistributor regions", capacity: MAX_REGIONS })?;
            }
            (at(n.saturating_add(1)), n.saturating_add(2))
        }
        GicVersion::V2 => (Some(at(1).ok_or_else(|| missing("lacks the CPU interface"))?), 2),
    };
    let (min_distributor, too_small) = match version {
        GicVersion::V3 => (GICD_V3_WINDOW, "gives the GICv3 distributor less than 64 KiB"),
        GicVersion::V2 => (GICD_V2_WINDOW, "gives the GICv2 distributor less than 4 KiB"),
    };
    check_window(node, distributor, min_distributor, too_small, memory)?;
    // A GICv2 CPU interface, and the virtual one a guest gets, have
    // `GICC_DIR` in their second 4 KiB page.
    let (hyp_interface, vcpu_interface) = (at(rest), at(rest.saturating_add(1)));
    let v2_frames = [
        (cpu_interface, crate::gicv2::gicc::SIZE, "gives the GICv2 CPU interface less than 8 KiB"),
        (hyp_interface, crate::gicv2::gich::SIZE, "gives the GICv2 virtual interface control less than 4 KiB"),
        (vcpu_interface, crate::gicv2::gicc::SIZE, "gives the GICv2 virtual CPU interface less than 8 KiB"),
    ];
    for (frame, min, too_small) in v2_frames.into_iter().filter(|_| version == GicVersion::V2) {
        if let Some(frame) = frame {
            check_window(node, frame, min, too_small, memory)?;
        }
    }
    for region in redistributors.iter().copied() {
        check_window(node, region, 1, "has an empty redistributor region", memory)?;
    }
    let redistributor_space = redistributors.iter().fold(0u64, |sum, r| sum.saturating_add(r.size));
    let needed = GICR_WINDOW_PER_CPU.saturating_mul(u64::try_from(cpus).unwrap_or(u64::MAX));
    if version == GicVersion::V3 && redistributor_space < needed {
        return Err(missing("gives the redistributors less than 128 KiB for each CPU in /cpus"));
    }
    let maintenance_irq = match dtb.prop(node, "interrupts") {
        Some(spec) => {
            let cells = gic_interrupt_cells(dtb, node)?;
            Some(gic_irq(spec.get(..cells).unwrap_or(spec), node, "interrupts")?)
        }
        None => None,
    };
    Ok(Gic {
        version,
        compatible,
        distributor,
        redistributors,
        cpu_interface,
        hyp_interface,
        vcpu_interface,
        maintenance_irq,
    })
}

/// The `interrupt-parent` phandle that applies to `node` (its own or the
/// nearest ancestor's).
fn interrupt_parent(dtb: &Dtb<'_>, node: &Node<'_>) -> Result<Option<u32>, BoardError> {
    let mut cur = Some(*node);
    for _ in 0..dt::MAX_DEPTH {
        let Some(n) = cur else { break };
        if let Some(p) = prop_u32(dtb, &n, "interrupt-parent")? {
            return Ok(Some(p));
        }
        cur = dtb.parent(&n);
    }
    Ok(None)
}

fn timer(dtb: &Dtb<'_>, node: &Node<'_>, gic: &Node<'_>) -> Result<Timer, BoardError> {
    let bad = |reason| BoardError::BadProperty { node: node.dt_name(), property: "interrupts", reason };
    // The timer's interrupts must be GIC PPIs: check where they are routed.
    let parent = interrupt_parent(dtb, node)?
        .ok_or_else(|| BoardError::MissingProperty { node: node.dt_name(), property: "interrupt-parent" })?;
    if prop_u32(dtb, gic, "phandle")? != Some(parent) {
        return Err(BoardError::Unsupported {
            node: node.dt_name(),
            reason: "timer interrupts are not routed to the GIC",
        });
    }
    let cells = gic_interrupt_cells(dtb, gic)?;
    let spec = dtb
        .prop(node, "interrupts")
        .ok_or_else(|| BoardError::MissingProperty { node: node.dt_name(), property: "interrupts" })?;
    if spec.len().checked_rem(cells) != Some(0) {
        return Err(bad("length is not a multiple of the GIC's #interrupt-cells"));
    }
    let mut irqs = [None; 5];
    for (slot, s) in irqs.iter_mut().zip(spec.chunks_exact(cells)) {
        let irq = gic_irq(s, node, "interrupts")?;
        if !(16..32).contains(&irq.intid) {
            return Err(bad("lists an interrupt that is not a PPI"));
        }
        *slot = Some(irq);
    }
    let [Some(secure_phys), Some(nonsecure_phys), Some(virt), Some(hyp_phys), hyp_virt] = irqs else {
        return Err(bad("lists fewer than 4 interrupts (secure phys, non-secure phys, virt, hyp)"));
    };
    Ok(Timer {
        secure_phys,
        nonsecure_phys,
        virt,
        hyp_phys,
        hyp_virt,
        clock_frequency: prop_u32(dtb, node, "clock-frequency")?,
    })
}

/// Resolves a `gpio-poweroff` or `gpio-restart` node to its PL061 line.
fn gpio_line(dtb: &Dtb<'_>, node: Option<Node<'_>>) -> Result<Option<GpioLine>, BoardError> {
    let Some(node) = node else { return Ok(None) };
    let bad = |reason| BoardError::BadProperty { node: node.dt_name(), property: "gpios", reason };
    let gpios = dtb
        .prop(&node, "gpios")
        .ok_or_else(|| BoardError::MissingProperty { node: node.dt_name(), property: "gpios" })?;
    let phandle = be32(gpios, 0).ok_or_else(|| bad("is empty"))?;
    let ctrl = dtb.find_phandle(phandle).ok_or_else(|| bad("references a phandle that no node has"))?;
    if !is_compatible(dtb, &ctrl, &["arm,pl061"]) {
        return Err(BoardError::Unsupported {
            node: ctrl.dt_name(),
            reason: "the GPIO controller is not compatible with arm,pl061, the only one this firmware drives",
        });
    }
    if !s_visible(dtb, &ctrl) {
        return Err(bad("references a GPIO controller the Secure world cannot see"));
    }
    let cells = prop_u32(dtb, &ctrl, "#gpio-cells")?
        .ok_or_else(|| BoardError::MissingProperty { node: ctrl.dt_name(), property: "#gpio-cells" })?;
    if cells == 0 {
        return Err(BoardError::BadProperty { node: ctrl.dt_name(), property: "#gpio-cells", reason: "is zero" });
    }
    if gpios.len() < cell_bytes(cells).saturating_add(4) {
        return Err(bad("is shorter than one GPIO specifier"));
    }
    let line = be32(gpios, 4).ok_or_else(|| bad("is shorter than one GPIO specifier"))?;
    let flags = if cells >= 2 { be32(gpios, 8).unwrap_or(0) } else { 0 };
    if line >= PL061_LINES {
        return Err(bad("names a line a PL061 does not have (it has 8)"));
    }
    Ok(Some(GpioLine { controller: first_reg(dtb, &ctrl)?, line, active_low: flags & GPIO_ACTIVE_LOW != 0 }))
}
