//! Host tests for the table builder: VA-width arithmetic, descriptor
//! encodings checked field by field against the Arm ARM layout, block and
//! page choice, the intermediate address space of the boot path, the
//! 39-bit subtree of the 48-bit hierarchy, per-CPU roots, unmapping, every
//! error, and hostile inputs.

use super::*;
use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};

const KIB4: u64 = PAGE_SIZE;
const MIB2: u64 = 2 << 20;
const GIB: u64 = 1 << 30;
/// A made-up physical address for the pool's first page.
const POOL_BASE: u64 = 0x7f00_0000;

fn pages(n: usize) -> Vec<Table> {
    vec![Table::ZERO; n]
}

fn pool(pages: &mut [Table]) -> StaticPool<'_> {
    StaticPool::new(pages, PhysAddr(POOL_BASE)).unwrap()
}

/// Kernel data that any regime can express.
const DATA: Attributes = Attributes::DATA;

fn walk_pa(pool: &mut StaticPool<'_>, root: PhysAddr, va_bits: u32, va: u64) -> Option<u64> {
    translate(pool, root, va_bits, VirtAddr(va)).ok().map(|w| w.pa.0)
}

fn fault_level(pool: &mut StaticPool<'_>, root: PhysAddr, va_bits: u32, va: u64) -> u8 {
    match translate(pool, root, va_bits, VirtAddr(va)) {
        Err(Fault { level, kind: FaultKind::Translation }) => level,
        other => panic!("expected a translation fault at {va:#x}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// VA-width arithmetic

#[test]
fn root_level_and_txsz() {
    assert_eq!(root_level(48), Some(0));
    assert_eq!(root_level(40), Some(0));
    assert_eq!(root_level(39), Some(1));
    assert_eq!(root_level(31), Some(1));
    assert_eq!(root_level(30), Some(2));
    assert_eq!(root_level(25), Some(2));
    for bad in [0, 12, 24, 49, 52, 64, 65, u32::MAX] {
        assert_eq!(root_level(bad), None, "{bad}");
    }
    assert_eq!(txsz(48), 16);
    assert_eq!(txsz(39), 25);
    assert_eq!(txsz(30), 34);
    assert_eq!(txsz(64), 0);
    assert_eq!(txsz(u32::MAX), 0);
}

#[test]
fn level_sizes_and_indices() {
    assert_eq!(level_size(0), Some(512 * GIB));
    assert_eq!(level_size(1), Some(GIB));
    assert_eq!(level_size(2), Some(MIB2));
    assert_eq!(level_size(3), Some(KIB4));
    assert_eq!(level_size(4), None);
    assert_eq!(level_size(u8::MAX), None);

    // 0x4020_3000: L0 0, L1 1, L2 1, L3 3.
    let va = VirtAddr(0x4020_3000);
    assert_eq!(index(va, 0), Some(0));
    assert_eq!(index(va, 1), Some(1));
    assert_eq!(index(va, 2), Some(1));
    assert_eq!(index(va, 3), Some(3));
    assert_eq!(index(va, 4), None);
    // The image VA: top entry of the 48-bit root, and of each level below.
    let top = VirtAddr(0x0000_ffff_ffff_f000);
    for level in 0..=3 {
        assert_eq!(index(top, level), Some(511));
    }
    // Upper-range VAs index with the same bits.
    assert_eq!(index(VirtAddr(0xffff_ff80_0000_0000), 0), Some(511));
    assert_eq!(index(VirtAddr(0xffff_ff80_0000_0000), 1), Some(0));
}

// ---------------------------------------------------------------------------
// Attribute encodings, field by field (Arm ARM stage-1 block/page
// descriptor: AttrIndx[4:2], AP[2:1] at 7:6, SH[9:8], AF 10, nG 11,
// PXN 53, UXN/XN 54).

fn attr_indx(d: u64) -> u64 {
    (d >> 2) & 0b111
}
fn ap(d: u64) -> u64 {
    (d >> 6) & 0b11
}
fn sh(d: u64) -> u64 {
    (d >> 8) & 0b11
}
fn af(d: u64) -> u64 {
    (d >> 10) & 1
}
fn ng(d: u64) -> u64 {
    (d >> 11) & 1
}
fn pxn(d: u64) -> u64 {
    (d >> 53) & 1
}
fn uxn(d: u64) -> u64 {
    (d >> 54) & 1
}

#[test]
fn mair_value() {
    assert_eq!(MAIR_EL2_VALUE, 0xff04);
    assert_eq!((MAIR_EL2_VALUE >> (8 * MAIR_IDX_DEVICE)) & 0xff, 0x04);
    assert_eq!((MAIR_EL2_VALUE >> (8 * MAIR_IDX_NORMAL)) & 0xff, 0xff);
}

#[test]
fn encode_el2() {
    let data = encode(Regime::El2, Attributes::DATA).unwrap();
    assert_eq!(data, 0x0040_0000_0000_0744);
    assert_eq!(attr_indx(data), MAIR_IDX_NORMAL);
    assert_eq!(ap(data), 0b01, "AP[1] is RES1 in EL2, AP[2]=0: read-write");
    assert_eq!(sh(data), 0b11);
    assert_eq!(af(data), 1);
    assert_eq!(ng(data), 0, "nG is RES0 in EL2");
    assert_eq!(pxn(data), 0, "bit 53 is RES0 in EL2");
    assert_eq!(uxn(data), 1, "XN");

    let code = encode(Regime::El2, Attributes::CODE).unwrap();
    assert_eq!(code, 0x0000_0000_0000_07c4);
    assert_eq!(ap(code), 0b11, "AP[2]=1: read-only");
    assert_eq!(uxn(code), 0);

    let rodata = encode(Regime::El2, Attributes::RODATA).unwrap();
    assert_eq!(rodata, 0x0040_0000_0000_07c4);

    let device = encode(Regime::El2, Attributes::DEVICE).unwrap();
    assert_eq!(device, 0x0040_0000_0000_0440);
    assert_eq!(attr_indx(device), MAIR_IDX_DEVICE);
    assert_eq!(sh(device), 0);
    assert_eq!(ap(device), 0b01);

    // Writable and executable is expressible (SCTLR_EL2.WXN may still veto).
    let rwx = Attributes { executable: true, ..Attributes::DATA };
    assert_eq!(encode(Regime::El2, rwx).unwrap(), 0x744);
}

#[test]
fn encode_with_el0() {
    for regime in [Regime::El2And0, Regime::El1And0] {
        let data = encode(regime, Attributes::DATA).unwrap();
        assert_eq!(data, 0x0060_0000_0000_0704, "{regime}");
        assert_eq!(ap(data), 0b00, "privileged RW, no EL0");
        assert_eq!((pxn(data), uxn(data)), (1, 1));
        assert_eq!(ng(data), 0);

        let code = encode(regime, Attributes::CODE).unwrap();
        assert_eq!(code, 0x0040_0000_0000_0784);
        assert_eq!(ap(code), 0b10, "privileged RO, no EL0");
        assert_eq!((pxn(code), uxn(code)), (0, 1));

        let user_data = Attributes { user: UserAccess::ReadWrite, global: false, ..Attributes::DATA };
        let d = encode(regime, user_data).unwrap();
        assert_eq!(d, 0x0060_0000_0000_0f44);
        assert_eq!(ap(d), 0b01, "RW at both levels");
        assert_eq!(ng(d), 1);

        let user_code = Attributes {
            user: UserAccess::ReadOnly,
            user_executable: true,
            executable: false,
            global: false,
            ..Attributes::RODATA
        };
        let d = encode(regime, user_code).unwrap();
        assert_eq!(d, 0x0020_0000_0000_0fc4);
        assert_eq!(ap(d), 0b11, "RO at both levels");
        assert_eq!((pxn(d), uxn(d)), (1, 0));

        let user_ro = Attributes { user: UserAccess::ReadOnly, ..Attributes::RODATA };
        let d = encode(regime, user_ro).unwrap();
        assert_eq!(ap(d), 0b11);
        assert_eq!((pxn(d), uxn(d), ng(d)), (1, 1, 0));

        // EL0 execute-only.
        let xo = Attributes { user_executable: true, ..Attributes::RODATA };
        let d = encode(regime, xo).unwrap();
        assert_eq!((ap(d), pxn(d), uxn(d)), (0b10, 1, 0));

        let device = encode(regime, Attributes::DEVICE).unwrap();
        assert_eq!(device, 0x0060_0000_0000_0400);
        assert_eq!(attr_indx(device), MAIR_IDX_DEVICE);
    }
}

#[test]
fn encode_rejects_what_a_regime_cannot_say() {
    let user = Attributes { user: UserAccess::ReadOnly, ..Attributes::RODATA };
    assert_eq!(encode(Regime::El2, user), Err(EncodeError::NoEl0InRegime));
    let user_x = Attributes { user_executable: true, ..Attributes::RODATA };
    assert_eq!(encode(Regime::El2, user_x), Err(EncodeError::NoEl0InRegime));
    let local = Attributes { global: false, ..Attributes::DATA };
    assert_eq!(encode(Regime::El2, local), Err(EncodeError::NoAsidInRegime));
    assert!(encode(Regime::El1And0, local).is_ok());

    for regime in [Regime::El2, Regime::El2And0, Regime::El1And0] {
        let exec_device = Attributes { executable: true, ..Attributes::DEVICE };
        assert_eq!(encode(regime, exec_device), Err(EncodeError::ExecutableDevice));
    }
    for regime in [Regime::El2And0, Regime::El1And0] {
        let kernel_rw_user_ro = Attributes { user: UserAccess::ReadOnly, ..Attributes::DATA };
        assert_eq!(encode(regime, kernel_rw_user_ro), Err(EncodeError::WritableButUserReadOnly));
        let kernel_ro_user_rw = Attributes { user: UserAccess::ReadWrite, ..Attributes::RODATA };
        assert_eq!(encode(regime, kernel_ro_user_rw), Err(EncodeError::ReadOnlyButUserWritable));
        let exec_user_writable = Attributes { user: UserAccess::ReadWrite, executable: true, ..Attributes::DATA };
        assert_eq!(encode(regime, exec_user_writable), Err(EncodeError::ExecutableButUserWritable));
        let user_exec_device = Attributes { user_executable: true, ..Attributes::DEVICE };
        assert_eq!(encode(regime, user_exec_device), Err(EncodeError::ExecutableDevice));
    }
}

// ---------------------------------------------------------------------------
// The pool

#[test]
fn static_pool() {
    let mut backing = pages(3);
    assert_eq!(StaticPool::new(&mut backing, PhysAddr(0x1234)).err(), Some(PoolError::MisalignedBase));
    assert_eq!(StaticPool::new(&mut backing, PhysAddr(0x0000_ffff_ffff_e000)).err(), Some(PoolError::OutOfRange));
    assert_eq!(StaticPool::new(&mut backing, PhysAddr(0xffff_ffff_ffff_f000)).err(), Some(PoolError::OutOfRange));
    assert!(StaticPool::new(&mut backing, PhysAddr(0x0000_ffff_ffff_d000)).is_ok());
    assert_eq!(StaticPool::with_used(&mut backing, PhysAddr(0), 4).err(), Some(PoolError::UsedTooLarge));

    // A dirty page is zeroed when handed out.
    backing[1].0[7] = 0xdead;
    let mut p = pool(&mut backing);
    assert_eq!(p.remaining(), 3);
    let a = p.alloc_table().unwrap();
    let b = p.alloc_table().unwrap();
    assert_eq!(a, PhysAddr(POOL_BASE));
    assert_eq!(b, PhysAddr(POOL_BASE + 0x1000));
    assert_eq!(p.table(b).unwrap()[7], 0);
    assert_eq!(p.used(), 2);
    // Only handed-out, page-aligned addresses inside the pool are tables.
    assert!(p.table(PhysAddr(POOL_BASE + 0x2000)).is_none());
    assert!(p.table(PhysAddr(POOL_BASE + 0x800)).is_none());
    assert!(p.table(PhysAddr(POOL_BASE - 0x1000)).is_none());
    assert!(p.table(PhysAddr(u64::MAX)).is_none());
    assert!(p.alloc_table().is_some());
    assert!(p.alloc_table().is_none());
    assert_eq!(p.remaining(), 0);

    // Seen again (say, through its VA once the MMU is on).
    p.table(a).unwrap()[5] = 42;
    let mut again = StaticPool::with_used(&mut backing, PhysAddr(POOL_BASE), 3).unwrap();
    assert_eq!(again.table(PhysAddr(POOL_BASE)).unwrap()[5], 42);
}

// ---------------------------------------------------------------------------
// Mapping

#[test]
fn blocks_where_aligned_pages_otherwise() {
    let mut backing = pages(16);
    let mut p = pool(&mut backing);
    let root = p.alloc_table().unwrap();

    // 1 GiB + 2 MiB + 4 KiB, all aligned: one of each leaf size.
    let len = GIB + MIB2 + KIB4;
    map(&mut p, root, 48, Regime::El2, VirtAddr(GIB), PhysAddr(GIB), len, DATA).unwrap();
    let attr = encode(Regime::El2, DATA).unwrap();
    let w = translate(&mut p, root, 48, VirtAddr(GIB + 0x1234_5678)).unwrap();
    assert_eq!((w.level, w.pa.0), (1, GIB + 0x1234_5678));
    assert_eq!(w.descriptor, GIB | attr | 0b01, "level-1 block");
    assert_eq!(w.size(), GIB);
    let w = translate(&mut p, root, 48, VirtAddr(2 * GIB + 0x1_2345)).unwrap();
    assert_eq!((w.level, w.pa.0), (2, 2 * GIB + 0x1_2345));
    assert_eq!(w.descriptor, (2 * GIB) | attr | 0b01, "level-2 block");
    let w = translate(&mut p, root, 48, VirtAddr(2 * GIB + MIB2 + 0xfff)).unwrap();
    assert_eq!((w.level, w.pa.0), (3, 2 * GIB + MIB2 + 0xfff));
    assert_eq!(w.descriptor, (2 * GIB + MIB2) | attr | 0b11, "level-3 page");
    assert_eq!(fault_level(&mut p, root, 48, 2 * GIB + MIB2 + KIB4), 3);
    assert_eq!(fault_level(&mut p, root, 48, 2 * GIB + 2 * MIB2), 2);
    assert_eq!(fault_level(&mut p, root, 48, 3 * GIB), 1);
    assert_eq!(fault_level(&mut p, root, 48, 512 * GIB), 0);
    // Root, one L1, one L2, one L3.
    assert_eq!(p.used(), 4);
}

#[test]
fn misaligned_pa_forces_smaller_leaves() {
    let mut backing = pages(16);
    let mut p = pool(&mut backing);
    let root = p.alloc_table().unwrap();
    // VA 1 GiB-aligned, PA only 2 MiB-aligned: 2 MiB blocks, no 1 GiB block.
    map(&mut p, root, 48, Regime::El2, VirtAddr(4 * GIB), PhysAddr(GIB + MIB2), GIB, DATA).unwrap();
    let w = translate(&mut p, root, 48, VirtAddr(4 * GIB + GIB - 1)).unwrap();
    assert_eq!((w.level, w.pa.0), (2, 2 * GIB + MIB2 - 1));
    assert_eq!(p.used(), 3);
    // PA only page-aligned: pages only, two L3 tables for 4 MiB.
    map(&mut p, root, 48, Regime::El2, VirtAddr(8 * GIB), PhysAddr(0x4000_1000), 2 * MIB2, DATA).unwrap();
    for off in (0..2 * MIB2).step_by(0x1000) {
        let w = translate(&mut p, root, 48, VirtAddr(8 * GIB + off)).unwrap();
        assert_eq!((w.level, w.pa.0), (3, 0x4000_1000 + off));
    }
    assert_eq!(p.used(), 3 + 1 + 2);
}

#[test]
fn mapping_into_existing_table_uses_smaller_leaves() {
    let mut backing = pages(16);
    let mut p = pool(&mut backing);
    let root = p.alloc_table().unwrap();
    // A page first, so an L3 table exists where a 2 MiB block could go.
    map(&mut p, root, 48, Regime::El2, VirtAddr(0x4000_0000), PhysAddr(0x4000_0000), KIB4, DATA).unwrap();
    // The rest of that 2 MiB goes into the existing L3 table as pages;
    // the next 2 MiB is a block.
    map(&mut p, root, 48, Regime::El2, VirtAddr(0x4000_1000), PhysAddr(0x4000_1000), 2 * MIB2 - KIB4, DATA).unwrap();
    assert_eq!(translate(&mut p, root, 48, VirtAddr(0x401f_f000)).unwrap().level, 3);
    assert_eq!(translate(&mut p, root, 48, VirtAddr(0x4020_0000)).unwrap().level, 2);
}

/// The boot path's intermediate address space: one small trampoline mapped
/// both at its load PA (identity) and at its link VA (`pa + delta`) in the
/// same 48-bit EL2 root, so that a jump from one to the other keeps
/// executing the same bytes.
#[test]
fn intermediate_address_space() {
    let mut backing = pages(16);
    let mut p = pool(&mut backing);
    let root = p.alloc_table().unwrap();

    let load_pa = 0x7fe0_0000u64; // where the monitor put the image
    let link_va = 0x0000_ff80_0000_0000u64; // where it is linked (split scheme)
    let delta = link_va - load_pa;
    let tramp_pa = load_pa + 0x1_3000; // the trampoline section
    let tramp_len = 0x3000;

    let text = Attributes::CODE;
    map(&mut p, root, 48, Regime::El2, VirtAddr(tramp_pa), PhysAddr(tramp_pa), tramp_len, text).unwrap();
    map(&mut p, root, 48, Regime::El2, VirtAddr(tramp_pa + delta), PhysAddr(tramp_pa), tramp_len, text).unwrap();
    for off in [0, 0x4, 0xffc, 0x1000, 0x2abc, tramp_len - 1] {
        let low = translate(&mut p, root, 48, VirtAddr(tramp_pa + off)).unwrap();
        let high = translate(&mut p, root, 48, VirtAddr(tramp_pa + off + delta)).unwrap();
        assert_eq!(low.pa.0, tramp_pa + off);
        assert_eq!(high.pa, low.pa);
        assert_eq!(high.descriptor, low.descriptor);
    }
    // Nothing else of the image is mapped in that space.
    assert_eq!(fault_level(&mut p, root, 48, tramp_pa - KIB4), 3);
    assert_eq!(fault_level(&mut p, root, 48, tramp_pa + tramp_len), 3);
    assert_eq!(fault_level(&mut p, root, 48, tramp_pa + delta + tramp_len), 3);
    assert_eq!(fault_level(&mut p, root, 48, load_pa + delta + MIB2), 2);
}

/// The same with VHE: the link VA is in the upper range (`TTBR1_EL2`), the
/// identity in the lower (`TTBR0_EL2`), two roots; an upper VA can also be
/// given to the lower root's walk, which only uses bits [47:0].
#[test]
fn upper_range_addresses() {
    let mut backing = pages(16);
    let mut p = pool(&mut backing);
    let ttbr0 = p.alloc_table().unwrap();
    let ttbr1 = p.alloc_table().unwrap();
    let pa = 0x7fe1_3000u64;
    let high = 0xffff_ff80_0001_3000u64;
    map(&mut p, ttbr0, 48, Regime::El2And0, VirtAddr(pa), PhysAddr(pa), KIB4, Attributes::CODE).unwrap();
    map(&mut p, ttbr1, 48, Regime::El2And0, VirtAddr(high), PhysAddr(pa), KIB4, Attributes::CODE).unwrap();
    assert_eq!(walk_pa(&mut p, ttbr1, 48, high + 0x10), Some(pa + 0x10));
    // The table walk indexes with bits [47:0] only.
    assert_eq!(walk_pa(&mut p, ttbr1, 48, high & 0x0000_ffff_ffff_ffff), Some(pa));
    assert_eq!(walk_pa(&mut p, ttbr0, 48, pa), Some(pa));
    // The very last page of the 64-bit space is a valid upper-range page.
    let last = 0xffff_ffff_ffff_f000u64;
    map(&mut p, ttbr1, 48, Regime::El2And0, VirtAddr(last), PhysAddr(pa), KIB4, DATA).unwrap();
    assert_eq!(walk_pa(&mut p, ttbr1, 48, u64::MAX), Some(pa + 0xfff));
    // EL2 with E2H = 0 has no upper range.
    let err = map(&mut p, ttbr1, 48, Regime::El2, VirtAddr(high + 0x1000), PhysAddr(pa), KIB4, DATA);
    assert_eq!(err, Err(MapError::OutOfRange));
    // Neither lower nor upper: a walk faults at level 0, as the hardware.
    assert_eq!(fault_level(&mut p, ttbr0, 48, 0x0001_0000_0000_0000), 0);
    assert_eq!(fault_level(&mut p, ttbr0, 48, 0x8000_0000_0000_0000), 0);
}

// ---------------------------------------------------------------------------
// Two VA widths, one hierarchy

#[test]
fn narrow_subtree_of_the_wide_hierarchy() {
    let mut backing = pages(32);
    let mut p = pool(&mut backing);
    let root48 = p.alloc_table().unwrap();
    // The EL0 service's 39-bit space sits at the kernel's 512 GiB slot 1.
    let user_base = 0x0000_0080_0000_0000u64;
    // Something unrelated in the kernel space first.
    map(&mut p, root48, 48, Regime::El2And0, VirtAddr(GIB), PhysAddr(GIB), MIB2, DATA).unwrap();

    let root39 = ensure_table(&mut p, root48, 48, VirtAddr(user_base), 1).unwrap();
    assert_eq!(ensure_table(&mut p, root48, 48, VirtAddr(user_base + 0x1234), 1), Ok(root39));
    assert_eq!(ensure_table(&mut p, root48, 48, VirtAddr(0), 0), Ok(root48));
    assert_eq!(ensure_table(&mut p, root39, 39, VirtAddr(0x1234), 1), Ok(root39));

    let user_rw = Attributes { user: UserAccess::ReadWrite, global: false, ..Attributes::DATA };
    // Through the 39-bit root, seen through the 48-bit one.
    let (u_va, u_pa) = (0x40_0000u64, 0x4567_8000u64);
    map(&mut p, root39, 39, Regime::El2And0, VirtAddr(u_va), PhysAddr(u_pa), 3 * KIB4, user_rw).unwrap();
    for off in [0, 0x1008, 0x2fff] {
        let narrow = translate(&mut p, root39, 39, VirtAddr(u_va + off)).unwrap();
        let wide = translate(&mut p, root48, 48, VirtAddr(user_base + u_va + off)).unwrap();
        assert_eq!(narrow, wide);
        assert_eq!(narrow.pa.0, u_pa + off);
    }
    // Through the 48-bit root, seen through the 39-bit one (a block this
    // time, at the top of the narrow space).
    let (k_off, k_pa) = (511 * GIB, 3 * GIB);
    map(&mut p, root48, 48, Regime::El2And0, VirtAddr(user_base + k_off), PhysAddr(k_pa), GIB, user_rw).unwrap();
    let narrow = translate(&mut p, root39, 39, VirtAddr(k_off + 0x1234)).unwrap();
    let wide = translate(&mut p, root48, 48, VirtAddr(user_base + k_off + 0x1234)).unwrap();
    assert_eq!(narrow, wide);
    assert_eq!((narrow.level, narrow.pa.0), (1, k_pa + 0x1234));
    // The same fault level both ways.
    assert_eq!(fault_level(&mut p, root39, 39, 5 * GIB), 1);
    assert_eq!(fault_level(&mut p, root48, 48, user_base + 5 * GIB), 1);
    // The narrow space ends at 2^39; the kernel's other slots are invisible.
    assert_eq!(fault_level(&mut p, root39, 39, 1 << 39), 0);
    assert_eq!(walk_pa(&mut p, root48, 48, GIB), Some(GIB));
    assert_eq!(fault_level(&mut p, root39, 39, GIB), 1);
    assert_eq!(
        map(&mut p, root39, 39, Regime::El2And0, VirtAddr(1 << 39), PhysAddr(0), KIB4, user_rw),
        Err(MapError::OutOfRange)
    );
    // A 39-bit space has no level-0 table.
    assert_eq!(ensure_table(&mut p, root39, 39, VirtAddr(0), 0), Err(MapError::InvalidLevel { level: 0 }));
    // ensure_table down to level 3 creates the path, and refuses to go
    // through a block.
    let l3 = ensure_table(&mut p, root39, 39, VirtAddr(0x8000_0000), 3).unwrap();
    assert_ne!(l3, root39);
    assert_eq!(
        ensure_table(&mut p, root39, 39, VirtAddr(k_off), 2),
        Err(MapError::AlreadyMapped { va: VirtAddr(k_off) })
    );
}

// ---------------------------------------------------------------------------
// Per-CPU roots

#[test]
fn per_cpu_roots_share_all_but_the_prda() {
    let mut backing = pages(32);
    let mut p = pool(&mut backing);
    let base = p.alloc_table().unwrap();

    let image_va = 0x0000_ff80_0000_0000u64;
    let prda_va = image_va + 0x20_0000 + 0x5000;
    let direct_map = 0x0000_8000_0000_0000u64;
    // Shared mappings: the image, the page next to the PRDA (so the PRDA's
    // L3 table exists and is shared before the split), and a direct map.
    map(&mut p, base, 48, Regime::El2, VirtAddr(image_va), PhysAddr(0x7fe0_0000), MIB2, DATA).unwrap();
    map(&mut p, base, 48, Regime::El2, VirtAddr(prda_va - KIB4), PhysAddr(0x7ff0_0000), KIB4, DATA).unwrap();
    map(&mut p, base, 48, Regime::El2, VirtAddr(direct_map + 0x4000_0000), PhysAddr(0x4000_0000), MIB2, DATA).unwrap();
    let base_root_before = *p.table(base).unwrap();

    let prda_pages = [0x7ff1_0000u64, 0x7ff2_0000];
    let mut cpu_roots = [PhysAddr(0); 2];
    for (cpu, prda_pa) in prda_pages.iter().enumerate() {
        let root = clone_root(&mut p, base).unwrap();
        let l3 = unshare_path(&mut p, root, 48, VirtAddr(prda_va), 3).unwrap();
        assert_eq!(ensure_table(&mut p, root, 48, VirtAddr(prda_va), 3), Ok(l3));
        map(&mut p, root, 48, Regime::El2, VirtAddr(prda_va), PhysAddr(*prda_pa), KIB4, DATA).unwrap();
        cpu_roots[cpu] = root;
    }

    // The PRDA differs per CPU; the original root has none.
    for (root, prda_pa) in cpu_roots.iter().zip(prda_pages) {
        assert_eq!(walk_pa(&mut p, *root, 48, prda_va + 0x10), Some(prda_pa + 0x10));
    }
    assert_eq!(fault_level(&mut p, base, 48, prda_va), 3);
    assert!(*p.table(base).unwrap() == base_root_before);

    // Everything else translates identically in every root.
    for va in [image_va, image_va + 0x1_2340, prda_va - KIB4, direct_map + 0x4000_0000 + 0x777] {
        let expected = translate(&mut p, base, 48, VirtAddr(va)).unwrap();
        for root in cpu_roots {
            assert_eq!(translate(&mut p, root, 48, VirtAddr(va)), Ok(expected));
        }
    }
    // The subtrees off the PRDA path are still shared: later mappings made
    // through the original root in the direct map, one in its shared L2
    // table and one needing a new L2 table in its shared L1 table, show in
    // every CPU's root.
    let later = direct_map + 0x4000_0000 + MIB2;
    map(&mut p, base, 48, Regime::El2, VirtAddr(later), PhysAddr(0x5000_0000), KIB4, DATA).unwrap();
    let far = direct_map + 5 * GIB;
    map(&mut p, base, 48, Regime::El2, VirtAddr(far), PhysAddr(0x6000_0000), KIB4, DATA).unwrap();
    for root in cpu_roots {
        assert_eq!(walk_pa(&mut p, root, 48, later), Some(0x5000_0000));
        assert_eq!(walk_pa(&mut p, root, 48, far), Some(0x6000_0000));
    }
    // A later mapping next to one CPU's PRDA stays that CPU's.
    map(&mut p, cpu_roots[0], 48, Regime::El2, VirtAddr(prda_va + KIB4), PhysAddr(0x7ff3_0000), KIB4, DATA).unwrap();
    assert_eq!(walk_pa(&mut p, cpu_roots[0], 48, prda_va + KIB4), Some(0x7ff3_0000));
    assert_eq!(fault_level(&mut p, cpu_roots[1], 48, prda_va + KIB4), 3);
    assert_eq!(fault_level(&mut p, base, 48, prda_va + KIB4), 3);
}

#[test]
fn unshare_path_edge_cases() {
    let mut backing = pages(16);
    let mut p = pool(&mut backing);
    let base = p.alloc_table().unwrap();
    map(&mut p, base, 48, Regime::El2, VirtAddr(GIB), PhysAddr(GIB), GIB, DATA).unwrap();
    let root = clone_root(&mut p, base).unwrap();
    // The root level itself: nothing to copy.
    assert_eq!(unshare_path(&mut p, root, 48, VirtAddr(GIB), 0), Ok(root));
    // A 1 GiB block sits above level 2.
    assert_eq!(
        unshare_path(&mut p, root, 48, VirtAddr(GIB + 0x5000), 2),
        Err(MapError::AlreadyMapped { va: VirtAddr(GIB + 0x5000) })
    );
    // Copying the L1 table is fine, and keeps the block.
    let l1 = unshare_path(&mut p, root, 48, VirtAddr(GIB), 1).unwrap();
    assert_eq!(walk_pa(&mut p, root, 48, GIB + 8), Some(GIB + 8));
    assert_eq!(ensure_table(&mut p, base, 48, VirtAddr(GIB), 1).map(|t| t == l1), Ok(false));
    // Missing tables are created.
    let t = unshare_path(&mut p, root, 48, VirtAddr(0x0000_4000_0000_0000), 3).unwrap();
    assert_eq!(ensure_table(&mut p, root, 48, VirtAddr(0x0000_4000_0000_0000), 3), Ok(t));
    assert_eq!(unshare_path(&mut p, root, 48, VirtAddr(0), 4), Err(MapError::InvalidLevel { level: 4 }));
    assert_eq!(clone_root(&mut p, PhysAddr(0x1000)), Err(MapError::UnknownTable { pa: PhysAddr(0x1000) }));
}

// ---------------------------------------------------------------------------
// Unmapping

#[test]
fn unmap_and_the_fault_level_after_it() {
    let mut backing = pages(16);
    let mut p = pool(&mut backing);
    let root = p.alloc_table().unwrap();
    let va = 0x4000_0000u64;
    // A 2 MiB block, then three pages.
    map(&mut p, root, 48, Regime::El2, VirtAddr(va), PhysAddr(va), MIB2 + 3 * KIB4, DATA).unwrap();

    // Cutting the block in the middle, or unmapping a hole, changes nothing.
    assert_eq!(
        unmap(&mut p, root, 48, VirtAddr(va + KIB4), KIB4),
        Err(MapError::SplitsBlock { va: VirtAddr(va + KIB4), level: 2 })
    );
    assert_eq!(
        unmap(&mut p, root, 48, VirtAddr(va), MIB2 - KIB4),
        Err(MapError::SplitsBlock { va: VirtAddr(va), level: 2 })
    );
    assert_eq!(
        unmap(&mut p, root, 48, VirtAddr(va + MIB2), 4 * KIB4),
        Err(MapError::NotMapped { va: VirtAddr(va + MIB2 + 3 * KIB4) })
    );
    assert_eq!(walk_pa(&mut p, root, 48, va + MIB2 + 2 * KIB4), Some(va + MIB2 + 2 * KIB4));

    // The middle page: its neighbours stay.
    unmap(&mut p, root, 48, VirtAddr(va + MIB2 + KIB4), KIB4).unwrap();
    assert_eq!(fault_level(&mut p, root, 48, va + MIB2 + KIB4), 3);
    assert_eq!(walk_pa(&mut p, root, 48, va + MIB2), Some(va + MIB2));
    assert_eq!(walk_pa(&mut p, root, 48, va + MIB2 + 2 * KIB4), Some(va + MIB2 + 2 * KIB4));
    // The block: a fault at level 2 after it.
    unmap(&mut p, root, 48, VirtAddr(va), MIB2).unwrap();
    assert_eq!(fault_level(&mut p, root, 48, va), 2);
    assert_eq!(fault_level(&mut p, root, 48, va + MIB2 - 1), 2);
    // Unmapping twice is an error.
    assert_eq!(unmap(&mut p, root, 48, VirtAddr(va), MIB2), Err(MapError::NotMapped { va: VirtAddr(va) }));
    // The freed range can be mapped again.
    map(&mut p, root, 48, Regime::El2, VirtAddr(va), PhysAddr(0), MIB2, DATA).unwrap();
    assert_eq!(walk_pa(&mut p, root, 48, va + 5), Some(5));
    // Zero length is a no-op.
    assert_eq!(unmap(&mut p, root, 48, VirtAddr(0x1234_5000), 0), Ok(()));
}

#[test]
fn unmap_of_several_leaves_at_once() {
    let mut backing = pages(16);
    let mut p = pool(&mut backing);
    let root = p.alloc_table().unwrap();
    let va = 0x0000_0040_0000_0000u64;
    let len = GIB + MIB2 + KIB4;
    map(&mut p, root, 48, Regime::El2, VirtAddr(va), PhysAddr(GIB), len, DATA).unwrap();
    unmap(&mut p, root, 48, VirtAddr(va), len).unwrap();
    assert_eq!(fault_level(&mut p, root, 48, va), 1);
    assert_eq!(fault_level(&mut p, root, 48, va + GIB), 2);
    assert_eq!(fault_level(&mut p, root, 48, va + GIB + MIB2), 3);
}

// ---------------------------------------------------------------------------
// Every error

#[test]
fn every_map_error() {
    let mut backing = pages(4);
    let mut p = pool(&mut backing);
    let root = p.alloc_table().unwrap();
    let m = |p: &mut StaticPool<'_>, va: u64, pa: u64, len: u64| {
        map(p, root, 48, Regime::El2, VirtAddr(va), PhysAddr(pa), len, DATA)
    };

    assert_eq!(m(&mut p, 0x1001, 0, KIB4), Err(MapError::Misaligned));
    assert_eq!(m(&mut p, 0x1000, 0x10, KIB4), Err(MapError::Misaligned));
    assert_eq!(m(&mut p, 0x1000, 0, 0x800), Err(MapError::Misaligned));
    assert_eq!(m(&mut p, 1 << 48, 0, KIB4), Err(MapError::OutOfRange));
    assert_eq!(m(&mut p, (1 << 48) - KIB4, 0, 2 * KIB4), Err(MapError::OutOfRange));
    assert_eq!(m(&mut p, 0, 1 << 48, KIB4), Err(MapError::OutOfRange));
    assert_eq!(m(&mut p, 0, (1 << 48) - KIB4, 2 * KIB4), Err(MapError::OutOfRange));
    assert_eq!(
        map(&mut p, root, 52, Regime::El2, VirtAddr(0), PhysAddr(0), KIB4, DATA),
        Err(MapError::UnsupportedVaBits { va_bits: 52 })
    );
    let user = Attributes { user: UserAccess::ReadWrite, ..DATA };
    assert_eq!(
        map(&mut p, root, 48, Regime::El2, VirtAddr(0), PhysAddr(0), KIB4, user),
        Err(MapError::Unexpressible(EncodeError::NoEl0InRegime))
    );
    assert_eq!(
        map(&mut p, PhysAddr(0x1000), 48, Regime::El2, VirtAddr(0), PhysAddr(0), KIB4, DATA),
        Err(MapError::UnknownTable { pa: PhysAddr(0x1000) })
    );

    // Three more tables are needed for the first page; the pool has three.
    assert_eq!(m(&mut p, 0x3000, 0x3000, KIB4), Ok(()));
    // Already mapped, identical or not, and the first mapped VA is named.
    assert_eq!(m(&mut p, 0x3000, 0x3000, KIB4), Err(MapError::AlreadyMapped { va: VirtAddr(0x3000) }));
    assert_eq!(m(&mut p, 0x1000, 0x9000, 4 * KIB4), Err(MapError::AlreadyMapped { va: VirtAddr(0x3000) }));
    // ...and the part before the conflict was rolled back.
    assert_eq!(fault_level(&mut p, root, 48, 0x1000), 3);
    assert_eq!(fault_level(&mut p, root, 48, 0x2000), 3);
    assert_eq!(walk_pa(&mut p, root, 48, 0x3000), Some(0x3000));

    // The pool is empty now: a page in the next 2 MiB needs a new L3 table.
    // A range that starts with pages in the existing table, then needs a
    // table, fails and is rolled back too.
    assert_eq!(m(&mut p, MIB2, 0, KIB4), Err(MapError::PoolExhausted));
    assert_eq!(m(&mut p, MIB2 - KIB4, 0, 2 * KIB4), Err(MapError::PoolExhausted));
    assert_eq!(fault_level(&mut p, root, 48, MIB2 - KIB4), 3);
    assert_eq!(fault_level(&mut p, root, 48, MIB2), 2);
    // A block needs no new table.
    assert_eq!(m(&mut p, MIB2, 0, MIB2), Ok(()));

    // unmap, ensure_table, translate errors.
    assert_eq!(unmap(&mut p, root, 48, VirtAddr(0x800), KIB4), Err(MapError::Misaligned));
    assert_eq!(unmap(&mut p, root, 48, VirtAddr(0x1000), 1), Err(MapError::Misaligned));
    assert_eq!(unmap(&mut p, root, 48, VirtAddr(1 << 48), KIB4), Err(MapError::OutOfRange));
    assert_eq!(unmap(&mut p, root, 20, VirtAddr(0), KIB4), Err(MapError::UnsupportedVaBits { va_bits: 20 }));
    assert_eq!(ensure_table(&mut p, root, 48, VirtAddr(0), 9), Err(MapError::InvalidLevel { level: 9 }));
    assert_eq!(ensure_table(&mut p, root, 48, VirtAddr(4 * MIB2), 3), Err(MapError::PoolExhausted));
    assert_eq!(ensure_table(&mut p, PhysAddr(0), 48, VirtAddr(0), 0), Err(MapError::UnknownTable { pa: PhysAddr(0) }));
    assert_eq!(translate(&mut p, root, 64, VirtAddr(0)), Err(Fault { level: 0, kind: FaultKind::UnsupportedVaBits }));
    assert_eq!(
        translate(&mut p, PhysAddr(0x1000), 48, VirtAddr(0)),
        Err(Fault { level: 0, kind: FaultKind::UnknownTable { pa: PhysAddr(0x1000) } })
    );
}

#[test]
fn errors_display() {
    let errors = [
        MapError::Misaligned,
        MapError::OutOfRange,
        MapError::UnsupportedVaBits { va_bits: 7 },
        MapError::InvalidLevel { level: 5 },
        MapError::AlreadyMapped { va: VirtAddr(0x1000) },
        MapError::NotMapped { va: VirtAddr(0x2000) },
        MapError::SplitsBlock { va: VirtAddr(0x3000), level: 2 },
        MapError::PoolExhausted,
        MapError::Unexpressible(EncodeError::ExecutableDevice),
        MapError::UnknownTable { pa: PhysAddr(0x4000) },
    ];
    let texts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(texts.iter().all(|t| !t.is_empty()));
    assert_eq!(texts[4], "0x1000 is already mapped");
    assert_eq!(texts[8], "attributes not expressible: Device memory must not be executable");
    let fault = Fault { level: 2, kind: FaultKind::Translation };
    assert_eq!(fault.to_string(), "translation fault at level 2");
    assert!(!PoolError::MisalignedBase.to_string().is_empty());
    assert_eq!(Regime::El2And0.to_string(), "EL2&0");
}

/// Descriptors the 4 KiB granule reserves fault like invalid ones, and
/// `map` does not overwrite them.
#[test]
fn reserved_descriptors_fault() {
    let mut backing = pages(8);
    let mut p = pool(&mut backing);
    let root = p.alloc_table().unwrap();
    // A "block" at level 0.
    p.table(root).unwrap()[1] = (512 * GIB) | 0x401;
    assert_eq!(fault_level(&mut p, root, 48, 512 * GIB), 0);
    assert_eq!(
        map(&mut p, root, 48, Regime::El2, VirtAddr(512 * GIB), PhysAddr(0), KIB4, DATA),
        Err(MapError::AlreadyMapped { va: VirtAddr(512 * GIB) })
    );
    // Type 0b01 at level 3.
    let l3 = ensure_table(&mut p, root, 48, VirtAddr(0), 3).unwrap();
    p.table(l3).unwrap()[2] = 0x2000 | 0x401;
    assert_eq!(fault_level(&mut p, root, 48, 0x2000), 3);
    assert_eq!(unmap(&mut p, root, 48, VirtAddr(0x2000), KIB4), Err(MapError::NotMapped { va: VirtAddr(0x2000) }));
    // A table descriptor pointing outside the pool.
    let l2 = ensure_table(&mut p, root, 48, VirtAddr(0), 2).unwrap();
    p.table(l2).unwrap()[1] = 0xdead_0000 | 0b11;
    assert_eq!(
        translate(&mut p, root, 48, VirtAddr(MIB2)),
        Err(Fault { level: 3, kind: FaultKind::UnknownTable { pa: PhysAddr(0xdead_0000) } })
    );
}

// ---------------------------------------------------------------------------
// Hostile inputs

#[test]
fn hostile_inputs_do_not_panic() {
    let mut backing = pages(8);
    let mut p = pool(&mut backing);
    let root = p.alloc_table().unwrap();
    let top = 0xffff_ffff_ffff_f000u64;
    for regime in [Regime::El2, Regime::El2And0] {
        for (va, pa, len) in [
            (0, 0, !0xfffu64),
            (top, 0, !0xfffu64),
            (top, 0, 2 * KIB4),
            (top, top, KIB4),
            (0, top, KIB4),
            (0x1000, 0, 0xffff_ffff_ffff_e000),
            (0x0000_8000_0000_0000, 0, 0x0000_8000_0000_1000),
        ] {
            let r = map(&mut p, root, 48, regime, VirtAddr(va), PhysAddr(pa), len, DATA);
            assert_eq!(r, Err(MapError::OutOfRange), "{regime} {va:#x} {pa:#x} {len:#x}");
            let r = unmap(&mut p, root, 48, VirtAddr(va), len);
            assert!(r.is_err());
        }
    }
    // A huge but representable length: runs out of pool quickly, rolls back.
    let r = map(&mut p, root, 48, Regime::El2, VirtAddr(0), PhysAddr(0x1000), 1 << 47, DATA);
    assert_eq!(r, Err(MapError::PoolExhausted));
    assert_eq!(fault_level(&mut p, root, 48, 0), 3);
    // Huge with blocks: 128 TiB of 1 GiB blocks fits in the tables at hand.
    map(&mut p, root, 48, Regime::El2, VirtAddr(0), PhysAddr(0), 1 << 47, DATA).unwrap_err();
    map(&mut p, root, 48, Regime::El2, VirtAddr(GIB), PhysAddr(0), 255 * GIB, DATA).unwrap();
    assert_eq!(walk_pa(&mut p, root, 48, 200 * GIB + 7), Some(199 * GIB + 7));
    unmap(&mut p, root, 48, VirtAddr(0), !0xfffu64).unwrap_err();
    unmap(&mut p, root, 48, VirtAddr(GIB), 255 * GIB).unwrap();
    for va in [0, 1, top, u64::MAX, 1 << 48, 0x8000_0000_0000_0000] {
        for bits in [0, 25, 39, 48, 63, 64, u32::MAX] {
            let _ = translate(&mut p, root, bits, VirtAddr(va));
            let _ = ensure_table(&mut p, root, bits, VirtAddr(va), 3);
            let _ = unshare_path(&mut p, root, bits, VirtAddr(va), 3);
        }
    }
}

/// A pseudo-random sweep of map/unmap/translate over a small window, with a
/// shadow model of which pages are mapped: no panics, and the tables always
/// agree with the model.
#[test]
fn random_operations_agree_with_a_model() {
    let mut backing = pages(64);
    let mut p = pool(&mut backing);
    let root = p.alloc_table().unwrap();
    let window = 8 * MIB2; // 2048 pages, VA == PA
    let mut model = vec![false; (window / KIB4) as usize];
    let mut seed = 0x1234_5678_9abc_def0u64;
    let (mut mapped, mut refused, mut unmapped) = (0, 0, 0);
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..4000 {
        let r = next();
        let start = (r >> 8) % (window / KIB4);
        let pages = match r & 3 {
            0 => 1,
            1 => 1 + (r >> 40) % 8,
            2 => 512,
            _ => 1 + (r >> 40) % 600,
        }
        .min(window / KIB4 - start);
        let start = if r & 3 == 2 { start & !511 } else { start };
        let (va, len) = (start * KIB4, pages * KIB4);
        let range = start as usize..(start + pages) as usize;
        if (r >> 4) & 1 == 0 {
            let res = map(&mut p, root, 48, Regime::El2, VirtAddr(va), PhysAddr(va), len, DATA);
            let free = model[range.clone()].iter().all(|m| !m);
            match res {
                Ok(()) => {
                    assert!(free);
                    mapped += 1;
                    model[range].iter_mut().for_each(|m| *m = true);
                }
                Err(MapError::AlreadyMapped { va: at }) => {
                    assert!(!free);
                    refused += 1;
                    assert!(model[(at.0 / KIB4) as usize]);
                }
                Err(e) => panic!("map: {e}"),
            }
        } else {
            let res = unmap(&mut p, root, 48, VirtAddr(va), len);
            match res {
                Ok(()) => {
                    assert!(model[range.clone()].iter().all(|m| *m));
                    unmapped += 1;
                    model[range].iter_mut().for_each(|m| *m = false);
                }
                Err(MapError::NotMapped { .. }) => {
                    assert!(!model[range].iter().all(|m| *m));
                }
                Err(MapError::SplitsBlock { .. }) => {}
                Err(e) => panic!("unmap: {e}"),
            }
        }
    }
    // The sweep did exercise every outcome.
    assert!(mapped > 50 && refused > 50 && unmapped > 50, "{mapped} {refused} {unmapped}");
    for (page, is_mapped) in model.iter().enumerate() {
        let va = page as u64 * KIB4;
        let got = walk_pa(&mut p, root, 48, va + 0x10);
        assert_eq!(got, is_mapped.then_some(va + 0x10), "{va:#x}");
    }
}
