//! The portal checks: the guest-stub as one end of a portal between two
//! VMs ([`docs/portals.md`](../../docs/portals.md)), driving the PCI
//! function the hypervisor shows each end (`platform::portal` is the
//! register model both sides share). This module owns the driver (finding
//! the function, its registers, its interrupt, the shared memory) and the
//! `portal-*` checks, which need two VMs running the same checks at once.
//!
//! # What the stub is promised
//!
//! The host bridge of a VM that is an end of portals has, on bus 0 at
//! device `16 + k` (k = 0, 1, ... in the description's order of the
//! portals this VM is an end of), function 0: vendor
//! `platform::portal::VENDOR_ID`, device `DEVICE_ID`, class `CLASS`,
//! header type 0, interrupt pin INTA wired by `interrupt-map` to a GIC SPI
//! (the interrupt line holds its INTID); BAR0 a 64-bit non-prefetchable
//! 4 KiB window of registers, BAR2 a 64-bit prefetchable window of shared
//! memory (a power of two of at least 4 KiB), both assigned, memory
//! decoding on. A VM that is an end of no portal has no such function,
//! and the portals' memory is among its `/chosen/hv,probe-holes`.
//!
//! # Words
//!
//! `stub=portals=N`: how many portal functions this VM must find (default
//! 0); `stub=portal-rounds=R`: the ping-pong's rounds (default
//! [`DEFAULT_ROUNDS`]). The checks are not in the default run: they run
//! when `stub=only=<prefix>` names them (`stub=only=portal`).
//!
//! # The checks
//!
//! Both ends run the same checks in the same order; each end learns its
//! role from `ID`'s end bit, and waits for the other interlock them: no
//! end requests an operation before the peer has taken its previous one
//! (requests of one operation merge until acknowledged), and no end reads a
//! counter or `RECEIVED_ARG` the peer could still be moving. The
//! checks after `portal-enumerate` drive the first portal found (device
//! 16); with N = 0 they report themselves skipped ("no portal").
//!
//! - `portal-enumerate`: exactly N portal functions on bus 0, at devices
//!   16.., each with the header above (BAR0 and BAR2 sized the usual way,
//!   all-ones with memory decoding off, then restored), `interrupt-map`
//!   routing its pin, and `ID` reading [`platform::portal::ID_MAGIC`] and
//!   an end of 0 or 1. Prints one line per function:
//!   `portal: 00:10.0: portal 0 end 0, registers at 0x..., 64 KiB shared at
//!   0x..., INTID 40`. With N = 0 it passes only if there is none.
//! - `portal-isolation`: the `isolation-holes` probe over
//!   `/chosen/hv,probe-holes`, whose addresses it prints first
//!   (`portal: probe holes: 0x..., ...`), so that the scenario can see that
//!   a VM that is no end has the portal's memory among them; an end checks
//!   that its own shared memory is not listed. (A check of its own, rather
//!   than `isolation-holes` itself, so that `stub=only=portal` selects the
//!   whole scenario and the plan is the same in every VM.)
//! - `portal-ping-pong`: both ends wait until `PEER_STATE` reads running;
//!   then R rounds: end 0 requests operation 0 with `ARGUMENT` = the round
//!   (written as two 32-bit halves in odd rounds, one 64-bit store in even
//!   ones), end 1 waits for it, checks `RECEIVED_ARG[0]` and requests
//!   operation 0 back with the same argument, which end 0 waits for and
//!   checks. Every `RESULT` must read delivered, and `SENT` and `RECEIVED`
//!   count each round exactly (read when the peer cannot move them: it
//!   requests nothing before it gets its answer).
//! - `portal-shared-memory`: end 0 fills the first half of BAR2 from a
//!   seed and requests operation 1 with the seed; end 1 checks every word
//!   of it, fills the second half from its own seed and requests operation
//!   0 with that; end 0 checks the second half (and its own first half
//!   again). The first wrong word is reported; end 1 answers even when it
//!   found one (argument [`PEER_FAILED`]), so that end 0 fails at once.
//! - `portal-refused`: each end requests every operation `ALLOWED` does not
//!   have (`RESULT` refused), operation 32 with `REQUEST` and 0xffffffff
//!   with `DOORBELL` (no such operation): `REFUSED` counts each, `SENT`
//!   does not move. Then each rings its "done" (`DOORBELL` 0, argument 0;
//!   end 0 first, end 1 once it has end 0's) and takes the peer's:
//!   `RECEIVED_ARG[0]` reads 0, `INT_STATUS` 0,
//!   the operations ever received are exactly those the protocol requests
//!   (end 0: operation 0; end 1: operations 0 and 1: nothing refused
//!   arrived), and `SENT` and `RECEIVED` are exactly R + 2 on both ends.
//! - `portal-peer-down`: end 0 reports itself skipped and, its checks done,
//!   powers off; end 1 waits until `PEER_STATE` reads off and the peer-state
//!   event came (then acknowledges `EVENTS`, which must read 0: going off
//!   may be two events, stopping and off), then rings operation 0: `RESULT`
//!   not delivered (peer not running), `PEER_DOWN` 1, `SENT` unchanged.
//!
//! So the hypervisor's power-off summary must count, with R rounds and the
//! scenario's operations (end 0 may request 0 and 1, end 1 only 0): end 0
//! sent R + 2, refused 32, peer down 0, received R + 2; end 1 sent R + 2,
//! refused 33, peer down 1, received R + 2.
//!
//! # Waiting
//!
//! Every wait is interrupt-driven and bounded. The function's SPI is
//! routed to vCPU 0 with [`portal_handler`], which reads `INT_STATUS` and
//! `EVENTS`, acknowledges what it read (write-one-to-clear, so the level
//! drops before its EOI) and records it; the thread waits in `WFI` with
//! `PSTATE.I` masked, takes the interrupt after each wake-up, and looks at
//! what the handler recorded, so a request that arrives without its
//! interrupt is never seen and fails the wait, whose message then shows
//! `INT_STATUS`. The virtual timer ends each `WFI` after at most
//! [`POLL_MS`] (for the waits on `PEER_STATE`, which may change without an
//! event the stub sees), and each wait fails when the virtual counter
//! passes its deadline ([`PEER_MS`], [`START_MS`]). An interrupt that keeps
//! coming without the thread running ([`STORM_LIMIT`] times: acknowledging
//! does not drop it) is masked with the priority mask and fails the check.

