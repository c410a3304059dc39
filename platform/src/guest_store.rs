//! Performing, on a guest's behalf, the one A64 instruction that stage 2
//! stopped because it wrote to a write-protected page: decoding it and
//! computing what it would have done, as pure logic, host-tested.
//!
//! The hypervisor write-protects the pages that hold a guest's stage-1
//! tables ([`crate::s1trace`]) and emulates every write the guest makes to
//! them. The syndrome cannot describe those writes: `ESR_EL2.ISV` is 1
//! only for a single-register load or store without writeback, and
//! Linux's page-table updates are also `STP`, `SWP` and `CAS` (`xchg`,
//! `cmpxchg`), `LDXR`/`STXR` loops (the same, without LSE) and whatever
//! else the compiler makes of a descriptor store. So the hypervisor reads
//! the instruction at `ELR_EL2` and hands it here:
//!
//! 1. [`decode`] (or [`decode_with`], given `DCZID_EL0`'s block size for
//!    `DC ZVA`) names the store or refuses the word ([`DecodeError`]);
//! 2. [`Store::address`] and [`Store::len`] give the bytes it touches,
//!    from the guest's registers ([`Regs`]);
//! 3. the caller reads those bytes and [`Store::apply`] returns the bytes
//!    to write back and the register writes ([`Outcome`]); the caller
//!    writes memory when [`Outcome::changed`], the registers, the base
//!    writeback, and resumes after the instruction (`ELR_EL2 += 4`).
//!
//! Covered: `STR`/`STRB`/`STRH` (unsigned offset, pre- and post-index,
//! register offset), `STUR*`, `STTR*`, `STLR*`, `STLLR*`, `STLUR*`,
//! `STP`/`STNP` of W and X registers, `STXR`/`STLXR`, `CAS*` (not
//! `CASP`), `SWP*`, `LDADD`/`LDCLR`/`LDEOR`/`LDSET`/`LDSMAX`/`LDSMIN`/
//! `LDUMAX`/`LDUMIN` and their `ST<op>` aliases, and `DC ZVA`, at every
//! size and with every ordering (acquire, release: see "What the caller
//! does" for the barriers).
//!
//! # Store-exclusive
//!
//! The hypervisor cannot see the guest's exclusive monitor, so a trapped
//! `STXR` is performed and reports success (`Ws` = 0). Reporting failure
//! instead would only send the guest round its loop into the same trap.
//! Success is sound from the store on: every write to a protected page is
//! serialized through the hypervisor, so nothing slips between the
//! emulated store and its status. What it does not cover is the window
//! between the guest's load-exclusive and this store: another CPU's write
//! there would have cleared the monitor and failed the `STXR`; here that
//! write is overwritten by a value computed from the stale load (a
//! `cmpxchg` loop compared that stale value, so it cannot notice either).
//! Linux's software writers of a descriptor serialize on the page-table
//! lock, which closes the window between them. The hardware's Access-flag
//! and dirty-state updates are writers outside the lock; the hypervisor
//! does not perform those (on a protected page they fault on the stage-1
//! walk). This module only says what "store, then write 0 to `Ws`" gives.
//!
//! # Semantics
//!
//! - Register 31 is XZR as a data source (`Rt`, `Rt2`, `Rs`) and as a
//!   destination (its writes are dropped, never listed), SP as a base
//!   (`Rn`: the stack pointer of the EL that made the access).
//! - Memory is little-endian; a big-endian guest (`SCTLR_EL1.EE`/`E0E`)
//!   is the caller's to refuse.
//! - A W-sized (or B/H) result written to a register is zero-extended:
//!   [`Outcome::writes`] holds the 64-bit value for the register frame.
//! - `CAS` compares memory with the low bytes of `Rs` and, when they
//!   differ, leaves memory as it was (`new` equals `old`); `Rs` gets the
//!   old value either way.
//! - The CONSTRAINED UNPREDICTABLE cases are given one permitted
//!   behaviour: a store with writeback whose base is also its data
//!   register stores the register's value from before the writeback; a
//!   store-exclusive whose status register is also its data or base
//!   register stores first and writes the status after; the
//!   should-be-one fields of `STXR` (`Rt2`) and `STLR` (`Rs`, `Rt2`)
//!   are ignored, as if they held ones.
//!
//! # What the caller does
//!
//! Nothing here translates or checks addresses: the caller checks that
//! `address()..address() + len()` lies in the page that faulted (an
//! unaligned store or a pair may straddle two pages, `DC ZVA` zeroes up
//! to [`MAX_LEN`] bytes, so `len()` may exceed a descriptor's 8), and
//! that it is aligned where it needs to be (a descriptor update at an
//! 8-byte boundary). `address()` is the full 64-bit VA, a top-byte tag
//! included, as the CPU computed it.
//!
//! The caller also keeps what the instruction promised other CPUs, which
//! this module cannot: the read of `old` and the write of the new bytes
//! form one atomic step against every other write to the page (a lock
//! over the emulation); the new bytes go back with single accesses of the
//! element size (an 8-byte descriptor with one 64-bit store, not byte by
//! byte: other CPUs' table walks read descriptors at any time); and
//! release and acquire semantics survive with a `DMB ISH` before and
//! after the emulated access (exception entry and return are
//! context-synchronizing, not barriers).
//!
//! # Refusals
//!
//! [`DecodeError::Unsupported`] is a store (or possibly one) that this
//! module does not perform: SIMD&FP and SVE/SME stores, `STXP`, `CASP`,
//! `STGP` and the tag stores, `ST64B*`, the `SET*`/`CPY*` copies, and
//! the extension spaces it does not take apart (FEAT_LSUI's unprivileged
//! atomics and pairs, FEAT_LSE128, FEAT_THE's `RCW*`, FEAT_LRCPC3,
//! FEAT_GCS, FEAT_LSFE), which also hold loads. [`DecodeError::NotAStore`]
//! is a load or a non-memory instruction (a `DC IVAC`, which needs write
//! permission, included: the syndrome's `CM` bit tells those apart).
//! [`DecodeError::Unallocated`] is an encoding the Arm ARM leaves
//! unallocated in the classes decoded here. A stage-2 write fault comes
//! from a store, so the last two mean the word is not the one that
//! trapped (another CPU rewrote it since) or not what the CPU ran.
//!
//! The instruction word is guest-controlled: nothing here panics, indexes
//! or does unchecked arithmetic, which clippy enforces (the crate-wide
//! lints in lib.rs).
// Beyond the crate-wide no-panic lints (lib.rs):
#![deny(clippy::as_conversions)]

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]
mod tests;

