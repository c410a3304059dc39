//! The hypervisor: runs at EL2 below the secure monitor and above its VMs.
//!
//! The monitor enters `image_entry` (`boot/entry.S`) at our load PA with
//! `x0` = the DTB and `x1` = the handoff record. Stage 1
//! ([`boot::early`]) reads the board and the command line, plans memory,
//! builds the EL2 translation tables and the switch plan; the switch
//! (`boot/switch.S`) relocates the image for its virtual address and turns
//! the MMU on through the chosen remap path. At the VA, [`hv_main`] runs
//! [`boot`]: the console, the heap, the interrupt controller, the other
//! CPUs, then the VMs, each built and started on its CPUs. From then on
//! the hypervisor runs only when a guest traps or an interrupt arrives.
//!
//! The code is in layers, each using only those below it (see [`arch`]):
//! `arch`, then `mm` and `boot`, `irq`, `vm`, and `traps` on top; this file
//! sits above them all and is the only place that knows every layer.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot;
mod irq;
mod mm;
mod selftest;
mod traps;
mod vm;

use alloc::string::String;
use alloc::vec::Vec;
use core::convert::Infallible;
use platform::board::MemRegion;
use platform::cmdline::Remap;
use platform::esr::Esr;
use platform::serial::Serial;

/// Why the boot stopped: input it refuses (a bad VM description, a kernel
/// that cannot boot, a machine unlike its device tree), or its own failure.
enum BootError {
    Refused(String),
    Failed(String),
}

/// Boot CPU, at the VA, on the final tables (from `boot/switch.S`): the
/// boot, and its one failure exit.
#[no_mangle]
extern "C" fn hv_main() -> ! {
    match boot() {
        Ok(never) => match never {},
        Err(BootError::Refused(why)) => arch::power::refuse(format_args!("{why}")),
        Err(BootError::Failed(why)) => arch::power::fatal(format_args!("{why}")),
    }
}

fn failed(e: impl core::fmt::Display) -> BootError {
    BootError::Failed(alloc::format!("{e}"))
}

fn refused(e: impl core::fmt::Display) -> BootError {
    BootError::Refused(alloc::format!("{e}"))
}

