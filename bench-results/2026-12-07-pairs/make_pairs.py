"""A sentence-pair table (GLUE's premise/hypothesis layout) whose label needs
both texts: "same" when the two sentences judge the film alike (both positive
or both negative), "different" otherwise. Words from the tiny BERT fixture's
vocabulary. Writes DIR/train.csv and DIR/test.csv.

  python3 make_pairs.py DIR
"""
import csv
import os
import random
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
good, bad = ["good", "great"], ["bad", "boring"]
subjects = ["the film", "the plot", "the story", "the actors", "it"]
fillers = ["", "very ", "too "]


def sentence(r, positive):
    word = r.choice(good if positive else bad)
    tail = r.choice(["", " and long", ", and the story was long", " !"])
    return f"{r.choice(subjects)} was {r.choice(fillers)}{word}{tail}"


def rows(n, seed):
    r = random.Random(seed)
    for _ in range(n):
        a, b = r.random() < 0.5, r.random() < 0.5
        yield sentence(r, a), sentence(r, b), "same" if a == b else "different"


for name, n, seed in [("train", 2000, 1), ("test", 400, 2)]:
    with open(os.path.join(out, f"{name}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["premise", "hypothesis", "label"])
        w.writerows(rows(n, seed))
