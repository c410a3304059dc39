//! The config-space model: one type-0 PCI function per shimmed MMIO device.
//!
//! [`ConfigSpace`] holds up to `N` (at most 32) [`ShimDevice`]s; device
//! number = the order they were added, function 0, bus [`ROOT_BUS`]. The
//! model stores only the state software can change (command, cache line
//! size, BAR0/BAR1, interrupt line) plus one input, the device's interrupt
//! state; every other byte is computed on read. It runs at EL3 without a
//! heap: fixed capacity, no allocation, no panics.
//!
//! # The header (type 0)
//!
//! | offset | register | value | writable bits |
//! |-------:|----------|-------|---------------|
//! | 0x00 | vendor ID / device ID | `0x13b5` (Arm) / the PrimeCell part number | none |
//! | 0x04 | command | memory space enable set at handoff | `0x0402`: memory space enable (bit 1), INTx disable (bit 10) |
//! | 0x06 | status | interrupt status (bit 3) = the device's interrupt is pending | none |
//! | 0x08 | revision ID / class code | 0 / [`ClassCode`] | none |
//! | 0x0c | cache line size, latency timer, header type, BIST | 0, 0, `0x00`, 0 | cache line size |
//! | 0x10 | BAR0 (low half) | window base \| `0b0100` | address bits above the window size |
//! | 0x14 | BAR1 (BAR0's high half) | window base >> 32 | address bits above the window size |
//! | 0x18 | BAR2 (low half), functions with a second window only | window base \| `0b1100` | address bits above the window size |
//! | 0x1c | BAR3 (BAR2's high half), likewise | window base >> 32 | address bits above the window size |
//! | 0x18..0x28 | BAR2..BAR5, CardBus CIS, on every other function | 0 (unimplemented) | none |
//! | 0x2c | subsystem vendor ID / subsystem ID | 0 / 0 (no subsystem) | none |
//! | 0x30 | expansion ROM BAR | 0 (no ROM) | none |
//! | 0x34 | capabilities pointer | 0 (no capabilities) | none |
//! | 0x3c | interrupt line / pin, Min_Gnt, Max_Lat | line / 1 (INTA) or 0, 0, 0 | interrupt line |
//! | 0x40..0x1000 | device-specific and extended space | 0 | none |
//!
//! [`ShimDevice::write_masks`] is this table as data; the host tests check
//! every register's behaviour against it.
//!
//! Command: there are no I/O BARs, the shim devices never master the bus
//! and signal no errors, so I/O space, bus master, parity error response
//! and SERR# enable are hardwired to 0 (PCI allows it for functions
//! without those abilities). Status: for the same reason every error bit
//! (the RW1C bits) is hardwired to 0, and writes to status change nothing.
//! Interrupt status follows the PCI rule: it shows the device's interrupt
//! state whatever INTx disable says; INTx disable only decides whether the
//! interrupt is *asserted* ([`ConfigSpace::intx_asserted`]). The model does
//! not see the device's interrupt line itself: its owner refreshes
//! [`ConfigSpace::set_irq_pending`] (e.g. from `GICD_ISPENDR`) before it
//! serves an access, and masks the SPI while [`ConfigSpace::intx_asserted`]
//! says no.
//!
//! # BAR0: a 64-bit, non-prefetchable memory BAR
//!
//! 64-bit because a window above 4 GiB needs it, and one BAR layout for
//! every device means one code path and one set of tests. The shim
//! functions sit directly on the host bridge's root bus, so no PCI-to-PCI
//! bridge's 32-bit non-prefetchable window constrains them, and every OS
//! sizes 64-bit BARs. Non-prefetchable because device registers have read
//! side effects. A window must be a power of two of at least 16 bytes at an
//! address aligned to its size (the PCI BAR rule; PrimeCell windows are 4
//! KiB at 4 KiB).
//!
//! Sizing works as on hardware: the bits below the window size are
//! hardwired to 0 and the type bits are read-only, so writing all-ones
//! reads back the size mask with the type bits (`0xffff_f004` for 4 KiB),
//! and writing the original address restores it.
//!
//! **Writing another address is accepted**, as the PCI spec requires of a
//! BAR's address bits: a BAR that ignored writes would break the sizing
//! sequence's intermediate states (each half and each byte is written
//! separately) and would make an OS that *does* reassign BARs believe the
//! device is somewhere it is not. The guest is kept where it belongs by the
//! stage-2 mapping, not by this register: [`ConfigSpace::bar0`] reports
//! the address the function decodes and whether memory space is enabled,
//! and the hypervisor maps the device's real window there (or nowhere, while
//! decoding is off, which is when an OS sizes). With `linux,pci-probe-only`
//! in the host bridge node Linux never moves a BAR, so the BAR stays at the
//! device's window, where it starts.
//!
//! # BAR2: a second, prefetchable window
//!
//! A function the hypervisor itself emulates (a portal between VMs) has
//! memory as well as registers: [`ShimDevice::with_bar2`] gives it a
//! second 64-bit BAR, prefetchable (ordinary RAM has no read side
//! effects), with the same sizing rules as BAR0. Its vendor and device ID
//! are its own ([`ShimDevice::with_identity`]).
//!
//! # No Enhanced Allocation capability
//!
//! EA (PCI ECN, "Enhanced Allocation") would pin the window without
//! `linux,pci-probe-only`, but a function must hardwire each BAR that an
//! EA entry replaces to 0. The issue requires a BAR0 with real sizing
//! semantics, so the two are exclusive; we keep the BAR and publish
//! `linux,pci-probe-only`. With no capability at all, the capabilities
//! pointer is 0 and the status register's capabilities-list bit is clear.
//!
//! # Accesses
//!
//! [`ConfigSpace::read`] and [`ConfigSpace::write`] take 1, 2 or 4 bytes
//! ([`AccessSize`]). An access that is not naturally aligned or lies at or
//! beyond offset 4096 is not a valid config request: it reads all-ones
//! and a write is dropped, like an unsupported request on a PCIe root
//! complex (the DEN0115 path rejects such accesses before they get here,
//! with `INVALID_PARAMETER`). Absent functions (any bus but
//! [`ROOT_BUS`], a device number past the last device, functions 1..7)
//! read all-ones and ignore writes: a read of vendor ID `0xffff` is how
//! enumeration learns a function is not there.

