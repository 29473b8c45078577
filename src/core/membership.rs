//! Who belongs to the cluster: the configuration a log carries (its
//! Bootstrap entry and every `Configuration` entry), its byte layout, and
//! the single-server changes that make one configuration from the last
//! (dissertation §4.1). One configuration is in effect at a time, so every
//! quorum stays one majority of its voters.
//!
//! Addresses are `core::net::SocketAddr`: a plain value (parsing and
//! printing only), so this module stays as pure as the rest of the core.

use super::types::{Entry, EntryKind, LogIndex, NodeId, Term};
use crate::constants::{CLUSTER_SIZE_MAX, ENTRY_DATA_SIZE_MAX, NODE_ID_SIZE_MAX};
use core::net::SocketAddr;
use std::fmt;

/// Voters and learners in one configuration.
pub const MEMBERS_MAX: usize = CLUSTER_SIZE_MAX;
/// Removals a configuration remembers, so a removed name is refused on a
/// re-add and a removed node learns what happened to it.
pub const REMOVED_REMEMBERED_MAX: usize = 16;
/// An encoded configuration, at most.
pub const CONFIGURATION_SIZE_MAX: usize = 8192;
/// A member's address text (`[v6]:port` fits with room to spare).
pub const ADDRESS_SIZE_MAX: usize = 64;

const FORMAT: u8 = 1;
const HEADER_SIZE: usize = 1 + 1 + 4 + 4 + 1;
const MEMBER_SIZE_MAX: usize = 4 + 1 + 1 + NODE_ID_SIZE_MAX + 1 + ADDRESS_SIZE_MAX;
const REMOVED_SIZE_MAX: usize = 4 + 1 + NODE_ID_SIZE_MAX + 8 + 8;
/// The largest configuration `encode` can write: 3,397 bytes.
pub const CONFIGURATION_ENCODED_SIZE_WORST: usize =
    HEADER_SIZE + MEMBERS_MAX * MEMBER_SIZE_MAX + 1 + REMOVED_REMEMBERED_MAX * REMOVED_SIZE_MAX;
const _: () = assert!(CONFIGURATION_ENCODED_SIZE_WORST <= CONFIGURATION_SIZE_MAX);
// A Bootstrap entry is the cluster id and a configuration.
const _: () = assert!(CONFIGURATION_SIZE_MAX + 8 <= ENTRY_DATA_SIZE_MAX);
// Counts and name lengths are single bytes.
const _: () = assert!(MEMBERS_MAX <= u8::MAX as usize);
const _: () = assert!(NODE_ID_SIZE_MAX <= u8::MAX as usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    /// Counts in every majority.
    Voter = 1,
    /// Receives the log, never counts (a node catching up before it votes).
    Learner = 2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub kind: MemberKind,
    pub name: String,
    pub address: SocketAddr,
}

/// A removal the configuration remembers: which node, and the entry that
/// removed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedMember {
    pub id: NodeId,
    pub name: String,
    pub index: LogIndex,
    pub term: Term,
}

/// The change that made a configuration; the node it names is the
/// layout's `subject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Bootstrap,
    AddLearner(NodeId),
    Promote(NodeId),
    Remove(NodeId),
    Update(NodeId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configuration {
    pub cause: Cause,
    /// Every id below it was handed out once; ids are never reused, since
    /// votes (`voted_for`) and old snapshots hold them.
    pub next_id: u32,
    /// Ascending by id; 1..=MEMBERS_MAX, at least one voter, names and ids
    /// distinct.
    pub members: Vec<Member>,
    /// The latest removals, oldest first, at most REMOVED_REMEMBERED_MAX.
    pub removed: Vec<RemovedMember>,
}

/// A single-server change (dissertation §4.1): each moves one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    AddLearner { name: String, address: SocketAddr },
    Promote(NodeId),
    Remove(NodeId),
    Update { id: NodeId, address: SocketAddr },
}

/// Why `apply` made no new configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeRefused {
    NoSuchMember(NodeId),
    AlreadyMember {
        kind: MemberKind,
        address: SocketAddr,
    },
    WasRemoved {
        index: LogIndex,
        term: Term,
    },
    NotALearner,
    LastVoter,
    TooManyMembers,
    IdsExhausted,
    SameAddress,
}

