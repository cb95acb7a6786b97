//! Image fitting: the field maps pixel positions in `[0, 1]^2` to the pixel's channels.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::{Metrics, RenderRequest, Task, TaskOptions};
use crate::config::Config;
use crate::data::image::{self, Image};
use crate::fields::kmeans::WeightedPoints;
use crate::fields::{Field, FieldSpec, Prepared};
use crate::fresh::Signal;
use crate::metrics;
use crate::render::{RenderMode, render_image, unused_stem};

/// `task.kind = "image"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageOptions {
    /// The image (PNG, JPEG or EXR), relative to the config file.
    pub path: PathBuf,
    /// Centre crop `[width, height]` in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<[u32; 2]>,
    /// The fraction of pixels, drawn at random (the same ones for every run of an image), that
    /// training never sees; `holdout_psnr` then measures the field between training pixels
    /// (FreSh's protocol holds out 10 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<f64>,
    /// Pixels per step; 0 trains on every pixel every step.
    #[serde(default)]
    pub batch_size: usize,
}

/// An image task has no evaluation keys of its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageEval {}

impl TaskOptions for ImageOptions {
    fn path(&self) -> &Path {
        &self.path
    }

    fn validate(&self, source: &str) -> Result<()> {
        if let Some([w, h]) = self.crop
            && (w == 0 || h == 0)
        {
            bail!("{source}: task.crop must be two positive sizes [width, height]");
        }
        if self.holdout.is_some_and(|h| !(h > 0.0 && h < 1.0)) {
            bail!("{source}: task.holdout must be a fraction of the pixels, between 0 and 1 (exclusive)");
        }
        Ok(())
    }

    fn cam_coordinate(&self) -> (usize, &'static str) {
        (2, "an image is modulated by its 2-D pixel position")
    }
}

impl ImageOptions {
    /// The target image, loaded and cropped as training sees it.
    pub fn load(&self) -> Result<Image> {
        let image = Image::load(&self.path)?;
        match self.crop {
            Some([w, h]) => image.center_crop(w as usize, h as usize),
            None => Ok(image),
        }
    }
}

pub struct ImageTask {
    pub image: Image,
    /// The training pixels' positions and values (every pixel unless `task.holdout` is set).
    coords: Tensor<2>,
    targets: Tensor<2>,
    /// Pixels training never sees, in ascending order; empty without `task.holdout`.
    held_out: Vec<usize>,
    batch_size: usize,
    loss: String,
    seed: u64,
    chunk: usize,
    /// The full batch prepared for the field once (it is the same every step).
    prepared: Option<Prepared>,
}

impl ImageTask {
    pub fn new(options: &ImageOptions, config: &Config, device: &Device) -> Result<Self> {
        let image = options.load()?;
        let c = image.channels;
        if options.holdout.is_some() && image.width * image.height < 2 {
            bail!("task.holdout needs an image of at least 2 pixels (this one is {}x{})", image.width, image.height);
        }
        let held_out = options.holdout.map_or_else(Vec::new, |f| held_out_pixels(image.width * image.height, f));
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
            batch_size: options.batch_size,
            loss: config.train.loss.clone(),
            seed: config.train.seed,
            chunk: config.eval.chunk_size,
            prepared: None,
        })
    }

    /// How many pixels training draws from.
    pub fn pixel_count(&self) -> usize {
        self.image.width * self.image.height - self.held_out.len()
    }
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

/// Every pixel centre, weighted by the image's Sobel gradient magnitude (NeuRBF's kernel
/// placement for images).
pub fn sobel_importance(image: &Image) -> WeightedPoints {
    WeightedPoints { dims: 2, points: Image::pixel_centres(image.width, image.height), weights: image.sobel_magnitude() }
}

