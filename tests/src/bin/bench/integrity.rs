//! Kernel integrity's rows (`integrity` on the hypervisor's command line,
//! `el2/src/vm/integrity.rs`): what one traced table write and one change
//! of stage-2 tree cost, and what the whole costs a Linux guest's boot and
//! a fork+exec loop with the kernel locked. Four measurements:
//!
//! - **Per operation, in the guest-stub** (`stub=bench` with `integrity`
//!   or `integrity=emulate`, `-smp 1`, `-icount`; the `integrity-*` rows of
//!   `guest-stub/src/bench.rs`, medians of 101): one `STR` to a table
//!   `TTBR1_EL1` reaches, which the hypervisor decodes, performs and
//!   records, beside the same store to an ordinary page; and one tree
//!   switch, half the difference between an EL0 call of a user-only page
//!   and of a page both modes execute (two switches each call under the
//!   emulation, none with FEAT_XNX). On `-cpu max` with `integrity`
//!   (FEAT_XNX), with `integrity=emulate`, and on `-cpu cortex-a72`
//!   (emulated).
//! - **Linux under `-icount`** (`-m 1G`; `linux-guest=integrity`: /init
//!   reads the trace, locks the kernel with `hvctl integrity lock`, runs
//!   `/bin/busybox true` `linux-guest-forks` times, then powers off),
//!   without integrity and with it on both CPUs and with
//!   `integrity=emulate` on max, on four vCPUs as the Linux row and on one
//!   ([`ICOUNT_SMP`]), each booted with [`FORKS`] forks and with none
//!   ([`IcountRun`]). Without integrity the hvctl calls fail
//!   (`NOT_SUPPORTED`) and the loop runs all the same (checked: the loop
//!   line's count). Per configuration ([`LinuxFigures`]): `/init`'s kernel
//!   timestamp (from the kernel's clock start, as the Linux row) and the
//!   same from the VM's start (what the hypervisor accounts to vCPU 0 until
//!   power-off, less the kernel's timestamp there, is the time before the
//!   kernel's clock started, when most table writes are made); the table
//!   writes traced by then (`hvctl trace` at /init's start); and the loop
//!   alone: /init to the first kernel line after the loop, the run with
//!   forks less the run without, with its tree switches (the hypervisor's
//!   power-off line, `T tree switches`; if it has none, the
//!   instruction-abort exits stand in and the rows say so) and table
//!   writes, the two runs' difference too.
//! - **Derived**, on each number of vCPUs: one traced table write, (VM
//!   start to /init with integrity less without) / the writes traced by
//!   then, on each CPU: all integrity costs a boot, per write. One tree
//!   switch: (the loop with `integrity=emulate` less with FEAT_XNX, both on
//!   max) / the loop's switches: the same tracing and traps, only the
//!   switches differ; and on the Cortex-A72, (with integrity less without)
//!   / switches, which also carries the loop's traced writes and `TVM`
//!   traps.
//! - **Wall clock** (`-smp 4`, no `-icount`, [`WALL_RUNS`] runs each, with
//!   and without integrity interleaved, per CPU): QEMU's start to the first
//!   userspace line, and the loop of [`FORKS`] (the host's time between
//!   the last line before the loop, hvctl's answer to the lock, and
//!   `forked and executed`); the medians, and the median of the ratios
//!   of the runs made side by side.

use super::{
    kernel_stamp, median, run_stub_under, LinuxRun, CPU, ICOUNT, LINUX_IMAGE, LINUX_INIT_LINE, LINUX_USERSPACE_LINE,
    MACHINE,
};
use std::fmt::Write as _;

/// Fork+execs of the loop.
const FORKS: u32 = 500;
/// Wall-clock runs of each side, interleaved.
const WALL_RUNS: usize = 3;
/// /init's line after its loop (tests/linux/init, `linux-guest=integrity`).
const LOOP_DONE: &str = "linux-guest: forked and executed ";
/// The kernel's last line before it powers off.
const POWER_DOWN: &str = "reboot: Power down";
/// Where the exits' line and the integrity summary start (the hypervisor's
/// power-off lines; the summary is the one with [`WRITES`]).
const EXITS: &str = "el2: guest exits: ";
const SUMMARY: &str = "el2: kernel-integrity: ";
const WRITES: &str = " table writes recorded";

