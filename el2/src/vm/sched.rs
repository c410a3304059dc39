//! The vCPU scheduler: which vCPU each physical CPU runs, when it switches,
//! and where a vCPU that becomes runnable goes. The policy (proportional
//! share by weighted virtual run time, the latency class, the preemption
//! rule) is `platform::sched`, tested on the host; this module is the
//! mechanism around it. The rules, for users, are in `docs/scheduling.md`.
//!
//! # Run queues and switches
//!
//! Each CPU has a run queue in its private area (`crate::mm::prda`). A CPU
//! switches vCPUs only on the way back to a guest ([`reschedule`], when
//! its `resched` flag is set) or from its idle loop ([`pick`]): the vCPU
//! it ran is saved into its object from the trap frame and the CPU
//! ([`crate::vm::vcpu::put`]), the next one loaded into the same frame
//! ([`crate::vm::vcpu::load`]), and the exception return enters it. There
//! is no per-vCPU hypervisor stack: a vCPU is never switched out in the
//! middle of EL2 work.
//!
//! # What sets `resched`
//!
//! - The slice's end: a CPU with vCPUs waiting sets its EL2 timer
//!   (`CNTHP`, shared with the tick: `crate::irq::pnmi::set_event`) for
//!   the running vCPU's slice end; the timer's PNMI sets the flag, and the
//!   return to the guest it interrupted does the rest (one exit, no second
//!   interrupt). A CPU with nobody waiting sets no slice timer at all.
//! - A vCPU queued on this CPU that should preempt the running one
//!   (`platform::sched::preempts`): whoever queues it kicks the CPU.
//! - The running vCPU blocks: its `WFI` with nothing pending ([`wfi`])
//!   while others wait for the CPU. With nobody waiting it stays loaded
//!   and the CPU waits in place (`crate::vm::vgic::wait_in_place`), which
//!   costs a single-VM machine nothing.
//!
//! # Waking
//!
//! An interrupt for a blocked vCPU (an SGI, an SPI it owns, a kick from
//! its VM's devices) wakes it ([`interrupt_for`]). Its own timers cannot
//! fire while it is off the CPU, so the CPU it blocked on keeps the
//! earliest deadline of its blocked vCPUs' timers as its EL2 timer event,
//! and wakes them when it passes. When it runs again its timers are loaded
//! as they were: one whose deadline passed meanwhile fires at once, and
//! one that has not does not fire early.
//!
//! # Placement and migration
//!
//! A vCPU that becomes runnable (started, woken, or preempted at its
//! slice's end) goes to the CPU it may run on with the fewest vCPUs
//! (running or queued), preferring the CPU it last ran on, then the
//! lowest. A CPU that goes idle pulls the best queued vCPU it may run
//! from another CPU's queue. A vCPU thus migrates only when it would wait
//! otherwise.

use crate::mm::prda::SchedArea;
use crate::vm::vcpu::{State, Vcpu};
use crate::vm::Vm;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use platform::arch::trap::TrapFrame;
use platform::sched::{Entry, RunQueue, Running, VcpuId, BUCKETS};

/// A vCPU's scheduling bookkeeping and its recorded figures.
pub struct VcpuSched {
    /// Weighted virtual run time (`platform::sched::charge`).
    vruntime: AtomicU64,
    /// Its `WFI` found nothing to do, or it waits for a forwarded access:
    /// block at the return.
    blocking: AtomicBool,
    /// It waits for a forwarded access (`crate::vm::forward`): nothing but
    /// the access's completion wakes it.
    pub(crate) io_wait: AtomicBool,
    /// While blocked: when its earliest timer fires (physical counter),
    /// or `u64::MAX`.
    wake_at: AtomicU64,
    /// When the interrupt that woke it arrived (counter), until it runs.
    arrival: AtomicU64,
    /// When it last became runnable (counter).
    queued_at: AtomicU64,
    /// Its VM is latency-sensitive and an interrupt woke it: queued with
    /// the latency credit.
    urgent: AtomicBool,
    /// Counter ticks it ran and waited in a queue; its wake-ups and the
    /// times it was switched in; the wake-up latencies (interrupt arrival
    /// to its first instruction after it), by `platform::sched::bucket`.
    pub run: AtomicU64,
    pub wait: AtomicU64,
    pub wakeups: AtomicU64,
    pub switches: AtomicU64,
    pub latency: [AtomicU64; BUCKETS],
    /// The longest wake-up latency (counter ticks).
    pub worst: AtomicU64,
}

