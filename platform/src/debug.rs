//! A guest's self-hosted debug exceptions, as bare metal would raise them,
//! when EL2 has taken the debug target away from it.
//!
//! The backdoor needs `MDCR_EL2.TDE`, which makes EL2 the target of every
//! debug exception from EL1 and EL0. Debug exceptions are always enabled
//! from an EL below their target, so with `TDE` the hardware raises them
//! at EL1 whatever the guest kernel's own masks say (`MDSCR_EL1.KDE`,
//! `PSTATE.D`). Bare metal, where EL1 is the target, raises a breakpoint,
//! watchpoint or software step exception at EL1 only when `KDE` is 1 and
//! `PSTATE.D` is 0 (Arm ARM D2, "Enabling debug exceptions from the current
//! Exception level"). From EL0 the two agree: EL0 is below either target.
//!
//! [`decide`] says, for each debug exception that reaches EL2, what bare
//! metal would have done, as one of three [`Verdict`]s:
//!
//! - [`Verdict::Reflect`]: bare metal raises it too: deliver it to the
//!   guest's EL1 vector, with the class EL1 would have seen.
//! - [`Verdict::StepThrough`]: a software step exception bare metal would
//!   not raise. It comes from the window in which an OS has armed stepping
//!   for a task (`MDSCR_EL1.SS` = 1) but is still at EL1 on its way to the
//!   `ERET` that enters the task: with `TDE` the step machine is active at
//!   EL1 too, and its exception is pending before every EL1 instruction.
//!   The hypervisor lets the guest execute exactly one instruction (return
//!   with `SPSR_EL2.SS` = 1) and looks again. The stepped `ERET` sets
//!   `PSTATE.SS` from the guest's own `SPSR_EL1.SS`, so the first user
//!   instruction is stepped as bare metal would step it, and its step
//!   exception, from EL0, is reflected.
//! - [`Verdict::StepOver`]: a breakpoint or watchpoint hit at EL1 that bare
//!   metal would not raise. The instruction must simply execute. The
//!   hypervisor turns the guest's breakpoints and watchpoints off
//!   (`MDSCR_EL1.MDE` = 0), single-steps that one instruction with its own
//!   step, and puts the guest's `MDSCR_EL1` back at the step exception that
//!   follows ([`Verdict::StepOverDone`] is that exception).
//!
//! Stepping clears the exclusive monitor (the step exception is taken
//! between every two instructions), so a load-exclusive/store-exclusive
//! loop can never complete one instruction at a time. The step exception
//! says when the instruction it stepped was a load-exclusive (`ISS.EX`),
//! and then [`Verdict::Suspend`] (or [`Verdict::EndStepOver`] with
//! `suspend`) turns the guest's stepping and breakpoints off until the
//! vCPU's next exit of any kind (at the latest the hypervisor's next tick),
//! so the loop runs natively. An OS has no exclusives between arming a
//! step and its `ERET` (Linux has none), so this costs a stepping OS
//! nothing; code that has them is not single-stepped through them, as on
//! bare metal where nothing steps EL1 at all.
//!
//! The OS lock and the OS double lock disable these exceptions on bare
//! metal and under `TDE` alike (the hardware sees the guest's locks), as
//! `MDSCR_EL1.MDE` = 0 disables breakpoints and watchpoints and `SS` = 0
//! stepping: an exception that arrives anyway is not the guest's, and it is
//! stepped through or over like the masked ones. Both verdicts always let
//! the guest execute its next instruction, so no combination of guest
//! state can make a vCPU trap on one instruction for ever.
//!
//! `BRK` and the AArch32 `BKPT` are not maskable: they are always
//! reflected. The EL2 side is `el2/src/traps/debug.rs`.

use crate::esr::{Esr, ExceptionClass, Origin};

/// `MDSCR_EL1.SS`: software step enable.
pub const MDSCR_SS: u64 = 1 << 0;
/// `MDSCR_EL1.KDE`: debug exceptions enabled at the debug target EL.
pub const MDSCR_KDE: u64 = 1 << 13;
/// `MDSCR_EL1.MDE`: breakpoint and watchpoint exceptions enabled.
pub const MDSCR_MDE: u64 = 1 << 15;
/// `SPSR_ELx.SS` (bit 21): the software step state of the interrupted
/// context (1: active-not-pending, one instruction may execute).
pub const SPSR_SS: u64 = 1 << 21;
/// `SPSR_ELx.D` (bit 9): debug exceptions masked.
pub const SPSR_D: u64 = 1 << 9;
/// `OSLSR_EL1.OSLK` (bit 1): the OS lock is locked.
pub const OSLSR_OSLK: u64 = 1 << 1;
/// `OSDLR_EL1.DLK` (bit 0): the OS double lock is locked.
pub const OSDLR_DLK: u64 = 1 << 0;