use super::{AccessSize, Bdf, CONFIG_SPACE_SIZE, DEVICES_PER_BUS, ROOT_BUS};
use core::fmt;

/// Vendor ID of every shim function: Arm Ltd.
pub const VENDOR_ID_ARM: u16 = 0x13b5;
/// Revision ID of every shim function.
pub const REVISION_ID: u8 = 0;
/// Header type: layout 0 (a device, not a bridge), single-function (bit 7 clear).
pub const HEADER_TYPE: u8 = 0x00;
/// Dwords in the type-0 header (0x00..0x40); [`ShimDevice::write_masks`] has one entry each.
pub const HEADER_DWORDS: usize = 16;
/// The smallest memory BAR PCI allows (bits [3:0] are the BAR's type bits).
pub const MIN_BAR_SIZE: u64 = 16;

/// Byte offsets of the type-0 header registers.
pub mod offset {
    pub const VENDOR_ID: u16 = 0x00;
    pub const DEVICE_ID: u16 = 0x02;
    pub const COMMAND: u16 = 0x04;
    pub const STATUS: u16 = 0x06;
    pub const REVISION_ID: u16 = 0x08;
    /// Programming interface; sub-class at 0x0a, base class at 0x0b.
    pub const CLASS_CODE: u16 = 0x09;
    pub const CACHE_LINE_SIZE: u16 = 0x0c;
    pub const LATENCY_TIMER: u16 = 0x0d;
    pub const HEADER_TYPE: u16 = 0x0e;
    pub const BIST: u16 = 0x0f;
    pub const BAR0: u16 = 0x10;
    pub const BAR1: u16 = 0x14;
    pub const BAR2: u16 = 0x18;
    pub const BAR5: u16 = 0x24;
    pub const CARDBUS_CIS: u16 = 0x28;
    pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
    pub const SUBSYSTEM_ID: u16 = 0x2e;
    pub const EXPANSION_ROM: u16 = 0x30;
    pub const CAPABILITIES: u16 = 0x34;
    pub const INTERRUPT_LINE: u16 = 0x3c;
    pub const INTERRUPT_PIN: u16 = 0x3d;
    pub const MIN_GNT: u16 = 0x3e;
    pub const MAX_LAT: u16 = 0x3f;
}

