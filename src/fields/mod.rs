//! Neural fields: maps from coordinates `[N, d_in]` in `[0, 1]^d_in` to raw outputs `[N, d_out]`.
//!
//! A field is an encoding followed by a decoder, as the papers draw them, optionally with CAM's
//! modulation of the decoder's hidden layers. Each paper's file holds its options (a typed struct
//! with the paper's defaults, `model.kind` names it) and its parts:
//!
//! | kind       | encoding                          | decoder                          |
//! |------------|-----------------------------------|----------------------------------|
//! | `ffn`      | `fourier::FourierFeatures`        | `mlp::ReluMlp`                   |
//! | `siren`    | the coordinates                   | `siren::SineMlp`                 |
//! | `hashgrid` | `grid::HashGrid`                  | `mlp::ReluMlp`                   |
//! | `neurbf`   | `neurbf::RbfEncoding` (+ a grid)  | `neurbf::ResidualSineMlp`        |
//! | `gnf`      | `gnf::GnfGrids`                   | `gnf::GaussianLayer`             |
//!
//! Any decoder reads any encoding's `[N, features]`, so other compositions (a radiance field's
//! heads over any of these encodings) are built from the same parts. Fields know nothing about
//! tasks: the task says how many inputs and outputs it needs and what resolution the signal has.
//!
//! To add a field kind: write its options struct and `FieldOptions` impl beside its code, add
//! its encoding and decoder variants below if they are new, and list the kind in `ModelConfig`.

pub mod cam;
pub mod fourier;
pub mod gnf;
pub mod grid;
pub mod kmeans;
pub mod knn;
pub mod mlp;
pub mod neurbf;
pub mod radiance;
pub mod siren;

use std::sync::Arc;

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor, activation::sigmoid};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::config::{field_names, kind_table, kind_to_table, take_kind};

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
    /// The task renders volumes: the decoder is a radiance head (density and view-dependent
    /// colour, `d_out` = 4).
    pub radiance: bool,
}

/// What a task does with a field's outputs, which decides the decoder's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outputs {
    /// Values in [0, 1] (colours).
    Bounded,
    /// Any value (distances).
    Unbounded,
    /// Density and view-dependent colour along rays.
    Radiance,
}

/// What the decoder's raw output goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputActivation {
    Sigmoid,
    None,
}

/// What every field kind's options provide.
pub trait FieldOptions {
    /// Check values that parse but make no sense, naming the key.
    fn validate(&self, source: &str) -> Result<()>;
    /// The paper's learning rates of the network and of grid-like parameters.
    fn learning_rates(&self) -> (f64, f64);
    /// Fill what depends on what the task does with the outputs.
    fn resolve(&mut self, outputs: Outputs);
    fn output_activation(&self) -> OutputActivation;
    /// CAM on the decoder, for kinds whose decoder is an MLP.
    fn cam(&self) -> Option<&cam::CamConfig> {
        None
    }
    /// The hidden layers CAM can modulate: the decoder's, or a radiance field's colour MLP's.
    fn hidden_layers(&self) -> usize {
        0
    }
    /// Whether the field places kernels from the target (`FieldSpec::importance`).
    fn places_kernels(&self) -> bool {
        false
    }
    /// The field without its adaptive part (NeuRBF's grid and decoder alone), for a pre-run that
    /// shows where the detail is.
    fn grid_only(&self) -> Option<ModelConfig> {
        None
    }
    /// The encoding and decoder, initialised from `rng`.
    fn build(&self, spec: &FieldSpec, rng: &mut StdRng, device: &Device) -> Result<(Encoding, Decoder)>;
}

/// `[model]`: one field kind's options, tagged by `kind`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Ffn(fourier::FfnConfig),
    Siren(siren::SirenConfig),
    HashGrid(grid::HashGridConfig),
    NeuRbf(neurbf::NeuRbfConfig),
    Gnf(gnf::GnfConfig),
}

impl ModelConfig {
    pub const KINDS: &[&str] = &["ffn", "siren", "hashgrid", "neurbf", "gnf"];

