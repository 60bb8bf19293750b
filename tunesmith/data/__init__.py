"""Data pipeline: files -> rows -> examples (Conversation | Text | Preference | Prompt) -> tokens -> batches."""
