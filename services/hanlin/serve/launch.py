"""Start the engine process and its transports (REST with uvicorn, gRPC) in this one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hanlin.serve.config import EngineConfig


def resolve_model(source: str, marker: str = "config.json") -> Path:
    """A local model (or adapter) directory for a path or a storage URI (downloaded to the cache).

    `marker` is the file the directory must hold (an adapter's: adapter_config.json).
    """
    if "://" not in source:
        path = Path(source)
        if not (path / marker).exists():
            kind = "an adapter" if marker != "config.json" else "a model"
            raise ValueError(f"{source}: not {kind} directory (no {marker})")
        return path
    from hanlin.dev.paths import cache_dir
    from hanlin.storage.artifacts import materialize

    return materialize(source, cache_dir() / "serve", require_manifest=False)


def run_servers(
    config: EngineConfig, host: str, port: int, grpc_port: int, api_key: str | None
) -> None:
    """Serve until interrupted."""
    import uvicorn

    from hanlin.serve.async_engine import AsyncEngine
    from hanlin.serve.router import create_app

    engine = AsyncEngine(config)
    engine.start()  # the engine process logs how it runs once the model is loaded

    async def main() -> None:
        grpc_server = None
        if grpc_port:
            from hanlin.serve.grpc_server import start_grpc

            grpc_server = await start_grpc(engine, config.name, host, grpc_port, api_key)
        try:
            if port:
                app = create_app(engine, config.name, api_key)
                server = uvicorn.Server(
                    uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False)
                )
                await server.serve()
            elif grpc_server is not None:
                await grpc_server.wait_for_termination()
        finally:
            if grpc_server is not None:
                await grpc_server.stop(grace=2)

    try:
        asyncio.run(main())
    finally:
        engine.stop()
