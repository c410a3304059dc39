//! The VM control function of a manager VM (`hv,manager`): its registers
//! (`platform::control`, the model and the layout `hvctl vm` uses) answered
//! from the VMs' objects, and its commands carried out: stop, restart and
//! start another VM.
//!
//! A command runs on the manager's vCPU, in the trap of its write to
//! `COMMAND`, and is finished when that write completes:
//!
//! - **stop**: as the VM's own `SYSTEM_OFF` would ([`crate::vm::power`]);
//!   its vCPUs stop at their next exit (a kick makes one happen), even
//!   with their interrupts masked.
//! - **start**: a VM that is off starts afresh: its RAM cleared, its
//!   interrupt controller and PCI functions reset, its kernel and device
//!   tree loaded as at boot, its vCPU 0 queued.
//! - **restart**: a running VM is stopped first; then it starts afresh.
//!
//! The work is bounded by the VM's RAM and kernel size; while it runs, the
//! manager's vCPU waits in the trap, as on any slow device register.

use crate::vm::{build, power, vgic, vpci, PowerState, Vm};
use core::sync::atomic::Ordering;
use platform::control::{Command, CommandCode, CommandResult, VmInfo, VmState};

/// What the control function shows of VM `index`, to the manager `caller`.
fn info(index: u32, caller: &Vm) -> Option<VmInfo> {
    let vm = crate::vm::get(index as usize)?;
    let flags = [
        (vm.manager, platform::control::FLAG_MANAGER),
        (vm.recipe.autostart, platform::control::FLAG_AUTOSTART),
        (vm.index == caller.index, platform::control::FLAG_SELF),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0, |flags, (_, bit)| flags | bit);
    let state = match vm.state() {
        PowerState::Off => VmState::Off,
        PowerState::Running => VmState::Running,
        PowerState::Stopping => VmState::Stopping,
    };
    Some(VmInfo {
        name: VmInfo::name_bytes(&vm.name),
        state: state as u32,
        vcpus: vm.vcpus.len() as u32,
        exit_status: vm.status(),
        memory_kib: u32::try_from(vm.ram.size / 1024).unwrap_or(u32::MAX),
        flags,
        starts: vm.starts.load(Ordering::Relaxed),
    })
}

fn count() -> u32 {
    crate::vm::all().len() as u32
}

/// A read of `vm`'s control registers.
pub fn read(vm: &Vm, offset: u64, size: u8) -> u64 {
    let Some(control) = &vm.control else { return 0 };
    let model = control.lock();
    let info = info(model.selected(), vm);
    model.read(offset, size, count(), info.as_ref())
}

/// A write to `vm`'s control registers; a command is carried out before
/// it returns.
pub fn write(vm: &Vm, offset: u64, size: u8, value: u64) {
    let Some(control) = &vm.control else { return };
    let command = control.lock().write(offset, size, value, count(), vm.index as u32);
    if let Some(command) = command {
        let result = carry_out(vm, command);
        control.lock().finish(result);
    }
}

fn carry_out(manager: &Vm, command: Command) -> CommandResult {
    let Some(target) = crate::vm::get(command.vm as usize) else { return CommandResult::NoSuchVm };
    let by = &manager.name;
    match command.code {
        CommandCode::Stop => {
            if !power::stop_from_outside(target) {
                return CommandResult::WrongState;
            }
            log::info!("VM {}: stopped by VM {by}", target.name);
            CommandResult::Done
        }
        CommandCode::Start | CommandCode::Restart => {
            match (command.code, target.state()) {
                (_, PowerState::Off) => {}
                (CommandCode::Restart, PowerState::Running) => {
                    if !power::stop_from_outside(target) {
                        return CommandResult::WrongState;
                    }
                }
                _ => return CommandResult::WrongState,
            }
            let result = fresh_start(target);
            if result == CommandResult::Done {
                let how = if command.code == CommandCode::Start { "started" } else { "restarted" };
                log::info!("VM {}: {how} by VM {by}", target.name);
            }
            result
        }
    }
}

/// Starts `vm` (off) afresh: its RAM cleared (with this CPU's interrupts
/// open: hundreds of MiB take a while), its interrupt controller and PCI
/// functions reset, its kernel and device tree loaded as at boot, its
/// vCPU 0 queued. A VM that ran before counts a new life (`STARTS`, and
/// the guest-stub's device tree).
fn fresh_start(vm: &'static Vm) -> CommandResult {
    crate::vm::integrity::reset(vm);
    crate::irq::with_interrupts_open(|| {
        // SAFETY: the VM's RAM, in the direct map; none of its vCPUs runs
        // (it is off), and nothing of the hypervisor's lives there.
        unsafe {
            core::ptr::write_bytes(crate::arch::layout::phys_to_virt(vm.ram.base) as *mut u8, 0, vm.ram.size as usize)
        }
    });
    vgic::reset_model(vm);
    vpci::reset_vm(vm);
    vm.set_status(0);
    if vm.has_started() {
        vm.starts.fetch_add(1, Ordering::Relaxed);
    }
    match build::load(vm) {
        Ok(Some(entry)) => {
            build::start(vm, entry);
            CommandResult::Done
        }
        Ok(None) => {
            log::error!("VM {}: not started: its kernel is gone", vm.name);
            CommandResult::Failed
        }
        Err(e) => {
            log::error!("VM {}: not started: {e}", vm.name);
            CommandResult::Failed
        }
    }
}
