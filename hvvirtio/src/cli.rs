//! `hvvirtio`'s command line and the plan it makes from it and the
//! client's devices (which backing each device gets), pure so that the host
//! tests check both; the usage text is written once, here.

use crate::backend::ClientInfo;
use core::fmt;
use platform::forward::DeviceType;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: hvvirtio [--client NAME] [--block PATH[:ro]]... [--console-in PATH]
                [--console-out PATH] [-v]
       hvvirtio --help

Serves the virtio devices of a client VM from this service VM: finds the
backend function (PCI 1234:7a13) whose client is NAME (or the only one),
binds uio_pci_generic to it if it has no driver, and answers the client's
forwarded virtio-mmio accesses until killed.

  --client NAME       the client VM (its hv,name); needed when this VM
                      serves several
  --block PATH[:ro]   the file behind the client's next block device, in
                      device order (repeat for several); :ro read-only.
                      Every block device needs one
  --console-in PATH   the console's input: a file (read once; its end is
                      the end of input) or a FIFO (writers may come and
                      go); default standard input
  --console-out PATH  the console's output, appended to PATH; default
                      standard output
  -v                  report client resets and devices that need a reset

Exit status: 0 stopped by SIGTERM or SIGINT, 1 an error (printed), 2 usage.";

/// A block device's backing file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockArg {
    pub path: PathBuf,
    pub read_only: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub client: Option<String>,
    pub blocks: Vec<BlockArg>,
    pub console_in: Option<PathBuf>,
    pub console_out: Option<PathBuf>,
    pub verbose: bool,
    pub help: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageError {
    /// The option needs a value.
    MissingValue(String),
    Unexpected(String),
    /// Given twice where once is the rule.
    Repeated(String),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingValue(o) => write!(f, "{o} needs a value"),
            Self::Unexpected(a) => write!(f, "unexpected argument {a:?}"),
            Self::Repeated(o) => write!(f, "{o} given twice"),
        }
    }
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, UsageError> {
        let mut options = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| UsageError::MissingValue(arg.clone()));
            match arg.as_str() {
                "--client" => {
                    once(&options.client, &arg)?;
                    options.client = Some(value()?);
                }
                "--block" => {
                    let v = value()?;
                    let (path, read_only) = match v.strip_suffix(":ro") {
                        Some(path) => (path.to_owned(), true),
                        None => (v, false),
                    };
                    if path.is_empty() {
                        return Err(UsageError::MissingValue(arg));
                    }
                    options.blocks.push(BlockArg { path: path.into(), read_only });
                }
                "--console-in" => {
                    once(&options.console_in, &arg)?;
                    options.console_in = Some(value()?.into());
                }
                "--console-out" => {
                    once(&options.console_out, &arg)?;
                    options.console_out = Some(value()?.into());
                }
                "-v" | "--verbose" => options.verbose = true,
                "-h" | "--help" | "help" => options.help = true,
                _ => return Err(UsageError::Unexpected(arg)),
            }
        }
        Ok(options)
    }
}

/// An option that may be given once.
fn once<T>(slot: &Option<T>, arg: &str) -> Result<(), UsageError> {
    match slot {
        Some(_) => Err(UsageError::Repeated(arg.to_owned())),
        None => Ok(()),
    }
}

/// What one of the client's devices is served with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Block(BlockArg),
    Console,
}

/// Why the devices and the options do not go together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Device n is a block device and no `--block` is left for it.
    NoBlockFile { device: usize },
    /// More `--block` than block devices.
    UnusedBlock { given: usize, devices: usize },
    /// A second console (one input, one output: which would it get?).
    SecondConsole { device: usize },
    /// A virtio device ID this backend does not serve.
    UnknownType { device: usize, id: u32 },
    /// The client has no device on this link.
    NoDevices,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBlockFile { device } => {
                write!(f, "device {device} is a block device: give its backing file with --block PATH")
            }
            Self::UnusedBlock { given, devices } => {
                write!(f, "{given} --block given, but the client has {devices} block device(s)")
            }
            Self::SecondConsole { device } => write!(f, "device {device} is a second console; one is served"),
            Self::UnknownType { device, id } => write!(f, "device {device} has virtio device ID {id}, not served"),
            Self::NoDevices => f.write_str("the client has no device on this link"),
        }
    }
}

