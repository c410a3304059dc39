//! The hypervisor command line: space-separated `key=value` words from
//! fw_cfg `opt/hv/cmdline` (QEMU) or the DT's `/chosen/hv,bootargs`.
//!
//! | word | meaning |
//! |------|---------|
//! | `log=error\|warn\|info\|debug\|trace` | hypervisor log level (default `info`) |
//! | `mode=auto\|vhe\|nvhe` | translation scheme (default `auto`) |
//! | `remap=intermediate\|fault` | boot remapping path (default `intermediate`) |
//! | `selftest=firmware` | before the guest, check the monitor's SMC interface from EL2 |
//! | `selftest=fatal` | before the guest, take a deliberate fault at EL2 (shows the fatal-error path) |
//! | `integrity`, `integrity=emulate` | the guest's kernel code integrity: its kernel's table writes traced, per-mode execute control at stage 2 (FEAT_XNX, or emulated with a tree per class; `=emulate` forces the emulation), and the lock (`docs/kernel-integrity.md`) |
//! | `vmid-bits=N` | debug: narrow the VMID space to `N` bits (1..16; e.g. 2 = VMIDs 1..3) so VMIDs get recycled; never wider than the CPU's |
//! | `stub=WORD`, `stub-*=VALUE` | passed to the guest-stub in its `/chosen/bootargs` |
//!
//! Parsing is pure and never fails as a whole: each bad word is reported
//! and skipped, so a typo cannot stop the system from booting.

/// Log level words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            Self::Error => log::LevelFilter::Error,
            Self::Warn => log::LevelFilter::Warn,
            Self::Info => log::LevelFilter::Info,
            Self::Debug => log::LevelFilter::Debug,
            Self::Trace => log::LevelFilter::Trace,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Vhe,
    Nvhe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remap {
    Intermediate,
    Fault,
}

/// A boot-time self-test the hypervisor runs before the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// Exercise the monitor's SMCCC and PSCI calls, including error paths.
    Firmware,
    /// Take an unexpected exception at EL2 on purpose.
    Fatal,
}

/// A word the parser skipped, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadWord<'a> {
    UnknownKey(&'a str),
    BadValue { key: &'a str, value: &'a str, expected: &'static str },
}

impl core::fmt::Display for BadWord<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UnknownKey(word) => write!(f, "unknown command-line word `{word}` ignored"),
            Self::BadValue { key, value, expected } => {
                write!(f, "`{key}={value}` ignored: expected {key}={expected}")
            }
        }
    }
}

/// The parsed command line. Borrowed from the text it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cmdline<'a> {
    pub text: &'a str,
    pub log: LogLevel,
    pub mode: Mode,
    pub remap: Remap,
    pub selftest: Option<SelfTest>,
    /// `vmid-bits=N`: the VMID width to use if narrower than the CPU's.
    pub vmid_bits: Option<u8>,
    /// `integrity` or `integrity=emulate`: the single VM's kernel
    /// integrity (page-table write tracing, the lock, per-mode execute
    /// control).
    pub integrity: Option<crate::mbec::Mechanism>,
}

impl<'a> Cmdline<'a> {
    /// Parses `text`, calling `report` for each word it skips.
    pub fn parse(text: &'a str, mut report: impl FnMut(BadWord<'a>)) -> Self {
        let mut cmdline = Self {
            text,
            log: LogLevel::Info,
            mode: Mode::Auto,
            remap: Remap::Intermediate,
            selftest: None,
            vmid_bits: None,
            integrity: None,
        };
        for word in text.split_ascii_whitespace() {
            if word == "integrity" {
                cmdline.integrity = Some(crate::mbec::Mechanism::Auto);
                continue;
            }
            let Some((key, value)) = word.split_once('=') else {
                report(BadWord::UnknownKey(word));
                continue;
            };
            let bad = |expected| BadWord::BadValue { key, value, expected };
            match key {
                "log" => match value {
                    "error" => cmdline.log = LogLevel::Error,
                    "warn" => cmdline.log = LogLevel::Warn,
                    "info" => cmdline.log = LogLevel::Info,
                    "debug" => cmdline.log = LogLevel::Debug,
                    "trace" => cmdline.log = LogLevel::Trace,
                    _ => report(bad("error|warn|info|debug|trace")),
                },
                "mode" => match value {
                    "auto" => cmdline.mode = Mode::Auto,
                    "vhe" => cmdline.mode = Mode::Vhe,
                    "nvhe" => cmdline.mode = Mode::Nvhe,
                    _ => report(bad("auto|vhe|nvhe")),
                },
                "remap" => match value {
                    "intermediate" => cmdline.remap = Remap::Intermediate,
                    "fault" => cmdline.remap = Remap::Fault,
                    _ => report(bad("intermediate|fault")),
                },
                "selftest" => match value {
                    "firmware" => cmdline.selftest = Some(SelfTest::Firmware),
                    "fatal" => cmdline.selftest = Some(SelfTest::Fatal),
                    _ => report(bad("firmware|fatal")),
                },
                "vmid-bits" => match value.parse::<u8>() {
                    Ok(bits @ 1..=16) if value.bytes().all(|b| b.is_ascii_digit()) => cmdline.vmid_bits = Some(bits),
                    _ => report(bad("1..16")),
                },
                "integrity" => match value {
                    "emulate" => cmdline.integrity = Some(crate::mbec::Mechanism::Emulated),
                    _ => report(bad("emulate (or the word integrity alone)")),
                },
                _ if is_guest_stub_word(key) => {}
                _ => report(BadWord::UnknownKey(word)),
            }
        }
        cmdline
    }

    /// The words meant for the guest-stub, in order.
    pub fn guest_stub_words(&self) -> impl Iterator<Item = &'a str> {
        self.text.split_ascii_whitespace().filter(|w| w.split_once('=').is_some_and(|(key, _)| is_guest_stub_word(key)))
    }
}

