//! Turning a trained field into pictures and shapes: image fields evaluated on a pixel grid at
//! any size (zoom, super-resolution), SDFs sphere-traced from any camera or meshed by marching
//! cubes; volume rendering follows.

pub mod marching_cubes;
pub mod sphere_trace;
pub mod volume;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData, ops::IndexingUpdateOp};

use crate::data::image::Image;
use crate::fields::Field;
use crate::profile::read_floats;

/// What a picture of a field shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RenderMode {
    /// Colour: the image itself, a shaded surface, radiance.
    Rgb,
    Depth,
    Normal,
    Opacity,
}

impl RenderMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rgb => "rgb",
            Self::Depth => "depth",
            Self::Normal => "normal",
            Self::Opacity => "opacity",
        }
    }
}

/// `dir/base`, or `dir/base-2`, ... so that no earlier picture or mesh (`.png`, `.exr`, `.ply`)
/// is overwritten.
pub fn unused_stem(dir: &Path, base: &str) -> PathBuf {
    let taken = |p: &Path| ["png", "exr", "ply"].iter().any(|e| p.with_extension(e).exists());
    let mut stem = dir.join(base);
    let mut i = 2;
    while taken(&stem) {
        stem = dir.join(format!("{base}-{i}"));
        i += 1;
    }
    stem
}

/// `dir/base`, or `dir/base-2`, ... that does not exist yet.
pub fn unused_dir(dir: &Path, base: &str) -> PathBuf {
    let mut path = dir.join(base);
    let mut i = 2;
    while path.exists() {
        path = dir.join(format!("{base}-{i}"));
        i += 1;
    }
    path
}

/// Evaluate an image field at the pixel centres of a `width x height` grid over its whole
/// domain, `chunk` pixels at a time so memory stays bounded. Returns `[H, W, C]` pixels.
pub fn render_image(field: &Field, width: usize, height: usize, chunk: usize, device: &Device) -> Vec<f32> {
    let coords = Image::pixel_centres(width, height);
    evaluate_points(field, &coords, 2, chunk, device)
}

/// A field's outputs `[N, d_out]` at `points` (flat `[N, d_in]`), on the device, `chunk` points
/// per forward pass; nothing is read back.
pub fn evaluate_on_device(field: &Field, points: Vec<f32>, d_in: usize, chunk: usize, device: &Device) -> Tensor<2> {
    let n = points.len() / d_in;
    forward_in_chunks(field, Tensor::from_data(TensorData::new(points, [n, d_in]), device), chunk)
}

/// The field on the rows of `x`, `chunk` rows per forward pass so memory stays bounded.
pub fn forward_in_chunks(field: &Field, x: Tensor<2>, chunk: usize) -> Tensor<2> {
    let [n, _] = x.dims();
    if n <= chunk {
        return field.forward(x);
    }
    Tensor::cat((0..n).step_by(chunk.max(1)).map(|s| field.forward(x.clone().narrow(0, s, chunk.min(n - s)))).collect(), 0)
}

/// Row numbers as an index tensor on `device`, for `select` and `select_assign`.
pub fn row_index(rows: &[usize], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(rows.iter().map(|&r| r as i32).collect::<Vec<_>>(), [rows.len()]), device)
}

/// A picture `[n, 3]` on the device: `colours` (`[rows, 3]`) at `rows`, `background` elsewhere.
pub fn paint_rows(n: usize, rows: &[usize], colours: Tensor<2>, background: f32, device: &Device) -> Tensor<2> {
    let index = row_index(rows, device);
    let painted = Tensor::<2>::zeros([n, 1], device).select_assign(0, index.clone(), Tensor::ones([rows.len(), 1], device), IndexingUpdateOp::Add);
    Tensor::<2>::zeros([n, 3], device).select_assign(0, index, colours, IndexingUpdateOp::Add) + (painted.neg() + 1.0) * background
}

/// Evaluate a field at `points` (flat `[N, d_in]`), `chunk` points per forward pass.
pub fn evaluate_points(field: &Field, points: &[f32], d_in: usize, chunk: usize, device: &Device) -> Vec<f32> {
    let n = points.len() / d_in;
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let x = Tensor::<2>::from_data(TensorData::new(points[start * d_in..end * d_in].to_vec(), [end - start, d_in]), device);
        let y = field.forward(x);
        out.extend(read_floats(y));
        start = end;
    }
    out
}
