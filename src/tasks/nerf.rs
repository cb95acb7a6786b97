//! Radiance fields from posed photos (NeRF), trained instant-ngp's way.
//!
//! Each step draws rays through random pixel centres of the training views, marches them through
//! the occupied cells of the scene box (`render::volume`), runs the field on the samples (density
//! and view-dependent colour) and composites them over a background: a random colour per ray
//! while training (so transparent pixels cannot be learnt as colour), white for evaluation. The
//! loss compares the composited colours with the pixels composited over the same background.
//! Every `occupancy_every` steps the task refreshes its occupancy grid from the field's density;
//! the grid is part of the task's state, saved in checkpoints. Evaluation renders the test views.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::{MeshRequest, Metrics, RenderRequest, Task, TaskOptions, TaskState};
use crate::config::{Config, at_least_one};
use crate::data::camera::Camera;
use crate::data::image::{self, SampleFormat};
use crate::data::mesh::Mesh;
use crate::data::scene::{Scene, View};
use crate::fields::cam::RayGroups;
use crate::fields::kmeans::WeightedPoints;
use crate::fields::{Field, FieldSpec, Outputs};
use crate::fresh::Signal;
use crate::metrics;
use crate::profile::read_floats;
use crate::render::marching_cubes::{drop_small_pieces, marching_cubes};
use crate::render::volume::{Composited, Marcher, OccupancyGrid, RaySamples, composite, composite_host, host_tensor};
use crate::render::{RenderMode, unused_dir, unused_stem};

/// What transparent pixels are composited over while training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    /// A random colour per ray (instant-ngp): the field cannot explain it, so it learns empty space.
    Random,
    White,
    Black,
}

/// `task.kind = "nerf"`: instant-ngp's NeRF set-up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NerfOptions {
    /// The scene: a Blender-synthetic folder, an instant-ngp / nerfstudio capture folder, or its
    /// transforms file.
    pub path: PathBuf,
    /// Images (and cameras) shrunk by this factor with an area filter.
    pub downscale: usize,
    /// Rays per step (at most, with `samples_per_step`).
    pub batch_size: usize,
    /// Samples per step the ray count aims at, from the last step's samples per ray, as
    /// instant-ngp does (0: always `batch_size` rays).
    pub samples_per_step: usize,
    /// `random` | `white` | `black`.
    pub background: Background,
    /// Marching steps across the box's diagonal (instant-ngp: 1024 per unit-cube diagonal).
    pub march_steps: usize,
    /// Most samples a ray keeps.
    pub max_samples: usize,
    /// Train only on the samples in front of the point where a ray becomes opaque
    /// (transmittance below 1e-4), found by a density pass without gradients (instant-ngp's
    /// compaction).
    pub early_stop: bool,
    /// Occupancy grid cells per axis.
    pub occupancy_resolution: usize,
    /// Each refresh keeps `max(decay x old, new)`.
    pub occupancy_decay: f64,
    /// Cells with an opacity above this (or the mean, if lower) are occupied: the density times
    /// instant-ngp's smallest step (1/1024 of the box's diagonal).
    pub occupancy_threshold: f64,
    /// Refresh the grid every this many steps.
    pub occupancy_every: u64,
    /// Steps during which refreshes look at every cell (afterwards a quarter at random and as
    /// many occupied ones).
    pub occupancy_warmup: u64,
    /// Fields that place kernels from the scene (NeuRBF): steps of the grid-only pre-run whose
    /// density and feature gradients weight the kernel placement (NeuRBF trains 1000).
    pub kernel_prerun: u64,
}

impl Default for NerfOptions {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            downscale: 1,
            batch_size: 4096,
            samples_per_step: 0,
            background: Background::Random,
            march_steps: 1024,
            max_samples: 1024,
            early_stop: false,
            occupancy_resolution: 128,
            occupancy_decay: 0.95,
            occupancy_threshold: 0.01,
            occupancy_every: 16,
            occupancy_warmup: 256,
            kernel_prerun: 1000,
        }
    }
}

/// `[eval]` keys of a radiance-field task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NerfEval {
    /// Test views scored, the first ones of the split; 0: all of them.
    pub views: usize,
    /// Density (per world unit) of the surface `nfield mesh` extracts.
    pub mesh_density: f64,
    /// `nfield mesh` drops floating pieces with fewer faces than this share of the largest
    /// piece's (0 keeps every piece).
    pub min_piece: f64,
}

impl Default for NerfEval {
    fn default() -> Self {
        Self { views: 0, mesh_density: 10.0, min_piece: 0.01 }
    }
}

impl TaskOptions for NerfOptions {
    fn path(&self) -> &Path {
        &self.path
    }

    fn validate(&self, source: &str) -> Result<()> {
        at_least_one(
            source,
            &[
                ("task.downscale", self.downscale),
                ("task.batch_size", self.batch_size),
                ("task.march_steps", self.march_steps),
                ("task.max_samples", self.max_samples),
                ("task.occupancy_every", self.occupancy_every as usize),
            ],
        )?;
        if !(2..=512).contains(&self.occupancy_resolution) {
            bail!("{source}: task.occupancy_resolution must be between 2 and 512");
        }
        if !(0.0..1.0).contains(&self.occupancy_decay) {
            bail!("{source}: task.occupancy_decay must be in [0, 1)");
        }
        crate::config::positive(source, &[("task.occupancy_threshold", self.occupancy_threshold)])
    }

