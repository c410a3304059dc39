//! The hypervisor's own PCI functions on a VM's host bridge: one per
//! portal the VM is an end of ([`crate::vm::portal`]), one per client it
//! serves forwarded virtio devices of (the backend function,
//! [`crate::vm::forward`]), then, for a VM marked `hv,manager`, the VM
//! control function ([`crate::vm::control`]).
//! They sit on bus 0 from device [`FIRST_DEVICE`] on, above the monitor's
//! shim functions, so each keeps its number.
//!
//! Their config space is the same model as the monitor's shim functions
//! (`platform::pci::config`), but kept here, in the VM ([`Functions`]):
//! these functions are the hypervisor's own devices, and a portal's
//! command register (INTx disable) and interrupt status are part of its
//! doorbell's state, which a round trip to EL3 on every doorbell would
//! only slow down. `crate::vm::ecam` sends the config accesses to devices
//! from [`FIRST_DEVICE`] on here.
//!
//! **The window.** Each VM with such functions has one window in its IPA
//! space, after its ECAM window, which the host bridge's `ranges` maps
//! one-to-one: the BAR2 of each backend function (its client's RAM, in a
//! slot of the next power of two, aligned to it), a [`BAR2_SLOT`] per
//! portal for its shared memory (BAR2), both RAM mapped in stage 2, then a
//! page per function for its registers (BAR0, emulated: every access
//! traps). All the BAR0 pages are one device on the
//! VM's MMIO bus ([`Registers`]), which finds the function whose BAR0
//! decodes the address; a BAR moved out of the window decodes nothing.
//! Stage 2 follows BAR2 inside the window.
//!
//! Locks: a VM's [`Functions`] before a portal's model or a control
//! function's, never the other way, and neither is held while a vGIC is
//! taken.

use crate::vm::{portal, Vm};
use alloc::string::String;
use alloc::vec::Vec;
use platform::board::MemRegion;
use platform::mmio::{MmioDevice, MmioFault};
use platform::pci::config::{ConfigSpace, Intx, ShimDevice};
use platform::pci::{AccessSize, Bdf};

/// The first device number of these functions on a host bridge.
pub const FIRST_DEVICE: u8 = 16;
/// Backend functions one VM can have: one per client it serves.
pub const MAX_BACKENDS: usize = platform::board::vms::MAX_VMS;
/// Functions one VM can have: a portal function per portal of the
/// description, a backend function per client, and the control function.
pub const MAX_FUNCTIONS: usize = platform::board::portals::MAX_PORTALS + MAX_BACKENDS + 1;
/// Each BAR2 has a slot this large in the window: the largest shared
/// memory, so every BAR2 is aligned to its size.
pub const BAR2_SLOT: u64 = platform::board::portals::MAX_SIZE_KIB * 1024;
/// A function's registers (BAR0): one page, whatever the function.
pub const REGS_SIZE: u64 = 4096;
const _: () = assert!(
    platform::portal::REGS_SIZE == REGS_SIZE
        && platform::control::REGS_SIZE == REGS_SIZE
        && platform::forward::REGS_SIZE == REGS_SIZE
);

/// A backend function of a service VM: its link, its INTA's virtual SPI,
/// and where its BAR2 (the client's RAM) starts out.
#[derive(Clone, Copy, Debug)]
pub struct Backend {
    pub link: usize,
    pub intid: u32,
    pub bar2: MemRegion,
}

/// What function `index` of a VM is.
#[derive(Clone, Copy, Debug)]
pub enum Function {
    Portal(portal::End),
    Backend(Backend),
    Control,
}

/// The functions of `vm`, in device order: its portal ends, its backend
/// functions, then the control function if it is a manager.
pub fn function(vm: &Vm, index: usize) -> Option<Function> {
    let portals = vm.portal_ends.len();
    let backends = vm.backends.len();
    if let Some(e) = vm.portal_ends.get(index) {
        return Some(Function::Portal(*e));
    }
    if let Some(b) = index.checked_sub(portals).and_then(|k| vm.backends.get(k)) {
        return Some(Function::Backend(*b));
    }
    (index == portals + backends && vm.control.is_some()).then_some(Function::Control)
}

/// A VM's window: the BAR2 slots, then the BAR0 pages.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub memory: MemRegion,
    pub regs: MemRegion,
    /// Where the portals' slots start.
    portals_at: u64,
}

impl Window {
    /// What the window's base must be a multiple of, with backend BAR2s
    /// of `backends` bytes (powers of two).
    pub fn alignment(backends: &[u64]) -> u64 {
        backends.iter().copied().fold(BAR2_SLOT, u64::max)
    }

