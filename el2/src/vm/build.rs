//! Building VMs: from a [`Config`] (a VM description, or the one guest of
//! a run without descriptions) to a [`Vm`] with its stage 2, vGIC, devices
//! and vCPUs; loading what it boots into its RAM ([`load`]); and starting
//! it again after a reset ([`restart`]).
//!
//! A VM's guest-physical map: its RAM where the host has it (IPA = PA);
//! the GIC's distributor and redistributors at the host GIC's addresses,
//! emulated; a guest-stub VM's test device 1 MiB past its RAM; the PCI host
//! bridge's ECAM window after that (the VM that owns the monitor's shim
//! functions, whose register windows are passed through, every VM that is
//! an end of a portal, and a manager); the window of the hypervisor's own
//! functions after that (each portal's shared memory in a 16 MiB slot,
//! then a register page per function: [`crate::vm::vpci`]); its
//! forwarded virtio devices' register windows after that
//! ([`crate::vm::forward`]); the console at the host UART's address,
//! passed through (the VM that owns the machine) or emulated. Nothing else
//! is mapped.

use crate::vm::{forward, guest, linux, mmio, portal, vcpu, vgic, vpci, Console, PowerState, Vcpu, Vm};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU8};
use platform::board::{Board, MemRegion, Uart, UartKind};
use platform::pci::Bdf;
use spin::{Mutex, Once};

/// Distance from the end of a VM's RAM to its test device.
const TEST_DEVICE_GAP: u64 = 0x10_0000;

/// What a VM boots.
#[derive(Clone, Debug)]
pub enum Kernel {
    /// The built-in guest-stub.
    GuestStub,
    /// QEMU's `-kernel`, `-initrd` and `-append`.
    Qemu,
    /// fw_cfg files named by the VM's description.
    FwCfg { kernel: String, initrd: Option<String> },
    /// The firmware package's kernel, initrd and command line (copies in
    /// the hypervisor's own block, so a restart loads them again).
    Package(linux::Packaged),
}

/// Everything a VM is made from.
pub struct Config {
    pub name: String,
    /// How many vCPUs it has.
    pub vcpus: usize,
    /// The physical CPUs they may run on (bit n = slot n).
    pub affinity: u64,
    pub sched: crate::vm::sched::Params,
    pub ram: MemRegion,
    pub kernel: Kernel,
    /// Its command line (a guest-stub's words, or Linux's `bootargs`).
    pub bootargs: String,
    pub console: Console,
    pub owns_machine: bool,
    /// Whether it gets the PCI host bridge (and the devices behind it).
    pub pci: bool,
    /// Physical SPIs given to it.
    pub spis: Vec<u32>,
    /// Started at boot (else only when asked to).
    pub autostart: bool,
    /// The portals it is an end of: (index in `portal::all`, end).
    pub portals: Vec<(usize, usize)>,
    /// `hv,manager`: it gets the VM control function.
    pub manager: bool,
    /// Its forwarded virtio devices: (link, number on the link, type,
    /// timeout in ms).
    pub virtio: Vec<(usize, u8, platform::forward::DeviceType, u32)>,
    /// The links it serves (a backend function each), with their
    /// client's RAM and name.
    pub backends: Vec<(usize, MemRegion, String)>,
    /// Kernel integrity ([`crate::vm::integrity`]), and how per-mode
    /// execute control is had.
    pub integrity: Option<platform::mbec::Mechanism>,
}

/// The host's PCI view, through the monitor's ECAM model: at most one VM
/// has it.
pub struct PciView {
    pub functions: Vec<(Bdf, MemRegion)>,
    pub bars: Vec<MemRegion>,
    pub interrupts: Vec<vm_ecam::Intx>,
}

use crate::vm::ecam as vm_ecam;

/// What a VM keeps to write its device tree and load its kernel again.
pub struct Recipe {
    pub kernel: Kernel,
    pub bootargs: String,
    pub test_device: Option<MemRegion>,
    pub ecam: Option<MemRegion>,
    /// Whether the monitor's shim functions are behind its host bridge.
    pub owns_shim: bool,
    /// The window of the hypervisor's own functions on its host bridge
    /// (its portals' shared memory, their registers and the control
    /// function's).
    pub window: Option<vpci::Window>,
    /// The console's window and interrupt, as its guest sees them.
    pub console: Option<(platform::board::Uart, Option<u32>)>,
    /// Started at boot.
    pub autostart: bool,
}

