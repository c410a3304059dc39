//! `make bench`: boots the guest-stub's benchmark mode (`stub=bench`) in
//! both translation schemes, and on bare QEMU (the stub at EL1 with no EL2,
//! the floor for interrupt latency), under `-icount shift=0,sleep=off`,
//! where the PMU cycle counter counts instructions. Prints every row beside
//! its floor, the Linux guest's boot time under the hypervisor and on bare
//! QEMU (wall clock), the image sizes and the hypervisor's resident memory;
//! and, with several VMs (docs/vms.md), the time to start a VM and one
//! Linux VM's boot beside another against the same VM alone; and the
//! interrupt rows again on a GICv2 host and bare QEMU with a GICv2; and
//! kernel integrity's costs, per operation and to a Linux guest
//! ([`integrity`]). Writes `build/bench.json`.
//!
//! Usage: `bench <flash.bin> <el3-monitor ELF> <el2 ELF> <guest-stub ELF>`.

// Kernel integrity's rows (a directory of the binary's own: a file beside
// this one would be a binary of its own).
#[path = "bench/integrity.rs"]
mod integrity;

use object::{Object, ObjectSection, SectionKind};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MACHINE: &str = "virt,secure=on,virtualization=on,gic-version=3";
/// Bare QEMU: no EL3, no EL2; the stub or the kernel runs at EL1.
const BARE_MACHINE: &str = "virt,gic-version=3";
/// The same two with a GICv2 (the interrupt rows beside GICv3's).
const MACHINE_GICV2: &str = "virt,secure=on,virtualization=on,gic-version=2";
const BARE_MACHINE_GICV2: &str = "virt,gic-version=2";
/// The rows measured on both GICs.
const INTERRUPT_ROWS: [&str; 4] = ["vtimer-latency", "sgi-latency", "pnmi-latency", "mmio-read"];
const CPU: &str = "max,pauth-impdef=on";
const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];
/// Where the flat guest-stub goes for the bare run.
const BARE_STUB: &str = "build/guest-stub.bin";
const LINUX_IMAGE: &str = "build/linux/Image";
const LINUX_INITRD: &str = "build/linux/initramfs.cpio.gz";
/// The initramfs's first line (tests/linux/init).
const LINUX_USERSPACE_LINE: &str = "linux-guest: userspace up";
const LINUX_BOOTS: usize = 3;
const LINUX_TIMEOUT: Duration = Duration::from_secs(180);

/// One measured path: median, min, max instructions, and any extra fields.
type Row = (u64, u64, u64, Vec<(String, u64)>);
type Rows = BTreeMap<String, Row>;

/// Where a row's floor comes from.
enum Floor {
    /// The guest's own `SVC` round trip: the cheapest exception there is.
    Svc,
    /// The same row on bare QEMU, where the GIC delivers straight to EL1.
    Bare(&'static str),
    /// The guest's own cost of one probe (`floor-at-probe`) times the
    /// row's probes: a scan with no trap and no hypervisor work.
    PerProbe,
    None,
}

fn floor_of(row: &str) -> Floor {
    match row {
        "brk-version" | "dcc-version" | "hvc-psci-version" | "smc-psci-version" | "mmio-read" | "ecam-read" => {
            Floor::Svc
        }
        "vtimer-latency" => Floor::Bare("vtimer-latency"),
        "sgi-latency" => Floor::Bare("sgi-latency"),
        // An SGI to oneself taken by its handler, with no hypervisor.
        "pnmi-latency" => Floor::Bare("sgi-latency"),
        "scan" | "scan-worst-call" => Floor::PerProbe,
        _ => Floor::None,
    }
}

/// The stub's `bench` lines from one QEMU run, and the whole console.
fn run_stub(args: &[&str], what: &str) -> Result<(Rows, String), String> {
    let output = hvtests::qemu::command()
        .args(args)
        .args(ICOUNT)
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-semihosting"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run qemu-system-aarch64: {e}"))?;
    let console = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("the {what} run failed ({})\n{console}", output.status));
    }
    let mut rows = BTreeMap::new();
    for line in console.lines() {
        let Some(rest) = line.trim_end().strip_prefix("guest-stub: bench ") else { continue };
        if rest.contains(" failed") {
            return Err(format!("the {what} run: {line}"));
        }
        let mut words = rest.split_whitespace();
        let Some(name) = words.next() else { continue };
        let mut fields: BTreeMap<&str, u64> = BTreeMap::new();
        for word in words {
            if let Some((key, value)) = word.split_once('=') {
                if let Ok(value) = value.parse() {
                    fields.insert(key, value);
                }
            }
        }
        let (Some(&median), Some(&min), Some(&max)) = (fields.get("median"), fields.get("min"), fields.get("max"))
        else {
            continue;
        };
        let extra = fields
            .iter()
            .filter(|(k, _)| !["median", "min", "max"].contains(k))
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        rows.insert(name.to_string(), (median, min, max, extra));
    }
    if rows.is_empty() {
        return Err(format!("the {what} run printed no measurements\n{console}"));
    }
    Ok((rows, console))
}

fn run_mode(flash: &str, mode: &str) -> Result<(Rows, String), String> {
    run_mode_on(flash, mode, MACHINE)
}

fn run_mode_on(flash: &str, mode: &str, machine: &str) -> Result<(Rows, String), String> {
    run_stub_under(flash, machine, CPU, &format!("mode={mode} stub=bench"))
}

/// The stub under the firmware in `flash` on `-M machine -cpu cpu`, with
/// the hypervisor's command line `cmdline` (`stub=...` included).
fn run_stub_under(flash: &str, machine: &str, cpu: &str, cmdline: &str) -> Result<(Rows, String), String> {
    let fw_cfg = format!("name=opt/hv/cmdline,string={cmdline}");
    let args = ["-M", machine, "-cpu", cpu, "-smp", "1", "-m", "1G", "-bios", flash, "-fw_cfg", &fw_cfg];
    run_stub(&args, &format!("`{cmdline}` on {machine}, {cpu}"))
}

/// The stub on bare QEMU: flattened (it relocates itself), loaded by
/// QEMU's `-kernel` like a raw kernel, with the DTB in x0.
fn run_bare(stub_elf: &str) -> Result<Rows, String> {
    run_bare_on(stub_elf, BARE_MACHINE)
}

