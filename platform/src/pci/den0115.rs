//! Arm DEN0115, "PCI Configuration Space Access Firmware Interface": the
//! SMCCC calls through which EL2 (or any Non-secure caller) reads and
//! writes the config space EL3 emulates.
//!
//! The `smccc` crate does not name these calls, so they are defined here
//! from SMCCC's fields ([`crate::abi::fast_call32`]: fast call, SMC32,
//! owner 4 "standard secure service", numbers 0x130..0x134). Sources: the
//! spec's function list and return codes as TF-A implements them
//! (`include/services/pci_svc.h`, `services/std_svc/pci_svc.c`, and the
//! platform hook `pci_get_bus_for_seg`, documented there as mapping
//! directly to `PCI_GET_SEG_INFO`), cross-checked against the callers in
//! FreeBSD (`pci_host_generic_den0115.c`), NetBSD (`pci_smccc.c`) and
//! illumos (`smccc_pci.h`, "DEN0115 return codes (§2.6)").
//!
//! | ID | call | arguments (w1..w4) | results |
//! |----|------|--------------------|---------|
//! | `0x8400_0130` | `PCI_VERSION` | | w0 = version: bit 31 0, major [30:16], minor [15:0]; 1.0 here |
//! | `0x8400_0131` | `PCI_FEATURES` | w1 = function ID | w0 = `SUCCESS` if that call is implemented, else `NOT_SUPPORTED` |
//! | `0x8400_0132` | `PCI_READ` | w1 = SBDF, w2 = offset, w3 = size (1, 2, 4), w4 = 0 | w0 = status, w1 = value |
//! | `0x8400_0133` | `PCI_WRITE` | w1 = SBDF, w2 = offset, w3 = size, w4 = value | w0 = status |
//! | `0x8400_0134` | `PCI_GET_SEG_INFO` | w1 = segment, w2..w4 = 0 | w0 = status, w1 = start bus [7:0] \| end bus [15:8], w2 = next segment (0: none) |
//!
//! SBDF: segment [31:16], bus [15:8], device [7:3], function [2:0].
//! Return codes ([`Status`]): `SUCCESS` 0, `NOT_SUPPORTED` -1,
//! `INVALID_PARAMETER` -2, `NOT_IMPLEMENTED` -3.
//!
//! # Rules this implementation applies
//!
//! - These are SMC32 calls: only the low 32 bits of x1..x4 count (SMCCC),
//!   and x0 carries the 32-bit status sign-extended (as the monitor returns
//!   every SMCCC error), so a caller may test either `w0` or `x0` as signed.
//! - `PCI_READ`/`PCI_WRITE` return `INVALID_PARAMETER` for an access size
//!   other than 1, 2, 4; an offset at or past 4096 or not aligned to the
//!   size (PCI config accesses are naturally aligned, so none crosses a
//!   dword); a segment other than ours; a bus outside the segment's bus
//!   range; and (`PCI_READ`) a non-zero w4, which TF-A also rejects.
//! - A valid address with no function behind it is *not* an error: the
//!   read succeeds with all-ones and the write is dropped, exactly what an
//!   ECAM access returns, and what enumeration relies on (callers such as
//!   SerenityOS treat any failed read as fatal).
//! - `PCI_WRITE` writes the low `size` bytes of w4; higher bits are ignored.
//! - `PCI_GET_SEG_INFO` for a segment we do not have returns
//!   `NOT_IMPLEMENTED` (TF-A's `pci_get_bus_for_seg` contract); a w1 that is
//!   not a 16-bit segment number, or non-zero w2..w4, is `INVALID_PARAMETER`.
//! - Any other function ID, and `PCI_FEATURES` of one, is `NOT_SUPPORTED`.
//!
//! We emulate one segment, 0, whose bus range starts at the shim functions'
//! bus, [`ROOT_BUS`], and ends where the published ECAM window ends
//! ([`SegmentInfo`]).

use super::config::ConfigSpace;
use super::{AccessSize, Bdf, CONFIG_SPACE_SIZE, ROOT_BUS};
use crate::abi::{fast_call32, Owner};
use core::fmt;

