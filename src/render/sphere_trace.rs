//! Sphere tracing a signed distance field: pictures of a trained SDF from any camera.
//!
//! Each ray starts where it enters the `[-1, 1]^3` box and steps by the distance the field
//! reports until it is within `HIT` of the surface or leaves the box. The rays' state stays on
//! the device, so the picture can be shown without passing through the host: rays are traced
//! together, and the finished ones are dropped whenever the host looks at which finished. Normals
//! are the field's gradient by central differences; shading is a headlight Lambert term plus
//! ambient.

use burn::tensor::{Device, Tensor, TensorData};

use crate::profile::read_floats;

pub type V3 = [f32; 3];

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: V3, b: V3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: V3, b: V3) -> V3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
fn unit(a: V3) -> V3 {
    let n = dot(a, a).sqrt().max(1e-20);
    [a[0] / n, a[1] / n, a[2] / n]
}

/// Steps per ray before giving up.
const MAX_STEPS: usize = 128;
/// Distance (in the `[-1, 1]` box's units) that counts as on the surface.
const HIT: f32 = 1e-3;
/// Step of the central differences for the pictures' normals: a little over the finest
/// detail the configs' grids hold (2048 cells over the box).
const NORMAL_STEP: f32 = 2e-3;
/// Learned fields are not exact distances: step a little less than they say.
const STEP_SCALE: f32 = 0.9;
/// The lit surface's colour.
const CLAY: V3 = [0.85, 0.72, 0.58];

/// A pinhole camera (y up in the picture).
#[derive(Debug, Clone, Copy)]
pub struct Camera {
    pub eye: V3,
    pub forward: V3,
    pub right: V3,
    pub up: V3,
    /// Vertical field of view in degrees.
    pub fov_y: f32,
}

impl Camera {
    pub fn look_at(eye: V3, target: V3, up: V3, fov_y: f32) -> Self {
        let forward = unit(sub(target, eye));
        let right = unit(cross(forward, up));
        let up = cross(right, forward);
        Self { eye, forward, right, up, fov_y }
    }

    /// Camera `index` of `frames` on a circle about the y axis through the origin, `distance`
    /// away, `elevation` degrees above the horizon; frame 0 looks from +z.
    pub fn orbit(index: usize, frames: usize, distance: f32, elevation: f32) -> Self {
        let angle = std::f32::consts::TAU * index as f32 / frames.max(1) as f32;
        let e = elevation.to_radians();
        let eye = [distance * angle.sin() * e.cos(), distance * e.sin(), distance * angle.cos() * e.cos()];
        Self::look_at(eye, [0.0; 3], [0.0, 1.0, 0.0], 40.0)
    }

    /// The unit direction through the centre of pixel `(px, py)` of a `width x height` picture.
    pub fn ray(&self, px: usize, py: usize, width: usize, height: usize) -> V3 {
        let tan = (self.fov_y.to_radians() / 2.0).tan();
        let x = (2.0 * (px as f32 + 0.5) / width as f32 - 1.0) * tan * width as f32 / height as f32;
        let y = (1.0 - 2.0 * (py as f32 + 0.5) / height as f32) * tan;
        unit([0, 1, 2].map(|k| self.forward[k] + x * self.right[k] + y * self.up[k]))
    }
}

/// What the picture shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shading {
    /// A clay-coloured surface lit from the camera, on white.
    Lit,
    /// Distance along the ray: near is bright, far dark, background black.
    Depth,
    /// The surface normal mapped from `[-1, 1]` to `[0, 1]` per channel, background black.
    Normal,
}

/// A vector as a `[1, 3]` row on the device, to broadcast over points.
fn row(v: V3, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), [1, 3]), device)
}

/// Signed distances of points on the device: `[M, 3]` box points to `[M, 1]` distances.
pub type DeviceSdf<'a> = dyn Fn(Tensor<2>) -> Tensor<2> + 'a;

/// The rays that hit, from `trace`: their pixels (row-major), and on the device their distances
/// along the ray `[K, 1]` and unit directions `[K, 3]`, K rays in all.
pub struct Hits {
    pub pixels: Vec<usize>,
    pub t: Tensor<2>,
    pub dirs: Tensor<2>,
}

/// Steps between the host's looks at which rays finished. On the CPU every step (the finished
/// rays are dropped at once, so later steps evaluate fewer points); on a GPU a read costs a
/// round trip, and a few wasted evaluations of finished rays cost nothing by comparison.
pub fn steps_per_read(device: &Device) -> usize {
    if crate::kernels::on_flex(device) { 1 } else { 8 }
}