    /// The window at `base` (a multiple of [`Window::alignment`]) for
    /// backend BAR2s of `backends` bytes, `portals` portal functions and
    /// `functions` functions in all; and each backend's BAR2 slot.
    pub fn new(base: u64, backends: &[u64], portals: usize, functions: usize) -> (Self, Vec<MemRegion>) {
        let mut cursor = base;
        let mut slots = Vec::new();
        for &size in backends {
            cursor = cursor.next_multiple_of(size.max(1));
            slots.push(MemRegion::new(cursor, size));
            cursor += size;
        }
        let portals_at = cursor.next_multiple_of(BAR2_SLOT);
        let memory = MemRegion::new(base, portals_at + BAR2_SLOT * portals as u64 - base);
        let regs = MemRegion::new(memory.end(), REGS_SIZE * functions as u64);
        (Self { memory, regs, portals_at }, slots)
    }

    /// Function `index`'s registers, where they start out.
    pub fn regs_of(&self, index: usize) -> MemRegion {
        MemRegion::new(self.regs.base + REGS_SIZE * index as u64, REGS_SIZE)
    }

    /// Portal `k`'s BAR2 slot (its memory is `size` bytes of it).
    pub fn memory_of(&self, k: usize, size: u64) -> MemRegion {
        MemRegion::new(self.portals_at + BAR2_SLOT * k as u64, size)
    }

    /// The whole window.
    pub fn whole(&self) -> MemRegion {
        MemRegion::new(self.memory.base, self.regs.end() - self.memory.base)
    }
}

/// A VM's functions' config space, and where stage 2 shows each one's
/// BAR2 now.
pub struct Functions {
    space: ConfigSpace<MAX_FUNCTIONS>,
    mapped: [Option<u64>; MAX_FUNCTIONS],
    /// Refused BAR2 places so far (the first few are logged).
    refusals: u32,
}

/// How many refused BAR2 places are logged per VM.
const LOGGED_REFUSALS: u32 = 8;

impl Functions {
    /// The config space of `portal_ends`' functions, `backends`' and, for
    /// a manager, the control function's, their BARs where `window` puts
    /// them.
    pub fn new(portal_ends: &[portal::End], backends: &[Backend], control: bool, window: &Window) -> Self {
        let mut space = ConfigSpace::new();
        let mut mapped = [None; MAX_FUNCTIONS];
        let portals = portal_ends.iter().enumerate().map(|(k, e)| {
            let size = portal::all().get(e.portal).map_or(0, |p| p.memory.size);
            let regs = window.regs_of(k);
            let irq = Some(Intx { pin: Intx::INTA, line: e.intid as u8 });
            if let Some(slot) = mapped.get_mut(k) {
                *slot = Some(e.memory.base);
            }
            ShimDevice::new(platform::portal::DEVICE_ID, platform::portal::CLASS, regs.base, regs.size, irq)
                .map(|f| f.with_identity(platform::portal::VENDOR_ID, platform::portal::DEVICE_ID))
                .and_then(|f| f.with_bar2(e.memory.base, size))
        });
        let first_backend = portal_ends.len();
        let backend_functions = backends.iter().enumerate().map(|(j, b)| {
            let regs = window.regs_of(first_backend + j);
            let irq = Some(Intx { pin: Intx::INTA, line: b.intid as u8 });
            let size = crate::vm::forward::all().get(b.link).map_or(0, |l| l.bar2_size);
            ShimDevice::new(platform::forward::DEVICE_ID, platform::forward::CLASS, regs.base, regs.size, irq)
                .map(|f| f.with_identity(platform::forward::VENDOR_ID, platform::forward::DEVICE_ID))
                .and_then(|f| f.with_bar2(b.bar2.base, size))
        });
        let control = control.then(|| {
            let regs = window.regs_of(portal_ends.len() + backends.len());
            ShimDevice::new(platform::control::DEVICE_ID, platform::control::CLASS, regs.base, regs.size, None)
                .map(|f| f.with_identity(platform::control::VENDOR_ID, platform::control::DEVICE_ID))
        });
        let all: Vec<_> = portals.chain(backend_functions).chain(control).collect();
        for (j, b) in backends.iter().enumerate() {
            if let Some(slot) = mapped.get_mut(first_backend + j) {
                *slot = Some(b.bar2.base);
            }
        }
        for function in all {
            if let Err(err) = function.and_then(|f| space.add(f)) {
                log::error!("a PCI function of the hypervisor's: {err}");
            }
        }
        Self { space, mapped, refusals: 0 }
    }

    /// Function `index`'s command register.
    pub fn command(&self, index: usize) -> Option<u16> {
        self.space.command(index)
    }
}

/// The config-space address of function `device` (from [`FIRST_DEVICE`])
/// in the VM's own model, and its index.
fn locate(device: u8) -> Option<(usize, Bdf)> {
    let index = device.checked_sub(FIRST_DEVICE)?;
    Some((usize::from(index), Bdf::new(0, index, 0)?))
}

