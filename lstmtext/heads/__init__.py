"""Task heads. Each takes encoder states and the batch and returns (logits, loss); none reads the recipe.

The heads' variants are named here, in a module without torch, so the task options (read for ``--help`` and
recipe checks, which must not import torch) offer exactly the values the heads accept.
"""

POOLINGS = ("maxmean", "max", "mean", "attention")  # ClassifyHead: over the real tokens of a sequence
WORD_STATES = ("first", "span")  # TagHead: which encoder states stand for a word
ATTENTIONS = ("general", "dot", "bahdanau")  # Seq2Seq: the attention score
