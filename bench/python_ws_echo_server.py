#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""WebSocket echo server on python3-websockets: the independent anchor our server is compared against in
bench/run_transport_bench.sh. Listens on 127.0.0.1 (a free port), echoes every message at any path, prints
{"port":N,"pid":N} when ready, and runs until SIGTERM/SIGINT.

Run it with the Debian interpreter, /usr/bin/python3 (python3-websockets).
"""
import asyncio
import json
import os
import signal

import websockets


async def echo(websocket, path=None):
    try:
        async for message in websocket:
            await websocket.send(message)
    except websockets.ConnectionClosed:
        pass


async def main():
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # backlog: the load generator opens thousands of connections; asyncio's default backlog is 100.
    async with websockets.serve(echo, "127.0.0.1", 0, backlog=4096) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