impl VcpuSched {
    pub const fn new() -> Self {
        Self {
            vruntime: AtomicU64::new(0),
            blocking: AtomicBool::new(false),
            io_wait: AtomicBool::new(false),
            wake_at: AtomicU64::new(u64::MAX),
            arrival: AtomicU64::new(0),
            queued_at: AtomicU64::new(0),
            urgent: AtomicBool::new(false),
            run: AtomicU64::new(0),
            wait: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            latency: [const { AtomicU64::new(0) }; BUCKETS],
            worst: AtomicU64::new(0),
        }
    }
}

/// A VM's scheduling parameters.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub weight: u32,
    pub latency_sensitive: bool,
    /// The time slice, in counter ticks.
    pub slice: u64,
    /// The same in the VM's virtual time (`platform::sched::charge`):
    /// the unit of every comparison with its vCPUs' virtual run times.
    pub vslice: u64,
}

impl Params {
    /// From the description's units (microseconds).
    pub fn new(weight: u32, latency_sensitive: bool, slice_us: u32) -> Self {
        let slice = ticks_from_us(u64::from(slice_us));
        Self { weight, latency_sensitive, slice, vslice: platform::sched::charge(0, slice, weight) }
    }
}

fn now() -> u64 {
    CNTPCT_EL0.get()
}

fn ticks_from_us(us: u64) -> u64 {
    (CNTFRQ_EL0.get() / 1_000_000).max(1) * us
}

/// The physical counter `ms` milliseconds from now.
pub fn deadline_in_ms(ms: u32) -> u64 {
    now().saturating_add(ticks_from_us(u64::from(ms) * 1000))
}

/// Counter ticks to nanoseconds.
pub fn ns_from_ticks(ticks: u64) -> u64 {
    let freq = CNTFRQ_EL0.get().max(1);
    (u128::from(ticks) * 1_000_000_000 / u128::from(freq)) as u64
}

fn id(vm: &Vm, vcpu: &Vcpu) -> VcpuId {
    VcpuId { vm: vm.index as u16, vcpu: vcpu.index as u16 }
}

fn lookup(id: VcpuId) -> Option<(&'static Vm, &'static Vcpu)> {
    let vm = crate::vm::get(usize::from(id.vm))?;
    Some((vm, vm.vcpus.get(usize::from(id.vcpu))?))
}

fn area(slot: usize) -> Option<&'static SchedArea> {
    crate::mm::prda::of(slot).map(|p| &p.sched)
}

/// Runs `f` on a CPU's run queue under its lock, with this CPU's
/// interrupts masked: a kick taken while the lock is held would look at
/// this CPU's queue from its handler and wait for itself. No code holds
/// two queues' locks at once.
fn with_queue<R>(area: &SchedArea, f: impl FnOnce(&mut RunQueue) -> R) -> R {
    crate::irq::with_irqs_masked(|| f(&mut area.queue.lock()))
}

/// How many vCPUs CPU `slot` has: the one it runs and those it queues.
fn load_of(slot: usize) -> usize {
    let running = crate::mm::prda::of(slot).is_some_and(|p| p.running_vcpu.load(Ordering::Acquire) != 0);
    area(slot).map_or(usize::MAX, |a| with_queue(a, |q| q.len())) + usize::from(running)
}

