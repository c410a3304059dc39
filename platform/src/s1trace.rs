//! Tracing a guest's writes to its own stage-1 translation tables: the
//! pure half, host-tested. The hypervisor write-protects, in stage 2, the
//! pages that hold a VM's tables, emulates each write the guest makes to
//! them, and asks this module what the write did: the record to keep
//! ([`Record`], in a fixed-size [`TraceLog`] that counts what it drops),
//! the table it links (to protect and follow) or unlinks (to let go), and,
//! once the kernel's code is locked, whether the new descriptor must be
//! refused ([`check_update`]).
//!
//! Only the 4 KiB granule is handled (as [`crate::gvascan`]): tables of
//! 512 entries at levels 0 to 3, blocks at levels 1 and 2, pages at 3.
//!
//! What a leaf allows is read from the leaf alone: `AP[2:1]`, `PXN` and
//! `UXN`. The tables above it can only take permissions away (`APTable`,
//! `PXNTable`, `UXNTable`), so the policy errs towards refusing: it may
//! call a page executable or writable that a table bit above makes not so,
//! never the other way round.

use crate::gvascan::Granule4K;
use core::ops::RangeInclusive;

/// Entries in a table.
pub const ENTRIES: usize = 512;
/// Bytes in a table, and in a descriptor.
pub const TABLE_SIZE: u64 = 4096;
pub const DESCRIPTOR_SIZE: u64 = 8;

/// Descriptor bits (4 KiB granule, VMSAv8-64).
pub mod bits {
    /// Valid.
    pub const VALID: u64 = 1 << 0;
    /// Levels 0 to 2: a table (1) or a block (0); level 3: a page (1).
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// The output address, bits \[47:12\].
    pub const ADDRESS: u64 = 0x0000_ffff_ffff_f000;
    /// `AP[1]`: EL0 may access.
    pub const AP_EL0: u64 = 1 << 6;
    /// `AP[2]`: read-only.
    pub const AP_RO: u64 = 1 << 7;
    /// `PXN`: EL1 may not execute.
    pub const PXN: u64 = 1 << 53;
    /// `UXN`: EL0 may not execute.
    pub const UXN: u64 = 1 << 54;
}

/// The VA span one entry of a table at `level` translates (0 for a level
/// the granule has not).
pub const fn entry_span(level: u8) -> u64 {
    match level {
        0 => 1 << 39,
        1 => 1 << 30,
        2 => 1 << 21,
        3 => 1 << 12,
        _ => 0,
    }
}

/// One translation table the tracer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    /// Its IPA (4 KiB aligned).
    pub ipa: u64,
    /// Its level, 0 to 3.
    pub level: u8,
    /// The first VA its entry 0 translates.
    pub va_base: u64,
}

impl Table {
    /// The VAs entry `index` translates; `None` for an index or level a
    /// table does not have.
    pub fn entry_range(&self, index: usize) -> Option<RangeInclusive<u64>> {
        if index >= ENTRIES {
            return None;
        }
        let size = Granule4K.entry_size(self.level)?;
        let first = self.va_base.checked_add(size.checked_mul(u64::try_from(index).ok()?)?)?;
        Some(first..=first.checked_add(size.checked_sub(1)?)?)
    }

    /// The table entry `index` links when it holds a table descriptor to
    /// `ipa`.
    pub fn child(&self, index: usize, ipa: u64) -> Option<Table> {
        if self.level >= Granule4K::LAST_LEVEL {
            return None;
        }
        let range = self.entry_range(index)?;
        Some(Table { ipa, level: self.level.checked_add(1)?, va_base: *range.start() })
    }

    /// The entry a byte offset into the table's page falls in, for an
    /// 8-byte aligned offset below [`TABLE_SIZE`].
    pub fn index_of(offset: u64) -> Option<usize> {
        if offset >= TABLE_SIZE || offset.checked_rem(DESCRIPTOR_SIZE) != Some(0) {
            return None;
        }
        usize::try_from(offset.checked_div(DESCRIPTOR_SIZE)?).ok()
    }
}

