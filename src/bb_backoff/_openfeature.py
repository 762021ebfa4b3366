"""OpenFeatureFlag: the feature flag, asked of an OpenFeature provider.

The OpenFeature SDK is imported when a source is built, never before
(``pip install 'bb-backoff[openfeature]'``).

An OpenFeature evaluation never raises: when the provider cannot answer
(the flag is missing, the provider is not ready, the value is not a
boolean...), the SDK hands back the default value with an error code.  Taken
at face value, that default would make a broken flag look like a flag that is
off.  The source reads the details instead and raises
:class:`FlagEvaluationError`, so the client's flag check counts the failure,
logs it (a warning per run of failures) and uses the legacy policy, as for
any other broken source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._exceptions import printable
from ._flags import FLAG_NAME

if TYPE_CHECKING:
    from openfeature.client import OpenFeatureClient
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.flag_evaluation import FlagEvaluationDetails


class FlagEvaluationError(Exception):
    """The OpenFeature provider could not evaluate the flag.

    Raised by :class:`OpenFeatureFlag` and caught by the clients, which count
    it in ``flag_errors``, log it and use the legacy policy for the request.

    Args:
        flag_key: the key asked of the provider.
        actor: the targeting key, or ``None``.
        error_code: the SDK's error code, like ``"FLAG_NOT_FOUND"``.
        error_message: the provider's explanation, if any.
    """

    def __init__(
        self, flag_key: str, actor: str | None, error_code: str, error_message: str | None
    ) -> None:
        # Positional arguments only, so the error pickles like any Exception.
        super().__init__(flag_key, actor, error_code, error_message)
        self.flag_key: Final = flag_key
        self.actor: Final = actor
        self.error_code: Final = error_code
        self.error_message: Final = error_message

    def __str__(self) -> str:
        text = f"OpenFeature could not evaluate {self.flag_key!r} for {self.actor!r}: "
        text += printable(self.error_code)
        if self.error_message:
            text += f" ({printable(self.error_message)})"
        return text


class OpenFeatureFlag:
    """A :class:`~bb_backoff.FlagSource` that asks an OpenFeature client.

    Every check evaluates the boolean flag ``flag_name`` with the client's
    actor as the targeting key (no targeting key when the actor is
    ``None``) and ``False`` as the default.  The provider is looked up at
    each evaluation, so a provider set or changed after the source was built
    (a rollback included) applies from the next request on.
    :class:`~bb_backoff.AsyncBitbucketClient` awaits the SDK's async
    evaluation, so a provider that waits on the network never blocks the
    event loop.

    Args:
        client: an ``openfeature.client.OpenFeatureClient``; by default the
            global API's ``openfeature.api.get_client()``.
        flag_name: the key the provider knows the flag by, when it is not
            :data:`~bb_backoff.FLAG_NAME` (e.g. a kebab-case key).  The
            clients ask for :data:`~bb_backoff.FLAG_NAME`, which is mapped
            to it; any other name is asked as it is.

    Raises:
        ModuleNotFoundError: openfeature-sdk is not installed.
        ValueError: ``client`` cannot evaluate boolean flags, or
            ``flag_name`` is not a non-empty string.
    """

    def __init__(
        self, client: OpenFeatureClient | None = None, *, flag_name: str = FLAG_NAME
    ) -> None:
        from openfeature import api  # noqa: PLC0415 (optional dependency)
        from openfeature.evaluation_context import (  # noqa: PLC0415 (optional dependency)
            EvaluationContext,
        )
        from openfeature.flag_evaluation import Reason  # noqa: PLC0415 (optional dependency)

        if not isinstance(flag_name, str) or not flag_name:
            raise ValueError(f"flag_name must be a non-empty string, got {flag_name!r}")
        if client is None:
            client = api.get_client()
        elif not callable(getattr(client, "get_boolean_details", None)):
            raise ValueError(f"client must be an OpenFeature client, got {type(client).__name__}")
        self.client: Final = client
        self.flag_name: Final = flag_name
        self._context_type: Final = EvaluationContext
        self._error_reason: Final = Reason.ERROR

    def __repr__(self) -> str:
        domain = getattr(self.client, "domain", None)
        return f"OpenFeatureFlag(flag_name={self.flag_name!r}, domain={domain!r})"

    def enabled(self, name: str, actor: str | None) -> bool:
        """Whether flag ``name`` is on for ``actor``, by the OpenFeature provider.

        Args:
            name: the flag asked about (:data:`~bb_backoff.FLAG_NAME` is
                asked as :attr:`flag_name`).
            actor: the targeting key, like ``"Project:123"``, or ``None``.

        Returns:
            The provider's boolean.

        Raises:
            FlagEvaluationError: the provider could not evaluate the flag.
        """
        key = self._key(name)
        details = self.client.get_boolean_details(
            key, default_value=False, evaluation_context=self._context(actor)
        )
        return self._answer(key, actor, details)

    async def enabled_async(self, name: str, actor: str | None) -> bool:
        """:meth:`enabled`, with the SDK's async evaluation.

        Raises:
            FlagEvaluationError: the provider could not evaluate the flag.
        """
        key = self._key(name)
        details = await self.client.get_boolean_details_async(
            key, default_value=False, evaluation_context=self._context(actor)
        )
        return self._answer(key, actor, details)

    def _key(self, name: str) -> str:
        return self.flag_name if name == FLAG_NAME else name

    def _context(self, actor: str | None) -> EvaluationContext:
        return self._context_type(targeting_key=actor)

    def _answer(self, key: str, actor: str | None, details: FlagEvaluationDetails[bool]) -> bool:
        if details.error_code is not None or details.reason == self._error_reason:
            code = str(details.error_code.value) if details.error_code is not None else "GENERAL"
            raise FlagEvaluationError(key, actor, code, details.error_message)
        return details.value
