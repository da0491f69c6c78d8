"""transformers' side of run.sh: the greedy continuation of the prompt by the
random SmolLM2-shaped model (float32, CPU), its time, the smallest gap between
the two best logits on the way, and the same continuation from wgml's export
(model-exported/) to show the export loads and computes the same model.

Usage: python check.py PROMPT_IDS_JSON TOKENS"""
import json
import sys
import time

import torch
from transformers import LlamaForCausalLM

torch.set_num_threads(2)
ids = json.loads(open(sys.argv[1]).read())
tokens = int(sys.argv[2])
for folder in ["model", "model-exported"]:
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        start = time.time()
        out = model.generate(torch.tensor([ids]), max_new_tokens=tokens, do_sample=False, eos_token_id=None,
                             pad_token_id=0, output_logits=True, return_dict_in_generate=True)
        seconds = time.time() - start
    new = out.sequences[0, len(ids):].tolist()
    margin = min(float(torch.topk(l[0], 2).values[0] - torch.topk(l[0], 2).values[1]) for l in out.logits)
    print(json.dumps({"folder": folder, "greedy": new, "seconds": round(seconds, 2),
                      "tokens_per_second": round(tokens / seconds, 2), "smallest_margin": round(margin, 4)}))
