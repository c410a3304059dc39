//! Virtual CPUs: each VM's vCPUs, their saved state, and their life cycle
//! under the guest's virtual PSCI (`CPU_ON`, `CPU_OFF`, `AFFINITY_INFO`,
//! which reach only the caller's own VM).
//!
//! A vCPU's guest-visible affinity is its index in its VM (Aff0 = n), what
//! `VMPIDR_EL2` shows the guest and its device tree lists, whichever
//! physical CPU it runs on. The scheduler ([`crate::vm::sched`]) decides
//! where and when it runs; this module moves its state in and out of a
//! CPU:
//!
//! - [`load`] puts a vCPU's saved state into this CPU (general registers
//!   into the trap frame the CPU returns through, system registers, timers,
//!   FP/SIMD, debug and PMU state through [`crate::arch::context`], the
//!   virtual GIC interface through [`crate::vm::vgic`], its VM's stage 2
//!   and VMID);
//! - [`put`] takes it out again and leaves the CPU holding nothing of it
//!   (its timers off, its list registers folded back into its VM's model,
//!   no VMID).
//!
//! Only the CPU that runs a vCPU, or the one that moved it to `Off` or
//! queued it, touches its saved state: its [`State`] says who owns it.
//!
//! TLBs: nothing is flushed on a switch. Each VM's entries are tagged with
//! its VMID (`crate::mm::vmid`), and a VMID taken from another VM is purged
//! once, when it is handed over.

use crate::arch::context::CpuState;
use crate::vm::Vm;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use platform::arch::regs::{SPSR_DAIF, SPSR_M_EL1H};
use platform::arch::trap::TrapFrame;
use smccc::psci::{error, AffinityState};
use spin::Mutex;

/// Where a vCPU is, and so who owns its saved state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not started, or stopped: nobody runs it.
    Off = 0,
    /// Being set up by `CPU_ON` (or its VM's start), about to be queued.
    Starting = 1,
    /// In the run queue of CPU [`Vcpu::cpu`].
    Runnable = 2,
    /// Loaded on CPU [`Vcpu::cpu`] (running, or waiting there in a `WFI`).
    Running = 3,
    /// Saved, waiting for an interrupt; CPU [`Vcpu::cpu`] watches its
    /// timers.
    Blocked = 4,
}

impl State {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Starting,
            2 => Self::Runnable,
            3 => Self::Running,
            4 => Self::Blocked,
            _ => Self::Off,
        }
    }
}

/// What a vCPU keeps while it is not on a CPU.
pub struct Saved {
    pub frame: TrapFrame,
    pub cpu: CpuState,
    pub gic: crate::vm::vgic::CpuInterface,
}

/// One vCPU of a VM.
pub struct Vcpu {
    /// Its index in its VM.
    pub index: usize,
    /// The affinity its guest sees.
    pub mpidr: u64,
    /// The physical CPUs it may run on (bit n = slot n).
    pub affinity: u64,
    state: AtomicU8,
    /// The CPU it runs on, is queued on, or last ran on.
    cpu: AtomicUsize,
    /// Set when its VM stops: it leaves the guest at its next exit.
    stop: AtomicBool,
    /// Its state while it is not on a CPU (on the heap with the `Vcpu`:
    /// about 2 KiB).
    saved: Mutex<Saved>,
    /// Its first run after a start is ahead (the reset hooks run then).
    fresh: AtomicBool,
    /// It has used the debug registers since its start: they are its own
    /// in the hardware while it runs, and a switch saves and loads them
    /// (`crate::arch::context`).
    debug_owned: AtomicBool,
    /// vGIC bookkeeping ([`crate::vm::vgic`]): its list registers hold
    /// something or its interrupts changed since they were last filled;
    /// which list registers the last fill used; forwarded PPIs taken but
    /// not yet in the model.
    pub(crate) attention: AtomicBool,
    pub(crate) lrs_used: AtomicU16,
    pub(crate) hw_ppis_pending: AtomicU32,
    /// The scheduler's bookkeeping ([`crate::vm::sched`]).
    pub(crate) sched: crate::vm::sched::VcpuSched,
    /// The vector EL2 last sent it to with an injected abort, and how many
    /// aborts in a row it then took right there ([`Vcpu::abort_loop`]).
    last_vector: AtomicU64,
    vector_aborts: AtomicU32,
    /// The forwarded access it waits for ([`crate::vm::forward`]).
    pub(crate) io: Mutex<Option<crate::vm::forward::Waiting>>,
    /// The stage-2 tree it runs in, when its VM emulates per-mode execute
    /// control (`platform::mbec::Tree::index`; [`crate::vm::integrity`]).
    tree: AtomicU8,
}

