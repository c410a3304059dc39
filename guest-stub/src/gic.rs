//! The guest's GICv3: found in the DTB, driven with the `arm-gic` crate's
//! `GicV3` (so a standard driver runs against the hypervisor's emulated
//! distributor and redistributors), and the stub's IRQ dispatch.
//!
//! What the stub uses is deliberately small: Group 1 SGIs and PPIs, each
//! vCPU's redistributor configured through MMIO, and the CPU interface
//! through its system registers (virtualised as `ICV_*` under the
//! hypervisor). SPIs are left as firmware left them, except the one a check
//! enables for a while ([`configure_spi`]: `sched-spi-wake`'s RTC alarm).
//!
//! - [`init`] (boot vCPU, once): finds the GIC, maps each vCPU slot to its
//!   redistributor by `GICR_TYPER.Affinity`, turns on affinity routing and
//!   Group 1 in the distributor, then does [`init_cpu`] for the boot vCPU.
//! - [`init_cpu`] (each vCPU, on itself): wakes its redistributor, puts its
//!   SGIs and PPIs in Group 1 and disables them, and enables its CPU
//!   interface: `ICC_SRE_EL1.SRE`, `ICC_CTLR_EL1.EOImode` = 0 (an EOI also
//!   deactivates), priority mask 0xff, binary point 0 (every priority bit is
//!   a preemption level), Group 1 on.
//! - [`handle_irq`] (the EL1 IRQ vector): acknowledges with `ICC_IAR1_EL1`,
//!   runs the INTID's handler from a table shared by all vCPUs, and ends it
//!   with `ICC_EOIR1_EL1`; the spurious INTID 1023 is ignored. An INTID with
//!   no handler is recorded ([`take_unexpected`]), not printed: the console
//!   lock may be held by the code the interrupt stopped.
//!
//! One `GicV3` instance, behind a lock, is the only path to the MMIO
//! registers (the driver's safety contract: no aliases). Interrupt handlers
//! never take that lock, only the handler table's, which thread code holds
//! with interrupts masked.

use crate::smp;
use arm_gic::gicv3::registers::{Gicd, GicdCtlr, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicError, GicV3, Group, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};
use arm_sysregs::el1::accessors::{read_icc_rpr_el1, read_icc_sre_el1, write_icc_bpr1_el1, write_icc_ctlr_el1};
use arm_sysregs::el1::registers::{IccBpr1El1, IccCtlrEl1, IccSreEl1};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};
use platform::board::MAX_CPUS;

/// The DTB `compatible` of the interrupt controller the stub drives.
pub const COMPATIBLE: &str = "arm,gic-v3";

/// `GICD_CTLR` as a Non-secure access sees it (the guest's view; the same
/// bits with `GICD_CTLR.DS` = 1): bit 4 is `ARE_NS`, bit 1 `EnableGrp1A`.
/// `arm-gic` names the bits as a Secure access sees them, where these two
/// are `ARE_S` and `EnableGrp1NS`.
const GICD_CTLR_ARE_NS: GicdCtlr = GicdCtlr::ARE_S;
const GICD_CTLR_ENABLE_GRP1A: GicdCtlr = GicdCtlr::EnableGrp1NS;

/// Lowest priority: the mask that lets every interrupt through.
const PRIORITY_MASK_ALL: u8 = 0xff;
/// No subpriority bits: every priority bit decides preemption.
const BINARY_POINT_ALL_PREEMPT: u8 = 0;
/// INTIDs 1020..=1023 are special: nothing to handle or end.
const FIRST_SPECIAL_INTID: u32 = 1020;
/// The INTIDs a handler can be set for: SGIs, PPIs and SPIs (the special
/// INTIDs and above have none).
const HANDLED_INTIDS: usize = FIRST_SPECIAL_INTID as usize;
/// Most redistributor frames scanned for the `Last` bit.
const MAX_REDISTRIBUTORS: usize = 256;

/// Why the GIC, or one vCPU's part of it, cannot be used.
#[derive(Clone, Copy, Debug)]
pub enum Unavailable {
    /// No `arm,gic-v3` node in the DTB.
    NoNode,
    /// The node's `reg` lacks the distributor or the redistributor region.
    NoRegs,
    /// More than one redistributor region (the stub drives one).
    RedistributorRegions(u32),
    /// The `arm-gic` driver refused the registers.
    Driver(GicError),
    /// No redistributor's `GICR_TYPER.Affinity` names this MPIDR.
    NoRedistributor { mpidr: u64 },
    /// `ICC_SRE_EL1.SRE` reads 0 after being set: no system-register
    /// interface.
    NoSystemRegisters,
    /// `ICC_SGI1R_EL1` without its range selector reaches Aff0 0..15 only.
    SgiUnreachable { mpidr: u64 },
    /// The GIC was never set up (`stub=bench`), or this vCPU never ran
    /// [`init_cpu`].
    NotInitialised,
}

