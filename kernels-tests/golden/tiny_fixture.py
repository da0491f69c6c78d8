"""What the tiny encoder fixtures share (make_bert_tiny.py, make_bert_tiny_pairs.py,
make_roberta_tiny.py, make_distilbert_tiny.py, make_electra_tiny.py): the
WordPiece vocabulary of 62 words and pieces, the four texts and four pairs of
texts the fixtures read, and the redraw that keeps every weight away from 0."""
import torch

WORDS = ["the", "film", "was", "good", "bad", "not", "very", "plot", "and", "actors",
         "it", "is", "great", "boring", "liked", "story", "too", "long", ".", ",", "!"]
VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + list("abcdefghijklmnopqrstuvwxyz")
         + ["##s", "##ed", "##ing", "##ly", "##er"] + [f"##{c}" for c in "aeiot"])
assert len(VOCAB) == len(set(VOCAB)) and len(VOCAB) <= 64, len(VOCAB)

TEXTS = [
    "The film was very good!",
    "Boring plot, and the actors were not great. It is too long; I liked the story though.",
    "bad",
    "Zyx storytelling",
]
# Pairs cut by truncation to 16 tokens: neither, the first, the second, both.
FIRSTS = [
    "The film was good",
    "Boring plot, and the actors were not great. It is too long",
    "the story",
    "the film was not very good and the plot was boring",
]
SECONDS = [
    "It is great!",
    "bad",
    "I liked the story though, the actors were very good and the plot too",
    "the actors were great and it is not too long at all",
]


def redraw(model):
    """Every weight N(0, 0.3^2) and the layer norms' scales 1 + N(0, 0.1^2), in
    parameter order (the torch seed set before decides the draws)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name or "layer_norm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
