"""The recipe: its typed schema, YAML reading, error messages, generated docs and the names it may use."""
