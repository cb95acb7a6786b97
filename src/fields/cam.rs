//! CAM, coordinate-aware modulation (Lee et al., ICLR 2024), as an option on MLP decoders.
//!
//! A modulated hidden layer computes `act(γ(p) · norm(W h + b) + β(p))`. `norm` has no learned
//! affine. γ and β are read by linear interpolation (corners aligned, border clamped) from small
//! grids indexed by a coordinate `p` that the task chooses: the pixel for images, the view
//! direction for radiance fields. Scale grids start at 1 and shift grids at 0, so at
//! initialisation only the normalisation changes the network. The output layer is never modulated.

use anyhow::{Result, bail};
use burn::module::{Module, Param};
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData, activation::relu};
use serde::{Deserialize, Serialize};

use crate::kernels::gather_sum::gather_sum;

/// LayerNorm's epsilon, as in CAM's code.
const NORM_EPS: f64 = 1e-5;

/// Which statistics normalise a hidden layer before it is modulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CamNorm {
    /// Each point over its own features (images).
    Point,
    /// Each ray over all its samples' features (radiance fields: GroupNorm with one group).
    Ray,
    None,
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
    pub norm: CamNorm,
    /// 3-D coordinates: three summed planes instead of a volume.
    pub factored: bool,
}

impl Default for CamConfig {
    fn default() -> Self {
        Self { grid: vec![32, 32], layers: vec![], norm: CamNorm::Point, factored: false }
    }
}

impl CamConfig {
    /// Checks of the table alone; `rays`: whether the task's points come in rays.
    pub fn validate(&self, source: &str, rays: bool) -> Result<()> {
        if self.grid.is_empty() || self.grid.len() > 3 || self.grid.iter().any(|&r| r < 2) {
            bail!("{source}: model.cam.grid must list 1 to 3 axes of at least 2 cells, e.g. [32, 32]");
        }
        if self.factored && self.grid.len() != 3 {
            bail!("{source}: model.cam.factored needs a 3-axis model.cam.grid");
        }
        if self.norm == CamNorm::Ray && !rays {
            bail!("{source}: model.cam.norm = \"ray\" needs a task with rays; images and SDFs use \"point\"");
        }
        Ok(())
    }

    /// Checks against the decoder (`hidden` layers) and the modulation coordinate the task gives
    /// (`axes`, described by `what`).
    pub fn check_fits(&self, hidden: usize, axes: usize, what: &str) -> Result<()> {
        if let Some(bad) = self.layers.iter().find(|&&l| l >= hidden) {
            bail!("model.cam.layers: layer {bad} does not exist; the decoder has hidden layers 0 to {}", hidden.saturating_sub(1));
        }
        if self.grid.len() != axes {
            bail!("model.cam.grid has {} axes, but {what}", self.grid.len());
        }
        Ok(())
    }

    /// The modulation grids for a decoder of `hidden` layers.
    pub fn build(&self, hidden: usize, device: &Device) -> Result<Cam> {
        let layers: Vec<usize> = if self.layers.is_empty() { (0..hidden).collect() } else { self.layers.clone() };
        Cam::new(self.grid.clone(), layers, self.factored, self.norm, device)
    }
}

/// The modulation grids of every modulated layer.
#[derive(Module, Debug)]
pub struct Cam {
    /// `[cells, 2 * layers]`: column `i` is modulated layer `i`'s scale minus 1, column
    /// `layers + i` its shift. One table, so a single interpolation serves every layer. Storing
    /// γ − 1 (same gradients, same Adam steps) makes the initial identity exact in floating point:
    /// interpolating ones would give 1 ± rounding.
    pub grids: Param<Tensor<2>>,
    /// Hidden layers (0-based, in the decoder's order) that are modulated.
    pub layers: Vec<usize>,
    /// Grid cells per axis of the modulation coordinate.
    pub resolution: Vec<usize>,
    /// 3-D coordinates only: three axis-aligned planes whose samples are summed, instead of a
    /// volume. (Summed, not multiplied: a product of zero-initialised shift planes never trains.)
    pub factored: bool,
    #[module(skip)]
    pub norm: CamNorm,
}

/// Which grid rows a batch of points reads, and with what weights.
#[derive(Clone, Debug)]
pub struct CamLookup {
    /// `[N * corners]`.
    pub rows: Tensor<1, Int>,
    /// `[N, corners, 1]`.
    pub weights: Tensor<3>,
    /// Which points form one ray, for `CamNorm::Ray`.
    pub rays: RayGroups,
}

/// How a batch of points falls into rays (for CAM's per-ray normalisation).
// One per batch: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum RayGroups {
    /// Every `n` consecutive points (1: points stand alone).
    Fixed(usize),
    /// Rays of any length: `ray[i]` is point i's ray, `points[r]` the number of points of ray r.
    Segments { ray: Tensor<1, Int>, points: Vec<usize> },
}

