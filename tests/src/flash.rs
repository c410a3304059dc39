//! The flash image layout: what `mkflash` writes and the QEMU runner reads.
//!
//! `build/flash.bin` (QEMU's `-bios` file, loaded into the secure flash at
//! physical address 0) is:
//!
//! ```text
//! 0                      the EL3 monitor, flattened by load address
//! package_offset(len)    firmware package (platform::package): the
//!                        hypervisor and guest-stub, flattened by link
//!                        address, and the optional data entries ([`Extras`]:
//!                        a Linux kernel, initrd and command line, the
//!                        hypervisor's command line)
//! ```
//!
//! with the package at the next multiple of [`PACKAGE_ALIGN`](package::PACKAGE_ALIGN) after the
//! monitor and zero bytes between them. This module assembles that image from
//! the three ELF files ([`build_flash`]), refuses one that would not fit in
//! the 64 MiB flash, describes the result ([`FlashImage::summary`]), finds the
//! package again in an existing image ([`find_package`]) and parses the
//! `mkflash` command line ([`Command::parse`]).
//!
//! A board without flash at the reset vector loads the monitor's ELF and the
//! package separately (zcu102: `build/zcu102/package.bin`, `make image
//! BOARD=zcu102`): `mkflash --package-only` writes the package alone
//! ([`build_package`]), the same bytes as the package in `flash.bin`.
//! [`repack`] gives an existing image (either kind) other data entries,
//! for scenarios that boot the images `make image` wrote with a Linux guest.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use platform::package::{
    self, candidate_offsets, data_hints, sha256, EntryDesc, EntryKind, LoadHints, Package, PackageError, Sha256Digest,
};

use crate::elf::{self, ElfError};

/// Size of QEMU `virt`'s secure flash (flash0), which holds `-bios`.
pub const FLASH_SIZE_LIMIT: usize = 64 << 20;

/// One of the three images that make up the flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The EL3 monitor (executes in place from flash).
    Monitor,
    /// The EL2 hypervisor (a package entry).
    Hypervisor,
    /// The EL1 guest-stub (a package entry).
    GuestStub,
}

impl Part {
    /// The part's name, as on the `mkflash` command line.
    pub fn name(self) -> &'static str {
        match self {
            Part::Monitor => "monitor",
            Part::Hypervisor => "hypervisor",
            Part::GuestStub => "guest-stub",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a flash image could not be made.
#[derive(Debug)]
pub enum FlashError {
    /// An input ELF file could not be flattened.
    Elf {
        /// Which input.
        part: Part,
        /// What is wrong with it.
        error: ElfError,
    },
    /// The package could not be encoded (or did not verify after encoding).
    Package(PackageError),
    /// The image is larger than the flash.
    TooLarge {
        /// Size of the image.
        size: usize,
    },
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The command line is wrong.
    Usage(String),
    /// An image to repack holds no firmware package.
    NoPackage,
}

impl fmt::Display for FlashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlashError::Elf { part, error } => write!(f, "{part} ELF: {error}"),
            FlashError::Package(error) => write!(f, "{error}"),
            FlashError::TooLarge { size } => write!(
                f,
                "flash image is {size} bytes ({:.1} MiB), larger than QEMU's {} MiB secure flash",
                *size as f64 / (1 << 20) as f64,
                FLASH_SIZE_LIMIT >> 20
            ),
            FlashError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            FlashError::Usage(why) => write!(f, "{why}\n{USAGE}"),
            FlashError::NoPackage => f.write_str("no firmware package in the image"),
        }
    }
}

impl std::error::Error for FlashError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FlashError::Elf { error, .. } => Some(error),
            FlashError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<PackageError> for FlashError {
    fn from(error: PackageError) -> Self {
        FlashError::Package(error)
    }
}

/// Where one part ended up in the flash image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    /// The part's name: "monitor", "package", "hypervisor" or "guest-stub".
    pub name: &'static str,
    /// Offset in flash (= physical address).
    pub offset: usize,
    /// Bytes in flash.
    pub size: usize,
    /// Load hints for package entries; `None` for the monitor and package.
    pub load: Option<LoadHints>,
    /// SHA-256 of the part's bytes in flash.
    pub sha256: Sha256Digest,
}

