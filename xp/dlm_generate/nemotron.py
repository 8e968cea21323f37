"""`nemotron`: block diffusion, or linear self-speculation when the request asks for it.

`nemotron_mixed` (upstream: AR/diffusion logit mixing through a `generate_mixed` method that the
public model does not have) resolves to `nemotron`, as upstream does for such models.
"""

from __future__ import annotations

import logging
from typing import Optional

from xp.dlm_generate.common import group_by_key, validate
from xp.dlm_generate.diffusion import generate_diffusion
from xp.dlm_generate.speculation import generate_speculation
from xp.dlm_generate.types import CommitCallback, GenerationRequest, GenerationResult

log = logging.getLogger(__name__)


class NemotronEngine:
    name = "nemotron"

    def __init__(self, bundle):
        self.bundle = bundle

    def generate(self, requests: list[GenerationRequest],
                 on_commit: Optional[CommitCallback] = None) -> list[GenerationResult]:
        """Rows with different decoding keys are run as separate lockstep groups."""
        validate(requests, self.bundle, diffusion=True)
        results: list[Optional[GenerationResult]] = [None] * len(requests)
        for group in group_by_key(requests):
            batch = [requests[i] for i in group]
            run = generate_speculation if batch[0].linear_speculation else generate_diffusion
            for i, res in zip(group, run(self.bundle, batch, group, on_commit)):
                results[i] = res
        return results  # type: ignore[return-value]


def make_mixed_engine(bundle) -> NemotronEngine:
    log.info("nemotron_mixed: this model offers no mixed AR/diffusion method; using 'nemotron'")
    return NemotronEngine(bundle)
