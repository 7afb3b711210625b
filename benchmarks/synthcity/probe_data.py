"""SynthCity data for a probe: a generator version with some target knobs changed.

Generates the files of ``--version`` with its source unchanged and its target's knobs replaced by ``--target``
values (``style.colour_shift=0``, ``scene.focal=1.0`` ...), so the source images are byte-identical to the
version's own and the pretrained models of its studies serve the probe. A probe is not a generator version: it is
how a candidate change is measured before a version is frozen (docs/synthcity.md).

    python benchmarks/synthcity/probe_data.py --out data/probe_nopalette_seed0 --version 2.0 --seed 0 \
        --target style.colour_shift=0
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from camix.data.synthcity.params import DOMAINS, Domain
from camix.data.synthcity.writer import generate


def with_knobs(domain: Domain, assignments: Sequence[str]) -> Domain:
    """``domain`` with ``part.knob=value`` assignments applied (part: ``scene`` or ``style``).

    Raises:
        ValueError: a malformed assignment, an unknown part or knob, or a value outside the knob's range.
    """
    parts = {"scene": domain.scene, "style": domain.style}
    for text in assignments:
        key, sep, value = text.partition("=")
        part, dot, name = key.partition(".")
        if not sep or not dot or part not in parts:
            raise ValueError(f"--target {text!r}: write scene.<knob>=<value> or style.<knob>=<value>")
        fields = {f.name: f for f in dataclasses.fields(parts[part])}
        if name not in fields:
            raise ValueError(f"--target {text!r}: {part} has no knob {name!r}; knobs: {', '.join(fields)}")
        lo, hi = fields[name].metadata["range"]
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--target {text!r}: {value!r} is not a number") from None
        if not lo <= number <= hi:
            raise ValueError(f"--target {text!r}: {part}.{name} must lie in [{lo}, {hi}]")
        parts[part] = dataclasses.replace(parts[part], **{name: number})  # type: ignore[type-var]
    return Domain(parts["scene"], parts["style"])  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--version", default="2.0", choices=list(DOMAINS), help="generator version (default 2.0)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--target", nargs="+", default=[], metavar="PART.KNOB=VALUE", help="target knobs to change")
    parser.add_argument("--size", type=int, nargs=2, default=[256, 128], metavar=("W", "H"))
    parser.add_argument("--counts", type=int, nargs=3, default=[400, 400, 100], metavar=("SRC", "TGT", "VAL"))
    args = parser.parse_args(argv)
    source, target = DOMAINS[args.version]
    try:
        target = with_knobs(target, args.target)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    num_source, num_target_train, num_target_val = args.counts
    generate(
        args.out,
        seed=args.seed,
        size=tuple(args.size),
        num_source=num_source,
        num_target_train=num_target_train,
        num_target_val=num_target_val,
        version=args.version,
        source=source,
        target=target,
    )
    changed = " ".join(args.target) or "unchanged"
    print(f"wrote {args.out}: generator {args.version}, seed {args.seed}, target {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
