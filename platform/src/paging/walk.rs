//! Building and walking the tables: VA-width arithmetic, `map`, `unmap`,
//! `translate`, and the two operations this module exists for,
//! [`ensure_table`] (a narrow-VA subtree) and [`clone_root`] /
//! [`unshare_path`] (per-CPU roots).

use core::fmt;

use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};

use super::attrs::{bits, encode, Attributes, EncodeError, Regime};
use super::pool::PagePool;

/// The deepest level of the 4 KiB granule (pages).
pub const LAST_LEVEL: u8 = 3;

/// Largest output address a descriptor can hold (48-bit PA).
const OA_LIMIT: u64 = bits::OA_MASK | (PAGE_SIZE - 1);
/// Descriptor type bits of a table (levels 0 to 2) or page (level 3).
const TYPE_TABLE: u64 = bits::VALID | bits::TABLE_OR_PAGE;
/// Descriptor type bits of a block (levels 1 and 2).
const TYPE_BLOCK: u64 = bits::VALID;

/// The initial lookup level for a VA space of `va_bits` bits with the
/// 4 KiB granule: 40 to 48 bits start at level 0, 31 to 39 at level 1,
/// 25 to 30 at level 2. Other widths (more than 48 bits needs FEAT_LPA2,
/// fewer than 25 needs FEAT_TTST; neither is used here) give `None`.
pub const fn root_level(va_bits: u32) -> Option<u8> {
    match va_bits {
        40..=48 => Some(0),
        31..=39 => Some(1),
        25..=30 => Some(2),
        _ => None,
    }
}

/// The `TCR_ELx.TxSZ` value for a VA space of `va_bits` bits:
/// `64 - va_bits`. It does not validate `va_bits` (check
/// [`root_level`] for that); widths above 64 give 0.
#[allow(clippy::as_conversions)] // lossless u32 -> u64; `From` is not const
pub const fn txsz(va_bits: u32) -> u64 {
    64u32.saturating_sub(va_bits) as u64
}

/// The address bit at which level `level`'s index starts.
const fn level_shift(level: u8) -> Option<u32> {
    match level {
        0 => Some(39),
        1 => Some(30),
        2 => Some(21),
        3 => Some(12),
        _ => None,
    }
}

/// Bytes one entry at `level` covers: 512 GiB, 1 GiB, 2 MiB or 4 KiB for
/// levels 0 to 3; `None` for any other level.
pub const fn level_size(level: u8) -> Option<u64> {
    match level_shift(level) {
        Some(shift) => Some(1u64 << shift),
        None => None,
    }
}

/// The index of `va` in a table at `level` (bits \[shift+8:shift\]);
/// `None` for a level above 3. For the root table of a space narrower than
/// its level's full reach, callers must first check that `va` is in range.
pub fn index(va: VirtAddr, level: u8) -> Option<usize> {
    let shift = level_shift(level)?;
    let bits9 = va.0.checked_shr(shift)? & 0x1ff;
    usize::try_from(bits9).ok()
}

/// A successful walk: the output address and the leaf that produced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Walk {
    /// The physical address `va` translates to.
    pub pa: PhysAddr,
    /// The level of the leaf: 1 or 2 for a block, 3 for a page.
    pub level: u8,
    /// The leaf descriptor itself.
    pub descriptor: u64,
}

impl Walk {
    /// Bytes the leaf maps.
    pub fn size(&self) -> u64 {
        level_size(self.level).unwrap_or(0)
    }
}

/// Why a walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// What the hardware reports as a Translation fault: an invalid (or
    /// reserved) descriptor at `level`, or, at level 0, a VA outside the
    /// space.
    Translation,
    /// The walk reached a table address the pool does not know (a software
    /// error: a foreign root, or a corrupted descriptor).
    UnknownTable {
        /// The table address.
        pa: PhysAddr,
    },
    /// `va_bits` is not a supported width (see [`root_level`]).
    UnsupportedVaBits,
}