impl core::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoNode => write!(f, "no {COMPATIBLE} node in the DTB"),
            Self::NoRegs => write!(f, "the {COMPATIBLE} node's reg lacks the distributor or redistributor region"),
            Self::RedistributorRegions(n) => write!(f, "{n} redistributor regions in the DTB (the stub drives one)"),
            Self::Driver(e) => write!(f, "arm-gic refused the GIC: {e}"),
            Self::NoRedistributor { mpidr } => {
                write!(f, "no redistributor's GICR_TYPER.Affinity names MPIDR {mpidr:#x}")
            }
            Self::NoSystemRegisters => write!(f, "ICC_SRE_EL1.SRE stays 0: no GIC system-register interface"),
            Self::SgiUnreachable { mpidr } => {
                write!(f, "MPIDR {mpidr:#x} has Aff0 >= 16, which ICC_SGI1R_EL1 reaches only with RS (not driven)")
            }
            Self::NotInitialised => write!(f, "the GIC was not set up on this vCPU"),
        }
    }
}

struct Gic {
    driver: GicV3<'static>,
    /// The redistributor (the driver's `cpu` index) of each vCPU slot.
    frame: [Option<usize>; MAX_CPUS],
}

static GIC: spin::Mutex<Option<Gic>> = spin::Mutex::new(None);
/// Why the GIC as a whole is unusable; `Ok` once [`init`] succeeded.
static STATUS: spin::Once<Result<(), Unavailable>> = spin::Once::new();
/// Per vCPU slot: the outcome of its [`init_cpu`] (`None` = not run).
static CPU_STATUS: spin::Mutex<[Option<Result<(), Unavailable>>; MAX_CPUS]> = spin::Mutex::new([None; MAX_CPUS]);

/// An interrupt handler; runs with `PSTATE.I` masked, may unmask it.
pub type Handler = fn(IntId);

static HANDLERS: spin::Mutex<[Option<Handler>; HANDLED_INTIDS]> = spin::Mutex::new([None; HANDLED_INTIDS]);
/// Per vCPU: the last INTID acknowledged with no handler, plus 1 (0 =
/// none).
static UNEXPECTED: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Finds the GIC in `fdt`, sets up its distributor and the boot vCPU's
/// redistributor and CPU interface. `mpidrs` are the vCPU slots' MPIDRs
/// (slot 0 = this, the boot vCPU).
pub fn init(fdt: &fdt::Fdt, mpidrs: &[u64]) -> Result<(), Unavailable> {
    let result = *STATUS.call_once(|| setup(fdt, mpidrs));
    result?;
    init_cpu(0)
}

fn setup(fdt: &fdt::Fdt, mpidrs: &[u64]) -> Result<(), Unavailable> {
    let node = fdt.find_compatible(&[COMPATIBLE]).ok_or(Unavailable::NoNode)?;
    if let Some(regions) = node.property("#redistributor-regions").and_then(|p| p.as_usize()) {
        if regions != 1 {
            return Err(Unavailable::RedistributorRegions(regions as u32));
        }
    }
    let mut reg = node.reg().ok_or(Unavailable::NoRegs)?;
    let gicd = reg.next().ok_or(Unavailable::NoRegs)?;
    let gicr = reg.next().ok_or(Unavailable::NoRegs)?;
    let gicd_ptr = NonNull::new(gicd.starting_address as *mut Gicd).ok_or(Unavailable::NoRegs)?;
    let gicr_ptr = NonNull::new(gicr.starting_address as *mut GicrSgi).ok_or(Unavailable::NoRegs)?;
    // An upper bound only: frames are scanned up to the one marked Last.
    let frames = (gicr.size.unwrap_or(0) / core::mem::size_of::<GicrSgi>()).clamp(1, MAX_REDISTRIBUTORS);
    // SAFETY: the addresses are the GIC's distributor and redistributor
    // region from the DTB. The stub runs with its MMU off, so they are
    // accessed as Device memory, and this instance, kept behind the GIC lock
    // for the rest of the run, is the only one that touches them.
    let mut driver =
        unsafe { GicV3::new(UniqueMmioPointer::new(gicd_ptr), gicr_ptr, frames) }.map_err(Unavailable::Driver)?;

    // Which redistributor serves which vCPU: GICR_TYPER.Affinity, not the
    // order of either list, decides.
    let mut frame = [None; MAX_CPUS];
    for index in 0..frames {
        let typer = driver.gicr_typer(index).map_err(Unavailable::Driver)?;
        let affinity = typer.core_mpidr();
        if let Some(slot) = mpidrs.iter().position(|&m| m == affinity) {
            frame[slot] = Some(index);
        }
        if typer.last_redistributor() {
            break;
        }
    }

    // Affinity routing first: the Group 1 enable must be written with ARE
    // set (the driver waits for GICD_CTLR.RWP after each write).
    driver.gicd_set_control(GICD_CTLR_ARE_NS);
    driver.gicd_set_control(GICD_CTLR_ENABLE_GRP1A);
    *GIC.lock() = Some(Gic { driver, frame });
    Ok(())
}

