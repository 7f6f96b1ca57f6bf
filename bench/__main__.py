"""The benchmark: kefu on both backends next to plain-Python peers, in one table.

    .venv/bin/python -m bench                  # everything, twice; a few minutes on 2 cores
    .venv/bin/python -m bench --smoke          # smallest configuration: proves it runs, measures nothing
    .venv/bin/python -m bench --scenarios relay --targets embedded,peer --repeats 3
    .venv/bin/python -m bench --profile artifacts/profile   # and a py-spy profile of each kefu mode
    .venv/bin/python -m bench --repeats 0 --profile artifacts/profile   # profiles only

Scenarios: push (bound QR pages, pipelined pushers on the TCP port, seed dialect), relay (users →
agents, closed loop, acked, checked against the database), idle (connects/s, then RSS per idle
socket). Targets: kefu embedded, kefu Redis + MariaDB (127.0.0.1:3306 root and 127.0.0.1:6379; its
own database and key prefix, removed after), and the peer (bench/peers: a plain `websockets` push
server for push, a no-durability relay for the others; Workerman, the seeds' PHP server, is not
available here). Every run gets a fresh server on 127.0.0.1. See docs/performance.md.

It refuses to report (exit 3) when the load generator's own CPU time exceeds --generator-limit of
one core during a measured phase: the number would measure the generator, not the server. Exit 4
means the table was printed but kefu lost or duplicated a message, or did not store an acked one
exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import idle, push, relay
from bench.profile import Recording, summarise
from bench.report import peers_note, table
from bench.result import RunResult
from bench.targets import LABELS, TARGETS, Target, started

SCENARIOS = ["push", "relay", "idle"]
EXIT_SATURATED, EXIT_GUARANTEE = 3, 4
SMOKE = {"repeats": 1, "push_pages": 10, "push_pushers": 2, "push_window": 5, "push_seconds": 0.3,
         "relay_users": 5, "relay_seconds": 0.3, "idle_sockets": 10, "idle_settle": 0.2}


class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and every option's default."""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=Help)
    csv = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--scenarios", type=csv, default=",".join(SCENARIOS), help="comma-separated")
    p.add_argument("--targets", type=csv, default=",".join(TARGETS), help="comma-separated")
    p.add_argument("--repeats", type=int, default=2, help="measured runs of each scenario on each target")
    p.add_argument("--generator-limit", type=float, default=0.9,
                   help="refuse to report when the generator used more than this share of one core")
    p.add_argument("--smoke", action="store_true", help="smallest sizes, one repeat (a smoke test)")
    p.add_argument("--json", type=Path, help="also write every run's numbers here")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="after the measured runs, one more run per scenario and kefu target under py-spy")
    g = p.add_argument_group("push")
    d = push.PushOptions()
    g.add_argument("--push-pages", type=int, default=d.pages, help="bound QR pages")
    g.add_argument("--push-pushers", type=int, default=d.pushers, help="TCP push connections")
    g.add_argument("--push-window", type=int, default=d.window, help="lines in flight per connection")
    g.add_argument("--push-seconds", type=float, default=d.seconds, help="load phase length")
    g.add_argument("--push-max-lines", type=int, default=d.max_lines, help="cap on lines in all")
    g = p.add_argument_group("relay")
    r = relay.RelayOptions()
    g.add_argument("--relay-users", type=int, default=r.users, help="user sockets, one message in flight")
    g.add_argument("--relay-agents", type=int, default=r.agents, help="agent sockets receiving every message")
    g.add_argument("--relay-seconds", type=float, default=r.seconds, help="load phase length")
    g.add_argument("--relay-max-per-user", type=int, default=r.max_per_user, help="cap on messages per user")
    g = p.add_argument_group("idle")
    i = idle.IdleOptions()
    g.add_argument("--idle-sockets", type=int, default=i.sockets, help="idle chat sockets")
    g.add_argument("--idle-settle", type=float, default=i.settle, help="seconds before each RSS reading")
    p.add_argument("--kefu-env", action="append", default=[], metavar="KEFU_NAME=VALUE",
                   help="a setting for every kefu server (repeatable), e.g. KEFU_ASSIGN_LIMIT=1000")
    p.add_argument("--connect-concurrency", type=int, default=50, help="handshakes in flight at once")
    args = p.parse_args(argv)
    if args.smoke:
        for k, v in SMOKE.items():
            if getattr(args, k) == p.get_default(k):
                setattr(args, k, v)
    for name, allowed in (("scenarios", SCENARIOS), ("targets", TARGETS)):
        bad = set(getattr(args, name)) - set(allowed)
        if bad or not getattr(args, name):
            p.error(f"--{name}: choose from {','.join(allowed)} (got {','.join(sorted(bad)) or 'none'})")
    try:
        args.kefu_env = dict(kv.split("=", 1) for kv in args.kefu_env)
    except ValueError:
        p.error("--kefu-env takes KEFU_NAME=VALUE")
    if args.repeats < 0 or (args.repeats == 0 and not args.profile):
        p.error("--repeats must be at least 1 (0 only with --profile: profiles, no table)")
    return args


Runner = Callable[[Target, int], Awaitable[RunResult]]