fn run_bare_on(stub_elf: &str, machine: &str) -> Result<Rows, String> {
    let elf = std::fs::read(stub_elf).map_err(|e| format!("{stub_elf}: {e}"))?;
    let image = hvtests::elf::flatten_pie(&elf).map_err(|e| format!("{stub_elf}: {e}"))?;
    std::fs::write(BARE_STUB, &image.bytes).map_err(|e| format!("{BARE_STUB}: {e}"))?;
    let args = ["-M", machine, "-cpu", CPU, "-smp", "1", "-m", "1G", "-kernel", BARE_STUB, "-append", "stub=bench"];
    run_stub(&args, &format!("bare {machine}")).map(|(rows, _)| rows)
}

/// The kernel's line whose timestamp ends the `-icount` measurement.
const LINUX_INIT_LINE: &str = "Run /init as init process";

/// Wall-clock seconds from QEMU's start to the initramfs's first line.
fn linux_boot(flash: Option<&str>) -> Result<f64, String> {
    boot_linux_until(flash, &[], LINUX_USERSPACE_LINE).map(|(elapsed, _)| elapsed)
}

/// The kernel's own timestamp of [`LINUX_INIT_LINE`] under `-icount
/// shift=0,sleep=off`: virtual seconds, i.e. instructions executed (all
/// vCPUs, EL2's included) in units of 10^9, from the kernel's clock start
/// to running /init. Deterministic where wall time is not.
fn linux_boot_icount(flash: Option<&str>) -> Result<f64, String> {
    let (_, line) = boot_linux_until(flash, &ICOUNT, LINUX_INIT_LINE)?;
    kernel_stamp(&line).ok_or_else(|| format!("no timestamp in `{line}`"))
}

/// The kernel's timestamp of a console line (`[    1.234567] ...`, after
/// any prefix such as a VM's name), in seconds.
fn kernel_stamp(line: &str) -> Option<f64> {
    line.split_once('[')?.1.split_once(']')?.0.trim().parse().ok()
}

/// Boots the Linux guest (under the firmware in `flash`, or on bare QEMU)
/// until a console line contains `until`: the wall-clock seconds to it and
/// the line.
fn boot_linux_until(flash: Option<&str>, extra: &[&str], until: &'static str) -> Result<(f64, String), String> {
    let run = LinuxRun { flash, cpu: CPU, smp: 4, hv_cmdline: None, timing: extra, append: "linux-guest=poweroff" };
    run.console(move |line| line.contains(until))?
        .pop()
        .filter(|(_, line)| line.contains(until))
        .ok_or_else(|| format!("the guest stopped before `{until}`"))
}

/// One boot of the Linux guest (`-m 1G`, its kernel and initramfs by
/// `-kernel` and `-initrd`).
struct LinuxRun<'a> {
    /// The firmware (`-bios`), or none for bare QEMU.
    flash: Option<&'a str>,
    cpu: &'a str,
    smp: u32,
    /// The hypervisor's command line (fw_cfg `opt/hv/cmdline`), if any.
    hv_cmdline: Option<&'a str>,
    /// QEMU's clock arguments ([`ICOUNT`], or none for wall-clock figures).
    timing: &'a [&'a str],
    /// The kernel's command line after `console=ttyAMA0`.
    append: &'a str,
}

impl LinuxRun<'_> {
    /// The console lines, each with the wall-clock seconds from QEMU's
    /// start to its arrival: up to the first that satisfies `until` (QEMU
    /// is stopped there), or all of them if QEMU exits first (the guest
    /// powered off).
    fn console(&self, until: impl Fn(&str) -> bool + Send + 'static) -> Result<Vec<(f64, String)>, String> {
        let mut command = hvtests::qemu::command();
        match self.flash {
            Some(flash) => command.args(["-M", MACHINE, "-bios", flash]),
            None => command.args(["-M", BARE_MACHINE]),
        };
        if let Some(cmdline) = self.hv_cmdline {
            command.args(["-fw_cfg", &format!("name=opt/hv/cmdline,string={cmdline}")]);
        }
        command
            .args(self.timing)
            .args(["-cpu", self.cpu, "-smp", &self.smp.to_string(), "-m", "1G", "-display", "none", "-monitor", "none"])
            .args(["-serial", "stdio", "-kernel", LINUX_IMAGE, "-initrd", LINUX_INITRD])
            .args(["-append", &format!("console=ttyAMA0 {}", self.append)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let start = Instant::now();
        let mut child = command.spawn().map_err(|e| format!("cannot run qemu-system-aarch64: {e}"))?;
        let stdout = child.stdout.take().ok_or("no QEMU stdout")?;
        let (send, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let done = until(&line);
                lines.push((start.elapsed().as_secs_f64(), line));
                if done {
                    break;
                }
            }
            let _ = send.send(lines);
        });
        let seen = receive.recv_timeout(LINUX_TIMEOUT);
        let _ = child.kill();
        let _ = child.wait();
        seen.map_err(|_| format!("the Linux guest ({}, `{}`) took over {LINUX_TIMEOUT:?}", self.cpu, self.append))
    }
}

/// A Linux VM of two vCPUs described for `-fw_cfg name=opt/hv/vms.dtb`.
fn linux_vm_node(name: &str) -> String {
    format!(
        "vm-{name} {{ compatible = \"hv,vm\"; hv,name = \"{name}\"; cpus = <2>; memory = <0 524288>; hv,console; \
         hv,kernel = \"opt/hv/linux/kernel\"; hv,initrd = \"opt/hv/linux/initrd\"; \
         bootargs = \"console=ttyAMA0 linux-guest=poweroff\"; }};"
    )
}

/// A guest-stub VM of one vCPU.
fn stub_vm_node(name: &str) -> String {
    format!(
        "vm-{name} {{ compatible = \"hv,vm\"; hv,name = \"{name}\"; cpus = <1>; memory = <0 131072>; hv,console; }};"
    )
}

/// Boots the VMs `nodes` (`-smp 4 -m 2G`, `-icount`, the Linux guest's files
/// as fw_cfg files) until a console line satisfies `until`; returns the
/// console up to it.
fn run_vms(flash: &str, nodes: &[String], until: impl Fn(&str) -> bool + Send + 'static) -> Result<String, String> {
    run_vms_on(flash, CPU, 4, nodes, until)
}

