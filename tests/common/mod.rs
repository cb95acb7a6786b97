//! Helpers for the end-to-end tests: run the real `nfield` binary and read what it wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn asset(name: &str) -> PathBuf {
    repo().join("assets").join(name)
}

/// `../shared/data/<rel>` beside the repository, if present (tests that need it skip otherwise).
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = repo().join("..").join("shared").join("data").join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found (../shared is not beside the repository)", p.display());
        None
    }
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn nfield() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nfield"));
    c.current_dir(repo()).env("CUBECL_AUTOTUNE_LEVEL", "minimal");
    c
}

pub fn run(args: &[&str]) -> Output {
    nfield().args(args).output().expect("nfield runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The run directory named by the last stdout line, `run: <dir>`.
pub fn run_dir(o: &Output) -> PathBuf {
    let out = stdout(o);
    let last = out.lines().last().unwrap_or_default();
    let dir = last.strip_prefix("run: ").unwrap_or_else(|| panic!("last stdout line is not `run: ...`: {out:?}\nstderr: {}", stderr(o)));
    let p = PathBuf::from(dir);
    if p.is_absolute() { p } else { repo().join(p) }
}

pub fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json exists");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

/// Assert a clean failure: non-zero exit, no panic, and a message containing every needle.
pub fn assert_clean_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

/// Arguments that make a small, fast CPU run of any image config.
pub fn small_run<'a>(config: &'a str, out: &'a str, name: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        config,
        "--device",
        "cpu",
        "--out",
        out,
        "--name",
        name,
        "--steps",
        steps,
        "--quiet",
        "--set",
        "task.path=assets/test/coffee-64x48-rgb8.png",
        "--set",
        "task.crop=[64,48]",
    ]
}

/// Arguments for a short CPU run of an SDF config (on its mesh, the knot in assets/), with a
/// small pool and a coarse evaluation grid.
pub fn small_sdf_run<'a>(config: &'a str, out: &'a str, name: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        config,
        "--device",
        "cpu",
        "--out",
        out,
        "--name",
        name,
        "--steps",
        steps,
        "--quiet",
        "--set",
        "task.pool_size=65536",
        "--set",
        "task.batch_size=8192",
        "--set",
        "eval.resolution=64",
        "--set",
        "eval.surface_samples=20000",
    ]
}
