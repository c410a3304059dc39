//! The pure half of `hvctl` (the binary is `main.rs`): its command line,
//! the `/proc/self/maps` parser and the line formats its output uses. The
//! host-side QEMU tests parse `hvctl`'s output with the same types, so the
//! format is written down once, here. [`portal`] is the pure half of
//! `hvctl portal`, [`vm`] that of `hvctl vm`, and [`pci`] what the two
//! share (finding a function in sysfs, its register block). [`device`]
//! (Linux only) is the real register block and interrupt behind those.

use core::fmt;
use core::ops::Range;
use platform::sched::{bucket_floor_us, percentile_bucket, Figures, BUCKETS};

#[cfg(target_os = "linux")]
pub mod device;
pub mod pci;
pub mod portal;
pub mod vm;

/// What the user asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// The hypervisor's ABI version, mode and CPU count.
    Info,
    /// Scan the calling process's address space (the `TTBR0` range). With
    /// `with_maps`, also print the process's own `/proc/self/maps` and the
    /// addresses of pages it touched, so that a reader (or a test) can
    /// check the scan against the kernel's view.
    Scan {
        with_maps: bool,
        /// A layout to build in hvctl's own address space first.
        layout: Option<Layout>,
    },
    /// Print the text on the hypervisor's console.
    Console {
        text: String,
    },
    /// The scheduler figures of every vCPU of this VM, one [`SchedLine`]
    /// each, then a [`SchedSummary`].
    Sched,
    /// `hvctl portal ...`: the portal functions (PCI) of this VM.
    Portal(portal::PortalCommand),
    /// `hvctl vm ...`: list, stop, restart or start the VMs, through the
    /// VM control function (PCI) of a manager VM.
    Vm(vm::VmAction),
    /// `hvctl integrity status|lock`: this VM's kernel integrity.
    Integrity {
        lock: bool,
    },
    /// `hvctl trace [--clear]`: this VM's recorded writes to its kernel's
    /// translation tables, a [`TraceLine`] each, then the counts; with
    /// `--clear`, emptied after reading.
    Trace {
        clear: bool,
    },
    Help,
}

/// How `hvctl trace` prints a record: `trace: IPA level L index I old
/// OLD new NEW va FIRST-LAST`, hex with `0x`.
pub struct TraceLine(pub platform::s1trace::Record);

impl core::fmt::Display for TraceLine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let r = &self.0;
        write!(
            f,
            "trace: table {:#x} level {} index {} old {:#018x} new {:#018x} va {:#x}-{:#x}",
            r.table, r.level, r.index, r.old, r.new, r.first_va, r.last_va
        )
    }
}

/// A large address space to scan, built by `hvctl scan --layout` in its
/// own process first: what a long `SCAN` meets in a real program, for
/// measuring that the hypervisor serves it in bounded pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// [`SPARSE_PAGES`] pages, each touched, [`SPARSE_STRIDE`] apart: as
    /// many separate regions.
    Sparse,
    /// [`WIDE_MAPPINGS`] mappings of [`WIDE_SIZE`] each, with a page
    /// touched every [`WIDE_STRIDE`].
    Wide,
}

pub const SPARSE_PAGES: u64 = 1000;
pub const SPARSE_STRIDE: u64 = 1 << 20;
pub const WIDE_MAPPINGS: u64 = 33;
pub const WIDE_SIZE: u64 = 512 << 20;
pub const WIDE_STRIDE: u64 = 2 << 20;

impl Layout {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "sparse" => Some(Self::Sparse),
            "wide" => Some(Self::Wide),
            _ => None,
        }
    }

    /// The mappings to make: (count, size of each), and the distance
    /// between the pages touched in each.
    pub fn shape(self) -> (u64, u64, u64) {
        match self {
            Self::Sparse => (1, SPARSE_PAGES * SPARSE_STRIDE, SPARSE_STRIDE),
            Self::Wide => (WIDE_MAPPINGS, WIDE_SIZE, WIDE_STRIDE),
        }
    }
}

