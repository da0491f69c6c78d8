"""A tiny BERT regression head (num_labels 1, problem_type left unset, which
Hugging Face reads as regression under mean squared error) on sentence pairs
scored as STS-B scores them, for kernels-tests/bert.rs.

Reads kernels-tests/golden/bert-tiny-cls/ (run make_bert_tiny.py first) and writes
kernels-tests/golden/bert-tiny-reg/:
  config.json, model.safetensors   that BERT's encoder and pooler with a new
                                   classifier [1, 32] (N(0, 0.3^2)), num_labels 1
  tokenizer.json (and the rest)    the same tokenizer
  expected.safetensors             ids [4, 16] of four pairs (metadata "firsts" and
                                   "seconds") read as tokenizer(first, second,
                                   truncation=True, max_length=16,
                                   padding="max_length"); labels [4] (scores 0 to 5);
                                   logits [4, 1] (float64); loss [1] (MSE); grad.* of
                                   classifier.weight, token_type_embeddings and
                                   word_embeddings

Needs torch, transformers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_bert_tiny_regression.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

SOURCE, OUT, TOKENS = "kernels-tests/golden/bert-tiny-cls", "kernels-tests/golden/bert-tiny-reg", 16

config = BertConfig.from_pretrained(SOURCE)
config.num_labels = 1
config.id2label, config.label2id = {0: "LABEL_0"}, {"LABEL_0": 0}
base = BertForSequenceClassification.from_pretrained(SOURCE)
model = BertForSequenceClassification(config)
state = {k: v for k, v in base.state_dict().items() if not k.startswith("classifier.")}
torch.manual_seed(13)
state["classifier.weight"] = 0.3 * torch.randn(1, 32)
state["classifier.bias"] = torch.tensor([2.5])
model.load_state_dict(state)
assert model.config.problem_type is None
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT)
tokenizer = BertTokenizerFast.from_pretrained(SOURCE)
tokenizer.save_pretrained(OUT)

firsts = ["The film was good", "the plot is boring", "actors were great", "it is not long"]
seconds = ["the film was great!", "the story is boring too", "bad", "it was very long and boring"]
labels = torch.tensor([4.6, 3.8, 0.4, 1.25], dtype=torch.float64)
enc = tokenizer(firsts, seconds, padding="max_length", truncation=True, max_length=TOKENS,
                return_tensors="pt")
model = model.double().eval()
out = model(**enc, labels=labels)
assert model.config.problem_type == "regression"
out.loss.backward()
params = dict(model.named_parameters())
names = ["classifier.weight", "bert.embeddings.token_type_embeddings.weight",
         "bert.embeddings.word_embeddings.weight"]
grads = {"grad." + n: params[n].grad.float() for n in names}
save_file({"ids": enc["input_ids"].float(), "labels": labels.float(),
           "logits": out.logits.detach().float(), "loss": out.loss.detach().float().reshape(1),
           **grads}, os.path.join(OUT, "expected.safetensors"),
          metadata={"firsts": "\n".join(firsts), "seconds": "\n".join(seconds)})
print(enc["input_ids"].tolist())
print(f"loss {out.loss.item():.6f}, logits {out.logits.detach().numpy().round(4).tolist()}")
