//! Property tests of the small text parsers: the hypervisor command line
//! (`platform::cmdline`, from fw_cfg or the DT) and the fw_cfg directory
//! entries (`platform::fw_cfg`).
//!
//! Bounded: each property runs 256 cases (`common::config`; override with
//! `PROPTEST_CASES`; `PROPTEST_RNG_SEED` reproduces a run).
//!
//! Properties:
//! - `Cmdline::parse` of any string never panics; on command lines made of
//!   known, misspelt and unknown words with any ASCII whitespace between
//!   them, each setting is the last valid value given (or its default),
//!   every other word is reported once, in order, with the right reason,
//!   and the guest-stub words are passed on in order;
//! - `match_dir_entry` of any 64 bytes and name finds exactly the entry
//!   whose NUL-terminated (or 56-byte) name is the name, with its
//!   big-endian size and selector.

use platform::cmdline::{BadWord, Cmdline, LogLevel, Mode, Remap, SelfTest};
use platform::fw_cfg::{match_dir_entry, FileRef};
use proptest::prelude::*;

mod common;
use common::config;

const KEYS: &[(&str, &[&str])] = &[
    ("log", &["error", "warn", "info", "debug", "trace"]),
    ("mode", &["auto", "vhe", "nvhe"]),
    ("remap", &["intermediate", "fault"]),
    ("selftest", &["firmware", "fatal"]),
];

/// A command-line word and what it should do.
#[derive(Clone, Debug)]
enum Word {
    /// `key=value` with a valid value.
    Set(usize, usize),
    /// `key=value` with a value the key does not take.
    BadValue(usize, String),
    /// A word meant for the guest-stub.
    Stub(String),
    /// Anything else (no `=`, or an unknown key).
    Unknown(String),
}

impl Word {
    fn text(&self) -> String {
        match self {
            Word::Set(k, v) => format!("{}={}", KEYS[*k].0, KEYS[*k].1[*v]),
            Word::BadValue(k, v) => format!("{}={}", KEYS[*k].0, v),
            Word::Stub(w) | Word::Unknown(w) => w.clone(),
        }
    }
}

/// Word characters: anything printable but ASCII whitespace (non-ASCII
/// spaces included: `split_ascii_whitespace` keeps them inside words).
fn word_chars(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::char::range('a', 'z'),
            1 => prop::sample::select(&['=', '-', '_', ',', '.', '\u{a0}', '\u{3000}', 'é', 'L', '0'][..]),
        ],
        1..max,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn word_strategy() -> impl Strategy<Value = Word> {
    let key = 0..KEYS.len();
    prop_oneof![
        4 => (key.clone(), 0usize..5).prop_map(|(k, v)| Word::Set(k, v % KEYS[k].1.len())),
        2 => (key, word_chars(8)).prop_filter_map("a valid value", |(k, v)| {
            (!KEYS[k].1.contains(&v.as_str())).then_some(Word::BadValue(k, v))
        }),
        1 => prop::sample::select(&["", "fault", "log", "info=1", "Info", "info\u{a0}"][..]).prop_map(|v| Word::BadValue(0, v.to_string())),
        2 => (prop::sample::select(&["stub", "stub-", "stub-seed", "stub-x"][..]), word_chars(6))
            .prop_map(|(k, v)| Word::Stub(format!("{k}={v}"))),
        2 => word_chars(10).prop_map(|w| {
            let known_key = w.split_once('=').is_some_and(|(k, _)| {
                KEYS.iter().any(|(key, _)| *key == k) || k == "stub" || k.starts_with("stub-")
            });
            if known_key {
                Word::Unknown(format!("x{w}"))
            } else {
                Word::Unknown(w)
            }
        }),
        1 => prop::sample::select(&["log", "stub", "LOG=info", "Log=debug", "=", "==", "stub-seed", "selftest", "stubx=1"][..])
            .prop_map(|w| Word::Unknown(w.to_string())),
    ]
}

fn whitespace() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&[' ', '\t', '\n', '\r', '\x0c'][..]), 1..3)
        .prop_map(|c| c.into_iter().collect())
}