/// Aborts in a row at the vector the previous abort was delivered to after
/// which a vCPU is stuck for good: its exception vector cannot run, and on
/// bare metal the CPU would take the same exception forever.
pub const VECTOR_ABORT_LIMIT: u32 = 1000;

impl Vcpu {
    /// The stage-2 tree it runs in (emulated per-mode execute control).
    pub fn tree(&self) -> platform::mbec::Tree {
        let index = usize::from(self.tree.load(Ordering::Relaxed));
        platform::mbec::Tree::ALL.get(index).copied().unwrap_or(crate::vm::integrity::START_TREE)
    }

    pub fn set_tree(&self, tree: platform::mbec::Tree) {
        self.tree.store(tree.index() as u8, Ordering::Relaxed);
    }

    /// vCPU `index`, allowed on the CPUs in `affinity`, first placed on
    /// `home`.
    pub fn new(index: usize, affinity: u64, home: usize) -> Self {
        Self {
            index,
            mpidr: index as u64,
            affinity,
            state: AtomicU8::new(State::Off as u8),
            cpu: AtomicUsize::new(home),
            stop: AtomicBool::new(false),
            saved: Mutex::new(Saved {
                frame: TrapFrame::default(),
                cpu: CpuState::reset(),
                gic: crate::vm::vgic::CpuInterface::RESET,
            }),
            fresh: AtomicBool::new(false),
            tree: AtomicU8::new(crate::vm::integrity::START_TREE as u8),
            debug_owned: AtomicBool::new(false),
            attention: AtomicBool::new(false),
            lrs_used: AtomicU16::new(0),
            hw_ppis_pending: AtomicU32::new(0),
            sched: crate::vm::sched::VcpuSched::new(),
            last_vector: AtomicU64::new(u64::MAX),
            vector_aborts: AtomicU32::new(0),
            io: Mutex::new(None),
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

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves its state from `from` to `to`; false if it was not `from`.
    pub(crate) fn change(&self, from: State, to: State) -> bool {
        self.state.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    pub(crate) fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// The CPU it runs on, is queued on, or last ran on.
    pub fn cpu(&self) -> usize {
        self.cpu.load(Ordering::Acquire)
    }

    pub(crate) fn set_cpu(&self, slot: usize) {
        self.cpu.store(slot, Ordering::Release);
    }

    /// Whether it was asked to stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether it waits for a forwarded access: then only the access's
    /// completion (or a stop) wakes it (`crate::vm::sched`).
    pub(crate) fn io_waiting(&self, waiting: bool) {
        self.sched.io_wait.store(waiting, Ordering::SeqCst);
    }

    /// Its saved timers (valid while it is not running).
    pub(crate) fn saved_timers(&self) -> crate::arch::context::Timers {
        self.saved.lock().cpu.timers()
    }
}

/// What the layers above reset on this CPU when a vCPU enters it afresh
/// (the debug state EL2 may hold for the vCPU before it: `crate::traps::debug`).
static ON_ENTER: spin::Once<fn()> = spin::Once::new();

/// Registers [`ON_ENTER`]'s work, once.
pub fn on_enter(reset: fn()) {
    ON_ENTER.call_once(|| reset);
}

/// Starts `vcpu` of `vm` (from `Off` only) at `entry` with `x0` =
/// `context`: a freshly reset EL1 (MMU off, interrupts masked) as PSCI
/// promises, queued on a CPU it may run on.
pub fn start(vm: &'static Vm, vcpu: &'static Vcpu, entry: u64, context: u64) -> Result<(), i32> {
    if !vcpu.change(State::Off, State::Starting) {
        return Err(error::ALREADY_ON);
    }
    vcpu.stop.store(false, Ordering::Release);
    {
        let mut saved = vcpu.saved.lock();
        let mut frame = TrapFrame { elr: entry, spsr: SPSR_M_EL1H | SPSR_DAIF, ..Default::default() };
        frame.x[0] = context;
        saved.frame = frame;
        saved.cpu.reset_in_place();
        saved.cpu.set_identity(
            crate::arch::cpu::vmpidr(vcpu.mpidr),
            crate::arch::cpu::vpidr(),
            vm.cntvoff.load(Ordering::Relaxed),
        );
        saved.gic = crate::vm::vgic::CpuInterface::RESET;
    }
    vcpu.lrs_used.store(0, Ordering::Relaxed);
    vcpu.hw_ppis_pending.store(0, Ordering::Relaxed);
    vcpu.attention.store(true, Ordering::Release);
    vcpu.fresh.store(true, Ordering::Release);
    vcpu.debug_owned.store(false, Ordering::Relaxed);
    vcpu.set_tree(crate::vm::integrity::START_TREE);
    crate::vm::forward::forget(vcpu);
    crate::vm::sched::started(vm, vcpu);
    Ok(())
}

/// Loads `vcpu` of `vm` (its state `Running` on this CPU already) into
/// this CPU and `frame`. Fails (the vCPU is then off) only when it was
/// asked to stop while it waited for a VMID.
pub fn load(vm: &'static Vm, vcpu: &'static Vcpu, frame: &mut TrapFrame) -> Result<(), ()> {
    let root = vm.stage2.lock().prepare_this_cpu(vcpu.tree());
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
                if vcpu.stopping() {
                    vcpu.set_state(State::Off);
                    return Err(());
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
            vcpu.set_state(State::Off);
            return Err(());
        }
    }
    // Kernel integrity: its TTBR1/TCR writes trap (`HCR_EL2.TVM`), and under
    // the emulation this CPU may hold the VM's entries of another tree
    // (one VMID for all its trees).
    crate::arch::cpu::trap_translation_writes(vm.integrity.is_some());
    if vm.integrity.as_ref().is_some_and(|i| i.pages == crate::mm::stage2::Pages::Emulated) {
        crate::mm::vmid::flush_this_cpu();
    }
    {
        let saved = vcpu.saved.lock();
        crate::arch::context::copy_frame(frame, &saved.frame);
        saved.cpu.load(vcpu.debug_owned.load(Ordering::Relaxed));
        crate::vm::vgic::load_vcpu(&saved.gic);
    }
    crate::vm::set_running(Some((vm, vcpu)));
    vcpu.attention.store(true, Ordering::Release);
    if vcpu.fresh.swap(false, Ordering::AcqRel) {
        if let Some(hook) = ON_ENTER.get() {
            hook();
        }
        crate::irq::pnmi::vcpu_started();
        if vcpu.index == 0 {
            crate::vm::build::report_started(vm);
        }
    }
    Ok(())
}

/// Takes the vCPU this CPU runs out of it, saving its state from `frame`
/// and the CPU: afterwards the CPU holds nothing of it. Its scheduling
/// state is the caller's to set.
pub fn put(frame: &TrapFrame) -> Option<(&'static Vm, &'static Vcpu)> {
    let (vm, vcpu) = crate::vm::current()?;
    crate::vm::set_running(None);
    {
        let mut saved = vcpu.saved.lock();
        crate::arch::context::copy_frame(&mut saved.frame, frame);
        saved.cpu.save(vcpu.debug_owned.load(Ordering::Relaxed));
        saved.gic = crate::vm::vgic::put_vcpu(vm, vcpu);
    }
    crate::mm::vmid::leave(vm.index);
    Some((vm, vcpu))
}

/// The running vCPU is about to use the debug registers (a trapped access
/// passed through to them, a debug exception): on its first use since its
/// start its own values go into them, and from then on a switch keeps
/// them.
pub fn claim_debug() {
    let Some((_, vcpu)) = crate::vm::current() else { return };
    if !vcpu.debug_owned.swap(true, Ordering::AcqRel) {
        vcpu.saved.lock().cpu.load_debug();
    }
}

/// PSCI `CPU_ON` from the guest: only its own VM's vCPUs.
pub fn cpu_on(target: u64, entry: u64, context: u64) -> Result<u64, i32> {
    let (vm, _) = crate::vm::current().ok_or(error::DENIED)?;
    let vcpu = vm.vcpu_by_mpidr(target).ok_or(error::INVALID_PARAMETERS)?;
    if !vm.owns_ram(entry, 4) || !entry.is_multiple_of(4) {
        return Err(error::INVALID_ADDRESS);
    }
    start(vm, vcpu, entry, context)?;
    Ok(0)
}

/// PSCI `AFFINITY_INFO` from the guest (level 0 only, as PSCI 1.x allows).
pub fn affinity_info(target: u64, lowest_level: u64) -> Result<u64, i32> {
    if lowest_level != 0 {
        return Err(error::INVALID_PARAMETERS);
    }
    let (vm, _) = crate::vm::current().ok_or(error::DENIED)?;
    let vcpu = vm.vcpu_by_mpidr(target).ok_or(error::INVALID_PARAMETERS)?;
    let state = match vcpu.state() {
        State::Off => AffinityState::Off,
        State::Starting => AffinityState::OnPending,
        _ => AffinityState::On,
    };
    Ok(state as u64)
}

/// Asks every vCPU of `vm` but the caller's own to stop, and returns once
/// none is on: a queued or sleeping one is turned off where it is, a
/// running one stops at its next exit (a kick makes one happen).
pub fn stop_others(vm: &Vm) {
    let me = crate::vm::current().map(|(_, v)| v as *const Vcpu);
    let others = || vm.vcpus.iter().filter(move |v| Some(*v as *const Vcpu) != me);
    for vcpu in others() {
        vcpu.stop.store(true, Ordering::Release);
    }
    crate::vm::cpus::wait_interruptible(crate::vm::cpus::PEER_MS, || {
        let mut all_off = true;
        for vcpu in others() {
            match vcpu.state() {
                State::Off => {}
                State::Running => {
                    crate::vm::cpus::kick(vcpu.cpu());
                    all_off = false;
                }
                _ => all_off &= crate::vm::sched::take_off(vm, vcpu),
            }
        }
        all_off
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
/// goes on with another vCPU or idles, on a fresh stack (nothing of the
/// trap that got us here is used again).
pub fn cpu_off() -> ! {
    park_this();
    idle_here()
}

/// The vCPU this CPU runs stops: it is off, and the CPU holds nothing of
/// it any more (timers, list registers, VMID).
pub fn park_this() {
    let Some((vm, vcpu)) = crate::vm::current() else { return };
    crate::vm::sched::charge_running(vm, vcpu);
    let _ = put(&TrapFrame::default());
    vcpu.set_state(State::Off);
    log::debug!("VM {} vCPU {} off", vm.name, vcpu.index);
}

extern "C" {
    fn platform_cpu_stack_top(index: usize) -> usize;
}

/// Leaves whatever this CPU was doing for its scheduling loop, on a fresh
/// stack.
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

/// Enters the guest as the vCPU just loaded into `frame` on this CPU.
pub fn run(frame: &TrapFrame) -> ! {
    if let Some((vm, vcpu)) = crate::vm::current() {
        crate::vm::vgic::sync(vm, vcpu);
    }
    crate::irq::gic::set_pmr(crate::irq::gic::PMR_OPEN);
    // SAFETY: the frame was loaded from a vCPU whose entry point was checked
    // to lie in its VM's RAM (or saved from where it ran); this CPU's
    // traps, stage 2 and virtual interface were loaded with it.
    unsafe { crate::boot::entry::run(frame) }
}
