//! The guest side of the ABI: raw imports, buffer ownership and the glue that
//! [`export_dispatcher!`](crate::export_dispatcher) expands to. Not for direct use.

use core::cell::RefCell;
use std::alloc::Layout;

use crate::abi;
use crate::{Batch, Config, Dispatcher, Outcome};

#[cfg(target_family = "wasm")]
mod sys {
    #[link(wasm_import_module = "collector")]
    unsafe extern "C" {
        pub fn log(level: i32, ptr: *const u8, len: usize);
        pub fn set_error(ptr: *const u8, len: usize);
    }
}

pub fn log(level: i32, msg: &str) {
    #[cfg(target_family = "wasm")]
    // SAFETY: the host reads `len` bytes at `ptr`, which `msg` owns for the call.
    unsafe {
        sys::log(level, msg.as_ptr(), msg.len())
    };
    #[cfg(not(target_family = "wasm"))]
    eprintln!("[plugin level {level}] {msg}");
}

fn set_error(msg: &str) {
    #[cfg(target_family = "wasm")]
    // SAFETY: as for `log`.
    unsafe {
        sys::set_error(msg.as_ptr(), msg.len())
    };
    #[cfg(not(target_family = "wasm"))]
    eprintln!("[plugin error] {msg}");
}

/// Holds the plugin's dispatcher, and its last snapshot until the host has read
/// it. Wasm instances are single-threaded.
pub struct Slot<T>(RefCell<Option<T>>, RefCell<Vec<u8>>);

// SAFETY: a wasm instance runs one call at a time on one thread; the slot is never shared.
unsafe impl<T> Sync for Slot<T> {}

impl<T> Slot<T> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Slot(RefCell::new(None), RefCell::new(Vec::new()))
    }
}

fn layout(len: usize) -> Option<Layout> {
    Layout::from_size_align(len, 8).ok()
}

/// The one buffer the host writes configs and batches into, kept between calls.
///
/// The host holds at most one buffer at a time and the SDK is done with it when
/// the call returns (docs/ABI.md 5.3), so one buffer, grown when a larger one is
/// asked for, serves every call: no allocation and no page faults per batch.
struct Spare(core::cell::Cell<(usize, usize)>);

// SAFETY: a wasm instance runs one call at a time on one thread.
unsafe impl Sync for Spare {}

static SPARE: Spare = Spare(core::cell::Cell::new((0, 0)));

/// `collector_alloc`: a guest-owned buffer of `len` bytes, or 0.
pub fn alloc(len: i32) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        return 0;
    };
    if len == 0 {
        return 8; // a dangling, aligned, never-dereferenced address
    }
    let (ptr, cap) = SPARE.0.get();
    if ptr != 0 && len <= cap {
        return ptr as i32;
    }
    let want = len.checked_next_power_of_two().unwrap_or(len).max(64 << 10);
    let Some(l) = layout(want) else { return 0 };
    // SAFETY: the layout has a non-zero size.
    let new = unsafe { std::alloc::alloc(l) } as usize;
    if new == 0 {
        return 0;
    }
    if let (true, Some(old)) = (ptr != 0, layout(cap)) {
        // SAFETY: allocated here with that layout; the host no longer holds it.
        unsafe { std::alloc::dealloc(ptr as *mut u8, old) }
    }
    SPARE.0.set((new, want));
    new as i32
}

/// A buffer from `collector_alloc`, filled by the host, read during one call.
struct Owned {
    ptr: *mut u8,
    len: usize,
}

impl Owned {
    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the host wrote `len` bytes into the buffer it got from `alloc`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

fn owned(ptr: i32, len: i32) -> Owned {
    Owned {
        ptr: ptr as u32 as usize as *mut u8,
        len: len as u32 as usize,
    }
}

/// `collector_init`.
///
/// # Safety
/// `ptr`/`len` must come from `collector_alloc`, filled by the host.
pub unsafe fn init<T: Dispatcher>(slot: &Slot<T>, ptr: i32, len: i32) -> i32 {
    let buf = owned(ptr, len);
    let Ok(text) = core::str::from_utf8(buf.bytes()) else {
        set_error("plugin config is not UTF-8");
        return abi::STATUS_REJECT;
    };
    match T::init(Config::new(text)) {
        Ok(d) => {
            *slot.0.borrow_mut() = Some(d);
            abi::STATUS_OK
        }
        Err(msg) => {
            set_error(&msg);
            abi::STATUS_REJECT
        }
    }
}

/// `collector_dispatch`.
///
/// # Safety
/// `ptr`/`len` must come from `collector_alloc`, filled by the host.
pub unsafe fn dispatch<T: Dispatcher>(slot: &Slot<T>, ptr: i32, len: i32) -> i32 {
    let buf = owned(ptr, len);
    let mut guard = slot.0.borrow_mut();
    let Some(d) = guard.as_mut() else {
        set_error("collector_dispatch called before a successful collector_init");
        return abi::STATUS_REJECT;
    };
    match d.dispatch(Batch::new(buf.bytes())) {
        Outcome::Ok => abi::STATUS_OK,
        Outcome::Retry(msg) => {
            set_error(&msg);
            abi::STATUS_RETRY
        }
        Outcome::Reject(msg) => {
            set_error(&msg);
            abi::STATUS_REJECT
        }
    }
}

/// `collector_snapshot`: `(ptr << 32) | len` of the state, valid until the next call; 0 = none.
pub fn snapshot<T: Dispatcher>(slot: &Slot<T>) -> i64 {
    let state = match slot.0.borrow().as_ref() {
        Some(d) => d.snapshot(),
        None => None,
    };
    let mut keep = slot.1.borrow_mut();
    match state {
        Some(bytes) if !bytes.is_empty() => {
            *keep = bytes;
            ((keep.as_ptr() as usize as i64) << 32) | keep.len() as i64
        }
        _ => {
            keep.clear();
            0
        }
    }
}

/// `collector_restore`.
///
/// # Safety
/// `ptr`/`len` must come from `collector_alloc`, filled by the host.
pub unsafe fn restore<T: Dispatcher>(slot: &Slot<T>, ptr: i32, len: i32) -> i32 {
    let buf = owned(ptr, len);
    let mut guard = slot.0.borrow_mut();
    let Some(d) = guard.as_mut() else {
        set_error("collector_restore called before a successful collector_init");
        return abi::STATUS_REJECT;
    };
    match d.restore(buf.bytes()) {
        Ok(()) => abi::STATUS_OK,
        Err(msg) => {
            set_error(&msg);
            abi::STATUS_REJECT
        }
    }
}
