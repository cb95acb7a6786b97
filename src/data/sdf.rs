//! Signed distance to a triangle mesh: the distance from a BVH's closest-point query, the sign
//! from the generalised winding number (Jacobson et al. 2013), evaluated hierarchically with
//! far-field dipoles (Barill et al. 2018) so that meshes with small holes still get a sane
//! inside. Negative inside, positive outside (NeuRBF's and instant-ngp's convention).

use rayon::prelude::*;

use super::mesh::Mesh;

type V3 = [f32; 3];

fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn scale(a: V3, s: f32) -> V3 {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn dot(a: V3, b: V3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: V3, b: V3) -> V3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}
fn norm(a: V3) -> f32 {
    dot(a, a).sqrt()
}

/// Triangles per BVH leaf.
const LEAF: usize = 4;
/// A node is treated as one dipole when the query is farther than this many node radii.
const FAR: f32 = 2.5;

#[derive(Debug, Clone)]
struct Node {
    lo: V3,
    hi: V3,
    /// Leaf: triangles `start..start + count` of `order`; inner node (`count` 0): its children.
    start: usize,
    count: usize,
    children: [usize; 2],
    /// Area-weighted normal sum (half the sum of edge cross products) and area-weighted centre.
    dipole: V3,
    centre: V3,
    radius: f32,
}

/// A mesh prepared for signed-distance queries.
pub struct MeshSdf {
    triangles: Vec<[V3; 3]>,
    /// Triangle indices in BVH order.
    order: Vec<usize>,
    nodes: Vec<Node>,
}

impl MeshSdf {
    /// `mesh` must have a triangle (`Mesh::load` checks that).
    pub fn new(mesh: &Mesh) -> Self {
        assert!(!mesh.triangles.is_empty(), "a signed distance needs at least one triangle");
        let triangles: Vec<[V3; 3]> = mesh.triangles.iter().map(|t| t.map(|i| mesh.vertices[i as usize])).collect();
        let mut order: Vec<usize> = (0..triangles.len()).collect();
        let mut nodes = vec![];
        let centroids: Vec<V3> = triangles.iter().map(|t| scale(add(add(t[0], t[1]), t[2]), 1.0 / 3.0)).collect();
        build(&triangles, &centroids, &mut order, 0, triangles.len(), 0, &mut nodes);
        Self { triangles, order, nodes }
    }

    /// Distance from `q` to the nearest point of the surface.
    pub fn distance(&self, q: V3) -> f32 {
        let mut best = f32::INFINITY;
        // (squared distance to the node's box, node), nearest on top.
        let mut stack = Vec::with_capacity(64);
        stack.push((0.0f32, 0usize));
        while let Some((box_distance, i)) = stack.pop() {
            if box_distance >= best {
                continue;
            }
            let node = &self.nodes[i];
            if node.count > 0 {
                for &t in &self.order[node.start..node.start + node.count] {
                    let p = closest_on_triangle(q, self.triangles[t]);
                    let d = sub(q, p);
                    best = best.min(dot(d, d));
                }
            } else {
                let [a, b] = node.children.map(|c| (self.box_distance(q, c), c));
                let (near, far) = if a.0 < b.0 { (a, b) } else { (b, a) };
                if far.0 < best {
                    stack.push(far);
                }
                if near.0 < best {
                    stack.push(near);
                }
            }
        }
        best.sqrt()
    }

    fn box_distance(&self, q: V3, node: usize) -> f32 {
        box_distance_squared(q, self.nodes[node].lo, self.nodes[node].hi)
    }

