//! The EL3 secure monitor: the first code to run after reset.
//!
//! It finds the board in the device tree, brings the secondary CPUs into
//! its holding pen where the SoC keeps them in reset, configures the secure
//! world so that a Non-secure hypervisor owns the machine, verifies the
//! firmware package (after it in flash, or where the board's loader put
//! it), copies the hypervisor (and the package's guest-stub, Linux guest and
//! command lines, for it) into Non-secure RAM and enters it at EL2 with
//! `x0` = DTB and `x1` = the handoff record.
//! Afterwards it serves SMCs: SMCCC, PSCI (CPU power, system off/reset) and
//! our SiP call.
#![no_std]
#![no_main]

mod boot;
mod ea;
mod exceptions;
mod loader;
mod pci;
mod power;
mod psci;
mod release;
mod secure;
mod smc;
mod stack;
mod state;

use platform::board::Board;
use platform::handoff::PhysRange;
use platform::serial::Serial;

/// Boot CPU entry from `boot.S`, on slot 0's stack.
///
/// It never returns, so whatever the compiler inlines into it stays on the
/// boot CPU's stack for good: each phase below is a function of its own
/// that is not inlined, whose frame is gone once it is done. (Inlined, they
/// took 11.6 KiB of the 16, and the stack overflowed in `pci::init`;
/// [`stack`] now catches that.)
#[no_mangle]
extern "C" fn monitor_main(dtb_hint: usize) -> ! {
    stack::arm();
    let dtb = choose_dtb(dtb_hint);
    let board = read_board(dtb);
    bring_up(board);
    shim_devices(board, dtb);
    enter_hypervisor(board, dtb)
}

/// The board description from the DTB at `dtb`, and the console it names.
#[inline(never)]
fn read_board(dtb: usize) -> &'static Board {
    // SAFETY: `choose_dtb` returned the address of a readable FDT header;
    // `from_ptr` bounds every further read by the header's size.
    let board = match unsafe { Board::from_ptr(dtb as *const u8) } {
        Ok(board) => state::set_board(board),
        Err(e) => {
            platform::console::init("el3-monitor", boot::early_uart());
            platform::console::init_logger(log::LevelFilter::Info);
            power::fatal(format_args!("cannot read the device tree at {dtb:#x}: {e}"));
        }
    };
    init_console(board);
    log::info!(
        "v{} at {}, {} CPU(s), DTB at {dtb:#x}",
        env!("CARGO_PKG_VERSION"),
        platform::arch::current_el(),
        board.cpus.len()
    );
    board
}

/// The checks on the board and this CPU, the secure set-up of the boot
/// CPU and the GIC, and the CPU table the others wait for.
#[inline(never)]
fn bring_up(board: &'static Board) {
    if board.console.is_none() {
        power::fatal(format_args!(
            "the device tree names no Non-secure console (/chosen/stdout-path to a UART the firmware drives): \
             the hypervisor and its guest have nowhere to print"
        ));
    }
    if board.cpus.len() > platform::arch::stack_count() {
        power::fatal(format_args!(
            "the device tree lists {} CPUs; this monitor image has stacks for {} (STACK_COUNT in its memory file)",
            board.cpus.len(),
            platform::arch::stack_count()
        ));
    }
    let boot_mpidr = platform::arch::this_cpu_mpidr();
    if board.cpu_index(boot_mpidr).is_none() {
        power::fatal(format_args!(
            "the boot CPU (MPIDR {:#x}) is not among the device tree's /cpus",
            boot_mpidr & platform::board::MPIDR_AFFINITY_MASK
        ));
    }
    let slots = state::set_slots(boot_mpidr, board.cpus.as_slice());
    if let Err(e) = secure::check_cpu() {
        power::fatal(format_args!("{e}"));
    }
    release::release_secondaries(board, slots);
    secure::init_cpu(board);
    if let Err(e) = secure::init_gic_distributor(board) {
        power::fatal(format_args!("interrupt controller: {e}"));
    }
    init_gic_for(board, boot_mpidr);
    psci::boot_cpu_is_on();
    boot::publish_cpus(slots);
}

/// The PCI shim's functions, from the devices the DTB names.
#[inline(never)]
fn shim_devices(board: &'static Board, dtb: usize) {
    // SAFETY: the DTB `Board::from_ptr` read, `dtb_size` bytes long.
    let dtb_bytes = unsafe { core::slice::from_raw_parts(dtb as *const u8, board.dtb_size()) };
    pci::init(dtb_bytes, board);
}

