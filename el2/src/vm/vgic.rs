//! The guest's interrupt controller: the GICv3 virtual CPU interface driven
//! from the model in `platform::vgic`, the emulated distributor and
//! redistributors on the MMIO bus, trapped SGIs, and the physical
//! interrupts forwarded to the guest.
//!
//! The model is the truth; the list registers cache it while the vCPU
//! runs. Every return to the guest calls [`sync`], which folds the list
//! registers back into the model and refills them with the most urgent
//! interrupts, but only when the guest has ended one of them or someone
//! changed this vCPU's interrupts (a per-CPU flag), so a trap with no
//! interrupt traffic costs two loads and a register read. Another CPU that makes an interrupt
//! pending for this vCPU sets the flag and sends [`gic::SGI_KICK`].
//!
//! Forwarded physical interrupts (the guest's timers' PPIs, its devices'
//! SPIs) are acknowledged and priority-dropped at EL2 but left active, and
//! presented with the list register's HW bit: the guest's own EOI then
//! deactivates the physical interrupt. A level-triggered source therefore
//! cannot fire again before the guest has handled it, which is what keeps
//! the virtual timer from storming without masking it.
//!
//! Each VM has its own model ([`crate::vm::Vm::vgic`]), with its own vCPUs
//! and the SPIs it owns: an SGI reaches only vCPUs of the sender's VM, and
//! a physical SPI goes only to the VM that owns it.
//!
//! When a vCPU leaves its CPU ([`put_vcpu`]) its list registers are folded
//! back into the model and the rest of its virtual CPU interface
//! (`ICH_VMCR_EL2`, the active-priority registers) is saved in a
//! [`CpuInterface`]; [`load_vcpu`] puts that back wherever it runs next,
//! and the next return to the guest refills the list registers. The
//! physical timer interrupts it left active on the CPU are deactivated on
//! the way out: the next vCPU's timers use the same PPIs.
//!
//! # On a GICv2
//!
//! A host with a GICv2 (and its virtualisation extensions) gives its
//! guests a GICv2: the same model configured as a GICv2 distributor
//! (trapped and emulated as above), and, as the guest's CPU interface, the
//! hardware's virtual CPU interface frame (`GICV`) mapped in stage 2 where
//! the guest's DT puts its `GICC`. The list registers, the empty-register
//! status, the control, `VMCR` and active-priority registers are then the
//! memory-mapped `GICH` frame of the CPU, not `ICH_*_EL2` system registers
//! ([`hyp_interface`] tells which); a GICv2 list register is converted to and from the
//! model's GICv3 layout at the boundary, so the model's flush and fold are
//! the same code for both. SGIs go through the emulated `GICD_SGIR`, not
//! a trapped system register.
//!
//! One difference is deliberate: on a GICv2 a forwarded physical interrupt
//! is not presented with the `HW` bit but as a plain virtual interrupt that
//! asks for a maintenance interrupt when the guest ends it (`EOI`), and EL2
//! deactivates the physical interrupt then ([`LrCopy::load`]). QEMU's
//! GICv2, deactivating through the `HW` bit, does not look at the physical
//! interrupt again, so a level still high (a guest timer behind its
//! deadlines) was not signalled until the next access to the GIC by any
//! CPU: one timer interrupt per hypervisor tick, and `virq-no-loss` failed
//! on two loaded cores. It costs one exit per forwarded interrupt.

use crate::irq::gic;
use aarch64_cpu::registers::{ReadWriteable, Readable, Writeable, ICH_HCR_EL2, ICH_VTR_EL2};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, Ordering};
use platform::board::{GicVersion, MemRegion};
use platform::gicv2;
use platform::mmio::{MmioDevice, MmioFault};
use platform::vgic::{ListRegs, Lr, VGic, GICD_SIZE, GICR_STRIDE, MAX_LRS};

/// The guests' timers' PPIs, forwarded with the HW bit (virtual,
/// physical): the same on every CPU, whichever VM it runs.
static FORWARDED_PPIS: [AtomicU32; 2] = [const { AtomicU32::new(u32::MAX) }; 2];

/// The virtual-interface maintenance PPI.
static MAINTENANCE_PPI: AtomicU32 = AtomicU32::new(u32::MAX);

