//! The viewer window (eframe / egui over wgpu): watch a field learn, or fly around what it
//! learned.
//!
//! Three threads share little: training runs the one training loop (`train.rs`) with an
//! observer that publishes snapshots of the field and the task's state at most a few times a
//! second and honours pause and "checkpoint now"; a render thread turns the latest snapshot and
//! the latest camera into a picture through the task (`Task::view`, so the viewer knows no task
//! kind); the window shows the picture, the panels and the plots, and never waits for either.
//! While the camera moves, pictures are rendered at a quarter of the resolution and refined when
//! it stops. With a wgpu device the window and burn share it (one device, one queue), and the
//! window draws each picture straight from burn's buffer (`display.rs`); on the CPU a picture
//! reaches the window's texture through the host.

pub mod display;
pub mod orbit;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use eframe::egui;

use crate::data::camera::Camera;
use crate::device::SelectedDevice;
use crate::fields::Field;
use crate::profile::read_floats;
use crate::run::RunDir;
use crate::tasks::{MeshRequest, Picture, Task, TaskState, ViewPicture, ViewRequest, Viewing};
use crate::train::{Observed, TrainObserver, TrainOutcome};
use display::DevicePicture;
use orbit::{Orbit, Window};

/// How to open the window.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// Render `frames` pictures (turning an orbit camera once around), save the window to this
    /// PNG and close: the headless check, and the frame-rate benchmark.
    pub screenshot: Option<PathBuf>,
    pub frames: usize,
    /// The picture's size; the window adds the side panel.
    pub size: (usize, usize),
    /// Close when training finishes (benchmarks).
    pub exit_when_done: bool,
}

/// What the window leaves behind.
pub struct ViewerEnd {
    /// The outcome of the training that ran in the window, if any.
    pub training: Option<Result<TrainOutcome>>,
    /// A line about the pictures rendered (for `--screenshot` runs).
    pub report: Option<String>,
}

/// Training that runs while the window is open.
pub struct LiveTraining {
    /// Runs the training loop with the observer it is given; returns its outcome.
    pub train: Box<dyn FnOnce(Box<dyn TrainObserver>) -> Result<TrainOutcome> + Send>,
    /// Set when the window closes: the loop checkpoints and stops, as on Ctrl-C.
    pub interrupt: Arc<AtomicBool>,
    pub total_steps: u64,
}

/// What the window is showing.
pub struct ViewerInput {
    /// A task on the display device (for pictures; the training task stays with training).
    pub task: Box<dyn Task>,
    /// The field to show until training publishes one.
    pub field: Field,
    pub device: SelectedDevice,
    pub run: RunDir,
    pub title: String,
    pub live: Option<LiveTraining>,
}

/// How pictures reach the window, for the panel and the terminal.
pub fn display_path(shared_device: bool) -> &'static str {
    if shared_device {
        "one wgpu device for burn and the window, which draws each picture from burn's buffer (no copy through the host)"
    } else {
        "CPU fields; pictures copied from the host"
    }
}

/// No display to open a window on: one sentence that says how to run headless.
pub fn check_display() -> Result<()> {
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    if !set("DISPLAY") && !set("WAYLAND_DISPLAY") {
        bail!(
            "there is no display to open the viewer on (DISPLAY and WAYLAND_DISPLAY are unset); run it under a virtual one, \
             `xvfb-run -s '-screen 0 1280x800x24' nfield view ...` (apt-get install xvfb), or train without --viewer"
        );
    }
    Ok(())
}

