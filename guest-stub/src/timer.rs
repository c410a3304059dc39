//! The generic timer, as the guest-stub uses it: deadlines from the
//! physical counter, and a periodic tick on each vCPU's virtual timer.
//!
//! Every wait in the stub is bounded by a [`Deadline`] on `CNTPCT_EL0`, so
//! that a missing interrupt or a vCPU that never answers ends a check with a
//! report instead of hanging the run.
//!
//! The tick ([`tick_start`], [`tick_handler`], [`tick_finish`]) arms
//! `CNTV_CVAL_EL0` with absolute deadlines `first + k * period`: the handler
//! advances the compare value by exactly one period per interrupt, so a late
//! interrupt does not move later deadlines, and a deadline that has passed
//! already fires again at once. After `n` handled interrupts the timer is
//! armed for deadline `n`, so `handled` should never exceed the deadlines
//! elapsed by the counter; a lost interrupt shows as `handled` falling
//! behind them, and a doubled one as `handled` above them or as one taken
//! with `ISTATUS` set before the counter reached the deadline to serve
//! (`early`: the compare value is not the one the handler wrote). An
//! interrupt taken while `CNTV_CTL_EL0.ISTATUS` says the timer condition is
//! not met serves no deadline: it is counted (`stale` before the first
//! deadline, `spurious` after) and reported, not failed, because a
//! hypervisor cannot withdraw a timer interrupt it has presented when the
//! guest re-arms its timer without trapping. All of that assumes the timer and counters behave, which is
//! what is under test, so [`tick_finish`] also records what the checks
//! verify: `handled` never above the deadlines elapsed, the virtual counter
//! advancing exactly as the physical one, and each vCPU's `CNTFRQ_EL0`.

use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTPCT_EL0, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0};
use arm_gic::IntId;
use core::sync::atomic::{AtomicU64, Ordering};
use platform::board::MAX_CPUS;

/// The DTB `compatible` of the generic timer.
pub const COMPATIBLE: &str = "arm,armv8-timer";
/// Its `interrupts`: secure physical, non-secure physical, virtual, hyp;
/// each `#interrupt-cells` of the GIC (3 unless it says otherwise: type,
/// number, flags).
const PHYSICAL_TIMER_ENTRY: usize = 1;
const VIRTUAL_TIMER_ENTRY: usize = 2;
const GIC_CELLS: usize = 3;
/// The GIC binding's type cell for a PPI, whose number counts from INTID 16.
const GIC_SPEC_PPI: u32 = 1;

/// Why the virtual timer's interrupt is not known.
#[derive(Clone, Copy, Debug)]
pub enum NoTimer {
    NoNode,
    /// `interrupts` is missing, too short, or its virtual-timer entry is not
    /// a PPI.
    BadInterrupts,
    /// The same for the (non-secure) physical timer's entry, the second.
    BadPhysicalInterrupt,
}

impl core::fmt::Display for NoTimer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoNode => write!(f, "no {COMPATIBLE} node in the DTB"),
            Self::BadInterrupts => {
                write!(f, "the {COMPATIBLE} node's third interrupt (the virtual timer) is missing or not a PPI")
            }
            Self::BadPhysicalInterrupt => write!(
                f,
                "the {COMPATIBLE} node's second interrupt (the non-secure physical timer) is missing or not a PPI"
            ),
        }
    }
}

/// The virtual timer's PPI, from the DTB's timer node.
pub fn virtual_timer_ppi(fdt: &fdt::Fdt) -> Result<IntId, NoTimer> {
    timer_ppi(fdt, VIRTUAL_TIMER_ENTRY, NoTimer::BadInterrupts)
}

/// The (non-secure EL1) physical timer's PPI, from the DTB's timer node.
pub fn physical_timer_ppi(fdt: &fdt::Fdt) -> Result<IntId, NoTimer> {
    timer_ppi(fdt, PHYSICAL_TIMER_ENTRY, NoTimer::BadPhysicalInterrupt)
}

/// Entry `entry` of the timer node's `interrupts`, which must be a PPI.
fn timer_ppi(fdt: &fdt::Fdt, entry: usize, bad: NoTimer) -> Result<IntId, NoTimer> {
    let node = fdt.find_compatible(&[COMPATIBLE]).ok_or(NoTimer::NoNode)?;
    let interrupts = node.property("interrupts").ok_or(bad)?.value;
    let cell = |index: usize| -> Option<u32> {
        let bytes = interrupts.chunks_exact(core::mem::size_of::<u32>()).nth(index)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    };
    let cells = fdt.find_compatible(crate::gic::COMPATIBLES).and_then(|gic| gic.interrupt_cells()).unwrap_or(GIC_CELLS);
    let first = entry * cells;
    match (cell(first), cell(first + 1)) {
        (Some(GIC_SPEC_PPI), Some(number)) if number < IntId::PPI_COUNT => Ok(IntId::ppi(number)),
        _ => Err(bad),
    }
}

