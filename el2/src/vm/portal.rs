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
//!   function per portal it is an end of (`crate::vm::vpci`, which also
//!   keeps their config space, BAR0's trapping window and BAR2's stage-2
//!   mapping). BAR0 is the registers, emulated here from the model; BAR2
//!   the shared memory, ordinary RAM that both ends' stage 2 map (and no
//!   other VM's).
//! - **The interrupt** is INTA, a virtual SPI of the end's VM chosen at
//!   build time and routed by the host bridge's `interrupt-map`. Its level
//!   is the model's (`INT_STATUS` or `EVENTS` non-zero) unless the
//!   function's INTx disable is set; after every change that leaves it
//!   asserted the SPI is made pending again (at worst one spurious
//!   interrupt, which the status register lets a driver see through).
//!
//! Locks: a VM's functions (`crate::vm::vpci::Functions`) before a
//! portal's model, never the other way, and neither is held while the
//! vGIC is taken.

use crate::vm::{PowerState, Vm};
use alloc::string::String;
use alloc::vec::Vec;
use platform::board::MemRegion;
use platform::pci::config::command;
use platform::portal::{Counters, Effect, PeerState, PortalModel};
use spin::{Mutex, Once};

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
    /// Where its shared memory (BAR2) starts out in the VM's IPA space.
    pub memory: MemRegion,
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

/// Whether end `e`'s interrupt source is active (its function's INTx
/// disable decides whether it is asserted).
pub fn level(e: &End) -> bool {
    all().get(e.portal).is_some_and(|p| p.model.lock().level(e.end))
}

/// A read of end `e`'s registers; `None` if the portal is gone.
pub fn read(e: &End, offset: u64, size: u8) -> Option<u64> {
    let portal = all().get(e.portal)?;
    let state = peer_state(portal, e.end);
    Some(portal.model.lock().read(e.end, offset, size, state))
}

/// A write to end `e`'s registers: a request is checked there (level
/// two), and the ends whose interrupt it may have changed re-evaluated.
pub fn write(e: &End, offset: u64, size: u8, value: u64) {
    let Some(portal) = all().get(e.portal) else { return };
    let running = peer_state(portal, e.end) == PeerState::Running;
    let effect = portal.model.lock().write(e.end, offset, size, value, running);
    apply(e.portal, portal, effect);
}

/// Re-evaluates end `e` (function `index` of `vm`): if its interrupt is
/// asserted, its SPI is made pending (and the vCPU it targets woken).
pub fn update_line(vm: &Vm, index: usize, e: &End) {
    if !level(e) {
        return;
    }
    let disabled = vm.functions.lock().command(index).is_none_or(|c| c & command::INTX_DISABLE != 0);
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
