//! The pure half of `hvctl vm`: its command line, finding the VM control
//! function in sysfs, the line `hvctl vm list` prints (which the scenarios
//! parse back with [`VmLine::parse`]), and the list and command protocols
//! over its register block (`hvctl::pci::Registers`). The binary maps the
//! real BAR0 (`device`); the host tests drive the same code with
//! `platform::control::ControlModel`.
//!
//! The control function is a PCI function with [`VENDOR_ID`]:[`DEVICE_ID`]
//! that only a VM described with `hv,manager` has (`platform::control`
//! documents its registers). In any other VM every `hvctl vm` command
//! fails with [`VmError::NotManager`] and [`EXIT_PERMISSION`].

use crate::pci::{bar_size, DeviceError, PciFunction, Registers, SysfsError};
use crate::UsageError;
use core::fmt;
use platform::control::{
    reg, CommandCode, CommandResult, VmState, DEVICE_ID, FLAG_AUTOSTART, FLAG_MANAGER, FLAG_SELF, ID_VALUE, NAME_LEN,
    REGS_SIZE, VENDOR_ID,
};
use std::path::{Path, PathBuf};

/// Exit status: done (the command was carried out; `list` printed).
pub const EXIT_OK: u8 = 0;
/// Exit status: an error (sysfs, the device, a register that reads
/// nonsense).
pub const EXIT_ERROR: u8 = 1;
/// Exit status: a usage error (hvctl's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: refused, the VM is not in a state for the command
/// (stopping a VM that is off, starting one that runs).
pub const EXIT_WRONG_STATE: u8 = 3;
/// Exit status: refused, the VM named is the manager itself.
pub const EXIT_SELF: u8 = 4;
/// Exit status: permission denied: this VM is not a manager (no control
/// function), or the process may not open its registers (not root).
pub const EXIT_PERMISSION: u8 = 5;
/// Exit status: refused, no VM has that name.
pub const EXIT_NO_SUCH_VM: u8 = 6;
/// Exit status: failed, the hypervisor could not start the VM.
pub const EXIT_FAILED: u8 = 7;

/// At most this many VMs are listed: a `VM_COUNT` above it is a register
/// that reads nonsense, not a machine (the hypervisor holds 8).
pub const MAX_LISTED: u32 = 64;

/// `hvctl vm ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmAction {
    List,
    /// `stop`, `restart` or `start` the VM named `name`.
    Command {
        code: CommandCode,
        name: String,
    },
}

impl VmAction {
    /// Parses the words after `vm`.
    pub fn parse(words: &[String]) -> Result<Self, UsageError> {
        let (action, rest) =
            words.split_first().ok_or(UsageError::MissingArgument("a vm command (list, stop, restart or start)"))?;
        let code = match action.as_str() {
            "list" => {
                return match rest.first() {
                    Some(extra) => Err(UsageError::UnexpectedArgument(extra.clone())),
                    None => Ok(Self::List),
                }
            }
            "stop" => CommandCode::Stop,
            "restart" => CommandCode::Restart,
            "start" => CommandCode::Start,
            other => return Err(UsageError::UnknownCommand(format!("vm {other}"))),
        };
        match rest {
            [] => Err(UsageError::MissingArgument("the VM's name")),
            [name] => Ok(Self::Command { code, name: name.clone() }),
            [_, extra, ..] => Err(UsageError::UnexpectedArgument(extra.clone())),
        }
    }
}

// --- errors ------------------------------------------------------------------

/// What can go wrong with `hvctl vm`, other than the command line.
#[derive(Debug)]
pub enum VmError {
    /// No control function: this VM is not a manager.
    NotManager,
    /// The kernel refused to open or map the registers: not root.
    NotPermitted(DeviceError),
    /// A sysfs file or directory could not be read.
    Sysfs(SysfsError),
    /// The function's `resource` file lists no BAR0 large enough.
    NoRegisters { path: PathBuf },
    /// The registers could not be opened, mapped or locked.
    Device(DeviceError),
    /// `ID` does not read [`ID_VALUE`].
    NotControl { address: String, id: u32 },
    /// `VM_COUNT` reads more than [`MAX_LISTED`].
    BadCount(u32),
    /// No VM has this name; `known` are the names there are.
    NoSuchVm { name: String, known: Vec<String> },
    /// `RESULT` reads a value that is no [`CommandResult`].
    BadResult(u32),
    /// `RESULT` still reads "no command" after the write to `COMMAND`.
    NotCarriedOut,
}

