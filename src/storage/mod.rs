//! Where the log and the hard state live between runs. The runtime writes
//! each Ready's entries and hard state here and syncs once per loop turn.

pub mod memory;

use crate::core::{Entry, HardState};
use std::fmt;

pub use memory::MemoryStorage;

/// What a node starts from.
#[derive(Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
}

#[derive(Debug)]
pub struct StorageError(pub String);

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

pub trait Storage {
    /// Appends `entries` (consecutive). If the first index is at or below the
    /// stored last index, the stored suffix from there is replaced.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;
    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> Result<(), StorageError>;
}
