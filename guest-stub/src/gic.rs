//! The guest's interrupt controller, a GICv3 or a GICv2 (whichever the DTB
//! describes, by its `compatible`), behind one API; and the stub's IRQ
//! dispatch. The rest of the stub never touches the GIC itself (but for
//! `bench.S`'s IRQ vector, which asks [`cpu_interface_frame`] and
//! [`sgi_write`] what to touch).
//!
//! - `arm,gic-v3`: [`v3`], the `arm-gic` crate's `GicV3` (a standard
//!   driver against the hypervisor's emulated distributor and
//!   redistributors) and the system-register CPU interface; Group 1.
//! - `arm,cortex-a15-gic` or `arm,gic-400`: [`v2`], the stub's own
//!   register accessors for a GICv2 distributor and memory-mapped CPU
//!   interface (why not `arm-gic`'s: see there); Group 0, as Linux uses a
//!   GICv2.
//!
//! What the stub uses is deliberately small: SGIs and PPIs, and SPIs left
//! as firmware left them, except the one a check enables for a while
//! ([`configure_spi`]: `sched-spi-wake`'s RTC alarm, the portal's and the
//! forwarded devices' interrupts). On both, the CPU interface runs with
//! priority mask 0xff, binary point 0 (every implemented priority bit is a
//! preemption level; a GICv2 raises it to its minimum, which still holds
//! for the stub's priorities, see [`v2`]) and EOI mode 0 (an EOI also
//! deactivates).
//!
//! - [`init`] (boot vCPU, once): finds the GIC, sets up its distributor
//!   (GICv3: also maps each vCPU slot to its redistributor), then does
//!   [`init_cpu`] for the boot vCPU.
//! - [`init_cpu`] (each vCPU, on itself): its SGIs and PPIs in the group
//!   and disabled, its CPU interface enabled. On a GICv2 it also learns the
//!   vCPU's CPU interface number (its banked `GICD_ITARGETSR0`), which SGIs
//!   and SPIs target.
//! - [`handle_irq`] (the EL1 IRQ vector): acknowledges, runs the INTID's
//!   handler from a table shared by all vCPUs, and ends the interrupt with
//!   the value acknowledged (a GICv2 SGI's source CPU included); the
//!   spurious INTID 1023 is ignored. An INTID with no handler is recorded
//!   ([`take_unexpected`]), not printed: the console lock may be held by
//!   the code the interrupt stopped.
//!
//! One driver instance (for the version found), behind its lock, is the
//! only path to the distributor (and to the GICv3 redistributors):
//! `GicV3`'s safety contract (no aliases), and on a GICv2 what keeps its
//! word read-modify-writes from interleaving. Interrupt handlers never
//! take that lock, only the handler table's, which thread code holds with
//! interrupts masked. What handlers do need, acknowledging, ending, the
//! running priority, the priority mask and sending SGIs, goes without it:
//! on a GICv3 through system registers, on a GICv2 through the CPU
//! interface (banked: each vCPU reaches only its own) and `GICD_SGIR`,
//! which is write-only and takes one write.
//!
//! A GICv2 banks the SGIs' and PPIs' distributor registers per CPU, where
//! a GICv3 gives each vCPU a redistributor any vCPU can reach; so on a
//! GICv2 [`configure`] for another vCPU runs on that vCPU, as a job
//! through its mailbox ([`smp::post`]).

mod v2;
mod v3;

use crate::smp;
use arm_gic::gicv3::GicError;
use arm_gic::IntId;
use core::sync::atomic::{AtomicU32, Ordering};
use platform::board::MAX_CPUS;

/// `GICC_IAR`'s and `GICC_EOIR`'s offsets in a GICv2 CPU interface, for
/// `bench.S`'s IRQ vector (with [`cpu_interface_frame`]).
pub use v2::{GICC_EOIR, GICC_IAR};

/// The DTB `compatible`s of the interrupt controllers the stub drives.
pub const COMPATIBLES: &[&str] = &[v3::COMPATIBLE, v2::COMPATIBLES[0], v2::COMPATIBLES[1]];

