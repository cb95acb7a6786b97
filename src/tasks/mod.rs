//! Tasks own the target signal: how coordinates are sampled, how field outputs become the signal
//! and the loss, their own state between steps, the evaluation, and how a trained field is
//! rendered, meshed and written out. The trainer and the command line drive any task through the
//! `Task` trait; the task kind is read in this file only.
//!
//! To add a task kind: write its options (`[task]` keys, and its `[eval]` keys) and its `Task`
//! impl in one file here, and list the kind in `TaskConfig`.

pub mod image;
pub mod nerf;
pub mod sdf;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor};

use crate::config::{Config, EvalConfig, field_names, kind_table, kind_to_table, take_kind, to_table};
use crate::data::camera::Camera;
use crate::fields::kmeans::WeightedPoints;
use crate::fields::{Field, FieldSpec, Outputs};
use crate::fresh::Signal;
use crate::render::RenderMode;

/// Evaluation results in a stable order, as written to `metrics.jsonl` and `summary.json`.
pub type Metrics = Vec<(String, f64)>;

/// A task's own state that checkpoints keep (name, shape, values): a radiance field's occupancy
/// grid, say.
pub type TaskState = Vec<(String, Vec<usize>, Vec<f32>)>;

/// `[task]` (and the task's `[eval]` keys): one task kind's options, tagged by `kind`.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskConfig {
    Image { task: image::ImageOptions, eval: image::ImageEval },
    Sdf { task: sdf::SdfOptions, eval: sdf::SdfEval },
    Nerf { task: nerf::NerfOptions, eval: nerf::NerfEval },
}

/// What every task kind's options tell the rest of the config before the task is built.
pub trait TaskOptions {
    /// The target: an image, a mesh, a scene folder.
    fn path(&self) -> &Path;
    fn validate(&self, source: &str) -> Result<()>;
    /// What the task does with the field's outputs (colours by default).
    fn outputs(&self) -> Outputs {
        Outputs::Bounded
    }
    /// Axes of the coordinate that indexes CAM's grids, and what it is.
    fn cam_coordinate(&self) -> (usize, &'static str);
    /// Whether the task's points come in rays (CAM's per-ray normalisation needs that).
    fn has_rays(&self) -> bool {
        false
    }
}

impl TaskConfig {
    pub const KINDS: &[&str] = &["image", "sdf", "nerf"];

