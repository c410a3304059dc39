// Reset entry of the EL3 monitor, executing in place from where the board
// put it (virt: Secure flash; zcu102: on-chip memory).
//
// Every CPU starts here: on virt all of them at reset, on boards that hold
// the secondaries in reset when the boot CPU releases them (release.rs).
// The boot CPU (affinity 0) initialises memory and runs monitor_main. The
// others count themselves in, wait until the boot CPU has published the
// CPU table, look up their index in it, take that index's stack and run
// monitor_secondary_main, which parks them until PSCI CPU_ON.

.section .text.entry, "ax"
.global image_entry
image_entry:
    mov     x19, x0                         // a DTB pointer from an earlier stage, or 0
    ldr     x1, ={SCTLR_BOOT}
    msr     sctlr_el3, x1
    isb
    mrs     x20, mpidr_el1
    ldr     x1, ={MPIDR_AFFINITY_MASK}
    and     x20, x20, x1
    cbnz    x20, secondary_wait

    // Boot CPU: .data from flash to SRAM, .bss zeroed.
    bl      platform_init_image
    mov     x0, #0
    bl      set_cpu_stack_and_vectors
    mov     x0, x19
    bl      monitor_main                   // does not return

// Counts this CPU in (CPUS_ARRIVED, for a boot CPU that released it),
// waits for the boot CPU to publish CPU_TABLE, then finds this CPU in it.
// The table is checked before each wait: a CPU released after the boot
// CPU's last SEV must not sleep through it.
secondary_wait:
    adrp    x2, CPUS_ARRIVED
    add     x2, x2, :lo12:CPUS_ARRIVED
0:  ldaxr   x3, [x2]
    add     x3, x3, #1
    stlxr   w4, x3, [x2]
    cbnz    w4, 0b
    sev
    adrp    x2, CPU_TABLE
    add     x2, x2, :lo12:CPU_TABLE
    ldr     x3, ={CPU_TABLE_READY}
    b       5f
1:  wfe
5:  ldar    x4, [x2]                        // CPU_TABLE.ready
    cmp     x4, x3
    b.ne    1b
    ldr     x5, [x2, #8]                    // CPU_TABLE.count
    add     x6, x2, #16                     // CPU_TABLE.mpidr[0]
    mov     x0, #0
2:  cmp     x0, x5
    b.hs    3f                              // not listed: never used
    ldr     x7, [x6, x0, lsl #3]
    cmp     x7, x20
    b.eq    4f
    add     x0, x0, #1
    b       2b
3:  wfe
    b       3b
4:  mov     x19, x0
    bl      set_cpu_stack_and_vectors
    mov     x0, x19
    b       monitor_secondary_main          // does not return

// monitor_park(x0 = cpu index): abandons the current stack and parks the CPU
// in monitor_secondary_main (PSCI CPU_OFF).
.global monitor_park
monitor_park:
    mov     x19, x0
    bl      set_cpu_stack_and_vectors
    mov     x0, x19
    b       monitor_secondary_main

// set_cpu_stack_and_vectors(x0 = cpu index): SP = top of that CPU's stack,
// VBAR_EL3 = the monitor's vectors. Clobbers x0-x3. (Slots come from the
// CPU table, which never holds more than STACK_COUNT CPUs.)
set_cpu_stack_and_vectors:
    mov     x3, x30
    bl      platform_cpu_stack_top
    mov     sp, x0
    adrp    x1, monitor_vectors
    add     x1, x1, :lo12:monitor_vectors
    msr     vbar_el3, x1
    isb
    ret     x3

// enter_el2(x0 = entry, x1 = x0 for EL2, x2 = x1 for EL2): drops to
// Non-secure EL2h with DAIF masked.
.global enter_el2
enter_el2:
    msr     elr_el3, x0
    ldr     x3, ={SPSR_EL2H}
    msr     spsr_el3, x3
    mov     x0, x1
    mov     x1, x2
    mov     x2, xzr
    mov     x3, xzr
    eret
.ltorg
