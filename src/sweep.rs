//! Sweeps: many runs from one command. A sweep is a config, `--set` overrides, and grids of
//! values for some keys (any key `--set` takes); their Cartesian product, times `--seeds`, is
//! one normal run directory per point under the sweep's folder, named by its values.
//!
//! `sweep.toml` in that folder lists the sweep and every run with its values, so running the
//! same command again resumes it (finished runs are skipped, interrupted ones resume from their
//! checkpoint) and a different sweep cannot reuse the folder. Runs go either to local child
//! processes (`--jobs J`, the cores split between them) or to a Slurm job array (`--slurm`),
//! whose tasks each train one run; nfield itself never schedules across machines.
//! `nfield table` reads a sweep's summaries into one table, means over seeds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::{Config, apply_override};
use crate::run::{RunDir, write_atomic};

pub const SWEEP_FILE: &str = "sweep.toml";

/// `[sweep]` in a config: what sweeps of it need that a single run does not.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    pub slurm: SlurmConfig,
}

/// `[sweep.slurm]`: the job array's resources (each also a `nfield sweep` option).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Wall-clock limit per run, in Slurm's format (`2:00:00`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// CPUs per run (its threads); 0 leaves it to Slurm.
    pub cpus: usize,
    /// Memory per run, in Slurm's format (`16G`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// GPUs per run.
    pub gpus: usize,
    /// Runs at once (`--array=...%M`); 0: no limit.
    pub max_parallel: usize,
}

/// One swept key and its values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Grid {
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// One point of a sweep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepRun {
    pub name: String,
    /// The swept keys' values, in the grids' order (`train.seed` last with `--seeds`).
    pub values: Vec<(String, toml::Value)>,
}

/// `sweep.toml`: the sweep's definition and its runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sweep {
    /// The config file, absolute.
    pub config: PathBuf,
    pub set: Vec<String>,
    pub grids: Vec<Grid>,
    pub seeds: usize,
    pub runs: Vec<SweepRun>,
}

/// Where a run of a sweep stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Finished,
    /// Stopped with a checkpoint to resume from.
    Interrupted,
    NotStarted,
}

