//! The core's configuration, validated up front.

use super::membership::{Configuration, ConfigurationError};
use super::types::{ClusterId, LogIndex, NodeId};
use crate::constants::{
    APPEND_BATCH_ENTRIES_MAX, APPEND_BATCH_SIZE_MAX, APPLY_BATCH_ENTRIES_MAX, INFLIGHT_APPENDS_MAX,
    INFLIGHT_BYTES_MAX, INFLIGHT_SNAPSHOT_CHUNKS_MAX, READS_PENDING_MAX, SNAPSHOT_CHUNK_SIZE_MAX,
};
use std::fmt;

/// The configuration a node starts under, until its log or snapshot holds
/// one (a stored configuration always wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartConfiguration {
    /// From `--peers`, numbered as before configurations existed. It counts
    /// as committed (at index 0): a new cluster elects its first leader
    /// under it, and that leader writes it into the Bootstrap entry.
    Bootstrap(Configuration),
}

impl StartConfiguration {
    pub fn configuration(&self) -> &Configuration {
        match self {
            StartConfiguration::Bootstrap(configuration) => configuration,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// Every member, this node included, until the log says otherwise.
    pub start: StartConfiguration,
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    pub heartbeat_interval_ms: u64,
    /// Seeds the election-timeout randomness.
    pub seed: u64,
    /// The id this node writes into the Bootstrap entry if it becomes the
    /// first leader of a new cluster (its log is empty). The daemon draws
    /// it at random; it must not be 0.
    pub bootstrap_cluster_id: ClusterId,
    /// Ask for pre-votes before starting an election, so a node that was
    /// cut off cannot force a new term on a healthy cluster (§9.6).
    pub pre_vote: bool,
    /// A leader that hears from no majority for an election timeout steps
    /// down; followers that hear from a leader ignore vote requests (§6.2,
    /// §9.6 "leader stickiness").
    pub check_quorum: bool,
    /// Batch, window and queue bounds; `Limits::default()` everywhere but
    /// the simulator.
    pub limits: Limits,
}

/// The bounds the core works within. Each defaults to its constant in
/// `constants.rs`, which is also its ceiling: the wire decoder refuses an
/// AppendEntries of more than APPEND_BATCH_ENTRIES_MAX entries, frames and
/// storage records are sized for APPEND_BATCH_SIZE_MAX, and the others
/// bound memory. Smaller values change how much moves at once, never what
/// the protocol allows, which is why the simulator draws tiny ones.
///
/// Not here: ENTRY_DATA_SIZE_MAX and CLUSTER_SIZE_MAX, which the core also
/// reads, are part of the format every node must share (the decoder and
/// storage refuse a larger entry; `majority_index` sizes a stack array by
/// the cluster bound), not a knob of one node. PENDING_PROPOSALS_MAX bounds
/// the replica's table of waiting clients, not anything in the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries in one AppendEntries (APPEND_BATCH_ENTRIES_MAX).
    pub append_batch_entries_max: usize,
    /// Entry bytes (`Entry::size_bytes`) in one AppendEntries, past the
    /// first entry, which always goes (APPEND_BATCH_SIZE_MAX).
    pub append_batch_size_max: usize,
    /// AppendEntries in flight to one follower (INFLIGHT_APPENDS_MAX).
    pub inflight_appends_max: usize,
    /// Entry bytes in flight to one follower; the window always admits one
    /// batch, however large (INFLIGHT_BYTES_MAX).
    pub inflight_bytes_max: usize,
    /// Committed entries handed out in one Ready (APPLY_BATCH_ENTRIES_MAX).
    /// It need not cover an append batch as the defaults do: a smaller one
    /// only takes more Ready passes.
    pub apply_batch_entries_max: usize,
    /// ReadIndex reads waiting on one leader; beyond it a read is refused
    /// as Busy (READS_PENDING_MAX).
    pub reads_pending_max: usize,
    /// Snapshot bytes in one InstallSnapshot (SNAPSHOT_CHUNK_SIZE_MAX).
    pub snapshot_chunk_size_max: usize,
    /// InstallSnapshot chunks in flight to one follower
    /// (INFLIGHT_SNAPSHOT_CHUNKS_MAX).
    pub inflight_snapshot_chunks_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            append_batch_entries_max: APPEND_BATCH_ENTRIES_MAX,
            append_batch_size_max: APPEND_BATCH_SIZE_MAX,
            inflight_appends_max: INFLIGHT_APPENDS_MAX,
            inflight_bytes_max: INFLIGHT_BYTES_MAX,
            apply_batch_entries_max: APPLY_BATCH_ENTRIES_MAX,
            reads_pending_max: READS_PENDING_MAX,
            snapshot_chunk_size_max: SNAPSHOT_CHUNK_SIZE_MAX,
            inflight_snapshot_chunks_max: INFLIGHT_SNAPSHOT_CHUNKS_MAX,
        }
    }
}

