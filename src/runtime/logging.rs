//! One line per event on stderr: `12:00:01.234 [B] Timeout → Candidate (term 3)`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static NODE_NAME: OnceLock<String> = OnceLock::new();

pub fn init(node_name: &str, level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    let _ = NODE_NAME.set(node_name.to_string());
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line. Use the `log!` macro, which skips formatting when the
/// level is off.
pub fn write_line(level: Level, message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let name = NODE_NAME.get().map_or("-", String::as_str);
    let marker = match level {
        Level::Error => "ERROR ",
        Level::Warn => "WARN ",
        Level::Info | Level::Debug => "",
    };
    let line = format!("{} [{name}] {marker}{message}\n", wall_clock_time());
    // stderr may be closed; a log line is never worth stopping the node for.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// HH:MM:SS.mmm in UTC.
fn wall_clock_time() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let milliseconds = since_epoch.as_millis() % 1000;
    let seconds = since_epoch.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{milliseconds:03}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[macro_export]
macro_rules! log {
    ($level:ident, $($argument:tt)*) => {
        if $crate::runtime::logging::enabled($crate::runtime::logging::Level::$level) {
            $crate::runtime::logging::write_line(
                $crate::runtime::logging::Level::$level,
                format_args!($($argument)*),
            );
        }
    };
}

/// Folds a stream of frequent events into at most one line per interval,
/// so a busy node logs progress at info without a line per batch.
#[derive(Debug, Default)]
pub struct Throttle {
    count_pending: u64,
    emitted_at_ms: Option<u64>,
}

impl Throttle {
    pub const INTERVAL_MS: u64 = 250;

    pub fn add(&mut self, count: u64) {
        self.count_pending += count;
    }

    /// The total to report if a line is due now.
    pub fn due(&mut self, now_ms: u64) -> Option<u64> {
        if self.count_pending == 0 {
            return None;
        }
        let quiet = self
            .emitted_at_ms
            .is_none_or(|at| now_ms >= at + Self::INTERVAL_MS);
        if !quiet {
            return None;
        }
        self.emitted_at_ms = Some(now_ms);
        Some(std::mem::take(&mut self.count_pending))
    }
}

/// Lets one line per reason through per interval and counts the rest, so a
/// flood (thousands of refused connections, a peer refused ten times a
/// second) costs one line per interval instead of one per event. A reason
/// is a static name plus a small number (a peer, a refusal code): the
/// table is bounded by the code, and asserted.
#[derive(Debug, Default)]
pub struct RateLimiter {
    reasons: std::collections::BTreeMap<(&'static str, u64), Repeats>,
}

#[derive(Debug)]
struct Repeats {
    emitted_at_ms: u64,
    suppressed: u64,
}

impl RateLimiter {
    /// Distinct reasons tracked at once (a bound, far above what the code
    /// names).
    pub const REASONS_MAX: usize = 1024;

    /// Some(count suppressed since the last line) if a line may be written
    /// now; None to stay quiet.
    pub fn admit(&mut self, reason: &'static str, detail: u64, now_ms: u64) -> Option<u64> {
        let interval_ms = crate::constants::LOG_REPEAT_INTERVAL_MS;
        if let Some(repeats) = self.reasons.get_mut(&(reason, detail)) {
            if now_ms < repeats.emitted_at_ms + interval_ms {
                repeats.suppressed += 1;
                return None;
            }
            let suppressed = std::mem::take(&mut repeats.suppressed);
            repeats.emitted_at_ms = now_ms;
            return Some(suppressed);
        }
        if self.reasons.len() >= Self::REASONS_MAX {
            // Forget the quiet ones; nothing is lost but a count.
            self.reasons
                .retain(|_, repeats| now_ms < repeats.emitted_at_ms + interval_ms);
        }
        assert!(
            self.reasons.len() < Self::REASONS_MAX,
            "too many log reasons"
        );
        let repeats = Repeats {
            emitted_at_ms: now_ms,
            suppressed: 0,
        };
        self.reasons.insert((reason, detail), repeats);
        Some(0)
    }
}

/// The tail of a rate-limited line: empty, or how many were folded into it.
pub fn suppressed_note(suppressed: u64) -> String {
    if suppressed == 0 {
        return String::new();
    }
    format!(" ({suppressed} more like this since the last such line)")
}

/// Text another node sent (a refusal's reason, an address), made safe for
/// one log line or STATUS field: control characters, line breaks among
/// them, are escaped, so whoever sends it cannot forge lines.
pub fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for character in text.chars() {
        if character.is_control() {
            line.extend(character.escape_default());
        } else {
            line.push(character);
        }
    }
    line
}

/// `log_limited!(limiter, now_ms, Warn, "reason", detail, "format", args...)`:
/// one line per (reason, detail) per LOG_REPEAT_INTERVAL_MS, with the count
/// of those left out.
#[macro_export]
macro_rules! log_limited {
    ($limiter:expr, $now_ms:expr, $level:ident, $reason:expr, $detail:expr, $($argument:tt)*) => {
        if $crate::runtime::logging::enabled($crate::runtime::logging::Level::$level) {
            if let Some(suppressed) = $limiter.admit($reason, $detail, $now_ms) {
                $crate::runtime::logging::write_line(
                    $crate::runtime::logging::Level::$level,
                    format_args!(
                        "{}{}",
                        format_args!($($argument)*),
                        $crate::runtime::logging::suppressed_note(suppressed)
                    ),
                );
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_lets_one_line_per_reason_per_interval_and_counts_the_rest() {
        let interval = crate::constants::LOG_REPEAT_INTERVAL_MS;
        let mut limiter = RateLimiter::default();
        assert_eq!(limiter.admit("refused", 1, 0), Some(0));
        assert_eq!(limiter.admit("refused", 2, 0), Some(0), "another detail");
        assert_eq!(limiter.admit("other", 1, 0), Some(0), "another reason");
        for at in 1..100 {
            assert_eq!(limiter.admit("refused", 1, at), None);
        }
        assert_eq!(limiter.admit("refused", 1, interval), Some(99));
        assert_eq!(limiter.admit("refused", 1, interval + 1), None);
        assert_eq!(limiter.admit("refused", 1, 3 * interval), Some(1));
        assert_eq!(suppressed_note(0), "");
        assert!(suppressed_note(5).starts_with(" (5 more like this"));
    }

    #[test]
    fn rate_limiter_stays_bounded() {
        let mut limiter = RateLimiter::default();
        for detail in 0..10 * RateLimiter::REASONS_MAX as u64 {
            let now_ms = detail * crate::constants::LOG_REPEAT_INTERVAL_MS;
            assert_eq!(limiter.admit("many", detail, now_ms), Some(0));
        }
        assert!(limiter.reasons.len() <= RateLimiter::REASONS_MAX);
    }

    #[test]
    fn throttle_reports_first_event_then_folds_the_rest() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.due(0), None, "nothing to report");
        throttle.add(1);
        assert_eq!(throttle.due(0), Some(1));
        throttle.add(5);
        assert_eq!(throttle.due(10), None);
        throttle.add(5);
        assert_eq!(throttle.due(20), None);
        assert_eq!(throttle.due(Throttle::INTERVAL_MS), Some(10));
        assert_eq!(throttle.due(Throttle::INTERVAL_MS * 3), None);
    }

    #[test]
    fn text_from_other_nodes_stays_on_one_line() {
        assert_eq!(
            one_line("member lists differ: \"D\""),
            "member lists differ: \"D\""
        );
        assert_eq!(
            one_line("x\n12:00:00.000 [A] forged\r\t"),
            "x\\n12:00:00.000 [A] forged\\r\\t"
        );
        assert_eq!(one_line("é → ok"), "é → ok");
    }

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse("DEBUG"), Some(Level::Debug));
        assert_eq!(Level::parse("verbose"), None);
    }
}
