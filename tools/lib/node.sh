# shellcheck shell=bash
# shellcheck disable=SC2034 # NODE_PID and NODE_PROBLEM are for the callers
# Which process is a node of the local cluster: one implementation, sourced
# by tools/cluster.sh and tools/kill_node.sh (not run on its own).
#
# A node's pid is in <run>/data/<ID>/raftlite.pid. A pid file can outlive its
# process (SIGKILL leaves it behind) and the kernel reuses pids, so a pid
# counts only if that process is alive and is this node: a raftlite whose
# --id is ID and whose --data-dir is this data dir. Nothing here matches
# patterns over all processes, so a node of another cluster on this machine
# with the same id is never taken for this one.

# The daemon's id rule (src/runtime/options.rs, check_node_id).
NODE_ID_PATTERN='^[A-Za-z0-9_.-]{1,64}$'

# The local cluster's directory: $RAFTLITE_RUN_DIR if set (a relative one is
# taken from the caller's directory, so call this before changing it), else
# run/ of the repository (relative: the scripts run from the repository root).
node_run_dir() {
  if [[ -z ${RAFTLITE_RUN_DIR:-} ]]; then
    echo run
  elif [[ $RAFTLITE_RUN_DIR == /* ]]; then
    echo "$RAFTLITE_RUN_DIR"
  else
    echo "$PWD/$RAFTLITE_RUN_DIR"
  fi
}

node_valid_id() { # ID
  [[ $1 =~ $NODE_ID_PATTERN ]]
}

node_alive() { # PID: the process exists and is not a zombie
  # The state letter after the command name in /proc/PID/stat. (An empty
  # cmdline is no sign of death: it is also what a process shows for a
  # moment in execve, which a loaded machine made this function see, and
  # `launch` then waited for a node that was running.)
  local stat state
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  state=${stat##*) }
  state=${state%% *}
  [[ -n $state && $state != Z ]]
}

# PID ID: is PID alive and the raftlite of $RUN/data/ID ($RUN: the caller's
# node_run_dir)? Reads the process's
# own arguments (/proc/PID/cmdline) and compares its data dir with ours by
# device and inode (-ef), resolving a relative one from the process's cwd.
node_is() {
  local pid=$1 id=$2 arguments=() index node_id='' data_dir=''
  mapfile -d '' -t arguments 2>/dev/null <"/proc/$pid/cmdline" || return 1
  ((${#arguments[@]} > 0)) || return 1
  [[ ${arguments[0]##*/} == raftlite ]] || return 1
  for ((index = 1; index < ${#arguments[@]}; index++)); do
    case ${arguments[index]} in
      --) break ;;
      --id)
        node_id=${arguments[index + 1]-}
        index=$((index + 1))
        ;;
      --id=*) node_id=${arguments[index]#--id=} ;;
      --data-dir)
        data_dir=${arguments[index + 1]-}
        index=$((index + 1))
        ;;
      --data-dir=*) data_dir=${arguments[index]#--data-dir=} ;;
    esac
  done
  [[ $node_id == "$id" ]] || return 1
  [[ -n $data_dir ]] || data_dir="data/$id" # the daemon's default
  [[ $data_dir == /* ]] || data_dir="/proc/$pid/cwd/$data_dir"
  [[ $data_dir -ef "$RUN/data/$id" ]]
}

# ID: 0 with NODE_PID set if that node of $RUN runs; otherwise 1 with
# NODE_PROBLEM saying why not, e.g. "no run/data/C/raftlite.pid".
node_lookup() {
  local id=$1 pid_file="$RUN/data/$1/raftlite.pid" pid=''
  NODE_PID='' NODE_PROBLEM=''
  if [[ ! -d $RUN/data/$id ]]; then
    NODE_PROBLEM="no $RUN/data/$id: no such node"
    return 1
  fi
  if [[ ! -f $pid_file ]]; then
    NODE_PROBLEM="no $pid_file"
    return 1
  fi
  pid=$(head -c 32 "$pid_file" 2>/dev/null | tr -d '[:space:]') || true
  if [[ ! $pid =~ ^[1-9][0-9]{0,9}$ ]]; then
    NODE_PROBLEM="$pid_file holds no pid"
    return 1
  fi
  if ! node_alive "$pid"; then
    NODE_PROBLEM="$pid_file names pid $pid, which has exited"
    return 1
  fi
  if ! node_is "$pid" "$id"; then
    NODE_PROBLEM="$pid_file names pid $pid, which is not $id's raftlite"
    return 1
  fi
  NODE_PID=$pid
}
