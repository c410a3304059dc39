//! The guest-stub: a bare-metal EL1 guest that exercises the hypervisor's
//! interfaces and reports in the format of `platform::report`: first the
//! plan (every check it will run), then one line per check, then a
//! summary:
//!
//! ```text
//! guest-stub: checks: el1-entry psci-version ...
//! guest-stub: PASS <name>
//! guest-stub: FAIL <name>: <why>
//! guest-stub: N passed, M failed, K skipped
//! ```
//!
//! then reports its verdict with `HV_SET_EXIT_STATUS` and powers off with
//! PSCI `SYSTEM_OFF`, so a semihosted QEMU exits 0 exactly when M is 0.
//!
//! Before the checks, the boot vCPU sets up the GIC (if the DTB has one)
//! and starts every other vCPU of the DTB with PSCI `CPU_ON` (`smp`); the
//! interrupt checks (`virq`) run on all of them.
//!
//! Words in `/chosen/bootargs` (the hypervisor passes its `stub=` words):
//! `stub=fail` adds a check that always fails, to show that a failure
//! reaches QEMU's exit status; `stub=reset` ends with PSCI `SYSTEM_RESET`
//! instead of `SYSTEM_OFF`; `stub=only=<prefix>` runs only the checks whose
//! name starts with `<prefix>` (e.g. `stub=only=virq` on bare QEMU, where
//! most other checks need the hypervisor); `stub=skip=<name>` reports that
//! check as skipped instead of running it (the runner must notice);
//! the PCI checks are skipped in a VM whose device tree has no PCI host
//! bridge (of several VMs, at most one has it) or whose bridge has no shim
//! function at 00:00.0 (only portal functions); `stub=bench` times the trap
//! paths instead of checking (`bench`), on the boot vCPU alone (on bare
//! QEMU, only its rows that need no hypervisor); `stub=spin=<ms>` (decimal
//! or `0x` hex) makes vCPU 0 alone (no other vCPU is started) busy-loop
//! with IRQs masked for that many milliseconds of its virtual counter,
//! print one line, `spin done: <ms> ms, <n> iterations, <t> ticks, <f> Hz`
//! (`platform::sched_abi::SpinReport`), and power off with status 0: the
//! CPU-bound VM of the scheduler's fairness test (`sched`).
//!
//! The vCPU scheduler's checks (`sched-timer-late`, `sched-timer-wake`,
//! `sched-sgi-wake`, `sched-spi-wake`; `sched`) are not in the default run:
//! they run when `stub=only=<prefix>` names them (`stub=only=sched`). A
//! check that cannot run in this VM reports itself skipped with its reason
//! (`sched-sgi-wake` with one vCPU, `sched-spi-wake` with no PL031).
//!
//! The portal checks (`portal-enumerate`, `portal-isolation`,
//! `portal-ping-pong`, `portal-shared-memory`, `portal-refused`,
//! `portal-peer-down`; `portal`) are not in the default run either:
//! `stub=only=portal` runs them, in both VMs that are the ends of a portal
//! at once (and in VMs that are no end, which must find none).
//! `stub=portals=N` says how many portal functions this VM must find
//! (default 0: none; the checks after `portal-enumerate` then report
//! themselves skipped), `stub=portal-rounds=R` how many rounds the
//! ping-pong has (default 100); both decimal or `0x` hex.
//! `stub=portal-bench=N` (in both ends) times N doorbell round trips
//! instead of checking, prints one line and powers off (`portal`).
//!
//! The forwarded-virtio checks (`virtio-find`, `virtio-identity`,
//! `virtio-scratch`, `virtio-hostile`, `virtio-interrupt`, `virtio-ram`,
//! `virtio-smp`, `virtio-done`, `virtio-service-death`; `virtio`) are not
//! in the default run either: `stub=only=virtio` runs them, in a client VM
//! and its service VM at once, each taking its role from what it finds;
//! `stub=virtio-client=NAME`, `stub=virtio-client-mib=N`,
//! `stub=virtio-devices=N` and `stub=virtio-types=LIST` say what they must
//! find. `stub=virtio-bench=N` (in both) times N forwarded reads instead
//! (`virtio`).
//!
//! The kernel-integrity checks (`mbec-matrix`, `trace-sequence`,
//! `integrity-lock`; `integrity`) are not in the default run either:
//! `stub=only=mbec`, `stub=only=trace` and `stub=only=integrity-lock` run
//! them, against a hypervisor started with `integrity` (or
//! `integrity=emulate`); without it each reports itself skipped.
//! `integrity-lock` locks the VM's kernel for good, so it runs only as the
//! one check of its run (in a larger plan it reports itself skipped).
//!
//! The checks against a Linux service VM's `hvvirtio` (`hvvirtio-find`,
//! `hvvirtio-read`, `hvvirtio-queue-outside`, `hvvirtio-buffer-outside`;
//! `vqueue`), a hostile virtio-blk driver's, are not in the default run:
//! `stub=only=hvvirtio` runs them, in a client VM with one forwarded block
//! device.
#![no_std]
#![no_main]

