"""Inference: the engine seam, options, chat templates, and the llama.cpp adapter."""
