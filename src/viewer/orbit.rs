//! The viewer's cameras: an orbit around a point (SDFs, radiance fields) and a window over the
//! unit square (images), with the mouse gestures that move them.

use crate::data::camera::Camera;

/// A camera circling `centre` at `distance`, `azimuth` around the `up` axis and `elevation`
/// above the plane perpendicular to it (radians).
#[derive(Debug, Clone, PartialEq)]
pub struct Orbit {
    pub centre: [f32; 3],
    pub distance: f32,
    pub azimuth: f32,
    pub elevation: f32,
    pub up: [f32; 3],
    pub fov_y: f32,
}

fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn unit(a: [f32; 3]) -> [f32; 3] {
    let n = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt().max(1e-12);
    a.map(|v| v / n)
}

impl Orbit {
    pub fn new(centre: [f32; 3], distance: f32, up: [f32; 3], fov_y: f32) -> Self {
        Self { centre, distance, azimuth: 0.6, elevation: 0.45, up: unit(up), fov_y }
    }

    /// Two axes that span the plane perpendicular to `up`.
    fn ground(&self) -> ([f32; 3], [f32; 3]) {
        let helper = if self.up[0].abs() < 0.9 { [1.0, 0.0, 0.0] } else { [0.0, 1.0, 0.0] };
        let a = unit(cross(self.up, helper));
        let b = cross(self.up, a);
        (b, a)
    }

    pub fn eye(&self) -> [f32; 3] {
        let (a, b) = self.ground();
        let (ce, se) = (self.elevation.cos(), self.elevation.sin());
        let (ca, sa) = (self.azimuth.cos(), self.azimuth.sin());
        [0, 1, 2].map(|k| self.centre[k] + self.distance * (ce * (ca * a[k] + sa * b[k]) + se * self.up[k]))
    }

    pub fn camera(&self, width: usize, height: usize) -> Camera {
        Camera::look_at(self.eye(), self.centre, self.up, self.fov_y, width, height)
    }

    /// Left drag turns the camera around the centre.
    pub fn rotate(&mut self, dx: f32, dy: f32) {
        self.azimuth -= dx * 0.01;
        self.elevation = (self.elevation + dy * 0.01).clamp(-1.5, 1.5);
    }

    /// Shift-drag (or any other button) moves the centre in the picture's plane (`height` pixels
    /// tall).
    pub fn pan(&mut self, dx: f32, dy: f32, height: f32) {
        let camera = self.camera(2, 2);
        let r = camera.rotation();
        let per_pixel = 2.0 * self.distance * (0.5 * self.fov_y).tan() / height.max(1.0);
        for k in 0..3 {
            self.centre[k] += per_pixel * (-dx * r[(k, 0)] + dy * r[(k, 1)]);
        }
    }

    /// Put the camera where `camera` is, looking the same way (its roll aside), keeping the
    /// orbit's centre as far along that direction as it was from the camera.
    pub fn look_from(&mut self, camera: &Camera) {
        let eye = camera.position();
        let r = camera.rotation();
        let forward = [-r[(0, 2)], -r[(1, 2)], -r[(2, 2)]];
        let distance: f32 = (0..3).map(|k| (self.centre[k] - eye[k]) * forward[k]).sum::<f32>().max(1e-3);
        self.centre = [0, 1, 2].map(|k| eye[k] + distance * forward[k]);
        self.distance = distance;
        let back = [0, 1, 2].map(|k| (eye[k] - self.centre[k]) / distance);
        let (a, b) = self.ground();
        let dot = |u: [f32; 3], v: [f32; 3]| u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
        self.elevation = dot(back, self.up).clamp(-1.0, 1.0).asin().clamp(-1.5, 1.5);
        self.azimuth = dot(back, b).atan2(dot(back, a));
        self.fov_y = camera.fov_y();
    }

    /// Scrolling moves the camera towards the centre or away.
    pub fn dolly(&mut self, scroll: f32) {
        self.distance = (self.distance * (-scroll * 0.002).exp()).clamp(1e-3, 1e6);
    }
}

/// A window over the unit square: its centre and its width as a share of the square's.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub centre: [f32; 2],
    pub span: f32,
    /// Width over height of the square's picture (the image's).
    pub aspect: f32,
}

