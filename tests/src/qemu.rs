//! Every QEMU command line the host tools run starts here, so that each one
//! is explicit about the devices it wants and a minimal QEMU install boots
//! it.
//!
//! Why this matters: QEMU's `virt` board adds a virtio-net-pci NIC unless
//! told otherwise, and that NIC needs the option ROM `efi-virtio.rom`
//! (Debian's `ipxe-qemu`, only *recommended* by `qemu-system-arm`). Without
//! the ROM QEMU refuses to start, so a machine that once had it hides the
//! dependency and a fresh one fails every boot. [`DEVICE_OPTIONS`] removes
//! the NIC; [`command`] is the only way the runner, the benchmark and the
//! scenarios start QEMU, and this module's tests check that the Makefile
//! and the docs say the same.

use std::process::Command;

/// The QEMU binary for every board the project runs on.
pub const QEMU: &str = "qemu-system-aarch64";

/// Options every command line carries: no default NIC (it needs an option
/// ROM, see the module doc; the firmware and its guests use none).
pub const DEVICE_OPTIONS: &[&str] = &["-nic", "none"];

/// A `qemu-system-aarch64` command with [`DEVICE_OPTIONS`] already added.
pub fn command() -> Command {
    let mut command = Command::new(QEMU);
    command.args(DEVICE_OPTIONS);
    command
}

/// The first line of `qemu-system-aarch64 --version`, if QEMU runs.
pub fn version() -> Option<String> {
    let output = Command::new(QEMU).arg("--version").output().ok()?;
    String::from_utf8_lossy(&output.stdout).lines().next().map(str::to_string)
}

/// The QEMU command lines in `text` (Markdown or shell): every line that
/// runs [`QEMU`], joined with its backslash continuations. `--version` and
/// `--help` queries start no machine and are left out.
pub fn command_lines(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(at) = line.find(QEMU) else { continue };
        let mut joined = line[at..].trim_end().to_string();
        while joined.ends_with('\\') {
            joined.pop();
            match lines.next() {
                Some(next) => joined.push_str(next.trim_end()),
                None => break,
            }
        }
        let starts_machine = !joined.contains("--version") && !joined.contains("--help");
        // Mentions in prose ("needs qemu-system-aarch64") run nothing.
        let is_invocation = joined[QEMU.len()..].trim_start().starts_with('-');
        if starts_machine && is_invocation {
            found.push(joined);
        }
    }
    found
}

