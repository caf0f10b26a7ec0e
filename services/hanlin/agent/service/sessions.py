"""Sessions: a conversation's turns, and the memory the next run sees."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

from hanlin.agent.strategies import RunResult


@dataclass
class Session:
    """Turns of one conversation; memory is the last `max_turns` answered exchanges."""

    id: str
    turns: list[tuple[str, RunResult]] = field(default_factory=list)
    max_turns: int = 10

    def memory(self) -> list[dict[str, str]]:
        """Chat messages of earlier answered turns, oldest first."""
        answered = [(t, r) for t, r in self.turns if r.answer is not None][-self.max_turns :]
        out: list[dict[str, str]] = []
        for task, result in answered:
            out.append({"role": "user", "content": task})
            out.append({"role": "assistant", "content": result.answer or ""})
        return out


class SessionStore:
    """In-process sessions (an AgentService replica keeps its own; route by session)."""

    def __init__(self, max_sessions: int = 1000) -> None:
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.max_sessions = max_sessions

    def create(self, session_id: str | None = None) -> Session:
        """A new session (a given id must not exist yet)."""
        with self._lock:
            sid = session_id or uuid.uuid4().hex
            if sid in self._sessions:
                raise KeyError(sid)
            if len(self._sessions) >= self.max_sessions:
                # Forget the oldest conversation rather than grow without bound.
                self._sessions.pop(next(iter(self._sessions)))
            session = self._sessions[sid] = Session(sid)
            return session

    def get(self, session_id: str) -> Session | None:
        """The session, or None."""
        with self._lock:
            return self._sessions.get(session_id)

    def delete(self, session_id: str) -> bool:
        """Forget a session; False when it did not exist."""
        with self._lock:
            return self._sessions.pop(session_id, None) is not None

    def add_turn(self, session: Session, task: str, result: RunResult) -> None:
        """Record a finished run in its session."""
        with self._lock:
            session.turns.append((task, result))
