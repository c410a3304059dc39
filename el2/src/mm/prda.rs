//! The per-CPU private data area (PRDA): each CPU's own page, seen at
//! one fixed virtual address.
//!
//! Every CPU has its own root translation table, a copy of the kernel's that
//! shares all of it except the path to [`layout::prda_va`], where each maps
//! its own page of [`PAGES`]. So the same address names "this CPU's data"
//! on every CPU: an address taken before a migration still reaches the
//! area of the CPU the code runs on afterwards. Code that must stay on one
//! CPU while it uses the area runs inside [`with`], which masks interrupts
//! (the only way EL2 code can be preempted).

use crate::arch::layout;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use platform::board::MAX_CPUS;

/// One CPU's private area. Its fields are atomics so that a reference to it
/// is always sound to share; only its own CPU writes them.
#[repr(C, align(4096))]
pub struct Prda {
    /// The CPU's slot (0 = boot CPU), written once in stage 1.
    pub slot: AtomicU64,
    /// The CPU's affinity.
    pub mpidr: AtomicU64,
    /// The VM this CPU runs a vCPU of, and that vCPU: the addresses of
    /// the `crate::vm::Vm` and `crate::vm::Vcpu` objects (0 = none), which
    /// live for the whole run. Read on every exit ([`running`]).
    pub running_vm: AtomicU64,
    pub running_vcpu: AtomicU64,
    /// 1 while this CPU runs the EL0 service ([`crate::traps::el0`]).
    pub el0_active: AtomicU64,
    /// While EL2 holds the hardware's `MDSCR_EL1` for the vCPU
    /// ([`crate::traps::debug`]: a step-over, or stepping suspended until the
    /// next exit): the guest's own value. [`NO_STEP_OVER`] otherwise.
    pub step_over_mdscr: AtomicU64,
    /// Whether that hold ends at the vCPU's next exit (1) or at its next
    /// software step exception (0).
    pub debug_suspended: AtomicU64,
    /// 1 while EL2 steps one guest instruction through (its step
    /// exception is EL2's, not the guest's).
    pub el2_step: AtomicU64,
    /// EL2's callee-saved registers and SP while the EL0 service runs
    /// (layout shared with el0.S).
    pub el0_save: [AtomicU64; EL0_SAVE_WORDS],
    /// Guest exits this CPU took, by cause ([`count_exit`]).
    pub exits: [AtomicU64; EXIT_KINDS],
    /// Its GIC CPU interface is set up and its kick SGI enabled, so a kick
    /// wakes it from `WFI` (`crate::irq`).
    pub interrupts_up: AtomicBool,
    /// Its mailbox (`crate::vm::cpus`): a request another CPU posted, and
    /// this CPU's answer to a PRDA check.
    pub mailbox_request: AtomicU8,
    pub mailbox_answer: AtomicU8,
    /// The tick, the lockup watchdog and the crash stop (`crate::irq::pnmi`).
    pub pnmi: PnmiArea,
    /// The vCPU scheduler's per-CPU state (`crate::vm::sched`).
    pub sched: SchedArea,
}

/// What the scheduler keeps per CPU: its run queue (other CPUs push onto
/// it when they wake or move a vCPU here), whether the vCPU it runs must
/// be looked at again on its way back to the guest, and the current
/// slice.
pub struct SchedArea {
    pub queue: spin::Mutex<platform::sched::RunQueue>,
    /// Set when the running vCPU may have to give way (its slice ended, a
    /// vCPU was queued here, it blocked): looked at on every return to
    /// the guest.
    pub resched: AtomicBool,
    /// When the running vCPU's slice ends (counter), or `u64::MAX` while
    /// nobody waits for the CPU.
    pub slice_end: AtomicU64,
    /// When the running vCPU was last charged for its time (counter).
    pub since: AtomicU64,
    /// Switches at a slice's end: how many, the total and the least
    /// counter ticks from the timer's deadline to the next vCPU's return.
    pub timed_switches: AtomicU64,
    pub timed_switch_ticks: AtomicU64,
    pub timed_switch_min: AtomicU64,
}

