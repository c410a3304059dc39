//! The device half of `hvctl portal`, `hvctl vm` and `hvvirtio` (Linux
//! only): a function's BARs mapped from sysfs (`resource0`, `resource2`)
//! behind [`crate::pci`]'s [`Registers`], a function's uio device
//! (`/dev/uioN`) behind [`crate::portal`]'s [`Interrupt`], and the lock
//! that keeps two `hvctl vm` processes from interleaving their accesses to
//! the VM control function. It lives in the library, not the binary, so
//! that the other tools of the workspace map registers the one way the
//! hypervisor can emulate (below) instead of keeping copies.
//!
//! Every BAR0 access traps to the hypervisor, which emulates only accesses
//! whose abort has a valid instruction syndrome (ISV): a single `ldr`/`str`
//! with a plain base register, no writeback. A compiler-chosen volatile
//! access may use another addressing mode, so BAR0 is accessed with inline
//! `ldr w`/`str w` (and `ldr x`/`str x` for the 64-bit registers) on
//! `[xN]`. BAR2 is guest RAM at stage 2 (no trap) but mapped as Device
//! memory by `resourceN` (no unaligned access): it is copied with aligned
//! volatile accesses.

use crate::pci::{DeviceError, Registers};
use crate::portal::{intx_enable, Interrupt, PortalError, COMMAND_HIGH};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// A BAR mapped from its sysfs `resourceN` file (shared, uncached).
pub struct Bar {
    base: *mut u8,
    len: usize,
}

impl Bar {
    /// Maps `len` bytes of `path` (a `resourceN` file).
    pub fn map(path: &Path, len: u64) -> Result<Self, DeviceError> {
        let what = || format!("{}", path.display());
        let len = usize::try_from(len).map_err(|_| DeviceError {
            what: what(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "too large to map"),
        })?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_SYNC)
            .open(path)
            .map_err(|error| DeviceError { what: format!("open {}", what()), error })?;
        // SAFETY: a fresh shared mapping of the file, placed by the kernel;
        // the result is checked before use. The mapping outlives the file
        // descriptor, which may be closed after mmap.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(DeviceError { what: format!("mmap {}", what()), error: std::io::Error::last_os_error() });
        }
        Ok(Self { base: base.cast(), len })
    }

    /// The address of `width` bytes at `offset`, if they lie in the BAR and
    /// are aligned.
    fn at(&self, offset: u64, width: usize) -> Option<*mut u8> {
        let offset = usize::try_from(offset).ok()?;
        (offset % width == 0 && offset.checked_add(width)? <= self.len)
            // SAFETY: `offset + width` is inside the mapping.
            .then(|| unsafe { self.base.add(offset) })
    }

    /// Copies `buffer.len()` bytes from `offset` (bounds-checked by the
    /// caller with `hvctl::portal::check_bounds`).
    pub fn read_bytes(&self, offset: usize, buffer: &mut [u8]) {
        let mut done = 0;
        while done < buffer.len() {
            let at = offset + done;
            let left = buffer.len() - done;
            if let (0, Some(word)) = (at % 8, self.at(at as u64, 8).filter(|_| left >= 8)) {
                // SAFETY: an aligned 8-byte word inside the mapping.
                let value = unsafe { core::ptr::read_volatile(word.cast::<u64>()) };
                buffer[done..done + 8].copy_from_slice(&value.to_le_bytes());
                done += 8;
            } else if let Some(byte) = self.at(at as u64, 1) {
                // SAFETY: a byte inside the mapping.
                buffer[done] = unsafe { core::ptr::read_volatile(byte) };
                done += 1;
            } else {
                break;
            }
        }
    }

    /// Copies `data` to `offset` (bounds-checked by the caller).
    pub fn write_bytes(&self, offset: usize, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done;
            let left = data.len() - done;
            if let (0, Some(word)) = (at % 8, self.at(at as u64, 8).filter(|_| left >= 8)) {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&data[done..done + 8]);
                // SAFETY: an aligned 8-byte word inside the mapping.
                unsafe { core::ptr::write_volatile(word.cast::<u64>(), u64::from_le_bytes(bytes)) };
                done += 8;
            } else if let Some(byte) = self.at(at as u64, 1) {
                // SAFETY: a byte inside the mapping.
                unsafe { core::ptr::write_volatile(byte, data[done]) };
                done += 1;
            } else {
                break;
            }
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: the mapping `map` made, unmapped once; nothing refers to
        // it after this.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// BAR0: a function's registers (a portal's, the VM control function's).
