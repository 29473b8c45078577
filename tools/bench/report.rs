//! The results: the summary text, the JSON object other programs read, and
//! the client's own CPU time.
//!
//! JSON contract (one object, one line; keys stay stable, values are numbers
//! or null when there is nothing to measure):
//! `ops_per_sec`, `p50_ms`, `p90_ms`, `p99_ms`, `p999_ms`, `max_ms`, `errors`
//! (always), and `mean_ms`, `errors_by_kind` (every kind, zeros included),
//! `clients`, `mode`, `rate`, `duration_s`, `warmup_s`, `read_ratio`, `keys`,
//! `key_size`, `value_size`, `timeout_ms`, `ops`, `ops_failed`,
//! `ops_unfinished`, `latency_saturated`, `cpu_user_s`, `cpu_system_s`, in
//! that order. serde writes it from `Json`, whose fields are declared in
//! that order; numbers keep fixed decimals (`kit::json::Fixed`).

use crate::json::Fixed;
use crate::stats::{ErrorKind, Stats};
use serde::Serialize;
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

/// The percentiles reported, as (label, quantile); `Json` has a field for
/// each.
pub const PERCENTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// The JSON object, field by field in the contract's order (serde writes
/// them as declared). Numbers keep the decimals they always had.
#[derive(Serialize)]
struct Json {
    ops_per_sec: Fixed<1>,
    p50_ms: Fixed<3>,
    p90_ms: Fixed<3>,
    p99_ms: Fixed<3>,
    p999_ms: Fixed<3>,
    max_ms: Fixed<3>,
    mean_ms: Fixed<3>,
    errors: u64,
    errors_by_kind: ErrorsByKind,
    clients: usize,
    mode: &'static str,
    rate: Fixed<3>,
    duration_s: Fixed<3>,
    warmup_s: Fixed<3>,
    read_ratio: Fixed<4>,
    keys: u64,
    key_size: usize,
    value_size: usize,
    timeout_ms: u64,
    ops: u64,
    ops_failed: u64,
    ops_unfinished: u64,
    latency_saturated: u64,
    cpu_user_s: Fixed<2>,
    cpu_system_s: Fixed<2>,
}

/// Every kind's count, zeros included, in `ErrorKind::ALL`'s order.
struct ErrorsByKind([u64; ErrorKind::ALL.len()]);

impl Serialize for ErrorsByKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(ErrorKind::ALL.iter().map(|kind| kind.name()).zip(self.0))
    }
}

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
        for (label, quantile) in PERCENTILES {
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
    pub fn json(&self) -> serde_json::Result<String> {
        let stats = &self.stats;
        let [p50_ms, p90_ms, p99_ms, p999_ms] =
            PERCENTILES.map(|(_, quantile)| Fixed(self.quantile_ms(quantile)));
        let json = Json {
            ops_per_sec: Fixed(Some(self.operations_per_second())),
            p50_ms,
            p90_ms,
            p99_ms,
            p999_ms,
            max_ms: Fixed(self.max_ms()),
            mean_ms: Fixed(
                stats
                    .histogram
                    .mean_microseconds()
                    .map(|value| value / 1000.0),
            ),
            errors: stats.errors_total(),
            errors_by_kind: ErrorsByKind(ErrorKind::ALL.map(|kind| stats.error_count(kind))),
            clients: self.clients,
            mode: if self.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            rate: Fixed(self.rate),
            duration_s: Fixed(Some(self.measured_seconds)),
            warmup_s: Fixed(Some(self.warmup_seconds)),
            read_ratio: Fixed(Some(self.read_ratio)),
            keys: self.keys,
            key_size: self.key_size,
            value_size: self.value_size,
            timeout_ms: self.timeout_ms,
            ops: stats.operations_succeeded,
            ops_failed: stats.operations_failed,
            ops_unfinished: self.operations_unfinished,
            latency_saturated: stats.histogram.saturated_count(),
            cpu_user_s: Fixed(self.cpu.map(|cpu| cpu.user)),
            cpu_system_s: Fixed(self.cpu.map(|cpu| cpu.system)),
        };
        Ok(serde_json::to_string(&json)? + "\n")
    }
}