/// A configuration's bytes that do not decode: which field, where, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigurationError {
    pub field: &'static str,
    pub offset: usize,
    pub problem: &'static str,
}

impl fmt::Display for ConfigurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ConfigurationError {
            field,
            offset,
            problem,
        } = self;
        write!(f, "configuration {field} at offset {offset}: {problem}")
    }
}

impl fmt::Display for ChangeRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeRefused::NoSuchMember(id) => write!(f, "{id} is not a member"),
            ChangeRefused::AlreadyMember { kind, address } => {
                let kind = match kind {
                    MemberKind::Voter => "voter",
                    MemberKind::Learner => "learner",
                };
                write!(f, "already a member ({kind} at {address})")
            }
            ChangeRefused::WasRemoved { index, term } => {
                write!(f, "was removed at index {index} (term {term})")
            }
            ChangeRefused::NotALearner => write!(f, "not a learner"),
            ChangeRefused::LastVoter => write!(f, "the last voter cannot be removed"),
            ChangeRefused::TooManyMembers => {
                write!(f, "the cluster has {MEMBERS_MAX} members already")
            }
            ChangeRefused::IdsExhausted => write!(f, "no node ids are left"),
            ChangeRefused::SameAddress => write!(f, "the member has that address already"),
        }
    }
}

/// The name rule of `--id` and `--peers`: names appear in peer lists and
/// log lines, so they keep to a safe alphabet.
pub fn valid_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    !name.is_empty() && name.len() <= NODE_ID_SIZE_MAX && name.chars().all(allowed)
}

impl Configuration {
    /// A new cluster's configuration from its member list: every member a
    /// voter, numbered 0..n in sorted name order, the numbering every data
    /// dir written before configurations existed holds in its votes. The
    /// options parser has refused bad names, duplicates and too many.
    pub fn bootstrap(mut members: Vec<(String, SocketAddr)>) -> Configuration {
        members.sort();
        assert!((1..=MEMBERS_MAX).contains(&members.len()), "member count");
        let members: Vec<Member> = members
            .into_iter()
            .zip(0..)
            .map(|((name, address), id)| Member {
                id: NodeId(id),
                kind: MemberKind::Voter,
                name,
                address: portable(address),
            })
            .collect();
        for pair in members.windows(2) {
            assert!(pair[0].name != pair[1].name, "member named twice");
        }
        assert!(members.iter().all(|member| valid_name(&member.name)));
        Configuration {
            cause: Cause::Bootstrap,
            next_id: members.len() as u32,
            members,
            removed: Vec::new(),
        }
    }

    /// The configuration an entry carries, if any: a `Configuration`
    /// entry's payload, or what follows a `Bootstrap` entry's cluster id
    /// (nothing in a legacy 8-byte Bootstrap).
    pub fn of_entry(entry: &Entry) -> Option<Result<Configuration, ConfigurationError>> {
        let bytes = match entry.kind {
            EntryKind::Configuration => &entry.data[..],
            EntryKind::Bootstrap => entry.data.get(8..).filter(|rest| !rest.is_empty())?,
            EntryKind::Noop | EntryKind::Command => return None,
        };
        Some(Configuration::decode(bytes))
    }

    /// The payload of a new cluster's Bootstrap entry: its id, then this.
    pub fn bootstrap_payload(&self, cluster_id: super::types::ClusterId) -> Vec<u8> {
        let mut payload = cluster_id.to_bytes().to_vec();
        self.encode(&mut payload);
        payload
    }

    /// `count` voters named n00, n01, … at 127.0.0.1:9000 and up: for tests
    /// and the simulator, whose nodes are only numbered.
    pub fn numbered(count: usize) -> Configuration {
        let member = |node: usize| {
            let address = SocketAddr::from(([127, 0, 0, 1], 9000 + node as u16));
            (format!("n{node:02}"), address)
        };
        Configuration::bootstrap((0..count).map(member).collect())
    }

