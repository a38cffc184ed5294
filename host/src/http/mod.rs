//! One HTTP request, from the checks it must pass before routing to the answer or the upgrade:
//! intake → request path → dispatch (route, admission, `handle`) → guest response or upgrade.
//! An HTTP/2 extended CONNECT is put in its HTTP/1.1 upgrade form first (`connect`).

pub mod admission;
pub(crate) mod connect;
pub(crate) mod dispatch;
pub mod gauge;
pub(crate) mod guest_response;
pub(crate) mod intake;
pub(crate) mod request_path;
pub(crate) mod transport;
pub(crate) mod upgrade;
