//! The Linux guest's side of forwarded virtio devices (`tests/linux/init`:
//! `linux-guest=service`, `client` and `blkbench`): the lines those modes
//! print, with their prefixes in one place and a parser for each VM's
//! report, and the bare-QEMU block benchmark the hypervisor's figure is
//! compared with.
//!
//! The modes print `linux-guest: ...` lines; [`ServiceReport::parse`] and
//! [`ClientReport::parse`] take a VM's text (a bare QEMU's console, or
//! [`crate::scenario::Outcome::vm`]) and keep what a scenario checks.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The service's `sha256sum` of `/known`, which it put in the disk image.
pub const SERVICE_KNOWN: &str = "linux-guest: service known sha256 ";
/// hvvirtio said `hvvirtio: serving client` after this many seconds.
pub const SERVICE_READY: &str = "linux-guest: service hvvirtio ready after ";
/// The client's marker is in the backing file.
pub const SERVICE_SEES: &str = "linux-guest: service sees client bytes ";
/// The client's marker is not in the backing file.
pub const SERVICE_MISSES: &str = "linux-guest: service misses client bytes ";
/// One line the client wrote on its virtio console, as the service got it.
pub const SERVICE_CONSOLE: &str = "linux-guest: service console ";
/// The bench's service stopped serving: `after N s (why)`.
pub const SERVICE_BENCH_OVER: &str = "linux-guest: service bench over after ";
/// One of the service's bounded waits ran out.
pub const SERVICE_TIMEOUT: &str = "linux-guest: service timeout: ";
/// hvvirtio's own output, a line at a time (`exit N` when it ended).
pub const HVVIRTIO: &str = "linux-guest: hvvirtio ";
/// The client's disk's size, in 512-byte sectors.
pub const CLIENT_VDA: &str = "linux-guest: client vda ";
/// The client's `sha256sum` of `/known` on the mounted disk.
pub const CLIENT_KNOWN: &str = "linux-guest: client known sha256 ";
/// The marker the client wrote into `/new` (and synced).
pub const CLIENT_WROTE: &str = "linux-guest: client wrote ";
/// The client's virtio console device (`/dev/hvc0`).
pub const CLIENT_CONSOLE_DEVICE: &str = "linux-guest: client console device ";
/// The line the client read from its virtio console.
pub const CLIENT_CONSOLE_GOT: &str = "linux-guest: client console got ";
/// The client's disk failed once the service was gone: what failed.
pub const CLIENT_IO_ERROR: &str = "linux-guest: client I/O error after the service stopped: ";
/// One of the client's bounded waits ran out.
pub const CLIENT_TIMEOUT: &str = "linux-guest: client timeout: ";
/// The benchmark's figure: `64 MiB in N us`.
pub const BLKBENCH: &str = "linux-guest: blkbench ";
/// What the service says on the console once the client is ready for it.
pub const HELLO: &str = "hello from service";
/// On the client's console: it turned its tty's echo off.
pub const CLIENT_READY: &str = "client console ready";
/// On the client's console: `client synced MARKER`.
pub const CLIENT_SYNCED: &str = "client synced ";
/// The bytes the benchmark reads, and the disk the service serves it from.
pub const BLKBENCH_BYTES: u64 = 64 << 20;
pub const BLKBENCH_DISK_MIB: u64 = 80;

/// What the service VM (`linux-guest=service`) reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServiceReport {
    pub known_sha256: Option<String>,
    /// Seconds until hvvirtio served.
    pub ready_after: Option<u32>,
    /// The client's marker and whether the backing file held it.
    pub client_bytes: Option<(String, bool)>,
    /// The client's console lines, in order.
    pub console: Vec<String>,
    /// hvvirtio's lines.
    pub hvvirtio: Vec<String>,
    /// `bench over after ...`: what followed.
    pub bench_over: Option<String>,
    /// What each timeout line said.
    pub timeouts: Vec<String>,
}

impl ServiceReport {
    pub fn parse(text: &str) -> Self {
        let mut r = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(SERVICE_KNOWN) {
                r.known_sha256 = Some(rest.to_string());
            } else if let Some(rest) = line.strip_prefix(SERVICE_READY) {
                r.ready_after = rest.strip_suffix(" s").and_then(|n| n.parse().ok());
            } else if let Some(rest) = line.strip_prefix(SERVICE_SEES) {
                r.client_bytes = Some((rest.to_string(), true));
            } else if let Some(rest) = line.strip_prefix(SERVICE_MISSES) {
                r.client_bytes = Some((rest.to_string(), false));
            } else if let Some(rest) = line.strip_prefix(SERVICE_CONSOLE) {
                r.console.push(rest.to_string());
            } else if let Some(rest) = line.strip_prefix(HVVIRTIO) {
                r.hvvirtio.push(rest.to_string());
            } else if let Some(rest) = line.strip_prefix(SERVICE_BENCH_OVER) {
                r.bench_over = Some(rest.to_string());
            } else if let Some(rest) = line.strip_prefix(SERVICE_TIMEOUT) {
                r.timeouts.push(rest.to_string());
            }
        }
        r
    }

    /// The marker of the client's `client synced MARKER` console line.
    pub fn synced_marker(&self) -> Option<&str> {
        self.console.iter().find_map(|l| l.strip_prefix(CLIENT_SYNCED))
    }
}

