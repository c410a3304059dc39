//! Reset entry, per-CPU stacks and the CPU table secondaries wait on.
//!
//! Every CPU enters at `image_entry` in flash. Secondary CPUs must not touch
//! memory the boot CPU is about to initialise, so they only poll
//! [`CpuTable`], which lives in `.noinit` and is declared valid by a magic
//! word the boot CPU writes last.

use core::sync::atomic::{AtomicU64, Ordering};
use platform::arch::regs::{MPIDR_AFFINITY_MASK, SCTLR_EL23_RES1, SCTLR_I, SCTLR_SA, SPSR_DAIF, SPSR_M_EL2H};
use platform::board::MAX_CPUS;

/// The EL3 system-control value at reset: MMU and data cache off,
/// instruction cache on, stack-alignment check on.
const SCTLR_BOOT: u64 = SCTLR_EL23_RES1 | SCTLR_I | SCTLR_SA;
/// "CPUTABLE": the table's contents are valid.
const CPU_TABLE_READY: u64 = u64::from_le_bytes(*b"CPUTABLE");

core::arch::global_asm!(
    include_str!("boot.S"),
    SCTLR_BOOT = const SCTLR_BOOT,
    MPIDR_AFFINITY_MASK = const MPIDR_AFFINITY_MASK,
    CPU_TABLE_READY = const CPU_TABLE_READY,
    SPSR_EL2H = const (SPSR_M_EL2H | SPSR_DAIF),
);

/// The MPIDRs of the CPUs the DTB lists, in DTB order: a CPU's index here is
/// its stack and its PSCI state slot. Layout is shared with boot.S.
#[repr(C)]
pub struct CpuTable {
    ready: AtomicU64,
    count: AtomicU64,
    mpidr: [AtomicU64; MAX_CPUS],
}

#[no_mangle]
#[link_section = ".noinit.cpu_table"]
static CPU_TABLE: CpuTable =
    CpuTable { ready: AtomicU64::new(0), count: AtomicU64::new(0), mpidr: [const { AtomicU64::new(0) }; MAX_CPUS] };

/// Publishes the CPU list and wakes the secondaries so they can find their
/// stacks. Called once by the boot CPU.
pub fn publish_cpus(mpidrs: &[u64]) {
    for (slot, mpidr) in CPU_TABLE.mpidr.iter().zip(mpidrs) {
        slot.store(*mpidr, Ordering::Relaxed);
    }
    CPU_TABLE.count.store(mpidrs.len().min(MAX_CPUS) as u64, Ordering::Relaxed);
    CPU_TABLE.ready.store(CPU_TABLE_READY, Ordering::Release);
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISH);
    aarch64_cpu::asm::sev();
}

extern "C" {
    fn enter_el2(entry: u64, x0: u64, x1: u64) -> !;
    fn monitor_park(cpu: usize) -> !;
    static __board_dtb_fallback: u8;
    static __board_early_uart: u8;
    static __text_end: u8;
}

/// Leaves EL3 for Non-secure EL2 at `entry` with `x0` and `x1` set.
///
/// # Safety
///
/// `entry` must be code the caller has placed in Non-secure memory and
/// synchronised with the instruction stream, and the EL3 state
/// (`SCR_EL3` and friends) must be set up for a Non-secure EL2.
pub unsafe fn eret_to_el2(entry: u64, x0: u64, x1: u64) -> ! {
    // SAFETY: forwarded from this function's contract.
    unsafe { enter_el2(entry, x0, x1) }
}

/// Parks this CPU (index `cpu`) until the next `CPU_ON`, dropping its stack.
pub fn park(cpu: usize) -> ! {
    // SAFETY: `monitor_park` resets SP to `cpu`'s own stack top; nothing on
    // the current stack is used again.
    unsafe { monitor_park(cpu) }
}

/// Where QEMU leaves the DTB for firmware (from the linker memory file).
pub fn dtb_fallback() -> usize {
    core::ptr::addr_of!(__board_dtb_fallback) as usize
}

/// The console to use if no DTB can be read.
pub fn early_uart() -> usize {
    core::ptr::addr_of!(__board_early_uart) as usize
}

/// End of the monitor's bytes in flash; the firmware package follows at the
/// next `PACKAGE_ALIGN` boundary.
pub fn flash_image_end() -> usize {
    core::ptr::addr_of!(__text_end) as usize
}
