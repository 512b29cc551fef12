"""
Benchmark of the ZeroMQ transport (L{ecs.net.zeromq}) beside raw pyzmq.

One script although it is over 400 lines: each measurement is made twice
(raw pyzmq, then our transport doing the same) and printed in one table;
the two halves are compared line by line, so they stay in one file.

Run from the repository root::

    .venv/bin/python bench/transport.py [--requests N] [--events N]

What is measured, all in one process on 127.0.0.1, in the same run:

- request/reply round trip: N sequential requests (p50, p99, mean latency
  and requests/s), then C{--pipelined} requests with C{--inflight} (default
  100) in flight at once (requests/s);
- publish/subscribe: C{--events} events end to end (events/s from the first
  publish to the last event received) and how many were dropped (published
  but never received; PUB drops at the high-water mark).

Each for:

- ours: two L{ZmqNode}s (server and client, or publisher and subscriber)
  on the real reactor, with C{security: none} and with CURVE.  Requests go
  through the L{Correlator} and L{Dispatcher} (JSON encode, validate,
  dispatch to an echo handler, reply); events through L{PublisherCore} and
  L{SubscriberCore} (encode, validate).  The publisher yields to the reactor
  every C{--batch} events so that the subscriber in the same thread can read.
- raw pyzmq, the floor: a blocking DEALER in the main thread against a
  ROUTER echo loop serviced in a background thread (blocking C{poll}/
  C{recv_multipart}/C{send_multipart}; pyzmq releases the GIL while it
  waits), and a PUB in the main thread sending as fast as it can to a SUB
  read in a background thread.  Raw sends the same bytes as ours (an encoded
  envelope) but parses nothing.  Raw CURVE has no ZAP handler (ZAP only runs
  at the handshake, so it costs nothing per message).

The default run takes well under a minute.  Importing this module has no
side effects; the reactor is imported only by L{main}.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402

LOCAL = "tcp://127.0.0.1:*"
HWM = 10_000  # the ZmqNode default, used for raw sockets too


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    index = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_row(latencies: list[float], pipelined_rate: float) -> dict[str, float]:
    """Summary numbers for one request/reply run (latencies in seconds)."""
    ordered = sorted(latencies)
    total = sum(latencies)
    return {
        "p50": percentile(ordered, 0.50) * 1e6,
        "p99": percentile(ordered, 0.99) * 1e6,
        "mean": total / len(latencies) * 1e6,
        "seq_rate": len(latencies) / total,
        "pipe_rate": pipelined_rate,
    }


def request_payload() -> bytes:
    """An encoded request envelope like the ones ours sends."""
    from ecs import protocol

    body = {"seq": 123456, "tag": "physics-run", "values": [1, 2, 3]}
    envelope = protocol.request("echo", "bench-client", "bench", "0123456789ab-1", body)
    return protocol.encode(envelope)


def event_payload() -> bytes:
    """An encoded event envelope like the ones ours publishes."""
    from ecs import protocol

    body = {"key": "STS-0001", "value": {"state": "Configuring", "tag": "physics-run"}}
    envelope = protocol.event("state", "bench-pub", "state/STS-0001", "0123456789ab", 42, body)
    return protocol.encode(envelope)


# ---------------------------------------------------------------------------
# Raw pyzmq


def curve_pairs() -> dict[str, tuple[bytes, bytes]]:
    """Fresh server and client key pairs for the raw CURVE runs."""
    return {"server": zmq.curve_keypair(), "client": zmq.curve_keypair()}


def raw_secure(
    sock: zmq.Socket, pairs: dict[str, tuple[bytes, bytes]] | None, server: bool
) -> None:
    """Set CURVE options (before bind/connect) when C{pairs} is given."""
    sock.sndhwm = HWM
    sock.rcvhwm = HWM
    sock.linger = 0
    if pairs is None:
        return
    if server:
        sock.curve_server = True
        sock.curve_publickey, sock.curve_secretkey = pairs["server"]
    else:
        sock.curve_serverkey = pairs["server"][0]
        sock.curve_publickey, sock.curve_secretkey = pairs["client"]


def raw_request_reply(
    requests: int, pipelined: int, inflight: int, curve: bool
) -> dict[str, float]:
    """Raw DEALER (main thread) against a ROUTER echo serviced in a thread."""
    pairs = curve_pairs() if curve else None
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    raw_secure(router, pairs, server=True)
    router.bind(LOCAL)
    address = router.getsockopt_string(zmq.LAST_ENDPOINT)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            if router.poll(50, zmq.POLLIN):
                while True:
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    router.send_multipart(frames)

    thread = threading.Thread(target=echo, name="raw-router", daemon=True)
    thread.start()
    dealer = context.socket(zmq.DEALER)
    raw_secure(dealer, pairs, server=False)
    dealer.connect(address)
    payload = request_payload()
    try:
        for _ in range(200):  # warm-up, includes the connection and handshake
            dealer.send(payload)
            dealer.recv()
        latencies = []
        clock = time.perf_counter
        for _ in range(requests):
            start = clock()
            dealer.send(payload)
            dealer.recv()
            latencies.append(clock() - start)

        start = clock()
        sent = received = 0
        while sent < min(inflight, pipelined):
            dealer.send(payload)
            sent += 1
        while received < pipelined:
            dealer.recv()
            received += 1
            if sent < pipelined:
                dealer.send(payload)
                sent += 1
        rate = pipelined / (clock() - start)
    finally:
        stop.set()
        thread.join()
        dealer.close(0)
        router.close(0)
        context.term()
    return latency_row(latencies, rate)


def raw_pub_sub(events: int, curve: bool) -> dict[str, float]:
    """Raw PUB (main thread) to a SUB read in a background thread."""
    pairs = curve_pairs() if curve else None
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    raw_secure(pub, pairs, server=True)
    pub.bind(LOCAL)
    address = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    sub = context.socket(zmq.SUB)
    raw_secure(sub, pairs, server=False)
    sub.setsockopt(zmq.SUBSCRIBE, b"state/")
    sub.setsockopt(zmq.SUBSCRIBE, b"warm")
    sub.connect(address)
    joined = threading.Event()
    result: dict[str, float] = {"received": 0, "last": 0.0}

    def read() -> None:
        idle_since = None
        while True:
            if sub.poll(100, zmq.POLLIN):
                idle_since = None
                topic, _ = sub.recv_multipart()
                if topic == b"warm":
                    joined.set()
                    continue
                result["received"] += 1
                result["last"] = time.perf_counter()
                if result["received"] >= events:
                    return
            elif result.get("done_sending"):
                idle_since = idle_since or time.perf_counter()
                if time.perf_counter() - idle_since > 1.0:
                    return

    thread = threading.Thread(target=read, name="raw-sub", daemon=True)
    thread.start()
    payload = event_payload()
    topic = b"state/STS-0001"
    try:
        deadline = time.perf_counter() + 10
        while not joined.is_set():  # the slow joiner: probe until subscribed
            if time.perf_counter() > deadline:
                raise RuntimeError("raw SUB did not join within 10 s")
            pub.send_multipart([b"warm", b""])
            joined.wait(0.01)
        start = time.perf_counter()
        for _ in range(events):
            pub.send_multipart([topic, payload])
        result["done_sending"] = 1
        thread.join()
    finally:
        pub.close(0)
        sub.close(0)
        context.term()
    received = int(result["received"])
    seconds = (result["last"] - start) if received else float("nan")
    return {
        "rate": received / seconds if received else 0.0,
        "received": received,
        "dropped": events - received,
        "seconds": seconds,
    }


# ---------------------------------------------------------------------------
# Ours, on the real reactor


async def ours_request_reply(
    reactor: Any, keys: Any, requests: int, pipelined: int, inflight: int
) -> dict[str, float]:
    """ZmqNode client against a ZmqNode server with an echo handler."""
    from twisted.internet import defer
    from twisted.python.failure import Failure

    from ecs.net.zeromq import ZmqNode

    server_node = ZmqNode(reactor, "bench-server", keys=keys)
    client_node = ZmqNode(reactor, "bench-client", keys=keys)
    try:
        server = server_node.serve(LOCAL)
        server.register("bench", {"echo": lambda request: request.body})
        client = client_node.connect(server.address)
        body = {"seq": 123456, "tag": "physics-run", "values": [1, 2, 3]}
        for _ in range(200):  # warm-up, includes the connection and handshake
            await client.request("bench", "echo", body)
        clock = time.perf_counter
        latencies = []
        for _ in range(requests):
            start = clock()
            await client.request("bench", "echo", body)
            latencies.append(clock() - start)

        done: defer.Deferred[None] = defer.Deferred()
        counts = {"sent": 0, "answered": 0, "failed": 0}

        def send_one() -> None:
            counts["sent"] += 1
            client.request("bench", "echo", body, timeout=60).addBoth(completed)

        def completed(result: object) -> None:
            counts["failed" if isinstance(result, Failure) else "answered"] += 1
            if counts["sent"] < pipelined:
                send_one()
            elif counts["answered"] + counts["failed"] == pipelined:
                done.callback(None)

        start = clock()
        for _ in range(min(inflight, pipelined)):
            send_one()
        await done
        rate = counts["answered"] / (clock() - start)
        if counts["failed"]:
            print(f"  warning: {counts['failed']} pipelined requests failed", file=sys.stderr)
    finally:
        await client_node.close()
        await server_node.close()
    return latency_row(latencies, rate)


async def ours_pub_sub(reactor: Any, keys: Any, events: int, batch: int) -> dict[str, float]:
    """ZmqNode publisher to a ZmqNode subscriber, both on the reactor."""
    from twisted.internet import defer, task

    from ecs.net.zeromq import ZmqNode

    pub_node = ZmqNode(reactor, "bench-pub", keys=keys)
    sub_node = ZmqNode(reactor, "bench-sub", keys=keys)
    state = {"received": 0, "ticks": 0, "last": 0.0}

    def got(envelope: Any) -> None:
        if envelope.type == "tick":
            state["ticks"] += 1
            return
        state["received"] += 1
        state["last"] = time.perf_counter()

    try:
        publisher = pub_node.publish(LOCAL)
        subscriber = sub_node.subscribe(publisher.address, ["state/"], got)
        deadline = time.perf_counter() + 10
        while not state["ticks"]:  # the slow joiner: tick until subscribed
            if time.perf_counter() > deadline:
                raise RuntimeError("our subscriber did not join within 10 s")
            publisher.tick()
            await task.deferLater(reactor, 0.01, lambda: None)
        body = {"key": "STS-0001", "value": {"state": "Configuring", "tag": "physics-run"}}
        finished: defer.Deferred[None] = defer.Deferred()
        sent = {"n": 0}

        def publish_batch() -> None:
            for _ in range(min(batch, events - sent["n"])):
                publisher.publish("state/STS-0001", "state", body)
            sent["n"] = publisher.seq
            if sent["n"] < events:
                reactor.callLater(0, publish_batch)
            else:
                finished.callback(None)

        start = time.perf_counter()
        publish_batch()
        await finished
        seen, idle = -1, 0.0
        while state["received"] < events and idle < 1.0:
            await task.deferLater(reactor, 0.05, lambda: None)
            if state["received"] == seen:
                idle += 0.05
            else:
                seen, idle = state["received"], 0.0
        malformed = subscriber.dropped
    finally:
        await sub_node.close()
        await pub_node.close()
    received = int(state["received"])
    seconds = (state["last"] - start) if received else float("nan")
    return {
        "rate": received / seconds if received else 0.0,
        "received": received,
        "dropped": events - received,
        "seconds": seconds,
        "malformed": malformed,
    }


# ---------------------------------------------------------------------------
# Driver


Row = tuple[str, str, dict]


def print_tables(args: argparse.Namespace, rr: list[Row], ps: list[Row]) -> None:
    """Print the two result tables."""
    print()
    print(
        f"request/reply: {args.requests} sequential (latency), "
        f"{args.pipelined} with {args.inflight} in flight; payload {len(request_payload())} B"
    )
    header = (
        f"{'transport':<16}{'security':<10}{'p50 us':>9}{'p99 us':>9}{'mean us':>9}"
        f"{'seq req/s':>11}{'pipelined req/s':>17}"
    )
    print(header)
    print("-" * len(header))
    for name, security, r in rr:
        print(
            f"{name:<16}{security:<10}{r['p50']:>9.0f}{r['p99']:>9.0f}{r['mean']:>9.0f}"
            f"{r['seq_rate']:>11,.0f}{r['pipe_rate']:>17,.0f}"
        )
    print()
    print(
        f"publish/subscribe: {args.events} events end to end, payload {len(event_payload())} B, "
        f"HWM {HWM}; ours yields every {args.batch} events"
    )
    header = (
        f"{'transport':<16}{'security':<10}{'events/s':>11}{'received':>10}"
        f"{'dropped':>9}{'seconds':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, security, r in ps:
        print(
            f"{name:<16}{security:<10}{r['rate']:>11,.0f}{r['received']:>10}"
            f"{r['dropped']:>9}{r['seconds']:>9.2f}"
        )


def progress(what: str) -> None:
    """Say on stderr what runs now."""
    print(f"  running {what}...", file=sys.stderr, flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    add = parser.add_argument
    add("--requests", type=int, default=5000, help="sequential requests per run")
    add("--pipelined", type=int, help="pipelined requests per run (default 5 x --requests)")
    add("--inflight", type=int, default=100, help="requests in flight when pipelined")
    add("--events", type=int, default=100_000, help="events per publish/subscribe run")
    add("--batch", type=int, default=200, help="ours: events published per reactor turn")
    args = parser.parse_args(argv)
    if args.pipelined is None:
        args.pipelined = 5 * args.requests
    for name in ("requests", "pipelined", "inflight", "events", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run every benchmark and print the tables."""
    args = parse(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    raw_rr: list[Row] = []
    raw_ps: list[Row] = []
    ours_rr: list[Row] = []
    ours_ps: list[Row] = []

    # Raw pyzmq first, without a reactor.
    for curve in (False, True):
        security = "curve" if curve else "none"
        progress(f"raw pyzmq request/reply, {security}")
        row = raw_request_reply(args.requests, args.pipelined, args.inflight, curve)
        raw_rr.append(("raw pyzmq", security, row))
        progress(f"raw pyzmq pub/sub, {security}")
        raw_ps.append(("raw pyzmq", security, raw_pub_sub(args.events, curve)))

    from twisted.internet import defer, task
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    from ecs.net.keys import init_keys, load_keys

    # Errors go to stderr; the "security is none" warning stays out of the table.
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(defaultLogLevel=LogLevel.error)],
            )
        ],
        redirectStandardIO=False,
    )

    async def ours(reactor: Any) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            init_keys(Path(tmp) / "keys")
            keys = load_keys(Path(tmp) / "keys")
            for security, k in (("none", None), ("curve", keys)):
                progress(f"ours request/reply, {security}")
                row = await ours_request_reply(
                    reactor, k, args.requests, args.pipelined, args.inflight
                )
                ours_rr.append(("ours (ZmqNode)", security, row))
                progress(f"ours pub/sub, {security}")
                row = await ours_pub_sub(reactor, k, args.events, args.batch)
                ours_ps.append(("ours (ZmqNode)", security, row))

    def run(reactor: Any) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(ours(reactor))

    try:
        task.react(run)
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    print_tables(args, ours_rr + raw_rr, ours_ps + raw_ps)
    print(
        f"\ntotal {time.perf_counter() - started:.1f} s; pyzmq {zmq.pyzmq_version()}, "
        f"libzmq {zmq.zmq_version()}, {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