fn is_guest_stub_word(key: &str) -> bool {
    key == "stub" || key.starts_with("stub-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Cmdline<'_>, std::vec::Vec<std::string::String>) {
        let mut bad = std::vec::Vec::new();
        let c = Cmdline::parse(text, |w| bad.push(std::format!("{w}")));
        (c, bad)
    }

    #[test]
    fn defaults() {
        let (c, bad) = parse("");
        assert_eq!((c.log, c.mode, c.remap), (LogLevel::Info, Mode::Auto, Remap::Intermediate));
        assert_eq!((c.selftest, c.vmid_bits), (None, None));
        assert!(bad.is_empty());
    }

    #[test]
    fn known_words_set_their_values() {
        let (c, bad) = parse("  log=debug mode=nvhe\tremap=fault selftest=firmware ");
        assert_eq!((c.log, c.mode, c.remap), (LogLevel::Debug, Mode::Nvhe, Remap::Fault));
        assert_eq!(c.selftest, Some(SelfTest::Firmware));
        assert!(bad.is_empty());
        assert_eq!(c.log.filter(), log::LevelFilter::Debug);
    }

    #[test]
    fn bad_words_are_reported_and_skipped() {
        let (c, bad) = parse("log=loud mode=vhe verbose frob=1 selftest=all");
        assert_eq!(c.log, LogLevel::Info);
        assert_eq!(c.selftest, None);
        assert_eq!(c.mode, Mode::Vhe);
        assert_eq!(
            bad,
            [
                "`log=loud` ignored: expected log=error|warn|info|debug|trace",
                "unknown command-line word `verbose` ignored",
                "unknown command-line word `frob=1` ignored",
                "`selftest=all` ignored: expected selftest=firmware|fatal",
            ]
        );
    }

    #[test]
    fn integrity_alone_or_emulated() {
        use crate::mbec::Mechanism;
        assert_eq!(parse("integrity").0.integrity, Some(Mechanism::Auto));
        assert_eq!(parse("log=info integrity=emulate").0.integrity, Some(Mechanism::Emulated));
        let (c, bad) = parse("integrity=yes");
        assert_eq!(c.integrity, None);
        assert_eq!(bad, ["`integrity=yes` ignored: expected integrity=emulate (or the word integrity alone)"]);
    }

    #[test]
    fn guest_stub_words_pass_through() {
        let (c, bad) = parse("stub=fail log=warn stub-seed=7 stubby=1");
        assert_eq!(c.guest_stub_words().collect::<std::vec::Vec<_>>(), ["stub=fail", "stub-seed=7"]);
        assert_eq!(bad, ["unknown command-line word `stubby=1` ignored"]);
    }

    #[test]
    fn vmid_bits_narrows_the_vmid_space() {
        for (text, bits) in [("vmid-bits=2", 2), ("vmid-bits=1", 1), ("vmid-bits=16", 16), ("vmid-bits=08", 8)] {
            let (c, bad) = parse(text);
            assert_eq!(c.vmid_bits, Some(bits), "{text}");
            assert!(bad.is_empty(), "{text}: {bad:?}");
        }
        let (c, bad) = parse("vmid-bits=3 vmid-bits=4");
        assert_eq!((c.vmid_bits, bad.len()), (Some(4), 0), "the last word wins");
        for value in ["0", "17", "256", "-1", "+2", "", "two", "2.0"] {
            let text = std::format!("vmid-bits={value}");
            let mut bad = std::vec::Vec::new();
            let c = Cmdline::parse(&text, |w| bad.push(w));
            assert_eq!(c.vmid_bits, None, "{text}");
            assert_eq!(bad, [BadWord::BadValue { key: "vmid-bits", value, expected: "1..16" }], "{text}");
        }
        let (_, bad) = parse("vmid-bits=0 vmid-bits=3");
        assert_eq!(bad, ["`vmid-bits=0` ignored: expected vmid-bits=1..16"]);
    }
}
