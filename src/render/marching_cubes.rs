//! Marching cubes: the zero level set of values on a regular grid as a triangle mesh.
//!
//! The grid is read one z-slice at a time and only two slices are held, so memory stays bounded
//! at 1024^3. Instead of the classic 256-case table, each cube's polygons are traced from its
//! faces: on every face the sign changes are joined into segments (a face with four crossings
//! is resolved by the asymptotic decider, which both cubes sharing the face agree on), the
//! segments chain into closed loops, and each loop is filled by a fan. Neighbouring cubes share
//! edge vertices, so the mesh is watertight wherever the surface does not leave the grid.

use anyhow::Result;

use crate::data::mesh::Mesh;

/// No vertex on this edge yet.
const NONE: u32 = u32::MAX;
/// How close (as a share of the edge) a vertex may come to a grid point.
const CORNER_GAP: f32 = 1e-3;

/// The mesh without its floating pieces: connected pieces (faces joined by shared vertices) with
/// fewer faces than `min_share` of the largest piece's are dropped, and unused vertices with them.
pub fn drop_small_pieces(mesh: &Mesh, min_share: f64) -> Mesh {
    if min_share <= 0.0 || mesh.triangles.is_empty() {
        return mesh.clone();
    }
    // Union-find over vertices; a face joins its three.
    let mut parent: Vec<u32> = (0..mesh.vertices.len() as u32).collect();
    fn root(parent: &mut [u32], mut i: u32) -> u32 {
        while parent[i as usize] != i {
            parent[i as usize] = parent[parent[i as usize] as usize];
            i = parent[i as usize];
        }
        i
    }
    for t in &mesh.triangles {
        let a = root(&mut parent, t[0]);
        for &v in &t[1..] {
            let b = root(&mut parent, v);
            parent[b as usize] = a;
        }
    }
    let mut faces_of = std::collections::HashMap::<u32, usize>::new();
    let piece: Vec<u32> = mesh.triangles.iter().map(|t| root(&mut parent, t[0])).collect();
    piece.iter().for_each(|&p| *faces_of.entry(p).or_default() += 1);
    let largest = faces_of.values().copied().max().unwrap_or(0);
    let keep = |p: &u32| faces_of[p] as f64 >= min_share * largest as f64;
    let mut new_id = vec![NONE; mesh.vertices.len()];
    let mut out = Mesh { vertices: Vec::new(), triangles: Vec::new() };
    for (t, p) in mesh.triangles.iter().zip(&piece) {
        if !keep(p) {
            continue;
        }
        let ids = t.map(|v| {
            if new_id[v as usize] == NONE {
                new_id[v as usize] = out.vertices.len() as u32;
                out.vertices.push(mesh.vertices[v as usize]);
            }
            new_id[v as usize]
        });
        out.triangles.push(ids);
    }
    out
}

/// Corner `c` of a cube (bits: x, y, z) as an offset.
fn corner_offset(c: usize) -> [usize; 3] {
    [c & 1, (c >> 1) & 1, (c >> 2) & 1]
}

/// The six faces, each as its four corners in counter-clockwise order seen from outside.
fn faces() -> [[usize; 4]; 6] {
    let corner = |o: [usize; 3]| o[0] | (o[1] << 1) | (o[2] << 2);
    let mut faces = [[0; 4]; 6];
    for axis in 0..3 {
        let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
        for side in 0..2 {
            // (u, v) -> (u + 1, v) -> ... turns counter-clockwise about +axis.
            let mut loop_ = [(0, 0), (1, 0), (1, 1), (0, 1)].map(|(a, b)| {
                let mut o = [0; 3];
                o[axis] = side;
                o[u] = a;
                o[v] = b;
                corner(o)
            });
            if side == 0 {
                loop_.reverse();
            }
            faces[axis * 2 + side] = loop_;
        }
    }
    faces
}

