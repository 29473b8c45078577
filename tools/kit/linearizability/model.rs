//! The sequential specification of one register, over interned values.
//!
//! Values are interned per key into small integers so that the search copies
//! and compares a `ValueId` instead of strings. `ABSENT` is the empty
//! register.

/// An interned `Option<String>`: `ABSENT` is `None`, others index the key's
/// value table.
pub(super) type ValueId = usize;

pub(super) const ABSENT: ValueId = 0;

/// One operation as the search sees it: its action and outcome combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Effect {
    /// A completed `Get` that returned `value`.
    Read { value: ValueId },
    /// A `Set` (or a `Del`, writing `ABSENT`), completed or unknown.
    Write { value: ValueId },
    /// A `Cas` that replied `Ok`.
    CasApplied { expected: ValueId, new: ValueId },
    /// A `Cas` that replied `Mismatch { current }`.
    CasMismatch { expected: ValueId, current: ValueId },
    /// A `Cas` with an unknown outcome.
    CasUnknown { expected: ValueId, new: ValueId },
}

impl Effect {
    /// The register after this operation takes effect on `state`, or `None`
    /// if the operation's outcome is impossible from `state`.
    pub(super) fn apply(self, state: ValueId) -> Option<ValueId> {
        match self {
            Effect::Read { value } => (state == value).then_some(state),
            Effect::Write { value } => Some(value),
            Effect::CasApplied { expected, new } => (state == expected).then_some(new),
            Effect::CasMismatch { expected, current } => {
                (state == current && current != expected).then_some(state)
            }
            // Taking effect as a mismatch changes nothing, which is the same
            // as never taking effect: refusing it here spares the search a
            // configuration that differs only in that bit.
            Effect::CasUnknown { expected, new } => (state == expected).then_some(new),
        }
    }

    /// The value this operation requires the register to hold when it takes
    /// effect, if any. Used to find unknown writes nobody could observe.
    pub(super) fn observed(self) -> Option<ValueId> {
        match self {
            Effect::Read { value } => Some(value),
            Effect::Write { .. } => None,
            Effect::CasApplied { expected, .. } => Some(expected),
            Effect::CasMismatch { current, .. } => Some(current),
            Effect::CasUnknown { expected, .. } => Some(expected),
        }
    }

    /// Whether the operation leaves the register as it found it wherever it
    /// can take effect. Such an operation, once it can take effect, may be
    /// linearized at once without losing any linearization (see `search`).
    pub(super) fn is_read_only(self) -> bool {
        match self {
            Effect::Read { .. } | Effect::CasMismatch { .. } => true,
            Effect::CasApplied { expected, new } => expected == new,
            Effect::Write { .. } | Effect::CasUnknown { .. } => false,
        }
    }

    /// The value this operation leaves in the register when it changes it.
    pub(super) fn written(self) -> Option<ValueId> {
        match self {
            Effect::Write { value } => Some(value),
            Effect::CasApplied { new, .. } | Effect::CasUnknown { new, .. } => Some(new),
            Effect::Read { .. } | Effect::CasMismatch { .. } => None,
        }
    }
}