/// Verifies the package, loads the hypervisor and enters it.
#[inline(never)]
fn enter_hypervisor(board: &'static Board, dtb: usize) -> ! {
    let package = match loader::find_package(board, boot::package_start()) {
        Ok(package) => package,
        Err(e) => power::fatal(format_args!("{e}")),
    };
    let dtb_range = PhysRange { base: dtb as u64, size: board.dtb_size() as u64 };
    let loaded = match loader::load(board, &package, dtb_range) {
        Ok(loaded) => loaded,
        Err(e) => power::fatal(format_args!("{e}")),
    };
    for (what, copy) in loaded.data.named().into_iter().filter(|(_, copy)| copy.size != 0) {
        log::info!("package's {what} ({:#x} bytes) copied to PA {:#x} for the hypervisor", copy.size, copy.base);
    }
    log::info!(
        "package verified; hypervisor at PA {:#x}..{:#x}, entering EL2",
        loaded.hypervisor.base,
        loaded.hypervisor.end()
    );
    stack::check(0);
    // From here the Non-secure console belongs to the hypervisor.
    platform::console::set_mirror(None);
    // SAFETY: the loader copied and synchronised the hypervisor at `entry`;
    // `secure::init_cpu` configured EL3 for a Non-secure EL2.
    unsafe { boot::eret_to_el2(loaded.entry, dtb as u64, loaded.handoff) }
}

/// Secondary CPU entry from `boot.S` (and after `CPU_OFF`), on its own
/// stack: waits for `CPU_ON`, then enters EL2.
#[no_mangle]
extern "C" fn monitor_secondary_main(slot: usize) -> ! {
    let (entry, context) = psci::park_until_on(slot);
    let board = state::board();
    secure::init_cpu(board);
    if let Some(mpidr) = state::mpidr_of(slot) {
        init_gic_for(board, mpidr);
    }
    stack::check(slot);
    // SAFETY: the entry point was validated by CPU_ON as Non-secure RAM the
    // hypervisor owns; EL3 is configured for a Non-secure EL2.
    unsafe { boot::eret_to_el2(entry, context, 0) }
}

fn init_gic_for(board: &Board, mpidr: u64) {
    let Some(index) = board.cpu_index(mpidr) else {
        log::warn!("CPU {mpidr:#x} is not in the DTB: its GIC redistributor is left alone");
        return;
    };
    if let Err(e) = secure::init_gic_cpu(board, index) {
        power::fatal(format_args!("GIC redistributor of CPU {mpidr:#x}: {e}"));
    }
}

/// The DTB from the reset registers if it holds one, else where the board
/// puts it.
fn choose_dtb(hint: usize) -> usize {
    const FDT_MAGIC: u32 = 0xd00d_feed;
    let has_fdt = |addr: usize| {
        if addr == 0 || !addr.is_multiple_of(8) {
            return false;
        }
        // SAFETY: both candidates are RAM addresses the board defines (the
        // previous stage's pointer or the linker memory file's fallback).
        let magic = unsafe { (addr as *const u32).read_volatile() };
        u32::from_be(magic) == FDT_MAGIC
    };
    if has_fdt(hint) {
        hint
    } else {
        boot::dtb_fallback()
    }
}

/// Console on the Secure UART, mirrored to the Non-secure console until the
/// hypervisor takes over (on QEMU only the latter is usually visible).
fn init_console(board: &Board) {
    // SAFETY: the UART windows come from the board description, each with
    // its model; EL3 reaches them with its MMU off, and EL2 is not running
    // yet, so the Non-secure one is ours too.
    let serial = |u: platform::board::Uart| unsafe { Serial::new(u.kind, u.base as usize) };
    let secure = board.secure_console.map(serial);
    let normal = board.console.map(serial);
    let primary = secure.or(normal).unwrap_or_else(boot::early_uart);
    platform::console::init("el3-monitor", primary);
    if let (Some(_), Some(mirror)) = (secure, normal) {
        platform::console::set_mirror(Some(mirror));
    }
    platform::console::init_logger(log::LevelFilter::Info);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    platform::console::enter_panic();
    power::fatal(format_args!("panic: {info}"))
}