    fn outputs(&self) -> Outputs {
        Outputs::Radiance
    }

    fn cam_coordinate(&self) -> (usize, &'static str) {
        (2, "a radiance field is modulated by its view direction (azimuth, elevation)")
    }

    fn has_rays(&self) -> bool {
        true
    }
}

impl NerfEval {
    pub fn validate(&self, source: &str) -> Result<()> {
        crate::config::positive(source, &[("eval.mesh_density", self.mesh_density)])?;
        if !(0.0..=1.0).contains(&self.min_piece) {
            bail!("{source}: eval.min_piece must be a share between 0 and 1");
        }
        Ok(())
    }
}

pub struct NerfTask {
    scene: Scene,
    options: NerfOptions,
    eval: NerfEval,
    marcher: Marcher,
    grid: OccupancyGrid,
    loss: String,
    seed: u64,
    chunk: usize,
    device: Device,
    /// The renders of the last evaluation, kept for `write_outputs`.
    last_renders: Mutex<Option<Vec<Vec<f32>>>>,
    /// The last step's rays and samples (the next step's ray count follows from them).
    last_batch: (usize, usize),
    /// Rays and field samples of every step so far (throughput for benchmarks).
    seen: (f64, f64),
}

/// The pictures of one camera: colour `[H, W, 3]`, opacity and depth `[H, W]`.
pub type Rendered = Composited<Vec<f32>>;

impl NerfTask {
    pub fn new(options: &NerfOptions, eval: &NerfEval, config: &Config, device: &Device) -> Result<Self> {
        let scene = Scene::load(&options.path, options.downscale)?;
        let (lo, hi) = scene.bounds;
        let marcher = Marcher::new(lo, hi, options.march_steps, options.max_samples);
        let grid = OccupancyGrid::new(options.occupancy_resolution, options.occupancy_decay as f32, options.occupancy_threshold as f32);
        Ok(Self {
            scene,
            options: options.clone(),
            eval: eval.clone(),
            marcher,
            grid,
            loss: config.train.loss.clone(),
            seed: config.train.seed,
            chunk: config.eval.chunk_size,
            device: device.clone(),
            last_renders: Mutex::new(None),
            last_batch: (0, 0),
            seen: (0.0, 0.0),
        })
    }

    pub fn scene(&self) -> &Scene {
        &self.scene
    }

    pub fn grid(&self) -> &OccupancyGrid {
        &self.grid
    }

    /// The length the occupancy grid weighs densities by: instant-ngp's smallest step, 1/1024
    /// of the box's diagonal, whatever step the marcher takes (so the threshold means the same
    /// density for every `march_steps`).
    fn occupancy_step(&self) -> f32 {
        let (lo, hi) = self.scene.bounds;
        (0..3).map(|a| (hi[a] - lo[a]).powi(2)).sum::<f32>().sqrt() / 1024.0
    }

    /// The samples in front of where each ray becomes opaque, by the field's current density.
    fn visible(&self, field: &Field, samples: RaySamples) -> RaySamples {
        let valid = field.valid();
        let device = self.device.clone().without_autodiff();
        let mut density = Vec::with_capacity(samples.len());
        for chunk in samples.positions.chunks(3 * self.chunk.max(1)) {
            let d = valid.density(host_tensor(chunk.to_vec(), 3, &device));
            density.extend(read_floats(d));
        }
        let mut kept = RaySamples { offsets: vec![0], ..Default::default() };
        for r in 0..samples.rays() {
            let mut transmittance = 1.0f32;
            let range = samples.offsets[r]..samples.offsets[r + 1];
            for (i, sigma) in range.clone().zip(&density[range]) {
                kept.positions.extend_from_slice(&samples.positions[3 * i..3 * i + 3]);
                kept.t.push(samples.t[i]);
                kept.dt.push(samples.dt[i]);
                transmittance *= (-sigma * samples.dt[i]).exp();
                if transmittance < 1e-4 {
                    break;
                }
            }
            kept.offsets.push(kept.t.len());
        }
        kept
    }

    /// Rays this step: `batch_size`, or fewer so the samples stay near `samples_per_step`.
    fn rays_this_step(&self) -> usize {
        let (rays, samples) = self.last_batch;
        let budget = self.options.samples_per_step;
        if budget == 0 || rays == 0 || samples == 0 {
            return self.options.batch_size;
        }
        let per_ray = samples as f64 / rays as f64;
        ((budget as f64 / per_ray) as usize).clamp(64, self.options.batch_size)
    }

    /// The test views that evaluation scores.
    fn scored_views(&self) -> &[View] {
        let n = if self.eval.views == 0 { self.scene.test.len() } else { self.eval.views.min(self.scene.test.len()) };
        &self.scene.test[..n]
    }

