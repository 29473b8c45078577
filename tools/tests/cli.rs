//! The tools' command lines: each answers --help with its usage, flags and
//! exit codes, and reports a value flag without its value (the daemon's
//! binaries pass the same checks in tests/cli.rs).

use raftlite_kit::cli_checks;

/// Each tool this package builds, and one of its value flags.
const TOOLS: [(&str, &str, &str); 4] = [
    ("bench", env!("CARGO_BIN_EXE_bench"), "--clients"),
    ("bench-suite", env!("CARGO_BIN_EXE_bench-suite"), "--trials"),
    ("jepsen", env!("CARGO_BIN_EXE_jepsen"), "--time"),
    ("sim", env!("CARGO_BIN_EXE_sim"), "--seeds"),
];

#[test]
fn every_tool_answers_help_with_its_flags_and_exit_codes() {
    for (name, binary, _) in TOOLS {
        cli_checks::assert_help_lists_flags_and_exit_codes(name, binary);
    }
}

#[test]
fn a_flag_where_a_value_belongs_is_reported_as_the_missing_value() {
    for (name, binary, flag) in TOOLS {
        cli_checks::assert_missing_value_is_reported(name, binary, flag);
    }
}
