//! A portal as its two ends see it: the PCI function's identity, the
//! register block behind its BAR0, and the per-request rule (the second
//! validation level). `docs/portals.md` is the user's description; this
//! module is the one definition the hypervisor, the guest-stub and `hvctl`
//! share.
//!
//! [`PortalModel`] is the pure state of one portal: both ends' registers,
//! what each end may request, and the counters. The hypervisor keeps one
//! per portal and serves each end's register accesses from it; it decides
//! nothing about interrupts itself, but says after every change which
//! end's level ([`PortalModel::level`]) may have changed. A request is
//! checked here, before anything of it reaches the peer: an operation the
//! requesting end may not request changes nothing at the peer, is counted,
//! and leaves [`Outcome::Refused`] in the requester's `RESULT` register.
//!
//! # Registers (BAR0, 4 KiB; 32-bit unless said)
//!
//! | offset | name | access | meaning |
//! |-------:|------|--------|---------|
//! | 0x00 | `ID` | RO | [`ID_MAGIC`] in [31:16], this end (0 or 1) in [8], the portal's index in [7:0] |
//! | 0x04 | `PEER_STATE` | RO | the peer VM: [`PeerState`] |
//! | 0x08 | `ALLOWED` | RO | the operations this end may request (bit n = operation n) |
//! | 0x0c | `PEER_ALLOWED` | RO | the operations the peer may request of this end |
//! | 0x10 | `ARGUMENT` | RW, 64-bit | the argument the next `REQUEST` carries |
//! | 0x18 | `REQUEST` | WO | request operation n (the value) with `ARGUMENT` |
//! | 0x1c | `DOORBELL` | WO | request operation n (the value) with argument 0 |
//! | 0x20 | `RESULT` | RO | [`Outcome`] of this end's last request |
//! | 0x24 | `INT_STATUS` | RW1C | operations the peer requested and this end has not acknowledged |
//! | 0x28 | `EVENTS` | RW1C | [`EVENT_PEER_STATE`]: the peer's state changed |
//! | 0x2c | `SENT` | RO | this end's requests delivered |
//! | 0x30 | `REFUSED` | RO | this end's requests refused (not allowed, or no such operation) |
//! | 0x34 | `PEER_DOWN` | RO | this end's requests that found the peer not running |
//! | 0x38 | `RECEIVED` | RO | requests delivered to this end |
//! | 0x100 + 8n | `RECEIVED_ARG[n]` | RO, 64-bit | the argument of the last operation n delivered to this end |
//!
//! Reads of other offsets return 0 and writes to them (and to read-only
//! registers) are ignored. Registers may be read in any width that does
//! not cross a register; a write must cover the whole register (`REQUEST`
//! and `DOORBELL`: 32 bits; `ARGUMENT`: 32 bits to its low or high half,
//! or 64 bits). Counters wrap at 2^32.
//!
//! The function's interrupt (INTA) is asserted while `INT_STATUS` or
//! `EVENTS` is non-zero and the function's command register does not
//! disable INTx, so `uio_pci_generic` can mask and unmask it.

use crate::pci::config::ClassCode;
use core::fmt;

/// The function's vendor ID. 0x1234 is the ID QEMU's own emulated
/// devices use for experimental functions (its `edu` device); no
/// registered vendor's driver will claim the function by mistake.
pub const VENDOR_ID: u16 = 0x1234;
/// The function's device ID.
pub const DEVICE_ID: u16 = 0x7a11;
/// Memory controller / other (05h, 80h, 00h): shared memory with
/// registers, which no standard class describes better.
pub const CLASS: ClassCode = ClassCode { base: 0x05, sub: 0x80, prog_if: 0x00 };
/// BAR0's size: one page of registers.
pub const REGS_SIZE: u64 = 4096;
/// `ID`'s upper half on every portal ("PO").
pub const ID_MAGIC: u32 = 0x504f;
/// Operations are 0 to 31.
pub const MAX_OPS: u32 = 32;

