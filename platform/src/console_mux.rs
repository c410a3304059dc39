//! One physical console shared by several VMs: pure logic, host-tested.
//!
//! # Output
//!
//! Each VM's console output (the bytes its emulated UART transmits) is
//! collected per VM and written out a line at a time, each line starting
//! with the VM's name and `"| "`:
//!
//! ```text
//! el2: VM linux-a: entering Linux at IPA 0x40400000 (EL1) on 2 vCPU(s): ...
//! linux-b| linux-guest: userspace up
//! linux-a| linux-guest: userspace up
//! ```
//!
//! The hypervisor's own lines read `el2: ...` (`el2: WARN: ...` for
//! warnings; [`crate::console`]): a name followed by a colon. VM lines use
//! `|`, which a VM name may not contain, so the two never look alike and a
//! test or a reader can tell who wrote every line. Text the hypervisor
//! prints for a VM's guest outside its console (hypercall text) names the
//! channel and the VM, joined by [`CHANNEL_SEPARATOR`]: `guest@linux-a: ...`.
//!
//! - `"\r\n"` ends a line like `"\n"` (the `'\r'` of Linux's line endings
//!   is dropped), and so do `"\r\r\n"` and other runs of `'\r'` before
//!   `'\n'`.
//! - A `'\r'` followed by anything else returns to the start of the line,
//!   as on a terminal: the mux writes `'\r'` and the prefix again, so
//!   progress indicators and shell line editing redraw in place behind the
//!   prefix rather than over it. If another VM's line came in between, the
//!   redrawn text starts a new line instead.
//! - A line longer than [`LINE_MAX`] bytes is written in pieces without a
//!   break: the console shows one long line. (If another VM writes a line
//!   between two pieces, the rest continues on a new line after `name+ `.)
//! - Everything else, escape sequences and other control bytes included,
//!   passes through unchanged.
//!
//! A line without a newline yet (a shell prompt) must still appear: the
//! hypervisor calls [`ConsoleMux::tick`] periodically (`el2`: every 100 ms,
//! from the boot CPU's tick), which writes out the partial line of every
//! VM that has been quiet since the previous call; or
//! [`ConsoleMux::flush_idle`] for one VM with its own timer. A partial line
//! is left "open" on the console: that VM's further text continues it, and
//! a line from anyone else first ends it with `'\n'`; the VM's text then
//! continues on a line of its own that starts `name+ ` ([`CONTINUATION`])
//! instead of `name| `, so that its line can be put back together. Here
//! `linux-a` wrote `progress...`, went quiet, and wrote `done\n` after the
//! hypervisor's line:
//!
//! ```text
//! linux-a| progress...
//! el2: VM linux-b: SYSTEM_OFF (status 0)
//! linux-a+ done
//! ```
//!
//! The hypervisor itself should call [`ConsoleMux::break_line`] before
//! printing a line of its own, so that it does not start in the middle of
//! a VM's prompt, and [`ConsoleMux::end_line`] when a VM stops or restarts.
//!
//! # Input and focus
//!
//! Input goes to the VM in focus ([`ConsoleMux::input`]). The escape key is
//! Ctrl-\\ (0x1c, [`ESCAPE`]): neither QEMU's Ctrl-a nor telnet's Ctrl-]
//! uses it, so the mux works through both. After Ctrl-\\:
//!
//! - `1` to `8`: focus VM 1 to 8 (1-based, in VM order), if it is
//!   available;
//! - `n`: focus the next available VM, in order, wrapping around;
//! - Ctrl-\\ again: send one Ctrl-\\ to the VM in focus (a shell's SIGQUIT);
//! - anything else: both bytes are dropped.
//!
//! Only VMs marked available ([`ConsoleMux::set_available`]: it has a
//! console and runs) take the focus. When the VM in focus stops being
//! available, the focus moves to the next available VM; when none had it,
//! the first VM to become available takes it.
//!
//! Everything is in fixed arrays: [`MAX_VMS`] VMs with names of up to
//! [`NAME_MAX`] bytes and line buffers of [`LINE_MAX`] bytes.

use core::fmt;

