//! Decoding and building of exception syndromes (`ESR_ELx`) as typed values.
//!
//! Pure logic, host-tested on ESR values captured from QEMU or computed from
//! the encodings in the Arm ARM (DDI 0487: the `ESR_EL2` register
//! description and its per-class ISS encodings). Every handler that reports, answers or
//! injects an exception goes through here rather than shifting bits itself:
//!
//! - decoding: [`Esr::class`], [`Esr::abort`] (instruction and data aborts),
//!   [`Esr::sys_reg`] (trapped `MSR`/`MRS`/`SYS`, with [`SysReg`] naming the
//!   register), [`Esr::brk_comment`], [`Esr::hvc_imm`], [`Esr::smc_imm`];
//! - building, for the hypervisor to inject into a guest exactly what the
//!   hardware would have delivered: [`Esr::brk`], [`Esr::undefined`],
//!   [`Esr::data_abort`], [`Esr::instruction_abort`], [`Esr::sys_reg_trap`],
//!   and [`Esr::with_origin`] to re-target a "lower EL"/"same EL" class pair
//!   when an exception taken to EL2 is reflected to the guest's EL1.
//!
//! # Layout
//!
//! ```text
//!  63       37 36  32 31    26 25  24                                 0
//! +-----------+------+--------+----+-----------------------------------+
//! |   RES0    | ISS2 |   EC   | IL |                ISS                |
//! +-----------+------+--------+----+-----------------------------------+
//! ```
//!
//! IL is 1 for every exception from AArch64 state (all A64 instructions are
//! 32 bits), so the builders here always set it.
//!
//! Syndromes are guest-controlled input (a guest chooses which instruction
//! traps, with which registers and immediates): nothing here panics, indexes
//! or does unchecked arithmetic, which clippy enforces (the crate-wide lints in lib.rs).

use core::fmt;

/// The exception class, `ESR_ELx.EC` [31:26].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    Unknown,
    WfxTrap,
    FpAccess,
    IllegalState,
    Svc64,
    Hvc64,
    Smc64,
    SysReg,
    SveAccess,
    PointerAuth,
    InstructionAbortLower,
    InstructionAbortSame,
    PcAlignment,
    DataAbortLower,
    DataAbortSame,
    SpAlignment,
    SError,
    BreakpointLower,
    BreakpointSame,
    SoftwareStepLower,
    SoftwareStepSame,
    WatchpointLower,
    WatchpointSame,
    /// AArch32 `BKPT` (from EL0 in AArch32 state).
    Bkpt32,
    /// AArch32 vector catch.
    VectorCatch,
    Brk64,
    /// A class this decoder does not name; the raw EC value.
    Other(u8),
}

impl ExceptionClass {
    #[inline]
    pub const fn from_ec(ec: u8) -> Self {
        match ec {
            0x00 => Self::Unknown,
            0x01 => Self::WfxTrap,
            0x07 => Self::FpAccess,
            0x0e => Self::IllegalState,
            0x15 => Self::Svc64,
            0x16 => Self::Hvc64,
            0x17 => Self::Smc64,
            0x18 => Self::SysReg,
            0x19 => Self::SveAccess,
            0x1c => Self::PointerAuth,
            0x20 => Self::InstructionAbortLower,
            0x21 => Self::InstructionAbortSame,
            0x22 => Self::PcAlignment,
            0x24 => Self::DataAbortLower,
            0x25 => Self::DataAbortSame,
            0x26 => Self::SpAlignment,
            0x2f => Self::SError,
            0x30 => Self::BreakpointLower,
            0x31 => Self::BreakpointSame,
            0x32 => Self::SoftwareStepLower,
            0x33 => Self::SoftwareStepSame,
            0x34 => Self::WatchpointLower,
            0x35 => Self::WatchpointSame,
            0x38 => Self::Bkpt32,
            0x3a => Self::VectorCatch,
            0x3c => Self::Brk64,
            other => Self::Other(other),
        }
    }

    /// The raw EC value.
    pub const fn ec(self) -> u8 {
        match self {
            Self::Unknown => 0x00,
            Self::WfxTrap => 0x01,
            Self::FpAccess => 0x07,
            Self::IllegalState => 0x0e,
            Self::Svc64 => 0x15,
            Self::Hvc64 => 0x16,
            Self::Smc64 => 0x17,
            Self::SysReg => 0x18,
            Self::SveAccess => 0x19,
            Self::PointerAuth => 0x1c,
            Self::InstructionAbortLower => 0x20,
            Self::InstructionAbortSame => 0x21,
            Self::PcAlignment => 0x22,
            Self::DataAbortLower => 0x24,
            Self::DataAbortSame => 0x25,
            Self::SpAlignment => 0x26,
            Self::SError => 0x2f,
            Self::BreakpointLower => 0x30,
            Self::BreakpointSame => 0x31,
            Self::SoftwareStepLower => 0x32,
            Self::SoftwareStepSame => 0x33,
            Self::WatchpointLower => 0x34,
            Self::WatchpointSame => 0x35,
            Self::Bkpt32 => 0x38,
            Self::VectorCatch => 0x3a,
            Self::Brk64 => 0x3c,
            Self::Other(ec) => ec,
        }
    }

    /// For the classes that come in a "from a lower EL" / "without a change
    /// in EL" pair (instruction and data aborts, breakpoints, software step,
    /// watchpoints), which of the two this is. `None` for every other class,
    /// whose EC does not depend on where the exception came from (`BRK`,
    /// `SVC`, trapped instructions, ...).
    pub const fn origin(self) -> Option<Origin> {
        match self {
            Self::InstructionAbortLower
            | Self::DataAbortLower
            | Self::BreakpointLower
            | Self::SoftwareStepLower
            | Self::WatchpointLower => Some(Origin::LowerEl),
            Self::InstructionAbortSame
            | Self::DataAbortSame
            | Self::BreakpointSame
            | Self::SoftwareStepSame
            | Self::WatchpointSame => Some(Origin::SameEl),
            _ => None,
        }
    }

    /// The member of this class's lower/same pair for `origin`; classes
    /// outside such a pair are returned unchanged.
    pub const fn with_origin(self, origin: Origin) -> Self {
        let lower = matches!(origin, Origin::LowerEl);
        match self {
            Self::InstructionAbortLower | Self::InstructionAbortSame => {
                if lower {
                    Self::InstructionAbortLower
                } else {
                    Self::InstructionAbortSame
                }
            }
            Self::DataAbortLower | Self::DataAbortSame => {
                if lower {
                    Self::DataAbortLower
                } else {
                    Self::DataAbortSame
                }
            }
            Self::BreakpointLower | Self::BreakpointSame => {
                if lower {
                    Self::BreakpointLower
                } else {
                    Self::BreakpointSame
                }
            }
            Self::SoftwareStepLower | Self::SoftwareStepSame => {
                if lower {
                    Self::SoftwareStepLower
                } else {
                    Self::SoftwareStepSame
                }
            }
            Self::WatchpointLower | Self::WatchpointSame => {
                if lower {
                    Self::WatchpointLower
                } else {
                    Self::WatchpointSame
                }
            }
            other => other,
        }
    }
}

/// Where an exception came from, relative to the EL that takes it: the
/// distinction the paired exception classes encode.
///
/// For an exception the hypervisor injects into a guest's EL1, an exception
/// from the guest's EL0 is [`Origin::LowerEl`] and one from EL1 itself is
/// [`Origin::SameEl`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    LowerEl,
    SameEl,
}

/// The direction of a trapped access: a system-register access or a data
/// abort. `Read` is `MRS`/`SYSL`/a load, `Write` is `MSR`/`SYS`/a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