/// A complete flash image and where its parts are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlashImage {
    /// The bytes to write to `flash.bin`.
    pub bytes: Vec<u8>,
    /// Offset of the firmware package.
    pub package_offset: usize,
    /// Monitor, package, then the package entries, in flash order.
    pub parts: Vec<PartInfo>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl FlashImage {
    /// A short table of the layout: each part's offset, size, memory size,
    /// entry offset and SHA-256 prefix.
    pub fn summary(&self) -> String {
        let mut s = if self.parts.first().is_some_and(|p| p.name == Part::Monitor.name()) {
            format!(
                "flash image: {:#x} bytes ({:.1}% of {} MiB flash)\n",
                self.bytes.len(),
                self.bytes.len() as f64 * 100.0 / FLASH_SIZE_LIMIT as f64,
                FLASH_SIZE_LIMIT >> 20
            )
        } else {
            format!("package image: {:#x} bytes (the monitor is loaded separately)\n", self.bytes.len())
        };
        let _ = writeln!(
            s,
            "  {:<13} {:>10} {:>10} {:>10} {:>8} {:>8}  sha256",
            "part", "offset", "size", "mem_size", "entry", "align"
        );
        for p in &self.parts {
            let (mem, entry, align) = match p.load {
                Some(l) => (format!("{:#x}", l.mem_size), format!("{:#x}", l.entry_offset), format!("{:#x}", l.align)),
                None if p.name == "monitor" => ("-".into(), "0x0".into(), "-".into()),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                s,
                "  {:<13} {:>#10x} {:>#10x} {:>10} {:>8} {:>8}  {}",
                p.name,
                p.offset,
                p.size,
                mem,
                entry,
                align,
                hex(&p.sha256[..8])
            );
        }
        s
    }
}

/// Lays out a flash image from an already-flat monitor and package entries.
pub fn assemble(monitor: &[u8], entries: &[EntryDesc<'_>]) -> Result<FlashImage, FlashError> {
    let package_offset = package::package_offset(monitor.len()).ok_or(FlashError::TooLarge { size: usize::MAX })?;
    let pkg = package::build(entries)?;
    let size = package_offset.checked_add(pkg.len()).ok_or(FlashError::TooLarge { size: usize::MAX })?;
    if size > FLASH_SIZE_LIMIT {
        return Err(FlashError::TooLarge { size });
    }
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(monitor);
    bytes.resize(package_offset, 0);
    bytes.extend_from_slice(&pkg);

    // Read the package back the way the monitor will.
    let parsed = Package::parse(&bytes[package_offset..])?;
    let mut parts = vec![
        PartInfo { name: Part::Monitor.name(), offset: 0, size: monitor.len(), load: None, sha256: sha256(monitor) },
        PartInfo {
            name: "package",
            offset: package_offset,
            size: parsed.total_size(),
            load: None,
            sha256: sha256(parsed.as_bytes()),
        },
    ];
    parts.extend(parsed.entries().map(|e| PartInfo {
        name: e.kind.name(),
        offset: package_offset + e.offset,
        size: e.payload.len(),
        load: Some(e.load),
        sha256: e.digest,
    }));
    Ok(FlashImage { bytes, package_offset, parts })
}

/// The package alone, as an image whose parts are the package and its
/// entries (offsets from the package's start).
pub fn assemble_package(entries: &[EntryDesc<'_>]) -> Result<FlashImage, FlashError> {
    let bytes = package::build(entries)?;
    let parsed = Package::parse(&bytes)?;
    let mut parts = vec![PartInfo {
        name: "package",
        offset: 0,
        size: parsed.total_size(),
        load: None,
        sha256: sha256(parsed.as_bytes()),
    }];
    parts.extend(parsed.entries().map(|e| PartInfo {
        name: e.kind.name(),
        offset: e.offset,
        size: e.payload.len(),
        load: Some(e.load),
        sha256: e.digest,
    }));
    Ok(FlashImage { bytes, package_offset: 0, parts })
}

/// The optional package entries (`platform::package`, "Data entries"): a
/// Linux guest and the hypervisor's command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// A Linux kernel, an arm64 `Image`.
    pub linux_kernel: Option<Vec<u8>>,
    /// Its initrd.
    pub linux_initrd: Option<Vec<u8>>,
    /// Its command line.
    pub linux_cmdline: Option<String>,
    /// The hypervisor's command line.
    pub hv_cmdline: Option<String>,
}

impl Extras {
    /// The entries, with the load hints their payloads imply; a payload
    /// that is not what its kind says is refused here, naming the kind.
    pub fn entries(&self) -> Result<Vec<EntryDesc<'_>>, FlashError> {
        let payloads = [
            (EntryKind::LinuxKernel, self.linux_kernel.as_deref()),
            (EntryKind::LinuxInitrd, self.linux_initrd.as_deref()),
            (EntryKind::LinuxCmdline, self.linux_cmdline.as_deref().map(str::as_bytes)),
            (EntryKind::HvCmdline, self.hv_cmdline.as_deref().map(str::as_bytes)),
        ];
        let mut entries = Vec::new();
        for (kind, payload) in payloads {
            let Some(payload) = payload else { continue };
            let load = data_hints(kind, payload)
                .map_err(|error| PackageError::BadPayload { kind, error })?
                .ok_or(PackageError::MissingEntry { kind })?;
            entries.push(EntryDesc { kind, payload, load });
        }
        Ok(entries)
    }
}

