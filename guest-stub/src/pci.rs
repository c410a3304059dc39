//! The PCI checks: the ECAM config space the hypervisor publishes for the
//! MMIO devices it presents as PCI functions, read and written the
//! way an OS's PCI code does.
//!
//! # What the guest is promised
//!
//! - The DTB has a `pci-host-ecam-generic` node whose `reg` is the ECAM
//!   window, 1 MiB per bus, `bus-range = <0 1>`, and `ranges` that map the
//!   functions' BAR windows one-to-one; `/chosen` has
//!   `linux,pci-probe-only = <1>` (the BARs stay where the devices are).
//! - Bus 0, device 0 is the PL031 RTC and device 1 the PL061 GPIO ([`SHIMS`];
//!   the PL061 only where the machine has one: QEMU `virt` with `acpi=off`),
//!   function 0 each, laid out as `platform::pci::config` describes: vendor
//!   Arm, device ID the PrimeCell part number, a 64-bit memory BAR0 at the
//!   device's register window, interrupt pin INTA. Every other function,
//!   and all of bus 1, is absent: it reads all-ones and ignores writes.
//! - An access the config ABI does not allow (8 bytes, misaligned) reads
//!   all-ones in its own width and a write is dropped; the guest runs on.
//!
//! # How the stub reaches config space
//!
//! Every access is one `LDRB`/`LDRH`/`LDR`/`STRB`/`STRH`/`STR` with a plain
//! base register ([`load`], [`store`]): the hypervisor emulates only
//! accesses whose abort carries an instruction syndrome, which a writeback
//! form (which the compiler may pick for `read_volatile`) does not. Each
//! runs under [`expect_sync`], so an access the hypervisor does not emulate
//! fails its check instead of the run.
//!
//! The stub's MMU is off, which makes every data access Device memory, and
//! the architecture raises an alignment fault at stage 1 (to the stub's own
//! EL1 vector, before stage 2 is consulted) for any misaligned Device
//! access. So the hypervisor never sees a misaligned access from an MMU-off
//! guest. To put one in front of it, `pci-bad-access` makes its misaligned
//! accesses with the MMU on, over a map of its own ([`with_ecam_as_normal`])
//! that maps the ECAM window as Normal memory (misaligned accesses allowed,
//! `SCTLR_EL1.A` = 0); they then reach stage 2 like any other.

use crate::checks::Failure;
use crate::exceptions::{expect_sync, Caught};
use crate::Env;
use platform::addr::{PhysAddr, VirtAddr};
use platform::paging::{self, Attributes, MemoryType, Regime, StaticPool, Table, UserAccess};
use platform::pci::config::{bar, command, offset, status, HEADER_TYPE, REVISION_ID, VENDOR_ID_ARM};
use platform::pci::{Bdf, ClassCode, EcamWindow, Intx, DEVICES_PER_BUS, FUNCTIONS_PER_DEVICE, ROOT_BUS};
use platform::println;

/// The host bridge node's compatible (Linux's generic ECAM host driver).
pub const COMPATIBLE: &str = "pci-host-ecam-generic";
/// The `/chosen` property that tells an OS to keep the BARs as they are.
const PROBE_ONLY: &str = "linux,pci-probe-only";
/// The bus after the root bus, the last one the window covers; nothing is on it.
const EMPTY_BUS: u8 = ROOT_BUS + 1;
/// At most this many `ranges` entries are kept.
const MAX_RANGES: usize = 8;

/// A shim function the hypervisor presents, at device number = its index
/// in [`SHIMS`] (the order the monitor adds the devices in).
struct Shim {
    name: &'static str,
    /// The PrimeCell part number: the device ID.
    part_number: u16,
    /// Whether every QEMU `virt` machine has the device. With firmware and
    /// ACPI on (the default), QEMU replaces the board's Non-secure PL061
    /// with an ACPI event device, and the monitor then leaves its function
    /// out; with `acpi=off` it is there.
    always: bool,
}

/// The shim functions on QEMU `virt`, in device-number order.
const SHIMS: [Shim; 2] = [
    Shim { name: "PL031 RTC", part_number: primecell::PART_PL031, always: true },
    Shim { name: "PL061 GPIO", part_number: primecell::PART_PL061, always: false },
];
/// Device number of the PL031 on bus 0.
const PL031_DEVICE: u8 = 0;

/// The PrimeCell identification registers, at the same offsets in every
/// PrimeCell's 4 KiB window (e.g. the PL031 TRM, "Peripheral
/// identification registers" and "PrimeCell identification registers").
pub mod primecell {
    /// A PrimeCell register window: what BAR0 describes.
    pub const WINDOW: u64 = 0x1000;
    /// `PeriphID0`; `PeriphID1..3` follow at +4, +8, +0xc. PeriphID0 holds
    /// part number [7:0], PeriphID1 [3:0] part number [11:8].
    pub const PERIPH_ID0: u64 = 0xfe0;
    /// `PCellID0`; `PCellID1..3` follow at +4, +8, +0xc.
    pub const PCELL_ID0: u64 = 0xff0;
    /// The low bytes of `PCellID0..3` in every PrimeCell (0xB105F00D).
    pub const PCELL_ID: [u64; 4] = [0x0d, 0xf0, 0x05, 0xb1];
    pub const PART_PL031: u16 = 0x031;
    pub const PART_PL061: u16 = 0x061;
    /// The PL031's data register `RTCDR`: the current time in seconds.
    pub const PL031_RTCDR: u64 = 0x000;
    /// The PL031's match register `RTCMR`: the alarm raises the interrupt
    /// when `RTCDR` reaches it.
    pub const PL031_RTCMR: u64 = 0x004;
    /// `RTCIMSC`: bit 0 set lets the alarm raise the interrupt line.
    pub const PL031_RTCIMSC: u64 = 0x010;
    /// `RTCMIS`: bit 0, the alarm interrupt as the line shows it.
    pub const PL031_RTCMIS: u64 = 0x018;
    /// `RTCICR`: writing bit 0 clears the alarm interrupt.
    pub const PL031_RTCICR: u64 = 0x01c;
    /// The alarm's bit in `RTCIMSC`, `RTCMIS` and `RTCICR`.
    pub const PL031_ALARM: u64 = 1;

    /// The part number `PeriphID0` and `PeriphID1` encode.
    pub const fn part_number(pid0: u64, pid1: u64) -> u64 {
        (pid0 & 0xff) | (pid1 & 0xf) << 8
    }
}

// --- the host bridge, as the DTB describes it ---------------------------

/// One `ranges` entry of the host bridge: PCI address -> CPU address.
#[derive(Clone, Copy, Debug)]
pub struct Range {
    /// The space code of `phys.hi` (bits [25:24]): 0b10 32-bit memory,
    /// 0b11 64-bit memory (IEEE 1275 PCI bus binding).
    space: u32,
    pci: u64,
    cpu: u64,
    size: u64,
}

impl Range {
    const SPACE_SHIFT: u32 = 24;
    const SPACE_MEM32: u32 = 0b10;
    const SPACE_MEM64: u32 = 0b11;

