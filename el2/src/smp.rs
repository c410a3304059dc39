//! Bringing the other CPUs up at EL2 through PSCI `CPU_ON`, and taking
//! them down again with `CPU_OFF`.
//!
//! Slot 0 is the boot CPU; the DTB's other CPUs get slots 1.. in DTB order,
//! and each is started with its slot as the PSCI context so it can find its
//! stack. The boot CPU waits, with a deadline, until every CPU has checked
//! in. An idle secondary watches its mailbox and calls `CPU_OFF` when asked.

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use platform::board::MAX_CPUS;
use smccc::Smc;

static ONLINE: AtomicUsize = AtomicUsize::new(1);
static SLOT_MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static OFF_REQUESTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

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
    SLOT_MPIDR[slot].store(mpidr, Ordering::Relaxed);
    smccc::psci::cpu_on::<Smc>(mpidr, crate::switch::secondary_entry_pa(), slot as u64)
}

/// Starts every other CPU in `cpus` (affinities, DTB order); returns how
/// many CPUs are online at EL2 when all have answered or the deadline passed.
pub fn start_secondaries(cpus: &[u64], boot_mpidr: u64) -> usize {
    SLOT_MPIDR[0].store(boot_mpidr, Ordering::Relaxed);
    let mut started = 1;
    let others = cpus.iter().filter(|&&m| m != boot_mpidr);
    for (slot, &mpidr) in others.enumerate().map(|(i, m)| (i + 1, m)) {
        if slot >= platform::arch::stack_count().min(MAX_CPUS) {
            log::warn!("CPU {mpidr:#x}: no stack slot left, leaving it off");
            continue;
        }
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
    SLOT_MPIDR.get(slot).map_or(0, |m| m.load(Ordering::Relaxed))
}

/// A secondary reports in.
pub fn check_in() {
    ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// Asks the idle secondary in `slot` to power itself off.
pub fn request_off(slot: usize) {
    if let Some(flag) = OFF_REQUESTED.get(slot) {
        flag.store(true, Ordering::Release);
        aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISH);
        aarch64_cpu::asm::sev();
    }
}

/// The idle loop of a secondary CPU: waits for work (none yet) or for a
/// request to power off.
pub fn secondary_idle(slot: usize) -> ! {
    loop {
        platform::arch::wait_for_event();
        if OFF_REQUESTED.get(slot).is_some_and(|f| f.swap(false, Ordering::AcqRel)) {
            ONLINE.fetch_sub(1, Ordering::AcqRel);
            let error = smccc::psci::cpu_off::<Smc>();
            crate::power::fatal(format_args!("CPU_OFF returned: {error:?}"));
        }
    }
}
