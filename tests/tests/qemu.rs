//! QEMU scenarios: each test boots `build/flash.bin` in its own QEMU under
//! a hard timeout and checks what the three images printed and how QEMU
//! exited.
//!
//! The image is the one `make image` wrote (`HV_FLASH` names it; `make
//! qemu-test` sets it). Run alone, the tests build it with `make image`.
//! Damaged-image scenarios derive their images from it in a temp directory.

use hvtests::dts;
use hvtests::flash::find_package;
use hvtests::scenario::*;
use hvtests::selftest::{self, Expected};
use platform::package::EntryKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The default image boots all three stages, every CPU reaches EL2, the
/// guest-stub passes every check, and QEMU exits 0.
fn selftest_passes(name: &str, cpu: &str, smp: u32, mem: &str) {
    let o = boot(&Boot::new(name, cpu, smp, mem));
    assert_selftest_passed(&o, smp);
}

/// The line the lockup watchdog prints for a CPU stalled at EL2.
const WATCHDOG_REPORT: &str = "el2: WARN: watchdog: ";

/// A default guest-stub run passed: see [`assert_checks_passed`].
fn assert_selftest_passed(o: &Outcome, smp: u32) {
    assert_checks_passed(o, smp, &Expected::default_run());
}

/// QEMU exited 0, each image said it started at its level, every CPU came
/// up at EL2, the stub's plan and results are exactly `expected` (every
/// check by name: none missing, skipped, failed or unexpected), the
/// monitor logged the power-off, and the guest's console channels work.
fn assert_checks_passed(o: &Outcome, smp: u32, expected: &Expected) {
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "QEMU must exit 0\n{dump}");
    for (prefix, level) in [("el3-monitor:", "at EL3"), ("el2:", "at EL2"), ("guest-stub:", "at EL1")] {
        assert!(
            o.lines(prefix).next().is_some_and(|l| l.contains(level)),
            "{prefix} boot line must name {level}\n{dump}"
        );
    }
    let online = format!("el2: {smp}/{smp} CPUs online at EL2");
    assert!(o.console.contains(&online), "missing `{online}`\n{dump}");
    for slot in 1..smp {
        let line = format!("el2: CPU {slot} (MPIDR");
        assert!(o.console.contains(&line), "CPU {slot} never reported at EL2\n{dump}");
    }
    if let Err(problems) = selftest::account(&o.console, expected) {
        panic!("the guest-stub's checks are not all accounted for:\n  {}\n{dump}", problems.join("\n  "));
    }
    // The lockup watchdog reports only the stall `pnmi-watchdog` asks for.
    let asked = usize::from(expected.plan.iter().any(|check| check == "pnmi-watchdog"));
    assert_eq!(o.lines(WATCHDOG_REPORT).count(), asked, "lockup reports (`{WATCHDOG_REPORT}`)\n{dump}");
    assert!(
        o.secure.contains("PSCI SYSTEM_OFF, exit status 0"),
        "the monitor's Secure UART must log the power-off\n{dump}"
    );
    // The guest's console channels reach the console, prefixed.
    for line in [
        "guest: guest-stub: brk console ok",
        "guest: guest-stub: brk console from EL0 ok",
        "guest-dcc: guest-stub: dcc console ok",
    ] {
        assert!(o.console.lines().any(|l| l == line), "missing `{line}`\n{dump}");
    }
}

/// The hypervisor's boot line: `mode=`, `remap=`, the VA widths, the load PA
/// (which must be where the monitor says it put the hypervisor) and the
/// link VA, all true for the run.
fn assert_boot_line(o: &Outcome, mode: &str, remap: &str) {
    let dump = o.dump();
    let line = o.lines("el2: v").next().unwrap_or_else(|| panic!("no hypervisor boot line\n{dump}"));
    let loaded_at = o
        .lines("el3-monitor: package verified; hypervisor at PA ")
        .next()
        .and_then(|l| l.split("PA ").nth(1))
        .and_then(|rest| rest.split("..").next())
        .unwrap_or_else(|| panic!("the monitor does not say where it loaded the hypervisor\n{dump}"));
    for part in [
        format!("mode={mode} "),
        format!("remap={remap} "),
        "el2-va-bits=48 el0-va-bits=39".to_string(),
        format!("load-pa={loaded_at} "),
        "link-va=0xffffff8000000000".to_string(),
    ] {
        assert!(line.contains(&part), "boot line lacks `{part}`: {line}\n{dump}");
    }
    let secondaries = o.lines("el2: CPU ").filter(|l| l.contains("online at EL2")).count();
    let in_mode = o.lines("el2: CPU ").filter(|l| l.contains(&format!("(mode={mode})"))).count();
    assert_eq!(secondaries, in_mode, "every CPU must run in mode={mode}\n{dump}");
}

/// The translation-scheme matrix: CPU (and whether `mode=nvhe` is forced)
/// × remap path × CPU count. `max` has VHE, so `auto` picks it; the
/// Cortex-A72 has none.
fn scheme_scenario(name: &str, cpu: &str, force_nvhe: bool, remap: &str, smp: u32, mode: &str) {
    let cmdline = format!("{}remap={remap}", if force_nvhe { "mode=nvhe " } else { "" });
    let o = boot(&Boot { cmdline: Some(&cmdline), ..Boot::new(name, cpu, smp, "1G") });
    assert_selftest_passed(&o, smp);
    assert_boot_line(&o, mode, remap);
    if remap == "fault" {
        assert!(
            o.lines("el2: remap=fault: the first fetch after MMU-on").any(|l| l.contains("translation fault")),
            "the fault path must report its fault\n{}",
            o.dump()
        );
    }
}

macro_rules! scheme_scenarios {
    ($($name:ident: $cpu:expr, $force_nvhe:expr, $remap:expr, $smp:expr => $mode:expr;)*) => {
        $(
            #[test]
            fn $name() {
                scheme_scenario(stringify!($name), $cpu, $force_nvhe, $remap, $smp, $mode);
            }
        )*
    };
}

scheme_scenarios! {
    scheme_max_auto_intermediate_smp1: CPU_MAX, false, "intermediate", 1 => "vhe";
    scheme_max_auto_intermediate_smp4: CPU_MAX, false, "intermediate", 4 => "vhe";
    scheme_max_auto_fault_smp1: CPU_MAX, false, "fault", 1 => "vhe";
    scheme_max_auto_fault_smp4: CPU_MAX, false, "fault", 4 => "vhe";
    scheme_a72_auto_intermediate_smp1: CPU_A72, false, "intermediate", 1 => "nvhe";
    scheme_a72_auto_intermediate_smp4: CPU_A72, false, "intermediate", 4 => "nvhe";
    scheme_a72_auto_fault_smp1: CPU_A72, false, "fault", 1 => "nvhe";
    scheme_a72_auto_fault_smp4: CPU_A72, false, "fault", 4 => "nvhe";
    scheme_max_nvhe_intermediate_smp1: CPU_MAX, true, "intermediate", 1 => "nvhe";
    scheme_max_nvhe_intermediate_smp4: CPU_MAX, true, "intermediate", 4 => "nvhe";
    scheme_max_nvhe_fault_smp1: CPU_MAX, true, "fault", 1 => "nvhe";
    scheme_max_nvhe_fault_smp4: CPU_MAX, true, "fault", 4 => "nvhe";
}

/// `mode=vhe` on a CPU without VHE says so and runs the split scheme.
#[test]
fn vhe_requested_without_vhe_falls_back() {
    let o = boot(&Boot { cmdline: Some("mode=vhe"), ..Boot::new("vhe-fallback", CPU_A72, 2, "1G") });
    assert_selftest_passed(&o, 2);
    assert_boot_line(&o, "nvhe", "intermediate");
    assert!(
        o.console.contains("el2: WARN: mode=vhe: this CPU has no VHE (ID_AA64MMFR1_EL1.VH = 0), using mode=nvhe"),
        "{}",
        o.dump()
    );
}

macro_rules! selftest_scenarios {
    ($($name:ident: $cpu:expr, $smp:expr, $mem:expr;)*) => {
        $(
            #[test]
            fn $name() {
                selftest_passes(stringify!($name), $cpu, $smp, $mem);
            }
        )*
    };
}

selftest_scenarios! {
    max_smp1_1g: CPU_MAX, 1, "1G";
    max_smp4_1g: CPU_MAX, 4, "1G";
    a72_smp1_1g: CPU_A72, 1, "1G";
    a72_smp4_1g: CPU_A72, 4, "1G";
    max_smp8_3g: CPU_MAX, 8, "3G";
    max_smp2_512m: CPU_MAX, 2, "512M";
    a72_smp8_512m: CPU_A72, 8, "512M";
    a72_smp3_2g: CPU_A72, 3, "2G";
    // The limit (MAX_CPUS), in the least RAM the README promises.
    max_smp16_128m: CPU_MAX, 16, "128M";
}

/// How a scenario damages the image.
enum Damage {
    /// Cut the file in the middle of the hypervisor's payload.
    TruncateInHypervisor,
    /// Flip one bit of a payload.
    FlipPayload(EntryKind),
    /// Flip one bit of the package header.
    FlipHeader,
    /// Keep only the monitor.
    DropPackage,
}