/// Whether a command line carries every one of [`DEVICE_OPTIONS`] (as
/// adjacent words).
pub fn has_device_options(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words.windows(DEVICE_OPTIONS.len()).any(|w| w == DEVICE_OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn command_adds_the_device_options() {
        let command = command();
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(command.get_program(), QEMU);
        assert!(has_device_options(&args.join(" ")), "{args:?}");
    }

    #[test]
    fn command_lines_are_found_and_joined() {
        let text = "Needs qemu-system-aarch64 and dtc.\n\
                    ```sh\n\
                    qemu-system-aarch64 -M virt \\\n    -nic none -bios flash.bin\n\
                    qemu-system-aarch64 --version\n\
                    ```\n\
                    \t@$(QEMU) x; qemu-system-aarch64 -M virt -cpu max\n";
        let lines = command_lines(text);
        assert_eq!(
            lines,
            ["qemu-system-aarch64 -M virt     -nic none -bios flash.bin", "qemu-system-aarch64 -M virt -cpu max"]
        );
        assert!(has_device_options(&lines[0]));
        assert!(!has_device_options(&lines[1]));
        assert!(!has_device_options("qemu-system-aarch64 -nic user -none"));
    }

    /// Every QEMU command the Makefile's targets would run (what `make -n`
    /// prints for them) carries the device options.
    #[test]
    fn makefile_commands_need_no_option_rom() {
        let output = Command::new("make")
            .args(["-n", "--no-print-directory", "run", "run-linux", "run-vms", "gdb"])
            .current_dir(workspace())
            .output()
            .expect("run make -n");
        assert!(output.status.success(), "make -n failed: {}", String::from_utf8_lossy(&output.stderr));
        let printed = String::from_utf8_lossy(&output.stdout);
        let lines = command_lines(&printed);
        // Four targets boot QEMU; each echoes and runs its command.
        assert!(lines.len() >= 4, "make -n printed {} QEMU commands:\n{printed}", lines.len());
        for line in &lines {
            assert!(has_device_options(line), "the Makefile runs QEMU without {DEVICE_OPTIONS:?}: {line}");
        }
    }

    /// The zcu102 command (`make run BOARD=zcu102`) carries the device
    /// options too, and loads the package and the DTB at the addresses the
    /// monitor's memory file says: the Makefile reads them from there.
    #[test]
    fn zcu102_makefile_command() {
        let output = Command::new("make")
            .args(["-n", "--no-print-directory", "run", "BOARD=zcu102"])
            .current_dir(workspace())
            .output()
            .expect("run make -n");
        assert!(output.status.success(), "make -n failed: {}", String::from_utf8_lossy(&output.stderr));
        let printed = String::from_utf8_lossy(&output.stdout);
        let lines = command_lines(&printed);
        assert!(!lines.is_empty(), "make -n run BOARD=zcu102 printed no QEMU command:\n{printed}");
        let memory_file = std::fs::read_to_string(workspace().join(crate::scenario::ZCU102_MEMORY_FILE)).unwrap();
        let address = |symbol| crate::scenario::link_symbol(&memory_file, symbol).unwrap();
        for line in &lines {
            assert!(has_device_options(line), "the Makefile runs QEMU without {DEVICE_OPTIONS:?}: {line}");
            assert!(line.contains("-M xlnx-zcu102,secure=on,virtualization=on"), "{line}");
            for (file, symbol) in
                [("package.bin", "__board_package"), ("zynqmp-zcu102-rev1.0.dtb", "__board_dtb_fallback")]
            {
                let loader = format!("{file},addr={:#010x},force-raw=on", address(symbol));
                assert!(line.contains(&loader), "`{loader}` not in {line}");
            }
            assert!(line.contains("el3-monitor.elf,cpu-num=0"), "{line}");
        }
    }

    /// `make run-linux BOARD=zcu102` puts the Linux guest into a package of
    /// its own with mkflash (the board has no fw_cfg), with the console the
    /// Debian kernel gives the Cadence UART, and boots that package where
    /// the memory file says, with the device options.
    #[test]
    fn zcu102_linux_makefile_command() {
        let output = Command::new("make")
            .args(["-n", "--no-print-directory", "run-linux", "BOARD=zcu102"])
            .current_dir(workspace())
            .output()
            .expect("run make -n");
        assert!(output.status.success(), "make -n failed: {}", String::from_utf8_lossy(&output.stderr));
        let printed = String::from_utf8_lossy(&output.stdout).replace("\\\n", " ");
        let mkflash = printed
            .lines()
            .find(|l| l.contains("mkflash") && l.contains("--linux-kernel"))
            .unwrap_or_else(|| panic!("no mkflash --linux-kernel command:\n{printed}"));
        for word in [
            "--package-only",
            "--linux-kernel build/linux/Image",
            "--linux-initrd build/linux/initramfs.cpio.gz",
            "--linux-cmdline \"console=ttyPS0",
            "-o build/zcu102/package-linux.bin",
        ] {
            assert!(mkflash.contains(word), "`{word}` not in {mkflash}");
        }
        let lines = command_lines(&printed);
        assert!(!lines.is_empty(), "make -n run-linux BOARD=zcu102 printed no QEMU command:\n{printed}");
        let memory_file = std::fs::read_to_string(workspace().join(crate::scenario::ZCU102_MEMORY_FILE)).unwrap();
        let package = crate::scenario::link_symbol(&memory_file, "__board_package").unwrap();
        for line in &lines {
            assert!(has_device_options(line), "the Makefile runs QEMU without {DEVICE_OPTIONS:?}: {line}");
            let loader = format!("package-linux.bin,addr={package:#010x},force-raw=on");
            assert!(line.contains(&loader), "`{loader}` not in {line}");
            assert!(!line.contains("-kernel"), "no fw_cfg on this board: {line}");
        }
    }

    /// The files a user copies QEMU commands from: every Markdown file and
    /// shell script in the repository (outside build output).
    fn documents(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "build" | ".git" | "corpus" | "artifacts") {
                    documents(&path, found);
                }
            } else if name.ends_with(".md") || name.ends_with(".sh") {
                found.push(path);
            }
        }
    }

    #[test]
    fn documented_commands_need_no_option_rom() {
        let mut files = Vec::new();
        documents(&workspace(), &mut files);
        assert!(files.iter().any(|f| f.ends_with("README.md")), "no README.md found under {:?}", workspace());
        let mut bad = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for line in command_lines(&text) {
                if !has_device_options(&line) {
                    bad.push(format!("{}: {line}", file.display()));
                }
            }
        }
        assert!(bad.is_empty(), "QEMU commands without {DEVICE_OPTIONS:?}:\n{}", bad.join("\n"));
    }

    /// The Rust tools start QEMU only through [`command`].
    #[test]
    fn rust_tools_start_qemu_only_through_command() {
        let needle = format!("Command::new(\"{QEMU}\")");
        let mut bad = Vec::new();
        for dir in ["tests/src", "tests/tests"] {
            for entry in std::fs::read_dir(workspace().join(dir)).expect("read tests/").flatten() {
                let path = entry.path();
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                if path.ends_with("qemu.rs") && dir == "tests/src" {
                    continue;
                }
                if text.contains(&needle) {
                    bad.push(path.display().to_string());
                }
            }
        }
        for entry in std::fs::read_dir(workspace().join("tests/src/bin")).expect("read tests/src/bin").flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if text.contains(&needle) {
                bad.push(entry.path().display().to_string());
            }
        }
        assert!(bad.is_empty(), "QEMU started without hvtests::qemu::command in {bad:?}");
    }
}
