//! The guest-stub's lines for the vCPU scheduler's tests: what the stub
//! prints and the runner reads, defined once (as [`crate::report`] does for
//! the check lines), so that the two cannot drift apart.
//!
//! After the console's `guest-stub: ` prefix ([`crate::report::PREFIX`]):
//!
//! ```text
//! spin done: 2000 ms, 123456768 iterations, 125000017 ticks, 62500000 Hz
//! timer lateness: 20 wakes, median 8000 ticks, worst 31000 ticks, 62500000 Hz
//! ```
//!
//! - `spin done:` ([`SpinReport`]) is the one line a `stub=spin=MS` run
//!   prints: vCPU 0 (the only one started) busy-looped with IRQs masked until
//!   its virtual counter had advanced MS milliseconds, and counted the
//!   loop's iterations (a multiple of [`SPIN_BATCH`]); `ticks` is how far the
//!   virtual counter really advanced (at least MS milliseconds' worth), at
//!   `CNTFRQ_EL0` = the last field. Two such VMs sharing one CPU get
//!   iteration counts in the ratio of their CPU shares. The run then powers
//!   off with exit status 0, like a passing run.
//! - `timer lateness:` ([`TimerLateness`]) is printed by the check
//!   `sched-timer-wake`: how long after its deadline (`CNTVCT_EL0` read first
//!   thing in the handler minus `CNTV_CVAL_EL0`) each virtual timer interrupt
//!   that woke the vCPU from `WFI` was taken, the median and the worst of
//!   `wakes` of them, in counter ticks.
//!
//! The checks for the scheduler are named [`CHECK_PREFIX`]`*`: they are not
//! part of the default run; `stub=only=sched` (or a longer prefix) runs them.

use core::fmt;

/// The bootargs word that makes the guest-stub spin instead of checking:
/// `stub=spin=<ms>` (decimal, or hexadecimal with `0x`).
pub const SPIN_WORD: &str = "stub=spin=";
/// The start of the one line a spin run prints.
pub const SPIN_REPORT: &str = "spin done:";
/// The start of the line `sched-timer-wake` prints.
pub const TIMER_LATENESS: &str = "timer lateness:";
/// The scheduler checks' names start with this; `stub=only=sched` selects
/// them.
pub const CHECK_PREFIX: &str = "sched-";
/// The spin loop reads the counter once per this many iterations; the
/// iteration count is a multiple of it.
pub const SPIN_BATCH: u64 = 64;

/// The line `stub=spin=MS` ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpinReport {
    /// MS, as asked.
    pub ms: u64,
    /// Loop iterations done while the virtual counter advanced `ticks`.
    pub iterations: u64,
    /// How far the virtual counter advanced, start to end.
    pub ticks: u64,
    /// `CNTFRQ_EL0`: counter ticks per second.
    pub frequency: u64,
}

const SPIN_UNITS: [&str; 4] = ["ms", "iterations", "ticks", "Hz"];

impl fmt::Display for SpinReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SPIN_REPORT} {} ms, {} iterations, {} ticks, {} Hz",
            self.ms, self.iterations, self.ticks, self.frequency
        )
    }
}

impl SpinReport {
    /// Reads one line without the console prefix; `None` if it is not a
    /// spin report.
    pub fn parse(body: &str) -> Option<Self> {
        let [ms, iterations, ticks, frequency] = fields(body, SPIN_REPORT, SPIN_UNITS)?;
        Some(Self { ms, iterations, ticks, frequency })
    }

    /// The first spin report among a guest-stub's console lines (each
    /// starting with [`crate::report::PREFIX`]).
    pub fn find(console: &str) -> Option<Self> {
        console.lines().find_map(|line| Self::parse(line.trim_end().strip_prefix(crate::report::PREFIX)?))
    }
}

/// The line `sched-timer-wake` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerLateness {
    /// Timer interrupts measured (20 when the check passes).
    pub wakes: u64,
    /// The median lateness (the upper one of an even count), counter ticks.
    pub median: u64,
    /// The largest lateness, counter ticks.
    pub worst: u64,
    /// `CNTFRQ_EL0`: counter ticks per second.
    pub frequency: u64,
}

const LATENESS_UNITS: [&str; 4] = ["wakes", "ticks", "ticks", "Hz"];
/// The words before the lateness values' numbers.
const LATENESS_LABELS: [&str; 4] = ["", "median ", "worst ", ""];

impl fmt::Display for TimerLateness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TIMER_LATENESS} {} wakes, median {} ticks, worst {} ticks, {} Hz",
            self.wakes, self.median, self.worst, self.frequency
        )
    }
}

