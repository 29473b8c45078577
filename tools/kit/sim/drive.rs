//! How the simulator drives one node: with the daemon's own driver
//! (src/driver.rs) over the simulated IO of `io.rs`. A node blocked in an
//! fsync (its `busy_until`) holds what arrives until the fsync completes,
//! and what it sends after the fsync leaves only then; a deferred fsync
//! completes on its sync thread after a drawn while.

use super::checker::{Applied, ApplyStep, ObservedReply};
use super::event::{Event, Reply};
use super::hash::entry_hash;
use super::io::{promises_durable_state, Latency, SimStorage, SimSyncer, SimTransport};
use super::network::{DropReason, Route};
use super::options::{CLIENT_DELAY_MS_MAX, DISK_SLOW_SYNC_MS_MAX};
use super::simulator::Simulator;
use super::trace::{MessageSummary, TraceEvent};
use raftlite::core::{Event as CoreEvent, LogIndex, Message, Ready};
use raftlite::driver::{DriveError, NodeIo, ReadyObserver, SnapshotEvent};
use raftlite::replica::Replica;
use std::cell::Cell;

/// What the driver did in one call, for the simulator to carry out.
struct Outputs {
    sent: Vec<(Message, u64)>,
    submitted: Vec<(super::io::SimJob, u64)>,
    writes: Vec<TraceEvent>,
    snapshot_writes: Vec<super::io::SnapshotWrite>,
    busy_until: u64,
    left_over: bool,
}

/// Sees each Ready: the core's events for the trace and the checkers, what
/// was applied with the state digest after it, and the applied index each
/// reply was made at.
struct SimObserver {
    node: usize,
    events: Vec<CoreEvent>,
    applied: Option<Applied>,
    /// (replies the replica holds, applied index) after each pass: a read
    /// is checked against the index it was served at, and a later pass of
    /// the same call may apply more (apply batches can be one entry).
    reply_stamps: Vec<(usize, LogIndex)>,
    /// The driver's own snapshot reports (chunks it could not read,
    /// received files it refused), for the trace.
    snapshot_events: Vec<SnapshotEvent>,
}

impl ReadyObserver for SimObserver {
    fn snapshot(&mut self, event: &SnapshotEvent, _replica: &Replica) {
        let traced = matches!(
            event,
            SnapshotEvent::ChunkUnreadable { .. } | SnapshotEvent::InstallFailed { .. }
        );
        if traced {
            self.snapshot_events.push(event.clone());
        }
    }

    fn ready(&mut self, ready: &Ready, replica: &Replica) {
        let applied_now = replica.raft().log().last_applied();
        self.reply_stamps
            .push((replica.replies().len(), applied_now));
        self.events.extend(ready.events.iter().cloned());
        // An install announced in this Ready came before its entries were
        // applied (they follow the snapshot).
        let installed = ready.events.iter().filter_map(|event| match event {
            CoreEvent::SnapshotInstalled { index, .. } => {
                Some(ApplyStep::Installed { index: *index })
            }
            _ => None,
        });
        let mut steps: Vec<ApplyStep> = installed.collect();
        let hashed = ready.committed_entries.iter();
        steps.extend(hashed.map(|entry| ApplyStep::Entry {
            index: entry.index,
            term: entry.term,
            hash: entry_hash(entry),
        }));
        if steps.is_empty() {
            return;
        }
        let applied = self.applied.get_or_insert(Applied {
            node: self.node,
            steps: Vec::new(),
            entries: Vec::new(),
            last_applied: LogIndex(0),
            digest: 0,
        });
        applied.steps.extend(steps);
        applied
            .entries
            .extend(ready.committed_entries.iter().cloned());
        applied.last_applied = replica.raft().log().last_applied();
        applied.digest = replica.machine().digest();
    }
}

