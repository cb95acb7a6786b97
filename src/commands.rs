//! The command line: argument definitions and what each subcommand does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::device::{self, DeviceChoice, SelectedDevice};
use crate::fields::Field;
use crate::optim::Adam;
use crate::render::RenderMode;
use crate::run::RunDir;
use crate::tasks::{MeshRequest, RenderRequest, Task};
use crate::train::{self, TrainOptions, TrainOutcome};

#[derive(Parser, Debug)]
#[command(name = "nfield", version, about = "Fit neural fields to images, SDFs and radiance fields, and render them.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a field from a TOML experiment (no CONFIG: the built-in default experiment).
    Train(TrainArgs),
    /// Evaluate a trained run again and update its summary.json.
    Eval {
        run_dir: PathBuf,
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Render a trained field: an image field at any size (zoom, super-resolution), an SDF
    /// sphere-traced from cameras orbiting it.
    Render(RenderArgs),
    /// Mesh a trained SDF by marching cubes into a binary PLY with normals.
    Mesh {
        run_dir: PathBuf,
        /// Grid points per axis (default: the run's eval.resolution).
        #[arg(long)]
        resolution: Option<usize>,
        /// Output file (default: RUN_DIR/mesh-<resolution>.ply).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Run FreSh on a config's [fresh] table: print each candidate's spectral distance and the choice.
    Fresh {
        config: PathBuf,
        /// Override a config key by its dotted path (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
    },
}

#[derive(Args, Debug, Default)]
pub struct TrainArgs {
    /// Experiment config (TOML). Without it, `configs/default.toml` (compiled in) is used.
    pub config: Option<PathBuf>,
    /// Override a config key by its dotted path; VALUE is a TOML value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Folder that holds run directories.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Run directory name (default: the config's name plus a timestamp).
    #[arg(long)]
    pub name: Option<String>,
    /// Total training steps (overrides train.steps; with --resume, extends the run).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Continue an interrupted run from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    pub run_dir: PathBuf,
    /// Output size, e.g. 1024x1024 (default: the training image's size; 512x512 for SDF runs).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
    /// Render from training view I (radiance-field runs).
    #[arg(long)]
    pub view: Option<usize>,
    /// Render FRAMES views orbiting the object (radiance-field and SDF runs).
    #[arg(long, value_name = "FRAMES")]
    pub orbit: Option<usize>,
    #[arg(long, value_enum, default_value = "rgb")]
    pub mode: RenderMode,
    /// Folder for the pictures (default: RUN_DIR/renders).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("size {s:?} must look like 512x512"))?;
    let parse = |v: &str| v.trim().parse::<usize>().ok().filter(|&n| n > 0 && n <= 32768);
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!("size {s:?} must be two whole numbers between 1 and 32768, like 512x512")),
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        None => train_command(TrainArgs { out: PathBuf::from("runs"), ..Default::default() }),
        Some(Command::Train(args)) => train_command(args),
        Some(Command::Eval { run_dir, device }) => eval_command(&run_dir, device),
        Some(Command::Render(args)) => render_command(&args),
        Some(Command::Mesh { run_dir, resolution, out, device }) => mesh_command(&run_dir, resolution, out, device),
        Some(Command::Fresh { config, set, device }) => fresh_command(&config, &set, device),
    }
}

