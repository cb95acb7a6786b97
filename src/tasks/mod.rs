//! Tasks own the target signal: how coordinates are sampled, how field outputs become the signal,
//! the loss, the evaluation and the outputs written at the end. The trainer drives any task.

pub mod image;
pub mod sdf;

use std::path::{Path, PathBuf};

use anyhow::Result;
use burn::tensor::{Device, Tensor};

use crate::config::Config;
use crate::data::image::Image;
use crate::fields::kmeans::WeightedPoints;
use crate::fields::{Field, FieldSpec};
use crate::fresh::Signal;

/// Evaluation results in a stable order, as written to `metrics.jsonl` and `summary.json`.
pub type Metrics = Vec<(String, f64)>;

pub struct Batch {
    pub coords: Tensor<2>,
    pub targets: Tensor<2>,
    /// The same coordinates every step (full batch): the field's preparation can be reused.
    pub fixed: bool,
}

pub trait Task {
    /// `image`, `sdf` or `nerf`.
    fn name(&self) -> &'static str;
    /// What the field must take and produce.
    fn field_spec(&self) -> FieldSpec;
    /// The target's points weighted by detail, for fields that place kernels adaptively.
    fn importance(&self) -> Option<WeightedPoints> {
        None
    }
    /// The target on its own sample grid, and the coordinates of those samples (flat
    /// `[N, d_in]`), for FreSh's spectra.
    fn signal(&self) -> Option<(Vec<f32>, Signal)> {
        None
    }
    /// Training coordinates and targets for `step`; the same `(seed, step)` gives the same batch,
    /// so a resumed run sees the batches an uninterrupted one would.
    fn batch(&self, step: u64, seed: u64) -> Batch;
    /// The training loss of field outputs against targets (a one-element tensor).
    fn loss(&self, outputs: Tensor<2>, targets: Tensor<2>) -> Tensor<1>;
    /// Full evaluation of a field on the device without autodiff.
    fn evaluate(&self, field: &Field, device: &Device) -> Result<Metrics>;
    /// Write the task's end-of-training outputs into the run directory.
    fn write_outputs(&self, field: &Field, device: &Device, run_dir: &Path) -> Result<Vec<PathBuf>>;
}

/// Build the task a config describes, with its tensors on `device` (the training device).
pub fn build(config: &Config, device: &Device) -> Result<Box<dyn Task>> {
    match config.task.kind.as_str() {
        "image" => Ok(Box::new(image::ImageTask::new(config, device)?)),
        "sdf" => Ok(Box::new(sdf::SdfTask::new(config, device)?)),
        other => anyhow::bail!("task.kind = \"{other}\" is not supported"),
    }
}

/// The target image of an image task, loaded and cropped as training sees it.
pub fn image_target(config: &Config) -> Result<Image> {
    if config.task.kind != "image" {
        anyhow::bail!("this is a {} run, not an image run", config.task.kind);
    }
    let image = Image::load(&config.task.path)?;
    match config.task.crop {
        Some([w, h]) => image.center_crop(w as usize, h as usize),
        None => Ok(image),
    }
}

/// Load the task's inputs once to report a missing or broken file before anything is written.
/// Returns warnings about inputs that work but may surprise (a mesh that is not watertight).
pub fn check_inputs(config: &Config) -> Result<Vec<String>> {
    if config.task.kind == "sdf" {
        let (_, _, note) = sdf::load_mesh(config)?;
        return Ok(note.into_iter().collect());
    }
    image::check_holdout(config, &image_target(config)?)?;
    Ok(vec![])
}

/// The field a config's task needs, without building the task.
pub fn field_spec(config: &Config) -> Result<FieldSpec> {
    if config.task.kind == "sdf" {
        return Ok(sdf::sdf_field_spec());
    }
    let image = image_target(config)?;
    Ok(image::image_field_spec(&image))
}

/// The training loss `train.loss` names, averaged over all outputs (a one-element tensor).
pub fn loss(kind: &str, outputs: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let error = outputs - targets.clone();
    match kind {
        "l1" => error.abs().mean(),
        "half_mse" => error.square().mean() * 0.5,
        // Relative error, so the surface's small distances count as much as far ones.
        "mape" => (error.abs() / (targets.abs() + 0.01)).mean(),
        _ => error.square().mean(),
    }
}
