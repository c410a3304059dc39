//! The pure half of `hvctl portal`: its command line, finding the portal
//! functions in sysfs, the line `hvctl portal list` prints (which the
//! Linux scenarios parse back), and the request and wait protocols over a
//! register block ([`Registers`]) and an interrupt source ([`Interrupt`]).
//! The binary supplies the real ones (BAR0 mapped from sysfs, `/dev/uioN`);
//! the host tests drive the same code with `platform::portal::PortalModel`.
//!
//! A portal function is a PCI function with [`VENDOR_ID`]:[`DEVICE_ID`]:
//! BAR0 holds its registers (`platform::portal` documents them), BAR2 the
//! memory it shares with the other end.

pub use crate::pci::{bar_size, Registers, SYSFS_PCI_DEVICES};
use crate::pci::{DeviceError, SysfsError};
use crate::UsageError;
use core::fmt;
use platform::portal::{reg, Counters, Outcome, PeerState, DEVICE_ID, EVENT_PEER_STATE, ID_MAGIC, MAX_OPS, VENDOR_ID};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `hvctl portal wait`'s default timeout.
pub const DEFAULT_WAIT_MS: u64 = 10_000;

/// Exit status of `send`: delivered, and of every other command that
/// succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit status of an error (no portal, sysfs or device trouble).
pub const EXIT_ERROR: u8 = 1;
/// Exit status of `send` when the request was refused (not allowed, or no
/// such operation); also that of a usage error.
pub const EXIT_REFUSED: u8 = 2;
/// Exit status of `send` when the peer was not running.
pub const EXIT_PEER_DOWN: u8 = 3;
/// Exit status of `wait` when nothing came in time.
pub const EXIT_TIMEOUT: u8 = 4;

/// The exit status `hvctl portal send` gives an outcome.
pub fn send_exit_status(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Delivered => EXIT_OK,
        Outcome::Refused | Outcome::NoSuchOperation => EXIT_REFUSED,
        Outcome::PeerDown => EXIT_PEER_DOWN,
        // RESULT still says "no request": the write did not reach the
        // portal.
        Outcome::None => EXIT_ERROR,
    }
}

/// Which portal `--portal` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The n-th line of `hvctl portal list` (from 0).
    Position(usize),
    /// A PCI address, `0000:00:10.0` or `00:10.0`.
    Address(String),
}

impl Selector {
    fn parse(word: &str) -> Self {
        match word.parse() {
            Ok(position) => Self::Position(position),
            Err(_) => Self::Address(word.to_owned()),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Position(n) => write!(f, "{n}"),
            Self::Address(a) => f.write_str(a),
        }
    }
}

/// What `hvctl portal write` writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    Text(String),
    /// `-`: standard input.
    Stdin,
}

/// `hvctl portal ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    List,
    /// `ARGUMENT` then `REQUEST`, or `DOORBELL` without an argument.
    Send {
        op: u32,
        arg: Option<u64>,
    },
    /// Wait for operation `op` (any if `None`).
    Wait {
        op: Option<u32>,
        timeout_ms: u64,
        poll: bool,
    },
    Read {
        offset: u64,
        len: u64,
    },
    Write {
        offset: u64,
        data: Data,
    },
}

/// A whole `hvctl portal` command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalCommand {
    pub portal: Option<Selector>,
    pub action: Action,
}

