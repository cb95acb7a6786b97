//! The experiment config: TOML tables `[task]`, `[model]` (with `[model.cam]`), `[fresh]`,
//! `[train]`, `[eval]`, `[output]`.
//!
//! Unknown keys are errors that name the key, the file and the nearest valid key. `--set a.b=v`
//! overrides any key before validation, so overrides get the same checks as the file.
//! `resolve` fills every default (some depend on the model kind) so the run directory's
//! `config.toml` states exactly what ran.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The default experiment, compiled in so `nfield` with no arguments works from anywhere.
pub const DEFAULT_CONFIG: &str = include_str!("../configs/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub task: TaskConfig,
    pub model: ModelConfig,
    /// FreSh: choose one embedding hyperparameter before training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh: Option<FreshConfig>,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub output: OutputConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// `image` or `sdf` (radiance fields come later).
    pub kind: String,
    /// The target (an image, or a mesh for `sdf`), relative to the config file.
    pub path: PathBuf,
    /// Image: centre crop `[width, height]` in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<[u32; 2]>,
    /// Image: the fraction of pixels, drawn at random (the same ones for every run of an image),
    /// that training never sees; `holdout_psnr` then measures the field between training pixels
    /// (FreSh's protocol holds out 10 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<f64>,
    /// Pixels (points for `sdf`) per step; 0 trains on every pixel (the whole pool) every step.
    #[serde(default)]
    pub batch_size: usize,
    /// SDF: the mesh is centred and scaled so its farthest vertex sits at this radius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radius: Option<f64>,
    /// SDF: training points drawn at a time (surface, near-surface and uniform, 4 : 3 : 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,
    /// SDF: draw a fresh pool every this many steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_refresh: Option<u64>,
    /// SDF: standard deviation of the near-surface points' offsets, in the `[-1, 1]` box's units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surface_noise: Option<f64>,
}

/// One flat table for every field kind; keys a kind does not use are dropped by `resolve`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `ffn` | `siren` | `hashgrid`.
    pub kind: String,
    /// Layers with an activation (each `width` wide); the linear output layer comes after them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_layers: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    /// Output activation: `sigmoid` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_activation: Option<String>,
    // Fourier features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequencies: Option<usize>,
    // SIREN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omega0: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_omega: Option<f64>,
    // Hash grid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features_per_level: Option<usize>,
    /// Hash-table entries per level, as a power of two (instant-ngp's `log2_hashmap_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log2_table_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_resolution: Option<usize>,
    /// Finest level's resolution; 0 means the target's largest side (NeuRBF: half of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finest_resolution: Option<usize>,
    // NeuRBF.
    /// Radial function: `ivq` (inverse quadric) | `gauss` | `tent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Kernel count; 0 derives it from `params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<usize>,
    /// Parameter budget (frozen kernel centres and shapes included) that sets the kernel count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<usize>,
    /// Nearest kernels each point uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neighbours: Option<usize>,
    /// RBF feature channels (one sinusoid frequency each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbf_features: Option<usize>,
    /// `[lowest, highest]` sinusoid frequency of the RBF channels, log-spaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbf_frequencies: Option<[f64; 2]>,
    /// `[lowest, highest]` frequency of the decoder's residual sine, log-spaced over `width`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_frequencies: Option<[f64; 2]>,
    /// `false`: the RBF channels use the kernel values without sinusoids (ablation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbf_sinusoids: Option<bool>,
    /// `false`: no residual sine after the decoder's first layer (ablation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_sinusoids: Option<bool>,
    /// Divide kernel values by their sum over the neighbours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kmeans_iterations: Option<usize>,
    /// Cluster covariances are divided by this to widen the kernels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariance_alpha: Option<f64>,
    // GNF.
    /// Gaussian neurons in feature space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neurons: Option<usize>,
    /// `dif-grid` | `hashgrid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
    /// DiF-Grid: each level's cells per axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_resolutions: Option<Vec<usize>>,
    /// DiF-Grid: each level's feature channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_channels: Option<Vec<usize>>,
    /// DiF-Grid: how many times each level repeats along each axis (empty: once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_tiles: Option<Vec<f64>>,
    /// Coordinate-aware modulation of the decoder (ffn, siren, hashgrid, neurbf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cam: Option<CamConfig>,
}