/// [`run_vms`] on `-cpu cpu -smp smp`.
fn run_vms_on(
    flash: &str,
    cpu: &str,
    smp: u32,
    nodes: &[String],
    until: impl Fn(&str) -> bool + Send + 'static,
) -> Result<String, String> {
    run_vms_timed(flash, cpu, smp, &ICOUNT, nodes, until)
}

/// [`run_vms_on`] with `timing` for QEMU's clock arguments (`-icount`, or
/// none for wall-clock figures).
fn run_vms_timed(
    flash: &str,
    cpu: &str,
    smp: u32,
    timing: &[&str],
    nodes: &[String],
    until: impl Fn(&str) -> bool + Send + 'static,
) -> Result<String, String> {
    let dts = format!("/dts-v1/;\n/ {{ chosen {{\n{}\n}}; }};\n", nodes.join("\n"));
    std::fs::write("build/bench-vms.dts", dts).map_err(|e| format!("build/bench-vms.dts: {e}"))?;
    let status = std::process::Command::new("dtc")
        .args(["-q", "-I", "dts", "-O", "dtb", "-o", "build/bench-vms.dtb", "build/bench-vms.dts"])
        .status()
        .map_err(|e| format!("cannot run dtc: {e}"))?;
    if !status.success() {
        return Err("dtc refused build/bench-vms.dts".into());
    }
    let mut command = hvtests::qemu::command();
    command
        .args(["-M", MACHINE, "-bios", flash])
        .args(timing)
        .args(["-cpu", cpu, "-smp", &smp.to_string(), "-m", "2G", "-display", "none", "-monitor", "none"])
        .args(["-serial", "stdio"])
        .args(["-fw_cfg", "name=opt/hv/vms.dtb,file=build/bench-vms.dtb"])
        .args(["-fw_cfg", &format!("name=opt/hv/linux/kernel,file={LINUX_IMAGE}")])
        .args(["-fw_cfg", &format!("name=opt/hv/linux/initrd,file={LINUX_INITRD}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().map_err(|e| format!("cannot run qemu-system-aarch64: {e}"))?;
    let stdout = child.stdout.take().ok_or("no QEMU stdout")?;
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut console = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            console.push_str(&line);
            console.push('\n');
            if until(&line) {
                let _ = send.send(console);
                return;
            }
        }
    });
    let seen = receive.recv_timeout(LINUX_TIMEOUT);
    let _ = child.kill();
    let _ = child.wait();
    seen.map_err(|_| "the VMs never printed what the measurement waits for".to_string())
}

/// The hypervisor's `VM <name>: vCPU 0 runs N counter ticks after the start
/// decision` lines (instructions under `-icount` with a 1 GHz counter).
fn vm_start_ticks(console: &str) -> Vec<u64> {
    console
        .lines()
        .filter_map(|l| l.split_once("vCPU 0 runs ")?.1.split_once(" counter ticks")?.0.parse().ok())
        .collect()
}

/// The kernel's timestamp of [`LINUX_INIT_LINE`] on VM `name`'s console.
fn vm_init_stamp(console: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}| ");
    kernel_stamp(console.lines().find(|l| l.starts_with(&prefix) && l.contains(LINUX_INIT_LINE))?)
}

/// Several VMs: the start of each VM of a three-stub run (instructions;
/// the first VM starts on the CPU that decides it), and `linux-a`'s kernel clock to /init alone and beside
/// `linux-b` (10^9 instructions of the whole machine).
struct VmsBench {
    start_ticks: Vec<u64>,
    linux_alone: f64,
    linux_beside: f64,
}

impl VmsBench {
    fn measure(flash: &str) -> Result<Self, String> {
        if !std::path::Path::new(LINUX_IMAGE).exists() {
            return Err(format!("{LINUX_IMAGE} is missing (make linux-guest)"));
        }
        let stubs = [stub_vm_node("s1"), stub_vm_node("s2"), stub_vm_node("s3")];
        let started = |line: &str| line.starts_with("s3| guest-stub: started");
        let console = run_vms(flash, &stubs, started)?;
        let start_ticks = vm_start_ticks(&console);
        if start_ticks.is_empty() {
            return Err("no `vCPU 0 runs ... counter ticks` line".into());
        }
        let a_at_init = |line: &str| line.starts_with("linux-a| ") && line.contains(LINUX_INIT_LINE);
        let alone = run_vms(flash, &[linux_vm_node("linux-a")], a_at_init)?;
        let beside = run_vms(flash, &[linux_vm_node("linux-a"), linux_vm_node("linux-b")], a_at_init)?;
        let linux_alone = vm_init_stamp(&alone, "linux-a").ok_or("no /init line from linux-a alone")?;
        let linux_beside = vm_init_stamp(&beside, "linux-a").ok_or("no /init line from linux-a beside linux-b")?;
        Ok(Self { start_ticks, linux_alone, linux_beside })
    }
}

/// The scheduler on one physical CPU (`-smp 1`, `-icount`), in one
/// scheme: two CPU-bound VMs with weights 1 and 2 (their loop iterations
/// and run times over 2 s of guest time, and the cost of the switches the
/// slice timer makes between them), and a latency-sensitive VM's timer
/// wake-ups (`sched-timer-wake`: deadline to handler, instructions) alone
/// and beside a CPU-bound VM.
struct SchedBench {
    iterations: (u64, u64),
    run_us: (u64, u64),
    switch: platform::sched::SwitchCost,
    alone: platform::sched_abi::TimerLateness,
    beside: platform::sched_abi::TimerLateness,
}

/// The last line of the hypervisor's power-off summary (the integrity
/// line at boot has no "since boot").
fn summary_done(line: &str) -> bool {
    line.contains("integrity: text+rodata") && line.contains("since boot")
}

fn spin_vm_node(name: &str, weight: u32, ms: u32) -> String {
    format!(
        "vm-{name} {{ compatible = \"hv,vm\"; hv,name = \"{name}\"; cpus = <1>; memory = <0 131072>; hv,console; \
         hv,weight = <{weight}>; bootargs = \"stub=spin={ms}\"; }};"
    )
}