    pub fn member(&self, id: NodeId) -> Option<&Member> {
        let position = self.members.binary_search_by_key(&id, |member| member.id);
        position.ok().map(|position| &self.members[position])
    }

    pub fn by_name(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|member| member.name == name)
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.member(id)
            .is_some_and(|member| member.kind == MemberKind::Voter)
    }

    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        let voters = self.members.iter();
        let voters = voters.filter(|member| member.kind == MemberKind::Voter);
        voters.map(|member| member.id)
    }

    /// A majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters().count() / 2 + 1
    }

    pub fn removed_entry(&self, id: NodeId) -> Option<&RemovedMember> {
        self.removed.iter().find(|removed| removed.id == id)
    }

    /// The configuration `change` makes of this one, in the entry at
    /// (`index`, `term`) (a removal remembers where it happened).
    pub fn apply(
        &self,
        change: &Change,
        index: LogIndex,
        term: Term,
    ) -> Result<Configuration, ChangeRefused> {
        let mut next = self.clone();
        match change {
            Change::AddLearner { name, address } => {
                next.cause = Cause::AddLearner(self.add_learner(&mut next, name, *address)?);
            }
            Change::Promote(id) => {
                let member = next.member_mut(*id)?;
                if member.kind != MemberKind::Learner {
                    return Err(ChangeRefused::NotALearner);
                }
                member.kind = MemberKind::Voter;
                next.cause = Cause::Promote(*id);
            }
            Change::Remove(id) => {
                self.remove(&mut next, *id, index, term)?;
                next.cause = Cause::Remove(*id);
            }
            Change::Update { id, address } => {
                let member = next.member_mut(*id)?;
                if member.address == *address {
                    return Err(ChangeRefused::SameAddress);
                }
                member.address = *address;
                next.cause = Cause::Update(*id);
            }
        }
        Ok(next)
    }

    fn add_learner(
        &self,
        next: &mut Configuration,
        name: &str,
        address: SocketAddr,
    ) -> Result<NodeId, ChangeRefused> {
        assert!(valid_name(name), "the parser checks names: {name:?}");
        if let Some(member) = self.by_name(name) {
            let (kind, address) = (member.kind, member.address);
            return Err(ChangeRefused::AlreadyMember { kind, address });
        }
        if let Some(removed) = self.removed.iter().find(|removed| removed.name == name) {
            let (index, term) = (removed.index, removed.term);
            return Err(ChangeRefused::WasRemoved { index, term });
        }
        if self.members.len() >= MEMBERS_MAX {
            return Err(ChangeRefused::TooManyMembers);
        }
        if self.next_id == u32::MAX {
            return Err(ChangeRefused::IdsExhausted);
        }
        let id = NodeId(self.next_id);
        next.next_id += 1;
        next.members.push(Member {
            id,
            kind: MemberKind::Learner,
            name: name.to_string(),
            address,
        });
        Ok(id)
    }

    fn remove(
        &self,
        next: &mut Configuration,
        id: NodeId,
        index: LogIndex,
        term: Term,
    ) -> Result<(), ChangeRefused> {
        let member = self.member(id).ok_or(ChangeRefused::NoSuchMember(id))?;
        if member.kind == MemberKind::Voter && self.voters().count() == 1 {
            return Err(ChangeRefused::LastVoter);
        }
        next.members.retain(|member| member.id != id);
        next.removed.push(RemovedMember {
            id,
            name: member.name.clone(),
            index,
            term,
        });
        if next.removed.len() > REMOVED_REMEMBERED_MAX {
            next.removed.remove(0);
        }
        Ok(())
    }

    fn member_mut(&mut self, id: NodeId) -> Result<&mut Member, ChangeRefused> {
        self.members
            .iter_mut()
            .find(|member| member.id == id)
            .ok_or(ChangeRefused::NoSuchMember(id))
    }

    /// Appends the layout of docs/STORAGE.md ("Configuration"): big-endian
    /// header, members ascending by id, removals oldest first.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let (cause, subject) = match self.cause {
            Cause::Bootstrap => (0, NodeId(0)),
            Cause::AddLearner(id) => (1, id),
            Cause::Promote(id) => (2, id),
            Cause::Remove(id) => (3, id),
            Cause::Update(id) => (4, id),
        };
        out.extend_from_slice(&[FORMAT, cause]);
        out.extend_from_slice(&subject.0.to_be_bytes());
        out.extend_from_slice(&self.next_id.to_be_bytes());
        out.push(self.members.len() as u8);
        for member in &self.members {
            out.extend_from_slice(&member.id.0.to_be_bytes());
            out.push(member.kind as u8);
            push_text(out, &member.name);
            push_text(out, &address_text(member.address));
        }
        out.push(self.removed.len() as u8);
        for removed in &self.removed {
            out.extend_from_slice(&removed.id.0.to_be_bytes());
            push_text(out, &removed.name);
            out.extend_from_slice(&removed.index.0.to_be_bytes());
            out.extend_from_slice(&removed.term.0.to_be_bytes());
        }
        assert!(out.len() - start <= CONFIGURATION_ENCODED_SIZE_WORST);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Reads what `encode` wrote, refusing anything it could not have
    /// written: the bytes come from peers and disks.
    pub fn decode(bytes: &[u8]) -> Result<Configuration, ConfigurationError> {
        let mut reader = Reader { bytes, offset: 0 };
        if reader.u8("format")? != FORMAT {
            return Err(reader.refuse_last("format", 1, "unknown format"));
        }
        let cause_byte = reader.u8("cause")?;
        if cause_byte > 4 {
            return Err(reader.refuse_last("cause", 1, "unknown cause"));
        }
        let subject = NodeId(reader.u32("subject")?);
        let next_id = reader.u32("next_id")?;
        let members = read_members(&mut reader, next_id)?;
        let removed = read_removed(&mut reader, next_id, &members)?;
        if reader.offset != bytes.len() {
            return Err(reader.refuse("end", "trailing bytes"));
        }
        let cause = match cause_byte {
            0 => Cause::Bootstrap,
            1 => Cause::AddLearner(subject),
            2 => Cause::Promote(subject),
            3 => Cause::Remove(subject),
            _ => Cause::Update(subject),
        };
        let configuration = Configuration {
            cause,
            next_id,
            members,
            removed,
        };
        if !configuration.subject_fits_cause() {
            let problem = "does not fit the cause";
            return Err(ConfigurationError {
                field: "subject",
                offset: 2,
                problem,
            });
        }
        Ok(configuration)
    }

    /// The node a change names is where the change left it.
    fn subject_fits_cause(&self) -> bool {
        let kind = |id| self.member(id).map(|member| member.kind);
        match self.cause {
            Cause::Bootstrap => true,
            Cause::AddLearner(id) => kind(id) == Some(MemberKind::Learner),
            Cause::Promote(id) => kind(id) == Some(MemberKind::Voter),
            Cause::Remove(id) => self.removed.last().is_some_and(|last| last.id == id),
            Cause::Update(id) => kind(id).is_some(),
        }
    }
}