use crate::checks::Failure;
use crate::exceptions::{mask_irqs, unmask_irqs};
use crate::pci::{about, bdf_of, expect_eq, Config, Width};
use crate::virq::{IrqFailure, HOST_STALL_MS, PRIORITY};
use crate::{gic, timer, virq, Env};
use aarch64_cpu::registers::{Writeable, CNTV_CTL_EL0, CNTV_CVAL_EL0};
use arm_gic::IntId;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use platform::pci::config::{bar, command, offset};
use platform::pci::{Bdf, Intx, DEVICES_PER_BUS, FUNCTIONS_PER_DEVICE, ROOT_BUS};
use platform::portal::{reg, Outcome, PeerState, EVENT_PEER_STATE, ID_MAGIC, MAX_OPS, REGS_SIZE};
use platform::println;

/// The device number of the first portal function on bus 0.
pub const FIRST_DEVICE: u8 = 16;
/// `stub=portal-rounds=` when not given.
pub const DEFAULT_ROUNDS: u32 = 100;
/// How long an end waits for the other's answer: the other VM runs on
/// another physical CPU, which the host may not run for a second or more
/// (`virq::HOST_STALL_MS`).
const PEER_MS: u64 = HOST_STALL_MS;
/// How long an end waits for the other to start or to power off.
const START_MS: u64 = 2 * HOST_STALL_MS;
/// The longest `WFI` of a wait.
const POLL_MS: u64 = 10;
/// The wake-up timer's priority: above the portal's, so that it still
/// ends a `WFI` once a storm has been masked ([`silence`]).
const WAKE_PRIORITY: u8 = 0x80;
/// Portal interrupts taken in a row without the thread running that make
/// a storm.
const STORM_LIMIT: u64 = 10_000;
/// The lowest priority: the mask that lets every interrupt through.
const PRIORITY_MASK_ALL: u8 = 0xff;
/// The GIC's first SPI.
const SPI_BASE: u32 = 32;
/// INTIDs from here on are special.
const FIRST_SPECIAL_INTID: u32 = 1020;
/// `ID`: the end in bit 8, the portal's index in bits 7:0.
const ID_END_SHIFT: u32 = 8;
const ID_INDEX_MASK: u32 = 0xff;
/// `ID` bits 15:9 are not assigned.
const ID_RESERVED_MASK: u32 = 0xfe00;
/// BAR2's type bits: 64-bit, prefetchable memory.
const SHARED_BAR_TYPE: u32 = bar::MEMORY_64 | bar::PREFETCHABLE;
/// The smallest shared memory: one page.
const MIN_SHARED: u64 = 4096;
/// The seeds of the two halves' patterns (`portal-shared-memory`).
const SEEDS: [u64; 2] = [0x5eed_0e0d_0000_0a11, 0x5eed_0e1d_0000_0b22];
/// What end 1 answers in `portal-shared-memory` when the first half was
/// wrong.
pub const PEER_FAILED: u64 = 0xdead_0e1d_fa11_ed00;
/// The argument of each refused request, to tell them apart if one
/// arrived.
const REFUSED_ARG: u64 = 0xbad0_0000;

// --- words ------------------------------------------------------------------

static WANTED: AtomicU32 = AtomicU32::new(0);
static ROUNDS: AtomicU32 = AtomicU32::new(DEFAULT_ROUNDS);

/// `stub=portals=N`.
pub fn set_wanted(n: u32) {
    WANTED.store(n, Ordering::Relaxed);
}

/// `stub=portal-rounds=R`.
pub fn set_rounds(r: u32) {
    ROUNDS.store(r, Ordering::Relaxed);
}

// --- failures ---------------------------------------------------------------

