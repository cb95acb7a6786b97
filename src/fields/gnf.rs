//! Gaussian RBFNet / GNF (Bouzidi et al. 2025): a feature grid decoded by one layer of `N`
//! Gaussian neurons that live in feature space, then a linear output.
//!
//! `phi_i(F) = exp(-1/2 sum_c beta_ic (F_c - mu_ic)^2)` with learned centres `mu` and
//! log-parameterised widths `beta = exp(rho)`. The squared distance is expanded into three
//! matrix products, `F^2 beta^T - 2 F (beta mu)^T + sum_c beta mu^2`, so the layer costs
//! `O(B N C)` like a linear layer.
//!
//! Encoders (the released code's options): `dif-grid`, dense grids of a few channels each, each
//! level repeated `grid_tiles` times along each axis through a sawtooth of the coordinates, or an
//! instant-ngp hash grid. The released encoder repeats every level as many times as it has cells
//! per axis, which aliases like a hash; `grid_tiles = grid_resolutions` reproduces that.

use anyhow::{Result, bail};
use burn::module::{Module, Param};
use burn::tensor::activation::{sigmoid, softplus};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::grid::{GridLayout, GridLookup, level_resolutions, validate_grid};
use super::mlp::{Linear, uniform_tensor, uniform_values};
use super::radiance::RadianceConfig;
use super::radiance::sh_count;
use super::{Decoder, Encoding, FieldOptions, FieldSpec, OutputActivation, Outputs};
use crate::config::at_least_one;

/// GNF's grid encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GnfEncoder {
    /// Dense single-level grids of a few channels each (the released image encoder).
    #[serde(rename = "dif-grid")]
    DifGrid,
    /// One multi-level instant-ngp hash grid.
    #[serde(rename = "hashgrid")]
    HashGrid,
}

/// `model.kind = "gnf"`: GNF's released image setup, 64 neurons over a 6-level DiF-Grid (about
/// 106K parameters in 2-D), each level once over the domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GnfConfig {
    /// `sigmoid` | `none` (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_activation: Option<OutputActivation>,
    /// Gaussian neurons in feature space.
    pub neurons: usize,
    /// `dif-grid` | `hashgrid`.
    pub encoder: GnfEncoder,
    /// DiF-Grid: each level's cells per axis.
    pub grid_resolutions: Vec<usize>,
    /// DiF-Grid: each level's feature channels.
    pub grid_channels: Vec<usize>,
    /// DiF-Grid: how many times each level repeats along each axis (empty: once).
    pub grid_tiles: Vec<f64>,
    /// Hash-grid encoder: as the hash grid's keys; `finest_resolution = 0` is the target's side.
    pub levels: usize,
    pub features_per_level: usize,
    pub log2_table_size: u32,
    pub base_resolution: usize,
    pub finest_resolution: usize,
    /// Radiance fields: the SH degree of the colour (the other keys are unused by GNF's head).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radiance: Option<RadianceConfig>,
}

impl Default for GnfConfig {
    fn default() -> Self {
        Self {
            output_activation: None,
            neurons: 64,
            encoder: GnfEncoder::DifGrid,
            grid_resolutions: vec![32, 51, 70, 89, 108, 128],
            grid_channels: vec![4, 4, 4, 2, 2, 2],
            grid_tiles: vec![],
            levels: 16,
            features_per_level: 2,
            log2_table_size: 19,
            base_resolution: 16,
            finest_resolution: 0,
            radiance: None,
        }
    }
}

impl FieldOptions for GnfConfig {
    fn validate(&self, source: &str) -> Result<()> {
        at_least_one(source, &[("model.neurons", self.neurons)])?;
        validate_grid(source, self.levels, self.features_per_level, self.log2_table_size, self.base_resolution)?;
        self.radiance.as_ref().map_or(Ok(()), |r| r.validate(source))
    }

