"""A tiny tool environment for tests/test_sandbox.py: a counter to push up to a goal."""


class CounterEnv:
    def __init__(self, start=0, goal=3):
        self.count, self.goal = start, goal
        self.tools = {"increment": self.increment, "get_count": lambda: self.count}
        self.initial_observation = f"The counter is at {start}; bring it to {goal}."

    def increment(self, by=1):
        self.count += by
        print(f"The counter is now {self.count}.")

    def status(self):
        return {"success": self.count == self.goal, "done": self.count >= self.goal}


def make(start=0, goal=3):
    return CounterEnv(start, goal)


def broken():
    raise ValueError("this setup always fails")


def hang_once(marker=None):
    """The first setup hangs (it leaves `marker` behind), every later one is instant; without a
    marker every setup hangs."""
    import os
    import time
    if marker is None or not os.path.exists(marker):
        if marker is not None:
            open(marker, "w").close()
        time.sleep(3600)
    return CounterEnv()


def hang_while(flag):
    """Every setup hangs while the file `flag` exists, and is instant otherwise."""
    import os
    import time
    while os.path.exists(flag):
        time.sleep(0.1)
    return CounterEnv()