fn damaged_image(name: &str, damage: Damage) -> PathBuf {
    let mut bytes = std::fs::read(flash()).expect("read flash image");
    let (offset, package) = find_package(&bytes).expect("the good image holds a package");
    let payload_range = |kind| {
        let entry = package.entry(kind).expect("entry present");
        let start = entry.payload.as_ptr() as usize - bytes.as_ptr() as usize;
        start..start + entry.payload.len()
    };
    match damage {
        Damage::TruncateInHypervisor => {
            let range = payload_range(EntryKind::Hypervisor);
            let cut = range.start + range.len() / 2;
            bytes.truncate(cut);
        }
        Damage::FlipPayload(kind) => {
            let range = payload_range(kind);
            let at = range.start + range.len() / 3;
            bytes[at] ^= 0x01;
        }
        Damage::FlipHeader => bytes[offset + 16] ^= 0x01,
        Damage::DropPackage => bytes.truncate(offset),
    }
    let path = scratch_dir(&format!("{name}-image")).join("flash.bin");
    std::fs::write(&path, bytes).expect("write damaged image");
    path
}

/// Where a refusal's one line must appear.
#[derive(Clone, Copy, Debug)]
enum Report {
    /// The Non-secure console (first UART).
    Console,
    /// The monitor's Secure UART (second UART).
    SecureUart,
    /// QEMU's standard error: the semihosting console, where the monitor
    /// also reports when the device tree names no Non-secure console.
    Stderr,
}

/// Which image refuses, with what status.
#[derive(Clone, Copy, Debug)]
enum Refuser {
    Monitor,
    Hypervisor,
}

impl Refuser {
    fn error_prefix(self) -> &'static str {
        match self {
            Refuser::Monitor => "el3-monitor: ERROR: ",
            Refuser::Hypervisor => "el2: ERROR: ",
        }
    }

    fn status(self) -> i32 {
        match self {
            Refuser::Monitor => EXIT_MONITOR_FATAL,
            Refuser::Hypervisor => EXIT_HYPERVISOR_FATAL,
        }
    }
}

/// A bad boot input was refused: QEMU exited with the refuser's status
/// within [`REFUSAL_DEADLINE`], each of `reports` shows exactly one error
/// line and it says `expect`, and no guest ran (nor EL2, if the monitor
/// refused).
fn assert_refused(o: &Outcome, what: &str, refuser: Refuser, expect: &str, reports: &[Report]) {
    let dump = o.dump();
    assert_eq!(o.status, Some(refuser.status()), "{what}: QEMU must exit with the {refuser:?}'s fatal status\n{dump}");
    assert!(o.elapsed < REFUSAL_DEADLINE, "{what}: refusal took {:?}\n{dump}", o.elapsed);
    for &report in reports {
        let text = match report {
            Report::Console => &o.console,
            Report::SecureUart => &o.secure,
            Report::Stderr => &o.stderr,
        };
        let errors: Vec<_> = text.lines().filter(|l| l.contains("ERROR:")).collect();
        assert_eq!(errors.len(), 1, "{what}: exactly one error line expected on the {report:?}\n{dump}");
        assert!(errors[0].starts_with(refuser.error_prefix()), "{what}: the {refuser:?} must refuse\n{dump}");
        assert!(errors[0].contains(expect), "{what}: the error must say `{expect}`\n{dump}");
    }
    if let Refuser::Monitor = refuser {
        assert!(o.lines("el2:").next().is_none(), "{what}: nothing may run at EL2\n{dump}");
    }
    assert!(!o.console.contains("el2: entering"), "{what}: no guest may run\n{dump}");
    assert!(o.lines("guest-stub:").next().is_none(), "{what}: no guest may run\n{dump}");
}

/// The monitor refuses a damaged image with one error line that names the
/// problem, never enters EL2, and QEMU exits non-zero within seconds.
fn damaged_image_refused(name: &str, damage: Damage, expect_in_error: &str) {
    let image = damaged_image(name, damage);
    let o = boot(&Boot { flash: image.clone(), ..Boot::new(name, CPU_MAX, 4, "1G") });
    let _ = std::fs::remove_dir_all(image.parent().expect("scratch dir"));
    assert_refused(&o, name, Refuser::Monitor, expect_in_error, &[Report::Console]);
}

#[test]
fn truncated_image_refused() {
    damaged_image_refused("truncated", Damage::TruncateInHypervisor, "hypervisor payload is corrupt");
}

#[test]
fn flipped_hypervisor_byte_refused() {
    damaged_image_refused("flip-hv", Damage::FlipPayload(EntryKind::Hypervisor), "hypervisor payload is corrupt");
}

#[test]
fn flipped_guest_stub_byte_refused() {
    damaged_image_refused("flip-stub", Damage::FlipPayload(EntryKind::GuestStub), "guest-stub payload is corrupt");
}

#[test]
fn flipped_header_refused() {
    damaged_image_refused("flip-header", Damage::FlipHeader, "header or entry table is corrupt");
}

#[test]
fn missing_package_refused() {
    damaged_image_refused("no-package", Damage::DropPackage, "no firmware package");
}

/// One corruption of a package field, resealed (the header digest
/// recomputed) unless the digest is what it damages, so that the monitor's
/// check of that very field is what refuses the image.
struct FieldDamage {
    field: &'static str,
    /// Offset in the package (header, then ENTRY_SIZE-byte entries).
    at: usize,
    value: FieldValue,
    reseal: bool,
    expect: &'static str,
}

enum FieldValue {
    U32(u32),
    U64(u64),
    /// Added to the u64 there (wrapping, so negative steps work).
    AddU64(u64),
    FlipBit,
}