/// Command register bits.
pub mod command {
    pub const IO_SPACE: u16 = 1 << 0;
    pub const MEMORY_SPACE: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
    pub const INTX_DISABLE: u16 = 1 << 10;
    /// The bits software can change; the rest read 0.
    pub const WRITABLE: u16 = MEMORY_SPACE | INTX_DISABLE;
    /// The value at handoff: the firmware enumerated the function and left
    /// it decoding its window, which is what `linux,pci-probe-only` presumes.
    pub const AT_HANDOFF: u16 = MEMORY_SPACE;
}

/// Status register bits.
pub mod status {
    /// The function's interrupt is pending (read-only).
    pub const INTERRUPT: u16 = 1 << 3;
    /// A capability list exists (never set: the shim has no capabilities).
    pub const CAPABILITIES_LIST: u16 = 1 << 4;
}

/// Memory BAR type bits (BAR bits [3:0], read-only).
pub mod bar {
    /// Bits [2:1] = 0b10: a 64-bit BAR, the next BAR holds the high half.
    pub const MEMORY_64: u32 = 0b10 << 1;
    pub const PREFETCHABLE: u32 = 1 << 3;
    /// What BAR0's type bits read on every shim function.
    pub const TYPE: u32 = MEMORY_64;
    /// The type bits' position.
    pub const TYPE_MASK: u32 = 0xf;
}

/// The class code register: base class, sub-class, programming interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassCode {
    pub base: u8,
    pub sub: u8,
    pub prog_if: u8,
}

impl ClassCode {
    /// Base system peripheral / RTC controller / generic (PCI Code and ID
    /// Assignment: class 08h, sub-class 03h, interface 00h).
    pub const RTC: Self = Self { base: 0x08, sub: 0x03, prog_if: 0x00 };
    /// Base system peripheral / other (08h, 80h, 00h).
    pub const OTHER_SYSTEM_PERIPHERAL: Self = Self { base: 0x08, sub: 0x80, prog_if: 0x00 };

    /// The class for a PrimeCell part number. The PL031 (0x031) is an RTC,
    /// which PCI has a class for. Everything else is "other system
    /// peripheral": PCI has no GPIO class, and the nearest candidates would
    /// mislead (11h/00h "DPIO module" means a data-acquisition board;
    /// a serial-controller class would invite the 8250 driver to bind a
    /// PL011, which is not 16550-compatible). The PL061 is therefore
    /// 08h/80h. Drivers bind shim functions by vendor/device ID, never by
    /// class, so the class is informational either way.
    pub const fn for_primecell(part_number: u16) -> Self {
        match part_number {
            0x031 => Self::RTC,
            _ => Self::OTHER_SYSTEM_PERIPHERAL,
        }
    }

    /// Bits [31:8] of the dword at 0x08 (the revision ID fills [7:0]).
    pub const fn register(self) -> u32 {
        ((self.base as u32) << 24) | ((self.sub as u32) << 16) | ((self.prog_if as u32) << 8)
    }
}

impl fmt::Display for ClassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}{:02x}{:02x}", self.base, self.sub, self.prog_if)
    }
}

/// A function's legacy interrupt: the pin it uses and the routing value
/// the interrupt line register starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intx {
    /// 1 = INTA .. 4 = INTD.
    pub pin: u8,
    /// Initial interrupt line register value. PCI leaves its meaning to the
    /// platform; on Arm the OS routes through the DT `interrupt-map` and
    /// only ever writes this register.
    pub line: u8,
}

impl Intx {
    pub const INTA: u8 = 1;
    pub const INTD: u8 = 4;
}

