//! Linear layers and the ReLU MLP decoder, initialised on the host from a seeded RNG so that the
//! same seed gives the same network on every device.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData, activation::relu};
use rand::{RngExt, rngs::StdRng};

use super::cam::{Modulation, modulate};

/// `y = x W + b` with `W: [in, out]`.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<2>>,
}

impl Linear {
    /// Weights uniform in ±`weight_bound`, biases uniform in ±`bias_bound`.
    pub fn uniform(d_in: usize, d_out: usize, weight_bound: f64, bias_bound: f64, rng: &mut StdRng, device: &Device) -> Self {
        let weight = uniform_tensor([d_in, d_out], weight_bound, rng, device);
        let bias = uniform_tensor([1, d_out], bias_bound, rng, device);
        Self { weight: Param::from_tensor(weight), bias: Param::from_tensor(bias) }
    }

    /// PyTorch's default `nn.Linear` initialisation: both bounds 1/sqrt(fan_in).
    pub fn torch_default(d_in: usize, d_out: usize, rng: &mut StdRng, device: &Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        Self::uniform(d_in, d_out, bound, bound, rng, device)
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.val()) + self.bias.val()
    }

    pub fn d_out(&self) -> usize {
        self.bias.val().dims()[1]
    }
}

/// `hidden_layers` ReLU layers of `width`, then a linear output layer.
#[derive(Module, Debug)]
pub struct ReluMlp {
    pub hidden: Vec<Linear>,
    pub output: Linear,
}

impl ReluMlp {
    pub fn new(d_in: usize, width: usize, hidden_layers: usize, d_out: usize, rng: &mut StdRng, device: &Device) -> Self {
        let mut hidden = Vec::with_capacity(hidden_layers);
        let mut d = d_in;
        for _ in 0..hidden_layers {
            hidden.push(Linear::torch_default(d, width, rng, device));
            d = width;
        }
        let output = Linear::torch_default(d, d_out, rng, device);
        Self { hidden, output }
    }

    /// `modulation`: CAM's scale and shift, applied before each hidden layer's ReLU.
    pub fn forward(&self, mut x: Tensor<2>, modulation: Option<&Modulation>) -> Tensor<2> {
        for (i, layer) in self.hidden.iter().enumerate() {
            x = relu(modulate(modulation, i, layer.forward(x)));
        }
        self.output.forward(x)
    }
}

pub fn uniform_tensor<const D: usize>(shape: [usize; D], bound: f64, rng: &mut StdRng, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(uniform_values(shape.iter().product(), bound, rng), shape), device)
}

/// `n` values uniform in ±`bound`.
pub fn uniform_values(n: usize, bound: f64, rng: &mut StdRng) -> Vec<f32> {
    (0..n).map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32).collect()
}

/// Standard normal samples (Box-Muller), scaled by `std`.
pub fn normal_tensor<const D: usize>(shape: [usize; D], std: f64, rng: &mut StdRng, device: &Device) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
            let u2: f64 = rng.random::<f64>();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * std) as f32
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}
