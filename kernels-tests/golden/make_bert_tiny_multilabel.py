"""A tiny BERT multi-label classifier (problem_type "multi_label_classification":
a sigmoid per class under BCEWithLogitsLoss) for kernels-tests/bert.rs.

Reads kernels-tests/golden/bert-tiny-cls/ (run make_bert_tiny.py first) and writes
kernels-tests/golden/bert-tiny-multilabel/:
  config.json, model.safetensors   that BERT (its classifier of 3 classes: joy, love,
                                   anger) saved with problem_type
                                   multi_label_classification
  tokenizer.json (and the rest)    the same tokenizer
  expected.safetensors             ids [4, 16] of make_bert_tiny.py's four texts
                                   (metadata "texts"); labels [4, 3] (each text's set
                                   of classes as 0/1: {joy, love}, {anger}, {}, all
                                   three); logits [4, 3] (float64); loss [1]; grad.*
                                   of classifier.weight and word_embeddings

Needs torch, transformers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_bert_tiny_multilabel.py
"""
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import BertForSequenceClassification, BertTokenizerFast

SOURCE, OUT, TOKENS = "kernels-tests/golden/bert-tiny-cls", "kernels-tests/golden/bert-tiny-multilabel", 16

names = {0: "joy", 1: "love", 2: "anger"}
model = BertForSequenceClassification.from_pretrained(
    SOURCE, problem_type="multi_label_classification", id2label=names,
    label2id={v: k for k, v in names.items()})
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT)
tokenizer = BertTokenizerFast.from_pretrained(SOURCE)
tokenizer.save_pretrained(OUT)
with safe_open(os.path.join(SOURCE, "expected.safetensors"), "pt") as f:
    texts = f.metadata()["texts"].split("\n")
labels = torch.tensor([[1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 1, 1]], dtype=torch.float64)
enc = tokenizer(texts, padding="max_length", truncation=True, max_length=TOKENS, return_tensors="pt")
model = model.double().eval()
out = model(**enc, labels=labels)
out.loss.backward()
params = dict(model.named_parameters())
grads = {"grad." + n: params[n].grad.float()
         for n in ["classifier.weight", "bert.embeddings.word_embeddings.weight"]}
save_file({"ids": enc["input_ids"].float(), "labels": labels.float(),
           "logits": out.logits.detach().float(), "loss": out.loss.detach().float().reshape(1),
           **grads}, os.path.join(OUT, "expected.safetensors"), metadata={"texts": "\n".join(texts)})
print(f"loss {out.loss.item():.6f}, logits {out.logits.detach().numpy().round(4).tolist()}")