/// What the pseudo-NMI code keeps per CPU (`crate::irq::pnmi`), read by
/// other CPUs too (a lockup report, a stopped CPU's state).
pub struct PnmiArea {
    /// PNMI ticks taken; the tick count the regular half last saw.
    pub ticks: AtomicU64,
    pub ticks_seen: AtomicU64,
    /// When the next tick is due, and the scheduler's next deadline on
    /// this CPU (`u64::MAX`: none): the EL2 timer is set for the earlier.
    pub next_tick: AtomicU64,
    pub event: AtomicU64,
    /// Lockups reported; the tick count at the last report (no second
    /// report for one stall); the count when the current vCPU started.
    pub lockups: AtomicU64,
    pub lockup_tick: AtomicU64,
    pub lockups_at_start: AtomicU64,
    /// Where the last lockup was (ELR, SPSR of what the PNMI interrupted),
    /// the CPU interface's state then, and whether that report still waits
    /// to be printed.
    pub lockup_elr: AtomicU64,
    pub lockup_spsr: AtomicU64,
    pub lockup_gic: AtomicU64,
    pub lockup_unprinted: AtomicBool,
    /// Cross-CPU PNMI requests to this CPU, one bit each.
    pub requests: AtomicU8,
    /// Once it has parked after a crash stop: where it was.
    pub stopped: AtomicBool,
    pub stopped_elr: AtomicU64,
    pub stopped_spsr: AtomicU64,
    /// The preemption experiment (`HV_PNMI_TEST`).
    pub experiment: Experiment,
}

/// The preemption experiment's state on one CPU: the sequence counter,
/// what happened when, and the stage the regular handler is in.
pub struct Experiment {
    pub seq: AtomicU64,
    pub regular_entry: AtomicU64,
    pub pnmi: AtomicU64,
    pub regular_exit: AtomicU64,
    pub second_regular: AtomicU64,
    pub pnmi_rpr: AtomicU64,
    pub regular_rpr: AtomicU64,
    /// The cycle counter when the PNMI was raised, and its latency.
    pub pnmi_sent: AtomicU64,
    pub pnmi_latency: AtomicU64,
    /// 1: the next SGI_TEST is the first; 2: the second; 0: none expected.
    pub stage: AtomicU8,
}

impl Experiment {
    /// Records the next sequence number in `event`.
    pub fn stamp(&self, event: &AtomicU64) {
        event.store(self.seq.fetch_add(1, Ordering::AcqRel) + 1, Ordering::Release);
    }
}

/// Exit causes counted: one per exception class (`ESR_ELx.EC`, six bits),
/// and [`EXIT_IRQ`] for physical interrupts taken while a guest ran.
pub const EXIT_KINDS: usize = 65;
pub const EXIT_IRQ: usize = 64;

/// `Prda::step_over_mdscr` when no step-over is in progress (`MDSCR_EL1`
/// has RES0 bits, so no value of it is all ones).
pub const NO_STEP_OVER: u64 = u64::MAX;

/// x19..x30 and SP.
const EL0_SAVE_WORDS: usize = 13;