    fn learning_rates(&self) -> (f64, f64) {
        (1e-2, 1e-2)
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

    fn build(&self, spec: &FieldSpec, rng: &mut StdRng, device: &Device) -> Result<(Encoding, Decoder)> {
        let grids = GnfGrids::new(spec, self, rng, device)?;
        let decoder = if spec.radiance {
            let degree = self.radiance.as_ref().map_or(RadianceConfig::default().sh_degree, |r| r.sh_degree);
            Decoder::GaussianRadiance(GaussianShHead::new(grids.output_dim(), self.neurons, degree, rng, device))
        } else {
            Decoder::Gaussian(GaussianLayer::new(grids.output_dim(), self.neurons, spec.d_out, rng, device))
        };
        Ok((Encoding::Gnf(grids), decoder))
    }
}

/// GNF's encoding: one dense single-level grid per DiF-Grid level, or one multi-level hash grid.
/// Every grid's entries live in one table, so that one gather reads all of a point's features
/// and the optimiser updates them as one tensor.
#[derive(Module, Debug)]
pub struct GnfGrids {
    /// Each grid's `[rows, channels]` entries flattened and stacked, in rows as wide as the
    /// greatest common divisor of the grids' channel counts.
    pub table: Param<Tensor<2>>,
    pub grids: Vec<GnfGrid>,
}

/// One grid of [`GnfGrids`].
#[derive(Module, Debug)]
pub struct GnfGrid {
    pub layout: GridLayout,
    pub channels: usize,
    /// How many times it repeats along each axis (0: a hash grid, not tiled).
    pub tiles: f64,
    /// Its first row in the stacked table.
    pub first_row: usize,
}

/// One layer of Gaussian neurons in feature space, then a linear output.
#[derive(Module, Debug)]
pub struct GaussianLayer {
    /// `mu`: `[neurons, feature width]`.
    pub centres: Param<Tensor<2>>,
    /// `rho`: `[neurons, feature width]`, `beta = exp(rho)`.
    pub log_widths: Param<Tensor<2>>,
    pub output: Linear,
}

/// GNF's NeRF head: one Gaussian layer with `1 + 3 (L + 1)^2` outputs, the density
/// `25 softplus(out_0 - 10)` (TensoRF's shift and distance scale) and per colour channel the
/// coefficients of the view direction's harmonics up to degree L, through a sigmoid.
#[derive(Module, Debug)]
pub struct GaussianShHead {
    pub layer: GaussianLayer,
    pub sh_degree: usize,
}

impl GaussianShHead {
    pub fn new(width: usize, neurons: usize, sh_degree: usize, rng: &mut StdRng, device: &Device) -> Self {
        let coefficients = sh_count(sh_degree);
        Self { layer: GaussianLayer::new(width, neurons, 1 + 3 * coefficients, rng, device), sh_degree }
    }

    pub fn sh_degree(&self) -> usize {
        self.sh_degree
    }

    /// The density alone, `[N, 1]`.
    pub fn density(&self, features: Tensor<2>) -> Tensor<2> {
        softplus(self.layer.forward(features).narrow(1, 0, 1) - 10.0, 1.0) * 25.0
    }

