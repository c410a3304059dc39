//! A spin lock whose waiters give their CPU back: after a short spin a
//! waiter sleeps in `WFI` until the holder, on unlocking, kicks it with
//! [`gic::SGI_KICK`] (the halt-and-kick scheme of paravirtual spin locks).
//!
//! Why: a CPU at EL2 can be descheduled at any instruction when it is
//! itself emulated (under QEMU each vCPU is a host thread, and `-smp 4` on
//! a two-core host always has two of them waiting), including while it
//! holds a lock. With a plain spin lock, every other CPU that then needs
//! the lock spins for the rest of its host time slice, which delays the
//! holder further. Measured on the vGIC model's lock with `-smp 4` on two
//! host cores, the guest-stub's interrupt checks spent 4.4 to 4.7 s
//! spinning per run, and a vCPU went up to 490 ms without running guest
//! code, on an otherwise idle host (with `-smp 2`: 23 ms in all); on a
//! loaded host the stalls passed the guest's 2 s deadlines. A halted
//! waiter's host thread sleeps, and the holder gets the host CPU.
//!
//! On hardware the holder is never descheduled at EL2 (interrupts are
//! masked there but for PNMIs, which are short), so a waiter practically
//! never gets past the spin.
//!
//! The sleep opens the priority mask with `PSTATE.I` set, as
//! [`crate::vm::vgic::idle`] does, so that a kick ends the `WFI` but is taken
//! only later, on the way back to the guest, where it is harmless. A kick
//! sent before the waiter reaches `WFI` is pending, and `WFI` then returns
//! at once: no wake-up is lost. A CPU whose interrupts are not up yet, or
//! that is inside a regular interrupt handler (where the running priority
//! keeps a kick from being signalled), only spins.

use crate::irq::gic;
use aarch64_cpu::registers::{Readable, Writeable, DAIF};
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{fence, AtomicU32, Ordering};
use platform::board::MAX_CPUS;
use spin::{Mutex, MutexGuard};

/// Attempts before a waiter sleeps: a few microseconds of spinning, more
/// than an uncontended critical section of the vGIC model takes.
const SPINS: u32 = 256;

const _: () = assert!(MAX_CPUS <= u32::BITS as usize, "one waiter bit per CPU slot");

pub struct KickLock<T> {
    inner: Mutex<T>,
    /// CPU slots asleep waiting for this lock (bit = slot).
    waiters: AtomicU32,
}

impl<T> KickLock<T> {
    pub const fn new(value: T) -> Self {
        Self { inner: Mutex::new(value), waiters: AtomicU32::new(0) }
    }

    pub fn lock(&self) -> KickGuard<'_, T> {
        // The common case, uncontended, costs one attempt.
        if let Some(guard) = self.inner.try_lock() {
            return KickGuard { lock: self, guard: Some(guard) };
        }
        let slot = crate::mm::prda::slot();
        let may_sleep = crate::irq::interrupts_up(slot);
        let me = 1u32.checked_shl(slot as u32).unwrap_or(0);
        loop {
            for _ in 0..SPINS {
                if let Some(guard) = self.inner.try_lock() {
                    return KickGuard { lock: self, guard: Some(guard) };
                }
                core::hint::spin_loop();
            }
            // Inside a regular handler (a priority is running) a kick could
            // not end the WFI, only the next PNMI tick: spin there.
            if !may_sleep || me == 0 || gic::running_priority() != gic::RPR_IDLE {
                continue;
            }
            self.waiters.fetch_or(me, Ordering::SeqCst);
            // Pairs with the fence in `KickGuard::drop`: either the holder
            // sees this waiter's bit, or this waiter sees the lock free.
            fence(Ordering::SeqCst);
            if let Some(guard) = self.inner.try_lock() {
                self.waiters.fetch_and(!me, Ordering::SeqCst);
                return KickGuard { lock: self, guard: Some(guard) };
            }
            sleep_until_kicked();
            self.waiters.fetch_and(!me, Ordering::SeqCst);
        }
    }
}

/// Waits in `WFI` for any interrupt (a kick, or at the latest the next
/// tick), which stays pending; the caller's masks are restored.
fn sleep_until_kicked() {
    let daif = DAIF.get();
    crate::irq::mask_irq();
    let mask = gic::pmr();
    gic::set_pmr(gic::PMR_OPEN);
    aarch64_cpu::asm::wfi();
    gic::set_pmr(mask);
    DAIF.set(daif);
}

pub struct KickGuard<'a, T> {
    lock: &'a KickLock<T>,
    /// `Some` until dropped.
    guard: Option<MutexGuard<'a, T>>,
}

impl<T> Deref for KickGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // The guard is only taken in `drop`.
        self.guard.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl<T> DerefMut for KickGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl<T> Drop for KickGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        fence(Ordering::SeqCst);
        let mut sleepers = self.lock.waiters.load(Ordering::SeqCst);
        while sleepers != 0 {
            let slot = sleepers.trailing_zeros() as usize;
            sleepers &= sleepers - 1;
            gic::send_sgi(gic::SGI_KICK, crate::boot::smp::mpidr_of(slot));
        }
    }
}
