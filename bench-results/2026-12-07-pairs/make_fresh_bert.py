"""A fresh tiny BERT (transformers' own initialisation, std 0.02) with the
fixture's tokenizer, no classifier: a pretrained-BERT-shaped folder to fine-tune
on the pair table. Writes DIR.

  python make_fresh_bert.py DIR
"""
import sys

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

out = sys.argv[1]
config = BertConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, max_position_embeddings=32, type_vocab_size=2)
torch.manual_seed(5)
BertModel(config).save_pretrained(out)
BertTokenizerFast.from_pretrained("kernels-tests/golden/bert-tiny-cls").save_pretrained(out)