fn boot() -> Result<Infallible, BootError> {
    mm::prda::init_this_cpu();
    let info = boot::early::boot_info();
    let board = &info.board;
    if let Some(uart) = board.console {
        // SAFETY: the Non-secure console's window, mapped as device memory
        // in the direct map; the monitor stopped using this UART before
        // entering us.
        platform::console::init("el2", unsafe {
            Serial::new(uart.kind, arch::layout::phys_to_virt(uart.base) as usize)
        });
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
        arch::layout::EL2_VA_BITS,
        arch::layout::EL0_VA_BITS,
        boot::switch::image_pa(),
        arch::layout::LINK_VA,
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

    // The VM descriptions, if any: read now, checked against the machine
    // once its CPUs are up.
    let host_dtb = MemRegion::new(info.handoff.dtb.base, info.handoff.dtb.size);
    let (vms_dtb, vms_source) = boot::vms::source(board.fw_cfg, host_dtb).map_err(refused)?;
    let descs = platform::board::vms::parse(vms_dtb)
        .map_err(|e| refused(alloc::format!("VM description ({}): {e}", vms_source.describe())))?;
    let console_irq = info.console_irq.map(|irq| irq.intid).filter(|_| board.console.is_some());
    // With VMs whose consoles are emulated, the UART's input is EL2's.
    let own_spis: Vec<(u32, fn())> = match console_irq {
        Some(intid) if descs.iter().any(|d| d.console) => alloc::vec![(intid, vm::console::receive as fn())],
        _ => Vec::new(),
    };

    irq::gic::init(board).map_err(failed)?;
    irq::init(board);
    vm::vgic::note_interrupts(board);
    irq::set_routes(irq::Routes {
        guest_private: vm::vgic::private_interrupts().collect(),
        guest: vm::vgic::physical_interrupt,
        own_spis,
        kicked: vm::cpus::kicked,
    });
    vm::vcpu::on_enter(traps::debug::reset_vcpu);
    arch::cpu::init();
    irq::init_this_cpu(board);
    irq::pnmi::on_tick(vm::console::tick);
    arch::power::on_fatal(irq::pnmi::stop_other_cpus);
    arch::power::on_power_off(|| {
        traps::report_exits();
        vm::sched::report();
        vm::portal::report();
        vm::integrity::report_all();
        mm::integrity::report();
    });
    log::info!(
        "GIC {} ({}) at {:#x}; counter at {} kHz; tick {} ms, lockup watchdog {} ms (PNMI)",
        match board.gic.version {
            platform::board::GicVersion::V2 => "v2",
            platform::board::GicVersion::V3 => "v3",
        },
        board.gic.compatible.as_str(),
        board.gic.distributor.base,
        aarch64_cpu::registers::Readable::get(&aarch64_cpu::registers::CNTFRQ_EL0) / 1000,
        irq::pnmi::TICK_US / 1000,
        irq::pnmi::TICK_US * irq::pnmi::WATCHDOG_TICKS / 1000
    );

    // The PCI host bridge's functions, as the monitor's ECAM model shows them.
    let functions = vm::ecam::enumerate();
    let pci = vm::build::PciView {
        bars: functions.iter().map(|&(_, window)| window).collect(),
        interrupts: vm::ecam::interrupts(),
        functions,
    };

    let boot_mpidr = platform::arch::this_cpu_mpidr();
    let online = boot::smp::start_secondaries(board.cpus.as_slice(), boot_mpidr);
    log::info!("{online}/{} CPUs online at EL2", board.cpus.len());
    if online != board.cpus.len() {
        return Err(BootError::Refused(alloc::format!(
            "only {online} of the {} CPUs in the device tree came up (does every /cpus reg name a CPU this machine has?)",
            board.cpus.len()
        )));
    }
    if let Some(which) = cmdline.selftest {
        selftest::run(which, board);
    }
    mm::vmid::init(cmdline.vmid_bits);

    let host = vm::build::set_host(vm::build::Host {
        board,
        console_irq,
        pci: Some(pci),
        guest_stub: info.handoff.guest_stub,
    });

    let packaged = vm::linux::Packaged::from_handoff(&info.handoff.data);
    let configs = if descs.is_empty() {
        // Without VM descriptions: one VM, which owns the machine: every
        // CPU, all guest RAM, the console and the PCI devices; QEMU's
        // `-kernel` if it was given one (what this run was started with
        // overrides what the image was built with), else the package's
        // Linux kernel if it has one, else the guest-stub.
        let has_kernel = vm::linux::qemu_has_kernel(board.fw_cfg);
        let kernel = match (has_kernel, packaged) {
            (true, packaged) => {
                if packaged.is_some() {
                    log::info!("QEMU's -kernel is booted, not the firmware package's Linux kernel");
                }
                vm::build::Kernel::Qemu
            }
            (false, Some(packaged)) => {
                log::info!(
                    "Linux guest from the firmware package: kernel {:#x} bytes, initrd {}",
                    packaged.kernel.size,
                    packaged.initrd.map_or(String::from("none"), |r| alloc::format!("{:#x} bytes", r.size))
                );
                vm::build::Kernel::Package(packaged)
            }
            (false, None) => vm::build::Kernel::GuestStub,
        };
        let stub_words: Vec<&str> = cmdline.guest_stub_words().collect();
        alloc::vec![vm::build::Config {
            name: String::from("guest"),
            vcpus: online,
            affinity: (1u64 << online) - 1,
            sched: vm::sched::Params::new(
                platform::board::vms::DEFAULT_WEIGHT,
                false,
                platform::board::vms::DEFAULT_TIME_SLICE_US,
            ),
            ram: info.plan.guest_ram,
            kernel,
            bootargs: stub_words.join(" "),
            console: vm::Console::Passthrough,
            owns_machine: true,
            pci: true,
            spis: Vec::new(),
            autostart: true,
            portals: Vec::new(),
            manager: false,
            virtio: Vec::new(),
            backends: Vec::new(),
            integrity: cmdline.integrity,
        }]
    } else {
        // SAFETY: as in `boot::vms::source`: the reserved host DTB.
        let host_bytes = unsafe {
            core::slice::from_raw_parts(arch::layout::phys_to_virt(host_dtb.base) as *const u8, host_dtb.size as usize)
        };
        if packaged.is_some() {
            log::info!(
                "the firmware package's Linux kernel is not booted: the VMs are described in {}",
                vms_source.describe()
            );
        }
        let placement = descs
            .validate(online, info.plan.guest_ram.size, Some(host_bytes))
            .map_err(|e| refused(alloc::format!("VM description ({}): {e}", vms_source.describe())))?;
        log::info!("{} VM(s) described in {}", descs.len(), vms_source.describe());
        // Portals between the VMs: the first validation level (docs/portals.md).
        let vms_bytes: u64 = descs.iter().map(|d| d.memory_bytes).sum();
        let portals = platform::board::portals::parse(vms_dtb)
            .and_then(|p| {
                platform::board::portals::validate(&p, &descs, info.plan.guest_ram.size.saturating_sub(vms_bytes))
                    .map(|()| p)
            })
            .map_err(|e| refused(alloc::format!("VM description ({}): {e}", vms_source.describe())))?;
        let mut configs = vm_configs(&descs, &placement, info.plan.guest_ram, &host.pci)?;
        // Each portal's memory after the VMs' RAM, zeroed: what a VM finds
        // there first is nobody's.
        let mut next = configs.iter().map(|c| c.ram.end()).max().unwrap_or(info.plan.guest_ram.base);
        let mut built = Vec::new();
        for (index, p) in portals.iter().enumerate() {
            let memory = MemRegion::new(next.next_multiple_of(4096), p.size_bytes);
            next = memory.end();
            if memory.end() > info.plan.guest_ram.end() {
                return Err(refused(alloc::format!("portal {:?}: its memory does not fit in guest RAM", p.name)));
            }
            // SAFETY: guest RAM that no VM has (carved after theirs), in
            // the direct map; nothing runs in it yet.
            unsafe {
                core::ptr::write_bytes(arch::layout::phys_to_virt(memory.base) as *mut u8, 0, memory.size as usize)
            };
            let ends = p.ends.map(|name| configs.iter().position(|c| c.name == name).unwrap_or(usize::MAX));
            for (end, &vm) in ends.iter().enumerate() {
                if let Some(config) = configs.get_mut(vm) {
                    config.portals.push((index, end));
                }
            }
            log::info!(
                "portal {}: VMs {} and {}, {} KiB shared at {memory}, operations {:#x} / {:#x}",
                p.name,
                p.ends[0],
                p.ends[1],
                p.size_bytes / 1024,
                p.ops[0],
                p.ops[1]
            );
            built.push(vm::portal::Portal::new(index as u8, String::from(p.name), ends, memory, p.ops));
        }
        vm::portal::install(built);
        vm::forward::install(links(&descs, &mut configs));
        configs
    };

    let mut vms = Vec::new();
    for (index, config) in configs.into_iter().enumerate() {
        let name = config.name.clone();
        let vm = vm::build::create(index, config).map_err(|e| failed(alloc::format!("VM {name}: {e}")))?;
        vms.push(vm);
    }
    let vms = vm::install(vms);
    vm::console::init(
        vms,
        board.console.map(|u| {
            // SAFETY: the console UART's window in the direct map; EL2 alone
            // reads it (its input is EL2's in a run with emulated consoles).
            unsafe { Serial::new(u.kind, arch::layout::phys_to_virt(u.base) as usize) }
        }),
        console_irq,
    );
    for vm in vms {
        vm::vgic::reconcile_spis(vm);
        if let (Some(ecam), Some(pci), true) = (vm.recipe.ecam, host.pci.as_ref(), vm.recipe.owns_shim) {
            // Stage 2 follows the PCI functions' BARs; a moved window must
            // not cover anything else the VM has.
            let taken = [Some(vm.ram), vm.recipe.test_device, Some(ecam), Some(vm.gic.distributor)]
                .into_iter()
                .chain([Some(vm.gic.per_cpu), vm.recipe.console.map(|(u, _)| MemRegion::new(u.base, u.size))])
                .flatten()
                .collect();
            vm::ecam::follow_bars(vm, &pci.functions, taken);
        }
    }

    // Every VM to start is loaded before any starts: a kernel that cannot
    // be loaded refuses the boot as a whole.
    let mut entries = Vec::new();
    for vm in vms.iter().filter(|vm| vm.recipe.autostart) {
        let entry = match vm::build::load(vm) {
            Ok(Some(entry)) => entry,
            Ok(None) => return Err(failed(alloc::format!("VM {}: QEMU has no -kernel to boot", vm.name))),
            Err(e @ vm::build::BuildError::Linux(_)) if vm.owns_machine => return Err(refused(e)),
            Err(e @ vm::build::BuildError::Linux(_)) => return Err(refused(alloc::format!("VM \"{}\": {e}", vm.name))),
            Err(e) => return Err(failed(e)),
        };
        entries.push((vm, entry));
    }
    for (vm, entry) in entries {
        vm::build::start(vm, entry);
    }
    vm::console::start_input();
    vm::vcpu::idle_here()
}

/// The links of forwarded virtio devices: one per (client, service VM)
/// pair, in client order, each device numbered on its link in the
/// client's node order; the configs learn their devices and backend
/// functions.
fn links(descs: &platform::board::vms::VmDescs, configs: &mut [vm::build::Config]) -> Vec<vm::forward::Link> {
    let mut links = Vec::new();
    for (client, desc) in descs.iter().enumerate() {
        // The services in order of their first device.
        let mut services: Vec<&str> = Vec::new();
        for v in desc.virtio.iter() {
            if !services.contains(&v.backend) {
                services.push(v.backend);
            }
        }
        for name in services {
            // parse() checked that every backend names another VM.
            let Some(service) = descs.iter().position(|d| d.name == name) else { continue };
            let served: Vec<_> = desc.virtio.iter().filter(|v| v.backend == name).collect();
            let kinds: Vec<_> = served.iter().map(|v| v.device).collect();
            let Some(ram) = configs.get(client).map(|c| c.ram) else { continue };
            let l = links.len();
            for (index, v) in served.iter().enumerate() {
                if let Some(c) = configs.get_mut(client) {
                    c.virtio.push((l, index as u8, v.device, v.timeout_ms));
                }
            }
            if let Some(c) = configs.get_mut(service) {
                c.backends.push((l, ram, String::from(desc.name)));
            }
            log::info!(
                "virtio: VM {} serves {} device(s) of VM {} ({})",
                name,
                kinds.len(),
                desc.name,
                kinds.iter().map(|k| k.word()).collect::<Vec<_>>().join(", ")
            );
            links.push(vm::forward::Link::new(client, service, vm::forward::link_info(desc.name, ram, &kinds)));
        }
    }
    links
}

/// The VMs a description gives: each on the CPUs its placement says, with
/// RAM carved from guest RAM in description order.
fn vm_configs(
    descs: &platform::board::vms::VmDescs,
    placement: &platform::board::vms::Placement,
    guest_ram: MemRegion,
    pci: &Option<vm::build::PciView>,
) -> Result<Vec<vm::build::Config>, BootError> {
    use platform::board::vms::Image;
    let mut next = guest_ram.base;
    let mut configs = Vec::new();
    let mut pci_given = false;
    for (desc, cpus) in descs.iter().zip(placement.iter()) {
        let unsupported = |what: &str| {
            refused(alloc::format!(
                "VM \"{}\": {what}: images a loader placed in memory are not supported on this board; use hv,kernel and hv,initrd (fw_cfg files)",
                desc.name
            ))
        };
        let kernel = match desc.kernel {
            Image::GuestStub => vm::build::Kernel::GuestStub,
            Image::FwCfg(name) => vm::build::Kernel::FwCfg {
                kernel: String::from(name),
                initrd: match desc.initrd {
                    Some(Image::FwCfg(initrd)) => Some(String::from(initrd)),
                    Some(_) => return Err(unsupported("multiboot,ramdisk")),
                    None => None,
                },
            },
            Image::Memory(_) => return Err(unsupported("multiboot,kernel")),
        };
        // The PCI host bridge goes with the devices behind it: to the VM
        // whose hv,devices names a node at a shim function's window (its
        // unit address).
        let wants_pci = pci.as_ref().is_some_and(|pci| {
            desc.devices.iter().any(|path| {
                let unit = path.rsplit_once('@').map(|(_, unit)| unit);
                let base = unit.and_then(|u| u64::from_str_radix(u, 16).ok());
                base.is_some_and(|b| pci.bars.iter().any(|bar| bar.base == b))
            })
        });
        let ram = MemRegion::new(next, desc.memory_bytes);
        next = ram.end();
        configs.push(vm::build::Config {
            name: String::from(desc.name),
            vcpus: desc.cpus as usize,
            affinity: cpus.iter().fold(0u64, |mask, &c| mask | 1 << c),
            sched: vm::sched::Params::new(desc.weight, desc.latency_sensitive, desc.time_slice_us),
            ram,
            kernel,
            bootargs: String::from(desc.bootargs),
            console: if desc.console { vm::Console::Emulated } else { vm::Console::None },
            owns_machine: false,
            pci: wants_pci && !pci_given,
            spis: desc.spis.iter().copied().collect(),
            autostart: desc.autostart,
            portals: Vec::new(),
            manager: desc.manager,
            virtio: Vec::new(),
            backends: Vec::new(),
            integrity: desc.integrity,
        });
        pci_given |= wants_pci;
    }
    Ok(configs)
}

/// Secondary CPUs, at the VA, on their own stacks (from `boot/switch.S`).
#[no_mangle]
extern "C" fn hv_secondary_main(slot: usize) -> ! {
    mm::prda::init_this_cpu();
    log::info!(
        "CPU {slot} (MPIDR {:#x}) online at {} (mode={})",
        platform::arch::this_cpu_mpidr(),
        platform::arch::current_el(),
        arch::layout::scheme().name()
    );
    arch::cpu::init();
    irq::init_this_cpu(&boot::early::boot_info().board);
    boot::smp::check_in();
    vm::cpus::secondary_idle(slot)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    platform::console::enter_panic();
    arch::power::fatal(format_args!("panic: {info}"))
}
