//! The interrupt checks: the guest's virtual GIC and virtual timer, seen
//! from EL1 through a standard driver.
//!
//! - `virq-timer`: the virtual timer, re-armed with absolute compare
//!   values, delivers at least [`TICKS_WANTED`] interrupts through the GIC.
//! - `virq-sgi`: an SGI crosses from the boot vCPU to each other vCPU, and
//!   one comes back from each (a self-SGI with a single vCPU).
//! - `virq-priority`: a higher priority preempts a lower one's handler, and
//!   a lower one does not preempt a higher one's.
//! - `virq-no-loss`: for [`NO_LOSS_MS`] every vCPU runs its timer while the
//!   boot vCPU keeps SGIs flowing to the others; every deadline is served
//!   and every SGI handled exactly once.
//!
//! A timer's count is only as good as the counter it is measured by, so
//! every tick is also held to [`tick_verdict`]: the same `CNTFRQ_EL0` on
//! every vCPU, a virtual counter that advances exactly as the physical one,
//! no interrupt without its timer condition or before its deadline, and no
//! more deadlines served than elapsed.
//!
//! Each check restores what it changed: its interrupts disabled (in the
//! redistributors, or a GICv2's banked distributor registers), handlers
//! removed, timers off, `PSTATE.I` masked on the boot vCPU (as the checks
//! before run). Every wait has a deadline.
//!
//! SGI numbers: [`crate::smp::KICK_SGI`] (0) is the mailbox's; the checks
//! use 2..=6. Priorities: the checks' regular level is [`PRIORITY`] (0xa0),
//! [`HIGH_PRIORITY`] (0x80) preempts it, the kick (0xe0) preempts nothing.

use crate::checks::Failure;
use crate::exceptions::{mask_irqs, unmask_irqs};
use crate::timer::{self, Deadline};
use crate::{gic, smp, Env};
use arm_gic::IntId;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use platform::board::MAX_CPUS;
use platform::println;

/// The checks' regular interrupt priority.
pub(crate) const PRIORITY: u8 = 0xa0;
/// A priority that preempts [`PRIORITY`].
const HIGH_PRIORITY: u8 = 0x80;

const PING_SGI: u32 = 2;
const PONG_SGI: u32 = 3;
const LOW_SGI: u32 = 4;
const HIGH_SGI: u32 = 5;
const NO_LOSS_SGI: u32 = 6;

/// The periodic tick's period.
const TICK_PERIOD_US: u64 = 1000;
const TICKS_WANTED: u64 = 100;
/// Far more than [`TICKS_WANTED`] periods: room for a slow emulator.
const TIMER_TIMEOUT_MS: u64 = 3000;
/// An SGI a vCPU sends to itself, not taken within this, is lost (it needs
/// no other vCPU to run).
const SGI_TIMEOUT_MS: u64 = 1000;
/// After a check's SGIs arrived, how long to watch for a second copy.
pub(crate) const SETTLE_MS: u64 = 10;
/// How long a lower-priority SGI is held off by a higher one's handler.
const HOLD_MS: u64 = 20;
const NO_LOSS_MS: u64 = 2000;
/// How many vCPUs (the boot one included) `virq-no-loss` uses.
const NO_LOSS_CPUS: usize = 4;
/// How long the host may keep a vCPU from running, for the waits that end
/// only when *another* vCPU has run. Under emulation each vCPU is a host
/// thread: measured under the load the suite is designed for (a second
/// `make test` on two cores), a vCPU went up to 1,152 ms without running
/// (taking no interrupt meanwhile), so a wait of 1 s for another vCPU's
/// reaction could not tell a lost interrupt from a descheduled vCPU. These
/// waits allow about ten times the worst stall seen; losses themselves are
/// detected by progress, not time ([`LOST_AFTER_TURNS`]).
pub(crate) const HOST_STALL_MS: u64 = 10_000;
/// An interrupt is lost when its vCPU turns its loop this many times with
/// IRQs unmasked while the interrupt should be pending: a count of the
/// vCPU's own progress, which host scheduling cannot fake. A turn is a few
/// instructions (measured: 100,000 turns can pass in 4 ms, while a
/// physical SGI is still on its way through the emulator), so this allows
/// some tens of milliseconds of the vCPU's own running.
pub(crate) const LOST_AFTER_TURNS: u64 = 10_000_000;

