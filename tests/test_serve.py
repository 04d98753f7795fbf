"""`minilm serve` as a real process on loopback: the official tritonclient, malformed requests, auth,
metrics, a bounded load test, overload (503), timeouts (504) and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from test_runtime import make_artifact

from minilm_deploy.runtime import Predictor

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORDS = "the a movie film good bad great not very i you love hate fun plot story hello world".split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`minilm serve ARTIFACT ...` in a child process; `url`, `stop()` → exit code."""

    def __init__(self, artifact: Path, *args: str, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("MINILM_SERVE_TOKEN", None)
        if token:
            env["MINILM_SERVE_TOKEN"] = token
        cmd = [sys.executable, "-c", "from minilm_deploy.cli.main import entry; entry()", "serve", str(artifact),
               "--port", str(self.port), "--threads", "1", *args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not become ready in 90 s")

    def live(self) -> bool:
        return self.proc.poll() is None and httpx.get(f"{self.url}/v2/health/live", timeout=5).status_code == 200

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the server and wait; uvicorn re-raises the signal after its graceful shutdown, so a
        clean stop ends with -SIGTERM (or 0); anything else, or a traceback, is a failure."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        clean = self.proc.returncode in (0, -sig) and "Traceback" not in self.stderr
        return 0 if clean else (self.proc.returncode or 1)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from conftest import make_tiny_bert

    root = tmp_path_factory.mktemp("serve")
    cls = make_tiny_bert(root / "sentiment-hf", architecture="BertForSequenceClassification", num_labels=2,
                         id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    enc = make_tiny_bert(root / "encoder-hf", seed=1)
    return make_artifact(cls, root / "sentiment"), make_artifact(enc, root / "encoder")  # Triton model names


@pytest.fixture(scope="module")
def auth_server(artifacts):
    server = Server(artifacts[0], "--max-body-bytes", "4096", "--max-queue-delay-ms", "2", token=TOKEN)
    yield server
    assert server.stop() == 0


def infer_body(texts, datatype="BYTES", shape=None, name="text", **extra) -> bytes:
    tensor = {"name": name, "datatype": datatype, "shape": shape if shape is not None else [len(texts)], "data": texts}
    return json.dumps({"inputs": [tensor], **extra}).encode()


def test_tritonclient_health_metadata_and_results_equal_the_predictor(auth_server, artifacts):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(auth_server.url.removeprefix("http://"))
    assert client.is_server_live(headers=AUTH) and client.is_server_ready(headers=AUTH)
    assert client.is_model_ready("sentiment", headers=AUTH)
    meta = client.get_model_metadata("sentiment", headers=AUTH)
    assert meta["name"] == "sentiment" and [i["name"] for i in meta["inputs"]] == ["text", "text_pair"]
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {"label": [-1], "scores": [-1, 2]}
    served = client.get_model_config("sentiment", headers=AUTH)
    assert served["max_batch_size"] == 256 and served["dynamic_batching"]["preferred_batch_size"] == [32]  # the defaults
    outputs = {o["name"]: o for o in served["output"]}
    assert outputs["label"]["dims"] == [1] and outputs["label"]["reshape"] == {"shape": []}  # batch-only, as returned
    assert outputs["scores"]["dims"] == [2] and "reshape" not in outputs["scores"]
    too_many = httpx.post(f"{auth_server.url}/v1/predict", json={"texts": ["a"] * 257}, headers=AUTH)
    assert too_many.status_code == 400 and "at most 256" in too_many.json()["error"]  # the advertised limit, enforced

    texts = ["a good movie", "the plot is very bad", "hello world, i love this film"]
    pairs = ["yes", "no", "maybe so"]
    with Predictor.load(artifacts[0], threads=1) as local:
        want, want_pairs = local.predict(texts), local.predict(texts, text_pairs=pairs)
    inp = triton.InferInput("text", [3], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))  # binary data extension
    result = client.infer("sentiment", [inp], headers=dict(AUTH), request_id="r-1")  # the client writes into headers
    assert [b.decode() for b in result.as_numpy("label")] == want.labels
    np.testing.assert_allclose(result.as_numpy("scores"), want.scores, atol=1e-6)
    assert result.get_response()["id"] == "r-1"

    json_in = triton.InferInput("text", [3, 1], "BYTES")
    json_in.set_data_from_numpy(np.array([[t] for t in texts], dtype=object), binary_data=False)
    pair_in = triton.InferInput("text_pair", [3, 1], "BYTES")
    pair_in.set_data_from_numpy(np.array([[p] for p in pairs], dtype=object), binary_data=False)
    out = triton.InferRequestedOutput("scores", binary_data=False)
    result = client.infer("sentiment", [json_in, pair_in], outputs=[out], headers=dict(AUTH), model_version="1")
    np.testing.assert_allclose(result.as_numpy("scores"), want_pairs.scores, atol=1e-6)
    assert result.as_numpy("label") is None  # only what was asked for
    client.close()


def test_plain_json_predict(auth_server, artifacts):
    r = httpx.post(f"{auth_server.url}/v1/predict", json={"texts": ["good fun", "bad"]}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "sentiment" and body["task"] == "classification"
    assert [set(p) for p in body["predictions"]] == [{"label", "score", "scores"}] * 2
    assert abs(sum(body["predictions"][0]["scores"].values()) - 1) < 1e-5


MALFORMED = [  # (description, method, path, body, headers, status)
    ("bad JSON", "POST", "/v2/models/sentiment/infer", b"{not json", AUTH, 400),
    ("no inputs", "POST", "/v2/models/sentiment/infer", b'{"outputs": []}', AUTH, 400),
    ("wrong datatype", "POST", "/v2/models/sentiment/infer", infer_body([1, 2], datatype="INT64"), AUTH, 400),
    ("numbers as BYTES", "POST", "/v2/models/sentiment/infer", infer_body([1, 2]), AUTH, 400),
    ("shape vs data", "POST", "/v2/models/sentiment/infer", infer_body(["a", "b", "c"], shape=[2]), AUTH, 400),
    ("shape rank", "POST", "/v2/models/sentiment/infer", infer_body(["a", "b", "c", "d"], shape=[2, 2]), AUTH, 400),
    ("empty batch", "POST", "/v2/models/sentiment/infer", infer_body([], shape=[0]), AUTH, 400),
    ("unknown input", "POST", "/v2/models/sentiment/infer", infer_body(["a"], name="image"), AUTH, 400),
    ("unknown output", "POST", "/v2/models/sentiment/infer", infer_body(["a"], outputs=[{"name": "logits"}]), AUTH, 400),
    ("bad header length", "POST", "/v2/models/sentiment/infer", infer_body(["a"]), {**AUTH, "Inference-Header-Content-Length": "99999"}, 400),
    ("pairs mismatch", "POST", "/v1/predict", b'{"texts": ["a", "b"], "text_pairs": ["c"]}', AUTH, 400),
    ("v1 empty", "POST", "/v1/predict", b'{"texts": []}', AUTH, 400),
    ("v1 not a list", "POST", "/v1/predict", b'{"texts": "abc"}', AUTH, 400),
    ("oversized body", "POST", "/v2/models/sentiment/infer", infer_body(["word " * 2000]), AUTH, 413),
    ("nested too deeply", "POST", "/v1/predict", b'{"texts": ' + b"[" * 2000 + b"]" * 2000 + b"}", AUTH, 400),
    ("infer nested too deeply", "POST", "/v2/models/sentiment/infer", b'{"inputs": ' + b"[" * 2000 + b"]" * 2000 + b"}", AUTH, 400),
    ("unknown model", "POST", "/v2/models/nope/infer", infer_body(["a"]), AUTH, 404),
    ("unknown version", "GET", "/v2/models/sentiment/versions/7", b"", AUTH, 404),
    ("unknown route", "GET", "/v3/anything", b"", AUTH, 404),
    ("wrong method", "GET", "/v2/models/sentiment/infer", b"", AUTH, 405),
    ("missing token", "POST", "/v2/models/sentiment/infer", infer_body(["a"]), {}, 401),
    ("wrong token", "GET", "/v2/models/sentiment", b"", {"Authorization": "Bearer nope"}, 401),
    ("metrics need the token", "GET", "/metrics", b"", {}, 401),
]


@pytest.mark.parametrize("what,method,path,body,headers,status", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_4xx_and_the_server_stays_up(auth_server, what, method, path, body, headers, status):
    r = httpx.request(method, auth_server.url + path, content=body or None, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    if status != 405:
        assert set(r.json()) == {"error"} and r.json()["error"]
    assert auth_server.live()
    ok = httpx.post(f"{auth_server.url}/v2/models/sentiment/infer", content=infer_body(["still fine"]), headers=AUTH)
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"][0] in {"negative", "positive"}


def test_probes_are_open_and_metrics_count_answers(auth_server):
    assert httpx.get(f"{auth_server.url}/v2/health/ready").status_code == 200  # no token needed
    httpx.post(f"{auth_server.url}/v1/predict", content=b"{", headers=AUTH)
    text = httpx.get(f"{auth_server.url}/metrics", headers=AUTH).text
    assert 'minilm_requests_total{code="400",route="/v1/predict"}' in text
    assert "minilm_batch_texts_count" in text and "minilm_queue_depth" in text
    assert 'minilm_rejected_total{reason="malformed"}' in text


def test_load_2000_requests_at_concurrency_32_with_10_percent_malformed(artifacts):
    """Zero 5xx, every request answered, every answer the one for its own texts."""
    server = Server(artifacts[1], "--max-batch-size", "32", "--max-queue-delay-ms", "2", "--max-queue", "512")
    rng = random.Random(0)
    jobs = []
    for i in range(2000):
        if i % 10 == 3:
            jobs.append(("bad", rng.choice([b"{oops", infer_body([], shape=[0]), infer_body([5]), infer_body(["x"], datatype="FP32")])))
        else:
            texts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) for _ in range(rng.randint(1, 3))]
            jobs.append(("ok", texts))
    with Predictor.load(artifacts[1], threads=1) as local:
        expected = {i: local.predict(j[1]).embeddings for i, j in enumerate(jobs) if j[0] == "ok"}
    try:
        statuses, answers = asyncio.run(_fire(server.url, jobs, concurrency=32))
        assert len(statuses) == 2000
        assert not [s for s in statuses.values() if s >= 500]
        assert all(statuses[i] == (200 if j[0] == "ok" else 400) for i, j in enumerate(jobs))
        for i, emb in expected.items():
            np.testing.assert_allclose(answers[i], emb, atol=1e-4, err_msg=f"request {i} got another answer")
        metrics = httpx.get(f"{server.url}/metrics").text
        batches = [ln for ln in metrics.splitlines() if ln.startswith("minilm_batch_texts_count")]
        assert batches and float(batches[0].split()[-1]) < 1800 + 1  # some requests shared a model call
    finally:
        assert server.stop() == 0, server.stderr[-3000:]


async def _fire(url: str, jobs, concurrency: int):
    statuses, answers = {}, {}
    queue: asyncio.Queue = asyncio.Queue()
    for item in enumerate(jobs):
        queue.put_nowait(item)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i, (kind, payload) = queue.get_nowait()
            body = infer_body(payload, id=f"req-{i}") if kind == "ok" else payload
            r = await client.post(f"{url}/v2/models/encoder/infer", content=body)
            statuses[i] = r.status_code
            if r.status_code == 200:
                out = r.json()
                assert out["id"] == f"req-{i}"
                answers[i] = np.array(out["outputs"][0]["data"], dtype=np.float32).reshape(out["outputs"][0]["shape"])

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return statuses, answers


def test_full_queue_503_timeout_504_and_graceful_shutdown(artifacts):
    """Requests waiting in a long batching window: those past the queue bound get 503; a short client
    timeout gets 504; SIGTERM lets the waiting requests finish with 200, then the process exits 0."""
    server = Server(artifacts[0], "--max-queue", "2", "--max-queue-delay-ms", "2500", "--max-batch-size", "64",
                    "--wait-when-idle")
    url = f"{server.url}/v2/models/sentiment/infer"
    r = httpx.post(url, content=infer_body(["slow"], parameters={"timeout": 200_000}), timeout=30)  # 0.2 s
    assert r.status_code == 504 and "timed out" in r.json()["error"]
    time.sleep(2.6)  # its batching window closes
    results: dict[int, int] = {}

    def send(i: int) -> None:
        results[i] = httpx.post(url, content=infer_body([f"text {i}"]), timeout=60).status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    time.sleep(0.3)
    code = server.stop(signal.SIGTERM)  # while the accepted requests still wait for their batch
    for t in threads:
        t.join(timeout=60)
    assert code == 0
    assert sorted(results) == list(range(5)) and set(results.values()) <= {200, 503}
    assert results == {0: 200, 1: 200, 2: 503, 3: 503, 4: 503}  # two wait in the gathering batch; the rest are refused


def test_bad_command_lines_fail_in_one_line(artifacts, tmp_path):
    from minilm_deploy.cli.main import main

    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert main(["serve", str(artifacts[0]), "--max-batch-size", "0"]) == 2
    empty = tmp_path / "token"
    empty.write_text("\n")
    assert main(["serve", str(artifacts[0]), "--token-file", str(empty)]) == 2


@pytest.mark.parametrize("host,expected", [("no-such-host.invalid", "not an address or a known host name"),
                                           ("10.255.255.254", "not an address of this machine"),
                                           ("127.0.0.1", "is in use; choose another --port")])
def test_a_bad_host_or_a_busy_port_is_named_before_the_model_loads(artifacts, capsys, host, expected):
    from minilm_deploy.cli.main import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        capsys.readouterr()
        code = main(["serve", str(artifacts[0]), "--host", host, "--port", str(port)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err


# Issue 18, root causes 2 and 7: no slow or idle client can hold the server.

def _raw(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


def _closed_after(sock: socket.socket, send: list[bytes], every_s: float, limit_s: float) -> tuple[float, bytes]:
    """Send `send` one piece every `every_s`, reading what comes back, until the server closes the connection
    (or `limit_s` passes); returns (seconds until closed, everything the server sent)."""
    start, got = time.monotonic(), b""
    sock.settimeout(every_s)
    pieces = list(send) + [b""] * int(limit_s / every_s)
    for piece in pieces:
        try:
            if piece:
                sock.sendall(piece)
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # reset by the server
            break
        if not data:  # closed by the server
            break
        got += data
    return time.monotonic() - start, got


@pytest.fixture(scope="module")
def strict_server(artifacts):
    server = Server(artifacts[0], "--header-timeout", "2", "--body-timeout", "2", "--idle-timeout", "2")
    yield server
    assert server.stop() == 0


def test_a_client_trickling_its_headers_is_closed_at_the_header_deadline(strict_server):
    request = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\n"
    with _raw(strict_server) as sock:
        seconds, got = _closed_after(sock, [request[i:i + 3] for i in range(0, len(request), 3)], 0.33, 20)
    assert seconds < 4.5 and got == b"", (seconds, got)  # 2 s deadline; closed without an answer
    assert strict_server.live()


def _request(text: str) -> tuple[bytes, bytes]:
    """A /v1/predict request for one text, as (head with its closing blank line, body)."""
    body = json.dumps({"texts": [text]}).encode()
    return (f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode(), body


def _answer(sock: socket.socket) -> bytes:
    """One whole HTTP response from `sock` (headers and a Content-Length body); b"" if the server closed."""
    got = b""
    while b"\r\n\r\n" not in got:
        data = sock.recv(65536)
        if not data:
            return got
        got += data
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def keepalive_server(artifacts):
    server = Server(artifacts[0], "--header-timeout", "1", "--idle-timeout", "4")
    yield server
    assert server.stop() == 0


def test_a_keep_alive_connection_lasts_the_idle_timeout_not_the_header_deadline(keepalive_server):
    """Between requests only the idle timeout counts: a pool reusing a connection after a pause shorter than it
    gets an answer, not a connection the server is closing (the CI failure of stop 28: httpx ReadError)."""
    with _raw(keepalive_server) as sock:
        sock.sendall(b"".join(_request("first")))
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(2)  # twice the header deadline, half the idle timeout
        sock.sendall(b"".join(_request("after a pause")))
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        seconds, got = _closed_after(sock, [], 0.25, 20)  # then silence: closed at the idle timeout
    assert 2 < seconds < 8 and got == b"", (seconds, got)


def test_a_next_request_trickling_its_headers_is_closed_at_the_header_deadline(keepalive_server):
    head, body = _request("slow")
    with _raw(keepalive_server) as sock:
        sock.sendall(head + body)
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        head = head.removesuffix(b"\r\n\r\n")  # never finished
        seconds, got = _closed_after(sock, [head[i:i + 3] for i in range(0, len(head), 3)], 0.25, 20)
    assert seconds < 3.5 and got == b"", (seconds, got)  # 1 s from its first byte; the idle timeout is 4 s
    assert keepalive_server.live()


def test_the_default_idle_timeout_outlasts_httpx_pooled_connections():
    from minilm_deploy.serve.config import ServeConfig

    assert ServeConfig().idle_timeout_s > httpx.Limits().keepalive_expiry


def test_a_client_trickling_its_body_gets_408_at_the_body_deadline(strict_server):
    head, body = _request("a slow client sends this text three bytes at a time")
    with _raw(strict_server) as sock:
        sock.sendall(head)
        seconds, got = _closed_after(sock, [body[i:i + 3] for i in range(0, len(body), 3)], 0.33, 20)
    assert seconds < 4.5 and got.startswith(b"HTTP/1.1 408"), (seconds, got[:200])
    assert strict_server.live()


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(auth_server):
    head = ("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000000000\r\n\r\n").encode()
    with _raw(auth_server) as sock:
        sock.sendall(head)  # and not one byte of the body
        sock.settimeout(10)
        got = sock.recv(65536)
    assert got.startswith(b"HTTP/1.1 413"), got[:200]


def test_1000_idle_sockets_do_not_stop_the_server_answering_others(strict_server):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    idle = [socket.create_connection(("127.0.0.1", strict_server.port), timeout=10) for _ in range(1000)]
    try:
        with httpx.Client(timeout=10) as client:
            answers = [client.post(f"{strict_server.url}/v1/predict", json={"texts": [f"still serving {i}"]})
                       for i in range(20)]
        assert [r.status_code for r in answers] == [200] * 20
        time.sleep(3.5)  # past the 2 s header deadline: the server has closed every idle socket
        closed = 0
        for sock in idle:
            sock.settimeout(0.5)
            try:
                closed += sock.recv(1) == b""
            except (TimeoutError, OSError):
                pass
        assert closed == 1000
    finally:
        for sock in idle:
            sock.close()
    assert strict_server.live()
