//! The command line: argument definitions and what each subcommand does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::device::{self, DeviceChoice, SelectedDevice};
use crate::fields::Field;
use crate::optim::Adam;
use crate::render::RenderMode;
use crate::run::RunDir;
use crate::sweep::{self, RunState, Sweep};
use crate::tasks::{MeshRequest, RenderRequest, Task};
use crate::train::{self, TrainObserver, TrainOptions, TrainOutcome};
use crate::viewer::{self, LiveTraining, ViewerInput, ViewerOptions};

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
    /// Many runs from one config: the product of --grid lists (and --seeds), here (--jobs) or as a
    /// Slurm job array (--slurm). The same command again resumes the sweep.
    Sweep(SweepArgs),
    /// The table of a sweep's scores (means over seeds), Markdown or CSV; it works while the
    /// sweep runs and says how many runs of each point finished.
    Table {
        dir: PathBuf,
        /// Comma-separated values instead of Markdown.
        #[arg(long)]
        csv: bool,
        /// Average over this swept key too, as over seeds (repeatable), e.g. task.path.
        #[arg(long, value_name = "KEY")]
        average: Vec<String>,
    },
    /// Open the viewer window on a finished run, or train a config with the window open.
    View(ViewArgs),
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
    /// Train with the viewer window open (closing it stops training at a checkpoint).
    #[arg(long)]
    pub viewer: bool,
    /// With --viewer: close the window when training finishes.
    #[arg(long, requires = "viewer")]
    pub exit_when_done: bool,
    /// Count kernel launches and host reads per steady-state step on a GPU backend (`times`:
    /// also each kernel's device time); printed and written to the run's profile.json.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "launches", conflicts_with = "viewer")]
    pub profile: Option<crate::profile::ProfileKind>,
}

