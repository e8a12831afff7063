//! Integration tests of the fake orchestrator (`tests/support`) with a tiny tungstenite client,
//! and of the wire protocol over a real socket: what the fake sends parses with `parse_inbound`,
//! what `encode` produces is what the fake records.

mod support;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use casare_robot::link::protocol::{
    encode, parse_inbound, ws_url, Dialect, HeartbeatInfo, Inbound, Outbound,
};
use serde_json::{json, Value};
use support::FakeOrchestrator;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

const WAIT: Duration = Duration::from_secs(5);

type Client = WebSocket<TcpStream>;

/// Connects like the robot does: URL from `ws_url`, `X-Api-Key` header when a key is given.
fn connect(
    fake: &FakeOrchestrator,
    robot_id: &str,
    api_key: Option<&str>,
) -> Result<Client, tungstenite::Error> {
    let url = ws_url(&fake.url(), robot_id, api_key).expect("valid url");
    let mut request = url.as_str().into_client_request()?;
    if let Some(key) = api_key {
        request
            .headers_mut()
            .insert("X-Api-Key", key.parse().expect("header value"));
    }
    let stream = TcpStream::connect(("127.0.0.1", fake.port()))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(WAIT))?;
    let (ws, _) = tungstenite::client(request, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => {
            tungstenite::Error::Io(ErrorKind::TimedOut.into())
        }
    })?;
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(ws)
}

fn send(ws: &mut Client, value: Value) {
    ws.send(Message::text(value.to_string())).expect("send");
}

/// What the next frame from the fake was, within `within`.
#[derive(Debug)]
enum Got {
    Json(Value),
    Text(String),
    Close(Option<u16>),
    Nothing,
    Gone,
}

fn next(ws: &mut Client, within: Duration) -> Got {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => {
                return match serde_json::from_str(t.as_str()) {
                    Ok(v) => Got::Json(v),
                    Err(_) => Got::Text(t.to_string()),
                }
            }
            Ok(Message::Close(frame)) => return Got::Close(frame.map(|f| u16::from(f.code))),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Got::Gone,
        }
    }
    Got::Nothing
}

fn next_json(ws: &mut Client) -> Value {
    match next(ws, WAIT) {
        Got::Json(v) => v,
        other => panic!("expected a json frame, got {other:?}"),
    }
}

fn register(ws: &mut Client) {
    send(
        ws,
        json!({"type": "register", "robot_id": "r-1", "robot_name": "R", "capabilities": {}, "environment": "default"}),
    );
}

#[test]
fn register_heartbeat_and_handshake_record() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    assert_eq!(fake.url(), format!("ws://127.0.0.1:{}", fake.port()));
    let mut ws = connect(&fake, "r-1", Some("crpa_key/1")).expect("connect");
    assert!(fake.wait_connections(1, WAIT));
    assert_eq!(fake.last_request_path().as_deref(), Some("/ws/robot/r-1"));
    assert_eq!(fake.last_query().as_deref(), Some("api_key=crpa_key%2F1"));
    assert_eq!(fake.last_api_key().as_deref(), Some("crpa_key/1"));

    register(&mut ws);
    let ack = next_json(&mut ws);
    assert_eq!(ack["type"], "register_ack");
    assert_eq!(ack["robot_id"], "r-1");
    assert!(
        ack.get("success").is_none(),
        "the real server sends no success field"
    );
    assert_eq!(
        parse_inbound(&ack.to_string()),
        Ok(Inbound::RegisterAck {
            success: true,
            message: None
        })
    );
    assert_eq!(fake.wait_for("register", WAIT).unwrap()["robot_id"], "r-1");

    // The robot's own encoder, over the wire.
    ws.send(Message::text(encode(
        &Outbound::Heartbeat(HeartbeatInfo::default()),
        Dialect::Casare,
        "r-1",
    )))
    .unwrap();
    assert_eq!(next_json(&mut ws)["type"], "heartbeat_ack");
    let hb = fake.recv(WAIT).expect("heartbeat recorded");
    assert_eq!(hb["type"], "heartbeat");
    assert_eq!(hb["status"], "idle");

    // Like the real server: no answer to pong or status_response, and none to unknown types.
    send(&mut ws, json!({"type": "pong"}));
    send(
        &mut ws,
        json!({"type": "status_response", "robot_id": "r-1"}),
    );
    ws.send(Message::text("not json")).unwrap();
    assert!(matches!(
        next(&mut ws, Duration::from_millis(200)),
        Got::Nothing
    ));
    assert!(fake.wait_for("_invalid_json", WAIT).is_some());
    let types: Vec<String> = fake
        .received()
        .iter()
        .map(|v| v["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        types,
        [
            "register",
            "heartbeat",
            "pong",
            "status_response",
            "_invalid_json"
        ]
    );
}

#[test]
fn reply_switch_off_means_silence_after_register() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    fake.reply_to_register(false);
    let mut ws = connect(&fake, "r-1", None).unwrap();
    register(&mut ws);
    assert!(fake.wait_for("register", WAIT).is_some());
    assert!(matches!(
        next(&mut ws, Duration::from_millis(200)),
        Got::Nothing
    ));
    assert_eq!(fake.last_query(), None);
    assert_eq!(fake.last_api_key(), None);
}