/// The usage text, printed by `hvctl help` and after a usage error.
pub const USAGE: &str = "\
usage: hvctl info              the hypervisor's ABI version, mode and CPUs
       hvctl scan [--maps] [--layout sparse|wide]
                               this process's mapped ranges, found by the
                               hypervisor's scan of its address space
                               (--maps: also /proc/self/maps and the pages
                               hvctl touched, to compare; --layout: first
                               map 1000 pages 1 MiB apart, or 33 mappings
                               of 512 MiB touched every 2 MiB, and print
                               only the summary)
       hvctl console TEXT...   print TEXT on the hypervisor's console
       hvctl integrity status  this VM's kernel integrity: locked or not,
                               FEAT_XNX or emulated, locked code pages,
                               refusals
       hvctl integrity lock    the lock point: the kernel's code is what it
                               maps executable now; from then on nothing
                               else runs at EL1 and that code stays as it is
                               (cannot be undone)
       hvctl trace [--clear]   the recorded writes to the kernel's
                               translation tables, a line each, then the
                               counts (--clear: empty the log after)
       hvctl sched             the hypervisor scheduler's figures for each
                               vCPU of this VM (run and wait time,
                               switches, wake-ups, wake-up latencies), a
                               line each, then a summary line
       hvctl portal list       every portal function (PCI 1234:7a11): address,
                               index and end, peer state, allowed and peer
                               allowed operations, shared memory size, uio
                               device, counters; \"no portal\" if none
       hvctl portal send [--portal P] OP [ARG]
                               request operation OP of the peer (ARGUMENT
                               then REQUEST; DOORBELL without ARG) and
                               print the outcome; exit 0 delivered,
                               2 refused or no such operation, 3 peer down
       hvctl portal wait [--portal P] [--timeout-ms N] [--poll] [OP]
                               wait (default 10000 ms) for a request of OP
                               (any if omitted) on the uio device's
                               interrupt (--poll: look every 10 ms instead),
                               acknowledge it, print \"op N arg 0xX\"; exit
                               4 on timeout
       hvctl portal read [--portal P] OFFSET LEN
                               LEN bytes of the shared memory (BAR2) from
                               OFFSET to standard output
       hvctl portal write [--portal P] OFFSET TEXT|-
                               TEXT (or standard input) into the shared
                               memory at OFFSET
                               P: a position in the list or a PCI address;
                               default the only portal. Numbers: decimal
                               or 0x hex. Exit 1 on errors (no portal, no
                               uio device, out of bounds, sysfs or device)
       hvctl vm list           every VM, a line each, in description order:
                               \"vm I: NAME, STATE, N vCPUs, M MiB, exit
                               status S, starts K, flags F\" (F: manager,
                               autostart, self, or -)
       hvctl vm stop|restart|start NAME
                               power VM NAME off (as its SYSTEM_OFF would),
                               restart it afresh, or start it if it is off;
                               print the result (\"done\", \"refused: ...\",
                               \"failed: ...\")
                               Only in a manager VM (hv,manager), as root.
                               Exit 0 done, 1 an error (sysfs, device),
                               3 refused: not in a state for it, 4 refused:
                               the manager itself, 5 permission denied (not
                               a manager VM, or not root), 6 refused: no VM
                               of that name, 7 failed: could not be started
       hvctl help

Exit status: 0 done, 1 the hypervisor refused or failed the call (portal,
vm: an error), 2 usage error or no hypervisor underneath (portal send: also
refused), 3 portal send: peer not running, 4 portal wait: timeout; vm has
its own (above).";

/// A command line `hvctl` cannot make sense of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageError {
    NoCommand,
    UnknownCommand(String),
    UnexpectedArgument(String),
    MissingText,
    /// A command needs this argument.
    MissingArgument(&'static str),
    /// `what` should be a number (decimal, or hex with `0x`).
    BadNumber {
        what: &'static str,
        word: String,
    },
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCommand => f.write_str("no command given"),
            Self::UnknownCommand(c) => write!(f, "unknown command {c:?}"),
            Self::UnexpectedArgument(a) => write!(f, "unexpected argument {a:?}"),
            Self::MissingText => f.write_str("console needs the text to print"),
            Self::MissingArgument(what) => write!(f, "missing {what}"),
            Self::BadNumber { what, word } => write!(f, "{word:?} is not a valid {what} (decimal, or hex with 0x)"),
        }
    }
}

