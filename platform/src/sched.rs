//! The vCPU scheduler's policy, with no hardware in it: per-CPU run queues
//! ordered by weighted virtual run time (proportional share), the credit a
//! latency-sensitive vCPU gets when an interrupt wakes it, the preemption
//! rule, and the wake-up latency histogram. The hypervisor (`el2`'s
//! `vm::sched`) owns the mechanism: saving and loading vCPUs, the timer
//! that ends slices, the locks.
//!
//! # Proportional share
//!
//! Each vCPU has a *virtual run time*: the physical counter ticks it ran,
//! scaled by [`WEIGHT_SCALE`]` / weight` ([`charge`]). A CPU runs the queued
//! vCPU with the least, for a time slice, then looks again. Over time every
//! vCPU competing for a CPU advances its virtual run time at the same pace,
//! so each gets CPU time in proportion to its weight: weights 1 and 2 share
//! a CPU 1 : 2.
//!
//! A vCPU that slept does not bank its absence: when it wakes, its virtual
//! run time is brought up to at least the queue's minimum less one slice
//! ([`on_wake`]), so it runs soon but cannot then hold the CPU for as long
//! as it slept.
//!
//! # Latency class
//!
//! A latency-sensitive vCPU woken by an interrupt is queued with a credit
//! of [`LATENCY_CREDIT_SLICES`] slices ([`Entry::key`]) and preempts a
//! running vCPU that is not latency-sensitive if it comes first with that
//! credit ([`preempts`]). The credit is spent as it runs like any other
//! virtual time, so a latency-sensitive vCPU that turns CPU-bound falls
//! back to its fair share: the class buys promptness, not more CPU.

use core::cmp::Ordering;
use core::fmt;

/// The weight whose virtual run time advances at the physical pace (the
/// binding's default `hv,weight`).
pub const WEIGHT_SCALE: u64 = 256;

/// vCPUs one CPU's queue holds (it lives in the CPU's one-page private
/// area): four times the vCPUs of the largest VM.
pub const MAX_QUEUED: usize = 32;

/// A latency-sensitive vCPU's head start when an interrupt wakes it, in its
/// own time slices.
pub const LATENCY_CREDIT_SLICES: u64 = 1;

/// A wake-up of an ordinary vCPU preempts the running one only if it is
/// ahead by more than this fraction of a slice (1/4): smaller differences
/// wait for the slice's end, so that two vCPUs that exchange interrupts
/// do not switch on every one.
pub const WAKE_GRANULARITY_DIVISOR: u64 = 4;

/// A vCPU, as the scheduler names it: its VM's index and its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuId {
    pub vm: u16,
    pub vcpu: u16,
}

/// A runnable vCPU in a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: VcpuId,
    /// Its virtual run time when it was queued.
    pub vruntime: u64,
    /// Its time slice in its own virtual time (the ticks `charge`d with
    /// its weight): the latency credit is one.
    pub slice: u64,
    /// Its VM is latency-sensitive and an interrupt woke it.
    pub urgent: bool,
    /// Queue order among equals: earlier first.
    pub seq: u64,
}

impl Entry {
    /// The virtual run time it competes with: less its credit when urgent.
    pub fn key(&self) -> u64 {
        if self.urgent {
            self.vruntime.saturating_sub(self.slice.saturating_mul(LATENCY_CREDIT_SLICES))
        } else {
            self.vruntime
        }
    }

    fn order(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key()).then(other.urgent.cmp(&self.urgent)).then(self.seq.cmp(&other.seq))
    }
}

/// Why a vCPU could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// Already [`MAX_QUEUED`] entries.
    Full,
    /// The vCPU is queued already.
    Queued,
}

/// One physical CPU's runnable vCPUs: the first `len` entries, packed
/// (every look at the queue, on the switch path, reads only those).
#[derive(Clone, Debug)]
pub struct RunQueue {
    entries: [Option<Entry>; MAX_QUEUED],
    len: usize,
    /// The least virtual run time this CPU has run or queued lately:
    /// where waking vCPUs are placed ([`on_wake`]). Never goes back.
    min_vruntime: u64,
    seq: u64,
}

