//! The guest side of the vCPU scheduler's tests: a CPU-bound mode, and
//! interrupt checks meant to stay exact when this VM's vCPUs share physical
//! CPUs with other VMs' (preempted at the end of a time slice, woken by
//! their interrupts).
//!
//! - `stub=spin=MS` ([`spin`]): instead of the checks, vCPU 0 alone (no
//!   other vCPU is started) busy-loops with IRQs masked until its virtual
//!   counter has advanced MS milliseconds, counting iterations, prints one
//!   [`SpinReport`] line and powers off with exit status 0. Two such VMs on
//!   one CPU get iteration counts in the ratio of their CPU shares.
//! - `sched-timer-late`: 5 times, with `PSTATE.I` masked, the virtual timer
//!   is armed 1 ms ahead and the vCPU busy-waits 30 ms of virtual counter
//!   (long enough to be descheduled meanwhile by a scheduler with 10 ms
//!   slices); once IRQs are unmasked exactly one timer interrupt is taken,
//!   with the timer condition met (`ISTATUS`) and the counter at or past
//!   the compare value.
//! - `sched-timer-wake`: 20 times, the virtual timer is armed 2 ms ahead
//!   and the vCPU sleeps in `WFI` until its handler has run: 20 interrupts
//!   exactly, none before its deadline. The lateness of each (`CNTVCT_EL0`
//!   read first thing in the handler minus `CNTV_CVAL_EL0`) goes into one
//!   [`TimerLateness`] line: median and worst, in counter ticks.
//! - `sched-sgi-wake` (at least 2 vCPUs, skipped otherwise): vCPU 1 sleeps
//!   in `WFI` waiting for SGIs; vCPU 0 sends 50, one at a time, each only
//!   once vCPU 1 has counted the one before: exactly 50 counted.
//! - `sched-spi-wake`: a passed-through SPI wakes an idle vCPU. The PL031
//!   RTC's alarm (match = now + [`ALARM_S`] s, its interrupt unmasked) is
//!   routed to vCPU 0, which sleeps in `WFI` until the handler has run and
//!   cleared it (`RTCICR`): exactly one interrupt, taken with `RTCDR` at or
//!   past the match value. The RTC is the host bridge's PCI function 00:00.0
//!   (its window is BAR0, its SPI what the bridge's `interrupt-map` routes
//!   its pin to) or, without one there (bare QEMU, whose bridge is QEMU's
//!   own), the DTB's `arm,pl031` node. Skipped in a VM with neither (a VM
//!   without the PCI host bridge).
//!
//! None of them is in the default run: `stub=only=sched` runs them
//! (`checks::SCHED_CHECKS`). They pass on bare QEMU too.
//!
//! Bounded waits: a `WFI` returns only when an interrupt is pending, so
//! every sleep here also arms the vCPU's own EL1 physical timer as a
//! watchdog (its PPI enabled, priority [`WATCHDOG_PRIORITY`], below the
//! checks'). When the watchdog ends a sleep, the interrupt waited for is
//! long due; one that was merely late (its vCPU descheduled) is then taken
//! at once with IRQs unmasked, and one that was lost shows as the vCPU
//! turning its loop [`LOST_AFTER_TURNS`] times without taking it (as in
//! `virq`). Waits for another vCPU allow [`HOST_STALL_MS`].
//!
//! Each check restores what it changed: handlers removed, its interrupts
//! disabled (the SPI in the distributor too), both timers off, the RTC's
//! interrupt mask and match register as they were, and `PSTATE.I` masked.

use crate::checks::Failure;
use crate::exceptions::{mask_irqs, unmask_irqs};
use crate::timer::{self, Deadline};
use crate::virq::{self, IrqFailure, HOST_STALL_MS, LOST_AFTER_TURNS, PRIORITY, SETTLE_MS};
use crate::{gic, pci, smp, Env};
use aarch64_cpu::registers::{Readable, Writeable, CNTP_CTL_EL0, CNTP_CVAL_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0};
use arm_gic::IntId;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use platform::board::MAX_CPUS;
use platform::println;
use platform::sched_abi::{SpinReport, TimerLateness, SPIN_BATCH};

/// The watchdog timer's priority: below the checks' own interrupts, so that
/// when both are pending theirs is taken first; above the mailbox kick.
const WATCHDOG_PRIORITY: u8 = 0xc0;

