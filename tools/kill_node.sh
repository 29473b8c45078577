#!/usr/bin/env bash
# Crash a node the way the lab does: SIGKILL, no chance to clean up.
# Usage: tools/kill_node.sh ID [SIGNAL]   (SIGNAL defaults to KILL; STOP/CONT pause)
set -u
id=${1:?usage: tools/kill_node.sh ID [SIGNAL]}
signal=${2:-KILL}
if pkill "-$signal" -f -- "--id $id( |$)"; then
  echo "sent SIG$signal to node $id"
else
  echo "no running node with --id $id" >&2
  exit 1
fi