/// INTIDs 1020..=1023 are special: nothing to handle or end.
const FIRST_SPECIAL_INTID: u32 = 1020;
/// The INTIDs a handler can be set for: SGIs, PPIs and SPIs (the special
/// INTIDs and above have none).
const HANDLED_INTIDS: usize = FIRST_SPECIAL_INTID as usize;

/// The architecture version of the GIC found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

impl core::fmt::Display for Version {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::V2 => write!(f, "GICv2"),
            Self::V3 => write!(f, "GICv3"),
        }
    }
}

/// Why the GIC, or one vCPU's part of it, cannot be used.
#[derive(Clone, Copy, Debug)]
pub enum Unavailable {
    /// No node of any of [`COMPATIBLES`] in the DTB.
    NoNode,
    /// The node's `reg` lacks the distributor or the redistributor (GICv3)
    /// or CPU interface (GICv2) region, or (GICv2) one is too small.
    NoRegs(Version),
    /// More than one redistributor region (the stub drives one).
    RedistributorRegions(u32),
    /// The `arm-gic` driver refused the registers.
    Driver(GicError),
    /// No redistributor's `GICR_TYPER.Affinity` names this MPIDR.
    NoRedistributor { mpidr: u64 },
    /// `ICC_SRE_EL1.SRE` reads 0 after being set: no system-register
    /// interface.
    NoSystemRegisters,
    /// `ICC_SGI1R_EL1` without its range selector reaches Aff0 0..15 only.
    SgiUnreachable { mpidr: u64 },
    /// GICv2: `GICD_ITARGETSR0` read on this vCPU names no single CPU
    /// interface, so nothing could target it.
    NoCpuInterfaceNumber { byte: u8 },
    /// GICv2: `GICC_CTLR.EnableGrp0` reads 0 after being set.
    CpuInterfaceOff { ctlr: u32 },
    /// GICv2: vCPU `slot`'s SGIs and PPIs are in registers banked for it,
    /// which only it reaches, and the job that was to configure them there
    /// did not run.
    Unreachable { slot: usize, why: Remote },
    /// GICv2: an INTID of another kind than the call configures.
    WrongIntId { intid: u32, expected: &'static str },
    /// The GIC was never set up, or this vCPU never ran [`init_cpu`].
    NotInitialised,
}

/// Why a job on another vCPU (GICv2's [`configure`] of its SGIs and PPIs)
/// did not run: [`smp::JobError`], but for its GIC case (reported as the
/// GIC's own reason instead).
#[derive(Clone, Copy, Debug)]
pub enum Remote {
    Down(smp::CpuDown),
    Busy,
    NotStarted,
    NotFinished,
}

impl core::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoNode => write!(
                f,
                "no interrupt controller in the DTB compatible with {} (GICv3), {} or {} (GICv2)",
                COMPATIBLES[0], COMPATIBLES[1], COMPATIBLES[2]
            ),
            Self::NoRegs(Version::V3) => {
                write!(f, "the {} node's reg lacks the distributor or redistributor region", v3::COMPATIBLE)
            }
            Self::NoRegs(Version::V2) => {
                write!(f, "the GICv2 node's reg lacks the distributor or CPU interface region (or one is under 4 KiB)")
            }
            Self::RedistributorRegions(n) => write!(f, "{n} redistributor regions in the DTB (the stub drives one)"),
            Self::Driver(e) => write!(f, "arm-gic refused the GIC: {e}"),
            Self::NoRedistributor { mpidr } => {
                write!(f, "no redistributor's GICR_TYPER.Affinity names MPIDR {mpidr:#x}")
            }
            Self::NoSystemRegisters => write!(f, "ICC_SRE_EL1.SRE stays 0: no GIC system-register interface"),
            Self::SgiUnreachable { mpidr } => {
                write!(f, "MPIDR {mpidr:#x} has Aff0 >= 16, which ICC_SGI1R_EL1 reaches only with RS (not driven)")
            }
            Self::NoCpuInterfaceNumber { byte } => write!(
                f,
                "GICD_ITARGETSR0 reads {byte:#04x} on this vCPU, not one CPU interface's bit: SGIs and SPIs \
                 cannot target it"
            ),
            Self::CpuInterfaceOff { ctlr } => {
                write!(f, "GICC_CTLR reads {ctlr:#x} after EnableGrp0 was set: the CPU interface stays off")
            }
            Self::Unreachable { slot, why } => {
                write!(f, "vCPU {slot}'s banked GICv2 registers are reachable from it only, and it ")?;
                match why {
                    Remote::Down(down) => write!(f, "is down: {down}"),
                    Remote::Busy => write!(f, "is still running an earlier job"),
                    Remote::NotStarted => write!(f, "never started the job that would configure them"),
                    Remote::NotFinished => write!(f, "did not finish the job that would configure them"),
                }
            }
            Self::WrongIntId { intid, expected } => write!(f, "INTID {intid} is not {expected}"),
            Self::NotInitialised => write!(f, "the GIC was not set up on this vCPU"),
        }
    }
}

