//! Portals between VMs, as the VM description's `/chosen` describes them
//! (`docs/portals.md`): nodes with `compatible = "hv,portal"` beside the
//! VM nodes ([`super::vms`]).
//!
//! | Property | Value | Default |
//! |---|---|---|
//! | `hv,name` | 1 to 15 characters of `a-z 0-9 _ -`, unique among portals | required |
//! | `hv,ends` | two strings: the names of the two VMs it joins, end 0 then end 1 | required |
//! | `hv,size` | its shared memory in KiB, one or two cells: a power of two from 4 (one page) to 16 MiB | required |
//! | `hv,ops-0` | the operations end 0 may request of end 1: numbers 0 to 31 | none |
//! | `hv,ops-1` | the operations end 1 may request of end 0 | none |
//!
//! [`parse`] checks each node on its own; [`validate`] is the first of the
//! two validation levels: the portal may exist at all (both ends are VMs
//! the description has, two different ones, and its memory fits). The
//! second level, per request, is the hypervisor's at run time: an
//! operation reaches the peer only if the requesting end's list has it.

use core::fmt;

use super::dt::{be32, be64, Dtb, Node};
use super::vms::{VmDescs, VM_NAME_MAX};
use super::{compatible_with, List};

/// The `compatible` of a portal node.
pub const COMPATIBLE: &str = "hv,portal";
/// Portals one description may have.
pub const MAX_PORTALS: usize = 8;
/// Operation numbers: 0 to 31 (a 32-bit mask per end).
pub const MAX_OPS: u32 = 32;
/// The shared memory's smallest size (one page) and largest, in KiB; it
/// is a power of two, as a PCI BAR's window is.
pub const SIZE_ALIGN_KIB: u64 = 4;
pub const MAX_SIZE_KIB: u64 = 16 * 1024;

/// One portal, as its node describes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortalDesc<'a> {
    pub name: &'a str,
    /// The node's name under `/chosen`.
    pub node: &'a str,
    /// The VMs it joins: end 0, end 1.
    pub ends: [&'a str; 2],
    /// Its shared memory, in bytes (a power of two from 4 KiB to 16 MiB).
    pub size_bytes: u64,
    /// The operations each end may request of the other (bit n =
    /// operation n).
    pub ops: [u32; 2],
}

impl PortalDesc<'_> {
    /// Whether end `end` (0 or 1) may request operation `op`.
    pub fn allows(&self, end: usize, op: u32) -> bool {
        let mask = self.ops.get(end).copied().unwrap_or(0);
        op < MAX_OPS && mask.checked_shr(op).is_some_and(|m| m & 1 != 0)
    }
}

/// The portals of a description, in node order.
pub type Portals<'a> = List<PortalDesc<'a>, MAX_PORTALS>;

/// Why a portal description was refused: one line, naming the portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortalError<'a> {
    /// The DTB itself is unreadable (reported by [`super::vms::parse`]
    /// first; here for completeness).
    Dtb,
    TooMany {
        portal: &'a str,
    },
    MissingProperty {
        portal: &'a str,
        property: &'static str,
    },
    UnknownProperty {
        portal: &'a str,
        property: &'a str,
    },
    PropertyGivenTwice {
        portal: &'a str,
        property: &'a str,
    },
    BadValue {
        portal: &'a str,
        property: &'static str,
        expected: &'static str,
    },
    BadName {
        portal: &'a str,
    },
    BadSize {
        portal: &'a str,
        kib: u64,
    },
    BadOp {
        portal: &'a str,
        property: &'static str,
        op: u32,
    },
    OpTwice {
        portal: &'a str,
        property: &'static str,
        op: u32,
    },
    DuplicateName {
        portal: &'a str,
    },
    /// `hv,ends` names a VM the description does not have.
    UnknownVm {
        portal: &'a str,
        vm: &'a str,
    },
    /// Both ends are the same VM.
    SameVm {
        portal: &'a str,
        vm: &'a str,
    },
    /// The portals' memory does not fit in what the VMs leave of guest RAM.
    MemoryDoesNotFit {
        portal: &'a str,
        kib: u64,
        left_bytes: u64,
    },
}

