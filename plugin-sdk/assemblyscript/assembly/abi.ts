// The guest side of ABI v1 (docs/ABI.md): the host's imports with safe wrappers,
// and the four exports, which call the plugin's init and dispatch functions given
// to register(). AssemblyScript only exports what the entry file exports, so a
// plugin re-exports these four (see the README).

import { Batch } from "./batch";
import { ByteWriter } from "./writer";
import { utf8Valid, utf8Length, encodeUtf8 } from "./utf8";

/** The batch is taken care of / the instance is ready. */
export const STATUS_OK: i32 = 0;
/** Transient failure: the host retries the same batch with backoff. */
export const STATUS_RETRY: i32 = 1;
/** Final failure: the batch (or config) is refused. */
export const STATUS_REJECT: i32 = 2;

/** Log levels of collector.log. */
export const LOG_ERROR: i32 = 1;
export const LOG_WARN: i32 = 2;
export const LOG_INFO: i32 = 3;
export const LOG_DEBUG: i32 = 4;
export const LOG_TRACE: i32 = 5;

// The raw imports. AssemblyScript only emits an import that is used, so a plugin
// that never logs imports nothing.
// @ts-ignore: decorator
@external("collector", "log")
declare function host_log(level: i32, ptr: usize, len: usize): void;
// @ts-ignore: decorator
@external("collector", "set_error")
declare function host_set_error(ptr: usize, len: usize): void;

/** Longest message the host reads (it cuts longer ones). */
export const MAX_MESSAGE_BYTES: usize = 1 << 20;

// Scratch for encoding messages (kept: no allocation per message once it is big enough).
// @ts-ignore: decorator
@lazy let scratch: usize = 0;
// @ts-ignore: decorator
@lazy let scratchCap: usize = 0;

function encodeMessage(message: string): usize {
  const n = utf8Length(message);
  if (n > scratchCap) {
    if (scratch) heap.free(scratch);
    scratchCap = max<usize>(n, 256);
    scratch = heap.alloc(scratchCap);
  }
  return encodeUtf8(message, scratch);
}

/** Logs one line at `level` (LOG_ERROR .. LOG_TRACE) in the daemon's log. */
export function log(level: i32, message: string): void {
  const n = encodeMessage(message);
  host_log(level, scratch, min(n, MAX_MESSAGE_BYTES));
}

/** Logs `len` UTF-8 bytes at `ptr` (for example a ByteWriter's content) without copying. */
export function logBytes(level: i32, ptr: usize, len: usize): void {
  host_log(level, ptr, min(len, MAX_MESSAGE_BYTES));
}

/** Logs the content of a writer. */
export function logWriter(level: i32, w: ByteWriter): void {
  logBytes(level, w.ptr, w.length);
}

export function logError(message: string): void { log(LOG_ERROR, message); }
export function logWarn(message: string): void { log(LOG_WARN, message); }
export function logInfo(message: string): void { log(LOG_INFO, message); }
export function logDebug(message: string): void { log(LOG_DEBUG, message); }
export function logTrace(message: string): void { log(LOG_TRACE, message); }

// @ts-ignore: decorator
@lazy let errorWasSet = false;

/** Sets the message that explains a non-OK status of the current call (the last one wins). */
export function setError(message: string): void {
  const n = encodeMessage(message);
  host_set_error(scratch, min(n, MAX_MESSAGE_BYTES));
  errorWasSet = true;
}

/** setError(message), then STATUS_RETRY: `return retry("broker down")`. */
export function retry(message: string): i32 {
  setError(message);
  return STATUS_RETRY;
}

/** setError(message), then STATUS_REJECT: `return reject("bad batch")`. */
export function reject(message: string): i32 {
  setError(message);
  return STATUS_REJECT;
}

// ------------------------------------------------------------------ registration

/** The plugin's init: gets the config JSON text; false (after setError) refuses it. */
export type InitFn = (config: string) => bool;
/** The plugin's dispatch: returns STATUS_OK, or retry(msg) / reject(msg). */
export type DispatchFn = (batch: Batch) => i32;

// @ts-ignore: decorator
@lazy let initFn: InitFn | null = null;
// @ts-ignore: decorator
@lazy let dispatchFn: DispatchFn | null = null;
// @ts-ignore: decorator
@lazy let ready = false;
// @ts-ignore: decorator
@lazy let batch = new Batch();

/**
 * Registers the plugin's functions. Call it once at the top level of the entry file
 * (top-level code runs when the module is instantiated, before collector_init).
 */
export function register(init: InitFn, dispatch: DispatchFn): void {
  initFn = init;
  dispatchFn = dispatch;
}

/** Frees what the call left behind: with `--runtime minimal` nothing else does. */
// @ts-ignore: decorator
@inline function afterCall(): void {
  if (ASC_RUNTIME != 0) __collect(); // 0 = stub, which never frees
}

// ------------------------------------------------------------------ exports

/** The ABI v1 marker: its presence is what counts; the host never calls it. */
export function collector_abi_version_1(): void {}

// The one buffer the host writes into, reused for every call (the host holds at
// most one at a time and never touches it after init/dispatch returns).
// @ts-ignore: decorator
@lazy let buffer: usize = 0;
// @ts-ignore: decorator
@lazy let bufferCap: usize = 0;

/** Largest buffer collector_alloc hands out (the runtime's block limit, 1 GiB, minus headroom). */
const MAX_ALLOC: usize = (1 << 30) - 4096;

/** A guest-owned buffer of at least `len` bytes, or 0. */
export function collector_alloc(len: i32): usize {
  if (len < 0 || <usize>len > MAX_ALLOC) return 0;
  if (<usize>len > bufferCap || buffer == 0) {
    if (buffer) heap.free(buffer);
    let cap = max<usize>(<usize>len, 256);
    // Round up to 64 KiB steps above 64 KiB, so that slowly growing batches do not
    // reallocate every time.
    if (cap > 65536) cap = (cap + 65535) & ~(<usize>65535);
    if (cap > MAX_ALLOC) cap = <usize>len;
    buffer = heap.alloc(cap);
    bufferCap = cap;
  }
  return buffer;
}

/** Receives the config (UTF-8 JSON, `len` bytes at `ptr`); returns a status. */
export function collector_init(ptr: usize, len: i32): i32 {
  errorWasSet = false;
  ready = false;
  let status = STATUS_REJECT;
  const f = initFn;
  if (f === null) {
    setError("the plugin registered no functions: call register(init, dispatch) at the top level of its entry file");
  } else if (!utf8Valid(ptr, <usize>len)) {
    setError("plugin config is not UTF-8");
  } else {
    const config = String.UTF8.decodeUnsafe(ptr, <usize>len, false);
    if (f(config)) {
      ready = true;
      status = STATUS_OK;
    } else if (!errorWasSet) {
      setError("init refused the config");
    }
  }
  afterCall();
  return status;
}

/** Receives one batch (`len` bytes at `ptr`); returns the plugin's status. */
export function collector_dispatch(ptr: usize, len: i32): i32 {
  errorWasSet = false;
  let status = STATUS_REJECT;
  const f = dispatchFn;
  if (!ready || f === null) {
    setError("collector_dispatch called before a successful collector_init");
  } else {
    batch.reset(ptr, <usize>len);
    status = f(batch);
    if (status != STATUS_OK && !errorWasSet) {
      setError(status == STATUS_RETRY ? "dispatch asked for a retry" : "dispatch refused the batch (status " + status.toString() + ")");
    }
    batch.reset(0, 0);
  }
  afterCall();
  return status;
}