/// `[model.cam]`: scale and shift grids on the decoder's hidden layers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CamConfig {
    /// Grid cells per axis of the modulation coordinate (the pixel for images).
    pub grid: Vec<usize>,
    /// Hidden layers to modulate, 0-based; empty modulates every hidden layer.
    pub layers: Vec<usize>,
    /// `point` (each point's features) | `ray` (each ray's samples and features) | `none`.
    pub norm: String,
    /// 3-D coordinates: three summed planes instead of a volume.
    pub factored: bool,
}

impl Default for CamConfig {
    fn default() -> Self {
        Self { grid: vec![32, 32], layers: vec![], norm: "point".into(), factored: false }
    }
}

/// `[fresh]`: score candidate values of one embedding hyperparameter by the spectrum of the
/// untrained field's output and train with the closest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FreshConfig {
    /// The dotted model key FreSh sets (one of `FRESH_PARAMETERS`).
    pub parameter: String,
    /// Values to score, each one the key accepts.
    pub candidates: Vec<toml::Value>,
    /// Spectrum bins compared, after the DC bin is dropped.
    #[serde(default = "default_fresh_bins")]
    pub bins: usize,
    /// Random initialisations averaged per candidate.
    #[serde(default = "default_fresh_inits")]
    pub inits: usize,
    /// Written into the run's config once FreSh has chosen; a config that has it skips the search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<toml::Value>,
}

fn default_fresh_bins() -> usize {
    64
}

fn default_fresh_inits() -> usize {
    10
}

/// The embedding hyperparameters FreSh can choose.
pub const FRESH_PARAMETERS: &[&str] = &["model.sigma", "model.omega0", "model.finest_resolution", "model.rbf_frequencies"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub steps: u64,
    pub seed: u64,
    /// Learning rate of the network (MLP) parameters; 0 picks the model's default.
    pub lr: f64,
    /// Learning rate of grid and table parameters; 0 picks the model's default.
    pub grid_lr: f64,
    /// Learning rate of CAM's grids; 0 picks 10 x `lr` (CAM's setting).
    pub cam_lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Grids see sparse gradients, so their Adam epsilon is tiny (instant-ngp).
    pub grid_eps: f64,
    /// `constant` | `step` | `cosine` | `exponential`.
    pub schedule: String,
    /// `step`: steps at which the rate is multiplied by `gamma`.
    pub milestones: Vec<u64>,
    pub gamma: f64,
    /// `cosine` and `exponential`: final rate as a fraction of the initial one.
    pub final_lr_ratio: f64,
    /// `mse` | `half_mse` (CAM's 0.5 MSE; same optimum, half the gradient) | `l1` | `mape`
    /// (SDF: `|p - t| / (|t| + 0.01)`, instant-ngp's and NeuRBF's).
    pub loss: String,
    /// Read the loss back (and log it) every this many steps.
    pub log_every: u64,
    /// Full evaluation every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 2000,
            seed: 0,
            lr: 0.0,
            grid_lr: 0.0,
            cam_lr: 0.0,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-15,
            grid_eps: 1e-15,
            schedule: "constant".into(),
            milestones: vec![],
            gamma: 0.1,
            final_lr_ratio: 0.01,
            loss: "mse".into(),
            log_every: 50,
            eval_every: 0,
            checkpoint_every: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Points per forward pass when rendering for evaluation (bounds memory).
    pub chunk_size: usize,
    /// SDF: grid points per axis for IoU and the marching-cubes mesh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<usize>,
    /// SDF: points sampled on each surface for Chamfer, F-score and normal error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surface_samples: Option<usize>,
    /// SDF: the F-score's distance threshold, in the `[-1, 1]` box's units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fscore_threshold: Option<f64>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { chunk_size: 1 << 16, resolution: None, surface_samples: None, fscore_threshold: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Write `reconstruction.png` (or `.exr`) at the end of training.
    pub reconstruction: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self { reconstruction: true }
    }
}