/// A decoded syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    pub const EC_SHIFT: u32 = 26;
    /// IL, bit 25: the trapped instruction was 32 bits long.
    pub const IL: u64 = 1 << 25;
    pub const ISS_MASK: u64 = (1 << 25) - 1;

    #[inline]
    pub const fn class(self) -> ExceptionClass {
        ExceptionClass::from_ec(((self.0 >> Self::EC_SHIFT) & 0x3f) as u8)
    }

    pub const fn iss(self) -> u64 {
        self.0 & Self::ISS_MASK
    }

    /// ISS2, `ESR_ELx[36:32]` (FEAT_LS64, FEAT_GCS...; zero on QEMU 7.2).
    pub const fn iss2(self) -> u8 {
        ((self.0 >> 32) & 0x1f) as u8
    }

    pub const fn il(self) -> bool {
        self.0 & Self::IL != 0
    }

    /// Builds a syndrome from its parts (used to inject exceptions).
    pub const fn new(class: ExceptionClass, il: bool, iss: u64) -> Self {
        Self((((class.ec() & 0x3f) as u64) << Self::EC_SHIFT) | if il { Self::IL } else { 0 } | (iss & Self::ISS_MASK))
    }

    /// The 16-bit immediate of an `HVC`, `SMC`, `SVC` or `BRK`, ISS[15:0]
    /// (raw: whatever the class).
    pub const fn imm16(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// The comment (immediate) of a `BRK`, EC 0x3C; `None` for other classes.
    pub const fn brk_comment(self) -> Option<u16> {
        match self.class() {
            ExceptionClass::Brk64 => Some(self.imm16()),
            _ => None,
        }
    }

    /// The immediate of an `HVC`, EC 0x16; `None` for other classes.
    pub const fn hvc_imm(self) -> Option<u16> {
        match self.class() {
            ExceptionClass::Hvc64 => Some(self.imm16()),
            _ => None,
        }
    }

    /// The immediate of a trapped `SMC` (`HCR_EL2.TSC`), EC 0x17; `None` for
    /// other classes.
    pub const fn smc_imm(self) -> Option<u16> {
        match self.class() {
            ExceptionClass::Smc64 => Some(self.imm16()),
            _ => None,
        }
    }

    /// The immediate of an `SVC`, EC 0x15; `None` for other classes.
    pub const fn svc_imm(self) -> Option<u16> {
        match self.class() {
            ExceptionClass::Svc64 => Some(self.imm16()),
            _ => None,
        }
    }

    /// The abort-specific fields, for instruction and data aborts.
    pub const fn abort(self) -> Option<AbortIss> {
        match self.class() {
            ExceptionClass::DataAbortLower
            | ExceptionClass::DataAbortSame
            | ExceptionClass::InstructionAbortLower
            | ExceptionClass::InstructionAbortSame => Some(AbortIss(self.iss())),
            _ => None,
        }
    }

    /// Whether this is a data abort (from either origin).
    pub const fn is_data_abort(self) -> bool {
        matches!(self.class(), ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame)
    }

    /// The trapped `MSR`/`MRS`/system instruction, EC 0x18; `None` for other
    /// classes.
    pub const fn sys_reg(self) -> Option<SysRegIss> {
        match self.class() {
            ExceptionClass::SysReg => Some(SysRegIss::from_iss(self.iss())),
            _ => None,
        }
    }

    // --- builders -----------------------------------------------------

    /// The syndrome of `BRK #imm` as the EL that takes it sees it: EC 0x3C,
    /// IL=1, ISS[15:0] = the comment. There is no lower/same-EL pair for
    /// `BRK`: the syndrome is the same whether the `BRK` ran at EL0 or EL1.
    pub const fn brk(imm: u16) -> Self {
        Self::new(ExceptionClass::Brk64, true, imm as u64)
    }

    /// The syndrome of an undefined instruction: EC 0x00, IL=1, ISS=0.
    pub const fn undefined() -> Self {
        Self::new(ExceptionClass::Unknown, true, 0)
    }

    /// A data abort without a valid instruction syndrome (ISV=0), as a
    /// guest's EL1 receives it: class 0x24 (from EL0, [`Origin::LowerEl`])
    /// or 0x25 (from EL1, [`Origin::SameEl`]), IL=1, WnR, and the fault
    /// status code. FAR is valid (FnV=0); the caller sets `FAR_EL1`.
    pub const fn data_abort(origin: Origin, fault: FaultStatus, wnr: bool) -> Self {
        let class = ExceptionClass::DataAbortLower.with_origin(origin);
        let wnr = if wnr { AbortIss::WNR } else { 0 };
        Self::new(class, true, wnr | fault.code() as u64)
    }

    /// An instruction abort as a guest's EL1 receives it: class 0x20 (from
    /// EL0) or 0x21 (from EL1), IL=1, and the fault status code.
    pub const fn instruction_abort(origin: Origin, fault: FaultStatus) -> Self {
        let class = ExceptionClass::InstructionAbortLower.with_origin(origin);
        Self::new(class, true, fault.code() as u64)
    }

    /// The syndrome of a trapped `MSR`/`MRS`/system instruction (EC 0x18).
    pub const fn sys_reg_trap(iss: SysRegIss) -> Self {
        Self::new(ExceptionClass::SysReg, true, iss.iss())
    }

    /// This syndrome with its class re-targeted to `origin` within its
    /// lower/same pair, ISS unchanged.
    ///
    /// Reflecting a debug exception or abort that `MDCR_EL2.TDE` (or stage 2)
    /// sent to EL2 back to the guest's EL1: EL2 sees everything from the
    /// guest as "lower EL" (e.g. 0x30), but EL1 must see an exception from
    /// EL1 itself as "same EL" (0x31), which is what it would have got
    /// without the hypervisor. Classes outside a pair are unchanged.
    pub const fn with_origin(self, origin: Origin) -> Self {
        let class = self.class().with_origin(origin);
        Self((self.0 & !(0x3f << Self::EC_SHIFT)) | (((class.ec() & 0x3f) as u64) << Self::EC_SHIFT))
    }
}

impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x} ({:?}", self.0, self.class())?;
        if let Some(abort) = self.abort() {
            write!(f, ", {}", abort.fault())?;
            if self.is_data_abort() && abort.isv() {
                write!(
                    f,
                    ", {} {} bytes via x{}",
                    if abort.wnr() { "write" } else { "read" },
                    abort.access_size(),
                    abort.srt()
                )?;
            }
        } else if let Some(sys) = self.sys_reg() {
            write!(f, ", {sys}")?;
        } else if matches!(
            self.class(),
            ExceptionClass::Brk64 | ExceptionClass::Hvc64 | ExceptionClass::Smc64 | ExceptionClass::Svc64
        ) {
            write!(f, ", #{:#x}", self.imm16())?;
        }
        write!(f, ")")
    }
}

/// The ISS of an instruction or data abort.
///
/// ```text
/// data abort (EC 0x24/0x25)
///  24  23:22 21  20:16 15  14  13   12:11 10  9   8   7     6   5:0
/// ISV  SAS   SSE SRT   SF  AR  VNCR SET   FnV EA  CM  S1PTW WnR DFSC
/// instruction abort (EC 0x20/0x21)
///  24:13 RES0, 12:11 SET, 10 FnV, 9 EA, 8 RES0, 7 S1PTW, 6 RES0, 5:0 IFSC
/// ```
///
/// SAS, SSE, SRT, SF and AR are valid only when ISV is set (ISV is 0 for
/// instruction aborts, and for loads/stores whose effect one register and a
/// size cannot describe: pairs, writeback, SIMD, ... and for faults on a
/// stage-1 walk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortIss(pub u64);

