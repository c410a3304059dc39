//! MMIO emulation: from a stage-2 data abort to a device model and back.
//!
//! The hypervisor leaves emulated device windows unmapped in stage 2. A
//! guest load or store there traps to EL2 as a data abort from a lower EL
//! (EC 0x24); this module owns the steps that do not touch hardware, so
//! they are host-tested:
//!
//! 1. [`MmioAccess::decode`] turns the syndrome and the faulting IPA
//!    ([`fault_ipa`] from `HPFAR_EL2` and `FAR_EL2`) into an access: size,
//!    direction, transfer register, sign extension, register width,
//!    acquire/release. Only accesses with a valid instruction syndrome
//!    (ISV=1: single-register loads and stores without writeback) can be
//!    emulated; for the rest ([`NotEmulatable`]) the hypervisor injects a
//!    data abort into the guest and logs a line, never crashes.
//! 2. [`MmioBus::dispatch`] finds the device registered at that IPA,
//!    performs the read or write through the [`MmioDevice`] trait, and moves
//!    the value between the device and the guest's register frame
//!    ([`MmioAccess::write_value`], [`MmioAccess::complete_read`]).
//! 3. The hypervisor then resumes the guest after the instruction
//!    (`ELR_EL2 += 4`), or on an [`MmioFault`] injects the abort
//!    [`MmioFault::guest_fault`] names, as a bus would answer.
//!
//! Acquire/release accesses (`LDAR`, `STLR`) need nothing extra: the trap
//! and the `ERET` are context-synchronizing, and the device access happens
//! entirely between them.
//!
//! The bus has a fixed capacity and no allocation; devices are borrowed
//! (`&'a mut dyn MmioDevice`), so a static bus holds `'static` devices and a
//! test holds local ones. Everything here handles guest-controlled values
//! (addresses, registers, syndromes) without panicking or unchecked
//! arithmetic, which clippy enforces (the crate-wide lints in lib.rs).

use core::fmt;

use crate::esr::{Direction, Esr, ExceptionClass, FaultStatus};

/// The faulting IPA of a stage-2 abort: `HPFAR_EL2.FIPA` (bits [43:4],
/// IPA[51:12]) gives the page, `FAR_EL2[11:0]` the offset within it.
///
/// `HPFAR_EL2` is valid for stage-2 translation, access-flag and permission
/// faults, which is what an access to an unmapped MMIO window is.
pub const fn fault_ipa(hpfar_el2: u64, far_el2: u64) -> u64 {
    ((hpfar_el2 & 0x0000_0fff_ffff_fff0) << 8) | (far_el2 & 0xfff)
}

/// The size of an access, from the syndrome's SAS field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccessSize {
    Byte,
    Half,
    Word,
    Double,
}

impl AccessSize {
    /// From SAS (`ESR.ISS[23:22]`): 0 byte, 1 halfword, 2 word, 3 doubleword.
    pub const fn from_sas(sas: u64) -> Self {
        match sas & 3 {
            0 => Self::Byte,
            1 => Self::Half,
            2 => Self::Word,
            _ => Self::Double,
        }
    }

    /// From a size in bytes (1, 2, 4 or 8).
    pub const fn from_bytes(bytes: u8) -> Option<Self> {
        match bytes {
            1 => Some(Self::Byte),
            2 => Some(Self::Half),
            4 => Some(Self::Word),
            8 => Some(Self::Double),
            _ => None,
        }
    }

    pub const fn bytes(self) -> u8 {
        match self {
            Self::Byte => 1,
            Self::Half => 2,
            Self::Word => 4,
            Self::Double => 8,
        }
    }

    /// The value bits an access of this size carries.
    pub const fn mask(self) -> u64 {
        match self {
            Self::Byte => 0xff,
            Self::Half => 0xffff,
            Self::Word => 0xffff_ffff,
            Self::Double => u64::MAX,
        }
    }

    /// `bytes() - 1`: the address bits that must be zero when aligned.
    const fn align_mask(self) -> u64 {
        match self {
            Self::Byte => 0,
            Self::Half => 1,
            Self::Word => 3,
            Self::Double => 7,
        }
    }

    /// `bytes() - 1` as an address offset (the last byte's offset).
    const fn last_offset(self) -> u64 {
        self.align_mask()
    }

    /// Sign-extends the low `8 * bytes()` bits of `value` to 64 bits.
    const fn sign_extend(self, value: u64) -> u64 {
        let shift = match self {
            Self::Byte => 56,
            Self::Half => 48,
            Self::Word => 32,
            Self::Double => 0,
        };
        ((value << shift).cast_signed() >> shift).cast_unsigned()
    }
}

/// Why a data abort cannot be emulated as an MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotEmulatable {
    /// The syndrome is not a data abort from the guest (EC 0x24).
    NotGuestDataAbort,
    /// S1PTW: the guest's own stage-1 table walk touched the window (its
    /// page tables point at device space). Inject a data abort.
    StageOneWalk,
    /// CM: a cache-maintenance or address-translation instruction (`DC`,
    /// `IC`, `AT`) on the window, not a load or store. There is no cache
    /// line to maintain in an emulated device: skip the instruction.
    CacheMaintenance,
    /// ISV=0: the instruction's effect is not described by the syndrome
    /// (load/store pair, writeback, SIMD&FP register, exclusive, ...).
    /// Inject a data abort and log.
    NoSyndrome,
    /// FnV: FAR (and so the offset within the page) is unknown.
    FarNotValid,
}

