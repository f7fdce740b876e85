#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""An independent claudemesh client for tests and benchmarks, written from docs/protocol.md (not from our code).

Uses only what Debian ships for /usr/bin/python3: python3-nacl, python3-websockets (10.x, asyncio API) and the
standard library. Pieces:

* ids and keys: `ulid()`, `Identity` (ed25519 member/session key, x25519 box key derived from it)
* signed statements (protocol §3): member hello, session attestation, session hello, invite v2, signed request
* crypto (§4): `seal_dm` / `open_dm` (crypto_box), `seal_shared` / `open_shared` (secretbox), `request_fingerprint`
* `BrokerProcess`: starts `claudemesh-broker --listen 127.0.0.1:0 --data-dir D …`, reads the JSON `listening` line
* `BrokerApi`: the HTTP API (§7) with signed requests
* `Conn`: one WebSocket connection (§8) that buffers every frame, so a test can wait for the frame it wants while
  pushes and system events arrive in between
* hello frame builders: `member_hello`, `session_attestation`, `session_hello`

Run `/usr/bin/python3 meshclient.py VECTORS.json` to check the signing and crypto helpers against
tests/vectors/core_vectors.json.
"""
import asyncio
import base64
import collections
import hashlib
import http.client
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

import nacl.exceptions
import nacl.utils
from nacl.public import Box
from nacl.secret import SecretBox
from nacl.signing import SigningKey, VerifyKey

import websockets
import websockets.exceptions

HOST = "127.0.0.1"


def now_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------- ids

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class UlidGenerator:
    """ULIDs (protocol §5.5): 48-bit ms time + 80 random bits, 26 Crockford base32 chars; monotonic."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last_ms = -1
        self._rand = 0

    def __call__(self):
        with self._lock:
            ms = now_ms()
            if ms <= self._last_ms:
                ms = self._last_ms
                self._rand += 1
                if self._rand >> 80:
                    ms += 1
                    self._rand = secrets.randbits(79)
            else:
                self._rand = secrets.randbits(80)
            self._last_ms = ms
            value = (ms << 80) | self._rand
            return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


ulid = UlidGenerator()


# ---------------------------------------------------------------- keys

class Identity:
    """An ed25519 key (member, session or service); box keys are derived from it (protocol §2)."""

    def __init__(self, signing_key=None):
        self.signing_key = signing_key or SigningKey.generate()
        self.pubkey = self.signing_key.verify_key.encode().hex()
        self._box_secret = None

    @classmethod
    def from_seed(cls, seed):
        return cls(SigningKey(seed))

    def sign(self, text):
        """Detached signature over the UTF-8 bytes of `text`, as 128 lowercase hex."""
        return self.signing_key.sign(text.encode()).signature.hex()

    @property
    def box_secret(self):
        if self._box_secret is None:
            self._box_secret = self.signing_key.to_curve25519_private_key()
        return self._box_secret

    def __repr__(self):
        return f"Identity({self.pubkey[:12]}…)"


def box_public(pubkey_hex):
    return VerifyKey(bytes.fromhex(pubkey_hex)).to_curve25519_public_key()


def verify(pubkey_hex, text, signature_hex):
    try:
        VerifyKey(bytes.fromhex(pubkey_hex)).verify(text.encode(), bytes.fromhex(signature_hex))
        return True
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False


def random_pubkey():
    return Identity().pubkey


# ---------------------------------------------------------------- canonical strings (protocol §3, §7.1)

def member_hello_string(mesh_id, member_id, pubkey, timestamp_ms):
    return f"{mesh_id}|{member_id}|{pubkey}|{timestamp_ms}"


def attestation_string(parent_pubkey, session_pubkey, expires_at_ms):
    return f"claudemesh-session-attest|{parent_pubkey}|{session_pubkey}|{expires_at_ms}"


def session_hello_string(mesh_id, parent_pubkey, session_pubkey, timestamp_ms):
    return f"claudemesh-session-hello|{mesh_id}|{parent_pubkey}|{session_pubkey}|{timestamp_ms}"


def invite_v2_string(mesh_id, invite_id, expires_at_s, role, inviter_pubkey):
    return f"v=2|{mesh_id}|{invite_id}|{expires_at_s}|{role}|{inviter_pubkey}"


