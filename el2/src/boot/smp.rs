//! Bringing the other CPUs up at EL2 through PSCI `CPU_ON`, and the CPUs'
//! identities: slot 0 is the boot CPU; the DTB's other CPUs get slots 1..
//! in DTB order, and each is started with its slot as the PSCI context so
//! it can find its stack. The boot CPU waits, with a deadline, until every
//! CPU has checked in. What an idle CPU then does (its mailbox, `CPU_OFF`,
//! starting its vCPU) is `crate::vm::cpus`.

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use core::sync::atomic::{AtomicUsize, Ordering};
use platform::board::MAX_CPUS;
use smccc::Smc;

static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// How long secondaries get to check in.
const CHECK_IN_TIMEOUT_MS: u64 = 2000;

/// Spins until `done()` or `timeout_ms` passes; returns whether `done()`.
pub fn wait_until(timeout_ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let ticks_per_ms = (CNTFRQ_EL0.get() / 1000).max(1);
    let deadline = CNTPCT_EL0.get().saturating_add(timeout_ms.saturating_mul(ticks_per_ms));
    loop {
        if done() {
            return true;
        }
        if CNTPCT_EL0.get() >= deadline {
            return false;
        }
        core::hint::spin_loop();
    }
}

/// Starts one secondary in `slot` with `CPU_ON`.
pub fn cpu_on(slot: usize, mpidr: u64) -> Result<(), smccc::psci::Error> {
    smccc::psci::cpu_on::<Smc>(mpidr, crate::boot::switch::secondary_entry_pa(), slot as u64)
}

/// CPU slots: the boot CPU's affinity first, then the DTB's other CPUs in
/// order, as many as there are stacks for. Stage 1 (per-CPU tables) and the
/// bring-up below both use this order.
pub fn slots(cpus: &[u64], boot_mpidr: u64) -> ([u64; MAX_CPUS], usize) {
    let mut slots = [0; MAX_CPUS];
    let capacity = platform::arch::stack_count().min(MAX_CPUS);
    let others = cpus.iter().copied().filter(|&m| m != boot_mpidr);
    let mut count = 0;
    for (slot, mpidr) in slots.iter_mut().zip(core::iter::once(boot_mpidr).chain(others)).take(capacity) {
        *slot = mpidr;
        count += 1;
    }
    (slots, count)
}

/// Starts every other CPU in `cpus` (affinities, DTB order); returns how
/// many CPUs are online at EL2 when all have answered or the deadline passed.
pub fn start_secondaries(cpus: &[u64], boot_mpidr: u64) -> usize {
    let (slots, count) = slots(cpus, boot_mpidr);
    if count < cpus.len() {
        log::warn!("{} CPUs have no stack slot and stay off", cpus.len() - count);
    }
    let mut started = 1;
    for (slot, &mpidr) in slots.iter().enumerate().take(count).skip(1) {
        match cpu_on(slot, mpidr) {
            Ok(()) => started += 1,
            Err(e) => log::error!("CPU_ON {mpidr:#x} failed: {e}"),
        }
    }
    wait_until(CHECK_IN_TIMEOUT_MS, || online() >= started);
    online()
}

/// How many CPUs are online at EL2.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// The affinity of the CPU in `slot`.
pub fn mpidr_of(slot: usize) -> u64 {
    crate::mm::prda::of(slot).map_or(0, |p| p.mpidr.load(Ordering::Relaxed))
}

/// A secondary reports in.
pub fn check_in() {
    ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// A CPU powers itself off (it is no longer online).
pub fn check_out() {
    ONLINE.fetch_sub(1, Ordering::AcqRel);
}
