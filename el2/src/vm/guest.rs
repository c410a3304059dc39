//! The guest: loading the guest-stub into guest RAM, its generated device
//! tree, its first register state, and exceptions injected into it.
//!
//! The guest DTB is written from scratch with `vm-fdt`: guest RAM only, one
//! CPU node per vCPU, PSCI through HVC, the emulated GICv3, the timer, the
//! passthrough console, the emulated test device and the PCI host bridge.
//! The guest never sees the host's DTB.

use crate::arch::layout::phys_to_virt;
use crate::arch::sysregs::{self, GuestReg};
use alloc::vec::Vec;
use platform::arch::regs::{SPSR_DAIF, SPSR_M_AARCH32, SPSR_M_EL1H, SPSR_M_SP_ELX};
use platform::arch::trap::TrapFrame;
use platform::arch::ExceptionLevel;
use platform::board::{GicCompatible, GicVersion, MemRegion, Timer, Uart, UartKind};
use platform::esr::{Esr, ExceptionClass, FaultStatus};
use platform::handoff::LoadedImage;
use vm_fdt::FdtWriter;

/// `phys.hi` of a PCI address: 64-bit memory space (`ss` = 0b11).
const PCI_SPACE_MEM64: u32 = 0x0300_0000;
/// `phys.hi`'s device number, bits 15:11, and the pin cell's INTA..INTD.
const PCI_DEVICE_SHIFT: u32 = 11;
const PCI_DEVICE_MASK: u32 = 0x1f << PCI_DEVICE_SHIFT;
const PCI_PIN_MASK: u32 = 0x7;

/// Where the guest's DTB goes, from the start of guest RAM.
const DTB_OFFSET: u64 = 0;
/// Largest guest DTB we write.
const DTB_MAX: u64 = 64 * 1024;
/// Where the guest image goes, from the start of guest RAM.
const IMAGE_OFFSET: u64 = 2 * 1024 * 1024;

#[derive(Debug)]
pub enum GuestError {
    Dtb(vm_fdt::Error),
    DtbTooLarge(usize),
    ImageTooLarge { need: u64, have: u64 },
}

impl core::fmt::Display for GuestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Dtb(e) => write!(f, "guest device tree: {e}"),
            Self::DtbTooLarge(n) => write!(f, "guest device tree is {n} bytes, over {DTB_MAX}"),
            Self::ImageTooLarge { need, have } => {
                write!(f, "guest image needs {need:#x} bytes, guest RAM has {have:#x}")
            }
        }
    }
}

impl From<vm_fdt::Error> for GuestError {
    fn from(e: vm_fdt::Error) -> Self {
        Self::Dtb(e)
    }
}

/// What the guest's device tree describes.
pub struct Hardware<'a> {
    pub ram: MemRegion,
    pub console: Option<Uart>,
    /// The emulated test device (guest-stub VMs only).
    pub test_device: Option<MemRegion>,
    /// The PCI host bridge's ECAM window (the VM that owns the shim
    /// functions, and every end of a portal).
    pub ecam: Option<MemRegion>,
    /// The windows its BARs decode in, mapped one-to-one by `ranges`.
    pub bars: &'a [MemRegion],
    /// The emulated GIC's frames.
    pub gic: crate::vm::vgic::GuestGic,
    /// The host's timer: the guest gets the same PPIs.
    pub timer: Timer,
    /// The vCPUs' affinities, vCPU 0 first.
    pub vcpus: &'a [u64],
    /// The console's interrupt (passed through).
    pub console_irq: Option<u32>,
    /// Addresses a guest-stub must find to be holes (its isolation check).
    pub probe_holes: &'a [u64],
    /// How many times the VM started before (guest-stub VMs only).
    pub starts: Option<u32>,
    /// A Linux guest's initrd.
    pub initrd: Option<MemRegion>,
    /// The PCI functions' legacy interrupts, for the host bridge's
    /// `interrupt-map`.
    pub pci_interrupts: &'a [crate::vm::ecam::Intx],
    /// Forwarded virtio devices: register window and SPI.
    pub virtio: &'a [(MemRegion, u32)],
}

/// The console UART's node name (`stdout-path` names it).
fn uart_node_name(uart: &Uart) -> alloc::string::String {
    match uart.kind {
        UartKind::Pl011 => alloc::format!("pl011@{:x}", uart.base),
        UartKind::Cadence => alloc::format!("serial@{:x}", uart.base),
    }
}

