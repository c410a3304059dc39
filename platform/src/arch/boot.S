// Boot helpers shared by all three images. They run before any stack
// exists (and, for the position-independent images, before relocation), so
// they use only x0-x17, PC-relative addressing and literal-pool constants
// that need no relocation. Every image is linked with linker/sections.ld,
// which defines the symbols used here.

.section .text.platform_boot, "ax"

// platform_init_image() -> x0 = 0, or the r_info of a relocation this image
// must not carry.
// Makes the image's memory what the program expects where it runs now:
// applies the R_AARCH64_RELATIVE relocations of a position-independent
// image against its current address (the monitor has none), copies .data
// from its load address (a no-op where it already runs from there), zeroes
// .bss.
.global platform_init_image
platform_init_image:
    mov     x17, x30
    adrp    x0, __image_base
    add     x0, x0, :lo12:__image_base
    ldr     x1, =__image_link_address
    sub     x0, x0, x1
    mov     x1, x0
    bl      platform_apply_relocations
    mov     x30, x17
    cbnz    x0, 9f

1:  adrp    x0, __data_start
    add     x0, x0, :lo12:__data_start
    adrp    x1, __data_lma
    add     x1, x1, :lo12:__data_lma
    adrp    x2, __data_end
    add     x2, x2, :lo12:__data_end
    cmp     x0, x1
    b.eq    3f
2:  cmp     x0, x2
    b.hs    3f
    ldp     x9, x10, [x1], #16
    stp     x9, x10, [x0], #16
    b       2b

3:  adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
4:  cmp     x0, x1
    b.hs    5f
    stp     xzr, xzr, [x0], #16
    b       4b
5:  mov     x0, #0
9:  ret

// platform_apply_relocations(x0 = where the image is now - its link address,
//                            x1 = where it will run - its link address)
//   -> x0 = 0, or the r_info of a relocation that is not R_AARCH64_RELATIVE.
// Writes addend + x1 into each relocated word (found at r_offset + x0).
// The two displacements differ when an image prepares, before its MMU is
// on, to run at a virtual address; all arithmetic is modulo 2^64.
// Uses x0-x2, x9-x12.
.global platform_apply_relocations
platform_apply_relocations:
    adrp    x9, __rela_start
    add     x9, x9, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
0:  cmp     x9, x2
    b.hs    1f
    ldp     x10, x11, [x9], #16             // r_offset, r_info
    ldr     x12, [x9], #8                   // r_addend
    cmp     x11, #{R_AARCH64_RELATIVE}
    b.ne    2f
    add     x12, x12, x1
    str     x12, [x0, x10]
    b       0b
1:  mov     x0, #0
    ret
2:  mov     x0, x11
    ret

// platform_cpu_stack_top(x0 = slot) -> x0 = the top of that slot's stack, or
// 0 if the image has no stack for it. Uses x0-x2.
.global platform_cpu_stack_top
platform_cpu_stack_top:
    ldr     x1, =__stack_count
    cmp     x0, x1
    b.hs    1f
    ldr     x1, =__stack_size
    add     x0, x0, #1
    mul     x0, x0, x1
    adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    add     x0, x0, x1
    ret
1:  mov     x0, #0
    ret

// platform_stack_size() -> x0 = the bytes of each CPU slot's stack.
.global platform_stack_size
platform_stack_size:
    ldr     x0, =__stack_size
    ret

// platform_stack_count() -> x0 = how many CPU slots have a stack.
.global platform_stack_count
platform_stack_count:
    ldr     x0, =__stack_count
    ret
.ltorg
