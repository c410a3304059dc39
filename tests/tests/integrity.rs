//! QEMU scenarios of kernel integrity: the guest-stub's `mbec-matrix`,
//! `trace-sequence` and `integrity-lock` checks
//! (`guest-stub/src/integrity.rs` and its modules), each in a run of its
//! own (`stub=only=`), against a hypervisor started with `integrity`
//! (FEAT_XNX where the CPU has it: `-cpu max`; the emulation with a stage-2
//! tree per execute class on the Cortex-A72) or `integrity=emulate` (the
//! emulation on a CPU with FEAT_XNX), and without either word (every check
//! skipped, for the reason the stub gives).
//!
//! The stub's lines these scenarios read are defined in the stub (the
//! modules named above say so where they print them); this file parses
//! them. Every scenario holds the run to its one check by name
//! (`hvtests::selftest::account`), and asserts QEMU's exit status 0 and no
//! `ERROR` anywhere on the console.

use hvtests::scenario::*;
use hvtests::selftest::{self, Expected};
use platform::mbec::{Exec, Mode};

/// The hypervisor's word for each line it logs about kernel integrity.
const HV_MARK: &str = "kernel-integrity:";
/// The reason each check gives without kernel integrity
/// (`guest-stub/src/integrity.rs`, `NOT_SUPPORTED`).
const NOT_SUPPORTED: &str =
    "INTEGRITY STATUS answers NOT_SUPPORTED: the hypervisor runs without `integrity` on its command line";

/// FEAT_XNX's table as the stub prints it (`guest-stub/src/integrity/mbec.rs`,
/// `MatrixLine`): EL1 runs both and kernel-only pages, EL0 both and
/// user-only ones.
const XNX_LINE: &str = "guest-stub: mbec-matrix: el1 both=run kernel=run user=fault neither=fault; \
                        el0 both=run kernel=fault user=run neither=fault";

const MATRIX_PREFIX: &str = "guest-stub: mbec-matrix: el1 ";
const STATUS_PREFIX: &str = "guest-stub: integrity status: ";
const FAULTS_PREFIX: &str = "guest-stub: mbec-matrix: ";
const FAULTS_SUFFIX: &str = " fetch faults";
const TRACE_PREFIX: &str = "guest-stub: trace-sequence: ";
const LOCK_PREFIX: &str = "guest-stub: integrity-lock: ";

/// Boots `-m 1G` with the hypervisor command line `cmdline`.
fn run(name: &str, cpu: &str, smp: u32, cmdline: &str) -> Outcome {
    boot(&Boot { cmdline: Some(cmdline), ..Boot::new(name, cpu, smp, "1G") })
}

/// QEMU exited 0, no `ERROR` line, and the stub's plan and results are
/// exactly `check`, passed (or skipped, if `skipped`).
fn assert_clean(o: &Outcome, check: &str, skipped: bool) {
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    let errors: Vec<&str> = o.console.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "ERROR lines: {errors:#?}\n{dump}");
    let expected = Expected {
        plan: vec![check.to_string()],
        failing: Vec::new(),
        skipped: if skipped { vec![check.to_string()] } else { Vec::new() },
    };
    if let Err(problems) = selftest::account(&o.console, &expected) {
        panic!("the guest-stub's checks are not all accounted for:\n  {}\n{dump}", problems.join("\n  "));
    }
}

/// The one console line that starts with `prefix`.
fn one_line<'a>(o: &'a Outcome, prefix: &'a str) -> &'a str {
    let lines: Vec<&str> = o.lines(prefix).collect();
    match lines.as_slice() {
        [line] => line,
        _ => panic!("expected one `{prefix}...` line, found {}: {lines:#?}\n{}", lines.len(), o.dump()),
    }
}

/// The hypervisor's kernel-integrity lines (not the guest's).
fn hv_lines(console: &str) -> impl Iterator<Item = &str> {
    console.lines().filter(|l| l.contains(HV_MARK) && !l.starts_with("guest-stub:"))
}

