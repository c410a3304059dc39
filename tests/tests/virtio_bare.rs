//! The Linux guest's client side of forwarded virtio devices on bare QEMU
//! (no firmware, no hypervisor): QEMU's own `virtio-blk-device` and
//! `virtio-serial-device` + `virtconsole` on the `virt` board's virtio-mmio
//! transports give the unmodified kernel the kind of devices the
//! hypervisor forwards to a service VM (docs/linux-guest.md, "Forwarded
//! virtio devices"). This checks what runs inside the client VM
//! (`tests/linux/init`: `linux-guest=client`, `linux-guest=blkbench`)
//! independently of the hypervisor:
//!
//! - the client mounts an ext2 image made here, checksums its `/known`,
//!   writes its marker into `/new` and syncs (the marker must be in the
//!   image file afterwards), says it is ready on the virtio console, reads
//!   this test's hello there and answers `client synced MARKER`;
//! - then QEMU shrinks the disk to 4 KiB (monitor `block_resize`: a
//!   configuration-change interrupt and a smaller capacity, as the
//!   hypervisor's stand-in device gives with capacity 0 once the service
//!   VM is gone), and the client must report the I/O error;
//! - `blkbench` reads 64 MiB and reports its time.

use hvtests::scenario::scratch_dir;
use hvtests::virtio::*;
use hvtests::vms::{linux_guest, LINUX_BAD_LINES};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// 256 KiB that differ between runs little enough to be reproducible: a
/// xorshift stream.
fn known_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("run {command:?}: {e} (make deps installs it)"));
    assert!(out.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A 16 MiB ext2 image holding `/known`, as the service builds it; the
/// SHA-256 of `/known`.
fn disk_image(dir: &Path) -> (std::path::PathBuf, String) {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).expect("create the image's root");
    std::fs::write(root.join("known"), known_bytes()).expect("write known");
    let sha = run(Command::new("sha256sum").arg(root.join("known")));
    let sha = sha.split_whitespace().next().expect("sha256sum's output").to_string();
    let image = dir.join("disk.img");
    std::fs::File::create(&image).and_then(|f| f.set_len(16 << 20)).expect("create disk.img");
    run(Command::new("mke2fs").args(["-q", "-F", "-t", "ext2", "-d"]).arg(&root).arg(&image));
    (image, sha)
}