/// Where the guest finds its GIC, and how many SPIs it has.
#[derive(Clone, Copy)]
pub struct GuestGic {
    /// The host's: a guest gets the version of GIC its host has.
    pub version: GicVersion,
    /// The emulated distributor.
    pub distributor: MemRegion,
    /// The per-CPU frames: a GICv3's redistributors (emulated, one frame
    /// pair per vCPU), a GICv2's CPU interface (the host's `GICV` frame,
    /// mapped).
    pub per_cpu: MemRegion,
    pub spis: usize,
}

/// Why a VM cannot have a GIC on this host.
#[derive(Clone, Copy, Debug)]
pub enum GuestGicError {
    /// A GICv2 without the virtualisation extensions' frames in the DTB.
    NoVirtualInterface,
    /// More vCPUs than a GICv2 has CPU interfaces.
    TooManyVcpus(usize),
}

impl core::fmt::Display for GuestGicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoVirtualInterface => write!(
                f,
                "the GICv2 has no virtual interface in the DTB (its node needs the GICH and GICV frames as 3rd and 4th reg entries)"
            ),
            Self::TooManyVcpus(n) => write!(f, "{n} vCPUs, but a GICv2 guest can have 8 at most"),
        }
    }
}

/// Boot CPU, before any CPU brings up its interrupts: which physical PPIs
/// belong to the guest (its timers) and which is the maintenance interrupt.
pub fn note_interrupts(board: &platform::board::Board) {
    let timer = &board.timer;
    let [virt, phys] = &FORWARDED_PPIS;
    virt.store(timer.virt.intid, Ordering::Relaxed);
    phys.store(timer.nonsecure_phys.intid, Ordering::Relaxed);
    if let Some(m) = board.gic.maintenance_irq {
        MAINTENANCE_PPI.store(m.intid, Ordering::Relaxed);
    }
}

/// A model for a VM of `vcpus` vCPUs (affinities 0..n) whose highest SPI
/// is `highest_spi`, and where its guest finds the frames: at the host
/// GIC's addresses, which stage 2 leaves unmapped.
///
/// The VM's distributor has as many SPIs as its devices need, in whole
/// banks of 32 (`GICD_TYPER.ITLinesNumber` says so to the guest), not the
/// host's hundreds: every list-register fill looks at each bank, and each
/// bank costs instructions on every interrupt.
///
/// On a GICv2 the guest's CPU interface is at the host's `GICC` address,
/// where stage 2 maps the `GICV` frame ([`map_cpu_interface`]).
pub fn model(
    board: &platform::board::Board,
    vcpus: &[crate::vm::Vcpu],
    highest_spi: Option<u32>,
) -> Result<(Box<VGic>, GuestGic), GuestGicError> {
    let host = gic::with(|g| g.spis()).unwrap_or(0);
    let needed = highest_spi.map_or(0, |intid| (intid + 1).saturating_sub(platform::vgic::SPI_BASE) as usize);
    let spis = needed.next_multiple_of(SPIS_PER_BANK).max(SPIS_PER_BANK).min(host);
    // Configured where it lives: no 7 KiB temporary on the stack.
    let mut vgic = Box::new(VGic::new());
    let host_gic = &board.gic;
    let version = host_gic.version;
    let (distributor, per_cpu) = match version {
        GicVersion::V3 => {
            let mpidrs: Vec<u64> = vcpus.iter().map(|v| v.mpidr).collect();
            vgic.configure(&mpidrs, spis);
            let redist_base = host_gic.redistributors.first().map_or(0, |r| r.base);
            (GICD_SIZE, MemRegion::new(redist_base, GICR_STRIDE * vcpus.len() as u64))
        }
        GicVersion::V2 => {
            let cpu_interface = host_gic.cpu_interface.filter(|_| host_gic.vcpu_interface.is_some());
            let cpu_interface = cpu_interface.ok_or(GuestGicError::NoVirtualInterface)?;
            if hyp_interface().is_none() {
                return Err(GuestGicError::NoVirtualInterface);
            }
            if vcpus.len() > platform::vgic::MAX_VCPUS_V2 {
                return Err(GuestGicError::TooManyVcpus(vcpus.len()));
            }
            vgic.configure_v2(vcpus.len(), spis);
            (platform::vgic::GICD_V2_SIZE, MemRegion::new(cpu_interface.base, gicv2::gicc::SIZE))
        }
    };
    let distributor = MemRegion::new(host_gic.distributor.base, distributor);
    Ok((vgic, GuestGic { version, distributor, per_cpu, spis }))
}

