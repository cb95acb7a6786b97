//! Every loader (image, mesh, config, checkpoint) ends in a clear error on any input: never a
//! panic, an abort or a hang. Each is fed random bytes and real files truncated or mutated at
//! random (a fixed seed, so a failure repeats), each input under a time limit.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

const LIMIT: Duration = Duration::from_secs(20);

/// Run `load` on its own thread; fail the test if it panics or runs past `LIMIT`.
fn must_return(what: &str, load: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> anyhow::Result<()> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(load());
    });
    match receive.recv_timeout(LIMIT) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: the loader ran past {LIMIT:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the loader panicked"),
    }
}

/// Broken variants of `bytes`: truncations, a few random byte changes (half of them in the
/// first 64 bytes, where headers are), and for text a changed number or a removed line.
fn variants(bytes: &[u8], count: usize, rng: &mut StdRng) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..count {
        let mut b = bytes.to_vec();
        let what = match i % 4 {
            0 => {
                let cut = rng.random_range(0..b.len().max(1));
                b.truncate(cut);
                format!("truncated to {cut} bytes")
            }
            1 | 2 => {
                let changes = rng.random_range(1..16);
                for _ in 0..changes {
                    let span = if i % 4 == 1 { b.len().min(64) } else { b.len() };
                    let at = rng.random_range(0..span.max(1));
                    if let Some(v) = b.get_mut(at) {
                        *v = rng.random();
                    }
                }
                format!("{changes} random bytes changed")
            }
            _ => {
                // Text formats: a number replaced by a huge, negative or odd one.
                let text = String::from_utf8_lossy(&b).into_owned();
                let digits: Vec<usize> = text.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).collect();
                let replacement = ["4294967295", "-1", "1e39", "nan", "0", "99999999999999999999"][rng.random_range(0..6)];
                match digits.get(rng.random_range(0..digits.len().max(1))) {
                    Some(&at) => {
                        b = format!("{}{replacement}{}", &text[..at], &text[at + 1..]).into_bytes();
                        format!("a digit at {at} replaced by {replacement}")
                    }
                    None => "unchanged".into(),
                }
            }
        };
        out.push((what, b));
    }
    // Random bytes of random lengths.
    for _ in 0..count / 4 {
        let n = rng.random_range(0..2048);
        out.push((format!("{n} random bytes"), (0..n).map(|_| rng.random()).collect()));
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn image_loader_survives_broken_files() {
    let t = tmp();
    let mut rng = StdRng::seed_from_u64(1);
    for name in ["coffee-64x48-rgb8.png", "coffee-64x48-grey16.png", "coffee-64x48-rgba8.png", "coffee-64x48.jpg"] {
        let bytes = std::fs::read(asset(&format!("test/{name}"))).unwrap();
        let ext = Path::new(name).extension().unwrap().to_str().unwrap().to_string();
        for (i, (what, b)) in variants(&bytes, 48, &mut rng).into_iter().enumerate() {
            let path = write(t.path(), &format!("{i}.{ext}"), &b);
            let label = format!("{name}, {what}");
            let _ = must_return(&label, move || nfield::data::image::Image::load(&path).map(|_| ()));
        }
    }
}

#[test]
fn mesh_loaders_survive_broken_files() {
    let t = tmp();
    let mut rng = StdRng::seed_from_u64(2);
    let tetra = nfield::data::mesh::Mesh {
        vertices: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        triangles: vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
    };
    let sources: Vec<(&str, Vec<u8>)> = vec![
        ("obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n".to_vec()),
        ("off", b"OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n".to_vec()),
        ("ply", tetra.to_ply(None)),
        (
            "ply",
            b"ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\nelement face 4\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"
                .to_vec(),
        ),
    ];
    for (k, (ext, bytes)) in sources.iter().enumerate() {
        for (i, (what, b)) in variants(bytes, 80, &mut rng).into_iter().enumerate() {
            let path = write(t.path(), &format!("{k}-{i}.{ext}"), &b);
            let label = format!("{ext} #{k}, {what}");
            let _ = must_return(&label, move || nfield::data::mesh::Mesh::load(&path).map(|_| ()));
        }
    }
    // The real knot, truncated and mutated.
    let knot = std::fs::read(asset("knot.obj")).unwrap();
    for (i, (what, b)) in variants(&knot, 12, &mut rng).into_iter().enumerate() {
        let path = write(t.path(), &format!("knot-{i}.obj"), &b);
        let _ = must_return(&format!("knot.obj, {what}"), move || nfield::data::mesh::Mesh::load(&path).map(|_| ()));
    }
}

#[test]
fn config_parser_survives_broken_files() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut configs = vec![repo().join("configs/default.toml")];
    for folder in ["configs/image", "configs/sdf"] {
        configs.extend(std::fs::read_dir(repo().join(folder)).unwrap().map(|e| e.unwrap().path()));
    }
    for config in configs {
        let bytes = std::fs::read(&config).unwrap();
        for (what, b) in variants(&bytes, 24, &mut rng) {
            let label = format!("{}, {what}", config.display());
            let _ = must_return(&label, move || {
                let text = String::from_utf8_lossy(&b);
                let mut c = nfield::config::Config::parse(&text, "fuzzed.toml", Path::new("/nowhere"), &[])?;
                c.resolve();
                c.check_resolved()
            });
        }
    }
}

