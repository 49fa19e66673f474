"""Reading a config file: bounded, safe YAML that remembers the line of every key.

- Files over `MAX_BYTES` are refused before parsing, and a document whose aliases
  expand to more than `MAX_NODES` nodes ("billion laughs") is refused before it is
  built: an error never prints an expanded value, and memory stays small.
- A key given twice in one mapping is an error naming both lines (PyYAML silently
  keeps the last one).
- Mappings and lists come back as `LinedDict` / `LinedList`: plain dict and list
  subclasses that also know the line of each key or item, so that a value error can
  say `digits.yaml:7: space.beta1.high: ...` (`line_of`).
"""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError

MAX_BYTES = 1_000_000
MAX_NODES = 100_000


class LinedDict(dict):
    """A dict that knows the 1-based line of each key (`lines`)."""

    lines: dict[Any, int]


class LinedList(list):
    """A list that knows the 1-based line of each item (`lines`)."""

    lines: list[int]


def read_text(path: Path) -> str:
    """The file's text; ConfigError for a missing, unreadable, oversized or non-UTF-8 file."""
    if not path.exists():
        raise ConfigError(str(path), "", "config file not found; check the path (e.g. configs/digits.yaml).")
    if path.is_dir():
        raise ConfigError(str(path), "", "is a folder, not a config file; give a .yaml file.")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(path.name, "", f"is {size / 1e6:.1f} MB; config files over {MAX_BYTES // 1_000_000} MB "
                                             "are refused (a search space fits in a few kB). Is this the right file?")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), "", f"cannot be read as UTF-8 text ({err}).") from None


def parse_yaml(text: str, source: str) -> Any:
    """YAML text -> plain data (LinedDict / LinedList for collections); ConfigError for anything malformed."""
    import yaml

    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise ConfigError(source, "", f"is over {MAX_BYTES // 1_000_000} MB; config files that large are refused.")
    loader = None
    try:
        loader = _loader_class()(text)  # reading starts here: a control character fails at once
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except _DuplicateKey as err:
        raise ConfigError(source, err.key_path, f"appears twice (lines {err.first} and {err.second}); "
                                                "YAML keeps only the last one. Remove one of them.") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = err.problem or err.context or "invalid YAML"
        raise ConfigError(source, where, f"malformed YAML: {problem}. Check the indentation and quoting there.") from None
    except yaml.YAMLError as err:
        flat = " ".join(str(err).split())[:300]  # one paragraph, whatever PyYAML says
        raise ConfigError(source, "", f"malformed YAML: {flat}. Is this a YAML text file?") from None
    except RecursionError:
        raise ConfigError(source, "", "is nested too deeply to be a config (hundreds of levels); "
                                      "a search space needs three or four.") from None
    finally:
        if loader is not None:
            loader.dispose()


def line_of(raw: Any, key_path: str) -> int | None:
    """The line of the deepest part of `key_path` ("space.beta1.high", "space.layers[1]") found in `raw`.

    Parameter names may hold dots, so at each level the longest matching key wins.
    """
    line: int | None = None
    node, rest = raw, key_path
    while rest and isinstance(node, (LinedDict, LinedList)):
        if isinstance(node, LinedList):
            m = re.match(r"\[(\d+)\]\.?", rest)
            if not m or int(m.group(1)) >= len(node):
                break
            i = int(m.group(1))
            line, node, rest = node.lines[i], node[i], rest[m.end():]
            continue
        match = None
        for key in node:
            k = str(key)
            if rest == k or rest.startswith(k + ".") or rest.startswith(k + "["):
                if match is None or len(k) > len(str(match)):
                    match = key
        if match is None:
            break
        line, node = node.lines.get(match, line), node[match]
        rest = rest[len(str(match)):].lstrip(".")
    return line


class _DuplicateKey(Exception):
    def __init__(self, key_path: str, first: int, second: int) -> None:
        super().__init__(key_path)
        self.key_path, self.first, self.second = key_path, first, second


def _check_expansion(root: Any, source: str) -> None:
    """Refuse a document whose aliases would expand past MAX_NODES nodes (counted without expanding)."""
    import yaml

    sizes: dict[int, int] = {}
    # iterative post-order over the node graph; aliases are shared node objects, so memoizing
    # by identity counts their expanded size in time linear in the file
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[Any] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(c), 1) for c in children)
        sizes[id(node)] = total
        if total > MAX_NODES:
            raise ConfigError(source, "", f"expands to more than {MAX_NODES:,} values through YAML aliases (&anchor / "
                                          "*alias); such a file is refused. Write the values out, or use fewer aliases.")


@functools.lru_cache(maxsize=1)
def _loader_class() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys and records the line of every key and item."""

        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(str(key), seen[key], line)  # the key as written, at its second line
                except TypeError:  # an unhashable key: let PyYAML report it
                    continue
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    def construct_lined_mapping(loader: Any, node: Any) -> Any:
        out = LinedDict()
        out.lines = {}
        yield out
        out.update(loader.construct_mapping(node, deep=True))
        for key_node, _ in node.value:
            try:
                key = loader.construct_object(key_node, deep=True)
                out.lines[key] = key_node.start_mark.line + 1
            except TypeError:
                pass

    def construct_lined_sequence(loader: Any, node: Any) -> Any:
        out = LinedList()
        out.lines = []
        yield out
        out.extend(loader.construct_sequence(node, deep=True))
        out.lines = [child.start_mark.line + 1 for child in node.value]

    Loader.add_constructor("tag:yaml.org,2002:map", construct_lined_mapping)
    Loader.add_constructor("tag:yaml.org,2002:seq", construct_lined_sequence)
    # what was read can be written again as plain YAML (a config snapshot, a converted sweep)
    for dumper in (yaml.SafeDumper, yaml.Dumper):
        dumper.add_representer(LinedDict, yaml.representer.SafeRepresenter.represent_dict)
        dumper.add_representer(LinedList, yaml.representer.SafeRepresenter.represent_list)
    return Loader


def did_you_mean(word: str, valid: Any) -> str:
    """' Did you mean 'x'?' for the closest valid word (the word cut to 100 characters first), or ''."""
    close = difflib.get_close_matches(word[:100], [str(x) for x in valid], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def num(x: float) -> str:
    """A number as errors and notes quote it (3, 0.001, 1e-05)."""
    return f"{x:g}"
