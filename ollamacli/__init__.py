"""ollamacli: pull, chat with, shape, serve and fine-tune open LLMs locally."""

__version__ = "0.1.0"
