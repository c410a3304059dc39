//! The self-test checks, one function each, in a static table. A check
//! returns `Err` with what it expected and what it saw.

use crate::el0::{self, BrkCall, Exit};
use crate::exceptions::{expect_sync, Caught};
use crate::gvascan::{self, Layout};
use crate::{backdoor, Env};
use platform::abi::{PSCI_VERSION_1_1, SMCCC_VERSION_1_1};
use platform::arch::regs::SPSR_DAIF;
use platform::arch::trap::{ExceptionSource, ExceptionType};
use platform::arch::ExceptionLevel;
use platform::esr::{Esr, ExceptionClass, FaultStatus};
use platform::gvascan::{Region, CURSOR_DONE, CURSOR_START, ENTRY_SIZE};
use platform::hypercall::{
    features, CallerEl, Function, HvError, Info, ABI_VERSION, CONSOLE_WRITE_MAX, SCAN_PROBE_BUDGET, STATUS_OK,
};

pub struct Check {
    pub name: &'static str,
    pub run: fn(&Env) -> Result<(), Failure>,
}

/// Why a check failed.
pub enum Failure {
    Mismatch {
        what: &'static str,
        expected: u64,
        got: u64,
    },
    Missing(&'static str),
    /// A hypercall answered with another status than expected (both are
    /// `x0` values, named as the ABI names them).
    Status {
        what: &'static str,
        expected: u64,
        got: u64,
    },
    /// An exception reached the stub's own EL1 vector where none should
    /// have (or not the one expected).
    Exception {
        what: &'static str,
        caught: Caught,
    },
    /// EL0 code left EL0 other than expected.
    El0 {
        what: &'static str,
        exit: Exit,
    },
    /// Registers that do not decode; shown raw.
    Regs {
        what: &'static str,
        regs: [u64; 4],
    },
    /// What an interrupt check (or the PNMI checks' event order) found.
    Irq(crate::virq::IrqFailure),
    /// What a scheduler check found.
    Sched(crate::sched::SchedFailure),
    /// What a portal check found.
    Portal(crate::portal::PortalFailure),
    /// What a kernel-integrity check found.
    Integrity(crate::integrity::IntegrityFailure),
    /// Not a failure: the check cannot run in this VM (why). The run
    /// reports it as skipped.
    Skip(&'static str),
}

/// A hypercall status (`x0`) as the ABI names it.
struct StatusName(u64);

impl core::fmt::Display for StatusName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == STATUS_OK {
            return f.write_str("OK (0)");
        }
        match HvError::from_code(self.0 as i64) {
            Some(e) => write!(f, "{e}"),
            None => write!(f, "{:#x} (no status of this ABI)", self.0),
        }
    }
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Mismatch { what, expected, got } => {
                write!(f, "{what}: expected {expected:#x}, got {got:#x}")
            }
            Self::Missing(what) => write!(f, "{what}"),
            Self::Status { what, expected, got } => {
                write!(f, "{what}: expected status {}, got {}", StatusName(*expected), StatusName(*got))
            }
            Self::Exception { what, caught } => write!(f, "{what}: {caught}"),
            Self::El0 { what, exit } => write!(f, "{what}: EL0 left with {exit}"),
            Self::Regs { what, regs } => write!(f, "{what}: x0..x3 = {regs:#x?}"),
            Self::Irq(failure) => write!(f, "{failure}"),
            Self::Sched(failure) => write!(f, "{failure}"),
            Self::Portal(failure) => write!(f, "{failure}"),
            Self::Integrity(failure) => write!(f, "{failure}"),
            Self::Skip(why) => write!(f, "skipped: {why}"),
        }
    }
}

pub(crate) fn expect_eq(what: &'static str, expected: u64, got: u64) -> Result<(), Failure> {
    if expected == got {
        Ok(())
    } else {
        Err(Failure::Mismatch { what, expected, got })
    }
}

pub(crate) fn expect_status(what: &'static str, expected: u64, got: u64) -> Result<(), Failure> {
    if expected == got {
        Ok(())
    } else {
        Err(Failure::Status { what, expected, got })
    }
}

pub static CHECKS: &[Check] = &[
    Check { name: "el1-entry", run: el1_entry },
    Check { name: "psci-version", run: psci_version },
    Check { name: "smccc-version", run: smccc_version },
    Check { name: "hvc-unknown-not-supported", run: hvc_unknown_not_supported },
    Check { name: "smc-trapped-to-el2", run: smc_trapped_to_el2 },
    Check { name: "stage2-hole-aborts", run: stage2_hole_aborts },
    Check { name: "isolation-holes", run: isolation_holes },
    Check { name: "hv-identity-unmapped", run: hv_identity_unmapped },
    Check { name: "prda-per-cpu", run: prda_per_cpu },
    Check { name: "el0-service", run: el0_service },
    Check { name: "el0-service-fault-contained", run: el0_service_fault_contained },
    Check { name: "brk-backdoor-version", run: brk_backdoor_version },
    Check { name: "brk-backdoor-console", run: brk_backdoor_console },
    Check { name: "brk-backdoor-bad-pointer", run: brk_backdoor_bad_pointer },
    Check { name: "brk-reflect", run: brk_reflect },
    Check { name: "brk-el0-policy", run: brk_el0_policy },
    Check { name: "dcc-hypercall", run: dcc_hypercall },
    Check { name: "dcc-console", run: dcc_console },
    Check { name: "hvc-psci-version", run: hvc_psci_version },
    Check { name: "smc-unknown-not-supported", run: smc_unknown_not_supported },
    Check { name: "vendor-uid", run: vendor_uid },
    Check { name: "mmio-emulated-read-write", run: mmio_emulated_read_write },
    Check { name: "mmio-isv0-injects-abort", run: mmio_isv0_injects_abort },
    Check { name: "gva-scan-known-map", run: gva_scan_known_map },
    Check { name: "gva-scan-probes", run: gva_scan_probes },
    Check { name: "gva-scan-bad-buffer", run: gva_scan_bad_buffer },
    Check { name: "gva-scan-resume", run: gva_scan_resume },
    Check { name: "pci-enumerate", run: crate::pci::enumerate },
    Check { name: "pci-bar-sizing", run: crate::pci::bar_sizing },
    Check { name: "pci-readonly-fields", run: crate::pci::readonly_fields },
    Check { name: "pci-bad-access", run: crate::pci::bad_access },
    Check { name: "pci-bar-reads-device", run: crate::pci::bar_reads_device },
    Check { name: "pci-bar-move", run: crate::pci::bar_move },
    Check { name: "debug-breakpoint-reflected", run: debug_breakpoint_reflected },
    Check { name: "debug-breakpoint-masked-at-el1", run: debug_breakpoint_masked_at_el1 },
    Check { name: "debug-step-armed-at-el1", run: debug_step_armed_at_el1 },
    Check { name: "debug-bkpt-aarch32", run: debug_bkpt_aarch32 },
    Check { name: "virq-timer", run: crate::virq::virq_timer },
    Check { name: "virq-sgi", run: crate::virq::virq_sgi },
    Check { name: "virq-priority", run: crate::virq::virq_priority },
    Check { name: "virq-disable-withdraws", run: crate::virq::virq_disable_withdraws },
    Check { name: "virq-no-loss", run: crate::virq::virq_no_loss },
    Check { name: "pnmi-preempts-irq", run: pnmi_preempts_irq },
    Check { name: "pnmi-watchdog", run: pnmi_watchdog },
];

/// The vCPU scheduler's checks (`sched.rs`): not part of the default run,
/// whose list the runner holds the stub to (`tests/src/selftest.rs`,
/// `DEFAULT_CHECKS`); they run when `stub=only=<prefix>` names them, e.g.
/// `stub=only=sched`.
pub static SCHED_CHECKS: &[Check] = &[
    Check { name: "sched-timer-late", run: crate::sched::timer_late },
    Check { name: "sched-timer-wake", run: crate::sched::timer_wake },
    Check { name: "sched-sgi-wake", run: crate::sched::sgi_wake },
    Check { name: "sched-spi-wake", run: crate::sched::spi_wake },
];

/// The portal checks (`portal.rs`): not part of the default run either;
/// they run when `stub=only=<prefix>` names them (`stub=only=portal`), in
/// two VMs at once that are the ends of one portal (and any number of VMs
/// that are no end, with `stub=portals=0`).
pub static PORTAL_CHECKS: &[Check] = &[
    Check { name: "portal-enumerate", run: crate::portal::enumerate },
    Check { name: "portal-isolation", run: crate::portal::isolation },
    Check { name: "portal-ping-pong", run: crate::portal::ping_pong },
    Check { name: "portal-shared-memory", run: crate::portal::shared_memory },
    Check { name: "portal-refused", run: crate::portal::refused },
    Check { name: "portal-peer-down", run: crate::portal::peer_down },
];

