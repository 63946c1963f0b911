// A plugin that uses the SDK's outbound HTTP, for run.mjs: built, then checked
// by `collector check --endpoint target`, whose local endpoint must see its
// requests. Each batch is posted as JSON lines.
import { register, Batch, JsonWriter, Header, httpFetch, httpOutcome } from "../assembly/index";

export { collector_abi_version_1, collector_alloc, collector_init, collector_dispatch } from "../assembly/index";

const out = new JsonWriter(1 << 16);

function init(config: string): bool {
  return true;
}

function dispatch(batch: Batch): i32 {
  out.reset();
  while (batch.next()) out.sample(batch.sample).byte(0x0a);
  const headers = [new Header("Content-Type", "application/x-ndjson")];
  return httpOutcome(httpFetch("target", "POST", "/from-as", headers, out.ptr, out.length, 5000));
}

register(init, dispatch);
