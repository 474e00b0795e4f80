"""YAML documents of messages: the safe, bounded loader and the round-tripping dumper.

Imported only when a document is YAML (JSON documents, the common case, never load PyYAML),
so a node that never sees YAML keeps PyYAML out of its memory.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Iterator
from typing import Any, Final

import yaml

from steward_otp.limits import MAX_DOCUMENT_EXPANSION, MAX_MESSAGES_PER_DOCUMENT
from steward_otp.message import _BadBase64, _DocumentError, _RepeatedKeys, _TextFloat, _TextInt

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class _DocumentLoader(yaml.SafeLoader):
    """SafeLoader reading scalars the way Steward's typed decoder did.

    Booleans are only true/false (not yes/no/on/off), dates and ``=`` stay strings, and
    numbers remember their spelling so that string fields get the text as written.
    ``!!binary`` is strict base64 (whitespace aside): anything else is kept as a
    ``_BadBase64`` the reader refuses, as it refuses ``{"base64": ...}`` that is not base64.
    A mapping that names a key more than once (merge keys aside) is a ``_RepeatedKeys``
    noting every value, so the reader refuses it as it does a JSON object with a repeated
    key.

    Limits: reading stops with a _DocumentError as soon as the stream holds more than
    ``max_messages`` top-level messages (so a huge document is refused after reading the
    first ``max_messages``, not all of it). A document that uses aliases is measured before
    it is constructed: expanded (every use of an alias counted in full) it may be at most
    :data:`MAX_DOCUMENT_EXPANSION` large, and it may not refer to itself. So an "alias bomb"
    is refused in time proportional to its written size.
    """

    def __init__(self, stream: str, max_messages: int = MAX_MESSAGES_PER_DOCUMENT) -> None:
        super().__init__(stream)
        self.max_messages = max_messages
        self.aliases_used = 0
        self.messages_seen = 0
        self.depth = 0
        self._explicit: dict[int, tuple[yaml.Node, list[tuple[yaml.Node, yaml.Node]]]] = {}

    def explicit_pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """The key/value nodes written in ``node`` itself (no merge keys), as they were
        before :meth:`flatten_mapping` put the merged pairs into it."""
        entry = self._explicit.get(id(node))
        if entry is None or entry[0] is not node:
            pairs = [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
            entry = self._explicit[id(node)] = (node, pairs)
        return entry[1]

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        self.explicit_pairs(node)  # noted before the merged pairs join them
        super().flatten_mapping(node)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases_used += 1
        if self.depth == 1 and isinstance(index, int):  # an item of a top-level list
            self._count_message()
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_document(self) -> yaml.Node | None:
        self.aliases_used = 0
        node = super().compose_document()
        if isinstance(node, yaml.MappingNode):  # a document holding one message
            self._count_message()
        if self.aliases_used and node is not None:
            _check_expansion(node, MAX_DOCUMENT_EXPANSION)
        return node

    def _count_message(self) -> None:
        self.messages_seen += 1
        if self.messages_seen > self.max_messages:
            raise _DocumentError(
                f"holds more than {self.max_messages} messages; nothing was accepted: split "
                f"it into documents of at most {self.max_messages} messages",
                f"at most {self.max_messages} messages per document",
            )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node, limit: int) -> None:
    """Raise _DocumentError when ``root`` expanded is larger than ``limit`` (one per node
    plus each scalar's length, shared nodes counted at every use) or refers to itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            active.discard(key)
            if isinstance(node, yaml.ScalarNode):
                size = 1 + len(node.value)
            else:
                size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > limit:
                raise _DocumentError(
                    f"YAML aliases expand the document to more than {limit} characters "
                    "(every use of an alias counts in full); nothing was accepted",
                    f"aliases expanding the document to at most {limit} characters",
                )
            sizes[key] = size
        elif key not in sizes:
            if key in active:
                raise _DocumentError(
                    "a YAML alias refers to the collection that contains it; nothing was accepted",
                    "aliases to nodes outside themselves",
                )
            active.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


_DROPPED_TAGS: Final = frozenset(
    {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
)
_DocumentLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_DocumentLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _scalar_node(node: yaml.Node) -> yaml.ScalarNode:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"expected a scalar, but found a {getattr(node, 'id', 'node')}",
            node.start_mark,
        )
    return node


def _yaml_int(loader: yaml.SafeLoader, node: yaml.Node) -> _TextInt:
    scalar = _scalar_node(node)
    return _TextInt(loader.construct_yaml_int(scalar), scalar.value)


def _yaml_float(loader: yaml.SafeLoader, node: yaml.Node) -> _TextFloat:
    scalar = _scalar_node(node)
    return _TextFloat(loader.construct_yaml_float(scalar), scalar.value)


def _yaml_binary(loader: yaml.SafeLoader, node: yaml.Node) -> bytes | _BadBase64:
    text = loader.construct_scalar(_scalar_node(node))
    try:  # PyYAML's own decoder drops whatever is not base64 without a word
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return _BadBase64(text)


def _yaml_map(loader: _DocumentLoader, node: yaml.Node) -> Iterator[_RepeatedKeys]:
    data = _RepeatedKeys()
    yield data
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"expected a mapping, but found a {getattr(node, 'id', 'node')}",
            node.start_mark,
        )
    explicit = loader.explicit_pairs(node)
    data.update(loader.construct_mapping(node))
    if len(explicit) > 1:
        pairs = [(loader.construct_object(k), loader.construct_object(v)) for k, v in explicit]
        data.repeated = _RepeatedKeys.repeats(pairs)


_DocumentLoader.add_constructor("tag:yaml.org,2002:int", _yaml_int)
_DocumentLoader.add_constructor("tag:yaml.org,2002:float", _yaml_float)
_DocumentLoader.add_constructor("tag:yaml.org,2002:binary", _yaml_binary)
_DocumentLoader.add_constructor("tag:yaml.org,2002:map", _yaml_map)


def load_all(text: str, max_messages: int = MAX_MESSAGES_PER_DOCUMENT) -> list[Any]:
    """Every YAML document of ``text``, read with the bounded loader."""
    loader = functools.partial(_DocumentLoader, max_messages=max_messages)
    return list(yaml.load_all(text, Loader=loader))  # type: ignore[arg-type]


def error_text(exc: Exception) -> str:
    """One line: where and what, then the context (``... (while parsing ... at line 1)``)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    text = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    if exc.context:
        text += f" ({exc.context}"
        if exc.context_mark is not None:
            cmark = exc.context_mark
            text += f" at line {cmark.line + 1}, column {cmark.column + 1}"
        text += ")"
    return " ".join(text.split())


class _DocumentDumper(yaml.SafeDumper):
    """SafeDumper that double-quotes strings whose line-break characters YAML would fold."""


_YAML_NEEDS_QUOTES: Final = re.compile("[\x85\u2028\u2029\ufeff]")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if _YAML_NEEDS_QUOTES.search(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_DocumentDumper.add_representer(str, _represent_str)


def dump(documents: list[Any]) -> str:
    """``documents`` (message dicts) as a YAML list that reads back unchanged."""
    return yaml.dump(
        documents,
        Dumper=_DocumentDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
    )