impl Command {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, UsageError> {
        let mut args = args.into_iter();
        let command = args.next().ok_or(UsageError::NoCommand)?;
        let rest: Vec<String> = args.collect();
        let no_more = |rest: &[String]| match rest.first() {
            Some(extra) => Err(UsageError::UnexpectedArgument(extra.clone())),
            None => Ok(()),
        };
        match command.as_str() {
            "info" => no_more(&rest).map(|()| Self::Info),
            "sched" => no_more(&rest).map(|()| Self::Sched),
            "scan" => {
                let (mut with_maps, mut layout) = (false, None);
                let mut words = rest.iter();
                while let Some(word) = words.next() {
                    match word.as_str() {
                        "--maps" if !with_maps => with_maps = true,
                        "--layout" if layout.is_none() => {
                            let name = words.next().ok_or_else(|| UsageError::UnexpectedArgument(word.clone()))?;
                            layout =
                                Some(Layout::parse(name).ok_or_else(|| UsageError::UnexpectedArgument(name.clone()))?);
                        }
                        _ => return Err(UsageError::UnexpectedArgument(word.clone())),
                    }
                }
                Ok(Self::Scan { with_maps, layout })
            }
            "console" if rest.is_empty() => Err(UsageError::MissingText),
            "console" => Ok(Self::Console { text: rest.join(" ") }),
            "portal" => portal::PortalCommand::parse(&rest).map(Self::Portal),
            "vm" => vm::VmAction::parse(&rest).map(Self::Vm),
            "integrity" => match rest.as_slice() {
                [word] if word == "status" => Ok(Self::Integrity { lock: false }),
                [word] if word == "lock" => Ok(Self::Integrity { lock: true }),
                [word, ..] => Err(UsageError::UnexpectedArgument(word.clone())),
                [] => Err(UsageError::UnexpectedArgument(String::from("integrity needs status or lock"))),
            },
            "trace" => match rest.as_slice() {
                [] => Ok(Self::Trace { clear: false }),
                [word] if word == "--clear" => Ok(Self::Trace { clear: true }),
                [word, ..] => Err(UsageError::UnexpectedArgument(word.clone())),
            },
            "help" | "--help" | "-h" => no_more(&rest).map(|()| Self::Help),
            _ => Err(UsageError::UnknownCommand(command)),
        }
    }
}

// --- /proc/self/maps ----------------------------------------------------

/// One line of `/proc/<pid>/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsEntry {
    /// `[start, end)`, as the kernel prints it.
    pub range: Range<u64>,
    /// `rwxp`-style permissions.
    pub perms: String,
    /// The path or pseudo-name (`[stack]`, `[heap]`, ...); empty for an
    /// anonymous mapping.
    pub name: String,
}

impl MapsEntry {
    /// Parses one line: `start-end perms offset dev inode [name]`.
    pub fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let range = u64::from_str_radix(start, 16).ok()?..u64::from_str_radix(end, 16).ok()?;
        if range.is_empty() {
            return None;
        }
        let perms = fields.next()?.to_owned();
        // offset, device, inode
        for _ in 0..3 {
            fields.next()?;
        }
        let name = fields.collect::<Vec<_>>().join(" ");
        Some(Self { range, perms, name })
    }

    /// Whether every byte of `[first, last]` lies in this entry.
    pub fn contains(&self, first: u64, last: u64) -> bool {
        self.range.start <= first && first <= last && last < self.range.end
    }
}