    /// Whether this is a memory range mapped one-to-one that holds
    /// `[base, base + len)`.
    pub(crate) fn holds_identity(&self, base: u64, len: u64) -> bool {
        let memory = self.space == Self::SPACE_MEM32 || self.space == Self::SPACE_MEM64;
        let end = base.checked_add(len);
        let range_end = self.cpu.checked_add(self.size);
        memory && self.pci == self.cpu && base >= self.cpu && matches!((end, range_end), (Some(e), Some(r)) if e <= r)
    }
}

/// The host bridge the guest DTB publishes (`Env::ecam`).
#[derive(Clone, Copy, Debug)]
pub struct Ecam {
    /// The ECAM window: `reg`.
    pub base: u64,
    pub size: u64,
    /// `bus-range`, if the node has one.
    pub bus_range: Option<(u32, u32)>,
    /// `/chosen/linux,pci-probe-only`, if present.
    pub probe_only: Option<u64>,
    /// The `ranges` entries, or why they do not parse.
    pub ranges: Result<[Option<Range>; MAX_RANGES], &'static str>,
    /// `interrupt-map` (with `interrupt-map-mask`), or why it does not
    /// parse.
    pub interrupt_map: Result<InterruptMap, &'static str>,
}

impl Ecam {
    /// The host bridge in `fdt`, or why there is none the checks can use.
    pub fn from_fdt(fdt: &fdt::Fdt) -> Result<Self, &'static str> {
        let node = fdt
            .find_compatible(&[COMPATIBLE])
            .ok_or("no node with compatible = \"pci-host-ecam-generic\" in the guest DTB")?;
        let reg = node.reg().and_then(|mut reg| reg.next()).ok_or("the pci-host-ecam-generic node has no reg")?;
        let size = reg.size.ok_or("the pci-host-ecam-generic node's reg has no size")?;
        let bus_range = node.property("bus-range").and_then(|p| {
            let mut cells = p.value.chunks_exact(4).map(be_cells);
            match (cells.next(), cells.next(), cells.next()) {
                (Some(Some(start)), Some(Some(end)), None) => Some((start as u32, end as u32)),
                _ => None,
            }
        });
        let probe_only = fdt
            .find_node("/chosen")
            .and_then(|chosen| chosen.property(PROBE_ONLY))
            .and_then(|p| p.as_usize())
            .map(|v| v as u64);
        Ok(Self {
            base: reg.starting_address as u64,
            size: size as u64,
            bus_range,
            probe_only,
            ranges: parse_ranges(node),
            interrupt_map: InterruptMap::from_node(fdt, node),
        })
    }
}

/// At most this many `interrupt-map` entries are kept.
const MAX_MAP_ENTRIES: usize = 16;
/// A PCI unit address (`phys.hi`, `phys.mid`, `phys.lo`) and the pin: the
/// child side of an `interrupt-map` entry of a host bridge whose
/// `#interrupt-cells` is 1.
const MAP_CHILD_CELLS: usize = 4;
/// `phys.hi`'s device number, bits 15:11.
const PHYS_HI_DEVICE_SHIFT: u32 = 11;
/// The GIC binding's type cell for an SPI, whose number counts from INTID 32.
const GIC_SPEC_SPI: u32 = 0;
const SPI_BASE: u32 = 32;

/// A host bridge's `interrupt-map` (IEEE 1275 interrupt mapping, as the
/// `pci-host-ecam-generic` binding uses it): which GIC interrupt each
/// (device, pin) is wired to.
#[derive(Clone, Copy, Debug)]
pub struct InterruptMap {
    /// `interrupt-map-mask` (all-ones when absent).
    mask: [u32; MAP_CHILD_CELLS],
    /// Child unit address and pin, and the parent's GIC SPI as an INTID
    /// (`None`: the parent is not a GIC, or the interrupt not an SPI).
    entries: [Option<([u32; MAP_CHILD_CELLS], Option<u32>)>; MAX_MAP_ENTRIES],
}

impl InterruptMap {
    fn from_node(fdt: &fdt::Fdt, node: fdt::node::FdtNode) -> Result<Self, &'static str> {
        if node.interrupt_cells() != Some(1) {
            return Err("the host bridge's #interrupt-cells is not 1 (the pin)");
        }
        let mut mask = [u32::MAX; MAP_CHILD_CELLS];
        if let Some(prop) = node.property("interrupt-map-mask") {
            if prop.value.len() != 4 * MAP_CHILD_CELLS {
                return Err("the host bridge's interrupt-map-mask is not 4 cells");
            }
            for (cell, bytes) in mask.iter_mut().zip(prop.value.chunks_exact(4)) {
                *cell = be_cells(bytes).ok_or("interrupt-map-mask does not parse")? as u32;
            }
        }
        let map = node.property("interrupt-map").ok_or("the host bridge has no interrupt-map")?.value;
        if !map.len().is_multiple_of(4) {
            return Err("the host bridge's interrupt-map is not a whole number of cells");
        }
        let mut cells = map.chunks_exact(4).map(|bytes| be_cells(bytes).map_or(0, |v| v as u32));
        let mut entries = [None; MAX_MAP_ENTRIES];
        let truncated = "the host bridge's interrupt-map ends inside an entry";
        for slot in entries.iter_mut() {
            let Some(first) = cells.next() else { break };
            let mut child = [first, 0, 0, 0];
            for cell in child.iter_mut().skip(1) {
                *cell = cells.next().ok_or(truncated)?;
            }
            let phandle = cells.next().ok_or(truncated)?;
            let parent = fdt.find_phandle(phandle).ok_or("an interrupt-map entry names no node's phandle")?;
            // The parent's unit address is as long as its #address-cells
            // says: none when it has none (QEMU's GIC node has 2).
            let address_cells = parent.property("#address-cells").and_then(|p| p.as_usize()).unwrap_or(0);
            let interrupt_cells = parent.interrupt_cells().ok_or("an interrupt-map parent has no #interrupt-cells")?;
            for _ in 0..address_cells {
                cells.next().ok_or(truncated)?;
            }
            let mut specifier = [0u32; 2];
            for index in 0..interrupt_cells {
                let cell = cells.next().ok_or(truncated)?;
                if let Some(slot) = specifier.get_mut(index) {
                    *slot = cell;
                }
            }
            let gic = parent.compatible().is_some_and(|c| c.all().any(|c| crate::gic::COMPATIBLES.contains(&c)));
            let spi = (gic && interrupt_cells >= 2 && specifier[0] == GIC_SPEC_SPI)
                .then(|| specifier[1].checked_add(SPI_BASE))
                .flatten();
            *slot = Some((child, spi));
        }
        Ok(Self { mask, entries })
    }

    /// The SPI (its INTID) that `device`'s `pin` on the root bus is wired
    /// to; or why there is none.
    pub fn spi(&self, device: u8, pin: u8) -> Result<u32, &'static str> {
        let key = [u32::from(device) << PHYS_HI_DEVICE_SHIFT, 0, 0, u32::from(pin)];
        let matches = |child: &[u32; MAP_CHILD_CELLS]| {
            child.iter().zip(&key).zip(&self.mask).all(|((child, key), mask)| child & mask == key & mask)
        };
        let (_, spi) = self
            .entries
            .iter()
            .flatten()
            .find(|(child, _)| matches(child))
            .ok_or("the host bridge's interrupt-map has no entry for the function's pin")?;
        spi.ok_or("the host bridge's interrupt-map routes the function's pin to something other than a GIC SPI")
    }
}

