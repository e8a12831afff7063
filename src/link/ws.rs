//! The WebSocket I/O thread: the one owner of the orchestrator socket.
//!
//! tungstenite cannot split a socket between a reader and a writer, so this thread does both. Idle,
//! it reads with a 200 ms timeout (five wake-ups a second: no measurable CPU) and drains the
//! outbound command channel between reads. While traffic flows (the last two seconds), the socket
//! is non-blocking and the thread waits on the command channel for up to 1 ms between polls: a
//! queued message goes out at once, an inbound frame is read within a millisecond. (Socket read
//! timeouts are rounded to scheduler ticks, 4-16 ms, so they alone cannot give that latency.) A
//! timeout surfacing as `TimedOut` (Windows) is treated like `WouldBlock`. Every socket gets `TCP_NODELAY`
//! and a write timeout; the whole handshake has one deadline (`connect_timeout`), so a peer that
//! trickles its answer cannot hold the link in `connecting`. Keepalive: a WebSocket ping every `ping_every`; a connection with no inbound
//! frame for `silence_limit` is dead (half-open TCP) and is dropped.
//!
//! The agent drives it with [`WsCommand`]s and hears [`WsEvent`]s; after a close the thread waits
//! for the next `Connect`.

use crate::resilience::outq::Kind;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Connection settings.
#[derive(Clone, Debug)]
pub struct WsSettings {
    /// TCP connect timeout, and the deadline of the whole handshake (TLS and HTTP upgrade).
    pub connect_timeout: Duration,
    /// Interval between WebSocket pings.
    pub ping_every: Duration,
    /// A connection with no inbound frame for this long is dead.
    pub silence_limit: Duration,
    /// Write timeout (a stalled peer cannot block the thread longer).
    pub write_timeout: Duration,
}

impl Default for WsSettings {
    fn default() -> WsSettings {
        WsSettings {
            connect_timeout: Duration::from_secs(10),
            ping_every: Duration::from_secs(30),
            silence_limit: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// A text frame to send, with what its sender needs to queue it again if it cannot be sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// The frame's text.
    pub text: String,
    /// What kind of message it is (for the offline queue's drop and coalescing rules).
    pub kind: Kind,
    /// The job it belongs to, if any.
    pub job_id: Option<String>,
}

/// What the agent asks of the I/O thread.
#[derive(Debug)]
pub enum WsCommand {
    /// Connect to `url` (with the API key header when set).
    Connect {
        /// Full `ws://`/`wss://` URL.
        url: String,
        /// Sent as `X-Api-Key`.
        api_key: Option<String>,
    },
    /// Send a text frame (handed back with [`WsEvent::SendFailed`] when it cannot be sent).
    Send(Frame),
    /// Close the connection (close handshake with a deadline).
    Close,
    /// Close and end the thread.
    Stop,
}

/// What the I/O thread reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// The handshake succeeded.
    Connected,
    /// Connecting failed.
    ConnectFailed {
        /// Why.
        error: String,
        /// The server refused our credentials (HTTP 401/403).
        auth: bool,
    },
    /// A text frame arrived.
    Frame(String),
    /// The connection ended.
    Closed {
        /// The peer's close code, if it sent one.
        code: Option<u16>,
        /// Why.
        reason: String,
    },
    /// A `Send` could not be written (not connected or the write failed); the frame is returned
    /// so the agent can queue it again.
    SendFailed(Frame),
}

impl WsEvent {
    /// True for close codes meaning "unauthorized" (4001, 4003).
    pub fn is_auth_close(&self) -> bool {
        matches!(
            self,
            WsEvent::Closed {
                code: Some(4001 | 4003),
                ..
            }
        )
    }
}

/// Handle of the I/O thread: command sender first, join handle last (drop order).
pub struct WsHandle {
    commands: Sender<WsCommand>,
    join: Option<JoinHandle<()>>,
}

impl WsHandle {
    /// Start the thread; events are wrapped by `wrap` into the agent's event type.
    pub fn start<E: Send + 'static>(
        settings: WsSettings,
        events: Sender<E>,
        wrap: fn(WsEvent) -> E,
    ) -> std::io::Result<WsHandle> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let join = std::thread::Builder::new()
            .name("ws-io".into())
            .spawn(move || {
                WsActor {
                    settings,
                    commands: rx,
                    emit: Box::new(move |ev| events.send(wrap(ev)).is_ok()),
                }
                .run()
            })?;
        Ok(WsHandle {
            commands: tx,
            join: Some(join),
        })
    }

    /// Send a command (false when the thread has ended).
    pub fn send(&self, cmd: WsCommand) -> bool {
        self.commands.send(cmd).is_ok()
    }

    /// Stop the thread and wait for it, at most [`STOP_WAIT`]. A thread stuck in a blocking
    /// connect or handshake (a peer that accepts TCP and never answers) is left behind: the
    /// process is exiting, and shutdown must not wait out a 10 s handshake timeout.
    pub fn stop(mut self) {
        self.stop_within(STOP_WAIT);
    }

    fn stop_within(&mut self, limit: Duration) {
        let _ = self.commands.send(WsCommand::Stop);
        if let Some(j) = self.join.take() {
            let deadline = Instant::now() + limit;
            while !j.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if j.is_finished() {
                let _ = j.join();
            } else {
                log::warn!(
                    "the ws-io thread is still in a connect or handshake; not waiting for it"
                );
            }
        }
    }
}

