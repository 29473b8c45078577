//! Human-readable renderings of entries for debug log lines.

use crate::core::{Entry, EntryKind};
use crate::kv::{quote_if_needed, Command, LogRecord, Position, ABSENT_EXPECTED};

pub fn entry(entry: &Entry) -> String {
    if entry.kind == EntryKind::Noop {
        return "no-op".to_string();
    }
    if let Some(cluster_id) = crate::core::ClusterId::of_bootstrap(entry) {
        return format!("bootstrap of cluster {cluster_id}");
    }
    if entry.kind == EntryKind::Configuration {
        return match crate::core::membership::Configuration::decode(&entry.data) {
            Ok(configuration) => format!(
                "configuration ({:?}; {} members)",
                configuration.cause,
                configuration.members.len()
            ),
            Err(error) => format!("<undecodable: {error}>"),
        };
    }
    match LogRecord::decode(&entry.data) {
        Ok(LogRecord::Register) => "REGISTER".to_string(),
        Ok(LogRecord::Command { session, command }) => match session {
            Some((client, sequence)) => {
                format!("{} (session {client} #{sequence})", command_text(&command))
            }
            None => command_text(&command),
        },
        Err(error) => format!("<undecodable: {error}>"),
    }
}

/// The command as a line `parse_request` would read back. Values are
/// quoted as words, since a session note may follow them.
fn command_text(command: &Command) -> String {
    let key_text = |key| quote_if_needed(key, Position::Key);
    let value_text = |value| quote_if_needed(value, Position::Word);
    match command {
        Command::Set { key, value } => format!("SET {}={}", key_text(key), value_text(value)),
        Command::Get { key } => format!("GET {}", key_text(key)),
        Command::Del { key } => format!("DEL {}", key_text(key)),
        Command::Cas { key, expected, new } => {
            let expected = expected
                .as_deref()
                .map_or(ABSENT_EXPECTED.into(), |expected| {
                    quote_if_needed(expected, Position::Expected)
                });
            format!("CAS {} {expected} {}", key_text(key), value_text(new))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::parse_request;

    #[test]
    fn command_text_parses_back_to_the_command() {
        let lines = [
            "SET a=1",
            r#"SET "a b"="c d""#,
            r#"CAS "k=v" "-" """#,
            r#"CAS k - "\xff\n""#,
            "DEL plain",
        ];
        for line in lines {
            let command = parse_request(line)
                .ok()
                .and_then(|request| request.into_command())
                .expect("a log command");
            let text = command_text(&command);
            let again = parse_request(&text)
                .ok()
                .and_then(|request| request.into_command());
            assert_eq!(again, Some(command), "{line} became {text}");
        }
        let plain = parse_request("SET a=1")
            .ok()
            .and_then(|request| request.into_command());
        assert_eq!(
            plain.map(|command| command_text(&command)),
            Some("SET a=1".into())
        );
    }
}
