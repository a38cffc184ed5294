//! What the host tells its operator: the counters behind `/metrics` ([`metrics`]), their
//! rendering in the Prometheus text format (`export`), the admin listener with `/metrics`,
//! `/healthz` and `/readyz` ([`admin`]), and the access log ([`access_log`]).

pub mod access_log;
pub mod admin;
pub(crate) mod export;
pub mod metrics;
