"""A Python plugin that misbehaves on purpose, for the sandboxing tests.

Batches holding a sample whose ``counter_name`` is ``trigger_meter``
(default ``poison``) make it misbehave as ``mode`` says: ``loop`` never
returns, ``hog`` allocates without bound, ``raise`` raises an exception,
``sleep`` sleeps for an hour (blocked in the host, in ``wasi:io/poll``).
Other batches are accepted.
"""

import time

from collector_dispatcher import serve


class Dispatcher:
    def __init__(self, config):
        self.mode = config.get("mode", "")
        self.trigger = config.get("trigger_meter", "poison")
        if self.mode not in ("", "loop", "hog", "raise", "sleep"):
            raise ValueError("unknown mode %r" % self.mode)

    def dispatch(self, samples):
        if not any(s["counter_name"] == self.trigger for s in samples):
            return None
        if self.mode == "loop":
            n = 0
            while True:
                n += 1
        if self.mode == "hog":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if self.mode == "sleep":
            time.sleep(3600)
        if self.mode == "raise":
            raise RuntimeError("poisoned batch")
        return None


WitWorld = serve(Dispatcher)
