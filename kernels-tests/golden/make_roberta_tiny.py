"""A tiny random RoBERTa classifier (transformers' RobertaForSequenceClassification)
and what it computes, for kernels-tests/bert.rs (wgml's import of RoBERTa).

Writes kernels-tests/golden/roberta-tiny-cls/:
  config.json, model.safetensors   save_pretrained of a RobertaForSequenceClassification:
                                   vocab_size 300 (a byte-level BPE trained on the
                                   texts below), hidden 32, 2 layers, 4 heads, MLP 48
                                   (exact GELU), 20 positions (padding id 1, so 18
                                   usable), 1 token type, 3 labels, dropout 0; every
                                   weight redrawn N(0, 0.3^2), the layer norms' scales
                                   1 + N(0, 0.1^2)
  tokenizer.json (and the rest)    the tokenizer: <s> text </s>, <pad> = 1
  expected.safetensors             ids [4, 16] of the four texts (metadata "texts"),
                                   truncated to 16 and padded with <pad>; labels [4];
                                   logits [4, 3] (float64); loss [1]; grad.* of the
                                   loss with respect to classifier.out_proj.weight,
                                   classifier.dense.weight, word_embeddings,
                                   position_embeddings and layer 0's query weight

Needs torch, transformers, tokenizers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_roberta_tiny.py
"""
import os

import torch
from safetensors.torch import save_file
from tokenizers import ByteLevelBPETokenizer
from tokenizers.processors import RobertaProcessing
from tiny_fixture import TEXTS, redraw
from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast

OUT = "kernels-tests/golden/roberta-tiny-cls"
TOKENS = 16

texts = TEXTS
corpus = texts * 3 + ["the quick brown fox jumps over the lazy dog", "good films are rare"]
bpe = ByteLevelBPETokenizer()
bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1,
                        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
bpe.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>")))
tokenizer = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                 sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                 pad_token="<pad>", mask_token="<mask>")
assert tokenizer.pad_token_id == 1, tokenizer.pad_token_id

config = RobertaConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=48, hidden_act="gelu", hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0, max_position_embeddings=20,
                       type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                       eos_token_id=2, num_labels=3,
                       id2label={0: "neg", 1: "neutral", 2: "pos"},
                       label2id={"neg": 0, "neutral": 1, "pos": 2})
torch.manual_seed(13)
model = RobertaForSequenceClassification(config)
redraw(model)
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT)
tokenizer.save_pretrained(OUT)

labels = torch.tensor([2, 0, 0, 1])
enc = tokenizer(texts, padding="max_length", truncation=True, max_length=TOKENS, return_tensors="pt")
model = model.double().eval()
out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels)
out.loss.backward()
params = dict(model.named_parameters())
names = ["classifier.out_proj.weight", "classifier.dense.weight",
         "roberta.embeddings.word_embeddings.weight", "roberta.embeddings.position_embeddings.weight",
         "roberta.encoder.layer.0.attention.self.query.weight"]
grads = {"grad." + n: params[n].grad.float() for n in names}
save_file({"ids": enc["input_ids"].float(), "labels": labels.float(),
           "logits": out.logits.detach().float(), "loss": out.loss.detach().float().reshape(1),
           **grads}, os.path.join(OUT, "expected.safetensors"), metadata={"texts": "\n".join(texts)})
print(enc["input_ids"].tolist())
print(sorted(k for k in params if not k.startswith("roberta.encoder")))
print(f"loss {out.loss.item():.6f}, logits {out.logits.detach().numpy().round(4).tolist()}")
