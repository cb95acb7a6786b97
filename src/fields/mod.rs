//! Neural fields: maps from coordinates `[N, d_in]` in `[0, 1]^d_in` to raw outputs `[N, d_out]`.
//!
//! A field is an encoding followed by a decoder. Fields know nothing about tasks: the task says
//! how many inputs and outputs it needs and what resolution the signal has.

pub mod fourier;
pub mod grid;
pub mod mlp;
pub mod siren;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor, activation::sigmoid};
use rand::{SeedableRng, rngs::StdRng};

use crate::config::ModelConfig;

/// What a task tells a field about itself.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub d_in: usize,
    pub d_out: usize,
    /// The signal's largest resolution along any axis (pixels for images); grids use it.
    pub resolution: usize,
}

/// Coordinates plus whatever a field derives from them alone.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub x: Tensor<2>,
    pub grid: Option<grid::GridLookup>,
    /// A fixed (untrained) input encoding.
    pub encoded: Option<Tensor<2>>,
}

#[derive(Module, Debug)]
pub enum Network {
    Fourier(fourier::FourierField),
    Siren(siren::Siren),
    HashGrid(grid::HashGridField),
}

#[derive(Module, Debug)]
pub struct Field {
    pub network: Network,
    pub sigmoid_output: bool,
}

/// Which optimiser group a parameter belongs to; grids get their own rate and epsilon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamGroup {
    Network,
    Grid,
}

impl ParamGroup {
    /// Decided by the parameter's path in the module tree (`network.HashGrid.grid.table`).
    pub fn of(path: &str) -> Self {
        if path.split('.').any(|p| p == "grid" || p == "table") { Self::Grid } else { Self::Network }
    }
}

impl Field {
    /// Build the field a resolved model config describes, initialised from `seed`.
    pub fn new(config: &ModelConfig, spec: &FieldSpec, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let get = |v: Option<usize>, key: &str| v.ok_or_else(|| anyhow::anyhow!("model.{key} is not set"));
        let width = get(config.width, "width")?;
        let hidden = get(config.hidden_layers, "hidden_layers")?;
        let network = match config.kind.as_str() {
            "ffn" => Network::Fourier(fourier::FourierField::new(
                spec.d_in,
                spec.d_out,
                config.sigma.unwrap_or(10.0),
                get(config.frequencies, "frequencies")?,
                width,
                hidden,
                &mut rng,
                device,
            )),
            "siren" => Network::Siren(siren::Siren::new(
                spec.d_in,
                spec.d_out,
                width,
                hidden,
                config.omega0.unwrap_or(30.0),
                config.hidden_omega.unwrap_or(30.0),
                &mut rng,
                device,
            )),
            "hashgrid" => {
                if !(2..=3).contains(&spec.d_in) {
                    bail!("hash grids take 2-D or 3-D coordinates, not {}-D", spec.d_in);
                }
                let finest = match config.finest_resolution {
                    Some(0) | None => spec.resolution,
                    Some(r) => r,
                };
                Network::HashGrid(grid::HashGridField::new(
                    spec.d_in,
                    spec.d_out,
                    get(config.levels, "levels")?,
                    get(config.features_per_level, "features_per_level")?,
                    config.log2_table_size.unwrap_or(19),
                    config.base_resolution.unwrap_or(16),
                    finest,
                    width,
                    hidden,
                    &mut rng,
                    device,
                ))
            }
            other => bail!("model.kind = \"{other}\" is not a field nfield knows"),
        };
        let sigmoid_output = config.output_activation.as_deref() == Some("sigmoid");
        Ok(Self { network, sigmoid_output })
    }

    /// Raw outputs for coordinates in `[0, 1]^d_in`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward_prepared(&self.prepare(x))
    }

    /// The work that depends only on the coordinates (grid lookups), done once for points that
    /// come back every step.
    pub fn prepare(&self, x: Tensor<2>) -> Prepared {
        let (grid, encoded) = match &self.network {
            Network::HashGrid(f) => (Some(f.grid.lookup(x.clone())), None),
            // The Fourier frequencies are fixed, so the encoding depends only on the points.
            Network::Fourier(f) => (None, Some(f.encode(x.clone()))),
            _ => (None, None),
        };
        Prepared { x, grid, encoded }
    }

    pub fn forward_prepared(&self, input: &Prepared) -> Tensor<2> {
        let y = match (&self.network, &input.grid) {
            (Network::Fourier(f), _) => match &input.encoded {
                Some(encoded) => f.mlp.forward(encoded.clone()),
                None => f.forward(input.x.clone()),
            },
            (Network::Siren(f), _) => f.forward(input.x.clone()),
            (Network::HashGrid(f), Some(lookup)) => f.forward_lookup(lookup),
            (Network::HashGrid(f), None) => f.forward(input.x.clone()),
        };
        if self.sigmoid_output { sigmoid(y) } else { y }
    }

    /// Trainable parameter count (fixed tensors such as Fourier frequencies are not counted).
    pub fn trainable_params(&self) -> usize {
        let fixed = match &self.network {
            Network::Fourier(f) => f.frequencies.val().shape().num_elements(),
            _ => 0,
        };
        self.num_params() - fixed
    }
}
