"""Task sources. `load_tasks(name, split)` is the one entry point; each dataset has its own module."""
