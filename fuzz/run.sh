#!/usr/bin/env bash
# `make fuzz`: runs each fuzz target for FUZZ_SECONDS (default 600), one
# after the other, and fails if any finds a crash.
#
#   fuzz/run.sh [TARGET...]        all targets (fuzz_targets/*.rs) by default
#   FUZZ_DRIVER=libfuzzer|afl      default: libfuzzer where a nightly
#                                  toolchain is installed, else afl
#
# libfuzzer: `cargo +nightly fuzz run` (libFuzzer with AddressSanitizer;
# cargo-fuzz is installed if missing). afl: AFL++ through cargo-afl, which
# builds on stable (coverage from `-C passes=sancov-module`, no -Z flags);
# cargo-afl and its AFL++ are installed if missing. Both are coverage-guided
# and keep their corpus in fuzz/corpus/TARGET (seeded from
# platform/testdata for dtb); crashes land in fuzz/artifacts/TARGET
# (libfuzzer) or fuzz/afl/TARGET/default/crashes (afl). Reproduce one with
# `cargo run --release --no-default-features --bin replay -- TARGET FILE`.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-600}
if (($#)); then
    targets=("$@")
else
    targets=()
    for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

driver=${FUZZ_DRIVER:-}
if [[ -z "$driver" ]]; then
    if rustup toolchain list | grep -q '^nightly'; then driver=libfuzzer; else driver=afl; fi
fi

seed() {
    local t=$1
    mkdir -p "corpus/$t"
    # AFL++ refuses an empty input directory; one input of zeros is the
    # plainest case of every target.
    [[ -n "$(ls -A "corpus/$t")" ]] || head -c 64 /dev/zero > "corpus/$t/zeros"
    if [[ $t == dtb ]]; then
        cp -n ../platform/testdata/*.dtb "corpus/$t/"
    fi
}

summary=()
case $driver in
libfuzzer)
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
        echo "fuzz: installing cargo-fuzz (cargo install)"
        cargo install cargo-fuzz --locked
    fi
    for t in "${targets[@]}"; do
        seed "$t"
        echo "fuzz: $t for ${seconds} s (libFuzzer, cargo +nightly fuzz)"
        log="corpus/$t.log"
        if ! cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" \
            -print_final_stats=1 2>&1 | tee "$log"; then
            echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t (see $log)" >&2
            exit 1
        fi
        summary+=("$t: $(sed -n 's/^stat::number_of_executed_units: *//p' "$log") executions in ${seconds} s, no crash")
    done
    ;;
afl)
    if ! cargo afl --version >/dev/null 2>&1; then
        echo "fuzz: installing cargo-afl (cargo install)"
        cargo install cargo-afl --locked
    fi
    # AFL++ is built once per rustc version; asked again, cargo-afl fails
    # with "already built", which is fine.
    if ! config=$(cargo afl config --build 2>&1) && [[ "$config" != *"already built"* ]]; then
        echo "$config" >&2
        exit 1
    fi
    cargo afl build --release --no-default-features --features afl --bin afl --target-dir target/afl
    for t in "${targets[@]}"; do
        seed "$t"
        echo "fuzz: $t for ${seconds} s (AFL++, cargo afl on stable)"
        out="afl/$t"
        mkdir -p "$out"
        stats="$out/default/fuzzer_stats"
        # A resumed run's statistics include the earlier runs'.
        execs_before=$(sed -n 's/^execs_done *: *//p' "$stats" 2>/dev/null || true)
        # AFL_AUTORESUME continues a previous run's queue; the other two let
        # it run in a container that does not let it tune the kernel.
        AFL_NO_UI=1 AFL_AUTORESUME=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
            cargo afl fuzz -V "$seconds" -i "corpus/$t" -o "$out" -- target/afl/release/afl "$t" \
            > "$out.log" 2>&1 || { tail -30 "$out.log" >&2; exit 1; }
        crashes=$(sed -n 's/^saved_crashes *: *//p' "$stats")
        execs=$(($(sed -n 's/^execs_done *: *//p' "$stats") - ${execs_before:-0}))
        if [[ "$crashes" != 0 ]]; then
            echo "fuzz: $t FAILED: $crashes crash(es) in fuzz/$out/default/crashes" >&2
            exit 1
        fi
        summary+=("$t: $execs executions in ${seconds} s, no crash")
    done
    ;;
*)
    echo "fuzz: FUZZ_DRIVER must be libfuzzer or afl, not $driver" >&2
    exit 2
    ;;
esac
echo "fuzz: $driver, ${#targets[@]} target(s):"
printf '  %s\n' "${summary[@]}"
