"""The HTTP app over one Predictor: Open Inference Protocol (KServe v2) routes, `/v1/predict`, `/metrics`.

    app = create_app(predictor, ServeConfig(max_batch_size=32), model_name="minilm")

Routes (a version segment `/versions/1` is accepted wherever Triton accepts one):
GET /v2, /v2/health/live, /v2/health/ready, /v2/models/{m}, /v2/models/{m}/ready, /v2/models/{m}/config;
POST /v2/models/{m}/infer; POST /v1/predict {"texts": [...], "text_pairs": [...]}; GET /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from minilm_deploy import __version__
from minilm_deploy.errors import InputError
from minilm_deploy.runtime import Predictor
from minilm_deploy.serve import protocol
from minilm_deploy.serve.batcher import DynamicBatcher, QueueFull, ShuttingDown
from minilm_deploy.serve.config import ServeConfig
from minilm_deploy.serve.middleware import AuthMiddleware, BodyLimitMiddleware, Metrics, MetricsMiddleware

log = logging.getLogger("minilm.serve")
VERSIONS = ("", "/versions/{version}")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(predictor: Predictor, config: ServeConfig, model_name: str) -> FastAPI:
    metrics = Metrics()
    batcher_box: dict[str, DynamicBatcher] = {}
    state: dict[str, Any] = {"ready": False, "width": len(predictor.label_names)}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        warm = predictor.predict(["warm up"])  # the first call allocates; do it before the first user
        state["width"] = warm.embeddings.shape[1] if warm.embeddings is not None else state["width"]
        batcher = DynamicBatcher(
            _predict(predictor, config.chunk_size), config.max_batch_size, config.max_queue_delay_ms / 1000, config.max_queue, metrics.on_batch,
            eager_when_idle=not config.wait_when_idle,
        )
        batcher.start()
        batcher_box["b"] = batcher
        state["ready"] = True
        try:
            yield
        finally:  # uvicorn has stopped accepting and waited for requests in flight
            state["ready"] = False
            await batcher.stop()
            predictor.close()

    app = FastAPI(title="minilm serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, f"bad request: {exc.errors()[0].get('msg', 'invalid')}")

    def known(name: str, version: str | None) -> JSONResponse | None:
        if name != model_name:
            return error(404, f"unknown model {name!r}; this server has {model_name!r}")
        if version not in (None, "", "1"):
            return error(404, f"model {name!r} has no version {version!r}; it has version 1")
        return None

    async def run(texts: list[str], pairs: list[str] | None, timeout_s: float):
        metrics.queue.set(batcher_box["b"].depth)
        return await batcher_box["b"].submit(texts, pairs, timeout_s)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "minilm-deploy", "version": __version__, "extensions": ["binary_tensor_data", "model_configuration"]}

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    for suffix in VERSIONS:

        @app.get(f"/v2/models/{{name}}{suffix}")
        async def metadata(name: str, version: str | None = None) -> Response:
            bad = known(name, version)
            platform = f"minilm_deploy/{predictor.info['backend']}"
            return bad or JSONResponse(protocol.model_metadata(model_name, predictor.task, state["width"], platform))

        @app.get(f"/v2/models/{{name}}{suffix}/ready")
        async def model_ready(name: str, version: str | None = None) -> Response:
            bad = known(name, version)
            return bad or JSONResponse({"name": model_name, "ready": state["ready"]}, status_code=200 if state["ready"] else 503)

        @app.get(f"/v2/models/{{name}}{suffix}/config")
        async def model_config(name: str, version: str | None = None) -> Response:
            return known(name, version) or JSONResponse(_model_config(model_name, predictor, config, state["width"]))

        @app.post(f"/v2/models/{{name}}{suffix}/infer")
        async def infer(name: str, request: Request, version: str | None = None) -> Response:
            bad = known(name, version)
            if bad:
                return bad
            try:
                req = protocol.parse_infer_request(
                    await request.body(), request.headers.get("inference-header-content-length"), config.max_request_texts
                )
                timeout = min(config.timeout_s, req.timeout_s or config.timeout_s)
                preds = await run(req.texts, req.pairs, timeout)
                body, headers = protocol.encode_infer_response(model_name, req, preds, predictor.label_names)
            except Exception as exc:  # noqa: BLE001 — mapped to a status below
                return _failure(exc, metrics)
            return Response(body, headers=headers)

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        try:
            texts, pairs = _parse_v1(await request.body(), config.max_request_texts)
            preds = await run(texts, pairs, config.timeout_s)
        except Exception as exc:  # noqa: BLE001
            return _failure(exc, metrics)
        return JSONResponse({"model": model_name, "task": predictor.task, "predictions": preds.to_records(predictor.label_names)})

    @app.get("/metrics")
    async def prometheus() -> Response:
        if batcher_box:
            metrics.queue.set(batcher_box["b"].depth)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # outermost first: metrics see every answer, auth runs before a body is read
    app.add_middleware(BodyLimitMiddleware, limit=config.max_body_bytes, timeout_s=config.body_timeout_s)
    app.add_middleware(AuthMiddleware, token=config.token)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _predict(predictor: Predictor, chunk_size: int):
    def call(texts: list[str], pairs: list[str] | None):
        return predictor.predict(texts, text_pairs=pairs, chunk_size=chunk_size)

    return call


def _failure(exc: Exception, metrics: Metrics) -> JSONResponse:
    if isinstance(exc, (protocol.ProtocolError, InputError)):
        metrics.rejected.labels("malformed").inc()
        return error(400, str(exc))
    if isinstance(exc, (QueueFull, ShuttingDown)):
        metrics.rejected.labels("overloaded" if isinstance(exc, QueueFull) else "shutting_down").inc()
        return error(503, str(exc), {"retry-after": "1"})
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        metrics.rejected.labels("timeout").inc()
        return error(504, "the request timed out before the model answered; retry, or raise --timeout")
    log.exception("inference failed")
    return error(500, f"inference failed: {type(exc).__name__}: {exc}")


def _parse_v1(body: bytes, max_texts: int) -> tuple[list[str], list[str] | None]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply to parse
        raise protocol.ProtocolError("the request body is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("texts"), list):
        raise protocol.ProtocolError('expected {"texts": ["...", ...], "text_pairs": [...] (optional)}')
    texts, pairs = data["texts"], data.get("text_pairs")
    if not texts:
        raise protocol.ProtocolError("empty batch: 'texts' has no elements")
    if len(texts) > max_texts:
        raise protocol.ProtocolError(f"{len(texts)} texts in one request; at most {max_texts}: split the batch")
    if not all(isinstance(t, str) for t in texts) or (pairs is not None and not (isinstance(pairs, list) and all(isinstance(p, str) for p in pairs))):
        raise protocol.ProtocolError("'texts' and 'text_pairs' must be lists of strings")
    if pairs is not None and len(pairs) != len(texts):
        raise protocol.ProtocolError(f"'text_pairs' has {len(pairs)} elements but 'texts' has {len(texts)}")
    return texts, pairs


def _model_config(name: str, predictor: Predictor, config: ServeConfig, width: int) -> dict[str, Any]:
    """Triton's model config, true to what the server enforces: `max_batch_size` is the most texts one request
    may carry (`--max-request-texts`; more is a 400), the model call's batch is the preferred batch size; a
    batch-only tensor ([B]: text, label, score) is `dims: [1]` with `reshape: {shape: []}`, Triton's way of
    saying the tensor has no axis but the batch."""
    meta = protocol.model_metadata(name, predictor.task, width, "")

    def tensor(spec: dict[str, Any], data_type: str, **extra: Any) -> dict[str, Any]:
        item = spec["shape"][1:]  # Triton lists shapes without the batch axis
        shape = {"dims": item} if item else {"dims": [1], "reshape": {"shape": []}}
        return {"name": spec["name"], "data_type": data_type, **shape, **extra}

    return {
        "name": name, "platform": f"minilm_deploy/{predictor.info['backend']}", "max_batch_size": config.max_request_texts,
        "input": [tensor(i, "TYPE_STRING", optional=i["name"] == "text_pair") for i in meta["inputs"]],
        "output": [tensor(o, "TYPE_STRING" if o["datatype"] == "BYTES" else "TYPE_FP32") for o in meta["outputs"]],
        "dynamic_batching": {"preferred_batch_size": [config.max_batch_size],
                             "max_queue_delay_microseconds": int(config.max_queue_delay_ms * 1000)},
        "parameters": {"max_length": {"string_value": str(predictor.max_length)}, "task": {"string_value": predictor.task}},
    }