/// The CPU a vCPU that becomes runnable goes to (see the module doc).
fn place(vcpu: &Vcpu) -> usize {
    let last = vcpu.cpu();
    let online = crate::boot::smp::online();
    let mut best: Option<(usize, usize)> = None;
    for slot in (0..online).filter(|&s| vcpu.affinity & (1 << s) != 0) {
        let load = load_of(slot);
        let better = match best {
            None => true,
            Some((_, best_load)) => load < best_load || (load == best_load && slot == last),
        };
        if better {
            best = Some((slot, load));
        }
    }
    best.map_or(last, |(slot, _)| slot)
}

/// Why a vCPU is queued.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Queued {
    Started,
    Woken,
    Preempted,
}

/// Queues `vcpu` (its state `Starting`, `Blocked` or being preempted) on
/// the CPU [`place`] picks, and makes that CPU look at it.
fn enqueue(vm: &Vm, vcpu: &Vcpu, urgent: bool, why: Queued) {
    let params = vm.sched;
    let target = place(vcpu);
    let Some(target_area) = area(target) else { return };
    let now = now();
    vcpu.set_cpu(target);
    vcpu.sched.queued_at.store(now, Ordering::Relaxed);
    vcpu.sched.urgent.store(urgent, Ordering::Relaxed);
    let pushed = with_queue(target_area, |queue| {
        let vruntime =
            platform::sched::on_wake(vcpu.sched.vruntime.load(Ordering::Relaxed), queue.min_vruntime(), params.vslice);
        vcpu.sched.vruntime.store(vruntime, Ordering::Relaxed);
        let entry = Entry { id: id(vm, vcpu), vruntime, slice: params.vslice, urgent, seq: 0 };
        vcpu.set_state(State::Runnable);
        queue.push(entry)
    });
    if let Err(e) = pushed {
        // Cannot happen: a queue holds more vCPUs than a machine has.
        crate::arch::power::fatal(format_args!("run queue of CPU {target}: {e:?}"));
    }
    if target != crate::mm::prda::slot() {
        crate::vm::cpus::kick(target);
    } else if why != Queued::Preempted {
        // (A vCPU this CPU just preempted has nothing to claim from the
        // one that took its place.)
        look_again();
    }
}

/// This CPU decides again, at the next return to a guest (or its idle
/// loop's next turn).
fn look_again() {
    crate::mm::prda::sched().resched.store(true, Ordering::Release);
}

/// A vCPU was started (`CPU_ON`, its VM's start): it is queued.
pub fn started(vm: &Vm, vcpu: &Vcpu) {
    vcpu.sched.vruntime.store(0, Ordering::Relaxed);
    enqueue(vm, vcpu, false, Queued::Started);
}

/// Something became pending for `vcpu` (its interrupts changed): a running
/// one on another CPU is kicked to take it, a blocked one is woken.
pub fn interrupt_for(vm: &Vm, vcpu: &Vcpu) {
    vcpu.attention.store(true, Ordering::Release);
    match vcpu.state() {
        State::Running if vcpu.cpu() != crate::mm::prda::slot() => crate::vm::cpus::kick(vcpu.cpu()),
        State::Blocked => wake(vm, vcpu, now()),
        _ => {}
    }
}

/// A blocked vCPU has an interrupt (that arrived at `arrival`): it is
/// queued, with the latency credit if its VM is latency-sensitive.
fn wake(vm: &Vm, vcpu: &Vcpu, arrival: u64) {
    if vcpu.sched.io_wait.load(Ordering::SeqCst) || !vcpu.change(State::Blocked, State::Starting) {
        return;
    }
    vcpu.sched.wake_at.store(u64::MAX, Ordering::Relaxed);
    vcpu.sched.arrival.store(arrival.max(1), Ordering::Relaxed);
    vcpu.sched.wakeups.fetch_add(1, Ordering::Relaxed);
    enqueue(vm, vcpu, vm.sched.latency_sensitive, Queued::Woken);
}