impl Simulator {
    pub(super) fn deliver(&mut self, message: Message, sender_incarnation: u64, leaves_ms: u64) {
        let (from, to) = (message.from.0 as usize, message.to.0 as usize);
        let summary = MessageSummary::of(&message);
        let drop = if sender_incarnation < self.nodes[from].lost_outbox_below {
            Some(DropReason::PowerLoss)
        } else if !self.nodes[from].was_alive_at(sender_incarnation, leaves_ms) {
            Some(DropReason::SenderCrashed)
        } else if !self.nodes[to].is_up() {
            Some(DropReason::NodeDown)
        } else if self.network.is_blocked(from, to) {
            self.stats.faults.messages_blocked += 1;
            Some(DropReason::Partitioned)
        } else {
            None
        };
        if let Some(reason) = drop {
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

    /// The driver's Ready passes, then what they sent goes out, deferred
    /// syncs are scheduled, replies go to the clients and the timer is set.
    ///
    /// What the node did after an fsync it waits in happens, for the
    /// checkers, when that fsync completes: until then it is kept on the
    /// node, and a crash before then discards it with the process.
    pub(super) fn drive(&mut self, node: usize) {
        self.as_node_sees_it(node, |simulator| simulator.drive_now(node));
    }

    /// Runs `f` on the node, keeping what it observes until the node's
    /// fsync completes if it waits in one then.
    fn as_node_sees_it(&mut self, node: usize, f: impl FnOnce(&mut Simulator)) {
        let outer = std::mem::take(&mut self.observed);
        f(self);
        let mut this_call = std::mem::replace(&mut self.observed, outer);
        self.observed.disks_changed |= std::mem::take(&mut this_call.disks_changed);
        let busy_until_ms = self.nodes[node].busy_until_ms;
        if busy_until_ms <= self.now_ms {
            return self.observed.merge(this_call);
        }
        self.nodes[node].after_fsync.merge(this_call);
        self.queue.push(busy_until_ms, Event::Unblocked);
    }

    fn drive_now(&mut self, node: usize) {
        self.observed.touch(node);
        let replica = self.nodes[node].replica();
        let mut observer = SimObserver {
            node,
            events: Vec::new(),
            applied: None,
            snapshot_events: Vec::new(),
            // Replies made before this call, at the index applied then.
            reply_stamps: vec![(replica.replies().len(), replica.raft().log().last_applied())],
        };
        let outputs = self.with_io(node, |driver, replica, io| {
            driver.drive(replica, io, &mut observer)
        });
        self.observe(node, observer);
        self.carry_out(node, outputs);
    }

    /// A deferred sync's time has come: its writes are durable, and the
    /// driver reports them to the core.
    pub(super) fn complete_syncs(&mut self, node: usize, incarnation: u64) {
        if !self.is_live(node, incarnation) {
            return;
        }
        if self.nodes[node].disk.settle(self.now_ms) {
            self.observed.disks_changed = true;
        }
        self.record(TraceEvent::Synced { node });
        self.as_node_sees_it(node, |simulator| {
            let outputs = simulator.with_io(node, |driver, replica, io| {
                driver
                    .collect_finished_syncs(replica, io.storage, io.syncer)
                    .map(|()| false)
            });
            simulator.carry_out(node, outputs);
            simulator.drive_now(node);
        });
    }

    /// Runs `f` with the node's driver, replica and simulated IO.
    fn with_io(
        &mut self,
        node: usize,
        f: impl FnOnce(
            &mut raftlite::driver::Driver<super::io::SimJob>,
            &mut Replica,
            NodeIo<'_, SimStorage<'_>, SimTransport<'_>, SimSyncer<'_>>,
        ) -> Result<bool, DriveError>,
    ) -> Outputs {
        let latency = self.latency(node);
        let now_ms = self.now_ms;
        let state = &mut self.nodes[node];
        let busy = Cell::new(now_ms.max(state.busy_until_ms));
        let Some(replica) = state.replica.as_mut() else {
            panic!("driving a crashed node");
        };
        let mut storage = SimStorage::new(&mut state.disk, &busy, latency, &mut self.rng.disk);
        let mut transport = SimTransport {
            busy_until: &busy,
            now_ms,
            sent: Vec::new(),
        };
        let mut syncer = SimSyncer {
            queue: &mut state.sync_queue,
            busy_until: &busy,
            now_ms,
            latency,
            rng: &mut self.rng.syncs,
            submitted: Vec::new(),
        };
        let io = NodeIo {
            storage: &mut storage,
            transport: &mut transport,
            syncer: &mut syncer,
        };
        let result = f(&mut state.driver, replica, io);
        let left_over = result.unwrap_or_else(|error| panic!("simulated IO cannot fail: {error}"));
        let writes = storage
            .writes
            .iter()
            .map(|write| TraceEvent::Write {
                node,
                hard_state: write.hard_state,
                entries: write
                    .entries
                    .map(|(first, last)| (LogIndex(first), LogIndex(last))),
                durable_at_ms: write.durable_at_ms,
            })
            .collect();
        Outputs {
            sent: transport.sent,
            submitted: syncer.submitted,
            writes,
            snapshot_writes: storage.snapshot_writes,
            busy_until: busy.get(),
            left_over,
        }
    }

    fn latency(&self, node: usize) -> Latency {
        let state = &self.nodes[node];
        Latency {
            normal_ms_max: self.profile.sync_latency_ms_max,
            slow_ms_max: DISK_SLOW_SYNC_MS_MAX,
            slow: state.disk_slow || state.disk_slow_always,
            stall_per_mille: self.profile.sync_stall_per_mille,
        }
    }

    /// The core's events and what it applied, for the trace and checkers.
    fn observe(&mut self, node: usize, observer: SimObserver) {
        for event in observer.events {
            match event {
                CoreEvent::BecameLeader { .. } => self.observed.elected.push(node),
                CoreEvent::CommitAdvanced { .. } => self.observed.commits.push(node),
                _ => {}
            }
            self.record(TraceEvent::Core { node, event });
        }
        for event in observer.snapshot_events {
            self.record(TraceEvent::DriverSnapshot { node, event });
        }
        if let Some(applied) = observer.applied {
            self.observed.applied.push(applied);
        }
        self.nodes[node].reply_stamps = observer.reply_stamps;
    }

    /// Sends, schedules and replies as the driver's call left them.
    fn carry_out(&mut self, node: usize, outputs: Outputs) {
        for write in outputs.writes {
            self.record(write);
        }
        self.snapshot_writes(node, outputs.snapshot_writes);
        let incarnation = self.nodes[node].incarnation;
        for (job, at_ms) in outputs.submitted {
            if let super::io::SimJob::Log { sequence } = job {
                self.nodes[node].disk.sync_through(sequence, at_ms);
            }
            self.queue
                .push(at_ms, Event::SyncComplete { node, incarnation });
        }
        self.nodes[node].busy_until_ms = outputs.busy_until;
        for (message, leaves_ms) in outputs.sent {
            self.send_message(message, leaves_ms);
        }
        if outputs.left_over {
            let at_ms = outputs.busy_until.max(self.now_ms);
            self.queue.push(at_ms, Event::Drive { node, incarnation });
        }
        self.flush_replies(node);
        self.schedule_timer(node);
    }

    /// Routes a message that leaves its sender at `leaves_ms` (later than
    /// now if the sender is blocked in an fsync until then).
    pub(super) fn send_message(&mut self, message: Message, leaves_ms: u64) {
        let (from, to) = (message.from.0 as usize, message.to.0 as usize);
        if promises_durable_state(&message) {
            self.nodes[from].promises.push((leaves_ms, message.term));
        }
        self.count_chunk(&message);
        let summary = MessageSummary::of(&message);
        self.record(TraceEvent::Send {
            message: summary,
            after_sync: leaves_ms > self.now_ms,
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
                let sender_incarnation = self.nodes[from].incarnation;
                if let Some(duplicate_delay_ms) = duplicate_delay_ms {
                    self.stats.faults.messages_duplicated += 1;
                    let copy = Event::Deliver {
                        message: message.clone(),
                        sender_incarnation,
                        leaves_ms,
                    };
                    self.queue.push(leaves_ms + duplicate_delay_ms, copy);
                }
                let event = Event::Deliver {
                    message,
                    sender_incarnation,
                    leaves_ms,
                };
                self.queue.push(leaves_ms + delay_ms, event);
            }
        }
    }

    /// Replies the replica produced go to their clients, leaving when the
    /// node is free (after the fsync it waits in, if any); each is checked
    /// after the step.
    pub(super) fn flush_replies(&mut self, node: usize) {
        let leaves_ms = self.nodes[node].busy_until_ms.max(self.now_ms);
        let incarnation = self.nodes[node].incarnation;
        let stamps = std::mem::take(&mut self.nodes[node].reply_stamps);
        let replica = self.nodes[node].replica_mut();
        let applied_last = replica.raft().log().last_applied();
        let replies = replica.take_replies();
        for (position, (token, line)) in replies.into_iter().enumerate() {
            let node_applied = stamps
                .iter()
                .find(|(made, _)| position < *made)
                .map_or(applied_last, |&(_, applied)| applied);
            let request_id = token.request_id;
            if token.connection == super::transfers::OPERATOR_CONNECTION {
                self.observed.operator_replies.push((node, line));
                continue;
            }
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
            let sender = Some((node, incarnation, leaves_ms));
            self.reply_to_client(client, request_id, Reply::Line(line), sender);
        }
    }

    /// The client hears `reply` (a line, or that its connection died) a
    /// network delay after it left `sender` (node, incarnation, when), if
    /// the node was still alive to send it.
    pub(super) fn reply_to_client(
        &mut self,
        client: usize,
        request_id: u64,
        reply: Reply,
        sender: Option<(usize, u64, u64)>,
    ) {
        let delay_ms = self.client_delay_ms();
        let leaves_ms = sender.map_or(self.now_ms, |(_, _, at_ms)| at_ms);
        let event = Event::ClientReply {
            client,
            request_id,
            reply,
            sender,
        };
        self.queue.push(leaves_ms + delay_ms, event);
    }

    pub(super) fn client_delay_ms(&mut self) -> u64 {
        self.rng.clients.range_inclusive(1, CLIENT_DELAY_MS_MAX)
    }

    /// Schedules the core's next deadline on the global clock (not before
    /// the node is free).
    pub(super) fn schedule_timer(&mut self, node: usize) {
        let state = &self.nodes[node];
        if !state.is_up() {
            return;
        }
        let deadline_ms = state.boot_ms + state.replica().raft().next_deadline_ms();
        let at_ms = deadline_ms.max(self.now_ms).max(state.busy_until_ms);
        if state.timer_at_ms == Some(at_ms) {
            return;
        }
        let incarnation = state.incarnation;
        self.nodes[node].timer_at_ms = Some(at_ms);
        self.queue
            .push(at_ms, Event::CoreTimer { node, incarnation });
    }
}
