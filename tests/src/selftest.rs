//! What the runner expects of a guest-stub run, by name, and the
//! accounting of a console log against it.
//!
//! The expected names are written here, apart from the stub's own table
//! (`guest-stub/src/checks.rs`), on purpose: a check that disappears from
//! the table, is renamed, is skipped or never reports is then caught by
//! name, where a count of passes would not notice. Adding a check means
//! adding its name here too. The lines are read with
//! [`platform::report::Line`], the stub's own format.

use platform::report::{Line, PREFIX};

/// The checks of a default guest-stub run, in the stub's order.
pub const DEFAULT_CHECKS: &[&str] = &[
    "el1-entry",
    "psci-version",
    "smccc-version",
    "hvc-unknown-not-supported",
    "smc-trapped-to-el2",
    "stage2-hole-aborts",
    "isolation-holes",
    "hv-identity-unmapped",
    "prda-per-cpu",
    "el0-service",
    "el0-service-fault-contained",
    "brk-backdoor-version",
    "brk-backdoor-console",
    "brk-backdoor-bad-pointer",
    "brk-reflect",
    "brk-el0-policy",
    "dcc-hypercall",
    "dcc-console",
    "hvc-psci-version",
    "smc-unknown-not-supported",
    "vendor-uid",
    "mmio-emulated-read-write",
    "mmio-isv0-injects-abort",
    "gva-scan-known-map",
    "gva-scan-probes",
    "gva-scan-bad-buffer",
    "gva-scan-resume",
    "pci-enumerate",
    "pci-bar-sizing",
    "pci-readonly-fields",
    "pci-bad-access",
    "pci-bar-reads-device",
    "pci-bar-move",
    "debug-breakpoint-reflected",
    "debug-breakpoint-masked-at-el1",
    "debug-step-armed-at-el1",
    "debug-bkpt-aarch32",
    "virq-timer",
    "virq-sgi",
    "virq-priority",
    "virq-disable-withdraws",
    "virq-no-loss",
    "pnmi-preempts-irq",
    "pnmi-watchdog",
];

/// `stub=hostile` runs these first, then [`DEFAULT_CHECKS`].
pub const HOSTILE_CHECKS: &[&str] = &["hostile", "hostile-vcpus-alive"];

/// A restarted guest-stub (one of several VMs, after `SYSTEM_RESET`) runs
/// this first.
pub const RESTART_CHECK: &str = "restart-memory-cleared";

/// `stub=only=sched` runs these: the scheduler's checks, not part of the
/// default run (`sched-spi-wake` alone waits two seconds for the RTC).
pub const SCHED_CHECKS: &[&str] = &["sched-timer-late", "sched-timer-wake", "sched-sgi-wake", "sched-spi-wake"];

/// `stub=only=portal` runs these: the portal checks, not part of the
/// default run (they need two VMs that are the ends of one portal).
pub const PORTAL_CHECKS: &[&str] = &[
    "portal-enumerate",
    "portal-isolation",
    "portal-ping-pong",
    "portal-shared-memory",
    "portal-refused",
    "portal-peer-down",
];

/// The portal check end 0 skips: it powers off instead, for end 1 to find
/// it off.
pub const PORTAL_END0_SKIPS: &str = "portal-peer-down";

/// `stub=only=virtio` runs these: the forwarded-virtio checks, not part of
/// the default run (they need a client VM and its service VM at once).
pub const VIRTIO_CHECKS: &[&str] = &[
    "virtio-find",
    "virtio-identity",
    "virtio-scratch",
    "virtio-hostile",
    "virtio-interrupt",
    "virtio-ram",
    "virtio-smp",
    "virtio-done",
    "virtio-service-death",
];

/// The virtio check the service skips: it powers off instead, for the
/// client to find its devices failed.
pub const VIRTIO_SERVICE_SKIPS: &str = "virtio-service-death";

/// `stub=only=hvvirtio` runs these: a hostile virtio-blk driver's checks
/// against a Linux service VM's `hvvirtio` (`guest-stub/src/vqueue.rs`),
/// not part of the default run.
pub const HVVIRTIO_CHECKS: &[&str] =
    &["hvvirtio-find", "hvvirtio-read", "hvvirtio-queue-outside", "hvvirtio-buffer-outside"];