const CORTEX_A72: &str = "cortex-a72";

/// A Linux configuration: the CPU, how many, and the hypervisor's command
/// line.
#[derive(Clone, Copy)]
struct Config {
    cpu: &'static str,
    /// The CPU as the tables name it.
    cpu_name: &'static str,
    smp: u32,
    hv_cmdline: Option<&'static str>,
}

impl Config {
    /// The same with `smp` CPUs.
    const fn smp(self, smp: u32) -> Self {
        Self { smp, ..self }
    }

    /// The same with the hypervisor's command line `hv_cmdline`.
    const fn with(self, hv_cmdline: &'static str) -> Self {
        Self { hv_cmdline: Some(hv_cmdline), ..self }
    }

    fn name(&self) -> String {
        format!("{}, {}", self.cpu_name, self.hv_cmdline.unwrap_or("without integrity"))
    }

    fn key(&self) -> String {
        format!("{}-{}", self.cpu_name, self.hv_cmdline.unwrap_or("plain"))
    }

    /// Boots under the firmware in `flash` with `forks` iterations of the
    /// loop, to power-off; the console.
    fn run(&self, flash: &str, forks: u32, timing: &[&str]) -> Result<Vec<(f64, String)>, String> {
        let append = format!("linux-guest=integrity linux-guest-forks={forks}");
        let run = LinuxRun {
            flash: Some(flash),
            cpu: self.cpu,
            smp: self.smp,
            hv_cmdline: self.hv_cmdline,
            timing,
            append: &append,
        };
        run.console(|_| false)
    }
}

const MAX_PLAIN: Config = Config { cpu: CPU, cpu_name: "max", smp: 4, hv_cmdline: None };
const MAX_XNX: Config = MAX_PLAIN.with("integrity");
const MAX_EMULATED: Config = MAX_PLAIN.with("integrity=emulate");
const A72_PLAIN: Config = Config { cpu: CORTEX_A72, cpu_name: "cortex-a72", smp: 4, hv_cmdline: None };
const A72_EMULATED: Config = A72_PLAIN.with("integrity");

/// The `-icount` configurations, in the table's order, each on
/// [`ICOUNT_SMP`] CPUs.
const ICOUNT_CONFIGS: [Config; 5] = [MAX_PLAIN, MAX_XNX, MAX_EMULATED, A72_PLAIN, A72_EMULATED];
/// Four CPUs as the Linux row; one, where no vCPU waits for another (what
/// the hypervisor's locks and TCG's round robin add with several shows as
/// the difference).
const ICOUNT_SMP: [u32; 2] = [4, 1];
/// Without and with integrity, per CPU, for the wall clock (four CPUs).
const WALL_PAIRS: [(Config, Config); 2] = [(MAX_PLAIN, MAX_XNX), (A72_PLAIN, A72_EMULATED)];

/// The guest-stub's runs with integrity: `-cpu`, `mode=`, the word, and
/// the column's name.
const STUB_CONFIGS: [(&str, &str, &str, &str); 3] = [
    (CPU, "vhe", "integrity", "max (FEAT_XNX)"),
    (CPU, "vhe", "integrity=emulate", "max, integrity=emulate"),
    (CORTEX_A72, "nvhe", "integrity", "cortex-a72 (emulated)"),
];
/// The JSON keys of [`STUB_CONFIGS`].
const STUB_KEYS: [&str; 3] = ["max-integrity", "max-integrity=emulate", "cortex-a72-integrity"];

