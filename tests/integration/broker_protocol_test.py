#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Protocol conformance of `claudemesh-broker`, from an independent client written from docs/protocol.md
(§3 signed statements, §6 error codes, §7 HTTP API, §8 WebSocket protocol).

    /usr/bin/python3 tests/integration/broker_protocol_test.py --broker PATH [--only SUBSTRING] [--list] [-v]

Each check prints `ok   name` or `FAIL name (detail)`; the exit status is non-zero when any check fails.
Every check makes its own mesh(es) and keys, so checks are independent; they share a few broker processes
started lazily with the flags they need (see BROKERS). Checks named `regression_13_N_…` map to
../shared/reference/seed-protocol.md §13 item N, and `regression_cli_7_N_…` to seed-daemon-cli.md §7 item N.

Everything listens on 127.0.0.1 and lives in a temporary directory; brokers are stopped through their own
Popen handles (SIGTERM, then kill after 10 s). A global timeout (--timeout) kills them and fails the run.
"""
import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time

import nacl.exceptions
import nacl.pwhash
import nacl.utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import meshclient as mc  # noqa: E402
from meshclient import Identity, is_message_push, is_system, is_type, ulid  # noqa: E402

GRACE_MS = 1500                      # --grace-ms of the brokers that test presence
GRACE = GRACE_MS / 1000
SHORT = 0.8                          # how long "nothing arrives" is watched
GENEROUS_RATE = ["--rate-burst", "100000", "--rate-per-minute", "6000000"]

# Broker processes shared by checks, started on first use. "admin" also gets --admin-token-file (see Suite).
BROKERS = {
    "main": ["--grace-ms", str(GRACE_MS), *GENEROUS_RATE],
    "lease": ["--lease-ms", "1000", "--redeliver-interval-ms", "200", "--grace-ms", str(GRACE_MS), *GENEROUS_RATE],
    "limits": ["--max-connections-per-mesh", "2", "--max-payload", "2048", *GENEROUS_RATE],
    "rate": ["--rate-burst", "3", "--rate-per-minute", "1"],
    "admin": [*GENEROUS_RATE],
}

MEMBER_FIELDS = ("id", "meshId", "pubkey", "displayName", "role", "grants", "groups", "joinedAt", "revoked",
                 "banned", "online")
PEER_FIELDS = ("presenceId", "pubkey", "memberPubkey", "memberId", "displayName", "peerRole", "status", "summary",
               "groups", "visible", "sessionId", "connectedAt", "online")
INVITE_FIELDS = ("inviteId", "meshId", "role", "inviterPubkey", "expiresAt", "signature", "maxUses", "uses",
                 "revoked")


# ================================================================ framework

class Fail(Exception):
    pass


class Test:
    def __init__(self, name, broker, fn, timeout):
        self.name = name
        self.broker = broker
        self.fn = fn
        self.timeout = timeout


TESTS = []


def test(broker="main", timeout=30):
    """Registers an `async def name(t)` as the check `name`, run against the shared broker `broker`
    (None: the check starts what it needs itself)."""
    def deco(fn):
        TESTS.append(Test(fn.__name__, broker, fn, timeout))
        return fn
    return deco


def register(name, fn, broker="main", timeout=30):
    TESTS.append(Test(name, broker, fn, timeout))


def count_of(value):
    """`recipients`/`closed` are counts or lists in different readings of §7.2/§8.3; both are accepted."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, list):
        return len(value)
    return None


def refusal_code(frame):
    """The code of an `error` frame or of a refused `ack`; None for anything else."""
    if frame.get("type") == "error":
        return frame.get("code")
    if frame.get("type") == "ack" and frame.get("queued") is False:
        return frame.get("code")
    return None


def group_names(groups):
    names = []
    for g in groups or []:
        names.append(g.get("name") if isinstance(g, dict) else g)
    return names


def is_iso8601(value):
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


class Sent:
    def __init__(self, cmid, fp, plaintext, frame, plaintexts=None):
        self.cmid = cmid
        self.fp = fp
        self.plaintext = plaintext
        self.frame = frame
        self.plaintexts = plaintexts or {}


class T:
    """What one check sees: its broker, HTTP and WebSocket helpers, and assertions that fail the check."""

    def __init__(self, suite, broker, name):
        self.suite = suite
        self.b = broker
        self.name = name
        self.conns = []
        self.own_brokers = []

    # -- assertions
    def need(self, cond, detail):
        if not cond:
            raise Fail(detail() if callable(detail) else str(detail))

    def eq(self, actual, expected, what):
        if actual != expected:
            raise Fail(f"{what}: expected {expected!r}, got {actual!r}")

    def http_error(self, resp, status, code, what=""):
        if resp.status != status or resp.code != code:
            raise Fail(f"{what + ': ' if what else ''}expected HTTP {status} {code}, got {resp!r}")
        message = resp.get("error", "message")
        self.need(isinstance(message, str), f"{what}: error body without a message: {resp!r}")

    def http_ok(self, resp, status=200, what=""):
        if resp.status != status:
            raise Fail(f"{what + ': ' if what else ''}expected HTTP {status}, got {resp!r}")
        self.need(isinstance(resp.json, dict), f"{what}: body is not a JSON object: {resp!r}")
        return resp.json

    def accepted(self, ack, what="send"):
        if not (ack.get("type") == "ack" and ack.get("queued") is True and isinstance(ack.get("messageId"), str)
                and ack.get("messageId")):
            raise Fail(f"{what} not accepted: {ack}")
        return ack["messageId"]

    def refused_with(self, reply, codes, what="request"):
        codes = {codes} if isinstance(codes, str) else set(codes)
        code = refusal_code(reply)
        if code not in codes:
            raise Fail(f"{what}: expected a refusal with {sorted(codes)}, got {reply}")
        if reply.get("type") == "ack":
            self.eq(reply.get("messageId"), "", f"{what}: messageId of a refused ack")
        return code

    async def quiet(self, conn, pred, within=SHORT, what="frame"):
        frame = await conn.quiet(pred, within)
        self.need(frame is None, lambda: f"unexpected {what} on {conn.label}: {frame}")

    # -- HTTP (run in a thread so the event loop keeps reading WebSocket frames)
    @property
    def api(self):
        return self.b.api

    async def req(self, method, target, body=mc._NO_BODY, **kw):
        return await asyncio.to_thread(self.api.request, method, target, body, **kw)

    async def call(self, fn, *args, **kw):
        return await asyncio.to_thread(fn, *args, **kw)

    async def mesh(self, name="mesh", owner_name="owner", owner=None):
        return await asyncio.to_thread(mc.create_mesh, self.api, name, owner_name, owner)

    async def member(self, mesh, name, role="member"):
        return await asyncio.to_thread(mesh.add_member, name, role)

    async def members_of(self, mesh, signer=None):
        resp = await self.call(self.api.list_members, (signer or mesh.owner).ident, mesh.id)
        body = self.http_ok(resp, 200, "list members")
        self.need(isinstance(body.get("members"), list), f"members is not a list: {resp!r}")
        return {m.get("pubkey"): m for m in body["members"]}

    async def action(self, actor, mesh, target_pubkey, action, body=mc._NO_BODY):
        """revoke/ban take `{reason?}`: an empty object unless given; unban/kick are sent without a body."""
        if body is mc._NO_BODY and action in ("revoke", "ban"):
            body = {}
        return await self.call(self.api.member_action, actor.ident, mesh.id, target_pubkey, action, body)

    # -- WebSocket
    async def connect(self, label="conn"):
        conn = await mc.Conn.open(self.b.ws_url, label)
        self.conns.append(conn)
        return conn

    async def hello(self, frame, label="conn"):
        """Opens a connection, sends `frame`, returns (conn, hello_ack or error)."""
        conn = await self.connect(label)
        await conn.send(frame)
        reply = await conn.expect(lambda f: f.get("type") in ("hello_ack", "error"), 5, "hello_ack or error")
        return conn, reply

    async def ctrl(self, mesh, member, session_id=None, label=None, **extra):
        """A member's control-plane connection (`hello`), required to succeed."""
        extra.setdefault("displayName", member.name)
        frame = mc.member_hello(member.ident, mesh.id, member.id, session_id or f"daemon-{ulid()}", **extra)
        conn, reply = await self.hello(frame, label or f"{member.name}/ctrl")
        self.need(reply.get("type") == "hello_ack", f"{member.name}: hello refused: {reply}")
        return conn, reply

    async def session(self, mesh, member, session=None, session_id=None, label=None, **extra):
        """A session connection (`session_hello`) vouched for by `member`; returns (conn, ack, session key)."""
        session = session or Identity()
        extra.setdefault("displayName", member.name)
        frame = mc.session_hello(member.ident, session, mesh.id, session_id or f"sess-{ulid()}",
                                 parent_member_id=member.id, **extra)
        conn, reply = await self.hello(frame, label or f"{member.name}/session")
        self.need(reply.get("type") == "hello_ack", f"{member.name}: session_hello refused: {reply}")
        return conn, reply, session

    async def refused_hello(self, frame, code, close_code=1008, reason=None, label="refused"):
        """Sends a hello that must be refused: `error{code}`, then close `close_code` with reason `reason`
        (default: the code itself)."""
        conn, reply = await self.hello(frame, label)
        self.need(reply.get("type") == "error" and reply.get("code") == code,
                  f"expected error {code}, got {reply}")
        got = await conn.wait_closed(5)
        self.eq(got, (close_code, reason if reason is not None else code), "close code and reason")

    async def peers(self, conn, **filters):
        reply = await conn.request({"type": "list_peers", **filters}, types=("peers_list",))
        self.need(reply.get("type") == "peers_list" and isinstance(reply.get("peers"), list),
                  f"list_peers: {reply}")
        return reply["peers"]

    async def peers_until(self, conn, pred, what, timeout=2.0):
        """list_peers until `pred(peers)` holds (a close and the listing may race inside the broker)."""
        deadline = time.monotonic() + timeout
        while True:
            peers = await self.peers(conn)
            if pred(peers):
                return peers
            if time.monotonic() > deadline:
                raise Fail(f"{what}: {peers}")
            await asyncio.sleep(0.1)

    async def ok_request(self, conn, frame, types=("ack",)):
        reply = await conn.request(frame, types=types)
        self.need(reply.get("type") in types and refusal_code(reply) is None,
                  f"{frame.get('type')} refused: {reply}")
        return reply

    async def status_of(self, conn, message_id, until=None, timeout=3.0):
        deadline = time.monotonic() + timeout
        while True:
            reply = await conn.request({"type": "message_status", "messageId": message_id},
                                       types=("message_status_result",))
            self.need(reply.get("type") == "message_status_result", f"message_status: {reply}")
            if until is None or until(reply) or time.monotonic() > deadline:
                return reply
            await asyncio.sleep(0.1)

    # -- sending
    async def dm(self, conn, sender, target, text=None, *, priority="next", cmid=None, fp=None, seal_to=None,
                 plaintext=None, extra=None):
        """A DM sealed by `sender` (an Identity) to `seal_to` (default: the target key). Returns (ack, Sent)."""
        plaintext = plaintext if plaintext is not None else (text or f"dm {ulid()}").encode()
        nonce, ct = mc.seal_dm(sender, seal_to or target, plaintext)
        cmid = cmid or ulid()
        fp = fp or mc.request_fingerprint("dm", target, priority, plaintext, meta={"clientMessageId": cmid})
        frame = {"type": "send", "id": cmid, "targetSpec": target, "priority": priority, "nonce": nonce,
                 "ciphertext": ct, "client_message_id": cmid, "request_fingerprint": fp}
        frame.update(extra or {})
        ack = await conn.request(frame)
        return ack, Sent(cmid, fp, plaintext, frame)

    async def shared(self, conn, target, key, text=None, *, priority="next", cmid=None):
        """One body sealed under a key the recipients share, for `*`, `@all` or `@group`."""
        plaintext = (text or f"shared {ulid()}").encode()
        nonce, ct = mc.seal_shared(key, plaintext)
        cmid = cmid or ulid()
        channel = "broadcast" if target in ("*", "@all") else "group"
        fp = mc.request_fingerprint(channel, target, priority, plaintext, meta={"clientMessageId": cmid})
        frame = {"type": "send", "id": cmid, "targetSpec": target, "priority": priority, "nonce": nonce,
                 "ciphertext": ct, "client_message_id": cmid, "request_fingerprint": fp}
        ack = await conn.request(frame)
        return ack, Sent(cmid, fp, plaintext, frame)

    async def per_recipient(self, conn, sender, target, recipients, text="multi", *, priority="next", cmid=None):
        """One crypto_box body per recipient key (`bodies`)."""
        bodies, plaintexts = [], {}
        for pk in recipients:
            pt = f"{text} for {pk[:8]} {ulid()}".encode()
            nonce, ct = mc.seal_dm(sender, pk, pt)
            bodies.append({"to": pk, "nonce": nonce, "ciphertext": ct})
            plaintexts[pk] = pt
        cmid = cmid or ulid()
        channel = "broadcast" if target in ("*", "@all") else "group"
        fp = mc.request_fingerprint(channel, target, priority, b"".join(plaintexts[k] for k in sorted(plaintexts)),
                                    meta={"clientMessageId": cmid})
        frame = {"type": "send", "id": cmid, "targetSpec": target, "priority": priority, "bodies": bodies,
                 "client_message_id": cmid, "request_fingerprint": fp}
        ack = await conn.request(frame)
        return ack, Sent(cmid, fp, b"", frame, plaintexts)

    async def push(self, conn, message_id, timeout=5.0):
        return await conn.expect(is_message_push(message_id), timeout, f"push {message_id}")

    def opens(self, recipient, push, plaintext, sender_pubkey=None):
        try:
            got = mc.open_dm(recipient, sender_pubkey or push.get("senderPubkey"), push.get("nonce"),
                             push.get("ciphertext"))
        except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
            raise Fail(f"push does not open for {recipient}: {exc!r}; push {push}") from None
        self.eq(got, plaintext, "decrypted body")

    # -- dedicated brokers (lifecycle checks)
    async def start_broker(self, name, args=(), data_dir=None):
        br = self.suite.new_broker(name, list(args), data_dir)
        self.own_brokers.append(br)
        await asyncio.to_thread(br.start)
        return br

    async def cleanup(self):
        for conn in self.conns:
            await conn.close()
        for br in self.own_brokers:
            await asyncio.to_thread(br.stop)


