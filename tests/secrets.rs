//! The robot's secrets against the real binary: configured keys and URL passwords never reach a
//! log, the status file, `status --json`, audit or the orchestrator, whatever a job puts in its
//! errors; the robot's data files are owner-only; workflows cannot read the robot's credentials
//! from its environment (EnvironmentVariableNode, RunCommand children, `/proc/self/environ`).
//! Every wait has a deadline.

mod support;

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::robot::Robot;
use support::{chain, wait_flag, FakeOrchestrator};

const WAIT: Duration = Duration::from_secs(15);
const API_KEY: &str = "robot-api-key-0123456789abcdef";
const SUPABASE_KEY: &str = "supabase-key-fedcba9876543210";
const URL_PASSWORD: &str = "url-password-77";

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    for secret in [API_KEY, SUPABASE_KEY, URL_PASSWORD] {
        assert!(!text.contains(secret), "{what} holds {secret}:\n{text}");
    }
}

#[test]
fn keys_in_job_errors_are_masked_everywhere_and_data_files_are_owner_only() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let url = fake
        .url()
        .replacen("ws://", &format!("ws://bot:{URL_PASSWORD}@"), 1);
    let robot = Robot::start(json!({
        "orchestrator_url": url,
        "api_key": API_KEY,
        "supabase_key": SUPABASE_KEY,
    }));
    fake.wait_for("register", WAIT)
        .expect("the robot registers");
    let workflow = chain(&[
        ("log", "LogNode", json!({"message": "using {{k1}}"})),
        (
            "boom",
            "ThrowErrorNode",
            json!({"error_message": "failed with {{k1}} and {{k2}}\nERROR forged line"}),
        ),
    ]);
    fake.assign_job(
        "job-sec",
        workflow,
        json!({"k1": API_KEY, "k2": SUPABASE_KEY}),
        None,
    );
    let failed = fake
        .wait_until(WAIT, |m| {
            m["job_id"] == "job-sec" && m["type"] == "job_failed"
        })
        .expect("job_failed");
    assert!(
        failed.to_string().contains("failed with *** and ***"),
        "{failed}"
    );
    let status_file = robot.data_dir().join("status.json");
    assert!(
        wait_flag(WAIT, || std::fs::read_to_string(&status_file)
            .is_ok_and(|s| s.contains("failed with"))),
        "the status file shows the error: {:?}",
        std::fs::read_to_string(&status_file)
    );
    let log_file = robot.dir().join("logs").join("casare-robot.log");
    assert!(
        wait_flag(WAIT, || std::fs::read_to_string(&log_file)
            .is_ok_and(|s| s.contains("failed with ***"))),
        "the log shows the masked error:\n{}",
        std::fs::read_to_string(&log_file).unwrap_or_default()
    );

    // Everything the robot wrote or sent, except its own config and store.
    for message in fake.received() {
        assert_clean("a message to the orchestrator", &message.to_string());
    }
    assert_clean("the robot's output", &robot.output());
    for path in files_under(robot.dir()) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "robot_config.json" || name.starts_with("casare-robot.db") {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert_clean(&path.display().to_string(), &text);
    }
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        log.contains(&format!("ws://bot:****@127.0.0.1:{}", fake.port())),
        "the URL is logged with its password masked:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("ERROR forged line")),
        "a newline in an error cannot forge a log line:\n{log}"
    );
    assert!(log.contains("\\nERROR forged line"), "{log}");
    let status = Command::new(env!("CARGO_BIN_EXE_casare-robot"))
        .args(["status", "--json", "--config"])
        .arg(robot.dir().join("robot_config.json"))
        .env_clear()
        .env("HOME", robot.dir())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(shown.contains("failed with"), "{shown}");
    assert_clean("status --json", &shown);
    let validated = Command::new(env!("CARGO_BIN_EXE_casare-robot"))
        .args(["validate-config", "--config"])
        .arg(robot.dir().join("robot_config.json"))
        .env_clear()
        .env("HOME", robot.dir())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&validated.stdout).into_owned()
        + &String::from_utf8_lossy(&validated.stderr);
    assert!(shown.contains("ws://bot:****@127.0.0.1"), "{shown}");
    assert_clean("validate-config", &shown);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for dir in [robot.data_dir(), robot.dir().join("logs")] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
            for file in files_under(&dir) {
                assert_eq!(mode(&file), 0o600, "{}", file.display());
            }
        }
        assert!(
            files_under(&robot.data_dir())
                .iter()
                .any(|f| f.ends_with("casare-robot.db")),
            "the store is among the checked files"
        );
    }
}

