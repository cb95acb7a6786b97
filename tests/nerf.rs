//! Radiance fields end to end on the CPU: the scene in `assets/scene` fitted through the CLI to a
//! PSNR threshold, its renders, its coloured mesh read back by an independent reader, every
//! config in `configs/nerf/` for a few steps, and broken scenes failing clearly.

mod common;

use std::path::Path;

use common::*;
use nfield::data::mesh::Mesh;

/// The default scene, shortened: train, score the test views, render a turntable and a depth
/// view, and mesh the density with vertex colours.
#[test]
fn the_embedded_scene_fits_renders_and_meshes() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let o = run(&[
        "train",
        "configs/nerf/default.toml",
        "--device",
        "cpu",
        "--out",
        out,
        "--name",
        "scene",
        "--steps",
        "300",
        "--quiet",
        "--set",
        "task.occupancy_resolution=64",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = run_dir(&o);
    let s = summary(&dir);
    assert_eq!(s["task"], "nerf");
    assert_eq!(s["model"], "hashgrid");
    let psnr = s["psnr"].as_f64().unwrap();
    assert!(psnr > 24.0, "test PSNR {psnr}");
    assert!(s["ssim"].as_f64().unwrap() > 0.85);
    // Every test view beside its ground truth.
    for i in 0..8 {
        for name in [format!("test/{i:03}.png"), format!("test/{i:03}-truth.png")] {
            let img = image::open(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((img.width(), img.height()), (80, 80));
        }
    }
    // metrics.jsonl logs the marcher's numbers beside the loss.
    let log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(log.contains("samples_per_ray") && log.contains("occupied"), "{log}");

    let d = dir.to_str().unwrap();
    let r = run(&["render", d, "--orbit", "4", "--size", "48x40", "--device", "cpu"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let frames = dir.join("renders/orbit-rgb-48x40");
    assert!(frames.join("orbit.gif").is_file() && frames.join("003.png").is_file());
    let frame = image::open(frames.join("000.png")).unwrap().to_rgb8();
    assert_eq!(frame.dimensions(), (48, 40));
    // Not a blank picture: the shapes cover part of it, the white background the rest.
    let covered = frame.pixels().filter(|p| p.0.iter().any(|&c| c < 200)).count();
    assert!(covered > 48 * 40 / 20 && covered < 48 * 40 * 9 / 10, "{covered} of {} pixels show the shapes", 48 * 40);
    let r = run(&["render", d, "--view", "1", "--mode", "depth", "--device", "cpu"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(dir.join("renders/view001-depth-80x80.png").is_file());
    assert_clean_error(&run(&["render", d, "--view", "99", "--device", "cpu"]), &["--view 99", "8 test views"]);
    assert_clean_error(&run(&["render", d, "--mode", "normal", "--device", "cpu"]), &["--mode normal"]);

    let m = run(&["mesh", d, "--resolution", "96", "--device", "cpu"]);
    assert!(m.status.success(), "{}", stderr(&m));
    let mesh_path = dir.join("mesh-96.ply");
    assert_clean_mesh(&mesh_path);
    let ply = std::fs::read(&mesh_path).unwrap();
    assert!(String::from_utf8_lossy(&ply[..400]).contains("property uchar red"), "vertex colours");

    viewer_pictures_show_the_training_view(&dir);
}

/// The viewer's pictures of a trained radiance field (composited on the device) from training
/// view 0: its colours are the photo's, its opacity the photo's alpha, and its depth is black
/// where nothing is and grey where the shapes are.
fn viewer_pictures_show_the_training_view(dir: &Path) {
    use nfield::config::Config;
    use nfield::fields::Field;
    use nfield::optim::Adam;
    use nfield::profile::read_floats;
    use nfield::run::RunDir;
    use nfield::tasks::ViewRequest;

    let device = burn::tensor::Device::flex();
    let run = RunDir::open(dir).unwrap();
    let mut config = Config::load(&run.config_path(), &[]).unwrap();
    config.resolve();
    let mut task = config.task.build(&config, &device).unwrap();
    let field = Field::new(&config.model, &task.field_spec(), 0, &device).unwrap();
    let (field, _, state) = run.load_checkpoint(field, &mut Adam::new(&config.train), &device).unwrap();
    task.restore(&state).unwrap();
    let camera = task.view_cameras()[0].clone();
    let (w, h) = (camera.width, camera.height);
    let picture = |mode: usize| {
        let request = ViewRequest { width: w, height: h, mode, centre: [0.5; 2], span: 1.0, camera: Some(camera.clone()) };
        let p = task.view(&field, &request, &device).unwrap();
        assert_eq!((p.width, p.height), (w, h));
        read_floats(p.rgb)
    };
    let photo = task.view_photo(0).unwrap().rgb;
    let mse = picture(0).iter().zip(&photo).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / photo.len() as f32;
    let psnr = -10.0 * mse.log10();
    assert!(psnr > 22.0, "the viewer's picture of training view 0 is {psnr:.1} dB from its photo");
    let alpha: Vec<f32> = image::open(repo().join("assets/scene/train/r_0.png")).unwrap().to_rgba8().pixels().map(|p| p[3] as f32 / 255.0).collect();
    let opacity = picture(2);
    let off = alpha.iter().enumerate().map(|(i, a)| (opacity[3 * i] - a).abs()).sum::<f32>() / alpha.len() as f32;
    assert!(off < 0.1, "opacity is {off:.3} from the photo's alpha on average");
    // A short run leaves a few floaters: most pixels, not all.
    let depth = picture(1);
    let share = |on: f32, right: &dyn Fn(f32) -> bool| {
        let pixels: Vec<usize> = (0..alpha.len()).filter(|&i| alpha[i] == on).collect();
        pixels.iter().filter(|&&i| right(depth[3 * i])).count() as f32 / pixels.len().max(1) as f32
    };
    let (empty, shapes) = (share(0.0, &|d| d < 0.05), share(1.0, &|d| d > 0.04));
    assert!(empty > 0.9 && shapes > 0.9, "depth: {empty:.2} of the empty pixels black, {shapes:.2} of the shapes' grey");
}

/// A mesh is clean as ordinary tools see it: our own reader, and trimesh when it is installed.
fn assert_clean_mesh(path: &Path) {
    let mesh = Mesh::load(path).unwrap();
    let topology = mesh.topology();
    assert_eq!((topology.non_manifold_edges, topology.zero_area_faces, topology.boundary_edges), (0, 0, 0), "{}: {topology:?}", path.display());
    let Some(report) = trimesh_report(path) else { return };
    for key in ["non_manifold_edges", "zero_area_faces", "boundary_edges"] {
        assert_eq!(report[key], 0, "{}: trimesh sees {report}", path.display());
    }
}

/// `tests/check_mesh.py`'s report, or `None` (with a note) where Python or trimesh is missing.
pub fn trimesh_report(path: &Path) -> Option<serde_json::Value> {
    let o = std::process::Command::new("python3").arg(repo().join("tests/check_mesh.py")).arg(path).output().ok()?;
    if !o.status.success() {
        eprintln!("skipping the trimesh check: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or(""));
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

/// Every config in configs/nerf/ parses and trains a few steps on the embedded scene.
#[test]
fn every_nerf_config_trains_a_few_steps() {
    let t = tmp();
    let out = t.path().to_str().unwrap();
    let mut configs: Vec<_> = std::fs::read_dir(repo().join("configs/nerf")).unwrap().map(|e| e.unwrap().path()).collect();
    configs.sort();
    assert!(configs.len() >= 5, "{configs:?}");
    for (i, config) in configs.iter().enumerate() {
        let name = format!("n{i}");
        let c = config.to_str().unwrap();
        let o = run(&[
            "train",
            c,
            "--device",
            "cpu",
            "--out",
            out,
            "--name",
            &name,
            "--steps",
            "3",
            "--quiet",
            "--set",
            "task.occupancy_resolution=32",
            "--set",
            "task.kernel_prerun=3",
            "--set",
            "eval.views=1",
        ]);
        assert!(o.status.success(), "{c}: {}", stderr(&o));
        assert_eq!(summary(&run_dir(&o))["steps"], 3, "{c}");
    }
}

/// Broken scenes: one sentence naming the file (and the frame), a non-zero exit, no run
/// directory left behind.
#[test]
fn broken_scenes_fail_clearly_and_leave_nothing() {
    let t = tmp();
    let out = t.path().join("runs");
    let scene = |name: &str, transforms: &str, images: &[(&str, u32)]| {
        let dir = t.path().join(name);
        std::fs::create_dir_all(dir.join("train")).unwrap();
        std::fs::write(dir.join("transforms_train.json"), transforms).unwrap();
        for (file, size) in images {
            image::RgbaImage::from_pixel(*size, *size, image::Rgba([200, 100, 50, 255])).save(dir.join(file)).unwrap();
        }
        dir
    };
    let pose = "[[1,0,0,0],[0,1,0,0],[0,0,1,4],[0,0,0,1]]";
    let frame = |i: usize| format!("{{\"file_path\": \"./train/r_{i}\", \"transform_matrix\": {pose}}}");
    let good = format!("{{\"camera_angle_x\": 0.7, \"frames\": [{}, {}]}}", frame(0), frame(1));
    let cases = [
        (scene("json", "{\"camera_angle_x\": 0.7, \"frames\": [", &[]), vec!["transforms_train.json"]),
        (
            scene("matrix", "{\"camera_angle_x\": 0.7, \"frames\": [{\"file_path\": \"./train/r_0\"}]}", &[("train/r_0.png", 8)]),
            vec!["transform_matrix", "frame 0"],
        ),
        (scene("nan", &good.replacen("[[1,0,0,0]", "[[NaN,0,0,0]", 1), &[("train/r_0.png", 8), ("train/r_1.png", 8)]), vec!["frame 0"]),
        (scene("none", "{\"camera_angle_x\": 0.7, \"frames\": []}", &[]), vec!["transforms_train.json", "frames"]),
        (scene("missing", &good, &[]), vec!["transforms_train.json"]),
        (scene("sizes", &good, &[("train/r_0.png", 8), ("train/r_1.png", 10)]), vec!["frame 1"]),
        (
            scene("focal", &good.replace("\"camera_angle_x\": 0.7, ", ""), &[("train/r_0.png", 8), ("train/r_1.png", 8)]),
            vec!["camera_angle_x", "fl_x"],
        ),
    ];
    for (dir, needles) in &cases {
        let set = format!("task.path={}", dir.display());
        let o =
            run(&["train", "configs/nerf/default.toml", "--device", "cpu", "--out", out.to_str().unwrap(), "--steps", "2", "--quiet", "--set", &set]);
        assert_clean_error(&o, needles);
        assert_eq!(stderr(&o).lines().filter(|l| l.starts_with("error")).count(), 1, "one sentence: {}", stderr(&o));
    }
    assert!(!out.exists(), "a failed start left a run directory");
}
