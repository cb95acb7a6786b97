//! Radiance heads: what a position encoding is decoded into when the task renders volumes.
//!
//! instant-ngp's NeRF network (Müller et al. 2022): a density MLP over the encoding whose first
//! output is the log-density (`trunc_exp` keeps its gradient finite) and whose outputs, beside the
//! view direction's real spherical harmonics, feed a colour MLP with a sigmoid. GNF's head (one
//! Gaussian layer whose outputs are a density and SH coefficients of the colour) is in `gnf.rs`.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData, activation::sigmoid};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::cam::Modulation;
use super::mlp::ReluMlp;

/// `[model.radiance]`: the heads of a radiance field (instant-ngp's NeRF setup by default).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RadianceConfig {
    /// Outputs of the density MLP: the log-density, then features for the colour MLP.
    pub geo_features: usize,
    /// Hidden ReLU layers of the colour MLP, each `colour_width` wide.
    pub colour_layers: usize,
    pub colour_width: usize,
    /// The view direction's spherical harmonics up to this degree: `(degree + 1)^2` values.
    pub sh_degree: usize,
}

impl Default for RadianceConfig {
    fn default() -> Self {
        Self { geo_features: 16, colour_layers: 2, colour_width: 64, sh_degree: 3 }
    }
}

impl RadianceConfig {
    pub fn validate(&self, source: &str) -> anyhow::Result<()> {
        crate::config::at_least_one(
            source,
            &[("model.radiance.geo_features", self.geo_features), ("model.radiance.colour_width", self.colour_width)],
        )?;
        if self.sh_degree > 3 {
            anyhow::bail!("{source}: model.radiance.sh_degree must be between 0 and 3 (16 coefficients)");
        }
        Ok(())
    }
}

/// Density MLP and colour MLP. Outputs `[N, 4]`: density (per unit length), then RGB in [0, 1].
#[derive(Module, Debug)]
pub struct RadianceMlp {
    pub density: ReluMlp,
    pub colour: ReluMlp,
    pub sh_degree: usize,
}

impl RadianceMlp {
    /// `hidden_layers` x `width` for the density MLP (the model's MLP keys), the rest from `heads`.
    pub fn new(d_in: usize, width: usize, hidden_layers: usize, heads: &RadianceConfig, rng: &mut StdRng, device: &Device) -> Self {
        let density = ReluMlp::new(d_in, width, hidden_layers, heads.geo_features, rng, device);
        let sh = sh_count(heads.sh_degree);
        let colour = ReluMlp::new(heads.geo_features + sh, heads.colour_width, heads.colour_layers, 3, rng, device);
        Self { density, colour, sh_degree: heads.sh_degree }
    }

    pub fn sh_degree(&self) -> usize {
        self.sh_degree
    }

    /// `sh`: the view directions' harmonics `[N, (degree + 1)^2]`. CAM, if any, modulates the
    /// colour MLP by the view direction: the density stays a function of the point alone, which
    /// the occupancy grid and meshing need (CAM's mip-NeRF modulates a trunk that outputs both).
    pub fn forward(&self, features: Tensor<2>, sh: Tensor<2>, modulation: Option<&Modulation>) -> Tensor<2> {
        let h = self.density.forward(features, None);
        let density = trunc_exp(h.clone().narrow(1, 0, 1));
        let rgb = sigmoid(self.colour.forward(Tensor::cat(vec![h, sh], 1), modulation));
        Tensor::cat(vec![density, rgb], 1)
    }

    /// The density alone, `[N, 1]`.
    pub fn density(&self, features: Tensor<2>) -> Tensor<2> {
        trunc_exp(self.density.forward(features, None).narrow(1, 0, 1))
    }
}

/// `exp(x)` whose gradient is `exp(clamp(x, -15, 15))` (instant-ngp's truncated exponential), so
/// a large log-density cannot blow up the step.
pub fn trunc_exp(x: Tensor<2>) -> Tensor<2> {
    let slope = x.clone().clamp(-15.0, 15.0).exp().detach();
    x.clone().exp().detach() + (x.clone() - x.detach()) * slope
}

