//! The GICv3 half of [`super`]: the `arm-gic` crate's `GicV3` (so a
//! standard driver runs against the hypervisor's emulated distributor and
//! redistributors), and the CPU interface through its system registers
//! (virtualised as `ICV_*` under the hypervisor).
//!
//! Everything is Group 1: SGIs and PPIs configured in each vCPU's
//! redistributor through MMIO (any vCPU reaches every redistributor),
//! acknowledged with `ICC_IAR1_EL1` and ended with `ICC_EOIR1_EL1`
//! (`ICC_CTLR_EL1.EOImode` = 0: an EOI also deactivates). Binary point 0:
//! every priority bit is a preemption level.

use super::Unavailable;
use arm_gic::gicv3::registers::{Gicd, GicdCtlr, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicError, GicV3, Group, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};
use arm_sysregs::el1::accessors::{read_icc_rpr_el1, read_icc_sre_el1, write_icc_bpr1_el1, write_icc_ctlr_el1};
use arm_sysregs::el1::registers::{IccBpr1El1, IccCtlrEl1, IccSreEl1};
use core::ptr::NonNull;
use platform::board::MAX_CPUS;

/// The DTB `compatible` of a GICv3.
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
/// Most redistributor frames scanned for the `Last` bit.
const MAX_REDISTRIBUTORS: usize = 256;
/// `ICC_IAR1_EL1.INTID`.
pub const IAR_INTID_MASK: u64 = 0xff_ffff;

/// `MPIDR_EL1.Aff0`, and how many of its values `ICC_SGI1R_EL1`'s target
/// list reaches without the range selector.
const AFF0_MASK: u64 = 0xff;
const SGI_TARGET_LIST_BITS: u64 = 16;
const AFF1_SHIFT: u32 = 8;
const AFF2_SHIFT: u32 = 16;
const AFF3_SHIFT: u32 = 32;

/// The driver, and which redistributor serves which vCPU.
pub struct Gic {
    driver: GicV3<'static>,
    /// The redistributor (the driver's `cpu` index) of each vCPU slot.
    frame: [Option<usize>; MAX_CPUS],
}

/// Sets up the GICv3 of `node`: maps each vCPU slot to its redistributor
/// by `GICR_TYPER.Affinity` (`mpidrs` are the slots' MPIDRs), turns on
/// affinity routing and Group 1 in the distributor.
pub fn setup(node: &fdt::node::FdtNode, mpidrs: &[u64]) -> Result<Gic, Unavailable> {
    let no_regs = Unavailable::NoRegs(super::Version::V3);
    if let Some(regions) = node.property("#redistributor-regions").and_then(|p| p.as_usize()) {
        if regions != 1 {
            return Err(Unavailable::RedistributorRegions(regions as u32));
        }
    }
    let mut reg = node.reg().ok_or(no_regs)?;
    let gicd = reg.next().ok_or(no_regs)?;
    let gicr = reg.next().ok_or(no_regs)?;
    let gicd_ptr = NonNull::new(gicd.starting_address as *mut Gicd).ok_or(no_regs)?;
    let gicr_ptr = NonNull::new(gicr.starting_address as *mut GicrSgi).ok_or(no_regs)?;
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
    Ok(Gic { driver, frame })
}

impl Gic {
    /// Runs `f` on the driver and vCPU `slot` (MPIDR `mpidr`)'s
    /// redistributor index.
    fn with_frame<T>(
        &mut self,
        slot: usize,
        mpidr: u64,
        f: impl FnOnce(&mut GicV3<'static>, usize) -> Result<T, GicError>,
    ) -> Result<T, Unavailable> {
        let frame = self.frame.get(slot).copied().flatten().ok_or(Unavailable::NoRedistributor { mpidr })?;
        f(&mut self.driver, frame).map_err(Unavailable::Driver)
    }

    /// vCPU `slot`'s redistributor: awake, its SGIs and PPIs in Group 1
    /// and disabled.
    pub fn setup_redistributor(&mut self, slot: usize, mpidr: u64) -> Result<(), Unavailable> {
        self.with_frame(slot, mpidr, |gic, frame| {
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
        })
    }

    /// SGI or PPI `intid` in vCPU `slot`'s redistributor: its priority,
    /// enabled or disabled (a disable waits for `GICR_CTLR.RWP`).
    pub fn configure(
        &mut self,
        slot: usize,
        mpidr: u64,
        intid: IntId,
        priority: u8,
        enable: bool,
    ) -> Result<(), Unavailable> {
        self.with_frame(slot, mpidr, |gic, frame| {
            let mut redistributor = gic.redistributor(frame)?;
            redistributor.set_interrupt_priority(intid, priority)?;
            redistributor.enable_interrupt(intid, enable)?;
            if !enable {
                redistributor.wait_for_pending_write();
            }
            Ok(())
        })
    }

    /// SPI `intid` in the distributor: level-triggered, Group 1,
    /// `priority`, routed to `mpidr`, enabled; or disabled. Either way
    /// waits for `GICD_CTLR.RWP`.
    pub fn configure_spi(&mut self, intid: IntId, priority: u8, mpidr: u64, enable: bool) -> Result<(), Unavailable> {
        let distributor = self.driver.distributor();
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
    }
}

/// Whether [`send_sgi`] can reach `mpidr` (no range selector).
pub fn sgi_reachable(mpidr: u64) -> Result<(), Unavailable> {
    if mpidr & AFF0_MASK >= SGI_TARGET_LIST_BITS {
        return Err(Unavailable::SgiUnreachable { mpidr });
    }
    Ok(())
}

/// This vCPU's CPU interface: `ICC_SRE_EL1.SRE`, `ICC_CTLR_EL1.EOImode` =
/// 0 (an EOI also deactivates), priority mask 0xff, binary point 0, Group
/// 1 on.
pub fn enable_cpu_interface() -> Result<(), Unavailable> {
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

/// Sends SGI `sgi` to the vCPU of MPIDR `mpidr` with `ICC_SGI1R_EL1`.
pub fn send_sgi(sgi: u32, mpidr: u64) {
    let target = SgiTarget::List {
        affinity3: (mpidr >> AFF3_SHIFT) as u8,
        affinity2: (mpidr >> AFF2_SHIFT) as u8,
        affinity1: (mpidr >> AFF1_SHIFT) as u8,
        target_list: 1 << (mpidr & AFF0_MASK),
    };
    // Cannot fail: `sgi` is an SGI (the caller's constants), and every
    // vCPU whose Aff0 the target list cannot express failed `init_cpu`.
    let _ = GicCpuInterface::send_sgi(IntId::sgi(sgi), target, SgiTargetGroup::CurrentGroup1);
}

/// The `ICC_SGI1R_EL1` value that sends SGI `sgi` to `mpidr`.
pub fn sgi1r(sgi: u32, mpidr: u64) -> u64 {
    platform::vgic::sgi1r::to_one(mpidr, sgi)
}

/// `ICC_IAR1_EL1`: the highest-priority pending interrupt, acknowledged;
/// `None` for INTID 1023 (none).
pub fn acknowledge() -> Option<IntId> {
    GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1)
}

/// `ICC_EOIR1_EL1`: priority drop and deactivation of `intid`.
pub fn end(intid: IntId) {
    GicCpuInterface::end_interrupt(intid, InterruptGroup::Group1);
}

/// `ICC_RPR_EL1.Priority`.
pub fn running_priority() -> u8 {
    read_icc_rpr_el1().priority()
}

/// `ICC_PMR_EL1`.
pub fn set_priority_mask(mask: u8) {
    GicCpuInterface::set_priority_mask(mask);
}
