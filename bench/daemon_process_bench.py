#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The daemon's numbers as a user sees them: real processes, one per command, on 127.0.0.1 only.

In a temporary directory (removed at the end, also on failure or Ctrl-C) it sets up a mesh exactly as
scripts/local_mesh.sh does -- a broker (`--listen 127.0.0.1:0`, SQLite data dir), "alice" creates the mesh,
invites, "bob" joins, each runs `daemon up --no-tcp`; the broker's per-member send rate limit is raised, as
bench/broker_load.cpp does, since its default (burst 10, 60/min) would throttle (a) -- and measures:
  (a) `claudemesh send` spawn to exit with the daemon up, N times in a row: p50/p99/max; then how long until all
      N are in bob's inbox
  (b) `claudemesh --json peer list` spawn to exit, 50 times (and `claudemesh --version`, 50 times, for scale:
      the cost of starting the binary at all)
  (c) alice's daemon at idle: VmRSS and VmHWM from /proc/PID/status after --idle-seconds
  (d) recovery after `kill -9` of bob's daemon: `bob daemon up --no-tcp` again, then the time until bob's daemon
      reports its broker connection open, and until alice's peer list shows bob's new daemon online
and ends with a summary against the targets (send p50 <= 10 ms, idle RSS <= 32 MiB, recovery <= 5 s).

Exit status: 0 when everything ran (targets met or not: this is a measurement), 1 when something failed,
130 on Ctrl-C. Only processes this script started are stopped, by PID; daemons with `claudemesh daemon down`.

Usage: bench/daemon_process_bench.py BUILD_DIR [--sends N] [--idle-seconds S]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

CLI_TIMEOUT = 30.0  # seconds, any single CLI call
SETUP_TIMEOUT = 15.0  # broker listening, daemons connected
RECOVERY_TIMEOUT = 30.0  # bound on each recovery wait (the target is 5 s; we wait longer to report the figure)

TARGET_SEND_P50_MS = 10.0
TARGET_IDLE_RSS_MIB = 32.0
TARGET_RECOVERY_S = 5.0


class BenchError(Exception):
    pass


class Terminated(BaseException):
    """SIGTERM/SIGHUP: unwind through the cleanup like Ctrl-C does."""