fn train_command(args: TrainArgs) -> Result<ExitCode> {
    let resume = args.resume.is_some();
    let (config, run, stem) = if let Some(dir) = &args.resume {
        if args.config.is_some() {
            bail!("give either a CONFIG or --resume RUN_DIR, not both (a resumed run keeps its own config)");
        }
        if !args.set.is_empty() {
            bail!("--set cannot change a run being resumed; use --steps to extend it");
        }
        let run = RunDir::open(dir)?;
        if !run.checkpoint_path().is_file() {
            bail!("run {} has no checkpoint to resume from", dir.display());
        }
        let mut config = Config::load(&run.config_path(), &[])?;
        if let Some(steps) = args.steps {
            if steps == 0 {
                bail!("--steps must be at least 1");
            }
            config.train.steps = steps;
        }
        (config, Some(run), String::new())
    } else {
        let mut sets = args.set.clone();
        if let Some(steps) = args.steps {
            sets.push(format!("train.steps={steps}"));
        }
        let (config, stem) = match &args.config {
            Some(path) => (Config::load(path, &sets)?, path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()),
            None => (Config::default_experiment(&sets)?, "default".to_string()),
        };
        (config, None, stem)
    };
    let mut config = config;
    for note in config.resolve() {
        eprintln!("note: {note}");
    }
    // Check the config and the inputs before any directory is made, so a typo leaves nothing behind.
    config.check_resolved()?;
    let device = device::select(args.device)?;
    eprintln!("device: {}", device.description);
    let train_device = device.device.clone().autodiff();
    let mut task = config.task.build(&config, &train_device)?;
    for warning in task.warnings() {
        eprintln!("warning: {warning}");
    }

    // FreSh chooses its hyperparameter before anything is written (a resumed run already has it).
    let mut fresh_report = None;
    if let Some(fresh) = config.fresh.clone() {
        match &fresh.chosen {
            Some(value) => config = config.with_model_value(fresh.model_key(), value).context("fresh.chosen")?,
            None => {
                let (chosen, report) = train::run_fresh(&config, task.as_ref(), &device.device, args.quiet)?;
                eprintln!("fresh: {} = {} ({:.1} s)", report.parameter, report.chosen(), report.seconds);
                config = chosen;
                fresh_report = Some(train::fresh_json(&report, fresh.inits));
            }
        }
    }
    let field = train::build_field(&config, task.as_mut(), &train_device, args.quiet)?;

    // Only now is anything written: a new run directory, or a resumed run's (possibly extended) config.
    let run = match run {
        Some(run) => run,
        None => RunDir::create(&args.out, args.name.as_deref(), &stem)?,
    };
    run.write_config(&config.to_toml()?)?;
    if let Some(report) = &fresh_report {
        run.write_fresh(report)?;
    }
    eprintln!("run directory: {}", run.path.display());

    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    // First Ctrl-C: finish the step, save a checkpoint, stop. A second one exits at once.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    let options = TrainOptions { quiet: args.quiet, interrupt, resume };
    let outcome = train::train(&config, task, field, &run, &device, &options);
    match outcome {
        Ok(TrainOutcome::Finished { summary }) => {
            let mut line = format!(
                "{} steps in {:.1} s ({:.1} steps/s), {} parameters",
                summary["steps"],
                summary["train_seconds"].as_f64().unwrap_or(0.0),
                summary["steps_per_second"].as_f64().unwrap_or(0.0),
                summary["params"]
            );
            if let Some(p) = summary["psnr"].as_f64() {
                line += &format!(", PSNR {p:.2} dB");
            }
            if let Some(s) = summary["ssim"].as_f64() {
                line += &format!(", SSIM {s:.4}");
            }
            if let Some(v) = summary["iou"].as_f64() {
                line += &format!(", IoU {v:.4}");
            }
            if let Some(v) = summary["normal_error_deg"].as_f64() {
                line += &format!(", normal error {v:.2} deg");
            }
            eprintln!("{line}");
            println!("run: {}", run.path.display());
            Ok(ExitCode::SUCCESS)
        }
        Ok(TrainOutcome::Interrupted { step }) => {
            eprintln!("interrupted at step {step}; checkpoint saved. Continue with: nfield train --resume {}", run.path.display());
            println!("run: {}", run.path.display());
            Ok(ExitCode::from(130))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            println!("run: {}", run.path.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A trained run's config, task and field, loaded from its last checkpoint.
struct LoadedRun {
    run: RunDir,
    config: Config,
    device: SelectedDevice,
    task: Box<dyn Task>,
    field: Field,
}

fn load_run(run_dir: &Path, choice: DeviceChoice) -> Result<LoadedRun> {
    let run = RunDir::open(run_dir)?;
    let mut config = Config::load(&run.config_path(), &[])?;
    config.resolve();
    let device = device::select(choice)?;
    eprintln!("device: {}", device.description);
    let mut task = config.task.build(&config, &device.device)?;
    // No importance points: the checkpoint brings NeuRBF's kernels.
    let field = Field::new(&config.model, &task.field_spec(), config.train.seed, &device.device)?;
    let mut adam = Adam::new(&config.train);
    let (field, _, state) = run.load_checkpoint(field, &mut adam, &device.device)?;
    task.restore(&state)?;
    Ok(LoadedRun { run, config, device, task, field })
}

fn fresh_command(path: &Path, sets: &[String], choice: DeviceChoice) -> Result<ExitCode> {
    let mut config = Config::load(path, sets)?;
    for note in config.resolve() {
        eprintln!("note: {note}");
    }
    let Some(fresh) = config.fresh.clone() else {
        bail!("{} has no [fresh] table (parameter, candidates, bins, inits) to search", path.display());
    };
    if let Some(f) = config.fresh.as_mut().filter(|f| f.chosen.is_some()) {
        eprintln!("note: fresh.chosen is set in {}; searching again", path.display());
        f.chosen = None;
    }
    config.check_resolved()?;
    let device = device::select(choice)?;
    eprintln!("device: {}", device.description);
    let task = config.task.build(&config, &device.device)?;
    for warning in task.warnings() {
        eprintln!("warning: {warning}");
    }
    let (_, report) = train::run_fresh(&config, task.as_ref(), &device.device, false)?;
    println!("FreSh on {}: {} initialisations per candidate, {} spectrum bins", config.task.options().path().display(), fresh.inits, report.bins);
    println!("{:>24}  {:>10}  {:>10}", fresh.parameter, "distance", "std error");
    for (i, s) in report.scores.iter().enumerate() {
        let mark = if i == report.choice { "  <- chosen" } else { "" };
        println!("{:>24}  {:>10.4}  {:>10.4}{mark}", s.candidate.to_string(), s.distance, s.std_error);
    }
    println!("chosen: {} = {} ({:.1} s)", report.parameter, report.chosen(), report.seconds);
    Ok(ExitCode::SUCCESS)
}

fn eval_command(run_dir: &Path, choice: DeviceChoice) -> Result<ExitCode> {
    let LoadedRun { run, config, device, task, field } = load_run(run_dir, choice)?;
    let metrics = task.evaluate(&field, &device.device)?;
    let mut summary = run.read_summary().unwrap_or_else(|| serde_json::json!({}));
    summary["task"] = task.kind().into();
    summary["model"] = config.model_name().into();
    summary["params"] = field.param_count().into();
    summary["trainable_params"] = field.trainable_params().into();
    for (k, v) in &metrics {
        summary[k] = train::round(*v, 5).into();
        println!("{k}: {v:.5}");
    }
    run.write_summary(&summary)?;
    Ok(ExitCode::SUCCESS)
}

fn render_command(args: &RenderArgs) -> Result<ExitCode> {
    let LoadedRun { run, device, task, field, .. } = load_run(&args.run_dir, args.device)?;
    let request = RenderRequest {
        size: args.size,
        view: args.view,
        orbit: args.orbit,
        mode: args.mode,
        out: args.out.clone().unwrap_or_else(|| run.path.join("renders")),
    };
    let written = task.render(&field, &request, &device.device)?;
    match (args.orbit, written.first()) {
        (Some(frames), Some(first)) => {
            let gif = written.iter().find(|p| p.extension().is_some_and(|e| e == "gif"));
            let also = gif.map(|g| format!(" and {}", g.display())).unwrap_or_default();
            println!("wrote {frames} frames to {}{also}", first.parent().unwrap_or(Path::new(".")).display());
        }
        _ => written.iter().for_each(|p| println!("wrote {}", p.display())),
    }
    Ok(ExitCode::SUCCESS)
}

/// `nfield mesh`: the task's surface of a trained field as a binary PLY.
fn mesh_command(run_dir: &Path, resolution: Option<usize>, out: Option<PathBuf>, choice: DeviceChoice) -> Result<ExitCode> {
    let LoadedRun { run, device, task, field, .. } = load_run(run_dir, choice)?;
    let request = MeshRequest { resolution, out, run_dir: run.path.clone() };
    let (path, about) = task.mesh(&field, &request, &device.device)?;
    eprintln!("{about}");
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}
