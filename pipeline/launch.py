"""The launcher behind distributed_test.sh: one run configuration, its plan, and the two backends.

The script keeps the users' entry point and its editable per-dataset settings; everything else is
here. A run is decided once, in a `Config` built from the script's arguments and environment (and
checked with the one-line errors the script has always printed); `plan(config)` turns it into the
exact server and agent command lines, and `run(config)` starts them:

    tmux  one supervised model server per GPU (or one on the CPU), PROCESSES_PER_GPU agent
          processes per server, each in its own tmux session on a contiguous shard of the tasks
    ray   one Ray driver (pipeline/ray_backend.py) whose workers each own a server and take
          tasks from a shared queue; it runs in the foreground with WAIT=1, else in a tmux session

Every tmux session a run starts is listed in its manifest, logs/run_<id>/sessions.txt, so that
`stop` ends exactly those. Server command lines come from densepolicy/engines.py.

Programs call it as the script would run, so the script's per-dataset settings count:

    config = launch.configure(["M", "gsm8k", "codeact_agent", "1", "0"], env)   # DRY_RUN=json
    run_plan = launch.plan(config)   # .servers, .agents: command lines, result dir, task indices
    code = launch.run(config)        # or: python -m pipeline.launch --config "$(json)"
"""
import argparse
import dataclasses
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dataset as datasets
from agents import runner
from densepolicy import engines, paths

ROOT = paths.ROOT
SCRIPT = ROOT / "distributed_test.sh"
AGENTS = ("codeact_agent", "codeact_agent_tree")
LAUNCHERS = ("tmux", "ray")
WAIT_POLL = 2.0   # seconds between checks of a starting server or a running session


