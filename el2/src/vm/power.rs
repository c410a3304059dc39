//! A VM's power: PSCI `SYSTEM_OFF` and `SYSTEM_RESET` from its guest, and
//! the machine's end when no VM is left running.
//!
//! `SYSTEM_OFF` stops the calling VM only: its other vCPUs are asked to
//! stop and do at their next exit, and the others VMs keep running. When
//! the last VM stops, the machine powers off with the highest status any VM
//! reported (`HV_SET_EXIT_STATUS`; 0 if none did), so one failing VM fails
//! the run.
//!
//! A VM that breaks the hypervisor's rules (its exception vector itself
//! faults, over and over: [`crate::vm::vcpu::VECTOR_ABORT_LIMIT`]) is
//! stopped the same way, with [`EXIT_VM_STOPPED`] and a line saying why.
//!
//! `SYSTEM_RESET` restarts the calling VM from its kernel, with its memory
//! cleared ([`crate::vm::build::restart`]). A VM that owns the machine (the
//! one guest of a run without VM descriptions) resets the board instead,
//! as the same guest on bare metal would.

use crate::vm::{PowerState, Vm};

/// The status a VM stopped for breaking the hypervisor's rules powers off
/// with (and so the machine, if it was the last: the highest status wins).
pub const EXIT_VM_STOPPED: u32 = 4;

/// PSCI `SYSTEM_OFF` from a vCPU of `vm`.
pub fn system_off(vm: &'static Vm) -> ! {
    if !vm.change_state(PowerState::Running, PowerState::Stopping) {
        // Another vCPU of the VM is already stopping it.
        crate::vm::vcpu::cpu_off()
    }
    let status = vm.status();
    if vm.owns_machine {
        log::info!("guest requested SYSTEM_OFF (status {status})");
    } else {
        log::info!("VM {}: SYSTEM_OFF (status {status})", vm.name);
    }
    crate::vm::vcpu::stop_others(vm);
    crate::vm::console::set_available(vm, false);
    vm.set_state(PowerState::Off);
    machine_off_if_last();
    crate::vm::vcpu::cpu_off()
}

/// Stops `vm` for breaking the hypervisor's rules (`why`), from one of its
/// vCPUs' exits: like `SYSTEM_OFF` with [`EXIT_VM_STOPPED`], and one line
/// saying why; the other VMs run on.
pub fn stop_broken(vm: &'static Vm, why: core::fmt::Arguments) -> ! {
    if !vm.change_state(PowerState::Running, PowerState::Stopping) {
        crate::vm::vcpu::cpu_off()
    }
    log::error!("{}stopped with status {EXIT_VM_STOPPED}: {why}", crate::vm::build::prefix(vm));
    vm.set_status(EXIT_VM_STOPPED);
    crate::vm::vcpu::stop_others(vm);
    crate::vm::console::set_available(vm, false);
    vm.set_state(PowerState::Off);
    machine_off_if_last();
    crate::vm::vcpu::cpu_off()
}

/// Stops `vm` from outside it (a manager's command), as its own
/// `SYSTEM_OFF` would: its vCPUs stop at their next exit, its status is
/// kept. False if it was not running.
pub fn stop_from_outside(vm: &'static Vm) -> bool {
    if !vm.change_state(PowerState::Running, PowerState::Stopping) {
        return false;
    }
    crate::vm::vcpu::stop_others(vm);
    crate::vm::console::set_available(vm, false);
    vm.set_state(PowerState::Off);
    true
}

/// When every VM is off: powers the machine off with the highest status
/// any VM reported.
pub fn machine_off_if_last() {
    let vms = crate::vm::all();
    if vms.iter().any(|vm| vm.state() != PowerState::Off) {
        let running: alloc::vec::Vec<&str> =
            vms.iter().filter(|vm| vm.state() != PowerState::Off).map(|vm| vm.name.as_str()).collect();
        log::info!("still running: {}", running.join(", "));
        return;
    }
    // Two VMs may stop at once: one CPU powers off.
    static ONCE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if ONCE.swap(true, core::sync::atomic::Ordering::AcqRel) {
        return;
    }
    let status = vms.iter().map(Vm::status).max().unwrap_or(0);
    if vms.len() > 1 {
        log::info!("every VM is off: powering off with status {status} (the highest any VM reported)");
    }
    crate::arch::power::shut_down(status)
}

/// PSCI `SYSTEM_RESET` from a vCPU of `vm`.
pub fn system_reset(vm: &'static Vm) -> ! {
    if vm.owns_machine {
        log::info!("guest requested SYSTEM_RESET");
        crate::arch::power::reset_board()
    }
    if !vm.change_state(PowerState::Running, PowerState::Stopping) {
        crate::vm::vcpu::cpu_off()
    }
    log::info!("VM {}: SYSTEM_RESET: restarting it", vm.name);
    crate::vm::vcpu::stop_others(vm);
    crate::vm::console::set_available(vm, false);
    crate::vm::build::restart(vm)
}
