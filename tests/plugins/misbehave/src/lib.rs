//! Test-only plugin that breaks the contract in chosen ways, so the host's defences can be
//! tested. Not shipped.
//!
//! The last path segment of `/misbehave/<case>` picks the behaviour; an unknown case answers
//! 404. Cases that upgrade use the token `x-test`, so the client must send
//! `Connection: upgrade` and `Upgrade: x-test`. Build with
//! `cargo build --profile plugin --target wasm32-wasip2 -p misbehave`.
//!
//! Contract breaches, which the host must refuse or contain:
//!
//! - `ok`: 200 `ok`.
//! - `trap-handle`: prints `misbehave: last words` without a newline, then panics in `handle`;
//!   the host answers 500 (and logs the words).
//! - `upgrade-then-trap`: upgrades, then panics in the session once the first bytes arrived.
//! - `bad-header-name`: a response header named `bad header`.
//! - `bad-header-value`: a response header value containing `\n`.
//! - `bad-status`: status 1000.
//! - `upgrade-on-plain`: upgrades whatever the client asked for, even nothing; echoes.
//! - `upgrade-wrong-token`: upgrades to `not-offered`, a token the client did not offer.
//! - `upgrade-status-200`: upgrades with status 200 instead of 101.
//! - `echo-raw`: upgrades and echoes raw bytes until the input ends.
//! - `print`: writes a line to stdout and one to stderr, then 200.
//! - `half-close`: upgrades, writes `bye\n`, drops its writing half, then reads until the
//!   input ends and logs on stderr what it read after closing its side.
//! - `many-headers`: 200 with 40,000 header fields.
//! - `upgrade-many-headers`: upgrades with 40,000 more header fields.
//! - `huge-body`: 200 with a 40 MiB body.
//! - `huge-header-value`: 200 with one 100 KiB header value.
//! - `hop-by-hop`: 200 with `connection: close, upgrade`, `upgrade: h2c`, `keep-alive` and
//!   `proxy-connection`.
//! - `upgrade-hop-by-hop`: upgrades with `connection: close` and `keep-alive` fields.
//! - `print-no-newline`: writes to stdout and stderr without a final newline, then 200.
//! - `log-flood`: writes 20,000 lines to stdout in one request, then 200.
//!
//! Hostile cases, which the host must survive with every other request and session unharmed
//! (see the `hostile` and `sandbox` modules):
//!
//! - `loop-handle`: spins forever inside `handle`.
//! - `loop-session`: upgrades, writes `spinning\n`, then spins forever without yielding.
//! - `memory-handle`: allocates and touches 1 MiB blocks in `handle` until memory runs out.
//! - `memory-session`: upgrades, writes `allocating\n`, then the same inside the session.
//! - `flood`: upgrades and writes 64 KiB chunks until a write fails because the client left.
//! - `slow-reader`: upgrades, writes `ready\n`, then never reads but stays alive, waiting.
//! - `sandbox`: tries to read files, the environment, arguments, a TCP socket and DNS, and
//!   answers 200 with one line per attempt.
//! - `sleep-session`: upgrades, writes `idle\n`, then echoes like `echo-raw`.
//! - `slow-handle`: sleeps about 200 ms on the clock (not spinning), then 200 `slept`.
//!
//! Managed-WebSocket cases (see the `managed` module): each accepts a WebSocket the host runs,
//! keeps its case in the connection's attachment, and attacks in an event. Unless said
//! otherwise the attack starts with the client's first message; until then, and in the cases
//! without one, messages are echoed.
//!
//! - `ws-loop-open`: spins forever in `on-open`.
//! - `ws-loop`: spins forever in `on-message`.
//! - `ws-loop-close`: echoes; spins forever in `on-close`.
//! - `ws-panic`: panics in `on-message`.
//! - `ws-unreachable`: executes WebAssembly's `unreachable` in `on-message`.
//! - `ws-out-of-bounds`: loads from an address past its memory in `on-message`.
//! - `ws-memory`: allocates and touches 1 MiB blocks in `on-message` until memory runs out.
//! - `ws-flood-send`: sends 16 KiB binary messages to its own connection in `on-message`
//!   without end, ignoring refusals; only the host's outbound buffer and CPU limits stop it.
//! - `ws-flood-publish`: publishes 16 KiB binary messages to the topic `flood` in
//!   `on-message` without end, ignoring refusals.
//! - `ws-subscriber`: joins the topic `flood` when accepted, and echoes.
//! - `ws-send-wild-pointer`, `ws-send-not-utf8`, `ws-send-bad-kind`: call the contract's `send`
//!   import directly in `on-message`, bypassing the SDK, with a binary message past the end of
//!   memory, a text that is not UTF-8, or a message kind (variant case 7) that does not exist.

mod hostile;
mod managed;
mod oversized;
mod sandbox;

use std::time::Duration;

use switchyard_sdk::managed::{Connection, Message};
use switchyard_sdk::{Outgoing, Plugin, Request, Response, Session, Upgrade};

use crate::managed::ManagedCase;