/// A config read of `vm`'s function at `device`.
pub fn config_read(vm: &Vm, device: u8, reg: u16, size: AccessSize) -> u32 {
    let Some((index, bdf)) = locate(device) else { return size.value_mask() };
    // A function's interrupt status is its model's level.
    let level = match function(vm, index) {
        Some(Function::Portal(e)) => Some(portal::level(&e)),
        Some(Function::Backend(b)) => Some(crate::vm::forward::level(b.link)),
        _ => None,
    };
    let mut f = vm.functions.lock();
    if let Some(level) = level {
        let _ = f.space.set_irq_pending(index, level);
    }
    f.space.read(bdf, reg, size)
}

/// A config write to `vm`'s function at `device`; stage 2 and the
/// function's interrupt follow what it changed.
pub fn config_write(vm: &Vm, device: u8, reg: u16, size: AccessSize, value: u32) {
    use platform::pci::config::offset;
    let Some((index, bdf)) = locate(device) else { return };
    vm.functions.lock().space.write(bdf, reg, size, value);
    let written = u32::from(reg)..u32::from(reg) + u32::from(size.bytes());
    let touches = |r: core::ops::Range<u16>| u32::from(r.start) < written.end && written.start < u32::from(r.end);
    let command = touches(offset::COMMAND..offset::COMMAND + 2);
    if command || touches(offset::BAR2..offset::BAR2 + 8) {
        follow_bar2(vm, index);
    }
    if command {
        match function(vm, index) {
            Some(Function::Portal(e)) => portal::update_line(vm, index, &e),
            Some(Function::Backend(_)) => update_backend_line(vm, index - vm.portal_ends.len()),
            _ => {}
        }
    }
}

/// Re-evaluates backend function `k` of service VM `vm`: if its interrupt
/// source is active and INTx is not disabled, its SPI is made pending.
pub fn update_backend_line(vm: &Vm, k: usize) {
    let Some(b) = vm.backends.get(k) else { return };
    if !crate::vm::forward::level(b.link) || vm.state() != crate::vm::PowerState::Running {
        return;
    }
    let index = vm.portal_ends.len() + k;
    let disabled =
        vm.functions.lock().command(index).is_none_or(|c| c & platform::pci::config::command::INTX_DISABLE != 0);
    if disabled {
        return;
    }
    let mask = vm.vgic.lock().set_pending(0, b.intid, false);
    crate::vm::vgic::kick_vcpus(vm, mask);
}

/// What function `index`'s BAR2 shows, as (where it starts out in the
/// VM's IPA space, the host memory behind it): a portal's shared memory,
/// a client's RAM.
fn bar2_memory(vm: &Vm, index: usize) -> Option<(u64, MemRegion)> {
    match function(vm, index)? {
        Function::Portal(e) => Some((e.memory.base, portal::all().get(e.portal)?.memory)),
        Function::Backend(b) => {
            Some((b.bar2.base, crate::vm::forward::all().get(b.link).and_then(crate::vm::forward::Link::client_ram)?))
        }
        Function::Control => None,
    }
}

/// What a function's BAR2 is called in a log line.
fn bar2_name(vm: &Vm, index: usize) -> String {
    match function(vm, index) {
        Some(Function::Portal(e)) => {
            alloc::format!("portal {}", portal::all().get(e.portal).map_or("?", |p| p.name.as_str()))
        }
        Some(Function::Backend(b)) => {
            let client = crate::vm::forward::all().get(b.link).and_then(|l| crate::vm::get(l.client));
            alloc::format!("backend function for VM {}", client.map_or("?", |c| c.name.as_str()))
        }
        _ => String::from("function"),
    }
}

