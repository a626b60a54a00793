"""Real network middlemen on loopback, for the tests: a TLS front for the
emulator, an HTTP CONNECT proxy (plain or itself over TLS), a SOCKS5 proxy,
and a server that accepts a request and never answers; and
:func:`read_request`, for hand-written servers.

Each is a context manager listening on ``127.0.0.1`` (port 0), one thread
per connection, relaying bytes both ways; when one side ends, the other is
closed, so a client's hang-up reaches the emulator behind it.
"""
import select
import socket
import ssl
import struct
import threading


def read_request(conn):
    """Read one HTTP request whole, its Content-Length body too; its head, or
    ``None`` if the client went away first. A server that closes with request
    bytes unread makes the kernel reset the connection, which can destroy
    the reply's last bytes before the client reads them."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(65536)
        if not more:
            return None
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        more = conn.recv(65536)
        if not more:
            return None
        body += more
    return head


class _Listener:
    """Accepts connections on 127.0.0.1 and hands each to ``self.handle``."""

    def __init__(self, server_context=None):
        self._context = server_context
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stopping = threading.Event()
        self._threads = []
        self._open = set()
        self._lock = threading.Lock()
        self.accepted = 0
        self.closed = 0  # connections that ended (the client's side)
        self.forwarded = 0  # bytes relayed from clients to the servers behind
        self.changed = threading.Condition(self._lock)

    @property
    def url_host(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stopping.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not, on Linux)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(5)  # no connection is being accepted and started any more
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(5)

    def wait_closed(self, count, timeout=10.0):
        with self.changed:
            return self.changed.wait_for(lambda: self.closed >= count, timeout)

    def _serve(self):
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, conn):
        with self._lock:
            self.accepted += 1
        try:
            if self._context is not None:
                conn.settimeout(10)
                conn = self._context.wrap_socket(conn, server_side=True)
                conn.settimeout(None)
            self._track(conn)
            self.handle(conn)
        except (OSError, ValueError):
            pass
        finally:
            self._untrack(conn)
            _close(conn)
            with self.changed:
                self.closed += 1
                self.changed.notify_all()

    def _track(self, sock):
        with self._lock:
            self._open.add(sock)

    def _untrack(self, sock):
        with self._lock:
            self._open.discard(sock)

    def handle(self, conn):  # pragma: no cover - overridden
        raise NotImplementedError

    def relay(self, a, b):
        """Copy bytes both ways until either side ends; then close both."""
        self._track(b)
        try:
            sockets = [a, b]
            while True:
                ready = [s for s in sockets if isinstance(s, ssl.SSLSocket) and s.pending()]
                if not ready:
                    ready, _, _ = select.select(sockets, [], [], 0.5)
                if self._stopping.is_set():
                    return
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    if src is a:
                        with self._lock:
                            self.forwarded += len(data)
                    (b if src is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            self._untrack(b)
            _close(b)


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass
    sock.close()


class TlsFront(_Listener):
    """``https://127.0.0.1:port`` in front of a plain-HTTP server at *target* (host, port)."""

    def __init__(self, target, server_context):
        super().__init__(server_context)
        self._target = target

    @property
    def url(self):
        return f"https://localhost:{self.port}"

    def handle(self, conn):
        self.relay(conn, socket.create_connection(self._target))


class ConnectProxy(_Listener):
    """An HTTP proxy that supports CONNECT (over TLS itself when given a context)."""

    def __init__(self, server_context=None):
        super().__init__(server_context)
        self.tunnels = []  # "host:port" of each CONNECT

    @property
    def url(self):
        return f"{'https' if self._context else 'http'}://localhost:{self.port}"

    def handle(self, conn):
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(4096)
            if not data:
                return
            head += data
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = target.rsplit(":", 1)
        self.tunnels.append(target)
        upstream = socket.create_connection((host, int(port)))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.relay(conn, upstream)


class Socks5Proxy(_Listener):
    """A SOCKS5 proxy (no authentication, CONNECT only). With *hold*, it
    answers each greeting only once ``release`` is set (``greeted`` is set
    when one arrived): a handshake that takes as long as a test wants."""

    def __init__(self, hold=False):
        super().__init__()
        self.tunnels = []
        self.greeted, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()

    @property
    def url(self):
        return f"socks5h://127.0.0.1:{self.port}"

    def handle(self, conn):
        def read(n):
            data = b""
            while len(data) < n:
                more = conn.recv(n - len(data))
                if not more:
                    raise OSError("closed")
                data += more
            return data

        _, methods = read(2)
        read(methods)
        self.greeted.set()
        self.release.wait(30)
        conn.sendall(b"\x05\x00")
        _, command, _, kind = read(4)
        if kind == 1:
            host = socket.inet_ntoa(read(4))
        elif kind == 3:
            host = read(read(1)[0]).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, read(16))
        (port,) = struct.unpack("!H", read(2))
        if command != 1:
            conn.sendall(b"\x05\x07\x00\x01" + b"\0" * 6)
            return
        self.tunnels.append(f"{host}:{port}")
        try:
            upstream = socket.create_connection((host, port))
        except ConnectionRefusedError:
            conn.sendall(b"\x05\x05\x00\x01" + b"\0" * 6)  # as a real proxy answers: connection refused
            return
        conn.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
        self.relay(conn, upstream)


class Silent(_Listener):
    """Accepts, reads the request, and never answers (until the client hangs up)."""

    def __init__(self):
        super().__init__()
        self.requests = 0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def handle(self, conn):
        data = conn.recv(65536)
        if data:
            with self.changed:
                self.requests += 1
                self.changed.notify_all()
        while conn.recv(65536):
            pass

    def wait_request(self, timeout=10.0):
        with self.changed:
            return self.changed.wait_for(lambda: self.requests >= 1, timeout)


class ForwardProxy(_Listener):
    """An HTTP proxy for ``http://`` URLs (absolute-form requests, no CONNECT),
    over TLS itself when given a context. Each request goes to its server on
    a connection of its own, with ``Connection: close``; ``heads`` keeps
    every request head the proxy read (bytes), so a test sees what it saw."""

    def __init__(self, server_context=None):
        super().__init__(server_context)
        self.heads = []

    @property
    def url(self):
        return f"{'https' if self._context else 'http'}://localhost:{self.port}"

    def handle(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            if not more:
                return
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        with self._lock:
            self.heads.append(head)
        request_line, *fields = head.split(b"\r\n")
        method, target, version = request_line.split(b" ", 2)
        if not target.startswith(b"http://"):
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        authority, _, path = target[len(b"http://"):].partition(b"/")
        host, _, port = authority.rpartition(b":")
        kept = [f for f in fields if not f.lower().startswith((b"connection:", b"proxy-"))]
        upstream = socket.create_connection((host.decode(), int(port or 80)))
        upstream.sendall(b"\r\n".join([b" ".join([method, b"/" + path, version]), *kept, b"Connection: close"])
                         + b"\r\n\r\n" + body)
        self.relay(conn, upstream)
