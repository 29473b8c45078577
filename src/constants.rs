//! Every limit in one place. Each queue, buffer, batch and frame has a bound
//! from here; the asserts at the bottom check how the limits relate.

/// Largest frame accepted on the wire (length prefix excluded). A declared
/// length above this closes the connection.
pub const FRAME_SIZE_MAX: usize = 4 * 1024 * 1024;

/// Largest key and value a client may write.
pub const KEY_SIZE_MAX: usize = 1024;
pub const VALUE_SIZE_MAX: usize = 64 * 1024;

/// Longest command line a client may send (verb, key, value, separators).
pub const COMMAND_SIZE_MAX: usize = KEY_SIZE_MAX + VALUE_SIZE_MAX + 64;

/// Largest payload of one log entry. A client command's record (tag,
/// session, command) stays far below it; the decoder and storage refuse more.
pub const ENTRY_DATA_SIZE_MAX: usize = 256 * 1024;

/// Largest AppendEntries batch, by entry count and by payload bytes.
/// These, the in-flight window, the apply batch and READS_PENDING_MAX are
/// the defaults and the ceilings of the core's `Limits` (core/config.rs),
/// which a node may set lower, never higher.
pub const APPEND_BATCH_ENTRIES_MAX: usize = 4096;
pub const APPEND_BATCH_SIZE_MAX: usize = 1024 * 1024;

/// AppendEntries a leader keeps in flight to one follower before it waits
/// for acknowledgements (pipelining window), by count and by the bytes of
/// their entries. The window always admits one batch, however large.
pub const INFLIGHT_APPENDS_MAX: usize = 32;
pub const INFLIGHT_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Largest piece of a snapshot file in one InstallSnapshot message: the
/// default and ceiling of the core's `Limits::snapshot_chunk_size_max`.
/// Well under the frame limit, which must also hold the message's header
/// and the snapshot's metadata.
pub const SNAPSHOT_CHUNK_SIZE_MAX: usize = 1024 * 1024;

/// InstallSnapshot chunks a leader keeps in flight to one follower before
/// it waits for the follower to say it stored them (default and ceiling
/// of `Limits::inflight_snapshot_chunks_max`).
pub const INFLIGHT_SNAPSHOT_CHUNKS_MAX: usize = 4;

/// Committed entries handed to the state machine in one pass.
pub const APPLY_BATCH_ENTRIES_MAX: usize = 8192;

/// Client proposals waiting for commit on one leader; beyond this a
/// proposal is refused (certainly not appended).
pub const PENDING_PROPOSALS_MAX: usize = 65536;

/// Bytes queued for sending on one connection. A peer or client that stops
/// reading is disconnected rather than allowed to grow memory.
pub const CONNECTION_OUTPUT_SIZE_MAX: usize = 64 * 1024 * 1024;

/// Bytes read from one socket per loop turn before the loop moves on, so one
/// busy connection cannot starve the others.
pub const CONNECTION_READ_SIZE_PER_TURN_MAX: usize = 4 * 1024 * 1024;

/// ReadIndex reads waiting for leadership confirmation on one leader.
pub const READS_PENDING_MAX: usize = 65536;

/// Client sessions remembered by the state machine (each keeps its last
/// reply); beyond this the idlest is evicted.
pub const SESSIONS_MAX: usize = 16384;

/// Open client connections (and accepted connections not yet identified).
/// At the limit, the idlest one is closed to admit a new one; peers have
/// slots of their own beyond it.
pub const CLIENT_CONNECTIONS_MAX: usize = 4096;

/// Descriptors kept for everything that is not a client connection (the
/// listener, peers, log segments, the hard state, stdio, the poll): client
/// slots are what the open-files limit leaves beyond these.
pub const DESCRIPTORS_RESERVED: usize = 64;

/// Client connections looked at, from the idlest, for one that may be
/// closed to admit a new one (those with requests in flight are skipped):
/// a bound, so that a full table of busy clients costs little to scan.
pub const EVICTION_SCAN_MAX: usize = 64;

/// Accepted connections the kernel queues before we accept them. mio and
/// the standard library ask for 128; 256 clients reconnecting at once after
/// a failover would then wait out SYN retries (1 s, then 3 s). The kernel
/// caps it at `net.core.somaxconn` (4096 on current Linux).
pub const LISTEN_BACKLOG: i32 = 1024;

/// A client connection that sends nothing for this long, with nothing in
/// flight, is closed (its client reconnects when it has something to say).
pub const CLIENT_IDLE_TIMEOUT_MS: u64 = 60_000;