/// Open the window and run until it closes.
pub fn run(input: ViewerInput, options: ViewerOptions) -> Result<ViewerEnd> {
    check_display()?;
    let shared_device = input.device.wgpu_setup.is_some();
    let window = [options.size.0 as f32 + PANEL_WIDTH, options.size.1 as f32];
    let mut native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size(window).with_resizable(options.screenshot.is_none()).with_title(&input.title),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    if let Some(setup) = input.device.wgpu_setup.clone() {
        // One wgpu device for burn and the window.
        native.wgpu_options.wgpu_setup = eframe::egui_wgpu::WgpuSetup::Existing(eframe::egui_wgpu::WgpuSetupExisting {
            instance: setup.instance,
            adapter: setup.adapter,
            device: setup.device,
            queue: setup.queue,
        });
    }
    let outcome: Arc<Mutex<Option<Result<TrainOutcome>>>> = Arc::new(Mutex::new(None));
    let interrupt = input.live.as_ref().map(|l| l.interrupt.clone());
    let trainer_done = Arc::new(AtomicBool::new(input.live.is_none()));
    let ends = Ends::default();
    // The training thread starts before the window and waits for its work: on the CPU backend
    // the window's threads (the software renderer's among them, and the render thread) then
    // run at a lower priority than training, which they would otherwise slow.
    let (start_training, training_work) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
    let trainer = input.live.is_some().then(|| {
        std::thread::spawn(move || {
            if let Ok(work) = training_work.recv() {
                work();
            }
        })
    });
    if trainer.is_some() && !shared_device {
        // rayon's global pool, which training computes on, starts here first if it has not yet,
        // so its threads keep the normal priority.
        rayon::join(|| (), || ());
        lower_this_threads_priority();
    }
    let result = {
        let (outcome, trainer_done, ends) = (outcome.clone(), trainer_done.clone(), ends.clone());
        let start_training = start_training.clone();
        eframe::run_native(
            "nfield",
            native,
            Box::new(move |cc| {
                // Pictures stay in burn's buffers when the window can draw them from there.
                let device_pictures = shared_device && cc.wgpu_render_state.as_ref().map(display::install).is_some();
                let app = App::new(cc.egui_ctx.clone(), input, options, shared_device, device_pictures, outcome, trainer_done, start_training, ends);
                Ok(Box::new(app))
            }),
        )
    };
    // A window that never opened sent no work: the waiting thread ends.
    drop(start_training);
    // The window is gone: training that still runs stops at a checkpoint, as on Ctrl-C.
    if let Some(flag) = &interrupt {
        flag.store(true, Ordering::SeqCst);
    }
    if let Some(handle) = trainer {
        let _ = handle.join();
    }
    if let Err(e) = result {
        bail!("the viewer window could not open: {e}");
    }
    if let Some(failure) = lock(&ends.failure).take() {
        bail!("{failure}");
    }
    let training = lock(&outcome).take();
    let report = lock(&ends.report).take();
    Ok(ViewerEnd { training, report })
}

/// A lock that a panicked holder does not poison for the others.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the window hands back when it closes.
#[derive(Clone, Default)]
struct Ends {
    failure: Arc<Mutex<Option<String>>>,
    report: Arc<Mutex<Option<String>>>,
}

/// A published state of training.
#[derive(Clone)]
struct Snapshot {
    field: Field,
    state: TaskState,
    step: u64,
}

/// What training tells the window.
#[derive(Default)]
struct Stats {
    step: u64,
    loss: Option<f64>,
    psnr: Option<f64>,
    steps_per_second: f64,
    /// (step, loss, train PSNR) at every logged step.
    history: Vec<(u64, f64, Option<f64>)>,
    finished: Option<serde_json::Value>,
    /// Why training stopped, when it failed.
    failed: Option<String>,
}

/// Between training, the render thread and the window.
struct Shared {
    snapshot: Mutex<Option<Snapshot>>,
    /// Bumped on every new snapshot.
    version: AtomicU64,
    stats: Mutex<Stats>,
    paused: AtomicBool,
    checkpoint_now: AtomicBool,
    interrupt: Option<Arc<AtomicBool>>,
}

/// The training loop's observer: publishes snapshots (at most every `interval`), pauses.
struct Publisher {
    shared: Arc<Shared>,
    ctx: egui::Context,
    interval: Duration,
    last: Option<Instant>,
    /// The step and time the steps/s count from (the first step seen, so resumed runs count right).
    rate: Option<(u64, Instant)>,
    /// How long the last step waited for "resume".
    paused: Duration,
}

impl TrainObserver for Publisher {
    fn after_step(&mut self, step: u64, field: &Field, task: &dyn Task, logged: Option<&serde_json::Value>) -> Observed {
        {
            let mut stats = lock(&self.shared.stats);
            stats.step = step;
            if let Some(record) = logged {
                let loss = record["loss"].as_f64().unwrap_or(f64::NAN);
                let psnr = record["train_psnr"].as_f64();
                stats.loss = Some(loss);
                stats.psnr = psnr;
                stats.history.push((step, loss, psnr));
            }
            let (from, since) = *self.rate.get_or_insert((step, Instant::now()));
            let elapsed = since.elapsed().as_secs_f64();
            if elapsed > 1.0 {
                stats.steps_per_second = step.saturating_sub(from) as f64 / elapsed;
                self.rate = Some((step, Instant::now()));
            }
        }
        if self.last.is_none_or(|t| t.elapsed() >= self.interval) {
            let snapshot = Snapshot { field: field.valid(), state: task.state(), step };
            *lock(&self.shared.snapshot) = Some(snapshot);
            self.shared.version.fetch_add(1, Ordering::SeqCst);
            self.last = Some(Instant::now());
            self.ctx.request_repaint();
        }
        let stopping = || self.shared.interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
        let pause = Instant::now();
        while self.shared.paused.load(Ordering::SeqCst) && !stopping() && !self.shared.checkpoint_now.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(30));
        }
        self.paused = pause.elapsed();
        if self.shared.checkpoint_now.swap(false, Ordering::SeqCst) { Observed::Checkpoint } else { Observed::Continue }
    }

    fn paused(&self) -> Duration {
        self.paused
    }

    fn finished(&mut self, field: &Field, task: &dyn Task, summary: &serde_json::Value) {
        let step = summary["steps"].as_u64().unwrap_or(0);
        *lock(&self.shared.snapshot) = Some(Snapshot { field: field.clone(), state: task.state(), step });
        self.shared.version.fetch_add(1, Ordering::SeqCst);
        lock(&self.shared.stats).finished = Some(summary.clone());
        self.ctx.request_repaint();
    }
}