/// Every header and entry field of the package (platform/src/package.rs,
/// "Layout"), corrupted one at a time in the real image: the monitor
/// refuses each with one line naming what is wrong. Entry 0 is the
/// hypervisor, entry 1 the guest-stub (mkflash's order).
#[test]
fn every_package_field_corrupted_is_refused() {
    use platform::package::{ENTRY_SIZE, HEADER_SIZE};
    use FieldValue::*;
    let entry = |index: usize, field: usize| HEADER_SIZE + index * ENTRY_SIZE + field;
    let (kind, flags, offset, size, align, mem_size, entry_offset, digest) = (0, 4, 8, 16, 24, 32, 40, 48);
    let damages = [
        FieldDamage { field: "magic", at: 0, value: FlipBit, reseal: false, expect: "no firmware package here" },
        FieldDamage {
            field: "version",
            at: 8,
            value: U32(2),
            reseal: true,
            expect: "format version 2 is not supported",
        },
        FieldDamage { field: "header_size", at: 12, value: U32(72), reseal: true, expect: "header declares size 72" },
        FieldDamage {
            field: "entry_count 17",
            at: 16,
            value: U32(17),
            reseal: true,
            expect: "has 17 entries, at most 16",
        },
        FieldDamage {
            field: "entry_count 1",
            at: 16,
            value: U32(1),
            reseal: true,
            expect: "padding byte at offset 0x90 is not zero",
        },
        FieldDamage { field: "entry_size", at: 20, value: U32(88), reseal: true, expect: "declares entry size 88" },
        FieldDamage {
            field: "total_size small",
            at: 24,
            value: U64(100),
            reseal: true,
            expect: "declares total size 100",
        },
        FieldDamage {
            field: "total_size large",
            at: 24,
            value: U64(1 << 40),
            reseal: true,
            expect: "firmware package truncated: the payloads",
        },
        FieldDamage {
            field: "header digest",
            at: 32,
            value: FlipBit,
            reseal: false,
            expect: "header or entry table is corrupt",
        },
        FieldDamage {
            field: "entry table",
            at: entry(1, size),
            value: FlipBit,
            reseal: false,
            expect: "header or entry table is corrupt",
        },
        FieldDamage {
            field: "kind unknown",
            at: entry(0, kind),
            value: U32(7),
            reseal: true,
            expect: "entry 0 has unknown kind 7",
        },
        FieldDamage {
            field: "kind repeated",
            at: entry(1, kind),
            value: U32(1),
            reseal: true,
            expect: "more than one hypervisor entry",
        },
        FieldDamage {
            field: "flags",
            at: entry(1, flags),
            value: U32(4),
            reseal: true,
            expect: "entry 1 has reserved flags 0x4",
        },
        FieldDamage {
            field: "offset",
            at: entry(0, offset),
            value: U64(8),
            reseal: true,
            expect: "hypervisor payload (offset 0x8",
        },
        FieldDamage {
            field: "size larger",
            at: entry(1, size),
            value: AddU64(1 << 20),
            reseal: true,
            expect: "guest-stub payload (offset",
        },
        FieldDamage {
            field: "size smaller",
            at: entry(0, size),
            value: AddU64(64u64.wrapping_neg()),
            reseal: true,
            expect: "padding byte at offset",
        },
        FieldDamage {
            field: "align",
            at: entry(0, align),
            value: U64(0x3000),
            reseal: true,
            expect: "load alignment 0x3000 is not a power of two",
        },
        FieldDamage {
            field: "align small",
            at: entry(1, align),
            value: U64(0x800),
            reseal: true,
            expect: "below the minimum",
        },
        FieldDamage {
            field: "mem_size",
            at: entry(0, mem_size),
            value: U64(1),
            reseal: true,
            expect: "hypervisor entry has bad load hints: memory size 0x1",
        },
        FieldDamage {
            field: "mem_size huge",
            at: entry(0, mem_size),
            value: U64(1 << 40),
            reseal: true,
            expect: "RAM too small for the hypervisor",
        },
        FieldDamage {
            field: "entry_offset",
            at: entry(1, entry_offset),
            value: U64(1 << 40),
            reseal: true,
            expect: "entry offset 0x10000000000 is outside the image",
        },
        FieldDamage {
            field: "entry_offset odd",
            at: entry(0, entry_offset),
            value: U64(2),
            reseal: true,
            expect: "entry offset 0x2 is not a multiple of 4",
        },
        FieldDamage {
            field: "digest",
            at: entry(1, digest),
            value: FlipBit,
            reseal: true,
            expect: "guest-stub payload is corrupt",
        },
    ];
    let good = std::fs::read(flash()).expect("read flash image");
    let (package_offset, _) = find_package(&good).expect("the good image holds a package");
    let dir = scratch_dir("package-fields");
    for damage in &damages {
        let mut bytes = good.clone();
        let package = &mut bytes[package_offset..];
        let at = damage.at;
        match damage.value {
            U32(v) => package[at..at + 4].copy_from_slice(&v.to_le_bytes()),
            U64(v) => package[at..at + 8].copy_from_slice(&v.to_le_bytes()),
            AddU64(step) => {
                let old = u64::from_le_bytes(package[at..at + 8].try_into().unwrap());
                package[at..at + 8].copy_from_slice(&old.wrapping_add(step).to_le_bytes());
            }
            FlipBit => package[at] ^= 0x01,
        }
        if damage.reseal {
            hvtests::flash::reseal_header(package);
        }
        let image = dir.join("flash.bin");
        std::fs::write(&image, &bytes).expect("write damaged image");
        let o = boot(&Boot { flash: image, ..Boot::new("package-field", CPU_MAX, 2, "1G") });
        assert_refused(&o, damage.field, Refuser::Monitor, damage.expect, &[Report::Console]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A failing guest-stub check makes QEMU exit non-zero: `stub=fail` adds a
/// check that always fails, and the verdict travels guest → EL2 → EL3.
#[test]
fn failing_check_fails_the_run() {
    let o = boot(&Boot { cmdline: Some("stub=fail"), ..Boot::new("forced-failure", CPU_MAX, 2, "1G") });
    let dump = o.dump();
    assert_eq!(o.status, Some(1), "a failed check must give exit status 1\n{dump}");
    assert!(o.console.contains("guest-stub: FAIL forced-failure: requested with stub=fail"), "{dump}");
    let tally = selftest::account(&o.console, &Expected::forced_failure_run())
        .unwrap_or_else(|problems| panic!("{problems:?}\n{dump}"));
    assert_eq!(tally.failed, 1, "{dump}");
    assert!(o.secure.contains("PSCI SYSTEM_OFF, exit status 1"), "{dump}");
}

/// A check the stub skips (`stub=skip=<name>`) is caught by name, although
/// the stub itself, which failed nothing, exits 0; so is a check left out
/// of the plan (`stub=only=` narrows the plan below what is expected).
#[test]
fn skipped_or_missing_check_is_named() {
    let o = boot(&Boot { cmdline: Some("stub=only=dcc stub=skip=dcc-console"), ..Boot::new("skip", CPU_MAX, 1, "1G") });
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "a skip is no failure for the stub itself\n{dump}");
    let problems = selftest::account(&o.console, &Expected::only("dcc")).expect_err("a skipped check must be caught");
    assert_eq!(problems.len(), 2, "{problems:?}\n{dump}");
    assert!(problems[0].contains("check `dcc-console` was skipped: requested with stub=skip"), "{problems:?}");
    assert!(problems[1].contains("the summary says `1 passed, 0 failed, 1 skipped`"), "{problems:?}");

    let problems = selftest::account(&o.console, &Expected::default_run()).expect_err("a narrowed plan must be caught");
    assert!(problems.iter().any(|p| p.contains("check `virq-no-loss` is not in the stub's plan")), "{problems:?}");
}

/// The command line reaches the hypervisor: `log=debug` shows the stage-2
/// abort the hole check provokes, and an unknown word is reported, not fatal.
#[test]
fn command_line_sets_log_level() {
    let o = boot(&Boot { cmdline: Some("log=debug no-such-word"), ..Boot::new("cmdline", CPU_A72, 1, "1G") });
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "{dump}");
    assert!(o.console.contains("el2: command line (fw_cfg opt/hv/cmdline): `log=debug no-such-word`"), "{dump}");
    assert!(o.console.contains("el2: WARN: unknown command-line word `no-such-word` ignored"), "{dump}");
    assert!(o.lines("el2: DEBUG: stage-2 abort at IPA").any(|l| l.contains("external abort to the guest")), "{dump}");
}

/// The monitor's SMC interface as EL2 sees it: versions, feature queries,
/// the error code of each misuse, and a CPU_OFF / CPU_ON cycle.
#[test]
fn firmware_interface_selftest() {
    let o = boot(&Boot { cmdline: Some("selftest=firmware"), ..Boot::new("selftest-firmware", CPU_MAX, 4, "1G") });
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "{dump}");
    // Every check by name, `affinity-info-on` once per CPU (el2/src/selftest.rs).
    let mut expected: Vec<&str> = vec![
        "smccc-version",
        "smccc-features-version",
        "smccc-features-unknown",
        "psci-version",
        "psci-features-cpu-on",
        "psci-features-unimplemented",
        "unknown-oem-call",
        "unknown-sip-call",
        "unknown-psci-call",
    ];
    expected.extend(["affinity-info-on"; 4]);
    expected.extend([
        "affinity-info-no-such-cpu",
        "affinity-info-level-1",
        "cpu-on-running-cpu",
        "cpu-on-no-such-cpu",
        "cpu-on-entry-outside-ram",
        "cpu-off-reported-off",
        "cpu-on-after-off",
        "cpu-back-online",
        "affinity-info-on-again",
    ]);
    let passed: Vec<&str> = o.lines("el2: selftest PASS ").map(|l| &l["el2: selftest PASS ".len()..]).collect();
    assert_eq!(passed, expected, "the firmware self-test's checks, in order\n{dump}");
    assert!(o.console.contains(&format!("el2: selftest: {} passed, 0 failed", expected.len())), "{dump}");
    selftest::account(&o.console, &Expected::default_run())
        .unwrap_or_else(|problems| panic!("the guest still runs its checks: {problems:?}\n{dump}"));
}

/// An unexpected exception at EL2 prints its decoded context, stops every
/// other CPU with a PNMI and prints where each was, and ends the run with
/// the hypervisor's failure status. The deliberate fault is a read
/// of the hypervisor's own load address, which has no mapping once EL2 runs
/// on its final tables (no identity map).
#[test]
fn unexpected_exception_at_el2_is_reported() {
    unexpected_exception_at_el2_on("selftest-fatal", Gic::V3);
}

/// The same crash stop on a GICv2 host: the PNMI is an SGI through
/// `GICD_SGIR` at a priority `GICC_PMR` lets through.
#[test]
fn unexpected_exception_at_el2_is_reported_on_gicv2() {
    unexpected_exception_at_el2_on("selftest-fatal-gicv2", Gic::V2);
}

fn unexpected_exception_at_el2_on(name: &str, gic: Gic) {
    let machine_options = gic.machine_option();
    let o = boot(&Boot { cmdline: Some("selftest=fatal"), machine_options, ..Boot::new(name, CPU_A72, 2, "1G") });
    let dump = o.dump();
    assert_eq!(o.status, Some(2), "the hypervisor's fatal status is 2\n{dump}");
    let report =
        o.lines("el2: ERROR: unexpected exception: ").next().unwrap_or_else(|| panic!("no exception report\n{dump}"));
    // The address read is where the hypervisor was loaded, which its boot
    // line gives (it moves as the image grows).
    let load_pa = o
        .console
        .lines()
        .find_map(|l| l.split_once(" load-pa=")?.1.split_whitespace().next())
        .unwrap_or_else(|| panic!("no load-pa= in the boot line\n{dump}"));
    let far = format!("FAR {load_pa}");
    for part in ["taken from EL2", "ESR 0x", "DataAbortSame", "translation fault", far.as_str(), "ELR 0x"] {
        assert!(report.contains(part), "report lacks `{part}`: {report}");
    }
    assert!(o.lines("guest-stub:").next().is_none(), "the guest must not start\n{dump}");
    // The other CPU, idle at EL2, is stopped by a PNMI and its state printed.
    assert!(o.console.contains("el2: ERROR: CPU 0 (MPIDR 0x0): this CPU, reporting the error"), "{dump}");
    let stopped = o
        .lines("el2: ERROR: CPU 1 (MPIDR 0x1): stopped by PNMI at EL2 ELR 0x")
        .next()
        .unwrap_or_else(|| panic!("CPU 1 was not stopped by PNMI\n{dump}"));
    assert!(stopped.contains(" ticks, 0 lockups"), "{stopped}");
}

