"""How to read a result: the faithfulness verdicts in words (one wording for
the Classify & explain tab and the Compare tab), a note when a curve is too
flat to say anything, and a note when a model's classes may not fit the
image. Plain text from plain values; no Gradio here."""
from __future__ import annotations

import math

import numpy as np

import models
from explain import faithfulness

# The probability must move at least this much over a curve for its area to say anything.
FLAT_RANGE = 0.01
# A model is "narrow" (its classes may well not fit a photo) when it knows fewer classes than
# this, or sees images no larger than NARROW_INPUT pixels a side.
NARROW_CLASSES = 100
NARROW_INPUT = 64
# Beyond these a model cannot see an image well: its pixels enlarged more than
# 4 times (a 56-pixel image for Lite0, which resizes to 256 and crops 224), or
# under a third of its area inside the centre crop (with Lite0's crop of 0.875,
# an image longer than about 2.3 : 1; a 16 : 9 photo keeps 43 %).
MAX_ENLARGEMENT = 4.0
MIN_SHARE = 1 / 3

VERDICT_WORDS = {"better": "beats random", "worse": "**worse than random**",
                 "tie": f"too close to call (within {faithfulness.TIE_MARGIN})"}

GUIDE = (
    "**How to read the verdicts.** *Beats random*: removing the map's pixels first lowers the probability "
    "faster (deletion), or revealing them first raises it faster (insertion), than a random map does. "
    "*Worse than random* does not mean the map or the test is broken: a map can point at what the model uses "
    "for another class, and the curves go up and down because removing evidence for a rival class can raise "
    f"this one. *Too close to call*: the two areas differ by at most {faithfulness.TIE_MARGIN}. *No signal*: "
    f"the probability moves by less than {FLAT_RANGE} over the whole curve (saturated near 1, say, whatever is "
    "removed), so there is nothing to compare.")


def flat_range(result_faithfulness: faithfulness.Faithfulness, kind: str) -> tuple[float, float] | None:
    """(lowest, highest) probability over the map's and the random map's ``kind`` curves
    ("deletion" or "insertion") when they move less than :data:`FLAT_RANGE`; None when they move."""
    values = np.concatenate([np.asarray(getattr(result_faithfulness.curves, kind), dtype=np.float64),
                             np.asarray(getattr(result_faithfulness.random, kind), dtype=np.float64)])
    low, high = float(values.min()), float(values.max())
    return (low, high) if high - low < FLAT_RANGE else None


def verdict(result_faithfulness: faithfulness.Faithfulness, kind: str) -> str:
    """The verdict of one curve in words; a flat curve says so, with its range, instead of a tie."""
    flat = flat_range(result_faithfulness, kind)
    if flat is not None:
        return f"no signal (p stays {flat[0]:.3f}-{flat[1]:.3f})"
    return VERDICT_WORDS[getattr(result_faithfulness, f"{kind}_verdict")()]


def flat_note(result_faithfulness: faithfulness.Faithfulness, class_name: str) -> str:
    """One sentence when a curve is flat (empty otherwise): why its verdict says nothing."""
    kinds = [k for k in ("deletion", "insertion") if flat_range(result_faithfulness, k) is not None]
    if not kinds:
        return ""
    which = " and ".join(kinds) + (" curves" if len(kinds) == 2 else " curve")
    return (f"The probability of **{class_name}** barely moves over the whole {which} (by less than "
            f"{FLAT_RANGE}), so these scores cannot tell this map from a random one.")


def is_narrow(spec) -> bool:
    """Whether a model knows only a few classes or sees only tiny images (by its spec)."""
    return spec.num_classes < NARROW_CLASSES or max(spec.input_size[1:]) <= NARROW_INPUT


def _class_list(labels, shown: int = 5) -> str:
    labels = [str(label) for label in labels]
    return ", ".join(labels) if len(labels) <= shown + 1 else ", ".join(labels[:shown - 1]) + ", ..., " + labels[-1]


def class_fit_note(spec) -> str:
    """One sentence beside a result of a narrow model (empty for others): what it knows,
    and that an image of anything else still gets one of its classes."""
    if not is_narrow(spec):
        return ""
    height, width = spec.input_size[1:]
    return (f"**{spec.name}** knows only {spec.num_classes} classes ({_class_list(spec.labels)}) and sees "
            f"{width} x {height} pixels: if the image shows none of them, the answer is still one of them and "
            "means little.")


def seeing_note(spec, width: int, height: int) -> str:
    """One sentence when ``spec``'s model cannot see a ``width`` x ``height``
    image well (its pixels enlarged more than :data:`MAX_ENLARGEMENT` times, or
    under :data:`MIN_SHARE` of it inside the centre crop), else ""."""
    enlargement, share = models.coverage(spec, width, height)
    if enlargement > MAX_ENLARGEMENT:
        needed = math.ceil(min(width, height) * enlargement / MAX_ENLARGEMENT)
        return (f"The model sees this {width} x {height} image enlarged {round(enlargement, 1):g} times, so its answer "
                f"says little about it; use an image at least {needed} pixels on its shorter side.")
    if share < MIN_SHARE:
        return (f"The model sees only the middle {share:.0%} of this {width} x {height} image (a centre crop); "
                "crop the image to what matters for a better answer.")
    return ""


def image_notes(spec, image_size: tuple[int, int] | None = None) -> list[str]:
    """Every note beside a result of ``spec``'s model on an image of
    ``image_size`` (width, height; None: the class note only)."""
    notes = [class_fit_note(spec)]
    if image_size is not None and min(image_size) > 0:  # (0, 0): not known
        notes.append(seeing_note(spec, *image_size))
    return [note for note in notes if note]
