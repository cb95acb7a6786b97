//! Triangle meshes: OBJ (`tobj`), PLY (ASCII and binary, `ply-rs-bw`) and OFF, checked on load,
//! and normalised into the unit cube for SDF fitting.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use ply_rs_bw::parser::Parser;
use ply_rs_bw::ply::{DefaultElement, Property};

#[derive(Debug, Clone, PartialEq)]
pub struct Mesh {
    pub vertices: Vec<[f32; 3]>,
    pub triangles: Vec<[u32; 3]>,
}

/// A mesh's soundness as ordinary tools judge it (`Mesh::topology`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Topology {
    /// Edges with one face (holes).
    pub boundary_edges: usize,
    /// Edges with more than two faces.
    pub non_manifold_edges: usize,
    pub zero_area_faces: usize,
    /// Connected pieces.
    pub pieces: usize,
    /// The largest piece's share of the faces.
    pub largest_piece_share: f64,
}

/// The similarity that `Mesh::normalised` applied: `normalised = (original - centre) * scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub centre: [f32; 3],
    pub scale: f32,
}

impl Mesh {
    /// Load an `.obj`, `.ply` or `.off` file and check it: at least one triangle, finite
    /// vertices, indices inside the vertex list. Polygons are split into triangle fans.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.is_file() {
            bail!("mesh {} does not exist", path.display());
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let mesh = match ext.as_str() {
            "obj" => read_obj(path),
            "ply" => read_ply(path),
            "off" => read_off(path),
            _ => bail!("mesh {}: unknown extension \"{ext}\" (nfield reads .obj, .ply and .off)", path.display()),
        }
        .with_context(|| format!("cannot read mesh {}", path.display()))?;
        mesh.check().with_context(|| format!("mesh {}", path.display()))?;
        Ok(mesh)
    }

    fn check(&self) -> Result<()> {
        if self.vertices.is_empty() || self.triangles.is_empty() {
            bail!("it has {} vertices and {} faces; an SDF needs at least one triangle", self.vertices.len(), self.triangles.len());
        }
        if let Some(i) = self.vertices.iter().position(|v| v.iter().any(|c| !c.is_finite())) {
            bail!("vertex {i} is not finite ({:?})", self.vertices[i]);
        }
        let n = self.vertices.len() as u32;
        if let Some((f, t)) = self.triangles.iter().enumerate().find(|(_, t)| t.iter().any(|&i| i >= n)) {
            bail!("face {f} uses vertex {} but there are only {n} vertices", t.iter().max().copied().unwrap_or(0));
        }
        if self.area() == 0.0 {
            bail!("every one of its {} faces has zero area (their corners coincide or lie on a line); an SDF needs a surface", self.triangles.len());
        }
        Ok(())
    }

    /// Total surface area, in f64 so that tiny meshes do not round to zero.
    pub fn area(&self) -> f64 {
        let v = |i: u32| self.vertices[i as usize].map(f64::from);
        self.triangles
            .iter()
            .map(|t| {
                let (a, b, c) = (v(t[0]), v(t[1]), v(t[2]));
                let (e, f) = ([0, 1, 2].map(|k| b[k] - a[k]), [0, 1, 2].map(|k| c[k] - a[k]));
                let n = [e[1] * f[2] - e[2] * f[1], e[2] * f[0] - e[0] * f[2], e[0] * f[1] - e[1] * f[0]];
                0.5 * (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt()
            })
            .sum()
    }

    /// Centre the bounding box on the origin and scale so the farthest vertex sits at `radius`.
    pub fn normalised(&self, radius: f32) -> (Mesh, Normalisation) {
        let mut lo = [f32::INFINITY; 3];
        let mut hi = [f32::NEG_INFINITY; 3];
        for v in &self.vertices {
            for a in 0..3 {
                lo[a] = lo[a].min(v[a]);
                hi[a] = hi[a].max(v[a]);
            }
        }
        let centre = [0, 1, 2].map(|a| 0.5 * (lo[a] + hi[a]));
        let farthest = self.vertices.iter().map(|v| (0..3).map(|a| (v[a] - centre[a]).powi(2)).sum::<f32>().sqrt()).fold(0.0f32, f32::max);
        let scale = if farthest > 0.0 { radius / farthest } else { 1.0 };
        let vertices = self.vertices.iter().map(|v| [0, 1, 2].map(|a| (v[a] - centre[a]) * scale)).collect();
        (Mesh { vertices, triangles: self.triangles.clone() }, Normalisation { centre, scale })
    }

    /// The mesh as a binary little-endian PLY (what MeshLab and Blender open), with per-vertex
    /// normals when given.
    pub fn to_ply(&self, normals: Option<&[[f32; 3]]>) -> Vec<u8> {
        let mut header = format!(
            "ply\nformat binary_little_endian 1.0\ncomment written by nfield\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\n",
            self.vertices.len()
        );
        if normals.is_some() {
            header += "property float nx\nproperty float ny\nproperty float nz\n";
        }
        header += &format!("element face {}\nproperty list uchar int vertex_indices\nend_header\n", self.triangles.len());
        let per_vertex = if normals.is_some() { 24 } else { 12 };
        let mut out = Vec::with_capacity(header.len() + self.vertices.len() * per_vertex + self.triangles.len() * 13);
        out.extend_from_slice(header.as_bytes());
        for (i, v) in self.vertices.iter().enumerate() {
            v.iter().for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
            if let Some(n) = normals {
                n[i].iter().for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
            }
        }
        for t in &self.triangles {
            out.push(3);
            t.iter().for_each(|&i| out.extend_from_slice(&(i as i32).to_le_bytes()));
        }
        out
    }

    /// The mesh as a binary PLY with 8-bit vertex colours (MeshLab, Blender and instant-ngp's
    /// exports use the same `red green blue` properties).
    pub fn to_ply_with_colours(&self, colours: &[[u8; 3]]) -> Vec<u8> {
        let header = format!(
            "ply\nformat binary_little_endian 1.0\ncomment written by nfield\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nelement face {}\nproperty list uchar int vertex_indices\nend_header\n",
            self.vertices.len(),
            self.triangles.len()
        );
        let mut out = Vec::with_capacity(header.len() + self.vertices.len() * 15 + self.triangles.len() * 13);
        out.extend_from_slice(header.as_bytes());
        for (v, c) in self.vertices.iter().zip(colours) {
            v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
            out.extend_from_slice(c);
        }
        for t in &self.triangles {
            out.push(3);
            t.iter().for_each(|&i| out.extend_from_slice(&(i as i32).to_le_bytes()));
        }
        out
    }

    /// `n` points uniformly distributed over the surface by area, each with its triangle's unit
    /// normal, from a seeded generator (the same seed gives the same points).
    pub fn surface_samples(&self, n: usize, seed: u64) -> (Vec<[f32; 3]>, Vec<[f32; 3]>) {
        use rand::{RngExt, SeedableRng};
        let corners = |t: &[u32; 3]| t.map(|i| self.vertices[i as usize]);
        let edge = |a: [f32; 3], b: [f32; 3]| [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let cross = |a: [f32; 3], b: [f32; 3]| [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
        let face_normals: Vec<[f32; 3]> = self
            .triangles
            .iter()
            .map(|t| {
                let [a, b, c] = corners(t);
                cross(edge(a, b), edge(a, c))
            })
            .collect();
        let mut total = 0.0f64;
        let cumulative: Vec<f64> = face_normals
            .iter()
            .map(|n| {
                total += 0.5 * (n[0] as f64).hypot(n[1] as f64).hypot(n[2] as f64);
                total
            })
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut points, mut normals) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let pick = rng.random::<f64>() * total;
            let t = cumulative.partition_point(|&a| a < pick).min(self.triangles.len() - 1);
            let [a, b, c] = corners(&self.triangles[t]);
            let (mut u, mut v): (f32, f32) = (rng.random(), rng.random());
            if u + v > 1.0 {
                (u, v) = (1.0 - u, 1.0 - v);
            }
            points.push([0, 1, 2].map(|k| a[k] + u * (b[k] - a[k]) + v * (c[k] - a[k])));
            let fn_ = face_normals[t];
            let len = (fn_[0] * fn_[0] + fn_[1] * fn_[1] + fn_[2] * fn_[2]).sqrt().max(1e-30);
            normals.push(fn_.map(|c| c / len));
        }
        (points, normals)
    }

    /// What ordinary mesh tools see once vertices at the same position are merged: edges not
    /// shared by exactly two faces, faces of zero area, and connected pieces.
    pub fn topology(&self) -> Topology {
        let mut id_of = HashMap::new();
        let merged: Vec<u32> = self
            .vertices
            .iter()
            .map(|v| {
                let next = id_of.len() as u32;
                *id_of.entry(v.map(f32::to_bits)).or_insert(next)
            })
            .collect();
        let triangles: Vec<[u32; 3]> = self.triangles.iter().map(|t| t.map(|i| merged[i as usize])).collect();
        let mut edges: HashMap<(u32, u32), u32> = HashMap::new();
        for t in &triangles {
            for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                *edges.entry((a.min(b), a.max(b))).or_default() += 1;
            }
        }
        let zero_area = self
            .triangles
            .iter()
            .zip(&triangles)
            .filter(|(t, m)| {
                let [a, b, c] = t.map(|i| self.vertices[i as usize].map(f64::from));
                let (e, f) = ([0, 1, 2].map(|k| b[k] - a[k]), [0, 1, 2].map(|k| c[k] - a[k]));
                let n = [e[1] * f[2] - e[2] * f[1], e[2] * f[0] - e[0] * f[2], e[0] * f[1] - e[1] * f[0]];
                m[0] == m[1] || m[1] == m[2] || m[0] == m[2] || n.iter().all(|&v| v == 0.0)
            })
            .count();
        let mut parent: Vec<u32> = (0..id_of.len() as u32).collect();
        fn root(parent: &mut [u32], mut i: u32) -> u32 {
            while parent[i as usize] != i {
                parent[i as usize] = parent[parent[i as usize] as usize];
                i = parent[i as usize];
            }
            i
        }
        for t in &triangles {
            let a = root(&mut parent, t[0]);
            for &v in &t[1..] {
                let b = root(&mut parent, v);
                parent[b as usize] = a;
            }
        }
        let mut faces_of: HashMap<u32, usize> = HashMap::new();
        for t in &triangles {
            *faces_of.entry(root(&mut parent, t[0])).or_default() += 1;
        }
        Topology {
            boundary_edges: edges.values().filter(|&&c| c == 1).count(),
            non_manifold_edges: edges.values().filter(|&&c| c > 2).count(),
            zero_area_faces: zero_area,
            pieces: faces_of.len(),
            largest_piece_share: faces_of.values().copied().max().unwrap_or(0) as f64 / triangles.len().max(1) as f64,
        }
    }

    /// Edges not shared by exactly two faces (0 for a closed, manifold surface).
    pub fn open_edges(&self) -> usize {
        let mut count: HashMap<(u32, u32), u32> = HashMap::new();
        for t in &self.triangles {
            for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                *count.entry((a.min(b), a.max(b))).or_default() += 1;
            }
        }
        count.values().filter(|&&c| c != 2).count()
    }
}