/// What an interrupt check found.
#[derive(Clone, Copy, Debug)]
pub enum IrqFailure {
    /// The GIC, or vCPU `cpu`'s part of it, cannot be used.
    Gic {
        cpu: usize,
        why: gic::Unavailable,
    },
    NoTimer(timer::NoTimer),
    /// A vCPU from the DTB did not come online.
    Cpu {
        cpu: usize,
        why: smp::CpuDown,
    },
    /// A job for vCPU `cpu` did not run to its end.
    Job {
        cpu: usize,
        why: smp::JobError,
    },
    /// Only `got` of `expected` interrupts arrived within `ms`.
    Missing {
        what: &'static str,
        cpu: usize,
        got: u64,
        expected: u64,
        ms: u64,
    },
    /// More interrupts were handled than were raised: `got` `what`, but
    /// only `limit` `limit_what`.
    TooMany {
        cpu: usize,
        got: u64,
        what: &'static str,
        limit: u64,
        limit_what: &'static str,
    },
    /// The virtual counter did not advance as the physical one (the
    /// bracket of physical advances that fits the reads).
    CounterDrift {
        cpu: usize,
        advanced: u64,
        least: u64,
        most: u64,
    },
    /// Another `CNTFRQ_EL0` than the boot vCPU's.
    Frequency {
        cpu: usize,
        got: u64,
        boot: u64,
    },
    /// Timer interrupts taken with `ISTATUS` set before the counter reached
    /// the compare value the handler had written.
    Early {
        cpu: usize,
        count: u64,
    },
    /// An interrupt no check had a handler for.
    Unexpected {
        cpu: usize,
        intid: u32,
    },
    /// Events in the wrong order: each with its sequence number (1 = first,
    /// 0 = never happened).
    Order {
        what: &'static str,
        events: [(&'static str, u64); 4],
    },
    /// Running priorities (`ICC_RPR_EL1`, a GICv2's `GICC_RPR`) that do not
    /// rank as they must.
    Priorities {
        what: &'static str,
        higher: u64,
        lower: u64,
    },
}

impl core::fmt::Display for IrqFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Gic { cpu: 0, why } => write!(f, "{why}"),
            Self::Gic { cpu, why } => write!(f, "vCPU {cpu} (MPIDR {:#x}): {why}", smp::mpidr(cpu)),
            Self::NoTimer(why) => write!(f, "{why}"),
            Self::Cpu { cpu, why } => write!(f, "vCPU {cpu} (MPIDR {:#x}) is not online: {why}", smp::mpidr(cpu)),
            Self::Job { cpu, why } => write!(f, "vCPU {cpu} (MPIDR {:#x}): {why}", smp::mpidr(cpu)),
            Self::Missing { what, cpu, got, expected, ms } => {
                write!(f, "vCPU {cpu}: {got} of {expected} {what} within {ms} ms")
            }
            Self::TooMany { cpu, got, what, limit, limit_what } => {
                write!(f, "vCPU {cpu}: {got} {what}, but only {limit} {limit_what}")
            }
            Self::CounterDrift { cpu, advanced, least, most } => write!(
                f,
                "vCPU {cpu}: the virtual counter advanced {advanced} ticks while the physical one advanced \
                 {least}..={most} (CNTVOFF_EL2 not constant?)"
            ),
            Self::Frequency { cpu, got, boot } => {
                write!(f, "vCPU {cpu}: CNTFRQ_EL0 reads {got} Hz, vCPU 0's {boot} Hz")
            }
            Self::Early { cpu, count } => write!(
                f,
                "vCPU {cpu}: {count} virtual timer interrupts taken with ISTATUS set before the counter reached \
                 the compare value last written (CNTV_CVAL_EL0 not kept?)"
            ),
            Self::Unexpected { cpu, intid } => write!(f, "vCPU {cpu} took INTID {intid}, which no check raised"),
            Self::Order { what, events } => {
                write!(f, "{what}; order seen (0 = never):")?;
                for (name, seq) in events {
                    write!(f, " {name}={seq}")?;
                }
                Ok(())
            }
            Self::Priorities { what, higher, lower } => {
                write!(f, "{what}: running priorities {higher:#x} (higher) vs {lower:#x} (lower)")
            }
        }
    }
}

impl From<IrqFailure> for Failure {
    fn from(failure: IrqFailure) -> Self {
        Failure::Irq(failure)
    }
}

/// The boot vCPU's GIC, or why not.
pub(crate) fn boot_gic() -> Result<(), IrqFailure> {
    gic::cpu_status(0).map_err(|why| IrqFailure::Gic { cpu: 0, why })
}