use core::fmt;

/// The most bytes one performed store touches: a `DC ZVA` block on QEMU
/// (`DCZID_EL0.BS` = 4); a pair of X registers is 16.
pub const MAX_LEN: usize = 64;

/// The guest's registers as the trap left them.
#[derive(Clone, Copy, Debug)]
pub struct Regs<'a> {
    /// `x0` to `x30`.
    pub x: &'a [u64; 31],
    /// The stack pointer of the EL that made the access: register 31 as a
    /// base.
    pub sp: u64,
}

impl Regs<'_> {
    /// Register `r` as a data operand or index: 31 is XZR.
    fn xzr(&self, r: u8) -> u64 {
        self.x.get(usize::from(r)).copied().unwrap_or(0)
    }

    /// Register `r` as a base: 31 is SP.
    fn xsp(&self, r: u8) -> u64 {
        if r == R31 {
            self.sp
        } else {
            self.xzr(r)
        }
    }
}

/// Register 31: SP as a base, XZR otherwise.
const R31: u8 = 31;

/// Why an instruction word is not performed (see the module doc,
/// "Refusals"); each carries the word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A store (or a word in a space that holds stores) this module does
    /// not perform.
    Unsupported(u32),
    /// A load or a non-memory instruction.
    NotAStore(u32),
    /// Unallocated in the classes decoded here.
    Unallocated(u32),
    /// [`Store::apply`] was given `old` of a length other than
    /// [`Store::len`]: the caller's mistake, nothing was computed.
    WrongLength(u32),
}

impl DecodeError {
    /// The instruction word refused.
    pub const fn insn(self) -> u32 {
        match self {
            Self::Unsupported(insn) | Self::NotAStore(insn) | Self::Unallocated(insn) | Self::WrongLength(insn) => insn,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::Unsupported(_) => "a store not emulated",
            Self::NotAStore(_) => "not a store",
            Self::Unallocated(_) => "unallocated",
            Self::WrongLength(_) => "old contents of the wrong length",
        };
        write!(f, "{:#010x}: {what}", self.insn())
    }
}