const LATE_ROUNDS: u64 = 5;
/// How far ahead `sched-timer-late` arms the timer, and how long it then
/// holds IRQs masked.
const LATE_LEAD_MS: u64 = 1;
const LATE_HOLD_MS: u64 = 30;

const WAKE_ROUNDS: usize = 20;
/// How far ahead `sched-timer-wake` arms the timer.
const WAKE_LEAD_MS: u64 = 2;
/// The watchdog of one `sched-timer-wake` sleep.
const WAKE_ROUND_MS: u64 = 1000;

/// The SGI `sched-sgi-wake` sends (the `virq` checks use 2..=6, the
/// benchmark 9).
const WAKE_SGI: u32 = 7;
/// The vCPU that sleeps for it.
const SGI_CPU: usize = 1;
const SGI_ROUNDS: u64 = 50;

/// How many seconds ahead `sched-spi-wake` sets the RTC's match register.
pub const ALARM_S: u64 = 2;
/// The DTB `compatible` of the PL031 (bare QEMU's board has one).
const PL031_COMPATIBLE: &str = "arm,pl031";
/// The GIC binding's type cell for an SPI, whose number counts from INTID 32.
const GIC_SPEC_SPI: u32 = 0;
const SPI_BASE: u32 = 32;
/// INTIDs from here on are special: no SPI.
const FIRST_SPECIAL_INTID: u32 = 1020;

/// `CNTx_CTL_EL0` bits as the handlers read them.
const CTL_ENABLE: u64 = 1 << 0;
const CTL_ISTATUS: u64 = 1 << 2;

/// What a scheduler check found.
#[derive(Clone, Copy, Debug)]
pub enum SchedFailure {
    /// In round `round` of `rounds`, `what` did not happen within `ms`.
    Missing { what: &'static str, round: u64, rounds: u64, ms: u64 },
    /// `got` `what`, where exactly `expected` were due (in round `round`,
    /// counting from 1; 0 for the whole check).
    Count { what: &'static str, got: u64, expected: u64, round: u64 },
    /// In round `round` the timer interrupt was taken `by` counter ticks
    /// before its compare value.
    Early { round: u64, by: u64 },
    /// In round `round` the handler found `CNTV_CTL_EL0` = `ctl`: the timer
    /// condition not met (or the timer off).
    NoCondition { round: u64, ctl: u64 },
    /// The RTC alarm's interrupt (INTID `intid`, found through `source`)
    /// did not come within `ms`.
    NoAlarm { intid: u32, source: &'static str, ms: u64 },
    /// The alarm's interrupt was taken with `RTCDR` = `got`, before the
    /// match value `expected`.
    AlarmEarly { expected: u64, got: u64 },
    /// The alarm's interrupt was taken with `RTCMIS` = `mis`: not the
    /// alarm's.
    AlarmNotRaised { mis: u64 },
}

impl core::fmt::Display for SchedFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Missing { what, round, rounds, ms } => {
                write!(f, "round {round} of {rounds}: no {what} within {ms} ms")
            }
            Self::Count { what, got, expected, round: 0 } => write!(f, "{got} {what}, expected exactly {expected}"),
            Self::Count { what, got, expected, round } => {
                write!(f, "round {round}: {got} {what}, expected exactly {expected}")
            }
            Self::Early { round, by } => write!(
                f,
                "round {round}: virtual timer interrupt taken {by} counter ticks before its deadline \
                 (CNTVCT_EL0 < CNTV_CVAL_EL0 in the handler)"
            ),
            Self::NoCondition { round, ctl } => write!(
                f,
                "round {round}: virtual timer interrupt taken with CNTV_CTL_EL0 = {ctl:#x} \
                 (ENABLE and ISTATUS must both be set)"
            ),
            Self::NoAlarm { intid, source, ms } => {
                write!(f, "no interrupt from the PL031 alarm (INTID {intid}, from {source}) within {ms} ms")
            }
            Self::AlarmEarly { expected, got } => {
                write!(f, "the PL031 alarm interrupt was taken with RTCDR = {got}, before the match value {expected}")
            }
            Self::AlarmNotRaised { mis } => {
                write!(f, "the PL031 alarm interrupt was taken with RTCMIS = {mis:#x} (the alarm bit clear)")
            }
        }
    }
}

impl From<SchedFailure> for Failure {
    fn from(failure: SchedFailure) -> Self {
        Failure::Sched(failure)
    }
}

fn gic_error(cpu: usize) -> impl Fn(gic::Unavailable) -> Failure {
    move |why| IrqFailure::Gic { cpu, why }.into()
}

