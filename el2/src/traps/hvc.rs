//! Calls from the guest over HVC (and SMC, which `HCR_EL2.TSC` traps here):
//! SMCCC 1.1 and the virtual PSCI the guest sees, plus our vendor-specific
//! hypervisor service (with SMCCC's UID and call-count queries). Unknown
//! function IDs answer `NOT_SUPPORTED`; a guest's SMC is never passed on to
//! the secure monitor.

use platform::abi::{
    is_smc32, status, HV_CALL_COUNT, HV_CALL_UID, HV_CHECK_PRDA, HV_EL0_FORMAT, HV_LOCKUP_TEST, HV_PNMI_TEST,
    HV_PROBE_IDENTITY, HV_SET_EXIT_STATUS, HV_UID, PSCI_VERSION_1_1, SMCCC_VERSION_1_1,
};

/// The vendor functions this service implements (for `HV_CALL_COUNT`).
const VENDOR_FUNCTIONS: u64 = 6;
/// PSCI `MIGRATE_INFO_TYPE`: no Trusted OS, nothing to migrate.
const MIGRATE_INFO_NOT_REQUIRED: u64 = 2;
use platform::arch::trap::TrapFrame;
use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_VERSION};
use smccc::psci as ids;

/// Answers the call whose registers `frame` holds.
pub fn handle(frame: &mut TrapFrame) {
    let function = frame.x[0] as u32;
    let mut arg1 = frame.x[1];
    let (mut arg2, mut arg3) = (frame.x[2], frame.x[3]);
    if is_smc32(function) {
        arg1 &= u64::from(u32::MAX);
        arg2 &= u64::from(u32::MAX);
        arg3 &= u64::from(u32::MAX);
    }
    let result: Result<u64, i32> = match function {
        SMCCC_VERSION => Ok(SMCCC_VERSION_1_1),
        SMCCC_ARCH_FEATURES => match arg1 as u32 {
            SMCCC_VERSION | SMCCC_ARCH_FEATURES => Ok(0),
            _ => Err(smccc::arch::error::NOT_SUPPORTED),
        },
        ids::PSCI_VERSION => Ok(PSCI_VERSION_1_1),
        ids::PSCI_FEATURES => match arg1 as u32 {
            SMCCC_VERSION
            | ids::PSCI_VERSION
            | ids::PSCI_FEATURES
            | ids::PSCI_SYSTEM_OFF
            | ids::PSCI_SYSTEM_RESET
            | ids::PSCI_CPU_ON_32
            | ids::PSCI_CPU_ON_64
            | ids::PSCI_CPU_OFF
            | ids::PSCI_AFFINITY_INFO_32
            | ids::PSCI_AFFINITY_INFO_64
            | ids::PSCI_MIGRATE_INFO_TYPE => Ok(0),
            _ => Err(ids::error::NOT_SUPPORTED),
        },
        ids::PSCI_CPU_ON_32 | ids::PSCI_CPU_ON_64 => crate::vm::vcpu::cpu_on(arg1, arg2, arg3),
        ids::PSCI_CPU_OFF => crate::vm::vcpu::cpu_off(),
        ids::PSCI_AFFINITY_INFO_32 | ids::PSCI_AFFINITY_INFO_64 => crate::vm::vcpu::affinity_info(arg1, arg2),
        ids::PSCI_MIGRATE_INFO_TYPE => Ok(MIGRATE_INFO_NOT_REQUIRED),
        ids::PSCI_SYSTEM_OFF => match crate::vm::current() {
            Some((vm, _)) => crate::vm::power::system_off(vm),
            None => Err(ids::error::DENIED),
        },
        ids::PSCI_SYSTEM_RESET => match crate::vm::current() {
            Some((vm, _)) => crate::vm::power::system_reset(vm),
            None => Err(ids::error::DENIED),
        },
        HV_CALL_COUNT => Ok(VENDOR_FUNCTIONS),
        HV_CALL_UID => {
            frame.x[1] = HV_UID[1].into();
            frame.x[2] = HV_UID[2].into();
            frame.x[3] = HV_UID[3].into();
            Ok(HV_UID[0].into())
        }
        HV_SET_EXIT_STATUS => match crate::vm::current() {
            Some((vm, _)) => {
                vm.set_status(arg1 as u32);
                Ok(0)
            }
            None => Err(ids::error::DENIED),
        },
        HV_CHECK_PRDA => {
            let me = crate::mm::prda::with(|p| p.slot.load(core::sync::atomic::Ordering::Relaxed));
            let (mask, cpus) = crate::vm::cpus::check_prda_everywhere(me as usize);
            frame.x[1] = mask;
            frame.x[2] = cpus as u64;
            Ok(0)
        }
        HV_EL0_FORMAT => match el0_format(frame.x[1], frame.x[2], frame.x[3], frame.x[4]) {
            Ok(len) => {
                frame.x[1] = len;
                Ok(0)
            }
            Err(code) => Err(code as i32),
        },
        HV_PNMI_TEST => {
            set_results(frame, crate::irq::pnmi::pnmi_test());
            Ok(0)
        }
        HV_LOCKUP_TEST => match crate::irq::pnmi::lockup_test(arg1) {
            Ok(results) => {
                set_results(frame, results);
                Ok(0)
            }
            Err(()) => Err(status::INVALID_PARAMETER as i32),
        },
        HV_PROBE_IDENTITY => {
            let (address, par) = probe_identity();
            frame.x[1] = address;
            frame.x[2] = par;
            Ok(0)
        }
        _ => Err(smccc::arch::error::NOT_SUPPORTED),
    };
    frame.x[0] = match result {
        Ok(value) => value,
        Err(code) => i64::from(code) as u64,
    };
}

