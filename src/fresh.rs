//! FreSh, frequency shifting (Kania et al., ICLR 2025): before training, pick the value of one
//! embedding hyperparameter (Fourier σ, SIREN ω0, hash-grid finest resolution, NeuRBF's sinusoid
//! frequencies) whose untrained field has an output spectrum closest to the target's.
//!
//! A spectrum is the DFT magnitude summed over channels, then summed along anti-diagonals
//! (`i + j = k`: one L1 frequency shell), the DC bin dropped and the first `bins` shells kept.
//! Two spectra are compared by the 1-D Wasserstein distance of their normalised histograms;
//! each candidate's score is the mean over several random initialisations.

use std::time::Instant;

use anyhow::{Result, bail};
use image::{ImageBuffer, Luma, imageops};
use rustfft::{FftPlanner, num_complex::Complex};
use serde::{Deserialize, Serialize};

/// `[fresh]`: score candidate values of one embedding hyperparameter by the spectrum of the
/// untrained field's output and train with the closest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FreshConfig {
    /// The dotted model key FreSh sets (one of `PARAMETERS`).
    pub parameter: String,
    /// Values to score, each one the key accepts.
    pub candidates: Vec<toml::Value>,
    /// Spectrum bins compared, after the DC bin is dropped.
    #[serde(default = "default_bins")]
    pub bins: usize,
    /// Random initialisations averaged per candidate.
    #[serde(default = "default_inits")]
    pub inits: usize,
    /// Written into the run's config once FreSh has chosen; a config that has it skips the search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<toml::Value>,
}

fn default_bins() -> usize {
    64
}

fn default_inits() -> usize {
    10
}

/// The embedding hyperparameters FreSh can choose.
pub const PARAMETERS: &[&str] = &["model.sigma", "model.omega0", "model.finest_resolution", "model.rbf_frequencies"];

impl FreshConfig {
    pub fn validate(&self, source: &str) -> Result<()> {
        crate::config::check_choice(source, "fresh.parameter", &self.parameter, PARAMETERS)?;
        if self.candidates.is_empty() {
            bail!("{source}: fresh.candidates must list at least one value");
        }
        if self.bins < 2 {
            bail!("{source}: fresh.bins must be at least 2");
        }
        crate::config::at_least_one(source, &[("fresh.inits", self.inits)])
    }

    /// The model key FreSh sets, without `model.`.
    pub fn model_key(&self) -> &str {
        self.parameter.trim_start_matches("model.")
    }
}

/// A signal sampled on a regular grid: `values` is `[N, channels]` with the points in row-major
/// order over `dims` (slowest axis first: `[height, width]` for images, `[z, y, x]` for volumes).
#[derive(Debug, Clone)]
pub struct Signal {
    pub dims: Vec<usize>,
    pub channels: usize,
    pub values: Vec<f32>,
}

/// Largest side FreSh's spectra use; larger signals are resized down first.
const MAX_SIDE: usize = 1024;

/// The shell spectrum of `signal`: bins `1..=bins` (DC dropped), not normalised.
pub fn spectrum(signal: &Signal, bins: usize) -> Result<Vec<f64>> {
    let (side, planes) = square_planes(signal)?;
    let d = signal.dims.len();
    if bins + 1 > side {
        bail!("FreSh's spectrum has {} bins on a {side}-sample signal; fresh.bins = {bins} is too many", side - 1);
    }
    let dims = vec![side; d];
    let mut magnitude = vec![0.0f64; side.pow(d as u32)];
    let mut planner = FftPlanner::<f64>::new();
    for plane in planes {
        let mut buffer: Vec<Complex<f64>> = plane.iter().map(|&v| Complex::new(v as f64, 0.0)).collect();
        fft_nd(&mut buffer, &dims, &mut planner);
        for (m, c) in magnitude.iter_mut().zip(&buffer) {
            *m += c.norm();
        }
    }
    let mut shells = vec![0.0f64; bins + 1];
    for (index, &m) in magnitude.iter().enumerate() {
        let mut rest = index;
        let mut coords = [0usize; 3];
        for a in (0..d).rev() {
            coords[a] = rest % side;
            rest /= side;
        }
        let k: usize = coords[..d].iter().sum();
        if k <= bins && (d != 2 || keeps(coords[0], coords[1], side)) {
            shells[k] += m;
        }
    }
    Ok(shells[1..].to_vec())
}

/// FreSh's mask of the 2-D DFT: the upper-left anti-triangle that holds each frequency once
/// (the rest are complex conjugates of it). Every shell `k < n / 2` is kept whole.
pub fn keeps(i: usize, j: usize, n: usize) -> bool {
    let half = n / 2;
    let in_triangle = i + j < n || (i + j == n && (1..=half).contains(&i));
    // Row 0 and column 0 repeat themselves past the middle.
    in_triangle && !(i == 0 && j > half) && !(j == 0 && i > half)
}

