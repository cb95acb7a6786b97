//! Time the ground-truth signed distance on a mesh: `cargo run --release --example sdf_queries
//! -- MESH [QUERIES] [RESOLUTION]`. Prints seconds for distances and for signs (winding numbers)
//! of uniform points in the [-1, 1] box, and for one training pool. With a RESOLUTION, also the
//! surface metrics of the exact SDF meshed by marching cubes on that grid: the best any field can
//! score at that evaluation resolution. Used by bench/sdf.sh.

use std::time::Instant;

use nfield::data::mesh::Mesh;
use nfield::data::sdf::MeshSdf;
use nfield::metrics::surface_metrics;
use nfield::render::marching_cubes::marching_cubes;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rayon::prelude::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or_else(|| anyhow::anyhow!("usage: sdf_queries MESH [QUERIES]"))?;
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let (mesh, _) = Mesh::load(path.as_ref())?.normalised(0.99);
    let clock = Instant::now();
    let sdf = MeshSdf::new(&mesh);
    let build = clock.elapsed().as_secs_f64();
    let mut rng = StdRng::seed_from_u64(0);
    let uniform: Vec<[f32; 3]> = (0..n).map(|_| [0; 3].map(|_| rng.random::<f32>() * 2.0 - 1.0)).collect();
    let time = |f: &dyn Fn() -> f32| {
        let clock = Instant::now();
        let checksum = f();
        (clock.elapsed().as_secs_f64(), checksum)
    };
    let (distance, _) = time(&|| uniform.par_iter().map(|&q| sdf.distance(q)).sum());
    let (sign, _) = time(&|| uniform.par_iter().map(|&q| sdf.winding_number(q)).sum());
    let (pool, _) = time(&|| sdf.training_samples(n, 0.01, &mut StdRng::seed_from_u64(1)).1.iter().sum());
    println!(
        "{path}: {} triangles, BVH {build:.2} s; {n} uniform points: distance {distance:.2} s, sign {sign:.2} s; a {n}-point training pool {pool:.2} s",
        mesh.triangles.len()
    );
    if let Some(r) = args.get(3).map(|s| s.parse::<usize>()).transpose()? {
        let c = |i: usize| -1.0 + 2.0 * i as f32 / (r - 1) as f32;
        let surface = marching_cubes(r, -1.0, 1.0, |z| {
            let points: Vec<[f32; 3]> = (0..r * r).map(|i| [c(i % r), c(i / r), c(z)]).collect();
            Ok(sdf.signed_distances(&points))
        })?;
        let m = surface_metrics(&surface, &mesh, 100_000, 0.01, None);
        println!(
            "{path}: the exact SDF meshed at {r}^3: Chamfer-L1 {:.4}, F-score {:.3}, mesh normal error {:.2} deg",
            m.chamfer_l1, m.fscore, m.mesh_normal_error_deg
        );
    }
    Ok(())
}
