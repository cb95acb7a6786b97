//! Pinhole cameras with optional OpenCV lens distortion: the ray and projection maths of radiance fields.
//!
//! Conventions are those of NeRF's and instant-ngp's `transforms.json` (OpenGL): `to_world` maps camera space to world
//! space, and in camera space x points right, y up, and the camera looks down -z. Pixel coordinates are OpenCV's:
//! x right, y down, and pixel (i, j) covers [i, i + 1) x [j, j + 1), so its centre is (i + 0.5, j + 0.5).

use nalgebra::{Matrix3, Matrix4, Vector3};
use rayon::prelude::*;

/// OpenCV's radial-tangential lens model (COLMAP's "OPENCV"), acting on normalised image coordinates (y down).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distortion {
    pub k1: f32,
    pub k2: f32,
    pub p1: f32,
    pub p2: f32,
}

/// Newton steps for [`Distortion::undistort`]; each converges quadratically, so a handful would do for real lenses.
const UNDISTORT_ITERATIONS: usize = 10;

impl Distortion {
    /// Where the lens images an undistorted normalised point (x, y).
    pub fn distort(&self, x: f32, y: f32) -> [f32; 2] {
        let ([xd, yd], _) = self.distort_with_jacobian(x as f64, y as f64);
        [xd as f32, yd as f32]
    }

    /// The forward model and its Jacobian d(xd, yd)/d(x, y), in f64 so Newton converges well below f32 precision.
    fn distort_with_jacobian(&self, x: f64, y: f64) -> ([f64; 2], [[f64; 2]; 2]) {
        let (k1, k2, p1, p2) = (self.k1 as f64, self.k2 as f64, self.p1 as f64, self.p2 as f64);
        let r2 = x * x + y * y;
        let radial = 1.0 + k1 * r2 + k2 * r2 * r2;
        let d_radial_d_r2 = k1 + 2.0 * k2 * r2;
        let xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x);
        let yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y;
        let jacobian = [
            [radial + 2.0 * x * x * d_radial_d_r2 + 2.0 * p1 * y + 6.0 * p2 * x, 2.0 * x * y * d_radial_d_r2 + 2.0 * p1 * x + 2.0 * p2 * y],
            [2.0 * x * y * d_radial_d_r2 + 2.0 * p1 * x + 2.0 * p2 * y, radial + 2.0 * y * y * d_radial_d_r2 + 6.0 * p1 * y + 2.0 * p2 * x],
        ];
        ([xd, yd], jacobian)
    }

    /// Inverts [`Distortion::distort`] by Newton's method with the analytic Jacobian, starting from the distorted
    /// point (as COLMAP's and instant-ngp's `iterative_camera_undistortion` do, though they difference numerically).
    /// OpenCV's `undistortPoints` uses a fixed-point iteration instead, which converges only linearly.
    /// Returns the distorted point unchanged where Newton breaks down (far outside any real lens's field of view).
    pub fn undistort(&self, xd: f32, yd: f32) -> [f32; 2] {
        let target = [xd as f64, yd as f64];
        let mut point = target;
        for _ in 0..UNDISTORT_ITERATIONS {
            let ([fx, fy], j) = self.distort_with_jacobian(point[0], point[1]);
            let (rx, ry) = (fx - target[0], fy - target[1]);
            let det = j[0][0] * j[1][1] - j[0][1] * j[1][0];
            if !det.is_finite() || det.abs() < 1e-12 {
                break;
            }
            let step_x = (j[1][1] * rx - j[0][1] * ry) / det;
            let step_y = (j[0][0] * ry - j[1][0] * rx) / det;
            point = [point[0] - step_x, point[1] - step_y];
            if step_x * step_x + step_y * step_y < 1e-24 {
                break;
            }
        }
        if point.iter().all(|v| v.is_finite()) { [point[0] as f32, point[1] as f32] } else { [xd, yd] }
    }
}

/// A pinhole camera: pose, image size and intrinsics in pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Camera {
    /// Camera-to-world (NeRF/OpenGL convention: x right, y up, the camera looks down -z).
    pub to_world: Matrix4<f32>,
    pub width: usize,
    pub height: usize,
    pub fx: f32,
    pub fy: f32,
    pub cx: f32,
    pub cy: f32,
    pub distortion: Option<Distortion>,
}

impl Camera {
    /// The camera centre in world space.
    pub fn position(&self) -> [f32; 3] {
        [self.to_world[(0, 3)], self.to_world[(1, 3)], self.to_world[(2, 3)]]
    }

