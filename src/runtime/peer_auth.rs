//! Peer authentication (`--peer-secret FILE`): both sides of a peer
//! connection prove they hold the cluster's secret with an HMAC-SHA256 over
//! a transcript of the handshake (fresh nonces from both sides, both node
//! ids, both cluster ids), so a proof is bound to one connection and cannot
//! be replayed or reflected. The cryptography is RustCrypto's `hmac` and
//! `sha2`; nothing here is written by hand but the transcript.

use crate::core::ClusterId;
use crate::wire::{NONCE_SIZE, PROOF_SIZE};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// Shortest secret accepted: 32 bytes of characters (e.g. 64 hex digits
/// from `openssl rand -hex 32`).
pub const SECRET_SIZE_MIN: usize = 32;
/// Secrets one file may hold: the one this node proves with, and one more
/// it also accepts while a new secret is rolled out (docs/OPERATIONS.md).
pub const SECRETS_MAX: usize = 2;
/// A secret file larger than this is not a secret file.
const SECRET_FILE_SIZE_MAX: u64 = 4096;
/// Separates this protocol's proofs from any other use of the secret.
const TRANSCRIPT_LABEL: &[u8] = b"raftlite peer handshake v1";

/// Which side of the handshake a proof speaks for, so the acceptor's proof
/// can never be sent back as the connector's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Acceptor,
    Connector,
}

/// What a proof covers: everything both sides said about themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript<'a> {
    pub connector: &'a str,
    pub acceptor: &'a str,
    pub connector_nonce: [u8; NONCE_SIZE],
    pub acceptor_nonce: [u8; NONCE_SIZE],
    pub connector_cluster: Option<ClusterId>,
    pub acceptor_cluster: Option<ClusterId>,
}

/// The secrets read from `--peer-secret`; the first is the one we prove with.
#[derive(Clone)]
pub struct PeerSecret {
    secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for PeerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerSecret({} secrets)", self.secrets.len())
    }
}

impl PeerSecret {
    /// One secret per non-empty line (surrounding whitespace ignored), at
    /// least SECRET_SIZE_MIN bytes each, at most SECRETS_MAX lines.
    pub fn load(path: &Path) -> Result<PeerSecret, String> {
        let shown = path.display();
        let file = std::fs::File::open(path)
            .map_err(|error| format!("--peer-secret {shown}: cannot open: {error}"))?;
        let mut bytes = Vec::new();
        file.take(SECRET_FILE_SIZE_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| format!("--peer-secret {shown}: cannot read: {error}"))?;
        if bytes.len() as u64 > SECRET_FILE_SIZE_MAX {
            return Err(format!(
                "--peer-secret {shown}: larger than {SECRET_FILE_SIZE_MAX} bytes"
            ));
        }
        PeerSecret::parse(&bytes).map_err(|problem| format!("--peer-secret {shown}: {problem}"))
    }

    pub fn parse(bytes: &[u8]) -> Result<PeerSecret, String> {
        let secrets: Vec<Vec<u8>> = bytes
            .split(|&byte| byte == b'\n')
            .map(|line| line.trim_ascii().to_vec())
            .filter(|line| !line.is_empty())
            .collect();
        if secrets.is_empty() {
            return Err("the file holds no secret".to_string());
        }
        if secrets.len() > SECRETS_MAX {
            return Err(format!(
                "{} secrets; at most {SECRETS_MAX} (the current one, then the one being replaced)",
                secrets.len()
            ));
        }
        if let Some(short) = secrets.iter().find(|secret| secret.len() < SECRET_SIZE_MIN) {
            return Err(format!(
                "a secret of {} bytes; at least {SECRET_SIZE_MIN} are needed (e.g. `openssl rand -hex 32`)",
                short.len()
            ));
        }
        Ok(PeerSecret { secrets })
    }

