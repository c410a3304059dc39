//! The VM control function: how a VM marked `hv,manager` lists, stops,
//! restarts and starts the other VMs (`docs/vms.md`, "Managing VMs").
//!
//! A manager VM has, on its PCI host bridge, one more function the
//! hypervisor emulates (after its portal functions, if any): vendor
//! [`VENDOR_ID`], device [`DEVICE_ID`], BAR0 these registers. Other VMs do
//! not have it, so they cannot manage anything; inside the manager VM, its
//! own OS decides who may reach the function (Linux: only root may map a
//! PCI function's `resource0`), as it does for any device.
//!
//! This module is the one definition the hypervisor and `hvctl vm` share:
//! the register layout, the command and result codes, and the pure model
//! ([`ControlModel`]) that answers reads from a snapshot of the selected
//! VM ([`VmInfo`]) and turns a write to `COMMAND` into a [`Command`] the
//! hypervisor carries out.
//!
//! # Registers (BAR0, 4 KiB; 32-bit, read-only unless said)
//!
//! | offset | name | meaning |
//! |-------:|------|---------|
//! | 0x00 | `ID` | [`ID_VALUE`] |
//! | 0x04 | `VM_COUNT` | how many VMs the description has |
//! | 0x08 | `SELECT` (RW) | the VM the registers below describe and `COMMAND` acts on (its index, description order) |
//! | 0x0c | `STATE` | [`VmState`] of the selected VM |
//! | 0x10 | `VCPUS` | its vCPUs |
//! | 0x14 | `EXIT_STATUS` | the status it reported last (`HV_SET_EXIT_STATUS`), 0 if none |
//! | 0x18 | `MEMORY_KIB` | its RAM in KiB |
//! | 0x1c | `FLAGS` | [`FLAG_MANAGER`], [`FLAG_AUTOSTART`], [`FLAG_SELF`] |
//! | 0x20 | `COMMAND` (WO) | [`CommandCode`] on the selected VM |
//! | 0x24 | `RESULT` | [`CommandResult`] of the last command |
//! | 0x28 | `STARTS` | how many times it started afresh after its first start: its own resets, and restarts and starts by a manager (0 in its first life, and before it ever ran) |
//! | 0x40..0x50 | `NAME` | its name, NUL-padded (any width up to 4 bytes per access) |
//!
//! A `SELECT` past the last VM describes nothing: its registers read 0 and
//! a command gets [`CommandResult::NoSuchVm`].

use core::fmt;

/// Vendor ID: the one the portal functions use (`crate::portal`).
pub const VENDOR_ID: u16 = crate::portal::VENDOR_ID;
/// Device ID of the control function.
pub const DEVICE_ID: u16 = 0x7a12;
/// Base system peripheral, other (08h, 80h, 00h).
pub const CLASS: crate::pci::config::ClassCode = crate::pci::config::ClassCode::OTHER_SYSTEM_PERIPHERAL;
/// BAR0's size.
pub const REGS_SIZE: u64 = 4096;
/// What `ID` reads: "HC" and version 1.
pub const ID_VALUE: u32 = 0x4843_0001;
/// Bytes of `NAME`.
pub const NAME_LEN: usize = 16;

/// Register offsets in BAR0.
pub mod reg {
    pub const ID: u64 = 0x00;
    pub const VM_COUNT: u64 = 0x04;
    pub const SELECT: u64 = 0x08;
    pub const STATE: u64 = 0x0c;
    pub const VCPUS: u64 = 0x10;
    pub const EXIT_STATUS: u64 = 0x14;
    pub const MEMORY_KIB: u64 = 0x18;
    pub const FLAGS: u64 = 0x1c;
    pub const COMMAND: u64 = 0x20;
    pub const RESULT: u64 = 0x24;
    pub const STARTS: u64 = 0x28;
    pub const NAME: u64 = 0x40;
}

/// One past `NAME`.
const NAME_END: u64 = reg::NAME + NAME_LEN as u64;

/// `FLAGS` bit 0: the VM is a manager.
pub const FLAG_MANAGER: u32 = 1 << 0;
/// `FLAGS` bit 1: it starts at boot (`hv,autostart`).
pub const FLAG_AUTOSTART: u32 = 1 << 1;
/// `FLAGS` bit 2: it is the VM reading the register.
pub const FLAG_SELF: u32 = 1 << 2;

/// What `STATE` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum VmState {
    Off = 0,
    Running = 1,
    /// Stopping or restarting.
    Stopping = 2,
}

impl VmState {
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::Off),
            1 => Some(Self::Running),
            2 => Some(Self::Stopping),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Running => "running",
            Self::Stopping => "stopping",
        }
    }
}

/// What a write to `COMMAND` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum CommandCode {
    /// Power the VM off, as its own `SYSTEM_OFF` would (status kept).
    Stop = 1,
    /// Stop it if it runs, then start it afresh (RAM cleared, kernel
    /// loaded again).
    Restart = 2,
    /// Start a VM that is off (one described with `hv,autostart = <0>`,
    /// or one that stopped).
    Start = 3,
}

impl CommandCode {
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Stop),
            2 => Some(Self::Restart),
            3 => Some(Self::Start),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Start => "start",
        }
    }
}

