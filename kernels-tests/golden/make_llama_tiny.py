"""Tiny Llamas in Hugging Face's files, and what Hugging Face computes with
them, for kernels-tests/llama.rs (wgml's importer of Llama checkpoints).

Writes kernels-tests/golden/llama-tiny/, llama-tiny-tied/, qwen2-tiny/ (a
Qwen2ForCausalLM: a Llama with biases on the attention's query, key and value
projections, here with 4 query heads sharing 2, a tied head and θ 1,000,000) and
qwen3-tiny/ (a Qwen3ForCausalLM: no biases, each query and key head RMS-normalized
before the rotary turn; 4 query heads sharing 2, an untied head):
  config.json, model.safetensors   LlamaForCausalLM.save_pretrained: 2 layers of
                                   width 32, 4 query heads of 8 sharing 2 key and
                                   value heads (grouped-query attention; the tied
                                   one: 4 and 4, its head tied to the embedding),
                                   SiLU MLP of 48, rope_theta 10000 (tied: 10 with
                                   Llama 3.1's "llama3" scaling, factor 8 from 16
                                   positions, so that its four frequencies meet
                                   every branch: kept, blended, divided),
                                   rms_norm_eps 1e-5, 32 positions, 300 tokens;
                                   random weights drawn larger than Llama's init
                                   so every part shows in the output
  tokenizer.json                   gpt2-tiny's byte-level BPE (Llama 3's scheme)
                                   with Llama 3's <|begin_of_text|> (300) put
                                   before every text and <|end_of_text|> (301)
  expected.safetensors             ids [T] (f32 token ids of the text below, cut
                                   to 32, <|begin_of_text|> first), log_probs [T, 302] (HF's log-softmax of
                                   the logits, float64 forward), greedy [G] (f32:
                                   HF generate(do_sample=False) from the first 8
                                   ids), greedy_margin (the smallest gap between
                                   the top two logits on the way), loss [1] and
                                   the gradients of embed_tokens and of layer 0's
                                   q_proj and k_proj (HF's mean next-token
                                   cross-entropy of the ids, labels = ids, float64)

Needs torch, transformers, tokenizers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_llama_tiny.py
"""
import os
import shutil

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer
from tokenizers.processors import TemplateProcessing
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

TEXT = "The engine trains real models on any GPU; it reads text as tokens."
NEW = 16


def make(out, kv_heads, tied, rope, seed, family=(LlamaConfig, LlamaForCausalLM)):
    os.makedirs(out, exist_ok=True)
    shutil.copy("kernels-tests/golden/gpt2-tiny/tokenizer.json", os.path.join(out, "tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    tok.add_special_tokens([AddedToken("<|begin_of_text|>", special=True), AddedToken("<|end_of_text|>", special=True)])
    bos, eos = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|end_of_text|>")
    assert (bos, eos) == (300, 301), (bos, eos)
    tok.post_processor = TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    tok.save(os.path.join(out, "tokenizer.json"))
    vocab = tok.get_vocab_size()
    torch.manual_seed(seed)
    config_class, model_class = family
    config = config_class(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, head_dim=8, max_position_embeddings=32,
                         rms_norm_eps=1e-5, rope_parameters=rope,
                         tie_word_embeddings=tied, bos_token_id=bos, eos_token_id=eos, pad_token_id=None)
    model = model_class(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(0.25 * torch.randn_like(p))
    model.save_pretrained(out, safe_serialization=True)
    for f in os.listdir(out):
        if f not in ("config.json", "model.safetensors", "tokenizer.json"):
            os.remove(os.path.join(out, f))
    ids = tok.encode(TEXT).ids[:32]
    model = model.double().eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
        log_probs = torch.log_softmax(logits, dim=-1)
        prompt = torch.tensor([ids[:8]])
        gen = model.generate(prompt, max_new_tokens=NEW, do_sample=False, pad_token_id=0, eos_token_id=None,
                             output_logits=True, return_dict_in_generate=True)
        greedy = gen.sequences[0, 8:]
        margin = min(float(torch.topk(l[0], 2).values[0] - torch.topk(l[0], 2).values[1]) for l in gen.logits)
    model.zero_grad()
    loss = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss
    loss.backward()
    layer = model.model.layers[0].self_attn
    save_file({
        "ids": torch.tensor(ids, dtype=torch.float32),
        "log_probs": log_probs.float(),
        "greedy": greedy.float(),
        "greedy_margin": torch.tensor([margin], dtype=torch.float32),
        "loss": loss.detach().float().reshape(1),
        "embed_grad": model.model.embed_tokens.weight.grad.float(),
        "q_proj_grad": layer.q_proj.weight.grad.float(),
        "k_proj_grad": layer.k_proj.weight.grad.float(),
    }, os.path.join(out, "expected.safetensors"), metadata={"text": TEXT})
    print(f"{out}: {len(ids)} ids, greedy {greedy.tolist()}, smallest margin {margin:.4f}, loss {loss.item():.6f}")


if __name__ == "__main__":
    make("kernels-tests/golden/llama-tiny", kv_heads=2, tied=False,
         rope={"rope_theta": 10000.0, "rope_type": "default"}, seed=11)
    make("kernels-tests/golden/llama-tiny-tied", kv_heads=4, tied=True,
         rope={"rope_theta": 10.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 2.0, "original_max_position_embeddings": 16}, seed=12)
    make("kernels-tests/golden/qwen2-tiny", kv_heads=2, tied=True,
         rope={"rope_theta": 1000000.0, "rope_type": "default"}, seed=13, family=(Qwen2Config, Qwen2ForCausalLM))
    make("kernels-tests/golden/qwen3-tiny", kv_heads=2, tied=False,
         rope={"rope_theta": 1000000.0, "rope_type": "default"}, seed=14, family=(Qwen3Config, Qwen3ForCausalLM))