#[test]
fn checkpoint_loader_survives_broken_files() {
    use nfield::config::Config;
    use nfield::fields::Field;
    use nfield::optim::Adam;
    use nfield::run::RunDir;

    let t = tmp();
    let mut rng = StdRng::seed_from_u64(4);
    let legacy = repo().join("tests/data/legacy-runs/ffn-cam");
    let text = std::fs::read_to_string(legacy.join("config.toml")).unwrap();
    let text = text.replace("\"../../../../assets/", &format!("\"{}/", repo().join("assets").display()));
    let bytes = std::fs::read(legacy.join("checkpoint/checkpoint.safetensors")).unwrap();
    for (i, (what, b)) in variants(&bytes, 60, &mut rng).into_iter().enumerate() {
        let dir = t.path().join(format!("run-{i}"));
        std::fs::create_dir_all(dir.join("checkpoint")).unwrap();
        std::fs::write(dir.join("config.toml"), &text).unwrap();
        std::fs::write(dir.join("checkpoint/checkpoint.safetensors"), &b).unwrap();
        let _ = must_return(&format!("checkpoint, {what}"), move || {
            let run = RunDir::open(&dir)?;
            let mut config = Config::load(&run.config_path(), &[])?;
            config.resolve();
            let device = burn::tensor::Device::flex();
            let task = config.task.build(&config, &device)?;
            let field = Field::new(&config.model, &task.field_spec(), 0, &device)?;
            run.load_checkpoint(field, &mut Adam::new(&config.train), &device).map(|_| ())
        });
    }
}

#[test]
fn scene_loader_survives_broken_transforms() {
    let t = tmp();
    let mut rng = StdRng::seed_from_u64(5);
    // A three-frame copy of the embedded scene.
    let scene = repo().join("assets/scene");
    let text = std::fs::read_to_string(scene.join("transforms_train.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["frames"].as_array_mut().unwrap().truncate(3);
    let bytes = serde_json::to_vec_pretty(&json).unwrap();
    for (i, (what, b)) in variants(&bytes, 80, &mut rng).into_iter().enumerate() {
        let dir = t.path().join(format!("scene-{i}"));
        std::fs::create_dir_all(dir.join("train")).unwrap();
        for k in 0..3 {
            std::fs::copy(scene.join(format!("train/r_{k}.png")), dir.join(format!("train/r_{k}.png"))).unwrap();
        }
        std::fs::write(dir.join("transforms_train.json"), &b).unwrap();
        let _ = must_return(&format!("transforms_train.json, {what}"), move || nfield::data::scene::Scene::load(&dir, 1).map(|_| ()));
    }
}
