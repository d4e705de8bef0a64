"""The contract between a tool dataset and the sandbox (densepolicy/sandbox_worker.py).

A tool dataset's spec names `setup`, a "module:function" string. In each new episode the sandbox's
episode root imports the module and calls `function(**setup_kwargs)`; the agents pass
`setup_kwargs={"task": <the task row>}`, so setup functions take `task: dict` (a JSON-able row,
it crosses a process boundary). The returned object is the episode's environment:

- `tools` are copied into the model's interpreter globals, so the model calls them by name.
  Each tool prints its observation and returns None: the interpreter echoes the repr of a last
  expression's non-None value, like `python -i`.
- `initial_observation` (str() of it) is the first observation the model sees, before the goal.
- `status()` is called after the setup and after every code action, in the process that ran it;
  the agent reads `success` (the goal is reached) and `done` (nothing more can happen). An
  exception from it is reported as {"error": ...} instead of ending the episode.

Branching and recovery rely on three more properties that no type can express:
- Fork safety: all state is plain memory of the one process (Python objects, C heaps), with no
  threads, open sockets or child processes, so os.fork copies an episode at any step.
- Determinism: setup with the same task, then the same code actions, gives the same state; a
  snapshot whose process is gone is rebuilt by replaying its actions on a fresh setup.
- Containment: in the isolated mode setup runs unprivileged and without network, reading only
  the project, the interpreter's libraries and the data directories, writing only the episode's
  64 MiB tmpfs; it must need nothing else.

`preload` (spec field) names the modules the sandbox's zygote imports once before any fork, so
episodes share them copy-on-write instead of each paying the import.
"""
from typing import Callable, Mapping, Protocol, runtime_checkable


@runtime_checkable
class ToolEnvironment(Protocol):
    """One episode's environment, as the sandbox uses it (see the module docstring)."""

    tools: Mapping[str, Callable[..., None]]  # name in the model's interpreter -> tool
    initial_observation: str                  # shown to the model before the goal

    def status(self) -> Mapping[str, bool]:
        """{"success": goal reached, "done": episode over}, after the setup and after each action."""
        ...


# What a spec's `setup` names: called as setup(task=row) inside the sandbox.
EnvironmentSetup = Callable[..., ToolEnvironment]