/// What one `-icount` run to power-off shows.
struct IcountRun {
    /// The kernel's timestamp of [`LINUX_INIT_LINE`] (virtual seconds, 10^9
    /// instructions).
    init: f64,
    /// The kernel's timestamp of its first line after the loop.
    after_loop: f64,
    /// From the VM's start to the kernel's clock start.
    before_clock: f64,
    /// Table writes traced (recorded and dropped) when /init asked.
    writes_at_init: Option<u64>,
    /// Table writes traced, tree switches, at power-off.
    writes: Option<u64>,
    switches: Option<u64>,
    /// `InstructionAbortLower` exits, at power-off.
    instruction_aborts: u64,
}

impl IcountRun {
    fn measure(flash: &str, config: &Config, forks: u32) -> Result<Self, String> {
        let lines = config.run(flash, forks, &ICOUNT)?;
        Self::parse(&lines, forks).map_err(|e| format!("{} with {forks} forks: {e}", config.name()))
    }

    /// The figures of a console to power-off whose loop ran `forks` times.
    fn parse(lines: &[(f64, String)], forks: u32) -> Result<Self, String> {
        let text = |prefix: &str| lines.iter().find_map(|(_, l)| l.split_once(prefix).map(|(_, rest)| rest));
        let stamp = |pattern: &str| lines.iter().find(|(_, l)| l.contains(pattern)).and_then(|(_, l)| kernel_stamp(l));
        let done = lines.iter().position(|(_, l)| l.starts_with(LOOP_DONE));
        let Some(done) = done.filter(|&i| lines[i].1[LOOP_DONE.len()..].trim() == forks.to_string()) else {
            return Err(format!("no `{LOOP_DONE}{forks}`"));
        };
        let after_loop = lines[done..].iter().filter(|(_, l)| l.starts_with('[')).find_map(|(_, l)| kernel_stamp(l));
        let vcpu0 = format!("el2: {}guest.0 ", platform::sched::REPORT_PREFIX);
        let run_us = text(&vcpu0).and_then(platform::sched::Figures::parse).map(|f| f.run_us);
        let missing = |line: &str| format!("no {line}");
        let init = stamp(LINUX_INIT_LINE).ok_or_else(|| missing(LINUX_INIT_LINE))?;
        let power_down = stamp(POWER_DOWN).ok_or_else(|| missing(POWER_DOWN))?;
        let run_us = run_us.ok_or_else(|| missing("vCPU 0 run time at power-off"))?;
        let summary = lines.iter().map(|(_, l)| l.as_str()).find(|l| l.starts_with(SUMMARY) && l.contains(WRITES));
        Ok(Self {
            init,
            after_loop: after_loop.ok_or_else(|| missing("kernel line after the loop"))?,
            before_clock: run_us as f64 / 1e6 - power_down,
            writes_at_init: text("hvctl: trace: ").and_then(trace_counts),
            writes: summary.and_then(summary_writes),
            switches: summary.and_then(|s| number_before(s, " tree switches")),
            instruction_aborts: text(EXITS).and_then(|e| number_after(e, "InstructionAbortLower ")).unwrap_or(0),
        })
    }
}

/// `N records, M dropped, ...` (hvctl's trace counts): N + M.
fn trace_counts(text: &str) -> Option<u64> {
    Some(number_before(text, " records")? + number_before(text, " dropped")?)
}

/// The summary's `N table writes recorded (M dropped)`: N + M.
fn summary_writes(summary: &str) -> Option<u64> {
    Some(number_before(summary, WRITES)? + number_after(summary, &format!("{WRITES} ("))?)
}

/// The decimal number that ends right before `label` in `text`.
fn number_before(text: &str, label: &str) -> Option<u64> {
    let head = text.split_once(label)?.0;
    let start = head.rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
    head[start..].parse().ok()
}

/// The decimal number that starts right after `label` in `text`.
fn number_after(text: &str, label: &str) -> Option<u64> {
    let tail = text.split_once(label)?.1;
    let end = tail.find(|c: char| !c.is_ascii_digit()).unwrap_or(tail.len());
    tail[..end].parse().ok()
}

