//! Virtual machines: each [`Vm`] owns what makes it a machine of its own,
//! its RAM, stage-2 tables and VMID, its vCPUs ([`vcpu`]), its interrupt
//! controller model ([`vgic`]), its emulated MMIO devices ([`mmio`]), its
//! PCI view ([`ecam`]), its console and its power state; [`guest`] and
//! [`linux`] put what it boots into its RAM.
//!
//! The VMs are built once at boot ([`install`]) and live for the whole run:
//! a VM that powers off keeps its object (a later start or restart reuses
//! it), so a `&'static Vm` is always valid. What changes while they run
//! (power state, per-vCPU state, the models behind their locks) sits in
//! atomics and locks inside the objects; nothing about a VM lives in a
//! module-level global.
//!
//! Which VM and vCPU a physical CPU runs is in its private data area
//! ([`crate::mm::prda`]): [`current`] is two loads from it.

pub mod build;
pub mod console;
pub mod control;
pub mod cpus;
pub mod ecam;
pub mod forward;
pub mod guest;
pub mod integrity;
pub mod linux;
pub mod mmio;
pub mod portal;
pub mod power;
pub mod sched;
pub mod vcpu;
pub mod vgic;
pub mod vpci;

use crate::irq::kick_lock::KickLock;
use crate::mm::stage2::Stage2;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use platform::board::MemRegion;
use platform::mmio::MmioBus;
use platform::vgic::VGic;
use spin::{Mutex, Once};
pub use vcpu::Vcpu;

/// Emulated MMIO windows per VM: the GIC's two, the console, the test
/// device, the PCI host bridge, the portal registers, and room to grow.
pub const MAX_DEVICES: usize = 8;

/// A VM's power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PowerState {
    /// Not started, or powered off.
    Off = 0,
    /// Its vCPU 0 was started; some of its vCPUs may be on.
    Running = 1,
    /// Going off (or restarting): its vCPUs are being stopped.
    Stopping = 2,
}

/// What the VM's console is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    None,
    /// The physical UART, passed through (the only VM owns the machine).
    Passthrough,
    /// An emulated PL011 at the host UART's address ([`console`]).
    Emulated,
}

/// One virtual machine.
pub struct Vm {
    /// Its place in [`all`].
    pub index: usize,
    /// What its console lines and the tools call it.
    pub name: String,
    /// Its RAM, identity-mapped (IPA = PA): a range of host RAM no other VM
    /// and nothing of the hypervisor's overlaps.
    pub ram: MemRegion,
    pub vcpus: Vec<Vcpu>,
    pub stage2: Mutex<Stage2>,
    /// The distributor and redistributors' state, and every vCPU's
    /// interrupts. Taken on most exits that involve interrupts, so waiters
    /// sleep rather than spin ([`crate::irq::kick_lock`]). On the heap:
    /// the model is 7 KiB, and a `Vm` is built and moved on the boot
    /// CPU's stack.
    pub vgic: KickLock<alloc::boxed::Box<VGic>>,
    /// Where the guest finds its GIC's frames.
    pub gic: vgic::GuestGic,
    /// Its emulated devices. The lock is held while a device serves an
    /// access (the vGIC's frames take the model's lock inside it).
    pub bus: KickLock<MmioBus<'static, MAX_DEVICES>>,
    /// Physical SPIs this VM owns (forwarded with the HW bit).
    pub spis: Vec<u32>,
    /// Its PCI view, if it has the host bridge: where the functions'
    /// windows are in its IPA space ([`ecam`]).
    pub pci: Once<ecam::BarWindows>,
    /// The portals it is an end of, in the order of its host bridge's
    /// portal functions ([`portal`]).
    pub portal_ends: Vec<portal::End>,
    /// The clients it serves forwarded virtio devices of: a backend
    /// function each, after its portal functions ([`forward`]).
    pub backends: Vec<vpci::Backend>,
    /// Its own forwarded virtio devices ([`forward`]).
    pub virtio: Vec<forward::Device>,
    /// `hv,manager`: it may manage the other VMs, through its control
    /// function ([`control`]), whose state this is.
    pub manager: bool,
    pub control: Option<Mutex<platform::control::ControlModel>>,
    /// The config space of the hypervisor's own functions on its host
    /// bridge: its portal functions, then its control function ([`vpci`]).
    pub functions: Mutex<vpci::Functions>,
    pub console: Console,
    /// The emulated PL011 and its held-back input (used with
    /// [`Console::Emulated`]).
    pub uart: Mutex<console::Port>,
    /// What its guest has written to the DCC console since its last
    /// newline (`crate::traps::debugregs`).
    pub dcc_line: Mutex<LineBuffer>,
    /// Whether this VM is the only one, described by nothing but QEMU's
    /// `-kernel` (or the built-in guest-stub): it then owns the machine,
    /// and its `SYSTEM_RESET` resets the board.
    pub owns_machine: bool,
    /// What it boots, to load it again on a reset.
    pub recipe: build::Recipe,
    state: AtomicU8,
    /// What it reported with `HV_SET_EXIT_STATUS`.
    status: AtomicU32,
    /// How many times it started afresh after its first start (a
    /// guest-stub VM's DT says so).
    pub starts: AtomicU32,
    /// The counter when the hypervisor decided to start it (0: reported).
    start_decided: core::sync::atomic::AtomicU64,
    /// How its vCPUs are scheduled.
    pub sched: sched::Params,
    /// `CNTVOFF_EL2` for its vCPUs: the physical count when it started,
    /// so that its virtual counter starts from 0.
    pub cntvoff: core::sync::atomic::AtomicU64,
    /// Its kernel integrity, if its description or the command line asks
    /// ([`integrity`]).
    pub integrity: Option<integrity::Integrity>,
}

