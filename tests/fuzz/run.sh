#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60) and reports executions and findings.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The seed corpus in
# tests/fuzz/corpus/<target> is read, never written: new inputs go to target/fuzz/corpus, and
# crashes to target/fuzz/artifacts/<target>/ (each one becomes a regression test).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(requirements document wheel archive wheel_name links shared)
fi
work=$(cd ../.. && pwd)/target/fuzz
for t in "${targets[@]}"; do
    cargo +nightly fuzz build -O "$t" >/dev/null 2>&1 || cargo +nightly fuzz build -O "$t"
done
status=0
printf '%-13s %12s %8s %s\n' target executions seconds findings
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    log="$work/$t.log"
    start=$(date +%s)
    if ! cargo +nightly fuzz run -O "$t" "$work/corpus/$t" "corpus/$t" -- \
        -max_total_time="$secs" -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
        status=1
    fi
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
    findings=$(find "$work/artifacts/$t" -type f | wc -l)
    # libFuzzer stops at the first finding: the time is how long it really ran.
    printf '%-13s %12s %8s %s\n' "$t" "${execs:-?}" "$(($(date +%s) - start))" "$findings"
    if ((findings > 0)); then
        status=1
        find "$work/artifacts/$t" -type f -printf '    %p\n'
    fi
done
exit $status