impl Ecam {
    /// The CPU-side windows of the host bridge's `ranges` (where its
    /// functions' BARs decode), as `(base, size)`.
    pub fn range_windows(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.as_ref().ok().into_iter().flatten().flatten().map(|range| (range.cpu, range.size))
    }
}

/// A big-endian value of one or two cells.
fn be_cells(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 8 || !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
}

/// The host bridge's `ranges`: 3-cell PCI address, the parent's address
/// cells (as many as `reg` uses), the node's size cells.
fn parse_ranges(node: fdt::node::FdtNode) -> Result<[Option<Range>; MAX_RANGES], &'static str> {
    let prop = node.property("ranges").ok_or("the host bridge has no ranges")?;
    let own = node.cell_sizes();
    if own.address_cells != 3 {
        return Err("the host bridge's #address-cells is not 3 (PCI addresses)");
    }
    let parent_cells = node
        .raw_reg()
        .and_then(|mut reg| reg.next())
        .map(|reg| reg.address.len() / 4)
        .ok_or("the host bridge has no reg to take the parent's #address-cells from")?;
    if !(1..=2).contains(&parent_cells) || !(1..=2).contains(&own.size_cells) {
        return Err("the host bridge's ranges use more than 2 cells for a CPU address or a size");
    }
    let entry = 4 * (3 + parent_cells + own.size_cells);
    if prop.value.is_empty() || !prop.value.len().is_multiple_of(entry) {
        return Err("the host bridge's ranges are empty or not a whole number of entries");
    }
    let mut ranges = [None; MAX_RANGES];
    for (slot, bytes) in ranges.iter_mut().zip(prop.value.chunks_exact(entry)) {
        let (pci, rest) = bytes.split_at(12);
        let (cpu, size) = rest.split_at(4 * parent_cells);
        let (hi, pci) = pci.split_at(4);
        let bad = "a ranges entry does not parse";
        *slot = Some(Range {
            space: (be_cells(hi).ok_or(bad)? >> Range::SPACE_SHIFT) as u32 & 0b11,
            pci: be_cells(pci).ok_or(bad)?,
            cpu: be_cells(cpu).ok_or(bad)?,
            size: be_cells(size).ok_or(bad)?,
        });
    }
    Ok(ranges)
}

// --- single-instruction accesses -----------------------------------------

/// The width of one access.
#[derive(Clone, Copy)]
pub enum Width {
    Byte,
    Half,
    Word,
    /// Not a config access: config space has no 8-byte registers.
    Double,
}

impl Width {
    pub(crate) const fn all_ones(self) -> u64 {
        match self {
            Self::Byte => 0xff,
            Self::Half => 0xffff,
            Self::Word => 0xffff_ffff,
            Self::Double => u64::MAX,
        }
    }

    /// `byte` in every byte lane of the width.
    const fn replicate(self, byte: u8) -> u64 {
        (byte as u64).wrapping_mul(0x0101_0101_0101_0101) & self.all_ones()
    }
}

/// `$insn {v}, [{a}]`: one load from `$addr`; the destination register.
macro_rules! load_insn {
    ($insn:literal, $addr:expr) => {{
        let v: u64;
        core::arch::asm!($insn, a = in(reg) $addr, v = out(reg) v, options(nostack));
        v
    }};
}

/// `$insn {v}, [{a}]`: one store of `$value` to `$addr`.
macro_rules! store_insn {
    ($insn:literal, $addr:expr, $value:expr) => {
        core::arch::asm!($insn, a = in(reg) $addr, v = in(reg) $value, options(nostack))
    };
}

/// One zero-extending load of `width` at `addr` (`LDRB`, `LDRH`, `LDR Wt`,
/// `LDR Xt` from a plain base register), or the exception it raised.
pub fn load(addr: u64, width: Width) -> Result<u64, Caught> {
    let mut value = 0;
    let caught = expect_sync(|| {
        // SAFETY: `addr` is in the ECAM window or a shim function's BAR
        // window, which stage 2 leaves to the hypervisor to emulate or maps
        // to the device; nothing of the stub's own lives there. Should the
        // access abort, the handler steps over the instruction.
        value = unsafe {
            match width {
                Width::Byte => load_insn!("ldrb {v:w}, [{a}]", addr),
                Width::Half => load_insn!("ldrh {v:w}, [{a}]", addr),
                Width::Word => load_insn!("ldr {v:w}, [{a}]", addr),
                Width::Double => load_insn!("ldr {v}, [{a}]", addr),
            }
        };
    });
    caught.map_or(Ok(value), Err)
}

/// One store of the low `width` of `value` at `addr` (`STRB`, `STRH`,
/// `STR Wt`, `STR Xt` to a plain base register), or the exception it raised.
pub fn store(addr: u64, width: Width, value: u64) -> Result<(), Caught> {
    let caught = expect_sync(|| {
        // SAFETY: as for `load`: the ECAM window, emulated by the hypervisor.
        unsafe {
            match width {
                Width::Byte => store_insn!("strb {v:w}, [{a}]", addr, value),
                Width::Half => store_insn!("strh {v:w}, [{a}]", addr, value),
                Width::Word => store_insn!("str {v:w}, [{a}]", addr, value),
                Width::Double => store_insn!("str {v}, [{a}]", addr, value),
            }
        }
    });
    caught.map_or(Ok(()), Err)
}

// --- config space ---------------------------------------------------------

const CONFIG_ABORTED: &str = "a config-space access aborted (ECAM window not emulated?)";
const MISALIGNED_ABORTED: &str =
    "a misaligned config access aborted (the contract: a read gives all-ones, a write is dropped, no exception)";
const BAR_ABORTED: &str = "a load through BAR0 aborted (device window not mapped at the BAR's address?)";

/// The ECAM window, checked to cover the buses the checks touch.
pub(crate) struct Config {
    window: EcamWindow,
}

impl Config {
    pub(crate) fn open(env: &Env) -> Result<Self, Failure> {
        let ecam = env.ecam.as_ref().map_err(|why| Failure::Missing(why))?;
        let (start, end) = ecam.bus_range.ok_or(Failure::Missing("the host bridge has no (valid) bus-range"))?;
        let (Ok(start), Ok(end)) = (u8::try_from(start), u8::try_from(end)) else {
            return Err(Failure::Missing("the host bridge's bus-range is beyond bus 255"));
        };
        if start > ROOT_BUS || end < EMPTY_BUS {
            return Err(Failure::Mismatch {
                what: "bus-range must include buses 0 and 1; last bus",
                expected: EMPTY_BUS.into(),
                got: end.into(),
            });
        }
        let window = EcamWindow::new(ecam.base, start, end)
            .ok_or(Failure::Missing("the ECAM window runs past the address space"))?;
        if ecam.size < window.size() {
            return Err(Failure::Mismatch {
                what: "ECAM reg size (1 MiB per bus of bus-range)",
                expected: window.size(),
                got: ecam.size,
            });
        }
        Ok(Self { window })
    }

