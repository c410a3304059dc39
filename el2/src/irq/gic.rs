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
//! forwarded to it ([`crate::vm::vgic`]).
//!
//! # GICv3 and GICv2
//!
//! The DTB says which GIC the board has. The distributor side is behind
//! [`InterruptController`] (a GICv3 through the `arm-gic` crate, a GICv2
//! through [`platform::gicv2`]); the CPU-interface side is the free
//! functions below, which use the `ICC_*` system registers on a GICv3 and
//! the memory-mapped `GICC_*` frame on a GICv2 ([`V2`] holds its address,
//! the only thing they test).
//!
//! The priority scheme is the same on both. `GICC_PMR` is
//! `ICC_PMR_EL1` in a frame, with the same Non-secure view of priorities
//! (the monitor leaves every interrupt in Group 1 and a Secure mask of
//! 0xff, so a write of `p` is stored as `0x80 | p >> 1`); `GICC_RPR` is
//! `ICC_RPR_EL1`, and `GICC_CTLR.EOImodeNS` is `ICC_CTLR_EL1.EOImode`. So
//! pseudo-NMIs stay ordinary Group 1 interrupts at a priority the mask
//! lets through, with no FIQ: a Non-secure FIQ on a GICv2 means Group 0,
//! which is the Secure world's. Two differences need care: a mask write is
//! a store to a device, which [`set_pmr`] reads back so that it has
//! reached the GIC before the caller opens `PSTATE.I`; and an SGI's
//! acknowledge value names its sender, which its end and deactivation must
//! name again ([`Acked`]). A GICv2 addresses SGIs and SPIs to CPU
//! interfaces, not affinities: each CPU reads its own interface bit from
//! `GICD_ITARGETSR0` when it comes up ([`init_cpu`]).

use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, Trigger, UniqueMmioPointer};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use platform::board::{Board, CpuList, GicVersion, MAX_CPUS};
use platform::gicv2;
use spin::{Mutex, Once};

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

/// A GICv2's frames, in the direct map.
#[derive(Clone, Copy)]
pub struct V2 {
    distributor: gicv2::Distributor,
    cpu: gicv2::CpuInterface,
    /// `GICH`, the virtualisation extensions' control frame, if the DTB
    /// gives one ([`crate::vm::vgic`] drives it).
    pub hyp: Option<gicv2::HypInterface>,
    /// Where in its DT region the CPU interface's 8 KiB are contiguous
    /// ([`gicv2::contiguous_offset`]); the virtual CPU interface a guest
    /// gets is laid out alike.
    pub cpu_offset: u64,
    /// The CPUs' MPIDRs, by GIC CPU index (the DTB's `/cpus` order).
    cpus: CpuList,
}

/// Set on a GICv2 (before any CPU takes interrupts): the CPU-interface
/// functions below test it.
static V2_FRAMES: Once<V2> = Once::new();

/// Each CPU's GICv2 CPU interface bit, by GIC CPU index (0: not up yet).
static V2_TARGETS: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

/// Whether [`V2_FRAMES`] is set: one relaxed byte load on every GIC access
/// of a GICv3 host, where the `Once`'s own acquire load and state check
/// cost some 30 instructions per trap across the calls an exit makes.
static IS_V2: AtomicBool = AtomicBool::new(false);

/// The GICv2's frames, on a GICv2.
#[inline]
pub fn v2() -> Option<&'static V2> {
    if IS_V2.load(Ordering::Relaxed) {
        V2_FRAMES.get()
    } else {
        None
    }
}

impl V2 {
    /// The CPU interface bit of the CPU with affinity `mpidr`: the one it
    /// read when it came up, or, before that, the bit of its `/cpus`
    /// index, which is what a GIC-400 and QEMU number them by.
    fn target(&self, mpidr: u64) -> Option<u8> {
        let mpidr = mpidr & platform::arch::regs::MPIDR_AFFINITY_MASK;
        let index = self.cpus.iter().position(|&m| m == mpidr)?;
        match V2_TARGETS.get(index).map(|t| t.load(Ordering::Relaxed)) {
            Some(0) | None => 1u8.checked_shl(index as u32),
            known => known,
        }
    }
}

impl InterruptController for V2 {
    fn init_cpu(&mut self, cpu: usize, private: &[(u32, u8)]) {
        if let Some(target) = V2_TARGETS.get(cpu) {
            target.store(self.distributor.own_target(), Ordering::Relaxed);
        }
        for &(intid, priority) in private {
            self.distributor.set_priority(intid, priority);
            self.distributor.enable(intid, true);
        }
    }

