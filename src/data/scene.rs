//! Posed-image scenes for radiance fields: Blender-synthetic folders (NeRF's `transforms_{train,test}.json`) and
//! instant-ngp / nerfstudio captures (one `transforms.json`, no split).
//!
//! Images are decoded once, in parallel, and kept as 8-bit RGB or RGBA. Every error is one sentence naming the
//! transforms file and, where it applies, the frame (its index in the file and its `file_path`).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use nalgebra::Matrix4;
use rayon::prelude::*;
use serde_json::{Map, Value};

use super::camera::{Camera, Distortion};

/// Decoded 8-bit pixels, row-major and interleaved.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewImage {
    pub width: usize,
    pub height: usize,
    /// 3 (RGB) or 4 (RGBA).
    pub channels: usize,
    pub pixels: Vec<u8>,
}

impl ViewImage {
    fn new(width: usize, height: usize, channels: usize, pixels: Vec<u8>) -> ViewImage {
        ViewImage { width, height, channels, pixels }
    }
}

/// One posed photo.
#[derive(Clone, Debug)]
pub struct View {
    pub camera: Camera,
    pub image: ViewImage,
    /// The frame's `file_path`, as given in the transforms file.
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Scene {
    pub train: Vec<View>,
    pub test: Vec<View>,
    /// World-space box that maps to the field's unit cube.
    pub bounds: ([f32; 3], [f32; 3]),
    /// The transforms file or folder given.
    pub source: PathBuf,
    /// What was skipped on the way, such as frames whose image is missing.
    pub warnings: Vec<String>,
}

/// Captures have no split, so every 8th usable frame is held out for testing (the LLFF / mip-NeRF 360 custom).
const HOLDOUT_EVERY: usize = 8;

/// instant-ngp maps a NeRF position p to (p.y, p.z, p.x) * scale + offset and puts the scene in the cube of side
/// `aabb_scale` centred at 0.5; `bounds` is that cube mapped back to world units. instant-ngp's default scale is 0.33,
/// but for NeRF-synthetic scenes we use 1/3, so that their default box is exactly [-1.5, 1.5]^3 as in the PyTorch
/// reference (shared/peer/nerf.py) rather than +-1.515.
const NGP_DEFAULT_SCALE: f64 = 0.33;
const BLENDER_SCALE: f64 = 1.0 / 3.0;
/// World axis held by each instant-ngp axis: ngp (0, 1, 2) = world (y, z, x).
const WORLD_AXIS_OF_NGP_AXIS: [usize; 3] = [1, 2, 0];
/// Below this |det| a pose's rotation part cannot be inverted to project points.
const MIN_POSE_DETERMINANT: f32 = 1e-6;

impl Scene {
    /// Loads a scene folder or transforms file, shrinking images (and cameras) by `downscale` >= 1.
    pub fn load(path: &Path, downscale: usize) -> Result<Scene> {
        if downscale == 0 {
            bail!("cannot load scene {}: downscale must be at least 1, not 0", path.display());
        }
        if !path.exists() {
            bail!("scene path {} does not exist", path.display());
        }
        // A Blender-synthetic folder has its own split; instant-ngp / nerfstudio captures have none.
        let (blender_train, capture) = (path.join("transforms_train.json"), path.join("transforms.json"));
        let blender = path.is_dir() && blender_train.is_file();
        let in_folder = if blender { blender_train } else { capture };
        let transforms = if path.is_dir() { in_folder } else { path.into() };
        if !transforms.is_file() {
            let folder = path.display();
            bail!("{folder} has no transforms_train.json (Blender) or transforms.json (instant-ngp)");
        }
        let (file, mut warnings) = (TransformsFile::read(&transforms)?, Vec::new());
        let bounds = file.bounds(if blender { BLENDER_SCALE } else { NGP_DEFAULT_SCALE })?;
        let frames = file.load_frames(downscale, &mut warnings)?;
        check_sizes(&frames, "train")?;
        let blender_test = path.join("transforms_test.json");
        let (train, test) = match blender && blender_test.is_file() {
            true => {
                let test = TransformsFile::read(&blender_test)?.load_frames(downscale, &mut warnings)?;
                check_sizes(&test, "test")?;
                (frames, test)
            }
            false => hold_out(frames, &file.path)?,
        };
        let with_alpha = train.iter().chain(&test).any(|frame| frame.view.image.channels == 4);
        Ok(Scene { train: into_views(train, with_alpha)?, test: into_views(test, with_alpha)?, bounds, source: path.to_path_buf(), warnings })
    }
}

/// A loaded view plus what error messages about it need.
struct LoadedFrame {
    view: View,
    /// "<transforms file>: frame <index> (<file_path>)".
    label: String,
    /// The image size before downscaling.
    native_size: (usize, usize),
}

/// Splits frames that come without a test split: index % 8 == 0 (after missing frames were dropped, in file order) is test.
fn hold_out(frames: Vec<LoadedFrame>, transforms: &Path) -> Result<(Vec<LoadedFrame>, Vec<LoadedFrame>)> {
    if frames.len() < 2 {
        let (file, count) = (transforms.display(), frames.len());
        bail!("{file} has {count} usable frame(s), but holding one out for testing needs 2");
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (index, frame) in frames.into_iter().enumerate() {
        (if index % HOLDOUT_EVERY == 0 { &mut test } else { &mut train }).push(frame);
    }
    Ok((train, test))
}

/// Checks that the images of one transforms file (so of each split) share one size.
fn check_sizes(frames: &[LoadedFrame], split: &str) -> Result<()> {
    if let Some(first) = frames.first()
        && let Some(odd) = frames.iter().find(|frame| frame.native_size != first.native_size)
    {
        let (odd, (w, h), first, (first_w, first_h)) = (&odd.label, odd.native_size, &first.label, first.native_size);
        bail!("{odd}: image is {w}x{h} but {first} is {first_w}x{first_h}; {split} images must match");
    }
    Ok(())
}

/// Gives a split's images alpha when any image of the scene has it (so that a few PNGs saved
/// without alpha do not break batching).
fn into_views(frames: Vec<LoadedFrame>, with_alpha: bool) -> Result<Vec<View>> {
    let mut views: Vec<View> = frames.into_iter().map(|frame| frame.view).collect();
    for image in views.iter_mut().map(|v| &mut v.image).filter(|i| with_alpha && i.channels == 3) {
        image.pixels = image.pixels.chunks_exact(3).flat_map(|rgb| [rgb[0], rgb[1], rgb[2], 255]).collect();
        image.channels = 4;
    }
    Ok(views)
}

/// One parsed transforms file. Keys of a frame override those of the top level.
struct TransformsFile {
    path: PathBuf,
    top: Map<String, Value>,
    frames: Vec<Value>,
}

/// A frame whose pose has been checked, and its image if the file exists.
struct FrameSpec<'a> {
    fields: &'a Map<String, Value>,
    file_path: &'a str,
    label: String,
    image_path: Option<PathBuf>,
    to_world: Matrix4<f32>,
}

impl TransformsFile {
    fn read(path: &Path) -> Result<TransformsFile> {
        let file = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| anyhow!("cannot read transforms file {file}: {e}"))?;
        let json: Value = match serde_json::from_str(&text) {
            Ok(json) => json,
            Err(error) => serde_json::from_str(&quote_non_finite_tokens(&text)).map_err(|_| anyhow!("{file} is not valid JSON: {error}"))?,
        };
        let Value::Object(mut top) = json else { bail!("{file}: not an object") };
        let path = path.to_path_buf();
        match top.remove("frames") {
            Some(Value::Array(frames)) if frames.is_empty() => bail!("{file} has zero frames"),
            Some(Value::Array(frames)) => Ok(TransformsFile { path, top, frames }),
            _ => bail!("{file} has no `frames` array"),
        }
    }