impl VmError {
    /// The exit status `hvctl vm` gives this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            Self::NotManager | Self::NotPermitted(_) => EXIT_PERMISSION,
            Self::NoSuchVm { .. } => EXIT_NO_SUCH_VM,
            _ => EXIT_ERROR,
        }
    }
}

/// The message of [`VmError::NotManager`] (after `hvctl: vm: `).
pub const NOT_MANAGER: &str = "permission denied: this VM is not a manager (no VM control function 1234:7a12)";

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotManager => f.write_str(NOT_MANAGER),
            Self::NotPermitted(e) => {
                write!(f, "permission denied: {e} (only root may use the VM control function's registers)")
            }
            Self::Sysfs(e) => write!(f, "{e}"),
            Self::NoRegisters { path } => {
                write!(f, "{}: no BAR0 of {REGS_SIZE:#x} bytes (the control function's registers) listed", path.display())
            }
            Self::Device(e) => write!(f, "{e}"),
            Self::NotControl { address, id } => write!(
                f,
                "{address}: ID reads {id:#010x}, not the control function's {ID_VALUE:#010x}; is the function's memory decoding on?"
            ),
            Self::BadCount(n) => write!(f, "VM_COUNT reads {n}, more than the {MAX_LISTED} VMs hvctl lists"),
            Self::NoSuchVm { name, known } => {
                write!(f, "refused: no VM named {name:?} (the VMs: {})", known.join(", "))
            }
            Self::BadResult(v) => write!(f, "RESULT reads {v:#x}, which is no result"),
            Self::NotCarriedOut => {
                f.write_str("RESULT still reads \"no command yet\" after the write to COMMAND: the command did not reach the hypervisor")
            }
        }
    }
}

impl std::error::Error for VmError {}

impl From<SysfsError> for VmError {
    fn from(e: SysfsError) -> Self {
        Self::Sysfs(e)
    }
}

impl From<DeviceError> for VmError {
    fn from(e: DeviceError) -> Self {
        if e.is_permission() {
            Self::NotPermitted(e)
        } else {
            Self::Device(e)
        }
    }
}

// --- sysfs -------------------------------------------------------------------

/// The control function under `root` (`/sys/bus/pci/devices` on Linux):
/// the first one in address order (a manager has one). None is
/// [`VmError::NotManager`]; one whose `resource` lists no BAR0 of
/// [`REGS_SIZE`] bytes or more is an error.
pub fn discover(root: &Path) -> Result<PciFunction, VmError> {
    let function = crate::pci::functions(root, VENDOR_ID, DEVICE_ID)?.into_iter().next().ok_or(VmError::NotManager)?;
    let text = crate::pci::resource(&function)?;
    match bar_size(&text, 0) {
        Some(size) if size >= REGS_SIZE => Ok(function),
        _ => Err(VmError::NoRegisters { path: function.path.join("resource") }),
    }
}

// --- the list line -------------------------------------------------------------

/// What `STATE` read: a [`VmState`] or something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateWord(pub u32);

impl StateWord {
    pub fn state(self) -> Option<VmState> {
        VmState::from_u32(self.0)
    }

    fn parse(word: &str) -> Option<Self> {
        [VmState::Off, VmState::Running, VmState::Stopping]
            .into_iter()
            .find(|s| s.name() == word)
            .map(|s| Self(s as u32))
            .or_else(|| Some(Self(word.strip_prefix("unknown-")?.parse().ok()?)))
    }
}

impl fmt::Display for StateWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state() {
            Some(state) => f.write_str(state.name()),
            None => write!(f, "unknown-{}", self.0),
        }
    }
}

/// The flags by name, in the order the line lists them.
const FLAG_NAMES: [(u32, &str); 3] = [(FLAG_MANAGER, "manager"), (FLAG_AUTOSTART, "autostart"), (FLAG_SELF, "self")];

/// Prefix of [`VmLine`].
pub const VM_LINE_PREFIX: &str = "vm ";

