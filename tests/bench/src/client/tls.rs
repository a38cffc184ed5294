//! WebSocket echo over TLS: every connection a TLS handshake (rustls, `ring`, ALPN
//! `http/1.1`), a WebSocket client handshake (tokio-tungstenite), then one binary message in
//! flight at a time, as the cleartext echo load keeps it. The same client for the host and the
//! native server, so the comparison measures the servers.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::load::{self, RoundTrips};
use super::schedule::Window;
use super::stats::Summary;
use super::{ANSWER_TIMEOUT, CONNECT_TIMEOUT};

/// The name the benchmark's certificate is made for.
pub(crate) const SERVER_NAME: &str = "localhost";

type Client = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Runs `connections` echo loops of `size`-byte binary messages against `wss://addr{path}`.
pub(crate) async fn echo_load(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    size: usize,
    window: Window,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<Summary> {
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(connect(addr, path, tls.clone()).await?);
    }
    let payload: Rc<[u8]> = (0..size).map(|i| (i % 251) as u8).collect();
    load::run(
        clients,
        window,
        "a TLS echo connection",
        |client, round_trips| echo_loop(client, payload.clone(), round_trips),
    )
    .await
}

async fn connect(
    addr: SocketAddr,
    path: &str,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<Client> {
    let open = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(SERVER_NAME)?;
        let stream = TlsConnector::from(tls).connect(name, tcp).await?;
        let url = format!("wss://{SERVER_NAME}:{}{path}", addr.port());
        // Frames handed to TLS at once, as the cleartext load writes them.
        let config = WebSocketConfig::default().write_buffer_size(0);
        let (client, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await?;
        anyhow::Ok(client)
    };
    timeout(CONNECT_TIMEOUT, open)
        .await
        .with_context(|| format!("opening wss://{addr}{path} timed out"))?
        .with_context(|| format!("opening wss://{addr}{path}"))
}

async fn echo_loop(
    mut client: Client,
    payload: Rc<[u8]>,
    round_trips: RoundTrips,
) -> anyhow::Result<()> {
    while let Some(sent) = round_trips.begin() {
        let round_trip = async {
            client.send(Message::binary(payload.to_vec())).await?;
            loop {
                match client.next().await {
                    Some(Ok(Message::Binary(echo))) => break anyhow::Ok(echo),
                    Some(Ok(_)) => continue,
                    Some(Err(err)) => return Err(err.into()),
                    None => bail!("the server closed the connection"),
                }
            }
        };
        let echo = timeout(ANSWER_TIMEOUT, round_trip)
            .await
            .context("no echo within the answer timeout")??;
        if *echo != *payload {
            bail!(
                "a wrong echo: {} bytes back for {}",
                echo.len(),
                payload.len()
            );
        }
        round_trips.end(sent);
    }
    let _ = timeout(super::ANSWER_TIMEOUT, client.close(None)).await;
    Ok(())
}
