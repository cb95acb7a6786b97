//! NeuRBF (Chen et al., ICCV 2023): adaptive radial basis functions plus a small grid, decoded
//! by a 64-wide MLP whose first layer has a residual sine.
//!
//! `f(x) = decoder([grid(x), rbf(x)] + b)` with
//! `rbf(x)_j = sum over the k nearest kernels i of w_ij * sin(m_j * phi_i(x) / sum phi)`.
//! Kernel centres and shapes come from a weighted K-Means of the target and stay frozen (as in
//! every released config), so each point's neighbours and basis values depend on the point
//! alone: `basis` computes them once per point set and training only gathers the weights `w`.
//! Kernels live in "kernel space": the field's `[0, 1]` coordinates scaled so the longest axis
//! has length 1 and pixels (voxels) are square.

use anyhow::{Result, bail};
use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData, activation::relu};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::cam::{CamConfig, Modulation, modulate};
use super::grid::{GridLookup, GridSize, HashGrid, validate_grid};
use super::kmeans::{self, WeightedPoints};
use super::knn::KdTree;
use super::mlp::{Linear, uniform_tensor};
use super::radiance::RadianceConfig;
use super::{Decoder, Encoding, FieldOptions, FieldSpec, OutputActivation, Outputs, radiance_heads};
use crate::config::{at_least_one, positive};
use crate::kernels;
use crate::profile::read_floats;

/// The radial function of each kernel, `r = x - c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KernelKind {
    /// Anisotropic inverse quadric `1 / (1 + r^T S r)`, `S` the inverse widened covariance
    /// (images, radiance fields).
    #[serde(rename = "ivq")]
    InverseQuadric,
    /// Anisotropic Gaussian `exp(-r^T S r / 2)`.
    #[serde(rename = "gauss")]
    Gaussian,
    /// Isotropic tent `prod_d clamp(1 - |r_d| s, 0, 1)` (SDFs): trilinear interpolation's
    /// weights when kernels sit on a grid.
    #[serde(rename = "tent")]
    Tent,
}

impl KernelKind {
    /// Shape parameters per kernel: the upper triangle of `S`, or one inverse width.
    pub fn shape_params(self, dims: usize) -> usize {
        match self {
            Self::Tent => 1,
            _ => dims * (dims + 1) / 2,
        }
    }
}

/// `model.kind = "neurbf"`: NeuRBF's image setup (DIV2K script): ivq kernels, k = 4, 32 channels
/// from 2^-3 to 2^12, a 2-level x 2-feature grid, a 64-wide decoder with a residual sine over
/// [1, 1000], 72K parameters in all.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NeuRbfConfig {
    /// The residual-sine layer plus `hidden_layers - 1` ReLU layers, each `width` wide.
    pub hidden_layers: usize,
    pub width: usize,
    /// `sigmoid` | `none` (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_activation: Option<OutputActivation>,
    /// Radial function: `ivq` (inverse quadric) | `gauss` | `tent`.
    pub kernel: KernelKind,
    /// Kernel count; 0 derives it from `params`.
    pub kernels: usize,
    /// Parameter budget (frozen kernel centres and shapes included) that sets the kernel count.
    pub params: usize,
    /// Nearest kernels each point uses.
    pub neighbours: usize,
    /// RBF feature channels (one sinusoid frequency each).
    pub rbf_features: usize,
    /// `[lowest, highest]` sinusoid frequency of the RBF channels, log-spaced.
    pub rbf_frequencies: [f64; 2],
    /// `[lowest, highest]` frequency of the decoder's residual sine, log-spaced over `width`.
    pub decoder_frequencies: [f64; 2],
    /// `false`: the RBF channels use the kernel values without sinusoids (the "no MSC" ablation).
    pub rbf_sinusoids: bool,
    /// `false`: no residual sine after the decoder's first layer (ablation).
    pub decoder_sinusoids: bool,
    /// Divide kernel values by their (detached) sum over the neighbours.
    pub normalize: bool,
    pub kmeans_iterations: usize,
    /// Cluster covariances are divided by this so kernels overlap (0.5 for images and SDFs).
    pub covariance_alpha: f64,
    /// The grid part: levels, features, table size and resolutions, as the hash grid's.
    pub levels: usize,
    pub features_per_level: usize,
    pub log2_table_size: u32,
    pub base_resolution: usize,
    /// Finest grid level; 0 means half the target's largest side.
    pub finest_resolution: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cam: Option<CamConfig>,
    /// Radiance fields: the heads after the density MLP (filled in for `task.kind = "nerf"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radiance: Option<RadianceConfig>,
}

