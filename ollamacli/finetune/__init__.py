"""Fine-tuning: datasets, training with transformers + peft, and export to GGUF."""
