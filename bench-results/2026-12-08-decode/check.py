"""transformers' side of run.sh: the greedy 33 tokens of each model after each
prompt (float32, CPU), against the tokens each wgml binary printed."""
import re

import torch
from transformers import LlamaForCausalLM

torch.set_num_threads(2)
for w, folder in [("smol", "model"), ("wide", "wide")]:
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    for n in (12, 700):
        ids = [int(t[1:]) for t in open(f"prompt-{n}.txt").read().split()]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=33, do_sample=False, eos_token_id=None,
                                 pad_token_id=0, output_logits=True, return_dict_in_generate=True)
        want = out.sequences[0, len(ids):].tolist()
        margin = min(float(torch.topk(l[0], 2).values[0] - torch.topk(l[0], 2).values[1]) for l in out.logits)
        for bin in ("BASE", "NEW"):
            got = [int(t) for t in re.findall(r"t(\d+)", open(f"out-{bin}-{w}-{n}.txt").read())][n:]
            if not got:
                print(f"{bin} {w}, {n}-word prompt: no tokens (the run failed)")
                continue
            same = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
            print(f"{bin} {w}, {n}-word prompt: {len(got)} tokens; transformers' 33 greedy tokens "
                  f"{'equal' if got == want else f'differ from token {same}'} "
                  f"(smallest top-two gap {margin:.4f})")