impl Default for NeuRbfConfig {
    fn default() -> Self {
        Self {
            hidden_layers: 2,
            width: 64,
            output_activation: None,
            kernel: KernelKind::InverseQuadric,
            kernels: 0,
            params: 72_000,
            neighbours: 4,
            rbf_features: 32,
            rbf_frequencies: [0.125, 4096.0],
            decoder_frequencies: [1.0, 1000.0],
            rbf_sinusoids: true,
            decoder_sinusoids: true,
            normalize: true,
            kmeans_iterations: 10,
            covariance_alpha: 0.5,
            levels: 2,
            features_per_level: 2,
            log2_table_size: 24,
            base_resolution: 16,
            finest_resolution: 0,
            cam: None,
            radiance: None,
        }
    }
}

impl FieldOptions for NeuRbfConfig {
    fn validate(&self, source: &str) -> Result<()> {
        at_least_one(
            source,
            &[
                ("model.hidden_layers", self.hidden_layers),
                ("model.width", self.width),
                ("model.neighbours", self.neighbours),
                ("model.rbf_features", self.rbf_features),
            ],
        )?;
        for (key, [lo, hi]) in [("model.rbf_frequencies", self.rbf_frequencies), ("model.decoder_frequencies", self.decoder_frequencies)] {
            if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
                bail!("{source}: {key} must be [lowest, highest] with 0 < lowest <= highest");
            }
        }
        positive(source, &[("model.covariance_alpha", self.covariance_alpha)])?;
        validate_grid(source, self.levels, self.features_per_level, self.log2_table_size, self.base_resolution)?;
        self.radiance.as_ref().map_or(Ok(()), |r| r.validate(source))
    }

    fn learning_rates(&self) -> (f64, f64) {
        (1e-2, 5e-3)
    }

    fn resolve(&mut self, outputs: Outputs) {
        self.output_activation.get_or_insert(OutputActivation::None);
        if outputs == Outputs::Radiance {
            self.radiance.get_or_insert_with(RadianceConfig::default);
        }
    }

    fn output_activation(&self) -> OutputActivation {
        self.output_activation.unwrap_or(OutputActivation::None)
    }

    fn cam(&self) -> Option<&CamConfig> {
        self.cam.as_ref()
    }

    fn hidden_layers(&self) -> usize {
        self.radiance.as_ref().map_or(self.hidden_layers, |r| r.colour_layers)
    }

    fn places_kernels(&self) -> bool {
        true
    }

    /// The hash grid and the decoder settings, as a `hashgrid` field.
    fn grid_only(&self) -> Option<super::ModelConfig> {
        Some(super::ModelConfig::HashGrid(super::grid::HashGridConfig {
            hidden_layers: self.hidden_layers,
            width: self.width,
            output_activation: self.output_activation,
            levels: self.levels,
            features_per_level: self.features_per_level,
            log2_table_size: self.log2_table_size,
            base_resolution: self.base_resolution,
            finest_resolution: self.finest_resolution,
            cam: None,
            radiance: self.radiance.clone(),
        }))
    }

    fn build(&self, spec: &FieldSpec, rng: &mut StdRng, device: &Device) -> Result<(Encoding, Decoder)> {
        let encoding = RbfEncoding::new(spec, self, spec.importance.as_deref(), rng, device)?;
        let d = encoding.output_dim();
        let decoder = if spec.radiance {
            radiance_heads(d, self.width, self.hidden_layers, self.radiance.as_ref(), rng, device)
        } else {
            Decoder::ResidualSine(ResidualSineMlp::new(d, self, spec.d_out, rng, device))
        };
        Ok((Encoding::NeuRbf(encoding), decoder))
    }
}

