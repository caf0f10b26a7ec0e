"""Builders: pure functions from a resource to the Kubernetes objects that carry it out."""

from hanlin_operator.builders import agent_service, eval_run, model_deployment, training_job
from hanlin_operator.builders.common import BuildSettings

__all__ = ["BuildSettings", "agent_service", "eval_run", "model_deployment", "training_job"]