/// Reads the matrix line: ran (`true`) or faulted per mode (EL1, EL0) and
/// class (both, kernel, user, neither); `None` if it is not in the
/// stub's format.
fn parse_matrix(line: &str) -> Option<[[bool; 4]; 2]> {
    let body = line.strip_prefix("guest-stub: mbec-matrix: ")?;
    let mut rows = body.split("; ");
    let mut matrix = [[false; 4]; 2];
    for (row, mode) in matrix.iter_mut().zip(["el1", "el0"]) {
        let mut words = rows.next()?.split(' ');
        if words.next()? != mode {
            return None;
        }
        for (cell, class) in row.iter_mut().zip(["both", "kernel", "user", "neither"]) {
            let (name, outcome) = words.next()?.split_once('=')?;
            if name != class {
                return None;
            }
            *cell = match outcome {
                "run" => true,
                "fault" => false,
                _ => return None,
            };
        }
        if words.next().is_some() {
            return None;
        }
    }
    rows.next().is_none().then_some(matrix)
}

/// `platform::mbec`'s FEAT_XNX table, in the matrix's order.
fn xnx_table() -> [[bool; 4]; 2] {
    [Mode::Kernel, Mode::User].map(|mode| Exec::ALL.map(|exec| exec.allows(mode)))
}

/// The literal line, the parser and the architecture's table agree (no
/// QEMU): what the matrix scenarios compare with is FEAT_XNX's.
#[test]
fn matrix_line_is_feat_xnx_table() {
    assert_eq!(parse_matrix(XNX_LINE), Some(xnx_table()));
    assert_eq!(parse_matrix(&XNX_LINE.replace("kernel=run", "kernel=ran")), None);
    assert_eq!(parse_matrix(&XNX_LINE.replace("; el0", " el0")), None);
    let mut flipped = xnx_table();
    flipped[1][1] = true;
    assert_ne!(parse_matrix(&XNX_LINE.replace("el0 both=run kernel=fault", "el0 both=run kernel=run")), None);
    assert_eq!(parse_matrix(&XNX_LINE.replace("el0 both=run kernel=fault", "el0 both=run kernel=run")), Some(flipped));
}

/// `stub=only=mbec` under `word` on `cpu`: the check passes, its line is
/// FEAT_XNX's table word for word, `STATUS` said `xnx` as expected (FEAT_XNX
/// used or emulated), and the hypervisor logged a kernel-integrity line for
/// each fetch fault the stub took.
fn mbec_scenario(name: &str, cpu: &str, word: &str, xnx: bool) {
    let o = run(name, cpu, 2, &format!("{word} stub=only=mbec"));
    let dump = o.dump();
    assert_clean(&o, "mbec-matrix", false);
    let matrix = one_line(&o, MATRIX_PREFIX);
    assert_eq!(parse_matrix(matrix), Some(xnx_table()), "the matrix line `{matrix}`\n{dump}");
    assert_eq!(matrix, XNX_LINE, "{dump}");
    let status = one_line(&o, STATUS_PREFIX);
    let flag = format!(" xnx={} ", u8::from(xnx));
    assert!(status.contains(&flag), "`{status}` must say `{}`\n{dump}", flag.trim());
    assert!(status.contains("locked=0 "), "`{status}`\n{dump}");
    let faults: usize = o
        .lines(FAULTS_PREFIX)
        .find_map(|l| l.strip_prefix(FAULTS_PREFIX)?.strip_suffix(FAULTS_SUFFIX)?.parse().ok())
        .unwrap_or_else(|| panic!("no `{FAULTS_PREFIX}N{FAULTS_SUFFIX}` line\n{dump}"));
    assert!(faults > 0, "{dump}");
    let logged = hv_lines(&o.console).count();
    assert!(logged >= faults, "{faults} fetch faults, {logged} `{HV_MARK}` lines from the hypervisor\n{dump}");
}

#[test]
fn mbec_matrix_emulated_on_cortex_a72() {
    mbec_scenario("mbec-a72", CPU_A72, "integrity", false);
}

#[test]
fn mbec_matrix_hardware_on_max() {
    mbec_scenario("mbec-max", CPU_MAX, "integrity", true);
}

#[test]
fn mbec_matrix_emulation_forced_on_max() {
    mbec_scenario("mbec-max-emulate", CPU_MAX, "integrity=emulate", false);
}

/// `stub=only=trace` with `integrity` on `cpu`: the check passes, with the
/// LSE writes (CAS, SWP, LDSET: three more records) exactly where the CPU
/// has LSE (`-cpu max`; the Cortex-A72 has none).
fn trace_scenario(name: &str, cpu: &str, lse: bool) {
    let o = run(name, cpu, 1, "integrity stub=only=trace");
    assert_clean(&o, "trace-sequence", false);
    let line = one_line(&o, TRACE_PREFIX);
    let expected = if lse { "14 records, lse=1" } else { "11 records, lse=0" };
    assert_eq!(line.strip_prefix(TRACE_PREFIX), Some(expected), "{}", o.dump());
}

