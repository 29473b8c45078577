//! The simulated network between nodes. A message may be lost, delayed,
//! duplicated or overtaken (reordering falls out of random delays and delay
//! spikes), and links may be cut in one direction or both. Decisions only:
//! the simulator schedules the deliveries.

use super::options::{FaultProfile, MESSAGE_DELAY_MS_MIN, MESSAGE_DELAY_SPIKE_MS_MAX};
use raftlite::core::rng::Rng;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Lost,
    Partitioned,
    NodeDown,
    /// The sender lost power before the message left its machine.
    PowerLoss,
    /// Its sender died before the message left (it waited for an fsync).
    SenderCrashed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Dropped(DropReason),
    /// Delivered after `delay_ms`, and a second copy after
    /// `duplicate_delay_ms` if the network duplicates it.
    Delivered {
        delay_ms: u64,
        duplicate_delay_ms: Option<u64>,
        spiked: bool,
    },
}

pub struct Network {
    /// Directed links (from, to), by node index, that carry nothing.
    blocked: BTreeSet<(usize, usize)>,
    /// Counts the cuts made, so that a scheduled heal knows whether the cut
    /// it was meant to heal is still the current one.
    generation: u64,
    loss_per_mille: u64,
    duplicate_per_mille: u64,
    delay_ms_max: u64,
    spike_per_mille: u64,
}

impl Network {
    pub fn new(profile: &FaultProfile) -> Network {
        Network {
            blocked: BTreeSet::new(),
            generation: 0,
            loss_per_mille: profile.message_loss_per_mille,
            duplicate_per_mille: profile.message_duplicate_per_mille,
            delay_ms_max: profile.message_delay_ms_max.max(MESSAGE_DELAY_MS_MIN),
            spike_per_mille: profile.message_delay_spike_per_mille,
        }
    }

    /// The faults stop: links heal, nothing is lost, duplicated or held
    /// back by a spike. Ordinary delays (and so some reordering) remain.
    pub fn calm(&mut self) {
        self.heal();
        self.loss_per_mille = 0;
        self.duplicate_per_mille = 0;
        self.spike_per_mille = 0;
    }

    /// What happens to a message sent now from `from` to `to`.
    pub fn route(&self, rng: &mut Rng, from: usize, to: usize) -> Route {
        if self.is_blocked(from, to) {
            return Route::Dropped(DropReason::Partitioned);
        }
        if rng.chance(self.loss_per_mille, 1000) {
            return Route::Dropped(DropReason::Lost);
        }
        let spiked = rng.chance(self.spike_per_mille, 1000);
        let delay_ms = self.delay(rng, spiked);
        let duplicate_delay_ms = if rng.chance(self.duplicate_per_mille, 1000) {
            let duplicate_spiked = rng.chance(self.spike_per_mille, 1000);
            Some(self.delay(rng, duplicate_spiked))
        } else {
            None
        };
        Route::Delivered {
            delay_ms,
            duplicate_delay_ms,
            spiked,
        }
    }

    fn delay(&self, rng: &mut Rng, spiked: bool) -> u64 {
        if spiked {
            return rng.range_inclusive(self.delay_ms_max, MESSAGE_DELAY_SPIKE_MS_MAX);
        }
        rng.range_inclusive(MESSAGE_DELAY_MS_MIN, self.delay_ms_max)
    }

    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Replaces the current cut with `links`; returns its generation.
    pub fn cut(&mut self, links: BTreeSet<(usize, usize)>) -> u64 {
        self.blocked = links;
        self.generation += 1;
        self.generation
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
        self.generation += 1;
    }
}
