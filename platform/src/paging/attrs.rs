//! Leaf descriptor attributes: what a mapping allows, and how each stage-1
//! translation regime encodes it.
//!
//! Bit positions are those of the VMSAv8-64 stage-1 block and page
//! descriptors (Arm ARM DDI 0487, "Stage 1 translation table descriptor
//! fields" / "Block descriptor and Page descriptor formats"):
//!
//! ```text
//!  54      UXN (EL1&0, EL2&0) or XN (EL2 with E2H = 0)
//!  53      PXN (EL1&0, EL2&0); RES0 in EL2 with E2H = 0
//!  11      nG  (EL1&0, EL2&0); RES0 in EL2 with E2H = 0
//!  10      AF
//!  9:8     SH
//!  7:6     AP[2:1]
//!  4:2     AttrIndx (index into MAIR_ELx)
//! ```
//!
//! # AP\[1\] in the EL2 regime
//!
//! With `HCR_EL2.E2H == 0` the EL2 regime supports one Exception level, and
//! the Arm ARM (DDI 0487K.a, D8.4.1.2.1, "Stage 1 data accesses using Direct
//! permissions") says: "For a stage 1 translation that supports one
//! Exception level, AP\[1\] is RES1". So [`encode`] sets bit 6 in every
//! [`Regime::El2`] descriptor and lets only AP\[2\] (bit 7) carry read-only.
//! Linux's nVHE hypervisor tables do the same (`arch/arm64/kvm/hyp/pgtable.c`:
//! `KVM_PTE_LEAF_ATTR_LO_S1_AP_RW` is 1 and `_AP_RO` is 3, i.e. AP\[2:1\] =
//! `0b01` / `0b11`).
//!
//! The same bit means "EL0 may access" in the EL1&0 and EL2&0 regimes, so a
//! descriptor written for [`Regime::El2`] and then walked by the EL1&0 regime
//! (a subtree shared between the split-scheme kernel and its EL0 service)
//! grants EL0 access, and EL0-writable memory is never privileged-executable
//! (the architecture forces PXN). Build the entries of a shared subtree with
//! the encoding of the regime that will use them.

use core::fmt;

/// `MAIR_ELx` attribute index of Device-nGnRE memory (attribute `0x04`).
pub const MAIR_IDX_DEVICE: u64 = 0;
/// `MAIR_ELx` attribute index of Normal memory, inner and outer write-back,
/// read- and write-allocate, non-transient (attribute `0xff`).
pub const MAIR_IDX_NORMAL: u64 = 1;
/// `MAIR_ELx` attribute value for Device-nGnRE.
pub const MAIR_ATTR_DEVICE_NGNRE: u64 = 0x04;
/// `MAIR_ELx` attribute value for Normal write-back RW-allocate memory.
pub const MAIR_ATTR_NORMAL_WB: u64 = 0xff;
/// The `MAIR_EL2` value (also valid for `MAIR_EL1`) that the `AttrIndx`
/// values [`encode`] writes refer to.
pub const MAIR_EL2_VALUE: u64 =
    (MAIR_ATTR_DEVICE_NGNRE << (8 * MAIR_IDX_DEVICE)) | (MAIR_ATTR_NORMAL_WB << (8 * MAIR_IDX_NORMAL));