/// What handlers reach without the lock.
#[derive(Clone, Copy)]
enum Interface {
    /// The system registers.
    V3,
    /// The memory-mapped CPU interface, and `GICD_SGIR`.
    V2(v2::CpuInterface),
}

/// The distributor's (and redistributors') driver: one of the two, for the
/// GIC [`init`] found.
static GICV3: spin::Mutex<Option<v3::Gic>> = spin::Mutex::new(None);
static GICV2: spin::Mutex<Option<v2::Distributor>> = spin::Mutex::new(None);
/// Set once [`init`] succeeded.
static INTERFACE: spin::Once<Interface> = spin::Once::new();
/// Why the GIC as a whole is unusable; `Ok` once [`init`] succeeded.
static STATUS: spin::Once<Result<(), Unavailable>> = spin::Once::new();
/// Per vCPU slot: the outcome of its [`init_cpu`] (`None` = not run).
static CPU_STATUS: spin::Mutex<[Option<Result<(), Unavailable>>; MAX_CPUS]> = spin::Mutex::new([None; MAX_CPUS]);

/// An interrupt handler; runs with `PSTATE.I` masked, may unmask it.
pub type Handler = fn(IntId);

static HANDLERS: spin::Mutex<[Option<Handler>; HANDLED_INTIDS]> = spin::Mutex::new([None; HANDLED_INTIDS]);
/// Per vCPU: the last INTID acknowledged with no handler, plus 1 (0 =
/// none).
static UNEXPECTED: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Finds the GIC in `fdt`, sets up its distributor and the boot vCPU's
/// part and CPU interface. `mpidrs` are the vCPU slots' MPIDRs (slot 0 =
/// this, the boot vCPU).
pub fn init(fdt: &fdt::Fdt, mpidrs: &[u64]) -> Result<(), Unavailable> {
    let result = *STATUS.call_once(|| setup(fdt, mpidrs));
    result?;
    init_cpu(0)
}

fn setup(fdt: &fdt::Fdt, mpidrs: &[u64]) -> Result<(), Unavailable> {
    let node = fdt.find_compatible(COMPATIBLES).ok_or(Unavailable::NoNode)?;
    let is_v3 = node.compatible().is_some_and(|c| c.all().any(|c| c == v3::COMPATIBLE));
    if is_v3 {
        let gic = v3::setup(&node, mpidrs)?;
        *GICV3.lock() = Some(gic);
        INTERFACE.call_once(|| Interface::V3);
    } else {
        let (mut distributor, cpu_interface) = v2::setup(&node)?;
        distributor.enable_group0();
        *GICV2.lock() = Some(distributor);
        INTERFACE.call_once(|| Interface::V2(cpu_interface));
    }
    Ok(())
}

/// Whether the GIC is usable at all; why not.
pub fn status() -> Result<(), Unavailable> {
    STATUS.get().copied().unwrap_or(Err(Unavailable::NotInitialised))
}

