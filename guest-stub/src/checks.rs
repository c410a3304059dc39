//! The self-test checks, one function each, in a static table. A check
//! returns `Err` with what it expected and what it saw.

use crate::exceptions::expect_sync;
use crate::Env;
use platform::abi::{PSCI_VERSION_1_1, SMCCC_VERSION_1_1};
use platform::arch::ExceptionLevel;
use platform::esr::{ExceptionClass, FaultStatus};

pub struct Check {
    pub name: &'static str,
    pub run: fn(&Env) -> Result<(), Failure>,
}

/// Why a check failed.
pub enum Failure {
    Mismatch { what: &'static str, expected: u64, got: u64 },
    Missing(&'static str),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Mismatch { what, expected, got } => {
                write!(f, "{what}: expected {expected:#x}, got {got:#x}")
            }
            Self::Missing(what) => write!(f, "{what}"),
        }
    }
}

fn expect_eq(what: &'static str, expected: u64, got: u64) -> Result<(), Failure> {
    if expected == got {
        Ok(())
    } else {
        Err(Failure::Mismatch { what, expected, got })
    }
}

pub static CHECKS: &[Check] = &[
    Check { name: "el1-entry", run: el1_entry },
    Check { name: "psci-version", run: psci_version },
    Check { name: "smccc-version", run: smccc_version },
    Check { name: "hvc-unknown-not-supported", run: hvc_unknown_not_supported },
    Check { name: "smc-trapped-to-el2", run: smc_trapped_to_el2 },
    Check { name: "stage2-hole-aborts", run: stage2_hole_aborts },
    Check { name: "hv-identity-unmapped", run: hv_identity_unmapped },
    Check { name: "prda-per-cpu", run: prda_per_cpu },
    Check { name: "el0-service", run: el0_service },
    Check { name: "el0-service-fault-contained", run: el0_service_fault_contained },
];

/// Run only with `stub=fail`: proves a failing check fails the whole run.
pub static FORCED_FAILURE: Check = Check { name: "forced-failure", run: forced_failure };

fn forced_failure(_: &Env) -> Result<(), Failure> {
    Err(Failure::Missing("requested with stub=fail"))
}

fn hvc(function: u32, arg: u64) -> u64 {
    smccc::hvc64(function, [arg, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])[0]
}

fn el1_entry(_: &Env) -> Result<(), Failure> {
    expect_eq("CurrentEL", ExceptionLevel::El1 as u64, platform::arch::current_el() as u64)
}

fn psci_version(_: &Env) -> Result<(), Failure> {
    expect_eq("PSCI_VERSION over HVC", PSCI_VERSION_1_1, hvc(smccc::psci::PSCI_VERSION, 0))
}

fn smccc_version(_: &Env) -> Result<(), Failure> {
    expect_eq("SMCCC_VERSION over HVC", SMCCC_VERSION_1_1, hvc(smccc::arch::SMCCC_VERSION, 0))
}

fn hvc_unknown_not_supported(_: &Env) -> Result<(), Failure> {
    // An unallocated function in the vendor-hypervisor range.
    let unknown = platform::abi::fast_call32(platform::abi::Owner::VendorHypervisor, 0xfffe);
    let not_supported = i64::from(smccc::arch::error::NOT_SUPPORTED) as u64;
    expect_eq("unknown HVC function", not_supported, hvc(unknown, 0))
}

fn smc_trapped_to_el2(_: &Env) -> Result<(), Failure> {
    // HCR_EL2.TSC sends a guest SMC to the hypervisor, which answers it as
    // the guest's firmware would; the guest resumes after the SMC.
    let version = smccc::smc64(smccc::psci::PSCI_VERSION, [0; 17])[0];
    expect_eq("PSCI_VERSION over SMC", PSCI_VERSION_1_1, version)
}

fn stage2_hole_aborts(env: &Env) -> Result<(), Failure> {
    // The first byte past guest RAM: stage 2 maps nothing there.
    let hole = env.ram_end;
    let caught = expect_sync(|| {
        // SAFETY: the read is expected to abort; the handler steps over it.
        let _ = unsafe { core::ptr::read_volatile(hole as *const u64) };
    })
    .ok_or(Failure::Missing("a load from outside guest RAM did not abort"))?;
    expect_eq("exception class", ExceptionClass::DataAbortSame.ec().into(), caught.esr.class().ec().into())?;
    let fault = caught.esr.abort().map(|a| a.fault());
    if fault != Some(FaultStatus::SyncExternal) {
        return Err(Failure::Mismatch {
            what: "fault status (0x10 = synchronous external abort)",
            expected: FaultStatus::SYNC_EXTERNAL_CODE.into(),
            got: caught.esr.iss() & 0x3f,
        });
    }
    expect_eq("FAR", hole, caught.far)?;
    // And the hypervisor is still there to answer.
    expect_eq("PSCI_VERSION after the abort", PSCI_VERSION_1_1, hvc(smccc::psci::PSCI_VERSION, 0))
}

