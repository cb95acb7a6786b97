//! NeuRBF's kernel initialisation: weighted K-Means for the centres, then each cluster's
//! weighted covariance for the kernel's shape (NeuRBF §3.3, `kc_init_v3` / `kw_init_v3`).
//!
//! Sums run in f64, as the authors do, so large images do not lose small clusters to rounding.

use anyhow::{Result, bail};
use rand::{RngExt, rngs::StdRng};
use rayon::prelude::*;

use super::knn::KdTree;

/// Points of the signal, weighted by how much detail is there (for images, the Sobel gradient
/// magnitude). Adaptive fields place their kernels by it.
#[derive(Debug, Clone)]
pub struct WeightedPoints {
    pub dims: usize,
    /// Flattened `[n, dims]`, in the field's input coordinates (`[0, 1]` per axis).
    pub points: Vec<f32>,
    pub weights: Vec<f32>,
}

/// Weighted Lloyd's K-Means. Starts from `clusters` distinct points drawn with probability
/// proportional to weight; an empty cluster keeps its previous centre. Returns `[clusters, dims]`.
pub fn weighted_kmeans(points: &[f32], weights: &[f64], dims: usize, clusters: usize, iterations: usize, rng: &mut StdRng) -> Result<Vec<f64>> {
    let candidates = weights.iter().filter(|&&w| w > 0.0).count();
    if clusters == 0 || clusters > candidates {
        bail!("cannot place {clusters} kernels: the target has {candidates} points with non-zero weight");
    }
    // Weighted sampling without replacement (Efraimidis-Spirakis): the largest u^(1/w) win.
    let mut keys: Vec<(f64, usize)> =
        weights.iter().enumerate().filter(|(_, w)| **w > 0.0).map(|(i, &w)| (rng.random::<f64>().max(f64::MIN_POSITIVE).ln() / w, i)).collect();
    keys.select_nth_unstable_by(clusters - 1, |a, b| b.0.total_cmp(&a.0));
    let mut centres: Vec<f64> = keys[..clusters].iter().flat_map(|&(_, i)| points[i * dims..(i + 1) * dims].iter().map(|&v| v as f64)).collect();

    for _ in 0..iterations {
        let labels = assign(points, dims, &centres);
        let mut sums = vec![0.0f64; clusters * dims];
        let mut mass = vec![0.0f64; clusters];
        for (i, &label) in labels.iter().enumerate() {
            let (l, w) = (label as usize, weights[i]);
            mass[l] += w;
            for a in 0..dims {
                sums[l * dims + a] += w * points[i * dims + a] as f64;
            }
        }
        for l in 0..clusters {
            if mass[l] > 0.0 {
                for a in 0..dims {
                    centres[l * dims + a] = sums[l * dims + a] / mass[l];
                }
            }
        }
    }
    Ok(centres)
}

/// Index of the nearest centre for every point.
pub fn assign(points: &[f32], dims: usize, centres: &[f64]) -> Vec<u32> {
    let as_f32: Vec<f32> = centres.iter().map(|&c| c as f32).collect();
    KdTree::new(&as_f32, dims).nearest_all(points, 1)
}

