"""The retrieval tool reads its documents from a real S3 server through hanlin.storage."""

from __future__ import annotations

import pytest

from hanlin.agent.tooling import Toolbox
from hanlin.agent.toolspecs import tools_from_specs

pytestmark = pytest.mark.integration


def test_retrieval_over_s3_documents(s3) -> None:  # type: ignore[no-untyped-def]
    s3.client.put_object(
        Bucket=s3.bucket,
        Key="kb/cluster.md",
        Body=b"The operator reconciles AgentService resources.\n\nPods run on nodes.",
    )
    s3.client.put_object(
        Bucket=s3.bucket,
        Key="kb/faq.jsonl",
        Body=b'{"id": "gpu", "title": "GPUs", "text": "ModelDeployment requests GPUs per replica."}\n',
    )
    s3.client.put_object(Bucket=s3.bucket, Key="kb/ignored.bin", Body=b"\x00\x01")
    box = Toolbox.of(
        tools_from_specs(
            [
                {
                    "builtin": "retrieval",
                    "config": {"documentsUri": f"s3://{s3.bucket}/kb", "topK": 1},
                }
            ]
        )
    )
    hit = box.invoke("retrieval", {"query": "which resources does the operator reconcile"})
    assert hit.ok and hit.output.startswith("[cluster.md#0]")
    gpu = box.invoke("retrieval", {"query": "GPUs per replica"})
    assert gpu.ok and gpu.output.startswith("[gpu]") and "GPUs\n" in gpu.output
