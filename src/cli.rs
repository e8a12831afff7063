//! Command-line interface definitions (clap derive). Parsing only; `app` runs the commands.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// The Robot of the CasareRPA automation platform.
#[derive(Debug, Parser)]
#[command(name = "casare-robot", version, about, long_about = None, propagate_version = true)]
// Windows tray builds start the tray app without a command (a double-click, a Startup shortcut).
#[command(subcommand_required = !crate::tray::SUPPORTED)]
pub struct Cli {
    /// The command to run; None (Windows tray builds only) runs `start --tray`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the robot daemon: connect to the orchestrator, take jobs, run them, report results.
    Start(StartArgs),
    /// Run a workflow locally and print its result.
    Run(RunArgs),
    /// Check a workflow and list every problem found.
    Validate(ValidateArgs),
    /// Load robot_config.json + environment + flags and print the effective configuration.
    ValidateConfig(ConfigArgs),
    /// List the node types this robot supports.
    Nodes(NodesArgs),
    /// Inspect or clear stored checkpoints (for operators).
    Checkpoints(CheckpointsArgs),
    /// Show what the running robot is doing: state, links, jobs, queues, last error.
    Status(StatusArgs),
}

/// `status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status snapshot as JSON.
    #[arg(long)]
    pub json: bool,
    /// Robot configuration file (its data_dir holds the running robot's status file).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `checkpoints` arguments.
#[derive(Debug, Args)]
pub struct CheckpointsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: CheckpointAction,
    /// Robot configuration file (its data_dir holds the checkpoints).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

/// `checkpoints` actions.
#[derive(Debug, Subcommand)]
pub enum CheckpointAction {
    /// List every stored checkpoint.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one checkpoint: progress, queue, variables.
    Show {
        /// The job id.
        job_id: String,
    },
    /// Delete one checkpoint (the job then starts over when run again).
    Clear {
        /// The job id.
        job_id: String,
    },
}

/// `start` arguments.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Console mode: logs on stderr at log_level (otherwise only warnings reach stderr; the log
    /// file always gets everything at log_level).
    #[arg(long)]
    pub foreground: bool,
    /// Log at debug level (overrides log_level), on stderr too with --foreground.
    #[arg(long)]
    pub verbose: bool,
    /// Robot configuration file (default: ./robot_config.json or the platform config dir).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Tray app (Windows): an icon in the notification area shows the robot's state and its
    /// menu pauses, resumes and stops it. Starting the program without arguments does the same.
    #[arg(long)]
    pub tray: bool,
}

/// `run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow file (CasareRPA canvas JSON).
    pub workflow: PathBuf,
    /// Set an input variable. The value is parsed as JSON when it is valid JSON
    /// (5, 2.5, true, null, [1,2], {"a":1}, "quoted"), otherwise taken as a plain string.
    /// Repeatable; later flags win over --vars-file.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read input variables from a JSON object file.
    #[arg(long, value_name = "FILE")]
    pub vars_file: Option<PathBuf>,
    /// Run as if started by a trigger event: the JSON object in FILE becomes the
    /// `trigger_payload` variable, whose fields fill the trigger nodes' outputs by port name
    /// (wins over a `trigger_payload` from --vars-file or --var).
    #[arg(long, value_name = "FILE")]
    pub trigger_payload: Option<PathBuf>,
    /// Print the result object as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Job timeout in seconds (default: job_timeout from the config, 3600).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Seed for random nodes, for reproducible runs.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Do not print a line per node on stderr (log lines and errors are still shown).
    #[arg(long, short)]
    pub quiet: bool,
    /// Show the robot's own debug log on stderr (it always goes to the log file at log_level).
    #[arg(long, short)]
    pub verbose: bool,
    /// Robot configuration file (default: ./robot_config.json or the platform config dir).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keep a checkpoint under this job id after every node; running again with the same id after
    /// a crash (or a failure, cancel or timeout) resumes from the last completed node.
    #[arg(long, value_name = "ID")]
    pub job_id: Option<String>,
}

/// `validate` arguments.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The workflow file.
    pub workflow: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `validate-config` arguments.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Robot configuration file (default: ./robot_config.json or the platform config dir).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `nodes` arguments.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Print as JSON (type, parameters with defaults, outputs, routes).
    #[arg(long)]
    pub json: bool,
}