/// A configuration's two `-icount` runs, with [`FORKS`] and without.
struct LinuxFigures {
    config: Config,
    forks: IcountRun,
    none: IcountRun,
}

impl LinuxFigures {
    fn measure(flash: &str, config: Config) -> Result<Self, String> {
        let (forks, none) = (IcountRun::measure(flash, &config, FORKS)?, IcountRun::measure(flash, &config, 0)?);
        Ok(Self { config, forks, none })
    }

    /// Kernel clock start to /init, and VM start to /init: the mean of the
    /// two runs (10^9 instructions).
    fn to_init(&self) -> (f64, f64) {
        let runs = [&self.forks, &self.none];
        let clock = runs.iter().map(|r| r.init).sum::<f64>() / 2.0;
        (clock, clock + runs.iter().map(|r| r.before_clock).sum::<f64>() / 2.0)
    }

    /// The loop alone (10^9 instructions).
    fn loop_time(&self) -> f64 {
        (self.forks.after_loop - self.forks.init) - (self.none.after_loop - self.none.init)
    }

    fn loop_switches(&self) -> Option<u64> {
        self.forks.switches?.checked_sub(self.none.switches?)
    }

    fn loop_aborts(&self) -> u64 {
        self.forks.instruction_aborts.saturating_sub(self.none.instruction_aborts)
    }

    fn loop_writes(&self) -> Option<u64> {
        self.forks.writes?.checked_sub(self.none.writes?)
    }

    /// The loop's tree switches where counted, else its instruction-abort
    /// exits (each a switch, bar the rare retry or refusal), and which.
    fn switches_or_aborts(&self) -> (u64, bool) {
        match self.loop_switches() {
            Some(switches) => (switches, true),
            None => (self.loop_aborts(), false),
        }
    }

    fn row(&self) -> String {
        let (clock, vm) = self.to_init();
        let count = |n: Option<u64>| n.map_or("-".into(), |n| n.to_string());
        let switches = match (self.config.hv_cmdline, self.loop_switches()) {
            (None, _) => "-".to_string(),
            (Some(_), Some(n)) => n.to_string(),
            (Some(_), None) => format!("not counted ({} instruction-abort exits)", self.loop_aborts()),
        };
        format!(
            "| {} | {} | {vm:.3} | {clock:.3} | {} | {:.3} | {:.2} M | {switches} | {} |",
            self.config.name(),
            self.config.smp,
            count(self.none.writes_at_init),
            self.loop_time(),
            self.loop_time() * 1e3 / f64::from(FORKS),
            count(self.loop_writes()),
        )
    }

    fn json(&self) -> String {
        let (clock, vm) = self.to_init();
        let count = |n: Option<u64>| n.map_or("null".into(), |n| n.to_string());
        format!(
            "\"{}\": {{\"vm_start_to_init\": {vm:.6}, \"kernel_clock_to_init\": {clock:.6}, \"kernel_clock_to_init_runs\": [{:.6}, {:.6}], \"writes_traced_at_init\": {}, \"loop_{FORKS}\": {:.6}, \"loop_tree_switches\": {}, \"loop_instruction_aborts\": {}, \"loop_table_writes\": {}}}",
            self.config.key(),
            self.forks.init,
            self.none.init,
            count(self.none.writes_at_init),
            self.loop_time(),
            count(self.loop_switches()),
            self.loop_aborts(),
            count(self.loop_writes()),
        )
    }
}

/// The guest-stub's figures in one configuration (instructions).
struct StubFigures {
    table_write: u64,
    store: u64,
    /// EL0 calls of a page of both and of a user-only page.
    call: u64,
    call_user_page: u64,
}