pub const MODEL_KINDS: &[&str] = &["ffn", "siren", "hashgrid", "neurbf", "gnf"];
/// Kinds with an MLP decoder that CAM can modulate.
pub const CAM_KINDS: &[&str] = &["ffn", "siren", "hashgrid", "neurbf"];
pub const TASK_KINDS: &[&str] = &["image", "sdf"];
const SCHEDULES: &[&str] = &["constant", "step", "cosine", "exponential"];
const LOSSES: &[&str] = &["mse", "half_mse", "l1", "mape"];

impl Config {
    /// Read a config file, apply `--set` overrides, validate and resolve paths against its folder.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        // Absolute, so the run directory's copy of the config still finds the target.
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        Self::parse(&text, &path.display().to_string(), &base, overrides)
    }

    /// The compiled-in default experiment; its paths resolve against the repository's `configs/`.
    pub fn default_experiment(overrides: &[String]) -> Result<Self> {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        Self::parse(DEFAULT_CONFIG, "configs/default.toml", &base, overrides)
    }

    /// Parse TOML text; `source` names it in errors, `base` anchors relative paths.
    pub fn parse(text: &str, source: &str, base: &Path, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{source} is not valid TOML: {}", one_line(e.message())))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let mut config = from_table(table, source)?;
        // A path typed on the command line is relative to where the user stands.
        let path_from_cli = overrides.iter().any(|o| o.split('=').next().map(str::trim) == Some("task.path"));
        if config.task.path.is_relative() {
            config.task.path = if path_from_cli {
                std::env::current_dir().unwrap_or_default().join(&config.task.path)
            } else {
                base.join(&config.task.path)
            };
        }
        config.validate(source)?;
        Ok(config)
    }

    /// Check values that parse but make no sense, naming the key.
    fn validate(&self, source: &str) -> Result<()> {
        check_choice(source, "task.kind", &self.task.kind, TASK_KINDS)?;
        check_choice(source, "model.kind", &self.model.kind, MODEL_KINDS)?;
        check_choice(source, "train.schedule", &self.train.schedule, SCHEDULES)?;
        check_choice(source, "train.loss", &self.train.loss, LOSSES)?;
        if let Some(a) = &self.model.output_activation {
            check_choice(source, "model.output_activation", a, &["sigmoid", "none"])?;
        }
        let t = &self.train;
        if t.steps == 0 {
            bail!("{source}: train.steps must be at least 1");
        }
        for (key, v) in [("train.lr", t.lr), ("train.grid_lr", t.grid_lr), ("train.cam_lr", t.cam_lr)] {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("{source}: {key} must be a finite number >= 0 (0 picks the model's default), got {v}");
            }
        }
        for (key, v) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&v) {
                bail!("{source}: {key} must be in [0, 1), got {v}");
            }
        }
        if !(t.eps > 0.0 && t.grid_eps > 0.0) {
            bail!("{source}: train.eps and train.grid_eps must be > 0");
        }
        if !(t.final_lr_ratio > 0.0 && t.final_lr_ratio <= 1.0) {
            bail!("{source}: train.final_lr_ratio must be in (0, 1], got {}", t.final_lr_ratio);
        }
        if t.log_every == 0 {
            bail!("{source}: train.log_every must be at least 1");
        }
        if self.eval.chunk_size == 0 {
            bail!("{source}: eval.chunk_size must be at least 1");
        }
        if let Some([w, h]) = self.task.crop
            && (w == 0 || h == 0)
        {
            bail!("{source}: task.crop must be two positive sizes [width, height]");
        }
        if self.task.holdout.is_some_and(|h| !(h > 0.0 && h < 1.0)) {
            bail!("{source}: task.holdout must be a fraction of the pixels, between 0 and 1 (exclusive)");
        }
        if self.task.radius.is_some_and(|r| !(r > 0.0 && r <= 1.0)) {
            bail!("{source}: task.radius must be in (0, 1]: the mesh must fit the [-1, 1] box");
        }
        if self.task.surface_noise.is_some_and(|n| !(n >= 0.0 && n.is_finite())) {
            bail!("{source}: task.surface_noise must be a finite number >= 0");
        }
        for (key, v) in [
            ("task.pool_size", self.task.pool_size),
            ("eval.resolution", self.eval.resolution.map(|r| r.saturating_sub(1))),
            ("eval.surface_samples", self.eval.surface_samples),
        ] {
            if v == Some(0) {
                bail!("{source}: {key} must be at least {}", if key == "eval.resolution" { 2 } else { 1 });
            }
        }
        if self.task.pool_refresh == Some(0) {
            bail!("{source}: task.pool_refresh must be at least 1 step");
        }
        if self.eval.fscore_threshold.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
            bail!("{source}: eval.fscore_threshold must be a positive number");
        }
        let m = &self.model;
        for (key, v) in [
            ("model.hidden_layers", m.hidden_layers),
            ("model.width", m.width),
            ("model.frequencies", m.frequencies),
            ("model.levels", m.levels),
            ("model.features_per_level", m.features_per_level),
            ("model.neighbours", m.neighbours),
            ("model.rbf_features", m.rbf_features),
            ("model.neurons", m.neurons),
        ] {
            if v == Some(0) {
                bail!("{source}: {key} must be at least 1");
            }
        }
        if let Some(k) = &m.kernel {
            check_choice(source, "model.kernel", k, crate::fields::neurbf::KernelKind::NAMES)?;
        }
        if let Some(e) = &m.encoder {
            check_choice(source, "model.encoder", e, &["dif-grid", "hashgrid"])?;
        }
        for (key, range) in [("model.rbf_frequencies", m.rbf_frequencies), ("model.decoder_frequencies", m.decoder_frequencies)] {
            if range.is_some_and(|[lo, hi]| !(lo > 0.0 && hi >= lo && hi.is_finite())) {
                bail!("{source}: {key} must be [lowest, highest] with 0 < lowest <= highest");
            }
        }
        if m.covariance_alpha.is_some_and(|a| !(a > 0.0 && a.is_finite())) {
            bail!("{source}: model.covariance_alpha must be a positive number");
        }
        if m.log2_table_size.is_some_and(|l| !(3..=24).contains(&l)) {
            bail!("{source}: model.log2_table_size must be between 3 and 24");
        }
        if m.base_resolution.is_some_and(|r| r < 2) {
            bail!("{source}: model.base_resolution must be at least 2");
        }
        for (key, v) in [("model.sigma", m.sigma), ("model.omega0", m.omega0), ("model.hidden_omega", m.hidden_omega)] {
            if v.is_some_and(|v| !(v > 0.0 && v.is_finite())) {
                bail!("{source}: {key} must be a positive number");
            }
        }
        if let Some(cam) = &m.cam {
            check_choice(source, "model.cam.norm", &cam.norm, crate::fields::cam::CamNorm::NAMES)?;
            if cam.grid.is_empty() || cam.grid.len() > 3 || cam.grid.iter().any(|&r| r < 2) {
                bail!("{source}: model.cam.grid must list 1 to 3 axes of at least 2 cells, e.g. [32, 32]");
            }
            if cam.factored && cam.grid.len() != 3 {
                bail!("{source}: model.cam.factored needs a 3-axis model.cam.grid");
            }
            if cam.norm == "ray" {
                bail!("{source}: model.cam.norm = \"ray\" needs a task with rays; images and SDFs use \"point\"");
            }
        }
        if let Some(f) = &self.fresh {
            check_choice(source, "fresh.parameter", &f.parameter, FRESH_PARAMETERS)?;
            if f.candidates.is_empty() {
                bail!("{source}: fresh.candidates must list at least one value");
            }
            if f.bins < 2 {
                bail!("{source}: fresh.bins must be at least 2");
            }
            if f.inits == 0 {
                bail!("{source}: fresh.inits must be at least 1");
            }
        }
        Ok(())
    }

    /// Fill every default that depends on the model kind, and drop keys the kind does not use.
    pub fn resolve(&mut self) -> Vec<String> {
        let mut notes = self.resolve_task();
        let kind = self.model.kind.clone();
        let (defaults, lr, grid_lr) = model_defaults(&kind);
        let mut defaults: toml::Table = toml::from_str(defaults).expect("built-in model defaults are valid TOML");
        if self.task.kind == "sdf" && defaults.contains_key("output_activation") {
            // A signed distance is unbounded.
            defaults.insert("output_activation".into(), "none".into());
        }
        let mut table = toml::Table::try_from(&self.model).expect("a model config serialises");
        let takes_cam = CAM_KINDS.contains(&kind.as_str());
        table.retain(|key, _| {
            let used = key == "kind" || defaults.contains_key(key) || (key == "cam" && takes_cam);
            if !used {
                notes.push(format!("model.{key} is not used by model.kind = \"{kind}\"; ignored"));
            }
            used
        });
        for (key, value) in defaults {
            table.entry(key).or_insert(value);
        }
        self.model = table.try_into().expect("defaults fit the model config");
        if self.train.lr == 0.0 {
            self.train.lr = lr;
        }
        if self.train.grid_lr == 0.0 {
            self.train.grid_lr = grid_lr;
        }
        if self.model.cam.is_some() && self.train.cam_lr == 0.0 {
            self.train.cam_lr = 10.0 * self.train.lr;
        }
        notes
    }

    /// Fill the task's and evaluation's defaults and drop keys the task kind does not use.
    fn resolve_task(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        let (t, e) = (&mut self.task, &mut self.eval);
        let kind = t.kind.clone();
        let mut unused = |key: &str, set: bool| {
            if set {
                notes.push(format!("{key} is not used by task.kind = \"{kind}\"; ignored"));
            }
        };
        if t.kind == "sdf" {
            unused("task.crop", t.crop.take().is_some());
            unused("task.holdout", t.holdout.take().is_some());
            t.radius.get_or_insert(0.99);
            t.pool_size.get_or_insert(1 << 20);
            t.pool_refresh.get_or_insert(1000);
            t.surface_noise.get_or_insert(0.01);
            e.resolution.get_or_insert(256);
            e.surface_samples.get_or_insert(100_000);
            e.fscore_threshold.get_or_insert(0.01);
        } else {
            unused("task.radius", t.radius.take().is_some());
            unused("task.pool_size", t.pool_size.take().is_some());
            unused("task.pool_refresh", t.pool_refresh.take().is_some());
            unused("task.surface_noise", t.surface_noise.take().is_some());
            unused("eval.resolution", e.resolution.take().is_some());
            unused("eval.surface_samples", e.surface_samples.take().is_some());
            unused("eval.fscore_threshold", e.fscore_threshold.take().is_some());
        }
        notes
    }

    /// Checks that need the defaults `resolve` fills in; run after it, before anything is written.
    pub fn check_resolved(&self) -> Result<()> {
        if let Some(cam) = &self.model.cam {
            let hidden = self.model.hidden_layers.unwrap_or(0);
            if let Some(bad) = cam.layers.iter().find(|&&l| l >= hidden) {
                bail!("model.cam.layers: layer {bad} does not exist; the decoder has hidden layers 0 to {}", hidden.saturating_sub(1));
            }
            // Images modulate by the pixel position, SDFs by the 3-D point.
            let (axes, what) = if self.task.kind == "sdf" { (3, "an SDF is modulated by its 3-D point") } else { (2, "an image is modulated by its 2-D pixel position") };
            if cam.grid.len() != axes {
                bail!("model.cam.grid has {} axes, but {what}", cam.grid.len());
            }
        }
        Ok(())
    }

    /// This config with `model.<key>` set to `value`, checked like a file (FreSh's candidates).
    pub fn with_model_value(&self, key: &str, value: &toml::Value) -> Result<Config> {
        let mut table = toml::Table::try_from(self)?;
        if let Some(toml::Value::Table(model)) = table.get_mut("model") {
            model.insert(key.to_string(), value.clone());
        }
        let source = format!("model.{key} = {value}");
        let config = from_table(table, &source)?;
        config.validate(&source)?;
        Ok(config)
    }

    /// The resolved config as TOML, paths written as given (absolute after loading).
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// A short model name for summaries, e.g. `ffn` or `ffn+cam`.
    pub fn model_name(&self) -> String {
        if self.model.cam.is_some() { format!("{}+cam", self.model.kind) } else { self.model.kind.clone() }
    }
}

