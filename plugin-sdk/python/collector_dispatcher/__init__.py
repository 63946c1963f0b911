"""Dispatcher plugins for collector in Python, built into WebAssembly
components by componentize-py (docs/plugins-python.md).

A plugin reads like one of Ceilometer's old dispatchers::

    from collector_dispatcher import Retry, serve

    class Dispatcher:
        def __init__(self, config):          # the dispatcher's config, a dict
            self.path = config.get("path", "/data/samples.jsonl")

        def dispatch(self, samples):         # a list of Ceilometer's sample dicts
            ...
            return None                      # or Retry("why") / Reject("why")

    WitWorld = serve(Dispatcher)

``serve`` makes the class componentize-py exports for the world
``collector:dispatcher@1.0.0`` (``plugin-sdk/wit/dispatcher.wit``): it decodes
each batch's ABI v1 bytes into dicts, turns what ``dispatch`` returns into the
world's outcome, hands ``snapshot``/``restore`` state across hot reloads, and
sends the standard ``logging`` module's records to the host's log.
``collector_dispatcher.http`` sends requests to the dispatcher's declared
endpoints over ``wasi:http``.

What ``dispatch`` may return or raise:

* ``None`` or ``Ok()``: the samples are taken;
* ``Retry(message)``: not now (a backend is down); the host keeps the samples
  and offers them again;
* ``Reject(message)``: never (the samples are dropped, counted);
* an exception: logged with its traceback, and answered as ``Retry`` (nothing
  is lost to a bug; the host's retry policy bounds it). A batch that cannot be
  decoded is answered ``Reject``.
"""

import json
import logging
import traceback

from . import http
from .batch import MAX_DEPTH, DecodeError, decode_batch

__all__ = [
    "Ok",
    "Retry",
    "Reject",
    "serve",
    "log",
    "decode_batch",
    "DecodeError",
    "MAX_DEPTH",
    "http",
]


class Ok:
    """The samples were taken."""

    __slots__ = ()

    def __repr__(self):
        return "Ok()"


class Retry:
    """The samples may succeed later: the host keeps them and offers them again."""

    __slots__ = ("message",)

    def __init__(self, message):
        self.message = str(message)

    def __repr__(self):
        return "Retry(%r)" % self.message


class Reject:
    """The samples never will: the host drops them (counted, with the message)."""

    __slots__ = ("message",)

    def __init__(self, message):
        self.message = str(message)

    def __repr__(self):
        return "Reject(%r)" % self.message


def _types():
    """The world's ``collector:dispatcher/types`` bindings: componentize-py names
    them ``types`` in the world ``dispatcher`` and ``collector_dispatcher_types``
    in ``dispatcher-http`` (where ``wasi:http/types`` is imported too)."""
    try:
        from wit_world.imports import collector_dispatcher_types as types
    except ImportError:
        from wit_world.imports import types
    return types


class _Log:
    """The host's log: ``log.info("...")``; lines are rate-limited and escaped by the host."""

    def _send(self, level, msg):
        import wit_world

        wit_world.log(getattr(_types().Level, level), str(msg))

    def error(self, msg):
        self._send("ERROR", msg)

    def warn(self, msg):
        self._send("WARN", msg)

    warning = warn

    def info(self, msg):
        self._send("INFO", msg)

    def debug(self, msg):
        self._send("DEBUG", msg)

    def trace(self, msg):
        self._send("TRACE", msg)


log = _Log()


class _HostHandler(logging.Handler):
    """Sends the ``logging`` module's records to the host's log."""

    def emit(self, record):
        try:
            msg = self.format(record)
            if record.levelno >= logging.ERROR:
                log.error(msg)
            elif record.levelno >= logging.WARNING:
                log.warn(msg)
            elif record.levelno >= logging.INFO:
                log.info(msg)
            else:
                log.debug(msg)
        except Exception:  # a log line must never fail a dispatch
            pass


def _outcome(types, result):
    if result is None or isinstance(result, Ok):
        return types.Outcome_Ok()
    if isinstance(result, Retry):
        return types.Outcome_Retry(result.message)
    if isinstance(result, Reject):
        return types.Outcome_Reject(result.message)
    return types.Outcome_Reject(
        "dispatch returned %s; return None, Ok(), Retry(msg) or Reject(msg)"
        % type(result).__name__
    )


def _failure(what, e):
    log.error("%s raised:\n%s" % (what, traceback.format_exc()))
    return "%s raised %s: %s" % (what, type(e).__name__, e)


def serve(dispatcher_class):
    """The ``WitWorld`` class componentize-py exports, running ``dispatcher_class``.

    ``dispatcher_class(config)`` is made once per instance, with the
    dispatcher's ``config`` table as a dict; its ``dispatch(samples)`` gets
    each batch as a list of sample dicts. Optional: ``snapshot()`` returning
    bytes (or ``None``) for the next version, and ``restore(state)`` taking
    them in the new version after ``__init__``.
    """
    import wit_world

    types = _types()

    root = logging.getLogger()
    if not any(isinstance(h, _HostHandler) for h in root.handlers):
        root.addHandler(_HostHandler())
        root.setLevel(logging.INFO)

    holder = {}

    class WitWorld(wit_world.WitWorld):
        def init(self, config):
            try:
                cfg = json.loads(config) if config.strip() else {}
            except ValueError as e:
                return types.Outcome_Reject("the config is not JSON: %s" % e)
            try:
                holder["d"] = dispatcher_class(cfg)
            except Exception as e:
                return types.Outcome_Reject(_failure("__init__", e))
            return types.Outcome_Ok()

        def dispatch(self, batch):
            try:
                samples = decode_batch(batch)
            except DecodeError as e:
                return types.Outcome_Reject("the batch does not decode: %s" % e)
            try:
                return _outcome(types, holder["d"].dispatch(samples))
            except Exception as e:
                return types.Outcome_Retry(_failure("dispatch", e))

        def snapshot(self):
            f = getattr(holder["d"], "snapshot", None)
            if f is None:
                return None
            state = f()
            if state is None:
                return None
            if isinstance(state, str):
                state = state.encode("utf-8")
            return bytes(state)

        def restore(self, state):
            f = getattr(holder["d"], "restore", None)
            if f is None:
                return types.Outcome_Ok()
            try:
                return _outcome(types, f(bytes(state)))
            except Exception as e:
                return types.Outcome_Reject(_failure("restore", e))

    return WitWorld