/// Each cluster's weighted covariance `[clusters, dims, dims]` (points assigned to their
/// nearest centre), widened by `1 / alpha` so kernels overlap their neighbours. Empty clusters
/// get a tiny diagonal (1e-10). Per-axis standard deviations are clipped to `[min_std, max_std]`
/// and off-diagonals to ±0.999 of what keeps the matrix positive definite.
pub fn weighted_covariances(points: &[f32], weights: &[f64], dims: usize, centres: &[f64], alpha: f64, min_std: f64, max_std: f64) -> Vec<f64> {
    let clusters = centres.len() / dims;
    let labels = assign(points, dims, centres);
    let dd = dims * dims;
    // Per-thread partial sums, merged: the outer products are the costly part on big images.
    let (cov, mass) = labels
        .par_iter()
        .enumerate()
        .fold(
            || (vec![0.0f64; clusters * dd], vec![0.0f64; clusters]),
            |(mut cov, mut mass), (i, &label)| {
                let (l, w) = (label as usize, weights[i]);
                mass[l] += w;
                for a in 0..dims {
                    let ra = points[i * dims + a] as f64 - centres[l * dims + a];
                    for b in 0..dims {
                        let rb = points[i * dims + b] as f64 - centres[l * dims + b];
                        cov[l * dd + a * dims + b] += w * ra * rb;
                    }
                }
                (cov, mass)
            },
        )
        .reduce(
            || (vec![0.0f64; clusters * dd], vec![0.0f64; clusters]),
            |(mut c1, mut m1), (c2, m2)| {
                c1.iter_mut().zip(c2).for_each(|(a, b)| *a += b);
                m1.iter_mut().zip(m2).for_each(|(a, b)| *a += b);
                (c1, m1)
            },
        );
    let mut cov = cov;
    for l in 0..clusters {
        let c = &mut cov[l * dd..(l + 1) * dd];
        if mass[l] > 0.0 {
            c.iter_mut().for_each(|v| *v /= mass[l] * alpha);
        } else {
            c.iter_mut().for_each(|v| *v = 0.0);
            (0..dims).for_each(|a| c[a * dims + a] = 1e-10);
        }
        for a in 0..dims {
            c[a * dims + a] = c[a * dims + a].clamp(min_std * min_std, max_std * max_std);
        }
        for a in 0..dims {
            for b in 0..dims {
                if a != b {
                    let limit = 0.999 * (c[a * dims + a] * c[b * dims + b]).sqrt();
                    c[a * dims + b] = c[a * dims + b].clamp(-limit, limit);
                }
            }
        }
    }
    cov
}

