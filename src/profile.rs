//! `nfield train --profile`: what one steady-state training step asks of the device. It counts
//! every kernel launch (CubeCL's launch observer) and every read back to the host (nfield reads
//! through [`read_floats`] and [`read_scalar`], which count) over the steps after the first
//! few, whose launches include shader compilation and autotuning, and before the last, which
//! reads the loss. `--profile times` also times each kernel on the device; that runs kernels
//! one at a time, so it gives each kernel's cost, not the step's. Printed, and written to the
//! run's `profile.json`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor};
use burn_cubecl::cubecl::config::{TypeNameFormatLevel, type_name_format};
use burn_cubecl::cubecl::logging::{LaunchObservation, LaunchObserver, TimingRequest};
use burn_cubecl::cubecl::profile::TimingMethod;
use serde_json::json;

/// Steps left out before the counted window: the first step compiles and tunes every kernel,
/// and the next few meet the optimiser's first updates and fusion's first searches.
pub const WARMUP_STEPS: u64 = 4;

static HOST_READS: AtomicU64 = AtomicU64::new(0);

/// A tensor's values on the host (a wait for the device, so it is counted).
pub fn read_floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    HOST_READS.fetch_add(1, Ordering::Relaxed);
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 values")
}

/// A one-element tensor's value on the host (counted, as [`read_floats`]).
pub fn read_scalar<const D: usize>(t: Tensor<D>) -> f64 {
    HOST_READS.fetch_add(1, Ordering::Relaxed);
    t.into_scalar::<f32>() as f64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileKind {
    /// Kernel launches and host reads per step.
    Launches,
    /// The same, and each kernel's device time.
    Times,
}

#[derive(Debug, Clone, Copy, Default)]
struct KernelStats {
    launches: u64,
    seconds: f64,
}

/// Tallies launches (and, when timing, durations) per kernel.
struct Tally {
    timed: bool,
    kernels: Mutex<HashMap<&'static str, KernelStats>>,
    /// Set when a duration came from the host's clock instead of the device's.
    host_clock: AtomicBool,
}

impl Tally {
    fn snapshot(&self) -> HashMap<&'static str, KernelStats> {
        self.kernels.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl LaunchObserver for Tally {
    fn launched(&self, kernel: &'static str) {
        self.kernels.lock().unwrap_or_else(|e| e.into_inner()).entry(kernel).or_default().launches += 1;
    }

    fn timing(&self) -> TimingRequest {
        if self.timed { TimingRequest::Resolved } else { TimingRequest::None }
    }

    fn timed(&self, kernel: &'static str, duration: Duration, method: TimingMethod) {
        self.kernels.lock().unwrap_or_else(|e| e.into_inner()).entry(kernel).or_default().seconds += duration.as_secs_f64();
        if method == TimingMethod::System {
            self.host_clock.store(true, Ordering::Relaxed);
        }
    }
}

/// The counters at one edge of the counted window.
struct WindowEdge {
    step: u64,
    kernels: HashMap<&'static str, KernelStats>,
    host_reads: u64,
}

/// Watches a training run's launches while it lives.
pub struct Profiler {
    tally: Arc<Tally>,
    _observation: LaunchObservation,
    start: Option<WindowEdge>,
    end: Option<WindowEdge>,
}

impl Profiler {
    pub fn new(kind: ProfileKind) -> Self {
        let tally = Arc::new(Tally { timed: kind == ProfileKind::Times, kernels: Mutex::default(), host_clock: AtomicBool::new(false) });
        let observation = LaunchObservation::new(tally.clone());
        Self { tally, _observation: observation, start: None, end: None }
    }

    /// Called before each step (0-based) of a run whose last step is `last`. The window opens
    /// before step `WARMUP_STEPS` and closes before the last step, each time once the device
    /// has finished everything queued. The last step reads its loss, as a log step does, which
    /// cuts its work into other fusion plans than the steady state's (new plans are autotuned:
    /// dozens of trial launches), so it stays outside.
    pub fn before_step(&mut self, step: u64, last: u64, device: &Device) -> Result<()> {
        if self.start.is_none() && step >= WARMUP_STEPS && step < last {
            self.start = Some(self.edge(step, device)?);
        }
        if self.start.is_some() && self.end.is_none() && step == last {
            self.end = Some(self.edge(step, device)?);
        }
        Ok(())
    }

    fn edge(&self, step: u64, device: &Device) -> Result<WindowEdge> {
        sync(device)?;
        Ok(WindowEdge { step, kernels: self.tally.snapshot(), host_reads: HOST_READS.load(Ordering::Relaxed) })
    }

    /// Close the window if training stopped before its last step, write `profile.json` into
    /// `run_dir` and return the table to print (or why nothing was counted: a resumed or
    /// time-limited run can end before the window opens).
    pub fn finish(self, step: u64, device: &Device, run_dir: &Path) -> Result<String> {
        let Some(start) = &self.start else {
            return Ok(format!(
                "profile: no steps counted; it needs more than {} steps (the first {WARMUP_STEPS} compile and tune the kernels and the last reads the loss)",
                WARMUP_STEPS + 1
            ));
        };
        let end = match self.end {
            Some(ref end) => end,
            None => &self.edge(step, device)?,
        };
        let steps = end.step.saturating_sub(start.step).max(1) as f64;
        let host_reads = (end.host_reads - start.host_reads) as f64 / steps;
        let mut kernels: Vec<(String, f64, f64)> = Vec::new();
        for (&name, now) in &end.kernels {
            let before = start.kernels.get(name).copied().unwrap_or_default();
            let launches = now.launches - before.launches;
            if launches > 0 {
                kernels.push((short_name(name), launches as f64 / steps, (now.seconds - before.seconds) * 1e3 / steps));
            }
        }
        // Kernels of one name with different generics (shapes, ops) count together.
        kernels.sort_by(|a, b| a.0.cmp(&b.0));
        kernels.dedup_by(|later, first| {
            let same = later.0 == first.0;
            if same {
                first.1 += later.1;
                first.2 += later.2;
            }
            same
        });
        kernels.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let launches = kernels.iter().fold(0.0, |sum, k| sum + k.1);
        let timed = self.tally.timed;
        let host_clock = self.tally.host_clock.load(Ordering::Relaxed);
        let record = json!({
            "steps_counted": steps,
            "first_step_counted": start.step + 1,
            "last_step_counted": end.step,
            "launches_per_step": launches,
            "host_reads_per_step": host_reads,
            "kernel_times": if timed { if host_clock { "host clock (the device gave no timestamps)" } else { "device" } } else { "not measured" },
            "kernels": kernels.iter().map(|(name, launches, ms)| {
                let mut k = json!({ "name": name, "launches_per_step": launches });
                if timed {
                    k["ms_per_step"] = json!(ms);
                }
                k
            }).collect::<Vec<_>>(),
        });
        let path = run_dir.join("profile.json");
        std::fs::write(&path, serde_json::to_string_pretty(&record)? + "\n").with_context(|| format!("cannot write {}", path.display()))?;

        let mut table = format!(
            "profile of steps {}..{} ({} steps): {launches:.1} kernel launches and {host_reads:.2} host reads per step\n",
            start.step + 1,
            end.step,
            steps
        );
        let width = kernels.iter().map(|k| k.0.len()).max().unwrap_or(0);
        for (name, launches, ms) in &kernels {
            let time = if timed { format!("  {ms:9.3} ms") } else { String::new() };
            table += &format!("  {launches:7.2}  {name:width$}{time}\n");
        }
        if kernels.is_empty() {
            table += "  (no kernels: the CPU backend computes on the host)\n";
        } else if timed {
            table += "  (times: each kernel alone, per step; their sum is not the step's time)\n";
        }
        Ok(table + &format!("(written to {})", path.display()))
    }
}

fn sync(device: &Device) -> Result<()> {
    device.sync().map_err(|e| anyhow::anyhow!("the device failed: {e:?}"))
}

/// `KernelScalarBinop<MulOp>` from CubeCL's long kernel names (`KernelScalarBinop | MulOp`,
/// `MatmulEntry | TensorArgs | ...`): the kernel, and its operation where it has one.
fn short_name(name: &str) -> String {
    let balanced = type_name_format(name, TypeNameFormatLevel::Balanced);
    let mut parts = balanced.split(" | ");
    let kernel = parts.next().unwrap_or(name).trim().to_string();
    match parts.next().map(str::trim) {
        Some(op) if op.ends_with("Op") => format!("{kernel}<{op}>"),
        _ => kernel,
    }
}