/// The forwarded-virtio checks (`virtio.rs`): not part of the default run;
/// `stub=only=virtio` runs them, in a client VM and its service VM at once.
pub static VIRTIO_CHECKS: &[Check] = &[
    Check { name: "virtio-find", run: crate::virtio::find },
    Check { name: "virtio-identity", run: crate::virtio::identity },
    Check { name: "virtio-scratch", run: crate::virtio::scratch },
    Check { name: "virtio-hostile", run: crate::virtio::hostile },
    Check { name: "virtio-interrupt", run: crate::virtio::interrupt },
    Check { name: "virtio-ram", run: crate::virtio::ram },
    Check { name: "virtio-smp", run: crate::virtio::smp },
    Check { name: "virtio-done", run: crate::virtio::done },
    Check { name: "virtio-service-death", run: crate::virtio::service_death },
];

/// The checks against the real `hvvirtio` of a Linux service VM
/// (`vqueue.rs`): not part of the default run; `stub=only=hvvirtio` runs
/// them, in a client VM with one forwarded block device. Their prefix is
/// not `virtio`, so that `stub=only=virtio` (a guest-stub service) does
/// not run them.
pub static HVVIRTIO_CHECKS: &[Check] = &[
    Check { name: "hvvirtio-find", run: crate::vqueue::find },
    Check { name: "hvvirtio-read", run: crate::vqueue::read },
    Check { name: "hvvirtio-queue-outside", run: crate::vqueue::queue_outside },
    Check { name: "hvvirtio-buffer-outside", run: crate::vqueue::buffer_outside },
];