fn hv_identity_unmapped(_: &Env) -> Result<(), Failure> {
    // The hypervisor translates its own load PA as an EL2 VA with AT: with
    // no identity map in its final tables that is a translation fault.
    let reply = smccc::hvc64(platform::abi::HV_PROBE_IDENTITY, [0; 17]);
    expect_eq("HV_PROBE_IDENTITY status", 0, reply[0])?;
    let (address, par) = (reply[1], reply[2]);
    if address == 0 {
        return Err(Failure::Missing("the hypervisor did not say which address it probed"));
    }
    expect_eq("PAR.F for the old identity address", platform::abi::par::F, par & platform::abi::par::F)?;
    let status = platform::esr::FaultStatus::from_code(platform::abi::par::fault_status(par));
    match status {
        FaultStatus::Translation { .. } => Ok(()),
        _ => Err(Failure::Mismatch {
            what: "PAR.FST (0x04-0x07 = translation fault)",
            expected: 0x04,
            got: platform::abi::par::fault_status(par).into(),
        }),
    }
}

fn prda_per_cpu(_: &Env) -> Result<(), Failure> {
    // Each physical CPU reads the private data area at the one fixed VA and
    // must find its own identity there.
    let reply = smccc::hvc64(platform::abi::HV_CHECK_PRDA, [0; 17]);
    expect_eq("HV_CHECK_PRDA status", 0, reply[0])?;
    let (mask, cpus) = (reply[1], reply[2]);
    if cpus == 0 || cpus > 64 {
        return Err(Failure::Mismatch { what: "CPUs asked", expected: 1, got: cpus });
    }
    let all = u64::MAX >> (64 - cpus);
    expect_eq("mask of CPUs that found their own PRDA", all, mask)
}

/// Guest memory for the EL0-service requests (the stub runs with its MMU
/// off, so addresses are IPAs).
struct Buffers {
    input: [u8; 4096],
    /// Room for a whole input window, so only a missing terminator ends a scan.
    output: [u8; 4096],
}

static BUFFERS: spin::Mutex<Buffers> = spin::Mutex::new(Buffers { input: [0; 4096], output: [0; 4096] });

/// Asks the hypervisor's EL0 service to format `text`; returns the status
/// and, on success, the output.
fn el0_format(buffers: &mut Buffers, len: usize) -> (i64, &[u8]) {
    let mut args = [0u64; 17];
    args[0] = buffers.input.as_ptr() as u64;
    args[1] = len as u64;
    args[2] = buffers.output.as_mut_ptr() as u64;
    args[3] = buffers.output.len() as u64;
    let reply = smccc::hvc64(platform::abi::HV_EL0_FORMAT, args);
    let status = reply[0] as i64;
    let written = (reply[1] as usize).min(buffers.output.len());
    (status, if status == 0 { &buffers.output[..written] } else { &[] })
}

/// The service escapes what is not printable: a known answer.
fn el0_format_known_text(buffers: &mut Buffers) -> Result<(), Failure> {
    const TEXT: &[u8] = b"hv\x01ok\x7f\\\0";
    const EXPECTED: &[u8] = b"hv\\x01ok\\x7f\\x5c";
    buffers.input[..TEXT.len()].copy_from_slice(TEXT);
    let (status, output) = el0_format(buffers, TEXT.len());
    expect_eq("HV_EL0_FORMAT status", 0, status as u64)?;
    expect_eq("formatted length", EXPECTED.len() as u64, output.len() as u64)?;
    if output != EXPECTED {
        return Err(Failure::Missing("the EL0 service's output differs from the expected escaping"));
    }
    Ok(())
}

fn el0_service(_: &Env) -> Result<(), Failure> {
    el0_format_known_text(&mut BUFFERS.lock())
}

fn el0_service_fault_contained(_: &Env) -> Result<(), Failure> {
    let mut buffers = BUFFERS.lock();
    // A full window with no terminator: the service's scan runs off its
    // input page and faults at EL0.
    buffers.input.fill(b'A');
    let len = buffers.input.len();
    let (status, _) = el0_format(&mut buffers, len);
    expect_eq("HV_EL0_FORMAT status for unterminated text", platform::abi::status::EL0_FAULTED as u64, status as u64)?;
    // The hypervisor, and the service, still work.
    el0_format_known_text(&mut buffers)
}
