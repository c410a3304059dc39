//! The guest's virtual CPUs: one per physical CPU, pinned (vCPU n runs
//! on CPU slot n and has that CPU's affinity), switched on and off by the
//! guest through the virtual PSCI calls `CPU_ON`, `CPU_OFF` and
//! `AFFINITY_INFO`.
//!
//! A vCPU that is off leaves its physical CPU idling at EL2 (ticks and
//! mailbox still served); `CPU_ON` from another vCPU asks that CPU, through
//! its mailbox, to enter the guest at the given entry point.

use crate::boot::smp;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use platform::arch::regs::{SCTLR_EL1_RES1, SPSR_DAIF, SPSR_M_EL1H};
use platform::arch::trap::TrapFrame;
use platform::board::MAX_CPUS;
use smccc::psci::{error, AffinityState};

const OFF: u8 = 0;
const ON_PENDING: u8 = 1;
const ON: u8 = 2;

static STATE: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(OFF) }; MAX_CPUS];
static ENTRY: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static CONTEXT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// How many vCPUs the guest has.
static COUNT: AtomicUsize = AtomicUsize::new(0);

extern "C" {
    fn platform_cpu_stack_top(index: usize) -> usize;
}

/// The guest gets one vCPU per online CPU.
pub fn set_count(count: usize) {
    COUNT.store(count.min(MAX_CPUS), Ordering::Relaxed);
}

pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// The vCPU this CPU runs, if one is on.
pub fn current() -> Option<usize> {
    let slot = crate::mm::prda::slot();
    (STATE.get(slot)?.load(Ordering::Acquire) == ON).then_some(slot)
}

/// Whether `vcpu` is on (its CPU runs the guest).
pub fn is_running(vcpu: usize) -> bool {
    STATE.get(vcpu).is_some_and(|s| s.load(Ordering::Acquire) == ON)
}

/// The vCPU with affinity `mpidr`.
fn find(mpidr: u64) -> Option<usize> {
    let affinity = platform::arch::mpidr_affinity(mpidr);
    (0..count()).find(|&v| smp::mpidr_of(v) == affinity)
}

/// Enters the guest on this CPU as vCPU `slot` at `entry` with `x0` =
/// `context`: a freshly reset EL1 (MMU off, interrupts masked) as PSCI
/// promises.
pub fn enter(slot: usize, entry: u64, context: u64) -> ! {
    crate::arch::cpu::init(smp::mpidr_of(slot));
    crate::mm::stage2::activate_on_this_cpu();
    crate::arch::sysregs::write(crate::arch::sysregs::GuestReg::Sctlr, SCTLR_EL1_RES1);
    crate::vm::vgic::reset_vcpu(slot);
    crate::traps::debug::reset_vcpu();
    if let Some(state) = STATE.get(slot) {
        state.store(ON, Ordering::Release);
    }
    crate::mm::prda::with(|p| p.current_vcpu.store(slot as u64, Ordering::Relaxed));
    let mut frame = TrapFrame { elr: entry, spsr: SPSR_M_EL1H | SPSR_DAIF, ..Default::default() };
    frame.x[0] = context;
    crate::vm::vgic::sync();
    crate::irq::gic::set_pmr(crate::irq::gic::PMR_OPEN);
    // SAFETY: `entry` was checked to lie in guest RAM, which stage 2 maps;
    // this CPU's traps, stage 2 and virtual interface are set up above.
    unsafe { crate::boot::entry::run(&frame) }
}

/// An idle CPU's mailbox said "start your vCPU".
pub fn start_requested(slot: usize) -> ! {
    let entry = ENTRY.get(slot).map_or(0, |e| e.load(Ordering::Acquire));
    let context = CONTEXT.get(slot).map_or(0, |c| c.load(Ordering::Acquire));
    enter(slot, entry, context)
}

/// PSCI `CPU_ON` from the guest.
pub fn cpu_on(target: u64, entry: u64, context: u64) -> Result<u64, i32> {
    let vcpu = find(target).ok_or(error::INVALID_PARAMETERS)?;
    let ram = crate::boot::early::boot_info().plan.guest_ram;
    if !(ram.base..ram.end()).contains(&entry) || !entry.is_multiple_of(4) {
        return Err(error::INVALID_ADDRESS);
    }
    let state = STATE.get(vcpu).ok_or(error::INVALID_PARAMETERS)?;
    match state.compare_exchange(OFF, ON_PENDING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        Err(ON) => return Err(error::ALREADY_ON),
        Err(_) => return Err(error::ON_PENDING),
    }
    if let (Some(e), Some(c)) = (ENTRY.get(vcpu), CONTEXT.get(vcpu)) {
        e.store(entry, Ordering::Release);
        c.store(context, Ordering::Release);
    }
    smp::request_vcpu_start(vcpu);
    Ok(0)
}

/// PSCI `AFFINITY_INFO` from the guest (level 0 only, as PSCI 1.x allows).
pub fn affinity_info(target: u64, lowest_level: u64) -> Result<u64, i32> {
    if lowest_level != 0 {
        return Err(error::INVALID_PARAMETERS);
    }
    let vcpu = find(target).ok_or(error::INVALID_PARAMETERS)?;
    let state = match STATE.get(vcpu).map(|s| s.load(Ordering::Acquire)) {
        Some(ON) => AffinityState::On,
        Some(ON_PENDING) => AffinityState::OnPending,
        _ => AffinityState::Off,
    };
    Ok(state as u64)
}

/// PSCI `CPU_OFF` from the guest: this vCPU stops, its CPU goes idle on a
/// fresh stack (nothing of the trap that got us here is used again).
pub fn cpu_off() -> ! {
    let slot = crate::mm::prda::slot();
    crate::mm::prda::with(|p| p.current_vcpu.store(u64::MAX, Ordering::Relaxed));
    if let Some(state) = STATE.get(slot) {
        state.store(OFF, Ordering::Release);
    }
    // Its timers stop with it: their interrupts have nobody to go to now.
    crate::arch::sysregs::write(crate::arch::sysregs::GuestReg::CntvCtl, 0);
    crate::arch::sysregs::write(crate::arch::sysregs::GuestReg::CntpCtl, 0);
    log::debug!("vCPU {slot} off");
    // SAFETY: the slot's stack top from the linker's table; leaving the
    // current frames for good is what CPU_OFF means, and `idle_entry`
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
    smp::secondary_idle(slot)
}
