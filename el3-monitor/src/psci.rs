//! PSCI CPU power state: which CPUs are on, and handing a CPU to EL2 when
//! `CPU_ON` names it.
//!
//! Each CPU has a slot (its index in the boot CPU table). `CPU_ON` writes
//! the entry point and context into the target's slot and moves it from
//! OFF to ON_PENDING; the target, parked in [`park_until_on`], sees that,
//! configures its own EL3 state and enters EL2. `CPU_OFF` puts the caller
//! back into the same park loop.

use crate::boot;
use core::sync::atomic::{AtomicU64, Ordering};
use platform::board::MAX_CPUS;
use smccc::psci::{AffinityState, Error as PsciError};

const OFF: u64 = 0;
const ON_PENDING: u64 = 1;
const ON: u64 = 2;

struct Slot {
    state: AtomicU64,
    entry: AtomicU64,
    context: AtomicU64,
}

static SLOTS: [Slot; MAX_CPUS] =
    [const { Slot { state: AtomicU64::new(OFF), entry: AtomicU64::new(0), context: AtomicU64::new(0) } }; MAX_CPUS];

/// Marks the boot CPU (slot 0) as on.
pub fn boot_cpu_is_on() {
    SLOTS[0].state.store(ON, Ordering::Relaxed);
}

/// PSCI `CPU_ON` for the CPU in `slot`.
pub fn cpu_on(slot: usize, entry: u64, context: u64) -> Result<(), PsciError> {
    let target = SLOTS.get(slot).ok_or(PsciError::InvalidParameters)?;
    target.entry.store(entry, Ordering::Relaxed);
    target.context.store(context, Ordering::Relaxed);
    match target.state.compare_exchange(OFF, ON_PENDING, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISH);
            aarch64_cpu::asm::sev();
            Ok(())
        }
        Err(ON_PENDING) => Err(PsciError::OnPending),
        Err(_) => Err(PsciError::AlreadyOn),
    }
}

/// PSCI `CPU_OFF` for the calling CPU: never returns to the caller.
pub fn cpu_off(slot: usize) -> ! {
    let board = crate::state::board();
    if let Some(gic_index) = crate::state::mpidr_of(slot).and_then(|m| board.cpu_index(m)) {
        if let Err(e) = crate::secure::gic_cpu_off(board, gic_index) {
            log::warn!("CPU_OFF of slot {slot}: {e}");
        }
    }
    if let Some(me) = SLOTS.get(slot) {
        me.state.store(OFF, Ordering::Release);
    }
    boot::park(slot)
}

/// PSCI `AFFINITY_INFO` at affinity level 0.
pub fn affinity_info(slot: usize) -> Result<AffinityState, PsciError> {
    let target = SLOTS.get(slot).ok_or(PsciError::InvalidParameters)?;
    Ok(match target.state.load(Ordering::Acquire) {
        ON => AffinityState::On,
        ON_PENDING => AffinityState::OnPending,
        _ => AffinityState::Off,
    })
}

/// Waits until `CPU_ON` targets `slot`; returns the entry point and context
/// and marks the CPU on.
pub fn park_until_on(slot: usize) -> (u64, u64) {
    let Some(me) = SLOTS.get(slot) else {
        loop {
            platform::arch::wait_for_event();
        }
    };
    while me.state.load(Ordering::Acquire) != ON_PENDING {
        platform::arch::wait_for_event();
    }
    let entry = me.entry.load(Ordering::Relaxed);
    let context = me.context.load(Ordering::Relaxed);
    me.state.store(ON, Ordering::Release);
    (entry, context)
}