#[derive(Debug)]
pub enum BuildError {
    Stage2(crate::mm::stage2::Stage2Error),
    Device(&'static str, platform::mmio::RegisterError),
    Linux(linux::LoadError),
    Guest(guest::GuestError),
    Gic(vgic::GuestGicError),
    /// A VM named for a QEMU `-kernel` that QEMU was not given.
    NoKernel,
    /// No virtual SPI left for a portal's, a backend function's or a
    /// virtio device's interrupt.
    NoInterrupt,
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Stage2(e) => write!(f, "{e}"),
            Self::Device(what, e) => write!(f, "{what}: {e}"),
            Self::Linux(e) => write!(f, "{e}"),
            Self::Guest(e) => write!(f, "{e}"),
            Self::Gic(e) => write!(f, "{e}"),
            Self::NoKernel => write!(f, "no kernel"),
            Self::NoInterrupt => write!(f, "no interrupt number left for its portals and virtio devices"),
        }
    }
}

/// The host facts every VM is built against, fixed at boot.
pub struct Host {
    pub board: &'static Board,
    pub console_irq: Option<u32>,
    pub pci: Option<PciView>,
    /// The guest-stub image the monitor handed over.
    pub guest_stub: platform::handoff::LoadedImage,
}

static HOST: Once<Host> = Once::new();

pub fn set_host(host: Host) -> &'static Host {
    HOST.call_once(|| host)
}

fn host() -> Option<&'static Host> {
    HOST.get()
}