/// 1-D Wasserstein distance between two histograms on the bins `0..K` (unit spacing), each
/// normalised to sum 1: the L1 distance between their cumulative sums. Infinite when either
/// histogram is empty (an untrained field whose output is flat has no spectrum to match).
pub fn wasserstein(p: &[f64], q: &[f64]) -> f64 {
    assert_eq!(p.len(), q.len(), "spectra of different lengths");
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    if !(sp > 1e-30 && sq > 1e-30) {
        return f64::INFINITY;
    }
    let (mut cp, mut cq, mut distance) = (0.0, 0.0, 0.0);
    for k in 0..p.len().saturating_sub(1) {
        cp += p[k] / sp;
        cq += q[k] / sq;
        distance += (cp - cq).abs();
    }
    distance
}

/// One candidate's score.
#[derive(Debug, Clone)]
pub struct Score {
    pub candidate: toml::Value,
    /// Mean Wasserstein distance over the initialisations.
    pub distance: f64,
    pub std_error: f64,
}

#[derive(Debug, Clone)]
pub struct FreshReport {
    pub parameter: String,
    /// Spectrum bins compared: the requested count, or fewer when the signal is small.
    pub bins: usize,
    pub scores: Vec<Score>,
    /// Index of the chosen candidate in `scores`.
    pub choice: usize,
    pub seconds: f64,
}

impl FreshReport {
    pub fn chosen(&self) -> &toml::Value {
        &self.scores[self.choice].candidate
    }
}