/// The other vCPUs, each online with its GIC set up; or the first that is
/// not (a check that needs them all fails on it).
pub(crate) fn secondaries() -> Result<core::ops::Range<usize>, IrqFailure> {
    for cpu in 1..smp::count() {
        smp::status(cpu).map_err(|why| IrqFailure::Cpu { cpu, why })?;
        gic::cpu_status(cpu).map_err(|why| IrqFailure::Gic { cpu, why })?;
    }
    Ok(1..smp::count())
}

/// The end of every check: back to masked IRQs, and no stray interrupt
/// seen.
pub(crate) fn finish(result: Result<(), IrqFailure>) -> Result<(), Failure> {
    mask_irqs();
    result?;
    match gic::take_unexpected() {
        Some((cpu, intid)) => Err(IrqFailure::Unexpected { cpu, intid }.into()),
        None => Ok(()),
    }
}

/// `virq-disable-withdraws`: a virtual timer interrupt the hypervisor
/// already put in a list register (this vCPU has IRQs masked, so it waits
/// there) is not taken once the guest disables its PPI and the timer: the
/// GIC does not deliver a disabled interrupt, whatever was pending.
pub fn virq_disable_withdraws(env: &Env) -> Result<(), Failure> {
    use aarch64_cpu::registers::{Readable, Writeable, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0};
    boot_gic()?;
    let ppi = env.virtual_timer.map_err(IrqFailure::NoTimer)?;
    // No handler: taking the interrupt counts as unexpected (`finish`).
    gic::set_handler(ppi, None);
    mask_irqs();
    gic::configure(0, ppi, PRIORITY, true).map_err(|why| IrqFailure::Gic { cpu: 0, why })?;
    CNTV_CVAL_EL0.set(CNTVCT_EL0.get());
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    // Time for the physical interrupt to reach EL2 and a list register.
    timer::delay_ms(SETTLE_MS);
    let disabled = gic::configure(0, ppi, PRIORITY, false).map_err(|why| IrqFailure::Gic { cpu: 0, why });
    CNTV_CTL_EL0.set(0);
    unmask_irqs();
    timer::delay_ms(SETTLE_MS);
    finish(disabled)
}

fn tick_period() -> u64 {
    (timer::frequency() * TICK_PERIOD_US / 1_000_000).max(1)
}

// --- virq-timer ----------------------------------------------------------

pub fn virq_timer(env: &Env) -> Result<(), Failure> {
    boot_gic()?;
    let ppi = env.virtual_timer.map_err(IrqFailure::NoTimer)?;
    gic::set_handler(ppi, Some(timer::tick_handler));
    let result = gic::configure(0, ppi, PRIORITY, true)
        .map_err(|why| IrqFailure::Gic { cpu: 0, why })
        .and_then(|()| count_ticks());
    mask_irqs();
    timer::tick_stop();
    let _ = gic::configure(0, ppi, PRIORITY, false);
    gic::set_handler(ppi, None);
    finish(result)
}

fn count_ticks() -> Result<(), IrqFailure> {
    let start = timer::physical_now();
    timer::tick_start(tick_period());
    unmask_irqs();
    let done = timer::wait_until(Deadline::after_ms(TIMER_TIMEOUT_MS), || timer::tick_handled() >= TICKS_WANTED);
    mask_irqs();
    timer::tick_finish();
    let report = timer::tick_report(0);
    if !done {
        let ms = timer::ticks_to_ms(timer::physical_now() - start);
        return Err(IrqFailure::Missing {
            what: "virtual timer interrupts (1 ms period)",
            cpu: 0,
            got: report.handled,
            expected: TICKS_WANTED,
            ms,
        });
    }
    tick_verdict(0, &report, report.frequency)
}

