//! WebSocket clients: the echo load (one binary message in flight per connection) and the idle
//! sessions of the memory section (one echo each, then silence). The handshake is a plain
//! HTTP/1.1 upgrade request; messages are pre-framed (see `frame`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::frame;
use super::schedule::{Schedule, Window};
use super::stats::{Latencies, Summary};
use super::{ANSWER_TIMEOUT, CONNECT_TIMEOUT};

/// Longest the closing handshake at the end of a load may take; past it the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Size of the one message each idle session echoes.
const IDLE_MESSAGE_SIZE: usize = 20;
/// Read buffer of a loaded connection: a 16 KiB echo is read in one call.
const LOAD_READ_BUFFER: usize = 64 * 1024;
/// Read buffer of an idle session: enough for the `101` head; ten thousand of them stay small.
const IDLE_READ_BUFFER: usize = 1024;
/// Longest response head accepted in the handshake.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Any valid key works; the benchmark does not check `Sec-WebSocket-Accept`.
const KEY: &str = "c3dpdGNoeWFyZC1iZW5jaA==";

/// An open client WebSocket session.
pub(crate) struct Socket {
    stream: BufReader<TcpStream>,
}

/// One message, framed for sending, and the payload its echo must equal.
struct Message {
    frame: Vec<u8>,
    payload: Vec<u8>,
}

impl Message {
    fn new(size: usize) -> Self {
        // A repeating pattern rather than zeros, so a wrong echo is noticed.
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        Self {
            frame: frame::binary(&payload),
            payload,
        }
    }
}

/// Runs `connections` echo loops of `size`-byte binary messages against `ws://addr{path}`.
pub(crate) async fn echo_load(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    size: usize,
    window: Window,
) -> anyhow::Result<Summary> {
    let sockets = open_many(addr, path, connections, LOAD_READ_BUFFER, connections).await?;
    let message = Rc::new(Message::new(size));
    let latencies = Rc::new(RefCell::new(Latencies::new()));
    let schedule = Schedule::start(window);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            tokio::task::spawn_local(echo_loop(
                socket,
                message.clone(),
                schedule,
                latencies.clone(),
            ))
        })
        .collect();
    super::join_connections(tasks, "an echo connection").await?;
    let summary = latencies.borrow().summary(window)?;
    Ok(summary)
}

/// Opens `count` sessions, `batch` at a time, each echoing one small message; returns them
/// open and idle.
pub(crate) async fn open_idle(
    addr: SocketAddr,
    path: &str,
    count: usize,
    batch: usize,
) -> anyhow::Result<Vec<Socket>> {
    open_many(addr, path, count, IDLE_READ_BUFFER, batch).await
}

async fn open_many(
    addr: SocketAddr,
    path: &str,
    count: usize,
    read_buffer: usize,
    batch: usize,
) -> anyhow::Result<Vec<Socket>> {
    let mut sockets = Vec::with_capacity(count);
    let greeting = Message::new(IDLE_MESSAGE_SIZE);
    while sockets.len() < count {
        let wanted = batch.min(count - sockets.len());
        let opened = futures_util::future::try_join_all((0..wanted).map(|_| async {
            let mut socket = connect(addr, path, read_buffer).await?;
            // One echo proves the session is fully up on the server (upgraded and pumping)
            // before it counts.
            timeout(
                ANSWER_TIMEOUT,
                socket.round_trip(&greeting, &mut Vec::new()),
            )
            .await
            .context("no echo to the first message")??;
            anyhow::Ok(socket)
        }))
        .await
        .with_context(|| format!("after {} sessions were open", sockets.len()))?;
        sockets.extend(opened);
    }
    Ok(sockets)
}

/// Opens a session: TCP (Nagle off, or small echoes wait for it and latency means nothing),
/// then the upgrade handshake.
async fn connect(addr: SocketAddr, path: &str, read_buffer: usize) -> anyhow::Result<Socket> {
    let open = async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut stream = BufReader::with_capacity(read_buffer, stream);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        );
        stream.get_mut().write_all(request.as_bytes()).await?;
        let status_line = read_head(&mut stream).await?;
        if status_line.split_whitespace().nth(1) != Some("101") {
            bail!("the server refused the upgrade: {status_line}");
        }
        anyhow::Ok(Socket { stream })
    };
    timeout(CONNECT_TIMEOUT, open)
        .await
        .with_context(|| format!("opening ws://{addr}{path} timed out"))?
        .with_context(|| format!("opening ws://{addr}{path}"))
}

/// Reads a response head up to its blank line; returns the status line.
async fn read_head(stream: &mut BufReader<TcpStream>) -> anyhow::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read_until(b'\n', &mut head).await? == 0 {
            bail!("the connection closed during the handshake");
        }
        if head.len() > MAX_HEAD_BYTES {
            bail!("a response head of over {MAX_HEAD_BYTES} bytes");
        }
    }
    let head = String::from_utf8_lossy(&head);
    Ok(head.lines().next().unwrap_or_default().to_owned())
}

impl Socket {
    /// Sends `message` and waits for its echo, which must carry the same payload. `echo` is
    /// scratch space, reused across calls.
    async fn round_trip(&mut self, message: &Message, echo: &mut Vec<u8>) -> anyhow::Result<()> {
        self.stream
            .get_mut()
            .write_all(&message.frame)
            .await
            .context("sending")?;
        frame::read_message(&mut self.stream, echo, message.payload.len())
            .await
            .context("receiving the echo")?;
        if *echo != message.payload {
            bail!(
                "a wrong echo: {} bytes back for {}",
                echo.len(),
                message.payload.len()
            );
        }
        Ok(())
    }
}

async fn echo_loop(
    mut socket: Socket,
    message: Rc<Message>,
    schedule: Schedule,
    latencies: Rc<RefCell<Latencies>>,
) -> anyhow::Result<()> {
    let mut echo = Vec::with_capacity(message.payload.len());
    loop {
        let sent = Instant::now();
        if !schedule.running(sent) {
            break;
        }
        timeout(ANSWER_TIMEOUT, socket.round_trip(&message, &mut echo))
            .await
            .context("no echo within the answer timeout")??;
        let done = Instant::now();
        let mut latencies = latencies.borrow_mut();
        if schedule.counts(done) {
            latencies.count_answer();
        }
        if schedule.times(sent, done) {
            latencies.record(done - sent);
        }
    }
    close(socket).await;
    Ok(())
}

/// Ends a session with the closing handshake, so the server sees a clean close, and waits
/// (briefly) for the server to close the connection.
pub(crate) async fn close(mut socket: Socket) {
    let handshake = async {
        socket.stream.get_mut().write_all(&frame::close()).await?;
        let mut rest = [0u8; 256];
        while socket.stream.read(&mut rest).await? > 0 {}
        anyhow::Ok(())
    };
    let _ = timeout(CLOSE_TIMEOUT, handshake).await;
}
