//! The Windows tray icon (`cfg(all(windows, feature = "tray"))`), on the `tray-item` crate.
//!
//! Threads: the agent runs on a thread named `agent`; this (the main) thread runs the tray's
//! control loop: it waits for the agent's end, for menu clicks (sent here by `tray-item`'s
//! callbacks on a channel) and for the next tick (1 s), when it reads the status snapshot and
//! updates the icon, tooltip and menu texts that changed. `tray-item` runs the Win32 message
//! loop of its hidden window on a thread of its own. Nothing here waits on the agent: operator
//! commands are [`Event`]s on its unbounded channel.
//!
//! Menu: a disabled status line, a disabled current-job line, View logs, Settings,
//! Pause/Resume taking jobs, Exit. Exit asks for a graceful stop (running jobs get
//! `graceful_shutdown_seconds`); choosing it again while the robot stops offers to exit at once
//! (jobs resume from their checkpoints at the next start).
//!
//! Robustness: at logon the notification area may not exist yet, so a tray that cannot be
//! created is retried every 5 s while the agent runs. When Explorer restarts, `tray-item` adds
//! the icon again with a default image; the current icon is set again every 10 s.

use super::{ico_image, IconColour, TrayModel, TrayView};
use crate::agent::{Agent, Event};
use crate::app::EXIT_FAILED;
use crate::config::RobotConfig;
use crate::observe::status::SharedStatus;
use crate::winhost::{self, BoxKind, SingleInstance};
use crossbeam_channel::{select_biased, Receiver, Sender};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tray_item::{IconSource, TrayItem};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateIconFromResourceEx, DestroyIcon, GetSystemMetrics, HICON, LR_DEFAULTCOLOR, SM_CXSMICON,
};

/// How often the snapshot is read.
const TICK: Duration = Duration::from_secs(1);
/// How often a tray that could not be created is tried again.
const RETRY: Duration = Duration::from_secs(5);
/// How often the icon is set again (Explorer may have restarted).
const ICON_REFRESH_TICKS: u32 = 10;
/// Exit code of a forced exit (as a second Ctrl+C).
const EXIT_FORCED: u8 = 130;
/// Exit code when the agent thread panicked (as a panic on the main thread).
const EXIT_PANIC: u8 = 101;

/// The shortened template written by Settings when the robot read no configuration file.
const CONFIG_TEMPLATE: &str = r#"{
  "_comment": "casare-robot configuration, created by the tray's Settings. Set orchestrator_url (ws:// or wss://) and/or api_url (http:// or https://) and api_key, save, then restart the robot (tray: Exit, then start it again). Environment variables (CASARE_<KEY>) win over this file. Every key is described in README.md.",
  "orchestrator_url": null,
  "api_url": null,
  "api_key": null
}
"#;

/// Tray mode between the start of `start` and the tray: the single-instance mutex, the paths the
/// menu opens, and whether a failure must still be shown in a message box.
pub(super) struct Prepared {
    /// `start` has not reached the tray yet: dropping this shows why to look at the console.
    armed: bool,
    instance: Option<SingleInstance>,
    robot_name: String,
    log_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
}

impl Prepared {
    pub(super) fn new() -> Prepared {
        Prepared {
            armed: true,
            instance: None,
            robot_name: String::new(),
            log_dir: None,
            config_file: None,
        }
    }

    /// Remember the configuration's names and paths; take the single-instance mutex.
    pub(super) fn configured(&mut self, config: &RobotConfig) -> Result<(), u8> {
        // Absolute: the shell opens them later, whatever the current directory is then.
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        self.robot_name = config.robot_name.clone();
        self.log_dir = Some(absolute(&config.log_dir));
        self.config_file = config.config_file.as_deref().map(absolute);
        match SingleInstance::acquire(&config.data_dir) {
            Ok(Some(guard)) => {
                self.instance = Some(guard);
                Ok(())
            }
            Ok(None) => {
                self.armed = false;
                let text = format!(
                    "CasareRPA Robot is already running (data directory {}).\n\n\
                     Its icon is in the notification area, perhaps behind the ^ arrow.",
                    config.data_dir.display()
                );
                log::warn!("not started: another robot with this data_dir runs in this session");
                eprintln!("error: {text}");
                winhost::message_box(&text, BoxKind::Info);
                Err(EXIT_FAILED)
            }
            Err(e) => {
                // The store's exclusive lock still keeps a second robot out.
                log::warn!("cannot create the single-instance mutex: {e}");
                Ok(())
            }
        }
    }

