//! A minimal, allocation-free, panic-free reader for flattened device trees
//! (Devicetree Specification v0.4, chapter 5).
//!
//! Why not the `fdt` crate: `fdt` 0.1.5 trusts its input. It slices the
//! blob with header offsets unchecked, and `unwrap`s, `expect`s and
//! `assert`s its way through malformed structure blocks (a flipped token
//! byte panics with "bad prop, tag"). A DTB handed to EL3 by whatever ran
//! before us is hostile input, so this module reads it with bounds-checked
//! accesses only and validates the whole structure block once, up front
//! ([`Dtb::new`]). Later walks still check every access; they just have
//! nothing left to find.
//!
//! Nodes are identified by byte offsets into the structure block; walking
//! is done afresh for each query. The trees this firmware sees hold a few
//! hundred nodes, and the board description is built once per boot.

use super::{BoardError, DtName, MAX_DTB_SIZE};

/// The FDT header magic, big-endian at offset 0.
pub(super) const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the version-17 header (the version-16 header has the same layout
/// minus `size_dt_struct`, whose slot we then ignore).
pub(super) const HEADER_SIZE: usize = 40;
/// Deepest node nesting accepted (the root is depth 1).
pub(super) const MAX_DEPTH: usize = 32;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Reads a big-endian `u32` at `off` of `bytes`, if it is all there.
pub(super) fn be32(bytes: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let b: [u8; 4] = bytes.get(off..end)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Reads a big-endian `u64` at `off` of `bytes`, if it is all there.
pub(super) fn be64(bytes: &[u8], off: usize) -> Option<u64> {
    let end = off.checked_add(8)?;
    let b: [u8; 8] = bytes.get(off..end)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// Rounds `x` up to a multiple of 4.
fn align4(x: usize) -> Option<usize> {
    Some(x.checked_add(3)? & !3)
}

/// Checks the header's magic and size and returns `totalsize`.
/// Needs only the first 8 bytes; see [`super::dtb_total_size`].
pub(super) fn total_size(header: &[u8]) -> Result<usize, BoardError> {
    let magic = be32(header, 0).ok_or(BoardError::Truncated { needed: HEADER_SIZE, available: header.len() })?;
    if magic != FDT_MAGIC {
        return Err(BoardError::BadMagic { found: magic });
    }
    let size = be32(header, 4).ok_or(BoardError::Truncated { needed: HEADER_SIZE, available: header.len() })?;
    let size = usize::try_from(size).map_err(|_| BoardError::TooLarge { size: usize::MAX, max: MAX_DTB_SIZE })?;
    if size > MAX_DTB_SIZE {
        return Err(BoardError::TooLarge { size, max: MAX_DTB_SIZE });
    }
    if size < HEADER_SIZE {
        return Err(BoardError::BadHeader { reason: "totalsize is smaller than the header" });
    }
    Ok(size)
}

/// `#address-cells` and `#size-cells` of one node, as the spec's defaults
/// (2 and 1) when absent. A malformed value is kept as `u32::MAX`, which
/// every user rejects with an error naming the node that needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cells {
    pub address: u32,
    pub size: u32,
}

impl Cells {
    const DEFAULT: Cells = Cells { address: 2, size: 1 };
}

/// One node: its name and where its contents start.
#[derive(Clone, Copy, Debug)]
pub(super) struct Node<'a> {
    /// The node's name including any `@unit-address`; "" for the root.
    pub name: &'a str,
    /// Offset (in the structure block) of this node's FDT_BEGIN_NODE token.
    pub begin: usize,
    /// Offset of the first token after the name: the properties.
    body: usize,
    /// The parent's `#address-cells`/`#size-cells`, which govern this
    /// node's `reg` (the root gets the defaults).
    pub parent_cells: Cells,
    /// `begin` of the parent; `None` for the root.
    pub parent: Option<usize>,
}

impl Node<'_> {
    /// The name for error messages.
    pub fn dt_name(&self) -> DtName {
        if self.name.is_empty() {
            DtName::new("/")
        } else {
            DtName::new(self.name)
        }
    }

    /// The name without its `@unit-address`.
    pub fn base_name(&self) -> &str {
        self.name.split('@').next().unwrap_or(self.name)
    }

    pub fn is_root(&self) -> bool {
        self.parent.is_none()
    }
}

