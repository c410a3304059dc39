//! Portals between VMs at run time (`docs/portals.md`): each portal's
//! state, the PCI function each of its two ends sees, and the second
//! validation level, every request checked before it reaches the peer.
//!
//! A portal is a machine-level object joining two VMs, built once at boot
//! like the VMs and living as long ([`install`], [`all`]). Its register
//! state and the per-request rule are `platform::portal::PortalModel`
//! (host-tested); this module puts it behind the guests' accesses:
//!
//! - **The function.** Each end VM has, on its PCI host bridge, one
//!   function per portal it is an end of, at device
//!   [`FIRST_DEVICE`]` + k`. Its config space is the same model as the
//!   monitor's shim functions (`platform::pci::config`), but kept here, in
//!   the VM ([`Functions`]): the function is the hypervisor's own device,
//!   and its command register (INTx disable) and interrupt status are part
//!   of the doorbell's state machine, which a round trip to EL3 on every
//!   doorbell would only slow down. `crate::vm::ecam` sends the accesses
//!   to devices from [`FIRST_DEVICE`] on here.
//! - **BAR0, the registers**, emulated: every access traps. All of a VM's
//!   BAR0 pages lie in one window registered on its MMIO bus
//!   ([`Registers`]), which finds the function whose BAR0 decodes the
//!   address; a BAR0 moved out of the window decodes nothing.
//! - **BAR2, the shared memory**, is ordinary RAM that both ends' stage 2
//!   map (and no other VM's): stage 2 follows the BAR like a shim
//!   function's window, inside the VM's portal window only.
//! - **The interrupt** is INTA, a virtual SPI of the end's VM chosen at
//!   build time and routed by the host bridge's `interrupt-map`. Its level
//!   is the model's (`INT_STATUS` or `EVENTS` non-zero) unless the
//!   function's INTx disable is set; after every change that leaves it
//!   asserted the SPI is made pending again (at worst one spurious
//!   interrupt, which the status register lets a driver see through).
//!
//! Locks: a VM's [`Functions`] before a portal's model, never the other
//! way, and neither is held while the vGIC is taken.

use crate::vm::{PowerState, Vm};
use alloc::string::String;
use alloc::vec::Vec;
use platform::board::MemRegion;
use platform::mmio::{MmioDevice, MmioFault};
use platform::pci::config::{command, ConfigSpace, Intx, ShimDevice};
use platform::portal::{Counters, Effect, PeerState, PortalModel};
use spin::{Mutex, Once};

/// The first device number of the portal functions on a host bridge:
/// above the monitor's shim functions, so each keeps its number.
pub const FIRST_DEVICE: u8 = 16;
/// Portal functions one VM can have (one per portal of the description).
pub const MAX_ENDS: usize = platform::board::portals::MAX_PORTALS;
/// Each BAR2 has a slot this large in the VM's portal window: the largest
/// shared memory, so every BAR2 is aligned to its size.
pub const BAR2_SLOT: u64 = platform::board::portals::MAX_SIZE_KIB * 1024;

/// One portal.
pub struct Portal {
    pub name: String,
    /// The VMs at end 0 and end 1 (their indices in `crate::vm::all`).
    pub vms: [usize; 2],
    /// Its shared memory (host physical), carved after the VMs' RAM.
    pub memory: MemRegion,
    model: Mutex<PortalModel>,
}

impl Portal {
    pub fn new(index: u8, name: String, vms: [usize; 2], memory: MemRegion, allowed: [u32; 2]) -> Self {
        Self { name, vms, memory, model: Mutex::new(PortalModel::new(index, allowed)) }
    }
}

static PORTALS: Once<Vec<Portal>> = Once::new();

/// Makes the portals built at boot the machine's, once.
pub fn install(portals: Vec<Portal>) {
    PORTALS.call_once(|| portals);
}

/// Every portal (none before [`install`], or without any).
pub fn all() -> &'static [Portal] {
    PORTALS.get().map_or(&[], Vec::as_slice)
}

/// One end of a portal as its VM has it: function `k` of the VM's list.
#[derive(Clone, Copy, Debug)]
pub struct End {
    /// The portal's index in [`all`].
    pub portal: usize,
    /// 0 or 1.
    pub end: usize,
    /// The virtual SPI its INTA is routed to.
    pub intid: u32,
    /// Where BAR0 and BAR2 start out in the VM's IPA space.
    pub regs: MemRegion,
    pub memory: MemRegion,
}

/// A VM's portal functions' config space, and where stage 2 shows each
/// one's BAR2 now.
pub struct Functions {
    space: ConfigSpace<MAX_ENDS>,
    mapped: [Option<u64>; MAX_ENDS],
    /// Refused BAR2 places so far (the first few are logged).
    refusals: u32,
}

/// How many refused BAR2 places are logged per VM.
const LOGGED_REFUSALS: u32 = 8;

/// The VM's portal window: BAR2 slots, then the BAR0 pages.
pub fn window(base: u64, ends: usize) -> (MemRegion, MemRegion) {
    let memory = MemRegion::new(base, BAR2_SLOT * ends as u64);
    let regs = MemRegion::new(memory.end(), platform::portal::REGS_SIZE * ends as u64);
    (memory, regs)
}

