//! `make bench`: boots the guest-stub's benchmark mode (`stub=bench`) in
//! both translation schemes under `-icount shift=0,sleep=off`, where the
//! PMU cycle counter counts instructions, and prints what each trap path
//! costs beside the floor (an `SVC` to the guest's own EL1), plus the image
//! sizes. Writes `build/bench.json`.
//!
//! Usage: `bench <flash.bin> <el3-monitor ELF> <el2 ELF> <guest-stub ELF>`.

use object::{Object, ObjectSection, SectionKind};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, ExitCode, Stdio};

const MACHINE: &str = "virt,secure=on,virtualization=on,gic-version=3";
const CPU: &str = "max,pauth-impdef=on";

/// One measured path: median, min, max instructions, and any extra fields.
type Row = (u64, u64, u64, Vec<(String, u64)>);

fn run_mode(flash: &str, mode: &str) -> Result<BTreeMap<String, Row>, String> {
    let output = Command::new("qemu-system-aarch64")
        .args(["-M", MACHINE, "-cpu", CPU, "-smp", "1", "-m", "1G"])
        .args(["-icount", "shift=0,sleep=off", "-display", "none", "-monitor", "none"])
        .args(["-serial", "stdio", "-semihosting", "-bios", flash])
        .args(["-fw_cfg", &format!("name=opt/hv/cmdline,string=mode={mode} stub=bench")])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run qemu-system-aarch64: {e}"))?;
    if !output.status.success() {
        return Err(format!("the {mode} run failed ({})", output.status));
    }
    let mut rows = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(rest) = line.trim_end().strip_prefix("guest-stub: bench ") else { continue };
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
        let (Some(&median), Some(&min), Some(&max)) = (fields.get("median"), fields.get("min"), fields.get("max")) else {
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
        return Err(format!("the {mode} run printed no measurements"));
    }
    Ok(rows)
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [flash, monitor, el2, stub] = args.as_slice() else {
        eprintln!("usage: bench <flash.bin> <el3-monitor ELF> <el2 ELF> <guest-stub ELF>");
        return ExitCode::from(2);
    };
    let qemu = Command::new("qemu-system-aarch64").arg("--version").output().ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string)
    });
    let mut modes = BTreeMap::new();
    for mode in ["vhe", "nvhe"] {
        match run_mode(flash, mode) {
            Ok(rows) => {
                modes.insert(mode, rows);
            }
            Err(e) => {
                eprintln!("bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    let mut table = String::new();
    let _ = writeln!(table, "{} on -cpu {CPU}, -icount shift=0,sleep=off (instructions, median of 101)", qemu.as_deref().unwrap_or("QEMU"));
    let _ = writeln!(table, "| path | vhe | nvhe | vhe / floor |");
    let _ = writeln!(table, "|------|----:|-----:|------------:|");
    let floor = modes["vhe"].get("floor-svc").map_or(0, |r| r.0);
    let names: Vec<&String> = modes["vhe"].keys().collect();
    for name in names {
        let vhe = &modes["vhe"][name];
        let nvhe = modes["nvhe"].get(name).map_or(0, |r| r.0);
        let ratio = if floor > 0 && !["empty", "scan"].contains(&name.as_str()) { format!("{:.1}", vhe.0 as f64 / floor as f64) } else { "-".into() };
        let extra: String = vhe.3.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        let _ = writeln!(table, "| {name}{extra} | {} | {nvhe} | {ratio} |", vhe.0);
    }
    let _ = writeln!(table, "\n| image | text | data | bss |");
    let _ = writeln!(table, "|-------|-----:|-----:|----:|");
    let mut images = Vec::new();
    for (name, path) in [("el3-monitor", monitor), ("el2", el2), ("guest-stub", stub)] {
        match sizes(path) {
            Ok((t, d, b)) => {
                let _ = writeln!(table, "| {name} | {t} | {d} | {b} |");
                images.push(format!("\"{name}\": {{\"text\": {t}, \"data\": {d}, \"bss\": {b}}}"));
            }
            Err(e) => {
                eprintln!("bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    print!("{table}");

    let mut json = String::from("{\n");
    let _ = writeln!(json, "  \"qemu\": \"{}\",\n  \"cpu\": \"{CPU}\",\n  \"unit\": \"instructions\",", qemu.unwrap_or_default().replace('"', "'"));
    for (mode, rows) in &modes {
        let entries: Vec<String> = rows
            .iter()
            .map(|(name, (median, min, max, extra))| {
                let extra: String = extra.iter().map(|(k, v)| format!(", \"{k}\": {v}")).collect();
                format!("    \"{name}\": {{\"median\": {median}, \"min\": {min}, \"max\": {max}{extra}}}")
            })
            .collect();
        let _ = writeln!(json, "  \"{mode}\": {{\n{}\n  }},", entries.join(",\n"));
    }
    let _ = writeln!(json, "  \"images\": {{{}}}\n}}", images.join(", "));
    if let Err(e) = std::fs::write("build/bench.json", json) {
        eprintln!("bench: build/bench.json: {e}");
        return ExitCode::FAILURE;
    }
    println!("\nwrote build/bench.json");
    ExitCode::SUCCESS
}
