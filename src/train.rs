//! The one training loop, shared by every task: Adam with parameter groups, the learning-rate
//! schedule, a progress bar, `metrics.jsonl`, periodic evaluation and checkpoints, Ctrl-C and
//! NaN handling, and resuming.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::config::Config;
use crate::device::SelectedDevice;
use crate::fields::Field;
use crate::fresh::{self, FreshReport, Signal};
use crate::metrics::psnr_from_mse;
use crate::optim::{Adam, lr_scale};
use crate::profile::{ProfileKind, Profiler, read_scalar};
use crate::render::evaluate_points;
use crate::run::{Progress, RunDir};
use crate::tasks::{Metrics, Task};

pub struct TrainOptions {
    /// No progress bar.
    pub quiet: bool,
    /// Set by the Ctrl-C handler (or the viewer's window closing); the loop saves a checkpoint
    /// and stops at the next step.
    pub interrupt: Arc<AtomicBool>,
    /// Continue from the run directory's checkpoint.
    pub resume: bool,
    /// Watches the loop (the viewer).
    pub observer: Option<Box<dyn TrainObserver>>,
    /// Count launches and host reads per step (`--profile`).
    pub profile: Option<ProfileKind>,
}

/// Watches training from inside the loop: after every step it sees the field, the task and, on
/// logged steps, the log record. It may ask for a checkpoint now, and it pauses training by not
/// returning.
pub trait TrainObserver: Send {
    fn after_step(&mut self, step: u64, field: &Field, task: &dyn Task, logged: Option<&serde_json::Value>) -> Observed;
    /// How long the last `after_step` held training paused (not training time).
    fn paused(&self) -> Duration {
        Duration::ZERO
    }
    /// Training ended with this summary (not called when it was interrupted or failed).
    fn finished(&mut self, _field: &Field, _task: &dyn Task, _summary: &serde_json::Value) {}
}

/// What an observer asks of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Continue,
    /// Save a checkpoint (after the next step, whose loss is checked first).
    Checkpoint,
}

pub enum TrainOutcome {
    Finished { summary: serde_json::Value },
    Interrupted { step: u64 },
}

/// The field a config describes for a task, on the task's device. Fields that place kernels
/// from the target (NeuRBF) get the task's importance points, from a short grid-only pre-run
/// where the task asks for one.
pub fn build_field(config: &Config, task: &mut dyn Task, device: &Device, quiet: bool) -> Result<Field> {
    let mut spec = task.field_spec();
    if config.model.options().places_kernels() {
        let steps = task.importance_prerun();
        let importance = match config.model.options().grid_only() {
            Some(grid_only) if steps > 0 => {
                let prerun = prerun(config, &grid_only, task, steps, device, quiet)?;
                task.importance_from(&prerun, &device.clone().without_autodiff())
            }
            _ => task.importance(),
        };
        spec.importance = importance.map(Arc::new);
    }
    Field::new(&config.model, &spec, config.train.seed, device)
}

/// Train `model` (a grid-only stand-in for the real field) for `steps` with the run's optimiser
/// settings and a constant rate; the task's own state is put back afterwards, so the real run
/// starts as if the pre-run had not happened.
fn prerun(config: &Config, model: &crate::fields::ModelConfig, task: &mut dyn Task, steps: u64, device: &Device, quiet: bool) -> Result<Field> {
    let state = task.state();
    let mut field = Field::new(model, &task.field_spec(), config.train.seed, device)?;
    let mut adam = Adam::new(&config.train);
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(steps) };
    bar.set_style(ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta}").expect("valid template"));
    bar.set_prefix("pre-run to place kernels");
    for step in 0..steps {
        task.update(&field, step)?;
        let loss = task.loss(&field, step);
        let grads = GradientsParams::from_grads(loss.backward(), &field);
        field = adam.step(field, grads, 1.0);
        bar.inc(1);
    }
    bar.finish_and_clear();
    task.restore(&state)?;
    Ok(field)
}

