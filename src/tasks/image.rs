//! Image fitting: the field maps pixel positions in `[0, 1]^2` to the pixel's channels.

use std::path::{Path, PathBuf};

use anyhow::Result;
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
    coords: Tensor<2>,
    targets: Tensor<2>,
    batch_size: usize,
    loss: String,
    chunk: usize,
}

impl ImageTask {
    pub fn new(config: &Config, device: &Device) -> Result<Self> {
        let image = super::image_target(config)?;
        let n = image.width * image.height;
        let coords = Tensor::from_data(TensorData::new(Image::pixel_centres(image.width, image.height), [n, 2]), device);
        let targets = Tensor::from_data(TensorData::new(image.pixels.clone(), [n, image.channels]), device);
        Ok(Self {
            image,
            coords,
            targets,
            batch_size: config.task.batch_size,
            loss: config.train.loss.clone(),
            chunk: config.eval.chunk_size,
        })
    }

    pub fn pixel_count(&self) -> usize {
        self.image.width * self.image.height
    }
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
        Some(sobel_importance(&self.image))
    }

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
        Ok(vec![
            ("psnr".into(), metrics::psnr(&prediction, &self.image.pixels)),
            ("ssim".into(), metrics::ssim(&prediction, &self.image.pixels, w, h, c)),
        ])
    }

    fn write_outputs(&self, field: &Field, device: &Device, run_dir: &Path) -> Result<Vec<PathBuf>> {
        let (w, h, c) = (self.image.width, self.image.height, self.image.channels);
        let prediction = render_image(field, w, h, self.chunk, device);
        image::save(&run_dir.join("reconstruction"), w, h, c, &prediction, self.image.format)
    }
}