/// What a leaf (a block or a page) lets each mode do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafPerms {
    pub el1_write: bool,
    pub el1_exec: bool,
    pub el0_access: bool,
    pub el0_write: bool,
    pub el0_exec: bool,
}

impl LeafPerms {
    /// From a leaf descriptor's `AP[2:1]`, `PXN` and `UXN`. An EL0-writable
    /// page is never EL1-executable (the architecture's rule, whatever
    /// `PXN` says).
    pub const fn of(raw: u64) -> Self {
        let read_only = raw & bits::AP_RO != 0;
        let el0_access = raw & bits::AP_EL0 != 0;
        let el0_write = el0_access && !read_only;
        Self {
            el1_write: !read_only,
            el1_exec: raw & bits::PXN == 0 && !el0_write,
            el0_access,
            el0_write,
            el0_exec: el0_access && raw & bits::UXN == 0,
        }
    }

    pub const fn writable(&self) -> bool {
        self.el1_write || self.el0_write
    }
}

/// A descriptor, as far as the tracer needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor {
    /// Translates nothing (also a level-0 block and a level-3 entry with
    /// bit 1 clear, which are reserved and fault).
    Invalid,
    /// Links the next level's table at `ipa`.
    Table { ipa: u64 },
    /// Maps `size` bytes at `ipa`.
    Leaf { ipa: u64, size: u64, perms: LeafPerms },
}

impl Descriptor {
    /// Decodes `raw`, found at `level`.
    pub fn decode(level: u8, raw: u64) -> Self {
        if raw & bits::VALID == 0 {
            return Self::Invalid;
        }
        let ipa = raw & bits::ADDRESS;
        let table_or_page = raw & bits::TABLE_OR_PAGE != 0;
        match (level, table_or_page) {
            (0..=2, true) => Self::Table { ipa },
            // A page at level 3, a block (aligned to its size) at 1 and 2.
            (3, true) | (1..=2, false) => match Granule4K.leaf_size(level) {
                Some(size) if ipa.checked_rem(size) == Some(0) => Self::Leaf { ipa, size, perms: LeafPerms::of(raw) },
                _ => Self::Invalid,
            },
            _ => Self::Invalid,
        }
    }
}

/// One traced write to a translation table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The table's IPA and level, and the entry written.
    pub table: u64,
    pub level: u8,
    pub index: u16,
    /// The descriptor before and after.
    pub old: u64,
    pub new: u64,
    /// The VAs the entry translates.
    pub first_va: u64,
    pub last_va: u64,
}

/// What a write to entry `index` of `table` does to the set of traced
/// tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// The record to keep (`None`: the entry did not change).
    pub record: Option<Record>,
    /// A table the entry now links: to protect and follow.
    pub linked: Option<Table>,
    /// A table the entry no longer links: to let go (unless another entry
    /// still links it; the caller counts).
    pub unlinked: Option<u64>,
}

/// What writing `new` over `old` in entry `index` of `table` does.
pub fn write(table: &Table, index: usize, old: u64, new: u64) -> Effect {
    let Some(range) = table.entry_range(index) else { return Effect::default() };
    if old == new {
        return Effect::default();
    }
    let record = Record {
        table: table.ipa,
        level: table.level,
        index: u16::try_from(index).unwrap_or(u16::MAX),
        old,
        new,
        first_va: *range.start(),
        last_va: *range.end(),
    };
    let (before, after) = (Descriptor::decode(table.level, old), Descriptor::decode(table.level, new));
    let linked = match after {
        Descriptor::Table { ipa } if after != before => table.child(index, ipa),
        _ => None,
    };
    let unlinked = match before {
        Descriptor::Table { ipa } if after != before => Some(ipa),
        _ => None,
    };
    Effect { record: Some(record), linked, unlinked }
}

/// The fixed-size log of traced writes a VM keeps: the first [`capacity`]
/// records since it was last read, and a count of those it had no room
/// for (the first ones stay, so that what is there is exact from where it
/// starts).
///
/// [`capacity`]: TraceLog::capacity
#[derive(Clone, Debug)]
pub struct TraceLog<const N: usize> {
    records: [Record; N],
    len: usize,
    dropped: u64,
}