impl fmt::Display for NotEmulatable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotGuestDataAbort => "not a data abort from the guest",
            Self::StageOneWalk => "fault on the guest's stage-1 table walk",
            Self::CacheMaintenance => "cache maintenance on an emulated device",
            Self::NoSyndrome => "no instruction syndrome (ISV=0: pair, writeback, SIMD, ...)",
            Self::FarNotValid => "fault address not valid (FnV)",
        })
    }
}

/// One guest load or store to emulate, decoded from its syndrome.
///
/// The ISS fields used (data abort, EC 0x24):
///
/// ```text
///  24  23:22 21  20:16 15  14  8   7     6   5:0
/// ISV  SAS   SSE SRT   SF  AR  CM  S1PTW WnR DFSC
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The IPA accessed (its first byte).
    pub ipa: u64,
    /// SAS.
    pub size: AccessSize,
    /// The transfer register, SRT (0..=31). 31 is `xzr`/`wzr`: a store of
    /// it writes 0, a load to it discards the value.
    pub rt: u8,
    /// WnR.
    pub direction: Direction,
    /// SSE: the load sign-extends.
    pub sign_extend: bool,
    /// SF: the transfer register is 64 bits wide (`Xt`); otherwise `Wt`,
    /// whose write zeroes bits [63:32].
    pub sf: bool,
    /// AR: acquire (load) or release (store) semantics.
    pub acquire_release: bool,
}

impl MmioAccess {
    /// Decodes a stage-2 data abort at `ipa` (see [`fault_ipa`]).
    pub const fn decode(esr: Esr, ipa: u64) -> Result<Self, NotEmulatable> {
        if !matches!(esr.class(), ExceptionClass::DataAbortLower) {
            return Err(NotEmulatable::NotGuestDataAbort);
        }
        let Some(iss) = esr.abort() else {
            return Err(NotEmulatable::NotGuestDataAbort);
        };
        if iss.s1ptw() {
            return Err(NotEmulatable::StageOneWalk);
        }
        if iss.cm() {
            return Err(NotEmulatable::CacheMaintenance);
        }
        if !iss.isv() {
            return Err(NotEmulatable::NoSyndrome);
        }
        if iss.fnv() {
            return Err(NotEmulatable::FarNotValid);
        }
        Ok(Self {
            ipa,
            size: AccessSize::from_sas(iss.0 >> 22),
            rt: (iss.srt() & 0x1f) as u8,
            direction: iss.direction(),
            sign_extend: iss.sse(),
            sf: iss.sf(),
            acquire_release: iss.ar(),
        })
    }

    pub const fn is_write(&self) -> bool {
        matches!(self.direction, Direction::Write)
    }

    /// Whether `ipa` is a multiple of the access size.
    pub const fn is_aligned(&self) -> bool {
        self.ipa & self.size.align_mask() == 0
    }

    /// The value a store writes: `Rt` masked to the access size; 0 for `xzr`.
    pub fn write_value(&self, regs: &[u64; 31]) -> u64 {
        regs.get(usize::from(self.rt)).copied().unwrap_or(0) & self.size.mask()
    }

    /// The value a load puts in `Rt`, given the `raw` value the device
    /// returned: masked to the access size, sign-extended if SSE (to 64
    /// bits, then cut to 32 for a `Wt` register), zero-extended otherwise.
    pub const fn load_value(&self, raw: u64) -> u64 {
        let mut value = raw & self.size.mask();
        if self.sign_extend {
            value = self.size.sign_extend(value);
        }
        if !self.sf {
            value &= 0xffff_ffff;
        }
        value
    }

    /// Completes a load: writes [`MmioAccess::load_value`] of `raw` to `Rt`,
    /// unless `Rt` is 31 (`xzr`: the value is discarded).
    pub fn complete_read(&self, regs: &mut [u64; 31], raw: u64) {
        if let Some(rt) = regs.get_mut(usize::from(self.rt)) {
            *rt = self.load_value(raw);
        }
    }
}

impl fmt::Display for MmioAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = if self.sf { 'x' } else { 'w' };
        let verb = if self.is_write() { "write" } else { "read" };
        write!(f, "{verb} {} bytes at IPA {:#x} ", self.size.bytes(), self.ipa)?;
        if self.rt >= 31 {
            write!(f, "{}zr", width)?;
        } else {
            write!(f, "{width}{}", self.rt)?;
        }
        if self.sign_extend {
            f.write_str(", sign-extended")?;
        }
        if self.acquire_release {
            f.write_str(", acquire/release")?;
        }
        Ok(())
    }
}