/// Let the scheduler prefer other threads (training) over this one and the threads it starts.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system call; on Linux, PRIO_PROCESS with id 0 names the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// Work for the render thread.
enum Job {
    Picture {
        request: ViewRequest,
        id: u64,
    },
    /// A training view's photo.
    Photo(usize),
    Mesh,
}

/// A picture ready for the window.
enum Shown {
    /// In burn's wgpu memory, drawn from there.
    Device(DevicePicture),
    /// On the host, uploaded to a texture.
    Host(Picture),
}

impl Shown {
    /// Where `picture` can be shown from: burn's buffer when the window draws from there, else
    /// the host; with the reason when such a picture had to pass through the host.
    fn of(picture: ViewPicture, device_pictures: bool) -> (Self, Option<String>) {
        let ViewPicture { width, height, rgb } = picture;
        let mut why = None;
        if device_pictures {
            match display::device_picture(rgb.clone(), width, height) {
                Ok(picture) => return (Self::Device(picture), None),
                Err(e) => why = Some(format!("this picture passed through the host ({e})")),
            }
        }
        (Self::Host(Picture { width, height, rgb: read_floats(rgb) }), why)
    }
}

/// What the render thread hands back.
enum Done {
    Picture {
        picture: Shown,
        id: u64,
        seconds: f64,
    },
    Photo(usize, Picture),
    /// The asked picture could not be rendered.
    PictureFailed(String),
    /// Something to show in the panel that ends nothing (not even a `--screenshot` run).
    Note(String),
    Message(String),
}

/// Runs `work` (the render loop) on a rayon pool of its own, whose threads inherit the calling
/// thread's priority, rather than on the global pool that training computes on.
fn in_render_pool(work: impl FnOnce() + Send) {
    match rayon::ThreadPoolBuilder::new().thread_name(|i| format!("nfield-render-{i}")).build() {
        Ok(pool) => pool.install(work),
        Err(_) => work(),
    }
}

/// Turns the latest snapshot and camera into pictures, and exports meshes, off the UI thread.
#[allow(clippy::too_many_arguments)]
fn render_loop(
    mut task: Box<dyn Task>,
    mut field: Field,
    device: burn::tensor::Device,
    device_pictures: bool,
    run_dir: PathBuf,
    shared: Arc<Shared>,
    jobs: mpsc::Receiver<Job>,
    done: mpsc::Sender<Done>,
    ctx: egui::Context,
) {
    let mut version = 0;
    let mut noted_host_path = false;
    // The window asks for one picture at a time, so there is no backlog to skip.
    while let Ok(job) = jobs.recv() {
        let now = shared.version.load(Ordering::SeqCst);
        if now != version {
            let snapshot = lock(&shared.snapshot).clone();
            if let Some(s) = snapshot {
                if let Err(e) = task.restore(&s.state) {
                    let _ = done.send(Done::Message(format!("cannot show step {}: {e:#}", s.step)));
                }
                field = s.field;
            }
            version = now;
        }
        let sent = match job {
            Job::Picture { request, id } => {
                let start = Instant::now();
                // A panic while rendering is a failed picture, not a window waiting forever. With
                // fusion most of the work runs when the picture is resolved, so that is inside too.
                let picture = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    task.view(&field, &request, &device).map(|picture| Shown::of(picture, device_pictures))
                }))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("rendering this view failed on an internal error (a panic)")));
                match picture {
                    Ok((picture, why)) => {
                        if let Some(why) = why.filter(|_| !noted_host_path) {
                            noted_host_path = true;
                            let _ = done.send(Done::Note(why));
                        }
                        done.send(Done::Picture { picture, id, seconds: start.elapsed().as_secs_f64() })
                    }
                    Err(e) => done.send(Done::PictureFailed(format!("{e:#}"))),
                }
            }
            Job::Photo(index) => match task.view_photo(index) {
                Some(photo) => done.send(Done::Photo(index, photo)),
                None => Ok(()),
            },
            Job::Mesh => {
                let request = MeshRequest { resolution: None, out: None, run_dir: run_dir.clone() };
                let message = match task.mesh(&field, &request, &device) {
                    Ok((path, about)) => format!("wrote {} ({about})", path.display()),
                    Err(e) => format!("{e:#}"),
                };
                done.send(Done::Message(message))
            }
        };
        if sent.is_err() {
            break;
        }
        ctx.request_repaint();
    }
}

