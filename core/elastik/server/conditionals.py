"""Conditional requests (PROTOCOL §8). Pure.

ETags travel quoted on the wire (``"hmac-…"``); the engine hands out unquoted tokens.
Only the first ``If-Match`` / ``If-None-Match`` line counts, an empty value is absent,
unquoted tags never match, If-Match compares strongly and If-None-Match weakly.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PreconditionFailed
from .model import Precondition

BODY_IF_MATCH_MISSING = b"precondition failed: If-Match requires an existing world\n"
BODY_IF_MATCH_MISMATCH = b"precondition failed: If-Match did not match current ETag\n"
BODY_IF_NONE_MATCH = b"precondition failed: If-None-Match matched current ETag\n"


@dataclass(frozen=True, slots=True)
class TagList:
    """A parsed header value: ``*`` or a list of (weak, opaque) entity-tags."""

    star: bool
    tags: tuple[tuple[bool, str], ...]

    def strong_match(self, etag: str) -> bool:
        return self.star or any(not weak and tag == etag for weak, tag in self.tags)

    def weak_match(self, etag: str) -> bool:
        return self.star or any(tag == etag for _weak, tag in self.tags)


def parse_tags(value: bytes | None) -> TagList | None:
    """None when absent or empty; otherwise the tags (unquoted ones are dropped)."""
    if value is None:
        return None
    text = value.decode("latin-1").strip(" \t")
    if not text:
        return None
    if text == "*":
        return TagList(True, ())
    tags: list[tuple[bool, str]] = []
    for item in text.split(","):
        item = item.strip(" \t")
        weak = item.startswith("W/")
        if weak:
            item = item[2:]
        if len(item) >= 2 and item[0] == '"' and item[-1] == '"':
            tags.append((weak, item[1:-1]))
    return TagList(False, tuple(tags))


def parse_entity_tag(value: bytes | None) -> tuple[bool, str] | None:
    """One entity-tag (If-Range); None for a date, garbage or absence."""
    tags = parse_tags(value)
    if tags is None or tags.star or len(tags.tags) != 1:
        return None
    return tags.tags[0]


@dataclass(frozen=True, slots=True)
class Conditions:
    if_match: TagList | None = None
    if_none_match: TagList | None = None
    if_range: bytes | None = None

    @classmethod
    def from_headers(cls, headers: list[tuple[bytes, bytes]]) -> Conditions:
        im = inm = ir = None
        seen_im = seen_inm = seen_ir = False
        for name, value in headers:
            if name == b"if-match" and not seen_im:
                im, seen_im = value, True
            elif name == b"if-none-match" and not seen_inm:
                inm, seen_inm = value, True
            elif name == b"if-range" and not seen_ir:
                ir, seen_ir = value, True
        return cls(parse_tags(im), parse_tags(inm), ir)

    @property
    def empty(self) -> bool:
        return self.if_match is None and self.if_none_match is None

    def check_write(self, current: str | None) -> None:
        """Raise 412 if a PUT/POST/DELETE must not proceed against ``current`` (None: missing)."""
        if self.if_match is not None:
            if current is None:
                raise PreconditionFailed(BODY_IF_MATCH_MISSING)
            if not self.if_match.strong_match(current):
                raise PreconditionFailed(BODY_IF_MATCH_MISMATCH)
        if (
            self.if_none_match is not None
            and current is not None
            and self.if_none_match.weak_match(current)
        ):
            raise PreconditionFailed(BODY_IF_NONE_MATCH)

    def precondition(self) -> Precondition | None:
        """The callable the engine runs inside the write, or None when there is nothing to check."""
        if self.empty:
            return None
        return self.check_write

    def not_modified(self, current: str) -> bool:
        """GET/HEAD of an existing world: does If-None-Match call for a 304?"""
        return self.if_none_match is not None and self.if_none_match.weak_match(current)

    def range_applies(self, current: str) -> bool:
        """If-Range: only a strong match of the current ETag lets Range apply."""
        if self.if_range is None:
            return True
        tag = parse_entity_tag(self.if_range)
        return tag is not None and not tag[0] and tag[1] == current