/// One line of `hvctl vm list`:
///
/// ```text
/// vm 0: svc, running, 1 vCPU, 512 MiB, exit status 0, starts 1, flags manager,autostart,self
/// vm 3: later, off, 2 vCPUs, 64 MiB, exit status 0, starts 0, flags -
/// ```
///
/// The VM's index (description order), its name, `STATE` (`off`,
/// `running`, `stopping`, or `unknown-N`), its vCPUs, its RAM (in MiB, or
/// `N KiB` if not a whole number of MiB), the exit status it reported last
/// (decimal), how many times it was started, and its flags (`manager`,
/// `autostart`, `self`, comma-separated without spaces, an unknown bit as
/// `0x...`; `-` if none). Fields are separated by `, `, which no field
/// holds: a name byte other than `a-z`, `0-9`, `_` and `-` is shown as
/// `\xNN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmLine {
    pub index: u32,
    pub name: String,
    pub state: StateWord,
    pub vcpus: u32,
    pub memory_kib: u32,
    pub exit_status: u32,
    pub starts: u32,
    pub flags: u32,
}

impl VmLine {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag == flag
    }

    /// Parses a whole line, prefix included (the inverse of `Display`).
    pub fn parse(line: &str) -> Option<Self> {
        let (index, rest) = line.strip_prefix(VM_LINE_PREFIX)?.split_once(": ")?;
        let fields: Vec<&str> = rest.split(", ").collect();
        let [name, state, vcpus, memory, exit_status, starts, flags] = fields.as_slice() else {
            return None;
        };
        let vcpus: u32 = match vcpus.split_once(' ')? {
            ("1", "vCPU") => 1,
            (n, "vCPUs") if n != "1" => n.parse().ok()?,
            _ => return None,
        };
        let memory_kib = match memory.split_once(' ')? {
            (n, "MiB") => n.parse::<u32>().ok()?.checked_mul(1024)?,
            (n, "KiB") => n.parse::<u32>().ok().filter(|k| k % 1024 != 0)?,
            _ => return None,
        };
        let flags = match *flags {
            "flags -" => 0,
            f => {
                let mut bits = 0;
                for word in f.strip_prefix("flags ")?.split(',') {
                    let bit = match FLAG_NAMES.iter().find(|(_, n)| *n == word) {
                        Some((bit, _)) => *bit,
                        None => u32::try_from(crate::parse_hex(word)?).ok()?,
                    };
                    if bit == 0 || bits & bit != 0 {
                        return None;
                    }
                    bits |= bit;
                }
                bits
            }
        };
        let parsed = Self {
            index: index.parse().ok()?,
            name: (*name).to_owned(),
            state: StateWord::parse(state)?,
            vcpus,
            memory_kib,
            exit_status: exit_status.strip_prefix("exit status ")?.parse().ok()?,
            starts: starts.strip_prefix("starts ")?.parse().ok()?,
            flags,
        };
        // Only the canonical spelling (no `flags self,manager`, no `0x4`).
        (parsed.to_string() == line).then_some(parsed)
    }
}

impl fmt::Display for VmLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VM_LINE_PREFIX}{}: {}, {}, ", self.index, self.name, self.state)?;
        match self.vcpus {
            1 => f.write_str("1 vCPU, ")?,
            n => write!(f, "{n} vCPUs, ")?,
        }
        match self.memory_kib {
            k if k % 1024 == 0 => write!(f, "{} MiB, ", k / 1024)?,
            k => write!(f, "{k} KiB, ")?,
        }
        write!(f, "exit status {}, starts {}, flags ", self.exit_status, self.starts)?;
        if self.flags == 0 {
            return f.write_str("-");
        }
        let mut first = true;
        let mut separator = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { "," };
            first = false;
            f.write_str(s)
        };
        for (bit, name) in FLAG_NAMES {
            if self.flags & bit != 0 {
                separator(f)?;
                f.write_str(name)?;
            }
        }
        let known = FLAG_NAMES.iter().fold(0, |all, (bit, _)| all | bit);
        for bit in (0..32).map(|n| 1u32 << n).filter(|bit| self.flags & !known & bit != 0) {
            separator(f)?;
            write!(f, "{bit:#x}")?;
        }
        Ok(())
    }
}

