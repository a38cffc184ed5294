//! Plain HTTP/1.1 clients (hyper): the keep-alive GET load, and one-off GETs on a new
//! connection each, which the reload and start-up sections poll with.

use std::net::SocketAddr;
use std::rc::Rc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::load::{self, RoundTrips};
use super::schedule::Window;
use super::stats::Summary;
use super::{ANSWER_TIMEOUT, CONNECT_TIMEOUT};

/// What the client calls itself; `hello` echoes it in its body.
const USER_AGENT: &str = "switchyard-bench";

/// Runs `connections` keep-alive connections, each sending `GET path` as soon as the previous
/// answer (which must be 200) is read.
pub(crate) async fn get_load(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    window: Window,
) -> anyhow::Result<Summary> {
    let mut senders = Vec::with_capacity(connections);
    let mut drivers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = connect(addr).await?;
        let (sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        // The connection's I/O runs as its own task; aborted below once the load is done.
        drivers.push(tokio::task::spawn_local(connection));
        senders.push(sender);
    }
    let path: Rc<str> = Rc::from(path);
    let result = load::run(
        senders,
        window,
        "a GET connection",
        |sender, round_trips| get_loop(sender, addr, path.clone(), round_trips),
    )
    .await;
    for driver in drivers {
        driver.abort();
    }
    result
}

async fn get_loop(
    mut sender: SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: Rc<str>,
    round_trips: RoundTrips,
) -> anyhow::Result<()> {
    while let Some(sent) = round_trips.begin() {
        let status = timeout(ANSWER_TIMEOUT, send(&mut sender, addr, &path))
            .await
            .context("no answer within the answer timeout")??;
        if status != 200 {
            bail!("GET {path} answered {status}");
        }
        round_trips.end(sent);
    }
    Ok(())
}

/// `GET path` on a new connection; the answer's status.
pub(crate) async fn get_status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let stream = connect(addr).await?;
    let exchange = async {
        let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::pin!(connection);
        tokio::select! {
            status = send(&mut sender, addr, path) => status,
            ended = &mut connection => match ended {
                Ok(()) => bail!("the server closed the connection without answering"),
                Err(err) => Err(err).context("the connection failed"),
            },
        }
    };
    timeout(ANSWER_TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET {path} got no answer in time"))?
}

/// Sends one GET and reads the whole answer; returns its status.
async fn send(
    sender: &mut SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<u16> {
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, USER_AGENT)
        .body(Empty::new())
        .context("building the request")?;
    sender.ready().await.context("waiting for the connection")?;
    let response = sender
        .send_request(request)
        .await
        .context("sending the request")?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .context("reading the body")?;
    Ok(status)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
