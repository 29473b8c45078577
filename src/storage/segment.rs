//! The log's record format and the scan that recovery runs over each segment
//! file. A segment is a header followed by records; docs/STORAGE.md has the
//! byte tables. Everything here works on byte slices: the files are opened,
//! read and written by `disk.rs`.
//!
//! Integers are big-endian. Each record's CRC32 covers its length field and
//! everything after the CRC field, so a damaged length is caught too.

use crate::constants::APPEND_BATCH_SIZE_MAX;
use crate::core::{Entry, EntryKind, LogIndex, Term};
use byteorder::{BigEndian, ByteOrder};
use std::fmt;

/// "RLSG": the first bytes of every segment file.
pub const SEGMENT_MAGIC: u32 = 0x524C_5347;
pub const SEGMENT_FORMAT_VERSION: u16 = 1;
/// magic u32 | version u16 | reserved u16 (zero) | first index u64 | crc32 u32.
pub const SEGMENT_HEADER_SIZE: usize = 4 + 2 + 2 + 8 + 4;
/// length u32 | crc32 u32 | term u64 | index u64 | kind u8, then the payload.
pub const RECORD_HEADER_SIZE: usize = 4 + 4 + 8 + 8 + 1;
/// Largest payload a record holds: a full AppendEntries batch plus slack.
/// Larger is refused when encoding (assertion) and when decoding (corrupt).
pub const RECORD_PAYLOAD_SIZE_MAX: usize = APPEND_BATCH_SIZE_MAX + 64 * 1024;
/// Segment file names are the first index, zero-padded to this many digits
/// (u64::MAX has 20), then ".seg": they sort by name as they do by index.
pub const SEGMENT_FILE_NAME_DIGITS: usize = 20;
pub const SEGMENT_FILE_SUFFIX: &str = ".seg";

const RECORD_LENGTH_OFFSET: usize = 0;
const RECORD_CRC_OFFSET: usize = 4;
const RECORD_TERM_OFFSET: usize = 8;
const RECORD_INDEX_OFFSET: usize = 16;
const RECORD_KIND_OFFSET: usize = 24;
const SEGMENT_HEADER_CRC_OFFSET: usize = 16;

const _: () = assert!(RECORD_KIND_OFFSET + 1 == RECORD_HEADER_SIZE);
const _: () = assert!(SEGMENT_HEADER_CRC_OFFSET + 4 == SEGMENT_HEADER_SIZE);
const _: () = assert!(RECORD_PAYLOAD_SIZE_MAX <= u32::MAX as usize);
// Every command the state machine encodes fits one AppendEntries batch, so
// every entry the leader creates fits one record.
const _: () = assert!(APPEND_BATCH_SIZE_MAX <= RECORD_PAYLOAD_SIZE_MAX);

/// Where one record sits in its file, and its term: what truncation and the
/// write-side checks need without keeping the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordPosition {
    pub offset: u64,
    pub term: Term,
}

/// Disks tear writes at this granularity: a sector holds all of a write's
/// bytes or none of them, and a sector never written reads as zeros.
pub const SECTOR_SIZE: usize = 512;

/// Why the end of the newest segment was cut off. These are the only kinds
/// of damage recovery repairs, and only at the end of the newest segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TornReason {
    /// The segment header and everything after it are zero bytes: the file
    /// was created and preallocated, but its header never reached the disk.
    ZeroTail,
    /// The file ends inside the segment header.
    SegmentHeaderCut,
    /// The file ends inside a record header.
    RecordHeaderCut,
    /// The file ends inside a record payload.
    PayloadCut,
    /// The last record fails its CRC, and nothing but zero bytes (the
    /// preallocated rest of the file) follows it.
    CrcMismatchAtEnd,
    /// A record fails its CRC and one of the sectors it spans is all zero:
    /// its write reached the disk only in part. Later sectors of the same
    /// unfinished sync may have landed, so bytes may follow it.
    ZeroSector,
}

impl fmt::Display for TornReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            TornReason::ZeroTail => "only zero bytes, from the segment header on",
            TornReason::SegmentHeaderCut => "file ends inside the segment header",
            TornReason::RecordHeaderCut => "file ends inside a record header",
            TornReason::PayloadCut => "file ends inside a record payload",
            TornReason::CrcMismatchAtEnd => {
                "last record fails its CRC and only zero bytes follow it"
            }
            TornReason::ZeroSector => "record fails its CRC and holds a zero-filled sector",
        };
        f.write_str(text)
    }
}

