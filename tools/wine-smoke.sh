#!/usr/bin/env bash
# Smoke test of the Windows build under Wine. Run by hand (not in CI); needs
# ../shared/tools/wine/setup.sh once per machine. Steps:
#   1. cross-build the release .exe (x86_64-pc-windows-gnu)
#   2. --version
#   3. run examples/hello.json
#   4. the daemon (start --foreground) against the fake orchestrator: examples/demo.rs
#   5. tray mode under a virtual display: start --tray --config FILE, one job, `shutdown` from
#      the orchestrator, a clean exit with code 0 (examples/lifecycle.rs)
#   6. tray mode started with no arguments (configured by CASARE_* variables), same checks
#   7. a killed robot takes its RunCommand children with it (the job object's kill-on-close),
#      and, as a control, a child of a killed cmd.exe (no job object) survives under Wine
#   8. the end of the Windows session (wineboot --end-session) stops the robot in order, in
#      console and in tray mode
# Uses its own Wine prefix ($WINEPREFIX, default ~/.wine-casare-smoke) and stops that prefix's
# wineserver at the end. Honours CARGO_TARGET_DIR. Exit code: 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
wine_tools=${WINE_TOOLS:-$root/../shared/tools/wine}
target_dir=${CARGO_TARGET_DIR:-$root/target}
exe=$target_dir/x86_64-pc-windows-gnu/release/casare-robot.exe
export WINEPREFIX=${WINEPREFIX:-$HOME/.wine-casare-smoke}
export WINEDEBUG=${WINEDEBUG:--all}
# Windows always has a desktop; without one Wine cannot create the robot's windows (the tray,
# the session-end watcher). run.sh then starts each program under xvfb-run.
export WINE_XVFB=1
work=$(mktemp -d /tmp/casare-wine-smoke.XXXXXX)
passed=0
failed=0
failures=()

