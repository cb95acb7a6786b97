//! Signed distance fields from meshes. The mesh is centred and scaled into the `[-1, 1]^3` box;
//! the field maps a point `p` of the box, given as `(p + 1) / 2` in `[0, 1]^3`, to its signed
//! distance (negative inside) in the box's units.
//!
//! Training points come from a pool drawn as instant-ngp and NeuRBF draw them (surface, surface
//! plus noise, uniform; 4 : 3 : 1) and redrawn every `task.pool_refresh` steps. Evaluation
//! samples the field on a grid: IoU of inside and outside against the mesh's winding-number
//! sign, then marching cubes and Chamfer-L1, F-score and normal errors against the mesh (with
//! the field's gradient, and with the marching-cubes facets as NeuRBF measures it).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{MeshRequest, Metrics, RenderRequest, Task, TaskOptions};
use crate::config::{Config, at_least_one};
use crate::data::image;
use crate::data::mesh::{Mesh, Normalisation};
use crate::data::sdf::MeshSdf;
use crate::fields::kmeans::WeightedPoints;
use crate::fields::{Field, FieldSpec, Outputs};
use crate::fresh::Signal;
use crate::metrics::{self, Occupancy};
use crate::profile::read_floats;
use crate::render::marching_cubes::{drop_small_pieces, marching_cubes};
use crate::render::sphere_trace::{self, Camera, Shading};
use crate::render::{RenderMode, evaluate_points, forward_in_chunks, unused_dir, unused_stem};

/// `task.kind = "sdf"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SdfOptions {
    /// The mesh (OBJ, PLY or OFF), relative to the config file.
    pub path: PathBuf,
    /// Points per step; 0 trains on the whole pool every step.
    pub batch_size: usize,
    /// The mesh is centred and scaled so its farthest vertex sits at this radius.
    pub radius: f64,
    /// Training points drawn at a time (surface, near-surface and uniform, 4 : 3 : 1).
    pub pool_size: usize,
    /// Draw a fresh pool every this many steps.
    pub pool_refresh: u64,
    /// Standard deviation of the near-surface points' offsets, in the `[-1, 1]` box's units.
    pub surface_noise: f64,
}

impl Default for SdfOptions {
    fn default() -> Self {
        Self { path: PathBuf::new(), batch_size: 0, radius: 0.99, pool_size: 1 << 20, pool_refresh: 1000, surface_noise: 0.01 }
    }
}

/// `[eval]` keys of an SDF task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SdfEval {
    /// Grid points per axis for IoU and the marching-cubes mesh.
    pub resolution: usize,
    /// Points sampled on each surface for Chamfer, F-score and normal error.
    pub surface_samples: usize,
    /// The F-score's distance threshold, in the `[-1, 1]` box's units.
    pub fscore_threshold: f64,
    /// Written meshes (`mesh.ply`, `nfield mesh`) drop floating pieces with fewer faces than this
    /// share of the largest piece's (0 keeps every piece); the scores use the whole surface.
    pub min_piece: f64,
}

impl Default for SdfEval {
    fn default() -> Self {
        Self { resolution: 256, surface_samples: 100_000, fscore_threshold: 0.01, min_piece: 0.01 }
    }
}

impl TaskOptions for SdfOptions {
    fn path(&self) -> &Path {
        &self.path
    }

    fn validate(&self, source: &str) -> Result<()> {
        if !(self.radius > 0.0 && self.radius <= 1.0) {
            bail!("{source}: task.radius must be in (0, 1]: the mesh must fit the [-1, 1] box");
        }
        if !(self.surface_noise >= 0.0 && self.surface_noise.is_finite()) {
            bail!("{source}: task.surface_noise must be a finite number >= 0");
        }
        at_least_one(source, &[("task.pool_size", self.pool_size), ("task.pool_refresh", self.pool_refresh as usize)])
    }

    fn outputs(&self) -> Outputs {
        Outputs::Unbounded
    }

    fn cam_coordinate(&self) -> (usize, &'static str) {
        (3, "an SDF is modulated by its 3-D point")
    }
}

