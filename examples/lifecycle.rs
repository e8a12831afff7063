//! One robot lifetime against a local orchestrator stand-in, for smoke tests of any build of the
//! robot (`tools/wine-smoke.sh` runs the Windows build under Wine with it): start the robot, wait
//! for `register`, run `examples/hello.json` as a job, send `shutdown`, and check that the robot
//! exits by itself with code 0.
//!
//! Usage: `cargo run --release --example lifecycle -- [--env] [--hold SECS] [ROBOT ARGS...]`
//!
//! The robot is `$CASARE_ROBOT_BIN` (default `target/release/casare-robot`). Its configuration is
//! written to a temporary `robot_config.json` and `{config}` in ROBOT ARGS is replaced by its
//! path; with `--env` no file is written and the same settings go in `CASARE_*` environment
//! variables instead (for a robot started without arguments). `--hold` keeps the robot running
//! that long after the job, before `shutdown`. Without ROBOT ARGS the robot runs
//! `start --foreground --config {config}`. Its output goes to a file, printed on failure; the
//! end of its log file is printed in any case.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use support::FakeOrchestrator;

/// Launch to `register` (Wine starts slowly the first time).
const REGISTER_DEADLINE: Duration = Duration::from_secs(90);
/// Assignment to result.
const JOB_DEADLINE: Duration = Duration::from_secs(60);
/// `shutdown` to process exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("lifecycle: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lifecycle: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var_os("CASARE_ROBOT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| manifest.join("target/release/casare-robot"));
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut in_env = false;
    let mut hold = Duration::ZERO;
    loop {
        match args.first().map(String::as_str) {
            Some("--env") => {
                in_env = true;
                args.remove(0);
            }
            Some("--hold") if args.len() >= 2 => {
                let secs: f64 = args[1]
                    .parse()
                    .map_err(|_| format!("--hold {}: expected seconds", args[1]))?;
                hold = Duration::from_secs_f64(secs);
                args.drain(..2);
            }
            _ => break,
        }
    }
    if !in_env && args.is_empty() {
        args = ["start", "--foreground", "--config", "{config}"]
            .map(String::from)
            .to_vec();
    }

    let fake = FakeOrchestrator::start(Dialect::Casare);
    let dir = tempfile::Builder::new()
        .prefix("casare-robot-lifecycle-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let settings = [
        ("robot_id", json!("lifecycle-robot")),
        ("robot_name", json!("Lifecycle Robot")),
        ("orchestrator_url", json!(fake.url())),
        ("data_dir", json!(dir.path().join("data"))),
        ("log_dir", json!(dir.path().join("logs"))),
        ("graceful_shutdown_seconds", json!(5)),
    ];
    let config_path = dir.path().join("robot_config.json");
    let mut cmd = Command::new(&bin);
    if in_env {
        for (key, value) in &settings {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            cmd.env(format!("CASARE_{}", key.to_uppercase()), text);
        }
    } else {
        let config: serde_json::Map<String, Value> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
        std::fs::write(&config_path, text)
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    }
    let config_arg = config_path.to_string_lossy();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{config}", &config_arg))
        .collect();
    let log_path = dir.path().join("robot-output.log");
    let out = File::create(&log_path).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    println!("orchestrator stand-in on {}", fake.url());
    println!(
        "starting {} {}{}",
        bin.display(),
        args.join(" "),
        if in_env {
            " (configured by CASARE_* variables)"
        } else {
            ""
        }
    );
    let launched = Instant::now();
    let mut child = cmd
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let outcome = drive(&fake, &mut child, manifest, launched).and_then(|()| {
        if !hold.is_zero() {
            println!("keeping the robot running for {} s", hold.as_secs_f64());
            std::thread::sleep(hold);
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the robot exited early ({status})"));
            }
        }
        Ok(())
    });
    let outcome = outcome.and_then(|()| stop(&fake, &mut child));
    if outcome.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        print_tail(&log_path, "robot output");
    }
    print_tail(
        &dir.path()
            .join("logs")
            .join(casare_robot::logging::LOG_FILE_NAME),
        "robot log",
    );
    outcome
}

fn drive(
    fake: &FakeOrchestrator,
    child: &mut Child,
    manifest: &Path,
    launched: Instant,
) -> Result<(), String> {
    fake.wait_while_alive(child, REGISTER_DEADLINE, |m| m["type"] == "register")?
        .ok_or("the robot did not register")?;
    println!("registered after {} ms", launched.elapsed().as_millis());
    let path = manifest.join("examples/hello.json");
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let workflow: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    fake.assign_job("lifecycle-hello", workflow, json!({}), Some(30.0));
    let end = fake
        .wait_while_alive(child, JOB_DEADLINE, |m| {
            m["job_id"] == "lifecycle-hello"
                && ["job_complete", "job_failed", "job_reject", "job_cancelled"]
                    .contains(&m["type"].as_str().unwrap_or(""))
        })?
        .ok_or("no result for the job")?;
    println!("job lifecycle-hello: {}", end["type"]);
    if end["type"] != "job_complete" {
        return Err(format!("the job did not complete: {end}"));
    }
    Ok(())
}

fn stop(fake: &FakeOrchestrator, child: &mut Child) -> Result<(), String> {
    println!("-> shutdown (graceful)");
    let status = fake.shutdown_and_wait(child, EXIT_DEADLINE)?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the robot exited with {status}"))
    }
}

fn print_tail(path: &Path, what: &str) {
    let Ok(text) = std::fs::read_to_string(path) else {
        println!("--- no {what} at {} ---", path.display());
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    println!("--- last lines of the {what} ({}) ---", path.display());
    for line in &lines[lines.len().saturating_sub(30)..] {
        println!("{line}");
    }
}