    /// The `[task]` table and the non-shared `[eval]` keys as a kind's options; keys of other
    /// kinds are dropped with a note.
    pub fn from_tables(mut task: toml::Table, eval: toml::Table, source: &str, notes: &mut Vec<String>) -> Result<Self> {
        let kind = take_kind(&mut task, "task", Self::KINDS, source)?;
        let tasks = [field_names::<image::ImageOptions>(), field_names::<sdf::SdfOptions>(), field_names::<nerf::NerfOptions>()];
        let evals = [field_names::<image::ImageEval>(), field_names::<sdf::SdfEval>(), field_names::<nerf::NerfEval>()];
        Ok(match kind {
            "image" => Self::Image {
                task: kind_table(task, "task", kind, &tasks, &[], source, notes)?,
                eval: kind_table(eval, "eval", kind, &evals, field_names::<EvalConfig>(), source, notes)?,
            },
            "sdf" => Self::Sdf {
                task: kind_table(task, "task", kind, &tasks, &[], source, notes)?,
                eval: kind_table(eval, "eval", kind, &evals, field_names::<EvalConfig>(), source, notes)?,
            },
            _ => Self::Nerf {
                task: kind_table(task, "task", kind, &tasks, &[], source, notes)?,
                eval: kind_table(eval, "eval", kind, &evals, field_names::<EvalConfig>(), source, notes)?,
            },
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Image { .. } => "image",
            Self::Sdf { .. } => "sdf",
            Self::Nerf { .. } => "nerf",
        }
    }

    pub fn options(&self) -> &dyn TaskOptions {
        match self {
            Self::Image { task, .. } => task,
            Self::Sdf { task, .. } => task,
            Self::Nerf { task, .. } => task,
        }
    }

    pub fn validate(&self, source: &str) -> Result<()> {
        match self {
            Self::Image { task, .. } => task.validate(source),
            Self::Sdf { task, eval } => {
                task.validate(source)?;
                eval.validate(source)
            }
            Self::Nerf { task, eval } => {
                task.validate(source)?;
                eval.validate(source)
            }
        }
    }

    /// The target's path, for resolving it against the config's folder.
    pub fn path_mut(&mut self) -> &mut PathBuf {
        match self {
            Self::Image { task, .. } => &mut task.path,
            Self::Sdf { task, .. } => &mut task.path,
            Self::Nerf { task, .. } => &mut task.path,
        }
    }

    /// The `[task]` table (with its kind) and the task's `[eval]` keys.
    pub fn to_tables(&self) -> (toml::Table, toml::Table) {
        match self {
            Self::Image { task, eval } => (kind_to_table(self.kind(), task), to_table(eval)),
            Self::Sdf { task, eval } => (kind_to_table(self.kind(), task), to_table(eval)),
            Self::Nerf { task, eval } => (kind_to_table(self.kind(), task), to_table(eval)),
        }
    }

    /// Load the target and build the task, its tensors on `device`. Any problem with the inputs
    /// (a missing or broken file) is reported here, before a run directory exists.
    pub fn build(&self, config: &Config, device: &Device) -> Result<Box<dyn Task>> {
        Ok(match self {
            Self::Image { task, .. } => Box::new(image::ImageTask::new(task, config, device)?),
            Self::Sdf { task, eval } => Box::new(sdf::SdfTask::new(task, eval, config, device)?),
            Self::Nerf { task, eval } => Box::new(nerf::NerfTask::new(task, eval, config, device)?),
        })
    }
}

/// What `nfield render` asks of a task.
#[derive(Debug, Clone)]
pub struct RenderRequest {
    /// Output size; `None` lets the task choose (the target's size).
    pub size: Option<(usize, usize)>,
    /// A camera of the task's own (a test view).
    pub view: Option<usize>,
    /// Frames of a turntable around the scene.
    pub orbit: Option<usize>,
    pub mode: RenderMode,
    /// Folder for the pictures.
    pub out: PathBuf,
}

/// How the viewer looks at a task's field.
#[derive(Debug, Clone)]
pub enum Viewing {
    /// A picture over the field's unit square, zoomed and panned; `aspect` is its width over
    /// its height, `width` its width in pixels at scale 1.
    Plane { aspect: f32, width: usize },
    /// A camera orbiting `centre` at `distance`, `up` the world's up, `fov_y` in radians.
    Orbit { centre: [f32; 3], distance: f32, up: [f32; 3], fov_y: f32 },
}

/// One picture the viewer asks a task for.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRequest {
    pub width: usize,
    pub height: usize,
    /// An index into `Task::view_modes`.
    pub mode: usize,
    /// Plane views: the centre of the window shown, in the unit square, and its width as a
    /// share of the square's.
    pub centre: [f32; 2],
    pub span: f32,
    /// Orbit views: the camera.
    pub camera: Option<Camera>,
}

/// A picture: `[H, W, 3]` colours in [0, 1].
#[derive(Debug, Clone, Default)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<f32>,
}

/// A picture for the viewer, on the device the field is on: `[H * W, 3]` colours in [0, 1], rows
/// top to bottom. On a wgpu device the window draws it straight from burn's buffer.
#[derive(Debug, Clone)]
pub struct ViewPicture {
    pub width: usize,
    pub height: usize,
    pub rgb: Tensor<2>,
}

/// What `nfield mesh` asks of a task.
#[derive(Debug, Clone)]
pub struct MeshRequest {
    /// Grid points per axis; `None` lets the task choose.
    pub resolution: Option<usize>,
    /// Output file; `None`: a new `mesh-<resolution>.ply` in `run_dir`.
    pub out: Option<PathBuf>,
    pub run_dir: PathBuf,
}

