"""Chat templates as transformers renders them, for kernels-tests/chat.rs and the
CLI's chat test: wgml renders Hugging Face chat templates with minijinja, and
these cases hold it to what transformers' apply_chat_template (jinja2) gives.

The four templates are written here for the test (not copied from a model):
each uses the Jinja features real templates lean on. "turns" is ChatML-shaped
(a default system turn when none is given, loop.first); "headers" is Llama
3-shaped (bos_token, a namespace, |trim, loop.index0, a date_string that falls
back to a fixed date: not strftime_now, whose date would tie the expected text
to the day it was made); "brief" is short enough for llama-tiny's 32 positions;
"inst" is [INST]-shaped (roles must alternate, else raise_exception; .strip();
eos_token after replies).

Writes kernels-tests/golden/chat.json:
  templates   the templates by name
  cases       [{template, messages, add_generation_prompt, text, ids}]: text is
              apply_chat_template(tokenize=False), ids tokenize=True, with the
              llama-tiny tokenizer (bos <|begin_of_text|>, eos <|end_of_text|>)
  refusals    [{template, messages, error}]: the message raise_exception gives
  generation  llama-tiny (32 positions) with a short template of its own
              ("brief", so that prompt and reply fit) and a stop list: HF's greedy
              generate of 12 tokens from the rendered system + user messages,
              eos_token_id = [301, the third greedy token without a stop], so
              generation stops after two tokens; the ids, the reply as
              tokenizer.decode gives it, and the stop list
  conversation  two user turns with the same model and template, each reply
              greedy (at most 4 tokens, or to <|end_of_text|>) and joining the
              conversation as its text, stripped: what wgml chat must print

Needs torch, transformers and tokenizers. Run from the repo root after
make_llama_tiny.py:
  python3 kernels-tests/golden/make_chat.py
"""
import json

import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

DIR = "kernels-tests/golden"

TEMPLATES = {
    "turns": (
        "{% for m in messages %}"
        "{% if loop.first and m['role'] != 'system' %}"
        "{{ '<|turn|>system\\nYou answer briefly.<|end|>\\n' }}"
        "{% endif %}"
        "{{ '<|turn|>' ~ m['role'] ~ '\\n' ~ m['content'] ~ '<|end|>\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|turn|>assistant\\n' }}{% endif %}"
    ),
    "headers": """{{- bos_token }}
{%- set ns = namespace(system='') %}
{%- if messages[0]['role'] == 'system' %}
    {%- set ns.system = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- endif %}
{%- if date_string is defined %}
    {%- set today = date_string %}
{%- else %}
    {%- set today = '01 Dec 2026' %}
{%- endif %}
{{- '<|head|>system<|/head|>\\n\\nToday: ' + today + '\\n\\n' + ns.system + '<|eot|>' }}
{%- for message in messages %}
    {{- '<|head|>' + message['role'] + '<|/head|>\\n\\n' + message['content'] | trim + '<|eot|>' }}
    {%- if loop.index0 == 0 and message['role'] != 'user' %}
        {{- raise_exception('the first message after the system one must be the user\\'s') }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|head|>assistant<|/head|>\\n\\n' }}
{%- endif %}
""",
    "brief": "{{ bos_token }}{% for m in messages %}{{ m['role'][0] + ': ' + m['content'] + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'a:' }}{% endif %}",
    "inst": """{{ bos_token }}
{% for message in messages %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
    {% if message['role'] == 'user' %}
        {{ '[INST] ' + message['content'].strip() + ' [/INST]' }}
    {% elif message['role'] == 'assistant' %}
        {{ ' ' + message['content'].strip() + eos_token }}
    {% endif %}
{% endfor %}
""",
}

CONVERSATIONS = [
    [{"role": "user", "content": "What is a GPU?"}],
    [{"role": "system", "content": "  Be exact. "}, {"role": "user", "content": "Name a shader language."}],
    [
        {"role": "user", "content": " Hi! "},
        {"role": "assistant", "content": "Hello. "},
        {"role": "user", "content": "Say it again."},
    ],
]

tok = PreTrainedTokenizerFast(
    tokenizer_file=f"{DIR}/llama-tiny/tokenizer.json",
    bos_token="<|begin_of_text|>",
    eos_token="<|end_of_text|>",
)


def render(name, messages, add_generation_prompt, tokenize):
    tok.chat_template = TEMPLATES[name]
    out = tok.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=tokenize, return_dict=False
    )
    return list(out) if tokenize else out


cases, refusals = [], []
for name in TEMPLATES:
    for messages in CONVERSATIONS:
        for add in (True, False):
            try:
                text = render(name, messages, add, False)
            except Exception as e:  # the template's raise_exception
                refusals.append({"template": name, "messages": messages, "error": str(e)})
                break
            cases.append({
                "template": name,
                "messages": messages,
                "add_generation_prompt": add,
                "text": text,
                "ids": render(name, messages, add, True),
            })

model = LlamaForCausalLM.from_pretrained(f"{DIR}/llama-tiny", torch_dtype=torch.float64)
system, prompt = "Be exact.", "Name one."
messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
ids = torch.tensor([render("brief", messages, True, True)])
assert ids.shape[1] + 3 <= 32, ids.shape
free = model.generate(ids, max_new_tokens=3, do_sample=False, eos_token_id=None, pad_token_id=301)
stop = [301, int(free[0, ids.shape[1] + 2])]
assert stop[1] not in free[0, ids.shape[1]:ids.shape[1] + 2].tolist()
out = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=stop, pad_token_id=301)
new = out[0, ids.shape[1]:].tolist()
assert new[-1] == stop[1] and len(new) == 3, new
generation = {
    "template": TEMPLATES["brief"],
    "system": system,
    "prompt": prompt,
    "stop_ids": stop,
    "ids": new,
    "reply": tok.decode(new[:-1]),
}
# A conversation of two turns (wgml chat): each reply greedy, at most 4 tokens or
# to <|end_of_text|>, joins the messages as its decoded text, stripped.
# (Turns whose replies decode to whole printable characters.)
turns, replies = ["b", "Yes"], []
messages = []
for turn in turns:
    messages.append({"role": "user", "content": turn})
    ids = torch.tensor([render("brief", messages, True, True)])
    out = model.generate(ids, max_new_tokens=4, do_sample=False, eos_token_id=[301], pad_token_id=301)
    new = [i for i in out[0, ids.shape[1]:].tolist() if i != 301]
    replies.append(tok.decode(new))
    messages.append({"role": "assistant", "content": tok.decode(new).strip()})
assert ids.shape[1] + 4 <= 32, ids.shape
conversation = {"template": TEMPLATES["brief"], "turns": turns, "tokens": 4, "replies": replies}
json.dump({"templates": TEMPLATES, "cases": cases, "refusals": refusals, "generation": generation,
           "conversation": conversation},
          open(f"{DIR}/chat.json", "w"), indent=1, ensure_ascii=False)
print(len(cases), "cases,", len(refusals), "refusals; generation stops after", generation["ids"],
      "; replies", replies)