/// Counter ticks per second (`CNTFRQ_EL0`, which firmware programs; never
/// 0, so that divisions by it are safe even on a broken platform).
pub fn frequency() -> u64 {
    CNTFRQ_EL0.get().max(1)
}

/// The physical count, for deadlines and elapsed times.
pub fn physical_now() -> u64 {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTPCT_EL0.get()
}

/// The virtual count, which the virtual timer compares against.
pub fn virtual_now() -> u64 {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTVCT_EL0.get()
}

/// Counter ticks in `ms` milliseconds.
pub fn ms_to_ticks(ms: u64) -> u64 {
    frequency().saturating_mul(ms) / 1000
}

/// Milliseconds in `ticks` counter ticks.
pub fn ticks_to_ms(ticks: u64) -> u64 {
    ticks.saturating_mul(1000) / frequency()
}

/// A point in physical-counter time.
#[derive(Clone, Copy)]
pub struct Deadline(u64);

impl Deadline {
    /// `ms` milliseconds from now.
    pub fn after_ms(ms: u64) -> Self {
        Self(physical_now().saturating_add(ms_to_ticks(ms)))
    }

    pub fn passed(self) -> bool {
        physical_now() >= self.0
    }
}

/// Spins until `done()` holds or `deadline` passes; whether `done()` held.
pub fn wait_until(deadline: Deadline, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if deadline.passed() {
            // One last look: the condition may have become true while the
            // counter was read.
            return done();
        }
        core::hint::spin_loop();
    }
}

/// Spins for `ms` milliseconds.
pub fn delay_ms(ms: u64) {
    let deadline = Deadline::after_ms(ms);
    while !deadline.passed() {
        core::hint::spin_loop();
    }
}

/// One vCPU's tick: written by that vCPU (its handler, [`tick_start`] and
/// [`tick_finish`]), read by anyone.
struct Tick {
    period: AtomicU64,
    /// The virtual count of deadline 0.
    first: AtomicU64,
    /// Interrupts taken with the timer condition met: deadlines served.
    handled: AtomicU64,
    /// Interrupts taken with the timer condition not met.
    spurious: AtomicU64,
    /// Interrupts without the timer condition before the first deadline:
    /// latched before the tick started (see [`tick_handler`]).
    stale: AtomicU64,
    /// Interrupts taken with the timer condition met, but before the
    /// deadline to serve by the counter: the compare value is not the one
    /// the handler wrote.
    early: AtomicU64,
    /// `CNTFRQ_EL0` as this vCPU reads it.
    frequency: AtomicU64,
    /// [`Counters`] at the start and at [`tick_finish`].
    start: [AtomicU64; 3],
    stop: [AtomicU64; 3],
    /// Deadlines elapsed on the virtual counter at [`tick_finish`].
    due: AtomicU64,
}

impl Tick {
    const fn new() -> Self {
        Self {
            period: AtomicU64::new(0),
            first: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            spurious: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            early: AtomicU64::new(0),
            frequency: AtomicU64::new(0),
            start: [const { AtomicU64::new(0) }; 3],
            stop: [const { AtomicU64::new(0) }; 3],
            due: AtomicU64::new(0),
        }
    }
}

static TICKS: [Tick; MAX_CPUS] = [const { Tick::new() }; MAX_CPUS];

fn this_tick() -> &'static Tick {
    &TICKS[crate::smp::this_cpu()]
}

/// The virtual count between two reads of the physical count: however
/// long the reads take (a trap, an interrupt at EL2), with a constant
/// `CNTVOFF_EL2` the virtual count minus the offset lies between them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub physical_before: u64,
    pub virtual_count: u64,
    pub physical_after: u64,
}

impl Counters {
    pub fn read() -> Self {
        let physical_before = physical_now();
        let virtual_count = virtual_now();
        Self { physical_before, virtual_count, physical_after: physical_now() }
    }

    fn store(self, into: &[AtomicU64; 3]) {
        into[0].store(self.physical_before, Ordering::SeqCst);
        into[1].store(self.virtual_count, Ordering::SeqCst);
        into[2].store(self.physical_after, Ordering::SeqCst);
    }

    fn load(from: &[AtomicU64; 3]) -> Self {
        Self {
            physical_before: from[0].load(Ordering::SeqCst),
            virtual_count: from[1].load(Ordering::SeqCst),
            physical_after: from[2].load(Ordering::SeqCst),
        }
    }
}

/// What a vCPU's tick did.
#[derive(Clone, Copy, Debug, Default)]
pub struct TickReport {
    pub handled: u64,
    pub spurious: u64,
    pub early: u64,
    /// Deadlines elapsed on the virtual counter when it was finished.
    pub due: u64,
    /// `CNTFRQ_EL0` on that vCPU.
    pub frequency: u64,
    pub start: Counters,
    pub stop: Counters,
}

