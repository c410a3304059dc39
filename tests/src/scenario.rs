//! The QEMU scenario harness: boots `build/flash.bin` (or an image a
//! scenario made) in its own QEMU under a hard timeout, with the console
//! and the monitor's Secure UART in files, and returns what they showed and
//! how QEMU exited. The scenario files in `tests/tests/` share it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// No scenario takes more than a few seconds; this catches hangs.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// A damaged image must be refused quickly.
pub const REFUSAL_DEADLINE: Duration = Duration::from_secs(10);
/// Exit status of a fatal monitor error (el3-monitor/src/power.rs).
pub const EXIT_MONITOR_FATAL: i32 = 3;
/// Exit status of a fatal hypervisor error (el2/src/arch/power.rs).
pub const EXIT_HYPERVISOR_FATAL: i32 = 2;
pub const MACHINE: &str = "virt,secure=on,virtualization=on,gic-version=3";
pub const CPU_MAX: &str = "max,pauth-impdef=on";
pub const CPU_A72: &str = "cortex-a72";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The firmware image under test.
pub fn flash() -> &'static Path {
    static FLASH: OnceLock<PathBuf> = OnceLock::new();
    FLASH.get_or_init(|| {
        if let Some(path) = std::env::var_os("HV_FLASH") {
            return PathBuf::from(path);
        }
        let status = Command::new("make").arg("image").current_dir(workspace()).status().expect("run make image");
        assert!(status.success(), "make image failed");
        workspace().join("build/flash.bin")
    })
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hv-qemu-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

pub struct Boot<'a> {
    pub name: &'a str,
    pub cpu: &'a str,
    pub smp: u32,
    pub mem: &'a str,
    pub flash: PathBuf,
    /// The hypervisor command line (fw_cfg `opt/hv/cmdline`), if any.
    pub cmdline: Option<&'a str>,
    /// More QEMU arguments; `-semihosting` is added unless this has
    /// [`NO_SEMIHOSTING`].
    pub extra: &'a [&'a str],
    /// Appended to the `-M` options (e.g. `,acpi=off`).
    pub machine_options: &'a str,
    /// How long QEMU may run before it is killed as hung.
    pub timeout: Duration,
    /// What is typed on the console, and when: once the console shows
    /// every one of the texts, the bytes (through a FIFO that QEMU's file
    /// chardev reads as its `input-path`).
    pub typed: Option<(&'a [&'a str], &'a [u8])>,
}

/// In `Boot::extra`: run without `-semihosting`.
pub const NO_SEMIHOSTING: &str = "no-semihosting";

impl<'a> Boot<'a> {
    /// The default image on a machine, with no command line.
    pub fn new(name: &'a str, cpu: &'a str, smp: u32, mem: &'a str) -> Self {
        Self {
            name,
            cpu,
            smp,
            mem,
            flash: flash().to_path_buf(),
            cmdline: None,
            extra: &[],
            machine_options: "",
            timeout: TIMEOUT,
            typed: None,
        }
    }
}

pub struct Outcome {
    /// QEMU's exit code; `None` if it had to be killed at the timeout.
    pub status: Option<i32>,
    /// What the Non-secure console (first UART) showed.
    pub console: String,
    /// What the monitor's Secure UART (second UART) showed.
    pub secure: String,
    pub elapsed: Duration,
    pub stderr: String,
}

impl Outcome {
    pub fn lines<'s>(&'s self, prefix: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.console.lines().filter(move |l| l.starts_with(prefix))
    }

    /// What VM `name` printed, among several: its console lines
    /// (`name| text`, with the rest of an interrupted line, `name+ rest`,
    /// joined back on) and its hypercall text (`guest@name: text`), as the
    /// same guest alone would have printed them (`text`, `guest: text`).
    pub fn vm(&self, name: &str) -> String {
        let marker = |separator: &[u8]| format!("{name}{}", String::from_utf8_lossy(separator));
        let (console, continuation) =
            (marker(platform::console_mux::SEPARATOR), marker(platform::console_mux::CONTINUATION));
        let at = platform::console_mux::CHANNEL_SEPARATOR;
        let mut text = String::new();
        for line in self.console.lines() {
            if let Some(rest) = line.strip_prefix(&continuation) {
                // The rest of a line something else interrupted: back onto it.
                if text.ends_with('\n') {
                    text.pop();
                }
                text += rest;
            } else if let Some(rest) =
                line.strip_prefix(&console).or_else(|| line.strip_suffix('|').filter(|l| *l == name).map(|_| ""))
            {
                text += rest;
            } else if let Some((channel, rest)) = line.split_once(": ") {
                match channel.split_once(at) {
                    Some((channel, vm)) if vm == name => text += &format!("{channel}: {rest}"),
                    _ => continue,
                }
            } else {
                continue;
            }
            text.push('\n');
        }
        text
    }

    /// Everything a failed assertion should show.
    pub fn dump(&self) -> String {
        format!(
            "status {:?} after {:?}\n--- console ---\n{}\n--- secure UART ---\n{}\n--- qemu stderr ---\n{}",
            self.status, self.elapsed, self.console, self.secure, self.stderr
        )
    }
}