/// The end of every check: IRQs masked, and no stray interrupt seen.
fn finish(result: Result<(), Failure>) -> Result<(), Failure> {
    mask_irqs();
    result?;
    virq::finish(Ok(()))
}

// --- stub=spin=MS -----------------------------------------------------------

/// `stub=spin=MS`, on vCPU 0 with no other vCPU started: busy-loops with
/// IRQs masked for `ms` milliseconds of virtual counter, then prints the
/// one [`SpinReport`] line. Returns the exit status (0: a spin run passes).
pub fn spin(ms: u64) -> u32 {
    mask_irqs();
    let frequency = timer::frequency();
    let start = timer::virtual_now();
    let iterations = spin_until(start.saturating_add(timer::ms_to_ticks(ms)));
    let ticks = timer::virtual_now().wrapping_sub(start);
    println!("{}", SpinReport { ms, iterations, ticks, frequency });
    0
}

/// Turns a loop of a few ALU operations until the virtual count reaches
/// `end`, reading the counter once per [`SPIN_BATCH`] iterations; the
/// iterations done (at least one batch). Written out in assembly so that
/// its cost does not depend on the compiler.
fn spin_until(end: u64) -> u64 {
    let iterations: u64;
    // SAFETY: registers only: the counter is read, no memory is touched,
    // the stack is not used.
    unsafe {
        core::arch::asm!(
            "mov {n}, xzr",
            "2:",
            "mov {i}, #{batch}",
            "3:",
            "add {acc}, {acc}, {i}",
            "eor {acc}, {acc}, {acc}, lsr #7",
            "subs {i}, {i}, #1",
            "b.ne 3b",
            "add {n}, {n}, #{batch}",
            "mrs {now}, cntvct_el0",
            "cmp {now}, {end}",
            "b.lo 2b",
            n = out(reg) iterations,
            i = out(reg) _,
            acc = inout(reg) 0u64 => _,
            now = out(reg) _,
            end = in(reg) end,
            batch = const SPIN_BATCH,
            options(nomem, nostack),
        );
    }
    iterations
}

// --- the watchdog: this vCPU's EL1 physical timer ------------------------

/// Per vCPU: its watchdog expired since it was last armed.
static WATCHDOG_FIRED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// The physical timer's handler: turns it off; an expiry (the condition
/// met) is noted. An interrupt without the condition is one presented
/// before the timer was disarmed, and ends nothing.
fn watchdog_handler(_: IntId) {
    let ctl = CNTP_CTL_EL0.get();
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::CLEAR + CNTP_CTL_EL0::IMASK::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    if ctl & (CTL_ENABLE | CTL_ISTATUS) == CTL_ENABLE | CTL_ISTATUS {
        WATCHDOG_FIRED[smp::this_cpu()].store(true, Ordering::SeqCst);
    }
}

/// Arms this vCPU's watchdog `ms` milliseconds of physical counter ahead.
fn watchdog_arm(ms: u64) {
    WATCHDOG_FIRED[smp::this_cpu()].store(false, Ordering::SeqCst);
    CNTP_CVAL_EL0.set(timer::physical_now().saturating_add(timer::ms_to_ticks(ms)));
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::SET + CNTP_CTL_EL0::IMASK::CLEAR);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

