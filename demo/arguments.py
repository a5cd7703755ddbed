"""Arguments checked at the boundary: every number, choice and coordinate an
endpoint takes, before any work is done.

Each checker returns the value in its proper type or raises
:class:`ArgumentError`, whose message is one sentence naming the argument and
what it may be ("top_k must be a whole number from 1 to 20, not 'abc'."). A
value that is the wrong type (a string for a number, a bool, a list), not
finite (NaN, infinity, 1e400, which JSON parsing turns into infinity), not
whole where a whole number is needed, or out of range is refused; ``None``
gives the default where there is one. No Gradio here: the UI turns the
error into ``gate.refuse(str(error))``.

    from demo import arguments
    top_k = arguments.whole_number("top_k", top_k, 1, 20)
    x = arguments.number("alpha", alpha, 0.0, 1.0, default=0.5)
    name = arguments.choice("architecture", name, models.list_models())
    label = arguments.text("name", label, 64, default="")
    picked = arguments.choices("variants", picked, ["a", "b"], default=[])
"""
from __future__ import annotations

import math
from typing import Iterable


class ArgumentError(ValueError):
    """An argument outside what the endpoint accepts; the message is one sentence."""


_MISSING = object()


def _shown(value) -> str:
    """The value as the message quotes it: short, never a whole payload."""
    try:
        text = repr(value)
    except (ValueError, OverflowError):  # an int past Python's digit limit cannot be written out
        return "a number too long to show"
    # Quoted as is: a huge JSON integer (10**400) would put hundreds of digits in the sentence.
    return text if len(text) <= 40 else text[:37] + "..."


def _real(name: str, value, what: str, default):
    if value is None:
        if default is _MISSING:
            raise ArgumentError(f"{name} is missing; give {what}.")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(f"{name} must be {what}, not {_shown(value)}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ArgumentError(f"{name} must be {what}, not {_shown(value)}.")
    return value


def whole_number(name: str, value, low: int, high: int, default=_MISSING) -> int:
    """An int from ``low`` to ``high`` (inclusive); a float is accepted when
    whole (3.0: Gradio's sliders send floats)."""
    what = f"a whole number from {low} to {high}"
    value = _real(name, value, what, default)
    if value is None:
        return default
    if isinstance(value, float) and not value.is_integer():
        raise ArgumentError(f"{name} must be {what}, not {_shown(value)}.")
    value = int(value)
    if not low <= value <= high:
        raise ArgumentError(f"{name} must be {what}, not {_shown(value)}.")
    return value


def number(name: str, value, low: float, high: float, default=_MISSING) -> float:
    """A finite float from ``low`` to ``high`` (inclusive)."""
    what = f"a number from {low:g} to {high:g}"
    value = _real(name, value, what, default)
    if value is None:
        return default
    if not low <= value <= high:
        raise ArgumentError(f"{name} must be {what}, not {_shown(value)}.")
    return float(value)


def choice(name: str, value, choices: Iterable[str], default=_MISSING, shown: int = 12) -> str:
    """One of ``choices`` (strings, matched exactly); the message lists up to ``shown`` of them."""
    choices = list(choices)
    listed = ", ".join(choices[:shown]) + (", ..." if len(choices) > shown else "")
    if value is None and default is not _MISSING:
        return default
    if not isinstance(value, str) or value not in choices:
        raise ArgumentError(f"{name} must be one of {listed}; not {_shown(value)}.")
    return value


def text(name: str, value, max_length: int, default=_MISSING) -> str:
    """A string of at most ``max_length`` characters."""
    if value is None and default is not _MISSING:
        return default
    if not isinstance(value, str) or len(value) > max_length:
        raise ArgumentError(f"{name} must be text of at most {max_length} characters, not {_shown(value)}.")
    return value


def choices(name: str, value, allowed: Iterable[str], default=_MISSING, shown: int = 12) -> list[str]:
    """A list of some of ``allowed`` (each checked as :func:`choice` checks one)."""
    if value is None and default is not _MISSING:
        return default
    if not isinstance(value, list):
        raise ArgumentError(f"{name} must be a list of choices, not {_shown(value)}.")
    allowed = list(allowed)
    return [choice(name, item, allowed, shown=shown) for item in value]