    /// The vertical field of view in radians.
    pub fn fov_y(&self) -> f32 {
        2.0 * (0.5 * self.height as f32 / self.fy).atan()
    }

    /// The 3x3 part of `to_world`, which turns camera-space directions into world-space ones.
    pub fn rotation(&self) -> Matrix3<f32> {
        self.to_world.fixed_view::<3, 3>(0, 0).into_owned()
    }

    /// Camera-space direction (x right, y up, z = -1 forward) through the continuous pixel position (px, py).
    fn camera_direction(&self, px: f32, py: f32) -> Vector3<f32> {
        let [x, y] = [(px - self.cx) / self.fx, (py - self.cy) / self.fy];
        let [x, y] = match &self.distortion {
            Some(distortion) => distortion.undistort(x, y),
            None => [x, y],
        };
        Vector3::new(x, -y, -1.0)
    }

    /// World-space origin and unit direction of the ray through continuous pixel position (px, py); the centre of
    /// pixel (i, j) is `ray(i as f32 + 0.5, j as f32 + 0.5)`.
    pub fn ray(&self, px: f32, py: f32) -> ([f32; 3], [f32; 3]) {
        let dir = (self.rotation() * self.camera_direction(px, py)).normalize();
        (self.position(), [dir.x, dir.y, dir.z])
    }

    /// Origins and unit directions of the rays through every pixel centre, row-major (y outer, x inner), each
    /// flattened to `[width * height * 3]`.
    pub fn pixel_rays(&self) -> (Vec<f32>, Vec<f32>) {
        let pixels = self.width * self.height;
        let origins = self.position().repeat(pixels);
        let mut directions = vec![0.0; pixels * 3];
        if pixels == 0 {
            return (origins, directions);
        }
        let rotation = self.rotation();
        directions.par_chunks_mut(self.width * 3).enumerate().for_each(|(y, row)| {
            for (x, out) in row.chunks_exact_mut(3).enumerate() {
                let dir = (rotation * self.camera_direction(x as f32 + 0.5, y as f32 + 0.5)).normalize();
                out.copy_from_slice(dir.as_slice());
            }
        });
        (origins, directions)
    }

    /// The camera for an image shrunk by `factor` (each output pixel covers a `factor` x `factor` block, the ragged
    /// right and bottom edges cropped). With pixel centres at i + 0.5, continuous coordinates simply scale by
    /// 1/factor, so fx, fy, cx and cy are all divided by it. A factor of 0 is taken as 1.
    pub fn downscaled(&self, factor: usize) -> Camera {
        let factor = factor.max(1);
        let scale = 1.0 / factor as f32;
        Camera {
            width: self.width / factor,
            height: self.height / factor,
            fx: self.fx * scale,
            fy: self.fy * scale,
            cx: self.cx * scale,
            cy: self.cy * scale,
            ..self.clone()
        }
    }

    /// A distortion-free camera at `eye` looking at `target`, with `up` pointing up in the image as far as it can,
    /// square pixels and the principal point in the middle of the image.
    pub fn look_at(eye: [f32; 3], target: [f32; 3], up: [f32; 3], fov_y_radians: f32, width: usize, height: usize) -> Camera {
        let eye = Vector3::from(eye);
        let back = (eye - Vector3::from(target)).try_normalize(1e-12).unwrap_or_else(Vector3::z);
        let right = Vector3::from(up).cross(&back).try_normalize(1e-6).unwrap_or_else(|| any_perpendicular(&back));
        let camera_up = back.cross(&right);
        let mut to_world = Matrix4::identity();
        to_world.fixed_view_mut::<3, 1>(0, 0).copy_from(&right);
        to_world.fixed_view_mut::<3, 1>(0, 1).copy_from(&camera_up);
        to_world.fixed_view_mut::<3, 1>(0, 2).copy_from(&back);
        to_world.fixed_view_mut::<3, 1>(0, 3).copy_from(&eye);
        let focal = 0.5 * height as f32 / (0.5 * fov_y_radians).tan();
        Camera { to_world, width, height, fx: focal, fy: focal, cx: 0.5 * width as f32, cy: 0.5 * height as f32, distortion: None }
    }

