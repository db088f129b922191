"""Task heads. Each takes encoder states and the batch and returns (logits, loss); none reads the recipe."""