/// Train `field` on `task` (both on the training device, with autodiff) into `run`.
pub fn train(
    config: &Config,
    mut task: Box<dyn Task>,
    mut field: Field,
    run: &RunDir,
    device: &SelectedDevice,
    mut options: TrainOptions,
) -> Result<TrainOutcome> {
    let train_device = device.device.clone().autodiff();
    let mut adam = Adam::new(&config.train);
    let mut progress = Progress::default();
    if options.resume {
        let state;
        (field, progress, state) = run.load_checkpoint(field, &mut adam, &train_device)?;
        task.restore(&state)?;
        run.truncate_metrics_after(progress.step)?;
    }
    let t = &config.train;
    let total = t.steps;
    let params = (field.param_count(), field.trainable_params());

    let bar = if options.quiet { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} ETA {eta}").expect("valid template"));
    bar.set_prefix(format!("{} {}", task.kind(), config.model_name()));
    bar.set_position(progress.step);
    bar.enable_steady_tick(Duration::from_millis(500));

    // The training PSNR follows from the loss when the loss is a squared error.
    let mse_of_loss = |loss: f64| match t.loss.as_str() {
        "half_mse" => Some(2.0 * loss),
        "mse" => Some(loss),
        _ => None,
    };
    let steps_at_start = progress.step;
    let seconds_at_start = progress.train_seconds;
    // Evaluations at training times (seconds), each once; evaluation time is not training time.
    let mut marks: Vec<f64> = t.eval_seconds.iter().copied().filter(|&m| m > progress.train_seconds).collect();
    marks.sort_by(f64::total_cmp);
    let mut profiler = options.profile.map(Profiler::new);
    let mut clock = Instant::now();
    let mut rate_mark = (progress.step, Instant::now());
    let mut step = progress.step;
    // The observer's "checkpoint now", honoured at the next step (which reads its loss before
    // anything is saved).
    let mut checkpoint_asked = false;
    while step < total {
        let elapsed = progress.train_seconds + clock.elapsed().as_secs_f64();
        if t.max_seconds > 0.0 && elapsed >= t.max_seconds {
            break;
        }
        if marks.first().is_some_and(|&m| elapsed >= m) {
            let metrics = task.evaluate(&field.valid(), &device.device)?;
            run.log_metrics(&eval_record(step, elapsed, &metrics))?;
            marks.retain(|&m| m > elapsed);
            clock = Instant::now();
            progress.train_seconds = elapsed;
            continue;
        }
        let done = step + 1;
        let checkpoint_due = (t.checkpoint_every > 0 && done % t.checkpoint_every == 0 && done != total) || checkpoint_asked;
        let eval_due = t.eval_every > 0 && done % t.eval_every == 0 && done != total;
        let interrupted = options.interrupt.load(Ordering::SeqCst);
        // Reading the loss syncs with the device, so it happens only every `log_every` steps
        // and before anything is saved (a NaN must never reach a checkpoint).
        let read_loss = done % t.log_every == 0 || done == total || checkpoint_due || eval_due || interrupted;

        // The schedule follows the share of the budget spent: steps, or time when it is bounded.
        let mut fraction = step as f64 / total.max(1) as f64;
        if t.max_seconds > 0.0 {
            fraction = fraction.max(elapsed / t.max_seconds);
        }
        let scale = lr_scale(t, step, fraction);
        if let Some(profiler) = profiler.as_mut() {
            profiler.before_step(step - steps_at_start, total - 1 - steps_at_start, &device.device)?;
        }
        task.update(&field, step)?;
        let loss = task.loss(&field, step);
        let grads = GradientsParams::from_grads(loss.backward(), &field);
        field = adam.step(field, grads, scale);
        // Read once the whole step is queued: a read in the middle would stall the device
        // and cut the step's work into other fusion plans than the other steps'.
        let loss_value = read_loss.then(|| read_scalar(loss));
        bar.inc(1);
        step = done;

        let mut logged = None;
        if let Some(loss) = loss_value {
            if !loss.is_finite() {
                bar.abandon();
                bail!(
                    "the loss became {loss} at step {done}; training stopped. The last good checkpoint is in {} (try a lower train.lr)",
                    run.checkpoint_path().display()
                );
            }
            let train_psnr = mse_of_loss(loss).map(|mse| round(psnr_from_mse(mse), 3));
            let seconds = progress.train_seconds + clock.elapsed().as_secs_f64();
            let mut record = json!({
                "step": done, "seconds": round(seconds, 3), "loss": loss, "lr": t.lr * scale,
                "train_psnr": train_psnr,
            });
            for (k, v) in task.report() {
                record[k] = json!(round(v, 4));
            }
            run.log_metrics(&record)?;
            logged = Some(record);
            let rate = (done - rate_mark.0) as f64 / rate_mark.1.elapsed().as_secs_f64().max(1e-9);
            rate_mark = (done, Instant::now());
            let psnr_text = train_psnr.map(|p| format!("  psnr {p:.2} dB")).unwrap_or_default();
            bar.set_message(format!("loss {loss:.3e}{psnr_text}  {rate:.1} steps/s"));
        }
        if let Some(observer) = options.observer.as_mut() {
            checkpoint_asked = observer.after_step(done, &field, task.as_ref(), logged.as_ref()) == Observed::Checkpoint;
            clock += observer.paused();
        }
        if eval_due || checkpoint_due || interrupted {
            progress.train_seconds += clock.elapsed().as_secs_f64();
            progress.step = done;
            if eval_due {
                let metrics = task.evaluate(&field.valid(), &device.device)?;
                run.log_metrics(&eval_record(done, progress.train_seconds, &metrics))?;
            }
            run.save_checkpoint(&field, &adam, &progress, &task.state())?;
            clock = Instant::now();
            if interrupted {
                bar.abandon();
                return Ok(TrainOutcome::Interrupted { step: done });
            }
        }
    }
    progress.train_seconds += clock.elapsed().as_secs_f64();
    progress.step = step;
    bar.finish();
    run.save_checkpoint(&field, &adam, &progress, &task.state())?;
    if let Some(profiler) = profiler {
        println!("{}", profiler.finish(step - steps_at_start, &device.device, &run.path)?);
    }

    let valid = field.valid();
    let metrics = task.evaluate(&valid, &device.device)?;
    run.log_metrics(&eval_record(step, progress.train_seconds, &metrics))?;
    if config.output.reconstruction {
        task.write_outputs(&valid, &device.device, &run.path)?;
    }
    // Speed of this process's share of the run (a resumed run counts only its own steps).
    let steps_run = step.saturating_sub(steps_at_start);
    let seconds_run = progress.train_seconds - seconds_at_start;
    let steps_per_second = if seconds_run > 0.0 { steps_run as f64 / seconds_run } else { 0.0 };
    let mut summary = summary(config, task.kind(), device, params, &progress, steps_per_second, &metrics);
    if let Some(report) = run.read_fresh() {
        summary["fresh_param"] = report["parameter"].clone();
        summary["fresh_choice"] = report["choice"].clone();
        summary["fresh_seconds"] = report["seconds"].clone();
    }
    run.write_summary(&summary)?;
    if let Some(observer) = options.observer.as_mut() {
        observer.finished(&valid, task.as_ref(), &summary);
    }
    Ok(TrainOutcome::Finished { summary })
}

