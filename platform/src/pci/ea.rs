//! The monitor's direct path to the config space: a lower EL's load or
//! store in the ECAM window that the bus answers with a synchronous external
//! abort, routed to EL3 by `SCR_EL3.EA`, served with the same model as the
//! DEN0115 `PCI_READ`/`PCI_WRITE` calls, or reflected to the EL that would
//! have taken the abort without `SCR_EL3.EA`.
//!
//! # Why it exists
//!
//! Where hardware routes the abort to EL3, EL3 serves it directly. No
//! hypervisor exit, no SMC: the access completes as if the window were a
//! real ECAM. QEMU takes such an abort at the faulting EL whatever
//! `SCR_EL3.EA` says (measured), so nothing on QEMU reaches this code; the host tests here are what checks it. On QEMU EL2 leaves its
//! ECAM window unmapped in stage 2 and forwards the trapped access over SMC
//! instead (`el2/src/vm/ecam.rs`); both paths end in one
//! [`ConfigSpace`](super::ConfigSpace).
//!
//! # What it owns
//!
//! Pure logic; the monitor (`el3-monitor/src/ea.rs`) only reads and writes
//! the registers named here.
//!
//! 1. [`Translation::for_fault`]: `ESR_EL3` and `FAR_EL3` give the syndrome
//!    and the *virtual* address; the PA comes from an `AT` instruction in
//!    the faulting regime, chosen here, and [`fault_pa`] reads its `PAR_EL1`.
//! 2. [`decode`]: syndrome + PA + window + the saved registers → an
//!    [`EcamAccess`] (a DEN0115 [`PciCall`] plus the register side of the
//!    load or store), or an [`EaError`] saying why not.
//! 3. [`EcamAccess::complete`]: the call's reply into `Xt`/`Wt` (zero- or
//!    sign-extended per SSE and SF; `xzr` discards), `ELR` past the
//!    instruction. [`complete_unsupported`] does the same for an access in
//!    the window PCI cannot express (8 bytes, misaligned): all-ones, as the
//!    EL2 path answers it, so a guest cannot tell the paths apart.
//! 4. [`reflect`]: for every other abort, what the monitor writes so the
//!    lower EL takes the abort as if `SCR_EL3.EA` were 0 (TF-A's way with
//!    external aborts it does not handle): target EL, its `ESR`, `FAR`,
//!    `ELR`, `SPSR`, the vector and the `PSTATE` to enter it with.
//!
//! # The translation
//!
//! A data abort taken to EL3 reports no IPA or PA (`HPFAR_EL2` is written
//! only for exceptions taken to EL2), so the monitor translates `FAR_EL3`
//! again, with the lower EL's translation registers still live:
//!
//! | faulting EL | instruction | regime |
//! |-------------|-------------|--------|
//! | EL0 | `AT S12E0R`/`S12E0W` | EL1&0 stages 1 and 2; with `HCR_EL2.{E2H,TGE}` = {1,1}, EL2&0 stage 1 |
//! | EL1 | `AT S12E1R`/`S12E1W` | EL1&0 stages 1 and 2 (stage 1 alone when `HCR_EL2.VM` is 0) |
//! | EL2 | `AT S1E2R`/`S1E2W` | EL2 (or EL2&0 with VHE) |
//!
//! The read or write form follows WnR, so a page the access could not have
//! made (a write to a read-only page) is a translation failure, not a
//! config write. The `S12` forms give the PA whether or not stage 2 is on,
//! which is why they are used for EL0 and EL1 rather than `S1E0`/`S1E1`.
//! The `AT` overwrites `PAR_EL1`, which belongs to the interrupted code:
//! the monitor saves and restores it.
//!
//! Syndromes, addresses and registers are the lower EL's to choose: nothing
//! here panics or does unchecked arithmetic (the crate-wide lints).

use core::fmt;

use super::den0115::{PciCall, Sbdf, SegmentInfo, Status};
use super::ecam::EcamWindow;
use super::AccessSize;
use crate::arch::regs::{
    HCR_E2H, HCR_RW, HCR_TEA, HCR_TGE, SCTLR_DSSBS, SCTLR_SPAN, SPSR_DAIF, SPSR_M_AARCH32, SPSR_M_EL1H, SPSR_M_EL2H,
    SPSR_M_SP_ELX, SPSR_PAN, SPSR_SSBS,
};
use crate::arch::trap::{ExceptionSource, TrapFrame};
use crate::arch::ExceptionLevel;
use crate::esr::{Direction, Esr, ExceptionClass, FaultStatus, Origin};
use crate::gvascan::Par;
use crate::mmio::{MmioAccess, NotEmulatable};

