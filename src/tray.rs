//! The tray app (`casare-robot start --tray`, or no arguments on Windows): an icon in the
//! notification area whose colour tells the robot's state, and a menu to pause, resume and stop
//! it, open its logs and its configuration.
//!
//! This file is the platform-independent part, unit-tested everywhere: [`TrayModel`] turns the
//! robot's [`StatusSnapshot`] into what the tray shows ([`TrayView`]: icon colour, tooltip, menu
//! texts), [`ico_image`] picks an image out of the embedded `.ico` files, and [`TrayStart`] /
//! [`run_agent_with_tray`] are the two calls `app::cmd_start` makes. The Windows part
//! (`tray/ui.rs`, compiled only with `cfg(all(windows, feature = "tray"))`) runs the icon.
//!
//! Invariants: the tray never blocks the agent. It reads the shared snapshot about once a second
//! (a read lock held for a copy) and talks to the agent only with [`Event`]s on its channel
//! (unbounded: a send never waits). When the agent ends, the tray ends and the process exits with
//! the agent's code. Elsewhere than on Windows with the `tray` feature, `--tray` is a clear error
//! and everything here but the pure model compiles to nothing.

use crate::agent::{Agent, Control, Event};
use crate::observe::status::{ConnectionStatus, StatusSnapshot};
use crossbeam_channel::Sender;
use std::time::{Duration, Instant};

#[cfg(all(windows, feature = "tray"))]
mod ui;

/// Whether this build has the tray (Windows with the `tray` feature).
pub const SUPPORTED: bool = cfg!(all(windows, feature = "tray"));

/// How long every configured link must have been down before the icon turns red (shorter
/// outages are yellow: "reconnecting").
pub const RED_AFTER: Duration = Duration::from_secs(60);

/// How long a Pause/Resume click shows its own effect before the snapshot must confirm it.
pub const PAUSE_SETTLE: Duration = Duration::from_secs(3);

/// The longest tooltip Windows shows (`NOTIFYICONDATAW::szTip` holds 128 UTF-16 units with the
/// terminating NUL).
pub const TOOLTIP_MAX_UNITS: usize = 127;

/// The icon's colour, one per robot condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IconColour {
    /// Connected and idle (or paused).
    Green,
    /// Connected and executing a job.
    Blue,
    /// Starting, connecting, reconnecting (a short outage) or stopping.
    Yellow,
    /// Disconnected for [`RED_AFTER`] or more, credentials refused, or stopped.
    Red,
}

impl IconColour {
    /// Every colour.
    pub const ALL: [IconColour; 4] = [
        IconColour::Green,
        IconColour::Blue,
        IconColour::Yellow,
        IconColour::Red,
    ];

    /// The embedded `.ico` file (drawn by `resources/make_icons.py`).
    pub fn ico(self) -> &'static [u8] {
        match self {
            IconColour::Green => include_bytes!("../resources/tray-green.ico"),
            IconColour::Blue => include_bytes!("../resources/tray-blue.ico"),
            IconColour::Yellow => include_bytes!("../resources/tray-yellow.ico"),
            IconColour::Red => include_bytes!("../resources/tray-red.ico"),
        }
    }
}

/// Everything the tray shows, derived from one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrayView {
    /// Icon colour.
    pub colour: IconColour,
    /// The first (disabled) menu line, e.g. `Status: Connected, idle`.
    pub status_line: String,
    /// The second (disabled) menu line: `Job: <id> (40%)` or `Job: none`.
    pub job_line: String,
    /// The tooltip (at most [`TOOLTIP_MAX_UNITS`] UTF-16 units).
    pub tooltip: String,
    /// The robot is (or was just asked to be) paused: the menu offers Resume.
    pub paused: bool,
}

impl TrayView {
    /// Label of the Pause/Resume menu item.
    pub fn pause_label(&self) -> &'static str {
        if self.paused {
            "Resume taking jobs"
        } else {
            "Pause taking jobs"
        }
    }
}

/// The orchestrator links, summed up for the icon.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    /// A link is up.
    Up,
    /// Connecting, or a short outage: retries are under way.
    Connecting {
        /// The WebSocket link has not connected yet (versus: lost and reconnecting).
        first: bool,
    },
    /// Down for [`RED_AFTER`] or more (seconds, when known).
    Down(Option<f64>),
    /// The orchestrator refused the credentials.
    Refused,
}

