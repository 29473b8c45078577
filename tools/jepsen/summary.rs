//! The run's summary: operations by outcome, faults, the longest time
//! without a successful write, the checks and the verdict — as text and as
//! one JSON object.

use crate::nemesis::{NemesisReport, StaleReport};
use raftlite_kit::linearizability::{Action, Operation, Outcome, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

pub struct Summary {
    outcomes: BTreeMap<String, u64>,
    faults: BTreeMap<&'static str, u64>,
    term_jumps: Vec<String>,
    stale: StaleReport,
    longest_unavailable_ms: u64,
    verdict: String,
    linearizable: bool,
    recovered: bool,
    converged: Option<(u64, String)>,
    final_reads_answered: bool,
    /// Nodes that exited by themselves (a panic, an assertion).
    exits: Vec<String>,
    snapshots: SnapshotCounts,
}

/// What the nodes' logs say they did with snapshots during the run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SnapshotCounts {
    pub taken: u64,
    pub installed: u64,
    pub compactions: u64,
}

impl Summary {
    pub fn new(
        operations: &[Operation],
        verdict: &Verdict,
        nemesis: NemesisReport,
        recovered: bool,
        converged: Option<(u64, String)>,
        faults_ms: u64,
        exits: Vec<String>,
    ) -> Summary {
        let final_reads_answered = operations
            .iter()
            .filter(|operation| operation.client == u64::MAX)
            .all(|operation| matches!(operation.outcome, Outcome::Value(_)));
        Summary {
            outcomes: count_outcomes(operations),
            faults: nemesis.faults,
            term_jumps: nemesis.term_jumps,
            stale: nemesis.stale,
            longest_unavailable_ms: longest_gap_ms(operations, faults_ms),
            verdict: verdict.to_string(),
            linearizable: verdict.linearizable,
            recovered,
            converged,
            final_reads_answered,
            exits,
            snapshots: SnapshotCounts::default(),
        }
    }

    pub fn with_snapshots(self, snapshots: SnapshotCounts) -> Summary {
        Summary { snapshots, ..self }
    }

    pub fn passed(&self) -> bool {
        self.linearizable
            && self.term_jumps.is_empty()
            && self.stale.problems.is_empty()
            && self.recovered
            && self.converged.is_some()
            && self.final_reads_answered
            && self.exits.is_empty()
    }