#[test]
fn traced_table_writes_recorded_exactly_on_cortex_a72() {
    trace_scenario("trace-a72", CPU_A72, false);
}

#[test]
fn traced_table_writes_recorded_exactly_on_max() {
    trace_scenario("trace-max", CPU_MAX, true);
}

/// `stub=only=integrity-lock` with `integrity` on `cpu`: the check passes
/// (the stub runs on, locked, to its summary and a clean power-off), and
/// before the stub's summary of the lock the hypervisor logged exactly its
/// three refusals.
fn lock_scenario(name: &str, cpu: &str) {
    let o = run(name, cpu, 2, "integrity stub=only=integrity-lock");
    let dump = o.dump();
    assert_clean(&o, "integrity-lock", false);
    let line = one_line(&o, LOCK_PREFIX);
    assert!(line.ends_with(" pages, 3 refusals"), "`{line}`\n{dump}");
    let before = o.console.split(line).next().unwrap_or_default();
    let refused: Vec<&str> = hv_lines(before).filter(|l| l.contains("refused")).collect();
    assert_eq!(refused.len(), 3, "the hypervisor's `{HV_MARK} ... refused` lines: {refused:#?}\n{dump}");
}

#[test]
fn locked_kernel_refuses_updates_on_cortex_a72() {
    lock_scenario("lock-a72", CPU_A72);
}

#[test]
fn locked_kernel_refuses_updates_on_max() {
    lock_scenario("lock-max", CPU_MAX);
}

/// No `integrity` word: each check, in its own run, finds `INTEGRITY` and
/// `TRACE` answering `NOT_SUPPORTED` and reports itself skipped for that
/// reason.
#[test]
fn without_integrity_the_calls_are_not_supported() {
    for (only, check) in [("mbec", "mbec-matrix"), ("trace", "trace-sequence"), ("integrity-lock", "integrity-lock")] {
        let o = run(&format!("no-integrity-{only}"), CPU_MAX, 1, &format!("stub=only={only}"));
        assert_clean(&o, check, true);
        let skip = format!("guest-stub: SKIP {check}: {NOT_SUPPORTED}");
        assert!(o.console.lines().any(|l| l == skip), "missing `{skip}`\n{}", o.dump());
    }
}

/// The Debian kernel's lines a locked run may print, and no others of
/// [`hvtests::linux::BAD_LINES`]: the oops of the module whose code the
/// lock refused (in insmod's own process, at the module's first
/// instruction) and ftrace's warning that it could not patch the kernel.
const REFUSED_MODULE_OOPS: &str = "Unable to handle kernel execute from non-executable memory";
const FTRACE_GAVE_UP: &str = "at kernel/trace/ftrace.c";

