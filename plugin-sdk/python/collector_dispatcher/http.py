"""Outbound HTTP to the dispatcher's declared endpoints, over ``wasi:http``.

The host sends a plugin's requests only to the endpoints the operator declared
for its dispatcher (``[[dispatchers.endpoints]]``): a request names one, and a
target (path and query) under its URL. The host adds the endpoint's headers
(credentials the plugin never sees), checks the target, and bounds the size and
the time; the plugin never sees the URL::

    from collector_dispatcher import http

    r = http.post("victoria", "/api/v1/import", body, {"content-type": "application/json"})
    if r.status >= 500:
        return Retry("victoria answered %d" % r.status)

A request that could not be made or answered raises ``HttpError`` (its
``code`` is wasi:http's error code, such as ``"ConnectionRefused"`` or
``"HttpResponseTimeout"``; ``message`` says why). The wait for a response ends
before the call's ``timeout_ms`` does, so a plugin always has time to answer
``Retry``.
"""

__all__ = ["HttpError", "Response", "request", "get", "post", "put"]

#: Bytes written to the request body per write.
_CHUNK = 65536

# Imported when the SDK is (at the component's build, which snapshots it):
# modules of the generated bindings first imported at run time are not found.
try:
    from componentize_py_types import Err
    from wit_world.imports import outgoing_handler, streams
    from wit_world.imports import wasi_http_types as t
except ImportError:  # the world `dispatcher` (no HTTP), or outside a component
    outgoing_handler = None


class HttpError(Exception):
    """A request got no response: ``code`` (wasi:http's error code), ``message``."""

    def __init__(self, code, message=""):
        self.code = code
        self.message = message
        super().__init__("%s: %s" % (code, message) if message else code)


class Response:
    """A whole response: ``status`` (int), ``headers`` (dict of lower-case names
    to str, the last value of a repeated header), ``body`` (bytes)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return "Response(%d, %d bytes)" % (self.status, len(self.body))


def _error(code):
    """An ``HttpError`` from a wasi:http ``error-code`` value."""
    name = type(code).__name__
    if name.startswith("ErrorCode_"):
        name = name[len("ErrorCode_"):]
    value = getattr(code, "value", None)
    return HttpError(name, "" if value is None else str(value))


def request(method, endpoint, target="", body=b"", headers=None):
    """Sends one request to ``endpoint`` (a declared endpoint's name) at
    ``target`` (a path starting with ``/``, with its query; empty or ``/``:
    the endpoint's URL itself) and waits for the whole response.

    Raises ``HttpError`` when it could not be sent or answered.
    """
    if outgoing_handler is None:
        raise HttpError(
            "Unavailable",
            "this component was built without wasi:http (the world dispatcher-http)",
        )
    if isinstance(body, str):
        body = body.encode("utf-8")
    entries = [(str(k).lower(), str(v).encode("latin-1")) for k, v in (headers or {}).items()]
    try:
        fields = t.Fields.from_list(entries)
    except Err as e:
        raise HttpError("HeaderError", type(e.value).__name__)
    req = t.OutgoingRequest(fields)
    methods = {
        "GET": t.Method_Get(),
        "HEAD": t.Method_Head(),
        "POST": t.Method_Post(),
        "PUT": t.Method_Put(),
        "DELETE": t.Method_Delete(),
        "PATCH": t.Method_Patch(),
        "OPTIONS": t.Method_Options(),
    }
    try:
        req.set_method(methods.get(method.upper()) or t.Method_Other(method))
        req.set_scheme(t.Scheme_Http())
        req.set_authority(endpoint)
        req.set_path_with_query(target or "/")
        out = req.body()
    except Err:
        req.__exit__(None, None, None)
        raise HttpError(
            "HttpRequestUriInvalid",
            "endpoint %r, target %r or method %r is not valid" % (endpoint, target, method),
        )
    try:
        future = outgoing_handler.handle(req, None)
    except Err as e:
        out.__exit__(None, None, None)
        raise _error(e.value)
    try:
        with out.write() as stream:
            at = 0
            while at < len(body):
                n = stream.check_write()
                if n == 0:
                    with stream.subscribe() as ready:
                        ready.block()
                    continue
                n = min(n, _CHUNK, len(body) - at)
                stream.write(body[at : at + n])
                at += n
            stream.blocking_flush()
    except Err:
        pass  # the request failed: the future says why
    try:
        t.OutgoingBody.finish(out, None)
    except Err:
        pass
    with future:
        with future.subscribe() as ready:
            ready.block()
        got = future.get()
    if got is None or isinstance(got, Err):
        raise HttpError("InternalError", "the response was not ready")
    inner = got.value
    if isinstance(inner, Err):
        raise _error(inner.value)
    with inner.value as resp:
        status = resp.status()
        with resp.headers() as h:
            names = {}
            for k, v in h.entries():
                names[k.lower()] = v.decode("latin-1")
        incoming = resp.consume()
        chunks = []
        with incoming.stream() as stream:
            while True:
                try:
                    chunks.append(stream.blocking_read(_CHUNK))
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    e.value.value.__exit__(None, None, None)  # the wasi:io error resource
                    raise HttpError("HttpResponseIncomplete", "reading the body failed")
        with t.IncomingBody.finish(incoming):
            pass
    return Response(status, names, b"".join(chunks))


def get(endpoint, target="", headers=None):
    """``request("GET", ...)``."""
    return request("GET", endpoint, target, b"", headers)


def post(endpoint, target="", body=b"", headers=None):
    """``request("POST", ...)``."""
    return request("POST", endpoint, target, body, headers)


def put(endpoint, target="", body=b"", headers=None):
    """``request("PUT", ...)``."""
    return request("PUT", endpoint, target, body, headers)
