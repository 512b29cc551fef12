"""
Run one process of the demo for L{bench/events.py}, with timestamps taken
where a system's state change passes through it.

Usage (started by the benchmark, or by the demo it started; not by hand)::

    python bench/events_agent.py DIR -n --pidfile= ecs-demo --port ...
    python bench/events_agent.py DIR -n --pidfile= ecs-simhost --ids ...

What it adds, before handing over to L{bench/configure_agent.py} (own
process group, death with its parent, message counters on SIGUSR2, cProfile
on SIGUSR1) and through it to twistd's own C{run()} in this process, so the
process I{is} the agent:

- writes C{DIR/pid.<pid>} holding its plugin name, so that the benchmark
  knows every process of the demo and kills each one by pid;
- records, with C{time.time()} (one clock for every process on the
  machine), each point a state change passes, by the plugin it runs:

  - controllers (C{ecs-simhost}, C{ecs-detector}, C{ecs-global}):
    C{fire} when L{SystemController._fire} changes a state (the clock is
    read before the change, so a delay is never shortened), and C{sent}
    when L{PartitionLink.flush} sends the batched updates to the PCA;
  - the PCA (C{ecs-pca}): C{pca_in} when a C{states} notification is
    handled, C{pca_fold} when the sequencer folds a system's status into
    its view (from a notification, or from the reply to a command: with
    zero-time actions the reply to C{configure} already says Active), and
    C{pca_pub} when a system's record is published (staged for the
    turn's C{states} message), and C{pca_sent} when the staged records
    are handed to the PUB socket (L{PublisherCore._send_batch});
  - the ECA (C{ecs-demo}): C{eca_in} when a state event arrives from the
    PCA's publisher, and C{eca_emit} when the ECA's mirror applies it and
    hands it to the event streams (L{Partition.got_record}), and
    C{eca_tcp_send} (system C{*}) each time a TCP connection of the web
    hands bytes to the kernel (C{tcp.Connection.writeSomeData}).

  Every process also records each pause of its garbage collector as
  C{("gc", start, "*", "<generation>:<milliseconds>")}.

  Each record is C{(point, time, system, raw state)}, appended to a list:
  a few microseconds per state change.  On SIGRTMIN+2 the list is written
  to C{DIR/points.<pid>.json} (then C{DIR/points.<pid>.done});

- in the ECA process only, makes the local launcher (L{ecs.launch.local})
  run every agent the demo's supervisor starts through this file too, with
  the ECA as the parent to die with (its "twistd" becomes a script that
  execs this file with the same arguments).  With
  C{ECS_BENCH_ORDERED_START=1} in the environment the PCA is started only
  once every controller process has logged that it is serving: a
  work-around for a start-up race of the product (a sim host
  registers its detectors before it serves them; a PCA whose status query
  is refused meanwhile never asks again), which C{bench/events.py} uses
  when a natural start stalls.

Nothing of the product is changed on disk; all of this lives in this
process.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

#: Signal that makes the process write its points.
DUMP_SIGNAL = signal.SIGRTMIN + 2
CONTROLLER_PLUGINS = ("ecs-simhost", "ecs-detector", "ecs-global")

points: list[tuple[str, float, str, str | None]] = []


def _plugin(twistd_args: list[str]) -> str:
    """The twistd plugin name in C{-n --pidfile= PLUGIN ...}."""
    for arg in twistd_args:
        if not arg.startswith("-"):
            return arg
    return "?"


def patch_controllers() -> None:
    from agents.controller.link import PartitionLink
    from agents.controller.system import SystemController

    original_fire = SystemController._fire

    def _fire(self: Any, input: str, *args: Any, **kwargs: Any) -> None:
        t = time.time()
        original_fire(self, input, *args, **kwargs)
        if self.partition is not None:
            points.append(("fire", t, self.system, self.machine.state))

    SystemController._fire = _fire  # type: ignore[method-assign]

    original_flush = PartitionLink.flush

    def flush(self: Any) -> None:
        t = time.time()
        batch = [(u.get("system"), u.get("state")) for u in self._batch.values()]
        original_flush(self)
        for system, state in batch:
            points.append(("sent", t, system, state))

    PartitionLink.flush = flush  # type: ignore[method-assign]


def patch_pca() -> None:
    from agents.pca.agent import PartitionAgent
    from agents.pca.sequencer import Sequencer

    original_fold = Sequencer._fold

    def _fold(self: Any, view: Any, status: Any, incarnation: Any = None) -> bool:
        if isinstance(status, dict):
            points.append(("pca_fold", time.time(), view.id, status.get("state")))
        return original_fold(self, view, status, incarnation)

    Sequencer._fold = _fold  # type: ignore[method-assign]

    original_states = PartitionAgent._states

    def _states(self: Any, request: Any) -> None:
        t = time.time()
        updates = request.body.get("updates")
        if isinstance(updates, list):
            for update in updates:
                if isinstance(update, dict):
                    points.append(("pca_in", t, update.get("system"), update.get("state")))
        return original_states(self, request)

    PartitionAgent._states = _states  # type: ignore[method-assign]

    original_changed = PartitionAgent.system_changed

    def system_changed(self: Any, view: Any) -> None:
        points.append(("pca_pub", time.time(), view.id, view.state))
        original_changed(self, view)

    PartitionAgent.system_changed = system_changed  # type: ignore[method-assign]

    from ecs.net.pubsub import PublisherCore

    original_send_batch = PublisherCore._send_batch

    def _send_batch(self: Any, prefix: str, first: int, entries: list[dict[str, Any]]) -> None:
        t = time.time()
        for entry in entries:
            key, value = entry.get("key"), entry.get("value")
            if isinstance(key, str) and isinstance(value, dict):
                points.append(("pca_sent", t, key.rpartition("/")[2], value.get("raw_state", value.get("state"))))
        original_send_batch(self, prefix, first, entries)

    PublisherCore._send_batch = _send_batch  # type: ignore[method-assign]


def pace_pca_commands(chunk: int) -> None:
    """
    What-if experiment (bench/events.py --pca-send-chunk): the PCA sends at
    most C{chunk} commands to systems per reactor turn, the rest on the
    following turns, so that replies are handled between the chunks instead
    of after a loop over every system.
    """
    from twisted.internet import defer

    from agents.pca.agent import PartitionAgent

    original_send = PartitionAgent._send
    queue: list[tuple[Any, Any, str, Any, Any]] = []
    state = {"sent": 0, "call": None}

    def next_turn(agent: Any) -> None:
        state["call"] = None
        state["sent"] = 0
        batch, queue[:] = queue[:chunk], queue[chunk:]
        for self, view, command, body, d in batch:
            original_send(self, view, command, body).chainDeferred(d)
        state["sent"] = len(batch)
        if queue or batch:
            state["call"] = agent.reactor.callLater(0, next_turn, agent)

    def _send(self: Any, view: Any, command: str, body: Any) -> Any:
        if state["call"] is None:
            state["call"] = self.reactor.callLater(0, next_turn, self)
        if not queue and state["sent"] < chunk:
            state["sent"] += 1
            return original_send(self, view, command, body)
        d: defer.Deferred[Any] = defer.Deferred()
        queue.append((self, view, command, body, d))
        return d

    PartitionAgent._send = _send  # type: ignore[method-assign]


def patch_eca(out: Path) -> None:
    from agents.eca.link import PartitionLink
    from agents.eca.partitions import Partition

    original_received = PartitionLink._received

    def _received(self: Any, envelope: Any) -> None:
        if envelope.type == "state":
            key = envelope.body.get("key")
            value = envelope.body.get("value")
            if isinstance(key, str) and key.startswith("system/") and isinstance(value, dict):
                points.append(("eca_in", time.time(), key[7:], value.get("raw_state")))
        original_received(self, envelope)

    PartitionLink._received = _received  # type: ignore[method-assign]

    original_got_record = Partition.got_record

    def got_record(self: Any, key: str, value: Any) -> None:
        if key.startswith("system/") and isinstance(value, dict):
            points.append(("eca_emit", time.time(), key[7:], value.get("raw_state")))
        original_got_record(self, key, value)

    Partition.got_record = got_record  # type: ignore[method-assign]

    # When the web's TCP connections really hand bytes to the kernel (the
    # event stream's writes wait in the transport until the reactor's next
    # write pass): one point per send, system "*".
    from twisted.internet import tcp

    original_write = tcp.Connection.writeSomeData

    def writeSomeData(self: Any, data: bytes) -> Any:
        points.append(("eca_tcp_send", time.time(), "*", None))
        return original_write(self, data)

    tcp.Connection.writeSomeData = writeSomeData  # type: ignore[method-assign]

    ordered = os.environ.get("ECS_BENCH_ORDERED_START") == "1"

    # Every agent the demo's supervisor starts runs through this file: the
    # local launcher execs its "twistd", which here is a small script that
    # execs this file with the same arguments (and this process as the
    # parent to die with).
    wrapper = out / "agent-wrapper.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"ECS_BENCH_PARENT={os.getpid()} exec {shlex.quote(sys.executable)} "
        f"{shlex.quote(str(Path(__file__).resolve()))} {shlex.quote(str(out))} \"$@\"\n"
    )
    wrapper.chmod(0o755)

    from twisted.internet import task

    from ecs.launch.local import LocalLauncher

    original_init = LocalLauncher.__init__
    original_start = LocalLauncher.start

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.twistd = str(wrapper)

    async def serving(self: Any, logs: list[Path]) -> None:
        # the controllers started so far have logged that they serve
        while True:
            ready = [p for p in logs if p.exists() and b" serving " in p.read_bytes()]
            if len(ready) == len(logs):
                return
            await task.deferLater(self.reactor, 0.1, lambda: None)

    async def start_after_controllers(self: Any, spec: Any, placement: Any) -> Any:
        await task.deferLater(self.reactor, 0.5, lambda: None)  # let the supervisor start the rest
        await serving(self, [self.log_path(s) for s in controllers])
        return await original_start(self, spec, placement)

    controllers: list[Any] = []

    def start(self: Any, spec: Any, placement: Any) -> Any:
        """L{LocalLauncher.start}; with ordered starts the PCA waits for the controllers."""
        if ordered and spec.kind == "pca":
            from twisted.internet import defer

            return defer.Deferred.fromCoroutine(start_after_controllers(self, spec, placement))
        if spec.kind in ("detector", "global", "simhost"):
            controllers.append(spec)
        return original_start(self, spec, placement)

    LocalLauncher.__init__ = __init__  # type: ignore[method-assign]
    LocalLauncher.start = start  # type: ignore[method-assign]


def main() -> None:
    out = Path(sys.argv[1])
    twistd_args = sys.argv[2:]
    plugin = _plugin(twistd_args)
    pid = os.getpid()
    (out / f"pid.{pid}").write_text(plugin)

    if plugin in CONTROLLER_PLUGINS:
        patch_controllers()
        nice = os.environ.get("ECS_BENCH_SIMHOST_NICE")
        if nice and plugin == "ecs-simhost":
            os.nice(int(nice))
    elif plugin == "ecs-pca":
        patch_pca()
        chunk = os.environ.get("ECS_BENCH_PCA_SEND_CHUNK")
        if chunk:
            pace_pca_commands(int(chunk))
        # What-if experiment (bench/events.py --pca-batch-limit): the most
        # state records per published message.
        limit = os.environ.get("ECS_BENCH_PCA_BATCH_LIMIT")
        if limit:
            from ecs.net.pubsub import PublisherCore

            PublisherCore.batch_limit = int(limit)
    elif plugin == "ecs-demo":
        patch_eca(out)
        # What-if experiment (bench/events.py --eca-read-batch): the most
        # messages the ECA's ZeroMQ sockets hand over per reactor turn.
        batch = os.environ.get("ECS_BENCH_ECA_READ_BATCH")
        if batch:
            from ecs.net import zeromq as zmq_transport

            zmq_transport.MAX_READ_BATCH = int(batch)

    def dump(signum: int, frame: object) -> None:
        target = out / f"points.{pid}.json"
        temporary = out / f"points.{pid}.tmp"
        temporary.write_text(json.dumps({"pid": pid, "plugin": plugin, "points": points}))
        os.replace(temporary, target)
        (out / f"points.{pid}.done").write_text("")

    signal.signal(DUMP_SIGNAL, dump)
    from benchlib import on_gc_pause

    on_gc_pause(lambda start, generation, ms: points.append(("gc", start, "*", f"{generation}:{ms:.2f}")))
    if os.environ.get("ECS_BENCH_NO_HEAP_FREEZE") == "1":
        # What-if (bench/events.py --no-heap-freeze): the agent keeps its
        # start-up heap in the collector's full scans (agents._heap).
        import agents._heap

        agents._heap.settle_when_running = lambda reactor, collector=None: None  # type: ignore[assignment]

    import configure_agent

    sys.argv = [str(HERE / "configure_agent.py"), str(out), *twistd_args]
    configure_agent.main()


if __name__ == "__main__":
    main()