impl fmt::Display for PortalError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Dtb => write!(f, "portals: the description's DTB is unreadable"),
            Self::TooMany { portal } => write!(f, "portal {portal:?}: more than {MAX_PORTALS} portals"),
            Self::MissingProperty { portal, property } => {
                write!(f, "portal {portal:?}: {property} is missing, but required")
            }
            Self::UnknownProperty { portal, property } => {
                write!(f, "portal {portal:?}: {property:?} is a property the portal binding does not know")
            }
            Self::PropertyGivenTwice { portal, property } => {
                write!(f, "portal {portal:?}: {property:?} is given twice")
            }
            Self::BadValue { portal, property, expected } => {
                write!(f, "portal {portal:?}: {property} must be {expected}")
            }
            Self::BadName { portal } => write!(
                f,
                "portal {portal:?}: hv,name must be 1 to {VM_NAME_MAX} characters of a-z, 0-9, _ and -"
            ),
            Self::BadSize { portal, kib } => write!(
                f,
                "portal {portal:?}: hv,size = {kib} KiB, but must be a power of two from {SIZE_ALIGN_KIB} KiB to {MAX_SIZE_KIB} KiB"
            ),
            Self::BadOp { portal, property, op } => {
                write!(f, "portal {portal:?}: {property} names operation {op}, but operations are 0 to {}", MAX_OPS - 1)
            }
            Self::OpTwice { portal, property, op } => {
                write!(f, "portal {portal:?}: {property} names operation {op} twice")
            }
            Self::DuplicateName { portal } => write!(f, "portal {portal:?}: declared twice (hv,name is taken)"),
            Self::UnknownVm { portal, vm } => {
                write!(f, "portal {portal:?}: hv,ends names VM {vm:?}, which the description does not have")
            }
            Self::SameVm { portal, vm } => write!(f, "portal {portal:?}: both ends are VM {vm:?}"),
            Self::MemoryDoesNotFit { portal, kib, left_bytes } => write!(
                f,
                "portal {portal:?}: hv,size = {kib} KiB does not fit in the {} KiB of guest RAM the VMs leave",
                left_bytes / 1024
            ),
        }
    }
}

const STANDARD: &[&str] = &["compatible", "phandle", "linux,phandle", "name"];

/// The portal nodes under `/chosen` of `dtb`, each well-formed, names
/// unique.
pub fn parse(dtb: &[u8]) -> Result<Portals<'_>, PortalError<'_>> {
    let dtb = Dtb::new(dtb).map_err(|_| PortalError::Dtb)?;
    let mut portals = Portals::new();
    let Some(chosen) = dtb.find_path("/chosen") else { return Ok(portals) };
    for node in dtb.children(&chosen) {
        if !dtb.prop(&node, "compatible").is_some_and(|c| compatible_with(c, &[COMPATIBLE])) {
            continue;
        }
        let portal = parse_portal(&dtb, &node)?;
        if portals.iter().any(|p| p.name == portal.name) {
            return Err(PortalError::DuplicateName { portal: portal.name });
        }
        portals.push(portal).map_err(|_| PortalError::TooMany { portal: portal.name })?;
    }
    Ok(portals)
}

/// Level one: every portal joins two different VMs of `vms`, and all the
/// portals' memory fits in the `left` bytes of guest RAM the VMs leave.
pub fn validate<'a>(portals: &[PortalDesc<'a>], vms: &VmDescs<'_>, left: u64) -> Result<(), PortalError<'a>> {
    let mut left = left;
    for p in portals {
        for vm in p.ends {
            if vms.by_name(vm).is_none() {
                return Err(PortalError::UnknownVm { portal: p.name, vm });
            }
        }
        if p.ends[0] == p.ends[1] {
            return Err(PortalError::SameVm { portal: p.name, vm: p.ends[0] });
        }
        left = left.checked_sub(p.size_bytes).ok_or(PortalError::MemoryDoesNotFit {
            portal: p.name,
            kib: p.size_bytes / 1024,
            left_bytes: left,
        })?;
    }
    Ok(())
}