/// The unmodified Debian kernel on 4 vCPUs with `integrity`, its `/init` in
/// `linux-guest=integrity` mode: the tables it wrote during boot are in the
/// trace, a module loaded before the lock runs, `hvctl integrity lock`
/// locks the code its `TTBR1` tables map executable, and after it: forks
/// and execs and hvctl work, the module loaded before binds a device;
/// insmod of `loop.ko` (new kernel code) and
/// enabling ftrace (a writable alias of kernel text) are each refused and
/// reported by the hypervisor, the first ending insmod with the kernel's
/// execute-from-non-executable oops at the module's init, the second
/// with ftrace's own warning; the guest runs on and powers off.
fn linux_locked(name: &str, cpu: &str, xnx: bool) {
    let (image, initrd) = match hvtests::linux::guest() {
        Ok(files) => files,
        Err(why) => panic!("the Linux guest is not in build/linux ({why}): make linux-guest"),
    };
    let (image, initrd) = (image.to_string_lossy().into_owned(), initrd.to_string_lossy().into_owned());
    let extra =
        ["-kernel", image.as_str(), "-initrd", initrd.as_str(), "-append", "console=ttyAMA0 linux-guest=integrity"];
    let o = boot(&Boot { cmdline: Some("integrity"), extra: &extra, ..Boot::new(name, cpu, 4, "1G") });
    let dump = o.dump();
    let c = &o.console;
    assert_eq!(o.status, Some(0), "the guest must power off and QEMU exit 0\n{dump}");
    let mechanism = if xnx { "FEAT_XNX" } else { "emulated execute control" };
    let before = one_line(&o, "linux-guest: before lock hvctl: integrity ");
    assert!(
        before.contains(&format!("not locked, {mechanism}, tracing on, 0 locked pages, 0 refused")),
        "{before}\n{dump}"
    );
    // The boot's table writes were traced: the log is full (the first
    // 4096 kept), and its first record is a table of the kernel's half.
    let trace = one_line(&o, "linux-guest: trace exit 0 hvctl: trace: ");
    assert!(trace.ends_with("records, capacity 4096") || trace.contains(" dropped, capacity 4096"), "{trace}\n{dump}");
    let kept: u64 =
        trace.rsplit("trace: ").next().and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(kept > 100, "the boot's table writes must be recorded: {trace}\n{dump}");
    let first = one_line(&o, "linux-guest: trace first trace: table 0x");
    assert!(first.contains(" va 0xffff"), "a record of the kernel's (TTBR1) half: {first}\n{dump}");
    assert!(c.contains("linux-guest: uio_pci_generic loaded before the lock"), "{dump}");
    // The lock: the same count on both sides.
    let hv_lock = one_line(&o, "el2: kernel-integrity: locked: ");
    let pages: u64 =
        hv_lock["el2: kernel-integrity: locked: ".len()..].split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(pages > 1000, "the kernel's text is megabytes: {hv_lock}\n{dump}");
    let guest_lock = format!("linux-guest: hvctl: integrity locked: {pages} pages of kernel code");
    assert!(c.lines().any(|l| l == guest_lock), "missing `{guest_lock}`\n{dump}");
    // Userspace as usual.
    assert!(c.contains("linux-guest: forked and executed 100"), "{dump}");
    assert!(c.contains("linux-guest: hvctl after lock exit 0"), "{dump}");
    // A module loaded before the lock runs after it.
    assert!(c.contains("linux-guest: uio devices after lock uio0"), "{dump}");
    // insmod: refused, reported, and ended by the kernel's oops at the
    // module's init.
    let (before_insmod, after_insmod) =
        c.split_once("linux-guest: insmod after lock exit ").unwrap_or_else(|| panic!("no insmod line\n{dump}"));
    let insmod_status = after_insmod.lines().next().unwrap_or_default();
    assert_ne!(insmod_status, "0", "insmod of new kernel code must fail\n{dump}");
    let lock_at = before_insmod.find(hv_lock).unwrap_or(0);
    let new_code = hv_lines(&before_insmod[lock_at..])
        .filter(|l| l.contains("refused") && l.contains("EL1-executable outside the locked code"))
        .count();
    assert!(new_code >= 1, "the hypervisor must report the module's code\n{dump}");
    assert!(before_insmod.contains(REFUSED_MODULE_OOPS) && before_insmod.contains("loop_init"), "{dump}");
    // ftrace: refused and reported; the kernel gives up on it.
    let (before_ftrace, after_ftrace) = after_insmod
        .split_once("linux-guest: ftrace after lock exit ")
        .unwrap_or_else(|| panic!("no ftrace line\n{dump}"));
    let writable = hv_lines(before_ftrace).filter(|l| l.contains("refused") && l.contains("writable")).count();
    assert!(writable >= 1, "the hypervisor must report the writable kernel code\n{dump}");
    assert!(before_ftrace.contains(FTRACE_GAVE_UP), "{dump}");
    // The guest runs on: the counts agree, and it powers off.
    let after = one_line(&o, "linux-guest: after lock hvctl: integrity ");
    let until_status = c.split(after).next().unwrap_or_default();
    let refused = hv_lines(until_status).filter(|l| l.contains("refused")).count();
    let expected = format!("locked, {mechanism}, tracing on, {pages} locked pages, {refused} refused");
    assert!(after.ends_with(&expected), "`{after}` must end with `{expected}`\n{dump}");
    let _ = after_ftrace;
    assert!(c.contains("linux-guest: still running"), "{dump}");
    assert!(c.contains("el2: guest requested SYSTEM_OFF (status 0)"), "{dump}");
    // Exactly the two expected reports, and nothing else bad.
    assert_eq!(c.matches("Internal error: Oops").count(), 1, "one oops, insmod's\n{dump}");
    assert_eq!(c.matches("WARNING:").count(), 1, "one warning, ftrace's\n{dump}");
    for bad in [
        "BUG:",
        "Kernel panic",
        "soft lockup",
        "hard LOCKUP",
        "rcu: INFO:",
        "stage-2 abort",
        "guest trap",
        "watchdog: CPU",
    ] {
        assert!(!c.contains(bad), "`{bad}`\n{dump}");
    }
}