impl TickReport {
    /// Whether the virtual counter advanced exactly as the physical one
    /// from start to stop (a constant `CNTVOFF_EL2`).
    pub fn counters_agree(&self) -> bool {
        let advanced = self.stop.virtual_count.wrapping_sub(self.start.virtual_count);
        let least = self.stop.physical_before.saturating_sub(self.start.physical_after);
        let most = self.stop.physical_after.saturating_sub(self.start.physical_before);
        (least..=most).contains(&advanced)
    }
}

/// Starts this vCPU's periodic tick: deadline 0 is one period from now.
/// The caller has routed the virtual timer's PPI to [`tick_handler`] and
/// enabled it; interrupts are taken once it unmasks `PSTATE.I`.
pub fn tick_start(period: u64) {
    let tick = this_tick();
    let period = period.max(1);
    let start = Counters::read();
    let first = start.virtual_count + period;
    tick.period.store(period, Ordering::SeqCst);
    tick.first.store(first, Ordering::SeqCst);
    tick.handled.store(0, Ordering::SeqCst);
    tick.spurious.store(0, Ordering::SeqCst);
    tick.stale.store(0, Ordering::SeqCst);
    tick.early.store(0, Ordering::SeqCst);
    tick.due.store(0, Ordering::SeqCst);
    tick.frequency.store(frequency(), Ordering::SeqCst);
    start.store(&tick.start);
    CNTV_CVAL_EL0.set(first);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// The virtual timer's interrupt handler: serves one deadline and arms the
/// next.
pub fn tick_handler(_: IntId) {
    let tick = this_tick();
    if !CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ISTATUS) || !CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ENABLE) {
        // Before this tick's first deadline, an interrupt without the timer
        // condition can only be one latched before the tick (re)started: a
        // hypervisor cannot withdraw a virtual interrupt it has already
        // presented when the guest disarms its timer without trapping, so
        // that one is tolerated (and counted). After a deadline was served
        // it would be a doubled injection.
        if tick.handled.load(Ordering::SeqCst) == 0 {
            tick.stale.fetch_add(1, Ordering::SeqCst);
        } else {
            tick.spurious.fetch_add(1, Ordering::SeqCst);
        }
        return;
    }
    let (first, period) = (tick.first.load(Ordering::SeqCst), tick.period.load(Ordering::SeqCst));
    let deadline = |n: u64| first.saturating_add(n.saturating_mul(period));
    let handled = tick.handled.load(Ordering::SeqCst);
    if virtual_now() < deadline(handled) {
        // Not due yet by the counter: put back the compare value that says so.
        tick.early.fetch_add(1, Ordering::SeqCst);
        CNTV_CVAL_EL0.set(deadline(handled));
    } else {
        tick.handled.store(handled + 1, Ordering::SeqCst);
        CNTV_CVAL_EL0.set(deadline(handled + 1));
    }
    // The new compare value must have lowered the timer's output before the
    // handler's EOI, or the GIC would see the old level once more.
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Deadlines of this vCPU's tick at or before the virtual count `now`.
pub fn tick_due(now: u64) -> u64 {
    let tick = this_tick();
    let (first, period) = (tick.first.load(Ordering::SeqCst), tick.period.load(Ordering::SeqCst).max(1));
    if now < first {
        0
    } else {
        (now - first) / period + 1
    }
}

/// Interrupts this vCPU's tick has served so far.
pub fn tick_handled() -> u64 {
    this_tick().handled.load(Ordering::SeqCst)
}

/// Ends this vCPU's tick (the caller has masked IRQs): the timer off, and
/// the counters and the deadlines due recorded for [`tick_report`].
pub fn tick_finish() {
    tick_stop();
    let tick = this_tick();
    let stop = Counters::read();
    stop.store(&tick.stop);
    tick.due.store(tick_due(stop.virtual_count), Ordering::SeqCst);
}

/// What vCPU `cpu`'s last tick did (complete once it is finished).
pub fn tick_report(cpu: usize) -> TickReport {
    TICKS.get(cpu).map_or_else(TickReport::default, |tick| TickReport {
        handled: tick.handled.load(Ordering::SeqCst),
        spurious: tick.spurious.load(Ordering::SeqCst),
        early: tick.early.load(Ordering::SeqCst),
        due: tick.due.load(Ordering::SeqCst),
        frequency: tick.frequency.load(Ordering::SeqCst),
        start: Counters::load(&tick.start),
        stop: Counters::load(&tick.stop),
    })
}

/// Turns this vCPU's virtual timer off (its output drops, so nothing stays
/// pending for the checks after).
pub fn tick_stop() {
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}