fn parse_portal<'a>(dtb: &Dtb<'a>, node: &Node<'a>) -> Result<PortalDesc<'a>, PortalError<'a>> {
    let node_name = node.name;
    let name = dtb
        .prop(node, "hv,name")
        .ok_or(PortalError::MissingProperty { portal: node_name, property: "hv,name" })
        .and_then(|v| strings::<1>(v).map(|[s]| s).ok_or(bad(node_name, "hv,name", "one string")))?;
    let valid = (1..=VM_NAME_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        return Err(PortalError::BadName { portal: node_name });
    }
    let mut portal = PortalDesc { name, node: node_name, ..PortalDesc::default() };
    let (mut ends, mut size) = (None, None);
    for (index, (prop, value)) in dtb.props(node).enumerate() {
        if dtb.props(node).take(index).any(|(earlier, _)| earlier == prop) {
            return Err(PortalError::PropertyGivenTwice { portal: name, property: prop });
        }
        match prop {
            "hv,name" => {}
            "hv,ends" => ends = Some(strings::<2>(value).ok_or(bad(name, "hv,ends", "two strings (VM names)"))?),
            "hv,size" => size = Some(size_kib(name, value)?),
            "hv,ops-0" => portal.ops[0] = ops(name, "hv,ops-0", value)?,
            "hv,ops-1" => portal.ops[1] = ops(name, "hv,ops-1", value)?,
            p if STANDARD.contains(&p) => {}
            p => return Err(PortalError::UnknownProperty { portal: name, property: p }),
        }
    }
    portal.ends = ends.ok_or(PortalError::MissingProperty { portal: name, property: "hv,ends" })?;
    let kib = size.ok_or(PortalError::MissingProperty { portal: name, property: "hv,size" })?;
    portal.size_bytes = kib.saturating_mul(1024);
    Ok(portal)
}

fn bad<'a>(portal: &'a str, property: &'static str, expected: &'static str) -> PortalError<'a> {
    PortalError::BadValue { portal, property, expected }
}

/// Exactly `N` NUL-terminated UTF-8 strings.
fn strings<const N: usize>(value: &[u8]) -> Option<[&str; N]> {
    let body = value.strip_suffix(&[0])?;
    let mut parts = body.split(|&b| b == 0);
    let mut out = [""; N];
    for slot in &mut out {
        let part = parts.next()?;
        *slot = core::str::from_utf8(part).ok().filter(|s| !s.is_empty())?;
    }
    parts.next().is_none().then_some(out)
}

/// `hv,size`: KiB in one or two cells.
fn size_kib<'a>(portal: &'a str, value: &[u8]) -> Result<u64, PortalError<'a>> {
    let kib = match value.len() {
        4 => be32(value, 0).map(u64::from),
        8 => be64(value, 0),
        _ => None,
    }
    .ok_or(bad(portal, "hv,size", "one or two 32-bit cells (KiB)"))?;
    if !(SIZE_ALIGN_KIB..=MAX_SIZE_KIB).contains(&kib) || !kib.is_power_of_two() {
        return Err(PortalError::BadSize { portal, kib });
    }
    Ok(kib)
}

/// `hv,ops-N`: operation numbers, each once, as a mask.
fn ops<'a>(portal: &'a str, property: &'static str, value: &[u8]) -> Result<u32, PortalError<'a>> {
    if value.len().checked_rem(4) != Some(0) {
        return Err(bad(portal, property, "a list of 32-bit cells (operation numbers)"));
    }
    let mut mask = 0u32;
    for cell in value.chunks_exact(4) {
        let op = be32(cell, 0).ok_or(bad(portal, property, "a list of 32-bit cells (operation numbers)"))?;
        let bit = 1u32.checked_shl(op).filter(|_| op < MAX_OPS).ok_or(PortalError::BadOp { portal, property, op })?;
        if mask & bit != 0 {
            return Err(PortalError::OpTwice { portal, property, op });
        }
        mask |= bit;
    }
    Ok(mask)
}
