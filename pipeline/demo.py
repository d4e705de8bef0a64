"""The demo job (what ./demo.sh runs): the whole pipeline on one policy model, end to end, on the
stages of pipeline/stages.py.

    serve the base model -> sample trees -> merge trees -> preference pairs -> merge pairs
    -> evaluate the base model (greedy, sampled) -> stop the server -> LLaMA-Factory dataset
    -> DPO training -> merge adapter -> serve the trained model -> evaluate it (greedy, sampled)
    -> summary (densepolicy.report: accuracies with 95% intervals, paired tests, pair counts)

    python -m pipeline.demo --tree_tasks 40 --train_args "max_steps=16 learning_rate=5.0e-4"

Everything goes to OUT/run-<hash>/, <hash> the first 12 hex digits of the sha256 of the settings
line `MODEL=... DATASET=... TREE_TASKS=... ... PAIR_EXAMPLES=... SERVER=... TRAIN_PRECISION=...`
(the flags marked [hashed], in that order, then the engine: ENGINE, and on the CPU vLLM's dtype
and compilation, then what the training adds on this machine, e.g. bf16=true; settings.json
records them): a run with other settings never reuses another's trees,
model or evaluation rows, and the same command again resumes. Every stage is skipped when its
output is there, and the model server is started only for a launcher run that has tasks left, so
a finished run repeats in seconds. OUT/run-<hash>/stage_seconds.tsv gets one line per stage that
ran; the summary's `seconds` is their sum over every invocation. The summary goes to
OUT/run-<hash>/summary.json and OUT/summary.json, its figure (base against trained, with 95%
intervals) to summary.png beside each. DRY_RUN=1 prints the run directory and stops.

Command output goes to OUT/run-<hash>/logs/<stage>.log (--verbose 1: to the terminal too); the
launcher's own logs and tmux sessions follow distributed_test.sh's environment (LOG_DIR,
TMUX_TMPDIR, NUM_GPUS, default 0 here).
"""
import argparse
import hashlib
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from agents.prompts import PAIR_EXAMPLES, pair_prompt
from densepolicy import engines, merge, report
from densepolicy import pairs as pairs_lib
from densepolicy.models import ModelError, resolve_model
from densepolicy.results import AtomicFile, ResultFileError
from pipeline.stages import ROOT, StageError, Stages, shown, train_precision

HASHED = ("model", "dataset", "tree_tasks", "tree_args", "eval_tasks", "sampled_tasks", "samples",
          "eval_args", "train_args", "cutoff_len", "pair_examples")
TREEDPO_CONFIG = ROOT / "TreeDPO" / "smollm2_lora_dpo_cpu.yaml"
TREEDPO_VENV = ".venv-treedpo"
LF_DATASET = "demo_tree_dpo"


class SettingsError(ValueError):
    """Flags or a run directory that cannot make a run (before any stage); one line."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line naming the flag, not argparse's usage block
        raise SettingsError(message)


def positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, each flag's default after its help."""


def parser() -> Parser:
    p = Parser(prog="demo.sh", description=__doc__, formatter_class=Help, allow_abbrev=False)
    flag = p.add_argument
    flag("--model", default="SmolLM2-135M-Instruct",
         help="[hashed] the policy: the embedded model, a model directory or a hub id")
    # An easy BabyAI level: the embedded model both solves and fails it, which is what pairs need.
    flag("--dataset", default="babyai_GoToRedBallGrey", help="[hashed] dataset of trees and evaluation")
    flag("--tree_tasks", type=positive, default=24, help="[hashed] train tasks to sample trees on")
    flag("--tree_args", default="--n_icl 2 --base 3 --max_steps 3 --window_size 4 --max_sample_number 8 "
         "--max_rollouts 16 --max_tokens 48", help="[hashed] flags of the tree agent (codeact_agent_tree)")
    flag("--eval_tasks", type=positive, default=200, help="[hashed] held-out test tasks, one greedy episode each")
    flag("--sampled_tasks", type=positive, default=100,
         help="[hashed] of those, the first N also played SAMPLES times at temperature 1.0")
    flag("--samples", type=positive, default=2, help="[hashed] sampled episodes per task")
    flag("--eval_args", default="--n_icl 2 --max_steps 3 --max_tokens 48 --concurrency 64",
         help="[hashed] flags of the evaluation agent (codeact_agent)")
    flag("--train_args", default="max_steps=12 learning_rate=5.0e-4",
         help=f"[hashed] key=value overrides of {TREEDPO_CONFIG.relative_to(ROOT)} for llamafactory-cli")
    flag("--cutoff_len", type=positive, default=1024,
         help="[hashed] one value: the dataset's length filter and LLaMA-Factory's cutoff_len")
    flag("--pair_examples", choices=PAIR_EXAMPLES, default="none",
         help="[hashed] pair prompts: none (SPEC section 8) or sampled (the in-context examples the trees saw)")
    flag("--out", default="eval_results/demo", help="everything the job writes")
    flag("--start_id", type=int, default=900, help="tmux session ids of the job (TMUX_START_ID)")
    flag("--port_base", type=int, default=8400, help="the job's model server port (PORT_BASE)")
    flag("--verbose", type=int, choices=[0, 1], default=0, help="1: every command's output to the terminal too")
    return p