enum Token<'a> {
    Begin {
        name: &'a str,
        body: usize,
    },
    End,
    /// The name is looked up only when needed; see [`Dtb::prop_name`].
    Prop {
        name_off: u32,
        value: &'a [u8],
    },
    Nop,
    EndTree,
}

/// A validated device tree blob.
#[derive(Clone, Copy)]
pub(super) struct Dtb<'a> {
    structs: &'a [u8],
    /// Offset of the structure block in the blob, for error messages.
    structs_offset: usize,
    strings: &'a [u8],
    /// From the memory reservation block to the end of the blob.
    rsvmap: &'a [u8],
    total_size: usize,
}

impl<'a> Dtb<'a> {
    /// Checks the header, bounds every block inside `totalsize`, and walks
    /// the whole structure block once to check its grammar.
    pub fn new(bytes: &'a [u8]) -> Result<Self, BoardError> {
        let total = total_size(bytes)?;
        let data = bytes.get(..total).ok_or(BoardError::Truncated { needed: total, available: bytes.len() })?;
        let field = |index: usize| -> Result<usize, BoardError> {
            let off = index.checked_mul(4).ok_or(BoardError::BadHeader { reason: "index" })?;
            let v = be32(data, off).ok_or(BoardError::Truncated { needed: HEADER_SIZE, available: data.len() })?;
            usize::try_from(v).map_err(|_| BoardError::BadHeader { reason: "field too large" })
        };
        let off_struct = field(2)?;
        let off_strings = field(3)?;
        let off_rsvmap = field(4)?;
        let version = field(5)?;
        let last_comp = field(6)?;
        let size_strings = field(8)?;
        if version < 16 || last_comp > 17 {
            return Err(BoardError::BadHeader {
                reason: "unsupported version (need version >= 16, last_comp_version <= 17)",
            });
        }
        let size_struct = if version >= 17 { field(9)? } else { total.saturating_sub(off_struct) };
        let block = |off: usize, size: usize, reason: &'static str| {
            off.checked_add(size).and_then(|end| data.get(off..end)).ok_or(BoardError::BadHeader { reason })
        };
        let structs = block(off_struct, size_struct, "structure block lies outside totalsize")?;
        let strings = block(off_strings, size_strings, "strings block lies outside totalsize")?;
        let rsvmap = data
            .get(off_rsvmap..)
            .ok_or(BoardError::BadHeader { reason: "memory reservation block lies outside totalsize" })?;
        if off_rsvmap < HEADER_SIZE || off_struct < HEADER_SIZE || off_strings < HEADER_SIZE {
            return Err(BoardError::BadHeader { reason: "a block overlaps the header" });
        }
        let dtb = Dtb { structs, structs_offset: off_struct, strings, rsvmap, total_size: total };
        dtb.validate()?;
        Ok(dtb)
    }

    pub fn total_size(&self) -> usize {
        self.total_size
    }

    fn malformed(&self, off: usize, reason: &'static str) -> BoardError {
        BoardError::Malformed { offset: self.structs_offset.saturating_add(off), reason }
    }

    /// Decodes the token at `off` and returns it with the offset of the
    /// next token.
    fn token(&self, off: usize) -> Result<(Token<'a>, usize), BoardError> {
        let tag = be32(self.structs, off).ok_or_else(|| self.malformed(off, "structure block ends without FDT_END"))?;
        let after_tag = off.checked_add(4).ok_or_else(|| self.malformed(off, "offset overflow"))?;
        match tag {
            FDT_BEGIN_NODE => {
                let rest = self.structs.get(after_tag..).unwrap_or_default();
                let len = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| self.malformed(off, "node name is not NUL-terminated"))?;
                let name = rest
                    .get(..len)
                    .and_then(|n| core::str::from_utf8(n).ok())
                    .ok_or_else(|| self.malformed(off, "node name is not UTF-8"))?;
                let body = after_tag
                    .checked_add(len)
                    .and_then(|x| x.checked_add(1))
                    .and_then(align4)
                    .ok_or_else(|| self.malformed(off, "offset overflow"))?;
                Ok((Token::Begin { name, body }, body))
            }
            FDT_END_NODE => Ok((Token::End, after_tag)),
            FDT_NOP => Ok((Token::Nop, after_tag)),
            FDT_END => Ok((Token::EndTree, after_tag)),
            FDT_PROP => {
                let len =
                    be32(self.structs, after_tag).ok_or_else(|| self.malformed(off, "property header is truncated"))?;
                let name_off = after_tag
                    .checked_add(4)
                    .and_then(|o| be32(self.structs, o))
                    .ok_or_else(|| self.malformed(off, "property header is truncated"))?;
                let start = after_tag.checked_add(8).ok_or_else(|| self.malformed(off, "offset overflow"))?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|len| start.checked_add(len))
                    .ok_or_else(|| self.malformed(off, "property length overflows"))?;
                let value = self
                    .structs
                    .get(start..end)
                    .ok_or_else(|| self.malformed(off, "property value runs past the structure block"))?;
                let next = align4(end).ok_or_else(|| self.malformed(off, "offset overflow"))?;
                Ok((Token::Prop { name_off, value }, next))
            }
            _ => Err(self.malformed(off, "unknown token")),
        }
    }

    /// The property name at `name_off` in the strings block.
    fn prop_name(&self, name_off: u32) -> Option<&'a str> {
        let s = self.strings.get(usize::try_from(name_off).ok()?..)?;
        core::str::from_utf8(s.get(..s.iter().position(|&b| b == 0)?)?).ok()
    }

    /// Checks the grammar of the structure block: exactly one root node,
    /// balanced BEGIN/END, properties only before subnodes, nesting at most
    /// [`MAX_DEPTH`], terminated by FDT_END. Every token advances the offset
    /// by at least 4 bytes, so the walk ends within the block's length.
    fn validate(&self) -> Result<(), BoardError> {
        let mut off = 0;
        let mut depth = 0usize;
        let mut seen_root = false;
        let mut props_allowed = false;
        loop {
            let (tok, next) = self.token(off)?;
            match tok {
                Token::Begin { .. } => {
                    if depth == 0 && seen_root {
                        return Err(self.malformed(off, "more than one root node"));
                    }
                    if depth >= MAX_DEPTH {
                        return Err(self.malformed(off, "nodes nested too deeply"));
                    }
                    depth = depth.saturating_add(1);
                    seen_root = true;
                    props_allowed = true;
                }
                Token::End => {
                    depth = depth.checked_sub(1).ok_or_else(|| self.malformed(off, "FDT_END_NODE outside any node"))?;
                    props_allowed = false;
                }
                Token::Prop { name_off, .. } => {
                    if self.prop_name(name_off).is_none() {
                        return Err(self.malformed(off, "property name offset is not a string"));
                    }
                    if depth == 0 {
                        return Err(self.malformed(off, "property outside any node"));
                    }
                    if !props_allowed {
                        return Err(self.malformed(off, "property after a subnode"));
                    }
                }
                Token::Nop => {}
                Token::EndTree => {
                    if depth != 0 {
                        return Err(self.malformed(off, "FDT_END inside a node"));
                    }
                    if !seen_root {
                        return Err(self.malformed(off, "no root node"));
                    }
                    return Ok(());
                }
            }
            off = next;
        }
    }

    /// The `/memreserve/` entries.
    pub fn mem_reservations(&self) -> MemReservations<'a> {
        MemReservations { block: self.rsvmap, off: 0, done: false }
    }

    /// The root node.
    pub fn root(&self) -> Option<Node<'a>> {
        self.all_nodes().next()
    }

    /// All nodes, depth first, in blob order.
    pub fn all_nodes<'d>(&'d self) -> AllNodes<'d, 'a> {
        AllNodes {
            dtb: self,
            off: 0,
            depth: 0,
            stack: [Frame { begin: 0, body: 0, cells: None }; MAX_DEPTH],
            done: false,
        }
    }

    /// The direct children of `node`.
    pub fn children<'d>(&'d self, node: &Node<'a>) -> Children<'d, 'a> {
        Children { dtb: self, off: node.body, level: 0, cells: self.cells_of(node), parent: node.begin, done: false }
    }

    /// The node whose FDT_BEGIN_NODE token is at `begin`.
    pub fn node_at(&self, begin: usize) -> Option<Node<'a>> {
        self.all_nodes().find(|n| n.begin == begin)
    }

    /// The parent of `node` (`None` for the root).
    pub fn parent(&self, node: &Node<'a>) -> Option<Node<'a>> {
        node.parent.and_then(|p| self.node_at(p))
    }

    /// The properties of `node`, in blob order.
    pub fn props<'d>(&'d self, node: &Node<'a>) -> Props<'d, 'a> {
        Props { dtb: self, off: node.body, done: false }
    }

    /// The value of property `name` of `node`.
    pub fn prop(&self, node: &Node<'a>, name: &str) -> Option<&'a [u8]> {
        self.props(node).find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The `#address-cells`/`#size-cells` that `node` gives its children.
    pub fn cells_of(&self, node: &Node<'a>) -> Cells {
        self.cells_at(node.body)
    }

    /// [`Dtb::cells_of`] for the node whose properties start at `body`.
    fn cells_at(&self, body: usize) -> Cells {
        let read = |v: &[u8]| {
            if v.len() == 4 {
                be32(v, 0).unwrap_or(u32::MAX)
            } else {
                u32::MAX
            }
        };
        let mut cells = Cells::DEFAULT;
        for (name, value) in (Props { dtb: self, off: body, done: false }) {
            match name {
                "#address-cells" => cells.address = read(value),
                "#size-cells" => cells.size = read(value),
                _ => {}
            }
        }
        cells
    }

    /// Finds a node by absolute path (`/a/b@1`). A component without a unit
    /// address also matches a node name with one (`/a/b` finds `b@1`).
    pub fn find_path(&self, path: &str) -> Option<Node<'a>> {
        let rest = path.strip_prefix('/')?;
        self.find_from(self.root()?, rest)
    }

    /// Descends from `node` along the `/`-separated relative `path`.
    pub fn find_from(&self, mut node: Node<'a>, path: &str) -> Option<Node<'a>> {
        for component in path.split('/').filter(|c| !c.is_empty()) {
            let has_unit = component.contains('@');
            node = self.children(&node).find(|c| c.name == component || (!has_unit && c.base_name() == component))?;
        }
        Some(node)
    }

    /// Finds the node whose `phandle` property is `phandle`.
    pub fn find_phandle(&self, phandle: u32) -> Option<Node<'a>> {
        self.all_nodes().find(|n| {
            self.prop(n, "phandle")
                .or_else(|| self.prop(n, "linux,phandle"))
                .is_some_and(|v| v.len() == 4 && be32(v, 0) == Some(phandle))
        })
    }
}