impl NeuRbfConfig {
    /// The grid part's size for a target of `spec` (finest level 0: half the target's side).
    fn grid_size(&self, spec: &FieldSpec) -> GridSize {
        let finest = if self.finest_resolution == 0 { (spec.resolution / 2).max(2) } else { self.finest_resolution };
        GridSize { levels: self.levels, features: self.features_per_level, log2_table_size: self.log2_table_size, base: self.base_resolution, finest }
    }

    /// Parameters of everything except the kernels.
    fn fixed_params(&self, spec: &FieldSpec) -> usize {
        let grid = HashGrid::entry_count(spec.d_in, self.grid_size(spec)) * self.features_per_level;
        let z = self.levels * self.features_per_level + self.rbf_features;
        let w = self.width;
        grid + z + (z + 1) * w + (self.hidden_layers - 1) * (w + 1) * w + (w + 1) * spec.d_out
    }

    /// The paper's budget rule: as many kernels as fit in what the rest leaves of `params`.
    pub fn kernel_count(&self, spec: &FieldSpec) -> Result<usize> {
        if self.kernels > 0 {
            return Ok(self.kernels);
        }
        let fixed = self.fixed_params(spec);
        let per_kernel = self.rbf_features + spec.d_in + self.kernel.shape_params(spec.d_in);
        if self.params < fixed + self.neighbours * per_kernel {
            bail!(
                "model.params = {} leaves no room for kernels: the grid and decoder alone take {fixed}; \
                 raise model.params or set model.kernels",
                self.params
            );
        }
        Ok((self.params - fixed) / per_kernel)
    }
}

/// NeuRBF's encoding: the adaptive kernels' sinusoid-composed features beside a small grid's,
/// plus one bias over both.
#[derive(Module, Debug)]
pub struct RbfEncoding {
    /// `[kernels, dims]` in kernel space; frozen.
    pub centres: Param<Tensor<2>>,
    /// `[kernels, shape_params]`; frozen.
    pub shapes: Param<Tensor<2>>,
    /// `w`: `[kernels, rbf_features]`.
    pub kernel_features: Param<Tensor<2>>,
    pub grid: HashGrid,
    /// One bias over the concatenated grid and RBF features, `[1, features]`.
    pub feature_bias: Param<Tensor<2>>,
    /// Scales field coordinates into kernel space, per axis.
    pub axis_scale: Vec<f32>,
    #[module(skip)]
    pub kernel: KernelKind,
    pub neighbours: usize,
    pub normalize: bool,
    #[module(skip)]
    pub rbf_frequencies: Option<Vec<f32>>,
}

/// NeuRBF's decoder: a first layer with a residual sine (Eq. 7), then ReLU layers.
#[derive(Module, Debug)]
pub struct ResidualSineMlp {
    pub first: Linear,
    pub hidden: Vec<Linear>,
    pub output: Linear,
    #[module(skip)]
    pub frequencies: Option<Vec<f32>>,
}

/// A point set's neighbours and basis values: fixed, because the kernels are frozen.
#[derive(Clone, Debug)]
pub struct RbfBasis {
    /// `[points * k]`: the kernel row of each neighbour.
    pub rows: Tensor<1, Int>,
    /// `[points, k, features]`: `sin(m_j * phi_i / sum phi)`.
    pub psi: Tensor<3>,
}

