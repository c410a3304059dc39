//! `dbgtest`: debugs its own children the way gdb and strace do, as an
//! unprivileged user, and prints what it saw, one `dbgtest:` line per
//! result. The Linux scenarios run it in the same kernel under the
//! hypervisor and on bare QEMU and require the same lines: the hypervisor
//! takes every debug exception of the guest (`MDCR_EL2.TDE`, for its
//! backdoor) and must give the guest exactly what bare metal gives it.
//!
//! - `singlestep`: `PTRACE_SINGLESTEP` through a loop of known length.
//! - `breakpoint`: a hardware breakpoint (`NT_ARM_HW_BREAK`) on a function
//!   the child calls a known number of times.
//! - `watchpoint`: a hardware watchpoint (`NT_ARM_HW_WATCH`) on a word the
//!   child stores to a known number of times, then the kernel stores to it
//!   (`read(2)` into it): a watchpoint for EL0 that bare metal does not
//!   raise for the kernel's own access.
//! - `brk`: `BRK #7` in this process: `SIGTRAP` at the `BRK`.
//! - `aarch32-bkpt`: a 32-bit ARM program that executes `BKPT`: killed by
//!   `SIGTRAP` (where the CPU and kernel run AArch32 programs).
//!
//! It is built static for `aarch64-unknown-linux-musl` and ships in the
//! test initramfs (`tests/scripts/linux-guest.sh`). Started as root, it
//! first becomes `nobody` (uid and gid 65534). `dbgtest as-nobody COMMAND
//! ARGS...` only runs that command as nobody (the initramfs has no `su`).

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
mod linux;

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(not(all(target_os = "linux", target_arch = "aarch64")))]
fn main() {
    eprintln!("dbgtest runs on Linux arm64 only");
}