#[derive(Args, Debug)]
pub struct ViewArgs {
    /// A run directory, or a config to train with the window open.
    pub target: PathBuf,
    /// Override a config key when training a config (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Render FRAMES pictures (an orbit turns once), save the window to this PNG and exit.
    #[arg(long, value_name = "PNG")]
    pub screenshot: Option<PathBuf>,
    #[arg(long, default_value_t = 30)]
    pub frames: usize,
    /// The picture's size (the window adds its side panel), e.g. 800x800.
    #[arg(long, value_parser = parse_size, default_value = "640x480")]
    pub size: (usize, usize),
    /// Folder for the run when training a config.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    pub config: PathBuf,
    /// Override a config key for every run (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A key and its values, `KEY=[v1,v2,...]` (repeatable; runs are the product of the lists).
    #[arg(long = "grid", value_name = "KEY=[V,...]")]
    pub grid: Vec<String>,
    /// Repeat every point with train.seed = 0 .. N-1.
    #[arg(long, default_value_t = 1)]
    pub seeds: usize,
    /// The sweep's folder name (default: the config's name plus "-sweep").
    #[arg(long)]
    pub name: Option<String>,
    /// Folder that holds the sweep's folder.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Runs at once on this machine, the cores split between them.
    #[arg(long, default_value_t = 1, conflicts_with = "slurm")]
    pub jobs: usize,
    /// Write a Slurm job-array script (one array task per run) instead of running here.
    #[arg(long)]
    pub slurm: bool,
    /// With --slurm: submit the unfinished runs with sbatch and print the job id.
    #[arg(long, requires = "slurm")]
    pub submit: bool,
    /// Slurm partition (else [sweep.slurm] partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm time limit per run, e.g. 2:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per run.
    #[arg(long)]
    pub cpus: Option<usize>,
    /// Memory per run, e.g. 16G.
    #[arg(long)]
    pub memory: Option<String>,
    /// GPUs per run.
    #[arg(long)]
    pub gpus: Option<usize>,
    /// Runs at once on the cluster (--array=...%M).
    #[arg(long)]
    pub max_parallel: Option<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
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
        Some(Command::Sweep(args)) => sweep_command(&args),
        Some(Command::View(args)) => view_command(&args),
        Some(Command::Table { dir, csv, average }) => {
            print!("{}", sweep::table(&dir, csv, &average)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `nfield sweep`: plan every point (refusing bad ones before anything starts), then run them
/// here or hand them to Slurm.
fn sweep_command(args: &SweepArgs) -> Result<ExitCode> {
    if args.seeds == 0 || args.jobs == 0 {
        bail!("--seeds and --jobs must be at least 1");
    }
    let plan = Sweep::plan(&args.config, &args.set, &args.grid, args.seeds)?;
    let stem = args.config.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "sweep".into());
    let name = args.name.clone().unwrap_or_else(|| format!("{stem}-sweep"));
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        bail!("--name {name:?} must be a plain folder name");
    }
    let dir = std::path::absolute(args.out.join(&name)).unwrap_or_else(|_| args.out.join(&name));
    plan.open(&dir)?;
    let device = args.device.name();
    if args.slurm {
        let base = Config::load(&args.config, &args.set)?;
        let mut slurm = base.sweep.map(|s| s.slurm).unwrap_or_default();
        slurm.partition = args.partition.clone().or(slurm.partition);
        slurm.time = args.time.clone().or(slurm.time);
        slurm.memory = args.memory.clone().or(slurm.memory);
        slurm.cpus = args.cpus.unwrap_or(slurm.cpus);
        slurm.gpus = args.gpus.unwrap_or(slurm.gpus);
        slurm.max_parallel = args.max_parallel.unwrap_or(slurm.max_parallel);
        let nfield = std::env::current_exe().context("cannot find the nfield binary for the script")?;
        let script = dir.join("slurm.sh");
        crate::run::write_atomic(&script, plan.slurm_script(&dir, &nfield, device, &slurm).as_bytes())?;
        std::fs::create_dir_all(dir.join("slurm"))?;
        eprintln!("wrote {} ({} runs)", script.display(), plan.runs.len());
        let pending: Vec<usize> = (0..plan.runs.len()).filter(|&i| Sweep::state(&dir, &plan.runs[i]) != RunState::Finished).collect();
        if !args.submit {
            eprintln!(
                "submit it with: sbatch --array=0-{} {}  (a failed task alone: sbatch --array=I {})",
                plan.runs.len() - 1,
                script.display(),
                script.display()
            );
        } else if pending.is_empty() {
            eprintln!("every run of the sweep has finished; nothing to submit");
        } else {
            let id = sweep::submit(&script, &pending, slurm.max_parallel)?;
            eprintln!("submitted {} runs as Slurm job {id}; `nfield table {}` follows them", pending.len(), dir.display());
            println!("job: {id}");
        }
        println!("sweep: {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let failed = run_sweep_here(&plan, &dir, args.jobs, device)?;
    print!("{}", sweep::table(&dir, false, &[])?);
    println!("sweep: {}", dir.display());
    match failed {
        SweepOutcome::Done(0) => Ok(ExitCode::SUCCESS),
        SweepOutcome::Done(n) => {
            eprintln!("{n} runs failed; their logs are in {} (run the same command again to retry them)", dir.display());
            Ok(ExitCode::FAILURE)
        }
        SweepOutcome::Interrupted => {
            eprintln!("interrupted; run the same command again to resume the sweep");
            Ok(ExitCode::from(130))
        }
    }
}

enum SweepOutcome {
    /// Every run was tried; this many failed.
    Done(usize),
    Interrupted,
}

/// Run the unfinished runs of a sweep as child `nfield train` processes, `jobs` at a time with
/// the cores split between them; each child's messages go to `<run>.log` in the sweep folder.
fn run_sweep_here(plan: &Sweep, dir: &Path, jobs: usize, device: &str) -> Result<SweepOutcome> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1);
    let exe = std::env::current_exe().context("cannot find the nfield binary")?;
    let pending: Vec<&sweep::SweepRun> = plan.runs.iter().filter(|r| Sweep::state(dir, r) != RunState::Finished).collect();
    let bar = indicatif::ProgressBar::new(plan.runs.len() as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("sweep [{elapsed_precise}] {wide_bar} {pos}/{len} runs {msg}").expect("valid template"));
    bar.set_position((plan.runs.len() - pending.len()) as u64);
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    // Ctrl-C reaches the children too (they checkpoint and stop); the sweep stops starting runs.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let (mut queue, mut running, mut failed) = (pending.into_iter(), Vec::new(), 0);
    loop {
        while running.len() < jobs && !interrupt.load(Ordering::SeqCst) {
            let Some(run) = queue.next() else { break };
            let log = std::fs::File::create(dir.join(format!("{}.log", run.name))).with_context(|| format!("cannot write {}.log", run.name))?;
            let child = std::process::Command::new(&exe)
                .args(Sweep::train_args(dir, run))
                .args(["--device", device])
                .env("RAYON_NUM_THREADS", threads.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .context("cannot start nfield train")?;
            running.push((run.name.clone(), child));
        }
        if running.is_empty() {
            break;
        }
        bar.set_message(running.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut still = Vec::new();
        for (name, mut child) in running {
            match child.try_wait()? {
                None => still.push((name, child)),
                Some(status) if status.success() => bar.inc(1),
                Some(status) if status.code() == Some(130) => {}
                Some(_) => {
                    failed += 1;
                    bar.println(format!("failed: {name} (see {})", dir.join(format!("{name}.log")).display()));
                }
            }
        }
        running = still;
    }
    bar.finish_and_clear();
    Ok(if interrupt.load(Ordering::SeqCst) { SweepOutcome::Interrupted } else { SweepOutcome::Done(failed) })
}

/// A training run ready to go: config resolved, inputs loaded, field built, run directory made.
struct Training {
    config: Config,
    task: Box<dyn Task>,
    field: Field,
    run: RunDir,
    device: SelectedDevice,
    resume: bool,
}

fn train_command(args: TrainArgs) -> Result<ExitCode> {
    if args.viewer {
        viewer::check_display()?;
    }
    let training = start_training(&args)?;
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    // First Ctrl-C: finish the step, save a checkpoint, stop. A second one exits at once.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    if args.viewer {
        let options = ViewerOptions { screenshot: None, frames: 0, size: (640, 480), exit_when_done: args.exit_when_done };
        return train_in_viewer(training, interrupt, options);
    }
    let Training { config, task, field, run, device, resume } = training;
    let options = TrainOptions { quiet: args.quiet, interrupt, resume, observer: None, profile: args.profile };
    report_training(train::train(&config, task, field, &run, &device, options), &run)
}

/// Everything up to the run directory: nothing is written before the config, the inputs and the
/// field have been checked.
fn start_training(args: &TrainArgs) -> Result<Training> {
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
    if args.profile.is_some() && !resume && config.train.steps <= crate::profile::WARMUP_STEPS + 1 {
        bail!(
            "--profile needs more than {} steps: the first {} compile and tune the kernels and the last reads the loss, and are not counted",
            crate::profile::WARMUP_STEPS + 1,
            crate::profile::WARMUP_STEPS
        );
    }
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
    Ok(Training { config, task, field, run, device, resume })
}

/// Train in a thread with the viewer window open; closing the window stops at a checkpoint.
fn train_in_viewer(training: Training, interrupt: Arc<AtomicBool>, options: ViewerOptions) -> Result<ExitCode> {
    let Training { config, task, field, run, device, resume } = training;
    // The window's own task and field on the display device, for pictures.
    let view_task = config.task.build(&config, &device.device)?;
    let view_field = field.valid();
    let title = format!("nfield: {} {} ({})", config.task.kind(), config.model_name(), run.path.display());
    eprintln!("viewer: {}", viewer::display_path(device.wgpu_setup.is_some()));
    let run_path = run.path.clone();
    let (train_config, train_device, train_run) = (config.clone(), device.clone(), RunDir::open(&run.path)?);
    let train_interrupt = interrupt.clone();
    let live = LiveTraining {
        // The window shows progress: no progress bar.
        train: Box::new(move |observer: Box<dyn TrainObserver>| {
            let options = TrainOptions { quiet: true, interrupt: train_interrupt, resume, observer: Some(observer), profile: None };
            train::train(&train_config, task, field, &train_run, &train_device, options)
        }),
        interrupt: interrupt.clone(),
        total_steps: config.train.steps,
    };
    let end = viewer::run(ViewerInput { task: view_task, field: view_field, device, run, title, live: Some(live) }, options)?;
    let run = RunDir::open(&run_path)?;
    match end.training {
        Some(outcome) => report_training(outcome, &run),
        None => bail!("training did not report an outcome"),
    }
}

/// Print how a training run ended; the exit code.
fn report_training(outcome: Result<TrainOutcome>, run: &RunDir) -> Result<ExitCode> {
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

/// `nfield view`: a finished run (no training), or a config trained with the window open.
fn view_command(args: &ViewArgs) -> Result<ExitCode> {
    viewer::check_display()?;
    if args.target.is_file() {
        if args.screenshot.is_some() {
            bail!("--screenshot views a finished run; to train with the window open, leave it out");
        }
        // The same as `nfield train CONFIG --viewer`.
        let train = TrainArgs {
            config: Some(args.target.clone()),
            set: args.set.clone(),
            device: args.device,
            out: args.out.clone(),
            viewer: true,
            ..Default::default()
        };
        return train_command(train);
    }
    if !args.target.is_dir() {
        bail!("{} is neither a config file nor a run directory", args.target.display());
    }
    if !args.set.is_empty() {
        bail!("--set applies when viewing a config; a run directory keeps its own config");
    }
    let options = ViewerOptions { screenshot: args.screenshot.clone(), frames: args.frames, size: args.size, exit_when_done: false };
    let LoadedRun { run, config, device, task, field } = load_run(&args.target, args.device)?;
    let title = format!("nfield: {} {} ({})", config.task.kind(), config.model_name(), run.path.display());
    eprintln!("viewer: {}", viewer::display_path(device.wgpu_setup.is_some()));
    let end = viewer::run(ViewerInput { task, field, device, run, title, live: None }, options)?;
    if let Some(report) = end.report {
        println!("{report}");
    }
    Ok(ExitCode::SUCCESS)
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