impl Default for RunQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl RunQueue {
    pub const fn new() -> Self {
        Self { entries: [None; MAX_QUEUED], len: 0, min_vruntime: 0, seq: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn min_vruntime(&self) -> u64 {
        self.min_vruntime
    }

    /// Moves the queue's minimum forward to `vruntime` (a vCPU of this CPU
    /// started running with it), never backward.
    pub fn advance(&mut self, vruntime: u64) {
        self.min_vruntime = self.min_vruntime.max(vruntime);
    }

    /// Queues `entry` (its `seq` is assigned here).
    pub fn push(&mut self, mut entry: Entry) -> Result<(), QueueError> {
        if self.contains(entry.id) {
            return Err(QueueError::Queued);
        }
        let slot = self.entries.get_mut(self.len).ok_or(QueueError::Full)?;
        self.seq = self.seq.wrapping_add(1);
        entry.seq = self.seq;
        *slot = Some(entry);
        self.len = self.len.saturating_add(1);
        Ok(())
    }

    pub fn contains(&self, id: VcpuId) -> bool {
        self.iter().any(|e| e.id == id)
    }

    /// Takes `id` out of the queue (the last entry moves into its place).
    pub fn remove(&mut self, id: VcpuId) -> Option<Entry> {
        let index = self.iter().position(|e| e.id == id)?;
        let last = self.len.checked_sub(1)?;
        self.entries.swap(index, last);
        self.len = last;
        self.entries.get_mut(last)?.take()
    }

    /// The entry that runs next.
    pub fn best(&self) -> Option<&Entry> {
        self.iter().min_by(|a, b| a.order(b))
    }

    /// Takes the entry that runs next.
    pub fn pop(&mut self) -> Option<Entry> {
        let id = self.best()?.id;
        self.remove(id)
    }

    /// The queued entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().take(self.len).flatten()
    }
}

/// `vruntime` after running `ticks` counter ticks with `weight`.
pub fn charge(vruntime: u64, ticks: u64, weight: u32) -> u64 {
    let weight = u64::from(weight.max(1));
    let scaled = u128::from(ticks).saturating_mul(u128::from(WEIGHT_SCALE)).checked_div(u128::from(weight));
    vruntime.saturating_add(scaled.map_or(u64::MAX, |s| u64::try_from(s).unwrap_or(u64::MAX)))
}

/// Where a waking vCPU's virtual run time goes on a queue whose minimum is
/// `queue_min`: no further back than one `slice` behind it.
pub fn on_wake(vruntime: u64, queue_min: u64, slice: u64) -> u64 {
    vruntime.max(queue_min.saturating_sub(slice))
}

/// The running vCPU, as [`preempts`] weighs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    /// Its virtual run time, charged up to now.
    pub vruntime: u64,
    /// Its time slice in its own virtual time (see [`Entry::slice`]).
    pub slice: u64,
    /// Its VM is latency-sensitive.
    pub latency_sensitive: bool,
}

/// Whether `woken`, just queued, takes the CPU from `running` at once
/// rather than at the end of its slice.
pub fn preempts(woken: &Entry, running: &Running) -> bool {
    if woken.urgent {
        return !running.latency_sensitive && woken.key() < running.vruntime;
    }
    let margin = running.slice.checked_div(WAKE_GRANULARITY_DIVISOR).unwrap_or(0);
    woken.key().saturating_add(margin) < running.vruntime
}

/// Whether the running vCPU, whose slice ended, gives way to the queue's
/// best: it keeps the CPU only while it is strictly ahead.
pub fn yields_to(best: &Entry, running: &Running) -> bool {
    best.key() <= running.vruntime
}

/// The start of each per-vCPU line of the power-off summary:
/// `sched: <vm>.<vcpu> ` and then [`Figures`] as it displays.
pub const REPORT_PREFIX: &str = "sched: ";