impl StubFigures {
    fn measure(flash: &str, cpu: &str, mode: &str, word: &str) -> Result<Self, String> {
        let (rows, _) = run_stub_under(flash, MACHINE, cpu, &format!("mode={mode} stub=bench {word}"))?;
        let get = |name: &str| -> Result<u64, String> {
            rows.get(name).map(|r| r.0).ok_or(format!("no `{name}` row from `{word}` on {cpu}"))
        };
        Ok(Self {
            table_write: get("integrity-table-write")?,
            store: get("integrity-store")?,
            call: get("integrity-el0-call")?,
            call_user_page: get("integrity-el0-call-user-page")?,
        })
    }

    fn switch(&self) -> u64 {
        self.call_user_page.saturating_sub(self.call) / 2
    }
}

/// Wall-clock seconds of one run: to the first userspace line, and the
/// loop.
fn wall_run(flash: &str, config: &Config) -> Result<(f64, f64), String> {
    let lines = config.run(flash, FORKS, &[])?;
    let what = config.name();
    let at = |pattern: &str| lines.iter().position(|(_, l)| l.contains(pattern));
    let userspace = at(LINUX_USERSPACE_LINE).ok_or(format!("{what}: no `{LINUX_USERSPACE_LINE}`"))?;
    let done = at(LOOP_DONE).ok_or(format!("{what}: no `{LOOP_DONE}`"))?;
    // The loop starts after the lock's answer: /init's or hvctl's line.
    let start = lines[..done]
        .iter()
        .rev()
        .find(|(_, l)| l.starts_with("linux-guest: ") || l.starts_with("hvctl: "))
        .ok_or(format!("{what}: no line before the loop"))?;
    Ok((lines[userspace].0, lines[done].0 - start.0))
}

/// Without and with integrity on one CPU: boots and loops, seconds.
struct WallFigures {
    boot: [Vec<f64>; 2],
    forks: [Vec<f64>; 2],
}

impl WallFigures {
    fn measure(flash: &str, (without, with): (Config, Config)) -> Result<Self, String> {
        let mut figures = Self { boot: [Vec::new(), Vec::new()], forks: [Vec::new(), Vec::new()] };
        for _ in 0..WALL_RUNS {
            for (side, config) in [without, with].iter().enumerate() {
                let (boot, forks) = wall_run(flash, config)?;
                figures.boot[side].push(boot);
                figures.forks[side].push(forks);
            }
        }
        Ok(figures)
    }

    /// The medians without and with integrity, and the median of the
    /// ratios of the runs made side by side (a slow spell of the host
    /// slows both of a pair).
    fn medians(runs: &[Vec<f64>; 2]) -> (f64, f64, f64) {
        let ratios: Vec<f64> = runs[1].iter().zip(&runs[0]).map(|(with, without)| with / without).collect();
        (median(&runs[0]), median(&runs[1]), median(&ratios))
    }
}

/// Everything above; each part its figures or why they are missing.
pub struct IntegrityBench {
    stub: Vec<Result<StubFigures, String>>,
    /// [`ICOUNT_CONFIGS`] on each of [`ICOUNT_SMP`], in that order.
    linux: Vec<(Config, Result<LinuxFigures, String>)>,
    wall: Vec<Result<WallFigures, String>>,
}

impl IntegrityBench {
    pub fn measure(flash: &str) -> Self {
        let stub =
            STUB_CONFIGS.iter().map(|&(cpu, mode, word, _)| StubFigures::measure(flash, cpu, mode, word)).collect();
        let have_linux = || {
            std::path::Path::new(LINUX_IMAGE)
                .exists()
                .then_some(())
                .ok_or(format!("{LINUX_IMAGE} is missing (make linux-guest)"))
        };
        let linux = ICOUNT_SMP
            .iter()
            .flat_map(|&smp| ICOUNT_CONFIGS.iter().map(move |c| c.smp(smp)))
            .map(|c| (c, have_linux().and_then(|()| LinuxFigures::measure(flash, c))))
            .collect();
        let wall = WALL_PAIRS.iter().map(|&p| have_linux().and_then(|()| WallFigures::measure(flash, p))).collect();
        Self { stub, linux, wall }
    }