class Suite:
    def __init__(self, binary, workdir, verbose):
        self.binary = binary
        self.workdir = workdir
        self.verbose = verbose
        self.shared = {}
        self.start_errors = {}
        self.all_brokers = []
        self.lock = threading.Lock()
        self.admin_token_cli = "cm-admin-" + nacl.utils.random(16).hex()
        self.admin_token_lib = "cm-admin-" + nacl.utils.random(16).hex()

    def new_broker(self, name, args, data_dir=None):
        data_dir = data_dir or tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir)
        br = mc.BrokerProcess(self.binary, data_dir, args, stderr_path=os.path.join(
            self.workdir, f"{name}-{len(self.all_brokers)}.stderr"), name=name)
        with self.lock:
            self.all_brokers.append(br)
        return br

    def _admin_args(self):
        rc, out, err = mc.hash_token(self.binary, self.admin_token_cli)
        if rc != 0 or not out.startswith("$argon2id$"):
            raise RuntimeError(f"`hash-token` failed: rc={rc} out={out!r} err={err[-300:]!r}")
        lib = nacl.pwhash.argon2id.str(self.admin_token_lib.encode(), opslimit=nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
                                       memlimit=nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE).decode()
        path = os.path.join(self.workdir, "admin-tokens")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(out + "\n" + lib + "\n")
        return ["--admin-token-file", path]

    def broker(self, kind):
        """The shared broker `kind`, started (again) if needed."""
        if kind in self.start_errors:
            raise RuntimeError(self.start_errors[kind])
        br = self.shared.get(kind)
        if br is not None and br.alive():
            return br
        try:
            args = list(BROKERS[kind]) + (self._admin_args() if kind == "admin" else [])
            br = self.new_broker(kind, args)
            br.start()
        except Exception as exc:  # noqa: BLE001 - every check on this broker reports it
            self.start_errors[kind] = f"broker '{kind}' did not start: {exc}"
            raise RuntimeError(self.start_errors[kind]) from None
        self.shared[kind] = br
        return br

    def kill_all(self):
        for br in list(self.all_brokers):
            br.kill()


FAILURES = []
RESULTS = []


def report(name, ok, detail=""):
    detail = " ".join(str(detail).split())
    if len(detail) > 1600:
        detail = detail[:1600] + "…"
    print(("ok   " + name) if ok else f"FAIL {name} ({detail})", flush=True)
    RESULTS.append(name)
    if not ok:
        FAILURES.append(name)


async def run_one(suite, tst):
    broker = None
    t = None
    try:
        broker = await asyncio.to_thread(suite.broker, tst.broker) if tst.broker else None
        t = T(suite, broker, tst.name)
        await asyncio.wait_for(tst.fn(t), tst.timeout)
        ok, detail = True, ""
    except Fail as exc:
        ok, detail = False, str(exc)
    except (TimeoutError, asyncio.TimeoutError) as exc:
        ok, detail = False, (str(exc) or f"check exceeded its {tst.timeout} s budget")
    except Exception as exc:  # noqa: BLE001 - reported as the check's failure
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    finally:
        if t is not None:
            await t.cleanup()
    if not ok and broker is not None and broker.alive():
        try:  # a broker that crashed while answering may need a moment to be reaped
            await asyncio.to_thread(broker.proc.wait, 0.5)
        except Exception:  # noqa: BLE001 - still running: fine
            pass
    if broker is not None and not broker.alive():
        ok = False
        detail += f"; broker '{tst.broker}' died (exit {broker.proc.returncode}); log: {broker.log_tail()}"
    elif not ok and suite.verbose and broker is not None:
        detail += f"; broker log: {broker.log_tail()}"
    report(tst.name, ok, detail)


# ================================================================ HTTP API (§7): health, mesh creation, admin tokens

@test()
async def http_healthz_ok(t):
    r = await t.req("GET", "/healthz")
    t.eq((r.status, r.get("status")), (200, "ok"), f"GET /healthz ({r!r})")


@test()
async def http_metrics_prometheus_text(t):
    r = await t.req("GET", "/metrics")
    t.eq(r.status, 200, f"GET /metrics ({r!r})")
    ctype = {k.lower(): v for k, v in r.headers.items()}.get("content-type", "")
    t.need(ctype.startswith("text/plain"), f"content-type {ctype!r}")
    samples = [ln for ln in r.body.decode(errors="replace").splitlines() if ln and not ln.startswith("#")]
    t.need(samples, "no samples")
    sample = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?\s+[-+0-9.eEInfNa]+(\s+-?\d+)?$")
    bad = [ln for ln in samples if not sample.match(ln)]
    t.need(not bad, f"lines that are not Prometheus samples: {bad[:3]}")


@test()
async def http_create_mesh_open(t):
    owner = Identity()
    r = await t.req("POST", "/v1/meshes", {"name": "team", "displayName": "alice"}, signer=owner)
    body = t.http_ok(r, 201, "POST /v1/meshes")
    mesh, member = body.get("mesh") or {}, body.get("member") or {}
    t.need(isinstance(mesh.get("id"), str) and mesh["id"], f"mesh.id: {mesh}")
    t.eq(mesh.get("name"), "team", "mesh.name")
    t.eq(mesh.get("ownerPubkey"), owner.pubkey, "mesh.ownerPubkey")
    t.need("createdAt" in mesh, f"mesh.createdAt missing: {mesh}")
    t.eq(member.get("pubkey"), owner.pubkey, "member.pubkey")
    t.eq(member.get("role"), "owner", "member.role")
    t.eq(member.get("displayName"), "alice", "member.displayName")
    t.eq(member.get("meshId"), mesh["id"], "member.meshId")
    t.need(isinstance(member.get("id"), str) and member["id"], f"member.id: {member}")
    got = await t.call(t.api.get_mesh, owner, mesh["id"])
    t.eq(got.status, 200, f"the owner reads the new mesh ({got!r})")


@test(broker=None, timeout=60)
async def hash_token_prints_argon2id_hash(t):
    token = "cm-" + nacl.utils.random(12).hex()
    rc, out, err = await t.call(mc.hash_token, t.suite.binary, token)
    t.eq(rc, 0, f"hash-token exit status (stderr {err[-300:]!r})")
    t.need(out.startswith("$argon2id$v=19$"), f"not libsodium's encoded argon2id: {out!r}")
    t.need(nacl.pwhash.argon2id.verify(out.encode(), token.encode()), "libsodium does not verify the hash")
    try:
        wrong = nacl.pwhash.argon2id.verify(out.encode(), (token + "x").encode())
    except nacl.exceptions.InvalidkeyError:
        wrong = False
    t.need(not wrong, "the hash verifies another token")
    rc2, out2, _ = await t.call(mc.hash_token, t.suite.binary, token)
    t.need(rc2 == 0 and out2 != out, "two hashes of one token are equal (no salt?)")


def _token_headers(token):
    return {"Authorization": f"Bearer {token}"}


@test(broker="admin", timeout=60)
async def http_admin_token_missing_401(t):
    r = await t.req("POST", "/v1/meshes", {"name": "x", "displayName": "o"}, signer=Identity())
    t.http_error(r, 401, "unauthorized", "no Authorization header")


@test(broker="admin", timeout=60)
async def http_admin_token_wrong_401(t):
    r = await t.req("POST", "/v1/meshes", {"name": "x", "displayName": "o"}, signer=Identity(),
                    headers=_token_headers("not-the-token"))
    t.http_error(r, 401, "unauthorized", "wrong bearer token")
    r = await t.req("POST", "/v1/meshes", {"name": "x", "displayName": "o"}, signer=Identity(),
                    headers={"Authorization": t.suite.admin_token_cli})
    t.http_error(r, 401, "unauthorized", "token without the Bearer scheme")


@test(broker="admin", timeout=60)
async def http_admin_token_right_201(t):
    r = await t.req("POST", "/v1/meshes", {"name": "x", "displayName": "o"}, signer=Identity(),
                    headers=_token_headers(t.suite.admin_token_cli))
    t.http_ok(r, 201, "token hashed by `hash-token`")
    r = await t.req("POST", "/v1/meshes", {"name": "y", "displayName": "o"}, signer=Identity(),
                    headers=_token_headers(t.suite.admin_token_lib))
    t.http_ok(r, 201, "token hashed by libsodium (second line of the token file)")


@test(broker="admin", timeout=60)
async def http_admin_token_still_needs_signature(t):
    r = await t.req("POST", "/v1/meshes", {"name": "x", "displayName": "o"},
                    headers=_token_headers(t.suite.admin_token_cli))
    t.http_error(r, 401, "unauthorized", "admin token without a signed request")


@test(broker="admin", timeout=60)
async def http_admin_token_never_logged(t):
    r = await t.req("POST", "/v1/meshes", {"name": "x", "displayName": "o"}, signer=Identity(),
                    headers=_token_headers(t.suite.admin_token_cli))
    t.http_ok(r, 201, "create with the token")
    await t.req("POST", "/v1/meshes", {"name": "x", "displayName": "o"}, signer=Identity(),
                headers=_token_headers(t.suite.admin_token_cli + "-wrong"))
    await asyncio.sleep(0.3)
    logs = "\n".join(t.b.lines) + t.b.stderr_text()
    for token in (t.suite.admin_token_cli, t.suite.admin_token_lib):
        t.need(token not in logs, "an admin token appears in the broker's log")


# ================================================================ signed requests (§7.1)

@test()
async def http_unsigned_request_unauthorized(t):
    mesh = await t.mesh()
    r = await t.req("GET", f"/v1/meshes/{mesh.id}")
    t.http_error(r, 401, "unauthorized", "unsigned GET mesh")
    r = await t.req("POST", "/v1/meshes", {"name": "n", "displayName": "d"})
    t.http_error(r, 401, "unauthorized", "unsigned POST /v1/meshes")
    r = await t.req("POST", f"/v1/invites/{ulid()}/claim", {"displayName": "d"})
    t.http_error(r, 401, "unauthorized", "unsigned claim")


@test()
async def http_bad_signature(t):
    mesh = await t.mesh()
    target = f"/v1/meshes/{mesh.id}"
    headers = mc.signed_headers(Identity(), "GET", target, b"")
    headers["X-Claudemesh-Pubkey"] = mesh.owner.pubkey  # the owner's key, someone else's signature
    r = await t.call(mc.http_request, t.b.port, "GET", target, None, headers)
    t.http_error(r, 401, "bad_signature")


@test()
async def http_stale_timestamp_61s(t):
    mesh = await t.mesh()
    r = await t.req("GET", f"/v1/meshes/{mesh.id}", signer=mesh.owner.ident, timestamp=mc.now_ms() - 61_000)
    t.http_error(r, 401, "timestamp_skew", "61 s old")


@test()
async def http_future_timestamp_61s(t):
    mesh = await t.mesh()
    r = await t.req("GET", f"/v1/meshes/{mesh.id}", signer=mesh.owner.ident, timestamp=mc.now_ms() + 61_000)
    t.http_error(r, 401, "timestamp_skew", "61 s ahead")


@test()
async def http_timestamp_50s_old_accepted(t):
    mesh = await t.mesh()
    r = await t.req("GET", f"/v1/meshes/{mesh.id}", signer=mesh.owner.ident, timestamp=mc.now_ms() - 50_000)
    t.http_ok(r, 200, "50 s old, inside the ±60 s window")


@test()
async def http_replayed_request(t):
    mesh = await t.mesh()
    target = f"/v1/meshes/{mesh.id}"
    headers = mc.signed_headers(mesh.owner.ident, "GET", target, b"")
    first = await t.call(mc.http_request, t.b.port, "GET", target, None, headers)
    t.http_ok(first, 200, "first use")
    again = await t.call(mc.http_request, t.b.port, "GET", target, None, headers)
    t.http_error(again, 401, "replayed", "second use of the same signed request")


@test()
async def http_request_signed_for_another_path(t):
    owner = Identity()
    mesh_a = await t.mesh("a", owner=owner)
    mesh_b = await t.mesh("b", owner=owner)
    r = await t.req("GET", f"/v1/meshes/{mesh_b.id}", signer=owner, sign_target=f"/v1/meshes/{mesh_a.id}")
    t.http_error(r, 401, "bad_signature", "signed for mesh A, sent to mesh B")


@test()
async def http_request_signed_for_another_method(t):
    mesh = await t.mesh()
    resp, invite_id = await t.call(t.api.create_invite, mesh.owner.ident, mesh.id)
    t.http_ok(resp, 201, "create invite")
    r = await t.req("DELETE", f"/v1/meshes/{mesh.id}/invites/{invite_id}", signer=mesh.owner.ident,
                    sign_method="GET")
    t.http_error(r, 401, "bad_signature", "signed GET, sent DELETE")
    view = await t.call(t.api.get_invite, invite_id)
    t.eq(view.get("invite", "revoked"), False, "the invite is still live")


