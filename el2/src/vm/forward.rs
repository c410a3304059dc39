//! Forwarded virtio devices (`docs/service-vm.md`): a client VM's
//! `virtio,mmio` register windows, whose accesses the hypervisor does not
//! emulate but hands to the service VM that serves the device, one access
//! at a time; and the service VM's side, the backend function.
//!
//! The device logic is not here: it is in the service VM (a Linux program,
//! `hvvirtio`). What the hypervisor keeps is the small privileged core:
//!
//! - **A link** per (client, service VM) pair ([`Link`], built once at boot
//!   like the VMs and living as long): the client's devices that VM
//!   serves, the queue of their trapped accesses and the backend
//!   function's registers (`platform::forward::BackendModel`, host-tested).
//! - **The client's side** ([`handle`]): an access to a device's window is
//!   checked (`platform::forward::Access`), queued, and its vCPU blocks
//!   until the service VM completes it: it is then resumed after the
//!   instruction with the value read ([`resume`]). While it waits, nothing
//!   but the completion (or its VM's stop) wakes it, as a CPU waits for a
//!   load from a slow bus. Accesses of a shape no `virtio,mmio` register
//!   has get a data abort here and never reach the service VM.
//! - **The service VM's side**: the backend function on its host bridge
//!   (`crate::vm::vpci`), BAR0 the registers ([`backend_read`],
//!   [`backend_write`]), BAR2 the client's RAM (the only memory of another
//!   VM it can reach, and only while it serves), INTA asserted while
//!   requests wait or events are unread.
//! - **Losing the service** ([`state_changed`]): a service VM that stops
//!   (or restarts) after serving a running client leaves the client's
//!   devices *failed* until the client starts again: waiting accesses and
//!   every later one are answered here by `platform::forward::Fallback` (a
//!   device that needs a reset, with a configuration of zeros), each device
//!   raises its configuration-change interrupt once, and the requests the
//!   client's driver made available and the service VM never used are used
//!   here with an error (`platform::forward::fail`, also at every later
//!   queue notification), so the client's driver fails its I/O instead of
//!   waiting for good. This happens once the service VM's vCPUs are all
//!   stopped, so nothing of it still writes the rings. A service VM that is
//!   not running when the client accesses a device (never started, say)
//!   gives the fallback's answers, without the interrupt.
//!
//! A device's interrupt is a virtual SPI of the client, edge-triggered:
//! the backend raises it by setting its bit in `IRQ_LEVEL`, and each rising
//! edge makes it pending.
//!
//! Locks: a link's state is taken alone, never with a vGIC, a VM's
//! functions or another link's.

use crate::vm::{PowerState, Vcpu, Vm};
use alloc::vec::Vec;
use platform::arch::trap::TrapFrame;
use platform::board::MemRegion;
use platform::control::VmState;
use platform::esr::{Direction, Esr, FaultStatus};
use platform::forward::fail::{fail_requests, GuestMemory, Shadow, MAX_QUEUES};
use platform::forward::{virtio, Access, BackendModel, DeviceType, Fallback, LinkInfo, NotForwarded, MAX_DEVICES};
use platform::mmio::MmioAccess;
use spin::{Mutex, Once};

/// How many refused accesses of a client are logged.
const LOGGED_REFUSALS: u32 = 16;

/// A client's forwarded devices on one link, each in a window this large
/// (the `virtio,mmio` spacing QEMU uses too).
pub const WINDOW_STRIDE: u64 = 0x200;

/// One (client, service VM) pair.
pub struct Link {
    /// The client and the service VM (indices in `crate::vm::all`).
    pub client: usize,
    pub service: usize,
    /// The BAR2 size the client's RAM needs (a power of two).
    pub bar2_size: u64,
    state: Mutex<LinkState>,
    /// Accesses of the client refused so far (the first few are logged:
    /// a hostile client must not flood the console).
    refusals: core::sync::atomic::AtomicU32,
}

struct LinkState {
    model: BackendModel,
    /// The service went away while the client ran: every device answers
    /// with its fallback until the client starts again.
    failed: bool,
    fallback: [Option<Fallback>; MAX_DEVICES],
    /// The service VM took a request of the client's current life.
    served: bool,
    /// Each device's queues, as the client's driver set them up.
    shadow: [Shadow; MAX_DEVICES],
}