/// What a finished tick must show beyond its count: the boot vCPU's
/// counter frequency (`boot_frequency`), a virtual counter that kept pace
/// with the physical one, no interrupt without its timer condition or
/// before its deadline, and no more deadlines served than elapsed.
fn tick_verdict(cpu: usize, report: &timer::TickReport, boot_frequency: u64) -> Result<(), IrqFailure> {
    if report.frequency != boot_frequency {
        return Err(IrqFailure::Frequency { cpu, got: report.frequency, boot: boot_frequency });
    }
    if !report.counters_agree() {
        let (start, stop) = (report.start, report.stop);
        return Err(IrqFailure::CounterDrift {
            cpu,
            advanced: stop.virtual_count.wrapping_sub(start.virtual_count),
            least: stop.physical_before.saturating_sub(start.physical_after),
            most: stop.physical_after.saturating_sub(start.physical_before),
        });
    }
    if report.spurious != 0 {
        // Not a failure: a timer interrupt the hypervisor presented (HW list
        // register) cannot be withdrawn when the guest re-arms its timer
        // without trapping, so a guest must take an interrupt without the
        // timer condition as spurious (Linux does). A doubled injection is
        // caught by the counts: `handled` above the deadlines elapsed, or a
        // deadline served early.
        platform::println!(
            "virq: vCPU {cpu}: {} timer interrupt(s) without the timer condition, taken as spurious",
            report.spurious
        );
    }
    if report.early != 0 {
        return Err(IrqFailure::Early { cpu, count: report.early });
    }
    if report.handled > report.due {
        return Err(IrqFailure::TooMany {
            cpu,
            got: report.handled,
            what: "virtual timer interrupts handled with the timer condition met",
            limit: report.due,
            limit_what: "deadlines elapsed on the virtual counter",
        });
    }
    Ok(())
}

// --- virq-sgi ------------------------------------------------------------