/// Whether the GIC is usable at all; why not.
pub fn status() -> Result<(), Unavailable> {
    STATUS.get().copied().unwrap_or(Err(Unavailable::NotInitialised))
}

/// Whether vCPU `slot`'s redistributor and CPU interface are set up.
pub fn cpu_status(slot: usize) -> Result<(), Unavailable> {
    status()?;
    CPU_STATUS.lock().get(slot).copied().flatten().unwrap_or(Err(Unavailable::NotInitialised))
}

/// Runs `f` on the driver and vCPU `slot`'s redistributor index.
fn with_frame<T>(
    slot: usize,
    f: impl FnOnce(&mut GicV3<'static>, usize) -> Result<T, GicError>,
) -> Result<T, Unavailable> {
    status()?;
    let mpidr = smp::mpidr(slot);
    // Interrupts masked: a handler on this vCPU must never wait for a lock
    // its own thread holds (handlers do not take this one, but the rule is
    // kept simple).
    crate::exceptions::without_irqs(|| {
        let mut gic = GIC.lock();
        let gic = gic.as_mut().ok_or(Unavailable::NotInitialised)?;
        let frame = gic.frame.get(slot).copied().flatten().ok_or(Unavailable::NoRedistributor { mpidr })?;
        f(&mut gic.driver, frame).map_err(Unavailable::Driver)
    })
}

/// This vCPU's part (`slot` is this vCPU's): its redistributor, its CPU
/// interface. Records the outcome for [`cpu_status`].
pub fn init_cpu(slot: usize) -> Result<(), Unavailable> {
    let result = setup_cpu(slot);
    if let Some(entry) = CPU_STATUS.lock().get_mut(slot) {
        *entry = Some(result);
    }
    result
}

fn setup_cpu(slot: usize) -> Result<(), Unavailable> {
    let mpidr = smp::mpidr(slot);
    if mpidr & AFF0_MASK >= SGI_TARGET_LIST_BITS {
        return Err(Unavailable::SgiUnreachable { mpidr });
    }
    with_frame(slot, |gic, frame| {
        // Already awake is fine: nothing put it to sleep since reset.
        match gic.redistributor_mark_core_awake(frame) {
            Ok(()) | Err(GicError::AlreadyAwake) => {}
            Err(e) => return Err(e),
        }
        let mut redistributor = gic.redistributor(frame)?;
        redistributor.enable_all_interrupts(false);
        redistributor.wait_for_pending_write();
        for intid in (0..IntId::SGI_COUNT).map(IntId::sgi).chain((0..IntId::PPI_COUNT).map(IntId::ppi)) {
            redistributor.set_group(intid, Group::Group1NS)?;
        }
        Ok(())
    })?;
    GicCpuInterface::enable_system_register_el1();
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    if !read_icc_sre_el1().contains(IccSreEl1::SRE) {
        return Err(Unavailable::NoSystemRegisters);
    }
    write_icc_ctlr_el1(IccCtlrEl1::empty());
    GicCpuInterface::set_priority_mask(PRIORITY_MASK_ALL);
    write_icc_bpr1_el1(IccBpr1El1::empty().with_binarypoint(BINARY_POINT_ALL_PREEMPT));
    GicCpuInterface::enable_group1(true);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    Ok(())
}

/// `MPIDR_EL1.Aff0`, and how many of its values `ICC_SGI1R_EL1`'s target
/// list reaches without the range selector.
const AFF0_MASK: u64 = 0xff;
const SGI_TARGET_LIST_BITS: u64 = 16;
const AFF1_SHIFT: u32 = 8;
const AFF2_SHIFT: u32 = 16;
const AFF3_SHIFT: u32 = 32;

/// Sets the priority of SGI or PPI `intid` on vCPU `slot` and enables or
/// disables it there. A disable waits for `GICR_CTLR.RWP`: once this
/// returns, the interrupt is no longer forwarded.
pub fn configure(slot: usize, intid: IntId, priority: u8, enable: bool) -> Result<(), Unavailable> {
    with_frame(slot, |gic, frame| {
        let mut redistributor = gic.redistributor(frame)?;
        redistributor.set_interrupt_priority(intid, priority)?;
        redistributor.enable_interrupt(intid, enable)?;
        if !enable {
            redistributor.wait_for_pending_write();
        }
        Ok(())
    })
}

/// Sets SPI `intid` up in the distributor as a level-triggered Group 1
/// interrupt of `priority` routed to vCPU `slot`, and enables it; or
/// disables it (`enable` false), waiting for `GICD_CTLR.RWP`, so that once
/// this returns it is no longer forwarded.
pub fn configure_spi(intid: IntId, priority: u8, slot: usize, enable: bool) -> Result<(), Unavailable> {
    status()?;
    let mpidr = smp::mpidr(slot);
    crate::exceptions::without_irqs(|| {
        let mut gic = GIC.lock();
        let gic = gic.as_mut().ok_or(Unavailable::NotInitialised)?;
        let distributor = gic.driver.distributor();
        let result = if enable {
            distributor
                .set_group(intid, Group::Group1NS)
                .and_then(|()| distributor.set_interrupt_priority(intid, priority))
                .and_then(|()| distributor.set_trigger(intid, Trigger::Level))
                .and_then(|()| distributor.set_routing(intid, Some(mpidr)))
                .and_then(|()| distributor.enable_interrupt(intid, true))
        } else {
            distributor.enable_interrupt(intid, false)
        };
        distributor.wait_for_pending_write();
        result.map_err(Unavailable::Driver)
    })
}

/// Sends SGI `sgi` (0..16) to vCPU `slot` (which may be this one). Every
/// store made before is observable by the target before it takes the SGI.
pub fn send_sgi(sgi: u32, slot: usize) {
    let mpidr = smp::mpidr(slot);
    let target = SgiTarget::List {
        affinity3: (mpidr >> AFF3_SHIFT) as u8,
        affinity2: (mpidr >> AFF2_SHIFT) as u8,
        affinity1: (mpidr >> AFF1_SHIFT) as u8,
        target_list: 1 << (mpidr & AFF0_MASK),
    };
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
    // Cannot fail: `sgi` is an SGI (the caller's constants), and every
    // vCPU whose Aff0 the target list cannot express failed `init_cpu`.
    let _ = GicCpuInterface::send_sgi(IntId::sgi(sgi), target, SgiTargetGroup::CurrentGroup1);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Routes `intid` (an SGI or PPI, on every vCPU, or an SPI) to `handler`.
pub fn set_handler(intid: IntId, handler: Option<Handler>) {
    let index = u32::from(intid) as usize;
    crate::exceptions::without_irqs(|| {
        if let Some(entry) = HANDLERS.lock().get_mut(index) {
            *entry = handler;
        }
    });
}

/// The running priority (`ICC_RPR_EL1.Priority`): the priority of the
/// interrupt this vCPU is handling, 0xff when none.
pub fn running_priority() -> u8 {
    read_icc_rpr_el1().priority()
}

/// The IRQ vector's work: one interrupt acknowledged, handled and ended.
pub fn handle_irq() {
    // 1023 (`None`): the interrupt went away, or a higher-priority one took
    // its place, between the exception and the acknowledge. Nothing to do.
    let Some(intid) = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1) else {
        return;
    };
    let raw = u32::from(intid);
    if raw >= FIRST_SPECIAL_INTID {
        return;
    }
    // Copied out, so that the handler runs without the lock (it may unmask
    // interrupts and be preempted by another handler).
    let handler = HANDLERS.lock().get(raw as usize).copied().flatten();
    match handler {
        Some(handler) => handler(intid),
        None => UNEXPECTED[smp::this_cpu()].store(raw + 1, Ordering::SeqCst),
    }
    GicCpuInterface::end_interrupt(intid, InterruptGroup::Group1);
}

/// An interrupt some vCPU took with no handler for it since the last call:
/// `(slot, INTID)`.
pub fn take_unexpected() -> Option<(usize, u32)> {
    UNEXPECTED.iter().enumerate().find_map(|(slot, seen)| match seen.swap(0, Ordering::SeqCst) {
        0 => None,
        intid => Some((slot, intid - 1)),
    })
}
