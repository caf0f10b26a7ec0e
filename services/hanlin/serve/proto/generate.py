"""Regenerate `serve_pb2.py` / `serve_pb2_grpc.py` from `serve.proto` (needs grpcio-tools)."""

from __future__ import annotations

from pathlib import Path

# Generated code is not ours to lint or type-check.
_HEADER = "# ruff: noqa\n# mypy: ignore-errors\n# Generated from serve.proto by hanlin.serve.proto.generate; do not edit.\n"


def main() -> None:
    """Run protoc with the package-relative include path, so imports are absolute."""
    from grpc_tools import protoc

    here = Path(__file__).resolve().parent
    root = here.parents[2]  # the `services` source root
    rc = protoc.main(
        [
            "protoc",
            f"-I{root}",
            f"--python_out={root}",
            f"--grpc_python_out={root}",
            str(here / "serve.proto"),
        ]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    for name in ("serve_pb2.py", "serve_pb2_grpc.py"):
        path = here / name
        path.write_text(_HEADER + path.read_text())


if __name__ == "__main__":
    main()