/// A GICv2 guest's CPU interface: stage 2 maps the host's `GICV` frame
/// where the guest's DT puts its `GICC` (nothing to do on a GICv3).
pub fn map_cpu_interface(
    board: &platform::board::Board,
    gic: &GuestGic,
    stage2: &mut crate::mm::stage2::Stage2,
) -> Result<(), crate::mm::stage2::Stage2Error> {
    match (gic.version, board.gic.vcpu_interface) {
        (GicVersion::V2, Some(gicv)) => {
            // Laid out as the CPU interface is: 8 KiB, maybe 60 KiB in.
            let offset = gic::v2().map_or(0, |v2| v2.cpu_offset);
            stage2.map_device(gic.per_cpu.base, gicv.base + offset, gic.per_cpu.size)
        }
        _ => Ok(()),
    }
}

/// SPIs per register bank of the distributor.
const SPIS_PER_BANK: usize = 32;

/// A restarting VM's interrupt controller goes back to its reset state, in
/// place (the model is 7 KiB: no copy of it on a hypervisor stack).
pub fn reset_model(vm: &crate::vm::Vm) {
    let mpidrs: Vec<u64> = vm.vcpus.iter().map(|v| v.mpidr).collect();
    match vm.gic.version {
        GicVersion::V3 => vm.vgic.lock().configure(&mpidrs, vm.gic.spis),
        GicVersion::V2 => vm.vgic.lock().configure_v2(mpidrs.len(), vm.gic.spis),
    }
    reconcile_spis(vm);
}

/// Puts VM `vm`'s emulated distributor, and a GICv3's redistributors, on
/// its bus.
pub fn add_frames(vm: &crate::vm::Vm) -> Result<(), platform::mmio::RegisterError> {
    let mut bus = vm.bus.lock();
    let (d, r) = (vm.gic.distributor, vm.gic.per_cpu);
    bus.register(d.base, d.size, Box::leak(Box::new(Distributor { vm: vm.index })))?;
    if vm.gic.version == GicVersion::V3 {
        bus.register(r.base, r.size, Box::leak(Box::new(Redistributors { vm: vm.index })))?;
    }
    Ok(())
}

/// Makes each of `vm`'s passthrough SPIs' physical state what its guest
/// asked of the virtual one: enabled where the guest enabled it, routed to
/// the CPU of the vCPU it targets.
pub fn reconcile_spis(vm: &crate::vm::Vm) {
    for &intid in &vm.spis {
        let state = vm.vgic.lock().spi_state(intid);
        let (enable, target) = match state {
            Some(s) => (s.enabled && s.target.is_some(), s.target.unwrap_or(0)),
            None => (false, 0),
        };
        let slot = vm.vcpus.get(target).map_or(0, |v| v.cpu());
        gic::with(|g| g.route_spi(intid, crate::boot::smp::mpidr_of(slot), gic::PRIORITY_REGULAR, enable));
    }
}

/// The physical private interrupts every CPU takes for its guest, with
/// their priorities (for `crate::irq::set_routes`).
pub fn private_interrupts() -> impl Iterator<Item = (u32, u8)> {
    FORWARDED_PPIS
        .iter()
        .chain([&MAINTENANCE_PPI])
        .map(|p| p.load(Ordering::Relaxed))
        .filter(|&p| p != u32::MAX)
        .map(|p| (p, gic::PRIORITY_REGULAR))
}

/// Flags the vCPUs of `vm` in `mask` (bit = vCPU index) and kicks those
/// running on other CPUs, so that each fills its list registers again.
pub fn kick_vcpus(vm: &crate::vm::Vm, mask: u64) {
    // Only the vCPUs named (usually one): this is on every SGI's path.
    let mut rest = mask;
    while rest != 0 {
        let index = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        let Some(vcpu) = vm.vcpus.get(index) else { break };
        crate::vm::sched::interrupt_for(vm, vcpu);
    }
}

/// This CPU's list registers, copied into memory so that the model can
/// fold and fill them under its lock without a single GIC register access
/// there: [`LrCopy::load`] reads the ones in use before the lock is taken,
/// [`LrCopy::store`] writes the ones the model changed after it is
/// dropped. Only this CPU, at EL2, touches its list registers, so nothing
/// changes them in between.
///
/// Why it matters: under emulation a GIC system-register access can stall
/// (QEMU serialises them on a global lock), and a vCPU spinning for the
/// model's lock burns the host CPU its holder needs. Measured with the
/// accesses inside the lock: up to 60 ms spent waiting for it at once, and
/// 3 to 4 s in all over one 4-vCPU guest-stub run on a loaded host.
struct LrCopy {
    count: usize,
    /// The list registers' values; entry n means something only when bit
    /// n of `valid` is set (the others read as empty, which is what the
    /// registers not loaded hold). Left uninitialised otherwise: clearing
    /// 128 bytes on every fill was a `memset` call, and the copy returned
    /// from `load` a `memcpy`, together some 150 instructions per fill.
    values: [MaybeUninit<u64>; MAX_LRS],
    valid: u16,
    /// Which list registers the model wrote (bit n = `ICH_LR<n>_EL2`).
    written: u16,
}

