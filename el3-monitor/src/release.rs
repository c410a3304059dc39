//! Bringing the secondary CPUs into the monitor on SoCs that hold them in
//! reset, so that every CPU waits in the holding pen for PSCI `CPU_ON` as
//! on boards whose CPUs all leave reset together.
//!
//! The method is the board's [`CpuRelease`], which the root `compatible`
//! of the DTB selects (`platform::board::soc` says why that is the one
//! place with a table of register addresses). Each released CPU starts at
//! the monitor's entry point, counts itself in (`boot.S`) and waits for the
//! CPU table; the boot CPU waits, for a bounded time, until all of them
//! have arrived, and logs the outcome in one line.

use crate::boot;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use platform::board::{Board, CpuRelease, ZynqMpApu};

/// How long the boot CPU waits for the released CPUs to check in.
const ARRIVAL_TIMEOUT_MS: u64 = 1000;

/// Releases every CPU of `slots` but the boot CPU (slot 0) if the board
/// holds them in reset; returns once they are in the monitor or the wait
/// timed out.
pub fn release_secondaries(board: &Board, slots: &[u64]) {
    let CpuRelease::ZynqMpApu(apu) = board.cpu_release else {
        return;
    };
    let entry = boot::entry_point();
    let mut cores = 0u32;
    for &mpidr in slots.iter().skip(1) {
        match ZynqMpApu::core(mpidr) {
            Some(core) => {
                for (addr, value) in apu.rvbar_writes(core, entry) {
                    // SAFETY: an APU reset-vector register of the SoC the
                    // DTB's root compatible names (platform::board::soc),
                    // reached with the EL3 MMU off; it only sets where that
                    // core starts when it leaves reset.
                    unsafe { (addr as usize as *mut u32).write_volatile(value) };
                }
                cores |= 1 << core;
            }
            None => log::warn!("CPU {mpidr:#x} is not an APU core of {}: left in reset", ZynqMpApu::COMPATIBLE),
        }
    }
    if cores == 0 {
        return;
    }
    boot::reset_arrivals();
    let rst = apu.rst_fpd_apu() as usize as *mut u32;
    // SAFETY: CRF_APB.RST_FPD_APU of that SoC, as above; the write takes
    // only the cores in `cores` out of reset and keeps every other bit.
    let (before, after) = unsafe {
        let before = rst.read_volatile();
        let after = ZynqMpApu::released(before, cores);
        rst.write_volatile(after);
        (before, after)
    };
    let released = u64::from(cores.count_ones());
    let arrived = wait_for_arrivals(released);
    let how = ZynqMpApu::COMPATIBLE;
    if arrived == released {
        log::info!(
            "{released} secondary CPU(s) released from reset ({how}: RVBAR {entry:#x}, RST_FPD_APU {before:#x} -> \
             {after:#x}); {arrived} of {released} in the monitor"
        );
    } else {
        log::warn!(
            "{released} secondary CPU(s) released from reset ({how}: RVBAR {entry:#x}, RST_FPD_APU {before:#x} -> \
             {after:#x}); only {arrived} of {released} reached the monitor within {ARRIVAL_TIMEOUT_MS} ms"
        );
    }
}

/// Waits until `expected` CPUs have counted themselves in, or the timeout
/// passed; returns how many did.
fn wait_for_arrivals(expected: u64) -> u64 {
    let ticks = CNTFRQ_EL0.get().saturating_mul(ARRIVAL_TIMEOUT_MS) / 1000;
    let start = CNTPCT_EL0.get();
    loop {
        let arrived = boot::arrivals();
        if arrived >= expected || CNTPCT_EL0.get().wrapping_sub(start) > ticks {
            return arrived;
        }
        core::hint::spin_loop();
    }
}