/// The backing of each device of `client`: the n-th block device gets the
/// n-th `--block`, the console the console options.
pub fn plan(client: &ClientInfo, options: &Options) -> Result<Vec<(usize, Plan)>, PlanError> {
    let mut plans = Vec::new();
    let mut blocks = options.blocks.iter();
    let mut console = false;
    for (device, kind) in client.devices() {
        match kind {
            Ok(DeviceType::Block) => {
                let arg = blocks.next().ok_or(PlanError::NoBlockFile { device })?;
                plans.push((device, Plan::Block(arg.clone())));
            }
            Ok(DeviceType::Console) if console => return Err(PlanError::SecondConsole { device }),
            Ok(DeviceType::Console) => {
                console = true;
                plans.push((device, Plan::Console));
            }
            Err(id) => return Err(PlanError::UnknownType { device, id }),
        }
    }
    if plans.is_empty() {
        return Err(PlanError::NoDevices);
    }
    let used = plans.iter().filter(|(_, p)| matches!(p, Plan::Block(_))).count();
    if used < options.blocks.len() {
        return Err(PlanError::UnusedBlock { given: options.blocks.len(), devices: used });
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn options_parse() {
        let o = Options::parse(args(&["--client", "a", "--block", "/d.img:ro", "--block", "x:y", "-v"])).unwrap();
        assert_eq!(o.client.as_deref(), Some("a"));
        assert_eq!(
            o.blocks,
            vec![
                BlockArg { path: "/d.img".into(), read_only: true },
                BlockArg { path: "x:y".into(), read_only: false }
            ]
        );
        assert!(o.verbose && !o.help);
        let o = Options::parse(args(&["--console-in", "/f", "--console-out", "/o"])).unwrap();
        assert_eq!((o.console_in, o.console_out), (Some("/f".into()), Some("/o".into())));
        assert!(Options::parse(args(&["--help"])).unwrap().help);
        assert_eq!(Options::parse(args(&["--client"])), Err(UsageError::MissingValue("--client".into())));
        assert_eq!(Options::parse(args(&["--block", ":ro"])), Err(UsageError::MissingValue("--block".into())));
        assert_eq!(
            Options::parse(args(&["--client", "a", "--client", "b"])),
            Err(UsageError::Repeated("--client".into()))
        );
        assert_eq!(Options::parse(args(&["serve"])), Err(UsageError::Unexpected("serve".into())));
    }

    fn client(types: &[u32]) -> ClientInfo {
        let mut device_types = [0; platform::forward::MAX_DEVICES];
        device_types[..types.len()].copy_from_slice(types);
        ClientInfo { name: "c".into(), ram_base: 0, ram_size: 0, device_types }
    }

    #[test]
    fn block_devices_take_the_block_files_in_order() {
        let o = Options::parse(args(&["--block", "a", "--block", "b:ro"])).unwrap();
        let plans = plan(&client(&[2, 3, 2]), &o).unwrap();
        assert_eq!(
            plans,
            vec![
                (0, Plan::Block(BlockArg { path: "a".into(), read_only: false })),
                (1, Plan::Console),
                (2, Plan::Block(BlockArg { path: "b".into(), read_only: true }))
            ]
        );
        let one = Options::parse(args(&["--block", "a"])).unwrap();
        assert_eq!(plan(&client(&[2, 3, 2]), &one), Err(PlanError::NoBlockFile { device: 2 }));
        assert_eq!(plan(&client(&[3]), &one), Err(PlanError::UnusedBlock { given: 1, devices: 0 }));
        assert_eq!(plan(&client(&[3, 3]), &Options::default()), Err(PlanError::SecondConsole { device: 1 }));
        assert_eq!(plan(&client(&[3, 9]), &Options::default()), Err(PlanError::UnknownType { device: 1, id: 9 }));
        assert_eq!(plan(&client(&[]), &Options::default()), Err(PlanError::NoDevices));
        assert_eq!(plan(&client(&[3]), &Options::default()), Ok(vec![(0, Plan::Console)]));
    }
}
