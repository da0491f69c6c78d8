"""A tiny Llama with YaRN-scaled rotary positions, and what Hugging Face
computes with it, for kernels-tests/llama.rs: make_llama_tiny.py's make() (the
same files and expected values) with rope_type "yarn", θ 10,000, factor 4 from
64 original positions, so that head_dim 8's four frequencies meet every branch
of the ramp (kept, blended halfway, divided) and the cosines and sines take
the default attention factor 0.1·ln 4 + 1.

Writes kernels-tests/golden/llama-tiny-yarn/. Needs what make_llama_tiny.py
needs. Run from the repo root:
  python3 kernels-tests/golden/make_llama_yarn.py
"""
import sys

sys.path.insert(0, "kernels-tests/golden")
from make_llama_tiny import make  # noqa: E402

make("kernels-tests/golden/llama-tiny-yarn", kv_heads=2, tied=False,
     rope={"rope_theta": 10000.0, "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
     seed=15)
