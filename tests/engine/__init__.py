"""Engine tests: templates, options, streaming, and llama.cpp on the bundled model."""