/// A failed walk, reported like a hardware translation fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// The level at which the walk stopped.
    pub level: u8,
    /// Why.
    pub kind: FaultKind,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::Translation => write!(f, "translation fault at level {}", self.level),
            FaultKind::UnknownTable { pa } => {
                write!(f, "table walk reached {pa} at level {}, which is not a table of the pool", self.level)
            }
            FaultKind::UnsupportedVaBits => f.write_str("unsupported VA width"),
        }
    }
}

/// Why a table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapError {
    /// `va`, `pa` or `len` is not a multiple of 4 KiB.
    Misaligned,
    /// The range does not fit in the `va_bits` space (or wraps past 2^64),
    /// the physical range does not fit in 48 bits, or an upper-range VA was
    /// given for [`Regime::El2`], which has one VA range.
    OutOfRange,
    /// `va_bits` is not a supported width (see [`root_level`]).
    UnsupportedVaBits {
        /// The width asked for.
        va_bits: u32,
    },
    /// A level outside the root level ..= 3 of this space.
    InvalidLevel {
        /// The level asked for.
        level: u8,
    },
    /// A leaf (block or page) already maps `va`. [`map`] never overwrites,
    /// not even with an identical descriptor.
    AlreadyMapped {
        /// The first VA found mapped.
        va: VirtAddr,
    },
    /// [`unmap`]: nothing maps `va`.
    NotMapped {
        /// The first VA found unmapped.
        va: VirtAddr,
    },
    /// [`unmap`]: the range starts or ends inside the block or page at
    /// `level` that maps `va` (blocks are not split).
    SplitsBlock {
        /// The VA in the block.
        va: VirtAddr,
        /// The block's level.
        level: u8,
    },
    /// The pool has no table left.
    PoolExhausted,
    /// The attributes cannot be encoded in the regime.
    Unexpressible(EncodeError),
    /// A table address that the pool does not know (a root from another
    /// pool, a corrupted descriptor, or a pool handing out bad addresses).
    UnknownTable {
        /// The table address.
        pa: PhysAddr,
    },
}

impl From<EncodeError> for MapError {
    fn from(error: EncodeError) -> Self {
        Self::Unexpressible(error)
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned => f.write_str("VA, PA and length must be multiples of 4 KiB"),
            Self::OutOfRange => f.write_str(
                "range does not fit in the VA space (or the PA in 48 bits, \
                 or an upper-range VA in the single-range EL2 regime)",
            ),
            Self::UnsupportedVaBits { va_bits } => {
                write!(f, "unsupported VA width {va_bits} (4 KiB granule: 25 to 48 bits)")
            }
            Self::InvalidLevel { level } => {
                write!(f, "level {level} is not a table level of this VA space")
            }
            Self::AlreadyMapped { va } => write!(f, "{va} is already mapped"),
            Self::NotMapped { va } => write!(f, "{va} is not mapped"),
            Self::SplitsBlock { va, level } => {
                write!(f, "range boundary falls inside the level-{level} block mapping {va}")
            }
            Self::PoolExhausted => f.write_str("translation table pool exhausted"),
            Self::Unexpressible(error) => write!(f, "attributes not expressible: {error}"),
            Self::UnknownTable { pa } => {
                write!(f, "{pa} is not a translation table of the pool")
            }
        }
    }
}

/// A VA space: its root table, and how wide it is.
#[derive(Clone, Copy, Debug)]
struct Space {
    root: PhysAddr,
    root_level: u8,
    /// Bits \[va_bits-1:0\]: the part of a VA that the walk indexes with.
    mask: u64,
}

/// A checked range in a [`Space`].
#[derive(Clone, Copy, Debug)]
struct Range {
    /// The input address (VA with the range-selecting top bits removed).
    ia: u64,
    /// The top bits: 0 for the lower range, all ones for the upper one.
    top: u64,
}

impl Space {
    fn new(root: PhysAddr, va_bits: u32) -> Result<Self, MapError> {
        let root_level = root_level(va_bits).ok_or(MapError::UnsupportedVaBits { va_bits })?;
        let mask =
            1u64.checked_shl(va_bits).map(|bit| bit.wrapping_sub(1)).ok_or(MapError::UnsupportedVaBits { va_bits })?;
        Ok(Self { root, root_level, mask })
    }