/// The kernel-integrity checks (`integrity.rs`): not part of the default
/// run; `stub=only=mbec`, `stub=only=trace` and `stub=only=integrity-lock`
/// run them, each in a run of its own (the lock cannot be undone, so
/// `integrity-lock` runs only alone). Without `integrity` on the
/// hypervisor's command line each reports itself skipped.
pub static INTEGRITY_CHECKS: &[Check] = &[
    Check { name: "mbec-matrix", run: crate::integrity::mbec::mbec_matrix },
    Check { name: "trace-sequence", run: crate::integrity::trace::trace_sequence },
    Check { name: crate::integrity::lock::CHECK_NAME, run: crate::integrity::lock::integrity_lock },
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

/// `stub=crash`: points `VBAR_EL1` at a hole and reads another, so that
/// the external abort goes to a vector that faults itself, again and
/// again. On bare metal the CPU would be stuck; the hypervisor stops the
/// VM instead (it never returns here).
pub fn crash(env: &Env) -> ! {
    // Just past RAM, 2 KiB aligned as VBAR needs: a hole (the first device
    // window a VM may have, the test device, is 1 MiB past RAM).
    let vector = env.ram_end + 0x800;
    platform::println!("crashing on purpose: VBAR_EL1 = {vector:#x} (a hole), then a read of a hole");
    // SAFETY: deliberately leaves this vCPU unable to take exceptions; the
    // read is of nothing. Nothing runs here afterwards.
    unsafe {
        platform::msr!("vbar_el1", vector);
        core::arch::asm!("isb", options(nostack));
        let _ = core::ptr::read_volatile(env.ram_end as *const u64);
    }
    platform::arch::halt()
}

/// Written at the end of the first life, before `SYSTEM_RESET`, in the
/// last word of RAM (which nothing of the stub's uses); a restarted VM's
/// RAM was cleared, so its next life must find 0 there.
const RESTART_MARK: u64 = 0x5245_5354_4152_5421;

/// The check a restarted guest-stub runs first (`hv,starts` > 0).
pub const RESTART_MEMORY_CLEARED: Check = Check { name: "restart-memory-cleared", run: restart_memory_cleared };

/// Where [`RESTART_MARK`] goes: the last word of RAM.
fn restart_mark_address() -> u64 {
    crate::ram_end().saturating_sub(8)
}

/// Leaves [`RESTART_MARK`] for the next life to look for.
pub fn mark_for_restart() {
    // SAFETY: the last word of this VM's RAM, which nothing of the stub's
    // (image, stack, DTB) uses.
    unsafe { core::ptr::write_volatile(restart_mark_address() as *mut u64, RESTART_MARK) };
}

fn restart_memory_cleared(_: &Env) -> Result<(), Failure> {
    // SAFETY: as in `mark_for_restart`.
    let found = unsafe { core::ptr::read_volatile(restart_mark_address() as *const u64) };
    expect_eq("the last word of RAM after the restart (the previous life left a mark)", 0, found)
}

/// A word of this VM's own RAM that the isolation check fills before its
/// probes and reads back after them.
static CANARY: [core::sync::atomic::AtomicU64; 64] = [const { core::sync::atomic::AtomicU64::new(0) }; 64];

/// Every address the hypervisor lists as a hole to this VM (other VMs' RAM,
/// the hypervisor's image) aborts on a load and on a store, as a bus gives
/// nothing there; and this VM's own RAM is unchanged afterwards.
pub(crate) fn isolation_holes(env: &Env) -> Result<(), Failure> {
    use core::sync::atomic::Ordering;
    let (holes, count) = env.probe_holes;
    let holes = holes.get(..count).unwrap_or_default();
    if holes.is_empty() {
        return Err(Failure::Missing("no /chosen/hv,probe-holes in the guest DTB"));
    }
    let pattern = |i: usize| 0xc0ff_ee00_0000_0000 ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for (i, word) in CANARY.iter().enumerate() {
        word.store(pattern(i), Ordering::Relaxed);
    }
    for &hole in holes {
        for store in [false, true] {
            let caught = expect_sync(|| {
                // SAFETY: the access is expected to abort; the handler steps
                // over it. Were it mapped, it would touch another VM's or the
                // hypervisor's memory, which is what the check is there to
                // catch.
                unsafe {
                    if store {
                        core::ptr::write_volatile(hole as *mut u64, 0xbad0_bad0_bad0_bad0);
                    } else {
                        let _ = core::ptr::read_volatile(hole as *const u64);
                    }
                }
            })
            .ok_or(if store {
                Failure::Missing("a store to a hole (another VM's RAM or the hypervisor) did not abort")
            } else {
                Failure::Missing("a load from a hole (another VM's RAM or the hypervisor) did not abort")
            })?;
            expect_eq("exception class", ExceptionClass::DataAbortSame.ec().into(), caught.esr.class().ec().into())?;
            expect_eq("FAR", hole, caught.far)?;
        }
    }
    for (i, word) in CANARY.iter().enumerate() {
        expect_eq("own RAM after the probes", pattern(i), word.load(Ordering::Relaxed))?;
    }
    Ok(())
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

// --- the BRK backdoor ---------------------------------------------------

/// A function ID no version of this ABI names (`Function::from_id` is
/// `None`; the check says so if that ever changes).
const UNKNOWN_FUNCTION: u64 = 0x4856_0bad;

/// What `INFO` must report as the EL2 VA width: the hypervisor's kernel has
/// a 48-bit space in both schemes (docs/architecture.md, "Two schemes, two VA widths, one hierarchy").
const EXPECTED_EL2_VA_BITS: u8 = 48;

const BRK_NOT_TAKEN: &str =
    "BRK #0x4856 reached the guest's own EL1 vector (guest BRK not routed to the hypervisor: MDCR_EL2.TDE)";

/// The `x0` value of an ABI answer: 0, or the error's status.
fn status_of(result: Result<(), HvError>) -> u64 {
    match result {
        Ok(()) => STATUS_OK,
        Err(e) => e.status(),
    }
}

/// A BRK hypercall from EL1; x0..x3, or the exception that reached the stub
/// instead.
fn brk(function: u64, x1: u64, x2: u64) -> Result<[u64; 4], Failure> {
    backdoor::brk_call(function, [x1, x2, 0, 0, 0, 0, 0])
        .map_err(|caught| Failure::Exception { what: BRK_NOT_TAKEN, caught })
}

/// Checks a successful reply; returns x1..x3.
pub(crate) fn reply_ok(what: &'static str, reply: [u64; 4]) -> Result<[u64; 3], Failure> {
    let [x0, x1, x2, x3] = reply;
    expect_status(what, STATUS_OK, x0)?;
    Ok([x1, x2, x3])
}

/// Checks a reply with status `expected` (`Err`: x1..x3 must be zeroed, so
/// that nothing stale leaks back to the guest).
pub(crate) fn reply_status(what: &'static str, expected: Result<(), HvError>, reply: [u64; 4]) -> Result<(), Failure> {
    let [x0, x1, x2, x3] = reply;
    expect_status(what, status_of(expected), x0)?;
    if expected.is_err() && (x1, x2, x3) != (0, 0, 0) {
        return Err(Failure::Regs { what: "an error reply must zero x1..x3", regs: reply });
    }
    Ok(())
}

fn brk_backdoor_version(_: &Env) -> Result<(), Failure> {
    // VERSION: x1 = ABI_VERSION, x2 and x3 unused (0).
    let [version, x2, x3] = reply_ok("VERSION", brk(Function::Version.id(), 0, 0)?)?;
    expect_eq("VERSION x1 (major << 16 | minor)", ABI_VERSION, version)?;
    expect_eq("VERSION x2 (unused)", 0, x2)?;
    expect_eq("VERSION x3 (unused)", 0, x3)?;

    // FEATURES: CONSOLE_WRITE is there for EL1, an unknown ID is not, and
    // every ID the ABI names answers as the ABI says for an EL1 caller.
    reply_ok("FEATURES(CONSOLE_WRITE)", brk(Function::Features.id(), Function::ConsoleWrite.id(), 0)?)?;
    if Function::from_id(UNKNOWN_FUNCTION).is_some() {
        return Err(Failure::Missing("UNKNOWN_FUNCTION is a function of this ABI now: pick another"));
    }
    let unknown = brk(Function::Features.id(), UNKNOWN_FUNCTION, 0)?;
    reply_status("FEATURES(unknown ID)", Err(HvError::NotSupported), unknown)?;
    for function in Function::ALL {
        let reply = brk(Function::Features.id(), function.id(), 0)?;
        reply_status("FEATURES(each ABI function) from EL1", features(function.id(), CallerEl::El1), reply)?;
    }

    // Unknown functions, including one whose ID differs from VERSION's
    // only above bit 31 (all 64 bits of x0 count).
    reply_status("unknown function", Err(HvError::NotSupported), brk(UNKNOWN_FUNCTION, 0, 0)?)?;
    let high = Function::Version.id() | 1 << 32;
    reply_status("function ID 1 << 32 (VERSION's ID plus a high bit)", Err(HvError::NotSupported), brk(high, 0, 0)?)?;

    // INFO decodes, with at least one CPU and the hypervisor's 48-bit VA.
    let reply = brk(Function::Info.id(), 0, 0)?;
    let regs = reply_ok("INFO", reply)?;
    let info = Info::decode(regs).ok_or(Failure::Regs {
        what: "INFO's x1..x3 do not decode (unknown mode or reserved bits set)",
        regs: reply,
    })?;
    if info.cpus == 0 || info.cpus as usize > platform::board::MAX_CPUS {
        return Err(Failure::Mismatch { what: "INFO CPU count (1..=MAX_CPUS)", expected: 1, got: info.cpus.into() });
    }
    expect_eq("INFO EL2 VA width", EXPECTED_EL2_VA_BITS.into(), info.el2_va_bits.into())
}

const CONSOLE_TEXT: &[u8] = b"guest-stub: brk console ok\n";
const PAGE_CROSSING_TEXT: &[u8] = b"guest-stub: brk console across a page boundary ok\n";
const EL0_CONSOLE_TEXT: &[u8] = b"guest-stub: brk console from EL0 ok\n";

/// Two pages of guest RAM, for buffers that cross a page boundary.
#[repr(C, align(4096))]
struct TwoPages([u8; 8192]);

static TWO_PAGES: spin::Mutex<TwoPages> = spin::Mutex::new(TwoPages([0; 8192]));

/// CONSOLE_WRITE of `text` from EL1: OK, x1 = every byte written, x2 = x3 = 0.
fn console_write(what: &'static str, text: &[u8]) -> Result<(), Failure> {
    let len = text.len() as u64;
    let [written, x2, x3] = reply_ok(what, brk(Function::ConsoleWrite.id(), text.as_ptr() as u64, len)?)?;
    expect_eq("CONSOLE_WRITE x1 (bytes written: all of them)", len, written)?;
    expect_eq("CONSOLE_WRITE x2 (unused)", 0, x2)?;
    expect_eq("CONSOLE_WRITE x3 (unused)", 0, x3)
}

fn brk_backdoor_console(_: &Env) -> Result<(), Failure> {
    // The stub's MMU is off: the buffer's address is its IPA, in guest RAM
    // (the image's read-only data).
    console_write("CONSOLE_WRITE", CONSOLE_TEXT)?;

    // A buffer that crosses a page boundary (the hypervisor validates and
    // copies it page by page).
    let mut pages = TWO_PAGES.lock();
    let start = 4096 - 16;
    let buffer = &mut pages.0[start..start + PAGE_CROSSING_TEXT.len()];
    buffer.copy_from_slice(PAGE_CROSSING_TEXT);
    console_write("CONSOLE_WRITE across a page boundary", buffer)?;

    // An empty write is no mistake, and its address is not looked at.
    let [written, ..] = reply_ok("CONSOLE_WRITE of 0 bytes at address 0", brk(Function::ConsoleWrite.id(), 0, 0)?)?;
    expect_eq("CONSOLE_WRITE of 0 bytes: x1", 0, written)
}

fn brk_backdoor_bad_pointer(env: &Env) -> Result<(), Failure> {
    let write = Function::ConsoleWrite.id();
    let bad = Err(HvError::BadAddress);
    // The first byte past guest RAM, and a buffer straddling the end.
    reply_status("CONSOLE_WRITE at the end of guest RAM", bad, brk(write, env.ram_end, 16)?)?;
    reply_status("CONSOLE_WRITE straddling the end of guest RAM", bad, brk(write, env.ram_end - 8, 16)?)?;
    // Just below guest RAM.
    if env.ram_base >= 16 {
        reply_status("CONSOLE_WRITE just below guest RAM", bad, brk(write, env.ram_base - 16, 16)?)?;
    }
    // A buffer that wraps around the top of the address space.
    reply_status("CONSOLE_WRITE wrapping past 2^64", bad, brk(write, u64::MAX - 7, 16)?)?;
    // Longer than CONSOLE_WRITE_MAX, from a good address.
    let pages = TWO_PAGES.lock();
    let long = brk(write, pages.0.as_ptr() as u64, CONSOLE_WRITE_MAX + 1)?;
    reply_status("CONSOLE_WRITE of CONSOLE_WRITE_MAX + 1 bytes", Err(HvError::TooLong), long)?;
    drop(pages);
    // And the hypervisor still answers.
    let [version, ..] = reply_ok("VERSION after the bad pointers", brk(Function::Version.id(), 0, 0)?)?;
    expect_eq("VERSION after the bad pointers", ABI_VERSION, version)
}

/// `SPSR.M[4:0]` and `SPSR.DAIF`: what the BRK checks compare.
const SPSR_M_AND_DAIF: u64 = 0b1_1111 | SPSR_DAIF;

fn brk_reflect(_: &Env) -> Result<(), Failure> {
    use platform::arch::regs::SPSR_M_EL1H;
    const IMM: u16 = el0::PROBE_BRK_IMM;

    // At EL1: the stub's own vector takes it, as it would without a
    // hypervisor, with ELR = the BRK itself (its preferred return address).
    let mut at = 0u64;
    let mut daif = 0u64;
    let caught = expect_sync(|| {
        // SAFETY: the BRK is expected to reach the stub's vector, which
        // steps over it; nothing else happens.
        unsafe {
            core::arch::asm!(
                "mrs {daif}, daif",
                "adr {at}, 2f",
                "2: brk #{imm}",
                daif = out(reg) daif,
                at = out(reg) at,
                imm = const IMM,
                options(nostack),
            );
        }
    })
    .ok_or(Failure::Missing("brk #0x1234 at EL1 did not reach the guest's vector (swallowed?)"))?;
    expect_eq("ESR_EL1.EC (0x3c = BRK64)", ExceptionClass::Brk64.ec().into(), caught.esr.class().ec().into())?;
    expect_eq("BRK comment (ESR_EL1.ISS)", IMM.into(), caught.esr.iss())?;
    expect_eq("ESR_EL1.IL", 1, caught.esr.il().into())?;
    expect_eq("ESR_EL1 (all of it)", Esr::brk(IMM).0, caught.esr.0)?;
    expect_eq("ELR_EL1 (the BRK itself)", at, caught.elr)?;
    expect_eq("SPSR_EL1 M and DAIF (EL1h, DAIF as before)", SPSR_M_EL1H | daif, caught.spsr & SPSR_M_AND_DAIF)?;

    // At EL0: the stub's lower-EL vector takes it.
    let (exit, at) = el0::brk_probe();
    let Exit::Exception { kind, esr, elr, spsr, .. } = exit else {
        return Err(Failure::El0 { what: "brk #0x1234 at EL0 did not reach the guest's vector", exit });
    };
    if kind.source() != ExceptionSource::LowerA64 || kind.kind() != ExceptionType::Sync {
        return Err(Failure::El0 { what: "brk #0x1234 at EL0: not a synchronous exception from lower EL", exit });
    }
    expect_eq("ESR_EL1 for brk #0x1234 at EL0", Esr::brk(IMM).0, esr.0)?;
    expect_eq("ELR_EL1 for brk #0x1234 at EL0 (the BRK itself)", at, elr)?;
    // EL0t (M = 0), with the DAIF mask EL0 was entered with.
    expect_eq("SPSR_EL1 M and DAIF for brk at EL0 (EL0t, DAIF masked)", SPSR_DAIF, spsr & SPSR_M_AND_DAIF)
}

/// Whether EL0 ended its run with `SVC #0`, x0 = 0, from EL0.
pub(crate) fn el0_finished(exit: Exit) -> Result<(), Failure> {
    match exit {
        Exit::Svc { imm: 0, regs: [0, ..], spsr }
            if ExceptionLevel::from_spsr(spsr) == ExceptionLevel::El0 && spsr & 0b1_0000 == 0 =>
        {
            Ok(())
        }
        _ => Err(Failure::El0 { what: "EL0 did not finish its hypercalls with SVC #0", exit }),
    }
}

fn brk_el0_policy(env: &Env) -> Result<(), Failure> {
    // What EL0 asks, in order (el0.S makes the BRKs and stores x0..x3).
    const VERSION: usize = 0;
    const SCAN: usize = 1;
    const INFO: usize = 2;
    const CONSOLE: usize = 3;
    const CONSOLE_BAD: usize = 4;
    const FEATURES: usize = 5;
    let mut calls = [BrkCall::default(); FEATURES + Function::ALL.len()];
    calls[VERSION] = BrkCall::new(Function::Version.id(), 0, 0);
    // SCAN of the TTBR1 (kernel) range: EL1 only.
    calls[SCAN] = BrkCall::new(Function::Scan.id(), 1, 0);
    calls[INFO] = BrkCall::new(Function::Info.id(), 0, 0);
    calls[CONSOLE] =
        BrkCall::new(Function::ConsoleWrite.id(), EL0_CONSOLE_TEXT.as_ptr() as u64, EL0_CONSOLE_TEXT.len() as u64);
    calls[CONSOLE_BAD] = BrkCall::new(Function::ConsoleWrite.id(), env.ram_end, 16);
    for (call, function) in calls[FEATURES..].iter_mut().zip(Function::ALL) {
        *call = BrkCall::new(Function::Features.id(), function.id(), 0);
    }
    let exit = el0::brk_calls(&mut calls);
    if let Exit::Exception { esr, .. } = exit {
        if esr.brk_comment() == Some(platform::hypercall::HV_BRK_IMM) {
            return Err(Failure::El0 {
                what: "BRK #0x4856 from EL0 reached the guest's own vector (not routed to the hypervisor)",
                exit,
            });
        }
    }
    el0_finished(exit)?;

    let [version, ..] = reply_ok("VERSION from EL0", calls[VERSION].reply)?;
    expect_eq("VERSION x1 from EL0", ABI_VERSION, version)?;
    // EL0 may scan its own (TTBR0) range but never the kernel's (TTBR1).
    reply_status("SCAN of the TTBR1 range from EL0", Err(HvError::PermissionDenied), calls[SCAN].reply)?;
    let regs = reply_ok("INFO from EL0", calls[INFO].reply)?;
    Info::decode(regs).ok_or(Failure::Regs { what: "INFO from EL0 does not decode", regs: calls[INFO].reply })?;
    let [written, ..] = reply_ok("CONSOLE_WRITE from EL0", calls[CONSOLE].reply)?;
    expect_eq("CONSOLE_WRITE from EL0: bytes written", EL0_CONSOLE_TEXT.len() as u64, written)?;
    reply_status("CONSOLE_WRITE from EL0 past guest RAM", Err(HvError::BadAddress), calls[CONSOLE_BAD].reply)?;
    for (call, function) in calls[FEATURES..].iter().zip(Function::ALL) {
        reply_status("FEATURES(each ABI function) from EL0", features(function.id(), CallerEl::El0), call.reply)?;
    }
    Ok(())
}

// --- the DCC conduit ----------------------------------------------------

/// Preloaded into the `MRS` destination so that a read that leaves it
/// alone shows.
const X8_BEFORE: u64 = 0x5a5a_5a5a_5a5a_5a5a;
const DCC_TRAPPED: &str = "MDCCSR_EL0 read raised an exception at the guest's own vector";

fn dcc_hypercall(_: &Env) -> Result<(), Failure> {
    use platform::hypercall::DCC_CALL_MAGIC;
    // VERSION through the DCC conduit.
    let (reply, x8) = backdoor::dcc_call(Function::Version.id(), [0; 3], X8_BEFORE)
        .map_err(|caught| Failure::Exception { what: DCC_TRAPPED, caught })?;
    let [version, x2, x3] = reply_ok("DCC VERSION", reply)?;
    expect_eq("DCC VERSION x1", ABI_VERSION, version)?;
    expect_eq("DCC VERSION x2 (unused)", 0, x2)?;
    expect_eq("DCC VERSION x3 (unused)", 0, x3)?;
    expect_eq("DCC VERSION x8 (the MDCCSR_EL0 value)", 0, x8)?;
    // An unknown function through the DCC conduit.
    let (reply, _) = backdoor::dcc_call(UNKNOWN_FUNCTION, [0; 3], X8_BEFORE)
        .map_err(|caught| Failure::Exception { what: DCC_TRAPPED, caught })?;
    reply_status("DCC unknown function", Err(HvError::NotSupported), reply)?;

    // Without the magic it is a plain register read: 0, and x0..x3 as they
    // were. INFO's ID (a BRK call would change x0 to 0) and an x0 one bit
    // off the magic.
    let args = [0x1111, 0x2222, 0x3333];
    for x0 in [Function::Info.id(), (DCC_CALL_MAGIC ^ 1 << 32) | Function::Version.id()] {
        let (reply, x8) = backdoor::mdccsr_read_with(x0, args, X8_BEFORE)
            .map_err(|caught| Failure::Exception { what: DCC_TRAPPED, caught })?;
        expect_eq("plain MDCCSR_EL0 read: x8", 0, x8)?;
        if reply != [x0, args[0], args[1], args[2]] {
            return Err(Failure::Regs { what: "plain MDCCSR_EL0 read changed x0..x3", regs: reply });
        }
    }
    Ok(())
}

const DCC_CONSOLE_TEXT: &[u8] = b"guest-stub: dcc console ok\n";

fn dcc_console(_: &Env) -> Result<(), Failure> {
    for &byte in DCC_CONSOLE_TEXT {
        backdoor::dcc_put(byte).map_err(|caught| Failure::Exception {
            what: if caught.esr.class() == ExceptionClass::Unknown {
                "MSR DBGDTRTX_EL0 is UNDEFINED at EL1: the CPU lacks the register (QEMU before 8.0 does, and \
                 then the write never traps to EL2) or the hypervisor refused it"
            } else {
                "MSR DBGDTRTX_EL0 raised an exception at the guest's own vector"
            },
            caught,
        })?;
    }
    // Nothing to receive and room to send, as with no debugger attached.
    let (reply, x8) = backdoor::mdccsr_read_with(0, [0; 3], X8_BEFORE)
        .map_err(|caught| Failure::Exception { what: DCC_TRAPPED, caught })?;
    expect_eq("MDCCSR_EL0 after the console writes", 0, x8)?;
    expect_eq("x0 after a plain MDCCSR_EL0 read", 0, reply[0])
}

// --- HVC and SMC --------------------------------------------------------

fn not_supported() -> u64 {
    i64::from(smccc::arch::error::NOT_SUPPORTED) as u64
}

fn hvc_psci_version(_: &Env) -> Result<(), Failure> {
    // The SMC32/HVC32 convention: W0 in, W0 out.
    let version = smccc::hvc32(smccc::psci::PSCI_VERSION, [0; 7])[0];
    expect_eq("PSCI_VERSION over HVC32", PSCI_VERSION_1_1, version.into())
}

fn smc_unknown_not_supported(_: &Env) -> Result<(), Failure> {
    use platform::abi::{fast_call32, Owner, SIP_SET_EXIT_STATUS, SMC64};
    // An unallocated SMC64 function in the OEM range.
    let unknown = fast_call32(Owner::Oem, 0xfffe) | SMC64;
    expect_eq("unknown SMC64 (OEM) function", not_supported(), smccc::smc64(unknown, [0; 17])[0])?;
    // A call only the monitor serves: the hypervisor answers the guest's
    // SMC itself, so the monitor never sees it (it would answer 0).
    // Status 0, should it reach the monitor after all.
    let args = [0u64; 17];
    let got = smccc::smc64(SIP_SET_EXIT_STATUS, args)[0];
    expect_eq("the monitor's SIP_SET_EXIT_STATUS over a guest SMC", not_supported(), got)
}

fn vendor_uid(_: &Env) -> Result<(), Failure> {
    use platform::abi::{HV_CALL_COUNT, HV_CALL_UID, HV_UID};
    let uid = smccc::hvc32(HV_CALL_UID, [0; 7]);
    for (what, expected, got) in [
        ("HV_CALL_UID w0", HV_UID[0], uid[0]),
        ("HV_CALL_UID w1", HV_UID[1], uid[1]),
        ("HV_CALL_UID w2", HV_UID[2], uid[2]),
        ("HV_CALL_UID w3", HV_UID[3], uid[3]),
    ] {
        expect_eq(what, expected.into(), got.into())?;
    }
    let count = smccc::hvc32(HV_CALL_COUNT, [0; 7])[0] as i32;
    if !(1..=0xffff).contains(&count) {
        return Err(Failure::Mismatch { what: "HV_CALL_COUNT (1..=0xffff)", expected: 1, got: count as u64 });
    }
    Ok(())
}

// --- MMIO emulation -----------------------------------------------------

/// The instruction an MMIO load uses. Every access is one inline-asm
/// instruction with a plain base register: `read_volatile`/`write_volatile`
/// leave the addressing mode to the compiler, which may pick a writeback
/// form (`str x13, [x14, #8]!`, seen here) whose abort has no instruction
/// syndrome (ISV = 0) and so cannot be emulated.
#[derive(Clone, Copy)]
enum Load {
    /// `LDRB Wt`, `LDRH Wt`, `LDR Wt`, `LDR Xt`.
    U8,
    U16,
    U32,
    U64,
    /// `LDRSB Xt`, `LDRSB Wt`, `LDRSH Xt`, `LDRSH Wt`, `LDRSW Xt`.
    S8X,
    S8W,
    S16X,
    S16W,
    S32X,
}

/// The instruction an MMIO store uses: `STRB`, `STRH`, `STR Wt`, `STR Xt`.
#[derive(Clone, Copy)]
enum Store {
    U8,
    U16,
    U32,
    U64,
}

/// One load instruction `$insn {v}, [{a}]` from `$addr`; the destination
/// register's value.
macro_rules! mmio_load {
    ($insn:literal, $addr:expr) => {{
        let v: u64;
        core::arch::asm!(concat!($insn, ", [{a}]"), a = in(reg) $addr, v = out(reg) v, options(nostack));
        v
    }};
}

/// One store instruction `$insn {v}, [{a}]` of `$value` to `$addr`.
macro_rules! mmio_store {
    ($insn:literal, $addr:expr, $value:expr) => {
        core::arch::asm!(concat!($insn, ", [{a}]"), a = in(reg) $addr, v = in(reg) $value, options(nostack))
    };
}

/// The test device, with a count of the accesses made to it.
struct TestDevice {
    base: u64,
    made: u64,
}

const MMIO_ABORTED: &str = "an access to the emulated test device aborted";

impl TestDevice {
    fn find(env: &Env) -> Result<Self, Failure> {
        use platform::abi::test_mmio::SIZE;
        let (base, size) =
            env.test_mmio.ok_or(Failure::Missing("no node with compatible = \"hv,test-mmio\" in the guest DTB"))?;
        if size < SIZE {
            return Err(Failure::Mismatch { what: "hv,test-mmio window size", expected: SIZE, got: size });
        }
        Ok(Self { base, made: 0 })
    }

    /// One load at `offset`; the value as the destination register holds it.
    fn load(&mut self, offset: u64, load: Load) -> Result<u64, Failure> {
        let addr = self.base + offset;
        let mut value = 0u64;
        let caught = expect_sync(|| {
            // SAFETY: the test device's window, which stage 2 leaves to the
            // hypervisor to emulate (or to abort, which the stub catches);
            // accesses are naturally aligned.
            value = unsafe {
                match load {
                    Load::U8 => mmio_load!("ldrb {v:w}", addr),
                    Load::U16 => mmio_load!("ldrh {v:w}", addr),
                    Load::U32 => mmio_load!("ldr {v:w}", addr),
                    Load::U64 => mmio_load!("ldr {v}", addr),
                    Load::S8X => mmio_load!("ldrsb {v}", addr),
                    Load::S8W => mmio_load!("ldrsb {v:w}", addr),
                    Load::S16X => mmio_load!("ldrsh {v}", addr),
                    Load::S16W => mmio_load!("ldrsh {v:w}", addr),
                    Load::S32X => mmio_load!("ldrsw {v}", addr),
                }
            };
        });
        self.made += 1;
        match caught {
            Some(caught) => Err(Failure::Exception { what: MMIO_ABORTED, caught }),
            None => Ok(value),
        }
    }

    fn store(&mut self, offset: u64, store: Store, value: u64) -> Result<(), Failure> {
        let addr = self.base + offset;
        let caught = expect_sync(|| {
            // SAFETY: as for `load`.
            unsafe {
                match store {
                    Store::U8 => mmio_store!("strb {v:w}", addr, value),
                    Store::U16 => mmio_store!("strh {v:w}", addr, value),
                    Store::U32 => mmio_store!("str {v:w}", addr, value),
                    Store::U64 => mmio_store!("str {v}", addr, value),
                }
            }
        });
        self.made += 1;
        match caught {
            Some(caught) => Err(Failure::Exception { what: MMIO_ABORTED, caught }),
            None => Ok(()),
        }
    }

    fn expect(&mut self, what: &'static str, offset: u64, load: Load, expected: u64) -> Result<(), Failure> {
        let got = self.load(offset, load)?;
        expect_eq(what, expected, got)
    }
}

fn mmio_emulated_read_write(env: &Env) -> Result<(), Failure> {
    use platform::abi::test_mmio::{ACCESSES, ID, ID_VALUE, SCRATCH};
    let mut dev = TestDevice::find(env)?;
    let before = dev.load(ACCESSES, Load::U64)?;
    dev.made = 0;

    dev.expect("ID (64-bit load)", ID, Load::U64, ID_VALUE)?;
    dev.expect("ID (32-bit load)", ID, Load::U32, ID_VALUE)?;
    // ID is read-only: writes are ignored.
    dev.store(ID, Store::U32, 0)?;
    dev.expect("ID after a write to it (ignored)", ID, Load::U64, ID_VALUE)?;

    // SCRATCH: narrower stores change only their bytes (little-endian).
    dev.store(SCRATCH, Store::U64, 0x1122_3344_5566_7788)?;
    dev.expect("SCRATCH after a 64-bit store", SCRATCH, Load::U64, 0x1122_3344_5566_7788)?;
    dev.store(SCRATCH + 4, Store::U32, 0x7abb_ccdd)?;
    dev.expect("SCRATCH after a 32-bit store at +4", SCRATCH, Load::U64, 0x7abb_ccdd_5566_7788)?;
    dev.store(SCRATCH + 2, Store::U16, 0x8001)?;
    dev.expect("SCRATCH after a 16-bit store at +2", SCRATCH, Load::U64, 0x7abb_ccdd_8001_7788)?;
    dev.store(SCRATCH + 1, Store::U8, 0x80)?;
    dev.expect("SCRATCH after an 8-bit store at +1", SCRATCH, Load::U64, 0x7abb_ccdd_8001_8088)?;

    // Loads of each size at offsets inside SCRATCH, zero- and sign-extending.
    dev.expect("LDRB SCRATCH+1", SCRATCH + 1, Load::U8, 0x80)?;
    dev.expect("LDRSB Xt SCRATCH+1", SCRATCH + 1, Load::S8X, 0xffff_ffff_ffff_ff80)?;
    dev.expect("LDRSB Wt SCRATCH+1", SCRATCH + 1, Load::S8W, 0xffff_ff80)?;
    dev.expect("LDRSB Xt SCRATCH+7 (positive)", SCRATCH + 7, Load::S8X, 0x7a)?;
    dev.expect("LDRH SCRATCH+2", SCRATCH + 2, Load::U16, 0x8001)?;
    dev.expect("LDRSH Xt SCRATCH+2", SCRATCH + 2, Load::S16X, 0xffff_ffff_ffff_8001)?;
    dev.expect("LDRSH Wt SCRATCH+2", SCRATCH + 2, Load::S16W, 0xffff_8001)?;
    dev.expect("LDR Wt SCRATCH", SCRATCH, Load::U32, 0x8001_8088)?;
    dev.expect("LDRSW SCRATCH", SCRATCH, Load::S32X, 0xffff_ffff_8001_8088)?;
    dev.expect("LDR Wt SCRATCH+4", SCRATCH + 4, Load::U32, 0x7abb_ccdd)?;
    dev.expect("LDRSW SCRATCH+4 (positive)", SCRATCH + 4, Load::S32X, 0x7abb_ccdd)?;

    // ACCESSES grew by the accesses made since it was read (the count may
    // or may not include the read of ACCESSES itself).
    let made = dev.made;
    let after = dev.load(ACCESSES, Load::U64)?;
    let grown = after.wrapping_sub(before);
    if grown != made && grown != made + 1 {
        return Err(Failure::Mismatch {
            what: "ACCESSES increase (accesses made, +1 for the read itself)",
            expected: made + 1,
            got: grown,
        });
    }
    Ok(())
}

fn mmio_isv0_injects_abort(env: &Env) -> Result<(), Failure> {
    use platform::abi::test_mmio::{ID, ID_VALUE, SCRATCH};
    let mut dev = TestDevice::find(env)?;
    dev.expect("ID before the pair load", ID, Load::U64, ID_VALUE)?;

    // A load pair has no instruction syndrome (ISV = 0): not emulatable, so
    // the guest gets a synchronous external abort at EL1.
    let id = dev.base + ID;
    let caught = expect_sync(|| {
        // SAFETY: the load is expected to abort; the handler steps over it.
        unsafe {
            core::arch::asm!("ldp {a}, {b}, [{p}]", p = in(reg) id, a = out(reg) _, b = out(reg) _, options(nostack));
        }
    })
    .ok_or(Failure::Missing("LDP from the test device did not abort"))?;
    check_injected_abort(caught, id, false)?;

    // A store pair likewise, and SCRATCH keeps its value.
    dev.store(SCRATCH, Store::U64, 0x0123_4567_89ab_cdef)?;
    let scratch = dev.base + SCRATCH;
    let caught = expect_sync(|| {
        // SAFETY: the store is expected to abort; the handler steps over it.
        unsafe {
            core::arch::asm!("stp {a}, {a}, [{p}]", p = in(reg) scratch, a = in(reg) 0u64, options(nostack));
        }
    })
    .ok_or(Failure::Missing("STP to the test device did not abort"))?;
    check_injected_abort(caught, scratch, true)?;
    dev.expect("SCRATCH after the aborted STP", SCRATCH, Load::U64, 0x0123_4567_89ab_cdef)?;

    // The device still works.
    dev.expect("ID after the aborts", ID, Load::U64, ID_VALUE)
}

/// The data abort the hypervisor injects for an access it cannot emulate:
/// EC 0x25 (from EL1), DFSC 0x10, ISV = 0, WnR as the access, FAR = the
/// address.
pub(crate) fn check_injected_abort(caught: Caught, addr: u64, write: bool) -> Result<(), Failure> {
    expect_eq(
        "exception class (0x25 = data abort from EL1)",
        ExceptionClass::DataAbortSame.ec().into(),
        caught.esr.class().ec().into(),
    )?;
    let Some(abort) = caught.esr.abort() else {
        return Err(Failure::Exception { what: "not an abort", caught });
    };
    if abort.fault() != FaultStatus::SyncExternal {
        return Err(Failure::Mismatch {
            what: "DFSC (0x10 = synchronous external abort)",
            expected: FaultStatus::SYNC_EXTERNAL_CODE.into(),
            got: abort.fault().code().into(),
        });
    }
    expect_eq("ISV", 0, abort.isv().into())?;
    expect_eq("WnR", write.into(), abort.wnr().into())?;
    expect_eq("FAR", addr, caught.far)
}

/// Entries the scan checks give the hypervisor room for.
const SCAN_ENTRIES: usize = 16;
static SCAN_BUFFER: spin::Mutex<[u8; SCAN_ENTRIES * platform::gvascan::ENTRY_SIZE]> =
    spin::Mutex::new([0; SCAN_ENTRIES * platform::gvascan::ENTRY_SIZE]);

/// Builds the stub's own map of `layout`.
fn scan_map(env: &Env, layout: Layout) -> Result<gvascan::Map, Failure> {
    gvascan::build(env, layout).map_err(|_| Failure::Missing("building the stub's own stage-1 map failed"))
}

/// One SCAN call of the TTBR0 range into `buffer` (`capacity` entries)
/// from `cursor`, with `map` live; returns x0..x4.
fn scan_piece(map: &gvascan::Map, buffer: u64, capacity: u64, cursor: u64) -> Result<[u64; 5], Failure> {
    let reply =
        gvascan::with_mmu(map, || backdoor::brk_call_x4(Function::Scan.id(), [0, buffer, capacity, cursor, 0, 0, 0]));
    reply.map_err(|caught| Failure::Exception { what: "SCAN", caught })
}

/// The regions of a whole scan, each call's entries joined to the previous
/// call's last region where they continue it (no allocator in the stub).
#[derive(Default)]
struct Joined {
    regions: [Option<Region>; SCAN_ENTRIES],
    len: usize,
    /// Entries that continued the region before them (cut by a call's end).
    joins: u64,
}

impl Joined {
    fn push(&mut self, region: Region) -> Result<(), Failure> {
        if let Some(Some(last)) = self.len.checked_sub(1).and_then(|i| self.regions.get_mut(i)) {
            if region.va_start <= last.va_last {
                return Err(Failure::Mismatch {
                    what: "SCAN region out of order (start after the previous one)",
                    expected: last.va_last,
                    got: region.va_start,
                });
            }
            if last.join(&region) {
                self.joins += 1;
                return Ok(());
            }
        }
        let slot = self.regions.get_mut(self.len).ok_or(Failure::Missing("more SCAN regions than expected"))?;
        *slot = Some(region);
        self.len += 1;
        Ok(())
    }

    fn iter(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().take(self.len).flatten()
    }
}

/// What a whole scan, one call per piece, found.
#[derive(Default)]
struct WholeScan {
    regions: Joined,
    calls: u64,
    entries: u64,
    probes: u64,
    holes: u64,
    /// The most probes one call made.
    max_probes: u64,
}

/// Scans the whole TTBR0 range of `map` from `cursor`, calling SCAN again
/// from each cursor it returns until it returns 0, `capacity` entries a
/// call.
fn scan_whole(map: &gvascan::Map, capacity: usize, cursor: u64) -> Result<WholeScan, Failure> {
    let mut buffer = SCAN_BUFFER.lock();
    let capacity = capacity.min(SCAN_ENTRIES);
    let range_end = 1u64 << map.va_bits;
    let mut whole = WholeScan::default();
    let mut cursor = cursor;
    loop {
        buffer.fill(0xff);
        let [x0, regions, probes, holes, next] = scan_piece(map, buffer.as_ptr() as u64, capacity as u64, cursor)?;
        let [regions, probes, holes] = reply_ok("SCAN piece", [x0, regions, probes, holes])?;
        whole.calls += 1;
        whole.entries += regions;
        whole.probes += probes;
        whole.holes += holes;
        whole.max_probes = whole.max_probes.max(probes);
        if probes == 0 || probes > SCAN_PROBE_BUDGET {
            return Err(Failure::Mismatch {
                what: "SCAN probes in one call (1 to the budget)",
                expected: SCAN_PROBE_BUDGET,
                got: probes,
            });
        }
        if regions > capacity as u64 {
            return Err(Failure::Mismatch {
                what: "SCAN entries written (at most the capacity)",
                expected: capacity as u64,
                got: regions,
            });
        }
        for entry in buffer.chunks_exact(ENTRY_SIZE).take(regions as usize) {
            let entry: &[u8; ENTRY_SIZE] = entry.try_into().map_err(|_| Failure::Missing("short entry"))?;
            whole.regions.push(gvascan_decode(entry)?)?;
        }
        if next == CURSOR_DONE {
            return Ok(whole);
        }
        if next & 0xfff != 0 || next >= range_end || next <= cursor {
            return Err(Failure::Mismatch {
                what: "SCAN cursor (page-aligned, in the range, moving on)",
                expected: cursor,
                got: next,
            });
        }
        if whole.calls > 64 {
            return Err(Failure::Missing("SCAN did not finish in 64 calls"));
        }
        cursor = next;
    }
}

fn gvascan_decode(entry: &[u8; ENTRY_SIZE]) -> Result<Region, Failure> {
    platform::gvascan::decode(entry).ok_or(Failure::Missing("a SCAN entry does not decode"))
}

/// The joined regions against [`gvascan::expected`].
fn expect_regions(env: &Env, layout: Layout, whole: &WholeScan) -> Result<(), Failure> {
    let expected = gvascan::expected(env, layout);
    expect_eq("regions reported (joined over the calls)", expected.len() as u64, whole.regions.len as u64)?;
    for (want, got) in expected.iter().zip(whole.regions.iter()) {
        expect_eq("region start", want.va, got.va_start)?;
        expect_eq("region length", want.len, got.size().unwrap_or(0))?;
        expect_eq("region IPA", want.ipa, got.ipa)?;
        expect_eq("region writable at EL1", u64::from(want.writable), u64::from(got.attrs.writable_el1 == Some(true)))?;
        expect_eq(
            "region executable at EL1",
            u64::from(want.executable),
            u64::from(got.attrs.executable_el1 == Some(true)),
        )?;
        expect_eq("region known not executable at EL0", 1, u64::from(got.attrs.executable_el0 == Some(false)))?;
    }
    Ok(())
}

fn gva_scan_known_map(env: &Env) -> Result<(), Failure> {
    let map = scan_map(env, Layout::Known)?;
    let whole = scan_whole(&map, SCAN_ENTRIES, CURSOR_START)?;
    expect_regions(env, Layout::Known, &whole)
}

fn gva_scan_probes(env: &Env) -> Result<(), Failure> {
    let map = scan_map(env, Layout::Known)?;
    let whole = scan_whole(&map, SCAN_ENTRIES, CURSOR_START)?;
    let (regions, probes, holes) = (whole.regions.len as u64, whole.probes, whole.holes);
    // One probe per table entry met (each hole skipped whole, each block
    // stepped over at once), never one per page: the 1 GiB block alone
    // would take 262144.
    if probes == 0 || probes > 4 * (regions + holes) {
        return Err(Failure::Mismatch {
            what: "translations probed (at most 4 x (runs + holes))",
            expected: 4 * (regions + holes),
            got: probes,
        });
    }
    Ok(())
}

fn gva_scan_bad_buffer(env: &Env) -> Result<(), Failure> {
    let map = scan_map(env, Layout::Known)?;
    let buffer = SCAN_BUFFER.lock();
    // No room for even one entry, and a region to write: the scan cannot go
    // on (a buffer with room for fewer regions than the map has is fine:
    // the call stops there and returns a cursor; see gva-scan-resume).
    let [x0, x1, x2, x3, _] = scan_piece(&map, buffer.as_ptr() as u64, 0, CURSOR_START)?;
    reply_status("SCAN into a 0-entry buffer", Err(HvError::BufferTooSmall), [x0, x1, x2, x3])?;
    // A buffer in the level-1 hole of the test region: not mapped.
    let unmapped = gvascan::TEST_BASE + (1 << 30);
    let [x0, x1, x2, x3, _] = scan_piece(&map, unmapped, SCAN_ENTRIES as u64, CURSOR_START)?;
    reply_status("SCAN into an unmapped buffer", Err(HvError::BadAddress), [x0, x1, x2, x3])?;
    // SCAN of the TTBR1 range is refused to EL0 but allowed at EL1; with
    // the MMU off there is nothing to scan.
    let reply = backdoor::brk_call(Function::Scan.id(), [0, buffer.as_ptr() as u64, 2, 0, 0, 0, 0])
        .map_err(|caught| Failure::Exception { what: "SCAN with the MMU off", caught })?;
    reply_status("SCAN with the stub's MMU off", Err(HvError::InvalidArgument), reply)?;
    // The guest goes on, and so does the hypervisor.
    let reply = backdoor::brk_call(Function::Version.id(), [0; 7])
        .map_err(|caught| Failure::Exception { what: "VERSION after bad scans", caught })?;
    reply_ok("VERSION after bad scans", reply).map(|_| ())
}

/// A region that takes more probes than one call may make: the calls must
/// resume from their cursors, the region comes back cut at each call's end,
/// and the pieces joined are exactly the map, whatever the buffer's size.
/// A cursor outside the range is refused and left in x4.
fn gva_scan_resume(env: &Env) -> Result<(), Failure> {
    let map = scan_map(env, Layout::LongRun)?;
    let whole = scan_whole(&map, SCAN_ENTRIES, CURSOR_START)?;
    expect_regions(env, Layout::LongRun, &whole)?;
    // The run alone is two and a half calls' worth of probes.
    if whole.calls < 3 || whole.regions.joins < 2 || whole.max_probes != SCAN_PROBE_BUDGET {
        return Err(Failure::Regs {
            what: "a run longer than the budget: calls >= 3, joins >= 2, a full call (calls, joins, max probes)",
            regs: [whole.calls, whole.regions.joins, whole.max_probes, SCAN_PROBE_BUDGET],
        });
    }
    // A 1-entry buffer: a full buffer ends a call too, and the next one
    // reports the refused region again, whole; joined, the same regions.
    let small = scan_whole(&map, 1, CURSOR_START)?;
    expect_regions(env, Layout::LongRun, &small)?;
    if small.calls < whole.calls {
        return Err(Failure::Mismatch { what: "calls with a 1-entry buffer", expected: whole.calls, got: small.calls });
    }
    // From a cursor inside the run: the rest of it.
    let skipped = gvascan::LONG_RUN_PAGES / 2 + 1;
    let middle = gvascan::TEST_BASE + skipped * 4096;
    let from_middle = scan_whole(&map, SCAN_ENTRIES, middle)?;
    let first = from_middle.regions.iter().next().ok_or(Failure::Missing("no region after a cursor in the run"))?;
    expect_eq("first region from a cursor in the run", middle, first.va_start)?;
    expect_eq("its length", (gvascan::LONG_RUN_PAGES - skipped) * 4096, first.size().unwrap_or(0))?;
    // Cursors outside the 39-bit range, or not on a page: INVALID_ARGUMENT,
    // x1..x3 zeroed, x4 as the caller left it.
    let buffer = SCAN_BUFFER.lock().as_ptr() as u64;
    for cursor in [1u64 << 39, !0xfff, gvascan::TEST_BASE + 8] {
        let [x0, x1, x2, x3, x4] = scan_piece(&map, buffer, SCAN_ENTRIES as u64, cursor)?;
        reply_status("SCAN from a cursor outside the range", Err(HvError::InvalidArgument), [x0, x1, x2, x3])?;
        expect_eq("x4 after a refused cursor (unchanged)", cursor, x4)?;
    }
    Ok(())
}

/// `DBGBCR<n>_EL1` for an enabled, unlinked instruction-address breakpoint
/// at EL1 and EL0 on all four bytes of an A64 instruction: E, PMC = 0b11,
/// BAS = 0b1111.
const DBGBCR_EL1_AND_EL0_A64: u64 = 1 | (0b11 << 1) | (0b1111 << 5);
/// `MDSCR_EL1.MDE`: breakpoints and watchpoints enabled.
const MDSCR_MDE: u64 = platform::debug::MDSCR_MDE;
/// `MDSCR_EL1.KDE`: debug exceptions at EL1 (the kernel's own debugging).
const MDSCR_KDE: u64 = platform::debug::MDSCR_KDE;

/// A hardware breakpoint on one `nop` at EL1, with `MDSCR_EL1` =
/// `mdscr` and `PSTATE.D` clear or set for that instruction: what
/// reached the stub's own vector (if anything), the `nop`'s address, and
/// `MDSCR_EL1` as read right after the `nop`.
fn el1_breakpoint(mdscr: u64, debug_masked: bool) -> (Option<Caught>, u64, u64) {
    let (mut address, mut after) = (0u64, 0u64);
    let caught = expect_sync(|| {
        // SAFETY: programs breakpoint 0 on the `nop` below and removes it
        // again; the OS lock is released (it may be set out of reset);
        // MDSCR_EL1 and DAIF are restored. A delivered breakpoint steps
        // over the `nop` (the handler advances ELR).
        unsafe {
            core::arch::asm!(
                "msr oslar_el1, xzr",
                "adr {addr}, 2f",
                "msr dbgbvr0_el1, {addr}",
                "msr dbgbcr0_el1, {bcr}",
                "mrs {saved}, mdscr_el1",
                "msr mdscr_el1, {mdscr}",
                "mrs {daif}, daif",
                "msr daifclr, #8",
                "cbz {masked}, 1f",
                "msr daifset, #8",
                "1: isb",
                "2: nop",
                "mrs {after}, mdscr_el1",
                "msr daif, {daif}",
                "msr dbgbcr0_el1, xzr",
                "msr mdscr_el1, {saved}",
                "isb",
                addr = out(reg) address,
                after = out(reg) after,
                bcr = in(reg) DBGBCR_EL1_AND_EL0_A64,
                mdscr = in(reg) mdscr,
                masked = in(reg) u64::from(debug_masked),
                saved = out(reg) _,
                daif = out(reg) _,
                options(nostack),
            );
        }
    });
    (caught, address, after)
}

fn debug_breakpoint_reflected(_: &Env) -> Result<(), Failure> {
    // A hardware breakpoint at EL1 with the kernel's debug exceptions
    // enabled (MDE, KDE, PSTATE.D clear). MDCR_EL2.TDE sends it to the
    // hypervisor, which must hand it back exactly as the hardware would
    // without EL2: a breakpoint from the *same* EL (EC 0x31), at the
    // breakpointed instruction. The debug registers themselves trap too
    // and are passed through.
    let (caught, address, _) = el1_breakpoint(MDSCR_MDE | MDSCR_KDE, false);
    let caught = caught.ok_or(Failure::Missing("a hardware breakpoint at EL1 was not delivered"))?;
    expect_eq("exception class (0x31 = breakpoint, same EL)", 0x31, caught.esr.class().ec().into())?;
    expect_eq("ELR (the breakpointed instruction)", address, caught.elr)
}

fn debug_breakpoint_masked_at_el1(_: &Env) -> Result<(), Failure> {
    // The same breakpoint where bare metal raises nothing: KDE clear, or
    // PSTATE.D set. TDE makes the hardware raise it at EL2 all the same;
    // the hypervisor must let the instruction run as if nothing happened,
    // and the guest's MDSCR_EL1 must read as the guest wrote it.
    for (mdscr, masked, what) in [
        (MDSCR_MDE, false, "a breakpoint at EL1 with MDSCR_EL1.KDE clear reached the guest"),
        (MDSCR_MDE | MDSCR_KDE, true, "a breakpoint at EL1 with PSTATE.D set reached the guest"),
    ] {
        let (caught, _, after) = el1_breakpoint(mdscr, masked);
        if let Some(caught) = caught {
            return Err(Failure::Exception { what, caught });
        }
        expect_eq("MDSCR_EL1 right after the breakpointed instruction", mdscr, after)?;
    }
    Ok(())
}

fn debug_step_armed_at_el1(_: &Env) -> Result<(), Failure> {
    // How an OS steps a task (Linux's PTRACE_SINGLESTEP): MDSCR_EL1.SS set
    // at EL1 with KDE clear, a few more EL1 instructions, ERET to EL0 with
    // SPSR.SS set. Bare metal raises no step exception at EL1, runs exactly
    // one EL0 instruction and takes a software step exception from EL0.
    let (exit, first) = el0::step_probe();
    match exit {
        Exit::Exception { esr, elr, .. } if esr.class() == ExceptionClass::SoftwareStepLower => {
            expect_eq("ELR of the step exception (the second EL0 instruction)", first + 4, elr)
        }
        exit => Err(Failure::El0 { what: "a stepped EL0 instruction", exit }),
    }
}

fn debug_bkpt_aarch32(_: &Env) -> Result<(), Failure> {
    // An A32 BKPT at EL0 in AArch32 state: the guest's EL1 takes it as
    // EC 0x38 at the BKPT (bare metal's SIGTRAP for a 32-bit program).
    if !el0::aarch32_el0() {
        return Err(Failure::Missing("this CPU has no AArch32 EL0 (ID_AA64PFR0_EL1.EL0)"));
    }
    // With the MMU off, EL0 runs the image at its IPA, which an AArch32
    // PC cannot hold on a board whose RAM starts above 4 GiB (ZynqMP's
    // second DDR region).
    if !el0::aarch32_reachable() {
        return Err(Failure::Skip("the stub's code is above 4 GiB, out of an AArch32 EL0's reach with the MMU off"));
    }
    let (exit, address) = el0::bkpt32_probe();
    match exit {
        Exit::Exception { esr, elr, .. } if esr.class() == ExceptionClass::Bkpt32 => {
            expect_eq("BKPT comment", 0x32, esr.iss() & 0xffff)?;
            expect_eq("ELR (the BKPT)", address, elr)
        }
        exit => Err(Failure::El0 { what: "an AArch32 BKPT at EL0", exit }),
    }
}

// --- pseudo-NMIs (the hypervisor's own, at EL2) -------------------------

fn pnmi_preempts_irq(_: &Env) -> Result<(), Failure> {
    use platform::abi::pnmi_test::*;
    // At EL2, on this CPU: a regular interrupt's handler spins with regular
    // interrupts masked by priority; a PNMI and a second regular interrupt
    // are raised. The PNMI must run inside the handler, the second regular
    // one only after it.
    let reply = smccc::hvc64(platform::abi::HV_PNMI_TEST, [0; 17]);
    expect_status("HV_PNMI_TEST", STATUS_OK, reply[0])?;
    let events = [
        ("regular-entry", reply[X_REGULAR_ENTRY]),
        ("pnmi", reply[X_PNMI]),
        ("regular-exit", reply[X_REGULAR_EXIT]),
        ("second-regular", reply[X_SECOND_REGULAR]),
    ];
    let ordered = events.windows(2).all(|pair| pair[0].1 < pair[1].1);
    if events.iter().any(|&(_, seq)| seq == 0) || !ordered {
        return Err(Failure::Irq(crate::virq::IrqFailure::Order {
            what: "expected regular-entry < pnmi < regular-exit < second-regular, all non-zero",
            events,
        }));
    }
    let priority = |rpr: u64| arm_sysregs::el1::registers::IccRprEl1::from_bits_retain(rpr).priority();
    let (pnmi, regular) = (priority(reply[X_PNMI_RUNNING_PRIORITY]), priority(reply[X_REGULAR_RUNNING_PRIORITY]));
    if pnmi >= regular {
        return Err(Failure::Irq(crate::virq::IrqFailure::Priorities {
            what: "ICC_RPR_EL1 of the PNMI handler must be numerically below the regular one's",
            higher: pnmi.into(),
            lower: regular.into(),
        }));
    }
    Ok(())
}

/// How long `pnmi-watchdog` has the hypervisor stall.
const LOCKUP_STALL_MS: u64 = 2000;

fn pnmi_watchdog(_: &Env) -> Result<(), Failure> {
    use platform::abi::lockup_test::*;
    let mut args = [0u64; 17];
    args[0] = LOCKUP_STALL_MS;
    let reply = smccc::hvc64(platform::abi::HV_LOCKUP_TEST, args);
    expect_status("HV_LOCKUP_TEST(2000)", STATUS_OK, reply[0])?;
    let (detected, latency, period, before) =
        (reply[X_DETECTED], reply[X_LATENCY_US], reply[X_PERIOD_US], reply[X_BEFORE]);
    expect_eq("lockups reported before the stall (false positives)", 0, before)?;
    if detected == 0 {
        return Err(Failure::Mismatch {
            what: "lockups reported during a stall of up to 2000 ms (at least)",
            expected: 1,
            got: 0,
        });
    }
    let limit = period;
    if latency > limit {
        return Err(Failure::Mismatch {
            what: "microseconds from the stall to the first report (at most the watchdog period)",
            expected: limit,
            got: latency,
        });
    }
    Ok(())
}