impl LrCopy {
    /// Reads the list registers in `used` (bit n = `ICH_LR<n>_EL2`); the
    /// others read as empty, which is what they hold. Fills `self` where
    /// it is (a copy returned by value was a `memcpy` on every fill).
    #[inline(always)]
    fn load(&mut self, used: u64) {
        *self = Self { count: list_register_count(), values: [MaybeUninit::uninit(); MAX_LRS], valid: 0, written: 0 };
        let gich = hyp_interface();
        for index in 0..self.count {
            if used & (1 << index) != 0 {
                if let Some(value) = self.values.get_mut(index) {
                    let lr = value.write(read_lr(gich, index));
                    self.valid |= 1 << index;
                    // On a GICv2 a hardware interrupt the guest has ended
                    // is still active at the distributor (see the module
                    // doc): deactivated here, where every path that takes
                    // the entry back (a refill, a vCPU leaving) passes.
                    if gich.is_some() && Lr(*lr).ended_hw() {
                        gic::deactivate(gic::Acked::interrupt(Lr(*lr).pintid()));
                    }
                }
            }
        }
    }

    /// No list registers yet ([`load`](Self::load) reads them).
    #[inline(always)]
    const fn new() -> Self {
        Self { count: 0, values: [MaybeUninit::uninit(); MAX_LRS], valid: 0, written: 0 }
    }

    /// Writes back what the model changed.
    fn store(&self) {
        let gich = hyp_interface();
        let mut rest = self.written;
        while rest != 0 {
            let index = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            write_lr(gich, index, self.read(index));
        }
    }
}

/// How many list registers the CPU has (`ICH_VTR_EL2.ListRegs` + 1, the
/// same on every CPU), read once: this is on every interrupt's path.
fn list_register_count() -> usize {
    static COUNT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    match COUNT.load(Ordering::Relaxed) {
        0 => {
            let count = match hyp_interface() {
                Some(gich) => gich.list_registers(),
                None => ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1,
            };
            let count = count.min(MAX_LRS);
            COUNT.store(count, Ordering::Relaxed);
            count
        }
        count => count,
    }
}

/// A GICv2's virtual interface control frame (`GICH`) of this CPU, on a
/// GICv2 host: where the list-register and control accesses below go
/// instead of `ICH_*_EL2`.
#[inline]
fn hyp_interface() -> Option<gicv2::HypInterface> {
    gic::v2().and_then(|v2| v2.hyp)
}

/// List register `index`, in the model's (GICv3) layout, from `GICH` on a
/// GICv2 host (the caller looked it up once for all of them).
fn read_lr(gich: Option<gicv2::HypInterface>, index: usize) -> u64 {
    match gich {
        Some(gich) => Lr::from_v2_ended_by_el2(gich.read_lr(index)).0,
        None => read_ich_lr(index),
    }
}

fn write_lr(gich: Option<gicv2::HypInterface>, index: usize, value: u64) {
    match gich {
        Some(gich) => gich.write_lr(index, Lr(value).to_v2_ended_by_el2()),
        None => write_ich_lr(index, value),
    }
}

/// `read_ich_lr` and `write_ich_lr` over the sixteen `ICH_LR<n>_EL2`
/// registers.
macro_rules! list_registers {
    ($($index:literal => $reg:ident,)*) => {
        fn read_ich_lr(index: usize) -> u64 {
            use aarch64_cpu::registers::*;
            match index {
                $($index => $reg.get(),)*
                _ => 0,
            }
        }

        fn write_ich_lr(index: usize, value: u64) {
            use aarch64_cpu::registers::*;
            match index {
                $($index => $reg.set(value),)*
                _ => {}
            }
        }
    };
}

