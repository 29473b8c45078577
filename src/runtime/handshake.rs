//! The rules of the peer handshake, apart from the sockets that carry it:
//! who may become a peer, and what each side says when it refuses.
//!
//! ```text
//! connector                                   acceptor
//!   PeerHello(id, address, members, cluster, nonce) ──▶
//!         ◀── PeerChallenge(id, cluster, nonce, proof of the secret)
//!   PeerProof(proof of the secret) ──▶
//!         ◀── PeerWelcome(where the acceptor will dial the connector)
//!                              (or PeerRefused(reason) at any step)
//! ```
//!
//! The acceptor checks who the connector is only after its proof, so a
//! party without the secret learns nothing about the cluster but that it
//! needs one.

use super::peer_auth::{PeerSecret, Side, Transcript};
use crate::core::{ClusterId, NodeId};
use crate::wire::{
    PeerChallenge, PeerHello, PeerRefused, PeerWelcome, RefusalReason, NONCE_SIZE, PROOF_SIZE,
};
use std::net::SocketAddr;

/// What this node is, as the handshake needs it.
#[derive(Debug)]
pub struct LocalIdentity {
    /// Every member's id and address, by NodeId (sorted by id).
    pub members: Vec<(String, SocketAddr)>,
    pub self_id: NodeId,
    pub secret: Option<PeerSecret>,
    /// Test builds only: the planted bug AdmitForeignCluster skips the
    /// cluster check, as the core skips its own.
    #[cfg(feature = "planted-bugs")]
    pub admit_foreign_cluster: bool,
}

/// An accepted connection's hello, kept until its proof arrives.
#[derive(Clone, Debug)]
pub struct InboundHello {
    pub hello: PeerHello,
    pub our_nonce: [u8; NONCE_SIZE],
    pub our_cluster: Option<ClusterId>,
}

impl LocalIdentity {
    pub fn name(&self) -> &str {
        &self.members[self.self_id.0 as usize].0
    }

    pub fn address(&self) -> SocketAddr {
        self.members[self.self_id.0 as usize].1
    }

    pub fn member_names(&self) -> Vec<String> {
        self.members.iter().map(|(name, _)| name.clone()).collect()
    }

    pub fn hello(&self, cluster_id: Option<ClusterId>, nonce: [u8; NONCE_SIZE]) -> PeerHello {
        PeerHello {
            node_id: self.name().to_string(),
            address: self.address().to_string(),
            members: self.member_names(),
            cluster_id,
            nonce,
            authenticated: self.secret.is_some(),
        }
    }

    /// The acceptor's answer to a hello: a challenge, or a refusal if the
    /// two sides cannot even agree on whether to use a secret.
    pub fn challenge(&self, inbound: &InboundHello) -> Result<PeerChallenge, PeerRefused> {
        let hello = &inbound.hello;
        match (&self.secret, hello.authenticated) {
            (Some(_), false) => {
                let text = format!(
                    "{} requires a peer secret (--peer-secret) and {:?} offered none",
                    self.name(),
                    hello.node_id
                );
                return Err(PeerRefused::new(RefusalReason::SecretConfiguration, &text));
            }
            (None, true) => {
                let text = format!(
                    "{} has no peer secret; {:?} does: give every member the same --peer-secret",
                    self.name(),
                    hello.node_id
                );
                return Err(PeerRefused::new(RefusalReason::SecretConfiguration, &text));
            }
            _ => {}
        }
        let transcript = inbound.transcript(self.name());
        Ok(PeerChallenge {
            node_id: self.name().to_string(),
            cluster_id: inbound.our_cluster,
            nonce: inbound.our_nonce,
            proof: self.prove(Side::Acceptor, &transcript),
        })
    }

    /// The acceptor checks the connector's proof, then who it is. Returns
    /// the peer it is, and the welcome to send it.
    pub fn admit(
        &self,
        inbound: &InboundHello,
        proof: &[u8; PROOF_SIZE],
        cluster_now: Option<ClusterId>,
    ) -> Result<(NodeId, PeerWelcome), PeerRefused> {
        let transcript = inbound.transcript(self.name());
        if !self.verifies(Side::Connector, &transcript, proof) {
            let text = "the proof of the peer secret does not verify (a different --peer-secret?)";
            return Err(PeerRefused::new(RefusalReason::Authentication, text));
        }
        let peer = self.check_connector(&inbound.hello, cluster_now)?;
        let welcome = PeerWelcome {
            your_address: self.members[peer.0 as usize].1.to_string(),
        };
        Ok((peer, welcome))
    }