impl AbortIss {
    /// ISV, bit 24: the SAS, SSE, SRT, SF and AR fields are valid.
    pub const ISV: u64 = 1 << 24;
    /// SSE, bit 21: sign-extend the loaded value.
    pub const SSE: u64 = 1 << 21;
    /// SF, bit 15: the transfer register is 64 bits wide (`Xt`).
    pub const SF: u64 = 1 << 15;
    /// AR, bit 14: acquire/release semantics.
    pub const AR: u64 = 1 << 14;
    /// VNCR, bit 13: the fault came from a `VNCR_EL2`-redirected access
    /// (FEAT_NV2).
    pub const VNCR: u64 = 1 << 13;
    /// FnV, bit 10: FAR is not valid.
    pub const FNV: u64 = 1 << 10;
    /// EA, bit 9: external abort type (implementation defined).
    pub const EA: u64 = 1 << 9;
    /// CM, bit 8: the fault came from a cache-maintenance or address
    /// translation instruction (data aborts only).
    pub const CM: u64 = 1 << 8;
    /// S1PTW, bit 7: the fault happened on a stage-1 table walk.
    pub const S1PTW: u64 = 1 << 7;
    /// WnR, bit 6: the access was a write.
    pub const WNR: u64 = 1 << 6;

    pub const fn isv(self) -> bool {
        self.0 & Self::ISV != 0
    }
    /// Access size in bytes (SAS, [23:22]).
    pub const fn access_size(self) -> u32 {
        1 << ((self.0 >> 22) & 3)
    }
    /// The transfer register (SRT, [20:16]); 31 is `xzr`/`wzr`.
    pub const fn srt(self) -> usize {
        ((self.0 >> 16) & 0x1f) as usize
    }
    /// Sign-extend the loaded value (SSE, bit 21).
    pub const fn sse(self) -> bool {
        self.0 & Self::SSE != 0
    }
    /// 64-bit register (SF, bit 15).
    pub const fn sf(self) -> bool {
        self.0 & Self::SF != 0
    }
    /// Acquire/release semantics (AR, bit 14).
    pub const fn ar(self) -> bool {
        self.0 & Self::AR != 0
    }
    /// VNCR, bit 13 (FEAT_NV2).
    pub const fn vncr(self) -> bool {
        self.0 & Self::VNCR != 0
    }
    /// Synchronous error type (SET, [12:11]; FEAT_RAS, for external aborts).
    pub const fn set(self) -> u8 {
        ((self.0 >> 11) & 3) as u8
    }
    /// FAR is not valid (FnV, bit 10).
    pub const fn fnv(self) -> bool {
        self.0 & Self::FNV != 0
    }
    /// External abort type (EA, bit 9).
    pub const fn ea(self) -> bool {
        self.0 & Self::EA != 0
    }
    /// Cache maintenance (CM, bit 8): the fault came from a `DC`/`IC`/`AT`
    /// instruction, not a load or store.
    pub const fn cm(self) -> bool {
        self.0 & Self::CM != 0
    }
    pub const fn wnr(self) -> bool {
        self.0 & Self::WNR != 0
    }
    /// Whether the access was a write (WnR) or a read.
    pub const fn direction(self) -> Direction {
        if self.wnr() {
            Direction::Write
        } else {
            Direction::Read
        }
    }
    pub const fn s1ptw(self) -> bool {
        self.0 & Self::S1PTW != 0
    }
    pub const fn far_valid(self) -> bool {
        self.0 & Self::FNV == 0
    }
    /// The fault status code (DFSC/IFSC, [5:0]).
    pub const fn fault(self) -> FaultStatus {
        FaultStatus::from_code((self.0 & 0x3f) as u8)
    }
}

/// A fault status code (DFSC/IFSC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    AddressSize {
        level: u8,
    },
    /// Levels 0 to 3.
    Translation {
        level: u8,
    },
    /// Levels 1 to 3, and 0 with FEAT_LPA2.
    AccessFlag {
        level: u8,
    },
    /// Levels 1 to 3, and 0 with FEAT_LPA2.
    Permission {
        level: u8,
    },
    /// Synchronous external abort, not on a table walk.
    SyncExternal,
    SyncExternalOnWalk {
        level: u8,
    },
    /// Synchronous parity or ECC error, not on a table walk.
    SyncParityOrEcc,
    SyncParityOrEccOnWalk {
        level: u8,
    },
    Alignment,
    /// The fault status of a debug exception (breakpoint, watchpoint, step;
    /// 0x22).
    Debug,
    TlbConflict,
    /// Unsupported atomic hardware update (FEAT_HAFDBS, 0x31).
    UnsupportedAtomicUpdate,
    /// Implementation defined: lockdown (0x34).
    Lockdown,
    /// Unsupported exclusive or atomic access (0x35).
    UnsupportedExclusiveOrAtomic,
    Other(u8),
}

impl FaultStatus {
    /// The code for a synchronous external abort, not on a table walk.
    pub const SYNC_EXTERNAL_CODE: u8 = 0x10;

    pub const fn from_code(code: u8) -> Self {
        let level = code & 3;
        match code {
            0x00..=0x03 => Self::AddressSize { level },
            0x04..=0x07 => Self::Translation { level },
            0x08..=0x0b => Self::AccessFlag { level },
            0x0c..=0x0f => Self::Permission { level },
            0x10 => Self::SyncExternal,
            0x14..=0x17 => Self::SyncExternalOnWalk { level },
            0x18 => Self::SyncParityOrEcc,
            0x1c..=0x1f => Self::SyncParityOrEccOnWalk { level },
            0x21 => Self::Alignment,
            0x22 => Self::Debug,
            0x30 => Self::TlbConflict,
            0x31 => Self::UnsupportedAtomicUpdate,
            0x34 => Self::Lockdown,
            0x35 => Self::UnsupportedExclusiveOrAtomic,
            other => Self::Other(other & 0x3f),
        }
    }

    /// The 6-bit code (the inverse of [`FaultStatus::from_code`]; levels
    /// are taken modulo 4).
    pub const fn code(self) -> u8 {
        match self {
            Self::AddressSize { level } => level & 3,
            Self::Translation { level } => 0x04 | (level & 3),
            Self::AccessFlag { level } => 0x08 | (level & 3),
            Self::Permission { level } => 0x0c | (level & 3),
            Self::SyncExternal => Self::SYNC_EXTERNAL_CODE,
            Self::SyncExternalOnWalk { level } => 0x14 | (level & 3),
            Self::SyncParityOrEcc => 0x18,
            Self::SyncParityOrEccOnWalk { level } => 0x1c | (level & 3),
            Self::Alignment => 0x21,
            Self::Debug => 0x22,
            Self::TlbConflict => 0x30,
            Self::UnsupportedAtomicUpdate => 0x31,
            Self::Lockdown => 0x34,
            Self::UnsupportedExclusiveOrAtomic => 0x35,
            Self::Other(code) => code & 0x3f,
        }
    }

    /// The translation-table level a level-specific fault names.
    pub const fn level(self) -> Option<u8> {
        match self {
            Self::AddressSize { level }
            | Self::Translation { level }
            | Self::AccessFlag { level }
            | Self::Permission { level }
            | Self::SyncExternalOnWalk { level }
            | Self::SyncParityOrEccOnWalk { level } => Some(level),
            _ => None,
        }
    }
}

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddressSize { level } => write!(f, "address-size fault, level {level}"),
            Self::Translation { level } => write!(f, "translation fault, level {level}"),
            Self::AccessFlag { level } => write!(f, "access-flag fault, level {level}"),
            Self::Permission { level } => write!(f, "permission fault, level {level}"),
            Self::SyncExternal => write!(f, "synchronous external abort"),
            Self::SyncExternalOnWalk { level } => {
                write!(f, "synchronous external abort on table walk, level {level}")
            }
            Self::SyncParityOrEcc => write!(f, "synchronous parity/ECC error"),
            Self::SyncParityOrEccOnWalk { level } => {
                write!(f, "synchronous parity/ECC error on table walk, level {level}")
            }
            Self::Alignment => write!(f, "alignment fault"),
            Self::Debug => write!(f, "debug exception"),
            Self::TlbConflict => write!(f, "TLB conflict"),
            Self::UnsupportedAtomicUpdate => write!(f, "unsupported atomic hardware update"),
            Self::Lockdown => write!(f, "lockdown abort"),
            Self::UnsupportedExclusiveOrAtomic => {
                write!(f, "unsupported exclusive or atomic access")
            }
            Self::Other(code) => write!(f, "fault status {code:#x}"),
        }
    }
}