/// FreSh before training: score each candidate of `config.fresh` by the spectrum of the untrained
/// field on the task's target, and return the config with the closest written in (and
/// `fresh.chosen` set, so a run started from that config does not search again).
pub fn run_fresh(config: &Config, task: &dyn Task, device: &Device, quiet: bool) -> Result<(Config, FreshReport)> {
    let fresh = config.fresh.as_ref().context("the config has no [fresh] table")?;
    let key = fresh.model_key();
    if !config.model.has_key(key) {
        bail!("fresh.parameter = \"{}\" is not a setting of model.kind = \"{}\"", fresh.parameter, config.model.kind());
    }
    let candidates = fresh
        .candidates
        .iter()
        .enumerate()
        .map(|(i, value)| config.with_model_value(key, value).with_context(|| format!("fresh.candidates[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    let Some((coords, target)) = task.signal() else {
        bail!("FreSh needs a target sampled on a grid; the {} task has none", task.kind());
    };
    let mut spec = task.field_spec();
    if config.model.options().places_kernels() && task.importance_prerun() == 0 {
        spec.importance = task.importance().map(Arc::new);
    }
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new((candidates.len() * fresh.inits) as u64) };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} initialisations ETA {eta}").expect("valid template"),
    );
    bar.set_prefix(format!("fresh {}", fresh.parameter));
    let report = fresh::search(&fresh.parameter, &target, &fresh.candidates, fresh.bins, fresh.inits, |i, seed| {
        let field = Field::new(&candidates[i].model, &spec, seed, device)?.for_spectrum();
        let values = task.signal_values(evaluate_points(&field, &coords, spec.d_in, config.eval.chunk_size, device));
        bar.inc(1);
        Ok(Signal { dims: target.dims.clone(), channels: target.channels, values })
    })?;
    bar.finish_and_clear();
    let mut chosen = candidates[report.choice].clone();
    if let Some(f) = chosen.fresh.as_mut() {
        f.chosen = Some(report.chosen().clone());
    }
    Ok((chosen, report))
}

/// FreSh's report as `fresh.json` holds it.
pub fn fresh_json(report: &FreshReport, inits: usize) -> serde_json::Value {
    let to_json = |v: &toml::Value| serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    json!({
        "parameter": report.parameter,
        "choice": to_json(report.chosen()),
        "seconds": round(report.seconds, 3),
        "bins": report.bins,
        "inits": inits,
        "candidates": report.scores.iter().map(|s| json!({
            "value": to_json(&s.candidate),
            "distance": round(s.distance, 6),
            "std_error": round(s.std_error, 6),
        })).collect::<Vec<_>>(),
    })
}

fn eval_record(step: u64, seconds: f64, metrics: &Metrics) -> serde_json::Value {
    let mut record = json!({ "step": step, "seconds": round(seconds, 3), "eval": true });
    for (k, v) in metrics {
        record[k] = json!(round(*v, 5));
    }
    record
}

/// `summary.json`: the keys DESIGN.md fixes, then the task's metrics.
pub fn summary(
    config: &Config,
    task: &str,
    device: &SelectedDevice,
    (params, trainable_params): (usize, usize),
    progress: &Progress,
    steps_per_second: f64,
    metrics: &Metrics,
) -> serde_json::Value {
    let mut s = json!({
        "task": task,
        "model": config.model_name(),
        "device": device.kind,
        "device_name": device.description,
        "steps": progress.step,
        "params": params,
        "trainable_params": trainable_params,
        "train_seconds": round(progress.train_seconds, 3),
        "steps_per_second": round(steps_per_second, 3),
    });
    for (k, v) in metrics {
        s[k] = json!(round(*v, 5));
    }
    s
}

/// `v` rounded to `digits` decimals, as summaries and metrics store numbers.
pub fn round(v: f64, digits: i32) -> f64 {
    if !v.is_finite() {
        return v;
    }
    let f = 10f64.powi(digits);
    (v * f).round() / f
}
