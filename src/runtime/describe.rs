//! Human-readable renderings of entries for debug log lines.

use crate::core::{Entry, EntryKind};
use crate::kv::{format_value, Command, LogRecord};

pub fn entry(entry: &Entry) -> String {
    if entry.kind == EntryKind::Noop {
        return "no-op".to_string();
    }
    if let Some(cluster_id) = crate::core::ClusterId::of_bootstrap(entry) {
        return format!("bootstrap of cluster {cluster_id}");
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