/// Bytes of an A64 instruction: how far `ELR` moves past a completed
/// access.
pub const INSTRUCTION_BYTES: u64 = 4;
/// The address bits `PAR_EL1.PA` leaves out: the offset in a 4 KiB page,
/// which `FAR_EL3` supplies. (`AT` reports a 4 KiB-granular PA whatever the
/// granule.)
pub const PAGE_OFFSET_MASK: u64 = 0xfff;

/// The `AT` instruction that finds the PA of a faulting access (see the
/// table in the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    S12E0R,
    S12E0W,
    S12E1R,
    S12E1W,
    S1E2R,
    S1E2W,
}

impl Translation {
    /// The instruction for an abort with syndrome `esr` taken from the
    /// context `spsr` (`SPSR_EL3`), after the checks [`decode`] makes on
    /// the syndrome alone: an abort that cannot be a config access fails
    /// here, before the monitor translates anything.
    pub const fn for_fault(esr: Esr, spsr: u64) -> Result<Self, EaError> {
        let access = match syndrome(esr) {
            Ok(access) => access,
            Err(error) => return Err(error),
        };
        if spsr & SPSR_M_AARCH32 != 0 {
            return Err(EaError::Aarch32);
        }
        let write = matches!(access.direction, Direction::Write);
        Ok(match ExceptionLevel::from_spsr(spsr) {
            ExceptionLevel::El0 if write => Self::S12E0W,
            ExceptionLevel::El0 => Self::S12E0R,
            ExceptionLevel::El1 if write => Self::S12E1W,
            ExceptionLevel::El1 => Self::S12E1R,
            ExceptionLevel::El2 if write => Self::S1E2W,
            ExceptionLevel::El2 => Self::S1E2R,
            ExceptionLevel::El3 => return Err(EaError::NotLowerEl),
        })
    }

    /// The assembler spelling, for logs.
    pub const fn mnemonic(self) -> &'static str {
        match self {
            Self::S12E0R => "AT S12E0R",
            Self::S12E0W => "AT S12E0W",
            Self::S12E1R => "AT S12E1R",
            Self::S12E1W => "AT S12E1W",
            Self::S1E2R => "AT S1E2R",
            Self::S1E2W => "AT S1E2W",
        }
    }
}

/// The PA of the faulting byte: `PAR_EL1` after the [`Translation`]'s `AT`
/// of `far` (`FAR_EL3`) gives the page, `far` the offset in it.
pub const fn fault_pa(par: u64, far: u64) -> Result<u64, EaError> {
    match Par::decode(par) {
        Par::Translated { pa, .. } => Ok(pa | (far & PAGE_OFFSET_MASK)),
        Par::Fault { status, stage2 } => Err(EaError::NoTranslation { status, stage2 }),
    }
}

/// Why an external abort is not a config access the model can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EaError {
    /// Not a data abort from a lower EL (EC 0x24): e.g. an instruction
    /// fetch from the window.
    NotLowerDataAbort(ExceptionClass),
    /// A data abort, but its DFSC is not a synchronous external abort on
    /// the access itself (0x10): a walk abort, a parity error, ...
    NotExternalAbort(FaultStatus),
    /// S1PTW, CM, ISV=0 or FnV: no single load or store the syndrome
    /// describes, or no address for it.
    NotEmulatable(NotEmulatable),
    /// The faulting context is AArch32, whose register numbering SRT does
    /// not follow here (nothing in this system runs AArch32).
    Aarch32,
    /// `SPSR_EL3` names EL3: not an exception from a lower EL.
    NotLowerEl,
    /// The `AT` of the faulting address failed (the mapping changed since,
    /// or the access could not have been made).
    NoTranslation { status: FaultStatus, stage2: bool },
    /// The PA is not in the ECAM window (nor in its bus range): someone
    /// else's abort.
    OutsideWindow { pa: u64 },
    /// An 8-byte access in the window: PCI config accesses are 1, 2 or 4
    /// bytes.
    AccessSize { access: MmioAccess },
    /// An access in the window that is not a multiple of its size.
    Misaligned { access: MmioAccess },
}

