"""Load on the web app: concurrent sessions streaming completions from a local `genseq serve`.

Starts `genseq serve` on a free loopback port in a subprocess, warms the model
up with one request, then runs --sessions client sessions (one thread and one
client each) that submit requests back to back until --seconds have passed or
--max-requests were sent. The sessions are gradio_client ones calling
/completion; with --api, a second round of the same load follows through the
OpenAI-compatible API (the official openai client, streamed /v1/completions), on
the same server, with the Gradio round as its reference. Reports requests per
second, p50 and p95 latency, p50 and p95 time to the first streamed output,
generated tokens per second (the API's usage counts) and errors. Traffic stays
on 127.0.0.1, and the run is bounded in time and count.

    python benchmarks/bench_app_load.py [--model DIR] [--sessions 8] [--seconds 60] [--max-new-tokens 50] [--api]
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
    tokens: int = 0
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


def gradio_client(url: str) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def gradio_request(client: Client, prompt: str, seed: int, max_new_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first streamed output, seconds to the whole result, tokens generated) of one /completion."""
    start = time.perf_counter()
    job = client.submit(prompt=prompt, max_new_tokens=max_new_tokens, seed=seed, api_name="/completion")
    next(iter(job))
    first = time.perf_counter() - start
    result = job.result()  # waits on the job's future, without the iterator's polling
    return first, time.perf_counter() - start, generated_tokens(result)


def generated_tokens(outputs) -> int:
    """The token count of the completion records among a result's outputs (0 when it shows none)."""
    for output in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
        if isinstance(output, list) and output and isinstance(output[0], dict) and "tokens" in output[0]:
            return len(output[0]["tokens"])
    return 0


def api_client(url: str):
    import openai

    return openai.OpenAI(base_url=url + "v1", api_key="unused", max_retries=0, timeout=600)


def api_request(client, prompt: str, seed: int, max_new_tokens: int) -> tuple[float, float, int]:
    """The same figures for one streamed /v1/completions request through the openai client."""
    start, first, tokens = time.perf_counter(), None, 0
    for chunk in client.completions.create(model="default", prompt=prompt, max_tokens=max_new_tokens, seed=seed,
                                           stream=True, stream_options={"include_usage": True}):
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.perf_counter() - start
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    latency = time.perf_counter() - start
    return latency if first is None else first, latency, tokens


CLIENTS = {"gradio": (gradio_client, gradio_request), "api": (api_client, api_request)}


def session(url: str, kind: str, index: int, args, deadline: float, sent: list, tally: Tally) -> None:
    connect, one_request = CLIENTS[kind]
    client = connect(url)
    while time.monotonic() < deadline:
        with tally.lock:
            if sent[0] >= args.max_requests:
                return
            sent[0] += 1
            number = sent[0]
        try:
            first, latency, tokens = one_request(client, PROMPTS[number % len(PROMPTS)], number, args.max_new_tokens)
        except Exception as error:  # counted and reported; the load goes on
            with tally.lock:
                tally.errors.append(f"{kind} session {index}: {type(error).__name__}: {error}")
            continue
        with tally.lock:
            tally.first_outputs.append(first)
            tally.latencies.append(latency)
            tally.tokens += tokens


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def load(url: str, kind: str, args) -> dict:
    """One round of --sessions concurrent sessions of this kind of client, and its figures."""
    connect, one_request = CLIENTS[kind]
    one_request(connect(url), PROMPTS[0], 0, 5)  # the model loads before the clock starts
    tally, sent = Tally(), [0]
    start = time.monotonic()
    threads = [threading.Thread(target=session, args=(url, kind, i, args, start + args.seconds, sent, tally))
               for i in range(args.sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    done = len(tally.latencies)

    def quantile(values: list[float], q: int) -> float | None:
        return round(percentile(values, q), 3) if done else None

    return {
        "client": kind, "seconds": round(elapsed, 1), "requests": done, "errors": len(tally.errors),
        "requests_per_second": round(done / elapsed, 2), "tokens_per_second": round(tally.tokens / elapsed, 1),
        "latency_p50_s": quantile(tally.latencies, 50), "latency_p95_s": quantile(tally.latencies, 95),
        "first_output_p50_s": quantile(tally.first_outputs, 50), "first_output_p95_s": quantile(tally.first_outputs, 95),
        "first_errors": tally.errors[:3],
    }


def run(args) -> dict:
    port = free_port()
    server = start_server(port, args.model, args.concurrency)
    url = f"http://127.0.0.1:{port}/"
    try:
        rounds = [load(url, kind, args) for kind in (("gradio", "api") if args.api else ("gradio",))]
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {"sessions": args.sessions, "max_new_tokens": args.max_new_tokens, "server_concurrency": args.concurrency,
              "model": args.model or "default", "rounds": rounds, "errors": sum(round_["errors"] for round_ in rounds)}
    if args.api and rounds[0]["first_output_p50_s"] and rounds[1]["first_output_p50_s"]:
        report["api_vs_gradio"] = {
            "first_output_p50": round(rounds[1]["first_output_p50_s"] / rounds[0]["first_output_p50_s"], 2),
            "tokens_per_second": round(rounds[1]["tokens_per_second"] / max(rounds[0]["tokens_per_second"], 1e-9), 2),
        }
    return report


def print_report(report: dict) -> None:
    print(f"{report['sessions']} sessions a round, {report['max_new_tokens']} new tokens a request, "
          f"server concurrency {report['server_concurrency']}, model {report['model']}")
    for round_ in report["rounds"]:
        print(f"\n{round_['client']} clients for {round_['seconds']} s")
        print(f"requests      {round_['requests']} ({round_['errors']} errors)")
        print(f"throughput    {round_['requests_per_second']} requests/s   {round_['tokens_per_second']} tokens/s")
        print(f"latency       p50 {round_['latency_p50_s']} s   p95 {round_['latency_p95_s']} s")
        print(f"first output  p50 {round_['first_output_p50_s']} s   p95 {round_['first_output_p95_s']} s")
        for error in round_["first_errors"]:
            print(f"error: {error}")
    if "api_vs_gradio" in report:
        ratios = report["api_vs_gradio"]
        print(f"\nAPI / Gradio  first output p50 x{ratios['first_output_p50']}   tokens/s x{ratios['tokens_per_second']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="completion checkpoint directory (default: the embedded model)")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs (default 60)")
    parser.add_argument("--max-requests", type=int, default=5000, help="stop after this many requests (default 5000)")
    parser.add_argument("--max-new-tokens", type=int, default=50, help="tokens per completion (default 50)")
    parser.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency (default 2)")
    parser.add_argument("--api", action="store_true",
                        help="a second round through the OpenAI-compatible API (openai client, streamed)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    report = run(args)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
