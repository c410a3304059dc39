//! virtio-console (device ID 3) without `MULTIPORT`: one port, receiveq0
//! (queue 0, host to client) and transmitq0 (queue 1, client to host). It
//! owns the output the client's bytes go to and the input bytes waiting
//! for the client to post receive buffers (at most [`INPUT_LIMIT`]; the
//! main loop stops reading its input while they are that many, so a fast
//! producer waits instead of growing the backend).
//!
//! Output is written and flushed per transmitted buffer. An output that
//! fails (a closed pipe) loses the bytes and is counted, the client does
//! not notice: a console must not stop the client's kernel.

use crate::transport::{complete, next_chain, Device, Fault, F_VERSION_1};
use std::collections::VecDeque;
use std::io::Write;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

pub const RECEIVEQ: u16 = 0;
pub const TRANSMITQ: u16 = 1;
pub const QUEUE_SIZE: u16 = 64;
/// Input bytes held for the client at most.
pub const INPUT_LIMIT: usize = 4096;
/// Bytes a transmitted buffer moves through at a time.
const CHUNK: usize = 4096;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub output_errors: u64,
}

pub struct Console {
    output: Box<dyn Write>,
    input: VecDeque<u8>,
    pub stats: ConsoleStats,
}

impl Console {
    pub fn new(output: Box<dyn Write>) -> Self {
        Self { output, input: VecDeque::new(), stats: ConsoleStats::default() }
    }

    /// Room for more input.
    pub fn input_room(&self) -> usize {
        INPUT_LIMIT.saturating_sub(self.input.len())
    }

    /// Input for the client; what does not fit in [`Console::input_room`] is
    /// dropped (the caller reads no more than that).
    pub fn push_input(&mut self, bytes: &[u8]) {
        let room = self.input_room();
        self.input.extend(bytes.iter().take(room));
    }

    /// Input waiting for receive buffers.
    pub fn pending_input(&self) -> usize {
        self.input.len()
    }

    fn transmit(&mut self, mem: &GuestMemoryMmap, queue: &mut Queue) -> Result<bool, Fault> {
        let mut used = false;
        let mut buf = [0u8; CHUNK];
        while let Some(chain) = next_chain(queue, TRANSMITQ, mem)? {
            let fault = |error| Fault::Chain { queue: TRANSMITQ, head: chain.head, error };
            let mut at = 0;
            loop {
                let n = chain.read(mem, at, &mut buf).map_err(fault)?;
                let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else { break };
                if self.output.write_all(bytes).is_err() {
                    self.stats.output_errors += 1;
                }
                self.stats.bytes_out += n as u64;
                at += n as u64;
            }
            if self.output.flush().is_err() {
                self.stats.output_errors += 1;
            }
            complete(queue, TRANSMITQ, mem, chain.head, 0)?;
            used = true;
        }
        Ok(used)
    }

    fn receive(&mut self, mem: &GuestMemoryMmap, queue: &mut Queue) -> Result<bool, Fault> {
        let mut used = false;
        // Only while there is input: a chain taken is a chain used.
        while !self.input.is_empty() {
            let Some(chain) = next_chain(queue, RECEIVEQ, mem)? else { break };
            let room = usize::try_from(chain.writable_len()).unwrap_or(usize::MAX);
            let bytes: Vec<u8> = self.input.iter().take(room).copied().collect();
            let n = chain.write(mem, 0, &bytes).map_err(|error| Fault::Chain {
                queue: RECEIVEQ,
                head: chain.head,
                error,
            })?;
            self.input.drain(..n);
            self.stats.bytes_in += n as u64;
            complete(queue, RECEIVEQ, mem, chain.head, n as u32)?;
            used = true;
        }
        Ok(used)
    }
}

impl Device for Console {
    fn id(&self) -> u32 {
        platform::forward::DeviceType::Console.virtio_id()
    }

    fn features(&self) -> u64 {
        F_VERSION_1
    }

    fn queue_sizes(&self) -> &'static [u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    /// `struct virtio_console_config`: cols, rows, max_nr_ports,
    /// emerg_wr; none of their features is offered, so zeros.
    fn config(&self) -> Vec<u8> {
        vec![0; 12]
    }

    fn process(&mut self, mem: &GuestMemoryMmap, queues: &mut [Queue]) -> Result<u32, Fault> {
        let mut used = 0;
        if let Some(q) = queues.get_mut(TRANSMITQ as usize).filter(|q| q.ready()) {
            if self.transmit(mem, q)? {
                used |= 1 << TRANSMITQ;
            }
        }
        if let Some(q) = queues.get_mut(RECEIVEQ as usize).filter(|q| q.ready()) {
            if self.receive(mem, q)? {
                used |= 1 << RECEIVEQ;
            }
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests;