/// The class of a performed store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `STR`, `STUR`, `STTR`, `STLR`, `STLLR`, `STLUR` (each in B, H, W
    /// and X): the low bytes of `Rt`.
    Plain,
    /// `STP`, `STNP` (W and X): `Rt`, then `Rt2` at the next element.
    Pair,
    /// `STXR`, `STLXR` (B, H, W, X): the low bytes of `Rt`; `Ws` = 0.
    Exclusive,
    /// `CAS`, `CASA`, `CASL`, `CASAL` (B, H, W, X): `Rt` if memory equals
    /// `Rs`; `Rs` = old.
    CompareAndSwap,
    /// `SWP`, `SWPA`, `SWPL`, `SWPAL` (B, H, W, X): `Rs`; `Rt` = old.
    Swap,
    /// `LD<op>`, `LD<op>A`, `LD<op>L`, `LD<op>AL` and `ST<op>`, `ST<op>L`
    /// (B, H, W, X): `op(old, Rs)`; `Rt` = old.
    Atomic(AtomicOp),
    /// `DC ZVA`: zeroes the block holding `Xt`.
    ZeroBlock,
}

/// The operation of an LSE atomic (`LD<op>`/`ST<op>`): the new memory
/// value from the old one and `Rs`, at the access size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomicOp {
    Add,
    /// `old AND NOT Rs`.
    Clr,
    Eor,
    /// `old OR Rs`.
    Set,
    Smax,
    Smin,
    Umax,
    Umin,
}

impl AtomicOp {
    /// From `opc`, bits \[14:12\] of the encoding (with `o3` = 0).
    const fn from_opc(opc: u32) -> Self {
        match opc & 7 {
            0 => Self::Add,
            1 => Self::Clr,
            2 => Self::Eor,
            3 => Self::Set,
            4 => Self::Smax,
            5 => Self::Smin,
            6 => Self::Umax,
            _ => Self::Umin,
        }
    }

    /// The new memory value, at `size`, from `old` and `operand` (both
    /// zero-extended from `size`).
    fn apply(self, size: Size, old: u64, operand: u64) -> u64 {
        let result = match self {
            Self::Add => old.wrapping_add(operand),
            Self::Clr => old & !operand,
            Self::Eor => old ^ operand,
            Self::Set => old | operand,
            Self::Smax => {
                if size.signed(old) >= size.signed(operand) {
                    old
                } else {
                    operand
                }
            }
            Self::Smin => {
                if size.signed(old) <= size.signed(operand) {
                    old
                } else {
                    operand
                }
            }
            Self::Umax => old.max(operand),
            Self::Umin => old.min(operand),
        };
        result & size.mask()
    }
}

/// The size of one element of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Size {
    B,
    H,
    W,
    X,
}

impl Size {
    /// From a two-bit `size` field: 1 << size bytes.
    const fn from_field(size: u32) -> Self {
        match size & 3 {
            0 => Self::B,
            1 => Self::H,
            2 => Self::W,
            _ => Self::X,
        }
    }

    /// log2 of the bytes: the scale of a scaled offset.
    const fn log2(self) -> u32 {
        match self {
            Self::B => 0,
            Self::H => 1,
            Self::W => 2,
            Self::X => 3,
        }
    }

    const fn bytes(self) -> usize {
        match self {
            Self::B => 1,
            Self::H => 2,
            Self::W => 4,
            Self::X => 8,
        }
    }

    const fn mask(self) -> u64 {
        match self {
            Self::B => 0xff,
            Self::H => 0xffff,
            Self::W => 0xffff_ffff,
            Self::X => u64::MAX,
        }
    }

    /// `value`'s low bytes, sign-extended.
    fn signed(self, value: u64) -> i64 {
        let [b0, b1, b2, b3, ..] = value.to_le_bytes();
        match self {
            Self::B => i64::from(i8::from_le_bytes([b0])),
            Self::H => i64::from(i16::from_le_bytes([b0, b1])),
            Self::W => i64::from(i32::from_le_bytes([b0, b1, b2, b3])),
            Self::X => value.cast_signed(),
        }
    }
}

/// How the index register of a register-offset store is extended
/// (`option`, bits \[15:13\]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extend {
    /// `UXTW`: `Wm` zero-extended.
    Uxtw,
    /// `LSL`/`UXTX`: `Xm`.
    Lsl,
    /// `SXTW`: `Wm` sign-extended.
    Sxtw,
    /// `SXTX`: `Xm`.
    Sxtx,
}