/// `count` values from `lo` to `hi`, evenly spaced in log2 (NeuRBF's frequency ladders).
pub fn log_spaced(lo: f64, hi: f64, count: usize) -> Vec<f32> {
    let (a, b) = (lo.log2(), hi.log2());
    (0..count).map(|i| (a + (b - a) * i as f64 / (count.max(2) - 1) as f64).exp2() as f32).collect()
}

impl RbfEncoding {
    pub fn new(spec: &FieldSpec, options: &NeuRbfConfig, importance: Option<&WeightedPoints>, rng: &mut StdRng, device: &Device) -> Result<Self> {
        let dims = spec.d_in;
        if !(2..=3).contains(&dims) {
            bail!("NeuRBF takes 2-D or 3-D coordinates, not {dims}-D");
        }
        if options.hidden_layers == 0 {
            bail!("NeuRBF's decoder needs at least its first (residual sine) layer");
        }
        let n = options.kernel_count(spec)?;
        if options.neighbours == 0 || options.neighbours > n {
            bail!("model.neighbours = {} must be between 1 and the kernel count {n}", options.neighbours);
        }
        let longest = spec.shape.iter().copied().max().unwrap_or(1).max(1) as f32;
        let axis_scale: Vec<f32> = spec.shape.iter().map(|&s| s as f32 / longest).collect();
        let (centres, shapes) = init_kernels(spec, options, &axis_scale, n, importance, rng)?;
        let shape_width = options.kernel.shape_params(dims);

        let grid = HashGrid::new(dims, options.grid_size(spec), rng, device);
        let f = options.rbf_features;
        let z = grid.output_dim() + f;
        let kernel_features = uniform_tensor([n, f], 1e-4, rng, device);
        let feature_bias = uniform_tensor([1, z], 1e-4, rng, device);
        let frozen = |v: Vec<f32>, cols: usize| Param::from_tensor(Tensor::from_data(TensorData::new(v, [n, cols]), device)).set_require_grad(false);
        Ok(Self {
            centres: frozen(centres, dims),
            shapes: frozen(shapes, shape_width),
            kernel_features: Param::from_tensor(kernel_features),
            grid,
            feature_bias: Param::from_tensor(feature_bias),
            axis_scale,
            kernel: options.kernel,
            neighbours: options.neighbours,
            normalize: options.normalize,
            rbf_frequencies: options.rbf_sinusoids.then(|| log_spaced(options.rbf_frequencies[0], options.rbf_frequencies[1], f)),
        })
    }

    pub fn kernel_count(&self) -> usize {
        self.centres.val().dims()[0]
    }

    fn rbf_feature_count(&self) -> usize {
        self.kernel_features.val().dims()[1]
    }

    pub fn output_dim(&self) -> usize {
        self.grid.output_dim() + self.rbf_feature_count()
    }

    /// Field coordinates `[N, d]` in `[0, 1]` to kernel space.
    pub fn to_kernel_space(&self, x: Tensor<2>) -> Tensor<2> {
        let d = self.axis_scale.len();
        let scale = Tensor::<2>::from_data(TensorData::new(self.axis_scale.clone(), [1, d]), &x.device());
        x * scale
    }

    /// Grid lookups in kernel space, so grid cells are square like the pixels.
    pub fn grid_lookup(&self, x: Tensor<2>) -> GridLookup {
        self.grid.lookup(self.to_kernel_space(x))
    }