/// The protocol token of the upgrading cases.
const TEST_PROTOCOL: &str = "x-test";

/// How long `slow-handle` sleeps: long enough to stand out from a quick answer (and to outlast
/// a CPU deadline that wrongly counted wall time), short enough to keep tests quick.
const SLOW_HANDLE_SLEEP: Duration = Duration::from_millis(200);

/// What the plugin does for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// 200 `ok`.
    Ok,
    /// Panics in `handle`: the instance traps.
    TrapHandle,
    /// Upgrades to `x-test`, then panics in `upgrade` once the first bytes arrived.
    UpgradeThenTrap,
    /// A response header named `bad header` (with a space).
    BadHeaderName,
    /// A response header value containing `\n`.
    BadHeaderValue,
    /// Status 1000.
    BadStatus,
    /// Upgrades to `x-test` whatever the client asked for, even nothing; echoes raw bytes.
    UpgradeOnPlain,
    /// Upgrades to `not-offered`, a token the client did not offer.
    UpgradeWrongToken,
    /// Upgrades to `x-test` with status 200 instead of 101.
    UpgradeStatus200,
    /// Upgrades to `x-test` and echoes raw bytes until the input ends, including bytes sent
    /// right after the request head.
    EchoRaw,
    /// Writes a line to stdout and one to stderr, then 200.
    Print,
    /// Spins forever in `handle`, never returning to the host.
    LoopHandle,
    /// Upgrades to `x-test`, writes `spinning\n`, then spins forever without yielding.
    LoopSession,
    /// Allocates memory in `handle` until the host's limit makes it trap.
    MemoryHandle,
    /// Upgrades to `x-test`, writes `allocating\n`, then allocates until it traps.
    MemorySession,
    /// Upgrades to `x-test` and writes 64 KiB chunks until the client is gone.
    Flood,
    /// Upgrades to `x-test`, writes `ready\n`, then waits forever without reading its input.
    SlowReader,
    /// Probes files, environment, arguments and network, and answers 200 with the findings.
    Sandbox,
    /// Upgrades to `x-test`, writes `idle\n`, then echoes like [`Case::EchoRaw`].
    SleepSession,
    /// Sleeps on the clock for [`SLOW_HANDLE_SLEEP`], then 200 `slept`.
    SlowHandle,
    /// Upgrades to `x-test`, writes `bye\n`, closes its writing half, keeps reading.
    HalfClose,
    /// 200 with 40,000 header fields.
    ManyHeaders,
    /// Upgrades to `x-test` with 40,000 more header fields.
    UpgradeManyHeaders,
    /// 200 with a 40 MiB body.
    HugeBody,
    /// 200 with one 100 KiB header value.
    HugeHeaderValue,
    /// 200 with connection-management (hop-by-hop) fields.
    HopByHop,
    /// Upgrades to `x-test` with `connection` and `keep-alive` fields.
    UpgradeHopByHop,
    /// Output without a final newline on stdout and stderr, then 200.
    PrintNoNewline,
    /// 20,000 lines on stdout, then 200.
    LogFlood,
    /// A managed WebSocket that attacks from its events.
    Managed(ManagedCase),
}

impl Case {
    /// The case named by the last path segment, if any.
    fn from_path(path: &str) -> Option<Self> {
        let case = match path.rsplit('/').next()? {
            "ok" => Self::Ok,
            "trap-handle" => Self::TrapHandle,
            "upgrade-then-trap" => Self::UpgradeThenTrap,
            "bad-header-name" => Self::BadHeaderName,
            "bad-header-value" => Self::BadHeaderValue,
            "bad-status" => Self::BadStatus,
            "upgrade-on-plain" => Self::UpgradeOnPlain,
            "upgrade-wrong-token" => Self::UpgradeWrongToken,
            "upgrade-status-200" => Self::UpgradeStatus200,
            "echo-raw" => Self::EchoRaw,
            "print" => Self::Print,
            "loop-handle" => Self::LoopHandle,
            "loop-session" => Self::LoopSession,
            "memory-handle" => Self::MemoryHandle,
            "memory-session" => Self::MemorySession,
            "flood" => Self::Flood,
            "slow-reader" => Self::SlowReader,
            "sandbox" => Self::Sandbox,
            "sleep-session" => Self::SleepSession,
            "slow-handle" => Self::SlowHandle,
            "half-close" => Self::HalfClose,
            "many-headers" => Self::ManyHeaders,
            "upgrade-many-headers" => Self::UpgradeManyHeaders,
            "huge-body" => Self::HugeBody,
            "huge-header-value" => Self::HugeHeaderValue,
            "hop-by-hop" => Self::HopByHop,
            "upgrade-hop-by-hop" => Self::UpgradeHopByHop,
            "print-no-newline" => Self::PrintNoNewline,
            "log-flood" => Self::LogFlood,
            name => Self::Managed(ManagedCase::from_name(name)?),
        };
        Some(case)
    }