    pub fn text(&self) -> String {
        let mut text = format!("verdict: {}\n", self.verdict);
        let operations: Vec<String> = self
            .outcomes
            .iter()
            .map(|(kind, count)| format!("{kind}={count}"))
            .collect();
        text.push_str(&format!("operations: {}\n", operations.join(" ")));
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, count)| format!("{kind}={count}"))
            .collect();
        text.push_str(&format!("faults: {}\n", faults.join(" ")));
        text.push_str(&format!(
            "longest time without a successful write: {} ms\n",
            self.longest_unavailable_ms
        ));
        let converged = self
            .converged
            .as_ref()
            .map_or("NO".to_string(), |(applied, digest)| {
                format!("applied={applied} digest={digest}")
            });
        text.push_str(&format!(
            "after healing: leader={} converged: {converged} final reads answered: {}\n",
            yes(self.recovered),
            yes(self.final_reads_answered)
        ));
        let jumps = if self.term_jumps.is_empty() {
            "none".to_string()
        } else {
            self.term_jumps.join("; ")
        };
        text.push_str(&format!(
            "term jumps PreVote should have prevented: {jumps}\n"
        ));
        let exits = if self.exits.is_empty() {
            "none".to_string()
        } else {
            self.exits.join(", ")
        };
        text.push_str(&format!("nodes that stopped on their own: {exits}\n"));
        let snapshots = &self.snapshots;
        text.push_str(&format!(
            "snapshots: taken={} installed={} compactions={}\n",
            snapshots.taken, snapshots.installed, snapshots.compactions
        ));
        text.push_str(&self.stale_text());
        text.push_str(&format!(
            "result: {}",
            if self.passed() { "PASS" } else { "FAIL" }
        ));
        text
    }

    /// One line on the stale members: how often each side refused the
    /// other, and what went wrong.
    fn stale_text(&self) -> String {
        let stale = &self.stale;
        let problems = if stale.problems.is_empty() {
            "none".to_string()
        } else {
            stale.problems.join("; ")
        };
        format!(
            "stale members: {} returned (terms up to {}); refused by {} of their {} peers, refusing {} in turn; problems: {problems}\n",
            stale.returned, stale.term_max, stale.refused_by_peers, stale.peers, stale.refused_peers
        )
    }

    /// summary.json: one object on one line, with a final newline.
    pub fn json(&self) -> serde_json::Result<String> {
        let stale = &self.stale;
        let json = Json {
            passed: self.passed(),
            linearizable: self.linearizable,
            verdict: &self.verdict,
            operations: &self.outcomes,
            faults: &self.faults,
            longest_unavailable_ms: self.longest_unavailable_ms,
            recovered: self.recovered,
            converged: self.converged.as_ref().map(|(applied, digest)| Converged {
                applied: *applied,
                digest,
            }),
            final_reads_answered: self.final_reads_answered,
            term_jumps: &self.term_jumps,
            exits: &self.exits,
            snapshots: self.snapshots,
            stale_member: StaleMember {
                returned: stale.returned,
                term_max: stale.term_max,
                peers: stale.peers,
                refused_by_peers: stale.refused_by_peers,
                refused_peers: stale.refused_peers,
                problems: &stale.problems,
            },
        };
        Ok(serde_json::to_string(&json)? + "\n")
    }

    pub fn write(&self, out: &Path) -> std::io::Result<()> {
        std::fs::write(out.join("summary.json"), self.json()?)?;
        std::fs::write(out.join("summary.txt"), self.text() + "\n")
    }
}

/// summary.json's fields in their order (serde writes them as declared).
/// The tests and whoever reads the file look for these keys.
#[derive(Serialize)]
struct Json<'a> {
    passed: bool,
    linearizable: bool,
    verdict: &'a str,
    /// `<action>_<outcome>` → count, keys sorted.
    operations: &'a BTreeMap<String, u64>,
    /// Fault name → count, keys sorted.
    faults: &'a BTreeMap<&'static str, u64>,
    longest_unavailable_ms: u64,
    recovered: bool,
    /// null when the nodes did not converge.
    converged: Option<Converged<'a>>,
    final_reads_answered: bool,
    term_jumps: &'a [String],
    exits: &'a [String],
    snapshots: SnapshotCounts,
    stale_member: StaleMember<'a>,
}

#[derive(Serialize)]
struct Converged<'a> {
    applied: u64,
    digest: &'a str,
}

#[derive(Serialize)]
struct StaleMember<'a> {
    returned: u64,
    term_max: u64,
    peers: u64,
    refused_by_peers: u64,
    refused_peers: u64,
    problems: &'a [String],
}

fn yes(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "NO"
    }
}

fn count_outcomes(operations: &[Operation]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for operation in operations {
        let kind = match operation.action {
            Action::Get => "get",
            Action::Set(_) => "set",
            Action::Del => "del",
            Action::Cas { .. } => "cas",
        };
        let outcome = match operation.outcome {
            Outcome::Ok | Outcome::Value(_) => "ok",
            Outcome::Mismatch { .. } => "mismatch",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        };
        *counts.entry(format!("{kind}_{outcome}")).or_default() += 1;
    }
    counts
}

/// Longest stretch of the fault period with no write completing OK.
fn longest_gap_ms(operations: &[Operation], faults_ms: u64) -> u64 {
    let mut completions: Vec<u64> = operations
        .iter()
        .filter(|operation| {
            !matches!(operation.action, Action::Get) && operation.outcome == Outcome::Ok
        })
        .map(|operation| operation.complete_ns / 1_000_000)
        .filter(|&ms| ms <= faults_ms)
        .collect();
    completions.sort_unstable();
    let mut previous = 0;
    let mut longest = 0;
    for ms in completions.into_iter().chain([faults_ms]) {
        longest = longest.max(ms.saturating_sub(previous));
        previous = ms;
    }
    longest
}

