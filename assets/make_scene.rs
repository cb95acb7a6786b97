//! Makes `assets/scene/`, the small radiance-field scene of `configs/nerf/default.toml`: four
//! coloured shapes (analytic signed distances) sphere-traced by nfield's own tracer from cameras
//! on the upper half of a sphere, lit by a fixed sun and sky (so the colours do not follow the
//! camera), on a transparent background, written in the Blender-synthetic format
//! (`transforms_{train,test}.json`, RGBA PNGs). Each pixel averages 3 x 3 rays, alpha included.
//!
//! `cargo run --release --example make_scene -- assets/scene`

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use nfield::profile::read_floats;
use nfield::render::sphere_trace::{Camera, trace};
use serde_json::json;

const SIZE: usize = 80;
const SUPERSAMPLE: usize = 3;
const TRAIN_VIEWS: usize = 48;
const TEST_VIEWS: usize = 8;
const FOV_Y_DEGREES: f32 = 40.0;
const DISTANCE: f32 = 3.2;

type V3 = [f32; 3];

fn length(v: V3) -> f32 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// Each shape's signed distance at `p` (z up, all inside [-0.9, 0.9]^3) and its colour.
fn shapes(p: V3) -> [(f32, V3); 4] {
    let sphere = length(sub(p, [-0.35, -0.3, -0.25])) - 0.42;
    let q = sub(p, [0.38, 0.1, -0.4]).map(|v| v.abs() - 0.27);
    let cube = length(q.map(|v| v.max(0.0))) + q[0].max(q[1]).max(q[2]).min(0.0) - 0.05;
    let t = sub(p, [0.05, 0.35, 0.05]);
    let torus = ((t[0] * t[0] + t[2] * t[2]).sqrt() - 0.38).hypot(t[1]) - 0.12;
    // A capsule standing on the ground plane's height, leaning a little.
    let (a, b) = ([-0.2, 0.45, -0.65], [-0.05, 0.3, 0.35]);
    let (pa, ba) = (sub(p, a), sub(b, a));
    let h = ((pa[0] * ba[0] + pa[1] * ba[1] + pa[2] * ba[2]) / (ba[0] * ba[0] + ba[1] * ba[1] + ba[2] * ba[2])).clamp(0.0, 1.0);
    let capsule = length(sub(pa, ba.map(|v| v * h))) - 0.13;
    [(sphere, [0.85, 0.2, 0.15]), (cube, [0.15, 0.35, 0.85]), (torus, [0.95, 0.75, 0.1]), (capsule, [0.2, 0.7, 0.3])]
}

fn distance(p: V3) -> f32 {
    shapes(p).iter().map(|s| s.0).fold(f32::INFINITY, f32::min)
}

/// Lambert shading under a fixed sun and a sky term, in [0, 1].
fn shade(p: V3) -> V3 {
    let h = 1e-3;
    let n = [0, 1, 2].map(|a| {
        let mut plus = p;
        let mut minus = p;
        plus[a] += h;
        minus[a] -= h;
        distance(plus) - distance(minus)
    });
    let n = n.map(|v| v / length(n).max(1e-9));
    let sun: V3 = [0.45, -0.3, 0.84];
    let sun = sun.map(|v| v / length(sun));
    let lambert = (n[0] * sun[0] + n[1] * sun[1] + n[2] * sun[2]).max(0.0);
    let sky = 0.5 + 0.5 * n[2];
    let albedo = shapes(p).iter().min_by(|a, b| a.0.total_cmp(&b.0)).map_or([1.0; 3], |s| s.1);
    albedo.map(|c| (c * (0.25 * sky + 0.75 * lambert)).clamp(0.0, 1.0))
}

/// A camera `DISTANCE` from the origin at `azimuth` and `elevation` (degrees), looking at the
/// origin with +z up.
fn camera(azimuth: f32, elevation: f32) -> Camera {
    let (a, e) = (azimuth.to_radians(), elevation.to_radians());
    let eye = [DISTANCE * e.cos() * a.cos(), DISTANCE * e.cos() * a.sin(), DISTANCE * e.sin()];
    Camera::look_at(eye, [0.0; 3], [0.0, 0.0, 1.0], FOV_Y_DEGREES)
}

