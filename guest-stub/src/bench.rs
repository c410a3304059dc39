//! `stub=bench`: the guest-stub times the hypervisor's trap paths instead of
//! running its checks.
//!
//! Under QEMU with `-icount shift=0,sleep=off` the virtual clock advances
//! one nanosecond per instruction, so the PMU's cycle counter counts
//! instructions; with `PMCCFILTR_EL0.NSH` it counts those executed at EL2
//! too. Each path is timed on its own, 101 times after a warm-up, and the
//! median reported; the floor is the same measurement around an `SVC` to
//! the stub's own EL1 vector, the cheapest exception round trip the guest
//! can make, and `empty` is the cost of the measurement itself.
//!
//! Output, one line per path, for `make bench` to parse:
//! `guest-stub: bench <name> median=<n> min=<n> max=<n>`.

use crate::Env;
use platform::hypercall::{Function, DCC_CALL_MAGIC, HV_BRK_IMM};
use platform::println;

const SAMPLES: usize = 101;

/// `PMCR_EL0.E` (enable), `.C` (reset the cycle counter).
const PMCR_E: u64 = 1 << 0;
const PMCR_C: u64 = 1 << 2;
/// `PMCCFILTR_EL0.NSH`: count at EL2 as well.
const PMCCFILTR_NSH: u64 = 1 << 27;
/// `PMCNTENSET_EL0.C`: the cycle counter.
const PMCNTENSET_C: u64 = 1 << 31;

fn pmu_init() {
    // SAFETY: programs the guest's own PMU (the hypervisor lets it); no
    // memory is affected.
    unsafe {
        core::arch::asm!(
            "mrs {t}, pmcr_el0", "orr {t}, {t}, {ec}", "msr pmcr_el0, {t}",
            "msr pmccfiltr_el0, {f}", "msr pmcntenset_el0, {c}", "isb",
            t = out(reg) _, ec = in(reg) PMCR_E | PMCR_C, f = in(reg) PMCCFILTR_NSH, c = in(reg) PMCNTENSET_C,
            options(nostack),
        );
    }
}

fn counter() -> u64 {
    let value;
    // SAFETY: reads the guest's cycle counter.
    unsafe { core::arch::asm!("isb", "mrs {}, pmccntr_el0", out(reg) value, options(nomem, nostack)) };
    value
}

struct Stats {
    median: u64,
    min: u64,
    max: u64,
}

fn measure(mut op: impl FnMut()) -> Stats {
    op();
    let mut samples = [0u64; SAMPLES];
    for sample in &mut samples {
        let start = counter();
        op();
        *sample = counter().wrapping_sub(start);
    }
    samples.sort_unstable();
    Stats { median: samples[SAMPLES / 2], min: samples[0], max: samples[SAMPLES - 1] }
}

fn report(name: &str, op: impl FnMut()) {
    let s = measure(op);
    println!("bench {name} median={} min={} max={}", s.median, s.min, s.max);
}

/// Runs every measurement; returns the exit status (0).
pub fn run(env: &Env) -> u32 {
    pmu_init();
    report("empty", || {});
    report("floor-svc", || {
        // SAFETY: the stub's vector returns from an EL1 SVC at once.
        unsafe { core::arch::asm!("svc #0", options(nostack)) };
    });
    report("brk-version", || {
        // SAFETY: the backdoor's VERSION writes x0..x3 only.
        unsafe {
            core::arch::asm!("brk #{imm}", imm = const HV_BRK_IMM,
                inout("x0") Function::Version.id() => _, out("x1") _, out("x2") _, out("x3") _, options(nostack));
        }
    });
    report("dcc-version", || {
        // SAFETY: the DCC hypercall writes x0..x3 and the MRS target only.
        unsafe {
            core::arch::asm!("mrs x8, mdccsr_el0",
                inout("x0") DCC_CALL_MAGIC | Function::Version.id() => _, out("x1") _, out("x2") _, out("x3") _,
                out("x8") _, options(nostack));
        }
    });
    report("hvc-psci-version", || {
        let _ = smccc::hvc32(smccc::psci::PSCI_VERSION, [0; 7]);
    });
    report("smc-psci-version", || {
        let _ = smccc::smc32(smccc::psci::PSCI_VERSION, [0; 7]);
    });
    if let Some((base, _)) = env.test_mmio {
        report("mmio-read", || {
            // SAFETY: the emulated test device's ID register.
            unsafe { core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) base, v = out(reg) _, options(nostack)) };
        });
    }
    if let Ok(ecam) = &env.ecam {
        let base = ecam.base;
        report("ecam-read", || {
            // SAFETY: the vendor ID of 00:00.0 in the emulated ECAM window.
            unsafe { core::arch::asm!("ldrh {v:w}, [{a}]", a = in(reg) base, v = out(reg) _, options(nostack)) };
        });
    }
    scan(env);
    pnmi_latency();
    0
}

/// The hypervisor's PNMI latency while one of its regular handlers runs
/// (`HV_PNMI_TEST`, which times it with the same cycle counter).
fn pnmi_latency() {
    let mut samples = [0u64; 21];
    for sample in &mut samples {
        let reply = smccc::hvc64(platform::abi::HV_PNMI_TEST, [0; 17]);
        *sample = reply[platform::abi::pnmi_test::X_PNMI_LATENCY];
    }
    samples.sort_unstable();
    println!("bench pnmi-latency median={} min={} max={}", samples[10], samples[0], samples[20]);
}

/// One scan of the stub's own known map: its probes and its instructions.
fn scan(env: &Env) {
    let Ok(root) = crate::gvascan::build(env) else {
        println!("bench scan skipped: the stub's map could not be built");
        return;
    };
    let mut buffer = [0u8; 16 * platform::gvascan::ENTRY_SIZE];
    let (instructions, reply) = crate::gvascan::with_mmu(root, || {
        let start = counter();
        let reply = crate::backdoor::brk_call(Function::Scan.id(), [0, buffer.as_mut_ptr() as u64, 16, 0, 0, 0, 0]);
        (counter().wrapping_sub(start), reply)
    });
    match reply {
        Ok([0, regions, probes, holes]) => {
            println!("bench scan median={instructions} min={instructions} max={instructions} probes={probes} regions={regions} holes={holes}");
        }
        _ => println!("bench scan failed"),
    }
}
