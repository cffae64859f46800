//! Blocking work called from async code (see functions/CONVENTIONS.md).

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which blocks (CPU-heavy work, file reads and writes) and borrows from its caller,
/// without stalling the other tasks of the async worker it is called on: on a multi-threaded
/// runtime the worker first hands those tasks to another thread (`block_in_place`). A
/// current-thread runtime (`#[tokio::test]`) has no other thread to hand them to: `f` runs where
/// it is. Work that can own its inputs goes to `tokio::task::spawn_blocking` instead.
pub(crate) fn in_place<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
