//! Volume rendering of radiance fields, instant-ngp's way: an occupancy grid over the scene box
//! that marks where there is density, a marcher that steps along each ray through occupied cells
//! only (jumping over empty ones), and alpha compositing of the samples' densities and colours
//! front to back: `alpha_i = 1 - exp(-sigma_i dt_i)`, `T_i = prod_{j<i} (1 - alpha_j)`, colour
//! `sum_i T_i alpha_i c_i + T_n background`.
//!
//! Marching runs on the host (it decides which points the field sees); compositing runs on the
//! device with gradients (`composite`) or on the host for pictures (`composite_host`).

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, rngs::StdRng};
use rayon::prelude::*;

use crate::data::camera::ray_box;

/// Where there is density: `resolution^3` cells over the field's unit cube, each holding the
/// largest recent opacity-equivalent density (`density x step`) seen in it.
#[derive(Debug, Clone)]
pub struct OccupancyGrid {
    pub resolution: usize,
    pub values: Vec<f32>,
    pub occupied: Vec<bool>,
    /// Each refresh keeps `max(decay x old, new)`.
    pub decay: f32,
    /// A cell is occupied above `min(threshold, mean value)`.
    pub threshold: f32,
}

impl OccupancyGrid {
    /// Every cell occupied, as before the field has been looked at.
    pub fn new(resolution: usize, decay: f32, threshold: f32) -> Self {
        let n = resolution.pow(3);
        Self { resolution, values: vec![0.0; n], occupied: vec![true; n], decay, threshold }
    }

    /// The cell of a point in field coordinates (clamped into the grid).
    pub fn cell(&self, u: [f32; 3]) -> usize {
        let r = self.resolution;
        let i = u.map(|v| ((v * r as f32) as isize).clamp(0, r as isize - 1) as usize);
        i[0] + r * (i[1] + r * i[2])
    }

    pub fn is_occupied(&self, u: [f32; 3]) -> bool {
        self.occupied[self.cell(u)]
    }

    pub fn occupied_fraction(&self) -> f64 {
        self.occupied.iter().filter(|&&o| o).count() as f64 / self.occupied.len() as f64
    }

    /// The cells a refresh looks at: all of them while warming up, afterwards a quarter of the
    /// cells at random and as many occupied ones (instant-ngp's and nerfacc's schedule).
    pub fn cells_to_refresh(&self, warming_up: bool, rng: &mut StdRng) -> Vec<usize> {
        let n = self.values.len();
        if warming_up {
            return (0..n).collect();
        }
        let mut cells: Vec<usize> = (0..n / 4).map(|_| rng.random_range(0..n)).collect();
        let occupied: Vec<usize> = (0..n).filter(|&c| self.occupied[c]).collect();
        if occupied.len() > n / 4 {
            cells.extend((0..n / 4).map(|_| occupied[rng.random_range(0..occupied.len())]));
        } else {
            cells.extend(occupied);
        }
        cells
    }

    /// One random point in each cell, in field coordinates (flat `[cells, 3]`).
    pub fn points_in(&self, cells: &[usize], rng: &mut StdRng) -> Vec<f32> {
        let r = self.resolution;
        cells
            .iter()
            .flat_map(|&c| {
                let i = [c % r, (c / r) % r, c / (r * r)];
                i.map(|k| (k as f32 + rng.random::<f32>()) / r as f32)
            })
            .collect()
    }

    /// Fold in new opacities of `cells`, then mark the cells above `min(threshold, mean)` as
    /// occupied (nerfacc's rule), and those at it: a field whose density is the same everywhere
    /// (GNF's untrained head is) says nothing yet, so every cell stays occupied instead of none.
    pub fn refresh(&mut self, cells: &[usize], opacity: &[f32]) {
        for (&c, &v) in cells.iter().zip(opacity) {
            self.values[c] = (self.values[c] * self.decay).max(v);
        }
        let mean = self.values.iter().map(|&v| v as f64).sum::<f64>() / self.values.len() as f64;
        let threshold = self.threshold.min(mean as f32);
        for (o, &v) in self.occupied.iter_mut().zip(&self.values) {
            *o = v >= threshold;
        }
    }
}