impl SdfEval {
    pub fn validate(&self, source: &str) -> Result<()> {
        if self.resolution < 2 {
            bail!("{source}: eval.resolution must be at least 2");
        }
        at_least_one(source, &[("eval.surface_samples", self.surface_samples)])?;
        if !(self.fscore_threshold > 0.0 && self.fscore_threshold.is_finite()) {
            bail!("{source}: eval.fscore_threshold must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.min_piece) {
            bail!("{source}: eval.min_piece must be a share between 0 and 1");
        }
        Ok(())
    }
}

/// NeuRBF's kernel weights `1 / (|sdf| + eps)`.
const IMPORTANCE_EPS: f32 = 1e-9;
/// Grid points per axis of the target sampled for FreSh's 3-D spectrum.
const SPECTRUM_RESOLUTION: usize = 64;

pub struct SdfTask {
    /// The mesh in the `[-1, 1]` box.
    pub mesh: Mesh,
    pub normalisation: Normalisation,
    sdf: MeshSdf,
    batch_size: usize,
    pool_size: usize,
    pool_refresh: u64,
    noise: f32,
    loss: String,
    resolution: usize,
    surface_samples: usize,
    fscore_threshold: f64,
    min_piece: f64,
    chunk: usize,
    /// `train.seed`: the pools a run draws (the first one also places NeuRBF's kernels).
    seed: u64,
    device: Device,
    pool: Mutex<Option<Pool>>,
    /// The surface of the last evaluation, kept for `write_outputs`.
    last_surface: Mutex<Option<Mesh>>,
    /// A mesh that is not closed.
    warning: Option<String>,
}

/// Training points in field coordinates and their signed distances.
struct Pool {
    /// `(seed, index)` it was drawn for.
    key: (u64, u64),
    coords: Tensor<2>,
    targets: Tensor<2>,
}

impl SdfOptions {
    /// The mesh, loaded, and its normalisation into the box; a warning when it is not closed.
    pub fn load_mesh(&self) -> Result<(Mesh, Normalisation, Option<String>)> {
        let original = Mesh::load(&self.path)?;
        let open = original.open_edges();
        let warning = (open > 0).then(|| {
            format!(
                "mesh {} is not watertight ({open} edges not shared by exactly two faces); the inside comes from the winding number, which tolerates small holes",
                self.path.display()
            )
        });
        let (mesh, normalisation) = original.normalised(self.radius as f32);
        Ok((mesh, normalisation, warning))
    }
}

/// Field coordinates `(p + 1) / 2` of box points `p` (flat `[N, 3]`).
pub fn to_field_coords(points: &[f32]) -> Vec<f32> {
    points.iter().map(|&p| 0.5 * (p + 1.0)).collect()
}

/// The field's signed distances at box points (flat `[N, 3]`), `chunk` points per pass.
pub fn field_distances(field: &Field, points: &[f32], chunk: usize, device: &Device) -> Vec<f32> {
    evaluate_points(field, &to_field_coords(points), 3, chunk, device)
}

/// The field's signed distances at box points on the device (`[M, 3]` to `[M, 1]`), `chunk`
/// points per pass; nothing is read back.
pub fn field_distances_on_device(field: &Field, points: Tensor<2>, chunk: usize) -> Tensor<2> {
    forward_in_chunks(field, (points + 1.0) * 0.5, chunk)
}

/// The field's unit normals at box points (flat `[N, 3]`): its gradient by central differences
/// `step` apart.
fn field_normals(field: &Field, points: &[f32], step: f32, chunk: usize, device: &Device) -> Vec<[f32; 3]> {
    if points.is_empty() {
        return Vec::new();
    }
    let points = Tensor::<2>::from_data(TensorData::new(points.to_vec(), [points.len() / 3, 3]), device);
    let normals = sphere_trace::normals_on_device(&|p| field_distances_on_device(field, p, chunk), points, step);
    read_floats(normals).chunks_exact(3).map(|n| [n[0], n[1], n[2]]).collect()
}

/// Coordinates of grid index `i` of `resolution` points over `[-1, 1]` (corners aligned).
fn grid_coord(i: usize, resolution: usize) -> f32 {
    -1.0 + 2.0 * i as f32 / (resolution - 1) as f32
}

/// The box points of slice `z` of a `resolution^3` grid, x fastest.
fn grid_slice(z: usize, resolution: usize) -> Vec<f32> {
    let r = resolution;
    (0..r * r).flat_map(|i| [grid_coord(i % r, r), grid_coord(i / r, r), grid_coord(z, r)]).collect()
}

/// Marching cubes of the field's zero level set on a `resolution^3` grid over the box, slice by
/// slice. `each_slice(z, points, distances)` sees every slice's values as they are computed.
pub fn field_surface(
    field: &Field,
    resolution: usize,
    chunk: usize,
    device: &Device,
    mut each_slice: impl FnMut(usize, &[f32], &[f32]),
) -> Result<Mesh> {
    marching_cubes(resolution, -1.0, 1.0, |z| {
        let points = grid_slice(z, resolution);
        let distances = field_distances(field, &points, chunk, device);
        each_slice(z, &points, &distances);
        Ok(distances)
    })
}

/// Central-difference step for normals at an evaluation `resolution`: half a grid cell, the scale
/// the marching-cubes mesh resolves.
fn normal_step(resolution: usize) -> f32 {
    1.0 / (resolution - 1) as f32
}

/// A surface meshed at `resolution`, in the original mesh's units as binary PLY, with normals
/// from the field's gradient.
pub fn surface_ply(field: &Field, surface: &Mesh, resolution: usize, normalisation: &Normalisation, chunk: usize, device: &Device) -> Vec<u8> {
    let points: Vec<f32> = surface.vertices.iter().flatten().copied().collect();
    let normals = field_normals(field, &points, normal_step(resolution), chunk, device);
    let original = Mesh {
        vertices: surface.vertices.iter().map(|v| [0, 1, 2].map(|k| v[k] / normalisation.scale + normalisation.centre[k])).collect(),
        triangles: surface.triangles.clone(),
    };
    original.to_ply(Some(&normals))
}

impl SdfTask {
    pub fn new(options: &SdfOptions, eval: &SdfEval, config: &Config, device: &Device) -> Result<Self> {
        let (mesh, normalisation, warning) = options.load_mesh()?;
        let sdf = MeshSdf::new(&mesh);
        Ok(Self {
            sdf,
            mesh,
            normalisation,
            batch_size: options.batch_size,
            pool_size: options.pool_size,
            pool_refresh: options.pool_refresh,
            noise: options.surface_noise as f32,
            loss: config.train.loss.clone(),
            resolution: eval.resolution,
            surface_samples: eval.surface_samples,
            fscore_threshold: eval.fscore_threshold,
            min_piece: eval.min_piece,
            chunk: config.eval.chunk_size,
            seed: config.train.seed,
            device: device.clone(),
            pool: Mutex::new(None),
            last_surface: Mutex::new(None),
            warning,
        })
    }

