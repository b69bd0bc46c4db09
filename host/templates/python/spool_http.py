"""Blocking HTTP requests on wasi:http (contract spool:plugin@0.2.0), for componentize-py.

The daemon sends a request only to a host the manifest's `allowed_hosts` lists; any other gets
the error code `HTTP-request-denied` (`ErrorCode_HttpRequestDenied` here) before a connection
is made. Limits (response size, timeouts, requests per job) come from the manifest's `[http]`.

    status, headers, body = request("GET", "https://api.example.com/items?page=2")

A request with a body sends its length (not chunked); redirects are not followed.
"""

from componentize_py_types import Err
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as http


class HttpError(Exception):
    """No response: `code` is the wasi:http error-code case, such as ErrorCode_HttpRequestDenied."""

    def __init__(self, url, code):
        super().__init__(f"{url} failed: {type(code).__name__.removeprefix('ErrorCode_')}")
        self.code = code


def request(method, url, headers=(), body=b""):
    """Send a request and read the whole response: (status, [(name, value)], body bytes)."""
    scheme, rest = url.split("://", 1)
    authority, slash, path = rest.partition("/")
    fields = [(name, value.encode()) for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        fields.append(("content-length", str(len(body)).encode()))
    req = http.OutgoingRequest(http.Fields.from_list(fields))
    req.set_method({"GET": http.Method_Get(), "POST": http.Method_Post(),
                    "PUT": http.Method_Put(), "DELETE": http.Method_Delete()}[method])
    req.set_scheme(http.Scheme_Https() if scheme == "https" else http.Scheme_Http())
    req.set_authority(authority)
    req.set_path_with_query(slash + path or "/")  # a fragment, if any, is sent as is: leave it out
    outgoing = req.body()
    try:
        future = outgoing_handler.handle(req, None)
    except Err as e:  # refused before sending, e.g. a host not in allowed_hosts
        raise HttpError(url, e.value)
    with outgoing.write() as stream:  # the stream must be dropped before the body is finished
        for start in range(0, len(body), 4096):  # 4096 bytes at most per call
            stream.blocking_write_and_flush(body[start:start + 4096])
    http.OutgoingBody.finish(outgoing, None)
    future.subscribe().block()
    result = future.get()
    if isinstance(result.value, Err):
        raise HttpError(url, result.value.value)
    response = result.value.value
    status, headers = response.status(), [(n, v.decode("latin-1")) for n, v in response.headers().entries()]
    incoming = response.consume()
    stream, data = incoming.stream(), bytearray()
    while True:
        try:
            data += stream.blocking_read(64 * 1024)
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            raise
    return status, headers, bytes(data)