impl Limits {
    /// One early return per limit: each must be 1..=its constant.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_limit(
            "append_batch_entries_max",
            self.append_batch_entries_max,
            APPEND_BATCH_ENTRIES_MAX,
        )?;
        check_limit(
            "append_batch_size_max",
            self.append_batch_size_max,
            APPEND_BATCH_SIZE_MAX,
        )?;
        check_limit(
            "inflight_appends_max",
            self.inflight_appends_max,
            INFLIGHT_APPENDS_MAX,
        )?;
        check_limit(
            "inflight_bytes_max",
            self.inflight_bytes_max,
            INFLIGHT_BYTES_MAX,
        )?;
        check_limit(
            "apply_batch_entries_max",
            self.apply_batch_entries_max,
            APPLY_BATCH_ENTRIES_MAX,
        )?;
        check_limit(
            "reads_pending_max",
            self.reads_pending_max,
            READS_PENDING_MAX,
        )?;
        check_limit(
            "snapshot_chunk_size_max",
            self.snapshot_chunk_size_max,
            SNAPSHOT_CHUNK_SIZE_MAX,
        )?;
        check_limit(
            "inflight_snapshot_chunks_max",
            self.inflight_snapshot_chunks_max,
            INFLIGHT_SNAPSHOT_CHUNKS_MAX,
        )
    }
}

/// A limit of 0 would stall the core (no batch, no window); one above its
/// ceiling could exceed what the wire and storage accept.
fn check_limit(name: &'static str, value: usize, max: usize) -> Result<(), ConfigError> {
    if value == 0 || value > max {
        return Err(ConfigError::LimitOutOfRange { name, value, max });
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    SelfNotMember,
    DuplicateMember(NodeId),
    TooManyMembers(usize),
    ElectionTimeoutRange {
        min: u64,
        max: u64,
    },
    HeartbeatNotBelowElectionTimeout {
        heartbeat: u64,
        election_min: u64,
    },
    ZeroClusterId,
    /// The restored snapshot names another cluster than the hard state
    /// the node is bound to: the data dir mixes two clusters' files.
    SnapshotOfAnotherCluster {
        bound: ClusterId,
        snapshot: ClusterId,
    },
    /// A `Limits` field outside 1..=max (`name` is the field's).
    LimitOutOfRange {
        name: &'static str,
        value: usize,
        max: usize,
    },
    /// The start configuration would not survive its own encoding.
    StartConfiguration(ConfigurationError),
    /// A configuration in the stored log does not decode.
    StoredConfiguration {
        index: LogIndex,
        problem: ConfigurationError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::SelfNotMember => {
                write!(f, "this node is not a voter of its start configuration")
            }
            ConfigError::StartConfiguration(problem) => {
                write!(f, "bad start configuration: {problem}")
            }
            ConfigError::StoredConfiguration { index, problem } => {
                write!(f, "the log entry at index {index} holds a bad {problem}")
            }
            ConfigError::DuplicateMember(id) => write!(f, "member {id} appears twice"),
            ConfigError::TooManyMembers(count) => write!(
                f,
                "{count} members; at most {} are supported",
                crate::constants::CLUSTER_SIZE_MAX
            ),
            ConfigError::ZeroClusterId => write!(f, "the bootstrap cluster id must not be 0"),
            ConfigError::ElectionTimeoutRange { min, max } => write!(
                f,
                "election timeout range {min}-{max} ms: need 0 < min <= max"
            ),
            ConfigError::HeartbeatNotBelowElectionTimeout {
                heartbeat,
                election_min,
            } => write!(
                f,
                "heartbeat {heartbeat} ms must be positive and below the minimum election timeout {election_min} ms"
            ),
            ConfigError::SnapshotOfAnotherCluster { bound, snapshot } => write!(
                f,
                "the snapshot belongs to cluster {snapshot}, the hard state to cluster {bound}"
            ),
            ConfigError::LimitOutOfRange { name, value, max } => {
                write!(f, "{name} {value}: must be 1..={max}")
            }
        }
    }
}