/// The zero level set of a `resolution^3` grid of values over `[lo, hi]^3` (corners aligned).
/// `slice(z)` returns the values of slice `z`, x fastest (`[y * resolution + x]`). Values below
/// zero are inside; triangles face the outside (their winding gives outward normals).
pub fn marching_cubes(resolution: usize, lo: f32, hi: f32, mut slice: impl FnMut(usize) -> Result<Vec<f32>>) -> Result<Mesh> {
    let r = resolution;
    let mut mesh = Mesh { vertices: Vec::new(), triangles: Vec::new() };
    if r < 2 {
        return Ok(mesh);
    }
    let step = (hi - lo) / (r - 1) as f32;
    let faces = faces();
    // Vertex ids of the edges whose lower corner is on slice z (x, y and z edges) and z + 1.
    let mut below = vec![NONE; r * r * 3];
    let mut above = vec![NONE; r * r * 3];
    let mut bottom = slice(0)?;
    for z in 0..r - 1 {
        let top = slice(z + 1)?;
        let value = |x: usize, y: usize, dz: usize| if dz == 0 { bottom[y * r + x] } else { top[y * r + x] };
        for y in 0..r - 1 {
            for x in 0..r - 1 {
                let v: [f32; 8] = std::array::from_fn(|c| {
                    let o = corner_offset(c);
                    value(x + o[0], y + o[1], o[2])
                });
                let inside = v.map(|a| a < 0.0);
                if inside.iter().all(|&i| i) || inside.iter().all(|&i| !i) {
                    continue;
                }
                // The id of the vertex on the edge between corners a and b, made on first use.
                let mut vertex = |a: usize, b: usize| -> u32 {
                    let (a, b) = if a < b { (a, b) } else { (b, a) };
                    let (oa, ob) = (corner_offset(a), corner_offset(b));
                    let axis = (0..3).find(|&k| oa[k] != ob[k]).unwrap_or(0);
                    let slot = ((y + oa[1]) * r + x + oa[0]) * 3 + axis;
                    let ids = if oa[2] == 0 { &mut below } else { &mut above };
                    if ids[slot] == NONE {
                        // Kept off the corners: a level set through a grid point would put
                        // several vertices on one spot (non-manifold, zero-area faces).
                        let t = (v[a] / (v[a] - v[b])).clamp(CORNER_GAP, 1.0 - CORNER_GAP);
                        let p = [0, 1, 2].map(|k| {
                            let g = [x, y, z][k] as f32 + oa[k] as f32 + t * (ob[k] as f32 - oa[k] as f32);
                            lo + g * step
                        });
                        ids[slot] = mesh.vertices.len() as u32;
                        mesh.vertices.push(p);
                    }
                    ids[slot]
                };
                // Segments from a crossing where the walk leaves the inside to one where it enters.
                let mut next = [NONE; 12];
                // (from, to, face).
                let mut segments: Vec<(u32, u32, usize)> = Vec::with_capacity(6);
                for (face_index, face) in faces.iter().enumerate() {
                    let mut crossings = Vec::with_capacity(4); // (vertex, entering the inside?)
                    for k in 0..4 {
                        let (a, b) = (face[k], face[(k + 1) % 4]);
                        if inside[a] != inside[b] {
                            crossings.push((vertex(a, b), inside[b]));
                        }
                    }
                    if crossings.len() == 2 {
                        let (enter, exit) = if crossings[0].1 { (crossings[0].0, crossings[1].0) } else { (crossings[1].0, crossings[0].0) };
                        segments.push((exit, enter, face_index));
                    } else if crossings.len() == 4 {
                        // Asymptotic decider: is the face's saddle inside? Then the inside corners
                        // join across the face and the outside corners are cut off, else the reverse.
                        let f = face.map(|c| v[c]);
                        let denominator = f[0] + f[2] - f[1] - f[3];
                        let saddle = if denominator != 0.0 { (f[0] * f[2] - f[1] * f[3]) / denominator } else { 0.0 };
                        let join_inside = saddle < 0.0;
                        for i in 0..4 {
                            let (id, entering) = crossings[i];
                            if entering {
                                continue;
                            }
                            // An exit pairs with the entry after it (cutting off the outside run
                            // between them) or with the entry before it (cutting off the inside run).
                            let partner = if join_inside { crossings[(i + 1) % 4].0 } else { crossings[(i + 3) % 4].0 };
                            segments.push((id, partner, face_index));
                        }
                    }
                }
                // Chain the segments into loops and fill each with a fan. A loop that crosses an
                // ambiguous face twice (a tunnel) is fanned around its centroid instead: a fan's
                // diagonal between two vertices of that face could repeat the neighbour's.
                let local: Vec<u32> = segments.iter().map(|s| s.0).collect();
                let index_of = |id: u32| local.iter().position(|&l| l == id);
                for (i, s) in segments.iter().enumerate() {
                    next[i] = index_of(s.1).map_or(NONE, |j| j as u32);
                }
                let mut used = [false; 12];
                for start in 0..segments.len() {
                    if used[start] {
                        continue;
                    }
                    let (mut ring, mut ring_faces) = (Vec::with_capacity(12), Vec::with_capacity(12));
                    let mut i = start;
                    while !used[i] {
                        used[i] = true;
                        ring.push(segments[i].0);
                        ring_faces.push(segments[i].2);
                        if next[i] == NONE {
                            break;
                        }
                        i = next[i] as usize;
                    }
                    let twice = (0..ring_faces.len()).any(|a| ring_faces[a + 1..].contains(&ring_faces[a]));
                    if twice {
                        let n = ring.len() as f32;
                        let centre = [0, 1, 2].map(|k| ring.iter().map(|&v| mesh.vertices[v as usize][k]).sum::<f32>() / n);
                        let c = mesh.vertices.len() as u32;
                        mesh.vertices.push(centre);
                        for k in 0..ring.len() {
                            mesh.triangles.push([c, ring[(k + 1) % ring.len()], ring[k]]);
                        }
                    } else {
                        for k in 1..ring.len().saturating_sub(1) {
                            mesh.triangles.push([ring[0], ring[k + 1], ring[k]]);
                        }
                    }
                }
            }
        }
        // Slice z + 1 becomes the bottom: keep its x and y edges, forget the z edges below it.
        std::mem::swap(&mut below, &mut above);
        above.fill(NONE);
        for slot in below.iter_mut().skip(2).step_by(3) {
            *slot = NONE;
        }
        bottom = top;
    }
    Ok(mesh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sphere_grid(r: usize, radius: f32, centre: [f32; 3]) -> impl FnMut(usize) -> Result<Vec<f32>> {
        move |z| {
            let c = |i: usize| -1.0 + 2.0 * i as f32 / (r - 1) as f32;
            Ok((0..r * r)
                .map(|i| {
                    let p = [c(i % r) - centre[0], c(i / r) - centre[1], c(z) - centre[2]];
                    (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt() - radius
                })
                .collect())
        }
    }

    fn signed_volume(mesh: &Mesh) -> f32 {
        mesh.triangles
            .iter()
            .map(|t| {
                let [a, b, c] = t.map(|i| mesh.vertices[i as usize]);
                (a[0] * (b[1] * c[2] - b[2] * c[1]) + a[1] * (b[2] * c[0] - b[0] * c[2]) + a[2] * (b[0] * c[1] - b[1] * c[0])) / 6.0
            })
            .sum()
    }

    #[test]
    fn sphere_is_closed_outward_and_on_the_level_set() {
        let mesh = marching_cubes(40, -1.0, 1.0, sphere_grid(40, 0.7, [0.05, -0.1, 0.0])).unwrap();
        assert!(mesh.triangles.len() > 1000);
        assert_eq!(mesh.open_edges(), 0, "the mesh has holes");
        for v in &mesh.vertices {
            let d = ((v[0] - 0.05).powi(2) + (v[1] + 0.1).powi(2) + v[2].powi(2)).sqrt();
            assert!((d - 0.7).abs() < 0.01, "vertex {v:?} is {d} from the centre");
        }
        // Outward winding: a positive volume close to the ball's.
        let volume = signed_volume(&mesh);
        let exact = 4.0 / 3.0 * std::f32::consts::PI * 0.7f32.powi(3);
        assert!((volume - exact).abs() < 0.02 * exact, "volume {volume} vs {exact}");
    }

    #[test]
    fn saddles_stay_watertight() {
        // Two touching balls and a random field: ambiguous faces everywhere, never a hole.
        let r = 24;
        let mut seed = 12345u64;
        let noise: Vec<f32> = (0..r * r * r)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        let mesh = marching_cubes(r, -1.0, 1.0, |z| {
            // Outside the grid's border everything is positive, so the surface closes.
            Ok((0..r * r)
                .map(|i| {
                    let (x, y) = (i % r, i / r);
                    let border = [x, y, z].iter().any(|&c| c == 0 || c == r - 1);
                    if border { 1.0 } else { noise[(z * r + y) * r + x] }
                })
                .collect())
        })
        .unwrap();
        assert!(mesh.triangles.len() > 1000);
        assert_eq!(mesh.open_edges(), 0);
    }

    #[test]
    fn no_surface_gives_an_empty_mesh() {
        let mesh = marching_cubes(8, -1.0, 1.0, |_| Ok(vec![1.0; 64])).unwrap();
        assert!(mesh.vertices.is_empty() && mesh.triangles.is_empty());
    }
}