/// A number: decimal, or hexadecimal with `0x`.
pub fn parse_number(word: &str) -> Option<u64> {
    match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

fn number(what: &'static str, word: &str) -> Result<u64, UsageError> {
    parse_number(word).ok_or_else(|| UsageError::BadNumber { what, word: word.to_owned() })
}

fn operation(word: &str) -> Result<u32, UsageError> {
    let op = number("operation", word)?;
    u32::try_from(op).map_err(|_| UsageError::BadNumber { what: "operation", word: word.to_owned() })
}

impl PortalCommand {
    /// Parses the words after `portal`.
    pub fn parse(words: &[String]) -> Result<Self, UsageError> {
        let (action, rest) = words.split_first().ok_or(UsageError::MissingArgument("a portal command"))?;
        let (mut portal, mut timeout_ms, mut poll) = (None, None, false);
        let mut positional: Vec<&str> = Vec::new();
        let mut words = rest.iter();
        let mut options_done = false;
        while let Some(word) = words.next() {
            match word.as_str() {
                _ if options_done => positional.push(word),
                "--" => options_done = true,
                "--portal" if portal.is_none() => portal = Some(Selector::parse(option_value(&mut words, word)?)),
                "--timeout-ms" if timeout_ms.is_none() && action == "wait" => {
                    timeout_ms = Some(number("timeout", option_value(&mut words, word)?)?)
                }
                "--poll" if !poll && action == "wait" => poll = true,
                // `-` alone is standard input, not an option.
                w if w.starts_with("--") => return Err(UsageError::UnexpectedArgument(w.to_owned())),
                w => positional.push(w),
            }
        }
        let mut positional = positional.into_iter();
        let mut required = |what| positional.next().ok_or(UsageError::MissingArgument(what));
        let action = match action.as_str() {
            "list" => Action::List,
            "send" => {
                let op = operation(required("the operation")?)?;
                let arg = positional.next().map(|w| number("argument", w)).transpose()?;
                Action::Send { op, arg }
            }
            "wait" => {
                let op = positional.next().map(operation).transpose()?;
                if let Some(bad) = op.filter(|&op| op >= MAX_OPS) {
                    let word = bad.to_string();
                    return Err(UsageError::BadNumber { what: "operation (0 to 31)", word });
                }
                Action::Wait { op, timeout_ms: timeout_ms.unwrap_or(DEFAULT_WAIT_MS), poll }
            }
            "read" => {
                let offset = number("offset", required("the offset")?)?;
                let len = number("length", required("the length")?)?;
                Action::Read { offset, len }
            }
            "write" => {
                let offset = number("offset", required("the offset")?)?;
                let data = match required("the text (or - for standard input)")? {
                    "-" => Data::Stdin,
                    text => Data::Text(text.to_owned()),
                };
                Action::Write { offset, data }
            }
            other => return Err(UsageError::UnknownCommand(format!("portal {other}"))),
        };
        if let Some(extra) = positional.next() {
            return Err(UsageError::UnexpectedArgument(extra.to_owned()));
        }
        if action == Action::List && portal.is_some() {
            return Err(UsageError::UnexpectedArgument("--portal (list shows every portal)".into()));
        }
        Ok(Self { portal, action })
    }
}

/// The word after `option`.
fn option_value<'a>(words: &mut core::slice::Iter<'a, String>, option: &str) -> Result<&'a str, UsageError> {
    let what = match option {
        "--portal" => "the portal after --portal",
        _ => "the milliseconds after --timeout-ms",
    };
    words.next().map(String::as_str).ok_or(UsageError::MissingArgument(what))
}

// --- sysfs ---------------------------------------------------------------

/// What can go wrong with a portal, other than the command line.
#[derive(Debug)]
pub enum PortalError {
    /// No portal function under the sysfs directory.
    NoPortal,
    /// Several portals and no `--portal`.
    Several(usize),
    /// `--portal` names none of them.
    NoSuchPortal { selector: Selector, count: usize },
    /// A sysfs file or directory could not be read.
    Sysfs { path: PathBuf, error: std::io::Error },
    /// A portal's `resource` file does not list a BAR2.
    NoSharedMemory { path: PathBuf },
    /// BAR0 does not read as a portal's registers.
    NotAPortal { address: String, id: u32 },
    /// `read` or `write` reaches outside BAR2.
    OutOfBounds { offset: u64, len: u64, size: u64 },
    /// `wait` needs the uio device.
    NoUio { address: String },
    /// The device could not be opened, mapped, polled...
    Device { what: String, error: std::io::Error },
    /// `RESULT` reads a value that is no [`Outcome`].
    BadResult(u32),
}

impl fmt::Display for PortalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPortal => write!(f, "no portal: no PCI function {VENDOR_ID:#06x}:{DEVICE_ID:#06x}"),
            Self::Several(n) => write!(f, "{n} portals: choose one with --portal (a position in `hvctl portal list` or a PCI address)"),
            Self::NoSuchPortal { selector, count } => {
                write!(f, "no portal {selector}: there are {count} (positions 0 to {})", count.saturating_sub(1))
            }
            Self::Sysfs { path, error } => write!(f, "{}: {error}", path.display()),
            Self::NoSharedMemory { path } => write!(f, "{}: no BAR2 (the portal's shared memory) listed", path.display()),
            Self::NotAPortal { address, id } => write!(
                f,
                "{address}: BAR0's ID register reads {id:#010x}, not a portal's ({ID_MAGIC:#06x} in bits 31:16); is the function's memory decoding on (bind uio_pci_generic)?"
            ),
            Self::OutOfBounds { offset, len, size } => write!(
                f,
                "{len} bytes at offset {offset:#x} do not fit in the shared memory (BAR2) of {size:#x} bytes"
            ),
            Self::NoUio { address } => write!(
                f,
                "{address} has no uio device to wait on: bind uio_pci_generic (echo \"1234 7a11\" > /sys/bus/pci/drivers/uio_pci_generic/new_id), or wait with --poll"
            ),
            Self::Device { what, error } => write!(f, "{what}: {error}"),
            Self::BadResult(v) => write!(f, "RESULT reads {v:#x}, which is no outcome"),
        }
    }
}

