#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The broker is killed with SIGKILL in the middle of a load of sends; after a restart on the same data
directory, every send it had acknowledged is delivered — none lost — and a retry of any send (acknowledged or
not) with its client_message_id is answered without creating a second copy.

Run by CTest: broker_crash_test.py --broker <claudemesh-broker>. Loopback only, temporary directories.
"""
import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import meshclient as mc  # noqa: E402

FAILURES = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (f"  ({detail})" if detail and not ok else ""))
    if not ok:
        FAILURES.append(name)


async def hello(broker, member, mesh, session_id):
    conn = await mc.Conn.open(broker.ws_url, label=member.name)
    ack = await conn.request(mc.member_hello(member.ident, mesh.id, member.id, session_id), types=("hello_ack",))
    if ack.get("type") != "hello_ack":
        raise RuntimeError(f"hello refused: {ack}")
    return conn


async def run(binary, workdir, total, kill_after):
    data = os.path.join(workdir, "data")
    flags = ["--rate-burst", "100000", "--rate-per-minute", "6000000", "--grace-ms", "500"]
    broker = mc.BrokerProcess(binary, data, flags).start()
    api = broker.api
    mesh = mc.create_mesh(api, name="crash", owner_name="sender")
    sender = mesh.owner
    receiver = mesh.add_member("receiver")

    # Stream sends; once `kill_after` acks are back, write one more burst and SIGKILL at once, so there are
    # sends the broker has read but not committed, and sends it never read.
    conn = await hello(broker, sender, mesh, "crash-sender")
    sends = {}
    for i in range(total):
        nonce, ciphertext = mc.seal_dm(sender.ident, receiver.pubkey, f"message {i}".encode())
        sends[f"c{i}"] = {"type": "send", "id": f"c{i}", "targetSpec": receiver.pubkey, "priority": "now",
                          "nonce": nonce, "ciphertext": ciphertext, "client_message_id": f"cmid-{i}",
                          "request_fingerprint": f"{i:064x}"}
    frames = list(sends.values())
    acked = {}
    sent = 0
    deadline = time.monotonic() + 30
    while len(acked) < kill_after and sent < total and time.monotonic() < deadline:
        if sent - len(acked) < 200:  # a window, so a slow (sanitizer) build still acks kill_after first
            for frame in frames[sent:sent + 20]:
                await conn.send(frame)
            sent = min(total, sent + 20)
        await asyncio.sleep(0.002)
        for frame in conn.take_all(mc.is_type("ack")):
            if frame.get("queued"):
                acked[frame["id"]] = frame["messageId"]
    for frame in frames[sent:sent + 500]:
        await conn.send(frame)
    sent = min(total, sent + 500)
    broker.kill()  # SIGKILL: no drain, no final commit
    await asyncio.sleep(0.1)
    for frame in conn.take_all(mc.is_type("ack")):  # acks that were already on their way
        if frame.get("queued"):
            acked[frame["id"]] = frame["messageId"]
    conn.abort()
    check(f"the broker acknowledged sends before it was killed ({len(acked)} of {sent} sent)",
          len(acked) >= kill_after, f"only {len(acked)}")
    check("SIGKILL landed while sends were still unacknowledged", len(acked) < sent, "all were acked")

    # Restart on the same directory; the receiver connects and takes everything.
    broker = mc.BrokerProcess(binary, data, flags).start()
    receiver_conn = await hello(broker, receiver, mesh, "crash-receiver")
    delivered = {}
    deadline = time.monotonic() + 30
    wanted = set(acked.values())
    while not wanted.issubset(delivered) and time.monotonic() < deadline:
        for push in receiver_conn.take_all(mc.is_message_push()):
            plain = mc.open_dm(receiver.ident, push["senderPubkey"], push["nonce"], push["ciphertext"])
            delivered[push["messageId"]] = plain
            await receiver_conn.send({"type": "client_ack", "brokerMessageId": push["messageId"],
                                      "clientMessageId": push.get("client_message_id")})
        await asyncio.sleep(0.01)
    lost = wanted - set(delivered)
    check("after kill -9 and restart, every acknowledged send is delivered", not lost,
          f"{len(lost)} lost of {len(wanted)}")
    check("each delivered copy decrypts to its message",
          all(delivered[acked[cid]] == f"message {cid[1:]}".encode() for cid in acked if acked[cid] in delivered))

    # The sender retries everything with the same ids: acknowledged ones come back as duplicates with their
    # original id; the rest are either duplicates (committed, ack lost in the crash) or new accepts.
    conn = await hello(broker, sender, mesh, "crash-sender")
    retried = {}
    for cid, frame in sends.items():
        reply = await conn.request(frame, types=("ack",), timeout=10)
        retried[cid] = reply
    same = all(retried[cid].get("duplicate") and retried[cid].get("messageId") == mid for cid, mid in acked.items())
    check("a retry of an acknowledged send is a duplicate with the original messageId", same)
    check("every retry is accepted", all(r.get("queued") for r in retried.values()),
          [r for r in retried.values() if not r.get("queued")][:2])
    # Everything the retries accepted reaches the receiver exactly once per messageId.
    all_ids = {r["messageId"] for r in retried.values()}
    deadline = time.monotonic() + 30
    while not all_ids.issubset(delivered) and time.monotonic() < deadline:
        for push in receiver_conn.take_all(mc.is_message_push()):
            delivered[push["messageId"]] = True
            await receiver_conn.send({"type": "client_ack", "brokerMessageId": push["messageId"]})
        await asyncio.sleep(0.01)
    check("after the retries, every one of the sends is delivered", all_ids.issubset(delivered),
          f"{len(all_ids - set(delivered))} missing")
    check("one message per client_message_id: no second copy was created", len(all_ids) == total,
          f"{len(all_ids)} ids for {total} sends")
    await conn.close()
    await receiver_conn.close()
    rc = broker.stop()
    check("SIGTERM after the test: clean exit 0", rc == 0, rc)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--total", type=int, default=3000)
    parser.add_argument("--kill-after", type=int, default=300)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="claudemesh-crash-")
    try:
        asyncio.run(asyncio.wait_for(run(args.broker, workdir, args.total, args.kill_after), 150))
    except Exception as exc:  # noqa: BLE001 - any failure is a test failure, with its story
        check("the crash test ran to the end", False, repr(exc))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{len(FAILURES)} failure(s)")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
