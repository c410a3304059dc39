//! Decoding of exception syndromes (`ESR_ELx`) into typed values.
//!
//! Pure logic, host-tested on ESR values captured from QEMU. Every handler
//! that reports or answers an exception goes through here rather than
//! shifting bits itself.

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
    Brk64,
    /// A class this decoder does not name; the raw EC value.
    Other(u8),
}

impl ExceptionClass {
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
            Self::Brk64 => 0x3c,
            Self::Other(ec) => ec,
        }
    }
}

/// A decoded syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    pub const EC_SHIFT: u32 = 26;
    /// IL, bit 25: the trapped instruction was 32 bits long.
    pub const IL: u64 = 1 << 25;
    pub const ISS_MASK: u64 = (1 << 25) - 1;

    pub const fn class(self) -> ExceptionClass {
        ExceptionClass::from_ec(((self.0 >> Self::EC_SHIFT) & 0x3f) as u8)
    }

    pub const fn iss(self) -> u64 {
        self.0 & Self::ISS_MASK
    }

    pub const fn il(self) -> bool {
        self.0 & Self::IL != 0
    }

    /// Builds a syndrome from its parts (used to inject exceptions).
    pub const fn new(class: ExceptionClass, il: bool, iss: u64) -> Self {
        Self(
            ((class.ec() as u64) << Self::EC_SHIFT)
                | if il { Self::IL } else { 0 }
                | (iss & Self::ISS_MASK),
        )
    }

    /// The 16-bit immediate of an `HVC`, `SMC`, `SVC` or `BRK`.
    pub const fn imm16(self) -> u16 {
        (self.0 & 0xffff) as u16
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
}

impl core::fmt::Display for Esr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#010x} ({:?}", self.0, self.class())?;
        if let Some(abort) = self.abort() {
            write!(f, ", {}", abort.fault())?;
            if self.class().ec() & 0x04 != 0 && abort.isv() {
                write!(
                    f,
                    ", {} {} bytes via x{}",
                    if abort.wnr() { "write" } else { "read" },
                    abort.access_size(),
                    abort.srt()
                )?;
            }
        }
        write!(f, ")")
    }
}

/// The ISS of an instruction or data abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortIss(pub u64);

impl AbortIss {
    /// ISV, bit 24: the SAS, SSE, SRT, SF and AR fields are valid.
    pub const ISV: u64 = 1 << 24;
    /// WnR, bit 6: the access was a write.
    pub const WNR: u64 = 1 << 6;
    /// S1PTW, bit 7: the fault happened on a stage-1 table walk.
    pub const S1PTW: u64 = 1 << 7;
    /// FnV, bit 10: FAR is not valid.
    pub const FNV: u64 = 1 << 10;

    pub const fn isv(self) -> bool {
        self.0 & Self::ISV != 0
    }
    /// Access size in bytes (SAS, [23:22]).
    pub const fn access_size(self) -> u32 {
        1 << ((self.0 >> 22) & 3)
    }
    /// The transfer register (SRT, [20:16]).
    pub const fn srt(self) -> usize {
        ((self.0 >> 16) & 0x1f) as usize
    }
    /// Sign-extend the loaded value (SSE, bit 21).
    pub const fn sse(self) -> bool {
        self.0 & (1 << 21) != 0
    }
    /// 64-bit register (SF, bit 15).
    pub const fn sf(self) -> bool {
        self.0 & (1 << 15) != 0
    }
    /// Acquire/release semantics (AR, bit 14).
    pub const fn ar(self) -> bool {
        self.0 & (1 << 14) != 0
    }
    pub const fn wnr(self) -> bool {
        self.0 & Self::WNR != 0
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
    AddressSize { level: u8 },
    Translation { level: u8 },
    AccessFlag { level: u8 },
    Permission { level: u8 },
    /// Synchronous external abort, not on a table walk.
    SyncExternal,
    SyncExternalOnWalk { level: u8 },
    Alignment,
    TlbConflict,
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
            0x09..=0x0b => Self::AccessFlag { level },
            0x0d..=0x0f => Self::Permission { level },
            0x10 => Self::SyncExternal,
            0x14..=0x17 => Self::SyncExternalOnWalk { level },
            0x21 => Self::Alignment,
            0x30 => Self::TlbConflict,
            other => Self::Other(other),
        }
    }

    /// The translation-table level a level-specific fault names.
    pub const fn level(self) -> Option<u8> {
        match self {
            Self::AddressSize { level }
            | Self::Translation { level }
            | Self::AccessFlag { level }
            | Self::Permission { level }
            | Self::SyncExternalOnWalk { level } => Some(level),
            _ => None,
        }
    }
}

impl core::fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::AddressSize { level } => write!(f, "address-size fault, level {level}"),
            Self::Translation { level } => write!(f, "translation fault, level {level}"),
            Self::AccessFlag { level } => write!(f, "access-flag fault, level {level}"),
            Self::Permission { level } => write!(f, "permission fault, level {level}"),
            Self::SyncExternal => write!(f, "synchronous external abort"),
            Self::SyncExternalOnWalk { level } => {
                write!(f, "synchronous external abort on table walk, level {level}")
            }
            Self::Alignment => write!(f, "alignment fault"),
            Self::TlbConflict => write!(f, "TLB conflict"),
            Self::Other(code) => write!(f, "fault status {code:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let esr = Esr::new(
            ExceptionClass::DataAbortSame,
            true,
            FaultStatus::SYNC_EXTERNAL_CODE as u64,
        );
        assert_eq!(esr, Esr(0x9600_0010));
        for ec in 0..64u8 {
            assert_eq!(ExceptionClass::from_ec(ec).ec(), ec);
        }
    }
}