list_registers! {
    0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2,
    4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2,
    8 => ICH_LR8_EL2, 9 => ICH_LR9_EL2, 10 => ICH_LR10_EL2, 11 => ICH_LR11_EL2,
    12 => ICH_LR12_EL2, 13 => ICH_LR13_EL2, 14 => ICH_LR14_EL2, 15 => ICH_LR15_EL2,
}

impl ListRegs for LrCopy {
    fn count(&self) -> usize {
        self.count
    }

    fn read(&self, index: usize) -> u64 {
        match self.values.get(index) {
            // SAFETY: bit `index` of `valid` is set only once the entry
            // was written.
            Some(value) if self.valid & (1 << index) != 0 => unsafe { value.assume_init() },
            _ => 0,
        }
    }

    fn write(&mut self, index: usize, value: u64) {
        // A fill rewrites every list register, most often with what it
        // holds already (empty): only changes reach the hardware.
        if self.read(index) == value {
            return;
        }
        if let Some(slot) = self.values.get_mut(index).filter(|_| index < self.count) {
            slot.write(value);
            self.valid |= 1 << index;
            self.written |= 1 << index;
        }
    }
}

/// `ICH_ELRSR_EL2` (`GICH_ELRSR0/1`): bit n set when list register n
/// holds no interrupt.
fn empty_list_registers() -> u64 {
    match hyp_interface() {
        Some(gich) => gich.empty_list_registers(list_register_count()),
        // SAFETY: reading a virtual-interface status register has no side
        // effects.
        None => unsafe { platform::mrs!("ich_elrsr_el2") },
    }
}

/// The virtual interface's control (`ICH_HCR_EL2`, `GICH_HCR`): on, and
/// the underflow maintenance interrupt on or off.
fn set_interface_control(underflow: bool) {
    match hyp_interface() {
        Some(gich) => gich.set_control(gicv2::gich::HCR_EN | if underflow { gicv2::gich::HCR_UIE } else { 0 }),
        None => ICH_HCR_EL2
            .write(ICH_HCR_EL2::En::SET + if underflow { ICH_HCR_EL2::UIE::SET } else { ICH_HCR_EL2::UIE::CLEAR }),
    }
}

/// Before every return to the guest on this CPU: brings the list
/// registers and the model together, if anything changed. Nothing has
/// when nobody flagged this vCPU and every list register the last fill
/// used still holds its interrupt (`ICH_ELRSR_EL2`: the guest has ended
/// none): then the model's lock is not taken at all, which keeps the many
/// exits of a busy SMP guest from queueing on it.
#[inline]
pub fn sync(vm: &crate::vm::Vm, current: &crate::vm::Vcpu) {
    let used_mask = u64::from(current.lrs_used.load(Ordering::Relaxed));
    if !current.attention.load(Ordering::Acquire) && used_mask & empty_list_registers() == 0 {
        return;
    }
    current.attention.store(false, Ordering::Release);
    refill(vm, current, used_mask);
}

/// [`sync`]'s work when there is some, out of line so that an exit with no
/// interrupt traffic does not pay for its frame.
#[inline(never)]
fn refill(vm: &crate::vm::Vm, current: &crate::vm::Vcpu, used_mask: u64) {
    let vcpu = current.index;
    let mut ppis = current.hw_ppis_pending.swap(0, Ordering::AcqRel);
    let mut lrs = LrCopy::new();
    lrs.load(used_mask);
    let mut vgic = vm.vgic.lock();
    while ppis != 0 {
        let intid = ppis.trailing_zeros();
        ppis &= ppis - 1;
        vgic.set_pending(vcpu, intid, true);
    }
    let _ = vgic.fold(vcpu, &mut lrs);
    let stale = withdraw_stale_timer_interrupts(&mut vgic, vcpu);
    // Folded just above: fill without folding again.
    let flush = vgic.fill(vcpu, &mut lrs);
    drop(vgic);
    lrs.store();
    for intid in stale.into_iter().flatten() {
        gic::deactivate(gic::Acked::interrupt(intid));
    }
    // Flush fills list registers from the first one up.
    let mask = 1u32.checked_shl(flush.used as u32).map_or(u32::MAX, |m| m - 1);
    current.lrs_used.store(mask as u16, Ordering::Relaxed);
    // Come back when the guest has consumed what we gave it: underflow
    // (at most one list register valid) if more is waiting.
    set_interface_control(flush.overflow);
}

/// `CNTx_CTL_EL0`: ENABLE, IMASK, ISTATUS.
const CNT_CTL_ENABLE: u64 = 1 << 0;
const CNT_CTL_IMASK: u64 = 1 << 1;
const CNT_CTL_ISTATUS: u64 = 1 << 2;

