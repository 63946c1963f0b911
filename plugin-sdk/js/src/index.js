// Dispatcher plugins for collector in JavaScript, built into WebAssembly
// components by componentize-js (docs/plugins-javascript.md).
//
// A plugin reads like one of Ceilometer's old dispatchers:
//
//   import { serve, Retry } from './collector-dispatcher/index.js';
//
//   class Dispatcher {
//     constructor(config) { this.path = config.path ?? '/data/samples.jsonl'; }
//     dispatch(samples) {   // an array of Ceilometer's sample objects
//       ...
//       return undefined;   // or new Retry('why') / new Reject('why')
//     }
//   }
//
//   export const { init, dispatch, snapshot, restore } = serve(Dispatcher);
//
// `serve` makes the four exports of the world collector:dispatcher@1.0.0
// (plugin-sdk/wit/dispatcher.wit): it decodes each batch's ABI v1 bytes into
// objects, turns what `dispatch` returns into the world's outcome, hands
// snapshot/restore state across hot reloads, and sends `console` lines to the
// host's log. `appendFile(path, text)` writes into the dispatcher's granted
// directories (WASI 0.2's filesystem), `toJson(value)` is JSON.stringify that
// keeps the integers beyond 2^53 exact. `fetch('http://ENDPOINT/target')`
// reaches the dispatcher's declared endpoint ENDPOINT over wasi:http; an async
// `dispatch` (a returned promise) is awaited within the call's deadline.
//
// What `dispatch` may return or throw:
// * undefined or `new Ok()`: the samples are taken;
// * `new Retry(message)`: not now (a backend is down); the host keeps the
//   samples and offers them again;
// * `new Reject(message)`: never (the samples are dropped, counted);
// * a thrown error: logged with its stack, and answered as Retry (nothing is
//   lost to a bug; the host's retry policy bounds it). A batch that cannot be
//   decoded is answered Reject.

import hostLog from 'log';

import { DecodeError, MAX_DEPTH, decodeBatch } from './batch.js';
import { appendFile } from './files.js';
import { toJson } from './json.js';

export { DecodeError, MAX_DEPTH, appendFile, decodeBatch, toJson };

/** The samples were taken. */
export class Ok {}

/** The samples may succeed later: the host keeps them and offers them again. */
export class Retry {
  constructor(message) {
    this.message = String(message);
  }
}

/** The samples never will: the host drops them (counted, with the message). */
export class Reject {
  constructor(message) {
    this.message = String(message);
  }
}

function send(level, parts) {
  try {
    hostLog(level, parts.map((p) => (typeof p === 'string' ? p : String(p))).join(' '));
  } catch (e) {
    // a log line must never fail a dispatch
  }
}

/** The host's log: `log.info('...')`; lines are rate-limited and escaped by the host. */
export const log = {
  error: (...m) => send('error', m),
  warn: (...m) => send('warn', m),
  info: (...m) => send('info', m),
  debug: (...m) => send('debug', m),
  trace: (...m) => send('trace', m),
};

// console.* goes to the host's log too (the component has no stdout).
globalThis.console = {
  ...globalThis.console,
  error: log.error,
  warn: log.warn,
  info: log.info,
  log: log.info,
  debug: log.debug,
  trace: log.trace,
};

function outcome(result) {
  if (result === undefined || result === null || result instanceof Ok) return { tag: 'ok' };
  if (result instanceof Retry) return { tag: 'retry', val: result.message };
  if (result instanceof Reject) return { tag: 'reject', val: result.message };
  const kind = result?.constructor?.name ?? typeof result;
  return {
    tag: 'reject',
    val: `dispatch returned ${kind}; return undefined, new Ok(), new Retry(msg) or new Reject(msg)`,
  };
}

function failure(what, e) {
  const name = e?.name ?? typeof e;
  const message = e?.message ?? String(e);
  log.error(`${what} threw:\n${e?.stack ?? ''}${name}: ${message}`);
  return `${what} threw ${name}: ${message}`;
}

/**
 * The world's four exports, running `DispatcherClass`.
 *
 * `new DispatcherClass(config)` is made once per instance, with the
 * dispatcher's `config` table as an object; its `dispatch(samples)` gets each
 * batch as an array of sample objects. Optional: `snapshot()` returning a
 * Uint8Array or string (or undefined) for the next version, and
 * `restore(state)` taking it (a Uint8Array) in the new version after the
 * constructor.
 */
export function serve(DispatcherClass) {
  let d = null;
  return {
    init(config) {
      let cfg;
      try {
        cfg = config.trim() === '' ? {} : JSON.parse(config);
      } catch (e) {
        return { tag: 'reject', val: `the config is not JSON: ${e.message}` };
      }
      try {
        d = new DispatcherClass(cfg);
      } catch (e) {
        return { tag: 'reject', val: failure('the constructor', e) };
      }
      return { tag: 'ok' };
    },

    dispatch(batch) {
      let samples;
      try {
        samples = decodeBatch(batch);
      } catch (e) {
        if (e instanceof DecodeError) {
          return { tag: 'reject', val: `the batch does not decode: ${e.message}` };
        }
        throw e;
      }
      try {
        const result = d.dispatch(samples);
        // An async dispatch (one that awaits fetch): componentize-js runs the
        // event loop until the promise settles, within the call's deadline.
        if (typeof result?.then === 'function') {
          return result.then(outcome, (e) => ({ tag: 'retry', val: failure('dispatch', e) }));
        }
        return outcome(result);
      } catch (e) {
        return { tag: 'retry', val: failure('dispatch', e) };
      }
    },

    snapshot() {
      if (typeof d?.snapshot !== 'function') return undefined;
      const state = d.snapshot();
      if (state === undefined || state === null) return undefined;
      if (typeof state === 'string') return new TextEncoder().encode(state);
      return new Uint8Array(state);
    },

    restore(state) {
      if (typeof d?.restore !== 'function') return { tag: 'ok' };
      try {
        return outcome(d.restore(state));
      } catch (e) {
        return { tag: 'reject', val: failure('restore', e) };
      }
    },
  };
}
