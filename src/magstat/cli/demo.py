"""``magstat demo``: assess the built-in demo patients and show what magstat does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from magstat.adapters.read import facts_from_data
from magstat.cli.common import use_colour
from magstat.core.assess import assess
from magstat.core.result import Assessment
from magstat.demo import demo_patients
from magstat.kb import load
from magstat.render import render_html, render_json, render_text

__all__ = ["define_parser", "demo_patients", "run"]


def define_parser(sub: Any) -> None:
    """Add the ``demo`` subcommand."""
    parser = sub.add_parser("demo", help="assess the built-in demo patients")
    parser.add_argument("--out", help="also write each patient's HTML report and JSON to this folder")
    parser.add_argument(
        "--show", metavar="ID", help="print the full text assessment of one demo patient (e.g. case-01)"
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="then run the web app and CDS Hooks service in demonstration mode (no authentication)",
    )
    parser.add_argument("--port", type=int, help="port for --serve (default: the service's, 8080)")


def run(args: argparse.Namespace) -> int:
    """Run ``magstat demo``."""
    kb = load()
    results: list[tuple[str, str, Assessment]] = []
    for name, label, data, as_of in demo_patients():
        facts = facts_from_data(data, kb, as_of=as_of, strict=False)
        results.append((name, label, assess(facts, kb)))
    colour = use_colour()
    if args.show:
        for name, _label, result in results:
            if name.startswith(args.show) or (result.patient_id or "").startswith(args.show):
                sys.stdout.write(render_text(result, kb, colour=colour))
                return 0
        sys.stderr.write(
            f"magstat: no demo patient {args.show!r}; try one of: {', '.join(r.patient_id or n for n, _, r in results)}\n"
        )
        return 2
    sys.stdout.write(f"magstat demo — knowledge base {kb.version}; decision support, not diagnosis\n\n")
    header = f"{'patient':<12} {'status':<22} {'serum Mg':>9} {'MDS':>5} {'eGFR':>5}  about"
    sys.stdout.write(header + "\n" + "-" * len(header) + "\n")
    for name, label, result in results:
        s = result.serum_magnesium
        mg = "—" if s.mmol_l is None else f"{s.comparator or ''}{s.mmol_l:.2f}{'' if s.current else '*'}"
        mds = "—" if result.mds.score is None else f"{result.mds.score}{'' if result.mds.complete else '+?'}"
        egfr = "—" if result.egfr.value is None else f"{result.egfr.value:.0f}"
        ident = (result.patient_id or name)[:12]
        status = result.status + (f" ({result.severity})" if result.severity else "")
        sys.stdout.write(f"{ident:<12} {status:<22} {mg:>9} {mds:>5} {egfr:>5}  {label}\n")
    sys.stdout.write("\nserum Mg in mmol/L (* = not recent, not used); MDS +? = incomplete.\n")
    sys.stdout.write("Full assessment of one patient: magstat demo --show case-01\n")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, _label, result in results:
            stem = (result.patient_id or name.split(".")[0]).replace("/", "_")
            (out / f"{stem}.html").write_text(render_html(result, kb), encoding="utf-8")
            (out / f"{stem}.json").write_text(render_json(result), encoding="utf-8")
        sys.stdout.write(f"Reports written to {out}/\n")
    if args.serve:
        from magstat.cli import serve  # noqa: PLC0415 - the service extra is optional

        port = args.port or 8080
        sys.stdout.write(
            f"\nStarting the web app with these demo patients at http://127.0.0.1:{port}/ "
            "(demonstration mode: no authentication; Ctrl-C stops it).\n"
        )
        sys.stdout.flush()
        return serve.run(argparse.Namespace(host=None, port=args.port, config=None, demo=True))
    return 0
