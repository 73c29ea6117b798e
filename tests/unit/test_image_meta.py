"""The image contract (``sdworker.image_meta``): what the publisher writes, the resolver reads back, exactly.

The images here are made by ``ImageMeta.labels``/``description`` (the publisher's own calls); a malformed one
is a written image edited the way a person or another tool would, and each must be refused by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from sdworker import image_meta
from sdworker.image_meta import ImageMeta, ImageMetaError

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"
OTHER = f"sha256:{'f' * 64}"
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
RECORD = {
    "format": "sdworker.dev/runtime-build/v1",
    "digest": DIGEST,
    "builder": {"name": "sdworker-images", "version": "0.1.0+dev"},
    "interpreter": {"path": "/usr/bin/python3.10", "version": "3.10.12"},
    "totalBytes": 6263,
    "fileCount": 4,
}


@pytest.mark.parametrize(
    "meta",
    [
        ImageMeta.from_build_record(RECORD),
        ImageMeta(digest=DIGEST),
        ImageMeta(digest=OTHER, builder="custom", builder_version="2.0", file_count=0, total_bytes=0),
        ImageMeta.from_build_record({"digest": DIGEST}),
    ],
    ids=["build-record", "digest-only", "other-builder", "sparse-record"],
)
def test_what_is_written_reads_back_as_the_full_digest(meta: ImageMeta) -> None:
    labels, description = meta.labels(), meta.description()
    assert image_meta.read_digest(description, labels) == meta.digest
    assert len(meta.digest.removeprefix("sha256:")) == 64
    assert all(len(v) <= 63 and LABEL_VALUE.fullmatch(v) for v in labels.values()), labels
    assert description.startswith("sdworker runtime disk; ")


def test_the_written_form() -> None:
    meta = ImageMeta.from_build_record(RECORD)
    assert meta.labels() == {
        "sdworker-digest": HEX[:63],
        "sdworker-builder": "0-1-0-dev",
        "sdworker-managed": "true",
    }
    assert meta.description() == (
        f"sdworker runtime disk; sdworker-digest={DIGEST}; files=4; bytes=6263; "
        "python=/usr/bin/python3.10 3.10.12; builder=sdworker-images 0.1.0+dev"
    )
    assert image_meta.description_fields(meta.description())["python"] == "/usr/bin/python3.10 3.10.12"


@dataclass(frozen=True)
class Bad:
    description: str
    labels: dict[str, str]
    error: str  # a regex the message must match


WRITTEN = ImageMeta.from_build_record(RECORD)
GOOD_DESCRIPTION = WRITTEN.description()
GOOD_LABELS = WRITTEN.labels()

BAD = {
    # The publisher before the contract: label cut to 63 hex, description in another format.
    "label-only": Bad("", {"sdworker-digest": HEX[:63]}, r"description is empty.*label holds only 63"),
    "old-publisher-format": Bad(
        f"sdworker runtime disk {DIGEST}; 4 files, 6263 bytes", GOOD_LABELS, r"does not start with"
    ),
    "old-hand-written-format": Bad(f"sdworker-digest={DIGEST}", GOOD_LABELS, r"does not start with"),
    "foreign-image": Bad("Debian 12 bookworm", {}, r"does not start with 'sdworker runtime disk'"),
    "no-digest-field": Bad("sdworker runtime disk; files=4", GOOD_LABELS, r"no sdworker-digest=sha256"),
    "truncated-digest": Bad(
        f"sdworker runtime disk; sdworker-digest=sha256:{HEX[:63]}",
        GOOD_LABELS,
        r"description field sdworker-digest 'sha256:[0-9a-f]{63}' has 63 hex digits, not 64",
    ),
    "upper-case-digest": Bad(
        f"sdworker runtime disk; sdworker-digest=sha256:{HEX.upper()}", GOOD_LABELS, r"lower-case hex"
    ),
    "not-sha256": Bad(f"sdworker runtime disk; sdworker-digest=md5:{HEX}", GOOD_LABELS, r"is not sha256:"),
    "digest-twice": Bad(
        f"sdworker runtime disk; sdworker-digest={DIGEST}; sdworker-digest={OTHER}",
        GOOD_LABELS,
        r"appears twice",
    ),
    "not-key-value": Bad(f"sdworker runtime disk; sdworker-digest={DIGEST}; junk", GOOD_LABELS, r"'junk'"),
    "label-missing": Bad(GOOD_DESCRIPTION, {"sdworker-managed": "true"}, r"label sdworker-digest is missing"),
    "label-mismatch": Bad(
        GOOD_DESCRIPTION,
        {**GOOD_LABELS, "sdworker-digest": "f" * 63},
        r"label sdworker-digest='f+' does not match",
    ),
    "label-full-length": Bad(
        GOOD_DESCRIPTION, {**GOOD_LABELS, "sdworker-digest": HEX}, r"label sdworker-digest=.* does not match"
    ),
    "description-edited": Bad(
        GOOD_DESCRIPTION.replace(HEX, "f" * 64), GOOD_LABELS, r"does not match the description's sha256:f{64}"
    ),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_malformed_images_are_refused_by_field(case: Bad) -> None:
    with pytest.raises(ImageMetaError, match=case.error):
        image_meta.read_digest(case.description, case.labels)


@pytest.mark.parametrize(
    ("digest", "error"),
    [
        (f"sha256:{HEX[:63]}", r"digest 'sha256:[0-9a-f]{63}' has 63 hex digits, not 64"),
        (HEX, r"is not sha256:<64 lower-case hex digits>"),
        ("", r"digest '' is not sha256:"),
        (f"sha256:{HEX}0", r"has 65 hex digits"),
    ],
)
def test_nothing_with_a_bad_digest_is_written(digest: str, error: str) -> None:
    with pytest.raises(ImageMetaError, match=error):
        ImageMeta(digest=digest)
    with pytest.raises(ImageMetaError, match=error):
        image_meta.digest_label(digest)


def test_a_value_that_would_break_the_description_is_refused() -> None:
    with pytest.raises(ImageMetaError, match=r"description field python=.*';' and line breaks"):
        ImageMeta(digest=DIGEST, python="/opt/py;thon 3.10").description()


@pytest.mark.parametrize(
    ("text", "label"),
    [("0.1.0", "0-1-0"), ("1.2.3+Local.Build", "1-2-3-local-build"), ("x" * 80, "x" * 63), ("", "")],
)
def test_label_values(text: str, label: str) -> None:
    assert image_meta.label_value(text) == label
