//! The frames of the peer handshake (docs/PROTOCOL.md, "Peer handshake"):
//! the connecting side says who it is (`PeerHello`), the accepting side
//! answers with its own identity and proof (`PeerChallenge`), the connecting
//! side proves itself (`PeerProof`), and the accepting side lets Raft RPCs
//! through (`PeerWelcome`). Either side may end it with `PeerRefused`, whose
//! reason the other side logs.

use super::codec::{put_bool, put_string, put_u32, put_u64, PayloadError, Reader};
use crate::constants::{CLUSTER_SIZE_MAX, NODE_ID_SIZE_MAX};
use crate::core::ClusterId;

/// Random bytes each side contributes, so that no proof can be replayed.
pub const NONCE_SIZE: usize = 32;
/// An HMAC-SHA256 over the handshake (all zero without a peer secret).
pub const PROOF_SIZE: usize = 32;
/// Longest advertised address (`HOST:PORT`).
pub const ADDRESS_SIZE_MAX: usize = 256;
/// Longest refusal text.
pub const REFUSAL_TEXT_SIZE_MAX: usize = 512;

/// Frame type 1: the first frame on a peer connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerHello {
    /// The sender's own id (`--id`).
    pub node_id: String,
    /// The address the sender listens on, resolved (`IP:PORT`): the
    /// receiver names it when it cannot reach the sender where its member
    /// list says (a proxy or NAT in between makes them differ harmlessly).
    pub address: String,
    /// Every member's id, sorted: nodes with different lists would number
    /// each other differently.
    pub members: Vec<String>,
    /// The sender's cluster, if it knows it (`HardState::cluster_id`).
    pub cluster_id: Option<ClusterId>,
    pub nonce: [u8; NONCE_SIZE],
    /// The sender has a peer secret and will prove it.
    pub authenticated: bool,
}

/// Frame type 8: the accepting side's identity and its proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerChallenge {
    pub node_id: String,
    pub cluster_id: Option<ClusterId>,
    pub nonce: [u8; NONCE_SIZE],
    pub proof: [u8; PROOF_SIZE],
}

/// Frame type 10: the handshake succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerWelcome {
    /// Where the accepting side will connect to the connecting side (its
    /// member list's address for it), so a node restarted on another port
    /// can say why nobody answers it. Sent only now, to a proven peer: it
    /// would tell a stranger who the members are.
    pub your_address: String,
}

/// Frame type 9: the connecting side's proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProof {
    pub proof: [u8; PROOF_SIZE],
}

/// Frame type 11: why a handshake ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRefused {
    pub reason: RefusalReason,
    /// One line for the other side's log.
    pub text: String,
}

impl PeerRefused {
    /// A refusal whose text is cut to fit the frame (at a character edge).
    pub fn new(reason: RefusalReason, text: &str) -> PeerRefused {
        let mut end = text.len().min(REFUSAL_TEXT_SIZE_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        PeerRefused {
            reason,
            text: text[..end].to_string(),
        }
    }
}

/// Why a node refuses a peer connection. Each is a configuration problem a
/// person must fix, so the refused side backs off for long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// The sender is not in the receiver's member list.
    UnknownNode = 1,
    MemberList = 2,
    /// Both are bound to a cluster, and not the same.
    ClusterId = 4,
    /// One side has a peer secret and the other not.
    SecretConfiguration = 5,
    /// A proof did not verify: a different secret, or no secret at all.
    Authentication = 6,
    /// The accepting side is not the node the connecting side dialled.
    WrongNode = 7,
    /// A frame that has no place at this point of the handshake.
    Protocol = 8,
}

impl RefusalReason {
    pub fn from_byte(byte: u8) -> Option<RefusalReason> {
        use RefusalReason::*;
        [
            UnknownNode,
            MemberList,
            ClusterId,
            SecretConfiguration,
            Authentication,
            WrongNode,
            Protocol,
        ]
        .into_iter()
        .find(|reason| *reason as u8 == byte)
    }

    /// A short word for STATUS fields and log lines.
    pub fn name(self) -> &'static str {
        match self {
            RefusalReason::UnknownNode => "unknown_node",
            RefusalReason::MemberList => "member_list",
            RefusalReason::ClusterId => "cluster_id",
            RefusalReason::SecretConfiguration => "secret_configuration",
            RefusalReason::Authentication => "authentication",
            RefusalReason::WrongNode => "wrong_node",
            RefusalReason::Protocol => "protocol",
        }
    }
}