/// `stub=fail` appends this check, which must fail.
pub const FORCED_FAILURE: &str = "forced-failure";

/// What a run must report: its plan, in order, and the outcome of each
/// planned check.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// Every check, in the order the stub runs them.
    pub plan: Vec<String>,
    /// The checks of [`Expected::plan`] that must fail.
    pub failing: Vec<String>,
    /// The checks of [`Expected::plan`] that must be skipped; all others
    /// pass.
    pub skipped: Vec<String>,
}

impl Expected {
    /// A default run: every check of [`DEFAULT_CHECKS`] passes.
    pub fn default_run() -> Self {
        Self::passing(DEFAULT_CHECKS.iter().copied())
    }

    /// A `stub=hostile` run.
    pub fn hostile_run() -> Self {
        Self::passing(HOSTILE_CHECKS.iter().chain(DEFAULT_CHECKS).copied())
    }

    /// A `stub=fail` run: the default checks pass, [`FORCED_FAILURE`] fails.
    pub fn forced_failure_run() -> Self {
        let mut expected = Self::passing(DEFAULT_CHECKS.iter().copied().chain([FORCED_FAILURE]));
        expected.failing.push(FORCED_FAILURE.to_string());
        expected
    }

    /// A `stub=only=<prefix>` run: the default checks whose names start
    /// with `prefix`.
    pub fn only(prefix: &str) -> Self {
        Self::passing(DEFAULT_CHECKS.iter().copied().filter(|name| name.starts_with(prefix)))
    }

    /// A `stub=only=sched` run: every check of [`SCHED_CHECKS`] passes.
    pub fn sched() -> Self {
        Self::passing(SCHED_CHECKS.iter().copied())
    }

    /// A `stub=only=<prefix>` run of the scheduler's checks.
    pub fn only_sched(prefix: &str) -> Self {
        Self::passing(SCHED_CHECKS.iter().copied().filter(|name| name.starts_with(prefix)))
    }

    /// A `stub=only=portal` run in the VM at end `end` (0 or 1) of a
    /// portal: every check of [`PORTAL_CHECKS`] passes, but end 0 skips
    /// [`PORTAL_END0_SKIPS`].
    pub fn portal_end(end: u8) -> Self {
        let mut expected = Self::passing(PORTAL_CHECKS.iter().copied());
        if end == 0 {
            expected.skipped.push(PORTAL_END0_SKIPS.to_string());
        }
        expected
    }

    /// A `stub=only=portal stub=portals=0` run, in a VM that is no end:
    /// `portal-enumerate` (finding none) and `portal-isolation` pass, the
    /// others are skipped (no portal).
    pub fn portal_none() -> Self {
        let mut expected = Self::passing(PORTAL_CHECKS.iter().copied());
        expected.skipped = PORTAL_CHECKS[2..].iter().map(|name| name.to_string()).collect();
        expected
    }

    /// A `stub=only=virtio` run in a client VM (of at least two vCPUs):
    /// every check of [`VIRTIO_CHECKS`] passes.
    pub fn virtio_client() -> Self {
        Self::passing(VIRTIO_CHECKS.iter().copied())
    }

    /// A `stub=only=virtio` run in the service VM of a client of at least
    /// two vCPUs: every check passes but [`VIRTIO_SERVICE_SKIPS`], skipped.
    pub fn virtio_service() -> Self {
        let mut expected = Self::passing(VIRTIO_CHECKS.iter().copied());
        expected.skipped.push(VIRTIO_SERVICE_SKIPS.to_string());
        expected
    }

    /// A `stub=only=hvvirtio` run in a client VM of a Linux service VM:
    /// every check of [`HVVIRTIO_CHECKS`] passes.
    pub fn hvvirtio_client() -> Self {
        Self::passing(HVVIRTIO_CHECKS.iter().copied())
    }

    /// A default run after a restart: [`RESTART_CHECK`] first.
    pub fn restarted_run() -> Self {
        Self::passing([RESTART_CHECK].into_iter().chain(DEFAULT_CHECKS.iter().copied()))
    }

    /// A default run in one of several VMs, which has no PCI host bridge:
    /// the PCI checks are skipped.
    pub fn without_pci(mut self) -> Self {
        self.skipped = self.plan.iter().filter(|name| name.starts_with("pci-")).cloned().collect();
        self
    }