/// PSCI SYSTEM_RESET from the guest reaches the monitor, which resets the
/// board through its GPIO line (QEMU exits on reset with -no-reboot).
#[test]
fn guest_system_reset() {
    let o = boot(&Boot { cmdline: Some("stub=reset"), extra: &["-no-reboot"], ..Boot::new("reset", CPU_MAX, 2, "1G") });
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "{dump}");
    assert!(o.console.contains("el2: guest requested SYSTEM_RESET"), "{dump}");
    assert!(o.secure.contains("el3-monitor: PSCI SYSTEM_RESET"), "{dump}");
    assert_eq!(o.lines("guest-stub: started").count(), 1, "booted once, then reset\n{dump}");
}

/// Without a semihosting host, power-off goes through the board's Secure
/// GPIO line from the DTB, and QEMU still exits.
#[test]
fn power_off_without_semihosting() {
    let o = boot(&Boot { extra: &[NO_SEMIHOSTING], ..Boot::new("gpio-poweroff", CPU_A72, 2, "1G") });
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "{dump}");
    selftest::account(&o.console, &Expected::default_run()).unwrap_or_else(|problems| panic!("{problems:?}\n{dump}"));
    assert!(o.secure.contains("PSCI SYSTEM_OFF, exit status 0"), "{dump}");
}

