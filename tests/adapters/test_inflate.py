"""The one capped gzip reader: whole members, several members, damage and bombs."""

from __future__ import annotations

import gzip
import zlib

import pytest

from magstat.adapters.read import inflate_gzip, parse_bytes, read_input
from magstat.errors import InvalidInputError


def _bomb(inflated: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    return b"".join([packer.compress(block) for _ in range(inflated >> 20)]) + packer.flush()


def test_members_are_read_in_order():
    """Several gzip members (as concatenated files make) inflate to their joined contents."""
    assert b"abcdef" == inflate_gzip(gzip.compress(b"abc") + gzip.compress(b"def"), "x")


@pytest.mark.parametrize("cut", [5, 20, -4])
def test_truncated_gzip_is_refused(cut):
    """A gzip stream cut short anywhere is 'damaged gzip data', never a partial document."""
    data = gzip.compress(b'{"age": 50, "sex": "female"}' * 100)
    with pytest.raises(InvalidInputError, match="damaged gzip"):
        inflate_gzip(data[:cut], "x")


def test_bomb_is_refused_at_the_limit():
    """32 MiB of spaces compressed to ~32 KiB is refused at a 1 MiB limit without inflating it all."""
    bomb = _bomb(32 << 20)
    assert len(bomb) < 64 << 10
    with pytest.raises(InvalidInputError, match="too large once decompressed"):
        inflate_gzip(bomb, "x", limit=1 << 20)


def test_parse_bytes_uses_the_cap():
    """parse_bytes passes its limit to the capped reader."""
    with pytest.raises(InvalidInputError, match="too large once decompressed"):
        parse_bytes(_bomb(4 << 20), "body", max_inflated=1 << 20)


def test_cli_reader_refuses_a_bomb(tmp_path):
    """The CLI's file reader goes through the same cap (shown with a small limit)."""
    path = tmp_path / "bomb.json.gz"
    path.write_bytes(_bomb(4 << 20))
    with pytest.raises(InvalidInputError, match="too large once decompressed"):
        read_input(path, max_inflated=1 << 20)