impl SchedBench {
    fn measure(flash: &str, cpu: &str) -> Result<Self, String> {
        use platform::sched::{Figures, SwitchCost, REPORT_PREFIX, SWITCH_REPORT};
        use platform::sched_abi::{SpinReport, TimerLateness};
        let fair =
            run_vms_on(flash, cpu, 1, &[spin_vm_node("light", 1, 2000), spin_vm_node("heavy", 2, 2000)], summary_done)?;
        let vm_text = |console: &str, name: &str| -> String {
            let prefix = format!("{name}| ");
            console.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).collect::<Vec<_>>().join("\n")
        };
        let spin = |name: &str| SpinReport::find(&vm_text(&fair, name)).ok_or(format!("no spin report from {name}"));
        let run = |name: &str| {
            let who = format!("el2: {REPORT_PREFIX}{name}.0 ");
            fair.lines().find_map(|l| Figures::parse(l.strip_prefix(who.as_str())?)).map(|f| f.run_us)
        };
        let switch = fair
            .lines()
            .find_map(|l| SwitchCost::parse(l.strip_prefix("el2: ")?.strip_prefix(SWITCH_REPORT)?))
            .ok_or("no slice-end switch line")?;
        let rt = "vm-rt { compatible = \"hv,vm\"; hv,name = \"rt\"; cpus = <1>; memory = <0 131072>; hv,console; \
                  hv,latency-sensitive; bootargs = \"stub=only=sched-timer-wake\"; };"
            .to_string();
        let lateness = |console: &str| {
            TimerLateness::find(&vm_text(console, "rt")).ok_or_else(|| "no timer lateness line from rt".to_string())
        };
        let alone = lateness(&run_vms_on(flash, cpu, 1, std::slice::from_ref(&rt), summary_done)?)?;
        let beside = lateness(&run_vms_on(flash, cpu, 1, &[rt, spin_vm_node("hog", 256, 3000)], summary_done)?)?;
        Ok(Self {
            iterations: (spin("light")?.iterations, spin("heavy")?.iterations),
            run_us: (run("light").ok_or("no figures for light")?, run("heavy").ok_or("no figures for heavy")?),
            switch,
            alone,
            beside,
        })
    }

    /// Lateness in instructions: nanoseconds of the counter under
    /// `-icount shift=0`.
    fn ns(ticks: u64, l: &platform::sched_abi::TimerLateness) -> u64 {
        platform::sched_abi::ticks_to_us(ticks.saturating_mul(1000), l.frequency).unwrap_or(0)
    }

    fn row(&self, scheme: &str) -> String {
        let (l, h) = self.iterations;
        let (lr, hr) = self.run_us;
        format!(
            "| {scheme} | {:.3} | {:.3} | {} (min {}) | {} / {} | {} / {} |",
            h as f64 / l as f64,
            hr as f64 / lr as f64,
            self.switch.mean_ns,
            self.switch.min_ns,
            Self::ns(self.alone.median, &self.alone),
            Self::ns(self.alone.worst, &self.alone),
            Self::ns(self.beside.median, &self.beside),
            Self::ns(self.beside.worst, &self.beside),
        )
    }

    fn json(&self) -> String {
        format!(
            "{{\"weights_1_2_iterations\": [{}, {}], \"weights_1_2_run_us\": [{}, {}], \"slice_switch_ns\": {{\"mean\": {}, \"min\": {}, \"count\": {}}}, \"timer_wake_instructions\": {{\"alone\": [{}, {}], \"beside_cpu_bound\": [{}, {}]}}}}",
            self.iterations.0,
            self.iterations.1,
            self.run_us.0,
            self.run_us.1,
            self.switch.mean_ns,
            self.switch.min_ns,
            self.switch.count,
            Self::ns(self.alone.median, &self.alone),
            Self::ns(self.alone.worst, &self.alone),
            Self::ns(self.beside.median, &self.beside),
            Self::ns(self.beside.worst, &self.beside),
        )
    }
}

/// A portal between two guest-stub VMs, each on a CPU of its own
/// (`-smp 2`, `-icount`), in one scheme (`stub=portal-bench=N`,
/// `platform::portal::BenchReport`): the doorbell round trip (end 0 rings,
/// end 1's handler takes it and rings back, end 0's handler takes that),
/// how much of it is the two guests' own instructions, and a refused
/// request.
struct PortalBench {
    ends: [platform::portal::BenchReport; 2],
}

const PORTAL_BENCH_ROUNDS: u32 = 101;

impl PortalBench {
    fn measure(flash: &str, cpu: &str) -> Result<Self, String> {
        use platform::portal::{BenchReport, BENCH_WORD};
        let node = |name: &str, cpu: u32| {
            format!(
                "vm-{name} {{ compatible = \"hv,vm\"; hv,name = \"{name}\"; cpus = <1>; memory = <0 131072>; hv,console; \
                 hv,cpu-affinity = <{cpu}>; bootargs = \"{BENCH_WORD}{PORTAL_BENCH_ROUNDS}\"; }};"
            )
        };
        let portal = "portal-ab { compatible = \"hv,portal\"; hv,name = \"ab\"; hv,ends = \"pa\", \"pb\"; \
                      hv,size = <64>; hv,ops-0 = <0 1>; hv,ops-1 = <0>; };"
            .to_string();
        let console = run_vms_on(flash, cpu, 2, &[node("pa", 0), node("pb", 1), portal], summary_done)?;
        let report = |vm: &str| {
            let prefix = format!("{vm}| ");
            console
                .lines()
                .filter_map(|l| l.strip_prefix(prefix.as_str()))
                .find_map(BenchReport::find)
                .ok_or(format!("no portal bench line from {vm}"))
        };
        let ends = [report("pa")?, report("pb")?];
        if ends[0].end != 0 || ends[1].end != 1 {
            return Err(format!("the ends are not where the description puts them: {ends:?}"));
        }
        Ok(Self { ends })
    }

    /// Both guests' own instructions per round trip, and the rest's share.
    fn guest_and_share(&self) -> (u64, f64) {
        let [a, b] = &self.ends;
        let rounds = u64::from(a.rounds.max(1));
        let guest = (a.guest + b.guest) / rounds;
        let mean = a.total / rounds;
        (guest, 1.0 - guest as f64 / mean.max(1) as f64)
    }

    fn row(&self, scheme: &str) -> String {
        let a = &self.ends[0];
        let (guest, share) = self.guest_and_share();
        format!(
            "| {scheme} | {} (min {}) | {} | {guest} | {:.0} % | {} |",
            a.median,
            a.min,
            a.total / u64::from(a.rounds.max(1)),
            share * 100.0,
            a.refused
        )
    }

