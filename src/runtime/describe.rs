//! Human-readable renderings of entries for debug log lines.

use crate::core::{Entry, EntryKind};
use crate::kv::{format_value, Command};

pub fn entry(entry: &Entry) -> String {
    match entry.kind {
        EntryKind::Noop => "no-op".to_string(),
        EntryKind::Command => match Command::decode(&entry.data) {
            Ok(command) => command_text(&command),
            Err(error) => format!("<undecodable: {error}>"),
        },
    }
}

fn command_text(command: &Command) -> String {
    match command {
        Command::Set { key, value } => format!("SET {}={}", format_value(key), format_value(value)),
        Command::Get { key } => format!("GET {}", format_value(key)),
        Command::Del { key } => format!("DEL {}", format_value(key)),
        Command::Cas { key, expected, new } => format!(
            "CAS {} {} {}",
            format_value(key),
            expected.as_deref().map_or("-".to_string(), format_value),
            format_value(new)
        ),
    }
}
