"""Throughput of the sandbox's Drop Cowboy ``POST /v1/sms`` on this machine.

Starts ``python -m dispatcher.sandbox`` on a free loopback port, then separate client processes
that send a bounded number of requests (and stop after TIME_LIMIT in any case) from several threads,
each thread with its own keep-alive ``httpx.Client`` over the workers' transport. Prints requests/s, the CPU the server and the
clients spent per request, and the machine. Traffic stays on 127.0.0.1.

An httpx client spends two to three times the server's CPU on each request and one Python process
is held to one core by the GIL, so on a 2-core machine a single client process measures the client,
not the sandbox: the default is 3 client processes x 2 threads.

    .venv/bin/python bench/sandbox_bench.py [--requests 20000] [--client-procs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from dispatcher.providers.transport import KeepAliveTransport
from procfs import cpu_seconds, machine

ROOT = Path(__file__).resolve().parent.parent
TIME_LIMIT = 120.0  # seconds: the client stops sending after this, whatever is left


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bodies(count: int = 100) -> list[bytes]:
    """Pre-encoded request bodies (distinct numbers) so the client spends little CPU per request."""
    return [json.dumps({
        "team_id": "bench-team", "secret": "bench-secret", "phone_number": f"+1555{2000000 + i:07d}",
        "caller_id": "+15557778888", "pool_id": "text", "sms_body": "Benchmark message", "opt_in": True,
        "foreign_id": f"bench-{i}",
    }).encode() for i in range(count)]


def client(url: str, requests: int, threads: int) -> dict[str, object]:
    """Send ``requests`` POST /v1/sms from ``threads`` threads; returns timing and status counts."""
    payloads = bodies()
    headers = {"x-team-id": "bench-team", "x-secret": "bench-secret", "content-type": "application/json"}
    shares = [requests // threads + (1 if i < requests % threads else 0) for i in range(threads)]
    statuses: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def work(share: int, offset: int) -> None:
        local: dict[int, int] = {}
        # The workers' transport: the cheaper the client, the more of the two cores the server gets.
        with httpx.Client(base_url=url, headers=headers, timeout=10.0, transport=KeepAliveTransport()) as http:
            # Requests are built once: building one costs the client more than the server spends answering.
            prepared = [http.build_request("POST", "/v1/sms", content=p) for p in payloads]
            http.send(prepared[0])  # open the connection
            start.wait()
            for i in range(share):
                if time.monotonic() > deadline[0]:
                    break
                try:
                    code = http.send(prepared[(offset + i) % len(prepared)]).status_code
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(repr(exc))
                    continue
                local[code] = local.get(code, 0) + 1
        with lock:
            for code, n in local.items():
                statuses[code] = statuses.get(code, 0) + n

    pool = [threading.Thread(target=work, args=(share, i * 7)) for i, share in enumerate(shares)]
    for t in pool:
        t.start()
    deadline[0] = time.monotonic() + TIME_LIMIT
    start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    for t in pool:
        t.join()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {"elapsed": elapsed, "cpu": cpu, "statuses": statuses, "errors": len(errors), "first_error": errors[:1]}


def wait_health(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/_sandbox/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"sandbox at {url} did not start in {timeout}s")


def server_stack() -> str:
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401
        parser = "httptools"
    except ImportError:
        parser = "h11"
    return f"{loop} + {parser}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="requests in all (default 20000)")
    parser.add_argument("--threads", type=int, default=2, help="client threads per client process (default 2)")
    parser.add_argument("--client-procs", type=int, default=3, help="client processes (default 3)")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # internal: run as a client process
    args = parser.parse_args()
    if args.client:
        print(json.dumps(client(args.client, args.requests, args.threads)))
        return

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "dispatcher.sandbox", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=ROOT)
    try:
        wait_health(url)
        cpu_before = cpu_seconds(server.pid)
        per_proc = [args.requests // args.client_procs + (1 if i < args.requests % args.client_procs else 0)
                    for i in range(args.client_procs)]
        began = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--client", url, "--requests", str(n),
                                   "--threads", str(args.threads)], stdout=subprocess.PIPE, cwd=ROOT)
                 for n in per_proc]
        results = [json.loads(p.communicate(timeout=TIME_LIMIT + 60)[0]) for p in procs]
        wall = time.perf_counter() - began
        cpu_used = cpu_seconds(server.pid) - cpu_before
        stats = httpx.get(url + "/_sandbox/stats", timeout=10.0).json()
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()

    statuses: dict[str, int] = {}
    for r in results:
        for code, n in r["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    done = sum(statuses.values())
    elapsed = max(r["elapsed"] for r in results)
    errors = sum(r["errors"] for r in results)
    print(f"machine:   {machine()}; {server_stack()}")
    print(f"load:      {done} x POST /v1/sms, {args.client_procs} client process(es) x {args.threads} threads, "
          f"keep-alive httpx.Client (KeepAliveTransport) each")
    print(f"statuses:  {statuses}, transport errors: {errors} {results[0]['first_error'] or ''}")
    print(f"server:    counted {stats['by_provider']['dropcowboy']['accepted']} accepted")
    print(f"elapsed:   {elapsed:.2f} s (wall incl. client start {wall:.2f} s)")
    if cpu_used > 0 and done:
        per_request = cpu_used / done
        print(f"server CPU: {per_request * 1e6:.0f} us/request (one core could answer ~{1 / per_request:,.0f}/s)")
        print(f"client CPU: {sum(r['cpu'] for r in results) / done * 1e6:.0f} us/request (httpx, all client processes)")
    print(f"throughput: {done / elapsed:,.0f} requests/s")


if __name__ == "__main__":
    main()