impl Extend {
    fn apply(self, value: u64) -> u64 {
        match self {
            Self::Uxtw => value & 0xffff_ffff,
            Self::Sxtw => Size::W.signed(value).cast_unsigned(),
            Self::Lsl | Self::Sxtx => value,
        }
    }
}

/// What is added to the base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offset {
    /// An immediate, already scaled.
    Imm(i64),
    /// An index register (31 is XZR), extended, then shifted left.
    Reg { rm: u8, extend: Extend, shift: u8 },
}

/// When the base is written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Index {
    /// Base + offset, no writeback.
    Offset,
    /// Base + offset, written back.
    Pre,
    /// The base itself; base + offset written back.
    Post,
}

/// Where the access goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Address {
    /// `Xn|SP` with an offset.
    Base { rn: u8, offset: Offset, index: Index },
    /// `DC ZVA`: `Xt` (31 is XZR), aligned down to the block.
    Block { rt: u8 },
}

/// One decoded store, ready to be performed with a register frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Store {
    insn: u32,
    kind: Kind,
    /// One element's size (a pair stores two).
    size: Size,
    /// The data register (unused for [`Kind::ZeroBlock`]).
    rt: u8,
    /// The second register: `Rt2` of a pair, `Rs` otherwise (the status
    /// of a store-exclusive, the comparand of a CAS, the operand of a
    /// swap or an atomic); unused for [`Kind::Plain`] and
    /// [`Kind::ZeroBlock`].
    rs: u8,
    address: Address,
    /// Bytes touched, 1 to [`MAX_LEN`].
    len: u8,
}

/// What performing a [`Store`] gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The bytes to write back: the first [`len`](Self::len) (see
    /// [`bytes`](Self::bytes)); for a CAS whose comparison fails, the
    /// old bytes.
    pub new: [u8; MAX_LEN],
    pub len: usize,
    /// Register writes, in order: (register 0 to 30, its new 64-bit
    /// value). A write to register 31 (XZR) is not listed.
    pub writes: [Option<(u8, u64)>; 3],
    /// The base register's writeback (pre- or post-index): (register 0 to
    /// 31, value), where 31 is SP (of the EL that made the access).
    pub writeback: Option<(u8, u64)>,
    changed: bool,
}

impl Outcome {
    /// The bytes to write back, `len` of them.
    pub fn bytes(&self) -> &[u8] {
        self.new.get(..self.len).unwrap_or(&self.new)
    }

    /// Whether the new bytes differ from the old ones: false for a CAS
    /// whose comparison failed, and for any store of what memory already
    /// held. Nothing needs writing then; the register writes and the
    /// writeback still apply.
    pub const fn changed(&self) -> bool {
        self.changed
    }

    /// Stores `value`'s low `size` bytes at `offset` in `new`.
    fn put(&mut self, offset: usize, value: u64, size: Size) {
        let bytes = value.to_le_bytes();
        for (slot, byte) in self.new.iter_mut().skip(offset).zip(bytes.iter().take(size.bytes())) {
            *slot = *byte;
        }
    }

    /// Lists a register write, unless to XZR.
    fn write(&mut self, reg: u8, value: u64) {
        if reg == R31 {
            return;
        }
        if let Some(slot) = self.writes.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some((reg, value));
        }
    }
}

impl Store {
    /// The instruction word.
    pub const fn insn(&self) -> u32 {
        self.insn
    }

    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// The first byte the access touches, computed as the CPU does: the
    /// base plus the offset (pre-index and no writeback), the base itself
    /// (post-index), `Xt` aligned down to the block (`DC ZVA`).
    pub fn address(&self, regs: &Regs) -> u64 {
        match self.address {
            Address::Base { rn, offset, index } => match index {
                Index::Post => regs.xsp(rn),
                Index::Offset | Index::Pre => regs.xsp(rn).wrapping_add(Self::offset(offset, regs)),
            },
            Address::Block { rt } => regs.xzr(rt) & !u64::from(self.len).wrapping_sub(1),
        }
    }