/// One vCPU's recorded figures, as the power-off summary and `hvctl sched`
/// show them and the test runner reads them back ([`Figures::parse`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    /// Time it ran and waited in a run queue, in microseconds.
    pub run_us: u64,
    pub wait_us: u64,
    /// Times it was switched in; times an interrupt woke it.
    pub switches: u64,
    pub wakeups: u64,
    /// Wake-up latencies by [`bucket`], and the worst, in microseconds.
    pub latency: [u64; BUCKETS],
    pub worst_us: u64,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run {} us, wait {} us, switches {}, wake-ups {}, worst {} us, latency",
            self.run_us, self.wait_us, self.switches, self.wakeups, self.worst_us
        )?;
        for count in self.latency {
            write!(f, " {count}")?;
        }
        Ok(())
    }
}

impl Figures {
    /// Reads what [`Display`](fmt::Display) wrote.
    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let mut number = |label: &str| -> Option<u64> {
            for expected in label.split(' ') {
                if words.next()? != expected {
                    return None;
                }
            }
            words.next()?.trim_end_matches(',').parse().ok()
        };
        let mut figures = Self {
            run_us: number("run")?,
            wait_us: number("us, wait")?,
            switches: number("us, switches")?,
            wakeups: number("wake-ups")?,
            worst_us: number("worst")?,
            latency: [0; BUCKETS],
        };
        if words.next()? != "us," || words.next()? != "latency" {
            return None;
        }
        for slot in &mut figures.latency {
            *slot = words.next()?.parse().ok()?;
        }
        words.next().is_none().then_some(figures)
    }

    /// The bucket of the median wake-up latency.
    pub fn median_bucket(&self) -> Option<usize> {
        percentile_bucket(&self.latency, 500)
    }
}

/// The power-off summary's line on the switches the slice timer caused:
/// [`SwitchCost`] as it displays, after this.
pub const SWITCH_REPORT: &str = "sched: slice-end switches: ";

/// What the switches at a slice's end cost: from the moment the EL2
/// timer's deadline passed to the next vCPU's return to its guest, in
/// nanoseconds of the counter (instructions under `-icount shift=0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchCost {
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: u64,
}

impl fmt::Display for SwitchCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of them, min {} ns, mean {} ns", self.count, self.min_ns, self.mean_ns)
    }
}

impl SwitchCost {
    /// Reads what [`Display`](fmt::Display) wrote.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.trim_end();
        let (count, rest) = rest.split_once(" of them, min ")?;
        let (min, rest) = rest.split_once(" ns, mean ")?;
        let mean = rest.strip_suffix(" ns")?;
        Some(Self { count: count.parse().ok()?, min_ns: min.parse().ok()?, mean_ns: mean.parse().ok()? })
    }
}

/// Wake-up latency buckets: bucket 0 is below 1 µs, bucket n (n >= 1) is
/// [2^(n-1), 2^n) µs, and the last holds everything from 2^(BUCKETS-2) µs
/// (about 16 ms with 16 buckets) up.
pub const BUCKETS: usize = 16;

/// The bucket of a latency of `ns` nanoseconds.
pub fn bucket(ns: u64) -> usize {
    let us = ns / 1000;
    // The number of significant bits: 0 for 0, n for [2^(n-1), 2^n).
    let bits = u64::BITS.saturating_sub(us.leading_zeros());
    usize::try_from(bits).unwrap_or(usize::MAX).min(BUCKETS.saturating_sub(1))
}

/// A bucket's lower bound in microseconds (0 for the first).
pub fn bucket_floor_us(index: usize) -> u64 {
    match index {
        0 => 0,
        n => 1u64.checked_shl(u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX)).unwrap_or(u64::MAX),
    }
}

/// The bucket that holds the `per_mille`-th sample of `counts` (500: the
/// median), if there is any sample.
pub fn percentile_bucket(counts: &[u64], per_mille: u64) -> Option<usize> {
    let total: u64 = counts.iter().fold(0u64, |sum, &c| sum.saturating_add(c));
    if total == 0 {
        return None;
    }
    let rank = total.saturating_mul(per_mille).div_ceil(1000).max(1);
    let mut seen = 0u64;
    counts.iter().position(|&c| {
        seen = seen.saturating_add(c);
        seen >= rank
    })
}

#[cfg(test)]
mod tests;
