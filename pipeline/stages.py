"""The stages the demo (pipeline/demo.py) and the density study (pipeline/density.py) share, written
once: merge pairs -> LLaMA-Factory dataset -> DPO training -> adapter merge -> evaluation, and the
launcher runs and the shared model server around them.

    st = Stages(logs=OUT / "logs", start_id=900, port_base=8400)
    merged = st.merge_pairs("merge pairs", None, pair_files, OUT / "merged_pairs.csv")
    records = st.dataset(None, merged, OUT / "data", "demo", model_path, 1024, OUT / "train_set.json")
    lora = st.train(None, config, venv, model_path, "demo", OUT / "data", OUT / "lora", ["max_steps=12"])
    model = st.merge_adapter(None, lora, model_path, OUT / "model", venv)
    done = st.run_agents("evaluate gsm8k", "trained", str(model), "gsm8k", "codeact_agent", flags)

Every stage is skipped when its output is there, and outputs only appear complete (written under a
temporary name and renamed, or rows the agents fsync one by one), so the same job again resumes
where it stopped. A stage that runs prints `== [HH:MM:SS] STAGE (LABEL): what`, runs its command
with the output in LOGS/<label>.<stage>.log, and appends `STAGE (LABEL)<TAB>seconds` to
`seconds_file`; a failing one raises StageError naming the stage, the label and the log.

Which rows belong to a run is the launcher's business: the result directory comes from its plan
(agent, model and run name), under an output root that the job makes its own per settings (the
demo's run hash, the density study's study.json), so rows of another model or settings are never
counted.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dataset import DataError
from densepolicy import engines, lf_export, pair_selection, paths
from densepolicy import pairs as pairs_lib
from densepolicy.report import train_loss as recorded_loss
from densepolicy.results import AtomicFile, ResultFileError, finished_rows
from pipeline import launch

ROOT = paths.ROOT


PRECISION_KEYS = ("bf16", "fp16", "pure_bf16")


def train_precision(num_gpus: int, overrides=()) -> list[str]:
    """The precision flags the jobs add to LLaMA-Factory's: on a machine without GPUs whose CPU
    computes bfloat16 natively (engines.native_cpu_dtype), bf16 mixed precision, 1.7x faster DPO
    steps there (4 steps of the demo's pairs: 58 s vs 97 s in float32, AMD EPYC with AVX512-BF16);
    nothing elsewhere (the CPU config trains in float32, a GPU config says its own) or when the
    overrides set a precision themselves."""
    if num_gpus or any(o.split("=", 1)[0] in PRECISION_KEYS for o in overrides):
        return []
    return ["bf16=true"] if engines.native_cpu_dtype() == "bfloat16" else []


class StageError(RuntimeError):
    """A stage failed: one line naming the stage and the label; `details` holds the log's last lines."""

    def __init__(self, stage, label, reason, details=""):
        super().__init__(f"stage '{stage}' failed{f' for {label}' if label else ''}: {reason}")
        self.stage, self.label, self.reason, self.details = stage, label, reason, details

    def report(self) -> int:
        """Print the log's last lines and the one-line error to stderr; the exit status (1)."""
        if self.details:
            print(self.details, file=sys.stderr)
        print(f"error: {self}", file=sys.stderr)
        return 1


@dataclass
class Finished:
    """A launcher run whose every task has a row."""
    directory: Path
    rows: list          # one per task, in task order
    max_turn: int


def shown(p) -> str:
    """A path as the user gave it: relative to the working directory when under it."""
    p = Path(p)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


@dataclass
class Stages:
    logs: Path                         # one log file per stage command
    log: object = print
    verbose: bool = False              # also copy every command's output to stdout
    seconds_file: Path | None = None   # `stage<TAB>seconds` appended for each stage that ran
    # The launcher settings of every run of the job (distributed_test.sh's environment).
    start_id: int = 0
    port_base: int = 8000
    num_gpus: str | None = None        # None: the launcher counts them
    launcher_logs: str | None = None   # LOG_DIR unless the environment sets one (None: logs/)

    def __post_init__(self):
        self.logs = Path(self.logs)

    # ------------------------------------------------------------------------------ plumbing
    def line(self, stage, label, text):
        self.log(f"== [{time.strftime('%H:%M:%S')}] {stage}{f' ({label})' if label else ''}: {text}")

    def done(self, stage, label, t0, note=""):
        seconds = time.monotonic() - t0
        self.log(f"   done in {seconds:.0f}s{note}")
        if self.seconds_file is not None:
            Path(self.seconds_file).parent.mkdir(parents=True, exist_ok=True)
            with open(self.seconds_file, "a", encoding="utf-8") as f:
                f.write(f"{stage}{f' ({label})' if label else ''}\t{seconds:.0f}\n")

    def command(self, stage, label, argv, env=None) -> Path:
        """Run one command from the repository root, its output in the stage's log file."""
        name = ".".join(x.replace(" ", "_").replace("/", "_") for x in (label, stage) if x)
        log_path = self.logs / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w", encoding="utf-8") as f:
            f.write("$ " + shlex.join(str(a) for a in argv) + "\n")
            f.flush()
            try:
                proc = subprocess.Popen([str(a) for a in argv], cwd=ROOT, env=env, text=True,
                                        errors="replace", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            except OSError as e:
                raise StageError(stage, label, f"cannot start {argv[0]} ({e})") from None
            try:
                for line in proc.stdout:
                    f.write(line)
                    if self.verbose:
                        sys.stdout.write(line)
                        sys.stdout.flush()
            except BaseException:  # interrupted: the command must not outlive the stage
                proc.kill()
                proc.wait()
                raise
            code = proc.wait()
        if code != 0:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            raise StageError(stage, label, f"exit {code} (log: {shown(log_path)})", "\n".join(tail))
        return log_path

    # --------------------------------------------------------------------- training stages
    def merge_pairs(self, stage, label, pair_files, out, n_tasks=None, n_pairs=None,
                    default_density=None, seed=0, what="") -> Path:
        """Selected pairs of these files -> OUT (densepolicy.pair_selection.merge_all_pairs)."""
        out = Path(out)
        if out.exists():
            self.line(stage, label, f"skipped, {shown(out)} exists")
            return out
        self.line(stage, label, what or f"{len(pair_files)} pair file(s) -> {shown(out)}")
        t0, lines = time.monotonic(), []
        try:
            pair_selection.merge_all_pairs(pair_files, out, n_tasks=n_tasks, n_pairs=n_pairs,
                                           default_density=default_density, seed=seed, log=lines.append)
        except (pairs_lib.PairsError, ResultFileError, OSError) as e:
            raise StageError(stage, label, str(e)) from None
        for line in lines:
            self.log(f"   {line}")
        self.done(stage, label, t0)
        return out

    def dataset(self, label, merged, data_dir, name, model_path, cutoff_len, summary) -> dict:
        """Merged pairs -> DATA_DIR/NAME.json registered in DATA_DIR/dataset_info.json (the job's own
        data directory, not TreeDPO/data); SUMMARY records {records, dropped_too_long}."""
        data, summary, info = Path(data_dir) / f"{name}.json", Path(summary), Path(data_dir) / "dataset_info.json"
        try:
            registered = json.loads(info.read_text(encoding="utf-8")).get(name, {}).get("file_name") == data.name
        except (OSError, json.JSONDecodeError, AttributeError):
            registered = False
        if data.exists() and summary.exists() and registered:
            self.line("dataset", label, f"skipped, {shown(data)} exists")
            return json.loads(summary.read_text(encoding="utf-8"))
        self.line("dataset", label, f"{shown(merged)} -> {shown(data)}")
        t0, lines = time.monotonic(), []
        try:
            s = lf_export.prepare_dataset(merged, data_dir, name, model_path, cutoff_len=cutoff_len,
                                          log=lines.append)
        except (pairs_lib.PairsError, ResultFileError, OSError) as e:
            raise StageError("dataset", label, str(e)) from None
        for line in lines:
            self.log(f"   {line}")
        if s["dropped_too_long"]:
            self.log(f"   warning: {s['dropped_too_long']} pairs over {cutoff_len} tokens dropped: "
                     f"training sees fewer pairs than were selected")
        result = {"records": s["kept"], "dropped_too_long": s["dropped_too_long"]}
        with AtomicFile(summary) as w:
            w.write(json.dumps(result) + "\n")
        self.done("dataset", label, t0)
        return result

    def train(self, label, config, venv, model_path, name, data_dir, out, overrides=()) -> Path:
        """llamafactory-cli train CONFIG into OUT.tmp, renamed to OUT once it holds an adapter or a
        model, so OUT exists only when training finished."""
        out = Path(out)
        if out.is_dir():
            self.line("train", label, f"skipped, {shown(out)} exists")
            return out
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # a run that died half way
        self.line("train", label, f"{shown(config)} on {name} -> {shown(out)}")
        t0 = time.monotonic()
        try:
            self.command("train", label, [
                ROOT / venv / "bin" / "llamafactory-cli", "train", config, f"model_name_or_path={model_path}",
                f"dataset={name}", f"dataset_dir={data_dir}", f"output_dir={tmp}", *overrides])
            if not ((tmp / "adapter_config.json").exists() or (tmp / "config.json").exists()):
                raise StageError("train", label, f"{tmp} holds neither an adapter nor a model")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        os.replace(tmp, out)
        loss = train_loss(out)
        self.done("train", label, t0, f"; loss {'-' if loss is None else f'{loss:.4f}'}")
        return out

    def merge_adapter(self, label, trained, model_path, out, venv) -> Path:
        """TreeDPO/merge_lora.py: the adapter in TRAINED merged into a full model OUT (a full
        fine-tuning's TRAINED is the model itself)."""
        trained, out = Path(trained), Path(out)
        if not (trained / "adapter_config.json").exists():
            self.line("merge adapter", label, f"skipped, {shown(trained)} is a full model")
            return trained
        if (out / "config.json").exists():
            self.line("merge adapter", label, f"skipped, {shown(out)} exists")
            return out
        self.line("merge adapter", label, f"{shown(trained)} -> {shown(out)}")
        t0 = time.monotonic()
        # merge_lora.py writes OUT.tmp and renames it.
        self.command("merge adapter", label, [ROOT / venv / "bin" / "python", ROOT / "TreeDPO" / "merge_lora.py",
                                              "--base", model_path, "--adapter", trained, "--out", out])
        self.done("merge adapter", label, t0)
        return out

    # -------------------------------------------------------------------------- launcher runs
    def configure(self, stage, label, args, env=()) -> launch.Config:
        """The Config `distributed_test.sh ARGS` would run with (its per-dataset settings count),
        with this job's launcher settings and WAIT=1."""
        environ = {**self.environ(), "WAIT": "1", "PORT_BASE": str(self.port_base), **dict(env)}
        if self.num_gpus is not None:
            environ["NUM_GPUS"] = str(self.num_gpus)
        environ = {k: v for k, v in environ.items() if v is not None}  # None: unset
        try:
            return launch.configure([str(a) for a in args], environ)
        except launch.LaunchError as e:
            raise StageError(stage, label, f"the launcher refused the run: {e}") from None

    def environ(self) -> dict:
        environ = dict(os.environ)
        if self.launcher_logs:
            environ.setdefault("LOG_DIR", str(self.launcher_logs))
        return environ

    def run_config(self, stage, label, config):
        """Run a Config in a process of its own (its output: the stage's log); if that fails or is
        interrupted, end the job's sessions (a launcher that died leaves its own running)."""
        try:
            self.command(stage, label, [sys.executable, "-m", "pipeline.launch", "--config", config.to_json()])
        except BaseException:
            self.stop_servers()
            raise

    def run_agents(self, stage, label, model, dataset, agent, agent_args, task_limit=None, procs=1,
                   before=None) -> Finished:
        """`distributed_test.sh MODEL DATASET AGENT PROCS START_ID` with WAIT=1 for the tasks that
        have no row yet in the run's result directory (skipped when none is missing). `before()` is
        called first when something is to run (the demo starts its shared server there)."""
        config = self.configure(stage, label, [model, dataset, agent, procs, self.start_id],
                                {"AGENT_ARGS": agent_args.strip(),
                                 "TASK_LIMIT": None if task_limit is None else str(task_limit)})
        run_plan = launch.plan(config)
        try:
            directory, indices, max_turn = run_plan.result_dir(), run_plan.task_indices(), run_plan.max_turn
        except (DataError, launch.LaunchError) as e:
            raise StageError(stage, label, str(e)) from None
        rows = finished_rows(directory, dataset) if directory.is_dir() else {}
        missing = [i for i in indices if i not in rows]
        if not missing:
            self.line(stage, label, f"skipped, {len(indices)} tasks done in {shown(directory)}")
        else:
            if before is not None:
                before()
            self.line(stage, label, f"{len(missing)} of {len(indices)} tasks -> {shown(directory)}")
            t0 = time.monotonic()
            self.run_config(stage, label, config)
            rows = finished_rows(directory, dataset)
            missing = [i for i in indices if i not in rows]
            if missing:
                raise StageError(stage, label, f"{len(missing)} tasks have no result in {directory}")
            self.done(stage, label, t0)
        return Finished(directory, [rows[i] for i in indices], max_turn)

    def serve(self, label, model) -> launch.Config:
        """`distributed_test.sh serve MODEL START_ID`: start (or reuse) the job's server; the runs
        of this job on the same port reuse it until stop_servers()."""
        config = self.configure("serve", label, ["serve", model, self.start_id])
        self.line("serve", label, f"{model} on port {config.port_base}")
        t0 = time.monotonic()
        self.run_config("serve", label, config)
        self.done("serve", label, t0)
        return config

    def stop_servers(self):
        """`distributed_test.sh stop START_ID`: exactly the sessions the job's runs list in their
        manifest, servers included."""
        try:
            launch.stop(launch.log_root(self.environ()), str(self.start_id), report=lambda _: None)
        except launch.LaunchError:  # no manifest: nothing of the job is running
            pass


def train_loss(trained):
    """The training loss LLaMA-Factory recorded in a trained directory (None: not recorded)."""
    try:
        return recorded_loss(Path(trained) / "train_results.json")
    except (OSError, ValueError):
        return None