/// A refusal: the byte offset in the file and a one-line description.
#[derive(Debug, PartialEq, Eq)]
pub struct Corruption {
    pub offset: u64,
    pub problem: String,
}

fn corruption(offset: usize, problem: String) -> Corruption {
    Corruption {
        offset: offset as u64,
        problem,
    }
}

pub fn file_name(first_index: LogIndex) -> String {
    assert!(first_index.0 >= 1, "index 0 holds no entry");
    format!(
        "{:0width$}{SEGMENT_FILE_SUFFIX}",
        first_index.0,
        width = SEGMENT_FILE_NAME_DIGITS
    )
}

/// The first index a segment file name announces; None unless the name is
/// exactly 20 digits (not all zero) and ".seg".
pub fn parse_file_name(name: &str) -> Option<LogIndex> {
    let digits = name.strip_suffix(SEGMENT_FILE_SUFFIX)?;
    if digits.len() != SEGMENT_FILE_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u64 = digits.parse().ok()?;
    (index >= 1).then_some(LogIndex(index))
}

pub fn encode_header(first_index: LogIndex, out: &mut Vec<u8>) {
    assert!(first_index.0 >= 1, "index 0 holds no entry");
    let start = out.len();
    out.resize(start + SEGMENT_HEADER_SIZE, 0);
    let header = &mut out[start..];
    BigEndian::write_u32(&mut header[0..4], SEGMENT_MAGIC);
    BigEndian::write_u16(&mut header[4..6], SEGMENT_FORMAT_VERSION);
    BigEndian::write_u64(&mut header[8..16], first_index.0);
    let crc = crc32fast::hash(&header[..SEGMENT_HEADER_CRC_OFFSET]);
    BigEndian::write_u32(&mut header[SEGMENT_HEADER_CRC_OFFSET..], crc);
}

/// What the first bytes of a segment file hold.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderRead {
    Valid {
        first_index: LogIndex,
    },
    /// Only possible in the newest segment: a crash while it was created.
    Torn(TornReason),
    Invalid(Corruption),
}

pub fn read_header(bytes: &[u8], is_newest: bool) -> HeaderRead {
    if bytes.len() < SEGMENT_HEADER_SIZE {
        if is_newest {
            return HeaderRead::Torn(TornReason::SegmentHeaderCut);
        }
        let problem = format!(
            "file has {} bytes, less than a segment header ({SEGMENT_HEADER_SIZE})",
            bytes.len()
        );
        return HeaderRead::Invalid(corruption(0, problem));
    }
    if is_newest && is_zero(bytes) {
        return HeaderRead::Torn(TornReason::ZeroTail);
    }
    let header = &bytes[..SEGMENT_HEADER_SIZE];
    let crc_stored = BigEndian::read_u32(&header[SEGMENT_HEADER_CRC_OFFSET..]);
    let crc_computed = crc32fast::hash(&header[..SEGMENT_HEADER_CRC_OFFSET]);
    if crc_stored != crc_computed {
        if is_newest && is_zero(&bytes[SEGMENT_HEADER_SIZE..]) {
            return HeaderRead::Torn(TornReason::CrcMismatchAtEnd);
        }
        let problem = format!(
            "segment header CRC mismatch (stored {crc_stored:#010x}, computed {crc_computed:#010x})"
        );
        return HeaderRead::Invalid(corruption(0, problem));
    }
    validate_header_fields(header)
}

fn validate_header_fields(header: &[u8]) -> HeaderRead {
    let magic = BigEndian::read_u32(&header[0..4]);
    let version = BigEndian::read_u16(&header[4..6]);
    let reserved = BigEndian::read_u16(&header[6..8]);
    let first_index = LogIndex(BigEndian::read_u64(&header[8..16]));
    let problem = if magic != SEGMENT_MAGIC {
        format!("not a segment file (magic {magic:#010x}, expected {SEGMENT_MAGIC:#010x})")
    } else if version != SEGMENT_FORMAT_VERSION {
        format!("segment format version {version}, this program reads {SEGMENT_FORMAT_VERSION}")
    } else if reserved != 0 {
        format!("reserved header field is {reserved}, expected 0")
    } else if first_index.0 == 0 {
        "segment header says first index 0".to_string()
    } else {
        return HeaderRead::Valid { first_index };
    };
    HeaderRead::Invalid(corruption(0, problem))
}

