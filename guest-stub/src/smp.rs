//! The guest-stub's vCPUs: which there are, starting them, and running
//! work on them.
//!
//! Each vCPU has a *slot*: the boot vCPU is 0, the others follow in DTB
//! order. The slot picks the vCPU's stack (`platform_cpu_stack_top`), its
//! per-CPU statistics, and is kept in `TPIDR_EL1` so that an interrupt
//! handler knows where it runs ([`this_cpu`]).
//!
//! [`init`] (boot vCPU) sets up the GIC, then starts every other vCPU with
//! PSCI `CPU_ON` over HVC, entry `stub_secondary_entry` (boot.S), context ID
//! = the slot, and waits a bounded time for each to say it is online. A
//! failure is kept per slot ([`status`]) and printed once; the checks that
//! need that vCPU report it, and nothing waits for it again.
//!
//! A started vCPU sets up its own part of the GIC (its redistributor, or a
//! GICv2's registers banked for it) and its CPU interface, then idles in
//! `WFI` with interrupts unmasked, serving its [`Mailbox`]: the boot vCPU
//! posts a function and an argument and kicks it with an SGI ([`post`],
//! [`wait`]). The stub's MMU is off, so all of this is Device memory: only
//! atomics and locks built on them are shared, and nothing relies on
//! caches.

use crate::gic;
use crate::timer::{self, Deadline};
use aarch64_cpu::registers::{Readable, Writeable, TPIDR_EL1};
use arm_gic::IntId;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use platform::board::MAX_CPUS;
use platform::println;

/// The SGI that wakes an idle vCPU to look at its mailbox.
pub const KICK_SGI: u32 = 0;
/// Its priority: the lowest the checks use, so that it never preempts one.
const KICK_PRIORITY: u8 = 0xe0;
/// How long a started vCPU has to come online.
const ONLINE_TIMEOUT_MS: u64 = 2000;

/// Why a vCPU from the DTB is not available.
#[derive(Clone, Copy, Debug)]
pub enum CpuDown {
    /// More vCPUs in the DTB than the stub has stacks for.
    NoSlot,
    /// PSCI `CPU_ON` returned an error.
    CpuOn(smccc::psci::error::Error),
    /// `CPU_ON` succeeded, but the vCPU did not reach the stub in time.
    NeverArrived,
}

impl core::fmt::Display for CpuDown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSlot => write!(f, "no stack for it (the stub has {MAX_CPUS} slots)"),
            Self::CpuOn(e) => write!(f, "PSCI CPU_ON failed: {e}"),
            Self::NeverArrived => {
                write!(f, "CPU_ON succeeded but the vCPU did not reach the stub within {ONLINE_TIMEOUT_MS} ms")
            }
        }
    }
}

/// The vCPUs of the DTB: their MPIDRs by slot.
struct Cpus {
    mpidr: [u64; MAX_CPUS],
    count: usize,
    /// vCPUs in the DTB beyond the slots.
    dropped: usize,
}

static CPUS: spin::Once<Cpus> = spin::Once::new();
/// Per slot: why that vCPU is not available (written by the boot vCPU
/// while [`init`] runs).
static DOWN: spin::Mutex<[Option<CpuDown>; MAX_CPUS]> = spin::Mutex::new([None; MAX_CPUS]);
/// Set by a secondary once it is ready to serve its mailbox.
static ONLINE: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// The slot of the vCPU this runs on.
pub fn this_cpu() -> usize {
    (TPIDR_EL1.get() as usize).min(MAX_CPUS - 1)
}

/// vCPU slots known from the DTB (1 when it lists none).
pub fn count() -> usize {
    CPUS.get().map_or(1, |cpus| cpus.count)
}

/// The MPIDR affinity of vCPU `slot`.
pub fn mpidr(slot: usize) -> u64 {
    match CPUS.get() {
        Some(cpus) if slot < cpus.count => cpus.mpidr[slot],
        _ => platform::arch::this_cpu_mpidr(),
    }
}

