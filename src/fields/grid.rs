//! Multi-resolution hash grid (instant-ngp), 2-D or 3-D.
//!
//! Level `l` has resolution `ceil(base * s^l)` with `s` chosen so the last level reaches `finest`;
//! a level whose `res^d` vertices fit in the table is stored densely, otherwise vertices are
//! hashed (`x * 1 xor y * 2654435761 xor z * 805459861`, modulo the power-of-two table size).
//! Vertices sit at `x * (res - 1)` (corners aligned), and features are (bi/tri)linearly
//! interpolated. The integer hash runs on the device in i32 without overflow (see `mul_mod`);
//! on the CPU the lookup is one pass on the host (`lookup_on_host`).

use anyhow::{Result, bail};
use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData, activation::relu};
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cam::CamConfig;
use super::mlp::{ReluMlp, uniform_tensor};
use super::radiance::RadianceConfig;
use super::{Decoder, Encoding, FieldOptions, FieldSpec, OutputActivation, Outputs, radiance_heads};
use crate::config::at_least_one;
use crate::kernels;
use crate::profile::read_floats;

const PRIMES: [u64; 3] = [1, 2_654_435_761, 805_459_861];

/// `model.kind = "hashgrid"`: instant-ngp's image setup, a 16-level x 2-feature hash grid with
/// 2^19 entries per level followed by a ReLU MLP of 2 x 64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HashGridConfig {
    /// ReLU layers of the decoder, each `width` wide.
    pub hidden_layers: usize,
    pub width: usize,
    /// `sigmoid` | `none` (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_activation: Option<OutputActivation>,
    pub levels: usize,
    pub features_per_level: usize,
    /// Hash-table entries per level, as a power of two (instant-ngp's `log2_hashmap_size`).
    pub log2_table_size: u32,
    pub base_resolution: usize,
    /// Finest level's resolution; 0 means the target's largest side.
    pub finest_resolution: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cam: Option<CamConfig>,
    /// Radiance fields: the heads after the density MLP (filled in for `task.kind = "nerf"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radiance: Option<RadianceConfig>,
}

impl Default for HashGridConfig {
    fn default() -> Self {
        Self {
            hidden_layers: 2,
            width: 64,
            output_activation: None,
            levels: 16,
            features_per_level: 2,
            log2_table_size: 19,
            base_resolution: 16,
            finest_resolution: 0,
            cam: None,
            radiance: None,
        }
    }
}

impl FieldOptions for HashGridConfig {
    fn validate(&self, source: &str) -> Result<()> {
        at_least_one(source, &[("model.hidden_layers", self.hidden_layers), ("model.width", self.width)])?;
        validate_grid(source, self.levels, self.features_per_level, self.log2_table_size, self.base_resolution)?;
        self.radiance.as_ref().map_or(Ok(()), |r| r.validate(source))
    }

    fn learning_rates(&self) -> (f64, f64) {
        (1e-2, 1e-2)
    }

    fn resolve(&mut self, outputs: Outputs) {
        self.output_activation.get_or_insert(OutputActivation::None);
        if outputs == Outputs::Radiance {
            self.radiance.get_or_insert_with(RadianceConfig::default);
        }
    }

    fn output_activation(&self) -> OutputActivation {
        self.output_activation.unwrap_or(OutputActivation::None)
    }

    fn cam(&self) -> Option<&CamConfig> {
        self.cam.as_ref()
    }

    fn hidden_layers(&self) -> usize {
        self.radiance.as_ref().map_or(self.hidden_layers, |r| r.colour_layers)
    }

    fn build(&self, spec: &FieldSpec, rng: &mut StdRng, device: &Device) -> Result<(Encoding, Decoder)> {
        if !(2..=3).contains(&spec.d_in) {
            bail!("hash grids take 2-D or 3-D coordinates, not {}-D", spec.d_in);
        }
        let finest = if self.finest_resolution == 0 { spec.resolution } else { self.finest_resolution };
        let size = GridSize {
            levels: self.levels,
            features: self.features_per_level,
            log2_table_size: self.log2_table_size,
            base: self.base_resolution,
            finest,
        };
        let grid = HashGrid::new(spec.d_in, size, rng, device);
        let d = grid.output_dim();
        let decoder = if spec.radiance {
            radiance_heads(d, self.width, self.hidden_layers, self.radiance.as_ref(), rng, device)
        } else {
            Decoder::Relu(ReluMlp::new(d, self.width, self.hidden_layers, spec.d_out, rng, device))
        };
        Ok((Encoding::HashGrid(grid), decoder))
    }
}