@test()
async def http_request_body_tampered(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    r = await t.req("PATCH", f"/v1/meshes/{mesh.id}/members/{bob.pubkey}", {"grants": ["invite"]},
                    signer=mesh.owner.ident, sign_body=json.dumps({"grants": []}).encode())
    t.http_error(r, 401, "bad_signature", "body differs from the signed digest")
    members = await t.members_of(mesh)
    t.eq(members[bob.pubkey].get("grants"), [], "bob's grants after the refused PATCH")


@test()
async def http_garbage_signature_header(t):
    mesh = await t.mesh()
    target = f"/v1/meshes/{mesh.id}"
    headers = mc.signed_headers(mesh.owner.ident, "GET", target, b"")
    headers["X-Claudemesh-Signature"] = "zz"
    r = await t.call(mc.http_request, t.b.port, "GET", target, None, headers)
    t.need(r.status in (400, 401) and r.code in ("malformed", "bad_signature", "unauthorized"),
           f"expected 400 malformed or 401 bad_signature/unauthorized, got {r!r}")


# ================================================================ meshes and members (§7.2)

@test()
async def http_get_mesh_as_member(t):
    mesh = await t.mesh("ops")
    bob = await t.member(mesh, "bob")
    r = await t.call(t.api.get_mesh, bob.ident, mesh.id)
    m = t.http_ok(r, 200, "member GET mesh").get("mesh") or {}
    t.eq((m.get("id"), m.get("name"), m.get("ownerPubkey")), (mesh.id, "ops", mesh.owner.pubkey), "mesh")
    t.need("createdAt" in m, f"createdAt missing: {m}")


@test()
async def http_get_mesh_as_non_member(t):
    mesh = await t.mesh()
    r = await t.call(t.api.get_mesh, Identity(), mesh.id)
    t.http_error(r, 403, "not_a_member")


@test()
async def http_get_unknown_mesh(t):
    r = await t.call(t.api.get_mesh, Identity(), ulid())
    t.http_error(r, 403, "not_a_member", "a mesh that does not exist")


@test()
async def http_list_members_as_member(t):
    mesh = await t.mesh(owner_name="olga")
    bob = await t.member(mesh, "bob")
    members = await t.members_of(mesh, signer=bob)
    t.eq(set(members), {mesh.owner.pubkey, bob.pubkey}, "member keys")
    for pk, m in members.items():
        missing = [f for f in MEMBER_FIELDS if f not in m]
        t.need(not missing, f"member {m} lacks {missing}")
        t.need(is_iso8601(m.get("joinedAt")), f"joinedAt is not ISO 8601: {m.get('joinedAt')!r}")
        t.eq((m.get("revoked"), m.get("banned"), m.get("online")), (False, False, False), "revoked/banned/online")
    t.eq(members[mesh.owner.pubkey].get("role"), "owner", "owner role")
    t.eq(members[bob.pubkey].get("role"), "member", "bob's role")
    t.eq(members[bob.pubkey].get("displayName"), "bob", "bob's displayName")
    t.eq(members[bob.pubkey].get("id"), bob.id, "bob's id")
    cb, _ = await t.ctrl(mesh, bob)
    members = await t.members_of(mesh)
    t.eq(members[bob.pubkey].get("online"), True, "bob online while connected")
    t.need(members[bob.pubkey].get("lastSeenAt") is not None, "lastSeenAt after a hello")


@test()
async def http_list_members_as_non_member(t):
    mesh = await t.mesh()
    r = await t.call(t.api.list_members, Identity(), mesh.id)
    t.http_error(r, 403, "not_a_member")


@test()
async def http_malformed_json_body(t):
    owner = Identity()
    r = await t.req("POST", "/v1/meshes", raw=b'{"name":', signer=owner)
    t.http_error(r, 400, "malformed", "truncated JSON")
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    r = await t.req("PATCH", f"/v1/meshes/{mesh.id}/members/{bob.pubkey}", raw=b"not json",
                    signer=mesh.owner.ident)
    t.http_error(r, 400, "malformed", "PATCH with text body")
    r = await t.req("POST", f"/v1/meshes/{mesh.id}/invites", raw=b'{"inviteId":"x",}', signer=mesh.owner.ident)
    t.http_error(r, 400, "malformed", "invite with a trailing comma")


@test()
async def http_non_object_body(t):
    r = await t.req("POST", "/v1/meshes", raw=b"[1,2]", signer=Identity())
    t.need(r.status == 400 and r.code in ("malformed", "wrong_type"), f"array body: {r!r}")


@test()
async def http_wrong_field_type(t):
    r = await t.req("POST", "/v1/meshes", {"name": 5, "displayName": "d"}, signer=Identity())
    t.http_error(r, 400, "wrong_type", "name: 5")
    r = await t.req("POST", "/v1/meshes", {"name": "n", "displayName": ["d"]}, signer=Identity())
    t.http_error(r, 400, "wrong_type", "displayName: array")


@test()
async def http_missing_field(t):
    r = await t.req("POST", "/v1/meshes", {"displayName": "d"}, signer=Identity())
    t.http_error(r, 400, "missing_field", "no name")


@test()
async def http_patch_member_bad_values(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    target = f"/v1/meshes/{mesh.id}/members/{bob.pubkey}"
    r = await t.req("PATCH", target, {"role": "superuser"}, signer=mesh.owner.ident)
    t.http_error(r, 400, "invalid_value", "role superuser")
    r = await t.req("PATCH", target, {"role": 5}, signer=mesh.owner.ident)
    t.http_error(r, 400, "wrong_type", "role 5")
    r = await t.req("PATCH", target, {"grants": "invite"}, signer=mesh.owner.ident)
    t.http_error(r, 400, "wrong_type", "grants as a string")
    members = await t.members_of(mesh)
    t.eq((members[bob.pubkey].get("role"), members[bob.pubkey].get("grants")), ("member", []),
         "bob unchanged after refused PATCHes")


@test()
async def http_patch_member_owner_only(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    carol = await t.member(mesh, "carol")
    r = await t.call(t.api.patch_member, bob.ident, mesh.id, bob.pubkey, {"grants": ["invite"]})
    t.http_error(r, 403, "forbidden", "member grants itself")
    r = await t.call(t.api.patch_member, mesh.owner.ident, mesh.id, carol.pubkey, {"role": "admin"})
    t.eq(t.http_ok(r, 200, "owner promotes carol").get("member", {}).get("role"), "admin", "carol's role")
    r = await t.call(t.api.patch_member, carol.ident, mesh.id, bob.pubkey, {"grants": ["invite"]})
    t.http_error(r, 403, "forbidden", "an admin PATCHes (owner only)")
    r = await t.call(t.api.patch_member, mesh.owner.ident, mesh.id, mc.random_pubkey(), {"grants": []})
    t.http_error(r, 404, "not_found", "PATCH of a key that is not a member")


# ================================================================ invites (§7.2)

async def _invite(t, mesh, inviter=None, **kw):
    inviter = inviter or mesh.owner
    return await t.call(t.api.create_invite, inviter.ident, mesh.id, **kw)


async def _claim(t, invite_id, ident=None, name="joiner"):
    ident = ident or Identity()
    return await t.call(t.api.claim_invite, ident, invite_id, name), ident


@test()
async def invite_owner_creates(t):
    mesh = await t.mesh()
    expires = int(time.time()) + 3600
    r, invite_id = await _invite(t, mesh, expires_at_s=expires)
    body = t.http_ok(r, 201, "owner creates an invite")
    inv = body.get("invite") or {}
    missing = [f for f in INVITE_FIELDS if f not in inv]
    t.need(not missing, f"invite {inv} lacks {missing}")
    t.eq((inv.get("inviteId"), inv.get("meshId"), inv.get("role"), inv.get("inviterPubkey"), inv.get("expiresAt")),
         (invite_id, mesh.id, "member", mesh.owner.pubkey, expires), "invite fields")
    t.eq((inv.get("maxUses"), inv.get("uses"), inv.get("revoked")), (1, 0, False), "maxUses default, uses, revoked")
    url = body.get("url")
    t.need(isinstance(url, str) and url.startswith("http") and url.endswith(f"/v1/invites/{invite_id}"),
           f"url {url!r}")


@test()
async def invite_member_without_grant_forbidden(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    r, invite_id = await _invite(t, mesh, inviter=bob)
    t.http_error(r, 403, "forbidden")
    view = await t.call(t.api.get_invite, invite_id)
    t.eq(view.status, 404, "the refused invite was not stored")


@test()
async def invite_grant_lets_member_invite(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    r = await t.call(t.api.patch_member, mesh.owner.ident, mesh.id, bob.pubkey, {"grants": ["invite"]})
    member = t.http_ok(r, 200, "PATCH grants").get("member") or {}
    t.need("invite" in (member.get("grants") or []), f"grants after PATCH: {member}")
    r, invite_id = await _invite(t, mesh, inviter=bob)
    t.eq(t.http_ok(r, 201, "bob invites").get("invite", {}).get("inviterPubkey"), bob.pubkey, "inviterPubkey")
    claimed, _ = await _claim(t, invite_id)
    t.http_ok(claimed, 201, "claim of bob's invite")


@test()
async def invite_only_owner_invites_admins(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    carol = await t.member(mesh, "carol", role="admin")
    t.eq(carol.role, "admin", "claiming an admin invite gives the admin role")
    r = await t.call(t.api.patch_member, mesh.owner.ident, mesh.id, bob.pubkey, {"grants": ["invite"]})
    t.http_ok(r, 200, "grant invite")
    r, _ = await _invite(t, mesh, inviter=bob, role="admin")
    t.http_error(r, 403, "forbidden", "member with the invite grant invites an admin")
    r, _ = await _invite(t, mesh, inviter=carol, role="admin")
    t.http_error(r, 403, "forbidden", "admin invites an admin")
    r, _ = await _invite(t, mesh, inviter=carol, role="member")
    t.http_ok(r, 201, "admin invites a member")


@test()
async def invite_get_is_public(t):
    mesh = await t.mesh("public-view")
    r, invite_id = await _invite(t, mesh, max_uses=3)
    t.http_ok(r, 201, "create")
    view = await t.call(t.api.get_invite, invite_id)  # no signature headers
    body = t.http_ok(view, 200, "unsigned GET /v1/invites/{id}")
    inv = body.get("invite") or {}
    t.eq((inv.get("inviteId"), inv.get("maxUses"), inv.get("uses")), (invite_id, 3, 0), "invite")
    t.eq((body.get("mesh") or {}).get("id"), mesh.id, "mesh.id")
    t.eq((body.get("mesh") or {}).get("name"), "public-view", "mesh.name")
    t.need(isinstance(body.get("brokerUrl"), str) and body["brokerUrl"], f"brokerUrl: {body.get('brokerUrl')!r}")
    statement = mc.invite_v2_string(inv.get("meshId"), inv.get("inviteId"), inv.get("expiresAt"), inv.get("role"),
                                    inv.get("inviterPubkey"))
    t.need(mc.verify(mesh.owner.pubkey, statement, inv.get("signature", "")),
           "the served invite does not verify as a v2 statement by the owner")


@test()
async def invite_get_unknown_404(t):
    view = await t.call(t.api.get_invite, ulid())
    t.http_error(view, 404, "not_found")


@test()
async def invite_claim_happy(t):
    mesh = await t.mesh()
    r, invite_id = await _invite(t, mesh)
    t.http_ok(r, 201, "create")
    claimed, joiner = await _claim(t, invite_id, name="dana")
    body = t.http_ok(claimed, 201, "claim")
    member = body.get("member") or {}
    t.eq((member.get("pubkey"), member.get("role"), member.get("displayName")), (joiner.pubkey, "member", "dana"),
         "claimed member")
    t.eq((body.get("mesh") or {}).get("id"), mesh.id, "mesh.id")
    view = await t.call(t.api.get_invite, invite_id)
    t.eq(view.get("invite", "uses"), 1, "uses after one claim")
    got = await t.call(t.api.get_mesh, joiner, mesh.id)
    t.http_ok(got, 200, "the new member reads the mesh")


@test()
async def invite_single_use_exhausted(t):
    mesh = await t.mesh()
    r, invite_id = await _invite(t, mesh)
    t.http_ok(r, 201, "create")
    first, _ = await _claim(t, invite_id)
    t.http_ok(first, 201, "first claim")
    second, late = await _claim(t, invite_id)
    t.http_error(second, 410, "exhausted", "second claim of a 1-use invite")
    got = await t.call(t.api.get_mesh, late, mesh.id)
    t.http_error(got, 403, "not_a_member", "the refused claimer is not a member")


@test()
async def invite_max_uses_consumed(t):
    mesh = await t.mesh()
    r, invite_id = await _invite(t, mesh, max_uses=3)
    t.http_ok(r, 201, "create")
    for i in range(3):
        claimed, _ = await _claim(t, invite_id)
        t.http_ok(claimed, 201, f"claim {i + 1} of 3")
    claimed, _ = await _claim(t, invite_id)
    t.http_error(claimed, 410, "exhausted", "fourth claim")
    t.eq((await t.call(t.api.get_invite, invite_id)).get("invite", "uses"), 3, "uses")


@test()
async def invite_create_already_expired(t):
    mesh = await t.mesh()
    r, invite_id = await _invite(t, mesh, expires_at_s=int(time.time()) - 10)
    t.http_error(r, 410, "expired", "creating an invite whose signed expiry has passed")
    t.eq((await t.call(t.api.get_invite, invite_id)).status, 404, "the expired invite was not stored")


@test()
async def invite_claim_after_expiry(t):
    mesh = await t.mesh()
    expires = int(time.time()) + 2
    r, invite_id = await _invite(t, mesh, expires_at_s=expires)
    t.http_ok(r, 201, "create an invite valid for ~2 s")
    await asyncio.sleep(max(0.0, expires + 0.5 - time.time()))
    claimed, _ = await _claim(t, invite_id)
    t.http_error(claimed, 410, "expired", "claim after expiry")


@test()
async def invite_revoked(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    await t.call(t.api.patch_member, mesh.owner.ident, mesh.id, bob.pubkey, {"grants": ["invite"]})
    r, invite_id = await _invite(t, mesh, max_uses=5)
    t.http_ok(r, 201, "create")
    r = await t.call(t.api.revoke_invite, bob.ident, mesh.id, invite_id)
    t.http_error(r, 403, "forbidden", "a member with only the invite grant revokes")
    r = await t.call(t.api.revoke_invite, mesh.owner.ident, mesh.id, invite_id)
    t.eq(t.http_ok(r, 200, "owner revokes").get("invite", {}).get("revoked"), True, "invite.revoked")
    claimed, _ = await _claim(t, invite_id)
    t.http_error(claimed, 403, "revoked", "claim of a revoked invite")
    r = await t.call(t.api.revoke_invite, mesh.owner.ident, mesh.id, ulid())
    t.http_error(r, 404, "not_found", "revoking an unknown invite")


@test()
async def invite_claim_already_member(t):
    mesh = await t.mesh()
    r, invite_id = await _invite(t, mesh, max_uses=3)
    t.http_ok(r, 201, "create")
    claimed, _ = await _claim(t, invite_id, ident=mesh.owner.ident)
    t.http_error(claimed, 409, "already_exists", "the owner claims an invite to its own mesh")
    joiner = Identity()
    first, _ = await _claim(t, invite_id, ident=joiner)
    t.http_ok(first, 201, "first claim")
    again, _ = await _claim(t, invite_id, ident=joiner)
    t.http_error(again, 409, "already_exists", "the same key claims again")
    t.eq((await t.call(t.api.get_invite, invite_id)).get("invite", "uses"), 1, "refused claims consume no use")


@test()
async def invite_claim_unknown(t):
    claimed, _ = await _claim(t, ulid())
    t.http_error(claimed, 404, "not_found")


@test()
async def invite_bad_signature(t):
    mesh = await t.mesh()
    r, invite_id = await _invite(t, mesh, statement_signer=Identity())
    t.http_error(r, 401, "bad_signature", "statement signed by another key")
    other = await t.mesh("other", owner=mesh.owner.ident)
    body = t.api.invite_body(mesh.owner.ident, other.id)  # signed for the other mesh
    r = await t.req("POST", f"/v1/meshes/{mesh.id}/invites", body, signer=mesh.owner.ident)
    t.http_error(r, 401, "bad_signature", "statement signed for another mesh")
    t.eq((await t.call(t.api.get_invite, invite_id)).status, 404, "nothing stored")


@test()
async def invite_duplicate_id(t):
    mesh = await t.mesh()
    invite_id = ulid()
    r, _ = await _invite(t, mesh, invite_id=invite_id)
    t.http_ok(r, 201, "create")
    r, _ = await _invite(t, mesh, invite_id=invite_id)
    t.http_error(r, 409, "already_exists", "same inviteId again")


@test()
async def invite_bad_fields(t):
    mesh = await t.mesh()
    owner = mesh.owner.ident
    target = f"/v1/meshes/{mesh.id}/invites"
    cases = [
        ("maxUses 0", dict(max_uses=0), "invalid_value"),
        ("maxUses 1001", dict(max_uses=1001), "invalid_value"),
        ("role owner", dict(role="owner"), "invalid_value"),
    ]
    ids = []
    for what, kw, code in cases:
        r, invite_id = await _invite(t, mesh, **kw)
        ids.append(invite_id)
        t.http_error(r, 400, code, what)
    body = t.api.invite_body(owner, mesh.id)
    ids.append(body["inviteId"])
    r = await t.req("POST", target, dict(body, expiresAt="soon"), signer=owner)
    t.http_error(r, 400, "wrong_type", "expiresAt as a string")
    r = await t.req("POST", target, dict(body, maxUses="2"), signer=owner)
    t.http_error(r, 400, "wrong_type", "maxUses as a string")
    r = await t.req("POST", target, {k: v for k, v in body.items() if k != "signature"}, signer=owner)
    t.http_error(r, 400, "missing_field", "no signature")
    for invite_id in ids:
        t.eq((await t.call(t.api.get_invite, invite_id)).status, 404, "refused invites are not stored")


# ================================================================ revoke, ban, unban, kick (§7.2)

async def _bob_online(t, mesh):
    """Owner observer + bob with a control-plane and a session connection."""
    bob = await t.member(mesh, "bob")
    co, _ = await t.ctrl(mesh, mesh.owner, label="owner/ctrl")
    cb, ack_cb = await t.ctrl(mesh, bob)
    sb, ack_sb, session = await t.session(mesh, bob)
    return bob, co, cb, ack_cb, sb, ack_sb, session


@test()
async def ban_closes_live_connections_4002(t):
    mesh = await t.mesh()
    bob, co, cb, _, sb, _, _ = await _bob_online(t, mesh)
    r = await t.action(mesh.owner, mesh, bob.pubkey, "ban", {"reason": "testing"})
    body = t.http_ok(r, 200, "ban")
    t.eq(((body.get("member") or {}).get("pubkey"), (body.get("member") or {}).get("banned")), (bob.pubkey, True),
         "member after ban")
    t.eq(count_of(body.get("closed")), 2, f"closed ({body.get('closed')!r})")
    t.eq(await cb.wait_closed(5), (4002, "banned"), "bob's control-plane connection")
    t.eq(await sb.wait_closed(5), (4002, "banned"), "bob's session connection")
    await t.peers_until(co, lambda ps: all(p.get("memberPubkey") != bob.pubkey for p in ps), "bob still listed")


@test()
async def ban_refuses_later_hello(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    t.http_ok(await t.action(mesh.owner, mesh, bob.pubkey, "ban", {}), 200, "ban")
    await t.refused_hello(mc.member_hello(bob.ident, mesh.id, bob.id, "d1"), "revoked", 4002, "banned")
    await t.refused_hello(mc.session_hello(bob.ident, Identity(), mesh.id, "s1", parent_member_id=bob.id),
                          "revoked", 4002, "banned")
    t.http_error(await t.call(t.api.get_mesh, bob.ident, mesh.id), 403, "revoked", "banned member's HTTP request")
    m = (await t.members_of(mesh))[bob.pubkey]
    t.eq((m.get("banned"), m.get("revoked")), (True, False), "listed as banned, not revoked")


@test()
async def unban_allows_hello(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    t.http_ok(await t.action(mesh.owner, mesh, bob.pubkey, "ban"), 200, "ban")
    r = await t.action(mesh.owner, mesh, bob.pubkey, "unban")
    t.eq((t.http_ok(r, 200, "unban").get("member") or {}).get("banned"), False, "member.banned after unban")
    await t.ctrl(mesh, bob)
    t.http_ok(await t.call(t.api.get_mesh, bob.ident, mesh.id), 200, "unbanned member's HTTP request")


@test()
async def revoke_closes_and_refuses(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    cb, _ = await t.ctrl(mesh, bob)
    r = await t.action(mesh.owner, mesh, bob.pubkey, "revoke", {"reason": "left the team"})
    body = t.http_ok(r, 200, "revoke")
    t.eq((body.get("member") or {}).get("revoked"), True, "member.revoked")
    t.eq(count_of(body.get("closed")), 1, f"closed ({body.get('closed')!r})")
    t.eq(await cb.wait_closed(5), (4002, "banned"), "bob's live connection")
    await t.refused_hello(mc.member_hello(bob.ident, mesh.id, bob.id, "d2"), "revoked", 4002, "banned")
    t.http_error(await t.call(t.api.get_mesh, bob.ident, mesh.id), 403, "revoked", "revoked member's HTTP request")
    t.eq((await t.members_of(mesh))[bob.pubkey].get("revoked"), True, "listed as revoked")


@test()
async def ban_owner_forbidden(t):
    mesh = await t.mesh()
    carol = await t.member(mesh, "carol", role="admin")
    co, _ = await t.ctrl(mesh, mesh.owner)
    for action in ("ban", "revoke", "kick"):
        t.http_error(await t.action(carol, mesh, mesh.owner.pubkey, action), 403, "forbidden",
                     f"admin {action}s the owner")
        t.http_error(await t.action(mesh.owner, mesh, mesh.owner.pubkey, action), 403, "forbidden",
                     f"owner {action}s itself")
    await asyncio.sleep(0.3)
    t.need(not co.closed.is_set(), f"the owner's connection was closed {co.describe()}")
    t.eq((await t.members_of(mesh))[mesh.owner.pubkey].get("banned"), False, "owner not banned")


@test()
async def ban_self_forbidden(t):
    mesh = await t.mesh()
    carol = await t.member(mesh, "carol", role="admin")
    for action in ("ban", "revoke", "kick"):
        t.http_error(await t.action(carol, mesh, carol.pubkey, action), 403, "forbidden", f"admin {action}s itself")


@test()
async def ban_by_plain_member_forbidden(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    carol = await t.member(mesh, "carol")
    for action in ("ban", "revoke", "unban", "kick"):
        t.http_error(await t.action(bob, mesh, carol.pubkey, action), 403, "forbidden", f"member {action}s a member")
    t.eq((await t.members_of(mesh))[carol.pubkey].get("banned"), False, "carol not banned")


@test()
async def admin_can_ban_member(t):
    mesh = await t.mesh()
    carol = await t.member(mesh, "carol", role="admin")
    bob = await t.member(mesh, "bob")
    t.http_ok(await t.action(carol, mesh, bob.pubkey, "ban", {"reason": "spam"}), 200, "admin bans")
    t.http_ok(await t.action(carol, mesh, bob.pubkey, "unban"), 200, "admin unbans")


@test()
async def member_action_unknown_key_404(t):
    mesh = await t.mesh()
    for action in ("ban", "revoke", "kick"):
        t.http_error(await t.action(mesh.owner, mesh, mc.random_pubkey(), action), 404, "not_found",
                     f"{action} of a key that is not a member")


@test()
async def regression_cli_7_3_kick_closes_sessions_4001_skips_control_plane(t):
    mesh = await t.mesh()
    bob, co, cb, ack_cb, sb, ack_sb, session = await _bob_online(t, mesh)
    r = await t.action(mesh.owner, mesh, bob.pubkey, "kick")
    body = t.http_ok(r, 200, "kick")
    t.eq(body.get("kicked"), [ack_sb.get("presenceId")], "kicked")
    t.eq(body.get("skippedControlPlane"), [ack_cb.get("presenceId")], "skippedControlPlane")
    t.eq(await sb.wait_closed(5), (4001, "kicked"), "bob's session connection")
    await t.peers_until(cb, lambda ps: all(p.get("pubkey") != session.pubkey for p in ps),
                        "the kicked session is still listed")  # and the control-plane connection still answers
    t.need(not cb.closed.is_set(), "bob's control-plane connection was closed")


@test()
async def regression_13_15_kick_and_ban_announce_peer_left(t):
    mesh = await t.mesh()
    bob, co, cb, _, sb, _, session = await _bob_online(t, mesh)
    co.take_all(is_system())
    t.http_ok(await t.action(mesh.owner, mesh, bob.pubkey, "kick"), 200, "kick")
    ev = await co.expect(is_system("peer_left", session.pubkey), 3, "peer_left for the kicked session")
    t.eq((ev.get("eventData") or {}).get("memberPubkey"), bob.pubkey, "peer_left memberPubkey")
    t.http_ok(await t.action(mesh.owner, mesh, bob.pubkey, "ban"), 200, "ban")
    await co.expect(is_system("peer_left", bob.pubkey), 3, "peer_left for the banned member's connection")
    t.need(await co.quiet(is_system("peer_left", session.pubkey), 0.5) is None,
           "a second peer_left for the kicked session")


# ================================================================ WebSocket hello (§8.1)

@test()
async def ws_hello_ack_fields(t):
    mesh = await t.mesh(owner_name="olga")
    conn, ack = await t.ctrl(mesh, mesh.owner, groups=[{"name": "ops", "role": "lead"}])
    t.eq(ack.get("type"), "hello_ack", "type")
    t.need(isinstance(ack.get("presenceId"), str) and ack["presenceId"], f"presenceId: {ack}")
    t.eq(ack.get("memberId"), mesh.owner.id, "memberId")
    t.eq(ack.get("memberDisplayName"), "olga", "memberDisplayName")
    profile = ack.get("memberProfile")
    t.need(isinstance(profile, dict) and isinstance(profile.get("groups"), list) and "role" in profile,
           f"memberProfile {{groups, role}}: {profile!r}")
    t.eq(ack.get("peerRole"), "control-plane", "peerRole")
    t.eq(ack.get("protocolVersion"), 1, "protocolVersion")


@test()
async def ws_session_hello_ack_fields(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    cb, ack_cb = await t.ctrl(mesh, bob)
    sb, ack, _ = await t.session(mesh, bob)
    t.eq(ack.get("peerRole"), "session", "peerRole")
    t.eq(ack.get("memberId"), bob.id, "memberId (the parent member)")
    t.eq(ack.get("memberDisplayName"), "bob", "memberDisplayName")
    t.eq(ack.get("protocolVersion"), 1, "protocolVersion")
    t.need(isinstance(ack.get("presenceId"), str) and ack["presenceId"] not in ("", ack_cb.get("presenceId")),
           f"presenceId {ack.get('presenceId')!r} (control-plane has {ack_cb.get('presenceId')!r})")


@test()
async def ws_session_hello_without_parent_member_id(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    frame = mc.session_hello(bob.ident, Identity(), mesh.id, "s-no-parent-id")
    conn, reply = await t.hello(frame)
    t.eq(reply.get("type"), "hello_ack", f"session_hello without parentMemberId ({reply})")
    t.eq(reply.get("memberId"), bob.id, "memberId")


@test()
async def ws_frame_before_hello_no_hello(t):
    mesh = await t.mesh()
    conn = await t.connect("pre-hello")
    for frame in ({"type": "list_peers"}, {"type": "send", "targetSpec": "*"}, {"type": "frobnicate"}):
        await conn.send(frame)
        err = await conn.expect(is_type("error"), 5, f"error for {frame['type']} before hello")
        t.eq(err.get("code"), "no_hello", f"code for {frame['type']} before hello")
    t.need(not conn.closed.is_set(), f"socket closed after no_hello {conn.describe()}")
    await conn.send(mc.member_hello(mesh.owner.ident, mesh.id, mesh.owner.id, "late-hello"))
    ack = await conn.expect(lambda f: f.get("type") in ("hello_ack", "error"), 5, "hello reply")
    t.eq(ack.get("type"), "hello_ack", f"hello after no_hello errors ({ack})")


@test()
async def ws_error_frame_shape(t):
    mesh = await t.mesh()
    conn, _ = await t.ctrl(mesh, mesh.owner)
    await conn.send({"type": "frobnicate", "_reqId": "req-7"})
    err = await conn.expect(is_type("error"), 5, "error frame")
    t.eq((err.get("code"), err.get("_reqId")), ("unknown_message_type", "req-7"), "code and _reqId")
    t.need(isinstance(err.get("message"), str), f"message is not a string: {err}")


@test()
async def ws_reqid_echoed(t):
    mesh = await t.mesh()
    conn, _ = await t.ctrl(mesh, mesh.owner)
    for rid in ("abc", 42):
        await conn.send({"type": "list_peers", "_reqId": rid})
        reply = await conn.expect(is_type("peers_list"), 5, "peers_list")
        t.eq(reply.get("_reqId"), rid, "echoed _reqId")
    await conn.send({"type": "set_status", "status": "idle", "_reqId": 7})
    reply = await conn.expect(is_type("ack"), 5, "ack")
    t.eq(reply.get("_reqId"), 7, "_reqId on an ack")


def _hello_refusal(name, code, build, close_code=1008, reason=None, broker="main", setup=None):
    """Registers a check: the hello frame built by `build(ctx)` is refused with `code` and the close code."""
    async def check(t):
        ctx = await (setup or _hello_setup)(t)
        frame = build(ctx)
        await t.refused_hello(frame, code, close_code, reason)
    register(name, check, broker)


class _Ctx:
    pass


async def _hello_setup(t):
    ctx = _Ctx()
    ctx.mesh = await t.mesh()
    ctx.bob = await t.member(ctx.mesh, "bob")
    ctx.session = Identity()
    ctx.other = Identity()
    return ctx


def _without(frame, key):
    return {k: v for k, v in frame.items() if k != key}


def _mh(ctx, **kw):
    return mc.member_hello(ctx.bob.ident, ctx.mesh.id, ctx.bob.id, f"d-{ulid()}", **kw)


def _sh(ctx, **kw):
    kw.setdefault("parent_member_id", ctx.bob.id)
    return mc.session_hello(ctx.bob.ident, ctx.session, ctx.mesh.id, f"s-{ulid()}", **kw)


_hello_refusal("hello_refused_bad_session_pubkey", "bad_session_pubkey", lambda c: _mh(c, sessionPubkey="abcd"))
_hello_refusal("hello_refused_uppercase_session_pubkey", "bad_session_pubkey",
               lambda c: _mh(c, sessionPubkey=Identity().pubkey.upper()))
_hello_refusal("hello_refused_missing_signature", "missing_field", lambda c: _without(_mh(c), "signature"))
_hello_refusal("hello_refused_missing_session_id", "missing_field", lambda c: _without(_mh(c), "sessionId"))
_hello_refusal("hello_refused_timestamp_wrong_type", "wrong_type",
               lambda c: dict(_mh(c), timestamp=str(mc.now_ms())))
_hello_refusal("hello_refused_timestamp_skew_past", "timestamp_skew",
               lambda c: _mh(c, timestamp=mc.now_ms() - 61_000))
_hello_refusal("hello_refused_timestamp_skew_future", "timestamp_skew",
               lambda c: _mh(c, timestamp=mc.now_ms() + 61_000))
_hello_refusal("hello_refused_bad_signature", "bad_signature", lambda c: _mh(c, sign_with=c.other))
_hello_refusal("hello_refused_not_a_member_unknown_key", "not_a_member",
               lambda c: mc.member_hello(c.other, c.mesh.id, ulid(), "d-x"))
_hello_refusal("hello_refused_not_a_member_wrong_member_id", "not_a_member",
               lambda c: mc.member_hello(c.bob.ident, c.mesh.id, c.mesh.owner.id, "d-y"))
_hello_refusal("hello_refused_not_a_member_unknown_mesh", "not_a_member",
               lambda c: mc.member_hello(c.bob.ident, ulid(), c.bob.id, "d-z"))


def _uppercase_pubkey_hello(c):
    upper = c.bob.pubkey.upper()
    ts = mc.now_ms()
    frame = mc.member_hello(c.bob.ident, c.mesh.id, c.bob.id, "d-up", timestamp=ts)
    frame["pubkey"] = upper
    frame["signature"] = c.bob.ident.sign(mc.member_hello_string(c.mesh.id, c.bob.id, upper, ts))
    return frame


_hello_refusal("regression_13_16_uppercase_member_pubkey_refused", "malformed", _uppercase_pubkey_hello)


@test()
async def hello_accepted_50s_old(t):
    mesh = await t.mesh()
    frame = mc.member_hello(mesh.owner.ident, mesh.id, mesh.owner.id, "d-old", timestamp=mc.now_ms() - 50_000)
    _, reply = await t.hello(frame)
    t.eq(reply.get("type"), "hello_ack", f"hello signed 50 s ago ({reply})")


# -- session_hello refusals

def _att(c, session_pubkey=None, expires=None, parent=None, sign_with=None):
    parent = parent or c.bob.ident
    return mc.session_attestation(parent, session_pubkey or c.session.pubkey, expires, sign_with=sign_with)


def _upper_session(c):
    frame = _sh(c)
    frame["sessionPubkey"] = c.session.pubkey.upper()
    frame["parentAttestation"]["sessionPubkey"] = c.session.pubkey.upper()
    return frame


def _bad_parent(c):
    frame = _sh(c)
    frame["parentMemberPubkey"] = "xyz"
    frame["parentAttestation"]["parentMemberPubkey"] = "xyz"
    return frame


def _parent_mismatch(c):
    carol = Identity()
    return _sh(c, attestation=mc.session_attestation(carol, c.session.pubkey))


_hello_refusal("session_hello_refused_bad_session_pubkey", "bad_session_pubkey", _upper_session)
_hello_refusal("session_hello_refused_bad_parent_pubkey", "bad_parent_pubkey", _bad_parent)
_hello_refusal("session_hello_refused_attestation_mismatch_session", "attestation_mismatch",
               lambda c: _sh(c, attestation=_att(c, session_pubkey=Identity().pubkey)))
_hello_refusal("session_hello_refused_attestation_mismatch_parent", "attestation_mismatch", _parent_mismatch)
_hello_refusal("session_hello_refused_attestation_expired", "expired",
               lambda c: _sh(c, attestation=_att(c, expires=mc.now_ms() - 1000)))
_hello_refusal("session_hello_refused_attestation_ttl_too_long", "ttl_too_long",
               lambda c: _sh(c, attestation=_att(c, expires=mc.now_ms() + 25 * 3600 * 1000)))
_hello_refusal("session_hello_refused_attestation_not_by_parent", "bad_signature",
               lambda c: _sh(c, attestation=_att(c, sign_with=c.other)))
_hello_refusal("session_hello_refused_attestation_without_session_secret", "bad_signature",
               lambda c: _sh(c, sign_with=c.other))
_hello_refusal("session_hello_refused_timestamp_skew", "timestamp_skew",
               lambda c: _sh(c, timestamp=mc.now_ms() - 61_000))
_hello_refusal("session_hello_refused_not_a_member", "not_a_member",
               lambda c: mc.session_hello(c.other, c.session, c.mesh.id, "s-out"))
_hello_refusal("session_hello_refused_parent_member_id_mismatch", "parent_member_id_mismatch",
               lambda c: _sh(c, parent_member_id=c.mesh.owner.id))


@test()
async def session_hello_refused_missing_attestation(t):
    c = await _hello_setup(t)
    conn, reply = await t.hello(_without(_sh(c), "parentAttestation"))
    t.need(reply.get("type") == "error" and reply.get("code") in ("missing_field", "malformed"),
           f"expected missing_field (or malformed), got {reply}")
    code, reason = await conn.wait_closed(5)
    t.eq((code, reason), (1008, reply.get("code")), "close")


@test()
async def session_hello_refused_cross_mesh_replay(t):
    c = await _hello_setup(t)
    other = await t.mesh("other", owner=c.mesh.owner.ident)
    # bob must be a member of both meshes, so only the signed mesh id differs
    resp, invite_id = await t.call(t.api.create_invite, other.owner.ident, other.id)
    t.http_ok(resp, 201, "invite bob to the other mesh")
    claimed = await t.call(t.api.claim_invite, c.bob.ident, invite_id, "bob")
    bob_other_id = t.http_ok(claimed, 201, "bob joins the other mesh").get("member", {}).get("id")
    captured = mc.session_hello(c.bob.ident, c.session, c.mesh.id, "s-replay")
    replay = dict(captured, meshId=other.id)  # signed for mesh A, sent for mesh B
    await t.refused_hello(replay, "bad_signature")
    fresh = mc.session_hello(c.bob.ident, c.session, other.id, "s-fresh", parent_member_id=bob_other_id)
    _, reply = await t.hello(fresh)
    t.eq(reply.get("type"), "hello_ack", f"the same keys with a hello signed for mesh B ({reply})")


@test()
async def session_hello_refused_revoked_parent(t):
    c = await _hello_setup(t)
    t.http_ok(await t.action(c.mesh.owner, c.mesh, c.bob.pubkey, "revoke"), 200, "revoke bob")
    await t.refused_hello(_sh(c), "revoked", 4002, "banned")


async def _capacity_check(t, session):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    await t.ctrl(mesh, mesh.owner, session_id="cap-1")
    await t.ctrl(mesh, bob, session_id="cap-2")
    if session:
        frame = mc.session_hello(bob.ident, Identity(), mesh.id, "cap-3", parent_member_id=bob.id)
    else:
        frame = mc.member_hello(mesh.owner.ident, mesh.id, mesh.owner.id, "cap-3")
    await t.refused_hello(frame, "capacity")
    other = await t.mesh("other")
    await t.ctrl(other, other.owner)  # the cap is per mesh


@test(broker="limits")
async def hello_refused_capacity(t):
    await _capacity_check(t, session=False)


@test(broker="limits")
async def session_hello_refused_capacity(t):
    await _capacity_check(t, session=True)


# ================================================================ after hello (§8.2)

@test()
async def ws_malformed_frames_after_hello(t):
    mesh = await t.mesh()
    conn, _ = await t.ctrl(mesh, mesh.owner)
    for raw in ("{not json", "[1,2]", '"text"', "17", "{}", '{"type":5}', '{"type":null}'):
        await conn.send_raw(raw)
        err = await conn.expect(is_type("error"), 5, f"error for {raw!r}")
        t.eq(err.get("code"), "malformed", f"code for {raw!r}")
    t.need(not conn.closed.is_set(), f"connection closed {conn.describe()}")
    await t.peers(conn)


@test()
async def ws_wrong_field_types_after_hello(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    conn, _ = await t.ctrl(mesh, mesh.owner)
    wrong = [
        {"type": "set_status", "status": 5},
        {"type": "set_visible", "visible": "yes"},
        {"type": "set_summary", "summary": ["x"]},
        {"type": "list_peers", "peerRole": 7},
        {"type": "join_group", "name": 3},
        {"type": "message_status", "messageId": 12},
        {"type": "send", "id": "w1", "targetSpec": 5, "nonce": "", "ciphertext": "", "client_message_id": "w1"},
        {"type": "send", "id": "w2", "targetSpec": bob.pubkey, "priority": 1, "nonce": "AAAA", "ciphertext": "AAAA",
         "client_message_id": "w2"},
    ]
    for frame in wrong:
        reply = await conn.request(frame, types=("ack", "peers_list", "message_status_result"))
        t.refused_with(reply, {"wrong_type", "malformed"}, f"{json.dumps(frame)}")
    t.need(not conn.closed.is_set(), f"connection closed {conn.describe()}")
    await t.peers(conn)


@test()
async def ws_invalid_values_after_hello(t):
    mesh = await t.mesh()
    bob = await t.member(mesh, "bob")
    conn, _ = await t.ctrl(mesh, mesh.owner)
    reply = await conn.request({"type": "set_status", "status": "sleeping"})
    t.refused_with(reply, {"invalid_value", "malformed"}, "status sleeping")
    reply, _ = await t.dm(conn, mesh.owner.ident, bob.pubkey, priority="urgent")
    t.refused_with(reply, {"invalid_value", "malformed"}, "priority urgent")
    await t.peers(conn)


@test()
async def regression_13_2_unknown_type_gets_error(t):
    mesh = await t.mesh()
    conn, _ = await t.ctrl(mesh, mesh.owner)
    reply = await conn.request({"type": "state_get", "key": "x"}, types=())
    t.eq((reply.get("type"), reply.get("code")), ("error", "unknown_message_type"), "reply to an unknown type")
    t.need(not conn.closed.is_set(), f"connection closed {conn.describe()}")
    await t.peers(conn)


@test()
async def ws_oversize_frame_closed_1009(t):
    mesh = await t.mesh()
    conn, _ = await t.ctrl(mesh, mesh.owner)
    try:
        await conn.send({"type": "set_summary", "summary": "x" * (300 * 1024)})
    except Exception:  # noqa: BLE001 - the broker may close while we are still writing
        pass
    code, _ = await conn.wait_closed(5)
    t.eq(code, 1009, "close code for a 300 KiB frame")
    again, _ = await t.ctrl(mesh, mesh.owner)  # the broker keeps serving
    await t.peers(again)


# ================================================================ messaging: DMs (§8.3, §8.4)

async def _pair(t, owner_name="alice"):
    mesh = await t.mesh(owner_name=owner_name)
    bob = await t.member(mesh, "bob")
    return mesh, mesh.owner, bob


@test()
async def dm_e2e_push_fields_and_decrypt(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    ack, sent = await t.dm(ca, alice.ident, bob.pubkey, "hello bob, end to end")
    mid = t.accepted(ack)
    t.eq((ack.get("id"), ack.get("duplicate")), (sent.cmid, False), "ack id and duplicate")
    t.eq(count_of(ack.get("recipients")), 1, f"ack recipients ({ack.get('recipients')!r})")
    push = await t.push(cb, mid)
    expected = {"meshId": mesh.id, "senderPubkey": alice.pubkey, "senderMemberPubkey": alice.pubkey,
                "senderName": "alice", "targetSpec": bob.pubkey, "recipientPubkey": bob.pubkey, "priority": "next",
                "attempt": 1, "client_message_id": sent.cmid, "request_fingerprint": sent.fp,
                "nonce": sent.frame["nonce"], "ciphertext": sent.frame["ciphertext"]}
    for key, value in expected.items():
        t.eq(push.get(key), value, f"push.{key}")
    t.need("createdAt" in push, f"push.createdAt missing: {push}")
    t.opens(bob.ident, push, sent.plaintext)
    try:
        mc.open_dm(Identity(), alice.pubkey, push["nonce"], push["ciphertext"])
        t.need(False, "a third key opens the DM")
    except Fail:
        raise
    except Exception:  # noqa: BLE001 - expected: only bob's key opens it
        pass
    await t.quiet(ca, is_message_push(), what="push to the sender")


@test()
async def dm_client_ack_marks_delivered(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    ack, sent = await t.dm(ca, alice.ident, bob.pubkey)
    mid = t.accepted(ack)
    await t.push(cb, mid)
    status = await t.status_of(ca, mid)
    t.eq((status.get("messageId"), status.get("targetSpec")), (mid, bob.pubkey), "message_status ids")
    t.need("createdAt" in status, f"createdAt missing: {status}")
    rows = status.get("recipients") or []
    t.eq([(r.get("pubkey"), r.get("delivered")) for r in rows], [(bob.pubkey, False)], "before client_ack")
    t.need((rows[0].get("attempts") or 0) >= 1, f"attempts: {rows}")
    await cb.send({"type": "client_ack", "brokerMessageId": mid, "clientMessageId": sent.cmid})
    status = await t.status_of(ca, mid, until=lambda s: (s.get("recipients") or [{}])[0].get("delivered"))
    row = (status.get("recipients") or [{}])[0]
    t.eq(row.get("delivered"), True, f"after client_ack ({status})")
    t.need(row.get("deliveredAt") is not None, f"deliveredAt: {row}")


@test()
async def message_status_own_messages_only(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    mid = t.accepted((await t.dm(ca, alice.ident, bob.pubkey))[0])
    reply = await cb.request({"type": "message_status", "messageId": mid}, types=("message_status_result",))
    t.refused_with(reply, {"not_found", "forbidden"}, "bob asks for alice's message")
    reply = await ca.request({"type": "message_status", "messageId": ulid()}, types=("message_status_result",))
    t.refused_with(reply, "not_found", "unknown message id")


@test()
async def duplicate_client_ack_harmless(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    mid = t.accepted((await t.dm(ca, alice.ident, bob.pubkey))[0])
    await t.push(cb, mid)
    for frame in ({"type": "client_ack", "brokerMessageId": mid}, {"type": "client_ack", "brokerMessageId": mid},
                  {"type": "client_ack", "brokerMessageId": ulid()}):
        await cb.send(frame)
    await t.quiet(cb, is_type("error"), what="error after client_ack")
    await t.peers(cb)
    status = await t.status_of(ca, mid, until=lambda s: (s.get("recipients") or [{}])[0].get("delivered"))
    t.eq((status.get("recipients") or [{}])[0].get("delivered"), True, "delivered")


@test()
async def regression_13_10_offline_dm_is_queued_not_rejected(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    ack, sent = await t.dm(ca, alice.ident, bob.pubkey, "you were offline")
    mid = t.accepted(ack, "DM to a member that never connected")
    cb, _ = await t.ctrl(mesh, bob)
    t.opens(bob.ident, await t.push(cb, mid), sent.plaintext)


@test()
async def regression_13_12_push_carries_sender_member_and_name(t):
    mesh, alice, bob = await _pair(t)
    sa, _, s_alice = await t.session(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    ack, sent = await t.dm(sa, s_alice, bob.pubkey, "from alice's session")
    push = await t.push(cb, t.accepted(ack))
    t.eq((push.get("senderPubkey"), push.get("senderMemberPubkey"), push.get("senderName")),
         (s_alice.pubkey, alice.pubkey, "alice"), "senderPubkey (session), senderMemberPubkey, senderName")
    t.opens(bob.ident, push, sent.plaintext)


@test()
async def push_order_is_creation_order(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    mids = []
    for i in range(6):
        mids.append(t.accepted((await t.dm(ca, alice.ident, bob.pubkey, f"n{i}"))[0]))
    cb, _ = await t.ctrl(mesh, bob)
    got = []
    for _ in mids:
        got.append((await cb.expect(is_message_push(), 5, "queued push"))["messageId"])
    t.eq(got, mids, "push order")


@test()
async def dm_to_session_key_reaches_that_session(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    sb, _, s_bob = await t.session(mesh, bob)
    ack, sent = await t.dm(ca, alice.ident, s_bob.pubkey, "to bob's session")
    push = await t.push(sb, t.accepted(ack))
    t.eq((push.get("targetSpec"), push.get("recipientPubkey")), (s_bob.pubkey, s_bob.pubkey),
         "targetSpec and recipientPubkey")
    t.opens(s_bob, push, sent.plaintext)
    await t.quiet(cb, is_message_push(), what="push of a session DM to the member's control plane")


@test()
async def dm_to_gone_session_falls_back_to_member(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    sb, _, s_bob = await t.session(mesh, bob)
    await sb.close()
    await asyncio.sleep(GRACE + 1.0)  # past the grace: the session is gone
    ack, sent = await t.dm(ca, alice.ident, s_bob.pubkey, "your session is gone")
    push = await t.push(cb, t.accepted(ack, "DM to a gone session key"))
    t.eq(push.get("targetSpec"), s_bob.pubkey, "targetSpec keeps the session key")
    t.opens(s_bob, push, sent.plaintext)


@test()
async def dm_queued_for_a_session_that_then_ends_falls_back_to_member(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    sb, _, s_bob = await t.session(mesh, bob)
    await sb.close()  # in grace: the DM is queued for the session key itself
    ack, sent = await t.dm(ca, alice.ident, s_bob.pubkey, "queued while your session was away")
    mid = t.accepted(ack, "DM to a session in grace")
    await asyncio.sleep(GRACE + 1.0)  # the grace ends without the session coming back
    cb, _ = await t.ctrl(mesh, bob)
    push = await t.push(cb, mid)
    t.eq(push.get("targetSpec"), s_bob.pubkey, "targetSpec keeps the session key")
    t.opens(s_bob, push, sent.plaintext)


@test()
async def regression_13_7_member_key_dm_goes_to_control_plane_not_session(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    sb, _, _ = await t.session(mesh, bob)
    mid = t.accepted((await t.dm(ca, alice.ident, bob.pubkey))[0])
    await t.quiet(sb, is_message_push(mid), what="member-key DM pushed to a session connection")
    cb, _ = await t.ctrl(mesh, bob)
    await t.push(cb, mid)


@test()
async def regression_13_6_broker_dedupes_retries(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    ack1, sent = await t.dm(ca, alice.ident, bob.pubkey, "retry me")
    mid = t.accepted(ack1)
    ack2 = await ca.request(sent.frame)
    t.eq((t.accepted(ack2, "retry"), ack2.get("duplicate")), (mid, True), "retry: messageId and duplicate")
    ca2, _ = await t.ctrl(mesh, alice)  # a retry on another connection of the same member
    ack3 = await ca2.request(sent.frame)
    t.eq((t.accepted(ack3, "retry on another connection"), ack3.get("duplicate")), (mid, True),
         "retry on another connection")
    cb, _ = await t.ctrl(mesh, bob)
    await t.push(cb, mid)
    await cb.send({"type": "client_ack", "brokerMessageId": mid})
    extra = await cb.quiet(is_message_push(), 1.0)
    t.need(extra is None, f"bob received a second copy: {extra}")


@test()
async def send_idempotency_key_reused(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    ack1, sent = await t.dm(ca, alice.ident, bob.pubkey, "one")
    t.accepted(ack1)
    ack2, _ = await t.dm(ca, alice.ident, bob.pubkey, "two", cmid=sent.cmid)
    t.refused_with(ack2, "idempotency_key_reused", "same client_message_id, different fingerprint")
    t.eq(ack2.get("queued"), False, "queued")
    cb, _ = await t.ctrl(mesh, bob)
    await t.push(cb, ack1["messageId"])
    await t.quiet(cb, is_message_push(), what="a second message")


@test()
async def send_refusal_does_not_consume_client_message_id(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cmid = ulid()
    refused, _ = await t.dm(ca, alice.ident, mc.random_pubkey(), cmid=cmid)
    t.refused_with(refused, "unknown_target", "first use of the id, unknown target")
    ack, _ = await t.dm(ca, alice.ident, bob.pubkey, cmid=cmid)
    t.accepted(ack, "same id after a refusal")
    t.eq(ack.get("duplicate"), False, "duplicate")


@test()
async def send_unknown_target(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    ack, _ = await t.dm(ca, alice.ident, mc.random_pubkey())
    t.refused_with(ack, "unknown_target", "a key that is not in the mesh")
    other = await t.mesh("other")
    ack, _ = await t.dm(ca, alice.ident, other.owner.pubkey)
    t.refused_with(ack, "unknown_target", "a member of another mesh")
    ack, _ = await t.dm(ca, alice.ident, bob.pubkey, extra={"targetSpec": "bogus name"})
    t.refused_with(ack, {"unknown_target", "invalid_target"}, "a display name (clients resolve names)")


@test()
async def regression_13_8_topic_send_refused_not_half_delivered(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    ack, _ = await t.shared(ca, "#deploys", nacl.utils.random(32))
    t.refused_with(ack, "unknown_target", "#topic send")
    await t.quiet(cb, is_message_push(), what="push of a refused topic send")


@test()
async def payload_too_large_default_limit(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    ack, _ = await t.dm(ca, alice.ident, bob.pubkey, plaintext=os.urandom(70 * 1024))
    t.refused_with(ack, "payload_too_large", "70 KiB body")
    t.accepted((await t.dm(ca, alice.ident, bob.pubkey, plaintext=os.urandom(16 * 1024)))[0], "16 KiB body")
    carol = await t.member(mesh, "carol")
    nonce, big = mc.seal_dm(alice.ident, carol.pubkey, os.urandom(70 * 1024))
    _, small = mc.seal_dm(alice.ident, bob.pubkey, b"ok")
    frame = {"type": "send", "id": "big-bodies", "targetSpec": "*", "client_message_id": ulid(),
             "bodies": [{"to": bob.pubkey, "nonce": nonce, "ciphertext": small},
                        {"to": carol.pubkey, "nonce": nonce, "ciphertext": big}]}
    t.refused_with(await ca.request(frame), "payload_too_large", "one of the bodies is 70 KiB")
    t.need(not ca.closed.is_set(), "connection closed")


@test(broker="limits")
async def payload_limit_flag(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    t.accepted((await t.dm(ca, alice.ident, bob.pubkey, plaintext=os.urandom(200)))[0], "200-byte body")
    ack, _ = await t.dm(ca, alice.ident, bob.pubkey, plaintext=os.urandom(4000))
    t.refused_with(ack, "payload_too_large", "4000-byte body with --max-payload 2048")


# ---------------------------------------------------------------- redelivery (broker "lease": 1 s lease, 200 ms sweep)

@test(broker="lease")
async def regression_cli_7_15_unacked_copy_redelivered_after_disconnect(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    ack, sent = await t.dm(ca, alice.ident, bob.pubkey)
    mid = t.accepted(ack)
    first = await t.push(cb, mid)
    t.eq(first.get("attempt"), 1, "first attempt")
    cb.abort()  # gone without client_ack
    cb2, _ = await t.ctrl(mesh, bob)
    again = await t.push(cb2, mid, timeout=5)
    t.need((again.get("attempt") or 0) >= 2, f"attempt on redelivery: {again.get('attempt')!r}")
    t.opens(bob.ident, again, sent.plaintext)


@test(broker="lease")
async def regression_13_11_expired_lease_redelivered_without_reconnect(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    mid = t.accepted((await t.dm(ca, alice.ident, bob.pubkey))[0])
    await t.push(cb, mid)
    again = await t.push(cb, mid, timeout=5)  # same connection, no ack: the sweep pushes it again
    t.need((again.get("attempt") or 0) >= 2, f"attempt: {again.get('attempt')!r}")
    await cb.send({"type": "client_ack", "brokerMessageId": mid})
    await asyncio.sleep(0.3)
    cb.take_all(is_message_push(mid))  # one may have crossed the ack
    await t.quiet(cb, is_message_push(mid), 2.5, "push after client_ack")


@test(broker="lease")
async def regression_cli_7_14_acked_copy_not_redelivered(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    mid = t.accepted((await t.dm(ca, alice.ident, bob.pubkey))[0])
    await t.push(cb, mid)
    await cb.send({"type": "client_ack", "brokerMessageId": mid})
    await t.quiet(cb, is_message_push(mid), 2.5, "push after client_ack")
    cb2, _ = await t.ctrl(mesh, bob)
    await t.quiet(cb2, is_message_push(mid), 1.0, "push of an acked copy on reconnect")


@test(broker="lease")
async def regression_13_14_client_ack_scoped_to_own_copies(t):
    mesh, alice, bob = await _pair(t)
    carol = await t.member(mesh, "carol")
    ca, _ = await t.ctrl(mesh, alice)
    cc, _ = await t.ctrl(mesh, carol)
    ack, sent = await t.dm(ca, alice.ident, bob.pubkey)
    mid = t.accepted(ack)
    await cc.send({"type": "client_ack", "brokerMessageId": mid, "clientMessageId": sent.cmid})
    await ca.send({"type": "client_ack", "brokerMessageId": mid, "clientMessageId": sent.cmid})
    await asyncio.sleep(0.5)
    status = await t.status_of(ca, mid)
    t.eq([(r.get("pubkey"), r.get("delivered")) for r in status.get("recipients") or []], [(bob.pubkey, False)],
         "bob's copy after carol and alice acked it")
    cb, _ = await t.ctrl(mesh, bob)
    t.opens(bob.ident, await t.push(cb, mid), sent.plaintext)


@test(broker="lease")
async def regression_13_14_broadcast_ack_scoped_to_own_copy(t):
    mesh, alice, bob = await _pair(t)
    carol = await t.member(mesh, "carol")
    ca, _ = await t.ctrl(mesh, alice)
    cc, _ = await t.ctrl(mesh, carol)
    key = nacl.utils.random(32)
    mid = t.accepted((await t.shared(ca, "*", key))[0])
    await t.push(cc, mid)
    await cc.send({"type": "client_ack", "brokerMessageId": mid})

    def carol_done(s):
        return any(r.get("pubkey") == carol.pubkey and r.get("delivered") for r in s.get("recipients") or [])
    status = await t.status_of(ca, mid, until=carol_done)
    states = {r.get("pubkey"): r.get("delivered") for r in status.get("recipients") or []}
    t.eq(states, {bob.pubkey: False, carol.pubkey: True}, "per-recipient delivery after carol's ack")
    cb, _ = await t.ctrl(mesh, bob)
    await t.push(cb, mid)


# ---------------------------------------------------------------- rate limit (broker "rate": burst 3, 1 per minute)

async def _flood(t, conn, sender, target, n):
    acks = []
    for i in range(n):
        acks.append(await t.dm(conn, sender, target, f"flood {i}"))
    return acks


@test(broker="rate")
async def rate_limited_beyond_burst(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    acks = await _flood(t, ca, alice.ident, bob.pubkey, 6)
    for i, (ack, _) in enumerate(acks[:3]):
        t.accepted(ack, f"send {i + 1} of a burst of 3")
    for i, (ack, _) in enumerate(acks[3:]):
        t.refused_with(ack, "rate_limited", f"send {i + 4} beyond the burst")
        t.eq(ack.get("queued"), False, "queued")
    t.need(not ca.closed.is_set(), "connection closed")


@test(broker="rate")
async def dedupe_answered_even_when_rate_limited(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    acks = await _flood(t, ca, alice.ident, bob.pubkey, 4)
    t.refused_with(acks[3][0], "rate_limited", "the budget is spent")
    first_ack, first = acks[0]
    again = await ca.request(first.frame)
    t.eq((again.get("messageId"), again.get("duplicate"), again.get("queued")),
         (first_ack.get("messageId"), True, True), f"retry of an accepted send while limited ({again})")
    conflict, _ = await t.dm(ca, alice.ident, bob.pubkey, "changed", cmid=first.cmid)
    t.refused_with(conflict, "idempotency_key_reused", "reuse with another fingerprint while limited")


@test(broker="rate")
async def rate_limit_is_per_member(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    await _flood(t, ca, alice.ident, bob.pubkey, 3)
    ca2, _ = await t.ctrl(mesh, alice)
    t.refused_with((await t.dm(ca2, alice.ident, bob.pubkey))[0], "rate_limited", "another connection of alice")
    sa, _, s_alice = await t.session(mesh, alice)
    t.refused_with((await t.dm(sa, s_alice, bob.pubkey))[0], "rate_limited", "a session of alice")
    cb, _ = await t.ctrl(mesh, bob)
    t.accepted((await t.dm(cb, bob.ident, alice.pubkey))[0], "bob has his own budget")


# ================================================================ messaging: broadcast and groups (§8.3)

async def _trio(t):
    mesh, alice, bob = await _pair(t)
    carol = await t.member(mesh, "carol")
    return mesh, alice, bob, carol


@test()
async def broadcast_per_recipient_bodies(t):
    mesh, alice, bob, carol = await _trio(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    cc, _ = await t.ctrl(mesh, carol)
    ack, sent = await t.per_recipient(ca, alice.ident, "*", [bob.pubkey, carol.pubkey])
    mid = t.accepted(ack)
    t.eq(count_of(ack.get("recipients")), 2, f"recipients ({ack.get('recipients')!r})")
    t.need(not ack.get("missingRecipients"), f"missingRecipients: {ack.get('missingRecipients')!r}")
    for conn, member in ((cb, bob), (cc, carol)):
        push = await t.push(conn, mid)
        t.eq((push.get("recipientPubkey"), push.get("senderPubkey"), push.get("senderMemberPubkey"),
              push.get("senderName")), (member.pubkey, alice.pubkey, alice.pubkey, "alice"),
             f"{member.name}'s push: recipient and sender fields")
        t.opens(member.ident, push, sent.plaintexts[member.pubkey])
    await t.quiet(ca, is_message_push(), what="the sender's own broadcast")


@test()
async def broadcast_shared_body(t):
    mesh, alice, bob, carol = await _trio(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    cc, _ = await t.ctrl(mesh, carol)
    key = nacl.utils.random(32)
    ack, sent = await t.shared(ca, "*", key, "to everyone")
    mid = t.accepted(ack)
    t.eq(count_of(ack.get("recipients")), 2, f"recipients ({ack.get('recipients')!r})")
    for conn in (cb, cc):
        push = await t.push(conn, mid)
        t.eq((push.get("nonce"), push.get("ciphertext")), (sent.frame["nonce"], sent.frame["ciphertext"]),
             "the shared body, copied")
        t.eq(mc.open_shared(key, push["nonce"], push["ciphertext"]), sent.plaintext, "decrypted")
    await t.quiet(ca, is_message_push(), what="the sender's own broadcast")


@test()
async def broadcast_at_all_alias(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    key = nacl.utils.random(32)
    ack, sent = await t.shared(ca, "@all", key)
    push = await t.push(cb, t.accepted(ack))
    t.eq(mc.open_shared(key, push["nonce"], push["ciphertext"]), sent.plaintext, "decrypted")


@test()
async def regression_13_9_broadcast_reaches_offline_member(t):
    mesh, alice, bob, carol = await _trio(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    key = nacl.utils.random(32)
    ack, sent = await t.shared(ca, "*", key, "carol is offline")
    mid = t.accepted(ack)
    t.eq(count_of(ack.get("recipients")), 2, "recipients include the offline member")
    await t.push(cb, mid)
    cc, _ = await t.ctrl(mesh, carol)
    push = await t.push(cc, mid)
    t.eq(mc.open_shared(key, push["nonce"], push["ciphertext"]), sent.plaintext, "decrypted")


@test()
async def broadcast_missing_recipients_listed(t):
    mesh, alice, bob, carol = await _trio(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    cc, _ = await t.ctrl(mesh, carol)
    ack, sent = await t.per_recipient(ca, alice.ident, "*", [bob.pubkey])
    mid = t.accepted(ack)
    t.eq(ack.get("missingRecipients"), [carol.pubkey], "missingRecipients")
    t.opens(bob.ident, await t.push(cb, mid), sent.plaintexts[bob.pubkey])
    await t.quiet(cc, is_message_push(mid), what="a push to a member without a body")


@test()
async def broadcast_body_for_unreached_key_invalid_value(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    ack, _ = await t.per_recipient(ca, alice.ident, "*", [bob.pubkey, mc.random_pubkey()])
    t.refused_with(ack, "invalid_value", "a body for a key outside the mesh")
    ack, _ = await t.per_recipient(ca, alice.ident, "*", [bob.pubkey, alice.pubkey])
    t.refused_with(ack, "invalid_value", "a body for the sender's own key")
    await t.quiet(cb, is_message_push(), what="a push of a refused broadcast")


@test()
async def regression_cli_7_11_sender_does_not_receive_own_broadcast(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    sa, _, s_alice = await t.session(mesh, alice)
    sa2, _, _ = await t.session(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    ack, _ = await t.shared(sa, "*", nacl.utils.random(32))
    mid = t.accepted(ack)
    t.eq((await t.push(cb, mid)).get("senderPubkey"), s_alice.pubkey, "senderPubkey is the sending session")
    for conn in (ca, sa, sa2):
        await t.quiet(conn, is_message_push(mid), 0.4, "the sender member's own broadcast")


@test()
async def group_reaches_hierarchical_subgroups(t):
    mesh = await t.mesh(owner_name="alice")
    alice = mesh.owner
    ca, _ = await t.ctrl(mesh, alice)
    conns = {}
    for name, group in (("eu", "ops/eu"), ("west", "ops/eu/west"), ("eubar", "ops/eubar"), ("ops", "ops"),
                        ("none", None)):
        m = await t.member(mesh, name)
        groups = [{"name": group}] if group else []
        conns[name], _ = await t.ctrl(mesh, m, groups=groups)
    key = nacl.utils.random(32)
    ack, sent = await t.shared(ca, "@ops/eu", key, "eu ops only")
    mid = t.accepted(ack)
    t.eq(count_of(ack.get("recipients")), 2, f"recipients ({ack.get('recipients')!r})")
    for name in ("eu", "west"):
        push = await t.push(conns[name], mid)
        t.eq(mc.open_shared(key, push["nonce"], push["ciphertext"]), sent.plaintext, f"{name} decrypts")
    for name in ("eubar", "ops", "none"):
        await t.quiet(conns[name], is_message_push(mid), 0.3, f"push to '{name}' outside @ops/eu")


@test()
async def group_stored_membership_reaches_offline_member(t):
    mesh, alice, dora = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cd, _ = await t.ctrl(mesh, dora)
    await t.ok_request(cd, {"type": "join_group", "name": "ops/eu/x"})
    await cd.close()
    await asyncio.sleep(GRACE + 1.0)  # dora's presence is gone; only the stored groups remain
    ack, _ = await t.shared(ca, "@ops/eu", nacl.utils.random(32))
    mid = t.accepted(ack)
    t.eq(count_of(ack.get("recipients")), 1, "recipients (dora, offline)")
    cd2, _ = await t.ctrl(mesh, dora)
    await t.push(cd2, mid)


@test()
async def group_leave_stops_delivery(t):
    mesh, alice, dora = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cd, _ = await t.ctrl(mesh, dora)
    await t.ok_request(cd, {"type": "join_group", "name": "qa"})
    mid = t.accepted((await t.shared(ca, "@qa", nacl.utils.random(32)))[0])
    await t.push(cd, mid)
    await t.ok_request(cd, {"type": "leave_group", "name": "qa"})
    ack, _ = await t.shared(ca, "@qa", nacl.utils.random(32))
    await t.quiet(cd, is_message_push(), what="group push after leave_group")
    if ack.get("queued") is True:
        t.eq(count_of(ack.get("recipients")), 0, "recipients after leave_group")


# ================================================================ priority and held copies (§8.4)

@test()
async def priority_working_holds_next_delivers_now(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    await t.ok_request(cb, {"type": "set_status", "status": "working"})
    held = t.accepted((await t.dm(ca, alice.ident, bob.pubkey, priority="next"))[0])
    await t.quiet(cb, is_message_push(held), 1.0, "`next` push while working")
    urgent = t.accepted((await t.dm(ca, alice.ident, bob.pubkey, priority="now"))[0])
    t.eq((await t.push(cb, urgent, timeout=3)).get("priority"), "now", "priority of the `now` push")
    await t.quiet(cb, is_message_push(held), 0.3, "`next` push while still working")


@test()
async def priority_idle_releases_held(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    await t.ok_request(cb, {"type": "set_status", "status": "working"})
    held = t.accepted((await t.dm(ca, alice.ident, bob.pubkey, priority="next"))[0])
    low = t.accepted((await t.dm(ca, alice.ident, bob.pubkey, priority="low"))[0])
    await t.quiet(cb, is_message_push(), 0.8, "push while working")
    await t.ok_request(cb, {"type": "set_status", "status": "idle"})
    got = [(await cb.expect(is_message_push(), 3, "held push after idle"))["messageId"] for _ in range(2)]
    t.eq(got, [held, low], "held copies in creation order")


@test()
async def priority_dnd_holds_low(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    await t.ok_request(cb, {"type": "set_status", "status": "dnd"})
    low = t.accepted((await t.dm(ca, alice.ident, bob.pubkey, priority="low"))[0])
    await t.quiet(cb, is_message_push(low), 0.8, "`low` push while dnd")
    now = t.accepted((await t.dm(ca, alice.ident, bob.pubkey, priority="now"))[0])
    await t.push(cb, now, timeout=3)


@test()
async def fetch_queued_delivers_held(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    await t.ok_request(cb, {"type": "set_status", "status": "working"})
    held = t.accepted((await t.dm(ca, alice.ident, bob.pubkey, priority="next"))[0])
    await t.quiet(cb, is_message_push(held), 0.6, "push while working")
    await t.ok_request(cb, {"type": "fetch_queued"})
    await t.push(cb, held, timeout=3)
    later = t.accepted((await t.dm(ca, alice.ident, bob.pubkey, priority="next"))[0])
    await t.quiet(cb, is_message_push(later), 0.6, "fetch_queued changed the status")


# ================================================================ presence (§8.1 reattach, §8.2 list_peers, §8.5 events)

JOIN_EVENTS = ("peer_joined", "peer_returned")


@test()
async def list_peers_contents(t):
    mesh, alice, bob = await _pair(t)
    ca, ack_a = await t.ctrl(mesh, alice, session_id="daemon-a", cwd="/work/a", hostname="host-a", pid=4242,
                             peerType="ai", channel="claudemesh-daemon", model="m-1",
                             groups=[{"name": "ops", "role": "lead"}])
    sb, ack_b, s_bob = await t.session(mesh, bob, session_id="sess-b", cwd="/work/b", groups=[{"name": "dev"}])
    peers = await t.peers(ca)
    for p in peers:
        missing = [f for f in PEER_FIELDS if f not in p]
        t.need(not missing, f"peer {p} lacks {missing}")
    mine = [p for p in peers if p.get("pubkey") == s_bob.pubkey]
    t.eq(len(mine), 1, f"peers with bob's session key in {peers}")
    p = mine[0]
    expected = {"presenceId": ack_b.get("presenceId"), "memberPubkey": bob.pubkey, "memberId": bob.id,
                "displayName": "bob", "peerRole": "session", "status": "idle", "visible": True, "online": True,
                "sessionId": "sess-b", "cwd": "/work/b"}
    for key, value in expected.items():
        t.eq(p.get(key), value, f"bob's session peer.{key}")
    t.eq(group_names(p.get("groups")), ["dev"], "bob's session groups")
    ctrl = [p for p in peers if p.get("presenceId") == ack_a.get("presenceId")]
    t.eq(len(ctrl), 1, "alice's control-plane connection is listed")
    p = ctrl[0]
    expected = {"pubkey": alice.pubkey, "memberPubkey": alice.pubkey, "peerRole": "control-plane",
                "sessionId": "daemon-a", "cwd": "/work/a", "hostname": "host-a", "pid": 4242, "peerType": "ai",
                "channel": "claudemesh-daemon", "model": "m-1"}
    for key, value in expected.items():
        t.eq(p.get(key), value, f"alice's peer.{key}")
    t.eq(p.get("groups"), [{"name": "ops", "role": "lead"}], "alice's groups")


@test()
async def list_peers_filter_by_peer_role(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    sb, _, s_bob = await t.session(mesh, bob)
    sessions = await t.peers(ca, peerRole="session")
    t.eq([p.get("pubkey") for p in sessions], [s_bob.pubkey], "peerRole=session")
    planes = await t.peers(ca, peerRole="control-plane")
    t.need(planes and all(p.get("peerRole") == "control-plane" for p in planes), f"peerRole=control-plane: {planes}")
    t.need(any(p.get("pubkey") == alice.pubkey for p in planes), "alice missing from control-plane peers")


@test()
async def set_status_summary_profile_visible_in_list(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    sb, _, s_bob = await t.session(mesh, bob)
    await t.ok_request(sb, {"type": "set_status", "status": "working"})
    await t.ok_request(sb, {"type": "set_summary", "summary": "fixing the flaky test"})
    await t.ok_request(sb, {"type": "set_profile", "displayName": "bobby"})
    p = [p for p in await t.peers(ca) if p.get("pubkey") == s_bob.pubkey]
    t.need(len(p) == 1, "bob's session not listed")
    t.eq((p[0].get("status"), p[0].get("summary"), p[0].get("displayName")),
         ("working", "fixing the flaky test", "bobby"), "status, summary, displayName")
    reply = await sb.request({"type": "set_summary", "summary": "x" * 2000})
    t.refused_with(reply, {"payload_too_large", "invalid_value"}, "a 2000-byte summary")


@test()
async def peer_joined_first_hello_fields(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob, groups=[{"name": "ops"}])
    ev = await ca.expect(is_system(JOIN_EVENTS, bob.pubkey), 3, "join event for bob")
    t.eq(ev.get("event"), "peer_joined", "event for a member's first hello")
    for key, value in {"senderPubkey": "system", "priority": "low", "nonce": "", "ciphertext": "",
                       "meshId": mesh.id}.items():
        t.eq(ev.get(key), value, f"system push.{key}")
    t.need(isinstance(ev.get("messageId"), str) and "createdAt" in ev, f"messageId/createdAt: {ev}")
    data = ev.get("eventData") or {}
    t.eq((data.get("name"), data.get("memberPubkey"), data.get("peerRole")), ("bob", bob.pubkey, "control-plane"),
         "eventData")
    t.eq(group_names(data.get("groups")), ["ops"], "eventData.groups")
    await t.quiet(cb, is_system(JOIN_EVENTS, bob.pubkey), 0.3, "join event about itself")


@test()
async def regression_cli_7_10_no_join_event_to_own_member_control_plane(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb1, _ = await t.ctrl(mesh, bob, session_id="daemon-1")
    await ca.expect(is_system(JOIN_EVENTS, bob.pubkey), 3, "join event for bob's first connection")
    cb2, _ = await t.ctrl(mesh, bob, session_id="daemon-2")
    await ca.expect(is_system(JOIN_EVENTS, bob.pubkey), 3, "join event for bob's second connection")
    await t.quiet(cb1, is_system(JOIN_EVENTS), what="join event about bob's own control-plane hello")


@test()
async def peer_joined_session_hello_reaches_own_member(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    sb, _, s_bob = await t.session(mesh, bob)
    for conn in (ca, cb):
        ev = await conn.expect(is_system(JOIN_EVENTS, s_bob.pubkey), 3, f"join event for bob's session on {conn.label}")
        data = ev.get("eventData") or {}
        t.eq((data.get("memberPubkey"), data.get("peerRole")), (bob.pubkey, "session"), "eventData")
    await t.quiet(sb, is_system(JOIN_EVENTS, s_bob.pubkey), 0.3, "join event about itself")


@test()
async def peer_returned_for_member_seen_before(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob, session_id="d-first")
    await ca.expect(is_system("peer_joined", bob.pubkey), 3, "peer_joined")
    await cb.close()
    await ca.expect(is_system("peer_left", bob.pubkey), GRACE + 3, "peer_left after the grace")
    cb2, _ = await t.ctrl(mesh, bob, session_id="d-second")
    ev = await ca.expect(is_system(JOIN_EVENTS, bob.pubkey), 3, "event for bob's return")
    t.eq(ev.get("event"), "peer_returned", "event for a member seen before")
    t.need((ev.get("eventData") or {}).get("lastSeenAt") is not None, f"lastSeenAt: {ev}")


@test()
async def regression_cli_7_2_reconnect_within_grace_is_silent(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob, session_id="daemon-x")
    await ca.expect(is_system(JOIN_EVENTS, bob.pubkey), 3, "join event")
    cb.abort()  # a network blip
    await asyncio.sleep(0.2)
    ack, sent = await t.dm(ca, alice.ident, bob.pubkey, "sent during the blip")
    mid = t.accepted(ack)
    cb2, _ = await t.ctrl(mesh, bob, session_id="daemon-x")
    t.opens(bob.ident, await t.push(cb2, mid), sent.plaintext)
    await t.quiet(ca, is_system(("peer_left",) + JOIN_EVENTS, bob.pubkey), GRACE + 1.5,
                  "presence event for a reconnect within the grace")


@test()
async def session_reattach_within_grace_is_silent(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    s_bob = Identity()
    sb, _, _ = await t.session(mesh, bob, session=s_bob, session_id="sess-x")
    await ca.expect(is_system(JOIN_EVENTS, s_bob.pubkey), 3, "join event")
    await sb.close()
    await asyncio.sleep(0.2)
    ack, sent = await t.dm(ca, alice.ident, s_bob.pubkey, "sent while the session was away")
    mid = t.accepted(ack)
    sb2, _, _ = await t.session(mesh, bob, session=s_bob, session_id="sess-x")
    t.opens(s_bob, await t.push(sb2, mid), sent.plaintext)
    await t.quiet(ca, is_system(("peer_left",) + JOIN_EVENTS, s_bob.pubkey), GRACE + 1.5,
                  "presence event for a session reattach")


@test()
async def list_peers_offline_during_grace(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, ack_b = await t.ctrl(mesh, bob)
    await cb.close()
    await asyncio.sleep(0.3)
    listed = [p for p in await t.peers(ca) if p.get("presenceId") == ack_b.get("presenceId")]
    t.need(len(listed) == 1 and listed[0].get("online") is False, f"bob during the grace: {listed}")
    await ca.expect(is_system("peer_left", bob.pubkey), GRACE + 3, "peer_left")
    await t.peers_until(ca, lambda ps: all(p.get("presenceId") != ack_b.get("presenceId") for p in ps),
                        "bob still listed after the grace")


@test()
async def peer_left_once_after_grace(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    await ca.expect(is_system(JOIN_EVENTS, bob.pubkey), 3, "join event")
    started = time.monotonic()
    await cb.close()
    ev = await ca.expect(is_system("peer_left", bob.pubkey), GRACE + 3, "peer_left")
    elapsed = time.monotonic() - started
    t.need(elapsed >= GRACE * 0.8, f"peer_left after {elapsed:.2f} s, before the {GRACE} s grace ended")
    data = ev.get("eventData") or {}
    t.eq((data.get("name"), data.get("pubkey"), data.get("memberPubkey"), data.get("peerRole")),
         ("bob", bob.pubkey, bob.pubkey, "control-plane"), "eventData")
    await t.quiet(ca, is_system("peer_left", bob.pubkey), 2.0, "a second peer_left")


@test()
async def session_replaced_same_member_and_session_id(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb1, _ = await t.ctrl(mesh, bob, session_id="daemon-same")
    cb2, _ = await t.ctrl(mesh, bob, session_id="daemon-same")
    t.eq(await cb1.wait_closed(5), (1000, "session_replaced"), "the older connection")
    await t.peers(cb2)
    await t.peers_until(ca, lambda ps: len([p for p in ps if p.get("memberPubkey") == bob.pubkey
                                            and p.get("sessionId") == "daemon-same"]) == 1,
                        "not exactly one presence of bob with that sessionId")


@test()
async def set_visible_hidden_and_visible(t):
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    cb, _ = await t.ctrl(mesh, bob)
    sb, _, s_bob = await t.session(mesh, bob)
    await t.ok_request(sb, {"type": "set_visible", "visible": False})
    ev = await ca.expect(is_system("peer_hidden", s_bob.pubkey), 3, "peer_hidden")
    t.eq((ev.get("eventData") or {}).get("name"), "bob", "peer_hidden name")
    await t.peers_until(ca, lambda ps: all(p.get("pubkey") != s_bob.pubkey for p in ps),
                        "hidden session listed to alice")
    own = [p for p in await t.peers(cb) if p.get("pubkey") == s_bob.pubkey]
    t.need(len(own) == 1 and own[0].get("visible") is False, f"hidden session as bob's member sees it: {own}")
    await t.ok_request(sb, {"type": "set_visible", "visible": True})
    await ca.expect(is_system("peer_visible", s_bob.pubkey), 3, "peer_visible")
    t.need(any(p.get("pubkey") == s_bob.pubkey for p in await t.peers(ca)), "visible session not listed")


# ================================================================ lifecycle: SIGTERM, restart (dedicated brokers)

@test(broker=None, timeout=60)
async def sigterm_closes_1001_and_exits_0(t):
    t.b = await t.start_broker("sigterm", BROKERS["main"])
    mesh = await t.mesh()
    conn, _ = await t.ctrl(mesh, mesh.owner)
    rc = await asyncio.to_thread(t.b.stop, 15)
    t.eq(await conn.wait_closed(5), (1001, "shutting down"), "live connection on SIGTERM")
    t.eq(rc, 0, "exit status after SIGTERM")


@test(broker=None, timeout=90)
async def restart_keeps_meshes_queue_and_dedupe(t):
    data_dir = tempfile.mkdtemp(prefix="restart-", dir=t.suite.workdir)
    t.b = await t.start_broker("restart-1", BROKERS["main"], data_dir=data_dir)
    mesh, alice, bob = await _pair(t)
    ca, _ = await t.ctrl(mesh, alice)
    ack, sent = await t.dm(ca, alice.ident, bob.pubkey, "survives a restart")
    mid = t.accepted(ack)
    t.eq(await asyncio.to_thread(t.b.stop, 15), 0, "first broker's exit status")
    t.b = await t.start_broker("restart-2", BROKERS["main"], data_dir=data_dir)
    mesh.api = t.api
    t.http_ok(await t.call(t.api.get_mesh, alice.ident, mesh.id), 200, "the mesh after a restart")
    t.need(bob.pubkey in await t.members_of(mesh), "bob after a restart")
    cb, _ = await t.ctrl(mesh, bob)
    t.opens(bob.ident, await t.push(cb, mid), sent.plaintext)
    ca2, _ = await t.ctrl(mesh, alice)
    again = await ca2.request(sent.frame)
    t.eq((again.get("messageId"), again.get("duplicate")), (mid, True), f"retry after a restart ({again})")


# ================================================================ main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", help="path to claudemesh-broker")
    parser.add_argument("--only", help="run only checks whose name contains this substring")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("--timeout", type=float, default=540, help="global timeout in seconds (default 540)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (broker data and logs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="add the broker's log tail to failures")
    args = parser.parse_args()

    names = [tst.name for tst in TESTS]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        print(f"duplicate check names: {dupes}", file=sys.stderr)
        return 2
    selected = [tst for tst in TESTS if not args.only or args.only in tst.name]
    if args.list:
        for tst in selected:
            print(f"{tst.name}  [{tst.broker or 'own broker'}]")
        return 0
    if not args.broker:
        parser.error("--broker is required")
    binary = os.path.abspath(args.broker)
    if not os.access(binary, os.X_OK):
        print(f"FAIL setup (not an executable: {binary})", flush=True)
        return 1
    if not selected:
        print(f"no check matches --only {args.only!r}", file=sys.stderr)
        return 2

    workdir = tempfile.mkdtemp(prefix="claudemesh-broker-protocol-")
    suite = Suite(binary, workdir, args.verbose)

    def on_timeout():
        print(f"FAIL global_timeout (the run exceeded {args.timeout} s; brokers killed)", flush=True)
        suite.kill_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        os._exit(1)

    watchdog = threading.Timer(args.timeout, on_timeout)
    watchdog.daemon = True
    watchdog.start()

    async def run_all():
        for tst in selected:
            await run_one(suite, tst)

    try:
        asyncio.run(run_all())
        # the shared brokers: graceful exit on SIGTERM, and nothing but JSON lines on stdout
        for kind, br in suite.shared.items():
            alive = br.alive()
            rc = br.stop(15)
            report(f"broker_{kind}_sigterm_exit_0", alive and rc == 0,
                   f"exit status {rc!r}" if alive else f"it had died with {br.proc.returncode}")
            bad = [ln for ln in br.lines if not ln.strip().startswith("{")]
            report(f"broker_{kind}_stdout_is_json_lines", br.all_lines_json, f"non-JSON lines: {bad[:3]}")
    finally:
        watchdog.cancel()
        suite.kill_all()
        if args.keep:
            print(f"# kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"# {len(RESULTS)} checks, {len(FAILURES)} failed", flush=True)
    if FAILURES:
        print("# failed: " + " ".join(FAILURES), flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