    /// Neighbours (a kd-tree over the centres, on the host) and basis values for `x` (`[N, d]`,
    /// field coordinates). Gradients flow to `x` through the kernel values.
    pub fn basis(&self, x: Tensor<2>) -> RbfBasis {
        let device = x.device();
        let [n, d] = x.dims();
        let k = self.neighbours;
        let xk = self.to_kernel_space(x);
        let host_points: Vec<f32> = read_floats(xk.clone());
        let centres_host: Vec<f32> = read_floats(self.centres.val());
        // A tent is zero beyond 1/s along any axis, so kernels farther than sqrt(d)/s add
        // nothing: the search can stop there, which keeps points far from the surface cheap.
        let limit = match self.kernel {
            KernelKind::Tent => {
                let s: Vec<f32> = read_floats(self.shapes.val());
                let narrowest = s.iter().copied().fold(f32::INFINITY, f32::min);
                d as f32 / (narrowest * narrowest)
            }
            _ => f32::INFINITY,
        };
        let rows: Vec<i32> = KdTree::new(&centres_host, d).nearest_all_within(&host_points, k, limit).into_iter().map(|i| i as i32).collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n * k]), &device);

        let centres = self.centres.val().detach().select(0, rows.clone()).reshape([n, k, d]);
        let r = xk.unsqueeze_dim::<3>(1) - centres; // [N, k, d]
        let shapes = self.shapes.val().detach().select(0, rows.clone()).reshape([n, k, self.kernel.shape_params(d)]);
        let phi = kernel_values(self.kernel, r, shapes); // [N, k, 1]
        let phi = if self.normalize { phi.clone() / (phi.sum_dim(1).detach() + 1e-8) } else { phi };
        let f = self.rbf_feature_count();
        let psi = match &self.rbf_frequencies {
            Some(m) => (phi * Tensor::<3>::from_data(TensorData::new(m.clone(), [1, 1, f]), &device)).sin(),
            None => phi.repeat_dim(2, f),
        };
        RbfBasis { rows, psi }
    }

    /// `[grid(x), rbf(x)] + b` from a point set's grid lookup and basis.
    pub fn features(&self, lookup: &GridLookup, basis: &RbfBasis) -> Tensor<2> {
        let rbf = kernels::gather_sum::gather_sum(self.kernel_features.val(), basis.rows.clone(), basis.psi.clone());
        Tensor::cat(vec![self.grid.interpolate(lookup), rbf], 1) + self.feature_bias.val()
    }
}

impl ResidualSineMlp {
    pub fn new(d_in: usize, options: &NeuRbfConfig, d_out: usize, rng: &mut StdRng, device: &Device) -> Self {
        let width = options.width;
        let first = Linear::torch_default(d_in, width, rng, device);
        let hidden = (1..options.hidden_layers).map(|_| Linear::torch_default(width, width, rng, device)).collect();
        let output = Linear::torch_default(width, d_out, rng, device);
        let frequencies = options.decoder_sinusoids.then(|| log_spaced(options.decoder_frequencies[0], options.decoder_frequencies[1], width));
        Self { first, hidden, output, frequencies }
    }

    /// `modulation`: CAM's scale and shift on the first layer (before the residual sine) and on
    /// the ReLU layers after it.
    pub fn forward(&self, z: Tensor<2>, modulation: Option<&Modulation>) -> Tensor<2> {
        let mut h = modulate(modulation, 0, self.first.forward(z));
        if let Some(m) = &self.frequencies {
            // Residual sine, no ReLU (NeuRBF Eq. 7).
            h = if kernels::on_flex(&h.device()) {
                kernels::residual_sine::residual_sine(h.clone(), Tensor::from_data(TensorData::new(m.clone(), [m.len()]), &h.device()))
            } else {
                h.clone() + (h.clone() * Tensor::<2>::from_data(TensorData::new(m.clone(), [1, m.len()]), &h.device())).sin()
            };
        }
        for (i, layer) in self.hidden.iter().enumerate() {
            h = relu(modulate(modulation, i + 1, layer.forward(h)));
        }
        self.output.forward(h)
    }
}

