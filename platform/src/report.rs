//! The guest-stub's self-test report: the lines the stub prints and the
//! host runner reads, defined once so that a change of format cannot
//! silently break the runner (the runner parses with [`Line::parse`], the
//! stub prints with [`Line`]'s `Display` and [`Plan`]).
//!
//! After the console's `guest-stub: ` prefix, a run prints:
//!
//! ```text
//! checks: el1-entry psci-version ...     the plan: every check it will run, in order
//! PASS <name>
//! FAIL <name>: <why>
//! SKIP <name>: <why>                      the check could not run here
//! N passed, M failed, K skipped           the summary
//! ```
//!
//! The plan comes first so that a check that disappears from the stub's
//! table, or never reports, is noticed by name: the runner compares the
//! plan and the results with the set it expects for the scenario.

use core::fmt;

/// The `name value` pairs that close a benchmark's report line (`rounds 101
/// total 1279129 ...`), in the order `names` gives: each name, then its
/// number. `None` if a name is not where it should be or a value is no
/// number. The portal's and the forwarded read's reports share it.
pub fn named_values<'a, const N: usize>(
    words: &mut impl Iterator<Item = &'a str>,
    names: [&str; N],
) -> Option<[u64; N]> {
    let mut values = [0u64; N];
    for (value, name) in values.iter_mut().zip(names) {
        if words.next()? != name {
            return None;
        }
        *value = words.next()?.parse().ok()?;
    }
    Some(values)
}

/// The console prefix of every guest-stub line.
pub const PREFIX: &str = "guest-stub: ";

const PLAN: &str = "checks:";
const PASS: &str = "PASS ";
const FAIL: &str = "FAIL ";
const SKIP: &str = "SKIP ";

/// One report line, without the console prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The checks the stub will run, separated by single spaces.
    Plan(&'a str),
    Pass(&'a str),
    Fail {
        name: &'a str,
        why: &'a str,
    },
    Skip {
        name: &'a str,
        why: &'a str,
    },
    Summary {
        passed: u32,
        failed: u32,
        skipped: u32,
    },
}

impl<'a> Line<'a> {
    /// Reads one line (the console prefix already removed); `None` for
    /// anything that is not a report line.
    pub fn parse(body: &'a str) -> Option<Self> {
        let body = body.trim_end();
        if let Some(names) = body.strip_prefix(PLAN) {
            return Some(Line::Plan(names.trim_start()));
        }
        if let Some(name) = body.strip_prefix(PASS) {
            return is_name(name).then_some(Line::Pass(name));
        }
        for (tag, skipped) in [(FAIL, false), (SKIP, true)] {
            if let Some(rest) = body.strip_prefix(tag) {
                let (name, why) = rest.split_once(": ")?;
                if !is_name(name) {
                    return None;
                }
                return Some(if skipped { Line::Skip { name, why } } else { Line::Fail { name, why } });
            }
        }
        Self::parse_summary(body)
    }

    fn parse_summary(body: &str) -> Option<Self> {
        let mut parts = body.split(", ");
        let mut count = |word: &str| -> Option<u32> {
            let (number, label) = parts.next()?.split_once(' ')?;
            (label == word).then(|| number.parse().ok()).flatten()
        };
        let (passed, failed, skipped) = (count("passed")?, count("failed")?, count("skipped")?);
        parts.next().is_none().then_some(Line::Summary { passed, failed, skipped })
    }

    /// The names in a [`Line::Plan`].
    pub fn plan_names(names: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        names.split(' ').filter(|n| !n.is_empty())
    }
}

/// Check names are one word: letters, digits and `-`.
fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Plan(names) => write!(f, "{PLAN} {names}"),
            Line::Pass(name) => write!(f, "{PASS}{name}"),
            Line::Fail { name, why } => write!(f, "{FAIL}{name}: {why}"),
            Line::Skip { name, why } => write!(f, "{SKIP}{name}: {why}"),
            Line::Summary { passed, failed, skipped } => {
                write!(f, "{passed} passed, {failed} failed, {skipped} skipped")
            }
        }
    }
}

/// The plan line for the checks named by an iterator: what the stub
/// prints (it has no allocator to build a [`Line::Plan`] string).
pub struct Plan<I>(pub I);

impl<'n, I: Iterator<Item = &'n str> + Clone> fmt::Display for Plan<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PLAN)?;
        for name in self.0.clone() {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

/// A [`Line::Fail`] whose reason is formatted in place: what the stub
/// prints (the reason is a `Display` value, and the stub has no
/// allocator to turn it into a string first).
pub struct Failed<'a, W> {
    pub name: &'a str,
    pub why: W,
}

impl<W: fmt::Display> fmt::Display for Failed<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{FAIL}{}: {}", self.name, self.why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn every_line_reads_back_as_printed() {
        let lines = [
            Line::Plan("el1-entry psci-version virq-no-loss"),
            Line::Pass("el1-entry"),
            Line::Fail { name: "virq-sgi", why: "vCPU 1: an SGI was lost: after 1000 ms" },
            Line::Skip { name: "pci-enumerate", why: "no ECAM: the DTB has no host bridge" },
            Line::Summary { passed: 37, failed: 1, skipped: 2 },
        ];
        for line in lines {
            let text = line.to_string();
            assert_eq!(Line::parse(&text), Some(line), "{text}");
        }
    }

    #[test]
    fn plan_prints_like_a_plan_line() {
        let names = ["a-1", "b", "c-two"];
        let text = Plan(names.iter().copied()).to_string();
        assert_eq!(text, "checks: a-1 b c-two");
        let Some(Line::Plan(listed)) = Line::parse(&text) else { panic!("{text}") };
        assert!(Line::plan_names(listed).eq(names.iter().copied()));
        assert_eq!(Plan(core::iter::empty()).to_string(), "checks:");
        assert_eq!(Line::parse("checks:"), Some(Line::Plan("")));
        let failed = Failed { name: "virq-sgi", why: format_args!("lost after {} ms", 1000) }.to_string();
        assert_eq!(Line::parse(&failed), Some(Line::Fail { name: "virq-sgi", why: "lost after 1000 ms" }));
        assert_eq!(Line::plan_names("").count(), 0);
    }

    #[test]
    fn named_values_read_pairs_in_order_only() {
        let mut words = "rounds 101 total 7 extra".split(' ');
        assert_eq!(named_values(&mut words, ["rounds", "total"]), Some([101, 7]));
        assert_eq!(words.next(), Some("extra"));
        assert_eq!(named_values(&mut "total 7 rounds 101".split(' '), ["rounds", "total"]), None);
        assert_eq!(named_values(&mut "rounds x".split(' '), ["rounds"]), None);
        assert_eq!(named_values(&mut "rounds".split(' '), ["rounds"]), None);
    }

    #[test]
    fn other_lines_are_not_report_lines() {
        for text in [
            "started at EL1, 37 checks",
            "virq-no-loss: 7971 timer, 254 SGI interrupts over 2000 ms",
            "PASS",
            "PASS two words",
            "FAIL name-without-reason",
            "FAIL : empty name",
            "37 passed, 0 failed",
            "37 passed, 0 failed, x skipped",
            "37 passed, 0 failed, 0 skipped, 1 more",
            "1 failed, 2 passed, 0 skipped",
            "bench brk-version median=232",
        ] {
            assert_eq!(Line::parse(text), None, "{text}");
        }
    }
}
