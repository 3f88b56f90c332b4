"""Which product and license type a license server's feature counts as.

Without a mapping a feature is a product of its own (named as the feature) with the license
type ``Floating``, counted per checkout. A mapping file (TOML) groups features and names types::

    [features.64300ACD_F]
    product = "AutoCAD"            # several features may share a product
    license_type = "Floating"      # optional, default "Floating"
    counting = "per_checkout"      # optional: "per_checkout" (default) or "per_user"

With a mapping, every feature a source reports must be in it: an unknown feature is bad input
(nothing is imported), so a typo in the file cannot scatter licenses into stray products.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog import COUNTING_RULES
from ..errors import InvalidInput
from ..models import PER_CHECKOUT

FLOATING = "Floating"


@dataclass(frozen=True)
class Target:
    """What a feature counts as: a pool (product, license type) and its counting rule."""

    product: str
    license_type: str = FLOATING
    counting: str = PER_CHECKOUT


@dataclass(frozen=True)
class FeatureMap:
    """Feature -> :class:`Target`; `strict` when it came from a file (unknown features refused)."""

    targets: Mapping[str, Target] = field(default_factory=dict)
    strict: bool = False
    origin: str = ""

    def target(self, feature: str) -> Target:
        """The pool `feature` counts in; :class:`InvalidInput` for an unknown one (strict)."""
        found = self.targets.get(feature)
        if found is not None:
            return found
        if self.strict:
            raise InvalidInput(f"feature {feature!r} is not in the mapping {self.origin}")
        return Target(product=feature)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string, not {value!r}")
    return value.strip()


def parse_mapping(data: Mapping[str, object], origin: str = "") -> FeatureMap:
    """A :class:`FeatureMap` from the parsed TOML document `data`."""
    features = data.get("features")
    unknown = set(data) - {"features"}
    if unknown or not isinstance(features, Mapping):
        raise InvalidInput(
            f"mapping {origin}: expected only a [features.NAME] table per feature"
            + (f", not {', '.join(sorted(unknown))}" if unknown else "")
        )
    targets = {}
    for feature, entry in features.items():
        where = f"mapping {origin}, feature {feature!r}"
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"{where}: expected a table with product = ...")
        extra = set(entry) - {"product", "license_type", "counting"}
        if extra:
            raise InvalidInput(f"{where}: unknown keys {', '.join(sorted(extra))}")
        counting = entry.get("counting", PER_CHECKOUT)
        if counting not in COUNTING_RULES:
            raise InvalidInput(f"{where}: counting must be one of {', '.join(COUNTING_RULES)}")
        targets[str(feature)] = Target(
            product=_text(entry.get("product"), f"{where}: product"),
            license_type=_text(entry.get("license_type", FLOATING), f"{where}: license_type"),
            counting=str(counting),
        )
    return FeatureMap(targets=targets, strict=True, origin=origin)


def read_mapping(path: str | Path | None) -> FeatureMap:
    """The mapping in the TOML file at `path` (None: every feature is its own product)."""
    if path is None:
        return FeatureMap()
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise InvalidInput(f"cannot read the mapping {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise InvalidInput(f"the mapping {path} is not valid TOML: {error}") from None
    return parse_mapping(data, str(path))