    fn route_spi(&mut self, intid: u32, mpidr: u64, priority: u8, enable: bool) {
        let Some(target) = self.target(mpidr) else {
            log::error!("GIC: cannot route SPI {intid} to MPIDR {mpidr:#x}, which is not in the DTB");
            return;
        };
        self.distributor.set_targets(intid, target);
        self.distributor.set_priority(intid, priority);
        self.distributor.set_edge(intid, false);
        self.distributor.enable(intid, enable);
    }

    fn spis(&self) -> usize {
        self.distributor.spis()
    }
}

static GIC: Mutex<Option<alloc::boxed::Box<dyn InterruptController>>> = Mutex::new(None);

/// Why the hypervisor cannot take over the interrupt controller.
#[derive(Debug)]
pub enum GicError {
    /// The DTB gives no redistributor region (GICv3) or CPU interface
    /// (GICv2), or a null frame.
    Missing,
    /// The driver refused the frames.
    Driver(arm_gic::gicv3::GicError),
}

impl core::fmt::Display for GicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing => {
                write!(f, "GIC: the DTB gives no usable distributor, redistributor or CPU interface frames")
            }
            Self::Driver(e) => write!(f, "GIC: {e:?}"),
        }
    }
}

/// Boot CPU, once: takes the distributor the monitor handed over.
pub fn init(board: &Board) -> Result<(), GicError> {
    let gic = &board.gic;
    if gic.version == GicVersion::V2 {
        let va = |pa: u64| match pa {
            0 => None,
            pa => Some(crate::arch::layout::phys_to_virt(pa) as usize),
        };
        let distributor = va(gic.distributor.base).ok_or(GicError::Missing)?;
        let cpu_region = gic.cpu_interface.ok_or(GicError::Missing)?;
        let cpu = va(cpu_region.base).ok_or(GicError::Missing)?;
        let hyp = gic.hyp_interface.and_then(|h| va(h.base));
        // SAFETY: the GICv2's frames from the DTB (the monitor found a
        // GICv2 there), their whole regions mapped as Device memory in the
        // direct map (`tables.rs`); the monitor no longer touches them, and
        // at EL2 only this module and `crate::vm::vgic` (the `GICH` frame)
        // do. The offset keeps the CPU interface's 8 KiB in its region.
        let frames = unsafe {
            let whole = gicv2::CpuInterface::new(cpu);
            let cpu_offset = gicv2::contiguous_offset(cpu_region.size, |offset| whole.iidr_at(offset));
            V2 {
                distributor: gicv2::Distributor::new(distributor),
                cpu: gicv2::CpuInterface::new(cpu.wrapping_add(cpu_offset as usize)),
                hyp: hyp.map(|h| gicv2::HypInterface::new(h)),
                cpus: board.cpus,
                cpu_offset,
            }
        };
        if frames.cpu_offset != 0 {
            log::info!(
                "GIC: the CPU interface's 4 KiB pages repeat every 64 KiB: using its 8 KiB at {:#x}",
                cpu_region.base + frames.cpu_offset
            );
        }
        V2_FRAMES.call_once(|| frames);
        // Before any CPU takes interrupts or runs a guest: every later
        // reader is ordered after this by the CPUs' bring-up.
        IS_V2.store(true, Ordering::Release);
        *GIC.lock() = Some(alloc::boxed::Box::new(frames));
        return Ok(());
    }
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

/// This CPU: on a GICv3 the system-register interface for EL2 and EL1;
/// EOI split from deactivation, everything unmasked by priority, Group 1
/// on; then the private interrupts `private` (INTID, priority).
pub fn init_cpu(gic_cpu: usize, private: &[(u32, u8)]) {
    if let Some(v2) = v2() {
        v2.cpu.set_control(gicv2::GICC_CTLR_NS_ENABLE_GRP1 | gicv2::GICC_CTLR_NS_EOIMODE);
        set_pmr(PMR_OPEN);
        v2.cpu.set_binary_point(0);
    } else {
        sysreg_write!("icc_sre_el2", ICC_SRE_EL2_SRE | ICC_SRE_EL2_ENABLE);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        sysreg_write!("icc_ctlr_el1", ICC_CTLR_EOIMODE);
        set_pmr(PMR_OPEN);
        // Group priority in every bit that QEMU's five implements.
        sysreg_write!("icc_bpr1_el1", 0u64);
        GicCpuInterface::enable_group1(true);
    }
    with(|gic| gic.init_cpu(gic_cpu, private));
}

/// An acknowledged interrupt: its INTID, and what its end and
/// deactivation must write (on a GICv2, an SGI's acknowledge value names
/// its sender too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    pub intid: u32,
    raw: u32,
}