/// Descriptor bit positions, for decoding what a walk found (see the table
/// at the top of this module).
pub mod bits {
    /// Bit 0: the descriptor is valid.
    pub const VALID: u64 = 1 << 0;
    /// Bit 1: table (levels 0 to 2) or page (level 3); clear for a block.
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// Shift of the 3-bit `AttrIndx` field.
    pub const ATTR_INDX_SHIFT: u32 = 2;
    /// The `AttrIndx` field.
    pub const ATTR_INDX_MASK: u64 = 0b111 << ATTR_INDX_SHIFT;
    /// AP\[1\]: EL0 access (EL1&0, EL2&0), RES1 in EL2 with `E2H == 0`.
    pub const AP_1: u64 = 1 << 6;
    /// AP\[2\]: read-only.
    pub const AP_2: u64 = 1 << 7;
    /// SH = `0b11`, Inner Shareable.
    pub const SH_INNER: u64 = 0b11 << 8;
    /// The SH field.
    pub const SH_MASK: u64 = 0b11 << 8;
    /// Access flag.
    pub const AF: u64 = 1 << 10;
    /// Not global: the entry is tagged with the current ASID.
    pub const NG: u64 = 1 << 11;
    /// Privileged execute-never (EL1&0, EL2&0).
    pub const PXN: u64 = 1 << 53;
    /// Unprivileged execute-never (EL1&0, EL2&0).
    pub const UXN: u64 = 1 << 54;
    /// Execute-never (EL2 with `E2H == 0`): the same bit as [`UXN`].
    pub const XN: u64 = 1 << 54;
    /// Output address bits \[47:12\] of a table, block or page descriptor.
    pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
}

/// A stage-1 translation regime, which decides the descriptor format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Regime {
    /// EL2 with `HCR_EL2.E2H == 0`: one VA range, no EL0. Bit 54 is XN,
    /// there is no PXN, UXN or nG, and AP\[1\] is RES1.
    El2,
    /// EL2&0 (VHE, `HCR_EL2.E2H == 1`): two VA ranges and EL0.
    El2And0,
    /// EL1&0: two VA ranges and EL0.
    El1And0,
}

impl Regime {
    /// Whether the regime has an unprivileged level (EL0).
    pub const fn has_el0(self) -> bool {
        !matches!(self, Self::El2)
    }

    /// Whether the regime has an upper VA range (`TTBR1`).
    pub const fn has_upper_range(self) -> bool {
        self.has_el0()
    }
}

impl fmt::Display for Regime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::El2 => "EL2",
            Self::El2And0 => "EL2&0",
            Self::El1And0 => "EL1&0",
        })
    }
}

/// The memory type of a mapping; selects the `MAIR` index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Normal memory, write-back cacheable, Inner Shareable.
    Normal,
    /// Device-nGnRE (MMIO).
    Device,
}

/// What EL0 may do with a mapping's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserAccess {
    /// No EL0 data access.
    None,
    /// EL0 may read.
    ReadOnly,
    /// EL0 may read and write.
    ReadWrite,
}

/// What a mapping allows, independent of the regime's encoding.
///
/// The privileged level (EL2, or EL1 in the EL1&0 regime) can always read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// Normal or Device memory.
    pub memory: MemoryType,
    /// The privileged level may write.
    pub writable: bool,
    /// The privileged level (EL2, or EL1) may execute.
    pub executable: bool,
    /// EL0 data access.
    pub user: UserAccess,
    /// EL0 may execute. Independent of `user`: with [`UserAccess::None`]
    /// this is EL0 execute-only memory, which the architecture allows.
    pub user_executable: bool,
    /// The entry is global (not tagged with an ASID).
    pub global: bool,
}

impl Attributes {
    /// Privileged code: Normal, read-only, executable.
    pub const CODE: Self = Self {
        memory: MemoryType::Normal,
        writable: false,
        executable: true,
        user: UserAccess::None,
        user_executable: false,
        global: true,
    };
    /// Privileged read-only data.
    pub const RODATA: Self = Self { executable: false, ..Self::CODE };
    /// Privileged read-write data.
    pub const DATA: Self = Self { writable: true, ..Self::RODATA };
    /// Privileged MMIO: Device-nGnRE, read-write, never executable.
    pub const DEVICE: Self = Self { memory: MemoryType::Device, ..Self::DATA };
}