fn link(conn: &ConnectionStatus) -> Link {
    let ws = conn.websocket.as_deref();
    if conn.unauthorized || ws == Some("unauthorized") {
        return Link::Refused;
    }
    if ws == Some("connected") || conn.rest.as_deref() == Some("reachable") {
        return Link::Up;
    }
    let long = conn
        .down_for_seconds
        .is_some_and(|s| s >= RED_AFTER.as_secs_f64());
    if long || ws == Some("disconnected") {
        return Link::Down(conn.down_for_seconds);
    }
    Link::Connecting {
        first: ws == Some("connecting"),
    }
}

fn duration_text(secs: f64) -> String {
    let secs = secs.max(0.0) as u64;
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// Cut `text` to at most `max` UTF-16 units, ending with `…` when it was cut.
pub fn truncate_utf16(text: &str, max: usize) -> String {
    if text.encode_utf16().count() <= max {
        return text.to_string();
    }
    let mut out = String::new();
    let mut units = 0;
    for c in text.chars() {
        // Leave room for the ellipsis (one unit).
        if units + c.len_utf16() > max.saturating_sub(1) {
            break;
        }
        units += c.len_utf16();
        out.push(c);
    }
    out.push('…');
    out
}

/// The tray's state between snapshots: what the operator asked that the snapshot may not show
/// yet. Sans-IO: time is passed in.
#[derive(Debug)]
pub struct TrayModel {
    robot_name: String,
    /// Exit was chosen (the robot is stopping).
    exiting: bool,
    /// The last Pause/Resume click: the state asked for and when.
    pause_request: Option<(bool, Instant)>,
}

impl TrayModel {
    /// A model for the robot called `robot_name` (shown in the tooltip).
    pub fn new(robot_name: &str) -> TrayModel {
        TrayModel {
            robot_name: robot_name.to_string(),
            exiting: false,
            pause_request: None,
        }
    }

    fn paused(&self, snap: &StatusSnapshot, now: Instant) -> bool {
        let reported = snap.state == "paused";
        match self.pause_request {
            Some((asked, at)) if asked != reported && now < at + PAUSE_SETTLE => asked,
            _ => reported,
        }
    }

    /// What to show for `snap` at `now`.
    pub fn view(&self, snap: &StatusSnapshot, now: Instant) -> TrayView {
        let paused = self.paused(snap, now);
        let n_jobs = snap.jobs.len();
        let activity = {
            let mut parts = Vec::new();
            if paused {
                parts.push("paused".to_string());
            }
            match n_jobs {
                0 if !paused => parts.push("idle".to_string()),
                0 => {}
                1 => parts.push("running 1 job".to_string()),
                n => parts.push(format!("running {n} jobs")),
            }
            parts.join(", ")
        };
        let jobs_suffix = match n_jobs {
            0 => String::new(),
            1 => ", running 1 job".to_string(),
            n => format!(", running {n} jobs"),
        };
        let (colour, status) = match snap.state.as_str() {
            "stopped" => (IconColour::Red, "Stopped".to_string()),
            "stopping" => (IconColour::Yellow, format!("Stopping…{jobs_suffix}")),
            _ if self.exiting => (IconColour::Yellow, format!("Stopping…{jobs_suffix}")),
            "" | "starting" => (IconColour::Yellow, "Starting…".to_string()),
            _ => match link(&snap.connection) {
                Link::Refused => (
                    IconColour::Red,
                    "API key refused (check api_key)".to_string(),
                ),
                Link::Up if n_jobs > 0 => (IconColour::Blue, format!("Connected, {activity}")),
                Link::Up => (IconColour::Green, format!("Connected, {activity}")),
                Link::Connecting { first } => {
                    let what = if first {
                        "Connecting…"
                    } else {
                        "Reconnecting…"
                    };
                    (IconColour::Yellow, format!("{what}{jobs_suffix}"))
                }
                Link::Down(secs) => {
                    let since = secs.map(|s| format!(" for {}", duration_text(s)));
                    (
                        IconColour::Red,
                        format!("Disconnected{}{jobs_suffix}", since.unwrap_or_default()),
                    )
                }
            },
        };
        let job_line = match snap.jobs.first() {
            None => "Job: none".to_string(),
            Some(job) => {
                let more = match n_jobs {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                };
                format!(
                    "Job: {} ({}%){more}",
                    truncate_utf16(&job.job_id, 40),
                    job.progress.min(100)
                )
            }
        };
        let tooltip = truncate_utf16(
            &format!("CasareRPA Robot: {}\n{status}", self.robot_name),
            TOOLTIP_MAX_UNITS,
        );
        TrayView {
            colour,
            status_line: format!("Status: {status}"),
            job_line,
            tooltip,
            paused,
        }
    }

    /// Pause/Resume was clicked: the control to send (the opposite of what is shown now).
    pub fn toggle_pause(&mut self, snap: &StatusSnapshot, now: Instant) -> Control {
        let pause = !self.paused(snap, now);
        self.pause_request = Some((pause, now));
        if pause {
            Control::Pause
        } else {
            Control::Resume
        }
    }

    /// Exit was clicked: true the first time (ask the agent to stop), false once it is stopping.
    pub fn exit(&mut self) -> bool {
        !std::mem::replace(&mut self.exiting, true)
    }
}

/// One image of an `.ico` file: its bytes (a BMP without file header, or a PNG) and its width.
pub fn ico_image(ico: &[u8], want: u32) -> Option<(&[u8], u32)> {
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(ico.get(at..at + 2)?.try_into().ok()?))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(ico.get(at..at + 4)?.try_into().ok()?))
    };
    if u16_at(0)? != 0 || u16_at(2)? != 1 {
        return None;
    }
    let count = usize::from(u16_at(4)?);
    let mut best: Option<(&[u8], u32)> = None;
    for idx in 0..count {
        let entry = 6 + 16 * idx;
        let width = match *ico.get(entry)? {
            0 => 256,
            w => u32::from(w),
        };
        let len = usize::try_from(u32_at(entry + 8)?).ok()?;
        let offset = usize::try_from(u32_at(entry + 12)?).ok()?;
        let Some(bytes) = ico.get(offset..offset.checked_add(len)?) else {
            continue;
        };
        // The smallest image at least `want` wide, else the largest.
        let better = match best {
            None => true,
            Some((_, w)) if w < want => width > w,
            Some((_, w)) => width >= want && width < w,
        };
        if better {
            best = Some((bytes, width));
        }
    }
    best
}