    fn log_file(&self) -> Option<PathBuf> {
        self.log_dir
            .as_ref()
            .map(|dir| dir.join(crate::logging::LOG_FILE_NAME))
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let log = self
            .log_file()
            .map(|f| format!(" and in the log file\n{}", f.display()))
            .unwrap_or_default();
        winhost::message_box(
            &format!(
                "CasareRPA Robot could not start.\n\nThe reason is in the console window behind \
                 this message{log}.\n\nTo see it again, run `casare-robot start --foreground` in \
                 a command prompt."
            ),
            BoxKind::Error,
        );
    }
}

/// A menu click, sent by `tray-item`'s callback thread to the control loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrayCommand {
    ViewLogs,
    Settings,
    TogglePause,
    Exit,
}

/// The four icons, created once at the notification area's icon size.
struct Icons(HashMap<IconColour, HICON>);

impl Icons {
    fn load() -> Icons {
        // SAFETY: a plain metrics query.
        let size = unsafe { GetSystemMetrics(SM_CXSMICON) }.clamp(16, 256);
        let mut icons = HashMap::new();
        for colour in IconColour::ALL {
            let Some((bytes, _)) = ico_image(colour.ico(), size as u32) else {
                continue;
            };
            // SAFETY: `bytes` is one complete icon image of the embedded file, alive for the
            // call; 0x00030000 is the format version the documentation requires.
            let icon = unsafe {
                CreateIconFromResourceEx(
                    bytes.as_ptr(),
                    bytes.len() as u32,
                    1,
                    0x0003_0000,
                    size,
                    size,
                    LR_DEFAULTCOLOR,
                )
            };
            if icon.is_null() {
                log::warn!(
                    "cannot create the {colour:?} tray icon: {}",
                    std::io::Error::last_os_error()
                );
            } else {
                icons.insert(colour, icon);
            }
        }
        Icons(icons)
    }

    fn source(&self, colour: IconColour) -> IconSource {
        // tray-item takes the handle as its windows-sys version's HICON (an isize).
        IconSource::RawIcon(self.0.get(&colour).map_or(0, |h| *h as isize))
    }
}

impl Drop for Icons {
    fn drop(&mut self) {
        for icon in self.0.values() {
            // SAFETY: icons we created, destroyed once, after the tray that showed them.
            unsafe { DestroyIcon(*icon) };
        }
    }
}

/// The icon and its menu, with what they show now.
struct TrayUi {
    tray: TrayItem,
    status_id: u32,
    job_id: u32,
    pause_id: u32,
    shown: TrayView,
    ticks_since_icon: u32,
}

impl TrayUi {
    fn create(
        commands: &Sender<TrayCommand>,
        icons: &Icons,
        view: &TrayView,
    ) -> Result<TrayUi, tray_item::TIError> {
        let mut tray = TrayItem::new(&view.tooltip, icons.source(view.colour))?;
        let menu = tray.inner_mut();
        let status_id = menu.add_label_with_id(&view.status_line)?;
        let job_id = menu.add_label_with_id(&view.job_line)?;
        menu.add_separator()?;
        let item = |cmd: TrayCommand| {
            let tx = commands.clone();
            move || {
                let _ = tx.send(cmd);
            }
        };
        menu.add_menu_item_with_id("View logs", item(TrayCommand::ViewLogs))?;
        menu.add_menu_item_with_id("Settings", item(TrayCommand::Settings))?;
        let pause_id =
            menu.add_menu_item_with_id(view.pause_label(), item(TrayCommand::TogglePause))?;
        menu.add_separator()?;
        menu.add_menu_item_with_id("Exit", item(TrayCommand::Exit))?;
        Ok(TrayUi {
            tray,
            status_id,
            job_id,
            pause_id,
            shown: view.clone(),
            ticks_since_icon: 0,
        })
    }