fn watchdog_disarm() {
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::CLEAR + CNTP_CTL_EL0::IMASK::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

fn watchdog_fired() -> bool {
    WATCHDOG_FIRED[smp::this_cpu()].load(Ordering::SeqCst)
}

/// Routes the physical timer's PPI to the watchdog on vCPU `cpu`.
fn watchdog_on(ppi: IntId, cpu: usize) -> Result<(), Failure> {
    gic::set_handler(ppi, Some(watchdog_handler));
    gic::configure(cpu, ppi, WATCHDOG_PRIORITY, true).map_err(gic_error(cpu))
}

/// Undoes [`watchdog_on`] (the caller has disarmed the timer on `cpu`).
fn watchdog_off(ppi: IntId, cpu: usize) {
    let _ = gic::configure(cpu, ppi, WATCHDOG_PRIORITY, false);
    gic::set_handler(ppi, None);
}

// --- waiting ---------------------------------------------------------------

/// Sleeps in `WFI` until `done()` or this vCPU's (armed) watchdog fired;
/// whether `done()`. Called and returns with IRQs masked: the condition is
/// checked masked, so an interrupt that arrives between the check and the
/// `WFI` stays pending and ends it, and is taken right after.
fn sleep_until(done: impl Fn() -> bool) -> bool {
    loop {
        mask_irqs();
        if done() {
            return true;
        }
        if watchdog_fired() {
            return done();
        }
        aarch64_cpu::asm::wfi();
        unmask_irqs();
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    }
}

/// Waits with IRQs unmasked until `done()`, for an interrupt that is due
/// already: it is lost once this vCPU has turned the loop
/// [`LOST_AFTER_TURNS`] times without taking it (or after
/// [`HOST_STALL_MS`]). Returns with IRQs masked; whether `done()`.
fn take_due(done: impl Fn() -> bool) -> bool {
    let cap = Deadline::after_ms(HOST_STALL_MS);
    unmask_irqs();
    let mut turns = 0u64;
    let taken = loop {
        if done() {
            break true;
        }
        if turns > LOST_AFTER_TURNS || cap.passed() {
            break done();
        }
        turns += 1;
        core::hint::spin_loop();
    };
    mask_irqs();
    taken
}

/// Keeps IRQs unmasked for [`SETTLE_MS`], for a doubled interrupt to show.
fn settle() {
    unmask_irqs();
    timer::delay_ms(SETTLE_MS);
    mask_irqs();
}

fn elapsed_ms(since: u64) -> u64 {
    timer::ticks_to_ms(timer::physical_now().saturating_sub(since))
}

// --- one-shot virtual timer (vCPU 0) ---------------------------------------

/// Most one-shot interrupts recorded one by one.
const SHOTS: usize = 32;
/// One-shot interrupts taken since [`shots_reset`].
static SHOT_TAKEN: AtomicU64 = AtomicU64::new(0);
/// Per interrupt: `CNTVCT_EL0`, `CNTV_CVAL_EL0` and `CNTV_CTL_EL0` as the
/// handler found them.
static SHOT_SEEN: [[AtomicU64; 3]; SHOTS] = [const { [const { AtomicU64::new(0) }; 3] }; SHOTS];

fn shots_reset() {
    SHOT_TAKEN.store(0, Ordering::SeqCst);
}

fn shots_taken() -> u64 {
    SHOT_TAKEN.load(Ordering::SeqCst)
}

/// `(CNTVCT, CVAL, CTL)` the handler saw at its interrupt `index`.
fn shot(index: u64) -> [u64; 3] {
    SHOT_SEEN.get(index as usize).map_or([0; 3], |seen| seen.each_ref().map(|v| v.load(Ordering::SeqCst)))
}

/// The virtual timer's handler for the one-shot checks: notes the counter
/// first, then what the timer says, and turns it off, so that its output
/// drops before the EOI (a second interrupt for the same deadline would be
/// one injected twice).
fn oneshot_handler(_: IntId) {
    let now = timer::virtual_now();
    let ctl = CNTV_CTL_EL0.get();
    let cval = CNTV_CVAL_EL0.get();
    timer::tick_stop();
    let index = SHOT_TAKEN.fetch_add(1, Ordering::SeqCst);
    if let Some(seen) = SHOT_SEEN.get(index as usize) {
        for (slot, value) in seen.iter().zip([now, cval, ctl]) {
            slot.store(value, Ordering::SeqCst);
        }
    }
}

/// Arms the virtual timer for the virtual count `cval`.
fn arm_virtual(cval: u64) {
    CNTV_CVAL_EL0.set(cval);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Interrupt `index` (round `index + 1`) met its timer condition and came
/// no earlier than its compare value; its lateness in counter ticks.
fn check_shot(index: u64) -> Result<u64, SchedFailure> {
    let [now, cval, ctl] = shot(index);
    let round = index + 1;
    if ctl & (CTL_ENABLE | CTL_ISTATUS) != CTL_ENABLE | CTL_ISTATUS {
        return Err(SchedFailure::NoCondition { round, ctl });
    }
    if now < cval {
        return Err(SchedFailure::Early { round, by: cval - now });
    }
    Ok(now - cval)
}

/// Runs `rounds` with the virtual timer's PPI routed to
/// [`oneshot_handler`] on vCPU 0 (and the watchdog, if given), then puts
/// everything back.
fn with_oneshot(env: &Env, watchdog: bool, rounds: impl FnOnce() -> Result<(), Failure>) -> Result<(), Failure> {
    virq::boot_gic()?;
    let ppi = env.virtual_timer.map_err(IrqFailure::NoTimer)?;
    let watchdog = if watchdog { Some(env.physical_timer.map_err(IrqFailure::NoTimer)?) } else { None };
    mask_irqs();
    shots_reset();
    gic::set_handler(ppi, Some(oneshot_handler));
    let result = gic::configure(0, ppi, PRIORITY, true)
        .map_err(gic_error(0))
        .and_then(|()| watchdog.map_or(Ok(()), |ppi| watchdog_on(ppi, 0)))
        .and_then(|()| rounds());
    mask_irqs();
    timer::tick_stop();
    watchdog_disarm();
    let _ = gic::configure(0, ppi, PRIORITY, false);
    gic::set_handler(ppi, None);
    if let Some(ppi) = watchdog {
        watchdog_off(ppi, 0);
    }
    finish(result)
}

// --- sched-timer-late --------------------------------------------------------

pub fn timer_late(env: &Env) -> Result<(), Failure> {
    with_oneshot(env, false, late_rounds)
}

fn late_rounds() -> Result<(), Failure> {
    let lead = timer::ms_to_ticks(LATE_LEAD_MS).max(1);
    let hold = timer::ms_to_ticks(LATE_HOLD_MS);
    for round in 0..LATE_ROUNDS {
        mask_irqs();
        let start = timer::virtual_now();
        arm_virtual(start + lead);
        while timer::virtual_now().wrapping_sub(start) < hold {
            core::hint::spin_loop();
        }
        if shots_taken() != round {
            let what = "virtual timer interrupts taken while PSTATE.I was masked";
            return Err(SchedFailure::Count { what, got: shots_taken() - round, expected: 0, round: round + 1 }.into());
        }
        let unmasked = timer::physical_now();
        if !take_due(|| shots_taken() > round) {
            let what = "virtual timer interrupt (due for 29 ms when PSTATE.I was unmasked)";
            let ms = elapsed_ms(unmasked);
            return Err(SchedFailure::Missing { what, round: round + 1, rounds: LATE_ROUNDS, ms }.into());
        }
        settle();
        let got = shots_taken() - round;
        if got != 1 {
            let what = "virtual timer interrupts for one deadline";
            return Err(SchedFailure::Count { what, got, expected: 1, round: round + 1 }.into());
        }
        check_shot(round)?;
    }
    Ok(())
}

// --- sched-timer-wake --------------------------------------------------------

pub fn timer_wake(env: &Env) -> Result<(), Failure> {
    with_oneshot(env, true, wake_rounds)
}

fn wake_rounds() -> Result<(), Failure> {
    let lead = timer::ms_to_ticks(WAKE_LEAD_MS).max(1);
    let rounds = WAKE_ROUNDS as u64;
    let mut lateness = [0u64; WAKE_ROUNDS];
    for (round, late) in (0..rounds).zip(lateness.iter_mut()) {
        mask_irqs();
        let start = timer::physical_now();
        arm_virtual(timer::virtual_now() + lead);
        watchdog_arm(WAKE_ROUND_MS);
        let woke = sleep_until(|| shots_taken() > round);
        watchdog_disarm();
        // The watchdog ended the sleep: the deadline is long past, so the
        // interrupt, unless lost, is pending (or about to be) now.
        if !woke && !take_due(|| shots_taken() > round) {
            let what = "virtual timer interrupt ending WFI (armed 2 ms ahead)";
            return Err(SchedFailure::Missing { what, round: round + 1, rounds, ms: elapsed_ms(start) }.into());
        }
        let got = shots_taken() - round;
        if got != 1 {
            let what = "virtual timer interrupts for one deadline";
            return Err(SchedFailure::Count { what, got, expected: 1, round: round + 1 }.into());
        }
        *late = check_shot(round)?;
    }
    settle();
    lateness.sort_unstable();
    let (median, worst) = (lateness[WAKE_ROUNDS / 2], lateness[WAKE_ROUNDS - 1]);
    println!("{}", TimerLateness { wakes: rounds, median, worst, frequency: timer::frequency() });
    if shots_taken() != rounds {
        let what = "virtual timer interrupts taken";
        return Err(SchedFailure::Count { what, got: shots_taken(), expected: rounds, round: 0 }.into());
    }
    Ok(())
}

// --- sched-sgi-wake ----------------------------------------------------------

/// Per vCPU: [`WAKE_SGI`]s taken.
static SGI_TAKEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Tells the sleeping vCPU to give up (vCPU 0 gave up on it).
static SGI_STOP: AtomicBool = AtomicBool::new(false);

fn sgi_wake_handler(_: IntId) {
    SGI_TAKEN[smp::this_cpu()].fetch_add(1, Ordering::SeqCst);
}

fn sgis_taken(cpu: usize) -> u64 {
    SGI_TAKEN[cpu].load(Ordering::SeqCst)
}

pub fn sgi_wake(env: &Env) -> Result<(), Failure> {
    virq::boot_gic()?;
    if smp::count() < 2 {
        return Err(Failure::Skip("needs at least 2 vCPUs; this VM has 1"));
    }
    let watchdog = env.physical_timer.map_err(IrqFailure::NoTimer)?;
    smp::status(SGI_CPU).map_err(|why| IrqFailure::Cpu { cpu: SGI_CPU, why })?;
    gic::cpu_status(SGI_CPU).map_err(gic_error(SGI_CPU))?;
    let sgi = IntId::sgi(WAKE_SGI);
    gic::set_handler(sgi, Some(sgi_wake_handler));
    let result = gic::configure(SGI_CPU, sgi, PRIORITY, true)
        .map_err(gic_error(SGI_CPU))
        .and_then(|()| watchdog_on(watchdog, SGI_CPU))
        .and_then(|()| sgi_rounds());
    mask_irqs();
    // The job has ended (or never will: its wait failed the check), and
    // with it the watchdog on vCPU 1.
    let _ = gic::configure(SGI_CPU, sgi, PRIORITY, false);
    watchdog_off(watchdog, SGI_CPU);
    gic::set_handler(sgi, None);
    finish(result)
}

fn sgi_rounds() -> Result<(), Failure> {
    for taken in &SGI_TAKEN {
        taken.store(0, Ordering::SeqCst);
    }
    SGI_STOP.store(false, Ordering::SeqCst);
    smp::post(SGI_CPU, sgi_sleeper, SGI_ROUNDS).map_err(|why| IrqFailure::Job { cpu: SGI_CPU, why })?;
    let mut result = Ok(());
    for round in 1..=SGI_ROUNDS {
        let sent = timer::physical_now();
        gic::send_sgi(WAKE_SGI, SGI_CPU);
        // vCPU 1 has to run to take it: allow for the host.
        if !timer::wait_until(Deadline::after_ms(HOST_STALL_MS), || sgis_taken(SGI_CPU) >= round) {
            let what = "SGI taken by vCPU 1 (sleeping in WFI)";
            result = Err(SchedFailure::Missing { what, round, rounds: SGI_ROUNDS, ms: elapsed_ms(sent) });
            break;
        }
    }
    if result.is_err() {
        SGI_STOP.store(true, Ordering::SeqCst);
        gic::send_sgi(smp::KICK_SGI, SGI_CPU);
    }
    let job = smp::wait(SGI_CPU, Deadline::after_ms(2 * HOST_STALL_MS));
    // vCPU 1 now idles in its mailbox loop, IRQs unmasked and the handler
    // still there: a doubled SGI would show.
    timer::delay_ms(SETTLE_MS);
    result?;
    job.map_err(|why| IrqFailure::Job { cpu: SGI_CPU, why })?;
    let got = sgis_taken(SGI_CPU);
    if got != SGI_ROUNDS {
        let what = "SGIs taken by vCPU 1";
        return Err(SchedFailure::Count { what, got, expected: SGI_ROUNDS, round: 0 }.into());
    }
    let elsewhere: u64 = (0..smp::count()).filter(|&cpu| cpu != SGI_CPU).map(sgis_taken).sum();
    if elsewhere != 0 {
        let what = "SGIs for vCPU 1 taken by other vCPUs";
        return Err(SchedFailure::Count { what, got: elsewhere, expected: 0, round: 0 }.into());
    }
    Ok(())
}

/// vCPU 1's job: sleeps in `WFI` until it has taken `rounds` SGIs (or vCPU
/// 0 gives up, or its watchdog fires after twice [`HOST_STALL_MS`] without
/// one); how many times it slept.
fn sgi_sleeper(rounds: u64) -> u64 {
    let me = smp::this_cpu();
    let mut sleeps = 0;
    loop {
        mask_irqs();
        if sgis_taken(me) >= rounds || SGI_STOP.load(Ordering::SeqCst) || watchdog_fired() {
            break;
        }
        watchdog_arm(2 * HOST_STALL_MS);
        aarch64_cpu::asm::wfi();
        sleeps += 1;
        unmask_irqs();
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    }
    watchdog_disarm();
    unmask_irqs();
    sleeps
}

// --- sched-spi-wake ----------------------------------------------------------

/// The PL031 the check uses.
struct Rtc {
    /// Its register window.
    base: u64,
    /// Its interrupt's INTID (an SPI).
    intid: u32,
    /// Where it was found, for the failure messages.
    source: &'static str,
}

/// The DTB's `arm,pl031` node (bare QEMU's board has one; a VM of the
/// hypervisor gets its PL031 only behind the PCI host bridge): its register
/// window and its interrupt as an SPI INTID, or why that is unknown.
pub fn pl031_node(fdt: &fdt::Fdt) -> Option<pci::Pl031> {
    let node = fdt.find_compatible(&[PL031_COMPATIBLE])?;
    let base = node.reg()?.next()?.starting_address as u64;
    let spi = || -> Result<u32, &'static str> {
        let interrupts = node.property("interrupts").ok_or("the arm,pl031 node has no interrupts")?.value;
        let mut cells = interrupts.chunks_exact(4).map(|b| b.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)));
        let (kind, number) = (cells.next(), cells.next());
        match (kind, number.and_then(|n| n.checked_add(SPI_BASE))) {
            (Some(GIC_SPEC_SPI), Some(intid)) if intid < FIRST_SPECIAL_INTID => Ok(intid),
            _ => Err("the arm,pl031 node's interrupt is not a GIC SPI"),
        }
    };
    Some(pci::Pl031 { base, spi: spi() })
}

