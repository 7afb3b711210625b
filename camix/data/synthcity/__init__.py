"""SynthCity: the built-in procedural benchmark for domain adaptation (docs/synthcity.md).

Street scenes in two domains that share a scene grammar (context) but not appearance: a "rendered" source
written in the GTA5 layout and a "photographed" target written in the Cityscapes layout (train and val), with
real Cityscapes labelIds, so the same loaders serve real and built-in data::

    from camix.data.synthcity import generate
    meta = generate("data/synthcity", seed=0, num_source=500, num_target_train=500, num_target_val=100, gap=1.0)

Modules: ``params`` (the knobs: :class:`SceneParams`, :class:`DomainStyle`, ``SOURCE``, ``TARGET``), ``canvas``
(camera and drawing layers), ``things`` (objects), ``scene`` (the grammar), ``render`` (appearance) and
``writer`` (files and metadata).
"""

from camix.data.synthcity.params import (
    DOMAINS,
    SOURCE,
    SOURCE_COLOURS,
    TARGET,
    TARGET_COLOURS,
    TARGET_V2,
    TARGET_V21,
    Domain,
    DomainStyle,
    SceneParams,
    target_domain,
)
from camix.data.synthcity.writer import (
    DEFAULT_SIZE,
    GENERATOR_VERSION,
    GENERATOR_VERSIONS,
    METADATA,
    SPLIT_KEYS,
    TRAIN_CITIES,
    VAL_CITIES,
    ensure,
    generate,
    header,
    image_paths,
    is_current,
    load_metadata,
    sample,
)

__all__ = [
    "DEFAULT_SIZE",
    "DOMAINS",
    "GENERATOR_VERSION",
    "GENERATOR_VERSIONS",
    "METADATA",
    "SOURCE",
    "SOURCE_COLOURS",
    "SPLIT_KEYS",
    "TARGET",
    "TARGET_COLOURS",
    "TARGET_V2",
    "TARGET_V21",
    "TRAIN_CITIES",
    "VAL_CITIES",
    "Domain",
    "DomainStyle",
    "SceneParams",
    "ensure",
    "generate",
    "header",
    "image_paths",
    "is_current",
    "load_metadata",
    "sample",
    "target_domain",
]