/// γ and β of every modulated layer at a batch of points, handed to a decoder.
pub struct Modulation<'a> {
    cam: &'a Cam,
    /// `[N, 2 * layers]`: γ − 1, then β, as the grids store them.
    values: Tensor<2>,
    rays: RayGroups,
}

impl Cam {
    pub fn new(resolution: Vec<usize>, layers: Vec<usize>, factored: bool, norm: CamNorm, device: &Device) -> Result<Self> {
        if resolution.is_empty() || resolution.len() > 3 || resolution.iter().any(|&r| r < 2) {
            bail!("CAM grids are 1-, 2- or 3-D with at least 2 cells per axis, got {resolution:?}");
        }
        if factored && resolution.len() != 3 {
            bail!("a factored CAM grid needs a 3-D modulation coordinate, got {}-D", resolution.len());
        }
        let planes = plane_axes(resolution.len(), factored);
        let cells: usize = planes.iter().map(|axes| axes.iter().map(|&a| resolution[a]).product::<usize>()).sum();
        // γ = 1 and β = 0 everywhere; summed planes keep that.
        let grids = Tensor::zeros([cells, 2 * layers.len()], device);
        Ok(Self { grids: Param::from_tensor(grids), layers, resolution, factored, norm })
    }

    /// Rows and weights for modulation coordinates `p: [N, dims]` in `[0, 1]`, clamped to the
    /// border; `rays` says which points form one ray.
    pub fn lookup(&self, p: Tensor<2>, rays: RayGroups) -> CamLookup {
        let [n, d] = p.dims();
        assert_eq!(d, self.resolution.len(), "CAM coordinate has {d} axes, its grid {}", self.resolution.len());
        let device = p.device();
        let per_axis = |f: &dyn Fn(usize) -> f32| Tensor::<2>::from_data(TensorData::new((0..d).map(f).collect::<Vec<_>>(), [1, d]), &device);
        // Corners aligned: p = 0 and p = 1 sit on the first and last cell.
        let pos = p.clamp(0.0, 1.0) * per_axis(&|a| (self.resolution[a] - 1) as f32);
        let cell = pos.clone().floor();
        let cell = cell.clone() - relu(cell - per_axis(&|a| (self.resolution[a] - 2) as f32)); // p = 1 stays in the last cell
        let frac = pos - cell.clone();
        let cell = cell.int();

        let mut rows = Vec::new();
        let mut weights = Vec::new();
        let mut offset = 0i32;
        for axes in plane_axes(d, self.factored) {
            for corner in 0..1usize << axes.len() {
                let mut row = Tensor::<2, Int>::zeros([n, 1], &device) + offset;
                let mut weight = Tensor::<2>::ones([n, 1], &device);
                let mut stride = 1i32;
                for (bit, &axis) in axes.iter().enumerate() {
                    let up = (corner >> bit) & 1 == 1;
                    let f = frac.clone().narrow(1, axis, 1);
                    weight = weight * if up { f } else { f.neg() + 1.0 };
                    row = row + (cell.clone().narrow(1, axis, 1) + up as i32) * stride;
                    stride *= self.resolution[axis] as i32;
                }
                rows.push(row);
                weights.push(weight);
            }
            offset += axes.iter().map(|&a| self.resolution[a] as i32).product::<i32>();
        }
        let corners = rows.len();
        CamLookup { rows: Tensor::cat(rows, 1).reshape([n * corners]), weights: Tensor::cat(weights, 1).reshape([n, corners, 1]), rays }
    }

    /// Interpolate every layer's γ and β once for a batch.
    pub fn modulation(&self, lookup: &CamLookup) -> Modulation<'_> {
        let values = gather_sum(self.grids.val(), lookup.rows.clone(), lookup.weights.clone());
        Modulation { cam: self, values, rays: lookup.rays.clone() }
    }
}

impl Modulation<'_> {
    /// Normalise and modulate hidden layer `layer`'s pre-activation `h: [N, C]`; layers that are
    /// not modulated pass through.
    pub fn apply(&self, layer: usize, h: Tensor<2>) -> Tensor<2> {
        let Some(slot) = self.cam.layers.iter().position(|&l| l == layer) else {
            return h;
        };
        let count = self.cam.layers.len();
        let h = match self.cam.norm {
            CamNorm::Point => normalise_rows(h),
            CamNorm::Ray => match &self.rays {
                RayGroups::Fixed(s) => {
                    let [n, c] = h.dims();
                    let s = (*s).max(1);
                    normalise_rows(h.reshape([n / s, s * c])).reshape([n, c])
                }
                RayGroups::Segments { ray, points } => normalise_segments(h, ray, points),
            },
            CamNorm::None => h,
        };
        let scale_minus_one = self.values.clone().narrow(1, slot, 1);
        let shift = self.values.clone().narrow(1, count + slot, 1);
        h.clone() + h * scale_minus_one + shift
    }
}

