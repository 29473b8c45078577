//! How the simulator drives one node, following the daemon's `drive` loop
//! (src/runtime/server.rs) with one difference that matters: the write is
//! asynchronous. A Ready's `messages` leave at once; its hard state and
//! entries become durable only when the disk's sync completes, later; only
//! then do `messages_after_persist` leave and `persisted` get called.

use super::checker::{Applied, ObservedReply};
use super::disk::Write;
use super::event::{Event, Reply};
use super::hash::entry_hash;
use super::network::{DropReason, Route};
use super::options::{CLIENT_DELAY_MS_MAX, DISK_SLOW_SYNC_MS_MAX, READY_PASSES_MAX};
use super::simulator::Simulator;
use super::trace::{MessageSummary, TraceEvent};
use crate::core::{Entry, Event as CoreEvent, HardState, Message, Ready};

impl Simulator {
    pub(super) fn deliver(&mut self, message: Message, sender_incarnation: u64) {
        let (from, to) = (message.from.0 as usize, message.to.0 as usize);
        let summary = MessageSummary::of(&message);
        if sender_incarnation < self.nodes[from].lost_outbox_below {
            let reason = DropReason::PowerLoss;
            self.record(TraceEvent::Drop {
                message: summary,
                reason,
            });
            return;
        }
        if !self.nodes[to].is_up() {
            let reason = DropReason::NodeDown;
            self.record(TraceEvent::Drop {
                message: summary,
                reason,
            });
            return;
        }
        if self.network.is_blocked(from, to) {
            self.stats.faults.messages_blocked += 1;
            let reason = DropReason::Partitioned;
            self.record(TraceEvent::Drop {
                message: summary,
                reason,
            });
            return;
        }
        self.record(TraceEvent::Receive(summary));
        let local_ms = self.nodes[to].local_ms(self.now_ms);
        let replica = self.nodes[to].replica_mut();
        replica.observe_time(local_ms);
        replica.step(message);
        self.drive(to);
    }

    pub(super) fn fire_timer(&mut self, node: usize, incarnation: u64) {
        if !self.is_live(node, incarnation) || self.nodes[node].timer_at_ms != Some(self.now_ms) {
            return; // a dead process's timer, or one since rescheduled
        }
        self.nodes[node].timer_at_ms = None;
        let local_ms = self.nodes[node].local_ms(self.now_ms);
        self.nodes[node].replica_mut().advance_time(local_ms);
        self.drive(node);
    }

    /// Ready passes until the node has nothing to do, as the daemon's
    /// `drive`; then its replies go out and its timer is rescheduled.
    pub(super) fn drive(&mut self, node: usize) {
        self.observed.touch(node);
        for _ in 0..READY_PASSES_MAX {
            if !self.nodes[node].replica().has_ready() {
                break;
            }
            let ready = self.nodes[node].replica_mut().ready();
            self.handle_ready(node, ready);
            // Now, not after the loop: a read is checked against the
            // applied index it was served at, and a later pass may apply
            // more (apply batches can be one entry).
            self.flush_replies(node);
        }
        if self.nodes[node].replica().has_ready() {
            let incarnation = self.nodes[node].incarnation;
            self.queue
                .push(self.now_ms, Event::Drive { node, incarnation });
        }
        self.flush_replies(node);
        self.schedule_timer(node);
    }

    fn handle_ready(&mut self, node: usize, ready: Ready) {
        let Ready {
            hard_state,
            entries,
            messages,
            messages_after_persist,
            committed_entries,
            read_states: _, // the replica serves its reads itself
            events,
        } = ready;
        for event in events {
            match event {
                CoreEvent::BecameLeader { .. } => self.observed.elected.push(node),
                CoreEvent::CommitAdvanced { .. } => self.observed.commits.push(node),
                _ => {}
            }
            self.record(TraceEvent::Core { node, event });
        }
        if !committed_entries.is_empty() {
            self.observe_applied(node, &committed_entries);
        }
        for message in messages {
            self.send_message(message, false);
        }
        self.submit_write(node, hard_state, entries, messages_after_persist);
    }

    /// The replica applied `entries` in `ready()`: note them, and its state
    /// digest after, for the checkers.
    fn observe_applied(&mut self, node: usize, entries: &[Entry]) {
        let replica = self.nodes[node].replica();
        let applied = Applied {
            node,
            entries: entries
                .iter()
                .map(|entry| (entry.index, entry.term, entry_hash(entry)))
                .collect(),
            last_applied: entries.last().expect("not empty").index,
            digest: replica.machine().digest(),
        };
        self.observed.applied.push(applied);
    }

    pub(super) fn send_message(&mut self, message: Message, after_sync: bool) {
        let (from, to) = (message.from.0 as usize, message.to.0 as usize);
        let summary = MessageSummary::of(&message);
        self.record(TraceEvent::Send {
            message: summary,
            after_sync,
        });
        match self.network.route(&mut self.rng.network, from, to) {
            Route::Dropped(reason) => {
                match reason {
                    DropReason::Partitioned => self.stats.faults.messages_blocked += 1,
                    _ => self.stats.faults.messages_lost += 1,
                }
                self.record(TraceEvent::Drop {
                    message: summary,
                    reason,
                });
            }
            Route::Delivered {
                delay_ms,
                duplicate_delay_ms,
                spiked,
            } => {
                self.stats.faults.messages_delayed_long += u64::from(spiked);
                if let Some(duplicate_delay_ms) = duplicate_delay_ms {
                    self.stats.faults.messages_duplicated += 1;
                    let sender_incarnation = self.nodes[from].incarnation;
                    let copy = Event::Deliver {
                        message: message.clone(),
                        sender_incarnation,
                    };
                    self.queue.push(self.now_ms + duplicate_delay_ms, copy);
                }
                let sender_incarnation = self.nodes[from].incarnation;
                let event = Event::Deliver {
                    message,
                    sender_incarnation,
                };
                self.queue.push(self.now_ms + delay_ms, event);
            }
        }
    }

