//! raftlite: one node of a Raft cluster serving a replicated key-value store.

use raftlite::core::{Config, NodeId, Raft};
use raftlite::log;
use raftlite::replica::{Member, Replica};
use raftlite::runtime::clock::Clock;
use raftlite::runtime::logging;
use raftlite::runtime::options::{self, Options, Parsed};
use raftlite::runtime::server::{Server, ServerParts};
use raftlite::storage::{DiskOptions, DiskStorage, Recovered};
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
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            log!(Error, "{message}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Members sorted by id: every node derives the same NodeId for each name.
fn members(options: &Options) -> Vec<(String, String)> {
    let mut members: Vec<(String, String)> = options
        .peers
        .iter()
        .map(|peer| (peer.id.clone(), format!("{}:{}", peer.host, peer.port)))
        .collect();
    members.push((
        options.id.clone(),
        format!("{}:{}", options.host, options.port),
    ));
    members.sort();
    members
}

/// FNV-1a over the sorted ids: peers with different member lists refuse
/// each other instead of misnumbering nodes.
fn cluster_hash(members: &[(String, String)]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, _) in members {
        for byte in name.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |duration| duration.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn open_storage(options: &Options) -> Result<(DiskStorage, Recovered), String> {
    let started = std::time::Instant::now();
    let disk_options = DiskOptions {
        fsync: options.fsync,
        ..DiskOptions::default()
    };
    let (storage, recovered, report) =
        DiskStorage::open(&options.data_dir, disk_options).map_err(|error| error.to_string())?;
    let elapsed_ms = started.elapsed().as_millis();
    let last = recovered
        .entries
        .last()
        .map_or((0, 0), |entry| (entry.index.0, entry.term.0));
    if report.torn_tail.is_some() || report.hard_state_slot_torn.is_some() {
        log!(Warn, "Repaired a crash's traces: {report}");
    }
    log!(
        Info,
        "Recovered {} entries (last index {}, term {}; current term {}) in {elapsed_ms} ms",
        recovered.entries.len(),
        last.0,
        last.1,
        recovered.hard_state.current_term
    );
    if !options.fsync {
        log!(Warn, "--fsync never: acknowledged writes can be lost if this machine crashes; for experiments only");
    }
    Ok((storage, recovered))
}

fn run(options: &Options) -> Result<(), String> {
    let members = members(options);
    let self_index = members
        .iter()
        .position(|(name, _)| *name == options.id)
        .ok_or("this node is missing from its own member list")?;
    std::fs::create_dir_all(&options.data_dir).map_err(|error| {
        format!(
            "cannot create data dir {}: {error}",
            options.data_dir.display()
        )
    })?;
    // Storage takes the data dir's lock first, so a second daemon on the
    // same dir fails before it touches anything, the pid file included.
    let (storage, recovered) = open_storage(options)?;
    let pid_path = options.data_dir.join("raftlite.pid");
    std::fs::write(&pid_path, format!("{}\n", std::process::id()))
        .map_err(|error| format!("cannot write {}: {error}", pid_path.display()))?;

    let mut addresses = Vec::new();
    for (name, address) in &members {
        let (host, port) = address.rsplit_once(':').ok_or("address without port")?;
        let port: u16 = port.parse().map_err(|_| format!("bad port in {address}"))?;
        let resolved =
            options::resolve(host, port).map_err(|error| format!("member {name}: {error}"))?;
        addresses.push((name.clone(), resolved));
    }
    let bind_address = addresses[self_index].1;
    let listener = mio::net::TcpListener::bind(bind_address)
        .map_err(|error| format!("cannot listen on {bind_address}: {error}"))?;

    let clock = Clock::new();
    let config = Config {
        id: NodeId(self_index as u32),
        members: (0..members.len() as u32).map(NodeId).collect(),
        election_timeout_ms_min: options.election_timeout_ms_min,
        election_timeout_ms_max: options.election_timeout_ms_max,
        heartbeat_interval_ms: options.heartbeat_interval_ms,
        seed: seed(),
        pre_vote: true,
        check_quorum: true,
    };
    let raft = Raft::new(
        config,
        recovered.hard_state,
        recovered.entries,
        clock.now_ms(),
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
    let replica_members = members
        .iter()
        .map(|(name, address)| Member {
            name: name.clone(),
            address: address.clone(),
        })
        .collect();
    let replica = Replica::new(raft, replica_members);
    let peers: Vec<String> = members
        .iter()
        .filter(|(name, _)| *name != options.id)
        .map(|(name, address)| format!("{name}={address}"))
        .collect();
    log!(
        Info,
        "Starting on {bind_address} (peers {}; election timeout {}-{} ms, heartbeat {} ms, data {})",
        if peers.is_empty() { "none".to_string() } else { peers.join(", ") },
        options.election_timeout_ms_min,
        options.election_timeout_ms_max,
        options.heartbeat_interval_ms,
        options.data_dir.display()
    );
    let parts = ServerParts {
        listener,
        replica,
        storage,
        clock,
        cluster_hash: cluster_hash(&members),
        members: addresses,
    };
    let mut server = Server::new(parts).map_err(|error| error.to_string())?;
    server.run().map_err(|error| error.to_string())
}
