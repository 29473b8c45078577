//! The results: the summary text, the JSON object other programs read, and
//! the client's own CPU time.
//!
//! JSON contract (one object, one line; keys stay stable, values are numbers
//! or null when there is nothing to measure):
//! `ops_per_sec`, `p50_ms`, `p90_ms`, `p99_ms`, `p999_ms`, `max_ms`, `errors`
//! (always), and `mean_ms`, `errors_by_kind` (every kind, zeros included),
//! `clients`, `mode`, `rate`, `duration_s`, `warmup_s`, `read_ratio`, `keys`,
//! `key_size`, `value_size`, `timeout_ms`, `ops`, `ops_failed`,
//! `ops_unfinished`, `latency_saturated`, `cpu_user_s`, `cpu_system_s`.

use crate::json::json_string;
use crate::stats::{ErrorKind, Stats};
use std::fmt::Write as _;
use std::io::Write as _;

/// Writes to stdout. A reader that went away (`bench | head`) must not stop
/// the run, which still owes its --json and --hist files, so errors are
/// ignored where `print!` would panic.
pub fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Writes one line to stderr, ignoring errors as `write_stdout` does.
pub fn write_stderr_line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Linux reports /proc/self/stat times in clock ticks of 1/USER_HZ seconds;
/// USER_HZ is 100 on every mainstream architecture, and without a libc
/// binding to ask sysconf(_SC_CLK_TCK) this tool assumes it.
pub const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// This process's CPU time so far, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTicks {
    pub user: u64,
    pub system: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuSeconds {
    pub user: f64,
    pub system: f64,
}

impl CpuTicks {
    /// `None` where /proc is missing (not Linux) or unreadable.
    pub fn read() -> Option<CpuTicks> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        CpuTicks::parse(&text)
    }

    /// Fields 14 (utime) and 15 (stime) of proc(5). Field 2, the command
    /// name, is in parentheses and may itself hold spaces and parentheses, so
    /// counting starts after the last ')', where field 3 begins.
    pub fn parse(text: &str) -> Option<CpuTicks> {
        let after_name = &text[text.rfind(')')? + 1..];
        let mut fields = after_name.split_whitespace().skip(14 - 3);
        let user = fields.next()?.parse().ok()?;
        let system = fields.next()?.parse().ok()?;
        Some(CpuTicks { user, system })
    }

    pub fn seconds_since(self, earlier: CpuTicks) -> CpuSeconds {
        CpuSeconds {
            user: self.user.saturating_sub(earlier.user) as f64 / CLOCK_TICKS_PER_SECOND,
            system: self.system.saturating_sub(earlier.system) as f64 / CLOCK_TICKS_PER_SECOND,
        }
    }
}

/// Everything the summary, the JSON and the SVG show.
#[derive(Clone, Debug)]
pub struct Summary {
    pub clients: usize,
    /// Open-loop rate; `None` for closed loop.
    pub rate: Option<f64>,
    pub read_ratio: f64,
    pub keys: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub timeout_ms: u64,
    pub warmup_seconds: f64,
    pub measured_seconds: f64,
    pub stats: Stats,
    pub operations_unfinished: u64,
    pub cpu: Option<CpuSeconds>,
}

/// The percentiles reported, as (label, JSON key, quantile).
pub const PERCENTILES: [(&str, &str, f64); 4] = [
    ("p50", "p50_ms", 0.5),
    ("p90", "p90_ms", 0.9),
    ("p99", "p99_ms", 0.99),
    ("p99.9", "p999_ms", 0.999),
];

impl Summary {
    pub fn operations_per_second(&self) -> f64 {
        if self.measured_seconds > 0.0 {
            self.stats.operations_succeeded as f64 / self.measured_seconds
        } else {
            0.0
        }
    }