impl EaError {
    /// For an access inside the window that PCI cannot express, the access
    /// to complete as a PCI unsupported request ([`complete_unsupported`]);
    /// `None` for the aborts that are not config accesses, which the monitor
    /// [`reflect`]s.
    pub const fn unsupported_request(&self) -> Option<MmioAccess> {
        match *self {
            Self::AccessSize { access } | Self::Misaligned { access } => Some(access),
            _ => None,
        }
    }
}

impl fmt::Display for EaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotLowerDataAbort(class) => write!(f, "not a data abort from a lower EL ({class:?})"),
            Self::NotExternalAbort(status) => write!(f, "not a synchronous external abort on the access ({status})"),
            Self::NotEmulatable(why) => write!(f, "{why}"),
            Self::Aarch32 => write!(f, "the faulting context is AArch32"),
            Self::NotLowerEl => write!(f, "SPSR_EL3 names EL3"),
            Self::NoTranslation { status, stage2 } => {
                let stage = if stage2 { 2 } else { 1 };
                write!(f, "the address no longer translates (stage {stage}: {status})")
            }
            Self::OutsideWindow { pa } => write!(f, "PA {pa:#x} is outside the ECAM window"),
            Self::AccessSize { access } => {
                write!(
                    f,
                    "{}-byte access at PA {:#x}: config accesses are 1, 2 or 4 bytes",
                    access.size.bytes(),
                    access.ipa
                )
            }
            Self::Misaligned { access } => {
                write!(f, "misaligned {}-byte access at PA {:#x}", access.size.bytes(), access.ipa)
            }
        }
    }
}

/// A lower EL's load or store in the ECAM window, as the config access the
/// model serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamAccess {
    /// The instruction's side: transfer register, width, sign extension,
    /// direction, size. Its `ipa` field holds the PA (the type is EL2's,
    /// where that address is an IPA).
    pub access: MmioAccess,
    /// [`PciCall::Read`] or [`PciCall::Write`] (with the value from the
    /// transfer register), in segment [`SegmentInfo::SEGMENT`]: what
    /// [`super::den0115::handle`] serves.
    pub call: PciCall,
}

impl EcamAccess {
    /// Completes the instruction with `reply`, the `[x0..x3]` that
    /// [`super::den0115::handle`] answered `call` with: a read puts x1 in
    /// the transfer register (all-ones if the call was refused, as PCI
    /// reads an unsupported request); `ELR` moves past the instruction.
    pub fn complete(&self, reply: [u64; 4], frame: &mut TrapFrame) {
        if matches!(self.call, PciCall::Read { .. }) {
            let [status, value, ..] = reply;
            let raw = if status == Status::Success.x0() { value } else { self.access.size.mask() };
            self.access.complete_read(&mut frame.x, raw);
        }
        frame.elr = frame.elr.wrapping_add(INSTRUCTION_BYTES);
    }
}

/// Completes an access in the window PCI cannot express
/// ([`EaError::unsupported_request`]) the way a host bridge answers an
/// unsupported request: a read gives all-ones of its size, a write is
/// dropped; `ELR` moves past the instruction.
pub fn complete_unsupported(access: &MmioAccess, frame: &mut TrapFrame) {
    if !access.is_write() {
        access.complete_read(&mut frame.x, access.size.mask());
    }
    frame.elr = frame.elr.wrapping_add(INSTRUCTION_BYTES);
}

/// The checks on the syndrome alone: a data abort from a lower EL, a
/// synchronous external abort on the access, and a single load or store
/// the ISS describes (ISV, no S1PTW/CM, FAR valid). The access's address is
/// 0 until [`decode`] fills it in.
const fn syndrome(esr: Esr) -> Result<MmioAccess, EaError> {
    let class = esr.class();
    if !matches!(class, ExceptionClass::DataAbortLower) {
        return Err(EaError::NotLowerDataAbort(class));
    }
    let Some(iss) = esr.abort() else {
        return Err(EaError::NotLowerDataAbort(class));
    };
    let fault = iss.fault();
    if !matches!(fault, FaultStatus::SyncExternal) {
        return Err(EaError::NotExternalAbort(fault));
    }
    match MmioAccess::decode(esr, 0) {
        Ok(access) => Ok(access),
        Err(why) => Err(EaError::NotEmulatable(why)),
    }
}

