"""Load XNLI items from the hub, a dataset saved with ``datasets``, or a local JSONL/TSV file.

An item is ``{"lang", "idx", "premise", "hypothesis", "label"}`` with ``label`` the XNLI id (0 entailment,
1 neutral, 2 contradiction). ``idx`` is the item's position within its language (file or split order) unless the
source gives one; XNLI's validation split is parallel across languages, so ``idx`` pairs translations.

Sources (``--data``):

- ``hf`` — the hub dataset ``facebook/xnli``, one config per language, split ``validation`` (2,490 items each);
- ``hf:<name>`` — another hub id with the same layout, or a local folder written by ``save_to_disk``;
- a local folder written by ``save_to_disk`` (recognised by its ``state.json`` / ``dataset_dict.json``): a
  ``Dataset`` with a ``lang`` column, a ``DatasetDict`` keyed by language, or one with a ``validation`` split
  that has a ``lang`` column; a folder of per-language sub-folders (``<dir>/<lang>/``) works too;
- ``*.jsonl`` — one JSON object per line with ``premise, hypothesis, label, lang`` (optional ``idx``);
- ``*.tsv`` — a header row and the same columns; the original XNLI 1.0 files (``xnli.dev.tsv``: ``language,
  gold_label, sentence1, sentence2``) are read as they are.

``label`` may be 0/1/2 (or those digits as text) or the names entailment/neutral/contradiction. Any bad row —
a missing or empty field, a label outside {0, 1, 2}, a language without a template — is an
:class:`~conjugate.lm.xnli.templates.XNLIInputError` naming the file and line (or dataset row). ``datasets`` is
imported only for the ``hf`` sources.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..textio import jsonl_objects, read_text
from .templates import LABEL_NAMES, PAPER_LANGS, XNLIInputError, check_lang

HUB_ID = "facebook/xnli"
SPLIT = "validation"
FIELDS = ("premise", "hypothesis", "label", "lang")
TSV_ALIASES = {"language": "lang", "gold_label": "label", "sentence1": "premise", "sentence2": "hypothesis"}
SAVED_MARKERS = ("state.json", "dataset_dict.json", "dataset_info.json")


def parse_label(value: Any, where: str) -> int:
    """0/1/2 (int or digit string) or a label name → the id; an error naming ``where`` otherwise."""
    if isinstance(value, bool):
        pass  # True/False are not label ids
    elif isinstance(value, str):
        v = value.strip().lower()
        if v in LABEL_NAMES:
            return LABEL_NAMES.index(v)
        if v in ("0", "1", "2"):
            return int(v)
    elif isinstance(value, int) and value in (0, 1, 2):
        return value
    raise XNLIInputError(f"{where}: label {value!r} is not 0, 1 or 2 (entailment, neutral, contradiction)")


def check_row(raw: dict, where: str, lang: str | None = None, langs: Sequence[str] | None = None,
              seen: set[str] | None = None) -> dict | None:
    """A validated item from a raw record, or None when its language is not among ``langs`` (such rows are
    skipped unchecked, so a file with all 15 XNLI languages can be read for a few). ``lang`` is given when the
    source fixes the language (a dataset config); ``idx`` is set only when the record has one. The record's
    language code is added to ``seen`` (when given), skipped or not, so errors can list what a source has."""
    need = [f for f in FIELDS if f not in raw and not (f == "lang" and lang)]
    if need:
        raise XNLIInputError(f"{where}: missing field(s) {', '.join(need)}; expected {', '.join(FIELDS)}")
    code = raw["lang"] if raw.get("lang") is not None else lang
    if not isinstance(code, str):
        raise XNLIInputError(f"{where}: field lang must be a language code, got {code!r}")
    if seen is not None:
        seen.add(code)
    if langs is not None and code not in langs:
        return None
    try:
        check_lang(code)
    except XNLIInputError as e:
        raise XNLIInputError(f"{where}: field lang: {e} (pick languages with --langs)") from None
    if lang is not None and code != lang:
        raise XNLIInputError(f"{where}: lang {code!r} in the {lang!r} part of the dataset")
    item: dict[str, Any] = {"lang": code}
    for f in ("premise", "hypothesis"):
        if not isinstance(raw[f], str) or not raw[f].strip():
            raise XNLIInputError(f"{where}: field {f} must be non-empty text, got {raw[f]!r}")
        item[f] = raw[f]
    item["label"] = parse_label(raw["label"], where)
    if raw.get("idx") is not None and raw.get("idx") != "":
        value = raw["idx"]
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
            raise XNLIInputError(f"{where}: field idx must be a non-negative integer, got {value!r}")
        item["idx"] = int(value)
    return item


def number(records: Iterable[tuple[dict | None, str]]) -> list[dict]:
    """Give items without ``idx`` their position within their language; duplicate (lang, idx) is an error.
    Skipped records (None) are dropped."""
    counters: dict[str, int] = {}
    seen: dict[tuple[str, int], str] = {}
    out = []
    for item, where in records:
        if item is None:
            continue
        pos = counters.get(item["lang"], 0)
        counters[item["lang"]] = pos + 1
        item.setdefault("idx", pos)
        key = (item["lang"], item["idx"])
        if key in seen:
            raise XNLIInputError(f"{where}: duplicate item {key[0]}/{key[1]} (first at {seen[key]})")
        seen[key] = where
        out.append({k: item[k] for k in ("lang", "idx", "premise", "hypothesis", "label")})
    return out


# ----------------------------------------------------------------- local files

def read_jsonl_items(path: Path, langs: Sequence[str] | None = None, seen: set[str] | None = None) -> list[dict]:
    records = [(check_row(raw, where, langs=langs, seen=seen), where)
               for raw, where in jsonl_objects(path, XNLIInputError)]
    return number(records)


def read_tsv_items(path: Path, langs: Sequence[str] | None = None, seen: set[str] | None = None) -> list[dict]:
    with io.StringIO(read_text(path, XNLIInputError), newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if not header:
            raise XNLIInputError(f"{path}:1: empty file; expected a header with {', '.join(FIELDS)}")
        names = [h.strip() for h in header]
        if not set(FIELDS) <= set(names):  # the original XNLI 1.0 column names
            names = [TSV_ALIASES[h] if h in TSV_ALIASES and TSV_ALIASES[h] not in names else h for h in names]
        records = []
        for cells in reader:
            where = f"{path}:{reader.line_num}"
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                raise XNLIInputError(f"{where}: {len(cells)} columns, the header has {len(names)}")
            records.append((check_row(dict(zip(names, cells, strict=True)), where, langs=langs, seen=seen), where))
    return number(records)


# ----------------------------------------------------------------- datasets

def require_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise XNLIInputError("--data hf needs the 'datasets' package: pip install 'conjugate-prompting[hf]'") from None
    return datasets


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return path.is_dir() and any((path / m).is_file() for m in SAVED_MARKERS)


def _from_dataset(ds: Any, source: str, lang: str | None, langs: Sequence[str] | None,
                  seen: set[str] | None = None) -> list[tuple[dict | None, str]]:
    """Validated records from a ``datasets.Dataset``; a ``lang`` column is needed unless ``lang`` is given."""
    columns = set(ds.column_names)
    need = [f for f in FIELDS if f not in columns and not (f == "lang" and lang)]
    if need:
        part = f" [{lang}]" if lang else ""
        hint = " (add a lang column, or save one folder per language as <dir>/<lang>/)" if need == ["lang"] else ""
        raise XNLIInputError(f"{source}{part}: missing column(s) {', '.join(need)}; "
                             f"have {', '.join(sorted(columns))}{hint}")
    keep = [c for c in (*FIELDS, "idx") if c in columns]
    part = f" [{lang}]" if lang else ""
    return [(check_row(raw, f"{source}{part} row {i}", lang, langs, seen), f"{source}{part} row {i}")
            for i, raw in enumerate(ds.select_columns(keep))]


def load_saved(path: Path, langs: Sequence[str] | None, seen: set[str] | None = None) -> list[dict]:
    """Items from a folder written by ``save_to_disk`` (see the module docstring for the layouts)."""
    datasets = require_datasets()
    source = str(path)
    if not is_saved_dataset(path):
        subs = [p for p in sorted(path.iterdir()) if is_saved_dataset(p)] if path.is_dir() else []
        if not subs:
            raise XNLIInputError(f"{path}: not a dataset saved with datasets' save_to_disk "
                                 f"(no {' / '.join(SAVED_MARKERS)})")
        records = []
        for sub in subs:
            if seen is not None:
                seen.add(sub.name)
            if langs is None or sub.name in langs:
                try:
                    check_lang(sub.name)
                except XNLIInputError as e:
                    raise XNLIInputError(f"{sub}: folder name is not a language ({e})") from None
                records += _records_of(datasets.load_from_disk(str(sub)), f"{source}/{sub.name}", sub.name, None,
                                       seen)
        return number(records)
    return number(_records_of(datasets.load_from_disk(source), source, None, langs, seen))


def _records_of(obj: Any, source: str, lang: str | None, langs: Sequence[str] | None,
                seen: set[str] | None = None) -> list[tuple[dict | None, str]]:
    """Records of a loaded ``Dataset`` or ``DatasetDict`` (keyed by language, or with a validation split)."""
    if hasattr(obj, "column_names") and not isinstance(obj, dict):
        return _from_dataset(obj, source, lang, langs, seen)
    keys = list(obj.keys())
    if SPLIT in keys:
        return _from_dataset(obj[SPLIT], f"{source} [{SPLIT}]", lang, langs, seen)
    records = []
    for key in keys:
        if seen is not None:
            seen.add(key)
        if langs is not None and key not in langs:
            continue
        try:
            check_lang(key)
        except XNLIInputError as e:
            raise XNLIInputError(f"{source}: dataset part {key!r} is neither a language nor the "
                                 f"{SPLIT!r} split ({e})") from None
        records += _from_dataset(obj[key], source, key, None, seen)
    return records


def load_hub(name: str, langs: Sequence[str]) -> list[dict]:
    """The validation split of each language config of hub dataset ``name`` (default ``facebook/xnli``)."""
    datasets = require_datasets()
    records = []
    for lang in langs:
        try:
            ds = datasets.load_dataset(name, lang, split=SPLIT)
        except Exception as e:  # noqa: BLE001 - hub, network and config errors all mean "cannot load"
            raise XNLIInputError(f"could not load {name} ({lang}, {SPLIT}) from the hub: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        records += _from_dataset(ds, f"{name}", lang, None)
    return number(records)


# ----------------------------------------------------------------- entry point

def load_items(data: str | Path, langs: Sequence[str] | None = None, limit: int | None = None) -> list[dict]:
    """Items of ``langs`` (default: the paper's four for the hub, every language of a local source) from
    ``data``, the first ``limit`` of each language, grouped by language in ``langs`` order."""
    if limit is not None and limit < 1:
        raise XNLIInputError(f"--limit must be >= 1, got {limit}")
    spec = str(data)
    seen: set[str] = set()  # every language code of the source, selected or not
    if spec == "hf" or spec.startswith("hf:"):
        name = spec[3:] or HUB_ID
        local = Path(name).expanduser()
        if local.exists():
            items = load_saved(local, langs, seen)
        else:
            items = load_hub(name, list(langs or PAPER_LANGS))
            seen.update(it["lang"] for it in items)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise XNLIInputError(f"{path}: no such file or folder (use --data hf for the hub dataset)")
        if path.is_dir():
            items = load_saved(path, langs, seen)
        elif path.suffix.lower() in (".jsonl", ".json"):
            items = read_jsonl_items(path, langs, seen)
        elif path.suffix.lower() == ".tsv":
            items = read_tsv_items(path, langs, seen)
        else:
            raise XNLIInputError(f"{path}: unknown data format {path.suffix or '(no suffix)'}; "
                                 "use .jsonl, .tsv, a save_to_disk folder, or hf")
    if not items and not seen:
        raise XNLIInputError(f"{spec}: has no items")
    present = list(dict.fromkeys(it["lang"] for it in items))
    order = list(langs) if langs is not None else present
    missing = [lang for lang in order if lang not in present]
    if missing:
        raise XNLIInputError(f"{spec}: no items for language(s) {', '.join(missing)}; "
                             f"it has {', '.join(sorted(seen | set(present)))}")
    out = []
    for lang in order:
        part = [it for it in items if it["lang"] == lang]
        out += part[:limit] if limit is not None else part
    return out
