#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The `claudemesh` CLI end to end: real processes, a real broker, temporary homes.

    /usr/bin/python3 tests/integration/cli_test.py --cli PATH --broker PATH [--daemon PATH] [--only SUBSTRING] [-v]

Starts `claudemesh-broker` on 127.0.0.1 (ephemeral port) in a temporary directory, then drives the CLI as two
users, alice and bob, each with a home of their own (CLAUDEMESH_HOME). Three kinds of check:

* direct ("cold") path and the CLI surface, always: mesh create / invite / join / whoami, send (by name, hex
  prefix and full key; decrypted by an independent Python peer holding bob's key), refusals and exit codes,
  --help for every verb, --json printing only JSON, flags that do not swallow arguments;
* the daemon route against a stand-in daemon (a Python HTTP server on the daemon's Unix socket that answers
  from a table and records every request), always: what the CLI asks the daemon and how it shows the answers;
* the real daemon (`claudemeshd`, --daemon), when that binary exists: daemon up/status/down, send through the
  daemon, the other side's inbox, msg-status, outbox list, auto-start.

Checks named `bug N (version): ...` regress item N of ../shared/reference/seed-daemon-cli.md §7. Each prints
`ok   name`, `FAIL name (detail)` or `skip name (why)`; the exit status is non-zero when any check fails.
Every child process runs under a timeout; daemons are stopped by the pid in their lock file at the end.
"""
import argparse
import asyncio
import fcntl
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import socketserver
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import meshclient as mc  # noqa: E402
from meshclient import Identity, is_message_push, ulid  # noqa: E402

CLI_TIMEOUT = 60  # seconds, for any single CLI invocation

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_DAEMON, EXIT_REFUSED = 0, 1, 2, 3, 4, 5, 6


class Fail(Exception):
    pass


class Skip(Exception):
    pass


# ================================================================ running the CLI

class Run:
    def __init__(self, args, rc, out, err):
        self.args = args
        self.rc = rc
        self.out = out
        self.err = err

    def describe(self):
        return f"`claudemesh {' '.join(self.args)}` -> exit {self.rc}; stdout: {self.out[-600:]!r}; stderr: {self.err[-600:]!r}"

    @property
    def json(self):
        """stdout as one JSON document; anything else on stdout is a failure (--json prints only JSON)."""
        try:
            return json.loads(self.out)
        except ValueError as exc:
            raise Fail(f"stdout is not one JSON document ({exc}): {self.describe()}") from None


class Suite:
    def __init__(self, args, tmp):
        self.cli = os.path.abspath(args.cli)
        self.broker_bin = os.path.abspath(args.broker)
        self.daemon_bin = os.path.abspath(args.daemon) if args.daemon else None
        self.verbose = args.verbose
        self.tmp = tmp
        self.user_home = os.path.join(tmp, "user-home")  # HOME: no real systemd unit or ~/.claudemesh is seen
        os.makedirs(self.user_home)
        self.alice = os.path.join(tmp, "alice")
        self.bob = os.path.join(tmp, "bob")
        self.broker = mc.BrokerProcess(self.broker_bin, os.path.join(tmp, "broker"), args=["--grace-ms", "300"])
        self.slug = None
        self.mesh_id = None
        self.alice_key = None
        self.bob_key = None
        self.invite_url = None
        self.daemon_homes = set()  # homes whose daemon this run may have started

    @property
    def has_daemon(self):
        return self.daemon_bin is not None and os.access(self.daemon_bin, os.X_OK)

    def env(self, home, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDEMESH_")}
        env.update({"HOME": self.user_home, "CLAUDEMESH_HOME": home, "CLAUDEMESH_NO_AUTOSTART": "1",
                    "CLAUDEMESH_DAEMON_TCP_PORT": "off"})
        if self.has_daemon:
            env["CLAUDEMESH_DAEMON_BIN"] = self.daemon_bin
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def run(self, home, *args, env=None, timeout=CLI_TIMEOUT):
        args = [str(a) for a in args]
        try:
            done = subprocess.run([self.cli, *args], env=self.env(home, env), stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Fail(f"`claudemesh {' '.join(args)}` did not finish within {timeout} s") from None
        run = Run(args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
        if self.verbose:
            print(f"     $ claudemesh {' '.join(args)} -> {run.rc}", flush=True)
        return run

    async def arun(self, home, *args, env=None, timeout=CLI_TIMEOUT):
        """`run` from inside an event loop (an independent peer keeps its connection meanwhile)."""
        args = [str(a) for a in args]
        proc = await asyncio.create_subprocess_exec(self.cli, *args, env=self.env(home, env),
                                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise Fail(f"`claudemesh {' '.join(args)}` did not finish within {timeout} s") from None
        return Run(args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    # ---- assertions

    @staticmethod
    def need(cond, what):
        if not cond:
            raise Fail(what)

    def expect_rc(self, run, rc, what=""):
        self.need(run.rc == rc, f"{what + ': ' if what else ''}expected exit {rc}: {run.describe()}")

    def expect_error_line(self, run, needle=None):
        """A failure for people: exactly one line on stderr, `claudemesh: ...`, nothing on stdout."""
        lines = [line for line in run.err.splitlines() if line.strip()]
        self.need(len(lines) == 1 and lines[0].startswith("claudemesh: "),
                  f"expected one `claudemesh: ...` line on stderr: {run.describe()}")
        if needle is not None:
            self.need(needle in lines[0], f"stderr lacks {needle!r}: {run.describe()}")
        self.need(run.out.strip() == "", f"stdout should be empty on failure: {run.describe()}")

    def expect_json_error(self, run, rc, code=None):
        self.expect_rc(run, rc)
        doc = run.json
        self.need(doc.get("ok") is False and isinstance(doc.get("error"), dict), f"not an error document: {doc}")
        self.need(isinstance(doc["error"].get("message"), str) and doc["error"]["message"], f"no message: {doc}")
        if code is not None:
            self.need(doc["error"].get("code") == code, f"error code {doc['error'].get('code')!r}, expected {code!r}")
        return doc

    # ---- keys and identities

    def member_identity(self, home, slug=None):
        with open(os.path.join(home, "meshes", slug or self.slug, "identity.json")) as f:
            secret = json.load(f)["secretKey"]
        return Identity.from_seed(bytes.fromhex(secret[:64]))

    def member_id(self, home):
        with open(os.path.join(home, "config.json")) as f:
            for mesh in json.load(f)["meshes"]:
                if mesh["slug"] == self.slug:
                    return mesh["member_id"]
        raise Fail(f"{home}: mesh {self.slug} not in config.json")

    async def connect_member(self, home, name, session=False):
        """An independent peer (meshclient) holding the member key of `home`: a control-plane `hello`, or a
        `session_hello` for a fresh session key vouched for by the member."""
        member = self.member_identity(home)
        conn = await mc.Conn.open(self.broker.ws_url, label=name)
        if session:
            key = Identity()
            frame = mc.session_hello(member, key, self.mesh_id, f"sess-{ulid()}", parent_member_id=self.member_id(home),
                                     displayName=name)
        else:
            key = member
            frame = mc.member_hello(member, self.mesh_id, self.member_id(home), f"py-{ulid()}", displayName=name)
        await conn.send(frame)
        ack = await conn.expect(lambda f: f.get("type") in ("hello_ack", "error"), 10, "hello_ack")
        self.need(ack.get("type") == "hello_ack", f"{name}: hello refused: {ack}")
        return conn, key

    # ---- daemons this run started

    def stop_daemons(self):
        for home in sorted(self.daemon_homes):
            lock = os.path.join(home, "daemon", "daemon.lock")
            try:
                with open(lock) as f:
                    pid = int(f.read().strip() or "0")
            except (OSError, ValueError):
                continue
            if pid <= 0:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# ================================================================ a stand-in daemon

class FakeDaemon:
    """Answers the daemon's routes on `<dir>/daemon.sock` from `routes` {(METHOD, path): (status, body)} and records
    every request as (method, target, headers, body). /v1/version always answers."""

    def __init__(self, directory, routes=None):
        self.dir = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.socket = os.path.join(directory, "daemon.sock")
        self.routes = dict(routes or {})
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # noqa: D401 - silence
                pass

            def address_string(self):
                return "unix"

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                fake.requests.append((self.command, self.path, dict(self.headers), body))
                path = self.path.split("?", 1)[0]
                if (self.command, path) in fake.routes:
                    status, answer = fake.routes[(self.command, path)]
                elif (self.command, path) == ("GET", "/v1/version"):
                    status, answer = 200, {"daemon_version": "fake", "ipc_api": 1, "pid": os.getpid()}
                else:
                    status, answer = 404, {"error": {"code": "not_found", "message": f"no route {path}"}}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = handle_any

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(self.socket, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        try:
            os.unlink(self.socket)
        except OSError:
            pass

    def requests_to(self, method, path):
        return [r for r in self.requests if r[0] == method and r[1].split("?", 1)[0] == path]


# ================================================================ checks

CHECKS = []


def check(name, needs_daemon=False, setup=False):
    """Registers a check. `setup` checks (the memberships the others use) run even when --only names others."""
    def deco(fn):
        CHECKS.append((name, fn, needs_daemon, setup))
        return fn
    return deco


def is_hex64(value):
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ---- the CLI surface

VERBS = [[], ["mesh"], ["mesh", "create"], ["invite"], ["join"], ["whoami"], ["peer"], ["peer", "list"], ["peers"],
         ["status"], ["status", "set"], ["summary"], ["summary", "set"], ["send"], ["msg-status"], ["message"],
         ["message", "status"], ["inbox"], ["inbox", "show"], ["inbox", "seen"], ["inbox", "delete"],
         ["inbox", "flush"], ["inbox", "search"], ["daemon"], ["daemon", "up"], ["daemon", "down"],
         ["daemon", "status"], ["daemon", "logs"], ["daemon", "outbox"], ["daemon", "outbox", "list"],
         ["daemon", "outbox", "requeue"], ["daemon", "accept-host"], ["daemon", "install-service"],
         ["daemon", "uninstall-service"], ["keygen"], ["identity"], ["identity", "show"]]


@check("every verb's --help exits 0 and prints its usage")
def help_for_every_verb(s):
    for verb in VERBS:
        run = s.run(s.alice, *verb, "--help")
        s.expect_rc(run, 0, f"{verb} --help")
        s.need("Usage:" in run.out, f"{verb} --help printed no usage: {run.describe()}")
    top = s.run(s.alice, "--help")
    for code in ("0 success", "2 usage", "3 not found", "4 conflict", "5 the daemon", "6 refused"):
        s.need(code in top.out, f"`claudemesh --help` does not document exit code {code!r}")


@check("an unknown verb exits 2 with one line on stderr (and only JSON with --json)")
def unknown_verb(s):
    run = s.run(s.alice, "frobnicate")
    s.expect_rc(run, EXIT_USAGE)
    s.expect_error_line(run, "frobnicate")
    s.expect_json_error(s.run(s.alice, "--json", "frobnicate"), EXIT_USAGE, "usage")
    s.expect_rc(s.run(s.alice, "send"), EXIT_USAGE, "send without arguments")
    s.expect_rc(s.run(s.alice, "send", "--priority", "urgent", "bob", "hi"), EXIT_USAGE, "a bad --priority")


@check("bug 36 (4eff4f5a20): `claudemesh daemon` alone prints usage, exits 0 and starts nothing")
def daemon_alone(s):
    run = s.run(s.alice, "daemon")
    s.expect_rc(run, 0)
    s.need("up" in run.out and "down" in run.out and "status" in run.out, f"no usage: {run.describe()}")
    s.need(not os.path.exists(os.path.join(s.alice, "daemon", "daemon.lock")), "`daemon` alone created a daemon lock")


# ---- memberships

@check("mesh create: a new mesh, joined as owner with a fresh key in <home>/meshes/<slug> (0600, home 0700)", setup=True)
def mesh_create(s):
    run = s.run(s.alice, "mesh", "create", "Team Ops", "--name", "alice", "--broker", f"http://127.0.0.1:{s.broker.port}")
    s.expect_rc(run, 0)
    s.need("team-ops" in run.out and "created mesh" in run.out, f"unexpected output: {run.describe()}")
    doc = s.run(s.alice, "--json", "whoami").json
    s.need(doc.get("ok") is True and doc.get("schema_version") == "1.0", f"whoami --json: {doc}")
    s.need(len(doc["meshes"]) == 1, f"whoami lists {doc['meshes']}")
    mesh = doc["meshes"][0]
    s.slug, s.mesh_id, s.alice_key = mesh["slug"], mesh["mesh_id"], mesh["member_pubkey"]
    s.need(s.slug == "team-ops" and mesh["role"] == "owner" and mesh["display_name"] == "alice", f"mesh entry {mesh}")
    s.need(is_hex64(s.alice_key), f"member_pubkey {s.alice_key!r}")
    s.need(mesh["broker"] == s.broker.ws_url, f"broker {mesh['broker']!r}, expected {s.broker.ws_url}")
    s.need(mode_of(s.alice) == 0o700, f"home mode {oct(mode_of(s.alice))}")
    s.need(mode_of(os.path.join(s.alice, "config.json")) == 0o600, "config.json is not 0600")
    s.need(mode_of(os.path.join(s.alice, "meshes", s.slug, "identity.json")) == 0o600, "identity.json is not 0600")


@check("mesh create --json prints only JSON; a taken --slug is refused before the broker is asked (exit 4)")
def mesh_create_json(s):
    home = os.path.join(s.tmp, "carol")
    run = s.run(home, "--json", "mesh", "create", "Side Project", "--broker", f"http://127.0.0.1:{s.broker.port}")
    s.expect_rc(run, 0)
    doc = run.json
    s.need(doc.get("ok") is True and doc.get("slug") == "side-project" and is_hex64(doc.get("member_pubkey")), f"{doc}")
    again = s.run(home, "mesh", "create", "Other", "--slug", "side-project", "--broker",
                  f"http://127.0.0.1:{s.broker.port}")
    s.expect_rc(again, EXIT_CONFLICT)
    s.expect_error_line(again, "side-project")
    bad = s.run(home, "--json", "mesh", "create", "X", "--broker", "ftp://nowhere")
    s.expect_json_error(bad, EXIT_USAGE)


@check("invite --json gives {ok,url,invite_id,expires_at}; the text form prints just the URL", setup=True)
def invite(s):
    doc = s.run(s.alice, "invite", "--json", "--uses", "1", "--ttl", "1h").json
    s.need(doc.get("ok") is True and "/v1/invites/" in doc.get("url", "") and doc.get("invite_id"), f"{doc}")
    s.need(isinstance(doc.get("expires_at"), int) and doc["expires_at"] > time.time() + 3000, f"expires_at {doc}")
    run = s.run(s.alice, "invite", "--uses", "2")
    s.expect_rc(run, 0)
    s.need(run.out.strip().startswith("http://") and len(run.out.strip().splitlines()) == 1, run.describe())
    s.invite_url = run.out.strip()
    s.expect_rc(s.run(s.alice, "invite", "--ttl", "soon"), EXIT_USAGE, "a bad --ttl")
    s.expect_rc(s.run(s.alice, "invite", "--mesh", "nope"), EXIT_NOT_FOUND, "an unknown --mesh")


@check("join: bob joins with the invite under a fresh key; whoami shows it (text and --json)", setup=True)
def join(s):
    run = s.run(s.bob, "join", s.invite_url, "--name", "bob")
    s.expect_rc(run, 0)
    s.need("joined mesh" in run.out and s.slug in run.out, run.describe())
    doc = s.run(s.bob, "whoami", "--json").json
    mesh = doc["meshes"][0]
    s.bob_key = mesh["member_pubkey"]
    s.need(mesh["mesh_id"] == s.mesh_id and mesh["role"] == "member" and is_hex64(s.bob_key), f"{doc}")
    s.need(s.bob_key != s.alice_key, "bob got alice's key")
    text = s.run(s.bob, "whoami")
    s.expect_rc(text, 0)
    for needle in (s.slug, s.bob_key, "bob", s.mesh_id):
        s.need(needle in text.out, f"whoami lacks {needle!r}: {text.describe()}")
    # Joining the same mesh again is a conflict; a bad URL is a usage error.
    again = s.run(s.bob, "join", s.invite_url, "--name", "bob2")
    s.expect_rc(again, EXIT_CONFLICT)
    s.expect_error_line(again)
    s.expect_rc(s.run(s.bob, "join", "http://127.0.0.1:1/not-an-invite"), EXIT_USAGE, "a malformed invite URL")


@check("whoami with no mesh joined: exit 0 with a hint; --json lists none")
def whoami_empty(s):
    home = os.path.join(s.tmp, "nobody")
    run = s.run(home, "whoami")
    s.expect_rc(run, 0)
    s.need("claudemesh join" in run.out, run.describe())
    doc = s.run(home, "--json", "whoami").json
    s.need(doc["meshes"] == [] and doc["session"] is None and doc["schema_version"] == "1.0", f"{doc}")


# ---- the direct path

async def _cold_send_and_receive(s):
    conn, bob = await s.connect_member(s.bob, "bob")
    try:
        cases = [("by name", "bob"), ("by hex prefix", s.bob_key[:12]), ("by full key", s.bob_key)]
        for what, target in cases:
            text = f"hello {what} {ulid()}"
            run = await s.arun(s.alice, "--no-daemon", "send", target, *text.split(" "))
            s.expect_rc(run, 0, what)
            s.need(f"sent to {target} (" in run.out and "via direct)" in run.out, f"{what}: {run.describe()}")
            push = await conn.expect(is_message_push(), 15, f"the push of the send {what}")
            s.need(push.get("senderMemberPubkey") == s.alice_key, f"{what}: sender {push.get('senderMemberPubkey')}")
            body = mc.open_dm(bob, push["senderPubkey"], push["nonce"], push["ciphertext"]).decode()
            s.need(body == text, f"{what}: bob decrypted {body!r}, expected {text!r}")
            await conn.send({"type": "client_ack", "clientMessageId": push.get("client_message_id"),
                             "brokerMessageId": push.get("messageId")})
        # --json: only JSON, with the fields scripts read
        run = await s.arun(s.alice, "send", "--no-daemon", "--json", s.bob_key, "json", "form")
        s.expect_rc(run, 0)
        doc = run.json
        s.need(doc.get("ok") is True and doc.get("via") == "direct" and doc.get("status") == "done"
               and doc.get("duplicate") is False and doc.get("target") == s.bob_key and doc.get("client_message_id"),
               f"send --json: {doc}")
        await conn.expect(is_message_push(), 15, "the push of the --json send")
        return doc["client_message_id"]
    finally:
        await conn.close()


@check("send --no-daemon alice → bob by name, hex prefix and full key; bob (an independent peer) decrypts each")
def cold_send(s):
    s.cold_cmid = asyncio.run(_cold_send_and_receive(s))


@check("msg-status --no-daemon finds a direct send: done, with the broker's id")
def cold_msg_status(s):
    cmid = getattr(s, "cold_cmid", None)
    if cmid is None:
        raise Skip("the direct send did not run")
    doc = s.run(s.alice, "--no-daemon", "--json", "msg-status", cmid).json
    item = doc.get("item", {})
    s.need(doc.get("ok") is True and item.get("status") == "done" and item.get("broker_message_id"), f"{doc}")
    s.need(item.get("client_message_id") == cmid and item.get("mesh") == s.slug, f"{doc}")
    text = s.run(s.alice, "--no-daemon", "message", "status", cmid)
    s.expect_rc(text, 0)
    s.need("done" in text.out and cmid in text.out, text.describe())
    missing = s.run(s.alice, "--no-daemon", "msg-status", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    s.expect_rc(missing, EXIT_NOT_FOUND)


@check("bug 39 (50b2ae97c2): sending to your own member key is refused ('that is you'), exit 2")
def self_send(s):
    run = s.run(s.alice, "--no-daemon", "send", s.alice_key, "hello me")
    s.expect_rc(run, EXIT_USAGE)
    s.expect_error_line(run, "that is you")
    s.expect_json_error(s.run(s.alice, "--json", "send", s.alice_key, "hello me"), EXIT_USAGE, "invalid_target")


@check("send to an unknown target exits 3; a malformed target exits 2")
def unknown_target(s):
    run = s.run(s.alice, "--no-daemon", "send", "nobody-by-this-name", "hi")
    s.expect_rc(run, EXIT_NOT_FOUND)
    s.expect_error_line(run, "nobody-by-this-name")
    s.expect_json_error(s.run(s.alice, "--no-daemon", "--json", "send", "nobody", "hi"), EXIT_NOT_FOUND,
                        "unknown_target")
    s.expect_rc(s.run(s.alice, "--no-daemon", "send", "@bad//group", "hi"), EXIT_USAGE, "a malformed group")
    s.expect_rc(s.run(s.alice, "--no-daemon", "send", "--mesh", "nope", "bob", "hi"), EXIT_NOT_FOUND, "--mesh nope")


@check("bug 18 (1.32.0): boolean flags never swallow the next argument (send --json bob hi; --priority now bob hi)")
def flags_do_not_swallow(s):
    async def go():
        conn, _ = await s.connect_member(s.bob, "bob")
        try:
            run = await s.arun(s.alice, "send", "--json", "bob", "hi", "there")
            s.expect_rc(run, 0, "send --json bob hi there")
            doc = run.json
            s.need(doc.get("target") == "bob", f"--json swallowed the target: {doc}")
            run = await s.arun(s.alice, "send", "--priority", "now", "bob", "hi")
            s.expect_rc(run, 0, "send --priority now bob hi")
            run = await s.arun(s.alice, "send", "--no-daemon", "bob", "--strict", "hi")
            s.expect_rc(run, 0, "send --no-daemon bob --strict hi (--no-daemon beats --strict)")
            for _ in range(3):
                push = await conn.expect(is_message_push(), 15, "a push")
                await conn.send({"type": "client_ack", "clientMessageId": push.get("client_message_id"),
                                 "brokerMessageId": push.get("messageId")})
        finally:
            await conn.close()
    asyncio.run(go())


@check("peer list --no-daemon marks self: alice's other session is '(your other session)', bob is not")
def cold_peer_list(s):
    async def go():
        alice_conn, _ = await s.connect_member(s.alice, "alice-worker", session=True)
        bob_conn, _ = await s.connect_member(s.bob, "bob")
        try:
            run = await s.arun(s.alice, "--no-daemon", "--json", "peer", "list")
            s.expect_rc(run, 0)
            doc = run.json
            s.need(doc.get("ok") is True and doc.get("via") == "direct", f"{doc}")
            rows = {p["display_name"]: p for p in doc["peers"]}
            s.need("alice-worker" in rows and "bob" in rows, f"peers: {sorted(rows)}")
            s.need(rows["alice-worker"]["is_self"] is True and rows["alice-worker"]["kind"] == "session", f"{rows}")
            s.need(rows["bob"]["is_self"] is False and rows["bob"]["kind"] == "daemon", f"{rows}")
            s.need(all(p["mesh"] == s.slug for p in doc["peers"]), f"mesh fields: {doc['peers']}")
            s.need(doc["peers"][0]["display_name"] == "alice-worker", "own rows are not listed first")
            s.need(not any(p.get("channel") == "claudemesh-cli" for p in doc["peers"]),
                   "the CLI's own short connections are listed")
            text = await s.arun(s.alice, "--no-daemon", "peers")
            s.expect_rc(text, 0)
            s.need("alice-worker (your other session)" in text.out, f"no self mark: {text.describe()}")
            s.need("role: (none)  groups: (none)" in text.out, f"no role/groups footer: {text.describe()}")
            s.need(s.bob_key[:16] in text.out, f"no 16-hex key: {text.describe()}")
            missing = await s.arun(s.alice, "--no-daemon", "peer", "list", "--mesh", "nope")
            s.expect_rc(missing, EXIT_NOT_FOUND)
        finally:
            await alice_conn.close()
            await bob_conn.close()
    asyncio.run(go())


@check("status set / summary set --no-daemon: accepted by the broker; a bad status is a usage error")
def cold_profile(s):
    run = s.run(s.alice, "--no-daemon", "--json", "status", "set", "working")
    s.expect_rc(run, 0)
    s.need(run.json.get("meshes") == [s.slug], run.describe())
    run = s.run(s.alice, "--no-daemon", "summary", "set", "reviewing", "PR", "42")
    s.expect_rc(run, 0)
    s.expect_rc(s.run(s.alice, "status", "set", "sleepy"), EXIT_USAGE)


# ---- without a daemon

@check("bug 13a (1.34.0): inbox without a daemon exits 5 with 'the daemon is not running' (never a cold WS)")
def inbox_without_daemon(s):
    run = s.run(s.alice, "inbox")
    s.expect_rc(run, EXIT_DAEMON)
    s.expect_error_line(run, "the daemon is not running: claudemesh daemon up")
    s.expect_json_error(s.run(s.alice, "--json", "inbox", "--unread"), EXIT_DAEMON, "daemon_unavailable")
    s.expect_rc(s.run(s.alice, "inbox", "show", "x"), EXIT_DAEMON)
    s.expect_rc(s.run(s.alice, "--no-daemon", "inbox"), EXIT_DAEMON)


@check("bug 32 (81f0e4f7ac): --strict without a daemon refuses the direct path (exit 5); CLAUDEMESH_STRICT_DAEMON=1 too; --no-daemon wins")
def strict_without_daemon(s):
    run = s.run(s.alice, "--strict", "send", "bob", "hi")
    s.expect_rc(run, EXIT_DAEMON)
    s.expect_error_line(run, "--strict")
    s.expect_rc(s.run(s.alice, "peer", "list", env={"CLAUDEMESH_STRICT_DAEMON": "1"}), EXIT_DAEMON, "env strict")
    s.expect_rc(s.run(s.alice, "--json", "peer", "list", env={"CLAUDEMESH_STRICT_DAEMON": "1",
                                                              "CLAUDEMESH_NO_DAEMON": "1"}), 0, "env no-daemon beats env strict")


@check("daemon status / down / logs / outbox without a daemon: 5, 0 (not_running), 3, 5")
def daemon_verbs_without_daemon(s):
    run = s.run(s.alice, "daemon", "status")
    s.expect_rc(run, EXIT_DAEMON)
    s.expect_error_line(run, "not running")
    doc = s.expect_json_error(s.run(s.alice, "--json", "daemon", "status"), EXIT_DAEMON)
    s.need(doc.get("running") is False, f"{doc}")
    down = s.run(s.alice, "--json", "daemon", "down")
    s.expect_rc(down, 0)
    s.need(down.json.get("stopped") is False and down.json.get("reason") == "not_running", down.describe())
    s.expect_rc(s.run(s.alice, "daemon", "logs"), EXIT_NOT_FOUND)
    s.expect_rc(s.run(s.alice, "daemon", "outbox", "list"), EXIT_DAEMON)


@check("daemon install-service: a systemd user unit that runs the exact daemon binary in the foreground, "
       "refused under CI without --allow-ci; uninstall-service removes it", needs_daemon=True)
def install_service(s):
    unit = os.path.join(s.user_home, ".config", "systemd", "user", "claudemesh-daemon.service")
    no_ci = {k: None for k in ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "JENKINS_URL")}
    dry = s.run(s.alice, "--json", "daemon", "install-service", "--dry-run", env=no_ci)
    s.expect_rc(dry, 0)
    text = dry.json.get("contents", "")
    daemon = os.path.realpath(s.daemon_bin)
    for line in ("Type=simple", "Restart=on-failure", f"ExecStart={daemon} --home {s.alice} --daemon-dir "):
        s.need(line in text, f"the unit lacks {line!r}:\n{text}")
    s.need("--mesh" not in text, f"the unit names a mesh (one daemon serves every mesh):\n{text}")
    s.need(not os.path.exists(unit), "--dry-run wrote the unit")
    refused = s.run(s.alice, "daemon", "install-service", env={**no_ci, "CI": "true"})
    s.expect_rc(refused, 1, "install-service under CI")
    s.expect_error_line(refused, "--allow-ci")
    s.need(not os.path.exists(unit), "install-service under CI wrote the unit")
    done = s.run(s.alice, "--json", "daemon", "install-service", env=no_ci)
    s.expect_rc(done, 0)
    s.need(done.json.get("path") == unit and os.path.isfile(unit), done.describe())
    s.need(mode_of(unit) == 0o644, f"unit mode {oct(mode_of(unit))}")
    with open(unit, encoding="utf-8") as f:
        s.need(f.read() == text, "the installed unit differs from the --dry-run one")
    gone = s.run(s.alice, "--json", "daemon", "uninstall-service", env=no_ci)
    s.expect_rc(gone, 0)
    s.need(gone.json.get("removed") is True and not os.path.exists(unit), gone.describe())
    again = s.run(s.alice, "--json", "daemon", "uninstall-service", env=no_ci)
    s.expect_rc(again, 0)
    s.need(again.json.get("removed") is False, again.describe())


# ---- the daemon route, against a stand-in daemon

def _peer_row(name, pubkey, member, role="session", online=True, **extra):
    row = {"mesh": "team-ops", "pubkey": pubkey, "member_pubkey": member, "member_id": "m", "display_name": name,
           "peer_role": role, "status": "idle", "summary": "", "groups": [], "session_id": "s-" + name, "cwd": "",
           "hostname": "", "pid": 1, "channel": "", "online": online}
    row.update(extra)
    return row


@check("bug 4 (1.34.15): peer list --mesh forwards the slug to the daemon")
def peer_list_forwards_slug(s):
    fake_dir = os.path.join(s.tmp, "fake-1")
    peers = [_peer_row("bob", s.bob_key, s.bob_key, role="control-plane")]
    with FakeDaemon(fake_dir, {("GET", "/v1/peers"): (200, {"peers": peers})}) as fake:
        run = s.run(s.alice, "--daemon-dir", fake_dir, "--json", "peer", "list", "--mesh", s.slug)
        s.expect_rc(run, 0)
        asked = fake.requests_to("GET", "/v1/peers")
        s.need(len(asked) == 1 and f"mesh={s.slug}" in asked[0][1], f"the daemon was asked {[r[1] for r in asked]}")
        s.need(run.json.get("via") == "daemon", run.describe())
        # without --mesh: every joined mesh, each asked by its slug
        fake.requests.clear()
        s.expect_rc(s.run(s.alice, "--daemon-dir", fake_dir, "peer", "list"), 0)
        asked = fake.requests_to("GET", "/v1/peers")
        s.need(asked and all("mesh=" in r[1] for r in asked), f"the daemon was asked {[r[1] for r in asked]}")


@check("bug 18 (1.32.0): peer list via the daemon marks '(this session)', hides daemon rows of members with a session (--all shows them)")
def peer_list_this_session(s):
    fake_dir = os.path.join(s.tmp, "fake-2")
    token_file = os.path.join(s.tmp, "session-token")
    token = "ab" * 32
    with open(token_file, "w") as f:
        f.write(token + "\n")
    session_key = Identity().pubkey
    sibling_key = Identity().pubkey
    peers = [_peer_row("bob", s.bob_key, s.bob_key, role="control-plane"),
             _peer_row("alice-daemon", s.alice_key, s.alice_key, role="control-plane"),
             _peer_row("alice-2", sibling_key, s.alice_key),
             _peer_row("alice-1", session_key, s.alice_key, summary="writing tests", groups=[{"name": "ops", "role": "lead"}])]
    me = {"session_id": "sess-1", "mesh": s.slug, "display_name": "alice-1", "pid": 1, "cwd": "/", "role": "",
          "groups": [], "session_pubkey": session_key, "registered_at": 1}
    routes = {("GET", "/v1/peers"): (200, {"peers": peers}), ("GET", "/v1/sessions/me"): (200, me)}
    with FakeDaemon(fake_dir, routes) as fake:
        env = {"CLAUDEMESH_IPC_TOKEN_FILE": token_file}
        doc = s.run(s.alice, "--daemon-dir", fake_dir, "--json", "peers", env=env).json
        names = [p["display_name"] for p in doc["peers"]]
        s.need(names == ["alice-1", "alice-2", "bob"], f"order/hiding: {names}")
        s.need(doc["peers"][0]["is_this_session"] is True and doc["peers"][1]["is_this_session"] is False, f"{doc}")
        s.need(doc["meshes"][0]["hidden_control_plane"] == 1, f"{doc['meshes']}")
        text = s.run(s.alice, "--daemon-dir", fake_dir, "peers", env=env)
        s.need("alice-1 (this session)" in text.out and "alice-2 (your other session)" in text.out, text.describe())
        s.need("1 control-plane hidden — use --all" in text.out, text.describe())
        s.need("[@ops:lead]" in text.out and "writing tests" in text.out and "sid:s-alice-" in text.out, text.describe())
        everything = s.run(s.alice, "--daemon-dir", fake_dir, "--json", "peers", "--all", env=env).json
        s.need(len(everything["peers"]) == 4, f"--all: {[p['display_name'] for p in everything['peers']]}")
        auth = [r[2].get("Authorization") for r in fake.requests if r[1].startswith("/v1/sessions/me")]
        s.need(auth and all(a == f"ClaudeMesh-Session {token}" for a in auth), f"session header: {auth}")
        who = s.run(s.alice, "--daemon-dir", fake_dir, "--json", "whoami", env=env).json
        s.need(isinstance(who.get("session"), dict) and who["session"].get("session_pubkey") == session_key, f"{who}")


@check("send via the daemon posts {to, message, mesh, priority, reply_to_id, client_message_id}")
def send_via_fake_daemon(s):
    fake_dir = os.path.join(s.tmp, "fake-3")
    answer = {"client_message_id": "cm-1", "id": "row-1", "status": "pending", "duplicate": False, "mesh": s.slug,
              "target_spec": s.bob_key, "recipients": 1}
    with FakeDaemon(fake_dir, {("POST", "/v1/send"): (202, answer)}) as fake:
        run = s.run(s.alice, "--daemon-dir", fake_dir, "send", "--mesh", s.slug, "--priority", "low",
                    "--reply-to", "m-0", "--client-id", "cm-1", "bob", "hello", "daemon")
        s.expect_rc(run, 0)
        s.need("sent to bob (cm-1, via daemon)" in run.out, run.describe())
        posted = fake.requests_to("POST", "/v1/send")
        body = json.loads(posted[0][3])
        s.need(body == {"to": "bob", "message": "hello daemon", "mesh": s.slug, "priority": "low", "reply_to_id": "m-0",
                        "client_message_id": "cm-1"}, f"posted {body}")
        doc = s.run(s.alice, "--daemon-dir", fake_dir, "--json", "send", "bob", "x").json
        s.need(doc == {"ok": True, "client_message_id": "cm-1", "status": "pending", "duplicate": False, "target": "bob",
                       "target_spec": s.bob_key, "mesh": s.slug, "via": "daemon"}, f"{doc}")


@check("§5.6: a daemon's error answer is final — exit 4 on an idempotency conflict and no direct send")
def daemon_error_is_final(s):
    fake_dir = os.path.join(s.tmp, "fake-4")
    conflict = {"error": {"code": "idempotency_conflict", "message": "client_message_id cm-9 was already used"},
                "conflict": "outbox_done_fingerprint_mismatch", "daemon_fingerprint_prefix": "0123456789abcdef"}
    unknown = {"error": {"code": "unknown_mesh", "message": "unknown mesh"}, "meshes": [s.slug]}
    routes = {("POST", "/v1/send"): (409, conflict)}
    with FakeDaemon(fake_dir, routes) as fake:
        run = s.run(s.alice, "--daemon-dir", fake_dir, "send", "--client-id", "cm-9", "bob", "again")
        s.expect_rc(run, EXIT_CONFLICT)
        s.expect_error_line(run, "already used")
        s.expect_json_error(s.run(s.alice, "--daemon-dir", fake_dir, "--json", "send", "bob", "again"), EXIT_CONFLICT,
                            "idempotency_conflict")
        fake.routes[("POST", "/v1/send")] = (404, unknown)
        s.expect_rc(s.run(s.alice, "--daemon-dir", fake_dir, "send", "bob", "x"), EXIT_NOT_FOUND, "404 unknown_mesh")
        fake.routes[("POST", "/v1/send")] = (503, {"error": {"code": "unavailable", "message": "shutting down"}})
        s.expect_rc(s.run(s.alice, "--daemon-dir", fake_dir, "send", "bob", "x"), EXIT_FAILURE, "503")
    # nothing went out directly: the direct outbox has no cm-9
    s.expect_rc(s.run(s.alice, "--no-daemon", "msg-status", "cm-9"), EXIT_NOT_FOUND, "cm-9 in the direct outbox")


@check("bug 12 (1.34.7): inbox verbs via the daemon: list (flags forwarded), show, seen, delete (404 → 3), flush guard, search")
def inbox_via_fake_daemon(s):
    fake_dir = os.path.join(s.tmp, "fake-5")
    msg = {"id": "in-1", "client_message_id": "c1", "broker_message_id": "b1", "mesh": s.slug, "topic": "",
           "target_spec": s.alice_key, "sender_pubkey": s.bob_key, "sender_member_pubkey": s.bob_key,
           "sender_name": "bob", "body": "the build is green", "meta": None, "priority": "next", "reply_to_id": "",
           "created_at": 1700000000000, "received_at": 1700000000100, "seen_at": None,
           "recipient_pubkey": s.alice_key, "recipient_kind": "member"}
    routes = {("GET", "/v1/inbox"): (200, {"messages": [msg]}), ("GET", "/v1/inbox/in-1"): (200, {"message": msg}),
              ("POST", "/v1/inbox/seen"): (200, {"marked": 1}), ("POST", "/v1/inbox/flush"): (200, {"removed": 3}),
              ("GET", "/v1/inbox/search"): (200, {"messages": [msg]})}
    with FakeDaemon(fake_dir, routes) as fake:
        d = ["--daemon-dir", fake_dir]
        run = s.run(s.alice, *d, "inbox", "--unread", "--mark-seen", "--limit", "7", "--mesh", s.slug)
        s.expect_rc(run, 0)
        s.need("the build is green" in run.out and "bob" in run.out, run.describe())
        target = fake.requests_to("GET", "/v1/inbox")[0][1]
        for part in ("limit=7", "unread_only=true", "mark_seen=true", f"mesh={s.slug}"):
            s.need(part in target, f"inbox asked {target}, lacking {part}")
        doc = s.run(s.alice, *d, "--json", "inbox").json
        s.need(doc.get("ok") is True and doc["messages"][0]["id"] == "in-1", f"{doc}")
        show = s.run(s.alice, *d, "inbox", "show", "in-1")
        s.need(show.rc == 0 and "the build is green" in show.out and s.bob_key in show.out, show.describe())
        seen = s.run(s.alice, *d, "--json", "inbox", "seen", "in-1", "in-2")
        s.need(seen.json.get("marked") == 1, seen.describe())
        s.need(json.loads(fake.requests_to("POST", "/v1/inbox/seen")[0][3]) == {"ids": ["in-1", "in-2"]}, "seen body")
        gone = s.run(s.alice, *d, "inbox", "delete", "nope")
        s.expect_rc(gone, EXIT_NOT_FOUND)
        s.expect_error_line(gone)
        s.expect_rc(s.run(s.alice, *d, "inbox", "flush"), EXIT_USAGE, "flush without --mesh or --all")
        flushed = s.run(s.alice, *d, "--json", "inbox", "flush", "--all", "--before", "1700000000000")
        s.need(flushed.json.get("removed") == 3, flushed.describe())
        s.need(json.loads(fake.requests_to("POST", "/v1/inbox/flush")[0][3]) == {"all": True, "before": 1700000000000},
               "flush body")
        found = s.run(s.alice, *d, "inbox", "search", "build", "green")
        s.need(found.rc == 0 and "the build is green" in found.out, found.describe())
        s.need("q=build%20green" in fake.requests_to("GET", "/v1/inbox/search")[0][1], "search query encoding")


@check("msg-status and daemon outbox list/requeue via the daemon")
def outbox_via_fake_daemon(s):
    fake_dir = os.path.join(s.tmp, "fake-6")
    row = {"id": "row-1", "client_message_id": "cm-1", "mesh": s.slug, "target_spec": s.bob_key, "priority": "next",
           "status": "done", "attempts": 1, "enqueued_at": 1700000000000, "next_attempt_at": 0, "delivered_at": 1,
           "broker_message_id": "bm-1", "last_error": "", "aborted_at": None, "aborted_by": "", "superseded_by": "",
           "payload_bytes": 5}
    delivery = {"recipients": [{"pubkey": s.bob_key, "delivered": True, "delivered_at": "2024-01-01T00:00:00Z",
                                "attempts": 1}]}
    routes = {("GET", "/v1/outbox/cm-1"): (200, {"item": row, "delivery": delivery}),
              ("GET", "/v1/outbox"): (200, {"items": [row]}),
              ("POST", "/v1/outbox/requeue"): (200, {"aborted_row_id": "row-1", "new_row_id": "row-2",
                                                     "new_client_message_id": "cm-2"})}
    with FakeDaemon(fake_dir, routes) as fake:
        d = ["--daemon-dir", fake_dir]
        run = s.run(s.alice, *d, "msg-status", "cm-1")
        s.expect_rc(run, 0)
        s.need("done" in run.out and "bm-1" in run.out and "delivered" in run.out and s.bob_key[:16] in run.out,
               run.describe())
        s.expect_rc(s.run(s.alice, *d, "msg-status", "cm-404"), EXIT_NOT_FOUND)
        listing = s.run(s.alice, *d, "daemon", "outbox", "list", "--status", "failed", "--limit", "5")
        s.need(listing.rc == 0 and "row-1" in listing.out and "cid=cm-1" in listing.out, listing.describe())
        target = fake.requests_to("GET", "/v1/outbox")[0][1]
        s.need("status=dead" in target and "limit=5" in target, f"outbox list asked {target}")
        requeued = s.run(s.alice, *d, "--json", "daemon", "outbox", "requeue", "row-1", "--new-client-id", "cm-2")
        s.need(requeued.json.get("new_client_message_id") == "cm-2", requeued.describe())
        s.need(json.loads(fake.requests_to("POST", "/v1/outbox/requeue")[0][3]) ==
               {"id": "row-1", "new_client_message_id": "cm-2"}, "requeue body")


# ---- the real daemon

def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise Fail(f"{what} within {timeout} s")


@check("bug 7 (1.34.12): daemon up detaches, daemon up / status / up again / down (real claudemeshd)", needs_daemon=True)
def real_daemon_lifecycle(s):
    s.daemon_homes.add(s.alice)
    up = s.run(s.alice, "daemon", "up", "--no-tcp")
    s.expect_rc(up, 0)
    s.need("daemon started (pid" in up.out and "daemon.log" in up.out, up.describe())
    status = s.run(s.alice, "--json", "daemon", "status")
    s.expect_rc(status, 0)
    doc = status.json
    s.need(doc.get("running") is True and isinstance(doc.get("pid"), int), f"{doc}")
    slugs = [m.get("slug") for m in doc.get("health", {}).get("meshes", [])]
    s.need(s.slug in slugs, f"health meshes {slugs}")
    again = s.run(s.alice, "daemon", "up", "--no-tcp")
    s.expect_rc(again, 0)
    s.need("already running" in again.out, again.describe())
    down = s.run(s.alice, "--json", "daemon", "down")
    s.expect_rc(down, 0)
    s.need(down.json.get("stopped") is True and down.json.get("pid") == doc["pid"], down.describe())
    s.expect_rc(s.run(s.alice, "daemon", "status"), EXIT_DAEMON, "status after down")
    logs = s.run(s.alice, "daemon", "logs", "-n", "5")
    s.expect_rc(logs, 0)


@check("send via the daemon; bob's daemon keeps it and `inbox` shows it; msg-status and outbox list (real claudemeshd)",
       needs_daemon=True)
def real_daemon_messaging(s):
    s.daemon_homes.update({s.alice, s.bob})
    for home in (s.alice, s.bob):
        s.expect_rc(s.run(home, "daemon", "up", "--no-tcp"), 0, f"daemon up in {home}")
    try:
        # the daemons reach the broker in the background: wait until each mesh is open
        for home in (s.alice, s.bob):
            def opened(home=home):
                doc = s.run(home, "--json", "daemon", "status").json
                return all(m.get("broker") == "open" for m in doc.get("health", {}).get("meshes", []))
            _wait_for(opened, 15, f"{home}: the daemon's broker connection did not open")
        text = f"via the daemon {ulid()}"
        sent = s.run(s.alice, "--json", "send", s.bob_key, *text.split(" "))
        s.expect_rc(sent, 0)
        doc = sent.json
        s.need(doc.get("via") == "daemon" and doc.get("client_message_id"), f"{doc}")
        cmid = doc["client_message_id"]

        def arrived():
            inbox = s.run(s.bob, "--json", "inbox").json
            return [m for m in inbox.get("messages", []) if m.get("body") == text]
        got = _wait_for(arrived, 15, "the message did not reach bob's inbox")
        s.need(got[0].get("sender_member_pubkey") == s.alice_key or got[0].get("sender_pubkey") == s.alice_key,
               f"sender: {got[0]}")
        human = s.run(s.bob, "inbox")
        s.need(text in human.out, human.describe())

        def done():
            status = s.run(s.alice, "--json", "msg-status", cmid)
            return status.rc == 0 and status.json.get("item", {}).get("status") == "done" and status.json
        status = _wait_for(done, 15, "msg-status never said done")
        s.need(status.get("via") == "daemon", f"{status}")
        listing = s.run(s.alice, "--json", "daemon", "outbox", "list").json
        s.need(any(item.get("client_message_id") == cmid for item in listing.get("items", [])), f"{listing}")
        # peer list via the daemon: alice's own daemon row is marked, bob's is listed
        peers = s.run(s.alice, "--json", "peer", "list", "--all").json
        s.need(peers.get("via") == "daemon", f"{peers}")
        keys = {p["member_pubkey"]: p for p in peers["peers"]}
        s.need(s.bob_key in keys and keys[s.alice_key]["is_self"] is True, f"{peers}")
    finally:
        for home in (s.alice, s.bob):
            s.run(home, "daemon", "down")


@check("§1.16: a daemon-first verb starts the daemon when none runs (auto-start), once", needs_daemon=True)
def real_daemon_autostart(s):
    s.daemon_homes.add(s.bob)
    env = {"CLAUDEMESH_NO_AUTOSTART": None}
    try:
        # peer list needs the broker link: the daemon gives a link still making its first connection a moment
        # (it once answered 503 "connecting" to the very verb that started it, about one run in five)
        run = s.run(s.bob, "--json", "peer", "list", env=env)
        s.expect_rc(run, 0)
        s.need(run.json.get("via") == "daemon", f"auto-start did not happen: {run.describe()}")
        status = s.run(s.bob, "--json", "daemon", "status")
        s.expect_rc(status, 0, "the auto-started daemon answers")
    finally:
        s.run(s.bob, "daemon", "down")


# ---- regressions of §7 that need the real daemon

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CI_VARS = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "JENKINS_URL")


def _project_version():
    """x.y.z of `project(claudemesh VERSION x.y.z ...)` in the top-level CMakeLists.txt."""
    with open(os.path.join(REPO_ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        found = re.search(r"project\(\s*claudemesh\s+VERSION\s+(\d+\.\d+\.\d+)\b", f.read())
    if not found:
        raise Fail("no `project(claudemesh VERSION x.y.z)` in CMakeLists.txt")
    return found.group(1)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def _daemon_get(daemon_dir, path):
    """GET `path` on `<daemon_dir>/daemon.sock` (no CLI in between): (status, JSON body)."""
    conn = _UnixHTTPConnection(os.path.join(daemon_dir, "daemon.sock"))
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read().decode() or "null")
    finally:
        conn.close()


def _lock_holder(daemon_dir):
    """The pid in `<daemon_dir>/daemon.lock` while someone holds the lock (what `running_daemon_pid` does), else None."""
    try:
        fd = os.open(os.path.join(daemon_dir, "daemon.lock"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # nobody holds it
        except OSError:
            pass
        text = os.read(fd, 64).decode(errors="replace").strip()
    finally:
        os.close(fd)
    return int(text) if text.isdigit() and int(text) > 0 else None


def _alive(pid):
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _is_claudemeshd(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"claudemeshd" in f.read()
    except OSError:
        return False


def _kill_daemon_in(daemon_dir):
    """Stops the claudemeshd holding `<daemon_dir>`'s lock (SIGTERM, then SIGKILL after 5 s), if any."""
    pid = _lock_holder(daemon_dir)
    if pid is None or not _is_claudemeshd(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _write_failing_daemon(path, counter):
    """A stand-in claudemeshd that records each start in `counter`, says why on stderr and exits 1 at once."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"#!/bin/sh\necho started >> '{counter}'\necho 'fake claudemeshd: refusing to start' >&2\nexit 1\n")
    os.chmod(path, 0o755)


def _count_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


@check("bug 21 (1.31.3): claudemesh --version, claudemeshd --version and the running daemon's /v1/version all equal "
       "the project VERSION in CMakeLists.txt", needs_daemon=True)
def versions_agree(s):
    version = _project_version()
    cli = s.run(s.alice, "--version")
    s.expect_rc(cli, 0, "claudemesh --version")
    s.need(cli.out.strip() == f"claudemesh {version}", f"CMakeLists.txt says {version}: {cli.describe()}")
    daemon = subprocess.run([s.daemon_bin, "--version"], env=s.env(s.alice), stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=CLI_TIMEOUT)
    out = daemon.stdout.decode(errors="replace").strip()
    s.need(daemon.returncode == 0 and out == f"claudemeshd {version}",
           f"CMakeLists.txt says {version}: `claudemeshd --version` -> exit {daemon.returncode}, {out!r}")
    s.daemon_homes.add(s.alice)
    daemon_dir = os.path.join(s.alice, "daemon")
    try:
        s.expect_rc(s.run(s.alice, "daemon", "up", "--no-tcp"), 0, "daemon up")
        status, doc = _daemon_get(daemon_dir, "/v1/version")
        s.need(status == 200 and isinstance(doc, dict), f"/v1/version -> {status} {doc}")
        s.need(doc.get("daemon_version") == version, f"CMakeLists.txt says {version}, /v1/version says {doc}")
        s.need(doc.get("pid") == _lock_holder(daemon_dir), f"/v1/version pid {doc.get('pid')} is not the lock holder")
        with open(os.path.join(daemon_dir, "daemon.log"), encoding="utf-8", errors="replace") as f:
            started = [json.loads(line) for line in f if '"daemon_started"' in line]
        s.need(started and started[-1].get("version") == version, f"daemon_started in daemon.log: {started[-1:]}")
    finally:
        s.run(s.alice, "daemon", "down")


@check("bug 31 (2b6cf2c14b): after a SIGKILLed daemon left a stale daemon.sock, the next daemon-first verb starts "
       "a fresh daemon and succeeds", needs_daemon=True)
def stale_socket_autostart(s):
    s.daemon_homes.add(s.bob)
    daemon_dir = os.path.join(s.bob, "daemon")
    sock = os.path.join(daemon_dir, "daemon.sock")
    auto = {"CLAUDEMESH_NO_AUTOSTART": None}
    try:
        s.expect_rc(s.run(s.bob, "daemon", "up", "--no-tcp"), 0, "daemon up")
        old = s.run(s.bob, "--json", "daemon", "status").json.get("pid")
        s.need(isinstance(old, int) and old == _lock_holder(daemon_dir), f"daemon pid {old}")
        os.kill(old, signal.SIGKILL)
        # its threads exit after the main one: the lock is free once the last of them is gone
        _wait_for(lambda: not _alive(old) and _lock_holder(daemon_dir) is None, 10,
                  f"the SIGKILLed daemon (pid {old}) still holds its lock")
        s.need(os.path.exists(sock), "SIGKILL left no daemon.sock behind; the check needs a stale one")
        s.expect_rc(s.run(s.bob, "daemon", "status"), EXIT_DAEMON, "status against the stale socket")
        # `inbox` needs the daemon and not its broker link
        run = s.run(s.bob, "--json", "inbox", env=auto)
        s.expect_rc(run, 0, "a daemon-first verb after the crash")
        s.need(run.json.get("ok") is True and isinstance(run.json.get("messages"), list), run.describe())
        new = _lock_holder(daemon_dir)
        s.need(new is not None and new != old and _alive(new), f"lock holder after the restart: {new} (old {old})")
        status = s.run(s.bob, "--json", "daemon", "status")
        s.expect_rc(status, 0, "the fresh daemon answers")
        s.need(status.json.get("pid") == new, f"status pid {status.json.get('pid')}, lock holder {new}")
        s.need(not os.path.exists(os.path.join(daemon_dir, "spawn-failed")), "a successful start left spawn-failed")
        _wait_for(lambda: all(m.get("broker") == "open" for m in
                              s.run(s.bob, "--json", "daemon", "status").json.get("health", {}).get("meshes", [])),
                  15, "the fresh daemon's broker connection did not open")
        text = s.run(s.bob, "--strict", "peer", "list", env=auto)
        s.expect_rc(text, 0, "a second verb (a broker one)")
        s.need("started the daemon" not in text.err, f"a second daemon was started: {text.describe()}")
        s.need(_lock_holder(daemon_dir) == new, "the daemon changed on the second verb")
    finally:
        s.run(s.bob, "daemon", "down")


@check("bug 31 (2b6cf2c14b): a failed auto-start is remembered for 30 s (spawn-failed), so the next verb does not "
       "retry, and both errors point at the log", needs_daemon=True)
def failed_autostart_remembered(s):
    daemon_dir = os.path.join(s.tmp, "daemon-31b")  # its own daemon dir: the 30 s marker touches no other check
    failing = os.path.join(s.tmp, "failing-claudemeshd")
    counter = os.path.join(s.tmp, "failing-claudemeshd.runs")
    _write_failing_daemon(failing, counter)
    env = {"CLAUDEMESH_NO_AUTOSTART": None, "CLAUDEMESH_DAEMON_BIN": failing}
    d = ["--daemon-dir", daemon_dir]
    log = os.path.join(daemon_dir, "daemon.log")
    marker = os.path.join(daemon_dir, "spawn-failed")
    try:
        first = s.run(s.alice, *d, "--json", "inbox", env=env)
        message = s.expect_json_error(first, EXIT_DAEMON, "daemon_unavailable")["error"]["message"]
        s.need(_count_lines(counter) == 1, f"the failing daemon ran {_count_lines(counter)} times on the first verb")
        s.need(log in message and "refusing to start" in message,
               f"the first failure names neither the log nor its last line: {message!r}")
        s.need(os.path.isfile(marker), "no spawn-failed marker after a failed start")
        second = s.run(s.alice, *d, "inbox", env=env)
        s.expect_rc(second, EXIT_DAEMON, "the second verb within 30 s")
        s.expect_error_line(second, "less than 30 s ago")
        s.need(log in second.err, f"the second failure does not name the log: {second.describe()}")
        strict = s.run(s.alice, *d, "--strict", "peer", "list", env=env)
        s.expect_rc(strict, EXIT_DAEMON, "--strict peer list within 30 s")
        s.need(_count_lines(counter) == 1, f"the failing daemon ran {_count_lines(counter)} times within 30 s (expected once)")
        # the memory lasts 30 s, no more: age the marker and the next verb tries again
        past = time.time() - 31
        os.utime(marker, (past, past))
        third = s.run(s.alice, *d, "inbox", env=env)
        s.expect_rc(third, EXIT_DAEMON, "a verb after the marker expired")
        s.need(_count_lines(counter) == 2, f"the failing daemon ran {_count_lines(counter)} times (expected a retry after 30 s)")
    finally:
        _kill_daemon_in(daemon_dir)


@check("bug 26 (1.30.1): install-service while a `daemon up` daemon runs: exit 0, unit written, --json names "
       "running_pid and a start command that stops it first (claudemesh ... daemon down && ...)", needs_daemon=True)
def install_service_while_running(s):
    s.daemon_homes.add(s.alice)
    unit = os.path.join(s.user_home, ".config", "systemd", "user", "claudemesh-daemon.service")
    no_ci = {k: None for k in CI_VARS}
    s.need(not os.path.exists(unit), f"{unit} exists before the check")
    try:
        s.expect_rc(s.run(s.alice, "daemon", "up", "--no-tcp"), 0, "daemon up")
        pid = s.run(s.alice, "--json", "daemon", "status").json.get("pid")
        s.need(isinstance(pid, int) and _alive(pid), f"daemon pid {pid}")
        plain = s.run(s.alice, "--json", "daemon", "install-service", "--dry-run", env=no_ci).json.get("start")
        s.need(isinstance(plain, str) and plain, f"--dry-run gave no start command: {plain!r}")
        done = s.run(s.alice, "--json", "daemon", "install-service", env=no_ci)
        s.expect_rc(done, 0, "install-service with a daemon running")
        doc = done.json
        s.need(doc.get("installed") is True and doc.get("path") == unit and os.path.isfile(unit), f"{doc}")
        s.need(doc.get("running_pid") == pid, f"running_pid {doc.get('running_pid')!r}, the daemon is pid {pid}")
        start = doc.get("start", "")
        s.need(re.match(r"claudemesh .*\bdaemon down && ", start) is not None,
               f"start does not stop the running daemon first: {start!r}")
        stop, rest = start.split(" && ", 1)
        s.need(rest == plain, f"after the stop: {rest!r}, the unit's start command is {plain!r}")
        # the stop part really stops this daemon, whatever CLAUDEMESH_HOME the shell has
        words = shlex.split(stop)
        s.need(words[0] == "claudemesh", f"{words}")
        down = s.run(os.path.join(s.tmp, "nobody"), *words[1:])
        s.expect_rc(down, 0, f"`{stop}`")
        s.need("daemon stopped" in down.out and not _alive(pid), f"`{stop}` did not stop pid {pid}: {down.describe()}")
        text = s.run(s.alice, "daemon", "install-service", env=no_ci)
        s.expect_rc(text, 0, "install-service with no daemon running")
        s.need("daemon down &&" not in text.out and plain in text.out, f"no daemon runs now: {text.describe()}")
    finally:
        s.run(s.alice, "daemon", "uninstall-service", env=no_ci)
        s.run(s.alice, "daemon", "down")
    s.need(not os.path.exists(unit), "uninstall-service left the unit")


@check("bug 24b (1.31.0): with a systemd user unit present, a daemon-first verb never spawns a daemon: it waits "
       "for the service and fails naming systemctl", needs_daemon=True)
def unit_present_no_spawn(s):
    unit = os.path.join(s.user_home, ".config", "systemd", "user", "claudemesh-daemon.service")
    s.need(not os.path.exists(unit), f"{unit} exists before the check")
    daemon_dir = os.path.join(s.tmp, "daemon-24b")
    d = ["--daemon-dir", daemon_dir]
    os.makedirs(os.path.dirname(unit), exist_ok=True)
    try:
        with open(unit, "w", encoding="utf-8") as f:
            f.write("[Unit]\nDescription=dummy claudemesh daemon unit (cli_test.py)\n")
        began = time.monotonic()
        run = s.run(s.alice, *d, "--json", "inbox", env={"CLAUDEMESH_NO_AUTOSTART": None}, timeout=30)
        took = time.monotonic() - began
        message = s.expect_json_error(run, EXIT_DAEMON, "daemon_unavailable")["error"]["message"]
        s.need("systemctl" in message, f"the failure does not mention systemctl: {message!r}")
        s.need(took >= 7, f"gave up after {took:.1f} s instead of waiting ~8 s for the service")
        s.need(_lock_holder(daemon_dir) is None, f"a daemon (pid {_lock_holder(daemon_dir)}) was spawned")
        s.need(not os.path.exists(os.path.join(daemon_dir, "daemon.log")), "a spawn was attempted (daemon.log exists)")
        s.expect_rc(s.run(s.alice, *d, "daemon", "status"), EXIT_DAEMON, "daemon status afterwards")
    finally:
        try:
            os.unlink(unit)
        except FileNotFoundError:
            pass
        _kill_daemon_in(daemon_dir)


# ================================================================ runner

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--daemon", default=None, help="claudemeshd; its checks are skipped when it does not exist")
    parser.add_argument("--only", default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="claudemesh-cli-test-")
    suite = Suite(args, tmp)
    failures = 0
    try:
        suite.broker.start()
        for name, fn, needs_daemon, setup in CHECKS:
            if args.only and args.only not in name and not setup:
                continue
            if needs_daemon and not suite.has_daemon:
                print(f"skip {name} (no claudemeshd at {args.daemon})", flush=True)
                continue
            try:
                fn(suite)
                print(f"ok   {name}", flush=True)
            except Skip as exc:
                print(f"skip {name} ({exc})", flush=True)
            except Exception as exc:  # noqa: BLE001 - every failure is reported, the run goes on
                failures += 1
                detail = str(exc) if isinstance(exc, Fail) else traceback.format_exc()
                print(f"FAIL {name} ({detail})", flush=True)
    finally:
        suite.stop_daemons()
        suite.broker.stop()
        if args.keep or failures:
            print(f"files kept in {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{failures} failed" if failures else "all passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
