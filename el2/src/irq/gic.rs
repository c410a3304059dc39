//! The physical interrupt controller at EL2: a GICv3 found in the DTB,
//! driven through the `arm-gic` crate, and the priority scheme that makes
//! pseudo-NMIs out of ordinary interrupts.
//!
//! # Priorities: pseudo-NMIs on a priority interrupt controller
//!
//! Lower is more urgent. The monitor keeps the GIC's two security states,
//! so a Non-secure write of an interrupt's priority `p` is stored as
//! `0x80 | p >> 1` (QEMU keeps five bits of that). Whether a Non-secure
//! write of `ICC_PMR_EL1` is shifted the same way depends on EL3
//! (`SCR_EL3.FIQ`): our monitor leaves it clear, so the mask is stored
//! as written; TF-A may set it. The values below keep their meaning in
//! both views (stored values in brackets: as written / shifted):
//!
//! | name | value | what |
//! |------|-------|------|
//! | [`PRIORITY_PNMI`] | `0x20` (stored `0x90`) | pseudo-NMIs: the watchdog tick ([`crate::irq::pnmi`]), the cross-CPU PNMI SGI |
//! | [`PRIORITY_REGULAR`] | `0xa0` (stored `0xd0`) | everything else: kicks, the regular tick, forwarded guest interrupts, maintenance |
//! | [`PMR_PNMI_ONLY`] | `0xa0` (`0xa0` / `0xd0`) | `ICC_PMR_EL1` while EL2 code runs: between the two, so only a PNMI gets through |
//! | [`PMR_OPEN`] | `0xf0` (`0xf0` / `0xf8`) | `ICC_PMR_EL1` while the guest runs or a CPU idles |
//!
//! The rules, which [`crate::irq`] and [`crate::irq::pnmi`] follow:
//!
//! 1. EL2 never masks a PNMI for long. Code that must not be interrupted
//!    by regular interrupts raises the priority mask to [`PMR_PNMI_ONLY`]
//!    instead of setting `PSTATE.I`; `PSTATE.I` is set only around a few
//!    instructions (exception entry and return, the mask changes
//!    themselves).
//! 2. A regular handler acknowledges, raises the mask to
//!    [`PMR_PNMI_ONLY`], unmasks `PSTATE.I`, runs, masks `PSTATE.I`, ends
//!    the interrupt and restores the mask it found.
//! 3. A PNMI handler runs with `PSTATE.I` set and touches only atomics and
//!    system registers: it can interrupt any EL2 code, including code that
//!    holds a lock, so it must never take one.
//!
//! `ICC_CTLR_EL1.EOImode` is 1 at EL2: ending an interrupt only drops the
//! running priority, and deactivation is a separate `ICC_DIR_EL1` write.
//! That is what lets a physical interrupt forwarded to the guest stay
//! active until the guest deactivates it through its list register.
//!
//! # Interrupts the hypervisor owns
//!
//! SGIs [`SGI_KICK`], [`SGI_TICK`], [`SGI_TEST`] and [`SGI_PNMI`]; the
//! EL2 physical timer's PPI (the watchdog tick); the virtual-interface
//! maintenance PPI. The guest's timers' PPIs and its devices' SPIs are
//! forwarded to it ([`crate::vm::vgic`]). The driver boundary is
//! [`InterruptController`]: only a GICv3 implements it today; a GICv2 can
//! follow from the DTB without touching the rest.

use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, Trigger, UniqueMmioPointer};
use core::ptr::NonNull;
use platform::board::Board;
use spin::Mutex;

pub const PRIORITY_PNMI: u8 = 0x20;
pub const PRIORITY_REGULAR: u8 = 0xa0;
pub const PMR_PNMI_ONLY: u8 = 0xa0;
pub const PMR_OPEN: u8 = 0xf0;

/// "Look at your vCPU's interrupts": another CPU changed them.
pub const SGI_KICK: u32 = 0;
/// The regular half of the tick, raised by the PNMI half on its own CPU.
pub const SGI_TICK: u32 = 1;
/// The regular interrupts of the PNMI experiment (`HV_PNMI_TEST`).
pub const SGI_TEST: u32 = 2;
/// A PNMI from another CPU (what it asks is in [`crate::irq::pnmi`]).
pub const SGI_PNMI: u32 = 15;

/// The first INTID of the special range (1020..1023: none pending etc.).
const INTID_SPECIAL_FIRST: u32 = 1020;

/// `ICC_CTLR_EL1.EOImode` (bit 1): EOIR drops priority only.
const ICC_CTLR_EOIMODE: u64 = 1 << 1;
/// `ICC_SRE_EL2`: system-register interface at EL2 and for EL1 (bit 0
/// SRE, bit 3 Enable: EL1 may access `ICC_SRE_EL1`).
const ICC_SRE_EL2_SRE: u64 = 1 << 0;
const ICC_SRE_EL2_ENABLE: u64 = 1 << 3;
/// `ICC_PMR_EL1.Priority`, bits [7:0].
const ICC_PMR_PRIORITY_MASK: u64 = 0xff;
/// `ICC_IAR1_EL1.INTID`, bits [23:0].
const ICC_IAR_INTID_MASK: u64 = 0xff_ffff;