/// Whether the guest timer behind forwarded PPI `intid` asserts its
/// output now.
fn timer_fires(intid: u32) -> bool {
    let [virt, phys] = &FORWARDED_PPIS;
    let ctl = if intid == virt.load(Ordering::Relaxed) {
        crate::arch::sysregs::read(crate::arch::sysregs::GuestReg::CntvCtl)
    } else if intid == phys.load(Ordering::Relaxed) {
        crate::arch::sysregs::read(crate::arch::sysregs::GuestReg::CntpCtl)
    } else {
        return true;
    };
    ctl & (CNT_CTL_ENABLE | CNT_CTL_IMASK | CNT_CTL_ISTATUS) == CNT_CTL_ENABLE | CNT_CTL_ISTATUS
}

/// A timer interrupt is a level: once the guest has disabled, masked or
/// re-armed the timer, a pending copy that EL2 took earlier is stale, and
/// hardware would have withdrawn it. Drops such a pending state (not an
/// active one: the guest is handling that) and returns the physical
/// interrupts the caller must deactivate (after dropping the model's lock),
/// which would otherwise stay active with nobody to end them.
fn withdraw_stale_timer_interrupts(vgic: &mut VGic, vcpu: usize) -> [Option<u32>; 2] {
    FORWARDED_PPIS.each_ref().map(|ppi| {
        let intid = ppi.load(Ordering::Relaxed);
        let stale = vgic.private_pending_only(vcpu, intid) && !timer_fires(intid);
        if stale {
            vgic.withdraw_private(vcpu, intid);
        }
        stale.then_some(intid)
    })
}

/// Whether the running `vcpu` has an interrupt waiting: in its list
/// registers, or flagged for the next fill.
pub fn has_pending_here(vcpu: &crate::vm::Vcpu) -> bool {
    let flagged = vcpu.attention.load(Ordering::Acquire) || vcpu.hw_ppis_pending.load(Ordering::Acquire) != 0;
    let used = u64::from(vcpu.lrs_used.load(Ordering::Relaxed));
    flagged || used & !empty_list_registers() != 0
}

/// Whether a vCPU that is not running has an interrupt to take or finish
/// in its VM's model.
pub fn has_work(vm: &crate::vm::Vm, vcpu: &crate::vm::Vcpu) -> bool {
    vcpu.hw_ppis_pending.load(Ordering::Acquire) != 0 || vm.vgic.lock().has_work(vcpu.index)
}

/// A trapped guest `WFI` of a vCPU with nothing pending, on a CPU nobody
/// else waits for: the physical CPU waits at EL2 for a physical interrupt
/// (a kick, a tick, a forwarded one), which then comes in as soon as the
/// guest resumes. Letting the guest's `WFI` run natively would do the
/// same on hardware, but under emulation an idle vCPU then spins, taking
/// host time from busy ones.
///
/// The trap runs with regular interrupts masked by priority (rule 1 of
/// `crate::irq::gic`), and an interrupt the priority mask holds back does not
/// end a `WFI`: the wait opens the mask and masks `PSTATE.I` instead, so
/// that a kick wakes the CPU at once but is taken only after the trap
/// (on the way back to the guest). Waiting under the trap's mask left
/// every kick to an idle vCPU, a guest IPI among them, for the next
/// PNMI-priority tick: up to 10 ms per IPI (measured: a Linux boot with
/// 4 vCPUs executed 2.6 times the instructions of one with 1).
pub fn wait_in_place() {
    crate::irq::mask_irq();
    let trap_mask = gic::pmr();
    gic::set_pmr(gic::PMR_OPEN);
    aarch64_cpu::asm::wfi();
    gic::set_pmr(trap_mask);
    crate::irq::unmask_irq();
}

/// The rest of a vCPU's virtual CPU interface, saved while it is off its
/// CPU.
#[derive(Clone, Copy, Debug)]
pub struct CpuInterface {
    vmcr: u64,
    ap0r: [u64; 4],
    ap1r: [u64; 4],
}

impl CpuInterface {
    /// Out of reset: nothing active, groups disabled.
    pub const RESET: Self = Self { vmcr: 0, ap0r: [0; 4], ap1r: [0; 4] };
}