/// `NAME`'s bytes up to the first NUL, as the line shows them: `a-z`,
/// `0-9`, `_` and `-` as they are, any other byte as `\xNN`.
pub fn name_text(bytes: &[u8]) -> String {
    let mut text = String::new();
    for &b in bytes.iter().take_while(|&&b| b != 0) {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' {
            text.push(char::from(b));
        } else {
            text += &format!("\\x{b:02x}");
        }
    }
    text
}

// --- the protocols -------------------------------------------------------------

/// Checks that the registers at `address` are the control function's.
pub fn check_id(regs: &impl Registers, address: &str) -> Result<(), VmError> {
    match regs.read32(reg::ID) {
        ID_VALUE => Ok(()),
        id => Err(VmError::NotControl { address: address.to_owned(), id }),
    }
}

/// How many VMs there are (`VM_COUNT`, bounded by [`MAX_LISTED`]).
pub fn count(regs: &impl Registers) -> Result<u32, VmError> {
    match regs.read32(reg::VM_COUNT) {
        n if n > MAX_LISTED => Err(VmError::BadCount(n)),
        n => Ok(n),
    }
}

/// The name of the selected VM, as [`name_text`] shows it.
fn selected_name(regs: &impl Registers) -> String {
    let mut bytes = [0u8; NAME_LEN];
    for (k, word) in bytes.chunks_mut(4).enumerate() {
        word.copy_from_slice(&regs.read32(reg::NAME + 4 * k as u64).to_le_bytes());
    }
    name_text(&bytes)
}

/// Selects VM `index` and reads its line.
pub fn read_vm(regs: &impl Registers, index: u32) -> VmLine {
    regs.write32(reg::SELECT, index);
    VmLine {
        index,
        name: selected_name(regs),
        state: StateWord(regs.read32(reg::STATE)),
        vcpus: regs.read32(reg::VCPUS),
        memory_kib: regs.read32(reg::MEMORY_KIB),
        exit_status: regs.read32(reg::EXIT_STATUS),
        starts: regs.read32(reg::STARTS),
        flags: regs.read32(reg::FLAGS),
    }
}

/// Every VM's line, in index order.
pub fn list(regs: &impl Registers) -> Result<Vec<VmLine>, VmError> {
    Ok((0..count(regs)?).map(|index| read_vm(regs, index)).collect())
}

/// The index of the VM named `name`: each VM is selected and its `NAME`
/// read, in index order.
pub fn find(regs: &impl Registers, name: &str) -> Result<u32, VmError> {
    let mut known = Vec::new();
    for index in 0..count(regs)? {
        regs.write32(reg::SELECT, index);
        let found = selected_name(regs);
        if found == name {
            return Ok(index);
        }
        known.push(found);
    }
    Err(VmError::NoSuchVm { name: name.to_owned(), known })
}

/// `code` on the VM named `name`: finds it, writes `SELECT` then
/// `COMMAND`, and returns what `RESULT` then reads (the hypervisor carries
/// a command out before the write completes).
pub fn command(regs: &impl Registers, name: &str, code: CommandCode) -> Result<CommandResult, VmError> {
    let index = find(regs, name)?;
    regs.write32(reg::SELECT, index);
    regs.write32(reg::COMMAND, code as u32);
    let result = regs.read32(reg::RESULT);
    match CommandResult::from_u32(result) {
        Some(CommandResult::None) => Err(VmError::NotCarriedOut),
        Some(result) => Ok(result),
        None => Err(VmError::BadResult(result)),
    }
}

/// The exit status `hvctl vm stop|restart|start` gives a result.
pub fn command_exit_status(result: CommandResult) -> u8 {
    match result {
        CommandResult::Done => EXIT_OK,
        CommandResult::WrongState => EXIT_WRONG_STATE,
        CommandResult::IsSelf => EXIT_SELF,
        CommandResult::NoSuchVm => EXIT_NO_SUCH_VM,
        CommandResult::Failed => EXIT_FAILED,
        // hvctl writes only commands, and RESULT "none" is an error above.
        CommandResult::BadCommand | CommandResult::None => EXIT_ERROR,
    }
}

#[cfg(test)]
mod tests;
