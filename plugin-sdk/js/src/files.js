// Files in the dispatcher's granted directories, through WASI 0.2's
// filesystem (StarlingMonkey has no Node `fs`). A path is resolved against
// the directories the host granted (`dirs` in the dispatcher's config, by
// their guest paths); anything else is refused, as the host would.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

// blocking-write-and-flush takes at most 4096 bytes per call (WASI 0.2).
const CHUNK = 4096;
const encoder = new TextEncoder();
let preopens = null;

function resolve(path) {
  if (preopens === null) preopens = getDirectories();
  let best = null;
  for (const [dir, guest] of preopens) {
    const base = guest.endsWith('/') ? guest : guest + '/';
    if (path.startsWith(base) && (best === null || base.length > best.base.length)) {
      best = { dir, base };
    }
  }
  if (best === null) {
    const granted = preopens.map(([, g]) => g).join(', ') || 'none';
    throw new Error(`${path} is in no granted directory (granted: ${granted})`);
  }
  return { dir: best.dir, rel: path.slice(best.base.length) };
}

function dispose(resource) {
  resource?.[Symbol.dispose]?.();
}

/** Appends `data` (a string, as UTF-8, or a Uint8Array) to the file at `path`, creating it. */
export function appendFile(path, data) {
  const bytes = typeof data === 'string' ? encoder.encode(data) : data;
  const { dir, rel } = resolve(path);
  const file = dir.openAt({}, rel, { create: true }, { write: true });
  let stream = null;
  try {
    stream = file.appendViaStream();
    for (let at = 0; at < bytes.length; at += CHUNK) {
      stream.blockingWriteAndFlush(bytes.subarray(at, at + CHUNK));
    }
  } finally {
    dispose(stream);
    dispose(file);
  }
}