// --- trapped MSR / MRS / system instructions (EC 0x18) -----------------

/// A system register (or system instruction) encoding: the `(op0, op1,
/// CRn, CRm, op2)` tuple of `MRS`/`MSR`/`SYS`, packed into 16 bits as
/// `op0[1:0]:op1[2:0]:CRn[3:0]:CRm[3:0]:op2[2:0]` (the order of the
/// instruction's bits [20:5]). A key for matching trapped accesses:
/// `match iss.reg() { SysReg::MDCCSR_EL0 => ..., }`.
///
/// `Display` gives the architectural name where this module knows it
/// (the debug registers a hypervisor trapping debug meets), else the
/// generic `S<op0>_<op1>_C<n>_C<m>_<op2>` form assemblers accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SysReg(u16);

/// The four banked breakpoint/watchpoint register kinds, `DBG{B,W}{V,C}R<n>_EL1`
/// at `(2, 0, 0, n, 4..=7)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakpointReg {
    /// `DBGBVR<n>_EL1`, breakpoint value.
    Bvr,
    /// `DBGBCR<n>_EL1`, breakpoint control.
    Bcr,
    /// `DBGWVR<n>_EL1`, watchpoint value.
    Wvr,
    /// `DBGWCR<n>_EL1`, watchpoint control.
    Wcr,
}

impl BreakpointReg {
    const fn op2(self) -> u8 {
        match self {
            Self::Bvr => 4,
            Self::Bcr => 5,
            Self::Wvr => 6,
            Self::Wcr => 7,
        }
    }

    const fn prefix(self) -> &'static str {
        match self {
            Self::Bvr => "DBGBVR",
            Self::Bcr => "DBGBCR",
            Self::Wvr => "DBGWVR",
            Self::Wcr => "DBGWCR",
        }
    }
}

impl SysReg {
    /// Packs the five encoding fields; each is masked to its width (op0: 2
    /// bits, op1: 3, CRn: 4, CRm: 4, op2: 3).
    pub const fn from_parts(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        Self(
            ((op0 as u16 & 0x3) << 14)
                | ((op1 as u16 & 0x7) << 11)
                | ((crn as u16 & 0xf) << 7)
                | ((crm as u16 & 0xf) << 3)
                | (op2 as u16 & 0x7),
        )
    }

    pub const fn op0(self) -> u8 {
        ((self.0 >> 14) & 0x3) as u8
    }
    pub const fn op1(self) -> u8 {
        ((self.0 >> 11) & 0x7) as u8
    }
    pub const fn crn(self) -> u8 {
        ((self.0 >> 7) & 0xf) as u8
    }
    pub const fn crm(self) -> u8 {
        ((self.0 >> 3) & 0xf) as u8
    }
    pub const fn op2(self) -> u8 {
        (self.0 & 0x7) as u8
    }
    /// The packed 16-bit encoding.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// `MRS X<rt>, <this register>` (`rt` 31 is XZR): for code that picks
    /// the register at run time (the guest-stub's hostile mode).
    pub const fn mrs(self, rt: u8) -> u32 {
        Self::MRS | self.instruction_fields(rt)
    }

    /// `MSR <this register>, X<rt>`.
    pub const fn msr(self, rt: u8) -> u32 {
        Self::MSR | self.instruction_fields(rt)
    }

    /// The packed encoding sits at bits \[20:5\] of `MRS`/`MSR`, `Rt` at
    /// \[4:0\].
    const fn instruction_fields(self, rt: u8) -> u32 {
        (self.0 as u32) << 5 | (rt as u32 & 0x1f)
    }

    /// `MRS` (system register move, L = 1) and `MSR` (L = 0) without their
    /// operand fields.
    const MRS: u32 = 0xd520_0000;
    const MSR: u32 = 0xd500_0000;

    // Debug registers (op0 = 2; encodings as in the Arm ARM's register
    // descriptions and Linux's `asm/sysreg.h`).
    /// `OSDTRRX_EL1`, OS-lock data transfer, receive.
    pub const OSDTRRX_EL1: Self = Self::from_parts(2, 0, 0, 0, 2);
    /// `MDCCINT_EL1`, DCC interrupt enable.
    pub const MDCCINT_EL1: Self = Self::from_parts(2, 0, 0, 2, 0);
    /// `MDSCR_EL1`, monitor debug system control.
    pub const MDSCR_EL1: Self = Self::from_parts(2, 0, 0, 2, 2);
    /// `OSDTRTX_EL1`, OS-lock data transfer, transmit.
    pub const OSDTRTX_EL1: Self = Self::from_parts(2, 0, 0, 3, 2);
    /// `OSECCR_EL1`, OS-lock exception catch control.
    pub const OSECCR_EL1: Self = Self::from_parts(2, 0, 0, 6, 2);
    /// `MDRAR_EL1`, debug ROM address (read-only).
    pub const MDRAR_EL1: Self = Self::from_parts(2, 0, 1, 0, 0);
    /// `OSLAR_EL1`, OS lock access (write-only).
    pub const OSLAR_EL1: Self = Self::from_parts(2, 0, 1, 0, 4);
    /// `OSLSR_EL1`, OS lock status (read-only).
    pub const OSLSR_EL1: Self = Self::from_parts(2, 0, 1, 1, 4);
    /// `OSDLR_EL1`, OS double lock.
    pub const OSDLR_EL1: Self = Self::from_parts(2, 0, 1, 3, 4);
    /// `DBGPRCR_EL1`, debug power/reset control.
    pub const DBGPRCR_EL1: Self = Self::from_parts(2, 0, 1, 4, 4);
    /// `DBGCLAIMSET_EL1`, claim tag set.
    pub const DBGCLAIMSET_EL1: Self = Self::from_parts(2, 0, 7, 8, 6);
    /// `DBGCLAIMCLR_EL1`, claim tag clear.
    pub const DBGCLAIMCLR_EL1: Self = Self::from_parts(2, 0, 7, 9, 6);
    /// `DBGAUTHSTATUS_EL1`, authentication status (read-only).
    pub const DBGAUTHSTATUS_EL1: Self = Self::from_parts(2, 0, 7, 14, 6);
    /// `MDCCSR_EL0`, DCC status (read-only): the DCC hypercall's doorbell.
    pub const MDCCSR_EL0: Self = Self::from_parts(2, 3, 0, 1, 0);
    /// `DBGDTR_EL0`, DCC half-duplex data transfer.
    pub const DBGDTR_EL0: Self = Self::from_parts(2, 3, 0, 4, 0);
    /// `DBGDTRRX_EL0` (read) / `DBGDTRTX_EL0` (write): one encoding, two
    /// names, told apart by the access direction.
    pub const DBGDTRRX_EL0: Self = Self::from_parts(2, 3, 0, 5, 0);
    /// Same encoding as [`SysReg::DBGDTRRX_EL0`]; the name for writes.
    pub const DBGDTRTX_EL0: Self = Self::from_parts(2, 3, 0, 5, 0);
    /// `DBGVCR32_EL2`, vector catch for AArch32 EL1.
    pub const DBGVCR32_EL2: Self = Self::from_parts(2, 4, 0, 7, 0);