/// Why an emulated access failed. The hypervisor answers each with the data
/// abort [`MmioFault::guest_fault`] names, injected into the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioFault {
    /// No device is registered at this IPA.
    Unmapped { ipa: u64 },
    /// The access starts inside a device's window but runs past its end.
    CrossesEnd { ipa: u64, size: u8 },
    /// The IPA is not a multiple of the access size.
    Misaligned { ipa: u64, size: u8 },
    /// The device has no register of this size (or direction) at `offset`.
    Unsupported { offset: u64, size: u8 },
    /// The device reports an error for the access (a bus error).
    DeviceError { offset: u64 },
}

impl MmioFault {
    /// The fault status the guest receives: an alignment fault for a
    /// misaligned access (what Device memory gives), a synchronous external
    /// abort (what a bus gives for an access to nothing, or one a device
    /// refuses) for everything else.
    pub const fn guest_fault(&self) -> FaultStatus {
        match self {
            Self::Misaligned { .. } => FaultStatus::Alignment,
            _ => FaultStatus::SyncExternal,
        }
    }
}

impl fmt::Display for MmioFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unmapped { ipa } => write!(f, "no device at IPA {ipa:#x}"),
            Self::CrossesEnd { ipa, size } => {
                write!(f, "{size}-byte access at IPA {ipa:#x} runs past the device window")
            }
            Self::Misaligned { ipa, size } => {
                write!(f, "misaligned {size}-byte access at IPA {ipa:#x}")
            }
            Self::Unsupported { offset, size } => {
                write!(f, "device has no {size}-byte register at offset {offset:#x}")
            }
            Self::DeviceError { offset } => write!(f, "device error at offset {offset:#x}"),
        }
    }
}

/// An emulated device: registers in a window of IPA space.
///
/// `offset` is from the start of the window the device was registered
/// with; `size` is 1, 2, 4 or 8 and the access is inside the window and
/// its IPA is aligned to its size, unless the device [`accepts_misaligned`]
/// accesses (the bus checks). The offset is aligned too when the window's
/// base is, as every real device's is. A read returns the value in the low `8 * size` bits
/// (higher bits are ignored).
///
/// `Send` so that a bus of devices can live in a static behind a lock.
///
/// [`accepts_misaligned`]: MmioDevice::accepts_misaligned
pub trait MmioDevice: Send {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault>;
    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault>;

    /// Whether the device answers misaligned accesses itself (as a PCI
    /// configuration space does, with all-ones) rather than having the bus
    /// refuse them with an alignment fault.
    fn accepts_misaligned(&self) -> bool {
        false
    }
}

/// Why [`MmioBus::register`] refused a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The window is empty.
    ZeroLength,
    /// `base + len` runs past the top of the address space.
    Wraps { base: u64, len: u64 },
    /// The window overlaps the one already registered at `base`.
    Overlap { base: u64, len: u64 },
    /// All `N` slots are taken.
    Full,
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroLength => write!(f, "empty MMIO window"),
            Self::Wraps { base, len } => {
                write!(f, "MMIO window {base:#x} + {len:#x} wraps around the address space")
            }
            Self::Overlap { base, len } => {
                write!(f, "MMIO window overlaps the one at {base:#x} (length {len:#x})")
            }
            Self::Full => write!(f, "no free MMIO slot"),
        }
    }
}

/// One registered window. `last` is inclusive so that a window may end at
/// the top of the address space.
struct Window<'a> {
    base: u64,
    last: u64,
    device: &'a mut dyn MmioDevice,
}

impl Window<'_> {
    /// `last - base + 1`; cannot overflow for a window that does not cover
    /// the whole address space, which `register` guarantees (`len: u64`).
    fn len(&self) -> u64 {
        self.last.wrapping_sub(self.base).wrapping_add(1)
    }
}

/// Up to `N` devices, each at its own window of IPA space.
pub struct MmioBus<'a, const N: usize> {
    windows: [Option<Window<'a>>; N],
}

impl<const N: usize> Default for MmioBus<'_, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for MmioBus<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.windows()).finish()
    }
}

impl<'a, const N: usize> MmioBus<'a, N> {
    pub const fn new() -> Self {
        Self { windows: [const { None }; N] }
    }

    /// Registers `device` at `[base, base + len)`; returns its slot.
    pub fn register(&mut self, base: u64, len: u64, device: &'a mut dyn MmioDevice) -> Result<usize, RegisterError> {
        let Some(extent) = len.checked_sub(1) else {
            return Err(RegisterError::ZeroLength);
        };
        let Some(last) = base.checked_add(extent) else {
            return Err(RegisterError::Wraps { base, len });
        };
        if let Some(w) = self.windows.iter().flatten().find(|w| w.base <= last && base <= w.last) {
            return Err(RegisterError::Overlap { base: w.base, len: w.len() });
        }
        let (slot, free) = self.windows.iter_mut().enumerate().find(|(_, w)| w.is_none()).ok_or(RegisterError::Full)?;
        *free = Some(Window { base, last, device });
        Ok(slot)
    }

