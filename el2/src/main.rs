//! The hypervisor: runs at EL2 below the secure monitor and above one guest.
//!
//! The monitor enters `image_entry` (boot.S) at our load PA with `x0` = the
//! DTB and `x1` = the handoff record. Stage 1 ([`early`]) reads the board
//! and the command line, plans memory, builds the EL2 translation tables and
//! the switch plan; the switch (`switch.S`) relocates the image for its
//! virtual address and turns the MMU on through the chosen remap path. At
//! the VA, [`hv_main`] starts the console, the heap and stage 2, brings the
//! other CPUs up and enters the guest at EL1. From then on the hypervisor
//! runs only when the guest traps.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot;
mod irq;
mod mm;
mod traps;
mod vm;

use platform::board::MemRegion;
use platform::cmdline::Remap;
use platform::esr::Esr;
use platform::pl011::Pl011;

/// Distance from the end of guest RAM to the emulated test device.
const TEST_DEVICE_GAP: u64 = 0x10_0000;

/// Boot CPU, at the VA, on the final tables (from `switch.S`).
#[no_mangle]
extern "C" fn hv_main() -> ! {
    let info = boot::early::boot_info();
    let board = &info.board;
    if let Some(uart) = board.console {
        // SAFETY: the Non-secure console's window, mapped as device memory
        // in the direct map; the monitor stopped using this UART before
        // entering us.
        platform::console::init("el2", unsafe { Pl011::new(mm::layout::phys_to_virt(uart.base) as usize) });
    }
    platform::console::init_logger(log::LevelFilter::Info);
    let cmdline = boot::cmdline::parse(true);
    log::set_max_level(cmdline.log.filter());

    log::info!(
        "v{} at {}: mode={} remap={} el2-va-bits={} el0-va-bits={} load-pa={:#x} link-va={:#x} va={:#x}",
        env!("CARGO_PKG_VERSION"),
        platform::arch::current_el(),
        info.scheme.name(),
        match info.remap {
            Remap::Intermediate => "intermediate",
            Remap::Fault => "fault",
        },
        mm::layout::EL2_VA_BITS,
        mm::layout::EL0_VA_BITS,
        boot::switch::image_pa(),
        mm::layout::LINK_VA,
        info.scheme.image_va(),
    );
    log::info!("command line ({}): `{}`", boot::cmdline::source().describe(), cmdline.text);
    mm::integrity::record();
    if info.vhe_unavailable {
        log::warn!("mode=vhe: this CPU has no VHE (ID_AA64MMFR1_EL1.VH = 0), using mode=nvhe");
    }
    if info.remap == Remap::Fault {
        let (esr, elr) = boot::switch::remap_fault();
        log::info!(
            "remap=fault: the first fetch after MMU-on, at PA {elr:#x}, faulted ({}) and resumed at the VA",
            Esr(esr)
        );
    }

    // SAFETY: the plan's heap lies in free RAM nobody else uses, inside the
    // direct map; once only.
    unsafe { mm::memory::init_heap(info.plan.heap) };
    log::info!("heap {}, guest RAM {}", info.plan.heap, info.plan.guest_ram);

    if let Err(e) = irq::gic::init(board) {
        arch::power::fatal(format_args!("{e}"));
    }
    irq::init(board);
    vm::vgic::note_interrupts(board);
    irq::init_this_cpu(board);
    log::info!(
        "GIC v3 at {:#x}; counter at {} kHz; tick {} ms, lockup watchdog {} ms (PNMI)",
        board.gic.distributor.base,
        aarch64_cpu::registers::Readable::get(&aarch64_cpu::registers::CNTFRQ_EL0) / 1000,
        irq::pnmi::TICK_US / 1000,
        irq::pnmi::TICK_US * irq::pnmi::WATCHDOG_TICKS / 1000
    );

    let console_window: Option<MemRegion> = board.console.map(|u| MemRegion::new(u.base, u.size));
    // The emulated test device sits in a hole 1 MiB past guest RAM (the
    // first byte past RAM stays a plain hole).
    let test_device = match vm::mmio::add_test_device(info.plan.guest_ram.end() + TEST_DEVICE_GAP) {
        Ok((base, size)) => MemRegion::new(base, size),
        Err(e) => arch::power::fatal(format_args!("MMIO test device: {e:?}")),
    };
    // The PCI host bridge: an emulated ECAM window after the test device,
    // and the shim functions' BAR windows passed through.
    let ecam_window =
        MemRegion::new(test_device.end().next_multiple_of(vm::ecam::BUS_SIZE), vm::ecam::BUSES * vm::ecam::BUS_SIZE);
    if let Err(e) = vm::mmio::add_device(ecam_window.base, ecam_window.size, alloc::boxed::Box::new(vm::ecam::Ecam)) {
        arch::power::fatal(format_args!("ECAM window: {e:?}"));
    }
    let functions = vm::ecam::enumerate();
    let bars: alloc::vec::Vec<MemRegion> = functions.iter().map(|&(_, window)| window).collect();
    log::info!("PCI: ECAM window {ecam_window}, {} function(s) behind it", bars.len());
    let passthrough: alloc::vec::Vec<MemRegion> = console_window.into_iter().chain(bars.iter().copied()).collect();
    if let Err(e) = mm::stage2::build(info.plan.guest_ram, &passthrough, ecam_window.end()) {
        arch::power::fatal(format_args!("{e}"));
    }

    let boot_mpidr = platform::arch::this_cpu_mpidr();
    let online = boot::smp::start_secondaries(board.cpus.as_slice(), boot_mpidr);
    log::info!("{online}/{} CPUs online at EL2", board.cpus.len());
    if online != board.cpus.len() {
        arch::power::refuse(format_args!(
            "only {online} of the {} CPUs in the device tree came up (does every /cpus reg name a CPU this machine has?)",
            board.cpus.len()
        ));
    }

    if let Some(which) = cmdline.selftest {
        boot::selftest::run(which, board);
    }

    // The guest: one vCPU per CPU, pinned, with that CPU's affinity.
    vm::vcpu::set_count(online);
    let mpidrs: alloc::vec::Vec<u64> = (0..online).map(boot::smp::mpidr_of).collect();
    let guest_gic = match vm::vgic::init(board, &mpidrs) {
        Ok(frames) => frames,
        Err(e) => arch::power::fatal(format_args!("guest GIC: {e:?}")),
    };
    // Stage 2 follows the PCI functions' BARs; a moved window must not
    // cover anything else the guest has.
    let taken = [info.plan.guest_ram, test_device, ecam_window, guest_gic.distributor, guest_gic.redistributors];
    vm::ecam::follow_bars(&functions, taken.into_iter().chain(console_window).collect());
    // The console's interrupt goes to the guest with the console.
    let console_irq = info.console_irq.map(|irq| irq.intid).filter(|_| board.console.is_some());
    if let Some(intid) = console_irq {
        vm::vgic::add_passthrough_spi(intid);
    }
    // The PCI functions' interrupts go to the guest too (interrupt-map).
    let pci_interrupts = vm::ecam::interrupts();
    for intx in &pci_interrupts {
        vm::vgic::add_passthrough_spi(intx.intid);
    }
    let linux = match vm::linux::load(board.fw_cfg, info.plan.guest_ram) {
        Ok(linux) => linux,
        Err(e) => arch::power::refuse(format_args!("{e}")),
    };
    let stub_args: alloc::vec::Vec<&str> = cmdline.guest_stub_words().collect();
    let mut hardware = vm::guest::Hardware {
        ram: info.plan.guest_ram,
        console: board.console,
        test_device,
        ecam: ecam_window,
        bars: &bars,
        gic: guest_gic,
        timer: board.timer,
        vcpus: &mpidrs,
        console_irq,
        initrd: None,
        pci_interrupts: &pci_interrupts,
    };
    if let Some(linux) = linux {
        let p = linux.placement;
        hardware.initrd = p.initrd;
        let dtb = match vm::guest::device_tree(&hardware, &linux.cmdline) {
            Ok(dtb) => dtb,
            Err(e) => arch::power::fatal(format_args!("{e}")),
        };
        if let Err(e) = vm::guest::write_dtb(p.dtb.base, &dtb) {
            arch::power::fatal(format_args!("{e}"));
        }
        log::info!(
            "entering Linux at IPA {:#x} (EL1) on {online} vCPU(s): kernel {:#x} bytes, initrd {}, DTB at IPA {:#x}, command line `{}`",
            p.kernel.base,
            linux.kernel_size,
            p.initrd.map_or(alloc::string::String::from("none"), |r| alloc::format!("{r}")),
            p.dtb.base,
            linux.cmdline
        );
        vm::vcpu::enter(0, p.kernel.base, p.dtb.base)
    }
    let dtb = match vm::guest::device_tree(&hardware, &stub_args.join(" ")) {
        Ok(dtb) => dtb,
        Err(e) => arch::power::fatal(format_args!("{e}")),
    };
    let frame = match vm::guest::load(info.plan.guest_ram, &info.handoff.guest_stub, &dtb) {
        Ok(frame) => frame,
        Err(e) => arch::power::fatal(format_args!("{e}")),
    };
    log::info!("entering guest-stub at IPA {:#x} (EL1) on {online} vCPU(s), DTB at IPA {:#x}", frame.elr, frame.x[0]);
    vm::vcpu::enter(0, frame.elr, frame.x[0])
}

/// Secondary CPUs, at the VA, on their own stacks (from `switch.S`).
#[no_mangle]
extern "C" fn hv_secondary_main(slot: usize) -> ! {
    log::info!(
        "CPU {slot} (MPIDR {:#x}) online at {} (mode={})",
        platform::arch::this_cpu_mpidr(),
        platform::arch::current_el(),
        mm::layout::scheme().name()
    );
    irq::init_this_cpu(&boot::early::boot_info().board);
    boot::smp::check_in();
    boot::smp::secondary_idle(slot)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    platform::console::enter_panic();
    arch::power::fatal(format_args!("panic: {info}"))
}
