//! Time the ground-truth signed distance on a mesh: `cargo run --release --example sdf_queries
//! -- MESH [QUERIES]`. Prints seconds for distances and for signs (winding numbers) of uniform
//! points in the [-1, 1] box, near-surface points, and one training pool. Used by bench/sdf.sh.

use std::time::Instant;

use nfield::data::mesh::Mesh;
use nfield::data::sdf::MeshSdf;
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
    Ok(())
}