/// The functions of a VM with `ends`, their BARs where [`End`] says.
pub fn functions(ends: &[End]) -> Functions {
    let mut space = ConfigSpace::new();
    for e in ends {
        let size = all().get(e.portal).map_or(0, |p| p.memory.size);
        let irq = Some(Intx { pin: Intx::INTA, line: e.intid as u8 });
        let function =
            ShimDevice::new(platform::portal::DEVICE_ID, platform::portal::CLASS, e.regs.base, e.regs.size, irq)
                .map(|f| f.with_identity(platform::portal::VENDOR_ID, platform::portal::DEVICE_ID))
                .and_then(|f| f.with_bar2(e.memory.base, size));
        if let Err(err) = function.and_then(|f| space.add(f)) {
            log::error!("portal function for {:?}: {err}", all().get(e.portal).map(|p| p.name.as_str()));
        }
    }
    let mut mapped = [None; MAX_ENDS];
    for (slot, e) in mapped.iter_mut().zip(ends) {
        *slot = Some(e.memory.base);
    }
    Functions { space, mapped, refusals: 0 }
}

/// The state the VM at the other end of `vm`'s end `e` is in.
fn peer_state(portal: &Portal, end: usize) -> PeerState {
    let peer = portal.vms.get(1 - end.min(1)).and_then(|&i| crate::vm::get(i));
    match peer.map(Vm::state) {
        Some(PowerState::Running) => PeerState::Running,
        Some(PowerState::Stopping) => PeerState::Stopping,
        _ => PeerState::Off,
    }
}

/// Config space access to `vm`'s portal function at device `device`
/// (from [`FIRST_DEVICE`]): a read.
pub fn config_read(vm: &Vm, device: u8, reg: u16, size: platform::pci::AccessSize) -> u32 {
    let index = usize::from(device.saturating_sub(FIRST_DEVICE));
    let Some(bdf) = platform::pci::Bdf::new(0, index as u8, 0) else { return size.value_mask() };
    let mut f = vm.portal_functions.lock();
    // The status register's interrupt bit is the model's level.
    if let Some(e) = vm.portal_ends.get(index) {
        let level = all().get(e.portal).is_some_and(|p| p.model.lock().level(e.end));
        let _ = f.space.set_irq_pending(index, level);
    }
    f.space.read(bdf, reg, size)
}

/// A config write to `vm`'s portal function at `device`; stage 2 and the
/// interrupt follow what it changed.
pub fn config_write(vm: &Vm, device: u8, reg: u16, size: platform::pci::AccessSize, value: u32) {
    use platform::pci::config::offset;
    let index = usize::from(device.saturating_sub(FIRST_DEVICE));
    let Some(bdf) = platform::pci::Bdf::new(0, index as u8, 0) else { return };
    vm.portal_functions.lock().space.write(bdf, reg, size, value);
    let written = u32::from(reg)..u32::from(reg) + u32::from(size.bytes());
    let touches = |r: core::ops::Range<u16>| u32::from(r.start) < written.end && written.start < u32::from(r.end);
    if touches(offset::COMMAND..offset::COMMAND + 2) || touches(offset::BAR2..offset::BAR2 + 8) {
        follow_bar2(vm, index);
    }
    if touches(offset::COMMAND..offset::COMMAND + 2) {
        if let Some(e) = vm.portal_ends.get(index) {
            update_line(vm, index, e);
        }
    }
}