/// What a portal check found.
#[derive(Clone, Copy, Debug)]
pub enum PortalFailure {
    /// `what` did not happen within `ms`; the registers as they then read.
    Timeout { what: &'static str, ms: u64, int_status: u32, events: u32, peer_state: u32, taken: u64, seen: u32 },
    /// In round `round` of `rounds`, `what` read `got`, not `expected`.
    Round { what: &'static str, round: u64, rounds: u64, expected: u64, got: u64 },
    /// A request of operation `op` left `RESULT` = `got`, not `expected`.
    Result { what: &'static str, op: u32, expected: Outcome, got: u32 },
    /// The first word of the shared memory that read wrong.
    Memory { what: &'static str, offset: u64, expected: u64, got: u64 },
    /// The portal interrupt kept coming without the thread running.
    Storm { intid: u32, taken: u64 },
    /// An access to the registers in the interrupt handler aborted.
    Handler { far: u64 },
}

impl core::fmt::Display for PortalFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Timeout { what, ms, int_status, events, peer_state, taken, seen } => write!(
                f,
                "no {what} within {ms} ms (INT_STATUS {int_status:#x}, EVENTS {events:#x}, PEER_STATE \
                 {peer_state}; {taken} portal interrupts taken so far, operations they brought {seen:#x})"
            ),
            Self::Round { what, round, rounds, expected, got } => {
                write!(f, "round {round} of {rounds}: {what}: expected {expected:#x}, got {got:#x}")
            }
            Self::Result { what, op, expected, got } => {
                let name = Outcome::from_u32(got).map_or("not an outcome", Outcome::name);
                write!(
                    f,
                    "{what}: request of operation {op:#x}: RESULT reads {got} ({name}), expected {} ({expected})",
                    expected as u32
                )
            }
            Self::Memory { what, offset, expected, got } => {
                write!(f, "{what}: the word at offset {offset:#x} of BAR2 reads {got:#x}, expected {expected:#x}")
            }
            Self::Storm { intid, taken } => write!(
                f,
                "the portal's interrupt (INTID {intid}) was taken {taken} times in a row without the check \
                 running: acknowledging INT_STATUS and EVENTS does not drop it"
            ),
            Self::Handler { far } => {
                write!(f, "a load or store of the portal's registers in its interrupt handler aborted (FAR {far:#x})")
            }
        }
    }
}

impl From<PortalFailure> for Failure {
    fn from(failure: PortalFailure) -> Self {
        Failure::Portal(failure)
    }
}

// --- the function -------------------------------------------------------------

/// A portal function as `portal-enumerate` found it.
#[derive(Clone, Copy, Debug)]
struct Portal {
    /// BAR0: the registers.
    regs: u64,
    /// BAR2: the shared memory, and its size.
    shared: u64,
    size: u64,
    /// The SPI its pin is wired to.
    intid: u32,
    /// This VM's end (0 or 1) and the portal's index, from `ID`.
    end: u32,
    index: u32,
}

/// What `portal-enumerate` left for the checks after it.
#[derive(Clone, Copy, Debug)]
enum Found {
    /// It did not run, or failed.
    Nothing,
    /// It passed with N = 0.
    NoPortal,
    /// It passed; the first portal.
    Portal(Portal),
}

static FOUND: spin::Mutex<Found> = spin::Mutex::new(Found::Nothing);

/// The portal the checks after `portal-enumerate` drive.
fn first_portal() -> Result<Portal, Failure> {
    match *FOUND.lock() {
        Found::Portal(portal) => Ok(portal),
        Found::NoPortal => Err(Failure::Skip("no portal (stub=portals=0)")),
        Found::Nothing => Err(Failure::Missing("portal-enumerate did not find the portal this check needs")),
    }
}

const REGS_ABORTED: &str = "an access to the portal's registers (BAR0) aborted";
const SHARED_ABORTED: &str = "an access to the portal's shared memory (BAR2) aborted";

impl Portal {
    fn address(&self, register: u64) -> u64 {
        self.regs.wrapping_add(register)
    }

    /// One 32-bit load of `register`.
    fn load(&self, register: u64) -> Result<u32, Failure> {
        crate::pci::load(self.address(register), Width::Word)
            .map(|v| v as u32)
            .map_err(|caught| Failure::Exception { what: REGS_ABORTED, caught })
    }

    /// One 64-bit load of `register`.
    fn load64(&self, register: u64) -> Result<u64, Failure> {
        crate::pci::load(self.address(register), Width::Double)
            .map_err(|caught| Failure::Exception { what: REGS_ABORTED, caught })
    }

    fn store(&self, register: u64, value: u32) -> Result<(), Failure> {
        crate::pci::store(self.address(register), Width::Word, value.into())
            .map_err(|caught| Failure::Exception { what: REGS_ABORTED, caught })
    }

    fn store64(&self, register: u64, value: u64) -> Result<(), Failure> {
        crate::pci::store(self.address(register), Width::Double, value)
            .map_err(|caught| Failure::Exception { what: REGS_ABORTED, caught })
    }

    fn expect(&self, what: &'static str, register: u64, expected: u64) -> Result<(), Failure> {
        expect_eq(what, expected, self.load(register)?.into())
    }

    /// `RESULT` must read `expected` after a request of `op`.
    fn expect_result(&self, what: &'static str, op: u32, expected: Outcome) -> Result<(), Failure> {
        let got = self.load(reg::RESULT)?;
        if got == expected as u32 {
            Ok(())
        } else {
            Err(PortalFailure::Result { what, op, expected, got }.into())
        }
    }

    /// Requests `op` with `argument` (`ARGUMENT` written as two 32-bit
    /// halves when `halves`, else with one 64-bit store, and read back);
    /// `RESULT` must read delivered.
    fn ring(&self, what: &'static str, op: u32, argument: u64, halves: bool) -> Result<(), Failure> {
        if halves {
            self.store(reg::ARGUMENT, argument as u32)?;
            self.store(reg::ARGUMENT + 4, (argument >> 32) as u32)?;
        } else {
            self.store64(reg::ARGUMENT, argument)?;
        }
        expect_eq("ARGUMENT read back before the request", argument, self.load64(reg::ARGUMENT)?)?;
        // The shared memory written before is visible to the other end
        // before it learns of the request.
        aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
        self.store(reg::REQUEST, op)?;
        self.expect_result(what, op, Outcome::Delivered)
    }