    fn linux_of(&self, config: &Config, smp: u32) -> Option<&LinuxFigures> {
        let config = config.smp(smp);
        self.linux.iter().find(|(c, _)| c.key() == config.key() && c.smp == smp)?.1.as_ref().ok()
    }

    /// One traced table write on `smp` CPUs: (VM start to /init with
    /// integrity, `with`, less `without`) / the writes traced by then.
    fn write_cost(&self, without: &Config, with: &Config, smp: u32) -> Option<f64> {
        let (without, with) = (self.linux_of(without, smp)?, self.linux_of(with, smp)?);
        let writes = with.none.writes_at_init.filter(|&n| n > 0)?;
        Some((with.to_init().1 - without.to_init().1) * 1e9 / writes as f64)
    }

    /// One tree switch on `smp` CPUs: (the loop with `with` less with
    /// `without`) / the switches (or instruction-abort exits) of `with`'s
    /// loop, and whether they are switches the hypervisor counted.
    fn switch_cost(&self, without: &Config, with: &Config, smp: u32) -> Option<(f64, bool)> {
        let (without, with) = (self.linux_of(without, smp)?, self.linux_of(with, smp)?);
        let (switches, counted) = with.switches_or_aborts();
        (switches > 0).then(|| ((with.loop_time() - without.loop_time()) * 1e9 / switches as f64, counted))
    }

    /// The rows, after the Linux ones.
    pub fn table(&self, table: &mut String) {
        let _ = writeln!(
            table,
            "\nKernel integrity: its costs in the guest-stub (`stub=bench` with `integrity`, -smp 1, -icount; instructions, medians of 101)"
        );
        let names: Vec<&str> = STUB_CONFIGS.iter().map(|c| c.3).collect();
        let _ = writeln!(table, "| | {} |\n|-|--:|--:|--:|", names.join(" | "));
        let cells = |cell: &dyn Fn(&StubFigures) -> String| -> String {
            let cells: Vec<String> =
                self.stub.iter().map(|r| r.as_ref().map_or_else(|e| format!("skipped: {e}"), cell)).collect();
            cells.join(" | ")
        };
        let _ = writeln!(
            table,
            "| a store to a traced TTBR1 table (trapped, decoded, performed, recorded) | {} |",
            cells(&|f| f.table_write.to_string())
        );
        let _ = writeln!(table, "| the same store to an ordinary page | {} |", cells(&|f| f.store.to_string()));
        let _ = writeln!(
            table,
            "| a tree switch: (EL0 call of a user-only page - of a page of both) / 2 | {} |",
            cells(&|f| format!("{} ({} - {})", f.switch(), f.call_user_page, f.call))
        );

        let _ = writeln!(
            table,
            "\nLinux with kernel integrity (-m 1G, -icount, `linux-guest=integrity`; 10^9 instructions of the whole machine; the loop: {FORKS} fork+execs of /bin/busybox true after `hvctl integrity lock`, a run with them less one without)"
        );
        let _ = writeln!(
            table,
            "| configuration | -smp | VM start to /init | kernel clock to /init | table writes traced by /init | the loop | per fork+exec | tree switches in the loop | table writes in it |"
        );
        let _ = writeln!(table, "|-|--:|--:|--:|--:|--:|--:|--:|--:|");
        for (config, figures) in &self.linux {
            let _ = match figures {
                Ok(f) => writeln!(table, "{}", f.row()),
                Err(e) => writeln!(table, "| {} | {} | skipped: {e} | | | | | | |", config.name(), config.smp),
            };
        }
        let instructions = |cost: Option<f64>| cost.map_or("-".to_string(), |c| format!("{c:.0}"));
        let switch = |cost: Option<(f64, bool)>| match cost {
            Some((c, true)) => format!("{c:.0}"),
            Some((c, false)) => format!("{c:.0} per instruction-abort exit (tree switches not counted)"),
            None => "-".to_string(),
        };
        for smp in ICOUNT_SMP {
            let _ = writeln!(
                table,
                "-smp {smp}: one traced table write, (VM start to /init with integrity - without) / the writes traced by then: max {}, cortex-a72 {}; one tree switch, (the loop with integrity=emulate - with FEAT_XNX, max) / its switches: {}, (with integrity - without, cortex-a72; the loop's traced writes and traps included) / its switches: {} (instructions)",
                instructions(self.write_cost(&MAX_PLAIN, &MAX_XNX, smp)),
                instructions(self.write_cost(&A72_PLAIN, &A72_EMULATED, smp)),
                switch(self.switch_cost(&MAX_XNX, &MAX_EMULATED, smp)),
                switch(self.switch_cost(&A72_PLAIN, &A72_EMULATED, smp))
            );
        }

        let _ = writeln!(
            table,
            "\nThe same, wall clock (-smp 4, no -icount, {WALL_RUNS} runs each, interleaved; medians, s; the ratios are the medians of each pair's)"
        );
        let _ = writeln!(
            table,
            "| cpu | boot to userspace, without | with integrity | ratio | {FORKS} fork+execs, without | with the lock | ratio |"
        );
        let _ = writeln!(table, "|-|--:|--:|--:|--:|--:|--:|");
        for ((without, _), wall) in WALL_PAIRS.iter().zip(&self.wall) {
            let _ = match wall {
                Ok(w) => {
                    let (boot, with_boot, boot_ratio) = WallFigures::medians(&w.boot);
                    let (forks, with_forks, forks_ratio) = WallFigures::medians(&w.forks);
                    writeln!(
                        table,
                        "| {} | {boot:.2} | {with_boot:.2} | {:.2}x | {forks:.2} | {with_forks:.2} | {:.2}x |",
                        without.cpu_name, boot_ratio, forks_ratio
                    )
                }
                Err(e) => writeln!(table, "| {} | skipped: {e} | | | | | |", without.cpu_name),
            };
        }
    }

