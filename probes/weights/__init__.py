"""Weights: when the checkpoints are public, is the suspect's every tensor on the line (or simplex)
between the parents' tensors? The white-box corroboration of the logit probe (the Rio case:
(Rio - Qwen) = 0.571 (Nex - Qwen) on the experts, cos fit 0.993)."""