/// The guest's debug state that decides whether bare metal raises a debug
/// exception: its registers as the guest set them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestDebug {
    /// `MDSCR_EL1`.
    pub mdscr: u64,
    /// `OSLSR_EL1`.
    pub oslsr: u64,
    /// `OSDLR_EL1`.
    pub osdlr: u64,
}

impl GuestDebug {
    fn locked(&self) -> bool {
        self.oslsr & OSLSR_OSLK != 0 || self.osdlr & OSDLR_DLK != 0
    }

    /// Whether bare metal, with EL1 the debug target, would take
    /// breakpoint, watchpoint and step exceptions *from EL1* with
    /// `PSTATE.D` as `spsr` says.
    pub fn enabled_at_el1(&self, spsr: u64) -> bool {
        self.mdscr & MDSCR_KDE != 0 && spsr & SPSR_D == 0 && !self.locked()
    }

    /// Whether bare metal would raise a breakpoint, watchpoint or software
    /// step exception (`kind`) taken from `from` with `SPSR` `spsr`.
    fn raises(&self, kind: Kind, from: TakenFrom, spsr: u64) -> bool {
        let armed = match kind {
            Kind::SoftwareStep => self.mdscr & MDSCR_SS != 0,
            Kind::Breakpoint | Kind::Watchpoint => self.mdscr & MDSCR_MDE != 0,
            Kind::Brk | Kind::Bkpt32 | Kind::VectorCatch => true,
        };
        let enabled = match from {
            TakenFrom::El0 => !self.locked(),
            TakenFrom::El1 => self.enabled_at_el1(spsr),
        };
        armed && enabled
    }
}

/// Which debug exception reached EL2, from its syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Breakpoint,
    SoftwareStep,
    Watchpoint,
    /// `BRK` (its immediate is not the backdoor's).
    Brk,
    /// AArch32 `BKPT`, from EL0 in AArch32 state.
    Bkpt32,
    /// AArch32 vector catch (EL1 in AArch32 state only).
    VectorCatch,
}

impl Kind {
    /// The debug exception an EC names; `None` for any other class.
    pub fn of(class: ExceptionClass) -> Option<Self> {
        Some(match class {
            ExceptionClass::BreakpointLower | ExceptionClass::BreakpointSame => Self::Breakpoint,
            ExceptionClass::SoftwareStepLower | ExceptionClass::SoftwareStepSame => Self::SoftwareStep,
            ExceptionClass::WatchpointLower | ExceptionClass::WatchpointSame => Self::Watchpoint,
            ExceptionClass::Brk64 => Self::Brk,
            ExceptionClass::Bkpt32 => Self::Bkpt32,
            ExceptionClass::VectorCatch => Self::VectorCatch,
            _ => return None,
        })
    }
}

/// Where the guest was when the exception was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakenFrom {
    El0,
    El1,
}

/// What to do with a debug exception that reached EL2 (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it to the guest's EL1 vector with this syndrome.
    Reflect(Esr),
    /// Bare metal raises no step exception here: let one instruction run.
    StepThrough,
    /// Bare metal raises no breakpoint or watchpoint exception here: run
    /// the instruction with the guest's breakpoints off, stepping it.
    StepOver,
    /// The step exception that ends a [`Verdict::StepOver`]: put the
    /// guest's `MDSCR_EL1` back and resume; with `suspend`, the stepped
    /// instruction was a load-exclusive: keep the guest's breakpoints and
    /// step off until the vCPU's next exit instead (see the module doc).
    EndStepOver { suspend: bool },
    /// A step through EL1 just stepped a load-exclusive: stop stepping the
    /// guest until its next exit (see the module doc).
    Suspend,
}

/// Software step ISS: `ISV` (bit 24), the `EX` bit is valid.
const STEP_ISS_ISV: u64 = 1 << 24;
/// Software step ISS: `EX` (bit 6), the stepped instruction was a
/// load-exclusive.
const STEP_ISS_EX: u64 = 1 << 6;

