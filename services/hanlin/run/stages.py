"""One stage per resource: plan it, render it, run it, and record its local status.

Jobs (TrainingJob, EvalRun) run to completion and are skipped on a rerun when
their published result exists (training resumes from its own checkpoints
otherwise). Services (ModelDeployment, AgentService) are started and waited
for until their readiness probe answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.progress import Progress, TaskID

from hanlin import storage
from hanlin.api import AgentService, EvalRun, ModelDeployment, TrainingJob
from hanlin.plan import (
    WorkloadPlan,
    plan_agent,
    plan_eval,
    plan_eval_merge,
    plan_serving,
    plan_training,
)
from hanlin.run.render import LOCALHOST, LocalPorts, render, service_args
from hanlin.run.resources import RunError
from hanlin.run.state import LocalState
from hanlin.run.supervise import Child, OnEvent, start, stop
from hanlin_operator.builders.common import spec_document, spec_hash

READY_TIMEOUT_SECONDS = 600.0


@dataclass
class Outcome:
    """What the summary shows about one resource."""

    kind: str
    name: str
    skipped: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Runner:
    """Runs stages in order; owns the children so that every exit path can stop them."""

    workdir: Path
    progress: Progress
    base_env: Mapping[str, str]
    state: LocalState = field(default_factory=LocalState)
    children: list[Child] = field(default_factory=list)
    services: list[Child] = field(default_factory=list)

    # -- shared ------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _spec_file(self, resource: Any) -> Path:
        # The operator mounts this document from a ConfigMap; locally it is a file.
        path = self._dir(resource.metadata.name) / "spec.yaml"
        path.write_text(spec_document(resource))
        return path

    def _run_job(
        self,
        resource: Any,
        plan: WorkloadPlan,
        extra: tuple[str, ...],
        on_event: OnEvent,
        log_name: str,
    ) -> list[Child]:
        spec_file = self._spec_file(resource)
        workdir = self._dir(resource.metadata.name)
        procs = render(plan, spec_file, workdir, LocalPorts(), self.base_env, extra)
        started = [
            start(p, workdir / f"{log_name}-{p.index}.log", self.base_env, on_event) for p in procs
        ]
        self.children += started
        failed = [c for c in started if c.wait() != 0]
        if failed:
            c = failed[0]
            raise RunError(
                f"{resource.kind} {resource.metadata.name!r}: {' '.join(c.process.argv[:3])} "
                f"exited with {c.popen.returncode}; log {c.log_path}:\n{c.log_tail()}"
            )
        return started

    def _notes(self) -> dict[str, Any]:
        path = self.workdir / "runner-state.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _finished(self, resource: Any, result: storage.StorageURI) -> bool:
        """The result is published and was made from this very spec (a changed spec runs again)."""
        if not storage.exists(result):
            return False
        made_from = self._notes().get(f"spec/{resource.kind}/{resource.metadata.name}")
        return made_from in (None, spec_hash(spec_document(resource)))

    def _mark_finished(self, resource: Any) -> None:
        key = f"spec/{resource.kind}/{resource.metadata.name}"
        self._save_note(key, spec_hash(spec_document(resource)))

    def _save_note(self, key: str, value: Any) -> None:
        notes = self._notes()
        notes[key] = value
        (self.workdir / "runner-state.json").write_text(json.dumps(notes, indent=1))

    # -- the four kinds ----------------------------------------------------------

    def training(self, job: TrainingJob) -> Outcome:
        """Train unless the artifact is published; resumes from checkpoints on its own."""
        name = job.metadata.name
        artifact_uri = storage.parse_uri(str(job.spec.output.uri)).join("artifact.json")
        out = Outcome(job.kind, name)
        task = self.progress.add_task(f"train {name}", total=None, info="")
        if self._finished(job, artifact_uri):
            out.skipped = True
        else:
            plan = plan_training(job, self.state.resolve(job))

            def on_event(ev: dict[str, Any]) -> None:
                if "step" in ev and "loss" in ev:
                    eta = ev.get("etaSeconds")
                    info = f"loss {ev['loss']:.4f}" + (f"  eta {eta}s" if eta is not None else "")
                    self.progress.update(
                        task, total=ev.get("totalSteps"), completed=ev["step"], info=info
                    )
                    self._save_note(f"loss/{name}", ev["loss"])

            self._run_job(job, plan, (), on_event, "train")
            self._mark_finished(job)
        artifact = json.loads(storage.read_bytes(artifact_uri))
        self.state.set_status(job, {"phase": "Succeeded", "artifact": artifact})
        loss = self._notes().get(f"loss/{name}")
        self.progress.update(
            task,
            total=1,
            completed=1,
            info=("already trained" if out.skipped else "done")
            + (f", loss {loss:.4f}" if loss is not None else ""),
        )
        out.details = {"loss": loss, "artifact": artifact}
        return out

    def _eval_output(self, run: EvalRun) -> storage.StorageURI:
        if run.spec.output is not None:
            return storage.parse_uri(str(run.spec.output.uri))
        # `hanlin eval`'s default, relative to the working directory the runner gives it.
        return storage.parse_uri(
            str(self._dir(run.metadata.name) / f"hanlin-eval-{run.metadata.name}")
        )

    def evaluation(self, run: EvalRun) -> Outcome:
        """Score every shard, then merge (the operator's two Jobs), unless the report exists."""
        name = run.metadata.name
        output = self._eval_output(run)
        out = Outcome(run.kind, name)
        task = self.progress.add_task(f"eval {name}", total=None, info="")
        if self._finished(run, output.join("results.json")):
            out.skipped = True
        else:
            resolved = self.state.resolve(run)
            plan = plan_eval(run, resolved)

            def on_event(ev: dict[str, Any]) -> None:
                if ev.get("event") == "progress":
                    self.progress.update(
                        task,
                        total=ev.get("total"),
                        completed=ev.get("done", 0),
                        info=f"{ev.get('benchmark', '')} {ev.get('samplesPerSecond', 0)}/s",
                    )

            self._run_job(run, plan, (), on_event, "eval")
            self._run_job(run, plan_eval_merge(run), (), lambda ev: None, "merge")
            self._mark_finished(run)
        report = json.loads(storage.read_bytes(output.join("results.json")))
        table = ""
        if storage.exists(output.join("summary.md")):
            table = storage.read_bytes(output.join("summary.md")).decode()
        passed = report.get("passed")
        self.state.set_status(
            run,
            {
                "phase": "Succeeded",
                "passed": passed,
                "results": report.get("results"),
                "summary": report.get("summary"),
            },
        )
        verdict = {True: "passed", False: "FAILED", None: "no thresholds"}[passed]
        self.progress.update(
            task,
            total=1,
            completed=1,
            info=("already evaluated, " if out.skipped else "") + verdict,
        )
        out.details = {
            "passed": passed,
            "table": table,
            "summary": report.get("summary"),
            "uri": str(output),
        }
        return out

    def _wait_ready(self, child: Child, url: str, task: TaskID, label: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        started = time.monotonic()
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = child.poll()
                if code is not None:
                    child.wait()
                    raise RunError(
                        f"{label} exited with {code} before it was ready; "
                        f"log {child.log_path}:\n{child.log_tail()}"
                    )
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RunError(f"{label} not ready after {READY_TIMEOUT_SECONDS:.0f}s: {url}")
                self.progress.update(task, info=f"starting ({time.monotonic() - started:.0f}s)")
                time.sleep(0.5)

    def _run_service(
        self, resource: Any, plan: WorkloadPlan, extra: tuple[str, ...]
    ) -> tuple[Child, LocalPorts]:
        name = resource.metadata.name
        task = self.progress.add_task(f"{plan.role} {name}", total=1, info="starting")
        ports = LocalPorts()
        spec_file = self._spec_file(resource)
        workdir = self._dir(name)
        extra = extra + service_args(plan, ports)
        (proc,) = render(plan, spec_file, workdir, ports, self.base_env, extra)
        child = start(proc, workdir / f"{plan.role}.log", self.base_env)
        self.children.append(child)
        self.services.append(child)
        probe = plan.readiness
        assert probe is not None  # services always have a readiness probe
        url = f"http://{LOCALHOST}:{ports.local(probe.port)}{probe.path}"
        self._wait_ready(child, url, task, f"{resource.kind} {name!r}")
        self.progress.update(
            task, completed=1, info=f"ready on {LOCALHOST}:{ports.local(probe.port)}"
        )
        return child, ports

    def serving(self, md: ModelDeployment) -> Outcome:
        """Start `hanlin serve` once the gate allows it; ready when /health answers."""
        resolved = self.state.resolve(md)
        if resolved.adapters:
            raise RunError(
                f"ModelDeployment {md.metadata.name!r}: serving a LoRA adapter on its base is not "
                "supported locally; set spec.output.mergeAdapter: true on the TrainingJob"
            )
        plan = plan_serving(md, resolved)
        _, ports = self._run_service(md, plan, ())
        served = md.spec.model.name or md.metadata.name
        rest = f"http://{LOCALHOST}:{ports.local(plan.ports[0].port)}/v1"
        grpc = next(
            (f"{LOCALHOST}:{ports.local(p.port)}" for p in plan.ports if p.name == "grpc"), None
        )
        self.state.urls[md.metadata.name] = rest
        self.state.set_status(md, {"phase": "Ready", "servedModel": served})
        return Outcome(
            md.kind, md.metadata.name, details={"rest": rest, "grpc": grpc, "model": served}
        )

    def agent(self, agent: AgentService, task: str) -> Outcome:
        """Start `hanlin agent`, then give it the example task (none when `task` is empty)."""
        details: dict[str, Any]
        plan = plan_agent(agent, self.state.resolve(agent))
        _, ports = self._run_service(agent, plan, ())
        url = f"http://{LOCALHOST}:{ports.local(plan.ports[0].port)}"
        if not task:
            details = {"url": url, "task": "", "status": "not asked", "reason": "no --task"}
            return Outcome(agent.kind, agent.metadata.name, details=details)
        bar = self.progress.add_task(f"ask {agent.metadata.name}", total=None, info=task)
        details = {"url": url, "task": task}
        try:
            with httpx.Client(timeout=agent.spec.timeout_seconds + 30.0) as client:
                reply = client.post(f"{url}/v1/runs", json={"task": task})
            body = reply.json()
            details.update(
                status=body.get("status", f"HTTP {reply.status_code}"),
                answer=body.get("answer"),
                reason=body.get("reason") or (None if reply.is_success else reply.text),
                tools=[s.get("tool") for s in body.get("steps", []) if s.get("tool")],
            )
        except (httpx.HTTPError, ValueError) as err:
            details.update(status="failed", answer=None, reason=f"request failed: {err}", tools=[])
        self.progress.update(bar, total=1, completed=1, info=str(details["status"]))
        return Outcome(agent.kind, agent.metadata.name, details=details)

    def shutdown(self, grace_seconds: float = 10.0) -> None:
        """Stop every child still running (process groups: SIGTERM, then SIGKILL)."""
        stop(self.children, grace_seconds)


StageFn = Callable[[Any], Outcome]
