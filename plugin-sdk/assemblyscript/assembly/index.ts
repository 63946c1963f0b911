// collector plugin SDK for AssemblyScript (ABI v1, docs/ABI.md).
//
//   abi.ts     imports (log, setError), statuses, register(), the four exports
//   batch.ts   zero-copy batch reader: Batch, Sample, Utf8, Num, Value, iterators
//   json.ts    JsonWriter: a sample as Ceilometer's JSON dict (the Rust SDK's rules)
//   writer.ts  ByteWriter: growable byte buffer (text, integers, shortest floats)
//   config.ts  parseJson() for the config text
//   set.ts     Utf8Set: distinct byte strings without allocating
//   ryu.ts     shortest round-trip f64 formatting
//   http.ts    outbound HTTP to the dispatcher's declared endpoints
//
// A plugin's entry file must re-export the four ABI functions:
//   export { collector_abi_version_1, collector_alloc, collector_init, collector_dispatch } from "collector-plugin-sdk";

export {
  STATUS_OK, STATUS_RETRY, STATUS_REJECT,
  LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE, MAX_MESSAGE_BYTES,
  log, logBytes, logWriter, logError, logWarn, logInfo, logDebug, logTrace,
  setError, retry, reject,
  InitFn, DispatchFn, register,
  collector_abi_version_1, collector_alloc, collector_init, collector_dispatch,
} from "./abi";
export {
  MAX_NESTING, MAX_DEPTH, Presence, NumberKind, ValueKind,
  Utf8, Num, Value, ListIter, MapIter, Sample, Batch,
} from "./batch";
export { JsonWriter } from "./json";
export { ByteWriter, formatF64 } from "./writer";
export { JsonKind, JsonNode, parseJson, jsonError } from "./config";
export { Utf8Set } from "./set";
export { writeF64, F64_MAX_CHARS, F64_BUFFER_BYTES } from "./ryu";
export {
  Header, httpEncode, httpSend, httpWait, httpStatus, httpBody, httpError, httpClose, httpFetch, httpOutcome,
  HTTP_ERR_UNKNOWN_ENDPOINT, HTTP_ERR_BAD_TARGET, HTTP_ERR_BUSY, HTTP_ERR_TOO_LARGE, HTTP_ERR_MALFORMED,
  HTTP_ERR_HEADER, HTTP_ERR_NO_HANDLE, HTTP_ERR_UNAVAILABLE, HTTP_PENDING, HTTP_FAIL_CONNECT, HTTP_FAIL_TIMEOUT,
  HTTP_FAIL_RESPONSE_TOO_LARGE, HTTP_FAIL_IO, HTTP_WAIT_NONE, HTTP_LAST_REFUSAL,
} from "./http";
export { utf8Valid, utf8EqualsString, fnv1a, decodeUtf8, encodeUtf8, utf8Length } from "./utf8";
