//! Client events: tries reaching nodes, replies reaching clients, client
//! timeouts and pauses, and the server-side request timeout. The clients
//! are the real client machine (workload.rs); this is their IO.

use super::event::{Event, Reply};
use super::node::NodeState;
use super::simulator::Simulator;
use super::trace::TraceEvent;
use super::workload::{AttemptState, Next};
use raftlite::client::TryResult;
use raftlite::constants::CLIENT_REQUEST_TIMEOUT_MS;
use raftlite::core::LogIndex;
use raftlite::replica::{ClientToken, SessionTag};
use raftlite::reply::Answer;

impl Simulator {
    /// The client starts its next command.
    pub(super) fn client_send(&mut self, client: usize) {
        let committed = self.checker.history.last_index();
        let rng = &mut self.rng.clients;
        if let Some(next) = self.workload.start(rng, client, self.now_ms, committed) {
            self.client_next(client, next);
        }
    }

    pub(super) fn client_resume(&mut self, client: usize) {
        let committed = self.checker.history.last_index();
        let rng = &mut self.rng.clients;
        if let Some(next) = self.workload.resume(rng, client, self.now_ms, committed) {
            self.client_next(client, next);
        }
    }

    /// What the client's machine asked for: a try on the wire (and its
    /// timeout), a pause, or the end of a command (checked, then the next
    /// one after thinking).
    fn client_next(&mut self, client: usize, next: Next) {
        match next {
            Next::Send(outgoing) => {
                let request_id = outgoing.token.request_id;
                self.record(TraceEvent::ClientSend {
                    client,
                    node: outgoing.node,
                    request_id,
                    line: outgoing.line.clone(),
                });
                if outgoing.session.session_id != 0 {
                    let (operation, session) = (outgoing.operation, outgoing.session);
                    let outcomes = &mut self.checker.outcomes;
                    outcomes.sent(operation, client, &outgoing.line, session);
                }
                let delay_ms = self.client_delay_ms();
                let timeout_at_ms = self.now_ms + outgoing.timeout_ms;
                let request = Event::ClientRequest {
                    node: outgoing.node,
                    token: outgoing.token,
                    session: outgoing.session,
                    line: outgoing.line,
                };
                self.queue.push(self.now_ms + delay_ms, request);
                let timeout = Event::ClientTimeout { client, request_id };
                self.queue.push(timeout_at_ms, timeout);
            }
            Next::Pause { until_ms } => {
                self.record(TraceEvent::ClientPause { client, until_ms });
                self.queue.push(until_ms, Event::ClientResume { client });
            }
            Next::Ended { ended, think_ms } => {
                self.record(TraceEvent::ClientDone {
                    client,
                    line: ended.operation.line.clone(),
                    answer: ended.answer.clone(),
                });
                self.observed.ended.push(ended);
                if let Some(think_ms) = think_ms {
                    let at_ms = self.now_ms + think_ms;
                    self.queue.push(at_ms, Event::ClientSend { client });
                }
            }
        }
    }

    /// An attempt reaches a node: the daemon's `handle_request`, including
    /// its request timer.
    pub(super) fn client_request(
        &mut self,
        node: usize,
        token: ClientToken,
        session: SessionTag,
        line: String,
    ) {
        let request_id = token.request_id;
        let Some(attempt) = self.workload.attempt(request_id) else {
            return;
        };
        if attempt.state == AttemptState::ConnectionLost {
            return; // sent on a connection the crash reset
        }
        if self.nodes[node].state == NodeState::Crashed {
            self.workload.connection_lost(request_id);
            self.reply_to_client(token.connection as usize, request_id, Reply::Refused, None);
            return;
        }
        let local_ms = self.nodes[node].local_ms(self.now_ms);
        let replica = self.nodes[node].replica_mut();
        replica.observe_time(local_ms); // as the daemon's loop does first
        let index = replica.handle_request(token, session, &line);
        if let Some(index) = index {
            self.proposed(node, token, index);
        }
        self.drive(node);
    }

    fn proposed(&mut self, node: usize, token: ClientToken, index: LogIndex) {
        let request_id = token.request_id;
        self.workload.proposed(request_id, index);
        self.record(TraceEvent::Proposed {
            node,
            request_id,
            index,
        });
        let incarnation = self.nodes[node].incarnation;
        let expire = Event::RequestExpire {
            node,
            incarnation,
            index,
            token,
        };
        self.queue
            .push(self.now_ms + CLIENT_REQUEST_TIMEOUT_MS, expire);
    }

    pub(super) fn expire_request(
        &mut self,
        node: usize,
        incarnation: u64,
        index: LogIndex,
        token: ClientToken,
    ) {
        if !self.is_live(node, incarnation) {
            return;
        }
        let local_ms = self.nodes[node].local_ms(self.now_ms);
        let replica = self.nodes[node].replica_mut();
        replica.observe_time(local_ms);
        replica.expire(index, token);
        self.observed.touch(node);
        self.flush_replies(node);
    }

    pub(super) fn client_reply(&mut self, client: usize, request_id: u64, reply: Reply) {
        if !self.workload.waits_on(client, request_id) {
            return; // a late reply to a try the client gave up on
        }
        self.record(TraceEvent::ClientReceive {
            client,
            request_id,
            reply: reply.clone(),
        });
        let result = match reply {
            Reply::Line(reply) => TryResult::Reply(Answer::Reply(reply)),
            Reply::Disconnected => {
                TryResult::Unknown("connection reset after the request was sent".to_string())
            }
            Reply::Refused => TryResult::NotSent("connection refused".to_string()),
        };
        self.client_try_finished(client, request_id, result);
    }

    pub(super) fn client_timeout(&mut self, client: usize, request_id: u64) {
        if !self.workload.waits_on(client, request_id) {
            return;
        }
        self.record(TraceEvent::ClientGiveUp { client, request_id });
        let what = "no reply in time".to_string();
        self.client_try_finished(client, request_id, TryResult::Unknown(what));
    }

    fn client_try_finished(&mut self, client: usize, request_id: u64, result: TryResult) {
        let committed = self.checker.history.last_index();
        let rng = &mut self.rng.clients;
        let now_ms = self.now_ms;
        let next = self
            .workload
            .try_finished(rng, client, request_id, result, now_ms, committed);
        if let Some(next) = next {
            self.client_next(client, next);
        }
    }
}
