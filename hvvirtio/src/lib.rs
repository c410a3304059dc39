//! `hvvirtio`: the virtio device backend a service VM runs in Linux
//! userspace for a client VM's forwarded `virtio,mmio` devices (block and
//! console). This library is the pure part, host-tested; the binary
//! (`main.rs`) is the Linux part: sysfs, the uio interrupt, `poll()`.
//!
//! # How it fits
//!
//! The hypervisor traps each access of the client to one of its
//! `virtio,mmio` windows and queues it on the service VM's backend
//! function (PCI 1234:7a13, `platform::forward` documents its registers).
//! `hvvirtio` maps the function's BAR0 (registers, `resource0`) and BAR2
//! (the client's RAM, `resource2_wc`: write-combining, so unaligned
//! accesses and `memcpy` work), waits on its INTx through
//! `uio_pci_generic`, and for each request carries the access out on the
//! device's virtio-mmio transport ([`transport`]), writes `RESPONSE` for a
//! read and `COMPLETE`s it; a device that used buffers raises its line to
//! the client through `IRQ_LEVEL`.
//!
//! # Usage
//!
//! ```text
//! hvvirtio [--client NAME] [--block PATH[:ro]]... [--console-in PATH]
//!          [--console-out PATH] [-v]
//! ```
//!
//! - `--client NAME`: serve the client VM NAME (`CLIENT_NAME`); needed
//!   only when the service VM has several backend functions.
//! - `--block PATH[:ro]`: the backing file of the client's next block
//!   device, in device order; repeat for several. `:ro` offers the device
//!   read-only (`VIRTIO_BLK_F_RO`). The capacity is the file's size in
//!   512-byte sectors at start. A block device without one is an error.
//! - `--console-in PATH`: the console's input, default standard input. A
//!   file is read to its end, which ends the input (not the backend); a
//!   FIFO is opened read-write, so writers can come and go.
//! - `--console-out PATH`: the console's output, appended and flushed per
//!   buffer the client sends; default standard output.
//! - `-v`: report client resets and devices that need a reset.
//!
//! It binds `uio_pci_generic` to the function if it has no driver (the
//! module must be loaded: `modprobe uio_pci_generic`), prints one line
//!
//! ```text
//! hvvirtio: serving client linux-b (0000:00:11.0, uio1): device 0 block /data/disk.img (2048 sectors), device 1 console
//! ```
//!
//! and serves until SIGTERM or SIGINT, after which it prints a stats line
//! (`hvvirtio: stats: ...`) and exits 0. Errors are one line, `hvvirtio:
//! ...`, exit status 1; usage errors exit 2.
//!
//! # Modules
//!
//! - [`cli`]: the command line and which backing each device gets.
//! - [`transport`]: virtio-mmio (version 2) registers, device side; what a
//!   hostile client gets (`DEVICE_NEEDS_RESET`).
//! - [`chain`]: descriptor chains, checked once, as byte streams.
//! - [`blk`], [`console`]: the devices.
//! - [`backend`]: one round of the request loop over the registers.
//! - [`memory`]: the client's RAM as `vm-memory` sees it.

pub mod backend;
pub mod blk;
pub mod chain;
pub mod cli;
pub mod console;
pub mod memory;
pub mod transport;

#[cfg(test)]
mod testutil;

/// The stats line, printed when the backend stops.
pub fn stats_line(backend: &backend::Backend) -> String {
    let loop_stats = backend.stats;
    let mut line = format!(
        "hvvirtio: stats: {} requests, {} client resets, {} device faults",
        loop_stats.requests, loop_stats.client_resets, loop_stats.faults
    );
    for n in 0..platform::forward::MAX_DEVICES {
        match backend.slot(n) {
            Some(backend::Slot::Block(t)) => {
                let s = t.device().stats;
                line.push_str(&format!(
                    "; device {n} block: {} reads ({} bytes), {} writes ({} bytes), {} flushes, {} errors",
                    s.reads, s.read_bytes, s.writes, s.written_bytes, s.flushes, s.errors
                ));
            }
            Some(backend::Slot::Console(t)) => {
                let s = t.device().stats;
                line.push_str(&format!("; device {n} console: {} bytes in, {} bytes out", s.bytes_in, s.bytes_out));
            }
            None => {}
        }
    }
    line
}
