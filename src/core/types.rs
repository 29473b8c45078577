//! Vocabulary of the protocol: terms, indexes, node ids, log entries.

use std::fmt;
use std::sync::Arc;

/// A Raft term. Terms only ever grow on a node (Raft §5.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

/// Position of an entry in the log. The first entry has index 1; index 0 is the
/// empty prefix, whose term is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogIndex(pub u64);

/// A member of the cluster. The runtime maps the user's string ids onto these
/// (by sorted order of the member list, identical on every node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u32);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl LogIndex {
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one; the index before 0 is 0.
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

/// The identity of one cluster, chosen once by its first leader and carried
/// by every log that belongs to it (see `EntryKind::Bootstrap`). Never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u64);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl ClusterId {
    /// The id a `Bootstrap` entry's payload names, if it is one: its first
    /// 8 bytes, whether a configuration follows or not (a cluster
    /// bootstrapped before configurations has exactly the 8).
    pub fn of_bootstrap(entry: &Entry) -> Option<ClusterId> {
        if entry.kind != EntryKind::Bootstrap {
            return None;
        }
        let bytes: [u8; 8] = entry.data.get(..8)?.try_into().ok()?;
        Some(ClusterId(u64::from_be_bytes(bytes))).filter(|id| id.0 != 0)
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Whether two nodes may talk: unless both are bound to a cluster and
    /// the two differ. A node bound to none has acknowledged nothing past a
    /// first entry (see `HardState::cluster_id`), so it has nothing to lose
    /// by listening to anyone, and it must, to join its cluster.
    pub fn admits(local: Option<ClusterId>, remote: Option<ClusterId>) -> bool {
        match (local, remote) {
            (Some(local), Some(remote)) => local == remote,
            _ => true,
        }
    }
}

/// What an entry carries. A no-op is what a new leader appends to commit the
/// entries of earlier terms (Raft §5.4.2, §8). A cluster's first entry is
/// always a `Bootstrap`: its first leader's no-op, carrying the cluster id
/// (8 bytes, big-endian) that every member adopts once it is committed,
/// then the cluster's first configuration (absent in a cluster
/// bootstrapped before configurations). A `Configuration` entry carries
/// the whole configuration a change made; it is in effect from the moment
/// a log holds it (`core::membership`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Noop = 0,
    Command = 1,
    Bootstrap = 2,
    Configuration = 3,
}

impl EntryKind {
    pub fn from_byte(byte: u8) -> Option<EntryKind> {
        match byte {
            0 => Some(EntryKind::Noop),
            1 => Some(EntryKind::Command),
            2 => Some(EntryKind::Bootstrap),
            3 => Some(EntryKind::Configuration),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub kind: EntryKind,
    /// Opaque to the core: the state machine's encoded command. Shared, not
    /// owned: the same payload goes to storage, to every follower and to the
    /// state machine, and each of those copies must cost a reference count,
    /// not a byte copy.
    pub data: Arc<[u8]>,
}

impl Entry {
    /// A command entry carrying a copy of `data`. For code that builds logs
    /// by hand (tests, mostly); the node itself builds entries where their
    /// bytes arrive: proposal, wire decoder, segment reader.
    pub fn command(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            kind: EntryKind::Command,
            data: data.into(),
        }
    }

    /// Bytes this entry costs in a batch: its payload plus a fixed header.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + ENTRY_HEADER_SIZE
    }
}

/// Term + index + kind + payload length, as framed on the wire and on disk.
pub const ENTRY_HEADER_SIZE: usize = 8 + 8 + 1 + 4;

/// The state that must be durable before a node answers anyone (Figure 2,
/// "Persistent state on all servers"). The log is persisted separately.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub current_term: Term,
    pub voted_for: Option<NodeId>,
    /// The cluster this node is bound to: the id its first entry (the
    /// cluster's `Bootstrap`) names, set once the node knows that entry is
    /// committed and its own copy is durable, and never changed after. A
    /// leader counts a node's acknowledgement of a client command only once
    /// that node is bound (its own, once its binding is durable), so every
    /// acknowledged write lives on a majority bound to the cluster, whose
    /// members refuse the votes and entries of a node bound to another (a
    /// stale data dir at a member's address); and a node that is not bound
    /// yet holds nothing anyone was promised, so it may follow anyone.
    pub cluster_id: Option<ClusterId>,
}

impl HardState {
    /// A new term, with no vote cast in it yet; the cluster id stays.
    pub fn new_term(self, term: Term) -> HardState {
        assert!(term > self.current_term, "term going backwards");
        HardState {
            current_term: term,
            voted_for: None,
            cluster_id: self.cluster_id,
        }
    }
}

/// What a snapshot covers: the state machine after applying every entry up
/// to and including `index`, whose term is `term`. The log below it may be
/// gone, so the snapshot also carries what the log would have told: which
/// cluster it belongs to and who the voters were.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub index: LogIndex,
    pub term: Term,
    /// The cluster its Bootstrap entry named; None only for a log that had
    /// no Bootstrap (written before cluster ids).
    pub cluster_id: Option<ClusterId>,
    /// The voters the log held at `index` (today: the configured members).
    pub voters: Vec<NodeId>,
}

/// A snapshot this node holds durably: what it covers and how many bytes
/// its file has (what a leader streams to a follower, byte for byte).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    pub size_bytes: u64,
}
