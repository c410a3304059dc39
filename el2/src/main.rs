//! The hypervisor: runs at EL2 below the secure monitor and above one guest.
//!
//! The monitor enters `image_entry` (boot.S) with `x0` = the DTB and `x1` =
//! the handoff record. The boot CPU describes the board from the DTB,
//! starts its console, splits free RAM into heap and guest RAM, builds the
//! guest's stage-2 tables and device tree, brings the other CPUs up at EL2,
//! and enters the guest at EL1. From then on it runs only when the guest
//! traps: calls, stage-2 faults.
#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod cmdline;
mod cpu;
mod exceptions;
mod guest;
mod hvc;
mod memory;
mod power;
mod selftest;
mod smp;
mod stage2;

use aarch64_cpu::registers::{Readable, ID_AA64MMFR1_EL1};
use platform::arch::regs::ID_AA64MMFR1_VH;
use platform::board::{Board, MemRegion};
use platform::cmdline::{Mode, Remap};
use platform::handoff::Handoff;
use platform::pl011::Pl011;

/// Boot CPU entry from `boot.S`.
#[no_mangle]
extern "C" fn hv_primary_main(dtb: usize, handoff: usize) -> ! {
    // SAFETY: the monitor passes the DTB it verified; `from_ptr` bounds
    // every read by the header's size.
    let board = match unsafe { Board::from_ptr(dtb as *const u8) } {
        Ok(board) => board,
        Err(e) => power::fatal(format_args!("cannot read the device tree at {dtb:#x}: {e}")),
    };
    if let Some(uart) = board.console {
        // SAFETY: the Non-secure console from the DTB; EL2 runs with its MMU
        // off and the monitor stopped using this UART before entering us.
        platform::console::init("el2", unsafe { Pl011::new(uart.base as usize) });
    }
    platform::console::init_logger(log::LevelFilter::Info);
    let cmdline = cmdline::read(&board);

    // SAFETY: the monitor placed the record at `handoff` in the block it
    // reserved for us; it is read once, by value.
    let handoff: Handoff = unsafe { core::ptr::read_volatile(handoff as *const Handoff) };
    if let Err(e) = handoff.validate() {
        power::fatal(format_args!("{e}"));
    }
    let vhe = ID_AA64MMFR1_VH.present(ID_AA64MMFR1_EL1.get());
    log::info!(
        "v{} at {}: loaded at PA {:#x}, linked at VA 0x0 (position-independent), mode=nvhe with MMU off (VHE {}available)",
        env!("CARGO_PKG_VERSION"),
        platform::arch::current_el(),
        boot::load_address(),
        if vhe { "" } else { "not " },
    );

    log::info!("command line: `{}`", cmdline.text);
    if cmdline.mode == Mode::Vhe || cmdline.remap == Remap::Fault {
        log::warn!("mode=vhe and remap=fault are not implemented yet: running nvhe with the MMU off");
    }

    let plan = match memory::plan(&board, &handoff) {
        Ok(plan) => plan,
        Err(e) => power::fatal(format_args!("{e}")),
    };
    // SAFETY: the plan's heap lies in free RAM nobody else uses; once only.
    unsafe { memory::init_heap(plan.heap) };
    log::info!("heap {}, guest RAM {}", plan.heap, plan.guest_ram);

    let console_window: Option<MemRegion> = board.console.map(|u| MemRegion::new(u.base, u.size));
    if let Err(e) = stage2::build(plan.guest_ram, console_window.as_slice()) {
        power::fatal(format_args!("{e}"));
    }

    let boot_mpidr = platform::arch::this_cpu_mpidr();
    let online = smp::start_secondaries(board.cpus.as_slice(), boot_mpidr);
    log::info!("{online}/{} CPUs online at EL2", board.cpus.len());
    if online != board.cpus.len() {
        power::fatal(format_args!("only {online} of {} CPUs came up", board.cpus.len()));
    }

    if let Some(which) = cmdline.selftest {
        selftest::run(which, &board);
    }

    let stub_args: alloc::vec::Vec<&str> = cmdline.guest_stub_words().collect();
    let dtb = match guest::device_tree(plan.guest_ram, board.console, &stub_args.join(" ")) {
        Ok(dtb) => dtb,
        Err(e) => power::fatal(format_args!("{e}")),
    };
    let frame = match guest::load(plan.guest_ram, &handoff.guest_stub, &dtb) {
        Ok(frame) => frame,
        Err(e) => power::fatal(format_args!("{e}")),
    };
    cpu::init(0);
    stage2::activate_on_this_cpu();
    log::info!("entering guest-stub at IPA {:#x} (EL1), DTB at IPA {:#x}", frame.elr, frame.x[0]);
    // SAFETY: the guest image and DTB are in guest RAM, which stage 2 maps;
    // traps and stage 2 are configured on this CPU.
    unsafe { boot::run(&frame) }
}

/// Secondary CPU entry from `boot.S`, on its own stack.
#[no_mangle]
extern "C" fn hv_secondary_main(slot: usize) -> ! {
    log::info!(
        "CPU {slot} (MPIDR {:#x}) online at {}",
        platform::arch::this_cpu_mpidr(),
        platform::arch::current_el()
    );
    smp::check_in();
    smp::secondary_idle(slot)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    platform::console::enter_panic();
    power::fatal(format_args!("panic: {info}"))
}
