"""ToyWorld: an embedded synthetic two-hop reasoning world whose rationales can be checked exactly.

``world`` generates facts and train/dev/test questions (with a planted wording shortcut), ``checker`` judges any
rationale against the facts, ``tokenizer`` builds the closed-vocabulary tokenizer, ``corpus`` writes the teacher's
training text and ``teacher`` trains and caches the teacher LM. ``grammar`` holds the text formats they share.
``task`` plugs them into the pipeline as ``dataset=toyworld`` (``scd.task``).
"""
