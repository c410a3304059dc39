//! The Linux guest of the scenarios, from the host's side: where `make
//! linux-guest` put it, and what its `/init` (`tests/linux/init`) and its
//! kernel print that every Linux scenario reads the same way, on every
//! board.

use std::path::PathBuf;

use crate::scenario::workspace;

/// The kernel `Image` and the initramfs `make linux-guest` wrote, or why
/// they are not there (the last line of `build/linux-guest.log`).
pub fn guest() -> Result<(PathBuf, PathBuf), String> {
    let dir = workspace().join("build/linux");
    let (image, initrd) = (dir.join("Image"), dir.join("initramfs.cpio.gz"));
    if image.exists() && initrd.exists() {
        return Ok((image, initrd));
    }
    let log = std::fs::read_to_string(workspace().join("build/linux-guest.log")).unwrap_or_default();
    Err(log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("make linux-guest has not run").to_string())
}

/// What a Linux kernel must never print in a healthy run: warnings, bugs,
/// CPUs that did not come up, and the lockup and stall detectors' reports
/// (a vCPU held off its CPU for too long looks like one of those to the
/// guest).
pub const BAD_LINES: [&str; 9] = [
    "WARNING:",
    "BUG:",
    "Oops",
    "Call trace",
    "failed to come online",
    "soft lockup",
    "hard LOCKUP",
    "rcu_sched self-detected stall",
    "rcu: INFO:",
];

/// The `linux-guest: timer` samples in a guest's console text (`/init`'s
/// `timer_samples`: the `arch_timer` line of `/proc/interrupts`, twice, a
/// second apart): per sample, the counts of the first `cpus` CPUs.
pub fn timer_samples(text: &str, cpus: usize) -> Vec<Vec<u64>> {
    text.lines()
        .filter_map(|l| l.strip_prefix("linux-guest: timer "))
        .map(|l| l.split_whitespace().skip(1).take(cpus).filter_map(|n| n.parse().ok()).collect())
        .collect()
}

/// There are two timer samples with a count for each of `cpus` CPUs, and
/// every CPU's count rose between them; else what is wrong.
pub fn check_timers_rose(text: &str, cpus: usize) -> Result<(), String> {
    let samples = timer_samples(text, cpus);
    if samples.len() != 2 {
        return Err(format!("{} samples of the timer counts, not two", samples.len()));
    }
    if samples.iter().any(|s| s.len() != cpus) {
        return Err(format!("not a count for each of the {cpus} CPUs: {samples:?}"));
    }
    for (cpu, (before, after)) in samples[0].iter().zip(&samples[1]).enumerate() {
        if after <= before {
            return Err(format!("CPU {cpu}'s timer interrupts did not rise ({before} -> {after})"));
        }
    }
    Ok(())
}

/// The first of [`BAD_LINES`] that `text` has.
pub fn bad_line(text: &str) -> Option<&'static str> {
    BAD_LINES.into_iter().find(|bad| text.contains(bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_SAMPLES: &str = "linux-guest: nproc 4\n\
        linux-guest: timer  11:        385        377        342        361 GIC-0  27 Level     arch_timer\n\
        linux-guest: cpus 4\n\
        linux-guest: timer  11:        421        417        374        406 GIC-0  27 Level     arch_timer\n";

    #[test]
    fn timer_samples_are_read_per_cpu() {
        assert_eq!(timer_samples(TWO_SAMPLES, 4), [[385, 377, 342, 361], [421, 417, 374, 406]]);
        assert_eq!(timer_samples(TWO_SAMPLES, 2), [[385, 377], [421, 417]]);
        assert_eq!(check_timers_rose(TWO_SAMPLES, 4), Ok(()));
    }

    #[test]
    fn what_is_wrong_with_the_samples_is_said() {
        let one = TWO_SAMPLES.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(check_timers_rose(&one, 4), Err("1 samples of the timer counts, not two".into()));
        let stuck = TWO_SAMPLES.replace("417", "377");
        assert_eq!(check_timers_rose(&stuck, 4), Err("CPU 1's timer interrupts did not rise (377 -> 377)".into()));
        let err = check_timers_rose(TWO_SAMPLES, 5).unwrap_err();
        assert!(err.starts_with("not a count for each of the 5 CPUs"), "{err}");
    }

    #[test]
    fn bad_lines_are_found() {
        assert_eq!(bad_line(TWO_SAMPLES), None);
        assert_eq!(bad_line("[ 1.0] CPU3: failed to come online\n"), Some("failed to come online"));
        assert_eq!(bad_line("[ 2.0] WARNING: CPU: 0 PID: 1 at x\n"), Some("WARNING:"));
    }
}