    /// Change what differs from `view` (and set the icon again now and then).
    fn show(&mut self, view: &TrayView, icons: &Icons) {
        self.ticks_since_icon += 1;
        let mut failed = Vec::new();
        if view.colour != self.shown.colour || self.ticks_since_icon >= ICON_REFRESH_TICKS {
            self.ticks_since_icon = 0;
            if let Err(e) = self.tray.set_icon(icons.source(view.colour)) {
                failed.push(e.to_string());
            }
        }
        if view.status_line != self.shown.status_line || view.job_line != self.shown.job_line {
            log::debug!(
                "tray: {:?}, {}; {}",
                view.colour,
                view.status_line,
                view.job_line
            );
        }
        let menu = self.tray.inner_mut();
        if view.status_line != self.shown.status_line {
            if let Err(e) = menu.set_label(&view.status_line, self.status_id) {
                failed.push(e.to_string());
            }
        }
        if view.job_line != self.shown.job_line {
            if let Err(e) = menu.set_label(&view.job_line, self.job_id) {
                failed.push(e.to_string());
            }
        }
        if view.paused != self.shown.paused {
            if let Err(e) = menu.set_menu_item_label(view.pause_label(), self.pause_id) {
                failed.push(e.to_string());
            }
        }
        if view.tooltip != self.shown.tooltip {
            if let Err(e) = menu.set_tooltip(&view.tooltip) {
                failed.push(e.to_string());
            }
        }
        if !failed.is_empty() {
            log::debug!("tray update: {}", failed.join("; "));
        }
        self.shown = view.clone();
    }
}

/// What the control loop does after a command.
enum After {
    Continue,
    /// Exit the process now (the operator insisted while the robot was stopping).
    ExitNow,
}

/// Run `agent` on its own thread and the tray on this one until the agent ends.
pub(super) fn run(
    mut prepared: Prepared,
    agent: Agent,
    status: SharedStatus,
    events: Sender<Event>,
) -> u8 {
    prepared.armed = false;
    let (done_tx, done_rx) = crossbeam_channel::bounded::<u8>(1);
    let agent_thread = std::thread::Builder::new()
        .name("agent".into())
        .spawn(move || {
            let code = agent.run();
            let _ = done_tx.send(code);
        });
    let agent_thread = match agent_thread {
        Ok(handle) => handle,
        Err(e) => {
            log::error!("cannot start the agent thread: {e}");
            winhost::message_box(
                &format!("CasareRPA Robot could not start: no thread for the robot ({e})."),
                BoxKind::Error,
            );
            return EXIT_FAILED;
        }
    };
    if winhost::hide_own_console() {
        log::debug!("tray mode: the console window was hidden");
    }
    let code = control_loop(&prepared, &status, &events, &done_rx);
    match agent_thread.join() {
        Ok(()) => code.unwrap_or(EXIT_FAILED),
        Err(_) if code.is_none() => {
            log::error!("the robot stopped after an internal error (a panic; see above)");
            winhost::message_box(
                "CasareRPA Robot stopped after an internal error. The log file tells more.",
                BoxKind::Error,
            );
            EXIT_PANIC
        }
        Err(_) => code.unwrap_or(EXIT_PANIC),
    }
}

