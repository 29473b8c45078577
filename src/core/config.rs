//! The core's configuration, validated up front.

use super::types::{ClusterId, NodeId};
use std::fmt;

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// Every member, this node included.
    pub members: Vec<NodeId>,
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    SelfNotMember,
    DuplicateMember(NodeId),
    TooManyMembers(usize),
    ElectionTimeoutRange { min: u64, max: u64 },
    HeartbeatNotBelowElectionTimeout { heartbeat: u64, election_min: u64 },
    ZeroClusterId,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::SelfNotMember => write!(f, "this node is not in the member list"),
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
        if !self.members.contains(&self.id) {
            return Err(ConfigError::SelfNotMember);
        }
        if self.members.len() > crate::constants::CLUSTER_SIZE_MAX {
            return Err(ConfigError::TooManyMembers(self.members.len()));
        }
        let mut sorted = self.members.clone();
        sorted.sort();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::DuplicateMember(pair[0]));
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
        Ok(())
    }

    pub fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }

    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.members
            .iter()
            .copied()
            .filter(move |&id| id != self.id)
    }
}