/// Appends one record to `out`. Callers bound the payload first (entries
/// come from peers); a payload over the bound here is a programming error.
pub fn encode_record(entry: &Entry, out: &mut Vec<u8>) {
    assert!(
        entry.data.len() <= RECORD_PAYLOAD_SIZE_MAX,
        "entry {} payload of {} bytes exceeds {RECORD_PAYLOAD_SIZE_MAX}",
        entry.index,
        entry.data.len()
    );
    assert!(entry.index.0 >= 1, "index 0 holds no entry");
    assert!(entry.term.0 >= 1, "entry {} has term 0", entry.index);
    let start = out.len();
    out.resize(start + RECORD_HEADER_SIZE, 0);
    let header = &mut out[start..];
    BigEndian::write_u32(&mut header[RECORD_LENGTH_OFFSET..], entry.data.len() as u32);
    BigEndian::write_u64(&mut header[RECORD_TERM_OFFSET..], entry.term.0);
    BigEndian::write_u64(&mut header[RECORD_INDEX_OFFSET..], entry.index.0);
    header[RECORD_KIND_OFFSET] = entry.kind as u8;
    out.extend_from_slice(&entry.data);
    let crc = record_crc(&out[start..]);
    BigEndian::write_u32(&mut out[start + RECORD_CRC_OFFSET..], crc);
    assert_eq!(out.len() - start, RECORD_HEADER_SIZE + entry.data.len());
}

/// CRC32 over the length field and everything after the CRC field.
fn record_crc(record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record[RECORD_LENGTH_OFFSET..RECORD_CRC_OFFSET]);
    hasher.update(&record[RECORD_TERM_OFFSET..]);
    hasher.finalize()
}

/// What the bytes at one offset hold, before any check against its
/// neighbours.
#[derive(Debug)]
enum RecordRead {
    Complete {
        entry: Entry,
        end: usize,
    },
    /// The file ends before the record does.
    Cut {
        reason: TornReason,
        size_needed: usize,
    },
    CrcMismatch {
        end: usize,
        crc_stored: u32,
        crc_computed: u32,
    },
    /// CRC-valid (or unreadable) but impossible: a bug, not a torn write.
    Impossible(String),
}

fn read_record(bytes: &[u8], offset: usize) -> RecordRead {
    let available = bytes.len() - offset;
    if available < RECORD_HEADER_SIZE {
        return RecordRead::Cut {
            reason: TornReason::RecordHeaderCut,
            size_needed: RECORD_HEADER_SIZE,
        };
    }
    let header = &bytes[offset..offset + RECORD_HEADER_SIZE];
    let payload_size = BigEndian::read_u32(&header[RECORD_LENGTH_OFFSET..]) as usize;
    if payload_size > RECORD_PAYLOAD_SIZE_MAX {
        return RecordRead::Impossible(format!(
            "record length {payload_size} exceeds the maximum {RECORD_PAYLOAD_SIZE_MAX}"
        ));
    }
    let size = RECORD_HEADER_SIZE + payload_size;
    if available < size {
        return RecordRead::Cut {
            reason: TornReason::PayloadCut,
            size_needed: size,
        };
    }
    let record = &bytes[offset..offset + size];
    let crc_stored = BigEndian::read_u32(&record[RECORD_CRC_OFFSET..]);
    let crc_computed = record_crc(record);
    if crc_stored != crc_computed {
        return RecordRead::CrcMismatch {
            end: offset + size,
            crc_stored,
            crc_computed,
        };
    }
    let kind_byte = record[RECORD_KIND_OFFSET];
    let Some(kind) = EntryKind::from_byte(kind_byte) else {
        return RecordRead::Impossible(format!("unknown entry kind {kind_byte}"));
    };
    let entry = Entry {
        term: Term(BigEndian::read_u64(&record[RECORD_TERM_OFFSET..])),
        index: LogIndex(BigEndian::read_u64(&record[RECORD_INDEX_OFFSET..])),
        kind,
        data: record[RECORD_HEADER_SIZE..].into(),
    };
    RecordRead::Complete {
        entry,
        end: offset + size,
    }
}

/// What the records of a segment must continue: the index the first record
/// carries (the one in the file name) and the last term before it.
#[derive(Clone, Copy, Debug)]
pub struct ScanStart {
    pub first_index: LogIndex,
    pub term_previous: Term,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// The records end at `offset`: end of file, or (newest segment only)
    /// where its preallocated zero bytes begin.
    Clean { offset: u64 },
    /// The newest segment's tail from `offset` to end of file is torn.
    Torn { offset: u64, reason: TornReason },
}