/// The camera state the user moves.
enum View {
    Plane(Window),
    Orbit(Orbit),
}

struct App {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Done>,
    options: ViewerOptions,
    view: View,
    modes: &'static [&'static str],
    mode: usize,
    /// Full-resolution pictures at this share of the view's pixels.
    quality: f32,
    /// The shown picture: a texture of host pixels, or burn's buffer.
    texture: Option<egui::TextureHandle>,
    device_picture: Option<DevicePicture>,
    /// Pictures that came as burn's buffers (and were drawn from there).
    drawn_on_device: usize,
    /// The request behind the shown picture, and what has been asked since.
    shown: Option<(ViewRequest, u64)>,
    asked: Option<(ViewRequest, u64)>,
    next_id: u64,
    rendered_version: u64,
    last_move: Instant,
    last_render: Instant,
    render_seconds: f64,
    pictures: usize,
    frame_times: Vec<Instant>,
    message: String,
    display_path: &'static str,
    cameras: Vec<Camera>,
    /// The photo of the training view jumped to.
    photo: Option<(usize, egui::TextureHandle)>,
    camera_index: usize,
    title: String,
    run_dir: PathBuf,
    screenshot_taken: Arc<Mutex<Option<Arc<egui::ColorImage>>>>,
    screenshot_asked: bool,
    trainer_done: Arc<AtomicBool>,
    live: bool,
    total_steps: u64,
    shots: usize,
    ends: Ends,
    /// `--screenshot`: when the first picture was asked for.
    started: Option<Instant>,
    /// When the last picture arrived (the frame rate counts up to it).
    last_picture: Option<Instant>,
    /// The orbit's first distance: the frusta keep their size when the camera dollies.
    frustum_size: f32,
}