/// YYYYMMDD-HHMMSS in UTC, for run directories.
pub fn timestamp() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_419), (2025, 11, 27));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    fn write_ok(complete_ms: u64) -> Operation {
        Operation {
            client: 0,
            key: "k".into(),
            action: Action::Set("v".into()),
            invoke_ns: 0,
            complete_ns: complete_ms * 1_000_000,
            outcome: Outcome::Ok,
        }
    }

    /// The bytes as the hand-written JSON before serde wrote them (plus
    /// the snapshot counts since).
    #[test]
    fn json_keeps_its_keys_order_and_nesting() {
        let odd = "a\"b\\c\nd\u{1}é→";
        let full = Summary {
            outcomes: BTreeMap::from([("get_ok".to_string(), 10), ("set_unknown".to_string(), 2)]),
            faults: BTreeMap::from([("kill-leader", 3), ("stale-member", 1)]),
            term_jumps: vec!["term rose from 2 to 3".into(), odd.into()],
            stale: StaleReport {
                returned: 2,
                peers: 4,
                refused_by_peers: 3,
                refused_peers: 1,
                term_max: 1000,
                problems: vec![odd.into(), "x".into()],
            },
            longest_unavailable_ms: 1234,
            verdict: format!("not linearizable: {odd}"),
            linearizable: false,
            recovered: true,
            converged: Some((77, "719e11296c7c841e".into())),
            final_reads_answered: false,
            exits: vec!["A exited with code 101".into()],
            snapshots: SnapshotCounts {
                taken: 5,
                installed: 1,
                compactions: 4,
            },
        };
        assert_eq!(
            full.json().unwrap(),
            concat!(
                r#"{"passed":false,"linearizable":false,"#,
                r#""verdict":"not linearizable: a\"b\\c\nd\u0001é→","#,
                r#""operations":{"get_ok":10,"set_unknown":2},"#,
                r#""faults":{"kill-leader":3,"stale-member":1},"longest_unavailable_ms":1234,"#,
                r#""recovered":true,"converged":{"applied":77,"digest":"719e11296c7c841e"},"#,
                r#""final_reads_answered":false,"#,
                r#""term_jumps":["term rose from 2 to 3","a\"b\\c\nd\u0001é→"],"#,
                r#""exits":["A exited with code 101"],"#,
                r#""snapshots":{"taken":5,"installed":1,"compactions":4},"#,
                r#""stale_member":{"returned":2,"#,
                r#""term_max":1000,"peers":4,"refused_by_peers":3,"refused_peers":1,"#,
                r#""problems":["a\"b\\c\nd\u0001é→","x"]}}"#,
                "\n"
            )
        );
        let empty = Summary {
            outcomes: BTreeMap::new(),
            faults: BTreeMap::new(),
            term_jumps: Vec::new(),
            stale: StaleReport::default(),
            longest_unavailable_ms: 0,
            verdict: "linearizable: 0 operations on 0 keys".into(),
            linearizable: true,
            recovered: true,
            converged: None,
            final_reads_answered: true,
            exits: Vec::new(),
            snapshots: SnapshotCounts::default(),
        };
        assert_eq!(
            empty.json().unwrap(),
            concat!(
                r#"{"passed":false,"linearizable":true,"#,
                r#""verdict":"linearizable: 0 operations on 0 keys","operations":{},"#,
                r#""faults":{},"longest_unavailable_ms":0,"recovered":true,"converged":null,"#,
                r#""final_reads_answered":true,"term_jumps":[],"exits":[],"#,
                r#""snapshots":{"taken":0,"installed":0,"compactions":0},"#,
                r#""stale_member":{"returned":0,"term_max":0,"peers":0,"refused_by_peers":0,"#,
                r#""refused_peers":0,"problems":[]}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn longest_gap_counts_from_start_to_end() {
        let operations = [write_ok(100), write_ok(250), write_ok(900)];
        assert_eq!(longest_gap_ms(&operations, 1000), 650);
        assert_eq!(longest_gap_ms(&[], 1000), 1000);
    }
}