/// Decodes the external abort `esr` (`ESR_EL3`) of the access to `pa`
/// ([`fault_pa`]) against the ECAM `window`, with `regs` the lower EL's
/// x0..x30 as the exception saved them (the value of a store).
pub fn decode(esr: Esr, pa: u64, window: &EcamWindow, regs: &[u64; 31]) -> Result<EcamAccess, EaError> {
    let access = MmioAccess { ipa: pa, ..syndrome(esr)? };
    let (bdf, offset) = window.decode(pa).ok_or(EaError::OutsideWindow { pa })?;
    let size = AccessSize::from_bytes(u64::from(access.size.bytes())).ok_or(EaError::AccessSize { access })?;
    if !size.is_aligned(offset) {
        return Err(EaError::Misaligned { access });
    }
    let address = Sbdf { segment: SegmentInfo::SEGMENT, bdf };
    let call = match access.direction {
        Direction::Read => PciCall::Read { address, offset, size },
        // write_value masks to the access size, which is at most 4 bytes
        // here: the cast drops nothing.
        Direction::Write => PciCall::Write { address, offset, size, value: access.write_value(regs) as u32 },
    };
    Ok(EcamAccess { access, call })
}

// ---------------------------------------------------------------------------
// Reflection

/// What a reflection reads of the lower ELs' state: the monitor reads
/// these registers, the tests make them up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LowerState {
    /// `SPSR_EL3`: the interrupted context.
    pub spsr: u64,
    /// `ELR_EL3`: the faulting instruction.
    pub elr: u64,
    /// `FAR_EL3`: the faulting virtual address.
    pub far: u64,
    pub hcr_el2: u64,
    pub sctlr_el1: u64,
    pub sctlr_el2: u64,
    pub vbar_el1: u64,
    pub vbar_el2: u64,
}

/// An abort delivered to a lower EL as the hardware would have delivered
/// it without `SCR_EL3.EA`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reflection {
    /// EL1 or EL2.
    pub target: ExceptionLevel,
    /// For the target's `ESR_ELx`.
    pub esr: Esr,
    /// For the target's `FAR_ELx`.
    pub far: u64,
    /// For the target's `ELR_ELx`: the faulting instruction, so that the
    /// target's handler sees where the abort happened.
    pub elr: u64,
    /// For the target's `SPSR_ELx`: the interrupted context.
    pub spsr: u64,
    /// The new `ELR_EL3`: the target's synchronous vector.
    pub vector: u64,
    /// The new `SPSR_EL3`: the target's `PSTATE` on exception entry.
    pub pstate: u64,
}

/// Why an abort cannot be reflected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReflectError {
    /// Not an instruction or data abort: the class has no lower/same-EL
    /// pair to re-target.
    NotAnAbort(ExceptionClass),
    /// `SPSR_EL3` names EL3 itself.
    FromEl3,
    /// The target EL is AArch32 (its vectors and syndromes differ; nothing
    /// in this system runs AArch32).
    Aarch32Target(ExceptionLevel),
}

impl fmt::Display for ReflectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NotAnAbort(class) => write!(f, "{class:?} is not an abort"),
            Self::FromEl3 => write!(f, "the abort came from EL3"),
            Self::Aarch32Target(el) => write!(f, "{el} is AArch32"),
        }
    }
}

/// The EL that takes a synchronous external abort from the context
/// `spsr` when `SCR_EL3.EA` is 0 (Arm ARM, "Routing of synchronous
/// exceptions"): EL2 for an abort at EL2; for EL0 and EL1, EL2 if
/// `HCR_EL2.TGE` (EL0 belongs to the EL2 host) or `HCR_EL2.TEA` (external
/// aborts routed to EL2) is set, or if the abort was a stage-2 fault on a
/// stage-1 table walk (S1PTW: stage 2 is EL2's); EL1 otherwise.
pub const fn target_el(esr: Esr, spsr: u64, hcr_el2: u64) -> Result<ExceptionLevel, ReflectError> {
    let on_stage1_walk = match esr.abort() {
        Some(iss) => iss.s1ptw(),
        None => false,
    };
    match ExceptionLevel::from_spsr(spsr) {
        ExceptionLevel::El3 if spsr & SPSR_M_AARCH32 == 0 => Err(ReflectError::FromEl3),
        ExceptionLevel::El2 if spsr & SPSR_M_AARCH32 == 0 => Ok(ExceptionLevel::El2),
        // AArch32 modes are not EL-encoded like AArch64 ones; an AArch32
        // context below an AArch64 EL2 is EL0 or EL1 (SCR_EL3.RW is set).
        _ if hcr_el2 & (HCR_TGE | HCR_TEA) != 0 || on_stage1_walk => Ok(ExceptionLevel::El2),
        _ if hcr_el2 & HCR_RW == 0 => Err(ReflectError::Aarch32Target(ExceptionLevel::El1)),
        _ => Ok(ExceptionLevel::El1),
    }
}

