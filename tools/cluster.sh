#!/usr/bin/env bash
# Local cluster control for `make cluster|restart|status|stop`.
# Nodes A, B, C, ... listen on 127.0.0.1:8000, 8001, ...; logs go to
# run/logs/<ID>.log and data to run/data/<ID> (kept across restarts).
set -euo pipefail

cd "$(dirname "$0")/.."
RUN=run
BIN=target/release
BASE_PORT=${BASE_PORT:-8000}
IDS=(A B C D E F G H I J K L M N O)

die() { echo "cluster: $*" >&2; exit 1; }

node_port() { # ID -> port
  local index
  for index in "${!IDS[@]}"; do
    if [[ ${IDS[$index]} == "$1" ]]; then echo $((BASE_PORT + index)); return; fi
  done
  die "unknown node id $1"
}

node_pid() { # ID -> pid if that node runs
  local pid_file="$RUN/data/$1/raftlite.pid" pid
  [[ -f $pid_file ]] || return 1
  pid=$(cat "$pid_file")
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' </proc/"$pid"/cmdline | grep -Eq -- "--id $1( |$)" || return 1
  echo "$pid"
}

launch() { # ID: run the node's saved command line in the background
  local id=$1
  if pid=$(node_pid "$id"); then echo "$id is already running (pid $pid)"; return; fi
  mkdir -p "$RUN/logs"
  # shellcheck disable=SC2046
  nohup $(cat "$RUN/cmd/$id") >>"$RUN/logs/$id.log" 2>&1 </dev/null &
  local pid=$!
  sleep 0.1
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 3 "$RUN/logs/$id.log" >&2
    die "$id failed to start (see $RUN/logs/$id.log)"
  fi
  echo "started $id (pid $pid): $(cat "$RUN/cmd/$id")"
}

addresses() { # all nodes' HOST:PORT, comma-separated
  local id list=()
  for id in $(ls "$RUN/cmd"); do list+=("127.0.0.1:$(node_port "$id")"); done
  (IFS=,; echo "${list[*]}")
}

wait_for_leader() {
  local deadline=$((SECONDS + 10)) id
  while ((SECONDS < deadline)); do
    for id in $(ls "$RUN/cmd"); do
      if "$BIN/submit" --leader "127.0.0.1:$(node_port "$id")" --cmd STATUS --timeout 500 2>/dev/null |
        grep -q "role=leader"; then
        echo "leader: $id (127.0.0.1:$(node_port "$id"))"
        return 0
      fi
    done
    sleep 0.1
  done
  die "no leader after 10 s; see $RUN/logs/"
}

start() { # N
  local count=$1 index id peers other
  ((count >= 1 && count <= ${#IDS[@]})) || die "N must be 1..${#IDS[@]}"
  [[ -x $BIN/raftlite ]] || die "build first: cargo build --release"
  if [[ -d $RUN/cmd && $(ls "$RUN/cmd" | wc -l) -ne $count ]]; then
    die "run/ holds a cluster of $(ls "$RUN/cmd" | wc -l) nodes; 'make stop clean' first"
  fi
  mkdir -p "$RUN/cmd" "$RUN/data" "$RUN/logs"
  for ((index = 0; index < count; index++)); do
    id=${IDS[$index]}
    peers=()
    for ((other = 0; other < count; other++)); do
      ((other == index)) || peers+=("${IDS[$other]}:$((BASE_PORT + other))")
    done
    echo "$BIN/raftlite --id $id --port $((BASE_PORT + index)) --peers $(IFS=,; echo "${peers[*]}") --data-dir $RUN/data/$id" \
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

status() {
  [[ -d $RUN/cmd ]] || die "no cluster in $RUN/ (make cluster)"
  local id
  for id in $(ls "$RUN/cmd"); do
    if node_pid "$id" >/dev/null; then
      "$BIN/submit" --leader "127.0.0.1:$(node_port "$id")" --cmd STATUS --timeout 1000 || true
    else
      echo "STATUS id=$id down"
    fi
  done
}

stop() {
  [[ -d $RUN/cmd ]] || { echo "no cluster in $RUN/"; return; }
  local id pid
  for id in $(ls "$RUN/cmd"); do
    if pid=$(node_pid "$id"); then kill "$pid" && echo "stopped $id (pid $pid)"; fi
  done
}

case ${1:-} in
  start) start "${2:-3}" ;;
  restart)
    [[ -n ${2:-} ]] || die "usage: $0 restart ID"
    [[ -f $RUN/cmd/$2 ]] || die "no node $2 in $RUN/cmd (make cluster first)"
    launch "$2"
    ;;
  status) status ;;
  stop) stop ;;
  *) die "usage: $0 start [N] | restart ID | status | stop" ;;
esac
