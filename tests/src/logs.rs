//! Log capture: one process-wide tracing subscriber records every formatted line. Each
//! [`crate::TestHost`] runs inside a span with its own id, so its lines can be told apart from
//! those of hosts that other tests run at the same time.

use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

/// Every line logged so far, in order.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs the capturing subscriber once per test process. Set `SWITCHYARD_TEST_LOG=1` to also
/// see the lines on stderr as they happen.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_TEST_FILTER")
            .unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("debug,notify=info,wasmtime=info,cranelift=info")
            });
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(Capture)
            .init();
    });
}

/// All captured lines that contain `marker`.
pub fn lines_containing(marker: &str) -> Vec<String> {
    LINES
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .iter()
        .filter(|line| line.contains(marker))
        .cloned()
        .collect()
}

#[derive(Clone, Copy)]
struct Capture;

impl<'a> MakeWriter<'a> for Capture {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        LineBuffer(Vec::new())
    }
}

/// Collects one event's output and stores it as one line when dropped.
struct LineBuffer(Vec<u8>);

impl Write for LineBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.0).trim_end().to_owned();
        if std::env::var_os("SWITCHYARD_TEST_LOG").is_some() {
            eprintln!("{line}");
        }
        LINES
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(line);
    }
}