mod backdoor;
mod bench;
mod checks;
mod el0;
mod exceptions;
mod gic;
mod gvascan;
mod hostile;
mod integrity;
mod pci;
mod portal;
mod sched;
mod smp;
mod timer;
mod virq;
mod virtio;
mod vqueue;

use core::sync::atomic::{AtomicBool, Ordering};
use platform::abi::HV_SET_EXIT_STATUS;
use platform::board::UartKind;
use platform::println;
use platform::report::{Failed, Line, Plan};
use platform::serial::Serial;

core::arch::global_asm!(
    include_str!("boot.S"),
    PSCI_SYSTEM_OFF = const smccc::psci::PSCI_SYSTEM_OFF,
    CPACR_FPEN_NO_TRAP = const CPACR_FPEN_NO_TRAP,
);

/// `CPACR_EL1.FPEN` = 0b11: FP/SIMD instructions do not trap at EL1 or EL0.
const CPACR_FPEN_NO_TRAP: u64 = 0b11 << 20;

/// What the checks need to know about the guest's world, from its DTB.
pub struct Env {
    /// The first byte of guest RAM.
    pub ram_base: u64,
    /// One past the last byte of guest RAM.
    pub ram_end: u64,
    /// The emulated test device (`compatible = "hv,test-mmio"`): base IPA
    /// and size of its window, if the DTB has one.
    pub test_mmio: Option<(u64, u64)>,
    /// The console's register window (its page), if there is one.
    pub console: Option<u64>,
    /// The PCI host bridge (`compatible = "pci-host-ecam-generic"`): its
    /// ECAM window, bus range, `ranges` and `/chosen/linux,pci-probe-only`,
    /// or why the DTB has none.
    pub ecam: Result<pci::Ecam, &'static str>,
    /// How many times this VM started before (`/chosen/hv,starts`; 0 if the
    /// hypervisor does not say).
    pub starts: u32,
    /// Addresses the hypervisor says must be holes to this VM
    /// (`/chosen/hv,probe-holes`), and how many there are.
    pub probe_holes: ([u64; MAX_PROBE_HOLES], usize),
    /// The virtual timer's PPI (the DTB's `arm,armv8-timer` node).
    pub virtual_timer: Result<arm_gic::IntId, timer::NoTimer>,
    /// The (non-secure EL1) physical timer's PPI, from the same node.
    pub physical_timer: Result<arm_gic::IntId, timer::NoTimer>,
    /// The DTB's `arm,pl031` node, if it has one (bare QEMU; a VM gets its
    /// PL031 behind the PCI host bridge): its register window and its SPI,
    /// or why that is unknown.
    pub pl031: Option<pci::Pl031>,
    /// The DTB's `virtio,mmio` nodes: forwarded devices, if this VM is a
    /// client of a service VM.
    pub virtio: virtio::Nodes,
}

