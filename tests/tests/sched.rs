//! The vCPU scheduler (`docs/scheduling.md`): more vCPUs than physical
//! CPUs, shares by weight, wake-ups of descheduled vCPUs, and unmodified
//! Linux guests sharing CPUs. Each scenario reads the guest-stub's own
//! reports and the hypervisor's per-vCPU figures from the power-off
//! summary (`platform::sched::Figures`).

use hvtests::scenario::*;
use hvtests::selftest::Expected;
use hvtests::vms::*;
use platform::sched::{Figures, REPORT_PREFIX};
use platform::sched_abi::{SpinReport, TimerLateness};
use std::time::Duration;

/// The hypervisor's figures for vCPU `vcpu` of VM `vm`, from the power-off
/// summary.
fn figures(o: &Outcome, vm: &str, vcpu: usize) -> Figures {
    let who = format!("el2: {REPORT_PREFIX}{vm}.{vcpu} ");
    let line = o.console.lines().find_map(|l| l.strip_prefix(who.as_str()));
    let line = line.unwrap_or_else(|| panic!("no `{who}` line\n{}", o.dump()));
    Figures::parse(line).unwrap_or_else(|| panic!("`{line}` does not parse\n{}", o.dump()))
}

/// VM `vm`'s spin report (`stub=spin=MS`).
fn spin_report(o: &Outcome, vm: &str) -> SpinReport {
    let text = o.vm(vm);
    SpinReport::find(&text).unwrap_or_else(|| panic!("VM {vm} printed no spin report\n{}", o.dump()))
}

/// Two CPU-bound guest-stub VMs with weights 1 and 2 on one physical CPU
/// (`-smp 1`, under `-icount` so that guest time is instructions and the
/// run is the same every time): over 2 s of guest time the second gets
/// twice the CPU of the first, within 5 %, measured both by the guests
/// (loop iterations) and by the hypervisor (run time).
#[test]
fn weights_share_one_cpu() {
    let vms = [
        vm("light", 1, 128, "hv,console; hv,weight = <1>; bootargs = \"stub=spin=2000\";"),
        vm("heavy", 1, 128, "hv,console; hv,weight = <2>; bootargs = \"stub=spin=2000\";"),
    ];
    let icount = ["-icount", "shift=0,sleep=off"];
    let base = Boot { timeout: Duration::from_secs(180), ..Boot::new("sched-weights", CPU_MAX, 1, "2G") };
    let o = boot_vms_with("sched-weights", CPU_MAX, 1, &vms, &icount, base);
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    let (light, heavy) = (spin_report(&o, "light"), spin_report(&o, "heavy"));
    let iterations = heavy.iterations as f64 / light.iterations as f64;
    let (light_run, heavy_run) = (figures(&o, "light", 0).run_us, figures(&o, "heavy", 0).run_us);
    let run = heavy_run as f64 / light_run as f64;
    eprintln!("weights 1 : 2 -> iterations {light:?} : {heavy:?} = {iterations:.3}, run {light_run} : {heavy_run} us = {run:.3}");
    for (what, ratio) in [("loop iterations", iterations), ("run time", run)] {
        assert!((1.9..=2.1).contains(&ratio), "{what}: heavy / light = {ratio:.3}, expected 2 within 5 %\n{dump}");
    }
}

/// A guest-stub VM of two vCPUs runs the scheduler checks while a CPU-bound
/// VM shares its one physical CPU (`-smp 1`): its vCPUs are descheduled
/// whenever they wait, and every interrupt kind wakes them with exact
/// counts (`sched-timer-late`: a timer that expired while its vCPU was off
/// the CPU is delivered once, not early; `sched-timer-wake`: its own
/// timer; `sched-sgi-wake`: an SGI from its other vCPU; `sched-spi-wake`:
/// the PL031's passed-through SPI). The CPU-bound VM is still spinning when
/// the checked VM powers off, so every check ran on a shared CPU.
#[test]
fn wakeups_while_descheduled() {
    let vms = [
        vm("checked", 2, 256, "hv,console; hv,devices = \"/pl031@9010000\"; bootargs = \"stub=only=sched\";"),
        vm("hog", 1, 128, "hv,console; bootargs = \"stub=spin=12000\";"),
    ];
    let base = Boot { timeout: Duration::from_secs(120), ..Boot::new("sched-wakeups", CPU_MAX, 1, "2G") };
    let o = boot_vms_with("sched-wakeups", CPU_MAX, 1, &vms, &[], base);
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    assert_vm_checks(&o, "checked", &Expected::sched());
    let lines: Vec<&str> = o.console.lines().collect();
    let checked_off = lines.iter().position(|l| *l == "el2: VM checked: SYSTEM_OFF (status 0)");
    let hog_done = lines.iter().position(|l| l.starts_with("hog| guest-stub: spin done:"));
    let (Some(checked_off), Some(hog_done)) = (checked_off, hog_done) else { panic!("both VMs must finish\n{dump}") };
    assert!(checked_off < hog_done, "the checks must end while the CPU-bound VM still spins\n{dump}");
    for vcpu in 0..2 {
        let f = figures(&o, "checked", vcpu);
        assert!(f.wakeups > 0 && f.switches > 1, "checked.{vcpu} must have slept and been woken: {f:?}\n{dump}");
    }
    assert!(figures(&o, "hog", 0).wait_us > 0, "the CPU-bound VM must have waited for the CPU\n{dump}");
}

