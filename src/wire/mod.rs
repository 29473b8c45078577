//! The wire codec: frames on a byte stream ↔ typed values. Pure: it works on
//! byte buffers and never touches a socket, so the runtime and the tests drive
//! it the same way.
//!
//! `frame` holds the framing (length prefix, version, type byte), the error
//! type and the incremental decoder; `codec` turns payloads into values and
//! back. The byte layout of every frame is documented at the top of `frame.rs`
//! and in docs/PROTOCOL.md.

mod codec;
mod frame;

pub use codec::{ClientRequest, ClientResponse, Frame, PayloadError, PeerHello};
pub use frame::{encode_frame, encode_message, FrameDecoder, WireError};