#[no_mangle]
extern "C" fn stub_main(dtb: usize) -> ! {
    // SAFETY: the hypervisor passes the DTB it wrote into guest RAM.
    let fdt = match unsafe { fdt::Fdt::from_ptr(dtb as *const u8) } {
        Ok(fdt) => fdt,
        Err(_) => finish(1),
    };
    // The console: a PL011 (passed through or emulated) or the host's
    // Cadence UART, passed through; by its `compatible`.
    let stdout = fdt.chosen().stdout();
    let kind = stdout.and_then(|n| n.compatible()).and_then(|c| c.all().find_map(UartKind::from_compatible));
    let console = stdout.and_then(|n| n.reg()).and_then(|mut r| r.next());
    if let (Some(reg), Some(kind)) = (console.as_ref(), kind) {
        // SAFETY: the console the hypervisor gives us, at the address its
        // DTB names.
        platform::console::init("guest-stub", unsafe { Serial::new(kind, reg.starting_address as usize) });
    }
    let ram = fdt.memory().regions().next();
    let test_mmio = fdt
        .find_compatible(&[platform::abi::test_mmio::COMPATIBLE])
        .and_then(|node| node.reg())
        .and_then(|mut reg| reg.next())
        .map(|r| (r.starting_address as u64, r.size.unwrap_or(0) as u64));
    let env = Env {
        ram_base: ram.map_or(0, |r| r.starting_address as u64),
        ram_end: ram.map_or(0, |r| r.starting_address as u64 + r.size.unwrap_or(0) as u64),
        test_mmio,
        console: console.map(|reg| reg.starting_address as u64),
        ecam: pci::Ecam::from_fdt(&fdt),
        virtual_timer: timer::virtual_timer_ppi(&fdt),
        physical_timer: timer::physical_timer_ppi(&fdt),
        pl031: sched::pl031_node(&fdt),
        probe_holes: probe_holes(&fdt),
        virtio: virtio::nodes(&fdt),
        starts: fdt
            .find_node("/chosen")
            .and_then(|c| c.property(platform::abi::STARTS_PROPERTY))
            .and_then(|p| p.as_usize())
            .map_or(0, |n| n as u32),
    };
    RAM_END.store(env.ram_end, Ordering::Relaxed);
    let mut forced_failure = false;
    let mut hostile = false;
    let mut seed = hostile::DEFAULT_SEED;
    let mut only = "";
    let mut skip = "";
    for word in fdt.chosen().bootargs().unwrap_or("").split_ascii_whitespace() {
        match word {
            "stub=fail" => forced_failure = true,
            // Reset at the end of the first life only: a VM that restarts
            // (one of several) runs its checks again, then powers off.
            "stub=reset" => RESET_AT_END.store(env.starts == 0, Ordering::Relaxed),
            "stub=bench" => {
                // The interrupt rows need the GIC; -smp 1, so no vCPU starts.
                smp::init(&fdt);
                finish(bench::run(&env, under_hypervisor()))
            }
            "stub=hostile" => hostile = true,
            "stub=crash" => checks::crash(&env),
            other => {
                if let Some(prefix) = other.strip_prefix("stub=only=") {
                    only = prefix;
                } else if let Some(name) = other.strip_prefix("stub=skip=") {
                    skip = name;
                } else if let Some(ms) = other.strip_prefix(platform::sched_abi::SPIN_WORD) {
                    // vCPU 0 alone: no other vCPU is started, no GIC needed.
                    match parse_number(ms) {
                        Some(ms) => finish(sched::spin(ms)),
                        None => println!("ignoring `{other}`: not a number"),
                    }
                } else if let Some(n) = other.strip_prefix(platform::portal::BENCH_WORD) {
                    match parse_number(n).and_then(|n| u32::try_from(n).ok()) {
                        Some(n) => {
                            // The GIC, for the portal's interrupt (one vCPU: none starts).
                            smp::init(&fdt);
                            finish(portal::bench(&env, n))
                        }
                        None => println!("ignoring `{other}`: not a number"),
                    }
                } else if let Some(n) = other.strip_prefix(platform::forward::BENCH_WORD) {
                    match parse_number(n).and_then(|n| u32::try_from(n).ok()) {
                        Some(n) => {
                            // The GIC, for the devices' interrupts (one vCPU: none starts).
                            smp::init(&fdt);
                            finish(virtio::bench(&env, n))
                        }
                        None => println!("ignoring `{other}`: not a number"),
                    }
                } else if virtio::word(other) {
                    // A word of the virtio checks, taken.
                } else if let Some(n) = other.strip_prefix("stub=portals=") {
                    match parse_number(n).and_then(|n| u32::try_from(n).ok()) {
                        Some(n) => portal::set_wanted(n),
                        None => println!("ignoring `{other}`: not a number"),
                    }
                } else if let Some(n) = other.strip_prefix("stub=portal-rounds=") {
                    match parse_number(n).and_then(|n| u32::try_from(n).ok()) {
                        Some(n) => portal::set_rounds(n),
                        None => println!("ignoring `{other}`: not a number"),
                    }
                } else if let Some(number) = other.strip_prefix("stub-seed=") {
                    match parse_number(number) {
                        Some(n) => seed = n,
                        None => println!("ignoring `{other}`: not a number"),
                    }
                } else {
                    println!("ignoring unknown word `{other}`");
                }
            }
        }
    }
    // The scheduler's and the portals' checks only when `stub=only=` names
    // them.
    let sched_checks = checks::SCHED_CHECKS.iter().filter(|_| !only.is_empty());
    let portal_checks = checks::PORTAL_CHECKS.iter().filter(|_| !only.is_empty());
    let virtio_checks = checks::VIRTIO_CHECKS.iter().filter(|_| !only.is_empty());
    let hvvirtio_checks = checks::HVVIRTIO_CHECKS.iter().filter(|_| !only.is_empty());
    let integrity_checks = checks::INTEGRITY_CHECKS.iter().filter(|_| !only.is_empty());
    let checks = checks::CHECKS
        .iter()
        .chain(sched_checks)
        .chain(portal_checks)
        .chain(virtio_checks)
        .chain(hvvirtio_checks)
        .chain(integrity_checks)
        .chain(forced_failure.then_some(&checks::FORCED_FAILURE))
        .filter(|check| check.name.starts_with(only));
    let hostile_checks = hostile.then_some(checks::Check { name: "hostile-vcpus-alive", run: hostile::vcpus_alive });
    // After a restart, first: did the hypervisor clear this VM's RAM?
    let restart_check = (env.starts > 0).then_some(checks::RESTART_MEMORY_CLEARED);
    let plan = hostile
        .then_some(hostile::CHECK_NAME)
        .into_iter()
        .chain(restart_check.iter().chain(hostile_checks.iter()).chain(checks.clone()).map(|c| c.name));
    let planned = plan.clone().count();
    println!("started at {}, {planned} checks", platform::arch::current_el());
    println!("{}", Plan(plan));
    smp::init(&fdt);

    let mut tally = Tally::default();
    if hostile {
        // Before the ordinary checks, which then show the hypervisor still
        // works after it.
        tally.report(hostile::CHECK_NAME, hostile::run(&env, &fdt, seed));
    }
    // A VM without the PCI host bridge (one of several VMs, which do not
    // all get it), or whose bridge shows only portal functions, has
    // nothing for the PCI checks to look at.
    let pci_skip = match fdt.find_compatible(&[pci::COMPATIBLE]) {
        None => Some("this VM has no PCI host bridge"),
        Some(_) => pci::shims_absent(&env),
    };
    for check in restart_check.iter().chain(hostile_checks.iter()).chain(checks) {
        if !skip.is_empty() && check.name == skip {
            tally.skip(check.name, "requested with stub=skip");
        } else if let Some(why) = pci_skip.filter(|_| check.name.starts_with(PCI_CHECKS)) {
            tally.skip(check.name, why);
        } else if check.name == integrity::lock::CHECK_NAME && planned > 1 {
            tally.skip(check.name, integrity::lock::NOT_ALONE);
        } else {
            match (check.run)(&env) {
                // A check that cannot run in this VM (`sched-sgi-wake` with
                // one vCPU, `sched-spi-wake` without the RTC) says why.
                Err(checks::Failure::Skip(why)) => tally.skip(check.name, why),
                result => tally.report(check.name, result),
            }
        }
    }
    println!("{}", Line::Summary { passed: tally.passed, failed: tally.failed, skipped: tally.skipped });
    finish(u32::from(tally.failed != 0))
}