/// Checks shared by every config that holds a hash grid.
pub fn validate_grid(source: &str, levels: usize, features: usize, log2_table_size: u32, base: usize) -> Result<()> {
    at_least_one(source, &[("model.levels", levels), ("model.features_per_level", features)])?;
    if !(3..=24).contains(&log2_table_size) {
        bail!("{source}: model.log2_table_size must be between 3 and 24");
    }
    if base < 2 {
        bail!("{source}: model.base_resolution must be at least 2");
    }
    Ok(())
}

#[derive(Module, Debug)]
pub struct HashGrid {
    /// All levels' entries stacked: `[layout.rows, features]`.
    pub table: Param<Tensor<2>>,
    pub features: usize,
    pub layout: GridLayout,
}

/// Which table rows a point reads: the levels' resolutions, and each level's first row in the
/// stacked table and whether it is dense or hashed.
#[derive(Module, Debug)]
pub struct GridLayout {
    pub dims: usize,
    pub log2_table_size: usize,
    pub resolutions: Vec<usize>,
    pub offsets: Vec<usize>,
    pub dense: Vec<bool>,
    /// Rows of all levels together.
    pub rows: usize,
}

/// Level resolutions from base to finest with a constant growth factor.
pub fn level_resolutions(levels: usize, base: usize, finest: usize) -> Vec<usize> {
    if levels == 1 {
        return vec![base];
    }
    let finest = finest.max(base);
    let growth = ((finest as f64 / base as f64).ln() / (levels - 1) as f64).exp();
    (0..levels).map(|l| (base as f64 * growth.powi(l as i32) - 1e-9).ceil() as usize).collect()
}

/// How big a hash grid is: `levels` of `features` each, at most `2^log2_table_size` entries per
/// level, resolutions growing from `base` to `finest`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridSize {
    pub levels: usize,
    pub features: usize,
    pub log2_table_size: u32,
    pub base: usize,
    pub finest: usize,
}

impl GridLayout {
    pub fn new(dims: usize, resolutions: Vec<usize>, log2_table_size: u32) -> Self {
        assert!(dims == 2 || dims == 3, "grids are 2-D or 3-D");
        let table_size = 1usize << log2_table_size;
        let mut offsets = Vec::with_capacity(resolutions.len());
        let mut dense = Vec::with_capacity(resolutions.len());
        let mut rows = 0;
        for &res in &resolutions {
            let vertices = res.checked_pow(dims as u32).unwrap_or(usize::MAX);
            offsets.push(rows);
            dense.push(vertices <= table_size);
            rows += vertices.min(table_size);
        }
        Self { dims, log2_table_size: log2_table_size as usize, resolutions, offsets, dense, rows }
    }

    /// Which table rows each point of `x: [N, dims]` in `[0, 1]` reads, and with what weights.
    /// Depends only on the points, so a task that feeds the same points every step computes it
    /// once.
    pub fn lookup(&self, x: Tensor<2>) -> GridLookup {
        // On the CPU, dozens of whole-tensor integer passes per corner dominate SDF training
        // and meshing; one pass on the host gives the same rows and weights. It has no backward,
        // so points that carry a gradient keep the tensor path.
        if kernels::on_flex(&x.device()) && !x.is_tracked() { self.lookup_on_host(x) } else { self.lookup_with_tensors(x) }
    }