    /// Frame `index` of `frames` of a turntable around the world z axis (up in Blender scenes such as NeRF-synthetic):
    /// the camera circles `centre` at distance `radius`, `elevation_degrees` above the xy plane, starting on the +x
    /// side and turning counter-clockwise seen from above, always looking at `centre` with +z up in the image.
    #[allow(clippy::too_many_arguments)]
    pub fn orbit(
        index: usize,
        frames: usize,
        centre: [f32; 3],
        radius: f32,
        elevation_degrees: f32,
        fov_y_radians: f32,
        width: usize,
        height: usize,
    ) -> Camera {
        let azimuth = std::f32::consts::TAU * index as f32 / frames.max(1) as f32;
        let elevation = elevation_degrees.to_radians();
        let offset = [elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(), elevation.sin()];
        let eye = [0, 1, 2].map(|axis| centre[axis] + radius * offset[axis]);
        Camera::look_at(eye, centre, [0.0, 0.0, 1.0], fov_y_radians, width, height)
    }

    /// Pixel position of a world point, or None when it is not in front of the camera (or the pose is singular).
    /// Applies the lens distortion when there is one, so `project` inverts `ray` exactly.
    pub fn project(&self, world: [f32; 3]) -> Option<[f32; 2]> {
        let to_camera = self.rotation().try_inverse()?;
        let p = to_camera * (Vector3::from(world) - Vector3::from(self.position()));
        let depth = -p.z;
        if depth.is_nan() || depth <= 0.0 {
            return None;
        }
        let [x, y] = [p.x / depth, -p.y / depth];
        let [x, y] = match &self.distortion {
            Some(distortion) => distortion.distort(x, y),
            None => [x, y],
        };
        Some([self.fx * x + self.cx, self.fy * y + self.cy])
    }
}

/// A unit vector perpendicular to `v`, for when the requested up vector is parallel to the viewing direction.
fn any_perpendicular(v: &Vector3<f32>) -> Vector3<f32> {
    let helper = if v.x.abs() < 0.9 { Vector3::x() } else { Vector3::y() };
    v.cross(&helper).normalize()
}

