"""The teacher: a frozen causal LM prompted in context, decoding rationales greedily or contrastively."""