impl<const N: usize> Default for TraceLog<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> TraceLog<N> {
    pub const fn new() -> Self {
        Self {
            records: [Record { table: 0, level: 0, index: 0, old: 0, new: 0, first_va: 0, last_va: 0 }; N],
            len: 0,
            dropped: 0,
        }
    }

    pub const fn capacity(&self) -> usize {
        N
    }

    /// Keeps `record`, or counts it as dropped when the log is full.
    pub fn push(&mut self, record: Record) {
        match self.records.get_mut(self.len) {
            Some(slot) => {
                *slot = record;
                self.len = self.len.saturating_add(1);
            }
            None => self.dropped = self.dropped.saturating_add(1),
        }
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> &[Record] {
        self.records.get(..self.len).unwrap_or_default()
    }

    /// Records that did not fit since the last [`clear`](Self::clear).
    pub const fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Empties the log (after a reader took what it holds).
    pub fn clear(&mut self) {
        self.len = 0;
        self.dropped = 0;
    }
}

/// Why a new descriptor is refused once the kernel's code is locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It would let EL1 execute memory outside the locked code.
    NewKernelCode { ipa: u64, size: u64 },
    /// It would let someone write locked code.
    WritableKernelCode { ipa: u64, size: u64 },
}

/// What the locked code's pages are to [`check_update`]: for a page, `None`
/// if it is not locked code, else how many EL1-executable leaves of the
/// traced tables map it now.
pub trait LockedCode {
    fn uses(&self, page: u64) -> Option<u32>;

    /// Whether any page of `first..=last` is locked code that a leaf still
    /// maps EL1-executable, and whether every page of it is locked code.
    fn scan(&self, first: u64, last: u64) -> (bool, bool) {
        let (mut in_use, mut all) = (false, true);
        let mut page = first & !(TABLE_SIZE - 1);
        while page <= last {
            match self.uses(page) {
                Some(uses) => in_use |= uses != 0,
                None => all = false,
            }
            match page.checked_add(TABLE_SIZE) {
                Some(next) => page = next,
                None => break,
            }
        }
        (in_use, all)
    }
}

/// An update the policy allows, and what it does to the locked code:
/// IPA ranges (`first..=last`) whose locked pages lose one use (the old
/// descriptor mapped them EL1-executable) or gain one (the new one does),
/// and a range whose unused locked pages leave the locked set for good
/// (the new descriptor maps them writable: memory the kernel freed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub unuse: Option<(u64, u64)>,
    pub use_: Option<(u64, u64)>,
    pub release: Option<(u64, u64)>,
}

fn leaf_range(level: u8, raw: u64) -> Option<(u64, u64, LeafPerms)> {
    match Descriptor::decode(level, raw) {
        Descriptor::Leaf { ipa, size, perms } => Some((ipa, ipa.saturating_add(size.saturating_sub(1)), perms)),
        _ => None,
    }
}

/// Checks a descriptor written at `level` over `old`, once the kernel's
/// code is locked:
///
/// - a leaf that lets EL1 execute memory outside the locked code is
///   refused ([`Refusal::NewKernelCode`]): the kernel gets no new code;
/// - a leaf that maps locked code writable is refused
///   ([`Refusal::WritableKernelCode`]) while a leaf still maps that code
///   EL1-executable; once none does, the kernel freed it, and the pages
///   leave the locked set ([`Update::release`]) and can never come back
///   (making them executable again is new kernel code).
///
/// Tables and invalid entries pass (what a linked table holds is checked
/// entry by entry as it is traced).
pub fn check_update(level: u8, old: u64, new: u64, code: &impl LockedCode) -> Result<Update, Refusal> {
    let mut update = Update { unuse: None, use_: None, release: None };
    if let Some((first, last, perms)) = leaf_range(level, old) {
        if perms.el1_exec {
            update.unuse = Some((first, last));
        }
    }
    let Some((first, last, perms)) = leaf_range(level, new) else { return Ok(update) };
    let size = last.saturating_sub(first).saturating_add(1);
    let (in_use, all) = code.scan(first, last);
    if perms.writable() {
        // Still executed through another leaf (or through the old value of
        // this one, which the write replaces: that one does not count).
        let old_use = update.unuse.is_some_and(|(f, l)| f <= last && l >= first);
        let used_by_others = !old_use || still_used_elsewhere(code, first, last, update.unuse);
        if in_use && used_by_others {
            return Err(Refusal::WritableKernelCode { ipa: first, size });
        }
        update.release = Some((first, last));
    }
    if perms.el1_exec {
        if !all || perms.writable() {
            return Err(Refusal::NewKernelCode { ipa: first, size });
        }
        update.use_ = Some((first, last));
    }
    Ok(update)
}

