//! What every binary's command line must do, checked by the tests of both
//! packages (the daemon's binaries in tests/cli.rs, the tools' in
//! tools/tests/cli.rs). Panics on a failed check: for tests.

use std::process::{Command, Stdio};

/// `--help` and `-h` exit 0 and print the usage, the flags and the exit
/// codes.
pub fn assert_help_lists_flags_and_exit_codes(name: &str, binary: &str) {
    for flag in ["--help", "-h"] {
        let output = Command::new(binary)
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .expect("run the binary");
        let help = String::from_utf8_lossy(&output.stdout).to_lowercase();
        assert_eq!(output.status.code(), Some(0), "{name} {flag}: {help}");
        assert!(help.contains("usage"), "{name} {flag} prints no usage");
        assert!(help.contains("--help"), "{name} {flag} lists no flags");
        assert!(
            help.contains("exit code"),
            "{name} {flag} lists no exit codes"
        );
    }
}

/// `--help` after the value flag `flag` is its missing value, not its
/// value (nor help): exit 2 and `NAME: FLAG needs a value` first on stderr.
pub fn assert_missing_value_is_reported(name: &str, binary: &str, flag: &str) {
    let output = Command::new(binary)
        .args([flag, "--help"])
        .stdin(Stdio::null())
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
    let expected = format!("{name}: {flag} needs a value");
    assert!(stderr.starts_with(&expected), "{name}: {stderr}");
}