    /// The `[model]` table as its kind's options; keys of other kinds are dropped with a note.
    pub fn from_table(mut table: toml::Table, source: &str, notes: &mut Vec<String>) -> Result<Self> {
        let kind = take_kind(&mut table, "model", Self::KINDS, source)?;
        let all = [
            field_names::<fourier::FfnConfig>(),
            field_names::<siren::SirenConfig>(),
            field_names::<grid::HashGridConfig>(),
            field_names::<neurbf::NeuRbfConfig>(),
            field_names::<gnf::GnfConfig>(),
        ];
        Ok(match kind {
            "ffn" => Self::Ffn(kind_table(table, "model", kind, &all, &[], source, notes)?),
            "siren" => Self::Siren(kind_table(table, "model", kind, &all, &[], source, notes)?),
            "hashgrid" => Self::HashGrid(kind_table(table, "model", kind, &all, &[], source, notes)?),
            "neurbf" => Self::NeuRbf(kind_table(table, "model", kind, &all, &[], source, notes)?),
            _ => Self::Gnf(kind_table(table, "model", kind, &all, &[], source, notes)?),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ffn(_) => "ffn",
            Self::Siren(_) => "siren",
            Self::HashGrid(_) => "hashgrid",
            Self::NeuRbf(_) => "neurbf",
            Self::Gnf(_) => "gnf",
        }
    }

    pub fn options(&self) -> &dyn FieldOptions {
        match self {
            Self::Ffn(c) => c,
            Self::Siren(c) => c,
            Self::HashGrid(c) => c,
            Self::NeuRbf(c) => c,
            Self::Gnf(c) => c,
        }
    }

    pub fn to_table(&self) -> toml::Table {
        match self {
            Self::Ffn(c) => kind_to_table(self.kind(), c),
            Self::Siren(c) => kind_to_table(self.kind(), c),
            Self::HashGrid(c) => kind_to_table(self.kind(), c),
            Self::NeuRbf(c) => kind_to_table(self.kind(), c),
            Self::Gnf(c) => kind_to_table(self.kind(), c),
        }
    }

    pub fn resolve(&mut self, outputs: Outputs) {
        match self {
            Self::Ffn(c) => c.resolve(outputs),
            Self::Siren(c) => c.resolve(outputs),
            Self::HashGrid(c) => c.resolve(outputs),
            Self::NeuRbf(c) => c.resolve(outputs),
            Self::Gnf(c) => c.resolve(outputs),
        }
    }

    /// Whether `key` is one of this kind's settings (FreSh sets one).
    pub fn has_key(&self, key: &str) -> bool {
        self.to_table().contains_key(key)
    }
}

/// SIREN's "encoding": the coordinates themselves.
#[derive(Module, Debug)]
pub struct Coordinates {
    pub dims: usize,
}

// One per field, so the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Encoding {
    Coordinates(Coordinates),
    Fourier(fourier::FourierFeatures),
    HashGrid(grid::HashGrid),
    NeuRbf(neurbf::RbfEncoding),
    Gnf(gnf::GnfGrids),
}

#[derive(Module, Debug)]
pub enum Decoder {
    Relu(mlp::ReluMlp),
    Sine(siren::SineMlp),
    ResidualSine(neurbf::ResidualSineMlp),
    Gaussian(gnf::GaussianLayer),
    /// instant-ngp's density and colour MLPs.
    Radiance(radiance::RadianceMlp),
    /// GNF's Gaussian layer whose outputs are a density and the colour's SH coefficients.
    GaussianRadiance(gnf::GaussianShHead),
}

/// What an encoding derives from the coordinates alone: computed once for points that come
/// back every step.
// One per batch, moved and cloned as a whole, so boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Encoded {
    Coordinates(Tensor<2>),
    /// A fixed (untrained) encoding's features.
    Features(Tensor<2>),
    Grid(grid::GridLookup),
    /// NeuRBF's grid lookup and its kernels' neighbours and basis values.
    Rbf(grid::GridLookup, neurbf::RbfBasis),
}

/// Coordinates prepared for a field: the encoding's part, where each point reads CAM, and for
/// radiance fields the view directions' spherical harmonics (`None`: a zero direction).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub encoded: Encoded,
    pub cam: Option<cam::CamLookup>,
    pub sh: Option<Tensor<2>>,
}

impl Encoding {
    pub fn prepare(&self, x: Tensor<2>) -> Encoded {
        match self {
            Self::Coordinates(_) => Encoded::Coordinates(x),
            // The Fourier frequencies are fixed, so the encoding depends only on the points.
            Self::Fourier(f) => Encoded::Features(f.encode(x)),
            Self::HashGrid(g) => Encoded::Grid(g.lookup(x)),
            // Kernels are frozen, so neighbours and basis values are fixed too.
            Self::NeuRbf(r) => Encoded::Rbf(r.grid_lookup(x.clone()), r.basis(x)),
            Self::Gnf(g) => Encoded::Grid(g.lookup(x)),
        }
    }

    /// `[N, features]` from prepared coordinates (which must come from this encoding).
    pub fn features(&self, input: &Encoded) -> Tensor<2> {
        match (self, input) {
            (Self::HashGrid(g), Encoded::Grid(lookup)) => g.interpolate(lookup),
            (Self::NeuRbf(r), Encoded::Rbf(lookup, basis)) => r.features(lookup, basis),
            (Self::Gnf(g), Encoded::Grid(lookup)) => g.features(lookup),
            (_, Encoded::Coordinates(x) | Encoded::Features(x)) => x.clone(),
            _ => unreachable!("coordinates prepared by another encoding"),
        }
    }
}