    fn json(&self) -> String {
        let a = &self.ends[0];
        let (guest, share) = self.guest_and_share();
        format!(
            "{{\"round_trip\": {{\"median\": {}, \"min\": {}, \"max\": {}, \"mean\": {}}}, \"guest_per_round_trip\": {guest}, \"hypervisor_share\": {share:.3}, \"refused_request\": {}}}",
            a.median,
            a.min,
            a.max,
            a.total / u64::from(a.rounds.max(1)),
            a.refused
        )
    }
}

/// A client guest-stub VM's forwarded virtio device served by a
/// guest-stub service VM, each on a CPU of its own (`-smp 2`, `-icount`), in
/// one scheme (`stub=virtio-bench=N`, `platform::forward::BenchReport`):
/// one forwarded read (the client's load traps, the hypervisor queues it
/// and raises the backend function's interrupt, the service's stub takes
/// the request from the registers and completes it, the client resumes),
/// and how much of it is the two guests' own instructions.
struct ForwardBench {
    client: platform::forward::BenchReport,
    service: platform::forward::BenchReport,
}

const FORWARD_BENCH_ROUNDS: u32 = 101;

/// Runs of each side of the block-device benchmark, interleaved.
const BLK_RUNS: usize = 3;

/// Sequential reads through a client's virtio-blk (`linux-guest=blkbench`:
/// 64 MiB with `O_DIRECT`, timed by the client's own clock, wall time),
/// served by a Linux service VM's `hvvirtio` from a sparse file; against
/// the same kernel on bare QEMU with QEMU's own `virtio-blk-device` over a
/// sparse raw file. `-smp 2` both, runs interleaved.
struct BlkBench {
    forwarded: Vec<f64>,
    bare: Vec<f64>,
}

impl BlkBench {
    fn measure(flash: &str) -> Result<Self, String> {
        use hvtests::virtio::{bare_blkbench, blkbench_time, BLKBENCH_DISK_MIB};
        let linux = hvtests::vms::linux_guest().ok_or(format!("{LINUX_IMAGE} is missing (make linux-guest)"))?;
        let node = |name: &str, bootargs: &str, more: &str| {
            format!(
                "vm-{name} {{ compatible = \"hv,vm\"; hv,name = \"{name}\"; cpus = <1>; memory = <0 524288>; hv,console; \
                 hv,kernel = \"opt/hv/linux/kernel\"; hv,initrd = \"opt/hv/linux/initrd\"; \
                 bootargs = \"console=ttyAMA0 {bootargs}\"; {more} }};"
            )
        };
        let devices = "disk { compatible = \"hv,virtio-mmio\"; hv,device = \"block\"; hv,backend = \"svc\"; }; \
                       con { compatible = \"hv,virtio-mmio\"; hv,device = \"console\"; hv,backend = \"svc\"; };";
        let nodes = [
            node(
                "svc",
                &format!("linux-guest=service linux-guest-disk-mib={BLKBENCH_DISK_MIB} linux-guest-bench linux-guest-client=cl"),
                "hv,manager;",
            ),
            node("cl", "linux-guest=blkbench", devices),
        ];
        let done = |line: &str| line.starts_with("cl| linux-guest: blkbench ") && !line.contains(" dd ");
        let (mut forwarded, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..BLK_RUNS {
            let console = run_vms_timed(flash, CPU, 2, &[], &nodes, done)?;
            let client: String =
                console.lines().filter_map(|l| l.strip_prefix("cl| ")).fold(String::new(), |t, l| t + l + "\n");
            forwarded.push(blkbench_time(&client)?.as_secs_f64());
            bare.push(bare_blkbench(&linux, CPU, 2)?.as_secs_f64());
        }
        Ok(Self { forwarded, bare })
    }

    fn medians(&self) -> (f64, f64) {
        (median(&self.forwarded), median(&self.bare))
    }
}

impl ForwardBench {
    fn measure(flash: &str, cpu: &str) -> Result<Self, String> {
        use platform::forward::{BenchReport, BenchRole, BENCH_WORD};
        let node = |name: &str, cpu: u32, more: &str| {
            format!(
                "vm-{name} {{ compatible = \"hv,vm\"; hv,name = \"{name}\"; cpus = <1>; memory = <0 131072>; hv,console; \
                 hv,cpu-affinity = <{cpu}>; bootargs = \"{BENCH_WORD}{FORWARD_BENCH_ROUNDS}\"; {more} }};"
            )
        };
        let device = "virtio-d { compatible = \"hv,virtio-mmio\"; hv,device = \"block\"; hv,backend = \"svc\"; };";
        let console = run_vms_on(flash, cpu, 2, &[node("svc", 0, ""), node("cl", 1, device)], summary_done)?;
        let report = |vm: &str| {
            let prefix = format!("{vm}| ");
            console
                .lines()
                .filter_map(|l| l.strip_prefix(prefix.as_str()))
                .find_map(BenchReport::find)
                .ok_or(format!("no virtio bench line from {vm}"))
        };
        let (client, service) = (report("cl")?, report("svc")?);
        if client.role != BenchRole::Client || service.role != BenchRole::Service {
            return Err(format!("the roles are not where the description puts them: {client:?} {service:?}"));
        }
        if service.rounds != client.rounds {
            return Err(format!("the service served {} reads of {}", service.rounds, client.rounds));
        }
        Ok(Self { client, service })
    }

    /// Both guests' own instructions per read, and the rest's share.
    fn guest_and_share(&self) -> (u64, f64) {
        let rounds = u64::from(self.client.rounds.max(1));
        let guest = (self.client.guest + self.service.guest) / rounds;
        let mean = self.client.total / rounds;
        (guest, 1.0 - guest as f64 / mean.max(1) as f64)
    }

    fn row(&self, scheme: &str) -> String {
        let c = &self.client;
        let (guest, share) = self.guest_and_share();
        format!(
            "| {scheme} | {} (min {}) | {} | {guest} | {:.0} % |",
            c.median,
            c.min,
            c.total / u64::from(c.rounds.max(1)),
            share * 100.0
        )
    }