class LaunchError(Exception):
    """A run that cannot start (or stop): one line, printed as `error: ...`, exit code 2."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


_BACKSLASHED = frozenset(" !\"$&'()*,;<>?[\\]^`{|}")


def bash_quote(word: str) -> str:
    """`printf %q` of bash, so the printed command lines stay what the shell version printed."""
    if word == "":
        return "''"
    if not word.isprintable():  # bash writes $'...' here; shlex's quoting is as valid a shell word
        return shlex.quote(word)
    out = []
    for i, c in enumerate(word):
        if c in _BACKSLASHED or (i == 0 and c in "#~") or (c == "~" and word[i - 1] in "=:"):
            out.append("\\")
        out.append(c)
    return "".join(out)


def say(*lines: str, err: bool = False):
    for line in lines:
        print(line, file=sys.stderr if err else sys.stdout, flush=True)


# ------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class Config:
    """One run of the launcher, everything decided. Plain values only, so it travels as JSON."""
    model: str
    dataset: str = "gsm8k"
    agent: str = "codeact_agent"
    procs: int = 1                # PROCESSES_PER_GPU
    start_id: int = 0             # TMUX_START_ID
    serve_only: bool = False      # `serve`: start (or reuse) the servers, then return
    launcher: str = "tmux"
    engine: str = "vllm"
    num_gpus: int = 0
    port_base: int = 8000
    default_args: str = ""        # the dataset's registered defaults for the agent, then the script's
    agent_args: str = ""          # AGENT_ARGS, after them, so the user's flags win
    task_limit: int | None = None
    data_dir: str = ""
    log_root: str = str(ROOT / "logs")
    python: str = sys.executable  # interpreter of the agents, drivers and supervisors
    root: str = str(ROOT)         # where they run
    script: str = str(SCRIPT)     # how the user called the script, for the messages
    wait: bool = False
    dry_run: bool = False
    start_timeout: int = 900      # SERVER_START_TIMEOUT
    max_restarts: int = 3         # SERVER_MAX_RESTARTS
    ray_address: str = ""
    ray_workers: int = 1          # CPU workers, when there are no GPUs
    ray_worker_cpus: str = "1"

    @property
    def run_logs(self) -> str:
        return f"{self.log_root}/run_{self.start_id}"

    @property
    def servers(self) -> int:
        return max(self.num_gpus, 1)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls(**json.loads(text))

    @classmethod
    def from_environment(cls, args: list[str], environ, *, overrides: dict | None = None, script: str = str(SCRIPT),
                         python: str = sys.executable, root: str = str(ROOT), start_timeout="900",
                         max_restarts="3") -> "Config":
        """The run `script ARGS` asks for, checked in the order the script always checked it.
        `overrides` maps (agent, dataset family) to the script's per-dataset agent flags, which
        follow the family's registered defaults (dataset.agent_defaults)."""
        env = lambda name, default="": environ.get(name) or default  # noqa: E731 (unset or empty)
        dry_run = environ.get("DRY_RUN") == "1"
        serve_only = args[:1] == ["serve"]
        if serve_only:
            if len(args) != 3:
                raise LaunchError(f"usage: {script} serve MODEL TMUX_START_ID")
            model, start_id = args[1], args[2]
            dataset, agent, procs = "gsm8k", "codeact_agent", "1"
        else:
            if len(args) != 5:
                raise LaunchError(f"usage: {script} MODEL DATASET AGENT PROCESSES_PER_GPU TMUX_START_ID "
                                  f"(or: {script} serve MODEL TMUX_START_ID, {script} stop TMUX_START_ID)")
            model, dataset, agent, procs, start_id = args
        _require(procs, r"[1-9][0-9]*", "PROCESSES_PER_GPU must be a positive integer")
        _require(start_id, r"[0-9]+", "TMUX_START_ID must be a non-negative integer")
        try:
            family = datasets.family(dataset)
        except datasets.DataError as e:
            raise LaunchError(str(e)) from None
        if agent not in AGENTS:
            raise LaunchError(f"unknown agent '{agent}' ({', '.join(AGENTS)})")
        default_args = " ".join([*datasets.agent_defaults(dataset, agent), (overrides or {}).get((agent, family), "")])
        launcher = "tmux" if serve_only else env("LAUNCHER", "tmux")  # `serve`: for later runs here
        if launcher not in LAUNCHERS:
            raise LaunchError(f"LAUNCHER must be tmux or ray, got '{launcher}'")
        _require(max_restarts, r"[0-9]+", "SERVER_MAX_RESTARTS must be a number")
        wait = environ.get("WAIT") == "1"
        # The Ray driver runs in the foreground with WAIT=1, else in a tmux session like the agents.
        if (launcher == "tmux" or not wait) and not dry_run and not shutil.which("tmux"):
            raise LaunchError("tmux is not installed (apt-get install tmux)")
        num_gpus = env("NUM_GPUS") or _count_gpus(launcher, env("RAY_ADDRESS"), python)
        _require(num_gpus, r"[0-9]+", "NUM_GPUS must be a number")
        engine = env("ENGINE", "vllm")
        if engine not in engines.ENGINES:
            raise LaunchError(f"ENGINE must be vllm or transformers, got '{engine}'")
        if not dry_run:
            try:
                engines.check_available(engine, int(num_gpus))
            except engines.EngineError as e:
                raise LaunchError(str(e)) from None
        port_base = env("PORT_BASE", "8000")
        _require(port_base, r"[0-9]+", "PORT_BASE must be a number")
        task_limit = env("TASK_LIMIT")
        if task_limit:
            _require(task_limit, r"[0-9]+", "TASK_LIMIT must be a non-negative integer")
        ray_workers, ray_worker_cpus = env("RAY_WORKERS", "1"), env("RAY_WORKER_CPUS", "1")
        if launcher == "ray":
            _require(ray_workers, r"[1-9][0-9]*", "RAY_WORKERS must be a positive integer")
            _require(ray_worker_cpus, r"[0-9]*\.?[0-9]+", "RAY_WORKER_CPUS must be a number")
        data_dir = env("DATA_DIR")
        if not data_dir and paths.SHARED_DATA.is_dir():
            data_dir = str(paths.SHARED_DATA)
        return cls(model=model, dataset=dataset, agent=agent, procs=int(procs), start_id=int(start_id),
                   serve_only=serve_only, launcher=launcher, engine=engine, num_gpus=int(num_gpus),
                   port_base=int(port_base), default_args=default_args.rstrip(),
                   agent_args=environ.get("AGENT_ARGS", ""),
                   task_limit=int(task_limit) if task_limit else None,
                   data_dir=data_dir, log_root=log_root(environ, root), python=python, root=root,
                   script=script, wait=wait, dry_run=dry_run, start_timeout=int(start_timeout),
                   max_restarts=int(max_restarts), ray_address=env("RAY_ADDRESS"),
                   ray_workers=int(ray_workers), ray_worker_cpus=ray_worker_cpus)


def _require(value: str, pattern: str, message: str):
    if not re.fullmatch(pattern, value):
        raise LaunchError(f"{message}, got '{value}'")


def log_root(environ, root: str = str(ROOT)) -> str:
    return environ.get("LOG_DIR") or f"{root}/logs"


