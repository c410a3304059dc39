//! Reset entry, per-CPU stacks, the CPU table secondaries wait on, and the
//! board facts the monitor is linked against (its memory file in
//! `linker/`).
//!
//! Every CPU enters at `image_entry`. Secondary CPUs must not touch memory
//! the boot CPU is about to initialise, so they only poll [`CpuTable`],
//! which lives in `.noinit` and is declared valid by a magic word the boot
//! CPU writes last, after counting themselves in [`CPUS_ARRIVED`].

use core::sync::atomic::{AtomicU64, Ordering};
use platform::arch::regs::{MPIDR_AFFINITY_MASK, SCTLR_EL23_RES1, SCTLR_I, SCTLR_SA, SPSR_DAIF, SPSR_M_EL2H};
use platform::board::{UartKind, MAX_CPUS};
use platform::serial::Serial;

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

/// How many secondary CPUs have entered `image_entry` since the boot CPU
/// last reset the count ([`reset_arrivals`]). In `.noinit`: on boards
/// whose CPUs all leave reset together they count themselves in before the
/// boot CPU has initialised memory (and nobody reads the count there).
#[no_mangle]
#[link_section = ".noinit.cpus_arrived"]
static CPUS_ARRIVED: AtomicU64 = AtomicU64::new(0);

/// Starts a new count of secondary CPUs entering the monitor, before the
/// boot CPU releases some.
pub fn reset_arrivals() {
    CPUS_ARRIVED.store(0, Ordering::Release);
}

/// Secondary CPUs that entered the monitor since [`reset_arrivals`].
pub fn arrivals() -> u64 {
    CPUS_ARRIVED.load(Ordering::Acquire)
}

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
    fn image_entry();
    fn enter_el2(entry: u64, x0: u64, x1: u64) -> !;
    fn monitor_park(cpu: usize) -> !;
    static __board_dtb_fallback: u8;
    static __board_early_uart: u8;
    static __board_early_uart_kind: u8;
    static __board_package: u8;
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

/// Where every CPU enters the monitor: what a released CPU's reset vector
/// is set to.
pub fn entry_point() -> u64 {
    image_entry as *const () as usize as u64
}

/// Where the board leaves the DTB for firmware (from the linker memory
/// file).
pub fn dtb_fallback() -> usize {
    core::ptr::addr_of!(__board_dtb_fallback) as usize
}

/// The console to use if no DTB can be read.
pub fn early_uart() -> Serial {
    let kind = match core::ptr::addr_of!(__board_early_uart_kind) as usize {
        2 => UartKind::Cadence,
        _ => UartKind::Pl011,
    };
    // SAFETY: the board's documented fallback console from the linker
    // memory file, reached with the EL3 MMU off.
    unsafe { Serial::new(kind, core::ptr::addr_of!(__board_early_uart) as usize) }
}

/// Where the firmware package starts, at or after this address at the next
/// `PACKAGE_ALIGN` boundary: right after the monitor's bytes in flash on
/// virt, where the board's loader put it elsewhere (the memory file says).
pub fn package_start() -> u64 {
    core::ptr::addr_of!(__board_package) as usize as u64
}