/// Split a polygon into a triangle fan; faces with fewer than 3 corners are dropped.
fn fan(polygon: &[u32], triangles: &mut Vec<[u32; 3]>) {
    for i in 1..polygon.len().saturating_sub(1) {
        triangles.push([polygon[0], polygon[i], polygon[i + 1]]);
    }
}

fn read_obj(path: &Path) -> Result<Mesh> {
    let options = tobj::LoadOptions { single_index: false, triangulate: false, ignore_points: true, ignore_lines: true };
    let (models, _) = tobj::load_obj(path, &options)?;
    let mut mesh = Mesh { vertices: Vec::new(), triangles: Vec::new() };
    for model in models {
        let m = model.mesh;
        let base = mesh.vertices.len() as u32;
        mesh.vertices.extend(m.positions.chunks_exact(3).map(|p| [p[0], p[1], p[2]]));
        let indices: Vec<u32> = m.indices.iter().map(|&i| i + base).collect();
        if m.face_arities.is_empty() {
            indices.chunks_exact(3).for_each(|t| fan(t, &mut mesh.triangles));
        } else {
            let mut start = 0;
            for &arity in &m.face_arities {
                let end = start + arity as usize;
                fan(indices.get(start..end).context("face list shorter than its arities")?, &mut mesh.triangles);
                start = end;
            }
        }
    }
    Ok(mesh)
}