/// The QEMU arguments of the console: a file, and, if something is typed,
/// a FIFO as its input, fed by a thread that waits for the console to show
/// `after` and then writes `bytes`.
fn console_args(dir: &Path, console: &Path, typed: Option<(&[&str], &[u8])>) -> Vec<String> {
    let Some((after, bytes)) = typed else { return vec!["-serial".into(), format!("file:{}", console.display())] };
    let input = dir.join("typed.fifo");
    let made = Command::new("mkfifo").arg(&input).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", input.display());
    let (after, bytes): (Vec<String>, Vec<u8>) = (after.iter().map(|s| s.to_string()).collect(), bytes.to_vec());
    let (fifo, log) = (input.clone(), console.to_path_buf());
    std::thread::spawn(move || {
        // Opening blocks until QEMU opens the other end.
        let Ok(mut writer) = std::fs::OpenOptions::new().write(true).open(&fifo) else { return };
        let deadline = Instant::now() + TYPING_WAIT;
        while Instant::now() < deadline {
            let shown = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
            if after.iter().all(|text| shown.contains(text.as_str())) {
                let _ = std::io::Write::write_all(&mut writer, &bytes);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Held open until QEMU is done, so it never reads an end of file.
        std::thread::sleep(TYPING_WAIT);
    });
    vec![
        "-chardev".into(),
        format!("file,id=console,path={},input-path={}", console.display(), input.display()),
        "-serial".into(),
        "chardev:console".into(),
    ]
}

/// How long the typing thread waits for its cue, and holds the FIFO open.
const TYPING_WAIT: Duration = Duration::from_secs(300);

pub fn boot(b: &Boot) -> Outcome {
    let dir = scratch_dir(b.name);
    let console = dir.join("console.log");
    let secure = dir.join("secure.log");
    let start = Instant::now();
    let mut child = crate::qemu::command()
        .args([
            "-M",
            &format!("{MACHINE}{}", b.machine_options),
            "-cpu",
            b.cpu,
            "-smp",
            &b.smp.to_string(),
            "-m",
            b.mem,
        ])
        .args(["-display", "none", "-monitor", "none"])
        .args((!b.extra.contains(&NO_SEMIHOSTING)).then_some("-semihosting"))
        .args(b.extra.iter().filter(|&&a| a != NO_SEMIHOSTING))
        .args(console_args(&dir, &console, b.typed))
        .arg("-serial")
        .arg(format!("file:{}", secure.display()))
        .arg("-bios")
        .arg(&b.flash)
        .args(
            b.cmdline.map(|c| ["-fw_cfg".to_string(), format!("name=opt/hv/cmdline,string={c}")]).into_iter().flatten(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-aarch64 (make deps installs it)");
    let (status, stderr) = wait_for_qemu(&mut child, start, b.timeout);
    let elapsed = start.elapsed();
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).replace('\r', "");
    let outcome = Outcome { status, console: read(&console), secure: read(&secure), elapsed, stderr };
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// QEMU's xlnx-zcu102 with EL3 and EL2, as `make run BOARD=zcu102` starts
/// it (docs/boards.md).
pub const ZCU102_MACHINE: &str = "xlnx-zcu102,secure=on,virtualization=on";
/// What Debian's ZCU102 device tree describes: 2 GiB at 0, 2 GiB at 32 GiB.
pub const ZCU102_MEM: &str = "4G";
/// The zcu102 monitor's memory file, which says where the package and the
/// DTB are loaded.
pub const ZCU102_MEMORY_FILE: &str = "linker/boards/zcu102.ld";

/// The value of a symbol the linker script `text` sets to a hexadecimal
/// constant on a line of its own (`__board_package = 0x02000000;`).
pub fn link_symbol(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix(name)?.trim_start().strip_prefix('=')?.trim().strip_suffix(';')?;
        u64::from_str_radix(value.trim().strip_prefix("0x")?, 16).ok()
    })
}

/// The zcu102 image: the monitor's ELF and the package, in the directory
/// `HV_ZCU102_DIR` names (`make qemu-test` sets it), else built with `make
/// image BOARD=zcu102` into build/zcu102.
pub fn zcu102_image() -> &'static (PathBuf, PathBuf) {
    static IMAGE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = match std::env::var_os("HV_ZCU102_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let status = Command::new("make")
                    .args(["image", "BOARD=zcu102"])
                    .current_dir(workspace())
                    .status()
                    .expect("run make image BOARD=zcu102");
                assert!(status.success(), "make image BOARD=zcu102 failed");
                workspace().join("build/zcu102")
            }
        };
        (dir.join("el3-monitor.elf"), dir.join("package.bin"))
    })
}