/// The offset of the synchronous vector an exception from `spsr`'s context
/// takes in `target`'s table: the current-EL groups (by `SP_EL0` or
/// `SP_ELx`) when the context is at `target`, the lower-EL groups (by the
/// context's register width) when it is below.
pub const fn vector_offset(spsr: u64, target: ExceptionLevel) -> u64 {
    let aarch32 = spsr & SPSR_M_AARCH32 != 0;
    let source = if !aarch32 && ExceptionLevel::from_spsr(spsr) as u8 == target as u8 {
        if spsr & SPSR_M_SP_ELX != 0 {
            ExceptionSource::CurrentSpx
        } else {
            ExceptionSource::CurrentSp0
        }
    } else if aarch32 {
        ExceptionSource::LowerA32
    } else {
        ExceptionSource::LowerA64
    };
    source.vector_offset()
}

/// The `PSTATE` an exception to `target` starts with: `ELxh` with D, A, I
/// and F masked; PAN kept, and set where `SCTLR_ELx.SPAN` is 0 and PAN
/// applies (EL1, or EL2 under `HCR_EL2.{E2H,TGE}` = {1,1}); SSBS from
/// `SCTLR_ELx.DSSBS`. Everything else (TCO, BTYPE, UAO, SS, IL) starts at 0.
pub const fn entry_pstate(spsr: u64, target: ExceptionLevel, sctlr: u64, hcr_el2: u64) -> u64 {
    let mode = match target {
        ExceptionLevel::El2 => SPSR_M_EL2H,
        _ => SPSR_M_EL1H,
    };
    let pan_applies = match target {
        ExceptionLevel::El1 => true,
        ExceptionLevel::El2 => hcr_el2 & (HCR_E2H | HCR_TGE) == HCR_E2H | HCR_TGE,
        _ => false,
    };
    let pan = spsr & SPSR_PAN != 0 || (pan_applies && sctlr & SCTLR_SPAN == 0);
    let ssbs = sctlr & SCTLR_DSSBS != 0;
    mode | SPSR_DAIF | if pan { SPSR_PAN } else { 0 } | if ssbs { SPSR_SSBS } else { 0 }
}

/// The reflection of the abort `esr` (`ESR_EL3`) taken from `state`.
///
/// The syndrome keeps its ISS (DFSC, WnR, FnV, SET, and the instruction
/// syndrome if the hardware gave one: they describe the same abort) and
/// has its class re-targeted: "same EL" when the target is the faulting EL,
/// "lower EL" otherwise. `FAR` is passed on as `FAR_EL3` holds it (UNKNOWN,
/// like the hardware's, when FnV is set).
pub fn reflect(esr: Esr, state: &LowerState) -> Result<Reflection, ReflectError> {
    let class = esr.class();
    if class.origin().is_none() || esr.abort().is_none() {
        return Err(ReflectError::NotAnAbort(class));
    }
    let target = target_el(esr, state.spsr, state.hcr_el2)?;
    let same_el = state.spsr & SPSR_M_AARCH32 == 0 && ExceptionLevel::from_spsr(state.spsr) == target;
    let origin = if same_el { Origin::SameEl } else { Origin::LowerEl };
    let (sctlr, vbar) = match target {
        ExceptionLevel::El2 => (state.sctlr_el2, state.vbar_el2),
        _ => (state.sctlr_el1, state.vbar_el1),
    };
    Ok(Reflection {
        target,
        esr: esr.with_origin(origin),
        far: state.far,
        elr: state.elr,
        spsr: state.spsr,
        vector: vbar.wrapping_add(vector_offset(state.spsr, target)),
        pstate: entry_pstate(state.spsr, target, sctlr, state.hcr_el2),
    })
}

#[cfg(test)]
mod tests;
