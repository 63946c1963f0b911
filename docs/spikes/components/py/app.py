import wit_world
from wit_world.imports import types
from componentize_py_types import Err

_config = None


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        global _config
        if config is None:
            raise Err("no config")
        _config = config

    def dispatch(self, batch):
        if _config == "loop":
            n = 0
            while True:
                n += 1
        total = 0.0
        for s in batch:
            total += s.counter_volume
        wit_world.log(1, "dispatched %d samples, volume sum %s" % (len(batch), total))
        return types.Outcome_Ok()

    def dispatch_bytes(self, batch: bytes):
        if len(batch) == 0:
            return types.Outcome_Reject("empty batch")
        wit_world.log(1, "dispatch-bytes len %d" % len(batch))
        return types.Outcome_Ok()