fn read_ply(path: &Path) -> Result<Mesh> {
    let bytes = std::fs::read(path)?;
    let end = find(&bytes, b"end_header").context("no end_header line: not a PLY file, or truncated")?;
    let header_end = bytes[end..].iter().position(|&b| b == b'\n').map(|p| end + p + 1).unwrap_or(bytes.len());
    let header: String = String::from_utf8_lossy(&bytes[..header_end]).lines().map(standard_header_line).collect::<Vec<_>>().join("\n") + "\n";
    let mut source = Cursor::new(header.into_bytes()).chain(&bytes[header_end..]);
    let ply = Parser::<DefaultElement>::new().read_ply(&mut source).map_err(|e| anyhow::anyhow!("{e}"))?;
    let vertices = ply.payload.get("vertex").context("no vertex element")?;
    let number = |e: &DefaultElement, key: &str| -> Result<f32> {
        match e.get(key) {
            Some(Property::Float(v)) => Ok(*v),
            Some(Property::Double(v)) => Ok(*v as f32),
            Some(Property::Int(v)) => Ok(*v as f32),
            Some(Property::UInt(v)) => Ok(*v as f32),
            Some(Property::Short(v)) => Ok(*v as f32),
            Some(Property::UShort(v)) => Ok(*v as f32),
            Some(Property::Char(v)) => Ok(*v as f32),
            Some(Property::UChar(v)) => Ok(*v as f32),
            _ => bail!("a vertex has no numeric property {key}"),
        }
    };
    let vertices = vertices.iter().map(|e| Ok([number(e, "x")?, number(e, "y")?, number(e, "z")?])).collect::<Result<Vec<_>>>()?;
    let mut triangles = Vec::new();
    for face in ply.payload.get("face").map(|f| f.as_slice()).unwrap_or_default() {
        let list = face.get("vertex_indices").or_else(|| face.get("vertex_index")).context("a face has no vertex_indices list")?;
        let polygon: Vec<u32> = match list {
            Property::ListInt(v) => v.iter().map(|&i| if i < 0 { u32::MAX } else { i as u32 }).collect(),
            Property::ListUInt(v) => v.clone(),
            Property::ListShort(v) => v.iter().map(|&i| if i < 0 { u32::MAX } else { i as u32 }).collect(),
            Property::ListUShort(v) => v.iter().map(|&i| i as u32).collect(),
            Property::ListChar(v) => v.iter().map(|&i| if i < 0 { u32::MAX } else { i as u32 }).collect(),
            Property::ListUChar(v) => v.iter().map(|&i| i as u32).collect(),
            _ => bail!("a face's vertex list is not a list of integers"),
        };
        fan(&polygon, &mut triangles);
    }
    Ok(Mesh { vertices, triangles })
}