/// Sphere trace `sdf` through every pixel of `camera`, the rays' state on the device. Every
/// `steps_per_read` steps the host reads which rays finished (one small read), keeps the hits and
/// drops them and the misses from the batch.
pub fn trace(sdf: &DeviceSdf, camera: &Camera, width: usize, height: usize, steps_per_read: usize, device: &Device) -> Hits {
    let n = width * height;
    let mut pixels = Vec::new();
    let mut dirs = Vec::new();
    let (mut t, mut far) = (Vec::new(), Vec::new());
    for i in 0..n {
        let dir = camera.ray(i % width, i / width, width, height);
        if let Some((near, leave)) = box_interval(camera.eye, dir) {
            pixels.push(i);
            dirs.extend_from_slice(&dir);
            t.push(near);
            far.push(leave);
        }
    }
    let column = |values: Vec<f32>, width: usize| Tensor::<2>::from_data(TensorData::new(values, [pixels.len(), width]), device);
    let eye = row(camera.eye, device);
    let (mut dirs, mut t, mut far) = (column(dirs, 3), column(t, 1), column(far, 1));
    let mut marching = pixels;
    let (mut hit_pixels, mut hit_t, mut hit_dirs) = (Vec::new(), Vec::new(), Vec::new());
    let mut steps = 0;
    while steps < MAX_STEPS && !marching.is_empty() {
        // 0: marching, 1: hit, 2: missed (left the box, or the field gave no number).
        let mut status = Tensor::<2>::zeros([marching.len(), 1], device);
        for _ in 0..steps_per_read.clamp(1, MAX_STEPS - steps) {
            let distance = sdf(eye.clone() + t.clone() * dirs.clone());
            let still = status.clone().equal_elem(0.0);
            let hit = still.clone().bool_and(distance.clone().abs().lower_elem(HIT));
            let gone = t.clone().greater(far.clone()).bool_or(distance.clone().is_finite().bool_not());
            let missed = still.bool_and(hit.clone().bool_not()).bool_and(gone);
            status = status.mask_fill(hit, 1.0).mask_fill(missed, 2.0);
            t = t.clone().mask_where(status.clone().equal_elem(0.0), t + distance * STEP_SCALE);
            steps += 1;
        }
        let status = read_floats(status);
        let rows_where = |code: f32| -> Vec<usize> { (0..status.len()).filter(|&r| status[r] == code).collect() };
        let hits = rows_where(1.0);
        if !hits.is_empty() {
            let index = super::row_index(&hits, device);
            hit_pixels.extend(hits.iter().map(|&r| marching[r]));
            hit_t.push(t.clone().select(0, index.clone()));
            hit_dirs.push(dirs.clone().select(0, index));
        }
        let going = rows_where(0.0);
        if going.len() < marching.len() && !going.is_empty() {
            let index = super::row_index(&going, device);
            (dirs, t, far) = (dirs.select(0, index.clone()), t.select(0, index.clone()), far.select(0, index));
        }
        marching = going.iter().map(|&r| marching[r]).collect();
    }
    let stack = |parts: Vec<Tensor<2>>, width: usize| if parts.is_empty() { Tensor::zeros([0, width], device) } else { Tensor::cat(parts, 0) };
    Hits { pixels: hit_pixels, t: stack(hit_t, 1), dirs: stack(hit_dirs, 3) }
}

/// Normals of `sdf` at points on the device `[K, 3]` (unit gradients by central differences
/// `step` apart along each axis): one batch of the six probes of every point.
pub fn normals_on_device(sdf: &DeviceSdf, points: Tensor<2>, step: f32) -> Tensor<2> {
    let [k, _] = points.dims();
    let device = points.device();
    let probes: Vec<Tensor<2>> = (0..3)
        .flat_map(|k| [step, -step].map(|s| (k, s)))
        .map(|(k, s)| {
            let mut offset = [0.0f32; 3];
            offset[k] = s;
            points.clone() + row(offset, &device)
        })
        .collect();
    let d = sdf(Tensor::cat(probes, 0));
    let probe = |j: usize| d.clone().narrow(0, j * k, k);
    let gradient = Tensor::cat((0..3).map(|axis| probe(2 * axis) - probe(2 * axis + 1)).collect(), 1);
    let length = gradient.clone().square().sum_dim(1).sqrt().clamp_min(1e-20);
    gradient / length
}

/// A `width x height` RGB picture (`[H * W, 3]` in `[0, 1]`, rows top to bottom, on the device)
/// of the zero level set of `sdf`.
pub fn render(sdf: &DeviceSdf, camera: &Camera, width: usize, height: usize, shading: Shading, device: &Device) -> Tensor<2> {
    let hits = trace(sdf, camera, width, height, steps_per_read(device), device);
    let background = if shading == Shading::Lit { 1.0 } else { 0.0 };
    if hits.pixels.is_empty() {
        return Tensor::full([width * height, 3], background, device);
    }
    let colours = match shading {
        Shading::Depth => {
            let (near, far) = (hits.t.clone().min().reshape([1, 1]), hits.t.clone().max().reshape([1, 1]));
            let span = (far - near.clone()).clamp_min(1e-6);
            ((hits.t - near) / span * -0.8 + 1.0).repeat_dim(1, 3)
        }
        Shading::Lit | Shading::Normal => {
            let points = row(camera.eye, device) + hits.t * hits.dirs.clone();
            let normals = normals_on_device(sdf, points, NORMAL_STEP);
            if shading == Shading::Normal {
                normals * 0.5 + 0.5
            } else {
                let lambert = (normals * hits.dirs).sum_dim(1).neg().clamp_min(0.0);
                row(CLAY, device) * (lambert * 0.8 + 0.2)
            }
        }
    };
    super::paint_rows(width * height, &hits.pixels, colours, background, device)
}

