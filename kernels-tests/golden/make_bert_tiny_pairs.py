"""Pairs of texts through the tiny BERT classifier of make_bert_tiny.py, for
kernels-tests/bert.rs (wgml's token types: BERT's segment of each token).

Reads kernels-tests/golden/bert-tiny-cls/ (run make_bert_tiny.py first) and writes
kernels-tests/golden/bert-tiny-cls/pairs.safetensors:
  ids [4, 16]         the four pairs (the file's metadata "firsts" and "seconds",
                      one text per line) as the tokenizer reads
                      tokenizer(first, second, truncation=True, max_length=16,
                      padding="max_length"): [CLS] A [SEP] B [SEP] [PAD]..., the
                      longer text cut first (no cut, the first cut, the second
                      cut, both cut)
  token_types [4, 16] the tokenizer's token_type_ids (0 through the first [SEP],
                      1 after it, 0 on padding)
  labels [4]; logits [4, 3] (float64, attention mask 1 on real ids); loss [1]
  grad.*              the mean cross-entropy's gradient with respect to
                      token_type_embeddings, position_embeddings, word_embeddings
                      and classifier.weight

Needs torch, transformers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_bert_tiny_pairs.py
"""
import os

import torch
from safetensors.torch import save_file
from tiny_fixture import FIRSTS, SECONDS
from transformers import BertForSequenceClassification, BertTokenizerFast

DIR = "kernels-tests/golden/bert-tiny-cls"
TOKENS = 16

firsts = FIRSTS
seconds = SECONDS
labels = torch.tensor([2, 0, 1, 1])
tokenizer = BertTokenizerFast.from_pretrained(DIR)
model = BertForSequenceClassification.from_pretrained(DIR).double().eval()
enc = tokenizer(firsts, seconds, padding="max_length", truncation=True, max_length=TOKENS,
                return_tensors="pt")
out = model(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
            attention_mask=enc["attention_mask"], labels=labels)
out.loss.backward()
params = dict(model.named_parameters())
names = ["bert.embeddings.token_type_embeddings.weight",
         "bert.embeddings.position_embeddings.weight",
         "bert.embeddings.word_embeddings.weight", "classifier.weight"]
grads = {"grad." + n: params[n].grad.float() for n in names}
save_file({"ids": enc["input_ids"].float(), "token_types": enc["token_type_ids"].float(),
           "labels": labels.float(), "logits": out.logits.detach().float(),
           "loss": out.loss.detach().float().reshape(1), **grads},
          os.path.join(DIR, "pairs.safetensors"),
          metadata={"firsts": "\n".join(firsts), "seconds": "\n".join(seconds)})
print(enc["input_ids"].tolist())
print(enc["token_type_ids"].tolist())
print(f"loss {out.loss.item():.6f}, logits {out.logits.detach().numpy().round(4).tolist()}")
