#!/bin/bash
cd /work/main
for s in $(seq 6 25); do
  nice -n 19 /tmp/seeds/wgml-study train --seed $s --metrics /tmp/seeds/wgml-$s.json > /tmp/seeds/wgml-$s.log 2>&1
  KERAS_BACKEND=jax nice -n 19 /work/pyenv/bin/python benches/keras_cnn.py data/mnist-10k 10 $s > /tmp/seeds/keras-$s.log 2>&1
done
echo done > /tmp/seeds/DONE