    /// The generalised winding number at `q`: 1 inside a closed, outward-facing surface, 0
    /// outside, in between near holes.
    pub fn winding_number(&self, q: V3) -> f32 {
        let mut total = 0.0f64;
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            let node = &self.nodes[i];
            let r = sub(node.centre, q);
            let distance = norm(r);
            if distance > FAR * node.radius {
                total += (dot(node.dipole, r) / (distance * distance * distance)) as f64;
            } else if node.count > 0 {
                for &t in &self.order[node.start..node.start + node.count] {
                    total += solid_angle(q, self.triangles[t]) as f64;
                }
            } else {
                stack.extend(node.children);
            }
        }
        (total / (4.0 * std::f64::consts::PI)) as f32
    }

    /// Signed distance: negative where the winding number exceeds 1/2.
    pub fn signed_distance(&self, q: V3) -> f32 {
        let d = self.distance(q);
        if self.winding_number(q) > 0.5 { -d } else { d }
    }

    /// Signed distances of many points, in parallel.
    pub fn signed_distances(&self, queries: &[V3]) -> Vec<f32> {
        queries.par_iter().map(|&q| self.signed_distance(q)).collect()
    }

    /// `n` training samples as instant-ngp and NeuRBF draw them, in the ratio 4 : 3 : 1: points
    /// on the surface (distance 0, not queried), surface points moved by N(0, `noise`²) per
    /// axis, and points uniform in `[-1, 1]^3`. Returns the points and their signed distances.
    pub fn training_samples(&self, n: usize, noise: f32, rng: &mut impl rand::Rng) -> (Vec<V3>, Vec<f32>) {
        use rand::RngExt;
        let areas = self.cumulative_areas();
        let (surface, near) = (n / 2, 3 * n / 8);
        let mut points = Vec::with_capacity(n);
        for i in 0..surface + near {
            let p = self.surface_point(&areas, rng.random(), rng.random(), rng.random());
            points.push(if i < surface { p } else { add(p, [0; 3].map(|_| noise * standard_normal(rng))) });
        }
        while points.len() < n {
            points.push([0; 3].map(|_| rng.random::<f32>() * 2.0 - 1.0));
        }
        let mut distances = vec![0.0; surface];
        distances.extend(self.signed_distances(&points[surface..]));
        (points, distances)
    }

    /// A point on the surface, uniformly by area, from two uniform numbers and a triangle pick
    /// (used by the training-sample generator).
    pub fn surface_point(&self, cumulative_area: &[f32], pick: f32, u: f32, v: f32) -> V3 {
        let total = *cumulative_area.last().unwrap_or(&0.0);
        let t = cumulative_area.partition_point(|&a| a < pick * total).min(self.triangles.len() - 1);
        let [a, b, c] = self.triangles[t];
        let (u, v) = if u + v > 1.0 { (1.0 - u, 1.0 - v) } else { (u, v) };
        add(a, add(scale(sub(b, a), u), scale(sub(c, a), v)))
    }

    /// Running sum of triangle areas, for `surface_point`.
    pub fn cumulative_areas(&self) -> Vec<f32> {
        let mut sum = 0.0;
        self.triangles
            .iter()
            .map(|t| {
                sum += 0.5 * norm(cross(sub(t[1], t[0]), sub(t[2], t[0])));
                sum
            })
            .collect()
    }
}

/// Past this depth splits are medians, which bounds the recursion whatever the mesh.
const MAX_SAH_DEPTH: usize = 40;

/// Build the subtree over `order[start..end]` at `depth`, push its nodes, return its root's index.
#[allow(clippy::too_many_arguments)]
fn build(triangles: &[[V3; 3]], centroids: &[V3], order: &mut [usize], start: usize, end: usize, depth: usize, nodes: &mut Vec<Node>) -> usize {
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    let mut dipole = [0.0f32; 3];
    let mut weighted = [0.0f32; 3];
    let mut area_sum = 0.0f32;
    for &t in &order[start..end] {
        for v in triangles[t] {
            for a in 0..3 {
                lo[a] = lo[a].min(v[a]);
                hi[a] = hi[a].max(v[a]);
            }
        }
        let n = scale(cross(sub(triangles[t][1], triangles[t][0]), sub(triangles[t][2], triangles[t][0])), 0.5);
        let area = norm(n);
        dipole = add(dipole, n);
        weighted = add(weighted, scale(centroids[t], area));
        area_sum += area;
    }
    let centre = if area_sum > 0.0 { scale(weighted, 1.0 / area_sum) } else { scale(add(lo, hi), 0.5) };
    let radius = order[start..end].iter().flat_map(|&t| triangles[t]).map(|v| norm(sub(v, centre))).fold(0.0f32, f32::max);
    let index = nodes.len();
    nodes.push(Node { lo, hi, start, count: end - start, children: [0, 0], dipole, centre, radius });
    if end - start <= LEAF {
        return index;
    }
    let mid = if depth < MAX_SAH_DEPTH {
        sah_split(triangles, centroids, &mut order[start..end]) + start
    } else {
        // The median centroid along the box's longest axis.
        let axis = (0..3).max_by(|&a, &b| (hi[a] - lo[a]).total_cmp(&(hi[b] - lo[b]))).unwrap_or(0);
        let mid = (start + end) / 2;
        order[start..end].select_nth_unstable_by(mid - start, |&a, &b| centroids[a][axis].total_cmp(&centroids[b][axis]));
        mid
    };
    let left = build(triangles, centroids, order, start, mid, depth + 1, nodes);
    let right = build(triangles, centroids, order, mid, end, depth + 1, nodes);
    nodes[index].children = [left, right];
    nodes[index].count = 0;
    index
}