/// Builds VM `index` from `config`: off, nothing loaded yet.
pub fn create(index: usize, config: Config) -> Result<Vm, BuildError> {
    let host = host().ok_or(BuildError::NoKernel)?;
    let board = host.board;
    // vCPU n first goes to the n-th CPU it may use (round robin): a VM
    // with a CPU per vCPU spreads over them from its first start.
    let allowed: Vec<usize> = (0..64).filter(|&s| config.affinity & (1 << s) != 0).collect();
    let vcpus: Vec<Vcpu> = (0..config.vcpus)
        .map(|i| Vcpu::new(i, config.affinity, allowed.get(i % allowed.len().max(1)).copied().unwrap_or(0)))
        .collect();
    let pci = host.pci.as_ref().filter(|_| config.pci);
    let console_irq = match config.console {
        Console::None => None,
        _ => host.console_irq,
    };
    let highest_spi = config
        .spis
        .iter()
        .copied()
        .chain(console_irq)
        .chain(pci.iter().flat_map(|p| p.interrupts.iter().map(|i| i.intid)))
        .max();
    let test_device = matches!(config.kernel, Kernel::GuestStub)
        .then(|| MemRegion::new(config.ram.end() + TEST_DEVICE_GAP, platform::abi::test_mmio::SIZE));
    let after = test_device.map_or(config.ram.end(), |t| t.end());
    let own_functions = config.portals.len() + config.backends.len() + usize::from(config.manager);
    let has_bridge = pci.is_some() || own_functions > 0;
    let ecam = has_bridge
        .then(|| MemRegion::new(after.next_multiple_of(vm_ecam::BUS_SIZE), vm_ecam::BUSES * vm_ecam::BUS_SIZE));
    // The portals: a slot of the window and a virtual SPI each, the SPIs
    // the lowest its other devices leave free.
    let bar2_sizes: Vec<u64> = config.backends.iter().map(|(_, ram, _)| ram.size.next_power_of_two()).collect();
    let (window, backend_slots) = if own_functions > 0 {
        let base = ecam.map_or(after, |e| e.end()).next_multiple_of(vpci::Window::alignment(&bar2_sizes));
        let (w, slots) = vpci::Window::new(base, &bar2_sizes, config.portals.len(), own_functions);
        (Some(w), slots)
    } else {
        (None, Vec::new())
    };
    let mut used: Vec<u32> = config.spis.iter().copied().chain(console_irq).collect();
    used.extend(pci.iter().flat_map(|p| p.interrupts.iter().map(|i| i.intid)));
    let mut free = (platform::vgic::SPI_BASE..u32::from(u8::MAX)).filter(|i| !used.contains(i));
    let mut portal_ends = Vec::new();
    for (k, &(index, end)) in config.portals.iter().enumerate() {
        let Some(intid) = free.next() else { return Err(BuildError::NoInterrupt) };
        let k = k as u64;
        portal_ends.push(portal::End {
            portal: index,
            end,
            intid,
            memory: window.map_or(MemRegion::new(0, 0), |w| {
                w.memory_of(k as usize, portal::all().get(index).map_or(0, |p| p.memory.size))
            }),
        });
    }
    let mut backends = Vec::new();
    for (&(link, _, _), &bar2) in config.backends.iter().zip(&backend_slots) {
        let Some(intid) = free.next() else { return Err(BuildError::NoInterrupt) };
        backends.push(vpci::Backend { link, intid, bar2 });
    }
    // The forwarded virtio devices: a window each after everything else.
    let virtio_base = window.map(|w| w.whole().end()).or(ecam.map(|e| e.end())).unwrap_or(after).next_multiple_of(4096);
    let mut virtio = Vec::new();
    for (k, &(link, index, kind, timeout_ms)) in config.virtio.iter().enumerate() {
        let Some(intid) = free.next() else { return Err(BuildError::NoInterrupt) };
        let window = MemRegion::new(virtio_base + forward::WINDOW_STRIDE * k as u64, forward::WINDOW_STRIDE);
        virtio.push(forward::Device { link, index, kind, window, intid, timeout_ms });
    }
    let highest_spi = highest_spi
        .max(portal_ends.iter().map(|e| e.intid).max())
        .max(backends.iter().map(|b| b.intid).max())
        .max(virtio.iter().map(|d| d.intid).max());
    let uart = board.console;
    let console_window = uart.map(|u| MemRegion::new(u.base, u.size));
    let mut passthrough: Vec<MemRegion> = Vec::new();
    if config.console == Console::Passthrough {
        passthrough.extend(console_window);
    }
    if let Some(pci) = pci {
        passthrough.extend(pci.bars.iter().copied());
    }
    let (model, gic) = vgic::model(board, &vcpus, highest_spi).map_err(BuildError::Gic)?;
    let ipa_end = virtio
        .last()
        .map(|d| d.window)
        .or(window.map(|w| w.whole()))
        .or(ecam)
        .or(test_device)
        .map_or(config.ram.end(), |w| w.end());
    let pages = config.integrity.map(|mechanism| {
        let xnx = platform::arch::regs::ID_AA64MMFR1_XNX
            .present(aarch64_cpu::registers::Readable::get(&aarch64_cpu::registers::ID_AA64MMFR1_EL1));
        match mechanism {
            platform::mbec::Mechanism::Auto if xnx => crate::mm::stage2::Pages::Xnx,
            _ => crate::mm::stage2::Pages::Emulated,
        }
    });
    let mut stage2 =
        crate::mm::stage2::Stage2::new(config.ram, &passthrough, ipa_end, pages).map_err(BuildError::Stage2)?;
    vgic::map_cpu_interface(board, &gic, &mut stage2).map_err(BuildError::Stage2)?;
    for e in &portal_ends {
        if let Some(portal) = portal::all().get(e.portal) {
            stage2.map_ram(e.memory.base, portal.memory.base, portal.memory.size).map_err(BuildError::Stage2)?;
        }
    }
    for (b, (_, client_ram, _)) in backends.iter().zip(&config.backends) {
        stage2.map_ram(b.bar2.base, client_ram.base, client_ram.size).map_err(BuildError::Stage2)?;
    }
    let label = if config.owns_machine { String::new() } else { alloc::format!("VM {}: ", config.name) };
    let (ipa_bits, root_level) = stage2.shape();
    log::info!("{label}RAM {}, stage 2: {ipa_bits}-bit IPA space from level {root_level}", config.ram);
    if let Some(ecam) = ecam {
        log::info!(
            "{label}PCI: ECAM window {ecam}, {} function(s) behind it",
            pci.map_or(0, |p| p.bars.len()) + own_functions
        );
    }
    for (k, e) in portal_ends.iter().enumerate() {
        let name = portal::all().get(e.portal).map_or("?", |p| p.name.as_str());
        log::info!(
            "{label}portal {name} (end {}): PCI 00:{:02x}.0, registers at IPA {:#x}, shared memory at IPA {}, INTID {}",
            e.end,
            usize::from(vpci::FIRST_DEVICE) + k,
            window.map_or(0, |w| w.regs_of(k).base),
            e.memory,
            e.intid
        );
    }
    for (j, (b, (_, _, client))) in backends.iter().zip(&config.backends).enumerate() {
        log::info!(
            "{label}backend function for VM {client}'s virtio devices: PCI 00:{:02x}.0, registers at IPA {:#x}, its RAM at IPA {}, INTID {}",
            usize::from(vpci::FIRST_DEVICE) + config.portals.len() + j,
            window.map_or(0, |w| w.regs_of(config.portals.len() + j).base),
            b.bar2,
            b.intid
        );
    }
    for d in &virtio {
        log::info!("{label}virtio {} device {}: window {}, INTID {}", d.kind.word(), d.index, d.window, d.intid);
    }
    let mut spis = config.spis;
    if config.console == Console::Passthrough {
        spis.extend(console_irq);
    }
    if let Some(pci) = pci {
        spis.extend(pci.interrupts.iter().map(|i| i.intid));
    }
    let console = match config.console {
        Console::None => None,
        _ => uart.map(|u| (u, console_irq)),
    };
    let vm = Vm {
        index,
        name: config.name,
        ram: config.ram,
        vcpus,
        stage2: Mutex::new(stage2),
        vgic: crate::irq::kick_lock::KickLock::new(model),
        gic,
        bus: crate::irq::kick_lock::KickLock::new(platform::mmio::MmioBus::new()),
        spis,
        pci: Once::new(),
        functions: Mutex::new(match &window {
            Some(w) => vpci::Functions::new(&portal_ends, &backends, config.manager, w),
            None => vpci::Functions::new(&[], &[], false, &vpci::Window::new(0, &[], 0, 0).0),
        }),
        portal_ends,
        backends,
        virtio,
        manager: config.manager,
        control: config.manager.then(|| Mutex::new(platform::control::ControlModel::new())),
        console: config.console,
        uart: Mutex::new(crate::vm::console::Port::new()),
        dcc_line: Mutex::new(crate::vm::LineBuffer::new()),
        owns_machine: config.owns_machine,
        recipe: Recipe {
            kernel: config.kernel,
            bootargs: config.bootargs,
            test_device,
            ecam,
            owns_shim: pci.is_some(),
            window,
            console,
            autostart: config.autostart,
        },
        state: AtomicU8::new(PowerState::Off as u8),
        status: AtomicU32::new(0),
        starts: AtomicU32::new(0),
        start_decided: core::sync::atomic::AtomicU64::new(0),
        sched: config.sched,
        cntvoff: core::sync::atomic::AtomicU64::new(0),
        integrity: pages.map(crate::vm::integrity::Integrity::new),
    };
    vgic::add_frames(&vm).map_err(|e| BuildError::Device("the GIC's frames", e))?;
    if let Some(t) = test_device {
        mmio::add_test_device(&vm, t.base).map_err(|e| BuildError::Device("the test device", e))?;
    }
    if let (Console::Emulated, Some(u)) = (vm.console, uart) {
        let device = alloc::boxed::Box::new(crate::vm::console::Device { vm: vm.index });
        mmio::add_device(&vm, u.base, platform::vpl011::WINDOW_SIZE, device)
            .map_err(|e| BuildError::Device("the console", e))?;
    }
    if let Some(e) = ecam {
        mmio::add_device(&vm, e.base, e.size, alloc::boxed::Box::new(vm_ecam::Ecam { vm: index }))
            .map_err(|err| BuildError::Device("the ECAM window", err))?;
    }
    if let Some(w) = window {
        let registers = vpci::Registers { vm: index, base: w.regs.base };
        mmio::add_device(&vm, w.regs.base, w.regs.size, alloc::boxed::Box::new(registers))
            .map_err(|err| BuildError::Device("the registers of the hypervisor's PCI functions", err))?;
        if config.manager {
            let k = config.portals.len() + config.backends.len();
            let at = w.regs_of(k).base;
            log::info!(
                "{label}VM control function: PCI 00:{:02x}.0, registers at IPA {at:#x}",
                usize::from(vpci::FIRST_DEVICE) + k
            );
        }
    }
    Ok(vm)
}

