#!/usr/bin/env python3
"""Publish Ceilometer samples with Ceilometer's own publisher classes.

Run it with the interpreter of the venv that scripts/ceilometer-venv.sh makes
(ceilometer 27.0.0):

    .venv-ceilometer/bin/python scripts/ceilometer-publish.py \\
        --publisher notifier --transport-url rabbit://guest:guest@127.0.0.1:5672/ \\
        --secret S --count 50 --batch 5 --out published.jsonl
    .venv-ceilometer/bin/python scripts/ceilometer-publish.py \\
        --publisher udp --udp-address 127.0.0.1:4952 --secret S --count 20
    .venv-ceilometer/bin/python scripts/ceilometer-publish.py \\
        --publisher url --url 'http://u:p@127.0.0.1:8080/?batch=False' --count 20 --posted posted.jsonl

With `--publisher url`, the publisher is the one `--url` names, written as in
pipeline.yaml: `tcp://HOST:PORT`, `http(s)://...` (with the HTTP publisher's
query parameters: `batch`, `timeout`, `verify_ssl`, `clientcert`, ...) or
`opentelemetryhttp://HOST:PORT/PATH`; `--posted FILE` gets the body of every
request the HTTP and OTLP publishers sent, one per line, as they sent it.

The configuration is built by ceilometer.service.prepare_service from a
config file of our own that sets only `[DEFAULT] transport_url`,
`[DEFAULT] host` and `[publisher] telemetry_secret` (plus logging to stderr,
and `[oslo_messaging_rabbit] rabbit_quorum_queue` with --rabbit-quorum-queue),
like the captures in tests/fixtures/ceilometer were made. The publisher is
loaded the way a pipeline loads it (ceilometer.pipeline.base.PublisherManager,
stevedore namespace `ceilometer.sample.publisher`) from the URL
`udp://HOST:PORT` or `notifier://?topic=metering`, and each batch of
`ceilometer.sample.Sample` objects goes to its publish_samples().

--out FILE gets one JSON line per sample: the very dict that
ceilometer.publisher.utils.meter_message_from_counter built inside the
publisher (recorded by wrapping that function), written like the fixtures'
expected.jsonl (keys sorted, UTF-8, no spaces; ints and floats kept apart).

Exit status: 0 when every sample was handed to the transport, 1 when a publish
call raised or a publisher or oslo.messaging logged a failure (the UDP
publisher and oslo's Notifier only log their errors; with
--tolerate-reconnects, oslo's errors while it fails over to another host and
publishes again are counted, not failures), 2 for bad arguments,
3 when --timeout ran out (oslo.messaging retries an unreachable broker
forever). The AMQP transport is closed before exiting, which flushes
everything to the broker.
"""

import argparse
import datetime
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
import uuid
import warnings


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--publisher", choices=("notifier", "udp", "url"), required=True)
    p.add_argument("--url", help="the publisher URL, as in pipeline.yaml (--publisher url)")
    p.add_argument("--posted", help="write each HTTP request body the publisher sent as a line here")
    p.add_argument("--samples", help="write each Sample.as_dict() handed to the publisher as a JSON line here")
    p.add_argument(
        "--transport-url",
        default="rabbit://guest:guest@127.0.0.1:5672/",
        help="oslo.messaging transport_url (notifier): rabbit://USER:PASS@HOST:PORT/",
    )
    p.add_argument(
        "--rabbit-quorum-queue",
        action="store_true",
        help="[oslo_messaging_rabbit] rabbit_quorum_queue = true (notifier)",
    )
    p.add_argument(
        "--tolerate-reconnects",
        action="store_true",
        help="a broker node going away is expected (notifier): oslo's errors while it fails over "
        "and retries a publish are counted, not failures; [oslo_messaging_notifications] retry "
        "is 100, so that a new connection fails over too",
    )
    p.add_argument("--udp-address", default="127.0.0.1:4952", help="HOST:PORT (udp)")
    p.add_argument(
        "--secret",
        default="",
        help="[publisher] telemetry_secret; empty: samples carry an empty signature",
    )
    p.add_argument("--count", type=int, default=10, help="samples in all")
    p.add_argument("--batch", type=int, default=1, help="samples per publish_samples() call")
    p.add_argument("--out", help="write each published sample dict as a JSON line here")
    p.add_argument("--host", default="vm", help="[DEFAULT] host (publisher_id telemetry.publisher.HOST)")
    p.add_argument("--topic", default="metering", help="notifier topic (routing key TOPIC.sample)")
    p.add_argument("--seed", type=int, default=1, help="seed of the sample factory")
    p.add_argument(
        "--start",
        default="2025-06-01T12:00:00",
        help="timestamp of the first sample (naive UTC ISO 8601), or `now` for samples that end now "
        "(10 s apart): backends that only take recent samples (Prometheus) want that",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="give up (exit 3) after this many seconds")
    p.add_argument("--verbose", action="store_true", help="INFO logs of ceilometer and oslo.messaging")
    a = p.parse_args(argv)
    if a.count < 0 or a.batch < 1:
        p.error("--count must be >= 0 and --batch >= 1")
    if a.publisher == "url" and not a.url:
        p.error("--publisher url needs --url")
    if a.publisher == "udp":
        host, sep, port = a.udp_address.rpartition(":")
        if not sep or not host or not port.isdigit():
            p.error("--udp-address must be HOST:PORT")
    return a