/// Why a device or a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The window size is not a power of two of at least [`MIN_BAR_SIZE`].
    WindowSize { size: u64 },
    /// The window base is not aligned to its size.
    WindowAlignment { base: u64, size: u64 },
    /// The window runs past the end of the 64-bit address space.
    WindowOverflow { base: u64, size: u64 },
    /// The interrupt pin is not 1..=4.
    InterruptPin { pin: u8 },
    /// The config space has no room for another function.
    Full { capacity: usize },
    /// No function has this device index.
    NoFunction { index: usize },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::WindowSize { size } => {
                write!(f, "window size {size:#x} is not a power of two of at least {MIN_BAR_SIZE} bytes")
            }
            Self::WindowAlignment { base, size } => {
                write!(f, "window base {base:#x} is not aligned to its size {size:#x}")
            }
            Self::WindowOverflow { base, size } => {
                write!(f, "window {base:#x} + {size:#x} runs past the end of the address space")
            }
            Self::InterruptPin { pin } => write!(f, "interrupt pin {pin} is not 1 (INTA) to 4 (INTD)"),
            Self::Full { capacity } => write!(f, "config space is full ({capacity} functions)"),
            Self::NoFunction { index } => write!(f, "no shim function has device index {index}"),
        }
    }
}

/// One MMIO device as a PCI function: what enumeration shows about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShimDevice {
    vendor: u16,
    part_number: u16,
    class: ClassCode,
    base: u64,
    size: u64,
    irq: Option<Intx>,
    /// The second window, `(base, size)`, if the function has one.
    bar2: Option<(u64, u64)>,
}

/// The checks every memory BAR's window passes: a power of two of at
/// least [`MIN_BAR_SIZE`], aligned to its size, not wrapping.
const fn check_window(base: u64, size: u64) -> Result<(), ConfigError> {
    if !size.is_power_of_two() || size < MIN_BAR_SIZE {
        return Err(ConfigError::WindowSize { size });
    }
    if base & size.wrapping_sub(1) != 0 {
        return Err(ConfigError::WindowAlignment { base, size });
    }
    if base.checked_add(size).is_none() {
        return Err(ConfigError::WindowOverflow { base, size });
    }
    Ok(())
}

/// A BAR's writable address bits, low and high dword: the bits at and
/// above the window size (never the type bits).
const fn address_masks(size: u64) -> (u32, u32) {
    let address = !size.wrapping_sub(1);
    ((address as u32) & !bar::TYPE_MASK, (address >> 32) as u32)
}

impl ShimDevice {
    /// A device whose registers are `[base, base + size)`. `part_number`
    /// (the PrimeCell part number from the device's peripheral ID
    /// registers) becomes the device ID.
    pub const fn new(
        part_number: u16,
        class: ClassCode,
        base: u64,
        size: u64,
        irq: Option<Intx>,
    ) -> Result<Self, ConfigError> {
        if let Err(e) = check_window(base, size) {
            return Err(e);
        }
        if let Some(intx) = irq {
            if intx.pin < Intx::INTA || intx.pin > Intx::INTD {
                return Err(ConfigError::InterruptPin { pin: intx.pin });
            }
        }
        Ok(Self { vendor: VENDOR_ID_ARM, part_number, class, base, size, irq, bar2: None })
    }

    /// The same function with vendor ID `vendor` and device ID `device`
    /// (a function that is not a PrimeCell).
    pub const fn with_identity(self, vendor: u16, device: u16) -> Self {
        Self { vendor, part_number: device, ..self }
    }

    /// The same function with a second window behind BAR2/BAR3, under the
    /// same rules as BAR0's.
    pub const fn with_bar2(self, base: u64, size: u64) -> Result<Self, ConfigError> {
        if let Err(e) = check_window(base, size) {
            return Err(e);
        }
        Ok(Self { bar2: Some((base, size)), ..self })
    }

    pub const fn vendor_id(&self) -> u16 {
        self.vendor
    }

    /// The second window BAR2 describes, if there is one.
    pub const fn window2(&self) -> Option<(u64, u64)> {
        self.bar2
    }

    pub const fn part_number(&self) -> u16 {
        self.part_number
    }

