"""Two griffe extensions for the API reference; mkdocs.yml loads them for mkdocstrings.

- :class:`AttrsInit`: griffe reads the source without running it, so it never
  sees the ``__init__`` that attrs generates.  The reference would show
  ``ExponentialBackoff()`` with no parameters, and warn that every argument its
  docstring documents is unknown.  This imports each attrs class once and hands
  griffe the real signature (converters included: ``initial: float |
  timedelta``), so the reference shows what a caller may pass and
  ``mkdocs build --strict`` checks every documented argument against it.
- :class:`SphinxRoles`: the docstrings name other objects with Sphinx roles
  (``:class:`~bb_backoff.testing.VirtualClock```), which Markdown would show
  verbatim; this turns each into inline code, as Sphinx displays it
  (``VirtualClock``), and a paragraph's closing ``::`` (reST's "a code block
  follows") into the ``:`` Sphinx shows.

tests/test_docs.py pins both.
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any

import attrs
import griffe

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


def _is_attrs_decorated(cls: griffe.Class) -> bool:
    # A cheap static test first, so only attrs classes are ever imported.
    return any(
        str(decorator.value).startswith(("attrs.", "attr.", "define", "frozen"))
        for decorator in cls.decorators
    )


def _annotation(parameter: inspect.Parameter, cls: griffe.Class) -> str | griffe.Expr | None:
    if parameter.annotation is inspect.Parameter.empty:
        return None
    text = (
        parameter.annotation
        if isinstance(parameter.annotation, str)
        else inspect.formatannotation(parameter.annotation)
    )
    # An expression, resolved in the class's module, links its names in the reference.
    expression = griffe.safe_get_annotation(ast.parse(text, mode="eval").body, cls)
    return text if expression is None else expression


class AttrsInit(griffe.Extension):
    """Give every attrs class the ``__init__`` attrs generates for it."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:  # noqa: ARG002 (griffe passes node and agent)
        """Add ``__init__`` to an attrs class that does not define one itself."""
        if "__init__" in cls.members or not _is_attrs_decorated(cls):
            return
        runtime = griffe.dynamic_import(cls.path)
        if not attrs.has(runtime):
            return
        parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
        for parameter in inspect.signature(runtime).parameters.values():
            empty = parameter.default is inspect.Parameter.empty
            parameters.append(
                griffe.Parameter(
                    parameter.name,
                    annotation=_annotation(parameter, cls),
                    kind=_KINDS[parameter.kind],
                    default=None if empty else repr(parameter.default),
                )
            )
        init = griffe.Function(
            "__init__",
            lineno=cls.lineno,
            endlineno=cls.lineno,
            parent=cls,
            parameters=griffe.Parameters(*parameters),
            returns="None",
        )
        cls.set_member("__init__", init)


# :role:`target`, :role:`~dotted.target` (show the last part) or :role:`.relative`.
_ROLE = re.compile(
    r":(?:attr|class|data|exc|func|meth|mod|obj|const):`(?P<tilde>~?)\.?(?P<target>[^`]+)`"
)


# "text::" before an indented block; Markdown takes the block as code already.
_LITERAL_MARKER = re.compile(r"(?<=\S)::$", flags=re.MULTILINE)


def without_roles(text: str) -> str:
    """``text`` with each Sphinx role turned into inline code, and ``text::`` into ``text:``."""

    def code(match: re.Match[str]) -> str:
        target = match["target"]
        return f"`{target.rsplit('.', 1)[-1] if match['tilde'] else target}`"

    return _LITERAL_MARKER.sub(":", _ROLE.sub(code, text))


class SphinxRoles(griffe.Extension):
    """Show ``:class:`X``` and the other Sphinx roles as inline code, as Sphinx would."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:  # noqa: ARG002 (griffe passes node and agent)
        """Rewrite the roles in one object's docstring."""
        if obj.docstring is not None:
            obj.docstring.value = without_roles(obj.docstring.value)