impl Link {
    pub fn new(client: usize, service: usize, info: LinkInfo) -> Self {
        let bar2_size = info.ram_size.next_power_of_two();
        let state = LinkState {
            model: BackendModel::new(info),
            failed: false,
            fallback: [None; MAX_DEVICES],
            served: false,
            shadow: [Shadow::default(); MAX_DEVICES],
        };
        Self { client, service, bar2_size, state: Mutex::new(state), refusals: core::sync::atomic::AtomicU32::new(0) }
    }

    /// Counts a refused access of the client: whether to log it.
    fn note_refusal(&self) -> bool {
        let n = self.refusals.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        if n == LOGGED_REFUSALS {
            log::warn!(
                "VM {}: more of its virtio accesses refused; no more are logged",
                crate::vm::get(self.client).map_or("?", |c| c.name.as_str())
            );
        }
        n < LOGGED_REFUSALS
    }

    /// The client's RAM, which BAR2 shows the service VM.
    pub fn client_ram(&self) -> Option<MemRegion> {
        crate::vm::get(self.client).map(|vm| vm.ram)
    }
}

static LINKS: Once<Vec<Link>> = Once::new();

/// Makes the links built at boot the machine's, once.
pub fn install(links: Vec<Link>) {
    LINKS.call_once(|| links);
}

/// Every link (none before [`install`], or without forwarded devices).
pub fn all() -> &'static [Link] {
    LINKS.get().map_or(&[], Vec::as_slice)
}

/// One forwarded device as its client has it.
#[derive(Clone, Copy, Debug)]
pub struct Device {
    /// Its link (index in [`all`]) and its number there (`REQ_DEVICE`).
    pub link: usize,
    pub index: u8,
    pub kind: DeviceType,
    /// Its register window in the client's IPA space.
    pub window: MemRegion,
    /// Its virtual SPI.
    pub intid: u32,
    /// How long one access may wait for the service VM (`hv,timeout-ms`).
    pub timeout_ms: u32,
}

/// What a client waits for: the access it trapped on, and once the service
/// VM completed it, the value.
#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    access: MmioAccess,
    result: Option<u64>,
    /// Its link, and when (physical counter) the service VM's time is up.
    link: usize,
    deadline: u64,
}

/// `vcpu` of `vm`'s trapped access at `ipa`, if it is in one of its
/// forwarded windows: `None` if not (at once for a VM without any).
#[inline]
pub fn handle(frame: &mut TrapFrame, esr: Esr, ipa: u64, vm: &Vm, vcpu: &Vcpu) -> Option<crate::vm::mmio::Handled> {
    if vm.virtio.is_empty() {
        return None;
    }
    forwarded(frame, esr, ipa, vm, vcpu)
}

