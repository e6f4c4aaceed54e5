"""The Ollama-compatible HTTP API (and OpenAI /v1) served by `ollamacli serve`."""
