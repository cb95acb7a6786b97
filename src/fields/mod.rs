//! Neural fields: maps from coordinates `[N, d_in]` in `[0, 1]^d_in` to raw outputs `[N, d_out]`.
//!
//! A field is an encoding followed by a decoder. Fields know nothing about tasks: the task says
//! how many inputs and outputs it needs and what resolution the signal has.

pub mod fourier;
pub mod gnf;
pub mod grid;
pub mod kmeans;
pub mod knn;
pub mod mlp;
pub mod neurbf;
pub mod siren;

use std::sync::Arc;

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
    /// Samples along each input axis (`[width, height]` for images), for fields that need the
    /// signal's aspect ratio.
    pub shape: Vec<usize>,
    /// The target's points weighted by detail, for fields that place kernels adaptively
    /// (NeuRBF). `None` when a checkpoint will supply the field's values.
    pub importance: Option<Arc<kmeans::WeightedPoints>>,
}

/// Coordinates plus whatever a field derives from them alone.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub x: Tensor<2>,
    /// Grid lookups, one per grid the field reads.
    pub grids: Vec<grid::GridLookup>,
    /// A fixed (untrained) input encoding.
    pub encoded: Option<Tensor<2>>,
    /// NeuRBF's neighbours and basis values.
    pub rbf: Option<neurbf::RbfBasis>,
}

#[derive(Module, Debug)]
pub enum Network {
    Fourier(fourier::FourierField),
    Siren(siren::Siren),
    HashGrid(grid::HashGridField),
    NeuRbf(neurbf::NeuRbf),
    Gnf(gnf::Gnf),
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
    /// Decided by the parameter's path in the module tree (`network.HashGrid.grid.table`):
    /// grid tables and NeuRBF's per-kernel features and feature bias are "grid" parameters.
    pub fn of(path: &str) -> Self {
        const GRID: &[&str] = &["grid", "table", "kernel_features", "feature_bias"];
        if path.split('.').any(|p| GRID.contains(&p)) { Self::Grid } else { Self::Network }
    }
}

impl Field {
    /// Build the field a resolved model config describes, initialised from `seed`.
    pub fn new(config: &ModelConfig, spec: &FieldSpec, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let get = |v: Option<usize>, key: &str| v.ok_or_else(|| anyhow::anyhow!("model.{key} is not set"));
        // GNF has no MLP: only the other kinds need these.
        let width = || get(config.width, "width");
        let hidden = || get(config.hidden_layers, "hidden_layers");
        let network = match config.kind.as_str() {
            "ffn" => Network::Fourier(fourier::FourierField::new(
                spec.d_in,
                spec.d_out,
                config.sigma.unwrap_or(10.0),
                get(config.frequencies, "frequencies")?,
                width()?,
                hidden()?,
                &mut rng,
                device,
            )),
            "siren" => Network::Siren(siren::Siren::new(
                spec.d_in,
                spec.d_out,
                width()?,
                hidden()?,
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
                    width()?,
                    hidden()?,
                    &mut rng,
                    device,
                ))
            }
            "neurbf" => Network::NeuRbf(neurbf::NeuRbf::new(
                spec,
                &neurbf_options(config, spec)?,
                spec.importance.as_deref(),
                &mut rng,
                device,
            )?),
            "gnf" => Network::Gnf(gnf::Gnf::new(spec, &gnf_options(config)?, &mut rng, device)?),
            other => bail!("model.kind = \"{other}\" is not a field nfield knows"),
        };
        let sigmoid_output = config.output_activation.as_deref() == Some("sigmoid");
        Ok(Self { network, sigmoid_output })
    }

    /// Whether the field places its kernels from the target (`FieldSpec::importance`).
    pub fn places_kernels(config: &ModelConfig) -> bool {
        config.kind == "neurbf"
    }

    /// Raw outputs for coordinates in `[0, 1]^d_in`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward_prepared(&self.prepare(x))
    }

    /// The work that depends only on the coordinates (grid lookups), done once for points that
    /// come back every step.
    pub fn prepare(&self, x: Tensor<2>) -> Prepared {
        let mut prepared = Prepared { x: x.clone(), grids: Vec::new(), encoded: None, rbf: None };
        match &self.network {
            Network::HashGrid(f) => prepared.grids.push(f.grid.lookup(x)),
            // The Fourier frequencies are fixed, so the encoding depends only on the points.
            Network::Fourier(f) => prepared.encoded = Some(f.encode(x)),
            // Kernels are frozen, so neighbours and basis values are fixed too.
            Network::NeuRbf(f) => {
                prepared.grids.push(f.grid_lookup(x.clone()));
                prepared.rbf = Some(f.basis(x));
            }
            Network::Gnf(f) => prepared.grids = f.lookups(x),
            Network::Siren(_) => {}
        }
        prepared
    }

    pub fn forward_prepared(&self, input: &Prepared) -> Tensor<2> {
        let y = match &self.network {
            Network::Fourier(f) => match &input.encoded {
                Some(encoded) => f.mlp.forward(encoded.clone()),
                None => f.forward(input.x.clone()),
            },
            Network::Siren(f) => f.forward(input.x.clone()),
            Network::HashGrid(f) => match input.grids.first() {
                Some(lookup) => f.forward_lookup(lookup),
                None => f.forward(input.x.clone()),
            },
            Network::NeuRbf(f) => match (input.grids.first(), &input.rbf) {
                (Some(lookup), Some(basis)) => f.forward_basis(lookup, basis),
                _ => f.forward(input.x.clone()),
            },
            Network::Gnf(f) => {
                if input.grids.is_empty() { f.forward(input.x.clone()) } else { f.forward_lookups(&input.grids) }
            }
        };
        if self.sigmoid_output { sigmoid(y) } else { y }
    }

    /// Trainable parameter count (fixed tensors such as Fourier frequencies and NeuRBF's frozen
    /// kernel centres and shapes are not counted).
    pub fn trainable_params(&self) -> usize {
        self.param_count() - self.frozen_params()
    }

    /// The parameter count papers report: NeuRBF counts its frozen centres and shapes (its
    /// budget rule does), Fourier features do not count their random frequencies.
    pub fn param_count(&self) -> usize {
        match &self.network {
            Network::Fourier(f) => self.num_params() - f.frequencies.val().shape().num_elements(),
            _ => self.num_params(),
        }
    }

    fn frozen_params(&self) -> usize {
        match &self.network {
            Network::NeuRbf(f) => f.centres.val().shape().num_elements() + f.shapes.val().shape().num_elements(),
            _ => 0,
        }
    }
}

