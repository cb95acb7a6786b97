//! `nfield sweep` and `nfield table` through the CLI: a local sweep that runs, resumes and
//! tabulates; bad sweeps refused before anything starts; and, where a Slurm cluster answers
//! (`.ci/slurm-up.sh` starts a one-node one in CI), a job array submitted and waited for.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Tiny image runs: 20 steps of a small hash grid on the 64x48 test photo.
const TINY: [&str; 8] = [
    "--set",
    "task.path=assets/test/coffee-64x48-rgb8.png",
    "--set",
    "task.crop=[64,48]",
    "--set",
    "train.steps=20",
    "--set",
    "model.log2_table_size=10",
];

#[test]
fn a_local_sweep_runs_resumes_and_tabulates() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let mut args =
        vec!["sweep", "configs/image/hashgrid.toml", "--grid", "model.levels=[4,8]", "--seeds", "2", "--jobs", "2", "--out", out, "--device", "cpu"];
    args.extend(TINY);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = t.path().join("hashgrid-sweep");
    assert!(stdout(&o).lines().last().unwrap().ends_with(dir.to_str().unwrap()), "{}", stdout(&o));
    let names = ["levels=4_seed=0", "levels=4_seed=1", "levels=8_seed=0", "levels=8_seed=1"];
    for name in names {
        let s = summary(&dir.join(name));
        assert_eq!(s["steps"], 20, "{name}");
        let resolved = std::fs::read_to_string(dir.join(name).join("config.toml")).unwrap();
        assert!(resolved.contains(&format!("levels = {}", &name[7..8])), "{name}: {resolved}");
    }
    let sweep_file = std::fs::read_to_string(dir.join("sweep.toml")).unwrap();
    assert!(sweep_file.contains("model.levels") && sweep_file.contains("levels=8_seed=1"), "{sweep_file}");
    // The table: one row per level, both seeds finished, their mean PSNR.
    let table = stdout(&o);
    let row =
        |level: &str| table.lines().find(|l| l.starts_with(&format!("| {level} |"))).unwrap_or_else(|| panic!("no row {level}: {table}")).to_string();
    for level in ["4", "8"] {
        let line = row(level);
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells[2], "2", "{table}");
        let mean: f64 = cells[3].parse().unwrap();
        let psnrs: Vec<f64> = names.iter().filter(|n| n[7..8] == *level).map(|n| summary(&dir.join(n))["psnr"].as_f64().unwrap()).collect();
        assert!((mean - (psnrs[0] + psnrs[1]) / 2.0).abs() < 1e-3, "{mean} vs {psnrs:?}");
    }

    // Again: nothing to do. With one run's summary gone (as if it stopped after its last
    // checkpoint), only that one runs, from its checkpoint.
    std::fs::remove_file(dir.join("levels=8_seed=1/summary.json")).unwrap();
    let before = std::fs::read(dir.join("levels=4_seed=0/checkpoint/checkpoint.safetensors")).unwrap();
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&dir.join("levels=8_seed=1"))["steps"], 20);
    // (Starting it again would have failed: its directory exists.)
    assert_eq!(std::fs::read(dir.join("levels=4_seed=0/checkpoint/checkpoint.safetensors")).unwrap(), before, "a finished run was run again");

    let csv = run(&["table", dir.to_str().unwrap(), "--csv"]);
    assert!(csv.status.success(), "{}", stderr(&csv));
    let text = stdout(&csv);
    assert!(text.starts_with("model.levels,finished,psnr"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn bad_sweeps_are_refused_before_anything_starts() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let base = |grid: &'static str| {
        let mut a = vec!["sweep", "configs/image/hashgrid.toml", "--out", out, "--device", "cpu", "--grid", grid];
        a.extend(TINY);
        a
    };
    assert_clean_error(&run(&base("model.levles=[4,8]")), &["model.levles", "model.levels"]);
    assert_clean_error(&run(&base("model.levels=[]")), &["empty"]);
    assert_clean_error(&run(&base("model.levels=[four,8]")), &["model.levels", "string"]);
    assert_clean_error(&run(&base("task.path=[nope.png,assets/test/coffee-64x48.jpg]")), &["nope.png", "does not exist"]);
    assert!(std::fs::read_dir(t.path()).unwrap().next().is_none(), "a refused sweep left something behind");

    // A folder that holds another sweep.
    let o = run(&base("model.levels=[4]"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_error(&run(&base("model.width=[16,32]")), &["holds a different sweep"]);

    // --submit without sbatch on PATH: one sentence, and the script is there to submit later.
    let empty = t.path().join("no-slurm");
    std::fs::create_dir(&empty).unwrap();
    let mut a = base("model.width=[16,32]");
    a.extend(["--name", "slurm-test", "--slurm", "--submit"]);
    let o = nfield().args(&a).env("PATH", &empty).output().unwrap();
    assert_clean_error(&o, &["sbatch is not on PATH"]);
    assert!(t.path().join("slurm-test/slurm.sh").is_file());
}

/// A real Slurm: a 2x2 sweep of tiny runs as a job array, waited for, every run finished, and
/// the table over them. Skips (with a note) where no cluster answers.
#[test]
fn a_sweep_runs_as_a_slurm_job_array() {
    let cluster = std::process::Command::new("sinfo").arg("-h").output().is_ok_and(|o| o.status.success());
    if !cluster {
        assert!(std::env::var("CI").is_err() || std::env::var("SLURM_CONF").is_err(), "CI starts a Slurm cluster (.ci/slurm-up.sh)");
        eprintln!("skipping: no Slurm cluster answers (start one with .ci/slurm-up.sh)");
        return;
    }
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let mut args = vec![
        "sweep",
        "configs/image/hashgrid.toml",
        "--grid",
        "model.levels=[4,8]",
        "--grid",
        "model.width=[16,32]",
        "--out",
        out,
        "--name",
        "array",
        "--slurm",
        "--submit",
        "--cpus",
        "1",
        "--device",
        "cpu",
    ];
    args.extend(TINY);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let job = stdout(&o).lines().find_map(|l| l.strip_prefix("job: ").map(str::to_string)).expect("a job id");
    let start = Instant::now();
    loop {
        let q = std::process::Command::new("squeue").args(["-h", "-j", &job]).output().unwrap();
        if !q.status.success() || q.stdout.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "job {job} still queued: {}", String::from_utf8_lossy(&q.stdout));
        std::thread::sleep(Duration::from_millis(500));
    }
    let dir = t.path().join("array");
    for name in ["levels=4_width=16", "levels=4_width=32", "levels=8_width=16", "levels=8_width=32"] {
        assert!(dir.join(name).join("summary.json").is_file(), "{name} did not finish; logs in {}", dir.join("slurm").display());
    }
    let table = run(&["table", dir.to_str().unwrap()]);
    assert!(table.status.success(), "{}", stderr(&table));
    assert_eq!(stdout(&table).lines().filter(|l| l.starts_with("| 4 |") || l.starts_with("| 8 |")).count(), 4, "{}", stdout(&table));
    // Submitting again finds nothing to do.
    let again = run(&args);
    assert!(again.status.success() && stderr(&again).contains("nothing to submit"), "{}", stderr(&again));
}
