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

/// What an entry carries. A no-op is what a new leader appends to commit the
/// entries of earlier terms (Raft §5.4.2, §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Noop = 0,
    Command = 1,
}

impl EntryKind {
    pub fn from_byte(byte: u8) -> Option<EntryKind> {
        match byte {
            0 => Some(EntryKind::Noop),
            1 => Some(EntryKind::Command),
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
}
