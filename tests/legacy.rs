//! Run directories written by nfield before fields were split into an encoding and a decoder
//! (`tests/data/legacy-runs/`, one small run per field kind, written by the version at 5f9c1fb)
//! must still load: `eval` must give the scores they were saved with, `render` must repeat their
//! reconstruction bit for bit, and `--resume` must continue them. Their configs name the target
//! by a path relative to the run directory; the copies below point it at the repository.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const RUNS: &[&str] = &["ffn-cam", "siren", "neurbf", "gnf", "hashgrid-sdf"];

/// A copy of legacy run `name` in `dir`, its target path made absolute.
fn copy_run(name: &str, dir: &Path) -> PathBuf {
    let from = repo().join("tests/data/legacy-runs").join(name);
    let to = dir.join(name);
    std::fs::create_dir_all(to.join("checkpoint")).unwrap();
    for file in ["config.toml", "metrics.jsonl", "summary.json", "reconstruction.png", "checkpoint/checkpoint.safetensors"] {
        if from.join(file).exists() {
            std::fs::copy(from.join(file), to.join(file)).unwrap();
        }
    }
    let config = std::fs::read_to_string(to.join("config.toml")).unwrap();
    let assets = format!("\"{}/", repo().join("assets").display());
    std::fs::write(to.join("config.toml"), config.replace("\"../../../../assets/", &assets)).unwrap();
    to
}

#[test]
fn runs_written_before_the_split_evaluate_render_and_resume() {
    let t = tmp();
    for name in RUNS {
        let dir = copy_run(name, t.path());
        let saved = summary(&dir);
        let e = run(&["eval", dir.to_str().unwrap(), "--device", "cpu"]);
        assert!(e.status.success(), "{name}: {}", stderr(&e));
        let again = summary(&dir);
        // Scores of the field itself repeat exactly. Scores of its marching-cubes mesh move a
        // little since vertices keep off grid points (the mesh is clean for ordinary tools).
        for (key, tolerance) in [("psnr", 1e-5), ("ssim", 1e-5), ("iou", 1e-5), ("chamfer_l1", 1e-2), ("normal_error_deg", 1e-2)] {
            if let Some(v) = saved[key].as_f64() {
                let w = again[key].as_f64().unwrap_or(f64::NAN);
                assert!((v - w).abs() <= tolerance * v.abs().max(1.0), "{name}: {key} was {v}, now {w}");
            }
        }
        assert_eq!(again["params"], saved["params"], "{name}");
        assert_eq!(again["model"], saved["model"], "{name}");
        if dir.join("reconstruction.png").exists() {
            let r = run(&["render", dir.to_str().unwrap(), "--device", "cpu"]);
            assert!(r.status.success(), "{name}: {}", stderr(&r));
            let rendered = std::fs::read(dir.join("renders/image-32x24.png")).unwrap();
            assert_eq!(rendered, std::fs::read(dir.join("reconstruction.png")).unwrap(), "{name}: the render differs from the saved reconstruction");
        }
    }
    // The optimiser's state comes back under the new names too: a resumed run continues. GNF's
    // grids had a table each; their parameters and moments are stacked into one.
    for name in ["ffn-cam", "gnf"] {
        let dir = t.path().join(name);
        let r = run(&["train", "--resume", dir.to_str().unwrap(), "--steps", "40", "--device", "cpu", "--quiet"]);
        assert!(r.status.success(), "{name}: {}", stderr(&r));
        assert_eq!(summary(&dir)["steps"], 40, "{name}");
    }
}
