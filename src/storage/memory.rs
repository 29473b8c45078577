//! Storage that keeps nothing: the core already holds the log in memory. A
//! node on it forgets everything when its process dies.

use super::{Storage, StorageError};
use crate::core::{Entry, HardState};

#[derive(Debug, Default)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    type Job = ();

    fn merge_jobs(_older: (), _newer: ()) {}

    fn append(&mut self, _entries: &[Entry]) -> Result<(), StorageError> {
        Ok(())
    }

    fn set_hard_state(&mut self, _hard_state: HardState) -> Result<(), StorageError> {
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}