fn neurbf_options(config: &ModelConfig, spec: &FieldSpec) -> Result<neurbf::NeuRbfOptions> {
    let need = |key: &str| anyhow::anyhow!("model.{key} is not set");
    let finest = match config.finest_resolution {
        Some(0) | None => (spec.resolution / 2).max(2),
        Some(r) => r,
    };
    Ok(neurbf::NeuRbfOptions {
        kernel: neurbf::KernelKind::parse(config.kernel.as_deref().ok_or_else(|| need("kernel"))?)?,
        kernels: config.kernels.unwrap_or(0),
        params: config.params.unwrap_or(0),
        neighbours: config.neighbours.ok_or_else(|| need("neighbours"))?,
        rbf_features: config.rbf_features.ok_or_else(|| need("rbf_features"))?,
        rbf_frequencies: config.rbf_frequencies.ok_or_else(|| need("rbf_frequencies"))?,
        decoder_frequencies: config.decoder_frequencies.ok_or_else(|| need("decoder_frequencies"))?,
        rbf_sinusoids: config.rbf_sinusoids.unwrap_or(true),
        decoder_sinusoids: config.decoder_sinusoids.unwrap_or(true),
        normalize: config.normalize.unwrap_or(true),
        kmeans_iterations: config.kmeans_iterations.unwrap_or(10),
        covariance_alpha: config.covariance_alpha.unwrap_or(0.5),
        grid_levels: config.levels.ok_or_else(|| need("levels"))?,
        grid_features: config.features_per_level.ok_or_else(|| need("features_per_level"))?,
        grid_log2_table_size: config.log2_table_size.unwrap_or(24),
        grid_base: config.base_resolution.unwrap_or(16),
        grid_finest: finest,
        width: config.width.ok_or_else(|| need("width"))?,
        hidden_layers: config.hidden_layers.ok_or_else(|| need("hidden_layers"))?,
    })
}

fn gnf_options(config: &ModelConfig) -> Result<gnf::GnfOptions> {
    Ok(gnf::GnfOptions {
        neurons: config.neurons.ok_or_else(|| anyhow::anyhow!("model.neurons is not set"))?,
        encoder: config.encoder.clone().unwrap_or_else(|| "dif-grid".into()),
        grid_resolutions: config.grid_resolutions.clone().unwrap_or_default(),
        grid_channels: config.grid_channels.clone().unwrap_or_default(),
        grid_tiles: config.grid_tiles.clone().unwrap_or_default(),
        levels: config.levels.unwrap_or(16),
        features_per_level: config.features_per_level.unwrap_or(2),
        log2_table_size: config.log2_table_size.unwrap_or(19),
        base_resolution: config.base_resolution.unwrap_or(16),
        finest_resolution: config.finest_resolution.unwrap_or(0),
    })
}