/// VMs the mux serves, numbered 0 to `MAX_VMS - 1`.
pub const MAX_VMS: usize = 8;
/// The longest VM name, in bytes.
pub const NAME_MAX: usize = 15;
/// The line buffer per VM; a longer line is written in pieces.
pub const LINE_MAX: usize = 1024;
/// The escape key: Ctrl-\\.
pub const ESCAPE: u8 = 0x1c;
/// What follows a VM's name at the start of each of its lines.
pub const SEPARATOR: &[u8] = b"| ";
/// Starts the rest of a VM's line that something else interrupted after it
/// was written out in part (`name+ rest`): a reader, or a test, joins it to
/// the VM's previous line.
pub const CONTINUATION: &[u8] = b"+ ";
/// Joins a channel and a VM's name in lines the hypervisor prints for a
/// VM's guest outside its console (hypercall text: `guest@a: ...`).
pub const CHANNEL_SEPARATOR: char = '@';
/// A one-line summary of the keys, for the hypervisor to print.
pub const HELP: &str = "console: Ctrl-\\ then 1-8 = input to VM n, n = next VM, Ctrl-\\ = send Ctrl-\\";

/// What a byte of input means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Deliver the byte to this VM's console.
    ToVm(usize, u8),
    /// The focus is (still, or now) on this VM: the caller may say so.
    FocusChanged(usize),
    /// Nothing to do: the byte began or ended an escape sequence, or no VM
    /// has the focus.
    Nothing,
}

/// Why [`ConsoleMux::set_name`] refused a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The VM number is [`MAX_VMS`] or more.
    NoSuchVm,
    Empty,
    /// Longer than [`NAME_MAX`] bytes.
    TooLong,
    /// A byte that is not printable ASCII, a space or `|`.
    BadByte(u8),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchVm => write!(f, "the console multiplexer serves VMs 0 to {}", MAX_VMS.saturating_sub(1)),
            Self::Empty => f.write_str("empty console name"),
            Self::TooLong => write!(f, "console name longer than {NAME_MAX} bytes"),
            Self::BadByte(byte) => write!(f, "console name has byte {byte:#04x} (printable ASCII, no space or '|')"),
        }
    }
}

/// The names of VMs nobody named: `vm<n>`, n being the VM's focus key.
const DEFAULT_NAMES: [&str; MAX_VMS] = ["vm1", "vm2", "vm3", "vm4", "vm5", "vm6", "vm7", "vm8"];

/// One VM's side of the console.
#[derive(Clone, Debug)]
struct Port {
    /// The name, `name_len` bytes; none (0) for the default name.
    name: [u8; NAME_MAX],
    name_len: usize,
    available: bool,
    /// Text of the current line not written out yet.
    line: [u8; LINE_MAX],
    len: usize,
    /// A `'\r'` came last: the next byte decides what it meant.
    pending_cr: bool,
    /// Output arrived since the last [`ConsoleMux::tick`].
    active: bool,
    /// Its line was written out in part, then ended by someone else's
    /// text: the rest goes after [`CONTINUATION`].
    continued: bool,
}

impl Port {
    const fn new() -> Self {
        Self {
            name: [0; NAME_MAX],
            name_len: 0,
            available: false,
            line: [0; LINE_MAX],
            len: 0,
            pending_cr: false,
            active: false,
            continued: false,
        }
    }

    /// The name of this port, VM `vm`.
    fn name(&self, vm: usize) -> &[u8] {
        match self.name.get(..self.name_len) {
            Some(name) if !name.is_empty() => name,
            _ => DEFAULT_NAMES.get(vm).map_or(b"vm", |name| name.as_bytes()),
        }
    }

    fn text(&self) -> &[u8] {
        self.line.get(..self.len).unwrap_or_default()
    }
}

/// The console multiplexer: per-VM line buffers, the state of the shared
/// console, and the input focus.
#[derive(Clone, Debug)]
pub struct ConsoleMux {
    ports: [Port; MAX_VMS],
    focus: Option<usize>,
    /// The escape key came last.
    escape: bool,
    /// The console's cursor is after a partial line of this VM (its
    /// prefix written, no newline yet).
    open: Option<usize>,
}