impl TimerLateness {
    /// Reads one line without the console prefix; `None` if it is not a
    /// lateness line.
    pub fn parse(body: &str) -> Option<Self> {
        let rest = body.trim_end().strip_prefix(TIMER_LATENESS)?;
        let mut values = [0u64; 4];
        let mut parts = rest.strip_prefix(' ')?.split(", ");
        for ((value, unit), label) in values.iter_mut().zip(LATENESS_UNITS).zip(LATENESS_LABELS) {
            *value = number_with_unit(parts.next()?.strip_prefix(label)?, unit)?;
        }
        let [wakes, median, worst, frequency] = values;
        parts.next().is_none().then_some(Self { wakes, median, worst, frequency })
    }

    /// The first lateness line among a guest-stub's console lines.
    pub fn find(console: &str) -> Option<Self> {
        console.lines().find_map(|line| Self::parse(line.trim_end().strip_prefix(crate::report::PREFIX)?))
    }

    /// The median in microseconds (`None` with a frequency of 0).
    pub fn median_us(&self) -> Option<u64> {
        ticks_to_us(self.median, self.frequency)
    }

    /// The worst in microseconds (`None` with a frequency of 0).
    pub fn worst_us(&self) -> Option<u64> {
        ticks_to_us(self.worst, self.frequency)
    }
}

/// `ticks` of a counter running at `frequency` Hz, in whole microseconds.
pub fn ticks_to_us(ticks: u64, frequency: u64) -> Option<u64> {
    let us = u128::from(ticks).checked_mul(1_000_000)?.checked_div(u128::from(frequency))?;
    u64::try_from(us).ok()
}

/// `<prefix> <n> <unit>, <n> <unit>, ...` with exactly `units`.
fn fields<const N: usize>(body: &str, prefix: &str, units: [&str; N]) -> Option<[u64; N]> {
    let rest = body.trim_end().strip_prefix(prefix)?.strip_prefix(' ')?;
    let mut parts = rest.split(", ");
    let mut values = [0u64; N];
    for (value, unit) in values.iter_mut().zip(units) {
        *value = number_with_unit(parts.next()?, unit)?;
    }
    parts.next().is_none().then_some(values)
}

/// `<decimal> <unit>`: the number.
fn number_with_unit(part: &str, unit: &str) -> Option<u64> {
    let (number, got) = part.split_once(' ')?;
    if got != unit || number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_report_round_trip() {
        let report = SpinReport { ms: 2000, iterations: 123_456_768, ticks: 125_000_017, frequency: 62_500_000 };
        let line = report.to_string();
        assert_eq!(line, "spin done: 2000 ms, 123456768 iterations, 125000017 ticks, 62500000 Hz");
        assert_eq!(SpinReport::parse(&line), Some(report));
        assert_eq!(SpinReport::parse(&format!("{line}\r")), Some(report));
        let console =
            format!("guest-stub: started\n{}{line}\r\nel2: guest requested SYSTEM_OFF\n", crate::report::PREFIX);
        assert_eq!(SpinReport::find(&console), Some(report));
    }

    #[test]
    fn lateness_round_trip() {
        let lateness = TimerLateness { wakes: 20, median: 8000, worst: 31_000, frequency: 1_000_000_000 };
        let line = lateness.to_string();
        assert_eq!(line, "timer lateness: 20 wakes, median 8000 ticks, worst 31000 ticks, 1000000000 Hz");
        assert_eq!(TimerLateness::parse(&line), Some(lateness));
        assert_eq!(TimerLateness::find(&format!("x\n{}{line}\n", crate::report::PREFIX)), Some(lateness));
        assert_eq!(lateness.median_us(), Some(8));
        assert_eq!(lateness.worst_us(), Some(31));
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in [
            "spin done: 2000 ms, 12 iterations, 34 ticks",
            "spin done: 2000 ms, 12 iterations, 34 ticks, 5 Hz, 6 more",
            "spin done: 2000 ms, -12 iterations, 34 ticks, 5 Hz",
            "spin done: 2000 ms, 12 loops, 34 ticks, 5 Hz",
            "spin done: 2000 ms,12 iterations, 34 ticks, 5 Hz",
            "spin done:2000 ms, 12 iterations, 34 ticks, 5 Hz",
            "spin done: 99999999999999999999 ms, 12 iterations, 34 ticks, 5 Hz",
            "PASS spin",
        ] {
            assert_eq!(SpinReport::parse(line), None, "{line}");
        }
        for line in [
            "timer lateness: 20 wakes, median 8 ticks, worst 9 ticks",
            "timer lateness: 20 wakes, 8 ticks, worst 9 ticks, 5 Hz",
            "timer lateness: 20 wakes, median 8 ticks, worst +9 ticks, 5 Hz",
        ] {
            assert_eq!(TimerLateness::parse(line), None, "{line}");
        }
        assert_eq!(ticks_to_us(5, 0), None);
    }
}