/// Kernel values `[N, k, 1]` for offsets `r = x - c` (`[N, k, d]`) and per-neighbour shape
/// parameters (`[N, k, P]`: the upper triangle of `S` row by row, or the tent's inverse width).
pub fn kernel_values(kind: KernelKind, r: Tensor<3>, shapes: Tensor<3>) -> Tensor<3> {
    let d = r.dims()[2];
    if kind == KernelKind::Tent {
        return (-(r.abs() * shapes) + 1.0).clamp(0.0, 1.0).prod_dim(2);
    }
    // r^T S r over the upper triangle, off-diagonal terms counted twice.
    let mut terms = Vec::with_capacity(d * (d + 1) / 2);
    for a in 0..d {
        for b in a..d {
            let ra = r.clone().narrow(2, a, 1);
            let rb = r.clone().narrow(2, b, 1);
            terms.push(if a == b { ra.square() } else { ra * rb * 2.0 });
        }
    }
    let q = (Tensor::cat(terms, 2) * shapes).sum_dim(2);
    match kind {
        KernelKind::InverseQuadric => (q + 1.0).recip(),
        _ => (q * -0.5).exp(),
    }
}

/// Centres and shape parameters, flattened: weighted K-Means when the task gave importance
/// points, otherwise a regular grid (used when a checkpoint will overwrite them anyway).
fn init_kernels(
    spec: &FieldSpec,
    options: &NeuRbfConfig,
    axis_scale: &[f32],
    n: usize,
    importance: Option<&WeightedPoints>,
    rng: &mut StdRng,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let d = spec.d_in;
    let (centres, covariances) = match importance {
        Some(wp) => {
            let points: Vec<f32> = wp.points.chunks(d).flat_map(|p| p.iter().zip(axis_scale).map(|(v, s)| v * s)).collect();
            let weights: Vec<f64> = wp.weights.iter().map(|&w| w as f64).collect();
            let centres = kmeans::weighted_kmeans(&points, &weights, d, n, options.kmeans_iterations, rng)?;
            // Widths are clipped to [a hundredth of half a sample, a tenth of the extent].
            let min_std = 1.0 / spec.resolution.max(1) as f64 / 2.0 / 100.0;
            let cov = kmeans::weighted_covariances(&points, &weights, d, &centres, options.covariance_alpha, min_std, 0.1);
            (centres, cov)
        }
        None => regular_grid(d, n, axis_scale),
    };
    let mut shapes = Vec::with_capacity(n * options.kernel.shape_params(d));
    for cov in covariances.chunks(d * d) {
        match options.kernel {
            KernelKind::Tent => {
                // Isotropic width: the mean variance; x4 so the tent is 0.5 at that distance.
                let variance: f64 = (0..d).map(|a| cov[a * d + a]).sum::<f64>() / d as f64;
                shapes.push((1.0 / (4.0 * variance).sqrt()) as f32);
            }
            _ => {
                let s = kmeans::invert(cov, d);
                for a in 0..d {
                    for b in a..d {
                        shapes.push(s[a * d + b] as f32);
                    }
                }
            }
        }
    }
    Ok((centres.iter().map(|&c| c as f32).collect(), shapes))
}