    /// Field outputs `[S, 4]` (density, RGB) at `samples`, on the device, about `chunk` points
    /// per pass.
    fn field_outputs_on_device(&self, field: &Field, samples: &RaySamples, dirs: &[f32], device: &Device) -> Tensor<2> {
        let ray_of = samples.ray_of_samples();
        let mut parts = Vec::new();
        let mut start = 0;
        while start < samples.len() {
            // Whole rays per pass, so CAM's per-ray normalisation sees each ray at once.
            let mut end = (start + self.chunk).min(samples.len());
            while end < samples.len() && end > start && ray_of[end] == ray_of[end - 1] {
                end += 1;
            }
            let x = host_tensor(samples.positions[3 * start..3 * end].to_vec(), 3, device);
            let sample_dirs: Vec<f32> = ray_of[start..end].iter().flat_map(|&r| dirs[3 * r..3 * r + 3].iter().copied()).collect();
            let groups = segments(&ray_of[start..end], device);
            parts.push(field.forward_prepared(&field.prepare_rays(x, &sample_dirs, Some(groups))));
            start = end;
        }
        Tensor::cat(parts, 0)
    }

    /// Field outputs (density, RGB) at `samples`, on the host.
    fn field_outputs(&self, field: &Field, samples: &RaySamples, dirs: &[f32], device: &Device) -> (Vec<f32>, Vec<f32>) {
        if samples.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let values = read_floats(self.field_outputs_on_device(field, samples, dirs, device));
        let density = values.chunks_exact(4).map(|row| row[0]).collect();
        let rgb = values.chunks_exact(4).flat_map(|row| row[1..4].iter().copied()).collect();
        (density, rgb)
    }

    /// Render `camera` (any size) over `background`, rays in chunks of `chunk` samples.
    pub fn render_camera(&self, field: &Field, camera: &Camera, background: [f32; 3], device: &Device) -> Rendered {
        let (origins, dirs) = camera.pixel_rays();
        let rays = origins.len() / 3;
        let mut picture = Rendered { rgb: Vec::with_capacity(3 * rays), opacity: Vec::with_capacity(rays), depth: Vec::with_capacity(rays) };
        let mut start = 0;
        while start < rays {
            let end = (start + RAYS_PER_PASS).min(rays);
            let (o, d) = (&origins[3 * start..3 * end], &dirs[3 * start..3 * end]);
            let samples = self.marcher.march(o, d, &self.grid, None);
            let (density, rgb) = self.field_outputs(field, &samples, d, device);
            let part = composite_host(&density, &rgb, &samples, background);
            picture.rgb.extend(part.rgb);
            picture.opacity.extend(part.opacity);
            picture.depth.extend(part.depth);
            start = end;
        }
        picture
    }

    /// `camera`'s rays composited over white on the device, with no read back: the host marches
    /// the rays through the occupancy grid and uploads the samples. Rays are not stopped once
    /// opaque, so a pixel may differ from `render_camera`'s by the last 1e-4 of transmittance.
    fn render_camera_on_device(&self, field: &Field, camera: &Camera, device: &Device) -> Composited<Tensor<2>> {
        let (origins, dirs) = camera.pixel_rays();
        let rays = origins.len() / 3;
        let mut parts = Vec::new();
        for start in (0..rays).step_by(RAYS_PER_PASS) {
            let end = (start + RAYS_PER_PASS).min(rays);
            let (o, d) = (&origins[3 * start..3 * end], &dirs[3 * start..3 * end]);
            let samples = self.marcher.march(o, d, &self.grid, None);
            let white = Tensor::<2>::ones([end - start, 3], device);
            parts.push(if samples.is_empty() {
                let nothing = Tensor::<2>::zeros([end - start, 1], device);
                Composited { rgb: white, opacity: nothing.clone(), depth: nothing }
            } else {
                let out = self.field_outputs_on_device(field, &samples, d, device);
                composite(out.clone().narrow(1, 0, 1), out.narrow(1, 1, 3), &samples, white)
            });
        }
        let cat = |pick: fn(&Composited<Tensor<2>>) -> Tensor<2>| Tensor::cat(parts.iter().map(pick).collect(), 0);
        Composited { rgb: cat(|p| p.rgb.clone()), opacity: cat(|p| p.opacity.clone()), depth: cat(|p| p.depth.clone()) }
    }

    /// A view's pixels composited over `background`, as floats `[H, W, 3]`.
    fn truth(view: &View, background: [f32; 3]) -> Vec<f32> {
        let image = &view.image;
        image
            .pixels
            .chunks_exact(image.channels)
            .flat_map(|p| {
                let alpha = if image.channels == 4 { p[3] as f32 / 255.0 } else { 1.0 };
                [0, 1, 2].map(|c| p[c] as f32 / 255.0 * alpha + background[c] * (1.0 - alpha))
            })
            .collect()
    }

