//! Image metrics: PSNR and SSIM. Computed on the host in f64 from `[H, W, C]` pixels, both
//! clipped to [0, 1] first (data range 1).

/// PSNR in dB over all pixels and channels.
pub fn psnr(prediction: &[f32], target: &[f32]) -> f64 {
    assert_eq!(prediction.len(), target.len());
    let mse = prediction
        .iter()
        .zip(target)
        .map(|(&p, &t)| {
            let d = p.clamp(0.0, 1.0) as f64 - t.clamp(0.0, 1.0) as f64;
            d * d
        })
        .sum::<f64>()
        / prediction.len() as f64;
    psnr_from_mse(mse)
}

pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse <= 0.0 { f64::INFINITY } else { -10.0 * mse.log10() }
}

/// Mean SSIM as scikit-image's `structural_similarity(..., gaussian_weights=True, sigma=1.5,
/// data_range=1, channel_axis=-1)` computes it: an 11x11 Gaussian window (truncate 3.5),
/// `reflect` borders, sample covariances (N / (N - 1)), K1 = 0.01, K2 = 0.03, the border of
/// half a window cropped before averaging, then the mean over channels.
pub fn ssim(prediction: &[f32], target: &[f32], width: usize, height: usize, channels: usize) -> f64 {
    assert_eq!(prediction.len(), width * height * channels);
    assert_eq!(target.len(), prediction.len());
    let sigma = 1.5f64;
    let radius = (3.5 * sigma + 0.5) as usize;
    let mut kernel: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let d = i as f64 - radius as f64;
            (-0.5 * d * d / (sigma * sigma)).exp()
        })
        .collect();
    let total: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let win = 2 * radius + 1;
    let np = (win * win) as f64;
    let cov_norm = np / (np - 1.0);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));

    let mut sum = 0.0;
    for c in 0..channels {
        let channel = |src: &[f32]| -> Vec<f64> {
            (0..width * height).map(|i| src[i * channels + c].clamp(0.0, 1.0) as f64).collect()
        };
        let x = channel(prediction);
        let y = channel(target);
        let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
        let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
        let xy: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
        let [ux, uy, uxx, uyy, uxy] = [&x, &y, &xx, &yy, &xy].map(|img| gaussian_filter(img, width, height, &kernel));
        let (mut acc, mut count) = (0.0, 0usize);
        for row in radius..height.saturating_sub(radius) {
            for col in radius..width.saturating_sub(radius) {
                let i = row * width + col;
                let vx = cov_norm * (uxx[i] - ux[i] * ux[i]);
                let vy = cov_norm * (uyy[i] - uy[i] * uy[i]);
                let vxy = cov_norm * (uxy[i] - ux[i] * uy[i]);
                let num = (2.0 * ux[i] * uy[i] + c1) * (2.0 * vxy + c2);
                let den = (ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2);
                acc += num / den;
                count += 1;
            }
        }
        sum += if count > 0 { acc / count as f64 } else { f64::NAN };
    }
    sum / channels as f64
}

/// Separable Gaussian filter with scipy's `reflect` mode (`d c b a | a b c d | d c b a`).
fn gaussian_filter(img: &[f64], width: usize, height: usize, kernel: &[f64]) -> Vec<f64> {
    let radius = (kernel.len() / 2) as isize;
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let period = 2 * n;
        let mut j = i.rem_euclid(period);
        if j >= n {
            j = period - 1 - j;
        }
        j as usize
    };
    let mut tmp = vec![0.0; img.len()];
    for y in 0..height {
        for x in 0..width {
            let mut acc = 0.0;
            for (k, w) in kernel.iter().enumerate() {
                acc += w * img[y * width + reflect(x as isize + k as isize - radius, width)];
            }
            tmp[y * width + x] = acc;
        }
    }
    let mut out = vec![0.0; img.len()];
    for y in 0..height {
        for x in 0..width {
            let mut acc = 0.0;
            for (k, w) in kernel.iter().enumerate() {
                acc += w * tmp[reflect(y as isize + k as isize - radius, height) * width + x];
            }
            out[y * width + x] = acc;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_images_score_perfectly() {
        let img: Vec<f32> = (0..40 * 30 * 3).map(|i| ((i * 7919) % 256) as f32 / 255.0).collect();
        assert!(psnr(&img, &img).is_infinite());
        assert!((ssim(&img, &img, 40, 30, 3) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn psnr_of_known_error() {
        let a = vec![0.5f32; 100];
        let b = vec![0.6f32; 100];
        assert!((psnr(&a, &b) - 20.0).abs() < 1e-4);
        // Values are clipped before comparison.
        assert!(psnr(&[1.5f32], &[1.0]).is_infinite());
    }
}