    fn json(&self) -> String {
        let c = &self.client;
        let (guest, share) = self.guest_and_share();
        format!(
            "{{\"read\": {{\"median\": {}, \"min\": {}, \"max\": {}, \"mean\": {}}}, \"guest_per_read\": {guest}, \"hypervisor_share\": {share:.3}}}",
            c.median,
            c.min,
            c.max,
            c.total / u64::from(c.rounds.max(1)),
        )
    }
}

struct LinuxBoot {
    under_hv: Vec<f64>,
    bare: Vec<f64>,
    /// [`linux_boot_icount`] under the hypervisor and bare.
    icount: (f64, f64),
}

impl LinuxBoot {
    /// Boots interleaved (hv, bare, hv, ...) so that a slow spell of the
    /// host hits both alike.
    fn measure(flash: &str) -> Result<Self, String> {
        if !std::path::Path::new(LINUX_IMAGE).exists() {
            return Err(format!("{LINUX_IMAGE} is missing (make linux-guest)"));
        }
        let icount = (linux_boot_icount(Some(flash))?, linux_boot_icount(None)?);
        let mut boots = Self { under_hv: Vec::new(), bare: Vec::new(), icount };
        for _ in 0..LINUX_BOOTS {
            boots.under_hv.push(linux_boot(Some(flash))?);
            boots.bare.push(linux_boot(None)?);
        }
        Ok(boots)
    }

    fn medians(&self) -> (f64, f64) {
        (median(&self.under_hv), median(&self.bare))
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// (text, data, bss) bytes of an ELF image.
fn sizes(path: &str) -> Result<(u64, u64, u64), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let file = object::File::parse(&*bytes).map_err(|e| format!("{path}: {e}"))?;
    let (mut text, mut data, mut bss) = (0, 0, 0);
    for section in file.sections() {
        match section.kind() {
            SectionKind::Text => text += section.size(),
            SectionKind::Data | SectionKind::ReadOnlyData | SectionKind::ReadOnlyString => data += section.size(),
            SectionKind::UninitializedData => bss += section.size(),
            _ => {}
        }
    }
    Ok((text, data, bss))
}

/// The hypervisor's footprint in RAM, from its boot lines: its image as the
/// monitor placed it (`hypervisor at PA a..b`) and its heap (`heap [a, b)`).
#[derive(Default)]
struct Resident {
    image: u64,
    heap: u64,
}

fn resident(console: &str) -> Option<Resident> {
    let hex = |s: &str| u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
    let image = console.lines().find_map(|l| {
        let rest = l.split_once("hypervisor at PA ")?.1;
        let (start, end) = rest.split(',').next()?.split_once("..")?;
        hex(end)?.checked_sub(hex(start)?)
    })?;
    let heap = console.lines().find_map(|l| {
        let rest = l.split_once("el2: heap [")?.1;
        let (start, end) = rest.split(')').next()?.split_once(", ")?;
        hex(end)?.checked_sub(hex(start)?)
    })?;
    Some(Resident { image, heap })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One table row per scheme: its figures, or why they were skipped.
fn scheme_rows<T>(table: &mut String, results: &[(&str, Result<T, String>)], row: impl Fn(&T, &str) -> String) {
    for (scheme, result) in results {
        let _ = match result {
            Ok(r) => writeln!(table, "{}", row(r, scheme)),
            Err(e) => writeln!(table, "| {scheme} | skipped: {e} | | | | |"),
        };
    }
}

/// One JSON member per scheme: its figures, or why they were skipped.
fn per_scheme<T>(results: &[(&str, Result<T, String>)], json: impl Fn(&T) -> String) -> String {
    let entries: Vec<String> = results
        .iter()
        .map(|(scheme, result)| match result {
            Ok(r) => format!("\"{scheme}\": {}", json(r)),
            Err(e) => format!("\"{scheme}\": {{\"skipped\": \"{}\"}}", e.replace('"', "'")),
        })
        .collect();
    entries.join(", ")
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flash, monitor, el2, stub] = args.as_slice() else {
        return Err("usage: bench <flash.bin> <el3-monitor ELF> <el2 ELF> <guest-stub ELF>".into());
    };
    let qemu = hvtests::qemu::version().unwrap_or_else(|| "QEMU".into());

    let (vhe, vhe_console) = run_mode(flash, "vhe")?;
    let (nvhe, _) = run_mode(flash, "nvhe")?;
    let bare = run_bare(stub)?;
    let gicv2 = [
        run_mode_on(flash, "vhe", MACHINE_GICV2)?.0,
        run_mode_on(flash, "nvhe", MACHINE_GICV2)?.0,
        run_bare_on(stub, BARE_MACHINE_GICV2)?,
    ];
    let resident = resident(&vhe_console).unwrap_or_default();
    let linux = LinuxBoot::measure(flash);
    let vms = VmsBench::measure(flash);
    let sched = [("vhe", CPU), ("nvhe", "cortex-a72")].map(|(scheme, cpu)| (scheme, SchedBench::measure(flash, cpu)));
    let portals =
        [("vhe", CPU), ("nvhe", "cortex-a72")].map(|(scheme, cpu)| (scheme, PortalBench::measure(flash, cpu)));
    let forwards =
        [("vhe", CPU), ("nvhe", "cortex-a72")].map(|(scheme, cpu)| (scheme, ForwardBench::measure(flash, cpu)));
    let blk = BlkBench::measure(flash);
    let kernel_integrity = integrity::IntegrityBench::measure(flash);

    let mut table = String::new();
    let mut vms_table = String::new();
    match &vms {
        Ok(v) => {
            let mut ticks = v.start_ticks.clone();
            ticks.sort_unstable();
            let _ = writeln!(
                vms_table,
                "\nSeveral VMs (-smp 4 -m 2G, -icount): starting a VM, from the decision to its first instruction, kernel copy excluded: {} instructions on the deciding CPU; on other CPUs (mailbox, kick, wake-up, which under TCG's round robin also counts what the running CPUs execute until the woken one is scheduled): {:?}",
                ticks.first().copied().unwrap_or(0),
                ticks.get(1..).unwrap_or_default()
            );
            let _ = writeln!(
                vms_table,
                "A Linux VM (2 vCPUs) from its kernel clock start to `{LINUX_INIT_LINE}` (10^9 instructions, the whole machine): alone {:.3}, beside a second Linux VM {:.3}, ratio {:.2}x",
                v.linux_alone,
                v.linux_beside,
                v.linux_beside / v.linux_alone
            );
        }
        Err(e) => {
            let _ = writeln!(vms_table, "\nSeveral VMs: skipped: {e}");
        }
    }
    let _ = writeln!(
        table,
        "{qemu} on -cpu {CPU}, -icount shift=0,sleep=off (instructions; median of 101 traps, 21 interrupts)"
    );
    let _ = writeln!(table, "| path | vhe | nvhe | bare QEMU | floor | vhe / floor |");
    let _ = writeln!(table, "|------|----:|-----:|----------:|------:|------------:|");
    let svc = vhe.get("floor-svc").map_or(0, |r| r.0);
    let mut floors = BTreeMap::new();
    for (name, row) in &vhe {
        let nvhe = nvhe.get(name).map_or("-".into(), |r| r.0.to_string());
        let bare_cell = bare.get(name).map_or("-".into(), |r| r.0.to_string());
        let floor = match floor_of(name) {
            Floor::Svc => Some(("floor-svc", svc)),
            Floor::Bare(row) => bare.get(row).map(|r| (row, r.0)),
            Floor::PerProbe => {
                let probes = row.3.iter().find(|(k, _)| k == "probes").map_or(0, |(_, v)| *v);
                vhe.get("floor-at-probe").map(|r| ("probes x floor-at-probe", r.0 * probes))
            }
            Floor::None => None,
        };
        let (floor_cell, ratio) = match floor {
            Some((source, value)) if value > 0 => {
                floors.insert(name.clone(), (source, value));
                let source = if matches!(floor_of(name), Floor::Bare(_)) {
                    format!("bare {source}")
                } else {
                    source.to_string()
                };
                (format!("{value} ({source})"), format!("{:.1}", row.0 as f64 / value as f64))
            }
            _ => ("-".into(), "-".into()),
        };
        let extra: String = row.3.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        let _ = writeln!(table, "| {name}{extra} | {} | {nvhe} | {bare_cell} | {floor_cell} | {ratio} |", row.0);
    }

    let _ = writeln!(
        table,
        "\nThe interrupt rows on a GICv2 host (gic-version=2: the CPU interface in memory, a forwarded interrupt ended through an EOI maintenance interrupt) beside GICv3's (instructions, medians):"
    );
    let _ = writeln!(table, "| path | GICv3 vhe | GICv2 vhe | GICv3 nvhe | GICv2 nvhe | GICv3 bare | GICv2 bare |");
    let _ = writeln!(table, "|------|----------:|----------:|-----------:|-----------:|-----------:|-----------:|");
    let cell = |rows: &Rows, name: &str| rows.get(name).map_or("-".into(), |r| r.0.to_string());
    for name in INTERRUPT_ROWS {
        let [v2_vhe, v2_nvhe, v2_bare] = &gicv2;
        let _ = writeln!(
            table,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            cell(&vhe, name),
            cell(v2_vhe, name),
            cell(&nvhe, name),
            cell(v2_nvhe, name),
            cell(&bare, name),
            cell(v2_bare, name)
        );
    }

    let _ = writeln!(
        table,
        "\nLinux boot to the first userspace line (wall clock, -smp 4 -m 1G, {LINUX_BOOTS} boots each, interleaved):"
    );
    match &linux {
        Ok(boots) => {
            let (hv, bare) = boots.medians();
            let list = |v: &[f64]| v.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", ");
            let _ = writeln!(table, "| | median s | boots (s) |\n|-|--:|--|");
            let _ = writeln!(table, "| under the hypervisor (vhe) | {hv:.2} | {} |", list(&boots.under_hv));
            let _ = writeln!(table, "| bare QEMU (EL1) | {bare:.2} | {} |", list(&boots.bare));
            let _ = writeln!(table, "| ratio | {:.2}x | |", hv / bare);
            let (ic_hv, ic_bare) = boots.icount;
            let _ = writeln!(
                table,
                "\nKernel clock start to `{LINUX_INIT_LINE}` under -icount (10^9 instructions, all vCPUs): under the hypervisor {ic_hv:.3}, bare {ic_bare:.3}, ratio {:.2}x",
                ic_hv / ic_bare
            );
        }
        Err(e) => {
            let _ = writeln!(table, "skipped: {e}");
        }
    }
    kernel_integrity.table(&mut table);