/// `n` centres on a regular lattice over kernel space with covariance `(spacing / 2)^2 I`.
fn regular_grid(d: usize, n: usize, axis_scale: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let per_axis = ((n as f64).powf(1.0 / d as f64).ceil() as usize).max(1);
    let spacing = 1.0 / per_axis as f64;
    let mut centres = Vec::with_capacity(n * d);
    for i in 0..n {
        let mut rest = i;
        for &scale in axis_scale.iter().take(d) {
            centres.push(((rest % per_axis) as f64 + 0.5) * spacing * scale as f64);
            rest /= per_axis;
        }
    }
    let mut cov = vec![0.0; n * d * d];
    for k in 0..n {
        for a in 0..d {
            cov[k * d * d + a * d + a] = (spacing / 2.0).powi(2);
        }
    }
    (centres, cov)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values against the formulas, and gradients with respect to the query point against
    /// central finite differences of those formulas (f64 on the host).
    #[test]
    fn kernel_values_and_gradients_match_formulas() {
        let device = Device::flex().autodiff();
        let r_host = [0.3f32, -0.2, 0.05, 0.1, -0.4, 0.25];
        for kind in [KernelKind::InverseQuadric, KernelKind::Gaussian, KernelKind::Tent] {
            for d in [2usize, 3] {
                let r_vals = &r_host[..d];
                let shape: Vec<f32> = match (kind, d) {
                    (KernelKind::Tent, _) => vec![1.7],
                    (_, 2) => vec![3.0, 0.8, 2.0],
                    _ => vec![3.0, 0.8, -0.5, 2.0, 0.3, 4.0],
                };
                let formula = |r: &[f64]| -> f64 {
                    match kind {
                        KernelKind::Tent => r.iter().map(|v| (1.0 - v.abs() * shape[0] as f64).clamp(0.0, 1.0)).product(),
                        _ => {
                            let mut q = 0.0;
                            let mut i = 0;
                            for a in 0..d {
                                for b in a..d {
                                    q += shape[i] as f64 * r[a] * r[b] * if a == b { 1.0 } else { 2.0 };
                                    i += 1;
                                }
                            }
                            if kind == KernelKind::Gaussian { (-0.5 * q).exp() } else { 1.0 / (1.0 + q) }
                        }
                    }
                };
                let r = Tensor::<3>::from_data(TensorData::new(r_vals.to_vec(), [1, 1, d]), &device).require_grad();
                let s = Tensor::<3>::from_data(TensorData::new(shape.clone(), [1, 1, shape.len()]), &device);
                let phi = kernel_values(kind, r.clone(), s);
                let value = phi.clone().into_data().try_to_vec::<f32>().unwrap()[0] as f64;
                let r64: Vec<f64> = r_vals.iter().map(|&v| v as f64).collect();
                assert!((value - formula(&r64)).abs() < 1e-6, "{kind:?} d={d}: {value} vs {}", formula(&r64));
                let grads = phi.sum().backward();
                let g: Vec<f32> = r.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
                for a in 0..d {
                    let h = 1e-5;
                    let (mut plus, mut minus) = (r64.clone(), r64.clone());
                    plus[a] += h;
                    minus[a] -= h;
                    let fd = (formula(&plus) - formula(&minus)) / (2.0 * h);
                    assert!((g[a] as f64 - fd).abs() < 1e-4, "{kind:?} d={d} axis {a}: {} vs {fd}", g[a]);
                }
            }
        }
    }

    /// The paper's rule on a 256x256 image at 72K: the grid (16^2 + 128^2 rows x 2) and decoder
    /// take 40,039, each kernel 32 + 2 + 3, so 863 kernels and 71,970 parameters in all, as the
    /// PyTorch reference counts them.
    #[test]
    fn kernel_count_follows_the_budget_rule() {
        let spec = FieldSpec { d_in: 2, d_out: 3, resolution: 256, shape: vec![256, 256], importance: None, cam_dims: 2, radiance: false };
        let mut options = NeuRbfConfig { finest_resolution: 128, ..Default::default() };
        assert_eq!(options.kernel_count(&spec).unwrap(), 863);
        let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(0);
        let (encoding, decoder) = options.build(&spec, &mut rng, &Device::flex()).unwrap();
        assert_eq!(encoding.num_params() + decoder.num_params(), 71_970);
        options.params = 30_000;
        assert!(options.kernel_count(&spec).unwrap_err().to_string().contains("no room for kernels"));
    }

    #[test]
    fn log_spaced_spans_the_range() {
        let m = log_spaced(0.125, 4096.0, 32);
        assert_eq!(m.len(), 32);
        assert!((m[0] - 0.125).abs() < 1e-6 && (m[31] - 4096.0).abs() < 1e-2);
        assert!((m[1] / m[0] - m[31] / m[30]).abs() < 1e-4, "constant ratio");
    }
}