    fn folder(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// `scale`, `offset` and `aabb_scale` describe the whole scene, so only the top level is read.
    fn bounds(&self, default_scale: f64) -> Result<([f32; 3], [f32; 3])> {
        let file = self.path.display().to_string();
        let top = |key: &str| self.number(&Map::new(), key, &file);
        let (scale, aabb_scale) = (top("scale")?.unwrap_or(default_scale), top("aabb_scale")?.unwrap_or(1.0));
        let offset = match self.top.get("offset").filter(|value| !value.is_null()) {
            None => [0.5; 3],
            Some(value) => numbers::<3>(value)
                .filter(|offset| offset.iter().all(|v| v.is_finite()))
                .ok_or_else(|| anyhow!("{file}: offset must be 3 numbers, not {value}"))?,
        };
        let (mut lo, mut hi) = ([0.0f32; 3], [0.0f32; 3]);
        for (ngp_axis, &world_axis) in WORLD_AXIS_OF_NGP_AXIS.iter().enumerate() {
            let [a, b] = [-0.5, 0.5].map(|side| ((0.5 + side * aabb_scale - offset[ngp_axis]) / scale) as f32);
            (lo[world_axis], hi[world_axis]) = (a.min(b), a.max(b));
        }
        if aabb_scale <= 0.0 || lo.iter().chain(&hi).any(|v| !v.is_finite()) {
            bail!("{file}: scale {scale}, offset {offset:?} and aabb_scale {aabb_scale} do not give a finite box");
        }
        Ok((lo, hi))
    }

    /// A key of the frame, else of the top level; null counts as absent.
    fn lookup<'a>(&'a self, fields: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
        [fields, &self.top].into_iter().find_map(|map| map.get(key).filter(|v| !v.is_null()))
    }