/// Reorder `order` into two parts and return the first one's length, choosing among binned
/// splits of each axis the one with the least surface-area cost (tight boxes prune more closest-
/// point searches than median splits do).
fn sah_split(triangles: &[[V3; 3]], centroids: &[V3], order: &mut [usize]) -> usize {
    const BINS: usize = 16;
    let n = order.len();
    let mut clo = [f32::INFINITY; 3];
    let mut chi = [f32::NEG_INFINITY; 3];
    for &t in order.iter() {
        for a in 0..3 {
            clo[a] = clo[a].min(centroids[t][a]);
            chi[a] = chi[a].max(centroids[t][a]);
        }
    }
    let area = |lo: V3, hi: V3| {
        let e = sub(hi, lo);
        if e[0] < 0.0 { 0.0 } else { e[0] * e[1] + e[1] * e[2] + e[2] * e[0] }
    };
    let bin_of = |t: usize, axis: usize| {
        let extent = chi[axis] - clo[axis];
        (((centroids[t][axis] - clo[axis]) / extent * BINS as f32) as usize).min(BINS - 1)
    };
    // (cost, axis, bins on the left).
    let mut best = (f32::INFINITY, 0, 0);
    for axis in 0..3 {
        if chi[axis] - clo[axis] <= 0.0 {
            continue;
        }
        let mut boxes = [([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]); BINS];
        let mut counts = [0usize; BINS];
        for &t in order.iter() {
            let b = bin_of(t, axis);
            counts[b] += 1;
            let (lo, hi) = &mut boxes[b];
            for v in triangles[t] {
                for (a, x) in v.into_iter().enumerate() {
                    lo[a] = lo[a].min(x);
                    hi[a] = hi[a].max(x);
                }
            }
        }
        let grow = |acc: (V3, V3), b: (V3, V3)| ([0, 1, 2].map(|a| acc.0[a].min(b.0[a])), [0, 1, 2].map(|a| acc.1[a].max(b.1[a])));
        // Costs of the splits after each bin, from both ends.
        let mut right_cost = [0.0f32; BINS];
        let (mut acc, mut count) = (([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]), 0);
        for b in (1..BINS).rev() {
            acc = grow(acc, boxes[b]);
            count += counts[b];
            right_cost[b] = area(acc.0, acc.1) * count as f32;
        }
        let (mut acc, mut count) = (([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]), 0);
        for split in 1..BINS {
            acc = grow(acc, boxes[split - 1]);
            count += counts[split - 1];
            if count == 0 || count == n {
                continue;
            }
            let cost = area(acc.0, acc.1) * count as f32 + right_cost[split];
            if cost < best.0 {
                best = (cost, axis, split);
            }
        }
    }
    if best.0.is_finite() {
        let (_, axis, split) = best;
        let mut left = 0;
        for i in 0..n {
            if bin_of(order[i], axis) < split {
                order.swap(i, left);
                left += 1;
            }
        }
        return left;
    }
    // All centroids coincide along every axis: halve the list.
    n / 2
}

