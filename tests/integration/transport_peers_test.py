#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Our HTTP / WebSocket / SSE transport against implementations nobody here wrote.

* curl: HTTP over TCP and over the Unix socket, chunked uploads, limits, SSE read with `curl -N`.
* python3-websockets (Debian): as a client of our WebSocket server, and as a server for our client.
* Raw sockets: a table of hostile inputs (bad frames, bad upgrades, header floods, slow loris); each gets
  the RFC's close code or HTTP status, and the server keeps serving everyone else afterwards.

Run by CTest: transport_peers_test.py --server <transport_test_server> --client <transport_test_client>
Everything listens on 127.0.0.1 or in a temporary directory, and is torn down at the end.
"""
import argparse
import asyncio
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

import websockets

FAILURES = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (f"  ({detail})" if detail and not ok else ""))
    if not ok:
        FAILURES.append(name)


class Server:
    def __init__(self, binary, workdir, *flags):
        self.unix = os.path.join(workdir, "t.sock")
        self.proc = subprocess.Popen([binary, "--unix", self.unix, *flags], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        ready = json.loads(self.proc.stdout.readline())
        self.port = ready["port"]
        self.tls_port = ready.get("tls_port", 0)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.proc.stdin.close()  # the server exits when stdin closes
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def curl(*args, timeout=20):
    out = subprocess.run(["curl", "-s", "-S", *args], capture_output=True, timeout=timeout)
    return out.returncode, out.stdout


def status_of(*args):
    code, out = curl("-o", "/dev/null", "-w", "%{http_code}", *args)
    return out.decode()


def healthy(server):
    code, out = curl(server.url("/health"))
    return code == 0 and out == b"ok"


# ---------------------------------------------------------------- HTTP with curl

def http_tests(server, workdir):
    code, out = curl(server.url("/health"))
    check("curl GET over TCP", code == 0 and out == b"ok", out)
    code, out = curl("--unix-socket", server.unix, "http://localhost/health")
    check("curl GET over the Unix socket", code == 0 and out == b"ok", out)
    mode = oct(os.stat(server.unix).st_mode & 0o777)
    check("the Unix socket has mode 0600", mode == "0o600", mode)
    code, out = curl("--unix-socket", server.unix, "http://localhost/items/abc-42")
    check("path parameters", out == b"abc-42", out)

    body = os.urandom(300_000)
    path = os.path.join(workdir, "upload.bin")
    with open(path, "wb") as f:
        f.write(body)
    code, out = curl("-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + path, server.url("/echo"))
    check("chunked upload is de-chunked and echoed", out == body, f"{len(out)} bytes back")
    code, out = curl("-X", "POST", "--data-binary", "@" + path, server.url("/echo"))
    check("Content-Length upload is echoed", out == body, f"{len(out)} bytes back")
    code, out = curl("-X", "POST", "--data-binary", "@" + path, "--unix-socket", server.unix, "http://localhost/echo")
    check("upload over the Unix socket", out == body, f"{len(out)} bytes back")

    big = os.path.join(workdir, "big.bin")
    with open(big, "wb") as f:
        f.write(b"x" * (1024 * 1024 + 1))
    got = status_of("-X", "POST", "--data-binary", "@" + big, server.url("/echo"))
    check("a body over the 1 MiB default is 413 (answered before the body is read)", got == "413", got)
    check("a per-route body limit gives 413", status_of("-X", "POST", "--data-binary", "x" * 17,
                                                        server.url("/small")) == "413")
    check("an unknown path is 404", status_of(server.url("/nope")) == "404")
    check("a wrong method is 405", status_of("-X", "DELETE", server.url("/health")) == "405")
    code, out = curl("-i", "-X", "DELETE", server.url("/health"))
    check("405 carries an Allow header", b"Allow: GET" in out, out[:200])

    # Keep-alive: curl reuses one connection for several URLs on the same host.
    code, out = curl("-v", server.url("/health"), server.url("/health"), server.url("/health"))
    check("keep-alive serves several requests", out == b"okokok", out)

    code, out = curl("-N", "--max-time", "10", server.url("/events?count=3"))
    text = out.decode()
    check("SSE stream read with curl -N", "id: 3" in text and "data: second line" in text and ": stream start" in text,
          text[:200])
    code, out = curl("-N", "--max-time", "10", "-H", "Last-Event-ID: 7", server.url("/events?count=2"))
    text = out.decode()
    check("SSE resumes after Last-Event-ID", "id: 8" in text and "id: 9" in text and "id: 7" not in text, text[:200])


# ---------------------------------------------------------------- raw sockets

def raw_connect(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return s


def read_until_closed(s, limit=1 << 20, timeout=5):
    s.settimeout(timeout)
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def http_status(raw):
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def hostile_http_tests(server):
    cases = [
        ("garbage request line", b"HELLO\r\n\r\n", 400),
        ("header section over 16 KiB", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
        ("header flood (thousands of fields)", b"GET /health HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n", 431),
        ("Content-Length with Transfer-Encoding (smuggling)",
         b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("invalid chunk size", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ("unsupported transfer coding", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        ("websocket upgrade without a key", b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
         b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        ("websocket upgrade with version 8", b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
         b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426),
        ("plain GET on the websocket route", b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 426),
    ]
    for name, request, expected in cases:
        s = raw_connect(server)
        s.sendall(request)
        got = http_status(read_until_closed(s))
        s.close()
        check(f"hostile HTTP: {name} -> {expected}", got == expected, f"got {got}")
        check(f"  server still serves after: {name}", healthy(server))


def slow_loris_test(server):
    # The server under test runs with a 500 ms request timeout.
    s = raw_connect(server)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finishes the header section
    start = time.monotonic()
    data = read_until_closed(s, timeout=5)
    elapsed = time.monotonic() - start
    s.close()
    check("slow loris: a half-sent request is cut off by the request timeout", elapsed < 3.0 and data == b"",
          f"{elapsed:.2f}s, {data[:60]!r}")
    check("  server still serves after slow loris", healthy(server))


# ---------------------------------------------------------------- hostile WebSocket frames

def ws_handshake(server):
    s = raw_connect(server)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response:
        response += s.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in response, response  # RFC 6455 §1.3 accept key
    return s


def frame(opcode, payload, fin=True, masked=True, rsv=0, length_override=None):
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload) if length_override is None else length_override
    mask_bit = 0x80 if masked else 0
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return header + payload
    key = b"\x01\x02\x03\x04"
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_code_from(data):
    # Find the server's close frame (unmasked, opcode 8) in what came back.
    i = 0
    while i + 2 <= len(data):
        opcode = data[i] & 0x0F
        n = data[i + 1] & 0x7F
        offset = 2
        if n == 126:
            n = struct.unpack("!H", data[i + 2:i + 4])[0]
            offset = 4
        elif n == 127:
            n = struct.unpack("!Q", data[i + 2:i + 10])[0]
            offset = 10
        payload = data[i + offset:i + offset + n]
        if opcode == 8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        i += offset + n
    return None


def hostile_ws_tests(server):
    cases = [
        ("unmasked client frame", frame(1, b"hi", masked=False), 1002),
        ("reserved bit set", frame(1, b"hi", rsv=0x40), 1002),
        ("unknown opcode 3", frame(3, b"hi"), 1002),
        ("ping over 125 bytes", frame(9, b"p" * 126), 1002),
        ("fragmented ping", frame(9, b"p", fin=False), 1002),
        ("continuation with nothing to continue", frame(0, b"x"), 1002),
        ("invalid UTF-8 in a text message", frame(1, b"\xc0\xaf"), 1007),
        ("invalid UTF-8 split across fragments", frame(1, b"ok\xe2", fin=False) + frame(0, b"\x28\xa1"), 1007),
        ("message over the size limit", frame(2, b"", length_override=(1 << 20) + 1), 1009),
        ("length field of 2^63", frame(2, b"", length_override=1 << 63), 1002),
        ("close frame with a 1-byte payload", frame(8, b"\x03"), 1002),
        ("close code 1005 on the wire", frame(8, struct.pack("!H", 1005)), 1002),
        ("close reason that is not UTF-8", frame(8, struct.pack("!H", 1000) + b"\xff"), 1007),
        ("text frame while a fragmented message is open", frame(1, b"a", fin=False) + frame(1, b"b"), 1002),
    ]
    for name, payload, expected in cases:
        s = ws_handshake(server)
        s.sendall(payload)
        got = close_code_from(read_until_closed(s))
        s.close()
        check(f"hostile frame: {name} -> {expected}", got == expected, f"got {got}")
    check("  server still serves after the hostile frames", healthy(server))

    # A clean close handshake: the server echoes our code.
    s = ws_handshake(server)
    s.sendall(frame(8, struct.pack("!H", 4000) + b"done"))
    got = close_code_from(read_until_closed(s))
    s.close()
    check("close handshake: the server echoes the client's 4000", got == 4000, f"got {got}")


# ---------------------------------------------------------------- python3-websockets as the client

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]


async def websockets_client_tests(server):
    uri = f"ws://127.0.0.1:{server.port}/ws"
    async with websockets.connect(uri, max_size=None) as ws:
        ok = True
        for n in SIZES:
            data = os.urandom(n)
            await ws.send(data)
            ok &= (await ws.recv()) == data
            text = "é" * (n // 2) + "a" * (n % 2)
            await ws.send(text)
            ok &= (await ws.recv()) == text
        check("websockets client: binary and text echo at 0/125/126/65535/65536/1 MiB", ok)
        await ws.send(["frag", "men", "ted"])
        check("websockets client: a fragmented message arrives whole", (await ws.recv()) == "fragmented")
        await ws.send([b"\x00\x01", b"\x02"])
        check("websockets client: a fragmented binary message", (await ws.recv()) == b"\x00\x01\x02")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        check("websockets client: ping is answered with pong", True)
        await ws.send("close:4001")
        try:
            await asyncio.wait_for(ws.recv(), 5)
            check("websockets client: server-initiated close with 4001", False, "no close")
        except websockets.ConnectionClosed as closed:
            check("websockets client: server-initiated close with 4001",
                  closed.rcvd is not None and closed.rcvd.code == 4001, str(closed))
    async with websockets.connect(uri) as ws:
        await ws.close(code=1000, reason="bye")
        check("websockets client: client-initiated close completes with 1000", ws.close_code == 1000, ws.close_code)
    # The server's own limit: a message over max size is refused with 1009.
    async with websockets.connect(uri, max_size=None) as ws:
        try:
            # Inside the try: a server may rightly refuse the message while it is still being uploaded.
            await ws.send(b"x" * ((1 << 20) + 1))
            await asyncio.wait_for(ws.recv(), 5)
            check("websockets client: an oversized message is closed with 1009", False, "echoed")
        except websockets.ConnectionClosed as closed:
            check("websockets client: an oversized message is closed with 1009",
                  closed.rcvd is not None and closed.rcvd.code == 1009, str(closed))


async def slow_consumer_test(server):
    # The server under test queues at most 256 KiB for a peer; asking it for 20 MiB while not reading
    # must end with the slow-consumer close (1013), not with unbounded memory.
    uri = f"ws://127.0.0.1:{server.port}/ws"
    async with websockets.connect(uri, max_size=None, read_limit=2 ** 12, max_queue=1) as ws:
        ws.transport.pause_reading()
        await ws.send("flood:320")
        await asyncio.sleep(1.5)
        ws.transport.resume_reading()
        code = None
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        except asyncio.TimeoutError:
            pass
        check("slow consumer: the server closes with 1013 instead of queueing without bound", code == 1013,
              f"code {code}")


# ---------------------------------------------------------------- python3-websockets as the server

async def websockets_server_test(client_binary):
    async def echo(ws, path=None):
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(client_binary, f"ws://127.0.0.1:{port}/", *map(str, SIZES),
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
        echoes = [line for line in lines if line["check"] == "echo"]
        check("our client against a websockets server: every size echoes, text and binary",
              proc.returncode == 0 and len(echoes) == 2 * len(SIZES) and all(e["ok"] for e in echoes),
              out.decode()[-300:])
        closes = [line for line in lines if line["check"] == "close"]
        check("our client against a websockets server: clean close 1000", closes and closes[0]["ok"], closes)


# ---------------------------------------------------------------- TLS (wss:// and https://)

def make_certificate(workdir):
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", key,
                    "-out", cert, "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


async def tls_tests(server, cert, client_binary):
    code, out = curl("--cacert", cert, f"https://localhost:{server.tls_port}/health")
    check("curl over TLS with our server's certificate trusted", code == 0 and out == b"ok", out)
    code, out = curl(f"https://localhost:{server.tls_port}/health")
    check("curl refuses our self-signed certificate when it is not trusted", code != 0, code)
    context = ssl.create_default_context(cafile=cert)
    async with websockets.connect(f"wss://localhost:{server.tls_port}/ws", ssl=context, max_size=None) as ws:
        ok = True
        for n in SIZES:
            data = os.urandom(n)
            await ws.send(data)
            ok &= (await ws.recv()) == data
        check("websockets client over wss:// against our TLS server", ok)

    # Our client over TLS against a python3-websockets wss:// server.
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, os.path.join(os.path.dirname(cert), "key.pem"))

    async def echo(ws, path=None):
        async for message in ws:
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", 0, ssl=server_context, max_size=None) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        url = f"wss://localhost:{port}/"
        proc = await asyncio.create_subprocess_exec(client_binary, "--ca", cert, url, "0", "126", "65536",
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        check("our client over wss:// with a trusted CA file", proc.returncode == 0, out.decode()[-300:])
        proc = await asyncio.create_subprocess_exec(client_binary, "--expect-fail", url, "0",
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        check("our client refuses an untrusted certificate (verification on by default)", proc.returncode == 0,
              out.decode()[-300:])


def connection_limit_test(binary, workdir):
    server = Server(binary, workdir, "--max-connections", "2", "--idle-timeout-ms", "800")
    try:
        held = [raw_connect(server), raw_connect(server)]  # two idle keep-alive connections fill the server
        time.sleep(0.2)
        s = raw_connect(server)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        got = http_status(read_until_closed(s))
        s.close()
        check("over max connections: 503 and close", got == 503, f"got {got}")
        start = time.monotonic()
        data = read_until_closed(held[0], timeout=5)
        elapsed = time.monotonic() - start
        check("an idle keep-alive connection is closed after the idle timeout", data == b"" and elapsed < 3,
              f"{elapsed:.2f}s")
        for h in held:
            h.close()
        time.sleep(0.2)
        check("after the idle ones are gone, the server accepts again", healthy(server))
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--client", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="claudemesh-transport-") as workdir:
        cert, key = make_certificate(workdir)
        server = Server(args.server, workdir, "--request-timeout-ms", "500", "--tls-cert", cert, "--tls-key", key)
        try:
            asyncio.run(tls_tests(server, cert, args.client))
            http_tests(server, workdir)
            hostile_http_tests(server)
            slow_loris_test(server)
            hostile_ws_tests(server)
            asyncio.run(websockets_client_tests(server))
            check("server still serves at the end", healthy(server))
        finally:
            server.stop()
        check("the Unix socket file is removed on exit", not os.path.exists(server.unix))
        connection_limit_test(args.server, workdir)
        # A second server with a small send queue, for the slow-consumer policy.
        slow = Server(args.server, workdir, "--max-queued-bytes", str(256 * 1024))
        try:
            asyncio.run(slow_consumer_test(slow))
            check("server still serves after a slow consumer", healthy(slow))
        finally:
            slow.stop()
        asyncio.run(websockets_server_test(args.client))
    if FAILURES:
        print(f"\n{len(FAILURES)} check(s) failed:", *FAILURES, sep="\n  ")
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
