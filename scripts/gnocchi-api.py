#!/usr/bin/env python3
"""Gnocchi's REST API on a plain WSGI server (waitress), for the tests.

    .venv-gnocchi/bin/python scripts/gnocchi-api.py GNOCCHI.CONF PORT

`gnocchi-api` execs uwsgi; this serves the very application it would
(gnocchi.rest.app.load_app on gnocchi's own service configuration), on
127.0.0.1:PORT.
"""
import sys

import waitress
from gnocchi import opts, service
from gnocchi.rest import app
from oslo_config import cfg

opts.set_defaults()
conf = service.prepare_service(args=["--config-file", sys.argv[1]], conf=cfg.ConfigOpts())
waitress.serve(app.load_app(conf), host="127.0.0.1", port=int(sys.argv[2]), threads=8, ident=None)
