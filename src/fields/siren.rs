//! SIREN (Sitzmann et al. 2020): sine layers `sin(ω (x W + b))` on coordinates in [-1, 1], with the
//! paper's initialisation (first layer U(±1/fan_in), later layers U(±sqrt(6/fan_in)/ω)). It has
//! no encoding: the decoder reads the coordinates themselves.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::cam::{CamConfig, Modulation, modulate};
use super::mlp::Linear;
use super::{Coordinates, Decoder, Encoding, FieldOptions, FieldSpec, OutputActivation, Outputs};
use crate::config::{at_least_one, positive};
use crate::kernels::sine::sin;

/// `model.kind = "siren"`: the first sine layer plus 3 hidden ones of 256, ω0 = 30, as in
/// SIREN's image fits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SirenConfig {
    /// Sine layers, the first one included, each `width` wide; a linear output layer follows.
    pub hidden_layers: usize,
    pub width: usize,
    /// `sigmoid` | `none` (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_activation: Option<OutputActivation>,
    /// ω of the first layer.
    pub omega0: f64,
    /// ω of the later layers.
    pub hidden_omega: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cam: Option<CamConfig>,
}

impl Default for SirenConfig {
    fn default() -> Self {
        Self { hidden_layers: 4, width: 256, output_activation: None, omega0: 30.0, hidden_omega: 30.0, cam: None }
    }
}

impl FieldOptions for SirenConfig {
    fn validate(&self, source: &str) -> Result<()> {
        at_least_one(source, &[("model.hidden_layers", self.hidden_layers), ("model.width", self.width)])?;
        positive(source, &[("model.omega0", self.omega0), ("model.hidden_omega", self.hidden_omega)])
    }

    fn learning_rates(&self) -> (f64, f64) {
        (1e-4, 1e-2)
    }

    fn resolve(&mut self, _outputs: Outputs) {
        self.output_activation.get_or_insert(OutputActivation::None);
    }

    fn output_activation(&self) -> OutputActivation {
        self.output_activation.unwrap_or(OutputActivation::None)
    }

    fn cam(&self) -> Option<&CamConfig> {
        self.cam.as_ref()
    }

    fn hidden_layers(&self) -> usize {
        self.hidden_layers
    }

    fn build(&self, spec: &FieldSpec, rng: &mut StdRng, device: &Device) -> Result<(Encoding, Decoder)> {
        if spec.radiance {
            anyhow::bail!("model.kind = \"siren\" has no radiance head; radiance fields take hashgrid, neurbf, gnf or ffn");
        }
        let mlp = SineMlp::new(spec.d_in, spec.d_out, self.width, self.hidden_layers, self.omega0, self.hidden_omega, rng, device);
        Ok((Encoding::Coordinates(Coordinates { dims: spec.d_in }), Decoder::Sine(mlp)))
    }
}

#[derive(Module, Debug)]
pub struct SineMlp {
    pub first: Linear,
    pub hidden: Vec<Linear>,
    pub output: Linear,
    pub omega0: f64,
    pub hidden_omega: f64,
}

impl SineMlp {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d_in: usize,
        d_out: usize,
        width: usize,
        hidden_layers: usize,
        omega0: f64,
        hidden_omega: f64,
        rng: &mut StdRng,
        device: &Device,
    ) -> Self {
        let bias = |fan_in: usize| 1.0 / (fan_in as f64).sqrt();
        let first = Linear::uniform(d_in, width, 1.0 / d_in as f64, bias(d_in), rng, device);
        let later_bound = (6.0 / width as f64).sqrt() / hidden_omega;
        // `hidden_layers` counts every sine layer, the first one included.
        let hidden = (0..hidden_layers.saturating_sub(1)).map(|_| Linear::uniform(width, width, later_bound, bias(width), rng, device)).collect();
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
