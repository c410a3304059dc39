//! Pseudo-NMIs and what they are for: the hypervisor's tick and its lockup
//! watchdog, stopping every CPU on a fatal error, and the preemption
//! experiment a guest can ask for (`HV_PNMI_TEST`).
//!
//! # The tick and the watchdog
//!
//! Each CPU's EL2 physical timer (`CNTHP_*_EL2`) fires every [`TICK_US`]
//! at PNMI priority. The PNMI half counts the tick and raises
//! [`gic::SGI_TICK`] to its own CPU at regular priority; the regular half
//! (time keeping; scheduling later) records that it ran. A CPU whose
//! regular half has not run for [`WATCHDOG_TICKS`] ticks, and whose
//! priority mask still holds regular interrupts off when the PNMI arrives,
//! has had them masked all that time: the PNMI half reports a lockup, with
//! where the CPU was and the CPU interface's state. The watchdog counts ticks, not wall time, so that an
//! emulator's host descheduling a CPU cannot fake a lockup.
//!
//! # What a PNMI handler may touch
//!
//! A PNMI can arrive in the middle of any EL2 code, including code that
//! holds a lock, so everything here that a PNMI handler uses is an atomic
//! or a system register; printing only tries the console lock, and leaves
//! the line to the next regular tick when it is taken.
//!
//! # Stopping the system
//!
//! [`stop_other_cpus`] asks every other CPU, by [`gic::SGI_PNMI`], to save
//! its state and park; the fatal CPU then prints each CPU's state.

use crate::irq::gic;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use platform::abi::{lockup_test, pnmi_test};
use platform::arch::trap::TrapFrame;

/// Tick length.
pub const TICK_US: u64 = 10_000;
/// Ticks without a regular interrupt before a CPU counts as locked up.
pub const WATCHDOG_TICKS: u64 = 20;

/// `CNTHP_CTL_EL2.ENABLE` (bit 0); IMASK (bit 1) stays clear.
const CNTHP_CTL_ENABLE: u64 = 1 << 0;

/// Requests in a CPU's `PnmiArea::requests`, one bit each.
const REQUEST_STOP: u8 = 1 << 0;
const REQUEST_TEST: u8 = 1 << 1;

/// Whether the GIC is up, so that a fatal error can use PNMIs.
static READY: AtomicBool = AtomicBool::new(false);

/// The counter ticks of one hypervisor tick.
fn tick_interval() -> u64 {
    (CNTFRQ_EL0.get() / 1_000_000).max(1) * TICK_US
}