    /// The scene box's centre and the mean distance of the training cameras from it (turntables
    /// and FreSh's slice use them).
    fn orbit_centre_and_radius(&self) -> ([f32; 3], f32) {
        let (lo, hi) = self.scene.bounds;
        let centre = [0, 1, 2].map(|a| 0.5 * (lo[a] + hi[a]));
        let distance = |c: &Camera| {
            let p = c.position();
            (0..3).map(|a| (p[a] - centre[a]).powi(2)).sum::<f32>().sqrt()
        };
        let radius = self.scene.train.iter().map(|v| distance(&v.camera)).sum::<f32>() / self.scene.train.len().max(1) as f32;
        (centre, radius)
    }

    /// The colours `[R, 3]` a render mode shows, on the device. Depth as the SDF pictures show
    /// it: near bright, far dark, nothing black; the scene box spans the grey range from the mean
    /// camera distance.
    fn picture_on_device(&self, p: Composited<Tensor<2>>, mode: RenderMode) -> Tensor<2> {
        let (_, radius) = self.orbit_centre_and_radius();
        let (lo, hi) = self.scene.bounds;
        let half = 0.5 * (0..3).map(|a| (hi[a] - lo[a]).powi(2)).sum::<f32>().sqrt();
        match mode {
            RenderMode::Depth => {
                let seen = p.opacity.clone().greater_elem(1e-3);
                let t = p.depth / p.opacity.clone().clamp_min(1e-3);
                let shade = ((t - (radius - half)) / (2.0 * half)).neg() + 1.0;
                let shade = shade.clamp(0.05, 1.0).mask_fill(seen.bool_not(), 0.05);
                (p.opacity * shade).repeat_dim(1, 3)
            }
            RenderMode::Opacity => p.opacity.repeat_dim(1, 3),
            _ => p.rgb,
        }
    }

    /// The colours a render mode shows, on the host (the same arithmetic on burn-flex).
    fn picture(&self, p: &Rendered, mode: RenderMode) -> Vec<f32> {
        let device = Device::flex();
        let column = |values: &[f32], width: usize| host_tensor(values.to_vec(), width, &device);
        let rendered = Composited { rgb: column(&p.rgb, 3), opacity: column(&p.opacity, 1), depth: column(&p.depth, 1) };
        read_floats(self.picture_on_device(rendered, mode))
    }

    /// The camera of a turntable frame, with the test cameras' field of view at `width x height`.
    fn orbit_camera(&self, index: usize, frames: usize, width: usize, height: usize) -> Camera {
        let (centre, radius) = self.orbit_centre_and_radius();
        let reference = &self.scene.test.first().or(self.scene.train.first()).expect("a scene has views").camera;
        let fov_y = 2.0 * (0.5 * reference.height as f32 / reference.fy).atan();
        Camera::orbit(index, frames, centre, radius, 30.0, fov_y, width, height)
    }
}

/// Rays per pass of a picture: a few thousand keep the marched samples near `chunk` in open
/// scenes.
const RAYS_PER_PASS: usize = 4096;

/// CAM's ray groups for samples whose rays are `ray_of` (sorted).
fn segments(ray_of: &[usize], device: &Device) -> RayGroups {
    let first = ray_of.first().copied().unwrap_or(0);
    let local: Vec<i32> = ray_of.iter().map(|&r| (r - first) as i32).collect();
    let rays = local.last().map_or(0, |&r| r as usize + 1);
    let mut points = vec![0usize; rays];
    local.iter().for_each(|&r| points[r as usize] += 1);
    let n = local.len();
    RayGroups::Segments { ray: Tensor::<1, Int>::from_data(TensorData::new(local, [n]), device), points }
}

