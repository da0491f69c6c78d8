"""PyTorch's side of run.sh's fine-tuning: PEFT LoRA (rank 8, alpha 8, q_proj and
v_proj) on the same random SmolLM2-shaped model, Adam at 1e-3, batches of 2
windows of 256 tokens of corpus.txt, float32 on the CPU with 2 threads; the
time of 3 steps after one warm-up step."""
import time

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

torch.set_num_threads(2)
tok = Tokenizer.from_file("model/tokenizer.json")
ids = tok.encode(open("corpus.txt").read()).ids
model = LlamaForCausalLM.from_pretrained("model", dtype=torch.float32)
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
batch = torch.tensor([ids[:256], ids[256:512]])
def step():
    loss = model(batch, labels=batch).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss.item()
step()
start = time.time()
losses = [step() for _ in range(3)]
seconds = time.time() - start
print(f"PEFT LoRA, 3 steps of 2 x 256 tokens: {seconds:.2f} s, {3 * 512 / seconds:.1f} tokens/s, losses {losses}")
