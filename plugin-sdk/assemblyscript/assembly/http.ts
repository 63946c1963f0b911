// Outbound HTTP to the endpoints the operator declared for the dispatcher
// ([[dispatchers.endpoints]]; docs/ABI.md section 17). Name the endpoint and give
// a target under its URL; the host adds TLS, credentials and headers. Several
// requests may run at once; no wait outlives the call's deadline.
//
//   const status = httpFetch("influx", "POST", "/write?db=x", [], body.ptr, body.length, 5000);
//   return httpOutcome(status);

import { ByteWriter } from "./writer";
import { STATUS_OK, retry, reject } from "./abi";
import { utf8Length, encodeUtf8 } from "./utf8";

// @ts-ignore: decorator
@external("collector", "http_send")
declare function host_http_send(ptr: usize, len: usize): i32;
// @ts-ignore: decorator
@external("collector", "http_wait")
declare function host_http_wait(handles: usize, count: usize, timeoutMs: i32): i32;
// @ts-ignore: decorator
@external("collector", "http_status")
declare function host_http_status(h: i32): i32;
// @ts-ignore: decorator
@external("collector", "http_body_len")
declare function host_http_body_len(h: i32): i32;
// @ts-ignore: decorator
@external("collector", "http_read")
declare function host_http_read(h: i32, dst: usize, len: usize, offset: i32): i32;
// @ts-ignore: decorator
@external("collector", "http_error")
declare function host_http_error(h: i32, dst: usize, len: usize): i32;
// @ts-ignore: decorator
@external("collector", "http_close")
declare function host_http_close(h: i32): void;

/** `httpSend` refusals, `httpStatus` failures (ABI 17.3). */
export const HTTP_ERR_UNKNOWN_ENDPOINT: i32 = -1;
export const HTTP_ERR_BAD_TARGET: i32 = -2;
export const HTTP_ERR_BUSY: i32 = -3;
export const HTTP_ERR_TOO_LARGE: i32 = -4;
export const HTTP_ERR_MALFORMED: i32 = -5;
export const HTTP_ERR_HEADER: i32 = -6;
export const HTTP_ERR_NO_HANDLE: i32 = -7;
export const HTTP_ERR_UNAVAILABLE: i32 = -8;
export const HTTP_PENDING: i32 = 0;
export const HTTP_FAIL_CONNECT: i32 = -10;
export const HTTP_FAIL_TIMEOUT: i32 = -11;
export const HTTP_FAIL_RESPONSE_TOO_LARGE: i32 = -12;
export const HTTP_FAIL_IO: i32 = -14;
export const HTTP_WAIT_NONE: i32 = -1;
export const HTTP_LAST_REFUSAL: i32 = -1;

/** A request header. */
export class Header {
  constructor(public name: string, public value: string) {}
}

function field(w: ByteWriter, s: string): void {
  const n = utf8Length(s);
  store<u32>(w.reserve(4), <u32>n);
  w.length += 4;
  const p = w.reserve(n);
  w.length += encodeUtf8(s, p);
}

/** Writes the bytes `collector.http_send` takes (ABI 17.2) into `w`. */
export function httpEncode(w: ByteWriter, endpoint: string, method: string, target: string,
                           headers: Header[], bodyPtr: usize, bodyLen: usize): void {
  field(w, endpoint);
  field(w, method);
  field(w, target);
  store<u32>(w.reserve(4), <u32>headers.length);
  w.length += 4;
  for (let i = 0; i < headers.length; i++) {
    field(w, headers[i].name);
    field(w, headers[i].value);
  }
  store<u32>(w.reserve(4), <u32>bodyLen);
  w.length += 4;
  w.bytes(bodyPtr, bodyLen);
}

// @ts-ignore: decorator
@lazy const request = new ByteWriter(1024);

/** Starts a request: a handle >= 0, or a refusal (HTTP_ERR_*). */
export function httpSend(endpoint: string, method: string, target: string, headers: Header[],
                         bodyPtr: usize, bodyLen: usize): i32 {
  request.reset();
  httpEncode(request, endpoint, method, target, headers, bodyPtr, bodyLen);
  return host_http_send(request.ptr, request.length);
}

/** The index in `handles` of one that has finished, or HTTP_WAIT_NONE. */
export function httpWait(handles: StaticArray<i32>, timeoutMs: i32): i32 {
  return host_http_wait(changetype<usize>(handles), handles.length, timeoutMs);
}

/** The HTTP status, HTTP_PENDING, or a failure (HTTP_FAIL_*). */
export function httpStatus(h: i32): i32 {
  return host_http_status(h);
}

/** Appends the response body to `out`; its length, or a negative code. */
export function httpBody(h: i32, out: ByteWriter): i32 {
  const len = host_http_body_len(h);
  if (len < 0) return len;
  let at = 0;
  while (at < len) {
    const p = out.reserve(<usize>(len - at));
    const n = host_http_read(h, p, <usize>(len - at), at);
    if (n <= 0) break;
    out.length += <usize>n;
    at += n;
  }
  return at;
}

/** Why a request failed (HTTP_LAST_REFUSAL: the last refused send). */
export function httpError(h: i32): string {
  const buf = new ByteWriter(1024);
  const n = host_http_error(h, buf.ptr, buf.capacity);
  buf.length = <usize>max(n, 0);
  const text = buf.toString();
  buf.dispose();
  return text;
}

/** Forgets a request, cancelling it if it still runs. */
export function httpClose(h: i32): void {
  host_http_close(h);
}

/** Sends, waits at most `timeoutMs`: the HTTP status (> 0), or a negative code
 * (HTTP_FAIL_TIMEOUT when the wait ended first). */
export function httpFetch(endpoint: string, method: string, target: string, headers: Header[],
                          bodyPtr: usize, bodyLen: usize, timeoutMs: i32): i32 {
  const h = httpSend(endpoint, method, target, headers, bodyPtr, bodyLen);
  if (h < 0) return h;
  const handles = new StaticArray<i32>(1);
  handles[0] = h;
  let status = HTTP_FAIL_TIMEOUT;
  if (httpWait(handles, timeoutMs) != HTTP_WAIT_NONE) status = httpStatus(h);
  httpClose(h);
  return status;
}

/** What every bundled dispatcher answers for a status (ABI 17.4): ok on 2xx/3xx;
 * retry on 429, 5xx and a backend that cannot be reached; reject otherwise. */
export function httpOutcome(status: i32): i32 {
  if (status >= 200 && status < 400) return STATUS_OK;
  if (status == 429 || status >= 500) return retry("the backend answered " + status.toString());
  if (status >= 400) return reject("the backend answered " + status.toString());
  if (status == HTTP_ERR_BUSY || status <= HTTP_FAIL_CONNECT)
    return retry("the backend could not be reached (" + status.toString() + ")");
  return reject("the host refused the request (" + status.toString() + "; see the daemon's log)");
}