    /// A numeric key, as [`TransformsFile::lookup`] finds it; an error when it is there but not a finite number.
    fn number(&self, fields: &Map<String, Value>, key: &str, label: &str) -> Result<Option<f64>> {
        let Some(value) = self.lookup(fields, key) else { return Ok(None) };
        match json_number(value).filter(|v| v.is_finite()) {
            Some(number) => Ok(Some(number)),
            None => bail!("{label}: {key} must be a finite number, not {value}"),
        }
    }

    /// Checks every frame, warns once about missing images, then decodes the rest in parallel.
    fn load_frames(&self, downscale: usize, warnings: &mut Vec<String>) -> Result<Vec<LoadedFrame>> {
        let frames = self.frames.iter().enumerate();
        let specs: Vec<FrameSpec> = frames.map(|(index, frame)| self.frame_spec(index, frame)).collect::<Result<_>>()?;
        let missing: Vec<&str> = specs.iter().filter(|spec| spec.image_path.is_none()).map(|spec| spec.file_path).collect();
        let (file, listed, skipped, folder) = (self.path.display(), specs.len(), missing.len(), self.folder().display());
        if let Some(first) = missing.first() {
            if skipped == listed {
                bail!("{file}: none of its {listed} frames has an image (the first, {first:?}, was looked for in {folder})");
            }
            let warning = format!("{skipped} of {listed} frames of {file} have no image and were skipped (first: {first:?})");
            warnings.push(warning);
        }
        let present = specs.par_iter().filter_map(|spec| Some((spec, spec.image_path.as_deref()?)));
        present.map(|(spec, image_path)| self.load_frame(spec, image_path, downscale)).collect()
    }

