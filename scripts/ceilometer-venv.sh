#!/usr/bin/env bash
# Creates (idempotently) .venv-ceilometer in the repo root: OpenStack Ceilometer
# 27.0.0, the release the fixtures in tests/fixtures/ceilometer were captured
# with, and everything it needs from PyPI, every version pinned. Used by
# scripts/ceilometer-publish.py to publish samples with Ceilometer's real
# publisher classes.
#
#   scripts/ceilometer-venv.sh          PYTHON=python3.11 and CEILOMETER_VENV=dir override
#
# A venv whose pins and Python match is kept (a few seconds to check);
# otherwise it is made anew. Needs Python >= 3.10 with the venv module
# (Debian: python3-venv), and PyPI. Every pin has a wheel for CPython 3.11 except
# jsonpath-rw 1.4.0, a pure-Python sdist, so no compiler is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CEILOMETER_VENV:-.venv-ceilometer}
PYTHON=${PYTHON:-python3}
start=$(date +%s.%N)
elapsed() { awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

# What `pip install ceilometer==27.0.0` resolved to on CPython 3.11 (2026-11),
# the same set the fixtures were made with: oslo.messaging 18.3.1, kombu 5.7.0,
# amqp (py-amqp) 5.4.2, msgpack 1.2.4. Pinned in full so that the wire bytes
# and the code paths never change under the tests.
read -r -d '' CONSTRAINTS <<'PINS' || true
amqp==5.4.2
aodhclient==3.12.0
attrs==26.1.0
autopage==0.6.0
awscrt==0.38.1
awscurl==0.44
bcrypt==5.0.0
boto3==1.44.8
botocore==1.44.8
cachetools==8.0.2
ceilometer==27.0.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
cliff==4.17.0
cmd2==4.3.1
ConfigArgParse==1.9.0
configparser==7.3.0
cotyledon==2.2.0
cryptography==50.0.2
debtcollector==3.1.0
decorator==5.3.1
dnspython==2.9.2
dogpile.cache==1.5.0
eventlet==0.41.3
fasteners==0.20
futurist==3.5.0
gnocchiclient==7.2.0
greenlet==3.5.6
idna==3.20
iso8601==2.1.0
Jinja2==3.1.6
jmespath==1.1.0
jsonpatch==1.48
jsonpath-rw==1.4.0
jsonpath-rw-ext==1.2.2
jsonpointer==3.12
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
keystoneauth1==5.18.1
kombu==5.7.0
lxml==6.1.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
msgpack==1.2.4
netaddr==1.3.0
openstacksdk==4.22.0
os-service-types==1.9.0
osc-lib==4.7.0
oslo.cache==4.3.0
oslo.concurrency==7.6.1
oslo.config==10.7.0
oslo.context==6.5.0
oslo.i18n==6.9.0
oslo.log==8.3.2
oslo.messaging==18.3.1
oslo.metrics==0.17.0
oslo.middleware==8.2.0
oslo.policy==6.0.1
oslo.privsep==3.12.0
oslo.reports==3.9.0
oslo.rootwrap==7.10.0
oslo.serialization==5.11.0
oslo.service==4.8.0
oslo.upgradecheck==2.8.0
oslo.utils==10.2.0
osprofiler==4.4.0
packaging==26.4
Paste==3.10.1
PasteDeploy==3.1.0
pbr==7.1.3
platformdirs==4.14.8
ply==3.11
prettytable==3.18.0
prometheus_client==0.26.0
prompt_toolkit==3.0.53
psutil==7.2.2
pycparser==3.12
Pygments==2.21.0
pyparsing==3.3.3
pyperclip==1.11.0
python-dateutil==2.9.0.post0
python-novaclient==18.13.1
python-swiftclient==4.11.0
python-zaqarclient==4.7.0
PyYAML==6.0.4
referencing==0.37.0
repoze-lru==0.8
requests==2.34.2
rfc3986==2.0.0
rich==15.0.0
rich-argparse==1.8.0
Routes==2.5.1
rpds-py==2026.9.1
s3transfer==0.19.3
setproctitle==1.3.8
six==1.17.0
statsd==4.0.1
stevedore==5.10.0
tenacity==9.2.1
tooz==9.1.0
typing_extensions==4.16.0
ujson==6.1.0
urllib3==2.8.0
vine==5.1.0
voluptuous==0.16.0
wcwidth==0.9.4
WebOb==1.8.11
wrapt==2.5.2
xmltodict==1.0.4
yappi==1.7.6
PINS

"$PYTHON" - <<'PY' || { echo "ceilometer-venv: $PYTHON is not Python >= 3.10 with the venv module (Debian: apt-get install python3-venv)" >&2; exit 1; }
import sys, venv, ensurepip
assert sys.version_info >= (3, 10), sys.version
PY
pyver=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
want=$( { echo "python $pyver"; echo "$CONSTRAINTS"; } | sha256sum | cut -d' ' -f1)

check() {
    "$VENV/bin/python" - <<'PY'
import warnings
warnings.simplefilter("ignore")  # eventlet's deprecation notice
import importlib.metadata as md
from stevedore import driver
import ceilometer.publisher  # noqa: F401
for name in ("udp", "notifier"):
    mgr = driver.DriverManager("ceilometer.sample.publisher", name, invoke_on_load=False)
    print(f"  publisher {name}: {mgr.driver.__module__}.{mgr.driver.__name__}")
print("  " + ", ".join(f"{p} {md.version(p)}" for p in
      ("ceilometer", "oslo.messaging", "kombu", "amqp", "msgpack", "stevedore", "oslo.config")))
PY
}

if [ -x "$VENV/bin/python" ] && [ -f "$VENV/.gitignore" ] && [ "$(cat "$VENV/.collector-pins" 2>/dev/null)" = "$want" ] && check; then
    echo "ceilometer-venv: $VENV is up to date ($(elapsed) s)"
    exit 0
fi

echo "ceilometer-venv: creating $VENV with $PYTHON $pyver"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
printf '# made by scripts/ceilometer-venv.sh\n*\n' > "$VENV/.gitignore"   # keep it out of git
printf '%s\n' "$CONSTRAINTS" > "$VENV/constraints.txt"
"$VENV/bin/python" -m pip install --quiet --no-input --disable-pip-version-check \
    -c "$VENV/constraints.txt" 'ceilometer==27.0.0'
check
echo "$want" > "$VENV/.collector-pins"
echo "ceilometer-venv: $VENV ready in $(elapsed) s"
