#!/usr/bin/env bash
# Local cluster control for `make cluster|restart|transfer|status|stop`.
# Nodes A, B, C, ... listen on 127.0.0.1:8000, 8001, ... (BASE_PORT moves
# them); logs go to run/logs/<ID>.log and data to run/data/<ID> (kept across
# restarts); run/cmd/<ID> holds each node's command line. RAFTLITE_RUN_DIR
# replaces run/ and RAFTLITE_BIN_DIR target/release (the tests use both).
# Nodes are found by their pid files (tools/lib/node.sh).
#
#   tools/cluster.sh start [N] | restart ID | transfer ID | stop [ID] | status
set -euo pipefail

TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/lib/node.sh
source "$TOOLS/lib/node.sh"
RUN=$(node_run_dir)
cd "$TOOLS/.."
BIN=${RAFTLITE_BIN_DIR:-target/release}
BASE_PORT=${BASE_PORT:-8000}
IDS=(A B C D E F G H I J K L M N O)
# Bounds: a stopped node's exit (0.1 s polls), a started node's first answer.
STOP_WAIT_TENTHS=50
START_WAIT_SECONDS=5
USAGE="usage: tools/cluster.sh start [N] | restart ID | transfer ID | stop [ID] | status"
# A transfer ends within an election timeout (300 ms by default); the
# client's bound leaves room for a redirect and a slow machine.
TRANSFER_TIMEOUT_MS=2000

die() { echo "cluster: $*" >&2; exit 1; }
usage() { echo "cluster: $1" >&2; echo "$USAGE" >&2; exit 2; }

node_ids() { # the local cluster's nodes, one per line, from run/cmd
  local file
  for file in "$RUN"/cmd/*; do
    if [[ -f $file ]]; then echo "${file##*/}"; fi
  done
}