def parse_args(argv) -> argparse.Namespace:
    # `--name value` takes the next word as the value even when it starts with '-' (argparse alone
    # would read `--eval_args --n_icl` as two flags); every flag here takes a value.
    words, i = [], 0
    while i < len(argv):
        if argv[i].startswith("--") and "=" not in argv[i] and argv[i] not in ("--help", "-h") and i + 1 < len(argv):
            words.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            words.append(argv[i])
            i += 1
    args, unknown = parser().parse_known_args(words)
    if unknown:
        word = unknown[0].split("=", 1)[0]
        raise SettingsError(f"unknown flag {word}" if word.startswith("--") else f"expected --name value, got {word!r}")
    return args


def settings_of(args) -> dict:
    """The hashed flags, the engine from the environment (ENGINE, NUM_GPUS, VLLM_CPU_DTYPE,
    VLLM_CPU_COMPILE) and the training precision this machine gets: a run served or trained
    another way gets its own directory."""
    server = engines.identity(os.environ.get("ENGINE") or "vllm", num_gpus())
    return {**{name.upper(): str(getattr(args, name)) for name in HASHED}, "SERVER": server,
            "TRAIN_PRECISION": " ".join(precision(args)) or "as configured"}


def precision(args) -> list[str]:
    """What the training adds to TRAIN_ARGS on this machine (stages.train_precision)."""
    return train_precision(num_gpus(), shlex.split(args.train_args))


def num_gpus() -> int:
    """The demo's GPUs: NUM_GPUS, 0 when unset (it is a CPU job unless told otherwise)."""
    try:
        return int(os.environ.get("NUM_GPUS") or 0)
    except ValueError:
        raise SettingsError(f"NUM_GPUS must be a number, got {os.environ['NUM_GPUS']!r}") from None


def run_hash(settings: dict) -> str:
    """What names the run directory: the settings line demo.sh has always hashed."""
    line = " ".join(f"{k}={v}" for k, v in settings.items())
    return hashlib.sha256(line.encode()).hexdigest()[:12]