def request_string(method, target, timestamp_ms, body):
    return f"claudemesh-request-v1|{method}|{target}|{timestamp_ms}|{hashlib.sha256(body).hexdigest()}"


# ---------------------------------------------------------------- crypto (protocol §4, §5.4)

def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text, validate=True)


def seal_dm(sender, recipient_pubkey, plaintext, nonce=None):
    """crypto_box_easy from sender's derived x25519 secret to the recipient's derived public key.
    Returns (nonce_b64, ciphertext_b64); the ciphertext is MAC ‖ encrypted body."""
    nonce = nonce if nonce is not None else nacl.utils.random(Box.NONCE_SIZE)
    sealed = Box(sender.box_secret, box_public(recipient_pubkey)).encrypt(plaintext, nonce)
    return b64(nonce), b64(sealed.ciphertext)


def open_dm(recipient, sender_pubkey, nonce_b64, ciphertext_b64):
    """Opens a DM body; raises on any failure (the protocol's decrypt_failed)."""
    nonce = unb64(nonce_b64)
    if len(nonce) != Box.NONCE_SIZE:
        raise ValueError("nonce is not 24 bytes")
    return Box(recipient.box_secret, box_public(sender_pubkey)).decrypt(unb64(ciphertext_b64), nonce)


def seal_shared(key, plaintext, nonce=None):
    """secretbox under a 32-byte key the recipients share (a broadcast/group body)."""
    nonce = nonce if nonce is not None else nacl.utils.random(SecretBox.NONCE_SIZE)
    return b64(nonce), b64(SecretBox(key).encrypt(plaintext, nonce).ciphertext)


def open_shared(key, nonce_b64, ciphertext_b64):
    return SecretBox(key).decrypt(unb64(ciphertext_b64), unb64(nonce_b64))


def canonical_json(value):
    """Sorted keys, no whitespace. Equal to RFC 8785 for what we hash here (ASCII keys, strings and integers)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_fingerprint(channel, target, priority, plaintext, reply_to_id="", meta=None):
    """Protocol §5.4: SHA-256 over the NUL-joined fields, the body digest as raw 32 bytes; 64 lowercase hex."""
    parts = [b"1", channel.encode(), target.encode(), (reply_to_id or "").encode(), priority.encode(),
             canonical_json(meta).encode() if meta is not None else b""]
    return hashlib.sha256(b"\x00".join(parts) + b"\x00" + hashlib.sha256(plaintext).digest()).hexdigest()


# ---------------------------------------------------------------- hello frames (protocol §8.1)

def member_hello(ident, mesh_id, member_id, session_id, *, timestamp=None, sign_with=None, **extra):
    """A `hello` frame for a member's control-plane connection. `extra` adds or overrides fields."""
    ts = now_ms() if timestamp is None else timestamp
    signer = sign_with or ident
    frame = {"type": "hello", "meshId": mesh_id, "memberId": member_id, "pubkey": ident.pubkey, "timestamp": ts,
             "signature": signer.sign(member_hello_string(mesh_id, member_id, ident.pubkey, ts)),
             "sessionId": session_id, "protocolVersion": 1}
    frame.update(extra)
    return frame


def session_attestation(parent, session_pubkey, expires_at_ms=None, *, sign_with=None):
    expires = now_ms() + 12 * 3600 * 1000 if expires_at_ms is None else expires_at_ms
    signer = sign_with or parent
    return {"sessionPubkey": session_pubkey, "parentMemberPubkey": parent.pubkey, "expiresAt": expires,
            "signature": signer.sign(attestation_string(parent.pubkey, session_pubkey, expires))}


def session_hello(parent, session, mesh_id, session_id, *, parent_member_id=None, attestation=None, timestamp=None,
                  sign_with=None, signed_mesh_id=None, **extra):
    """A `session_hello` frame: the session key signs the hello, the parent vouches by the attestation.
    `signed_mesh_id` signs for another mesh than the one sent (a cross-mesh replay)."""
    ts = now_ms() if timestamp is None else timestamp
    signer = sign_with or session
    att = attestation if attestation is not None else session_attestation(parent, session.pubkey)
    frame = {"type": "session_hello", "meshId": mesh_id, "parentMemberPubkey": parent.pubkey,
             "sessionPubkey": session.pubkey, "parentAttestation": att, "timestamp": ts,
             "signature": signer.sign(session_hello_string(signed_mesh_id or mesh_id, parent.pubkey, session.pubkey,
                                                           ts)),
             "sessionId": session_id, "protocolVersion": 1}
    if parent_member_id is not None:
        frame["parentMemberId"] = parent_member_id
    frame.update(extra)
    return frame