    fn address(&self, bdf: Bdf, reg: u16) -> Result<u64, Failure> {
        self.window.address(bdf, reg).ok_or(Failure::Missing("a config address outside the ECAM window"))
    }

    pub(crate) fn read(&self, bdf: Bdf, reg: u16, width: Width) -> Result<u64, Failure> {
        load(self.address(bdf, reg)?, width).map_err(|caught| Failure::Exception { what: CONFIG_ABORTED, caught })
    }

    pub(crate) fn write(&self, bdf: Bdf, reg: u16, width: Width, value: u64) -> Result<(), Failure> {
        store(self.address(bdf, reg)?, width, value)
            .map_err(|caught| Failure::Exception { what: CONFIG_ABORTED, caught })
    }

    /// Reads `reg` and compares it with `expected`.
    pub(crate) fn expect(
        &self,
        what: &'static str,
        bdf: Bdf,
        reg: u16,
        width: Width,
        expected: u64,
    ) -> Result<(), Failure> {
        expect_eq(what, expected, self.read(bdf, reg, width)?)
    }

    /// The address BAR0/BAR1 hold (type bits cleared).
    fn bar0(&self, bdf: Bdf) -> Result<u64, Failure> {
        let low = self.read(bdf, offset::BAR0, Width::Word)?;
        let high = self.read(bdf, offset::BAR1, Width::Word)?;
        Ok(high << 32 | (low & !u64::from(bar::TYPE_MASK)))
    }
}

pub(crate) fn expect_eq(what: &'static str, expected: u64, got: u64) -> Result<(), Failure> {
    if expected == got {
        Ok(())
    } else {
        Err(Failure::Mismatch { what, expected, got })
    }
}

pub(crate) fn bdf_of(bus: u8, device: u8, function: u8) -> Result<Bdf, Failure> {
    Bdf::new(bus, device, function).ok_or(Failure::Missing("device or function number out of range"))
}

/// Says which function `result` is about when it is a failure (the FAIL
/// line that follows has room only for a fixed text).
pub(crate) fn about<T>(bdf: Bdf, name: &str, result: Result<T, Failure>) -> Result<T, Failure> {
    if result.is_err() {
        println!("pci: the failure below is about {bdf} ({name})");
    }
    result
}

/// Runs `test`, then `restore` whatever `test` returned; the first failure
/// is the one reported.
pub(crate) fn restoring(
    test: impl FnOnce() -> Result<(), Failure>,
    restore: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    let result = test();
    result.and(restore())
}

/// The shim functions present, with their addresses: [`SHIMS`] in order,
/// up to the first one the machine lacks (its vendor ID reads all-ones).
/// One that every machine has must be there.
fn shims(config: &Config) -> Result<[Option<(Bdf, &'static Shim)>; SHIMS.len()], Failure> {
    let mut found = [None; SHIMS.len()];
    for ((slot, shim), device) in found.iter_mut().zip(&SHIMS).zip(0u8..) {
        let bdf = bdf_of(ROOT_BUS, device, 0)?;
        if config.read(bdf, offset::VENDOR_ID, Width::Half)? == Width::Half.all_ones() {
            if shim.always {
                about(
                    bdf,
                    shim.name,
                    Err(Failure::Missing(
                        "no function where every QEMU virt machine has one (vendor ID reads all-ones)",
                    )),
                )?;
            }
            break;
        }
        *slot = Some((bdf, shim));
    }
    Ok(found)
}

/// BAR0's low dword after all-ones was written: the address bits at and
/// above the window size, with the (read-only) type bits.
const fn bar0_size_mask(window: u64) -> u64 {
    ((!(window - 1)) as u32 & !bar::TYPE_MASK | bar::TYPE) as u64
}

/// Why the PCI checks cannot run in this VM although it has a host
/// bridge: the bridge has no function at 00:00.0, where every machine has
/// the PL031 shim (a VM that is an end of portals but does not own the
/// PL031 has only its portal functions there). `None` otherwise, also when
/// config space cannot be read (the checks then say why).
pub fn shims_absent(env: &Env) -> Option<&'static str> {
    let config = Config::open(env).ok()?;
    let bdf = bdf_of(ROOT_BUS, PL031_DEVICE, 0).ok()?;
    let vendor = config.read(bdf, offset::VENDOR_ID, Width::Half).ok()?;
    (vendor == Width::Half.all_ones())
        .then_some("this VM's PCI host bridge has no shim function at 00:00.0 (only portal functions)")
}

// --- the hypervisor's own functions' BARs -----------------------------------

/// The address a 64-bit BAR pair holds (type bits cleared).
pub(crate) fn bar_address(config: &Config, bdf: Bdf, low: u16) -> Result<u64, Failure> {
    let lo = config.read(bdf, low, Width::Word)?;
    let hi = config.read(bdf, low + 4, Width::Word)?;
    Ok(hi << 32 | (lo & !u64::from(bar::TYPE_MASK)))
}

/// Sizes BAR0 and BAR2 of one of the hypervisor's functions (a portal's,
/// a backend function's; both 64-bit pairs) as an OS does: memory decoding off, all-ones into
/// each pair, read back, the address and then the command put back.
pub(crate) fn size_bars(config: &Config, bdf: Bdf) -> Result<(u64, u64), Failure> {
    let mut sizes = (0, 0);
    with_decode_off(config, bdf, || {
        sizes = (size_bar(config, bdf, offset::BAR0)?, size_bar(config, bdf, offset::BAR2)?);
        Ok(())
    })?;
    Ok(sizes)
}

/// The size the 64-bit BAR pair at `low` decodes (0: none).
fn size_bar(config: &Config, bdf: Bdf, low: u16) -> Result<u64, Failure> {
    let high = low + 4;
    let (lo, hi) = (config.read(bdf, low, Width::Word)?, config.read(bdf, high, Width::Word)?);
    let all_ones = Width::Word.all_ones();
    let mut sized = (0, 0);
    restoring(
        || {
            config.write(bdf, low, Width::Word, all_ones)?;
            config.write(bdf, high, Width::Word, all_ones)?;
            sized = (config.read(bdf, low, Width::Word)?, config.read(bdf, high, Width::Word)?);
            Ok(())
        },
        || {
            config.write(bdf, low, Width::Word, lo)?;
            config.write(bdf, high, Width::Word, hi)?;
            config.expect("BAR low dword restored after sizing", bdf, low, Width::Word, lo)?;
            config.expect("BAR high dword restored after sizing", bdf, high, Width::Word, hi)
        },
    )?;
    let type_mask = u64::from(bar::TYPE_MASK);
    expect_eq("BAR type bits after writing all-ones (read-only)", lo & type_mask, sized.0 & type_mask)?;
    let mask = sized.1 << 32 | (sized.0 & !type_mask);
    Ok((!mask).wrapping_add(1))
}

// --- pci-enumerate ----------------------------------------------------------