/// A connection that holds part of a frame for this long is closed: a
/// client cannot pin a receive buffer (and a slot) by sending half a frame.
pub const PARTIAL_FRAME_TIMEOUT_MS: u64 = 10_000;

/// An accepted connection must say what it is (its first frame, or the
/// whole peer handshake) within this.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;

/// How often connections are checked against the timeouts above.
pub const CONNECTION_SWEEP_INTERVAL_MS: u64 = 1_000;

/// A peer that refused us (a configuration problem a person must fix) is
/// tried again after this, doubling up to the maximum, jittered.
pub const REFUSED_RECONNECT_DELAY_MS_MIN: u64 = 1_000;
pub const REFUSED_RECONNECT_DELAY_MS_MAX: u64 = 30_000;

/// Refusals (given, and received) remembered for STATUS. Members cause a
/// few; anyone who connects can cause one per connection under a made-up
/// id, so beyond this the oldest is forgotten.
pub const REFUSALS_REMEMBERED_MAX: usize = 128;

/// Repeated log lines for one reason: at most one per this interval, with
/// the count of those left out.
pub const LOG_REPEAT_INTERVAL_MS: u64 = 10_000;

/// Requests read from one client connection that may wait for replies.
pub const CLIENT_REQUESTS_IN_FLIGHT_MAX: usize = 1024;

/// Cluster size limit (ids fit a byte on the wire and quorums stay sane).
pub const CLUSTER_SIZE_MAX: usize = 15;

/// Length limit of a node id string.
pub const NODE_ID_SIZE_MAX: usize = 64;

/// Reconnect backoff for outgoing peer connections.
pub const RECONNECT_DELAY_MS_MIN: u64 = 10;
pub const RECONNECT_DELAY_MS_MAX: u64 = 500;

/// How long the server waits for a proposal to commit before answering
/// `ERR TIMEOUT`.
pub const CLIENT_REQUEST_TIMEOUT_MS: u64 = 5000;

/// Events handled per poll call.
pub const POLL_EVENTS_MAX: usize = 1024;

const _: () = assert!(APPEND_BATCH_SIZE_MAX + 1024 * 64 <= FRAME_SIZE_MAX);
const _: () = assert!(ENTRY_DATA_SIZE_MAX <= APPEND_BATCH_SIZE_MAX);
// A chunk, its header and the snapshot's metadata (voters included) fit a frame.
const _: () = assert!(SNAPSHOT_CHUNK_SIZE_MAX + 1024 * 64 <= FRAME_SIZE_MAX);
// A full window of chunks fits a connection's output queue, with room to spare.
const _: () = assert!(
    INFLIGHT_SNAPSHOT_CHUNKS_MAX * (SNAPSHOT_CHUNK_SIZE_MAX + 1024 * 64)
        <= CONNECTION_OUTPUT_SIZE_MAX / 2
);
const _: () = assert!(crate::kv::COMMAND_ENCODED_SIZE_MAX + 17 <= ENTRY_DATA_SIZE_MAX);
const _: () = assert!(COMMAND_SIZE_MAX + 64 <= FRAME_SIZE_MAX);
const _: () =
    assert!(CLIENT_CONNECTIONS_MAX * CLIENT_REQUESTS_IN_FLIGHT_MAX >= PENDING_PROPOSALS_MAX);
const _: () = assert!(RECONNECT_DELAY_MS_MIN <= RECONNECT_DELAY_MS_MAX);
const _: () = assert!(REFUSED_RECONNECT_DELAY_MS_MIN <= REFUSED_RECONNECT_DELAY_MS_MAX);
const _: () = assert!(RECONNECT_DELAY_MS_MAX <= REFUSED_RECONNECT_DELAY_MS_MIN);
// The sweep is finer than the shortest timeout it enforces, and the
// timeouts nest: say what you are, finish a frame, then you may idle.
const _: () = assert!(CONNECTION_SWEEP_INTERVAL_MS < HANDSHAKE_TIMEOUT_MS);
const _: () = assert!(HANDSHAKE_TIMEOUT_MS <= PARTIAL_FRAME_TIMEOUT_MS);
const _: () = assert!(PARTIAL_FRAME_TIMEOUT_MS <= CLIENT_IDLE_TIMEOUT_MS);
const _: () = assert!(LISTEN_BACKLOG as usize <= CLIENT_CONNECTIONS_MAX);
// Every client a node serves can hold a session, with room for abandoned ones.
const _: () = assert!(SESSIONS_MAX >= 2 * CLIENT_CONNECTIONS_MAX);
const _: () = assert!(APPEND_BATCH_ENTRIES_MAX <= APPLY_BATCH_ENTRIES_MAX);