/// Takes a vCPU that is not running off for good (its VM stops): out of
/// its queue, or out of its sleep. Returns whether it is off.
pub fn take_off(vm: &Vm, vcpu: &Vcpu) -> bool {
    match vcpu.state() {
        State::Off => true,
        State::Blocked => vcpu.change(State::Blocked, State::Off),
        State::Runnable => {
            let Some(queue) = area(vcpu.cpu()) else { return false };
            // Under the queue's lock: a vCPU in it is not being loaded.
            with_queue(queue, |queue| {
                let removed = queue.remove(id(vm, vcpu)).is_some();
                if removed {
                    vcpu.set_state(State::Off);
                }
                removed
            })
        }
        State::Starting | State::Running => false,
    }
}

/// Charges the running `vcpu` for its time on this CPU up to now.
pub fn charge_running(vm: &Vm, vcpu: &Vcpu) {
    let area = crate::mm::prda::sched();
    let now = now();
    let ran = now.saturating_sub(area.since.swap(now, Ordering::Relaxed));
    vcpu.sched.run.fetch_add(ran, Ordering::Relaxed);
    let v = platform::sched::charge(vcpu.sched.vruntime.load(Ordering::Relaxed), ran, vm.sched.weight);
    vcpu.sched.vruntime.store(v, Ordering::Relaxed);
}

fn running_view(vm: &Vm, vcpu: &Vcpu) -> Running {
    Running {
        vruntime: vcpu.sched.vruntime.load(Ordering::Relaxed),
        slice: vm.sched.vslice,
        latency_sensitive: vm.sched.latency_sensitive,
    }
}

/// A kick reached this CPU (another CPU queued a vCPU here): wakes the
/// blocked vCPUs whose timers are due, and decides whether the running
/// vCPU gives way.
pub fn on_kick() {
    let now = now();
    wake_due(now);
    let area = crate::mm::prda::sched();
    if let Some((vm, vcpu)) = crate::vm::current() {
        charge_running(vm, vcpu);
        let running = running_view(vm, vcpu);
        let slice_end = area.slice_end.load(Ordering::Relaxed);
        let slice_over = slice_end <= now;
        let give_way =
            with_queue(area, |q| q.best().is_some_and(|best| slice_over || platform::sched::preempts(best, &running)));
        if give_way {
            area.resched.store(true, Ordering::Release);
        }
    } else if !with_queue(area, |q| q.is_empty()) {
        area.resched.store(true, Ordering::Release);
    }
    set_timer_event();
}

/// Wakes the blocked vCPUs this CPU watches whose timers are due at `now`.
fn wake_due(now: u64) {
    let me = crate::mm::prda::slot();
    for vm in crate::vm::all() {
        for vcpu in &vm.vcpus {
            if vcpu.state() == State::Blocked && vcpu.cpu() == me {
                let due = vcpu.sched.wake_at.load(Ordering::Relaxed);
                if due <= now {
                    if vcpu.sched.io_wait.load(Ordering::SeqCst) {
                        // Its forwarded access ran out of time: failing it
                        // answers the access, which wakes the vCPU.
                        vcpu.sched.wake_at.store(u64::MAX, Ordering::Relaxed);
                        crate::vm::forward::timed_out(vm, vcpu);
                    } else {
                        wake(vm, vcpu, due);
                    }
                }
            }
        }
    }
}

/// Sets this CPU's scheduler event: the running vCPU's slice end if others
/// wait, and its blocked vCPUs' earliest timer.
fn set_timer_event() {
    let me = crate::mm::prda::slot();
    let area = crate::mm::prda::sched();
    let mut event = u64::MAX;
    if crate::vm::current().is_some() && !with_queue(area, |q| q.is_empty()) {
        let mut end = area.slice_end.load(Ordering::Relaxed);
        if end == u64::MAX {
            // Someone waits now: the running vCPU's slice counts from here.
            end = match crate::vm::current() {
                Some((vm, _)) => now().saturating_add(vm.sched.slice),
                None => u64::MAX,
            };
            area.slice_end.store(end, Ordering::Relaxed);
        }
        event = end;
    }
    for vm in crate::vm::all() {
        for vcpu in vm.vcpus.iter().filter(|v| v.state() == State::Blocked && v.cpu() == me) {
            event = event.min(vcpu.sched.wake_at.load(Ordering::Relaxed));
        }
    }
    crate::irq::pnmi::set_event(event);
}