impl Sweep {
    /// Expand `grids` (`KEY=[v1,v2,...]`) and `seeds` over `config` with `set`, and check every
    /// point as `nfield train` would before anything starts.
    pub fn plan(config: &Path, set: &[String], grids: &[String], seeds: usize) -> Result<Sweep> {
        let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
        let mut parsed = grids.iter().map(|g| parse_grid(g)).collect::<Result<Vec<_>>>()?;
        if parsed.is_empty() && seeds <= 1 {
            bail!("a sweep needs at least one --grid KEY=[v1,v2,...] or --seeds N with N > 1");
        }
        if let Some(dup) = parsed.iter().enumerate().find_map(|(i, g)| parsed[..i].iter().find(|h| h.key == g.key)) {
            bail!("--grid {} is given twice", dup.key);
        }
        if seeds > 1 {
            if parsed.iter().any(|g| g.key == "train.seed") {
                bail!("give either --seeds or --grid train.seed=[...], not both");
            }
            parsed.push(Grid { key: "train.seed".into(), values: (0..seeds as i64).map(toml::Value::Integer).collect() });
        }
        let mut runs: Vec<SweepRun> = vec![SweepRun { name: String::new(), values: vec![] }];
        for grid in &parsed {
            runs = runs
                .into_iter()
                .flat_map(|run| {
                    grid.values
                        .iter()
                        .map(move |v| SweepRun { name: String::new(), values: [run.values.clone(), vec![(grid.key.clone(), v.clone())]].concat() })
                })
                .collect();
        }
        let mut taken = std::collections::HashSet::new();
        for run in &mut runs {
            let base = run_name(&run.values);
            let mut name = base.clone();
            let mut i = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}-{i}");
                i += 1;
            }
            run.name = name;
        }
        let sweep = Sweep { config, set: set.to_vec(), grids: parsed, seeds: seeds.max(1), runs };
        for run in &sweep.runs {
            let mut c = sweep.run_config(run).with_context(|| format!("sweep point {}", run.name))?;
            c.resolve();
            c.check_resolved().with_context(|| format!("sweep point {}", run.name))?;
            let target = c.task.options().path();
            if !target.exists() {
                bail!("sweep point {}: task.path {} does not exist", run.name, target.display());
            }
        }
        Ok(sweep)
    }

    /// A run's overrides: the sweep's `--set`, then its point's values.
    pub fn overrides(&self, run: &SweepRun) -> Vec<String> {
        let mut sets = self.set.clone();
        sets.extend(run.values.iter().map(|(k, v)| format!("{k}={v}")));
        sets
    }

    /// A run's config, checked as a file would be.
    pub fn run_config(&self, run: &SweepRun) -> Result<Config> {
        Config::load(&self.config, &self.overrides(run))
    }

    /// Create the sweep's folder with `sweep.toml` and each run's config, or reopen the folder
    /// of the same sweep. A folder that holds another sweep (or anything else) is refused.
    pub fn open(&self, dir: &Path) -> Result<()> {
        let file = dir.join(SWEEP_FILE);
        if file.is_file() {
            let other: Sweep = toml::from_str(&std::fs::read_to_string(&file)?).with_context(|| format!("{} is not a sweep file", file.display()))?;
            if other.config != self.config || other.set != self.set || other.grids != self.grids || other.seeds != self.seeds {
                bail!("{} holds a different sweep (of {}); choose another --name or --out", dir.display(), other.config.display());
            }
            return Ok(());
        }
        if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
            bail!("{} exists and is not a sweep folder; choose another --name or --out", dir.display());
        }
        std::fs::create_dir_all(dir.join("configs")).with_context(|| format!("cannot create {}", dir.display()))?;
        for run in &self.runs {
            let toml = self.run_config(run)?.to_toml()?;
            write_atomic(&dir.join("configs").join(format!("{}.toml", run.name)), toml.as_bytes())?;
        }
        write_atomic(&file, toml::to_string_pretty(self)?.as_bytes())
    }

    pub fn load(dir: &Path) -> Result<Sweep> {
        let file = dir.join(SWEEP_FILE);
        let text = std::fs::read_to_string(&file).with_context(|| format!("{} is not a sweep folder (it has no {SWEEP_FILE})", dir.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is not a sweep file", file.display()))
    }

    pub fn state(dir: &Path, run: &SweepRun) -> RunState {
        let d = dir.join(&run.name);
        if d.join(crate::run::SUMMARY_FILE).is_file() {
            RunState::Finished
        } else if RunDir::open(&d).is_ok_and(|r| r.checkpoint_path().is_file()) {
            RunState::Interrupted
        } else {
            RunState::NotStarted
        }
    }

    /// The `nfield train` arguments that start or continue one run.
    pub fn train_args(dir: &Path, run: &SweepRun) -> Vec<String> {
        let d = dir.join(&run.name);
        match Self::state(dir, run) {
            RunState::Interrupted => vec!["train".into(), "--resume".into(), d.display().to_string(), "--quiet".into()],
            _ => {
                let config = dir.join("configs").join(format!("{}.toml", run.name));
                vec![
                    "train".into(),
                    config.display().to_string(),
                    "--out".into(),
                    dir.display().to_string(),
                    "--name".into(),
                    run.name.clone(),
                    "--quiet".into(),
                ]
            }
        }
    }

    /// The Slurm job-array script: array task i trains run i (or continues it, or does nothing
    /// when it finished), with `RAYON_NUM_THREADS` from the task's CPUs.
    pub fn slurm_script(&self, dir: &Path, nfield: &Path, device: &str, slurm: &SlurmConfig) -> String {
        let mut s = String::from("#!/bin/bash\n# Written by `nfield sweep --slurm`: one array task per run of the sweep in this folder.\n");
        s += &format!("#SBATCH --job-name=nfield-{}\n", dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        s += &format!("#SBATCH --output={}/slurm/%A_%a.log\n", dir.display());
        if let Some(p) = &slurm.partition {
            s += &format!("#SBATCH --partition={p}\n");
        }
        if let Some(t) = &slurm.time {
            s += &format!("#SBATCH --time={t}\n");
        }
        if slurm.cpus > 0 {
            s += &format!("#SBATCH --cpus-per-task={}\n", slurm.cpus);
        }
        if let Some(m) = &slurm.memory {
            s += &format!("#SBATCH --mem={m}\n");
        }
        if slurm.gpus > 0 {
            s += &format!("#SBATCH --gpus-per-task={}\n", slurm.gpus);
        }
        s += "set -euo pipefail\n";
        s += &format!("NFIELD=\"${{NFIELD:-{}}}\"\n", nfield.display());
        s += &format!("SWEEP={}\n", shell_quote(&dir.display().to_string()));
        s += "RUNS=(";
        s += &self.runs.iter().map(|r| shell_quote(&r.name)).collect::<Vec<_>>().join(" ");
        s += ")\n";
        s += "run=${RUNS[$SLURM_ARRAY_TASK_ID]}\n";
        s += "export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-${RAYON_NUM_THREADS:-}}\n";
        s += "[ -n \"$RAYON_NUM_THREADS\" ] || unset RAYON_NUM_THREADS\n";
        s += "[ -f \"$SWEEP/$run/summary.json\" ] && { echo \"$run finished before\"; exit 0; }\n";
        s += &format!(
            "if [ -f \"$SWEEP/$run/checkpoint/checkpoint.safetensors\" ]; then\n  exec \"$NFIELD\" train --resume \"$SWEEP/$run\" --device {device} --quiet\nfi\n"
        );
        s += "# A start that stopped before its first checkpoint begins again.\nrm -rf \"${SWEEP:?}/$run\"\n";
        s += &format!("exec \"$NFIELD\" train \"$SWEEP/configs/$run.toml\" --out \"$SWEEP\" --name \"$run\" --device {device} --quiet\n");
        s
    }
}

/// `KEY=[v1,v2,...]`: TOML values, or bare words (paths, kinds) where they do not parse.
pub fn parse_grid(spec: &str) -> Result<Grid> {
    let Some((key, list)) = spec.split_once('=') else {
        bail!("--grid {spec}: expected KEY=[v1,v2,...], e.g. --grid model.sigma=[5,10,20]");
    };
    let (key, list) = (key.trim(), list.trim());
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        bail!("--grid {spec}: the key must be a dotted path such as model.sigma");
    }
    let Some(inner) = list.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else {
        bail!("--grid {spec}: the values must be a list in brackets, e.g. {key}=[1,2,3]");
    };
    let values = match toml::from_str::<toml::Table>(&format!("v = {list}")) {
        Ok(mut t) => match t.remove("v") {
            Some(toml::Value::Array(a)) => a,
            _ => vec![],
        },
        // Bare words: split on the commas that are not inside nested brackets.
        Err(_) => split_top_level(inner)
            .into_iter()
            .filter(|w| !w.trim().is_empty())
            .map(|w| {
                let mut probe = toml::Table::new();
                let _ = apply_override(&mut probe, &format!("v={}", w.trim()));
                probe.remove("v").unwrap_or_else(|| toml::Value::String(w.trim().into()))
            })
            .collect(),
    };
    if values.is_empty() {
        bail!("--grid {spec}: the list of values is empty");
    }
    Ok(Grid { key: key.into(), values })
}

fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A readable, file-safe run name from its values: `sigma=10_seed=0`. Paths show their file
/// stem; keys their last part.
fn run_name(values: &[(String, toml::Value)]) -> String {
    let part = |(key, value): &(String, toml::Value)| {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let shown = match value {
            toml::Value::String(s) if s.contains('/') || s.contains('.') => {
                Path::new(s).file_stem().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| s.clone())
            }
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let safe: String = shown.chars().map(|c| if c.is_ascii_alphanumeric() || "._-+".contains(c) { c } else { '_' }).collect();
        format!("{leaf}={}", safe.trim_matches('_'))
    };
    values.iter().map(part).collect::<Vec<_>>().join("_")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Submit `script` for the array indices `tasks` (at most `max_parallel` at once); the job id.
pub fn submit(script: &Path, tasks: &[usize], max_parallel: usize) -> Result<String> {
    let mut array = tasks.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    if max_parallel > 0 {
        array += &format!("%{max_parallel}");
    }
    let output = match Command::new("sbatch").arg("--parsable").arg(format!("--array={array}")).arg(script).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "sbatch is not on PATH, so nothing was submitted; submit {} from a machine with Slurm (`sbatch {}`)",
                script.display(),
                script.display()
            )
        }
        Err(e) => return Err(e).context("cannot run sbatch"),
    };
    if !output.status.success() {
        bail!("sbatch refused {}: {}", script.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    let id = String::from_utf8_lossy(&output.stdout).trim().split(';').next().unwrap_or("").to_string();
    Ok(id)
}

/// The table of a sweep (or of any folder of runs): one row per point, seeds (and the swept keys
/// in `average`) averaged, with the swept values, how many runs finished, and the summaries'
/// scores. `csv`: comma-separated.
pub fn table(dir: &Path, csv: bool, average: &[String]) -> Result<String> {
    let (keys, runs): (Vec<String>, Vec<SweepRun>) = match Sweep::load(dir) {
        Ok(sweep) => (sweep.grids.iter().map(|g| g.key.clone()).collect(), sweep.runs),
        Err(_) if dir.is_dir() => {
            // A plain folder of runs: one row per run directory.
            let mut names: Vec<String> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join(crate::run::CONFIG_FILE).is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            if names.is_empty() {
                bail!("{} has no sweep file and no run directories", dir.display());
            }
            (vec![], names.into_iter().map(|name| SweepRun { name, values: vec![] }).collect())
        }
        Err(e) => return Err(e),
    };
    const SCORES: &[&str] =
        &["psnr", "ssim", "holdout_psnr", "iou", "iou_outside", "chamfer_l1", "fscore", "normal_error_deg", "params", "steps", "train_seconds"];
    if let Some(unknown) = average.iter().find(|a| !keys.contains(a)) {
        bail!("--average {unknown}: not a swept key of {} (swept: {})", dir.display(), keys.join(", "));
    }
    // Rows keyed by the values other than the seed, in the sweep's order.
    let row_keys: Vec<&String> = keys.iter().filter(|k| *k != "train.seed" && !average.contains(k)).collect();
    let mut rows: Vec<(Vec<String>, Vec<serde_json::Value>, usize, usize)> = Vec::new();
    for SweepRun { name, values } in &runs {
        let shown: Vec<String> = if keys.is_empty() {
            vec![name.clone()]
        } else {
            row_keys.iter().map(|k| values.iter().find(|(key, _)| key == *k).map_or("-".into(), |(_, v)| v.to_string())).collect()
        };
        let summary = std::fs::read_to_string(dir.join(name).join(crate::run::SUMMARY_FILE)).ok().and_then(|t| serde_json::from_str(&t).ok());
        let index = match rows.iter().position(|r| r.0 == shown) {
            Some(i) => i,
            None => {
                rows.push((shown, vec![], 0, 0));
                rows.len() - 1
            }
        };
        rows[index].3 += 1;
        if let Some(s) = summary {
            rows[index].1.push(s);
            rows[index].2 += 1;
        }
    }
    let scores: Vec<&str> =
        SCORES.iter().copied().filter(|k| rows.iter().flat_map(|r| &r.1).any(|s| s.get(*k).is_some_and(|v| v.is_number()))).collect();
    let mut header: Vec<String> = if keys.is_empty() { vec!["run".into()] } else { row_keys.iter().map(|k| k.to_string()).collect() };
    header.push("finished".into());
    header.extend(scores.iter().map(|s| s.to_string()));
    let mut lines = Vec::new();
    for (shown, summaries, finished, total) in &rows {
        let mut cells = shown.clone();
        cells.push(if finished == total { format!("{finished}") } else { format!("{finished} of {total}") });
        for score in &scores {
            let values: Vec<f64> = summaries.iter().filter_map(|s| s.get(*score).and_then(|v| v.as_f64())).filter(|v| v.is_finite()).collect();
            cells.push(if values.is_empty() { "-".into() } else { format_number(values.iter().sum::<f64>() / values.len() as f64) });
        }
        lines.push(cells);
    }
    Ok(if csv {
        std::iter::once(header).chain(lines).map(|l| l.join(",")).collect::<Vec<_>>().join("\n") + "\n"
    } else {
        let mut out = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
        for l in lines {
            out += &format!("| {} |\n", l.join(" | "));
        }
        out
    })
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// The state of each run, counted (finished, interrupted, not started).
pub fn progress(dir: &Path, sweep: &Sweep) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for run in &sweep.runs {
        let key = match Sweep::state(dir, run) {
            RunState::Finished => "finished",
            RunState::Interrupted => "interrupted",
            RunState::NotStarted => "not started",
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_take_toml_values_and_bare_words() {
        let g = parse_grid("model.sigma=[5, 10.5, 20]").unwrap();
        assert_eq!(g.key, "model.sigma");
        assert_eq!(g.values, vec![toml::Value::Integer(5), toml::Value::Float(10.5), toml::Value::Integer(20)]);
        let g = parse_grid("task.path=[a/b.png,c.png]").unwrap();
        assert_eq!(g.values, vec![toml::Value::String("a/b.png".into()), toml::Value::String("c.png".into())]);
        let g = parse_grid("model.cam.grid=[[8,8],[16,16]]").unwrap();
        assert_eq!(g.values.len(), 2);
        assert!(parse_grid("model.sigma=[]").unwrap_err().to_string().contains("empty"));
        assert!(parse_grid("model.sigma=5").unwrap_err().to_string().contains("brackets"));
        assert!(parse_grid("[1,2]").unwrap_err().to_string().contains("KEY=[v1,v2,...]"));
    }

    #[test]
    fn names_are_readable_and_file_safe() {
        let values =
            vec![("model.sigma".to_string(), toml::Value::Float(10.0)), ("task.path".to_string(), toml::Value::String("../x/kodim01.png".into()))];
        assert_eq!(run_name(&values), "sigma=10.0_path=kodim01");
        assert_eq!(run_name(&[("model.kind".into(), toml::Value::String("neurbf".into()))]), "kind=neurbf");
    }
}