/// Where a loaded VM starts: vCPU 0's entry point and `x0`.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub pc: u64,
    pub x0: u64,
}

/// Puts what `vm` boots into its RAM, with its device tree; returns where
/// vCPU 0 starts. `None`: a VM that boots QEMU's `-kernel` and QEMU was
/// given none (the caller runs the guest-stub instead).
pub fn load(vm: &Vm) -> Result<Option<Entry>, BuildError> {
    let host = host().ok_or(BuildError::NoKernel)?;
    let recipe = &vm.recipe;
    let mpidrs: Vec<u64> = vm.vcpus.iter().map(|v| v.mpidr).collect();
    let pci = host.pci.as_ref().filter(|_| recipe.owns_shim);
    // The host bridge's windows and interrupts: the shim functions' and
    // the hypervisor's own functions'.
    let windows: Vec<MemRegion> =
        pci.map_or(&[][..], |p| p.bars.as_slice()).iter().copied().chain(recipe.window.map(|w| w.whole())).collect();
    let interrupts: Vec<vm_ecam::Intx> = pci
        .map_or(&[][..], |p| p.interrupts.as_slice())
        .iter()
        .copied()
        .chain(vm.portal_ends.iter().map(|e| e.intid).chain(vm.backends.iter().map(|b| b.intid)).enumerate().map(
            |(k, intid)| vm_ecam::Intx {
                device: vpci::FIRST_DEVICE + k as u8,
                pin: platform::pci::config::Intx::INTA,
                intid,
            },
        ))
        .collect();
    let virtio: Vec<(MemRegion, u32)> = vm.virtio.iter().map(|d| (d.window, d.intid)).collect();
    let mut hardware = guest::Hardware {
        ram: vm.ram,
        // An emulated console is a PL011 whatever the host's UART is.
        console: recipe.console.map(|(u, _)| match vm.console {
            Console::Emulated => Uart { kind: UartKind::Pl011, ..u },
            _ => u,
        }),
        test_device: recipe.test_device,
        ecam: recipe.ecam,
        bars: &windows,
        gic: vm.gic,
        timer: host.board.timer,
        vcpus: &mpidrs,
        console_irq: recipe.console.and_then(|(_, irq)| irq),
        initrd: None,
        pci_interrupts: &interrupts,
        virtio: &virtio,
        probe_holes: &[],
        starts: None,
    };
    // A guest-stub probes what must be holes to it: the first and last
    // word of every other VM's RAM, and the hypervisor's own image.
    let holes: Vec<u64> = crate::vm::all()
        .iter()
        .filter(|other| other.index != vm.index)
        .flat_map(|other| [other.ram.base, other.ram.end() - 8])
        .chain(portal::all().iter().flat_map(|p| [p.memory.base, p.memory.end() - 8]))
        .chain([crate::boot::switch::image_pa()])
        .collect();
    let source = match &recipe.kernel {
        Kernel::GuestStub => None,
        Kernel::Qemu => Some(linux::Source::Qemu),
        Kernel::FwCfg { kernel, initrd } => Some(linux::Source::Files { kernel, initrd: initrd.as_deref() }),
        Kernel::Package(packaged) => Some(linux::Source::Package(packaged)),
    };
    if let Some(source) = source {
        let Some(loaded) = linux::load(host.board.fw_cfg, vm.ram, source).map_err(BuildError::Linux)? else {
            return Ok(None);
        };
        let p = loaded.placement;
        hardware.initrd = p.initrd;
        let cmdline = loaded.cmdline.as_deref().unwrap_or(&recipe.bootargs);
        let dtb = guest::device_tree(&hardware, cmdline).map_err(BuildError::Guest)?;
        guest::write_dtb(p.dtb.base, &dtb).map_err(BuildError::Guest)?;
        log::info!(
            "{}entering Linux at IPA {:#x} (EL1) on {} vCPU(s): kernel {:#x} bytes, initrd {}, DTB at IPA {:#x}, command line `{cmdline}`",
            prefix(vm),
            p.kernel.base,
            vm.vcpus.len(),
            loaded.kernel_size,
            p.initrd.map_or(String::from("none"), |r| alloc::format!("{r}")),
            p.dtb.base,
        );
        return Ok(Some(Entry { pc: p.kernel.base, x0: p.dtb.base }));
    }
    hardware.probe_holes = &holes;
    hardware.starts = Some(vm.starts.load(core::sync::atomic::Ordering::Relaxed));
    let dtb = guest::device_tree(&hardware, &recipe.bootargs).map_err(BuildError::Guest)?;
    let frame = guest::load(vm.ram, &host.guest_stub, &dtb).map_err(BuildError::Guest)?;
    log::info!(
        "{}entering guest-stub at IPA {:#x} (EL1) on {} vCPU(s), DTB at IPA {:#x}",
        prefix(vm),
        frame.elr,
        vm.vcpus.len(),
        frame.x[0]
    );
    Ok(Some(Entry { pc: frame.elr, x0: frame.x[0] }))
}

