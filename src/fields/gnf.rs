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
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;

use super::FieldSpec;
use super::grid::{GridLookup, HashGrid};
use super::mlp::{Linear, uniform_tensor};

#[derive(Debug, Clone)]
pub struct GnfOptions {
    pub neurons: usize,
    /// `dif-grid` or `hashgrid`.
    pub encoder: String,
    /// DiF-Grid: cells per axis and channels of each level.
    pub grid_resolutions: Vec<usize>,
    pub grid_channels: Vec<usize>,
    /// DiF-Grid: how many times each level repeats along each axis; empty means once.
    pub grid_tiles: Vec<f64>,
    /// Hash-grid encoder.
    pub levels: usize,
    pub features_per_level: usize,
    pub log2_table_size: u32,
    pub base_resolution: usize,
    pub finest_resolution: usize,
}

#[derive(Module, Debug)]
pub struct Gnf {
    /// One dense single-level grid per DiF-Grid level, or one multi-level hash grid.
    pub encoder: Vec<HashGrid>,
    /// `mu`: `[neurons, feature width]`.
    pub centres: Param<Tensor<2>>,
    /// `rho`: `[neurons, feature width]`, `beta = exp(rho)`.
    pub log_widths: Param<Tensor<2>>,
    pub output: Linear,
    /// Per encoder grid: how many times it repeats along each axis (0: a hash grid, not tiled).
    pub tiles: Vec<f64>,
}

impl Gnf {
    pub fn new(spec: &FieldSpec, options: &GnfOptions, rng: &mut StdRng, device: &Device) -> Result<Self> {
        let d = spec.d_in;
        if !(2..=3).contains(&d) {
            bail!("GNF's grid encoders take 2-D or 3-D coordinates, not {d}-D");
        }
        let (encoder, tiles): (Vec<HashGrid>, Vec<f64>) = match options.encoder.as_str() {
            "dif-grid" => {
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
                let grids = options
                    .grid_resolutions
                    .iter()
                    .zip(&options.grid_channels)
                    .map(|(&res, &channels)| {
                        // A single level whose table holds every vertex (dense).
                        let log2 = (res.pow(d as u32) as f64).log2().ceil() as u32;
                        HashGrid::new(d, 1, channels, log2.clamp(3, 24), res, res, rng, device)
                    })
                    .collect();
                (grids, tiles)
            }
            "hashgrid" => {
                let finest = if options.finest_resolution == 0 { spec.resolution } else { options.finest_resolution };
                let grid = HashGrid::new(d, options.levels, options.features_per_level, options.log2_table_size, options.base_resolution, finest, rng, device);
                (vec![grid], vec![0.0])
            }
            other => bail!("model.encoder = \"{other}\" is not one of \"dif-grid\", \"hashgrid\""),
        };
        let width: usize = encoder.iter().map(HashGrid::output_dim).sum();
        let centres = uniform_tensor([options.neurons, width], 1e-4, rng, device);
        let log_widths = Tensor::zeros([options.neurons, width], device);
        let output = Linear::torch_default(options.neurons, spec.d_out, rng, device);
        Ok(Self { encoder, centres: Param::from_tensor(centres), log_widths: Param::from_tensor(log_widths), output, tiles })
    }

    /// Grid lookups for `x` in `[0, 1]^d`, one per encoder grid.
    pub fn lookups(&self, x: Tensor<2>) -> Vec<GridLookup> {
        self.encoder
            .iter()
            .zip(&self.tiles)
            .map(|(grid, &tiles)| {
                if tiles == 0.0 {
                    return grid.lookup(x.clone());
                }
                // The sawtooth tiling, then grid_sample's sampling (cell centres, border clamp)
                // written as a lookup into a corner-aligned grid.
                let res = grid.resolutions[0] as f64;
                let t = if tiles == 1.0 {
                    x.clone()
                } else {
                    let scaled = x.clone() * tiles;
                    scaled.clone() - scaled.floor()
                };
                let pos = (t * res - 0.5).clamp(0.0, res - 1.0);
                grid.lookup(pos / (res - 1.0))
            })
            .collect()
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward_lookups(&self.lookups(x))
    }

    pub fn forward_lookups(&self, lookups: &[GridLookup]) -> Tensor<2> {
        let features: Vec<Tensor<2>> = self.encoder.iter().zip(lookups).map(|(g, l)| g.interpolate(l)).collect();
        let f = Tensor::cat(features, 1); // [B, C]
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

    /// The three-GEMM distance equals the direct sum over feature channels.
    #[test]
    fn expanded_distance_matches_direct_sum() {
        let device = Device::flex();
        let mut rng = StdRng::seed_from_u64(2);
        let spec = FieldSpec { d_in: 2, d_out: 1, resolution: 16, shape: vec![16, 16], importance: None, cam_dims: 2 };
        let options = GnfOptions {
            neurons: 5,
            encoder: "dif-grid".into(),
            grid_resolutions: vec![4, 6],
            grid_channels: vec![2, 1],
            grid_tiles: vec![1.0, 3.0],
            levels: 0,
            features_per_level: 0,
            log2_table_size: 0,
            base_resolution: 0,
            finest_resolution: 0,
        };
        let mut gnf = Gnf::new(&spec, &options, &mut rng, &device).unwrap();
        // Spread the centres and widths so the test is not trivially exp(0).
        gnf.centres = Param::from_tensor(uniform_tensor([5, 3], 0.5, &mut rng, &device));
        gnf.log_widths = Param::from_tensor(uniform_tensor([5, 3], 1.0, &mut rng, &device));
        gnf.encoder.iter_mut().for_each(|g| g.table = Param::from_tensor(uniform_tensor(g.table.val().dims(), 0.5, &mut rng, &device)));
        let x = uniform_tensor([7, 2], 0.5, &mut rng, &device) + 0.5;
        let got: Vec<f32> = gnf.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();

        let lookups = gnf.lookups(x);
        let f: Vec<f32> = Tensor::cat(gnf.encoder.iter().zip(&lookups).map(|(g, l)| g.interpolate(l)).collect(), 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let host = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let (mu, rho) = (host(gnf.centres.val()), host(gnf.log_widths.val()));
        let (w, b) = (host(gnf.output.weight.val()), host(gnf.output.bias.val().unsqueeze::<2>()));
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
