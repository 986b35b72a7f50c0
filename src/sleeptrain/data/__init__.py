"""Data flows corpus -> tokenizer -> token store -> samples -> batches."""