impl App {
    #[allow(clippy::too_many_arguments)]
    fn new(
        ctx: egui::Context,
        input: ViewerInput,
        options: ViewerOptions,
        shared_device: bool,
        device_pictures: bool,
        outcome: Arc<Mutex<Option<Result<TrainOutcome>>>>,
        trainer_done: Arc<AtomicBool>,
        start_training: mpsc::Sender<Box<dyn FnOnce() + Send>>,
        ends: Ends,
    ) -> Self {
        let ViewerInput { task, field, device, run, title, live } = input;
        let shared = Arc::new(Shared {
            snapshot: Mutex::new(None),
            version: AtomicU64::new(0),
            stats: Mutex::new(Stats::default()),
            paused: AtomicBool::new(false),
            checkpoint_now: AtomicBool::new(false),
            interrupt: live.as_ref().map(|l| l.interrupt.clone()),
        });
        let viewing = task.viewing();
        let modes = task.view_modes();
        let cameras = task.view_cameras();
        let size = [options.size.0 as f32, options.size.1 as f32];
        let view = match viewing {
            Viewing::Plane { aspect, width } => View::Plane(Window::fit(aspect, width.max(1), size)),
            Viewing::Orbit { centre, distance, up, fov_y } => View::Orbit(Orbit::new(centre, distance, up, fov_y)),
        };
        let frustum_size = match &view {
            View::Orbit(o) => 0.1 * o.distance,
            View::Plane(_) => 0.0,
        };
        if live.is_none() {
            lock(&shared.stats).history = logged_history(&run.path);
        }
        let total_steps = live.as_ref().map_or(0, |l| l.total_steps);
        let is_live = live.is_some();
        if let Some(live) = live {
            let publisher = Publisher {
                shared: shared.clone(),
                ctx: ctx.clone(),
                // On the CPU every picture takes cores from training: one snapshot a second.
                interval: Duration::from_millis(if shared_device { 100 } else { 1000 }),
                last: None,
                rate: None,
                paused: Duration::ZERO,
            };
            let done_flag = trainer_done.clone();
            let ctx = ctx.clone();
            let stats = shared.clone();
            let work = Box::new(move || {
                // A panic in training ends it like an error: the window must not wait forever.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (live.train)(Box::new(publisher))))
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("training stopped on an internal error (a panic); the last checkpoint is kept")));
                if let Err(e) = &result {
                    lock(&stats.stats).failed = Some(format!("{e:#}"));
                }
                *lock(&outcome) = Some(result);
                done_flag.store(true, Ordering::SeqCst);
                ctx.request_repaint();
            });
            if start_training.send(work).is_err() {
                lock(&shared.stats).failed = Some("the training thread is gone".into());
            }
        }
        let (job_sender, job_receiver) = mpsc::channel();
        let (done_sender, done_receiver) = mpsc::channel();
        {
            let (shared, ctx, run_dir, device) = (shared.clone(), ctx.clone(), run.path.clone(), device.device.clone());
            std::thread::spawn(move || {
                in_render_pool(move || render_loop(task, field, device, device_pictures, run_dir, shared, job_receiver, done_sender, ctx))
            });
        }
        Self {
            shared,
            jobs: job_sender,
            done: done_receiver,
            options,
            view,
            modes,
            mode: 0,
            quality: 1.0,
            texture: None,
            device_picture: None,
            drawn_on_device: 0,
            shown: None,
            asked: None,
            next_id: 0,
            rendered_version: 0,
            last_move: Instant::now() - Duration::from_secs(1),
            last_render: Instant::now() - Duration::from_secs(1),
            render_seconds: 0.0,
            pictures: 0,
            frame_times: Vec::new(),
            message: String::new(),
            display_path: display_path(shared_device),
            cameras,
            photo: None,
            camera_index: 0,
            title,
            run_dir: run.path,
            screenshot_taken: Arc::new(Mutex::new(None)),
            screenshot_asked: false,
            trainer_done,
            live: is_live,
            total_steps,
            shots: 0,
            ends,
            started: None,
            last_picture: None,
            frustum_size,
        }
    }

    /// `--screenshot` runs: pictures back to back at full resolution, an orbit turning once.
    fn benchmarking(&self) -> bool {
        self.options.screenshot.is_some() && self.shots == 0
    }

    /// The picture to ask for at `size` view pixels (a quarter of them while the camera moves).
    fn request(&self, size: [f32; 2]) -> ViewRequest {
        let moving = self.last_move.elapsed() < Duration::from_millis(200) && !self.benchmarking();
        let share = if moving { self.quality.min(0.25) } else { self.quality };
        let width = ((size[0] * share.sqrt()) as usize).max(8);
        let height = ((size[1] * share.sqrt()) as usize).max(8);
        match &self.view {
            View::Plane(w) => ViewRequest { width, height, mode: self.mode, centre: w.centre, span: w.span, camera: None },
            View::Orbit(o) => ViewRequest { width, height, mode: self.mode, centre: [0.5; 2], span: 1.0, camera: Some(o.camera(width, height)) },
        }
    }

    fn receive(&mut self, ctx: &egui::Context) {
        loop {
            let done = match self.done.try_recv() {
                Ok(done) => done,
                Err(mpsc::TryRecvError::Empty) => break,
                // The render thread is gone: fail the picture asked for instead of waiting.
                Err(mpsc::TryRecvError::Disconnected) if self.asked.is_some() => Done::PictureFailed("the render thread stopped".into()),
                Err(mpsc::TryRecvError::Disconnected) => break,
            };
            match done {
                Done::Picture { picture, id, seconds } => {
                    // `--screenshot`: the orbit turns between pictures, and stops at the last.
                    if self.benchmarking()
                        && self.pictures + 1 < self.options.frames.max(1)
                        && let View::Orbit(o) = &mut self.view
                    {
                        o.azimuth += std::f32::consts::TAU / self.options.frames.max(1) as f32;
                    }
                    // The old picture's memory goes back to burn once no frame's paint
                    // callback holds it any more (`display.rs`).
                    match picture {
                        Shown::Device(picture) => {
                            self.device_picture = Some(picture);
                            self.drawn_on_device += 1;
                        }
                        Shown::Host(picture) => {
                            self.device_picture = None;
                            let image = colour_image(&picture);
                            match &mut self.texture {
                                Some(t) => t.set(image, egui::TextureOptions::NEAREST),
                                None => self.texture = Some(ctx.load_texture("view", image, egui::TextureOptions::NEAREST)),
                            }
                        }
                    }
                    if self.asked.as_ref().is_some_and(|(_, a)| *a == id) {
                        self.shown = self.asked.take();
                    }
                    self.render_seconds = seconds;
                    self.pictures += 1;
                    self.last_picture = Some(Instant::now());
                }
                Done::Photo(index, photo) => {
                    let texture = ctx.load_texture("photo", colour_image(&photo), egui::TextureOptions::LINEAR);
                    self.photo = Some((index, texture));
                }
                Done::PictureFailed(m) => {
                    // Not asked again until the view changes.
                    self.shown = self.asked.take();
                    if self.benchmarking() {
                        *lock(&self.ends.failure) = Some(m.clone());
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                    self.message = m;
                }
                Done::Note(m) => self.message = m,
                Done::Message(m) => {
                    if self.benchmarking() {
                        *lock(&self.ends.failure) = Some(m.clone());
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                    self.message = m;
                }
            }
        }
    }

    fn panel(&mut self, ui: &mut egui::Ui) {
        ui.heading(&self.title);
        ui.label(format!("run: {}", self.run_dir.display()));
        ui.label(format!("display: {}", self.display_path));
        ui.separator();
        let stats = lock(&self.shared.stats);
        if self.live {
            let state = if stats.finished.is_some() {
                "finished".to_string()
            } else if stats.failed.is_some() {
                "failed".to_string()
            } else if self.trainer_done.load(Ordering::SeqCst) {
                "stopped".to_string()
            } else if self.shared.paused.load(Ordering::SeqCst) {
                "paused".to_string()
            } else {
                "training".to_string()
            };
            ui.label(format!("step {} / {} ({state})", stats.step, self.total_steps));
            ui.label(format!("{:.1} steps/s", stats.steps_per_second));
        }
        if let Some(loss) = stats.loss {
            ui.label(format!("loss {loss:.3e}"));
        }
        if let Some(p) = stats.psnr {
            ui.label(format!("train PSNR {p:.2} dB"));
        }
        if let Some(summary) = &stats.finished {
            for key in ["psnr", "ssim", "iou", "normal_error_deg"] {
                if let Some(v) = summary[key].as_f64() {
                    ui.label(format!("{key} {v:.4}"));
                }
            }
        }
        if let Some(failure) = &stats.failed {
            ui.colored_label(egui::Color32::from_rgb(240, 110, 90), failure);
        }
        // At most a few hundred points reach the plot.
        let every = stats.history.len().div_ceil(400).max(1);
        let history: Vec<_> = stats.history.iter().step_by(every).copied().collect();
        drop(stats);
        plot(ui, &history);
        if self.live && !self.trainer_done.load(Ordering::SeqCst) {
            ui.horizontal(|ui| {
                let paused = self.shared.paused.load(Ordering::SeqCst);
                if ui.button(if paused { "resume" } else { "pause" }).clicked() {
                    self.shared.paused.store(!paused, Ordering::SeqCst);
                }
                if ui.button("save checkpoint").clicked() {
                    self.shared.checkpoint_now.store(true, Ordering::SeqCst);
                    self.message = "checkpoint saved after this step".into();
                }
            });
        }
        ui.separator();
        let fps = self.frame_times.len() as f64 / self.frame_times.first().map_or(1.0, |t| t.elapsed().as_secs_f64().max(1e-3));
        ui.label(format!("{fps:.1} frames/s, last picture {:.0} ms", self.render_seconds * 1000.0));
        egui::ComboBox::from_label("show").selected_text(self.modes[self.mode]).show_ui(ui, |ui| {
            for (i, name) in self.modes.iter().enumerate() {
                ui.selectable_value(&mut self.mode, i, *name);
            }
        });
        egui::ComboBox::from_label("resolution").selected_text(format!("{:.0} %", self.quality * 100.0)).show_ui(ui, |ui| {
            for q in [1.0f32, 0.5, 0.25, 0.0625] {
                ui.selectable_value(&mut self.quality, q, format!("{:.0} %", q * 100.0));
            }
        });
        if !self.cameras.is_empty() {
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut self.camera_index).range(0..=self.cameras.len() - 1).prefix("training view "));
                if ui.button("jump").clicked()
                    && let View::Orbit(o) = &mut self.view
                {
                    o.look_from(&self.cameras[self.camera_index]);
                    self.last_move = Instant::now();
                    let _ = self.jobs.send(Job::Photo(self.camera_index));
                }
            });
            // The photo of the view jumped to, beside the field's picture of it.
            if let Some((index, texture)) = &self.photo {
                ui.label(format!("training view {index}:"));
                let size = texture.size_vec2();
                let scale = (ui.available_width() / size.x).min(1.0).min(160.0 / size.y.max(1.0));
                ui.image((texture.id(), size * scale));
            }
        }
        ui.horizontal(|ui| {
            if ui.button("screenshot").clicked() {
                self.shots += 1;
                let path = self.run_dir.join("screenshots").join(format!("shot-{:03}.png", self.shots));
                self.options.screenshot = Some(path);
                self.screenshot_asked = false;
                self.options.frames = 0;
            }
            // Surfaces and densities mesh; image planes do not.
            if matches!(self.view, View::Orbit(_)) && ui.button("export mesh").clicked() {
                self.message = "meshing...".into();
                let _ = self.jobs.send(Job::Mesh);
            }
        });
        if !self.message.is_empty() {
            ui.label(&self.message);
        }
    }
}

