//! Sphere tracing a signed distance field: pictures of a trained SDF from any camera.
//!
//! Each ray starts where it enters the `[-1, 1]^3` box and steps by the distance the field
//! reports until it is within `HIT` of the surface or leaves the box. Rays are traced together
//! and the finished ones dropped each step, so the field sees one batch per step. Normals are the
//! field's gradient by central differences; shading is a headlight Lambert term plus ambient.

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

/// Where each ray hit the surface (`None`: it missed), by sphere tracing `sdf`, which maps
/// points (flat `[N, 3]`) to signed distances.
pub fn trace(sdf: &mut dyn FnMut(&[f32]) -> Vec<f32>, camera: &Camera, width: usize, height: usize) -> Vec<Option<f32>> {
    let n = width * height;
    let dirs: Vec<V3> = (0..n).map(|i| camera.ray(i % width, i / width, width, height)).collect();
    let mut hits = vec![None; n];
    // (pixel, t, where the ray leaves the box).
    let mut active: Vec<(usize, f32, f32)> = (0..n).filter_map(|i| box_interval(camera.eye, dirs[i]).map(|(near, far)| (i, near, far))).collect();
    for _ in 0..MAX_STEPS {
        if active.is_empty() {
            break;
        }
        let points: Vec<f32> = active
            .iter()
            .flat_map(|&(i, t, _)| {
                let dir = dirs[i];
                (0..3).map(move |k| camera.eye[k] + t * dir[k])
            })
            .collect();
        let distances = sdf(&points);
        let mut still = Vec::with_capacity(active.len());
        for (&(i, t, far), &d) in active.iter().zip(&distances) {
            if d.abs() < HIT {
                hits[i] = Some(t);
            } else if t <= far && d.is_finite() {
                still.push((i, t + STEP_SCALE * d, far));
            }
        }
        active = still;
    }
    hits
}

/// Normals (unit gradients of `sdf`) at `points` (flat `[N, 3]`), by central differences `step`
/// apart along each axis.
pub fn normals(sdf: &mut dyn FnMut(&[f32]) -> Vec<f32>, points: &[f32], step: f32) -> Vec<V3> {
    let n = points.len() / 3;
    let mut probes = Vec::with_capacity(n * 18);
    for p in points.chunks(3) {
        for k in 0..3 {
            for s in [1.0, -1.0] {
                let mut q = [p[0], p[1], p[2]];
                q[k] += s * step;
                probes.extend_from_slice(&q);
            }
        }
    }
    let d = sdf(&probes);
    d.chunks(6).map(|d| unit([d[0] - d[1], d[2] - d[3], d[4] - d[5]])).collect()
}

/// A `width x height` RGB picture (`[H, W, 3]` in `[0, 1]`) of the zero level set of `sdf`.
pub fn render(sdf: &mut dyn FnMut(&[f32]) -> Vec<f32>, camera: &Camera, width: usize, height: usize, shading: Shading) -> Vec<f32> {
    let hits = trace(sdf, camera, width, height);
    let hit_pixels: Vec<usize> = (0..hits.len()).filter(|&i| hits[i].is_some()).collect();
    let background = if shading == Shading::Lit { 1.0 } else { 0.0 };
    let mut pixels = vec![background; width * height * 3];
    if hit_pixels.is_empty() {
        return pixels;
    }
    let depth = |i: usize| hits[i].unwrap_or(0.0);
    match shading {
        Shading::Depth => {
            let near = hit_pixels.iter().map(|&i| depth(i)).fold(f32::INFINITY, f32::min);
            let far = hit_pixels.iter().map(|&i| depth(i)).fold(f32::NEG_INFINITY, f32::max);
            for &i in &hit_pixels {
                let v = 1.0 - 0.8 * (depth(i) - near) / (far - near).max(1e-6);
                pixels[i * 3..i * 3 + 3].fill(v);
            }
        }
        Shading::Lit | Shading::Normal => {
            let points: Vec<f32> = hit_pixels
                .iter()
                .flat_map(|&i| {
                    let dir = camera.ray(i % width, i / width, width, height);
                    (0..3).map(move |k| camera.eye[k] + depth(i) * dir[k])
                })
                .collect();
            let normals = normals(sdf, &points, NORMAL_STEP);
            for (&i, n) in hit_pixels.iter().zip(&normals) {
                let rgb = if shading == Shading::Normal {
                    n.map(|c| 0.5 * c + 0.5)
                } else {
                    let dir = camera.ray(i % width, i / width, width, height);
                    let lambert = (-dot(*n, dir)).max(0.0);
                    [0.85, 0.72, 0.58].map(|albedo| albedo * (0.2 + 0.8 * lambert))
                };
                pixels[i * 3..i * 3 + 3].copy_from_slice(&rgb);
            }
        }
    }
    pixels
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

    fn sphere(points: &[f32]) -> Vec<f32> {
        points.chunks(3).map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt() - 0.5).collect()
    }

    #[test]
    fn sphere_hits_where_the_geometry_says() {
        let camera = Camera::orbit(3, 8, 3.0, 20.0);
        let (w, h) = (48, 32);
        let hits = trace(&mut sphere, &camera, w, h);
        for (i, hit) in hits.iter().enumerate() {
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
        assert!(hits.iter().filter(|h| h.is_some()).count() > 100);
    }

    #[test]
    fn lit_sphere_is_brightest_facing_the_camera() {
        let camera = Camera::orbit(0, 1, 3.0, 0.0);
        let (w, h) = (33, 33);
        let lit = render(&mut sphere, &camera, w, h, Shading::Lit);
        let centre = (16 * w + 16) * 3;
        assert!(lit[centre] > 0.8, "centre {}", lit[centre]);
        assert_eq!(lit[0], 1.0, "background");
        let normal = render(&mut sphere, &camera, w, h, Shading::Normal);
        // The centre's normal points at the camera (+z).
        assert!((normal[centre + 2] - 1.0).abs() < 0.02 && (normal[centre] - 0.5).abs() < 0.02);
        let depth = render(&mut sphere, &camera, w, h, Shading::Depth);
        assert!((depth[centre] - 1.0).abs() < 0.05 && depth[0] == 0.0);
    }
}
