#!/usr/bin/env bash
# `make soak`: the six -smp 4 scheme scenarios (VHE and split, both remap
# paths, max and Cortex-A72; each boots the guest-stub's whole self-test on
# four vCPUs), SOAK_RUNS times in a row, while a second `make test` loads
# the machine, and counts failures. A scenario that fails once in N is a
# bug; this is how the suite's claim of zero flakes is measured
# (docs/testing.md, "Load the suite survives").
#
#   SOAK_RUNS=30   runs of each scenario
#   SOAK_LOAD=1    1: a `make test` loop in a fresh clone of HEAD loads the
#                  machine meanwhile (as CI's own run would); 0: no load
#
# The failing runs' output is kept in build/soak/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
runs=${SOAK_RUNS:-30}
load=${SOAK_LOAD:-1}
scenarios=(
    scheme_max_auto_intermediate_smp4
    scheme_max_auto_fault_smp4
    scheme_a72_auto_intermediate_smp4
    scheme_a72_auto_fault_smp4
    scheme_max_nvhe_intermediate_smp4
    scheme_max_nvhe_fault_smp4
)
logs="$repo/build/soak"
rm -rf "$logs"
mkdir -p "$logs"

# Build once, so that the runs below only boot.
cargo test --quiet -p hvtests --test qemu --no-run

loader=""
work=""
cleanup() {
    if [[ -n "$loader" ]]; then
        kill -- "-$loader" 2>/dev/null || kill "$loader" 2>/dev/null || true
        wait "$loader" 2>/dev/null || true
    fi
    [[ -z "$work" ]] || rm -rf "$work"
}
trap cleanup EXIT
if [[ "$load" == 1 ]]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/hv-soak-load.XXXXXX")
    git clone --quiet --no-local "$repo" "$work/clone"
    # Its own process group, so that the whole make test stops with it.
    setsid bash -c "cd '$work/clone' && while :; do make test >'$logs/load.log' 2>&1 || true; done" &
    loader=$!
    echo "soak: a make test loop in $work/clone loads the machine (log: $logs/load.log)"
fi

failures=0
for run in $(seq 1 "$runs"); do
    for scenario in "${scenarios[@]}"; do
        out="$logs/$scenario-$run.log"
        if HV_FLASH="$repo/build/flash.bin" cargo test --quiet -p hvtests --test qemu -- --exact "$scenario" >"$out" 2>&1; then
            rm -f "$out"
        else
            failures=$((failures + 1))
            echo "soak: run $run: $scenario FAILED (log: $out)"
        fi
    done
    echo "soak: run $run of $runs done, $failures failure(s) so far"
done
total=$((runs * ${#scenarios[@]}))
echo "soak: $((total - failures)) passed, $failures failed"
[[ "$failures" == 0 ]]