/// Score every candidate: `output(i, seed)` is the untrained field's output for candidate `i`
/// initialised from `seed`, on the target's grid. Seeds `0..inits` are the same for every
/// candidate, so candidates differ only in the hyperparameter.
pub fn search(
    parameter: &str,
    target: &Signal,
    candidates: &[toml::Value],
    bins: usize,
    inits: usize,
    mut output: impl FnMut(usize, u64) -> Result<Signal>,
) -> Result<FreshReport> {
    let start = Instant::now();
    // A signal of side n has shells up to n - 1 (FreSh crops what there is).
    let side = target.dims.iter().copied().min().unwrap_or(0).min(MAX_SIDE);
    let bins = bins.min(side.saturating_sub(1)).max(1);
    let target_spectrum = spectrum(target, bins)?;
    let mut scores = Vec::with_capacity(candidates.len());
    for (i, candidate) in candidates.iter().enumerate() {
        let mut distances = Vec::with_capacity(inits);
        for seed in 0..inits as u64 {
            let out = output(i, seed)?;
            distances.push(wasserstein(&target_spectrum, &spectrum(&out, bins)?));
        }
        let n = distances.len() as f64;
        let distance = distances.iter().sum::<f64>() / n;
        let variance = if distances.len() > 1 { distances.iter().map(|d| (d - distance).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        scores.push(Score { candidate: candidate.clone(), distance, std_error: (variance / n).sqrt() });
    }
    let choice =
        scores.iter().enumerate().filter(|(_, s)| s.distance.is_finite()).min_by(|a, b| a.1.distance.total_cmp(&b.1.distance)).map(|(i, _)| i);
    let Some(choice) = choice else {
        bail!("FreSh: no candidate of {parameter} gives the untrained field any spectrum (its output is flat)");
    };
    Ok(FreshReport { parameter: parameter.to_string(), bins, scores, choice, seconds: start.elapsed().as_secs_f64() })
}

/// The signal's channel planes on a square (cubic) grid of side `min(sides, 1024)`. A 2-D signal
/// that is not square, or too large, is resized (antialiased bilinear) without keeping its
/// aspect ratio, as FreSh does; volumes must already be cubic.
fn square_planes(signal: &Signal) -> Result<(usize, Vec<Vec<f32>>)> {
    let d = signal.dims.len();
    let n: usize = signal.dims.iter().product();
    let c = signal.channels;
    if !(2..=3).contains(&d) || signal.values.len() != n * c || n == 0 {
        bail!("FreSh needs a 2-D or 3-D signal with {c} channels per sample");
    }
    let planes: Vec<Vec<f32>> = (0..c).map(|ch| signal.values.iter().skip(ch).step_by(c).copied().collect()).collect();
    let side = signal.dims.iter().copied().min().unwrap_or(0).min(MAX_SIDE);
    if signal.dims.iter().all(|&s| s == side) {
        return Ok((side, planes));
    }
    if d == 3 {
        bail!("FreSh's 3-D spectrum needs a cubic grid of at most {MAX_SIDE} per side, got {:?}", signal.dims);
    }
    let (h, w) = (signal.dims[0] as u32, signal.dims[1] as u32);
    let resized = planes
        .into_iter()
        .map(|plane| {
            let image = ImageBuffer::<Luma<f32>, Vec<f32>>::from_raw(w, h, plane).expect("plane matches its size");
            imageops::resize(&image, side as u32, side as u32, imageops::FilterType::Triangle).into_raw()
        })
        .collect();
    Ok((side, resized))
}

/// In-place DFT along every axis of a row-major array.
fn fft_nd(buffer: &mut [Complex<f64>], dims: &[usize], planner: &mut FftPlanner<f64>) {
    let total = buffer.len();
    for (axis, &len) in dims.iter().enumerate() {
        let stride: usize = dims[axis + 1..].iter().product();
        let fft = planner.plan_fft_forward(len);
        let mut line = vec![Complex::new(0.0, 0.0); len];
        for start in 0..total {
            // Each line starts where the axis' index is 0.
            if !(start / stride).is_multiple_of(len) {
                continue;
            }
            for (t, v) in line.iter_mut().enumerate() {
                *v = buffer[start + t * stride];
            }
            fft.process(&mut line);
            for (t, v) in line.iter().enumerate() {
                buffer[start + t * stride] = *v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_matches_fresh_for_n_8() {
        let rows = ["11111000", "11111111", "11111110", "11111100", "11111000", "01100000", "01000000", "00000000"];
        for (i, row) in rows.iter().enumerate() {
            let got: String = (0..8).map(|j| if keeps(i, j, 8) { '1' } else { '0' }).collect();
            assert_eq!(&got, row, "row {i}");
        }
    }

    fn sinusoid(n: usize, fx: usize, fy: usize, channels: usize) -> Signal {
        let mut values = Vec::with_capacity(n * n * channels);
        for y in 0..n {
            for x in 0..n {
                let phase = std::f64::consts::TAU * (fx * x + fy * y) as f64 / n as f64;
                for c in 0..channels {
                    values.push((phase.sin() * (c + 1) as f64 + 0.3) as f32);
                }
            }
        }
        Signal { dims: vec![n, n], channels, values }
    }

    #[test]
    fn pure_sinusoid_peaks_in_its_shell() {
        for (fx, fy) in [(3, 0), (2, 5), (0, 7)] {
            let s = spectrum(&sinusoid(64, fx, fy, 3), 20).unwrap();
            let peak = s.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            // Bin index b holds shell b + 1 (DC dropped).
            assert_eq!(peak + 1, fx + fy, "sin({fx} x + {fy} y): {s:?}");
            let rest: f64 = s.iter().enumerate().filter(|(i, _)| *i != peak).map(|(_, v)| v).sum();
            assert!(rest < 1e-6 * s[peak], "energy outside the peak: {rest}");
        }
        // A 3-D sinusoid along z: its shell is its frequency too.
        let n = 16;
        let values: Vec<f32> = (0..n * n * n).map(|i| ((std::f64::consts::TAU * 4.0 * (i / (n * n)) as f64 / n as f64).cos()) as f32).collect();
        let s = spectrum(&Signal { dims: vec![n, n, n], channels: 1, values }, 8).unwrap();
        assert!(s[3] > 0.0 && s.iter().enumerate().all(|(i, v)| i == 3 || *v < 1e-6 * s[3]), "{s:?}");
    }

    #[test]
    fn wasserstein_is_zero_for_equal_spectra_and_grows_with_shift() {
        let delta = |at: usize| (0..32).map(|i| if i == at { 2.0 } else { 0.0 }).collect::<Vec<f64>>();
        assert_eq!(wasserstein(&delta(5), &delta(5)), 0.0);
        // Scale does not matter, only shape.
        let p: Vec<f64> = (0..32).map(|i| (i as f64 * 0.3).exp()).collect();
        let q: Vec<f64> = p.iter().map(|v| v * 7.0).collect();
        assert!(wasserstein(&p, &q) < 1e-12);
        let mut last = 0.0;
        for b in 6..20 {
            let d = wasserstein(&delta(5), &delta(b));
            assert!((d - (b - 5) as f64).abs() < 1e-12, "two deltas {} bins apart: {d}", b - 5);
            assert!(d > last);
            last = d;
        }
    }

    #[test]
    fn non_square_signals_are_resized_to_the_short_side() {
        let signal = Signal { dims: vec![40, 64], channels: 1, values: (0..40 * 64).map(|i| (i % 7) as f32).collect() };
        let (side, planes) = square_planes(&signal).unwrap();
        assert_eq!((side, planes[0].len()), (40, 1600));
        assert!(spectrum(&signal, 50).is_err(), "more bins than a 40-sample side holds");
    }
}
