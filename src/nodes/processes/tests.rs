//! Unit tests of the process nodes with child processes the tests start (Linux: a copy of
//! `sleep` under a unique name, so name matching finds only it).

use super::*;

#[test]
fn targets_parse_and_names_compare_without_exe() {
    assert_eq!(parse_target(" 42 ").unwrap(), Target::Pid(42));
    assert_eq!(
        parse_target("notepad.exe").unwrap(),
        Target::Name("notepad.exe".into())
    );
    assert!(parse_target("").is_err());
    assert!(parse_target("99999999999").is_err());
    assert_eq!(bare("Notepad.EXE"), "notepad");
    assert_eq!(bare("notepad"), "notepad");
}

#[test]
fn selection_refuses_protected_and_unlisted_processes() {
    let p = |pid: u32, name: &str| Proc {
        pid,
        ppid: 1,
        name: name.into(),
        status: "sleeping",
        cmdline: None,
        username: None,
        memory_bytes: None,
        create_time: None,
        started: 7,
    };
    let procs = || {
        vec![
            p(10, "robot"),
            p(20, "shell"),
            p(30, "Notepad.exe"),
            p(31, "notepad.exe"),
        ]
    };
    let protected = [10, 20];
    let err = select(&Target::Pid(10), procs(), &protected, &[]).unwrap_err();
    assert_eq!(
        err.message,
        "refused to kill process 10 (robot): it is the robot itself; nothing was killed"
    );
    let err = select(&Target::Name("shell".into()), procs(), &protected, &[]).unwrap_err();
    assert!(
        err.message
            .contains("an ancestor of the robot (1 level(s) up"),
        "{}",
        err.message
    );
    let found = select(&Target::Name("notepad".into()), procs(), &protected, &[]).unwrap();
    assert_eq!(found.iter().map(|p| p.pid).collect::<Vec<_>>(), [30, 31]);
    let err = select(
        &Target::Name("notepad".into()),
        procs(),
        &protected,
        &["calc".to_string()],
    )
    .unwrap_err();
    assert_eq!(err.kind, "PermissionError");
    assert!(err
        .message
        .ends_with("its name is not in process_kill_allowlist (calc); nothing was killed"));
    let found = select(
        &Target::Name("notepad".into()),
        procs(),
        &protected,
        &["NOTEPAD.exe".to_string()],
    )
    .unwrap();
    assert_eq!(found.len(), 2);
    assert!(select(&Target::Pid(99), procs(), &protected, &[])
        .unwrap()
        .is_empty());
}

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use crate::engine::runner::{self, RunOptions};
    use crate::engine::safety::Safety;
    use crate::engine::{load_str, CancelToken};
    use crate::nodes::testing::{chain, ok, one, Ran, Recorder};
    use serde_json::json;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    fn run_opts(opts: &RunOptions, node: &str, config: serde_json::Value) -> Ran {
        let wf = load_str(&chain(&[("n", node, config)])).unwrap();
        let mut rec = Recorder::default();
        let outcome = runner::run(&wf, Default::default(), opts, &CancelToken::new(), &mut rec);
        Ran {
            outcome,
            logs: rec.logs,
            started: rec.started,
        }
    }

    /// A `sleep 30` running under a unique program name, in its own temp dir.
    struct Sleeper {
        child: Child,
        name: String,
        _dir: tempfile::TempDir,
    }

    fn sleeper() -> Sleeper {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("cslp{:08x}", fastrand::u32(..));
        let sleep = crate::engine::safety::resolve_program("sleep", None).unwrap();
        let exe = dir.path().join(&name);
        std::fs::copy(sleep, &exe).unwrap();
        let child = Command::new(&exe).arg("30").spawn().unwrap();
        // The exec has happened once the kernel shows the new name.
        let deadline = Instant::now() + Duration::from_secs(10);
        while table::list().iter().all(|p| p.name != name) {
            assert!(Instant::now() < deadline, "the sleeper never appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
        Sleeper {
            child,
            name,
            _dir: dir,
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn alive(s: &mut Sleeper) -> bool {
        s.child.try_wait().unwrap().is_none()
    }

    #[test]
    fn list_finds_a_child_with_details() {
        let s = sleeper();
        let ran = one(
            "ProcessListNode",
            json!({"filter_name": s.name.to_uppercase()}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "count"), Value::Int(1));
        let procs = ran.out("n", "processes");
        let p = procs.as_list().unwrap()[0].as_dict().unwrap().clone();
        assert_eq!(p["pid"], Value::Int(i64::from(s.child.id())));
        assert_eq!(p["name"], Value::str(&s.name));
        assert_eq!(p["ppid"], Value::Int(i64::from(std::process::id())));
        assert_eq!(p["cmdline"].as_list().unwrap()[1], Value::str("30"));
        assert!(matches!(p["memory_mb"], Value::Float(m) if m > 0.0));
        assert!(p["create_time"].py_str().starts_with("20"));
        assert!(matches!(p["status"].as_str(), Some("sleeping" | "running")));
        let ran = one(
            "ProcessListNode",
            json!({"filter_name": s.name, "include_details": false}),
        );
        let p = ran.out("n", "processes").as_list().unwrap()[0].clone();
        assert_eq!(p.as_dict().unwrap().len(), 2, "{}", p.py_repr());
        let all = one("ProcessListNode", json!({}));
        assert!(matches!(all.out("n", "count"), Value::Int(n) if n > 1));
    }

    #[test]
    fn kill_by_name_and_by_pid() {
        let mut s = sleeper();
        let ran = one("ProcessKillNode", json!({"pid_or_name": s.name}));
        ok(&ran);
        assert_eq!(ran.out("n", "killed_count"), Value::Int(1));
        assert_eq!(ran.out("n", "success"), Value::Bool(true));
        assert!(!alive(&mut s));

        let mut s = sleeper();
        let ran = one(
            "ProcessKillNode",
            json!({"pid_or_name": s.child.id().to_string(), "force": true}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "killed_count"), Value::Int(1));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(s.child.wait().unwrap().signal(), Some(libc::SIGKILL));

        let ran = one(
            "ProcessKillNode",
            json!({"pid_or_name": "no-such-process-here"}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "killed_count"), Value::Int(0));
        assert_eq!(ran.out("n", "success"), Value::Bool(false));
    }

    #[test]
    fn kill_refuses_the_robot_its_parent_and_unlisted_names() {
        let ran = one(
            "ProcessKillNode",
            json!({"pid_or_name": std::process::id().to_string(), "force": true}),
        );
        assert_eq!(
            ran.outcome.error.as_ref().unwrap().error_type,
            "PermissionError"
        );
        assert!(
            ran.error().contains("it is the robot itself"),
            "{}",
            ran.error()
        );
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() };
        let ran = one(
            "ProcessKillNode",
            json!({"pid_or_name": parent.to_string(), "force": true}),
        );
        assert!(
            ran.error().contains("an ancestor of the robot"),
            "{}",
            ran.error()
        );

        let mut s = sleeper();
        let opts = RunOptions {
            safety: Safety {
                process_kill_allowlist: vec!["notepad.exe".into()],
                ..Safety::default()
            },
            ..RunOptions::default()
        };
        let ran = run_opts(&opts, "ProcessKillNode", json!({"pid_or_name": s.name}));
        assert!(
            ran.error()
                .contains("is not in process_kill_allowlist (notepad.exe)"),
            "{}",
            ran.error()
        );
        assert!(alive(&mut s), "a refused kill killed nothing");
        let opts = RunOptions {
            safety: Safety {
                process_kill_allowlist: vec![s.name.clone()],
                ..Safety::default()
            },
            ..RunOptions::default()
        };
        let ran = run_opts(&opts, "ProcessKillNode", json!({"pid_or_name": s.name}));
        ok(&ran);
        assert_eq!(ran.out("n", "killed_count"), Value::Int(1));
        assert!(!alive(&mut s));
    }

    #[test]
    fn kill_that_is_ignored_reports_failure_after_the_timeout() {
        // A shell that ignores SIGTERM survives a polite kill: counted as not killed.
        let dir = tempfile::tempdir().unwrap();
        let name = format!("cign{:08x}", fastrand::u32(..));
        let sh = crate::engine::safety::resolve_program("sh", None).unwrap();
        let exe = dir.path().join(&name);
        std::fs::copy(sh, &exe).unwrap();
        let mut child = Command::new(&exe)
            .args([
                "-c",
                "trap '' TERM; echo ready; while :; do sleep 0.05; done",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        let ran = one(
            "ProcessKillNode",
            json!({"pid_or_name": name, "timeout": 1}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "killed_count"), Value::Int(0));
        assert_eq!(ran.out("n", "success"), Value::Bool(false));
        assert!(child.try_wait().unwrap().is_none());
        let ran = one(
            "ProcessKillNode",
            json!({"pid_or_name": name, "force": true}),
        );
        assert_eq!(ran.out("n", "killed_count"), Value::Int(1));
        let _ = child.wait();
        let ran = one("ProcessKillNode", json!({"pid_or_name": "x", "timeout": 0}));
        assert_eq!(
            ran.error(),
            "n (ProcessKillNode): timeout must be from 1 to 60 seconds, got 0"
        );
    }
}
