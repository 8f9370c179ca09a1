"""Which local image reference goes when a sandbox registry leaves (pure part)."""

from __future__ import annotations

import pytest

from deployer.sandbox.registry import _local_reference

HERE = "127.0.0.1:5001"


@pytest.mark.parametrize(
    ("line", "reference"),
    [
        (f"{HERE}/t/web latest sha256:aa 1111", f"{HERE}/t/web:latest"),
        (f"{HERE}/t/web <none> sha256:aa 1111", f"{HERE}/t/web@sha256:aa"),
        (f"{HERE}/t/web <none> <none> 1111", "1111"),  # by id, without force: refused if shared
        ("127.0.0.1:50011/t/web latest sha256:aa 1111", None),  # another port that starts alike
        ("deployer sandbox <none> 2222", None),
        ("", None),
        (f"{HERE}/t/web latest", None),  # not a line of the format asked for
    ],
)
def test_only_references_into_this_registry_are_removed(line: str, reference: str | None) -> None:
    assert _local_reference(line, HERE) == reference
