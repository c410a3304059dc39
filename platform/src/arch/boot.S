// Leaf boot helpers shared by all three images. They run before any stack
// exists (and, for the position-independent images, before relocation), so
// they touch only the argument and temporary registers x0-x17 and use only
// PC-relative addressing.

.section .text.platform_boot, "ax"

// platform_apply_relocations(x0 = runtime address of link address 0,
//                            x1 = start of .rela.dyn, x2 = end of .rela.dyn)
// Applies R_AARCH64_RELATIVE relocations: *(base + offset) = base + addend.
// Returns x0 = 0 on success, or the offending r_info if the image carries a
// relocation of any other type (the caller must not go on in that case).
.global platform_apply_relocations
platform_apply_relocations:
0:  cmp     x1, x2
    b.hs    2f
    ldp     x9, x10, [x1], #16          // r_offset, r_info
    ldr     x11, [x1], #8               // r_addend
    cmp     x10, #{R_AARCH64_RELATIVE}
    b.ne    1f
    add     x11, x11, x0
    str     x11, [x0, x9]
    b       0b
1:  mov     x0, x10
    ret
2:  mov     x0, #0
    ret

// platform_zero(x0 = start, x1 = end): zeroes [start, end); both 16-aligned.
.global platform_zero
platform_zero:
0:  cmp     x0, x1
    b.hs    1f
    stp     xzr, xzr, [x0], #16
    b       0b
1:  ret

// platform_copy(x0 = destination, x1 = source, x2 = destination end):
// copies 16-byte aligned blocks, e.g. .data from its load address in flash.
.global platform_copy
platform_copy:
    cmp     x0, x1
    b.eq    1f
0:  cmp     x0, x2
    b.hs    1f
    ldp     x9, x10, [x1], #16
    stp     x9, x10, [x0], #16
    b       0b
1:  ret