/// The backing pages, one per CPU slot (also reachable, as ordinary .bss,
/// through the image mapping).
pub static PAGES: [Prda; MAX_CPUS] = [const {
    Prda {
        slot: AtomicU64::new(0),
        mpidr: AtomicU64::new(0),
        running_vm: AtomicU64::new(0),
        running_vcpu: AtomicU64::new(0),
        el0_active: AtomicU64::new(0),
        step_over_mdscr: AtomicU64::new(NO_STEP_OVER),
        debug_suspended: AtomicU64::new(0),
        el2_step: AtomicU64::new(0),
        el0_save: [const { AtomicU64::new(0) }; EL0_SAVE_WORDS],
        exits: [const { AtomicU64::new(0) }; EXIT_KINDS],
        interrupts_up: AtomicBool::new(false),
        mailbox_request: AtomicU8::new(0),
        mailbox_answer: AtomicU8::new(0),
        pnmi: PnmiArea {
            ticks: AtomicU64::new(0),
            ticks_seen: AtomicU64::new(0),
            next_tick: AtomicU64::new(0),
            event: AtomicU64::new(u64::MAX),
            lockups: AtomicU64::new(0),
            lockup_tick: AtomicU64::new(0),
            lockups_at_start: AtomicU64::new(0),
            lockup_elr: AtomicU64::new(0),
            lockup_spsr: AtomicU64::new(0),
            lockup_gic: AtomicU64::new(0),
            lockup_unprinted: AtomicBool::new(false),
            requests: AtomicU8::new(0),
            stopped: AtomicBool::new(false),
            stopped_elr: AtomicU64::new(0),
            stopped_spsr: AtomicU64::new(0),
            experiment: Experiment {
                seq: AtomicU64::new(0),
                regular_entry: AtomicU64::new(0),
                pnmi: AtomicU64::new(0),
                regular_exit: AtomicU64::new(0),
                second_regular: AtomicU64::new(0),
                pnmi_rpr: AtomicU64::new(0),
                regular_rpr: AtomicU64::new(0),
                pnmi_sent: AtomicU64::new(0),
                pnmi_latency: AtomicU64::new(0),
                stage: AtomicU8::new(0),
            },
        },
        sched: SchedArea {
            queue: spin::Mutex::new(platform::sched::RunQueue::new()),
            resched: AtomicBool::new(false),
            slice_end: AtomicU64::new(u64::MAX),
            since: AtomicU64::new(0),
            timed_switches: AtomicU64::new(0),
            timed_switch_ticks: AtomicU64::new(0),
            timed_switch_min: AtomicU64::new(u64::MAX),
        },
    }
}; MAX_CPUS];

// The area is one page at the fixed VA: everything must fit in it.
const _: () = assert!(core::mem::size_of::<Prda>() == 4096);

/// Stage 1: records each slot's identity in its page.
pub fn init(slots: &[u64]) {
    for (slot, (page, &mpidr)) in PAGES.iter().zip(slots).enumerate() {
        page.slot.store(slot as u64, Ordering::Relaxed);
        page.mpidr.store(mpidr, Ordering::Relaxed);
    }
}

/// The area of the CPU in `slot`, for another CPU (through the image
/// mapping of [`PAGES`], not the fixed VA, which is always the caller's).
pub fn of(slot: usize) -> Option<&'static Prda> {
    PAGES.get(slot)
}

/// The physical address of slot `slot`'s page (stage 1, MMU off).
pub fn page_pa(slot: usize) -> Option<u64> {
    PAGES.get(slot).map(|p| p as *const Prda as u64)
}

/// Each CPU, first thing at its VA: keeps the area's fixed VA (which
/// depends on the translation scheme) in `TPIDR_EL2`, the register EL2
/// software may use as it likes, so that reaching the area costs one
/// register read on every exit. The VA is the same on every CPU; the page
/// behind it is not.
pub fn init_this_cpu() {
    aarch64_cpu::registers::Writeable::set(&aarch64_cpu::registers::TPIDR_EL2, layout::prda_va());
}

/// This CPU's area, through the fixed VA.
#[inline]
fn this_cpu() -> &'static Prda {
    let va = aarch64_cpu::registers::Readable::get(&aarch64_cpu::registers::TPIDR_EL2);
    // SAFETY: `init_this_cpu` put the fixed VA in TPIDR_EL2 before any
    // use; after the switch every CPU's root maps a `Prda` page there
    // (readable and writable, never unmapped); its fields are atomics, so
    // shared references are sound.
    unsafe { &*(va as *const Prda) }
}

/// This CPU's scheduler state. EL2 code runs to its end on the CPU that
/// took the exception (each CPU has its own stack, and nothing moves EL2
/// work between CPUs), so the reference stays this CPU's; it must not be
/// handed to another CPU (use [`of`] there).
#[inline]
pub fn sched() -> &'static SchedArea {
    &this_cpu().sched
}

/// Runs `f` on this CPU's area with interrupts masked, so the code cannot be
/// moved to another CPU while it holds the area.
pub fn with<R>(f: impl FnOnce(&Prda) -> R) -> R {
    let daif: u64;
    // SAFETY: saving DAIF and masking IRQ and FIQ changes no memory.
    unsafe { core::arch::asm!("mrs {}, daif", "msr daifset, #3", out(reg) daif, options(nomem, nostack)) };
    let result = f(this_cpu());
    // SAFETY: restores the mask saved above.
    unsafe { core::arch::asm!("msr daif, {}", in(reg) daif, options(nomem, nostack)) };
    result
}

