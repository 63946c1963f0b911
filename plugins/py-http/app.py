"""Ceilometer's HTTP dispatcher in Python, as a collector plugin: each batch
posted as one JSON list of sample dicts to a declared endpoint.

Config (the dispatcher's ``config`` table)::

    endpoint = "sink"          # a [[dispatchers.endpoints]] name
    target = "/samples"        # path and query under the endpoint's URL
    headers = { X-Tenant = "ops" }

The endpoint's URL and credentials are the operator's, in the endpoint's
table: the plugin never sees them. A 2xx answer takes the batch; 408, 429, a
5xx or no answer at all is ``Retry`` (the host keeps the samples and offers
them again); any other status is ``Reject``. Built by ``build.sh``
(docs/plugins-python.md).
"""

import json

from collector_dispatcher import Reject, Retry, http, serve


class Dispatcher:
    def __init__(self, config):
        self.endpoint = config["endpoint"]
        self.target = config.get("target", "")
        self.headers = {"content-type": "application/json"}
        self.headers.update(config.get("headers", {}))

    def dispatch(self, samples):
        if not samples:
            return None
        body = json.dumps(samples, ensure_ascii=False).encode("utf-8")
        try:
            r = http.post(self.endpoint, self.target, body, self.headers)
        except http.HttpError as e:
            return Retry("%s: %s" % (self.endpoint, e))
        if 200 <= r.status < 300:
            return None
        why = "%s answered %d: %s" % (self.endpoint, r.status, r.text()[:200])
        if r.status in (408, 429) or r.status >= 500:
            return Retry(why)
        return Reject(why)


WitWorld = serve(Dispatcher)
