"""Built-in tools: calculator, python, http, retrieval."""
