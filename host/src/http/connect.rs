//! HTTP/2 extended CONNECT (RFC 8441): a client opens a stream with `:method = CONNECT` and
//! `:protocol = websocket` (or another protocol) where an HTTP/1.1 client sends `GET` with
//! `Connection: upgrade` and `Upgrade:`. Plugins see one contract for both: the request is
//! handed to them in its HTTP/1.1 form, and their `101` answer goes back as the `200` that opens
//! the stream (RFC 8441 §5), without the fields HTTP/2 forbids or has no use for.
//!
//! RFC 8441 drops `Sec-WebSocket-Key`/`Accept` (the stream is already bound to this exchange),
//! but plugins and their SDKs check an HTTP/1.1 handshake, which needs a key: the host fills in
//! a fixed stand-in key, and the `Sec-WebSocket-Accept` computed from it is removed from the
//! answer. `Sec-WebSocket-Version: 13` is still required from the client.

use hyper::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};

use crate::http::guest_response::{Body, host_response};

/// The key handed to plugins in place of the one RFC 8441 clients do not send: any 16 bytes in
/// base64 do (these are RFC 6455's own example).
const STAND_IN_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Marks a request that arrived as an extended CONNECT, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtendedConnect {
    /// The `:protocol` pseudo-header.
    pub(crate) protocol: String,
}

/// Rewrites an extended CONNECT into the HTTP/1.1 upgrade request plugins know, and marks it.
/// `Ok(None)` for any other request (left as it is); `Err` is the answer to a `:protocol` that
/// cannot be a header value.
pub(crate) fn rewrite<B>(request: &mut Request<B>) -> Result<Option<String>, Box<Response<Body>>> {
    if request.method() != Method::CONNECT {
        return Ok(None);
    }
    let Some(protocol) = request.extensions().get::<hyper::ext::Protocol>() else {
        return Ok(None);
    };
    let protocol = protocol.as_str().to_owned();
    let Ok(value) = HeaderValue::from_str(&protocol) else {
        return Err(Box::new(host_response(
            StatusCode::BAD_REQUEST,
            "the :protocol pseudo-header is not a valid token",
        )));
    };
    *request.method_mut() = Method::GET;
    let headers = request.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, value);
    if protocol.eq_ignore_ascii_case("websocket") {
        headers.insert(SEC_WEBSOCKET_KEY, HeaderValue::from_static(STAND_IN_KEY));
    }
    request.extensions_mut().insert(ExtendedConnect {
        protocol: protocol.clone(),
    });
    Ok(Some(protocol))
}

/// The answer to an extended CONNECT: a `101` becomes the `200` that opens the stream, without
/// `Connection`, `Upgrade` and `Sec-WebSocket-Accept`. Any other success would tell the client
/// its stream is open when no session runs on it, so it becomes `502`; failures pass as they
/// are.
pub(crate) fn answer(mut response: Response<Body>) -> Response<Body> {
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        for name in [CONNECTION, UPGRADE, SEC_WEBSOCKET_ACCEPT] {
            headers.remove(name);
        }
        response
    } else if status.is_success() {
        tracing::debug!(
            status = status.as_u16(),
            "the plugin answered an extended CONNECT without switching protocols"
        );
        host_response(
            StatusCode::BAD_GATEWAY,
            "the plugin did not switch to the requested protocol",
        )
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: &str) -> Request<()> {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .version(hyper::Version::HTTP_2)
            .uri("https://example.test/echo")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from(protocol));
        request
    }

    #[test]
    fn a_websocket_connect_becomes_an_upgrade_request() {
        let mut request = connect("websocket");
        assert_eq!(rewrite(&mut request).unwrap().as_deref(), Some("websocket"));
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.headers()[UPGRADE], "websocket");
        assert_eq!(request.headers()[CONNECTION], "upgrade");
        assert_eq!(request.headers()[SEC_WEBSOCKET_KEY], STAND_IN_KEY);
        assert!(request.extensions().get::<ExtendedConnect>().is_some());
    }

    #[test]
    fn another_protocol_gets_no_key_and_plain_requests_are_left_alone() {
        let mut request = connect("kv/1");
        assert_eq!(rewrite(&mut request).unwrap().as_deref(), Some("kv/1"));
        assert!(!request.headers().contains_key(SEC_WEBSOCKET_KEY));
        let mut get = Request::builder().uri("/echo").body(()).unwrap();
        assert_eq!(rewrite(&mut get).unwrap(), None);
        assert!(get.headers().is_empty());
    }

    #[test]
    fn switching_protocols_becomes_200_and_other_successes_502() {
        let mut switching = Response::new(Body::default());
        *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        switching
            .headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        switching
            .headers_mut()
            .insert(SEC_WEBSOCKET_ACCEPT, HeaderValue::from_static("x"));
        let opened = answer(switching);
        assert_eq!(opened.status(), StatusCode::OK);
        assert!(opened.headers().is_empty());
        let ok = host_response(StatusCode::OK, "hello");
        assert_eq!(answer(ok).status(), StatusCode::BAD_GATEWAY);
        let refused = host_response(StatusCode::FORBIDDEN, "no");
        assert_eq!(answer(refused).status(), StatusCode::FORBIDDEN);
    }
}
