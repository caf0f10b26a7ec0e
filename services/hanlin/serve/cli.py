"""`hanlin serve`: the model server of a ModelDeployment (REST and gRPC on one engine)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Serve a model over OpenAI-compatible REST and gRPC.")


@app.callback(invoke_without_command=True)
def serve(
    spec: Annotated[
        Path | None, typer.Option(help="A ModelDeployment resource (what the operator mounts).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model directory or URI (overrides spec.model; the operator resolves "
            "spec.model.trainingJobRef into HANLIN_MODEL_URI).",
            envvar="HANLIN_MODEL_URI",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="REST port (0: REST off).")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0: gRPC off).")] = 0,
    tensor_parallel: Annotated[
        int | None, typer.Option(help="Processes sharding the model.")
    ] = None,
    quantization: Annotated[str | None, typer.Option(help="none, int8 or int4.")] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            help="Compute dtype: float32, bfloat16, float16 or auto (bf16 where it runs "
            "natively or with quantized weights, else fp32). Default: the spec's "
            "engine.dtype with --spec, else float32 (exact).",
        ),
    ] = None,
    served_model_name: Annotated[str | None, typer.Option(help="Model id clients send.")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="Prompt + output limit.")] = None,
    max_batch_tokens: Annotated[int | None, typer.Option(help="Token budget per step.")] = None,
    max_seqs: Annotated[int | None, typer.Option(help="Sequences running at once.")] = None,
    max_queue: Annotated[int, typer.Option(help="Waiting requests before 429.")] = 256,
    kv_cache_mib: Annotated[
        int | None, typer.Option(help="KV cache memory per rank, MiB (default 512).")
    ] = None,
    kv_cache_fraction: Annotated[
        float | None,
        typer.Option(
            help="KV cache as a fraction of the memory left after loading the weights "
            "(container limit or host), capped at max-seqs full-length sequences.",
        ),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads.")] = None,
    device: Annotated[
        str,
        typer.Option(help="cpu, cuda, cuda:N or auto (CUDA when torch sees a GPU, else CPU)."),
    ] = "auto",
    lora: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=DIR_OR_URI: a PEFT LoRA adapter served as model NAME next to the base "
            "model (repeatable; requests choose it by `model`).",
        ),
    ] = None,
    adapter: Annotated[
        list[str] | None,
        typer.Option(help="A PEFT LoRA adapter (dir or URI) merged into the weights at load."),
    ] = None,
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            help="Run the tokenizer code a model directory ships (InternLM2's, for one); "
            "off by default: it is code from the checkpoint.",
            envvar="HANLIN_TRUST_REMOTE_CODE",
        ),
    ] = False,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the API key (unset: no auth).")
    ] = "HANLIN_API_KEY",
) -> None:
    """Load the model and serve until interrupted."""
    from hanlin.serve.config import EngineConfig
    from hanlin.serve.launch import resolve_model, run_servers

    options: dict[str, object] = {}
    merged: list[str] = list(adapter or [])
    named: dict[str, str] = _name_uri_pairs(lora or [], "--lora")
    name = served_model_name
    source = model
    if spec is not None:
        from hanlin.api import load_resource
        from hanlin.api.model_deployment import ModelDeployment

        resource = load_resource(spec, ModelDeployment)
        engine = resource.spec.engine
        options.update(
            tensor_parallel=engine.tensor_parallel,
            quantization=engine.quantization,
            dtype=engine.dtype,
            kv_cache_fraction=engine.kv_cache_fraction,
            max_model_len=engine.max_model_len,
            max_batch_tokens=engine.max_batch_tokens,
            max_seqs=engine.max_seqs,
        )
        name = name or resource.spec.model.name or resource.metadata.name
        if source is None:
            if resource.spec.model.uri is None:
                raise typer.BadParameter(
                    "spec.model.trainingJobRef must be resolved by the operator: pass --model",
                    param_hint="--model",
                )
            source = str(resource.spec.model.uri)
        # Adapters given by trainingJobRef arrive resolved in HANLIN_ADAPTERS (name=uri):
        # the base model's own (keyed by its TrainingJob) is merged, named ones served.
        resolved = _name_uri_pairs(
            os.environ.get("HANLIN_ADAPTERS", "").split(","), "HANLIN_ADAPTERS"
        )
        main_ref = resource.spec.model.training_job_ref
        if main_ref is not None and main_ref.name in resolved:
            merged.append(resolved.pop(main_ref.name))
        for entry in resource.spec.model.adapters or []:
            uri = str(entry.uri) if entry.uri is not None else resolved.get(entry.name)
            if uri is None:
                raise typer.BadParameter(
                    f"spec.model.adapters[{entry.name}].trainingJobRef must be resolved by the "
                    "operator (HANLIN_ADAPTERS)",
                    param_hint="--spec",
                )
            named[entry.name] = uri
        if not resource.spec.api.rest:
            port = 0
        if resource.spec.api.grpc and not grpc_port:
            grpc_port = 50051
    if source is None:
        raise typer.BadParameter("give --model DIR or --spec FILE", param_hint="--model")
    overrides = {
        "tensor_parallel": tensor_parallel,
        "quantization": quantization,
        "dtype": dtype,
        "kv_cache_fraction": kv_cache_fraction,
        "max_model_len": max_model_len,
        "max_batch_tokens": max_batch_tokens,
        "max_seqs": max_seqs,
    }
    options.update({k: v for k, v in overrides.items() if v is not None})
    if kv_cache_mib is not None:
        # An explicit size wins over the spec's fraction.
        options["kv_cache_fraction"] = kv_cache_fraction
        options["kv_cache_bytes"] = kv_cache_mib * 2**20
    if options.get("quantization") == "none":
        options["quantization"] = None
    try:
        options["adapters"] = [resolve_model(uri, "adapter_config.json") for uri in merged]
        options["lora_adapters"] = {
            name: resolve_model(uri, "adapter_config.json") for name, uri in named.items()
        }
        config = EngineConfig(
            model=resolve_model(source),
            served_model_name=name,
            max_queue=max_queue,
            num_threads=threads,
            device=device,
            trust_remote_code=trust_remote_code,
            **options,  # type: ignore[arg-type]
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    from hanlin.serve.async_engine import EngineDied

    try:
        run_servers(config, host, port, grpc_port, os.environ.get(api_key_env) or None)
    except EngineDied as err:
        typer.echo(f"hanlin serve: {err}", err=True)
        raise typer.Exit(1) from err


def _name_uri_pairs(items: list[str], where: str) -> dict[str, str]:
    """`name=uri` items as a dict; a malformed item is a usage error naming `where`."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in items)):
        name, sep, uri = item.partition("=")
        if not sep or not name or not uri:
            raise typer.BadParameter(f"{item!r}: expected NAME=DIR_OR_URI", param_hint=where)
        pairs[name] = uri
    return pairs
