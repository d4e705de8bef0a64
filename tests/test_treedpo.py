"""TreeDPO with the real LLaMA-Factory (in .venv-treedpo): our generated DPO dataset through its own
data pipeline, a reduced LoRA DPO training run of the embedded model on CPU, and the merge of its
adapter into a model directory that transformers loads and generates with, and that
distributed_test.sh serves to the downstream agent.

Needs .venv-treedpo: made here by ./setup_treedpo.sh (idempotent; a no-op once set up). Set
DENSEPOLICY_SKIP_TREEDPO=1 to skip these tests instead.
"""
import json
import os
import subprocess

import pytest

from conftest import ROOT, run_launcher
from agents.prompts import pair_prompt
from densepolicy import lf_export, pair_selection
from densepolicy import pairs as pairs_lib
from densepolicy.results import model_dir_name, read_results, write_results
import test_pairs as T

VENV = ROOT / ".venv-treedpo"


@pytest.fixture(scope="module")
def treedpo():
    if os.environ.get("DENSEPOLICY_SKIP_TREEDPO") == "1":
        pytest.skip("DENSEPOLICY_SKIP_TREEDPO=1")
    r = subprocess.run([str(ROOT / "setup_treedpo.sh")], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    return VENV / "bin"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, model_path):
    """Our pipeline end to end on 8 hand-built trees: 16 selected pairs -> tree_dpo.json."""
    root = tmp_path_factory.mktemp("treedpo")
    run = root / "eval_results" / "run"
    run.mkdir(parents=True)
    rows = [T.tree_row(i, T.RUNS, goal=f"Task {i}. {T.GOAL}") for i in range(8)]
    write_results(run / "gsm8k.None_split_0.0.None.csv", rows, T.TREE_COLUMNS)
    quiet = lambda *_: None  # noqa: E731
    pairs_lib.process_result([run / "gsm8k.None_split_0.0.None.csv"], run / "gsm8k", "gsm8k",
                             lambda row, env: pair_prompt(row, "gsm8k", env), n_draw=0, log=quiet)
    pair_selection.merge_all_pairs(pairs_lib.discover_pair_files(root / "eval_results"), root / "merged.csv", log=quiet)
    s = lf_export.prepare_dataset(root / "merged.csv", root / "data", "tree_dpo", model_path, log=quiet)
    assert s["kept"] == 16
    return root / "data"


PIPELINE = r"""
import json, sys
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.extras.constants import IGNORE_INDEX
model, data_dir, out = sys.argv[1:4]
model_args, data_args, training_args, finetuning_args, _ = get_train_args(dict(
    model_name_or_path=model, stage="dpo", do_train=True, finetuning_type="lora", dataset="tree_dpo",
    dataset_dir=data_dir, template="smollm2", cutoff_len=4096, output_dir=out, use_cpu=True,
    report_to="none", overwrite_cache=True))
tok = load_tokenizer(model_args)
template = get_template_and_fix_tokenizer(tok["tokenizer"], data_args)
ds = get_dataset(template, model_args, data_args, training_args, stage="rm", **tok)["train_dataset"]
t = tok["tokenizer"]
rows = []
for ex in ds:
    n_c = sum(1 for x in ex["chosen_labels"] if x == IGNORE_INDEX)
    n_r = sum(1 for x in ex["rejected_labels"] if x == IGNORE_INDEX)
    rows.append(dict(prompt_same=ex["chosen_input_ids"][:n_c] == ex["rejected_input_ids"][:n_r] and n_c == n_r,
                     labels_are_response=ex["chosen_labels"][n_c:] == ex["chosen_input_ids"][n_c:],
                     prompt=t.decode(ex["chosen_input_ids"][:n_c]),
                     chosen=t.decode(ex["chosen_input_ids"][n_c:]),
                     rejected=t.decode(ex["rejected_input_ids"][n_r:])))
print("RESULT " + json.dumps(rows))
"""