cleanup() {
  wineserver -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
ok() { echo "PASS: $1"; passed=$((passed + 1)); }
ko() { echo "FAIL: $1"; failed=$((failed + 1)); failures+=("$1"); }
fresh_wine() { # a new wineserver for this prefix: a desktop made without a display (step 7)
  # would make later windows fail
  wineserver -k 2>/dev/null || true
  wineserver -w 2>/dev/null || true
}
check() { # check NAME COMMAND...: runs the command, passes when it exits 0
  local name=$1; shift
  if "$@"; then ok "$name"; else ko "$name (exit $?)"; fi
}

step "1. cross-build (cargo build --release --target x86_64-pc-windows-gnu)"
if ! cargo build --release --target x86_64-pc-windows-gnu; then
  ko "cross-build"
  exit 1
fi
ok "cross-build"
ls -l "$exe"

# A wrapper the Rust drivers start as "the robot".
cat >"$work/robot.sh" <<EOF
#!/usr/bin/env bash
exec "$wine_tools/run.sh" "$exe" "\$@"
EOF
chmod +x "$work/robot.sh"

step "2. --version"
check "--version" "$work/robot.sh" --version

step "3. run examples/hello.json"
check "run examples/hello.json" "$work/robot.sh" run examples/hello.json --var name=Wine

step "4. daemon against the fake orchestrator (cargo run --release --example demo)"
check "daemon demo" env CASARE_ROBOT_BIN="$work/robot.sh" cargo run -q --release --example demo

step "5. tray mode: start --tray --config FILE (virtual display)"
fresh_wine
check "tray mode (start --tray)" env CASARE_ROBOT_BIN="$work/robot.sh" \
  cargo run -q --release --example lifecycle -- --hold 5 start --tray --config '{config}'

step "6. tray mode: no arguments, configured by the environment (virtual display)"
fresh_wine
check "tray mode (no arguments)" env CASARE_ROBOT_BIN="$work/robot.sh" \
  cargo run -q --release --example lifecycle -- --env --hold 5

step "7. a killed robot takes its RunCommand children with it"
fresh_wine
# No virtual display here: the robots must be the very processes killed and watched.
winexe=$(winepath -w "$exe" 2>/dev/null)
child_wf=$work/child-wait.json
parent_wf=$work/parent-runs-child.json
child_pattern='^Z:.*casare-robot\.exe run .*child-wait\.json'
cat >"$child_wf" <<'EOF'
{"metadata": {"name": "child: wait 120 s"},
 "nodes": {"w": {"node_id": "w", "node_type": "WaitNode", "config": {"duration": 120}}},
 "connections": []}
EOF
python3 - "$winexe" "$(winepath -w "$child_wf")" "$parent_wf" <<'EOF'
import json, sys
exe, child, out = sys.argv[1:4]
wf = {"metadata": {"name": "parent: run a child robot that waits"},
      "nodes": {"cmd": {"node_id": "cmd", "node_type": "RunCommandNode",
                        "config": {"command": [exe, "run", child, "--quiet"], "timeout": 300}}},
      "connections": []}
json.dump(wf, open(out, "w"))
EOF
wait_for_pid() { # wait_for_pid PATTERN: prints the first pid whose command line matches
  local pid=""
  for _ in $(seq 1 120); do
    pid=$(pgrep -f "$1" | head -1)
    [ -n "$pid" ] && break
    sleep 0.5
  done
  echo "$pid"
}
gone_within() { # gone_within SECONDS PID: true when the process ends in time
  for _ in $(seq 1 $(($1 * 4))); do
    kill -0 "$2" 2>/dev/null || return 0
    sleep 0.25
  done
  return 1
}
WINE_XVFB=0 "$wine_tools/run.sh" "$exe" run "$parent_wf" --quiet >"$work/parent.out" 2>&1 &
child=$(wait_for_pid "$child_pattern")
parent=$(pgrep -f 'casare-robot\.exe run .*parent-runs-child\.json' | head -1)
if [ -z "$child" ] || [ -z "$parent" ]; then
  ko "job object (the child robot did not appear)"
  cat "$work/parent.out"
else
  echo "parent robot pid $parent; its RunCommand child (another robot, waiting 120 s) pid $child"
  echo "kill -9 $parent"
  kill -9 "$parent"
  if gone_within 10 "$child"; then
    ok "job object (the child died with the killed robot)"
  else
    ko "job object (the child is still alive 10 s after the robot was killed)"
    kill -9 "$child" 2>/dev/null
  fi
fi
wait 2>/dev/null

echo "control: the same child started by cmd.exe (no job object), then cmd.exe killed"
( wine cmd /c "$winexe run $(winepath -w "$child_wf") --quiet" >"$work/control.out" 2>&1 & )
child=$(wait_for_pid "$child_pattern")
parent=$(pgrep -f 'cmd\.exe /c .*child-wait\.json' | head -1)
if [ -z "$child" ] || [ -z "$parent" ]; then
  ko "control (the child did not appear)"
else
  echo "cmd.exe pid $parent; its child pid $child"
  echo "kill -9 $parent"
  kill -9 "$parent"
  if gone_within 5 "$child"; then
    ko "control (the child died without a job object: the check above proves nothing here)"
  else
    ok "control (without a job object the child outlives its killed parent)"
    kill -9 "$child" 2>/dev/null
  fi
fi

step "8. the end of the Windows session stops the robot in order (wineboot --end-session)"
# WM_QUERYENDSESSION/WM_ENDSESSION reach the robot's hidden session window; the robot must stop
# in order (its log says why) and exit with 0. An unreachable orchestrator keeps it idle.
for mode in "start --foreground" "start --tray"; do
  fresh_wine
  dir=$work/end-session-${mode##* --}
  mkdir -p "$dir"
  printf '{"robot_id": "end-session-robot", "orchestrator_url": "ws://127.0.0.1:9", "data_dir": "%s", "log_dir": "%s"}\n' \
    "$dir/data" "$dir/logs" >"$dir/robot_config.json"
  timeout 120 xvfb-run -a bash -c "wine '$exe' $mode --config '$dir/robot_config.json' >'$dir/out.txt' 2>&1 & robot=\$!
    sleep 8; wineboot --end-session
    for _ in \$(seq 1 60); do kill -0 \$robot 2>/dev/null || break; sleep 0.5; done
    if kill -0 \$robot 2>/dev/null; then echo 'still running' >'$dir/rc'; kill \$robot
    else wait \$robot; echo \$? >'$dir/rc'; fi" >/dev/null 2>&1
  rc=$(cat "$dir/rc" 2>/dev/null || echo none)
  log=$dir/logs/casare-robot.log
  if [ "$rc" = 0 ] && grep -q "Windows logoff or shutdown: stopping the robot now" "$log" &&
    grep -q "robot stopped" "$log"; then
    ok "session end ($mode)"
    grep -E "logoff or shutdown|robot stopped" "$log"
  else
    ko "session end ($mode): exit code $rc"
    tail -5 "$log" "$dir/out.txt" 2>/dev/null
  fi
done

printf '\n== summary: %d passed, %d failed\n' "$passed" "$failed"
for f in "${failures[@]}"; do echo "  failed: $f"; done
[ "$failed" -eq 0 ]