/// CheckQuorum's window, in maximum election timeouts (1.2 s by default;
/// etcd's is 1 s). Followers on a shared virtual disk stall together in
/// fdatasync for up to 0.8 s, while the leader, whose own sync runs off its
/// loop, keeps counting: with one timeout, and then two, loaded runs saw
/// healthy leaders step down. The window only decides how soon a cut-off
/// leader gives up; reads never rely on it.
pub const CHECK_QUORUM_WINDOW_ELECTION_TIMEOUTS: u64 = 4;

impl Config {
    /// How long a leader may go without hearing from a majority before it
    /// steps down.
    pub fn check_quorum_window_ms(&self) -> u64 {
        CHECK_QUORUM_WINDOW_ELECTION_TIMEOUTS * self.election_timeout_ms_max
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let start = self.start.configuration();
        if start.members.len() > crate::constants::CLUSTER_SIZE_MAX {
            return Err(ConfigError::TooManyMembers(start.members.len()));
        }
        let mut ids: Vec<NodeId> = start.members.iter().map(|member| member.id).collect();
        ids.sort();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::DuplicateMember(pair[0]));
        }
        // Whatever the log or a peer could not read back is refused here.
        let decoded = Configuration::decode(&start.to_bytes());
        if decoded.as_ref() != Ok(start) {
            let problem = decoded.err().unwrap_or(ConfigurationError {
                field: "configuration",
                offset: 0,
                problem: "does not read back as written",
            });
            return Err(ConfigError::StartConfiguration(problem));
        }
        // A Bootstrap start is the cluster every member was told of: each
        // must be able to campaign in it.
        if !start.is_voter(self.id) {
            return Err(ConfigError::SelfNotMember);
        }
        if self.bootstrap_cluster_id.0 == 0 {
            return Err(ConfigError::ZeroClusterId);
        }
        let (min, max) = (self.election_timeout_ms_min, self.election_timeout_ms_max);
        if min == 0 || min > max {
            return Err(ConfigError::ElectionTimeoutRange { min, max });
        }
        let heartbeat = self.heartbeat_interval_ms;
        if heartbeat == 0 || heartbeat >= min {
            return Err(ConfigError::HeartbeatNotBelowElectionTimeout {
                heartbeat,
                election_min: min,
            });
        }
        self.limits.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            id: NodeId(0),
            start: StartConfiguration::Bootstrap(Configuration::numbered(3)),
            election_timeout_ms_min: 150,
            election_timeout_ms_max: 300,
            heartbeat_interval_ms: 50,
            seed: 1,
            bootstrap_cluster_id: ClusterId(7),
            pre_vote: true,
            check_quorum: true,
            limits: Limits::default(),
        }
    }

    /// `set` stores a value in the limit `name`, whose ceiling is `max`:
    /// 1 and `max` pass, 0 and `max + 1` are refused with that name.
    fn assert_limit_range(name: &'static str, max: usize, set: fn(&mut Limits, usize)) {
        for value in [1, max] {
            let mut config = valid();
            set(&mut config.limits, value);
            assert_eq!(config.validate(), Ok(()), "{name} {value}");
        }
        for value in [0, max + 1] {
            let mut config = valid();
            set(&mut config.limits, value);
            let refused = Err(ConfigError::LimitOutOfRange { name, value, max });
            assert_eq!(config.validate(), refused, "{name} {value}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn self_must_be_a_member() {
        let mut config = valid();
        config.id = NodeId(9);
        assert_eq!(config.validate(), Err(ConfigError::SelfNotMember));
    }

    fn start_mut(config: &mut Config) -> &mut Configuration {
        let StartConfiguration::Bootstrap(start) = &mut config.start;
        start
    }

    #[test]
    fn members_are_bounded_and_distinct() {
        let mut config = valid();
        let mut sixteen = Configuration::numbered(crate::constants::CLUSTER_SIZE_MAX);
        let mut extra = sixteen.members[0].clone();
        extra.id = NodeId(15);
        extra.name = "n15".to_string();
        sixteen.members.push(extra);
        *start_mut(&mut config) = sixteen;
        let count = crate::constants::CLUSTER_SIZE_MAX + 1;
        assert_eq!(config.validate(), Err(ConfigError::TooManyMembers(count)));
        let mut config = valid();
        start_mut(&mut config).members[2].id = NodeId(1);
        let refused = Err(ConfigError::DuplicateMember(NodeId(1)));
        assert_eq!(config.validate(), refused);
    }

    #[test]
    fn the_start_configuration_must_decode_and_hold_this_node_as_a_voter() {
        let mut config = valid();
        start_mut(&mut config).members[1].name = "n00".to_string();
        let problem = ConfigurationError {
            field: "member name",
            offset: 41,
            problem: "named twice",
        };
        let refused = Err(ConfigError::StartConfiguration(problem));
        assert_eq!(config.validate(), refused);
        let mut config = valid();
        start_mut(&mut config).members[0].kind = super::super::membership::MemberKind::Learner;
        assert_eq!(config.validate(), Err(ConfigError::SelfNotMember));
    }

    #[test]
    fn cluster_id_must_not_be_zero() {
        let mut config = valid();
        config.bootstrap_cluster_id = ClusterId(0);
        assert_eq!(config.validate(), Err(ConfigError::ZeroClusterId));
    }

    #[test]
    fn election_timeout_range_must_be_positive_and_ordered() {
        for (min, max) in [(0, 300), (301, 300)] {
            let mut config = valid();
            config.election_timeout_ms_min = min;
            config.election_timeout_ms_max = max;
            let refused = Err(ConfigError::ElectionTimeoutRange { min, max });
            assert_eq!(config.validate(), refused);
        }
    }

    #[test]
    fn heartbeat_must_be_positive_and_below_election_timeout() {
        for heartbeat in [0, 150] {
            let mut config = valid();
            config.heartbeat_interval_ms = heartbeat;
            let refused = Err(ConfigError::HeartbeatNotBelowElectionTimeout {
                heartbeat,
                election_min: 150,
            });
            assert_eq!(config.validate(), refused);
        }
    }

    #[test]
    fn append_batch_entries_max_is_one_to_its_constant() {
        assert_limit_range(
            "append_batch_entries_max",
            APPEND_BATCH_ENTRIES_MAX,
            |limits, value| limits.append_batch_entries_max = value,
        );
    }

    #[test]
    fn append_batch_size_max_is_one_to_its_constant() {
        assert_limit_range(
            "append_batch_size_max",
            APPEND_BATCH_SIZE_MAX,
            |limits, value| limits.append_batch_size_max = value,
        );
    }

    #[test]
    fn inflight_appends_max_is_one_to_its_constant() {
        assert_limit_range(
            "inflight_appends_max",
            INFLIGHT_APPENDS_MAX,
            |limits, value| limits.inflight_appends_max = value,
        );
    }

    #[test]
    fn inflight_bytes_max_is_one_to_its_constant() {
        assert_limit_range("inflight_bytes_max", INFLIGHT_BYTES_MAX, |limits, value| {
            limits.inflight_bytes_max = value
        });
    }

    #[test]
    fn apply_batch_entries_max_is_one_to_its_constant() {
        assert_limit_range(
            "apply_batch_entries_max",
            APPLY_BATCH_ENTRIES_MAX,
            |limits, value| limits.apply_batch_entries_max = value,
        );
    }

    #[test]
    fn reads_pending_max_is_one_to_its_constant() {
        assert_limit_range("reads_pending_max", READS_PENDING_MAX, |limits, value| {
            limits.reads_pending_max = value
        });
    }

    #[test]
    fn snapshot_chunk_size_max_is_one_to_its_constant() {
        assert_limit_range(
            "snapshot_chunk_size_max",
            SNAPSHOT_CHUNK_SIZE_MAX,
            |limits, value| limits.snapshot_chunk_size_max = value,
        );
    }

    #[test]
    fn inflight_snapshot_chunks_max_is_one_to_its_constant() {
        assert_limit_range(
            "inflight_snapshot_chunks_max",
            INFLIGHT_SNAPSHOT_CHUNKS_MAX,
            |limits, value| limits.inflight_snapshot_chunks_max = value,
        );
    }

    #[test]
    fn limit_errors_name_the_field_and_its_range() {
        let mut config = valid();
        config.limits.append_batch_entries_max = 0;
        let message = config.validate().map_err(|error| error.to_string());
        let expected = "append_batch_entries_max 0: must be 1..=4096";
        assert_eq!(message, Err(expected.to_string()));
    }
}
