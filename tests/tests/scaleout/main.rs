//! Scale-out end to end: two real `switchyard` processes share the `chat` example's rooms
//! through a real `redis-server` (`--pubsub redis://…`), with a real nginx in front, and the
//! broker killed and restarted under them. Every process is started by the test on free
//! loopback ports and stopped by it (also when it fails).
//!
//! redis-server and nginx come from Debian's packages, which `tests/services/setup.sh`
//! installs (run by `tests/run-all.sh`); without them each test is skipped loudly, or fails
//! when run-all.sh said they were ready (see `switchyard_tests::services`).
//!
//! - [`cluster`]: the processes of one test (Redis, hosts A and B).
//! - [`member`]: a chat member speaking to one host, and the chat's JSON events.
//! - [`rooms`]: one room over two hosts: messages, notices, posts, exactly once and in order.
//! - [`balancer`]: the same through nginx, and the README's configuration is the tested one.
//! - [`outage`]: Redis killed mid-session and restarted; Redis down when the hosts start.

mod balancer;
mod cluster;
mod member;
mod outage;
mod rooms;