/// Writes a call's results, (register, value) pairs, into the frame.
fn set_results(frame: &mut TrapFrame, results: impl IntoIterator<Item = (usize, u64)>) {
    for (reg, value) in results {
        if let Some(x) = frame.x.get_mut(reg) {
            *x = value;
        }
    }
}

/// Translates the hypervisor's own load PA as an EL2 virtual address, the
/// way hardware would, and returns `(address, PAR_EL1)` (AT reports in
/// PAR_EL1 at every exception level). With no identity
/// map in the final tables this must be a translation fault.
fn probe_identity() -> (u64, u64) {
    let address = crate::boot::switch::image_pa();
    // SAFETY: EL2 translating its own regime; PAR_EL1 is read at once.
    let par = unsafe { platform::arch::at::translate(platform::arch::at::At::S1E2R, address) };
    (address, par)
}

/// Runs the EL0 formatting service on a guest buffer and writes its output
/// back into guest memory.
fn el0_format(input: u64, len: u64, output: u64, capacity: u64) -> Result<u64, i64> {
    use crate::mm::el0_memory::{INPUT_PAGES, OUTPUT_PAGES, PAGE};
    use crate::traps::el0::{self, El0Error};
    use platform::hypercall::validate_buffer;
    let ram = crate::vm::current().map_or(platform::board::MemRegion::new(0, 0), |(vm, _)| vm.ram);
    let regions = [(ram.base, ram.size)];
    let window = (INPUT_PAGES * PAGE) as u64;
    let out_max = (OUTPUT_PAGES * PAGE) as u64;
    let bad = |_| status::INVALID_PARAMETER;
    let input = validate_buffer(input, len, window, &regions).map_err(bad)?;
    let output = validate_buffer(output, capacity, out_max, &regions).map_err(bad)?;
    // Guest RAM is identity-mapped (IPA = PA) and in the direct map. The
    // input is copied once, so the guest cannot change it under the service.
    let mut text = [0u8; (INPUT_PAGES * PAGE)];
    let text = &mut text[..input.len as usize];
    // SAFETY: validate_buffer checked that the range lies in guest RAM.
    unsafe {
        core::ptr::copy_nonoverlapping(
            crate::arch::layout::phys_to_virt(input.ipa) as *const u8,
            text.as_mut_ptr(),
            text.len(),
        );
    }
    let mut formatted = alloc::vec![0u8; output.len as usize];
    let written = el0::format(text, &mut formatted).map_err(|e| match e {
        El0Error::Faulted(_) => status::EL0_FAULTED,
        El0Error::OutputFull => status::EL0_OUTPUT_FULL,
        El0Error::TooLong => status::INVALID_PARAMETER,
    })?;
    if let Some((vm, _)) = crate::vm::current() {
        if !crate::vm::integrity::hypervisor_may_write(vm, output.ipa, written as u64) {
            return Err(status::INVALID_PARAMETER);
        }
    }
    // SAFETY: as above, for the output range; `written <= output.len`.
    unsafe {
        core::ptr::copy_nonoverlapping(
            formatted.as_ptr(),
            crate::arch::layout::phys_to_virt(output.ipa) as *mut u8,
            written,
        );
    }
    Ok(written as u64)
}
