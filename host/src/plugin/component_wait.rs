//! WASI 0.2's blocking calls, bounded by the plugin call's deadline.
//!
//! The epoch deadline interrupts wasm code only: a component blocked in the
//! host (`wasi:io/poll.poll` on a timer, as Python's `time.sleep` is;
//! `pollable.block`; a stream's `blocking-*` call on a stream that never gets
//! ready) would hold its worker past `timeout_ms`. These definitions shadow
//! wasmtime-wasi's synchronous `wasi:io/poll` and `wasi:io/streams` with the
//! same calls under a timeout at the call's deadline; a wait that reaches it
//! traps with [`WaitPastDeadline`], which the host counts as a timeout and
//! answers by re-creating the instance, as for a loop in wasm.
//!
//! The calls that cannot block are passed through unchanged.

use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    HostInputStream as AsyncInput, HostOutputStream as AsyncOutput,
};
use wasmtime_wasi_io::poll::DynPollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream, StreamError, StreamResult};

/// The trap of a wait in WASI that reached the call's deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "the plugin waited in WASI (wasi:io poll, block or a blocking stream call) past the call's deadline"
)]
pub struct WaitPastDeadline;

/// The resource table of a component and its current call's deadline.
pub struct BoundedIo<'a> {
    pub table: &'a mut ResourceTable,
    pub deadline: Instant,
}

struct HasBoundedIo;

impl HasData for HasBoundedIo {
    type Data<'a> = BoundedIo<'a>;
}

/// Shadows the synchronous `wasi:io/poll` and `wasi:io/streams` of `linker`
/// (added by `wasmtime_wasi::p2::add_to_linker_sync` before) with the bounded ones.
///
/// # Errors
/// When wasmtime refuses a definition.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    io: fn(&mut T) -> BoundedIo<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    poll::add_to_linker::<T, HasBoundedIo>(linker, io)?;
    streams::add_to_linker::<T, HasBoundedIo>(linker, io)?;
    linker.allow_shadowing(false);
    Ok(())
}

impl BoundedIo<'_> {
    /// Runs `f` on tokio until it ends or the deadline passes.
    fn wait<R>(deadline: Instant, f: impl Future<Output = R>) -> Result<R, WaitPastDeadline> {
        in_tokio(async move {
            tokio::time::timeout_at(deadline.into(), f)
                .await
                .map_err(|_| WaitPastDeadline)
        })
    }

    fn stream<R>(deadline: Instant, f: impl Future<Output = StreamResult<R>>) -> StreamResult<R> {
        Self::wait(deadline, f).map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))?
    }
}

impl poll::Host for BoundedIo<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let d = self.deadline;
        Self::wait(d, async_poll::Host::poll(self.table, pollables))?
    }
}

impl poll::HostPollable for BoundedIo<'_> {
    fn ready(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<bool> {
        poll::HostPollable::ready(self.table, p)
    }
    fn block(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<()> {
        let d = self.deadline;
        Self::wait(d, async_poll::HostPollable::block(self.table, p))?
    }
    fn drop(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.table, p)
    }
}

impl streams::Host for BoundedIo<'_> {
    fn convert_stream_error(&mut self, e: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table, e)
    }
}

impl streams::HostInputStream for BoundedIo<'_> {
    fn drop(&mut self, s: Resource<DynInputStream>) -> wasmtime::Result<()> {
        streams::HostInputStream::drop(self.table, s)
    }
    fn read(&mut self, s: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, s, len)
    }
    fn blocking_read(&mut self, s: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        let d = self.deadline;
        Self::stream(d, AsyncInput::blocking_read(self.table, s, len))
    }
    fn skip(&mut self, s: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, s, len)
    }
    fn blocking_skip(&mut self, s: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        let d = self.deadline;
        Self::stream(d, AsyncInput::blocking_skip(self.table, s, len))
    }
    fn subscribe(
        &mut self,
        s: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.table, s)
    }
}

impl streams::HostOutputStream for BoundedIo<'_> {
    fn drop(&mut self, s: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        streams::HostOutputStream::drop(self.table, s)
    }
    fn check_write(&mut self, s: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.table, s)
    }
    fn write(&mut self, s: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.table, s, bytes)
    }
    fn blocking_write_and_flush(
        &mut self,
        s: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        let d = self.deadline;
        Self::stream(
            d,
            AsyncOutput::blocking_write_and_flush(self.table, s, bytes),
        )
    }
    fn flush(&mut self, s: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table, s)
    }
    fn blocking_flush(&mut self, s: Resource<DynOutputStream>) -> StreamResult<()> {
        let d = self.deadline;
        let s = Resource::new_borrow(s.rep());
        Self::stream(d, AsyncOutput::blocking_flush(self.table, s))
    }
    fn subscribe(
        &mut self,
        s: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.table, s)
    }
    fn write_zeroes(&mut self, s: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.table, s, len)
    }
    fn blocking_write_zeroes_and_flush(
        &mut self,
        s: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        let d = self.deadline;
        Self::stream(
            d,
            AsyncOutput::blocking_write_zeroes_and_flush(self.table, s, len),
        )
    }
    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table, dst, src, len)
    }
    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        let d = self.deadline;
        Self::stream(d, AsyncOutput::blocking_splice(self.table, dst, src, len))
    }
}
