#!/usr/bin/env bash
# The project's test command (README, CI): everything must pass, nothing is skipped.
#   1. install dependencies (scripts/setup.sh)
#   2. build/ (RelWithDebInfo): build everything, run every test — unit and integration (the
#      latter against a private containerd and registries started by tests/harness/harness.sh)
#   3. build-asan/ (ASan + UBSan): build, run the unit tests; the timed fuzz tests of the task
#      definition and ACS frame readers (*FuzzTest.TimedMutations*) run 30 s each there
#      (ECS_FUZZ_SECONDS; 2 s in other runs)
#   4. clang-format check of our C++ sources
# Every step runs even if an earlier one failed; the summary at the end says which failed.
# ECS_CI_JOBS (default 2) sets build parallelism; ECS_CI_BUILD_DIR / ECS_CI_ASAN_DIR rename the
# build directories. A test that reports itself skipped fails the run unless ECS_CI_ALLOW_SKIPS=1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
JOBS=${ECS_CI_JOBS:-2}
BUILD=${ECS_CI_BUILD_DIR:-build}
ASAN=${ECS_CI_ASAN_DIR:-build-asan}
LOGS=$ROOT/$BUILD-logs
# ccache: paths relative to the checkout, so a fresh clone elsewhere hits the same entries.
export CCACHE_BASEDIR=$ROOT CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
mkdir -p "$LOGS"

declare -a STEP_NAMES=() STEP_RESULTS=() STEP_TIMES=()
FAILED=0

# step NAME FUNCTION: runs FUNCTION, records its result and duration.
step() {
  local name=$1 fn=$2 start rc
  echo
  echo "=== ${name}"
  start=$(date +%s)
  set +e
  (set -e; "$fn")
  rc=$?
  set -e
  STEP_NAMES+=("$name")
  STEP_TIMES+=("$(($(date +%s) - start))s")
  if ((rc == 0)); then
    STEP_RESULTS+=(PASS)
  else
    STEP_RESULTS+=("FAIL (exit $rc)")
    FAILED=1
  fi
}

# run_ctest DIR ARGS...: ctest with output on failure; fails on skipped tests too.
run_ctest() {
  local dir=$1 log
  shift
  log=$LOGS/ctest-$(basename "$dir").log
  set +e
  ctest --test-dir "$dir" --output-on-failure --no-tests=error "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  ((rc == 0)) || return "$rc"
  if grep -qE '\*\*\*Skipped|Not Run' "$log" && [[ ${ECS_CI_ALLOW_SKIPS:-0} != 1 ]]; then
    echo "ERROR: tests were skipped (set ECS_CI_ALLOW_SKIPS=1 to allow):"
    grep -E '\*\*\*Skipped|Not Run' "$log"
    return 1
  fi
}

setup() { ./scripts/setup.sh; }

main_build() {
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build "$BUILD" -j "$JOBS"
}

main_tests() {
  # Integration tests are RUN_SERIAL; unit tests may share the two cores.
  run_ctest "$BUILD" -j "$JOBS"
}

asan_build() {
  cmake -S . -B "$ASAN" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DECS_SANITIZE=ON \
    -DECS_UNIT_TESTS_ONLY=ON -DECS_BUILD_BENCH=OFF
  cmake --build "$ASAN" -j "$JOBS"
}

asan_tests() {
  # Not under the sanitizers: the tests that use up every descriptor on purpose. UBSan's vptr
  # check opens a pipe to read the object it checks, finds none free, and reports a valid object
  # as broken. They run in the main build above.
  ECS_FUZZ_SECONDS=${ECS_FUZZ_SECONDS:-30} \
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    run_ctest "$ASAN" -j "$JOBS" -E 'AcceptOutOfDescriptors'
}

format_check() {
  local -a files
  mapfile -d '' files < <(
    find agent cgroups netns volumes cluster tests bench -type f \
      \( -name '*.h' -o -name '*.cpp' \) -print0 2>/dev/null
    find . -maxdepth 1 -type f \( -name '*.h' -o -name '*.cpp' \) -print0
  )
  echo "checking ${#files[@]} files"
  clang-format --dry-run --Werror "${files[@]}"
}

T0=$(date +%s)
step "setup: dependencies" setup
if [[ ${STEP_RESULTS[0]} != PASS ]]; then
  echo "setup failed; nothing else can run"
  exit 1
fi
step "build (RelWithDebInfo, $BUILD/)" main_build
if [[ ${STEP_RESULTS[-1]} == PASS ]]; then
  step "tests: unit + integration ($BUILD/)" main_tests
else
  STEP_NAMES+=("tests: unit + integration ($BUILD/)") STEP_RESULTS+=("NOT RUN (build failed)")
  STEP_TIMES+=(-) FAILED=1
fi
step "build (ASan+UBSan, $ASAN/)" asan_build
if [[ ${STEP_RESULTS[-1]} == PASS ]]; then
  step "tests: unit under sanitizers ($ASAN/)" asan_tests
else
  STEP_NAMES+=("tests: unit under sanitizers ($ASAN/)")
  STEP_RESULTS+=("NOT RUN (build failed)") STEP_TIMES+=(-) FAILED=1
fi
step "clang-format" format_check

echo
echo "=============================== summary ==============================="
for i in "${!STEP_NAMES[@]}"; do
  printf '  %-46s %-24s %s\n' "${STEP_NAMES[i]}" "${STEP_RESULTS[i]}" "${STEP_TIMES[i]}"
done
echo "  total $(($(date +%s) - T0))s; logs in $LOGS"
# One closing line over every ctest run (unit + integration, then the sanitizer unit run).
passed=0 failed=0
for log in "$LOGS"/ctest-*.log; do
  [[ -f $log ]] || continue
  line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1 || true)
  [[ -n $line ]] || continue
  f=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
  t=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
  passed=$((passed + t - f))
  failed=$((failed + f))
done
if ((FAILED)); then
  # Name what failed last, where a truncated console still shows it.
  for log in "$LOGS"/ctest-*.log; do
    [[ -f $log ]] || continue
    if grep -q 'The following tests FAILED:' "$log"; then
      echo "failed in $(basename "$log"):"
      sed -n '/The following tests FAILED:/,$p' "$log" | grep -E '^\s+[0-9]+ - ' | head -20
      # The first assertion messages of the failures, trimmed.
      grep -E '(Failure|error:|Expected|Which is|Value of|Actual)' "$log" | cut -c1-300 | head -24
    fi
  done
  echo "RESULT: FAILED"
  echo "tests: $passed passed, $failed failed"
  exit 1
fi
echo "RESULT: PASSED"
echo "tests: $passed passed, $failed failed"
