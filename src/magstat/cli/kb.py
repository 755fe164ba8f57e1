"""``magstat kb show|validate|cite``: look into the knowledge base."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from magstat.errors import InvalidInputError
from magstat.kb import load, load_dir
from magstat.kb.schema import KnowledgeBase, Source

__all__ = ["define_parser", "run"]

_TABLES = (
    "sources",
    "parameters",
    "analytes",
    "tests",
    "drug_classes",
    "drugs",
    "conditions",
    "signs",
    "dri",
    "supplements",
    "foods",
    "interactions",
    "outcomes",
    "statements",
)


def define_parser(sub: Any) -> None:
    """Add the ``kb`` subcommand and its actions."""
    parser = sub.add_parser("kb", help="show, validate or cite the knowledge base")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="version, hash and contents (or one table)")
    show.add_argument("table", nargs="?", choices=_TABLES, help="list the entries of one table")
    show.add_argument("--json", action="store_true", help="JSON output")
    validate = actions.add_parser("validate", help="check the knowledge base (or a folder of KB files)")
    validate.add_argument("--dir", help="a folder of knowledge-base TOML files to check instead")
    cite = actions.add_parser("cite", help="show a source, or an entry with its sources")
    cite.add_argument("id", help="a source id (S11) or an entry id (ppi, serum_mg, sf.oral_mild)")
    cite.add_argument("--json", action="store_true", help="JSON output")


def _plain(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _source_line(source: Source) -> str:
    link = (
        source.url
        or (f"https://doi.org/{source.doi}" if source.doi else None)
        or (f"PMID {source.pmid}" if source.pmid else "")
    )
    return f"[{source.id}] {source.citation} ({source.evidence_level}) {link}".rstrip()


def _show(kb: KnowledgeBase, table: str | None, as_json: bool) -> None:
    if table is None:
        counts = {name: len(getattr(kb, name)) for name in _TABLES}
        if as_json:
            sys.stdout.write(
                json.dumps(
                    {
                        "version": kb.version,
                        "sha256": kb.sha256,
                        "released": kb.released,
                        "counts": counts,
                        "history": list(kb.history),
                    },
                    indent=2,
                )
                + "\n"
            )
            return
        sys.stdout.write(
            f"magstat knowledge base {kb.version} (released {kb.released})\nsha256 {kb.sha256}\n\n"
        )
        for name, count in counts.items():
            sys.stdout.write(f"  {name:<14} {count}\n")
        sys.stdout.write("\nHistory:\n")
        for row in kb.history:
            sys.stdout.write(f"  {row['version']} ({row['date']}): {row['changes']}\n")
        return
    entries = getattr(kb, table)
    items = (
        list(entries.values()) if isinstance(entries, dict) or hasattr(entries, "values") else list(entries)
    )
    if as_json:
        sys.stdout.write(json.dumps([_plain(e) for e in items], indent=2, ensure_ascii=False) + "\n")
        return
    for entry in items:
        label = getattr(entry, "name", None) or getattr(entry, "citation", None) or getattr(entry, "text", "")
        sys.stdout.write(f"{entry.id:<28} {label}\n")


def _cite(kb: KnowledgeBase, entry_id: str, as_json: bool) -> None:
    entry = kb.entry(entry_id)
    if entry is None:
        raise InvalidInputError(
            "id",
            "no source or entry with this id",
            value=entry_id,
            allowed="see `magstat kb show sources` and the other tables",
        )
    if as_json:
        data = _plain(entry)
        if not isinstance(entry, Source):
            data["resolved_sources"] = [_plain(kb.sources[s]) for s in getattr(entry, "sources", ())]
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    if isinstance(entry, Source):
        sys.stdout.write(_source_line(entry) + "\n")
        if entry.note:
            sys.stdout.write(f"  note: {entry.note}\n")
        users = [
            e.id
            for name in _TABLES[1:]
            for e in (
                getattr(kb, name).values() if hasattr(getattr(kb, name), "values") else getattr(kb, name)
            )
            if entry.id in getattr(e, "sources", ())
        ]
        sys.stdout.write(
            f"  cited by {len(users)} entries: {', '.join(users[:30])}{' …' if len(users) > 30 else ''}\n"
        )
        return
    for key, value in _plain(entry).items():
        if key != "sources":
            sys.stdout.write(f"{key}: {value}\n")
    sys.stdout.write("sources:\n")
    for source_id in getattr(entry, "sources", ()):
        sys.stdout.write("  " + _source_line(kb.sources[source_id]) + "\n")


def run(args: argparse.Namespace) -> int:
    """Run ``magstat kb``."""
    if args.action == "validate":
        kb = load_dir(args.dir) if args.dir else load()
        total = sum(len(getattr(kb, name)) for name in _TABLES)
        sys.stdout.write(
            f"knowledge base {kb.version} is valid: {total} entries, every one cited; sha256 {kb.sha256}\n"
        )
        return 0
    kb = load()
    if args.action == "show":
        _show(kb, args.table, args.json)
    else:
        _cite(kb, args.id, args.json)
    return 0
