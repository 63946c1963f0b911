// Ceilometer's file dispatcher in JavaScript, as a collector plugin: every
// sample as a JSON line in a file of a granted directory.
//
// Each line is the sample object as the publisher sent it, with `n` added: a
// running count of the samples this dispatcher has written, kept across hot
// reloads by snapshot/restore. Built by build.sh (docs/plugins-javascript.md).
//
// componentize-js's StarlingMonkey has no Node `fs`; files are written through
// WASI preview 2's filesystem, which the SDK's `appendFile` wraps.

import { Retry, appendFile, log, serve, toJson } from './collector-dispatcher/index.js';

class Dispatcher {
  constructor(config) {
    this.path = config.path ?? '/data/samples.jsonl';
    this.count = 0;
  }

  dispatch(samples) {
    let n = this.count;
    const lines = [];
    for (const s of samples) {
      n += 1;
      s.n = n;
      lines.push(toJson(s));
    }
    if (lines.length > 0) {
      try {
        appendFile(this.path, lines.join('\n') + '\n');
      } catch (e) {
        return new Retry(`cannot write ${this.path}: ${e.message ?? e}`);
      }
    }
    this.count = n;
    return undefined;
  }

  snapshot() {
    return JSON.stringify({ count: this.count });
  }

  restore(state) {
    this.count = JSON.parse(new TextDecoder().decode(state)).count;
    log.info(`restored, ${this.count} samples so far`);
  }
}

export const { init, dispatch, snapshot, restore } = serve(Dispatcher);
