//! virtio-blk (device ID 2) backed by a file: one request queue, requests
//! `IN`, `OUT`, `FLUSH` and `GET_ID`, 512-byte sectors, the capacity the
//! file's size gives at start. It owns the file and the request format
//! (virtio 1.x, 5.2.6); the transport owns the queue.
//!
//! A request is a chain whose readable stream starts with the 16-byte
//! header (type, reserved, sector) and carries an `OUT`'s data after it,
//! and whose writable stream carries an `IN`'s data then ends with the
//! status byte; how the driver cuts the streams into descriptors does not
//! matter (Linux: header, one descriptor per segment, status).
//!
//! Status: `OK`; `IOERR` for a request past the capacity, a write to a
//! read-only device, a header shorter than 16 bytes, or an I/O error of
//! the file; `UNSUPP` for any other type. A chain with no writable byte has
//! nowhere to put a status: that is a fault (`DEVICE_NEEDS_RESET`).

use crate::chain::{Chain, ChainError};
use crate::transport::{complete, next_chain, Device, Fault, F_VERSION_1};
use std::fs::File;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES,
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

/// The sector size, of the protocol and of the device (`blk_size`).
pub const SECTOR: u64 = 512;
/// The request queue's size; `seg_max` leaves room for the header and
/// status descriptors, since the device offers no indirect descriptors.
pub const QUEUE_SIZE: u16 = 128;
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// The request header.
const HEADER: u64 = 16;
/// `GET_ID`'s answer.
pub const ID_BYTES: usize = VIRTIO_BLK_ID_BYTES as usize;

/// What the device has done, for the stats line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStats {
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub written_bytes: u64,
    pub flushes: u64,
    pub errors: u64,
}

/// The block device.
pub struct Block {
    file: File,
    sectors: u64,
    read_only: bool,
    serial: [u8; ID_BYTES],
    pub stats: BlockStats,
}

impl Block {
    /// A device over `file`, of its size in whole sectors at this time;
    /// `serial` (cut to 20 bytes) is what `GET_ID` answers.
    pub fn new(file: File, read_only: bool, serial: &str) -> std::io::Result<Self> {
        // The end, not the metadata's length: a block device (`/dev/vdb`)
        // has length 0 in its metadata.
        let sectors = std::io::Seek::seek(&mut &file, std::io::SeekFrom::End(0))? / SECTOR;
        let mut id = [0; ID_BYTES];
        for (to, from) in id.iter_mut().zip(serial.bytes()) {
            *to = from;
        }
        Ok(Self { file, sectors, read_only, serial: id, stats: BlockStats::default() })
    }

    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether `len` bytes from `sector` lie within the capacity.
    fn in_range(&self, sector: u64, len: u64) -> bool {
        let end = sector.checked_mul(SECTOR).and_then(|start| start.checked_add(len));
        end.is_some_and(|end| end <= self.sectors.saturating_mul(SECTOR))
    }

