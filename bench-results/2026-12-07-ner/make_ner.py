"""Synthetic named entities for the tiny BERT fixtures' tokenizer: people and
places whose names are made of the letters and pieces that tokenizer knows, told
apart only by their context ("tia leo liked the film", "the actors in ota").

Writes DIR/train.conll (600 sentences), DIR/validation.conll (60) and
DIR/test.jsonl (100; JSON Lines of tokens and ner_tags, as Dataset.to_json
writes them): python3 make_ner.py DIR [SEED]
"""
import json
import os
import random
import sys

out = sys.argv[1]
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
PEOPLE = ["tia", "leo", "kai", "rita", "noa", "eli", "tom", "mia", "ivo", "ada"]
PLACES = ["ota", "toa", "kiev", "lima", "nice", "oslo", "bali", "roma", "goa", "tokio"]


def person():
    words = [rng.choice(PEOPLE) for _ in range(rng.choice([1, 1, 2]))]
    return [(w.capitalize(), "B-PER" if i == 0 else "I-PER") for i, w in enumerate(words)]


def place():
    return [(rng.choice(PLACES).capitalize(), "B-LOC")]


def plain(text):
    return [(w, "O") for w in text.split()]


TEMPLATES = [
    lambda: person() + plain("liked the film ."),
    lambda: plain("the actors in") + place() + plain("were great ."),
    lambda: person() + plain("and") + person() + plain("liked the story in") + place() + plain("."),
    lambda: plain("it is too long ,") + person() + plain("is not very good ."),
    lambda: plain("the plot was boring in") + place() + plain("and") + place() + plain("!"),
    lambda: person() + plain("was in") + place() + plain("."),
]


def sentences(n):
    return [rng.choice(TEMPLATES)() for _ in range(n)]


def conll(path, rows):
    with open(path, "w") as f:
        f.write("-DOCSTART- O\n\n")
        for s in rows:
            f.write("".join(f"{w} {t}\n" for w, t in s) + "\n")


os.makedirs(out, exist_ok=True)
conll(os.path.join(out, "train.conll"), sentences(600))
conll(os.path.join(out, "validation.conll"), sentences(60))
with open(os.path.join(out, "test.jsonl"), "w") as f:
    for s in sentences(100):
        f.write(json.dumps({"tokens": [w for w, _ in s], "ner_tags": [t for _, t in s]}) + "\n")