# --------------------------------------------------------------------------
# Sample factory: what the compute, disk, network, image, volume and object
# storage pollsters and notification handlers produce.

UNICODE_NAMES = [
    "web-server-01",
    "équipe-β-ñandú",
    "сервер-базы-данных",
    "数据库服务器-东京",
    "launch \U0001f680 pad",
    'quote " and \\ backslash',
]

METERS = [
    # name, type, unit, int volume?, polled (naive timestamp) or notification
    ("cpu", "cumulative", "ns", True, True),
    ("vcpus", "gauge", "vcpu", True, True),
    ("memory", "gauge", "MB", True, True),
    ("memory.usage", "gauge", "MB", False, True),
    ("disk.device.read.bytes", "cumulative", "B", True, True),
    ("disk.device.usage", "gauge", "B", True, True),
    ("network.incoming.bytes", "cumulative", "B", True, True),
    ("network.outgoing.bytes.delta", "delta", "B", True, True),
    ("network.incoming.bytes.rate", "gauge", "B/s", False, True),
    ("compute.instance.booting.time", "gauge", "sec", False, False),
    ("image.size", "gauge", "B", True, False),
    ("volume.size", "gauge", "GB", True, False),
    ("storage.objects", "gauge", "object", True, True),
    ("storage.objects.outgoing.bytes", "delta", "B", True, False),
]

START = datetime.datetime(2025, 6, 1, 12, 0, 0)