    /// Checks that the `len`-byte range at `va` (at least one byte) lies in
    /// one VA range of this space: bits \[63:va_bits\] all zero (lower,
    /// `TTBR0`) or all one (upper, `TTBR1`), for its first and last byte.
    fn range(&self, va: VirtAddr, len: u64) -> Result<Range, MapError> {
        let last = va.0.checked_add(len.saturating_sub(1)).ok_or(MapError::OutOfRange)?;
        let top = va.0 & !self.mask;
        if (top != 0 && top != !self.mask) || last & !self.mask != top {
            return Err(MapError::OutOfRange);
        }
        Ok(Range { ia: va.0 & self.mask, top })
    }
}

impl Range {
    /// The VA of input address `ia` in this range.
    fn va(&self, ia: u64) -> VirtAddr {
        VirtAddr(self.top | ia)
    }
}

/// What one descriptor is, as the hardware would read it at `level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// Bit 0 clear.
    Invalid,
    /// A table descriptor (levels 0 to 2).
    Table(PhysAddr),
    /// A block (levels 1, 2) or page (level 3) descriptor.
    Leaf(u64),
    /// Valid bit set but an encoding the 4 KiB granule reserves: a block at
    /// level 0, or type `0b01` at level 3. Hardware faults on it; `map`
    /// does not overwrite it.
    Reserved,
}

fn classify(desc: u64, level: u8) -> Entry {
    if desc & bits::VALID == 0 {
        return Entry::Invalid;
    }
    let table_or_page = desc & bits::TABLE_OR_PAGE != 0;
    match (level, table_or_page) {
        (0..=2, true) => Entry::Table(PhysAddr(desc & bits::OA_MASK)),
        (1..=2, false) | (3, true) => Entry::Leaf(desc),
        _ => Entry::Reserved,
    }
}

fn read<P: PagePool + ?Sized>(pool: &mut P, table: PhysAddr, idx: usize) -> Result<u64, MapError> {
    pool.table(table).and_then(|t| t.get(idx).copied()).ok_or(MapError::UnknownTable { pa: table })
}

fn write<P: PagePool + ?Sized>(pool: &mut P, table: PhysAddr, idx: usize, desc: u64) -> Result<(), MapError> {
    let slot = pool.table(table).and_then(|t| t.get_mut(idx)).ok_or(MapError::UnknownTable { pa: table })?;
    *slot = desc;
    Ok(())
}

/// A new zeroed table from the pool, checked to be nameable by a table
/// descriptor.
fn alloc<P: PagePool + ?Sized>(pool: &mut P) -> Result<PhysAddr, MapError> {
    let pa = pool.alloc_table().ok_or(MapError::PoolExhausted)?;
    if pa.0 & !bits::OA_MASK != 0 {
        return Err(MapError::UnknownTable { pa });
    }
    Ok(pa)
}

/// Index of input address `ia` at `level` (a level known to be 0..=3).
fn idx(ia: u64, level: u8) -> Result<usize, MapError> {
    index(VirtAddr(ia), level).ok_or(MapError::InvalidLevel { level })
}

fn size_of(level: u8) -> Result<u64, MapError> {
    level_size(level).ok_or(MapError::InvalidLevel { level })
}

fn next_level(level: u8) -> Result<u8, MapError> {
    match level.checked_add(1) {
        Some(next) if next <= LAST_LEVEL => Ok(next),
        _ => Err(MapError::InvalidLevel { level }),
    }
}