node_address() { # ID -> HOST:PORT, from its saved command line
  local words=() index host=127.0.0.1 port=''
  read -r -a words <"$RUN/cmd/$1" || true
  for ((index = 0; index < ${#words[@]}; index++)); do
    case ${words[index]} in
      --host) host=${words[index + 1]-} ;;
      --host=*) host=${words[index]#--host=} ;;
      --port) port=${words[index + 1]-} ;;
      --port=*) port=${words[index]#--port=} ;;
    esac
  done
  [[ -n $port ]] || die "no --port in $RUN/cmd/$1"
  echo "$host:$port"
}

check_node() { # ID: a node of the local cluster, or exit
  node_valid_id "$1" || usage "bad node id \"$1\": 1 to 64 letters, digits, '_', '-' or '.'"
  [[ -f $RUN/cmd/$1 ]] || die "no node $1 in $RUN/cmd (make cluster first)"
}

answers_status() { # ADDRESS: the node there answers STATUS
  "$BIN/submit" --leader "$1" --cmd STATUS --timeout 300 2>/dev/null | grep -q '^STATUS '
}

launch() { # ID: run the node's saved command line in the background
  local id=$1 command=() pid address code deadline=$((SECONDS + START_WAIT_SECONDS))
  if node_lookup "$id"; then
    echo "$id is already running (pid $NODE_PID)"
    return 0
  fi
  mkdir -p "$RUN/logs"
  read -r -a command <"$RUN/cmd/$id" || true
  nohup "${command[@]}" >>"$RUN/logs/$id.log" 2>&1 </dev/null &
  pid=$!
  address=$(node_address "$id")
  while ((SECONDS < deadline)); do
    if ! node_alive "$pid"; then
      code=0
      wait "$pid" || code=$?
      tail -n 3 "$RUN/logs/$id.log" >&2
      die "$id failed to start (exit code $code; see $RUN/logs/$id.log)"
    fi
    if answers_status "$address"; then
      echo "started $id (pid $pid): ${command[*]}"
      return 0
    fi
    sleep 0.1
  done
  echo "started $id (pid $pid): ${command[*]}"
  echo "cluster: $id does not answer on $address yet; see $RUN/logs/$id.log" >&2
}

addresses() { # all nodes' HOST:PORT, comma-separated
  local id list=()
  for id in $(node_ids); do list+=("$(node_address "$id")"); done
  (IFS=,; echo "${list[*]}")
}

wait_for_leader() {
  local deadline=$((SECONDS + 10)) id address
  while ((SECONDS < deadline)); do
    for id in $(node_ids); do
      address=$(node_address "$id")
      if "$BIN/submit" --leader "$address" --cmd STATUS --timeout 500 2>/dev/null |
        grep -q "role=leader"; then
        echo "leader: $id ($address)"
        return 0
      fi
    done
    sleep 0.1
  done
  die "no leader after 10 s; see $RUN/logs/"
}

# The local cluster's peer secret (docs/OPERATIONS.md, "Security"): 32
# random bytes as 64 hex digits, made once and kept with the data under
# run/, readable by its owner only.
make_secret() {
  local secret=$RUN/peer-secret
  [[ -s $secret ]] && return
  (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$secret" && echo >>"$secret")
}

start() { # N
  local count=$1 index id peers other existing peer_argument
  if [[ ! $count =~ ^[1-9][0-9]?$ ]] || ((count < 1 || count > ${#IDS[@]})); then
    die "N must be 1..${#IDS[@]}"
  fi
  [[ -x $BIN/raftlite ]] || die "build first: cargo build --release"
  existing=$(node_ids | wc -l)
  if ((existing > 0 && existing != count)); then
    die "$RUN/ holds a cluster of $existing nodes; 'make stop clean' first"
  fi
  mkdir -p "$RUN/cmd" "$RUN/data" "$RUN/logs"
  make_secret
  for ((index = 0; index < count; index++)); do
    id=${IDS[$index]}
    peers=()
    for ((other = 0; other < count; other++)); do
      ((other == index)) || peers+=("${IDS[$other]}:$((BASE_PORT + other))")
    done
    # One word per argument (launch splits the line on spaces), so a lone
    # node's empty peer list is written --peers= .
    if ((count > 1)); then
      peer_argument="--peers $(IFS=,; echo "${peers[*]}")"
    else
      peer_argument="--peers="
    fi
    echo "$BIN/raftlite --id $id --port $((BASE_PORT + index)) $peer_argument --data-dir $RUN/data/$id --peer-secret $RUN/peer-secret${RAFTLITE_ARGS:+ $RAFTLITE_ARGS}" \
      >"$RUN/cmd/$id"
    launch "$id"
  done
  wait_for_leader
  cat <<EOT

Cluster of $count on $(addresses)  (logs: $RUN/logs/<ID>.log)
Try:
  $BIN/submit --leader 127.0.0.1:$BASE_PORT --cmd "SET x=5"
  $BIN/submit --leader 127.0.0.1:$((BASE_PORT + 1)) --cmd "GET x"
  make status
  tools/kill_node.sh A          # crash a node (SIGKILL)
  make restart NODE=A           # same command line; it rejoins and catches up
  make stop                     # stop every node
EOT
}

# One line per node, starting with its id and address: the node's own STATUS
# reply, "no answer within 1 s" (paused or stuck) or "down" (no process).
status() {
  [[ -d $RUN/cmd ]] || die "no cluster in $RUN/ (make cluster)"
  local id address reply
  for id in $(node_ids); do
    address=$(node_address "$id")
    if ! node_lookup "$id"; then
      echo "$id $address down"
      continue
    fi
    reply=$("$BIN/submit" --leader "$address" --cmd STATUS --timeout 1000 2>/dev/null) || true
    case $reply in
      "STATUS "*) echo "$id $address $reply" ;;
      "ERR TIMEOUT"* | "ERR UNAVAILABLE "*"no reply within"*)
        echo "$id $address no answer within 1 s (paused? see $RUN/logs/$id.log)" ;;
      *) echo "$id $address ${reply:-no reply} (see $RUN/logs/$id.log)" ;;
    esac
  done
}

# PID: SIGTERM, then SIGCONT so that a paused node acts on it.
send_stop() {
  kill -TERM "$1" 2>/dev/null || true
  kill -CONT "$1" 2>/dev/null || true
}

# ID PID...: wait (bounded) for each node's process to exit, SIGKILL those
# that do not; one line per node.
wait_stopped() {
  local ids=() pids=() index tenths left
  while (($# > 0)); do
    ids+=("$1")
    pids+=("$2")
    shift 2
  done
  for ((tenths = 0; tenths < STOP_WAIT_TENTHS; tenths++)); do
    left=0
    for index in "${!pids[@]}"; do
      if node_is "${pids[index]}" "${ids[index]}"; then left=$((left + 1)); fi
    done
    ((left > 0)) || break
    sleep 0.1
  done
  for index in "${!pids[@]}"; do
    if node_is "${pids[index]}" "${ids[index]}"; then
      kill -KILL "${pids[index]}" 2>/dev/null || true
      echo "${ids[index]} (pid ${pids[index]}) did not exit within $((STOP_WAIT_TENTHS / 10)) s of SIGTERM: sent SIGKILL" >&2
    else
      echo "stopped ${ids[index]} (pid ${pids[index]})"
    fi
  done
}

stop() { # [ID]: one node, or every node
  local id targets=()
  if (($# == 0)); then
    [[ -d $RUN/cmd ]] || { echo "no cluster in $RUN/"; return; }
    for id in $(node_ids); do targets+=("$id"); done
  else
    targets=("$1")
  fi
  local waiting=()
  for id in "${targets[@]}"; do
    if node_lookup "$id"; then
      send_stop "$NODE_PID"
      waiting+=("$id" "$NODE_PID")
    else
      echo "$id was not running"
    fi
  done
  ((${#waiting[@]} == 0)) || wait_stopped "${waiting[@]}"
}

status_of() { # ADDRESS: the node's STATUS line, or nothing
  "$BIN/submit" --leader "$1" --cmd STATUS --timeout 500 2>/dev/null || true
}

# ID: asks the cluster to hand leadership to ID (TRANSFER); prints the reply
# and fails on anything but OK.
transfer() {
  local reply code=0
  reply=$("$BIN/submit" --cluster "$(addresses)" --cmd "TRANSFER $1" \
    --timeout "$TRANSFER_TIMEOUT_MS" 2>&1) || code=$?
  echo "$reply"
  ((code == 0)) || exit 1
}

# ID: if it leads, hands leadership to a live follower first, so that a
# planned restart costs no election timeout. A failed transfer does not stop
# the restart (the old leader resumes, and the restart elects a new one).
transfer_away() {
  local id=$1 address other target='' others=0 reply
  address=$(node_address "$id")
  [[ $(status_of "$address") == "STATUS "*" role=leader "* ]] || return 0
  for other in $(node_ids); do
    [[ $other != "$id" ]] || continue
    others=$((others + 1))
    node_lookup "$other" || continue
    if [[ $(status_of "$(node_address "$other")") == "STATUS "*" role=follower "* ]]; then
      target=$other
      break
    fi
  done
  ((others > 0)) || return 0 # a cluster of one: nobody to hand over to
  if [[ -z $target ]]; then
    echo "transfer failed: no live follower; restarting anyway"
    return 0
  fi
  reply=$("$BIN/submit" --leader "$address" --cmd "TRANSFER $target" \
    --timeout "$TRANSFER_TIMEOUT_MS" 2>&1) || true
  if [[ $reply =~ ^OK\ leader=([^ ]+)\ term=([0-9]+)$ ]]; then
    echo "transferred leadership to ${BASH_REMATCH[1]} (term ${BASH_REMATCH[2]})"
  else
    echo "transfer failed: ${reply:-no reply}; restarting anyway"
  fi
}

restart() { # ID: hand over leadership, stop it if it runs, start its saved command line
  if node_lookup "$1"; then
    transfer_away "$1"
    stop "$1"
  fi
  launch "$1"
}

case ${1:-} in
  start) (($# <= 2)) || usage "start takes at most N"; start "${2:-3}" ;;
  restart)
    (($# == 2)) || usage "restart takes one node id"
    check_node "$2"
    restart "$2"
    ;;
  transfer)
    (($# == 2)) || usage "transfer takes one node id"
    check_node "$2"
    transfer "$2"
    ;;
  status) (($# == 1)) || usage "status takes no argument"; status ;;
  stop)
    (($# <= 2)) || usage "stop takes at most one node id"
    if [[ -n ${2:-} ]]; then
      check_node "$2"
      stop "$2"
    else
      stop
    fi
    ;;
  *) usage "unknown command \"${1:-}\"" ;;
esac
