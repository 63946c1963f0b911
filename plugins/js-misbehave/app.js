// A JavaScript plugin that misbehaves on purpose, for the sandboxing tests.
//
// Batches holding a sample whose counter_name is `trigger_meter` (default
// `poison`) make it misbehave as `mode` says: `loop` never returns, `hog`
// allocates without bound, `throw` throws, `sleep` awaits an hour's timer
// (the event loop blocked in the host, in wasi:io/poll). Other batches are
// accepted.

import { serve } from './collector-dispatcher/index.js';

const MODES = ['', 'loop', 'hog', 'throw', 'sleep'];

class Dispatcher {
  constructor(config) {
    this.mode = config.mode ?? '';
    this.trigger = config.trigger_meter ?? 'poison';
    if (!MODES.includes(this.mode)) throw new RangeError(`unknown mode '${this.mode}'`);
  }

  dispatch(samples) {
    if (!samples.some((s) => s.counter_name === this.trigger)) return undefined;
    if (this.mode === 'loop') {
      let n = 0;
      for (;;) n += 1;
    }
    if (this.mode === 'hog') {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
    }
    if (this.mode === 'throw') throw new Error('poisoned batch');
    if (this.mode === 'sleep') return new Promise((done) => setTimeout(done, 3600 * 1000));
    return undefined;
  }
}

export const { init, dispatch, snapshot, restore } = serve(Dispatcher);
