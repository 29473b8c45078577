//! Client semantics at the level of a whole command, as `submit` reports
//! it: a numbered write takes effect at most once whatever its tries did,
//! and a command the client reported as a definite failure (ERR
//! UNAVAILABLE, ERR NOT_LEADER, a refusal) never takes effect. ERR TIMEOUT
//! promises nothing; OK was checked against the history as the node's
//! reply (checker.rs).
//!
//! A command's tries are known by the (session, sequence) they were sent
//! under; the history says which of those took effect (the model's
//! `fresh`): a retry the session absorbs is not an effect.

use super::property::{violated, Property, Violation};
use super::workload::Ended;
use raftlite::core::LogIndex;
use raftlite::replica::SessionTag;
use raftlite::reply::ReplyKind;
use std::collections::BTreeMap;

struct Command {
    client: usize,
    line: String,
    /// Where it took effect first, and under which number.
    effect: Option<((u64, u64), LogIndex)>,
    /// The client was told it certainly failed, with this answer.
    failed: Option<String>,
}

#[derive(Default)]
pub struct Outcomes {
    /// The command each (session, sequence) a try carried belongs to.
    by_number: BTreeMap<(u64, u64), u64>,
    commands: BTreeMap<u64, Command>,
}

impl Outcomes {
    /// A try of command `operation` left under `session`.
    pub fn sent(&mut self, operation: u64, client: usize, line: &str, session: SessionTag) {
        let number = (session.session_id, session.sequence);
        self.by_number.insert(number, operation);
        self.commands.entry(operation).or_insert_with(|| Command {
            client,
            line: line.to_string(),
            effect: None,
            failed: None,
        });
    }

    /// The history applied `number` for the first time, at `index`.
    pub fn applied(&mut self, number: (u64, u64), index: LogIndex) -> Result<(), Violation> {
        let Some(command) = self
            .by_number
            .get(&number)
            .and_then(|id| self.commands.get_mut(id))
        else {
            return Ok(()); // no client of this run sent it (a stale member's)
        };
        let what = format!("c{}'s {:?}", command.client, command.line);
        if let Some(answer) = &command.failed {
            return violated(
                Property::ClientSemantics,
                format!("{what} took effect at {index} after the client was told {answer:?}"),
            );
        }
        match command.effect {
            Some((first, at)) if first != number => violated(
                Property::ClientSemantics,
                format!(
                    "{what} took effect twice: as {}/{} at {at} and as {}/{} at {index} (a retry under a new number)",
                    first.0, first.1, number.0, number.1
                ),
            ),
            Some(_) => Ok(()),
            None => {
                command.effect = Some((number, index));
                Ok(())
            }
        }
    }

    /// The client machine ended a command with `ended.answer`.
    pub fn ended(&mut self, ended: &Ended) -> Result<(), Violation> {
        let definite_failure =
            matches!(ended.answer.kind(), ReplyKind::NotLeader | ReplyKind::Error);
        let Some(command) = self.commands.get_mut(&ended.operation.id) else {
            return Ok(()); // no numbered try: a read, or unnumbered
        };
        if !definite_failure {
            return Ok(());
        }
        let answer = ended.answer.to_string();
        if let Some((number, index)) = command.effect {
            return violated(
                Property::ClientSemantics,
                format!(
                    "c{} was told {answer:?} for {:?}, but it took effect as {}/{} at {index}",
                    command.client, command.line, number.0, number.1
                ),
            );
        }
        command.failed = Some(answer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::workload::{Operation, OperationKind};
    use super::*;
    use raftlite::reply::{Answer, Reply};

    fn tag(session_id: u64, sequence: u64) -> SessionTag {
        SessionTag {
            session_id,
            sequence,
        }
    }

    fn ended(id: u64, answer: Reply) -> Ended {
        Ended {
            operation: Operation {
                id,
                line: "SET k0 v".to_string(),
                kind: OperationKind::Write,
                is_final: false,
            },
            answer: Answer::Reply(answer),
        }
    }

    #[test]
    fn a_command_takes_effect_once_whatever_its_retries_did() {
        let mut outcomes = Outcomes::default();
        outcomes.sent(1, 0, "SET k0 v", tag(3, 4));
        outcomes.sent(1, 0, "SET k0 v", tag(3, 4));
        assert!(outcomes.applied((3, 4), LogIndex(10)).is_ok());
        assert!(
            outcomes.applied((3, 4), LogIndex(11)).is_ok(),
            "same number"
        );
        outcomes.sent(1, 0, "SET k0 v", tag(3, 5));
        let twice = outcomes.applied((3, 5), LogIndex(12)).expect_err("twice");
        assert_eq!(twice.property, Property::ClientSemantics);
        assert!(
            twice.explanation.contains("took effect twice"),
            "{}",
            twice.explanation
        );
        assert!(outcomes.applied((9, 1), LogIndex(13)).is_ok(), "nobody's");
    }

    #[test]
    fn a_definite_failure_never_takes_effect() {
        let mut outcomes = Outcomes::default();
        outcomes.sent(1, 0, "SET k0 v", tag(3, 1));
        let unavailable = Reply::Unavailable("no leader".into());
        assert!(outcomes.ended(&ended(1, unavailable)).is_ok());
        let late = outcomes
            .applied((3, 1), LogIndex(5))
            .expect_err("after failure");
        assert!(
            late.explanation.contains("after the client was told"),
            "{}",
            late.explanation
        );
        outcomes.sent(2, 0, "SET k0 v", tag(3, 2));
        assert!(outcomes.applied((3, 2), LogIndex(6)).is_ok());
        let refused = Reply::NotLeader { leader: None };
        let told = outcomes
            .ended(&ended(2, refused))
            .expect_err("already applied");
        assert!(
            told.explanation.contains("but it took effect"),
            "{}",
            told.explanation
        );
        outcomes.sent(3, 0, "SET k0 v", tag(3, 3));
        assert!(outcomes.applied((3, 3), LogIndex(7)).is_ok());
        assert!(outcomes.ended(&ended(3, Reply::Timeout)).is_ok(), "unknown");
    }
}