/// DEN0115 2.1: the interface version.
pub const PCI_VERSION: u32 = fast_call32(Owner::StandardSecure, 0x130);
/// DEN0115 2.2: whether a call is implemented.
pub const PCI_FEATURES: u32 = fast_call32(Owner::StandardSecure, 0x131);
/// DEN0115 2.3: read a config register.
pub const PCI_READ: u32 = fast_call32(Owner::StandardSecure, 0x132);
/// DEN0115 2.4: write a config register.
pub const PCI_WRITE: u32 = fast_call32(Owner::StandardSecure, 0x133);
/// DEN0115 2.5: a segment's bus range and the next segment.
pub const PCI_GET_SEG_INFO: u32 = fast_call32(Owner::StandardSecure, 0x134);

/// Every DEN0115 call; `PCI_FEATURES` answers `SUCCESS` for each.
pub const FUNCTIONS: [u32; 5] = [PCI_VERSION, PCI_FEATURES, PCI_READ, PCI_WRITE, PCI_GET_SEG_INFO];

pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 0;
/// What `PCI_VERSION` returns: major in [30:16], minor in [15:0].
pub const VERSION: u32 = ((VERSION_MAJOR as u32) << 16) | VERSION_MINOR as u32;

/// Whether `function_id` is one of the DEN0115 calls.
pub const fn is_pci_call(function_id: u32) -> bool {
    matches!(function_id, PCI_VERSION | PCI_FEATURES | PCI_READ | PCI_WRITE | PCI_GET_SEG_INFO)
}

/// DEN0115's return codes (w0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Success = 0,
    NotSupported = -1,
    InvalidParameter = -2,
    NotImplemented = -3,
}

impl Status {
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// x0 as the monitor returns it: the code sign-extended to 64 bits.
    pub const fn x0(self) -> u64 {
        self.code() as i64 as u64
    }

    /// The status in a reply's x0 (only its low 32 bits: an SMC32 result).
    pub const fn from_x0(x0: u64) -> Option<Self> {
        match x0 as u32 as i32 {
            0 => Some(Self::Success),
            -1 => Some(Self::NotSupported),
            -2 => Some(Self::InvalidParameter),
            -3 => Some(Self::NotImplemented),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::NotSupported => "NOT_SUPPORTED",
            Self::InvalidParameter => "INVALID_PARAMETER",
            Self::NotImplemented => "NOT_IMPLEMENTED",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// A function's address across segments: DEN0115's 32-bit SBDF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sbdf {
    pub segment: u16,
    pub bdf: Bdf,
}

impl Sbdf {
    /// Decodes w1 of `PCI_READ`/`PCI_WRITE`; every 32-bit value is one.
    pub const fn from_u32(sbdf: u32) -> Self {
        Self { segment: (sbdf >> 16) as u16, bdf: Bdf::from_routing_id(sbdf as u16) }
    }

    pub const fn to_u32(self) -> u32 {
        ((self.segment as u32) << 16) | self.bdf.routing_id() as u32
    }
}

impl fmt::Display for Sbdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{}", self.segment, self.bdf)
    }
}

/// Why a call failed; [`CallError::status`] is what the caller sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Not a DEN0115 function ID (or `PCI_FEATURES` asked about one).
    UnknownFunction(u32),
    /// The access size (w3) is not 1, 2 or 4.
    AccessSize(u32),
    /// The register offset (w2) is 4096 or more.
    Offset(u32),
    /// The offset is not a multiple of the access size.
    Misaligned { offset: u16, size: AccessSize },
    /// A reserved argument register (w`register`) is not zero.
    Reserved { register: u8, value: u32 },
    /// `PCI_GET_SEG_INFO`'s w1 is wider than a 16-bit segment number.
    SegmentNumber(u32),
    /// A read or write names a segment other than ours.
    NoSuchSegment(u16),
    /// A read or write names a bus outside the segment's bus range.
    BusOutOfRange { bus: u8, start: u8, end: u8 },
    /// `PCI_GET_SEG_INFO` asks about a segment we do not implement.
    SegmentNotImplemented(u16),
}