/// The vCPU `vcpu` of `vm` leaves this CPU: what its list registers hold
/// goes back to the model (which empties them), its interface state is
/// returned for safekeeping, and the CPU's virtual interface presents
/// nothing. The guest timers' physical interrupts it may have left active
/// go inactive (its timers are off by now; the model keeps their virtual
/// state).
pub fn put_vcpu(vm: &crate::vm::Vm, vcpu: &crate::vm::Vcpu) -> CpuInterface {
    let used = u64::from(vcpu.lrs_used.swap(0, Ordering::Relaxed));
    let mut lrs = LrCopy::new();
    lrs.load(used);
    let _ = vm.vgic.lock().fold(vcpu.index, &mut lrs);
    lrs.store();
    if let Some(gich) = hyp_interface() {
        // One active-priority register for both groups.
        let saved = CpuInterface {
            vmcr: u64::from(gich.vmcr()),
            ap1r: [u64::from(gich.apr()), 0, 0, 0],
            ..CpuInterface::RESET
        };
        gich.set_apr(0);
        gich.set_control(0);
        deactivate_forwarded_ppis();
        return saved;
    }
    let mut saved = CpuInterface { vmcr: aarch64_cpu::registers::ICH_VMCR_EL2.get(), ..CpuInterface::RESET };
    for ap in 0..active_priority_registers() {
        if let (Some(a0), Some(a1)) = (saved.ap0r.get_mut(ap), saved.ap1r.get_mut(ap)) {
            (*a0, *a1) = (read_apr(0, ap), read_apr(1, ap));
        }
        write_apr(0, ap, 0);
        write_apr(1, ap, 0);
    }
    ICH_HCR_EL2.set(0);
    deactivate_forwarded_ppis();
    saved
}

/// The guest timers' physical interrupts go inactive on this CPU.
fn deactivate_forwarded_ppis() {
    for ppi in &FORWARDED_PPIS {
        let intid = ppi.load(Ordering::Relaxed);
        if intid != u32::MAX {
            gic::deactivate(gic::Acked::interrupt(intid));
        }
    }
}

/// A vCPU's interface state goes into this CPU's; its list registers are
/// filled on the way into the guest (its `attention` is set).
pub fn load_vcpu(saved: &CpuInterface) {
    if let Some(gich) = hyp_interface() {
        gich.set_vmcr(saved.vmcr as u32);
        gich.set_apr(saved.ap1r[0] as u32);
        set_interface_control(false);
        return;
    }
    aarch64_cpu::registers::ICH_VMCR_EL2.set(saved.vmcr);
    for ap in 0..active_priority_registers() {
        write_apr(0, ap, saved.ap0r.get(ap).copied().unwrap_or(0));
        write_apr(1, ap, saved.ap1r.get(ap).copied().unwrap_or(0));
    }
    ICH_HCR_EL2.write(ICH_HCR_EL2::En::SET);
}

/// How many `ICH_AP1R<n>_EL2` exist: one per 32 preemption levels
/// (`ICH_VTR_EL2.PREbits` + 1 bits of preemption: 5 → 1, 6 → 2, 7 → 4).
fn active_priority_registers() -> usize {
    let preemption_bits = ICH_VTR_EL2.read(ICH_VTR_EL2::PREbits) + 1;
    1 << preemption_bits.saturating_sub(5).min(2)
}

/// `ICH_AP<group>R<index>_EL2`.
fn read_apr(group: u8, index: usize) -> u64 {
    use aarch64_cpu::registers::*;
    match (group, index) {
        (0, 0) => ICH_AP0R0_EL2.get(),
        (0, 1) => ICH_AP0R1_EL2.get(),
        (0, 2) => ICH_AP0R2_EL2.get(),
        (0, _) => ICH_AP0R3_EL2.get(),
        (_, 0) => ICH_AP1R0_EL2.get(),
        (_, 1) => ICH_AP1R1_EL2.get(),
        (_, 2) => ICH_AP1R2_EL2.get(),
        (_, _) => ICH_AP1R3_EL2.get(),
    }
}

fn write_apr(group: u8, index: usize, value: u64) {
    use aarch64_cpu::registers::*;
    match (group, index) {
        (0, 0) => ICH_AP0R0_EL2.set(value),
        (0, 1) => ICH_AP0R1_EL2.set(value),
        (0, 2) => ICH_AP0R2_EL2.set(value),
        (0, _) => ICH_AP0R3_EL2.set(value),
        (_, 0) => ICH_AP1R0_EL2.set(value),
        (_, 1) => ICH_AP1R1_EL2.set(value),
        (_, 2) => ICH_AP1R2_EL2.set(value),
        (_, _) => ICH_AP1R3_EL2.set(value),
    }
}