    let _ = writeln!(table, "\n| image | text | data | bss |");
    let _ = writeln!(table, "|-------|-----:|-----:|----:|");
    let mut images = Vec::new();
    for (name, path) in [("el3-monitor", monitor), ("el2", el2), ("guest-stub", stub)] {
        let (t, d, b) = sizes(path)?;
        let _ = writeln!(table, "| {name} | {t} | {d} | {b} |");
        images.push(format!("\"{name}\": {{\"text\": {t}, \"data\": {d}, \"bss\": {b}}}"));
    }
    let _ = writeln!(
        table,
        "\nhypervisor resident in RAM: image {} KiB + heap {} KiB = {} KiB",
        resident.image / 1024,
        resident.heap / 1024,
        (resident.image + resident.heap) / 1024
    );
    table.push_str(&vms_table);
    let _ = writeln!(
        table,
        "\nThe scheduler on one CPU (-smp 1, -icount): CPU-bound VMs with weights 1 and 2 over 2 s of guest time (heavy / light, by their loop iterations and by the hypervisor's run time); a switch at a slice's end, from the timer's deadline to the next vCPU's return (instructions); a latency-sensitive VM's timer wake-ups, deadline to handler, median / worst instructions, alone and beside a CPU-bound VM"
    );
    let _ = writeln!(table, "| scheme | iterations | run time | slice switch | wake-up alone | wake-up beside |");
    let _ = writeln!(table, "|--------|-----------:|---------:|-------------:|--------------:|---------------:|");
    scheme_rows(&mut table, &sched, SchedBench::row);
    let _ = writeln!(
        table,
        "\nA portal between two guest-stub VMs on CPUs of their own (-smp 2, -icount; {PORTAL_BENCH_ROUNDS} rounds): the doorbell round trip (ring, the peer's handler, ring back, the handler), median and mean instructions; both guests' own instructions per round trip and the share of the rest (the hypervisor's); a refused request (trap and check, nothing delivered)"
    );
    let _ = writeln!(table, "| scheme | round trip | mean | guests' own | hypervisor | refused request |");
    let _ = writeln!(table, "|--------|-----------:|-----:|------------:|-----------:|----------------:|");
    scheme_rows(&mut table, &portals, PortalBench::row);
    let _ = writeln!(
        table,
        "\nA forwarded virtio read between two guest-stub VMs on CPUs of their own (-smp 2, -icount; {FORWARD_BENCH_ROUNDS} rounds): the client's load of MagicValue until it resumes with the service's answer, median and mean instructions; both guests' own instructions per read and the share of the rest (the hypervisor's)"
    );
    let _ = writeln!(table, "| scheme | read | mean | guests' own | hypervisor |");
    let _ = writeln!(table, "|--------|-----:|-----:|------------:|-----------:|");
    scheme_rows(&mut table, &forwards, ForwardBench::row);
    let _ = writeln!(
        table,
        "\nSequential read of 64 MiB through a client's virtio-blk with O_DIRECT (wall clock by the client's own clock, -smp 2, {BLK_RUNS} runs each, interleaved): served by a Linux service VM's hvvirtio (vhe), and QEMU's own virtio-blk-device on bare QEMU"
    );
    match &blk {
        Ok(b) => {
            let (fwd, bare) = b.medians();
            let list = |v: &[f64]| v.iter().map(|s| format!("{:.0}", s * 1000.0)).collect::<Vec<_>>().join(", ");
            let _ = writeln!(table, "| | median ms | MiB/s | runs (ms) |\n|-|--:|--:|--|");
            let _ = writeln!(
                table,
                "| service VM (hvvirtio) | {:.0} | {:.0} | {} |",
                fwd * 1000.0,
                64.0 / fwd,
                list(&b.forwarded)
            );
            let _ = writeln!(
                table,
                "| bare QEMU virtio-blk-device | {:.0} | {:.0} | {} |",
                bare * 1000.0,
                64.0 / bare,
                list(&b.bare)
            );
            let _ = writeln!(table, "| ratio (time) | {:.2}x | | |", fwd / bare);
        }
        Err(e) => {
            let _ = writeln!(table, "skipped: {e}");
        }
    }
    print!("{table}");