impl Window {
    /// The whole square at one picture pixel per screen pixel when it fits in `size`, else fitted.
    pub fn fit(aspect: f32, image_width: usize, size: [f32; 2]) -> Self {
        let fits = (size[0] / image_width as f32).min(size[1] * aspect / image_width as f32);
        let span = if fits >= 1.0 { size[0] / image_width as f32 } else { (size[0] / size[1]).max(aspect) / aspect };
        Self { centre: [0.5, 0.5], span, aspect }
    }

    /// Dragging by (dx, dy) pixels of a view `width` pixels wide moves the picture with the mouse.
    pub fn pan(&mut self, dx: f32, dy: f32, width: f32) {
        let per_pixel = self.span / width.max(1.0);
        self.centre[0] -= dx * per_pixel;
        self.centre[1] -= dy * per_pixel * self.aspect;
    }

    /// Zoom by `scroll` around the point under the mouse, `at` in [-0.5, 0.5] of the view.
    pub fn zoom(&mut self, scroll: f32, at: [f32; 2], size: [f32; 2]) {
        let factor = (-scroll * 0.002).exp();
        let before = [at[0] * self.span, at[1] * self.span * self.aspect * size[1] / size[0]];
        self.span = (self.span * factor).clamp(1e-4, 100.0);
        let after = [at[0] * self.span, at[1] * self.span * self.aspect * size[1] / size[0]];
        self.centre[0] += before[0] - after[0];
        self.centre[1] += before[1] - after[1];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_orbit_looks_at_its_centre_from_its_distance() {
        for up in [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]] {
            let mut orbit = Orbit::new([0.5, -0.2, 0.1], 3.0, up, 0.7);
            orbit.rotate(40.0, -25.0);
            let eye = orbit.eye();
            let d = (0..3).map(|k| (eye[k] - orbit.centre[k]).powi(2)).sum::<f32>().sqrt();
            assert!((d - 3.0).abs() < 1e-4, "{d}");
            let camera = orbit.camera(64, 48);
            let pixel = camera.project(orbit.centre).unwrap();
            assert!((pixel[0] - 32.0).abs() < 1e-3 && (pixel[1] - 24.0).abs() < 1e-3, "{pixel:?}");
            // Panning keeps the distance and moves the centre sideways in the picture.
            let before = orbit.centre;
            orbit.pan(10.0, 0.0, 48.0);
            let moved = camera.project(orbit.centre).unwrap();
            assert!(moved[0] < 32.0 && (moved[1] - 24.0).abs() < 1e-2, "{before:?} -> {moved:?}");
        }
    }

    #[test]
    fn looking_from_a_camera_puts_the_orbit_there() {
        let mut o = Orbit::new([0.1, -0.2, 0.3], 2.0, [0.0, 0.0, 1.0], 0.8);
        let camera = Camera::look_at([2.0, 1.0, 1.5], [0.0, 0.0, 0.2], [0.0, 0.0, 1.0], 0.6, 64, 48);
        o.look_from(&camera);
        let seen = o.camera(64, 48);
        let (p, q) = (seen.position(), camera.position());
        assert!((0..3).all(|k| (p[k] - q[k]).abs() < 1e-4), "{p:?} against {q:?}");
        let (r, s) = (seen.rotation(), camera.rotation());
        assert!((0..3).all(|k| (r[(k, 2)] - s[(k, 2)]).abs() < 1e-4), "looking the same way");
        assert!((o.fov_y - 0.6).abs() < 1e-5);
    }

    #[test]
    fn zooming_keeps_the_point_under_the_mouse() {
        let mut w = Window { centre: [0.5, 0.5], span: 1.0, aspect: 1.5 };
        let size = [300.0, 200.0];
        let at = [0.25, -0.1];
        let point = |w: &Window| [w.centre[0] + at[0] * w.span, w.centre[1] + at[1] * w.span * w.aspect * size[1] / size[0]];
        let before = point(&w);
        w.zoom(120.0, at, size);
        let after = point(&w);
        assert!(w.span < 1.0);
        assert!((before[0] - after[0]).abs() < 1e-6 && (before[1] - after[1]).abs() < 1e-6, "{before:?} {after:?}");
    }
}
