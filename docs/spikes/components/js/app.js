import log from 'log';

let config = null;

export function init(cfg) {
  if (typeof cfg !== 'string') throw 'no config';
  config = cfg;
}

export function dispatch(batch) {
  if (config === 'loop') {
    let n = 0;
    for (;;) { n++; }
  }
  let total = 0;
  for (const s of batch) total += s.counterVolume;
  log(1, `dispatched ${batch.length} samples, volume sum ${total}`);
  return { tag: 'ok' };
}

export function dispatchBytes(batch) {
  if (batch.length === 0) return { tag: 'reject', val: 'empty batch' };
  log(1, `dispatch-bytes len ${batch.length}`);
  return { tag: 'ok' };
}