    fn check_connector(
        &self,
        hello: &PeerHello,
        cluster_now: Option<ClusterId>,
    ) -> Result<NodeId, PeerRefused> {
        let peer = self
            .members
            .iter()
            .position(|(name, _)| *name == hello.node_id)
            .map(|index| NodeId(index as u32))
            .filter(|&id| id != self.self_id);
        let Some(peer) = peer else {
            let text = format!(
                "{:?} is not a member of {}'s cluster (members {})",
                hello.node_id,
                self.name(),
                self.member_names().join(",")
            );
            return Err(PeerRefused::new(RefusalReason::UnknownNode, &text));
        };
        if hello.members != self.member_names() {
            let text = format!(
                "member lists differ: {} has {}, {} has {} (start every member with the same --peers)",
                hello.node_id,
                hello.members.join(","),
                self.name(),
                self.member_names().join(",")
            );
            return Err(PeerRefused::new(RefusalReason::MemberList, &text));
        }
        self.check_cluster(cluster_now, &hello.node_id, hello.cluster_id)?;
        Ok(peer)
    }

    /// The connector checks the acceptor it reached: its proof, that it is
    /// the member dialled, its cluster. Returns our proof to send.
    pub fn answer_challenge(
        &self,
        peer: NodeId,
        our_hello: &PeerHello,
        challenge: &PeerChallenge,
    ) -> Result<[u8; PROOF_SIZE], PeerRefused> {
        let transcript = Transcript {
            connector: self.name(),
            acceptor: &challenge.node_id,
            connector_nonce: our_hello.nonce,
            acceptor_nonce: challenge.nonce,
            connector_cluster: our_hello.cluster_id,
            acceptor_cluster: challenge.cluster_id,
        };
        if !self.verifies(Side::Acceptor, &transcript, &challenge.proof) {
            let text = "the proof of the peer secret does not verify (a different --peer-secret?)";
            return Err(PeerRefused::new(RefusalReason::Authentication, text));
        }
        let (expected, address) = &self.members[peer.0 as usize];
        if challenge.node_id != *expected {
            let text = format!(
                "{} dialled {expected} at {address}, but {:?} answered",
                self.name(),
                challenge.node_id
            );
            return Err(PeerRefused::new(RefusalReason::WrongNode, &text));
        }
        let ours = our_hello.cluster_id;
        self.check_cluster(ours, &challenge.node_id, challenge.cluster_id)?;
        Ok(self.prove(Side::Connector, &transcript))
    }

    /// Two nodes that both know their cluster, and not the same one, must
    /// not talk (the core refuses their messages too; this says why, early).
    fn check_cluster(
        &self,
        ours: Option<ClusterId>,
        theirs_name: &str,
        theirs: Option<ClusterId>,
    ) -> Result<(), PeerRefused> {
        #[cfg(feature = "planted-bugs")]
        if self.admit_foreign_cluster {
            return Ok(());
        }
        check_cluster(self.name(), ours, theirs_name, theirs)
    }

    fn prove(&self, side: Side, transcript: &Transcript<'_>) -> [u8; PROOF_SIZE] {
        match &self.secret {
            Some(secret) => secret.prove(side, transcript),
            None => [0; PROOF_SIZE],
        }
    }

    fn verifies(&self, side: Side, transcript: &Transcript<'_>, proof: &[u8; PROOF_SIZE]) -> bool {
        match &self.secret {
            Some(secret) => secret.verify(side, transcript, proof),
            None => true,
        }
    }
}

impl InboundHello {
    fn transcript<'a>(&'a self, acceptor: &'a str) -> Transcript<'a> {
        Transcript {
            connector: &self.hello.node_id,
            acceptor,
            connector_nonce: self.hello.nonce,
            acceptor_nonce: self.our_nonce,
            connector_cluster: self.hello.cluster_id,
            acceptor_cluster: self.our_cluster,
        }
    }
}