fn colour_image(picture: &Picture) -> egui::ColorImage {
    let rgb: Vec<u8> = picture.rgb.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    egui::ColorImage::from_rgb([picture.width, picture.height], &rgb)
}

/// A finished run's (step, loss, train PSNR) from its metrics log, for the plot.
fn logged_history(run: &std::path::Path) -> Vec<(u64, f64, Option<f64>)> {
    let text = std::fs::read_to_string(run.join(crate::run::METRICS_FILE)).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|r| Some((r["step"].as_u64()?, r["loss"].as_f64()?, r["train_psnr"].as_f64())))
        .collect()
}

/// The loss (log scale) and training PSNR over the steps, drawn with the painter.
fn plot(ui: &mut egui::Ui, history: &[(u64, f64, Option<f64>)]) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(ui.available_width(), 110.0), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, egui::Color32::from_gray(24));
    if history.len() < 2 {
        painter.text(rect.center(), egui::Align2::CENTER_CENTER, "loss and PSNR appear here", egui::FontId::proportional(11.0), egui::Color32::GRAY);
        return;
    }
    let last = history.last().map_or(1, |h| h.0).max(1) as f32;
    let series = |values: Vec<(f32, f32)>, colour: egui::Color32| {
        let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &(_, v)| (a.min(v), b.max(v)));
        let span = (hi - lo).max(1e-6);
        let points: Vec<egui::Pos2> = values
            .iter()
            .map(|&(s, v)| egui::pos2(rect.left() + rect.width() * s / last, rect.bottom() - 4.0 - (rect.height() - 8.0) * (v - lo) / span))
            .collect();
        painter.line(points, egui::Stroke::new(1.5, colour));
    };
    series(history.iter().filter(|h| h.1 > 0.0).map(|h| (h.0 as f32, (h.1 as f32).log10())).collect(), egui::Color32::from_rgb(230, 120, 60));
    let psnr: Vec<(f32, f32)> = history.iter().filter_map(|h| h.2.map(|p| (h.0 as f32, p as f32))).collect();
    painter.text(
        rect.left_top() + egui::vec2(4.0, 2.0),
        egui::Align2::LEFT_TOP,
        "loss (log)",
        egui::FontId::proportional(10.0),
        egui::Color32::from_rgb(230, 120, 60),
    );
    if psnr.len() > 1 {
        series(psnr, egui::Color32::from_rgb(90, 170, 240));
        painter.text(
            rect.right_top() + egui::vec2(-4.0, 2.0),
            egui::Align2::RIGHT_TOP,
            "PSNR",
            egui::FontId::proportional(10.0),
            egui::Color32::from_rgb(90, 170, 240),
        );
    }
}

