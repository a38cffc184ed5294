//! Test helpers: a poll loop for futures that never wait, and an in-memory [`Transport`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::session::{Closed, Transport};

/// Runs a future that completes without ever waiting, as everything over [`Script`] does.
pub(crate) fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory transport never makes a future wait"),
    }
}

/// A transport whose input is a fixed list of chunks and whose output is recorded.
#[derive(Debug, Default)]
pub(crate) struct Script {
    /// What each read returns, in order; after the last, input ends.
    pub(crate) input: VecDeque<Vec<u8>>,
    /// Every byte written.
    pub(crate) output: Vec<u8>,
    /// How many writes carried bytes: the number of flushes the client would see.
    pub(crate) writes: usize,
    /// Makes writes fail, as when the client has gone.
    pub(crate) hung_up: bool,
}

impl Script {
    /// A transport that delivers `chunks` one per read.
    pub(crate) fn new(chunks: impl IntoIterator<Item = Vec<u8>>) -> Self {
        Self {
            input: chunks.into_iter().collect(),
            ..Self::default()
        }
    }
}

impl Transport for Script {
    async fn read(&mut self, buf: &mut Vec<u8>) -> usize {
        let chunk = self.input.pop_front().unwrap_or_default();
        buf.extend_from_slice(&chunk);
        chunk.len()
    }

    async fn write_all(&mut self, bytes: Vec<u8>) -> Result<(), Closed> {
        if self.hung_up {
            return Err(Closed);
        }
        self.output.extend_from_slice(&bytes);
        self.writes += 1;
        Ok(())
    }
}