/// The GIC's phandle in the guest DTB.
const GIC_PHANDLE: u32 = 1;
/// The fixed clock the PL011 driver insists on (`uartclk`, `apb_pclk`).
const CLOCK_PHANDLE: u32 = 2;
const CLOCK_HZ: u32 = 24_000_000;
/// GIC interrupt specifier: type cell for an SPI.
const GIC_SPI: u32 = 0;
use platform::vgic::SPI_BASE;
/// GIC interrupt specifier: type cell for a PPI, and the level-high flag.
const GIC_PPI: u32 = 1;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
/// The interrupt specifier flag of a rising edge.
const IRQ_TYPE_EDGE_RISING: u32 = 1;
/// The first PPI's INTID (a specifier numbers PPIs from it).
const PPI_BASE: u32 = 16;

/// Writes the guest's device tree.
pub fn device_tree(hw: &Hardware, bootargs: &str) -> Result<Vec<u8>, GuestError> {
    let (ram, console, test_device, ecam, bars) = (hw.ram, hw.console, hw.test_device, hw.ecam, hw.bars);
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,dummy-virt")?;
    fdt.property_string("model", "el2 hypervisor guest")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", GIC_PHANDLE)?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", bootargs)?;
    if let Some(initrd) = hw.initrd {
        fdt.property_u64("linux,initrd-start", initrd.base)?;
        fdt.property_u64("linux,initrd-end", initrd.end())?;
    }
    if let Some(starts) = hw.starts {
        fdt.property_u32(platform::abi::STARTS_PROPERTY, starts)?;
    }
    if !hw.probe_holes.is_empty() {
        fdt.property_array_u64(platform::abi::PROBE_HOLES_PROPERTY, hw.probe_holes)?;
    }
    // The BARs are where the devices are: the OS must not move them.
    fdt.property_u32("linux,pci-probe-only", 1)?;
    if let Some(uart) = console {
        fdt.property_string("stdout-path", &alloc::format!("/{}", uart_node_name(&uart)))?;
    }
    fdt.end_node(chosen)?;

    let memory = fdt.begin_node(&alloc::format!("memory@{:x}", ram.base))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[ram.base, ram.size])?;
    fdt.end_node(memory)?;

    if let Some(uart) = console {
        let clock = fdt.begin_node("apb-pclk")?;
        fdt.property_string("compatible", "fixed-clock")?;
        fdt.property_u32("#clock-cells", 0)?;
        fdt.property_u32("clock-frequency", CLOCK_HZ)?;
        fdt.property_string("clock-output-names", "clk24mhz")?;
        fdt.property_u32("phandle", CLOCK_PHANDLE)?;
        fdt.end_node(clock)?;

        let node = fdt.begin_node(&uart_node_name(&uart))?;
        // The model the guest drives: the host's when it is passed through
        // (a PL011 or a Cadence UART), a PL011 when it is emulated. Both
        // drivers want two clocks; the fixed one above stands for both.
        let (compatible, clock_names) = match uart.kind {
            UartKind::Pl011 => (["arm,pl011", "arm,primecell"], ["uartclk", "apb_pclk"]),
            UartKind::Cadence => (["xlnx,zynqmp-uart", "cdns,uart-r1p12"], ["uart_clk", "pclk"]),
        };
        fdt.property_string_list("compatible", compatible.map(Into::into).to_vec())?;
        fdt.property_array_u64("reg", &[uart.base, uart.size])?;
        fdt.property_array_u32("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
        fdt.property_string_list("clock-names", clock_names.map(Into::into).to_vec())?;
        if let Some(intid) = hw.console_irq.filter(|&i| i >= SPI_BASE) {
            fdt.property_array_u32("interrupts", &[GIC_SPI, intid - SPI_BASE, IRQ_TYPE_LEVEL_HIGH])?;
        }
        fdt.end_node(node)?;
    }

    if let Some(test_device) = test_device {
        let device = fdt.begin_node(&alloc::format!("hv-test-mmio@{:x}", test_device.base))?;
        fdt.property_string("compatible", platform::abi::test_mmio::COMPATIBLE)?;
        fdt.property_array_u64("reg", &[test_device.base, test_device.size])?;
        fdt.end_node(device)?;
    }
    if let Some(ecam) = ecam {
        pci_host_bridge(&mut fdt, ecam, bars, hw.pci_interrupts)?;
    }
    // Forwarded virtio devices: standard `virtio,mmio` nodes, so the
    // guest's own driver takes them. Their interrupts are edges
    // (`crate::vm::forward`); their buffers are in the guest's RAM, which
    // the service VM reaches coherently.
    for &(window, intid) in hw.virtio {
        let node = fdt.begin_node(&alloc::format!("virtio_mmio@{:x}", window.base))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[window.base, window.size])?;
        fdt.property_array_u32("interrupts", &[GIC_SPI, intid - SPI_BASE, IRQ_TYPE_EDGE_RISING])?;
        fdt.property_null("dma-coherent")?;
        fdt.end_node(node)?;
    }

    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list("compatible", alloc::vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()])?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 0)?;
    for &mpidr in hw.vcpus {
        let cpu = fdt.begin_node(&alloc::format!("cpu@{mpidr:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        fdt.property_u64("reg", mpidr)?;
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    let gic = hw.gic;
    let intc = fdt.begin_node(&alloc::format!("interrupt-controller@{:x}", gic.distributor.base))?;
    // A GICv3 host's guests get a GICv3 (distributor, redistributors); a
    // GICv2 host's a GICv2 (distributor, CPU interface).
    let compatible = match gic.version {
        GicVersion::V3 => GicCompatible::GicV3,
        GicVersion::V2 => GicCompatible::CortexA15,
    };
    fdt.property_string("compatible", compatible.as_str())?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    if gic.version == GicVersion::V3 {
        fdt.property_u32("#redistributor-regions", 1)?;
    }
    fdt.property_array_u64("reg", &[gic.distributor.base, gic.distributor.size, gic.per_cpu.base, gic.per_cpu.size])?;
    fdt.property_u32("phandle", GIC_PHANDLE)?;
    fdt.end_node(intc)?;

    // The architected timer, with the host's PPIs: the guest's virtual and
    // physical timers are forwarded as those same INTIDs.
    let timer = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    let t = &hw.timer;
    let mut interrupts = Vec::new();
    for irq in [t.secure_phys, t.nonsecure_phys, t.virt, t.hyp_phys] {
        interrupts.extend_from_slice(&[GIC_PPI, irq.intid.saturating_sub(PPI_BASE), IRQ_TYPE_LEVEL_HIGH]);
    }
    fdt.property_array_u32("interrupts", &interrupts)?;
    fdt.property_null("always-on")?;
    fdt.end_node(timer)?;

    fdt.end_node(root)?;
    let dtb = fdt.finish()?;
    if dtb.len() as u64 > DTB_MAX {
        return Err(GuestError::DtbTooLarge(dtb.len()));
    }
    Ok(dtb)
}

/// The PCI host bridge: ECAM over buses 0 and 1; `ranges` maps 64-bit
/// memory space one-to-one onto the shim functions' register windows and
/// the portal window.
fn pci_host_bridge(
    fdt: &mut FdtWriter,
    ecam: MemRegion,
    bars: &[MemRegion],
    interrupts: &[crate::vm::ecam::Intx],
) -> Result<(), GuestError> {
    let pci = fdt.begin_node(&alloc::format!("pcie@{:x}", ecam.base))?;
    fdt.property_string("compatible", "pci-host-ecam-generic")?;
    fdt.property_string("device_type", "pci")?;
    fdt.property_u32("#address-cells", 3)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_array_u64("reg", &[ecam.base, ecam.size])?;
    fdt.property_array_u32("bus-range", &[0, 1])?;
    let mut ranges = Vec::new();
    for bar in bars {
        let (hi, lo) = ((bar.base >> 32) as u32, bar.base as u32);
        let (size_hi, size_lo) = ((bar.size >> 32) as u32, bar.size as u32);
        ranges.extend_from_slice(&[PCI_SPACE_MEM64, hi, lo, hi, lo, size_hi, size_lo]);
    }
    fdt.property_array_u32("ranges", &ranges)?;
    // Legacy interrupts: (device, pin) -> the device's own SPI, which is
    // passed through to the guest, or a portal function's virtual SPI.
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.property_array_u32("interrupt-map-mask", &[PCI_DEVICE_MASK, 0, 0, PCI_PIN_MASK])?;
    let mut map = Vec::new();
    for intx in interrupts {
        let phys_hi = u32::from(intx.device) << PCI_DEVICE_SHIFT;
        map.extend_from_slice(&[phys_hi, 0, 0, u32::from(intx.pin), GIC_PHANDLE]);
        map.extend_from_slice(&[GIC_SPI, intx.intid - SPI_BASE, IRQ_TYPE_LEVEL_HIGH]);
    }
    fdt.property_array_u32("interrupt-map", &map)?;
    fdt.end_node(pci)?;
    Ok(())
}

/// Copies the guest image and its DTB into guest RAM and returns the
/// guest's first register state.
pub fn load(ram: MemRegion, image: &LoadedImage, dtb: &[u8]) -> Result<TrapFrame, GuestError> {
    let align = image.align.max(4096);
    let base = (ram.base + IMAGE_OFFSET).next_multiple_of(align);
    let need = base - ram.base + image.mem_size;
    if need > ram.size {
        return Err(GuestError::ImageTooLarge { need, have: ram.size });
    }
    let dtb_ipa = ram.base + DTB_OFFSET;
    // SAFETY: guest RAM (IPA = PA) is ours to fill, through the direct map;
    // the source is the guest-stub copy inside the block the monitor
    // reserved for us, and the two ranges cannot overlap (free RAM excludes
    // it).
    unsafe {
        core::ptr::copy_nonoverlapping(dtb.as_ptr(), phys_to_virt(dtb_ipa) as *mut u8, dtb.len());
        let dst = phys_to_virt(base) as *mut u8;
        let src = phys_to_virt(image.bytes.base) as *const u8;
        core::ptr::copy_nonoverlapping(src, dst, image.bytes.size as usize);
        core::ptr::write_bytes(dst.add(image.bytes.size as usize), 0, (image.mem_size - image.bytes.size) as usize);
        core::arch::asm!("dsb ish", "ic iallu", "dsb ish", "isb", options(nostack));
    }
    // No EL1 register is touched here: this may run in another VM's trap
    // (a manager starting this one), and the vCPU's start gives it its
    // reset state (`SCTLR_EL1` included, MMU off).
    let mut frame = TrapFrame { elr: base + image.entry_offset, spsr: SPSR_M_EL1H | SPSR_DAIF, ..Default::default() };
    frame.x[0] = dtb_ipa;
    Ok(frame)
}

/// Copies a Linux guest's DTB to `ipa` (in guest RAM, room checked by the
/// placement).
pub fn write_dtb(ipa: u64, dtb: &[u8]) -> Result<(), GuestError> {
    if dtb.len() as u64 > DTB_MAX {
        return Err(GuestError::DtbTooLarge(dtb.len()));
    }
    // SAFETY: guest RAM (IPA = PA) is ours to fill, through the direct map,
    // and nothing runs in it yet.
    unsafe { core::ptr::copy_nonoverlapping(dtb.as_ptr(), phys_to_virt(ipa) as *mut u8, dtb.len()) };
    Ok(())
}

/// Offset of the vector a synchronous exception from `spsr`'s context takes
/// in the guest's EL1 vector table.
fn sync_vector_offset(spsr: u64) -> u64 {
    match ExceptionLevel::from_spsr(spsr) {
        _ if spsr & SPSR_M_AARCH32 != 0 => 0x600,
        ExceptionLevel::El0 => 0x400,
        _ if spsr & SPSR_M_SP_ELX != 0 => 0x200,
        _ => 0x000,
    }
}

/// Delivers a synchronous exception with syndrome `esr` and fault address
/// `far` to the guest's EL1 vector, as the hardware would have.
pub fn inject_sync(frame: &mut TrapFrame, esr: Esr, far: u64) {
    sysregs::write(GuestReg::Esr, esr.0);
    sysregs::write(GuestReg::Far, far);
    sysregs::write(GuestReg::Elr, frame.elr);
    sysregs::write(GuestReg::Spsr, frame.spsr);
    frame.elr = sysregs::read(GuestReg::Vbar) + sync_vector_offset(frame.spsr);
    frame.spsr = SPSR_M_EL1H | SPSR_DAIF;
}

/// Answers a stage-2 abort on an IPA the guest has no memory or device at
/// with a synchronous external abort, which is what a bus gives a bare-metal
/// OS for an access to nothing.
pub fn inject_external_abort(frame: &mut TrapFrame, trapped: Esr, far: u64) {
    let from_el1 = ExceptionLevel::from_spsr(frame.spsr) == ExceptionLevel::El1;
    let is_data = matches!(trapped.class(), ExceptionClass::DataAbortLower);
    let class = match (is_data, from_el1) {
        (true, true) => ExceptionClass::DataAbortSame,
        (true, false) => ExceptionClass::DataAbortLower,
        (false, true) => ExceptionClass::InstructionAbortSame,
        (false, false) => ExceptionClass::InstructionAbortLower,
    };
    let wnr = trapped.abort().map_or(0, |a| a.0 & platform::esr::AbortIss::WNR);
    let iss = u64::from(FaultStatus::SYNC_EXTERNAL_CODE) | if is_data { wnr } else { 0 };
    inject_sync(frame, Esr::new(class, trapped.il(), iss), far);
}
