"""A sentence-pair table (GLUE's premise/hypothesis layout) whose label needs
both texts: "same" when the two sentences judge the film alike (both positive
or both negative), "different" otherwise. Words from the tiny BERT fixture's
vocabulary. Writes DIR/train.csv and DIR/test.csv.

With --scores, the label is a similarity score as STS-B's (0 to 5): 5 for the
same subject judged alike, 3 for different subjects judged alike, 1 for the
same subject judged otherwise, 0 for neither.

  python3 make_pairs.py DIR [--scores]
"""
import csv
import os
import random
import sys

out = sys.argv[1]
scores = "--scores" in sys.argv[2:]
os.makedirs(out, exist_ok=True)
good, bad = ["good", "great"], ["bad", "boring"]
subjects = ["the film", "the plot", "the story", "the actors", "it"]
fillers = ["", "very ", "too "]


def sentence(r, positive, subject):
    word = r.choice(good if positive else bad)
    tail = r.choice(["", " and long", ", and the story was long", " !"])
    return f"{subject} was {r.choice(fillers)}{word}{tail}"


def rows(n, seed):
    r = random.Random(seed)
    for _ in range(n):
        a, b = r.random() < 0.5, r.random() < 0.5
        s, t = r.choice(subjects), r.choice(subjects)
        if scores:
            label = {(True, True): 5.0, (True, False): 3.0, (False, True): 1.0}.get((a == b, s == t), 0.0)
        else:
            label = "same" if a == b else "different"
        yield sentence(r, a, s), sentence(r, b, t), label


for name, n, seed in [("train", 2000, 1), ("test", 400, 2)]:
    with open(os.path.join(out, f"{name}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["premise", "hypothesis", "label"])
        w.writerows(rows(n, seed))
