//! Host tests for the store emulator, on real encodings: every word below
//! was assembled by llvm-mc 14 (`llvm-mc -triple=aarch64
//! -mattr=+v8.7a,+lse,+rcpc-immo,+mte,+ls64,+sve,+sme,+mops,+lor
//! -show-encoding`), with its assembly text beside it, except the
//! unallocated words, which llvm-mc refuses to disassemble (hand-assembled,
//! the changed field named). The checks: addresses (scaled, unscaled and
//! register offsets with each extend, pre- and post-index writeback, SP as
//! a base), sizes, the bytes written by each class, the register writes
//! (XZR dropped, W results zero-extended), CAS hit and miss, each atomic
//! operation with signed limits at every size, `DC ZVA` alignment, the
//! refusals; and properties: nothing panics on any word, frame or old
//! contents.

use super::*;
use proptest::prelude::*;

const BASE: u64 = 0x4000_1000;
const STACK: u64 = 0x8000_0000;
const X1: u64 = 0x1122_3344_5566_7788;
const X5: u64 = 0x99aa_bbcc_ddee_ff00;
/// As an index: `uxtw` 0xffff_fff0, `sxtw` -16, `sxtx` all of it.
const X4: u64 = 0xdead_beef_ffff_fff0;

/// A frame: x1 and x5 data, x2 the base, x3 = 0x10 and x4 indexes, the
/// rest distinct and nonzero.
fn frame() -> [u64; 31] {
    let mut x = [0u64; 31];
    for (i, r) in x.iter_mut().enumerate() {
        *r = 0xa5a5_0000_0000_0000 | (i as u64) << 8 | i as u64;
    }
    x[1] = X1;
    x[2] = BASE;
    x[3] = 0x10;
    x[4] = X4;
    x[5] = X5;
    x
}

fn regs(x: &[u64; 31]) -> Regs<'_> {
    Regs { x, sp: STACK }
}

/// `value`'s low `len` bytes.
fn le(value: u64, len: usize) -> Vec<u8> {
    value.to_le_bytes()[..len].to_vec()
}

/// Decodes and performs `insn` on `old`, checking the invariants every
/// outcome has.
fn perform(insn: u32, x: &[u64; 31], old: &[u8]) -> Outcome {
    let store = decode(insn).unwrap_or_else(|e| panic!("{insn:#010x}: {e}"));
    assert_eq!(store.len(), old.len(), "{insn:#010x}");
    let out = store.apply(&regs(x), old).unwrap();
    assert_eq!(out.len, old.len());
    assert_eq!(out.bytes().len(), old.len());
    assert_eq!(out.changed(), out.bytes() != old);
    out
}

