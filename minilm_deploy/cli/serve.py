"""`minilm serve`: Serve an exported artifact over HTTP (Open Inference Protocol / KServe v2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from minilm_deploy.errors import InputError
from minilm_deploy.serve.config import ServeConfig

DEFAULTS = ServeConfig()  # the flags' defaults are the config's: one place for each

TOKEN_ENV = "MINILM_SERVE_TOKEN"


def command(
    artifact: Annotated[Path, typer.Argument(metavar="ARTIFACT", help="An export artifact (or a Hugging Face model folder).", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 exposes the server to the network.")] = DEFAULTS.host,
    port: Annotated[int, typer.Option(help="TCP port.")] = DEFAULTS.port,
    model_name: Annotated[str, typer.Option(help="Model name in /v2/models/NAME (default: the artifact's Triton model name).")] = DEFAULTS.model_name,
    backend: Annotated[str, typer.Option(help="auto, torch, torch-bf16, onnxruntime, openvino or tensorrt.")] = "auto",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: Annotated[int, typer.Option(help="Inference threads (0: the library default).")] = 0,
    max_batch_size: Annotated[int, typer.Option(help="Texts per model call; 1 turns dynamic batching off.")] = DEFAULTS.max_batch_size,
    max_queue_delay_ms: Annotated[float, typer.Option(help="How long a request may wait to share a batch.")] = DEFAULTS.max_queue_delay_ms,
    chunk_size: Annotated[int, typer.Option(help="Run each batch sorted by length in chunks of this many texts (less padding on a CPU; 0: one call, for a GPU).")] = DEFAULTS.chunk_size,
    wait_when_idle: Annotated[bool, typer.Option("--wait-when-idle", help="Delay even a lone request by the queue delay (default: only when requests overlap).")] = DEFAULTS.wait_when_idle,
    max_queue: Annotated[int, typer.Option(help="Requests waiting for a batch; beyond it the server answers 503.")] = DEFAULTS.max_queue,
    max_request_texts: Annotated[int, typer.Option(help="Most texts in one request (the max_batch_size the model config advertises); more is a 400.")] = DEFAULTS.max_request_texts,
    max_body_bytes: Annotated[int, typer.Option(help="Request body limit; beyond it the server answers 413.")] = DEFAULTS.max_body_bytes,
    timeout: Annotated[float, typer.Option(help="Seconds per request, queueing included; beyond it 504.")] = DEFAULTS.timeout_s,
    header_timeout: Annotated[float, typer.Option(help="Seconds a request's headers have to be complete after its first byte (or after connecting); then the connection is closed.")] = DEFAULTS.header_timeout_s,
    body_timeout: Annotated[float, typer.Option(help="Seconds a client has to send a request's whole body; beyond it 408.")] = DEFAULTS.body_timeout_s,
    idle_timeout: Annotated[float, typer.Option(help="Seconds a silent keep-alive connection stays open; keep it above your clients' pool expiry (httpx: 5 s).")] = DEFAULTS.idle_timeout_s,
    token_file: Annotated[Path | None, typer.Option(help=f"A file holding the bearer token clients must send (or set ${TOKEN_ENV}).", show_default=False)] = None,
) -> None:
    """Serve an exported artifact over HTTP (Open Inference Protocol, as Triton speaks it) until Ctrl-C.

    Routes: /v2/health/live|ready, /v2/models/NAME[/ready|/config], POST /v2/models/NAME/infer (BYTES input
    "text", optional "text_pair"), POST /v1/predict {"texts": [...]}, GET /metrics (Prometheus).

    Example: minilm serve runs/quickstart/export --port 8000 --max-batch-size 32
    """
    from minilm_deploy.serve.server import serve

    token = _token(token_file)
    try:
        config = ServeConfig(
            host=host, port=port, model_name=model_name, max_batch_size=max_batch_size,
            max_queue_delay_ms=max_queue_delay_ms, chunk_size=chunk_size, wait_when_idle=wait_when_idle, max_queue=max_queue, max_request_texts=max_request_texts, max_body_bytes=max_body_bytes,
            timeout_s=timeout, token=token, header_timeout_s=header_timeout, body_timeout_s=body_timeout,
            idle_timeout_s=idle_timeout,
        )
    except ValueError as exc:
        raise InputError(f"--{str(exc).split('=')[0].removesuffix('_s').replace('_', '-')}: {exc}") from None
    serve(artifact, config, backend=backend, device=device, threads=threads or None)


def _token(token_file: Path | None) -> str | None:
    if token_file is not None:
        if not token_file.is_file():
            raise InputError(f"--token-file {token_file}: no such file")
        token = token_file.read_text(encoding="utf-8").strip()
        if not token:
            raise InputError(f"--token-file {token_file}: the file is empty; put the token in it")
        return token
    return os.environ.get(TOKEN_ENV) or None