    fn shared_word(&self, index: u64) -> u64 {
        self.shared.wrapping_add(index.wrapping_mul(8))
    }
}

/// The portal's vendor and device IDs as config dword 0 reads them.
const fn portal_ids() -> u64 {
    (platform::portal::VENDOR_ID as u64) | (platform::portal::DEVICE_ID as u64) << 16
}

/// Whether the function at `bdf` is a portal function (for `pci-enumerate`,
/// which leaves them to `portal-enumerate`).
pub(crate) fn is_portal(config: &Config, bdf: Bdf) -> Result<bool, Failure> {
    Ok(bdf.device() >= FIRST_DEVICE && config.read(bdf, offset::VENDOR_ID, Width::Word)? == portal_ids())
}

// --- the interrupt handler ------------------------------------------------------

/// BAR0 of the portal whose interrupt is routed to [`portal_handler`].
static REGS: AtomicU64 = AtomicU64::new(0);
/// Operations the handler found in `INT_STATUS` and the thread has not
/// taken yet; all it ever found; the `EVENTS` it found.
static PENDING_OPS: AtomicU32 = AtomicU32::new(0);
static SEEN_OPS: AtomicU32 = AtomicU32::new(0);
static PENDING_EVENTS: AtomicU32 = AtomicU32::new(0);
/// Interrupts taken, those that found nothing, and those since the thread
/// last ran.
static TAKEN: AtomicU64 = AtomicU64::new(0);
static EMPTY: AtomicU64 = AtomicU64::new(0);
static SINCE_THREAD: AtomicU64 = AtomicU64::new(0);
/// Set when the handler masked the interrupt (a storm, or an aborted
/// access, whose address is in [`HANDLER_FAR`]).
static SILENCED: AtomicBool = AtomicBool::new(false);
static HANDLER_FAULT: AtomicBool = AtomicBool::new(false);
static HANDLER_FAR: AtomicU64 = AtomicU64::new(0);

/// The portal's SPI: reads `INT_STATUS` and `EVENTS`, acknowledges what it
/// read (so the level drops before the EOI; a bit that arrives meanwhile
/// is not cleared and raises the interrupt again) and records it.
fn portal_handler(_: IntId) {
    let base = REGS.load(Ordering::SeqCst);
    TAKEN.fetch_add(1, Ordering::SeqCst);
    let since = SINCE_THREAD.fetch_add(1, Ordering::SeqCst) + 1;
    let load = |r: u64| crate::pci::load(base.wrapping_add(r), Width::Word).map(|v| v as u32);
    let ack = |r: u64, v: u32| v == 0 || crate::pci::store(base.wrapping_add(r), Width::Word, v.into()).is_ok();
    let (status, events) = match (load(reg::INT_STATUS), load(reg::EVENTS)) {
        (Ok(status), Ok(events)) => (status, events),
        (Err(caught), _) | (_, Err(caught)) => {
            HANDLER_FAR.store(caught.far, Ordering::SeqCst);
            HANDLER_FAULT.store(true, Ordering::SeqCst);
            return silence();
        }
    };
    if status | events == 0 {
        EMPTY.fetch_add(1, Ordering::SeqCst);
    }
    if !ack(reg::INT_STATUS, status) || !ack(reg::EVENTS, events) {
        HANDLER_FAR.store(base.wrapping_add(reg::INT_STATUS), Ordering::SeqCst);
        HANDLER_FAULT.store(true, Ordering::SeqCst);
        silence();
    }
    PENDING_OPS.fetch_or(status, Ordering::SeqCst);
    SEEN_OPS.fetch_or(status, Ordering::SeqCst);
    PENDING_EVENTS.fetch_or(events, Ordering::SeqCst);
    if since >= STORM_LIMIT {
        silence();
    }
}

/// Masks the portal's interrupt (and everything of its priority and
/// below) with the CPU interface's priority mask, which no lock guards;
/// the wake-up timer still gets through. The session puts it back.
fn silence() {
    SILENCED.store(true, Ordering::SeqCst);
    gic::set_priority_mask(PRIORITY);
}

/// The wake-up timer's handler: turns the virtual timer off (its output
/// drops before the EOI).
fn wake_handler(_: IntId) {
    timer::tick_stop();
}

fn reset_handler_state(regs: u64) {
    REGS.store(regs, Ordering::SeqCst);
    for value in [&TAKEN, &EMPTY, &SINCE_THREAD] {
        value.store(0, Ordering::SeqCst);
    }
    SILENCED.store(false, Ordering::SeqCst);
    HANDLER_FAULT.store(false, Ordering::SeqCst);
}

// --- sessions and waits -----------------------------------------------------------

/// Runs `f` with the portal's SPI routed to [`portal_handler`] on vCPU 0
/// and the virtual timer's PPI to [`wake_handler`], then puts everything
/// back: both disabled, handlers removed, the timer off, the priority mask
/// open, `PSTATE.I` masked. What the handler recorded stays for the next
/// check (`SEEN_OPS`, the pending operations and events): their bits are
/// acknowledged in the registers.
fn with_session(env: &Env, f: impl FnOnce(&Portal) -> Result<(), Failure>) -> Result<(), Failure> {
    let portal = first_portal()?;
    virq::boot_gic()?;
    let wake = env.virtual_timer.map_err(IrqFailure::NoTimer)?;
    if !(SPI_BASE..FIRST_SPECIAL_INTID).contains(&portal.intid) {
        return Err(Failure::Mismatch {
            what: "the portal's INTID (an SPI: 32..1019)",
            expected: 32,
            got: portal.intid.into(),
        });
    }
    let spi = IntId::spi(portal.intid - SPI_BASE);
    let gic_error = |why| Failure::from(IrqFailure::Gic { cpu: 0, why });
    mask_irqs();
    reset_handler_state(portal.regs);
    gic::set_handler(spi, Some(portal_handler));
    gic::set_handler(wake, Some(wake_handler));
    let result = gic::configure(0, wake, WAKE_PRIORITY, true)
        .map_err(gic_error)
        .and_then(|()| gic::configure_spi(spi, PRIORITY, 0, true).map_err(gic_error))
        .and_then(|()| f(&portal));
    mask_irqs();
    timer::tick_stop();
    let _ = gic::configure_spi(spi, PRIORITY, 0, false);
    let _ = gic::configure(0, wake, WAKE_PRIORITY, false);
    gic::set_handler(spi, None);
    gic::set_handler(wake, None);
    gic::set_priority_mask(PRIORITY_MASK_ALL);
    let (taken, empty) = (TAKEN.load(Ordering::SeqCst), EMPTY.load(Ordering::SeqCst));
    println!("portal: {taken} interrupts taken ({empty} found INT_STATUS and EVENTS 0)");
    result?;
    virq::finish(Ok(()))
}

/// What the handler did wrong, if anything.
fn handler_failure(portal: &Portal) -> Option<Failure> {
    if HANDLER_FAULT.load(Ordering::SeqCst) {
        return Some(PortalFailure::Handler { far: HANDLER_FAR.load(Ordering::SeqCst) }.into());
    }
    SILENCED
        .load(Ordering::SeqCst)
        .then(|| PortalFailure::Storm { intid: portal.intid, taken: TAKEN.load(Ordering::SeqCst) }.into())
}

/// Waits until `done()`, sleeping in `WFI` (see the module documentation)
/// for at most `ms` of virtual counter.
fn wait(
    portal: &Portal,
    what: &'static str,
    ms: u64,
    mut done: impl FnMut() -> Result<bool, Failure>,
) -> Result<(), Failure> {
    let deadline = timer::virtual_now().saturating_add(timer::ms_to_ticks(ms));
    let poll = timer::ms_to_ticks(POLL_MS).max(1);
    let result = loop {
        mask_irqs();
        SINCE_THREAD.store(0, Ordering::SeqCst);
        if let Some(failure) = handler_failure(portal) {
            break Err(failure);
        }
        match done() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(failure) => break Err(failure),
        }
        let now = timer::virtual_now();
        if now >= deadline {
            let read = |r| portal.load(r).unwrap_or(u32::MAX);
            break Err(PortalFailure::Timeout {
                what,
                ms,
                int_status: read(reg::INT_STATUS),
                events: read(reg::EVENTS),
                peer_state: read(reg::PEER_STATE),
                taken: TAKEN.load(Ordering::SeqCst),
                seen: SEEN_OPS.load(Ordering::SeqCst),
            }
            .into());
        }
        CNTV_CVAL_EL0.set(deadline.min(now.saturating_add(poll)));
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        // Masked: an interrupt that came since `done()` was looked at stays
        // pending and ends the WFI; it is taken right after.
        aarch64_cpu::asm::wfi();
        unmask_irqs();
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    };
    mask_irqs();
    timer::tick_stop();
    result
}