    /// Does one request; returns its status and the bytes written to the
    /// writable stream before the status.
    fn request(&mut self, chain: &Chain, mem: &GuestMemoryMmap) -> Result<(u32, u64), ChainError> {
        let mut header = [0u8; HEADER as usize];
        if chain.read(mem, 0, &mut header)? < header.len() {
            self.stats.errors += 1;
            return Ok((VIRTIO_BLK_S_IOERR, 0));
        }
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector_bytes = [0u8; 8];
        sector_bytes.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector_bytes);
        // The last writable byte is the status.
        let data_in = chain.writable_len().saturating_sub(1);
        let data_out = chain.readable_len().saturating_sub(HEADER);
        let status = match kind {
            VIRTIO_BLK_T_IN => {
                if !self.in_range(sector, data_in) {
                    VIRTIO_BLK_S_IOERR
                } else {
                    let status = self.read_in(chain, mem, sector, data_in)?;
                    if status == VIRTIO_BLK_S_OK {
                        self.stats.reads += 1;
                        self.stats.read_bytes += data_in;
                        return Ok((status, data_in));
                    }
                    status
                }
            }
            VIRTIO_BLK_T_OUT => {
                if self.read_only || !self.in_range(sector, data_out) {
                    VIRTIO_BLK_S_IOERR
                } else {
                    let status = self.write_out(chain, mem, sector, data_out)?;
                    if status == VIRTIO_BLK_S_OK {
                        self.stats.writes += 1;
                        self.stats.written_bytes += data_out;
                    }
                    status
                }
            }
            VIRTIO_BLK_T_FLUSH => {
                self.stats.flushes += 1;
                match self.file.sync_data() {
                    Ok(()) => VIRTIO_BLK_S_OK,
                    Err(_) => VIRTIO_BLK_S_IOERR,
                }
            }
            VIRTIO_BLK_T_GET_ID => {
                let len = (data_in as usize).min(ID_BYTES);
                let written = chain.write(mem, 0, self.serial.get(..len).unwrap_or_default())?;
                return Ok((VIRTIO_BLK_S_OK, written as u64));
            }
            _ => VIRTIO_BLK_S_UNSUPP,
        };
        if status == VIRTIO_BLK_S_IOERR {
            self.stats.errors += 1;
        }
        Ok((status, 0))
    }

    fn read_in(&self, chain: &Chain, mem: &GuestMemoryMmap, sector: u64, len: u64) -> Result<u32, ChainError> {
        let Ok(n) = usize::try_from(len) else { return Ok(VIRTIO_BLK_S_IOERR) };
        Ok(match chain.read_from_file(mem, 0, &self.file, sector * SECTOR, n) {
            Ok(()) => VIRTIO_BLK_S_OK,
            Err(_) => VIRTIO_BLK_S_IOERR,
        })
    }

    fn write_out(&self, chain: &Chain, mem: &GuestMemoryMmap, sector: u64, len: u64) -> Result<u32, ChainError> {
        let Ok(n) = usize::try_from(len) else { return Ok(VIRTIO_BLK_S_IOERR) };
        Ok(match chain.write_to_file(mem, HEADER, &self.file, sector * SECTOR, n) {
            Ok(()) => VIRTIO_BLK_S_OK,
            Err(_) => VIRTIO_BLK_S_IOERR,
        })
    }
}

impl Device for Block {
    fn id(&self) -> u32 {
        platform::forward::DeviceType::Block.virtio_id()
    }

    fn features(&self) -> u64 {
        let ro = if self.read_only { 1 << VIRTIO_BLK_F_RO } else { 0 };
        F_VERSION_1 | 1 << VIRTIO_BLK_F_SEG_MAX | 1 << VIRTIO_BLK_F_BLK_SIZE | 1 << VIRTIO_BLK_F_FLUSH | ro
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[QUEUE_SIZE]
    }

    /// `struct virtio_blk_config` up to `blk_size`: capacity, size_max
    /// (not offered: 0), seg_max, geometry (not offered: 0), blk_size.
    fn config(&self) -> Vec<u8> {
        let mut config = Vec::with_capacity(24);
        config.extend_from_slice(&self.sectors.to_le_bytes());
        config.extend_from_slice(&0u32.to_le_bytes());
        config.extend_from_slice(&SEG_MAX.to_le_bytes());
        config.extend_from_slice(&0u32.to_le_bytes());
        config.extend_from_slice(&(SECTOR as u32).to_le_bytes());
        config
    }

    fn process(&mut self, mem: &GuestMemoryMmap, queues: &mut [Queue]) -> Result<u32, Fault> {
        let Some(queue) = queues.first_mut().filter(|q| virtio_queue::QueueT::ready(*q)) else {
            return Ok(0);
        };
        let mut used = 0;
        while let Some(chain) = next_chain(queue, 0, mem)? {
            let fault = |error| Fault::Chain { queue: 0, head: chain.head, error };
            let Some(status_at) = chain.writable_len().checked_sub(1) else {
                return Err(fault(ChainError::NoStatus));
            };
            let (status, data) = self.request(&chain, mem).map_err(fault)?;
            chain.write(mem, status_at, &[status as u8]).map_err(fault)?;
            // Bytes written: the data, then the status byte.
            complete(queue, 0, mem, chain.head, u32::try_from(data + 1).unwrap_or(u32::MAX))?;
            used = 1;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests;