/// What the client VM (`linux-guest=client`) reported.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientReport {
    pub vda_sectors: Option<u64>,
    pub known_sha256: Option<String>,
    pub marker: Option<String>,
    pub console_device: Option<String>,
    pub console_got: Option<String>,
    /// What failed once the service was gone.
    pub io_error: Option<String>,
    pub timeouts: Vec<String>,
}

impl ClientReport {
    pub fn parse(text: &str) -> Self {
        let mut r = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(CLIENT_VDA) {
                r.vda_sectors = rest.parse().ok();
            } else if let Some(rest) = line.strip_prefix(CLIENT_KNOWN) {
                r.known_sha256 = Some(rest.to_string());
            } else if let Some(rest) = line.strip_prefix(CLIENT_WROTE) {
                r.marker = Some(rest.to_string());
            } else if let Some(rest) = line.strip_prefix(CLIENT_CONSOLE_DEVICE) {
                r.console_device = Some(rest.to_string());
            } else if let Some(rest) = line.strip_prefix(CLIENT_CONSOLE_GOT) {
                r.console_got = Some(rest.to_string());
            } else if let Some(rest) = line.strip_prefix(CLIENT_IO_ERROR) {
                r.io_error = Some(rest.to_string());
            } else if let Some(rest) = line.strip_prefix(CLIENT_TIMEOUT) {
                r.timeouts.push(rest.to_string());
            }
        }
        r
    }
}

/// The benchmark's time for [`BLKBENCH_BYTES`], from its `blkbench 64 MiB
/// in N us` line; `Err` with the line (`blkbench failed: ...`) or what is
/// missing.
pub fn blkbench_time(text: &str) -> Result<Duration, String> {
    let mut failed = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(BLKBENCH) else { continue };
        if let Some(us) = rest.strip_prefix("64 MiB in ").and_then(|r| r.strip_suffix(" us")) {
            return us.parse().map(Duration::from_micros).map_err(|_| format!("bad figure in `{line}`"));
        }
        if rest.starts_with("failed") {
            failed = Some(line.to_string());
        }
    }
    Err(failed.unwrap_or_else(|| "no `linux-guest: blkbench 64 MiB in N us` line".to_string()))
}

/// A bare QEMU (`virt`, no firmware) booting the Linux guest directly.
pub struct BareLinux<'a> {
    pub cpu: &'a str,
    pub smp: u32,
    /// The kernel command line after `console=ttyAMA0 `.
    pub bootargs: &'a str,
    /// More QEMU arguments (devices).
    pub extra: &'a [String],
    pub timeout: Duration,
}

/// What a [`BareLinux`] run showed: QEMU's exit code (`None`: killed at the
/// timeout), its console and standard error.
pub struct BareOutcome {
    pub status: Option<i32>,
    pub console: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl BareOutcome {
    pub fn dump(&self) -> String {
        format!(
            "status {:?} after {:?}\n--- console ---\n{}\n--- qemu stderr ---\n{}",
            self.status, self.elapsed, self.console, self.stderr
        )
    }
}

/// Boots `linux` (the `Image` and initramfs of [`crate::vms::linux_guest`])
/// on bare QEMU as `b` says, its console in a file of `dir`.
pub fn boot_bare(linux: &(PathBuf, PathBuf), dir: &Path, b: &BareLinux) -> BareOutcome {
    let console = dir.join("console.log");
    let start = Instant::now();
    let mut child = crate::qemu::command()
        .args(["-M", "virt", "-cpu", b.cpu, "-smp", &b.smp.to_string(), "-m", "1G"])
        .args(["-display", "none", "-monitor", "none"])
        .arg("-kernel")
        .arg(&linux.0)
        .arg("-initrd")
        .arg(&linux.1)
        .args(["-append", &format!("console=ttyAMA0 {}", b.bootargs)])
        .args(b.extra)
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-aarch64 (make deps installs it)");
    let (status, stderr) = crate::scenario::wait_for_qemu(&mut child, start, b.timeout);
    let console = String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).replace('\r', "");
    BareOutcome { status, console, stderr, elapsed: start.elapsed() }
}