fn read_members(reader: &mut Reader<'_>, next_id: u32) -> Result<Vec<Member>, ConfigurationError> {
    let count = usize::from(reader.u8("member count")?);
    if !(1..=MEMBERS_MAX).contains(&count) {
        return Err(reader.refuse_last("member count", 1, "must be 1..=15"));
    }
    let mut members: Vec<Member> = Vec::with_capacity(count);
    for _ in 0..count {
        let id = NodeId(reader.u32("member id")?);
        if members.last().is_some_and(|last| last.id >= id) {
            return Err(reader.refuse_last("member id", 4, "not ascending"));
        }
        if id.0 >= next_id {
            return Err(reader.refuse_last("member id", 4, "not below next_id"));
        }
        let kind = match reader.u8("member kind")? {
            1 => MemberKind::Voter,
            2 => MemberKind::Learner,
            _ => return Err(reader.refuse_last("member kind", 1, "unknown kind")),
        };
        let name_offset = reader.offset + 1; // past the length byte
        let name = reader.name("member name")?;
        if members.iter().any(|member| member.name == name) {
            return Err(reader.refuse_at("member name", name_offset, "named twice"));
        }
        let address = reader.address()?;
        members.push(Member {
            id,
            kind,
            name,
            address,
        });
    }
    if !members
        .iter()
        .any(|member| member.kind == MemberKind::Voter)
    {
        return Err(reader.refuse("member kind", "no voter"));
    }
    Ok(members)
}

