//! MMIO emulation: guest-physical windows that stage 2 leaves unmapped and
//! that an emulated device answers.
//!
//! A stage-2 data abort inside a registered window is decoded
//! (`platform::mmio`): an access with a valid instruction syndrome is
//! performed on the device, its result written to the guest's register,
//! and the guest resumes after the instruction. An access the syndrome does
//! not describe (ISV = 0: pair loads and stores, writeback addressing) gets
//! a data abort injected into the guest and a log line, as do device
//! errors; a cache-maintenance instruction on a window is simply completed.
//! Accesses outside every window are not ours to decide: the caller injects
//! an external abort.
//!
//! The devices: the test device of `platform::abi::test_mmio`, which the
//! guest-stub uses to check this path, and the PCI host bridge's ECAM
//! window ([`crate::vm::ecam`]).

use crate::vm::Vm;
use alloc::boxed::Box;
use platform::abi::test_mmio;
use platform::arch::trap::TrapFrame;
use platform::esr::{Esr, FaultStatus, Origin};
use platform::mmio::{MmioAccess, MmioDevice, MmioFault, NotEmulatable};

/// The test device: an ID register, a 64-bit scratch register whose
/// narrower writes change only their bytes, and an access counter.
struct TestDevice {
    scratch: u64,
    accesses: u64,
}

impl MmioDevice for TestDevice {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioFault> {
        self.accesses += 1;
        let (register, value) = match offset & !7 {
            test_mmio::ID => (test_mmio::ID, test_mmio::ID_VALUE),
            test_mmio::SCRATCH => (test_mmio::SCRATCH, self.scratch),
            test_mmio::ACCESSES => (test_mmio::ACCESSES, self.accesses),
            _ => return Ok(0),
        };
        let shift = 8 * (offset - register);
        Ok(value.checked_shr(shift as u32).unwrap_or(0) & mask(size))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        self.accesses += 1;
        if offset & !7 == test_mmio::SCRATCH {
            let shift = (8 * (offset - test_mmio::SCRATCH)) as u32;
            let field = mask(size).checked_shl(shift).unwrap_or(0);
            self.scratch = (self.scratch & !field) | (value.checked_shl(shift).unwrap_or(0) & field);
        }
        // Writes elsewhere (the ID, the counter, unused offsets) are ignored.
        Ok(())
    }
}

const fn mask(size: u8) -> u64 {
    match size {
        8 => u64::MAX,
        n => (1u64 << (8 * n as u32)) - 1,
    }
}

/// Registers an emulated device over `[base, base + size)` on `vm`'s bus.
/// VMs live for the whole run, and so do their devices.
pub fn add_device(
    vm: &Vm,
    base: u64,
    size: u64,
    device: Box<dyn MmioDevice>,
) -> Result<(), platform::mmio::RegisterError> {
    vm.bus.lock().register(base, size, Box::leak(device))?;
    Ok(())
}

/// Registers the test device at `base` on `vm`'s bus.
pub fn add_test_device(vm: &Vm, base: u64) -> Result<(), platform::mmio::RegisterError> {
    add_device(vm, base, test_mmio::SIZE, Box::new(TestDevice { scratch: 0, accesses: 0 }))
}

/// What became of a guest data abort at `ipa`.
pub enum Handled {
    /// Emulated (or completed): the guest continues after the instruction.
    Emulated,
    /// Not an emulated window.
    NotOurs,
    /// Inside a window but not emulatable: give the guest this abort.
    Abort(FaultStatus),
    /// Forwarded (`crate::vm::forward`): the frame is as the vCPU is to
    /// resume, the instruction completed or not yet.
    Deferred,
}

/// Emulates the stage-2 data abort `esr` at `ipa` if a device owns it.
pub fn handle(frame: &mut TrapFrame, esr: Esr, ipa: u64) -> Handled {
    let Some((vm, vcpu)) = crate::vm::current() else { return Handled::NotOurs };
    if let Some(forwarded) = crate::vm::forward::handle(frame, esr, ipa, vm, vcpu) {
        return forwarded;
    }
    let mut bus = vm.bus.lock();
    if !bus.contains(ipa) {
        return Handled::NotOurs;
    }
    match MmioAccess::decode(esr, ipa) {
        Ok(access) => match bus.dispatch(&access, &mut frame.x) {
            Ok(()) => Handled::Emulated,
            Err(fault) => {
                log::warn!("guest MMIO at IPA {ipa:#x}: {fault:?}; data abort injected");
                Handled::Abort(fault.guest_fault())
            }
        },
        Err(NotEmulatable::CacheMaintenance) => Handled::Emulated,
        Err(reason) => {
            log::warn!("guest MMIO at IPA {ipa:#x} cannot be emulated ({reason:?}): data abort injected");
            Handled::Abort(FaultStatus::SyncExternal)
        }
    }
}

/// The syndrome of a data abort the guest receives for an MMIO access.
pub fn guest_abort(frame: &TrapFrame, trapped: Esr, fault: FaultStatus) -> Esr {
    let origin = match platform::arch::ExceptionLevel::from_spsr(frame.spsr) {
        platform::arch::ExceptionLevel::El0 => Origin::LowerEl,
        _ => Origin::SameEl,
    };
    let wnr = trapped.abort().is_some_and(|a| a.wnr());
    Esr::data_abort(origin, fault, wnr)
}
