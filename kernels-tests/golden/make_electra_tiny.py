"""A tiny random ELECTRA discriminator classifier (transformers'
ElectraForSequenceClassification) and what it computes, for kernels-tests/bert.rs
(wgml's import of ELECTRA).

Writes kernels-tests/golden/electra-tiny-cls/:
  config.json, model.safetensors   save_pretrained of an ElectraForSequenceClassification:
                                   the vocabulary of make_bert_tiny.py (vocab_size 64),
                                   embeddings of 16 projected to the blocks' 32
                                   (embeddings_project), 2 layers, 4 heads, MLP 48
                                   (exact GELU), 24 positions, 2 token types, 3 labels,
                                   dropout 0; every weight redrawn N(0, 0.3^2), the
                                   layer norms' scales 1 + N(0, 0.1^2)
  tokenizer.json (and the rest)    its ElectraTokenizer ([CLS] text [SEP], [PAD] = 0)
  expected.safetensors             ids [4, 16] of make_bert_tiny.py's four texts
                                   (metadata "texts"), truncated to 16 and padded;
                                   labels [4]; logits [4, 3] (float64); loss [1];
                                   grad.* of the loss with respect to the head's
                                   classifier.dense and classifier.out_proj weights,
                                   embeddings_project, word_embeddings,
                                   position_embeddings, token_type_embeddings and
                                   layer 0's query weight
  pairs.safetensors                the same for make_bert_tiny_pairs.py's four pairs
                                   (metadata "firsts", "seconds"): the same values

Needs torch, transformers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_electra_tiny.py
"""
import os

import torch
from safetensors.torch import save_file
from tiny_fixture import FIRSTS, SECONDS, TEXTS, VOCAB, redraw
from transformers import ElectraConfig, ElectraForSequenceClassification, ElectraTokenizerFast

OUT = "kernels-tests/golden/electra-tiny-cls"
TOKENS = 16

tokenizer = ElectraTokenizerFast(vocab={t: i for i, t in enumerate(VOCAB)}, do_lower_case=True)
texts = TEXTS
firsts = FIRSTS
seconds = SECONDS

config = ElectraConfig(vocab_size=64, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=48, hidden_act="gelu",
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                       max_position_embeddings=24, type_vocab_size=2, pad_token_id=0,
                       num_labels=3, id2label={0: "neg", 1: "neutral", 2: "pos"},
                       label2id={"neg": 0, "neutral": 1, "pos": 2})
torch.manual_seed(19)
model = ElectraForSequenceClassification(config)
redraw(model)
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT)
tokenizer.save_pretrained(OUT)
model = model.double().eval()
params = dict(model.named_parameters())

labels = torch.tensor([2, 0, 0, 1])
names = ["classifier.dense.weight", "classifier.out_proj.weight",
         "electra.embeddings_project.weight", "electra.embeddings.word_embeddings.weight",
         "electra.embeddings.position_embeddings.weight",
         "electra.embeddings.token_type_embeddings.weight",
         "electra.encoder.layer.0.attention.self.query.weight"]
for file, inputs, meta in [
    ("expected.safetensors", (texts,), {"texts": "\n".join(texts)}),
    ("pairs.safetensors", (firsts, seconds),
     {"firsts": "\n".join(firsts), "seconds": "\n".join(seconds)}),
]:
    model.zero_grad()
    enc = tokenizer(*inputs, padding="max_length", truncation=True, max_length=TOKENS,
                    return_tensors="pt")
    out = model(**enc, labels=labels)
    out.loss.backward()
    grads = {"grad." + n: params[n].grad.float() for n in names}
    save_file({"ids": enc["input_ids"].float(), "labels": labels.float(),
               "logits": out.logits.detach().float(), "loss": out.loss.detach().float().reshape(1),
               **grads}, os.path.join(OUT, file), metadata=meta)
    print(file, enc["input_ids"].tolist())
    print(f"loss {out.loss.item():.6f}, logits {out.logits.detach().numpy().round(4).tolist()}")
