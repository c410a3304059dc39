//! The hypervisor's own PCI functions on a VM's host bridge: one per
//! portal the VM is an end of ([`crate::vm::portal`]), then, for a VM
//! marked `hv,manager`, the VM control function ([`crate::vm::control`]).
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
//! one-to-one: a [`BAR2_SLOT`] per portal for its shared memory (BAR2, RAM
//! mapped in stage 2), then a page per function for its registers (BAR0,
//! emulated: every access traps). All the BAR0 pages are one device on the
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
/// Functions one VM can have: a portal function per portal of the
/// description, and the control function.
pub const MAX_FUNCTIONS: usize = platform::board::portals::MAX_PORTALS + 1;
/// Each BAR2 has a slot this large in the window: the largest shared
/// memory, so every BAR2 is aligned to its size.
pub const BAR2_SLOT: u64 = platform::board::portals::MAX_SIZE_KIB * 1024;
/// A function's registers (BAR0): one page, whatever the function.
pub const REGS_SIZE: u64 = 4096;
const _: () = assert!(platform::portal::REGS_SIZE == REGS_SIZE && platform::control::REGS_SIZE == REGS_SIZE);

/// What function `index` of a VM is.
#[derive(Clone, Copy, Debug)]
pub enum Function {
    Portal(portal::End),
    Control,
}

/// The functions of `vm`, in device order: its portal ends, then the
/// control function if it is a manager.
pub fn function(vm: &Vm, index: usize) -> Option<Function> {
    match vm.portal_ends.get(index) {
        Some(e) => Some(Function::Portal(*e)),
        None if index == vm.portal_ends.len() && vm.control.is_some() => Some(Function::Control),
        None => None,
    }
}

/// A VM's window: the BAR2 slots, then the BAR0 pages.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub memory: MemRegion,
    pub regs: MemRegion,
}

impl Window {
    /// The window at `base` for `portals` portal functions among
    /// `functions` in all.
    pub fn new(base: u64, portals: usize, functions: usize) -> Self {
        let memory = MemRegion::new(base, BAR2_SLOT * portals as u64);
        Self { memory, regs: MemRegion::new(memory.end(), REGS_SIZE * functions as u64) }
    }

    /// Function `index`'s registers, where they start out.
    pub fn regs_of(&self, index: usize) -> MemRegion {
        MemRegion::new(self.regs.base + REGS_SIZE * index as u64, REGS_SIZE)
    }