/// Whether the running vCPU must be looked at on its way back.
#[inline]
pub fn resched_pending() -> bool {
    crate::mm::prda::sched().resched.load(Ordering::Relaxed)
}

/// A trapped `WFI` of the running vCPU with nothing pending for it: if
/// other vCPUs wait for this CPU it blocks (the switch happens on the way
/// back); otherwise the CPU waits in place, the vCPU still loaded.
pub fn wfi() {
    let Some((_, vcpu)) = crate::vm::current() else { return };
    if crate::vm::vgic::has_pending_here(vcpu) {
        return;
    }
    let area = crate::mm::prda::sched();
    if with_queue(area, |q| q.is_empty()) {
        crate::vm::vgic::wait_in_place();
    } else {
        vcpu.sched.blocking.store(true, Ordering::Relaxed);
        area.resched.store(true, Ordering::Release);
    }
}

/// The running vCPU trapped on a forwarded access, now queued for its
/// service VM: it blocks at the return, whether or not others wait for
/// this CPU (its service VM may need it), until [`io_done`].
pub fn io_wait() {
    let Some((_, vcpu)) = crate::vm::current() else { return };
    vcpu.sched.blocking.store(true, Ordering::Relaxed);
    crate::mm::prda::sched().resched.store(true, Ordering::Release);
}

/// The forwarded access `vcpu` waited for is complete (its `io_wait` is
/// clear): if it is blocked it is woken; if it is still on its way to
/// blocking, [`block`] sees the flag and wakes it.
pub fn io_done(vm: &Vm, vcpu: &Vcpu) {
    core::sync::atomic::fence(Ordering::SeqCst);
    if vcpu.state() == State::Blocked {
        wake(vm, vcpu, now());
    }
}

/// The physical counter value at which a blocked vCPU's timers need it:
/// the earlier enabled, unmasked one (the virtual timer's compare value is
/// in its VM's virtual time).
fn timer_deadline(t: &crate::arch::context::Timers, cntvoff: u64) -> u64 {
    const ENABLE: u64 = 1;
    const IMASK: u64 = 2;
    let armed = |ctl: u64| ctl & (ENABLE | IMASK) == ENABLE;
    let mut deadline = u64::MAX;
    if armed(t.cntv_ctl) {
        deadline = deadline.min(t.cntv_cval.wrapping_add(cntvoff));
    }
    if armed(t.cntp_ctl) {
        deadline = deadline.min(t.cntp_cval);
    }
    deadline
}

