"""Run the app under uvicorn; SIGINT/SIGTERM stop accepting, finish requests in flight, then exit."""

from __future__ import annotations

import sys
from pathlib import Path

from minilm_deploy.errors import MinilmError
from minilm_deploy.runtime import Predictor
from minilm_deploy.serve.config import ServeConfig
from minilm_deploy.serve.connections import deadline_protocol, raise_open_file_limit


def default_model_name(artifact: Path, manifest: dict) -> str:
    """The artifact's Triton model name (so clients of Triton and of this server use one name), else its folder name."""
    if manifest.get("triton_model"):
        return str(manifest["triton_model"])
    repo = Path(artifact) / "triton"
    names = sorted(p.name for p in repo.iterdir() if (p / "config.pbtxt").is_file()) if repo.is_dir() else []
    return names[0] if len(names) == 1 else Path(artifact).resolve().name


def check_listen(host: str, port: int) -> None:
    """Before the model is loaded: the address is one this machine has and the port is free (one line each)."""
    import errno
    import socket

    from minilm_deploy.errors import InputError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise InputError(f"--host {host!r}: not an address or a known host name ({exc.strerror}); "
                         "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(f"port {port} on {host} is in use; choose another --port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InputError(f"--host {host}: not an address of this machine; use 127.0.0.1 or 0.0.0.0") from None
            if exc.errno == errno.EACCES:
                raise InputError(f"port {port}: binding needs privileges (ports below 1024); choose --port 1024 or above") from None
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --host or --port") from None


def serve(artifact: Path, config: ServeConfig, backend: str = "auto", device: str = "cpu", threads: int | None = None) -> None:
    try:
        import uvicorn

        from minilm_deploy.serve.app import create_app
    except ImportError as exc:
        raise MinilmError(f"serving needs {exc.name}: pip install 'minilm-deploy[serve]'") from None

    check_listen(config.host, config.port)
    predictor = Predictor.load(artifact, backend=backend, device=device, threads=threads)
    name = config.model_name or default_model_name(artifact, predictor.source.manifest)
    app = create_app(predictor, config, name)
    raise_open_file_limit()
    # no limit_concurrency: uvicorn counts sockets, idle ones included; the cap is the batcher's queue (503),
    # and idle or slow sockets are closed at their deadlines (serve/connections.py)
    server = uvicorn.Server(uvicorn.Config(
        app, host=config.host, port=config.port, log_level="warning", access_log=False, lifespan="on",
        # uvicorn annotates these int but hands them to loop.call_later/asyncio.wait_for, which take seconds as floats
        timeout_graceful_shutdown=config.graceful_timeout_s, timeout_keep_alive=config.idle_timeout_s,  # type: ignore[arg-type]
        http=deadline_protocol(config.header_timeout_s),
    ))
    sys.stderr.write(
        f"minilm serve: model {name!r} ({predictor.task}, {predictor.info['backend']} on {predictor.info['device']}) "
        f"at http://{config.host}:{config.port}  batch<={config.max_batch_size} delay={config.max_queue_delay_ms}ms "
        f"auth={'on' if config.token else 'off'}\n"
    )
    try:
        server.run()
    except (OSError, SystemExit):  # uvicorn exits when it cannot bind: the port is taken, or the address is wrong
        raise MinilmError(f"cannot listen on {config.host}:{config.port}; is the port in use? choose another --port") from None
    if not server.started:
        raise MinilmError(f"the server did not start on {config.host}:{config.port}; is the port in use? choose another --port")