/// Waits for operation `op` from the peer (its bit, which the handler
/// found in `INT_STATUS`), takes it, and returns `RECEIVED_ARG[op]`.
fn wait_op(portal: &Portal, what: &'static str, op: u32) -> Result<u64, Failure> {
    let bit = 1u32 << (op % MAX_OPS);
    wait(portal, what, PEER_MS, || Ok(PENDING_OPS.load(Ordering::SeqCst) & bit != 0))?;
    PENDING_OPS.fetch_and(!bit, Ordering::SeqCst);
    portal.load64(reg::RECEIVED_ARG + 8 * u64::from(op % MAX_OPS))
}

fn wait_peer_state(portal: &Portal, what: &'static str, state: PeerState) -> Result<(), Failure> {
    wait(portal, what, START_MS, || Ok(portal.load(reg::PEER_STATE)? == state as u32))
}

// --- portal-enumerate ------------------------------------------------------------

pub fn enumerate(env: &Env) -> Result<(), Failure> {
    *FOUND.lock() = Found::Nothing;
    let wanted = WANTED.load(Ordering::Relaxed);
    let ecam = match (env.ecam.as_ref(), wanted) {
        (Ok(ecam), _) => ecam,
        (Err(_), 0) => {
            println!("portal: no PCI host bridge, so no portal function");
            *FOUND.lock() = Found::NoPortal;
            return Ok(());
        }
        (Err(why), _) => return Err(Failure::Missing(why)),
    };
    let config = Config::open(env)?;
    let mut first = None;
    let mut count = 0u8;
    for device in 0..DEVICES_PER_BUS {
        let bdf = bdf_of(ROOT_BUS, device, 0)?;
        if config.read(bdf, offset::VENDOR_ID, Width::Word)? != portal_ids() {
            continue;
        }
        about(
            bdf,
            "portal",
            expect_eq(
                "device number of the next portal function (16 + k)",
                (FIRST_DEVICE + count).into(),
                device.into(),
            ),
        )?;
        let portal = about(bdf, "portal", check_function(&config, ecam, bdf))?;
        println!(
            "portal: {bdf}: portal {} end {}, registers at {:#x}, {} KiB shared at {:#x}, INTID {}",
            portal.index,
            portal.end,
            portal.regs,
            portal.size / 1024,
            portal.shared,
            portal.intid
        );
        first = first.or(Some(portal));
        count += 1;
    }
    expect_eq("portal functions on bus 0 (stub=portals=N)", wanted.into(), count.into())?;
    *FOUND.lock() = first.map_or(Found::NoPortal, Found::Portal);
    Ok(())
}