#[test]
fn assignments_use_the_dialect_names_and_parse() {
    let workflow = json!({"metadata": {"name": "hello"}, "nodes": {}, "connections": []});
    for (dialect, msg_type, field) in [
        (Dialect::Casare, "job_assign", "workflow_data"),
        (Dialect::Reference, "job_assignment", "workflow"),
    ] {
        let fake = FakeOrchestrator::start(dialect);
        let mut ws = connect(&fake, "r-1", None).unwrap();
        register(&mut ws);
        next_json(&mut ws);
        assert_eq!(
            fake.assign_job("j-1", workflow.clone(), json!({"x": 1}), Some(30.0)),
            1
        );
        let msg = next_json(&mut ws);
        assert_eq!(msg["type"], msg_type);
        assert_eq!(msg[field], workflow);
        let Ok(Inbound::JobAssign(job)) = parse_inbound(&msg.to_string()) else {
            panic!("{msg}")
        };
        assert_eq!(job.job_id, "j-1");
        assert_eq!(job.workflow, workflow);
        assert_eq!(job.variables.get("x"), Some(&json!(1)));
        assert_eq!(job.timeout, Some(30.0));

        fake.cancel_job("j-1", "user");
        let cancel = parse_inbound(&next_json(&mut ws).to_string());
        assert_eq!(
            cancel,
            Ok(Inbound::JobCancel {
                job_id: "j-1".into(),
                reason: Some("user".into())
            })
        );
        fake.shutdown_robot(true);
        assert_eq!(
            parse_inbound(&next_json(&mut ws).to_string()),
            Ok(Inbound::Shutdown { graceful: true })
        );
        fake.send_raw_text("{garbage");
        assert!(matches!(next(&mut ws, WAIT), Got::Text(t) if t == "{garbage"));

        // The status_update of the reference dialect is acknowledged like a heartbeat.
        ws.send(Message::text(encode(
            &Outbound::Heartbeat(HeartbeatInfo::default()),
            dialect,
            "r-1",
        )))
        .unwrap();
        assert_eq!(next_json(&mut ws)["type"], "heartbeat_ack");
    }
}

#[test]
fn refused_handshakes_are_counted() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    fake.refuse_handshake_with(Some(403));
    for _ in 0..3 {
        match connect(&fake, "r-1", Some("bad")) {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 403),
            Err(e) => panic!("expected HTTP 403, got {e}"),
            Ok(_) => panic!("expected HTTP 403, got a connection"),
        }
    }
    assert_eq!(fake.handshake_attempts(), 3);
    assert_eq!(fake.connections(), 0);
    assert_eq!(fake.last_api_key().as_deref(), Some("bad"));

    fake.refuse_handshake_with(None);
    let _ws = connect(&fake, "r-1", Some("good")).expect("accepted again");
    assert_eq!(fake.handshake_attempts(), 4);
    assert!(fake.wait_connections(1, WAIT));
}

#[test]
fn close_with_an_auth_code() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut ws = connect(&fake, "r-1", None).unwrap();
    assert!(fake.wait_connections(1, WAIT));
    assert_eq!(fake.close_with(4003), 1);
    assert!(matches!(next(&mut ws, WAIT), Got::Close(Some(4003))));
    // Completing the close handshake ends the connection on both sides.
    assert!(matches!(next(&mut ws, WAIT), Got::Gone));
    assert!(support::wait_flag(WAIT, || fake.open_connections() == 0));
}

#[test]
fn silent_peer_keeps_the_socket_open_but_says_nothing() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut ws = connect(&fake, "r-1", None).unwrap();
    register(&mut ws);
    assert_eq!(next_json(&mut ws)["type"], "register_ack");
    fake.go_silent();
    let n_before = fake.received().len();
    send(&mut ws, json!({"type": "heartbeat", "robot_id": "r-1"}));
    // No ack, no close, no EOF: a half-open peer.
    assert!(matches!(
        next(&mut ws, Duration::from_millis(300)),
        Got::Nothing
    ));
    assert_eq!(
        fake.received().len(),
        n_before,
        "a silent peer reads nothing"
    );
    assert_eq!(
        fake.send(json!({"type": "ping"})),
        1,
        "still counted as open"
    );
    assert!(matches!(
        next(&mut ws, Duration::from_millis(200)),
        Got::Nothing
    ));

    // A new connection is served normally.
    let mut ws2 = connect(&fake, "r-1", None).unwrap();
    register(&mut ws2);
    assert_eq!(next_json(&mut ws2)["type"], "register_ack");
}

#[test]
fn kill_and_restart_on_the_same_port() {
    let mut fake = FakeOrchestrator::start(Dialect::Casare);
    let port = fake.port();
    let mut ws = connect(&fake, "r-1", None).unwrap();
    register(&mut ws);
    next_json(&mut ws);

    fake.kill();
    assert!(
        matches!(next(&mut ws, WAIT), Got::Gone),
        "the robot's socket breaks"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens after kill"
    );
    assert_eq!(fake.send(json!({"type": "ping"})), 0);

    fake.restart();
    assert_eq!(fake.port(), port);
    let mut ws = connect(&fake, "r-1", None).expect("reconnect after restart");
    register(&mut ws);
    assert_eq!(next_json(&mut ws)["type"], "register_ack");
    assert_eq!(fake.connections(), 2);
    assert_eq!(
        fake.received()
            .iter()
            .filter(|v| v["type"] == "register")
            .count(),
        2
    );
}

#[test]
fn waits_give_up_at_their_deadline() {
    let fake = FakeOrchestrator::start(Dialect::Reference);
    let t0 = Instant::now();
    assert!(fake.recv(Duration::from_millis(50)).is_none());
    assert!(fake
        .wait_for("register", Duration::from_millis(50))
        .is_none());
    assert!(!fake.wait_connections(1, Duration::from_millis(50)));
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(fake.dialect(), Dialect::Reference);
}
