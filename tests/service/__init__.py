"""Service tests: chat and generate use cases."""
