#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time on the corpus kept in the repo
# (fuzz/corpus/<target>/); targets linked with GLib then replay their corpus once more with
# full leak stacks. Exits 1 if any target crashed, panicked, leaked, timed out (10 s per input)
# or went over 2 GiB, after printing each reproducer's path and the command that replays it.
# See docs/robustness.md, "Fuzzing".
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Needs only stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags (sanitizer,
# coverage) to the stable compiler. Installs cargo-fuzz from crates.io when it is missing.
# Inputs a run adds to fuzz/corpus/<target>/ are named by their SHA-1 and git-ignored.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-60}"
shift || true
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# -a: debug assertions (integer overflow checks) on, as in the test profile.
echo "== fuzz build (${targets[*]})"
t0=$SECONDS
cargo fuzz build -a
echo "   built in $((SECONDS - t0)) s"

# While fuzzing, stacks are unwound the fast way (frame pointers), which stops inside
# libglib: a leak there cannot be told apart from GLib's own constructor buffer (see
# fuzz/lsan.supp). So targets linked with GLib run with GLib exempted (lsan-run.supp) and then
# replay their whole corpus once with full stacks and only the constructor exempted.
bin_dir="target/x86_64-unknown-linux-gnu/release"
links_glib() { readelf -d "$bin_dir/$1" 2>/dev/null | grep -q 'NEEDED.*libglib'; }

fail=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t.log"
  echo "== fuzz $t for ${secs} s"
  stamp=$(mktemp)
  glib=false
  lsan=""
  if links_glib "$t"; then
    glib=true
    lsan="suppressions=$PWD/lsan-run.supp"
  fi
  set +e
  LSAN_OPTIONS="$lsan" \
    cargo fuzz run -a "$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1
  rc=$?
  set -e
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" |
    awk '!seen[$0]++ { print "   " $0 }' || true
  if [ "$rc" -eq 0 ] && $glib; then
    # Every kept input again, with full stacks: catches leaks the fast unwinder hides.
    set +e
    ASAN_OPTIONS="fast_unwind_on_malloc=0" LSAN_OPTIONS="suppressions=$PWD/lsan.supp" \
      cargo fuzz run -a "$t" "corpus/$t" -- -runs=0 -timeout=10 >>"$log" 2>&1
    rc=$?
    set -e
    [ "$rc" -eq 0 ] && echo "   corpus replay with full leak stacks: clean ($(ls "corpus/$t" | wc -l) inputs)"
  fi
  if [ "$rc" -ne 0 ]; then
    fail=1
    echo "!! $t FAILED (exit $rc); log: fuzz/$log"
    grep -E 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|SUMMARY:' "$log" | head -5 | sed 's/^/   /' || true
    for a in $(find "artifacts/$t" -type f -newer "$stamp"); do
      echo "   reproducer: fuzz/$a"
      env=""
      $glib && env="LSAN_OPTIONS=suppressions=lsan-run.supp "
      echo "   replay:     (cd fuzz && ${env}RUSTC_BOOTSTRAP=1 cargo fuzz run -a $t $a)"
    done
  fi
  rm -f "$stamp"
done
exit "$fail"
