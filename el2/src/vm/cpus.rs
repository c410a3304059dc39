//! What a physical CPU does when it runs no vCPU, and how other CPUs ask
//! it for something: a mailbox per CPU (power off, check the private data
//! area) and the idle loop that serves it and runs the vCPUs the scheduler
//! gives it ([`crate::vm::sched::pick`]). A request is posted in the
//! mailbox, then the CPU is kicked with [`crate::irq::gic::SGI_KICK`],
//! which ends its `WFI` or, if it runs a vCPU, makes it exit (the kick
//! handler serves from there the requests it can).

use crate::boot::smp::{self, mpidr_of, online, wait_until};
use core::sync::atomic::Ordering;
use smccc::Smc;

/// Work the boot CPU asks an idle secondary to do.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Request {
    None = 0,
    /// Power off with PSCI `CPU_OFF`.
    Off = 1,
    /// Check the private data area at its fixed VA and answer in the mailbox.
    CheckPrda = 2,
}

const PRDA_OWN: u8 = 1;
const PRDA_FOREIGN: u8 = 2;

fn request(slot: usize, request: Request) {
    if let Some(mailbox) = crate::mm::prda::of(slot).map(|p| &p.mailbox_request) {
        mailbox.store(request as u8, Ordering::Release);
        aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISH);
        // Early in boot a CPU waits for events (`WFE`); once it takes
        // interrupts it sleeps in `WFI` or runs its vCPU, and only an
        // interrupt reaches it.
        aarch64_cpu::asm::sev();
        if crate::irq::interrupts_up(slot) {
            crate::irq::gic::send_sgi(crate::irq::gic::SGI_KICK, mpidr_of(slot));
        }
    }
}

/// A kick reached this CPU (in `slot`): the scheduler looks at what is
/// due, and the mailbox requests that can be served from a trap are.
pub fn kicked(slot: usize) {
    crate::vm::sched::on_kick();
    serve_mailbox_in_guest(slot);
}

/// Answers the mailbox requests that can be served while the CPU runs a
/// vCPU (the others wait for its idle loop).
fn serve_mailbox_in_guest(slot: usize) {
    let Some(mailbox) = crate::mm::prda::of(slot).map(|p| &p.mailbox_request) else { return };
    if mailbox
        .compare_exchange(Request::CheckPrda as u8, Request::None as u8, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let answer = if prda_is_own(slot) { PRDA_OWN } else { PRDA_FOREIGN };
        if let Some(prda) = crate::mm::prda::of(slot) {
            prda.mailbox_answer.store(answer, Ordering::Release);
        }
    }
}

/// Asks the idle secondary in `slot` to power itself off.
pub fn request_off(slot: usize) {
    request(slot, Request::Off);
}

/// Whether this CPU finds its own identity in the private data area at the
/// fixed VA.
fn prda_is_own(slot: usize) -> bool {
    let mpidr = platform::arch::this_cpu_mpidr();
    crate::mm::prda::with(|prda| {
        prda.slot.load(Ordering::Relaxed) == slot as u64 && prda.mpidr.load(Ordering::Relaxed) == mpidr
    })
}

/// How long another CPU's answer (to a PRDA check, to a stop) may take.
/// Under emulation the answering CPU's host thread may not run for a
/// second or more.
pub const PEER_MS: u64 = 5000;

/// Makes the CPU in `slot` take an exit (or leave `WFI`) soon: it looks at
/// its mailbox and its vCPU's state then.
pub fn kick(slot: usize) {
    if slot != crate::mm::prda::slot() && crate::irq::interrupts_up(slot) {
        crate::irq::gic::send_sgi(crate::irq::gic::SGI_KICK, mpidr_of(slot));
    }
}

/// [`wait_until`] with regular interrupts open: for a wait on another CPU
/// inside a guest's call, which no lock of the caller's spans. The caller's
/// own interrupts (its tick, kicks, the guest's forwarded ones) are taken
/// meanwhile, so the wait neither delays them nor looks like a lockup to
/// the watchdog, however long the other CPU takes.
pub fn wait_interruptible(timeout_ms: u64, done: impl FnMut() -> bool) -> bool {
    crate::irq::with_interrupts_open(|| wait_until(timeout_ms, done))
}

/// Has every online CPU check the PRDA at the fixed VA; returns a mask of
/// the slots that found their own, and how many CPUs were asked.
pub fn check_prda_everywhere(my_slot: usize) -> (u64, usize) {
    let cpus = online();
    let mut mask = 0u64;
    for (slot, answer) in crate::mm::prda::PAGES.iter().map(|p| &p.mailbox_answer).enumerate().take(cpus) {
        let own = if slot == my_slot {
            prda_is_own(slot)
        } else {
            answer.store(0, Ordering::Relaxed);
            request(slot, Request::CheckPrda);
            wait_interruptible(PEER_MS, || answer.load(Ordering::Acquire) != 0);
            answer.load(Ordering::Acquire) == PRDA_OWN
        };
        if own {
            mask |= 1 << slot;
        }
    }
    (mask, cpus)
}

/// The idle loop of a CPU without a running vCPU: runs the next vCPU the
/// scheduler has for it, or waits for work (a vCPU queued here, a mailbox
/// request), taking interrupts (its tick among them) while it waits.
///
/// The wait is `WFI` with IRQs masked once this CPU takes interrupts: a
/// pending interrupt (the kick `request` sends, the tick) ends it even
/// masked, so a request posted just before cannot be slept through, and
/// the CPU really stops. (`WFE` would not stop it under QEMU's TCG, where
/// it only yields: idle CPUs then spin and take host time from the busy
/// ones; measured: Linux's early boot, before it starts its secondaries,
/// took 2.5 times as long.) Before its interrupts are set up the CPU waits
/// for events, which `request` also signals.
pub fn secondary_idle(slot: usize) -> ! {
    loop {
        crate::irq::mask_irq();
        if crate::irq::interrupts_up(slot) {
            let mut frame = platform::arch::trap::TrapFrame::default();
            if crate::vm::sched::pick(&mut frame) {
                crate::vm::vcpu::run(&frame)
            }
            if crate::mm::prda::of(slot)
                .map(|p| &p.mailbox_request)
                .is_some_and(|m| m.load(Ordering::Acquire) == Request::None as u8)
                && !crate::vm::sched::resched_pending()
            {
                aarch64_cpu::asm::wfi();
            }
        } else {
            crate::irq::unmask_irq();
            platform::arch::wait_for_event();
            crate::irq::mask_irq();
        }
        // Interrupts that ended the wait are taken here (the ISB makes the
        // unmasking take effect before the mask comes back).
        crate::irq::unmask_irq();
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        crate::irq::mask_irq();
        let Some(mailbox) = crate::mm::prda::of(slot).map(|p| &p.mailbox_request) else { continue };
        match mailbox.swap(Request::None as u8, Ordering::AcqRel) {
            r if r == Request::Off as u8 => {
                smp::check_out();
                let error = smccc::psci::cpu_off::<Smc>();
                crate::arch::power::fatal(format_args!("CPU_OFF returned: {error:?}"));
            }
            r if r == Request::CheckPrda as u8 => {
                let answer = if prda_is_own(slot) { PRDA_OWN } else { PRDA_FOREIGN };
                if let Some(prda) = crate::mm::prda::of(slot) {
                    prda.mailbox_answer.store(answer, Ordering::Release);
                }
            }
            _ => {}
        }
    }
}