/// Every key a model kind uses, with its default, and the kind's default learning rates
/// (network, grid).
fn model_defaults(kind: &str) -> (&'static str, f64, f64) {
    match kind {
        "ffn" => (
            r#"hidden_layers = 3
width = 256
output_activation = "sigmoid"
sigma = 10.0
frequencies = 256"#,
            1e-3,
            1e-2,
        ),
        // First sine layer + 3 hidden sine layers + linear output, as in SIREN's image fits.
        "siren" => (
            r#"hidden_layers = 4
width = 256
output_activation = "none"
omega0 = 30.0
hidden_omega = 30.0"#,
            1e-4,
            1e-2,
        ),
        // NeuRBF's image setup (DIV2K script): ivq kernels, k = 4, 32 channels from 2^-3 to
        // 2^12, a 2-level x 2-feature grid, a 64-wide decoder with residual sine over [1, 1000].
        "neurbf" => (
            r#"hidden_layers = 2
width = 64
output_activation = "none"
kernel = "ivq"
kernels = 0
params = 72000
neighbours = 4
rbf_features = 32
rbf_frequencies = [0.125, 4096.0]
decoder_frequencies = [1.0, 1000.0]
rbf_sinusoids = true
decoder_sinusoids = true
normalize = true
kmeans_iterations = 10
covariance_alpha = 0.5
levels = 2
features_per_level = 2
log2_table_size = 24
base_resolution = 16
finest_resolution = 0"#,
            1e-2,
            5e-3,
        ),
        // GNF's released image setup: 64 neurons over a 6-level DiF-Grid (about 106K parameters
        // in 2-D), each level once over the domain.
        "gnf" => (
            r#"output_activation = "none"
neurons = 64
encoder = "dif-grid"
grid_resolutions = [32, 51, 70, 89, 108, 128]
grid_channels = [4, 4, 4, 2, 2, 2]
grid_tiles = []
levels = 16
features_per_level = 2
log2_table_size = 19
base_resolution = 16
finest_resolution = 0"#,
            1e-2,
            1e-2,
        ),
        // hashgrid: instant-ngp's image setup.
        _ => (
            r#"hidden_layers = 2
width = 64
output_activation = "none"
levels = 16
features_per_level = 2
log2_table_size = 19
base_resolution = 16
finest_resolution = 0"#,
            1e-2,
            1e-2,
        ),
    }
}

