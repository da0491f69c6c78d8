"""A tiny random BERT classifier (transformers' BertForSequenceClassification) and
what it computes, for kernels-tests/bert.rs (wgml's import of BERT).

Writes kernels-tests/golden/bert-tiny-cls/:
  config.json, model.safetensors   save_pretrained of a BertForSequenceClassification:
                                   vocab_size 64 (a WordPiece vocabulary of 62 words and
                                   pieces), hidden 32, 2 layers, 4 heads, MLP 48
                                   (exact GELU), 24 positions, 2 token types, 3
                                   labels (neg, neutral, pos), dropout 0; every
                                   weight redrawn N(0, 0.3^2) and the layer norms'
                                   scales 1 + N(0, 0.1^2), so that nothing is near 0
  tokenizer.json (and the rest save_pretrained writes): the BertTokenizer of that
                                   vocabulary (lower case, [CLS] text [SEP])
  expected.safetensors             ids [4, 16]: the four texts (in the file's
                                   metadata, "texts", one per line) as the tokenizer
                                   gives them with truncation to 16 and padding with
                                   [PAD] (0); labels [4]; logits [4, 3] (float64,
                                   attention mask 1 on real ids); loss [1] (mean
                                   cross-entropy); grad.* the loss's gradient with
                                   respect to classifier.weight, bert.pooler.dense.weight,
                                   word_embeddings, position_embeddings,
                                   token_type_embeddings and layer 0's query weight

Needs torch, transformers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_bert_tiny.py
"""
import os

import torch
from safetensors.torch import save_file
from tiny_fixture import TEXTS, VOCAB, redraw
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

OUT = "kernels-tests/golden/bert-tiny-cls"
TOKENS = 16

tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(VOCAB)}, do_lower_case=True)

config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=48, hidden_act="gelu", hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0, max_position_embeddings=24,
                    type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0, num_labels=3,
                    id2label={0: "neg", 1: "neutral", 2: "pos"},
                    label2id={"neg": 0, "neutral": 1, "pos": 2})
torch.manual_seed(11)
model = BertForSequenceClassification(config)
redraw(model)
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT)
tokenizer.save_pretrained(OUT)

texts = TEXTS
labels = torch.tensor([2, 0, 0, 1])
enc = tokenizer(texts, padding="max_length", truncation=True, max_length=TOKENS,
                return_tensors="pt")
model = model.double().eval()
out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels)
out.loss.backward()
params = dict(model.named_parameters())
names = ["classifier.weight", "bert.pooler.dense.weight",
         "bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
         "bert.embeddings.token_type_embeddings.weight",
         "bert.encoder.layer.0.attention.self.query.weight"]
grads = {"grad." + n: params[n].grad.float() for n in names}
save_file({"ids": enc["input_ids"].float(), "labels": labels.float(),
           "logits": out.logits.detach().float(), "loss": out.loss.detach().float().reshape(1),
           **grads}, os.path.join(OUT, "expected.safetensors"), metadata={"texts": "\n".join(texts)})
print(enc["input_ids"].tolist())
print(f"loss {out.loss.item():.6f}, logits {out.logits.detach().numpy().round(4).tolist()}")