/// On the way back to the guest with `resched` set: keeps the running
/// vCPU, or saves it from `frame` and loads the next one into `frame`
/// (or, with nothing to run, idles and does not return).
pub fn reschedule(frame: &mut TrapFrame) {
    let area = crate::mm::prda::sched();
    area.resched.store(false, Ordering::Relaxed);
    let Some((vm, vcpu)) = crate::vm::current() else { return };
    // A debug hold (a step over an instruction, `crate::traps::debug`)
    // belongs to this CPU and ends at the vCPU's next exit: switch then.
    if crate::mm::prda::debug_hold().is_some() || crate::mm::prda::el2_stepping() {
        area.resched.store(true, Ordering::Relaxed);
        return;
    }
    charge_running(vm, vcpu);
    let now = now();
    wake_due(now);
    let mut blocking = vcpu.sched.blocking.swap(false, Ordering::Relaxed);
    let mut waits_io = blocking && crate::vm::forward::waits(vm, vcpu);
    if waits_io && crate::vm::forward::resume(vcpu, frame) {
        // The service VM was quicker than this CPU: no need to block.
        (blocking, waits_io) = (false, false);
    }
    let running = running_view(vm, vcpu);
    let slice_end = area.slice_end.load(Ordering::Relaxed);
    let slice_over = slice_end <= now;
    let next = with_queue(area, |queue| {
        let switch = queue.best().is_some_and(|best| {
            blocking
                || (slice_over && platform::sched::yields_to(best, &running))
                || platform::sched::preempts(best, &running)
        });
        if switch {
            queue.pop()
        } else {
            None
        }
    });
    let Some(next) = next else {
        if waits_io {
            // Nobody else to run here: the vCPU sleeps, the CPU idles.
            let _ = crate::vm::vcpu::put(frame);
            block(vm, vcpu);
            crate::vm::vcpu::idle_here();
        }
        // Carries on: a fresh slice if the last one ended.
        if slice_over {
            area.slice_end.store(u64::MAX, Ordering::Relaxed);
        }
        set_timer_event();
        return;
    };
    let Some((next_vm, next_vcpu)) = lookup(next.id) else { return };
    // The timer's deadline, if the slice's end is why this CPU switches.
    let timed = (slice_over && !blocking).then_some(slice_end);
    let _ = crate::vm::vcpu::put(frame);
    if blocking {
        block(vm, vcpu);
    } else {
        enqueue(vm, vcpu, false, Queued::Preempted);
    }
    switch_to(next_vm, next_vcpu, frame);
    if let Some(fired) = timed {
        let ticks = CNTPCT_EL0.get().saturating_sub(fired);
        area.timed_switches.fetch_add(1, Ordering::Relaxed);
        area.timed_switch_ticks.fetch_add(ticks, Ordering::Relaxed);
        area.timed_switch_min.fetch_min(ticks, Ordering::Relaxed);
    }
}

/// The vCPU just saved blocks: it sleeps until an interrupt or its timers.
fn block(vm: &Vm, vcpu: &Vcpu) {
    if crate::vm::forward::waits(vm, vcpu) {
        // Only the access's completion wakes it, not its timers; this CPU
        // watches the access's deadline instead (`wake_due`).
        vcpu.sched.wake_at.store(crate::vm::forward::deadline(vcpu), Ordering::Relaxed);
        vcpu.set_state(State::Blocked);
        core::sync::atomic::fence(Ordering::SeqCst);
        if !vcpu.sched.io_wait.load(Ordering::SeqCst) {
            wake(vm, vcpu, now());
        }
        return;
    }
    let deadline = timer_deadline(&vcpu.saved_timers(), vm.cntvoff.load(Ordering::Relaxed));
    vcpu.sched.wake_at.store(deadline, Ordering::Relaxed);
    vcpu.set_state(State::Blocked);
    // An interrupt that came while it was being saved found it running,
    // and only flagged it: it wakes at once then.
    if vcpu.attention.load(Ordering::Acquire) && crate::vm::vgic::has_work(vm, vcpu) {
        wake(vm, vcpu, now());
    } else if deadline <= now() {
        wake(vm, vcpu, deadline);
    }
}

/// Loads `vm`'s `vcpu` (just popped from this CPU's queue) into `frame`.
fn switch_to(vm: &'static Vm, vcpu: &'static Vcpu, frame: &mut TrapFrame) {
    let area = crate::mm::prda::sched();
    let now = now();
    vcpu.set_cpu(crate::mm::prda::slot());
    vcpu.set_state(State::Running);
    let s = &vcpu.sched;
    s.wait.fetch_add(now.saturating_sub(s.queued_at.load(Ordering::Relaxed)), Ordering::Relaxed);
    s.switches.fetch_add(1, Ordering::Relaxed);
    with_queue(area, |q| q.advance(s.vruntime.load(Ordering::Relaxed)));
    if crate::vm::vcpu::load(vm, vcpu, frame).is_err() {
        crate::vm::vcpu::idle_here()
    }
    // A vCPU woken by its forwarded access's completion takes its result.
    if crate::vm::forward::waits(vm, vcpu) {
        crate::vm::forward::resume(vcpu, frame);
    }
    let arrival = s.arrival.swap(0, Ordering::Relaxed);
    if arrival != 0 {
        let latency = now.saturating_sub(arrival);
        if let Some(bucket) = s.latency.get(platform::sched::bucket(ns_from_ticks(latency))) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        s.worst.fetch_max(latency, Ordering::Relaxed);
    }
    area.since.store(now, Ordering::Relaxed);
    area.slice_end.store(u64::MAX, Ordering::Relaxed);
    set_timer_event();
}