impl Task for NerfTask {
    fn kind(&self) -> &'static str {
        "nerf"
    }

    /// Points in the box's unit cube in, density and colour out. Grids whose finest level is
    /// left at 0 get 1024 (the PyTorch reference's), NeuRBF's grid half of it.
    fn field_spec(&self) -> FieldSpec {
        FieldSpec { d_in: 3, d_out: 4, resolution: 1024, shape: vec![1024; 3], importance: None, cam_dims: 2, radiance: true }
    }

    fn warnings(&self) -> Vec<String> {
        self.scene.warnings.clone()
    }

    fn loss(&mut self, field: &Field, step: u64) -> Tensor<1> {
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step);
        let rays = self.rays_this_step();
        let views = &self.scene.train;
        let (mut origins, mut dirs, mut target, mut background) =
            (Vec::with_capacity(3 * rays), Vec::with_capacity(3 * rays), Vec::with_capacity(3 * rays), Vec::with_capacity(3 * rays));
        for _ in 0..rays {
            let view = &views[rng.random_range(0..views.len())];
            let (w, h) = (view.image.width, view.image.height);
            let (px, py) = (rng.random_range(0..w), rng.random_range(0..h));
            let (o, d) = view.camera.ray(px as f32 + 0.5, py as f32 + 0.5);
            origins.extend(o);
            dirs.extend(d);
            let bg = match self.options.background {
                Background::Random => [rng.random(), rng.random(), rng.random()],
                Background::White => [1.0; 3],
                Background::Black => [0.0; 3],
            };
            let c = view.image.channels;
            let p = &view.image.pixels[(py * w + px) * c..][..c];
            let alpha = if c == 4 { p[3] as f32 / 255.0 } else { 1.0 };
            target.extend([0, 1, 2].map(|k| p[k] as f32 / 255.0 * alpha + bg[k] * (1.0 - alpha)));
            background.extend(bg);
        }
        let jitter: Vec<f32> = (0..rays).map(|_| rng.random()).collect();
        let mut samples = self.marcher.march(&origins, &dirs, &self.grid, Some(&jitter));
        if self.options.early_stop {
            samples = self.visible(field, samples);
        }
        if samples.is_empty() {
            // Keep the field in the graph: one sample of zero length adds nothing.
            samples.positions.extend([0.5; 3]);
            samples.t.push(0.0);
            samples.dt.push(0.0);
            samples.offsets.iter_mut().skip(1).for_each(|o| *o = 1);
        }
        self.last_batch = (rays, samples.len());
        self.seen = (self.seen.0 + rays as f64, self.seen.1 + samples.len() as f64);
        let ray_of = samples.ray_of_samples();
        let sample_dirs: Vec<f32> = ray_of.iter().flat_map(|&r| dirs[3 * r..3 * r + 3].iter().copied()).collect();
        let x = host_tensor(samples.positions.clone(), 3, &self.device);
        let groups = field.cam.as_ref().map(|_| segments(&ray_of, &self.device));
        let out = field.forward_prepared(&field.prepare_rays(x, &sample_dirs, groups));
        let density = out.clone().narrow(1, 0, 1);
        let rgb = out.narrow(1, 1, 3);
        let pixels = composite(density, rgb, &samples, host_tensor(background, 3, &self.device));
        super::loss(&self.loss, pixels.rgb, host_tensor(target, 3, &self.device))
    }

    /// Refresh the occupancy grid from the field's density every `occupancy_every` steps.
    fn update(&mut self, field: &Field, step: u64) -> Result<()> {
        if !step.is_multiple_of(self.options.occupancy_every) {
            return Ok(());
        }
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ step);
        let warming_up = step < self.options.occupancy_warmup;
        let cells = self.grid.cells_to_refresh(warming_up, &mut rng);
        let points = self.grid.points_in(&cells, &mut rng);
        let valid = field.valid();
        let device = self.device.clone().without_autodiff();
        let mut opacity = Vec::with_capacity(cells.len());
        for chunk in points.chunks(3 * self.chunk.max(1)) {
            let density = valid.density(host_tensor(chunk.to_vec(), 3, &device));
            let values: Vec<f32> = read_floats(density);
            // Bounded, so an overflowing density cannot make the grid (or a checkpoint) infinite.
            opacity.extend(values.into_iter().map(|d| (d * self.occupancy_step()).min(1e3)));
        }
        self.grid.refresh(&cells, &opacity);
        Ok(())
    }

    fn report(&self) -> Metrics {
        let (rays, samples) = self.last_batch;
        vec![
            ("rays".into(), rays as f64),
            ("samples_per_ray".into(), samples as f64 / rays.max(1) as f64),
            ("occupied".into(), self.grid.occupied_fraction()),
            ("rays_seen".into(), self.seen.0),
            ("samples_seen".into(), self.seen.1),
        ]
    }

    fn state(&self) -> TaskState {
        let r = self.grid.resolution;
        let occupied = self.grid.occupied.iter().map(|&o| if o { 1.0 } else { 0.0 }).collect();
        let (rays, samples) = self.last_batch;
        vec![
            ("occupancy.values".into(), vec![r, r, r], self.grid.values.clone()),
            ("occupancy.occupied".into(), vec![r, r, r], occupied),
            ("last_batch".into(), vec![2], vec![rays as f32, samples as f32]),
            ("seen".into(), vec![2], vec![self.seen.0 as f32, self.seen.1 as f32]),
        ]
    }

    fn restore(&mut self, state: &TaskState) -> Result<()> {
        let n = self.grid.values.len();
        for (name, _, values) in state {
            match name.as_str() {
                "occupancy.values" | "occupancy.occupied" if values.len() != n => {
                    bail!("the checkpoint's {name} has {} cells, the task's grid {n}", values.len())
                }
                "occupancy.values" => self.grid.values = values.clone(),
                "occupancy.occupied" => self.grid.occupied = values.iter().map(|&v| v > 0.5).collect(),
                "last_batch" if values.len() == 2 => self.last_batch = (values[0] as usize, values[1] as usize),
                "seen" if values.len() == 2 => self.seen = (values[0] as f64, values[1] as f64),
                _ => {}
            }
        }
        Ok(())
    }

    fn importance_prerun(&self) -> u64 {
        self.options.kernel_prerun
    }

    /// NeuRBF's radiance-field weights from the pre-run's field, on the occupancy grid's cell
    /// centres: the cell's opacity `1 - exp(-sigma x cell)` times the norm of the gradient of the
    /// geometry features (the density MLP's outputs, scaled to [0, 1] together), by central
    /// differences between neighbouring cells.
    fn importance_from(&self, field: &Field, device: &Device) -> Option<WeightedPoints> {
        let valid = field.valid();
        let g = self.grid.resolution;
        let n = g * g * g;
        let points: Vec<f32> = (0..n).flat_map(|i| [i % g, (i / g) % g, i / (g * g)].map(|k| (k as f32 + 0.5) / g as f32)).collect();
        let mut features = Vec::new();
        let mut width = 0;
        for chunk in points.chunks(3 * self.chunk.max(1)) {
            let f = valid.geometry(host_tensor(chunk.to_vec(), 3, device));
            width = f.dims()[1];
            features.extend(read_floats(f));
        }
        if width < 2 {
            return None;
        }
        let (lo, hi) = self.scene.bounds;
        let cell = (hi[0] - lo[0]) / g as f32;
        // Channel 0 is the log-density; the rest describe the colour, scaled to [0, 1] together.
        let colour = |i: usize| &features[i * width + 1..(i + 1) * width];
        let (min, max) = (0..n).flat_map(colour).fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let scale = 1.0 / (max - min).max(1e-12);
        let weights: Vec<f32> = (0..n)
            .map(|i| {
                let c = [i % g, (i / g) % g, i / (g * g)];
                if c.iter().any(|&k| k == 0 || k == g - 1) {
                    return 0.0;
                }
                let stride = [1, g, g * g];
                let gradient: f32 = (0..3)
                    .map(|a| colour(i + stride[a]).iter().zip(colour(i - stride[a])).map(|(p, m)| ((p - m) * scale / 2.0).powi(2)).sum::<f32>())
                    .sum();
                let alpha = 1.0 - (-features[i * width].exp() * cell).exp();
                alpha * gradient.sqrt()
            })
            .collect();
        Some(WeightedPoints { dims: 3, points, weights })
    }

    /// The untrained field's colour on a slice through the scene (each pixel's ray at the
    /// camera's distance from the box centre) of the first training view, against that view on
    /// black: FreSh's NeRF protocol. View directions are zero.
    fn signal(&self) -> Option<(Vec<f32>, Signal)> {
        let view = self.scene.train.first()?;
        let (centre, _) = self.orbit_centre_and_radius();
        let p = view.camera.position();
        let depth = (0..3).map(|a| (p[a] - centre[a]).powi(2)).sum::<f32>().sqrt();
        let (origins, dirs) = view.camera.pixel_rays();
        let coords: Vec<f32> = origins
            .chunks_exact(3)
            .zip(dirs.chunks_exact(3))
            .flat_map(|(o, d)| self.marcher.to_field([0, 1, 2].map(|a| o[a] + depth * d[a])).map(|v| v.clamp(0.0, 1.0)))
            .collect();
        let (w, h) = (view.image.width, view.image.height);
        Some((coords, Signal { dims: vec![h, w], channels: 3, values: Self::truth(view, [0.0; 3]) }))
    }

    /// The colour channels of the field's outputs (density first).
    fn signal_values(&self, outputs: Vec<f32>) -> Vec<f32> {
        outputs.chunks_exact(4).flat_map(|o| [o[1], o[2], o[3]]).collect()
    }

    /// PSNR and SSIM of the scored test views rendered over white, averaged over the views.
    fn evaluate(&self, field: &Field, device: &Device) -> Result<Metrics> {
        let views = self.scored_views();
        if views.is_empty() {
            bail!("the scene has no test views to evaluate");
        }
        let (mut psnr, mut ssim, mut renders) = (0.0, 0.0, Vec::new());
        for view in views {
            let picture = self.render_camera(field, &view.camera, [1.0; 3], device);
            let truth = Self::truth(view, [1.0; 3]);
            psnr += metrics::psnr(&picture.rgb, &truth);
            ssim += metrics::ssim(&picture.rgb, &truth, view.image.width, view.image.height, 3);
            renders.push(picture.rgb);
        }
        *self.last_renders.lock().unwrap_or_else(|e| e.into_inner()) = Some(renders);
        let n = views.len() as f64;
        Ok(vec![("psnr".into(), psnr / n), ("ssim".into(), ssim / n), ("test_views".into(), n)])
    }

    /// `test/<i>.png` and its ground truth `test/<i>-truth.png` for every scored test view.
    fn write_outputs(&self, field: &Field, device: &Device, run_dir: &Path) -> Result<Vec<PathBuf>> {
        let kept = self.last_renders.lock().unwrap_or_else(|e| e.into_inner()).take();
        let views = self.scored_views();
        let renders = match kept {
            Some(r) if r.len() == views.len() => r,
            _ => views.iter().map(|v| self.render_camera(field, &v.camera, [1.0; 3], device).rgb).collect(),
        };
        let dir = run_dir.join("test");
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut written = Vec::new();
        for (i, (view, render)) in views.iter().zip(renders).enumerate() {
            let (w, h) = (view.image.width, view.image.height);
            written.extend(image::save(&dir.join(format!("{i:03}")), w, h, 3, &render, SampleFormat::U8)?);
            written.extend(image::save(&dir.join(format!("{i:03}-truth")), w, h, 3, &Self::truth(view, [1.0; 3]), SampleFormat::U8)?);
        }
        Ok(written)
    }

    /// A test view (`--view I`) or a turntable around the scene (`--orbit N`, plus `orbit.gif`).
    fn render(&self, field: &Field, request: &RenderRequest, device: &Device) -> Result<Vec<PathBuf>> {
        if request.mode == RenderMode::Normal {
            bail!("--mode normal applies to SDF runs; a radiance field renders rgb, depth or opacity");
        }
        let out = &request.out;
        let picture_of = |p: &Rendered| self.picture(p, request.mode);
        let mode = request.mode.name();
        if let Some(frames) = request.orbit {
            if frames == 0 {
                bail!("--orbit needs at least 1 frame");
            }
            let reference = &self.scene.test.first().or(self.scene.train.first()).context("the scene has no views")?.camera;
            let (width, height) = request.size.unwrap_or((reference.width, reference.height));
            let folder = unused_dir(out, &format!("orbit-{mode}-{width}x{height}"));
            std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
            let bar = indicatif::ProgressBar::new(frames as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("render [{elapsed_precise}] {wide_bar} {pos}/{len} frames ETA {eta}")
                    .expect("valid template"),
            );
            let mut written = Vec::new();
            let mut gif_frames = Vec::new();
            for i in 0..frames {
                let camera = self.orbit_camera(i, frames, width, height);
                let pixels = picture_of(&self.render_camera(field, &camera, [1.0; 3], device));
                written.extend(image::save(&folder.join(format!("{i:03}")), width, height, 3, &pixels, SampleFormat::U8)?);
                gif_frames.push(pixels);
                bar.inc(1);
            }
            bar.finish_and_clear();
            written.push(write_gif(&folder.join("orbit.gif"), width, height, &gif_frames)?);
            return Ok(written);
        }
        let index = request.view.unwrap_or(0);
        let view = self.scene.test.get(index).with_context(|| {
            format!("--view {index}: the scene has {} test views (0 to {})", self.scene.test.len(), self.scene.test.len().saturating_sub(1))
        })?;
        let camera = match request.size {
            Some((w, h)) => {
                let (sx, sy) = (w as f32 / view.camera.width as f32, h as f32 / view.camera.height as f32);
                Camera {
                    width: w,
                    height: h,
                    fx: view.camera.fx * sx,
                    fy: view.camera.fy * sy,
                    cx: view.camera.cx * sx,
                    cy: view.camera.cy * sy,
                    ..view.camera.clone()
                }
            }
            None => view.camera.clone(),
        };
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let stem = unused_stem(out, &format!("view{index:03}-{mode}-{}x{}", camera.width, camera.height));
        let pixels = picture_of(&self.render_camera(field, &camera, [1.0; 3], device));
        image::save(&stem, camera.width, camera.height, 3, &pixels, SampleFormat::U8)
    }

    /// Orbit the scene box's centre at the training cameras' mean distance, z up.
    fn viewing(&self) -> super::Viewing {
        let (centre, distance) = self.orbit_centre_and_radius();
        let reference = self.scene.test.first().or(self.scene.train.first()).map(|v| &v.camera);
        let fov_y = reference.map_or(0.7, Camera::fov_y);
        super::Viewing::Orbit { centre, distance, up: [0.0, 0.0, 1.0], fov_y }
    }

    fn view_modes(&self) -> &'static [&'static str] {
        &["rgb", "depth", "opacity"]
    }

    fn view(&self, field: &Field, request: &super::ViewRequest, device: &Device) -> Result<super::ViewPicture> {
        let camera = request.camera.clone().context("a radiance field is viewed through a camera")?;
        let mode = [RenderMode::Rgb, RenderMode::Depth, RenderMode::Opacity][request.mode.min(2)];
        let rgb = self.picture_on_device(self.render_camera_on_device(field, &camera, device), mode);
        Ok(super::ViewPicture { width: camera.width, height: camera.height, rgb })
    }

    fn view_cameras(&self) -> Vec<Camera> {
        self.scene.train.iter().map(|v| v.camera.clone()).collect()
    }

    /// The training photo over white, as evaluation sees it.
    fn view_photo(&self, index: usize) -> Option<super::Picture> {
        let image = &self.scene.train.get(index)?.image;
        let c = image.channels;
        let rgb = image
            .pixels
            .chunks(c)
            .flat_map(|p| {
                let alpha = if c == 4 { p[3] as f32 / 255.0 } else { 1.0 };
                [0, 1, 2].map(|k| p[k] as f32 / 255.0 * alpha + (1.0 - alpha))
            })
            .collect();
        Some(super::Picture { width: image.width, height: image.height, rgb })
    }

    /// The surface where the density crosses `eval.mesh_density`, by marching cubes over the scene
    /// box, with each vertex coloured by the field seen from outside along its normal.
    fn mesh(&self, field: &Field, request: &MeshRequest, device: &Device) -> Result<(PathBuf, String)> {
        let resolution = request.resolution.unwrap_or(256);
        if !(2..=2048).contains(&resolution) {
            bail!("--resolution must be between 2 and 2048, got {resolution}");
        }
        let path = match &request.out {
            Some(p) if p.exists() => bail!("{} already exists; nfield never overwrites a file (choose another --out)", p.display()),
            Some(p) => p.clone(),
            None => unused_stem(&request.run_dir, &format!("mesh-{resolution}")).with_extension("ply"),
        };
        let level = self.eval.mesh_density as f32;
        let density_at = |points: &[f32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(points.len() / 3);
            for chunk in points.chunks(3 * self.chunk.max(1)) {
                let d = field.density(host_tensor(chunk.to_vec(), 3, device));
                out.extend(read_floats(d));
            }
            out
        };
        let bar = indicatif::ProgressBar::new(resolution as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("mesh [{elapsed_precise}] {wide_bar} {pos}/{len} slices ETA {eta}").expect("valid template"),
        );
        let coord = |i: usize| i as f32 / (resolution - 1) as f32;
        // Marching cubes runs over [0, 1]^3 on `level - density` (negative inside, as for SDFs).
        let surface = marching_cubes(resolution, 0.0, 1.0, |z| {
            let points: Vec<f32> = (0..resolution * resolution).flat_map(|i| [coord(i % resolution), coord(i / resolution), coord(z)]).collect();
            bar.inc(1);
            Ok(density_at(&points).into_iter().map(|d| level - d).collect())
        })?;
        bar.finish_and_clear();
        if surface.triangles.is_empty() {
            bail!("the density never reaches eval.mesh_density = {level} inside the scene box: nothing to mesh (is the run trained?)");
        }
        let surface = drop_small_pieces(&surface, self.eval.min_piece);
        let colours = self.vertex_colours(field, &surface, resolution, device);
        let (lo, hi) = self.scene.bounds;
        let world = Mesh {
            vertices: surface.vertices.iter().map(|v| [0, 1, 2].map(|a| lo[a] + v[a] * (hi[a] - lo[a]))).collect(),
            triangles: surface.triangles.clone(),
        };
        crate::run::write_atomic(&path, &world.to_ply_with_colours(&colours))?;
        Ok((path, format!("{} vertices, {} triangles", world.vertices.len(), world.triangles.len())))
    }
}