/// On boards without fw_cfg the command line comes from the DTB's
/// QEMU's own device tree for this machine (`dumpdtb`), as source.
fn qemu_dts(dir: &Path, smp: u32, mem: &str) -> String {
    let dumped = dir.join("virt.dtb");
    let machine = format!("{MACHINE},dumpdtb={}", dumped.display());
    let status = hvtests::qemu::command()
        .args(["-M", &machine, "-cpu", CPU_MAX, "-smp", &smp.to_string(), "-m", mem, "-display", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run qemu-system-aarch64 to dump its DTB");
    assert!(status.success(), "QEMU could not dump its DTB");
    let dts = Command::new("dtc").args(["-q", "-I", "dtb", "-O", "dts"]).arg(&dumped).output().expect("run dtc");
    assert!(dts.status.success(), "dtc could not read QEMU's DTB");
    String::from_utf8_lossy(&dts.stdout).into_owned()
}

/// Compiles `dts` to `dir/<name>.dtb` and returns that path as a string.
fn compile_dts(dir: &Path, name: &str, dts: &str) -> String {
    let source = dir.join(format!("{name}.dts"));
    let compiled = dir.join(format!("{name}.dtb"));
    std::fs::write(&source, dts).expect("write DTS");
    let status = Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(&compiled)
        .arg(&source)
        .status()
        .expect("run dtc");
    assert!(status.success(), "dtc could not compile {name}");
    compiled.display().to_string()
}

/// `/chosen/hv,bootargs`: QEMU's own tree with that property added, passed
/// with `-dtb`.
#[test]
fn command_line_from_device_tree() {
    let dir = scratch_dir("dt-cmdline");
    let dts = dts::set_property(&qemu_dts(&dir, 2, "1G"), "/chosen", "hv,bootargs", "\"mode=nvhe remap=fault\"");
    let dtb = compile_dts(&dir, "virt-hv", &dts);
    let o = boot(&Boot { extra: &["-dtb", &dtb], ..Boot::new("dt-cmdline-boot", CPU_MAX, 2, "1G") });
    let _ = std::fs::remove_dir_all(&dir);
    assert_selftest_passed(&o, 2);
    assert_boot_line(&o, "nvhe", "fault");
    assert!(o.console.contains("el2: command line (DT /chosen/hv,bootargs): `mode=nvhe remap=fault`"), "{}", o.dump());
}

/// VM descriptions in the host device tree's `/chosen` (how a board's boot
/// loader passes them, with no fw_cfg file): two guest-stub VMs, each
/// running its checks.
#[test]
fn vms_from_the_device_tree() {
    let dir = scratch_dir("dt-vms");
    let vm = |name: &str| {
        format!("vm-{name} {{\ncompatible = \"hv,vm\";\nhv,name = \"{name}\";\ncpus = <1>;\nmemory = <0 131072>;\nhv,console;\n}};")
    };
    let dts = dts::add_node(&qemu_dts(&dir, 2, "1G"), "/chosen", &vm("dt-a"));
    let dts = dts::add_node(&dts, "/chosen", &vm("dt-b"));
    let dtb = compile_dts(&dir, "virt-vms", &dts);
    let o = boot(&Boot { extra: &["-dtb", &dtb], ..Boot::new("dt-vms-boot", CPU_MAX, 2, "1G") });
    let _ = std::fs::remove_dir_all(&dir);
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "{dump}");
    assert!(o.console.contains("el2: 2 VM(s) described in the device tree's /chosen"), "{dump}");
    for name in ["dt-a", "dt-b"] {
        if let Err(problems) = selftest::account(&o.vm(name), &Expected::default_run().without_pci()) {
            panic!("VM {name}: {}\n{dump}", problems.join("\n  "));
        }
    }
}

/// A damage to QEMU's device tree and what must refuse it.
struct TreeDamage {
    name: &'static str,
    edit: fn(&str) -> String,
    refuser: Refuser,
    expect: &'static str,
    reports: &'static [Report],
}

/// QEMU's GIC node on `virt` with gic-version=3 and its `reg` (distributor,
/// one redistributor region) for 2 CPUs.
const GIC: &str = "/intc@8000000";
/// The Non-secure and the Secure PL011.
const UART: &str = "/pl011@9000000";
const SECURE_UART: &str = "/pl011@9040000";

/// A device tree without the GIC, a UART or the CPUs, or with nonsense in
/// them (QEMU's own tree, edited, through `-dtb`): each is refused with one
/// line, quickly, before any guest runs. While the tree names a Non-secure
/// console the line is on it (the monitor mirrors there); without one, the
/// monitor's Secure UART, or its early console, and the semihosting host
/// (QEMU's standard error) carry it.
#[test]
fn device_tree_defects_refused() {
    use Report::*;
    let on_console: &[Report] = &[Console];
    let unreadable: &[Report] = &[Console, Stderr];
    let damages = [
        TreeDamage {
            name: "no GIC",
            edit: |t| dts::remove_node(t, GIC),
            refuser: Refuser::Monitor,
            expect: "device tree has no interrupt controller",
            reports: unreadable,
        },
        TreeDamage {
            name: "GIC without reg",
            edit: |t| dts::remove_property(t, GIC, "reg"),
            refuser: Refuser::Monitor,
            expect: "intc@8000000 has no `reg` property",
            reports: unreadable,
        },
        TreeDamage {
            name: "GIC distributor of size 0",
            edit: |t| dts::set_property(t, GIC, "reg", "<0x00 0x8000000 0x00 0x00 0x00 0x80a0000 0x00 0xf60000>"),
            refuser: Refuser::Monitor,
            expect: "gives the GICv3 distributor less than 64 KiB",
            reports: unreadable,
        },
        TreeDamage {
            name: "GIC over RAM",
            edit: |t| dts::set_property(t, GIC, "reg", "<0x00 0x40000000 0x00 0x10000 0x00 0x80a0000 0x00 0xf60000>"),
            refuser: Refuser::Monitor,
            expect: "intc@8000000: `reg` puts a register window over RAM",
            reports: unreadable,
        },
        TreeDamage {
            name: "no GIC where the tree says",
            edit: |t| dts::set_property(t, GIC, "reg", "<0x00 0x30000000 0x00 0x10000 0x00 0x80a0000 0x00 0xf60000>"),
            refuser: Refuser::Monitor,
            expect: "no GICv3 distributor at 0x30000000",
            reports: on_console,
        },
        TreeDamage {
            name: "redistributors too small",
            edit: |t| dts::set_property(t, GIC, "reg", "<0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0x20000>"),
            refuser: Refuser::Monitor,
            expect: "less than 128 KiB for each CPU",
            reports: unreadable,
        },
        TreeDamage {
            name: "no UART",
            edit: |t| {
                let t = dts::remove_node(&dts::remove_node(&dts::remove_node(t, UART), SECURE_UART), "/aliases");
                dts::remove_property(
                    &dts::remove_property(&t, "/chosen", "stdout-path"),
                    "/secure-chosen",
                    "stdout-path",
                )
            },
            refuser: Refuser::Monitor,
            expect: "the device tree names no Non-secure console",
            reports: &[Stderr, Console],
        },
        TreeDamage {
            name: "no Non-secure UART",
            edit: |t| dts::remove_property(&dts::remove_node(t, UART), "/chosen", "stdout-path"),
            refuser: Refuser::Monitor,
            expect: "the device tree names no Non-secure console",
            reports: &[Stderr, SecureUart],
        },
        TreeDamage {
            name: "UART without reg",
            edit: |t| dts::remove_property(t, UART, "reg"),
            refuser: Refuser::Monitor,
            expect: "pl011@9000000 has no `reg` property",
            reports: unreadable,
        },
        TreeDamage {
            name: "UART of size 0",
            edit: |t| dts::set_property(t, UART, "reg", "<0x00 0x9000000 0x00 0x00>"),
            refuser: Refuser::Monitor,
            expect: "gives the PL011 a window smaller than its registers",
            reports: unreadable,
        },
        TreeDamage {
            name: "UART over RAM",
            edit: |t| dts::set_property(t, UART, "reg", "<0x00 0x40100000 0x00 0x1000>"),
            refuser: Refuser::Monitor,
            expect: "pl011@9000000: `reg` puts a register window over RAM",
            reports: unreadable,
        },
        TreeDamage {
            name: "UART not a PL011",
            edit: |t| dts::set_property(t, UART, "compatible", "\"ns16550a\""),
            refuser: Refuser::Monitor,
            expect: "console UART pl011@9000000 is ns16550a, which is not supported; supported: arm,pl011",
            reports: unreadable,
        },
        TreeDamage {
            name: "stdout-path to nowhere",
            edit: |t| dts::set_property(t, "/chosen", "stdout-path", "\"/serial@1234\""),
            refuser: Refuser::Monitor,
            expect: "/chosen/stdout-path = \"/serial@1234\" names no node",
            reports: unreadable,
        },
        TreeDamage {
            name: "no cpus",
            edit: |t| dts::remove_node(t, "/cpus"),
            refuser: Refuser::Monitor,
            expect: "device tree has no /cpus node",
            reports: unreadable,
        },
        TreeDamage {
            name: "no cpu nodes",
            edit: |t| {
                dts::remove_node(&dts::remove_node(&dts::remove_node(t, "/cpus/cpu@0"), "/cpus/cpu@1"), "/cpus/cpu-map")
            },
            refuser: Refuser::Monitor,
            expect: "device tree has no /cpus/cpu@* node",
            reports: unreadable,
        },
        TreeDamage {
            name: "cpu without reg",
            edit: |t| dts::remove_property(t, "/cpus/cpu@1", "reg"),
            refuser: Refuser::Monitor,
            expect: "cpu@1 has no `reg` property",
            reports: unreadable,
        },
        TreeDamage {
            name: "cpu reg beyond MPIDR",
            edit: |t| dts::set_property(t, "/cpus/cpu@1", "reg", "<0xff000000>"),
            refuser: Refuser::Monitor,
            expect: "has bits outside the MPIDR affinity fields",
            reports: unreadable,
        },
        TreeDamage {
            name: "boot CPU not listed",
            edit: |t| dts::set_property(t, "/cpus/cpu@0", "reg", "<0x02>"),
            refuser: Refuser::Monitor,
            expect: "the boot CPU (MPIDR 0x0) is not among the device tree's /cpus",
            reports: on_console,
        },
        TreeDamage {
            name: "cpu the machine lacks",
            edit: |t| dts::set_property(t, "/cpus/cpu@1", "reg", "<0x100>"),
            refuser: Refuser::Hypervisor,
            expect: "only 1 of the 2 CPUs in the device tree came up",
            reports: on_console,
        },
    ];
    let dir = scratch_dir("dt-defects");
    let good = qemu_dts(&dir, 2, "256M");
    for damage in &damages {
        let dtb = compile_dts(&dir, "damaged", &(damage.edit)(&good));
        let o = boot(&Boot { extra: &["-dtb", &dtb], ..Boot::new("dt-defect", CPU_MAX, 2, "256M") });
        assert_refused(&o, damage.name, damage.refuser, damage.expect, damage.reports);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The PCI shim presents each PrimeCell device the DTB has. With firmware
/// and ACPI on, QEMU's virt board replaces its Non-secure PL061 by an ACPI
/// event device; with `acpi=off` it keeps it, and both the RTC and the GPIO
/// become PCI functions.
#[test]
fn pci_shim_presents_each_primecell() {
    let o = boot(&Boot { machine_options: ",acpi=off", ..Boot::new("pci-acpi-off", CPU_MAX, 2, "1G") });
    assert_selftest_passed(&o, 2);
    let dump = o.dump();
    for line in [
        "el3-monitor: PCI shim: arm,pl031 at [0x9010000, 0x9011000) as 00:00.0, device ID 0x0031",
        "el3-monitor: PCI shim: arm,pl061 at [0x9030000, 0x9031000) as 00:01.0, device ID 0x0061",
    ] {
        assert!(o.console.lines().any(|l| l == line), "missing `{line}`\n{dump}");
    }
    assert!(o.lines("el2: PCI: ECAM window").any(|l| l.ends_with("2 function(s) behind it")), "{dump}");
    // The monitor's window for the external-abort path: the first 2 MiB
    // past 1 GiB of RAM at 0x4000_0000 (QEMU never routes the abort there,
    // so this checks only that the path is set up).
    let ea_line = "el3-monitor: PCI: external aborts in [0x80000000, 0x80200000) are served at EL3 (SCR_EL3.EA) as ECAM buses 0..=1";
    assert!(o.console.lines().any(|l| l == ea_line), "missing `{ea_line}`\n{dump}");

    // And without acpi=off, only the RTC.
    let o = boot(&Boot::new("pci-default", CPU_MAX, 1, "1G"));
    assert_selftest_passed(&o, 1);
    assert!(o.lines("el2: PCI: ECAM window").any(|l| l.ends_with("1 function(s) behind it")), "{}", o.dump());
}

/// The benchmark mode (`stub=bench`, what `make bench` runs) measures: under
/// `-icount` the cycle counter counts instructions, EL2's included, so a
/// backdoor round trip costs more than the guest's own SVC floor, which
/// costs more than nothing.
#[test]
fn benchmark_mode_counts_el2() {
    let o = boot(&Boot {
        cmdline: Some("stub=bench"),
        extra: &["-icount", "shift=0,sleep=off"],
        ..Boot::new("bench", CPU_MAX, 1, "1G")
    });
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "{dump}");
    let median = |name: &str| {
        o.lines(&format!("guest-stub: bench {name} median="))
            .next()
            .and_then(|l| l.split("median=").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no `{name}` measurement\n{dump}"))
    };
    let (empty, floor, brk, ecam) = (median("empty"), median("floor-svc"), median("brk-version"), median("ecam-read"));
    assert!(
        empty < floor && floor < brk && brk < ecam,
        "empty {empty} < floor {floor} < brk {brk} < ecam {ecam}\n{dump}"
    );
    // No hypercall holds the CPU: the worst SCAN call (the whole probe
    // budget on mapped pages, each a region) stays well under a
    // millisecond of -icount time, 1,000,000 instructions; its bound is in
    // docs/hypercalls.md (SCAN).
    let worst = o
        .lines("guest-stub: bench scan-worst-call median=")
        .next()
        .and_then(|l| l.split("max=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no `scan-worst-call` measurement\n{dump}"));
    assert!(worst < SCAN_CALL_INSTRUCTIONS_MAX, "one SCAN call took {worst} instructions\n{dump}");
    assert!(median("scan") > 0, "{dump}");
}

/// The most instructions one SCAN call may cost (docs/hypercalls.md, SCAN).
const SCAN_CALL_INSTRUCTIONS_MAX: u64 = 500_000;

/// A hostile guest run (`stub=hostile`): the tally line's four numbers
/// (operations, injected faults, error returns, hypervisor failures).
fn hostile_run(name: &str, mode: &str, seed: u64) -> [u64; 4] {
    let cmdline = format!("mode={mode} stub=hostile stub-seed={seed:#x}");
    let o = boot(&Boot { cmdline: Some(&cmdline), ..Boot::new(name, CPU_MAX, 4, "1G") });
    let dump = o.dump();
    assert!(o.console.contains(&format!("mode={mode}")), "{dump}");
    // Exit 0, every check passed (the ordinary ones after the hostile
    // operations), all four vCPUs up.
    assert_checks_passed(&o, 4, &Expected::hostile_run());
    let line = o
        .lines("guest-stub: hostile: ")
        .find(|l| l.contains(" operations, "))
        .unwrap_or_else(|| panic!("no hostile tally line\n{dump}"));
    let numbers: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let [ops, faults, errors, failures] = numbers[..] else { panic!("tally line {line:?}") };
    let expected = format!("guest-stub: hostile: {ops} operations, {faults} injected faults, {errors} error returns, 0 hypervisor failures");
    assert_eq!(line, expected, "{dump}");
    assert!(ops >= 10_000, "{ops} operations\n{dump}");
    // The hypervisor's code and read-only data, hashed at boot and at the
    // end: unchanged.
    let at_boot = o
        .lines("el2: integrity: text+rodata ")
        .find_map(|l| l.split("sha256 ").nth(1))
        .unwrap_or_else(|| panic!("no boot-time integrity line\n{dump}"));
    let at_end = format!("el2: integrity: text+rodata sha256 {at_boot} unchanged since boot");
    assert!(o.console.lines().any(|l| l == at_end), "missing `{at_end}`\n{dump}");
    [ops, faults, errors, failures]
}

/// A hostile guest (random calls, `BRK`s, debug registers, DCC,
/// every hole page, ECAM writes with BARs at the hypervisor's and the
/// secure world's memory, PSCI misuse) in both schemes on -smp 4 gets the
/// outcome the architecture or the ABI fixes for every operation, leaves
/// every vCPU alive and the hypervisor's code unchanged, and the ordinary
/// checks pass after it. The same seed gives the same run in both schemes.
#[test]
fn hostile_guest_in_both_schemes() {
    let seed = 0x5eed_0010;
    let vhe = hostile_run("hostile-vhe", "vhe", seed);
    let nvhe = hostile_run("hostile-nvhe", "nvhe", seed);
    assert_eq!(vhe, nvhe, "the same seed must make the same operations with the same outcomes");
}

/// An unmodified Debian kernel with a busybox initramfs boots under the
/// hypervisor to userspace on every vCPU, sees the ECAM shim function,
/// takes timer interrupts on every CPU, logs nothing the hypervisor caused,
/// and `poweroff -f` ends QEMU with status 0.
fn linux_guest_boots(name: &str, cpu: &str, cmdline: Option<&str>, mode: &str) {
    linux_guest_boots_on(name, cpu, cmdline, mode, Gic::V3);
}

/// The host's GIC in a scenario (QEMU virt's `gic-version`): a guest gets
/// the same.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gic {
    V2,
    V3,
}

impl Gic {
    /// The `-M virt` option.
    fn machine_option(self) -> &'static str {
        match self {
            Self::V2 => ",gic-version=2",
            Self::V3 => ",gic-version=3",
        }
    }

    /// The `compatible` the guest's DT gives its interrupt controller.
    fn guest_compatible(self) -> &'static str {
        match self {
            Self::V2 => "arm,cortex-a15-gic",
            Self::V3 => "arm,gic-v3",
        }
    }
}

