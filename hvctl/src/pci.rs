//! What `hvctl portal` and `hvctl vm` share about the hypervisor's PCI
//! functions, pure: finding a function by its IDs in sysfs, BAR sizes from
//! its `resource` file, the register block trait ([`Registers`]) the
//! protocols run over, and the error of mapping or opening a device
//! ([`DeviceError`]). `crate::device` (Linux) supplies the real
//! register block (BAR0 mapped from `resource0`); the host tests drive the
//! protocols with the hypervisor's own register models.

use core::fmt;
use std::path::{Path, PathBuf};

/// Where Linux lists the PCI functions.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// A register block (a BAR0 the hypervisor emulates). Offsets are the
/// device's; every access is one aligned 32- or 64-bit access.
pub trait Registers {
    fn read32(&self, offset: u64) -> u32;
    fn write32(&self, offset: u64, value: u32);
    fn read64(&self, offset: u64) -> u64;
    fn write64(&self, offset: u64, value: u64);
}

/// A sysfs file or directory that could not be read.
#[derive(Debug)]
pub struct SysfsError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

impl fmt::Display for SysfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for SysfsError {}

/// A device file that could not be opened, mapped or locked: `what` was
/// being done.
#[derive(Debug)]
pub struct DeviceError {
    pub what: String,
    pub error: std::io::Error,
}

impl DeviceError {
    /// Whether the kernel refused the access itself (`EACCES`, `EPERM`):
    /// the process lacks the privilege, as opposed to a device in trouble.
    pub fn is_permission(&self) -> bool {
        self.error.kind() == std::io::ErrorKind::PermissionDenied
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.error)
    }
}

impl std::error::Error for DeviceError {}

/// A PCI function in sysfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// Its address, e.g. `0000:00:10.0`.
    pub address: String,
    /// Its sysfs directory.
    pub path: PathBuf,
}

/// A sysfs ID file: `0x1234` and a newline.
fn id_file(path: &Path) -> Option<u64> {
    crate::parse_hex(std::fs::read_to_string(path).ok()?.trim())
}

/// The functions under `root` (`/sys/bus/pci/devices` on Linux) with
/// `vendor`:`device`, in PCI address order. An entry whose IDs cannot be
/// read is not one of them; only an unreadable `root` is an error.
pub fn functions(root: &Path, vendor: u16, device: u16) -> Result<Vec<PciFunction>, SysfsError> {
    let mut entries: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .map_err(|error| SysfsError { path: root.to_owned(), error })?
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    entries.sort();
    let wanted = (Some(u64::from(vendor)), Some(u64::from(device)));
    Ok(entries
        .into_iter()
        .filter(|(_, path)| (id_file(&path.join("vendor")), id_file(&path.join("device"))) == wanted)
        .map(|(address, path)| PciFunction { address, path })
        .collect())
}

/// The text of the function's `resource` file.
pub fn resource(function: &PciFunction) -> Result<String, SysfsError> {
    let path = function.path.join("resource");
    std::fs::read_to_string(&path).map_err(|error| SysfsError { path, error })
}

/// The size of BAR `bar` from a `resource` file: one `start end flags` line
/// per resource, BAR0 first; an unused BAR reads all zeros.
pub fn bar_size(resource: &str, bar: usize) -> Option<u64> {
    let line = resource.lines().nth(bar)?;
    let mut fields = line.split_whitespace();
    let (start, end) = (crate::parse_hex(fields.next()?)?, crate::parse_hex(fields.next()?)?);
    (end > start).then(|| end - start + 1)
}
