//! Virtual CPUs: each VM's vCPUs, pinned one per physical CPU (vCPU n of a
//! VM runs on the n-th CPU of its placement), switched on and off by the
//! guest through the virtual PSCI calls `CPU_ON`, `CPU_OFF` and
//! `AFFINITY_INFO`, which reach only the caller's own VM.
//!
//! A vCPU's guest-visible affinity is its index in its VM (Aff0 = n), what
//! `VMPIDR_EL2` shows the guest and its device tree lists, whatever
//! physical CPU it is pinned to. While it runs, its EL1 and EL0 registers
//! live in the CPU's own registers: a pinned vCPU never leaves its CPU, so
//! nothing else needs them there.
//!
//! A vCPU that is off leaves its physical CPU idling at EL2 (ticks and
//! mailbox still served); `CPU_ON` from another vCPU asks that CPU, through
//! its mailbox, to enter the guest at the given entry point. A vCPU asked
//! to stop (its VM powers off or restarts) stops at its next exit
//! ([`stop_if_asked`]).

use crate::vm::Vm;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use platform::arch::regs::{SCTLR_EL1_RES1, SPSR_DAIF, SPSR_M_EL1H};
use platform::arch::trap::TrapFrame;
use smccc::psci::{error, AffinityState};

const OFF: u8 = 0;
const ON_PENDING: u8 = 1;
const ON: u8 = 2;

/// One vCPU of a VM.
pub struct Vcpu {
    /// Its index in its VM.
    pub index: usize,
    /// The physical CPU (slot) it is pinned to.
    pub slot: usize,
    /// The affinity its guest sees.
    pub mpidr: u64,
    state: AtomicU8,
    /// Where `CPU_ON` asked it to start, and its `x0` there.
    entry: AtomicU64,
    context: AtomicU64,
    /// Set when its VM stops: it leaves the guest at its next exit.
    stop: AtomicBool,
    /// vGIC bookkeeping ([`crate::vm::vgic`]): its list registers hold
    /// something or its interrupts changed since they were last filled;
    /// which list registers the last fill used; forwarded PPIs taken but
    /// not yet in the model.
    pub(crate) attention: AtomicBool,
    pub(crate) lrs_used: AtomicU16,
    pub(crate) hw_ppis_pending: AtomicU32,
    /// The vector EL2 last sent it to with an injected abort, and how many
    /// aborts in a row it then took right there ([`Vcpu::abort_loop`]).
    last_vector: AtomicU64,
    vector_aborts: AtomicU32,
}

/// Aborts in a row at the vector the previous abort was delivered to after
/// which a vCPU is stuck for good: its exception vector cannot run, and on
/// bare metal the CPU would take the same exception forever.
pub const VECTOR_ABORT_LIMIT: u32 = 1000;

impl Vcpu {
    pub const fn new(index: usize, slot: usize) -> Self {
        Self {
            index,
            slot,
            mpidr: index as u64,
            state: AtomicU8::new(OFF),
            entry: AtomicU64::new(0),
            context: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            attention: AtomicBool::new(false),
            lrs_used: AtomicU16::new(0),
            hw_ppis_pending: AtomicU32::new(0),
            last_vector: AtomicU64::new(u64::MAX),
            vector_aborts: AtomicU32::new(0),
        }
    }

    /// An abort at `pc` is about to be given to this vCPU: whether it is
    /// the [`VECTOR_ABORT_LIMIT`]th in a row at the vector the previous one
    /// went to (the guest's exception handling itself faults).
    pub fn abort_loop(&self, pc: u64) -> bool {
        if pc != self.last_vector.load(Ordering::Relaxed) {
            self.vector_aborts.store(0, Ordering::Relaxed);
            return false;
        }
        let count = self.vector_aborts.load(Ordering::Relaxed) + 1;
        self.vector_aborts.store(count, Ordering::Relaxed);
        count >= VECTOR_ABORT_LIMIT
    }

    /// The abort went to the guest's vector at `vector`.
    pub fn abort_delivered(&self, vector: u64) {
        self.last_vector.store(vector, Ordering::Relaxed);
    }

    /// Whether it is on (its CPU runs the guest).
    pub fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) == ON
    }

    /// Whether it is on or about to be.
    pub fn is_on(&self) -> bool {
        self.state.load(Ordering::Acquire) != OFF
    }
}

/// What the layers above reset on this CPU when a vCPU enters it afresh
/// (the debug state EL2 may hold for the vCPU before it: `crate::traps::debug`).
static ON_ENTER: spin::Once<fn()> = spin::Once::new();