/// Reads every record after the segment header, appending entries to
/// `entries` and their positions to `positions`. Only the newest segment is
/// preallocated (its records end where zero bytes run to end of file) and
/// may end torn; anything else wrong is a `Corruption` at the record's
/// offset.
pub fn scan_records(
    bytes: &[u8],
    start: ScanStart,
    is_newest: bool,
    entries: &mut Vec<Entry>,
    positions: &mut Vec<RecordPosition>,
) -> Result<ScanEnd, Corruption> {
    assert!(bytes.len() >= SEGMENT_HEADER_SIZE);
    let mut offset = SEGMENT_HEADER_SIZE;
    let mut index_expected = start.first_index;
    let mut term_previous = start.term_previous;
    // Every record takes at least a header, which bounds the loop.
    for _ in 0..=bytes.len() / RECORD_HEADER_SIZE {
        if offset == bytes.len() || (is_newest && is_zero(&bytes[offset..])) {
            return Ok(ScanEnd::Clean {
                offset: offset as u64,
            });
        }
        match read_record(bytes, offset) {
            RecordRead::Complete { entry, end } => {
                check_sequence(&entry, index_expected, term_previous)
                    .map_err(|problem| corruption(offset, problem))?;
                index_expected = entry.index.next();
                term_previous = entry.term;
                positions.push(RecordPosition {
                    offset: offset as u64,
                    term: entry.term,
                });
                entries.push(entry);
                offset = end;
            }
            RecordRead::Cut { reason, .. } if is_newest => return Ok(torn(offset, reason)),
            RecordRead::CrcMismatch { end, .. } if is_newest && is_zero(&bytes[end..]) => {
                return Ok(torn(offset, TornReason::CrcMismatchAtEnd));
            }
            RecordRead::CrcMismatch { end, .. }
                if is_newest && holds_zero_sector(bytes, offset, end) =>
            {
                return Ok(torn(offset, TornReason::ZeroSector));
            }
            damaged => return Err(describe_damage(damaged, bytes.len(), offset)),
        }
    }
    unreachable!("each pass consumes a record header or returns");
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

/// Whether any sector-aligned piece of `bytes[start..end]` is all zero: the
/// mark of a write torn between sectors (the same test etcd's WAL applies).
/// A payload with a whole sector of real zeros also matches, which is why
/// this is asked only of a record that already fails its CRC.
fn holds_zero_sector(bytes: &[u8], start: usize, end: usize) -> bool {
    let mut piece_start = start;
    while piece_start < end {
        let sector_end = (piece_start / SECTOR_SIZE + 1) * SECTOR_SIZE;
        let piece_end = sector_end.min(end);
        if is_zero(&bytes[piece_start..piece_end]) {
            return true;
        }
        piece_start = piece_end;
    }
    false
}

fn torn(offset: usize, reason: TornReason) -> ScanEnd {
    ScanEnd::Torn {
        offset: offset as u64,
        reason,
    }
}

/// Indexes are consecutive, terms never decrease (Raft §5.3, Log Matching),
/// and no entry has term 0.
fn check_sequence(
    entry: &Entry,
    index_expected: LogIndex,
    term_previous: Term,
) -> Result<(), String> {
    if entry.index != index_expected {
        return Err(format!(
            "record has index {}, expected {index_expected} (gap or reordering)",
            entry.index
        ));
    }
    if entry.term.0 == 0 {
        return Err(format!("entry {} has term 0", entry.index));
    }
    if entry.term < term_previous {
        return Err(format!(
            "entry {} has term {}, below the previous entry's term {term_previous}",
            entry.index, entry.term
        ));
    }
    Ok(())
}

fn describe_damage(damaged: RecordRead, file_size: usize, offset: usize) -> Corruption {
    let problem = match damaged {
        RecordRead::Cut { size_needed, .. } => format!(
            "record needs {size_needed} bytes but only {} remain, and this is not the end of the newest segment",
            file_size - offset
        ),
        RecordRead::CrcMismatch {
            crc_stored,
            crc_computed,
            ..
        } => format!(
            "record CRC mismatch (stored {crc_stored:#010x}, computed {crc_computed:#010x}) before the end of the log"
        ),
        RecordRead::Impossible(problem) => problem,
        RecordRead::Complete { .. } => unreachable!("a complete record is not damage"),
    };
    corruption(offset, problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_bytes(entries: &[Entry]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_header(entries[0].index, &mut bytes);
        for entry in entries {
            encode_record(entry, &mut bytes);
        }
        bytes
    }

    fn scan(bytes: &[u8], is_newest: bool) -> Result<(Vec<Entry>, ScanEnd), Corruption> {
        let mut entries = Vec::new();
        let mut positions = Vec::new();
        let start = ScanStart {
            first_index: LogIndex(1),
            term_previous: Term(0),
        };
        let end = scan_records(bytes, start, is_newest, &mut entries, &mut positions)?;
        assert_eq!(entries.len(), positions.len());
        Ok((entries, end))
    }

    #[test]
    fn records_round_trip() {
        let configuration = crate::core::Configuration::numbered(3);
        let entries = vec![
            Entry::command(1, 1, b""),
            Entry::command(2, 1, b"set x 1"),
            Entry::command(3, 4, &[7; 300]),
            Entry {
                kind: EntryKind::Configuration,
                ..Entry::command(4, 4, &configuration.to_bytes())
            },
        ];
        let bytes = segment_bytes(&entries);
        assert_eq!(
            read_header(&bytes, false),
            HeaderRead::Valid {
                first_index: LogIndex(1)
            }
        );
        assert_eq!(
            scan(&bytes, false).unwrap(),
            (
                entries,
                ScanEnd::Clean {
                    offset: bytes.len() as u64
                }
            )
        );
    }

    #[test]
    fn file_names_are_strict() {
        assert_eq!(file_name(LogIndex(42)), "00000000000000000042.seg");
        assert_eq!(
            parse_file_name("00000000000000000042.seg"),
            Some(LogIndex(42))
        );
        assert_eq!(
            parse_file_name(&file_name(LogIndex(u64::MAX))),
            Some(LogIndex(u64::MAX))
        );
        for bad in [
            "42.seg",
            "00000000000000000000.seg",
            "0000000000000000004x.seg",
            "00000000000000000042.log",
            "99999999999999999999.seg",
            "+0000000000000000042.seg",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_kind_with_valid_crc_is_impossible() {
        let mut bytes = segment_bytes(&[Entry::command(1, 1, b"a"), Entry::command(2, 1, b"b")]);
        let offset = SEGMENT_HEADER_SIZE;
        bytes[offset + RECORD_KIND_OFFSET] = 9;
        let crc = record_crc(&bytes[offset..offset + RECORD_HEADER_SIZE + 1]);
        BigEndian::write_u32(&mut bytes[offset + RECORD_CRC_OFFSET..], crc);
        let error = scan(&bytes, true).unwrap_err();
        assert_eq!(error.offset, offset as u64);
        assert!(
            error.problem.contains("unknown entry kind 9"),
            "{}",
            error.problem
        );
    }

    #[test]
    fn length_over_bound_is_refused_even_at_the_end() {
        let mut bytes = segment_bytes(&[Entry::command(1, 1, b"a")]);
        let length = (RECORD_PAYLOAD_SIZE_MAX + 1) as u32;
        BigEndian::write_u32(&mut bytes[SEGMENT_HEADER_SIZE..], length);
        let error = scan(&bytes, true).unwrap_err();
        assert!(
            error.problem.contains("exceeds the maximum"),
            "{}",
            error.problem
        );
    }

    #[test]
    fn torn_tails_only_in_the_newest_segment() {
        let bytes = segment_bytes(&[Entry::command(1, 1, b"abc"), Entry::command(2, 1, b"def")]);
        let cut = &bytes[..bytes.len() - 1];
        let (entries, end) = scan(cut, true).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            end,
            ScanEnd::Torn {
                offset: (SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE + 3) as u64,
                reason: TornReason::PayloadCut
            }
        );
        assert!(scan(cut, false).is_err());
    }

    #[test]
    fn torn_segment_headers() {
        let bytes = segment_bytes(&[Entry::command(1, 1, b"abc")]);
        let torn = |slice: &[u8]| match read_header(slice, true) {
            HeaderRead::Torn(reason) => reason,
            other => panic!("expected torn, got {other:?}"),
        };
        assert_eq!(torn(&bytes[..7]), TornReason::SegmentHeaderCut);
        assert_eq!(torn(&[0; 100]), TornReason::ZeroTail);
        let mut damaged = bytes[..SEGMENT_HEADER_SIZE].to_vec();
        damaged[3] ^= 1;
        assert_eq!(torn(&damaged), TornReason::CrcMismatchAtEnd);
        assert!(matches!(
            read_header(&damaged, false),
            HeaderRead::Invalid(_)
        ));
        damaged.push(0);
        assert_eq!(torn(&damaged), TornReason::CrcMismatchAtEnd, "zeros follow");
        damaged.push(1);
        assert!(matches!(
            read_header(&damaged, true),
            HeaderRead::Invalid(_)
        ));
    }
}