/// The PL031 to use: the host bridge's function 00:00.0, else the DTB's
/// node; [`Failure::Skip`] when there is neither.
fn find_rtc(env: &Env) -> Result<Rtc, Failure> {
    let found = match env.ecam {
        Ok(_) => pci::pl031_function(env)?.map(|rtc| (rtc, "the PCI host bridge's interrupt-map")),
        Err(_) => None,
    };
    let found = found.or_else(|| env.pl031.map(|rtc| (rtc, "the DTB's arm,pl031 node")));
    match found {
        Some((pci::Pl031 { base, spi }, source)) => {
            let intid = spi.map_err(Failure::Missing)?;
            if !(SPI_BASE..FIRST_SPECIAL_INTID).contains(&intid) {
                return Err(Failure::Missing("the PL031's interrupt is not an SPI"));
            }
            Ok(Rtc { base, intid, source })
        }
        None if env.ecam.is_err() => Err(Failure::Skip("this VM has no PCI host bridge")),
        None => Err(Failure::Skip("the PCI host bridge has no PL031 at 00:00.0 and the DTB no arm,pl031 node")),
    }
}

/// The PL031 registers the handler touches, and what it saw.
static RTC_BASE: AtomicU64 = AtomicU64::new(0);
static RTC_TAKEN: AtomicU64 = AtomicU64::new(0);
/// `RTCDR` and `RTCMIS` at the first interrupt.
static RTC_SEEN_DR: AtomicU64 = AtomicU64::new(0);
static RTC_SEEN_MIS: AtomicU64 = AtomicU64::new(0);

