"""Server benchmark: throughput and tail latency of `minilm serve` with dynamic batching against
batch-1 serving, at concurrency 1, 8 and 32, in one run, on this machine.

    python -m bench.serve_throughput ARTIFACT [--seconds 10] [--threads 1] [--out bench/results]
    python -m bench.serve_throughput ARTIFACT --max-words 6 --name serve_throughput_short   # short queries

Each mode runs its own `minilm serve` process (batch-1: --max-batch-size 1; dynamic: up to 32 texts
per batch, waiting at most --delay-ms; dynamic-chunked: the same batches run sorted by length in
chunks of 8, so short texts are not padded to the longest of 32); clients are closed-loop (each sends its next request when the
last is answered), one text per request, texts drawn from rotten-tomatoes' test split (real lengths).
The client runs on the same CPU as the server, so the figures are a floor for a dedicated server.

Targets (issue #6): dynamic batching >= 2x batch-1 throughput at concurrency 32, with p99 below 4x
the single-request latency (batch-1, concurrency 1, p50). Results: bench/results/serve_throughput.{json,md}.
The same texts are also run in-process at batch 1, 8 and 32 (no server): if the model itself gets no
cheaper per text in larger batches, no batching server can multiply its throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from bench import harness

MODES = {"batch-1": ["--max-batch-size", "1", "--max-queue-delay-ms", "0", "--chunk-size", "0"],
         "dynamic": ["--max-batch-size", "32", "--max-queue-delay-ms", "{delay}", "--chunk-size", "0"],
         "dynamic-chunked": ["--max-batch-size", "32", "--max-queue-delay-ms", "{delay}", "--chunk-size", "8"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(artifact: str, mode_args: list[str], threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-c", "from minilm_deploy.cli.main import entry; entry()", "serve", artifact,
           "--port", str(port), "--threads", str(threads), "--max-queue", "1024", *mode_args]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server failed: {proc.stderr.read()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not become ready")


def model_name(url: str) -> str:
    return httpx.get(f"{url}/v2/models/unknown-probe").json()["error"].split("'")[-2]


async def load_level(url: str, model: str, texts: list[str], concurrency: int, seconds: float) -> dict:
    """Closed loop: `concurrency` keep-alive connections, each sending its next request when answered.

    The client is a few lines over asyncio streams, not a full HTTP library: on a 2-core machine the
    load generator shares the CPU with the server, and a heavy client would measure itself. Each request's
    latency is this client's own clock around it: concurrent, asynchronous requests are not the sequential
    calls `minilm_deploy.bench.timing.measure` times."""
    host, port = url.removeprefix("http://").split(":")
    path = f"/v2/models/{model}/infer"
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    rng = random.Random(concurrency)
    bodies = [json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [t]}]}).encode() for t in texts]

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < stop_at:
                body = rng.choice(bodies)
                head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                t0 = time.perf_counter()
                writer.write(head.encode() + body)
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                errors += status != 200
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors, "seconds": wall,
            "throughput_rps": len(latencies) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99))}


def batch_stats(url: str) -> dict:
    text = httpx.get(f"{url}/metrics").text
    value = {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln.startswith("minilm_batch_texts_")}
    count, total = value.get("minilm_batch_texts_count", 0), value.get("minilm_batch_texts_sum", 0)
    return {"model_calls": int(count), "texts": int(total), "mean_batch": total / count if count else 0.0}


def run(args: argparse.Namespace) -> dict:
    from minilm_deploy.sources import load_task

    texts = [ex.text for ex in load_task(args.task).splits[args.split]]
    if args.max_words:
        texts = [" ".join(t.split()[: args.max_words]) for t in texts]
    results = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "artifact": args.artifact,
               "command": "python " + " ".join(sys.argv),
               "machine": {"cpu": platform.processor() or _cpu(), "cores": os.cpu_count(), "load_before": os.getloadavg()},
               "settings": {"seconds_per_level": args.seconds, "threads": args.threads, "delay_ms": args.delay_ms,
                            "task": f"{args.task}:{args.split}", "texts": len(texts), "max_words": args.max_words}, "modes": {}}
    for mode, template in MODES.items():
        proc, url = start_server(args.artifact, [a.format(delay=args.delay_ms) for a in template], args.threads)
        try:
            model = model_name(url)
            asyncio.run(load_level(url, model, texts, 4, args.warmup))  # warm-up, not recorded
            before = batch_stats(url)
            levels = []
            for c in args.concurrency:
                level = asyncio.run(load_level(url, model, texts, c, args.seconds))
                after = batch_stats(url)
                level["mean_batch"] = (after["texts"] - before["texts"]) / max(after["model_calls"] - before["model_calls"], 1)
                before = after
                levels.append(level)
                print(f"{mode:8} c={c:<3} {level['throughput_rps']:8.1f} req/s  p50 {level['p50_ms']:7.2f} ms  "
                      f"p99 {level['p99_ms']:7.2f} ms  mean batch {level['mean_batch']:.1f}  errors {level['errors']}", file=sys.stderr)
            results["modes"][mode] = levels
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    results["targets"] = targets(results)
    results["model_scaling"] = model_scaling(args.artifact, texts, args.threads)
    results["machine"]["load_after"] = os.getloadavg()
    return results


def targets(results: dict) -> dict:
    b1 = {lv["concurrency"]: lv for lv in results["modes"]["batch-1"]}
    top, single = max(b1), b1[min(b1)]["p50_ms"]
    out = {}
    for mode in (m for m in results["modes"] if m != "batch-1"):
        dyn = {lv["concurrency"]: lv for lv in results["modes"][mode]}
        ratio = dyn[top]["throughput_rps"] / b1[top]["throughput_rps"]
        p99 = dyn[top]["p99_ms"] / single
        out[mode] = {"concurrency": top, "throughput_ratio": ratio, "throughput_met": ratio >= 2.0,
                     "single_request_p50_ms": single, "p99_over_single": p99, "p99_met": p99 < 4.0}
    return out


def model_scaling(artifact: str, texts: list[str], threads: int, n: int = 128) -> list[dict]:
    """In-process texts/s of the Predictor alone at batch 1, 8, 32 and 32-in-chunks-of-8 (best of 3)."""
    from minilm_deploy.bench.timing import wall_clock
    from minilm_deploy.runtime import Predictor

    texts = texts[:n]
    out = []
    with Predictor.load(artifact, threads=threads) as p:
        for batch, chunk in ((1, 0), (8, 0), (32, 0), (32, 8)):
            best = min(wall_clock(lambda b=batch, c=chunk: [p.predict(texts[i : i + b], chunk_size=c) for i in range(0, n, b)])
                       for _ in range(3))
            out.append({"batch": batch, "chunk_size": chunk, "texts_per_s": n / best})
    return out


def markdown(results: dict) -> str:
    lines = [f"# Server throughput: {Path(results['artifact']).name}", "",
             f"{results['created']} · {results['machine']['cpu']} · {results['machine']['cores']} cores · "
             f"load average before {results['machine']['load_before'][0]:.1f}, after {results['machine']['load_after'][0]:.1f} · "
             f"server threads {results['settings']['threads']} · {results['settings']['seconds_per_level']} s per level · "
             f"one text per request from {results['settings']['task']}"
             f"{' cut to ' + str(results['settings']['max_words']) + ' words' if results['settings']['max_words'] else ''} · "
             "the client runs on the same CPU", "", f"`{results['command']}`", "",
             "| mode | concurrency | req/s | p50 ms | p90 ms | p99 ms | mean batch | errors |", "|---|---|---|---|---|---|---|---|"]
    for mode, levels in results["modes"].items():
        lines += [f"| {mode} | {lv['concurrency']} | {lv['throughput_rps']:.1f} | {lv['p50_ms']:.2f} | {lv['p90_ms']:.2f} | "
                  f"{lv['p99_ms']:.2f} | {lv['mean_batch']:.1f} | {lv['errors']} |" for lv in levels]
    lines += [""]
    for mode, t in results["targets"].items():
        lines += [f"- {mode} / batch-1 throughput at concurrency {t['concurrency']}: **{t['throughput_ratio']:.2f}x** "
                  f"(target >= 2x: {'met' if t['throughput_met'] else 'NOT met'}); p99 / single-request p50 "
                  f"({t['single_request_p50_ms']:.2f} ms): **{t['p99_over_single']:.2f}x** (target < 4x: {'met' if t['p99_met'] else 'NOT met'})"]
    lines += ["", "Model alone, in process (same texts, best of 3):", "", "| batch | chunks | texts/s |", "|---|---|---|"]
    lines += [f"| {m['batch']} | {m['chunk_size'] or '–'} | {m['texts_per_s']:.1f} |" for m in results["model_scaling"]]
    t = next(iter(results["targets"].values()))
    c, single = t["concurrency"], t["single_request_p50_ms"] / 1000
    need = c / (4 * single)  # Little's law: mean latency = clients / throughput in a closed loop
    best = max(m["texts_per_s"] for m in results["model_scaling"])
    one = next(m["texts_per_s"] for m in results["model_scaling"] if m["batch"] == 1)
    lines += ["", f"Reading: with {c} closed-loop clients the mean latency is {c} / throughput (Little's law), so a p99 "
              f"under 4x the single-request latency needs at least {need:.0f} req/s, {need / best:.1f}x the model's best "
              f"in-process rate ({best:.0f} texts/s). The model alone gains {best / one:.2f}x from batching on this CPU, "
              "which bounds what any batching server can add here."]
    return "\n".join(lines) + "\n"


def _cpu() -> str:
    try:
        return next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", help="an export artifact, e.g. artifacts/all-minilm-l6-v2-onnx-cpu-int8")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per concurrency level")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per server")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=1, help="server inference threads (the client needs a core too)")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="dynamic batching: max queue delay")
    parser.add_argument("--task", default="zoo:rotten-tomatoes")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-words", type=int, default=0, help="cut each text to its first N words (0: real lengths)")
    parser.add_argument("--name", default="serve_throughput", help="result file name (without extension)")
    parser.add_argument("--out", type=Path, default=harness.RESULTS)
    args = parser.parse_args()
    results = run(args)
    harness.write_report(args.out / args.name, results, markdown(results), indent=2)
    print(markdown(results))


if __name__ == "__main__":
    main()
