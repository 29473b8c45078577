#!/usr/bin/env bash
# Runs the simulator's sweep on a build with one bug planted.
#
#   tools/sim_planted.sh BUG [SEEDS]      (make sim-planted BUG=NAME SEEDS=N)
#
# BUG is a name from `sim --help` (src/core/planted.rs; the ones the sweep
# must find are the Makefile's SIM_PLANTED_BUGS). SEEDS defaults to
# 8192, the default sweep. The build lives in target/planted, apart from the
# real binaries.
#
# Exit codes are the simulator's: 1 it found the bug (the report, with the
# property the bug broke, is on stdout), 0 no seed failed (the bug was not
# found), 2 usage error.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ $# -lt 1 ] || [ $# -gt 2 ] || [ -z "$1" ]; then
  echo "usage: tools/sim_planted.sh BUG [SEEDS]" >&2
  exit 2
fi
bug=$1
seeds=${2:-8192}
CARGO_TARGET_DIR=target/planted cargo build --quiet --release --features planted-bugs --bin sim
exec target/planted/release/sim --seeds "$seeds" --plant-bug "$bug"