/// A latency-sensitive VM (`hv,latency-sensitive`) sleeps on its timer
/// 20 times (`sched-timer-wake`) while a CPU-bound VM shares its one CPU
/// (`-smp 1`, `-icount`: guest time is instructions, the same every run):
/// every timer interrupt reaches its handler within 100 µs of its deadline
/// (measured: under 4 µs; a 10 ms slice is what it would wait without
/// preemption), and the hypervisor recorded each wake-up.
#[test]
fn latency_sensitive_vm_preempts_a_cpu_bound_one() {
    let vms = [
        vm("rt", 1, 128, "hv,console; hv,latency-sensitive; bootargs = \"stub=only=sched-timer-wake\";"),
        vm("hog", 1, 128, "hv,console; bootargs = \"stub=spin=1000\";"),
    ];
    let icount = ["-icount", "shift=0,sleep=off"];
    let base = Boot { timeout: Duration::from_secs(120), ..Boot::new("sched-latency", CPU_MAX, 1, "2G") };
    let o = boot_vms_with("sched-latency", CPU_MAX, 1, &vms, &icount, base);
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    assert_vm_checks(&o, "rt", &Expected::only_sched("sched-timer-wake"));
    let lateness = TimerLateness::find(&o.vm("rt")).unwrap_or_else(|| panic!("no timer lateness line\n{dump}"));
    let worst = lateness.worst_us().unwrap_or(u64::MAX);
    assert!(lateness.wakes == 20 && worst < 100, "20 wake-ups within 100 us expected: {lateness:?}\n{dump}");
    let f = figures(&o, "rt", 0);
    assert!(f.wakeups >= 20, "the hypervisor must have woken rt for each deadline: {f:?}\n{dump}");
    assert!(figures(&o, "hog", 0).switches > 20, "the CPU-bound VM must have been preempted\n{dump}");
}

/// Two unmodified Linux VMs of two vCPUs each on two physical CPUs (four
/// vCPUs on two CPUs): both reach userspace with `nproc` 2, their timers
/// tick on every vCPU, their kernels report no lockup, stall or warning,
/// both power off and QEMU exits 0. Every vCPU was switched in and out
/// many times and waited for a CPU, and `hvctl sched` in each guest read
/// its own VM's figures (no more than the power-off summary's).
fn two_linux_vms_share_two_cpus(name: &str, cpu: &str) {
    let Some(linux) = linux_guest() else {
        eprintln!("SKIPPED {name}: the Linux guest is not in build/linux (make linux-guest)");
        return;
    };
    let vms = [linux_vm("linux-a", 2, 4, ""), linux_vm("linux-b", 2, 4, "")];
    let files = linux_fw_cfg(&linux);
    let extra: Vec<&str> = files.iter().map(String::as_str).collect();
    let base = Boot { timeout: Duration::from_secs(300), ..Boot::new(name, cpu, 2, "2G") };
    let o = boot_vms_with(name, cpu, 2, &vms, &extra, base);
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0 once both VMs are off\n{dump}");
    for vm in ["linux-a", "linux-b"] {
        assert_linux_vm_healthy(&o, vm, 2);
        let off = format!("el2: VM {vm}: SYSTEM_OFF (status 0)");
        assert!(o.console.lines().any(|l| l == off), "missing `{off}`\n{dump}");
        let text = o.vm(vm);
        for vcpu in 0..2 {
            let f = figures(&o, vm, vcpu);
            assert!(f.switches > 10 && f.wait_us > 0, "{vm}.{vcpu} must have shared a CPU: {f:?}\n{dump}");
            // `hvctl sched` in the guest read its own vCPU's figures
            // through the SCHED hypercall, before the power-off summary.
            let who = format!("linux-guest: sched vcpu {vcpu}: ");
            let seen = text.lines().find_map(|l| Figures::parse(l.strip_prefix(who.as_str())?));
            let seen = seen.unwrap_or_else(|| panic!("{vm}: no `{who}` line from hvctl sched\n{dump}"));
            assert!(
                seen.switches > 0 && seen.switches <= f.switches && seen.run_us <= f.run_us,
                "{vm}.{vcpu}: hvctl saw {seen:?}, the summary says {f:?}\n{dump}"
            );
        }
        assert!(text.lines().any(|l| l == "linux-guest: hvctl sched exit 0"), "{vm}: hvctl sched failed\n{dump}");
    }
    assert!(o.console.contains("el2: every VM is off: powering off with status 0"), "{dump}");
    assert!(!o.console.contains("el2: WARN: guest trap"), "a trap the hypervisor did not handle\n{dump}");
}

#[test]
fn two_linux_vms_share_two_cpus_vhe() {
    two_linux_vms_share_two_cpus("sched-linux-vhe", CPU_MAX);
}

#[test]
fn two_linux_vms_share_two_cpus_nvhe() {
    two_linux_vms_share_two_cpus("sched-linux-nvhe", CPU_A72);
}
