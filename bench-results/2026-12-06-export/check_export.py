import sys, torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast
orig, exp = sys.argv[1], sys.argv[2]
a = GPT2LMHeadModel.from_pretrained(orig).double().eval()
b = GPT2LMHeadModel.from_pretrained(exp).double().eval()
sa, sb = a.state_dict(), b.state_dict()
diff = max((sa[k] - sb[k]).abs().max().item() for k in sa)
print("state_dict keys equal:", sorted(sa) == sorted(sb), "max |diff|:", diff)
print("head tied:", b.lm_head.weight.data_ptr() == b.transformer.wte.weight.data_ptr())
ta = PreTrainedTokenizerFast(tokenizer_file=orig + "/tokenizer.json")
tb = PreTrainedTokenizerFast(tokenizer_file=exp + "/tokenizer.json")
text = "The engine trains real models on any GPU; it reads text as tokens. Ünïcode too."
print("tokenizer ids equal:", ta(text).input_ids == tb(text).input_ids, len(tb(text).input_ids))
ids = torch.tensor([ta(text).input_ids[:32]])
with torch.no_grad():
    la, lb = a(ids).logits, b(ids).logits
print("max |logit diff|:", (la - lb).abs().max().item())