/// A config from a TOML table; errors name `source` and the dotted key.
fn from_table(table: toml::Table, source: &str) -> Result<Config> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        anyhow::anyhow!("{source}: {}", describe_serde_error(&path, &e.into_inner().to_string()))
    })
}

fn check_choice(source: &str, key: &str, value: &str, choices: &[&str]) -> Result<()> {
    if choices.contains(&value) {
        return Ok(());
    }
    let list = choices.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
    match nearest(value, choices) {
        Some(n) if n != value => {
            bail!("{source}: {key} = \"{value}\" is not one of {list} (did you mean \"{n}\"?)")
        }
        _ => bail!("{source}: {key} = \"{value}\" is not one of {list}"),
    }
}

/// Apply one `--set KEY=VALUE`; VALUE is a TOML value, or a bare string when it does not parse.
pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let Some((key, raw)) = spec.split_once('=') else {
        bail!("--set {spec}: expected KEY=VALUE, e.g. --set train.steps=500");
    };
    let key = key.trim();
    let raw = raw.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        bail!("--set {spec}: the key must be a dotted path such as model.sigma");
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut current = table;
    for part in &parts[..parts.len() - 1] {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("--set {spec}: `{part}` is a value, not a table"),
        };
    }
    current.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Turn serde's message into one sentence that names the dotted key and, for unknown keys,