/// (word, assembly, address, element length, writeback)
type AddressCase = (u32, &'static str, u64, usize, Option<(u8, u64)>);

fn writes(out: &Outcome) -> Vec<(u8, u64)> {
    out.writes.iter().flatten().copied().collect()
}

#[test]
fn plain_stores_address_size_and_writeback() {
    let cases: &[AddressCase] = &[
        // Unsigned offset, scaled by the size.
        (0xf900_0441, "str x1, [x2, #8]", BASE + 8, 8, None),
        (0x393f_fc41, "strb w1, [x2, #4095]", BASE + 4095, 1, None),
        (0x793f_fc41, "strh w1, [x2, #8190]", BASE + 8190, 2, None),
        (0xb93f_fc41, "str w1, [x2, #16380]", BASE + 16380, 4, None),
        (0xf93f_fc41, "str x1, [x2, #32760]", BASE + 32760, 8, None),
        // Pre- and post-index, X and SP bases.
        (0xf81f_8c41, "str x1, [x2, #-8]!", BASE - 8, 8, Some((2, BASE - 8))),
        (0xf801_0441, "str x1, [x2], #16", BASE, 8, Some((2, BASE + 16))),
        (0xf81f_0fe1, "str x1, [sp, #-16]!", STACK - 16, 8, Some((31, STACK - 16))),
        (0x7810_07e1, "strh w1, [sp], #-256", STACK, 2, Some((31, STACK - 256))),
        // Unscaled and unprivileged.
        (0xf81f_f041, "stur x1, [x2, #-1]", BASE - 1, 8, None),
        (0x380f_f3e1, "sturb w1, [sp, #255]", STACK + 255, 1, None),
        (0xb800_3841, "sttr w1, [x2, #3]", BASE + 3, 4, None),
        (0x781f_c841, "sttrh w1, [x2, #-4]", BASE - 4, 2, None),
        // Register offset, each extend, scaled or not.
        (0xf823_6841, "str x1, [x2, x3]", BASE + 0x10, 8, None),
        (0xf823_7841, "str x1, [x2, x3, lsl #3]", BASE + 0x80, 8, None),
        (0xb824_5841, "str w1, [x2, w4, uxtw #2]", BASE + 0xffff_fff0 * 4, 4, None),
        (0xf824_c841, "str x1, [x2, w4, sxtw]", BASE - 16, 8, None),
        (0xf824_d841, "str x1, [x2, w4, sxtw #3]", BASE - 128, 8, None),
        (0x3823_7841, "strb w1, [x2, x3, lsl #0]", BASE + 0x10, 1, None),
        (0x7824_f841, "strh w1, [x2, x4, sxtx #1]", BASE.wrapping_add(X4 << 1), 2, None),
        // Rn 31 is SP, Rm 31 is XZR.
        (0xf83f_6be1, "str x1, [sp, xzr]", STACK, 8, None),
        // Release and RCpc stores.
        (0xc89f_fc41, "stlr x1, [x2]", BASE, 8, None),
        (0x089f_ffe1, "stlrb w1, [sp]", STACK, 1, None),
        (0x489f_fc41, "stlrh w1, [x2]", BASE, 2, None),
        (0x889f_7c41, "stllr w1, [x2]", BASE, 4, None),
        (0xd910_0041, "stlur x1, [x2, #-256]", BASE - 256, 8, None),
        (0x590f_f041, "stlurh w1, [x2, #255]", BASE + 255, 2, None),
    ];
    let x = frame();
    for &(insn, asm, address, len, writeback) in cases {
        let store = decode(insn).unwrap_or_else(|e| panic!("{asm}: {e}"));
        assert_eq!(store.kind(), Kind::Plain, "{asm}");
        assert_eq!(store.address(&regs(&x)), address, "{asm}");
        assert_eq!(store.len(), len, "{asm}");
        assert!(!store.reads_memory(), "{asm}");
        let out = perform(insn, &x, &vec![0xee; len]);
        assert_eq!(out.bytes(), le(X1, len), "{asm}: Rt's low bytes");
        assert_eq!(out.writeback, writeback, "{asm}");
        assert_eq!(writes(&out), [], "{asm}");
    }
}

#[test]
fn xzr_stores_zeros_and_sp_wraps_like_the_cpu() {
    let x = frame();
    // str xzr, [x2]; str wzr, [x2]; stp xzr, xzr, [x2]
    assert_eq!(perform(0xf900_005f, &x, &[0xff; 8]).bytes(), [0; 8]);
    assert_eq!(perform(0xb900_005f, &x, &[0xff; 4]).bytes(), [0; 4]);
    assert_eq!(perform(0xa900_7c5f, &x, &[0xff; 16]).bytes(), [0; 16]);
    // str x1, [x2, #8] with x2 near the top: the sum wraps, no panic.
    let mut top = frame();
    top[2] = u64::MAX - 3;
    assert_eq!(decode(0xf900_0441).unwrap().address(&regs(&top)), 4);
    // str x1, [x2, #-8]! from 0: the writeback wraps as well.
    top[2] = 0;
    let out = perform(0xf81f_8c41, &top, &[0; 8]);
    assert_eq!(out.writeback, Some((2, u64::MAX - 7)));
    // Storing what is there already changes nothing.
    assert!(!perform(0xf900_0441, &x, &X1.to_le_bytes()).changed());
}

#[test]
fn pairs_store_rt_then_rt2() {
    let cases: &[AddressCase] = &[
        (0xa901_1441, "stp x1, x5, [x2, #16]", BASE + 16, 8, None),
        (0x29a0_1441, "stp w1, w5, [x2, #-256]!", BASE - 256, 4, Some((2, BASE - 256))),
        (0xa89f_9441, "stp x1, x5, [x2], #504", BASE, 8, Some((2, BASE + 504))),
        (0xa820_1441, "stnp x1, x5, [x2, #-512]", BASE - 512, 8, None),
        (0x2800_9441, "stnp w1, w5, [x2, #4]", BASE + 4, 4, None),
    ];
    let x = frame();
    for &(insn, asm, address, element, writeback) in cases {
        let store = decode(insn).unwrap();
        assert_eq!(store.kind(), Kind::Pair, "{asm}");
        assert_eq!(store.address(&regs(&x)), address, "{asm}");
        assert_eq!(store.len(), 2 * element, "{asm}");
        let out = perform(insn, &x, &vec![0; 2 * element]);
        let expected = [le(X1, element), le(X5, element)].concat();
        assert_eq!(out.bytes(), expected, "{asm}");
        assert_eq!(out.writeback, writeback, "{asm}");
    }
    // stp x29, x30, [sp, #-16]!: the frame push, SP written back.
    let out = perform(0xa9bf_7bfd, &x, &[0; 16]);
    assert_eq!(out.bytes(), [le(x[29], 8), le(x[30], 8)].concat());
    assert_eq!(decode(0xa9bf_7bfd).unwrap().address(&regs(&x)), STACK - 16);
    assert_eq!(out.writeback, Some((31, STACK - 16)));
}

#[test]
fn store_exclusive_stores_and_reports_success() {
    let cases: &[(u32, &str, usize)] = &[
        (0xc806_7c41, "stxr w6, x1, [x2]", 8),
        (0x8806_fc41, "stlxr w6, w1, [x2]", 4),
        (0x0806_fc41, "stlxrb w6, w1, [x2]", 1),
        (0x4806_7c41, "stxrh w6, w1, [x2]", 2),
    ];
    let x = frame();
    assert_ne!(x[6], 0);
    for &(insn, asm, len) in cases {
        let store = decode(insn).unwrap();
        assert_eq!((store.kind(), store.len(), store.address(&regs(&x))), (Kind::Exclusive, len, BASE), "{asm}");
        assert!(!store.reads_memory());
        let out = perform(insn, &x, &vec![0; len]);
        assert_eq!(out.bytes(), le(X1, len), "{asm}");
        assert_eq!(writes(&out), [(6, 0)], "{asm}: Ws = 0, success");
        assert_eq!(out.writeback, None);
    }
    // stxr wzr, x1, [x2]: the status goes nowhere.
    let out = perform(0xc81f_7c41, &x, &[0; 8]);
    assert_eq!(out.bytes(), X1.to_le_bytes());
    assert_eq!(out.writes, [None; 3]);
}

#[test]
fn cas_stores_on_a_match_and_returns_the_old_value_either_way() {
    let mut x = frame();
    let old: u64 = 0x0060_0000_4000_0703;
    // cas x7, x1, [x2]: a match.
    x[7] = old;
    let store = decode(0xc8a7_7c41).unwrap();
    assert_eq!((store.kind(), store.len(), store.address(&regs(&x))), (Kind::CompareAndSwap, 8, BASE));
    assert!(store.reads_memory());
    let out = perform(0xc8a7_7c41, &x, &old.to_le_bytes());
    assert_eq!(out.bytes(), X1.to_le_bytes());
    assert!(out.changed());
    assert_eq!(writes(&out), [(7, old)]);
    // A miss: memory as it was, nothing to write, Rs still gets the old value.
    x[7] = old + 1;
    let out = perform(0xc8a7_7c41, &x, &old.to_le_bytes());
    assert_eq!(out.bytes(), old.to_le_bytes());
    assert!(!out.changed());
    assert_eq!(writes(&out), [(7, old)]);

    // casb w7, w1, [x2]: only Rs's low byte is compared.
    x[7] = 0xffff_ff42;
    let out = perform(0x08a7_7c41, &x, &[0x42]);
    assert_eq!((out.bytes(), writes(&out)), (&[0x88][..], vec![(7, 0x42)]));
    let out = perform(0x08a7_7c41, &x, &[0x43]);
    assert_eq!((out.bytes(), writes(&out)), (&[0x43][..], vec![(7, 0x43)]));
    // casah w7, w1, [x2]
    x[7] = 0xabcd_1234;
    let out = perform(0x48e7_7c41, &x, &[0x34, 0x12]);
    assert_eq!((out.bytes(), writes(&out)), (&[0x88, 0x77][..], vec![(7, 0x1234)]));
    // casal w7, w1, [x2]: the old word goes to X7 zero-extended.
    x[7] = u64::MAX;
    let out = perform(0x88e7_fc41, &x, &[0xff; 4]);
    assert_eq!((out.bytes(), writes(&out)), (&[0x88, 0x77, 0x66, 0x55][..], vec![(7, 0xffff_ffff)]));

    // casl xzr, x1, [sp]: compares with zero, writes no register.
    let store = decode(0xc8bf_ffe1).unwrap();
    assert_eq!(store.address(&regs(&x)), STACK);
    let out = perform(0xc8bf_ffe1, &x, &[0; 8]);
    assert_eq!((out.bytes(), out.writes), (&X1.to_le_bytes()[..], [None; 3]));
    let out = perform(0xc8bf_ffe1, &x, &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert!(!out.changed());
    assert_eq!(out.writes, [None; 3]);
}

#[test]
fn swap_stores_rs_and_returns_the_old_value_in_rt() {
    let x = frame();
    let old: u64 = 0x0123_4567_89ab_cdef;
    // swpal x1, x9, [x2]
    let store = decode(0xf8e1_8049).unwrap();
    assert_eq!((store.kind(), store.len(), store.address(&regs(&x))), (Kind::Swap, 8, BASE));
    assert!(store.reads_memory());
    let out = perform(0xf8e1_8049, &x, &old.to_le_bytes());
    assert_eq!((out.bytes(), writes(&out)), (&X1.to_le_bytes()[..], vec![(9, old)]));
    // swpb w1, w9, [x2]: the byte zero-extended, not sign-extended.
    let out = perform(0x3821_8049, &x, &[0x80]);
    assert_eq!((out.bytes(), writes(&out)), (&[0x88][..], vec![(9, 0x80)]));
    // swpah w1, w9, [x2]
    let out = perform(0x78a1_8049, &x, &[0xff, 0xff]);
    assert_eq!((out.bytes(), writes(&out)), (&[0x88, 0x77][..], vec![(9, 0xffff)]));
    // swp x1, xzr, [x2]: the old value goes nowhere.
    let out = perform(0xf821_805f, &x, &old.to_le_bytes());
    assert_eq!((out.bytes(), out.writes), (&X1.to_le_bytes()[..], [None; 3]));
}

#[test]
fn atomics_compute_at_their_size() {
    // (word, assembly, Rs (x5), old, new, len, op); Rt is x9 unless 31.
    let cases: &[(u32, &str, u64, u64, u64, usize, AtomicOp)] = &[
        (0xf8e5_0049, "ldaddal x5, x9, [x2]", 2, u64::MAX, 1, 8, AtomicOp::Add),
        // Wraps at the size; Rs's bits above it do not count.
        (0x3825_0049, "ldaddb w5, w9, [x2]", 0x102, 0xff, 0x01, 1, AtomicOp::Add),
        (0xb865_1049, "ldclrl w5, w9, [x2]", 0x0000_ff0f, 0xf0f0_ffff, 0xf0f0_00f0, 4, AtomicOp::Clr),
        (0xf8a5_2049, "ldeora x5, x9, [x2]", 0x0ff0, 0xff00, 0xf0f0, 8, AtomicOp::Eor),
        (0x7825_3049, "ldseth w5, w9, [x2]", 0xdead_00f0, 0x0f00, 0x0ff0, 2, AtomicOp::Set),
        // Signed and unsigned limits: 0x80 is -128 or 128.
        (0x3825_4049, "ldsmaxb w5, w9, [x2]", 0x7f, 0x80, 0x7f, 1, AtomicOp::Smax),
        (0x3825_5049, "ldsminb w5, w9, [x2]", 0x7f, 0x80, 0x80, 1, AtomicOp::Smin),
        (0x3825_6049, "ldumaxb w5, w9, [x2]", 0x7f, 0x80, 0x80, 1, AtomicOp::Umax),
        (0x3825_7049, "lduminb w5, w9, [x2]", 0x7f, 0x80, 0x7f, 1, AtomicOp::Umin),
        // Rs = 0xffff_ff01 is +1 as a byte.
        (0x3825_4049, "ldsmaxb w5, w9, [x2]", 0xffff_ff01, 0x80, 0x01, 1, AtomicOp::Smax),
        (0x7825_4049, "ldsmaxh w5, w9, [x2]", 0x0001, 0xffff, 0x0001, 2, AtomicOp::Smax),
        (0x7825_5049, "ldsminh w5, w9, [x2]", 0x8000, 0x7fff, 0x8000, 2, AtomicOp::Smin),
        (0xb825_4049, "ldsmax w5, w9, [x2]", 1, 0x8000_0000, 1, 4, AtomicOp::Smax),
        (0xb825_5049, "ldsmin w5, w9, [x2]", 0x7fff_ffff, 0x8000_0000, 0x8000_0000, 4, AtomicOp::Smin),
        (0xf825_4049, "ldsmax x5, x9, [x2]", 5, u64::MAX, 5, 8, AtomicOp::Smax),
        (0xf825_5049, "ldsmin x5, x9, [x2]", 5, u64::MAX, u64::MAX, 8, AtomicOp::Smin),
        (0xb825_6049, "ldumax w5, w9, [x2]", 1, 0x8000_0000, 0x8000_0000, 4, AtomicOp::Umax),
        (0xf825_7049, "ldumin x5, x9, [x2]", 5, u64::MAX, 5, 8, AtomicOp::Umin),
        // The ST<op> aliases: Rt is XZR.
        (0xf825_005f, "stadd x5, [x2]", 2, 1, 3, 8, AtomicOp::Add),
        (0x3865_305f, "stsetlb w5, [x2]", 0x80, 0x01, 0x81, 1, AtomicOp::Set),
    ];
    let mut x = frame();
    for &(insn, asm, rs, old, new, len, op) in cases {
        x[5] = rs;
        let store = decode(insn).unwrap_or_else(|e| panic!("{asm}: {e}"));
        assert_eq!((store.kind(), store.len(), store.address(&regs(&x))), (Kind::Atomic(op), len, BASE), "{asm}");
        assert!(store.reads_memory());
        let out = perform(insn, &x, &le(old, len));
        assert_eq!(out.bytes(), le(new, len), "{asm}");
        let expected_writes = if insn & 0x1f == 31 { vec![] } else { vec![(9, old)] };
        assert_eq!(writes(&out), expected_writes, "{asm}: Rt = old, zero-extended");
    }
}

#[test]
fn dc_zva_zeroes_the_aligned_block() {
    let mut x = frame();
    x[2] = 0x4000_1234;
    // dc zva, x2
    let store = decode(0xd50b_7422).unwrap();
    assert_eq!((store.kind(), store.len(), store.address(&regs(&x))), (Kind::ZeroBlock, 64, 0x4000_1200));
    assert!(!store.reads_memory());
    let out = perform(0xd50b_7422, &x, &[0xff; 64]);
    assert_eq!(out.bytes(), [0; 64]);
    assert_eq!((out.writes, out.writeback), ([None; 3], None));
    // Another block size aligns differently.
    let store = decode_with(0xd50b_7422, 32).unwrap();
    assert_eq!((store.len(), store.address(&regs(&x))), (32, 0x4000_1220));
    assert_eq!(decode_with(0xd50b_7422, 4).unwrap().address(&regs(&x)), 0x4000_1234);
    // Blocks over 64 bytes, or not a power of two: refused.
    for block in [128, 2048, 48, 0, 2] {
        assert_eq!(decode_with(0xd50b_7422, block), Err(DecodeError::Unsupported(0xd50b_7422)), "{block}");
    }
    // The block size only matters to DC ZVA: str x1, [x2, #8]
    assert_eq!(decode_with(0xf900_0441, 0), decode(0xf900_0441));
    // dc zva, xzr: Xt 31 is XZR, not SP.
    assert_eq!(decode(0xd50b_743f).unwrap().address(&regs(&x)), 0);
}

#[test]
fn loads_and_non_memory_instructions_are_not_stores() {
    let words: &[(u32, &str)] = &[
        (0xf940_0020, "ldr x0, [x1]"),
        (0x3940_0420, "ldrb w0, [x1, #1]"),
        (0xf840_8420, "ldr x0, [x1], #8"),
        (0xb8a2_6820, "ldrsw x0, [x1, x2]"),
        (0xf85f_f020, "ldur x0, [x1, #-1]"),
        (0xf840_0820, "ldtr x0, [x1]"),
        (0xa940_0440, "ldp x0, x1, [x2]"),
        (0x2840_0440, "ldnp w0, w1, [x2]"),
        (0x6940_0440, "ldpsw x0, x1, [x2]"),
        (0xc85f_7c20, "ldxr x0, [x1]"),
        (0x085f_fc20, "ldaxrb w0, [x1]"),
        (0xc8df_fc20, "ldar x0, [x1]"),
        (0xf8bf_c020, "ldapr x0, [x1]"),
        (0x1940_0020, "ldapurb w0, [x1]"),
        (0x5800_0040, "ldr x0, #8"),
        (0xf980_0000, "prfm pldl1keep, [x0]"),
        (0xf89f_f010, "prfum pstl1keep, [x0, #-1]"),
        (0xf820_0420, "ldraa x0, [x1]"),
        (0xc87f_0440, "ldxp x0, x1, [x2]"),
        (0xf83f_d020, "ld64b x0, [x1]"),
        (0xd960_0020, "ldg x0, [x1]"),
        (0xd503_201f, "nop"),
        (0x8b02_0020, "add x0, x1, x2"),
        (0xd50b_7e20, "dc civac, x0"),
        (0xd508_7620, "dc ivac, x0"),
        (0xd400_0001, "svc #0"),
        (0x0000_0000, "udf #0"),
    ];
    for &(insn, asm) in words {
        assert_eq!(decode(insn), Err(DecodeError::NotAStore(insn)), "{asm}");
    }
}

#[test]
fn stores_this_module_does_not_perform_are_unsupported() {
    let words: &[(u32, &str)] = &[
        (0x3d80_0020, "str q0, [x1]"),
        (0xfc00_8c20, "str d0, [x1, #8]!"),
        (0xbc1f_c020, "stur s0, [x1, #-4]"),
        (0x3c22_6820, "str b0, [x1, x2]"),
        (0xad00_0420, "stp q0, q1, [x1]"),
        (0x6c00_0420, "stnp d0, d1, [x1]"),
        (0x4c00_7000, "st1 {v0.16b}, [x0]"),
        (0x4d00_8400, "st1 {v0.d}[1], [x0]"),
        (0xc820_0861, "stxp w0, x1, x2, [x3]"),
        (0x8820_8861, "stlxp w0, w1, w2, [x3]"),
        (0x4820_7c82, "casp x0, x1, x2, x3, [x4]"),
        (0x6900_0440, "stgp x0, x1, [x2]"),
        (0xd920_0820, "stg x0, [x1]"),
        (0xd920_0020, "stzgm x0, [x1]"),
        (0xf83f_9020, "st64b x0, [x1]"),
        (0xf822_b020, "st64bv x2, x0, [x1]"),
        (0x19c2_0420, "setp [x0]!, x1!, x2"),
        (0x1901_0440, "cpyfp [x0]!, [x1]!, x2!"),
        (0xe400_e000, "st1b {z0.b}, p0, [x0]"),
        (0xe580_4000, "str z0, [x0]"),
        (0xe120_0000, "str za[w12, 0], [x0]"),
        (0xd50b_7460, "dc gva, x0"),
        (0xd50b_7480, "dc gzva, x0"),
        // FEAT_LSUI (from LLVM's armv9.6a-lsui.s; llvm-mc 14 predates it).
        (0xe881_17e3, "sttp x3, x5, [sp], #16"),
        (0xc980_7c41, "cast x0, x1, [x2]"),
        (0x1927_84bf, "swpt w7, wzr, [x5]"),
        (0xc905_7ce6, "sttxr w5, x6, [x7]"),
    ];
    for &(insn, asm) in words {
        assert_eq!(decode(insn), Err(DecodeError::Unsupported(insn)), "{asm}");
    }
}

#[test]
fn unallocated_encodings_are_refused() {
    // Each llvm-mc refuses to disassemble.
    let words: &[(u32, &str)] = &[
        (0x88a0_7841, "cas w0, w1, [x2] with Rt2 = 11110"),
        (0x4820_7882, "casp x0, x1, x2, x3, [x4] with Rt2 = 11110"),
        (0xf823_0841, "str x1, [x2, w3, ...] with option 000"),
        (0x6800_0440, "stnp with opc 01"),
        (0xf9c0_0041, "str (unsigned offset) with size 11, opc 11"),
        (0xf880_0441, "prfm with post-index"),
        (0xdc00_0040, "ldr (literal, SIMD&FP) with opc 11"),
        (0xd980_0041, "ldapur with size 11, opc 10"),
    ];
    for &(insn, asm) in words {
        assert_eq!(decode(insn), Err(DecodeError::Unallocated(insn)), "{asm}");
    }
}

#[test]
fn should_be_one_fields_are_ignored() {
    let x = frame();
    // stxr w6, x1, [x2] with Rt2 = 11110; stlr x1, [x2] with Rs = 11110:
    // performed as if the fields held ones.
    assert_eq!(writes(&perform(0xc806_7841, &x, &[0; 8])), [(6, 0)]);
    assert_eq!(perform(0xc89e_fc41, &x, &[0; 8]).bytes(), X1.to_le_bytes());
}

#[test]
fn apply_wants_exactly_len_old_bytes() {
    let x = frame();
    let store = decode(0xf900_0441).unwrap(); // str x1, [x2, #8]
    assert_eq!(store.apply(&regs(&x), &[0; 4]), Err(DecodeError::WrongLength(0xf900_0441)));
    assert_eq!(store.apply(&regs(&x), &[0; 9]), Err(DecodeError::WrongLength(0xf900_0441)));
    assert!(store.apply(&regs(&x), &[0; 8]).is_ok());
}

#[test]
fn errors_name_the_word() {
    assert_eq!(DecodeError::NotAStore(0xd503_201f).insn(), 0xd503_201f);
    assert_eq!(DecodeError::Unsupported(0x3d80_0020).to_string(), "0x3d800020: a store not emulated");
    assert_eq!(DecodeError::Unallocated(0x6800_0440).to_string(), "0x68000440: unallocated");
    assert_eq!(decode(0xf900_0441).unwrap().insn(), 0xf900_0441);
}

/// Words near the stores: a store's encoding with the low 22 bits (the
/// registers, immediates, `Rs`, `o3`/`opc`, `option`) replaced at random.
fn near_a_store() -> impl Strategy<Value = u32> {
    const STORES: [u32; 12] = [
        0xf900_0441, // str x1, [x2, #8]
        0x3823_7841, // strb w1, [x2, x3, lsl #0]
        0xf81f_8c41, // str x1, [x2, #-8]!
        0xa901_1441, // stp x1, x5, [x2, #16]
        0x29a0_1441, // stp w1, w5, [x2, #-256]!
        0xc806_7c41, // stxr w6, x1, [x2]
        0xc8a7_7c41, // cas x7, x1, [x2]
        0x08a7_7c41, // casb w7, w1, [x2]
        0xf8e1_8049, // swpal x1, x9, [x2]
        0x3825_4049, // ldsmaxb w5, w9, [x2]
        0xd910_0041, // stlur x1, [x2, #-256]
        0xd50b_7422, // dc zva, x2
    ];
    (0..STORES.len(), any::<u32>()).prop_map(|(i, r)| (STORES[i] & !0x3f_ffff) | (r & 0x3f_ffff))
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, cases: 2048, ..ProptestConfig::default() })]

    /// No word, block size, frame or old contents makes decode or apply
    /// panic, and every outcome is consistent: `len` bytes, registers 0
    /// to 30 written, `changed` meaning "differs from old", and the bytes
    /// of a store that does not read memory independent of it.
    #[test]
    fn decode_and_apply_never_panic(
        insn in prop_oneof![any::<u32>(), near_a_store()],
        block in prop_oneof![Just(64usize), any::<usize>(), 0usize..200],
        x in proptest::array::uniform31(any::<u64>()),
        sp in any::<u64>(),
        old in proptest::collection::vec(any::<u8>(), MAX_LEN),
        other in proptest::collection::vec(any::<u8>(), MAX_LEN),
    ) {
        let regs = Regs { x: &x, sp };
        let Ok(store) = decode_with(insn, block) else { return Ok(()) };
        let len = store.len();
        prop_assert!((1..=MAX_LEN).contains(&len));
        let _ = store.address(&regs);
        let out = store.apply(&regs, &old[..len]).unwrap();
        prop_assert_eq!(out.len, len);
        prop_assert_eq!(out.changed(), out.bytes() != &old[..len]);
        prop_assert!(out.writes.iter().flatten().all(|&(r, _)| r < 31));
        prop_assert!(out.writeback.iter().all(|&(r, _)| r <= 31));
        if !store.reads_memory() {
            let again = store.apply(&regs, &other[..len]).unwrap();
            prop_assert_eq!(again.bytes(), out.bytes());
        }
        prop_assert_eq!(store.apply(&regs, &old[..len - 1]), Err(DecodeError::WrongLength(insn)));
    }
}