#[derive(Clone, Copy)]
struct Frame {
    begin: usize,
    body: usize,
    /// The cells this node gives its children, read when the first child
    /// shows up (most nodes have none).
    cells: Option<Cells>,
}

/// Iterator over all nodes; see [`Dtb::all_nodes`].
pub(super) struct AllNodes<'d, 'a> {
    dtb: &'d Dtb<'a>,
    off: usize,
    depth: usize,
    stack: [Frame; MAX_DEPTH],
    done: bool,
}

impl<'a> Iterator for AllNodes<'_, 'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        while !self.done {
            let Ok((tok, next)) = self.dtb.token(self.off) else {
                self.done = true;
                break;
            };
            let begin = self.off;
            self.off = next;
            match tok {
                Token::Begin { name, body } => {
                    let dtb = self.dtb;
                    let parent = self.depth.checked_sub(1).and_then(|i| self.stack.get_mut(i));
                    let (parent_cells, parent) = match parent {
                        Some(f) => (*f.cells.get_or_insert_with(|| dtb.cells_at(f.body)), Some(f.begin)),
                        None => (Cells::DEFAULT, None),
                    };
                    let node = Node { name, begin, body, parent_cells, parent };
                    let Some(slot) = self.stack.get_mut(self.depth) else {
                        self.done = true;
                        break;
                    };
                    *slot = Frame { begin, body, cells: None };
                    self.depth = self.depth.saturating_add(1);
                    return Some(node);
                }
                Token::End => match self.depth.checked_sub(1) {
                    Some(d) => self.depth = d,
                    None => self.done = true,
                },
                Token::Prop { .. } | Token::Nop => {}
                Token::EndTree => self.done = true,
            }
        }
        None
    }
}