/// Flattens the hypervisor and the guest-stub and hands their package
/// entries, and `extras`', to `assemble`.
fn with_entries(
    hypervisor_elf: &[u8],
    guest_stub_elf: &[u8],
    extras: &Extras,
    assemble: impl FnOnce(&[EntryDesc<'_>]) -> Result<FlashImage, FlashError>,
) -> Result<FlashImage, FlashError> {
    let pie = |part, data| elf::flatten_pie(data).map_err(|error| FlashError::Elf { part, error });
    let hypervisor = pie(Part::Hypervisor, hypervisor_elf)?;
    let guest_stub = pie(Part::GuestStub, guest_stub_elf)?;
    let mut entries = vec![
        EntryDesc { kind: EntryKind::Hypervisor, payload: &hypervisor.bytes, load: hypervisor.load },
        EntryDesc { kind: EntryKind::GuestStub, payload: &guest_stub.bytes, load: guest_stub.load },
    ];
    entries.extend(extras.entries()?);
    assemble(&entries)
}

/// Builds the flash image from the three ELF files' contents and the
/// optional entries.
pub fn build_flash(
    monitor_elf: &[u8],
    hypervisor_elf: &[u8],
    guest_stub_elf: &[u8],
    extras: &Extras,
) -> Result<FlashImage, FlashError> {
    let monitor = elf::flatten_monitor(monitor_elf).map_err(|error| FlashError::Elf { part: Part::Monitor, error })?;
    with_entries(hypervisor_elf, guest_stub_elf, extras, |entries| assemble(&monitor, entries))
}

/// Builds the package alone from the hypervisor's and the guest-stub's ELF
/// files and the optional entries, for a board that loads it apart from
/// the monitor.
pub fn build_package(hypervisor_elf: &[u8], guest_stub_elf: &[u8], extras: &Extras) -> Result<FlashImage, FlashError> {
    with_entries(hypervisor_elf, guest_stub_elf, extras, assemble_package)
}

/// The image `image` (a flash image, or a package alone: one whose
/// package is at offset 0) with its data entries replaced by `extras`'s:
/// the same monitor, hypervisor and guest-stub.
pub fn repack(image: &[u8], extras: &Extras) -> Result<FlashImage, FlashError> {
    let (offset, package) = find_package(image).ok_or(FlashError::NoPackage)?;
    let mut entries: Vec<EntryDesc<'_>> = package
        .entries()
        .filter(|e| e.kind.is_image())
        .map(|e| EntryDesc { kind: e.kind, payload: e.payload, load: e.load })
        .collect();
    entries.extend(extras.entries()?);
    match offset {
        0 => assemble_package(&entries),
        _ => assemble(&image[..offset], &entries),
    }
}

/// Finds the firmware package in a flash image: the first offset that is a
/// multiple of [`PACKAGE_ALIGN`](package::PACKAGE_ALIGN), starts with the package magic, and parses.
/// Returns the offset and the parsed package.
pub fn find_package(flash: &[u8]) -> Option<(usize, Package<'_>)> {
    candidate_offsets(flash).find_map(|offset| {
        let pkg = Package::parse(flash.get(offset..)?).ok()?;
        Some((offset, pkg))
    })
}

/// Recomputes the header digest of the package at the start of `package`
/// after a deliberate edit of its header or entry table, so that a test
/// reaches the check behind the digest instead of the digest itself. The
/// table is as long as the header's entry count says (at most
/// [`MAX_ENTRIES`](package::MAX_ENTRIES), the most the parser reads).
pub fn reseal_header(package: &mut [u8]) {
    const COUNT: std::ops::Range<usize> = 16..20;
    const DIGEST: std::ops::Range<usize> = 32..package::HEADER_SIZE;
    let count = u32::from_le_bytes(package[COUNT].try_into().expect("4 bytes")) as usize;
    let end = package::HEADER_SIZE + count.min(package::MAX_ENTRIES) * package::ENTRY_SIZE;
    let mut covered = package[..end.min(package.len())].to_vec();
    covered[DIGEST].fill(0);
    let digest = sha256(&covered);
    package[DIGEST].copy_from_slice(&digest);
}

/// `mkflash` usage text.
pub const USAGE: &str = "\
usage: mkflash --monitor <ELF> --hypervisor <ELF> --guest-stub <ELF> [<entries>] -o <flash.bin>
       mkflash --package-only --hypervisor <ELF> --guest-stub <ELF> [<entries>] -o <package.bin>
optional package entries (platform/src/package.rs, \"Data entries\"):
       --linux-kernel <Image>  a Linux kernel (an arm64 Image) for the guest, when QEMU gives none
       --linux-initrd <FILE>   its initrd (with --linux-kernel)
       --linux-cmdline <TEXT>  its command line (with --linux-kernel)
       --hv-cmdline <TEXT>     the hypervisor's command line, when fw_cfg gives none";

/// The `mkflash` inputs and output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// The EL3 monitor ELF; `None` with `--package-only` (the output is the
    /// package alone).
    pub monitor: Option<PathBuf>,
    /// The EL2 hypervisor ELF.
    pub hypervisor: PathBuf,
    /// The guest-stub ELF.
    pub guest_stub: PathBuf,
    /// Where to write the flash image.
    pub output: PathBuf,
    /// A Linux kernel for the package.
    pub linux_kernel: Option<PathBuf>,
    /// Its initrd.
    pub linux_initrd: Option<PathBuf>,
    /// Its command line.
    pub linux_cmdline: Option<String>,
    /// The hypervisor's command line.
    pub hv_cmdline: Option<String>,
}

/// What the `mkflash` command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Print usage and exit successfully.
    Help,
    /// Build an image.
    Build(Args),
}

impl Command {
    /// Parses the arguments after the program name. Options take their
    /// value as the next argument or after `=` (`--monitor=path`).
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, FlashError> {
        let (mut monitor, mut hypervisor, mut guest_stub, mut output) = (None, None, None, None);
        let (mut linux_kernel, mut linux_initrd, mut linux_cmdline, mut hv_cmdline) = (None, None, None, None);
        let mut package_only = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let arg_str = arg.to_string_lossy().into_owned();
            let (name, inline) = match arg_str.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(OsString::from(v))),
                _ => (arg_str.clone(), None),
            };
            let (slot, what): (&mut Option<OsString>, _) = match name.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--package-only" if inline.is_none() => {
                    package_only = true;
                    continue;
                }
                "--monitor" => (&mut monitor, "a path"),
                "--hypervisor" => (&mut hypervisor, "a path"),
                "--guest-stub" => (&mut guest_stub, "a path"),
                "-o" | "--output" => (&mut output, "a path"),
                "--linux-kernel" => (&mut linux_kernel, "a path"),
                "--linux-initrd" => (&mut linux_initrd, "a path"),
                "--linux-cmdline" => (&mut linux_cmdline, "a text"),
                "--hv-cmdline" => (&mut hv_cmdline, "a text"),
                _ => return Err(FlashError::Usage(format!("unknown argument `{arg_str}`"))),
            };
            let value = match inline.or_else(|| args.next()) {
                Some(v) if !v.is_empty() => v,
                _ => return Err(FlashError::Usage(format!("`{name}` needs {what}"))),
            };
            if slot.replace(value).is_some() {
                return Err(FlashError::Usage(format!("`{name}` given twice")));
            }
        }
        let path = |v: Option<OsString>| v.map(PathBuf::from);
        let text = |v: Option<OsString>, name: &str| {
            v.map(|t| t.into_string().map_err(|_| FlashError::Usage(format!("`{name}` is not UTF-8")))).transpose()
        };
        let need =
            |v: Option<OsString>, name: &str| path(v).ok_or_else(|| FlashError::Usage(format!("missing `{name}`")));
        let monitor = match (package_only, monitor) {
            (true, Some(_)) => return Err(FlashError::Usage("`--package-only` takes no `--monitor`".into())),
            (true, None) => None,
            (false, monitor) => Some(need(monitor, "--monitor")?),
        };
        if linux_kernel.is_none() && (linux_initrd.is_some() || linux_cmdline.is_some()) {
            return Err(FlashError::Usage("`--linux-initrd` and `--linux-cmdline` need `--linux-kernel`".into()));
        }
        Ok(Command::Build(Args {
            monitor,
            hypervisor: need(hypervisor, "--hypervisor")?,
            guest_stub: need(guest_stub, "--guest-stub")?,
            output: need(output, "-o")?,
            linux_kernel: path(linux_kernel),
            linux_initrd: path(linux_initrd),
            linux_cmdline: text(linux_cmdline, "--linux-cmdline")?,
            hv_cmdline: text(hv_cmdline, "--hv-cmdline")?,
        }))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, FlashError> {
    std::fs::read(path).map_err(|error| FlashError::Io { path: path.to_owned(), error })
}