impl CallError {
    /// The DEN0115 return code for this error.
    pub const fn status(self) -> Status {
        match self {
            Self::UnknownFunction(_) => Status::NotSupported,
            Self::SegmentNotImplemented(_) => Status::NotImplemented,
            Self::AccessSize(_)
            | Self::Offset(_)
            | Self::Misaligned { .. }
            | Self::Reserved { .. }
            | Self::SegmentNumber(_)
            | Self::NoSuchSegment(_)
            | Self::BusOutOfRange { .. } => Status::InvalidParameter,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownFunction(id) => write!(f, "function {id:#010x} is not a DEN0115 call"),
            Self::AccessSize(size) => write!(f, "access size {size} is not 1, 2 or 4"),
            Self::Offset(offset) => write!(f, "register offset {offset:#x} is past the 4 KiB config space"),
            Self::Misaligned { offset, size } => {
                write!(f, "register offset {offset:#x} is not aligned for a {size} access")
            }
            Self::Reserved { register, value } => {
                write!(f, "reserved argument w{register} is {value:#x}, not 0")
            }
            Self::SegmentNumber(segment) => write!(f, "segment {segment:#x} is not a 16-bit segment number"),
            Self::NoSuchSegment(segment) => write!(f, "segment {segment:#x} does not exist"),
            Self::BusOutOfRange { bus, start, end } => {
                write!(f, "bus {bus:#04x} is outside the segment's buses {start:#04x}..={end:#04x}")
            }
            Self::SegmentNotImplemented(segment) => write!(f, "segment {segment:#x} is not implemented"),
        }
    }
}

/// A decoded, syntactically valid DEN0115 call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciCall {
    Version,
    Features { function_id: u32 },
    Read { address: Sbdf, offset: u16, size: AccessSize },
    Write { address: Sbdf, offset: u16, size: AccessSize, value: u32 },
    GetSegInfo { segment: u16 },
}

impl PciCall {
    /// Decodes an SMC: `function_id` is w0, `args` are x1..x4. Checks
    /// everything that does not depend on the platform (sizes, offsets,
    /// alignment, reserved registers); [`handle`] checks segment and bus.
    pub fn decode(function_id: u32, args: [u64; 4]) -> Result<Self, CallError> {
        // SMC32: the upper halves of x1..x4 are not part of the call.
        let [w1, w2, w3, w4] = args.map(|x| x as u32);
        match function_id {
            PCI_VERSION => Ok(Self::Version),
            PCI_FEATURES => Ok(Self::Features { function_id: w1 }),
            PCI_READ => {
                let (address, offset, size) = access(w1, w2, w3)?;
                reserved(4, w4)?;
                Ok(Self::Read { address, offset, size })
            }
            PCI_WRITE => {
                let (address, offset, size) = access(w1, w2, w3)?;
                Ok(Self::Write { address, offset, size, value: w4 & size.value_mask() })
            }
            PCI_GET_SEG_INFO => {
                reserved(2, w2)?;
                reserved(3, w3)?;
                reserved(4, w4)?;
                let segment = u16::try_from(w1).map_err(|_| CallError::SegmentNumber(w1))?;
                Ok(Self::GetSegInfo { segment })
            }
            other => Err(CallError::UnknownFunction(other)),
        }
    }

    /// The function ID (w0) of this call.
    pub const fn function_id(&self) -> u32 {
        match self {
            Self::Version => PCI_VERSION,
            Self::Features { .. } => PCI_FEATURES,
            Self::Read { .. } => PCI_READ,
            Self::Write { .. } => PCI_WRITE,
            Self::GetSegInfo { .. } => PCI_GET_SEG_INFO,
        }
    }

    /// x1..x4 for making this call (the caller's side, e.g. EL2's
    /// forwarding path); [`PciCall::decode`] inverts it.
    pub const fn args(&self) -> [u64; 4] {
        match *self {
            Self::Version => [0; 4],
            Self::Features { function_id } => [function_id as u64, 0, 0, 0],
            Self::Read { address, offset, size } => [address.to_u32() as u64, offset as u64, size.bytes() as u64, 0],
            Self::Write { address, offset, size, value } => {
                [address.to_u32() as u64, offset as u64, size.bytes() as u64, value as u64]
            }
            Self::GetSegInfo { segment } => [segment as u64, 0, 0, 0],
        }
    }
}

/// Decodes the SBDF, offset and size of a read or write.
fn access(w1: u32, w2: u32, w3: u32) -> Result<(Sbdf, u16, AccessSize), CallError> {
    let size = AccessSize::from_bytes(u64::from(w3)).ok_or(CallError::AccessSize(w3))?;
    let offset = u16::try_from(w2).ok().filter(|offset| *offset < CONFIG_SPACE_SIZE).ok_or(CallError::Offset(w2))?;
    if !size.is_aligned(offset) {
        return Err(CallError::Misaligned { offset, size });
    }
    Ok((Sbdf::from_u32(w1), offset, size))
}