impl std::error::Error for PortalError {}

impl From<SysfsError> for PortalError {
    fn from(e: SysfsError) -> Self {
        Self::Sysfs { path: e.path, error: e.error }
    }
}

impl From<DeviceError> for PortalError {
    fn from(e: DeviceError) -> Self {
        Self::Device { what: e.what, error: e.error }
    }
}

/// A portal function found in sysfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalDevice {
    /// The PCI address, e.g. `0000:00:10.0`.
    pub address: String,
    /// Its sysfs directory.
    pub path: PathBuf,
    /// BAR2's size in bytes.
    pub memory: u64,
    /// The uio device bound to it (`uio0`), if any.
    pub uio: Option<String>,
}

/// The portal functions under `root` (`/sys/bus/pci/devices` on Linux), in
/// PCI address order. A directory entry whose IDs cannot be read is not a
/// portal; a portal whose `resource` file is unreadable or has no BAR2 is
/// an error.
pub fn discover(root: &Path) -> Result<Vec<PortalDevice>, PortalError> {
    let mut portals = Vec::new();
    for function in crate::pci::functions(root, VENDOR_ID, DEVICE_ID)? {
        let text = crate::pci::resource(&function)?;
        let resource = function.path.join("resource");
        let memory = bar_size(&text, 2).ok_or(PortalError::NoSharedMemory { path: resource })?;
        let uio_dir = function.path.join("uio");
        let mut uio: Vec<String> = match std::fs::read_dir(&uio_dir) {
            Ok(dir) => dir
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("uio"))
                .collect(),
            // No driver with uio bound: no directory.
            Err(_) => Vec::new(),
        };
        uio.sort();
        portals.push(PortalDevice {
            address: function.address,
            path: function.path,
            memory,
            uio: uio.into_iter().next(),
        });
    }
    Ok(portals)
}

/// The portal `selector` names, or the only one; with its list position.
pub fn select<'a>(
    portals: &'a [PortalDevice],
    selector: Option<&Selector>,
) -> Result<(usize, &'a PortalDevice), PortalError> {
    let count = portals.len();
    let found = match selector {
        None if count == 0 => return Err(PortalError::NoPortal),
        None if count > 1 => return Err(PortalError::Several(count)),
        None => Some(0),
        Some(Selector::Position(n)) => (*n < count).then_some(*n),
        Some(Selector::Address(a)) => {
            portals.iter().position(|p| p.address == *a || p.address.strip_prefix("0000:") == Some(a.as_str()))
        }
    };
    match found.and_then(|n| Some((n, portals.get(n)?))) {
        Some(found) => Ok(found),
        None if count == 0 => Err(PortalError::NoPortal),
        None => Err(PortalError::NoSuchPortal { selector: selector.cloned().unwrap_or(Selector::Position(0)), count }),
    }
}

/// Bounds check of `len` bytes at `offset` in a shared memory of `size`
/// bytes; returns the range as `usize`s.
pub fn check_bounds(offset: u64, len: u64, size: u64) -> Result<core::ops::Range<usize>, PortalError> {
    let out = || PortalError::OutOfBounds { offset, len, size };
    let end = offset.checked_add(len).filter(|&end| end <= size).ok_or_else(out)?;
    Ok(usize::try_from(offset).map_err(|_| out())?..usize::try_from(end).map_err(|_| out())?)
}

// --- the list line ---------------------------------------------------------

/// What `PEER_STATE` read: a [`PeerState`] or something else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerWord(pub u32);

impl fmt::Display for PeerWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match PeerState::from_u32(self.0) {
            Some(state) => f.write_str(state.name()),
            None => write!(f, "unknown-{}", self.0),
        }
    }
}

impl PeerWord {
    fn parse(word: &str) -> Option<Self> {
        [PeerState::Off, PeerState::Running, PeerState::Stopping]
            .into_iter()
            .find(|s| s.name() == word)
            .map(|s| Self(s as u32))
            .or_else(|| Some(Self(word.strip_prefix("unknown-")?.parse().ok()?)))
    }

    pub fn state(self) -> Option<PeerState> {
        PeerState::from_u32(self.0)
    }
}