pub fn enumerate(env: &Env) -> Result<(), Failure> {
    let config = Config::open(env)?;
    let ecam = env.ecam.as_ref().map_err(|why| Failure::Missing(why))?;
    check_bridge(ecam, &config)?;
    let ranges = ecam.ranges.as_ref().map_err(|why| Failure::Missing(why))?;

    // Bus 0: the shims at their device numbers, nothing else but the
    // portal functions of a VM that is an end of portals (from device 16;
    // `portal-enumerate` checks them).
    let found = shims(&config)?;
    for (device, shim) in (0..DEVICES_PER_BUS).zip(found.iter().chain(core::iter::repeat(&None))) {
        let bdf = bdf_of(ROOT_BUS, device, 0)?;
        match shim {
            Some((bdf, shim)) => about(*bdf, shim.name, check_shim(&config, ranges, *bdf, shim))?,
            None if crate::portal::is_portal(&config, bdf)? || crate::virtio::is_backend(&config, bdf)? => {}
            None => about(
                bdf,
                "absent",
                config.expect(
                    "vendor ID of an absent device on bus 0 (all-ones)",
                    bdf,
                    offset::VENDOR_ID,
                    Width::Half,
                    Width::Half.all_ones(),
                ),
            )?,
        }
    }
    let mut names = found.iter().flatten().map(|(bdf, shim)| (bdf, shim.name));
    if let (Some((bdf, name)), second) = (names.next(), names.next()) {
        match second {
            Some((bdf2, name2)) => println!("pci: bus 0 has {bdf} {name} and {bdf2} {name2}"),
            None => println!("pci: bus 0 has {bdf} {name} only"),
        }
    }
    // Bus 1: empty.
    for device in 0..DEVICES_PER_BUS {
        let bdf = bdf_of(EMPTY_BUS, device, 0)?;
        about(
            bdf,
            "absent",
            config.expect(
                "vendor ID on bus 1 (all-ones: the bus is empty)",
                bdf,
                offset::VENDOR_ID,
                Width::Half,
                Width::Half.all_ones(),
            ),
        )?;
    }
    Ok(())
}

/// What the DTB says about the host bridge, against the contract.
fn check_bridge(ecam: &Ecam, config: &Config) -> Result<(), Failure> {
    let (start, end) = ecam.bus_range.unwrap_or((u32::MAX, u32::MAX));
    expect_eq("bus-range first bus", ROOT_BUS.into(), start.into())?;
    expect_eq("bus-range last bus", EMPTY_BUS.into(), end.into())?;
    expect_eq("ECAM reg size (1 MiB per bus of bus-range)", config.window.size(), ecam.size)?;
    let probe_only = ecam.probe_only.ok_or(Failure::Missing("/chosen has no linux,pci-probe-only"))?;
    expect_eq("/chosen/linux,pci-probe-only", 1, probe_only)
}

fn check_shim(config: &Config, ranges: &[Option<Range>], bdf: Bdf, shim: &Shim) -> Result<(), Failure> {
    config.expect("vendor ID (Arm)", bdf, offset::VENDOR_ID, Width::Half, VENDOR_ID_ARM.into())?;
    config.expect("device ID (PrimeCell part number)", bdf, offset::DEVICE_ID, Width::Half, shim.part_number.into())?;
    let class = ClassCode::for_primecell(shim.part_number).register() | u32::from(REVISION_ID);
    config.expect("revision ID and class code (dword 0x08)", bdf, offset::REVISION_ID, Width::Word, class.into())?;
    config.expect(
        "header type (type 0, single function)",
        bdf,
        offset::HEADER_TYPE,
        Width::Byte,
        HEADER_TYPE.into(),
    )?;

    let low = config.read(bdf, offset::BAR0, Width::Word)?;
    expect_eq("BAR0 type bits (64-bit memory, not prefetchable)", bar::TYPE.into(), low & u64::from(bar::TYPE_MASK))?;
    let base = config.bar0(bdf)?;
    if base == 0 {
        return Err(Failure::Missing("BAR0/BAR1 hold address 0 (no window)"));
    }
    expect_eq(
        "BAR0 address bits below 4 KiB (a PrimeCell window is 4 KiB-aligned)",
        0,
        base & (primecell::WINDOW - 1),
    )?;
    if !ranges.iter().flatten().any(|range| range.holds_identity(base, primecell::WINDOW)) {
        return Err(Failure::Mismatch {
            what: "BAR0's 4 KiB window lies in no one-to-one memory entry of the host bridge's ranges; BAR0",
            expected: 0,
            got: base,
        });
    }

    config.expect("interrupt pin (INTA)", bdf, offset::INTERRUPT_PIN, Width::Byte, Intx::INTA.into())?;
    config.expect("capabilities pointer (no capabilities)", bdf, offset::CAPABILITIES, Width::Byte, 0)?;
    let status = config.read(bdf, offset::STATUS, Width::Half)?;
    expect_eq("status capabilities-list bit", 0, status & u64::from(status::CAPABILITIES_LIST))?;
    let command = config.read(bdf, offset::COMMAND, Width::Half)?;
    expect_eq(
        "command memory space enable (set at handoff)",
        command::MEMORY_SPACE.into(),
        command & u64::from(command::MEMORY_SPACE),
    )?;

    // A single-function device: functions 1..8 are absent.
    for function in 1..FUNCTIONS_PER_DEVICE {
        let other = bdf_of(bdf.bus(), bdf.device(), function)?;
        config.expect(
            "vendor ID of function 1..7 of a shim device (all-ones)",
            other,
            offset::VENDOR_ID,
            Width::Half,
            Width::Half.all_ones(),
        )?;
    }
    Ok(())
}

// --- pci-bar-sizing -----------------------------------------------------------

pub fn bar_sizing(env: &Env) -> Result<(), Failure> {
    let config = Config::open(env)?;
    for (bdf, shim) in shims(&config)?.into_iter().flatten() {
        about(bdf, shim.name, size_bar0(&config, bdf))?;
    }
    Ok(())
}

/// Sizes BAR0 as an OS does: memory decoding off while the BAR holds the
/// size mask, then the address and the command register put back.
fn size_bar0(config: &Config, bdf: Bdf) -> Result<(), Failure> {
    with_decode_off(config, bdf, || size_with_decode_off(config, bdf))
}

/// Runs `f` with `bdf`'s memory decoding off (checked), then puts its
/// command register back (checked), as an OS does around BAR sizing.
pub(crate) fn with_decode_off(
    config: &Config,
    bdf: Bdf,
    f: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), Failure> {
    let command = config.read(bdf, offset::COMMAND, Width::Half)?;
    let decode_off = command & !u64::from(command::MEMORY_SPACE);
    config.write(bdf, offset::COMMAND, Width::Half, decode_off)?;
    restoring(
        || {
            config.expect(
                "command after clearing memory space enable",
                bdf,
                offset::COMMAND,
                Width::Half,
                decode_off,
            )?;
            f()
        },
        || {
            config.write(bdf, offset::COMMAND, Width::Half, command)?;
            config.expect("command restored after sizing", bdf, offset::COMMAND, Width::Half, command)
        },
    )
}