/// A batch of rays' samples, packed ray after ray.
#[derive(Debug, Clone, Default)]
pub struct RaySamples {
    /// Field coordinates in `[0, 1]^3`, flat `[S, 3]`.
    pub positions: Vec<f32>,
    /// Distance of each sample along its ray (world units).
    pub t: Vec<f32>,
    /// The length of ray each sample stands for.
    pub dt: Vec<f32>,
    /// Ray r's samples are `offsets[r]..offsets[r + 1]`.
    pub offsets: Vec<usize>,
}

impl RaySamples {
    pub fn len(&self) -> usize {
        self.dt.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dt.is_empty()
    }

    pub fn rays(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Which ray each sample belongs to.
    pub fn ray_of_samples(&self) -> Vec<usize> {
        (0..self.rays()).flat_map(|r| std::iter::repeat_n(r, self.offsets[r + 1] - self.offsets[r])).collect()
    }

    /// Samples of each ray.
    pub fn counts(&self) -> Vec<usize> {
        self.offsets.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// Steps rays through the occupied cells of a box (world units) at a fixed step.
#[derive(Debug, Clone)]
pub struct Marcher {
    pub lo: [f32; 3],
    pub hi: [f32; 3],
    /// World length of one step.
    pub step: f32,
    /// Most samples a ray keeps.
    pub max_samples: usize,
}

impl Marcher {
    /// `steps` samples across the box's diagonal.
    pub fn new(lo: [f32; 3], hi: [f32; 3], steps: usize, max_samples: usize) -> Self {
        let diagonal = (0..3).map(|a| (hi[a] - lo[a]).powi(2)).sum::<f32>().sqrt();
        Self { lo, hi, step: diagonal / steps.max(1) as f32, max_samples }
    }

    /// World point to field coordinates.
    pub fn to_field(&self, p: [f32; 3]) -> [f32; 3] {
        [0, 1, 2].map(|a| (p[a] - self.lo[a]) / (self.hi[a] - self.lo[a]))
    }

    /// Samples of rays (flat `[R, 3]` origins and unit directions) at `t = entry + (k + j) step`
    /// for whole `k` and each ray's offset `j` in [0, 1) (`None`: 0.5, the interval midpoints),
    /// keeping those in occupied cells. Empty cells are crossed in one jump.
    pub fn march(&self, origins: &[f32], dirs: &[f32], grid: &OccupancyGrid, jitter: Option<&[f32]>) -> RaySamples {
        let rays = origins.len() / 3;
        let per_ray: Vec<(Vec<f32>, Vec<f32>)> = (0..rays)
            .into_par_iter()
            .map(|r| {
                let o = [origins[3 * r], origins[3 * r + 1], origins[3 * r + 2]];
                let d = [dirs[3 * r], dirs[3 * r + 1], dirs[3 * r + 2]];
                let offset = jitter.map_or(0.5, |j| j[r]);
                self.march_ray(o, d, offset, grid)
            })
            .collect();
        let mut samples = RaySamples { offsets: Vec::with_capacity(rays + 1), ..Default::default() };
        samples.offsets.push(0);
        for (positions, t) in per_ray {
            samples.positions.extend(positions);
            samples.dt.extend(std::iter::repeat_n(self.step, t.len()));
            samples.t.extend(t);
            samples.offsets.push(samples.t.len());
        }
        samples
    }

    fn march_ray(&self, o: [f32; 3], d: [f32; 3], offset: f32, grid: &OccupancyGrid) -> (Vec<f32>, Vec<f32>) {
        let (mut positions, mut ts) = (Vec::new(), Vec::new());
        let Some((t0, t1)) = ray_box(o, d, self.lo, self.hi) else { return (positions, ts) };
        let size = [0, 1, 2].map(|a| self.hi[a] - self.lo[a]);
        let r = grid.resolution as f32;
        let mut k = 0.0f32;
        while ts.len() < self.max_samples {
            let t = t0 + (k + offset) * self.step;
            if t >= t1 {
                break;
            }
            let u = self.to_field([0, 1, 2].map(|a| o[a] + t * d[a]));
            if grid.is_occupied(u) {
                positions.extend(u.map(|v| v.clamp(0.0, 1.0)));
                ts.push(t);
                k += 1.0;
                continue;
            }
            // Jump to the first step past this cell: the nearest cell face along the ray.
            let mut exit = f32::INFINITY;
            for a in 0..3 {
                let du = d[a] / size[a];
                if du.abs() > 1e-12 {
                    let cell = (u[a] * r).floor();
                    let face = if du > 0.0 { (cell + 1.0) / r } else { cell / r };
                    exit = exit.min((face - u[a]) / du);
                }
            }
            let next = ((t + exit.max(0.0) - t0) / self.step - offset).ceil();
            k = next.max(k + 1.0);
        }
        (positions, ts)
    }
}

/// The largest optical depth one sample contributes (`exp(-50)` is far below any pixel's step).
const MAX_OPTICAL_DEPTH: f32 = 50.0;

/// Rays' colour, opacity and expected depth.
#[derive(Debug, Clone)]
pub struct Composited<T> {
    /// `[R, 3]`.
    pub rgb: T,
    /// `[R]` or `[R, 1]`: the accumulated weight `1 - T_n`.
    pub opacity: T,
    /// `[R]` or `[R, 1]`: `sum_i w_i t_i` (zero where nothing was hit).
    pub depth: T,
}

/// Alpha compositing on the device, with gradients: `density` `[S, 1]` and `rgb` `[S, 3]` of
/// `samples`, `background` `[R, 3]`. Rays are laid out in a `[R, longest]` table (empty slots
/// have zero density), so each ray's transmittance is an exact per-row cumulative sum.
pub fn composite(density: Tensor<2>, rgb: Tensor<2>, samples: &RaySamples, background: Tensor<2>) -> Composited<Tensor<2>> {
    let device = density.device();
    let (rays, s) = (samples.rays(), samples.len());
    let longest = samples.counts().into_iter().max().unwrap_or(0).max(1);
    // Slot (r, j) reads sample offsets[r] + j, or the appended zero sample `s`.
    let mut slots = vec![s as i32; rays * longest];
    let (mut dt, mut t) = (vec![0.0f32; rays * longest], vec![0.0f32; rays * longest]);
    for r in 0..rays {
        for (j, i) in (samples.offsets[r]..samples.offsets[r + 1]).enumerate() {
            slots[r * longest + j] = i as i32;
            dt[r * longest + j] = samples.dt[i];
            t[r * longest + j] = samples.t[i];
        }
    }
    let slots = Tensor::<1, Int>::from_data(TensorData::new(slots, [rays * longest]), &device);
    let table = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [rays, longest]), &device);
    let (dt, t) = (table(dt), table(t));
    let padded = |x: Tensor<2>, width: usize| Tensor::cat(vec![x, Tensor::zeros([1, width], &device)], 0).select(0, slots.clone());
    let sigma = padded(density, 1).reshape([rays, longest]);
    let colour = padded(rgb, 3).reshape([rays, longest, 3]);
    // Opaque is opaque: a bounded optical depth keeps an overflowing density from making
    // `inf - inf` in the transmittance (its gradient is zero once clamped, as it is anyway).
    let tau = (sigma * dt).clamp_max(MAX_OPTICAL_DEPTH);
    let before = tau.clone().cumsum(1) - tau.clone();
    let weights = (before.neg().exp()) * (tau.neg().exp().neg() + 1.0); // T_i alpha_i
    let opacity = weights.clone().sum_dim(1);
    let depth = (weights.clone() * t).sum_dim(1);
    let rgb = (weights.unsqueeze_dim::<3>(2) * colour).sum_dim(1).reshape([rays, 3]) + background * (opacity.clone().neg() + 1.0);
    Composited { rgb, opacity, depth }
}

/// Alpha compositing on the host (pictures, no gradients), stopping each ray once it is opaque:
/// `density` `[S]`, `rgb` `[S, 3]`.
pub fn composite_host(density: &[f32], rgb: &[f32], samples: &RaySamples, background: [f32; 3]) -> Composited<Vec<f32>> {
    let rays = samples.rays();
    let mut out = Composited { rgb: vec![0.0; 3 * rays], opacity: vec![0.0; rays], depth: vec![0.0; rays] };
    for r in 0..rays {
        let mut transmittance = 1.0f32;
        let mut colour = [0.0f32; 3];
        let mut depth = 0.0f32;
        for i in samples.offsets[r]..samples.offsets[r + 1] {
            let alpha = 1.0 - (-density[i] * samples.dt[i]).exp();
            let w = transmittance * alpha;
            (0..3).for_each(|c| colour[c] += w * rgb[3 * i + c]);
            depth += w * samples.t[i];
            transmittance *= 1.0 - alpha;
            if transmittance < 1e-4 {
                break;
            }
        }
        for c in 0..3 {
            out.rgb[3 * r + c] = colour[c] + transmittance * background[c];
        }
        out.opacity[r] = 1.0 - transmittance;
        out.depth[r] = depth;
    }
    out
}

/// A device tensor of host values `[rows, cols]`.
pub fn host_tensor(values: Vec<f32>, cols: usize, device: &Device) -> Tensor<2> {
    let rows = values.len() / cols.max(1);
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    /// A slab of constant density and colour in front of a background: closed form
    /// `c (1 - e^{-sigma L}) + bg e^{-sigma L}`, on the device and on the host.
    #[test]
    fn a_slab_composites_to_the_closed_form() {
        let device = Device::flex();
        let (sigma, length, n) = (2.5f32, 0.8f32, 40);
        let dt = length / n as f32;
        let samples = RaySamples {
            positions: vec![0.5; 3 * n],
            t: (0..n).map(|i| 1.0 + (i as f32 + 0.5) * dt).collect(),
            dt: vec![dt; n],
            offsets: vec![0, n, n],
        };
        let colour = [0.9f32, 0.2, 0.4];
        let bg = [0.1f32, 0.7, 1.0];
        let density = host_tensor(vec![sigma; n], 1, &device);
        let rgb = host_tensor(colour.repeat(n), 3, &device);
        let background = host_tensor([bg, bg].concat(), 3, &device);
        let out = composite(density, rgb, &samples, background);
        let got = values(out.rgb);
        let opacity = 1.0 - (-sigma * length).exp();
        for c in 0..3 {
            let want = colour[c] * opacity + bg[c] * (1.0 - opacity);
            assert!((got[c] - want).abs() < 1e-5, "channel {c}: {} vs {want}", got[c]);
            // The second ray has no samples: the background.
            assert!((got[3 + c] - bg[c]).abs() < 1e-6);
        }
        assert!((values(out.opacity)[0] - opacity).abs() < 1e-5);
        let host = composite_host(&vec![sigma; n], &colour.repeat(n), &samples, bg);
        assert!(host.rgb.iter().zip(&got).all(|(h, g)| (h - g).abs() < 1e-5), "{:?} vs {got:?}", host.rgb);
        // Expected depth of a uniform slab: 1 + 1/sigma - L e^{-sigma L} / (1 - e^{-sigma L}), weighted by opacity.
        let mean = 1.0 + 1.0 / sigma - length * (-sigma * length).exp() / opacity;
        assert!((host.depth[0] / host.opacity[0] - mean).abs() < 5e-3, "{} vs {mean}", host.depth[0] / host.opacity[0]);
    }

    /// The compositor's gradients with respect to densities and colours against central finite
    /// differences of the host compositor (f32, so a loose tolerance).
    #[test]
    fn compositor_gradients_match_finite_differences() {
        let device = Device::flex().autodiff();
        let samples =
            RaySamples { positions: vec![0.5; 15], t: vec![1.0, 1.1, 1.2, 2.0, 2.2], dt: vec![0.1, 0.1, 0.1, 0.2, 0.2], offsets: vec![0, 3, 5] };
        let density = vec![0.5f32, 3.0, 1.5, 0.7, 6.0];
        let rgb: Vec<f32> = (0..15).map(|i| (i as f32 * 0.37).sin() * 0.5 + 0.5).collect();
        let bg = [0.3f32, 0.6, 0.9];
        // Loss: a weighted sum of the output colours.
        let weights = [1.0f32, -2.0, 0.5, 0.3, 1.5, -1.0];
        let loss_host = |d: &[f32], c: &[f32]| -> f64 {
            let out = composite_host(d, c, &samples, bg);
            out.rgb.iter().zip(weights).map(|(v, w)| (*v * w) as f64).sum()
        };
        let d = host_tensor(density.clone(), 1, &device).require_grad();
        let c = host_tensor(rgb.clone(), 3, &device).require_grad();
        let background = host_tensor([bg, bg].concat(), 3, &device);
        let out = composite(d.clone(), c.clone(), &samples, background);
        let w = host_tensor(weights.to_vec(), 3, &device);
        let grads = (out.rgb * w).sum().backward();
        let gd = values(d.grad(&grads).unwrap());
        let gc = values(c.grad(&grads).unwrap());
        let h = 1e-2f32;
        for i in 0..density.len() {
            let (mut plus, mut minus) = (density.clone(), density.clone());
            plus[i] += h;
            minus[i] -= h;
            let fd = (loss_host(&plus, &rgb) - loss_host(&minus, &rgb)) / (2.0 * h as f64);
            assert!((gd[i] as f64 - fd).abs() < 2e-3, "density {i}: {} vs {fd}", gd[i]);
        }
        for i in 0..rgb.len() {
            let (mut plus, mut minus) = (rgb.clone(), rgb.clone());
            plus[i] += h;
            minus[i] -= h;
            let fd = (loss_host(&density, &plus) - loss_host(&density, &minus)) / (2.0 * h as f64);
            assert!((gc[i] as f64 - fd).abs() < 2e-3, "colour {i}: {} vs {fd}", gc[i]);
        }
    }

    /// Marching skips empty cells but never a sample of an occupied one: against stepping every
    /// sample and testing each.
    #[test]
    fn the_marcher_keeps_every_sample_in_occupied_cells() {
        use rand::SeedableRng;
        let mut rng = StdRng::seed_from_u64(5);
        let mut grid = OccupancyGrid::new(16, 0.95, 0.01);
        for o in grid.occupied.iter_mut() {
            *o = rng.random::<f32>() < 0.15;
        }
        let marcher = Marcher::new([-1.5; 3], [1.5; 3], 300, 10_000);
        let rays = 200;
        let mut origins = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..rays {
            let o = [0; 3].map(|_| rng.random::<f32>() * 8.0 - 4.0);
            let target = [0; 3].map(|_| rng.random::<f32>() * 2.0 - 1.0);
            let d = [0, 1, 2].map(|a| target[a] - o[a]);
            let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            origins.extend(o);
            dirs.extend(d.map(|v| v / n));
        }
        let jitter: Vec<f32> = (0..rays).map(|_| rng.random()).collect();
        let samples = marcher.march(&origins, &dirs, &grid, Some(&jitter));
        let mut total = 0;
        for r in 0..rays {
            let (o, d) = (&origins[3 * r..3 * r + 3], &dirs[3 * r..3 * r + 3]);
            let mut want = Vec::new();
            if let Some((t0, t1)) = ray_box([o[0], o[1], o[2]], [d[0], d[1], d[2]], marcher.lo, marcher.hi) {
                let mut k = 0.0;
                loop {
                    let t = t0 + (k + jitter[r]) * marcher.step;
                    if t >= t1 {
                        break;
                    }
                    if grid.is_occupied(marcher.to_field([0, 1, 2].map(|a| o[a] + t * d[a]))) {
                        want.push(t);
                    }
                    k += 1.0;
                }
            }
            let got = &samples.t[samples.offsets[r]..samples.offsets[r + 1]];
            assert_eq!(got.len(), want.len(), "ray {r}");
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "ray {r}: {g} vs {w}");
            }
            total += want.len();
        }
        assert!(total > 1000, "the test rays should cross occupied cells ({total} samples)");
    }

    #[test]
    fn a_refresh_marks_cells_above_the_threshold() {
        let mut grid = OccupancyGrid::new(4, 0.5, 0.01);
        assert!(grid.occupied.iter().all(|&o| o), "everything is occupied before the first refresh");
        let cells: Vec<usize> = (0..64).collect();
        let mut opacity = vec![0.0f32; 64];
        opacity[5] = 0.5;
        opacity[9] = 0.02;
        grid.refresh(&cells, &opacity);
        assert!(grid.occupied[5] && grid.occupied[9] && !grid.occupied[0]);
        grid.refresh(&cells, &vec![0.0; 64]);
        assert!(grid.occupied[5] && !grid.occupied[0]);
        assert_eq!(grid.values[5], 0.25, "decayed, not replaced by the smaller new value");
        // The threshold follows the mean when the mean is below it.
        assert!(grid.occupied[9]);
    }

    #[test]
    fn a_field_of_one_density_keeps_every_cell_occupied() {
        let mut grid = OccupancyGrid::new(4, 0.95, 0.01);
        let cells: Vec<usize> = (0..64).collect();
        grid.refresh(&cells, &vec![5.5e-6; 64]);
        assert!(grid.occupied.iter().all(|&o| o), "nothing is known yet: no cell may be dropped");
        let mut opacity = vec![5.5e-6f32; 64];
        opacity[3] = 1e-4;
        grid.refresh(&cells, &opacity);
        assert!(grid.occupied[3] && !grid.occupied[0], "once the density varies, the rule prunes again");
    }
}
