//! Client events: attempts reaching nodes, replies reaching clients,
//! client timeouts, and the server-side request timeout.

use super::event::{Event, Reply};
use super::node::NodeState;
use super::options::CLIENT_ATTEMPT_TIMEOUT_MS;
use super::simulator::Simulator;
use super::trace::TraceEvent;
use super::workload::AttemptState;
use crate::constants::CLIENT_REQUEST_TIMEOUT_MS;
use crate::core::LogIndex;
use crate::replica::{ClientToken, SessionTag};

impl Simulator {
    pub(super) fn client_send(&mut self, client: usize) {
        let committed = self.checker.history.last_index();
        let Some(outgoing) = self.workload.send(&mut self.rng.clients, client, committed) else {
            return;
        };
        let request_id = outgoing.token.request_id;
        self.record(TraceEvent::ClientSend {
            client,
            node: outgoing.node,
            request_id,
            line: outgoing.line.clone(),
        });
        let delay_ms = self.client_delay_ms();
        let request = Event::ClientRequest {
            node: outgoing.node,
            token: outgoing.token,
            session: outgoing.session,
            line: outgoing.line,
        };
        self.queue.push(self.now_ms + delay_ms, request);
        let timeout = Event::ClientTimeout { client, request_id };
        self.queue
            .push(self.now_ms + CLIENT_ATTEMPT_TIMEOUT_MS, timeout);
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
            self.reply_to_client(
                token.connection as usize,
                request_id,
                Reply::Disconnected,
                None,
            );
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
        self.record(TraceEvent::ClientReceive {
            client,
            request_id,
            reply: reply.clone(),
        });
        let next = self
            .workload
            .receive(&mut self.rng.clients, client, request_id, &reply);
        if let Some(delay_ms) = next {
            self.queue
                .push(self.now_ms + delay_ms, Event::ClientSend { client });
        }
    }

    pub(super) fn client_timeout(&mut self, client: usize, request_id: u64) {
        let next = self
            .workload
            .give_up(&mut self.rng.clients, client, request_id);
        if let Some(delay_ms) = next {
            self.record(TraceEvent::ClientGiveUp { client, request_id });
            self.queue
                .push(self.now_ms + delay_ms, Event::ClientSend { client });
        }
    }
}