fn put_cluster_id(out: &mut Vec<u8>, cluster_id: Option<ClusterId>) {
    put_u64(out, cluster_id.map_or(0, |id| id.0));
}

fn read_cluster_id(reader: &mut Reader<'_>) -> Result<Option<ClusterId>, PayloadError> {
    Ok(match reader.read_u64("cluster_id")? {
        0 => None,
        id => Some(ClusterId(id)),
    })
}

fn read_array<const N: usize>(
    reader: &mut Reader<'_>,
    field: &'static str,
) -> Result<[u8; N], PayloadError> {
    let bytes = reader.take(N, field)?;
    let mut array = [0u8; N];
    array.copy_from_slice(bytes);
    Ok(array)
}

pub(super) fn encode_hello(hello: &PeerHello, out: &mut Vec<u8>) {
    assert!(hello.members.len() <= CLUSTER_SIZE_MAX);
    put_string(out, &hello.node_id, NODE_ID_SIZE_MAX);
    put_string(out, &hello.address, ADDRESS_SIZE_MAX);
    put_u32(out, hello.members.len() as u32);
    for member in &hello.members {
        put_string(out, member, NODE_ID_SIZE_MAX);
    }
    put_cluster_id(out, hello.cluster_id);
    out.extend_from_slice(&hello.nonce);
    put_bool(out, hello.authenticated);
}

pub(super) fn read_hello(reader: &mut Reader<'_>) -> Result<PeerHello, PayloadError> {
    let node_id = reader.read_string("node_id", NODE_ID_SIZE_MAX)?;
    let address = reader.read_string("address", ADDRESS_SIZE_MAX)?;
    let count = reader.read_count("members", CLUSTER_SIZE_MAX)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(reader.read_string("member", NODE_ID_SIZE_MAX)?);
    }
    Ok(PeerHello {
        node_id,
        address,
        members,
        cluster_id: read_cluster_id(reader)?,
        nonce: read_array(reader, "nonce")?,
        authenticated: reader.read_bool("authenticated")?,
    })
}

pub(super) fn encode_challenge(challenge: &PeerChallenge, out: &mut Vec<u8>) {
    put_string(out, &challenge.node_id, NODE_ID_SIZE_MAX);
    put_cluster_id(out, challenge.cluster_id);
    out.extend_from_slice(&challenge.nonce);
    out.extend_from_slice(&challenge.proof);
}

pub(super) fn read_challenge(reader: &mut Reader<'_>) -> Result<PeerChallenge, PayloadError> {
    Ok(PeerChallenge {
        node_id: reader.read_string("node_id", NODE_ID_SIZE_MAX)?,
        cluster_id: read_cluster_id(reader)?,
        nonce: read_array(reader, "nonce")?,
        proof: read_array(reader, "proof")?,
    })
}

pub(super) fn encode_welcome(welcome: &PeerWelcome, out: &mut Vec<u8>) {
    put_string(out, &welcome.your_address, ADDRESS_SIZE_MAX);
}

pub(super) fn read_welcome(reader: &mut Reader<'_>) -> Result<PeerWelcome, PayloadError> {
    Ok(PeerWelcome {
        your_address: reader.read_string("your_address", ADDRESS_SIZE_MAX)?,
    })
}

pub(super) fn read_proof(reader: &mut Reader<'_>) -> Result<PeerProof, PayloadError> {
    Ok(PeerProof {
        proof: read_array(reader, "proof")?,
    })
}

pub(super) fn encode_refused(refused: &PeerRefused, out: &mut Vec<u8>) {
    out.push(refused.reason as u8);
    put_string(out, &refused.text, REFUSAL_TEXT_SIZE_MAX);
}

pub(super) fn read_refused(reader: &mut Reader<'_>) -> Result<PeerRefused, PayloadError> {
    let byte = reader.read_u8("reason")?;
    let reason = RefusalReason::from_byte(byte).ok_or(PayloadError::Invalid("unknown reason"))?;
    let text = reader.read_string("text", REFUSAL_TEXT_SIZE_MAX)?;
    Ok(PeerRefused { reason, text })
}