/// Whether a software step syndrome says it stepped a load-exclusive.
pub fn stepped_exclusive(esr: Esr) -> bool {
    esr.iss() & (STEP_ISS_ISV | STEP_ISS_EX) == STEP_ISS_ISV | STEP_ISS_EX
}

/// `MDSCR_EL1` while the guest's stepping and breakpoints are suspended
/// (after a load-exclusive was stepped).
pub fn suspended_mdscr(guest_mdscr: u64) -> u64 {
    guest_mdscr & !(MDSCR_MDE | MDSCR_SS)
}

/// Decides, for the debug exception `esr` taken from `from` with
/// `SPSR_EL2` `spsr`, given the guest's debug state `guest`; `stepping_over`
/// says whether EL2 is in the middle of a [`Verdict::StepOver`] on this
/// vCPU. `None` if `esr` is not a debug exception.
pub fn decide(esr: Esr, from: TakenFrom, spsr: u64, guest: GuestDebug, stepping_over: bool) -> Option<Verdict> {
    let kind = Kind::of(esr.class())?;
    if stepping_over && kind == Kind::SoftwareStep {
        return Some(Verdict::EndStepOver { suspend: stepped_exclusive(esr) });
    }
    // As EL1 would see it: from EL0 the "lower EL" class, from EL1 itself
    // the "same EL" one.
    let origin = match from {
        TakenFrom::El0 => Origin::LowerEl,
        TakenFrom::El1 => Origin::SameEl,
    };
    let reflect = Verdict::Reflect(esr.with_origin(origin));
    Some(match kind {
        Kind::Brk | Kind::Bkpt32 => reflect,
        // AArch32 EL1 only: this guest's EL1 is AArch64, so the hardware
        // never raises it; if it ever did, the guest gets what it sees.
        Kind::VectorCatch => reflect,
        Kind::SoftwareStep if guest.raises(kind, from, spsr) => reflect,
        Kind::Breakpoint | Kind::Watchpoint if guest.raises(kind, from, spsr) => reflect,
        Kind::SoftwareStep if stepped_exclusive(esr) => Verdict::Suspend,
        Kind::SoftwareStep => Verdict::StepThrough,
        Kind::Breakpoint | Kind::Watchpoint => Verdict::StepOver,
    })
}

/// The software step exception that completes EL2's step of one guest EL1
/// instruction ([`Verdict::StepThrough`]), when that instruction was an
/// `ERET` to EL0: `Some(spsr)` to resume EL0 with, `None` if this is not
/// that case (decide as usual).
///
/// Implementations differ here. On one, the `ERET` sets `PSTATE.SS` from
/// the guest's `SPSR_EL1.SS`, EL0 runs an instruction, and the exception
/// that follows is the guest's own step. On another (QEMU), the step of
/// the `ERET` itself completes at once: the exception is taken from EL0
/// before any EL0 instruction, with ELR at the `ERET`'s target. That one
/// is EL2's, not the guest's: EL0 resumes with `PSTATE.SS` as the guest's
/// `ERET` would have set it, and its first instruction is then stepped as
/// bare metal steps it. The two are told apart by ELR: still the
/// `ERET`'s target (the guest's `ELR_EL1`) means no EL0 instruction ran.
pub fn eret_step_completion(
    from: TakenFrom,
    elr: u64,
    spsr: u64,
    guest_elr_el1: u64,
    guest_spsr_el1: u64,
) -> Option<u64> {
    (from == TakenFrom::El0 && elr == guest_elr_el1).then_some((spsr & !SPSR_SS) | (guest_spsr_el1 & SPSR_SS))
}

/// `MDSCR_EL1` while EL2 steps over one instruction for the guest: its
/// breakpoints and watchpoints off, the step on.
pub fn step_over_mdscr(guest_mdscr: u64) -> u64 {
    (guest_mdscr & !MDSCR_MDE) | MDSCR_SS
}

/// `SPSR_EL2` for a return that executes exactly one instruction and then
/// takes a software step exception to EL2.
pub fn step_one(spsr: u64) -> u64 {
    spsr | SPSR_SS
}

