"""Run with .venv-treedpo's python: the token ids LLaMA-Factory trains on for a conversation, and
the ids of the model's own chat template (what the server prompts with), as JSON.

    python tests/lf_template_ids.py MODEL_DIR TEMPLATE DEFAULT_SYSTEM [--llama3] < messages.json

--llama3 gives MODEL_DIR's tokenizer Llama-3-Instruct's special tokens, pre-tokenizer and chat
template: the real Llama-3 tokenizer is not available offline, and what must agree is the template
(it trims every message) with LLaMA-Factory's `llama3` template, not the vocabulary. The
pre-tokenizer matters: Llama-3's keeps the newlines after a header apart from the next word, as
LLaMA-Factory's piecewise encoding does, where SmolLM2's would merge them differently.
"""
import json
import sys

from llamafactory.data import get_template_and_fix_tokenizer
from llamafactory.hparams import DataArguments
from tokenizers import Regex, pre_tokenizers
from transformers import AutoTokenizer

# Meta-Llama-3-8B-Instruct's tokenizer_config.json chat_template.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
# Meta-Llama-3-8B-Instruct's tokenizer.json pre-tokenizer split pattern.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

path, template, system = sys.argv[1:4]
messages = json.load(sys.stdin)
tok = AutoTokenizer.from_pretrained(path)
if "--llama3" in sys.argv[4:]:
    tok.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>",
                                                          "<|eom_id|>"]})
    tok.chat_template = LLAMA3_CHAT_TEMPLATE
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
tpl = get_template_and_fix_tokenizer(tok, DataArguments(template=template, default_system=system or None))
trained = [i for prompt, response in tpl.encode_multiturn(tok, messages, None) for i in prompt + response]
served = tok.apply_chat_template(messages, tokenize=True, return_dict=False)
print(json.dumps({"trained": trained, "served": served}))