/// Reads the ELF files (and the Linux guest's), builds the image (the
/// flash image, or with no monitor the package alone) and writes it to
/// `args.output` (creating its directory). Returns the image.
pub fn run(args: &Args) -> Result<FlashImage, FlashError> {
    let extras = Extras {
        linux_kernel: args.linux_kernel.as_deref().map(read).transpose()?,
        linux_initrd: args.linux_initrd.as_deref().map(read).transpose()?,
        linux_cmdline: args.linux_cmdline.clone(),
        hv_cmdline: args.hv_cmdline.clone(),
    };
    let image = match &args.monitor {
        Some(monitor) => build_flash(&read(monitor)?, &read(&args.hypervisor)?, &read(&args.guest_stub)?, &extras)?,
        None => build_package(&read(&args.hypervisor)?, &read(&args.guest_stub)?, &extras)?,
    };
    let io = |error| FlashError::Io { path: args.output.clone(), error };
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(&args.output, &image.bytes).map_err(io)?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::testelf::{build, Seg, EM_AARCH64, EM_X86_64, ET_DYN, ET_EXEC};

    fn monitor_elf(len: usize) -> Vec<u8> {
        let text: Vec<u8> = (0..len).map(|i| (i % 251) as u8 | 1).collect();
        build(EM_AARCH64, ET_EXEC, 0, &[Seg::load(0, &text)])
    }

    fn pie_elf(fill: u8, len: usize, bss: u64, entry: u64) -> Vec<u8> {
        let text = vec![fill; len];
        let seg = Seg { memsz: len as u64 + bss, ..Seg::load(0, &text) };
        build(EM_AARCH64, ET_DYN, entry, &[seg])
    }

    fn sample() -> FlashImage {
        build_flash(
            &monitor_elf(5000),
            &pie_elf(0xee, 0x1234, 0x3000, 0x80),
            &pie_elf(0x77, 300, 0, 0),
            &Extras::default(),
        )
        .unwrap()
    }

    /// An arm64 Image header and a little more, whose `image_size` is
    /// `image_size`.
    fn kernel(image_size: u64) -> Vec<u8> {
        let mut k = vec![0u8; 0x3000];
        k[16..24].copy_from_slice(&image_size.to_le_bytes());
        k[24..32].copy_from_slice(&0xa_u64.to_le_bytes());
        k[0x38..0x3c].copy_from_slice(b"ARM\x64");
        k
    }

    fn linux_extras() -> Extras {
        Extras {
            linux_kernel: Some(kernel(0x40_0000)),
            linux_initrd: Some(vec![0x1f, 0x8b, 8, 0, 1, 2, 3]),
            linux_cmdline: Some("console=ttyPS0 linux-guest=poweroff".into()),
            hv_cmdline: Some("log=debug".into()),
        }
    }

    #[test]
    fn layout_puts_package_after_monitor() {
        let img = sample();
        assert_eq!(img.package_offset, 8192);
        let flash = &img.bytes;
        assert_eq!(flash[..5000], monitor_elf(5000)[64 + 56..]);
        assert!(flash[5000..8192].iter().all(|&b| b == 0));

        let pkg = Package::parse(&flash[8192..]).unwrap();
        assert_eq!(flash.len(), 8192 + pkg.total_size());
        let hyp = pkg.require(EntryKind::Hypervisor).unwrap();
        assert_eq!(hyp.payload, &[0xee; 0x1234][..]);
        assert_eq!(hyp.load, LoadHints { align: 0x1000, mem_size: 0x5000, entry_offset: 0x80 });
        let stub = pkg.require(EntryKind::GuestStub).unwrap();
        assert_eq!(stub.payload, &[0x77; 300][..]);
        assert_eq!(stub.load.mem_size, 0x1000);

        let names: Vec<_> = img.parts.iter().map(|p| p.name).collect();
        assert_eq!(names, ["monitor", "package", "hypervisor", "guest-stub"]);
        let hyp_info = &img.parts[2];
        assert_eq!(&flash[hyp_info.offset..hyp_info.offset + hyp_info.size], hyp.payload);
        let summary = img.summary();
        assert!(summary.contains("guest-stub") && summary.contains("0x5000"), "{summary}");
    }

    #[test]
    fn monitor_of_exact_page_size_gets_no_padding() {
        let img =
            build_flash(&monitor_elf(4096), &pie_elf(1, 16, 0, 0), &pie_elf(2, 16, 0, 0), &Extras::default()).unwrap();
        assert_eq!(img.package_offset, 4096);
    }

    #[test]
    fn reseal_makes_an_edited_header_verify_again() {
        let image = sample();
        let (offset, _) = find_package(&image.bytes).unwrap();
        let mut bytes = image.bytes.clone();
        // Entry 0's reserved flags: caught by the digest until resealed.
        bytes[offset + package::HEADER_SIZE + 4] = 1;
        let package = &mut bytes[offset..];
        assert_eq!(Package::parse(package).unwrap_err(), PackageError::HeaderDigestMismatch);
        reseal_header(package);
        assert_eq!(Package::parse(package).unwrap_err(), PackageError::NonZeroReserved { index: 0, value: 1 });
        package[package::HEADER_SIZE + 4] = 0;
        reseal_header(package);
        assert!(Package::parse(package).is_ok());
    }

    #[test]
    fn find_package_skips_decoys() {
        let mut img = sample();
        // The monitor's .rodata holds the magic; put a copy at an aligned
        // offset inside the monitor region as a decoy.
        img.bytes[4096..4104].copy_from_slice(&package::MAGIC);
        let (offset, pkg) = find_package(&img.bytes).unwrap();
        assert_eq!(offset, img.package_offset);
        assert_eq!(pkg.total_size(), img.bytes.len() - offset);

        assert!(find_package(&img.bytes[..img.bytes.len() - 1]).is_none());
        let mut damaged = img.bytes.clone();
        let stub = &img.parts[3];
        damaged[stub.offset + 7] ^= 0x40;
        assert!(find_package(&damaged).is_none());
        assert_eq!(
            Package::parse(&damaged[offset..]).unwrap_err(),
            PackageError::PayloadDigestMismatch { kind: EntryKind::GuestStub }
        );
    }

    #[test]
    fn rejects_wrong_inputs_naming_the_part() {
        let x86 = build(EM_X86_64, ET_DYN, 0, &[Seg::load(0, &[1; 8])]);
        let err = build_flash(&monitor_elf(100), &pie_elf(1, 8, 0, 0), &x86, &Extras::default()).unwrap_err();
        assert!(matches!(
            err,
            FlashError::Elf { part: Part::GuestStub, error: ElfError::WrongMachine { machine: 62 } }
        ));
        assert!(err.to_string().starts_with("guest-stub ELF:"), "{err}");

        let err = build_flash(&x86, &pie_elf(1, 8, 0, 0), &pie_elf(1, 8, 0, 0), &Extras::default()).unwrap_err();
        assert!(matches!(err, FlashError::Elf { part: Part::Monitor, .. }));
    }

    #[test]
    fn refuses_images_larger_than_flash() {
        let big = vec![0u8; FLASH_SIZE_LIMIT - 4096];
        let payload = [1u8; 8192];
        let desc = EntryDesc {
            kind: EntryKind::Hypervisor,
            payload: &payload,
            load: LoadHints { align: 4096, mem_size: 8192, entry_offset: 0 },
        };
        let err = assemble(&big, &[desc]).unwrap_err();
        assert!(matches!(err, FlashError::TooLarge { size } if size > FLASH_SIZE_LIMIT));
        assert!(err.to_string().contains("64 MiB"), "{err}");
        let small = [1u8; 1024];
        assert!(assemble(&big, &[EntryDesc { payload: &small, ..desc }]).is_ok());
    }

    #[test]
    fn extras_become_data_entries() {
        let image =
            build_flash(&monitor_elf(5000), &pie_elf(1, 64, 0, 0), &pie_elf(2, 64, 0, 0), &linux_extras()).unwrap();
        let (_, package) = find_package(&image.bytes).unwrap();
        let kinds: Vec<_> = package.entries().map(|e| e.kind).collect();
        assert_eq!(kinds, EntryKind::ALL);
        let kernel = package.require(EntryKind::LinuxKernel).unwrap();
        assert_eq!(kernel.load, LoadHints { align: 0x20_0000, mem_size: 0x40_0000, entry_offset: 0 });
        assert_eq!(package.require(EntryKind::HvCmdline).unwrap().payload, b"log=debug");
        // What a data entry may not be is refused by kind.
        for (extras, want) in [
            (Extras { linux_kernel: Some(vec![0; 64]), ..Extras::default() }, "linux-kernel entry: not a Linux kernel"),
            (
                Extras { hv_cmdline: Some("a\nb".into()), ..Extras::default() },
                "hv-cmdline entry: the command line has a control character",
            ),
            (
                Extras { linux_initrd: Some(vec![1]), ..Extras::default() },
                "has a linux-initrd entry but no linux-kernel entry",
            ),
        ] {
            let err = build_package(&pie_elf(1, 64, 0, 0), &pie_elf(2, 64, 0, 0), &extras).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn repack_replaces_the_data_entries() {
        let plain = sample();
        let with = repack(&plain.bytes, &linux_extras()).unwrap();
        assert_eq!(with.package_offset, plain.package_offset);
        assert_eq!(with.bytes[..plain.package_offset], plain.bytes[..plain.package_offset], "the same monitor");
        let (_, package) = find_package(&with.bytes).unwrap();
        assert_eq!(package.entries().count(), 6);
        let (_, before) = find_package(&plain.bytes).unwrap();
        for kind in [EntryKind::Hypervisor, EntryKind::GuestStub] {
            assert_eq!(package.require(kind).unwrap().payload, before.require(kind).unwrap().payload);
        }
        // And back: the data entries go, the bytes are the original's.
        assert_eq!(repack(&with.bytes, &Extras::default()).unwrap().bytes, plain.bytes);
        // A package alone stays a package alone.
        let alone = &plain.bytes[plain.package_offset..];
        let repacked = repack(alone, &linux_extras()).unwrap();
        assert_eq!(repacked.package_offset, 0);
        assert_eq!(repacked.parts[0].name, "package");
        assert!(Package::parse(&repacked.bytes).unwrap().entry(EntryKind::LinuxKernel).is_some());
        assert!(matches!(repack(&plain.bytes[..100], &Extras::default()), Err(FlashError::NoPackage)));
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn command_line() {
        let cmd = Command::parse(os(&[
            "--monitor",
            "m.elf",
            "--hypervisor=h.elf",
            "--guest-stub",
            "g.elf",
            "-o",
            "build/flash.bin",
        ]))
        .unwrap();
        let plain = Args {
            monitor: Some("m.elf".into()),
            hypervisor: "h.elf".into(),
            guest_stub: "g.elf".into(),
            output: "build/flash.bin".into(),
            linux_kernel: None,
            linux_initrd: None,
            linux_cmdline: None,
            hv_cmdline: None,
        };
        assert_eq!(cmd, Command::Build(plain.clone()));
        assert_eq!(Command::parse(os(&["--help"])).unwrap(), Command::Help);
        let package = Command::parse(os(&["--package-only", "--hypervisor", "h", "--guest-stub", "g", "-o", "p"]));
        assert_eq!(
            package.unwrap(),
            Command::Build(Args {
                monitor: None,
                hypervisor: "h".into(),
                guest_stub: "g".into(),
                output: "p".into(),
                ..plain.clone()
            })
        );
        // The package's data entries: paths and texts, `=` or not.
        let linux = Command::parse(os(&[
            "--package-only",
            "--hypervisor",
            "h",
            "--guest-stub",
            "g",
            "--linux-kernel",
            "build/linux/Image",
            "--linux-initrd=build/linux/initramfs.cpio.gz",
            "--linux-cmdline",
            "console=ttyPS0 linux-guest=poweroff",
            "--hv-cmdline=log=debug mode=nvhe",
            "-o",
            "p",
        ]));
        assert_eq!(
            linux.unwrap(),
            Command::Build(Args {
                monitor: None,
                hypervisor: "h".into(),
                guest_stub: "g".into(),
                output: "p".into(),
                linux_kernel: Some("build/linux/Image".into()),
                linux_initrd: Some("build/linux/initramfs.cpio.gz".into()),
                linux_cmdline: Some("console=ttyPS0 linux-guest=poweroff".into()),
                hv_cmdline: Some("log=debug mode=nvhe".into()),
            })
        );
        for (args, want) in [
            (
                &["--package-only", "--monitor", "m", "--hypervisor", "h", "--guest-stub", "g", "-o", "p"][..],
                "takes no",
            ),
            (&["--package-only=x"][..], "unknown argument `--package-only=x`"),
            (&["--monitor"][..], "`--monitor` needs a path"),
            (&["--bogus"][..], "unknown argument `--bogus`"),
            (&["--monitor", "a", "--monitor", "b"][..], "given twice"),
            (&["--monitor", "a"][..], "missing `--hypervisor`"),
            (&["--linux-cmdline"][..], "`--linux-cmdline` needs a text"),
            (&["--hv-cmdline="][..], "`--hv-cmdline` needs a text"),
            (&["--linux-kernel", "k", "--linux-kernel", "k"][..], "given twice"),
            (
                &["--monitor", "m", "--hypervisor", "h", "--guest-stub", "g", "-o", "o", "--linux-initrd", "i"][..],
                "need `--linux-kernel`",
            ),
        ] {
            let err = Command::parse(os(args)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(want) && msg.contains("usage:"), "{msg}");
        }
    }

    #[test]
    fn run_writes_the_file() {
        let dir = std::env::temp_dir().join(format!("mkflash-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, data: Vec<u8>| {
            let p = dir.join(name);
            std::fs::write(&p, data).unwrap();
            p
        };
        let args = Args {
            monitor: Some(write("m.elf", monitor_elf(100))),
            hypervisor: write("h.elf", pie_elf(3, 64, 0, 0)),
            guest_stub: write("g.elf", pie_elf(4, 64, 0, 0)),
            output: dir.join("out/flash.bin"),
            linux_kernel: None,
            linux_initrd: None,
            linux_cmdline: None,
            hv_cmdline: None,
        };
        let img = run(&args).unwrap();
        assert_eq!(std::fs::read(&args.output).unwrap(), img.bytes);

        // The package alone: the same bytes as in the flash image.
        let package_only = Args { monitor: None, output: dir.join("out/package.bin"), ..args.clone() };
        let package = run(&package_only).unwrap();
        assert_eq!(std::fs::read(&package_only.output).unwrap(), package.bytes);
        assert_eq!(package.bytes, img.bytes[img.package_offset..]);
        let names: Vec<_> = package.parts.iter().map(|p| p.name).collect();
        assert_eq!(names, ["package", "hypervisor", "guest-stub"]);
        assert!(package.summary().starts_with("package image: "), "{}", package.summary());

        // With a Linux guest and the hypervisor's command line.
        let linux = Args {
            monitor: None,
            output: dir.join("out/linux.bin"),
            linux_kernel: Some(write("Image", kernel(0x40_0000))),
            linux_initrd: Some(write("initrd", vec![1, 2, 3])),
            linux_cmdline: Some("console=ttyPS0".into()),
            hv_cmdline: Some("log=debug".into()),
            ..args.clone()
        };
        let image = run(&linux).unwrap();
        let names: Vec<_> = image.parts.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            ["package", "hypervisor", "guest-stub", "linux-kernel", "linux-initrd", "linux-cmdline", "hv-cmdline"]
        );
        let package = Package::parse(&image.bytes).unwrap();
        assert_eq!(package.require(EntryKind::LinuxCmdline).unwrap().payload, b"console=ttyPS0");
        assert!(image.summary().contains("linux-cmdline"), "{}", image.summary());
        let not_an_image = Args { linux_kernel: Some(write("gz", vec![0x1f, 0x8b, 8, 0])), ..linux };
        let err = run(&not_an_image).unwrap_err();
        assert!(err.to_string().starts_with("firmware package linux-kernel entry: not a Linux kernel"), "{err}");

        let missing = Args { monitor: Some(dir.join("nope.elf")), ..args };
        let err = run(&missing).unwrap_err();
        assert!(matches!(err, FlashError::Io { .. }));
        assert!(err.to_string().contains("nope.elf"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