fn size_with_decode_off(config: &Config, bdf: Bdf) -> Result<(), Failure> {
    let low = config.read(bdf, offset::BAR0, Width::Word)?;
    let high = config.read(bdf, offset::BAR1, Width::Word)?;
    let all_ones = Width::Word.all_ones();
    restoring(
        || {
            config.write(bdf, offset::BAR0, Width::Word, all_ones)?;
            config.write(bdf, offset::BAR1, Width::Word, all_ones)?;
            config.expect(
                "BAR0 after writing all-ones (4 KiB size mask | 64-bit type)",
                bdf,
                offset::BAR0,
                Width::Word,
                bar0_size_mask(primecell::WINDOW),
            )?;
            config.expect(
                "BAR1 after writing all-ones (every high address bit)",
                bdf,
                offset::BAR1,
                Width::Word,
                all_ones,
            )
        },
        || {
            config.write(bdf, offset::BAR0, Width::Word, low)?;
            config.write(bdf, offset::BAR1, Width::Word, high)?;
            config.expect("BAR0 restored", bdf, offset::BAR0, Width::Word, low)?;
            config.expect("BAR1 restored", bdf, offset::BAR1, Width::Word, high)
        },
    )?;
    // BAR2..BAR5 and the expansion ROM BAR are not implemented: all-ones
    // reads back 0, which is how an OS learns that.
    let unimplemented = (offset::BAR2..=offset::BAR5).step_by(4).chain([offset::EXPANSION_ROM]);
    for reg in unimplemented {
        config.write(bdf, reg, Width::Word, all_ones)?;
        config.expect(
            "BAR2..BAR5 / expansion ROM after writing all-ones (0: not implemented)",
            bdf,
            reg,
            Width::Word,
            0,
        )?;
    }
    Ok(())
}

// --- pci-readonly-fields ---------------------------------------------------------

pub fn readonly_fields(env: &Env) -> Result<(), Failure> {
    let config = Config::open(env)?;
    for (bdf, shim) in shims(&config)?.into_iter().flatten() {
        about(bdf, shim.name, check_writability(&config, bdf))?;
    }
    Ok(())
}

fn check_writability(config: &Config, bdf: Bdf) -> Result<(), Failure> {
    // Read-only registers keep their value when their complement is written.
    let read_only = [
        ("vendor ID after writing its complement (read-only)", offset::VENDOR_ID, Width::Half),
        ("device ID after writing its complement (read-only)", offset::DEVICE_ID, Width::Half),
        ("revision ID and class code after writing their complement (read-only)", offset::REVISION_ID, Width::Word),
        ("header type after writing its complement (read-only)", offset::HEADER_TYPE, Width::Byte),
        ("interrupt pin after writing its complement (read-only)", offset::INTERRUPT_PIN, Width::Byte),
    ];
    for (what, reg, width) in read_only {
        let before = config.read(bdf, reg, width)?;
        config.write(bdf, reg, width, !before & width.all_ones())?;
        config.expect(what, bdf, reg, width, before)?;
    }
    // Status has no writable bits (its error bits are hardwired to 0, so a
    // write of ones clears nothing either); the interrupt bit follows the
    // device, so it is left out of the comparison.
    let volatile = u64::from(status::INTERRUPT);
    let before = config.read(bdf, offset::STATUS, Width::Half)? & !volatile;
    config.write(bdf, offset::STATUS, Width::Half, Width::Half.all_ones())?;
    expect_eq(
        "status after writing all-ones (no writable bits)",
        before,
        config.read(bdf, offset::STATUS, Width::Half)? & !volatile,
    )?;

    // The interrupt line is the OS's to write.
    let line = config.read(bdf, offset::INTERRUPT_LINE, Width::Byte)?;
    let other = !line & Width::Byte.all_ones();
    restoring(
        || {
            config.write(bdf, offset::INTERRUPT_LINE, Width::Byte, other)?;
            config.expect(
                "interrupt line after writing its complement (writable)",
                bdf,
                offset::INTERRUPT_LINE,
                Width::Byte,
                other,
            )
        },
        || {
            config.write(bdf, offset::INTERRUPT_LINE, Width::Byte, line)?;
            config.expect("interrupt line restored", bdf, offset::INTERRUPT_LINE, Width::Byte, line)
        },
    )?;

    // Command: memory space enable and INTx disable are writable, every
    // other bit reads 0 whatever is written.
    let command = config.read(bdf, offset::COMMAND, Width::Half)?;
    restoring(
        || {
            config.write(bdf, offset::COMMAND, Width::Half, Width::Half.all_ones())?;
            config.expect(
                "command after writing all-ones (only memory space enable and INTx disable stick)",
                bdf,
                offset::COMMAND,
                Width::Half,
                command::WRITABLE.into(),
            )?;
            config.write(bdf, offset::COMMAND, Width::Half, 0)?;
            config.expect("command after writing 0", bdf, offset::COMMAND, Width::Half, 0)
        },
        || {
            config.write(bdf, offset::COMMAND, Width::Half, command)?;
            config.expect("command restored", bdf, offset::COMMAND, Width::Half, command)
        },
    )
}

// --- pci-bad-access ------------------------------------------------------------

pub fn bad_access(env: &Env) -> Result<(), Failure> {
    let config = Config::open(env)?;
    let pl031 = bdf_of(ROOT_BUS, PL031_DEVICE, 0)?;
    let ids = u64::from(VENDOR_ID_ARM) | u64::from(primecell::PART_PL031) << 16;
    config.expect(
        "vendor and device ID of the PL031 function before the bad accesses",
        pl031,
        offset::VENDOR_ID,
        Width::Word,
        ids,
    )?;

    // 8-byte accesses are not config accesses: a load reads all-ones (all
    // 64 bits), a store is dropped. The dword at 0x38 holds the (writable)
    // interrupt line in its upper half.
    config.expect(
        "8-byte load at offset 0 of the PL031 function (all-ones)",
        pl031,
        offset::VENDOR_ID,
        Width::Double,
        Width::Double.all_ones(),
    )?;
    let line = config.read(pl031, offset::INTERRUPT_LINE, Width::Byte)?;
    let not_line = !(line as u8);
    config.write(pl031, offset::INTERRUPT_LINE & !7, Width::Double, Width::Double.replicate(not_line))?;
    config.expect(
        "interrupt line after an 8-byte store over it (dropped)",
        pl031,
        offset::INTERRUPT_LINE,
        Width::Byte,
        line,
    )?;

    // Misaligned accesses, which only an MMU-on guest can make (see the
    // module documentation).
    with_ecam_as_normal(env, &config, || misaligned(&config, pl031, line))??;

    // Absent functions: an empty device slot on bus 0, the last device
    // number, and bus 1. Writes are dropped, reads are all-ones in every
    // width.
    let absent =
        [bdf_of(ROOT_BUS, SHIMS.len() as u8, 0)?, bdf_of(ROOT_BUS, DEVICES_PER_BUS - 1, 0)?, bdf_of(EMPTY_BUS, 0, 0)?];
    for function in absent {
        about(function, "absent", check_absent(&config, function))?;
    }

    // The config space still answers.
    config.expect(
        "vendor and device ID of the PL031 function after the bad accesses",
        pl031,
        offset::VENDOR_ID,
        Width::Word,
        ids,
    )?;
    config.expect(
        "interrupt line of the PL031 function after the bad accesses",
        pl031,
        offset::INTERRUPT_LINE,
        Width::Byte,
        line,
    )
}