/// Slab test of the ray `origin + t * dir` against the box [lo, hi]: the entry t (clamped to >= 0, so 0 when the
/// origin is inside) and exit t, or None when the ray misses, the box is behind, or the inputs are degenerate
/// (non-finite, zero direction, lo > hi).
pub fn ray_box(origin: [f32; 3], dir: [f32; 3], lo: [f32; 3], hi: [f32; 3]) -> Option<(f32, f32)> {
    let finite = origin.iter().chain(&dir).chain(&lo).chain(&hi).all(|v| v.is_finite());
    if !finite || dir == [0.0; 3] || (0..3).any(|axis| lo[axis] > hi[axis]) {
        return None;
    }
    let (mut t_enter, mut t_exit) = (0.0f32, f32::INFINITY);
    for axis in 0..3 {
        let (o, d) = (origin[axis], dir[axis]);
        if d == 0.0 {
            // Parallel to this slab: inside it for every t, or never.
            if o < lo[axis] || o > hi[axis] {
                return None;
            }
            continue;
        }
        let (t0, t1) = ((lo[axis] - o) / d, (hi[axis] - o) / d);
        t_enter = t_enter.max(t0.min(t1));
        t_exit = t_exit.min(t0.max(t1));
    }
    (t_exit >= t_enter).then_some((t_enter, t_exit))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOX: Distortion = Distortion { k1: 0.0578421, k2: -0.0805099, p1: -0.000980296, p2: 0.00015575 };

    fn camera(to_world: Matrix4<f32>) -> Camera {
        Camera { to_world, width: 100, height: 80, fx: 50.0, fy: 40.0, cx: 50.0, cy: 40.0, distortion: None }
    }

    fn assert_close(a: &[f32], b: &[f32], tolerance: f32) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tolerance, "{a:?} != {b:?}");
        }
    }

    fn normalised(v: [f32; 3]) -> [f32; 3] {
        let n = Vector3::from(v).normalize();
        [n.x, n.y, n.z]
    }

    #[test]
    fn identity_pose_rays_by_hand() {
        let cam = camera(Matrix4::identity());
        let (origin, dir) = cam.ray(50.0, 40.0);
        assert_eq!(origin, [0.0; 3]);
        assert_close(&dir, &[0.0, 0.0, -1.0], 1e-7);
        // Pixel (0, 0): x = (0.5 - 50) / 50 = -0.99, y = (0.5 - 40) / 40 = -0.9875 (down), so camera y = +0.9875.
        let (_, corner) = cam.ray(0.5, 0.5);
        assert_close(&corner, &normalised([-0.99, 0.9875, -1.0]), 1e-6);
        // The far edge of the image: one focal length right and down of the centre.
        let (_, edge) = cam.ray(100.0, 80.0);
        assert_close(&edge, &normalised([1.0, -1.0, -1.0]), 1e-6);
    }

    #[test]
    fn rotated_and_translated_pose_by_hand() {
        // 90 degrees about +y: camera -z (forward) becomes world -x, camera +x becomes world -z.
        #[rustfmt::skip]
        let to_world = Matrix4::new(
            0.0, 0.0, 1.0, 1.0,
            0.0, 1.0, 0.0, 2.0,
            -1.0, 0.0, 0.0, 3.0,
            0.0, 0.0, 0.0, 1.0,
        );
        let cam = camera(to_world);
        let (origin, forward) = cam.ray(50.0, 40.0);
        assert_eq!(origin, [1.0, 2.0, 3.0]);
        assert_close(&forward, &[-1.0, 0.0, 0.0], 1e-7);
        let (_, right) = cam.ray(100.0, 40.0); // camera (1, 0, -1)
        assert_close(&right, &normalised([-1.0, 0.0, -1.0]), 1e-6);
        let (_, down) = cam.ray(50.0, 80.0); // camera (0, -1, -1)
        assert_close(&down, &normalised([-1.0, -1.0, 0.0]), 1e-6);
    }

    #[test]
    fn project_inverts_ray() {
        let mut cam = Camera::look_at([3.0, -2.0, 1.5], [0.2, 0.1, -0.3], [0.0, 0.0, 1.0], 0.8, 64, 48);
        for distortion in [None, Some(FOX)] {
            cam.distortion = distortion;
            for (px, py) in [(0.5, 0.5), (32.0, 24.0), (63.5, 10.25), (7.0, 47.5)] {
                let (origin, dir) = cam.ray(px, py);
                for t in [0.5, 2.0, 10.0] {
                    let point = [0, 1, 2].map(|a| origin[a] + t * dir[a]);
                    let pixel = cam.project(point).expect("in front of the camera");
                    assert_close(&pixel, &[px, py], 2e-3);
                }
                let behind = [0, 1, 2].map(|a| origin[a] - dir[a]);
                assert_eq!(cam.project(behind), None);
            }
        }
    }

    #[test]
    fn undistortion_recovers_the_direction() {
        let mut cam = Camera { width: 1080, height: 1920, fx: 1375.52, fy: 1374.49, cx: 554.558, cy: 965.268, ..camera(Matrix4::identity()) };
        cam.distortion = Some(FOX);
        // Covers fox's whole portrait frame: |x| <= 0.41, |y| <= 0.72.
        for x in [-0.4f32, -0.21, 0.0, 0.13, 0.41] {
            for y in [-0.7f32, -0.35, 0.0, 0.2, 0.72] {
                let [xd, yd] = FOX.distort(x, y);
                let (_, dir) = cam.ray(cam.fx * xd + cam.cx, cam.fy * yd + cam.cy);
                assert_close(&dir, &normalised([x, -y, -1.0]), 1e-5);
            }
        }
    }

    #[test]
    fn pixel_rays_are_row_major_pixel_centres() {
        let mut cam = Camera::look_at([1.0, 2.0, 3.0], [0.0; 3], [0.0, 0.0, 1.0], 1.0, 7, 5);
        cam.distortion = Some(FOX);
        let (origins, directions) = cam.pixel_rays();
        assert_eq!((origins.len(), directions.len()), (105, 105));
        for j in 0..5 {
            for i in 0..7 {
                let k = (j * 7 + i) * 3;
                let (origin, dir) = cam.ray(i as f32 + 0.5, j as f32 + 0.5);
                assert_close(&origins[k..k + 3], &origin, 0.0);
                assert_close(&directions[k..k + 3], &dir, 1e-6);
            }
        }
        let empty = Camera { width: 0, ..cam };
        assert_eq!(empty.pixel_rays(), (vec![], vec![]));
    }

    #[test]
    fn downscaled_pixel_centres_are_block_centres() {
        let cam = Camera { width: 103, height: 81, cx: 51.2, cy: 39.7, ..camera(Matrix4::identity()) };
        let small = cam.downscaled(4);
        assert_eq!((small.width, small.height), (25, 20));
        assert_close(&[small.fx, small.fy, small.cx, small.cy], &[12.5, 10.0, 12.8, 9.925], 1e-6);
        for (i, j) in [(0usize, 0usize), (24, 19), (10, 3)] {
            // Block (i, j) covers full-size pixels 4i..4i+4, whose centre is at 4i + 2.
            let (_, coarse) = small.ray(i as f32 + 0.5, j as f32 + 0.5);
            let (_, fine) = cam.ray(4.0 * i as f32 + 2.0, 4.0 * j as f32 + 2.0);
            assert_close(&coarse, &fine, 1e-6);
        }
        assert_eq!(cam.downscaled(0), cam);
    }

    #[test]
    fn look_at_centres_the_target_with_up_up() {
        let cam = Camera::look_at([0.0, -4.0, 1.0], [0.0, 0.0, 0.5], [0.0, 0.0, 1.0], 0.6, 40, 30);
        assert_close(&cam.project([0.0, 0.0, 0.5]).expect("target is visible"), &[20.0, 15.0], 1e-4);
        // A point above the target appears above the centre: smaller pixel y.
        assert!(cam.project([0.0, 0.0, 1.0]).expect("visible")[1] < 15.0);
        assert_close(&[cam.fy], &[0.5 * 30.0 / 0.3f32.tan()], 1e-3);
        let rotation = cam.rotation();
        assert!(((rotation * rotation.transpose()) - Matrix3::identity()).norm() < 1e-6);
        // Looking straight down the up vector still gives a valid orthonormal camera.
        let down = Camera::look_at([0.0, 0.0, 5.0], [0.0; 3], [0.0, 0.0, 1.0], 0.6, 40, 30);
        assert_close(&down.ray(20.0, 15.0).1, &[0.0, 0.0, -1.0], 1e-6);
        assert!((down.rotation().determinant() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn orbit_circles_the_z_axis() {
        let centre = [0.5, -0.25, 0.1];
        for index in 0..8 {
            let cam = Camera::orbit(index, 8, centre, 4.0, 30.0, 0.7, 32, 32);
            let eye = cam.position();
            let offset = Vector3::from(eye) - Vector3::from(centre);
            assert!((offset.norm() - 4.0).abs() < 1e-5);
            assert!((offset.z - 2.0).abs() < 1e-5, "elevation 30 degrees at radius 4 is 2 above the centre");
            assert_close(&cam.project(centre).expect("centre is visible"), &[16.0, 16.0], 1e-3);
            assert!(cam.rotation().column(1).z > 0.0, "world +z is up in the image");
        }
        let first = Camera::orbit(0, 8, centre, 4.0, 0.0, 0.7, 32, 32).position();
        assert_close(&first, &[4.5, -0.25, 0.1], 1e-5);
        let quarter = Camera::orbit(2, 8, centre, 4.0, 0.0, 0.7, 32, 32).position();
        assert_close(&quarter, &[0.5, 3.75, 0.1], 1e-5);
    }

    #[test]
    fn ray_box_hits_and_misses() {
        let (lo, hi) = ([-1.0; 3], [1.0; 3]);
        assert_eq!(ray_box([-3.0, 0.0, 0.0], [1.0, 0.0, 0.0], lo, hi), Some((2.0, 4.0)));
        let (enter, exit) = ray_box([-3.0, -3.0, 0.5], normalised([1.0, 1.0, 0.0]), lo, hi).expect("diagonal hit");
        assert_close(&[enter, exit], &[2.0 * 2f32.sqrt(), 4.0 * 2f32.sqrt()], 1e-5);
        assert_eq!(ray_box([0.0, 0.5, 0.0], [0.0, 0.0, -1.0], lo, hi), Some((0.0, 1.0)), "origin inside");
        assert_eq!(ray_box([-3.0, 2.0, 0.0], [1.0, 0.0, 0.0], lo, hi), None, "parallel, outside a slab");
        assert_eq!(ray_box([-3.0, 0.0, 0.0], [-1.0, 0.0, 0.0], lo, hi), None, "box behind");
        assert_eq!(ray_box([-3.0, 0.0, 0.0], [1.0, 1.0, 0.0], lo, hi), None, "passes beside");
        assert_eq!(ray_box([-3.0, 0.0, 0.0], [0.0; 3], lo, hi), None, "no direction");
        assert_eq!(ray_box([f32::NAN, 0.0, 0.0], [1.0, 0.0, 0.0], lo, hi), None);
        // Grazing an edge still counts as a (zero-length) hit.
        assert_eq!(ray_box([-3.0, 1.0, 1.0], [1.0, 0.0, 0.0], lo, hi), Some((2.0, 4.0)));
    }
}