/// Why [`encode`] cannot express some [`Attributes`] in a [`Regime`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncodeError {
    /// EL0 access or execution was asked for in a regime without EL0
    /// ([`Regime::El2`]).
    NoEl0InRegime,
    /// A non-global entry was asked for in a regime without ASIDs
    /// ([`Regime::El2`], where nG is RES0).
    NoAsidInRegime,
    /// AP\[2:1\] cannot say "privileged read-write, EL0 read-only".
    WritableButUserReadOnly,
    /// AP\[2:1\] cannot say "privileged read-only, EL0 read-write".
    ReadOnlyButUserWritable,
    /// Memory that EL0 can write is never privileged-executable: the
    /// architecture treats it as PXN whatever the descriptor says.
    ExecutableButUserWritable,
    /// Device memory must be execute-never at every level (speculative
    /// instruction fetches must not reach MMIO).
    ExecutableDevice,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoEl0InRegime => "EL0 access requested in the EL2 (E2H=0) regime, which has no EL0",
            Self::NoAsidInRegime => "non-global mapping requested in the EL2 (E2H=0) regime, which has no ASIDs",
            Self::WritableButUserReadOnly => "AP[2:1] cannot encode privileged read-write with EL0 read-only",
            Self::ReadOnlyButUserWritable => "AP[2:1] cannot encode privileged read-only with EL0 read-write",
            Self::ExecutableButUserWritable => {
                "EL0-writable memory cannot be privileged-executable (the architecture forces PXN)"
            }
            Self::ExecutableDevice => "Device memory must not be executable",
        })
    }
}

/// The attribute bits of a block or page descriptor for `attrs` in
/// `regime`: AttrIndx, AP\[2:1\], SH (Inner Shareable for Normal memory,
/// 0 for Device, where it is ignored), AF (always set: nothing here handles
/// Access flag faults), nG and the execute-never bits. The output address
/// and the descriptor type bits are not included.
pub const fn encode(regime: Regime, attrs: Attributes) -> Result<u64, EncodeError> {
    let user_exec = attrs.user_executable;
    if matches!(attrs.memory, MemoryType::Device) && (attrs.executable || user_exec) {
        return Err(EncodeError::ExecutableDevice);
    }
    let mut desc = bits::AF;
    desc |= match attrs.memory {
        MemoryType::Normal => (MAIR_IDX_NORMAL << bits::ATTR_INDX_SHIFT) | bits::SH_INNER,
        MemoryType::Device => MAIR_IDX_DEVICE << bits::ATTR_INDX_SHIFT,
    };
    match regime {
        Regime::El2 => {
            if !matches!(attrs.user, UserAccess::None) || user_exec {
                return Err(EncodeError::NoEl0InRegime);
            }
            if !attrs.global {
                return Err(EncodeError::NoAsidInRegime);
            }
            // AP[1] is RES1 in a regime with one Exception level.
            desc |= bits::AP_1;
            if !attrs.writable {
                desc |= bits::AP_2;
            }
            if !attrs.executable {
                desc |= bits::XN;
            }
        }
        Regime::El2And0 | Regime::El1And0 => {
            desc |= match (attrs.user, attrs.writable) {
                (UserAccess::None, true) => 0,
                (UserAccess::None, false) => bits::AP_2,
                (UserAccess::ReadWrite, true) => bits::AP_1,
                (UserAccess::ReadOnly, false) => bits::AP_2 | bits::AP_1,
                (UserAccess::ReadOnly, true) => return Err(EncodeError::WritableButUserReadOnly),
                (UserAccess::ReadWrite, false) => return Err(EncodeError::ReadOnlyButUserWritable),
            };
            if matches!(attrs.user, UserAccess::ReadWrite) && attrs.executable {
                return Err(EncodeError::ExecutableButUserWritable);
            }
            if !attrs.executable {
                desc |= bits::PXN;
            }
            if !user_exec {
                desc |= bits::UXN;
            }
            if !attrs.global {
                desc |= bits::NG;
            }
        }
    }
    Ok(desc)
}
