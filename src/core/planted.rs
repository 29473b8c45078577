//! Known Raft bugs that a test build can plant, one at a time, to show the
//! simulator finds them (feature `planted-bugs`; absent from real builds).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Commit an entry of an earlier term by counting replicas (Figure 8).
    CommitOldTermByCount,
    /// Grant a vote to a second candidate in the same term.
    SecondVoteInTerm,
    /// Answer a vote request before the vote is durable.
    VoteBeforePersist,
    /// On an AppendEntries whose prev entry matches, cut everything after it
    /// even when the entries sent are already there (e.g. a heartbeat).
    TruncateOnMatchingAppend,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 4] = [
        PlantedBug::CommitOldTermByCount,
        PlantedBug::SecondVoteInTerm,
        PlantedBug::VoteBeforePersist,
        PlantedBug::TruncateOnMatchingAppend,
    ];
}