/// What `RESULT` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum CommandResult {
    /// No command yet.
    None = 0,
    Done = 1,
    /// The VM is not in a state the command applies to (stopping a VM
    /// that is off, starting one that runs).
    WrongState = 2,
    /// `SELECT` names no VM.
    NoSuchVm = 3,
    /// The manager itself: it powers itself off or resets as any guest does.
    IsSelf = 4,
    /// Not a command.
    BadCommand = 5,
    /// The hypervisor could not start it (its kernel could not be loaded;
    /// the hypervisor's log says why).
    Failed = 6,
}

impl CommandResult {
    pub const fn from_u32(value: u32) -> Option<Self> {
        match value {
            0 => Some(Self::None),
            1 => Some(Self::Done),
            2 => Some(Self::WrongState),
            3 => Some(Self::NoSuchVm),
            4 => Some(Self::IsSelf),
            5 => Some(Self::BadCommand),
            6 => Some(Self::Failed),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "no command yet",
            Self::Done => "done",
            Self::WrongState => "refused: the VM is not in a state for it",
            Self::NoSuchVm => "refused: no such VM",
            Self::IsSelf => "refused: the manager itself",
            Self::BadCommand => "refused: not a command",
            Self::Failed => "failed: the VM could not be started",
        }
    }
}

impl fmt::Display for CommandResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The selected VM, as the hypervisor describes it for a read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmInfo {
    pub name: [u8; NAME_LEN],
    pub state: u32,
    pub vcpus: u32,
    pub exit_status: u32,
    pub memory_kib: u32,
    pub flags: u32,
    pub starts: u32,
}

impl VmInfo {
    /// `name`'s first [`NAME_LEN`] bytes, NUL-padded.
    pub fn name_bytes(name: &str) -> [u8; NAME_LEN] {
        let mut bytes = [0; NAME_LEN];
        for (slot, byte) in bytes.iter_mut().zip(name.bytes()) {
            *slot = byte;
        }
        bytes
    }
}

/// A command the hypervisor is to carry out on VM `vm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    pub code: CommandCode,
    pub vm: u32,
}

/// One manager's control function: what it selected, and its last result.
#[derive(Clone, Copy, Debug, Default)]
pub struct ControlModel {
    select: u32,
    result: u32,
}

impl ControlModel {
    pub const fn new() -> Self {
        Self { select: 0, result: CommandResult::None as u32 }
    }

    /// The VM `SELECT` names.
    pub const fn selected(&self) -> u32 {
        self.select
    }

    /// A read of `size` bytes at `offset`; `count` VMs, `info` the selected
    /// one (`None`: `SELECT` names none).
    pub fn read(&self, offset: u64, size: u8, count: u32, info: Option<&VmInfo>) -> u64 {
        let (register, value) = if (reg::NAME..NAME_END).contains(&offset) {
            let start = offset.saturating_sub(reg::NAME) & !3;
            let word = info.map_or(0, |i| {
                let at = |k: u64| i.name.get(start.saturating_add(k) as usize).copied().map_or(0, u32::from);
                at(0) | at(1) << 8 | at(2) << 16 | at(3) << 24
            });
            (reg::NAME.saturating_add(start), word)
        } else {
            let register = offset & !3;
            let described = |f: fn(&VmInfo) -> u32| info.map_or(0, f);
            let value = match register {
                reg::ID => ID_VALUE,
                reg::VM_COUNT => count,
                reg::SELECT => self.select,
                reg::STATE => described(|i| i.state),
                reg::VCPUS => described(|i| i.vcpus),
                reg::EXIT_STATUS => described(|i| i.exit_status),
                reg::MEMORY_KIB => described(|i| i.memory_kib),
                reg::FLAGS => described(|i| i.flags),
                reg::RESULT => self.result,
                reg::STARTS => described(|i| i.starts),
                _ => 0,
            };
            (register, value)
        };
        let within = offset.saturating_sub(register);
        if within.saturating_add(u64::from(size)) > 4 {
            return 0;
        }
        let mask = (1u64 << (8 * u32::from(size.min(4)))).saturating_sub(1);
        u64::from(value).checked_shr(8u32.saturating_mul(within as u32)).unwrap_or(0) & mask
    }

    /// A write; returns the command to carry out, if it was one. `count`
    /// VMs; `caller` is the manager's own index.
    pub fn write(&mut self, offset: u64, size: u8, value: u64, count: u32, caller: u32) -> Option<Command> {
        if size != 4 {
            return None;
        }
        let value = value as u32;
        match offset {
            reg::SELECT => self.select = value,
            reg::COMMAND => {
                let code = CommandCode::from_u32(value);
                let refused = match code {
                    None => Some(CommandResult::BadCommand),
                    Some(_) if self.select >= count => Some(CommandResult::NoSuchVm),
                    Some(_) if self.select == caller => Some(CommandResult::IsSelf),
                    Some(_) => None,
                };
                if let Some(result) = refused {
                    self.result = result as u32;
                    return None;
                }
                return code.map(|code| Command { code, vm: self.select });
            }
            _ => {}
        }
        None
    }

    /// The hypervisor carried out a command: `result`.
    pub fn finish(&mut self, result: CommandResult) {
        self.result = result as u32;
    }
}

#[cfg(test)]
mod tests;