/// The original Stanford scans write some properties as `property ambient_red uchar { ambient
/// color }`: name before type, and a note in braces, which the PLY grammar does not allow. Such
/// lines become `property uchar ambient_red`; other lines stay as they are.
fn standard_header_line(line: &str) -> String {
    const TYPES: &[&str] = &[
        "char", "uchar", "short", "ushort", "int", "uint", "float", "double", "int8", "uint8", "int16", "uint16", "int32", "uint32", "float32",
        "float64",
    ];
    let line = line.split('{').next().unwrap_or("").trim_end();
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        ["property", name, ty] if TYPES.contains(&ty) && !TYPES.contains(&name) => format!("property {ty} {name}"),
        _ => line.to_string(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// ASCII OFF: `OFF`, then `vertices faces edges`, the vertices, then `n i0 i1 ...` per face.
fn read_off(path: &Path) -> Result<Mesh> {
    let file = std::fs::File::open(path)?;
    let mut numbers = Vec::new();
    let mut first = true;
    for line in BufReader::new(file).lines() {
        let line = line?;
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let rest = if first {
            first = false;
            line.strip_prefix("OFF").context("the first line is not OFF")?
        } else {
            line
        };
        for token in rest.split_whitespace() {
            numbers.push(token.parse::<f64>().with_context(|| format!("\"{token}\" is not a number"))?);
        }
    }
    let mut next = numbers.into_iter();
    let (nv, nf) = (whole(&mut next, "vertex count")?, whole(&mut next, "face count")?);
    whole(&mut next, "edge count")?;
    let mut vertices = Vec::with_capacity(nv.min(1 << 24));
    for _ in 0..nv {
        let mut v = [0.0f32; 3];
        for c in &mut v {
            *c = next.next().context("the file ends inside its vertices")? as f32;
        }
        vertices.push(v);
    }
    let mut triangles = Vec::with_capacity(nf.min(1 << 24));
    for _ in 0..nf {
        let n = whole(&mut next, "faces")?;
        // Negative indices become u32::MAX, which the range check reports.
        let polygon = (0..n).map(|_| whole(&mut next, "faces").map(|i| u32::try_from(i).unwrap_or(u32::MAX))).collect::<Result<Vec<_>>>()?;
        fan(&polygon, &mut triangles);
    }
    Ok(Mesh { vertices, triangles })
}

/// The next number, which must be a whole number (counts and indices; negative ones as huge).
fn whole(next: &mut impl Iterator<Item = f64>, what: &str) -> Result<usize> {
    let v = next.next().with_context(|| format!("the file ends inside its {what}"))?;
    if v.fract() != 0.0 {
        bail!("{what}: {v} is not a whole number");
    }
    Ok(if v < 0.0 { usize::MAX } else { v as usize })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const TETRA_OBJ: &str = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n";

    #[test]
    fn the_three_formats_agree_on_a_tetrahedron() {
        let dir = tempfile::tempdir().unwrap();
        let obj = Mesh::load(&write(dir.path(), "t.obj", TETRA_OBJ.as_bytes())).unwrap();
        let off = Mesh::load(&write(dir.path(), "t.off", b"OFF\n4 4 6\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n")).unwrap();
        let ply_text = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\nelement face 4\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n";
        let ply = Mesh::load(&write(dir.path(), "t.ply", ply_text.as_bytes())).unwrap();
        // tobj numbers vertices in the order faces use them, so compare triangles by position.
        let corners = |m: &Mesh| {
            let mut t: Vec<[[i32; 3]; 3]> = m.triangles.iter().map(|t| t.map(|i| m.vertices[i as usize].map(|c| c as i32))).collect();
            t.sort();
            t
        };
        assert_eq!(off, ply);
        assert_eq!(corners(&obj), corners(&off));
        assert_eq!(obj.open_edges(), 0);
        // Binary little-endian PLY with a double x and a quad split into two triangles.
        let mut bin = b"ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty double x\nproperty float y\nproperty float z\nelement face 1\nproperty list uchar uint vertex_indices\nend_header\n".to_vec();
        for v in [[0.0f32, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]] {
            bin.extend((v[0] as f64).to_le_bytes());
            bin.extend(v[1].to_le_bytes());
            bin.extend(v[2].to_le_bytes());
        }
        bin.push(4);
        for i in [0u32, 1, 2, 3] {
            bin.extend(i.to_le_bytes());
        }
        let quad = Mesh::load(&write(dir.path(), "q.ply", &bin)).unwrap();
        assert_eq!(quad.triangles, vec![[0, 1, 2], [0, 2, 3]]);
        assert_eq!(quad.vertices[2], [1.0, 1.0, 0.0]);
        assert_eq!(quad.open_edges(), 4);
    }

    #[test]
    fn normalisation_centres_and_scales() {
        let mesh = Mesh { vertices: vec![[10.0, 20.0, 30.0], [14.0, 20.0, 30.0], [10.0, 22.0, 31.0]], triangles: vec![[0, 1, 2]] };
        let (n, t) = mesh.normalised(0.99);
        assert_eq!(t.centre, [12.0, 21.0, 30.5]);
        let radius = n.vertices.iter().map(|v| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()).fold(0.0f32, f32::max);
        assert!((radius - 0.99).abs() < 1e-6, "{radius}");
    }

    #[test]
    fn broken_meshes_are_one_clear_error_each() {
        let dir = tempfile::tempdir().unwrap();
        let err = |name: &str, text: &[u8]| format!("{:#}", Mesh::load(&write(dir.path(), name, text)).unwrap_err());
        let e = err("empty.obj", b"# nothing\n");
        assert!(e.contains("empty.obj") && e.contains("0 vertices"), "{e}");
        let e = err("nan.obj", b"v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n");
        assert!(e.contains("vertex 1 is not finite"), "{e}");
        let e = err("past.off", b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n");
        assert!(e.contains("face 0 uses vertex 7") && e.contains("only 3 vertices"), "{e}");
        let e = err("short.off", b"OFF\n3 1 0\n0 0 0\n1 0 0\n");
        assert!(e.contains("short.off") && e.contains("ends inside"), "{e}");
        let full = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n";
        let e = err("cut.ply", &full.as_bytes()[..full.len() - 14]);
        assert!(e.contains("cut.ply"), "{e}");
        let e = err("cut-header.ply", &full.as_bytes()[..40]);
        assert!(e.contains("end_header"), "{e}");
        let e = err("mesh.stl", b"solid x\n");
        assert!(e.contains("unknown extension") && e.contains(".obj"), "{e}");
        let e = format!("{:#}", Mesh::load(&dir.path().join("missing.obj")).unwrap_err());
        assert!(e.contains("does not exist"), "{e}");
    }
}
