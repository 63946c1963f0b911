#!/usr/bin/env python3
"""Declare Ceilometer's queues the way a real oslo.messaging service does.

Starts, on one transport, an oslo.messaging notification listener on
`TOPIC.sample` (what Ceilometer's notification agent consumes) and an RPC
server on `TOPIC` / `TOPIC.HOST` / a fanout queue (what the old collector
consumed), each declaring its queues and exchanges with oslo's own code and
the `[oslo_messaging_rabbit]` settings given; listens for `--seconds`, then
stops. Run it with the interpreter of .venv-ceilometer:

    .venv-ceilometer/bin/python scripts/oslo-listen.py \\
        --transport-url rabbit://guest:guest@127.0.0.1:5672/ --rabbit-quorum-queue --seconds 1

Exit status: 0 when both declared and consumed without a warning or error
from oslo.messaging, kombu or py-amqp until the stop (a PRECONDITION_FAILED, or
oslo's fallback to a non-durable queue, is logged as one), 1 otherwise, 3
after --timeout.
"""

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
import warnings


class Problems(logging.Handler):
    """Every WARNING and above, from any logger."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(self.format(record))


class Endpoint:
    """Takes whatever arrives (nothing should, in the tests) and counts it."""

    def __init__(self):
        self.count = 0

    def sample(self, ctxt, publisher_id, event_type, payload, metadata):
        self.count += 1

    def record_metering_data(self, context, data):
        self.count += 1


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--transport-url", required=True)
    p.add_argument("--rabbit-quorum-queue", action="store_true")
    p.add_argument("--topic", default="metering")
    p.add_argument("--host", default="vm")
    p.add_argument("--seconds", type=float, default=1.0, help="how long to listen")
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args(argv)

    def give_up():
        sys.stderr.write("oslo-listen: timed out after %.0f s\n" % a.timeout)
        sys.stderr.flush()
        os._exit(3)

    watchdog = threading.Timer(a.timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    warnings.simplefilter("ignore")

    from oslo_config import cfg
    import oslo_messaging

    problems = Problems()
    problems.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger().addHandler(problems)

    workdir = tempfile.mkdtemp(prefix="oslo-listen-")
    conf_path = os.path.join(workdir, "listen.conf")
    with open(conf_path, "w", encoding="utf-8") as f:
        f.write("[DEFAULT]\ntransport_url = %s\n" % a.transport_url.replace("$", "$$"))
        if a.rabbit_quorum_queue:
            f.write("[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n")
    conf = cfg.ConfigOpts()
    try:
        conf([], project="oslo-listen", default_config_files=[conf_path])
    finally:
        os.unlink(conf_path)
        os.rmdir(workdir)

    endpoint = Endpoint()
    notify_transport = oslo_messaging.get_notification_transport(conf)
    listener = oslo_messaging.get_notification_listener(
        notify_transport,
        [oslo_messaging.Target(topic=a.topic)],
        [endpoint],
        executor="threading",
    )
    rpc_transport = oslo_messaging.get_rpc_transport(conf)
    server = oslo_messaging.get_rpc_server(
        rpc_transport,
        oslo_messaging.Target(topic=a.topic, server=a.host),
        [endpoint],
        executor="threading",
    )
    status = 0
    found = []
    try:
        # start() declares the queues and consumers before it returns.
        listener.start()
        server.start()
        time.sleep(a.seconds)
    except Exception as e:  # noqa: BLE001 - any failure means exit 1
        logging.getLogger("oslo-listen").exception("listening failed: %s", e)
        status = 1
    finally:
        # What was logged while declaring and listening; closing the channels
        # logs a harmless py-amqp warning (a basic.cancel-ok after close).
        found = list(problems.records)
        for s in (listener, server):
            try:
                s.stop()
                s.wait()
            except Exception:  # noqa: BLE001 - not started
                pass
        notify_transport.cleanup()
        rpc_transport.cleanup()
    if found:
        status = 1
        for r in found:
            sys.stderr.write("oslo-listen: %s\n" % r)
    sys.stderr.write(
        "oslo-listen: %s on %s.sample, %s, %s.%s and a fanout queue; %d messages taken\n"
        % ("listened" if status == 0 else "FAILED", a.topic, a.topic, a.topic, a.host, endpoint.count)
    )
    return status


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