/// The side panel's width.
const PANEL_WIDTH: f32 = 250.0;

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.receive(&ctx);
        let now = Instant::now();
        self.frame_times.push(now);
        self.frame_times.retain(|t| now.duration_since(*t) < Duration::from_secs(2));
        let interrupted = self.shared.interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
        // Ctrl-C in the terminal closes the window too; training stops at a checkpoint.
        if interrupted || (self.trainer_done.load(Ordering::SeqCst) && self.options.exit_when_done && self.live) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        egui::Panel::left("panel").exact_size(PANEL_WIDTH).show(ui, |ui| self.panel(ui));
        egui::CentralPanel::default().frame(egui::Frame::NONE.fill(egui::Color32::from_gray(40))).show(ui, |ui| {
            let rect = ui.max_rect();
            let response = ui.allocate_rect(rect, egui::Sense::click_and_drag());
            let size = [rect.width(), rect.height()];
            let delta = response.drag_delta();
            let scroll = if response.hovered() { ui.input(|i| i.smooth_scroll_delta.y) } else { 0.0 };
            let moved = delta != egui::Vec2::ZERO || scroll != 0.0;
            match &mut self.view {
                View::Plane(w) => {
                    if response.dragged() {
                        w.pan(delta.x, delta.y, size[0]);
                    }
                    if scroll != 0.0 {
                        let at = response.hover_pos().map_or([0.0, 0.0], |p| [(p.x - rect.center().x) / size[0], (p.y - rect.center().y) / size[1]]);
                        w.zoom(scroll, at, size);
                    }
                }
                View::Orbit(o) => {
                    if response.dragged_by(egui::PointerButton::Primary) && !ui.input(|i| i.modifiers.shift) {
                        o.rotate(delta.x, delta.y);
                    } else if response.dragged() {
                        o.pan(delta.x, delta.y, size[1]);
                    }
                    if scroll != 0.0 {
                        o.dolly(scroll);
                    }
                }
            }
            if moved {
                self.last_move = Instant::now();
            }
            // Ask for a new picture when the view changed, a new snapshot arrived (at most a
            // few times a second), or the camera stopped and the picture is a coarse one.
            // Pictures in physical pixels (HiDPI screens have more than one per point).
            let ppp = ctx.pixels_per_point();
            let request = self.request([size[0] * ppp, size[1] * ppp]);
            let version = self.shared.version.load(Ordering::SeqCst);
            let changed = self.shown.as_ref().is_none_or(|(r, _)| *r != request);
            let fresh_snapshot = version != self.rendered_version && self.last_render.elapsed() > Duration::from_millis(250);
            let wanted = self.pictures < self.options.frames.max(1);
            let again = self.benchmarking() && wanted;
            if self.asked.is_none() && (changed || fresh_snapshot || again) && (wanted || !self.benchmarking()) {
                if self.benchmarking() && self.started.is_none() {
                    self.started = Some(Instant::now());
                }
                self.next_id += 1;
                self.asked = Some((request.clone(), self.next_id));
                self.rendered_version = version;
                self.last_render = Instant::now();
                let _ = self.jobs.send(Job::Picture { request, id: self.next_id });
            }
            if let Some(picture) = &self.device_picture {
                ui.painter().add(display::paint(rect, picture));
            } else if let Some(texture) = &self.texture {
                ui.painter().image(texture.id(), rect, egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)), egui::Color32::WHITE);
            }
            if let View::Orbit(o) = &self.view {
                draw_frusta(ui, rect, o, &self.cameras, self.frustum_size);
            }
        });
        self.screenshot(&ctx);
        if self.asked.is_some() || self.last_move.elapsed() < Duration::from_millis(300) {
            ctx.request_repaint_after(Duration::from_millis(30));
        } else if self.live {
            // The panel's numbers; new snapshots ask for a repaint themselves.
            ctx.request_repaint_after(Duration::from_millis(500));
        }
    }
}