/// `SPSR_EL2` after EL2 has completed the trapped instruction itself (an
/// emulated register access, a hypercall): as after the instruction ran
/// natively, a step that was active-not-pending is now pending, so a
/// stepping debugger sees the step exception right after it.
pub fn completed(spsr: u64) -> u64 {
    spsr & !SPSR_SS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esr::ExceptionClass as C;

    /// A syndrome of `class` with IL set and an arbitrary ISS.
    fn esr(class: C) -> Esr {
        Esr::new(class, true, 0x22)
    }

    const KDE: u64 = MDSCR_KDE;
    const MDE: u64 = MDSCR_MDE;
    const SS: u64 = MDSCR_SS;

    fn guest(mdscr: u64) -> GuestDebug {
        GuestDebug { mdscr, oslsr: 0, osdlr: 0 }
    }

    /// Every class, from EL0 and from EL1, with the guest's masks on and off:
    /// the verdict bare metal implies.
    #[test]
    fn every_class_from_each_el_with_masks_on_and_off() {
        // (class, from, MDSCR, SPSR.D, expected)
        use TakenFrom::*;
        use Verdict::*;
        let same = |c: C| Reflect(esr(c).with_origin(Origin::SameEl));
        let lower = |c: C| Reflect(esr(c).with_origin(Origin::LowerEl));
        let cases: &[(C, TakenFrom, u64, bool, Verdict)] = &[
            // Breakpoints: from EL0 whenever MDE is set; from EL1 only with
            // KDE and D clear.
            (C::BreakpointLower, El0, MDE, false, lower(C::BreakpointLower)),
            (C::BreakpointLower, El0, MDE, true, lower(C::BreakpointLower)),
            (C::BreakpointLower, El0, 0, false, StepOver),
            (C::BreakpointLower, El1, MDE | KDE, false, same(C::BreakpointSame)),
            (C::BreakpointLower, El1, MDE | KDE, true, StepOver),
            (C::BreakpointLower, El1, MDE, false, StepOver),
            (C::BreakpointLower, El1, 0, false, StepOver),
            // Watchpoints: the same rules.
            (C::WatchpointLower, El0, MDE, true, lower(C::WatchpointLower)),
            (C::WatchpointLower, El1, MDE | KDE, false, same(C::WatchpointSame)),
            (C::WatchpointLower, El1, MDE, false, StepOver),
            (C::WatchpointLower, El1, MDE | KDE, true, StepOver),
            (C::WatchpointLower, El0, KDE, false, StepOver),
            // Software step: needs SS, not MDE.
            (C::SoftwareStepLower, El0, SS, false, lower(C::SoftwareStepLower)),
            (C::SoftwareStepLower, El0, SS, true, lower(C::SoftwareStepLower)),
            (C::SoftwareStepLower, El1, SS | KDE, false, same(C::SoftwareStepSame)),
            (C::SoftwareStepLower, El1, SS, false, StepThrough),
            (C::SoftwareStepLower, El1, SS | KDE, true, StepThrough),
            (C::SoftwareStepLower, El1, 0, false, StepThrough),
            (C::SoftwareStepLower, El0, MDE | KDE, false, StepThrough),
            // BRK and BKPT: never masked.
            (C::Brk64, El0, 0, true, Reflect(esr(C::Brk64))),
            (C::Brk64, El1, 0, true, Reflect(esr(C::Brk64))),
            (C::Bkpt32, El0, 0, true, Reflect(esr(C::Bkpt32))),
            (C::VectorCatch, El1, 0, true, Reflect(esr(C::VectorCatch))),
        ];
        for &(class, from, mdscr, d, expected) in cases {
            let spsr = if d { SPSR_D } else { 0 };
            let got = decide(esr(class), from, spsr, guest(mdscr), false);
            assert_eq!(got, Some(expected), "{class:?} from {from:?}, MDSCR {mdscr:#x}, D {d}");
        }
    }

    #[test]
    fn the_os_lock_and_double_lock_mask_all_but_brk() {
        for (oslsr, osdlr) in [(OSLSR_OSLK, 0), (0, OSDLR_DLK)] {
            let locked = GuestDebug { mdscr: MDE | KDE | SS, oslsr, osdlr };
            for (class, verdict) in [
                (C::BreakpointLower, Verdict::StepOver),
                (C::WatchpointLower, Verdict::StepOver),
                (C::SoftwareStepLower, Verdict::StepThrough),
            ] {
                for from in [TakenFrom::El0, TakenFrom::El1] {
                    assert_eq!(decide(esr(class), from, 0, locked, false), Some(verdict), "{class:?} {from:?}");
                }
            }
            let brk = decide(esr(C::Brk64), TakenFrom::El0, 0, locked, false);
            assert_eq!(brk, Some(Verdict::Reflect(esr(C::Brk64))));
            assert!(!locked.enabled_at_el1(0));
        }
    }

    #[test]
    fn a_step_during_a_step_over_ends_it() {
        for from in [TakenFrom::El0, TakenFrom::El1] {
            let got = decide(esr(C::SoftwareStepLower), from, SPSR_D, guest(0), true);
            assert_eq!(got, Some(Verdict::EndStepOver { suspend: false }));
            let exclusive = Esr::new(C::SoftwareStepLower, true, STEP_ISS_ISV | STEP_ISS_EX | 0x22);
            let got = decide(exclusive, from, SPSR_D, guest(0), true);
            assert_eq!(got, Some(Verdict::EndStepOver { suspend: true }));
        }
        // Any other exception meanwhile is decided as usual.
        let bp = decide(esr(C::BreakpointLower), TakenFrom::El0, 0, guest(MDE), true);
        assert_eq!(bp, Some(Verdict::Reflect(esr(C::BreakpointLower))));
    }

    /// A step through EL1 that stepped a load-exclusive suspends; EX
    /// without ISV means nothing; a genuine step (from EL0) is reflected
    /// whatever it stepped.
    #[test]
    fn a_stepped_load_exclusive_suspends_the_step_through() {
        let step = |iss| Esr::new(C::SoftwareStepLower, true, iss | 0x22);
        let decide_el1 = |iss| decide(step(iss), TakenFrom::El1, 0, guest(SS), false);
        assert_eq!(decide_el1(STEP_ISS_ISV | STEP_ISS_EX), Some(Verdict::Suspend));
        assert_eq!(decide_el1(STEP_ISS_ISV), Some(Verdict::StepThrough));
        assert_eq!(decide_el1(STEP_ISS_EX), Some(Verdict::StepThrough));
        let from_el0 = decide(step(STEP_ISS_ISV | STEP_ISS_EX), TakenFrom::El0, 0, guest(SS), false);
        assert!(matches!(from_el0, Some(Verdict::Reflect(_))));
        assert_eq!(suspended_mdscr(MDE | KDE | SS), KDE);
    }

    #[test]
    fn an_eret_stepped_by_el2_resumes_el0_with_the_guests_step_state() {
        let (target, spsr) = (0x4000_1000, 0x3c0);
        // Taken from EL0 at the ERET's target: EL2's own step completing.
        assert_eq!(eret_step_completion(TakenFrom::El0, target, spsr, target, SPSR_SS), Some(spsr | SPSR_SS));
        assert_eq!(eret_step_completion(TakenFrom::El0, target, spsr | SPSR_SS, target, 0), Some(spsr));
        // EL0 ran an instruction already: the guest's own step.
        assert_eq!(eret_step_completion(TakenFrom::El0, target + 4, spsr, target, SPSR_SS), None);
        // Still at EL1: an ordinary step through.
        assert_eq!(eret_step_completion(TakenFrom::El1, target, spsr, target, SPSR_SS), None);
    }

    #[test]
    fn other_classes_are_not_debug_exceptions() {
        for class in [C::DataAbortLower, C::Svc64, C::Hvc64, C::SysReg, C::Unknown, C::Other(0x3b)] {
            assert_eq!(decide(esr(class), TakenFrom::El1, 0, guest(MDE | KDE | SS), false), None, "{class:?}");
        }
    }

    #[test]
    fn step_state_helpers() {
        assert_eq!(step_over_mdscr(MDE | KDE), KDE | SS);
        assert_eq!(step_over_mdscr(MDE | SS), SS);
        assert_eq!(step_one(0x3c5), 0x3c5 | SPSR_SS);
        assert_eq!(completed(0x3c5 | SPSR_SS), 0x3c5);
        assert_eq!(completed(0x3c5), 0x3c5);
    }

    /// The ESR class stays the hardware's own pairing: the lower-EL member
    /// for an exception from EL0, the same-EL member from EL1, with the
    /// rest of the syndrome unchanged.
    #[test]
    fn reflected_syndromes_keep_their_iss() {
        let raw = Esr::new(C::WatchpointLower, true, 0x40);
        let Some(Verdict::Reflect(out)) = decide(raw, TakenFrom::El1, 0, guest(MDE | KDE), false) else { panic!() };
        assert_eq!(out.class(), C::WatchpointSame);
        assert_eq!(out.iss(), raw.iss());
    }
}
