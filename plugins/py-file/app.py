"""Ceilometer's file dispatcher in Python, as a collector plugin: every sample
as a JSON line in a file of a granted directory.

Each line is the sample dict as the publisher sent it, with two keys added:
``n``, a running count of the samples this dispatcher has written, kept
across hot reloads by ``snapshot``/``restore``, and ``version``, this build's
version tag. Built by ``build.sh`` (docs/plugins-python.md).
"""

import json

from collector_dispatcher import Retry, log, serve

#: Replaced in the built component by the tests, to tell versions apart.
VERSION = "py-version:000000000"


class Dispatcher:
    def __init__(self, config):
        self.path = config.get("path", "/data/samples.jsonl")
        self.count = 0

    def dispatch(self, samples):
        n = self.count
        lines = []
        for s in samples:
            n += 1
            s["n"] = n
            s["version"] = VERSION
            lines.append(json.dumps(s, ensure_ascii=False))
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n" if lines else "")
        except OSError as e:
            return Retry("cannot write %s: %s" % (self.path, e))
        self.count = n
        return None

    def snapshot(self):
        return json.dumps({"count": self.count}).encode()

    def restore(self, state):
        self.count = json.loads(state)["count"]
        log.info("%s: restored, %d samples so far" % (VERSION, self.count))


WitWorld = serve(Dispatcher)