impl Default for ConsoleMux {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleMux {
    pub const fn new() -> Self {
        Self { ports: [const { Port::new() }; MAX_VMS], focus: None, escape: false, open: None }
    }

    /// Names VM `vm`: 1 to [`NAME_MAX`] bytes of printable ASCII, no space
    /// or `|`. Until named, VM `i` is `vm<i + 1>` (`vm1` for VM 0).
    pub fn set_name(&mut self, vm: usize, name: &str) -> Result<(), NameError> {
        let port = self.ports.get_mut(vm).ok_or(NameError::NoSuchVm)?;
        let bytes = name.as_bytes();
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some(&bad) = bytes.iter().find(|&&b| !b.is_ascii_graphic() || b == b'|') {
            return Err(NameError::BadByte(bad));
        }
        let slot = port.name.get_mut(..bytes.len()).ok_or(NameError::TooLong)?;
        slot.copy_from_slice(bytes);
        port.name_len = bytes.len();
        Ok(())
    }

    /// VM `vm`'s name, if there is such a VM.
    pub fn name(&self, vm: usize) -> Option<&str> {
        self.ports.get(vm).and_then(|port| core::str::from_utf8(port.name(vm)).ok())
    }

    /// Marks VM `vm` as available for input (it has a console and runs) or
    /// not. Moves the focus if needed: to this VM if none had it, away from
    /// it (to the next available VM, or none) if it had it and is no longer
    /// available. Returns whether the focus changed ([`focus`](Self::focus)
    /// tells where).
    pub fn set_available(&mut self, vm: usize, available: bool) -> bool {
        let Some(port) = self.ports.get_mut(vm) else {
            return false;
        };
        port.available = available;
        match self.focus {
            None if available => {
                self.focus = Some(vm);
                true
            }
            Some(focus) if focus == vm && !available => {
                self.focus = self.next_available(vm);
                true
            }
            _ => false,
        }
    }

    pub fn is_available(&self, vm: usize) -> bool {
        self.ports.get(vm).is_some_and(|port| port.available)
    }

    /// The VM input goes to.
    pub fn focus(&self) -> Option<usize> {
        self.focus
    }

    /// Moves the focus to `vm` if it is available; returns whether it did.
    pub fn set_focus(&mut self, vm: usize) -> bool {
        if self.is_available(vm) {
            self.focus = Some(vm);
        }
        self.focus == Some(vm)
    }

    /// The first available VM after `vm` in order, wrapping around; `vm`
    /// itself last.
    fn next_available(&self, vm: usize) -> Option<usize> {
        self.ports
            .iter()
            .enumerate()
            .cycle()
            .skip(vm.saturating_add(1))
            .take(MAX_VMS)
            .find(|(_, port)| port.available)
            .map(|(index, _)| index)
    }

    /// Interprets one byte typed on the console.
    pub fn input(&mut self, byte: u8) -> Input {
        if core::mem::take(&mut self.escape) {
            return match byte {
                ESCAPE => self.focus.map_or(Input::Nothing, |vm| Input::ToVm(vm, ESCAPE)),
                b'1'..=b'9' => {
                    let vm = usize::from(byte.wrapping_sub(b'1'));
                    if self.set_focus(vm) {
                        Input::FocusChanged(vm)
                    } else {
                        Input::Nothing
                    }
                }
                b'n' => {
                    // From the last VM, the search starts at VM 0.
                    let next = self.next_available(self.focus.unwrap_or(MAX_VMS.saturating_sub(1)));
                    next.map_or(Input::Nothing, |vm| {
                        self.focus = Some(vm);
                        Input::FocusChanged(vm)
                    })
                }
                _ => Input::Nothing,
            };
        }
        if byte == ESCAPE {
            self.escape = true;
            return Input::Nothing;
        }
        self.focus.map_or(Input::Nothing, |vm| Input::ToVm(vm, byte))
    }

