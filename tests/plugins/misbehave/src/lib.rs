//! Test-only plugin that breaks the contract in chosen ways, so the host's defences can be
//! tested. Not shipped.
//!
//! The last path segment of `/misbehave/<case>` picks the behaviour; see `Case`. Cases that
//! upgrade use the token `x-test`. Build with
//! `cargo build --release --target wasm32-wasip2 -p misbehave`.

use switchyard_sdk::{Outgoing, Plugin, Request, Response, Session, Upgrade};

/// The protocol token of the upgrading cases.
const TEST_PROTOCOL: &str = "x-test";

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
            _ => return None,
        };
        Some(case)
    }

    /// The answer to the request.
    fn answer(self) -> Outgoing {
        match self {
            Self::Ok => Response::text(200, "ok").into(),
            Self::TrapHandle => panic!("misbehave: trap in handle, as asked"),
            Self::UpgradeThenTrap | Self::UpgradeOnPlain | Self::EchoRaw => {
                Upgrade::to(TEST_PROTOCOL).into()
            }
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
            // The rest echo, so a test can see whether the host let the session through.
            _ => {
                while session.read(&mut buf).await > 0 {
                    if session.write_all(std::mem::take(&mut buf)).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

struct Misbehave;

impl Plugin for Misbehave {
    fn handle(request: Request) -> Outgoing {
        match Case::from_path(request.path()) {
            Some(case) => case.answer(),
            None => Response::text(404, "unknown misbehave case\n").into(),
        }
    }

    async fn upgrade(request: Request, session: Session) {
        if let Some(case) = Case::from_path(request.path()) {
            case.run(session).await;
        }
    }
}

switchyard_sdk::export!(Misbehave);