/// Values of the real spherical harmonics up to `degree`.
pub fn sh_count(degree: usize) -> usize {
    (degree + 1) * (degree + 1)
}

/// Real spherical harmonics of unit directions (flat `[N, 3]`) up to `degree` <= 3, in
/// instant-ngp's order and signs; a zero direction gives only the constant term.
pub fn sh_basis(dirs: &[f32], degree: usize) -> Vec<f32> {
    let n = sh_count(degree);
    let mut out = Vec::with_capacity(dirs.len() / 3 * n);
    for d in dirs.chunks_exact(3) {
        let (x, y, z) = (d[0], d[1], d[2]);
        let (xx, yy, zz) = (x * x, y * y, z * z);
        let all = [
            0.282_094_8,
            -0.488_602_5 * y,
            0.488_602_5 * z,
            -0.488_602_5 * x,
            1.092_548_4 * x * y,
            -1.092_548_4 * y * z,
            0.946_174_7 * zz - 0.315_391_6,
            -1.092_548_4 * x * z,
            0.546_274_2 * (xx - yy),
            0.590_043_6 * y * (3.0 * xx - yy),
            2.890_611_4 * x * y * z,
            0.457_045_8 * y * (1.0 - 5.0 * zz),
            0.373_176_3 * z * (5.0 * zz - 3.0),
            0.457_045_8 * x * (1.0 - 5.0 * zz),
            1.445_305_7 * z * (xx - yy),
            0.590_043_6 * x * (xx - 3.0 * yy),
        ];
        out.extend_from_slice(&all[..n]);
    }
    out
}

/// `sh_basis` as a tensor `[N, (degree + 1)^2]`.
pub fn sh_tensor(dirs: &[f32], degree: usize, device: &Device) -> Tensor<2> {
    let n = dirs.len() / 3;
    Tensor::from_data(TensorData::new(sh_basis(dirs, degree), [n, sh_count(degree)]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harmonics are orthonormal on the sphere: a Monte-Carlo integral of products over
    /// uniform directions gives the identity (times 4π).
    #[test]
    fn harmonics_are_orthonormal() {
        use rand::{RngExt, SeedableRng};
        let mut rng = StdRng::seed_from_u64(1);
        let n = 200_000;
        let mut dirs = Vec::with_capacity(3 * n);
        while dirs.len() < 3 * n {
            let v: [f32; 3] = [0; 3].map(|_| rng.random::<f32>() * 2.0 - 1.0);
            let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
            if r > 1e-3 && r <= 1.0 {
                dirs.extend(v.map(|c| c / r));
            }
        }
        let sh = sh_basis(&dirs, 3);
        for a in 0..16 {
            for b in 0..16 {
                let mean: f64 = sh.chunks(16).map(|s| s[a] as f64 * s[b] as f64).sum::<f64>() / n as f64;
                let want = if a == b { 1.0 / (4.0 * std::f64::consts::PI) } else { 0.0 };
                assert!((mean - want).abs() < 2e-3, "<Y{a}, Y{b}> = {mean}, want {want}");
            }
        }
        assert_eq!(sh_basis(&[0.0, 0.0, 0.0], 1), vec![0.282_094_8, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn trunc_exp_is_exp_with_a_bounded_slope() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::from_data(TensorData::new(vec![-20.0f32, 0.5, 3.0, 20.0], [4, 1]), &device).require_grad();
        let y = trunc_exp(x.clone());
        let values: Vec<f32> = y.clone().into_data().try_to_vec().unwrap();
        for (v, x) in values.iter().zip([-20.0f32, 0.5, 3.0, 20.0]) {
            assert!((v / x.exp() - 1.0).abs() < 1e-6, "{v} vs exp({x})");
        }
        let grads = y.sum().backward();
        let g: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        let want = [(-15.0f32).exp(), 0.5f32.exp(), 3.0f32.exp(), 15.0f32.exp()];
        for (g, w) in g.iter().zip(want) {
            assert!((g / w - 1.0).abs() < 1e-5, "{g} vs {w}");
        }
    }
}
