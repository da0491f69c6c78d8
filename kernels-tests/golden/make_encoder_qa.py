"""Tiny question answerers (BertForQuestionAnswering, RobertaForQuestionAnswering,
DistilBertForQuestionAnswering, ElectraForQuestionAnswering: extractive answers, as
SQuAD's) for kernels-tests/bert.rs.

For FAMILY bert (the default), roberta, distilbert or electra, reads
kernels-tests/golden/FAMILY-tiny-cls/ (run make_bert_tiny.py, make_roberta_tiny.py,
make_distilbert_tiny.py, make_electra_tiny.py first) and writes kernels-tests/golden/FAMILY-tiny-qa/:
  config.json, model.safetensors   that encoder with a new qa_outputs [2, width]
                                   drawn N(0, 0.3^2) (torch seed 7); DistilBERT's
                                   qa_dropout 0
  tokenizer.json (and the rest)    the same tokenizer
  expected.safetensors             the examples of EXAMPLES as run_qa.py's
                                   prepare_train_features reads them (question
                                   left-stripped, then tokenizer(question, context,
                                   truncation="only_second", max_length=18, stride=2,
                                   return_overflowing_tokens=True,
                                   return_offsets_mapping=True, padding="max_length")):
                                   ids [F, 18]; labels [F, 2] (start and end token,
                                   the [CLS] index where the answer is not in the
                                   window or there is none); start_logits and
                                   end_logits [F, 18] (float64); loss [1] (the mean
                                   of the start's and the end's cross-entropy, each a
                                   softmax over the window's real tokens: the
                                   padding's logits masked, as the question-answering
                                   pipeline masks them);
                                   grad.* of qa_outputs.weight, word_embeddings and
                                   position_embeddings.
                                   Metadata: "examples" (SQuAD 2 JSON Lines rows,
                                   answers as {text, answer_start}), "features"
                                   (each feature's example and its offsets, null
                                   outside the context, as prepare_validation_features
                                   keeps them), "predictions" (each example's answer
                                   after utils_qa.py's postprocess_qa_predictions
                                   with version_2_with_negative, n_best_size 20,
                                   max_answer_length 30, threshold 0, written out
                                   here from its description)

Needs torch, transformers and safetensors (pip). Run from the repo root:
  python3 kernels-tests/golden/make_encoder_qa.py [FAMILY]
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

FAMILY = sys.argv[1] if len(sys.argv) > 1 else "bert"
SOURCE, OUT = f"kernels-tests/golden/{FAMILY}-tiny-cls", f"kernels-tests/golden/{FAMILY}-tiny-qa"
TOKENS, STRIDE = 18, 2


def example(i, question, context, answer):
    start = [] if answer is None else [context.index(answer)]
    return {"id": f"q{i}", "question": question, "context": context,
            "answers": {"text": [] if answer is None else [answer], "answer_start": start}}


# A short context; a long one the window reads in overlapping pieces, the
# answer in the last; one with no answer (SQuAD 2); a question with spaces
# before it; an answer cut between two windows.
EXAMPLES = [
    example(0, "what was good?", "the film was very good and the actors were great.", "very good"),
    example(1, "  was the story long?",
            "the story is too long. the plot was boring and it is not good. the actors liked the film, "
            "it was very great!", "very great"),
    example(2, "who liked it?", "the plot is bad.", None),
    example(3, "what was boring?",
            "it is a film. the plot was boring and too long and the story was not good at all, sadly.",
            "the plot was boring and too long and the story was not good"),
]

torch.manual_seed(7)
extra = {"qa_dropout": 0.0} if FAMILY == "distilbert" else {}
names = {0: "LABEL_0", 1: "LABEL_1"}
model = AutoModelForQuestionAnswering.from_pretrained(
    SOURCE, num_labels=2, id2label=names, label2id={v: k for k, v in names.items()}, **extra)
with torch.no_grad():
    model.qa_outputs.weight.copy_(0.3 * torch.randn_like(model.qa_outputs.weight))
    model.qa_outputs.bias.copy_(0.3 * torch.randn_like(model.qa_outputs.bias))
os.makedirs(OUT, exist_ok=True)
model.save_pretrained(OUT)
tokenizer = AutoTokenizer.from_pretrained(SOURCE)
tokenizer.save_pretrained(OUT)

questions = [e["question"].lstrip() for e in EXAMPLES]
contexts = [e["context"] for e in EXAMPLES]
enc = tokenizer(questions, contexts, truncation="only_second", max_length=TOKENS, stride=STRIDE,
                return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
labels, features = [], []
for i, offsets in enumerate(enc["offset_mapping"]):
    ids, sequence = enc["input_ids"][i], enc.sequence_ids(i)
    cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
    e = EXAMPLES[enc["overflow_to_sample_mapping"][i]]
    features.append({"example": enc["overflow_to_sample_mapping"][i],
                     "offsets": [list(o) if sequence[k] == 1 else None for k, o in enumerate(offsets)]})
    if not e["answers"]["answer_start"]:
        labels.append([cls, cls])
        continue
    first_char = e["answers"]["answer_start"][0]
    end_char = first_char + len(e["answers"]["text"][0])
    lo = sequence.index(1)
    hi = len(sequence) - 1 - sequence[::-1].index(1)
    if not (offsets[lo][0] <= first_char and offsets[hi][1] >= end_char):
        labels.append([cls, cls])
        continue
    while lo < len(offsets) and offsets[lo][0] <= first_char:
        lo += 1
    while offsets[hi][1] >= end_char:
        hi -= 1
    labels.append([lo - 1, hi + 1])

ids = torch.tensor(enc["input_ids"])
mask = torch.tensor(enc["attention_mask"])
inputs = {"input_ids": ids, "attention_mask": mask}
if FAMILY in ("bert", "electra"):
    inputs["token_type_ids"] = torch.tensor(enc["token_type_ids"])
labels_t = torch.tensor(labels)
model = model.double().eval()
out = model(**inputs)
# The loss over each window's real tokens: the padding's scores masked, as
# Hugging Face's pipeline masks them (its own loss would count them).
masked = [logits.masked_fill(mask == 0, float("-inf")) for logits in (out.start_logits, out.end_logits)]
loss = (torch.nn.functional.cross_entropy(masked[0], labels_t[:, 0])
        + torch.nn.functional.cross_entropy(masked[1], labels_t[:, 1])) / 2
loss.backward()
params = dict(model.named_parameters())
grads = {"grad." + n: params[n].grad.float()
         for n in ["qa_outputs.weight", f"{FAMILY}.embeddings.word_embeddings.weight",
                   f"{FAMILY}.embeddings.position_embeddings.weight"]}


def best_answers(starts, ends, n_best=20, longest=30):
    """Each example's answer, as postprocess_qa_predictions (SQuAD 2) picks it."""
    out = {}
    for x, e in enumerate(EXAMPLES):
        null, found = None, []
        for f, feature in enumerate(features):
            if feature["example"] != x:
                continue
            s, t, offsets = starts[f], ends[f], feature["offsets"]
            if null is None or null > s[0] + t[0]:
                null = s[0] + t[0]
            for a in np.argsort(s)[::-1][:n_best]:
                for b in np.argsort(t)[::-1][:n_best]:
                    if offsets[a] is None or offsets[b] is None or b < a or b - a + 1 > longest:
                        continue
                    found.append((s[a] + t[b], e["context"][offsets[a][0]:offsets[b][1]]))
        found = sorted(found + [(null, "")], key=lambda p: -p[0])[:n_best]
        best = next((p for p in found if p[1] != ""), None)
        out[e["id"]] = "" if best is None or null > best[0] else best[1]
    return out


starts = out.start_logits.detach().numpy()
ends = out.end_logits.detach().numpy()
save_file({"ids": ids.float(), "labels": labels_t.float(),
           "start_logits": out.start_logits.detach().float(),
           "end_logits": out.end_logits.detach().float(),
           "loss": loss.detach().float().reshape(1), **grads},
          os.path.join(OUT, "expected.safetensors"),
          metadata={"examples": json.dumps(EXAMPLES), "features": json.dumps(features),
                    "predictions": json.dumps(best_answers(starts, ends))})
print(f"{FAMILY}: {len(features)} features; labels {labels}; loss {loss.item():.6f}")
print(best_answers(starts, ends))