/// This CPU's EL0 save area, at the fixed VA (for el0.S).
pub fn el0_save_area() -> *const u64 {
    (layout::prda_va() + core::mem::offset_of!(Prda, el0_save) as u64) as *const u64
}

pub fn set_el0_active(active: bool) {
    with(|prda| prda.el0_active.store(u64::from(active), Ordering::Relaxed));
}

/// The guest's `MDSCR_EL1` while EL2 holds the hardware's on this CPU, and
/// whether the hold ends at the next exit. Read on every exit: plain loads
/// of this CPU's own area (only this CPU writes them, and EL2 code does not
/// move between CPUs), without [`with`]'s masking.
pub fn debug_hold() -> Option<(u64, bool)> {
    let prda = this_cpu();
    let saved = prda.step_over_mdscr.load(Ordering::Relaxed);
    (saved != NO_STEP_OVER).then(|| (saved, prda.debug_suspended.load(Ordering::Relaxed) != 0))
}

/// Starts (`Some`: the guest's value, and whether the hold ends at the next
/// exit) or ends (`None`) EL2's hold of `MDSCR_EL1` on this CPU.
pub fn set_debug_hold(hold: Option<(u64, bool)>) {
    with(|prda| {
        let (saved, suspended) = hold.unwrap_or((NO_STEP_OVER, false));
        prda.step_over_mdscr.store(saved, Ordering::Relaxed);
        prda.debug_suspended.store(u64::from(suspended), Ordering::Relaxed);
    })
}

/// Whether EL2 steps the vCPU through one instruction ([`swap_el2_step`]).
pub fn el2_stepping() -> bool {
    with(|prda| prda.el2_step.load(Ordering::Relaxed) != 0)
}

/// Marks (or clears) a step of one guest instruction by EL2 on this CPU;
/// returns whether one was marked before.
pub fn swap_el2_step(stepping: bool) -> bool {
    with(|prda| prda.el2_step.swap(u64::from(stepping), Ordering::Relaxed) != 0)
}

/// Counts a guest exit of cause `kind` on this CPU: a load and a store
/// (only this CPU writes its counters, and an exit is not interrupted by
/// another guest exit), on every exit's path.
#[inline]
pub fn count_exit(kind: usize) {
    if let Some(counter) = this_cpu().exits.get(kind) {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// Guest exits of cause `kind`, all CPUs.
pub fn exits(kind: usize) -> u64 {
    PAGES.iter().filter_map(|page| page.exits.get(kind)).map(|c| c.load(Ordering::Relaxed)).sum()
}

/// Whether this CPU runs the EL0 service. On every exit's path: a plain
/// load of this CPU's own area.
#[inline]
pub fn el0_active() -> bool {
    this_cpu().el0_active.load(Ordering::Relaxed) != 0
}

/// The addresses of the VM and vCPU this CPU runs (`crate::vm::current`
/// makes them references), if any. On every exit's path: plain loads of
/// this CPU's own area, which only this CPU writes.
#[inline]
pub fn running() -> Option<(u64, u64)> {
    let prda = this_cpu();
    let vm = prda.running_vm.load(Ordering::Relaxed);
    (vm != 0).then(|| (vm, prda.running_vcpu.load(Ordering::Relaxed)))
}

/// Records which VM and vCPU (their addresses) this CPU runs from now on.
pub fn set_running(running: Option<(u64, u64)>) {
    with(|prda| {
        let (vm, vcpu) = running.unwrap_or((0, 0));
        prda.running_vcpu.store(vcpu, Ordering::Relaxed);
        prda.running_vm.store(vm, Ordering::Relaxed);
    })
}

/// This CPU's slot. Safe from any context, a PNMI handler's included: the
/// area is this CPU's whatever interrupted whom, and the read is one atomic
/// load.
pub fn slot() -> usize {
    this_cpu().slot.load(Ordering::Relaxed) as usize
}