/// The idle loop's turn: the next vCPU for this CPU (its own queue's
/// best, or one pulled from another CPU's queue), loaded into `frame`.
pub fn pick(frame: &mut TrapFrame) -> bool {
    let area = crate::mm::prda::sched();
    area.resched.store(false, Ordering::Relaxed);
    wake_due(now());
    // Its own queue's lock is dropped before another's is taken.
    let own = with_queue(area, RunQueue::pop);
    let next = own.or_else(pull);
    match next.and_then(|e| lookup(e.id)) {
        Some((vm, vcpu)) => {
            switch_to(vm, vcpu, frame);
            true
        }
        None => {
            set_timer_event();
            false
        }
    }
}

/// Takes the best queued vCPU this CPU may run from another CPU's queue.
fn pull() -> Option<Entry> {
    let me = crate::mm::prda::slot();
    for slot in (0..crate::boot::smp::online()).filter(|&s| s != me) {
        let Some(other) = area(slot) else { continue };
        let pulled = with_queue(other, |queue| {
            let movable = queue
                .iter()
                .filter(|e| lookup(e.id).is_some_and(|(_, v)| v.affinity & (1 << me) != 0))
                .min_by_key(|e| e.key())
                .copied()?;
            queue.remove(movable.id)
        });
        if pulled.is_some() {
            return pulled;
        }
    }
    None
}

/// `vcpu`'s recorded figures.
pub fn figures(vcpu: &Vcpu) -> platform::sched::Figures {
    let s = &vcpu.sched;
    let us = |ticks: &AtomicU64| ns_from_ticks(ticks.load(Ordering::Relaxed)) / 1000;
    platform::sched::Figures {
        run_us: us(&s.run),
        wait_us: us(&s.wait),
        switches: s.switches.load(Ordering::Relaxed),
        wakeups: s.wakeups.load(Ordering::Relaxed),
        latency: core::array::from_fn(|i| s.latency.get(i).map_or(0, |b| b.load(Ordering::Relaxed))),
        worst_us: us(&s.worst),
    }
}

/// Logs each vCPU's figures (at power-off), for those that ever ran.
pub fn report() {
    if let Some((vm, vcpu)) = crate::vm::current() {
        charge_running(vm, vcpu);
    }
    for vm in crate::vm::all() {
        for vcpu in vm.vcpus.iter().filter(|v| v.sched.switches.load(Ordering::Relaxed) != 0) {
            log::info!("{}{}.{} {}", platform::sched::REPORT_PREFIX, vm.name, vcpu.index, figures(vcpu));
        }
    }
    let areas = crate::mm::prda::PAGES.iter().map(|p| &p.sched);
    let (count, ticks, min) = areas.fold((0, 0, u64::MAX), |(c, t, m), a| {
        (
            c + a.timed_switches.load(Ordering::Relaxed),
            t + a.timed_switch_ticks.load(Ordering::Relaxed),
            m.min(a.timed_switch_min.load(Ordering::Relaxed)),
        )
    });
    if count != 0 {
        let cost =
            platform::sched::SwitchCost { count, min_ns: ns_from_ticks(min), mean_ns: ns_from_ticks(ticks / count) };
        log::info!("{}{cost}", platform::sched::SWITCH_REPORT);
    }
}