/// Misaligned 2- and 4-byte reads read all-ones, misaligned writes over the
/// interrupt line are dropped. Runs with the MMU on: no printing here.
fn misaligned(config: &Config, pl031: Bdf, line: u64) -> Result<(), Failure> {
    // First, that accesses through the Normal mapping reach the config
    // space at all (otherwise all-ones below would prove nothing).
    config.expect(
        "vendor ID read with the MMU on (ECAM mapped as Normal memory)",
        pl031,
        offset::VENDOR_ID,
        Width::Half,
        VENDOR_ID_ARM.into(),
    )?;
    let reads = [
        ("misaligned 2-byte read at offset 1 (all-ones)", offset::VENDOR_ID + 1, Width::Half),
        ("misaligned 4-byte read at offset 2 (all-ones)", offset::DEVICE_ID, Width::Word),
        ("misaligned 4-byte read at offset 1 (all-ones)", offset::VENDOR_ID + 1, Width::Word),
        ("misaligned 2-byte read at offset 0x3d (all-ones)", offset::INTERRUPT_PIN, Width::Half),
    ];
    let aborted = |caught| Failure::Exception { what: MISALIGNED_ABORTED, caught };
    for (what, reg, width) in reads {
        expect_eq(what, width.all_ones(), load(config.address(pl031, reg)?, width).map_err(aborted)?)?;
    }
    let not_line = !(line as u8);
    let writes = [
        (
            "interrupt line after a misaligned 2-byte write at 0x3b over it (dropped)",
            offset::INTERRUPT_LINE - 1,
            Width::Half,
        ),
        (
            "interrupt line after a misaligned 4-byte write at 0x3a over it (dropped)",
            offset::INTERRUPT_LINE - 2,
            Width::Word,
        ),
    ];
    for (what, reg, width) in writes {
        store(config.address(pl031, reg)?, width, width.replicate(not_line)).map_err(aborted)?;
        config.expect(what, pl031, offset::INTERRUPT_LINE, Width::Byte, line)?;
    }
    Ok(())
}

fn check_absent(config: &Config, function: Bdf) -> Result<(), Failure> {
    config.write(function, offset::COMMAND, Width::Half, command::WRITABLE.into())?;
    config.write(function, offset::INTERRUPT_LINE, Width::Byte, 0x5a)?;
    config.write(function, offset::BAR0, Width::Word, 0)?;
    let reads = [
        ("vendor ID of an absent function after writes to it (all-ones)", offset::VENDOR_ID, Width::Half),
        ("command of an absent function after a write (all-ones)", offset::COMMAND, Width::Half),
        ("interrupt line of an absent function after a write (all-ones)", offset::INTERRUPT_LINE, Width::Byte),
        ("BAR0 of an absent function after a write (all-ones)", offset::BAR0, Width::Word),
        ("dword 0 of an absent function (all-ones)", offset::VENDOR_ID, Width::Word),
        ("8-byte load of an absent function (all-ones)", offset::VENDOR_ID, Width::Double),
    ];
    for (what, reg, width) in reads {
        config.expect(what, function, reg, width, width.all_ones())?;
    }
    Ok(())
}

/// Tables for [`with_ecam_as_normal`]: the root, a level-2 table per
/// gigabyte touched (RAM, console, ECAM) and level-3 tables for unaligned
/// ends.
static POOL: spin::Mutex<[Table; 8]> = spin::Mutex::new([const { Table::ZERO }; 8]);

/// Runs `f` with the stub's MMU on, over an identity map of guest RAM, the
/// console and the ECAM window, the window as Normal memory (a misaligned
/// access to it is then no stage-1 alignment fault and reaches stage 2).
/// Normal write-back is the one Normal type `platform::paging` has; stage 2
/// maps nothing in the window, so no line of it is ever cached.
fn with_ecam_as_normal<R>(env: &Env, config: &Config, f: impl FnOnce() -> R) -> Result<R, Failure> {
    const SCTLR_A: u64 = 1 << 1;
    const PAGE: u64 = 4096;
    // SAFETY: reads the stub's own system control register.
    let sctlr = unsafe { platform::mrs!("sctlr_el1") };
    if sctlr & SCTLR_A != 0 {
        return Err(Failure::Missing(
            "SCTLR_EL1.A is set: misaligned accesses would fault at stage 1 even to Normal memory",
        ));
    }
    let failed = |_| Failure::Missing("building the stage-1 map for the misaligned accesses failed");
    let mut pages = POOL.lock();
    for page in pages.iter_mut() {
        *page = Table::ZERO;
    }
    // The MMU is off: the pool's address is its IPA.
    let pool_base = PhysAddr(pages.as_ptr() as u64);
    let mut pool = StaticPool::new(&mut pages[..], pool_base)
        .map_err(|_| Failure::Missing("the table pool is not page-aligned"))?;
    let root = paging::PagePool::alloc_table(&mut pool).ok_or(Failure::Missing("the table pool is empty"))?;
    let data = |memory, executable| Attributes {
        memory,
        writable: true,
        executable,
        user: UserAccess::None,
        user_executable: false,
        global: true,
    };
    let mut map = |base: u64, len: u64, attrs: Attributes| {
        paging::map(
            &mut pool,
            root,
            crate::gvascan::VA_BITS,
            Regime::El1And0,
            VirtAddr(base),
            PhysAddr(base),
            len,
            attrs,
        )
    };
    // Code, data and stack: all of guest RAM.
    map(env.ram_base, env.ram_end - env.ram_base, data(MemoryType::Normal, true)).map_err(failed)?;
    if let Some(console) = env.console {
        map(console, PAGE, data(MemoryType::Device, false)).map_err(failed)?;
    }
    map(config.window.base(), config.window.size(), data(MemoryType::Normal, false)).map_err(failed)?;
    let map = crate::gvascan::Map { root: root.0, va_bits: crate::gvascan::VA_BITS };
    Ok(crate::gvascan::with_mmu(&map, f))
}

// --- the PL031 for sched-spi-wake ------------------------------------------------

/// A PL031 RTC for `sched-spi-wake`.
#[derive(Clone, Copy, Debug)]
pub struct Pl031 {
    /// Its register window.
    pub base: u64,
    /// Its interrupt's INTID (an SPI), or why it is not known.
    pub spi: Result<u32, &'static str>,
}