/// Apply `modulation` to layer `layer` when there is one.
pub fn modulate(modulation: Option<&Modulation>, layer: usize, h: Tensor<2>) -> Tensor<2> {
    match modulation {
        Some(m) => m.apply(layer, h),
        None => h,
    }
}

/// Zero mean and unit (biased) variance along each row, no affine.
fn normalise_rows(h: Tensor<2>) -> Tensor<2> {
    let centred = h.clone() - h.mean_dim(1);
    let variance = centred.clone().square().mean_dim(1);
    centred / (variance + NORM_EPS).sqrt()
}

/// Zero mean and unit (biased) variance over each ray's points and features together (GroupNorm
/// with one group per ray), for rays of any length.
fn normalise_segments(h: Tensor<2>, ray: &Tensor<1, Int>, points: &[usize]) -> Tensor<2> {
    let [n, c] = h.dims();
    let device = h.device();
    let counts: Vec<f32> = points.iter().map(|&p| (p * c).max(1) as f32).collect();
    let counts = Tensor::<2>::from_data(TensorData::new(counts, [points.len(), 1]), &device);
    // Per-ray sums by scatter-add, read back per point by gather.
    let per_ray =
        |v: Tensor<2>| Tensor::<2>::zeros([points.len(), 1], &device).select_assign(0, ray.clone(), v, IndexingUpdateOp::Add) / counts.clone();
    let mean = per_ray(h.clone().sum_dim(1)).select(0, ray.clone());
    let centred = h - mean;
    let variance = per_ray(centred.clone().square().sum_dim(1)).select(0, ray.clone());
    debug_assert_eq!(centred.dims(), [n, c]);
    centred / (variance + NORM_EPS).sqrt()
}

/// CAM's view-direction coordinate for unit directions (flat `[N, 3]`, z up): azimuth
/// `atan2(y, x) / 2π + 1/2` and elevation `-(2/π) atan2(z, |xy|)` mapped to [0, 1], as CAM's
/// mip-NeRF indexes its 10 x 3 grids.
pub fn view_coordinates(dirs: &[f32], device: &Device) -> Tensor<2> {
    let coords: Vec<f32> = dirs
        .chunks_exact(3)
        .flat_map(|d| {
            let azimuth = d[1].atan2(d[0]) / std::f32::consts::TAU + 0.5;
            let elevation = -std::f32::consts::FRAC_2_PI * d[2].atan2(d[0].hypot(d[1]));
            [azimuth, 0.5 * (elevation + 1.0)]
        })
        .collect();
    let n = coords.len() / 2;
    Tensor::from_data(TensorData::new(coords, [n, 2]), device)
}