/// "VM name: " for a VM among others; nothing for the one that owns the
/// machine (its lines read as they always did).
pub fn prefix(vm: &Vm) -> String {
    if vm.owns_machine {
        String::new()
    } else {
        alloc::format!("VM {}: ", vm.name)
    }
}

/// Starts `vm` (off, loaded) at `entry`: its vCPU 0 is queued to run. Its
/// virtual counter starts from 0 now (`CNTVOFF_EL2` is the physical count
/// at its start).
pub fn start(vm: &'static Vm, entry: Entry) {
    let Some(first) = vm.vcpus.first() else { return };
    let now = aarch64_cpu::registers::Readable::get(&aarch64_cpu::registers::CNTPCT_EL0);
    vm.start_decided.store(now.max(1), core::sync::atomic::Ordering::Relaxed);
    vm.cntvoff.store(now, core::sync::atomic::Ordering::Relaxed);
    vm.set_state(PowerState::Running);
    crate::vm::console::set_available(vm, true);
    if let Err(e) = vcpu::start(vm, first, entry.pc, entry.x0) {
        log::error!("{}vCPU 0 not started (PSCI error {e})", prefix(vm));
    }
}

/// Just before vCPU 0 of `vm` runs its first guest instruction: reports
/// how long that took since the start was decided (the loaded VM's
/// [`start`]), in counter ticks; under `-icount shift=0` with a 1 GHz
/// counter, in instructions (`make bench` reads the line).
pub fn report_started(vm: &Vm) {
    let decided = vm.start_decided.swap(0, core::sync::atomic::Ordering::Relaxed);
    if decided != 0 {
        let now = aarch64_cpu::registers::Readable::get(&aarch64_cpu::registers::CNTPCT_EL0);
        log::info!("{}vCPU 0 runs {} counter ticks after the start decision", prefix(vm), now.saturating_sub(decided));
    }
}

