//! Helpers shared by the binary's end-to-end tests (each test file uses a subset).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `rewardkit` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rewardkit");

/// A path relative to the repository root.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Runs the binary with `args` (thread count from the environment removed).
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("REWARDKIT_THREADS")
        .output()
        .expect("the binary runs")
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs and expects success; returns standard output.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "args {args:?}\nstderr: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Runs and expects exit code 1 with every `needle` in stderr, and no panic.
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "args {args:?}\nstderr: {err}");
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "`{needle}` not in stderr for {args:?}: {err}"
        );
    }
}

/// Writes `bytes` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The rows of a JSONL file.
pub fn json_lines(path: impl AsRef<Path>) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