/// Whether vCPU `slot`'s part of the GIC and its CPU interface are set up.
pub fn cpu_status(slot: usize) -> Result<(), Unavailable> {
    status()?;
    CPU_STATUS.lock().get(slot).copied().flatten().unwrap_or(Err(Unavailable::NotInitialised))
}

/// The GIC found by [`init`], if it succeeded.
pub fn version() -> Option<Version> {
    INTERFACE.get().map(|interface| match interface {
        Interface::V3 => Version::V3,
        Interface::V2(_) => Version::V2,
    })
}

/// The lock-free paths. Before [`init`] succeeded (no IRQ can be taken
/// then: the CPU interface is off), the system registers.
fn interface() -> Interface {
    INTERFACE.get().copied().unwrap_or(Interface::V3)
}

/// Runs `f` on the driver behind `lock` ([`GICV3`] or [`GICV2`]), with
/// IRQs masked and the lock held.
fn with_driver<D, T>(
    lock: &spin::Mutex<Option<D>>,
    f: impl FnOnce(&mut D) -> Result<T, Unavailable>,
) -> Result<T, Unavailable> {
    status()?;
    // Interrupts masked: a handler on this vCPU must never wait for a lock
    // its own thread holds (handlers do not take this one, but the rule is
    // kept simple).
    crate::exceptions::without_irqs(|| {
        let mut driver = lock.lock();
        f(driver.as_mut().ok_or(Unavailable::NotInitialised)?)
    })
}

/// This vCPU's part (`slot` is this vCPU's): GICv3, its redistributor;
/// GICv2, its banked distributor registers; and its CPU interface. Records
/// the outcome for [`cpu_status`].
pub fn init_cpu(slot: usize) -> Result<(), Unavailable> {
    let result = setup_cpu(slot);
    if let Some(entry) = CPU_STATUS.lock().get_mut(slot) {
        *entry = Some(result);
    }
    result
}

fn setup_cpu(slot: usize) -> Result<(), Unavailable> {
    // Without a GIC, `interface` says GICv3, whose `with_driver` reports
    // why.
    match interface() {
        Interface::V3 => {
            let mpidr = smp::mpidr(slot);
            v3::sgi_reachable(mpidr)?;
            with_driver(&GICV3, |gic| gic.setup_redistributor(slot, mpidr))?;
            v3::enable_cpu_interface()
        }
        Interface::V2(cpu_interface) => {
            let target = with_driver(&GICV2, |distributor| distributor.setup_cpu())?;
            v2::set_target(slot, target);
            cpu_interface.enable()
        }
    }
}

/// Sets the priority of SGI or PPI `intid` on vCPU `slot` and enables or
/// disables it there. Once a disable returns, the interrupt is no longer
/// forwarded. On a GICv2, for another vCPU than this one, this runs on
/// that vCPU (a job through its mailbox: it must be online and idle).
pub fn configure(slot: usize, intid: IntId, priority: u8, enable: bool) -> Result<(), Unavailable> {
    status()?;
    match interface() {
        Interface::V3 => {
            let mpidr = smp::mpidr(slot);
            with_driver(&GICV3, |gic| gic.configure(slot, mpidr, intid, priority, enable))
        }
        Interface::V2(_) if slot != smp::this_cpu() => configure_remote(slot, intid, priority, enable),
        Interface::V2(_) => with_driver(&GICV2, |distributor| distributor.configure_private(intid, priority, enable)),
    }
}

/// A GICv2 [`configure`] for another vCPU: what to do, and how it went.
#[derive(Clone, Copy)]
struct RemoteConfigure {
    request: Option<(IntId, u8, bool)>,
    result: Option<Result<(), Unavailable>>,
}

/// Per vCPU slot: the [`RemoteConfigure`] posted to it. Thread code only
/// (the caller, and the job on the target).
static REMOTE: [spin::Mutex<RemoteConfigure>; MAX_CPUS] =
    [const { spin::Mutex::new(RemoteConfigure { request: None, result: None }) }; MAX_CPUS];