    /// The `kernel_integrity` member of build/bench.json.
    pub fn json(&self) -> String {
        let skipped = |e: &String| format!("{{\"skipped\": \"{}\"}}", e.replace('"', "'"));
        let stub: Vec<String> = STUB_KEYS
            .iter()
            .zip(&self.stub)
            .map(|(key, r)| {
                let value = r.as_ref().map_or_else(skipped, |f| {
                    format!(
                        "{{\"table_write\": {}, \"store\": {}, \"el0_call\": {}, \"el0_call_user_page\": {}, \"tree_switch\": {}}}",
                        f.table_write,
                        f.store,
                        f.call,
                        f.call_user_page,
                        f.switch()
                    )
                });
                format!("\"{key}\": {value}")
            })
            .collect();
        let number = |cost: Option<f64>| cost.map_or("null".to_string(), |c| format!("{c:.0}"));
        let switch = |cost: Option<(f64, bool)>| match cost {
            Some((c, counted)) => format!(
                "{{\"instructions\": {c:.0}, \"per\": \"{}\"}}",
                if counted { "tree switch" } else { "instruction-abort exit" }
            ),
            None => "null".to_string(),
        };
        let per_smp: Vec<String> = ICOUNT_SMP
            .iter()
            .map(|&smp| {
                let runs: Vec<String> = self
                    .linux
                    .iter()
                    .filter(|(c, _)| c.smp == smp)
                    .map(|(c, r)| r.as_ref().map_or_else(|e| format!("\"{}\": {}", c.key(), skipped(e)), LinuxFigures::json))
                    .collect();
                format!(
                    "\"smp{smp}\": {{\"icount_seconds\": {{{}}}, \"table_write_instructions\": {{\"max\": {}, \"cortex-a72\": {}}}, \"tree_switch\": {{\"max_emulate_vs_xnx\": {}, \"cortex-a72_vs_without\": {}}}}}",
                    runs.join(", "),
                    number(self.write_cost(&MAX_PLAIN, &MAX_XNX, smp)),
                    number(self.write_cost(&A72_PLAIN, &A72_EMULATED, smp)),
                    switch(self.switch_cost(&MAX_XNX, &MAX_EMULATED, smp)),
                    switch(self.switch_cost(&A72_PLAIN, &A72_EMULATED, smp)),
                )
            })
            .collect();
        let wall: Vec<String> = WALL_PAIRS
            .iter()
            .zip(&self.wall)
            .map(|((without, _), r)| {
                let value = r.as_ref().map_or_else(skipped, |w| {
                    let list = |v: &[f64]| v.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(", ");
                    let side = |runs: &[Vec<f64>; 2]| {
                        let (_, _, ratio) = WallFigures::medians(runs);
                        format!(
                            "{{\"without\": [{}], \"with\": [{}], \"ratio\": {ratio:.3}}}",
                            list(&runs[0]),
                            list(&runs[1])
                        )
                    };
                    format!("{{\"boot\": {}, \"loop_{FORKS}\": {}}}", side(&w.boot), side(&w.forks))
                });
                format!("\"{}\": {value}", without.cpu_name)
            })
            .collect();
        format!(
            "{{\"stub_instructions\": {{{}}}, \"linux\": {{{}}}, \"wall_seconds\": {{{}}}}}",
            stub.join(", "),
            per_smp.join(", "),
            wall.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of a run as the hypervisor and /init print them (the
    /// summary with the tree switches the hypervisor may add).
    fn console(summary: &str) -> Vec<(f64, String)> {
        [
            "el2: kernel-integrity: locked: 3316 pages of kernel code (IPA 0x40410000..0x42b6a000); everything else is user-only",
            "[    0.922873] Run /init as init process",
            "linux-guest: trace exit 0 hvctl: trace: 4096 records, 122071 dropped, capacity 4096",
            "linux-guest: hvctl: integrity locked, FEAT_XNX, tracing on, 3316 locked pages, 0 refused",
            "linux-guest: forked and executed 500",
            "linux-guest: hvctl after lock exit 0",
            "[    7.240535] Unable to handle kernel execute from non-executable memory at virtual address ffffb7961ca12000",
            "[    7.993966] reboot: Power down",
            "el2: guest exits: 451837, InstructionAbortLower 259174, DataAbortLower 135321, SysReg 25905",
            "el2: sched: guest.0 run 8390342 us, wait 0 us, switches 1, wake-ups 0, worst 0 us, latency 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
            summary,
        ]
        .iter()
        .map(|l| (0.0, l.to_string()))
        .collect()
    }

    const SUMMARY_NOW: &str = "el2: kernel-integrity: locked, emulated execute control (3316 code pages), 527 tables traced, 4096 table writes recorded (129884 dropped), 11 refused";

    #[test]
    fn a_run_parses() {
        let run = IcountRun::parse(&console(SUMMARY_NOW), 500).unwrap();
        assert_eq!(run.init, 0.922873);
        assert_eq!(run.after_loop, 7.240535);
        assert!((run.before_clock - (8.390342 - 7.993966)).abs() < 1e-9);
        assert_eq!(run.writes_at_init, Some(4096 + 122071));
        assert_eq!(run.writes, Some(4096 + 129884));
        assert_eq!(run.switches, None);
        assert_eq!(run.instruction_aborts, 259174);
        assert!(IcountRun::parse(&console(SUMMARY_NOW), 0).is_err());
    }

    #[test]
    fn tree_switches_when_counted() {
        let summary = format!("{SUMMARY_NOW}, 259000 tree switches");
        assert_eq!(IcountRun::parse(&console(&summary), 500).unwrap().switches, Some(259000));
    }

    #[test]
    fn without_integrity() {
        let mut lines = console("el2: integrity: text+rodata sha256 b4 unchanged since boot");
        lines.retain(|(_, l)| !l.contains("InstructionAbortLower"));
        let run = IcountRun::parse(&lines, 500).unwrap();
        assert_eq!((run.writes, run.switches, run.instruction_aborts), (None, None, 0));
    }
}