    /// The device ID register: the part number.
    pub const fn device_id(&self) -> u16 {
        self.part_number
    }

    pub const fn class(&self) -> ClassCode {
        self.class
    }

    /// The register window BAR0 describes: `(base, size)`.
    pub const fn window(&self) -> (u64, u64) {
        (self.base, self.size)
    }

    pub const fn irq(&self) -> Option<Intx> {
        self.irq
    }

    /// The interrupt pin register: 1..=4, or 0 for no interrupt.
    pub const fn interrupt_pin(&self) -> u8 {
        match self.irq {
            Some(intx) => intx.pin,
            None => 0,
        }
    }

    /// BAR0's and BAR1's writable bits: the address bits at and above the
    /// window size (never the type bits).
    const fn bar_masks(&self) -> (u32, u32) {
        address_masks(self.size)
    }

    /// BAR2's and BAR3's writable bits (none without a second window).
    const fn bar2_masks(&self) -> (u32, u32) {
        match self.bar2 {
            Some((_, size)) => address_masks(size),
            None => (0, 0),
        }
    }

    /// The writable bits of each header dword (0x00, 0x04, .., 0x3c), as the
    /// module documentation's table lists them. Everything past the header
    /// is read-only.
    pub const fn write_masks(&self) -> [u32; HEADER_DWORDS] {
        let (bar0, bar1) = self.bar_masks();
        let (bar2, bar3) = self.bar2_masks();
        [
            0,                        // 0x00 vendor ID, device ID
            command::WRITABLE as u32, // 0x04 command; status has no writable bits
            0,                        // 0x08 revision ID, class code
            0xff,                     // 0x0c cache line size
            bar0,                     // 0x10 BAR0
            bar1,                     // 0x14 BAR1 (BAR0's high half)
            bar2,                     // 0x18 BAR2
            bar3,                     // 0x1c BAR3 (BAR2's high half)
            0,                        // 0x20 BAR4
            0,                        // 0x24 BAR5
            0,                        // 0x28 CardBus CIS pointer
            0,                        // 0x2c subsystem IDs
            0,                        // 0x30 expansion ROM BAR
            0,                        // 0x34 capabilities pointer
            0,                        // 0x38 reserved
            0xff,                     // 0x3c interrupt line
        ]
    }

    /// The writable bits of the dword that holds `offset`.
    pub fn write_mask(&self, offset: u16) -> u32 {
        self.write_masks().get(usize::from(offset >> 2)).copied().unwrap_or(0)
    }
}

/// Where a function's memory BAR (BAR0, or BAR2 if it has one) points and
/// whether it decodes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar0 {
    /// The address BAR0/BAR1 hold now (the device's window unless software
    /// moved it; while an OS sizes the BAR, the size mask).
    pub address: u64,
    /// The device's real register window, the memory behind the BAR.
    pub device_base: u64,
    pub size: u64,
    /// Command register memory space enable: whether the function responds
    /// at `address` at all.
    pub memory_enabled: bool,
}

impl Bar0 {
    /// The `(address, size)` at which the device's window should be mapped,
    /// or `None` while the function does not decode memory.
    pub const fn decoded(&self) -> Option<(u64, u64)> {
        if self.memory_enabled {
            Some((self.address, self.size))
        } else {
            None
        }
    }
}

/// A function's mutable state.
#[derive(Clone, Copy, Debug)]
struct Function {
    device: ShimDevice,
    command: u16,
    cache_line_size: u8,
    /// BAR0/BAR1's address bits: bits below the window size always 0.
    bar: u64,
    /// BAR2/BAR3's address bits (0 without a second window).
    bar2: u64,
    interrupt_line: u8,
    irq_pending: bool,
}

impl Function {
    const fn new(device: ShimDevice) -> Self {
        Self {
            device,
            command: command::AT_HANDOFF,
            cache_line_size: 0,
            bar: device.base,
            bar2: match device.bar2 {
                Some((base, _)) => base,
                None => 0,
            },
            interrupt_line: match device.irq {
                Some(intx) => intx.line,
                None => 0,
            },
            irq_pending: false,
        }
    }