    /// Bytes the access touches: 1, 2, 4 or 8 for one register, 8 or 16
    /// for a pair, the block size for `DC ZVA`; never 0.
    #[allow(clippy::len_without_is_empty)] // an access touches at least one byte
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the bytes written depend on the old contents (CAS, SWP and
    /// the LSE atomics, whose old value also goes to a register).
    pub const fn reads_memory(&self) -> bool {
        matches!(self.kind, Kind::CompareAndSwap | Kind::Swap | Kind::Atomic(_))
    }

    /// Performs the store on `old`, the [`len`](Self::len) bytes at
    /// [`address`](Self::address) (little-endian): the bytes to write
    /// back, the register writes and the base writeback.
    pub fn apply(&self, regs: &Regs, old: &[u8]) -> Result<Outcome, DecodeError> {
        if old.len() != self.len() {
            return Err(DecodeError::WrongLength(self.insn));
        }
        let mut out =
            Outcome { new: [0; MAX_LEN], len: self.len(), writes: [None; 3], writeback: None, changed: false };
        let size = self.size;
        // The old element, zero-extended (one element for every class
        // that reads memory).
        let mut old_bytes = [0u8; 8];
        for (slot, byte) in old_bytes.iter_mut().zip(old) {
            *slot = *byte;
        }
        let old_value = u64::from_le_bytes(old_bytes) & size.mask();
        match self.kind {
            Kind::Plain => out.put(0, regs.xzr(self.rt), size),
            Kind::Pair => {
                out.put(0, regs.xzr(self.rt), size);
                out.put(size.bytes(), regs.xzr(self.rs), size);
            }
            Kind::Exclusive => {
                out.put(0, regs.xzr(self.rt), size);
                out.write(self.rs, 0);
            }
            Kind::CompareAndSwap => {
                let stored = if old_value == regs.xzr(self.rs) & size.mask() { regs.xzr(self.rt) } else { old_value };
                out.put(0, stored, size);
                out.write(self.rs, old_value);
            }
            Kind::Swap => {
                out.put(0, regs.xzr(self.rs), size);
                out.write(self.rt, old_value);
            }
            Kind::Atomic(op) => {
                out.put(0, op.apply(size, old_value, regs.xzr(self.rs) & size.mask()), size);
                out.write(self.rt, old_value);
            }
            // `new` is all zeros already.
            Kind::ZeroBlock => {}
        }
        if let Address::Base { rn, offset, index: Index::Pre | Index::Post } = self.address {
            out.writeback = Some((rn, regs.xsp(rn).wrapping_add(Self::offset(offset, regs))));
        }
        out.changed = out.bytes() != old;
        Ok(out)
    }

    fn offset(offset: Offset, regs: &Regs) -> u64 {
        match offset {
            Offset::Imm(imm) => imm.cast_unsigned(),
            Offset::Reg { rm, extend, shift } => extend.apply(regs.xzr(rm)).wrapping_shl(u32::from(shift)),
        }
    }

    /// A store of `len` bytes with this addressing.
    fn new(insn: u32, kind: Kind, size: Size, address: Address) -> Self {
        let len = match kind {
            Kind::Pair => size.bytes().saturating_mul(2),
            _ => size.bytes(),
        };
        Self {
            insn,
            kind,
            size,
            rt: reg(insn, RT),
            rs: match kind {
                Kind::Pair => reg(insn, RT2),
                _ => reg(insn, RS),
            },
            address,
            len: u8::try_from(len).unwrap_or(u8::MAX),
        }
    }
}

/// Decodes `insn` as a store, with a 64-byte `DC ZVA` block (QEMU's).
pub fn decode(insn: u32) -> Result<Store, DecodeError> {
    decode_with(insn, MAX_LEN)
}

/// Decodes `insn` as a store; `zva_block` is the bytes `DC ZVA` zeroes
/// (`4 << DCZID_EL0.BS`): a power of two up to [`MAX_LEN`], else a
/// `DC ZVA` is [`DecodeError::Unsupported`].
pub fn decode_with(insn: u32, zva_block: usize) -> Result<Store, DecodeError> {
    // The loads and stores: op0 (bits [28:25]) = x1x0.
    if !bit(insn, 27) || bit(insn, 25) {
        return outside_loads_and_stores(insn, zva_block);
    }
    match field(insn, 28, 2) {
        0b00 => exclusive_or_structures(insn),
        0b01 => literal_or_rcpc(insn),
        0b10 => pair(insn),
        _ => single(insn),
    }
}

// Field positions of the registers.
const RT: u32 = 0;
const RN: u32 = 5;
const RT2: u32 = 10;
const RS: u32 = 16;

fn bit(insn: u32, n: u32) -> bool {
    insn.wrapping_shr(n) & 1 != 0
}

/// Bits `[lo + width - 1 : lo]`, `width` 1 to 31.
fn field(insn: u32, lo: u32, width: u32) -> u32 {
    insn.wrapping_shr(lo) & 1u32.wrapping_shl(width).wrapping_sub(1)
}

/// The 5-bit register field at `lo`.
fn reg(insn: u32, lo: u32) -> u8 {
    let [low, ..] = field(insn, lo, 5).to_le_bytes();
    low
}

/// The `width`-bit field at `lo`, sign-extended.
fn signed_field(insn: u32, lo: u32, width: u32) -> i64 {
    let shift = 64u32.wrapping_sub(width);
    i64::from(field(insn, lo, width)).wrapping_shl(shift).wrapping_shr(shift)
}

/// The `L` bit (22) of the classes that have one: a load.
fn load_or_store(insn: u32) -> DecodeError {
    if bit(insn, 22) {
        DecodeError::NotAStore(insn)
    } else {
        DecodeError::Unsupported(insn)
    }
}

/// Outside the loads and stores: `DC ZVA`, and the SVE and SME stores.
fn outside_loads_and_stores(insn: u32, zva_block: usize) -> Result<Store, DecodeError> {
    // SYS #3, C7, C4, #op2, Xt: DC ZVA (op2 1), DC GVA (3), DC GZVA (4).
    const DC_ZVA: u32 = 0xd50b_7420;
    const DC_GVA: u32 = 0xd50b_7460;
    const DC_GZVA: u32 = 0xd50b_7480;
    match insn & !0x1f {
        DC_ZVA => {
            if !zva_block.is_power_of_two() || !(4..=MAX_LEN).contains(&zva_block) {
                return Err(DecodeError::Unsupported(insn));
            }
            Ok(Store {
                insn,
                kind: Kind::ZeroBlock,
                size: Size::X,
                rt: reg(insn, RT),
                rs: R31,
                address: Address::Block { rt: reg(insn, RT) },
                len: u8::try_from(zva_block).unwrap_or(u8::MAX),
            })
        }
        // The tag-setting zeroes: tags are not emulated.
        DC_GVA | DC_GZVA => Err(DecodeError::Unsupported(insn)),
        // Bits [31:25]: 1110010 is SVE's store group, 1110000 SME's
        // loads and stores of ZA (and ZT0).
        _ if matches!(field(insn, 25, 7), 0b111_0010 | 0b111_0000) => Err(DecodeError::Unsupported(insn)),
        _ => Err(DecodeError::NotAStore(insn)),
    }
}

/// Bits \[29:28\] = 00: the exclusives, load-acquire/store-release and
/// compare-and-swap (`size 001000 o2 L o1 Rs o0 Rt2 Rn Rt`), and the SIMD
/// structures (bit 26).
fn exclusive_or_structures(insn: u32) -> Result<Store, DecodeError> {
    if bit(insn, 26) {
        return Err(load_or_store(insn));
    }
    // Bits [29:24] = 001001: FEAT_LSUI's unprivileged exclusives and CAS.
    if bit(insn, 24) {
        return Err(DecodeError::Unsupported(insn));
    }
    let size = Size::from_field(field(insn, 30, 2));
    let at_base = Address::Base { rn: reg(insn, RN), offset: Offset::Imm(0), index: Index::Offset };
    let load = bit(insn, 22);
    let rt2_ones = reg(insn, RT2) == 31;
    // (o2, o1)
    match (bit(insn, 23), bit(insn, 21)) {
        (false, false) if load => Err(DecodeError::NotAStore(insn)), // LDXR, LDAXR
        (false, false) => Ok(Store::new(insn, Kind::Exclusive, size, at_base)), // STXR, STLXR
        // Bit 31 set: STXP/STLXP, LDXP/LDAXP.
        (false, true) if bit(insn, 31) => Err(load_or_store(insn)),
        // CASP, CASPA, CASPL, CASPAL (L is acquire here).
        (false, true) if rt2_ones => Err(DecodeError::Unsupported(insn)),
        (false, true) => Err(DecodeError::Unallocated(insn)),
        (true, false) if load => Err(DecodeError::NotAStore(insn)), // LDAR, LDLAR
        (true, false) => Ok(Store::new(insn, Kind::Plain, size, at_base)), // STLR, STLLR
        // CAS, CASA, CASL, CASAL (L is acquire here).
        (true, true) if rt2_ones => Ok(Store::new(insn, Kind::CompareAndSwap, size, at_base)),
        (true, true) => Err(DecodeError::Unallocated(insn)),
    }
}

/// Bits \[29:28\] = 01: the literal loads (bit 24 clear); `STLUR`, the tag
/// stores, and the extension spaces (bit 24 set).
fn literal_or_rcpc(insn: u32) -> Result<Store, DecodeError> {
    let size = field(insn, 30, 2);
    let opc = field(insn, 22, 2);
    if !bit(insn, 24) {
        // LDR (literal), LDRSW (literal), PRFM (literal); the SIMD&FP
        // loads have no opc 11.
        return Err(if bit(insn, 26) && size == 0b11 {
            DecodeError::Unallocated(insn)
        } else {
            DecodeError::NotAStore(insn)
        });
    }
    if bit(insn, 26) {
        return Err(DecodeError::Unsupported(insn));
    }
    // 11011001 op 1 imm9 op2 Rn Rt: the memory-tag instructions, of which
    // LDG (op 01, op2 00) and LDGM (op 11, op2 00) load.
    if field(insn, 24, 8) == 0xd9 && bit(insn, 21) {
        return Err(match (opc, field(insn, 10, 2)) {
            (0b01 | 0b11, 0b00) => DecodeError::NotAStore(insn),
            _ => DecodeError::Unsupported(insn),
        });
    }
    // size 011001 opc 0 imm9 00 Rn Rt: STLUR*, LDAPUR*.
    if !bit(insn, 21) && field(insn, 10, 2) == 0b00 {
        let offset = Offset::Imm(signed_field(insn, 12, 9));
        return match (opc, size) {
            (0b00, _) => Ok(Store::new(
                insn,
                Kind::Plain,
                Size::from_field(size),
                Address::Base { rn: reg(insn, RN), offset, index: Index::Offset },
            )),
            (0b10, 0b11) | (0b11, 0b10 | 0b11) => Err(DecodeError::Unallocated(insn)),
            _ => Err(DecodeError::NotAStore(insn)),
        };
    }
    // MOPS (SET*, CPY*), FEAT_LRCPC3, FEAT_LSE128, FEAT_THE, FEAT_LSUI's
    // atomics, FEAT_GCS.
    Err(DecodeError::Unsupported(insn))
}

/// Bits \[29:28\] = 10: the pairs, `opc 101 V mode L imm7 Rt2 Rn Rt` with
/// mode (bits \[24:23\]) 00 no-allocate, 01 post-index, 10 offset, 11
/// pre-index.
fn pair(insn: u32) -> Result<Store, DecodeError> {
    if bit(insn, 26) {
        return Err(load_or_store(insn));
    }
    let mode = field(insn, 23, 2);
    let size = match field(insn, 30, 2) {
        0b00 => Size::W,
        0b10 => Size::X,
        // STGP, LDPSW; no no-allocate form.
        0b01 if mode == 0b00 => return Err(DecodeError::Unallocated(insn)),
        // 01: STGP, LDPSW; 11: FEAT_LSUI's STTP, LDTP.
        _ => return Err(load_or_store(insn)),
    };
    if bit(insn, 22) {
        return Err(DecodeError::NotAStore(insn)); // LDP, LDNP
    }
    let offset = Offset::Imm(signed_field(insn, 15, 7).wrapping_shl(size.log2()));
    let index = match mode {
        0b01 => Index::Post,
        0b11 => Index::Pre,
        _ => Index::Offset,
    };
    Ok(Store::new(insn, Kind::Pair, size, Address::Base { rn: reg(insn, RN), offset, index }))
}

/// The forms of the single-register class (bits \[29:28\] = 11).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// imm12, scaled.
    Unsigned,
    /// imm9: STUR.
    Unscaled,
    PostIndex,
    /// imm9: STTR.
    Unprivileged,
    PreIndex,
    Register,
}