/// Register offsets in BAR0.
pub mod reg {
    pub const ID: u64 = 0x00;
    pub const PEER_STATE: u64 = 0x04;
    pub const ALLOWED: u64 = 0x08;
    pub const PEER_ALLOWED: u64 = 0x0c;
    pub const ARGUMENT: u64 = 0x10;
    pub const REQUEST: u64 = 0x18;
    pub const DOORBELL: u64 = 0x1c;
    pub const RESULT: u64 = 0x20;
    pub const INT_STATUS: u64 = 0x24;
    pub const EVENTS: u64 = 0x28;
    pub const SENT: u64 = 0x2c;
    pub const REFUSED: u64 = 0x30;
    pub const PEER_DOWN: u64 = 0x34;
    pub const RECEIVED: u64 = 0x38;
    /// `RECEIVED_ARG[n]` is at `RECEIVED_ARG + 8 * n`.
    pub const RECEIVED_ARG: u64 = 0x100;
}

/// One past `RECEIVED_ARG[31]`.
const RECEIVED_ARG_END: u64 = reg::RECEIVED_ARG + 8 * MAX_OPS as u64;

/// `EVENTS` bit 0: the peer's `PEER_STATE` changed since it was last
/// acknowledged.
pub const EVENT_PEER_STATE: u32 = 1 << 0;

/// What `PEER_STATE` reads: the peer VM's state, as the VM control
/// function shows a VM's (`Off` also before it ever started; `Stopping`
/// also while it restarts). Requests are delivered only while it runs.
pub use crate::control::VmState as PeerState;

/// What `RESULT` reads: the outcome of this end's last request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Outcome {
    /// No request made yet.
    None = 0,
    /// Delivered: the peer's `INT_STATUS` has the operation's bit.
    Delivered = 1,
    /// This end may not request that operation (level two): not delivered.
    Refused = 2,
    /// The peer is not running: not delivered.
    PeerDown = 3,
    /// Not an operation (32 or more): not delivered, counted as refused.
    NoSuchOperation = 4,
}

impl Outcome {
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::None),
            1 => Some(Self::Delivered),
            2 => Some(Self::Refused),
            3 => Some(Self::PeerDown),
            4 => Some(Self::NoSuchOperation),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Delivered => "delivered",
            Self::Refused => "refused: operation not allowed",
            Self::PeerDown => "not delivered: peer not running",
            Self::NoSuchOperation => "refused: no such operation",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One end's counters, as the power-off summary and the registers show
/// them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u32,
    pub refused: u32,
    pub peer_down: u32,
    pub received: u32,
}

/// The summary line's words for one end, after `REPORT_PREFIX`.
impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, refused {}, peer down {}, received {}",
            self.sent, self.refused, self.peer_down, self.received
        )
    }
}

impl Counters {
    /// The inverse of `Display`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split(", ");
        let mut field = |name: &str| words.next()?.strip_prefix(name)?.strip_prefix(' ')?.parse::<u32>().ok();
        let counters = Self {
            sent: field("sent")?,
            refused: field("refused")?,
            peer_down: field("peer down")?,
            received: field("received")?,
        };
        words.next().is_none().then_some(counters)
    }
}

/// The hypervisor's power-off summary has one line per portal end:
/// `portal NAME end E (VM): ` then [`Counters`].
pub const REPORT_PREFIX: &str = "portal ";

/// The guest-stub's word that makes both ends of a portal time doorbell
/// round trips instead of checking (`stub=portal-bench=N`).
pub const BENCH_WORD: &str = "stub=portal-bench=";

/// What one end measured in `stub=portal-bench=N`, in nanoseconds of the
/// virtual counter (instructions under `-icount shift=0`): printed by the
/// guest-stub, read by `make bench`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchReport {
    pub end: u32,
    pub rounds: u32,
    /// From the first round's start to the last's end.
    pub total: u64,
    /// This end's own instructions (EL1 and EL0) over the rounds.
    pub guest: u64,
    /// End 0 only: the median and the fastest round trip, and the median
    /// refused request (the trap and the check, nothing delivered).
    pub median: u64,
    pub min: u64,
    pub max: u64,
    pub refused: u64,
}

/// The line's words before the figures.
const BENCH_PREFIX: &str = "portal bench: end ";

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{BENCH_PREFIX}{} rounds {} total {} guest {} median {} min {} max {} refused {}",
            self.end, self.rounds, self.total, self.guest, self.median, self.min, self.max, self.refused
        )
    }
}