/// Every well-formed line of a maps file (others are skipped).
pub fn parse_maps(text: &str) -> Vec<MapsEntry> {
    text.lines().filter_map(MapsEntry::parse).collect()
}

/// The entry that holds all of `[first, last]`, if one does. Adjacent
/// entries are not merged: the kernel splits a mapping where its
/// attributes differ, and a scanned run never crosses such a split unless
/// the page attributes happen to agree, which the caller then sees as
/// `None` (see [`covering`]).
pub fn containing(entries: &[MapsEntry], first: u64, last: u64) -> Option<&MapsEntry> {
    entries.iter().find(|e| e.contains(first, last))
}

/// Whether `[first, last]` is covered by a chain of adjacent entries (a
/// scanned run may span two VMAs the kernel keeps apart, e.g. a file's
/// text and the anonymous mapping right after it with equal attributes).
pub fn covering(entries: &[MapsEntry], first: u64, last: u64) -> bool {
    let mut cursor = first;
    loop {
        let Some(entry) = entries.iter().find(|e| e.range.contains(&cursor)) else {
            return false;
        };
        if last < entry.range.end {
            return true;
        }
        cursor = entry.range.end;
    }
}

// --- output lines --------------------------------------------------------

/// Prefix of each scanned region's line: `region <gvascan::Region>  <name>`.
pub const REGION_PREFIX: &str = "region ";
/// Prefix of each echoed `/proc/self/maps` line (`scan --maps`).
pub const MAPS_PREFIX: &str = "maps: ";
/// Prefix of the line with the pages `hvctl` touched (`scan --maps`).
pub const TOUCHED_PREFIX: &str = "touched:";

/// The addresses of pages `hvctl` touched before the scan: one byte each of
/// its text, its stack and its heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Touched {
    pub text: u64,
    pub stack: u64,
    pub heap: u64,
}

impl Touched {
    /// `(name, address)` pairs.
    pub fn iter(&self) -> [(&'static str, u64); 3] {
        [("text", self.text), ("stack", self.stack), ("heap", self.heap)]
    }

    /// Parses the text after [`TOUCHED_PREFIX`].
    pub fn parse(rest: &str) -> Option<Self> {
        let mut found = [None; 3];
        let mut words = rest.split_whitespace();
        while let (Some(name), Some(value)) = (words.next(), words.next()) {
            let slot = match name {
                "text" => 0,
                "stack" => 1,
                "heap" => 2,
                _ => return None,
            };
            *found.get_mut(slot)? = Some(parse_hex(value)?);
        }
        Some(Self { text: found[0]?, stack: found[1]?, heap: found[2]? })
    }
}

impl fmt::Display for Touched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TOUCHED_PREFIX)?;
        for (name, address) in self.iter() {
            write!(f, " {name} {address:#x}")?;
        }
        Ok(())
    }
}

/// `0x`-prefixed hexadecimal.
pub fn parse_hex(word: &str) -> Option<u64> {
    u64::from_str_radix(word.strip_prefix("0x")?, 16).ok()
}

/// Prefix of each vCPU's line of `hvctl sched`: `vcpu N: ` and then
/// [`Figures`] as they display (the text the hypervisor's power-off summary
/// has after `sched: <vm>.<N> `).
pub const VCPU_PREFIX: &str = "vcpu ";

/// One line of `hvctl sched`: a vCPU's index in its VM and its figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedLine {
    pub vcpu: u64,
    pub figures: Figures,
}

impl fmt::Display for SchedLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VCPU_PREFIX}{}: {}", self.vcpu, self.figures)
    }
}

impl SchedLine {
    /// Parses a whole line, prefix included.
    pub fn parse(line: &str) -> Option<Self> {
        let (vcpu, figures) = line.strip_prefix(VCPU_PREFIX)?.split_once(": ")?;
        Some(Self { vcpu: vcpu.parse().ok()?, figures: Figures::parse(figures)? })
    }
}