/// The most `hv,probe-holes` entries the isolation check probes.
pub const MAX_PROBE_HOLES: usize = 32;

/// `/chosen/hv,probe-holes`: big-endian 64-bit addresses.
fn probe_holes(fdt: &fdt::Fdt) -> ([u64; MAX_PROBE_HOLES], usize) {
    let mut holes = [0; MAX_PROBE_HOLES];
    let mut count = 0;
    let cells = fdt.find_node("/chosen").and_then(|c| c.property(platform::abi::PROBE_HOLES_PROPERTY));
    for (slot, chunk) in holes.iter_mut().zip(cells.map_or(&[][..], |p| p.value).chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *slot = u64::from_be_bytes(bytes);
        count += 1;
    }
    (holes, count)
}

/// The prefix of the checks that need the PCI host bridge.
const PCI_CHECKS: &str = "pci-";

/// The checks' outcomes so far, each also printed as its report line.
#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl Tally {
    fn report(&mut self, name: &str, result: Result<(), impl core::fmt::Display>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("{}", Line::Pass(name));
            }
            Err(why) => {
                self.failed += 1;
                println!("{}", Failed { name, why });
            }
        }
    }

    fn skip(&mut self, name: &str, why: &str) {
        self.skipped += 1;
        println!("{}", Line::Skip { name, why });
    }
}