/// A physical interrupt that is not the hypervisor's own; returns whether
/// it went to the guest (and so stays active until the guest ends it).
pub fn physical_interrupt(intid: u32) -> bool {
    if intid == MAINTENANCE_PPI.load(Ordering::Relaxed) {
        if let Some((_, vcpu)) = crate::vm::current() {
            vcpu.attention.store(true, Ordering::Release);
        }
        // Quiet until the next fill asks again.
        match hyp_interface() {
            Some(gich) => gich.set_control(gich.control() & !gicv2::gich::HCR_UIE),
            None => ICH_HCR_EL2.modify(ICH_HCR_EL2::UIE::CLEAR),
        }
        return false;
    }
    let forwarded_ppi = FORWARDED_PPIS.iter().any(|p| p.load(Ordering::Relaxed) == intid);
    if forwarded_ppi {
        let Some((_, vcpu)) = crate::vm::current() else {
            log::warn!("guest timer interrupt {intid} on a CPU that runs no vCPU: dropped");
            return false;
        };
        // No lock here: [`sync`], on this CPU before the guest runs again,
        // moves it into the model. Timer interrupts are the most frequent
        // exits; this keeps them off the model's lock once.
        vcpu.hw_ppis_pending.fetch_or(1 << intid, Ordering::AcqRel);
        vcpu.attention.store(true, Ordering::Release);
        return true;
    }
    if let Some(vm) = crate::vm::all().iter().find(|vm| vm.spis.contains(&intid)) {
        let mask = vm.vgic.lock().set_pending(0, intid, true);
        kick_vcpus(vm, mask);
        return true;
    }
    log::warn!("physical interrupt {intid} has no owner: ignored");
    false
}

/// A trapped guest write of `ICC_SGI1R_EL1` (or `ICC_ASGI1R_EL1`, which
/// means the same with one security state).
pub fn send_sgi(value: u64) {
    let Some((vm, vcpu)) = crate::vm::current() else { return };
    let targets = vm.vgic.lock().send_sgi(vcpu.index, value);
    kick_vcpus(vm, targets);
}

/// After a guest's write to its GIC: the list registers of the vCPU that
/// wrote are brought back to the model and filled again before it runs,
/// so that what the write changed (an interrupt disabled, a pending state
/// cleared, a priority or group changed) holds at once for what they
/// held. Without it, an interrupt a guest disabled while it sat pending in
/// a list register was still taken afterwards (seen: a virtual timer
/// interrupt arriving in a later check, after the guest had disabled both
/// its timer and its PPI).
fn refill_here() {
    if let Some((_, vcpu)) = crate::vm::current() {
        vcpu.attention.store(true, Ordering::Release);
    }
}

/// The VM a frame belongs to; the frames are registered only on their
/// VM's bus, so this is the caller's VM.
fn owner(vm: usize) -> Result<&'static crate::vm::Vm, MmioFault> {
    crate::vm::get(vm).ok_or(MmioFault::DeviceError { offset: 0 })
}

/// A VM's emulated distributor.
struct Distributor {
    vm: usize,
}

/// The vCPU whose access trapped (an MMIO access always comes from the
/// running vCPU): a GICv2 distributor banks registers per accessing CPU.
/// With none, an index no vCPU has, which such a distributor ignores.
fn accessing_vcpu() -> usize {
    crate::vm::current().map_or(usize::MAX, |(_, vcpu)| vcpu.index)
}

impl MmioDevice for Distributor {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
        Ok(owner(self.vm)?.vgic.lock().dist_read(accessing_vcpu(), offset, size))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        let vm = owner(self.vm)?;
        let effects = vm.vgic.lock().dist_write(accessing_vcpu(), offset, size, value);
        kick_vcpus(vm, effects.kick);
        refill_here();
        reconcile_spis(vm);
        Ok(())
    }
}

/// A VM's emulated redistributors, one frame pair per vCPU.
struct Redistributors {
    vm: usize,
}

impl MmioDevice for Redistributors {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
        Ok(owner(self.vm)?.vgic.lock().redist_read(offset, size))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        let vm = owner(self.vm)?;
        let effects = vm.vgic.lock().redist_write(offset, size, value);
        kick_vcpus(vm, effects.kick);
        refill_here();
        Ok(())
    }
}