pub fn format_ms(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |value| format!("{value:.3}"))
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::{Map, Value};
    use std::time::Duration;

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

    fn object(summary: &Summary) -> Map<String, Value> {
        let text = summary.json().expect("serializes");
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with("}\n"));
        match serde_json::from_str(&text).expect("valid JSON") {
            Value::Object(members) => members,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn json_is_one_object_with_the_contract_keys() {
        let members = object(&sample_summary(&[1, 2, 3, 4]));
        let number = |key: &str| match members.get(key) {
            Some(Value::Number(value)) => value.as_f64().expect("a number"),
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
        assert_eq!(members.get("mode"), Some(&Value::from("closed")));
        assert_eq!(members.get("rate"), Some(&Value::Null));
        let Some(Value::Object(by_kind)) = members.get("errors_by_kind") else {
            panic!("errors_by_kind is not an object");
        };
        assert_eq!(by_kind.len(), ErrorKind::ALL.len());
        assert_eq!(by_kind.get("NOT_LEADER"), Some(&Value::from(2)));
        assert_eq!(by_kind.get("TIMEOUT"), Some(&Value::from(1)));
        assert_eq!(by_kind.get("CONNECT_FAILED"), Some(&Value::from(0)));
    }

    /// The bytes are the contract: the order of the keys (errors by kind in
    /// `ErrorKind::ALL`'s order) and each number's decimals, as the
    /// hand-written JSON before serde had them.
    #[test]
    fn json_keeps_its_key_order_and_decimals() {
        assert_eq!(
            sample_summary(&[1, 2, 3, 4]).json().expect("serializes"),
            concat!(
                r#"{"ops_per_sec":2.0,"p50_ms":2.007,"p90_ms":4.000,"p99_ms":4.000,"#,
                r#""p999_ms":4.000,"max_ms":4.000,"mean_ms":2.500,"errors":3,"#,
                r#""errors_by_kind":{"NOT_LEADER":2,"TIMEOUT":1,"UNAVAILABLE":0,"#,
                r#""BAD_REQUEST":0,"SESSION_EXPIRED":0,"OTHER_REPLY":0,"CONNECT_FAILED":0,"#,
                r#""CONNECTION_LOST":0,"PROTOCOL_ERROR":0},"clients":64,"mode":"closed","#,
                r#""rate":null,"duration_s":2.000,"warmup_s":0.000,"read_ratio":0.5000,"#,
                r#""keys":100000,"key_size":8,"value_size":16,"timeout_ms":5000,"ops":4,"#,
                r#""ops_failed":1,"ops_unfinished":3,"latency_saturated":0,"#,
                r#""cpu_user_s":0.25,"cpu_system_s":0.50}"#,
                "\n"
            )
        );
        let mut summary = sample_summary(&[1, 7, 1000, 250_000]);
        summary.rate = Some(333.333_333);
        summary.read_ratio = 0.123_456;
        summary.measured_seconds = 1.234_567_89;
        summary.warmup_seconds = 2.5;
        summary.cpu = Some(CpuSeconds {
            user: f64::NAN,
            system: 1.005,
        });
        assert_eq!(
            summary.json().expect("serializes"),
            concat!(
                r#"{"ops_per_sec":3.2,"p50_ms":7.007,"p90_ms":250000.000,"#,
                r#""p99_ms":250000.000,"p999_ms":250000.000,"max_ms":250000.000,"#,
                r#""mean_ms":62752.000,"errors":3,"errors_by_kind":{"NOT_LEADER":2,"#,
                r#""TIMEOUT":1,"UNAVAILABLE":0,"BAD_REQUEST":0,"SESSION_EXPIRED":0,"#,
                r#""OTHER_REPLY":0,"CONNECT_FAILED":0,"CONNECTION_LOST":0,"#,
                r#""PROTOCOL_ERROR":0},"clients":64,"mode":"open","rate":333.333,"#,
                r#""duration_s":1.235,"warmup_s":2.500,"read_ratio":0.1235,"keys":100000,"#,
                r#""key_size":8,"value_size":16,"timeout_ms":5000,"ops":4,"ops_failed":1,"#,
                r#""ops_unfinished":3,"latency_saturated":1,"cpu_user_s":null,"#,
                r#""cpu_system_s":1.00}"#,
                "\n"
            )
        );
    }

    #[test]
    fn json_without_successes_says_null_not_zero() {
        let mut summary = sample_summary(&[]);
        summary.cpu = None;
        summary.measured_seconds = 0.0;
        let members = object(&summary);
        for key in [
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "cpu_user_s",
        ] {
            assert_eq!(members.get(key), Some(&Value::Null), "{key}");
        }
        assert_eq!(members.get("ops_per_sec"), Some(&Value::from(0.0)));
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