def percentile(samples, p):
    """The same definition as bench/daemon_bench.cpp: sorted[floor(p * (n - 1))]."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[int(p * (len(ordered) - 1))]


def tail(path, lines=40):
    try:
        with open(path, "r", errors="replace") as f:
            content = f.read().splitlines()
    except OSError as e:
        return f"  (cannot read {path}: {e})"
    return "\n".join("  " + line for line in content[-lines:]) or "  (empty)"


def pid_alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def kib_field(fields, key):
    value = fields.get(key, "")
    if not value.endswith("kB"):
        raise BenchError(f"/proc status has no {key} in kB: {value!r}")
    return int(value.split()[0])


class Bench:
    def __init__(self, build_dir, sends, idle_seconds):
        self.build_dir = os.path.abspath(build_dir)
        self.sends = sends
        self.idle_seconds = idle_seconds
        self.cli = os.path.join(self.build_dir, "frontends/cli/claudemesh")
        self.daemon = os.path.join(self.build_dir, "frontends/daemon/claudemeshd")
        self.broker_bin = os.path.join(self.build_dir, "frontends/broker/claudemesh-broker")
        for binary in (self.cli, self.daemon, self.broker_bin):
            if not os.access(binary, os.X_OK):
                raise BenchError(f"{binary} is missing or not executable; build first")
        self.env = dict(os.environ)
        self.env["CLAUDEMESH_DAEMON_BIN"] = self.daemon  # `daemon up` starts this build's daemon
        self.env.pop("CLAUDEMESH_HOME", None)
        self.env.pop("CLAUDEMESH_DAEMON_DIR", None)
        self.work = None
        self.broker = None  # subprocess.Popen
        self.broker_log = None
        self.daemon_pids = set()  # every daemon pid `daemon up` reported
        self.results = {}
        self.stopping = threading.Event()  # set by the cleanup: polling threads stop

    # --- helpers -------------------------------------------------------------------------------------------

    def home(self, who):
        return os.path.join(self.work, who)

    def daemon_log(self, who):
        return os.path.join(self.home(who), "daemon", "daemon.log")

    def argv(self, who, *args):
        return [self.cli, "--home", self.home(who), *args]

    def run(self, who, *args, check=True, timeout=CLI_TIMEOUT):
        argv = self.argv(who, *args)
        try:
            done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{who}: `{' '.join(args)}` did not finish within {timeout:.0f} s")
        if check and done.returncode != 0:
            raise BenchError(f"{who}: `{' '.join(args)}` exited with {done.returncode}\n"
                             f"  stdout: {done.stdout.strip()}\n  stderr: {done.stderr.strip()}")
        return done

    def run_json(self, who, *args, check=True):
        done = self.run(who, "--json", *args, check=check)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError:
            if not check:
                return None
            raise BenchError(f"{who}: `--json {' '.join(args)}` printed no JSON: {done.stdout!r} {done.stderr!r}")

    def timed(self, argv, label):
        """Spawn to exit of one process, in ms; fails on a non-zero exit."""
        start = time.perf_counter()
        try:
            done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{label}: did not finish within {CLI_TIMEOUT:.0f} s")
        elapsed = (time.perf_counter() - start) * 1000.0
        if done.returncode != 0:
            raise BenchError(f"{label}: exited with {done.returncode}\n  stdout: {done.stdout.strip()}\n"
                             f"  stderr: {done.stderr.strip()}")
        return elapsed, done

    def wait_until(self, what, timeout, check, interval=0.02):
        """Polls check() until it returns a truthy value; returns (value, seconds). Bounded by timeout."""
        start = time.perf_counter()
        while True:
            if self.stopping.is_set():
                raise BenchError(f"stopped while waiting for {what}")
            value = check()
            if value:
                return value, time.perf_counter() - start
            if time.perf_counter() - start > timeout:
                raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def broker_open(self, who):
        """The daemon's status JSON when every mesh reports its broker connection open, else None."""
        status = self.run_json(who, "daemon", "status", check=False)
        if not status or not status.get("running"):
            return None
        meshes = status.get("health", {}).get("meshes", [])
        if meshes and all(m.get("broker") == "open" for m in meshes):
            return status
        return None

    def daemon_up(self, who):
        started = self.run_json(who, "daemon", "up", "--no-tcp")
        pid = started.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            raise BenchError(f"{who}: `daemon up` printed no pid: {started}")
        if started.get("already_running"):
            raise BenchError(f"{who}: `daemon up` found a daemon already running (pid {pid})")
        self.daemon_pids.add(pid)
        return pid

    def daemon_pid(self, who):
        """From `--json daemon status` (its "pid"), else the pid written in <home>/daemon/daemon.lock."""
        status = self.run_json(who, "daemon", "status", check=False)
        if status and isinstance(status.get("pid"), int) and status["pid"] > 0:
            return status["pid"]
        try:
            with open(os.path.join(self.home(who), "daemon", "daemon.lock")) as f:
                return int(f.read().strip())
        except (OSError, ValueError) as e:
            raise BenchError(f"{who}: no daemon pid in `daemon status` nor in daemon.lock ({e})")

    def inbox_bodies(self, who):
        data = self.run_json(who, "inbox", "--limit", str(max(1000, self.sends + 10)))
        return [m.get("body", "") for m in data.get("messages", [])]

    # --- setup and teardown -----------------------------------------------------------------------------------

    def setup(self):
        self.work = tempfile.mkdtemp(prefix="claudemesh-process-bench-")
        print(f"== setup in {self.work} (as scripts/local_mesh.sh)")
        self.broker_log = os.path.join(self.work, "broker.log")
        with open(self.broker_log, "wb") as log:
            # Its own session, so a Ctrl-C in the terminal leaves stopping it to the cleanup below.
            # The one change from local_mesh.sh: the per-member send rate limit (default burst 10, 60/min) raised
            # out of the way, as bench/broker_load.cpp does; with it, (a)'s delivery time would measure the limiter.
            self.broker = subprocess.Popen(
                [self.broker_bin, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(self.work, "broker"),
                 "--rate-burst", "1000000000", "--rate-per-minute", "1000000000"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                start_new_session=True)

        def listening_port():
            if self.broker.poll() is not None:
                raise BenchError(f"the broker exited with {self.broker.returncode} before listening")
            with open(self.broker_log, "r", errors="replace") as f:
                for line in f:
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(event, dict) and event.get("event") == "listening" and event.get("port"):
                        return int(event["port"])
            return None

        port, _ = self.wait_until("the broker's \"listening\" log line", SETUP_TIMEOUT, listening_port)
        print(f"broker listening on 127.0.0.1:{port} (pid {self.broker.pid})")

        self.run("alice", "mesh", "create", "demo", "--name", "alice", "--broker", f"http://127.0.0.1:{port}")
        url = self.run_json("alice", "invite").get("url")
        if not url:
            raise BenchError("alice: `--json invite` printed no url")
        self.run("bob", "join", url, "--name", "bob")
        self.alice_pid = self.daemon_up("alice")
        self.bob_pid = self.daemon_up("bob")
        for who in ("alice", "bob"):
            _, seconds = self.wait_until(f"{who}'s daemon to report its broker open", SETUP_TIMEOUT,
                                         lambda: self.broker_open(who))
            print(f"{who}: daemon up, broker open after {seconds * 1000:.0f} ms")
        print(f"daemons: alice pid {self.alice_pid}, bob pid {self.bob_pid}")

    def cleanup(self):
        self.stopping.set()
        if self.work is None:
            return
        for who in ("alice", "bob"):
            if os.path.isdir(self.home(who)):
                try:
                    subprocess.run(self.argv(who, "daemon", "down"), env=self.env, capture_output=True,
                                   timeout=CLI_TIMEOUT)
                except (subprocess.TimeoutExpired, OSError):
                    pass
        # `daemon down` returns once the daemon let go of its lock; the process may take a moment longer to exit.
        # One `daemon down` could not stop within 5 s: kill it by pid, and only if it is one of ours (its command
        # line names our temporary directory; a pid can be reused).
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(pid_alive(pid) for pid in self.daemon_pids):
            time.sleep(0.01)
        for pid in sorted(self.daemon_pids):
            if not pid_alive(pid):
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    ours = self.work.encode() in f.read()
                if ours:
                    print(f"cleanup: daemon pid {pid} still running after `daemon down`; SIGKILL", file=sys.stderr)
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            try:
                self.broker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
                self.broker.wait(timeout=10)
        shutil.rmtree(self.work, ignore_errors=True)
        self.work = None

    def print_logs(self):
        if self.work is None:
            return
        if self.broker_log:
            print(f"\n-- broker log ({self.broker_log}), last lines:\n{tail(self.broker_log)}", file=sys.stderr)
        for who in ("alice", "bob"):
            path = self.daemon_log(who)
            if os.path.exists(path):
                print(f"\n-- {who}'s daemon log ({path}), last lines:\n{tail(path)}", file=sys.stderr)

    # --- measurements -------------------------------------------------------------------------------------------

    def bench_send(self):
        n = self.sends
        print(f"\n== (a) `claudemesh send` spawn to exit, daemon up: {n} sends alice -> bob, one after another")
        times = []
        not_via_daemon = 0
        for i in range(n):
            ms, done = self.timed(self.argv("alice", "send", "bob", f"bench message {i}"), f"send #{i}")
            times.append(ms)
            if "via daemon" not in done.stdout:
                not_via_daemon += 1
        p50, p99, worst = percentile(times, 0.5), percentile(times, 0.99), max(times)
        print(f"send: n={n}  p50 {p50:.2f} ms  p99 {p99:.2f} ms  max {worst:.2f} ms  "
              f"(min {min(times):.2f}, mean {sum(times) / n:.2f}); total {sum(times) / 1000:.2f} s")
        if not_via_daemon:
            print(f"  !! {not_via_daemon} of {n} sends did not say \"via daemon\" (the CLI's cold path?)")
        self.results["send"] = {"p50": p50, "p99": p99, "max": worst, "not_via_daemon": not_via_daemon}

        wanted = {f"bench message {i}" for i in range(n)}
        polls = [0]

        def all_in_inbox():
            polls[0] += 1
            return wanted.issubset(self.inbox_bodies("bob"))

        _, seconds = self.wait_until(f"all {n} messages in bob's inbox", max(60.0, n * 0.2), all_in_inbox)
        # Each poll is itself a CLI process (`bob --json inbox`), so the figure is at the resolution of one poll.
        print(f"all {n} in bob's inbox {seconds * 1000:.0f} ms after the last send exited "
              f"({polls[0]} inbox poll(s), each a `claudemesh --json inbox` process)")
        self.results["delivered_after_s"] = seconds

    def bench_peer_list(self, runs=50):
        print(f"\n== (b) `claudemesh --json peer list` spawn to exit, {runs} times (and `--version` for scale)")
        peer = [self.timed(self.argv("alice", "--json", "peer", "list"), "peer list")[0] for _ in range(runs)]
        version = [self.timed([self.cli, "--version"], "--version")[0] for _ in range(runs)]
        for label, times in (("peer list", peer), ("--version", version)):
            print(f"{label}: n={runs}  p50 {percentile(times, 0.5):.2f} ms  p99 {percentile(times, 0.99):.2f} ms  "
                  f"max {max(times):.2f} ms")
        self.results["peer_list"] = {"p50": percentile(peer, 0.5), "p99": percentile(peer, 0.99)}
        self.results["version"] = {"p50": percentile(version, 0.5), "p99": percentile(version, 0.99)}

    def bench_idle_rss(self):
        print(f"\n== (c) alice's daemon at idle: RSS after {self.idle_seconds:g} s")
        pid = self.daemon_pid("alice")
        if pid != self.alice_pid:
            raise BenchError(f"alice's daemon pid is {pid}, `daemon up` said {self.alice_pid}")
        time.sleep(self.idle_seconds)
        if not pid_alive(pid):
            raise BenchError(f"alice's daemon (pid {pid}) is gone")
        fields = proc_status(pid)
        rss, hwm = kib_field(fields, "VmRSS") / 1024.0, kib_field(fields, "VmHWM") / 1024.0
        print(f"pid {pid}: VmRSS {rss:.1f} MiB, VmHWM {hwm:.1f} MiB (peak since start, includes the send burst), "
              f"threads {fields.get('Threads', '?')}")
        self.results["rss"] = {"rss_mib": rss, "hwm_mib": hwm}

    def bench_recovery(self):
        print("\n== (d) recovery after kill -9 of bob's daemon")
        old = self.daemon_pid("bob")
        os.kill(old, signal.SIGKILL)
        # The kill is asynchronous: wait (briefly, bounded) until the process is really gone, so that `daemon up`
        # does not find its lock still held and report "already running".
        _, dead_after = self.wait_until(f"bob's daemon (pid {old}) to die", 5.0, lambda: not pid_alive(old),
                                        interval=0.001)
        start = time.perf_counter()
        new = self.daemon_up("bob")
        up_s = time.perf_counter() - start
        print(f"killed pid {old} (gone after {dead_after * 1000:.1f} ms); `bob daemon up` took {up_s * 1000:.0f} ms, "
              f"new pid {new}")

        # "Visible again" criterion, from the JSON of `--json peer list`: every peer entry has "pid" (the daemon's
        # process id, reported in its hello), "online" and "display_name". After the kill -9 the broker keeps bob's
        # old presence listed, with online=false, during its grace period (seen here for > 10 s), and the new
        # presence appears as a second "bob" entry. So: an entry with display_name "bob", online true, and pid
        # equal to the NEW daemon's pid. (session_id also changes, but the pid ties the entry to this restart.)
        def bob_visible():
            data = self.run_json("alice", "peer", "list", check=False)
            if not data:
                return None
            return [p for p in data.get("peers", [])
                    if p.get("display_name") == "bob" and p.get("online") is True and p.get("pid") == new]

        # Poll both conditions at once, each on its own thread, so neither waits behind the other's CLI call.
        # A condition's time is taken when the CLI call that saw it exited, so it is late by at most one call.
        results = {}

        def poll(key, what, check):
            try:
                self.wait_until(what, RECOVERY_TIMEOUT, check, interval=0.005)
                results[key] = time.perf_counter() - start
            except BaseException as e:  # reported by the main thread
                results[key] = e

        def status_open():
            status = self.broker_open("bob")
            return status if status and status.get("pid") == new else None

        threads = [threading.Thread(target=poll, args=("status", "bob's daemon status: broker open", status_open),
                                    daemon=True),
                   threading.Thread(target=poll, args=("peer", "alice's peer list: bob online with the new pid",
                                                       bob_visible), daemon=True)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)
        for key in ("status", "peer"):
            if isinstance(results.get(key), BaseException):
                raise BenchError(str(results[key]))
        print(f"(i)  bob's `daemon status` reports the broker open: {results['status'] * 1000:.0f} ms after the restart"
              f" began")
        print(f"(ii) alice's `peer list` shows bob online with pid {new}: {results['peer'] * 1000:.0f} ms after the "
              f"restart began")
        stale = [p for p in (self.run_json("alice", "peer", "list").get("peers", []))
                 if p.get("display_name") == "bob" and p.get("pid") == old]
        if stale:
            print(f"     (the old presence, pid {old}, is still listed: online={stale[0].get('online')})")
        self.results["recovery"] = {"up_s": up_s, "status_s": results["status"], "peer_s": results["peer"]}

    def summary(self):
        r = self.results
        print("\n== summary")
        rows = []
        send_p50 = r["send"]["p50"]
        rss = r["rss"]["rss_mib"]
        recovery = max(r["recovery"]["status_s"], r["recovery"]["peer_s"])
        rows.append(("send spawn->exit p50", f"{send_p50:.2f} ms", f"<= {TARGET_SEND_P50_MS:g} ms",
                     send_p50 <= TARGET_SEND_P50_MS))
        rows.append(("send spawn->exit p99 / max", f"{r['send']['p99']:.2f} / {r['send']['max']:.2f} ms", "-", None))
        rows.append(("all sends in bob's inbox", f"{r['delivered_after_s'] * 1000:.0f} ms after last", "-", None))
        rows.append(("peer list spawn->exit p50/p99", f"{r['peer_list']['p50']:.2f} / {r['peer_list']['p99']:.2f} ms",
                     "-", None))
        rows.append(("--version spawn->exit p50/p99", f"{r['version']['p50']:.2f} / {r['version']['p99']:.2f} ms",
                     "-", None))
        rows.append(("daemon idle VmRSS", f"{rss:.1f} MiB", f"<= {TARGET_IDLE_RSS_MIB:g} MiB",
                     rss <= TARGET_IDLE_RSS_MIB))
        rows.append(("daemon VmHWM", f"{r['rss']['hwm_mib']:.1f} MiB", "-", None))
        rows.append(("recovery: status open", f"{r['recovery']['status_s']:.2f} s", "-", None))
        rows.append(("recovery: bob visible to alice", f"{r['recovery']['peer_s']:.2f} s", "-", None))
        rows.append(("recovery after kill -9 (max)", f"{recovery:.2f} s", f"<= {TARGET_RECOVERY_S:g} s",
                     recovery <= TARGET_RECOVERY_S))
        print(f"{'measurement':<32} {'value':>24} {'target':>12}  verdict")
        for name, value, target, met in rows:
            verdict = "" if met is None else ("met" if met else "MISSED")
            print(f"{name:<32} {value:>24} {target:>12}  {verdict}")
        build_type = cmake_build_type(self.build_dir)
        if build_type and build_type.lower() not in ("release", "relwithdebinfo", "minsizerel"):
            print(f"note: {self.build_dir} is a {build_type} build; compare against the targets with a Release build")


def cmake_build_type(build_dir):
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", help="a build tree root (frontends/{cli,daemon,broker}/... inside)")
    parser.add_argument("--sends", type=int, default=200, help="sends in (a) (default 200)")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle time before reading RSS (default 10)")
    args = parser.parse_args()
    if args.sends < 1:
        parser.error("--sends must be at least 1")
    if args.idle_seconds < 0:
        parser.error("--idle-seconds must not be negative")

    sys.stdout.reconfigure(line_buffering=True)  # keep stdout and stderr in order when piped

    def on_signal(signum, _frame):
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    try:
        bench = Bench(args.build_dir, args.sends, args.idle_seconds)
    except BenchError as e:
        print(f"daemon_process_bench: {e}", file=sys.stderr)
        return 1
    print(f"== claudemesh process benchmarks: {os.cpu_count()} cores, load average "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}, build {bench.build_dir} "
          f"({cmake_build_type(bench.build_dir) or 'build type unknown'})")
    status = 0
    try:
        bench.setup()
        bench.bench_send()
        bench.bench_peer_list()
        bench.bench_idle_rss()
        bench.bench_recovery()
        bench.summary()
    except BenchError as e:
        print(f"\ndaemon_process_bench: FAILED: {e}", file=sys.stderr)
        bench.print_logs()
        status = 1
    except KeyboardInterrupt:
        print("\ndaemon_process_bench: interrupted; cleaning up", file=sys.stderr)
        status = 130
    except Terminated as e:
        print(f"\ndaemon_process_bench: signal {e.args[0]}; cleaning up", file=sys.stderr)
        status = 128 + int(e.args[0])
    except Exception as e:  # an unexpected error is a failure too; show the logs before they are removed
        print(f"\ndaemon_process_bench: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        bench.print_logs()
        status = 1
    finally:
        # Ctrl-C again during the cleanup would leave processes behind: ignore it until the cleanup is done.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