/// Tray mode, prepared at the start of `start` (before the configuration is read, so that every
/// error on the way is seen): on Windows with the tray it hides nothing yet, and if `start` gives
/// up before the tray runs, dropping it shows a message box pointing at the console window and
/// the log (a double-clicked robot has no other way to say why it stopped).
pub struct TrayStart {
    #[cfg(all(windows, feature = "tray"))]
    session: Option<ui::Prepared>,
}

impl TrayStart {
    /// `requested` is `--tray` (or no arguments). `Err` carries the exit code when the tray was
    /// asked for where there is none (the reason is printed).
    pub fn begin(requested: bool) -> Result<TrayStart, u8> {
        if requested && !SUPPORTED {
            eprintln!(
                "error: --tray needs the Windows build of casare-robot (with the `tray` feature); \
                 run `casare-robot start --foreground` to see the robot in this console"
            );
            return Err(crate::app::EXIT_INVALID);
        }
        Ok(TrayStart {
            #[cfg(all(windows, feature = "tray"))]
            session: requested.then(ui::Prepared::new),
        })
    }

    /// Tray mode only: remember the names and paths the menu needs, and make sure no other
    /// robot with the same data directory runs in this session (a named mutex), else say so in
    /// a message box. `Err` carries the exit code.
    pub fn configured(&mut self, config: &crate::config::RobotConfig) -> Result<(), u8> {
        #[cfg(all(windows, feature = "tray"))]
        if let Some(session) = &mut self.session {
            return session.configured(config);
        }
        let _ = config;
        Ok(())
    }
}

