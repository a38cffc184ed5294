//! The resource attacks of the hostile cases: burning CPU, exhausting memory and flooding the
//! client. Each one really does the work, so the host's limits, not the plugin's restraint,
//! are what ends it.

use std::hint::black_box;

use switchyard_sdk::Session;

/// How much memory each step of [`exhaust_memory`] takes.
const MIB: usize = 1024 * 1024;

/// The size of each write of [`flood`].
const FLOOD_CHUNK: usize = 64 * 1024;

/// Spins forever without yielding to the host.
///
/// The counter goes through `black_box` on every turn so that the optimiser cannot prove the
/// loop empty and shrink it into something cheaper than real CPU work; only the host can stop
/// this (by interrupting the instance).
pub(crate) fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = black_box(turns.wrapping_add(1));
    }
}

/// Allocates 1 MiB blocks and keeps them all until the allocator fails, then traps.
///
/// Every byte of each block is written, so the host really commits the pages rather than only
/// reserving them. Each block passes through `black_box` before it is kept, so the optimiser
/// cannot drop allocations whose contents nobody reads. `try_reserve_exact` rather than a plain
/// allocation turns the refusal into a panic that says how far the bomb got; an allocation that
/// fails elsewhere (growing the list of blocks, formatting the panic) aborts instead, which
/// traps all the same.
pub(crate) fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = Vec::new();
        if block.try_reserve_exact(MIB).is_err() {
            panic!(
                "misbehave: memory refused after {} MiB, as expected",
                hoard.len()
            );
        }
        // Not zero: a zero-filled block could be satisfied by fresh pages without touching them.
        block.resize(MIB, 0xa5);
        hoard.push(black_box(block));
    }
}

/// Writes 64 KiB chunks to the client until a write fails, and returns how many were taken.
///
/// A write completes only when the host has taken the bytes, so against a client that does
/// not read this stalls on the host's backpressure instead of growing any buffer; it ends when
/// the host gives up on the connection and drops the stream.
pub(crate) async fn flood(session: &mut Session) -> u64 {
    let mut chunks = 0;
    while session.write_all(vec![b'x'; FLOOD_CHUNK]).await.is_ok() {
        chunks += 1;
    }
    chunks
}