/// One portal function's header, BARs, interrupt and `ID` register.
fn check_function(config: &Config, ecam: &crate::pci::Ecam, bdf: Bdf) -> Result<Portal, Failure> {
    let class = config.read(bdf, offset::REVISION_ID, Width::Word)? & !0xff;
    expect_eq("class code (05 80 00: memory controller, other)", platform::portal::CLASS.register().into(), class)?;
    config.expect("header type (type 0, single function)", bdf, offset::HEADER_TYPE, Width::Byte, 0)?;
    config.expect("interrupt pin (INTA)", bdf, offset::INTERRUPT_PIN, Width::Byte, Intx::INTA.into())?;
    let map = ecam.interrupt_map.as_ref().map_err(|why| Failure::Missing(why))?;
    let intid = map.spi(bdf.device(), Intx::INTA).map_err(Failure::Missing)?;
    if let Ok(line) = u8::try_from(intid) {
        config.expect(
            "interrupt line (the INTID interrupt-map routes INTA to)",
            bdf,
            offset::INTERRUPT_LINE,
            Width::Byte,
            line.into(),
        )?;
    }
    let cmd = config.read(bdf, offset::COMMAND, Width::Half)?;
    let decoding = u64::from(command::MEMORY_SPACE | command::INTX_DISABLE);
    expect_eq(
        "command memory space enable and INTx disable (on, off at handoff)",
        command::MEMORY_SPACE.into(),
        cmd & decoding,
    )?;

    let type_of = |reg| config.read(bdf, reg, Width::Word).map(|low| low & u64::from(bar::TYPE_MASK));
    expect_eq("BAR0 type bits (64-bit memory, not prefetchable)", bar::MEMORY_64.into(), type_of(offset::BAR0)?)?;
    expect_eq("BAR2 type bits (64-bit memory, prefetchable)", SHARED_BAR_TYPE.into(), type_of(offset::BAR2)?)?;
    let regs = crate::pci::bar_address(config, bdf, offset::BAR0)?;
    let shared = crate::pci::bar_address(config, bdf, offset::BAR2)?;
    let (regs_size, size) = crate::pci::size_bars(config, bdf)?;
    expect_eq("BAR0 size (all-ones sizing; 4 KiB of registers)", REGS_SIZE, regs_size)?;
    if !size.is_power_of_two() || size < MIN_SHARED {
        return Err(Failure::Mismatch {
            what: "BAR2 size (all-ones sizing; a power of two of at least 4 KiB)",
            expected: MIN_SHARED,
            got: size,
        });
    }
    let ranges = ecam.ranges.as_ref().map_err(|why| Failure::Missing(why))?;
    for (what, base, len) in [("BAR0", regs, REGS_SIZE), ("BAR2", shared, size)] {
        if base == 0 || base & (len - 1) != 0 {
            return Err(Failure::Mismatch {
                what: "a BAR's address (assigned, aligned to its size)",
                expected: len,
                got: base,
            });
        }
        if !ranges.iter().flatten().any(|range| range.holds_identity(base, len)) {
            println!("portal: {what} at {base:#x}, {len:#x} bytes");
            return Err(Failure::Missing("a BAR's window lies in no one-to-one memory entry of the bridge's ranges"));
        }
    }
    for function in 1..FUNCTIONS_PER_DEVICE {
        config.expect(
            "vendor ID of function 1..7 of a portal device (all-ones)",
            bdf_of(bdf.bus(), bdf.device(), function)?,
            offset::VENDOR_ID,
            Width::Half,
            Width::Half.all_ones(),
        )?;
    }

    let portal = Portal { regs, shared, size, intid, end: 0, index: 0 };
    let id = portal.load(reg::ID)?;
    expect_eq("ID [31:16] (the portal magic)", ID_MAGIC.into(), (id >> 16).into())?;
    expect_eq("ID [15:9] (reserved, 0; the end is bit 8)", 0, (id & ID_RESERVED_MASK).into())?;
    Ok(Portal { end: (id >> ID_END_SHIFT) & 1, index: id & ID_INDEX_MASK, ..portal })
}

// --- portal-isolation ----------------------------------------------------------------

/// Addresses, printed `0x..., 0x...`.
struct Addresses<'a>(&'a [u64]);

impl core::fmt::Display for Addresses<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, address) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{address:#x}")?;
        }
        Ok(())
    }
}

pub fn isolation(env: &Env) -> Result<(), Failure> {
    let (holes, count) = env.probe_holes;
    let holes = holes.get(..count).unwrap_or_default();
    println!("portal: probe holes: {}", Addresses(holes));
    if let Found::Portal(portal) = *FOUND.lock() {
        let end = portal.shared.saturating_add(portal.size);
        if let Some(&hole) = holes.iter().find(|&&hole| (portal.shared..end).contains(&hole)) {
            return Err(Failure::Mismatch {
                what: "/chosen/hv,probe-holes lists an address of this end's own shared memory (BAR2)",
                expected: 0,
                got: hole,
            });
        }
    }
    crate::checks::isolation_holes(env)
}

// --- portal-ping-pong ------------------------------------------------------------------

pub fn ping_pong(env: &Env) -> Result<(), Failure> {
    let rounds = u64::from(ROUNDS.load(Ordering::Relaxed));
    with_session(env, |portal| {
        wait_peer_state(portal, "peer running (PEER_STATE 1)", PeerState::Running)?;
        // From here on a peer-state event is a change (`portal-peer-down`).
        PENDING_EVENTS.store(0, Ordering::SeqCst);
        let mismatch = |what, round, expected, got| PortalFailure::Round { what, round, rounds, expected, got };
        // The counters, each time the peer cannot have moved them: it
        // requests nothing more until this end has answered (or, after the
        // last round, until end 0 starts the next check).
        let count = |what, register, round| match portal.load(register) {
            Ok(got) if u64::from(got) == round => Ok(()),
            Ok(got) => Err(Failure::from(mismatch(what, round, round, got.into()))),
            Err(failure) => Err(failure),
        };
        for round in 1..=rounds {
            let halves = round % 2 == 1;
            if portal.end == 0 {
                portal.ring("ping (operation 0 to end 1)", 0, round, halves)?;
                count("SENT after the ping (the round)", reg::SENT, round)?;
                let got = wait_op(portal, "answer (operation 0) from end 1", 0)?;
                if got != round {
                    return Err(mismatch("RECEIVED_ARG[0] of end 1's answer", round, round, got).into());
                }
                count("RECEIVED after the answer (the round)", reg::RECEIVED, round)?;
            } else {
                let got = wait_op(portal, "ping (operation 0) from end 0", 0)?;
                if got != round {
                    return Err(mismatch("RECEIVED_ARG[0] of end 0's ping", round, round, got).into());
                }
                count("RECEIVED after the ping (the round)", reg::RECEIVED, round)?;
                portal.ring("answer (operation 0 to end 0)", 0, round, halves)?;
                count("SENT after the answer (the round)", reg::SENT, round)?;
            }
        }
        if portal.end == 0 {
            // End 1 requests nothing before end 0's next request.
            portal.expect("INT_STATUS after the ping-pong (all acknowledged)", reg::INT_STATUS, 0)?;
        }
        Ok(())
    })
}

// --- portal-shared-memory ---------------------------------------------------------------