#[inline(never)]
fn forwarded(frame: &mut TrapFrame, esr: Esr, ipa: u64, vm: &Vm, vcpu: &Vcpu) -> Option<crate::vm::mmio::Handled> {
    use crate::vm::mmio::Handled;
    let device = vm.virtio.iter().find(|d| d.window.contains(ipa))?;
    let link = all().get(device.link)?;
    if vcpu.io.lock().is_some() {
        // Back at the same access before its completion was taken (a step
        // held the vCPU here): the same request, not a second one.
        if !resume(vcpu, frame) {
            crate::vm::sched::io_wait();
        }
        return Some(Handled::Deferred);
    }
    let decoded = match MmioAccess::decode(esr, ipa) {
        Ok(access) => access,
        Err(platform::mmio::NotEmulatable::CacheMaintenance) => return Some(Handled::Emulated),
        Err(reason) => {
            if link.note_refusal() {
                log::warn!(
                    "{}virtio device {} at IPA {ipa:#x}: access cannot be emulated ({reason:?}): data abort injected",
                    crate::vm::build::prefix(vm),
                    device.index
                );
            }
            return Some(Handled::Abort(FaultStatus::SyncExternal));
        }
    };
    let write = decoded.direction == Direction::Write;
    let value = if write { decoded.write_value(&frame.x) } else { 0 };
    let access = match Access::new(device.index, ipa - device.window.base, decoded.size.bytes(), write, value) {
        Ok(access) => access,
        Err(NotForwarded::BadAccess | NotForwarded::OutsideWindow) => {
            if link.note_refusal() {
                log::warn!(
                    "{}virtio device {}: {}-byte access at offset {:#x} is no register: data abort injected",
                    crate::vm::build::prefix(vm),
                    device.index,
                    decoded.size.bytes(),
                    ipa - device.window.base
                );
            }
            return Some(Handled::Abort(FaultStatus::SyncExternal));
        }
    };
    let serving = crate::vm::get(link.service).is_some_and(|s| s.state() == PowerState::Running);
    let queued = {
        let mut state = link.state.lock();
        if state.failed || !serving {
            let index = usize::from(device.index);
            let mut fallback =
                state.fallback.get(index).copied().flatten().unwrap_or(Fallback { device: device.kind, interrupt: 0 });
            let mut used = false;
            let result = if write {
                // Lowering an edge-triggered line needs nothing.
                let _ = fallback.write(&access);
                if state.failed && u64::from(access.offset) == virtio::QUEUE_NOTIFY {
                    let shadow = state.shadow.get(index).copied().unwrap_or_default();
                    used = fail_queue(vm, device, &shadow, access.value as usize) != 0;
                    if used {
                        fallback.interrupt |= virtio::INT_USED;
                    }
                }
                0
            } else {
                fallback.read(&access)
            };
            if state.failed {
                if let Some(slot) = state.fallback.get_mut(index) {
                    *slot = Some(fallback);
                }
            }
            drop(state);
            if !write {
                decoded.complete_read(&mut frame.x, result);
            }
            if used {
                raise(vm, device.link, 1 << device.index);
            }
            return Some(Handled::Emulated);
        }
        if let Some(shadow) = state.shadow.get_mut(usize::from(device.index)) {
            shadow.observe(&access);
        }
        state.served = true;
        let deadline = crate::vm::sched::deadline_in_ms(device.timeout_ms);
        *vcpu.io.lock() = Some(Waiting { access: decoded, result: None, link: device.link, deadline });
        vcpu.io_waiting(true);
        state.model.queue.push(access, vcpu.index as u16).is_ok()
    };
    if !queued {
        // Cannot happen: a queue holds a request per vCPU a VM can have.
        *vcpu.io.lock() = None;
        vcpu.io_waiting(false);
        return Some(Handled::Abort(FaultStatus::SyncExternal));
    }
    service_line(link);
    crate::vm::sched::io_wait();
    Some(Handled::Deferred)
}

/// Whether `vcpu` of `vm` waits for a forwarded access (answered or not).
/// Cheap for a VM without forwarded devices: the scheduler asks on every
/// switch.
#[inline]
pub fn waits(vm: &Vm, vcpu: &Vcpu) -> bool {
    !vm.virtio.is_empty() && vcpu.io.lock().is_some()
}

/// Whether `vcpu`'s forwarded access was completed: if so its result goes
/// into `frame` (the vCPU's registers), the instruction is stepped over,
/// and the vCPU no longer waits.
pub fn resume(vcpu: &Vcpu, frame: &mut TrapFrame) -> bool {
    let mut io = vcpu.io.lock();
    let Some(Waiting { access, result: Some(value), .. }) = *io else { return false };
    *io = None;
    if access.direction == Direction::Read {
        access.complete_read(&mut frame.x, value);
    }
    frame.elr = frame.elr.wrapping_add(4);
    frame.spsr = platform::debug::completed(frame.spsr);
    true
}

/// When the access `vcpu` waits for runs out of time (`u64::MAX`: it
/// waits for none).
pub fn deadline(vcpu: &Vcpu) -> u64 {
    vcpu.io.lock().as_ref().filter(|w| w.result.is_none()).map_or(u64::MAX, |w| w.deadline)
}

/// The access `vcpu` of `vm` waits for ran out of time: its service VM
/// does not answer (hung, or its backend is not running), so the link's
/// devices fail as if the service VM were gone, which answers the access.
pub fn timed_out(vm: &Vm, vcpu: &Vcpu) {
    let Some(l) = vcpu.io.lock().as_ref().filter(|w| w.result.is_none()).map(|w| w.link) else { return };
    let Some(link) = all().get(l) else { return };
    let ms = vm.virtio.iter().find(|d| d.link == l).map_or(0, |d| d.timeout_ms);
    let service = crate::vm::get(link.service).map_or("?", |s| s.name.as_str());
    let why = alloc::format!("VM {service} left an access unanswered for {ms} ms");
    fail(l, link, &why);
}