    const fn status(&self) -> u16 {
        if self.irq_pending && self.device.irq.is_some() {
            status::INTERRUPT
        } else {
            0
        }
    }

    /// The header dword `index` (offset / 4); 0 past the header.
    const fn dword(&self, index: u16) -> u32 {
        match index {
            0 => self.device.vendor as u32 | (self.device.part_number as u32) << 16,
            1 => self.command as u32 | (self.status() as u32) << 16,
            2 => self.device.class.register() | REVISION_ID as u32,
            3 => self.cache_line_size as u32 | (HEADER_TYPE as u32) << 16,
            4 => self.bar as u32 | bar::TYPE,
            5 => (self.bar >> 32) as u32,
            6 if self.device.bar2.is_some() => self.bar2 as u32 | bar::TYPE | bar::PREFETCHABLE,
            7 if self.device.bar2.is_some() => (self.bar2 >> 32) as u32,
            15 => self.interrupt_line as u32 | (self.device.interrupt_pin() as u32) << 8,
            _ => 0,
        }
    }

    /// Stores header dword `index`; only its writable bits may differ from
    /// [`Function::dword`], and only those are kept.
    fn store(&mut self, index: u16, value: u32) {
        let (bar0, bar1) = self.device.bar_masks();
        let (bar2, bar3) = self.device.bar2_masks();
        match index {
            1 => self.command = value as u16 & command::WRITABLE,
            3 => self.cache_line_size = value as u8,
            4 => self.bar = (self.bar & !u64::from(u32::MAX)) | u64::from(value & bar0),
            5 => self.bar = (self.bar & u64::from(u32::MAX)) | u64::from(value & bar1) << 32,
            6 => self.bar2 = (self.bar2 & !u64::from(u32::MAX)) | u64::from(value & bar2),
            7 => self.bar2 = (self.bar2 & u64::from(u32::MAX)) | u64::from(value & bar3) << 32,
            15 => self.interrupt_line = value as u8,
            _ => {}
        }
    }
}

/// The config space of every shim function: up to `N` devices (at most 32,
/// the devices on one bus) on bus [`ROOT_BUS`].
#[derive(Clone, Debug)]
pub struct ConfigSpace<const N: usize> {
    functions: [Option<Function>; N],
    len: usize,
}

impl<const N: usize> Default for ConfigSpace<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ConfigSpace<N> {
    /// How many functions fit: `N`, but no more than one bus has devices.
    pub const CAPACITY: usize = if N < DEVICES_PER_BUS as usize { N } else { DEVICES_PER_BUS as usize };

    /// An empty config space (usable in a `static`).
    pub const fn new() -> Self {
        Self { functions: [None; N], len: 0 }
    }

    /// A config space with `devices` as devices 0, 1, ...
    pub fn from_devices(devices: &[ShimDevice]) -> Result<Self, ConfigError> {
        let mut space = Self::new();
        for device in devices {
            space.add(*device)?;
        }
        Ok(space)
    }

    /// Adds `device` as the next device number; returns its address.
    pub fn add(&mut self, device: ShimDevice) -> Result<Bdf, ConfigError> {
        let full = ConfigError::Full { capacity: Self::CAPACITY };
        if self.len >= Self::CAPACITY {
            return Err(full);
        }
        let slot = self.functions.get_mut(self.len).ok_or(full)?;
        let bdf = Bdf::new(ROOT_BUS, self.len as u8, 0).ok_or(full)?;
        *slot = Some(Function::new(device));
        self.len = self.len.wrapping_add(1);
        Ok(bdf)
    }