    pub fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        let microseconds = self.stats.histogram.value_at_quantile(quantile)?;
        Some(microseconds as f64 / 1000.0)
    }

    pub fn max_ms(&self) -> Option<f64> {
        Some(self.stats.histogram.max_microseconds()? as f64 / 1000.0)
    }

    /// One line naming the workload, for the summary and the SVG title.
    pub fn workload_line(&self) -> String {
        let mode = match self.rate {
            Some(rate) => format!("open loop at {rate} ops/s"),
            None => "closed loop".to_string(),
        };
        format!(
            "{} clients, {mode}, {:.0}% GET, {} keys, key {} B, value {} B",
            self.clients,
            self.read_ratio * 100.0,
            self.keys,
            self.key_size,
            self.value_size
        )
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let stats = &self.stats;
        let _ = writeln!(out, "workload   {}", self.workload_line());
        let _ = writeln!(
            out,
            "measured   {:.3} s after {:.3} s of warmup; timeout {} ms",
            self.measured_seconds, self.warmup_seconds, self.timeout_ms
        );
        let _ = writeln!(
            out,
            "ops        {:.1} ops/s   {} ok, {} failed, {} unfinished",
            self.operations_per_second(),
            stats.operations_succeeded,
            stats.operations_failed,
            self.operations_unfinished
        );
        let _ = writeln!(out, "errors     {}", self.errors_line());
        let _ = writeln!(out, "latency    {}", self.latency_line());
        let _ = writeln!(out, "client cpu {}", self.cpu_line());
        out
    }

    fn errors_line(&self) -> String {
        let stats = &self.stats;
        let kinds = stats.error_counts();
        if kinds.is_empty() {
            "0".to_string()
        } else {
            format!("{}: {}", stats.errors_total(), kinds.join(", "))
        }
    }

    fn latency_line(&self) -> String {
        if self.stats.histogram.count() == 0 {
            return "no successful operations".to_string();
        }
        let mut line = String::new();
        for (label, _, quantile) in PERCENTILES {
            let _ = write!(
                line,
                "{label} {} ms  ",
                format_ms(self.quantile_ms(quantile))
            );
        }
        let _ = write!(
            line,
            "max {} ms  (mean {} ms; successful operations, retries included)",
            format_ms(self.max_ms()),
            format_ms(
                self.stats
                    .histogram
                    .mean_microseconds()
                    .map(|value| value / 1000.0)
            )
        );
        if self.stats.histogram.saturated_count() > 0 {
            let _ = write!(
                line,
                "; {} above 60 s",
                self.stats.histogram.saturated_count()
            );
        }
        line
    }

    fn cpu_line(&self) -> String {
        let Some(cpu) = self.cpu else {
            return "unknown (no /proc/self/stat)".to_string();
        };
        let share = if self.measured_seconds > 0.0 {
            (cpu.user + cpu.system) / self.measured_seconds * 100.0
        } else {
            0.0
        };
        format!(
            "user {:.2} s, system {:.2} s while measuring = {share:.0}% of one core \
             (/proc/self/stat fields 14-15, 100 ticks/s)",
            cpu.user, cpu.system
        )
    }

    /// The JSON object, on one line, with a final newline.
    pub fn json(&self) -> String {
        let stats = &self.stats;
        let mut fields: Vec<(String, String)> = vec![(
            "ops_per_sec".into(),
            json_number(Some(self.operations_per_second()), 1),
        )];
        for (_, key, quantile) in PERCENTILES {
            fields.push((key.into(), json_number(self.quantile_ms(quantile), 3)));
        }
        let mean_ms = stats
            .histogram
            .mean_microseconds()
            .map(|value| value / 1000.0);
        let by_kind: Vec<String> = ErrorKind::ALL
            .iter()
            .map(|kind| format!("\"{}\":{}", kind.name(), stats.error_count(*kind)))
            .collect();
        let more: [(&str, String); 20] = [
            ("max_ms", json_number(self.max_ms(), 3)),
            ("mean_ms", json_number(mean_ms, 3)),
            ("errors", stats.errors_total().to_string()),
            ("errors_by_kind", format!("{{{}}}", by_kind.join(","))),
            ("clients", self.clients.to_string()),
            (
                "mode",
                json_string(if self.rate.is_some() {
                    "open"
                } else {
                    "closed"
                }),
            ),
            ("rate", json_number(self.rate, 3)),
            ("duration_s", json_number(Some(self.measured_seconds), 3)),
            ("warmup_s", json_number(Some(self.warmup_seconds), 3)),
            ("read_ratio", json_number(Some(self.read_ratio), 4)),
            ("keys", self.keys.to_string()),
            ("key_size", self.key_size.to_string()),
            ("value_size", self.value_size.to_string()),
            ("timeout_ms", self.timeout_ms.to_string()),
            ("ops", stats.operations_succeeded.to_string()),
            ("ops_failed", stats.operations_failed.to_string()),
            ("ops_unfinished", self.operations_unfinished.to_string()),
            (
                "latency_saturated",
                stats.histogram.saturated_count().to_string(),
            ),
            ("cpu_user_s", json_number(self.cpu.map(|cpu| cpu.user), 2)),
            (
                "cpu_system_s",
                json_number(self.cpu.map(|cpu| cpu.system), 2),
            ),
        ];
        fields.extend(
            more.into_iter()
                .map(|(key, value)| (key.to_string(), value)),
        );
        let body: Vec<String> = fields
            .iter()
            .map(|(key, value)| format!("{}:{value}", json_string(key)))
            .collect();
        format!("{{{}}}\n", body.join(","))
    }
}

