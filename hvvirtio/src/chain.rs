//! A descriptor chain taken apart and checked once, before a device looks
//! at it: its device-readable and device-writable buffers as two byte
//! streams, every buffer inside the client's RAM. The devices then read
//! and write the streams by offset and never see a descriptor, so the one
//! place a hostile chain (a loop, a `next` past the table, a buffer outside
//! RAM, an absurd length) is refused is [`Chain::collect`].

use core::fmt;
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// Why a chain was refused. Each is a driver bug or a hostile client: the
/// transport answers with `DEVICE_NEEDS_RESET` (see `transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// No descriptor could be read at the head (its index is past the
    /// queue, or the table is not in RAM).
    Empty,
    /// The last descriptor read says `NEXT`, but the chain stopped: it
    /// loops or is longer than the queue, its `next` is past the table, it
    /// is longer than 4 GiB in total, or a descriptor is not in RAM.
    Unterminated,
    /// A buffer is not (wholly) in the client's RAM.
    BufferOutside { addr: u64, len: u32 },
    /// A request that must end with a status byte has no writable byte.
    NoStatus,
    /// The client's RAM refused an access after the chain was checked
    /// (cannot happen while the memory map is fixed; kept typed anyway).
    Memory,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no descriptor readable at the chain's head"),
            Self::Unterminated => {
                f.write_str("the chain does not end (a loop, too long, or a descriptor outside the table or RAM)")
            }
            Self::BufferOutside { addr, len } => write!(f, "buffer of {len} bytes at {addr:#x} is outside RAM"),
            Self::NoStatus => f.write_str("no writable byte for the request's status"),
            Self::Memory => f.write_str("an access to the client's RAM failed"),
        }
    }
}

/// A checked chain: its head (for the used ring) and its buffers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub readable: Vec<Segment>,
    pub writable: Vec<Segment>,
}

impl Chain {
    /// Walks `chain` (virtio-queue bounds the walk by the queue size and
    /// stops at a descriptor it cannot read) and checks every buffer.
    pub fn collect(chain: DescriptorChain<&GuestMemoryMmap>, mem: &GuestMemoryMmap) -> Result<Self, ChainError> {
        let head = chain.head_index();
        let mut this = Self { head, readable: Vec::new(), writable: Vec::new() };
        let mut last_has_next = None;
        for desc in chain {
            last_has_next = Some(desc.has_next());
            let segment = Segment { addr: desc.addr(), len: desc.len() };
            if segment.len == 0 {
                continue;
            }
            if !GuestMemoryBackend::check_range(mem, segment.addr, segment.len as usize) {
                return Err(ChainError::BufferOutside { addr: segment.addr.0, len: segment.len });
            }
            if desc.is_write_only() {
                this.writable.push(segment);
            } else {
                this.readable.push(segment);
            }
        }
        match last_has_next {
            None => Err(ChainError::Empty),
            Some(true) => Err(ChainError::Unterminated),
            Some(false) => Ok(this),
        }
    }

    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|s| u64::from(s.len)).sum()
    }

    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|s| u64::from(s.len)).sum()
    }

    /// Copies the readable stream from `offset` into `buf`; returns how
    /// many bytes there were (fewer at the stream's end).
    pub fn read(&self, mem: &GuestMemoryMmap, offset: u64, buf: &mut [u8]) -> Result<usize, ChainError> {
        let mut done = 0;
        for (addr, len) in pieces(&self.readable, offset, buf.len()) {
            let to = buf.get_mut(done..done + len).ok_or(ChainError::Memory)?;
            mem.read_slice(to, addr).map_err(|_| ChainError::Memory)?;
            done += len;
        }
        Ok(done)
    }

    /// Copies `data` into the writable stream at `offset`; returns how many
    /// bytes fit.
    pub fn write(&self, mem: &GuestMemoryMmap, offset: u64, data: &[u8]) -> Result<usize, ChainError> {
        let mut done = 0;
        for (addr, len) in pieces(&self.writable, offset, data.len()) {
            let from = data.get(done..done + len).ok_or(ChainError::Memory)?;
            mem.write_slice(from, addr).map_err(|_| ChainError::Memory)?;
            done += len;
        }
        Ok(done)
    }
}

