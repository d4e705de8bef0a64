"""Run with .venv-treedpo's python: the token ids LLaMA-Factory trains on for a conversation, and
the ids of the model's own chat template (what the server prompts with), as JSON.

    python tests/lf_template_ids.py MODEL_DIR TEMPLATE DEFAULT_SYSTEM < messages.json
"""
import json
import sys

from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments
from transformers import AutoTokenizer

path, template, system = sys.argv[1:4]
messages = json.load(sys.stdin)
tok = AutoTokenizer.from_pretrained(path)
tpl = get_template_and_fix_tokenizer(tok, DataArguments(template=template, default_system=system or None))
trained = [i for prompt, response in tpl.encode_multiturn(tok, messages, None) for i in prompt + response]
served = tok.apply_chat_template(messages, tokenize=True, return_dict=False)
print(json.dumps({"trained": trained, "served": served}))