/// A standard normal sample (Box-Muller).
fn standard_normal(rng: &mut impl rand::Rng) -> f32 {
    use rand::RngExt;
    let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn box_distance_squared(q: V3, lo: V3, hi: V3) -> f32 {
    (0..3).map(|a| (lo[a] - q[a]).max(0.0).max(q[a] - hi[a]).powi(2)).sum()
}

/// Signed solid angle of triangle `t` seen from `q` (Van Oosterom and Strackee 1983); positive
/// when `q` is behind the triangle's counter-clockwise normal.
fn solid_angle(q: V3, t: [V3; 3]) -> f32 {
    let (a, b, c) = (sub(t[0], q), sub(t[1], q), sub(t[2], q));
    let (la, lb, lc) = (norm(a), norm(b), norm(c));
    let det = dot(a, cross(b, c));
    let denominator = la * lb * lc + dot(a, b) * lc + dot(b, c) * la + dot(c, a) * lb;
    2.0 * det.atan2(denominator)
}

/// The point of triangle `t` closest to `q` (Ericson, Real-Time Collision Detection, 5.1.5).
fn closest_on_triangle(q: V3, t: [V3; 3]) -> V3 {
    let [a, b, c] = t;
    let (ab, ac, ap) = (sub(b, a), sub(c, a), sub(q, a));
    let (d1, d2) = (dot(ab, ap), dot(ac, ap));
    if d1 <= 0.0 && d2 <= 0.0 {
        return a;
    }
    let bp = sub(q, b);
    let (d3, d4) = (dot(ab, bp), dot(ac, bp));
    if d3 >= 0.0 && d4 <= d3 {
        return b;
    }
    let vc = d1 * d4 - d3 * d2;
    if vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0 {
        return add(a, scale(ab, d1 / (d1 - d3)));
    }
    let cp = sub(q, c);
    let (d5, d6) = (dot(ab, cp), dot(ac, cp));
    if d6 >= 0.0 && d5 <= d6 {
        return c;
    }
    let vb = d5 * d2 - d1 * d6;
    if vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0 {
        return add(a, scale(ac, d2 / (d2 - d6)));
    }
    let va = d3 * d6 - d5 * d4;
    if va <= 0.0 && (d4 - d3) >= 0.0 && (d5 - d6) >= 0.0 {
        return add(b, scale(sub(c, b), (d4 - d3) / ((d4 - d3) + (d5 - d6))));
    }
    let denom = 1.0 / (va + vb + vc);
    add(a, add(scale(ab, vb * denom), scale(ac, vc * denom)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    /// An icosahedron subdivided `levels` times, projected onto the sphere of `radius`.
    fn icosphere(levels: usize, radius: f32) -> Mesh {
        let t = (1.0 + 5f32.sqrt()) / 2.0;
        let mut vertices: Vec<V3> = [
            [-1.0, t, 0.0],
            [1.0, t, 0.0],
            [-1.0, -t, 0.0],
            [1.0, -t, 0.0],
            [0.0, -1.0, t],
            [0.0, 1.0, t],
            [0.0, -1.0, -t],
            [0.0, 1.0, -t],
            [t, 0.0, -1.0],
            [t, 0.0, 1.0],
            [-t, 0.0, -1.0],
            [-t, 0.0, 1.0],
        ]
        .to_vec();
        let mut triangles: Vec<[u32; 3]> = vec![
            [0, 11, 5],
            [0, 5, 1],
            [0, 1, 7],
            [0, 7, 10],
            [0, 10, 11],
            [1, 5, 9],
            [5, 11, 4],
            [11, 10, 2],
            [10, 7, 6],
            [7, 1, 8],
            [3, 9, 4],
            [3, 4, 2],
            [3, 2, 6],
            [3, 6, 8],
            [3, 8, 9],
            [4, 9, 5],
            [2, 4, 11],
            [6, 2, 10],
            [8, 6, 7],
            [9, 8, 1],
        ];
        for _ in 0..levels {
            let mut midpoints = std::collections::HashMap::new();
            let mut mid = |a: u32, b: u32, vertices: &mut Vec<V3>| -> u32 {
                *midpoints.entry((a.min(b), a.max(b))).or_insert_with(|| {
                    vertices.push(scale(add(vertices[a as usize], vertices[b as usize]), 0.5));
                    vertices.len() as u32 - 1
                })
            };
            triangles = triangles
                .iter()
                .flat_map(|&[a, b, c]| {
                    let (ab, bc, ca) = (mid(a, b, &mut vertices), mid(b, c, &mut vertices), mid(c, a, &mut vertices));
                    [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
                })
                .collect();
        }
        let vertices = vertices.iter().map(|&v| scale(v, radius / norm(v))).collect();
        Mesh { vertices, triangles }
    }

    /// The box `[-h, h]` as 12 outward-facing triangles.
    fn cube(h: V3) -> Mesh {
        let vertices = (0..8).map(|i| [0, 1, 2].map(|a| if (i >> a) & 1 == 1 { h[a] } else { -h[a] })).collect();
        let triangles =
            vec![[0, 2, 3], [0, 3, 1], [4, 5, 7], [4, 7, 6], [0, 1, 5], [0, 5, 4], [2, 6, 7], [2, 7, 3], [0, 4, 6], [0, 6, 2], [1, 3, 7], [1, 7, 5]];
        Mesh { vertices, triangles }
    }

    fn box_sdf(q: V3, h: V3) -> f32 {
        let d = [0, 1, 2].map(|a| q[a].abs() - h[a]);
        let outside = norm(d.map(|v| v.max(0.0)));
        outside + d[0].max(d[1]).max(d[2]).min(0.0)
    }

    fn random_points(n: usize, extent: f32, seed: u64) -> Vec<V3> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| [0; 3].map(|_| (rng.random::<f32>() * 2.0 - 1.0) * extent)).collect()
    }

    #[test]
    fn box_sdf_is_exact() {
        let h = [0.5, 0.3, 0.7];
        let sdf = MeshSdf::new(&cube(h));
        for q in random_points(2000, 1.0, 1) {
            let (got, want) = (sdf.signed_distance(q), box_sdf(q, h));
            assert!((got - want).abs() < 1e-5, "{q:?}: {got} vs {want}");
        }
    }

    #[test]
    fn sphere_sdf_matches_the_analytic_one() {
        let mesh = icosphere(4, 0.6); // 5120 faces; flat facets sit at most ~1e-3 inside the sphere
        assert_eq!(mesh.open_edges(), 0);
        let sdf = MeshSdf::new(&mesh);
        let points = random_points(5000, 1.0, 2);
        let got = sdf.signed_distances(&points);
        for (q, g) in points.iter().zip(got) {
            let want = norm(*q) - 0.6;
            assert!((g - want).abs() < 2e-3, "{q:?}: {g} vs {want}");
        }
    }

    /// The BVH's closest-point search returns what a scan of every triangle does.
    #[test]
    fn bvh_distance_matches_brute_force() {
        let mesh = icosphere(3, 0.5);
        let sdf = MeshSdf::new(&mesh);
        for q in random_points(500, 1.2, 3) {
            let brute = sdf.triangles.iter().map(|&t| norm(sub(q, closest_on_triangle(q, t)))).fold(f32::INFINITY, f32::min);
            assert_eq!(sdf.distance(q), brute, "{q:?}");
        }
    }

    #[test]
    fn training_samples_follow_the_4_3_1_split() {
        let sdf = MeshSdf::new(&icosphere(3, 0.5));
        let mut rng = StdRng::seed_from_u64(5);
        let (points, distances) = sdf.training_samples(8000, 0.01, &mut rng);
        assert_eq!((points.len(), distances.len()), (8000, 8000));
        // Surface points lie on the facets, within the icosphere's flattening of the sphere.
        for p in &points[..4000] {
            assert!((norm(*p) - 0.5).abs() < 0.01 && sdf.distance(*p) < 1e-5, "{p:?}");
        }
        // Near-surface points spread about the noise scale; uniform ones fill the box.
        let near: Vec<f32> = distances[4000..7000].to_vec();
        let rms = (near.iter().map(|d| d * d).sum::<f32>() / near.len() as f32).sqrt();
        assert!((0.006..0.014).contains(&rms), "near-surface rms distance {rms}");
        let inside = distances[7000..].iter().filter(|&&d| d < 0.0).count() as f32 / 1000.0;
        let ball = 4.0 / 3.0 * std::f32::consts::PI * 0.125 / 8.0; // the ball's share of the box
        assert!((inside - ball).abs() < 0.04, "uniform points inside: {inside} vs {ball}");
    }

    /// The hierarchical winding number agrees with the exact sum, and a mesh with a hole still
    /// has an inside.
    #[test]
    fn winding_number_survives_a_hole() {
        let mut mesh = icosphere(3, 0.5);
        let exact = |sdf: &MeshSdf, q: V3| sdf.triangles.iter().map(|&t| solid_angle(q, t) as f64).sum::<f64>() / (4.0 * std::f64::consts::PI);
        let sdf = MeshSdf::new(&mesh);
        for q in random_points(300, 1.0, 4) {
            let w = sdf.winding_number(q);
            assert!((w as f64 - exact(&sdf, q)).abs() < 0.02, "{q:?}: {w}");
            // Clear of the facets (which sit up to ~1e-2 inside the sphere at this resolution).
            if (norm(q) - 0.5).abs() > 0.02 {
                assert_eq!(w > 0.5, norm(q) < 0.5, "{q:?}: {w}");
            }
        }
        // Cut a cap of 40 triangles out of the top: the mesh is open, the inside stays inside.
        mesh.triangles.retain(|t| t.iter().all(|&i| mesh.vertices[i as usize][1] < 0.45));
        assert!(mesh.open_edges() > 0);
        let sdf = MeshSdf::new(&mesh);
        assert!(sdf.signed_distance([0.0, -0.1, 0.0]) < 0.0);
        assert!(sdf.signed_distance([0.1, 0.2, -0.1]) < 0.0);
        assert!(sdf.signed_distance([0.0, 0.9, 0.0]) > 0.0);
        assert!(sdf.signed_distance([0.6, 0.0, 0.0]) > 0.0);
    }
}
