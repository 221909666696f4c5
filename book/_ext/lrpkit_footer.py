"""Sphinx extension of the companion book: which lrpkit built the site, and its licence, on every page.

sphinx-book-theme shows the theme option ``extra_footer`` (``_config.yml``'s ``html.extra_footer``)
under every page. At ``config-inited`` this extension appends to it one line naming the lrpkit that
built the book -- :func:`lrpkit.provenance.lrpkit_version` (version and a hash of its source), the
first 12 hex digits of :func:`lrpkit.provenance.git_commit` (``-dirty`` kept) and the date of the
build in UTC -- and one with the licences (:data:`LICENCE`): the same version and commit as every
figure's provenance box.

Setting it in the configuration, not per page, means that Sphinx rewrites every page when the
commit or the date changes: no page keeps the footer of an older build.
``SOURCE_DATE_EPOCH``, when set, is the build date (reproducible builds).
"""
from __future__ import annotations

import datetime as dt
import html
import os

#: The licences of the book, as the footer shows them (HTML).
LICENCE = ('Text and figures <a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a>, '
           'code <a href="https://opensource.org/license/mit">MIT</a>')


def build_date(environ=os.environ) -> str:
    """The build's date, ``YYYY-MM-DD`` in UTC: from ``SOURCE_DATE_EPOCH`` if set, else today."""
    epoch = environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return when.date().isoformat()


def footer_line(version: str, commit: str, date: str) -> str:
    """``lrpkit <version>, commit <12 hex>[-dirty] (built <date>)``; a commit that is not a hash
    (``unknown``) is shown as it is."""
    sha, dirty, _ = commit.partition("-dirty")
    short = sha[:12] + ("-dirty" if dirty else "") if len(sha) == 40 else commit
    return f"lrpkit {version}, commit {short} (built {date})"


def footer(existing: str, version: str, commit: str, date: str) -> str:
    """The footer's HTML: ``existing`` (text of ``html.extra_footer``, escaped), then the build line
    and :data:`LICENCE`, one paragraph each."""
    lines = [html.escape(existing)] if existing else []
    lines += [f'<span class="lrpkit-build">{html.escape(footer_line(version, commit, date))}</span>',
              f'<span class="lrpkit-licence">{LICENCE}</span>']
    return "".join(f"<p>{line}</p>" for line in lines)


def add_footer(app, config) -> None:
    """``config-inited``: append the build line and the licences to the theme's ``extra_footer``."""
    from lrpkit.provenance import git_commit, lrpkit_version

    options = config.html_theme_options
    config.html_theme_options = {**options, "extra_footer": footer(str(options.get("extra_footer") or ""),
                                                                   lrpkit_version(), git_commit(), build_date())}


def setup(app):
    app.connect("config-inited", add_footer)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