/// Bits \[29:28\] = 11: one register, `size 111 V 0x opc ...`, and the LSE
/// atomics.
fn single(insn: u32) -> Result<Store, DecodeError> {
    if bit(insn, 24) {
        return scalar(insn, Form::Unsigned);
    }
    if !bit(insn, 21) {
        let form = match field(insn, 10, 2) {
            0b00 => Form::Unscaled,
            0b01 => Form::PostIndex,
            0b10 => Form::Unprivileged,
            _ => Form::PreIndex,
        };
        return scalar(insn, form);
    }
    match field(insn, 10, 2) {
        0b00 => atomic(insn),
        0b10 => scalar(insn, Form::Register),
        // LDRAA, LDRAB.
        _ if !bit(insn, 26) && field(insn, 30, 2) == 0b11 => Err(DecodeError::NotAStore(insn)),
        _ => Err(DecodeError::Unsupported(insn)),
    }
}

/// `size 111 V 0x opc ...`: STR and its loads, in `form`.
fn scalar(insn: u32, form: Form) -> Result<Store, DecodeError> {
    let option = field(insn, 13, 3);
    if form == Form::Register && option & 0b010 == 0 {
        return Err(DecodeError::Unallocated(insn));
    }
    if bit(insn, 26) {
        return Err(load_or_store(insn));
    }
    let size_field = field(insn, 30, 2);
    match (field(insn, 22, 2), size_field) {
        (0b00, _) => {}
        // LDR*; LDRS* to X; LDRS* to W.
        (0b01, _) | (0b10, 0b00..=0b10) | (0b11, 0b00 | 0b01) => return Err(DecodeError::NotAStore(insn)),
        // PRFM, PRFUM; no writeback or unprivileged form.
        (0b10, _) => {
            return Err(match form {
                Form::Unsigned | Form::Unscaled | Form::Register => DecodeError::NotAStore(insn),
                Form::PostIndex | Form::PreIndex | Form::Unprivileged => DecodeError::Unallocated(insn),
            })
        }
        _ => return Err(DecodeError::Unallocated(insn)),
    }
    let size = Size::from_field(size_field);
    let imm9 = Offset::Imm(signed_field(insn, 12, 9));
    let (offset, index) = match form {
        Form::Unsigned => (Offset::Imm(i64::from(field(insn, 10, 12)).wrapping_shl(size.log2())), Index::Offset),
        Form::Unscaled | Form::Unprivileged => (imm9, Index::Offset),
        Form::PostIndex => (imm9, Index::Post),
        Form::PreIndex => (imm9, Index::Pre),
        Form::Register => {
            let extend = match option {
                0b010 => Extend::Uxtw,
                0b110 => Extend::Sxtw,
                0b111 => Extend::Sxtx,
                _ => Extend::Lsl,
            };
            let shift = if bit(insn, 12) { size.log2() } else { 0 };
            let [shift, ..] = shift.to_le_bytes();
            (Offset::Reg { rm: reg(insn, RS), extend, shift }, Index::Offset)
        }
    };
    Ok(Store::new(insn, Kind::Plain, size, Address::Base { rn: reg(insn, RN), offset, index }))
}