# ---------------------------------------------------------------- HTTP (protocol §7)

class HttpResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def code(self):
        """The `error.code` of an error body, or None."""
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"].get("code")
        return None

    def get(self, *path):
        node = self.json
        for key in path:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        return node

    def __repr__(self):
        text = self.body[:400].decode(errors="replace")
        return f"HTTP {self.status} {text}"


def http_request(port, method, target, body=None, headers=None, timeout=15.0, host=HOST):
    """One request on a fresh connection; `target` is sent exactly as given."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return HttpResponse(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()


_ts_lock = threading.Lock()
_last_ts = 0


def unique_now_ms():
    """Now, but never the same value twice in this process: ed25519 signatures are deterministic, so two equal
    requests signed in the same millisecond would be one signature, and the broker rightly answers `replayed`."""
    global _last_ts
    with _ts_lock:
        _last_ts = max(now_ms(), _last_ts + 1)
        return _last_ts


def signed_headers(signer, method, target, body, timestamp=None):
    ts = unique_now_ms() if timestamp is None else timestamp
    return {"X-Claudemesh-Pubkey": signer.pubkey, "X-Claudemesh-Timestamp": str(ts),
            "X-Claudemesh-Signature": signer.sign(request_string(method, target, ts, body))}


_NO_BODY = object()


class BrokerApi:
    def __init__(self, port, host=HOST):
        self.host = host
        self.port = port

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}"

    def request(self, method, target, body=_NO_BODY, *, signer=None, raw=None, timestamp=None, headers=None,
                sign_method=None, sign_target=None, sign_body=None, timeout=15.0):
        """`body` is JSON-encoded; `raw` is sent as is. The `sign_*` overrides sign something other than what
        is sent (to test that the broker notices)."""
        if raw is None and body is not _NO_BODY:
            raw = json.dumps(body).encode()
        hdrs = {}
        if raw is not None:
            hdrs["Content-Type"] = "application/json"
        if signer is not None:
            signed_body = sign_body if sign_body is not None else (raw if raw is not None else b"")
            hdrs.update(signed_headers(signer, sign_method or method, sign_target or target, signed_body, timestamp))
        hdrs.update(headers or {})
        if raw is None and method in ("POST", "PUT", "PATCH"):
            raw = b""
        return http_request(self.port, method, target, raw, hdrs, timeout=timeout, host=self.host)

    # -- the routes of §7.2
    def healthz(self):
        return self.request("GET", "/healthz")

    def create_mesh(self, owner, name, display_name, token=None):
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        return self.request("POST", "/v1/meshes", {"name": name, "displayName": display_name}, signer=owner,
                            headers=headers)

    def get_mesh(self, signer, mesh_id):
        return self.request("GET", f"/v1/meshes/{mesh_id}", signer=signer)

    def list_members(self, signer, mesh_id):
        return self.request("GET", f"/v1/meshes/{mesh_id}/members", signer=signer)

    def patch_member(self, signer, mesh_id, pubkey, changes):
        return self.request("PATCH", f"/v1/meshes/{mesh_id}/members/{pubkey}", changes, signer=signer)

    def invite_body(self, inviter, mesh_id, *, role="member", expires_at_s=None, max_uses=None, invite_id=None,
                    statement_signer=None):
        invite_id = invite_id or ulid()
        expires = int(time.time()) + 3600 if expires_at_s is None else expires_at_s
        signer = statement_signer or inviter
        body = {"inviteId": invite_id, "expiresAt": expires, "role": role,
                "signature": signer.sign(invite_v2_string(mesh_id, invite_id, expires, role, inviter.pubkey))}
        if max_uses is not None:
            body["maxUses"] = max_uses
        return body

    def create_invite(self, inviter, mesh_id, **kwargs):
        """Returns (response, inviteId)."""
        body = self.invite_body(inviter, mesh_id, **kwargs)
        return self.request("POST", f"/v1/meshes/{mesh_id}/invites", body, signer=inviter), body["inviteId"]

    def revoke_invite(self, signer, mesh_id, invite_id):
        return self.request("DELETE", f"/v1/meshes/{mesh_id}/invites/{invite_id}", signer=signer)

    def get_invite(self, invite_id):
        return self.request("GET", f"/v1/invites/{invite_id}")

    def claim_invite(self, joiner, invite_id, display_name):
        return self.request("POST", f"/v1/invites/{invite_id}/claim", {"displayName": display_name}, signer=joiner)

    def member_action(self, signer, mesh_id, pubkey, action, body=_NO_BODY):
        """action: revoke | ban | unban | kick."""
        return self.request("POST", f"/v1/meshes/{mesh_id}/members/{pubkey}/{action}", body, signer=signer)


class ApiError(Exception):
    def __init__(self, what, resp):
        super().__init__(f"{what}: {resp!r}")
        self.resp = resp


class Member:
    """A member of a mesh as a client knows it: its key, member id and display name."""

    def __init__(self, ident, member_id, name, role):
        self.ident = ident
        self.id = member_id
        self.name = name
        self.role = role

    @property
    def pubkey(self):
        return self.ident.pubkey

    def __repr__(self):
        return f"Member({self.name}, {self.pubkey[:12]}…)"


class Mesh:
    def __init__(self, api, mesh_json, owner):
        self.api = api
        self.id = mesh_json["id"]
        self.name = mesh_json.get("name")
        self.json = mesh_json
        self.owner = owner

    def add_member(self, name, role="member", inviter=None):
        """The owner (or `inviter`) invites a fresh key, which claims the invite."""
        inviter = inviter or self.owner
        resp, invite_id = self.api.create_invite(inviter.ident, self.id, role=role)
        if resp.status != 201:
            raise ApiError("create invite", resp)
        ident = Identity()
        claimed = self.api.claim_invite(ident, invite_id, name)
        if claimed.status != 201 or not claimed.get("member", "id"):
            raise ApiError("claim invite", claimed)
        return Member(ident, claimed.get("member", "id"), name, claimed.get("member", "role") or role)


def create_mesh(api, name="mesh", owner_name="owner", owner=None, token=None):
    owner_ident = owner or Identity()
    resp = api.create_mesh(owner_ident, name, owner_name, token=token)
    if resp.status != 201 or not resp.get("mesh", "id") or not resp.get("member", "id"):
        raise ApiError("create mesh", resp)
    return Mesh(api, resp.get("mesh"), Member(owner_ident, resp.get("member", "id"), owner_name, "owner"))


# ---------------------------------------------------------------- the broker process

class BrokerProcess:
    """`claudemesh-broker --listen 127.0.0.1:0 --data-dir D [flags]`: JSON log lines on stdout, one of them
    `{"event":"listening","port":N}`. Stopped with SIGTERM through its own Popen handle."""

    def __init__(self, binary, data_dir, args=(), stderr_path=None, name="broker"):
        self.binary = binary
        self.data_dir = data_dir
        self.args = list(args)
        self.stderr_path = stderr_path or data_dir.rstrip("/") + ".stderr"
        self.name = name
        self.proc = None
        self.port = None
        self.lines = collections.deque(maxlen=5000)
        self.all_lines_json = True
        self._listening = threading.Event()
        self._reader = None

    def start(self, timeout=10.0, port=0):
        """Start it; `port` 0 picks a free one (pass the old port to restart "the same" broker)."""
        os.makedirs(self.data_dir, exist_ok=True)
        self._listening.clear()
        self.port = None
        stderr = open(self.stderr_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.binary, "--listen", f"{HOST}:{port}", "--data-dir", self.data_dir, *self.args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        finally:
            stderr.close()
        self._reader = threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._listening.wait(0.05):
                return self
            if self.proc.poll() is not None:
                self._reader.join(1)
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before listening; "
                                   f"log: {self.log_tail()}")
        self.kill()
        raise RuntimeError(f"{self.name}: no listening line within {timeout} s; log: {self.log_tail()}")

    def _read_stdout(self, proc):
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                self.all_lines_json = False
                continue
            if not isinstance(event, dict):
                self.all_lines_json = False
                continue
            if event.get("event") == "listening" and isinstance(event.get("port"), int) and self.port is None:
                self.port = event["port"]
                self._listening.set()

    @property
    def api(self):
        return BrokerApi(self.port)

    @property
    def ws_url(self):
        return f"ws://{HOST}:{self.port}/ws"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=8):
        """The last lines of stderr (where crashes land) and of the JSON log on stdout."""
        err = self.stderr_text().splitlines()[-n:]
        out = list(self.lines)[-n:]
        return " | ".join((["stderr:"] + err if err else []) + ["stdout:"] + out)

    def stop(self, timeout=10.0):
        """SIGTERM and wait; returns the exit status (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        if self._reader:
            self._reader.join(2)
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def hash_token(binary, token, timeout=30):
    """`claudemesh-broker hash-token`: the token on stdin, its argon2id hash on stdout."""
    out = subprocess.run([binary, "hash-token"], input=token.encode(), capture_output=True, timeout=timeout)
    return out.returncode, out.stdout.decode(errors="replace").strip(), out.stderr.decode(errors="replace")


# ---------------------------------------------------------------- WebSocket connections (protocol §8)

class ConnClosed(Exception):
    pass


class Conn:
    """One WebSocket connection. A reader task buffers every frame; `expect` takes the first buffered or
    future frame matching a predicate, leaving the others for later."""

    _req = 0

    def __init__(self, ws, label=""):
        self.ws = ws
        self.label = label
        self.frames = []
        self.seen = []  # every frame ever received, for failure messages
        self.close_code = None
        self.close_reason = None
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url, label="", max_size=16 * 1024 * 1024):
        ws = await websockets.connect(url, max_size=max_size, compression=None, ping_interval=None,
                                      open_timeout=10, close_timeout=2)
        return cls(ws, label)

    async def _read(self):
        try:
            async for raw in self.ws:
                try:
                    frame = json.loads(raw)
                except (ValueError, TypeError):
                    frame = {"_raw": raw}
                if not isinstance(frame, dict):
                    frame = {"_raw": raw}
                self.frames.append(frame)
                self.seen.append(frame)
                self._changed.set()
        except websockets.exceptions.ConnectionClosed:
            pass
        except Exception as exc:  # noqa: BLE001 - reported through close_reason
            self.close_reason = f"reader failed: {exc!r}"
        finally:
            if self.close_code is None:
                self.close_code = self.ws.close_code
                if self.close_reason is None:
                    self.close_reason = self.ws.close_reason
            self.closed.set()
            self._changed.set()

    def describe(self):
        frames = [json.dumps(f)[:200] for f in self.seen[-6:]]
        state = f"closed {self.close_code} {self.close_reason!r}" if self.closed.is_set() else "open"
        return f"[{self.label} {state}; last frames: {frames}]"

    async def send(self, frame):
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, data):
        await self.ws.send(data)

    def take(self, pred):
        for i, frame in enumerate(self.frames):
            if pred(frame):
                return self.frames.pop(i)
        return None

    def take_all(self, pred):
        hits = [f for f in self.frames if pred(f)]
        self.frames = [f for f in self.frames if not pred(f)]
        return hits

    async def expect(self, pred, timeout=5.0, what="a frame"):
        """The first frame matching `pred`; raises TimeoutError or ConnClosed with context."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.take(pred)
            if frame is not None:
                return frame
            if self.closed.is_set():
                raise ConnClosed(f"waiting for {what}: connection closed {self.describe()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {what} within {timeout} s {self.describe()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def quiet(self, pred, within=1.0):
        """Waits `within` seconds; returns the first frame matching `pred` (not removed) or None."""
        deadline = time.monotonic() + within
        while True:
            for frame in self.frames:
                if pred(frame):
                    return frame
            left = deadline - time.monotonic()
            if left <= 0 or self.closed.is_set():
                return None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def request(self, frame, types=("ack",), timeout=5.0):
        """Sends `frame` with a fresh `_reqId` and returns the reply: a frame of one of `types` or an `error`,
        echoing the `_reqId` (or, from a broker that does not echo it, the first such frame without one)."""
        Conn._req += 1
        rid = f"r{Conn._req}"
        frame = dict(frame, _reqId=rid)
        send_id = frame.get("id") if frame.get("type") == "send" else None
        wanted = set(types) | {"error"}

        def match(f):
            if f.get("type") not in wanted:
                return False
            if f.get("_reqId") == rid:
                return True
            if "_reqId" in f:
                return False
            return send_id is None or f.get("id") == send_id

        await self.send(frame)
        return await self.expect(match, timeout, what=f"reply {sorted(wanted)} to {frame.get('type')}")

    async def wait_closed(self, timeout=5.0):
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"connection not closed within {timeout} s {self.describe()}") from None
        return self.close_code, self.close_reason

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        try:
            await asyncio.wait_for(self.closed.wait(), 3)
        except asyncio.TimeoutError:
            self._task.cancel()

    def abort(self):
        """Drops the TCP connection without a close handshake."""
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()


# ---------------------------------------------------------------- frame predicates

def is_type(t):
    return lambda f: f.get("type") == t


def is_error(code=None):
    return lambda f: f.get("type") == "error" and (code is None or f.get("code") == code)


def is_message_push(message_id=None, **fields):
    def pred(f):
        if f.get("type") != "push" or f.get("subtype") == "system":
            return False
        if message_id is not None and f.get("messageId") != message_id:
            return False
        return all(f.get(k) == v for k, v in fields.items())
    return pred


def is_system(event=None, pubkey=None):
    def pred(f):
        if f.get("type") != "push" or f.get("subtype") != "system":
            return False
        if event is not None:
            events = (event,) if isinstance(event, str) else tuple(event)
            if f.get("event") not in events:
                return False
        data = f.get("eventData") if isinstance(f.get("eventData"), dict) else {}
        return pubkey is None or data.get("pubkey") == pubkey
    return pred


# ---------------------------------------------------------------- self-test against the shared vectors

def _self_test(vectors_path):
    with open(vectors_path) as f:
        v = json.load(f)
    member = Identity.from_seed(bytes.fromhex(v["identities"]["member"]["seed"]))
    session = Identity.from_seed(bytes.fromhex(v["identities"]["session"]["seed"]))
    assert member.pubkey == v["identities"]["member"]["publicKey"]
    mh = v["memberHello"]
    assert member_hello_string(mh["meshId"], mh["memberId"], mh["pubkey"], mh["timestamp"]) == mh["canonical"]
    assert member.sign(mh["canonical"]) == mh["signature"]
    sa = v["sessionAttestation"]
    assert attestation_string(sa["parent"], sa["session"], sa["expiresAt"]) == sa["canonical"]
    assert member.sign(sa["canonical"]) == sa["signature"]
    sh = v["sessionHello"]
    assert session_hello_string(sh["meshId"], sh["parent"], sh["session"], sh["timestamp"]) == sh["canonical"]
    assert session.sign(sh["canonical"]) == sh["signature"]
    iv = v["inviteV2"]
    assert invite_v2_string(iv["meshId"], iv["inviteId"], iv["expiresAt"], iv["role"], iv["owner"]) == iv["canonical"]
    assert verify(iv["owner"], iv["canonical"], iv["signature"])
    dm = v["dmBox"]
    nonce, ct = seal_dm(member, session.pubkey, unb64(dm["plaintextBase64"]), bytes.fromhex(dm["nonceHex"]))
    assert (nonce, ct) == (dm["nonce"], dm["ciphertext"])
    assert open_dm(session, member.pubkey, nonce, ct) == unb64(dm["plaintextBase64"])
    sb = v["secretBox"]
    assert seal_shared(bytes.fromhex(sb["keyHex"]), unb64(sb["plaintextBase64"]), unb64(sb["nonce"]))[1] == \
        sb["ciphertext"]
    ids = [ulid() for _ in range(1000)]
    assert all(len(i) == 26 and i[0] in "01234567" and set(i) <= set(_CROCKFORD) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert request_string("GET", "/x?y=1", 5, b"") == \
        "claudemesh-request-v1|GET|/x?y=1|5|e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    print("meshclient self-test ok")


if __name__ == "__main__":
    _self_test(sys.argv[1] if len(sys.argv) > 1 else
               os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vectors", "core_vectors.json"))
