"""What every experiment script shares: its command line, its claims, and its outputs.

A script builds its parser with `parser(__doc__)`, records each claim of the document it tests
with `Claims.check(name, holds, detail)`, writes a table with `write_results(...)`, and ends with
`sys.exit(claims.exit_code())`, so a claim that does not hold fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # scripts run headless, in CI and over ssh
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SCRATCH = Path(__file__).resolve().parent.parent / "scratch" / "experiments"  # git-ignored


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every experiment has: --quick and --out."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes and few steps: runs in a few seconds (used by the tests)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: experiments/results/<script name>; with "
                        "--quick, scratch/experiments/<script name>, so a smoke run never "
                        "overwrites the committed full-size results)")
    return p


def out_dir(args, name: str) -> Path:
    """The folder the script writes to, created if missing (a --quick run without --out writes
    to the git-ignored scratch folder, never over the committed results)."""
    default = (SCRATCH if getattr(args, "quick", False) else RESULTS) / name
    path = args.out if args.out is not None else default
    path.mkdir(parents=True, exist_ok=True)
    return path


class Claims:
    """The document's claims a script checks; printed, saved, and turned into an exit code."""

    def __init__(self):
        self.items: list[dict] = []

    def check(self, claim: str, holds: bool, detail: str = "") -> bool:
        holds = bool(holds)
        self.items.append({"claim": claim, "holds": holds, "detail": detail})
        print(f"[{'holds' if holds else 'FAILS'}] {claim}" + (f" ({detail})" if detail else ""))
        return holds

    def exit_code(self) -> int:
        failed = [c["claim"] for c in self.items if not c["holds"]]
        if failed:
            print(f"{len(failed)} claim(s) do not hold: {failed}", file=sys.stderr)
        return 1 if failed else 0


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts as a Markdown table; floats printed with 4 significant digits."""
    columns = columns or list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(out: Path, name: str, rows: list[dict], claims: Claims, *,
                  extra: dict | None = None, columns: list[str] | None = None) -> None:
    """Write `results.json` and `results.md` (table + claims) atomically, and print the table."""
    table = markdown_table(rows, columns) if rows else ""
    claim_lines = "\n".join(f"- {'✅' if c['holds'] else '❌'} {c['claim']}"
                            + (f" — {c['detail']}" if c["detail"] else "") for c in claims.items)
    md = f"### {name}\n\n{table}\n\n{claim_lines}\n"
    payload = {"name": name, "rows": rows, "claims": claims.items, **(extra or {})}
    _atomic_write(out / "results.json", json.dumps(payload, indent=2, default=_jsonable))
    _atomic_write(out / "results.md", md)
    print(table)


def row_recorder(rows: list[dict]):
    """`row(part, measure, value)`: append one long-format row (`| part | measure | value |`)
    to `rows` and return `value`, so a script records a number where it computes it."""
    def row(part, measure, value):
        rows.append({"part": part, "measure": measure, "value": value})
        return value
    return row


def fence(s: str) -> str:
    """`s` as a Markdown code block (a ``` inside it broken by a zero-width space)."""
    return "```\n" + s.replace("```", "`\u200b``") + "\n```"


def save_figure(fig, path: Path) -> None:
    """Save a matplotlib figure as PNG (atomically) and close it."""
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    plt.close(fig)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _jsonable(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