/// `size 111 V 00 A R 1 Rs o3 opc 00 Rn Rt`: the LSE atomics, `SWP`, and
/// `LDAPR`, `LD64B`, `ST64B*`.
fn atomic(insn: u32) -> Result<Store, DecodeError> {
    // FEAT_LSFE's floating-point atomics.
    if bit(insn, 26) {
        return Err(DecodeError::Unsupported(insn));
    }
    let size = Size::from_field(field(insn, 30, 2));
    let at_base = Address::Base { rn: reg(insn, RN), offset: Offset::Imm(0), index: Index::Offset };
    let opc = field(insn, 12, 3);
    let (acquire, release) = (bit(insn, 23), bit(insn, 22));
    if !bit(insn, 15) {
        return Ok(Store::new(insn, Kind::Atomic(AtomicOp::from_opc(opc)), size, at_base));
    }
    match opc {
        0b000 => Ok(Store::new(insn, Kind::Swap, size, at_base)),
        // LDAPR*.
        0b100 if acquire && !release => Err(DecodeError::NotAStore(insn)),
        // LD64B.
        0b101 if size == Size::X && !acquire && !release => Err(DecodeError::NotAStore(insn)),
        // ST64B, ST64BV, ST64BV0, and what later extensions put here.
        _ => Err(DecodeError::Unsupported(insn)),
    }
}
