//! The properties the checkers hold the cluster to, and what a breach says.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Property {
    /// At most one leader per term, over the whole run (Raft §5.2).
    ElectionSafety,
    /// Two logs with an entry of the same index and term hold the same
    /// entries up to it (§5.3).
    LogMatching,
    /// Every committed entry is in the log of every later leader (§5.4).
    LeaderCompleteness,
    /// No two nodes commit or apply different entries at one index, and each
    /// node applies a prefix of the one history (§5.4.3).
    StateMachineSafety,
    /// A committed entry stays on the disks of a majority, and no disk loses
    /// a committed entry it held, whatever crashed.
    Durability,
    /// Term, commit index and applied index never go backwards on a live
    /// node; a node never restarts below a term it promised on a durable
    /// reply.
    Monotonicity,
    /// Every reply a client gets agrees with the committed history.
    ClientSemantics,
    /// After the faults stop, the cluster recovers within the bound.
    Liveness,
    /// The core (or the replica) stopped on one of its own assertions.
    CoreAssertion,
}

impl Property {
    pub fn name(self) -> &'static str {
        match self {
            Property::ElectionSafety => "Election Safety",
            Property::LogMatching => "Log Matching",
            Property::LeaderCompleteness => "Leader Completeness",
            Property::StateMachineSafety => "State Machine Safety",
            Property::Durability => "Durability",
            Property::Monotonicity => "Monotonicity",
            Property::ClientSemantics => "Client semantics",
            Property::Liveness => "Liveness",
            Property::CoreAssertion => "core assertion",
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A property breached, with one line that says how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub property: Property,
    pub explanation: String,
}

impl Violation {
    pub fn new(property: Property, explanation: String) -> Violation {
        Violation {
            property,
            explanation,
        }
    }
}

/// Shorthand for a failed check.
pub fn violated<T>(property: Property, explanation: String) -> Result<T, Violation> {
    Err(Violation::new(property, explanation))
}