/// Iterator over a node's children; see [`Dtb::children`].
pub(super) struct Children<'d, 'a> {
    dtb: &'d Dtb<'a>,
    off: usize,
    /// Nesting below the parent: 0 between children, > 0 inside one.
    level: usize,
    cells: Cells,
    parent: usize,
    done: bool,
}

impl<'a> Iterator for Children<'_, 'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        while !self.done {
            let Ok((tok, next)) = self.dtb.token(self.off) else {
                self.done = true;
                break;
            };
            let begin = self.off;
            self.off = next;
            match tok {
                Token::Begin { name, body } => {
                    self.level = self.level.saturating_add(1);
                    if self.level == 1 {
                        return Some(Node { name, begin, body, parent_cells: self.cells, parent: Some(self.parent) });
                    }
                }
                Token::End => match self.level.checked_sub(1) {
                    Some(l) => self.level = l,
                    None => self.done = true, // the parent's own END
                },
                Token::Prop { .. } | Token::Nop => {}
                Token::EndTree => self.done = true,
            }
        }
        None
    }
}

/// Iterator over a node's properties as `(name, value)`.
pub(super) struct Props<'d, 'a> {
    dtb: &'d Dtb<'a>,
    off: usize,
    done: bool,
}

impl<'a> Iterator for Props<'_, 'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.dtb.token(self.off) {
                Ok((Token::Prop { name_off, value }, next)) => {
                    self.off = next;
                    // Checked by `validate`; a bad one ends the list.
                    let Some(name) = self.dtb.prop_name(name_off) else {
                        break;
                    };
                    return Some((name, value));
                }
                Ok((Token::Nop, next)) => self.off = next,
                _ => self.done = true,
            }
        }
        None
    }
}

/// Iterator over the memory reservation block as `(address, size)`, ending
/// at the all-zero terminator. Yields `Err` once if the block ends without
/// one.
pub(super) struct MemReservations<'a> {
    block: &'a [u8],
    off: usize,
    done: bool,
}

impl Iterator for MemReservations<'_> {
    type Item = Result<(u64, u64), BoardError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let entry = be64(self.block, self.off).zip(self.off.checked_add(8).and_then(|o| be64(self.block, o)));
        self.off = self.off.saturating_add(16);
        match entry {
            Some((0, 0)) => {
                self.done = true;
                None
            }
            Some(e) => Some(Ok(e)),
            None => {
                self.done = true;
                Some(Err(BoardError::BadHeader { reason: "memory reservation block has no terminating entry" }))
            }
        }
    }
}