fn read_removed(
    reader: &mut Reader<'_>,
    next_id: u32,
    members: &[Member],
) -> Result<Vec<RemovedMember>, ConfigurationError> {
    let count = usize::from(reader.u8("removed count")?);
    if count > REMOVED_REMEMBERED_MAX {
        return Err(reader.refuse_last("removed count", 1, "above 16"));
    }
    let mut removed: Vec<RemovedMember> = Vec::with_capacity(count);
    for _ in 0..count {
        let id = NodeId(reader.u32("removed id")?);
        if id.0 >= next_id {
            return Err(reader.refuse_last("removed id", 4, "not below next_id"));
        }
        let still_member = members.iter().any(|member| member.id == id);
        if still_member || removed.iter().any(|other| other.id == id) {
            return Err(reader.refuse_last("removed id", 4, "still a member or listed twice"));
        }
        let name = reader.name("removed name")?;
        let index = LogIndex(reader.u64("removed index")?);
        let term = Term(reader.u64("removed term")?);
        removed.push(RemovedMember {
            id,
            name,
            index,
            term,
        });
    }
    Ok(removed)
}

/// An address without the scope id and flow label, which mean nothing on
/// another host (the layout holds neither).
fn portable(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V4(_) => address,
        SocketAddr::V6(v6) => SocketAddr::from((*v6.ip(), v6.port())),
    }
}