/// Word `index` of the pattern of `seed`.
fn pattern(seed: u64, index: u64) -> u64 {
    seed ^ index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

/// Fills `words` words of the shared memory from word `first` with the
/// pattern of `seed`, one aligned 64-bit store each.
fn fill(portal: &Portal, first: u64, words: u64, seed: u64) -> Result<(), Failure> {
    for index in first..first + words {
        crate::pci::store(portal.shared_word(index), Width::Double, pattern(seed, index))
            .map_err(|caught| Failure::Exception { what: SHARED_ABORTED, caught })?;
    }
    Ok(())
}

/// Checks every word of the pattern of `seed` there; the first wrong one
/// fails.
fn verify(portal: &Portal, what: &'static str, first: u64, words: u64, seed: u64) -> Result<(), Failure> {
    for index in first..first + words {
        let got = crate::pci::load(portal.shared_word(index), Width::Double)
            .map_err(|caught| Failure::Exception { what: SHARED_ABORTED, caught })?;
        let expected = pattern(seed, index);
        if got != expected {
            return Err(PortalFailure::Memory { what, offset: index * 8, expected, got }.into());
        }
    }
    Ok(())
}

pub fn shared_memory(env: &Env) -> Result<(), Failure> {
    with_session(env, |portal| {
        let half = portal.size / 2 / 8;
        if portal.end == 0 {
            fill(portal, 0, half, SEEDS[0])?;
            portal.ring("first half written (operation 1 to end 1)", 1, SEEDS[0], false)?;
            let seed = wait_op(portal, "answer (operation 0) from end 1 after the second half", 0)?;
            if seed == PEER_FAILED {
                return Err(Failure::Missing("end 1 found the first half wrong (its FAIL line says where)"));
            }
            expect_eq("RECEIVED_ARG[0] of end 1's answer (its seed)", SEEDS[1], seed)?;
            verify(portal, "second half, as end 1 wrote it", half, half, SEEDS[1])?;
            verify(portal, "first half, after end 1 read it", 0, half, SEEDS[0])
        } else {
            let seed = wait_op(portal, "first half written (operation 1) from end 0", 1)?;
            let checked = expect_eq("RECEIVED_ARG[1] of end 0's request (its seed)", SEEDS[0], seed)
                .and_then(|()| verify(portal, "first half, as end 0 wrote it", 0, half, SEEDS[0]))
                .and_then(|()| fill(portal, half, half, SEEDS[1]));
            // Answered either way, so that end 0 does not wait in vain.
            let answer = if checked.is_ok() { SEEDS[1] } else { PEER_FAILED };
            portal.ring("second half written (operation 0 to end 0)", 0, answer, false)?;
            checked
        }
    })
}

// --- portal-refused ----------------------------------------------------------------------

pub fn refused(env: &Env) -> Result<(), Failure> {
    let rounds = u64::from(ROUNDS.load(Ordering::Relaxed));
    with_session(env, |portal| {
        let allowed = portal.load(reg::ALLOWED)?;
        portal.expect("REFUSED before the refused requests", reg::REFUSED, 0)?;
        let sent = portal.load(reg::SENT)?;
        let mut made = 0u64;
        for op in (0..MAX_OPS).filter(|op| allowed & (1 << op) == 0) {
            portal.store64(reg::ARGUMENT, REFUSED_ARG | u64::from(op))?;
            portal.store(reg::REQUEST, op)?;
            portal.expect_result("an operation ALLOWED does not have", op, Outcome::Refused)?;
            made += 1;
        }
        portal.store(reg::REQUEST, MAX_OPS)?;
        portal.expect_result("operation 32 with REQUEST", MAX_OPS, Outcome::NoSuchOperation)?;
        portal.store(reg::DOORBELL, u32::MAX)?;
        portal.expect_result("operation 0xffffffff with DOORBELL", u32::MAX, Outcome::NoSuchOperation)?;
        made += 2;
        portal.expect("REFUSED after the refused requests (each counted)", reg::REFUSED, made)?;
        portal.expect("SENT after the refused requests (unchanged)", reg::SENT, sent.into())?;

        // Done: a doorbell (argument 0) each way, end 0's first. End 1 rings
        // its own only once it has end 0's: rung earlier, it could reach end
        // 0 before end 0 had taken end 1's answer of `portal-shared-memory`
        // (the same operation: the two would merge into one bit and one
        // argument).
        let done = |portal: &Portal| {
            portal.store(reg::DOORBELL, 0)?;
            portal.expect_result("done (DOORBELL 0)", 0, Outcome::Delivered)
        };
        if portal.end == 0 {
            done(portal)?;
        }
        let argument = wait_op(portal, "done (DOORBELL 0) from the peer", 0)?;
        expect_eq("RECEIVED_ARG[0] after the peer's DOORBELL (argument 0)", 0, argument)?;
        if portal.end == 1 {
            done(portal)?;
        }
        portal.expect("INT_STATUS after done (acknowledged; nothing refused arrived)", reg::INT_STATUS, 0)?;
        // The protocol requests operation 0 of both ends, operation 1 of end 1.
        let expected_ops = if portal.end == 0 { 1 } else { 0b11 };
        let seen = SEEN_OPS.load(Ordering::SeqCst);
        expect_eq("operations ever received (only those the protocol requests)", expected_ops, seen.into())?;
        portal.expect("RECEIVED (R pings or answers, the shared memory's request, done)", reg::RECEIVED, rounds + 2)?;
        portal.expect("SENT (R pings or answers, the shared memory's request, done)", reg::SENT, rounds + 2)
    })
}

// --- portal-peer-down ----------------------------------------------------------------------

pub fn peer_down(env: &Env) -> Result<(), Failure> {
    if first_portal()?.end == 0 {
        return Err(Failure::Skip("end 0 powers off first; end 1 checks that its requests then find the peer off"));
    }
    with_session(env, |portal| {
        wait(portal, "peer off (PEER_STATE 0 and the peer-state event)", START_MS, || {
            let off = portal.load(reg::PEER_STATE)? == PeerState::Off as u32;
            Ok(off && PENDING_EVENTS.load(Ordering::SeqCst) & EVENT_PEER_STATE != 0)
        })?;
        // Going off may be two changes (stopping, then off), each an event:
        // the last may not have reached the handler yet.
        portal.store(reg::EVENTS, EVENT_PEER_STATE)?;
        portal.expect("EVENTS after acknowledging the peer-state event (W1C)", reg::EVENTS, 0)?;
        let sent = portal.load(reg::SENT)?;
        portal.store(reg::DOORBELL, 0)?;
        portal.expect_result("operation 0 with the peer off", 0, Outcome::PeerDown)?;
        portal.expect("PEER_DOWN after one request to the peer off", reg::PEER_DOWN, 1)?;
        portal.expect("SENT after a request to the peer off (unchanged)", reg::SENT, sent.into())?;
        portal.expect("INT_STATUS after the peer went off", reg::INT_STATUS, 0)
    })
}

// --- stub=portal-bench=N ------------------------------------------------------------

/// Most rounds `stub=portal-bench=N` times (its samples live on the stack).
pub const MAX_BENCH_ROUNDS: usize = 201;

/// `stub=portal-bench=N`, in both ends of a portal, instead of the checks:
/// after an untimed one, N doorbell round trips (end 0 rings operation 0 with `DOORBELL`, end 1's
/// interrupt handler takes it, end 1 rings back, end 0's handler takes
/// it), timed by end 0 on the virtual counter, in nanoseconds
/// (instructions under `-icount shift=0`, both CPUs' as the path goes from
/// one to the other);
/// each end also counts its own instructions at EL1 and EL0 over the
/// rounds (the PMU's cycle counter filtered to them), so that the bench
/// can say how much of a round trip is the hypervisor's. Then end 0
/// times N requests of an operation it may not request (refused, nothing
/// reaches end 1). One line per end, `portal bench: end E rounds N ...`
/// ([`platform::portal::BenchReport`]); the exit status is 0 if it ran.
pub fn bench(env: &Env, rounds: u32) -> u32 {
    let rounds = (rounds as usize).clamp(1, MAX_BENCH_ROUNDS);
    set_wanted(1);
    if let Err(failure) = enumerate(env) {
        println!("portal bench: no portal: {failure}");
        return 1;
    }
    let result = with_session(env, |portal| {
        wait_peer_state(portal, "peer running (PEER_STATE 1)", PeerState::Running)?;
        let mut samples = [0u64; MAX_BENCH_ROUNDS];
        let samples = samples.get_mut(..rounds).unwrap_or_default();
        let bit = 1u32;
        let take = |what| {
            wait(portal, what, PEER_MS, || Ok(PENDING_OPS.load(Ordering::SeqCst) & bit != 0))?;
            PENDING_OPS.fetch_and(!bit, Ordering::SeqCst);
            Ok::<(), Failure>(())
        };
        // One untimed round first: the peer may still be on its way to its
        // first wait.
        if portal.end == 0 {
            portal.store(reg::DOORBELL, 0)?;
            take("the answer to the warm-up round")?;
        } else {
            take("the warm-up round")?;
            portal.store(reg::DOORBELL, 0)?;
        }
        // The cycle counter at EL1 and EL0 only (`PMCCFILTR_EL0` = 0, so
        // not EL2): under `-icount shift=0`, this vCPU's own instructions.
        crate::bench::cycle_counter_start(0);
        let (guest_start, start) = (crate::bench::counter(), timer::virtual_now());
        for sample in samples.iter_mut() {
            if portal.end == 0 {
                let t0 = timer::virtual_now();
                portal.store(reg::DOORBELL, 0)?;
                take("the answer (operation 0) from end 1")?;
                *sample = timer::virtual_now().wrapping_sub(t0);
            } else {
                take("the ping (operation 0) from end 0")?;
                portal.store(reg::DOORBELL, 0)?;
            }
        }
        let (guest, total) =
            (crate::bench::counter().wrapping_sub(guest_start), timer::virtual_now().wrapping_sub(start));
        // Counter ticks to nanoseconds: instructions under `-icount
        // shift=0`, whatever the counter's frequency (QEMU's older CPU
        // models keep 62.5 MHz).
        let frequency = u128::from(timer::frequency().max(1));
        let ns = |ticks: u64| u64::try_from(u128::from(ticks) * 1_000_000_000 / frequency).unwrap_or(u64::MAX);
        let total = ns(total);
        for sample in samples.iter_mut() {
            *sample = ns(*sample);
        }
        let mut report = platform::portal::BenchReport {
            end: portal.end,
            rounds: rounds as u32,
            total,
            guest,
            ..Default::default()
        };
        if portal.end == 0 {
            samples.sort_unstable();
            report.median = samples.get(rounds / 2).copied().unwrap_or(0);
            report.min = samples.first().copied().unwrap_or(0);
            report.max = samples.last().copied().unwrap_or(0);
            // The first operation this end may not request.
            let allowed = portal.load(reg::ALLOWED)?;
            let refused = (0..MAX_OPS).find(|op| allowed & (1 << op) == 0).unwrap_or(MAX_OPS);
            for sample in samples.iter_mut() {
                let t0 = timer::virtual_now();
                portal.store(reg::REQUEST, refused)?;
                *sample = timer::virtual_now().wrapping_sub(t0);
            }
            samples.sort_unstable();
            report.refused = samples.get(rounds / 2).copied().map_or(0, ns);
            portal.expect_result("the timed refused request", refused, Outcome::Refused)?;
        }
        println!("{report}");
        Ok(())
    });
    match result {
        Ok(()) => 0,
        Err(failure) => {
            println!("portal bench: failed: {failure}");
            1
        }
    }
}