impl Decoder {
    /// `sh`: the view directions' harmonics, for radiance heads (`None`: a zero direction).
    pub fn forward(&self, features: Tensor<2>, modulation: Option<&cam::Modulation>, sh: Option<&Tensor<2>>) -> Tensor<2> {
        let (device, n) = (features.device(), features.dims()[0]);
        let sh_or_zero = |degree: usize| match sh {
            Some(sh) => sh.clone(),
            None => radiance::sh_tensor(&[0.0; 3], degree, &device).repeat_dim(0, n),
        };
        match self {
            Self::Relu(mlp) => mlp.forward(features, modulation),
            Self::Sine(mlp) => mlp.forward(features, modulation),
            Self::ResidualSine(mlp) => mlp.forward(features, modulation),
            Self::Gaussian(layer) => layer.forward(features),
            Self::Radiance(heads) => {
                let degree = heads.sh_degree();
                heads.forward(features, sh_or_zero(degree), modulation)
            }
            Self::GaussianRadiance(head) => {
                let degree = head.sh_degree();
                head.forward(features, sh_or_zero(degree))
            }
        }
    }

    /// A radiance head's density `[N, 1]`; other decoders' first output.
    pub fn density(&self, features: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Radiance(heads) => heads.density(features),
            Self::GaussianRadiance(head) => head.density(features),
            _ => self.forward(features, None, None).narrow(1, 0, 1),
        }
    }

    /// A radiance head's geometry features `[N, geo_features]` (the density MLP's outputs, the
    /// log-density first); other decoders' outputs.
    pub fn geometry(&self, features: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Radiance(heads) => heads.density.forward(features, None),
            _ => self.forward(features, None, None),
        }
    }

    /// The SH degree a radiance head reads, `None` for other decoders.
    pub fn sh_degree(&self) -> Option<usize> {
        match self {
            Self::Radiance(heads) => Some(heads.sh_degree()),
            Self::GaussianRadiance(head) => Some(head.sh_degree()),
            _ => None,
        }
    }
}

/// instant-ngp's radiance heads over an encoding of `d_in` features: the density MLP is the field
/// kind's own `hidden_layers` x `width`, the colour MLP and the harmonics come from `heads`.
pub fn radiance_heads(
    d_in: usize,
    width: usize,
    hidden_layers: usize,
    heads: Option<&radiance::RadianceConfig>,
    rng: &mut StdRng,
    device: &Device,
) -> Decoder {
    let heads = heads.cloned().unwrap_or_default();
    Decoder::Radiance(radiance::RadianceMlp::new(d_in, width, hidden_layers, &heads, rng, device))
}

#[derive(Module, Debug)]
pub struct Field {
    pub encoding: Encoding,
    pub decoder: Decoder,
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
    /// Decided by the parameter's path in the module tree (`encoding.HashGrid.table`): grid
    /// tables and NeuRBF's per-kernel features and feature bias are "grid" parameters.
    pub fn of(path: &str) -> Self {
        if path.split('.').next() == Some("cam") {
            return Self::Cam;
        }
        const GRID: &[&str] = &["grid", "table", "kernel_features", "feature_bias"];
        if path.split('.').any(|p| GRID.contains(&p)) { Self::Grid } else { Self::Network }
    }
}

/// A parameter path of checkpoints written before fields were split into an encoding and a
/// decoder (`network.<Kind>.…`), as the current module tree names it; other paths unchanged.
pub fn current_param_path(path: &str) -> String {
    const RENAMED: &[(&str, &str)] = &[
        ("network.Fourier.frequencies", "encoding.Fourier.frequencies"),
        ("network.Fourier.mlp.", "decoder.Relu."),
        ("network.Siren.", "decoder.Sine."),
        ("network.HashGrid.grid.", "encoding.HashGrid."),
        ("network.HashGrid.mlp.", "decoder.Relu."),
        ("network.NeuRbf.first.", "decoder.ResidualSine.first."),
        ("network.NeuRbf.hidden.", "decoder.ResidualSine.hidden."),
        ("network.NeuRbf.output.", "decoder.ResidualSine.output."),
        ("network.NeuRbf.", "encoding.NeuRbf."),
        ("network.Gnf.encoder.", "encoding.Gnf.grids."),
        ("network.Gnf.", "decoder.Gaussian."),
    ];
    for (old, new) in RENAMED {
        if let Some(rest) = path.strip_prefix(old) {
            return format!("{new}{rest}");
        }
    }
    path.to_string()
}