/// A decimal or `0x` hexadecimal number.
fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Whether this hypervisor is underneath: it answers the vendor
/// hypervisor service's UID call with its UID (bare QEMU's own PSCI
/// answers `NOT_SUPPORTED`).
fn under_hypervisor() -> bool {
    let uid = smccc::hvc32(platform::abi::HV_CALL_UID, [0; 7]);
    uid[..4] == platform::abi::HV_UID
}

/// Set by `stub=reset`: end with PSCI `SYSTEM_RESET` instead of `SYSTEM_OFF`.
static RESET_AT_END: AtomicBool = AtomicBool::new(false);

/// One past the last byte of RAM, for code that has no [`Env`] at hand.
static RAM_END: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

pub fn ram_end() -> u64 {
    RAM_END.load(Ordering::Relaxed)
}

/// Reports the verdict to the hypervisor and powers off (or resets).
fn finish(status: u32) -> ! {
    let mut args = [0u64; 17];
    args[0] = status.into();
    smccc::hvc64(HV_SET_EXIT_STATUS, args);
    if RESET_AT_END.load(Ordering::Relaxed) {
        checks::mark_for_restart();
        let _ = smccc::psci::system_reset::<smccc::Hvc>();
    } else {
        let _ = smccc::psci::system_off::<smccc::Hvc>();
    }
    platform::arch::halt()
}

/// Ends the run as failed after something no check expected.
pub fn abort_run(args: core::fmt::Arguments) -> ! {
    println!("FAIL aborted: {args}");
    finish(1)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    platform::console::enter_panic();
    abort_run(format_args!("panic: {info}"))
}
