"""Evaluation: BLiMP-style minimal pairs and (pseudo-)perplexity, for causal and masked LMs."""