/// The address as the layout holds it (see `portable`).
fn address_text(address: SocketAddr) -> String {
    match address {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

fn push_text(out: &mut Vec<u8>, text: &str) {
    assert!((1..=u8::MAX as usize).contains(&text.len()));
    out.push(text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl Reader<'_> {
    fn take(&mut self, count: usize, field: &'static str) -> Result<&[u8], ConfigurationError> {
        let Some(taken) = self.bytes.get(self.offset..self.offset + count) else {
            return Err(self.refuse(field, "truncated"));
        };
        self.offset += count;
        Ok(taken)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ConfigurationError> {
        Ok(self.take(1, field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ConfigurationError> {
        let bytes = self.take(4, field)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ConfigurationError> {
        let mut value = [0; 8];
        value.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(value))
    }

    /// A length byte (1..=max) and that many bytes of text.
    fn text(&mut self, field: &'static str, max: usize) -> Result<&str, ConfigurationError> {
        let length = usize::from(self.u8(field)?);
        if length == 0 || length > max {
            return Err(self.refuse_last(field, 1, "length out of range"));
        }
        let start = self.offset;
        let bytes = self.take(length, field)?;
        std::str::from_utf8(bytes).map_err(|_| ConfigurationError {
            field,
            offset: start,
            problem: "not text",
        })
    }

    fn name(&mut self, field: &'static str) -> Result<String, ConfigurationError> {
        let start = self.offset + 1;
        let name = self.text(field, NODE_ID_SIZE_MAX)?;
        if !valid_name(name) {
            return Err(self.refuse_at(field, start, "outside the id alphabet"));
        }
        Ok(name.to_string())
    }

    fn address(&mut self) -> Result<SocketAddr, ConfigurationError> {
        let field = "member address";
        let start = self.offset + 1;
        let text = self.text(field, ADDRESS_SIZE_MAX)?;
        match text.parse::<SocketAddr>() {
            Ok(address) if address_text(address) == text => Ok(address),
            _ => Err(self.refuse_at(field, start, "not an IP:PORT address")),
        }
    }

    fn refuse(&self, field: &'static str, problem: &'static str) -> ConfigurationError {
        self.refuse_at(field, self.offset, problem)
    }

    /// The field just read, `size` bytes ago.
    fn refuse_last(
        &self,
        field: &'static str,
        size: usize,
        problem: &'static str,
    ) -> ConfigurationError {
        self.refuse_at(field, self.offset - size, problem)
    }

    fn refuse_at(
        &self,
        field: &'static str,
        offset: usize,
        problem: &'static str,
    ) -> ConfigurationError {
        ConfigurationError {
            field,
            offset,
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 1, 12], port))
    }

    fn add(name: &str, port: u16) -> Change {
        let name = name.to_string();
        let address = address(port);
        Change::AddLearner { name, address }
    }

    fn round_trip(configuration: &Configuration) {
        let bytes = configuration.to_bytes();
        assert_eq!(Configuration::decode(&bytes).as_ref(), Ok(configuration));
    }

    /// main.rs numbered members this way before configurations existed:
    /// (name, host, port) triples sorted, ids in that order. Data dirs hold
    /// those numbers in their votes, so `bootstrap` must give the same.
    #[test]
    fn bootstrap_numbers_members_as_the_old_identity_did() {
        let names = ["B", "a", "A10", "A2", "_x", "-y", "1", "Z.z", "A"];
        let mut old: Vec<(String, String, u16)> = names
            .iter()
            .zip(8000..)
            .map(|(name, port)| (name.to_string(), "127.0.0.1".to_string(), port))
            .collect();
        old.sort();
        let mut given: Vec<(String, SocketAddr)> = names
            .iter()
            .zip(8000..)
            .map(|(name, port)| (name.to_string(), SocketAddr::from(([127, 0, 0, 1], port))))
            .collect();
        given.reverse(); // the order given does not matter
        let configuration = Configuration::bootstrap(given);
        for (old_id, (name, _, port)) in old.iter().enumerate() {
            let member = configuration.by_name(name).expect("a member");
            assert_eq!(member.id, NodeId(old_id as u32), "{name}");
            assert_eq!(member.address.port(), *port);
            assert_eq!(member.kind, MemberKind::Voter);
        }
        assert_eq!(configuration.next_id, names.len() as u32);
        assert_eq!(configuration.cause, Cause::Bootstrap);
        assert_eq!(configuration.quorum(), 5);
        round_trip(&configuration);
    }

    #[test]
    fn every_change_round_trips() {
        let mut configuration = Configuration::numbered(3);
        round_trip(&configuration);
        let v6 = "[fe80::1]:8003".parse().expect("an address");
        let changes = [
            add("D", 8003),
            Change::Promote(NodeId(3)),
            Change::Update {
                id: NodeId(3),
                address: v6,
            },
            Change::Remove(NodeId(1)),
            add("E", 8004),
        ];
        for (change, index) in changes.iter().zip(10..) {
            configuration = configuration
                .apply(change, LogIndex(index), Term(2))
                .expect("applies");
            round_trip(&configuration);
        }
        assert_eq!(configuration.cause, Cause::AddLearner(NodeId(4)));
        let ids: Vec<u32> = configuration.members.iter().map(|m| m.id.0).collect();
        assert_eq!(ids, [0, 2, 3, 4]);
        let voters: Vec<NodeId> = configuration.voters().collect();
        assert_eq!(voters, [NodeId(0), NodeId(2), NodeId(3)]);
        assert_eq!(configuration.quorum(), 2);
        assert!(!configuration.is_voter(NodeId(4)), "a learner");
        assert_eq!(configuration.member(NodeId(3)).map(|m| m.address), Some(v6));
        let removed = configuration.removed_entry(NodeId(1)).expect("remembered");
        assert_eq!((removed.index, removed.term), (LogIndex(13), Term(2)));
        assert_eq!(removed.name, "n01");
    }

    #[test]
    fn the_largest_configuration_fits_its_bound() {
        let name = |tag: usize| format!("{tag:02}{}", "x".repeat(NODE_ID_SIZE_MAX - 2));
        let address: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .expect("an address");
        let members = (0..MEMBERS_MAX).map(|tag| (name(tag), address)).collect();
        let mut configuration = Configuration::bootstrap(members);
        configuration.next_id = u32::MAX - 1;
        configuration.removed = (0..REMOVED_REMEMBERED_MAX)
            .map(|tag| RemovedMember {
                id: NodeId(100 + tag as u32),
                name: name(50 + tag),
                index: LogIndex(u64::MAX),
                term: Term(u64::MAX),
            })
            .collect();
        let bytes = configuration.to_bytes();
        // The longest address text is 47 bytes, not the 64 allowed.
        assert_eq!(
            bytes.len(),
            CONFIGURATION_ENCODED_SIZE_WORST - MEMBERS_MAX * 17
        );
        assert_eq!(CONFIGURATION_ENCODED_SIZE_WORST, 3397);
        round_trip(&configuration);
    }

    /// numbered(3): header 0..11, members at 11, 35 and 59 (id 4, kind 1,
    /// name 1+3, address 1+14), the removed count at 83; 84 bytes.
    fn valid_bytes() -> Vec<u8> {
        let bytes = Configuration::numbered(3).to_bytes();
        assert_eq!(bytes.len(), 84);
        bytes
    }

    fn refused(bytes: &[u8]) -> (&'static str, usize, &'static str) {
        let error = Configuration::decode(bytes).expect_err("refused");
        (error.field, error.offset, error.problem)
    }

    #[test]
    fn decode_refuses_what_encode_never_writes() {
        type Damage = fn(&mut Vec<u8>);
        let table: [(&str, Damage, (&str, usize, &str)); 16] = [
            ("format", |b| b[0] = 2, ("format", 0, "unknown format")),
            ("cause", |b| b[1] = 5, ("cause", 1, "unknown cause")),
            (
                "subject",
                |b| b[1] = 1,
                ("subject", 2, "does not fit the cause"),
            ),
            (
                "next_id",
                |b| b[9] = 2,
                ("member id", 59, "not below next_id"),
            ),
            (
                "duplicate id",
                |b| b[38] = 0,
                ("member id", 35, "not ascending"),
            ),
            (
                "no members",
                |b| b[10] = 0,
                ("member count", 10, "must be 1..=15"),
            ),
            (
                "16 members",
                |b| b[10] = 16,
                ("member count", 10, "must be 1..=15"),
            ),
            ("kind", |b| b[15] = 3, ("member kind", 15, "unknown kind")),
            (
                "no voter",
                |b| (b[15], b[39], b[63]) = (2, 2, 2),
                ("member kind", 83, "no voter"),
            ),
            (
                "same name",
                |b| b[43] = b'0',
                ("member name", 41, "named twice"),
            ),
            (
                "alphabet",
                |b| b[18] = b'/',
                ("member name", 17, "outside the id alphabet"),
            ),
            (
                "name length",
                |b| b[16] = 0,
                ("member name", 16, "length out of range"),
            ),
            (
                "address",
                |b| b[33] = b'x',
                ("member address", 21, "not an IP:PORT address"),
            ),
            (
                "17 removed",
                |b| b[83] = 17,
                ("removed count", 83, "above 16"),
            ),
            ("trailing", |b| b.push(0), ("end", 84, "trailing bytes")),
            (
                "truncated",
                |b| b.truncate(50),
                ("member address", 45, "truncated"),
            ),
        ];
        for (what, damage, expected) in table {
            let mut bytes = valid_bytes();
            damage(&mut bytes);
            assert_eq!(refused(&bytes), expected, "{what}");
        }
    }

    #[test]
    fn decode_refuses_removed_members_that_are_still_members() {
        let mut configuration = Configuration::numbered(3);
        configuration.removed.push(RemovedMember {
            id: NodeId(1),
            name: "gone".to_string(),
            index: LogIndex(5),
            term: Term(1),
        });
        let expected = ("removed id", 84, "still a member or listed twice");
        assert_eq!(refused(&configuration.to_bytes()), expected);
        configuration.removed[0].id = NodeId(3);
        let expected = ("removed id", 84, "not below next_id");
        assert_eq!(refused(&configuration.to_bytes()), expected);
    }

    #[test]
    fn decode_refusals_name_field_and_offset() {
        let mut bytes = valid_bytes();
        bytes[15] = 9;
        let error = Configuration::decode(&bytes).expect_err("refused");
        let text = "configuration member kind at offset 15: unknown kind";
        assert_eq!(error.to_string(), text);
    }

    #[test]
    fn decode_refuses_every_truncation() {
        let bytes = valid_bytes();
        for length in 0..bytes.len() {
            assert!(Configuration::decode(&bytes[..length]).is_err(), "{length}");
        }
    }

    #[test]
    fn add_learner_takes_the_next_id_and_refuses_known_names() {
        let start = Configuration::numbered(3);
        let added = start
            .apply(&add("D", 1), LogIndex(5), Term(1))
            .expect("adds");
        assert_eq!(added.next_id, 4);
        let member = added.by_name("D").expect("a member");
        assert_eq!((member.id, member.kind), (NodeId(3), MemberKind::Learner));
        let refused = added.apply(&add("D", 2), LogIndex(6), Term(1));
        let kind = MemberKind::Learner;
        let address = address(1);
        assert_eq!(refused, Err(ChangeRefused::AlreadyMember { kind, address }));
        let removed = added.apply(&Change::Remove(NodeId(3)), LogIndex(7), Term(2));
        let again = removed
            .expect("removes")
            .apply(&add("D", 1), LogIndex(8), Term(2));
        let refused = Err(ChangeRefused::WasRemoved {
            index: LogIndex(7),
            term: Term(2),
        });
        assert_eq!(again, refused, "a removed name never comes back");
        let mut full = Configuration::numbered(MEMBERS_MAX);
        let refused = full.apply(&add("P", 1), LogIndex(9), Term(2));
        assert_eq!(refused, Err(ChangeRefused::TooManyMembers));
        full = Configuration::numbered(1);
        full.next_id = u32::MAX;
        let refused = full.apply(&add("P", 1), LogIndex(9), Term(2));
        assert_eq!(refused, Err(ChangeRefused::IdsExhausted));
    }

    #[test]
    fn promote_update_and_remove_refusals() {
        let start = Configuration::numbered(2);
        let (index, term) = (LogIndex(3), Term(1));
        let refused = start.apply(&Change::Promote(NodeId(1)), index, term);
        assert_eq!(refused, Err(ChangeRefused::NotALearner));
        let refused = start.apply(&Change::Promote(NodeId(7)), index, term);
        assert_eq!(refused, Err(ChangeRefused::NoSuchMember(NodeId(7))));
        let same = start.members[1].address;
        let update = Change::Update {
            id: NodeId(1),
            address: same,
        };
        assert_eq!(
            start.apply(&update, index, term),
            Err(ChangeRefused::SameAddress)
        );
        let one = start.apply(&Change::Remove(NodeId(0)), index, term);
        let one = one.expect("removes one of two");
        assert_eq!(one.quorum(), 1);
        let refused = one.apply(&Change::Remove(NodeId(1)), index, term);
        assert_eq!(refused, Err(ChangeRefused::LastVoter));
        let with_learner = one.apply(&add("L", 1), index, term).expect("adds");
        let removed = with_learner.apply(&Change::Remove(NodeId(2)), index, term);
        assert!(removed.is_ok(), "a learner beside the last voter may go");
    }

    #[test]
    fn removals_remember_the_latest_sixteen() {
        let mut configuration = Configuration::numbered(1);
        for round in 0..20u64 {
            let added = configuration.apply(&add(&format!("x{round}"), 1), LogIndex(1), Term(1));
            let id = added.as_ref().expect("adds").cause;
            let Cause::AddLearner(id) = id else {
                panic!("cause {id:?}");
            };
            let removed = added
                .expect("adds")
                .apply(&Change::Remove(id), LogIndex(round), Term(1));
            configuration = removed.expect("removes");
            round_trip(&configuration);
        }
        assert_eq!(configuration.removed.len(), REMOVED_REMEMBERED_MAX);
        assert_eq!(configuration.removed[0].name, "x4", "oldest first");
        assert_eq!(configuration.next_id, 21, "ids are never reused");
    }

    #[test]
    fn names_keep_to_the_id_alphabet() {
        for good in ["A", "node-1", "a.b_c", &"x".repeat(64)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
