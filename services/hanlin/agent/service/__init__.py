"""The agent's HTTP service: runs, sessions, tools, an OpenAI-compatible chat endpoint, metrics."""
