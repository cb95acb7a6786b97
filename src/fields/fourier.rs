//! Fourier-feature MLP (Tancik et al. 2020): `[sin, cos](2π x B)` with `B ~ N(0, σ²)`, then a ReLU MLP.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;

use super::cam::Modulation;
use super::mlp::{ReluMlp, normal_tensor};
use crate::kernels::sine::sin;

#[derive(Module, Debug)]
pub struct FourierField {
    /// Random frequencies `[d_in, frequencies]`; fixed, but saved with the model.
    pub frequencies: Param<Tensor<2>>,
    pub mlp: ReluMlp,
}

impl FourierField {
    pub fn new(d_in: usize, d_out: usize, sigma: f64, frequencies: usize, width: usize, hidden_layers: usize, rng: &mut StdRng, device: &Device) -> Self {
        let b = normal_tensor([d_in, frequencies], sigma, rng, device);
        let mlp = ReluMlp::new(2 * frequencies, width, hidden_layers, d_out, rng, device);
        Self { frequencies: Param::from_tensor(b).set_require_grad(false), mlp }
    }

    /// The encoding alone, `[N, 2 * frequencies]`; `x` in `[0, 1]^d`.
    pub fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        let proj = x.matmul(self.frequencies.val()) * std::f64::consts::TAU;
        // cos p = sin(p + π/2): one sine over both halves.
        sin(Tensor::cat(vec![proj.clone(), proj + std::f64::consts::FRAC_PI_2], 1))
    }

    pub fn forward(&self, x: Tensor<2>, modulation: Option<&Modulation>) -> Tensor<2> {
        self.mlp.forward(self.encode(x), modulation)
    }
}
