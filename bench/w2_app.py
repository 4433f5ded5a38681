"""bench/w2_app.py: the leaking WSGI application of bench/w2.sh (gunicorn), 64 KiB kept per
request (W2_LEAK_KB), touched so that every page is charged."""
import os

_KEPT = []
_LEAK = int(os.environ.get("W2_LEAK_KB", "64")) * 1024


def app(environ, start_response):
    _KEPT.append(b"\x01" * _LEAK)
    body = b"ok pid=%d kept=%d\n" % (os.getpid(), len(_KEPT))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