    fn passing<'a>(names: impl Iterator<Item = &'a str>) -> Self {
        Self { plan: names.map(str::to_string).collect(), failing: Vec::new(), skipped: Vec::new() }
    }
}

/// What [`account`] found: how many passed and failed, as the summary
/// said and as the result lines agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
}

/// Holds a guest-stub console log to `expected`: exactly one plan, equal
/// to the expected plan; exactly one result line per planned check, PASS
/// FAIL or SKIP as expected; no result for an unplanned check;
/// and a summary that agrees. Every problem is listed by check name.
pub fn account(console: &str, expected: &Expected) -> Result<Tally, Vec<String>> {
    let mut problems = Vec::new();
    let mut plans = Vec::new();
    let mut results: Vec<(&str, Line)> = Vec::new();
    let mut summaries = Vec::new();
    for line in console.lines().filter_map(|l| l.strip_prefix(PREFIX)).filter_map(Line::parse) {
        match line {
            Line::Plan(names) => plans.push(Line::plan_names(names).collect::<Vec<_>>()),
            Line::Pass(name) | Line::Fail { name, .. } | Line::Skip { name, .. } => results.push((name, line)),
            Line::Summary { .. } => summaries.push(line),
        }
    }

    match plans.as_slice() {
        [plan] => {
            for name in &expected.plan {
                if !plan.contains(&name.as_str()) {
                    problems.push(format!("check `{name}` is not in the stub's plan"));
                }
            }
            for name in plan {
                if !expected.plan.iter().any(|e| e == name) {
                    problems.push(format!("check `{name}` is in the stub's plan but not expected"));
                }
            }
            let expected_order: Vec<&str> = expected.plan.iter().map(String::as_str).collect();
            if problems.is_empty() && *plan != expected_order {
                problems.push(format!("the stub's plan runs the checks in another order: {plan:?}"));
            }
        }
        [] => problems.push("the stub printed no plan (`checks: ...` line)".to_string()),
        more => problems.push(format!("the stub printed {} plans", more.len())),
    }

    let mut tally = Tally { passed: 0, failed: 0, skipped: 0 };
    for name in &expected.plan {
        let reported: Vec<&Line> = results.iter().filter(|(n, _)| n == name).map(|(_, l)| l).collect();
        let must_fail = expected.failing.contains(name);
        let must_skip = expected.skipped.contains(name);
        match reported.as_slice() {
            [] => problems.push(format!("check `{name}` never reported")),
            [Line::Skip { .. }] if must_skip => tally.skipped += 1,
            [_] if must_skip => problems.push(format!("check `{name}` ran but must be skipped")),
            [Line::Pass(_)] if !must_fail => tally.passed += 1,
            [Line::Fail { .. }] if must_fail => tally.failed += 1,
            [Line::Pass(_)] => problems.push(format!("check `{name}` passed but must fail")),
            [Line::Fail { why, .. }] => problems.push(format!("check `{name}` failed: {why}")),
            [Line::Skip { why, .. }] => problems.push(format!("check `{name}` was skipped: {why}")),
            more => problems.push(format!("check `{name}` reported {} times", more.len())),
        }
    }
    for (name, _) in &results {
        if !expected.plan.iter().any(|e| e == name) {
            problems.push(format!("check `{name}` reported but not expected"));
        }
    }

    let want = Line::Summary { passed: tally.passed, failed: tally.failed, skipped: tally.skipped };
    match summaries.as_slice() {
        [summary] if *summary == want => {}
        [summary] => problems.push(format!("the summary says `{summary}`, the results `{want}`")),
        [] => problems.push("the stub printed no summary".to_string()),
        more => problems.push(format!("the stub printed {} summaries", more.len())),
    }
    if problems.is_empty() {
        Ok(tally)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::report::Plan;

    /// A console log as the stub prints it for `expected`, with the
    /// outcome of each check given by `outcome` (None: no line at all).
    fn console(plan: &[&str], outcome: impl Fn(&str) -> Option<Line<'static>>) -> String {
        let mut text = String::from("el2: entering guest-stub\nguest-stub: started at EL1, 3 checks\n");
        text += &format!("{PREFIX}{}\n", Plan(plan.iter().copied()));
        let (mut passed, mut failed, mut skipped) = (0, 0, 0);
        for name in plan {
            let Some(line) = outcome(name) else { continue };
            match line {
                Line::Pass(_) => passed += 1,
                Line::Fail { .. } => failed += 1,
                _ => skipped += 1,
            }
            text += &format!("{PREFIX}{line}\nel2: WARN: something in between\n");
        }
        text += &format!("{PREFIX}{}\n", Line::Summary { passed, failed, skipped });
        text
    }

    fn leak(name: &str) -> &'static str {
        Box::leak(name.to_string().into_boxed_str())
    }

    fn all_pass(name: &str) -> Option<Line<'static>> {
        Some(Line::Pass(leak(name)))
    }

    fn expect_problem(result: Result<Tally, Vec<String>>, needle: &str) {
        let problems = result.expect_err("the accounting must fail");
        assert!(problems.iter().any(|p| p.contains(needle)), "no problem mentions `{needle}`: {problems:?}");
    }

    #[test]
    fn a_clean_default_run_is_accounted_for() {
        let tally = account(&console(DEFAULT_CHECKS, all_pass), &Expected::default_run()).expect("clean run");
        assert_eq!(tally, Tally { passed: DEFAULT_CHECKS.len() as u32, failed: 0, skipped: 0 });
    }

    /// Each check removed from the stub's table, one at a time, is named.
    #[test]
    fn a_check_missing_from_the_table_is_named() {
        for missing in DEFAULT_CHECKS {
            let plan: Vec<&str> = DEFAULT_CHECKS.iter().copied().filter(|n| n != missing).collect();
            let result = account(&console(&plan, all_pass), &Expected::default_run());
            expect_problem(result, &format!("check `{missing}` is not in the stub's plan"));
        }
    }

    /// Each check made to skip, one at a time, is named.
    #[test]
    fn a_skipped_check_is_named() {
        for skipped in DEFAULT_CHECKS {
            let log = console(DEFAULT_CHECKS, |name| {
                if name == *skipped {
                    Some(Line::Skip { name: leak(name), why: "requested with stub=skip" })
                } else {
                    all_pass(name)
                }
            });
            expect_problem(account(&log, &Expected::default_run()), &format!("check `{skipped}` was skipped"));
        }
    }

    #[test]
    fn a_vm_without_pci_must_skip_exactly_the_pci_checks() {
        let expected = Expected::default_run().without_pci();
        let pci = |name: &str| name.starts_with("pci-");
        let skip_pci = |name: &str| {
            if pci(name) {
                Some(Line::Skip { name: leak(name), why: "this VM has no PCI host bridge" })
            } else {
                all_pass(name)
            }
        };
        let tally = account(&console(DEFAULT_CHECKS, skip_pci), &expected).expect("PCI checks skipped");
        let skipped = DEFAULT_CHECKS.iter().filter(|n| pci(n)).count() as u32;
        assert!(skipped > 0);
        assert_eq!(tally, Tally { passed: DEFAULT_CHECKS.len() as u32 - skipped, failed: 0, skipped });
        // A PCI check that ran anyway, and another check skipped, are named.
        expect_problem(
            account(&console(DEFAULT_CHECKS, all_pass), &expected),
            "check `pci-enumerate` ran but must be skipped",
        );
        let also_virq = |name: &str| {
            if name == "virq-sgi" {
                Some(Line::Skip { name: leak(name), why: "no" })
            } else {
                skip_pci(name)
            }
        };
        expect_problem(account(&console(DEFAULT_CHECKS, also_virq), &expected), "check `virq-sgi` was skipped");
    }

    #[test]
    fn a_check_that_never_reports_is_named() {
        let log = console(DEFAULT_CHECKS, |name| (name != "virq-sgi").then(|| Line::Pass(leak(name))));
        expect_problem(account(&log, &Expected::default_run()), "check `virq-sgi` never reported");
    }

    #[test]
    fn a_renamed_check_is_named_both_ways() {
        let plan: Vec<&str> =
            DEFAULT_CHECKS.iter().map(|&n| if n == "dcc-console" { "dcc-console2" } else { n }).collect();
        let result = account(&console(&plan, all_pass), &Expected::default_run());
        expect_problem(result.clone(), "check `dcc-console` is not in the stub's plan");
        expect_problem(result, "check `dcc-console2` reported but not expected");
    }

    #[test]
    fn a_failure_and_a_wrong_summary_are_reported() {
        let log = console(DEFAULT_CHECKS, |name| {
            if name == "pci-bar-move" {
                Some(Line::Fail { name: leak(name), why: "BAR0 reads 0" })
            } else {
                all_pass(name)
            }
        });
        expect_problem(account(&log, &Expected::default_run()), "check `pci-bar-move` failed: BAR0 reads 0");
        let good = console(DEFAULT_CHECKS, all_pass);
        let wrong_summary = good.replace(&format!("{} passed", DEFAULT_CHECKS.len()), "99 passed");
        expect_problem(account(&wrong_summary, &Expected::default_run()), "the summary says");
        let no_summary: String = good.lines().filter(|l| !l.contains(" passed, ")).map(|l| format!("{l}\n")).collect();
        expect_problem(account(&no_summary, &Expected::default_run()), "no summary");
        let no_plan: String = good.lines().filter(|l| !l.contains("checks:")).map(|l| format!("{l}\n")).collect();
        expect_problem(account(&no_plan, &Expected::default_run()), "no plan");
    }

    #[test]
    fn a_reordered_plan_and_a_double_report_are_reported() {
        let mut plan = DEFAULT_CHECKS.to_vec();
        plan.swap(0, 1);
        expect_problem(account(&console(&plan, all_pass), &Expected::default_run()), "another order");
        let twice = console(DEFAULT_CHECKS, all_pass)
            .replace("guest-stub: PASS el1-entry\n", "guest-stub: PASS el1-entry\nguest-stub: PASS el1-entry\n");
        expect_problem(account(&twice, &Expected::default_run()), "check `el1-entry` reported 2 times");
    }

    #[test]
    fn the_forced_failure_must_fail() {
        let expected = Expected::forced_failure_run();
        let plan: Vec<&str> = expected.plan.iter().map(String::as_str).collect();
        let fails = |name: &str| {
            if name == FORCED_FAILURE {
                Some(Line::Fail { name: FORCED_FAILURE, why: "requested with stub=fail" })
            } else {
                all_pass(name)
            }
        };
        let tally = account(&console(&plan, fails), &expected).expect("the forced failure is expected");
        assert_eq!(tally, Tally { passed: DEFAULT_CHECKS.len() as u32, failed: 1, skipped: 0 });
        expect_problem(account(&console(&plan, all_pass), &expected), "check `forced-failure` passed but must fail");
    }

    /// The portal runs: end 0 must skip `portal-peer-down` and end 1 must
    /// run it; a VM that is no end must skip all but the first two.
    #[test]
    fn portal_runs_skip_exactly_their_checks() {
        let skip = |skipped: &'static [&'static str]| {
            move |name: &str| {
                if skipped.contains(&name) {
                    Some(Line::Skip { name: leak(name), why: "no portal (stub=portals=0)" })
                } else {
                    all_pass(name)
                }
            }
        };
        let end0 = console(PORTAL_CHECKS, skip(&["portal-peer-down"]));
        let tally = account(&end0, &Expected::portal_end(0)).expect("end 0 skips portal-peer-down");
        assert_eq!(tally, Tally { passed: 5, failed: 0, skipped: 1 });
        expect_problem(account(&end0, &Expected::portal_end(1)), "check `portal-peer-down` was skipped");
        let end1 = console(PORTAL_CHECKS, all_pass);
        assert!(account(&end1, &Expected::portal_end(1)).is_ok());
        expect_problem(account(&end1, &Expected::portal_end(0)), "check `portal-peer-down` ran but must be skipped");
        let none = console(
            PORTAL_CHECKS,
            skip(&["portal-ping-pong", "portal-shared-memory", "portal-refused", "portal-peer-down"]),
        );
        let tally = account(&none, &Expected::portal_none()).expect("no end: four skipped");
        assert_eq!(tally, Tally { passed: 2, failed: 0, skipped: 4 });
        expect_problem(account(&end1, &Expected::portal_none()), "check `portal-ping-pong` ran but must be skipped");
    }

    #[test]
    fn only_and_hostile_runs() {
        assert_eq!(Expected::only("virq").plan.len(), 5);
        assert_eq!(Expected::hostile_run().plan[..2], ["hostile", "hostile-vcpus-alive"]);
    }
}
