//! Where translation tables come from: the [`PagePool`] trait and
//! [`StaticPool`], a bump allocator over a caller's array of pages.
//!
//! Tables are named by their physical address, because that is what table
//! descriptors and `TTBRn` hold; the pool turns a PA back into something the
//! builder can read and write. With the MMU off the two are the same number;
//! with it on, [`StaticPool`] still finds a table by its offset in the
//! caller's slice, wherever that slice is mapped.

use core::fmt;

use crate::addr::{PhysAddr, PAGE_SIZE};

use super::attrs::bits;

/// Entries in one 4 KiB translation table.
pub const ENTRIES: usize = 512;

/// One translation table: a page of 512 descriptors, aligned as the
/// architecture requires.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(4096))]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    /// An all-invalid table.
    pub const ZERO: Self = Self([0; ENTRIES]);
}

impl Default for Table {
    fn default() -> Self {
        Self::ZERO
    }
}

/// A source of translation tables.
pub trait PagePool {
    /// A fresh table, all entries zero (invalid), or `None` if the pool is
    /// empty. The address must be 4 KiB-aligned and below 2^48.
    fn alloc_table(&mut self) -> Option<PhysAddr>;

    /// The table at physical address `pa`, if it is one of this pool's.
    fn table(&mut self, pa: PhysAddr) -> Option<&mut [u64; ENTRIES]>;
}

/// Why a [`StaticPool`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolError {
    /// `base_pa` is not 4 KiB-aligned.
    MisalignedBase,
    /// The pages would extend past the 48-bit physical address space that
    /// a descriptor can name.
    OutOfRange,
    /// `used` is larger than the number of pages.
    UsedTooLarge,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MisalignedBase => "table pool base address is not 4 KiB-aligned",
            Self::OutOfRange => "table pool extends past the 48-bit physical address space",
            Self::UsedTooLarge => "table pool: more pages in use than it has",
        })
    }
}

/// A bump allocator over `pages`, whose first page is at physical address
/// `base_pa`. Pages are handed out in order and never freed.
///
/// The hypervisor builds one over an array in its `.bss` while the MMU is
/// off, passing the array's address as `base_pa` (PA = pointer value then);
/// host tests build one over a `Vec<Table>` with any page-aligned `base_pa`.
#[derive(Debug)]
pub struct StaticPool<'a> {
    pages: &'a mut [Table],
    base_pa: u64,
    used: usize,
}

impl<'a> StaticPool<'a> {
    /// An empty pool over `pages`, whose first page is at `base_pa`.
    pub fn new(pages: &'a mut [Table], base_pa: PhysAddr) -> Result<Self, PoolError> {
        Self::with_used(pages, base_pa, 0)
    }

    /// A pool whose first `used` pages are already tables (for example,
    /// the same array seen again after the MMU is on, through its VA).
    pub fn with_used(pages: &'a mut [Table], base_pa: PhysAddr, used: usize) -> Result<Self, PoolError> {
        if !base_pa.is_page_aligned() {
            return Err(PoolError::MisalignedBase);
        }
        if used > pages.len() {
            return Err(PoolError::UsedTooLarge);
        }
        let bytes =
            u64::try_from(pages.len()).ok().and_then(|n| n.checked_mul(PAGE_SIZE)).ok_or(PoolError::OutOfRange)?;
        let end = base_pa.0.checked_add(bytes).ok_or(PoolError::OutOfRange)?;
        // The last page must still be nameable by a descriptor.
        if end > bits::OA_MASK.wrapping_add(PAGE_SIZE) {
            return Err(PoolError::OutOfRange);
        }
        Ok(Self { pages, base_pa: base_pa.0, used })
    }

    /// The physical address of the first page.
    pub fn base_pa(&self) -> PhysAddr {
        PhysAddr(self.base_pa)
    }

    /// How many pages have been handed out.
    pub fn used(&self) -> usize {
        self.used
    }

    /// How many pages are left.
    pub fn remaining(&self) -> usize {
        self.pages.len().saturating_sub(self.used)
    }

    /// The page number of `pa` in this pool, if it is a handed-out table.
    fn slot(&self, pa: PhysAddr) -> Option<usize> {
        let offset = pa.0.checked_sub(self.base_pa)?;
        if !offset.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let slot = usize::try_from(offset / PAGE_SIZE).ok()?;
        (slot < self.used).then_some(slot)
    }
}

impl PagePool for StaticPool<'_> {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        let slot = self.used;
        let page = self.pages.get_mut(slot)?;
        *page = Table::ZERO;
        let offset = u64::try_from(slot).ok()?.checked_mul(PAGE_SIZE)?;
        let pa = self.base_pa.checked_add(offset)?;
        self.used = slot.checked_add(1)?;
        Some(PhysAddr(pa))
    }

    fn table(&mut self, pa: PhysAddr) -> Option<&mut [u64; ENTRIES]> {
        let slot = self.slot(pa)?;
        self.pages.get_mut(slot).map(|page| &mut page.0)
    }
}