/// Run `agent` to its end and return its exit code: in tray mode on a thread of its own while
/// this thread runs the tray (reading `status`, sending operator commands on `events`),
/// otherwise right here.
pub fn run_agent_with_tray(
    start: TrayStart,
    agent: Agent,
    status: crate::observe::status::SharedStatus,
    events: Sender<Event>,
) -> u8 {
    #[cfg(all(windows, feature = "tray"))]
    if let Some(session) = start.session {
        return ui::run(session, agent, status, events);
    }
    let _ = (start, status, events);
    agent.run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::status::JobStatus;

    fn snap(
        state: &str,
        ws: Option<&str>,
        rest: Option<&str>,
        jobs: &[(&str, u8)],
    ) -> StatusSnapshot {
        StatusSnapshot {
            state: state.to_string(),
            connection: ConnectionStatus {
                websocket: ws.map(str::to_string),
                rest: rest.map(str::to_string),
                ..ConnectionStatus::default()
            },
            jobs: jobs
                .iter()
                .map(|(id, progress)| JobStatus {
                    job_id: id.to_string(),
                    progress: *progress,
                    ..JobStatus::default()
                })
                .collect(),
            ..StatusSnapshot::default()
        }
    }

    fn check(snapshot: StatusSnapshot, colour: IconColour, status_line: &str, job_line: &str) {
        let view = TrayModel::new("Office 7").view(&snapshot, Instant::now());
        assert_eq!(
            (
                view.colour,
                view.status_line.as_str(),
                view.job_line.as_str()
            ),
            (colour, status_line, job_line),
            "{snapshot:?}"
        );
        assert_eq!(
            view.tooltip,
            format!(
                "CasareRPA Robot: Office 7\n{}",
                status_line.trim_start_matches("Status: ")
            )
        );
    }

    #[test]
    fn each_condition_has_its_colour_and_texts() {
        use IconColour::*;
        let ws = Some("connected");
        check(
            snap("starting", None, None, &[]),
            Yellow,
            "Status: Starting…",
            "Job: none",
        );
        check(
            snap("", None, None, &[]),
            Yellow,
            "Status: Starting…",
            "Job: none",
        );
        check(
            snap("idle", ws, None, &[]),
            Green,
            "Status: Connected, idle",
            "Job: none",
        );
        check(
            snap("idle", None, Some("reachable"), &[]),
            Green,
            "Status: Connected, idle",
            "Job: none",
        );
        check(
            snap("paused", ws, None, &[]),
            Green,
            "Status: Connected, paused",
            "Job: none",
        );
        check(
            snap("busy", ws, None, &[("j-1", 40)]),
            Blue,
            "Status: Connected, running 1 job",
            "Job: j-1 (40%)",
        );
        check(
            snap("busy", ws, None, &[("j-1", 40), ("j-2", 0), ("j-3", 0)]),
            Blue,
            "Status: Connected, running 3 jobs",
            "Job: j-1 (40%) and 2 more",
        );
        check(
            snap("paused", ws, None, &[("j-1", 250)]),
            Blue,
            "Status: Connected, paused, running 1 job",
            "Job: j-1 (100%)",
        );
        check(
            snap("idle", Some("connecting"), None, &[]),
            Yellow,
            "Status: Connecting…",
            "Job: none",
        );
        check(
            snap("idle", Some("reconnecting"), None, &[]),
            Yellow,
            "Status: Reconnecting…",
            "Job: none",
        );
        check(
            snap(
                "busy",
                Some("reconnecting"),
                Some("unreachable"),
                &[("j", 5)],
            ),
            Yellow,
            "Status: Reconnecting…, running 1 job",
            "Job: j (5%)",
        );
        check(
            snap("idle", Some("disconnected"), None, &[]),
            Red,
            "Status: Disconnected",
            "Job: none",
        );
        let mut long = snap("idle", Some("reconnecting"), None, &[]);
        long.connection.down_for_seconds = Some(61.0);
        check(
            long.clone(),
            Red,
            "Status: Disconnected for 1 min",
            "Job: none",
        );
        long.connection.down_for_seconds = Some(59.0);
        check(long.clone(), Yellow, "Status: Reconnecting…", "Job: none");
        long.connection.down_for_seconds = Some(2.0 * 3600.0 + 300.0);
        check(long, Red, "Status: Disconnected for 2 h 5 min", "Job: none");
        let mut refused = snap("idle", Some("reconnecting"), None, &[]);
        refused.connection.unauthorized = true;
        check(
            refused,
            Red,
            "Status: API key refused (check api_key)",
            "Job: none",
        );
        check(
            snap("idle", Some("unauthorized"), None, &[]),
            Red,
            "Status: API key refused (check api_key)",
            "Job: none",
        );
        check(
            snap("stopping", ws, None, &[("j", 1)]),
            Yellow,
            "Status: Stopping…, running 1 job",
            "Job: j (1%)",
        );
        check(
            snap("stopped", None, None, &[]),
            Red,
            "Status: Stopped",
            "Job: none",
        );
    }

    #[test]
    fn long_texts_are_cut_for_the_tooltip_and_menu() {
        let long_id = "x".repeat(100);
        let view = TrayModel::new(&"é".repeat(200)).view(
            &snap("busy", Some("connected"), None, &[(&long_id, 1)]),
            Instant::now(),
        );
        assert_eq!(view.tooltip.encode_utf16().count(), TOOLTIP_MAX_UNITS);
        assert!(view.tooltip.ends_with('…'));
        assert_eq!(view.job_line, format!("Job: {}… (1%)", "x".repeat(39)));
        // Surrogate pairs are never split.
        assert_eq!(truncate_utf16("ab😀cd", 4), "ab…");
        assert_eq!(truncate_utf16("ab😀", 4), "ab😀");
        assert_eq!(truncate_utf16("", 4), "");
    }

    #[test]
    fn pause_shows_at_once_and_the_snapshot_wins_after_it_settles() {
        let t0 = Instant::now();
        let mut model = TrayModel::new("r");
        let idle = snap("idle", Some("connected"), None, &[]);
        let paused = snap("paused", Some("connected"), None, &[]);
        assert_eq!(model.view(&idle, t0).pause_label(), "Pause taking jobs");
        assert_eq!(model.toggle_pause(&idle, t0), Control::Pause);
        // Shown before the agent's snapshot says so...
        let view = model.view(&idle, t0 + Duration::from_millis(500));
        assert!(view.paused);
        assert_eq!(view.pause_label(), "Resume taking jobs");
        assert_eq!(view.status_line, "Status: Connected, paused");
        // ...confirmed by it...
        assert!(model.view(&paused, t0 + Duration::from_secs(10)).paused);
        // ...and if the agent never confirms, the snapshot wins once the click has settled.
        assert!(!model.view(&idle, t0 + PAUSE_SETTLE).paused);
        // Resume is the opposite of what is shown (here: paused by the orchestrator).
        assert_eq!(
            model.toggle_pause(&paused, t0 + Duration::from_secs(20)),
            Control::Resume
        );
        assert!(!model.view(&paused, t0 + Duration::from_secs(21)).paused);
    }

    #[test]
    fn exit_is_asked_once_and_shows_stopping() {
        let mut model = TrayModel::new("r");
        assert!(model.exit());
        assert!(!model.exit());
        let view = model.view(
            &snap("busy", Some("connected"), None, &[("j", 3)]),
            Instant::now(),
        );
        assert_eq!(
            (view.colour, view.status_line.as_str()),
            (IconColour::Yellow, "Status: Stopping…, running 1 job")
        );
    }

    #[test]
    fn the_embedded_icons_hold_every_size_and_the_best_is_picked() {
        for colour in IconColour::ALL {
            let ico = colour.ico();
            for (want, got) in [
                (16, 16),
                (20, 20),
                (24, 24),
                (32, 32),
                (17, 20),
                (40, 32),
                (1, 16),
            ] {
                let (bytes, width) = ico_image(ico, want).expect("an image");
                assert_eq!(width, got, "{colour:?} at {want}");
                // BITMAPINFOHEADER: size 40, width, height doubled (XOR + AND mask), 32 bits.
                assert_eq!(&bytes[0..4], &40u32.to_le_bytes());
                assert_eq!(&bytes[4..8], &got.to_le_bytes());
                assert_eq!(&bytes[8..12], &(2 * got).to_le_bytes());
                assert_eq!(&bytes[14..16], &32u16.to_le_bytes());
                let mask_row = got.div_ceil(32) * 4;
                assert_eq!(bytes.len() as u32, 40 + got * got * 4 + mask_row * got);
            }
        }
        assert_ne!(IconColour::Green.ico(), IconColour::Red.ico());
    }

    #[test]
    fn damaged_ico_files_give_nothing() {
        assert_eq!(ico_image(b"", 16), None);
        assert_eq!(ico_image(b"\0\0\x02\0\x01\0", 16), None); // a cursor file
        let mut ico = IconColour::Green.ico().to_vec();
        ico.truncate(200); // entries point past the end
        assert_eq!(ico_image(&ico, 16), None);
    }
}