/// Moves function `index`'s shared memory in `vm`'s stage 2 to where its
/// BAR2 and command register now put it: inside the VM's portal window,
/// over nothing else; elsewhere it is not mapped (and a hole).
fn follow_bar2(vm: &Vm, index: usize) {
    let (Some(e), Some(window)) = (vm.portal_ends.get(index), vm.recipe.portal_window) else { return };
    let Some(portal) = all().get(e.portal) else { return };
    let mut f = vm.portal_functions.lock();
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
    let others = f.mapped.iter().enumerate().filter(|&(i, _)| i != index).filter_map(|(i, at)| {
        Some(MemRegion::new((*at)?, vm.portal_ends.get(i).and_then(|e| all().get(e.portal))?.memory.size))
    });
    // The register pages share the window: BAR2 may not cover them.
    let regs = platform::portal::REGS_SIZE * vm.portal_ends.len() as u64;
    let taken: Vec<MemRegion> = others.chain([MemRegion::new(window.end() - regs, regs)]).collect();
    let mapped = wanted.and_then(|ipa| {
        let place = MemRegion::new(ipa, portal.memory.size);
        let inside = ipa >= window.base && place.end() <= window.end() && place.end() > ipa;
        let checked = platform::stage2::check_window(place, stage2.ipa_end(), &taken);
        match (inside, checked) {
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
                        _ => alloc::format!("outside the portal window {window}"),
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

/// `vm` restarts, from one of its vCPUs (the others stopped): its
/// portal functions go back to their reset state, and stage 2 shows each
/// BAR2 where it started.
pub fn reset_vm(vm: &Vm) {
    let mut f = vm.portal_functions.lock();
    let mut stage2 = vm.stage2.lock();
    for (index, e) in vm.portal_ends.iter().enumerate() {
        let Some(portal) = all().get(e.portal) else { continue };
        let at = f.mapped.get(index).copied().flatten();
        if at == Some(e.memory.base) {
            continue;
        }
        if let Some(at) = at {
            if let Err(err) = stage2.unmap(at, at + portal.memory.size) {
                log::error!("{}portal {}: shared memory at IPA {at:#x} not unmapped: {err}", prefix(vm), portal.name);
            }
        }
        if let Err(err) = stage2.map_ram(e.memory.base, portal.memory.base, portal.memory.size) {
            log::error!("{}portal {}: shared memory not mapped back: {err}", prefix(vm), portal.name);
        }
    }
    drop(stage2);
    *f = functions(&vm.portal_ends);
}

fn prefix(vm: &Vm) -> String {
    crate::vm::build::prefix(vm)
}

/// Re-evaluates end `e` (function `index` of `vm`): if its interrupt is
/// asserted, its SPI is made pending (and the vCPU it targets woken).
fn update_line(vm: &Vm, index: usize, e: &End) {
    let Some(portal) = all().get(e.portal) else { return };
    let level = portal.model.lock().level(e.end);
    if !level {
        return;
    }
    let disabled = vm.portal_functions.lock().space.command(index).is_none_or(|c| c & command::INTX_DISABLE != 0);
    if disabled || vm.state() != PowerState::Running {
        return;
    }
    let mask = vm.vgic.lock().set_pending(0, e.intid, false);
    crate::vm::vgic::kick_vcpus(vm, mask);
}

/// Applies `effect` of a change to `portal` (index `p`): each end whose
/// level may have changed is re-evaluated.
fn apply(p: usize, portal: &Portal, effect: Effect) {
    for (end, changed) in effect.level_changed.iter().enumerate() {
        if !changed {
            continue;
        }
        let Some(vm) = portal.vms.get(end).and_then(|&i| crate::vm::get(i)) else { continue };
        if let Some((index, e)) = vm.portal_ends.iter().enumerate().find(|(_, e)| e.portal == p && e.end == end) {
            update_line(vm, index, e);
        }
    }
}

/// `vm` changed power state: the peers of its ends are told
/// (`EVENTS`), and a VM that starts gets fresh registers.
pub fn state_changed(vm: &Vm) {
    let starting = vm.state() == PowerState::Running;
    for e in &vm.portal_ends {
        let Some(portal) = all().get(e.portal) else { continue };
        let effect = {
            let mut model = portal.model.lock();
            if starting {
                let _ = model.reset_end(e.end);
            }
            model.peer_changed(e.end)
        };
        apply(e.portal, portal, effect);
    }
}

/// A VM's BAR0 pages: the portal functions' registers.
pub struct Registers {
    pub vm: usize,
    /// Where the window starts in the VM's IPA space.
    pub base: u64,
}

impl Registers {
    /// The function whose BAR0 decodes `ipa`, and the offset in it.
    fn decode(&self, vm: &Vm, ipa: u64) -> Option<(End, u64)> {
        let f = vm.portal_functions.lock();
        vm.portal_ends.iter().enumerate().find_map(|(index, e)| {
            let (at, size) = f.space.bar0(index)?.decoded()?;
            (ipa >= at && ipa - at < size).then_some((*e, ipa - at))
        })
    }
}

impl MmioDevice for Registers {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
        let ipa = self.base + offset;
        let vm = crate::vm::get(self.vm).ok_or(MmioFault::Unmapped { ipa })?;
        let (e, at) = self.decode(vm, ipa).ok_or(MmioFault::Unmapped { ipa })?;
        let portal = all().get(e.portal).ok_or(MmioFault::Unmapped { ipa })?;
        let state = peer_state(portal, e.end);
        Ok(portal.model.lock().read(e.end, at, size, state))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        let ipa = self.base + offset;
        let vm = crate::vm::get(self.vm).ok_or(MmioFault::Unmapped { ipa })?;
        let (e, at) = self.decode(vm, ipa).ok_or(MmioFault::Unmapped { ipa })?;
        let portal = all().get(e.portal).ok_or(MmioFault::Unmapped { ipa })?;
        let running = peer_state(portal, e.end) == PeerState::Running;
        let effect = portal.model.lock().write(e.end, at, size, value, running);
        apply(e.portal, portal, effect);
        Ok(())
    }
}

/// The power-off summary: each end's counters.
pub fn report() {
    for portal in all() {
        for (end, &vm) in portal.vms.iter().enumerate() {
            let name = crate::vm::get(vm).map_or("?", |v| v.name.as_str());
            let counters: Counters = portal.model.lock().counters(end);
            log::info!("{}{} end {end} ({name}): {counters}", platform::portal::REPORT_PREFIX, portal.name);
        }
    }
}