/// One line of `hvctl portal list`:
///
/// ```text
/// portal 0: 0000:00:10.0, index 0, end 1, peer running, allowed 0x1, peer allowed 0x3, memory 0x10000 bytes, uio0, sent 0, refused 0, peer down 0, received 0
/// ```
///
/// Position in the list, PCI address, the portal's index and this end
/// (`ID`), `PEER_STATE`, `ALLOWED` and `PEER_ALLOWED`, BAR2's size, the
/// uio device (or `no uio`), then the counters as
/// `platform::portal::Counters` displays them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalLine {
    pub position: usize,
    pub address: String,
    pub index: u8,
    pub end: u8,
    pub peer: PeerWord,
    pub allowed: u32,
    pub peer_allowed: u32,
    pub memory: u64,
    pub uio: Option<String>,
    pub counters: Counters,
}

/// Prefix of [`PortalLine`].
pub const PORTAL_LINE_PREFIX: &str = "portal ";
/// What `hvctl portal list` prints when there is none.
pub const NO_PORTAL: &str = "no portal";

impl fmt::Display for PortalLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PORTAL_LINE_PREFIX}{}: {}, index {}, end {}, peer {}, allowed {:#x}, peer allowed {:#x}, memory {:#x} bytes, {}, {}",
            self.position,
            self.address,
            self.index,
            self.end,
            self.peer,
            self.allowed,
            self.peer_allowed,
            self.memory,
            self.uio.as_deref().unwrap_or("no uio"),
            self.counters
        )
    }
}

impl PortalLine {
    /// Parses a whole line, prefix included (the inverse of `Display`).
    pub fn parse(line: &str) -> Option<Self> {
        let (position, rest) = line.strip_prefix(PORTAL_LINE_PREFIX)?.split_once(": ")?;
        let fields: Vec<&str> = rest.splitn(9, ", ").collect();
        let [address, index, end, peer, allowed, peer_allowed, memory, uio, counters] = fields.as_slice() else {
            return None;
        };
        let hex32 = |w: &str| u32::try_from(crate::parse_hex(w)?).ok();
        Some(Self {
            position: position.parse().ok()?,
            address: (*address).to_owned(),
            index: index.strip_prefix("index ")?.parse().ok()?,
            end: end.strip_prefix("end ")?.parse().ok()?,
            peer: PeerWord::parse(peer.strip_prefix("peer ")?)?,
            allowed: hex32(allowed.strip_prefix("allowed ")?)?,
            peer_allowed: hex32(peer_allowed.strip_prefix("peer allowed ")?)?,
            memory: crate::parse_hex(memory.strip_prefix("memory ")?.strip_suffix(" bytes")?)?,
            uio: match *uio {
                "no uio" => None,
                u if u.starts_with("uio") && !u.contains(' ') => Some(u.to_owned()),
                _ => return None,
            },
            counters: Counters::parse(counters)?,
        })
    }
}

// --- the protocols -----------------------------------------------------------

/// Reads the registers of [`PortalLine`] (all but what sysfs says).
pub fn read_line(regs: &impl Registers, position: usize, device: &PortalDevice) -> Result<PortalLine, PortalError> {
    let id = regs.read32(reg::ID);
    if id >> 16 != ID_MAGIC {
        return Err(PortalError::NotAPortal { address: device.address.clone(), id });
    }
    Ok(PortalLine {
        position,
        address: device.address.clone(),
        index: (id & 0xff) as u8,
        end: ((id >> 8) & 1) as u8,
        peer: PeerWord(regs.read32(reg::PEER_STATE)),
        allowed: regs.read32(reg::ALLOWED),
        peer_allowed: regs.read32(reg::PEER_ALLOWED),
        memory: device.memory,
        uio: device.uio.clone(),
        counters: Counters {
            sent: regs.read32(reg::SENT),
            refused: regs.read32(reg::REFUSED),
            peer_down: regs.read32(reg::PEER_DOWN),
            received: regs.read32(reg::RECEIVED),
        },
    })
}

/// Requests operation `op`: with `arg`, `ARGUMENT` then `REQUEST`; without,
/// `DOORBELL`. Returns what `RESULT` then says.
pub fn send(regs: &impl Registers, op: u32, arg: Option<u64>) -> Result<Outcome, PortalError> {
    match arg {
        Some(arg) => {
            regs.write64(reg::ARGUMENT, arg);
            regs.write32(reg::REQUEST, op);
        }
        None => regs.write32(reg::DOORBELL, op),
    }
    let result = regs.read32(reg::RESULT);
    Outcome::from_u32(result).ok_or(PortalError::BadResult(result))
}