fn linux_guest_boots_on(name: &str, cpu: &str, cmdline: Option<&str>, mode: &str, gic: Gic) {
    let (image, initrd) = match hvtests::linux::guest() {
        Ok(files) => files,
        Err(why) => {
            eprintln!("SKIPPED {name}: the Linux guest is not in build/linux ({why})");
            return;
        }
    };
    let (image, initrd) = (image.to_string_lossy().into_owned(), initrd.to_string_lossy().into_owned());
    let extra =
        ["-kernel", image.as_str(), "-initrd", initrd.as_str(), "-append", "console=ttyAMA0 linux-guest=poweroff"];
    let machine_options = gic.machine_option();
    let o = boot(&Boot { cmdline, extra: &extra, machine_options, ..Boot::new(name, cpu, 4, "1G") });
    let dump = o.dump();
    assert_eq!(o.status, Some(0), "poweroff must end QEMU with status 0\n{dump}");
    assert!(o.console.contains(&format!("mode={mode}")), "{dump}");
    let intc = format!("linux-guest: interrupt controller {}", gic.guest_compatible());
    assert!(o.console.lines().any(|l| l == intc), "missing `{intc}`\n{dump}");
    assert!(o.console.contains("el2: entering Linux at IPA"), "{dump}");
    assert!(o.lines("linux-guest: userspace up").next().is_some(), "{dump}");
    assert!(o.lines("linux-guest: nproc 4").next().is_some(), "nproc must equal the vCPU count\n{dump}");
    let pci: Vec<_> = o.lines("linux-guest: pci 0000:00:00.0 0x13b5:0x0031").collect();
    assert_eq!(pci.len(), 1, "the PL031 shim function must be listed\n{dump}");
    let irq = pci[0].rsplit(" irq ").next().and_then(|n| n.trim().parse::<u32>().ok());
    assert!(irq.is_some_and(|n| n != 0), "the interrupt-map must give it an interrupt: {}\n{dump}", pci[0]);
    if let Err(why) = hvtests::linux::check_timers_rose(&o.console, 4) {
        panic!("{why}\n{dump}");
    }
    for bad in ["WARNING:", "BUG:", "Oops", "failed to come online", "Call trace", "GIC: ", "arch_timer: WARNING"] {
        assert!(!o.console.contains(bad), "the kernel log has `{bad}`\n{dump}");
    }
    assert!(!o.console.contains("el2: WARN: guest trap"), "a trap the hypervisor did not handle\n{dump}");
    assert_eq!(o.lines(WATCHDOG_REPORT).count(), 0, "no CPU may stall at EL2 (hvctl scan included)\n{dump}");
    long_scans_complete_in_pieces(&o, &dump);
    linux_sees_the_pci_shim(&o, &dump);
    hvctl_works_from_linux_userspace(&o, mode, &dump);
    debugging_as_on_bare_qemu(&o, name, cpu, gic, &image, &initrd, &dump);
}