/// The last line of `hvctl sched`, for people: the VM's vCPUs, their
/// wake-ups, and the median and worst wake-up latency over all of them.
///
/// ```text
/// hvctl: sched of this VM: 2 vCPUs, 5210 wake-ups, median wake-up latency 16..32 us, worst 4211 us
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedSummary {
    pub vcpus: usize,
    pub wakeups: u64,
    /// Every vCPU's latency buckets, added up.
    pub latency: [u64; BUCKETS],
    pub worst_us: u64,
}

impl SchedSummary {
    pub fn new(figures: &[Figures]) -> Self {
        let mut summary = Self { vcpus: figures.len(), wakeups: 0, latency: [0; BUCKETS], worst_us: 0 };
        for f in figures {
            summary.wakeups = summary.wakeups.saturating_add(f.wakeups);
            summary.worst_us = summary.worst_us.max(f.worst_us);
            for (sum, count) in summary.latency.iter_mut().zip(f.latency) {
                *sum = sum.saturating_add(count);
            }
        }
        summary
    }

    /// The bucket of the median wake-up latency, if any was recorded.
    pub fn median_bucket(&self) -> Option<usize> {
        percentile_bucket(&self.latency, 500)
    }
}

/// A latency bucket's range, for people: `under 1 us`, `16..32 us`,
/// `16384 us or more`.
pub fn bucket_range(index: usize) -> String {
    match index {
        0 => "under 1 us".into(),
        i if i + 1 >= BUCKETS => format!("{} us or more", bucket_floor_us(i)),
        i => format!("{}..{} us", bucket_floor_us(i), bucket_floor_us(i + 1)),
    }
}

/// Prefix of [`SchedSummary`]'s line.
pub const SCHED_SUMMARY_PREFIX: &str = "hvctl: sched of this VM: ";

impl fmt::Display for SchedSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.vcpus == 1 { "" } else { "s" };
        write!(f, "{SCHED_SUMMARY_PREFIX}{} vCPU{plural}, {} wake-ups, ", self.vcpus, self.wakeups)?;
        match self.median_bucket() {
            Some(median) => {
                write!(f, "median wake-up latency {}, worst {} us", bucket_range(median), self.worst_us)
            }
            None => f.write_str("no wake-up latency recorded"),
        }
    }
}