def _count_gpus(launcher: str, ray_address: str, python: str) -> str:
    if launcher == "ray" and ray_address:  # the cluster's GPUs, not this host's
        r = subprocess.run([python, "-m", "pipeline.ray_backend", "--count_gpus"], text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            raise LaunchError(f"cannot reach the Ray cluster at RAY_ADDRESS={ray_address}")
        return (r.stdout.splitlines() or [""])[-1]
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL).stdout
    except OSError:  # no NVIDIA driver: no GPUs
        return "0"
    return str(sum(line.startswith("GPU") for line in listed.splitlines()))


def configure(args: list[str], environ=None, script: str | os.PathLike = SCRIPT) -> Config:
    """The Config `script ARGS` would run with in `environ` (default: this process's): the script's
    own per-dataset settings and environment handling, asked from the script itself."""
    environ = os.environ if environ is None else environ
    r = subprocess.run(["bash", str(script), *map(str, args)], env={**environ, "DRY_RUN": "json"},
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        raise LaunchError(lines[-1].removeprefix("error: ") if lines else f"{script} exited {r.returncode}",
                          r.returncode)
    return Config.from_json(r.stdout)


# ----------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class ServerPlan:
    gpu: int
    port: int
    session: str      # dp_server_<port>
    command: str      # the engine's command line (densepolicy/engines.py)


@dataclass(frozen=True)
class AgentPlan:
    """One agent process (tmux) on shard `shard_id`, or the Ray driver (shard_id None: every task)."""
    session: str
    command: str      # the shell line the session runs
    agent: str
    flags: str        # the agent's flags in that line (shell words)
    data_dir: str
    log: str
    status: str       # where the session writes the command's exit code
    shard_id: int | None = None
    num_shards: int = 1

    def args(self) -> argparse.Namespace:
        """The agent's own parse of its flags."""
        try:
            args = runner.parse_args(self.module(), shlex.split(self.flags))
        except SystemExit:  # argparse said why on stderr
            raise LaunchError(f"the agent flags do not parse: {self.flags}") from None
        args.data_dir = args.data_dir or self.data_dir or None  # what the session exports
        return args

    def module(self):
        return importlib.import_module(f"agents.{self.agent}")

    @property
    def max_turn(self) -> int:
        return self.args().max_turn

    def result_dir(self) -> Path:
        return runner.load_run(self.module(), self.args())[1]

    def task_indices(self, every_shard: bool = False) -> list[int]:
        """Indices of the tasks this process runs (`every_shard`: of the whole run)."""
        tasks = runner.load_run(self.module(), self.args())[0]
        if self.shard_id is not None and not every_shard:
            tasks = runner.shard_tasks(tasks, self.num_shards, self.shard_id)
        return [t["index"] for t in tasks]


@dataclass(frozen=True)
class RunPlan:
    config: Config
    model_path: str
    served_model: str
    servers: tuple[ServerPlan, ...]
    agents: tuple[AgentPlan, ...]   # the agent processes, or the one Ray driver
    ray_server: str | None = None   # LAUNCHER=ray: each worker's server line, {gpu} and {port} shown open

    def lines(self) -> list[str]:
        """What DRY_RUN=1 prints."""
        if self.ray_server is not None:
            driver = self.agents[0]
            return [f"[server ray worker] {self.ray_server}", f"[driver {driver.session}] {driver.command}"]
        return ([f"[server {s.session}] {s.command}" for s in self.servers]
                + [f"[agent {a.session}] {a.command}" for a in self.agents])

    # What every agent of the run shares: the result directory, the tasks, the answer budget.
    def result_dir(self) -> Path:
        return self._first().result_dir()

    def task_indices(self) -> list[int]:
        return self._first().task_indices(every_shard=True)

    @property
    def max_turn(self) -> int:
        return self._first().max_turn

    def _first(self) -> AgentPlan:
        if not self.agents:
            raise LaunchError("a `serve` run starts no agent")
        return self.agents[0]


def plan(config: Config, model_path: str | None = None) -> RunPlan:
    """The run's command lines. `model_path`: what the servers load (default: the model name, as a
    dry run shows it; `run` resolves it first)."""
    c, q = config, bash_quote
    server = engines.ServerSpec(c.engine, model_path or c.model, c.model, c.num_gpus, c.run_logs)
    served = server.served_name
    python = q(c.python)
    # Per-dataset settings first, then AGENT_ARGS, so the user's flags win (spacing as it always was).
    limit = f"--task_limit {c.task_limit}" if c.task_limit is not None else ""
    tail = f"{limit} {c.default_args} {c.agent_args}"
    logged = dict(agent=c.agent, data_dir=c.data_dir)
    if c.launcher == "ray":
        workers = c.num_gpus if c.num_gpus > 0 else c.ray_workers
        template = server.command("{gpu}", "{port}")  # printed by DRY_RUN; each worker fills in its own
        flags = f"--model {q(c.model)} --served_model {q(served)} --dataset {c.dataset} {tail}"
        command = (f"{python} -m pipeline.ray_backend --agent {c.agent} --workers {workers}"
                   f" --gpus_per_worker {1 if c.num_gpus > 0 else 0} --cpus_per_worker {c.ray_worker_cpus}"
                   f" --slots {c.procs} --port_base {c.port_base} --max_restarts {c.max_restarts}"
                   f" --start_timeout {c.start_timeout} --log_dir {q(c.run_logs)}"
                   f" --server_spec {q(server.to_json())}"
                   f" -- {flags}")
        driver = AgentPlan(f"dp_{c.start_id}", command, flags=flags, log=f"{c.run_logs}/driver.log",
                           status=f"{c.run_logs}/driver.status", **logged)
        return RunPlan(c, server.model_path, served, (), (driver,), ray_server=template)
    servers = tuple(ServerPlan(g, c.port_base + g, f"dp_server_{c.port_base + g}",
                               server.command(str(g), c.port_base + g)) for g in range(c.servers))
    agents = []
    total = c.servers * c.procs
    for s in servers if not c.serve_only else ():
        for p in range(c.procs):
            shard = s.gpu * c.procs + p
            flags = (f"--model {q(c.model)} --served_model {q(served)}"
                     f" --base_url http://127.0.0.1:{s.port}/v1 --dataset {c.dataset}"
                     f" --num_shards {total} --shard_id {shard} {tail}")
            agents.append(AgentPlan(f"dp_{c.start_id + shard}", f"{python} -m agents.{c.agent} {flags}",
                                    flags=flags, log=f"{c.run_logs}/agent_{shard}.log",
                                    status=f"{c.run_logs}/agent_{shard}.status", shard_id=shard,
                                    num_shards=total, **logged))
    return RunPlan(c, server.model_path, served, servers, tuple(agents))


# ------------------------------------------------------------------------------- tmux sessions
def tmux(*args: str) -> bool:
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(["tmux", *args], **quiet).returncode == 0


def has_session(name: str) -> bool:
    return tmux("has-session", "-t", f"={name}")


def kill_session(name: str) -> bool:
    return tmux("kill-session", "-t", f"={name}")


class Manifest:
    """logs/run_<id>/sessions.txt: every tmux session of a run, so that `stop` ends only those."""

    def __init__(self, run_logs: str):
        self.path = Path(run_logs) / "sessions.txt"

    def sessions(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def start(self, session: str, command: str):
        """A detached tmux session running `command`, recorded here."""
        if not tmux("new-session", "-d", "-s", session, command):
            raise LaunchError(f"tmux could not start session {session}")
        with open(self.path, "a") as f:
            f.write(session + "\n")

    def forget(self, ended: list[str]):
        # Keep the other entries (servers started by `serve` under the same id): stop ends them.
        left = [s for s in self.sessions() if s not in set(ended)]
        if left:
            self.path.write_text("".join(s + "\n" for s in left))
        else:
            self.path.unlink(missing_ok=True)


def stop(log_root_dir: str, start_id: str, report=say):
    """End the sessions listed in a run's manifest, and nothing else."""
    if re.fullmatch(r"[0-9]+", start_id):
        start_id = str(int(start_id))  # a run's directory is named by the number
    manifest = Manifest(f"{log_root_dir}/run_{start_id}")
    if not manifest.path.is_file():
        raise LaunchError(f"no run with TMUX_START_ID {start_id} (no {manifest.path})")
    for session in manifest.sessions():
        if session and kill_session(session):
            report(f"stopped {session}")
    manifest.path.unlink(missing_ok=True)


def logged_session_command(config: Config, agent: AgentPlan) -> str:
    """What a session runs for an agent or driver: its output appended to its log (a resumed run,
    or the next stage of a job with the same TMUX_START_ID, keeps what the earlier ones said),
    its exit code to a file."""
    q = bash_quote
    return (f"cd {q(config.root)} && export DATA_DIR={q(config.data_dir)} PYTHONUNBUFFERED=1 && "
            f"{agent.command} 2>&1 | tee -a {q(agent.log)}; echo ${{PIPESTATUS[0]}} >{q(agent.status)}")


def _tail(path: str, n: int) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines(keepends=True)
    except OSError:
        return ""
    return "".join(lines[-n:])


# ----------------------------------------------------------------------------------- backends
class TmuxLauncher:
    """Servers in sessions dp_server_<port> (supervised), agents in sessions dp_<id>, WAIT=1 waits."""

    def __init__(self, run_plan: RunPlan):
        self.plan, self.config = run_plan, run_plan.config
        self.manifest = Manifest(self.config.run_logs)
        self.servers_dir = f"{self.config.log_root}/servers"
        self.started_servers: list[str] = []

    def run(self) -> int:
        for server in self.plan.servers:
            self.start_server(server)
        for server in self.plan.servers:
            self.wait_server(server)
        c = self.config
        if c.serve_only:
            say(f"serving {c.model} as '{self.plan.served_model}' on port(s) {c.port_base}.."
                f"{c.port_base + c.servers - 1}; stop with: {c.script} stop {c.start_id}")
            return 0
        for agent in self.plan.agents:
            start_logged(c, self.manifest, agent)
        say(f"started {len(self.plan.agents)} agent session(s); logs in {c.run_logs}; attach with: "
            f"tmux attach -t dp_{c.start_id}", f"stop them with: {c.script} stop {c.start_id}")
        return self.wait() if c.wait else 0

    def start_server(self, server: ServerPlan):
        """Reuse our own server on this port if it serves the same model, else start one."""
        c = self.config
        marker = Path(self.servers_dir) / f"{server.port}.model"
        serving = f"{c.engine} {self.plan.model_path}"
        if engines.healthy(server.port, timeout=5):
            if has_session(server.session) and _read(marker) == serving:
                say(f"reusing server {server.session} on port {server.port}")
                return
            raise LaunchError(f"port {server.port} is already serving something else; "
                              "stop it or set PORT_BASE")
        kill_session(server.session)
        os.makedirs(self.servers_dir, exist_ok=True)
        os.makedirs(f"{c.run_logs}/hf_cache", exist_ok=True)
        marker.write_text(serving + "\n")
        q = bash_quote
        # The supervisor restarts a server that dies or hangs (its pid is in servers/<port>.pid); the
        # agents' LLM client waits across the restart and sends in-flight requests again.
        self.manifest.start(server.session, (
            f"cd {q(c.root)} && {q(c.python)} -m densepolicy.supervisor --port {server.port} "
            f"--log {q(f'{self.servers_dir}/{server.port}.log')} --max_restarts {c.max_restarts} "
            f"--start_timeout {c.start_timeout} {q(server.command)}"))
        self.started_servers.append(server.session)
        say(f"started {server.session}: {server.command}")

    def wait_server(self, server: ServerPlan):
        log, waited = f"{self.servers_dir}/{server.port}.log", 0.0
        while not engines.healthy(server.port, timeout=5):
            if not has_session(server.session):
                sys.stderr.write(_tail(log, 20))
                raise LaunchError(f"server {server.session} exited before answering on port {server.port} "
                                  f"(log: {log})")
            if waited >= self.config.start_timeout:
                raise LaunchError(f"server on port {server.port} not healthy after "
                                  f"{self.config.start_timeout}s")
            time.sleep(WAIT_POLL)
            waited += WAIT_POLL
        say(f"server on port {server.port} is up")

    def wait(self) -> int:
        """Block until every agent session ends; end the servers this run started."""
        failed = False
        for agent in self.plan.agents:
            while not _read(agent.status) and has_session(agent.session):
                time.sleep(WAIT_POLL)
            time.sleep(0.2)  # the status line is written just before the session closes
            code = _read(agent.status) if Path(agent.status).exists() else "missing"
            if code != "0":
                failed = True
                say(f"shard {agent.shard_id} failed (exit {code}); last lines of {agent.log}:", err=True)
                sys.stderr.write(_tail(agent.log, 5))
                say(f"(server logs, restarts included: {self.servers_dir}/)", err=True)
            kill_session(agent.session)
        for session in self.started_servers:
            kill_session(session)
        self.manifest.forget(self.started_servers + [a.session for a in self.plan.agents])
        if failed:
            say("error: some shards failed", err=True)
            return 1
        say("all shards finished")
        return 0


class RayLauncher:
    """The Ray driver: in the foreground with WAIT=1 (its output also in driver.log), else in a session."""

    def __init__(self, run_plan: RunPlan):
        self.plan, self.config = run_plan, run_plan.config
        self.driver = run_plan.agents[0]

    def run(self) -> int:
        c = self.config
        workers = c.num_gpus if c.num_gpus > 0 else c.ray_workers
        say(f"Ray driver: {workers} worker(s) on {c.ray_address or 'a local Ray cluster'}; driver log "
            f"{self.driver.log}, server logs {c.run_logs}/server_<worker>.log on each worker's node")
        if c.wait:
            return self.run_here()
        start_logged(c, Manifest(c.run_logs), self.driver)
        say(f"started the Ray driver in tmux session {self.driver.session}; attach with: "
            f"tmux attach -t {self.driver.session}",
            f"stop it (and its workers and servers) with: {c.script} stop {c.start_id}")
        return 0

    def run_here(self) -> int:
        """The driver's output to this terminal and to its log, as it comes."""
        with open(self.driver.log, "wb") as log:
            proc = subprocess.Popen(["bash", "-c", self.driver.command], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
                for stream in (sys.stdout.buffer, log):
                    stream.write(chunk)
                    stream.flush()
            return proc.wait()


def start_logged(config: Config, manifest: Manifest, agent: AgentPlan):
    """An agent's (or the driver's) session; a session of that name must not be running already."""
    if has_session(agent.session):
        raise LaunchError(f"tmux session {agent.session} exists; pick another TMUX_START_ID or stop it")
    Path(agent.status).unlink(missing_ok=True)
    manifest.start(agent.session, logged_session_command(config, agent))


def _read(path) -> str:
    try:
        return Path(path).read_text().rstrip("\n")
    except OSError:
        return ""


def resolve_model(config: Config) -> str:
    """What the servers load. A separate process: converting the embedded model loads torch, which
    this process, alive for the whole run with WAIT=1, need not hold. It prints its own error."""
    r = subprocess.run([config.python, "-m", "densepolicy.models", config.model], cwd=config.root,
                       stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise LaunchError("")  # said already
    return r.stdout.strip()


def run(config: Config) -> int:
    """Start the run (DRY_RUN: print its command lines); the exit code the script returns."""
    os.environ["DATA_DIR"] = config.data_dir  # the agents, supervisors and the Ray driver read it
    if config.dry_run:
        Path(config.run_logs).mkdir(parents=True, exist_ok=True)
        say(*plan(config).lines())
        return 0
    # The embedded model is converted once into a plain model directory; a name that resolves to
    # nothing fails here, before any server starts (densepolicy.models says what it looked for).
    run_plan = plan(config, resolve_model(config))
    Path(config.run_logs).mkdir(parents=True, exist_ok=True)
    backend = RayLauncher if config.launcher == "ray" else TmuxLauncher
    return backend(run_plan).run()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ours, args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description="The launcher of distributed_test.sh (run that script).")
    p.add_argument("--config", help="run this configuration (JSON: what DRY_RUN=json prints)")
    p.add_argument("--script", default=str(SCRIPT), help="the entry point, as the user called it")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--root", default=str(ROOT))
    p.add_argument("--start_timeout", default="900")
    p.add_argument("--max_restarts", default="3")
    p.add_argument("--override", action="append", default=[], metavar="AGENT/FAMILY=FLAGS",
                   help="an agent's flags for a dataset family, after its registered defaults "
                        "(the script's CODEACT_ARGS, TREE_ARGS)")
    a = p.parse_args(ours)
    try:
        if a.config:
            return run(Config.from_json(a.config))
        if args[:1] == ["stop"]:
            if len(args) != 2:
                raise LaunchError(f"usage: {a.script} stop TMUX_START_ID")
            stop(log_root(os.environ, a.root), args[1])
            return 0
        overrides = {}
        for entry in a.override:
            key, flags = entry.split("=", 1)
            overrides[tuple(key.split("/", 1))] = flags
        config = Config.from_environment(args, os.environ, overrides=overrides, script=a.script,
                                         python=a.python, root=a.root, start_timeout=a.start_timeout,
                                         max_restarts=a.max_restarts)
        if os.environ.get("DRY_RUN") == "json":
            print(config.to_json())
            return 0
        return run(config)
    except LaunchError as e:
        if str(e):
            say(f"error: {e}", err=True)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
