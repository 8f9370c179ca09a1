"""The Docker adapter's pure parts: engine attributes -> ContainerInfo."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deployer.backends.docker import _parse_time, _to_info


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T02:17:01.123456789Z", datetime(2026, 11, 24, 2, 17, 1, 123456, UTC)),
        ("2026-11-24T02:17:01Z", datetime(2026, 11, 24, 2, 17, 1, tzinfo=UTC)),
        ("2026-11-24T02:17:01.5Z", datetime(2026, 11, 24, 2, 17, 1, 500000, UTC)),
        ("2026-11-24T03:17:01+01:00", datetime(2026, 11, 24, 2, 17, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_docker_timestamps_with_or_without_a_fraction(
    value: str | None, expected: datetime | None
) -> None:
    assert _parse_time(value) == expected


def test_a_container_docker_restarted_once_is_running_not_stopped() -> None:
    info = _to_info(
        {
            "Id": "f" * 64,
            "Name": "/web-abc",
            "RestartCount": 1,
            "Config": {"Image": "img@sha256:1", "Labels": {"deployer.service": "web"}},
            "State": {"Status": "running", "StartedAt": "2026-11-24T02:17:01Z"},
        }
    )

    assert (info.status, info.restart_count, info.stopped) == ("running", 1, False)