    /// Queues the Ready's write. Messages that wait for durability wait for
    /// every write before them too, even when this Ready writes nothing:
    /// an acknowledgement may cover entries an earlier write carries.
    fn submit_write(
        &mut self,
        node: usize,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        messages_after_persist: Vec<Message>,
    ) {
        let writes = hard_state.is_some() || !entries.is_empty();
        let pending_until = self.nodes[node].disk.last_complete_at_ms();
        if !writes && messages_after_persist.is_empty() {
            return;
        }
        let complete_at_ms = match (writes, pending_until) {
            (false, None) => {
                self.release(node, messages_after_persist);
                return;
            }
            (false, Some(until)) => until,
            (true, until) => {
                let latency_ms = self.sync_latency_ms(node);
                (self.now_ms + latency_ms).max(until.unwrap_or(0))
            }
        };
        if writes {
            let first_last = entries.first().zip(entries.last());
            self.record(TraceEvent::Write {
                node,
                hard_state,
                entries: first_last.map(|(first, last)| (first.index, last.index)),
                complete_at_ms,
            });
        }
        self.nodes[node].disk.submit(Write {
            hard_state,
            entries,
            messages_after_persist,
            complete_at_ms,
        });
        if writes {
            let incarnation = self.nodes[node].incarnation;
            let event = Event::SyncComplete { node, incarnation };
            self.queue.push(complete_at_ms, event);
        }
    }

    fn sync_latency_ms(&mut self, node: usize) -> u64 {
        let normal_ms_max = self.profile.sync_latency_ms_max;
        let stall = self
            .rng
            .disk
            .chance(self.profile.sync_stall_per_mille, 1000);
        let state = &self.nodes[node];
        if state.disk_slow || state.disk_slow_always || stall {
            return self
                .rng
                .disk
                .range_inclusive(normal_ms_max, DISK_SLOW_SYNC_MS_MAX);
        }
        self.rng.disk.range_inclusive(0, normal_ms_max)
    }

    /// Sends replies that promise durable state, now that it is durable.
    fn release(&mut self, node: usize, messages: Vec<Message>) {
        self.checker.promised(node, &messages);
        for message in messages {
            self.send_message(message, true);
        }
    }

    pub(super) fn complete_syncs(&mut self, node: usize, incarnation: u64) {
        if !self.is_live(node, incarnation) {
            return;
        }
        let writes = self.nodes[node].disk.complete_due(self.now_ms);
        if writes.is_empty() {
            return;
        }
        self.observed.disks_changed = true;
        let count = writes.len();
        let (mut last, mut hard_state, mut released) = (None, None, 0);
        for write in writes {
            if let Some(entry) = write.entries.last() {
                last = Some((entry.index, entry.term));
                let replica = self.nodes[node].replica_mut();
                replica.persisted(entry.index, entry.term);
            }
            if let Some(durable) = write.hard_state {
                self.nodes[node].replica_mut().hard_state_persisted(durable);
            }
            hard_state = write.hard_state.or(hard_state);
            released += write.messages_after_persist.len();
            self.release(node, write.messages_after_persist);
        }
        self.record(TraceEvent::Synced {
            node,
            writes: count,
            last,
            hard_state,
            released,
        });
        self.drive(node);
    }

    /// Replies the replica produced go to their clients; each is checked
    /// after the step.
    pub(super) fn flush_replies(&mut self, node: usize) {
        let replica = self.nodes[node].replica_mut();
        let node_applied = replica.raft().log().last_applied();
        let replies = replica.take_replies();
        for (token, line) in replies {
            let request_id = token.request_id;
            let Some(attempt) = self.workload.attempt(request_id) else {
                continue;
            };
            let client = attempt.client;
            self.observed.replies.push(ObservedReply {
                node,
                request_id,
                line: line.clone(),
                state: attempt.state,
                request_line: attempt.line.clone(),
                kind: attempt.kind.clone(),
                data: attempt.data.clone(),
                committed_at_send: attempt.committed_at_send,
                node_applied,
            });
            self.workload.answered(request_id);
            self.record(TraceEvent::NodeReply {
                node,
                request_id,
                line: line.clone(),
            });
            self.reply_to_client(client, request_id, Reply::Line(line));
        }
    }

    /// The client hears `reply` (a line, or that its connection died) a
    /// network delay later.
    pub(super) fn reply_to_client(&mut self, client: usize, request_id: u64, reply: Reply) {
        let delay_ms = self.client_delay_ms();
        let event = Event::ClientReply {
            client,
            request_id,
            reply,
        };
        self.queue.push(self.now_ms + delay_ms, event);
    }

    pub(super) fn client_delay_ms(&mut self) -> u64 {
        self.rng.clients.range_inclusive(1, CLIENT_DELAY_MS_MAX)
    }

    /// Schedules the core's next deadline on the global clock.
    pub(super) fn schedule_timer(&mut self, node: usize) {
        let state = &self.nodes[node];
        if !state.is_up() {
            return;
        }
        let deadline_ms = state.boot_ms + state.replica().raft().next_deadline_ms();
        let at_ms = deadline_ms.max(self.now_ms);
        if state.timer_at_ms == Some(at_ms) {
            return;
        }
        let incarnation = state.incarnation;
        self.nodes[node].timer_at_ms = Some(at_ms);
        self.queue
            .push(at_ms, Event::CoreTimer { node, incarnation });
    }
}
