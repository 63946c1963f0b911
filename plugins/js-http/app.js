// Ceilometer's HTTP dispatcher in JavaScript, as a collector plugin: each
// batch posted as one JSON list of sample objects to a declared endpoint.
//
// Config (the dispatcher's `config` table):
//
//   endpoint = "sink"          # a [[dispatchers.endpoints]] name
//   target = "/samples"        # path and query under the endpoint's URL
//   headers = { X-Tenant = "ops" }
//
// `fetch('http://NAME/target')` reaches endpoint NAME: the host sends the
// request to `target` under the endpoint's URL, with the endpoint's headers;
// the plugin never sees the URL or the credentials. A 2xx answer takes the
// batch; 408, 429, a 5xx or no answer at all is Retry (the host keeps the
// samples and offers them again); any other status is Reject. Built by
// build.sh (docs/plugins-javascript.md).

import { Reject, Retry, serve, toJson } from './collector-dispatcher/index.js';

class Dispatcher {
  constructor(config) {
    if (typeof config.endpoint !== 'string') throw new Error('config.endpoint is required');
    this.url = `http://${config.endpoint}${config.target ?? ''}`;
    this.endpoint = config.endpoint;
    this.headers = { 'content-type': 'application/json', ...(config.headers ?? {}) };
  }

  async dispatch(samples) {
    if (samples.length === 0) return undefined;
    const body = `[${samples.map(toJson).join(',')}]`;
    let r;
    try {
      r = await fetch(this.url, { method: 'POST', headers: this.headers, body });
    } catch (e) {
      return new Retry(`${this.endpoint}: ${e?.message ?? e}`);
    }
    const text = await r.text();
    if (r.status >= 200 && r.status < 300) return undefined;
    const why = `${this.endpoint} answered ${r.status}: ${text.slice(0, 200)}`;
    if (r.status === 408 || r.status === 429 || r.status >= 500) return new Retry(why);
    return new Reject(why);
  }
}

export const { init, dispatch, snapshot, restore } = serve(Dispatcher);