/// Registers [`ON_ENTER`]'s work, once.
pub fn on_enter(reset: fn()) {
    ON_ENTER.call_once(|| reset);
}

/// Asks the CPU `vcpu` is pinned to to start it at `entry` with `x0` =
/// `context` (from `OFF` only).
pub fn start(vcpu: &Vcpu, entry: u64, context: u64) -> Result<(), i32> {
    match vcpu.state.compare_exchange(OFF, ON_PENDING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(ON) => return Err(error::ALREADY_ON),
        Err(_) => return Err(error::ON_PENDING),
    }
    vcpu.stop.store(false, Ordering::Release);
    vcpu.entry.store(entry, Ordering::Release);
    vcpu.context.store(context, Ordering::Release);
    if vcpu.slot == crate::mm::prda::slot() && crate::mm::prda::running().is_none() {
        // This CPU is the one, and idle: its caller enters the guest itself.
        return Ok(());
    }
    crate::vm::cpus::request_vcpu_start(vcpu.slot);
    Ok(())
}

/// Enters the guest on this CPU as `vcpu` of `vm` at `entry` with `x0` =
/// `context`: a freshly reset EL1 (MMU off, interrupts masked) as PSCI
/// promises.
pub fn enter(vm: &'static Vm, vcpu: &'static Vcpu, entry: u64, context: u64) -> ! {
    crate::arch::cpu::init(vcpu.mpidr);
    let root = vm.stage2.lock().prepare_this_cpu();
    let mut waited = false;
    let grant = loop {
        match crate::mm::vmid::enter(vm.index, root) {
            Ok(grant) => break Ok(grant),
            // Every VMID is held by a running VM: wait for one to stop.
            Err(e @ platform::stage2::VmidError::Exhausted { .. }) => {
                if !waited {
                    log::info!("VM {}: vCPU {} waits for a VMID: {e}", vm.name, vcpu.index);
                    waited = true;
                }
                if vcpu.stop.load(Ordering::Acquire) {
                    vcpu.state.store(OFF, Ordering::Release);
                    idle_here()
                }
                crate::irq::wait_for_interrupt();
            }
            Err(e) => break Err(e),
        }
    };
    match grant {
        Ok(grant) => {
            if let Some(from) = grant.evicted.and_then(|owner| crate::vm::get(owner.0 as usize)) {
                log::info!(
                    "VM {}: VMID {} recycled from VM {}, which is not running (TLB entries purged; recycle {})",
                    vm.name,
                    grant.vmid.0,
                    from.name,
                    crate::mm::vmid::generation()
                );
            }
        }
        Err(e) => {
            log::error!("VM {}: vCPU {} not started: {e}", vm.name, vcpu.index);
            vcpu.state.store(OFF, Ordering::Release);
            idle_here()
        }
    }
    crate::arch::sysregs::write(crate::arch::sysregs::GuestReg::Sctlr, SCTLR_EL1_RES1);
    crate::vm::vgic::reset_vcpu(vm, vcpu);
    if let Some(hook) = ON_ENTER.get() {
        hook();
    }
    crate::irq::pnmi::vcpu_started();
    vcpu.state.store(ON, Ordering::Release);
    crate::vm::set_running(Some((vm, vcpu)));
    let mut frame = TrapFrame { elr: entry, spsr: SPSR_M_EL1H | SPSR_DAIF, ..Default::default() };
    frame.x[0] = context;
    crate::vm::vgic::sync(vm, vcpu);
    if vcpu.index == 0 {
        crate::vm::build::report_started(vm);
    }
    crate::irq::gic::set_pmr(crate::irq::gic::PMR_OPEN);
    // SAFETY: `entry` was checked to lie in the VM's RAM, which stage 2
    // maps; this CPU's traps, stage 2 and virtual interface are set up above.
    unsafe { crate::boot::entry::run(&frame) }
}

/// An idle CPU's mailbox said "start your vCPU".
pub fn start_requested(slot: usize) {
    let Some((vm, vcpu)) = crate::vm::pinned_to(slot) else { return };
    if vcpu.state.load(Ordering::Acquire) != ON_PENDING {
        return;
    }
    let entry = vcpu.entry.load(Ordering::Acquire);
    let context = vcpu.context.load(Ordering::Acquire);
    enter(vm, vcpu, entry, context)
}