/// The job: this vCPU's [`RemoteConfigure`] request, done here.
fn configure_job(_: u64) -> u64 {
    let me = smp::this_cpu();
    let request = REMOTE[me].lock().request.take();
    if let Some((intid, priority, enable)) = request {
        let result = configure(me, intid, priority, enable);
        REMOTE[me].lock().result = Some(result);
    }
    0
}

fn configure_remote(slot: usize, intid: IntId, priority: u8, enable: bool) -> Result<(), Unavailable> {
    let remote = REMOTE.get(slot).ok_or(Unavailable::NotInitialised)?;
    *remote.lock() = RemoteConfigure { request: Some((intid, priority, enable)), result: None };
    let unreachable = |why| Unavailable::Unreachable { slot, why };
    let job_error = |error| match error {
        smp::JobError::Down(down) => unreachable(Remote::Down(down)),
        smp::JobError::Gic(why) => why,
        smp::JobError::Busy => unreachable(Remote::Busy),
        smp::JobError::Timeout { started: false } => unreachable(Remote::NotStarted),
        smp::JobError::Timeout { started: true } => unreachable(Remote::NotFinished),
    };
    smp::post(slot, configure_job, 0).map_err(job_error)?;
    // The target has to run: allow for the host, as every wait for another
    // vCPU does.
    smp::wait(slot, crate::timer::Deadline::after_ms(crate::virq::HOST_STALL_MS)).map_err(job_error)?;
    remote.lock().result.take().unwrap_or(Err(unreachable(Remote::NotFinished)))
}

/// Sets SPI `intid` up in the distributor as a level-triggered interrupt
/// (GICv3 Group 1, GICv2 Group 0) of `priority` routed to vCPU `slot`, and
/// enables it; or disables it (`enable` false) so that once this returns
/// it is no longer forwarded.
pub fn configure_spi(intid: IntId, priority: u8, slot: usize, enable: bool) -> Result<(), Unavailable> {
    status()?;
    match interface() {
        Interface::V3 => {
            let mpidr = smp::mpidr(slot);
            with_driver(&GICV3, |gic| gic.configure_spi(intid, priority, mpidr, enable))
        }
        Interface::V2(_) => {
            // The slot's CPU interface is known once it ran `init_cpu`; a
            // disable does not need it.
            let target = match v2::target(slot) {
                Some(target) => target,
                None if !enable => 0,
                None => return Err(cpu_status(slot).err().unwrap_or(Unavailable::NotInitialised)),
            };
            with_driver(&GICV2, |distributor| distributor.configure_spi(intid, priority, target, enable))
        }
    }
}