/// Where a ray from `eye` along `dir` is inside `[-1, 1]^3`: `(enter, leave)`, or `None`.
fn box_interval(eye: V3, dir: V3) -> Option<(f32, f32)> {
    let (mut near, mut far) = (0.0f32, f32::INFINITY);
    for k in 0..3 {
        if dir[k].abs() < 1e-12 {
            if eye[k].abs() > 1.0 {
                return None;
            }
            continue;
        }
        let (a, b) = ((-1.0 - eye[k]) / dir[k], (1.0 - eye[k]) / dir[k]);
        near = near.max(a.min(b));
        far = far.min(a.max(b));
    }
    (near <= far).then_some((near, far))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sphere of radius 0.5 about the origin, in tensors.
    fn sphere(points: Tensor<2>) -> Tensor<2> {
        points.square().sum_dim(1).sqrt() - 0.5
    }

    #[test]
    fn sphere_hits_where_the_geometry_says() {
        let device = Device::flex();
        let camera = Camera::orbit(3, 8, 3.0, 20.0);
        let (w, h) = (48, 32);
        // Every step looked at, and every eighth (the GPU's choice): the same hits.
        let hits = trace(&sphere, &camera, w, h, 1, &device);
        let t = read_floats(hits.t);
        let coarse = trace(&sphere, &camera, w, h, 8, &device);
        let mut pairs: Vec<(usize, f32)> = coarse.pixels.iter().copied().zip(read_floats(coarse.t)).collect();
        pairs.sort_by_key(|p| p.0);
        let mut fine: Vec<(usize, f32)> = hits.pixels.iter().copied().zip(t.iter().copied()).collect();
        fine.sort_by_key(|p| p.0);
        assert_eq!(pairs, fine, "reading every 8 steps changes the hits");
        let mut hit = vec![None; w * h];
        for (&i, &t) in hits.pixels.iter().zip(&t) {
            hit[i] = Some(t);
        }
        for (i, hit) in hit.iter().enumerate() {
            let dir = camera.ray(i % w, i / w, w, h);
            // Exact ray-sphere intersection.
            let b = dot(camera.eye, dir);
            let c = dot(camera.eye, camera.eye) - 0.25;
            let disc = b * b - c;
            match hit {
                Some(t) => {
                    assert!(disc > 0.0, "pixel {i} hit a sphere it misses");
                    // On the surface, and on the near side (grazing rays stop a little early).
                    let p = [0, 1, 2].map(|k| camera.eye[k] + t * dir[k]);
                    assert!((dot(p, p).sqrt() - 0.5).abs() < 1.5e-3, "pixel {i}: t {t}");
                    assert!(*t <= -b + 1e-3, "pixel {i}: t {t} is past the sphere's middle");
                }
                // Grazing rays may miss within the hit tolerance.
                None => assert!(disc < 0.01, "pixel {i} missed (disc {disc})"),
            }
        }
        assert!(hit.iter().filter(|h| h.is_some()).count() > 100);
    }

    #[test]
    fn lit_sphere_is_brightest_facing_the_camera() {
        let device = Device::flex();
        let camera = Camera::orbit(0, 1, 3.0, 0.0);
        let (w, h) = (33, 33);
        let picture = |shading| read_floats(render(&sphere, &camera, w, h, shading, &device));
        let lit = picture(Shading::Lit);
        assert_eq!(lit.len(), w * h * 3);
        let centre = (16 * w + 16) * 3;
        assert!(lit[centre] > 0.8, "centre {}", lit[centre]);
        assert_eq!(lit[0], 1.0, "background");
        let normal = picture(Shading::Normal);
        // The centre's normal points at the camera (+z).
        assert!((normal[centre + 2] - 1.0).abs() < 0.02 && (normal[centre] - 0.5).abs() < 0.02);
        let depth = picture(Shading::Depth);
        assert!((depth[centre] - 1.0).abs() < 0.05 && depth[0] == 0.0);
        // Nothing in view: the background alone.
        let away = Camera::look_at([0.0, 0.0, 3.0], [0.0, 0.0, 6.0], [0.0, 1.0, 0.0], 40.0);
        assert!(read_floats(render(&sphere, &away, 8, 8, Shading::Lit, &device)).iter().all(|&v| v == 1.0));
    }

    #[test]
    fn normals_are_the_gradient_direction() {
        let device = Device::flex();
        let points = [[0.5f32, 0.0, 0.0], [0.0, -0.3, 0.4], [0.2, 0.2, -0.2]];
        let x = Tensor::<2>::from_data(TensorData::new(points.concat(), [3, 3]), &device);
        let normals = read_floats(normals_on_device(&sphere, x, 1e-3));
        for (p, n) in points.iter().zip(normals.chunks(3)) {
            let expected = unit(*p);
            assert!((0..3).all(|k| (n[k] - expected[k]).abs() < 1e-3), "{n:?} vs {expected:?}");
        }
    }
}
