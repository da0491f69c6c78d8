import sys, torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
folder, text_path = sys.argv[1], sys.argv[2]
m = GPT2LMHeadModel.from_pretrained(folder).eval()
tok = PreTrainedTokenizerFast(tokenizer_file=folder + "/tokenizer.json")
text = open(text_path, "rb").read()
cut = round(len(text) * 0.9)
while cut < len(text) and (text[cut] & 0xC0) == 0x80:
    cut += 1
ids = tok(text[cut:].decode()).input_ids
T = 32
n = (len(ids) - 1) // T
x = torch.tensor([ids[w*T:w*T+T] for w in range(n)])
y = torch.tensor([ids[w*T+1:w*T+T+1] for w in range(n)])
with torch.no_grad():
    logits = m(x).logits
loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
print(f"transformers on the exported folder: {n} samples of {T} tokens, test loss {loss.item():.4f}")