    /// Our proof for `side` of this handshake.
    pub fn prove(&self, side: Side, transcript: &Transcript<'_>) -> [u8; PROOF_SIZE] {
        mac(&self.secrets[0], side, transcript)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `proof` was made with one of our secrets (compared in
    /// constant time).
    pub fn verify(&self, side: Side, transcript: &Transcript<'_>, proof: &[u8]) -> bool {
        self.secrets
            .iter()
            .any(|secret| mac(secret, side, transcript).verify_slice(proof).is_ok())
    }
}

fn mac(secret: &[u8], side: Side, transcript: &Transcript<'_>) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(TRANSCRIPT_LABEL);
    mac.update(match side {
        Side::Acceptor => b"A",
        Side::Connector => b"C",
    });
    for name in [transcript.connector, transcript.acceptor] {
        mac.update(&(name.len() as u32).to_be_bytes());
        mac.update(name.as_bytes());
    }
    mac.update(&transcript.connector_nonce);
    mac.update(&transcript.acceptor_nonce);
    for cluster in [transcript.connector_cluster, transcript.acceptor_cluster] {
        mac.update(&cluster.map_or(0, |id| id.0).to_be_bytes());
    }
    mac
}

/// Fresh nonces: SHA-256 of a random seed and a counter. Unique for the
/// life of the process and unpredictable without the seed, which is all a
/// nonce needs, and one read of /dev/urandom at start, not one per
/// connection on the event loop.
pub struct NonceSource {
    seed: [u8; 32],
    counter: u64,
}

impl NonceSource {
    pub fn new(seed: [u8; 32]) -> NonceSource {
        NonceSource { seed, counter: 0 }
    }

    pub fn next_nonce(&mut self) -> [u8; NONCE_SIZE] {
        self.counter += 1;
        let mut hasher = Sha256::new();
        hasher.update(self.seed);
        hasher.update(self.counter.to_be_bytes());
        hasher.finalize().into()
    }
}

/// Random bytes from the operating system (cluster ids, nonce seeds).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .map_err(|error| format!("cannot read /dev/urandom: {error}"))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript<'a>() -> Transcript<'a> {
        Transcript {
            connector: "A",
            acceptor: "B",
            connector_nonce: [1; NONCE_SIZE],
            acceptor_nonce: [2; NONCE_SIZE],
            connector_cluster: Some(ClusterId(7)),
            acceptor_cluster: None,
        }
    }

    fn secret(text: &str) -> PeerSecret {
        PeerSecret::parse(text.as_bytes()).unwrap()
    }

    const KEY_1: &str = "0123456789abcdef0123456789abcdef";
    const KEY_2: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn a_proof_verifies_only_with_the_same_secret_side_and_transcript() {
        let ours = secret(KEY_1);
        let proof = ours.prove(Side::Connector, &transcript());
        assert!(ours.verify(Side::Connector, &transcript(), &proof));
        assert!(
            !ours.verify(Side::Acceptor, &transcript(), &proof),
            "reflected"
        );
        assert!(!secret(KEY_2).verify(Side::Connector, &transcript(), &proof));
        let mut other = transcript();
        other.acceptor_nonce[0] ^= 1;
        assert!(!ours.verify(Side::Connector, &other, &proof), "replayed");
        let mut renamed = transcript();
        renamed.connector = "C";
        assert!(!ours.verify(Side::Connector, &renamed, &proof));
        let mut recluster = transcript();
        recluster.acceptor_cluster = Some(ClusterId(7));
        assert!(!ours.verify(Side::Connector, &recluster, &proof));
        assert!(!ours.verify(Side::Connector, &transcript(), &proof[..31]));
    }

    #[test]
    fn during_a_rotation_both_secrets_verify_and_the_first_proves() {
        let rotating = secret(&format!("{KEY_2}\n{KEY_1}\n"));
        let old = secret(KEY_1);
        let new = secret(KEY_2);
        let by_old = old.prove(Side::Acceptor, &transcript());
        let by_new = new.prove(Side::Acceptor, &transcript());
        assert!(rotating.verify(Side::Acceptor, &transcript(), &by_old));
        assert!(rotating.verify(Side::Acceptor, &transcript(), &by_new));
        assert_eq!(rotating.prove(Side::Acceptor, &transcript()), by_new);
    }

    #[test]
    fn secret_files_are_checked() {
        assert!(PeerSecret::parse(b"").unwrap_err().contains("no secret"));
        assert!(PeerSecret::parse(b"short\n")
            .unwrap_err()
            .contains("at least 32"));
        let three = format!("{KEY_1}\n{KEY_2}\n{KEY_1}");
        assert!(PeerSecret::parse(three.as_bytes())
            .unwrap_err()
            .contains("at most 2"));
        let padded = secret(&format!("  {KEY_1}\r\n\n"));
        let plain = secret(KEY_1);
        let proof = plain.prove(Side::Connector, &transcript());
        assert!(padded.verify(Side::Connector, &transcript(), &proof));
    }

    #[test]
    fn nonces_do_not_repeat() {
        let mut source = NonceSource::new([9; 32]);
        let first = source.next_nonce();
        let second = source.next_nonce();
        assert_ne!(first, second);
        assert_ne!(NonceSource::new([8; 32]).next_nonce(), first);
    }
}