    // The EL1 registers `HCR_EL2.TVM` traps writes of: the translation
    // regime's controls, and the fault registers.
    pub const SCTLR_EL1: Self = Self::from_parts(3, 0, 1, 0, 0);
    pub const TTBR0_EL1: Self = Self::from_parts(3, 0, 2, 0, 0);
    pub const TTBR1_EL1: Self = Self::from_parts(3, 0, 2, 0, 1);
    pub const TCR_EL1: Self = Self::from_parts(3, 0, 2, 0, 2);
    pub const AFSR0_EL1: Self = Self::from_parts(3, 0, 5, 1, 0);
    pub const AFSR1_EL1: Self = Self::from_parts(3, 0, 5, 1, 1);
    pub const ESR_EL1: Self = Self::from_parts(3, 0, 5, 2, 0);
    pub const FAR_EL1: Self = Self::from_parts(3, 0, 6, 0, 0);
    pub const MAIR_EL1: Self = Self::from_parts(3, 0, 10, 2, 0);
    pub const AMAIR_EL1: Self = Self::from_parts(3, 0, 10, 3, 0);
    pub const CONTEXTIDR_EL1: Self = Self::from_parts(3, 0, 13, 0, 1);

    /// Names for the encodings above. [`SysReg::DBGDTRRX_EL0`] is handled
    /// separately (its name depends on the direction).
    const NAMES: [(Self, &'static str); 16] = [
        (Self::OSDTRRX_EL1, "OSDTRRX_EL1"),
        (Self::MDCCINT_EL1, "MDCCINT_EL1"),
        (Self::MDSCR_EL1, "MDSCR_EL1"),
        (Self::OSDTRTX_EL1, "OSDTRTX_EL1"),
        (Self::OSECCR_EL1, "OSECCR_EL1"),
        (Self::MDRAR_EL1, "MDRAR_EL1"),
        (Self::OSLAR_EL1, "OSLAR_EL1"),
        (Self::OSLSR_EL1, "OSLSR_EL1"),
        (Self::OSDLR_EL1, "OSDLR_EL1"),
        (Self::DBGPRCR_EL1, "DBGPRCR_EL1"),
        (Self::DBGCLAIMSET_EL1, "DBGCLAIMSET_EL1"),
        (Self::DBGCLAIMCLR_EL1, "DBGCLAIMCLR_EL1"),
        (Self::DBGAUTHSTATUS_EL1, "DBGAUTHSTATUS_EL1"),
        (Self::MDCCSR_EL0, "MDCCSR_EL0"),
        (Self::DBGDTR_EL0, "DBGDTR_EL0"),
        (Self::DBGVCR32_EL2, "DBGVCR32_EL2"),
    ];

    /// `DBGBVR<n>_EL1`, breakpoint value register `n` (`n` masked to 0..=15).
    pub const fn dbgbvr(n: u8) -> Self {
        Self::breakpoint(BreakpointReg::Bvr, n)
    }
    /// `DBGBCR<n>_EL1`, breakpoint control register `n` (`n` masked to 0..=15).
    pub const fn dbgbcr(n: u8) -> Self {
        Self::breakpoint(BreakpointReg::Bcr, n)
    }
    /// `DBGWVR<n>_EL1`, watchpoint value register `n` (`n` masked to 0..=15).
    pub const fn dbgwvr(n: u8) -> Self {
        Self::breakpoint(BreakpointReg::Wvr, n)
    }
    /// `DBGWCR<n>_EL1`, watchpoint control register `n` (`n` masked to 0..=15).
    pub const fn dbgwcr(n: u8) -> Self {
        Self::breakpoint(BreakpointReg::Wcr, n)
    }
    /// Breakpoint/watchpoint register `kind` number `n`: `(2, 0, 0, n, 4..=7)`.
    pub const fn breakpoint(kind: BreakpointReg, n: u8) -> Self {
        Self::from_parts(2, 0, 0, n, kind.op2())
    }

    /// Which breakpoint/watchpoint register this is, and its number, if it
    /// is one.
    pub const fn breakpoint_reg(self) -> Option<(BreakpointReg, u8)> {
        if self.op0() != 2 || self.op1() != 0 || self.crn() != 0 {
            return None;
        }
        let kind = match self.op2() {
            4 => BreakpointReg::Bvr,
            5 => BreakpointReg::Bcr,
            6 => BreakpointReg::Wvr,
            7 => BreakpointReg::Wcr,
            _ => return None,
        };
        Some((kind, self.crm()))
    }

    /// Whether this encoding lies in the debug (and trace) register space,
    /// op0 = 2 — what `MDCR_EL2.TDA` traps, among others.
    pub const fn is_debug(self) -> bool {
        self.op0() == 2
    }

    /// The architectural name of a register this module knows, for an
    /// access in `direction` (only `DBGDTRRX_EL0`/`DBGDTRTX_EL0` needs it).
    /// Breakpoint registers have numbered names and are not returned here;
    /// `Display` formats them.
    pub fn name(self, direction: Direction) -> Option<&'static str> {
        if self == Self::DBGDTRRX_EL0 {
            return Some(match direction {
                Direction::Read => "DBGDTRRX_EL0",
                Direction::Write => "DBGDTRTX_EL0",
            });
        }
        Self::NAMES.iter().find(|(reg, _)| *reg == self).map(|&(_, name)| name)
    }

    /// Formats the register as an access in `direction` would name it.
    pub fn display(self, direction: Direction) -> SysRegName {
        SysRegName { reg: self, direction: Some(direction) }
    }
}

/// A [`SysReg`] being formatted, with the access direction when known
/// (see [`SysReg::display`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegName {
    reg: SysReg,
    direction: Option<Direction>,
}

impl fmt::Display for SysRegName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reg = self.reg;
        if let Some((kind, n)) = reg.breakpoint_reg() {
            return write!(f, "{}{n}_EL1", kind.prefix());
        }
        if reg == SysReg::DBGDTRRX_EL0 && self.direction.is_none() {
            return f.write_str("DBGDTRRX_EL0/DBGDTRTX_EL0");
        }
        match reg.name(self.direction.unwrap_or(Direction::Read)) {
            Some(name) => f.write_str(name),
            None => write!(f, "S{}_{}_C{}_C{}_{}", reg.op0(), reg.op1(), reg.crn(), reg.crm(), reg.op2()),
        }
    }
}

impl fmt::Display for SysReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SysRegName { reg: *self, direction: None }.fmt(f)
    }
}

/// The ISS of a trapped `MSR`, `MRS` or system instruction (EC 0x18).
///
/// ```text
///  24:22  21:20  19:17  16:14  13:10  9:5  4:1  0
///  RES0   Op0    Op2    Op1    CRn    Rt   CRm  Direction (1 = read)
/// ```
///
/// `rt` 31 is `xzr`: an `MSR` from it writes 0 and an `MRS` to it discards
/// the value. `op0` 0b01 is a system instruction (`SYS`/`SYSL`: `DC`, `IC`,
/// `AT`, `TLBI`), 0b10 debug/trace registers, 0b11 the other registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegIss {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
    /// The general-purpose register transferred (0..=31; 31 is `xzr`).
    pub rt: u8,
    /// `Read` for `MRS`/`SYSL`, `Write` for `MSR`/`SYS`.
    pub direction: Direction,
}

impl SysRegIss {
    pub const fn from_iss(iss: u64) -> Self {
        Self {
            op0: ((iss >> 20) & 0x3) as u8,
            op2: ((iss >> 17) & 0x7) as u8,
            op1: ((iss >> 14) & 0x7) as u8,
            crn: ((iss >> 10) & 0xf) as u8,
            rt: ((iss >> 5) & 0x1f) as u8,
            crm: ((iss >> 1) & 0xf) as u8,
            direction: if iss & 1 != 0 { Direction::Read } else { Direction::Write },
        }
    }

    /// The ISS encoding (fields masked to their widths).
    pub const fn iss(self) -> u64 {
        ((self.op0 as u64 & 0x3) << 20)
            | ((self.op2 as u64 & 0x7) << 17)
            | ((self.op1 as u64 & 0x7) << 14)
            | ((self.crn as u64 & 0xf) << 10)
            | ((self.rt as u64 & 0x1f) << 5)
            | ((self.crm as u64 & 0xf) << 1)
            | match self.direction {
                Direction::Read => 1,
                Direction::Write => 0,
            }
    }