impl Acked {
    /// A PPI or SPI this CPU acknowledged earlier, known by its INTID
    /// alone (no sender to name).
    pub const fn interrupt(intid: u32) -> Self {
        Self { intid, raw: intid }
    }
}

/// Acknowledges the most urgent pending Group 1 interrupt, if any.
pub fn acknowledge() -> Option<Acked> {
    if let Some(v2) = v2() {
        let raw = v2.cpu.acknowledge()?;
        return Some(Acked { intid: raw & gicv2::gicc::IAR_INTID_MASK, raw });
    }
    let intid = (sysreg_read!("icc_iar1_el1") & ICC_IAR_INTID_MASK) as u32;
    (intid < INTID_SPECIAL_FIRST).then_some(Acked::interrupt(intid))
}

/// Drops the running priority of `acked` (EOImode 1: not deactivated).
pub fn end(acked: Acked) {
    match v2() {
        Some(v2) => v2.cpu.end(acked.raw),
        None => sysreg_write!("icc_eoir1_el1", u64::from(acked.raw)),
    }
}

/// Deactivates `acked` (after [`end`]).
pub fn deactivate(acked: Acked) {
    match v2() {
        Some(v2) => v2.cpu.deactivate(acked.raw),
        None => sysreg_write!("icc_dir_el1", u64::from(acked.raw)),
    }
}

/// The priority mask.
#[inline]
pub fn pmr() -> u8 {
    match v2() {
        Some(v2) => v2.cpu.pmr(),
        None => sysreg_read!("icc_pmr_el1") as u8,
    }
}

/// Sets the priority mask. Made visible to the interrupt logic by the
/// `isb` (the architecture asks for no more for the CPU interface itself);
/// on a GICv2 by reading the mask back, which completes the store at the
/// GIC before the caller goes on (to unmask `PSTATE.I`, say).
pub fn set_pmr(value: u8) {
    match v2() {
        Some(v2) => {
            v2.cpu.set_pmr(value);
            let _ = v2.cpu.pmr();
        }
        None => sysreg_write!("icc_pmr_el1", u64::from(value)),
    }
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Sets the priority mask without the barrier: for a caller with
/// `PSTATE.I` set whose next context-synchronising event (an `ERET`, an
/// `ISB`) comes before it takes interrupts again. (On a GICv2 the store
/// to the device may still be on its way then: the callers only lower the
/// mask, which a late store merely delays.)
#[inline]
pub fn set_pmr_unsynchronised(value: u8) {
    match v2() {
        Some(v2) => v2.cpu.set_pmr(value),
        None => sysreg_write!("icc_pmr_el1", u64::from(value)),
    }
}

/// `ICC_RPR_EL1` (`GICC_RPR`) when no interrupt is active on this CPU.
pub const RPR_IDLE: u8 = 0xff;

/// The running priority (`ICC_RPR_EL1`, `GICC_RPR`).
pub fn running_priority() -> u8 {
    match v2() {
        Some(v2) => v2.cpu.running_priority(),
        None => sysreg_read!("icc_rpr_el1") as u8,
    }
}

/// Sends SGI `sgi` to the CPU with affinity `mpidr`.
pub fn send_sgi(sgi: u32, mpidr: u64) {
    if let Some(v2) = v2() {
        match v2.target(mpidr) {
            Some(target) => v2.distributor.send_sgi(sgi, target, false),
            None => log::error!("SGI to MPIDR {mpidr:#x}, which is not in the DTB"),
        }
        return;
    }
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
/// (packed: PMR [7:0], highest pending INTID [31:8], the Group 1 active
/// priorities, `ICC_AP1R0_EL1` or `GICC_APR0`, [63:32]).
pub fn snapshot() -> u64 {
    let (pmr, pending, active) = match v2() {
        Some(v2) => {
            (u64::from(v2.cpu.pmr()), u64::from(v2.cpu.highest_pending()), u64::from(v2.cpu.active_priorities()))
        }
        None => (
            sysreg_read!("icc_pmr_el1") & ICC_PMR_PRIORITY_MASK,
            sysreg_read!("icc_hppir1_el1") & ICC_IAR_INTID_MASK,
            sysreg_read!("icc_ap1r0_el1") & u64::from(u32::MAX),
        ),
    };
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