impl NerfTask {
    /// Each vertex's colour as seen from outside the surface along its normal (the density's
    /// gradient), as 8-bit RGB.
    fn vertex_colours(&self, field: &Field, surface: &Mesh, resolution: usize, device: &Device) -> Vec<[u8; 3]> {
        let h = 0.5 / (resolution - 1) as f32;
        let points: Vec<f32> = surface.vertices.iter().flatten().copied().collect();
        let density = |p: &[f32]| -> Vec<f32> { read_floats(field.density(host_tensor(p.to_vec(), 3, device))) };
        // Outward normals point down the density gradient.
        let mut dirs = vec![0.0f32; points.len()];
        for a in 0..3 {
            let shifted =
                |s: f32| -> Vec<f32> { points.chunks_exact(3).flat_map(|p| [0, 1, 2].map(|k| if k == a { p[k] + s } else { p[k] })).collect() };
            let (plus, minus) = (density(&shifted(h)), density(&shifted(-h)));
            for (i, (p, m)) in plus.iter().zip(&minus).enumerate() {
                dirs[3 * i + a] = m - p;
            }
        }
        for d in dirs.chunks_exact_mut(3) {
            let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-12);
            // The viewer looks against the normal.
            d.iter_mut().for_each(|v| *v = -*v / n);
        }
        let mut colours = Vec::with_capacity(surface.vertices.len());
        for (chunk, dir) in points.chunks(3 * self.chunk.max(1)).zip(dirs.chunks(3 * self.chunk.max(1))) {
            let x = host_tensor(chunk.to_vec(), 3, device);
            let groups = field.cam.as_ref().map(|_| RayGroups::Fixed(1));
            let out = field.forward_prepared(&field.prepare_rays(x, dir, groups));
            let values: Vec<f32> = read_floats(out);
            colours.extend(values.chunks_exact(4).map(|o| [o[1], o[2], o[3]].map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8)));
        }
        colours
    }
}

/// An animated GIF of frames (flat `[H, W, 3]` in [0, 1]), 25 frames per second, looping.
fn write_gif(path: &Path, width: usize, height: usize, frames: &[Vec<f32>]) -> Result<PathBuf> {
    use ::image::codecs::gif::{GifEncoder, Repeat};
    let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut encoder = GifEncoder::new_with_speed(file, 10);
    encoder.set_repeat(Repeat::Infinite)?;
    for pixels in frames {
        let rgba: Vec<u8> = pixels
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2]].map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).into_iter().chain([255]))
            .collect();
        let buffer = ::image::RgbaImage::from_raw(width as u32, height as u32, rgba).context("frame has the wrong size")?;
        encoder.encode_frame(::image::Frame::from_parts(buffer, 0, 0, ::image::Delay::from_numer_denom_ms(40, 1)))?;
    }
    Ok(path.to_path_buf())
}