/// Per vCPU: pings taken; pongs the boot vCPU took from it.
static PINGS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static PONGS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Who sent the pong the boot vCPU is about to take (GICv3 does not say
/// where an SGI came from; one vCPU is pinged at a time).
static PONG_FROM: AtomicUsize = AtomicUsize::new(0);

fn ping_handler(_: IntId) {
    let me = smp::this_cpu();
    PINGS[me].fetch_add(1, Ordering::SeqCst);
    PONG_FROM.store(me, Ordering::SeqCst);
    gic::send_sgi(PONG_SGI, 0);
}

fn pong_handler(_: IntId) {
    PONGS[PONG_FROM.load(Ordering::SeqCst)].fetch_add(1, Ordering::SeqCst);
}

pub fn virq_sgi(_: &Env) -> Result<(), Failure> {
    boot_gic()?;
    let others = secondaries()?;
    // With one vCPU, the boot vCPU pings itself.
    let targets = if others.is_empty() { 0..1 } else { others };
    gic::set_handler(IntId::sgi(PING_SGI), Some(ping_handler));
    gic::set_handler(IntId::sgi(PONG_SGI), Some(pong_handler));
    let result = targets.clone().try_for_each(ping_pong);
    mask_irqs();
    for cpu in targets.clone() {
        let _ = gic::configure(cpu, IntId::sgi(PING_SGI), PRIORITY, false);
    }
    let _ = gic::configure(0, IntId::sgi(PONG_SGI), PRIORITY, false);
    gic::set_handler(IntId::sgi(PING_SGI), None);
    gic::set_handler(IntId::sgi(PONG_SGI), None);
    if result.is_ok() && targets == (0..1) {
        println!("virq-sgi: 1 vCPU, so a self-SGI only; SGIs between vCPUs need at least 2");
    }
    finish(result)
}

/// vCPU 0 pings `cpu`, which pongs back.
fn ping_pong(cpu: usize) -> Result<(), IrqFailure> {
    let gic_error = |cpu| move |why| IrqFailure::Gic { cpu, why };
    gic::configure(cpu, IntId::sgi(PING_SGI), PRIORITY, true).map_err(gic_error(cpu))?;
    gic::configure(0, IntId::sgi(PONG_SGI), PRIORITY, true).map_err(gic_error(0))?;
    PINGS[cpu].store(0, Ordering::SeqCst);
    PONGS[cpu].store(0, Ordering::SeqCst);
    let start = timer::physical_now();
    unmask_irqs();
    gic::send_sgi(PING_SGI, cpu);
    // The other vCPU has to run to answer: allow for the host.
    let arrived = timer::wait_until(Deadline::after_ms(HOST_STALL_MS), || PONGS[cpu].load(Ordering::SeqCst) != 0);
    // Time for a doubled SGI to show.
    timer::delay_ms(SETTLE_MS);
    mask_irqs();
    let ms = timer::ticks_to_ms(timer::physical_now() - start);
    let (pings, pongs) = (PINGS[cpu].load(Ordering::SeqCst), PONGS[cpu].load(Ordering::SeqCst));
    if !arrived && pings == 0 {
        return Err(IrqFailure::Missing { what: "SGIs from vCPU 0", cpu, got: 0, expected: 1, ms });
    }
    if !arrived {
        return Err(IrqFailure::Missing {
            what: "SGIs sent back by this vCPU taken by vCPU 0",
            cpu,
            got: 0,
            expected: 1,
            ms,
        });
    }
    if pings > 1 {
        return Err(IrqFailure::TooMany {
            cpu,
            got: pings,
            what: "SGIs from vCPU 0 taken",
            limit: 1,
            limit_what: "sent",
        });
    }
    if pongs > 1 {
        let what = "SGIs sent back by this vCPU taken by vCPU 0";
        return Err(IrqFailure::TooMany { cpu, got: pongs, what, limit: 1, limit_what: "sent" });
    }
    Ok(())
}

// --- virq-priority -------------------------------------------------------

/// What the two handlers do: in `PREEMPT` the low one raises the high one
/// and waits for it; in `HOLD` the high one raises the low one and holds it
/// off.
const PREEMPT: u32 = 0;
const HOLD: u32 = 1;
static MODE: AtomicU32 = AtomicU32::new(PREEMPT);
static SEQUENCE: AtomicU64 = AtomicU64::new(0);
static LOW_ENTRY: AtomicU64 = AtomicU64::new(0);
static LOW_EXIT: AtomicU64 = AtomicU64::new(0);
static HIGH_ENTRY: AtomicU64 = AtomicU64::new(0);
static HIGH_EXIT: AtomicU64 = AtomicU64::new(0);
static LOW_RPR: AtomicU64 = AtomicU64::new(0);
static HIGH_RPR: AtomicU64 = AtomicU64::new(0);

fn record(event: &AtomicU64) {
    event.store(SEQUENCE.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
}

fn low_handler(_: IntId) {
    record(&LOW_ENTRY);
    LOW_RPR.store(gic::running_priority().into(), Ordering::SeqCst);
    if MODE.load(Ordering::SeqCst) == PREEMPT {
        // Only a higher priority may interrupt this handler now.
        unmask_irqs();
        gic::send_sgi(HIGH_SGI, smp::this_cpu());
        timer::wait_until(Deadline::after_ms(SGI_TIMEOUT_MS), || HIGH_EXIT.load(Ordering::SeqCst) != 0);
        mask_irqs();
    }
    record(&LOW_EXIT);
}

fn high_handler(_: IntId) {
    record(&HIGH_ENTRY);
    HIGH_RPR.store(gic::running_priority().into(), Ordering::SeqCst);
    if MODE.load(Ordering::SeqCst) == HOLD {
        unmask_irqs();
        gic::send_sgi(LOW_SGI, smp::this_cpu());
        // Ample time for the low one to preempt, were it (wrongly) allowed.
        timer::delay_ms(HOLD_MS);
        mask_irqs();
    }
    record(&HIGH_EXIT);
}

pub fn virq_priority(_: &Env) -> Result<(), Failure> {
    boot_gic()?;
    gic::set_handler(IntId::sgi(LOW_SGI), Some(low_handler));
    gic::set_handler(IntId::sgi(HIGH_SGI), Some(high_handler));
    let result = preempt_and_hold();
    mask_irqs();
    let _ = gic::configure(0, IntId::sgi(LOW_SGI), PRIORITY, false);
    let _ = gic::configure(0, IntId::sgi(HIGH_SGI), HIGH_PRIORITY, false);
    gic::set_handler(IntId::sgi(LOW_SGI), None);
    gic::set_handler(IntId::sgi(HIGH_SGI), None);
    finish(result)
}

/// Runs one experiment: SGI `first` raised from thread context with
/// `PSTATE.I` unmasked, the handlers doing what `mode` says; then
/// [`events`] tells what happened in which order. Fails only if `first`
/// never arrived.
fn experiment(mode: u32, first: u32) -> Result<(), IrqFailure> {
    MODE.store(mode, Ordering::SeqCst);
    SEQUENCE.store(0, Ordering::SeqCst);
    for event in [&LOW_ENTRY, &LOW_EXIT, &HIGH_ENTRY, &HIGH_EXIT, &LOW_RPR, &HIGH_RPR] {
        event.store(0, Ordering::SeqCst);
    }
    let start = timer::physical_now();
    unmask_irqs();
    gic::send_sgi(first, 0);
    timer::wait_until(Deadline::after_ms(SGI_TIMEOUT_MS + HOLD_MS), || {
        LOW_EXIT.load(Ordering::SeqCst) != 0 && HIGH_EXIT.load(Ordering::SeqCst) != 0
    });
    mask_irqs();
    if SEQUENCE.load(Ordering::SeqCst) == 0 {
        let ms = timer::ticks_to_ms(timer::physical_now() - start);
        let what = if first == LOW_SGI { "priority 0xa0 SGIs to itself" } else { "priority 0x80 SGIs to itself" };
        return Err(IrqFailure::Missing { what, cpu: 0, got: 0, expected: 1, ms });
    }
    Ok(())
}

/// The four handler events with their sequence numbers.
fn events() -> [(&'static str, u64); 4] {
    [
        ("low-entry", LOW_ENTRY.load(Ordering::SeqCst)),
        ("high-entry", HIGH_ENTRY.load(Ordering::SeqCst)),
        ("high-exit", HIGH_EXIT.load(Ordering::SeqCst)),
        ("low-exit", LOW_EXIT.load(Ordering::SeqCst)),
    ]
}

fn preempt_and_hold() -> Result<(), IrqFailure> {
    let gic_error = |why| IrqFailure::Gic { cpu: 0, why };
    gic::configure(0, IntId::sgi(LOW_SGI), PRIORITY, true).map_err(gic_error)?;
    gic::configure(0, IntId::sgi(HIGH_SGI), HIGH_PRIORITY, true).map_err(gic_error)?;

    // The low handler unmasks PSTATE.I and raises the high SGI: the high
    // handler must run inside it.
    experiment(PREEMPT, LOW_SGI)?;
    let [(_, low_in), (_, high_in), (_, high_out), (_, low_out)] = events();
    if [low_in, high_in, high_out, low_out] != [1, 2, 3, 4] {
        return Err(IrqFailure::Order {
            what: "a priority 0x80 SGI raised in a 0xa0 handler (PSTATE.I unmasked) did not preempt it",
            events: events(),
        });
    }
    let (high, low) = (HIGH_RPR.load(Ordering::SeqCst), LOW_RPR.load(Ordering::SeqCst));
    if high >= low {
        let what = match gic::version() {
            Some(gic::Version::V2) => "GICC_RPR in the nested handlers",
            _ => "ICC_RPR_EL1 in the nested handlers",
        };
        return Err(IrqFailure::Priorities { what, higher: high, lower: low });
    }

    // The converse: the high handler unmasks PSTATE.I and raises the low
    // SGI, which must wait for the high handler's end.
    experiment(HOLD, HIGH_SGI)?;
    let [(_, low_in), (_, high_in), (_, high_out), (_, low_out)] = events();
    if [high_in, high_out, low_in, low_out] != [1, 2, 3, 4] {
        return Err(IrqFailure::Order {
            what: "a priority 0xa0 SGI raised in a 0x80 handler (PSTATE.I unmasked) preempted it or was lost",
            events: events(),
        });
    }
    Ok(())
}

// --- virq-no-loss --------------------------------------------------------

static SGI_SENT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static SGI_HANDLED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per vCPU: deadlines due when its tick phase ended and still unserved
/// when the drain gave up (0 = all served).
static TICK_BEHIND: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per vCPU: the longest its tick phase's loop went between two turns
/// (physical counter ticks): time it spent in handlers, at EL2, or not
/// running at all (an emulator's host thread descheduled). Printed, so a
/// slow run says where its time went.
static LONGEST_STALL: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per vCPU: turns of its tick phase's loop so far, IRQs unmasked (its
/// progress, for the SGI streams' loss detection).
static TURNS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per vCPU: timer deadlines served and SGIs handled during that longest
/// stall, which tells a storm of interrupts (many) from a vCPU that did
/// not run (none).
static STALL_INTERRUPTS: [[AtomicU64; 2]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; 2] }; MAX_CPUS];

fn too_many_sgis(cpu: usize, handled: u64, sent: u64) -> IrqFailure {
    IrqFailure::TooMany { cpu, got: handled, what: "SGIs handled", limit: sent, limit_what: "sent" }
}

fn no_loss_sgi_handler(_: IntId) {
    SGI_HANDLED[smp::this_cpu()].fetch_add(1, Ordering::SeqCst);
}

/// One vCPU's share of the no-loss phase: its tick until the physical
/// count `end`, calling `between` meanwhile, then every deadline due by
/// then served (or [`TICK_BEHIND`] says how many were due).
fn tick_phase(end: u64, mut between: impl FnMut()) {
    let me = smp::this_cpu();
    TICK_BEHIND[me].store(0, Ordering::SeqCst);
    timer::tick_start(tick_period());
    unmask_irqs();
    let counts = || [timer::tick_handled(), SGI_HANDLED[me].load(Ordering::SeqCst)];
    let (mut last, mut longest, mut seen, mut during) = (timer::physical_now(), 0, counts(), [0, 0]);
    while last < end {
        between();
        TURNS[me].fetch_add(1, Ordering::SeqCst);
        let (now, now_counts) = (timer::physical_now(), counts());
        if now.saturating_sub(last) > longest {
            longest = now.saturating_sub(last);
            during = [now_counts[0].saturating_sub(seen[0]), now_counts[1].saturating_sub(seen[1])];
        }
        (last, seen) = (now, now_counts);
    }
    LONGEST_STALL[me].store(longest, Ordering::SeqCst);
    for (slot, count) in STALL_INTERRUPTS[me].iter().zip(during) {
        slot.store(count, Ordering::SeqCst);
    }
    let due = timer::tick_due(timer::virtual_now());
    let served = drain(due);
    mask_irqs();
    timer::tick_finish();
    if !served {
        TICK_BEHIND[me].store(due, Ordering::SeqCst);
    }
}

/// Waits, IRQs unmasked, until this vCPU's tick has served `due`
/// deadlines. While one is due its interrupt is pending, so each turn of
/// this loop should find a new one served: the wait fails only after
/// [`LOST_AFTER_TURNS`] turns without one (an interrupt lost), or after
/// [`HOST_STALL_MS`].
fn drain(due: u64) -> bool {
    let cap = Deadline::after_ms(HOST_STALL_MS);
    let (mut served, mut idle) = (timer::tick_handled(), 0);
    while served < due {
        let now = timer::tick_handled();
        idle = if now == served { idle + 1 } else { 0 };
        served = now;
        if idle > LOST_AFTER_TURNS || cap.passed() {
            return timer::tick_handled() >= due;
        }
        core::hint::spin_loop();
    }
    true
}

/// The job each other vCPU runs: [`tick_phase`] until the physical count
/// `end`.
fn tick_job(end: u64) -> u64 {
    tick_phase(end, core::hint::spin_loop);
    0
}

/// The boot vCPU's SGI stream to one target.
#[derive(Clone, Copy)]
struct Stream {
    sent_at: u64,
    /// The target's [`TURNS`] when the SGI in flight was sent.
    turns_at: u64,
    failure: Option<IrqFailure>,
}

pub fn virq_no_loss(env: &Env) -> Result<(), Failure> {
    boot_gic()?;
    let ppi = env.virtual_timer.map_err(IrqFailure::NoTimer)?;
    // At most NO_LOSS_CPUS vCPUs take part: the check counts, it does not
    // load-test (every timer interrupt is a trip through the hypervisor,
    // and under emulation a 1 ms tick on 16 vCPUs sharing two host cores
    // is more work than there is time for).
    let all = secondaries()?;
    let others = all.start..all.end.min(NO_LOSS_CPUS);
    let cpus = 0..others.end.max(1);
    // With one vCPU, the boot vCPU streams SGIs to itself.
    let targets = if others.is_empty() { 0..1 } else { others.clone() };
    gic::set_handler(ppi, Some(timer::tick_handler));
    gic::set_handler(IntId::sgi(NO_LOSS_SGI), Some(no_loss_sgi_handler));

    let result = no_loss(ppi, cpus.clone(), others.clone(), targets);

    mask_irqs();
    timer::tick_stop();
    for cpu in cpus {
        let _ = gic::configure(cpu, ppi, PRIORITY, false);
        let _ = gic::configure(cpu, IntId::sgi(NO_LOSS_SGI), PRIORITY, false);
    }
    gic::set_handler(ppi, None);
    gic::set_handler(IntId::sgi(NO_LOSS_SGI), None);
    finish(result)
}

fn no_loss(
    ppi: IntId,
    cpus: core::ops::Range<usize>,
    others: core::ops::Range<usize>,
    targets: core::ops::Range<usize>,
) -> Result<(), IrqFailure> {
    for cpu in cpus.clone() {
        let gic_error = |why| IrqFailure::Gic { cpu, why };
        gic::configure(cpu, ppi, PRIORITY, true).map_err(gic_error)?;
        gic::configure(cpu, IntId::sgi(NO_LOSS_SGI), PRIORITY, true).map_err(gic_error)?;
        SGI_SENT[cpu].store(0, Ordering::SeqCst);
        SGI_HANDLED[cpu].store(0, Ordering::SeqCst);
    }
    let start = timer::physical_now();
    let end = start + timer::ms_to_ticks(NO_LOSS_MS);
    for cpu in others.clone() {
        smp::post(cpu, tick_job, end).map_err(|why| IrqFailure::Job { cpu, why })?;
    }

    let stalled_after = timer::ms_to_ticks(HOST_STALL_MS);
    let mut streams = [Stream { sent_at: start, turns_at: 0, failure: None }; MAX_CPUS];
    tick_phase(end, || {
        for cpu in targets.clone() {
            let stream = &mut streams[cpu];
            if stream.failure.is_some() {
                continue;
            }
            let (sent, handled) = (SGI_SENT[cpu].load(Ordering::SeqCst), SGI_HANDLED[cpu].load(Ordering::SeqCst));
            let now = timer::physical_now();
            if handled > sent {
                stream.failure = Some(too_many_sgis(cpu, handled, sent));
            } else if handled == sent {
                // The previous one was taken: the next may go.
                SGI_SENT[cpu].store(sent + 1, Ordering::SeqCst);
                stream.sent_at = now;
                gic::send_sgi(NO_LOSS_SGI, cpu);
                // Counted from when the send has completed (the write
                // trapped and the hypervisor made it pending).
                stream.turns_at = TURNS[cpu].load(Ordering::SeqCst);
            } else if TURNS[cpu].load(Ordering::SeqCst).saturating_sub(stream.turns_at) > LOST_AFTER_TURNS
                || now - stream.sent_at > stalled_after
            {
                // The target ran its loop, IRQs unmasked, long enough to
                // have taken it many times over (or never ran again).
                let ms = timer::ticks_to_ms(now - stream.sent_at);
                stream.failure = Some(IrqFailure::Missing { what: "SGIs", cpu, got: handled, expected: sent, ms });
            }
        }
    });
    // The last SGI of each stream may still be on its way.
    unmask_irqs();
    for cpu in targets.clone() {
        let sent = SGI_SENT[cpu].load(Ordering::SeqCst);
        timer::wait_until(Deadline::after_ms(HOST_STALL_MS), || SGI_HANDLED[cpu].load(Ordering::SeqCst) >= sent);
    }
    timer::delay_ms(SETTLE_MS);
    mask_irqs();
    // The others' drains end by their own progress ([`drain`]); this only
    // catches a vCPU that never runs again.
    let job_deadline = Deadline::after_ms(2 * HOST_STALL_MS);
    let jobs: [Result<u64, smp::JobError>; MAX_CPUS] =
        core::array::from_fn(|cpu| if others.contains(&cpu) { smp::wait(cpu, job_deadline) } else { Ok(0) });
    let ms = timer::ticks_to_ms(end - start);

    let reports: [timer::TickReport; MAX_CPUS] = core::array::from_fn(timer::tick_report);
    let timer_total: u64 = cpus.clone().map(|cpu| reports[cpu].handled).sum();
    let sgi_total: u64 = targets.clone().map(|cpu| SGI_HANDLED[cpu].load(Ordering::SeqCst)).sum();
    let (stalled, stall) = cpus
        .clone()
        .map(|cpu| (cpu, LONGEST_STALL[cpu].load(Ordering::SeqCst)))
        .max_by_key(|&(_, stall)| stall)
        .unwrap_or((0, 0));
    let [stall_timer, stall_sgi] = STALL_INTERRUPTS[stalled].each_ref().map(|c| c.load(Ordering::SeqCst));
    println!(
        "virq-no-loss: {timer_total} timer, {sgi_total} SGI interrupts over {ms} ms; longest stall {} ms \
         (vCPU {stalled}, {stall_timer} timer and {stall_sgi} SGI interrupts meanwhile)",
        timer::ticks_to_ms(stall)
    );

    for cpu in cpus {
        if let Err(why) = jobs[cpu] {
            return Err(IrqFailure::Job { cpu, why });
        }
        let report = &reports[cpu];
        let behind = TICK_BEHIND[cpu].load(Ordering::SeqCst);
        if behind != 0 {
            return Err(IrqFailure::Missing {
                what: "virtual timer deadlines due served",
                cpu,
                got: report.handled,
                expected: behind,
                ms,
            });
        }
        tick_verdict(cpu, report, reports[0].frequency)?;
    }
    for cpu in targets {
        if let Some(failure) = streams[cpu].failure {
            return Err(failure);
        }
        let (sent, handled) = (SGI_SENT[cpu].load(Ordering::SeqCst), SGI_HANDLED[cpu].load(Ordering::SeqCst));
        if handled > sent {
            return Err(too_many_sgis(cpu, handled, sent));
        }
        if handled < sent {
            return Err(IrqFailure::Missing { what: "SGIs", cpu, got: handled, expected: sent, ms });
        }
    }
    Ok(())
}
