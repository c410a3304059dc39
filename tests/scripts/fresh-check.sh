#!/usr/bin/env bash
# `make fresh-check`: the README's two commands, exactly as the README
# writes them, in a fresh clone of this repository's HEAD in a temporary
# directory (nothing built, nothing cached), as a new user would run them.
#
#   make run    must reach the guest-stub's summary with 0 failed and exit 0
#   make test   must pass
#
# The commands are read from the README's first ```sh block after "## Two
# commands", so the check follows the README when it changes. What it
# cannot undo is what this machine already has installed: it says whether
# the option ROM a careless QEMU command needs is here (docs/testing.md,
# "The fresh path").
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
    echo "fresh-check: note: uncommitted changes are not part of the clone (it checks HEAD $(git rev-parse --short HEAD))"
fi
rom=$(find /usr/share/qemu /usr/lib/ipxe -name efi-virtio.rom 2>/dev/null | head -1 || true)
if [[ -n "$rom" ]]; then
    echo "fresh-check: note: $rom is installed, so a QEMU command that needs it would still pass here;"
    echo "fresh-check:       the unit test hvtests::qemu guards that, and 'apt-get remove ipxe-qemu' makes this run prove it"
else
    echo "fresh-check: no efi-virtio.rom on this machine (as after a minimal QEMU install)"
fi

# The README's commands: the lines of the first ```sh block after the
# "## Two commands" heading, without their comments.
mapfile -t commands < <(awk '
    /^## Two commands/ { section = 1; next }
    section && /^```sh/ { block = 1; next }
    block && /^```/ { exit }
    block { sub(/[ \t]*#.*/, ""); if (length($0)) print }
' README.md)
if [[ "${commands[*]:-}" != "make run make test" ]]; then
    echo "fresh-check: the README's two commands are not \`make run\` and \`make test\`: ${commands[*]:-none found}" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hv-fresh-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The logs outlive the clone.
logs="$repo/build/fresh-check"
mkdir -p "$logs"
git clone --quiet --no-local "$repo" "$work/clone"
cd "$work/clone"
echo "fresh-check: clone of $(git rev-parse --short HEAD) in $work/clone"

# `make run` is interactive (the console on stdin/stdout); with no input
# the guest-stub runs its checks and powers the board off.
echo "fresh-check: make run"
start=$SECONDS
if ! timeout 1800 make run </dev/null >"$logs/run.log" 2>&1; then
    tail -40 "$logs/run.log"
    echo "fresh-check: FAILED: make run (log above)" >&2
    exit 1
fi
summary=$(grep -a -E '^guest-stub: [0-9]+ passed, 0 failed' "$logs/run.log" || true)
if [[ -z "$summary" ]]; then
    tail -40 "$logs/run.log"
    echo "fresh-check: FAILED: make run did not reach a clean guest-stub summary" >&2
    exit 1
fi
echo "fresh-check: make run: ${summary#guest-stub: } ($((SECONDS - start)) s)"

echo "fresh-check: make test"
start=$SECONDS
if ! make test >"$logs/test.log" 2>&1; then
    grep -a -E "^(test |---- |thread )|FAILED|panicked" "$logs/test.log" | tail -40
    echo "fresh-check: FAILED: make test (the lines above; the whole log is $logs/test.log)" >&2
    exit 1
fi
echo "fresh-check: make test: passed ($((SECONDS - start)) s)"
echo "fresh-check: both README commands work from a fresh clone"