/// Whether some page of `first..=last` is used by a leaf other than the
/// old descriptor being replaced (which covered `old`).
fn still_used_elsewhere(code: &impl LockedCode, first: u64, last: u64, old: Option<(u64, u64)>) -> bool {
    let mut page = first & !(TABLE_SIZE - 1);
    while page <= last {
        let mine = u32::from(old.is_some_and(|(f, l)| f <= page && page <= l));
        if code.uses(page).is_some_and(|uses| uses > mine) {
            return true;
        }
        match page.checked_add(TABLE_SIZE) {
            Some(next) => page = next,
            None => break,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB2: u64 = 2 << 20;

    /// A page descriptor for `ipa` with `extra` bits (AF and the attribute
    /// index do not matter here).
    fn page(ipa: u64, extra: u64) -> u64 {
        ipa | bits::VALID | bits::TABLE_OR_PAGE | extra
    }

    fn table_desc(ipa: u64) -> u64 {
        ipa | bits::VALID | bits::TABLE_OR_PAGE
    }

    fn block(ipa: u64, extra: u64) -> u64 {
        ipa | bits::VALID | extra
    }

    #[test]
    fn entries_cover_their_share_of_the_tables_range() {
        let root = Table { ipa: 0x4000_0000, level: 0, va_base: 0xffff_0000_0000_0000 };
        assert_eq!(root.entry_range(0), Some(0xffff_0000_0000_0000..=0xffff_007f_ffff_ffff));
        assert_eq!(root.entry_range(511), Some(0xffff_ff80_0000_0000..=u64::MAX));
        assert_eq!(root.entry_range(512), None);
        let l3 = Table { ipa: 0x4000_1000, level: 3, va_base: 0x40_0000 };
        assert_eq!(l3.entry_range(3), Some(0x40_3000..=0x40_3fff));
        assert_eq!(Table { level: 4, ..l3 }.entry_range(0), None);
        // A child covers exactly its parent entry's range.
        let l1 = root.child(1, 0x4000_2000).unwrap();
        assert_eq!(l1, Table { ipa: 0x4000_2000, level: 1, va_base: 0xffff_0080_0000_0000 });
        assert_eq!(l1.entry_range(0).map(|r| *r.start()), Some(0xffff_0080_0000_0000));
        assert_eq!(l3.child(0, 0x5000), None, "a level-3 entry links nothing");
        assert_eq!(Table::index_of(0x18), Some(3));
        assert_eq!(Table::index_of(0xff8), Some(511));
        assert_eq!(Table::index_of(0x1000), None);
        assert_eq!(Table::index_of(0x1c), None);
    }

    #[test]
    fn descriptors_decode_by_level() {
        assert_eq!(Descriptor::decode(0, table_desc(0x4000_1000)), Descriptor::Table { ipa: 0x4000_1000 });
        assert_eq!(Descriptor::decode(0, block(0x4000_0000, 0)), Descriptor::Invalid, "no level-0 blocks");
        assert!(matches!(Descriptor::decode(1, block(GIB, 0)), Descriptor::Leaf { ipa: GIB, size: GIB, .. }));
        assert_eq!(Descriptor::decode(1, block(GIB + MIB2, 0)), Descriptor::Invalid, "a misaligned block");
        assert!(matches!(Descriptor::decode(2, block(MIB2, 0)), Descriptor::Leaf { size: 0x20_0000, .. }));
        assert!(matches!(Descriptor::decode(3, page(0x5000, 0)), Descriptor::Leaf { ipa: 0x5000, size: 4096, .. }));
        assert_eq!(Descriptor::decode(3, block(0x5000, 0)), Descriptor::Invalid, "level 3 with bit 1 clear");
        assert_eq!(Descriptor::decode(2, page(0x5000, 0) & !bits::VALID), Descriptor::Invalid);
    }

    #[test]
    fn leaf_permissions_follow_ap_pxn_uxn() {
        let kernel_text = LeafPerms::of(page(0, bits::AP_RO | bits::UXN));
        assert_eq!(
            kernel_text,
            LeafPerms { el1_write: false, el1_exec: true, el0_access: false, el0_write: false, el0_exec: false }
        );
        let kernel_data = LeafPerms::of(page(0, bits::PXN | bits::UXN));
        assert!(kernel_data.el1_write && !kernel_data.el1_exec && !kernel_data.el0_access);
        let user_text = LeafPerms::of(page(0, bits::AP_EL0 | bits::AP_RO | bits::PXN));
        assert!(user_text.el0_exec && !user_text.el1_exec && !user_text.writable());
        // EL0-writable is never EL1-executable, whatever PXN says.
        let user_data = LeafPerms::of(page(0, bits::AP_EL0));
        assert!(user_data.el0_write && !user_data.el1_exec && user_data.el0_exec);
    }

    #[test]
    fn writes_are_recorded_and_links_followed() {
        let l2 = Table { ipa: 0x4010_0000, level: 2, va_base: 0x4000_0000 };
        // Linking a new level-3 table.
        let effect = write(&l2, 5, 0, table_desc(0x4020_0000));
        let record = effect.record.unwrap();
        assert_eq!(
            record,
            Record {
                table: 0x4010_0000,
                level: 2,
                index: 5,
                old: 0,
                new: table_desc(0x4020_0000),
                first_va: 0x40a0_0000,
                last_va: 0x40bf_ffff
            }
        );
        assert_eq!(effect.linked, Some(Table { ipa: 0x4020_0000, level: 3, va_base: 0x40a0_0000 }));
        assert_eq!(effect.unlinked, None);
        // Replacing it by a block: the table is let go, the block is not
        // a table to follow.
        let effect = write(&l2, 5, table_desc(0x4020_0000), block(0x8000_0000, bits::PXN));
        assert_eq!((effect.linked, effect.unlinked), (None, Some(0x4020_0000)));
        // Moving the link: one in, one out.
        let effect = write(&l2, 5, table_desc(0x4020_0000), table_desc(0x4030_0000));
        assert_eq!(effect.unlinked, Some(0x4020_0000));
        assert_eq!(effect.linked.map(|t| t.ipa), Some(0x4030_0000));
        // Changing only the table descriptor's attribute bits: same table.
        let effect = write(&l2, 5, table_desc(0x4020_0000), table_desc(0x4020_0000) | 1 << 63);
        assert!(effect.record.is_some());
        assert_eq!((effect.linked, effect.unlinked), (None, None));
        // Writing what is there already: nothing at all.
        assert_eq!(write(&l2, 5, 7, 7), Effect::default());
        // An entry a table does not have: nothing either.
        assert_eq!(write(&l2, 512, 0, 1), Effect::default());
    }

    #[test]
    fn the_log_keeps_the_first_records_and_counts_the_rest() {
        let mut log = TraceLog::<3>::new();
        for index in 0..5u16 {
            log.push(Record { index, ..Record::default() });
        }
        assert_eq!(log.records().iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!((log.capacity(), log.dropped()), (3, 2));
        log.clear();
        assert!(log.records().is_empty());
        assert_eq!(log.dropped(), 0);
        log.push(Record { index: 9, ..Record::default() });
        assert_eq!(log.records().len(), 1);
        assert_eq!(TraceLog::<0>::new().records(), &[]);
    }

    /// Locked: the 2 MiB at 0x4020_0000, each page used once, except
    /// 0x4030_0000, which nothing maps executable any more (freed).
    struct Code;
    impl LockedCode for Code {
        fn uses(&self, page: u64) -> Option<u32> {
            match page {
                0x4030_0000 => Some(0),
                0x4020_0000..=0x403f_ffff => Some(1),
                _ => None,
            }
        }
    }

    #[test]
    fn locked_code_stays_closed() {
        let check = |level, new| check_update(level, 0, new, &Code);
        // Mapping locked code again, read-only and executable: one more use.
        assert_eq!(
            check(3, page(0x4021_0000, bits::AP_RO | bits::UXN)),
            Ok(Update { use_: Some((0x4021_0000, 0x4021_0fff)), ..Update::default() })
        );
        // New kernel code elsewhere.
        assert_eq!(
            check(3, page(0x5000_0000, bits::AP_RO | bits::UXN)),
            Err(Refusal::NewKernelCode { ipa: 0x5000_0000, size: 4096 })
        );
        // A block that covers the code and more: not all of it is code.
        assert_eq!(
            check(1, block(0x4000_0000, bits::AP_RO)),
            Err(Refusal::NewKernelCode { ipa: 0x4000_0000, size: GIB })
        );
        // Locked code in use made writable, at EL1 (PXN: an alias for data)
        // or EL0.
        assert_eq!(
            check(3, page(0x4021_0000, bits::PXN | bits::UXN)),
            Err(Refusal::WritableKernelCode { ipa: 0x4021_0000, size: 4096 })
        );
        assert_eq!(
            check(2, block(0x4020_0000, bits::AP_EL0 | bits::PXN)),
            Err(Refusal::WritableKernelCode { ipa: 0x4020_0000, size: MIB2 })
        );
        // Data elsewhere, writable and never EL1-executable: fine; and tables
        // and invalid entries are not leaves.
        assert_eq!(
            check(3, page(0x5000_0000, bits::PXN | bits::UXN)),
            Ok(Update { release: Some((0x5000_0000, 0x5000_0fff)), ..Update::default() })
        );
        assert_eq!(check(2, table_desc(0x4020_0000)), Ok(Update::default()));
        assert_eq!(check(3, 0), Ok(Update::default()));
    }

    #[test]
    fn freed_code_is_released_and_never_comes_back() {
        // Nothing executes 0x4030_0000 any more: the kernel's writable
        // mapping of it (its linear alias, reset after a free) releases it.
        let writable = page(0x4030_0000, bits::PXN | bits::UXN);
        assert_eq!(
            check_update(3, 0, writable, &Code),
            Ok(Update { release: Some((0x4030_0000, 0x4030_0fff)), ..Update::default() })
        );
        // Executable and writable at once: never.
        assert_eq!(
            check_update(3, 0, page(0x4030_0000, bits::UXN), &Code),
            Err(Refusal::NewKernelCode { ipa: 0x4030_0000, size: 4096 })
        );
        // Once released (no longer locked), making it executable again is
        // new kernel code.
        struct Released;
        impl LockedCode for Released {
            fn uses(&self, _: u64) -> Option<u32> {
                None
            }
        }
        assert_eq!(
            check_update(3, 0, page(0x4030_0000, bits::AP_RO | bits::UXN), &Released),
            Err(Refusal::NewKernelCode { ipa: 0x4030_0000, size: 4096 })
        );
    }

    #[test]
    fn replacing_the_only_executable_mapping_with_a_writable_one_releases_it() {
        // The one leaf that executes 0x4021_0000 is rewritten writable in
        // place: its use goes, and so does the page.
        let old = page(0x4021_0000, bits::AP_RO | bits::UXN);
        let new = page(0x4021_0000, bits::PXN | bits::UXN);
        assert_eq!(
            check_update(3, old, new, &Code),
            Ok(Update {
                unuse: Some((0x4021_0000, 0x4021_0fff)),
                use_: None,
                release: Some((0x4021_0000, 0x4021_0fff))
            })
        );
        // Unmapping executable code: one use fewer, nothing else.
        assert_eq!(
            check_update(3, old, 0, &Code),
            Ok(Update { unuse: Some((0x4021_0000, 0x4021_0fff)), ..Update::default() })
        );
    }
}