    fn frame_spec<'a>(&self, index: usize, frame: &'a Value) -> Result<FrameSpec<'a>> {
        let file = self.path.display();
        let Some(fields) = frame.as_object() else { bail!("{file}: frame {index} is not an object") };
        let Some(file_path) = fields.get("file_path").and_then(Value::as_str) else { bail!("{file}: frame {index} has no file_path") };
        let label = format!("{file}: frame {index} ({file_path:?})");
        let to_world = parse_pose(fields.get("transform_matrix"), &label)?;
        if self.lookup(fields, "fl_x").is_none() && self.lookup(fields, "camera_angle_x").is_none() {
            bail!("{label} has no focal length: neither fl_x nor camera_angle_x is given, in the frame or at the top level");
        }
        // Blender's file_paths lack the extension; captures' have one, and no one names a file "x.jpg.png".
        let candidates = [self.folder().join(format!("{file_path}.png")), self.folder().join(file_path)];
        let image_path = candidates.into_iter().find(|candidate| candidate.is_file());
        Ok(FrameSpec { fields, file_path, label, image_path, to_world })
    }

    fn load_frame(&self, spec: &FrameSpec, image_path: &Path, downscale: usize) -> Result<LoadedFrame> {
        let label = &spec.label;
        let image = decode(image_path).map_err(|e| anyhow!("{label}: cannot decode image {}: {e}", image_path.display()))?;
        let (width, height) = (image.width, image.height);
        if width / downscale == 0 || height / downscale == 0 {
            let shown = image_path.display();
            bail!("{label}: image {shown} is {width}x{height}, too small to downscale by {downscale}");
        }
        let camera = self.camera(spec, image_path, width, height)?.downscaled(downscale);
        let (image, name, label) = (box_downscale(image, downscale), spec.file_path.to_string(), label.clone());
        Ok(LoadedFrame { view: View { camera, image, name }, label, native_size: (width, height) })
    }

    /// Intrinsics at the image's full size: `fl_x` wins over `camera_angle_x`, and fy falls back to fx.
    fn camera(&self, spec: &FrameSpec, image_path: &Path, width: usize, height: usize) -> Result<Camera> {
        let get = |key: &str| self.number(spec.fields, key, &spec.label);
        let (w, h) = (width as f64, height as f64);
        for (key, actual) in [("w", w), ("h", h)] {
            if let Some(given) = get(key)?
                && (given - actual).abs() > 0.5
            {
                bail!("{}: {key} is {given} but image {} is {width}x{height}", spec.label, image_path.display());
            }
        }
        let focal = |fl: &str, angle: &str, size: f64| Ok::<_, anyhow::Error>(get(fl)?.or(get(angle)?.map(|a| 0.5 * size / (0.5 * a).tan())));
        let fx = focal("fl_x", "camera_angle_x", w)?.unwrap_or(f64::NAN);
        let fy = focal("fl_y", "camera_angle_y", h)?.unwrap_or(fx);
        if [fx, fy].iter().any(|f| !f.is_finite() || *f <= 0.0) {
            bail!("{}: the focal length must be positive and finite, not fx {fx}, fy {fy}", spec.label);
        }
        let [k1, k2, p1, p2] = [get("k1")?, get("k2")?, get("p1")?, get("p2")?].map(|k| k.unwrap_or(0.0) as f32);
        let distortion = [k1, k2, p1, p2].iter().any(|k| *k != 0.0).then_some(Distortion { k1, k2, p1, p2 });
        let (cx, cy) = (get("cx")?.unwrap_or(0.5 * w) as f32, get("cy")?.unwrap_or(0.5 * h) as f32);
        let (fx, fy, to_world) = (fx as f32, fy as f32, spec.to_world);
        Ok(Camera { to_world, width, height, fx, fy, cx, cy, distortion })
    }
}

/// A 4x4 camera-to-world matrix of finite numbers whose rotation part can be inverted.
fn parse_pose(value: Option<&Value>, label: &str) -> Result<Matrix4<f32>> {
    let Some(value) = value.filter(|value| !value.is_null()) else { bail!("{label} has no transform_matrix") };
    let rows: Option<Vec<[f64; 4]>> = value.as_array().and_then(|rows| rows.iter().map(numbers::<4>).collect());
    let Some(rows) = rows.filter(|rows| rows.len() == 4) else { bail!("{label}: transform_matrix must be 4 rows of 4 numbers, not {value}") };
    if let Some(entry) = rows.iter().flatten().find(|entry| !(**entry as f32).is_finite()) {
        bail!("{label}: transform_matrix has a non-finite entry, {entry}");
    }
    let matrix = Matrix4::from_fn(|r, c| rows[r][c] as f32);
    let determinant = matrix.fixed_view::<3, 3>(0, 0).determinant();
    if determinant.abs() < MIN_POSE_DETERMINANT {
        bail!("{label}: transform_matrix has a singular rotation part (determinant {determinant})");
    }
    Ok(matrix)
}

/// A JSON array of exactly N numbers (non-finite ones included, see [`json_number`]).
fn numbers<const N: usize>(value: &Value) -> Option<[f64; N]> {
    let values: Vec<f64> = value.as_array()?.iter().map(json_number).collect::<Option<_>>()?;
    values.try_into().ok()
}

/// A JSON number, or a non-finite one that [`quote_non_finite_tokens`] quoted (Rust parses "NaN" and "-Infinity").
fn json_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.parse::<f64>().ok().filter(|v| !v.is_finite()),
        _ => None,
    }
}

/// Python's `json.dump` writes NaN and +-Infinity as bare tokens, which JSON (and serde_json) rejects. Quoting them
/// lets such a file parse, so that the loader can name the frame whose pose has them.
fn quote_non_finite_tokens(text: &str) -> String {
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped, mut skip_to) = (false, false, 0);
    for (i, c) in text.char_indices() {
        if i < skip_to {
            continue;
        }
        if in_string {
            (in_string, escaped) = (escaped || c != '"', !escaped && c == '\\');
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = TOKENS.iter().find(|token| text[i..].starts_with(**token)) {
            out.push_str(&format!("\"{token}\""));
            skip_to = i + token.len();
            continue;
        }
        out.push(c);
    }
    out
}