def test_dataset_through_llamafactory_pipeline(treedpo, dataset_dir, model_path, tmp_path):
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    r = subprocess.run([str(treedpo / "python"), str(script), model_path, str(dataset_dir), str(tmp_path / "out")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf")})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(r.stdout.split("RESULT ", 1)[1])
    recs = json.loads((dataset_dir / "tree_dpo.json").read_text())
    assert len(rows) == len(recs) == 16
    for row, rec in zip(rows, recs):
        assert row["prompt_same"] and row["labels_are_response"]
        assert row["chosen"] != row["rejected"]
        # The smollm2 template: ChatML turns, the responses closed by <|im_end|>.
        assert row["chosen"] == rec["chosen"] + "<|im_end|>\n"
        assert row["rejected"] == rec["rejected"] + "<|im_end|>\n"
        assert row["prompt"].startswith("<|im_start|>system\n")
        assert row["prompt"].endswith(f"<|im_start|>user\n{rec['instruction']}<|im_end|>\n<|im_start|>assistant\n")
        for user, assistant in rec["history"]:  # earlier turns are in the shared prompt
            assert f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{assistant}<|im_end|>\n" in row["prompt"]


def test_lora_dpo_train_merge_and_generate(treedpo, dataset_dir, model_path, tmp_path):
    out, merged = tmp_path / "adapter", tmp_path / "merged"
    # The CPU config as written, reduced: 2 optimizer steps of 1 pair, prompts cut to 128 tokens.
    r = subprocess.run([str(treedpo / "llamafactory-cli"), "train", "TreeDPO/smollm2_lora_dpo_cpu.yaml",
                        f"model_name_or_path={model_path}", f"dataset_dir={dataset_dir}",
                        f"output_dir={out}", "max_steps=2", "gradient_accumulation_steps=1",
                        "cutoff_len=128"],
                       cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf")})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    log = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert log[-1]["current_steps"] == 2 and "loss" in log[0]
    r = subprocess.run([str(treedpo / "python"), "TreeDPO/merge_lora.py", "--base", model_path,
                        "--adapter", str(out), "--out", str(merged)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # Loads with the main environment's transformers (what the launcher serves with), has moved
    # away from the base weights, and generates text.
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    base_w, new_w = load_file(f"{model_path}/model.safetensors"), load_file(str(merged / "model.safetensors"))
    assert base_w.keys() == new_w.keys()
    assert any(not torch.equal(base_w[k], new_w[k]) for k in base_w if "q_proj" in k)
    tok = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged)
    enc = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    ids = model.generate(**enc, max_new_tokens=12, do_sample=False)
    text = tok.decode(ids[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.strip()

    # The downstream test serves the merged directory through the launcher, as users do.
    out_root = tmp_path / "eval_results"
    run = run_launcher(tmp_path, str(merged), "babyai_GoToRedBallGrey", "codeact_agent", 1, {
        "TASK_LIMIT": "2", "AGENT_ARGS": f"--output_root {out_root} --n_icl 1 --max_steps 1 --max_tokens 32"})
    assert run.returncode == 0, run.stdout + run.stderr
    [run_dir] = (out_root / f"codeact_agent.{model_dir_name(str(merged))}").iterdir()
    rows = read_results(run_dir / "babyai_GoToRedBallGrey.None_split_0.0.0.csv")
    assert sorted(r["index"] for r in rows) == [0, 1]
    for row in rows:
        [reply] = [m["content"] for m in row["history"] if m["role"] == "assistant"]
        assert reply.strip()


TURNS = [{"role": "user", "content": "Your task is to: go to the red ball"},
         {"role": "assistant", "content": 'Action:\ngo_to("red ball 1")\nEnd Action'},
         {"role": "user", "content": "You see a wall 1 step ahead."},
         {"role": "assistant", "content": "Action:\nturn_left()\nEnd Action"}]


def template_ids(treedpo, model_path, template, system, messages, *flags):
    """{"trained": LLaMA-Factory's ids, "served": the chat template's ids} (tests/lf_template_ids.py)."""
    r = subprocess.run([str(treedpo / "python"), str(ROOT / "tests" / "lf_template_ids.py"), model_path,
                        template, system, *flags], input=json.dumps(messages), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_llamafactory_trains_on_the_tokens_the_server_prompts_with(treedpo, model_path):
    """The CPU config's template and default_system give exactly the model's own chat template's
    token ids (its system prompt lacks the final period of LLaMA-Factory's smollm2 template)."""
    import yaml
    config = yaml.safe_load((ROOT / "TreeDPO" / "smollm2_lora_dpo_cpu.yaml").read_text())
    fixed = template_ids(treedpo, model_path, config["template"], config["default_system"], TURNS)
    assert fixed["trained"] == fixed["served"]
    unfixed = template_ids(treedpo, model_path, config["template"], "", TURNS)  # its own default: one token off
    assert unfixed["trained"] != unfixed["served"] and len(unfixed["trained"]) == len(unfixed["served"]) + 1


def test_llama3_template_trains_on_the_tokens_the_server_prompts_with(treedpo, model_path):
    """Llama-3's chat template trims every message; LLaMA-Factory's `llama3` template does not. The
    agent stores observations trimmed (codeact.observation_of), so the two agree; an observation
    stored as printed (with its final newline) would not."""
    from agents.codeact import observation_of
    printed = "You see a wall 1 step ahead.\n"
    stored = [*TURNS[:2], {"role": "user", "content": observation_of(printed)}, TURNS[3]]
    ids = template_ids(treedpo, model_path, "llama3", "", stored, "--llama3")
    assert ids["trained"] == ids["served"]
    as_printed = [*TURNS[:2], {"role": "user", "content": printed}, TURNS[3]]
    ids = template_ids(treedpo, model_path, "llama3", "", as_printed, "--llama3")
    assert ids["trained"] != ids["served"]
