//! Images in and out: PNG (8/16-bit; grey, grey+alpha, RGB, RGBA), JPEG and OpenEXR (linear float).
//!
//! Pixels are kept as `f32` in row-major `[height, width, channels]`; 8- and 16-bit values are
//! scaled to [0, 1], EXR values are kept as they are (linear, may exceed 1).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use image::{DynamicImage, ImageBuffer, ImageFormat};

/// How the source was stored, which decides how a reconstruction is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// 8 bits per sample (PNG or JPEG).
    U8,
    /// 16 bits per sample (PNG).
    U16,
    /// 32-bit float, linear (EXR).
    F32,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub pixels: Vec<f32>,
    pub format: SampleFormat,
    pub source: PathBuf,
}

/// The most memory an image may decode into (about 350 megapixels of 16-bit RGBA).
const MAX_DECODED_BYTES: u64 = 4 << 30;

impl Image {
    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!("image {} does not exist", path.display());
        }
        let reader = image::ImageReader::open(path)
            .with_context(|| format!("cannot open image {}", path.display()))?
            .with_guessed_format()
            .with_context(|| format!("cannot read image {}", path.display()))?;
        let mut reader = reader;
        // Beyond image's 512 MB default (large photos, EXR), but bounded: a broken header must
        // not ask for more memory than a machine has.
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_DECODED_BYTES);
        reader.limits(limits);
        let decoded = reader.decode().map_err(|e| anyhow::anyhow!("cannot decode image {}: {e}", path.display()))?;
        let (width, height) = (decoded.width() as usize, decoded.height() as usize);
        if width == 0 || height == 0 {
            bail!("image {} is empty", path.display());
        }
        let (channels, pixels, format) = match decoded {
            DynamicImage::ImageLuma8(b) => (1, to_unit(b.as_raw(), 255.0), SampleFormat::U8),
            DynamicImage::ImageLumaA8(b) => (2, to_unit(b.as_raw(), 255.0), SampleFormat::U8),
            DynamicImage::ImageRgb8(b) => (3, to_unit(b.as_raw(), 255.0), SampleFormat::U8),
            DynamicImage::ImageRgba8(b) => (4, to_unit(b.as_raw(), 255.0), SampleFormat::U8),
            DynamicImage::ImageLuma16(b) => (1, to_unit(b.as_raw(), 65535.0), SampleFormat::U16),
            DynamicImage::ImageLumaA16(b) => (2, to_unit(b.as_raw(), 65535.0), SampleFormat::U16),
            DynamicImage::ImageRgb16(b) => (3, to_unit(b.as_raw(), 65535.0), SampleFormat::U16),
            DynamicImage::ImageRgba16(b) => (4, to_unit(b.as_raw(), 65535.0), SampleFormat::U16),
            // EXR: fit the colour channels; alpha in instant-ngp's images is constant 1.
            other => (3, other.to_rgb32f().into_raw(), SampleFormat::F32),
        };
        if pixels.iter().any(|v| !v.is_finite()) {
            bail!("image {} has NaN or infinite pixel values", path.display());
        }
        Ok(Self { width, height, channels, pixels, format, source: path.to_path_buf() })
    }

    /// The centred `width x height` window (offsets rounded down, as the PyTorch peers do).
    pub fn center_crop(&self, width: usize, height: usize) -> Result<Self> {
        if width > self.width || height > self.height {
            bail!("task.crop = [{width}, {height}] is larger than image {} ({}x{})", self.source.display(), self.width, self.height);
        }
        let (left, top) = ((self.width - width) / 2, (self.height - height) / 2);
        let c = self.channels;
        let mut pixels = Vec::with_capacity(width * height * c);
        for y in top..top + height {
            let row = (y * self.width + left) * c;
            pixels.extend_from_slice(&self.pixels[row..row + width * c]);
        }
        Ok(Self { width, height, pixels, ..self.clone() })
    }

    /// Pixel centres `(x + 0.5) / width, (y + 0.5) / height` in row-major order: `[H*W, 2]` flat.
    pub fn pixel_centres(width: usize, height: usize) -> Vec<f32> {
        let mut coords = Vec::with_capacity(width * height * 2);
        for y in 0..height {
            for x in 0..width {
                coords.push((x as f32 + 0.5) / width as f32);
                coords.push((y as f32 + 0.5) / height as f32);
            }
        }
        coords
    }

    /// Per-pixel gradient magnitude: Sobel filters normalised by 1/8 (kornia's), replicate
    /// padding, the L2 norm over every channel's x and y derivative. Row-major `[height, width]`.
    pub fn sobel_magnitude(&self) -> Vec<f32> {
        let (w, h, c) = (self.width as isize, self.height as isize, self.channels);
        let at = |x: isize, y: isize, ch: usize| self.pixels[((y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) as usize) * c + ch];
        let mut out = Vec::with_capacity((w * h) as usize);
        for y in 0..h {
            for x in 0..w {
                let mut sum = 0.0f32;
                for ch in 0..c {
                    let column = |x| at(x, y - 1, ch) + 2.0 * at(x, y, ch) + at(x, y + 1, ch);
                    let row = |y| at(x - 1, y, ch) + 2.0 * at(x, y, ch) + at(x + 1, y, ch);
                    let gx = (column(x + 1) - column(x - 1)) / 8.0;
                    let gy = (row(y + 1) - row(y - 1)) / 8.0;
                    sum += gx * gx + gy * gy;
                }
                out.push(sum.sqrt());
            }
        }
        out
    }
}

