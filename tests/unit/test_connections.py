"""The TCP table parser and the counting rule (deployer/connections.py), on lines a
little-endian Linux machine printed in /proc/self/net/tcp and tcp6 for: a listener on
127.0.0.1:18001, a connection to it (both ends), one in TIME-WAIT, a dual-stack listener on
[::]:18002, an IPv4 connection to it (v4-mapped) and an IPv6 one from ::1."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from deployer.connections import (
    ESTABLISHED,
    LISTEN,
    TIME_WAIT,
    Endpoint,
    Socket,
    established_to,
    listens_on,
    make_endpoint,
    parse_proc_tcp,
    read_proc_tables,
)

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   1: 0100007F:4651 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20000854 1 000000003486a79c 100 0 0 10 0
   8: 0100007F:C43E 0100007F:4652 01 00000000:00000000 00:00000000 00000000     0        0 20000860 2 00000000187ed0f5 20 0 0 10 -1
  12: 0100007F:4651 0100007F:A5BC 06 00000000:00000000 03:00001770 00000000     0        0 0 3 000000006ddefb98
  13: 0100007F:A5B0 0100007F:4651 01 00000000:00000000 00:00000000 00000000     0        0 20000855 2 00000000b4349c84 20 0 0 10 -1
  18: 0100007F:4651 0100007F:A5B0 01 00000000:00000000 00:00000000 00000000     0        0 20000856 1 00000000a70a19db 20 0 0 10 -1
"""  # noqa: E501 (the kernel's own line length)
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:4652 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20000859 1 00000000faff4951 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:4652 0000000000000000FFFF00000100007F:C43E 01 00000000:00000000 00:00000000 00000000     0        0 20000861 1 00000000fc5ceef2 20 0 0 10 -1
   2: 00000000000000000000000001000000:4652 00000000000000000000000001000000:EC9A 01 00000000:00000000 00:00000000 00000000     0        0 20000863 1 00000000ca36736c 20 0 0 10 -1
   3: 00000000000000000000000001000000:EC9A 00000000000000000000000001000000:4652 01 00000000:00000000 00:00000000 00000000     0        0 20000862 2 0000000047e3db9d 20 0 0 10 -1
"""  # noqa: E501
LOCALHOST = IPv4Address("127.0.0.1")
ANY6 = IPv6Address("::")
ONE6 = IPv6Address("::1")


def test_ipv4_rows_become_typed_sockets() -> None:
    rows = parse_proc_tcp(TCP, "little")

    assert rows == [
        Socket(LOCALHOST, 18001, IPv4Address("0.0.0.0"), 0, LISTEN),
        Socket(LOCALHOST, 50238, LOCALHOST, 18002, ESTABLISHED),
        Socket(LOCALHOST, 18001, LOCALHOST, 42428, TIME_WAIT),
        Socket(LOCALHOST, 42416, LOCALHOST, 18001, ESTABLISHED),
        Socket(LOCALHOST, 18001, LOCALHOST, 42416, ESTABLISHED),
    ]


def test_ipv6_rows_with_an_ipv4_mapped_address_read_as_ipv4() -> None:
    rows = parse_proc_tcp(TCP6, "little")

    assert rows == [
        Socket(ANY6, 18002, ANY6, 0, LISTEN),
        Socket(LOCALHOST, 18002, LOCALHOST, 50238, ESTABLISHED),  # ::ffff:127.0.0.1
        Socket(ONE6, 18002, ONE6, 60570, ESTABLISHED),
        Socket(ONE6, 60570, ONE6, 18002, ESTABLISHED),
    ]


def test_a_big_endian_machine_prints_the_words_the_other_way_round() -> None:
    text = "header\n 0: 7F000001:4651 7F000001:A5B0 01 rest\n"

    assert parse_proc_tcp(text, "big") == [Socket(LOCALHOST, 18001, LOCALHOST, 42416, 1)]


@pytest.mark.parametrize(
    "line",
    [
        " 0: 0100007F 0100007F:A5B0 01",  # no port
        " 0: 0100007:4651 0100007F:A5B0 01",  # 7 hex digits
        " 0: 0100007F:4651 0100007F:A5B0 zz",  # state not hex
        " 0: 0100007F:4651",  # too short
    ],
)
def test_a_row_that_does_not_parse_is_skipped(line: str) -> None:
    assert parse_proc_tcp(f"header\n{line}\n 1: 0100007F:4651 0100007F:A5B0 01\n", "little") == [
        Socket(LOCALHOST, 18001, LOCALHOST, 42416, ESTABLISHED)
    ]


def test_only_established_connections_whose_local_end_is_the_app_count() -> None:
    rows = parse_proc_tcp(TCP, "little") + parse_proc_tcp(TCP6, "little")

    # Not the listener, not the TIME-WAIT one, not the client end (local port 42416).
    assert established_to(rows, Endpoint(LOCALHOST, 18001)) == {
        Socket(LOCALHOST, 18001, LOCALHOST, 42416, ESTABLISHED)
    }
    # The v4-mapped connection to the dual-stack listener counts for 127.0.0.1, ::1's does not.
    assert established_to(rows, Endpoint(LOCALHOST, 18002)) == {
        Socket(LOCALHOST, 18002, LOCALHOST, 50238, ESTABLISHED)
    }
    assert len(established_to(rows, Endpoint(None, 18002))) == 2  # any address
    assert established_to(rows, Endpoint(LOCALHOST, 18003)) == frozenset()  # other port
    assert established_to(rows, Endpoint(IPv4Address("127.0.0.2"), 18001)) == frozenset()


def test_a_listener_on_the_wildcard_address_serves_every_address() -> None:
    rows = parse_proc_tcp(TCP, "little") + parse_proc_tcp(TCP6, "little")

    assert listens_on(rows, Endpoint(LOCALHOST, 18002))  # [::]:18002, dual stack
    assert listens_on(rows, Endpoint(LOCALHOST, 18001))
    assert not listens_on(rows, Endpoint(IPv4Address("127.0.0.2"), 18001))
    assert not listens_on(rows, Endpoint(LOCALHOST, 18003))


def test_endpoints_from_the_engines_words_and_how_messages_show_them() -> None:
    assert make_endpoint("127.0.0.1", 18001) == Endpoint(LOCALHOST, 18001)
    assert make_endpoint("::ffff:127.0.0.1", 18001) == Endpoint(LOCALHOST, 18001)
    assert make_endpoint("", 8080) == Endpoint(None, 8080)
    assert [str(make_endpoint(a, 80)) for a in ("10.0.0.5", "", "fd00::5")] == [
        "10.0.0.5:80",
        "*:80",
        "[fd00::5]:80",
    ]


def test_a_namespace_without_ipv6_has_no_tcp6_table(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(TCP)

    assert len(read_proc_tables(tmp_path)) == 5  # (on this little-endian machine)

    (tmp_path / "tcp").unlink()
    with pytest.raises(FileNotFoundError):
        read_proc_tables(tmp_path)  # the process is gone


def test_rows_in_other_states_can_be_skipped_undecoded() -> None:
    rows = parse_proc_tcp(TCP, "little", states=frozenset({ESTABLISHED}))

    assert [(row.local_port, row.state) for row in rows] == [(50238, 1), (42416, 1), (18001, 1)]