    let mut json = String::from("{\n");
    let _ = writeln!(
        json,
        "  \"qemu\": \"{}\",\n  \"cpu\": \"{CPU}\",\n  \"unit\": \"instructions\",",
        qemu.replace('"', "'")
    );
    for (mode, rows) in [("vhe", &vhe), ("nvhe", &nvhe), ("bare", &bare)] {
        let entries: Vec<String> = rows
            .iter()
            .map(|(name, (median, min, max, extra))| {
                let extra: String = extra.iter().map(|(k, v)| format!(", \"{k}\": {v}")).collect();
                format!("    \"{name}\": {{\"median\": {median}, \"min\": {min}, \"max\": {max}{extra}}}")
            })
            .collect();
        let _ = writeln!(json, "  \"{mode}\": {{\n{}\n  }},", entries.join(",\n"));
    }
    let floor_entries: Vec<String> = floors
        .iter()
        .map(|(name, (source, value))| format!("    \"{name}\": {{\"from\": \"{source}\", \"value\": {value}}}"))
        .collect();
    let _ = writeln!(json, "  \"floors\": {{\n{}\n  }},", floor_entries.join(",\n"));
    match &linux {
        Ok(boots) => {
            let (hv, bare) = boots.medians();
            let list = |v: &[f64]| v.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>().join(", ");
            let _ = writeln!(
                json,
                "  \"linux_boot_seconds\": {{\"under_hv\": [{}], \"bare\": [{}], \"median_under_hv\": {hv:.3}, \"median_bare\": {bare:.3}, \"ratio\": {:.3}}},",
                list(&boots.under_hv),
                list(&boots.bare),
                hv / bare
            );
            let (ic_hv, ic_bare) = boots.icount;
            let _ = writeln!(
                json,
                "  \"linux_init_icount_seconds\": {{\"under_hv\": {ic_hv:.6}, \"bare\": {ic_bare:.6}}},"
            );
        }
        Err(e) => {
            let _ = writeln!(json, "  \"linux_boot_seconds\": {{\"skipped\": \"{}\"}},", e.replace('"', "'"));
        }
    }
    match &vms {
        Ok(v) => {
            let _ = writeln!(
                json,
                "  \"vms\": {{\"start_instructions\": {:?}, \"linux_init_icount_seconds\": {{\"alone\": {:.6}, \"beside_another\": {:.6}}}}},",
                v.start_ticks, v.linux_alone, v.linux_beside
            );
        }
        Err(e) => {
            let _ = writeln!(json, "  \"vms\": {{\"skipped\": \"{}\"}},", e.replace('"', "'"));
        }
    }
    let _ = writeln!(json, "  \"sched\": {{{}}},", per_scheme(&sched, SchedBench::json));
    let _ = writeln!(json, "  \"portal\": {{{}}},", per_scheme(&portals, PortalBench::json));
    match &blk {
        Ok(b) => {
            let (fwd, bare) = b.medians();
            let list = |v: &[f64]| v.iter().map(|s| format!("{s:.4}")).collect::<Vec<_>>().join(", ");
            let _ = writeln!(
                json,
                "  \"virtio_blk_read_64mib_seconds\": {{\"service_vm\": [{}], \"bare\": [{}], \"median_service_vm\": {fwd:.4}, \"median_bare\": {bare:.4}, \"ratio\": {:.3}}},",
                list(&b.forwarded),
                list(&b.bare),
                fwd / bare
            );
        }
        Err(e) => {
            let _ =
                writeln!(json, "  \"virtio_blk_read_64mib_seconds\": {{\"skipped\": \"{}\"}},", e.replace('"', "'"));
        }
    }
    let _ = writeln!(json, "  \"forwarded_read\": {{{}}},", per_scheme(&forwards, ForwardBench::json));
    let _ = writeln!(json, "  \"kernel_integrity\": {},", kernel_integrity.json());
    let gicv2_json: Vec<String> = ["vhe", "nvhe", "bare"]
        .iter()
        .zip(&gicv2)
        .map(|(scheme, rows)| {
            let cells: Vec<String> = INTERRUPT_ROWS
                .iter()
                .filter_map(|name| rows.get(*name).map(|r| format!("\"{name}\": {}", r.0)))
                .collect();
            format!("\"{scheme}\": {{{}}}", cells.join(", "))
        })
        .collect();
    let _ = writeln!(json, "  \"gicv2_interrupts\": {{{}}},", gicv2_json.join(", "));
    let _ = writeln!(json, "  \"resident_bytes\": {{\"image\": {}, \"heap\": {}}},", resident.image, resident.heap);
    let _ = writeln!(json, "  \"images\": {{{}}}\n}}", images.join(", "));
    std::fs::write("build/bench.json", json).map_err(|e| format!("build/bench.json: {e}"))?;
    println!("\nwrote build/bench.json");
    Ok(())
}