def runners(a: argparse.Namespace) -> dict[str, Runner]:
    cc = a.connect_concurrency
    po = push.PushOptions(a.push_pages, a.push_pushers, a.push_window, a.push_seconds, a.push_max_lines, cc)
    ro = relay.RelayOptions(a.relay_users, a.relay_agents, a.relay_seconds, a.relay_max_per_user, cc)
    io = idle.IdleOptions(a.idle_sockets, cc, a.idle_settle)
    return {"push": lambda t, n: push.run(t, po, n), "relay": lambda t, n: relay.run(t, ro, n),
            "idle": lambda t, n: idle.run(t, io, n)}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def progress(r: RunResult) -> None:
    main = {"push": "delivered_per_s", "relay": "delivered_per_s", "idle": "connects_per_s"}[r.scenario]
    extra = f", lost {r.checks['lost']}, duplicated {r.checks['duplicated']}" if r.scenario == "relay" else ""
    print(f"  {r.scenario:5} run {r.repeat + 1}  {r.label:42} {main} {r.metrics[main]:9.0f}   "
          f"CPU: server {100 * r.usage.server_cpu:3.0f} %, generator {100 * r.usage.generator_cpu:3.0f} %, "
          f"others {100 * r.usage.others_cpu:3.0f} %"
          f"{extra}", file=sys.stderr, flush=True)


def saturated(r: RunResult, limit: float) -> str:
    phase, u = r.generator_peak()
    what = r.scenario if phase == "load" else f"{r.scenario} ({phase})"
    return (f"bench: refusing to report. The load generator used {100 * u.generator_cpu:.0f} % of one "
            f"core during {what} on {r.label} (run {r.repeat + 1}; the limit is {100 * limit:.0f} %), "
            f"so that number would measure the generator, not the server (whose CPU was "
            f"{100 * u.server_cpu:.0f} %). Lower the load (--push-pages/--push-window/--relay-users), "
            "or run when the machine is quieter.")


def others(results: list[RunResult]) -> str:
    used = [100 * r.usage.others_cpu for r in results]
    return f"{min(used):.0f}–{max(used):.0f} %" if used else "?"


def shared_warning(results: list[RunResult], limit: float = 0.25) -> list[str]:
    busy = [r for r in results if r.usage.others_cpu > limit]
    if not busy:
        return []
    return [f"warning: other processes used over {100 * limit:.0f} % of a core in {len(busy)} of "
            f"{len(results)} runs; on a shared machine the fast peers lose more than kefu, so ratios "
            "flatter kefu — compare runs where that CPU is low"]


def header(a: argparse.Namespace, load_before: str, results: list[RunResult]) -> str:
    from websockets.version import version as websockets_version

    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    each = {"push": f"push {a.push_pages} pages, {a.push_pushers} pushers × {a.push_window} lines in "
                    f"flight, {a.push_seconds:g} s",
            "relay": f"relay {a.relay_users} users → {a.relay_agents} agents, closed loop, "
                     f"{a.relay_seconds:g} s",
            "idle": f"idle {a.idle_sockets} sockets"}
    sizes = "; ".join([*(each[sc] for sc in a.scenarios), f"{a.repeats} run(s) each, fresh servers"])
    return "\n".join([
        f"kefu benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, websockets {websockets_version}, generator on {loop}",
        f"load average before {load_before}, after {loadavg()}; other processes used "
        f"{others(results)} of a core during the load phases (server and generator share this machine)",
        f"sizes: {sizes}",
        *([f"kefu settings: {' '.join(f'{k}={v}' for k, v in a.kefu_env.items())}"] if a.kefu_env else []),
        f"peer: {peers_note(results) or '(not run)'}",
        *shared_warning(results),
        "Workerman (the seeds' PHP server) is not available on this machine and is not measured.",
        "Cells are the range over the runs; × peer is the ratio of the means (kefu / peer).",
    ])


async def measure(a: argparse.Namespace) -> int:
    run = runners(a)
    load_before = loadavg()
    results: list[RunResult] = []
    print(f"bench: {len(a.scenarios) * len(a.targets) * a.repeats} runs", file=sys.stderr)
    for repeat in range(a.repeats):
        for scenario in a.scenarios:
            for key in a.targets:
                async with started(key, scenario, kefu_env=a.kefu_env) as target:
                    r = await run[scenario](target, repeat)
                progress(r)
                if r.generator_peak()[1].generator_cpu > a.generator_limit:
                    print(saturated(r, a.generator_limit), file=sys.stderr)
                    return EXIT_SATURATED
                results.append(r)
    if results:
        print(header(a, load_before, results))
        print()
        print(table(results, a.targets))
    if a.json:
        a.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1, ensure_ascii=False))
    broken = [r for r in results if r.target != "peer" and r.scenario == "relay"
              and (r.checks["lost"] or r.checks["duplicated"] or r.checks.get("stored_once") != "yes")]
    if a.profile:
        await profile(a, run)
    if broken:
        print(f"\nbench: kefu broke a guarantee in {len(broken)} relay run(s): "
              + "; ".join(f"{r.label} run {r.repeat + 1}: {r.checks}" for r in broken), file=sys.stderr)
        return EXIT_GUARANTEE
    return 0


async def profile(a: argparse.Namespace, run: dict[str, Runner]) -> None:
    """One more run per scenario and kefu target with py-spy attached; not part of the table."""
    print(f"\n## py-spy profiles (own time), in {a.profile}\n")
    for scenario in a.scenarios:
        for key in (t for t in a.targets if t != "peer"):
            out = a.profile / f"{scenario}-{key}.txt"
            async with started(key, scenario, kefu_env=a.kefu_env) as target:
                target.recording = Recording(target.pid, out)
                r = await run[scenario](target, 0)
            print(f"### {scenario}, {LABELS[key]} (CPU: server {100 * r.usage.server_cpu:.0f} %, "
                  f"other processes {100 * r.usage.others_cpu:.0f} %)\n")
            print(summarise(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(measure(args))
    return uvloop.run(measure(args))


if __name__ == "__main__":
    sys.exit(main())
