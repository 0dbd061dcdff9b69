"""Ouroboros: phrase drafting with a draft model and a pool of phrases (Zhao et al., EMNLP 2024,
arXiv 2402.13720).

Each draft forward also checks candidate phrases (context n-gram matches, then the phrase pool),
so a forward yields more than one draft token whenever a phrase was right; context copies go into
the draft without a forward; the phrases the draft parted from and candidate suffixes become
branches the target verifies in the same forward; the pool is fed from the prompt, the draft and
the target's verdicts. Cost gates cut each of these to the length its record pays for.

Drafting is greedy everywhere, as in the original, so at temperature > 0 every draft and branch
token is a deterministic proposal (q None): the verifier's one-hot (sample-and-match) rule keeps
the output exactly the target's distribution, which the original, greedy-only, did not do.

Modules: `proposer` (parameters and the drafting loop), `phrases` (candidates), `drafting` (the
draft forward that checks them), `copies`, `branches`, `harvest` (the pool), `gates` (cost gates).
"""

from .proposer import OuroborosProposer
from .stats import OuroborosStats

__all__ = ["OuroborosProposer", "OuroborosStats"]
