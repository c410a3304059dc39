//! Bringing the other CPUs up at EL2 through PSCI `CPU_ON`.
//!
//! Slot 0 is the boot CPU; the DTB's other CPUs get slots 1.. in DTB order,
//! and each is started with its slot as the PSCI context so it can find its
//! stack. The boot CPU waits, with a deadline, until every CPU has checked
//! in.

use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use core::sync::atomic::{AtomicUsize, Ordering};
use smccc::Smc;

static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// How long secondaries get to check in.
const CHECK_IN_TIMEOUT_MS: u64 = 2000;

/// Starts every other CPU in `cpus` (affinities, DTB order); returns how
/// many CPUs are online at EL2 when all have answered or the deadline passed.
pub fn start_secondaries(cpus: &[u64], boot_mpidr: u64) -> usize {
    let mut started = 1;
    for (slot, &mpidr) in cpus.iter().filter(|&&m| m != boot_mpidr).enumerate().map(|(i, m)| (i + 1, m)) {
        if slot >= platform::arch::stack_count() {
            log::warn!("CPU {mpidr:#x}: no stack slot left, leaving it off");
            continue;
        }
        match smccc::psci::cpu_on::<Smc>(mpidr, crate::boot::secondary_entry(), slot as u64) {
            Ok(()) => started += 1,
            Err(e) => log::error!("CPU_ON {mpidr:#x} failed: {e}"),
        }
    }
    let ticks_per_ms = (CNTFRQ_EL0.get() / 1000).max(1);
    let deadline = CNTPCT_EL0.get() + CHECK_IN_TIMEOUT_MS * ticks_per_ms;
    while ONLINE.load(Ordering::Acquire) < started && CNTPCT_EL0.get() < deadline {
        core::hint::spin_loop();
    }
    ONLINE.load(Ordering::Acquire)
}

/// A secondary reports in.
pub fn check_in() {
    ONLINE.fetch_add(1, Ordering::AcqRel);
}
