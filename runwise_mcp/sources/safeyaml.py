"""YAML from run directories (config.yaml), loaded with a bound on alias expansion.

``yaml.safe_load`` builds an alias as a shared reference, which is cheap, but everything that
walks the result afterwards (flattening, rendering, copying) sees each alias expanded: 350 bytes
of nested aliases ("billion laughs") expand to 9**8 strings, 33 s and 1.7 GB. This loader counts
the nodes of the document as it is composed, each alias counted as the whole subtree it stands
for, and refuses the document once the count passes ``MAX_NODES``, before anything is built. An
alias to a node that contains it (a cycle) is refused too.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_NODES = 100_000


class YamlRefused(yaml.YAMLError):
    """A YAML document refused before it was built; the message says why."""


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose composer counts nodes with aliases expanded."""

    def __init__(self, stream: Any, max_nodes: int = MAX_NODES) -> None:
        super().__init__(stream)
        self.max_nodes = max_nodes
        self.nodes = 0  # nodes of the document so far, aliases expanded
        self._open: set[str] = set()  # anchors of the nodes being composed
        self._sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            if event.anchor in self._open:
                raise YamlRefused(f"the alias *{event.anchor} refers to a node that contains it")
            node = super().compose_node(parent, index)
            self._add(self._size(node))
            return node
        anchor = event.anchor
        if anchor is not None:
            self._open.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open.discard(anchor)
        self._add(1)  # its children were counted as they were composed
        return node

    def _add(self, n: int) -> None:
        self.nodes += n
        if self.nodes > self.max_nodes:
            raise YamlRefused(f"more than {self.max_nodes:,} YAML nodes after expanding aliases (an alias bomb?)")

    def _size(self, node: Node) -> int:
        """Nodes in ``node``'s subtree with aliases expanded (a finished node: memoised)."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        n = 1
        if isinstance(node, SequenceNode):
            for child in node.value:
                n += self._size(child)
                if n > self.max_nodes:
                    break
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                n += self._size(key) + self._size(value)
                if n > self.max_nodes:
                    break
        self._sizes[id(node)] = n
        return n


def safe_load(data: bytes | str, max_nodes: int = MAX_NODES) -> Any:
    """``yaml.safe_load`` that raises ``YamlRefused`` for a document of more than ``max_nodes``
    nodes once its aliases are expanded (and ``yaml.YAMLError`` as safe_load does)."""
    loader = BoundedSafeLoader(data, max_nodes)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
