//! Reading and writing the buffers a plugin passes to the host's imports: the
//! whole buffer must lie in its memory, whatever the host then takes of it.

use collector_sdk::abi;
use wasmtime::Caller;

fn memory<T>(caller: &mut Caller<'_, T>) -> wasmtime::Result<wasmtime::Memory> {
    caller
        .get_export(abi::MEMORY)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::format_err!("plugin has no `memory` export"))
}

/// Reads the first `max` of the `len` bytes the guest passed at `ptr` (the whole
/// buffer must lie in its memory); also returns `len`.
///
/// # Errors
/// A trap, when the buffer is not in the guest's memory.
pub fn guest_bytes<T>(
    caller: &mut Caller<'_, T>,
    ptr: i32,
    len: i32,
    max: usize,
) -> wasmtime::Result<(Vec<u8>, usize)> {
    let mem = memory(caller)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    let data = mem.data(&caller);
    if start.checked_add(len).is_none_or(|end| end > data.len()) {
        return Err(wasmtime::format_err!(
            "plugin passed a buffer outside its memory"
        ));
    }
    let bytes = data.get(start..start + len.min(max)).unwrap_or_default();
    Ok((bytes.to_vec(), len))
}

/// Writes `bytes` into the guest's memory at `ptr` (the whole range must lie in it).
///
/// # Errors
/// A trap, when the range is not in the guest's memory.
pub fn guest_write<T>(caller: &mut Caller<'_, T>, ptr: i32, bytes: &[u8]) -> wasmtime::Result<()> {
    let mem = memory(caller)?;
    mem.write(caller, ptr as u32 as usize, bytes)
        .map_err(|_| wasmtime::format_err!("plugin passed a buffer outside its memory"))
}