pub struct Regs(Bar);

impl Regs {
    /// Maps `size` bytes of the BAR0 of the function whose sysfs directory
    /// is `device`.
    pub fn map(device: &Path, size: u64) -> Result<Self, DeviceError> {
        Bar::map(&device.join("resource0"), size).map(Self)
    }
}

/// An exclusive `flock` on a function's `resource0`, held until dropped:
/// `hvctl vm` selects a VM, then reads or commands it, and another `hvctl
/// vm` in the same VM must not move `SELECT` in between.
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Takes the lock of the function at `device`, waiting up to `timeout`
    /// for another holder to let it go.
    pub fn take(device: &Path, timeout: Duration) -> Result<Self, DeviceError> {
        let path = device.join("resource0");
        let what = |doing: &str| format!("{doing} {}", path.display());
        let file = std::fs::File::open(&path).map_err(|error| DeviceError { what: what("open"), error })?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Self { _file: file });
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::WouldBlock {
                return Err(DeviceError { what: what("lock"), error });
            }
            if std::time::Instant::now() >= deadline {
                return Err(DeviceError {
                    what: what("lock"),
                    error: std::io::Error::other(format!("another hvctl vm held it for {} ms", timeout.as_millis())),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The single-instruction accesses the hypervisor can emulate.
#[cfg(target_arch = "aarch64")]
mod mmio {
    /// # Safety
    ///
    /// `address` is a mapped, aligned 32-bit device register.
    pub unsafe fn read32(address: *const u32) -> u32 {
        let value: u32;
        // SAFETY: the caller's contract; one `ldr w` with a plain base
        // register, so the trap has a valid syndrome.
        unsafe {
            core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) address, v = out(reg) value, options(nostack, preserves_flags))
        };
        value
    }

    /// # Safety
    ///
    /// As [`read32`].
    pub unsafe fn write32(address: *mut u32, value: u32) {
        // SAFETY: the caller's contract; one `str w` on `[xN]`.
        unsafe {
            core::arch::asm!("str {v:w}, [{a}]", a = in(reg) address, v = in(reg) value, options(nostack, preserves_flags))
        };
    }

    /// # Safety
    ///
    /// `address` is a mapped, aligned 64-bit device register.
    pub unsafe fn read64(address: *const u64) -> u64 {
        let value: u64;
        // SAFETY: the caller's contract; one `ldr x` on `[xN]`.
        unsafe {
            core::arch::asm!("ldr {v:x}, [{a}]", a = in(reg) address, v = out(reg) value, options(nostack, preserves_flags))
        };
        value
    }

    /// # Safety
    ///
    /// As [`read64`].
    pub unsafe fn write64(address: *mut u64, value: u64) {
        // SAFETY: the caller's contract; one `str x` on `[xN]`.
        unsafe {
            core::arch::asm!("str {v:x}, [{a}]", a = in(reg) address, v = in(reg) value, options(nostack, preserves_flags))
        };
    }
}

/// Elsewhere (the host build, for tests and clippy) there is no trap to
/// care about: plain volatile accesses.
#[cfg(not(target_arch = "aarch64"))]
mod mmio {
    /// # Safety
    ///
    /// `address` is mapped and aligned.
    pub unsafe fn read32(address: *const u32) -> u32 {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::read_volatile(address) }
    }

    /// # Safety
    ///
    /// As [`read32`].
    pub unsafe fn write32(address: *mut u32, value: u32) {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::write_volatile(address, value) }
    }

    /// # Safety
    ///
    /// As [`read32`].
    pub unsafe fn read64(address: *const u64) -> u64 {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::read_volatile(address) }
    }

    /// # Safety
    ///
    /// As [`read32`].
    pub unsafe fn write64(address: *mut u64, value: u64) {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::write_volatile(address, value) }
    }
}