#[test]
fn linux_locked_kernel_on_cortex_a72() {
    linux_locked("linux-lock-a72", CPU_A72, false);
}

#[test]
fn linux_locked_kernel_on_max() {
    linux_locked("linux-lock-max", CPU_MAX, true);
}

/// With `integrity` but no lock (tracing only, every page executable by
/// both modes), the same kernel's usual run: userspace, 4 CPUs whose timers
/// tick, the PCI shim, hvctl, no bad line, power-off; and its table writes
/// recorded (the power-off line).
#[test]
fn linux_with_tracing_only_behaves_as_without() {
    let (image, initrd) = match hvtests::linux::guest() {
        Ok(files) => files,
        Err(why) => panic!("the Linux guest is not in build/linux ({why}): make linux-guest"),
    };
    let (image, initrd) = (image.to_string_lossy().into_owned(), initrd.to_string_lossy().into_owned());
    let extra =
        ["-kernel", image.as_str(), "-initrd", initrd.as_str(), "-append", "console=ttyAMA0 linux-guest=poweroff"];
    let o = boot(&Boot { cmdline: Some("integrity"), extra: &extra, ..Boot::new("linux-tracing", CPU_A72, 4, "1G") });
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "{dump}");
    assert!(o.console.contains("linux-guest: nproc 4"), "{dump}");
    if let Err(why) = hvtests::linux::check_timers_rose(&o.console, 4) {
        panic!("{why}\n{dump}");
    }
    assert!(o.console.contains("linux-guest: pci 0000:00:00.0 0x13b5:0x0031"), "{dump}");
    assert!(o.console.contains("linux-guest: hvctl scan exit 0"), "{dump}");
    if let Some(bad) = hvtests::linux::bad_line(&o.console) {
        panic!("the kernel log has `{bad}`\n{dump}");
    }
    assert!(!o.console.contains("watchdog: CPU"), "no CPU may stall at EL2 while tables are traced\n{dump}");
    let summary = one_line(&o, "el2: kernel-integrity: not locked, emulated execute control (0 code pages), ");
    let recorded: u64 = summary
        .split(" tables traced, ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(recorded > 100, "{summary}\n{dump}");
    assert!(summary.contains(", 0 refused, 0 tree switches"), "{summary}\n{dump}");
}

/// Among several VMs, kernel integrity is per VM (`hv,kernel-integrity` in
/// its description): VM `k` (with `"emulate"`) runs the matrix with the
/// emulation's trees on a CPU that has FEAT_XNX, beside VM `plain`, whose
/// calls answer `NOT_SUPPORTED`, on the same CPUs.
#[test]
fn kernel_integrity_is_per_vm() {
    use hvtests::vms::{boot_vms, vm};
    let vms = [
        vm("k", 2, 256, "hv,console; hv,kernel-integrity = \"emulate\"; bootargs = \"stub=only=mbec\";"),
        vm("plain", 1, 256, "hv,console; bootargs = \"stub=only=mbec\";"),
    ];
    let o = boot_vms("integrity-per-vm", 2, &vms, None, std::time::Duration::from_secs(120));
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    let k = o.vm("k");
    assert!(k.lines().any(|l| l.ends_with(XNX_LINE.trim_start_matches("guest-stub: "))), "VM k's matrix\n{dump}");
    assert!(k.contains("integrity status: locked=0 xnx=0"), "VM k emulates\n{dump}");
    let plain = o.vm("plain");
    assert!(plain.contains(&format!("SKIP mbec-matrix: {NOT_SUPPORTED}")), "VM plain has none\n{dump}");
    let summary: Vec<&str> = o.lines("el2: kernel-integrity: VM ").collect();
    assert_eq!(summary.len(), 1, "one VM with kernel integrity: {summary:#?}\n{dump}");
    assert!(summary[0].starts_with("el2: kernel-integrity: VM k: not locked, emulated execute control"), "{dump}");
    let fetch_faults = o.console.lines().filter(|l| l.contains("kernel-integrity: VM k: refused:")).count();
    assert!(fetch_faults >= 16, "VM k's fetch faults, each reported: {fetch_faults}\n{dump}");
}
