//! SIREN (Sitzmann et al. 2020): sine layers `sin(ω (x W + b))` on coordinates in [-1, 1], with the
//! paper's initialisation (first layer U(±1/fan_in), later layers U(±sqrt(6/fan_in)/ω)).

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;

use super::cam::{Modulation, modulate};
use super::mlp::Linear;
use crate::kernels::sine::sin;

#[derive(Module, Debug)]
pub struct Siren {
    pub first: Linear,
    pub hidden: Vec<Linear>,
    pub output: Linear,
    pub omega0: f64,
    pub hidden_omega: f64,
}

impl Siren {
    pub fn new(d_in: usize, d_out: usize, width: usize, hidden_layers: usize, omega0: f64, hidden_omega: f64, rng: &mut StdRng, device: &Device) -> Self {
        let bias = |fan_in: usize| 1.0 / (fan_in as f64).sqrt();
        let first = Linear::uniform(d_in, width, 1.0 / d_in as f64, bias(d_in), rng, device);
        let later_bound = (6.0 / width as f64).sqrt() / hidden_omega;
        // `hidden_layers` counts every sine layer, the first one included.
        let hidden = (0..hidden_layers.saturating_sub(1))
            .map(|_| Linear::uniform(width, width, later_bound, bias(width), rng, device))
            .collect();
        let output = Linear::uniform(width, d_out, later_bound, bias(width), rng, device);
        Self { first, hidden, output, omega0, hidden_omega }
    }

    /// `x` in `[0, 1]^d`, mapped to SIREN's `[-1, 1]^d`. CAM modulates `ω (W h + b)`, whose
    /// spread SIREN's initialisation already sets near 1, so normalising it keeps that spread.
    pub fn forward(&self, x: Tensor<2>, modulation: Option<&Modulation>) -> Tensor<2> {
        let x = x * 2.0 - 1.0;
        let mut h = sin(modulate(modulation, 0, self.first.forward(x) * self.omega0));
        for (i, layer) in self.hidden.iter().enumerate() {
            h = sin(modulate(modulation, i + 1, layer.forward(h) * self.hidden_omega));
        }
        self.output.forward(h)
    }
}
