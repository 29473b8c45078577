#!/usr/bin/env bash
# Crash or pause one node of the local cluster, as the lab's experiments do.
#
#   tools/kill_node.sh ID [SIGNAL]
#
# SIGNAL is KILL (the default: no chance to clean up), TERM, STOP and CONT
# (pause and resume), INT or HUP, with or without SIG, in any case. The node
# is found by its pid file, run/data/<ID>/raftlite.pid ($RAFTLITE_RUN_DIR
# replaces run/), and the pid must be that node's raftlite (tools/lib/node.sh)
# before anything is sent: a node with the same id in another cluster on
# this machine is never touched.
#
# Exit codes: 0 signal sent, 1 the node is not running (or there is no such
# node), 2 usage error (bad id or signal name).
set -euo pipefail

TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/lib/node.sh
source "$TOOLS/lib/node.sh"
RUN=$(node_run_dir)
cd "$TOOLS/.."

SIGNALS=(KILL TERM STOP CONT INT HUP)

usage() { # MESSAGE
  echo "kill_node: $1" >&2
  echo "usage: tools/kill_node.sh ID [$(IFS='|'; echo "${SIGNALS[*]}")]" >&2
  exit 2
}

signal_name() { # NAME -> KILL, TERM, ... if NAME is on the list
  local name=${1^^} known
  name=${name#SIG}
  for known in "${SIGNALS[@]}"; do
    if [[ $name == "$known" ]]; then
      echo "$known"
      return 0
    fi
  done
  return 1
}

(($# >= 1 && $# <= 2)) || usage "expected a node id and at most one signal"
id=$1
node_valid_id "$id" || usage "bad node id \"$id\": 1 to 64 letters, digits, '_', '-' or '.'"
signal=$(signal_name "${2:-KILL}") || usage "unknown signal \"$2\""

if ! node_lookup "$id"; then
  echo "kill_node: node $id is not running ($NODE_PROBLEM)" >&2
  exit 1
fi
if ! kill -s "$signal" "$NODE_PID" 2>/dev/null; then
  echo "kill_node: node $id (pid $NODE_PID) exited before SIG$signal reached it" >&2
  exit 1
fi
echo "sent SIG$signal to node $id (pid $NODE_PID)"