/// The axes each grid spans: the whole coordinate, or the three planes of a factored 3-D grid.
fn plane_axes(dims: usize, factored: bool) -> Vec<Vec<usize>> {
    if factored { vec![vec![0, 1], vec![0, 2], vec![1, 2]] } else { vec![(0..dims).collect()] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::mlp::uniform_tensor;
    use rand::SeedableRng;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    #[test]
    fn identity_grids_leave_only_the_normalisation() {
        let device = Device::flex();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let h = uniform_tensor([50, 16], 2.0, &mut rng, &device) + 0.7;
        let p = uniform_tensor([50, 2], 0.6, &mut rng, &device) + 0.5;
        // Scale 1, shift 0, no normalisation: exactly the unmodulated layer, bit for bit.
        let cam = Cam::new(vec![32, 32], vec![1], false, CamNorm::None, &device).unwrap();
        let lookup = cam.lookup(p.clone(), RayGroups::Fixed(1));
        let m = cam.modulation(&lookup);
        assert_eq!(values(m.apply(1, h.clone())), values(h.clone()));
        // An unmodulated layer passes through even with normalisation on.
        let cam = Cam::new(vec![32, 32], vec![1], false, CamNorm::Point, &device).unwrap();
        let m = cam.modulation(&cam.lookup(p, RayGroups::Fixed(1)));
        assert_eq!(values(m.apply(0, h.clone())), values(h.clone()));
        // A modulated one is normalised per point: zero mean, unit variance.
        assert_normalised(&values(m.apply(1, h)), 16);
    }

    /// Every consecutive `size` values have zero mean and unit (biased) variance.
    fn assert_normalised(values: &[f32], size: usize) {
        for group in values.chunks(size) {
            let mean = group.iter().sum::<f32>() / size as f32;
            let var = group.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / size as f32;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "mean {mean} var {var}");
        }
    }

    #[test]
    fn ray_norm_uses_every_sample_of_the_ray() {
        let device = Device::flex();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let h = uniform_tensor([12, 5], 3.0, &mut rng, &device);
        let cam = Cam::new(vec![10, 3], vec![0], false, CamNorm::Ray, &device).unwrap();
        let p = uniform_tensor([12, 2], 0.5, &mut rng, &device) + 0.5;
        // 4 samples x 5 features per ray.
        assert_normalised(&values(cam.modulation(&cam.lookup(p, RayGroups::Fixed(4))).apply(0, h)), 20);
    }

    /// Bilinear with corners aligned and the border clamped, against a plain-Rust reference, in
    /// 2-D and as three summed planes in 3-D.
    #[test]
    fn interpolation_matches_reference() {
        let device = Device::flex();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let res = [4usize, 3, 5];
        for (dims, factored) in [(2usize, false), (3, true), (3, false), (1, false)] {
            let mut cam = Cam::new(res[..dims].to_vec(), vec![0], factored, CamNorm::None, &device).unwrap();
            let cells = cam.grids.val().dims()[0];
            let table = uniform_tensor([cells, 2], 1.0, &mut rng, &device);
            let t = values(table.clone());
            cam.grids = Param::from_tensor(table);
            let points: Vec<f32> = (0..40 * dims).map(|i| ((i * 37 % 101) as f32 / 80.0) - 0.1).collect();
            let p = Tensor::<2>::from_data(TensorData::new(points.clone(), [40, dims]), &device);
            let got = values(cam.modulation(&cam.lookup(p, RayGroups::Fixed(1))).values);
            for (i, point) in points.chunks(dims).enumerate() {
                let mut want = [0.0f32; 2];
                let mut offset = 0;
                for axes in plane_axes(dims, factored) {
                    let mut stride = 1;
                    let mut corners = vec![(0usize, 1.0f32)];
                    for &a in &axes {
                        let pos = point[a].clamp(0.0, 1.0) * (res[a] - 1) as f32;
                        let c = pos.floor().min((res[a] - 2) as f32);
                        let f = pos - c;
                        corners = corners
                            .iter()
                            .flat_map(|&(r, w)| [(r + c as usize * stride, w * (1.0 - f)), (r + (c as usize + 1) * stride, w * f)])
                            .collect();
                        stride *= res[a];
                    }
                    for (r, w) in corners {
                        for (k, v) in want.iter_mut().enumerate() {
                            *v += w * t[(offset + r) * 2 + k];
                        }
                    }
                    offset += stride;
                }
                for k in 0..2 {
                    assert!(
                        (got[i * 2 + k] - want[k]).abs() < 1e-5,
                        "{dims}-D factored={factored} point {point:?}: {} vs {}",
                        got[i * 2 + k],
                        want[k]
                    );
                }
            }
        }
    }

    /// Through a whole field (FFN + CAM on two layers): the loss reaches the scale and the shift
    /// columns of every modulated layer, and no column of an unmodulated one exists.
    #[test]
    fn both_grids_receive_gradients() {
        let text = "[task]\nkind = \"image\"\npath = \"x.png\"\n[model]\nkind = \"ffn\"\nwidth = 32\nfrequencies = 16\n[model.cam]\ngrid = [8, 8]\nlayers = [0, 2]\n";
        let mut config = crate::config::Config::parse(text, "test", std::path::Path::new("/"), &[]).unwrap();
        config.resolve();
        let spec =
            crate::fields::FieldSpec { d_in: 2, d_out: 3, resolution: 16, shape: vec![16, 16], importance: None, cam_dims: 2, radiance: false };
        let device = Device::flex().autodiff();
        let field = crate::fields::Field::new(&config.model, &spec, 0, &device).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let x = uniform_tensor([200, 2], 0.5, &mut rng, &device) + 0.5;
        let target = uniform_tensor([200, 3], 0.5, &mut rng, &device) + 0.5;
        let loss = (field.forward(x) - target).square().mean();
        let grads = loss.backward();
        let cam = field.cam.as_ref().unwrap();
        let g = cam.grids.val().grad(&grads).expect("CAM grids get a gradient");
        assert_eq!(g.dims()[1], 4, "two layers, scale and shift each");
        let g: Vec<f32> = g.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        for column in 0..4 {
            let norm: f32 = g.chunks(4).map(|row| row[column].abs()).sum();
            assert!(norm > 1e-6, "column {column} (scale of layer 0 and 2, then shifts) got no gradient");
        }
    }
}