    /// The lookup in tensor ops, on any device, differentiable in the points.
    fn lookup_with_tensors(&self, x: Tensor<2>) -> GridLookup {
        let [n, d] = x.dims();
        // Points just outside the domain (SDF samples near the box, rays entering it) read the
        // border cells rather than indices before the table.
        let x = x.clamp(0.0, 1.0);
        let levels = self.resolutions.len();
        let device = x.device();
        let per_level = |f: &dyn Fn(usize) -> f32| -> Tensor<3> {
            let v: Vec<f32> = (0..levels).map(f).collect();
            Tensor::from_data(TensorData::new(v, [1, levels, 1]), &device)
        };
        let scale = per_level(&|l| (self.resolutions[l] - 1) as f32);
        let max_cell = per_level(&|l| (self.resolutions[l] as f32 - 2.0).max(0.0));

        // Whether each corner takes the upper vertex along an axis, `[1, 1, corners]`.
        let corners = 1usize << d;
        let upper = |axis: usize| -> (Tensor<3, Int>, Tensor<3>) {
            let bits: Vec<i32> = (0..corners).map(|c| ((c >> axis) & 1) as i32).collect();
            let floats: Vec<f32> = bits.iter().map(|&b| b as f32).collect();
            (Tensor::from_data(TensorData::new(bits, [1, 1, corners]), &device), Tensor::from_data(TensorData::new(floats, [1, 1, corners]), &device))
        };
        let int_per_level = |v: Vec<i32>| Tensor::<3, Int>::from_data(TensorData::new(v, [1, levels, 1]), &device);
        let dense_mask = int_per_level(self.dense.iter().map(|&b| b as i32).collect());
        let offsets = int_per_level(self.offsets.iter().map(|&o| o as i32).collect());

        // Axis by axis, every corner at once (`[N, L, corners]`): the corner's weight and its
        // vertex's dense index and hash. Each axis slices the points once, so the whole lookup
        // is a few fused kernels rather than slices per corner and axis.
        let mut weight: Option<Tensor<3>> = None;
        let mut dense_index: Option<Tensor<3, Int>> = None;
        let mut hash_index: Option<Tensor<3, Int>> = None;
        let mut stride = vec![1i32; levels];
        for (axis, &prime) in PRIMES.iter().enumerate().take(d) {
            let pos = x.clone().narrow(1, axis, 1).unsqueeze_dim::<3>(1) * scale.clone(); // [N, L, 1]
            let cell = pos.clone().floor();
            let cell = cell.clone() - relu(cell - max_cell.clone()); // keep x = 1 inside the last cell
            let frac = pos - cell.clone();
            let (upper_int, upper_float) = upper(axis);
            // `frac` for upper corners, `1 - frac` for lower ones (exactly: one term is zero).
            let w = frac.clone() * upper_float.clone() + (frac.neg() + 1.0) * (upper_float.neg() + 1.0);
            weight = Some(match weight {
                Some(acc) => acc * w,
                None => w,
            });

            let c = cell.int() + upper_int; // [N, L, corners]
            let term = c.clone() * int_per_level(stride.clone());
            dense_index = Some(match dense_index {
                Some(acc) => acc + term,
                None => term,
            });
            for (l, s) in stride.iter_mut().enumerate() {
                // Strides only matter on dense levels, where res^d fits in the table (< 2^24).
                *s = if self.dense[l] { *s * self.resolutions[l] as i32 } else { 0 };
            }

            let h = mul_mod(c, prime, self.log2_table_size);
            hash_index = Some(match hash_index {
                Some(acc) => acc.bitwise_xor(h),
                None => h,
            });
        }
        let dense_index = dense_index.expect("at least one axis");
        let hash_index = hash_index.expect("at least one axis");
        let index = hash_index.clone() + dense_mask * (dense_index - hash_index) + offsets;
        GridLookup {
            rows: index.reshape([n * levels * corners]),
            weight: weight.expect("at least one axis").unsqueeze_dim::<4>(3), // [N, L, C, 1]
            points: n,
            corners,
        }
    }

    /// `lookup_with_tensors` computed point by point on the host, with the same f32 operations
    /// in the same order, so rows and weights are identical.
    fn lookup_on_host(&self, x: Tensor<2>) -> GridLookup {
        let [n, d] = x.dims();
        let device = x.device();
        let points: Vec<f32> = read_floats(x);
        let (levels, corners) = (self.resolutions.len(), 1usize << d);
        let hash_mask = (1u32 << self.log2_table_size) - 1;
        let mut rows = vec![0i32; n * levels * corners];
        let mut weights = vec![0f32; n * levels * corners];
        let per_point = levels * corners;
        rows.par_chunks_mut(per_point).zip(weights.par_chunks_mut(per_point)).zip(points.par_chunks(d)).for_each(|((rows, weights), p)| {
            for (l, &res) in self.resolutions.iter().enumerate() {
                let scale = (res - 1) as f32;
                let max_cell = (res as f32 - 2.0).max(0.0);
                let (mut cell, mut frac) = ([0u32; 3], [0f32; 3]);
                for a in 0..d {
                    let pos = p[a].clamp(0.0, 1.0) * scale;
                    let c = pos.floor().min(max_cell); // keep x = 1 inside the last cell
                    frac[a] = pos - c;
                    cell[a] = c as u32;
                }
                for corner in 0..corners {
                    // `index` is the dense level's vertex number (res^d fits in the table, so
                    // no overflow) or instant-ngp's u32 hash before the modulo.
                    let (mut weight, mut index, mut stride) = (1.0f32, 0u32, 1u32);
                    for (a, &prime) in PRIMES.iter().enumerate().take(d) {
                        let bit = (corner >> a) as u32 & 1;
                        let c = cell[a] + bit;
                        weight *= if bit == 1 { frac[a] } else { -frac[a] + 1.0 };
                        if self.dense[l] {
                            index += c * stride;
                            stride *= res as u32;
                        } else {
                            index ^= c.wrapping_mul(prime as u32);
                        }
                    }
                    let index = if self.dense[l] { index } else { index & hash_mask };
                    rows[l * corners + corner] = (index as usize + self.offsets[l]) as i32;
                    weights[l * corners + corner] = weight;
                }
            }
        });
        GridLookup {
            rows: Tensor::from_data(TensorData::new(rows, [n * levels * corners]), &device),
            weight: Tensor::from_data(TensorData::new(weights, [n, levels, corners, 1]), &device),
            points: n,
            corners,
        }
    }
}