/// The tray's loop; returns the agent's exit code (None: the agent thread died without one).
fn control_loop(
    prepared: &Prepared,
    status: &SharedStatus,
    events: &Sender<Event>,
    done: &Receiver<u8>,
) -> Option<u8> {
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded::<TrayCommand>();
    let icons = Icons::load();
    let mut model = TrayModel::new(&prepared.robot_name);
    let mut ui: Option<TrayUi> = None;
    let mut next_try = Instant::now();
    let mut warned = false;
    let mut next_tick = Instant::now();
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        select_biased! {
            recv(done) -> code => {
                if ui.take().is_some() {
                    log::info!("tray icon removed");
                }
                return code.ok();
            }
            recv(cmd_rx) -> cmd => {
                let Ok(cmd) = cmd else { continue };
                if let After::ExitNow = handle(cmd, prepared, status, events, &mut model) {
                    drop(ui);
                    log::warn!("exit forced from the tray while the robot was stopping");
                    std::process::exit(i32::from(EXIT_FORCED));
                }
                // Show the effect at once.
                next_tick = Instant::now();
            }
            default(wait) => {}
        }
        let now = Instant::now();
        if now < next_tick {
            continue;
        }
        next_tick = now + TICK;
        let snapshot = status.read().clone();
        let view = model.view(&snapshot, now);
        match &mut ui {
            Some(ui) => ui.show(&view, &icons),
            None if now >= next_try => match TrayUi::create(&cmd_tx, &icons, &view) {
                Ok(created) => {
                    log::info!("tray icon shown: {:?}, {}", view.colour, view.status_line);
                    ui = Some(created);
                }
                Err(e) => {
                    next_try = now + RETRY;
                    if !warned {
                        warned = true;
                        log::warn!(
                            "cannot show the tray icon yet ({e}); trying again every {} s",
                            RETRY.as_secs()
                        );
                    }
                }
            },
            None => {}
        }
    }
}

fn handle(
    cmd: TrayCommand,
    prepared: &Prepared,
    status: &SharedStatus,
    events: &Sender<Event>,
    model: &mut TrayModel,
) -> After {
    log::debug!("tray: {cmd:?}");
    match cmd {
        TrayCommand::ViewLogs => {
            if let Err(e) = view_logs(prepared.log_dir.as_deref()) {
                winhost::message_box(&e, BoxKind::Error);
            }
        }
        TrayCommand::Settings => {
            if let Err(e) = open_settings(prepared.config_file.as_deref()) {
                winhost::message_box(&e, BoxKind::Error);
            }
        }
        TrayCommand::TogglePause => {
            let snapshot = status.read().clone();
            let control = model.toggle_pause(&snapshot, Instant::now());
            let _ = events.send(Event::Control(control));
        }
        TrayCommand::Exit => {
            if model.exit() {
                let _ = events.send(Event::Shutdown {
                    graceful: true,
                    source: "the tray",
                });
            } else if winhost::message_box(
                "CasareRPA Robot is stopping: running jobs get graceful_shutdown_seconds to \
                 finish.\n\nExit now? Running jobs stop where they are and resume from their \
                 last checkpoint at the next start.",
                BoxKind::Question,
            ) {
                return After::ExitNow;
            }
        }
    }
    After::Continue
}

/// Open the log file (or, before there is one, the log folder).
fn view_logs(log_dir: Option<&Path>) -> Result<(), String> {
    let dir = log_dir.ok_or("the log directory is unknown")?;
    let file = dir.join(crate::logging::LOG_FILE_NAME);
    if file.is_file() && winhost::shell_open(&file).is_ok() {
        return Ok(());
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return Err(format!("cannot open the log folder {}: {e}", dir.display()));
    }
    winhost::shell_open(dir)
}

/// Open the configuration file the robot read; when it read none (configured by environment
/// variables only), create `robot_config.json` in the platform config directory from a short
/// template first (every value null: nothing changes until it is edited).
fn open_settings(config_file: Option<&Path>) -> Result<(), String> {
    let path = match config_file {
        Some(path) => path.to_path_buf(),
        None => {
            let dirs = crate::config::default_dirs(
                crate::config::Platform::Windows,
                &crate::config::process_env,
            );
            let path = dirs.config_dir.join("robot_config.json");
            if !path.exists() {
                std::fs::create_dir_all(&dirs.config_dir)
                    .and_then(|()| std::fs::write(&path, CONFIG_TEMPLATE))
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                log::info!("created {} from the template", path.display());
            }
            path
        }
    };
    // .json often has no associated program: fall back to Notepad.
    if winhost::shell_open(&path).is_ok() {
        return Ok(());
    }
    std::process::Command::new("notepad.exe")
        .arg(&path)
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}