    /// How many functions there are.
    pub const fn len(&self) -> usize {
        self.len
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device with device number `index`.
    pub fn device(&self, index: usize) -> Option<&ShimDevice> {
        self.slot(index).map(|function| &function.device)
    }

    /// The address of the function with device number `index`.
    pub fn bdf(&self, index: usize) -> Option<Bdf> {
        self.slot(index)?;
        Bdf::new(ROOT_BUS, u8::try_from(index).ok()?, 0)
    }

    /// Reads `size` bytes at `offset` of `bdf`'s config space. All-ones for
    /// an absent function, a misaligned access or `offset` >= 4096; 0 for
    /// any byte the header table does not define.
    pub fn read(&self, bdf: Bdf, offset: u16, size: AccessSize) -> u32 {
        let all_ones = size.value_mask();
        let Some(function) = self.function(bdf) else {
            return all_ones;
        };
        if offset >= CONFIG_SPACE_SIZE || !size.is_aligned(offset) {
            return all_ones;
        }
        function.dword(offset >> 2).wrapping_shr(lane_shift(offset)) & all_ones
    }

    /// Writes the low `size` bytes of `value` at `offset` of `bdf`'s config
    /// space. Only writable bits change; the write is dropped for an absent
    /// function, a misaligned access or `offset` >= 4096.
    pub fn write(&mut self, bdf: Bdf, offset: u16, size: AccessSize, value: u32) {
        if offset >= CONFIG_SPACE_SIZE || !size.is_aligned(offset) {
            return;
        }
        let Some(function) = self.function_mut(bdf) else {
            return;
        };
        let shift = lane_shift(offset);
        let writable = function.device.write_mask(offset) & size.value_mask().wrapping_shl(shift);
        if writable == 0 {
            return;
        }
        let index = offset >> 2;
        let merged = (function.dword(index) & !writable) | (value.wrapping_shl(shift) & writable);
        function.store(index, merged);
    }

    /// Records whether device `index`'s interrupt is pending: the status
    /// register's interrupt bit (for a function with an interrupt pin).
    pub fn set_irq_pending(&mut self, index: usize, pending: bool) -> Result<(), ConfigError> {
        let function = self.slot_mut(index).ok_or(ConfigError::NoFunction { index })?;
        function.irq_pending = pending;
        Ok(())
    }

    /// Device `index`'s command register.
    pub fn command(&self, index: usize) -> Option<u16> {
        self.slot(index).map(|function| function.command)
    }

    /// Whether device `index`'s INTx is asserted: it has an interrupt pin,
    /// the interrupt is pending and INTx disable is clear. The owner of the
    /// model keeps the device's SPI masked while this is false.
    pub fn intx_asserted(&self, index: usize) -> Option<bool> {
        self.slot(index)
            .map(|function| function.status() & status::INTERRUPT != 0 && function.command & command::INTX_DISABLE == 0)
    }

    /// Where device `index`'s BAR0 points and whether it decodes there.
    pub fn bar0(&self, index: usize) -> Option<Bar0> {
        self.slot(index).map(|function| Bar0 {
            address: function.bar,
            device_base: function.device.base,
            size: function.device.size,
            memory_enabled: function.command & command::MEMORY_SPACE != 0,
        })
    }

    /// Where device `index`'s BAR2 points and whether it decodes there;
    /// `None` also for a function without a second window.
    pub fn bar2(&self, index: usize) -> Option<Bar0> {
        let function = self.slot(index)?;
        let (base, size) = function.device.bar2?;
        Some(Bar0 {
            address: function.bar2,
            device_base: base,
            size,
            memory_enabled: function.command & command::MEMORY_SPACE != 0,
        })
    }

    fn slot(&self, index: usize) -> Option<&Function> {
        self.functions.get(index)?.as_ref()
    }

    fn slot_mut(&mut self, index: usize) -> Option<&mut Function> {
        self.functions.get_mut(index)?.as_mut()
    }

    /// The function at `bdf`, if one is there.
    fn function(&self, bdf: Bdf) -> Option<&Function> {
        if bdf.bus() != ROOT_BUS || bdf.function() != 0 {
            return None;
        }
        self.slot(usize::from(bdf.device()))
    }

    fn function_mut(&mut self, bdf: Bdf) -> Option<&mut Function> {
        if bdf.bus() != ROOT_BUS || bdf.function() != 0 {
            return None;
        }
        self.slot_mut(usize::from(bdf.device()))
    }
}

/// The bit position of `offset`'s byte lane in its dword.
const fn lane_shift(offset: u16) -> u32 {
    ((offset & 3) as u32) << 3
}