    /// The register (or instruction) accessed, as a matchable key.
    pub const fn reg(self) -> SysReg {
        SysReg::from_parts(self.op0, self.op1, self.crn, self.crm, self.op2)
    }

    /// An access to `reg` through `rt`.
    pub const fn new(reg: SysReg, rt: u8, direction: Direction) -> Self {
        Self {
            op0: reg.op0(),
            op1: reg.op1(),
            crn: reg.crn(),
            crm: reg.crm(),
            op2: reg.op2(),
            rt: rt & 0x1f,
            direction,
        }
    }

    pub const fn is_read(self) -> bool {
        matches!(self.direction, Direction::Read)
    }
}

/// Formats general-purpose register `n` as `x<n>`, or `xzr` for 31.
struct XReg(u8);

impl fmt::Display for XReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 31 {
            f.write_str("xzr")
        } else {
            write!(f, "x{}", self.0)
        }
    }
}

/// The trapped instruction in assembler syntax: `MRS x1, MDCCSR_EL0`,
/// `MSR DBGDTRTX_EL0, x2`, `SYS #0, C7, C14, #1, x0`.
impl fmt::Display for SysRegIss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rt = XReg(self.rt);
        if self.op0 < 2 {
            let (op1, crn, crm, op2) = (self.op1, self.crn, self.crm, self.op2);
            return match self.direction {
                Direction::Write => write!(f, "SYS #{op1}, C{crn}, C{crm}, #{op2}, {rt}"),
                Direction::Read => write!(f, "SYSL {rt}, #{op1}, C{crn}, C{crm}, #{op2}"),
            };
        }
        let name = self.reg().display(self.direction);
        match self.direction {
            Direction::Read => write!(f, "MRS {rt}, {name}"),
            Direction::Write => write!(f, "MSR {name}, {rt}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn sysreg_instructions_encode_as_the_assembler_does() {
        // From GNU as: mrs x0, mdccsr_el0; msr dbgdtrtx_el0, x0;
        // mrs x3, dbgbcr5_el1; msr dbgwvr15_el1, x30.
        assert_eq!(SysReg::MDCCSR_EL0.mrs(0), 0xd533_0100);
        assert_eq!(SysReg::DBGDTRTX_EL0.msr(0), 0xd513_0500);
        assert_eq!(SysReg::breakpoint(BreakpointReg::Bcr, 5).mrs(3), 0xd530_05a3);
        assert_eq!(SysReg::breakpoint(BreakpointReg::Wvr, 15).msr(30), 0xd510_0fde);
    }

    #[test]
    fn external_abort_on_unbacked_read() {
        // QEMU's syndrome for an EL1 load from an unbacked physical address.
        let esr = Esr(0x9600_0010);
        assert_eq!(esr.class(), ExceptionClass::DataAbortSame);
        assert!(esr.il());
        let abort = esr.abort().unwrap();
        assert_eq!(abort.fault(), FaultStatus::SyncExternal);
        assert!(!abort.isv());
        assert!(!abort.wnr());
        assert!(abort.far_valid());
    }

    #[test]
    fn stage2_translation_fault_with_valid_syndrome() {
        // LDR w1, [x0] from EL1 hitting an unmapped IPA: ISV, 32-bit, SRT=1, level 1.
        let esr = Esr(0x9381_0005);
        assert_eq!(esr.class(), ExceptionClass::DataAbortLower);
        let abort = esr.abort().unwrap();
        assert!(abort.isv());
        assert_eq!(abort.access_size(), 4);
        assert_eq!(abort.srt(), 1);
        assert_eq!(abort.fault(), FaultStatus::Translation { level: 1 });
        assert_eq!(abort.fault().level(), Some(1));
    }

    #[test]
    fn calls_carry_their_immediate() {
        let hvc = Esr(0x5a00_0000 | 0x1234);
        assert_eq!(hvc.class(), ExceptionClass::Hvc64);
        assert_eq!(hvc.imm16(), 0x1234);
        assert_eq!(Esr(0x5e00_0000).class(), ExceptionClass::Smc64);
        assert_eq!(Esr(0xf200_4711).class(), ExceptionClass::Brk64);
        assert_eq!(Esr(0xf200_4711).imm16(), 0x4711);
        assert!(Esr(0x5a00_0000).abort().is_none());
    }

    #[test]
    fn build_round_trips() {
        let esr = Esr::new(ExceptionClass::DataAbortSame, true, FaultStatus::SYNC_EXTERNAL_CODE as u64);
        assert_eq!(esr, Esr(0x9600_0010));
        for ec in 0..64u8 {
            assert_eq!(ExceptionClass::from_ec(ec).ec(), ec);
        }
    }

    // --- data aborts: ESR values computed from the ISS layout ---------------
    // EC 0x24 (lower EL) << 26 = 0x9000_0000, IL = 0x0200_0000, ISV = 0x0100_0000,
    // SAS << 22, SSE = 0x0020_0000, SRT << 16, SF = 0x8000, AR = 0x4000,
    // CM = 0x100, S1PTW = 0x80, WnR = 0x40, DFSC in [5:0].

    #[test]
    fn ldrsb_x3_is_signed_byte_into_64_bit_register() {
        // LDRSB X3, [X0]: SAS=0, SSE=1, SRT=3, SF=1, level-3 translation fault.
        let esr = Esr(0x9323_8007);
        assert!(esr.is_data_abort());
        let a = esr.abort().unwrap();
        assert!(a.isv() && a.sse() && a.sf() && !a.ar() && !a.wnr());
        assert_eq!(a.access_size(), 1);
        assert_eq!(a.srt(), 3);
        assert_eq!(a.direction(), Direction::Read);
        assert_eq!(a.fault(), FaultStatus::Translation { level: 3 });
    }

    #[test]
    fn stlr_w2_has_acquire_release_and_write() {
        // STLR W2, [X0]: SAS=2, SRT=2, SF=0, AR=1, WnR=1, level 3.
        let a = Esr(0x9382_4047).abort().unwrap();
        assert!(a.isv() && a.ar() && a.wnr() && !a.sf() && !a.sse());
        assert_eq!((a.access_size(), a.srt()), (4, 2));
        assert_eq!(a.direction(), Direction::Write);
    }

    #[test]
    fn stp_has_no_instruction_syndrome() {
        // STP X0, X1, [X2]: ISV=0, WnR=1, level-2 translation fault.
        let esr = Esr(0x9200_0046);
        let a = esr.abort().unwrap();
        assert!(!a.isv());
        assert!(a.wnr());
        assert_eq!(a.fault(), FaultStatus::Translation { level: 2 });
        assert_eq!(std::format!("{esr}"), "0x92000046 (DataAbortLower, translation fault, level 2)");
    }

    #[test]
    fn abort_flag_bits() {
        // DC CIVAC on an unmapped IPA: CM=1, WnR=1 (as the architecture reports CMOs).
        let a = Esr(0x9200_0147).abort().unwrap();
        assert!(a.cm() && a.wnr() && !a.isv() && !a.s1ptw());
        // Stage-2 fault on a stage-1 table walk.
        let a = Esr(0x9200_0087).abort().unwrap();
        assert!(a.s1ptw() && !a.cm());
        // External abort with FnV and EA, SET = 0b10 (restartable).
        let a = Esr(0x9600_1610).abort().unwrap();
        assert!(a.fnv() && !a.far_valid() && a.ea());
        assert_eq!(a.set(), 2);
        assert_eq!(a.fault(), FaultStatus::SyncExternal);
        // VNCR.
        assert!(AbortIss(AbortIss::VNCR).vncr());
        assert!(!Esr(0x9600_0010).abort().unwrap().vncr());
    }

    #[test]
    fn display_of_data_abort_with_syndrome() {
        let text = std::format!("{}", Esr(0x9381_0005));
        assert_eq!(text, "0x93810005 (DataAbortLower, translation fault, level 1, read 4 bytes via x1)");
    }

    #[test]
    fn fault_status_codes_round_trip() {
        for code in 0..64u8 {
            assert_eq!(FaultStatus::from_code(code).code(), code, "{code:#x}");
        }
        assert_eq!(FaultStatus::from_code(0x08), FaultStatus::AccessFlag { level: 0 });
        assert_eq!(FaultStatus::from_code(0x0c), FaultStatus::Permission { level: 0 });
        assert_eq!(FaultStatus::from_code(0x22), FaultStatus::Debug);
        assert_eq!(FaultStatus::from_code(0x35), FaultStatus::UnsupportedExclusiveOrAtomic);
        assert_eq!(FaultStatus::from_code(0x1d).level(), Some(1));
        assert_eq!(FaultStatus::from_code(0x3f), FaultStatus::Other(0x3f));
        // Out-of-range inputs are masked, never trusted.
        assert_eq!(FaultStatus::from_code(0xff).code(), 0x3f);
        assert_eq!(FaultStatus::Translation { level: 7 }.code(), 0x07);
    }

    // --- builders ------------------------------------------------------

    #[test]
    fn brk_builder_matches_hardware() {
        // Linux BUG(): BRK #0x800 gives ESR 0xf2000800 at EL1.
        assert_eq!(Esr::brk(0x800), Esr(0xf200_0800));
        assert_eq!(Esr::brk(0x800).brk_comment(), Some(0x800));
        assert_eq!(Esr::brk(0xffff).0, 0xf200_ffff);
        assert!(Esr::brk(0).il());
        assert_eq!(Esr(0x5a00_0000).brk_comment(), None);
    }

    #[test]
    fn undefined_builder() {
        assert_eq!(Esr::undefined(), Esr(0x0200_0000));
        assert_eq!(Esr::undefined().class(), ExceptionClass::Unknown);
    }

    #[test]
    fn data_abort_builder() {
        // Same EL (EL1 -> EL1), synchronous external abort, read.
        let esr = Esr::data_abort(Origin::SameEl, FaultStatus::SyncExternal, false);
        assert_eq!(esr, Esr(0x9600_0010));
        // Same EL, write.
        let esr = Esr::data_abort(Origin::SameEl, FaultStatus::SyncExternal, true);
        assert_eq!(esr, Esr(0x9600_0050));
        // Lower EL (EL0 -> EL1), level-3 translation fault, read.
        let esr = Esr::data_abort(Origin::LowerEl, FaultStatus::Translation { level: 3 }, false);
        assert_eq!(esr, Esr(0x9200_0007));
        assert!(!esr.abort().unwrap().isv());
        // Lower EL, level-2 permission fault, write.
        let esr = Esr::data_abort(Origin::LowerEl, FaultStatus::Permission { level: 2 }, true);
        assert_eq!(esr, Esr(0x9200_004e));
    }

    #[test]
    fn instruction_abort_builder() {
        let esr = Esr::instruction_abort(Origin::SameEl, FaultStatus::Translation { level: 1 });
        assert_eq!(esr, Esr(0x8600_0005));
        let esr = Esr::instruction_abort(Origin::LowerEl, FaultStatus::SyncExternal);
        assert_eq!(esr, Esr(0x8200_0010));
    }

    #[test]
    fn debug_classes_retarget_between_lower_and_same() {
        // Breakpoint from EL1 as EL2 sees it under TDE: EC 0x30, IFSC 0x22.
        let at_el2 = Esr(0xc200_0022);
        assert_eq!(at_el2.class(), ExceptionClass::BreakpointLower);
        assert_eq!(at_el2.abort(), None);
        // Reflected to EL1 from EL1: EC 0x31.
        let reflected = at_el2.with_origin(Origin::SameEl);
        assert_eq!(reflected, Esr(0xc600_0022));
        assert_eq!(reflected.class(), ExceptionClass::BreakpointSame);
        // From EL0 the class stays "lower".
        assert_eq!(at_el2.with_origin(Origin::LowerEl), at_el2);
        // Software step (0x32 -> 0x33), ISV and EX kept.
        assert_eq!(Esr(0xcb00_0062).with_origin(Origin::SameEl), Esr(0xcf00_0062));
        // Watchpoint write (0x34 -> 0x35), WnR kept.
        assert_eq!(Esr(0xd200_0062).with_origin(Origin::SameEl), Esr(0xd600_0062));
        // Data and instruction aborts.
        assert_eq!(Esr(0x9381_0005).with_origin(Origin::SameEl), Esr(0x9781_0005));
        assert_eq!(Esr(0x8600_0005).with_origin(Origin::LowerEl), Esr(0x8200_0005));
        // Classes without a pair are untouched, upper bits included.
        assert_eq!(Esr::brk(0x800).with_origin(Origin::SameEl), Esr::brk(0x800));
        assert_eq!(Esr(0x1f_5a00_0000).with_origin(Origin::SameEl), Esr(0x1f_5a00_0000));
        assert_eq!(ExceptionClass::BreakpointSame.origin(), Some(Origin::SameEl));
        assert_eq!(ExceptionClass::WatchpointLower.origin(), Some(Origin::LowerEl));
        assert_eq!(ExceptionClass::Brk64.origin(), None);
        for ec in 0..64u8 {
            let class = ExceptionClass::from_ec(ec);
            if let Some(origin) = class.origin() {
                assert_eq!(class.with_origin(origin), class);
                let other = match origin {
                    Origin::LowerEl => Origin::SameEl,
                    Origin::SameEl => Origin::LowerEl,
                };
                assert_eq!(class.with_origin(other).ec() ^ ec, 1);
            } else {
                assert_eq!(class.with_origin(Origin::SameEl), class);
            }
        }
    }

    #[test]
    fn call_immediates_are_typed_by_class() {
        assert_eq!(Esr(0x5a00_0001).hvc_imm(), Some(1));
        assert_eq!(Esr(0x5a00_0001).smc_imm(), None);
        assert_eq!(Esr(0x5e00_0000).smc_imm(), Some(0));
        assert_eq!(Esr(0x5600_0042).svc_imm(), Some(0x42));
        assert_eq!(Esr(0x5600_0042).hvc_imm(), None);
        assert_eq!(std::format!("{}", Esr(0xf200_0800)), "0xf2000800 (Brk64, #0x800)");
        assert_eq!(std::format!("{}", Esr(0x5a00_0000)), "0x5a000000 (Hvc64, #0x0)");
        assert_eq!(Esr(0x1f_5a00_0000).iss2(), 0x1f);
    }

    // --- trapped MSR/MRS: ESR values computed from the ISS layout ---------
    // EC 0x18 << 26 = 0x6000_0000, IL = 0x0200_0000; Op0 << 20, Op2 << 17,
    // Op1 << 14, CRn << 10, Rt << 5, CRm << 1, bit 0 = 1 for a read.

    #[test]
    fn mrs_mdccsr_el0() {
        // MRS X1, MDCCSR_EL0: (2, 3, 0, 1, 0), Rt=1, read.
        let esr = Esr(0x6220_c023);
        assert_eq!(esr.class(), ExceptionClass::SysReg);
        let iss = esr.sys_reg().unwrap();
        assert_eq!(iss, SysRegIss { op0: 2, op1: 3, crn: 0, crm: 1, op2: 0, rt: 1, direction: Direction::Read });
        assert_eq!(iss.reg(), SysReg::MDCCSR_EL0);
        assert!(iss.is_read());
        assert_eq!(std::format!("{iss}"), "MRS x1, MDCCSR_EL0");
        assert_eq!(std::format!("{esr}"), "0x6220c023 (SysReg, MRS x1, MDCCSR_EL0)");
        assert_eq!(Esr::sys_reg_trap(iss), esr);
    }

    #[test]
    fn msr_dbgdtrtx_el0() {
        // MSR DBGDTRTX_EL0, X2: (2, 3, 0, 5, 0), Rt=2, write.
        let esr = Esr(0x6220_c04a);
        let iss = esr.sys_reg().unwrap();
        assert_eq!(iss.reg(), SysReg::DBGDTRTX_EL0);
        assert_eq!(iss.reg(), SysReg::DBGDTRRX_EL0);
        assert_eq!((iss.rt, iss.direction), (2, Direction::Write));
        assert_eq!(std::format!("{iss}"), "MSR DBGDTRTX_EL0, x2");
        // The read of the same encoding is DBGDTRRX_EL0.
        let read = SysRegIss { direction: Direction::Read, ..iss };
        assert_eq!(std::format!("{read}"), "MRS x2, DBGDTRRX_EL0");
        assert_eq!(std::format!("{}", SysReg::DBGDTRRX_EL0), "DBGDTRRX_EL0/DBGDTRTX_EL0");
    }

    #[test]
    fn msr_mdscr_el1_and_oslar_from_xzr() {
        // MSR MDSCR_EL1, X0: (2, 0, 0, 2, 2).
        let iss = Esr(0x6224_0004).sys_reg().unwrap();
        assert_eq!(iss.reg(), SysReg::MDSCR_EL1);
        assert_eq!(std::format!("{iss}"), "MSR MDSCR_EL1, x0");
        // MSR OSLAR_EL1, XZR: (2, 0, 1, 0, 4), Rt=31.
        let iss = Esr(0x6228_07e0).sys_reg().unwrap();
        assert_eq!(iss.reg(), SysReg::OSLAR_EL1);
        assert_eq!(iss.rt, 31);
        assert_eq!(std::format!("{iss}"), "MSR OSLAR_EL1, xzr");
    }

    #[test]
    fn mrs_breakpoint_and_auth_registers() {
        // MRS X5, DBGBCR3_EL1: (2, 0, 0, 3, 5).
        let iss = Esr(0x622a_00a7).sys_reg().unwrap();
        assert_eq!(iss.reg(), SysReg::dbgbcr(3));
        assert_eq!(iss.reg().breakpoint_reg(), Some((BreakpointReg::Bcr, 3)));
        assert_eq!(std::format!("{iss}"), "MRS x5, DBGBCR3_EL1");
        // MRS X0, DBGAUTHSTATUS_EL1: (2, 0, 7, 14, 6).
        let iss = Esr(0x622c_1c1d).sys_reg().unwrap();
        assert_eq!(iss.reg(), SysReg::DBGAUTHSTATUS_EL1);
        assert_eq!(iss.reg().breakpoint_reg(), None);
        assert_eq!(std::format!("{iss}"), "MRS x0, DBGAUTHSTATUS_EL1");
    }

    #[test]
    fn sys_reg_encodings_and_names() {
        let cases = [
            (SysReg::MDCCSR_EL0, (2, 3, 0, 1, 0), "MDCCSR_EL0"),
            (SysReg::DBGDTR_EL0, (2, 3, 0, 4, 0), "DBGDTR_EL0"),
            (SysReg::MDSCR_EL1, (2, 0, 0, 2, 2), "MDSCR_EL1"),
            (SysReg::MDCCINT_EL1, (2, 0, 0, 2, 0), "MDCCINT_EL1"),
            (SysReg::OSDTRRX_EL1, (2, 0, 0, 0, 2), "OSDTRRX_EL1"),
            (SysReg::OSDTRTX_EL1, (2, 0, 0, 3, 2), "OSDTRTX_EL1"),
            (SysReg::OSECCR_EL1, (2, 0, 0, 6, 2), "OSECCR_EL1"),
            (SysReg::MDRAR_EL1, (2, 0, 1, 0, 0), "MDRAR_EL1"),
            (SysReg::OSLAR_EL1, (2, 0, 1, 0, 4), "OSLAR_EL1"),
            (SysReg::OSLSR_EL1, (2, 0, 1, 1, 4), "OSLSR_EL1"),
            (SysReg::OSDLR_EL1, (2, 0, 1, 3, 4), "OSDLR_EL1"),
            (SysReg::DBGPRCR_EL1, (2, 0, 1, 4, 4), "DBGPRCR_EL1"),
            (SysReg::DBGCLAIMSET_EL1, (2, 0, 7, 8, 6), "DBGCLAIMSET_EL1"),
            (SysReg::DBGCLAIMCLR_EL1, (2, 0, 7, 9, 6), "DBGCLAIMCLR_EL1"),
            (SysReg::DBGAUTHSTATUS_EL1, (2, 0, 7, 14, 6), "DBGAUTHSTATUS_EL1"),
            (SysReg::DBGVCR32_EL2, (2, 4, 0, 7, 0), "DBGVCR32_EL2"),
            (SysReg::dbgbvr(0), (2, 0, 0, 0, 4), "DBGBVR0_EL1"),
            (SysReg::dbgbcr(15), (2, 0, 0, 15, 5), "DBGBCR15_EL1"),
            (SysReg::dbgwvr(1), (2, 0, 0, 1, 6), "DBGWVR1_EL1"),
            (SysReg::dbgwcr(7), (2, 0, 0, 7, 7), "DBGWCR7_EL1"),
            (SysReg::from_parts(2, 3, 0, 1, 1), (2, 3, 0, 1, 1), "S2_3_C0_C1_1"),
            (SysReg::from_parts(3, 3, 14, 0, 2), (3, 3, 14, 0, 2), "S3_3_C14_C0_2"),
        ];
        for (reg, (op0, op1, crn, crm, op2), name) in cases {
            assert_eq!(reg, SysReg::from_parts(op0, op1, crn, crm, op2), "{name}");
            assert_eq!((reg.op0(), reg.op1(), reg.crn(), reg.crm(), reg.op2()), (op0, op1, crn, crm, op2));
            assert_eq!(std::format!("{reg}"), name);
            assert!(reg.is_debug() == (op0 == 2), "{name}");
            // Every access through the ISS round-trips.
            for direction in [Direction::Read, Direction::Write] {
                for rt in [0, 17, 31] {
                    let iss = SysRegIss::new(reg, rt, direction);
                    let esr = Esr::sys_reg_trap(iss);
                    assert_eq!(esr.sys_reg(), Some(iss));
                    assert_eq!(esr.iss() & !0x003f_ffff, 0, "RES0 bits stay clear");
                }
            }
        }
        // The packed key is the instruction's bits [20:5].
        // op0=0b10, op1=0b011, CRn=0b0000, CRm=0b0001, op2=0b000.
        assert_eq!(SysReg::MDCCSR_EL0.bits(), 0x9808);
        // Fields wider than their encoding are masked, not spilled.
        assert_eq!(SysReg::from_parts(0xff, 0xff, 0xff, 0xff, 0xff).bits(), 0xffff);
        assert_eq!(SysReg::dbgbvr(16), SysReg::dbgbvr(0));
        assert_eq!(SysReg::from_parts(2, 0, 0, 3, 3).breakpoint_reg(), None);
        assert_eq!(SysReg::from_parts(2, 0, 1, 3, 4).breakpoint_reg(), None);
    }

    #[test]
    fn system_instructions_display_as_sys() {
        // DC CIVAC, X0 is SYS #3, C7, C14, #1, X0: op0=1.
        let iss = SysRegIss::new(SysReg::from_parts(1, 3, 7, 14, 1), 0, Direction::Write);
        assert_eq!(std::format!("{iss}"), "SYS #3, C7, C14, #1, x0");
        let iss = SysRegIss { direction: Direction::Read, rt: 4, ..iss };
        assert_eq!(std::format!("{iss}"), "SYSL x4, #3, C7, C14, #1");
        assert_eq!(Esr(0x9600_0010).sys_reg(), None);
    }
}
