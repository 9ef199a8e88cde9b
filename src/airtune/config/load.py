"""Load a :class:`Config` from YAML plus dotted command-line overrides, and write it back.

Every problem found (malformed override, unknown key, bad value, cross-field conflict) becomes
one line ``<field> = <value>: <problem>; fix: <what to do>``; :func:`load_config` collects them
all and raises a single :class:`~airtune.errors.ConfigError` whose ``errors`` lists the lines.

YAML is read with PyYAML's safe loader plus one extra rule: scientific notation without a dot
(``1e-3``, ``10e6``), which YAML 1.1 reads as a string, is read as a float, in files and in
overrides alike.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import annotated_types as at
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from airtune.config.schema import Config
from airtune.errors import ConfigError

__all__ = ["load_config", "parse_overrides", "config_to_dict", "dump_resolved", "config_hash", "config_error"]

_FLOAT_TAG = "tag:yaml.org,2002:float"
_SCI_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_KEY_PART = re.compile(r"^[^\s.=\[\]]+$")


class _Loader(yaml.SafeLoader):
    """Safe loader that also reads ``1e-3``-style scientific notation as float."""


class _Dumper(yaml.SafeDumper):
    """Safe dumper that quotes strings the loader would read as floats (round trip)."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver(_FLOAT_TAG, _SCI_FLOAT, list("-+0123456789."))


def config_error(lines: Sequence[str]) -> ConfigError:
    """A :class:`ConfigError` with one line per problem in ``.errors`` and str() the joined lines."""
    lines = list(dict.fromkeys(lines))  # drop duplicates, keep order
    err = ConfigError("\n".join(lines))
    err.errors = lines  # type: ignore[attr-defined]
    return err


# ----------------------------------------------------------------------------------- public API


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read ``path`` (``None``: built-in defaults), apply dotted ``overrides``, validate.

    Raises :class:`ConfigError` listing every problem at once.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    errors: list[str] = []
    raw = {} if path is None else _read_yaml(Path(path), errors)
    over, over_errors = _parse_overrides(overrides)
    errors += over_errors
    if raw is None:  # unreadable file: validating the rest would only add noise
        raise config_error(errors)
    merged = _deep_merge(raw, over)
    for key, value in list(merged.items()):  # `lora:` with every key commented out -> defaults
        if value is None and _is_section(key):
            merged[key] = {}
    try:
        cfg = Config.model_validate(merged)
    except ValidationError as exc:
        errors += [format_pydantic_error(e) for e in exc.errors(include_url=False)]
    if errors:
        raise config_error(errors)
    return cfg


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["rounds=3", "lora.rank=4"]`` -> ``{"rounds": 3, "lora": {"rank": 4}}``.

    Values are parsed as YAML (numbers, booleans, ``null``, ``[a,b]`` lists, ``1e-3``). Raises
    :class:`ConfigError` naming every malformed item.
    """
    tree, errors = _parse_overrides(items)
    if errors:
        raise config_error(errors)
    return tree


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain, JSON- and YAML-safe nested dict of ``cfg``."""
    return cfg.model_dump(mode="json")