/// RGBA pixels of `camera`, each the mean of `SUPERSAMPLE^2` rays.
fn render(camera: &Camera) -> Vec<u8> {
    let big = SIZE * SUPERSAMPLE;
    let device = Device::flex();
    // The analytic distances on the host, for the tracer's points on the CPU backend.
    let sdf = |points: Tensor<2>| {
        let distances: Vec<f32> = read_floats(points).chunks(3).map(|p| distance([p[0], p[1], p[2]])).collect();
        let n = distances.len();
        Tensor::from_data(TensorData::new(distances, [n, 1]), &device)
    };
    let traced = trace(&sdf, camera, big, big, 1, &device);
    let mut hits = vec![None; big * big];
    for (&pixel, t) in traced.pixels.iter().zip(read_floats(traced.t)) {
        hits[pixel] = Some(t);
    }
    let mut out = vec![0u8; SIZE * SIZE * 4];
    for y in 0..SIZE {
        for x in 0..SIZE {
            let mut sum = [0.0f32; 4];
            for sy in 0..SUPERSAMPLE {
                for sx in 0..SUPERSAMPLE {
                    let (px, py) = (x * SUPERSAMPLE + sx, y * SUPERSAMPLE + sy);
                    if let Some(t) = hits[py * big + px] {
                        let d = camera.ray(px, py, big, big);
                        let c = shade([0, 1, 2].map(|k| camera.eye[k] + t * d[k]));
                        // Premultiplied, so edges average to the right colour.
                        (0..3).for_each(|k| sum[k] += c[k]);
                        sum[3] += 1.0;
                    }
                }
            }
            let n = (SUPERSAMPLE * SUPERSAMPLE) as f32;
            let alpha = sum[3] / n;
            let pixel = &mut out[(y * SIZE + x) * 4..][..4];
            for k in 0..3 {
                let straight = if sum[3] > 0.0 { sum[k] / sum[3] } else { 0.0 };
                pixel[k] = (straight * 255.0).round() as u8;
            }
            pixel[3] = (alpha * 255.0).round() as u8;
        }
    }
    out
}

/// The camera-to-world matrix in the NeRF / OpenGL convention (the camera looks down -z).
fn to_world(c: &Camera) -> [[f32; 4]; 4] {
    let back = c.forward.map(|v| -v);
    [
        [c.right[0], c.up[0], back[0], c.eye[0]],
        [c.right[1], c.up[1], back[1], c.eye[1]],
        [c.right[2], c.up[2], back[2], c.eye[2]],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

fn write_split(root: &Path, split: &str, cameras: &[Camera]) -> Result<()> {
    std::fs::create_dir_all(root.join(split))?;
    let mut frames = Vec::new();
    for (i, c) in cameras.iter().enumerate() {
        let name = format!("{split}/r_{i}");
        let image = image::RgbaImage::from_raw(SIZE as u32, SIZE as u32, render(c)).context("pixel buffer")?;
        image.save(root.join(format!("{name}.png")))?;
        frames.push(json!({ "file_path": format!("./{name}"), "transform_matrix": to_world(c) }));
    }
    let transforms = json!({ "camera_angle_x": FOV_Y_DEGREES.to_radians(), "frames": frames });
    std::fs::write(root.join(format!("transforms_{split}.json")), serde_json::to_string_pretty(&transforms)?)?;
    Ok(())
}

fn main() -> Result<()> {
    let root = std::env::args().nth(1).unwrap_or_else(|| "assets/scene".into());
    let root = Path::new(&root);
    // Training views spread over the upper half sphere by the golden angle; test views on a
    // ring between them.
    let golden = 137.507_77f32;
    let train: Vec<Camera> = (0..TRAIN_VIEWS).map(|i| camera(i as f32 * golden, 10.0 + 60.0 * (i as f32 + 0.5) / TRAIN_VIEWS as f32)).collect();
    let test: Vec<Camera> = (0..TEST_VIEWS).map(|i| camera(22.5 + 45.0 * i as f32, 35.0)).collect();
    write_split(root, "train", &train)?;
    write_split(root, "test", &test)?;
    println!("wrote {} train and {} test views of {SIZE}x{SIZE} to {}", train.len(), test.len(), root.display());
    Ok(())
}
