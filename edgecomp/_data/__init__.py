"""Data shipped in the wheel: the top-level targets/ and templates/ folders are mapped here (pyproject.toml)."""
