"""Training utilities of coreecho (stage-1 contrastive and stage-2 regression training, evaluation helpers).

Nothing here is imported by ``import coreecho``: inference never loads training code.
"""