/// The training cameras as small frusta projected through the orbit's camera.
fn draw_frusta(ui: &egui::Ui, rect: egui::Rect, orbit: &Orbit, cameras: &[Camera], size: f32) {
    if cameras.is_empty() {
        return;
    }
    let view = orbit.camera(rect.width() as usize, rect.height() as usize);
    let painter = ui.painter_at(rect);
    let stroke = egui::Stroke::new(1.0, egui::Color32::from_rgb(255, 170, 0));
    for camera in cameras {
        let (w, h) = (camera.width as f32, camera.height as f32);
        let eye = camera.position();
        let corners: Vec<[f32; 3]> = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
            .iter()
            .map(|&(px, py)| {
                let (o, d) = camera.ray(px, py);
                [0, 1, 2].map(|k| o[k] + size * d[k])
            })
            .collect();
        let project = |p: [f32; 3]| view.project(p).map(|q| egui::pos2(rect.left() + q[0], rect.top() + q[1]));
        let (Some(apex), Some(ring)) = (project(eye), corners.iter().map(|&c| project(c)).collect::<Option<Vec<_>>>()) else { continue };
        for i in 0..4 {
            painter.line_segment([apex, ring[i]], stroke);
            painter.line_segment([ring[i], ring[(i + 1) % 4]], stroke);
        }
    }
}

impl App {
    /// Screenshot mode: after `frames` pictures, save the window to the PNG and (for
    /// `--screenshot`) close.
    fn screenshot(&mut self, ctx: &egui::Context) {
        let Some(path) = self.options.screenshot.clone() else { return };
        let taken = lock(&self.screenshot_taken).take();
        if let Some(image) = taken {
            let result = save_screenshot(&path, &image);
            self.message = match &result {
                Ok(()) => format!("saved {}", path.display()),
                Err(e) => format!("{e:#}"),
            };
            if self.shots == 0 {
                // `--screenshot`: the window's work is done.
                let seconds = match (self.started, self.last_picture) {
                    (Some(start), Some(end)) => end.duration_since(start).as_secs_f64(),
                    _ => 0.0,
                };
                let (w, h) = (self.options.size.0, self.options.size.1);
                *lock(&self.ends.report) = Some(format!(
                    "{} pictures of {w}x{h} in {seconds:.2} s: {:.2} pictures/s (the last took {:.0} ms), {} drawn from burn's wgpu buffers; saved {}",
                    self.pictures,
                    self.pictures as f64 / seconds.max(1e-9),
                    self.render_seconds * 1000.0,
                    self.drawn_on_device,
                    path.display()
                ));
                if let Err(e) = result {
                    *lock(&self.ends.failure) = Some(format!("{e:#}"));
                }
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            self.options.screenshot = None;
            return;
        }
        let settled = self.asked.is_none() && self.last_move.elapsed() > Duration::from_millis(300);
        if !self.screenshot_asked && self.pictures >= self.options.frames.max(1) && settled {
            self.screenshot_asked = true;
            let slot = self.screenshot_taken.clone();
            let ctx2 = ctx.clone();
            ctx.request_screenshot(move |image| {
                *lock(&slot) = Some(image);
                ctx2.request_repaint();
            });
        }
        ctx.request_repaint_after(Duration::from_millis(30));
    }
}

fn save_screenshot(path: &std::path::Path, image: &egui::ColorImage) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let [w, h] = image.size;
    let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    let buffer = ::image::RgbaImage::from_raw(w as u32, h as u32, rgba).context("screenshot buffer")?;
    buffer.save(path).with_context(|| format!("cannot write {}", path.display()))
}