impl BenchReport {
    /// The report in a line of console text (the inverse of `Display`).
    pub fn find(line: &str) -> Option<Self> {
        let (_, rest) = line.split_once(BENCH_PREFIX)?;
        let mut words = rest.split(' ');
        let end = words.next()?.parse().ok()?;
        let [rounds, total, guest, median, min, max, refused] =
            crate::report::named_values(&mut words, ["rounds", "total", "guest", "median", "min", "max", "refused"])?;
        let report = Self { end, rounds: u32::try_from(rounds).ok()?, total, guest, median, min, max, refused };
        words.next().is_none().then_some(report)
    }
}

/// One end's registers.
#[derive(Clone, Copy, Debug)]
struct End {
    argument: u64,
    result: Outcome,
    int_status: u32,
    events: u32,
    counters: Counters,
    received_arg: [u64; MAX_OPS as usize],
}

impl End {
    const fn new() -> Self {
        Self {
            argument: 0,
            result: Outcome::None,
            int_status: 0,
            events: 0,
            counters: Counters { sent: 0, refused: 0, peer_down: 0, received: 0 },
            received_arg: [0; MAX_OPS as usize],
        }
    }
}

/// What a register write changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Whether each end's interrupt level may have changed (index = end).
    pub level_changed: [bool; 2],
}

/// One portal's state: both ends' registers.
#[derive(Clone, Debug)]
pub struct PortalModel {
    index: u8,
    /// What each end may request of the other (bit n = operation n).
    allowed: [u32; 2],
    ends: [End; 2],
}

impl PortalModel {
    /// Portal `index` (in the description's order), whose end `e` may
    /// request the operations in `allowed[e]`.
    pub const fn new(index: u8, allowed: [u32; 2]) -> Self {
        Self { index, allowed, ends: [End::new(), End::new()] }
    }

    fn end(&self, end: usize) -> Option<&End> {
        self.ends.get(end)
    }

    /// The other end.
    const fn peer(end: usize) -> usize {
        if end == 0 {
            1
        } else {
            0
        }
    }

    /// Whether end `end`'s interrupt source is active (`INT_STATUS` or
    /// `EVENTS` non-zero); the function's INTx disable decides whether it
    /// is asserted.
    pub fn level(&self, end: usize) -> bool {
        self.end(end).is_some_and(|e| e.int_status != 0 || e.events != 0)
    }

    pub fn counters(&self, end: usize) -> Counters {
        self.end(end).map(|e| e.counters).unwrap_or_default()
    }

    /// Level two: whether end `end` may request operation `op`.
    pub fn allows(&self, end: usize, op: u32) -> bool {
        let mask = self.allowed.get(end).copied().unwrap_or(0);
        op < MAX_OPS && mask.checked_shr(op).is_some_and(|m| m & 1 != 0)
    }

    /// End `end` requests operation `op` with `argument`; the peer runs
    /// or not (`peer_running`). Checked before anything reaches the peer.
    pub fn request(&mut self, end: usize, op: u32, argument: u64, peer_running: bool) -> (Outcome, Effect) {
        let peer = Self::peer(end);
        let outcome = if op >= MAX_OPS {
            Outcome::NoSuchOperation
        } else if !self.allows(end, op) {
            Outcome::Refused
        } else if !peer_running {
            Outcome::PeerDown
        } else {
            Outcome::Delivered
        };
        let mut effect = Effect::default();
        if outcome == Outcome::Delivered {
            if let Some(p) = self.ends.get_mut(peer) {
                p.int_status |= 1u32.checked_shl(op).unwrap_or(0);
                if let Some(slot) = p.received_arg.get_mut(op as usize) {
                    *slot = argument;
                }
                p.counters.received = p.counters.received.wrapping_add(1);
                if let Some(changed) = effect.level_changed.get_mut(peer) {
                    *changed = true;
                }
            }
        }
        if let Some(e) = self.ends.get_mut(end) {
            e.result = outcome;
            let c = &mut e.counters;
            match outcome {
                Outcome::Delivered => c.sent = c.sent.wrapping_add(1),
                Outcome::Refused | Outcome::NoSuchOperation => c.refused = c.refused.wrapping_add(1),
                Outcome::PeerDown => c.peer_down = c.peer_down.wrapping_add(1),
                Outcome::None => {}
            }
        }
        (outcome, effect)
    }