/// PSCI `CPU_ON` from the guest: only its own VM's vCPUs.
pub fn cpu_on(target: u64, entry: u64, context: u64) -> Result<u64, i32> {
    let (vm, _) = crate::vm::current().ok_or(error::DENIED)?;
    let vcpu = vm.vcpu_by_mpidr(target).ok_or(error::INVALID_PARAMETERS)?;
    if !vm.owns_ram(entry, 4) || !entry.is_multiple_of(4) {
        return Err(error::INVALID_ADDRESS);
    }
    start(vcpu, entry, context)?;
    Ok(0)
}

/// PSCI `AFFINITY_INFO` from the guest (level 0 only, as PSCI 1.x allows).
pub fn affinity_info(target: u64, lowest_level: u64) -> Result<u64, i32> {
    if lowest_level != 0 {
        return Err(error::INVALID_PARAMETERS);
    }
    let (vm, _) = crate::vm::current().ok_or(error::DENIED)?;
    let vcpu = vm.vcpu_by_mpidr(target).ok_or(error::INVALID_PARAMETERS)?;
    let state = match vcpu.state.load(Ordering::Acquire) {
        ON => AffinityState::On,
        ON_PENDING => AffinityState::OnPending,
        _ => AffinityState::Off,
    };
    Ok(state as u64)
}

/// Asks every vCPU of `vm` but the caller's own to stop; they do at their
/// next exit (a kick makes one happen). Returns once none is on.
pub fn stop_others(vm: &Vm) {
    let me = crate::mm::prda::slot();
    for vcpu in vm.vcpus.iter().filter(|v| v.slot != me) {
        vcpu.stop.store(true, Ordering::Release);
        if vcpu.is_on() {
            crate::vm::cpus::kick(vcpu.slot);
        }
    }
    // Pending starts that never ran count as off too.
    for vcpu in vm.vcpus.iter().filter(|v| v.slot != me) {
        let _ = vcpu.state.compare_exchange(ON_PENDING, OFF, Ordering::AcqRel, Ordering::Acquire);
    }
    crate::vm::cpus::wait_interruptible(crate::vm::cpus::PEER_MS, || {
        vm.vcpus.iter().filter(|v| v.slot != me).all(|v| !v.is_on())
    });
}

/// On the way back to the guest: if `vcpu` (this CPU's) was asked to
/// stop, it stops (and does not return).
#[inline]
pub fn stop_if_asked(vcpu: &Vcpu) {
    if vcpu.stop.load(Ordering::Relaxed) {
        cpu_off()
    }
}

/// PSCI `CPU_OFF` from the guest (or a stop): this vCPU stops, its CPU
/// goes idle on a fresh stack (nothing of the trap that got us here is
/// used again).
pub fn cpu_off() -> ! {
    park_this();
    idle_here()
}

/// The vCPU this CPU runs stops: it is off, and the CPU holds nothing of
/// it any more (timers, list registers, VMID).
pub fn park_this() {
    if let Some((vm, vcpu)) = crate::vm::current() {
        crate::vm::set_running(None);
        // Its timers stop with it: their interrupts have nobody to go to now.
        crate::arch::sysregs::write(crate::arch::sysregs::GuestReg::CntvCtl, 0);
        crate::arch::sysregs::write(crate::arch::sysregs::GuestReg::CntpCtl, 0);
        crate::vm::vgic::park_vcpu(vm, vcpu);
        crate::mm::vmid::leave(vm.index);
        vcpu.state.store(OFF, Ordering::Release);
        log::debug!("VM {} vCPU {} off", vm.name, vcpu.index);
    }
}

extern "C" {
    fn platform_cpu_stack_top(index: usize) -> usize;
}

/// Leaves whatever this CPU was doing for its idle loop, on a fresh stack.
pub fn idle_here() -> ! {
    let slot = crate::mm::prda::slot();
    // SAFETY: the slot's stack top from the linker's table; leaving the
    // current frames for good is what going idle means, and `idle_entry`
    // never returns to them.
    unsafe {
        let top = platform_cpu_stack_top(slot);
        core::arch::asm!(
            "msr daifset, #2",
            "mov sp, {top}",
            "b {idle}",
            top = in(reg) top,
            idle = sym idle_entry,
            in("x0") slot,
            options(noreturn),
        )
    }
}

extern "C" fn idle_entry(slot: usize) -> ! {
    crate::irq::gic::set_pmr(crate::irq::gic::PMR_OPEN);
    crate::vm::cpus::secondary_idle(slot)
}