/// Whether vCPU `slot` came online; why not.
pub fn status(slot: usize) -> Result<(), CpuDown> {
    if slot >= count() {
        return Err(CpuDown::NoSlot);
    }
    match DOWN.lock()[slot] {
        Some(down) => Err(down),
        None => Ok(()),
    }
}

/// The vCPUs of the DTB as slots, boot vCPU first.
fn read_cpus(fdt: &fdt::Fdt) -> Cpus {
    let boot = platform::arch::this_cpu_mpidr();
    let mut cpus = Cpus { mpidr: [boot; MAX_CPUS], count: 1, dropped: 0 };
    let Some(node) = fdt.find_node("/cpus") else { return cpus };
    let address_cells = node.property("#address-cells").and_then(|p| p.as_usize()).unwrap_or(1);
    for cpu in node.children() {
        if cpu.name.split('@').next() != Some("cpu") {
            continue;
        }
        let Some(reg) = cpu.property("reg") else { continue };
        let mpidr = match (address_cells, reg.value.len()) {
            (1, 4) | (2, 8) => reg.value.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)),
            _ => continue,
        };
        let mpidr = platform::arch::mpidr_affinity(mpidr);
        if mpidr == boot {
            continue;
        }
        if cpus.count == MAX_CPUS {
            cpus.dropped += 1;
            continue;
        }
        cpus.mpidr[cpus.count] = mpidr;
        cpus.count += 1;
    }
    cpus
}

extern "C" {
    /// boot.S: where `CPU_ON` starts a secondary vCPU.
    fn stub_secondary_entry();
}

/// Boot vCPU, once, before the checks: the GIC, then every other vCPU.
pub fn init(fdt: &fdt::Fdt) {
    TPIDR_EL1.set(0);
    let cpus = CPUS.call_once(|| read_cpus(fdt));
    // A GIC that is missing or broken is each interrupt check's to report.
    if gic::init(fdt, &cpus.mpidr[..cpus.count]).is_ok() {
        gic::set_handler(IntId::sgi(KICK_SGI), Some(kick_handler));
        let _ = gic::configure(0, IntId::sgi(KICK_SGI), KICK_PRIORITY, true);
    }

    let entry = stub_secondary_entry as *const () as u64;
    let stacks = platform::arch::stack_count();
    let mut down: [Option<CpuDown>; MAX_CPUS] = core::array::from_fn(|slot| {
        if slot == 0 || slot >= cpus.count {
            None
        } else if slot >= stacks {
            Some(CpuDown::NoSlot)
        } else {
            smccc::psci::cpu_on::<smccc::Hvc>(cpus.mpidr[slot], entry, slot as u64).err().map(CpuDown::CpuOn)
        }
    });
    let deadline = Deadline::after_ms(ONLINE_TIMEOUT_MS);
    for (slot, down) in down.iter_mut().enumerate().take(cpus.count).skip(1) {
        if down.is_none() && !timer::wait_until(deadline, || ONLINE[slot].load(Ordering::SeqCst) != 0) {
            *down = Some(CpuDown::NeverArrived);
        }
        if let Some(why) = down {
            println!("vCPU {slot} (MPIDR {:#x}) not started: {why}", cpus.mpidr[slot]);
        }
    }
    if cpus.dropped != 0 {
        println!("{} vCPUs in the DTB beyond the stub's {MAX_CPUS} slots are not started", cpus.dropped);
    }
    *DOWN.lock() = down;
}

/// The kick SGI needs no work: taking it ends the idle loop's `WFI`.
fn kick_handler(_: IntId) {}

/// A function a vCPU runs for the boot vCPU, with its argument; returns
/// a value for [`wait`].
pub type Job = fn(u64) -> u64;

const IDLE: u32 = 0;
const POSTED: u32 = 1;
const RUNNING: u32 = 2;
const DONE: u32 = 3;

/// One vCPU's mailbox: `IDLE` → `POSTED` (boot vCPU) → `RUNNING` → `DONE`
/// (the vCPU) → `IDLE` (boot vCPU, collecting the result).
struct Mailbox {
    state: AtomicU32,
    job: spin::Mutex<Option<(Job, u64)>>,
    result: AtomicU64,
}