/// Maps `len` bytes at `va` to `pa` in the space of `va_bits` bits whose
/// root table is `root`, with `attrs` encoded for `regime`.
///
/// Uses the largest leaf that fits at each step: a 1 GiB block (level 1)
/// or a 2 MiB block (level 2) where `va`, `pa` and the remaining length are
/// all aligned to it and no table is already there, 4 KiB pages otherwise.
/// Where a table already exists, the mapping goes into it, at a finer
/// granularity. Missing tables come from `pool`.
///
/// Never overwrites a valid leaf: if any part of the range is already
/// mapped (even identically), it fails with [`MapError::AlreadyMapped`]
/// naming the first such VA. On any error, whatever this call had mapped is
/// unmapped again, so the VA space is as before (tables it allocated stay,
/// empty). A zero `len` maps nothing and succeeds once the arguments are
/// checked.
///
/// `va` may be in the lower range (bits \[63:va_bits\] zero) or, in regimes
/// with two ranges, the upper one (all ones); only bits \[va_bits-1:0\]
/// index the tables, so `root` must be the table of the matching `TTBRn`.
///
/// Only memory is written: barriers, cache maintenance and TLB
/// invalidation for tables the MMU may already use are the caller's job.
#[allow(clippy::too_many_arguments)]
pub fn map<P: PagePool + ?Sized>(
    pool: &mut P,
    root: PhysAddr,
    va_bits: u32,
    regime: Regime,
    va: VirtAddr,
    pa: PhysAddr,
    len: u64,
    attrs: Attributes,
) -> Result<(), MapError> {
    let attr_bits = encode(regime, attrs)?;
    let space = Space::new(root, va_bits)?;
    if !va.is_page_aligned() || !pa.is_page_aligned() || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Misaligned);
    }
    let range = space.range(va, len)?;
    if range.top != 0 && !regime.has_upper_range() {
        return Err(MapError::OutOfRange);
    }
    let pa_last = pa.0.checked_add(len.saturating_sub(1)).ok_or(MapError::OutOfRange)?;
    if pa_last > OA_LIMIT {
        return Err(MapError::OutOfRange);
    }
    let mut done = 0u64;
    while done < len {
        // `done < len` and both ranges were checked not to wrap.
        let step = map_one(
            pool,
            &space,
            &range,
            range.ia.wrapping_add(done),
            pa.0.wrapping_add(done),
            len.wrapping_sub(done),
            attr_bits,
        );
        match step {
            Ok(size) => done = done.wrapping_add(size),
            Err(error) => {
                if done > 0 {
                    // Undo exactly the leaves this call wrote; they cover
                    // [va, va + done) with no boundary inside a leaf, so this
                    // cannot fail unless the pool misbehaves, and then the
                    // first error is the one to report.
                    let _ = unmap(pool, root, va_bits, va, done);
                }
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Writes one leaf for `ia` (the largest that fits), creating tables on the
/// way. Returns the bytes the leaf covers.
fn map_one<P: PagePool + ?Sized>(
    pool: &mut P,
    space: &Space,
    range: &Range,
    ia: u64,
    pa: u64,
    remaining: u64,
    attr_bits: u64,
) -> Result<u64, MapError> {
    let mut table = space.root;
    let mut level = space.root_level;
    loop {
        let i = idx(ia, level)?;
        let size = size_of(level)?;
        match classify(read(pool, table, i)?, level) {
            Entry::Invalid => {
                let align = size.wrapping_sub(1);
                let fits = level >= 1 && ia & align == 0 && pa & align == 0 && remaining >= size;
                if fits {
                    let kind = if level == LAST_LEVEL {
                        TYPE_TABLE // the page descriptor has the same type bits
                    } else {
                        TYPE_BLOCK
                    };
                    write(pool, table, i, pa | attr_bits | kind)?;
                    return Ok(size);
                }
                let next = next_level(level)?;
                let new = alloc(pool)?;
                write(pool, table, i, new.0 | TYPE_TABLE)?;
                table = new;
                level = next;
            }
            Entry::Table(next_table) => {
                table = next_table;
                level = next_level(level)?;
            }
            Entry::Leaf(_) | Entry::Reserved => return Err(MapError::AlreadyMapped { va: range.va(ia) }),
        }
    }
}

/// Where the leaf mapping an input address sits.
#[derive(Clone, Copy, Debug)]
struct LeafSlot {
    table: PhysAddr,
    index: usize,
    level: u8,
    descriptor: u64,
}

/// Walks to the leaf for `ia`, like the hardware.
fn find_leaf<P: PagePool + ?Sized>(pool: &mut P, space: &Space, ia: u64) -> Result<LeafSlot, (u8, MapError)> {
    let mut table = space.root;
    let mut level = space.root_level;
    loop {
        let i = idx(ia, level).map_err(|e| (level, e))?;
        let desc = read(pool, table, i).map_err(|e| (level, e))?;
        match classify(desc, level) {
            Entry::Table(next_table) => {
                table = next_table;
                level = next_level(level).map_err(|e| (level, e))?;
            }
            Entry::Leaf(descriptor) => return Ok(LeafSlot { table, index: i, level, descriptor }),
            Entry::Invalid | Entry::Reserved => return Err((level, MapError::NotMapped { va: VirtAddr(ia) })),
        }
    }
}

/// Unmaps `[va, va + len)` by clearing whole leaf entries.
///
/// Every byte of the range must be mapped ([`MapError::NotMapped`]
/// otherwise), and the range must start and end on leaf boundaries
/// ([`MapError::SplitsBlock`] otherwise: blocks are never split). The range
/// is checked completely before anything is cleared, so on error nothing
/// changes. Tables left empty stay in place (the pool never frees). As with
/// [`map`], TLB maintenance is the caller's job.
pub fn unmap<P: PagePool + ?Sized>(
    pool: &mut P,
    root: PhysAddr,
    va_bits: u32,
    va: VirtAddr,
    len: u64,
) -> Result<(), MapError> {
    let space = Space::new(root, va_bits)?;
    if !va.is_page_aligned() || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Misaligned);
    }
    let range = space.range(va, len)?;
    for clear in [false, true] {
        let mut done = 0u64;
        while done < len {
            let ia = range.ia.wrapping_add(done);
            let leaf = find_leaf(pool, &space, ia).map_err(|(_, e)| match e {
                MapError::NotMapped { .. } => MapError::NotMapped { va: range.va(ia) },
                other => other,
            })?;
            let size = size_of(leaf.level)?;
            let left = len.wrapping_sub(done);
            if ia & size.wrapping_sub(1) != 0 || size > left {
                return Err(MapError::SplitsBlock { va: range.va(ia), level: leaf.level });
            }
            if clear {
                write(pool, leaf.table, leaf.index, 0)?;
            }
            done = done.wrapping_add(size);
        }
    }
    Ok(())
}

/// Translates `va` by walking the tables in software, as the hardware
/// would: a VA outside the space faults at level 0, an invalid or reserved
/// descriptor faults at its level. Permissions are not checked; the leaf
/// descriptor is returned for the caller to read.
pub fn translate<P: PagePool + ?Sized>(
    pool: &mut P,
    root: PhysAddr,
    va_bits: u32,
    va: VirtAddr,
) -> Result<Walk, Fault> {
    let space = Space::new(root, va_bits).map_err(|_| Fault { level: 0, kind: FaultKind::UnsupportedVaBits })?;
    let range = space.range(va, 1).map_err(|_| Fault { level: 0, kind: FaultKind::Translation })?;
    let leaf = find_leaf(pool, &space, range.ia).map_err(|(level, error)| Fault {
        level,
        kind: match error {
            MapError::UnknownTable { pa } => FaultKind::UnknownTable { pa },
            _ => FaultKind::Translation,
        },
    })?;
    let offset_mask = level_size(leaf.level).unwrap_or(PAGE_SIZE).wrapping_sub(1);
    let output = leaf.descriptor & bits::OA_MASK & !offset_mask;
    Ok(Walk { pa: PhysAddr(output | (range.ia & offset_mask)), level: leaf.level, descriptor: leaf.descriptor })
}

/// The table at `level` whose range covers `va`, creating it (and any
/// table above it) if needed. `level` may be the root level (the root is
/// returned) down to 3.
///
/// This is how a narrow VA space shares the wide one's hierarchy: with the
/// 4 KiB granule a 39-bit space starts at level 1, so the level-1 table
/// `ensure_table(pool, root48, 48, USER_BASE, 1)` is a complete 39-bit root.
/// Loaded into a 39-bit `TTBR`, it translates VA `u` exactly as the 48-bit
/// root translates `USER_BASE + u` (for `USER_BASE` 512 GiB-aligned), and
/// mappings made through either root are seen through both.
///
/// Fails with [`MapError::AlreadyMapped`] if a block already covers `va`
/// above `level`.
pub fn ensure_table<P: PagePool + ?Sized>(
    pool: &mut P,
    root: PhysAddr,
    va_bits: u32,
    va: VirtAddr,
    level: u8,
) -> Result<PhysAddr, MapError> {
    let space = Space::new(root, va_bits)?;
    if level < space.root_level || level > LAST_LEVEL {
        return Err(MapError::InvalidLevel { level });
    }
    let range = space.range(va, 1)?;
    walk_tables(pool, &space, &range, level, false)
}

/// Copies the table at `src` into a new table from the pool: a shallow
/// copy, so the new root shares every subtree with `src`. Mappings later
/// made below a shared table show in both roots; entries later written in
/// either root table itself do not.
pub fn clone_root<P: PagePool + ?Sized>(pool: &mut P, src: PhysAddr) -> Result<PhysAddr, MapError> {
    // Check the source first, so that a bad one does not cost a page.
    if pool.table(src).is_none() {
        return Err(MapError::UnknownTable { pa: src });
    }
    let new = alloc(pool)?;
    for i in 0..super::pool::ENTRIES {
        let desc = read(pool, src, i)?;
        write(pool, new, i, desc)?;
    }
    Ok(new)
}

/// Gives `root` private copies of the tables on the path to `va`, from the
/// one below the root down to the table at `down_to_level`, and returns
/// that table. Missing tables on the path are created (private anyway).
///
/// After this, a [`map`] at `va` of a leaf at `down_to_level` or below
/// changes only this root: how each CPU's root, cloned with [`clone_root`],
/// maps the same per-CPU data VA to its own page while sharing everything
/// else. The copy is unconditional (nothing records which tables are
/// shared), so call it once per root and VA, right after [`clone_root`].
///
/// Fails with [`MapError::AlreadyMapped`] if a block covers `va` above
/// `down_to_level`.
pub fn unshare_path<P: PagePool + ?Sized>(
    pool: &mut P,
    root: PhysAddr,
    va_bits: u32,
    va: VirtAddr,
    down_to_level: u8,
) -> Result<PhysAddr, MapError> {
    let space = Space::new(root, va_bits)?;
    if down_to_level < space.root_level || down_to_level > LAST_LEVEL {
        return Err(MapError::InvalidLevel { level: down_to_level });
    }
    let range = space.range(va, 1)?;
    walk_tables(pool, &space, &range, down_to_level, true)
}

/// Walks from the root to the table at `target` on the path to
/// `range.ia`, creating missing tables and, if `copy`, replacing each
/// existing table below the root by a private copy.
fn walk_tables<P: PagePool + ?Sized>(
    pool: &mut P,
    space: &Space,
    range: &Range,
    target: u8,
    copy: bool,
) -> Result<PhysAddr, MapError> {
    if pool.table(space.root).is_none() {
        return Err(MapError::UnknownTable { pa: space.root });
    }
    let mut table = space.root;
    let mut level = space.root_level;
    while level < target {
        let i = idx(range.ia, level)?;
        let desc = read(pool, table, i)?;
        let next = match classify(desc, level) {
            Entry::Invalid => {
                let new = alloc(pool)?;
                write(pool, table, i, new.0 | TYPE_TABLE)?;
                new
            }
            Entry::Table(next) if copy => {
                let new = clone_root(pool, next)?;
                // Keep the descriptor's table attributes, swap the address.
                write(pool, table, i, (desc & !bits::OA_MASK) | new.0)?;
                new
            }
            Entry::Table(next) => next,
            Entry::Leaf(_) | Entry::Reserved => return Err(MapError::AlreadyMapped { va: range.va(range.ia) }),
        };
        table = next;
        level = next_level(level)?;
    }
    Ok(table)
}
