//! The command line: argument definitions and what each subcommand does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::data::image;
use crate::device::{self, DeviceChoice, SelectedDevice};
use crate::fields::Field;
use crate::optim::Adam;
use crate::render::render_image;
use crate::render::sphere_trace::{self, Camera, Shading};
use crate::run::RunDir;
use crate::tasks;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RenderMode {
    Rgb,
    Depth,
    Normal,
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
    // Check the inputs before any directory is made, so a typo leaves nothing behind.
    config.check_resolved()?;
    for warning in tasks::check_inputs(&config)? {
        eprintln!("warning: {warning}");
    }
    let device = device::select(args.device)?;
    eprintln!("device: {}", device.description);

    // FreSh chooses its hyperparameter before anything is written (a resumed run already has it).
    let mut fresh_report = None;
    if let Some(fresh) = config.fresh.clone() {
        match &fresh.chosen {
            Some(value) => {
                let key = fresh.parameter.trim_start_matches("model.");
                config = config.with_model_value(key, value).context("fresh.chosen")?;
            }
            None => {
                let (chosen, report) = train::run_fresh(&config, &device.device, args.quiet)?;
                eprintln!("fresh: {} = {} ({:.1} s)", report.parameter, report.chosen(), report.seconds);
                config = chosen;
                fresh_report = Some(train::fresh_json(&report, fresh.inits));
            }
        }
    }

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
    let outcome = train::train(&config, &run, &device, &options);
    match outcome {
        Ok(TrainOutcome::Finished { summary }) => {
            let mut line = format!(
                "{} steps in {:.1} s ({:.1} steps/s), {} parameters",
                summary["steps"], summary["train_seconds"].as_f64().unwrap_or(0.0),
                summary["steps_per_second"].as_f64().unwrap_or(0.0), summary["params"]
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

/// A trained run's config, device and field, loaded from its last checkpoint.
struct LoadedRun {
    run: RunDir,
    config: Config,
    device: SelectedDevice,
    field: Field,
}

fn load_run(run_dir: &Path, choice: DeviceChoice) -> Result<LoadedRun> {
    let run = RunDir::open(run_dir)?;
    let mut config = Config::load(&run.config_path(), &[])?;
    config.resolve();
    let spec = tasks::field_spec(&config)?;
    let device = device::select(choice)?;
    eprintln!("device: {}", device.description);
    let field = Field::new(&config.model, &spec, config.train.seed, &device.device)?;
    let mut adam = Adam::new(&config.train);
    let (field, _) = run.load_checkpoint(field, &mut adam, &device.device)?;
    Ok(LoadedRun { run, config, device, field })
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
    for warning in tasks::check_inputs(&config)? {
        eprintln!("warning: {warning}");
    }
    let device = device::select(choice)?;
    eprintln!("device: {}", device.description);
    let (_, report) = train::run_fresh(&config, &device.device, false)?;
    println!("FreSh on {}: {} initialisations per candidate, {} spectrum bins", config.task.path.display(), fresh.inits, report.bins);
    println!("{:>24}  {:>10}  {:>10}", fresh.parameter, "distance", "std error");
    for (i, s) in report.scores.iter().enumerate() {
        let mark = if i == report.choice { "  <- chosen" } else { "" };
        println!("{:>24}  {:>10.4}  {:>10.4}{mark}", s.candidate.to_string(), s.distance, s.std_error);
    }
    println!("chosen: {} = {} ({:.1} s)", report.parameter, report.chosen(), report.seconds);
    Ok(ExitCode::SUCCESS)
}

fn eval_command(run_dir: &Path, choice: DeviceChoice) -> Result<ExitCode> {
    let LoadedRun { run, config, device, field } = load_run(run_dir, choice)?;
    let task = tasks::build(&config, &device.device)?;
    let metrics = task.evaluate(&field, &device.device)?;
    let mut summary = run.read_summary().unwrap_or_else(|| serde_json::json!({}));
    summary["task"] = task.name().into();
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
    let LoadedRun { run, config, device, field } = load_run(&args.run_dir, args.device)?;
    if config.task.kind == "sdf" {
        return render_sdf(args, &run, &config, &device, &field);
    }
    if config.task.kind == "image" && (args.view.is_some() || args.orbit.is_some() || args.mode != RenderMode::Rgb) {
        bail!("--view, --orbit and --mode apply to SDF and radiance-field runs; an image run renders with --size only");
    }
    let target = tasks::image_target(&config)?;
    let (width, height) = args.size.unwrap_or((target.width, target.height));
    let out = args.out.clone().unwrap_or_else(|| run.path.join("renders"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let stem = unused_stem(&out, &format!("image-{width}x{height}"));
    let pixels = render_image(&field, width, height, config.eval.chunk_size, &device.device);
    for path in image::save(&stem, width, height, target.channels, &pixels, target.format)? {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `dir/base`, or `dir/base-2`, ... so that no earlier render or mesh is overwritten.
fn unused_stem(dir: &Path, base: &str) -> PathBuf {
    let taken = |p: &Path| ["png", "exr", "ply"].iter().any(|e| p.with_extension(e).exists());
    let mut stem = dir.join(base);
    let mut i = 2;
    while taken(&stem) {
        stem = dir.join(format!("{base}-{i}"));
        i += 1;
    }
    stem
}

/// Sphere-traced pictures of a trained SDF: one front view, or `--orbit FRAMES` views around it
/// into a new folder.
fn render_sdf(args: &RenderArgs, run: &RunDir, config: &Config, device: &SelectedDevice, field: &Field) -> Result<ExitCode> {
    if args.view.is_some() {
        bail!("--view renders a training camera, and an SDF run has none; use --orbit FRAMES");
    }
    let (width, height) = args.size.unwrap_or((512, 512));
    let shading = match args.mode {
        RenderMode::Rgb => Shading::Lit,
        RenderMode::Depth => Shading::Depth,
        RenderMode::Normal => Shading::Normal,
    };
    let mode = format!("{:?}", args.mode).to_lowercase();
    let out = args.out.clone().unwrap_or_else(|| run.path.join("renders"));
    let frames = args.orbit.unwrap_or(1);
    if frames == 0 {
        bail!("--orbit needs at least 1 frame");
    }
    let chunk = config.eval.chunk_size;
    let mut sdf = |points: &[f32]| tasks::sdf::field_distances(field, points, chunk, &device.device);
    let stems: Vec<PathBuf> = if args.orbit.is_some() {
        let folder = unused_dir(&out, &format!("orbit-{mode}-{width}x{height}"));
        std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
        (0..frames).map(|i| folder.join(format!("{i:03}"))).collect()
    } else {
        std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
        vec![unused_stem(&out, &format!("{mode}-{width}x{height}"))]
    };
    let bar = indicatif::ProgressBar::new(frames as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("render [{elapsed_precise}] {wide_bar} {pos}/{len} frames ETA {eta}").expect("valid template"));
    for (i, stem) in stems.iter().enumerate() {
        let camera = Camera::orbit(i, frames, 3.0, 20.0);
        let pixels = sphere_trace::render(&mut sdf, &camera, width, height, shading);
        image::save(stem, width, height, 3, &pixels, image::SampleFormat::U8)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    match stems.as_slice() {
        [one] => println!("wrote {}", one.with_extension("png").display()),
        _ => println!("wrote {} frames to {}", stems.len(), stems[0].parent().unwrap_or(Path::new(".")).display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `nfield mesh`: marching cubes of a trained SDF, in the original mesh's units.
fn mesh_command(run_dir: &Path, resolution: Option<usize>, out: Option<PathBuf>, choice: DeviceChoice) -> Result<ExitCode> {
    let LoadedRun { run, config, device, field } = load_run(run_dir, choice)?;
    if config.task.kind != "sdf" {
        bail!("nfield mesh needs an SDF run; {} is a {} run", run_dir.display(), config.task.kind);
    }
    let resolution = resolution.or(config.eval.resolution).unwrap_or(256);
    if !(2..=4096).contains(&resolution) {
        bail!("--resolution must be between 2 and 4096, got {resolution}");
    }
    let path = match out {
        Some(p) if p.exists() => bail!("{} already exists; nfield never overwrites a file (choose another --out)", p.display()),
        Some(p) => p,
        None => unused_stem(&run.path, &format!("mesh-{resolution}")).with_extension("ply"),
    };
    let (_, normalisation, _) = tasks::sdf::load_mesh(&config)?;
    let bar = indicatif::ProgressBar::new(resolution as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("mesh [{elapsed_precise}] {wide_bar} {pos}/{len} slices ETA {eta}").expect("valid template"));
    let chunk = config.eval.chunk_size;
    let surface = tasks::sdf::field_surface(&field, resolution, chunk, &device.device, |_, _, _| bar.inc(1))?;
    bar.finish_and_clear();
    if surface.triangles.is_empty() {
        bail!("the field has no zero level set inside the [-1, 1] box at resolution {resolution}: nothing to mesh (is the run trained?)");
    }
    let ply = tasks::sdf::surface_ply(&field, &surface, resolution, &normalisation, chunk, &device.device);
    crate::run::write_atomic(&path, &ply)?;
    eprintln!("{} vertices, {} triangles", surface.vertices.len(), surface.triangles.len());
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `dir/base`, or `dir/base-2`, ... that does not exist yet.
fn unused_dir(dir: &Path, base: &str) -> PathBuf {
    let mut path = dir.join(base);
    let mut i = 2;
    while path.exists() {
        path = dir.join(format!("{base}-{i}"));
        i += 1;
    }
    path
}