/// The byte of the config space that holds the command register's upper
/// half, where INTx disable is. `uio_pci_generic` has no `irqcontrol` (a
/// write to `/dev/uioN` fails with `ENOSYS`): its handler sets INTx disable
/// each time the interrupt fires, and userspace clears it in the function's
/// config space, through sysfs (`<dev>/config`), as the kernel's UIO
/// how-to does.
pub const COMMAND_HIGH: u64 = platform::pci::config::offset::COMMAND as u64 + 1;
/// INTx disable in [`COMMAND_HIGH`].
pub const INTX_DISABLE_HIGH: u8 = (platform::pci::config::command::INTX_DISABLE >> 8) as u8;

/// What to write to [`COMMAND_HIGH`] to enable the interrupt, if it is
/// disabled (the other bits as they are).
pub fn intx_enable(command_high: u8) -> Option<u8> {
    (command_high & INTX_DISABLE_HIGH != 0).then_some(command_high & !INTX_DISABLE_HIGH)
}

/// The portal's interrupt, as userspace sees it.
pub trait Interrupt {
    /// (Re-)enables the interrupt (uio: clears the function's INTx
    /// disable, [`intx_enable`]).
    fn enable(&mut self) -> Result<(), PortalError>;
    /// Waits up to `timeout` for an interrupt; `true` if one came.
    fn wait(&mut self, timeout: Duration) -> Result<bool, PortalError>;
}

/// `--poll`: no interrupt, the registers are looked at every
/// [`POLL_INTERVAL`].
pub struct Polling;

/// How often `--poll` looks, and how long `wait` pauses when other
/// operations than the one it waits for keep the interrupt asserted.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

impl Interrupt for Polling {
    fn enable(&mut self) -> Result<(), PortalError> {
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool, PortalError> {
        std::thread::sleep(timeout.min(POLL_INTERVAL));
        Ok(false)
    }
}

/// What [`wait`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waited {
    /// The operation and its argument (`RECEIVED_ARG[op]`); `None` when the
    /// timeout passed first.
    pub got: Option<(u32, u64)>,
    /// Peer state changes acknowledged meanwhile (`EVENTS`), with
    /// `PEER_STATE` after the last.
    pub peer_changes: Option<PeerWord>,
}

/// The `wait` line: `op N arg 0xX`.
pub fn format_got(op: u32, arg: u64) -> String {
    format!("op {op} arg {arg:#x}")
}

/// Waits until `INT_STATUS` has operation `op` (any if `None`, the lowest
/// first), acknowledges its bit and returns it with `RECEIVED_ARG[op]`.
///
/// The interrupt is level-triggered and masked by the kernel each time it
/// fires, so each round re-enables it, then looks at the registers (a
/// request that came before is not an interrupt any more), then waits for
/// the next interrupt with the time left. A peer state change (`EVENTS`) is
/// acknowledged and reported, so that it does not keep the interrupt
/// asserted; operations other than `op` stay pending (they keep it
/// asserted, so the rounds are then paced at [`POLL_INTERVAL`]).
pub fn wait(
    regs: &impl Registers,
    irq: &mut impl Interrupt,
    op: Option<u32>,
    timeout: Duration,
) -> Result<Waited, PortalError> {
    let deadline = Instant::now() + timeout;
    let wanted = match op {
        Some(op) => 1u32.checked_shl(op).unwrap_or(0),
        None => u32::MAX,
    };
    let mut waited = Waited { got: None, peer_changes: None };
    loop {
        irq.enable()?;
        let events = regs.read32(reg::EVENTS);
        if events & EVENT_PEER_STATE != 0 {
            regs.write32(reg::EVENTS, events);
            waited.peer_changes = Some(PeerWord(regs.read32(reg::PEER_STATE)));
        }
        let pending = regs.read32(reg::INT_STATUS);
        let mine = pending & wanted;
        if mine != 0 {
            let op = mine.trailing_zeros();
            let arg = regs.read64(reg::RECEIVED_ARG + 8 * u64::from(op));
            regs.write32(reg::INT_STATUS, 1 << op);
            waited.got = Some((op, arg));
            return Ok(waited);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(waited);
        }
        let fired = irq.wait(left)?;
        if fired && pending & !wanted != 0 {
            // Another operation keeps the interrupt asserted: pace the
            // rounds rather than spin on it.
            std::thread::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())));
        }
    }
}

#[cfg(test)]
mod tests;