const fn reserved(register: u8, value: u32) -> Result<(), CallError> {
    if value == 0 {
        Ok(())
    } else {
        Err(CallError::Reserved { register, value })
    }
}

// SegmentInfo's bus range starts at ROOT_BUS and contains_bus relies on it
// being bus 0.
const _: () = assert!(ROOT_BUS == 0);

/// The one segment we emulate: number [`SegmentInfo::SEGMENT`], buses
/// [`ROOT_BUS`]..=`bus_end` (the ECAM window holds 1 MiB per bus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    bus_end: u8,
}

impl SegmentInfo {
    /// Our segment's number.
    pub const SEGMENT: u16 = 0;
    /// `PCI_GET_SEG_INFO`'s "next segment" when there is none.
    pub const NO_NEXT_SEGMENT: u16 = 0;

    /// Segment 0 with buses [`ROOT_BUS`]..=`bus_end` (the DT `bus-range`).
    pub const fn new(bus_end: u8) -> Self {
        Self { bus_end }
    }

    pub const fn bus_start(&self) -> u8 {
        ROOT_BUS
    }

    pub const fn bus_end(&self) -> u8 {
        self.bus_end
    }

    pub const fn contains_bus(&self, bus: u8) -> bool {
        // The range starts at ROOT_BUS, bus 0: only the end can exclude.
        bus <= self.bus_end
    }

    /// `PCI_GET_SEG_INFO`'s w1: start bus in [7:0], end bus in [15:8].
    pub const fn bus_range(&self) -> u32 {
        ROOT_BUS as u32 | (self.bus_end as u32) << 8
    }

    /// The function address `address` names, if it lies in this segment.
    pub const fn check(&self, address: Sbdf) -> Result<Bdf, CallError> {
        if address.segment != Self::SEGMENT {
            return Err(CallError::NoSuchSegment(address.segment));
        }
        let bus = address.bdf.bus();
        if !self.contains_bus(bus) {
            return Err(CallError::BusOutOfRange { bus, start: ROOT_BUS, end: self.bus_end });
        }
        Ok(address.bdf)
    }
}

/// Serves `call` on `space`: the SMC's results x0..x3 (unused ones 0).
pub fn handle<const N: usize>(call: PciCall, space: &mut ConfigSpace<N>, segment: &SegmentInfo) -> [u64; 4] {
    serve(call, space, segment).unwrap_or_else(|error| [error.status().x0(), 0, 0, 0])
}

/// Decodes and serves the SMC `function_id` with x1..x4 = `args`: the one
/// call the monitor's SMC dispatch needs for every [`is_pci_call`] ID.
pub fn dispatch<const N: usize>(
    function_id: u32,
    args: [u64; 4],
    space: &mut ConfigSpace<N>,
    segment: &SegmentInfo,
) -> [u64; 4] {
    match PciCall::decode(function_id, args) {
        Ok(call) => handle(call, space, segment),
        Err(error) => [error.status().x0(), 0, 0, 0],
    }
}

fn serve<const N: usize>(
    call: PciCall,
    space: &mut ConfigSpace<N>,
    segment: &SegmentInfo,
) -> Result<[u64; 4], CallError> {
    let success = Status::Success.x0();
    match call {
        PciCall::Version => Ok([u64::from(VERSION), 0, 0, 0]),
        PciCall::Features { function_id } if is_pci_call(function_id) => Ok([success, 0, 0, 0]),
        PciCall::Features { function_id } => Err(CallError::UnknownFunction(function_id)),
        PciCall::Read { address, offset, size } => {
            let bdf = segment.check(address)?;
            Ok([success, u64::from(space.read(bdf, offset, size)), 0, 0])
        }
        PciCall::Write { address, offset, size, value } => {
            let bdf = segment.check(address)?;
            space.write(bdf, offset, size, value);
            Ok([success, 0, 0, 0])
        }
        PciCall::GetSegInfo { segment: number } if number == SegmentInfo::SEGMENT => {
            Ok([success, u64::from(segment.bus_range()), u64::from(SegmentInfo::NO_NEXT_SEGMENT), 0])
        }
        PciCall::GetSegInfo { segment: number } => Err(CallError::SegmentNotImplemented(number)),
    }
}