pub fn format_ms(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |value| format!("{value:.3}"))
}

/// A number with `decimals` places, or null when absent or not finite (JSON
/// has no NaN or infinity).
fn json_number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{value:.decimals$}"),
        _ => "null".to_string(),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// Enough of JSON to check the shape of what `json()` writes.
    #[derive(Debug, PartialEq)]
    pub enum Json {
        Null,
        Number(f64),
        Text(String),
        Object(BTreeMap<String, Json>),
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        position: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.bytes.get(self.position).copied()
        }

        fn expect(&mut self, byte: u8) {
            assert_eq!(self.peek(), Some(byte), "at {}", self.position);
            self.position += 1;
        }

        fn value(&mut self) -> Json {
            match self.peek().expect("a value") {
                b'{' => self.object(),
                b'"' => Json::Text(self.text()),
                b'n' => {
                    assert_eq!(&self.bytes[self.position..self.position + 4], b"null");
                    self.position += 4;
                    Json::Null
                }
                _ => self.number(),
            }
        }

        fn object(&mut self) -> Json {
            self.expect(b'{');
            let mut members = BTreeMap::new();
            while self.peek() != Some(b'}') {
                if !members.is_empty() {
                    self.expect(b',');
                }
                let key = self.text();
                self.expect(b':');
                let value = self.value();
                assert!(members.insert(key, value).is_none(), "duplicate key");
            }
            self.expect(b'}');
            Json::Object(members)
        }

        fn text(&mut self) -> String {
            self.expect(b'"');
            let start = self.position;
            while self.peek() != Some(b'"') {
                assert_ne!(self.peek(), Some(b'\\'), "no escapes expected here");
                self.position += 1;
            }
            let text = String::from_utf8(self.bytes[start..self.position].to_vec()).unwrap();
            self.expect(b'"');
            text
        }

        fn number(&mut self) -> Json {
            let start = self.position;
            while self
                .peek()
                .is_some_and(|byte| b"-+.eE0123456789".contains(&byte))
            {
                self.position += 1;
            }
            let text = std::str::from_utf8(&self.bytes[start..self.position]).unwrap();
            Json::Number(text.parse().unwrap_or_else(|_| panic!("number {text:?}")))
        }
    }

    pub fn parse_json(text: &str) -> Json {
        let mut parser = Parser {
            bytes: text.trim_end().as_bytes(),
            position: 0,
        };
        let value = parser.value();
        assert_eq!(parser.position, parser.bytes.len(), "trailing bytes");
        value
    }

    pub fn sample_summary(latencies_ms: &[u64]) -> Summary {
        let mut stats = Stats::default();
        for latency in latencies_ms {
            stats.record_success(Duration::from_millis(*latency));
        }
        stats.record_failure();
        stats.record_error(ErrorKind::NotLeader);
        stats.record_error(ErrorKind::NotLeader);
        stats.record_error(ErrorKind::Timeout);
        Summary {
            clients: 64,
            rate: None,
            read_ratio: 0.5,
            keys: 100_000,
            key_size: 8,
            value_size: 16,
            timeout_ms: 5000,
            warmup_seconds: 0.0,
            measured_seconds: 2.0,
            stats,
            operations_unfinished: 3,
            cpu: Some(CpuSeconds {
                user: 0.25,
                system: 0.5,
            }),
        }
    }

    fn object(json: Json) -> BTreeMap<String, Json> {
        match json {
            Json::Object(members) => members,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn json_is_one_object_with_the_contract_keys() {
        let text = sample_summary(&[1, 2, 3, 4]).json();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with("}\n"));
        let members = object(parse_json(&text));
        let number = |key: &str| match members.get(key) {
            Some(Json::Number(value)) => *value,
            other => panic!("{key}: {other:?}"),
        };
        assert_eq!(number("ops_per_sec"), 2.0);
        // Percentiles are bucket tops: within 1/128 above the exact value.
        assert!((2.0..=2.0 + 2.0 / 128.0).contains(&number("p50_ms")));
        assert_eq!(number("p90_ms"), 4.0);
        assert_eq!(number("p99_ms"), 4.0);
        assert_eq!(number("p999_ms"), 4.0);
        assert_eq!(number("max_ms"), 4.0);
        assert_eq!(number("errors"), 3.0);
        assert_eq!(number("clients"), 64.0);
        assert_eq!(number("duration_s"), 2.0);
        assert_eq!(number("read_ratio"), 0.5);
        assert_eq!((number("ops"), number("ops_failed")), (4.0, 1.0));
        assert_eq!(number("ops_unfinished"), 3.0);
        assert_eq!((number("cpu_user_s"), number("cpu_system_s")), (0.25, 0.5));
        assert_eq!(members.get("mode"), Some(&Json::Text("closed".into())));
        assert_eq!(members.get("rate"), Some(&Json::Null));
        let Some(Json::Object(by_kind)) = members.get("errors_by_kind") else {
            panic!("errors_by_kind is not an object");
        };
        assert_eq!(by_kind.len(), ErrorKind::ALL.len());
        assert_eq!(by_kind.get("NOT_LEADER"), Some(&Json::Number(2.0)));
        assert_eq!(by_kind.get("TIMEOUT"), Some(&Json::Number(1.0)));
        assert_eq!(by_kind.get("CONNECT_FAILED"), Some(&Json::Number(0.0)));
    }

    #[test]
    fn json_without_successes_says_null_not_zero() {
        let mut summary = sample_summary(&[]);
        summary.cpu = None;
        summary.measured_seconds = 0.0;
        let members = object(parse_json(&summary.json()));
        for key in [
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "cpu_user_s",
        ] {
            assert_eq!(members.get(key), Some(&Json::Null), "{key}");
        }
        assert_eq!(members.get("ops_per_sec"), Some(&Json::Number(0.0)));
    }

    #[test]
    fn text_summary_names_errors_and_percentiles() {
        let text = sample_summary(&[1, 2, 3, 4]).text();
        assert!(text.contains("2.0 ops/s"), "{text}");
        assert!(text.contains("3: NOT_LEADER 2, TIMEOUT 1"), "{text}");
        assert!(text.contains("p50 2.007 ms"), "{text}");
        assert!(text.contains("p99.9 4.000 ms"), "{text}");
        assert!(text.contains("max 4.000 ms"), "{text}");
        assert!(text.contains("38% of one core"), "{text}");
    }

    #[test]
    fn cpu_times_come_from_fields_14_and_15() {
        let line = "4242 (b (e) nch) S 1 4242 4242 0 -1 4194304 120 0 0 0 \
                    731 52 0 0 20 0 1 0 1234 5000000 300 18446744073709551615";
        let ticks = CpuTicks::parse(line).expect("parses");
        assert_eq!(
            ticks,
            CpuTicks {
                user: 731,
                system: 52
            }
        );
        let earlier = CpuTicks {
            user: 700,
            system: 2,
        };
        assert_eq!(
            ticks.seconds_since(earlier),
            CpuSeconds {
                user: 0.31,
                system: 0.5
            }
        );
        assert_eq!(CpuTicks::parse("4242 (bench) S 1"), None);
        assert!(CpuTicks::read().is_some(), "this test runs on Linux");
    }
}