/// Inverse of a symmetric positive-definite 2x2 or 3x3 matrix (row-major), in closed form.
pub fn invert(m: &[f64], dims: usize) -> Vec<f64> {
    match dims {
        2 => {
            let det = m[0] * m[3] - m[1] * m[2];
            vec![m[3] / det, -m[1] / det, -m[2] / det, m[0] / det]
        }
        3 => {
            let cof = |r0: usize, c0: usize, r1: usize, c1: usize| m[r0 * 3 + c0] * m[r1 * 3 + c1] - m[r0 * 3 + c1] * m[r1 * 3 + c0];
            let adj = [
                cof(1, 1, 2, 2),
                -cof(0, 1, 2, 2),
                cof(0, 1, 1, 2),
                -cof(1, 0, 2, 2),
                cof(0, 0, 2, 2),
                -cof(0, 0, 1, 2),
                cof(1, 0, 2, 1),
                -cof(0, 0, 2, 1),
                cof(0, 0, 1, 1),
            ];
            let det = m[0] * adj[0] + m[1] * adj[3] + m[2] * adj[6];
            adj.iter().map(|v| v / det).collect()
        }
        _ => panic!("invert handles 2x2 and 3x3 matrices"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Three well-separated Gaussian blobs: K-Means must find their means, and the covariance
    /// step must recover each blob's spread (times 1/alpha). Lloyd's iterations find a local
    /// optimum of the start they get (a start with two centres in one blob stays there), so as
    /// with scikit-learn's `n_init` the best of ten seeded starts is judged.
    #[test]
    fn finds_known_clusters_and_their_spread() {
        let mut rng = StdRng::seed_from_u64(3);
        let truth = [[0.2, 0.2, 0.02, 0.01], [0.8, 0.3, 0.01, 0.03], [0.5, 0.8, 0.02, 0.02]];
        let mut points = Vec::new();
        let mut weights = Vec::new();
        for (b, &[cx, cy, sx, sy]) in truth.iter().enumerate() {
            for _ in 0..3000 {
                let (g1, g2) = gaussian_pair(&mut rng);
                points.extend([(cx + sx * g1) as f32, (cy + sy * g2) as f32]);
                weights.push(1.0 + b as f64); // uneven weights must not move the means
            }
        }
        // Zero-weight outliers must not attract a centre.
        points.extend([0.95f32, 0.95, 0.05, 0.95]);
        weights.extend([0.0, 0.0]);
        let inertia = |centres: &[f64]| -> f64 {
            let labels = assign(&points, 2, centres);
            labels
                .iter()
                .enumerate()
                .map(|(i, &l)| weights[i] * (0..2).map(|a| (points[2 * i + a] as f64 - centres[2 * l as usize + a]).powi(2)).sum::<f64>())
                .sum()
        };
        let centres = (0..10)
            .map(|seed| weighted_kmeans(&points, &weights, 2, 3, 10, &mut StdRng::seed_from_u64(seed)).unwrap())
            .min_by(|a, b| inertia(a).total_cmp(&inertia(b)))
            .unwrap();
        let cov = weighted_covariances(&points, &weights, 2, &centres, 0.5, 1e-4, 0.5);
        for &[cx, cy, sx, sy] in &truth {
            let l = (0..3)
                .min_by(|&a, &b| {
                    let d = |l: usize| (centres[2 * l] - cx).powi(2) + (centres[2 * l + 1] - cy).powi(2);
                    d(a).total_cmp(&d(b))
                })
                .unwrap();
            assert!((centres[2 * l] - cx).abs() < 2e-3 && (centres[2 * l + 1] - cy).abs() < 2e-3, "{centres:?}");
            let (vx, vy) = (cov[4 * l], cov[4 * l + 3]);
            assert!((vx / (sx * sx / 0.5) - 1.0).abs() < 0.1, "var x {vx} for sigma {sx}");
            assert!((vy / (sy * sy / 0.5) - 1.0).abs() < 0.1, "var y {vy} for sigma {sy}");
            assert!(cov[4 * l + 1].abs() < 0.1 * (vx * vy).sqrt());
        }
    }

    #[test]
    fn too_many_clusters_is_an_error_and_empty_clusters_keep_their_centre() {
        let mut rng = StdRng::seed_from_u64(1);
        let points = [0.0f32, 0.0, 1.0, 1.0, 1.0, 1.0];
        assert!(weighted_kmeans(&points, &[1.0, 1.0, 0.0], 2, 3, 5, &mut rng).is_err());
        // Two centres drawn from two coincident points: one cluster takes both, the other is
        // empty and must keep its centre rather than become NaN.
        let centres = weighted_kmeans(&points[2..], &[1.0, 1.0], 2, 2, 5, &mut rng).unwrap();
        assert!(centres.iter().all(|c| (c - 1.0).abs() < 1e-12), "{centres:?}");
        let cov = weighted_covariances(&points[2..], &[1.0, 1.0], 2, &centres, 0.5, 1e-3, 0.1);
        assert!(cov.iter().all(|v| v.is_finite()));
        assert!((cov[0] - 1e-6).abs() < 1e-15, "a degenerate cluster's width is clipped up to min_std");
    }

    #[test]
    fn inverse_times_matrix_is_identity() {
        let m2 = [2.0, 0.3, 0.3, 1.0];
        let m3 = [3.0, 0.2, -0.4, 0.2, 2.0, 0.1, -0.4, 0.1, 1.5];
        for (m, d) in [(&m2[..], 2), (&m3[..], 3)] {
            let inv = invert(m, d);
            for r in 0..d {
                for c in 0..d {
                    let v: f64 = (0..d).map(|k| m[r * d + k] * inv[k * d + c]).sum();
                    assert!((v - (r == c) as u8 as f64).abs() < 1e-12);
                }
            }
        }
    }

    fn gaussian_pair(rng: &mut StdRng) -> (f64, f64) {
        let u1: f64 = rng.random::<f64>().max(1e-300);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        (r * (std::f64::consts::TAU * u2).cos(), r * (std::f64::consts::TAU * u2).sin())
    }
}
