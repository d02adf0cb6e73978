"""Student specs as the command line writes them: `4L` (keep the bottom 4 layers), `90S`
(sparsity 90 of a prunable teacher), a checkpoint path, and TA paths such as `6,4L`."""

from __future__ import annotations

import re

from minidisc.errors import MiniDiscError

_LAYER_SPEC = re.compile(r"^(\d+)L$")
_SPARSITY_SPEC = re.compile(r"^(\d+(?:\.\d+)?)S$")

Spec = tuple[str, float] | tuple[str, str]


def parse_spec(spec: str, flag: str = "--layer_or_sparsity") -> Spec:
    """Parse a student spec: ('layer', N), ('sparsity', s) or ('path', spec)."""
    m = _LAYER_SPEC.match(spec)
    if m:
        if int(m.group(1)) < 1:
            raise MiniDiscError(f"{flag} {spec!r}: a student needs at least 1 layer")
        return "layer", int(m.group(1))
    m = _SPARSITY_SPEC.match(spec)
    if m:
        if not 0 <= float(m.group(1)) < 100:
            raise MiniDiscError(f"{flag} {spec!r}: a sparsity must be in [0, 100)")
        return "sparsity", float(m.group(1))
    return "path", spec


def parse_path(path: str) -> list[Spec]:
    """`6,4L` -> [('layer', 6), ('layer', 4)]; the suffix of the last item types them all."""
    items = [x.strip() for x in path.split(",") if x.strip()]
    if not items:
        raise MiniDiscError("--layer_or_sparsity_path is empty")
    suffix = items[-1][-1:]
    if suffix not in ("L", "S"):
        raise MiniDiscError(
            f"--layer_or_sparsity_path {path!r}: must end in L (layers) or S (sparsity), e.g. 6,4L"
        )
    out = []
    for item in items:
        spec = item if item.endswith(suffix) else item + suffix
        kind, value = parse_spec(spec, "--layer_or_sparsity_path")
        if kind == "path":
            raise MiniDiscError(f"--layer_or_sparsity_path {path!r}: bad item {item!r}")
        out.append((kind, value))
    return out