def check_settings(run_dir: Path, settings: dict):
    """Record the settings in a new run directory; a directory that holds others is refused."""
    stamp = run_dir / "settings.json"
    if stamp.exists():
        try:
            old = json.loads(stamp.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = {}
        if old != settings:
            differ = [k for k in settings if old.get(k) != settings[k]] or ["unknown keys"]
            raise SettingsError(f"{stamp} holds a run made with other settings ({', '.join(differ)}); "
                                f"remove that directory or give another --out")
        return
    with AtomicFile(stamp) as w:
        w.write(json.dumps(settings, indent=2) + "\n")


# ---------------------------------------------------------------------------------------- the job
def run(args, run_dir: Path, log=print) -> dict:
    t0 = time.monotonic()
    ds, q = args.dataset, shlex.quote
    try:
        model_path = resolve_model(args.model)  # the tokenizer and LLaMA-Factory's base model
    except ModelError as e:
        raise SettingsError(str(e)) from None
    st = Stages(logs=run_dir / "logs", log=log, verbose=bool(args.verbose),
                seconds_file=run_dir / "stage_seconds.tsv", start_id=args.start_id,
                port_base=args.port_base, num_gpus=str(num_gpus()))
    serving = {}

    def server(label, model):
        """`before` of a launcher run: the job's one server, serving `model` (started only when a
        run has tasks left, so a finished stage costs no server start-up)."""
        def start():
            if serving.get("model") != model:
                st.stop_servers()
                st.serve(label, model)
                serving["model"] = model
        return start

    def evaluate(which, model):
        """(greedy, sampled) result directories of `model` on the first test tasks."""
        root = q(str(run_dir / f"eval_{which}"))
        greedy = st.run_agents(f"evaluate {ds}", f"{which} greedy", model, ds, "codeact_agent",
                               f"{args.eval_args} --output_root {root}", args.eval_tasks,
                               before=server(f"{which} model", model))
        sampled = st.run_agents(f"evaluate {ds}", f"{which} sampled", model, ds, "codeact_agent",
                                f"{args.eval_args} --temperature 1.0 --samples {args.samples} --output_root {root}",
                                args.sampled_tasks, before=server(f"{which} model", model))
        return greedy.directory, sampled.directory

    try:
        trees = st.run_agents("sample trees", None, args.model, ds, "codeact_agent_tree",
                              f"{args.tree_args} --output_root {q(str(run_dir))}", args.tree_tasks,
                              before=server("base model", args.model))
        merged_trees = merge_trees(st, trees.directory, ds)
        pairs_file = preference_pairs(st, merged_trees, ds, args.pair_examples)
        merged = st.merge_pairs("merge pairs", None, [pairs_file], run_dir / "merged_pairs.csv")
        base = evaluate("base", args.model)
        st.stop_servers()  # the cores go to training
        serving.clear()
        st.dataset(None, merged, run_dir / "data", LF_DATASET, model_path, args.cutoff_len,
                   run_dir / "train_set.json")
        lora = st.train(None, TREEDPO_CONFIG, TREEDPO_VENV, model_path, LF_DATASET, run_dir / "data",
                        run_dir / "lora", [f"cutoff_len={args.cutoff_len}", *precision(args),
                                          *shlex.split(args.train_args)])
        trained_model = st.merge_adapter(None, lora, model_path, run_dir / "trained_model", TREEDPO_VENV)
        trained = evaluate("trained", str(trained_model))
    finally:
        st.stop_servers()

    st.line("summary", None, f"{shown(run_dir / 'summary.json')}, {shown(Path(args.out) / 'summary.json')}, "
                             "a summary.png beside each")
    t1 = time.monotonic()
    # A resumed run's cost is every invocation's stages, not the last one's.
    tsv = run_dir / "stage_seconds.tsv"
    seconds = sum(float(line.split("\t")[1]) for line in
                  (tsv.read_text(encoding="utf-8").splitlines() if tsv.exists() else ()) if "\t" in line)
    try:
        # Pair counts from the whole pairs file: the merged file holds only the selected pairs.
        summary = report.summarize(ds, pairs_file, (base[0], trained[0]), (base[1], trained[1]), seconds,
                                   lora / "train_results.json",
                                   {"run": shown(run_dir), "seconds_this_invocation": round(time.monotonic() - t0)})
    except (ResultFileError, ValueError, OSError) as e:
        raise StageError("summary", None, str(e)) from None
    text = json.dumps(summary, indent=2) + "\n"
    for directory in (run_dir, Path(args.out)):
        with AtomicFile(directory / "summary.json") as w:
            w.write(text)
        report.plot(summary, directory / "summary.png")
    log(report.table(summary))
    st.done("summary", None, t1)
    return summary


def merge_trees(st: Stages, tree_dir: Path, ds: str) -> Path:
    """The tree agent's shards -> one result file (densepolicy.merge; shards archived)."""
    pattern = f"{ds}.None_split_0.0.{{}}.csv"
    merged = merge.merged_file(tree_dir, pattern)
    if merged.exists() and not merge.shard_files(tree_dir, pattern):
        st.line("merge trees", None, f"skipped, {shown(merged)} exists")
        return merged
    st.line("merge trees", None, f"{shown(tree_dir)} -> {shown(merged)}")
    t0 = time.monotonic()
    try:
        r = merge.merge(tree_dir, pattern)
    except (ResultFileError, ValueError, OSError) as e:
        raise StageError("merge trees", None, str(e)) from None
    st.log(f"   {r['unique']} trees from {r['shards']} shard file(s), {r['duplicates']} duplicates dropped; "
           f"{r['mean_score']:.1f}% of tasks solved")
    st.done("merge trees", None, t0)
    return merged


def preference_pairs(st: Stages, merged_trees: Path, ds: str, examples: str) -> Path:
    """Trees -> the pairs file beside them (densepolicy.pairs, the prompt of agents.prompts)."""
    out_dir = merged_trees.parent / ds
    out = out_dir / (merged_trees.name.removesuffix(".csv") + pairs_lib.PAIRS_SUFFIX)
    if out.exists():
        st.line("preference pairs", None, f"skipped, {shown(out)} exists")
        return out
    st.line("preference pairs", None, f"{shown(merged_trees)} -> {shown(out)} (pair prompts: {examples} examples)")
    t0, lines = time.monotonic(), []
    try:
        pairs_lib.process_result([merged_trees], out_dir, ds, lambda row, env: pair_prompt(row, ds, env, examples),
                                 out_name=out.name, log=lines.append)
    except (pairs_lib.PairsError, ResultFileError, OSError) as e:
        raise StageError("preference pairs", None, str(e)) from None
    for line in lines:
        st.log(f"   {line}")
    st.done("preference pairs", None, t0)
    return out


def main(argv=None) -> int:
    # A terminated job ends its sessions and servers too (run's `finally`), as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        args = parse_args(sys.argv[1:] if argv is None else list(argv))
        settings = settings_of(args)
        run_dir = Path(args.out).resolve() / f"run-{run_hash(settings)}"
        print(f"== run directory {shown(run_dir)}", flush=True)
        if os.environ.get("DRY_RUN") == "1":
            return 0
        check_settings(run_dir, settings)
        run(args, run_dir, log=lambda s: print(s, flush=True))
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StageError as e:
        return e.report()
    except KeyboardInterrupt:
        return 130
    print(f"== summary: {shown(Path(args.out) / 'summary.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