fn rtc_taken() -> u64 {
    RTC_TAKEN.load(Ordering::SeqCst)
}

/// The alarm's handler: notes the time and the interrupt status, then
/// clears the interrupt in the RTC and reads it back, so that the line has
/// dropped before the EOI (else the level would raise it again).
fn rtc_handler(_: IntId) {
    use pci::primecell::{PL031_ALARM, PL031_RTCDR, PL031_RTCICR, PL031_RTCMIS};
    let base = RTC_BASE.load(Ordering::SeqCst);
    let register = |offset: u64| (base + offset) as *mut u32;
    // SAFETY: the PL031's register window, which the check read and wrote
    // from thread code before it enabled this interrupt; 32-bit accesses
    // to its registers, nothing of the stub's lives there.
    let (dr, mis) = unsafe {
        let dr = core::ptr::read_volatile(register(PL031_RTCDR));
        let mis = core::ptr::read_volatile(register(PL031_RTCMIS));
        core::ptr::write_volatile(register(PL031_RTCICR), PL031_ALARM as u32);
        let _ = core::ptr::read_volatile(register(PL031_RTCMIS));
        (dr, mis)
    };
    if RTC_TAKEN.fetch_add(1, Ordering::SeqCst) == 0 {
        RTC_SEEN_DR.store(dr.into(), Ordering::SeqCst);
        RTC_SEEN_MIS.store(mis.into(), Ordering::SeqCst);
    }
}