    /// `[N, 4]`: density, then RGB, from the encoding's features and the harmonics `sh`.
    pub fn forward(&self, features: Tensor<2>, sh: Tensor<2>) -> Tensor<2> {
        let out = self.layer.forward(features);
        let [n, _] = out.dims();
        let k = sh_count(self.sh_degree);
        let density = softplus(out.clone().narrow(1, 0, 1) - 10.0, 1.0) * 25.0;
        let coefficients = out.narrow(1, 1, 3 * k).reshape([n, 3, k]);
        let rgb = sigmoid((coefficients * sh.unsqueeze_dim::<3>(1)).sum_dim(2).reshape([n, 3]));
        Tensor::cat(vec![density, rgb], 1)
    }
}

impl GnfGrids {
    pub fn new(spec: &FieldSpec, options: &GnfConfig, rng: &mut StdRng, device: &Device) -> Result<Self> {
        let d = spec.d_in;
        if !(2..=3).contains(&d) {
            bail!("GNF's grid encoders take 2-D or 3-D coordinates, not {d}-D");
        }
        // (layout, channels, tiles) per grid.
        let grids: Vec<(GridLayout, usize, f64)> = match options.encoder {
            GnfEncoder::DifGrid => {
                let levels = options.grid_resolutions.len();
                if options.grid_channels.len() != levels || levels == 0 {
                    bail!("model.grid_resolutions and model.grid_channels must be non-empty lists of the same length");
                }
                let tiles = if options.grid_tiles.is_empty() { vec![1.0; levels] } else { options.grid_tiles.clone() };
                if tiles.len() != levels || tiles.iter().any(|&t| !(t > 0.0 && t.is_finite())) {
                    bail!("model.grid_tiles must be empty or hold one positive number per level");
                }
                if options.grid_resolutions.iter().any(|&r| r < 2) {
                    bail!("model.grid_resolutions must all be at least 2");
                }
                if options.grid_channels.contains(&0) {
                    bail!("model.grid_channels must all be at least 1");
                }
                let grids = options.grid_resolutions.iter().zip(&options.grid_channels).zip(tiles);
                // A single level whose table holds every vertex (dense).
                grids
                    .map(|((&res, &channels), tiles)| {
                        let log2 = (res.pow(d as u32) as f64).log2().ceil() as u32;
                        (GridLayout::new(d, vec![res], log2.clamp(3, 24)), channels, tiles)
                    })
                    .collect()
            }
            GnfEncoder::HashGrid => {
                let finest = if options.finest_resolution == 0 { spec.resolution } else { options.finest_resolution };
                let resolutions = level_resolutions(options.levels, options.base_resolution, finest);
                vec![(GridLayout::new(d, resolutions, options.log2_table_size), options.features_per_level, 0.0)]
            }
        };
        // The widest rows that split every grid's channels evenly.
        let width = grids.iter().fold(0, |w, g| gcd(w, g.1));
        let mut values = Vec::new();
        let mut stacked = Vec::with_capacity(grids.len());
        for (layout, channels, tiles) in grids {
            let first_row = values.len() / width;
            // instant-ngp's initialisation: tiny uniform values, grid after grid.
            values.extend(uniform_values(layout.rows * channels, 1e-4, rng));
            stacked.push(GnfGrid { layout, channels, tiles, first_row });
        }
        let rows = values.len() / width;
        if rows > i32::MAX as usize {
            bail!("GNF's grids have {rows} table rows of {width} channels, more than the 2^31 a lookup can index; use fewer or smaller grids");
        }
        let table = Tensor::from_data(TensorData::new(values, [rows, width]), device);
        Ok(Self { table: Param::from_tensor(table), grids: stacked })
    }

    pub fn output_dim(&self) -> usize {
        self.grids.iter().map(|g| g.layout.resolutions.len() * g.channels).sum()
    }

    /// The stacked table's rows and weights for `x` in `[0, 1]^d`: per point, each grid's
    /// levels in turn, each level's channels in blocks of the table's width.
    pub fn lookup(&self, x: Tensor<2>) -> GridLookup {
        let n = x.dims()[0];
        let width = self.table.val().dims()[1];
        let (mut rows, mut weights) = (Vec::new(), Vec::new());
        let mut corners = 0;
        for grid in &self.grids {
            let lookup = grid.layout.lookup(grid.tiled(x.clone()));
            let (levels, blocks) = (grid.layout.resolutions.len(), grid.channels / width);
            corners = lookup.corners;
            // Block b of the vertex in row r of this grid's own table: row
            // `first_row + r * blocks + b` of the stacked one.
            let mut r = lookup.rows.reshape([n, levels, 1, corners]) * blocks as i32 + grid.first_row as i32;
            let mut w = lookup.weight.reshape([n, levels, 1, corners]);
            if blocks > 1 {
                let block = Tensor::<1, Int>::arange(0..blocks as i64, &x.device()).reshape([1, 1, blocks, 1]);
                r = r.repeat_dim(2, blocks) + block;
                w = w.repeat_dim(2, blocks);
            }
            rows.push(r.reshape([n, levels * blocks, corners]));
            weights.push(w.reshape([n, levels * blocks, corners]));
        }
        let (rows, weights) = (Tensor::cat(rows, 1), Tensor::cat(weights, 1));
        let reads = rows.dims()[1];
        GridLookup { rows: rows.reshape([n * reads * corners]), weight: weights.reshape([n, reads, corners, 1]), points: n, corners }
    }