impl Vm {
    pub fn state(&self) -> PowerState {
        match self.state.load(Ordering::Acquire) {
            1 => PowerState::Running,
            2 => PowerState::Stopping,
            _ => PowerState::Off,
        }
    }

    /// Sets the state; the peers of its portals and the other side of its
    /// forwarded devices learn of it.
    pub fn set_state(&self, state: PowerState) {
        self.state.store(state as u8, Ordering::Release);
        portal::state_changed(self);
        forward::state_changed(self);
    }

    /// Moves the state from `from` to `to`; false if it was not `from`.
    pub fn change_state(&self, from: PowerState, to: PowerState) -> bool {
        let changed = self.state.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if changed {
            portal::state_changed(self);
            forward::state_changed(self);
        }
        changed
    }

    /// Whether it was ever started: its virtual counter's offset is the
    /// physical count at its start, never 0 after it.
    pub fn has_started(&self) -> bool {
        self.cntvoff.load(Ordering::Relaxed) != 0
    }

    /// The guest's verdict, reported at power-off.
    pub fn set_status(&self, status: u32) {
        self.status.store(status, Ordering::Relaxed);
    }

    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Relaxed)
    }

    /// The vCPU with guest-visible affinity `mpidr`.
    pub fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<&Vcpu> {
        let affinity = platform::arch::mpidr_affinity(mpidr);
        self.vcpus.iter().find(|v| v.mpidr == affinity)
    }

    /// Whether `[ipa, ipa + len)` lies in this VM's RAM.
    pub fn owns_ram(&self, ipa: u64, len: u64) -> bool {
        ipa >= self.ram.base && ipa.checked_add(len).is_some_and(|end| end <= self.ram.end())
    }
}

/// A line of guest text being gathered a byte at a time.
pub struct LineBuffer {
    bytes: [u8; LINE_MAX],
    len: usize,
}

/// The longest line a [`LineBuffer`] holds before it is printed anyway.
const LINE_MAX: usize = 256;

impl LineBuffer {
    pub const fn new() -> Self {
        Self { bytes: [0; LINE_MAX], len: 0 }
    }

    pub fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    pub fn is_full(&self) -> bool {
        self.len == LINE_MAX
    }

    pub fn text(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

static VMS: Once<Vec<Vm>> = Once::new();

/// Makes the VMs built at boot the machine's, once.
pub fn install(vms: Vec<Vm>) -> &'static [Vm] {
    VMS.call_once(|| vms)
}

/// Every VM (none before [`install`]).
pub fn all() -> &'static [Vm] {
    VMS.get().map_or(&[], Vec::as_slice)
}

pub fn get(index: usize) -> Option<&'static Vm> {
    all().get(index)
}

/// The VM and vCPU this CPU runs, if it runs one: two loads from its
/// private data area, on every exit's path.
#[inline]
pub fn current() -> Option<(&'static Vm, &'static Vcpu)> {
    let (vm, vcpu) = crate::mm::prda::running()?;
    // SAFETY: [`set_running`] is the only writer of these addresses, and
    // gives it `&'static` references into [`VMS`], which is never dropped,
    // moved or changed after [`install`]; `Vm` and `Vcpu` are `Sync`.
    Some(unsafe { (&*(vm as *const Vm), &*(vcpu as *const Vcpu)) })
}

/// This CPU runs `vcpu` of `vm` from now on (or nothing).
pub fn set_running(running: Option<(&'static Vm, &'static Vcpu)>) {
    crate::mm::prda::set_running(running.map(|(vm, vcpu)| (vm as *const Vm as u64, vcpu as *const Vcpu as u64)));
}