    /// The registered windows as `(base, len)`: what stage 2 must leave
    /// unmapped.
    pub fn windows(&self) -> impl Iterator<Item = (u64, u64)> + use<'_, 'a, N> {
        self.windows.iter().flatten().map(|w| (w.base, w.len()))
    }

    pub fn len(&self) -> usize {
        self.windows.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a device is registered at `ipa`.
    pub fn contains(&self, ipa: u64) -> bool {
        self.windows.iter().flatten().any(|w| w.base <= ipa && ipa <= w.last)
    }

    /// The window holding a `size` access at `ipa`, checked; and the
    /// offset within it.
    fn route(&mut self, ipa: u64, size: AccessSize) -> Result<(&mut (dyn MmioDevice + 'a), u64), MmioFault> {
        let bytes = size.bytes();
        let window = self
            .windows
            .iter_mut()
            .flatten()
            .find(|w| w.base <= ipa && ipa <= w.last)
            .ok_or(MmioFault::Unmapped { ipa })?;
        if ipa & size.align_mask() != 0 && !window.device.accepts_misaligned() {
            return Err(MmioFault::Misaligned { ipa, size: bytes });
        }
        match ipa.checked_add(size.last_offset()) {
            Some(end) if end <= window.last => {}
            _ => return Err(MmioFault::CrossesEnd { ipa, size: bytes }),
        }
        // `window.base <= ipa`, checked above.
        let offset = ipa.wrapping_sub(window.base);
        Ok((&mut *window.device, offset))
    }

    /// Reads `size` bytes at `ipa` from the device there (the value masked
    /// to the size).
    pub fn read(&mut self, ipa: u64, size: AccessSize) -> Result<u64, MmioFault> {
        let (device, offset) = self.route(ipa, size)?;
        Ok(device.read(offset, size.bytes())? & size.mask())
    }

    /// Writes the low `size` bytes of `value` at `ipa` to the device there.
    pub fn write(&mut self, ipa: u64, size: AccessSize, value: u64) -> Result<(), MmioFault> {
        let (device, offset) = self.route(ipa, size)?;
        device.write(offset, size.bytes(), value & size.mask())
    }

    /// Emulates `access` against the guest's register frame `regs`: a store
    /// sends [`MmioAccess::write_value`] to the device, a load writes the
    /// device's value to `Rt` ([`MmioAccess::complete_read`]). On a fault
    /// the registers are left unchanged. The caller then advances the
    /// guest's PC past the instruction, or injects the fault.
    pub fn dispatch(&mut self, access: &MmioAccess, regs: &mut [u64; 31]) -> Result<(), MmioFault> {
        match access.direction {
            Direction::Write => self.write(access.ipa, access.size, access.write_value(regs)),
            Direction::Read => {
                let raw = self.read(access.ipa, access.size)?;
                access.complete_read(regs, raw);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::vec::Vec;

    // Stage-2 data aborts from EL1 (EC 0x24, IL=1), computed from the ISS
    // layout: ISV 1<<24, SAS <<22, SSE 1<<21, SRT <<16, SF 1<<15, AR 1<<14,
    // CM 1<<8, S1PTW 1<<7, WnR 1<<6, DFSC (here translation faults).
    /// `LDR W1, [X0]`: SAS=2, SRT=1, level 1.
    const LDR_W1: Esr = Esr(0x9381_0005);
    /// `LDRSB X3, [X0]`: SAS=0, SSE, SRT=3, SF, level 3.
    const LDRSB_X3: Esr = Esr(0x9323_8007);
    /// `LDRSH W4, [X0]`: SAS=1, SSE, SRT=4, level 3.
    const LDRSH_W4: Esr = Esr(0x9364_0007);
    /// `LDRSW X6, [X0]`: SAS=2, SSE, SRT=6, SF, level 3.
    const LDRSW_X6: Esr = Esr(0x93a6_8007);
    /// `LDR XZR, [X0]`: SAS=3, SRT=31, SF, level 3.
    const LDR_XZR: Esr = Esr(0x93df_8007);
    /// `STR X5, [X0]`: SAS=3, SRT=5, SF, WnR, level 2.
    const STR_X5: Esr = Esr(0x93c5_8046);
    /// `STRB W7, [X0]`: SAS=0, SRT=7, WnR, level 3.
    const STRB_W7: Esr = Esr(0x9307_0047);
    /// `STLR W2, [X0]`: SAS=2, SRT=2, AR, WnR, level 3.
    const STLR_W2: Esr = Esr(0x9382_4047);
    /// `STR WZR, [X0]`: SAS=2, SRT=31, WnR, level 3.
    const STR_WZR: Esr = Esr(0x939f_0047);
    /// `STP X0, X1, [X2]`: ISV=0, WnR, level 2.
    const STP: Esr = Esr(0x9200_0046);
    /// Stage-2 fault on a stage-1 walk: S1PTW, level 3.
    const S1PTW: Esr = Esr(0x9200_0087);
    /// `DC CIVAC` on the window: CM, WnR, level 3.
    const DC_CIVAC: Esr = Esr(0x9200_0147);

    const BASE: u64 = 0x0a00_0000;

    /// A device with four 32-bit registers at offsets 0, 4, 8, 12 (any
    /// narrower access reads/writes the low bytes of the register it
    /// starts in), 8-byte access at offset 0 only, and an error at 0x10.
    #[derive(Default)]
    struct Fake {
        regs: [u32; 4],
        log: Vec<(Direction, u64, u8, u64)>,
    }

    impl MmioDevice for Fake {
        fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
            let value = match (offset, size) {
                (0x10, _) => return Err(MmioFault::DeviceError { offset }),
                (0, 8) => u64::from(self.regs[0]) | u64::from(self.regs[1]) << 32,
                (_, 8) => return Err(MmioFault::Unsupported { offset, size }),
                (0..=0xf, _) => {
                    // Garbage above the access size, which the bus masks.
                    u64::from(self.regs[offset as usize / 4] >> (8 * (offset % 4))) | 0xdead_beef_0000_0000
                }
                _ => return Err(MmioFault::Unsupported { offset, size }),
            };
            self.log.push((Direction::Read, offset, size, value));
            Ok(value)
        }

        fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
            match (offset, size) {
                (0x10, _) => return Err(MmioFault::DeviceError { offset }),
                (0, 8) => {
                    self.regs[0] = value as u32;
                    self.regs[1] = (value >> 32) as u32;
                }
                (0..=0xf, 1 | 2 | 4) if offset.is_multiple_of(4) => self.regs[offset as usize / 4] = value as u32,
                _ => return Err(MmioFault::Unsupported { offset, size }),
            }
            self.log.push((Direction::Write, offset, size, value));
            Ok(())
        }
    }

    fn frame() -> [u64; 31] {
        core::array::from_fn(|i| 0x1111_1111_1111_1111 * (i as u64 % 15 + 1))
    }

    #[test]
    fn fault_ipa_combines_hpfar_and_far() {
        // HPFAR_EL2.FIPA = IPA[51:12] in bits [43:4]; NS (bit 63) ignored.
        assert_eq!(fault_ipa(0x0a00_0000 >> 8, 0xffff_0000_1234_5004), 0x0a00_0004);
        assert_eq!(fault_ipa((1 << 63) | (0x0900_0000 >> 8), 0x18), 0x0900_0018);
        assert_eq!(fault_ipa(u64::MAX, u64::MAX), 0x000f_ffff_ffff_ffff);
    }

    #[test]
    fn decode_ldr_w1() {
        let a = MmioAccess::decode(LDR_W1, BASE + 4).unwrap();
        assert_eq!(
            a,
            MmioAccess {
                ipa: BASE + 4,
                size: AccessSize::Word,
                rt: 1,
                direction: Direction::Read,
                sign_extend: false,
                sf: false,
                acquire_release: false,
            }
        );
        assert!(a.is_aligned() && !a.is_write());
        assert_eq!(a.to_string(), "read 4 bytes at IPA 0xa000004 w1");
    }

    #[test]
    fn decode_signed_and_release_forms() {
        let a = MmioAccess::decode(LDRSB_X3, BASE).unwrap();
        assert_eq!((a.size, a.rt, a.sign_extend, a.sf), (AccessSize::Byte, 3, true, true));
        let a = MmioAccess::decode(LDRSH_W4, BASE).unwrap();
        assert_eq!((a.size, a.rt, a.sign_extend, a.sf), (AccessSize::Half, 4, true, false));
        let a = MmioAccess::decode(LDRSW_X6, BASE).unwrap();
        assert_eq!((a.size, a.rt, a.sign_extend, a.sf), (AccessSize::Word, 6, true, true));
        let a = MmioAccess::decode(STLR_W2, BASE).unwrap();
        assert_eq!((a.size, a.rt, a.direction, a.acquire_release), (AccessSize::Word, 2, Direction::Write, true));
        assert_eq!(a.to_string(), "write 4 bytes at IPA 0xa000000 w2, acquire/release");
        let a = MmioAccess::decode(STR_X5, BASE).unwrap();
        assert_eq!((a.size, a.rt, a.direction, a.sf), (AccessSize::Double, 5, Direction::Write, true));
    }

    #[test]
    fn decode_refusals() {
        assert_eq!(MmioAccess::decode(STP, BASE), Err(NotEmulatable::NoSyndrome));
        assert_eq!(MmioAccess::decode(S1PTW, BASE), Err(NotEmulatable::StageOneWalk));
        assert_eq!(MmioAccess::decode(DC_CIVAC, BASE), Err(NotEmulatable::CacheMaintenance));
        // Same-EL data abort (an EL2 fault), instruction abort, HVC.
        assert_eq!(MmioAccess::decode(Esr(0x9781_0005), BASE), Err(NotEmulatable::NotGuestDataAbort));
        assert_eq!(MmioAccess::decode(Esr(0x8200_0007), BASE), Err(NotEmulatable::NotGuestDataAbort));
        assert_eq!(MmioAccess::decode(Esr(0x5a00_0000), BASE), Err(NotEmulatable::NotGuestDataAbort));
        // ISV with FnV: no usable address.
        assert_eq!(MmioAccess::decode(Esr(0x9381_0405), BASE), Err(NotEmulatable::FarNotValid));
        assert_eq!(
            NotEmulatable::NoSyndrome.to_string(),
            "no instruction syndrome (ISV=0: pair, writeback, SIMD, ...)"
        );
    }

    #[test]
    fn write_value_masks_and_reads_xzr_as_zero() {
        let regs = frame();
        let a = MmioAccess::decode(STRB_W7, BASE).unwrap();
        assert_eq!(a.write_value(&regs), regs[7] & 0xff);
        let a = MmioAccess::decode(STLR_W2, BASE).unwrap();
        assert_eq!(a.write_value(&regs), regs[2] & 0xffff_ffff);
        let a = MmioAccess::decode(STR_X5, BASE).unwrap();
        assert_eq!(a.write_value(&regs), regs[5]);
        let a = MmioAccess::decode(STR_WZR, BASE).unwrap();
        assert_eq!(a.rt, 31);
        assert_eq!(a.write_value(&[u64::MAX; 31]), 0);
    }

    #[test]
    fn load_values_extend_as_the_instruction_would() {
        let ldr_w1 = MmioAccess::decode(LDR_W1, BASE).unwrap();
        assert_eq!(ldr_w1.load_value(0xffff_ffff_8000_0001), 0x8000_0001);
        let ldrsb_x3 = MmioAccess::decode(LDRSB_X3, BASE).unwrap();
        assert_eq!(ldrsb_x3.load_value(0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(ldrsb_x3.load_value(0x1234_567f), 0x7f);
        let ldrsh_w4 = MmioAccess::decode(LDRSH_W4, BASE).unwrap();
        // LDRSH Wt: sign-extended to 32 bits, upper half of Xt zero.
        assert_eq!(ldrsh_w4.load_value(0x8001), 0xffff_8001);
        assert_eq!(ldrsh_w4.load_value(0x7fff), 0x7fff);
        let ldrsw_x6 = MmioAccess::decode(LDRSW_X6, BASE).unwrap();
        assert_eq!(ldrsw_x6.load_value(0xdead_beef_8000_0000), 0xffff_ffff_8000_0000);
        let ldr_x = MmioAccess { sf: true, size: AccessSize::Double, ..ldr_w1 };
        assert_eq!(ldr_x.load_value(u64::MAX), u64::MAX);
        // SSE with a doubleword is meaningless and harmless.
        let odd = MmioAccess { sign_extend: true, ..ldr_x };
        assert_eq!(odd.load_value(0x8000_0000_0000_0000), 0x8000_0000_0000_0000);
    }

    #[test]
    fn complete_read_writes_rt_only_and_discards_xzr() {
        let before = frame();
        let mut regs = before;
        MmioAccess::decode(LDRSB_X3, BASE).unwrap().complete_read(&mut regs, 0xfe);
        assert_eq!(regs[3], u64::MAX - 1);
        for i in (0..31).filter(|&i| i != 3) {
            assert_eq!(regs[i], before[i]);
        }
        let mut regs = before;
        MmioAccess::decode(LDR_XZR, BASE).unwrap().complete_read(&mut regs, 42);
        assert_eq!(regs, before);
    }

    #[test]
    fn dispatch_read_and_write() {
        let mut dev = Fake { regs: [0x8765_4321, 0xcafe_f00d, 0, 0], ..Fake::default() };
        let mut bus: MmioBus<'_, 4> = MmioBus::new();
        assert_eq!(bus.register(BASE, 0x1000, &mut dev), Ok(0));
        let mut regs = frame();

        // LDR W1, [X0] at offset 4.
        let a = MmioAccess::decode(LDR_W1, BASE + 4).unwrap();
        bus.dispatch(&a, &mut regs).unwrap();
        assert_eq!(regs[1], 0xcafe_f00d);
        // LDRSB X3, [X0] at offset 0: 0x21, positive.
        let a = MmioAccess::decode(LDRSB_X3, BASE).unwrap();
        bus.dispatch(&a, &mut regs).unwrap();
        assert_eq!(regs[3], 0x21);
        // LDRSH W4 at offset 0 (0x4321) and LDRSW X6 at 0 (0x87654321).
        bus.dispatch(&MmioAccess::decode(LDRSH_W4, BASE).unwrap(), &mut regs).unwrap();
        assert_eq!(regs[4], 0x4321);
        bus.dispatch(&MmioAccess::decode(LDRSW_X6, BASE).unwrap(), &mut regs).unwrap();
        assert_eq!(regs[6], 0xffff_ffff_8765_4321);
        // STLR W2 to offset 8.
        regs[2] = 0xffff_ffff_0000_0042;
        bus.dispatch(&MmioAccess::decode(STLR_W2, BASE + 8).unwrap(), &mut regs).unwrap();
        // STR WZR to offset 12.
        bus.dispatch(&MmioAccess::decode(STR_WZR, BASE + 12).unwrap(), &mut regs).unwrap();
        // STR X5 to offset 0.
        regs[5] = 0x0123_4567_89ab_cdef;
        bus.dispatch(&MmioAccess::decode(STR_X5, BASE).unwrap(), &mut regs).unwrap();
        assert_eq!(dev.regs, [0x89ab_cdef, 0x0123_4567, 0x42, 0]);
        let writes: Vec<_> = dev.log.iter().filter(|e| e.0 == Direction::Write).collect();
        assert_eq!(
            writes,
            [
                &(Direction::Write, 8, 4, 0x42),
                &(Direction::Write, 12, 4, 0),
                &(Direction::Write, 0, 8, 0x0123_4567_89ab_cdef)
            ]
        );
    }

    #[test]
    fn dispatch_faults_leave_registers_alone() {
        let mut dev = Fake::default();
        let mut bus: MmioBus<'_, 2> = MmioBus::new();
        bus.register(BASE, 0x20, &mut dev).unwrap();
        let before = frame();
        let mut regs = before;
        let ldr = |ipa| MmioAccess::decode(LDR_W1, ipa).unwrap();
        let str_x5 = |ipa| MmioAccess::decode(STR_X5, ipa).unwrap();

        assert_eq!(bus.dispatch(&ldr(BASE - 4), &mut regs), Err(MmioFault::Unmapped { ipa: BASE - 4 }));
        assert_eq!(bus.dispatch(&ldr(BASE + 0x20), &mut regs), Err(MmioFault::Unmapped { ipa: BASE + 0x20 }));
        assert_eq!(bus.dispatch(&ldr(0), &mut regs), Err(MmioFault::Unmapped { ipa: 0 }));
        assert_eq!(bus.dispatch(&ldr(u64::MAX - 3), &mut regs), Err(MmioFault::Unmapped { ipa: u64::MAX - 3 }));
        assert_eq!(bus.dispatch(&ldr(BASE + 2), &mut regs), Err(MmioFault::Misaligned { ipa: BASE + 2, size: 4 }));
        assert_eq!(bus.dispatch(&ldr(BASE + 0x10), &mut regs), Err(MmioFault::DeviceError { offset: 0x10 }));
        assert_eq!(bus.dispatch(&str_x5(BASE + 8), &mut regs), Err(MmioFault::Unsupported { offset: 8, size: 8 }));
        assert_eq!(regs, before);
        assert_eq!(MmioFault::Unmapped { ipa: 0 }.guest_fault(), FaultStatus::SyncExternal);
        assert_eq!(MmioFault::Misaligned { ipa: 2, size: 4 }.guest_fault(), FaultStatus::Alignment);
        assert_eq!(MmioFault::Unmapped { ipa: 0x10 }.to_string(), "no device at IPA 0x10");
    }

    #[test]
    fn access_crossing_the_end_of_a_window_faults() {
        let mut dev = Fake::default();
        let mut bus: MmioBus<'_, 1> = MmioBus::new();
        bus.register(BASE, 0x6, &mut dev).unwrap(); // odd-sized window
        assert_eq!(bus.read(BASE + 4, AccessSize::Half), Ok(0));
        assert_eq!(bus.read(BASE + 4, AccessSize::Word), Err(MmioFault::CrossesEnd { ipa: BASE + 4, size: 4 }));
        assert_eq!(bus.write(BASE, AccessSize::Double, 1), Err(MmioFault::CrossesEnd { ipa: BASE, size: 8 }));
    }

    #[test]
    fn window_at_the_top_of_the_address_space() {
        let mut dev = Fake::default();
        let mut bus: MmioBus<'_, 1> = MmioBus::new();
        let base = u64::MAX - 0xf;
        assert_eq!(bus.register(base, 0x10, &mut dev), Ok(0));
        assert!(bus.contains(u64::MAX));
        assert_eq!(bus.read(u64::MAX - 3, AccessSize::Word), Ok(0));
        assert_eq!(bus.read(u64::MAX, AccessSize::Byte), Ok(0));
        assert_eq!(bus.windows().collect::<Vec<_>>(), [(base, 0x10)]);
    }

    #[test]
    fn bus_masks_device_values() {
        let mut dev = Fake::default();
        dev.regs[0] = 0x1234_5678;
        let mut bus: MmioBus<'_, 1> = MmioBus::new();
        bus.register(BASE, 0x20, &mut dev).unwrap();
        // The fake returns 0xdeadbeef in the upper half; the bus drops it.
        assert_eq!(bus.read(BASE, AccessSize::Word), Ok(0x1234_5678));
        assert_eq!(bus.read(BASE + 1, AccessSize::Byte), Ok(0x56));
        assert_eq!(bus.read(BASE + 2, AccessSize::Half), Ok(0x1234));
        // Writes reach the device masked, too.
        bus.write(BASE + 4, AccessSize::Byte, 0xffff_ffff_ffff_ff99).unwrap();
        assert_eq!(dev.regs[1], 0x99);
    }

    #[test]
    fn register_rejects_overlaps_and_bad_windows() {
        // A refused device stays borrowed for the bus's lifetime, so every
        // attempt gets its own.
        let mut fakes: [Fake; 12] = Default::default();
        let [a, b, c, d, e, f, g, h, i, j, k, l] = &mut fakes;
        let mut bus: MmioBus<'_, 3> = MmioBus::new();
        assert!(bus.is_empty());
        assert_eq!(bus.register(0x1000, 0x1000, a), Ok(0));
        // Overlapping from below, from above, inside, around, equal.
        let overlap = Err(RegisterError::Overlap { base: 0x1000, len: 0x1000 });
        assert_eq!(bus.register(0x0800, 0x0801, b), overlap);
        assert_eq!(bus.register(0x1fff, 0x10, c), overlap);
        assert_eq!(bus.register(0x1100, 0x10, d), overlap);
        assert_eq!(bus.register(0x0, 0x10_0000, e), overlap);
        assert_eq!(bus.register(0x1000, 0x1000, f), overlap);
        // Empty and wrapping windows.
        assert_eq!(bus.register(0x5000, 0, g), Err(RegisterError::ZeroLength));
        assert_eq!(bus.register(u64::MAX, 2, h), Err(RegisterError::Wraps { base: u64::MAX, len: 2 }));
        // Adjacent on both sides is fine.
        assert_eq!(bus.register(0x0800, 0x0800, i), Ok(1));
        assert_eq!(bus.register(0x2000, 0x1000, j), Ok(2));
        assert_eq!(bus.len(), 3);
        assert_eq!(bus.register(0x9000, 0x1000, k), Err(RegisterError::Full));
        // Overlap is reported before fullness.
        assert_eq!(bus.register(0x2800, 0x10, l), Err(RegisterError::Overlap { base: 0x2000, len: 0x1000 }));
        assert_eq!(bus.windows().collect::<Vec<_>>(), [(0x1000, 0x1000), (0x0800, 0x0800), (0x2000, 0x1000)]);
        assert!(bus.contains(0x0800) && bus.contains(0x2fff) && !bus.contains(0x3000));
        assert_eq!(std::format!("{bus:?}"), "[(4096, 4096), (2048, 2048), (8192, 4096)]");
        assert_eq!(
            RegisterError::Overlap { base: 0x1000, len: 0x1000 }.to_string(),
            "MMIO window overlaps the one at 0x1000 (length 0x1000)"
        );
    }

    #[test]
    fn routes_to_the_right_device() {
        let (mut a, mut b) = (Fake::default(), Fake::default());
        a.regs[0] = 0xaaaa;
        b.regs[0] = 0xbbbb;
        let mut bus: MmioBus<'_, 2> = MmioBus::new();
        bus.register(0x0900_0000, 0x1000, &mut a).unwrap();
        bus.register(0x0900_1000, 0x1000, &mut b).unwrap();
        assert_eq!(bus.read(0x0900_0000, AccessSize::Word), Ok(0xaaaa));
        assert_eq!(bus.read(0x0900_1000, AccessSize::Word), Ok(0xbbbb));
        bus.write(0x0900_1004, AccessSize::Word, 7).unwrap();
        assert_eq!((a.regs[1], b.regs[1]), (0, 7));
    }

    #[test]
    fn a_static_bus_is_possible() {
        // The hypervisor keeps its bus in a static behind a lock.
        static BUS: spin::Mutex<MmioBus<'static, 4>> = spin::Mutex::new(MmioBus::new());
        assert!(BUS.lock().is_empty());
    }

    #[test]
    fn access_sizes() {
        for (sas, bytes, mask) in [(0, 1, 0xff), (1, 2, 0xffff), (2, 4, 0xffff_ffff), (3, 8, u64::MAX)] {
            let size = AccessSize::from_sas(sas);
            assert_eq!(size.bytes(), bytes);
            assert_eq!(size.mask(), mask);
            assert_eq!(AccessSize::from_bytes(bytes), Some(size));
        }
        assert_eq!(AccessSize::from_bytes(3), None);
        assert_eq!(AccessSize::from_bytes(16), None);
        assert_eq!(AccessSize::from_sas(7), AccessSize::Double);
    }

    /// A device that answers misaligned accesses itself.
    struct ConfigLike;

    impl MmioDevice for ConfigLike {
        fn read(&mut self, _: u64, size: u8) -> Result<u64, MmioFault> {
            Ok(u64::MAX >> (64 - 8 * u32::from(size)))
        }
        fn write(&mut self, _: u64, _: u8, _: u64) -> Result<(), MmioFault> {
            Ok(())
        }
        fn accepts_misaligned(&self) -> bool {
            true
        }
    }

    #[test]
    fn misaligned_access_reaches_a_device_that_accepts_it() {
        let mut device = ConfigLike;
        let mut bus: MmioBus<'_, 1> = MmioBus::new();
        bus.register(0x1000, 0x1000, &mut device).unwrap();
        assert_eq!(bus.read(0x1001, AccessSize::Half), Ok(0xffff));
        assert_eq!(bus.write(0x1003, AccessSize::Word, 7), Ok(()));
        // Still bounded by the window.
        assert_eq!(bus.read(0x1fff, AccessSize::Half), Err(MmioFault::CrossesEnd { ipa: 0x1fff, size: 2 }));
    }
}