impl HashGrid {
    pub fn new(dims: usize, size: GridSize, rng: &mut StdRng, device: &Device) -> Self {
        let resolutions = level_resolutions(size.levels, size.base, size.finest);
        let layout = GridLayout::new(dims, resolutions, size.log2_table_size);
        // instant-ngp's initialisation: tiny uniform values.
        let table = uniform_tensor([layout.rows, size.features], 1e-4, rng, device);
        Self { table: Param::from_tensor(table), features: size.features, layout }
    }

    /// Table rows a grid of this size has (its parameters are this times the features).
    pub fn entry_count(dims: usize, size: GridSize) -> usize {
        GridLayout::new(dims, level_resolutions(size.levels, size.base, size.finest), size.log2_table_size).rows
    }

    pub fn output_dim(&self) -> usize {
        self.layout.resolutions.len() * self.features
    }

    /// `x: [N, dims]` in `[0, 1]` to interpolated features `[N, levels * features]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.interpolate(&self.lookup(x))
    }

    pub fn lookup(&self, x: Tensor<2>) -> GridLookup {
        self.layout.lookup(x)
    }

    /// Features from a lookup: gather the corner entries and blend them.
    pub fn interpolate(&self, lookup: &GridLookup) -> Tensor<2> {
        lookup.gather(self.table.val())
    }
}

/// Table rows and interpolation weights for a set of points.
#[derive(Clone, Debug)]
pub struct GridLookup {
    /// `[N * levels * corners]`: the stacked table's row for each corner.
    pub rows: Tensor<1, Int>,
    /// `[N, levels, corners, 1]`.
    pub weight: Tensor<4>,
    pub points: usize,
    pub corners: usize,
}

impl GridLookup {
    /// The weighted sums of the rows read from `table: [rows, F]`: `[N, levels * F]`.
    pub fn gather(&self, table: Tensor<2>) -> Tensor<2> {
        let [n, levels, corners, _] = self.weight.dims();
        let features = table.dims()[1];
        let weights = self.weight.clone().reshape([n * levels, corners, 1]);
        kernels::gather_sum::gather_sum(table, self.rows.clone(), weights).reshape([n, levels * features])
    }
}