fn check_cluster(
    ours_name: &str,
    ours: Option<ClusterId>,
    theirs_name: &str,
    theirs: Option<ClusterId>,
) -> Result<(), PeerRefused> {
    if ClusterId::admits(ours, theirs) {
        return Ok(());
    }
    let (Some(ours), Some(theirs)) = (ours, theirs) else {
        return Ok(());
    };
    let text = format!(
        "{ours_name} belongs to cluster {ours} and {theirs_name} to cluster {theirs}: \
         a data dir from another cluster? (docs/OPERATIONS.md, \"Cluster identity\")"
    );
    Err(PeerRefused::new(RefusalReason::ClusterId, &text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn identity(self_index: u32, secret: Option<&str>) -> LocalIdentity {
        let members = ["A", "B", "C"]
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let address: SocketAddr = format!("127.0.0.1:{}", 8000 + index).parse().unwrap();
                (name.to_string(), address)
            })
            .collect();
        LocalIdentity {
            members,
            self_id: NodeId(self_index),
            secret: secret.map(|text| PeerSecret::parse(text.as_bytes()).unwrap()),
            #[cfg(feature = "planted-bugs")]
            admit_foreign_cluster: false,
        }
    }

    /// Runs the whole handshake from A (connector) to B (acceptor).
    fn handshake(
        connector: &LocalIdentity,
        acceptor: &LocalIdentity,
        clusters: (Option<ClusterId>, Option<ClusterId>),
        tamper: impl Fn(&mut PeerHello),
    ) -> Result<NodeId, PeerRefused> {
        let mut hello = connector.hello(clusters.0, [1; NONCE_SIZE]);
        tamper(&mut hello);
        let inbound = InboundHello {
            hello: hello.clone(),
            our_nonce: [2; NONCE_SIZE],
            our_cluster: clusters.1,
        };
        let challenge = acceptor.challenge(&inbound)?;
        let proof = connector.answer_challenge(NodeId(1), &hello, &challenge)?;
        acceptor
            .admit(&inbound, &proof, clusters.1)
            .map(|(peer, _)| peer)
    }

    fn refusal(result: Result<NodeId, PeerRefused>) -> (RefusalReason, String) {
        let refused = result.expect_err("the handshake must be refused");
        (refused.reason, refused.text)
    }

    #[test]
    fn members_with_the_same_secret_and_cluster_are_admitted() {
        let (a, b) = (identity(0, Some(SECRET)), identity(1, Some(SECRET)));
        let cluster = Some(ClusterId(5));
        assert_eq!(handshake(&a, &b, (cluster, cluster), |_| {}), Ok(NodeId(0)));
        assert_eq!(handshake(&a, &b, (None, cluster), |_| {}), Ok(NodeId(0)));
        let (a, b) = (identity(0, None), identity(1, None));
        assert_eq!(handshake(&a, &b, (cluster, None), |_| {}), Ok(NodeId(0)));
    }

    #[test]
    fn each_mismatch_is_refused_with_its_reason() {
        let (a, b) = (identity(0, None), identity(1, None));
        let known = (Some(ClusterId(1)), Some(ClusterId(2)));
        let (reason, text) = refusal(handshake(&a, &b, known, |_| {}));
        assert_eq!(reason, RefusalReason::ClusterId);
        assert!(text.contains("0000000000000001") && text.contains("0000000000000002"));
        let none = (None, None);
        let stranger = |hello: &mut PeerHello| hello.node_id = "D".to_string();
        assert_eq!(
            refusal(handshake(&a, &b, none, stranger)).0,
            RefusalReason::UnknownNode
        );
        let other_list = |hello: &mut PeerHello| hello.members[2] = "D".to_string();
        let (reason, text) = refusal(handshake(&a, &b, none, other_list));
        assert_eq!(reason, RefusalReason::MemberList);
        assert!(text.contains("A,B,D") && text.contains("A,B,C"), "{text}");
        // An address that differs (a proxy, NAT, or a node restarted on
        // another port) is no reason to refuse: it is reported where it
        // matters, when the node cannot be reached (peers.rs).
        let moved = |hello: &mut PeerHello| hello.address = "127.0.0.1:8012".to_string();
        assert_eq!(handshake(&a, &b, none, moved), Ok(NodeId(0)));
    }

    #[test]
    fn a_secret_must_be_held_by_both_and_be_the_same() {
        let none = (None, None);
        let (plain, guarded) = (identity(0, None), identity(1, Some(SECRET)));
        let (reason, text) = refusal(handshake(&plain, &guarded, none, |_| {}));
        assert_eq!(reason, RefusalReason::SecretConfiguration);
        assert!(text.contains("requires a peer secret"), "{text}");
        let other = identity(0, Some("ffffffffffffffffffffffffffffffff"));
        let (reason, _) = refusal(handshake(&other, &guarded, none, |_| {}));
        assert_eq!(reason, RefusalReason::Authentication);
        // A connector that claims a secret it cannot prove is refused too.
        let liar = identity(0, None);
        let claims = |hello: &mut PeerHello| hello.authenticated = true;
        let (reason, _) = refusal(handshake(&liar, &guarded, none, claims));
        assert_eq!(reason, RefusalReason::Authentication);
    }

    #[test]
    fn the_connector_refuses_a_node_it_did_not_dial() {
        let a = identity(0, None);
        let c = identity(2, None);
        let (reason, text) = refusal(handshake(&a, &c, (None, None), |_| {}));
        assert_eq!(reason, RefusalReason::WrongNode);
        assert!(text.contains("dialled B"), "{text}");
    }
}
