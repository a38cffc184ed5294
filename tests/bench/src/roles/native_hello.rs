//! The `native-hello` role: a hyper HTTP/1.1 server answering what the `hello` plugin answers,
//! the physical limit for plain requests through the host.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};

/// The host's default header read timeout; set here too so both run hyper with a timer.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until killed.
pub(super) async fn serve() -> anyhow::Result<()> {
    let listener = super::bind_announced().await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let mut http = http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            // A client closing its keep-alive connection is how every load ends.
            let _ = http
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}

/// The `hello` plugin's answer, byte for byte.
async fn hello(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), ToString::to_string);
    let user_agent = request
        .headers()
        .get("user-agent")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body_len = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(_) => 0,
    };
    let body = format!(
        "hello from switchyard\nmethod: {method}\npath: {path}\nuser-agent: {user_agent}\nbody: {body_len} bytes\n"
    );
    let response = Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-plugin", "hello")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default();
    Ok(response)
}