/// `(c * prime) mod 2^k` for `c < 2^15` and `k <= 24`, with every intermediate below 2^31,
/// so it is exact in i32 on any backend. Splitting the prime into 12-bit halves keeps the
/// products small; the result equals instant-ngp's u32 hash modulo the table size.
fn mul_mod(c: Tensor<3, Int>, prime: u64, k: usize) -> Tensor<3, Int> {
    let modulus = 1u64 << k;
    let p = prime % modulus;
    if p == 1 {
        return c.bitwise_and_scalar((modulus - 1) as i64);
    }
    let lo = (p & 0xfff) as i64;
    let hi = (p >> 12) as i64;
    let low_part = c.clone() * lo;
    let high_part = if k > 12 { (c * hi).bitwise_and_scalar(((1u64 << (k - 12)) - 1) as i64) * 4096 } else { low_part.zeros_like() };
    (low_part + high_part).bitwise_and_scalar((modulus - 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tensor hash must equal instant-ngp's u32 hash for every coordinate we can meet.
    #[test]
    fn device_hash_matches_u32_hash() {
        let device = Device::flex();
        let values: Vec<i32> = (0..2000).map(|i| i * 16 + 7).collect(); // up to ~32k
        let c = Tensor::<3, Int>::from_data(TensorData::new(values.clone(), [1, values.len(), 1]), &device);
        for k in [4usize, 12, 13, 19, 24] {
            for prime in PRIMES {
                let got: Vec<i64> = mul_mod(c.clone(), prime, k).into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
                for (v, g) in values.iter().zip(got) {
                    let want = ((*v as u32).wrapping_mul(prime as u32) as u64) & ((1 << k) - 1);
                    assert_eq!(g as u64, want, "c={v} prime={prime} k={k}");
                }
            }
        }
    }

    /// Interpolation against a plain-Rust reference on a dense 2-D level.
    #[test]
    fn dense_level_interpolates_bilinearly() {
        let device = Device::flex();
        let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(1);
        let grid = HashGrid::new(2, GridSize { levels: 1, features: 1, log2_table_size: 12, base: 5, finest: 5 }, &mut rng, &device);
        let table: Vec<f32> = grid.table.val().into_data().try_to_vec::<f32>().unwrap();
        let points = [[0.0f32, 0.0], [1.0, 1.0], [0.3, 0.7], [0.99, 0.01], [0.5, 0.25]];
        let x = Tensor::<2>::from_data(TensorData::new(points.concat(), [points.len(), 2]), &device);
        let got: Vec<f32> = grid.forward(x).into_data().try_to_vec::<f32>().unwrap();
        for (p, g) in points.iter().zip(got) {
            let (px, py) = (p[0] * 4.0, p[1] * 4.0);
            let (cx, cy) = (px.floor().min(3.0), py.floor().min(3.0));
            let (fx, fy) = (px - cx, py - cy);
            let at = |x: f32, y: f32| table[(x as usize) + 5 * (y as usize)];
            let want = at(cx, cy) * (1.0 - fx) * (1.0 - fy)
                + at(cx + 1.0, cy) * fx * (1.0 - fy)
                + at(cx, cy + 1.0) * (1.0 - fx) * fy
                + at(cx + 1.0, cy + 1.0) * fx * fy;
            assert!((g - want).abs() < 1e-6, "{p:?}: {g} vs {want}");
        }
    }

    fn host_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// The host lookup must give exactly the tensor lookup's rows and weights: dense and hashed
    /// levels, 2-D and 3-D, points on the borders, outside the box and at random.
    #[test]
    fn host_lookup_equals_tensor_lookup() {
        let device = Device::flex();
        let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(3);
        for dims in [2usize, 3] {
            // Resolutions 2, 6, 15, 40, ... 2048 over 2^10 entries per level: the coarsest
            // levels are dense, the rest hashed.
            let grid = HashGrid::new(dims, GridSize { levels: 8, features: 2, log2_table_size: 10, base: 2, finest: 2048 }, &mut rng, &device);
            assert!(grid.layout.dense.iter().any(|&b| b) && grid.layout.dense.iter().any(|&b| !b));
            let mut points: Vec<f32> = vec![0.0; dims];
            points.extend(vec![1.0; dims]);
            points.extend((0..dims).map(|a| if a == 0 { -0.25 } else { 1.5 }));
            points.extend((0..200 * dims).map(|_| rand::RngExt::random_range(&mut rng, 0.0..1.0f32)));
            let n = points.len() / dims;
            let x = Tensor::<2>::from_data(TensorData::new(points, [n, dims]), &device);
            let host = grid.layout.lookup_on_host(x.clone());
            let tensors = grid.layout.lookup_with_tensors(x);
            let rows = |t: Tensor<1, Int>| t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap();
            assert_eq!(rows(host.rows), rows(tensors.rows), "{dims}-D rows");
            assert_eq!(host_values(host.weight), host_values(tensors.weight), "{dims}-D weights");
        }
    }

    /// Points that carry a gradient take the tensor path, so the gradient reaches them.
    #[test]
    fn tracked_points_get_gradients_through_the_lookup() {
        let device = Device::flex().autodiff();
        let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(4);
        let grid = HashGrid::new(3, GridSize { levels: 4, features: 2, log2_table_size: 12, base: 4, finest: 64 }, &mut rng, &device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![0.31f32, 0.52, 0.77, 0.12, 0.9, 0.43], [2, 3]), &device).require_grad();
        let grads = grid.forward(x.clone()).sum().backward();
        let g = host_values(x.grad(&grads).expect("a gradient for the points"));
        assert!(g.iter().any(|v| *v != 0.0), "zero gradient {g:?}");
    }
}