/// The benchmark on bare QEMU: `linux-guest=blkbench` with QEMU's own
/// `virtio-blk-device` on the `virt` board's virtio-mmio transport, over a
/// sparse raw image of [`BLKBENCH_DISK_MIB`] MiB (the service's disk is a
/// sparse file too). Returns the guest's time for [`BLKBENCH_BYTES`], or
/// why there is none (with what QEMU showed).
pub fn bare_blkbench(linux: &(PathBuf, PathBuf), cpu: &str, smp: u32) -> Result<Duration, String> {
    let dir = crate::scenario::scratch_dir("blkbench-bare");
    let disk = dir.join("disk.img");
    let file = std::fs::File::create(&disk).map_err(|e| format!("create {}: {e}", disk.display()))?;
    file.set_len(BLKBENCH_DISK_MIB << 20).map_err(|e| format!("size {}: {e}", disk.display()))?;
    let extra = [
        "-drive".to_string(),
        format!("file={},if=none,format=raw,id=disk", disk.display()),
        "-device".to_string(),
        "virtio-blk-device,drive=disk".to_string(),
    ];
    let b = BareLinux { cpu, smp, bootargs: "linux-guest=blkbench", extra: &extra, timeout: Duration::from_secs(120) };
    let o = boot_bare(linux, &dir, &b);
    let _ = std::fs::remove_dir_all(&dir);
    let time = blkbench_time(&o.console).map_err(|e| format!("{e}\n{}", o.dump()))?;
    if o.status != Some(0) {
        return Err(format!("QEMU did not exit 0\n{}", o.dump()));
    }
    Ok(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as the modes printed them on bare QEMU (the service with a
    // stand-in hvvirtio).
    const SERVICE: &str = "linux-guest: userspace up\n\
        linux-guest: service known sha256 e39d2b56bb90609b92c61b5b841ae6f7937b07b5b6ec475d9359c4c84c09276b\n\
        linux-guest: hvvirtio hvvirtio: serving client client\n\
        linux-guest: service hvvirtio ready after 1 s\n\
        linux-guest: hvctl vm list exit 0\n\
        linux-guest: service sees client bytes marker-0123456789abcdef\n\
        linux-guest: service console client console ready\n\
        linux-guest: service console client synced marker-0123456789abcdef\n\
        linux-guest: powering off\n";

    const CLIENT: &str = "linux-guest: client vda 32768\n\
        linux-guest: client known sha256 87c48c4683a9364760fcbfa9455b5051771025c5b3f764516a6528812fdf460d\n\
        linux-guest: client wrote marker-7bbba9f85a4bf3f2\n\
        linux-guest: client console device /dev/hvc0\n\
        linux-guest: client console got hello from service\n\
        linux-guest: client I/O error after the service stopped: cat /mnt/known: cat: read error: Input/output error (after 3 s)\n\
        linux-guest: powering off\n";

    #[test]
    fn the_service_report_is_read() {
        let r = ServiceReport::parse(SERVICE);
        assert_eq!(r.known_sha256.as_deref(), Some("e39d2b56bb90609b92c61b5b841ae6f7937b07b5b6ec475d9359c4c84c09276b"));
        assert_eq!(r.ready_after, Some(1));
        assert_eq!(r.client_bytes, Some(("marker-0123456789abcdef".to_string(), true)));
        assert_eq!(r.console, ["client console ready", "client synced marker-0123456789abcdef"]);
        assert_eq!(r.synced_marker(), Some("marker-0123456789abcdef"));
        assert_eq!(r.hvvirtio, ["hvvirtio: serving client client"]);
        assert!(r.timeouts.is_empty() && r.bench_over.is_none());
        let missed = ServiceReport::parse(&SERVICE.replace("sees client bytes", "misses client bytes"));
        assert_eq!(missed.client_bytes, Some(("marker-0123456789abcdef".to_string(), false)));
        let late =
            ServiceReport::parse("linux-guest: service timeout: no \"client synced\" on the console after 120 s\n");
        assert_eq!(late.timeouts, ["no \"client synced\" on the console after 120 s"]);
        assert_eq!(late.synced_marker(), None);
    }

    #[test]
    fn the_client_report_is_read() {
        let r = ClientReport::parse(CLIENT);
        assert_eq!(r.vda_sectors, Some(32768));
        assert_eq!(r.marker.as_deref(), Some("marker-7bbba9f85a4bf3f2"));
        assert_eq!(r.console_device.as_deref(), Some("/dev/hvc0"));
        assert_eq!(r.console_got.as_deref(), Some(HELLO));
        assert!(r.io_error.as_deref().is_some_and(|e| e.starts_with("cat /mnt/known: ")), "{r:?}");
        assert!(r.timeouts.is_empty());
        let stuck = ClientReport::parse("linux-guest: client timeout: I/O still works after 120 s\n");
        assert_eq!(stuck.timeouts, ["I/O still works after 120 s"]);
        assert_eq!(stuck.io_error, None);
    }

    #[test]
    fn the_blkbench_figure_is_read() {
        let text = "linux-guest: blkbench dd 64+0 records in\nlinux-guest: blkbench dd 64+0 records out\n\
                    linux-guest: blkbench 64 MiB in 73589 us\n";
        assert_eq!(blkbench_time(text), Ok(Duration::from_micros(73589)));
        let failed = blkbench_time("linux-guest: blkbench failed: dd exit 1\n");
        assert_eq!(failed, Err("linux-guest: blkbench failed: dd exit 1".to_string()));
        assert!(blkbench_time("linux-guest: blkbench 64 MiB in many us\n").is_err());
        assert!(blkbench_time("linux-guest: powering off\n").is_err());
    }
}
