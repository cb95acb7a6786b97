//! Image fitting: the field maps pixel positions in `[0, 1]^2` to the pixel's channels.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use super::{Batch, Metrics, Task};
use crate::config::Config;
use crate::data::image::{self, Image};
use crate::fields::kmeans::WeightedPoints;
use crate::fields::{Field, FieldSpec};
use crate::fresh::Signal;
use crate::metrics;
use crate::render::render_image;

pub struct ImageTask {
    pub image: Image,
    /// The training pixels' positions and values (every pixel unless `task.holdout` is set).
    coords: Tensor<2>,
    targets: Tensor<2>,
    /// Pixels training never sees, in ascending order; empty without `task.holdout`.
    held_out: Vec<usize>,
    batch_size: usize,
    loss: String,
    chunk: usize,
}

impl ImageTask {
    pub fn new(config: &Config, device: &Device) -> Result<Self> {
        let image = super::image_target(config)?;
        let c = image.channels;
        check_holdout(config, &image)?;
        let held_out = config.task.holdout.map_or_else(Vec::new, |f| held_out_pixels(image.width * image.height, f));
        let mut trained = vec![true; image.width * image.height];
        for &i in &held_out {
            trained[i] = false;
        }
        let centres = Image::pixel_centres(image.width, image.height);
        let train_coords: Vec<f32> = centres.chunks(2).zip(&trained).filter(|&(_, &t)| t).flat_map(|(p, _)| p.iter().copied()).collect();
        let train_values: Vec<f32> = image.pixels.chunks(c).zip(&trained).filter(|&(_, &t)| t).flat_map(|(p, _)| p.iter().copied()).collect();
        let n = train_coords.len() / 2;
        let coords = Tensor::from_data(TensorData::new(train_coords, [n, 2]), device);
        let targets = Tensor::from_data(TensorData::new(train_values, [n, c]), device);
        Ok(Self {
            image,
            coords,
            targets,
            held_out,
            batch_size: config.task.batch_size,
            loss: config.train.loss.clone(),
            chunk: config.eval.chunk_size,
        })
    }

    /// How many pixels training draws from.
    pub fn pixel_count(&self) -> usize {
        self.image.width * self.image.height - self.held_out.len()
    }
}

/// Holding pixels out needs at least one to train on and one to score.
pub fn check_holdout(config: &Config, image: &Image) -> Result<()> {
    if config.task.holdout.is_some() && image.width * image.height < 2 {
        bail!("task.holdout needs an image of at least 2 pixels (this one is {}x{})", image.width, image.height);
    }
    Ok(())
}

/// A `fraction` of `n` pixels, drawn with a fixed seed so that every run on an image of that
/// size (each candidate of a grid search, say) holds out the same pixels. At least one pixel is
/// held out and at least one kept (`n` is at least 2).
fn held_out_pixels(n: usize, fraction: f64) -> Vec<usize> {
    let count = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1));
    let mut rng = StdRng::seed_from_u64(0x4E4F_4C44);
    let mut order: Vec<usize> = (0..n).collect();
    // A partial Fisher-Yates shuffle picks `count` distinct pixels.
    for i in 0..count {
        let j = rng.random_range(i..n);
        order.swap(i, j);
    }
    let mut picked = order[..count].to_vec();
    picked.sort_unstable();
    picked
}

/// Pixel positions in, the image's channels out.
pub fn image_field_spec(image: &Image) -> FieldSpec {
    FieldSpec {
        d_in: 2,
        d_out: image.channels,
        resolution: image.width.max(image.height),
        shape: vec![image.width, image.height],
        importance: None,
        cam_dims: 2,
    }
}

/// Every pixel centre, weighted by the image's Sobel gradient magnitude (NeuRBF's kernel
/// placement for images).
pub fn sobel_importance(image: &Image) -> WeightedPoints {
    WeightedPoints { dims: 2, points: Image::pixel_centres(image.width, image.height), weights: image.sobel_magnitude() }
}

impl Task for ImageTask {
    fn name(&self) -> &'static str {
        "image"
    }

    fn field_spec(&self) -> FieldSpec {
        image_field_spec(&self.image)
    }

    fn importance(&self) -> Option<WeightedPoints> {
        // Kernels are placed from the training pixels alone.
        let mut importance = sobel_importance(&self.image);
        for &i in &self.held_out {
            importance.weights[i] = 0.0;
        }
        Some(importance)
    }

    /// The whole image, held-out pixels included: FreSh's spectrum needs the full pixel grid.
    fn signal(&self) -> Option<(Vec<f32>, Signal)> {
        let (w, h, c) = (self.image.width, self.image.height, self.image.channels);
        Some((Image::pixel_centres(w, h), Signal { dims: vec![h, w], channels: c, values: self.image.pixels.clone() }))
    }

    fn batch(&self, step: u64, seed: u64) -> Batch {
        let n = self.pixel_count();
        if self.batch_size == 0 || self.batch_size >= n {
            return Batch { coords: self.coords.clone(), targets: self.targets.clone(), fixed: true };
        }
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step);
        let picks: Vec<i32> = (0..self.batch_size).map(|_| rng.random_range(0..n as i32)).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(picks, [self.batch_size]), &self.coords.device());
        Batch {
            coords: self.coords.clone().select(0, index.clone()),
            targets: self.targets.clone().select(0, index),
            fixed: false,
        }
    }

    fn loss(&self, outputs: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
        super::loss(&self.loss, outputs, targets)
    }

    fn evaluate(&self, field: &Field, device: &Device) -> Result<Metrics> {
        let (w, h, c) = (self.image.width, self.image.height, self.image.channels);
        let prediction = render_image(field, w, h, self.chunk, device);
        let mut metrics = vec![
            ("psnr".into(), metrics::psnr(&prediction, &self.image.pixels)),
            ("ssim".into(), metrics::ssim(&prediction, &self.image.pixels, w, h, c)),
        ];
        if !self.held_out.is_empty() {
            let pick = |values: &[f32]| -> Vec<f32> {
                self.held_out.iter().flat_map(|&i| values[c * i..c * i + c].iter().copied()).collect()
            };
            metrics.push(("holdout_psnr".into(), metrics::psnr(&pick(&prediction), &pick(&self.image.pixels))));
        }
        Ok(metrics)
    }

    fn write_outputs(&self, field: &Field, device: &Device, run_dir: &Path) -> Result<Vec<PathBuf>> {
        let (w, h, c) = (self.image.width, self.image.height, self.image.channels);
        let prediction = render_image(field, w, h, self.chunk, device);
        image::save(&run_dir.join("reconstruction"), w, h, c, &prediction, self.image.format)
    }
}

#[cfg(test)]
mod tests {
    use super::held_out_pixels;

    #[test]
    fn held_out_pixels_are_distinct_sorted_and_the_same_every_time() {
        let picked = held_out_pixels(1000, 0.1);
        assert_eq!(picked.len(), 100);
        assert!(picked.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert!(*picked.last().unwrap() < 1000);
        // Spread over the image, not a block at one end.
        assert!(picked[0] < 100 && picked[99] > 900, "{picked:?}");
        assert_eq!(picked, held_out_pixels(1000, 0.1));
        // Tiny fractions still hold one pixel out; huge ones keep one pixel in.
        assert_eq!(held_out_pixels(10, 0.001).len(), 1);
        assert_eq!(held_out_pixels(10, 0.999).len(), 9);
    }
}