/// Long scans: `hvctl scan --layout wide` as root (33 mappings of 512
/// MiB, a page touched every 2 MiB) and `--layout sparse` as nobody (1000
/// pages 1 MiB apart) complete, each through many bounded `SCAN` calls,
/// and find at least every page they touched as a region of its own
/// (with no lockup report, which the caller checks).
fn long_scans_complete_in_pieces(o: &Outcome, dump: &str) {
    for (name, exit) in
        [("wide", "linux-guest: hvctl scan wide exit 0"), ("sparse", "linux-guest: hvctl scan sparse as nobody exit 0")]
    {
        assert!(o.lines(exit).next().is_some(), "`{exit}` missing\n{dump}");
        let touched_line = format!("hvctl: built layout {}{}: ", name[..1].to_uppercase(), &name[1..]);
        let touched: u64 = o
            .lines(&touched_line)
            .next()
            .and_then(|l| l[touched_line.len()..].split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{touched_line}` line\n{dump}"));
        let expected = match name {
            "wide" => hvctl::WIDE_MAPPINGS * (hvctl::WIDE_SIZE / hvctl::WIDE_STRIDE),
            _ => hvctl::SPARSE_PAGES,
        };
        assert_eq!(touched, expected, "{name}: pages touched\n{dump}");
    }
    // The scan summaries of the three hvctl scans, in order: --maps, wide,
    // sparse.
    let regions: Vec<u64> = o
        .lines("hvctl: scan of this process (TTBR0 range): ")
        .filter_map(|l| l.rsplit(": ").next()?.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(regions.len(), 3, "three scan summaries\n{dump}");
    assert!(regions[1] >= hvctl::WIDE_MAPPINGS * (hvctl::WIDE_SIZE / hvctl::WIDE_STRIDE), "wide: {regions:?}\n{dump}");
    assert!(regions[2] >= hvctl::SPARSE_PAGES, "sparse: {regions:?}\n{dump}");
}

/// `dbgtest` (tests/linux/dbgtest: ptrace single-step, a hardware
/// breakpoint and watchpoint, `BRK`, an AArch32 `BKPT`, as user nobody)
/// prints exactly what the same kernel and initramfs print on bare QEMU
/// with the same CPU and GIC, and every result is there.
fn debugging_as_on_bare_qemu(o: &Outcome, name: &str, cpu: &str, gic: Gic, image: &str, initrd: &str, dump: &str) {
    let under_hv: Vec<&str> = o.lines("dbgtest: ").collect();
    assert!(o.lines("linux-guest: dbgtest exit 0").next().is_some(), "dbgtest failed\n{dump}");
    for result in ["singlestep: ", "breakpoint: ", "watchpoint: ", "brk: ", "aarch32-bkpt: ", "done"] {
        let line = format!("dbgtest: {result}");
        assert!(under_hv.iter().any(|l| l.starts_with(&line)), "no `{line}` line\n{dump}");
    }
    // Named after the scenario: two scenarios on one CPU run side by side.
    let dir = scratch_dir(&format!("bare-{name}"));
    let console = dir.join("console.log");
    let status = hvtests::qemu::command()
        .args(["-M", &format!("virt{}", gic.machine_option())])
        .args(["-cpu", cpu, "-smp", "4", "-m", "1G", "-display", "none", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args(["-kernel", image, "-initrd", initrd, "-append", "console=ttyAMA0 linux-guest=poweroff"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run bare QEMU");
    let bare = String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).replace('\r', "");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "bare QEMU with the Linux guest: {status:?}\n{bare}");
    let on_bare: Vec<&str> = bare.lines().filter(|l| l.starts_with("dbgtest: ")).collect();
    assert_eq!(under_hv, on_bare, "dbgtest under the hypervisor (left) and on bare QEMU (right)\n{dump}");
}

/// QEMU virt's PL031 RTC window (hw/arm/virt.c, `VIRT_RTC`).
const VIRT_PL031: std::ops::Range<u64> = 0x0901_0000..0x0901_1000;

/// The PCI shim seen from Linux: the shim function's BAR0 is the PL031's own
/// window, a `devmem` read of its data register there is the current time
/// (QEMU's RTC follows the host clock), and `uio_pci_generic` binds to it
/// after `new_id`.
fn linux_sees_the_pci_shim(o: &Outcome, dump: &str) {
    let bar0 = o.lines("linux-guest: pci 0000:00:00.0 bar0 ").next().unwrap_or_else(|| panic!("no BAR0 line\n{dump}"));
    let fields: Vec<u64> = bar0.split_whitespace().skip(4).filter_map(hvctl::parse_hex).collect();
    assert_eq!(
        fields.get(..2),
        Some(&[VIRT_PL031.start, VIRT_PL031.end - 1][..]),
        "BAR0 must be the PL031's window: {bar0}"
    );
    let rtc = o.lines("linux-guest: rtc-devmem ").next().unwrap_or_else(|| panic!("no devmem read\n{dump}"));
    let seconds = rtc
        .split_whitespace()
        .last()
        .and_then(|w| u64::from_str_radix(w.trim_start_matches("0x").trim_start_matches("0X"), 16).ok());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // The read happened during this boot, which lasted less than TIMEOUT.
    assert!(
        seconds.is_some_and(|s| s <= now + 1 && now - s <= TIMEOUT.as_secs()),
        "the RTC data register through BAR0 must read the current time ({now}): {rtc}\n{dump}"
    );
    let driver =
        o.lines("linux-guest: pci 0000:00:00.0 driver ").next().unwrap_or_else(|| panic!("no driver bound\n{dump}"));
    assert!(driver.trim_end().ends_with("driver uio_pci_generic uio0"), "uio_pci_generic must bind: {driver}\n{dump}");
}

/// The backdoor from Linux userspace: `hvctl`, an EL0 process, reaches the
/// backdoor. `info` names the mode; `console` text comes out as a `guest:`
/// line; every range `scan --maps` reports lies inside the process's own
/// `/proc/self/maps` entries, and the scan found the text, stack and heap
/// pages hvctl touched.
fn hvctl_works_from_linux_userspace(o: &Outcome, mode: &str, dump: &str) {
    let info = o.lines("hvctl: hypervisor ABI 1.").next().unwrap_or_else(|| panic!("no hvctl info\n{dump}"));
    assert!(info.contains(&format!("mode {mode}, 4 CPUs")), "{info}\n{dump}");
    assert!(o.lines("guest: hello from Linux userspace").next().is_some(), "hvctl console text\n{dump}");
    assert!(o.lines("linux-guest: hvctl scan exit 0").next().is_some(), "hvctl scan failed\n{dump}");
    let regions: Vec<(u64, u64)> = o
        .lines(hvctl::REGION_PREFIX)
        .map(|l| {
            hvctl::parse_region_range(&l[hvctl::REGION_PREFIX.len()..])
                .unwrap_or_else(|| panic!("bad region line {l:?}"))
        })
        .collect();
    let maps: Vec<hvctl::MapsEntry> =
        o.lines(hvctl::MAPS_PREFIX).filter_map(|l| hvctl::MapsEntry::parse(&l[hvctl::MAPS_PREFIX.len()..])).collect();
    assert!(regions.len() >= 3 && maps.len() >= 3, "{} regions, {} maps entries\n{dump}", regions.len(), maps.len());
    for &(first, last) in &regions {
        assert!(
            hvctl::covering(&maps, first, last),
            "scanned {first:#x}..={last:#x} is outside /proc/self/maps\n{dump}"
        );
    }
    let touched = o
        .lines(hvctl::TOUCHED_PREFIX)
        .find_map(|l| hvctl::Touched::parse(&l[hvctl::TOUCHED_PREFIX.len()..]))
        .unwrap_or_else(|| panic!("no touched line\n{dump}"));
    for (what, address) in touched.iter() {
        assert!(
            regions.iter().any(|&(first, last)| (first..=last).contains(&address)),
            "the scan missed hvctl's touched {what} page at {address:#x}\n{dump}"
        );
    }
}

#[test]
fn linux_guest_boots_vhe() {
    linux_guest_boots("linux-vhe", CPU_MAX, None, "vhe");
}

#[test]
fn linux_guest_boots_nvhe() {
    linux_guest_boots("linux-nvhe", CPU_A72, None, "nvhe");
}

/// The same kernel on a GICv2 host, with a virtual GICv2.
#[test]
fn linux_guest_boots_on_gicv2() {
    linux_guest_boots_on("linux-gicv2", CPU_A72, None, "nvhe", Gic::V2);
}

/// The Linux guest from the firmware package: `build/flash.bin` with the
/// kernel, the initramfs and both command lines added to its package (what
/// `mkflash --linux-kernel ... --hv-cmdline ...` writes), booted without
/// `-kernel`. The monitor copies them next to the hypervisor, which takes
/// its command line from the package and boots the package's kernel to
/// userspace on every vCPU. Then the precedence rules, in quick refusals:
/// QEMU's `-kernel` (here not an Image) is booted rather than the
/// package's, and fw_cfg's command line is taken rather than the
/// package's; and a RAM too small for the hypervisor's block with the
/// Linux guest in it is refused by the monitor, naming what it holds.
#[test]
fn linux_guest_boots_from_the_package() {
    let name = "linux-package";
    let (image, initrd) = match hvtests::linux::guest() {
        Ok(files) => files,
        Err(why) => {
            eprintln!("SKIPPED {name}: the Linux guest is not in build/linux ({why})");
            return;
        }
    };
    let read = |path: &Path| std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (kernel, initramfs) = (read(&image), read(&initrd));
    let extras = hvtests::flash::Extras {
        linux_kernel: Some(kernel.clone()),
        linux_initrd: Some(initramfs.clone()),
        linux_cmdline: Some("console=ttyAMA0 linux-guest=poweroff".into()),
        hv_cmdline: Some("mode=nvhe".into()),
    };
    let image = hvtests::flash::repack(&read(flash()), &extras).expect("flash.bin with the Linux guest");
    let dir = scratch_dir(&format!("{name}-image"));
    let with_linux = dir.join("flash.bin");
    std::fs::write(&with_linux, &image.bytes).expect("write the image");

    let o = boot(&Boot { flash: with_linux.clone(), ..Boot::new(name, CPU_MAX, 4, "1G") });
    let dump = o.dump();
    assert!(
        o.secure.contains(&format!("el3-monitor: package's Linux kernel ({:#x} bytes) copied to PA", kernel.len())),
        "{dump}"
    );
    for line in [
        "el2: command line (firmware package hv-cmdline): `mode=nvhe`".to_string(),
        format!(
            "el2: Linux guest from the firmware package: kernel {:#x} bytes, initrd {:#x} bytes",
            kernel.len(),
            initramfs.len()
        ),
        "linux-guest: userspace up".to_string(),
        "linux-guest: nproc 4".to_string(),
        "linux-guest: interrupt controller arm,gic-v3".to_string(),
    ] {
        assert!(o.console.lines().any(|l| l == line), "missing `{line}`\n{dump}");
    }
    assert!(o.console.contains("mode=nvhe"), "the package's command line is in force\n{dump}");
    let entering = o.lines("el2: entering Linux at IPA ").next().unwrap_or_else(|| panic!("Linux not entered\n{dump}"));
    assert!(entering.ends_with("command line `console=ttyAMA0 linux-guest=poweroff`"), "{entering}\n{dump}");
    if let Err(why) = hvtests::linux::check_timers_rose(&o.console, 4) {
        panic!("{why}\n{dump}");
    }
    if let Some(bad) = hvtests::linux::bad_line(&o.console) {
        panic!("the kernel log has `{bad}`\n{dump}");
    }
    assert_eq!(o.status, Some(0), "Linux's power-off ends QEMU with status 0\n{dump}");

    // QEMU's -kernel and fw_cfg's command line win over the package's.
    let not_an_image = dir.join("not-an-image");
    let mut bytes = vec![0u8; 4096];
    bytes[..4].copy_from_slice(&[0x1f, 0x8b, 0x08, 0x00]);
    std::fs::write(&not_an_image, &bytes).unwrap();
    let not_an_image = not_an_image.to_string_lossy().into_owned();
    let o = boot(&Boot {
        flash: with_linux.clone(),
        cmdline: Some("log=info"),
        extra: &["-kernel", &not_an_image],
        ..Boot::new("linux-package-precedence", CPU_MAX, 1, "256M")
    });
    let dump = o.dump();
    for line in [
        "el2: command line (fw_cfg opt/hv/cmdline): `log=info`",
        "el2: QEMU's -kernel is booted, not the firmware package's Linux kernel",
    ] {
        assert!(o.console.lines().any(|l| l == line), "missing `{line}`\n{dump}");
    }
    let what = "-kernel over the package's";
    assert_refused(
        &o,
        what,
        Refuser::Hypervisor,
        "Linux guest refused: kernel has no arm64 Image magic",
        &[Report::Console],
    );

    // The block does not fit in 32 MiB with the Linux guest in it.
    let o = boot(&Boot { flash: with_linux, ..Boot::new("linux-package-no-room", CPU_MAX, 1, "32M") });
    let expect = "RAM too small for the hypervisor: it needs 0x";
    assert_refused(&o, "32M with the Linux guest", Refuser::Monitor, expect, &[Report::Console]);
    let refusal = o.lines("el3-monitor: ERROR: ").next().unwrap_or_default();
    let kernel_part = format!("linux-kernel {:#x}, ", kernel.len().next_multiple_of(4096));
    assert!(refusal.contains(&kernel_part), "the refusal names what the block holds: {refusal}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `-kernel` that is not an arm64 Image is refused with one clear line
/// and the hypervisor's failure status, at once: nothing runs at EL1.
#[test]
fn linux_kernel_without_image_magic_refused() {
    let dir = scratch_dir("bad-kernel");
    let kernel = dir.join("not-an-image");
    let mut bytes = vec![0u8; 4096];
    bytes[..4].copy_from_slice(&[0x1f, 0x8b, 0x08, 0x00]); // a gzip header
    std::fs::write(&kernel, &bytes).unwrap();
    let kernel = kernel.to_string_lossy().into_owned();
    let o = boot(&Boot { extra: &["-kernel", &kernel], ..Boot::new("bad-kernel", CPU_MAX, 1, "256M") });
    let dump = o.dump();
    assert_eq!(o.status, Some(2), "the hypervisor's fatal status\n{dump}");
    let line = o.lines("el2: ERROR: Linux guest refused: ").next().unwrap_or_else(|| panic!("no refusal\n{dump}"));
    assert!(line.contains("no arm64 Image magic"), "{line}");
    assert!(line.contains("compressed"), "the message suggests why: {line}");
    assert!(o.elapsed < REFUSAL_DEADLINE, "refused in {:?}\n{dump}", o.elapsed);
    assert!(o.lines("guest-stub:").next().is_none(), "{dump}");
}

/// An arm64 Image header (and nothing else) whose `image_size` is
/// `image_size`: enough for the hypervisor's checks and placement.
fn image_with_size(image_size: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 4096];
    bytes[16..24].copy_from_slice(&image_size.to_le_bytes());
    bytes[24..32].copy_from_slice(&0xa_u64.to_le_bytes()); // little-endian, 4 KiB pages
    bytes[0x38..0x3c].copy_from_slice(b"ARM\x64");
    bytes
}

/// A kernel whose `image_size` exceeds RAM, and an initrd larger than RAM
/// (a sparse file), are refused by the hypervisor with one line each.
#[test]
fn linux_kernel_or_initrd_larger_than_ram_refused() {
    let dir = scratch_dir("too-large");
    let (huge, small) = (dir.join("huge-image"), dir.join("small-image"));
    std::fs::write(&huge, image_with_size(1 << 30)).unwrap();
    std::fs::write(&small, image_with_size(0x10_0000)).unwrap();
    let initrd = dir.join("initrd");
    std::fs::File::create(&initrd).unwrap().set_len(300 << 20).unwrap();
    let (huge, small, initrd) = (huge.display().to_string(), small.display().to_string(), initrd.display().to_string());
    let kernel_too_large = ["-kernel", huge.as_str()];
    let initrd_too_large = ["-kernel", small.as_str(), "-initrd", initrd.as_str()];
    let cases: [(&str, &[&str], &str); 2] = [
        (
            "kernel too large",
            &kernel_too_large,
            "Linux guest refused: kernel is too large for guest RAM: its image_size 0x40000000",
        ),
        (
            "initrd too large",
            &initrd_too_large,
            "Linux guest refused: initrd is too large for guest RAM: it is 0x12c00000 bytes",
        ),
    ];
    for (what, extra, expect) in cases {
        let o = boot(&Boot { extra, ..Boot::new("too-large-boot", CPU_MAX, 2, "256M") });
        assert_refused(&o, what, Refuser::Hypervisor, expect, &[Report::Console]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// More CPUs than the hypervisor supports (`platform::board::MAX_CPUS`,
/// 16): QEMU's tree lists them all, and the monitor refuses it.
#[test]
fn more_cpus_than_supported_refused() {
    for smp in [17, 64] {
        let o = boot(&Boot::new("too-many-cpus", CPU_MAX, smp, "1G"));
        let expect = "device tree has more CPUs than this firmware holds (16)";
        assert_refused(&o, &format!("-smp {smp}"), Refuser::Monitor, expect, &[Report::Console, Report::Stderr]);
    }
}

/// RAM too small: for the hypervisor's own block (the monitor refuses), or
/// for its heap and a guest (the hypervisor refuses).
#[test]
fn ram_too_small_refused() {
    let cases = [
        ("1M", Refuser::Monitor, "RAM too small for the hypervisor: it needs"),
        ("32M", Refuser::Hypervisor, "RAM too small: the largest free RAM region is"),
    ];
    for (mem, refuser, expect) in cases {
        let o = boot(&Boot::new("ram-too-small", CPU_MAX, 1, mem));
        assert_refused(&o, &format!("-m {mem}"), refuser, expect, &[Report::Console]);
    }
}

/// The guest-stub's debug checks (a breakpoint at EL1 with the kernel's
/// debug exceptions on, the same breakpoint masked, a step armed at EL1 on
/// the way to EL0, an AArch32 `BKPT`) under the hypervisor in both schemes
/// and on bare QEMU, where EL1 is the debug target: the same outcome,
/// check by check. Under the hypervisor `MDCR_EL2.TDE` takes every debug
/// exception to EL2, which must give the guest what bare metal gives it.
#[test]
fn debug_exceptions_as_on_bare_qemu() {
    let expected = Expected::only("debug-");
    assert_eq!(expected.plan.len(), 4, "the debug checks: {:?}", expected.plan);
    for (name, cpu, mode) in [("debug-vhe", CPU_MAX, "vhe"), ("debug-nvhe", CPU_A72, "nvhe")] {
        let cmdline = format!("mode={mode} stub=only=debug-");
        let o = boot(&Boot { cmdline: Some(&cmdline), ..Boot::new(name, cpu, 1, "1G") });
        assert_eq!(o.status, Some(0), "{}", o.dump());
        selftest::account(&o.console, &expected).unwrap_or_else(|problems| panic!("{problems:?}\n{}", o.dump()));
    }
    // Bare QEMU: the stub flattened (it relocates itself) and loaded as a
    // raw kernel at EL1, with the DTB in x0.
    let elf = workspace().join("target/aarch64-unknown-none/release/guest-stub");
    let bytes = std::fs::read(&elf).unwrap_or_else(|e| panic!("{}: {e} (make image builds it)", elf.display()));
    let image = hvtests::elf::flatten_pie(&bytes).expect("flatten the guest-stub");
    let dir = scratch_dir("debug-bare");
    let raw = dir.join("guest-stub.bin");
    std::fs::write(&raw, &image.bytes).expect("write the flattened stub");
    let raw = raw.display().to_string();
    for cpu in [CPU_MAX, CPU_A72] {
        let mut qemu = hvtests::qemu::command();
        let output = qemu
            .args(["-M", "virt,gic-version=3", "-cpu", cpu, "-smp", "1", "-m", "1G", "-display", "none"])
            .args(["-monitor", "none", "-serial", "stdio", "-semihosting", "-kernel", &raw])
            .args(["-append", "stub=only=debug-"])
            .stdin(Stdio::null())
            .output()
            .expect("run bare QEMU");
        let console = String::from_utf8_lossy(&output.stdout).replace('\r', "");
        assert!(output.status.success(), "bare QEMU on {cpu}: {:?}\n{console}", output.status);
        selftest::account(&console, &expected)
            .unwrap_or_else(|problems| panic!("bare QEMU on {cpu}: {problems:?}\n{console}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CPU the firmware cannot run on is named, with what it needs: QEMU's
/// `virt` with `virtualization=off` (after the harness's `on`) gives CPUs
/// without EL2, and the monitor stops with one line instead of returning
/// to an EL2 that is not there (which hung, silently).
#[test]
fn an_unsupported_cpu_is_named() {
    let o = boot(&Boot { machine_options: ",virtualization=off", ..Boot::new("no-el2-named", CPU_A72, 2, "1G") });
    let dump = o.dump();
    let line = "el3-monitor: ERROR: CPU MPIDR 0x0 (MIDR 0x410fd083) implements no EL2, where the hypervisor runs; \
                supported: AArch64 CPUs with EL3 and EL2 (on QEMU: -M ...,virtualization=on) \
                (fatal: stopping with exit status 3)";
    assert!(o.console.lines().any(|l| l == line), "missing `{line}`\n{dump}");
    assert_eq!(o.status, Some(3), "the monitor's fatal status\n{dump}");
    assert!(!o.console.contains("el2:"), "the hypervisor never starts\n{dump}");
}

/// A GICv2 host (QEMU `virt` with `gic-version=2`, which has the
/// virtualisation extensions' frames): the monitor and the hypervisor
/// drive it, and the guest-stub, on a virtual GICv2, passes every check,
/// interrupts included (timer, SGIs, priorities, PNMI preemption and the
/// watchdog). Split mode on both CPUs, which lack VHE.
fn gicv2_scenario(name: &str, cpu: &str) {
    let o = boot(&Boot { machine_options: Gic::V2.machine_option(), ..Boot::new(name, cpu, 4, "1G") });
    assert_selftest_passed(&o, 4);
    assert_boot_line(&o, "nvhe", "intermediate");
    let line = "el2: GIC v2 (arm,cortex-a15-gic) at 0x8000000;";
    assert!(o.console.lines().any(|l| l.starts_with(line)), "missing `{line}`\n{}", o.dump());
}

#[test]
fn gicv2_cortex_a72() {
    gicv2_scenario("gicv2-a72", CPU_A72);
}

#[test]
fn gicv2_cortex_a53() {
    gicv2_scenario("gicv2-a53", "cortex-a53");
}
