"""Merge a LoRA adapter (from a TreeDPO LoRA run) into its base model: a plain model directory
that any server (transformers serve, vLLM, the launcher) loads like the original model.

    .venv-treedpo/bin/python TreeDPO/merge_lora.py --base BASE_DIR --adapter ADAPTER_DIR --out OUT_DIR

The tokenizer (and its chat template) is copied from the base, so the merged model is prompted
exactly as the policy that sampled the trees. Written to OUT_DIR.tmp, then renamed.
"""
import argparse
import shutil
import sys
from pathlib import Path


def merge(base, adapter, out, dtype="auto"):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    out = Path(out)
    if not (Path(adapter) / "adapter_config.json").exists():
        raise SystemExit(f"error: {adapter}: no adapter_config.json (not a LoRA adapter directory)")
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(base)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="base model directory (or hub id)")
    ap.add_argument("--adapter", required=True, help="LoRA adapter directory (the run's output_dir)")
    ap.add_argument("--out", required=True, help="merged model directory to write")
    ap.add_argument("--dtype", default="auto", help="auto (the base's), float32, bfloat16, float16")
    args = ap.parse_args(argv)
    print(f"[merge_lora] wrote {merge(args.base, args.adapter, args.out, args.dtype)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