/// What the rest of the hypervisor needs from the physical GIC's
/// distributor side. The CPU-interface side is the `ICC_*` system
/// registers, the same for every GICv3, in the free functions below.
pub trait InterruptController: Send {
    /// Brings up the redistributor of GIC CPU `cpu` for the hypervisor's
    /// private interrupts.
    fn init_cpu(&mut self, cpu: usize, private: &[(u32, u8)]);
    /// Enables or disables SPI `intid` (level-triggered, at `priority`)
    /// and routes it to the CPU with affinity `mpidr`.
    fn route_spi(&mut self, intid: u32, mpidr: u64, priority: u8, enable: bool);
    /// How many SPIs the distributor implements.
    fn spis(&self) -> usize;
}

struct V3 {
    gic: GicV3<'static>,
}

// SAFETY: the driver holds MMIO pointers into the GIC's frames, which the
// direct map keeps mapped for the hypervisor's lifetime on every CPU; the
// one instance lives behind `GIC`'s mutex, so only one CPU uses it at a time.
unsafe impl Send for V3 {}

impl InterruptController for V3 {
    fn init_cpu(&mut self, cpu: usize, private: &[(u32, u8)]) {
        if let Err(e) = self.gic.redistributor_mark_core_awake(cpu) {
            // The monitor woke it already; anything else is worth a line.
            if !matches!(e, arm_gic::gicv3::GicError::AlreadyAwake) {
                log::warn!("GIC redistributor {cpu}: {e:?}");
            }
        }
        for &(intid, priority) in private {
            let Ok(id) = IntId::try_from(intid) else { continue };
            let result = self
                .gic
                .set_interrupt_priority(id, Some(cpu), priority)
                .and_then(|()| self.gic.enable_interrupt(id, Some(cpu), true));
            if let Err(e) = result {
                log::error!("GIC: cannot enable INTID {intid} on CPU {cpu}: {e:?}");
            }
        }
    }

    fn route_spi(&mut self, intid: u32, mpidr: u64, priority: u8, enable: bool) {
        let Ok(id) = IntId::try_from(intid) else { return };
        let result = self
            .gic
            .distributor()
            .set_routing(id, Some(mpidr & platform::arch::regs::MPIDR_AFFINITY_MASK))
            .and_then(|()| self.gic.set_interrupt_priority(id, None, priority))
            .and_then(|()| self.gic.set_trigger(id, None, Trigger::Level))
            .and_then(|()| self.gic.enable_interrupt(id, None, enable));
        if let Err(e) = result {
            log::error!("GIC: cannot route SPI {intid}: {e:?}");
        }
    }

    fn spis(&self) -> usize {
        self.gic.typer().num_spis() as usize
    }
}

static GIC: Mutex<Option<alloc::boxed::Box<dyn InterruptController>>> = Mutex::new(None);

/// Why the hypervisor cannot take over the interrupt controller.
#[derive(Debug)]
pub enum GicError {
    /// Only GICv3 so far.
    Unsupported(platform::board::GicNotDriven),
    /// The DTB gives no redistributor region, or a null frame.
    Missing,
    /// The driver refused the frames.
    Driver(arm_gic::gicv3::GicError),
}

impl core::fmt::Display for GicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unsupported(g) => write!(f, "interrupt controller {g}"),
            Self::Missing => write!(f, "GIC: the DTB gives no usable distributor or redistributor frames"),
            Self::Driver(e) => write!(f, "GIC: {e:?}"),
        }
    }
}

/// Boot CPU, once: takes the distributor the monitor handed over.
pub fn init(board: &Board) -> Result<(), GicError> {
    let gic = &board.gic;
    gic.check_driven().map_err(GicError::Unsupported)?;
    let redist = gic.redistributors.first().ok_or(GicError::Missing)?;
    let gicd =
        NonNull::new(crate::arch::layout::phys_to_virt(gic.distributor.base) as *mut Gicd).ok_or(GicError::Missing)?;
    let gicr = NonNull::new(crate::arch::layout::phys_to_virt(redist.base) as *mut GicrSgi).ok_or(GicError::Missing)?;
    // SAFETY: both are the GIC's frames from the DTB, mapped as Device
    // memory in the direct map (`tables.rs`); this is the only driver
    // instance at EL2, and the monitor no longer touches them.
    let driver =
        unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, board.cpus.len()) }.map_err(GicError::Driver)?;
    *GIC.lock() = Some(alloc::boxed::Box::new(V3 { gic: driver }));
    Ok(())
}

/// Runs `f` on the distributor driver (no-op before [`init`]).
pub fn with<R>(f: impl FnOnce(&mut dyn InterruptController) -> R) -> Option<R> {
    GIC.lock().as_mut().map(|gic| f(gic.as_mut()))
}

