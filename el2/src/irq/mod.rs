//! Physical interrupts at EL2: one entry for every IRQ, whether it arrived
//! while the guest ran or while EL2 itself had interrupts open, split into
//! the PNMI path and the regular path of the priority scheme in
//! [`crate::irq::gic`].
//!
//! A regular handler follows the scheme's rule 2 in [`regular`]; what it
//! does per INTID is [`dispatch_regular`]. A PNMI goes to
//! [`crate::irq::pnmi::handle`] with `PSTATE.I` still set.
//!
//! [`PnmiWindow`] is rule 1 for synchronous traps: while EL2 handles a
//! guest's trap, regular interrupts wait (priority mask) but PNMIs do not
//! (`PSTATE.I` clear), so the watchdog and the crash stop reach a CPU that
//! is stuck in a trap handler.

pub mod gic;
pub mod kick_lock;
pub mod pnmi;

use aarch64_cpu::registers::{ReadWriteable, HCR_EL2};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use platform::arch::trap::TrapFrame;
use platform::board::Board;
use spin::Once;

/// The EL2 physical timer's PPI: the watchdog tick, a PNMI.
static HYP_TIMER_INTID: AtomicU32 = AtomicU32::new(u32::MAX);

/// Where the interrupts that are not the hypervisor's own go: the layers
/// above register here (boot CPU, before the CPUs take interrupts), so this
/// layer calls nothing above it.
pub struct Routes {
    /// The guests' private interrupts every CPU enables (their timers' PPIs,
    /// the virtual interface's maintenance PPI), with their priorities.
    pub guest_private: Vec<(u32, u8)>,
    /// Everything not claimed below goes to the guests: returns whether the
    /// interrupt went to one (and so stays active until its guest ends it).
    pub guest: fn(u32) -> bool,
    /// SPIs EL2 serves itself (the console's input in a run with VMs).
    pub own_spis: Vec<(u32, fn())>,
    /// A kick ([`gic::SGI_KICK`]) reached this CPU (its slot): the CPU's
    /// mailbox is looked at.
    pub kicked: fn(usize),
}

static ROUTES: Once<Routes> = Once::new();

/// Boot CPU, once: which PPI is the hypervisor's tick.
pub fn init(board: &Board) {
    HYP_TIMER_INTID.store(board.timer.hyp_phys.intid, Ordering::Relaxed);
}

/// Boot CPU, once, before any CPU sets up its interrupts: the [`Routes`].
/// The SPIs in `own_spis` are routed to the boot CPU.
pub fn set_routes(routes: Routes) {
    let routes = ROUTES.call_once(|| routes);
    for &(intid, _) in &routes.own_spis {
        gic::with(|g| g.route_spi(intid, platform::arch::this_cpu_mpidr(), gic::PRIORITY_REGULAR, true));
    }
}

/// Every CPU, each time it comes up: its GIC CPU interface, the
/// hypervisor's private interrupts and the guest's forwarded ones, then
/// its tick.
pub fn init_this_cpu(board: &Board) {
    let mpidr = platform::arch::this_cpu_mpidr();
    let Some(gic_cpu) = board.cpu_index(mpidr) else {
        log::error!("MPIDR {mpidr:#x} is not in the DTB: no interrupts on this CPU");
        return;
    };
    let own = [
        (gic::SGI_KICK, gic::PRIORITY_REGULAR),
        (gic::SGI_TICK, gic::PRIORITY_REGULAR),
        (gic::SGI_TEST, gic::PRIORITY_REGULAR),
        (gic::SGI_PNMI, gic::PRIORITY_PNMI),
        (HYP_TIMER_INTID.load(Ordering::Relaxed), gic::PRIORITY_PNMI),
    ];
    let guest = ROUTES.get().map_or(&[][..], |r| r.guest_private.as_slice());
    let private: Vec<(u32, u8)> = own.into_iter().chain(guest.iter().copied()).collect();
    gic::init_cpu(gic_cpu, &private);
    crate::mm::prda::with(|prda| prda.interrupts_up.store(true, Ordering::Release));
    // Physical interrupts target EL2 even while no guest runs here (without
    // IMO an interrupt would target EL1, and EL2 would never take it).
    HCR_EL2.modify(HCR_EL2::IMO::EnableVirtualIRQ + HCR_EL2::FMO::EnableVirtualFIQ);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    crate::irq::pnmi::start_tick();
}

/// Whether the CPU in `slot` takes interrupts (a kick reaches it).
pub fn interrupts_up(slot: usize) -> bool {
    crate::mm::prda::of(slot).is_some_and(|prda| prda.interrupts_up.load(Ordering::Acquire))
}

fn is_pnmi(intid: u32) -> bool {
    intid == gic::SGI_PNMI || intid == HYP_TIMER_INTID.load(Ordering::Relaxed)
}