/// Decodes a PNG or JPEG (whatever its extension says) to 8-bit RGB, or RGBA when it has alpha; greyscale and
/// 16-bit images are converted.
fn decode(path: &Path) -> Result<ViewImage> {
    let decoded = ::image::ImageReader::open(path)?.with_guessed_format()?.decode()?;
    let (width, height, has_alpha) = (decoded.width() as usize, decoded.height() as usize, decoded.color().has_alpha());
    let (channels, pixels) = if has_alpha { (4, decoded.into_rgba8().into_raw()) } else { (3, decoded.into_rgb8().into_raw()) };
    Ok(ViewImage::new(width, height, channels, pixels))
}

/// Area filter: each output pixel is the mean of a `factor` x `factor` block (alpha too) rounded to the nearest
/// integer; the right and bottom edges are cropped to a multiple of `factor` first.
fn box_downscale(image: ViewImage, factor: usize) -> ViewImage {
    let (width, height, channels) = (image.width / factor.max(1), image.height / factor.max(1), image.channels);
    if factor <= 1 || width == 0 || channels == 0 {
        return image;
    }
    let norm = 1.0 / (factor * factor) as f32;
    let mut pixels = vec![0u8; width * height * channels];
    for (index, out) in pixels.chunks_exact_mut(channels).enumerate() {
        let (x, y) = (index % width, index / width);
        let mut sums = [0.0f32; 4];
        for row in y * factor..(y + 1) * factor {
            let start = (row * image.width + x * factor) * channels;
            for source in image.pixels[start..start + factor * channels].chunks_exact(channels) {
                sums.iter_mut().zip(source).for_each(|(sum, value)| *sum += *value as f32);
            }
        }
        out.iter_mut().zip(sums).for_each(|(value, sum)| *value = (sum * norm).round() as u8);
    }
    ViewImage::new(width, height, channels, pixels)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ::image::{ImageBuffer, Luma, Rgb, RgbaImage};
    use serde_json::json;

    use super::super::camera::ray_box;
    use super::*;

    /// shared/data beside the repository, or `$NFIELD_SHARED_DATA`; None (and a note) when the data is absent.
    fn shared_data(relative: &str) -> Option<PathBuf> {
        let default_root = || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
        let root = std::env::var_os("NFIELD_SHARED_DATA").map_or_else(default_root, PathBuf::from);
        let path = root.join(relative);
        if !path.exists() {
            println!("skipping: {} is absent (NFIELD_SHARED_DATA names the shared data folder)", path.display());
        }
        path.exists().then_some(path)
    }

    fn timed_load(path: &Path, downscale: usize) -> Scene {
        let start = Instant::now();
        let scene = Scene::load(path, downscale).expect("scene loads");
        println!("Scene::load({}, {downscale}) took {:.2} s", path.display(), start.elapsed().as_secs_f64());
        scene
    }

    fn write_png(path: &Path, width: u32, height: u32) {
        std::fs::create_dir_all(path.parent().expect("has a folder")).expect("mkdir");
        let image = RgbaImage::from_fn(width, height, |x, y| [x as u8 * 10, y as u8 * 10, 7, 200].into());
        image.save(path).expect("png written");
    }

    /// A Blender-synthetic folder with `frames` 4x4 RGBA images and no test split; returns transforms_train.json.
    fn blender_scene(dir: &Path, frames: usize) -> PathBuf {
        let pose = |x: usize| json!([[1, 0, 0, x], [0, 1, 0, 0], [0, 0, 1, 4.0], [0, 0, 0, 1]]);
        let frame = |i: usize| json!({ "file_path": format!("./train/r_{i}"), "rotation": 0.1, "transform_matrix": pose(i) });
        (0..frames).for_each(|i| write_png(&dir.join(format!("train/r_{i}.png")), 4, 4));
        let path = dir.join("transforms_train.json");
        let json = json!({ "camera_angle_x": 0.5, "frames": (0..frames).map(frame).collect::<Vec<_>>() });
        std::fs::write(&path, json.to_string()).expect("json written");
        path
    }

    /// Loads a scene that must fail, checks that the message names `file`, and returns the message.
    fn load_error(scene: &Path, downscale: usize, file: &Path) -> String {
        let message = format!("{:#}", Scene::load(scene, downscale).expect_err("loading should fail"));
        assert!(message.contains(&file.display().to_string()), "{message:?} does not name the file");
        message
    }

    #[test]
    fn lego_400() {
        let Some(lego) = shared_data("nerf/lego_400") else { return };
        let scene = timed_load(&lego, 1);
        assert_eq!((scene.train.len(), scene.test.len(), scene.warnings.len()), (100, 200, 0));
        assert_eq!((scene.bounds, scene.train[0].name.as_str()), (([-1.5; 3], [1.5; 3]), "./train/r_0"));
        for View { camera, image, name } in scene.train.iter().chain(&scene.test) {
            assert_eq!((image.width, image.height, image.channels), (400, 400, 4));
            assert_eq!((camera.fx, camera.cx, camera.cy, camera.distortion), (camera.fy, 200.0, 200.0, None));
            assert!((camera.fx - 555.555).abs() < 1e-2, "fx {}", camera.fx);
            // Every NeRF-synthetic camera aims at the origin from outside the box.
            let [x, y] = camera.project([0.0; 3]).expect("origin in front");
            assert!((x - 200.0).abs() < 1.0 && (y - 200.0).abs() < 1.0, "{name} sees the origin at ({x}, {y})");
            let (origin, dir) = camera.ray(200.0, 200.0);
            assert!(ray_box(origin, dir, scene.bounds.0, scene.bounds.1).is_some_and(|(enter, _)| enter > 0.0));
        }
        let small = timed_load(&lego, 4);
        let (View { camera, image, .. }, full) = (&small.train[7], &scene.train[7].image.pixels);
        assert_eq!((image.width, image.height, camera.width, camera.height), (100, 100, 100, 100));
        assert!((camera.fx - 138.889).abs() < 1e-2, "fx {}", camera.fx);
        for (x, y, c) in [(0, 0, 3), (50, 50, 0), (37, 61, 2), (99, 99, 1), (50, 80, 3)] {
            let block_sum: f32 = (0..16).map(|k| full[((4 * y + k / 4) * 400 + 4 * x + k % 4) * 4 + c] as f32).sum();
            assert_eq!(image.pixels[(y * 100 + x) * 4 + c], (block_sum / 16.0).round() as u8);
        }
    }

    #[test]
    fn instant_ngp_fox() {
        let Some(fox) = shared_data("instant-ngp/nerf/fox") else { return };
        let scene = timed_load(&fox, 1);
        let skipped = format!("17 of 67 frames of {} have no image", fox.join("transforms.json").display());
        assert!(scene.warnings.len() == 1 && scene.warnings[0].starts_with(&skipped), "{:?}", scene.warnings);
        // 50 images: 0, 8, ..., 48 are held out.
        assert_eq!((scene.train.len(), scene.test.len()), (43, 7));
        assert_eq!((scene.test[0].name.as_str(), scene.train[0].name.as_str()), ("images/0001.jpg", "images/0002.jpg"));
        // aabb_scale 4 around instant-ngp's centre, with its default scale 0.33: +-2 / 0.33 on every axis.
        assert_eq!(scene.bounds, ([-2.0 / 0.33; 3], [2.0 / 0.33; 3]));
        let lens = Some([0.0578421, -0.0805099, -0.000980296, 0.00015575]);
        for View { camera, image, name } in scene.train.iter().chain(&scene.test) {
            assert_eq!((image.width, image.height, image.channels), (1080, 1920, 3));
            assert_eq!((camera.fx, camera.fy, camera.cx, camera.cy), (1375.52, 1374.49, 554.558, 965.268));
            assert_eq!(camera.distortion.map(|d| [d.k1, d.k2, d.p1, d.p2]), lens);
            let position = camera.position();
            assert!((0..3).all(|a| position[a].abs() < scene.bounds.1[a]), "{name} is outside the box");
        }
        let small = timed_load(&fox, 4);
        let View { camera, image, .. } = &small.train[0];
        assert_eq!((image.width, image.height, camera.width, camera.height), (270, 480, 270, 480));
        assert!((camera.fx - 343.88).abs() < 1e-3 && (camera.cy - 241.317).abs() < 1e-3, "{camera:?}");
    }

    #[test]
    fn blender_scene_without_test_file_holds_out_every_eighth() {
        let dir = tempfile::tempdir().expect("tempdir");
        blender_scene(dir.path(), 10);
        // One frame saved without alpha gets alpha like the rest.
        let rgb = ImageBuffer::from_pixel(4, 4, Rgb([5u8, 6, 7]));
        rgb.save(dir.path().join("train/r_2.png")).expect("png");
        let scene = Scene::load(dir.path(), 1).expect("loads");
        let test_names: Vec<&str> = scene.test.iter().map(|view| view.name.as_str()).collect();
        assert_eq!((test_names, scene.train.len()), (vec!["./train/r_0", "./train/r_8"], 8));
        let (camera, focal) = (&scene.train[0].camera, (2.0 / 0.25f64.tan()) as f32);
        assert_eq!((camera.fx, camera.fy, camera.cx, camera.cy), (focal, focal, 2.0, 2.0));
        assert_eq!((camera.position(), scene.bounds), ([1.0, 0.0, 4.0], ([-1.5; 3], [1.5; 3])));
        assert_eq!(scene.train[0].image.pixels[..8], [0, 0, 7, 200, 10, 0, 7, 200]);
        assert_eq!(scene.train[1].image.pixels[..8], [5, 6, 7, 255, 5, 6, 7, 255]);
    }

    #[test]
    fn capture_intrinsics_bounds_and_missing_frames() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_png(&dir.path().join("images/1.png"), 6, 4);
        write_png(&dir.path().join("images/2.png"), 6, 4);
        // A 16-bit greyscale frame comes out as 8-bit RGB (and, beside RGBA frames, gets alpha).
        let grey = ImageBuffer::from_fn(6, 4, |x, _| Luma([x as u16 * 257 * 40]));
        grey.save(dir.path().join("images/0.png")).expect("png");
        let pose = json!([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]);
        let frame = |i: usize| json!({ "file_path": format!("images/{i}.png"), "transform_matrix": pose });
        let mut json = json!({ "fl_x": 5, "w": 6, "h": 4, "cy": 1.5, "k1": 0.1, "scale": 0.5, "offset": [0.5, 0.6, 0.7], "aabb_scale": 2 });
        json["frames"] = (0..4).map(frame).collect();
        (json["frames"][2]["fl_x"], json["frames"][2]["k1"]) = (json!(7), json!(0));
        let path = dir.path().join("transforms.json");
        std::fs::write(&path, json.to_string()).expect("json written");

        let scene = Scene::load(&path, 1).expect("loads");
        let skipped = format!("1 of 4 frames of {} have no image and were skipped", path.display());
        assert_eq!((scene.warnings, scene.test.len(), scene.train.len()), (vec![format!("{skipped} (first: \"images/3.png\")")], 1, 2));
        // ngp axes (0, 1, 2) are world (y, z, x): lo = (0.5 - 1 - offset) / 0.5 and hi = (0.5 + 1 - offset) / 0.5.
        assert_eq!(scene.bounds, ([-2.4, -2.0, -2.2], [1.6, 2.0, 1.8]));
        assert_eq!(scene.test[0].image.pixels[..8], [0, 0, 0, 255, 40, 40, 40, 255]);
        let (plain, overridden) = (&scene.train[0].camera, &scene.train[1].camera);
        assert_eq!((plain.fx, plain.fy, plain.cx, plain.cy), (5.0, 5.0, 3.0, 1.5));
        assert_eq!(plain.distortion.map(|d| [d.k1, d.k2, d.p1, d.p2]), Some([0.1, 0.0, 0.0, 0.0]));
        assert_eq!((overridden.fx, overridden.fy, overridden.distortion), (7.0, 7.0, None));
    }

    #[test]
    fn area_filter_crops_and_rounds() {
        // 5x3 grey-valued RGBA, shrunk by 2: the top-left 4x2 becomes 2x1.
        let values = [0u8, 0, 1, 1, 9, 0, 1, 1, 2, 9, 9, 9, 9, 9, 9];
        let small = box_downscale(ViewImage::new(5, 3, 4, values.iter().flat_map(|v| [*v, *v, *v, 255 - *v]).collect()), 2);
        // Left block 0, 0, 0, 1 averages 0.25 -> 0 (alpha 254.75 -> 255); right 1, 1, 1, 2 -> 1.25 -> 1 (253.75 -> 254).
        assert_eq!((small.width, small.height, small.pixels), (2, 1, vec![0, 0, 0, 255, 1, 1, 1, 254]));
        assert_eq!(box_downscale(ViewImage::new(2, 2, 1, vec![1, 2, 1, 2]), 2).pixels, [2], "1.5 rounds to 2");
    }

    #[test]
    fn missing_path_missing_transforms_bad_downscale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nowhere = dir.path().join("nowhere");
        assert!(load_error(&nowhere, 1, &nowhere).contains("does not exist"));
        assert!(load_error(dir.path(), 1, dir.path()).contains("has no transforms_train.json"));
        let path = blender_scene(dir.path(), 2);
        assert!(load_error(&path, 0, &path).contains("downscale must be at least 1"));
        let too_big = load_error(dir.path(), 5, &path);
        assert!(too_big.contains(": frame 0 (\"./train/r_0\"): image") && too_big.ends_with("by 5"), "{too_big}");
    }

    /// A fresh 3-frame Blender scene (frames 1 and 2 train, 0 test) broken by `break_scene`; returns the error.
    fn broken(break_scene: impl FnOnce(&Path, Value) -> String) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = blender_scene(dir.path(), 3);
        let json = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("parse");
        std::fs::write(&path, break_scene(dir.path(), json)).expect("write");
        load_error(dir.path(), 1, &path)
    }

    fn edit(json: Value, from: &str, to: &str) -> String {
        json.to_string().replacen(from, to, 1)
    }

    fn set(mut json: Value, key: &str, value: Value) -> String {
        json["frames"][1][key] = value;
        json.to_string()
    }

    #[test]
    fn broken_transforms_name_the_file_and_frame() {
        type Case = (fn(Value) -> String, Option<usize>, &'static str);
        let cases: [Case; 11] = [
            (|json| edit(json, ":", ""), None, "is not valid JSON: expected `:` at line 1 column 18"),
            (|json| edit(json, "transform_matrix", "pose"), Some(0), "has no transform_matrix"),
            (|json| edit(json, "4.0", "NaN"), Some(0), "transform_matrix has a non-finite entry, NaN"),
            (|json| edit(json, "[0,0,1,4.0]", "[0,0,0,4.0]"), Some(0), "has a singular rotation part"),
            (|json| edit(json, ",[0,0,0,1]]", "]"), Some(0), "must be 4 rows of 4 numbers"),
            (|json| edit(json, "4.0", "\"4\""), Some(0), "must be 4 rows of 4 numbers"),
            (|_| json!({ "camera_angle_x": 1, "frames": [] }).to_string(), None, "has zero frames"),
            (|json| edit(json, "frames", "images"), None, "has no `frames` array"),
            (|json| edit(json, "camera_angle_x", "angle"), Some(0), "neither fl_x nor camera_angle_x"),
            (|json| set(json, "fl_x", json!(-3)), Some(1), "the focal length must be positive"),
            (|json| set(json, "w", json!(8)), Some(1), "w is 8 but image"),
        ];
        for (break_json, frame, expected) in cases {
            let message = broken(|_, json| break_json(json));
            let frame = frame.map_or(String::new(), |i| format!(": frame {i} (\"./train/r_{i}\")"));
            assert!(message.contains(&frame) && message.contains(expected), "{message:?} lacks {expected:?}");
        }
    }

    #[test]
    fn broken_images_name_the_file_and_frame() {
        let missing = broken(|dir, json| std::fs::remove_dir_all(dir.join("train")).map(|_| json.to_string()).expect("rm"));
        assert!(missing.contains("none of its 3 frames has an image"), "{missing}");
        let sizes = broken(|dir, json| {
            write_png(&dir.join("train/r_2.png"), 6, 4);
            json.to_string()
        });
        assert!(sizes.contains("frame 2 (\"./train/r_2\"): image is 6x4 but") && sizes.contains("frame 0 (\"./train/r_0\") is 4x4"));
        let corrupt = broken(|dir, json| std::fs::write(dir.join("train/r_1.png"), "no").map(|_| json.to_string()).expect("write"));
        assert!(corrupt.contains("frame 1 (\"./train/r_1\"): cannot decode image"), "{corrupt}");
    }
}
