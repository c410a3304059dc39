//! Arm semihosting: how the firmware ends a QEMU run with an exit status.
//!
//! A semihosting call is `HLT #0xF000`. When QEMU was started without
//! `-semihosting` that instruction is undefined and traps to our own vector;
//! the vector hands the frame to [`recover`], which skips the instruction and
//! makes the call report [`Unavailable`]. So callers learn at run time
//! whether a debugger host is there, and fall back to other means.
#![cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]

use core::fmt;

/// Semihosting operation numbers.
const SYS_EXIT: u64 = 0x18;
/// Writes a NUL-terminated string to the host's console.
const SYS_WRITE0: u64 = 0x04;
/// `ADP_Stopped_ApplicationExit`: exit with the status in the subcode.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;
/// What the recovery path puts in x0 to say "no semihosting host".
const UNAVAILABLE: u64 = u64::MAX;

/// Semihosting is not enabled in this QEMU (or there is no debugger).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable;

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".section .text.platform_semihosting, \"ax\"",
    ".global platform_semihosting_call",
    "platform_semihosting_call:",
    ".global platform_semihosting_hlt",
    "platform_semihosting_hlt:",
    "    hlt #0xf000",
    "    ret",
);

#[cfg(target_arch = "aarch64")]
extern "C" {
    fn platform_semihosting_call(op: u64, param: u64) -> u64;
    static platform_semihosting_hlt: u8;
}

/// Makes one semihosting call.
#[cfg(target_arch = "aarch64")]
fn call(op: u64, param: u64) -> Result<u64, Unavailable> {
    // SAFETY: the call's parameter block is owned by the caller for the
    // duration of the call; an absent host is caught by `recover`.
    match unsafe { platform_semihosting_call(op, param) } {
        UNAVAILABLE => Err(Unavailable),
        result => Ok(result),
    }
}

/// Ends the QEMU run with `status` as its exit code. Returns only if there
/// is no semihosting host.
#[cfg(target_arch = "aarch64")]
pub fn exit(status: u32) -> Unavailable {
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(status)];
    match call(SYS_EXIT, block.as_ptr() as u64) {
        Ok(_) | Err(Unavailable) => Unavailable,
    }
}

/// Writes text to the semihosting host's console: QEMU's standard error
/// unless `-semihosting-config chardev=` moves it. For the one message a
/// firmware must get out when it has no UART to write it to. Nothing is
/// written, and [`Unavailable`] returned, without a semihosting host.
#[cfg(target_arch = "aarch64")]
pub fn write_fmt(args: fmt::Arguments) -> Result<(), Unavailable> {
    let mut sink = |chunk: &[u8]| call(SYS_WRITE0, chunk.as_ptr() as u64).map(|_| ());
    let mut chunks = Chunks::new(&mut sink);
    // A failed write ends the formatting; `result` says why.
    let _ = fmt::Write::write_fmt(&mut chunks, args);
    chunks.finish()
}

/// Bytes per `SYS_WRITE0` call: text is sent in NUL-terminated pieces of a
/// stack buffer, as there is no heap to format into.
const CHUNK: usize = 128;

/// Cuts formatted text into NUL-terminated chunks for `SYS_WRITE0` and hands
/// each to `sink`. A NUL inside the text would end its chunk early, so it is
/// sent as `?`. The first failure stops the output.
struct Chunks<'s, F: FnMut(&[u8]) -> Result<(), Unavailable>> {
    sink: &'s mut F,
    buf: [u8; CHUNK],
    len: usize,
    result: Result<(), Unavailable>,
}

impl<'s, F: FnMut(&[u8]) -> Result<(), Unavailable>> Chunks<'s, F> {
    fn new(sink: &'s mut F) -> Self {
        Self { sink, buf: [0; CHUNK], len: 0, result: Ok(()) }
    }

    /// Sends what is buffered (the byte after it is the NUL).
    fn flush(&mut self) {
        if self.len == 0 || self.result.is_err() {
            return;
        }
        if let Some(terminator) = self.buf.get_mut(self.len) {
            *terminator = 0;
        }
        self.result = (self.sink)(self.buf.get(..=self.len).unwrap_or_default());
        self.len = 0;
    }

    fn finish(mut self) -> Result<(), Unavailable> {
        self.flush();
        self.result
    }
}

impl<F: FnMut(&[u8]) -> Result<(), Unavailable>> fmt::Write for Chunks<'_, F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            // Leave room for the terminating NUL.
            if self.len.saturating_add(1) >= CHUNK {
                self.flush();
            }
            if self.result.is_err() {
                return Err(fmt::Error);
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = if byte == 0 { b'?' } else { byte };
                self.len = self.len.saturating_add(1);
            }
        }
        Ok(())
    }
}

/// Called by an exception vector for an undefined-instruction trap at the
/// current EL: if it was the semihosting `HLT`, makes the call report
/// [`Unavailable`] and returns true.
#[cfg(target_arch = "aarch64")]
pub fn recover(frame: &mut crate::arch::trap::TrapFrame) -> bool {
    let hlt = core::ptr::addr_of!(platform_semihosting_hlt) as u64;
    if frame.elr != hlt {
        return false;
    }
    frame.x[0] = UNAVAILABLE;
    frame.elr = frame.elr.wrapping_add(4);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;
    use std::string::String;
    use std::vec::Vec;

    fn chunks_of(text: &str) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        let mut sink = |chunk: &[u8]| {
            sent.push(chunk.to_vec());
            Ok(())
        };
        let mut chunks = Chunks::new(&mut sink);
        write!(chunks, "{text}").unwrap();
        chunks.finish().unwrap();
        sent
    }

    #[test]
    fn text_goes_out_in_nul_terminated_chunks() {
        let text: String = (0..300).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let sent = chunks_of(&text);
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|c| c.len() <= CHUNK && c.last() == Some(&0)));
        let joined: Vec<u8> = sent.iter().flat_map(|c| &c[..c.len() - 1]).copied().collect();
        assert_eq!(joined, text.as_bytes());
        assert_eq!(chunks_of(""), Vec::<Vec<u8>>::new(), "nothing to send, no call");
        assert_eq!(chunks_of("a\0b"), vec![b"a?b\0".to_vec()], "an inner NUL cannot cut the line");
    }

    #[test]
    fn no_host_stops_the_output() {
        let mut calls = 0;
        let mut sink = |_: &[u8]| {
            calls += 1;
            Err(Unavailable)
        };
        let mut chunks = Chunks::new(&mut sink);
        let text: String = "x".repeat(3 * CHUNK);
        assert!(write!(chunks, "{text}").is_err());
        assert_eq!(chunks.finish(), Err(Unavailable));
        assert_eq!(calls, 1);
    }
}