macro_rules! sysreg_write {
    ($reg:literal, $value:expr) => {
        // SAFETY: a GIC CPU-interface register of this CPU; writing it
        // changes interrupt state only, never memory.
        unsafe { platform::msr!($reg, $value) }
    };
}

macro_rules! sysreg_read {
    ($reg:literal) => {{
        // SAFETY: reading a GIC CPU-interface register of this CPU (the
        // acknowledge register changes interrupt state, never memory).
        unsafe { platform::mrs!($reg) }
    }};
}

/// This CPU: the system-register interface for EL2 and EL1, EOI split from
/// deactivation, everything unmasked by priority, Group 1 on; then the
/// redistributor's private interrupts `private` (INTID, priority).
pub fn init_cpu(gic_cpu: usize, private: &[(u32, u8)]) {
    sysreg_write!("icc_sre_el2", ICC_SRE_EL2_SRE | ICC_SRE_EL2_ENABLE);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    sysreg_write!("icc_ctlr_el1", ICC_CTLR_EOIMODE);
    set_pmr(PMR_OPEN);
    // Group priority in every bit that QEMU's five implements.
    sysreg_write!("icc_bpr1_el1", 0u64);
    GicCpuInterface::enable_group1(true);
    with(|gic| gic.init_cpu(gic_cpu, private));
}

/// Acknowledges the most urgent pending Group 1 interrupt, if any.
pub fn acknowledge() -> Option<u32> {
    let intid = (sysreg_read!("icc_iar1_el1") & ICC_IAR_INTID_MASK) as u32;
    (intid < INTID_SPECIAL_FIRST).then_some(intid)
}

/// Drops the running priority of `intid` (EOImode 1: not deactivated).
pub fn end(intid: u32) {
    sysreg_write!("icc_eoir1_el1", u64::from(intid));
}

/// Deactivates `intid` (after [`end`]).
pub fn deactivate(intid: u32) {
    sysreg_write!("icc_dir_el1", u64::from(intid));
}

/// The priority mask.
pub fn pmr() -> u8 {
    sysreg_read!("icc_pmr_el1") as u8
}

/// Sets the priority mask. Made visible to the interrupt logic by the
/// `isb` (the architecture asks for no more for the CPU interface itself).
pub fn set_pmr(value: u8) {
    sysreg_write!("icc_pmr_el1", u64::from(value));
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Sets the priority mask without the barrier: for a caller with
/// `PSTATE.I` set whose next context-synchronising event (an `ERET`, an
/// `ISB`) comes before it takes interrupts again.
#[inline]
pub fn set_pmr_unsynchronised(value: u8) {
    sysreg_write!("icc_pmr_el1", u64::from(value));
}

/// `ICC_RPR_EL1` when no interrupt is active on this CPU.
pub const RPR_IDLE: u8 = 0xff;

/// The running priority (`ICC_RPR_EL1`).
pub fn running_priority() -> u8 {
    sysreg_read!("icc_rpr_el1") as u8
}

/// Sends SGI `sgi` to the CPU with affinity `mpidr`.
pub fn send_sgi(sgi: u32, mpidr: u64) {
    use platform::vgic::affinity::{AFF1_SHIFT, AFF2_SHIFT, AFF3_SHIFT};
    let field = |shift: u32| (mpidr >> shift) as u8;
    let aff0 = field(0);
    if u32::from(aff0) >= u16::BITS {
        log::error!("SGI to MPIDR {mpidr:#x}: Aff0 beyond a target list");
        return;
    }
    let target = SgiTarget::List {
        affinity3: field(AFF3_SHIFT),
        affinity2: field(AFF2_SHIFT),
        affinity1: field(AFF1_SHIFT),
        target_list: 1 << aff0,
    };
    let _ = GicCpuInterface::send_sgi(IntId::sgi(sgi), target, SgiTargetGroup::CurrentGroup1);
}

/// Sends SGI `sgi` to this CPU.
pub fn send_sgi_to_self(sgi: u32) {
    send_sgi(sgi, platform::arch::this_cpu_mpidr());
}

/// The CPU interface's masking state in one word, for a PNMI to record
/// (packed: PMR [7:0], highest pending INTID [31:8], `ICC_AP1R0_EL1`
/// [63:32]).
pub fn snapshot() -> u64 {
    let pmr = sysreg_read!("icc_pmr_el1") & ICC_PMR_PRIORITY_MASK;
    let pending = sysreg_read!("icc_hppir1_el1") & ICC_IAR_INTID_MASK;
    let active = sysreg_read!("icc_ap1r0_el1") & u64::from(u32::MAX);
    pmr | pending << 8 | active << 32
}

/// A [`snapshot`], printed.
pub struct Snapshot(pub u64);

impl core::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "PMR {:#x}, most urgent pending INTID {}, active priorities {:#x}",
            self.0 & ICC_PMR_PRIORITY_MASK,
            (self.0 >> 8) & ICC_IAR_INTID_MASK,
            self.0 >> 32
        )
    }
}
