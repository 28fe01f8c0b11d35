"""Which clips a spec can be run at: every stride needs its input and a conv head's fixed
pool window must fit conv5's map. Time and space are independent and each is monotone
(a longer clip never breaks what a shorter one allowed), so each is a bisection."""
from __future__ import annotations

from dataclasses import replace

from .bounds import LIMITS
from .spec import ArchSpec, SpecError


def _fits(spec: ArchSpec, frames: int, size: int) -> bool:
    try:
        replace(spec, frames=frames, height=size, width=size).validate()
    except SpecError:
        return False
    return True


def least_valid(ok, hi: int, lo: int = 1) -> int | None:
    """The least n in lo..hi with ``ok(n)`` for a monotone ``ok`` (bisection), or None."""
    if lo > hi or not ok(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return lo


def smallest_clip(spec: ArchSpec) -> tuple[int, int] | None:
    """``(frames, size)`` of the smallest square clip ``spec`` runs at, or None if none does."""
    big_t, big_s = LIMITS["frames"], LIMITS["side"]
    frames = least_valid(lambda t: _fits(spec, t, big_s), big_t)
    size = least_valid(lambda s: _fits(spec, big_t, s), big_s)
    return None if frames is None or size is None else (frames, size)


def check_clip(spec: ArchSpec, frames: int, size: int) -> None:
    """Raise SpecError when ``spec`` cannot run at ``frames`` x ``size``², naming the rule and
    the smallest clip that works."""
    try:
        replace(spec, frames=frames, height=size, width=size).validate()
    except SpecError as e:
        least = smallest_clip(spec)
        hint = (f"; the smallest clip this model runs at is {least[0]}x{least[1]}x{least[1]}"
                if least else "")
        raise SpecError(e.layer, f"{e.rule}{hint}") from None


def clip_range(spec: ArchSpec) -> dict[str, object]:
    """What a converted or trained model supports: its smallest clip and how larger ones are
    handled (fixed stride-1 window: logits averaged over positions; fc: global pool)."""
    least = smallest_clip(spec)
    return {"min_frames": least[0] if least else None, "min_size": least[1] if least else None,
            "larger": "any (global average pool)" if spec.head == "fc" or not any(spec.head_pool)
            else "any (stride-1 window, logits averaged over positions)"}
