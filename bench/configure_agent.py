"""
Run one ECS agent (C{twistd -n <plugin> ...}) for L{bench/configure.py},
with message counters and an on-demand profiler.

Usage (started by the benchmark, not by hand)::

    python bench/configure_agent.py DIR -n --pidfile= ecs-pca --id bench ...

What it does before handing over to twistd's own C{run()} in this process
(so the process I{is} the agent: same plugin, same reactor, same sockets):

- puts itself into its own process group (the benchmark kills the group
  by this pid at the end), and asks Linux to SIGKILL it should the
  benchmark die first;
- wraps L{ecs.protocol.decode} and L{ecs.protocol.encode} to count every
  message this process receives and encodes, by C{kind:type}
  (C{request:configure}, C{reply:configure}, C{notify:states},
  C{event:state}, C{request:heartbeat}, ...).  Every module calls them as
  C{protocol.decode(...)}, so the wrapper sees every frame; the cost is one
  dict increment per message;
- on SIGUSR2 writes C{DIR/counters.<pid>.json} (received, encoded, the
  process's CPU ticks and RSS) atomically;
- on SIGUSR1 starts a cProfile profiler, and on the next SIGUSR1 stops it
  and writes C{DIR/profile.<pid>.<n>.pstats}, then C{DIR/profile.<pid>.<n>.done}.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _die_with_parent() -> None:
    """SIGKILL this agent if the benchmark dies without killing it (Linux)."""
    parent = os.environ.get("ECS_BENCH_PARENT")
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != int(parent):
        os._exit(1)  # the benchmark is already gone


def main() -> None:
    out = Path(sys.argv[1])
    twistd_args = sys.argv[2:]
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # already a group leader
    _die_with_parent()

    from ecs import protocol

    received: Counter[str] = Counter()
    encoded: Counter[str] = Counter()
    original_decode = protocol.decode
    original_encode = protocol.encode

    def decode(*args, **kwargs):  # type: ignore[no-untyped-def]
        envelope = original_decode(*args, **kwargs)
        received[f"{envelope.kind}:{envelope.type}"] += 1
        return envelope

    def encode(envelope, *args, **kwargs):  # type: ignore[no-untyped-def]
        frame = original_encode(envelope, *args, **kwargs)
        encoded[f"{envelope.kind}:{envelope.type}"] += 1
        return frame

    protocol.decode = decode  # type: ignore[assignment]
    protocol.encode = encode  # type: ignore[assignment]

    pid = os.getpid()

    def dump_counters(signum: int, frame: object) -> None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_kb = hwm_kb = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm_kb = int(line.split()[1])
        data = {
            "pid": pid,
            "received": dict(received),
            "encoded": dict(encoded),
            "cpu_ticks": int(fields[11]) + int(fields[12]),
            "rss_kb": rss_kb,
            "hwm_kb": hwm_kb,
        }
        target = out / f"counters.{pid}.json"
        temporary = out / f"counters.{pid}.tmp"
        temporary.write_text(json.dumps(data))
        os.replace(temporary, target)

    profiling: dict[str, object] = {"profile": None, "n": 0}

    def toggle_profile(signum: int, frame: object) -> None:
        import cProfile

        current = profiling["profile"]
        if current is None:
            profile = cProfile.Profile()
            profiling["profile"] = profile
            profile.enable()
            (out / f"profile.{pid}.started").write_text("")
        else:
            assert isinstance(current, cProfile.Profile)
            current.disable()
            profiling["profile"] = None
            n = int(profiling["n"]) + 1  # type: ignore[call-overload]
            profiling["n"] = n
            current.dump_stats(str(out / f"profile.{pid}.{n}.pstats"))
            (out / f"profile.{pid}.{n}.done").write_text("")
            (out / f"profile.{pid}.started").unlink(missing_ok=True)

    signal.signal(signal.SIGUSR2, dump_counters)
    signal.signal(signal.SIGUSR1, toggle_profile)

    from twisted.scripts.twistd import run

    sys.argv = ["twistd", *twistd_args]
    run()


if __name__ == "__main__":
    main()