    /// Takes one byte of VM `vm`'s console output; writes whatever lines
    /// it completes through `emit`. Bytes for a VM number of [`MAX_VMS`] or
    /// more are dropped.
    pub fn output(&mut self, vm: usize, byte: u8, emit: &mut impl FnMut(&[u8])) {
        let Some(port) = self.ports.get_mut(vm) else {
            return;
        };
        port.active = true;
        match byte {
            b'\r' => port.pending_cr = true,
            b'\n' => {
                port.pending_cr = false;
                self.newline(vm, emit);
            }
            _ => {
                if core::mem::take(&mut port.pending_cr) {
                    self.carriage_return(vm, emit);
                }
                let Some(port) = self.ports.get_mut(vm) else {
                    return;
                };
                if let Some(slot) = port.line.get_mut(port.len) {
                    *slot = byte;
                    port.len = port.len.saturating_add(1);
                }
                if port.len >= LINE_MAX {
                    self.write_partial(vm, emit);
                }
            }
        }
    }

    /// Bytes of VM `vm`'s current line waiting to be written.
    pub fn pending(&self, vm: usize) -> usize {
        self.ports.get(vm).map_or(0, |port| port.len)
    }

    /// Writes out VM `vm`'s partial line (a prompt), without a newline; the
    /// line stays open for the VM's further output. For the hypervisor's
    /// "quiet for a while" timer.
    pub fn flush_idle(&mut self, vm: usize, emit: &mut impl FnMut(&[u8])) {
        if self.pending(vm) != 0 {
            self.write_partial(vm, emit);
        }
    }

    /// [`flush_idle`](Self::flush_idle) for every VM with a partial line.
    pub fn flush_all(&mut self, emit: &mut impl FnMut(&[u8])) {
        for vm in 0..MAX_VMS {
            self.flush_idle(vm, emit);
        }
    }

    /// The periodic idle check: writes out the partial line of every VM
    /// that had no output since the previous call. Called every T, a
    /// prompt appears between T and 2T after its last byte.
    pub fn tick(&mut self, emit: &mut impl FnMut(&[u8])) {
        for vm in 0..MAX_VMS {
            let quiet = self.ports.get_mut(vm).is_some_and(|port| !core::mem::take(&mut port.active));
            if quiet {
                self.flush_idle(vm, emit);
            }
        }
    }

    /// Ends VM `vm`'s current line, if it has one (buffered text, or a
    /// partial line open on the console), with a newline. For a VM that
    /// stops or resets.
    pub fn end_line(&mut self, vm: usize, emit: &mut impl FnMut(&[u8])) {
        if let Some(port) = self.ports.get_mut(vm) {
            port.pending_cr = false;
            port.continued = false;
        }
        if self.pending(vm) != 0 || self.open == Some(vm) {
            self.newline(vm, emit);
        }
    }

    /// A `'\n'` from VM `vm`: writes its line, even an empty one.
    fn newline(&mut self, vm: usize, emit: &mut impl FnMut(&[u8])) {
        let Some(port) = self.ports.get(vm) else {
            return;
        };
        if port.len == 0 && self.open != Some(vm) {
            if self.ports.get_mut(vm).is_some_and(|port| core::mem::take(&mut port.continued)) {
                // The rest of an interrupted line was empty: it has ended.
                return;
            }
            // An empty line: the prefix without its trailing space.
            self.close_open(emit);
            emit(self.ports.get(vm).map_or(&b"vm"[..], |port| port.name(vm)));
            emit(b"|\n");
            return;
        }
        self.write_partial(vm, emit);
        emit(b"\n");
        self.open = None;
        if let Some(port) = self.ports.get_mut(vm) {
            port.continued = false;
        }
    }

    /// Ends the partial line open on the console, if any: its VM's text
    /// continues on a line of its own.
    fn close_open(&mut self, emit: &mut impl FnMut(&[u8])) {
        if let Some(vm) = self.open.take() {
            emit(b"\n");
            if let Some(port) = self.ports.get_mut(vm) {
                port.continued = true;
            }
        }
    }

    /// Ends the partial line open on the console, if any, so that the next
    /// text starts on a line of its own. The hypervisor calls this before
    /// printing a line itself.
    pub fn break_line(&mut self, emit: &mut impl FnMut(&[u8])) {
        self.close_open(emit);
    }

