//! The hypervisor's own stage-1 translation-table builder: VMSAv8-64, 4 KiB
//! granule, `no_std` and allocation-free.
//!
//! This module owns the layout of the hypervisor's stage-1 tables (EL2,
//! EL2&0 and the EL1&0 space of its deprivileged service): descriptor
//! encodings per regime ([`encode`], [`MAIR_EL2_VALUE`]), building
//! ([`map`], [`unmap`], [`ensure_table`], [`clone_root`], [`unshare_path`]),
//! and a software walker ([`translate`]) that reports faults at the level the
//! hardware would, for the tests and for explaining a fault at run time.
//! Stage 2 (guest IPA to PA) is not here; it uses `aarch64-paging`.
//!
//! # Why not `aarch64-paging`
//!
//! The hypervisor builds these tables itself, **before its MMU is on**, from
//! a fixed pool of pages in its `.bss` ([`StaticPool`]), and needs two things
//! that `aarch64-paging` (one root per `Mapping`, each owning its whole tree)
//! cannot express:
//!
//! 1. **Several roots sharing subtrees.** Each CPU gets its own root table so
//!    that one fixed VA, the per-CPU private data area (PRDA), maps a
//!    different physical page on each CPU, while every other mapping is
//!    shared: [`clone_root`] makes a shallow copy of a root, and
//!    [`unshare_path`] copies only the tables on the path to the PRDA.
//! 2. **A narrow-VA subtree of the wide hierarchy.** The EL2 kernel uses a
//!    48-bit VA space (root at level 0); its deprivileged EL0 service a
//!    39-bit one (root at level 1) whose root *is* a level-1 table inside the
//!    kernel's hierarchy ([`ensure_table`]): one page-table hierarchy for two
//!    translation schemes with different VA widths, so a mapping made through
//!    either root is seen through both.
//!
//! # Model
//!
//! Tables are named by physical address, as in descriptors and `TTBRn`; a
//! [`PagePool`] hands out zeroed tables and maps a PA back to the table's
//! memory. A VA space is a root table plus its width `va_bits` (25 to 48;
//! [`root_level`] gives the first lookup level). A VA may lie in the lower
//! range (bits \[63:va_bits\] zero, `TTBR0`) or, in regimes with two
//! ranges, the upper one (all ones, `TTBR1`); the walk indexes with bits
//! \[va_bits-1:0\] only, so the caller passes the root of the matching
//! `TTBRn`.
//!
//! Leaves are 1 GiB blocks (level 1), 2 MiB blocks (level 2) and 4 KiB pages
//! (level 3); [`map`] picks the largest that `va`, `pa` and the remaining
//! length allow. Existing leaves are never overwritten, and blocks are never
//! split: [`map`] over a mapped VA and [`unmap`] of part of a block are
//! errors. Both are all-or-nothing. Nothing here panics on any input:
//! arithmetic is checked, table accesses go through the pool, and every
//! failure is a [`MapError`] (or a [`Fault`] from [`translate`]).
//!
//! This module only writes memory. Making the writes visible to the table
//! walker (`DSB`, cache maintenance when the tables were written with the
//! data cache off) and invalidating TLBs for live tables are the caller's
//! job.
// Beyond the crate-wide no-panic lints (lib.rs):
#![deny(clippy::as_conversions)]

mod attrs;
mod pool;
#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::as_conversions
)]
mod tests;
mod walk;

pub use attrs::{
    bits, encode, Attributes, EncodeError, MemoryType, Regime, UserAccess, MAIR_ATTR_DEVICE_NGNRE, MAIR_ATTR_NORMAL_WB,
    MAIR_EL2_VALUE, MAIR_IDX_DEVICE, MAIR_IDX_NORMAL,
};
pub use pool::{PagePool, PoolError, StaticPool, Table, ENTRIES};
pub use walk::{
    clone_root, ensure_table, index, level_size, map, root_level, translate, txsz, unmap, unshare_path, Fault,
    FaultKind, MapError, Walk, LAST_LEVEL,
};