proptest! {
    #![proptest_config(config())]

    /// Any text at all: no panic, every word is either applied, passed on
    /// or reported.
    #[test]
    fn cmdline_parse_never_panics(text in any::<String>()) {
        let mut reports = Vec::new();
        let cmdline = Cmdline::parse(&text, |bad| reports.push(bad));
        prop_assert_eq!(cmdline.text, text.as_str());
        let words = text.split_ascii_whitespace().count();
        let stub = cmdline.guest_stub_words().count();
        prop_assert!(reports.len() + stub <= words);
        for bad in &reports {
            let _ = bad.to_string();
        }
    }

    /// Generated command lines: the settings, the reports and the
    /// guest-stub words are exactly what the word table says.
    #[test]
    fn cmdline_parse_applies_and_reports(
        words in prop::collection::vec((word_strategy(), whitespace()), 0..12),
        leading in prop::option::of(whitespace()),
    ) {
        let mut text = leading.unwrap_or_default();
        for (word, space) in &words {
            text.push_str(&word.text());
            text.push_str(space);
        }
        let mut reports = Vec::new();
        let cmdline = Cmdline::parse(&text, |bad| reports.push(bad));

        let last = |key: usize| {
            words.iter().rev().find_map(|(w, _)| match w {
                Word::Set(k, v) if *k == key => Some(KEYS[key].1[*v]),
                _ => None,
            })
        };
        let log = match last(0).unwrap_or("info") {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            _ => LogLevel::Trace,
        };
        let mode = match last(1).unwrap_or("auto") {
            "auto" => Mode::Auto,
            "vhe" => Mode::Vhe,
            _ => Mode::Nvhe,
        };
        let remap = match last(2).unwrap_or("intermediate") {
            "intermediate" => Remap::Intermediate,
            _ => Remap::Fault,
        };
        let selftest = last(3).map(|v| if v == "firmware" { SelfTest::Firmware } else { SelfTest::Fatal });
        prop_assert_eq!((cmdline.log, cmdline.mode, cmdline.remap, cmdline.selftest), (log, mode, remap, selftest));

        let expected_reports: Vec<String> = words
            .iter()
            .filter_map(|(w, _)| match w {
                Word::BadValue(..) => Some(format!("bad {}", w.text())),
                Word::Unknown(text) => Some(format!("unknown {text}")),
                _ => None,
            })
            .collect();
        let got_reports: Vec<String> = reports
            .iter()
            .map(|bad| match bad {
                BadWord::UnknownKey(word) => format!("unknown {word}"),
                BadWord::BadValue { key, value, expected } => {
                    let (_, values) = KEYS.iter().find(|(k, _)| k == key).expect("a known key");
                    assert_eq!(*expected, values.join("|"), "the expected values listed");
                    format!("bad {key}={value}")
                }
            })
            .collect();
        prop_assert_eq!(got_reports, expected_reports, "{:?}", text);

        let stub: Vec<String> = words
            .iter()
            .filter(|(w, _)| matches!(w, Word::Stub(_)))
            .map(|(w, _)| w.text())
            .collect();
        prop_assert_eq!(cmdline.guest_stub_words().map(str::to_string).collect::<Vec<_>>(), stub);
    }

    /// Any 64-byte entry and name: a match exactly when the name field,
    /// cut at its first NUL (or all 56 bytes), is the name; size and
    /// selector are the big-endian fields.
    #[test]
    fn fw_cfg_entries_match_exactly_their_name(
        size in any::<u32>(),
        select in any::<u16>(),
        reserved in any::<u16>(),
        stored in prop_oneof![
            4 => "[a-z/._-]{0,60}",
            1 => prop::collection::vec(any::<u8>(), 0..57).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        ],
        asked in prop_oneof![
            2 => Just(None),
            1 => "[a-z/._-]{0,60}".prop_map(Some),
        ],
        garbage in prop::collection::vec(any::<u8>(), 56),
        nul_terminated in any::<bool>(),
    ) {
        let mut entry = [0u8; 64];
        entry[0..4].copy_from_slice(&size.to_be_bytes());
        entry[4..6].copy_from_slice(&select.to_be_bytes());
        entry[6..8].copy_from_slice(&reserved.to_be_bytes());
        // The name field: the stored name, then a NUL (or not), then junk.
        entry[8..].copy_from_slice(&garbage);
        let stored = stored.as_bytes();
        let n = stored.len().min(56);
        entry[8..8 + n].copy_from_slice(&stored[..n]);
        if nul_terminated && n < 56 {
            entry[8 + n] = 0;
        }
        let field = &entry[8..];
        let field_name = &field[..field.iter().position(|&b| b == 0).unwrap_or(56)];
        let name = asked.unwrap_or_else(|| String::from_utf8_lossy(field_name).into_owned());
        let got = match_dir_entry(&entry, &name);
        if field_name == name.as_bytes() {
            prop_assert_eq!(got, Some(FileRef { select, size }));
        } else {
            prop_assert_eq!(got, None);
        }
    }
}
