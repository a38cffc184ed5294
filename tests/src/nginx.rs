//! [`Nginx`]: a real `nginx` (Debian's package, installed by `tests/services/setup.sh`) in front
//! of several hosts, configured from the very file the README shows
//! ([`CONFIG_TEMPLATE`]), with only its addresses replaced. It runs as the current user with
//! its own prefix, pid, logs and temp folders in a temp folder, on a free loopback port.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::child::{ChildProcess, free_loopback_addr, wait_until_listening};

/// Where Debian's package puts the server.
pub const NGINX: &str = "/usr/sbin/nginx";
/// The nginx configuration the README's "Several hosts" section shows (its example addresses
/// are replaced by the test's).
pub const CONFIG_TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scaleout/nginx.conf");
/// The example listen line in [`CONFIG_TEMPLATE`].
const TEMPLATE_LISTEN: &str = "listen 127.0.0.1:8080;";
/// The example upstream servers in [`CONFIG_TEMPLATE`], in order.
const TEMPLATE_SERVERS: &str = "    server 127.0.0.1:8081;\n    server 127.0.0.1:8082;\n";
/// Longest nginx may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running nginx balancing over some hosts, stopped when dropped.
pub struct Nginx {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _process: ChildProcess,
}

impl Nginx {
    /// Starts nginx with [`CONFIG_TEMPLATE`] balancing over `hosts` (round robin, in order).
    pub fn start(hosts: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().expect("a folder for nginx");
        // Workers run as `nobody` when nginx is started by root: they must reach the folder.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("opening nginx's folder to its workers");
        }
        let addr = free_loopback_addr();
        let site = site_config(addr, hosts);
        let site_path = dir.path().join("switchyard.conf");
        std::fs::write(&site_path, site).expect("writing nginx's site configuration");
        let d = dir.path().display();
        // The process-wide part a distribution's nginx.conf holds, pointed at the temp folder.
        let main = format!(
            "worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
             \x20   log_format upstreams '$request $status upstream=$upstream_addr';\n\
             \x20   access_log {d}/access.log upstreams;\n\
             \x20   client_body_temp_path {d}/client_body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   include {};\n\
             }}\n",
            site_path.display()
        );
        let main_path = dir.path().join("nginx.conf");
        std::fs::write(&main_path, main).expect("writing nginx.conf");
        let mut command = Command::new(NGINX);
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&main_path)
            .args(["-g", "daemon off;"]);
        let process = ChildProcess::spawn("nginx", command);
        wait_until_listening("nginx", addr, START_TIMEOUT);
        Self {
            addr,
            dir,
            _process: process,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// nginx's access log so far: one line per finished request, naming the host that served
    /// it (`upstream=…`). A WebSocket's line is written when it closes.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// [`CONFIG_TEMPLATE`] with nginx listening on `listen` and balancing over `hosts`. Panics if
/// the template no longer holds the example lines it replaces, so the tested configuration
/// cannot silently drift from the README's.
pub fn site_config(listen: SocketAddr, hosts: &[SocketAddr]) -> String {
    let template = std::fs::read_to_string(CONFIG_TEMPLATE).expect("reading the nginx template");
    assert_eq!(
        template.matches(TEMPLATE_LISTEN).count(),
        1,
        "{CONFIG_TEMPLATE} must hold `{TEMPLATE_LISTEN}` once"
    );
    assert_eq!(
        template.matches(TEMPLATE_SERVERS).count(),
        1,
        "{CONFIG_TEMPLATE} must hold the example upstream servers once:\n{TEMPLATE_SERVERS}"
    );
    let servers: String = hosts
        .iter()
        .map(|host| format!("    server {host};\n"))
        .collect();
    template
        .replace(TEMPLATE_LISTEN, &format!("listen {listen};"))
        .replace(TEMPLATE_SERVERS, &servers)
}