    /// Writes VM `vm`'s buffered text, after its prefix unless its line is
    /// the one open on the console; its line is open afterwards.
    fn write_partial(&mut self, vm: usize, emit: &mut impl FnMut(&[u8])) {
        if vm >= MAX_VMS {
            return;
        }
        if self.open != Some(vm) {
            if let Some(other) = self.open.take() {
                emit(b"\n");
                if let Some(port) = self.ports.get_mut(other) {
                    port.continued = true;
                }
            }
            let Some(port) = self.ports.get(vm) else {
                return;
            };
            emit(port.name(vm));
            emit(if port.continued { CONTINUATION } else { SEPARATOR });
            self.open = Some(vm);
        }
        let Some(port) = self.ports.get_mut(vm) else {
            return;
        };
        emit(port.text());
        port.len = 0;
    }

    /// A `'\r'` not followed by `'\n'`: back to the start of the line, after
    /// the prefix. Nothing to do if the line has not started.
    fn carriage_return(&mut self, vm: usize, emit: &mut impl FnMut(&[u8])) {
        if self.pending(vm) == 0 && self.open != Some(vm) {
            // A redraw starts the line over: it continues nothing.
            if let Some(port) = self.ports.get_mut(vm) {
                port.continued = false;
            }
            return;
        }
        self.write_partial(vm, emit);
        emit(b"\r");
        if let Some(port) = self.ports.get(vm) {
            emit(port.name(vm));
        }
        emit(SEPARATOR);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;

    /// A mux with VMs 0 and 1 named and available, and what it wrote.
    struct Console {
        mux: ConsoleMux,
        out: Vec<u8>,
    }

    impl Console {
        fn new() -> Self {
            let mut mux = ConsoleMux::new();
            mux.set_name(0, "linux-a").unwrap();
            mux.set_name(1, "linux-b").unwrap();
            mux.set_available(0, true);
            mux.set_available(1, true);
            Self { mux, out: Vec::new() }
        }

        fn put(&mut self, vm: usize, text: &[u8]) {
            let out = &mut self.out;
            for &byte in text {
                self.mux.output(vm, byte, &mut |bytes: &[u8]| out.extend_from_slice(bytes));
            }
        }

        fn with<R>(&mut self, f: impl FnOnce(&mut ConsoleMux, &mut dyn FnMut(&[u8])) -> R) -> R {
            let out = &mut self.out;
            f(&mut self.mux, &mut |bytes: &[u8]| out.extend_from_slice(bytes))
        }

        fn take(&mut self) -> String {
            String::from_utf8(core::mem::take(&mut self.out)).unwrap()
        }

        fn keys(&mut self, keys: &[u8]) -> Vec<Input> {
            keys.iter().map(|&key| self.mux.input(key)).collect()
        }
    }

    #[test]
    fn interleaved_lines_get_their_prefixes() {
        let mut c = Console::new();
        c.put(0, b"hello ");
        c.put(1, b"wor");
        assert_eq!(c.take(), "");
        c.put(0, b"from a\r\nsecond");
        c.put(1, b"ld\n");
        c.put(0, b" line\r\n");
        assert_eq!(c.take(), "linux-a| hello from a\nlinux-b| world\nlinux-a| second line\n");
        // Not the hypervisor's "el2: " form.
        assert!(!c.mux.name(0).unwrap().contains(':'));
    }

    #[test]
    fn carriage_returns() {
        let mut c = Console::new();
        // Runs of '\r' before '\n' vanish; an empty line is the bare prefix.
        c.put(0, b"a\r\r\n\r\n\n");
        assert_eq!(c.take(), "linux-a| a\nlinux-a|\nlinux-a|\n");
        // A lone '\r' redraws behind the prefix.
        c.put(0, b"10%\r20%\rdone\r\n");
        assert_eq!(c.take(), "linux-a| 10%\rlinux-a| 20%\rlinux-a| done\n");
        // '\r' at the start of a line has nothing to return over.
        c.put(0, b"\rx\n");
        assert_eq!(c.take(), "linux-a| x\n");
        // If another VM's line came between, the redraw is a new line.
        c.put(0, b"50%");
        c.with(|mux, emit| mux.flush_idle(0, &mut |b| emit(b)));
        c.put(1, b"b\n");
        c.put(0, b"\r60%\n");
        assert_eq!(c.take(), "linux-a| 50%\nlinux-b| b\nlinux-a| 60%\n");
        // Other control bytes pass through.
        c.put(1, b"\x1b[1mbold\x1b[0m\t\x08!\n");
        assert_eq!(c.take(), "linux-b| \x1b[1mbold\x1b[0m\t\x08!\n");
    }

    #[test]
    fn long_lines_are_written_in_pieces() {
        let mut c = Console::new();
        let long = [b'x'; 2 * LINE_MAX + 88];
        c.put(0, &long);
        // Two full buffers are out, the rest waits.
        assert_eq!(c.take(), std::format!("linux-a| {}", "x".repeat(2 * LINE_MAX)));
        assert_eq!(c.mux.pending(0), 88);
        c.put(0, b"\n");
        assert_eq!(c.take(), std::format!("{}\n", "x".repeat(88)));
        c.put(0, &long[..LINE_MAX + 1]);
        c.put(1, b"b\n");
        c.put(0, b"\n");
        // Another VM's line in between: the rest continues after `linux-a+ `.
        assert_eq!(c.take(), std::format!("linux-a| {}\nlinux-b| b\nlinux-a+ x\n", "x".repeat(LINE_MAX)));
    }

    #[test]
    fn an_interrupted_line_continues_after_its_marker() {
        let mut c = Console::new();
        c.put(0, b"guest-stub: ");
        c.with(|mux, emit| {
            mux.flush_all(&mut |b| emit(b));
            mux.break_line(&mut |b| emit(b));
            emit(b"el2: a line of the hypervisor's\n");
        });
        c.put(1, b"other\n");
        c.put(0, b"PASS check\n");
        c.put(0, b"next\n");
        assert_eq!(
            c.take(),
            "linux-a| guest-stub: \nel2: a line of the hypervisor's\nlinux-b| other\nlinux-a+ PASS check\nlinux-a| next\n"
        );
    }

    #[test]
    fn partial_lines_and_idle_flushes() {
        let mut c = Console::new();
        c.put(1, b"# ");
        assert_eq!(c.mux.pending(1), 2);
        // The first tick sees recent output; the second finds VM 1 quiet.
        c.with(|mux, emit| mux.tick(&mut |b| emit(b)));
        assert_eq!(c.take(), "");
        c.with(|mux, emit| mux.tick(&mut |b| emit(b)));
        assert_eq!(c.take(), "linux-b| # ");
        // The echo of typed keys continues the open line.
        c.put(1, b"l");
        c.with(|mux, emit| mux.flush_idle(1, &mut |b| emit(b)));
        c.put(1, b"s\r\n");
        assert_eq!(c.take(), "ls\n");
        // Another VM's line ends an open one first.
        c.put(1, b"# ");
        c.with(|mux, emit| mux.flush_all(&mut |b| emit(b)));
        c.put(0, b"[  5.0] usb 1-1: new device\n");
        c.put(1, b"\n");
        // The rest of VM 1's line was empty: nothing more to show.
        assert_eq!(c.take(), "linux-b| # \nlinux-a| [  5.0] usb 1-1: new device\n");
        // The hypervisor's own line: break_line first.
        c.put(0, b"login: ");
        c.with(|mux, emit| {
            mux.flush_all(&mut |b| emit(b));
            mux.break_line(&mut |b| emit(b));
            emit(b"el2: VM linux-b stopped\n");
            mux.break_line(&mut |b| emit(b));
        });
        assert_eq!(c.take(), "linux-a| login: \nel2: VM linux-b stopped\n");
        // A stopping VM's line is ended; ending it again does nothing.
        c.put(1, b"Power down");
        c.with(|mux, emit| {
            mux.end_line(1, &mut |b| emit(b));
            mux.end_line(1, &mut |b| emit(b));
            mux.end_line(0, &mut |b| emit(b));
        });
        assert_eq!(c.take(), "linux-b| Power down\n");
    }

    #[test]
    fn focus_keys() {
        let mut c = Console::new();
        assert_eq!(c.mux.focus(), Some(0));
        assert_eq!(c.keys(b"ls\r"), [Input::ToVm(0, b'l'), Input::ToVm(0, b's'), Input::ToVm(0, b'\r')]);
        // Ctrl-\ 2: VM 1 (1-based keys).
        assert_eq!(c.keys(&[ESCAPE, b'2', b'x']), [Input::Nothing, Input::FocusChanged(1), Input::ToVm(1, b'x')]);
        // Ctrl-\ Ctrl-\: one literal Ctrl-\.
        assert_eq!(c.keys(&[ESCAPE, ESCAPE, b'y']), [Input::Nothing, Input::ToVm(1, ESCAPE), Input::ToVm(1, b'y')]);
        // Anything else after Ctrl-\ drops both.
        assert_eq!(c.keys(&[ESCAPE, b'q', b'z']), [Input::Nothing, Input::Nothing, Input::ToVm(1, b'z')]);
        assert_eq!(c.keys(&[ESCAPE, b'0', ESCAPE, b'\r']), [Input::Nothing; 4]);
        // Digits of VMs that are not there or not available.
        assert_eq!(c.keys(&[ESCAPE, b'3', ESCAPE, b'9']), [Input::Nothing; 4]);
        assert_eq!(c.mux.focus(), Some(1));
        // Focusing the VM in focus says so again.
        assert_eq!(c.keys(&[ESCAPE, b'2']), [Input::Nothing, Input::FocusChanged(1)]);
        // Ctrl-\ n: next, wrapping.
        assert_eq!(
            c.keys(&[ESCAPE, b'n', ESCAPE, b'n']),
            [Input::Nothing, Input::FocusChanged(0), Input::Nothing, Input::FocusChanged(1)]
        );
    }

    #[test]
    fn focus_skips_unavailable_vms() {
        let mut mux = ConsoleMux::new();
        assert_eq!(mux.focus(), None);
        assert_eq!(mux.input(b'a'), Input::Nothing);
        assert_eq!([mux.input(ESCAPE), mux.input(b'n')], [Input::Nothing; 2]);
        assert_eq!([mux.input(ESCAPE), mux.input(ESCAPE)], [Input::Nothing; 2]);
        // The first VM to come up takes the focus; later ones do not.
        assert!(mux.set_available(5, true));
        assert!(!mux.set_available(2, true));
        assert!(!mux.set_available(7, true));
        assert_eq!(mux.focus(), Some(5));
        // Next from 5 skips 6 and goes to 7, then wraps to 2.
        assert_eq!([mux.input(ESCAPE), mux.input(b'n')], [Input::Nothing, Input::FocusChanged(7)]);
        assert_eq!([mux.input(ESCAPE), mux.input(b'n')], [Input::Nothing, Input::FocusChanged(2)]);
        assert_eq!([mux.input(ESCAPE), mux.input(b'7')], [Input::Nothing, Input::Nothing]);
        assert!(!mux.set_focus(6) && mux.set_focus(7));
        // The focused VM stops: the focus moves on (wrapping), and away
        // from an unavailable VM only.
        assert!(mux.set_available(7, false));
        assert_eq!(mux.focus(), Some(2));
        assert!(!mux.set_available(5, false));
        assert!(mux.set_available(2, false));
        assert_eq!(mux.focus(), None);
        assert_eq!(mux.input(b'a'), Input::Nothing);
        assert!(!mux.set_available(MAX_VMS, true));
        assert!(mux.set_available(3, true));
        assert_eq!(mux.input(b'a'), Input::ToVm(3, b'a'));
        // Only one available: next keeps it.
        assert_eq!([mux.input(ESCAPE), mux.input(b'n')], [Input::Nothing, Input::FocusChanged(3)]);
    }

    #[test]
    fn names() {
        let mut mux = ConsoleMux::new();
        assert_eq!(mux.name(0), Some("vm1"));
        assert_eq!(mux.name(7), Some("vm8"));
        assert_eq!(mux.name(8), None);
        assert_eq!(mux.set_name(0, "fifteen-bytes-x"), Ok(()));
        assert_eq!(mux.name(0), Some("fifteen-bytes-x"));
        assert_eq!(mux.set_name(0, "sixteen-bytes-xy"), Err(NameError::TooLong));
        assert_eq!(mux.set_name(0, ""), Err(NameError::Empty));
        assert_eq!(mux.set_name(0, "a b"), Err(NameError::BadByte(b' ')));
        assert_eq!(mux.set_name(0, "a|b"), Err(NameError::BadByte(b'|')));
        assert_eq!(mux.set_name(0, "caf\u{e9}"), Err(NameError::BadByte(0xc3)));
        assert_eq!(mux.set_name(MAX_VMS, "x"), Err(NameError::NoSuchVm));
        assert_eq!(mux.name(0), Some("fifteen-bytes-x"));
        mux.set_name(0, "a").unwrap();
        let mut out = Vec::new();
        for &byte in b"1\n" {
            mux.output(2, byte, &mut |b: &[u8]| out.extend_from_slice(b));
            mux.output(0, byte, &mut |b: &[u8]| out.extend_from_slice(b));
            mux.output(MAX_VMS, byte, &mut |b: &[u8]| out.extend_from_slice(b));
        }
        assert_eq!(out, b"vm3| 1\na| 1\n");
        assert_eq!(NameError::TooLong.to_string(), "console name longer than 15 bytes");
    }

    /// As the property tests under tests/ run: 256 cases unless
    /// `PROPTEST_CASES` says otherwise, no regression files.
    fn config() -> ProptestConfig {
        let mut config = ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = 256;
        }
        config.failure_persistence = None;
        config
    }

