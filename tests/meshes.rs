//! The mesh loader on the real meshes of `../shared/data` (skipped when it is absent).

mod common;

use nfield::data::mesh::Mesh;

/// Every mesh SOURCES.md lists loads with its vertex and face counts; the closed ones have no
/// open edge, the two with holes do (the original Stanford PLY's extra material block and
/// `{ ... }` header notes included).
#[test]
fn shared_meshes_load_with_their_counts() {
    let cases = [
        ("instant-ngp/sdf/armadillo.obj", 49_990, 99_976, true),
        ("instant-ngp/sdf/bunny.obj", 2_503, 4_968, false),
        ("meshes/bunny_3k_watertight_libigl.off", 3_485, 6_966, true),
        ("meshes/bunny_35k_watertight_quartet.obj", 34_834, 69_664, true),
        ("meshes/dragon_50k_watertight_quartet.obj", 50_000, 100_000, true),
        ("meshes/lucy_10k_watertight.obj", 10_002, 20_000, true),
        ("meshes/lucy_50k_watertight.obj", 49_987, 99_970, true),
        ("meshes/stanford-bunny-original/bun_zipper.ply", 35_947, 69_451, false),
        ("meshes/stanford-bunny-original/bun_zipper_res4.ply", 453, 948, false),
    ];
    for (rel, vertices, faces, closed) in cases {
        let Some(path) = common::shared_data(rel) else { return };
        let mesh = Mesh::load(&path).unwrap_or_else(|e| panic!("{rel}: {e:#}"));
        assert_eq!((mesh.vertices.len(), mesh.triangles.len()), (vertices, faces), "{rel}");
        assert_eq!(mesh.open_edges() == 0, closed, "{rel}: {} open edges", mesh.open_edges());
        // Scales differ by four orders of magnitude; normalised, every mesh fits radius 0.99.
        let (unit, _) = mesh.normalised(0.99);
        let r = unit.vertices.iter().map(|v| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()).fold(0.0f32, f32::max);
        assert!((r - 0.99).abs() < 1e-4, "{rel}: radius {r}");
    }
}