impl Field {
    /// Build the field a model config describes, initialised from `seed`: the encoding first,
    /// then the decoder, then CAM's grids.
    pub fn new(config: &ModelConfig, spec: &FieldSpec, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let options = config.options();
        let (encoding, decoder) = options.build(spec, &mut rng, device)?;
        let cam = match options.cam() {
            Some(c) => {
                let what = format!("this task's modulation coordinate has {}", spec.cam_dims);
                c.check_fits(options.hidden_layers(), spec.cam_dims, &what)?;
                Some(c.build(options.hidden_layers(), device)?)
            }
            None => None,
        };
        // Radiance heads bring their own activations.
        let sigmoid_output = options.output_activation() == OutputActivation::Sigmoid && !spec.radiance;
        Ok(Self { encoding, decoder, cam, sigmoid_output })
    }

    /// The field as FreSh scores it untrained. Hash tables start at ±1e-2 instead of ±1e-4 (as
    /// in FreSh's hash-grid experiments): at instant-ngp's tiny scale the grid hardly shows in
    /// the output, and the spectrum would not depend on the grid's resolution.
    pub fn for_spectrum(mut self) -> Self {
        if let Encoding::HashGrid(grid) = &mut self.encoding {
            let table = grid.table.clone();
            grid.table = table.map(|t| t * 100.0);
        }
        self
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
            (Some(c), Some(p)) => Some(c.lookup(p, cam::RayGroups::Fixed(ray_samples))),
            _ => None,
        };
        Prepared { encoded: self.encoding.prepare(x), cam, sh: None }
    }

    /// Points along rays for a radiance field: `dirs` their unit view directions (flat `[N, 3]`,
    /// on the host), `rays` which ray each point belongs to (CAM's per-ray normalisation and
    /// its view-direction coordinate need it).
    pub fn prepare_rays(&self, x: Tensor<2>, dirs: &[f32], rays: Option<cam::RayGroups>) -> Prepared {
        let device = x.device();
        let sh = self.decoder.sh_degree().map(|degree| radiance::sh_tensor(dirs, degree, &device));
        let cam = match (&self.cam, rays) {
            (Some(c), Some(groups)) => Some(c.lookup(cam::view_coordinates(dirs, &device), groups)),
            _ => None,
        };
        Prepared { encoded: self.encoding.prepare(x), cam, sh }
    }

    pub fn forward_prepared(&self, input: &Prepared) -> Tensor<2> {
        let modulation = match (&self.cam, &input.cam) {
            (Some(c), Some(lookup)) => Some(c.modulation(lookup)),
            _ => None,
        };
        let y = self.decoder.forward(self.encoding.features(&input.encoded), modulation.as_ref(), input.sh.as_ref());
        if self.sigmoid_output { sigmoid(y) } else { y }
    }

    /// A radiance field's geometry features at points in `[0, 1]^3` (see `Decoder::geometry`).
    pub fn geometry(&self, x: Tensor<2>) -> Tensor<2> {
        self.decoder.geometry(self.encoding.features(&self.encoding.prepare(x)))
    }

    /// A radiance field's density `[N, 1]` at points in `[0, 1]^3`, without the colour head.
    pub fn density(&self, x: Tensor<2>) -> Tensor<2> {
        self.decoder.density(self.encoding.features(&self.encoding.prepare(x)))
    }

    /// Trainable parameter count (fixed tensors such as Fourier frequencies and NeuRBF's frozen
    /// kernel centres and shapes are not counted).
    pub fn trainable_params(&self) -> usize {
        self.param_count() - self.frozen_params()
    }

    /// The parameter count papers report: NeuRBF counts its frozen centres and shapes (its
    /// budget rule does), Fourier features do not count their random frequencies.
    pub fn param_count(&self) -> usize {
        match &self.encoding {
            Encoding::Fourier(f) => self.num_params() - f.frequencies.val().shape().num_elements(),
            _ => self.num_params(),
        }
    }

    fn frozen_params(&self) -> usize {
        match &self.encoding {
            Encoding::NeuRbf(r) => r.centres.val().shape().num_elements() + r.shapes.val().shape().num_elements(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_parameter_paths_map_onto_encoding_and_decoder() {
        for (old, new) in [
            ("network.Fourier.frequencies", "encoding.Fourier.frequencies"),
            ("network.Fourier.mlp.hidden.2.weight", "decoder.Relu.hidden.2.weight"),
            ("network.HashGrid.grid.table", "encoding.HashGrid.table"),
            ("network.NeuRbf.grid.table", "encoding.NeuRbf.grid.table"),
            ("network.NeuRbf.hidden.0.bias", "decoder.ResidualSine.hidden.0.bias"),
            ("network.Gnf.encoder.3.table", "encoding.Gnf.grids.3.table"),
            ("network.Gnf.log_widths", "decoder.Gaussian.log_widths"),
            ("cam.grids", "cam.grids"),
        ] {
            assert_eq!(current_param_path(old), new);
            assert_eq!(ParamGroup::of(old), ParamGroup::of(new), "{old} keeps its optimiser group");
        }
    }
}