    /// A read of `size` bytes at `offset` in end `end`'s BAR0; the peer is
    /// in `peer_state`.
    pub fn read(&self, end: usize, offset: u64, size: u8, peer_state: PeerState) -> u64 {
        let Some(e) = self.end(end) else { return 0 };
        let (register, width, value) = match offset {
            reg::ARGUMENT..=0x17 => (reg::ARGUMENT, 8, e.argument),
            o if (reg::RECEIVED_ARG..RECEIVED_ARG_END).contains(&o) => {
                let n = o.saturating_sub(reg::RECEIVED_ARG) / 8;
                let register = reg::RECEIVED_ARG.saturating_add(n.saturating_mul(8));
                (register, 8, e.received_arg.get(n as usize).copied().unwrap_or(0))
            }
            o => {
                let register = o & !3;
                let value = match register {
                    reg::ID => (ID_MAGIC << 16) | ((end as u32) << 8) | u32::from(self.index),
                    reg::PEER_STATE => peer_state as u32,
                    reg::ALLOWED => self.allowed.get(end).copied().unwrap_or(0),
                    reg::PEER_ALLOWED => self.allowed.get(Self::peer(end)).copied().unwrap_or(0),
                    reg::RESULT => e.result as u32,
                    reg::INT_STATUS => e.int_status,
                    reg::EVENTS => e.events,
                    reg::SENT => e.counters.sent,
                    reg::REFUSED => e.counters.refused,
                    reg::PEER_DOWN => e.counters.peer_down,
                    reg::RECEIVED => e.counters.received,
                    _ => 0,
                };
                (register, 4, u64::from(value))
            }
        };
        let shift = offset.saturating_sub(register).saturating_mul(8);
        let fits = offset.saturating_sub(register).saturating_add(u64::from(size)) <= width;
        if !fits {
            return 0;
        }
        let mask = if size >= 8 { u64::MAX } else { (1u64 << (8 * u32::from(size))).saturating_sub(1) };
        value.checked_shr(shift as u32).unwrap_or(0) & mask
    }

    /// A write of `size` bytes of `value` at `offset` in end `end`'s BAR0;
    /// the peer runs or not.
    pub fn write(&mut self, end: usize, offset: u64, size: u8, value: u64, peer_running: bool) -> Effect {
        let mut effect = Effect::default();
        let Some(e) = self.ends.get_mut(end) else { return effect };
        match (offset, size) {
            (reg::ARGUMENT, 8) => e.argument = value,
            (reg::ARGUMENT, 4) => e.argument = (e.argument & !u64::from(u32::MAX)) | (value & u64::from(u32::MAX)),
            (0x14, 4) => e.argument = (e.argument & u64::from(u32::MAX)) | (value << 32),
            (reg::REQUEST, 4) => {
                let argument = e.argument;
                return self.request(end, value as u32, argument, peer_running).1;
            }
            (reg::DOORBELL, 4) => return self.request(end, value as u32, 0, peer_running).1,
            (reg::INT_STATUS, 4) => {
                e.int_status &= !(value as u32);
                effect.level_changed = if end == 0 { [true, false] } else { [false, true] };
            }
            (reg::EVENTS, 4) => {
                e.events &= !(value as u32);
                effect.level_changed = if end == 0 { [true, false] } else { [false, true] };
            }
            _ => {}
        }
        effect
    }

    /// The VM at end `end` changed state: its peer gets
    /// [`EVENT_PEER_STATE`].
    pub fn peer_changed(&mut self, end: usize) -> Effect {
        let peer = Self::peer(end);
        let mut effect = Effect::default();
        if let Some(p) = self.ends.get_mut(peer) {
            p.events |= EVENT_PEER_STATE;
            if let Some(changed) = effect.level_changed.get_mut(peer) {
                *changed = true;
            }
        }
        effect
    }

    /// End `end`'s VM (re)starts: its registers start afresh, as a reset
    /// device's would. Its counters stay (they are the run's record), and
    /// the shared memory is the other end's too, so it is left alone.
    pub fn reset_end(&mut self, end: usize) -> Effect {
        let mut effect = Effect::default();
        if let Some(e) = self.ends.get_mut(end) {
            let counters = e.counters;
            *e = End::new();
            e.counters = counters;
            if let Some(changed) = effect.level_changed.get_mut(end) {
                *changed = true;
            }
        }
        effect
    }
}

#[cfg(test)]
mod tests;