impl Task for ImageTask {
    fn kind(&self) -> &'static str {
        "image"
    }

    /// Pixel positions in, the image's channels out.
    fn field_spec(&self) -> FieldSpec {
        let image = &self.image;
        FieldSpec {
            d_in: 2,
            d_out: image.channels,
            resolution: image.width.max(image.height),
            shape: vec![image.width, image.height],
            importance: None,
            cam_dims: 2,
            radiance: false,
        }
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

    fn loss(&mut self, field: &Field, step: u64) -> Tensor<1> {
        let n = self.pixel_count();
        if self.batch_size == 0 || self.batch_size >= n {
            // Every pixel every step: the field's lookups are prepared once.
            let input = self.prepared.get_or_insert_with(|| field.prepare(self.coords.clone())).clone();
            return super::loss(&self.loss, field.forward_prepared(&input), self.targets.clone());
        }
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step);
        let picks: Vec<i32> = (0..self.batch_size).map(|_| rng.random_range(0..n as i32)).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(picks, [self.batch_size]), &self.coords.device());
        let outputs = field.forward_prepared(&field.prepare(self.coords.clone().select(0, index.clone())));
        super::loss(&self.loss, outputs, self.targets.clone().select(0, index))
    }

    fn evaluate(&self, field: &Field, device: &Device) -> Result<Metrics> {
        let (w, h, c) = (self.image.width, self.image.height, self.image.channels);
        let prediction = render_image(field, w, h, self.chunk, device);
        let mut metrics = vec![
            ("psnr".into(), metrics::psnr(&prediction, &self.image.pixels)),
            ("ssim".into(), metrics::ssim(&prediction, &self.image.pixels, w, h, c)),
        ];
        if !self.held_out.is_empty() {
            let pick = |values: &[f32]| -> Vec<f32> { self.held_out.iter().flat_map(|&i| values[c * i..c * i + c].iter().copied()).collect() };
            metrics.push(("holdout_psnr".into(), metrics::psnr(&pick(&prediction), &pick(&self.image.pixels))));
        }
        Ok(metrics)
    }

    fn write_outputs(&self, field: &Field, device: &Device, run_dir: &Path) -> Result<Vec<PathBuf>> {
        let (w, h, c) = (self.image.width, self.image.height, self.image.channels);
        let prediction = render_image(field, w, h, self.chunk, device);
        image::save(&run_dir.join("reconstruction"), w, h, c, &prediction, self.image.format)
    }

    fn viewing(&self) -> super::Viewing {
        super::Viewing::Plane { aspect: self.image.width as f32 / self.image.height as f32, width: self.image.width }
    }

    fn view_modes(&self) -> &'static [&'static str] {
        &["field", "target", "error", "field | target"]
    }

    /// A window over the image: the field at any zoom, the target (nearest pixel), or the error
    /// between them as a heat map (black: none, red to yellow: up to a fifth of the range).
    /// Outside the image is dark grey. "field | target" shows the same window of both, side by
    /// side.
    fn view(&self, field: &Field, request: &super::ViewRequest, device: &Device) -> Result<super::ViewPicture> {
        if request.mode == 3 {
            let half = super::ViewRequest { width: (request.width / 2).max(1), ..request.clone() };
            let (left, right) = (
                self.view(field, &super::ViewRequest { mode: 0, ..half.clone() }, device)?,
                self.view(field, &super::ViewRequest { mode: 1, ..half }, device)?,
            );
            let (w, h) = (left.width, left.height);
            let rgb = Tensor::cat(vec![left.rgb.reshape([h, w, 3]), right.rgb.reshape([h, w, 3])], 1).reshape([h * 2 * w, 3]);
            return Ok(super::ViewPicture { width: 2 * w, height: h, rgb });
        }
        let (w, h) = (request.width, request.height);
        let (iw, ih, c) = (self.image.width, self.image.height, self.image.channels);
        let aspect = iw as f32 / ih as f32;
        let per_pixel = request.span / w as f32;
        let coords: Vec<[f32; 2]> = (0..w * h)
            .map(|i| {
                let (px, py) = ((i % w) as f32 + 0.5 - 0.5 * w as f32, (i / w) as f32 + 0.5 - 0.5 * h as f32);
                [request.centre[0] + px * per_pixel, request.centre[1] + py * per_pixel * aspect]
            })
            .collect();
        let inside: Vec<usize> = (0..w * h).filter(|&i| coords[i].iter().all(|v| (0.0..1.0).contains(v))).collect();
        if inside.is_empty() {
            return Ok(super::ViewPicture { width: w, height: h, rgb: Tensor::full([w * h, 3], OUTSIDE, device) });
        }
        // The target's nearest pixel under each view pixel inside the image.
        let truth = || {
            let values: Vec<f32> = inside
                .iter()
                .flat_map(|&i| {
                    let p = coords[i];
                    let (x, y) = (((p[0] * iw as f32) as usize).min(iw - 1), ((p[1] * ih as f32) as usize).min(ih - 1));
                    self.image.pixels[(y * iw + x) * c..][..c].iter().copied()
                })
                .collect();
            Tensor::<2>::from_data(TensorData::new(values, [inside.len(), c]), device)
        };
        let predicted = || {
            let points: Vec<f32> = inside.iter().flat_map(|&i| coords[i]).collect();
            crate::render::evaluate_on_device(field, points, 2, self.chunk, device)
        };
        // Grey images show their one channel (and a grey-alpha image its grey) in all three.
        let as_rgb = |v: Tensor<2>| if c < 3 { v.narrow(1, 0, 1).repeat_dim(1, 3) } else { v.narrow(1, 0, 3) };
        let colours = match request.mode {
            1 => as_rgb(truth()),
            2 => {
                let error = (predicted() - truth()).abs().mean_dim(1);
                let e = (error * 5.0).clamp(0.0, 1.0);
                Tensor::cat(vec![(e.clone() * 2.0).clamp_max(1.0), (e.clone() * 2.0 - 1.0).clamp_min(0.0), e.zeros_like()], 1)
            }
            _ => as_rgb(predicted()),
        };
        let colours = colours.clamp(0.0, 1.0);
        // Zoomed in, every view pixel is inside the image: nothing to place.
        let rgb = if inside.len() == w * h { colours } else { crate::render::paint_rows(w * h, &inside, colours, OUTSIDE, device) };
        Ok(super::ViewPicture { width: w, height: h, rgb })
    }

    /// The image field at any size (zoom out of the pixel grid it was trained on).
    fn render(&self, field: &Field, request: &RenderRequest, device: &Device) -> Result<Vec<PathBuf>> {
        if request.view.is_some() || request.orbit.is_some() || request.mode != RenderMode::Rgb {
            bail!("--view, --orbit and --mode apply to SDF and radiance-field runs; an image run renders with --size only");
        }
        let (width, height) = request.size.unwrap_or((self.image.width, self.image.height));
        std::fs::create_dir_all(&request.out).with_context(|| format!("cannot create {}", request.out.display()))?;
        let stem = unused_stem(&request.out, &format!("image-{width}x{height}"));
        let pixels = render_image(field, width, height, self.chunk, device);
        image::save(&stem, width, height, self.image.channels, &pixels, self.image.format)
    }
}

/// The viewer's colour outside the image: dark grey.
const OUTSIDE: f32 = 0.15;

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
