//! WebSocket clients: the echo load (one binary message in flight per connection), idle
//! sessions (one echo each, then silence) and quiet sessions (no message at all: the members of
//! a fan-out room). The handshake is a plain HTTP/1.1 upgrade request; messages are pre-framed
//! (see `frame`).
//!
//! Many sessions are opened with bounded concurrency (a burst larger than the server's listen
//! backlog only gets connections dropped and retried by the kernel), and each is bound to one of
//! several loopback source addresses before it connects: one (source address, server address,
//! server port) tuple has only the ephemeral port range (about 28,000 ports), and a hundred
//! thousand sessions need more. Every address in 127.0.0.0/8 reaches `lo`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use super::frame;
use super::load::{self, RoundTrips};
use super::schedule::Window;
use super::stats::Summary;
use super::{ANSWER_TIMEOUT, CONNECT_TIMEOUT};

/// Longest the closing handshake at the end of a load may take; past it the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Size of the one message each idle session echoes.
pub(crate) const IDLE_MESSAGE_SIZE: usize = 20;
/// Read buffer of a loaded connection: a 16 KiB echo is read in one call.
const LOAD_READ_BUFFER: usize = 64 * 1024;
/// Read buffer of an idle or quiet session: enough for the `101` head and a fan-out message; a
/// hundred thousand of them stay small.
const IDLE_READ_BUFFER: usize = 1024;
/// Longest response head accepted in the handshake.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Any valid key works; the benchmark does not check `Sec-WebSocket-Accept`.
const KEY: &str = "c3dpdGNoeWFyZC1iZW5jaA==";
/// Source addresses connections are spread over: 127.0.0.2 and the next ones. Sixteen give
/// room for 100,000 sessions twice over (a server's and then another's in the same run, should
/// some of the first ones' ports still be held) within each address's ephemeral ports.
const SOURCE_ADDRESSES: usize = 16;
/// The first source address's last octet.
const FIRST_SOURCE_OCTET: usize = 2;

/// An open client WebSocket session, its two directions apart so a fan-out member can read
/// while the same session publishes.
pub(crate) struct Socket {
    pub(super) reader: BufReader<OwnedReadHalf>,
    pub(super) writer: OwnedWriteHalf,
}

/// One message, framed for sending, and the payload its echo must equal.
pub(crate) struct EchoMessage {
    frame: Vec<u8>,
    payload: Vec<u8>,
}