    /// Portal `k`'s BAR2 slot (its memory is `size` bytes of it).
    pub fn memory_of(&self, k: usize, size: u64) -> MemRegion {
        MemRegion::new(self.memory.base + BAR2_SLOT * k as u64, size)
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
    /// The config space of `portal_ends`' functions and, for a manager,
    /// the control function's, their BARs where `window` puts them.
    pub fn new(portal_ends: &[portal::End], control: bool, window: &Window) -> Self {
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
        let control = control.then(|| {
            let regs = window.regs_of(portal_ends.len());
            ShimDevice::new(platform::control::DEVICE_ID, platform::control::CLASS, regs.base, regs.size, None)
                .map(|f| f.with_identity(platform::control::VENDOR_ID, platform::control::DEVICE_ID))
        });
        let all: Vec<_> = portals.chain(control).collect();
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
    let mut f = vm.functions.lock();
    // A portal function's interrupt status is its model's level.
    if let Some(Function::Portal(e)) = function(vm, index) {
        let _ = f.space.set_irq_pending(index, portal::level(&e));
    }
    f.space.read(bdf, reg, size)
}

/// A config write to `vm`'s function at `device`; stage 2 and a portal's
/// interrupt follow what it changed.
pub fn config_write(vm: &Vm, device: u8, reg: u16, size: AccessSize, value: u32) {
    use platform::pci::config::offset;
    let Some((index, bdf)) = locate(device) else { return };
    vm.functions.lock().space.write(bdf, reg, size, value);
    let written = u32::from(reg)..u32::from(reg) + u32::from(size.bytes());
    let touches = |r: core::ops::Range<u16>| u32::from(r.start) < written.end && written.start < u32::from(r.end);
    let command = touches(offset::COMMAND..offset::COMMAND + 2);
    if let Some(Function::Portal(e)) = function(vm, index) {
        if command || touches(offset::BAR2..offset::BAR2 + 8) {
            follow_bar2(vm, index, &e);
        }
        if command {
            portal::update_line(vm, index, &e);
        }
    }
}

/// Moves portal function `index`'s shared memory in `vm`'s stage 2 to
/// where its BAR2 and command register now put it: inside the VM's
/// window, over nothing else; elsewhere it is not mapped (and a hole).
fn follow_bar2(vm: &Vm, index: usize, e: &portal::End) {
    let (Some(window), Some(portal)) = (vm.recipe.window, portal::all().get(e.portal)) else { return };
    let mut f = vm.functions.lock();
    let Some(bar) = f.space.bar2(index) else { return };
    let wanted = bar.decoded().map(|(address, _)| address);
    let old = f.mapped.get(index).copied().flatten();
    if old == wanted {
        return;
    }
    let mut stage2 = vm.stage2.lock();
    if let Some(old) = old {
        if let Err(err) = stage2.unmap(old, old + portal.memory.size) {
            log::error!("{}portal {}: shared memory at IPA {old:#x} not unmapped: {err}", prefix(vm), portal.name);
            return;
        }
    }
    // The other BAR2s, and the register pages, which share the window.
    let others = f.mapped.iter().enumerate().filter(|&(i, _)| i != index).filter_map(|(i, at)| {
        let size = vm.portal_ends.get(i).and_then(|e| portal::all().get(e.portal))?.memory.size;
        Some(MemRegion::new((*at)?, size))
    });
    let taken: Vec<MemRegion> = others.chain([window.regs]).collect();
    let whole = window.whole();
    let mapped = wanted.and_then(|ipa| {
        let place = MemRegion::new(ipa, portal.memory.size);
        let inside = ipa >= whole.base && place.end() <= whole.end() && place.end() > ipa;
        match (inside, platform::stage2::check_window(place, stage2.ipa_end(), &taken)) {
            (true, Ok(())) => match stage2.map_ram(ipa, portal.memory.base, portal.memory.size) {
                Ok(()) => Some(ipa),
                Err(err) => {
                    log::error!(
                        "{}portal {}: shared memory not mapped at IPA {ipa:#x}: {err}",
                        prefix(vm),
                        portal.name
                    );
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
                    log::warn!("{}portal {}: BAR2 set to {place}: not mapped there ({why})", prefix(vm), portal.name);
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
    for (index, e) in vm.portal_ends.iter().enumerate() {
        let Some(portal) = portal::all().get(e.portal) else { continue };
        let at = f.mapped.get(index).copied().flatten();
        if at == Some(e.memory.base) {
            continue;
        }
        if let Some(at) = at {
            if let Err(err) = stage2.unmap(at, at + portal.memory.size) {
                log::error!("{}portal {}: shared memory at IPA {at:#x} not unmapped: {err}", prefix(vm), portal.name);
            }
            moved = true;
        }
        if let Err(err) = stage2.map_ram(e.memory.base, portal.memory.base, portal.memory.size) {
            log::error!("{}portal {}: shared memory not mapped back: {err}", prefix(vm), portal.name);
        }
    }
    drop(stage2);
    if moved {
        // The unmapping's TLB maintenance used the current VMID, which is
        // not this VM's when a manager restarts it: drop every VMID's.
        // SAFETY: TLB invalidation only drops cached translations.
        unsafe { core::arch::asm!("dsb ishst", "tlbi alle1is", "dsb ish", "isb", options(nostack)) };
    }
    *f = Functions::new(&vm.portal_ends, vm.control.is_some(), &window);
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
            (Function::Control, at) => Ok(crate::vm::control::read(vm, at, size)),
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        let ipa = self.base + offset;
        let vm = crate::vm::get(self.vm).ok_or(MmioFault::Unmapped { ipa })?;
        match Self::decode(vm, ipa).ok_or(MmioFault::Unmapped { ipa })? {
            (Function::Portal(e), at) => portal::write(&e, at, size, value),
            (Function::Control, at) => crate::vm::control::write(vm, at, size, value),
        }
        Ok(())
    }
}