#[test]
fn linux_client_uses_virtio_blk_and_console_on_bare_qemu() {
    let Some(linux) = linux_guest() else {
        eprintln!("SKIPPED linux_client_uses_virtio_blk_and_console_on_bare_qemu: no build/linux (make linux-guest)");
        return;
    };
    let dir = scratch_dir("virtio-client-bare");
    let (image, sha) = disk_image(&dir);
    // The console: QEMU's pipe chardev reads PATH.in and writes PATH.out.
    let pipe = dir.join("console");
    for end in ["in", "out"] {
        run(Command::new("mkfifo").arg(pipe.with_extension(end)));
    }
    let monitor = dir.join("monitor.sock");
    let extra = [
        "-drive".to_string(),
        format!("file={},if=none,format=raw,id=disk", image.display()),
        "-device".to_string(),
        "virtio-blk-device,drive=disk".to_string(),
        "-device".to_string(),
        "virtio-serial-device".to_string(),
        "-chardev".to_string(),
        format!("pipe,id=console,path={}", pipe.display()),
        "-device".to_string(),
        "virtconsole,chardev=console".to_string(),
        "-monitor".to_string(),
        format!("unix:{},server=on,wait=off", monitor.display()),
    ];
    // The service's side of the console, in a thread: what the client
    // wrote, and the hello once it is ready; then, once it synced, the
    // disk shrinks.
    let got = Arc::new(Mutex::new(Vec::new()));
    let (seen, input, output, sock) =
        (got.clone(), pipe.with_extension("in"), pipe.with_extension("out"), monitor.clone());
    let disk = image.clone();
    let service = std::thread::spawn(move || -> Result<usize, String> {
        // Read-write: a FIFO's open then waits for no other end, so a QEMU
        // that never starts leaves no thread blocked (the waits below are
        // bounded).
        let fifo = |path: &Path| std::fs::OpenOptions::new().read(true).write(true).open(path);
        let mut to_client = fifo(&input).map_err(|e| e.to_string())?;
        let mut from_client = fifo(&output).map_err(|e| e.to_string())?;
        let reader_seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = from_client.read(&mut buf) {
                reader_seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let has = |text: &str| String::from_utf8_lossy(&seen.lock().unwrap()).contains(text);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !has(CLIENT_READY) {
            (Instant::now() < deadline).then_some(()).ok_or("no `client console ready`")?;
            std::thread::sleep(Duration::from_millis(100));
        }
        writeln!(to_client, "{HELLO}").map_err(|e| e.to_string())?;
        while !has(CLIENT_SYNCED) {
            (Instant::now() < deadline).then_some(()).ok_or("no `client synced`")?;
            std::thread::sleep(Duration::from_millis(100));
        }
        // Synced: the marker's lines are in the image file now (all but
        // the first of the 64, which follows whatever its block held
        // before). Counted before the resize, which truncates the file.
        let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        let marker = text.split(CLIENT_SYNCED).nth(1).and_then(|t| t.lines().next()).unwrap_or_default().to_string();
        let bytes = std::fs::read(&disk).map_err(|e| e.to_string())?;
        let needle = format!("{marker}\n");
        let count = bytes.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count();
        // Let a probe or two succeed first.
        std::thread::sleep(Duration::from_secs(2));
        let mut m = std::os::unix::net::UnixStream::connect(&sock).map_err(|e| e.to_string())?;
        m.write_all(b"block_resize disk 4096B\n").map_err(|e| e.to_string())?;
        // Held open until QEMU ends (or the test gives up).
        let mut rest = Vec::new();
        let _ = m.read_to_end(&mut rest);
        Ok(count)
    });
    let b = BareLinux {
        cpu: "max",
        smp: 2,
        bootargs: "linux-guest=client linux-guest-wait=30",
        extra: &extra,
        timeout: Duration::from_secs(180),
    };
    let o = boot_bare(&linux, &dir, &b);
    let dump = o.dump();
    let console = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    let dump = format!("{dump}\n--- the client's virtio console ---\n{console}");
    let count = match service.join().expect("the service thread") {
        Ok(count) => count,
        Err(e) => panic!("the console's other end: {e}\n{dump}"),
    };
    assert_eq!(o.status, Some(0), "QEMU must exit 0 (the client powers off)\n{dump}");

    let r = ClientReport::parse(&o.console);
    assert_eq!(r.vda_sectors, Some(16 << 11), "the client's /dev/vda is the 16 MiB image\n{dump}");
    assert_eq!(r.known_sha256.as_deref(), Some(sha.as_str()), "the client reads /known as written\n{dump}");
    assert_eq!(r.console_device.as_deref(), Some("/dev/hvc0"), "{dump}");
    assert_eq!(r.console_got.as_deref(), Some(HELLO), "the client reads the hello\n{dump}");
    let marker = r.marker.clone().unwrap_or_else(|| panic!("the client writes a marker\n{dump}"));
    assert!(marker.starts_with("marker-") && marker.len() == 23, "marker-<16 hex digits>, not {marker}\n{dump}");
    let synced = format!("{CLIENT_SYNCED}{marker}\n");
    assert!(console.contains(&synced), "`{}` on the virtio console\n{dump}", synced.trim_end());
    assert!(!console.contains(HELLO), "the client's tty must not echo\n{dump}");
    assert!(count >= 63, "the image held {count} lines of {marker} when it synced, not 64\n{dump}");
    let error = r.io_error.as_deref().unwrap_or_else(|| panic!("the client must report the I/O error\n{dump}"));
    assert!(error.contains("Input/output error") || error.contains(" of 512 bytes"), "{error}\n{dump}");
    assert!(r.timeouts.is_empty(), "no wait may run out: {:?}\n{dump}", r.timeouts);
    for bad in LINUX_BAD_LINES {
        assert!(!o.console.contains(bad), "the kernel log has `{bad}`\n{dump}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn linux_blkbench_on_bare_qemu() {
    let Some(linux) = linux_guest() else {
        eprintln!("SKIPPED linux_blkbench_on_bare_qemu: no build/linux (make linux-guest)");
        return;
    };
    let time = bare_blkbench(&linux, "max", 2).unwrap_or_else(|e| panic!("{e}"));
    let mib_s = BLKBENCH_BYTES as f64 / (1 << 20) as f64 / time.as_secs_f64();
    eprintln!("blkbench on bare QEMU: 64 MiB in {} us ({mib_s:.0} MiB/s)", time.as_micros());
    // A time that means a read happened: more than nothing, and less than
    // the guest's own bound.
    assert!(time > Duration::ZERO && time < Duration::from_secs(60), "{time:?}");
}
