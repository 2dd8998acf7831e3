"""The loopback sink: answers DNS with 127.0.0.1, accepts HTTP and TLS connects on the usual
ports, records what was asked (query names, request lines, hosts, SNI, bait values seen) and
reports each through the channel. Every read is bounded in size and time.

With a certificate (made per run by chainwatch), the sink also completes TLS handshakes, so
that what a client sends over HTTPS is read like plain HTTP: phases run with
``NODE_TLS_REJECT_UNAUTHORIZED=0``, so Node's https and fetch accept it; a client that checks
certificates (curl) gives up after its ClientHello, whose server name is still recorded."""

from __future__ import annotations

import base64
import binascii
import contextlib
import socket
import ssl
import struct
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

Report = Callable[[dict[str, Any]], None]
TCP_PORTS = (80, 443, 8080, 8443)
MAX_REQUEST = 64 * 1024
READ_SECONDS = 2.0
MAX_CONNECTIONS = 64


def bait_hits(data: bytes, baits: dict[str, str]) -> list[str]:
    """Names of bait values found in data: plain, base64, hex or URL-encoded."""
    text = data.decode("latin-1").lower()
    compact = text.replace("\n", "").replace("\r", "")
    hits = []
    for name, value in baits.items():
        forms = {value, base64.b64encode(value.encode()).decode()[:24],
                 base64.urlsafe_b64encode(value.encode()).decode()[:24],
                 binascii.hexlify(value.encode()).decode()[:32], urllib.parse.quote(value)}
        if any(f and f.lower() in compact for f in forms):
            hits.append(name)
    return sorted(hits)


def dns_name(packet: bytes) -> tuple[str, int, int]:
    """The first question's name, type, and the offset after the question."""
    pos, labels = 12, list[str]()
    while pos < len(packet) and len(labels) < 128:
        n = packet[pos]
        if n == 0 or n & 0xC0:
            pos += 1
            break
        labels.append(packet[pos + 1:pos + 1 + n].decode("latin-1"))
        pos += 1 + n
    qtype = struct.unpack("!H", packet[pos:pos + 2])[0] if pos + 2 <= len(packet) else 0
    return ".".join(labels), qtype, pos + 4


def dns_answer(packet: bytes) -> bytes:
    _name, qtype, end = dns_name(packet)
    header = packet[:2] + b"\x81\x80" + packet[4:6]
    question = packet[12:end]
    if qtype != 1:
        return header + b"\x00\x00\x00\x00\x00\x00" + question
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton("127.0.0.1")
    return header + b"\x00\x01\x00\x00\x00\x00" + question + answer


def sni(hello: bytes) -> str:
    """The server name of a TLS ClientHello, or ''."""
    try:
        pos = 5 + 4 + 2 + 32
        pos += 1 + hello[pos]
        pos += 2 + struct.unpack("!H", hello[pos:pos + 2])[0]
        pos += 1 + hello[pos]
        end = pos + 2 + struct.unpack("!H", hello[pos:pos + 2])[0]
        pos += 2
        while pos + 4 <= end:
            kind, size = struct.unpack("!HH", hello[pos:pos + 4])
            if kind == 0:
                n = struct.unpack("!H", hello[pos + 7:pos + 9])[0]
                return hello[pos + 9:pos + 9 + n].decode("latin-1")
            pos += 4 + size
    except (IndexError, struct.error):
        pass
    return ""


class Sink:
    def __init__(self, report: Report, baits: dict[str, str],
                 tls: tuple[str, str] | None = None) -> None:
        self.report = report
        self.baits = baits
        self.tls: ssl.SSLContext | None = None
        if tls is not None:
            try:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(tls[0], tls[1])
                self.tls = ctx
            except (OSError, ssl.SSLError):
                self.tls = None
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.sockets: list[socket.socket] = []

    def start(self) -> list[str]:
        """Bind what can be bound; returns the problems (a port that could not be bound)."""
        problems = []
        try:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 53))
            self.sockets.append(udp)
            threading.Thread(target=self._dns, args=(udp,), daemon=True).start()
        except OSError as exc:
            problems.append(f"dns: {exc}")
        for port in TCP_PORTS:
            try:
                tcp = socket.socket()
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind(("127.0.0.1", port))
                tcp.listen(16)
                self.sockets.append(tcp)
                threading.Thread(target=self._accept, args=(tcp, port), daemon=True).start()
            except OSError as exc:
                problems.append(f"tcp {port}: {exc}")
        return problems

    def _dns(self, udp: socket.socket) -> None:
        while True:
            try:
                packet, peer = udp.recvfrom(2048)
                name, qtype, _ = dns_name(packet)
                self.report({"kind": "dns", "name": name[:253], "type": qtype,
                             "bait": bait_hits(name.encode(), self.baits)})
                udp.sendto(dns_answer(packet), peer)
            except (OSError, IndexError, struct.error):
                continue

    def _accept(self, tcp: socket.socket, port: int) -> None:
        while True:
            try:
                conn, _ = tcp.accept()
            except OSError:
                continue
            if not self.slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn, port), daemon=True).start()

    def _read(self, conn: socket.socket | ssl.SSLSocket, tls_hello: bool = False) -> bytes:
        data = b""
        try:
            while len(data) < MAX_REQUEST:
                chunk = conn.recv(8192)
                if not chunk:
                    break
                data += chunk
                if (tls_hello and data[:1] == b"\x16") or self._complete(data):
                    break
        except (OSError, ssl.SSLError):
            pass
        return data

    def _http(self, conn: socket.socket | ssl.SSLSocket, data: bytes,
              record: dict[str, Any]) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        lines = head.split("\r\n")
        record["request"] = lines[0][:300] if lines else ""
        host = [x.split(":", 1)[1].strip() for x in lines[1:] if x.lower().startswith("host:")]
        record["host"] = host[0][:253] if host else ""
        with contextlib.suppress(OSError, ssl.SSLError):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                         b"Connection: close\r\n\r\n{}")

    def _serve(self, conn: socket.socket, port: int) -> None:
        try:
            conn.settimeout(READ_SECONDS)
            hello = b""
            if self.tls is not None:
                with contextlib.suppress(OSError):
                    hello = conn.recv(8192, socket.MSG_PEEK)
            if hello[:1] == b"\x16" and self.tls is not None:
                record: dict[str, Any] = {"kind": "connect", "port": port, "tls_sni": sni(hello)[:253]}
                try:
                    inner = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError, ValueError):
                    record.update(bytes=len(hello), bait=bait_hits(hello, self.baits))
                    self.report(record)  # the client refused our certificate
                    return
                conn = inner
                data = self._read(conn)
                record.update(bytes=len(data), bait=bait_hits(data, self.baits), decrypted=True)
                self._http(conn, data, record)
                self.report(record)
                return
            data = self._read(conn, tls_hello=True)
            record = {"kind": "connect", "port": port, "bytes": len(data),
                      "bait": bait_hits(data, self.baits)}
            if data[:1] == b"\x16":
                record["tls_sni"] = sni(data)[:253]
            else:
                self._http(conn, data, record)
            self.report(record)
        finally:
            conn.close()
            self.slots.release()

    @staticmethod
    def _complete(data: bytes) -> bool:
        if b"\r\n\r\n" not in data:
            return False
        head, body = data.split(b"\r\n\r\n", 1)
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                try:
                    return len(body) >= int(line.split(b":", 1)[1].strip())
                except ValueError:
                    return True
        if b"chunked" in head.lower():
            return body.endswith(b"0\r\n\r\n")
        return True
