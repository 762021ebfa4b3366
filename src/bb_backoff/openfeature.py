"""The feature flag from OpenFeature: :class:`OpenFeatureFlag`.

``pip install 'bb-backoff[openfeature]'``; the SDK is imported only when an
:class:`OpenFeatureFlag` is built.  Give it to a client as ``flag=`` with the
client's ``actor``: the actor is the targeting key::

    from bb_backoff import BitbucketClient
    from bb_backoff.openfeature import OpenFeatureFlag

    client = BitbucketClient(auth=..., flag=OpenFeatureFlag(), actor="Project:123")

An evaluation error (a missing flag, a provider that is not ready, a value
that is not a boolean) raises :class:`FlagEvaluationError` inside the source:
the client counts it in ``flag_errors``, logs it (a warning per run of
failures) and uses the legacy policy, instead of reading the SDK's default
as "off".
"""

from ._openfeature import FlagEvaluationError, OpenFeatureFlag

__all__ = ["FlagEvaluationError", "OpenFeatureFlag"]
