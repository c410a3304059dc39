// The hostile mode's sweep of the IPA space's holes (hostile.rs): one
// access per page, of a random size, offset and direction, each of which
// the hypervisor must answer with an injected synchronous external abort.
// A Rust round trip through expect_sync per page would cost more than the
// access itself, so the loop and its vector are here.
//
// hostile_vectors: the stub's table except the synchronous vector for the
// current EL (offset 0x200), which records ESR_EL1 in x10 and FAR_EL1 in
// x11 and steps over the faulting instruction. Only hostile_sweep runs
// while this table is installed; it leaves x10..x12 to the vector.

.section .text.vectors, "ax"
.balign 2048
.global hostile_vectors
hostile_vectors:
.set hostile_vector_offset, 0
.rept 16
.balign 128
.if hostile_vector_offset == 0x200
    mrs     x10, esr_el1
    mrs     x11, far_el1
    mrs     x12, elr_el1
    add     x12, x12, #4
    msr     elr_el1, x12
    eret
.else
    b       stub_vectors + hostile_vector_offset
.endif
.set hostile_vector_offset, hostile_vector_offset + 128
.endr

// u64 hostile_sweep(u64 start, u64 end, u64 *state, u64 stats[4])
//   Probes every page of [start, end) (page-aligned). *state is the
//   xorshift64 state, advanced per page. stats: [0] pages probed, [1]
//   aborts as expected, [2] accesses that did not abort as expected, [3]
//   the first such address. Returns stats[2].
.section .text.hostile_sweep, "ax"
.global hostile_sweep
hostile_sweep:
    mov     x17, x2
    ldr     x2, [x17]
    ldp     x4, x5, [x3]
    ldp     x6, x16, [x3, #16]
1:  cmp     x0, x1
    b.hs    9f
    eor     x2, x2, x2, lsl #13
    eor     x2, x2, x2, lsr #7
    eor     x2, x2, x2, lsl #17
    and     x7, x2, #3              // log2 of the access size
    ubfx    x8, x2, #2, #1          // 1: a store
    ubfx    x9, x2, #3, #12         // offset in the page...
    lsr     x9, x9, x7
    lsl     x9, x9, x7              // ...aligned to the size
    add     x9, x0, x9              // the address
    mov     x10, #0
    add     x13, x7, x8, lsl #2
    adr     x14, 2f
    add     x14, x14, x13, lsl #3   // two instructions per case
    br      x14
2:  ldrb    w15, [x9]
    b       3f
    ldrh    w15, [x9]
    b       3f
    ldr     w15, [x9]
    b       3f
    ldr     x15, [x9]
    b       3f
    strb    w2, [x9]
    b       3f
    strh    w2, [x9]
    b       3f
    str     w2, [x9]
    b       3f
    str     x2, [x9]
    b       3f
3:  add     x4, x4, #1
    // Expected: a data abort at this EL (EC 0x25), synchronous external
    // (DFSC 0x10), WnR = the direction, FAR = the address.
    cbz     x10, 5f
    cmp     x11, x9
    b.ne    5f
    lsr     x13, x10, #{ESR_EC_SHIFT}
    cmp     x13, #{EC_DATA_ABORT_SAME}
    b.ne    5f
    and     x13, x10, #{ESR_DFSC_MASK}
    cmp     x13, #{DFSC_SYNC_EXTERNAL}
    b.ne    5f
    ubfx    x13, x10, #{ESR_WNR_SHIFT}, #1
    cmp     x13, x8
    b.ne    5f
    add     x5, x5, #1
    b       6f
5:  cbnz    x6, 4f
    mov     x16, x9
4:  add     x6, x6, #1
6:  add     x0, x0, #4096
    b       1b
9:  str     x2, [x17]
    stp     x4, x5, [x3]
    stp     x6, x16, [x3, #16]
    mov     x0, x6
    ret