fn to_unit<T: Copy + Into<f32>>(raw: &[T], max: f32) -> Vec<f32> {
    raw.iter().map(|&v| v.into() / max).collect()
}

/// Write `[H, W, C]` float pixels in the source's sample format: PNG for 8/16-bit sources (JPEG
/// sources too, so nothing is lost to recompression), EXR for float sources. Returns the paths written.
pub fn save(path_stem: &Path, width: usize, height: usize, channels: usize, pixels: &[f32], format: SampleFormat) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    if format == SampleFormat::F32 {
        let exr = path_stem.with_extension("exr");
        let buffer: ImageBuffer<image::Rgb<f32>, Vec<f32>> =
            ImageBuffer::from_raw(width as u32, height as u32, expand_to_rgb(pixels, channels)).context("pixel buffer has the wrong size")?;
        DynamicImage::ImageRgb32F(buffer).save_with_format(&exr, ImageFormat::OpenExr).with_context(|| format!("cannot write {}", exr.display()))?;
        written.push(exr);
        // A viewable preview: linear values clipped to [0, 1] and sRGB-encoded.
        let preview: Vec<f32> = pixels.iter().map(|&v| linear_to_srgb(v.clamp(0.0, 1.0))).collect();
        written.extend(save(path_stem, width, height, channels, &preview, SampleFormat::U8)?);
        return Ok(written);
    }
    let png = path_stem.with_extension("png");
    let (w, h) = (width as u32, height as u32);
    let image = if format == SampleFormat::U16 {
        let raw: Vec<u16> = pixels.iter().map(|&v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16).collect();
        match channels {
            1 => ImageBuffer::from_raw(w, h, raw).map(DynamicImage::ImageLuma16),
            2 => ImageBuffer::from_raw(w, h, raw).map(DynamicImage::ImageLumaA16),
            3 => ImageBuffer::from_raw(w, h, raw).map(DynamicImage::ImageRgb16),
            _ => ImageBuffer::from_raw(w, h, raw).map(DynamicImage::ImageRgba16),
        }
    } else {
        let raw: Vec<u8> = pixels.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
        match channels {
            1 => ImageBuffer::from_raw(w, h, raw).map(DynamicImage::ImageLuma8),
            2 => ImageBuffer::from_raw(w, h, raw).map(DynamicImage::ImageLumaA8),
            3 => ImageBuffer::from_raw(w, h, raw).map(DynamicImage::ImageRgb8),
            _ => ImageBuffer::from_raw(w, h, raw).map(DynamicImage::ImageRgba8),
        }
    }
    .context("pixel buffer has the wrong size")?;
    image.save_with_format(&png, ImageFormat::Png).with_context(|| format!("cannot write {}", png.display()))?;
    written.push(png);
    Ok(written)
}

fn expand_to_rgb(pixels: &[f32], channels: usize) -> Vec<f32> {
    match channels {
        3 => pixels.to_vec(),
        1 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        _ => pixels.chunks(channels).flat_map(|p| [p[0], p[1.min(channels - 1)], p[2.min(channels - 1)]]).collect(),
    }
}

fn linear_to_srgb(v: f32) -> f32 {
    if v <= 0.003_130_8 { 12.92 * v } else { 1.055 * v.powf(1.0 / 2.4) - 0.055 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A horizontal ramp of slope 1/w per pixel: kornia's normalised Sobel gives 1/w per channel
    /// in x and 0 in y inside; replicate padding halves it on the left and right columns.
    #[test]
    fn sobel_of_a_ramp() {
        let (w, h, c) = (8usize, 5usize, 3usize);
        let pixels = (0..h).flat_map(|_| (0..w).flat_map(move |x| std::iter::repeat_n(x as f32 / w as f32, c))).collect();
        let image = Image { width: w, height: h, channels: c, pixels, format: SampleFormat::U8, source: PathBuf::new() };
        let g = image.sobel_magnitude();
        let inside = (c as f32).sqrt() / w as f32;
        for y in 0..h {
            for x in 0..w {
                let want = if x == 0 || x == w - 1 { inside / 2.0 } else { inside };
                assert!((g[y * w + x] - want).abs() < 1e-6, "({x}, {y}): {} vs {want}", g[y * w + x]);
            }
        }
    }
}
