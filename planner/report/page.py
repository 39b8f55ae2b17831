"""The report page: sections of HTML assembled into one self-contained document.

A :class:`Section` is a title, a short lead paragraph and body HTML (tables, inline SVG figures, notes).
:func:`render_page` puts the verdict first, then every part's sections in order, with inline CSS only:
no script, no external URL (the favicon is an empty data URL so a browser asks for nothing), so the
page opens offline and can be mailed as one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Sequence

__all__ = ["Section", "Part", "Verdict", "table_html", "note_html", "missing_html", "figure_html", "render_page"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;color:#1a1a1a;background:#fafafa}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:28px 0 6px;border-bottom:2px solid #0072B2;padding-bottom:3px}
h3{font-size:15px;margin:18px 0 6px}p.lead{color:#444;margin:4px 0 10px}
table{border-collapse:collapse;margin:8px 0;font-size:13px;background:#fff}
th,td{border:1px solid #d0d0d0;padding:3px 8px;text-align:right}th{background:#eef3f8}
td.l,th.l{text-align:left}tr.chosen td{background:#e8f5e9;font-weight:600}
figure{margin:10px 0;display:inline-block;vertical-align:top;background:#fff;border:1px solid #ddd}
figcaption{font-size:12px;color:#444;padding:4px 8px;max-width:640px}
.verdict{padding:10px 14px;border-radius:6px;margin:10px 0;font-weight:600}
.ok{background:#e8f5e9;border:1px solid #2e7d32}.fail{background:#ffebee;border:1px solid #c62828}
.unverified{background:#fff8e1;border:1px solid #f9a825}
.missing{background:#fff8e1;border-left:4px solid #f9a825;padding:6px 10px;margin:8px 0;font-size:13px}
.note{font-size:13px;color:#333}nav a{margin-right:12px;font-size:13px}
"""


@dataclass(frozen=True)
class Section:
    """One titled block of the page; ``body`` is trusted HTML built by this package."""

    title: str
    body: str
    lead: str = ""
    figures: int = 0  # figures (inline SVG) in the body, for the page's table of contents


@dataclass(frozen=True)
class Part:
    """The sections of one plan (a combined plan has several parts, each rendered in order)."""

    title: str
    kind: str
    sections: tuple[Section, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Verdict:
    """The verifier's outcome for one part: ``ok`` True/False, or None when it could not run (``detail`` says why)."""

    ok: bool | None
    detail: str
    checks: tuple[tuple[str, bool, str], ...] = ()


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]], *, chosen: int | None = None,
               left: int = 1) -> str:
    """A table; the first ``left`` columns left-aligned, row ``chosen`` highlighted."""
    def cell(tag: str, j: int, v: object) -> str:
        cls = ' class="l"' if j < left else ""
        return f"<{tag}{cls}>{escape(_text(v))}</{tag}>"

    head = "<tr>" + "".join(cell("th", j, h) for j, h in enumerate(header)) + "</tr>"
    mark = ' class="chosen"'
    body = "".join(f"<tr{mark if i == chosen else ''}>" + "".join(cell("td", j, v) for j, v in enumerate(r))
                   + "</tr>" for i, r in enumerate(rows))
    return f"<table>{head}{body}</table>"


def _text(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def note_html(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def missing_html(what: str, how: str) -> str:
    """What a figure would show and how to get it, instead of a blank."""
    return f'<div class="missing"><b>Not shown: {escape(what)}.</b> {escape(how)}</div>'


def figure_html(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _verdict_html(part: Part, v: Verdict) -> str:
    cls, word = ("unverified", "NOT VERIFIED") if v.ok is None else (("ok", "VERIFIED") if v.ok else ("fail", "FAILS VERIFICATION"))
    checks = table_html(["check", "result", "detail"], [(n, "ok" if ok else "FAIL", d) for n, ok, d in v.checks],
                        left=3) if v.checks else ""
    return f'<div class="verdict {cls}">{escape(part.title)}: {word}: {escape(v.detail)}</div>{checks}'


def render_page(title: str, parts: Sequence[tuple[Part, Verdict]], *, subtitle: str = "") -> str:
    """The whole HTML document: title, verdicts, contents, then every part's sections."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<link rel="icon" href="data:,">', f"<title>{escape(title)}</title>", f"<style>{_CSS}</style></head><body>",
           f"<h1>{escape(title)}</h1>"]
    if subtitle:
        out.append(f'<p class="lead">{escape(subtitle)}</p>')
    out += [_verdict_html(p, v) for p, v in parts]
    nav = [f'<a href="#s{i}-{j}">{escape(s.title)}</a>' for i, (p, _) in enumerate(parts) for j, s in enumerate(p.sections)]
    out.append("<nav>" + "".join(nav) + "</nav>")
    for i, (p, _) in enumerate(parts):
        if len(parts) > 1:
            out.append(f"<h1>{escape(p.title)}</h1>")
        for j, s in enumerate(p.sections):
            out.append(f'<section id="s{i}-{j}"><h2>{escape(s.title)}</h2>')
            if s.lead:
                out.append(f'<p class="lead">{escape(s.lead)}</p>')
            out.append(s.body + "</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
