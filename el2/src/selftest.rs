//! Boot-time self-tests, chosen with `selftest=` on the command line and
//! run before the guest starts.
//!
//! `firmware` exercises the monitor's SMC interface from EL2 the way a
//! careful caller would see it: versions, feature queries, the error code of
//! every misuse the monitor must refuse, and a full `CPU_OFF` / `CPU_ON`
//! cycle of a secondary. Each check prints `el2: selftest PASS <name>` or
//! `FAIL <name>: <why>`; any failure stops the system with a failure status.
//!
//! `fatal` reads the hypervisor's old identity address (unmapped since the
//! switch to virtual addresses) to show what an unexpected exception at EL2
//! prints and that the run ends with the hypervisor's failure status.

use crate::arch::power;
use crate::boot::smp;
use platform::abi::{fast_call32, Owner, PSCI_VERSION_1_1, SMCCC_VERSION_1_1};
use platform::board::Board;
use platform::cmdline::SelfTest;
use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_2, SMCCC_VERSION};
use smccc::psci::{self as ids, AffinityState};

/// SMCCC and PSCI return codes, as the registers carry them.
const SUCCESS: i64 = 0;
const NOT_SUPPORTED: i64 = -1;
const INVALID_PARAMETERS: i64 = -2;
const ALREADY_ON: i64 = -4;
const INVALID_ADDRESS: i64 = -9;
/// How long the self-test waits for another CPU to go off or come back:
/// under emulation its host thread may not run for a second or more.
const OTHER_CPU_MS: u64 = 5000;
/// An affinity no QEMU virt board with at most 16 CPUs has.
const NO_SUCH_CPU: u64 = 0xff_00ff_fffe;

pub fn run(which: SelfTest, board: &Board) {
    match which {
        SelfTest::Firmware => firmware(board),
        SelfTest::Fatal => fatal(board),
    }
}

fn smc(function: u32, args: &[u64]) -> i64 {
    let mut regs = [0u64; 17];
    for (reg, arg) in regs.iter_mut().zip(args) {
        *reg = *arg;
    }
    smccc::smc64(function, regs)[0] as i64
}

struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    fn check(&mut self, name: &str, expected: i64, got: i64) {
        if expected == got {
            self.passed += 1;
            log::info!("selftest PASS {name}");
        } else {
            self.failed += 1;
            log::error!("selftest FAIL {name}: expected {expected}, got {got}");
        }
    }
}

fn firmware(board: &Board) {
    let mut r = Report { passed: 0, failed: 0 };
    r.check("smccc-version", SMCCC_VERSION_1_1 as i64, smc(SMCCC_VERSION, &[]));
    r.check("smccc-features-version", SUCCESS, smc(SMCCC_ARCH_FEATURES, &[SMCCC_VERSION.into()]));
    r.check("smccc-features-unknown", NOT_SUPPORTED, smc(SMCCC_ARCH_FEATURES, &[SMCCC_ARCH_WORKAROUND_2.into()]));
    r.check("psci-version", PSCI_VERSION_1_1 as i64, smc(ids::PSCI_VERSION, &[]));
    r.check("psci-features-cpu-on", SUCCESS, smc(ids::PSCI_FEATURES, &[ids::PSCI_CPU_ON_64.into()]));
    r.check("psci-features-unimplemented", NOT_SUPPORTED, smc(ids::PSCI_FEATURES, &[ids::PSCI_CPU_SUSPEND_64.into()]));
    r.check("unknown-oem-call", NOT_SUPPORTED, smc(fast_call32(Owner::Oem, 0x1234), &[]));
    r.check("unknown-sip-call", NOT_SUPPORTED, smc(fast_call32(Owner::SiliconProvider, 0xfff0), &[]));
    r.check("unknown-psci-call", NOT_SUPPORTED, smc(0xc400_00ff, &[]));

    for slot in 0..smp::online() {
        let mpidr = smp::mpidr_of(slot);
        r.check("affinity-info-on", AffinityState::On as i64, smc(ids::PSCI_AFFINITY_INFO_64, &[mpidr, 0]));
    }
    r.check("affinity-info-no-such-cpu", INVALID_PARAMETERS, smc(ids::PSCI_AFFINITY_INFO_64, &[NO_SUCH_CPU, 0]));
    r.check("affinity-info-level-1", INVALID_PARAMETERS, smc(ids::PSCI_AFFINITY_INFO_64, &[smp::mpidr_of(0), 1]));

    let me = smp::mpidr_of(0);
    let entry = crate::boot::switch::secondary_entry_pa();
    r.check("cpu-on-running-cpu", ALREADY_ON, smc(ids::PSCI_CPU_ON_64, &[me, entry, 0]));
    r.check("cpu-on-no-such-cpu", INVALID_PARAMETERS, smc(ids::PSCI_CPU_ON_64, &[NO_SUCH_CPU, entry, 0]));
    let outside_ram = board.ram_top();
    r.check("cpu-on-entry-outside-ram", INVALID_ADDRESS, smc(ids::PSCI_CPU_ON_64, &[me, outside_ram, 0]));

    cpu_off_on_cycle(&mut r);

    log::info!("selftest: {} passed, {} failed", r.passed, r.failed);
    if r.failed != 0 {
        power::fatal(format_args!("firmware self-test failed"));
    }
}

/// Powers the last secondary off through its mailbox, watches the monitor
/// report it off, powers it on again and waits for it to check back in.
fn cpu_off_on_cycle(r: &mut Report) {
    let cpus = smp::online();
    if cpus < 2 {
        log::info!("selftest SKIP cpu-off-on-cycle: only one CPU");
        return;
    }
    let slot = cpus - 1;
    let mpidr = smp::mpidr_of(slot);
    let state = || smc(ids::PSCI_AFFINITY_INFO_64, &[mpidr, 0]);
    crate::vm::cpus::request_off(slot);
    smp::wait_until(OTHER_CPU_MS, || state() == AffinityState::Off as i64);
    r.check("cpu-off-reported-off", AffinityState::Off as i64, state());
    r.check(
        "cpu-on-after-off",
        SUCCESS,
        smc(ids::PSCI_CPU_ON_64, &[mpidr, crate::boot::switch::secondary_entry_pa(), slot as u64]),
    );
    smp::wait_until(OTHER_CPU_MS, || smp::online() == cpus);
    r.check("cpu-back-online", cpus as i64, smp::online() as i64);
    r.check("affinity-info-on-again", AffinityState::On as i64, state());
}

fn fatal(board: &Board) {
    let _ = board;
    // The old identity address of our own image: unmapped since the switch.
    let address = crate::boot::switch::image_pa();
    log::info!("selftest: reading our own old identity address {address:#x} on purpose");
    // SAFETY: the read touches no Rust object: nothing is mapped at that VA
    // (the final tables hold no identity map), so it raises a translation
    // fault that goes to our vector, which stops the system.
    let value = unsafe { core::ptr::read_volatile(address as *const u64) };
    power::fatal(format_args!("reading unmapped VA {address:#x} returned {value:#x} instead of faulting"));
}