/// A vCPU starts afresh: it waits for nothing.
pub fn forget(vcpu: &Vcpu) {
    *vcpu.io.lock() = None;
    vcpu.io_waiting(false);
}

/// The access `vcpu` of `vm` waits for is complete with `value`: it is
/// woken to take it.
fn complete(vm: &Vm, vcpu: &Vcpu, value: u64) {
    {
        let mut io = vcpu.io.lock();
        match io.as_mut() {
            Some(waiting) if waiting.result.is_none() => waiting.result = Some(value),
            // Its VM stopped (and maybe started again) meanwhile.
            _ => return,
        }
    }
    vcpu.io_waiting(false);
    crate::vm::sched::io_done(vm, vcpu);
}

/// The service VM's view of link `l`'s registers.
pub fn backend_read(l: usize, offset: u64, size: u8) -> u64 {
    all().get(l).map_or(0, |link| link.state.lock().model.read(offset, size))
}

/// A write of the service VM to link `l`'s registers: a completion resumes
/// the client's vCPU, a change of `IRQ_LEVEL` raises the client's
/// interrupts on their rising edges, an acknowledged event may lower the
/// function's own line.
pub fn backend_write(l: usize, offset: u64, size: u8, value: u64) {
    let Some(link) = all().get(l) else { return };
    let (effect, before) = {
        let mut state = link.state.lock();
        let before = state.model.lines();
        (state.model.write(offset, size, value), before)
    };
    let Some(client) = crate::vm::get(link.client) else { return };
    if let Some(done) = effect.completion {
        if let Some(vcpu) = client.vcpus.get(usize::from(done.request.vcpu)) {
            complete(client, vcpu, done.value);
        }
    }
    if let Some(lines) = effect.lines {
        raise(client, l, lines & !before);
    }
}

/// Makes pending the interrupts of link `l`'s devices in `rising` (bit n:
/// device n).
fn raise(client: &Vm, l: usize, rising: u32) {
    if rising == 0 || client.state() != PowerState::Running {
        return;
    }
    for device in client.virtio.iter().filter(|d| d.link == l && rising & (1 << d.index) != 0) {
        let mask = client.vgic.lock().set_pending(0, device.intid, false);
        crate::vm::vgic::kick_vcpus(client, mask);
    }
}

/// Whether link `l`'s backend function has its interrupt source active.
pub fn level(l: usize) -> bool {
    all().get(l).is_some_and(|link| link.state.lock().model.level())
}

/// Re-evaluates the backend function's line in the service VM: pending
/// again while active and not disabled.
fn service_line(link: &Link) {
    let Some(service) = crate::vm::get(link.service) else { return };
    let this = all().iter().position(|x| core::ptr::eq(x, link));
    if let Some(k) = service.backends.iter().position(|b| Some(b.link) == this) {
        crate::vm::vpci::update_backend_line(service, k);
    }
}

/// The `VmState` a power state shows.
fn shown(state: PowerState) -> VmState {
    match state {
        PowerState::Running => VmState::Running,
        PowerState::Stopping => VmState::Stopping,
        PowerState::Off => VmState::Off,
    }
}

/// `vm` changed power state. As a client: its links' backends learn it (a
/// start or a stop resets its devices), and a start clears a failure. As a
/// service: leaving `Running` while a client runs fails that client's
/// devices, answering its waiting accesses from the fallback.
pub fn state_changed(vm: &Vm) {
    let state = vm.state();
    for (l, link) in all().iter().enumerate() {
        if link.client == vm.index {
            {
                let mut s = link.state.lock();
                s.model.client_changed(shown(state));
                if state == PowerState::Running {
                    s.failed = false;
                    s.served = false;
                    s.fallback = [None; MAX_DEVICES];
                    s.shadow = [Shadow::default(); MAX_DEVICES];
                }
            }
            service_line(link);
        }
        // Off, or running again after a restart: none of its vCPUs runs
        // the old life any more.
        if link.service == vm.index && state != PowerState::Stopping {
            fail(l, link, "the service VM is gone");
        }
    }
}

