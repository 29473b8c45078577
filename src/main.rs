//! raftlite: one node of a Raft cluster serving a replicated key-value store.

use raftlite::constants::{CLIENT_CONNECTIONS_MAX, DESCRIPTORS_RESERVED, LISTEN_BACKLOG};
use raftlite::core::{
    ClusterId, Config, Configuration, Limits, NodeId, Raft, StartConfiguration, StoredSnapshot,
};
use raftlite::driver::SnapshotPolicy;
use raftlite::kv::StateMachine;
use raftlite::log;
use raftlite::replica::{Member, Replica};
use raftlite::runtime::clock::Clock;
use raftlite::runtime::handshake::LocalIdentity;
use raftlite::runtime::logging;
use raftlite::runtime::options::{self, Options, Parsed};
use raftlite::runtime::os;
use raftlite::runtime::peer_auth::{random_bytes, PeerSecret};
use raftlite::runtime::server::{Server, ServerParts};
use raftlite::storage::{DiskOptions, DiskStorage, NodeName, Recovered};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;

/// Usage errors exit 2; failures to start or run exit 1.
const EXIT_USAGE: u8 = 2;
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let options = match options::parse(&arguments) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("raftlite: {error}");
            eprintln!("Try 'raftlite --help' for the flags and their defaults.");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    logging::init(&options.id, options.log_level);
    let result = run(&options);
    let pid_path = options.data_dir.join("raftlite.pid");
    match result {
        Ok(()) => {
            remove_pid_file(&pid_path);
            ExitCode::SUCCESS
        }
        Err(Failure::BeforeStart(message)) => {
            log!(Error, "{message}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::Running(message)) => {
            log!(Error, "{message}");
            remove_pid_file(&pid_path);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Whether the node got as far as writing its pid file (then it removes
/// it on the way out; a refused start must not touch another's).
enum Failure {
    BeforeStart(String),
    Running(String),
}

fn remove_pid_file(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        log!(Warn, "cannot remove {}: {error}", path.display());
    }
}

fn run(options: &Options) -> Result<(), Failure> {
    // First, so that a SIGTERM at any point from here on is a clean stop
    // (it is noticed once the loop runs).
    let shutdown_socket = shutdown_signals().map_err(Failure::BeforeStart)?;
    let identity = identity(options).map_err(Failure::BeforeStart)?;
    let (storage, recovered) = open_storage(options).map_err(Failure::BeforeStart)?;
    let listener = listen(identity.address()).map_err(Failure::BeforeStart)?;
    // Storage holds the data dir's lock: only now is the pid file ours.
    let pid_path = options.data_dir.join("raftlite.pid");
    std::fs::write(&pid_path, format!("{}\n", std::process::id())).map_err(|error| {
        Failure::BeforeStart(format!("cannot write {}: {error}", pid_path.display()))
    })?;
    let parts = server_parts(
        options,
        identity,
        storage,
        recovered,
        listener,
        shutdown_socket,
    )
    .map_err(Failure::Running)?;
    let mut server = Server::new(parts).map_err(|error| Failure::Running(error.to_string()))?;
    server
        .run()
        .map_err(|error| Failure::Running(error.to_string()))
}

/// Every member's id and resolved address, sorted by id (so every node
/// numbers the members alike), and the peer secret.
fn identity(options: &Options) -> Result<LocalIdentity, String> {
    let mut members = vec![(options.id.clone(), options.host.clone(), options.port)];
    for peer in &options.peers {
        members.push((peer.id.clone(), peer.host.clone(), peer.port));
    }
    members.sort();
    let mut resolved = Vec::new();
    for (name, host, port) in members {
        let address =
            options::resolve(&host, port).map_err(|error| format!("member {name}: {error}"))?;
        resolved.push((name, address));
    }
    // The numbering is the bootstrap configuration's (sorted names, as
    // data dirs written before configurations hold it in their votes).
    let self_index = Configuration::bootstrap(resolved.clone())
        .by_name(&options.id)
        .ok_or("this node is missing from its own member list")?
        .id
        .0 as usize;
    assert_eq!(resolved[self_index].0, options.id, "numbered alike");
    let secret = match &options.peer_secret {
        Some(path) => Some(PeerSecret::load(path)?),
        None => None,
    };
    warn_about_the_secret(options, &resolved[self_index].1, secret.is_some());
    Ok(LocalIdentity {
        members: resolved,
        self_id: NodeId(self_index as u32),
        secret,
        #[cfg(feature = "planted-bugs")]
        admit_foreign_cluster: options.planted_bug
            == Some(raftlite::core::PlantedBug::AdmitForeignCluster),
    })
}

fn warn_about_the_secret(options: &Options, address: &SocketAddr, has_secret: bool) {
    if !has_secret && !address.ip().is_loopback() {
        log!(
            Warn,
            "listening on {address} without --peer-secret: any host that can reach this port can act as a peer and write into the cluster (docs/OPERATIONS.md, \"Security\")"
        );
    }
    #[cfg(unix)]
    if let Some(path) = &options.peer_secret {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_or(0, |meta| meta.permissions().mode());
        if mode & 0o077 != 0 {
            log!(
                Warn,
                "{} is readable by other users (mode {:o}): chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
}

fn open_storage(options: &Options) -> Result<(DiskStorage, Recovered), String> {
    let started = std::time::Instant::now();
    let node_name = NodeName::new(&options.id).ok_or("node id too long")?;
    let disk_options = DiskOptions {
        fsync: options.fsync,
        node_name,
        segment_size_max: options.log_segment_bytes,
        planted_bug: options.planted_bug,
    };
    std::fs::create_dir_all(&options.data_dir).map_err(|error| {
        format!(
            "cannot create data dir {}: {error}",
            options.data_dir.display()
        )
    })?;
    let (storage, recovered, report) =
        DiskStorage::open(&options.data_dir, disk_options).map_err(|error| error.to_string())?;
    if report.needs_attention() {
        log!(Warn, "Repaired a crash's traces: {report}");
    }
    let snapshot = recovered.snapshot.as_ref().map(|loaded| &loaded.file.meta);
    let last = recovered.entries.last().map_or_else(
        || snapshot.map_or((0, 0), |meta| (meta.index.0, meta.term.0)),
        |entry| (entry.index.0, entry.term.0),
    );
    let snapshot_text = snapshot.map_or(String::new(), |meta| {
        format!("snapshot at index {} and ", meta.index)
    });
    let cluster = recovered
        .hard_state
        .cluster_id
        .map_or("not known yet".to_string(), |id| id.to_string());
    log!(
        Info,
        "Recovered {snapshot_text}{} entries (last index {}, term {}; current term {}; cluster {cluster}) in {} ms",
        recovered.entries.len(),
        last.0,
        last.1,
        recovered.hard_state.current_term,
        started.elapsed().as_millis()
    );
    if !options.fsync {
        log!(Warn, "--fsync never: acknowledged writes can be lost if this machine crashes; for experiments only");
    }
    Ok((storage, recovered))
}

fn listen(address: SocketAddr) -> Result<mio::net::TcpListener, String> {
    let listener = mio::net::TcpListener::bind(address)
        .map_err(|error| format!("cannot listen on {address}: {error}"))?;
    if let Err(error) = os::set_listen_backlog(&listener, LISTEN_BACKLOG) {
        log!(
            Warn,
            "cannot raise the listen backlog to {LISTEN_BACKLOG}: {error}"
        );
    }
    Ok(listener)
}

/// As many client connections as the descriptor limit allows, up to the
/// constant.
fn client_slots() -> usize {
    let limit = os::raise_open_files_limit().unwrap_or(1024);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    // At least one slot, so that a node under a tiny limit still serves.
    let slots = limit.saturating_sub(DESCRIPTORS_RESERVED).max(1);
    if slots < CLIENT_CONNECTIONS_MAX {
        log!(
            Warn,
            "the open-files limit ({limit}) allows only {slots} client connections, not {CLIENT_CONNECTIONS_MAX} (raise ulimit -n)"
        );
    }
    slots.min(CLIENT_CONNECTIONS_MAX)
}

fn server_parts(
    options: &Options,
    identity: LocalIdentity,
    storage: DiskStorage,
    recovered: Recovered,
    listener: mio::net::TcpListener,
    shutdown_socket: mio::net::UnixStream,
) -> Result<ServerParts<DiskStorage>, String> {
    let clock = Clock::new();
    let replica = replica(options, &identity, recovered, clock.now_ms())?;
    log_start(options, &identity);
    Ok(ServerParts {
        listener,
        shutdown_socket,
        replica,
        storage,
        clock,
        identity,
        nonce_seed: random_bytes()?,
        client_slots_max: client_slots(),
        snapshot_policy: SnapshotPolicy {
            entries: options.snapshot_entries,
            trailing: options.snapshot_trailing,
            ..SnapshotPolicy::default()
        },
    })
}

/// SIGTERM and SIGINT write to one end of a socket pair; the loop polls
/// the other (os.rs).
fn shutdown_signals() -> Result<mio::net::UnixStream, String> {
    let (signal_end, loop_end) = std::os::unix::net::UnixStream::pair()
        .map_err(|error| format!("cannot create the signal socket: {error}"))?;
    for end in [&signal_end, &loop_end] {
        end.set_nonblocking(true)
            .map_err(|error| format!("cannot set up the signal socket: {error}"))?;
    }
    os::on_shutdown_signals(signal_end.as_raw_fd());
    std::mem::forget(signal_end); // the handler writes to it until exit
    Ok(mio::net::UnixStream::from_std(loop_end))
}

fn replica(
    options: &Options,
    identity: &LocalIdentity,
    recovered: Recovered,
    now_ms: u64,
) -> Result<Replica, String> {
    // A cluster id 0 means "none": draw again in the 2^-64 case.
    let mut cluster_id = 0;
    while cluster_id == 0 {
        cluster_id = u64::from_be_bytes(random_bytes()?);
    }
    let config = Config {
        id: identity.self_id,
        start: StartConfiguration::Bootstrap(Configuration::bootstrap(identity.members.clone())),
        election_timeout_ms_min: options.election_timeout_ms_min,
        election_timeout_ms_max: options.election_timeout_ms_max,
        heartbeat_interval_ms: options.heartbeat_interval_ms,
        seed: u64::from_be_bytes(random_bytes()?),
        bootstrap_cluster_id: ClusterId(cluster_id),
        pre_vote: true,
        check_quorum: true,
        limits: Limits::default(),
    };
    let (snapshot, machine) = match recovered.snapshot {
        None => (None, StateMachine::default()),
        Some(loaded) => {
            let machine = StateMachine::restore(&loaded.body).map_err(|error| {
                format!(
                    "corrupt snapshot: {}: {error}; see docs/OPERATIONS.md",
                    loaded.file.path.display()
                )
            })?;
            let stored = StoredSnapshot {
                meta: loaded.file.meta,
                size_bytes: loaded.file.size_bytes,
            };
            (Some(stored), machine)
        }
    };
    let raft = Raft::restore(
        config,
        recovered.hard_state,
        snapshot,
        recovered.entries,
        now_ms,
    )
    .map_err(|error| format!("invalid configuration: {error}"))?;
    #[cfg(feature = "planted-bugs")]
    let raft = {
        let mut raft = raft;
        if let Some(bug) = options.planted_bug {
            log!(Warn, "TEST BUILD: running with planted bug {}", bug.name());
        }
        raft.plant_bug(options.planted_bug);
        raft
    };
    let members = identity
        .members
        .iter()
        .map(|(name, address)| Member {
            name: name.clone(),
            address: address.to_string(),
        })
        .collect();
    Ok(Replica::restored(raft, members, machine))
}

fn log_start(options: &Options, identity: &LocalIdentity) {
    let peers: Vec<String> = identity
        .members
        .iter()
        .filter(|(name, _)| *name != options.id)
        .map(|(name, address)| format!("{name}={address}"))
        .collect();
    log!(
        Info,
        "Starting on {} (pid {}; peers {}; election timeout {}-{} ms, heartbeat {} ms, data {}, peer secret {})",
        identity.address(),
        std::process::id(),
        if peers.is_empty() { "none".to_string() } else { peers.join(", ") },
        options.election_timeout_ms_min,
        options.election_timeout_ms_max,
        options.heartbeat_interval_ms,
        options.data_dir.display(),
        if identity.secret.is_some() { "on" } else { "off" }
    );
}