const RTC_ABORTED: &str = "an access to the PL031's registers aborted";

fn rtc_load(rtc: &Rtc, offset: u64) -> Result<u64, Failure> {
    pci::load(rtc.base + offset, pci::Width::Word).map_err(|caught| Failure::Exception { what: RTC_ABORTED, caught })
}

fn rtc_store(rtc: &Rtc, offset: u64, value: u64) -> Result<(), Failure> {
    pci::store(rtc.base + offset, pci::Width::Word, value)
        .map_err(|caught| Failure::Exception { what: RTC_ABORTED, caught })
}

pub fn spi_wake(env: &Env) -> Result<(), Failure> {
    use pci::primecell::{PL031_ALARM, PL031_RTCICR, PL031_RTCIMSC, PL031_RTCMR};
    let rtc = find_rtc(env)?;
    virq::boot_gic()?;
    let watchdog = env.physical_timer.map_err(IrqFailure::NoTimer)?;
    let intid = IntId::spi(rtc.intid - SPI_BASE);
    // The RTC as it is, to put back.
    let (imsc, mr) = (rtc_load(&rtc, PL031_RTCIMSC)?, rtc_load(&rtc, PL031_RTCMR)?);
    mask_irqs();
    rtc_store(&rtc, PL031_RTCIMSC, 0)?;
    rtc_store(&rtc, PL031_RTCICR, PL031_ALARM)?;
    RTC_BASE.store(rtc.base, Ordering::SeqCst);
    RTC_TAKEN.store(0, Ordering::SeqCst);
    gic::set_handler(intid, Some(rtc_handler));
    let result = gic::configure_spi(intid, PRIORITY, 0, true)
        .map_err(gic_error(0))
        .and_then(|()| watchdog_on(watchdog, 0))
        .and_then(|()| alarm(&rtc));
    mask_irqs();
    watchdog_disarm();
    // The alarm's interrupt off first, then the match register as it was
    // (writing it sets the alarm again), whatever that raised cleared, and
    // the mask as it was.
    let restored = rtc_store(&rtc, PL031_RTCIMSC, 0)
        .and_then(|()| rtc_store(&rtc, PL031_RTCMR, mr))
        .and_then(|()| rtc_store(&rtc, PL031_RTCICR, PL031_ALARM))
        .and_then(|()| rtc_store(&rtc, PL031_RTCIMSC, imsc));
    let _ = gic::configure_spi(intid, PRIORITY, 0, false);
    gic::set_handler(intid, None);
    watchdog_off(watchdog, 0);
    finish(result.and(restored))
}

