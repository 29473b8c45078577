//! The wire codec: frames on a byte stream ↔ typed values. Pure: it works on
//! byte buffers and never touches a socket, so the runtime and the tests drive
//! it the same way.
//!
//! `frame` holds the framing (length prefix, version, type byte), the error
//! type and the incremental decoder; `codec` turns payloads into values and
//! back; `handshake` holds the frames that open a peer connection. The byte
//! layout of every frame is documented in docs/PROTOCOL.md.

mod codec;
mod frame;
mod handshake;

pub use codec::{ClientRequest, ClientResponse, Frame, PayloadError};
pub use frame::{encode_client_response, encode_frame, encode_message, FrameDecoder, WireError};
pub use handshake::{
    PeerChallenge, PeerHello, PeerProof, PeerRefused, PeerWelcome, RefusalReason, ADDRESS_SIZE_MAX,
    NONCE_SIZE, PROOF_SIZE,
};
