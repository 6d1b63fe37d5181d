"""Load on the web app: concurrent gradio_client sessions streaming completions from a local `genseq serve`.

Starts `genseq serve` on a free loopback port in a subprocess, warms the model
up with one request, then runs --sessions client sessions (one thread and one
Client each) that submit /completion requests back to back until --seconds
have passed or --max-requests were sent. Reports requests per second, p50 and
p95 latency, p50 and p95 time to the first streamed output, and errors.
Traffic stays on 127.0.0.1, and the run is bounded in time and count.

    python benchmarks/bench_app_load.py [--model DIR] [--sessions 8] [--seconds 60] [--max-new-tokens 50]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field

# gradio_client's Client() would otherwise ask huggingface.co for a registry of agent names
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gradio_client import Client  # noqa: E402

PROMPTS = ("It is a truth universally acknowledged", "Call me Ishmael.", "Shall I compare thee to a summer's day?",
           "Mr. Speaker, the state of the Union", "To be, or not to be")


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    first_outputs: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, model: str | None, concurrency: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "genseq", "serve", "--port", str(port), "--concurrency", str(concurrency)]
    if model:
        command += ["--model", f"completion={model}"]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"genseq serve exited: {server.stderr.read()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    sys.exit("genseq serve did not answer within 120 s")


def one_request(client: Client, prompt: str, seed: int, max_new_tokens: int) -> tuple[float, float]:
    """(seconds to the first streamed output, seconds to the whole result) of one /completion request."""
    start = time.perf_counter()
    job = client.submit(prompt=prompt, max_new_tokens=max_new_tokens, seed=seed, api_name="/completion")
    next(iter(job))
    first = time.perf_counter() - start
    job.result()  # waits on the job's future, without the iterator's polling
    return first, time.perf_counter() - start


def session(url: str, index: int, args, deadline: float, sent: list, tally: Tally) -> None:
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    while time.monotonic() < deadline:
        with tally.lock:
            if sent[0] >= args.max_requests:
                return
            sent[0] += 1
            number = sent[0]
        try:
            first, latency = one_request(client, PROMPTS[number % len(PROMPTS)], number, args.max_new_tokens)
        except Exception as error:  # counted and reported; the load goes on
            with tally.lock:
                tally.errors.append(f"session {index}: {type(error).__name__}: {error}")
            continue
        with tally.lock:
            tally.first_outputs.append(first)
            tally.latencies.append(latency)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run(args) -> dict:
    port = free_port()
    server = start_server(port, args.model, args.concurrency)
    url = f"http://127.0.0.1:{port}/"
    try:
        one_request(Client(url, verbose=False, analytics_enabled=False, download_files=False), PROMPTS[0], 0, 5)
        tally, sent = Tally(), [0]
        start = time.monotonic()
        threads = [threading.Thread(target=session, args=(url, i, args, start + args.seconds, sent, tally))
                   for i in range(args.sessions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    done = len(tally.latencies)
    return {
        "sessions": args.sessions, "seconds": round(elapsed, 1), "max_new_tokens": args.max_new_tokens,
        "server_concurrency": args.concurrency, "model": args.model or "default",
        "requests": done, "errors": len(tally.errors), "requests_per_second": round(done / elapsed, 2),
        "latency_p50_s": round(percentile(tally.latencies, 50), 3) if done else None,
        "latency_p95_s": round(percentile(tally.latencies, 95), 3) if done else None,
        "first_output_p50_s": round(percentile(tally.first_outputs, 50), 3) if done else None,
        "first_output_p95_s": round(percentile(tally.first_outputs, 95), 3) if done else None,
        "first_errors": tally.errors[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="completion checkpoint directory (default: the embedded model)")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs (default 60)")
    parser.add_argument("--max-requests", type=int, default=5000, help="stop after this many requests (default 5000)")
    parser.add_argument("--max-new-tokens", type=int, default=50, help="tokens per completion (default 50)")
    parser.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    report = run(args)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['sessions']} sessions for {report['seconds']} s, {report['max_new_tokens']} new tokens a request, "
              f"server concurrency {report['server_concurrency']}, model {report['model']}")
        print(f"requests      {report['requests']} ({report['errors']} errors)")
        print(f"throughput    {report['requests_per_second']} requests/s")
        print(f"latency       p50 {report['latency_p50_s']} s   p95 {report['latency_p95_s']} s")
        print(f"first output  p50 {report['first_output_p50_s']} s   p95 {report['first_output_p95_s']} s")
        for error in report["first_errors"]:
            print(f"error: {error}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