/// suggests the nearest valid one.
fn describe_serde_error(path: &str, message: &str) -> String {
    let message = one_line(message);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or("");
        // "stesp`, expected one of `steps`, `seed` in `train`": candidates sit between backticks.
        let list = rest.split(" in `").next().unwrap_or(rest);
        let expected: Vec<&str> = list.split('`').skip(2).step_by(2).collect();
        // serde_path_to_error's path already ends with the unknown key.
        let parent = path.strip_suffix(unknown).unwrap_or(path).trim_end_matches('.');
        let full = if parent.is_empty() { unknown.to_string() } else { format!("{parent}.{unknown}") };
        return match nearest(unknown, &expected) {
            Some(n) => {
                let suggestion = if parent.is_empty() { n.to_string() } else { format!("{parent}.{n}") };
                format!("unknown key `{full}` (did you mean `{suggestion}`?)")
            }
            None => format!("unknown key `{full}`"),
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        let full = if path == "." || path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
        return format!("missing required key `{full}`");
    }
    if path == "." || path.is_empty() { message } else { format!("`{path}`: {message}") }
}

/// The candidate closest to `word` by edit distance, if any is reasonably close.
fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= word.len().max(c.len()) / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[task]\nkind = \"image\"\npath = \"x.png\"\n[model]\nkind = \"ffn\"\n";

    fn parse(text: &str, sets: &[&str]) -> Result<Config> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::parse(text, "test.toml", Path::new("/cfg"), &sets)
    }

    #[test]
    fn unknown_key_names_file_key_and_nearest() {
        let err = parse(&format!("{MINIMAL}[train]\nstesp = 5\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("train.stesp"), "{err}");
        assert!(err.contains("train.steps"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = parse(&format!("{MINIMAL}[train]\nlr = \"fast\"\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("train.lr"), "{err}");
        assert!(err.contains("string"), "{err}");
    }

    #[test]
    fn negative_steps_is_an_error() {
        let err = parse(&format!("{MINIMAL}[train]\nsteps = -5\n"), &[]).unwrap_err().to_string();
        assert!(err.contains("train.steps"), "{err}");
    }

    #[test]
    fn set_overrides_take_toml_values_and_bare_strings() {
        let c = parse(MINIMAL, &["task.crop=[256,128]", "model.kind=siren", "train.lr=0.5"]).unwrap();
        // Paths in the file are relative to the file; paths given with --set to the working directory.
        let cli = parse(MINIMAL, &["task.path=y.png"]).unwrap();
        assert_eq!(cli.task.path, std::env::current_dir().unwrap().join("y.png"));
        assert_eq!(c.task.crop, Some([256, 128]));
        assert_eq!(c.model.kind, "siren");
        assert_eq!(c.train.lr, 0.5);
        assert_eq!(c.task.path, Path::new("/cfg/x.png"));
        let err = parse(MINIMAL, &["model.kind=sirne"]).unwrap_err().to_string();
        assert!(err.contains("did you mean \"siren\""), "{err}");
        let err = parse(MINIMAL, &["model.sgima=3"]).unwrap_err().to_string();
        assert!(err.contains("model.sigma"), "{err}");
    }

    #[test]
    fn resolve_fills_kind_defaults_and_drops_unused_keys() {
        let mut c = parse(MINIMAL, &["model.omega0=20"]).unwrap();
        let notes = c.resolve();
        assert_eq!(c.model.sigma, Some(10.0));
        assert_eq!(c.model.omega0, None);
        assert_eq!(notes.len(), 1);
        assert_eq!(c.train.lr, 1e-3);
        // The resolved config parses back to itself.
        let text = c.to_toml().unwrap();
        let mut back = Config::parse(&text, "resolved", Path::new("/"), &[]).unwrap();
        assert!(back.resolve().is_empty());
        assert_eq!(back, c);
    }
}
