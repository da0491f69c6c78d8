"""A Llama of SmolLM2-135M's shape (HuggingFaceTB/SmolLM2-135M's config.json:
30 blocks of width 576, 9 query heads of 64 sharing 3 key and value heads, MLP
1536, rope_theta 100000, rms_norm_eps 1e-5, tied head, 49,152 tokens) with random
weights, for run.sh: this machine cannot reach the Hub, so the weights are drawn
here (N(0, 0.05²), wider than Llama's 0.02 so that greedy choices do not tie) and
the tokenizer is a word-level one of 49,152 words "t0" ... "t49151" (word i is id
i), so that every id the model gives prints as text and reads back.

Writes model/ (config.json, model.safetensors, tokenizer.json), prompt.json (a
prompt's 12 ids), prompt.txt (its words) and corpus.txt (20,000 random words to
fine-tune on)."""
import json
import random

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import LlamaConfig, LlamaForCausalLM

torch.manual_seed(0)
config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                     rms_norm_eps=1e-5, rope_parameters={"rope_theta": 100000.0, "rope_type": "default"},
                     tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
model = LlamaForCausalLM(config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            p.normal_(0.0, 0.05)
model.save_pretrained("model", safe_serialization=True)
words = {f"t{i}": i for i in range(config.vocab_size)}
tok = Tokenizer(WordLevel(words, unk_token="t0"))
tok.pre_tokenizer = WhitespaceSplit()
tok.save("model/tokenizer.json")
rng = random.Random(0)
prompt = [rng.randrange(config.vocab_size) for _ in range(12)]
open("prompt.json", "w").write(json.dumps(prompt))
open("prompt.txt", "w").write(" ".join(f"t{i}" for i in prompt))
open("corpus.txt", "w").write(" ".join(f"t{rng.randrange(config.vocab_size)}" for _ in range(20000)))
print(sum(p.numel() for p in model.parameters()), "parameters")