/// Starts this CPU's tick (after its GIC CPU interface is up).
pub fn start_tick() {
    let slot = crate::mm::prda::slot();
    if let (Some(ticks), Some(seen)) =
        (crate::mm::prda::of(slot).map(|p| &p.pnmi.ticks), crate::mm::prda::of(slot).map(|p| &p.pnmi.ticks_seen))
    {
        seen.store(ticks.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    schedule_next_tick();
    arm_timer();
    READY.store(true, Ordering::Release);
}

/// Sets the EL2 timer for the earlier of this CPU's next tick and the
/// scheduler's next deadline. A PNMI arriving in the middle at worst leaves
/// the timer set early, for a PNMI that finds nothing due and sets it
/// again.
fn arm_timer() {
    let area = |f: fn(&crate::mm::prda::PnmiArea) -> u64| crate::mm::prda::with(|p| f(&p.pnmi));
    let deadline = area(|p| p.next_tick.load(Ordering::Relaxed)).min(area(|p| p.event.load(Ordering::Relaxed)));
    // SAFETY: the EL2 physical timer is the hypervisor's own; programming
    // it affects only when its PPI fires.
    unsafe {
        core::arch::asm!(
            "msr cnthp_cval_el2, {cval}",
            "msr cnthp_ctl_el2, {ctl}",
            "isb",
            cval = in(reg) deadline,
            ctl = in(reg) CNTHP_CTL_ENABLE,
            options(nostack),
        );
    }
}

/// The scheduler's next deadline on this CPU (`u64::MAX`: none): when it
/// passes, the CPU's `resched` flag is set, and the scheduler looks
/// at what is due (a slice's end, a sleeping vCPU's timer).
pub fn set_event(deadline: u64) {
    let previous = crate::mm::prda::with(|p| p.pnmi.event.swap(deadline, Ordering::Relaxed));
    if previous != deadline {
        arm_timer();
    }
}

/// A PNMI: the tick, or a request from another CPU.
pub fn handle(intid: u32, frame: &TrapFrame) {
    let slot = crate::mm::prda::slot();
    if intid == gic::SGI_PNMI {
        let requests = crate::mm::prda::of(slot).map(|p| &p.pnmi.requests).map_or(0, |r| r.swap(0, Ordering::AcqRel));
        if requests & REQUEST_TEST != 0 {
            test_pnmi();
        }
        if requests & REQUEST_STOP != 0 {
            park(slot, frame);
        }
        return;
    }
    let now = CNTPCT_EL0.get();
    let (next_tick, event) =
        crate::mm::prda::with(|p| (p.pnmi.next_tick.load(Ordering::Relaxed), p.pnmi.event.load(Ordering::Relaxed)));
    if event <= now {
        crate::mm::prda::with(|p| {
            p.pnmi.event.store(u64::MAX, Ordering::Relaxed);
            // Two atomics are all a PNMI may touch: the scheduler does the
            // rest on the way back to the guest (or in its idle loop),
            // with no second interrupt.
            p.sched.resched.store(true, Ordering::Release);
        });
    }
    if next_tick <= now {
        tick_pnmi(slot, frame);
    }
    arm_timer();
}

/// The next tick is one period from now.
fn schedule_next_tick() {
    let next = CNTPCT_EL0.get().wrapping_add(tick_interval());
    crate::mm::prda::with(|p| p.pnmi.next_tick.store(next, Ordering::Relaxed));
}

/// The PNMI half of the tick: count, hand the regular half its interrupt,
/// watch for a lockup.
fn tick_pnmi(slot: usize, frame: &TrapFrame) {
    schedule_next_tick();
    let (Some(ticks), Some(seen)) =
        (crate::mm::prda::of(slot).map(|p| &p.pnmi.ticks), crate::mm::prda::of(slot).map(|p| &p.pnmi.ticks_seen))
    else {
        return;
    };
    let now = ticks.fetch_add(1, Ordering::Relaxed) + 1;
    gic::send_sgi_to_self(gic::SGI_TICK);
    // A CPU interrupted with its priority mask open is not masking
    // regular interrupts, whatever kept the tick's regular half from
    // running yet (under emulation, delivery can lag): it counts as alive.
    if gic::pmr() > gic::PMR_PNMI_ONLY {
        seen.store(now, Ordering::Relaxed);
        return;
    }
    let missed = now.saturating_sub(seen.load(Ordering::Relaxed));
    let last_report = crate::mm::prda::of(slot).map(|p| &p.pnmi.lockup_tick).map_or(0, |t| t.load(Ordering::Relaxed));
    if missed >= WATCHDOG_TICKS && last_report <= seen.load(Ordering::Relaxed) {
        if let Some(t) = crate::mm::prda::of(slot).map(|p| &p.pnmi.lockup_tick) {
            t.store(now, Ordering::Relaxed);
        }
        if let (Some(elr), Some(spsr), Some(state)) = (
            crate::mm::prda::of(slot).map(|p| &p.pnmi.lockup_elr),
            crate::mm::prda::of(slot).map(|p| &p.pnmi.lockup_spsr),
            crate::mm::prda::of(slot).map(|p| &p.pnmi.lockup_gic),
        ) {
            elr.store(frame.elr, Ordering::Relaxed);
            spsr.store(frame.spsr, Ordering::Relaxed);
            state.store(gic::snapshot(), Ordering::Relaxed);
        }
        if let Some(count) = crate::mm::prda::of(slot).map(|p| &p.pnmi.lockups) {
            count.fetch_add(1, Ordering::Release);
        }
        if !print_lockup(slot) {
            if let Some(flag) = crate::mm::prda::of(slot).map(|p| &p.pnmi.lockup_unprinted) {
                flag.store(true, Ordering::Release);
            }
        }
    }
}

/// Prints slot `slot`'s lockup report if the console is free at once
/// (a PNMI must not wait for it); returns whether it printed.
fn print_lockup(slot: usize) -> bool {
    let elr = crate::mm::prda::of(slot).map(|p| &p.pnmi.lockup_elr).map_or(0, |v| v.load(Ordering::Relaxed));
    let spsr = crate::mm::prda::of(slot).map(|p| &p.pnmi.lockup_spsr).map_or(0, |v| v.load(Ordering::Relaxed));
    let state = crate::mm::prda::of(slot).map(|p| &p.pnmi.lockup_gic).map_or(0, |v| v.load(Ordering::Relaxed));
    platform::console::try_write_fmt(format_args!(
        "el2: WARN: watchdog: CPU {slot} (MPIDR {:#x}) has had regular interrupts masked for {} ms, at {} ELR {elr:#x} SPSR {spsr:#x} ({})\n",
        crate::boot::smp::mpidr_of(slot),
        WATCHDOG_TICKS * TICK_US / 1000,
        platform::arch::ExceptionLevel::from_spsr(spsr),
        gic::Snapshot(state),
    ))
}

/// The regular half of the tick.
/// What the layers above want done on the boot CPU's every tick (at
/// regular priority), registered once.
static TICK_WORK: spin::Once<fn()> = spin::Once::new();

/// Registers the boot CPU's per-tick work.
pub fn on_tick(work: fn()) {
    TICK_WORK.call_once(|| work);
}

pub fn tick_regular() {
    let slot = crate::mm::prda::slot();
    if slot == 0 {
        if let Some(work) = TICK_WORK.get() {
            work();
        }
    }
    if let (Some(ticks), Some(seen)) =
        (crate::mm::prda::of(slot).map(|p| &p.pnmi.ticks), crate::mm::prda::of(slot).map(|p| &p.pnmi.ticks_seen))
    {
        seen.store(ticks.load(Ordering::Relaxed), Ordering::Relaxed);
    }
    // Reports a PNMI could not print (the console was taken). Only if the
    // console is free now: a tick never waits for it, or one slow printer
    // would stall every CPU's tick behind it.
    for (other, flag) in crate::mm::prda::PAGES.iter().map(|p| &p.pnmi.lockup_unprinted).enumerate() {
        if flag.swap(false, Ordering::AcqRel) && !print_lockup(other) {
            flag.store(true, Ordering::Release);
        }
    }
}

/// [`lockup_test`]'s bound in wall time, as a multiple of the watchdog
/// time asked for.
const LOCKUP_WALL_FACTOR: u64 = 10;

/// Lockups reported on this CPU so far.
fn lockups(slot: usize) -> u64 {
    crate::mm::prda::of(slot).map(|p| &p.pnmi.lockups).map_or(0, |c| c.load(Ordering::Acquire))
}

/// A vCPU starts on this CPU: what `HV_LOCKUP_TEST` reports as "before"
/// counts from here (a restarted VM's earlier life, or another VM's, is
/// not its false positive).
pub fn vcpu_started() {
    let slot = crate::mm::prda::slot();
    if let Some(mark) = crate::mm::prda::of(slot).map(|p| &p.pnmi.lockups_at_start) {
        mark.store(lockups(slot), Ordering::Relaxed);
    }
}

/// `HV_LOCKUP_TEST(ms)`: stalls this CPU with regular interrupts masked by
/// priority (PNMIs open) until the watchdog reports it or `ms` of
/// watchdog time pass: ticks this CPU has taken, the watchdog's own clock,
/// so that an emulator's host descheduling the CPU shortens neither (in
/// wall time the stall ends after [`LOCKUP_WALL_FACTOR`] times `ms`
/// whatever happens). Returns the registers of `abi::lockup_test`.
pub fn lockup_test(ms: u64) -> Result<[(usize, u64); 4], ()> {
    if ms == 0 || ms > lockup_test::MAX_STALL_MS {
        return Err(());
    }
    let slot = crate::mm::prda::slot();
    let before = lockups(slot);
    let start_tick = crate::mm::prda::of(slot).map(|p| &p.pnmi.ticks).map_or(0, |t| t.load(Ordering::Relaxed));
    let ticks_for_ms = (ms * 1000).div_ceil(TICK_US);
    let ticks_taken = || {
        crate::mm::prda::of(slot)
            .map(|p| &p.pnmi.ticks)
            .map_or(0, |t| t.load(Ordering::Relaxed))
            .saturating_sub(start_tick)
    };
    let _window = crate::irq::PnmiWindow::open();
    crate::boot::smp::wait_until(ms * LOCKUP_WALL_FACTOR, || lockups(slot) != before || ticks_taken() > ticks_for_ms);
    let detected = lockups(slot) - before;
    let latency = if detected == 0 {
        u64::MAX
    } else {
        let at = crate::mm::prda::of(slot).map(|p| &p.pnmi.lockup_tick).map_or(0, |t| t.load(Ordering::Relaxed));
        at.saturating_sub(start_tick) * TICK_US
    };
    Ok([
        (lockup_test::X_DETECTED, detected),
        (lockup_test::X_LATENCY_US, latency),
        (lockup_test::X_PERIOD_US, WATCHDOG_TICKS * TICK_US),
        (
            lockup_test::X_BEFORE,
            before.saturating_sub(
                crate::mm::prda::of(slot).map(|p| &p.pnmi.lockups_at_start).map_or(0, |m| m.load(Ordering::Relaxed)),
            ),
        ),
    ])
}

// ---- The preemption experiment ----------------------------------------

fn experiment() -> Option<&'static crate::mm::prda::Experiment> {
    crate::mm::prda::of(crate::mm::prda::slot()).map(|p| &p.pnmi.experiment)
}

/// How long each phase of the experiment may take.
const EXPERIMENT_TIMEOUT_MS: u64 = 200;

/// `HV_PNMI_TEST`: a regular interrupt to this CPU whose handler raises a
/// second regular interrupt and a PNMI and spins until the PNMI has run.
pub fn pnmi_test() -> [(usize, u64); 7] {
    let slot = crate::mm::prda::slot();
    let Some(e) = crate::mm::prda::of(slot).map(|p| &p.pnmi.experiment) else { return [(0, 0); 7] };
    for field in [
        &e.seq,
        &e.regular_entry,
        &e.pnmi,
        &e.regular_exit,
        &e.second_regular,
        &e.pnmi_rpr,
        &e.regular_rpr,
        &e.pnmi_sent,
        &e.pnmi_latency,
    ] {
        field.store(0, Ordering::Relaxed);
    }
    e.stage.store(1, Ordering::Release);
    gic::send_sgi_to_self(gic::SGI_TEST);
    // The caller holds regular interrupts off (rule 1): open up for the
    // experiment, then close again.
    let mask = gic::pmr();
    gic::set_pmr(gic::PMR_OPEN);
    crate::irq::unmask_irq();
    crate::boot::smp::wait_until(EXPERIMENT_TIMEOUT_MS, || e.second_regular.load(Ordering::Acquire) != 0);
    crate::irq::mask_irq();
    gic::set_pmr(mask);
    e.stage.store(0, Ordering::Release);
    let get = |f: &AtomicU64| f.load(Ordering::Acquire);
    [
        (pnmi_test::X_REGULAR_ENTRY, get(&e.regular_entry)),
        (pnmi_test::X_PNMI, get(&e.pnmi)),
        (pnmi_test::X_REGULAR_EXIT, get(&e.regular_exit)),
        (pnmi_test::X_SECOND_REGULAR, get(&e.second_regular)),
        (pnmi_test::X_PNMI_RUNNING_PRIORITY, get(&e.pnmi_rpr)),
        (pnmi_test::X_REGULAR_RUNNING_PRIORITY, get(&e.regular_rpr)),
        (pnmi_test::X_PNMI_LATENCY, get(&e.pnmi_latency)),
    ]
}

/// The experiment's regular handler (running under rule 2: `PSTATE.I`
/// clear, only PNMIs above the mask).
pub fn test_regular() {
    let Some(e) = experiment() else { return };
    match e.stage.load(Ordering::Acquire) {
        1 => {
            e.stage.store(2, Ordering::Release);
            e.stamp(&e.regular_entry);
            e.regular_rpr.store(u64::from(gic::running_priority()), Ordering::Relaxed);
            // The second regular interrupt first: it must wait for us,
            // although it was raised before the PNMI.
            gic::send_sgi_to_self(gic::SGI_TEST);
            if let Some(r) = crate::mm::prda::of(crate::mm::prda::slot()).map(|p| &p.pnmi.requests) {
                r.fetch_or(REQUEST_TEST, Ordering::AcqRel);
            }
            e.pnmi_sent.store(cycles(), Ordering::Release);
            gic::send_sgi_to_self(gic::SGI_PNMI);
            crate::boot::smp::wait_until(EXPERIMENT_TIMEOUT_MS, || e.pnmi.load(Ordering::Acquire) != 0);
            e.stamp(&e.regular_exit);
        }
        2 => e.stamp(&e.second_regular),
        _ => {}
    }
}

/// The experiment's PNMI.
fn test_pnmi() {
    let now = cycles();
    let Some(e) = experiment() else { return };
    let sent = e.pnmi_sent.load(Ordering::Acquire);
    e.pnmi_latency.store(now.wrapping_sub(sent), Ordering::Relaxed);
    e.pnmi_rpr.store(u64::from(gic::running_priority()), Ordering::Relaxed);
    e.stamp(&e.pnmi);
}

/// The PMU cycle counter (instructions under QEMU's `-icount`).
fn cycles() -> u64 {
    // SAFETY: reading the cycle counter has no side effects; EL2 may
    // always read the PMU.
    unsafe { platform::mrs!("pmccntr_el0") }
}

// ---- Stopping every CPU ------------------------------------------------

/// A stop request: save where this CPU was, then park for good.
fn park(slot: usize, frame: &TrapFrame) -> ! {
    if let (Some(elr), Some(spsr), Some(stopped)) = (
        crate::mm::prda::of(slot).map(|p| &p.pnmi.stopped_elr),
        crate::mm::prda::of(slot).map(|p| &p.pnmi.stopped_spsr),
        crate::mm::prda::of(slot).map(|p| &p.pnmi.stopped),
    ) {
        elr.store(frame.elr, Ordering::Relaxed);
        spsr.store(frame.spsr, Ordering::Relaxed);
        stopped.store(true, Ordering::Release);
    }
    loop {
        platform::arch::wait_for_event();
    }
}

/// How long stopped CPUs get to answer.
const STOP_TIMEOUT_MS: u64 = 500;

/// On a fatal error: stops every other online CPU with a PNMI and, if
/// `report`, prints the state each was stopped in.
pub fn stop_other_cpus(report: bool) {
    if !READY.load(Ordering::Acquire) {
        return;
    }
    let me = crate::mm::prda::slot();
    let cpus = crate::boot::smp::online();
    for slot in (0..cpus).filter(|&s| s != me) {
        if let Some(r) = crate::mm::prda::of(slot).map(|p| &p.pnmi.requests) {
            r.fetch_or(REQUEST_STOP, Ordering::AcqRel);
            gic::send_sgi(gic::SGI_PNMI, crate::boot::smp::mpidr_of(slot));
        }
    }
    if !report {
        return;
    }
    for slot in 0..cpus {
        let mpidr = crate::boot::smp::mpidr_of(slot);
        if slot == me {
            log::error!("CPU {slot} (MPIDR {mpidr:#x}): this CPU, reporting the error");
            continue;
        }
        let stopped = crate::mm::prda::of(slot).map(|p| &p.pnmi.stopped);
        if crate::boot::smp::wait_until(STOP_TIMEOUT_MS, || stopped.is_some_and(|s| s.load(Ordering::Acquire))) {
            let elr = crate::mm::prda::of(slot).map(|p| &p.pnmi.stopped_elr).map_or(0, |v| v.load(Ordering::Relaxed));
            let spsr = crate::mm::prda::of(slot).map(|p| &p.pnmi.stopped_spsr).map_or(0, |v| v.load(Ordering::Relaxed));
            log::error!(
                "CPU {slot} (MPIDR {mpidr:#x}): stopped by PNMI at {} ELR {elr:#x} SPSR {spsr:#x}, {} ticks, {} lockups",
                platform::arch::ExceptionLevel::from_spsr(spsr),
                crate::mm::prda::of(slot).map(|p| &p.pnmi.ticks).map_or(0, |t| t.load(Ordering::Relaxed)),
                lockups(slot),
            );
        } else {
            log::error!("CPU {slot} (MPIDR {mpidr:#x}): did not answer the stop PNMI within {STOP_TIMEOUT_MS} ms");
        }
    }
}