impl EchoMessage {
    /// A binary message of `size` bytes.
    pub(crate) fn new(size: usize) -> Self {
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
    let sockets = open_many(
        addr,
        &|_| path.to_owned(),
        connections,
        LOAD_READ_BUFFER,
        connections,
        true,
    )
    .await?;
    let message = Rc::new(EchoMessage::new(size));
    load::run(
        sockets,
        window,
        "an echo connection",
        |socket, round_trips| echo_loop(socket, message.clone(), round_trips),
    )
    .await
}

/// Opens `count` sessions, at most `concurrency` at a time, each echoing one small message;
/// returns them open and idle.
pub(crate) async fn open_idle(
    addr: SocketAddr,
    path: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Socket>> {
    open_many(
        addr,
        &|_| path.to_owned(),
        count,
        IDLE_READ_BUFFER,
        concurrency,
        true,
    )
    .await
}

/// Opens `count` sessions, at most `concurrency` at a time, and sends nothing on them.
pub(crate) async fn open_quiet(
    addr: SocketAddr,
    path: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Socket>> {
    open_many(
        addr,
        &|_| path.to_owned(),
        count,
        IDLE_READ_BUFFER,
        concurrency,
        false,
    )
    .await
}

/// Opens `count` sessions, the `i`th at `path(i)`, at most `concurrency` at a time, and sends
/// nothing on them.
pub(crate) async fn open_quiet_each(
    addr: SocketAddr,
    path: &(dyn Fn(usize) -> String + Sync),
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Socket>> {
    open_many(addr, path, count, IDLE_READ_BUFFER, concurrency, false).await
}

/// Opens `count` sessions, the `i`th at `path(i)`, with at most `concurrency` handshakes in
/// flight; with `greet`, each
/// echoes one small message before it counts, which proves the session is fully up on the
/// server (upgraded and answering). Every step of every session has its timeout, so the whole
/// is bounded in time.
async fn open_many(
    addr: SocketAddr,
    path: &(dyn Fn(usize) -> String + Sync),
    count: usize,
    read_buffer: usize,
    concurrency: usize,
    greet: bool,
) -> anyhow::Result<Vec<Socket>> {
    let greeting = EchoMessage::new(IDLE_MESSAGE_SIZE);
    let greeting = &greeting;
    let mut opening = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let path = path(i);
            let mut socket = connect(addr, &path, read_buffer, source_address(addr, i)).await?;
            if greet {
                timeout(ANSWER_TIMEOUT, socket.round_trip(greeting, &mut Vec::new()))
                    .await
                    .context("no echo to the first message")??;
            }
            anyhow::Ok(socket)
        })
        .buffer_unordered(concurrency.max(1));
    let mut sockets = Vec::with_capacity(count);
    while let Some(opened) = opening.next().await {
        let socket =
            opened.with_context(|| format!("after {} sessions were open", sockets.len()))?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// The loopback source address the `index`th session binds to, when the server is on IPv4
/// loopback; `None` (the kernel's choice) otherwise.
fn source_address(server: SocketAddr, index: usize) -> Option<SocketAddr> {
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let octet = FIRST_SOURCE_OCTET + index % SOURCE_ADDRESSES;
            let octet = u8::try_from(octet).unwrap_or(u8::MAX);
            Some(SocketAddr::new(Ipv4Addr::new(127, 0, 0, octet).into(), 0))
        }
        _ => None,
    }
}

/// The source addresses sessions are spread over, for the tables' notes.
pub(crate) fn source_addresses_label() -> String {
    format!(
        "127.0.0.{FIRST_SOURCE_OCTET}–127.0.0.{}",
        FIRST_SOURCE_OCTET + SOURCE_ADDRESSES - 1
    )
}

/// Opens a session, from `source` if given: TCP (Nagle off, or small echoes wait for it and
/// latency means nothing), then the upgrade handshake.
async fn connect(
    addr: SocketAddr,
    path: &str,
    read_buffer: usize,
    source: Option<SocketAddr>,
) -> anyhow::Result<Socket> {
    let open = async {
        let stream = match source {
            Some(source) => {
                let socket = TcpSocket::new_v4()?;
                socket
                    .bind(source)
                    .with_context(|| format!("binding to {source}"))?;
                socket.connect(addr).await?
            }
            None => TcpStream::connect(addr).await?,
        };
        stream.set_nodelay(true)?;
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::with_capacity(read_buffer, reader);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        );
        writer.write_all(request.as_bytes()).await?;
        let status_line = read_head(&mut reader).await?;
        if status_line.split_whitespace().nth(1) != Some("101") {
            bail!("the server refused the upgrade: {status_line}");
        }
        anyhow::Ok(Socket { reader, writer })
    };
    timeout(CONNECT_TIMEOUT, open)
        .await
        .with_context(|| format!("opening ws://{addr}{path} timed out"))?
        .with_context(|| format!("opening ws://{addr}{path}"))
}

/// Reads a response head up to its blank line; returns the status line.
async fn read_head(stream: &mut BufReader<OwnedReadHalf>) -> anyhow::Result<String> {
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
    async fn round_trip(
        &mut self,
        message: &EchoMessage,
        echo: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        self.writer
            .write_all(&message.frame)
            .await
            .context("sending")?;
        frame::read_message(&mut self.reader, echo, message.payload.len())
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

    /// One round trip of `message`, timed from just before it is sent to just after its echo
    /// is read; bounded by the answer timeout.
    pub(crate) async fn timed_round_trip(
        &mut self,
        message: &EchoMessage,
        echo: &mut Vec<u8>,
    ) -> anyhow::Result<Duration> {
        let sent = Instant::now();
        timeout(ANSWER_TIMEOUT, self.round_trip(message, echo))
            .await
            .context("no echo within the answer timeout")??;
        Ok(sent.elapsed())
    }
}

async fn echo_loop(
    mut socket: Socket,
    message: Rc<EchoMessage>,
    round_trips: RoundTrips,
) -> anyhow::Result<()> {
    let mut echo = Vec::with_capacity(message.payload.len());
    while let Some(sent) = round_trips.begin() {
        timeout(ANSWER_TIMEOUT, socket.round_trip(&message, &mut echo))
            .await
            .context("no echo within the answer timeout")??;
        round_trips.end(sent);
    }
    close(socket).await;
    Ok(())
}

/// Ends a session with the closing handshake, so the server sees a clean close, and waits
/// (briefly) for the server to close the connection.
pub(crate) async fn close(mut socket: Socket) {
    let handshake = async {
        socket.writer.write_all(&frame::close()).await?;
        let mut rest = [0u8; 256];
        while socket.reader.read(&mut rest).await? > 0 {}
        anyhow::Ok(())
    };
    let _ = timeout(CLOSE_TIMEOUT, handshake).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_spread_over_loopback_sources() {
        let server: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let first = source_address(server, 0).unwrap();
        assert_eq!(first, "127.0.0.2:0".parse().unwrap());
        assert_eq!(
            source_address(server, SOURCE_ADDRESSES - 1).unwrap(),
            "127.0.0.17:0".parse().unwrap()
        );
        assert_eq!(source_address(server, SOURCE_ADDRESSES).unwrap(), first);
        assert_eq!(source_address("[::1]:9000".parse().unwrap(), 3), None);
        assert_eq!(source_addresses_label(), "127.0.0.2–127.0.0.17");
    }
}