/// Moves function `index`'s BAR2 memory in `vm`'s stage 2 to where its
/// BAR2 and command register now put it: inside the VM's window, over
/// nothing else; elsewhere it is not mapped (and a hole).
fn follow_bar2(vm: &Vm, index: usize) {
    let (Some(window), Some((_, memory))) = (vm.recipe.window, bar2_memory(vm, index)) else { return };
    let mut f = vm.functions.lock();
    let Some(bar) = f.space.bar2(index) else { return };
    let wanted = bar.decoded().map(|(address, _)| address);
    let old = f.mapped.get(index).copied().flatten();
    if old == wanted {
        return;
    }
    let name = bar2_name(vm, index);
    let mut stage2 = vm.stage2.lock();
    if let Some(old) = old {
        if let Err(err) = stage2.unmap(old, old + memory.size) {
            log::error!("{}{name}: BAR2 memory at IPA {old:#x} not unmapped: {err}", prefix(vm));
            return;
        }
    }
    // The other BAR2s, and the register pages, which share the window.
    let others = f.mapped.iter().enumerate().filter(|&(i, _)| i != index).filter_map(|(i, at)| {
        let (_, memory) = bar2_memory(vm, i)?;
        Some(MemRegion::new((*at)?, memory.size))
    });
    let taken: Vec<MemRegion> = others.chain([window.regs]).collect();
    let whole = window.whole();
    let mapped = wanted.and_then(|ipa| {
        let place = MemRegion::new(ipa, memory.size);
        let inside = ipa >= whole.base && place.end() <= whole.end() && place.end() > ipa;
        match (inside, platform::stage2::check_window(place, stage2.ipa_end(), &taken)) {
            (true, Ok(())) => match stage2.map_ram(ipa, memory.base, memory.size) {
                Ok(()) => Some(ipa),
                Err(err) => {
                    log::error!("{}{name}: BAR2 memory not mapped at IPA {ipa:#x}: {err}", prefix(vm));
                    None
                }
            },
            (inside, checked) => {
                f.refusals = f.refusals.saturating_add(1);
                if f.refusals <= LOGGED_REFUSALS {
                    let why = match checked {
                        Err(why) if inside => alloc::format!("{why}"),
                        _ => alloc::format!("outside the window {whole}"),
                    };
                    log::warn!("{}{name}: BAR2 set to {place}: not mapped there ({why})", prefix(vm));
                }
                None
            }
        }
    });
    if let Some(slot) = f.mapped.get_mut(index) {
        *slot = mapped;
    }
}

/// `vm` restarts (none of its vCPUs runs): its functions go back to their
/// reset state, and stage 2 shows each BAR2 where it started.
pub fn reset_vm(vm: &Vm) {
    let Some(window) = vm.recipe.window else { return };
    let mut f = vm.functions.lock();
    let mut stage2 = vm.stage2.lock();
    let mut moved = false;
    for index in 0..MAX_FUNCTIONS {
        let Some((start, memory)) = bar2_memory(vm, index) else { continue };
        let at = f.mapped.get(index).copied().flatten();
        if at == Some(start) {
            continue;
        }
        let name = bar2_name(vm, index);
        if let Some(at) = at {
            if let Err(err) = stage2.unmap(at, at + memory.size) {
                log::error!("{}{name}: BAR2 memory at IPA {at:#x} not unmapped: {err}", prefix(vm));
            }
            moved = true;
        }
        if let Err(err) = stage2.map_ram(start, memory.base, memory.size) {
            log::error!("{}{name}: BAR2 memory not mapped back: {err}", prefix(vm));
        }
    }
    drop(stage2);
    if moved {
        // The unmapping's TLB maintenance used the current VMID, which is
        // not this VM's when a manager restarts it: drop every VMID's.
        // SAFETY: TLB invalidation only drops cached translations.
        unsafe { core::arch::asm!("dsb ishst", "tlbi alle1is", "dsb ish", "isb", options(nostack)) };
    }
    *f = Functions::new(&vm.portal_ends, &vm.backends, vm.control.is_some(), &window);
    if let Some(control) = &vm.control {
        *control.lock() = platform::control::ControlModel::new();
    }
}

pub fn prefix(vm: &Vm) -> String {
    crate::vm::build::prefix(vm)
}

/// A VM's BAR0 pages: its functions' registers.
pub struct Registers {
    pub vm: usize,
    /// Where the pages start in the VM's IPA space.
    pub base: u64,
}

impl Registers {
    /// The function whose BAR0 decodes `ipa`, and the offset in it.
    fn decode(vm: &Vm, ipa: u64) -> Option<(Function, u64)> {
        let f = vm.functions.lock();
        (0..f.space.len()).find_map(|index| {
            let (at, size) = f.space.bar0(index)?.decoded()?;
            let offset = ipa.checked_sub(at).filter(|&o| o < size)?;
            Some((function(vm, index)?, offset))
        })
    }
}

impl MmioDevice for Registers {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
        let ipa = self.base + offset;
        let vm = crate::vm::get(self.vm).ok_or(MmioFault::Unmapped { ipa })?;
        match Self::decode(vm, ipa).ok_or(MmioFault::Unmapped { ipa })? {
            (Function::Portal(e), at) => portal::read(&e, at, size).ok_or(MmioFault::Unmapped { ipa }),
            (Function::Backend(b), at) => Ok(crate::vm::forward::backend_read(b.link, at, size)),
            (Function::Control, at) => Ok(crate::vm::control::read(vm, at, size)),
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        let ipa = self.base + offset;
        let vm = crate::vm::get(self.vm).ok_or(MmioFault::Unmapped { ipa })?;
        match Self::decode(vm, ipa).ok_or(MmioFault::Unmapped { ipa })? {
            (Function::Portal(e), at) => portal::write(&e, at, size, value),
            (Function::Backend(b), at) => crate::vm::forward::backend_write(b.link, at, size, value),
            (Function::Control, at) => crate::vm::control::write(vm, at, size, value),
        }
        Ok(())
    }
}