pub trait Task: Send {
    /// `image`, `sdf` or `nerf`.
    fn kind(&self) -> &'static str;
    /// What the field must take and produce.
    fn field_spec(&self) -> FieldSpec;
    /// Things about the inputs that work but may surprise (a mesh that is not closed).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// The target's points weighted by detail, for fields that place kernels adaptively.
    fn importance(&self) -> Option<WeightedPoints> {
        None
    }
    /// Steps of a grid-only pre-run whose field `importance_from` reads, for tasks whose detail
    /// is known only after fitting something (radiance fields); 0: `importance` needs none.
    fn importance_prerun(&self) -> u64 {
        0
    }
    /// The importance points, read from a field the pre-run trained.
    fn importance_from(&self, _field: &Field, _device: &Device) -> Option<WeightedPoints> {
        None
    }
    /// The target on its own sample grid, and the coordinates of those samples (flat
    /// `[N, d_in]`), for FreSh's spectra.
    fn signal(&self) -> Option<(Vec<f32>, Signal)> {
        None
    }
    /// FreSh: the field's outputs (flat `[N, d_out]`) as the signal's channels.
    fn signal_values(&self, outputs: Vec<f32>) -> Vec<f32> {
        outputs
    }
    /// The training loss of `field` at `step` (a one-element tensor): the task draws the step's
    /// batch, runs the field on it and compares. The same `(train.seed, step)` gives the same
    /// batch, so a resumed run sees the batches an uninterrupted one would.
    fn loss(&mut self, field: &Field, step: u64) -> Tensor<1>;
    /// Update the task's own state from the field before `step` (an occupancy grid, say).
    fn update(&mut self, _field: &Field, _step: u64) -> Result<()> {
        Ok(())
    }
    /// Numbers about the last step worth logging beside the loss (samples per ray, say).
    fn report(&self) -> Metrics {
        Vec::new()
    }
    /// The task's own state, for checkpoints.
    fn state(&self) -> TaskState {
        Vec::new()
    }
    /// Take back a state `state` wrote (a resumed or reloaded run).
    fn restore(&mut self, _state: &TaskState) -> Result<()> {
        Ok(())
    }
    /// Full evaluation of a field on the device without autodiff.
    fn evaluate(&self, field: &Field, device: &Device) -> Result<Metrics>;
    /// Write the task's end-of-training outputs into the run directory.
    fn write_outputs(&self, field: &Field, device: &Device, run_dir: &Path) -> Result<Vec<PathBuf>>;
    /// Pictures of a trained field; returns the files written.
    fn render(&self, field: &Field, request: &RenderRequest, device: &Device) -> Result<Vec<PathBuf>>;
    /// How the viewer looks at the field.
    fn viewing(&self) -> Viewing;
    /// What the viewer can show, by name (the first is the default).
    fn view_modes(&self) -> &'static [&'static str];
    /// One picture for the viewer.
    fn view(&self, field: &Field, request: &ViewRequest, device: &Device) -> Result<ViewPicture>;
    /// Cameras worth jumping to in the viewer (a radiance field's training views).
    fn view_cameras(&self) -> Vec<Camera> {
        Vec::new()
    }
    /// The photo of camera `index` of `view_cameras`, to compare with the field's picture.
    fn view_photo(&self, _index: usize) -> Option<Picture> {
        None
    }
    /// A mesh of a trained field; returns the file written and a line about it.
    fn mesh(&self, _field: &Field, _request: &MeshRequest, _device: &Device) -> Result<(PathBuf, String)> {
        bail!("nfield mesh needs a field with a surface (an SDF run); this is a {} run", self.kind())
    }
}

/// The training loss `train.loss` names, averaged over all outputs (a one-element tensor).
pub fn loss(kind: &str, outputs: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let error = outputs - targets.clone();
    match kind {
        "l1" => error.abs().mean(),
        // Halved before the mean (the same bits: halving is exact), so the loss's one-element
        // tail is only the mean, which keeps burn's fusion of the backward pass intact.
        "half_mse" => (error.square() * 0.5).mean(),
        // Relative error, so the surface's small distances count as much as far ones.
        "mape" => (error.abs() / (targets.abs() + 0.01)).mean(),
        _ => error.square().mean(),
    }
}
