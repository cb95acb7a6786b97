//! Fourier-feature MLP (Tancik et al. 2020): `[sin, cos](2π x B)` with `B ~ N(0, σ²)`, then a ReLU MLP.

use anyhow::Result;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::cam::CamConfig;
use super::mlp::{ReluMlp, normal_tensor};
use super::radiance::RadianceConfig;
use super::{Decoder, Encoding, FieldOptions, FieldSpec, OutputActivation, Outputs, radiance_heads};
use crate::config::{at_least_one, positive};
use crate::kernels::sine::sin;

/// `model.kind = "ffn"`: the paper's image setup (σ 10, 256 frequencies, 3 ReLU layers of 256).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FfnConfig {
    /// ReLU layers, each `width` wide; the linear output layer comes after them.
    pub hidden_layers: usize,
    pub width: usize,
    /// `sigmoid` | `none`; unset: `sigmoid`, or `none` where outputs are unbounded (SDFs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_activation: Option<OutputActivation>,
    /// Standard deviation of the frequencies, for coordinates in `[0, 1]`.
    pub sigma: f64,
    pub frequencies: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cam: Option<CamConfig>,
    /// Radiance fields: the heads after the density MLP (filled in for `task.kind = "nerf"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radiance: Option<RadianceConfig>,
}

impl Default for FfnConfig {
    fn default() -> Self {
        Self { hidden_layers: 3, width: 256, output_activation: None, sigma: 10.0, frequencies: 256, cam: None, radiance: None }
    }
}

impl FieldOptions for FfnConfig {
    fn validate(&self, source: &str) -> Result<()> {
        at_least_one(source, &[("model.hidden_layers", self.hidden_layers), ("model.width", self.width), ("model.frequencies", self.frequencies)])?;
        positive(source, &[("model.sigma", self.sigma)])?;
        self.radiance.as_ref().map_or(Ok(()), |r| r.validate(source))
    }

    fn learning_rates(&self) -> (f64, f64) {
        (1e-3, 1e-2)
    }

    fn resolve(&mut self, outputs: Outputs) {
        let default = if outputs == Outputs::Bounded { OutputActivation::Sigmoid } else { OutputActivation::None };
        self.output_activation.get_or_insert(default);
        if outputs == Outputs::Radiance {
            self.radiance.get_or_insert_with(RadianceConfig::default);
        }
    }

    fn output_activation(&self) -> OutputActivation {
        self.output_activation.unwrap_or(OutputActivation::Sigmoid)
    }

    fn cam(&self) -> Option<&CamConfig> {
        self.cam.as_ref()
    }

    fn hidden_layers(&self) -> usize {
        self.radiance.as_ref().map_or(self.hidden_layers, |r| r.colour_layers)
    }

    fn build(&self, spec: &FieldSpec, rng: &mut StdRng, device: &Device) -> Result<(Encoding, Decoder)> {
        let encoding = FourierFeatures::new(spec.d_in, self.sigma, self.frequencies, rng, device);
        let d = encoding.output_dim();
        let decoder = if spec.radiance {
            radiance_heads(d, self.width, self.hidden_layers, self.radiance.as_ref(), rng, device)
        } else {
            Decoder::Relu(ReluMlp::new(d, self.width, self.hidden_layers, spec.d_out, rng, device))
        };
        Ok((Encoding::Fourier(encoding), decoder))
    }
}

#[derive(Module, Debug)]
pub struct FourierFeatures {
    /// Random frequencies `[d_in, frequencies]`; fixed, but saved with the model.
    pub frequencies: Param<Tensor<2>>,
}

impl FourierFeatures {
    pub fn new(d_in: usize, sigma: f64, frequencies: usize, rng: &mut StdRng, device: &Device) -> Self {
        let b = normal_tensor([d_in, frequencies], sigma, rng, device);
        Self { frequencies: Param::from_tensor(b).set_require_grad(false) }
    }

    pub fn output_dim(&self) -> usize {
        2 * self.frequencies.val().dims()[1]
    }

    /// The encoding `[N, 2 * frequencies]` of `x` in `[0, 1]^d`.
    pub fn encode(&self, x: Tensor<2>) -> Tensor<2> {
        let proj = x.matmul(self.frequencies.val()) * std::f64::consts::TAU;
        // cos p = sin(p + π/2): one sine over both halves.
        sin(Tensor::cat(vec![proj.clone(), proj + std::f64::consts::FRAC_PI_2], 1))
    }
}
