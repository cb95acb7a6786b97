//! Neural fields: maps from coordinates `[N, d_in]` in `[0, 1]^d_in` to raw outputs `[N, d_out]`.
//!
//! A field is an encoding followed by a decoder. Fields know nothing about tasks: the task says
//! how many inputs and outputs it needs and what resolution the signal has.

pub mod cam;
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
    /// Axes of the coordinate that indexes CAM's grids (the pixel for images: 2).
    pub cam_dims: usize,
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
    /// Where each point reads CAM's grids.
    pub cam: Option<cam::CamLookup>,
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
    /// Coordinate-aware modulation of the decoder's hidden layers.
    pub cam: Option<cam::Cam>,
    pub sigmoid_output: bool,
}

/// Which optimiser group a parameter belongs to; grids get their own rate and epsilon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamGroup {
    Network,
    Grid,
    /// CAM's modulation grids.
    Cam,
}

impl ParamGroup {
    /// Decided by the parameter's path in the module tree (`network.HashGrid.grid.table`):
    /// grid tables and NeuRBF's per-kernel features and feature bias are "grid" parameters.
    pub fn of(path: &str) -> Self {
        if path.split('.').next() == Some("cam") {
            return Self::Cam;
        }
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
        let cam = match &config.cam {
            Some(c) => Some(build_cam(c, config, spec, device)?),
            None => None,
        };
        let sigmoid_output = config.output_activation.as_deref() == Some("sigmoid");
        Ok(Self { network, cam, sigmoid_output })
    }

    /// The field as FreSh scores it untrained. Hash tables start at ±1e-2 instead of ±1e-4 (as
    /// in FreSh's hash-grid experiments): at instant-ngp's tiny scale the grid hardly shows in
    /// the output, and the spectrum would not depend on the grid's resolution.
    pub fn for_spectrum(mut self) -> Self {
        if let Network::HashGrid(f) = &mut self.network {
            let table = f.grid.table.clone();
            f.grid.table = table.map(|t| t * 100.0);
        }
        self
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
    /// come back every step. CAM, if any, is indexed by the coordinates themselves (images).
    pub fn prepare(&self, x: Tensor<2>) -> Prepared {
        let cam_coords = self.cam.as_ref().map(|_| x.clone());
        self.prepare_with_cam(x, cam_coords, 1)
    }

    /// `prepare` with CAM indexed by a coordinate the task chooses (`[N, cam dims]` in `[0, 1]`,
    /// e.g. view directions), `ray_samples` consecutive points per ray.
    pub fn prepare_with_cam(&self, x: Tensor<2>, cam_coords: Option<Tensor<2>>, ray_samples: usize) -> Prepared {
        let cam = match (&self.cam, cam_coords) {
            (Some(c), Some(p)) => Some(c.lookup(p, ray_samples)),
            _ => None,
        };
        let mut prepared = Prepared { x: x.clone(), grids: Vec::new(), encoded: None, rbf: None, cam };
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
        let modulation = match (&self.cam, &input.cam) {
            (Some(c), Some(lookup)) => Some(c.modulation(lookup)),
            _ => None,
        };
        let m = modulation.as_ref();
        let y = match &self.network {
            Network::Fourier(f) => match &input.encoded {
                Some(encoded) => f.mlp.forward(encoded.clone(), m),
                None => f.forward(input.x.clone(), m),
            },
            Network::Siren(f) => f.forward(input.x.clone(), m),
            Network::HashGrid(f) => match input.grids.first() {
                Some(lookup) => f.forward_lookup(lookup, m),
                None => f.forward_lookup(&f.grid.lookup(input.x.clone()), m),
            },
            Network::NeuRbf(f) => match (input.grids.first(), &input.rbf) {
                (Some(lookup), Some(basis)) => f.forward_basis(lookup, basis, m),
                _ => f.forward_basis(&f.grid_lookup(input.x.clone()), &f.basis(input.x.clone()), m),
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

/// CAM for the decoder a model config describes; for images it is indexed by the pixel.
fn build_cam(c: &crate::config::CamConfig, config: &ModelConfig, spec: &FieldSpec, device: &Device) -> Result<cam::Cam> {
    if config.kind == "gnf" {
        bail!("model.cam: GNF has no MLP decoder to modulate (CAM applies to ffn, siren, hashgrid and neurbf)");
    }
    let hidden = config.hidden_layers.unwrap_or(0);
    let layers: Vec<usize> = if c.layers.is_empty() { (0..hidden).collect() } else { c.layers.clone() };
    if let Some(&bad) = layers.iter().find(|&&l| l >= hidden) {
        bail!("model.cam.layers: layer {bad} does not exist; the decoder has hidden layers 0 to {}", hidden.saturating_sub(1));
    }
    if c.grid.len() != spec.cam_dims {
        bail!("model.cam.grid has {} axes but this task's modulation coordinate has {}", c.grid.len(), spec.cam_dims);
    }
    cam::Cam::new(c.grid.clone(), layers, c.factored, cam::CamNorm::parse(&c.norm)?, device)
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