/// Link `l`'s service is gone (`why`): if its client runs, its devices
/// fail.
fn fail(l: usize, link: &Link, why: &str) {
    let Some(client) = crate::vm::get(link.client) else { return };
    if client.state() != PowerState::Running {
        return;
    }
    let mut answered = Vec::new();
    let rising = {
        let mut s = link.state.lock();
        if s.failed || !s.served {
            return;
        }
        s.failed = true;
        let mut rising = 0u32;
        for device in client.virtio.iter().filter(|d| d.link == l) {
            let shadow = s.shadow.get(usize::from(device.index)).copied().unwrap_or_default();
            let mut fallback = Fallback::lost(device.kind);
            let used: u32 = (0..MAX_QUEUES).map(|q| u32::from(fail_queue(client, device, &shadow, q))).sum();
            if used != 0 {
                fallback.interrupt |= virtio::INT_USED;
            }
            if let Some(slot) = s.fallback.get_mut(usize::from(device.index)) {
                *slot = Some(fallback);
                rising |= 1 << device.index;
            }
        }
        let requests: Vec<_> = s.model.queue.drain().collect();
        for request in requests {
            let fallback = s.fallback.get(usize::from(request.access.device)).copied().flatten();
            let value = match fallback {
                Some(f) if !request.access.write => f.read(&request.access),
                _ => 0,
            };
            answered.push((request.vcpu, value));
        }
        rising
    };
    log::warn!(
        "{}its virtio devices served by VM {} fail: {why}",
        crate::vm::build::prefix(client),
        crate::vm::get(link.service).map_or("?", |s| s.name.as_str())
    );
    for (vcpu, value) in answered {
        if let Some(vcpu) = client.vcpus.get(usize::from(vcpu)) {
            complete(client, vcpu, value);
        }
    }
    raise(client, l, rising);
}

/// A client's RAM, in the direct map: what [`fail_requests`] may touch
/// (and not the pages its kernel integrity keeps read-only).
struct ClientRam<'a>(&'a crate::vm::Vm);

impl ClientRam<'_> {
    fn inside(&self, address: u64, len: usize) -> bool {
        let ram = self.0.ram;
        address >= ram.base && address.checked_add(len as u64).is_some_and(|end| end <= ram.end())
    }
}

impl GuestMemory for ClientRam<'_> {
    fn read(&self, address: u64, bytes: &mut [u8]) -> bool {
        if !self.inside(address, bytes.len()) {
            return false;
        }
        let from = crate::arch::layout::phys_to_virt(address) as *const u8;
        for (i, byte) in bytes.iter_mut().enumerate() {
            // SAFETY: inside the client's RAM (checked above), which the
            // direct map covers; volatile, as its vCPUs may be writing it.
            *byte = unsafe { from.add(i).read_volatile() };
        }
        true
    }

    fn write(&mut self, address: u64, bytes: &[u8]) -> bool {
        if !self.inside(address, bytes.len())
            || !crate::vm::integrity::hypervisor_may_write(self.0, address, bytes.len() as u64)
        {
            return false;
        }
        let to = crate::arch::layout::phys_to_virt(address) as *mut u8;
        for (i, &byte) in bytes.iter().enumerate() {
            // SAFETY: inside the client's RAM (checked above), which the
            // direct map covers and nothing of the hypervisor's uses.
            unsafe { to.add(i).write_volatile(byte) };
        }
        true
    }

    fn barrier(&self) {
        // SAFETY: a barrier only orders memory accesses.
        unsafe { core::arch::asm!("dmb ish", options(nostack, preserves_flags)) };
    }
}

/// Fails queue `q` of `client`'s `device` (its requests made available and
/// not used): how many it used. A ring that makes no sense is left as it
/// is, with a line.
fn fail_queue(client: &Vm, device: &Device, shadow: &Shadow, q: usize) -> u16 {
    let Some(queue) = shadow.queues.get(q) else { return 0 };
    match fail_requests(device.kind, q, queue, &mut ClientRam(client)) {
        Ok(used) => used,
        Err(e) => {
            log::warn!(
                "{}virtio device {} queue {q}: its requests not failed: {e:?}",
                crate::vm::build::prefix(client),
                device.index
            );
            0
        }
    }
}

/// The link info of `client`'s devices served by `service`.
pub fn link_info(client: &str, ram: MemRegion, devices: &[DeviceType]) -> LinkInfo {
    let mut info = LinkInfo {
        ram_base: ram.base,
        ram_size: ram.size,
        name: platform::control::VmInfo::name_bytes(client),
        devices: [None; MAX_DEVICES],
    };
    for (slot, &d) in info.devices.iter_mut().zip(devices) {
        *slot = Some(d);
    }
    info
}