/// The VA range of a `region` line, `[first, last]` (the text after
/// [`REGION_PREFIX`], which starts with `gvascan::Region`'s
/// `0xSTART..=0xLAST` form).
pub fn parse_region_range(rest: &str) -> Option<(u64, u64)> {
    let (first, last) = rest.split_whitespace().next()?.split_once("..=")?;
    Some((parse_hex(first)?, parse_hex(last)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(Command::parse(args(&["info"])), Ok(Command::Info));
        assert_eq!(Command::parse(args(&["scan"])), Ok(Command::Scan { with_maps: false, layout: None }));
        assert_eq!(Command::parse(args(&["scan", "--maps"])), Ok(Command::Scan { with_maps: true, layout: None }));
        assert_eq!(
            Command::parse(args(&["scan", "--layout", "wide", "--maps"])),
            Ok(Command::Scan { with_maps: true, layout: Some(Layout::Wide) })
        );
        assert_eq!(
            Command::parse(args(&["scan", "--layout", "sparse"])),
            Ok(Command::Scan { with_maps: false, layout: Some(Layout::Sparse) })
        );
        for bad in [&["scan", "--layout"][..], &["scan", "--layout", "huge"], &["scan", "--maps", "--maps"]] {
            assert!(matches!(Command::parse(args(bad)), Err(UsageError::UnexpectedArgument(_))), "{bad:?}");
        }
        assert_eq!(Layout::Wide.shape(), (33, 512 << 20, 2 << 20));
        assert_eq!(
            Command::parse(args(&["console", "hello", "world"])),
            Ok(Command::Console { text: "hello world".into() })
        );
        assert_eq!(Command::parse(args(&["help"])), Ok(Command::Help));
        assert_eq!(Command::parse(args(&["sched"])), Ok(Command::Sched));
        assert!(USAGE.contains("hvctl sched"));
    }

    #[test]
    fn integrity_and_trace_parse() {
        assert_eq!(Command::parse(args(&["integrity", "status"])), Ok(Command::Integrity { lock: false }));
        assert_eq!(Command::parse(args(&["integrity", "lock"])), Ok(Command::Integrity { lock: true }));
        assert_eq!(Command::parse(args(&["trace"])), Ok(Command::Trace { clear: false }));
        assert_eq!(Command::parse(args(&["trace", "--clear"])), Ok(Command::Trace { clear: true }));
        for bad in [&["integrity"][..], &["integrity", "unlock"], &["integrity", "lock", "now"], &["trace", "--all"]] {
            assert!(matches!(Command::parse(args(bad)), Err(UsageError::UnexpectedArgument(_))), "{bad:?}");
        }
        assert!(USAGE.contains("hvctl integrity lock") && USAGE.contains("hvctl trace [--clear]"));
        let record = platform::s1trace::Record {
            table: 0x4240_b000,
            level: 0,
            index: 503,
            old: 0,
            new: 0x4237_0003,
            first_va: 0xffff_fb80_0000_0000,
            last_va: 0xffff_fbff_ffff_ffff,
        };
        assert_eq!(
            TraceLine(record).to_string(),
            "trace: table 0x4240b000 level 0 index 503 old 0x0000000000000000 new 0x0000000042370003 \
             va 0xfffffb8000000000-0xfffffbffffffffff"
        );
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        assert_eq!(Command::parse(args(&[])), Err(UsageError::NoCommand));
        assert_eq!(Command::parse(args(&["reboot"])), Err(UsageError::UnknownCommand("reboot".into())));
        assert_eq!(Command::parse(args(&["info", "x"])), Err(UsageError::UnexpectedArgument("x".into())));
        assert_eq!(Command::parse(args(&["scan", "--all"])), Err(UsageError::UnexpectedArgument("--all".into())));
        assert_eq!(Command::parse(args(&["console"])), Err(UsageError::MissingText));
        assert_eq!(Command::parse(args(&["sched", "0"])), Err(UsageError::UnexpectedArgument("0".into())));
    }

    const MAPS: &str = "\
00400000-00489000 r-xp 00000000 00:02 9                                  /bin/hvctl
00499000-0049b000 rw-p 00089000 00:02 9                                  /bin/hvctl
0049b000-0049c000 rw-p 00000000 00:00 0 
1a5d1000-1a5d2000 ---p 00000000 00:00 0                                  [heap]
ffffd6e8a000-ffffd6eab000 rw-p 00000000 00:00 0                          [stack]
ffffd6eab000-ffffd6eac000 r--p 00000000 00:00 0                          [vvar with space]
garbage line
";

    #[test]
    fn maps_lines_parse() {
        let entries = parse_maps(MAPS);
        assert_eq!(entries.len(), 6);
        assert_eq!(
            entries[0],
            MapsEntry { range: 0x40_0000..0x48_9000, perms: "r-xp".into(), name: "/bin/hvctl".into() }
        );
        assert_eq!(entries[2].name, "");
        assert_eq!(entries[4].range, 0xffff_d6e8_a000..0xffff_d6ea_b000);
        assert_eq!(entries[5].name, "[vvar with space]");
        assert_eq!(MapsEntry::parse("00500000-00400000 r-xp 0 00:00 0"), None);
        assert_eq!(MapsEntry::parse("00400000-00500000 r-xp 0 00:00"), None);
    }

    #[test]
    fn containment_is_per_entry_and_covering_chains_adjacent_ones() {
        let entries = parse_maps(MAPS);
        assert_eq!(containing(&entries, 0x40_0000, 0x48_8fff).map(|e| e.name.as_str()), Some("/bin/hvctl"));
        assert_eq!(containing(&entries, 0x40_0000, 0x48_9000), None);
        assert_eq!(containing(&entries, 0x49_a000, 0x49_bfff), None);
        assert!(covering(&entries, 0x49_a000, 0x49_bfff));
        assert!(!covering(&entries, 0x49_a000, 0x49_cfff));
        assert!(!covering(&entries, 0x48_9000, 0x48_9fff));
        assert!(covering(&entries, 0xffff_d6ea_a000, 0xffff_d6ea_bfff));
    }

    #[test]
    fn output_lines_round_trip() {
        let touched = Touched { text: 0x40_1234, stack: 0xffff_d6ea_0010, heap: 0x1a5d_1008 };
        let line = touched.to_string();
        let rest = line.strip_prefix(TOUCHED_PREFIX).unwrap();
        assert_eq!(Touched::parse(rest), Some(touched));
        assert_eq!(Touched::parse(" text 0x1 stack 0x2"), None);
        assert_eq!(Touched::parse(" text 0x1 stack 0x2 heap 3"), None);
        assert_eq!(Touched::parse(" text 0x1 stack 0x2 heap 0x3 disk 0x4"), None);
        assert_eq!(
            parse_region_range("0x0000000000400000..=0x0000000000488fff -> IPA 0x4 EL1 r-- EL0 r-x  /bin/hvctl"),
            Some((0x40_0000, 0x48_8fff))
        );
        assert_eq!(parse_region_range("0x400000-0x488fff"), None);
    }

    fn figures(worst_us: u64, latency: [u64; BUCKETS]) -> Figures {
        Figures { run_us: 1_234_567, wait_us: 8910, switches: 42, wakeups: latency.iter().sum(), latency, worst_us }
    }

    #[test]
    fn sched_lines_round_trip_and_match_the_power_off_summary() {
        let mut latency = [0; BUCKETS];
        latency[3] = 7;
        latency[15] = 1;
        let line = SchedLine { vcpu: 1, figures: figures(40_000, latency) };
        let text = line.to_string();
        assert_eq!(
            text,
            "vcpu 1: run 1234567 us, wait 8910 us, switches 42, wake-ups 8, worst 40000 us, latency 0 0 0 7 0 0 0 0 0 0 0 0 0 0 0 1"
        );
        assert_eq!(SchedLine::parse(&text), Some(line));
        // The same text as the hypervisor's `sched: <vm>.<n> ` lines.
        let hypervisor = format!("{}linux-a.1 {}", platform::sched::REPORT_PREFIX, line.figures);
        assert_eq!(hypervisor.split_once(' ').unwrap().1.split_once(' ').unwrap().1, text.split_once(": ").unwrap().1);
        assert_eq!(SchedLine::parse("vcpu x: run 1 us"), None);
        assert_eq!(SchedLine::parse(&text.replace("vcpu 1:", "vcpu 1")), None);
        assert_eq!(SchedLine::parse(&format!("{text} 3")), None);
    }

    #[test]
    fn sched_summary_adds_up_the_vcpus() {
        let mut a = [0; BUCKETS];
        a[4] = 3; // 8..16 us
        let mut b = [0; BUCKETS];
        b[5] = 2; // 16..32 us
        b[15] = 1;
        let summary = SchedSummary::new(&[figures(20, a), figures(70_000, b)]);
        assert_eq!(summary.wakeups, 6);
        assert_eq!(summary.median_bucket(), Some(4));
        assert_eq!(
            summary.to_string(),
            "hvctl: sched of this VM: 2 vCPUs, 6 wake-ups, median wake-up latency 8..16 us, worst 70000 us"
        );
        let idle = SchedSummary::new(&[figures(0, [0; BUCKETS])]);
        assert_eq!(idle.to_string(), "hvctl: sched of this VM: 1 vCPU, 0 wake-ups, no wake-up latency recorded");
        assert_eq!(bucket_range(0), "under 1 us");
        assert_eq!(bucket_range(1), "1..2 us");
        assert_eq!(bucket_range(BUCKETS - 1), "16384 us or more");
    }
}