    /// The grids' features, side by side, `[N, output_dim]`.
    pub fn features(&self, lookup: &GridLookup) -> Tensor<2> {
        lookup.gather(self.table.val())
    }
}

impl GnfGrid {
    /// Where `x` in `[0, 1]^d` reads this grid, in the grid's own `[0, 1]^d`.
    fn tiled(&self, x: Tensor<2>) -> Tensor<2> {
        if self.tiles == 0.0 {
            return x;
        }
        // The sawtooth tiling, then grid_sample's sampling (cell centres, border clamp)
        // written as a lookup into a corner-aligned grid.
        let res = self.layout.resolutions[0] as f64;
        let t = if self.tiles == 1.0 {
            x
        } else {
            let scaled = x * self.tiles;
            scaled.clone() - scaled.floor()
        };
        let pos = (t * res - 0.5).clamp(0.0, res - 1.0);
        pos / (res - 1.0)
    }
}

/// Greatest common divisor (`gcd(0, b) = b`).
pub fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl GaussianLayer {
    pub fn new(width: usize, neurons: usize, d_out: usize, rng: &mut StdRng, device: &Device) -> Self {
        let centres = uniform_tensor([neurons, width], 1e-4, rng, device);
        let log_widths = Tensor::zeros([neurons, width], device);
        let output = Linear::torch_default(neurons, d_out, rng, device);
        Self { centres: Param::from_tensor(centres), log_widths: Param::from_tensor(log_widths), output }
    }

    pub fn forward(&self, f: Tensor<2>) -> Tensor<2> {
        let beta = self.log_widths.val().exp(); // [N, C]
        let mu = self.centres.val();
        let beta_mu = beta.clone() * mu.clone();
        let constant = (beta_mu.clone() * mu).sum_dim(1).transpose(); // [1, N]
        let distance = f.clone().square().matmul(beta.transpose()) - f.matmul(beta_mu.transpose()) * 2.0 + constant;
        self.output.forward((distance * -0.5).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The stacked table's one gather gives every grid's bilinear interpolation, channel by
    /// channel, as each grid would on its own table: grids of 4, 2 and 6 channels (rows of 2,
    /// so 2, 1 and 3 blocks per vertex), one of them tiled.
    #[test]
    fn stacked_grids_interpolate_each_grid() {
        let device = Device::flex();
        let mut rng = StdRng::seed_from_u64(5);
        let spec = FieldSpec { d_in: 2, d_out: 1, resolution: 16, shape: vec![16, 16], importance: None, cam_dims: 2, radiance: false };
        let options =
            GnfConfig { grid_resolutions: vec![5, 7, 4], grid_channels: vec![4, 2, 6], grid_tiles: vec![1.0, 2.5, 1.0], ..Default::default() };
        let mut grids = GnfGrids::new(&spec, &options, &mut rng, &device).unwrap();
        assert_eq!(grids.table.val().dims(), [(25 * 4 + 49 * 2 + 16 * 6) / 2, 2]);
        grids.table = Param::from_tensor(uniform_tensor(grids.table.val().dims(), 1.0, &mut rng, &device));
        let table: Vec<f32> = grids.table.val().into_data().try_to_vec::<f32>().unwrap();
        let n = 9;
        let x = uniform_tensor([n, 2], 0.5, &mut rng, &device) + 0.5;
        let got: Vec<f32> = grids.features(&grids.lookup(x.clone())).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(got.len(), n * 12);
        let mut column = 0;
        for grid in &grids.grids {
            let (res, c) = (grid.layout.resolutions[0], grid.channels);
            let own = &table[grid.first_row * 2..][..res * res * c];
            let u: Vec<f32> = grid.tiled(x.clone()).into_data().try_to_vec::<f32>().unwrap();
            for p in 0..n {
                let scale = (res - 1) as f32;
                let (px, py) = (u[2 * p] * scale, u[2 * p + 1] * scale);
                let (cx, cy) = (px.floor().min(scale - 1.0), py.floor().min(scale - 1.0));
                let (fx, fy) = (px - cx, py - cy);
                let at = |x: f32, y: f32, ch: usize| own[(x as usize + res * y as usize) * c + ch];
                for ch in 0..c {
                    let want = at(cx, cy, ch) * (1.0 - fx) * (1.0 - fy)
                        + at(cx + 1.0, cy, ch) * fx * (1.0 - fy)
                        + at(cx, cy + 1.0, ch) * (1.0 - fx) * fy
                        + at(cx + 1.0, cy + 1.0, ch) * fx * fy;
                    let g = got[p * 12 + column + ch];
                    assert!((g - want).abs() < 1e-5, "grid at column {column}, point {p}, channel {ch}: {g} vs {want}");
                }
            }
            column += c;
        }
    }

    /// The three-GEMM distance equals the direct sum over feature channels.
    #[test]
    fn expanded_distance_matches_direct_sum() {
        let device = Device::flex();
        let mut rng = StdRng::seed_from_u64(2);
        let spec = FieldSpec { d_in: 2, d_out: 1, resolution: 16, shape: vec![16, 16], importance: None, cam_dims: 2, radiance: false };
        let options =
            GnfConfig { neurons: 5, grid_resolutions: vec![4, 6], grid_channels: vec![2, 1], grid_tiles: vec![1.0, 3.0], ..Default::default() };
        let mut grids = GnfGrids::new(&spec, &options, &mut rng, &device).unwrap();
        let mut layer = GaussianLayer::new(grids.output_dim(), 5, 1, &mut rng, &device);
        // Spread the centres and widths so the test is not trivially exp(0).
        layer.centres = Param::from_tensor(uniform_tensor([5, 3], 0.5, &mut rng, &device));
        layer.log_widths = Param::from_tensor(uniform_tensor([5, 3], 1.0, &mut rng, &device));
        grids.table = Param::from_tensor(uniform_tensor(grids.table.val().dims(), 0.5, &mut rng, &device));
        let x = uniform_tensor([7, 2], 0.5, &mut rng, &device) + 0.5;
        let features = grids.features(&grids.lookup(x));
        let got: Vec<f32> = layer.forward(features.clone()).into_data().try_to_vec::<f32>().unwrap();
        let f: Vec<f32> = features.into_data().try_to_vec::<f32>().unwrap();
        let host = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let (mu, rho) = (host(layer.centres.val()), host(layer.log_widths.val()));
        let (w, b) = (host(layer.output.weight.val()), host(layer.output.bias.val()));
        for p in 0..7 {
            let mut out = b[0] as f64;
            for i in 0..5 {
                let dist: f64 = (0..3).map(|c| (rho[i * 3 + c] as f64).exp() * (f[p * 3 + c] as f64 - mu[i * 3 + c] as f64).powi(2)).sum();
                out += w[i] as f64 * (-0.5 * dist).exp();
            }
            assert!((got[p] as f64 - out).abs() < 1e-5, "point {p}: {} vs {out}", got[p]);
        }
    }
}