/// Restarts `vm` after a `SYSTEM_RESET` from the calling vCPU, whose
/// other vCPUs have stopped: this vCPU stops too, the VM's RAM is cleared
/// and its kernel loaded again, its interrupt controller reset, and vCPU 0
/// started. A VM whose kernel cannot be loaded again stays off.
pub fn restart(vm: &'static Vm) -> ! {
    vpci::reset_vm(vm);
    crate::vm::integrity::reset(vm);
    vcpu::park_this();
    // Hundreds of MiB take a while: with this CPU's interrupts open (the
    // VM's own are parked; nothing is locked here).
    crate::irq::with_interrupts_open(|| {
        // SAFETY: the VM's RAM, in the direct map; none of its vCPUs runs,
        // and nothing else of the hypervisor's lives there.
        unsafe {
            core::ptr::write_bytes(crate::arch::layout::phys_to_virt(vm.ram.base) as *mut u8, 0, vm.ram.size as usize)
        }
    });
    vgic::reset_model(vm);
    vm.set_status(0);
    vm.starts.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    match load(vm) {
        Ok(Some(entry)) => start(vm, entry),
        Ok(None) => log::error!("{}not restarted: its kernel is gone", prefix(vm)),
        Err(e) => log::error!("{}not restarted: {e}", prefix(vm)),
    }
    if vm.state() != PowerState::Running {
        vm.set_state(PowerState::Off);
        crate::vm::power::machine_off_if_last();
    }
    vcpu::idle_here()
}