/// The PL031 RTC the host bridge shows at 00:00.0, if it does: its register
/// window (BAR0) and its interrupt as `interrupt-map` routes its pin.
/// `Ok(None)` when the bridge has another function there (bare QEMU's own
/// host bridge); an error when the function is there but cannot be used.
pub fn pl031_function(env: &Env) -> Result<Option<Pl031>, Failure> {
    let config = Config::open(env)?;
    let bdf = bdf_of(ROOT_BUS, PL031_DEVICE, 0)?;
    let ids = config.read(bdf, offset::VENDOR_ID, Width::Word)?;
    if ids != u64::from(VENDOR_ID_ARM) | u64::from(primecell::PART_PL031) << 16 {
        return Ok(None);
    }
    let base = config.bar0(bdf)?;
    let command = config.read(bdf, offset::COMMAND, Width::Half)?;
    if base == 0 || command & u64::from(command::MEMORY_SPACE) == 0 {
        return Err(Failure::Missing("the PL031 function's BAR0 is 0 or its memory space is off"));
    }
    let pin = config.read(bdf, offset::INTERRUPT_PIN, Width::Byte)? as u8;
    let ecam = env.ecam.as_ref().map_err(|why| Failure::Missing(why))?;
    let spi = match (pin, ecam.interrupt_map.as_ref()) {
        (0, _) => Err("the PL031 function has no interrupt pin"),
        (_, Err(why)) => Err(*why),
        (pin, Ok(map)) => map.spi(PL031_DEVICE, pin),
    };
    Ok(Some(Pl031 { base, spi }))
}

// --- pci-bar-reads-device ----------------------------------------------------------

pub fn bar_reads_device(env: &Env) -> Result<(), Failure> {
    let config = Config::open(env)?;
    for (bdf, shim) in shims(&config)?.into_iter().flatten() {
        about(bdf, shim.name, check_ids_through_bar(&config, bdf, shim))?;
    }
    // The PL031's data register counts seconds from the time QEMU started
    // with: not 0, and not going back.
    let base = config.bar0(bdf_of(ROOT_BUS, PL031_DEVICE, 0)?)?;
    let first = bar_load(base, primecell::PL031_RTCDR)?;
    if first == 0 {
        return Err(Failure::Missing("the PL031's RTCDR read through BAR0 is 0, not the current time"));
    }
    let second = bar_load(base, primecell::PL031_RTCDR)?;
    if second < first {
        return Err(Failure::Mismatch {
            what: "PL031 RTCDR read again through BAR0 (not earlier than the first read)",
            expected: first,
            got: second,
        });
    }
    Ok(())
}

/// A page of the stub's own RAM with a known pattern, for `pci-bar-move`
/// and the hostile mode to put the PL031's BAR on.
#[repr(C, align(4096))]
pub struct RamPage(pub [u64; 512]);
pub static RAM_PAGE: spin::Mutex<RamPage> = spin::Mutex::new(RamPage([0; 512]));
pub const RAM_PATTERN: u64 = 0x5241_4d20_5041_4745; // "RAM PAGE"

/// `pci-bar-move`: stage 2 follows BAR0. Moved over a hole (where the
/// hypervisor's memory sits in the physical map, right past guest RAM),
/// the PL031's ID registers read at the new address and the old address
/// faults. Moved onto guest RAM, nothing is mapped over the RAM (it still
/// reads as RAM) and the device is reachable nowhere. Moved back, the
/// device is where it was.
pub fn bar_move(env: &Env) -> Result<(), Failure> {
    let config = Config::open(env)?;
    let pl031 = bdf_of(ROOT_BUS, PL031_DEVICE, 0)?;
    let home = config.bar0(pl031)?;
    let hole = env.ram_end;
    let mut ram = RAM_PAGE.lock();
    let ram_page = ram.0.as_ptr() as u64;
    // SAFETY: the page is the stub's, locked and borrowed mutably;
    // volatile so the compiler keeps the store the check reads back
    // through another address.
    unsafe { core::ptr::write_volatile(ram.0.as_mut_ptr(), RAM_PATTERN) };
    let part_at = |base: u64| bar_load(base, primecell::PERIPH_ID0).map(|v| v & 0xff);
    let faults_at = |base: u64| load(base + primecell::PERIPH_ID0, Width::Word).is_err();
    restoring(
        || {
            set_bar0(&config, pl031, hole)?;
            expect_eq("BAR0 reads back the new address", hole, config.bar0(pl031)?)?;
            expect_eq("PL031 PeriphID0 at the moved window (past guest RAM)", 0x31, part_at(hole)?)?;
            if !faults_at(home) {
                return Err(Failure::Missing("the PL031's old window still answers after BAR0 moved away"));
            }
            set_bar0(&config, pl031, ram_page)?;
            // SAFETY: reads the stub's own locked page.
            let word = unsafe { core::ptr::read_volatile(ram.0.as_ptr()) };
            expect_eq("guest RAM under a BAR moved onto it (must stay RAM)", RAM_PATTERN, word)?;
            if !faults_at(home) || !faults_at(hole) {
                return Err(Failure::Missing("a window answers while BAR0 points at guest RAM"));
            }
            Ok(())
        },
        || {
            set_bar0(&config, pl031, home)?;
            expect_eq("PL031 PeriphID0 with BAR0 back home", 0x31, part_at(home)?)
        },
    )
}

/// Writes a function's 64-bit BAR0 (low word, then high word, as an OS
/// does: the window is briefly somewhere in between).
fn set_bar0(config: &Config, bdf: Bdf, address: u64) -> Result<(), Failure> {
    config.write(bdf, offset::BAR0, Width::Word, address & 0xffff_ffff)?;
    config.write(bdf, offset::BAR1, Width::Word, address >> 32)
}

/// One 32-bit load of register `reg` of the window BAR0 puts at `base`.
fn bar_load(base: u64, reg: u64) -> Result<u64, Failure> {
    let addr = base.checked_add(reg).ok_or(Failure::Mismatch {
        what: "BAR0 address + register offset overflows; BAR0",
        expected: 0,
        got: base,
    })?;
    load(addr, Width::Word).map_err(|caught| Failure::Exception { what: BAR_ABORTED, caught })
}

/// The PrimeCell ID registers read through BAR0 name the part the config
/// space's device ID says.
fn check_ids_through_bar(config: &Config, bdf: Bdf, shim: &Shim) -> Result<(), Failure> {
    let base = config.bar0(bdf)?;
    if base == 0 {
        return Err(Failure::Missing("BAR0/BAR1 hold address 0 (no window)"));
    }
    let command = config.read(bdf, offset::COMMAND, Width::Half)?;
    expect_eq(
        "command memory space enable (needed to read through BAR0)",
        command::MEMORY_SPACE.into(),
        command & u64::from(command::MEMORY_SPACE),
    )?;
    let id = |reg: u64| bar_load(base, reg).map(|v| v & 0xff);
    let pid0 = id(primecell::PERIPH_ID0)?;
    let pid1 = id(primecell::PERIPH_ID0 + 4)?;
    expect_eq("PeriphID0 through BAR0 (part number [7:0])", u64::from(shim.part_number & 0xff), pid0)?;
    expect_eq("PeriphID1[3:0] through BAR0 (part number [11:8])", u64::from(shim.part_number >> 8), pid1 & 0xf)?;
    let device_id = config.read(bdf, offset::DEVICE_ID, Width::Half)?;
    expect_eq(
        "part number from the ID registers vs. the config device ID",
        device_id,
        primecell::part_number(pid0, pid1),
    )?;
    for (index, expected) in (0u64..).zip(primecell::PCELL_ID) {
        expect_eq(
            "PCellID0..3 through BAR0 (0x0d, 0xf0, 0x05, 0xb1)",
            expected,
            id(primecell::PCELL_ID0 + 4 * index)?,
        )?;
    }
    Ok(())
}
