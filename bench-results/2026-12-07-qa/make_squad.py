"""Synthetic SQuAD 2.0 data over the tiny BERT's vocabulary (film words, names
spelt in letters): each context a few sentences about who liked or disliked
what; questions ask who liked a thing, or what someone found boring, and a
fifth ask about something the context never mentions (no answer). Writes
DIR/train-v2.0.json (1200 questions) and DIR/dev-v2.0.json (150) in SQuAD's
JSON format.

  python make_squad.py DIR
"""
import json
import os
import random
import sys

NAMES = ["tia", "zed", "olaf", "mira", "sam", "lena", "kip", "ugo", "bea", "jo"]
THINGS = ["film", "plot", "story", "actors"]


def paragraph(rng, k):
    people = rng.sample(NAMES, 4)
    liked = {p: rng.choice(THINGS) for p in people[:2]}
    bored = {p: rng.choice(THINGS) for p in people[2:]}
    sentences = [f"{p} liked the {t}." for p, t in liked.items()]
    sentences += [f"for {p}, the {t} was too long and boring." for p, t in bored.items()]
    sentences.append(rng.choice(["it is not a good film.", "the actors were very great!",
                                 "the story is bad, and it is long."]))
    rng.shuffle(sentences)
    context = " ".join(sentences)
    qas = []
    for j in range(4):
        qid = f"p{k}q{j}"
        kind = rng.random()
        if kind < 0.4:
            p, t = rng.choice(list(liked.items()))
            q, a = f"who liked the {t}?", p
            start = context.index(f"{p} liked the {t}")
        elif kind < 0.8:
            p, t = rng.choice(list(bored.items()))
            q, a = f"what was boring for {p}?", f"the {t}"
            start = context.index(f"for {p}, the {t}") + len(f"for {p}, ")
        else:
            q = f"who liked the {rng.choice(THINGS)} very {rng.choice(['much', 'little'])}?"
            qas.append({"id": qid, "question": q, "answers": [], "is_impossible": True})
            continue
        assert context[start:start + len(a)] == a
        qas.append({"id": qid, "question": q, "answers": [{"text": a, "answer_start": start}],
                    "is_impossible": False})
    return {"context": context, "qas": qas}


out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = random.Random(11)
for name, paragraphs in [("train-v2.0.json", 300), ("dev-v2.0.json", 38)]:
    data = [{"title": f"t{i}", "paragraphs": [paragraph(rng, i)]} for i in range(paragraphs)]
    json.dump({"version": "v2.0", "data": data}, open(os.path.join(out, name), "w"))