    /// The answer to `request`.
    fn answer(self, request: &Request) -> Outgoing {
        match self {
            Self::Managed(case) => case.accept(request),
            Self::Ok => Response::text(200, "ok").into(),
            Self::TrapHandle => {
                print!("misbehave: last words");
                panic!("misbehave: trap in handle, as asked")
            }
            Self::UpgradeThenTrap
            | Self::UpgradeOnPlain
            | Self::EchoRaw
            | Self::LoopSession
            | Self::MemorySession
            | Self::Flood
            | Self::SlowReader
            | Self::SleepSession
            | Self::HalfClose => Upgrade::to(TEST_PROTOCOL).into(),
            Self::BadHeaderName => Response::text(200, "bad header name")
                .header("bad header", "x")
                .into(),
            Self::BadHeaderValue => Response::text(200, "bad header value")
                .header("x-bad", "a\nb")
                .into(),
            Self::BadStatus => Response::text(1000, "bad status").into(),
            Self::UpgradeWrongToken => Upgrade::to("not-offered").into(),
            Self::UpgradeStatus200 => Upgrade::to(TEST_PROTOCOL).status(200).into(),
            Self::Print => {
                println!("misbehave: a line on stdout");
                eprintln!("misbehave: a line on stderr");
                Response::text(200, "printed").into()
            }
            Self::LoopHandle => hostile::spin(),
            Self::MemoryHandle => hostile::exhaust_memory(),
            Self::Sandbox => Response::text(200, sandbox::report()).into(),
            Self::ManyHeaders => oversized::many_headers().into(),
            Self::UpgradeManyHeaders => oversized::upgrade_many_headers(TEST_PROTOCOL).into(),
            Self::HugeBody => oversized::huge_body().into(),
            Self::HugeHeaderValue => oversized::huge_header_value().into(),
            Self::HopByHop => oversized::hop_by_hop().into(),
            Self::UpgradeHopByHop => oversized::upgrade_hop_by_hop(TEST_PROTOCOL).into(),
            Self::PrintNoNewline => oversized::print_no_newline().into(),
            Self::LogFlood => oversized::log_flood().into(),
            Self::SlowHandle => {
                // On wasip2 this is a wasi:clocks wait that blocks in the host: the guest burns
                // no CPU, which is what sets it apart from `loop-handle`.
                std::thread::sleep(SLOW_HANDLE_SLEEP);
                Response::text(200, "slept").into()
            }
        }
    }

    /// The upgraded session, for the cases that upgrade.
    async fn run(self, mut session: Session) {
        let mut buf = Vec::new();
        match self {
            Self::UpgradeThenTrap => {
                session.read(&mut buf).await;
                panic!(
                    "misbehave: trap in upgrade after {} bytes, as asked",
                    buf.len()
                );
            }
            Self::LoopSession => {
                // Spins whether or not the greeting got out: the attack is the point.
                let _ = session.write_all("spinning\n").await;
                hostile::spin();
            }
            Self::MemorySession => {
                let _ = session.write_all("allocating\n").await;
                hostile::exhaust_memory();
            }
            Self::Flood => {
                let chunks = hostile::flood(&mut session).await;
                // A trace in the host's log, so a test can tell the flood ended rather than hung.
                eprintln!("misbehave: flood ended after {chunks} chunks, the client is gone");
            }
            Self::SlowReader => {
                if session.write_all("ready\n").await.is_ok() {
                    // Waits without reading and without spinning: the task stays parked in the
                    // host while it still owns the session, so the input stream stays open.
                    std::future::pending::<()>().await;
                }
            }
            Self::SleepSession => {
                if session.write_all("idle\n").await.is_ok() {
                    echo(&mut session, buf).await;
                }
            }
            Self::HalfClose => {
                let (mut reader, mut writer) = session.into_parts();
                let _ = writer.write_all("bye\n").await;
                drop(writer);
                while reader.read(&mut buf).await > 0 {}
                eprintln!(
                    "misbehave: read after half-close: {}",
                    String::from_utf8_lossy(&buf)
                );
            }
            // The rest echo, so a test can see whether the host let the session through.
            _ => echo(&mut session, buf).await,
        }
    }
}

/// Sends every byte the client sends back to it, until the input ends or the client is gone.
async fn echo(session: &mut Session, mut buf: Vec<u8>) {
    while session.read(&mut buf).await > 0 {
        if session.write_all(std::mem::take(&mut buf)).await.is_err() {
            break;
        }
    }
}

struct Misbehave;

impl Plugin for Misbehave {
    fn handle(request: Request) -> Outgoing {
        match Case::from_path(request.path()) {
            Some(case) => case.answer(&request),
            None => Response::text(404, "unknown misbehave case\n").into(),
        }
    }

    async fn upgrade(request: Request, session: Session) {
        if let Some(case) = Case::from_path(request.path()) {
            case.run(session).await;
        }
    }

    fn on_open(connection: Connection) {
        managed::on_open(connection);
    }

    fn on_message(connection: Connection, message: Message) {
        managed::on_message(connection, message);
    }

    fn on_close(connection: Connection, _code: u16, _reason: String) {
        managed::on_close(connection);
    }
}

switchyard_sdk::export!(Misbehave);