/// `casare-robot run` of `workflow` with the keys in the environment; the result JSON.
fn run_with_keys(dir: &Path, workflow: &Value) -> (Value, String) {
    let wf = dir.join("wf.json");
    std::fs::write(&wf, workflow.to_string()).unwrap();
    let config = dir.join("robot_config.json");
    std::fs::write(
        &config,
        json!({"data_dir": dir.join("data"), "log_dir": dir.join("logs")}).to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_casare-robot"))
        .arg("run")
        .arg(&wf)
        .arg("--json")
        .arg("--config")
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("CASARE_API_KEY", API_KEY)
        .env("SUPABASE_KEY", SUPABASE_KEY)
        .env("MY_COPY_OF_THE_KEY", format!("Bearer {API_KEY}"))
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let result: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {stdout}\nstderr {stderr}"));
    (result, stderr)
}

#[test]
fn workflows_cannot_read_the_robots_credentials_from_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let get = |id: &str, name: &str| {
        (
            id.to_string(),
            "EnvironmentVariableNode",
            json!({"action": "get", "var_name": name}),
        )
    };
    let nodes = [
        get("api", "CASARE_API_KEY"),
        get("supa", "SUPABASE_KEY"),
        get("copy", "MY_COPY_OF_THE_KEY"),
        get("home", "HOME"),
    ];
    #[allow(unused_mut)] // only Unix adds the child process
    let mut steps: Vec<(&str, &str, Value)> = nodes
        .iter()
        .map(|(id, ty, c)| (id.as_str(), *ty, c.clone()))
        .collect();
    #[cfg(unix)]
    steps.push((
        "child",
        "RunCommandNode",
        json!({"command": ["sh", "-c", "env; echo \"[$CASARE_API_KEY]\""]}),
    ));
    let (result, stderr) = run_with_keys(dir.path(), &chain(&steps));
    assert_eq!(result["success"], true, "{result}\n{stderr}");
    let outputs = &result["node_outputs"];
    for id in ["api", "supa", "copy"] {
        assert_eq!(outputs[id]["exists"], false, "{id}: {result}");
        assert_eq!(outputs[id]["result_value"], "", "{id}: {result}");
    }
    assert_eq!(
        outputs["home"]["exists"], true,
        "ordinary variables stay visible"
    );
    #[cfg(unix)]
    {
        let child = outputs["child"]["stdout"].as_str().unwrap();
        assert!(child.contains("HOME="), "{child}");
        assert!(child.contains("[]"), "{child}");
        assert!(
            !child.contains("SUPABASE_KEY") && !child.contains("MY_COPY"),
            "{child}"
        );
    }
    assert_clean("the run's result", &result.to_string());

    #[cfg(target_os = "linux")]
    for path in ["/proc/self/environ", "/proc/thread-self/environ"] {
        let wf = chain(&[("read", "ReadFileNode", json!({"file_path": path}))]);
        let (result, stderr) = run_with_keys(dir.path(), &wf);
        assert_eq!(result["success"], false, "{result}");
        let error = result["error"].to_string();
        assert!(
            error.contains("refused path") && !error.contains("no such file"),
            "{path}: {error}\n{stderr}"
        );
        assert_clean("the run's result", &result.to_string());
    }
}

#[test]
fn huge_ids_and_messages_and_line_breaks_cannot_flood_or_forge_the_log() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = Robot::start(json!({"orchestrator_url": fake.url()}));
    fake.wait_for("register", WAIT)
        .expect("the robot registers");
    let huge_id = "j".repeat(1_000_000);
    fake.assign_job(&huge_id, chain(&[]), json!({}), None);
    fake.send(json!({"type": "error", "error_message": format!("x{}", "e".repeat(1_100_000))}));
    let forged = "job-nl\nERROR forged by a job id";
    fake.assign_job(
        forged,
        chain(&[(
            "log",
            "LogNode",
            json!({"message": "one\nERROR forged by a job"}),
        )]),
        json!({}),
        None,
    );
    fake.wait_until(WAIT, |m| {
        m["job_id"] == forged && m["type"] == "job_complete"
    })
    .expect("the job with a line break in its id still runs");
    robot.wait_for_output("at most 256 are allowed", WAIT);
    robot.wait_for_output("more characters]", WAIT);
    let log_file = robot.dir().join("logs").join("casare-robot.log");
    assert!(
        wait_flag(WAIT, || std::fs::read_to_string(&log_file)
            .is_ok_and(|s| s.contains("job-nl\\nERROR forged by a job id"))),
        "the id is logged escaped:\n{}",
        std::fs::read_to_string(&log_file).unwrap_or_default()
    );
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        log.contains("job_assign message has an invalid \"job_id\": it is 1000000 characters long; at most 256 are allowed"),
        "{log}"
    );
    for line in log.lines() {
        assert!(line.len() < 9 * 1024, "a line of {} bytes", line.len());
        assert!(!line.starts_with("ERROR forged"), "a forged line:\n{log}");
    }
    assert!(
        !fake
            .received()
            .iter()
            .any(|m| m.to_string().contains(&huge_id)),
        "the huge id is never echoed"
    );
}
