"""Tiny token classifiers (BertForTokenClassification, RobertaForTokenClassification,
DistilBertForTokenClassification, ElectraForTokenClassification: named entities, a
tag per word) for kernels-tests/bert.rs.

For FAMILY bert (the default), roberta, distilbert or electra, reads
kernels-tests/golden/FAMILY-tiny-cls/ (run make_bert_tiny.py, make_roberta_tiny.py,
make_distilbert_tiny.py, make_electra_tiny.py first) and writes kernels-tests/golden/FAMILY-tiny-tokens/:
  config.json, model.safetensors   that encoder with a token classifier of
                                   5 tags (O, B-PER, I-PER, B-LOC, I-LOC), drawn
                                   N(0, 0.3^2) (torch seed 5)
  tokenizer.json (and the rest)    the same tokenizer (RoBERTa's read with
                                   add_prefix_space=True, as split words need,
                                   but saved as it was, without)
  expected.safetensors             the four sentences of SENTENCES as
                                   tokenizer(words, is_split_into_words=True,
                                   truncation=True, max_length=16, padding) reads
                                   them: ids [4, 16]; labels [4, 16], each word's tag
                                   on its first token and -100 elsewhere (run_ner's
                                   alignment); logits [4, 16, 5] (float64); loss [1]
                                   (the mean over the labelled tokens); grad.* of
                                   classifier.weight, word_embeddings and
                                   position_embeddings. Metadata "sentences": the
                                   words and tags as JSON.

Needs torch, transformers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_encoder_tokens.py [FAMILY]
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForTokenClassification, AutoTokenizer

FAMILY = sys.argv[1] if len(sys.argv) > 1 else "bert"
SOURCE, OUT, TOKENS = f"kernels-tests/golden/{FAMILY}-tiny-cls", f"kernels-tests/golden/{FAMILY}-tiny-tokens", 16
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
# Words split into pieces (storytelling, Zyx), a sentence the window cuts, and
# one whose last word is cut between its pieces.
SENTENCES = [
    (["The", "film", "was", "very", "good", "!"], ["O", "O", "O", "O", "O", "O"]),
    (["Zyx", "Storytelling", "liked", "the", "plot", "in", "Boston"],
     ["B-PER", "I-PER", "O", "O", "O", "O", "B-LOC"]),
    (["bad"], ["O"]),
    (["the", "actors", "were", "not", "great", "and", "it", "is", "too", "long", "in", "Oslo", "Town"],
     ["O", "O", "O", "O", "O", "O", "O", "O", "O", "O", "O", "B-LOC", "I-LOC"]),
]

torch.manual_seed(5)
names = dict(enumerate(TAGS))
model = AutoModelForTokenClassification.from_pretrained(
    SOURCE, num_labels=len(TAGS), id2label=names, label2id={v: k for k, v in names.items()},
    ignore_mismatched_sizes=True)
with torch.no_grad():
    model.classifier.weight.copy_(0.3 * torch.randn_like(model.classifier.weight))
    model.classifier.bias.copy_(0.3 * torch.randn_like(model.classifier.bias))
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT)
# The folder keeps the tokenizer as it was saved (RoBERTa's without a prefix
# space, as the Hub's are); split words are read with one, as run_ner loads it.
AutoTokenizer.from_pretrained(SOURCE).save_pretrained(OUT)
tokenizer = AutoTokenizer.from_pretrained(SOURCE, **({"add_prefix_space": True} if FAMILY == "roberta" else {}))
words = [w for w, _ in SENTENCES]
enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=TOKENS,
                padding="max_length", return_tensors="pt")
labels = []
for i, (_, tags) in enumerate(SENTENCES):
    previous, row = None, []
    for w in enc.word_ids(i):
        row.append(-100 if w is None or w == previous else TAGS.index(tags[w]))
        previous = w
    labels.append(row)
labels = torch.tensor(labels)
model = model.double().eval()
out = model(**enc, labels=labels)
out.loss.backward()
params = dict(model.named_parameters())
grads = {"grad." + n: params[n].grad.float()
         for n in ["classifier.weight", f"{FAMILY}.embeddings.word_embeddings.weight",
                   f"{FAMILY}.embeddings.position_embeddings.weight"]}
save_file({"ids": enc["input_ids"].float(), "labels": labels.float(),
           "logits": out.logits.detach().float(), "loss": out.loss.detach().float().reshape(1),
           **grads}, os.path.join(OUT, "expected.safetensors"),
          metadata={"sentences": json.dumps(SENTENCES)})
print(f"loss {out.loss.item():.6f}; labels {labels.tolist()}")
