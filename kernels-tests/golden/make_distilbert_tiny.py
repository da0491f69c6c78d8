"""A tiny random DistilBERT classifier (transformers'
DistilBertForSequenceClassification) and what it computes, for kernels-tests/bert.rs
(wgml's import of DistilBERT).

Writes kernels-tests/golden/distilbert-tiny-cls/:
  config.json, model.safetensors   save_pretrained of a DistilBertForSequenceClassification:
                                   the vocabulary of make_bert_tiny.py (vocab_size 64),
                                   dim 32, 2 layers, 4 heads, hidden_dim 48 (exact
                                   GELU), 24 positions, 3 labels, dropout 0; every
                                   weight redrawn N(0, 0.3^2), the layer norms' scales
                                   1 + N(0, 0.1^2)
  tokenizer.json (and the rest)    its DistilBertTokenizer ([CLS] text [SEP], [PAD] = 0)
  expected.safetensors             ids [4, 16] of make_bert_tiny.py's four texts
                                   (metadata "texts"), truncated to 16 and padded;
                                   labels [4]; logits [4, 3] (float64); loss [1];
                                   grad.* of the loss with respect to classifier.weight,
                                   pre_classifier.weight, word_embeddings,
                                   position_embeddings and layer 0's q_lin weight

Needs torch, transformers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_distilbert_tiny.py
"""
import os

import torch
from safetensors.torch import save_file
from tiny_fixture import TEXTS, VOCAB, redraw
from transformers import (DistilBertConfig, DistilBertForSequenceClassification,
                          DistilBertTokenizerFast)

OUT = "kernels-tests/golden/distilbert-tiny-cls"
TOKENS = 16

tokenizer = DistilBertTokenizerFast(vocab={t: i for i, t in enumerate(VOCAB)}, do_lower_case=True)
texts = TEXTS

config = DistilBertConfig(vocab_size=64, dim=32, n_layers=2, n_heads=4, hidden_dim=48,
                          activation="gelu", dropout=0.0, attention_dropout=0.0,
                          seq_classif_dropout=0.0, max_position_embeddings=24, pad_token_id=0,
                          num_labels=3, id2label={0: "neg", 1: "neutral", 2: "pos"},
                          label2id={"neg": 0, "neutral": 1, "pos": 2})
torch.manual_seed(17)
model = DistilBertForSequenceClassification(config)
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
names = ["classifier.weight", "pre_classifier.weight",
         "distilbert.embeddings.word_embeddings.weight",
         "distilbert.embeddings.position_embeddings.weight",
         "distilbert.transformer.layer.0.attention.q_lin.weight"]
grads = {"grad." + n: params[n].grad.float() for n in names}
save_file({"ids": enc["input_ids"].float(), "labels": labels.float(),
           "logits": out.logits.detach().float(), "loss": out.loss.detach().float().reshape(1),
           **grads}, os.path.join(OUT, "expected.safetensors"), metadata={"texts": "\n".join(texts)})
print(enc["input_ids"].tolist())
print(sorted(k for k in params if ".layer." not in k))
print(f"loss {out.loss.item():.6f}, logits {out.logits.detach().numpy().round(4).tolist()}")