/// Debian's ZCU102 device tree, where `make linux-guest` extracts it, if it
/// is there; else why not (the last line of build/linux-guest.log).
pub fn zcu102_dtb() -> Result<PathBuf, String> {
    let dtb = workspace().join("build/linux/zynqmp-zcu102-rev1.0.dtb");
    if dtb.exists() {
        return Ok(dtb);
    }
    let log = std::fs::read_to_string(workspace().join("build/linux-guest.log")).unwrap_or_default();
    Err(log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("make linux-guest has not run").to_string())
}

/// Boots the zcu102 image with the device tree `dtb` on QEMU's
/// xlnx-zcu102, as `make run BOARD=zcu102` does but with the console (UART0)
/// in a file, under `timeout`.
pub fn boot_zcu102(name: &str, dtb: &Path, timeout: Duration) -> Outcome {
    boot_zcu102_with(name, dtb, &zcu102_image().1, timeout)
}

/// [`boot_zcu102`] with another package than the image's (one a scenario
/// made, e.g. with a Linux guest in it: `hvtests::flash::repack`).
pub fn boot_zcu102_with(name: &str, dtb: &Path, package: &Path, timeout: Duration) -> Outcome {
    let (monitor, _) = zcu102_image();
    let memory_file =
        std::fs::read_to_string(workspace().join(ZCU102_MEMORY_FILE)).expect("read the zcu102 memory file");
    let address =
        |symbol| link_symbol(&memory_file, symbol).unwrap_or_else(|| panic!("{ZCU102_MEMORY_FILE} sets no {symbol}"));
    let loader =
        |file: &Path, symbol| format!("loader,file={},addr={:#x},force-raw=on", file.display(), address(symbol));
    let dir = scratch_dir(name);
    let console = dir.join("console.log");
    let start = Instant::now();
    let mut child = crate::qemu::command()
        .args(["-M", ZCU102_MACHINE, "-m", ZCU102_MEM, "-audio", "none"])
        .args(["-device", &format!("loader,file={},cpu-num=0", monitor.display())])
        .args(["-device", &loader(package, "__board_package")])
        .args(["-device", &loader(dtb, "__board_dtb_fallback")])
        .args(["-display", "none", "-monitor", "none", "-semihosting"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-aarch64 (make deps installs it)");
    let (status, stderr) = wait_for_qemu(&mut child, start, timeout);
    let elapsed = start.elapsed();
    let console = String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).replace('\r', "");
    let _ = std::fs::remove_dir_all(&dir);
    Outcome { status, console, secure: String::new(), elapsed, stderr }
}

/// Waits for QEMU (`child`, started at `start`, its standard error piped)
/// to exit, killing it once `timeout` has passed: its exit code (`None`:
/// killed) and what it wrote to standard error.
pub fn wait_for_qemu(child: &mut std::process::Child, start: Instant, timeout: Duration) -> (Option<i32>, String) {
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qemu") {
            break status.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (status, stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(console: &str) -> Outcome {
        Outcome {
            status: Some(0),
            console: console.to_string(),
            secure: String::new(),
            elapsed: Duration::ZERO,
            stderr: String::new(),
        }
    }

    #[test]
    fn link_symbols_are_read_from_the_memory_file() {
        let text = "/* __board_package = 0x1; */\n__board_package = 0x02000000;\n  __board_dtb_fallback=0x1000000 ;\n\
                    __board_early_uart_kind = 2;\nSTACK_SIZE = 16K;\n";
        assert_eq!(link_symbol(text, "__board_package"), Some(0x200_0000));
        assert_eq!(link_symbol(text, "__board_dtb_fallback"), Some(0x100_0000));
        assert_eq!(link_symbol(text, "__board_early_uart_kind"), None, "not hexadecimal");
        assert_eq!(link_symbol(text, "STACK_SIZE"), None);
        assert_eq!(link_symbol(text, "__board_early_uart"), None, "a longer name is another symbol");
        let zcu102 = std::fs::read_to_string(workspace().join(ZCU102_MEMORY_FILE)).unwrap();
        for symbol in ["__board_package", "__board_dtb_fallback", "__board_early_uart"] {
            assert!(link_symbol(&zcu102, symbol).is_some(), "{ZCU102_MEMORY_FILE} sets no {symbol}");
        }
    }

    #[test]
    fn a_vms_share_of_the_console_is_put_back_together() {
        let o = outcome(
            "el2: VM a: entering guest-stub\na| guest-stub: \nel2: WARN: something\nb| other\na+ PASS one\n\
             guest@a: guest-stub: brk console ok\nguest@b: not a's\na|\na| last\n",
        );
        assert_eq!(o.vm("a"), "guest-stub: PASS one\nguest: guest-stub: brk console ok\n\nlast\n");
        assert_eq!(o.vm("b"), "other\nguest: not a's\n");
    }
}