/// Takes one physical interrupt; `frame` is what it interrupted.
pub fn handle(frame: &TrapFrame) {
    let Some(acked) = gic::acknowledge() else { return };
    if is_pnmi(acked.intid) {
        crate::irq::pnmi::handle(acked.intid, frame);
        gic::end(acked);
        gic::deactivate(acked);
    } else {
        regular(acked);
    }
}

/// Rule 2: only a PNMI may preempt a regular handler.
fn regular(acked: gic::Acked) {
    let mask = gic::pmr();
    gic::set_pmr(gic::PMR_PNMI_ONLY);
    unmask_irq();
    let forwarded = dispatch_regular(acked.intid);
    mask_irq();
    gic::end(acked);
    // A forwarded interrupt stays active until the guest deactivates it
    // through its list register (HW bit).
    if !forwarded {
        gic::deactivate(acked);
    }
    gic::set_pmr(mask);
}

/// The regular interrupts; returns whether `intid` went to the guest.
fn dispatch_regular(intid: u32) -> bool {
    match intid {
        gic::SGI_KICK => {
            // The return to the guest looks at the vCPU's interrupts.
            if let Some(routes) = ROUTES.get() {
                (routes.kicked)(crate::mm::prda::slot());
            }
            false
        }
        gic::SGI_TICK => {
            crate::irq::pnmi::tick_regular();
            false
        }
        gic::SGI_TEST => {
            crate::irq::pnmi::test_regular();
            false
        }
        _ => {
            let Some(routes) = ROUTES.get() else { return false };
            if let Some(&(_, serve)) = routes.own_spis.iter().find(|&&(spi, _)| spi == intid) {
                serve();
                return false;
            }
            (routes.guest)(intid)
        }
    }
}

/// Waits for an interrupt and takes it (and any other pending), with
/// every regular interrupt open: for a CPU with nothing to do until
/// something changes (its tick comes at least every tick period).
pub fn wait_for_interrupt() {
    let mask = gic::pmr();
    gic::set_pmr(gic::PMR_OPEN);
    aarch64_cpu::asm::wfi();
    unmask_irq();
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    mask_irq();
    gic::set_pmr(mask);
}

/// Runs `f` with every regular interrupt open, whatever the caller had
/// masked: for long work inside a guest's call (a wait on another CPU,
/// clearing a VM's RAM) that holds no lock, so that this CPU's own
/// interrupts (its tick, kicks) are taken meanwhile and the watchdog does
/// not see a lockup.
pub fn with_interrupts_open<R>(f: impl FnOnce() -> R) -> R {
    use aarch64_cpu::registers::{Readable, Writeable, DAIF};
    let (daif, mask) = (DAIF.get(), gic::pmr());
    gic::set_pmr(gic::PMR_OPEN);
    unmask_irq();
    let result = f();
    mask_irq();
    gic::set_pmr(mask);
    DAIF.set(daif);
    result
}

/// Runs `f` with `PSTATE.I` set, then puts the mask back as it was.
pub fn with_irqs_masked<R>(f: impl FnOnce() -> R) -> R {
    use aarch64_cpu::registers::{Readable, Writeable, DAIF};
    let daif = DAIF.get();
    mask_irq();
    let result = f();
    DAIF.set(daif);
    result
}

/// Clears `PSTATE.I`.
pub fn unmask_irq() {
    // SAFETY: changes only the interrupt mask; the caller is at a point
    // where an interrupt may be taken (its state is on its stack).
    unsafe { core::arch::asm!("msr daifclr, #2", options(nomem, nostack)) };
}

/// Sets `PSTATE.I`.
pub fn mask_irq() {
    // SAFETY: changes only the interrupt mask.
    unsafe { core::arch::asm!("msr daifset, #2", options(nomem, nostack)) };
}

/// Rule 1 for a synchronous trap: regular interrupts masked by priority,
/// PNMIs open, until dropped (which masks `PSTATE.I` again and restores the
/// priority mask, for the return to the guest).
pub struct PnmiWindow {
    mask: u8,
}

impl PnmiWindow {
    pub fn open() -> Self {
        let mask = gic::pmr();
        gic::set_pmr(gic::PMR_PNMI_ONLY);
        unmask_irq();
        Self { mask }
    }

    /// [`open`](Self::open) on a guest's exit, where the priority mask is
    /// always the one the guest runs with ([`gic::PMR_OPEN`]): one system
    /// register read less on every trap.
    #[inline]
    pub fn open_from_guest() -> Self {
        gic::set_pmr(gic::PMR_PNMI_ONLY);
        unmask_irq();
        Self { mask: gic::PMR_OPEN }
    }
}

impl Drop for PnmiWindow {
    fn drop(&mut self) {
        // No barrier after the mask: with `PSTATE.I` set nothing can be
        // taken meanwhile, and the return to the guest synchronises.
        mask_irq();
        gic::set_pmr_unsynchronised(self.mask);
    }
}