/// How long stopping waits for the I/O thread (the close handshake itself is bounded inside it).
pub const STOP_WAIT: Duration = Duration::from_secs(3);

impl Drop for WsHandle {
    fn drop(&mut self) {
        self.stop_within(STOP_WAIT);
    }
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Read timeout when the link is idle.
const IDLE_READ_TIMEOUT: Duration = Duration::from_millis(200);
/// How long the thread waits between rounds of a handshake that would block.
const HANDSHAKE_POLL: Duration = Duration::from_millis(5);
/// How long the thread waits for a command between socket polls while traffic flows.
const ACTIVE_POLL: Duration = Duration::from_millis(1);

struct WsActor {
    settings: WsSettings,
    commands: Receiver<WsCommand>,
    emit: Box<dyn Fn(WsEvent) -> bool + Send>,
}

enum After {
    Reconnectable,
    Stop,
}

fn tcp(stream: &MaybeTlsStream<TcpStream>) -> Option<&TcpStream> {
    match stream {
        MaybeTlsStream::Plain(s) => Some(s),
        MaybeTlsStream::Rustls(s) => Some(s.get_ref()),
        _ => None,
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl WsActor {
    fn run(self) {
        loop {
            let cmd = match self.commands.recv() {
                Ok(c) => c,
                Err(_) => return,
            };
            match cmd {
                WsCommand::Connect { url, api_key } => match self.connect(&url, api_key.as_deref())
                {
                    Ok(socket) => {
                        if !(self.emit)(WsEvent::Connected) {
                            return;
                        }
                        if let After::Stop = self.serve(socket) {
                            return;
                        }
                    }
                    Err((error, auth)) => {
                        if !(self.emit)(WsEvent::ConnectFailed { error, auth }) {
                            return;
                        }
                    }
                },
                WsCommand::Send(frame) => {
                    if !(self.emit)(WsEvent::SendFailed(frame)) {
                        return;
                    }
                }
                WsCommand::Close => {}
                WsCommand::Stop => return,
            }
        }
    }

    fn connect(&self, url: &str, api_key: Option<&str>) -> Result<Socket, (String, bool)> {
        let mut request = url
            .into_client_request()
            .map_err(|e| (format!("invalid URL: {e}"), false))?;
        if let Some(key) = api_key {
            let value = tungstenite::http::HeaderValue::from_str(key).map_err(|_| {
                (
                    "the API key contains characters not allowed in a header".to_string(),
                    false,
                )
            })?;
            request.headers_mut().insert("X-Api-Key", value);
        }
        let uri = request.uri().clone();
        let host = uri
            .host()
            .ok_or_else(|| ("the URL has no host".to_string(), false))?
            .to_string();
        let tls = uri.scheme_str() == Some("wss");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host_for_dns = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<_> = (host_for_dns, port)
            .to_socket_addrs()
            .map_err(|e| (format!("cannot resolve {host}: {e}"), false))?
            .collect();
        let mut last_err = format!("{host} resolves to no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.settings.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_err = format!("cannot connect to {addr}: {e}"),
            }
        }
        let stream = stream.ok_or((last_err, false))?;
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(self.settings.write_timeout));
        // The whole handshake (TLS and HTTP upgrade) has one deadline: a peer trickling its
        // answer byte by byte must not keep the link `connecting` forever, so the socket is
        // non-blocking and every interrupted round checks the deadline.
        let _ = stream.set_nonblocking(true);
        let deadline = Instant::now() + self.settings.connect_timeout;
        let mut round = tungstenite::client_tls_with_config(request, stream, None, None);
        loop {
            match round {
                Ok((socket, _response)) => {
                    if let Some(s) = tcp(socket.get_ref()) {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(IDLE_READ_TIMEOUT));
                    }
                    return Ok(socket);
                }
                Err(tungstenite::HandshakeError::Interrupted(mid)) => {
                    if Instant::now() >= deadline {
                        return Err((
                            format!(
                                "the handshake did not complete within {} s",
                                self.settings.connect_timeout.as_secs_f64()
                            ),
                            false,
                        ));
                    }
                    std::thread::sleep(HANDSHAKE_POLL);
                    round = mid.handshake();
                }
                Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                    let status = resp.status().as_u16();
                    return Err((
                        format!("the orchestrator refused the connection: HTTP {status}"),
                        status == 401 || status == 403,
                    ));
                }
                Err(tungstenite::HandshakeError::Failure(e)) => {
                    return Err((format!("handshake failed: {e}"), false))
                }
            }
        }
    }

    /// The connected I/O loop.
    fn serve(&self, mut socket: Socket) -> After {
        let mut last_inbound = Instant::now();
        let mut last_activity = Instant::now();
        let mut last_ping = Instant::now();
        let mut current_timeout = Duration::ZERO;
        let mut close_code: Option<u16> = None;
        let mut closing_since: Option<Instant> = None;
        let mut stop_after_close = false;
        let mut pending: Option<WsCommand> = None;
        let mut nonblocking = false;
        loop {
            // Outbound first: answers go out before the next read.
            loop {
                let cmd = match pending
                    .take()
                    .map(Ok)
                    .unwrap_or_else(|| self.commands.try_recv())
                {
                    Ok(cmd) => cmd,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => WsCommand::Stop,
                };
                match cmd {
                    WsCommand::Send(frame) => {
                        if closing_since.is_some() {
                            let _ = (self.emit)(WsEvent::SendFailed(frame));
                            continue;
                        }
                        last_activity = Instant::now();
                        match socket.send(Message::text(frame.text.clone())) {
                            Ok(()) => {}
                            // Non-blocking socket with a full buffer: tungstenite keeps the frame
                            // and the next flush sends it.
                            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                            Err(e) => {
                                let _ = (self.emit)(WsEvent::SendFailed(frame));
                                return self.closed(None, format!("write failed: {e}"), false);
                            }
                        }
                    }
                    WsCommand::Close | WsCommand::Stop => {
                        if matches!(cmd, WsCommand::Stop) {
                            stop_after_close = true;
                        }
                        if closing_since.is_none() {
                            closing_since = Some(Instant::now());
                            let frame = CloseFrame {
                                code: CloseCode::Normal,
                                reason: "robot closing".into(),
                            };
                            let _ = socket.close(Some(frame));
                        }
                        if stop_after_close && self.commands.is_empty() {
                            break;
                        }
                    }
                    WsCommand::Connect { .. } => {
                        log::debug!("ws-io: already connected; connect ignored")
                    }
                }
            }
            if let Some(since) = closing_since {
                if since.elapsed() > Duration::from_secs(2) {
                    return self.closed(
                        close_code,
                        "closed by the robot (close handshake timed out)".into(),
                        stop_after_close,
                    );
                }
            } else if last_ping.elapsed() >= self.settings.ping_every {
                last_ping = Instant::now();
                match socket.send(Message::Ping(Vec::new().into())) {
                    Ok(()) => {}
                    // A full socket buffer (a large frame draining on a slow link): the ping is
                    // queued behind it and the next flush sends it, as for data frames. The
                    // silence limit still catches a dead peer.
                    Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {}
                    Err(tungstenite::Error::WriteBufferFull(_)) => {}
                    Err(e) => return self.closed(None, format!("ping failed: {e}"), false),
                }
            }
            if last_inbound.elapsed() > self.settings.silence_limit {
                return self.closed(
                    None,
                    format!(
                        "no frame from the orchestrator for {} s (dead connection)",
                        self.settings.silence_limit.as_secs()
                    ),
                    false,
                );
            }
            // While traffic flows: a non-blocking socket, and the thread waits on the command
            // channel (woken at once by a new command) between polls of the socket. Idle: a
            // blocking read with a 200 ms timeout (five wake-ups a second). Socket timeouts are
            // rounded to scheduler ticks, so they cannot give millisecond latency themselves.
            let active =
                closing_since.is_some() || last_activity.elapsed() < Duration::from_secs(2);
            if active != nonblocking {
                if let Some(s) = tcp(socket.get_ref()) {
                    let _ = s.set_nonblocking(active);
                }
                nonblocking = active;
            }
            if !active && current_timeout != IDLE_READ_TIMEOUT {
                if let Some(s) = tcp(socket.get_ref()) {
                    let _ = s.set_read_timeout(Some(IDLE_READ_TIMEOUT));
                }
                current_timeout = IDLE_READ_TIMEOUT;
            }
            match socket.read() {
                Ok(Message::Text(text)) => {
                    last_inbound = Instant::now();
                    last_activity = last_inbound;
                    if !(self.emit)(WsEvent::Frame(text.to_string())) {
                        return After::Stop;
                    }
                }
                Ok(Message::Binary(bytes)) => {
                    last_inbound = Instant::now();
                    match String::from_utf8(bytes.to_vec()) {
                        Ok(text) => {
                            if !(self.emit)(WsEvent::Frame(text)) {
                                return After::Stop;
                            }
                        }
                        Err(_) => log::debug!("ignored a binary frame that is not UTF-8"),
                    }
                }
                Ok(Message::Close(frame)) => {
                    last_inbound = Instant::now();
                    close_code = frame.as_ref().map(|f| u16::from(f.code));
                    if closing_since.is_none() {
                        closing_since = Some(Instant::now());
                    }
                }
                Ok(_) => last_inbound = Instant::now(),
                Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                    // Flush anything tungstenite queued (e.g. an automatic pong, a frame that
                    // did not fit the socket buffer).
                    let _ = socket.flush();
                    if nonblocking {
                        match self.commands.recv_timeout(ACTIVE_POLL) {
                            Ok(cmd) => pending = Some(cmd),
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                                pending = Some(WsCommand::Stop)
                            }
                        }
                    }
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    let reason = if closing_since.is_some() {
                        "closed"
                    } else {
                        "the orchestrator closed the connection"
                    };
                    return self.closed(close_code, reason.into(), stop_after_close);
                }
                Err(e) => {
                    return self.closed(
                        close_code,
                        format!("connection lost: {e}"),
                        stop_after_close,
                    )
                }
            }
        }
    }

    fn closed(&self, code: Option<u16>, reason: String, stop: bool) -> After {
        if !(self.emit)(WsEvent::Closed { code, reason }) || stop {
            return After::Stop;
        }
        After::Reconnectable
    }
}
