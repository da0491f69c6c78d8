"""A Llama with 128-value heads (Llama 3 8B's and Qwen2.5 7B's head size; 4
blocks of width 512, 4 query heads sharing 1 key and value head, MLP 1536,
49,152 tokens, untied head; random weights as make_model.py draws them, the same
word-level tokenizer): what wgml's key/value cache took only up to 64-value heads
before 2026-12-08. Writes wide/."""
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import LlamaConfig, LlamaForCausalLM

torch.manual_seed(1)
config = LlamaConfig(vocab_size=49152, hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=1, head_dim=128, max_position_embeddings=8192,
                     rms_norm_eps=1e-5, rope_parameters={"rope_theta": 500000.0, "rope_type": "default"},
                     tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
model = LlamaForCausalLM(config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        else:
            p.normal_(0.0, 0.05)
model.save_pretrained("wide", safe_serialization=True)
tok = Tokenizer(WordLevel({f"t{i}": i for i in range(config.vocab_size)}, unk_token="t0"))
tok.pre_tokenizer = WhitespaceSplit()
tok.save("wide/tokenizer.json")
print(sum(p.numel() for p in model.parameters()), "parameters")
