"""A multi-label table (go_emotions' layout: JSON Lines of "text" and a "labels"
array) whose classes are the sentiment words a text holds: "joy" when it says
good or great, "anger" when bad or boring, "tired" when long; any number of
them, none included. Words from the tiny BERT fixture's vocabulary. Writes
DIR/train.jsonl and DIR/test.jsonl.

  python3 make_emotions.py DIR
"""
import json
import os
import random
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
words = {"joy": ["good", "great"], "anger": ["bad", "boring"], "tired": ["long"]}
subjects = ["the film", "the plot", "the story", "the actors", "it"]


def rows(n, seed):
    r = random.Random(seed)
    for _ in range(n):
        classes = sorted(c for c in words if r.random() < 0.4)
        parts = [f"{r.choice(subjects)} was {r.choice(words[c])}" for c in classes]
        parts += [f"{r.choice(subjects)} is not very" for _ in range(r.randint(0, 1))]
        r.shuffle(parts)
        yield {"text": " and ".join(parts) or "it was the film", "labels": classes}


for name, n, seed in [("train", 2000, 1), ("test", 400, 2)]:
    with open(os.path.join(out, f"{name}.jsonl"), "w") as f:
        for row in rows(n, seed):
            f.write(json.dumps(row) + "\n")