/// Sends SGI `sgi` (0..16) to vCPU `slot` (which may be this one). Every
/// store made before is observable by the target before it takes the SGI.
/// Without a lock, so handlers may send. On a GICv2, a vCPU that has not
/// run [`init_cpu`] cannot be targeted: nothing is sent (callers check
/// [`cpu_status`] first).
pub fn send_sgi(sgi: u32, slot: usize) {
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
    match interface() {
        Interface::V3 => v3::send_sgi(sgi, smp::mpidr(slot)),
        Interface::V2(cpu_interface) => {
            if let Some(target) = v2::target(slot) {
                cpu_interface.send_sgi(sgi, target);
            }
        }
    }
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// The one register write that sends SGI `sgi` to vCPU `slot`, for code
/// that must make it itself (`bench.rs` times it).
#[derive(Clone, Copy, Debug)]
pub enum SgiWrite {
    /// GICv3: this value to `ICC_SGI1R_EL1`.
    SystemRegister(u64),
    /// GICv2: this 32-bit value to `GICD_SGIR` at this address.
    Mmio { address: u64, value: u32 },
}

/// What [`send_sgi`] would write; `None` if the GIC is not set up (or, on
/// a GICv2, `slot`'s CPU interface is not known).
pub fn sgi_write(sgi: u32, slot: usize) -> Option<SgiWrite> {
    match INTERFACE.get()? {
        Interface::V3 => Some(SgiWrite::SystemRegister(v3::sgi1r(sgi, smp::mpidr(slot)))),
        Interface::V2(cpu_interface) => {
            let (address, value) = cpu_interface.sgir(sgi, v2::target(slot)?);
            Some(SgiWrite::Mmio { address, value })
        }
    }
}

/// The memory-mapped CPU interface's address (GICv2), for code that
/// acknowledges and ends interrupts itself (`bench.S`); `None` for the
/// system registers of a GICv3, or without a GIC.
pub fn cpu_interface_frame() -> Option<u64> {
    match INTERFACE.get()? {
        Interface::V3 => None,
        Interface::V2(cpu_interface) => Some(cpu_interface.base()),
    }
}

/// The INTID in a raw acknowledge value (`ICC_IAR1_EL1` or `GICC_IAR`,
/// whose bits 12:10 name a GICv2 SGI's source).
pub fn acknowledged_intid(raw: u64) -> u32 {
    let mask = match interface() {
        Interface::V3 => v3::IAR_INTID_MASK,
        Interface::V2(_) => v2::IAR_INTID_MASK.into(),
    };
    (raw & mask) as u32
}

/// Routes `intid` (an SGI or PPI, on every vCPU, or an SPI) to `handler`.
pub fn set_handler(intid: IntId, handler: Option<Handler>) {
    let index = u32::from(intid) as usize;
    crate::exceptions::without_irqs(|| {
        if let Some(entry) = HANDLERS.lock().get_mut(index) {
            *entry = handler;
        }
    });
}

/// The running priority (`ICC_RPR_EL1` or `GICC_RPR`): the priority of the
/// interrupt this vCPU is handling, 0xff when none.
pub fn running_priority() -> u8 {
    match interface() {
        Interface::V3 => v3::running_priority(),
        Interface::V2(cpu_interface) => cpu_interface.running_priority(),
    }
}

/// Sets this vCPU's priority mask (`ICC_PMR_EL1` or `GICC_PMR`): only
/// interrupts of a higher priority (numerically lower) are signalled.
/// Without a lock, so handlers may call it.
pub fn set_priority_mask(mask: u8) {
    match interface() {
        Interface::V3 => v3::set_priority_mask(mask),
        Interface::V2(cpu_interface) => cpu_interface.set_priority_mask(mask),
    }
}

/// The IRQ vector's work: one interrupt acknowledged, handled and ended.
pub fn handle_irq() {
    // Nothing to do for INTID 1023: the interrupt went away, or a
    // higher-priority one took its place, between the exception and the
    // acknowledge.
    match interface() {
        Interface::V3 => {
            let Some(intid) = v3::acknowledge() else { return };
            if dispatch(intid) {
                v3::end(intid);
            }
        }
        Interface::V2(cpu_interface) => {
            let iar = cpu_interface.acknowledge();
            let Ok(intid) = IntId::try_from(iar & v2::IAR_INTID_MASK) else { return };
            if dispatch(intid) {
                // The whole value: an SGI's source CPU is part of its ID.
                cpu_interface.end(iar);
            }
        }
    }
}

/// Runs `intid`'s handler, or records it as unexpected. False for the
/// special INTIDs, which are neither handled nor ended.
fn dispatch(intid: IntId) -> bool {
    let raw = u32::from(intid);
    if raw >= FIRST_SPECIAL_INTID {
        return false;
    }
    // Copied out, so that the handler runs without the lock (it may unmask
    // interrupts and be preempted by another handler).
    let handler = HANDLERS.lock().get(raw as usize).copied().flatten();
    match handler {
        Some(handler) => handler(intid),
        None => UNEXPECTED[smp::this_cpu()].store(raw + 1, Ordering::SeqCst),
    }
    true
}

/// An interrupt some vCPU took with no handler for it since the last call:
/// `(slot, INTID)`.
pub fn take_unexpected() -> Option<(usize, u32)> {
    UNEXPECTED.iter().enumerate().find_map(|(slot, seen)| match seen.swap(0, Ordering::SeqCst) {
        0 => None,
        intid => Some((slot, intid - 1)),
    })
}