/// Moving a request's data between the backing file and the client's RAM
/// directly, in one `preadv`/`pwritev` per request: the kernel's own copy
/// is the only one, with no buffer in between. Under emulation the service
/// VM's copies and system calls are most of a request's cost: a buffer
/// doubles the copies, a call per page (the client's pages are scattered)
/// multiplies the calls.
#[cfg(target_os = "linux")]
impl Chain {
    /// Reads `len` bytes of `file` from byte `at` into the writable stream
    /// from `offset`. An error is the file's (or a stream too short).
    pub fn read_from_file(
        &self,
        mem: &GuestMemoryMmap,
        offset: u64,
        file: &std::fs::File,
        at: u64,
        len: usize,
    ) -> std::io::Result<()> {
        Self::file_io(mem, &self.writable, offset, len, |iov, count| {
            // SAFETY: `iov` holds `count` ranges of the client's RAM, each
            // valid for writes for the whole call (their guards live in
            // `file_io`); the kernel writes nothing else.
            unsafe { libc::preadv(std::os::fd::AsRawFd::as_raw_fd(file), iov, count, at as libc::off_t) }
        })
    }

    /// Writes `len` bytes of the readable stream from `offset` to `file`
    /// at byte `at`.
    pub fn write_to_file(
        &self,
        mem: &GuestMemoryMmap,
        offset: u64,
        file: &std::fs::File,
        at: u64,
        len: usize,
    ) -> std::io::Result<()> {
        Self::file_io(mem, &self.readable, offset, len, |iov, count| {
            // SAFETY: `iov` holds `count` ranges of the client's RAM, each
            // valid for reads for the whole call; the kernel only reads them.
            unsafe { libc::pwritev(std::os::fd::AsRawFd::as_raw_fd(file), iov, count, at as libc::off_t) }
        })
    }

    /// One vectored call `io(iov, count)` over the guest ranges of
    /// `[offset, offset + len)` of `segments`; it must move all `len`
    /// bytes (a file too short, or a stream too short, is an error).
    fn file_io(
        mem: &GuestMemoryMmap,
        segments: &[Segment],
        offset: u64,
        len: usize,
        io: impl FnOnce(*const libc::iovec, libc::c_int) -> isize,
    ) -> std::io::Result<()> {
        let slices = pieces(segments, offset, len)
            .into_iter()
            .map(|(addr, n)| mem.get_slice(addr, n).map_err(std::io::Error::other))
            .collect::<std::io::Result<Vec<_>>>()?;
        let guards: Vec<_> = slices.iter().map(|s| s.ptr_guard_mut()).collect();
        let iov: Vec<libc::iovec> = guards
            .iter()
            .zip(&slices)
            .map(|(g, s)| libc::iovec { iov_base: g.as_ptr().cast(), iov_len: s.len() })
            .collect();
        let total: usize = iov.iter().map(|v| v.iov_len).sum();
        if total != len {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the request's buffers are too short"));
        }
        let count = libc::c_int::try_from(iov.len()).map_err(std::io::Error::other)?;
        let moved = io(iov.as_ptr(), count);
        // Before anything else can change errno.
        let error = std::io::Error::last_os_error();
        drop(guards);
        match usize::try_from(moved) {
            Ok(n) if n == len => Ok(()),
            Ok(n) => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{n} of {len} bytes"))),
            Err(_) => Err(error),
        }
    }
}

/// The guest ranges that `[offset, offset + len)` of the stream made of
/// `segments` covers, in order.
fn pieces(segments: &[Segment], offset: u64, len: usize) -> Vec<(GuestAddress, usize)> {
    let mut out = Vec::new();
    let (mut skip, mut left) = (offset, len as u64);
    for s in segments {
        if left == 0 {
            break;
        }
        let seg_len = u64::from(s.len);
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        let take = (seg_len - skip).min(left);
        // In RAM (checked by `collect`), so no overflow.
        out.push((GuestAddress(s.addr.0.saturating_add(skip)), take as usize));
        left -= take;
        skip = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_cross_segment_boundaries() {
        let segments = [
            Segment { addr: GuestAddress(0x1000), len: 4 },
            Segment { addr: GuestAddress(0x2000), len: 2 },
            Segment { addr: GuestAddress(0x3000), len: 8 },
        ];
        assert_eq!(pieces(&segments, 0, 3), vec![(GuestAddress(0x1000), 3)]);
        assert_eq!(
            pieces(&segments, 3, 5),
            vec![(GuestAddress(0x1003), 1), (GuestAddress(0x2000), 2), (GuestAddress(0x3000), 2)]
        );
        assert_eq!(pieces(&segments, 6, 100), vec![(GuestAddress(0x3000), 8)]);
        assert_eq!(pieces(&segments, 14, 1), vec![]);
    }
}