    proptest! {
        #![proptest_config(config())]

        /// Whatever the VMs write, and whenever partial lines are flushed,
        /// every console line starts with a VM's prefix, and the text of a
        /// VM without '\r' comes out whole and in order.
        #[test]
        fn every_line_has_a_prefix(steps in prop::collection::vec((0..MAX_VMS + 1, any::<u8>(), 0..8_u8), 0..600)) {
            let mut mux = ConsoleMux::new();
            mux.set_name(1, "b").unwrap();
            let mut out = Vec::new();
            let mut sent = [Vec::new(), Vec::new()];
            for (vm, byte, action) in steps {
                // VM 0 writes '\r'-free text, the others anything.
                let byte = if vm == 0 && byte == b'\r' { b'.' } else { byte };
                mux.output(vm, byte, &mut |b: &[u8]| out.extend_from_slice(b));
                if vm == 0 {
                    sent[0].push(byte);
                }
                match action {
                    0 => mux.flush_idle(vm, &mut |b: &[u8]| out.extend_from_slice(b)),
                    1 => mux.tick(&mut |b: &[u8]| out.extend_from_slice(b)),
                    _ => {}
                }
            }
            mux.flush_all(&mut |b: &[u8]| out.extend_from_slice(b));
            let mut from_vm0 = Vec::new();
            for line in out.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
                // "name| text", "name|" (an empty line) or "name+ rest".
                let prefix = line.iter().position(|&b| b == b'|' || b == b'+');
                prop_assert!(prefix.is_some(), "no prefix: {:?}", line);
                let prefix = prefix.unwrap_or(0);
                let name = &line[..prefix];
                prop_assert!(name == b"b" || (name.starts_with(b"vm") && name.len() == 3), "{:?}", line);
                if name == b"vm1" {
                    from_vm0.extend_from_slice(line.get(prefix + 2..).unwrap_or_default());
                    from_vm0.push(b'\n');
                }
            }
            // Lines broken by other VMs' output rejoin the stream.
            let expected: Vec<u8> = sent[0].iter().copied().filter(|&b| b != b'\n').collect();
            let got: Vec<u8> = from_vm0.into_iter().filter(|&b| b != b'\n').collect();
            prop_assert_eq!(got, expected);
        }
    }
}
