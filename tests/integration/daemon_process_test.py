#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""claudemeshd as real processes, with a real claudemesh-broker, on loopback:

* a DM daemon -> broker -> daemon, read back from the recipient's inbox over the IPC;
* kill -9 of the sender daemon between accept and the broker's ack (the broker is frozen with SIGSTOP so the
  ack cannot arrive): after a restart the message is sent again, the broker deduplicates it, and the
  recipient stores it exactly once;
* kill -9 of the broker during a burst of sends: after it restarts on the same port and data directory every
  accepted message reaches the recipient exactly once;
* kill -9 of a daemon: the time until it is back (IPC up, broker connection open, visible to its peer) is
  printed as a figure (the issue's target is <= 5 s), and bounded loosely so a slow sanitizer build passes;
* the daemon's exit codes: already running -> 1, no mesh joined -> 2, a cloned directory -> 4.

Meshes are created and joined with the real CLI (`claudemesh mesh create`, `invite`, `join`).
Run by CTest: daemon_process_test.py --cli <claudemesh> --daemon <claudemeshd> --broker <claudemesh-broker>.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import meshclient as mc  # noqa: E402

FAILURES = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (f"  ({detail})" if detail and not ok else ""), flush=True)
    if not ok:
        FAILURES.append(name)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def ipc(sock_path, method, target, body=None, timeout=10.0):
    """One request to a daemon's socket: (status, parsed JSON or text)."""
    conn = UnixHTTPConnection(sock_path, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, target, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read().decode()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw
    finally:
        conn.close()


def wait_for(condition, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (OSError, http.client.HTTPException):
            value = None
        if value:
            return value
        time.sleep(interval)
    return None


class Home:
    """One user: a CLAUDEMESH_HOME with its joined meshes and a daemon directory inside it."""

    def __init__(self, root, name, cli, daemon):
        self.name = name
        self.home = os.path.join(root, name)
        self.cli_binary = cli
        self.daemon_binary = daemon
        self.proc = None
        os.makedirs(self.home, exist_ok=True)

    @property
    def daemon_dir(self):
        return os.path.join(self.home, "daemon")

    @property
    def sock(self):
        return os.path.join(self.daemon_dir, "daemon.sock")

    def env(self):
        env = dict(os.environ)
        env["CLAUDEMESH_HOME"] = self.home
        env["CLAUDEMESH_NO_AUTOSTART"] = "1"
        env.pop("CLAUDEMESH_DAEMON_DIR", None)
        return env

    def cli(self, *args, timeout=30):
        result = subprocess.run([self.cli_binary, "--json", *args], capture_output=True, env=self.env(),
                                timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"claudemesh {' '.join(args)} failed ({result.returncode}): "
                               f"{result.stdout.decode()} {result.stderr.decode()}")
        return json.loads(result.stdout)

    def start_daemon(self, *extra, timeout=15):
        log = open(os.path.join(self.home, "daemon.out"), "ab")
        try:
            self.proc = subprocess.Popen([self.daemon_binary, "--home", self.home, "--no-tcp", *extra],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env())
        finally:
            log.close()
        up = wait_for(lambda: ipc(self.sock, "GET", "/v1/version")[0] == 200, timeout)
        if not up:
            raise RuntimeError(f"{self.name}'s daemon did not come up: {self.log_tail()}")
        return self

    def broker_open(self, timeout=15):
        def opened():
            status, health = ipc(self.sock, "GET", "/v1/health")
            return status == 200 and all(m["broker"] == "open" for m in health["meshes"])
        return wait_for(opened, timeout)

    def kill_daemon(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop_daemon(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill_daemon()
        return None

    def log_tail(self, n=10):
        try:
            with open(os.path.join(self.home, "daemon.out"), "rb") as f:
                return " | ".join(f.read().decode(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def inbox(self):
        status, body = ipc(self.sock, "GET", "/v1/inbox?limit=1000")
        return body["messages"] if status == 200 else []

    def send(self, to, message, **extra):
        return ipc(self.sock, "POST", "/v1/send", {"to": to, "message": message, **extra})


def setup(root, args, broker):
    alice = Home(root, "alice", args.cli, args.daemon)
    bob = Home(root, "bob", args.cli, args.daemon)
    created = alice.cli("mesh", "create", "demo", "--name", "alice", "--broker", f"http://127.0.0.1:{broker.port}")
    invite = alice.cli("invite")
    bob.cli("join", invite["url"], "--name", "bob")
    bob_key = bob.cli("whoami")["meshes"][0]["member_pubkey"]
    return alice, bob, bob_key, created


def run(args, root):
    broker = mc.BrokerProcess(args.broker, os.path.join(root, "broker"),
                              ["--rate-burst", "100000", "--rate-per-minute", "6000000", "--grace-ms", "500"]).start()
    port = broker.port
    alice, bob, bob_key, _ = setup(root, args, broker)
    try:
        alice.start_daemon()
        bob.start_daemon()
        check("both daemons connect to the broker", alice.broker_open() and bob.broker_open())

        # A DM through two real daemons.
        status, accepted = alice.send(bob_key, "hello from a process")
        check("the sender's daemon accepts a DM (202)", status == 202, accepted)
        got = wait_for(lambda: [m for m in bob.inbox() if m["body"] == "hello from a process"], 10)
        check("the recipient's daemon stores it, readable over its IPC", bool(got))

        # kill -9 of the sender between accept and the broker's ack.
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            status, accepted = alice.send(bob_key, "survives a crash", client_message_id="crash-1")
            check("accepted while the broker is frozen", status == 202, accepted)
            # the daemon hands it to the frozen broker and waits for the ack: the row is claimed (inflight)
            claimed = wait_for(lambda: (lambda r: r if r[0] == 200 and r[1]["item"]["status"] == "inflight" else None)(
                ipc(alice.sock, "GET", "/v1/outbox/crash-1")), 10)
            check("the drain claimed it and is waiting for the frozen broker's ack", bool(claimed), claimed)
            time.sleep(0.1)  # the frame is written to the socket right after the claim
            alice.kill_daemon()
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        alice.start_daemon()
        alice.broker_open()
        copies = wait_for(lambda: [m for m in bob.inbox() if m["client_message_id"] == "crash-1"], 15)
        time.sleep(0.5)  # a second copy, if there were one, would have arrived by now
        copies = [m for m in bob.inbox() if m["client_message_id"] == "crash-1"]
        check("kill -9 between accept and ack: the recipient stores the message exactly once",
              len(copies) == 1, f"{len(copies)} copies")
        row = wait_for(lambda: (lambda r: r if r[0] == 200 and r[1]["item"]["status"] == "done" else None)(
            ipc(alice.sock, "GET", "/v1/outbox/crash-1")), 10)
        check("... and the restarted sender's outbox marks it done", bool(row), row)
        check("... after sending it again (the first claim was recovered on restart)",
              bool(row) and row[1]["item"]["attempts"] >= 2, row)

        # kill -9 of the broker during a burst.
        total = 200
        for i in range(total):
            status, _ = alice.send(bob_key, f"burst {i}", client_message_id=f"burst-{i}")
            if status != 202:
                check(f"burst send {i} accepted", False, status)
                break
            if i == 60:
                broker.kill()
        broker.start(port=port)

        def all_arrived():
            ids = [m["client_message_id"] for m in bob.inbox() if m["client_message_id"].startswith("burst-")]
            return ids if len(set(ids)) == total else None
        arrived = wait_for(all_arrived, 60, interval=0.2)
        ids = [m["client_message_id"] for m in bob.inbox() if m["client_message_id"].startswith("burst-")]
        check(f"broker kill -9 during a burst: all {total} accepted messages arrive", arrived is not None,
              f"{len(set(ids))} arrived")
        check("... each exactly once", len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicates")

        # Recovery after kill -9 of a daemon, until its peer sees it again.
        bob.kill_daemon()
        started = time.monotonic()
        bob.start_daemon()
        ipc_up = time.monotonic() - started
        bob.broker_open()
        broker_up = time.monotonic() - started

        def bob_visible():
            status, body = ipc(alice.sock, "GET", "/v1/peers")
            return status == 200 and any(p["display_name"] == "bob" and p["online"] for p in body["peers"])
        visible = wait_for(bob_visible, 30)
        seen = time.monotonic() - started
        print(f"figure: daemon kill -9 -> restarted: IPC answering after {ipc_up * 1000:.0f} ms, broker open after "
              f"{broker_up * 1000:.0f} ms, visible to its peer after {seen * 1000:.0f} ms", flush=True)
        check("after kill -9 and a restart the daemon is visible to its peer again", bool(visible))

        # Exit codes.
        second = subprocess.run([args.daemon, "--home", alice.home, "--no-tcp"], capture_output=True,
                                env=alice.env(), timeout=20)
        check("a second daemon on the same directory exits 1 and says who runs",
              second.returncode == 1 and b"already running" in second.stderr, second.stderr.decode())
        empty = Home(root, "nobody", args.cli, args.daemon)
        lonely = subprocess.run([args.daemon, "--home", empty.home, "--no-tcp"], capture_output=True,
                                env=empty.env(), timeout=20)
        check("a daemon with no mesh joined exits 2 with the join hint",
              lonely.returncode == 2 and b"claudemesh join" in lonely.stderr, lonely.stderr.decode())
        check("SIGTERM stops a daemon with exit 0", bob.stop_daemon() == 0)
        fingerprint = os.path.join(bob.daemon_dir, "host_fingerprint.json")
        with open(fingerprint) as f:
            record = json.load(f)
        record["fingerprint"] = "0" * 64
        record["host_id"] = "linux:another-machine"
        with open(fingerprint, "w") as f:
            json.dump(record, f)
        cloned = subprocess.run([args.daemon, "--home", bob.home, "--no-tcp"], capture_output=True,
                                env=bob.env(), timeout=20)
        check("a directory from another machine is refused with exit 4 and the accept-host hint",
              cloned.returncode == 4 and b"accept-host" in cloned.stderr, cloned.stderr.decode())
    finally:
        alice.kill_daemon()
        bob.kill_daemon()
        broker.kill()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cli", required=True)
    parser.add_argument("--daemon", required=True)
    parser.add_argument("--broker", required=True)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="cm-dp-")  # short: Unix socket paths are limited to 108 bytes
    try:
        run(args, root)
    except Exception as error:  # noqa: BLE001 - report and fail
        check("the scenario ran to the end", False, repr(error))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} failed", flush=True)
        sys.exit(1)
    print("all passed", flush=True)


if __name__ == "__main__":
    main()