/// Offsets outside BAR0 or misaligned (none of `platform::portal::reg`'s)
/// read 0 and are not written, as the portal itself treats unknown ones.
impl Registers for Regs {
    fn read32(&self, offset: u64) -> u32 {
        // SAFETY: `at` checked that the register lies in the mapping and is
        // aligned.
        self.0.at(offset, 4).map_or(0, |a| unsafe { mmio::read32(a.cast()) })
    }

    fn write32(&self, offset: u64, value: u32) {
        if let Some(a) = self.0.at(offset, 4) {
            // SAFETY: as in `read32`.
            unsafe { mmio::write32(a.cast(), value) }
        }
    }

    fn read64(&self, offset: u64) -> u64 {
        // SAFETY: as in `read32`, 8 bytes.
        self.0.at(offset, 8).map_or(0, |a| unsafe { mmio::read64(a.cast()) })
    }

    fn write64(&self, offset: u64, value: u64) {
        if let Some(a) = self.0.at(offset, 8) {
            // SAFETY: as in `read64`.
            unsafe { mmio::write64(a.cast(), value) }
        }
    }
}

/// The portal's interrupt through its uio device (`uio_pci_generic`). The
/// kernel's handler masks the interrupt (sets the function's INTx
/// disable) each time it fires and counts it; `enable` clears INTx disable
/// in the function's config space (`<dev>/config`: the driver has no
/// `irqcontrol`, a write to `/dev/uioN` fails with `ENOSYS`), and `wait`
/// polls the uio device and reads its 4-byte event count.
pub struct Uio {
    file: std::fs::File,
    config: std::fs::File,
    name: String,
    config_name: String,
}

impl Uio {
    /// The uio device `name` (`uio0`) of the function at `device`.
    pub fn open(device: &Path, name: &str) -> Result<Self, PortalError> {
        let path = format!("/dev/{name}");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|error| PortalError::Device { what: format!("open {path}"), error })?;
        let config_path = device.join("config");
        let config_name = config_path.display().to_string();
        let config = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&config_path)
            .map_err(|error| PortalError::Device { what: format!("open {config_name}"), error })?;
        Ok(Self { file, config, name: path, config_name })
    }

    fn error(&self, what: &str) -> PortalError {
        PortalError::Device { what: format!("{what} {}", self.name), error: std::io::Error::last_os_error() }
    }

    /// The uio device's descriptor, for a caller that polls it together
    /// with others (`hvvirtio` waits on its console input too); after it
    /// polls readable, [`Uio::acknowledge`] consumes the interrupt.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// Reads the 4-byte event count, which is what makes the descriptor
    /// stop polling readable until the next interrupt.
    pub fn acknowledge(&mut self) -> Result<(), PortalError> {
        let mut count = [0u8; 4];
        std::io::Read::read_exact(&mut self.file, &mut count)
            .map_err(|error| PortalError::Device { what: format!("read the event count of {}", self.name), error })
    }
}

impl Interrupt for Uio {
    fn enable(&mut self) -> Result<(), PortalError> {
        use std::os::unix::fs::FileExt;
        let error = |error| PortalError::Device { what: format!("command register in {}", self.config_name), error };
        let mut high = [0u8];
        self.config.read_exact_at(&mut high, COMMAND_HIGH).map_err(error)?;
        // Only when set: while it is, the interrupt cannot fire, so nothing
        // changes the byte between the read and the write.
        match intx_enable(high[0]) {
            Some(enabled) => self.config.write_all_at(&[enabled], COMMAND_HIGH).map_err(error),
            None => Ok(()),
        }
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool, PortalError> {
        let mut fd = libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // Rounded up: a 0 would return at once and the caller would look
        // again before the deadline.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one pollfd, valid for the call.
        let ready = unsafe { libc::poll(&mut fd, 1, ms) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(self.error("poll"));
        }
        if ready == 0 || fd.revents & libc::POLLIN == 0 {
            if fd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                return Err(PortalError::Device {
                    what: format!("poll {}", self.name),
                    error: std::io::Error::other(format!("revents {:#x}", fd.revents)),
                });
            }
            return Ok(false);
        }
        self.acknowledge()?;
        Ok(true)
    }
}