static MAILBOXES: [Mailbox; MAX_CPUS] =
    [const { Mailbox { state: AtomicU32::new(IDLE), job: spin::Mutex::new(None), result: AtomicU64::new(0) } };
        MAX_CPUS];

/// Why a job did not run to its end.
#[derive(Clone, Copy, Debug)]
pub enum JobError {
    Down(CpuDown),
    /// The vCPU is up but its GIC is not, so it cannot be kicked.
    Gic(gic::Unavailable),
    /// It is still running a job it was given earlier, past that job's
    /// deadline.
    Busy,
    /// Posted, but the vCPU did not finish it by the deadline.
    Timeout {
        started: bool,
    },
}

impl core::fmt::Display for JobError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Down(down) => write!(f, "{down}"),
            Self::Gic(why) => write!(f, "its GIC: {why}"),
            Self::Busy => write!(f, "still running an earlier job past that job's deadline"),
            Self::Timeout { started: false } => write!(f, "a job posted to it was never started (kick SGI lost?)"),
            Self::Timeout { started: true } => write!(f, "a job it started did not finish in time"),
        }
    }
}

/// Gives vCPU `slot` (not this one) `job(arg)` to run and kicks it.
pub fn post(slot: usize, job: Job, arg: u64) -> Result<(), JobError> {
    status(slot).map_err(JobError::Down)?;
    gic::cpu_status(slot).map_err(JobError::Gic)?;
    let mailbox = &MAILBOXES[slot];
    // DONE without IDLE: a job that finished after its caller gave up on
    // it; its result is stale, the mailbox free.
    if !matches!(mailbox.state.load(Ordering::SeqCst), IDLE | DONE) {
        return Err(JobError::Busy);
    }
    *mailbox.job.lock() = Some((job, arg));
    mailbox.state.store(POSTED, Ordering::SeqCst);
    gic::send_sgi(KICK_SGI, slot);
    Ok(())
}

/// Waits until vCPU `slot` has finished the job [`post`]ed to it; its
/// result.
pub fn wait(slot: usize, deadline: Deadline) -> Result<u64, JobError> {
    let mailbox = &MAILBOXES[slot];
    if !timer::wait_until(deadline, || mailbox.state.load(Ordering::SeqCst) == DONE) {
        let started = mailbox.state.load(Ordering::SeqCst) != POSTED;
        return Err(JobError::Timeout { started });
    }
    let result = mailbox.result.load(Ordering::SeqCst);
    mailbox.state.store(IDLE, Ordering::SeqCst);
    Ok(result)
}

/// Rust entry of a secondary vCPU (boot.S), on its own stack, interrupts
/// masked.
#[no_mangle]
extern "C" fn stub_secondary_main(slot: usize) -> ! {
    TPIDR_EL1.set(slot as u64);
    // A vCPU without a GIC cannot be kicked; it says it is online all the
    // same (CPU_ON worked) and [`post`] refuses it with the GIC's reason.
    let _ = gic::init_cpu(slot).and_then(|()| gic::configure(slot, IntId::sgi(KICK_SGI), KICK_PRIORITY, true));
    ONLINE[slot].store(1, Ordering::SeqCst);
    let mailbox = &MAILBOXES[slot];
    loop {
        // Check and sleep with interrupts masked, so that a kick arriving
        // between the two is not taken (and forgotten) before the WFI: a
        // pending interrupt ends WFI whatever PSTATE.I says.
        crate::exceptions::mask_irqs();
        if mailbox.state.load(Ordering::SeqCst) == POSTED {
            mailbox.state.store(RUNNING, Ordering::SeqCst);
            let job = mailbox.job.lock().take();
            crate::exceptions::unmask_irqs();
            let result = job.map_or(0, |(job, arg)| job(arg));
            mailbox.result.store(result, Ordering::SeqCst);
            mailbox.state.store(DONE, Ordering::SeqCst);
            continue;
        }
        aarch64_cpu::asm::wfi();
        crate::exceptions::unmask_irqs();
    }
}