def dump_resolved(cfg: Config, path: str | Path) -> Path:
    """Write ``cfg`` as YAML that :func:`load_config` reads back to an equal :class:`Config`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# airtune resolved config (config_hash {config_hash(cfg)})\n"
    body = yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    path.write_text(header + body, encoding="utf-8")
    return path


def config_hash(cfg: Config) -> str:
    """First 16 hex digits of the sha256 of the canonical JSON of ``cfg``."""
    canon = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------------- reading


def _read_yaml(path: Path, errors: list[str]) -> dict[str, Any] | None:
    """The top-level mapping of ``path``, or ``None`` after appending the problem to ``errors``."""
    if not path.exists():
        errors.append(f"{path}: config file not found; fix: check the path, or run without a file for the defaults")
        return None
    if path.is_dir():
        errors.append(f"{path}: is a directory, not a config file; fix: pass a .yaml file")
        return None
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        what = " ".join(str(exc.problem or exc.context or "syntax error").split())
        start = exc.context_mark
        if exc.context and start is not None and mark is not None and start.line != mark.line:
            what += f" ({exc.context} started at line {start.line + 1}, column {start.column + 1})"
        errors.append(f"{path}: malformed YAML at {where}: {what}; fix: correct the YAML syntax at {where}")
        return None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        errors.append(f"{path}: cannot read config: {' '.join(str(exc).split())}; fix: check the file")
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        errors.append(
            f"{path}: top level is a {type(data).__name__}, not a mapping; "
            "fix: write sections as 'key: value' lines, e.g. 'rounds: 20'"
        )
        return None
    return data


def _parse_overrides(items: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    tree: dict[str, Any] = {}
    errors: list[str] = []
    for item in items:
        if "=" not in item:
            errors.append(f"override '{item}': missing '='; fix: write it as dotted.key=value, e.g. lora.rank=4")
            continue
        key, text = (s.strip() for s in item.split("=", 1))
        parts = key.split(".")
        if not key or not all(_KEY_PART.match(p) for p in parts):
            errors.append(
                f"override '{item}': malformed key '{key}'; fix: write it as dotted.key=value, e.g. lora.rank=4"
            )
            continue
        try:
            value = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            what = " ".join(str(getattr(exc, "problem", None) or "not valid YAML").split())
            errors.append(f"override '{item}': cannot parse value {text!r} ({what}); fix: quote it or fix its brackets")
            continue
        node = tree
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: i + 1])
                errors.append(
                    f"override '{item}': conflicts with an earlier override {prefix}={child!r}; fix: drop one of them"
                )
                break
            node = child
        else:
            node[parts[-1]] = value
    return tree, errors


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` merged into ``base`` key by key; an empty mapping (``options={}``) replaces, clearing."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _is_section(key: str) -> bool:
    info = Config.model_fields.get(key)
    return info is not None and _model_of(info) is not None


# ----------------------------------------------------------------------------------- messages


def format_pydantic_error(err: Mapping[str, Any]) -> str:
    """One actionable line from one entry of ``ValidationError.errors()``."""
    loc: tuple[Any, ...] = tuple(err.get("loc", ()))
    typ: str = err.get("type", "")
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    value = err.get("input")
    field = _dotted(loc)
    if typ == "extra_forbidden":
        return _unknown_key(loc)
    info = _field_at(loc)
    example = _example(_dotted(tuple(p for p in loc if isinstance(p, str))), info)
    head = f"{field} = {_show(value)}"
    desc = f" ({info.description})" if info is not None and info.description else ""
    if typ == "airtune_cross_field":
        prefix = ".".join(str(p) for p in loc[:-1])
        return f"{head}: {ctx['problem']}; fix: {ctx['fix'].replace('{p}', prefix + '.' if prefix else '')}"
    bound = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
             "less_than_equal": ("le", "<=")}.get(typ)
    if bound is not None:
        return f"{head}: must be {bound[1]} {_num(ctx.get(bound[0]))}{desc}; fix: {_range_fix(info)}{example}"
    if typ == "literal_error":
        choices = [str(c) for c in _literal_choices(info)]
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        if close:
            return f"{head}: must be one of {', '.join(choices)}{desc}; fix: did you mean '{close[0]}'?"
        return f"{head}: must be one of {', '.join(choices)}{desc}; fix: set one of them{example}"
    if typ in ("model_type", "model_attributes_type", "dict_type"):
        model = _model_of(info) if info is not None else None
        if model is not None:
            first, first_info = next(iter(model.model_fields.items()))
            sample = f"{field}.{first}={_as_override(_default(first_info))}"
        else:
            sample = f"{field}.<key>=<value>"
        return f"{head}: expected a mapping of keys; fix: write {field} as a mapping, e.g. {sample}"
    kinds = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
             "list": "a list", "finite_number": "a finite number"}
    for prefix, kind in kinds.items():
        if typ.startswith(prefix + "_") or typ == prefix:
            frac = ", not a fraction" if typ == "int_from_float" else ""
            return f"{head}: expected {kind}{frac}; fix: set {kind}{example or ''}"
    if typ == "too_short":
        return f"{head}: must not be empty{desc}; fix: give at least one item{example}"
    msg = " ".join(str(err.get("msg", "invalid value")).split())
    return f"{head}: {msg}{desc}; fix: correct {field or 'the config'}{example}"


def _unknown_key(loc: tuple[Any, ...]) -> str:
    field, key = _dotted(loc), str(loc[-1])
    parent = _field_at(loc[:-1]) if loc[:-1] else None
    model = Config if not loc[:-1] else (_model_of(parent) if parent is not None else None)
    valid = sorted(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "remove it"
    return f"{field}: unknown key; fix: {hint} (valid keys: {', '.join(valid)})"


def _field_at(loc: tuple[Any, ...]) -> FieldInfo | None:
    """The schema field a pydantic error location points at (list indices are skipped)."""
    model: type[BaseModel] | None = Config
    info: FieldInfo | None = None
    for part in loc:
        if not isinstance(part, str):
            break
        if model is None or part not in model.model_fields:
            return None
        info = model.model_fields[part]
        model = _model_of(info)
    return info


def _model_of(info: FieldInfo) -> type[BaseModel] | None:
    ann = info.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _literal_choices(info: FieldInfo | None) -> tuple[Any, ...]:
    if info is None:
        return ()
    return typing.get_args(info.annotation) if typing.get_origin(info.annotation) is typing.Literal else ()


def _range_fix(info: FieldInfo | None) -> str:
    lo = hi = None
    for m in info.metadata if info is not None else ():
        if isinstance(m, at.Gt):
            lo = ("(", m.gt)
        elif isinstance(m, at.Ge):
            lo = ("[", m.ge)
        elif isinstance(m, at.Lt):
            hi = (")", m.lt)
        elif isinstance(m, at.Le):
            hi = ("]", m.le)
    if lo and hi:
        return f"set a value in {lo[0]}{_num(lo[1])}, {_num(hi[1])}{hi[0]}"
    if lo:
        if lo[1] == 0:
            return "set a positive value" if lo[0] == "(" else "set a value >= 0"
        return f"set a value {'>' if lo[0] == '(' else '>='} {_num(lo[1])}"
    if hi:
        return f"set a value {'<' if hi[0] == ')' else '<='} {_num(hi[1])}"
    return "set a valid value"


def _example(field: str, info: FieldInfo | None) -> str:
    """``', e.g. field=<default>'`` (or the field's declared example), or '' if there is none."""
    if info is None or _model_of(info) is not None:
        return ""
    value = info.examples[0] if info.examples else _default(info)
    if value is None or value is PydanticUndefined:
        return ""
    return f", e.g. {field}={_as_override(value)}"


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return info.default


def _num(value: Any) -> str:
    """``0.0`` -> ``0``, ``20.0`` -> ``20``, ``0.5`` -> ``0.5``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_override(value: Any) -> str:
    """How ``value`` is written on the command line (``10e6`` style for large/small floats)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            mant, exp = f"{value:g}".split("e") if "e" in f"{value:g}" else (f"{value:g}", "0")
            return f"{mant}e{int(exp)}"
        return f"{value:g}" if value != int(value) else f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_as_override(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}: {_as_override(v)}" for k, v in value.items()) + "}"
    return str(value)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any, limit: int = 60) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