    /// Pool `index` of a run seeded with `seed`: box points and their signed distances.
    fn draw_pool(&self, index: u64, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ index.wrapping_add(0x5851_F42D));
        let (points, distances) = self.sdf.training_samples(self.pool_size, self.noise, &mut rng);
        (points.into_iter().flatten().collect(), distances)
    }

    /// A pool's field coordinates and distances as tensors on the training device.
    fn upload(&self, key: (u64, u64), coords: Vec<f32>, distances: Vec<f32>) -> Pool {
        let n = distances.len();
        Pool {
            key,
            coords: Tensor::from_data(TensorData::new(coords, [n, 3]), &self.device),
            targets: Tensor::from_data(TensorData::new(distances, [n, 1]), &self.device),
        }
    }

    /// Signed distances of the mesh at box points: only the sign is exact enough to matter here,
    /// so this is the cheap winding-number test (`-1` inside, `1` outside).
    fn true_signs(&self, points: &[f32]) -> Vec<f32> {
        points.par_chunks(3).map(|p| if self.sdf.winding_number([p[0], p[1], p[2]]) > 0.5 { -1.0 } else { 1.0 }).collect()
    }
}

impl Task for SdfTask {
    fn kind(&self) -> &'static str {
        "sdf"
    }

    /// Points in, one signed distance out. The resolution is NeuRBF's 1024^3 evaluation grid,
    /// which bounds its kernel widths and sets grids' finest level when a config leaves it at 0.
    fn field_spec(&self) -> FieldSpec {
        FieldSpec { d_in: 3, d_out: 1, resolution: 1024, shape: vec![1024; 3], importance: None, cam_dims: 3, radiance: false }
    }

    fn warnings(&self) -> Vec<String> {
        self.warning.iter().cloned().collect()
    }

    /// The first training pool's points weighted by `1 / (|sdf| + 1e-9)`: in effect NeuRBF's
    /// K-Means of surface samples.
    fn importance(&self) -> Option<WeightedPoints> {
        let (points, distances) = self.draw_pool(0, self.seed);
        let weights = distances.iter().map(|d| 1.0 / (d.abs() + IMPORTANCE_EPS)).collect();
        let points = to_field_coords(&points);
        // Keep the pool for the first steps, which would otherwise draw it again.
        *self.pool.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.upload((self.seed, 0), points.clone(), distances));
        Some(WeightedPoints { dims: 3, points, weights })
    }

    fn signal(&self) -> Option<(Vec<f32>, Signal)> {
        let r = SPECTRUM_RESOLUTION;
        let points: Vec<f32> = (0..r).flat_map(|z| grid_slice(z, r)).collect();
        let queries: Vec<[f32; 3]> = points.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
        let values = self.sdf.signed_distances(&queries);
        Some((to_field_coords(&points), Signal { dims: vec![r, r, r], channels: 1, values }))
    }

    fn loss(&mut self, field: &Field, step: u64) -> Tensor<1> {
        let seed = self.seed;
        let key = (seed, step / self.pool_refresh);
        let (coords, targets) = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.as_ref().is_none_or(|p| p.key != key) {
                let (points, distances) = self.draw_pool(key.1, seed);
                *pool = Some(self.upload(key, to_field_coords(&points), distances));
            }
            let pool = pool.as_ref().expect("drawn above");
            (pool.coords.clone(), pool.targets.clone())
        };
        let (coords, targets) = if self.batch_size == 0 || self.batch_size >= self.pool_size {
            (coords, targets)
        } else {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step);
            let picks: Vec<i32> = (0..self.batch_size).map(|_| rng.random_range(0..self.pool_size as i32)).collect();
            let index = Tensor::<1, Int>::from_data(TensorData::new(picks, [self.batch_size]), &self.device);
            (coords.select(0, index.clone()), targets.select(0, index))
        };
        super::loss(&self.loss, field.forward_prepared(&field.prepare(coords)), targets)
    }

    fn evaluate(&self, field: &Field, device: &Device) -> Result<Metrics> {
        let mut occupancy = Occupancy::default();
        let surface = field_surface(field, self.resolution, self.chunk, device, |_, points, distances| {
            occupancy.add(distances, &self.true_signs(points));
        })?;
        let mut metrics = vec![("iou".into(), occupancy.iou_inside()), ("iou_outside".into(), occupancy.iou_outside())];
        if surface.triangles.is_empty() {
            // No zero level set inside the box: nothing to compare.
            metrics.extend(["chamfer_l1", "fscore", "normal_error_deg", "mesh_normal_error_deg"].map(|k| (k.to_string(), f64::NAN)));
        } else {
            let mut normals = |points: &[f32]| field_normals(field, points, normal_step(self.resolution), self.chunk, device);
            let s = metrics::surface_metrics(&surface, &self.mesh, self.surface_samples, self.fscore_threshold, Some(&mut normals));
            metrics.push(("chamfer_l1".into(), s.chamfer_l1));
            metrics.push(("fscore".into(), s.fscore));
            metrics.push(("normal_error_deg".into(), s.normal_error_deg.unwrap_or(f64::NAN)));
            metrics.push(("mesh_normal_error_deg".into(), s.mesh_normal_error_deg));
        }
        *self.last_surface.lock().unwrap_or_else(|e| e.into_inner()) = Some(surface);
        Ok(metrics)
    }

    fn write_outputs(&self, field: &Field, device: &Device, run_dir: &Path) -> Result<Vec<PathBuf>> {
        let kept = self.last_surface.lock().unwrap_or_else(|e| e.into_inner()).take();
        let surface = match kept {
            Some(s) => s,
            None => field_surface(field, self.resolution, self.chunk, device, |_, _, _| {})?,
        };
        let path = run_dir.join("mesh.ply");
        let surface = drop_small_pieces(&surface, self.min_piece);
        crate::run::write_atomic(&path, &surface_ply(field, &surface, self.resolution, &self.normalisation, self.chunk, device))
            .with_context(|| format!("cannot write the mesh {}", path.display()))?;
        Ok(vec![path])
    }

    /// Sphere-traced pictures: one front view, or `--orbit FRAMES` views around the object into
    /// a new folder.
    fn render(&self, field: &Field, request: &RenderRequest, device: &Device) -> Result<Vec<PathBuf>> {
        if request.view.is_some() {
            bail!("--view renders a test camera, and an SDF run has none; use --orbit FRAMES");
        }
        let (width, height) = request.size.unwrap_or((512, 512));
        let shading = match request.mode {
            RenderMode::Rgb => Shading::Lit,
            RenderMode::Depth => Shading::Depth,
            RenderMode::Normal => Shading::Normal,
            RenderMode::Opacity => bail!("--mode opacity applies to radiance fields; an SDF renders rgb, depth or normal"),
        };
        let frames = request.orbit.unwrap_or(1);
        if frames == 0 {
            bail!("--orbit needs at least 1 frame");
        }
        let mode = request.mode.name();
        let out = &request.out;
        let stems: Vec<PathBuf> = if request.orbit.is_some() {
            let folder = unused_dir(out, &format!("orbit-{mode}-{width}x{height}"));
            std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
            (0..frames).map(|i| folder.join(format!("{i:03}"))).collect()
        } else {
            std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
            vec![unused_stem(out, &format!("{mode}-{width}x{height}"))]
        };
        let sdf = |points: Tensor<2>| field_distances_on_device(field, points, self.chunk);
        let bar = indicatif::ProgressBar::new(frames as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("render [{elapsed_precise}] {wide_bar} {pos}/{len} frames ETA {eta}").expect("valid template"),
        );
        let mut written = Vec::new();
        for (i, stem) in stems.iter().enumerate() {
            let camera = Camera::orbit(i, frames, 3.0, 20.0);
            let pixels = read_floats(sphere_trace::render(&sdf, &camera, width, height, shading, device));
            written.extend(image::save(stem, width, height, 3, &pixels, image::SampleFormat::U8)?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(written)
    }

    /// Orbit the box's centre from sphere_trace's distance, y up (as `nfield render` does).
    fn viewing(&self) -> super::Viewing {
        super::Viewing::Orbit { centre: [0.0; 3], distance: 3.0, up: [0.0, 1.0, 0.0], fov_y: 40f32.to_radians() }
    }

    fn view_modes(&self) -> &'static [&'static str] {
        &["shaded", "normals", "depth"]
    }

    /// The field sphere-traced through the request's camera.
    fn view(&self, field: &Field, request: &super::ViewRequest, device: &Device) -> Result<super::ViewPicture> {
        let c = request.camera.as_ref().context("an SDF is viewed through a camera")?;
        let r = c.rotation();
        let column = |k: usize| [r[(0, k)], r[(1, k)], r[(2, k)]];
        let camera = Camera { eye: c.position(), forward: column(2).map(|v| -v), right: column(0), up: column(1), fov_y: c.fov_y().to_degrees() };
        let shading = [Shading::Lit, Shading::Normal, Shading::Depth][request.mode.min(2)];
        let sdf = |points: Tensor<2>| field_distances_on_device(field, points, self.chunk);
        let rgb = sphere_trace::render(&sdf, &camera, c.width, c.height, shading, device);
        Ok(super::ViewPicture { width: c.width, height: c.height, rgb })
    }

    /// Marching cubes of the trained SDF, in the original mesh's units.
    fn mesh(&self, field: &Field, request: &MeshRequest, device: &Device) -> Result<(PathBuf, String)> {
        let resolution = request.resolution.unwrap_or(self.resolution);
        if !(2..=4096).contains(&resolution) {
            bail!("--resolution must be between 2 and 4096, got {resolution}");
        }
        let path = match &request.out {
            Some(p) if p.exists() => bail!("{} already exists; nfield never overwrites a file (choose another --out)", p.display()),
            Some(p) => p.clone(),
            None => unused_stem(&request.run_dir, &format!("mesh-{resolution}")).with_extension("ply"),
        };
        let bar = indicatif::ProgressBar::new(resolution as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("mesh [{elapsed_precise}] {wide_bar} {pos}/{len} slices ETA {eta}").expect("valid template"),
        );
        let surface = field_surface(field, resolution, self.chunk, device, |_, _, _| bar.inc(1))?;
        bar.finish_and_clear();
        if surface.triangles.is_empty() {
            bail!("the field has no zero level set inside the [-1, 1] box at resolution {resolution}: nothing to mesh (is the run trained?)");
        }
        let surface = drop_small_pieces(&surface, self.min_piece);
        let ply = surface_ply(field, &surface, resolution, &self.normalisation, self.chunk, device);
        crate::run::write_atomic(&path, &ply)?;
        Ok((path, format!("{} vertices, {} triangles", surface.vertices.len(), surface.triangles.len())))
    }
}
