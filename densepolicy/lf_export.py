"""Merged pairs -> a LLaMA-Factory DPO dataset (SPEC §9).

    prepare_dataset(pairs_file, data_dir, name, model_path)   data_dir/<name>.json, a JSON list of
                                                              {"instruction", "input", "chosen",
                                                              "rejected", "history"} records, and
                                                              its entry in data_dir/dataset_info.json

Pairs whose prompt plus longer response exceed cutoff_len tokens of the policy's own tokenizer
are dropped and counted (TokenCounter). Streaming, one chunk of records in memory; each output
is written under a temporary name and renamed, so a failure never leaves a partial file.
"""
import json
from pathlib import Path

from densepolicy.pairs import PairsError, require_columns
from densepolicy.results import AtomicFile, iter_results


def pair_record(row) -> dict:
    """Alpaca-style ranking record: the last user turn is the instruction, earlier turns the
    history, the two contrasted actions chosen/rejected."""
    pos, neg = row["positive_history"], row["negative_history"]
    if not (isinstance(pos, list) and isinstance(neg, list)) or len(pos) < 2 or len(neg) < 2:
        raise ValueError("histories must hold the prompt and an action")
    prompt = pos[:-1]
    if neg[:-1] != prompt:
        raise ValueError("chosen and rejected histories do not share their prompt")
    if pos[-1]["role"] != "assistant" or neg[-1]["role"] != "assistant":
        raise ValueError("the contrasted message is not an assistant action")
    roles = [m["role"] for m in prompt]
    if roles != ["user", "assistant"] * (len(prompt) // 2) + ["user"]:
        raise ValueError("prompt turns do not alternate user/assistant ending on user")
    return {"instruction": prompt[-1]["content"], "input": "",
            "chosen": pos[-1]["content"], "rejected": neg[-1]["content"],
            "history": [[prompt[j]["content"], prompt[j + 1]["content"]]
                        for j in range(0, len(prompt) - 1, 2)]}


class TokenCounter:
    """Prompt + response length in the policy's tokens, batched.

    Exact chat-template rendering per pair is slow (Jinja per record); instead message contents
    are tokenised in one fast-tokenizer batch call per chunk (duplicates, like a task's shared
    prompt, tokenised once) and the template's own tokens are added as a per-message overhead
    measured once from the tokenizer's chat template. This matches the rendered length up to
    merges across a message boundary (none for templates that put special tokens there).
    """

    def __init__(self, model_path):
        from transformers import AutoTokenizer
        self.tok = AutoTokenizer.from_pretrained(model_path)
        if getattr(self.tok, "chat_template", None):
            def n(msgs):
                ids = self.tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=False)
                if isinstance(ids, dict) or hasattr(ids, "keys"):
                    ids = ids["input_ids"]
                return len(ids)
            u, a = self._len("u"), self._len("a")
            one = n([{"role": "user", "content": "u"}]) - u
            two = n([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]) - u - a
            three = n([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"},
                       {"role": "user", "content": "u"}]) - 2 * u - a
            self.base, self.assistant, self.user = one, two - one, three - two
        else:
            self.base, self.assistant, self.user = 0, 0, 0

    def _len(self, text):
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def lengths(self, records):
        """Token count of prompt + longer response for each record."""
        texts = {}
        for r in records:
            for t in (r["instruction"], r["chosen"], r["rejected"], *(x for h in r["history"] for x in h)):
                texts.setdefault(t, None)
        uniq = list(texts)
        if uniq:
            for t, ids in zip(uniq, self.tok(uniq, add_special_tokens=False)["input_ids"]):
                texts[t] = len(ids)
        out = []
        for r in records:
            n = self.base + texts[r["instruction"]] + max(texts[r["chosen"]], texts[r["rejected"]])
            n += self.assistant  # the response turn
            for h in r["history"]:
                n += texts[h[0]] + texts[h[1]] + self.user + self.assistant
            out.append(n)
        return out


def dataset_info_entry(file_name):
    return {"file_name": file_name, "ranking": True,
            "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                        "rejected": "rejected", "history": "history"}}


def update_dataset_info(data_dir, name, file_name):
    """Add or replace `name` in data_dir/dataset_info.json (other entries kept), atomically."""
    path = Path(data_dir) / "dataset_info.json"
    info = {}
    if path.exists():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise PairsError(f"{path}: not valid JSON ({e}); fix or remove it") from None
        if not isinstance(info, dict):
            raise PairsError(f"{path}: expected a JSON object of dataset entries")
    info[name] = dataset_info_entry(file_name)
    with AtomicFile(path) as w:
        w.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return path


def prepare_dataset(pairs_file, data_dir, name, model_path, cutoff_len=4096, chunk=4096,
                    log=print):
    """Selected pairs -> data_dir/<name>.json (a JSON list) + dataset_info.json entry."""
    if not Path(pairs_file).is_file():  # before the (slow) tokenizer load
        raise PairsError(f"{pairs_file}: no such file")
    require_columns(pairs_file, ["selected", "positive_history", "negative_history"], "a pairs file")
    counter = TokenCounter(model_path)
    out = Path(data_dir) / f"{name}.json"
    kept = too_long = unselected = 0
    with AtomicFile(out) as w:
        w.write("[")

        def flush(batch):
            nonlocal kept, too_long
            for rec, n in zip(batch, counter.lengths(batch)):
                if n > cutoff_len:
                    too_long += 1
                    continue
                w.write(("\n" if kept == 0 else ",\n") + json.dumps(rec, ensure_ascii=False))
                kept += 1

        batch = []
        for i, row in iter_results(pairs_file):  # pair rows, streaming, cells decoded
            if row.get("selected") is not True:
                unselected += 1
                continue
            try:
                batch.append(pair_record(row))
            except (ValueError, KeyError, TypeError) as e:
                raise PairsError(f"{pairs_file}: row {i}: {e}") from None
            if len(batch) >= chunk:
                flush(batch)
                batch = []
        flush(batch)
        if kept == 0:
            raise PairsError(f"{pairs_file}: no pair fits (selected pairs dropped over the cutoff "
                             f"of {cutoff_len} tokens: {too_long}; unselected rows: {unselected})")
        w.write("\n]\n")
    info = update_dataset_info(data_dir, name, out.name)
    log(f"[prepare_dataset] {kept} records -> {out} ({too_long} dropped over {cutoff_len} tokens, "
        f"{unselected} unselected rows skipped); registered '{name}' in {info}")
    return dict(kept=kept, dropped_too_long=too_long, unselected=unselected, output=str(out),
                dataset_info=str(info))