def make_samples(count, seed, start=START):
    from ceilometer import sample as ceilo_sample

    rnd = random.Random(seed)
    projects = [(uuid.UUID(int=rnd.getrandbits(128)).hex, name) for name in ("admin", "демо", None)]
    users = [(uuid.UUID(int=rnd.getrandbits(128)).hex, name) for name in ("alice", "björn", None)]
    out = []
    for i in range(count):
        name, type_, unit, is_int, polled = METERS[i % len(METERS)]
        project_id, project_name = projects[i % len(projects)]
        user_id, user_name = users[(i // 2) % len(users)]
        instance = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        display = UNICODE_NAMES[i % len(UNICODE_NAMES)]
        if is_int:
            volume = rnd.choice([0, 1, 512, 2**31 + rnd.randrange(1000), 2**53 + 1, 2**64 - 1 - i])
            if name in ("vcpus", "memory", "volume.size"):
                volume = rnd.choice([1, 2, 4, 8, 2048, 4096])
        else:
            volume = rnd.choice([0.0, 0.1 + 0.2, 1e-05, 512.0, 12345.678, rnd.random() * 1000])
        ts = start + datetime.timedelta(seconds=10 * i, microseconds=rnd.randrange(1_000_000))
        metadata = {
            "display_name": display,
            "host": "compute-%d" % (i % 3),
            "instance_type": "m1.small",
            "flavor": {"id": "2", "name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20, "ephemeral": 0},
            "image": {"id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)), "name": "debian-12 «bookworm»"},
            "status": "active",
            "state": None if i % 5 == 0 else "running",
            "properties": {"hw": {"disk": {"bus": "virtio", "size_gb": 20}, "cpu_policy": None}},
            "tags": ["prod", "équipe-β", "東京"] if i % 2 else [],
            "addresses": [{"address": "10.0.0.%d" % (i % 250 + 2), "version": 4, "type": "fixed"}],
            "ratio": 0.25 * (i % 4),
            "enabled": i % 3 != 0,
            "empty": {},
            # What the disk, network and image pollsters add (Gnocchi's
            # instance_disk, instance_network_interface and image types need it).
            "instance_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "disk_name": "vda",
            "vnic_name": "tap%d" % i,
            "name": "debian-12",
            "container_format": "bare",
            "disk_format": "qcow2",
        }
        if name.startswith("storage."):
            metadata = {"container": "фото-%d" % i, "object_count": i, "versions": None}
        out.append(
            ceilo_sample.Sample(
                name=name,
                type=type_,
                unit=unit,
                volume=volume,
                user_id=user_id,
                project_id=project_id,
                resource_id=instance if not name.startswith("storage.") else project_id,
                timestamp=ts.isoformat() if polled else ts.replace(tzinfo=datetime.timezone.utc).isoformat(),
                resource_metadata=metadata,
                source="openstack",
                id=str(uuid.UUID(int=rnd.getrandbits(128), version=1)),
                monotonic_time=(1000.0 + i * 10.125) if polled else None,
                user_name=user_name,
                project_name=project_name,
            )
        )
    return out


# --------------------------------------------------------------------------


class FailureLog(logging.Handler):
    """Collects the log records that mean a sample was not delivered.

    UDPPublisher only logs "Unable to send sample over UDP" and oslo's
    Notifier only logs "Problem ... attempting to send to notification
    system"; neither raises."""

    # What oslo's rabbit driver logs while it retries a publish on another
    # host (it then publishes the message again; it gives up only through
    # the Notifier's "Problem ... attempting to send", which still counts).
    RETRYING = ("Trying again in", "retrying in", "Failed to publish message to topic")

    def __init__(self, tolerate_reconnects=False):
        super().__init__(level=logging.WARNING)
        self.records = []
        self.reconnects = 0
        self.tolerate_reconnects = tolerate_reconnects

    def emit(self, record):
        if (
            self.tolerate_reconnects
            and record.name.startswith("oslo.messaging._drivers.impl_rabbit")
            and any(m in record.getMessage() for m in self.RETRYING)
        ):
            self.reconnects += 1
            return
        if record.levelno >= logging.ERROR or record.name.startswith("ceilometer.publisher"):
            self.records.append(self.format(record))


def conf_escape(value):
    # oslo.config interpolates $name: a literal $ is written $$.
    return value.replace("$", "$$").replace("\n", " ")


def main(argv):
    args = parse_args(argv)

    def give_up():
        sys.stderr.write(
            "ceilometer-publish: timed out after %.0f s (broker unreachable?)\n" % args.timeout
        )
        sys.stderr.flush()
        os._exit(3)

    watchdog = threading.Timer(args.timeout, give_up)
    watchdog.daemon = True
    watchdog.start()

    if not args.verbose:
        # eventlet (pulled in by oslo.service) warns that it is deprecated.
        warnings.simplefilter("ignore")

    from ceilometer import messaging as ceilo_messaging
    from ceilometer import service
    from ceilometer.pipeline import base as pipeline_base
    from ceilometer.publisher import utils as publisher_utils

    workdir = tempfile.mkdtemp(prefix="ceilometer-publish-")
    conf_path = os.path.join(workdir, "ceilometer.conf")
    with open(conf_path, "w", encoding="utf-8") as f:
        f.write(
            "[DEFAULT]\n"
            "transport_url = %s\n"
            "host = %s\n"
            "use_stderr = true\n"
            "[publisher]\n"
            "telemetry_secret = %s\n"
            % (conf_escape(args.transport_url), conf_escape(args.host), conf_escape(args.secret))
        )
        if args.rabbit_quorum_queue:
            f.write("[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n")
        if args.tolerate_reconnects:
            # oslo's default (-1, "indefinite") reaches kombu's ensure_connection
            # as max_retries=-1, which gives up at once: a pooled connection
            # opened while a node is dead is refused and the notification
            # dropped, where a positive count fails over to the next host.
            f.write("[oslo_messaging_notifications]\nretry = 100\n")
    try:
        conf = service.prepare_service(argv=[sys.argv[0]], config_files=[conf_path])
    finally:
        os.unlink(conf_path)
        os.rmdir(workdir)
    assert conf.publisher.telemetry_secret == args.secret

    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    failures = FailureLog(tolerate_reconnects=args.tolerate_reconnects)
    failures.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(failures)

    # Record the dicts the publisher builds, exactly as built.
    recorded = []
    real_meter_message = publisher_utils.meter_message_from_counter

    def recording_meter_message(sample, secret, publisher_id=None):
        msg = real_meter_message(sample, secret, publisher_id)
        recorded.append(json.dumps(msg, sort_keys=True, ensure_ascii=False, separators=(",", ":")))
        return msg

    publisher_utils.meter_message_from_counter = recording_meter_message

    # Record the bodies the HTTP and OTLP publishers post, exactly as posted.
    from ceilometer.publisher import http as publisher_http

    posted = []
    real_do_post = publisher_http.HttpPublisher._do_post

    def recording_do_post(self, data, sub_path=None):
        posted.append(data)
        return real_do_post(self, data, sub_path)

    publisher_http.HttpPublisher._do_post = recording_do_post

    if args.publisher == "udp":
        url = "udp://%s" % args.udp_address
    elif args.publisher == "url":
        url = args.url
    else:
        url = "notifier://?topic=%s" % args.topic
    publisher = pipeline_base.PublisherManager(conf, "sample").get(url)

    if args.start == "now":
        start = datetime.datetime.utcnow().replace(microsecond=0) - datetime.timedelta(seconds=10 * args.count + 1)
    else:
        start = datetime.datetime.fromisoformat(args.start)
    samples = make_samples(args.count, args.seed, start)
    if args.samples:
        with open(args.samples, "w", encoding="utf-8") as f:
            for smp in samples:
                f.write(json.dumps(smp.as_dict(), sort_keys=True, ensure_ascii=False) + "\n")
    started = time.monotonic()
    status = 0
    sent = 0
    try:
        for i in range(0, len(samples), args.batch):
            batch = samples[i : i + args.batch]
            publisher.publish_samples(batch)
            if failures.records:
                break
            sent += len(batch)
    except Exception as e:  # noqa: BLE001 - any failure means exit 1
        logging.getLogger("ceilometer-publish").exception("publish_samples failed: %s", e)
        status = 1
    finally:
        # Close the AMQP connections (a clean close also flushes what was
        # published) and stop oslo.messaging's heartbeat threads.
        for transport in list(ceilo_messaging.TRANSPORTS.values()):
            transport.cleanup()
        ceilo_messaging.TRANSPORTS.clear()
        sock = getattr(publisher, "socket", None)
        if sock is not None:
            sock.close()
    if failures.records:
        status = 1
        for r in failures.records:
            sys.stderr.write("ceilometer-publish: %s\n" % r)

    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for line in recorded:
                f.write(line + "\n")
    if args.posted:
        with open(args.posted, "w", encoding="utf-8") as f:
            for body in posted:
                f.write(body + "\n")

    elapsed = time.monotonic() - started
    cls = type(publisher)
    sys.stderr.write(
        "ceilometer-publish: %s %d of %d samples in batches of %d via %s.%s to %s in %.2f s%s\n"
        % (
            "published" if status == 0 else "FAILED after",
            sent,
            len(samples),
            args.batch,
            cls.__module__,
            cls.__name__,
            args.transport_url if args.publisher == "notifier" else url,
            elapsed,
            "; %d reconnect errors retried" % failures.reconnects if failures.reconnects else "",
        )
    )
    sys.stdout.flush()
    sys.stderr.flush()
    return status


if __name__ == "__main__":
    # os._exit: nothing left (an oslo thread, eventlet) may keep us waiting;
    # the transport is already closed.
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:  # argparse
        code = e.code if isinstance(e.code, int) else 2
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
