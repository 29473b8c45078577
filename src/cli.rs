//! Command-line parsing shared by every binary (the daemon and the tools).
//!
//! getopts gives an option that takes a value the next argument, whatever it
//! is, so `--port --peers B:8001` makes `--peers` the port and then reports
//! `unexpected argument "B:8001"`. `parse` catches that first: a value that is
//! itself a long flag of the same table means the value was left out.

use getopts::Fail;
use std::process::ExitCode;

/// What a binary's `main` does with its parsed command line (`Ok(None)`:
/// help was asked for): the options to run with, or the exit code to end
/// with now, after printing `help()` on stdout (exit 0) or the usage error
/// on stderr as `NAME: error` and `Try 'NAME --help'.` (`usage_exit`).
pub fn options_or_exit<T>(
    name: &str,
    parsed: Result<Option<T>, String>,
    help: impl FnOnce() -> String,
    usage_exit: u8,
) -> Result<T, ExitCode> {
    match parsed {
        Ok(Some(options)) => Ok(options),
        Ok(None) => {
            print!("{}", help());
            Err(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{name}: {error}");
            eprintln!("Try '{name} --help'.");
            Err(ExitCode::from(usage_exit))
        }
    }
}

/// Parses `arguments` with `table`; the error is one line naming the flag.
/// `--port --peers B:8001` and a trailing `--port` both give
/// `--port needs a value`. A value that only looks like a flag can still be
/// given attached: `--cmd=--peers`.
pub fn parse(table: &getopts::Options, arguments: &[String]) -> Result<getopts::Matches, String> {
    check_values_present(table, arguments)?;
    table.parse(arguments).map_err(|error| match error {
        Fail::ArgumentMissing(name) => needs_a_value(&name),
        other => other.to_string(),
    })
}

/// Walks the arguments the way getopts does, up to a `--` terminator.
fn check_values_present(table: &getopts::Options, arguments: &[String]) -> Result<(), String> {
    let mut index = 0;
    while index < arguments.len() {
        let argument = &arguments[index];
        if argument == "--" {
            return Ok(());
        }
        index += 1;
        if !takes_separate_value(table, argument) {
            continue;
        }
        if let Some(next) = arguments.get(index) {
            if is_known_long_flag(table, next) {
                return Err(needs_a_value(argument.trim_start_matches('-')));
            }
        }
        index += 1; // the value
    }
    Ok(())
}

/// `--name` (no `=value` attached) or `-x` for an option that takes a value.
/// getopts has no way to list its options, so this asks it: such an option
/// alone is "missing its argument".
fn takes_separate_value(table: &getopts::Options, argument: &str) -> bool {
    let single = argument.starts_with("--") || argument.chars().count() == 2;
    argument.starts_with('-')
        && argument.len() > 1
        && !argument.contains('=')
        && single
        && matches!(table.parse([argument]), Err(Fail::ArgumentMissing(_)))
}

/// `--name` or `--name=value` where the table knows `name`.
fn is_known_long_flag(table: &getopts::Options, argument: &str) -> bool {
    let Some(tail) = argument.strip_prefix("--") else {
        return false;
    };
    let name = tail.split('=').next().unwrap_or("");
    !name.is_empty()
        && !matches!(
            table.parse([format!("--{name}")]),
            Err(Fail::UnrecognizedOption(_))
        )
}

fn needs_a_value(name: &str) -> String {
    if name.chars().count() == 1 {
        format!("-{name} needs a value")
    } else {
        format!("--{name} needs a value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> getopts::Options {
        let mut table = getopts::Options::new();
        table.optopt("", "port", "", "PORT");
        table.optopt("", "peers", "", "LIST");
        table.optopt("c", "cmd", "", "CMD");
        table.optflag("h", "help", "");
        table
    }

    fn run(line: &[&str]) -> Result<getopts::Matches, String> {
        let arguments: Vec<String> = line.iter().map(|text| text.to_string()).collect();
        parse(&table(), &arguments)
    }

    #[test]
    fn a_flag_in_place_of_a_value_is_a_missing_value() {
        let cases: [&[&str]; 6] = [
            &["--port", "--peers", "B:8001"],
            &["--port", "--peers=B:8001"],
            &["--port", "--help"],
            &["--peers", "B:8001", "--port"],
            &["--port"],
            &["--port", "-h"],
        ];
        for line in &cases[..5] {
            assert_eq!(
                run(line).err().as_deref(),
                Some("--port needs a value"),
                "{line:?}"
            );
        }
        // A short flag is not a long one: "-h" is taken as the value, as
        // getopts always has.
        let matches = run(cases[5]).expect("-h as a value");
        assert_eq!(matches.opt_str("port").as_deref(), Some("-h"));
        assert_eq!(
            run(&["-c", "--port"]).err().as_deref(),
            Some("-c needs a value")
        );
    }

    #[test]
    fn values_that_merely_look_like_flags_still_parse() {
        let matches = run(&["--cmd", "--frobnicate", "--port", "1"]).expect("unknown flag");
        assert_eq!(matches.opt_str("cmd").as_deref(), Some("--frobnicate"));
        let matches = run(&["--cmd=--port", "--port", "-1"]).expect("attached");
        assert_eq!(matches.opt_str("cmd").as_deref(), Some("--port"));
        assert_eq!(matches.opt_str("port").as_deref(), Some("-1"));
        let matches = run(&["--port", "1", "--", "--peers"]).expect("terminator");
        assert_eq!(matches.free, ["--peers"]);
        let matches = run(&["--peers=", "--port", "2"]).expect("empty attached value");
        assert_eq!(matches.opt_str("peers").as_deref(), Some(""));
    }

    #[test]
    fn other_errors_are_getopts_own() {
        let error = run(&["--bogus"]).expect_err("unknown");
        assert!(error.contains("bogus"), "{error}");
        let error = run(&["--help=yes"]).expect_err("flag with value");
        assert!(error.contains("help"), "{error}");
    }
}