/// Sets the alarm [`ALARM_S`] seconds ahead, sleeps until its interrupt
/// has been handled, and checks what the handler saw.
fn alarm(rtc: &Rtc) -> Result<(), Failure> {
    use pci::primecell::{PL031_ALARM, PL031_RTCDR, PL031_RTCIMSC, PL031_RTCMR};
    let match_value = (rtc_load(rtc, PL031_RTCDR)? + ALARM_S) & u64::from(u32::MAX);
    let start = timer::physical_now();
    rtc_store(rtc, PL031_RTCMR, match_value)?;
    rtc_store(rtc, PL031_RTCIMSC, PL031_ALARM)?;
    watchdog_arm(ALARM_S * 1000 + HOST_STALL_MS);
    let woke = sleep_until(|| rtc_taken() > 0);
    watchdog_disarm();
    if !woke && !take_due(|| rtc_taken() > 0) {
        return Err(SchedFailure::NoAlarm { intid: rtc.intid, source: rtc.source, ms: elapsed_ms(start) }.into());
    }
    settle();
    let got = rtc_taken();
    if got != 1 {
        let what = "PL031 alarm interrupts for one alarm";
        return Err(SchedFailure::Count { what, got, expected: 1, round: 0 }.into());
    }
    let (dr, mis) = (RTC_SEEN_DR.load(Ordering::SeqCst), RTC_SEEN_MIS.load(Ordering::SeqCst));
    // RTCDR is 32 bits and wraps: "at or past" is a difference below half
    // its range.
    if dr.wrapping_sub(match_value) & u64::from(u32::MAX) >= 1 << 31 {
        return Err(SchedFailure::AlarmEarly { expected: match_value, got: dr }.into());
    }
    if mis & PL031_ALARM == 0 {
        return Err(SchedFailure::AlarmNotRaised { mis }.into());
    }
    Ok(())
}
